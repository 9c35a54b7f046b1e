//! Health, readiness, metrics and "who am I".

use crate::AppState;
use crate::auth::Authed;
use crate::error::{ApiError, ErrorBody};
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use serde::Serialize;
use utoipa::ToSchema;

#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    pub status: String,
}

/// Liveness: the process answers.
#[utoipa::path(get, path = "/healthz", tag = "system", security(()), responses((status = 200, description = "OK", body = Health)))]
pub async fn healthz() -> axum::Json<Health> {
    axum::Json(Health { status: "ok".into() })
}

/// What `/readyz` says of this replica.
#[derive(Debug, Serialize, ToSchema)]
pub struct Readiness {
    /// `ready`.
    pub status: String,
    /// This replica's name (`--replica-id`).
    pub replica: String,
    /// Whether this replica holds the background lease (runs the reconciler,
    /// the git loop and audit checkpoints); every replica serves the API.
    pub leader: bool,
    /// The lease's fencing token, while this replica holds it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lease_token: Option<i64>,
}

/// How long readiness waits for the state store: a replica cut off from
/// its database (a partition holds queries, it does not refuse them) must
/// answer "not ready" before a load balancer's probe gives up on it.
const READY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// Readiness: the state store answers (within two seconds).
#[utoipa::path(get, path = "/readyz", tag = "system", security(()),
    responses((status = 200, description = "OK", body = Readiness), (status = 503, description = "Not ready: the state store failed or did not answer within 2 s", body = ErrorBody)))]
pub async fn readyz(State(state): State<AppState>) -> Result<axum::Json<Readiness>, ApiError> {
    let not_ready = |why: String| {
        ApiError::new(axum::http::StatusCode::SERVICE_UNAVAILABLE, "not-ready", format!("state store: {why}"))
    };
    match tokio::time::timeout(READY_TIMEOUT, state.control.store.get("Team", "")).await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => return Err(not_ready(e.to_string())),
        Err(_) => return Err(not_ready(format!("no answer within {READY_TIMEOUT:?}"))),
    }
    let lease_token = state.leadership.held();
    Ok(axum::Json(Readiness {
        status: "ready".into(),
        replica: state.replica.clone(),
        leader: lease_token.is_some(),
        lease_token,
    }))
}

/// Prometheus / OpenMetrics text exposition.
#[utoipa::path(get, path = "/metrics", tag = "system", security(()),
    responses((status = 200, description = "OpenMetrics text", content_type = "application/openmetrics-text")))]
pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    let now = state.control.clock.now();
    state.metrics.refresh_dora(now, state.config.metrics_refresh, || state.control.dora(30)).await;
    ([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], state.metrics.encode())
}

#[derive(Debug, Serialize, ToSchema)]
pub struct WhoAmI {
    pub subject: String,
    pub token: String,
    /// The subjects this caller acts as (itself and its teams).
    pub acts_as: Vec<String>,
    /// Role bindings that name one of them.
    pub bindings: Vec<String>,
}

/// The caller's identity and role bindings.
#[utoipa::path(get, path = "/api/v1/whoami", tag = "system",
    responses((status = 200, description = "OK", body = WhoAmI), (status = 401, description = "No token, or an unknown, expired or revoked one", body = ErrorBody)))]
pub async fn whoami(State(state): State<AppState>, who: Authed) -> Result<axum::Json<WhoAmI>, ApiError> {
    let inputs = state.policy_inputs(who.head).await?;
    let acts_as = paved_auth::Policy { bindings: &inputs.bindings, teams: &inputs.teams }.subjects_of(&who.subject);
    let bindings = inputs
        .bindings
        .iter()
        .filter(|b| b.spec.subjects.iter().any(|s| acts_as.contains(&s.0)))
        .map(|b| {
            format!(
                "{}: {} on {}{}",
                b.metadata.name,
                b.spec.role,
                b.spec.scope,
                if b.spec.production { " (production)" } else { "" }
            )
        })
        .collect();
    Ok(axum::Json(WhoAmI { subject: who.subject, token: who.token_id, acts_as, bindings }))
}

/// OpenID Provider metadata of paved's issuer: how clouds (AWS IAM OIDC
/// providers, GCP workload identity pools, Azure federated credentials)
/// find the keys that verify paved's tokens.
#[utoipa::path(get, path = "/.well-known/openid-configuration", tag = "identity", security(()),
    responses((status = 200, description = "OpenID Provider metadata", body = Object)))]
pub async fn openid_configuration(State(state): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    let issuer = state.control.issuer().await?;
    Ok(([(header::CACHE_CONTROL, "public, max-age=300")], axum::Json(issuer.discovery())))
}

/// The issuer's public keys (JWKS): every key that signs now, the next one
/// before it does, and retired ones until their tokens have expired.
#[utoipa::path(get, path = "/.well-known/jwks.json", tag = "identity", security(()),
    responses((status = 200, description = "JSON Web Key Set", body = Object)))]
pub async fn jwks(State(state): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    let keys = state.control.issuer().await?.jwks().await.map_err(paved_control::IdentityFailure::from)?;
    Ok(([(header::CACHE_CONTROL, "public, max-age=300")], axum::Json(keys)))
}
