//! Who is calling (a bearer token, or the console's cookie holding one), and
//! whether they may: every handler asks [`Authed::allow`] before acting, and
//! a refusal is a 403 recorded in the audit log.

use crate::AppState;
use crate::error::ApiError;
use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use paved_auth::{Decision, Policy, Request};
use paved_control::Caller;
use paved_model::{Kind, Spec};
use paved_store::{AuditOutcome, RequestContext};
use std::net::SocketAddr;

/// The subject the bootstrap admin token acts as; it holds the built-in
/// [`BOOTSTRAP_BINDING`] (organisation admin, production included).
pub const BOOTSTRAP_SUBJECT: &str = "serviceaccount:paved-bootstrap-admin";
pub const BOOTSTRAP_BINDING: &str = "builtin:bootstrap-admin";

/// The console keeps the token in this cookie (HttpOnly, SameSite=Strict).
pub const COOKIE: &str = "paved_token";

/// The request id of this request (from `X-Request-Id`, else generated).
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

/// An authenticated request: who, and the context the audit log records.
#[derive(Debug, Clone)]
pub struct Authed {
    pub subject: String,
    pub token_id: String,
    pub request: RequestContext,
    /// The audit head when the request was authenticated (see [`crate::AccessCache`]).
    pub head: i64,
    /// The applied-resources clock read with it ([`paved_store::Heads`]).
    pub applied: i64,
}

impl Authed {
    pub fn caller(&self) -> Caller {
        Caller { actor: self.subject.clone(), request: self.request.clone() }
    }

    /// Whether `ask` would be allowed, without recording anything: for
    /// narrowing listings to what the caller may see.
    pub async fn can(&self, state: &AppState, ask: Request<'_>) -> Result<bool, ApiError> {
        let inputs = state.policy_inputs(self.head).await?;
        Ok(Policy { bindings: &inputs.bindings, teams: &inputs.teams }.decide(&self.subject, &ask).allowed())
    }

    /// Keeps the objects the caller may view.
    pub async fn visible<O: std::borrow::Borrow<paved_catalog::Object>>(
        &self,
        state: &AppState,
        objects: impl IntoIterator<Item = O>,
    ) -> Result<Vec<O>, ApiError> {
        let mut out = Vec::new();
        for o in objects {
            let on = spec_target(&o.borrow().spec);
            if self.can(state, Request { needs: paved_model::Role::Viewer, on }).await? {
                out.push(o);
            }
        }
        Ok(out)
    }

    /// Decides `ask`; a denial is audited as `action` on `target` and becomes a 403.
    pub async fn allow(&self, state: &AppState, ask: Request<'_>, action: &str, target: &str) -> Result<(), ApiError> {
        let inputs = state.policy_inputs(self.head).await?;
        let decision = Policy { bindings: &inputs.bindings, teams: &inputs.teams }.decide(&self.subject, &ask);
        self.enforce(state, decision, ask.needs.as_str(), action, target).await
    }

    /// May the caller read secret values on `on` (an explicit grant, see
    /// `Policy::decide_reveal`)? A denial is audited and becomes a 403.
    pub async fn allow_reveal(
        &self,
        state: &AppState,
        on: paved_auth::Target<'_>,
        action: &str,
        target: &str,
    ) -> Result<(), ApiError> {
        let inputs = state.policy_inputs(self.head).await?;
        let decision = Policy { bindings: &inputs.bindings, teams: &inputs.teams }.decide_reveal(&self.subject, on);
        self.enforce(state, decision, "revealSecrets", action, target).await
    }

    async fn enforce(
        &self,
        state: &AppState,
        decision: Decision,
        needs: &str,
        action: &str,
        target: &str,
    ) -> Result<(), ApiError> {
        match decision {
            Decision::Allowed { .. } => Ok(()),
            Decision::Denied { reason } => {
                tracing::warn!(request_id = %self.request.request_id, subject = %self.subject, action, target, %reason, "denied");
                state
                    .control
                    .record(
                        &self.caller(),
                        action,
                        target.to_string(),
                        AuditOutcome::Denied,
                        None,
                        serde_json::json!({"reason": reason, "needs": needs, "token": self.token_id}),
                    )
                    .await?;
                state.metrics.denied.inc();
                Err(ApiError::forbidden(reason))
            }
        }
    }
}

