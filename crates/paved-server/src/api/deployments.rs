//! Deployments: artifacts, deploy / rollback / promote, history and the
//! services × environments status matrix.
//!
//! A deploy is checked (access, promotion rules) and recorded before the
//! answer, so refusals come back at once (404, 409) and a retried request
//! (same `requestId`) finds its deployment; the rollout itself runs as an
//! operation (202) followed at `/api/v1/operations/{id}`.

use crate::AppState;
use crate::api::AccessErrors;
use crate::api::environments::authorised;
use crate::auth::Authed;
use crate::error::{ApiError, ErrorBody};
use crate::operations::{Operation, Status};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use paved_auth::{Request, Target};
use paved_control::{DeployRequest, StatusRow};
use paved_model::{EnvType, Kind, Role, Spec};
use paved_store::Deployment;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// Who may change what runs: developers, and for production an operator.
/// One read of the environment's spec, one decision (audited when denied).
async fn allow_change(state: &AppState, who: &Authed, environment: &str, action: &str) -> Result<(), ApiError> {
    let object = state.control.catalog(who.request.clone()).get(Kind::Environment, environment).await?;
    let production = matches!(&object.spec, Spec::Environment(e) if e.spec.env_type == EnvType::Production);
    let needs = if production { Role::Operator } else { Role::Developer };
    let ask = Request { needs, on: crate::auth::spec_target(&object.spec) };
    who.allow(state, ask, action, &format!("Environment/{environment}")).await
}

/// Runs a recorded deployment's rollout as an operation; answers 202 with it.
async fn start(
    state: &AppState,
    who: &Authed,
    deployment: Deployment,
    created: bool,
) -> Result<(StatusCode, axum::Json<Accepted>), ApiError> {
    let op = Operation::running("deploy", &deployment.environment, who, state.control.clock.now());
    if !created {
        // A retried request: nothing runs; the answer is an operation already ended.
        let mut op = op;
        (op.status, op.finished_at) = (Status::Succeeded, Some(op.started_at));
        crate::queue::record_ended(state, &op).await?;
        return Ok((StatusCode::ACCEPTED, axum::Json(Accepted { operation: op, deployment, created })));
    }
    let work = crate::queue::Work::Deploy { deployment: Box::new(deployment.clone()), caller: (&who.caller()).into() };
    let op = crate::queue::accept(state, who, op, work).await?;
    Ok((StatusCode::ACCEPTED, axum::Json(Accepted { operation: op, deployment, created })))
}

/// A deployment recorded and being rolled out.
#[derive(Debug, Serialize, ToSchema)]
pub struct Accepted {
    pub operation: Operation,
    #[schema(value_type = Object)]
    pub deployment: Deployment,
    /// `false`: this request id was seen before; nothing new was deployed.
    pub created: bool,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DeployBody {
    /// `sha256:…` of an artifact pushed for the service.
    pub artifact: String,
    /// `recreate`, `rolling` or `blue-green` (default: the blueprint's).
    pub strategy: Option<String>,
    pub soak_seconds: Option<u64>,
    pub ready_timeout_seconds: Option<u64>,
    /// Exactly once: a request with an id seen before returns that deployment.
    pub request_id: Option<String>,
}

/// A JSON body, read after the caller was authorised (so a forbidden caller learns nothing from parsing).
fn json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::invalid("body", format!("the body is not the JSON this route takes: {e}")))
}

fn request_id(who: &Authed, given: Option<String>) -> String {
    given.unwrap_or_else(|| who.request.request_id.clone())
}

/// Deploys an artifact of a service to the environment.
#[utoipa::path(post, path = "/api/v1/environments/{name}/services/{service}/deployments", tag = "deployments",
    params(("name" = String, Path), ("service" = String, Path)), request_body = DeployBody,
    responses((status = 202, description = "Recorded; the rollout runs as an operation", body = Accepted), AccessErrors,
        (status = 404, description = "Unknown environment, service or artifact", body = ErrorBody),
        (status = 409, description = "Refused by the promotion rules", body = ErrorBody),
        (status = 422, description = "Invalid input", body = ErrorBody)))]
pub async fn deploy(
    State(state): State<AppState>,
    who: Authed,
    Path((name, service)): Path<(String, String)>,
    body: axum::body::Bytes,
) -> Result<(StatusCode, axum::Json<Accepted>), ApiError> {
    allow_change(&state, &who, &name, "deployment.create").await?;
    let body: DeployBody = json(&body)?;
    let strategy = body
        .strategy
        .as_deref()
        .map(|s| {
            paved_model::Strategy::parse(s)
                .ok_or_else(|| ApiError::invalid("strategy", format!("`{s}` is not recreate, rolling or blue-green")))
        })
        .transpose()?;
    let req = DeployRequest {
        service,
        environment: name,
        artifact: body.artifact,
        strategy,
        soak: body.soak_seconds.map(std::time::Duration::from_secs),
        ready_timeout: body.ready_timeout_seconds.map(std::time::Duration::from_secs),
        request_id: request_id(&who, body.request_id),
    };
    let (deployment, created) = state.control.record_deployment(&req, &who.caller()).await?;
    start(&state, &who, deployment, created).await
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RollbackBody {
    /// The deployment number to return to (default: the last healthy one before the current).
    pub to: Option<i64>,
    pub request_id: Option<String>,
}

/// Deploys again the artifact of an earlier healthy deployment.
#[utoipa::path(post, path = "/api/v1/environments/{name}/services/{service}/rollback", tag = "deployments",
    params(("name" = String, Path), ("service" = String, Path)), request_body = RollbackBody,
    responses((status = 202, description = "Recorded; the rollout runs as an operation", body = Accepted), AccessErrors,
        (status = 404, description = "Not found", body = ErrorBody),
        (status = 409, description = "Nothing healthy to roll back to", body = ErrorBody)))]
