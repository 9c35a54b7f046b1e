//! API tokens: issued by admins (the secret is in the response once and
//! never again), listed without secrets, revoked by id.

use crate::AppState;
use crate::api::AccessErrors;
use crate::auth::Authed;
use crate::error::{ApiError, ErrorBody};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use paved_auth::{Request, Target};
use paved_model::Role;
use paved_store::ApiToken;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewToken {
    /// What the token is for (`ci-deploy`).
    pub name: String,
    /// Who it acts as: `user:EMAIL` or `serviceaccount:NAME`.
    pub subject: String,
    /// Lifetime such as `30d`, `12h`; none for a token that lasts until revoked.
    pub expires_in: Option<String>,
}

/// A token as listed: never its secret.
#[derive(Debug, Serialize, ToSchema)]
pub struct TokenView {
    pub id: String,
    pub name: String,
    pub subject: String,
    #[schema(value_type = String, format = DateTime)]
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: time::OffsetDateTime,
    pub created_by: String,
    #[schema(value_type = Option<String>, format = DateTime)]
    #[serde(with = "time::serde::rfc3339::option")]
    pub expires_at: Option<time::OffsetDateTime>,
    #[schema(value_type = Option<String>, format = DateTime)]
    #[serde(with = "time::serde::rfc3339::option")]
    pub revoked_at: Option<time::OffsetDateTime>,
}

impl From<ApiToken> for TokenView {
    fn from(t: ApiToken) -> TokenView {
        TokenView {
            id: t.id,
            name: t.name,
            subject: t.subject,
            created_at: t.created_at,
            created_by: t.created_by,
            expires_at: t.expires_at,
            revoked_at: t.revoked_at,
        }
    }
}

/// A newly issued token; `secret` is shown this once.
#[derive(Debug, Serialize, ToSchema)]
pub struct IssuedTokenView {
    #[serde(flatten)]
    pub token: TokenView,
    pub secret: String,
}

async fn admin(state: &AppState, who: &Authed, action: &str, target: &str) -> Result<(), ApiError> {
    who.allow(state, Request { needs: Role::Admin, on: Target::Organisation }, action, target).await
}

/// Every token issued, revoked and expired ones included, without secrets.
#[utoipa::path(get, path = "/api/v1/tokens", tag = "tokens",
    responses((status = 200, description = "OK", body = Vec<TokenView>), AccessErrors))]
pub async fn list_tokens(State(state): State<AppState>, who: Authed) -> Result<axum::Json<Vec<TokenView>>, ApiError> {
    admin(&state, &who, "token.list", "Token/*").await?;
    let tokens = state.control.store.list_tokens().await?;
    Ok(axum::Json(tokens.into_iter().map(TokenView::from).collect()))
}

/// Issues a token (for a person or a CI service account).
#[utoipa::path(post, path = "/api/v1/tokens", tag = "tokens", request_body = NewToken,
    responses((status = 201, description = "Created; the secret is in this response only", body = IssuedTokenView), (status = 400, description = "A malformed parameter or header (details name it)", body = ErrorBody), AccessErrors, (status = 413, description = "The body is larger than the server accepts", body = ErrorBody), (status = 422, description = "Invalid input (details name each field, with line and column for documents)", body = ErrorBody)))]
pub async fn create_token(
    State(state): State<AppState>,
    who: Authed,
    body: axum::body::Bytes,
) -> Result<(StatusCode, axum::Json<IssuedTokenView>), ApiError> {
    admin(&state, &who, "token.create", "Token/*").await?;
    let new: NewToken = serde_json::from_slice(&body).map_err(|e| {
        let path = e.to_string().split('`').nth(1).unwrap_or("").to_string();
        ApiError::invalid(&path, format!("not a token request: {e}"))
    })?;
    let lifetime =
        match &new.expires_in {
            None => None,
            Some(s) => Some(paved_model::duration::parse_duration(s).ok_or_else(|| {
                ApiError::invalid("expires_in", format!("`{s}` is not a duration such as 30d or 12h"))
            })?),
        };
    let (token, secret) = state.control.issue_token(&who.caller(), &new.name, &new.subject, lifetime).await?;
    if let Err(e) = crate::retire_bootstrap(&state.control, state.config.bootstrap_grace).await {
        tracing::warn!(error = %e, "the bootstrap token could not be retired; it will be at the next start");
    }
    Ok((StatusCode::CREATED, axum::Json(IssuedTokenView { token: token.into(), secret })))
}

/// Revokes a token at once; requests with it get 401 from now on.
#[utoipa::path(delete, path = "/api/v1/tokens/{id}", tag = "tokens", params(("id" = String, Path)),
    responses((status = 204, description = "Done"), AccessErrors, (status = 404, description = "Not found", body = ErrorBody)))]
pub async fn revoke_token(
    State(state): State<AppState>,
    who: Authed,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    admin(&state, &who, "token.revoke", &format!("Token/{id}")).await?;
    if state.control.revoke_token(&who.caller(), &id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found(format!("no live token `{id}` (`GET /api/v1/tokens` lists them)")))
    }
}
