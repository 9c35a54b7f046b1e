//! The `/api/v1` routes. Each handler carries its OpenAPI description
//! (`#[utoipa::path]`), and [`router`] builds routes and document from the
//! same list, so no route can be served undocumented.

pub mod accounts;
pub mod audit;
pub mod deployments;
pub mod environments;
pub mod operations;
pub mod secrets;
pub mod specs;
pub mod system;
pub mod tokens;
pub mod webhooks;

use crate::AppState;
use serde::Serialize;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

#[derive(OpenApi)]
#[openapi(
    info(title = "paved", description = "paved's control-plane API: specs, environments, operations, audit log, tokens."),
    modifiers(&BearerAuth),
    security(("token" = [])),
    tags(
        (name = "specs", description = "Blueprints, accounts, environments, teams, role bindings and Score services as versioned desired state"),
        (name = "environments", description = "Plan, apply, destroy and drift of environments"),
        (name = "deployments", description = "Artifacts by digest, deployments with their health gate, rollback, promotion and what runs where"),
        (name = "operations", description = "Progress of applies and destroys"),
        (name = "audit", description = "The tamper-evident audit log"),
        (name = "secrets", description = "Secrets of environments: never listed with values; reveals are granted explicitly and audited"),
        (name = "tokens", description = "API tokens"),
        (name = "system", description = "Health, metrics and identity"),
        (name = "identity", description = "paved as an OpenID Connect issuer: discovery and signing keys"),
    )
)]
struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "token",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).bearer_format("pvd_…").build()),
        );
    }
}

/// The answers of every route that needs a token: 401 without a usable one,
/// 403 when the caller's role bindings do not allow it (audited).
#[derive(utoipa::IntoResponses)]
pub enum AccessErrors {
    /// No token, or an unknown, expired or revoked one.
    #[response(status = 401)]
    Unauthenticated(crate::error::ErrorBody),
    /// The caller's role bindings do not allow it (audited).
    #[response(status = 403)]
    Forbidden(crate::error::ErrorBody),
}

/// A page of a listing; pass `next` back as `after` for the following one.
#[derive(Debug, Serialize, ToSchema)]
pub struct Page<T: ToSchema> {
    pub items: Vec<T>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

/// Largest page a listing returns.
pub const MAX_LIMIT: usize = 1000;

/// Clamps a requested page size.
pub fn page_size(limit: Option<usize>) -> usize {
    limit.unwrap_or(100).clamp(1, MAX_LIMIT)
}

/// A page from `limit + 1` items read from the store: the extra one only says there is more.
pub fn page_of<T: ToSchema>(mut items: Vec<T>, limit: usize, key: impl Fn(&T) -> String) -> Page<T> {
    let next = if items.len() > limit { items.get(limit - 1).map(&key) } else { None };
    items.truncate(limit);
    Page { items, next }
}

/// Cuts a sorted listing after the `after` key, at most `limit` items.
pub fn paginate<T: ToSchema>(
    items: Vec<T>,
    key: impl Fn(&T) -> String,
    after: Option<&str>,
    limit: Option<usize>,
) -> Page<T> {
    let limit = limit.unwrap_or(100).clamp(1, MAX_LIMIT);
    let mut rest: Vec<T> = items.into_iter().filter(|i| after.is_none_or(|a| key(i).as_str() > a)).collect();
    let next = if rest.len() > limit { rest.get(limit - 1).map(&key) } else { None };
    rest.truncate(limit);
    Page { items: rest, next }
}

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(system::healthz))
        .routes(routes!(system::readyz))
        .routes(routes!(system::metrics))
        .routes(routes!(system::whoami))
        .routes(routes!(system::openid_configuration))
        .routes(routes!(system::jwks))
        .routes(routes!(accounts::trust_policy))
        .routes(routes!(specs::list_specs, specs::record_specs))
        .routes(routes!(specs::get_spec, specs::put_spec, specs::delete_spec))
        .routes(routes!(specs::spec_history))
        .routes(routes!(environments::list_environments))
        .routes(routes!(environments::get_environment))
        .routes(routes!(environments::plan_environment))
        .routes(routes!(environments::apply_environment))
        .routes(routes!(environments::destroy_environment))
        .routes(routes!(environments::drift_environment))
        .routes(routes!(environments::parity_environment))
        .routes(routes!(environments::render_environment))
        .routes(routes!(environments::deliver_environment))
        .routes(routes!(environments::service_logs))
        .routes(routes!(secrets::list_secrets))
        .routes(routes!(secrets::set_secret, secrets::delete_secret))
        .routes(routes!(secrets::secret_versions))
        .routes(routes!(secrets::reveal_secret))
        .routes(routes!(deployments::deploy, deployments::deployment_history))
        .routes(routes!(deployments::rollback))
        .routes(routes!(deployments::promote))
        .routes(routes!(deployments::status))
        .routes(routes!(deployments::artifacts))
        .routes(routes!(deployments::dora))
        .routes(routes!(webhooks::github))
        .routes(routes!(webhooks::argocd))
        .routes(routes!(operations::get_operation))
        .routes(routes!(operations::operation_events))
        .routes(routes!(audit::list_audit))
        .routes(routes!(audit::verify_audit))
        .routes(routes!(tokens::list_tokens, tokens::create_token))
        .routes(routes!(tokens::revoke_token))
}
