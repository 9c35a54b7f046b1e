//! Cloud accounts: what a platform engineer installs once for keyless access.

use crate::AppState;
use crate::api::AccessErrors;
use crate::auth::Authed;
use crate::error::{ApiError, ErrorBody};
use axum::extract::{Path, Query, State};
use paved_auth::{Request, Target};
use paved_model::Role;
use serde::Deserialize;
use utoipa::IntoParams;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TrustQuery {
    /// Also admit paved's own control-plane token (for a KMS key-encryption key in this account).
    #[serde(default)]
    pub control_plane: bool,
}

/// The IAM OIDC provider and role trust policy that let paved assume the
/// account's role with its own tokens, for that account's environments only.
#[utoipa::path(get, path = "/api/v1/accounts/{name}/trust-policy", tag = "identity",
    params(("name" = String, Path), TrustQuery),
    responses((status = 200, description = "OIDC provider and trust policy", body = Object), AccessErrors,
        (status = 404, description = "Not found", body = ErrorBody),
        (status = 422, description = "Not an AWS account with a role", body = ErrorBody)))]
pub async fn trust_policy(
    State(state): State<AppState>,
    who: Authed,
    Path(name): Path<String>,
    Query(q): Query<TrustQuery>,
) -> Result<axum::Json<paved_control::TrustSetup>, ApiError> {
    who.allow(
        &state,
        Request { needs: Role::Operator, on: Target::Organisation },
        "account.trust-policy",
        &format!("CloudAccount/{name}"),
    )
    .await?;
    Ok(axum::Json(state.control.trust_setup(&name, q.control_plane).await?))
}
