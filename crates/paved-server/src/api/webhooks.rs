//! `POST /api/v1/webhooks/github`: GitHub deliveries, authenticated by their
//! HMAC-SHA256 signature (`X-Hub-Signature-256`, checked in constant time
//! over the raw body) instead of a token.
//!
//! A delivery is handled once (`X-GitHub-Delivery`): it becomes desired
//! state (`paved_control::git`), the answer is 202, and the git loop makes
//! that state run. Events paved does not act on are acknowledged with 202.

use crate::AppState;
use crate::GIT_CHANNEL;
use crate::error::{ApiError, ErrorBody};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use hmac::{KeyInit, Mac};
use paved_control::git::{GitEvent, parse_event};
use paved_store::{AuditOutcome, RequestContext};
use serde::Serialize;
use utoipa::ToSchema;

#[derive(Debug, Serialize, ToSchema)]
pub struct DeliveryAnswer {
    /// `accepted`, `ignored` or `duplicate` (handled before: nothing done again).
    pub status: String,
    /// What paved made of it.
    pub result: String,
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// Whether `signature` (`sha256=HEX`) is the HMAC-SHA256 of `body` under `secret`.
pub fn signature_valid(secret: &[u8], body: &[u8], signature: Option<&str>) -> bool {
    let Some(sig) = signature.and_then(|s| s.strip_prefix("sha256=")).and_then(|h| hex::decode(h).ok()) else {
        return false;
    };
    let Ok(mut mac) = <hmac::Hmac<sha2::Sha256> as KeyInit>::new_from_slice(secret) else { return false };
    mac.update(body);
    // `verify_slice` compares in constant time.
    mac.verify_slice(&sig).is_ok()
}

/// A GitHub webhook delivery (pull_request, push, ping; others are acknowledged and ignored).
#[utoipa::path(post, path = "/api/v1/webhooks/github", tag = "deployments", security(()),
    params(
        ("X-GitHub-Event" = String, Header, description = "The event: pull_request, push, ping, …"),
        ("X-GitHub-Delivery" = String, Header, description = "The delivery's id: a delivery is handled once"),
        ("X-Hub-Signature-256" = String, Header, description = "`sha256=` HMAC of the raw body under the shared secret"),
    ),
    request_body(content = Object, description = "The delivery as GitHub sends it"),
    responses(
        (status = 200, description = "Handled before: nothing was done again", body = DeliveryAnswer),
        (status = 202, description = "Accepted (or ignored)", body = DeliveryAnswer),
        (status = 401, description = "Missing or wrong signature: nothing was done", body = ErrorBody),
        (status = 409, description = "Refused (a team's preview quota)", body = ErrorBody),
        (status = 422, description = "Not a delivery paved can read", body = ErrorBody),
        (status = 503, description = "The server has no webhook secret (--github-webhook-secret-file)", body = ErrorBody)))]
pub async fn github(
    State(state): State<AppState>,
    request: axum::Extension<crate::auth::RequestId>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<(StatusCode, axum::Json<DeliveryAnswer>), ApiError> {
    let Some(secret) = state.config.github_webhook_secret.as_deref() else {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "not-configured",
            "this server takes no GitHub deliveries: start it with --github-webhook-secret-file FILE",
        ));
    };
    if !signature_valid(secret, &body, header(&headers, "x-hub-signature-256")) {
        state.metrics.webhooks.get_or_create(&crate::metrics::OutcomeLabels { outcome: "bad-signature".into() }).inc();
        tracing::warn!(request_id = %request.0.0, "GitHub delivery with a missing or wrong signature refused");
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "bad-signature",
            "X-Hub-Signature-256 is missing or does not match the body under the shared secret",
        ));
    }
    let missing = |h: &str| ApiError::invalid(h, format!("the `{h}` header is missing"));
    let event = header(&headers, "x-github-event").ok_or_else(|| missing("X-GitHub-Event"))?.to_string();
    let delivery = header(&headers, "x-github-delivery").ok_or_else(|| missing("X-GitHub-Delivery"))?.to_string();
    let answer = |code: StatusCode, status: &str, result: String| {
        state.metrics.webhooks.get_or_create(&crate::metrics::OutcomeLabels { outcome: status.into() }).inc();
        Ok((code, axum::Json(DeliveryAnswer { status: status.into(), result })))
    };
    if state.control.store.delivery_seen(&delivery).await? {
        return answer(StatusCode::OK, "duplicate", format!("delivery {delivery} was handled before"));
    }
    let json: serde_json::Value = serde_json::from_slice(&body)
        .map_err(|e| ApiError::invalid("body", format!("the delivery is not JSON: {e}")))?;
    let parsed = parse_event(&event, &json).map_err(|e| ApiError::invalid("body", e.to_string()))?;
    let ctx = RequestContext { request_id: request.0.0.clone(), origin: format!("github:{delivery}") };
    let now = state.control.clock.now();
    // Handled once: the request whose insert lands claims it (a check-then-act
    // would let concurrent redeliveries all run). A server that dies while
    // handling leaves it claimed (`handling`, visible in the table): a
    // redelivery is then a duplicate and the push must be made again.
    let outcome = if matches!(parsed, GitEvent::Other(_)) { "ignored" } else { "handling" };
    if !state.control.store.record_delivery(&delivery, &event, outcome, now).await? {
        return answer(StatusCode::OK, "duplicate", format!("delivery {delivery} was handled before"));
    }
    if let GitEvent::Other(name) = &parsed {
        return answer(StatusCode::ACCEPTED, "ignored", format!("event `{name}` is not one paved acts on"));
    }
    let caller = paved_control::Caller { actor: "github".into(), request: ctx.clone() };
    let target = format!("Webhook/github/{delivery}");
    match state.control.handle_git(&parsed, &delivery, &ctx).await {
        Ok(result) => {
            state.control.store.finish_delivery(&delivery, &result).await?;
            let details = serde_json::json!({"event": event, "result": result});
            state.control.record(&caller, "webhook.github", target, AuditOutcome::Succeeded, None, details).await?;
            state.git_wake.notify_one();
            // The git loop may run on another replica (the background lease's holder).
            if let Err(e) = state.control.store.wake(GIT_CHANNEL).await {
                tracing::warn!(error = %e, "could not wake the other replicas' git loop; it runs at its interval");
            }
            answer(StatusCode::ACCEPTED, "accepted", result)
        }
        Err(e) => {
            let result = e.to_string();
            state.control.store.finish_delivery(&delivery, &format!("refused: {result}")).await?;
            let details = serde_json::json!({"event": event, "result": result});
            state.control.record(&caller, "webhook.github", target, AuditOutcome::Failed, None, details).await?;
            if let paved_control::ControlError::Git(paved_control::git::GitRefusal::Quota { .. }) = &e {
                state.notifier.send(&paved_control::git::GitNotice {
                    event: "preview.refused".into(),
                    environment: String::new(),
                    pull_request: None,
                    urls: Default::default(),
                    detail: Some(result),
                });
            }
            Err(e.into())
        }
    }
}

