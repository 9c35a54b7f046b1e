//! Secrets of environments: names, versions and who set them; values only
//! in, and out through an explicitly granted, always audited reveal.

use crate::AppState;
use crate::api::AccessErrors;
use crate::api::environments::authorised;
use crate::auth::{Authed, spec_target};
use crate::error::{ApiError, ErrorBody};
use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::IntoResponse;
use paved_model::{Kind, Role};
use paved_secrets::{Scope, SecretInfo, SecretValue};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// A secret version as listings show it: never its value.
#[derive(Debug, Serialize, ToSchema)]
pub struct SecretView {
    pub environment: String,
    /// Set when the secret is narrowed to one service.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    pub name: String,
    pub version: i64,
    /// This version records a deletion.
    pub deleted: bool,
    #[schema(value_type = String, format = DateTime)]
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: time::OffsetDateTime,
    pub created_by: String,
}

impl From<SecretInfo> for SecretView {
    fn from(i: SecretInfo) -> SecretView {
        SecretView {
            environment: i.environment,
            service: i.service,
            name: i.name,
            version: i.version,
            deleted: i.deleted,
            created_at: i.created_at,
            created_by: i.created_by,
        }
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ServiceQuery {
    /// The service the secret is narrowed to (none: the environment's own).
    pub service: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RevealQuery {
    pub service: Option<String>,
    /// An earlier version (default: the newest).
    pub version: Option<i64>,
}

/// The value of a new version.
#[derive(Deserialize, ToSchema)]
pub struct SetSecret {
    pub value: String,
}

/// A revealed value, with the version it is.
#[derive(Serialize, ToSchema)]
pub struct RevealedSecret {
    #[serde(flatten)]
    pub secret: SecretView,
    pub value: String,
}

fn scope(environment: &str, service: Option<String>) -> Scope {
    Scope { environment: environment.to_string(), service: service.filter(|s| !s.is_empty()) }
}

/// The secrets of an environment (and its services): newest versions, never values.
#[utoipa::path(get, path = "/api/v1/environments/{name}/secrets", tag = "secrets",
    params(("name" = String, Path), ServiceQuery),
    responses((status = 200, description = "OK", body = Vec<SecretView>), AccessErrors,
        (status = 404, description = "Not found", body = ErrorBody)))]
pub async fn list_secrets(
    State(state): State<AppState>,
    who: Authed,
    Path(name): Path<String>,
    Query(q): Query<ServiceQuery>,
) -> Result<axum::Json<Vec<SecretView>>, ApiError> {
    authorised(&state, &who, &name, Role::Viewer, "secret.list").await?;
    let listed = state.control.list_secrets(&name, q.service.as_deref()).await?;
    Ok(axum::Json(listed.into_iter().map(SecretView::from).collect()))
}

/// Stores a new version of a secret (developers of the environment).
#[utoipa::path(put, path = "/api/v1/environments/{name}/secrets/{secret}", tag = "secrets",
    params(("name" = String, Path), ("secret" = String, Path), ServiceQuery),
    request_body = SetSecret,
    responses((status = 200, description = "Stored; the new version (without its value)", body = SecretView), AccessErrors,
        (status = 404, description = "Not found", body = ErrorBody),
        (status = 422, description = "Invalid name", body = ErrorBody)))]
pub async fn set_secret(
    State(state): State<AppState>,
    who: Authed,
    Path((name, secret)): Path<(String, String)>,
    Query(q): Query<ServiceQuery>,
    body: axum::body::Bytes,
) -> Result<axum::Json<SecretView>, ApiError> {
    // Authorised before the body is read: a caller who may not write learns nothing from parse errors.
    authorised(&state, &who, &name, Role::Developer, "secret.set").await?;
    // The message never quotes the body: it holds the secret.
    let body: SetSecret = serde_json::from_slice(&body).map_err(|e| {
        ApiError::invalid(
            "value",
            format!("the body must be {{\"value\": \"…\"}} (JSON, line {} column {})", e.line(), e.column()),
        )
    })?;
    let value = SecretValue(body.value.into_bytes());
    let info = state.control.set_secret(&who.caller(), &scope(&name, q.service), &secret, &value).await?;
    Ok(axum::Json(info.into()))
}

/// Deletes a secret: a version without a value; the history stays.
#[utoipa::path(delete, path = "/api/v1/environments/{name}/secrets/{secret}", tag = "secrets",
    params(("name" = String, Path), ("secret" = String, Path), ServiceQuery),
    responses((status = 200, description = "Deleted; the deletion's version", body = SecretView), AccessErrors,
        (status = 404, description = "Not found", body = ErrorBody)))]
pub async fn delete_secret(
    State(state): State<AppState>,
    who: Authed,
    Path((name, secret)): Path<(String, String)>,
    Query(q): Query<ServiceQuery>,
) -> Result<axum::Json<SecretView>, ApiError> {
    authorised(&state, &who, &name, Role::Developer, "secret.delete").await?;
    let info = state.control.delete_secret(&who.caller(), &scope(&name, q.service), &secret).await?;
    Ok(axum::Json(info.into()))
}

/// Every version of a secret, oldest first (never values).
#[utoipa::path(get, path = "/api/v1/environments/{name}/secrets/{secret}/versions", tag = "secrets",
    params(("name" = String, Path), ("secret" = String, Path), ServiceQuery),
    responses((status = 200, description = "OK", body = Vec<SecretView>), AccessErrors,
        (status = 404, description = "Not found", body = ErrorBody)))]
pub async fn secret_versions(
    State(state): State<AppState>,
    who: Authed,
    Path((name, secret)): Path<(String, String)>,
    Query(q): Query<ServiceQuery>,
) -> Result<axum::Json<Vec<SecretView>>, ApiError> {
    authorised(&state, &who, &name, Role::Viewer, "secret.history").await?;
    let versions = state.control.secret_history(&scope(&name, q.service), &secret).await?;
    Ok(axum::Json(versions.into_iter().map(SecretView::from).collect()))
}

/// A secret's value: needs a role binding with `revealSecrets: true`;
/// every attempt is audited. Not cached (`Cache-Control: no-store`).
#[utoipa::path(post, path = "/api/v1/environments/{name}/secrets/{secret}/reveal", tag = "secrets",
    params(("name" = String, Path), ("secret" = String, Path), RevealQuery),
    responses((status = 200, description = "The value", body = RevealedSecret), AccessErrors,
        (status = 404, description = "Not found", body = ErrorBody)))]
pub async fn reveal_secret(
    State(state): State<AppState>,
    who: Authed,
    Path((name, secret)): Path<(String, String)>,
    Query(q): Query<RevealQuery>,
) -> Result<impl IntoResponse, ApiError> {
    let scope = scope(&name, q.service);
    let object = state.control.catalog(who.request.clone()).get(Kind::Environment, &name).await?;
    let count = |outcome: &str| {
        state.metrics.reveals.get_or_create(&crate::metrics::OutcomeLabels { outcome: outcome.into() }).inc();
    };
    if let Err(denied) =
        who.allow_reveal(&state, spec_target(&object.spec), "secret.reveal", &scope.target(&secret)).await
    {
        count("denied");
        return Err(denied);
    }
    let revealed = state.control.reveal_secret(&who.caller(), &scope, &secret, q.version).await;
    count(if revealed.is_ok() { "succeeded" } else { "failed" });
    let (info, value) = revealed?;
    let body = RevealedSecret { secret: info.into(), value: String::from_utf8_lossy(&value.0).into_owned() };
    Ok(([(header::CACHE_CONTROL, "no-store")], axum::Json(body)))
}