fn presented_token(parts: &Parts) -> Option<String> {
    if let Some(v) = parts.headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) {
        return Some(v.strip_prefix("Bearer ").unwrap_or(v).trim().to_string());
    }
    parts
        .headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|c| c.trim().strip_prefix(COOKIE).and_then(|r| r.strip_prefix('=')).map(str::to_string))
}

pub fn request_context(parts: &Parts) -> RequestContext {
    let request_id = parts.extensions.get::<RequestId>().map(|r| r.0.clone()).unwrap_or_default();
    let origin = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(a)| a.ip().to_string())
        .unwrap_or_else(|| "unknown".into());
    RequestContext { request_id, origin }
}

impl FromRequestParts<AppState> for Authed {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Authed, ApiError> {
        let presented = presented_token(parts).ok_or_else(|| {
            ApiError::unauthenticated(
                "no API token: send `Authorization: Bearer pvd_…` (`paved token create` makes one)",
            )
        })?;
        let hash = paved_auth::token::parse(&presented).map_err(|e| ApiError::unauthenticated(e.to_string()))?;
        // The head first: whatever is read after it is at least as new.
        let paved_store::Heads { audit: head, applied } = state.control.store.heads().await?;
        let token = match state.access.token(head, &hash) {
            Some(cached) => cached,
            None => {
                let found = state.control.store.token_by_hash(&hash).await?;
                state.access.put_token(head, &hash, found.clone());
                found
            }
        };
        let token = token.ok_or_else(|| ApiError::unauthenticated("unknown API token"))?;
        if let Some(why) = token.unusable_at(state.control.clock.now()) {
            return Err(ApiError::unauthenticated(format!("API token {} is {why}", token.id)));
        }
        if let Err(not_until) = state.limiter.check_key(&token.id) {
            let wait = not_until.wait_time_from(governor::clock::Clock::now(&governor::clock::DefaultClock::default()));
            let mut e = ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate-limited",
                format!("too many requests with token {}; retry in {} ms", token.id, wait.as_millis().max(1)),
            );
            e.retry_after = Some(HeaderValue::from(wait.as_secs().max(1)));
            return Err(e);
        }
        Ok(Authed { subject: token.subject, token_id: token.id, request: request_context(parts), head, applied })
    }
}

/// Who owns what a spec describes, for scoping decisions.
pub fn spec_target(spec: &Spec) -> paved_auth::Target<'_> {
    use paved_auth::Target;
    match spec {
        Spec::Environment(e) => Target::Environment {
            name: &e.metadata.name,
            owner: &e.spec.owner,
            production: e.spec.env_type == paved_model::EnvType::Production,
        },
        Spec::Service(w) => {
            Target::Service { name: &w.metadata.name, owner: w.annotation(paved_model::score::ANNOTATION_OWNER) }
        }
        Spec::Team(_)
        | Spec::RoleBinding(_)
        | Spec::Blueprint(_)
        | Spec::CloudAccount(_)
        | Spec::Policy(_)
        | Spec::PolicyException(_) => Target::Organisation,
    }
}

/// The least role that may record or delete a spec of this kind.
pub fn role_to_write(kind: Kind) -> paved_model::Role {
    use paved_model::Role;
    match kind {
        Kind::Service | Kind::Environment => Role::Developer,
        // An exception waives a guardrail for someone: the platform team's call, not the developer's.
        Kind::Blueprint | Kind::CloudAccount | Kind::PolicyException => Role::Operator,
        Kind::Team | Kind::RoleBinding | Kind::Policy => Role::Admin,
    }
}