/// What paved made of an Argo CD notification.
#[derive(Debug, Serialize, ToSchema)]
pub struct HealthAnswer {
    /// `healthy`, `rolled-back`, `stale` (a revision paved did not deliver, or an old one) or `nothing-to-do`.
    pub result: String,
    /// `SERVICE #N` of each deployment decided.
    pub deployments: Vec<String>,
    /// The rollback commit, when one was made.
    pub commit: Option<String>,
}

/// An Argo CD notification about an environment's Application (the body
/// paved's notification templates render). Argo CD does not sign its
/// webhooks: the environment's secret (`PAVED_ARGOCD_WEBHOOK` in the vault)
/// comes in `X-Paved-Token`.
#[utoipa::path(post, path = "/api/v1/webhooks/argocd", tag = "deployments", security(()),
    params(("X-Paved-Token" = String, Header, description = "The environment's webhook secret")),
    request_body(content = Object, description = "{environment, trigger (on-deployed | on-health-degraded | on-sync-failed), revision, health?, sync?, message?}"),
    responses(
        (status = 200, description = "Handled", body = HealthAnswer),
        (status = 401, description = "Missing or wrong secret: nothing was recorded", body = ErrorBody),
        (status = 422, description = "Not a notification paved can read", body = ErrorBody)))]
pub async fn argocd(
    State(state): State<AppState>,
    request: axum::Extension<crate::auth::RequestId>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<axum::Json<HealthAnswer>, ApiError> {
    let refused = || {
        state.metrics.webhooks.get_or_create(&crate::metrics::OutcomeLabels { outcome: "bad-secret".into() }).inc();
        tracing::warn!(request_id = %request.0.0, "Argo CD notification without the environment's secret refused");
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "bad-secret",
            "X-Paved-Token is missing or is not the environment's webhook secret (`paved secret reveal PAVED_ARGOCD_WEBHOOK -e ENV`)",
        )
    };
    let Some(token) = header(&headers, "x-paved-token").map(str::to_string) else { return Err(refused()) };
    let notice: paved_control::argocd::HealthNotice = serde_json::from_slice(&body)
        .map_err(|e| ApiError::invalid("body", format!("not a notification paved can read: {e}")))?;
    if !state.control.argocd_secret_matches(&notice.environment, &token).await? {
        return Err(refused());
    }
    let ctx = RequestContext { request_id: request.0.0.clone(), origin: format!("argocd:{}", notice.environment) };
    let caller = paved_control::Caller { actor: "argocd".into(), request: ctx };
    let outcome = state.control.cluster_health(&notice, &caller).await?;
    state.metrics.webhooks.get_or_create(&crate::metrics::OutcomeLabels { outcome: outcome.result.clone() }).inc();
    Ok(axum::Json(HealthAnswer { result: outcome.result, deployments: outcome.deployments, commit: outcome.commit }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_are_checked_over_the_raw_body() {
        let body = br#"{"zen": "Keep it logically awesome."}"#;
        let mut mac = <hmac::Hmac<sha2::Sha256> as KeyInit>::new_from_slice(b"s3cret").unwrap();
        mac.update(body);
        let good = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
        assert!(signature_valid(b"s3cret", body, Some(&good)));
        assert!(!signature_valid(b"other", body, Some(&good)));
        assert!(!signature_valid(b"s3cret", b"{\"zen\": \"changed\"}", Some(&good)));
        assert!(!signature_valid(b"s3cret", body, Some(&good.replace("sha256=", "sha1="))));
        assert!(!signature_valid(b"s3cret", body, Some("sha256=zz")));
        assert!(!signature_valid(b"s3cret", body, None));
    }
}