pub async fn rollback(
    State(state): State<AppState>,
    who: Authed,
    Path((name, service)): Path<(String, String)>,
    body: axum::body::Bytes,
) -> Result<(StatusCode, axum::Json<Accepted>), ApiError> {
    allow_change(&state, &who, &name, "deployment.rollback").await?;
    let body: RollbackBody = if body.is_empty() { RollbackBody::default() } else { json(&body)? };
    let id = request_id(&who, body.request_id);
    let (deployment, created) = state.control.record_rollback(&service, &name, body.to, &id, &who.caller()).await?;
    start(&state, &who, deployment, created).await
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PromoteBody {
    /// The environment whose healthy digest is deployed here.
    pub from: String,
    pub request_id: Option<String>,
}

/// Deploys to this environment the digest that is healthy in `from`.
#[utoipa::path(post, path = "/api/v1/environments/{name}/services/{service}/promote", tag = "deployments",
    params(("name" = String, Path), ("service" = String, Path)), request_body = PromoteBody,
    responses((status = 202, description = "Recorded; the rollout runs as an operation", body = Accepted), AccessErrors,
        (status = 404, description = "Not found", body = ErrorBody),
        (status = 409, description = "The source is not healthy, or the promotion order refuses it", body = ErrorBody)))]
pub async fn promote(
    State(state): State<AppState>,
    who: Authed,
    Path((name, service)): Path<(String, String)>,
    body: axum::body::Bytes,
) -> Result<(StatusCode, axum::Json<Accepted>), ApiError> {
    allow_change(&state, &who, &name, "deployment.promote").await?;
    let body: PromoteBody = json(&body)?;
    authorised(&state, &who, &body.from, Role::Viewer, "deployment.promote").await?;
    let id = request_id(&who, body.request_id);
    let (deployment, created) = state.control.record_promotion(&service, &body.from, &name, &id, &who.caller()).await?;
    start(&state, &who, deployment, created).await
}

/// A service's deployments to the environment, oldest first (kept forever).
#[utoipa::path(get, path = "/api/v1/environments/{name}/services/{service}/deployments", tag = "deployments",
    params(("name" = String, Path), ("service" = String, Path)),
    responses((status = 200, description = "OK", body = Vec<Object>), AccessErrors, (status = 404, description = "Not found", body = ErrorBody)))]
pub async fn deployment_history(
    State(state): State<AppState>,
    who: Authed,
    Path((name, service)): Path<(String, String)>,
) -> Result<axum::Json<Vec<Deployment>>, ApiError> {
    authorised(&state, &who, &name, Role::Viewer, "deployment.list").await?;
    Ok(axum::Json(state.control.history(&service, &name).await?))
}

/// The environments the caller may view, by name.
async fn visible_environments(state: &AppState, who: &Authed) -> Result<Vec<String>, ApiError> {
    let catalog = state.control.catalog(who.request.clone());
    let objects = catalog.list(Some(Kind::Environment)).await?;
    Ok(who
        .visible(state, objects)
        .await?
        .into_iter()
        .filter_map(|o| match o.spec {
            Spec::Environment(e) => Some(e.metadata.name),
            _ => None,
        })
        .collect())
}

/// What runs where: one row per service and environment (of the environments the caller may view).
#[utoipa::path(get, path = "/api/v1/status", tag = "deployments",
    responses((status = 200, description = "OK", body = Vec<Object>), AccessErrors))]
pub async fn status(State(state): State<AppState>, who: Authed) -> Result<axum::Json<Vec<StatusRow>>, ApiError> {
    Ok(axum::Json(status_rows(&state, &who).await?))
}

/// The matrix the API and the console show, narrowed to what the caller may view.
pub(crate) async fn status_rows(state: &AppState, who: &Authed) -> Result<Vec<StatusRow>, ApiError> {
    let visible = visible_environments(state, who).await?;
    let mut rows = state.control.status_matrix().await?;
    rows.retain(|r| visible.contains(&r.environment));
    Ok(rows)
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ArtifactQuery {
    pub service: Option<String>,
}

/// Artifacts, newest first.
#[utoipa::path(get, path = "/api/v1/artifacts", tag = "deployments", params(ArtifactQuery),
    responses((status = 200, description = "OK", body = Vec<Object>), AccessErrors))]
pub async fn artifacts(
    State(state): State<AppState>,
    who: Authed,
    Query(q): Query<ArtifactQuery>,
) -> Result<axum::Json<Vec<paved_store::Artifact>>, ApiError> {
    who.allow(&state, Request { needs: Role::Viewer, on: Target::Anywhere }, "artifact.list", "Artifact/*").await?;
    Ok(axum::Json(state.control.store.artifacts(q.service.as_deref()).await?))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(rename_all = "camelCase")]
pub struct DoraQuery {
    /// Days back from now (default 30).
    pub window_days: Option<u32>,
}

/// DORA figures of production, per service and per team (`service` null).
#[utoipa::path(get, path = "/api/v1/dora", tag = "deployments", params(DoraQuery),
    responses((status = 200, description = "OK", body = Vec<Object>), AccessErrors))]
pub async fn dora(
    State(state): State<AppState>,
    who: Authed,
    Query(q): Query<DoraQuery>,
) -> Result<axum::Json<Vec<paved_control::Dora>>, ApiError> {
    who.allow(&state, Request { needs: Role::Viewer, on: Target::Anywhere }, "dora.get", "Deployment/*").await?;
    let days = q.window_days.unwrap_or(30).clamp(1, 3650);
    Ok(axum::Json(state.control.dora(days).await?))
}
