//! Environments: what is recorded and applied, plan, apply, destroy, drift.

use crate::AppState;
use crate::api::AccessErrors;
use crate::api::Page;
use crate::auth::{Authed, spec_target};
use crate::error::{ApiError, ErrorBody};
use crate::operations::Operation;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use paved_auth::{Request, Target};
use paved_model::{Kind, Role, Spec};
use paved_plan::ResourceGraph;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use utoipa::{IntoParams, ToSchema};

#[derive(Debug, Serialize, ToSchema)]
pub struct EnvironmentSummary {
    pub name: String,
    #[serde(rename = "type")]
    pub env_type: String,
    pub owner: String,
    pub blueprint: String,
    pub account: String,
    pub region: String,
    pub generation: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AppliedResource {
    pub id: String,
    #[schema(value_type = String, format = DateTime)]
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: time::OffsetDateTime,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct EnvironmentDetail {
    #[serde(flatten)]
    pub summary: EnvironmentSummary,
    /// Resources as applied (outputs are not shown: they can hold credentials).
    pub resources: Vec<AppliedResource>,
    /// Route URLs of the environment's services.
    pub urls: BTreeMap<String, String>,
    /// The latest apply or destroy in the audit log.
    #[schema(value_type = Option<Object>)]
    pub last_operation: Option<serde_json::Value>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    pub after: Option<String>,
    pub limit: Option<usize>,
}

fn summary(e: &paved_model::Environment, generation: i64) -> EnvironmentSummary {
    EnvironmentSummary {
        name: e.metadata.name.clone(),
        env_type: e.spec.env_type.to_string(),
        owner: e.spec.owner.clone(),
        blueprint: e.spec.blueprint.0.clone(),
        account: e.spec.account.clone(),
        region: e.spec.region.clone(),
        generation,
    }
}

/// The environment's spec, after checking the caller holds `needs` on it.
pub(crate) async fn authorised(
    state: &AppState,
    who: &Authed,
    name: &str,
    needs: Role,
    action: &str,
) -> Result<(paved_model::Environment, i64), ApiError> {
    let object = state.object(who.head, Kind::Environment, name).await?;
    who.allow(state, Request { needs, on: spec_target(&object.spec) }, action, &format!("Environment/{name}")).await?;
    match &object.spec {
        Spec::Environment(e) => Ok((e.clone(), object.record.generation)),
        _ => Err(ApiError::internal("an Environment record holds another kind")),
    }
}

/// Every recorded environment, by name.
#[utoipa::path(get, path = "/api/v1/environments", tag = "environments", params(ListQuery),
    responses((status = 200, description = "OK", body = Page<EnvironmentSummary>), AccessErrors))]
pub async fn list_environments(
    State(state): State<AppState>,
    who: Authed,
    Query(q): Query<ListQuery>,
) -> Result<Response, ApiError> {
    who.allow(&state, Request { needs: Role::Viewer, on: Target::Anywhere }, "environment.list", "Environment/*")
        .await?;
    let limit = crate::api::page_size(q.limit);
    let after = q.after.as_deref().unwrap_or("");
    state
        .rendered(&who, &format!("environments\0{after}\0{limit}"), 0, || async {
            let page = state.page(who.head, Kind::Environment, after, limit + 1).await?;
            // `next` comes from what the store returned; the page holds what the caller may see.
            let next = if page.len() > limit { page.get(limit - 1).map(|o| o.record.name.clone()) } else { None };
            let items = who
                .visible(&state, page.iter().take(limit))
                .await?
                .iter()
                .filter_map(|o| match &o.spec {
                    Spec::Environment(e) => Some(summary(e, o.record.generation)),
                    _ => None,
                })
                .collect();
            serde_json::to_vec(&Page { items, next }).map_err(ApiError::internal)
        })
        .await
}

/// One environment: its spec summary, applied resources, URLs and latest operation.
#[utoipa::path(get, path = "/api/v1/environments/{name}", tag = "environments", params(("name" = String, Path)),
    responses((status = 200, description = "OK", body = EnvironmentDetail), AccessErrors, (status = 404, description = "Not found", body = ErrorBody)))]
pub async fn get_environment(
    State(state): State<AppState>,
    who: Authed,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let (env, generation) = authorised(&state, &who, &name, Role::Viewer, "environment.get").await?;
    // It shows applied resources: rendered again when the applied clock moves.
    state
        .rendered(&who, &format!("environment\0{name}"), who.applied, || async {
            let nodes = state.control.store.applied_nodes(&name).await?;
            let urls = paved_control::route_urls(&nodes).into_iter().collect();
            let resources =
                nodes.into_iter().map(|n| AppliedResource { id: n.node_id, updated_at: n.updated_at }).collect();
            let last_operation =
                state.last_operation(who.head, &name).await?.and_then(|e| serde_json::to_value(e.event).ok());
            let detail = EnvironmentDetail { summary: summary(&env, generation), resources, urls, last_operation };
            serde_json::to_vec(&detail).map_err(ApiError::internal)
        })
        .await
}

/// What applying the environment would change (nothing is changed).
#[utoipa::path(get, path = "/api/v1/environments/{name}/plan", tag = "environments", params(("name" = String, Path)),
    responses((status = 200, description = "The plan: each node's action and field changes", body = Object),
        AccessErrors, (status = 404, description = "Not found", body = ErrorBody), (status = 422, description = "Invalid input (details name each field, with line and column for documents)", body = ErrorBody)))]
pub async fn plan_environment(
    State(state): State<AppState>,
    who: Authed,
    Path(name): Path<String>,
) -> Result<axum::Json<serde_json::Value>, ApiError> {
    authorised(&state, &who, &name, Role::Viewer, "environment.plan").await?;
    let catalog = state.control.catalog(who.request.clone());
    let (graph, _) = state.control.desired_graph(&catalog, &name).await?;
    let applied = state.control.engine().recorded(&name, graph.provider).await?;
    let mut plan = paved_plan::diff(&graph, Some(&applied))
        .map_err(|e| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "unplannable", e.to_string()))?;
    for key in state.control.missing_secrets(&catalog, &graph).await? {
        let (service, secret) = key.split_once('/').unwrap_or(("", key.as_str()));
        plan.warnings
            .push(format!("secret `{secret}` (used by `{service}`) is not set for {name}; the apply would fail on it"));
    }
    Ok(axum::Json(serde_json::to_value(&plan).map_err(ApiError::internal)?))
}

/// Records an operation and starts it in the background; answers with it
/// (202). Any replica answers for it, and one finishes it if this one dies.
pub(crate) async fn start(
    state: &AppState,
    who: &Authed,
    operation: &str,
    desired: ResourceGraph,
) -> Result<(StatusCode, axum::Json<Operation>), ApiError> {
    let mut op = Operation::running(operation, &desired.environment, who, state.control.clock.now());
    op.blocked = desired.blocked.clone();
    let work = crate::queue::Work::Graph { graph: desired, caller: (&who.caller()).into() };
    let op = crate::queue::accept(state, who, op, work).await?;
    Ok((StatusCode::ACCEPTED, axum::Json(op)))
}

/// Brings the environment to its recorded specs. Returns an operation at once
/// (202); follow it at `/api/v1/operations/{id}` or its `/events` stream.
#[utoipa::path(post, path = "/api/v1/environments/{name}/apply", tag = "environments", params(("name" = String, Path)),
    responses((status = 202, description = "Accepted: the operation runs in the background", body = Operation), AccessErrors,
        (status = 404, description = "Not found", body = ErrorBody), (status = 422, description = "Invalid input (details name each field, with line and column for documents)", body = ErrorBody)))]
pub async fn apply_environment(
    State(state): State<AppState>,
    who: Authed,
    Path(name): Path<String>,
) -> Result<(StatusCode, axum::Json<Operation>), ApiError> {
    authorised(&state, &who, &name, Role::Developer, "environment.apply").await?;
    let catalog = state.control.catalog(who.request.clone());
    let (graph, _) = state.control.desired_graph(&catalog, &name).await?;
    start(&state, &who, "apply", graph).await
}

/// Removes every resource of the environment (the spec stays). Returns an operation (202).
#[utoipa::path(post, path = "/api/v1/environments/{name}/destroy", tag = "environments", params(("name" = String, Path)),
    responses((status = 202, description = "Accepted: the operation runs in the background", body = Operation), AccessErrors, (status = 404, description = "Not found", body = ErrorBody)))]
pub async fn destroy_environment(
    State(state): State<AppState>,
    who: Authed,
    Path(name): Path<String>,
) -> Result<(StatusCode, axum::Json<Operation>), ApiError> {
    authorised(&state, &who, &name, Role::Operator, "environment.destroy").await?;
    let graph = state.control.empty_graph(&name).await?;
    start(&state, &who, "destroy", graph).await
}

/// Compares what runs with what was applied.
#[utoipa::path(get, path = "/api/v1/environments/{name}/drift", tag = "environments", params(("name" = String, Path)),
    responses((status = 200, description = "Each applied resource and whether it drifted", body = Object),
        AccessErrors, (status = 404, description = "Not found", body = ErrorBody)))]
pub async fn drift_environment(
    State(state): State<AppState>,
    who: Authed,
    Path(name): Path<String>,
) -> Result<axum::Json<serde_json::Value>, ApiError> {
    authorised(&state, &who, &name, Role::Viewer, "environment.drift").await?;
    let report = state.control.drift(&name).await?;
    let drifted = report.nodes.iter().filter(|n| n.status != paved_engine::DriftStatus::InSync).count();
    state.metrics.drift_findings.inc_by(drifted as u64);
    let mut value = serde_json::to_value(&report).map_err(ApiError::internal)?;
    value["drifted"] = serde_json::json!(report.drifted());
    Ok(axum::Json(value))
}

/// A cluster environment's Kubernetes manifests, as `paved render` writes them.
#[derive(Debug, Serialize, ToSchema)]
pub struct Rendered {
    pub environment: String,
    /// Path in the GitOps tree (`apps/ENV.yaml`, `envs/ENV/…`) → YAML.
    pub files: std::collections::BTreeMap<String, String>,
    /// Objects per file.
    pub objects: std::collections::BTreeMap<String, usize>,
    /// Every object as one YAML stream, files in path order (`paved export kubernetes`).
    pub stream: String,
    /// Services not rendered yet, and why.
    pub pending: std::collections::BTreeMap<String, String>,
    pub warnings: Vec<String>,
}

/// The environment's Kubernetes manifests (nothing is committed). Secret
/// values are never in them.
#[utoipa::path(get, path = "/api/v1/environments/{name}/kubernetes", tag = "environments", params(("name" = String, Path)),
    responses((status = 200, description = "The rendered tree", body = Rendered), AccessErrors,
        (status = 404, description = "Not found", body = ErrorBody), (status = 422, description = "Not a cluster environment, or a service Kubernetes cannot express", body = ErrorBody)))]
pub async fn render_environment(
    State(state): State<AppState>,
    who: Authed,
    Path(name): Path<String>,
) -> Result<axum::Json<Rendered>, ApiError> {
    authorised(&state, &who, &name, Role::Viewer, "environment.render").await?;
    let catalog = state.control.catalog(who.request.clone());
    let tree = state.control.render_kubernetes(&catalog, &name).await?;
    Ok(axum::Json(Rendered {
        environment: name,
        files: tree.to_files(),
        objects: tree.files.iter().map(|(path, docs)| (path.clone(), docs.len())).collect(),
        stream: tree.to_stream(),
        pending: tree.pending,
        warnings: tree.warnings,
    }))
}

/// Commits the environment's rendered tree to its GitOps repository (one
/// commit, none when unchanged), after its artifacts are in its registry.
#[utoipa::path(post, path = "/api/v1/environments/{name}/deliver", tag = "environments", params(("name" = String, Path)),
    responses((status = 200, description = "What was committed", body = Object), AccessErrors,
        (status = 404, description = "Not found", body = ErrorBody),
        (status = 422, description = "Not a cluster environment, no GitOps repository, or an insecure one", body = ErrorBody),
        (status = 502, description = "The Git server or the registry failed; nothing was committed", body = ErrorBody)))]
pub async fn deliver_environment(
    State(state): State<AppState>,
    who: Authed,
    Path(name): Path<String>,
) -> Result<axum::Json<serde_json::Value>, ApiError> {
    authorised(&state, &who, &name, Role::Developer, "environment.deliver").await?;
    let catalog = state.control.catalog(who.request.clone());
    let reason = paved_control::gitops::DeliveryReason {
        operation: "deliver".into(),
        summary: None,
        deployment: None,
        service: None,
    };
    let delivery = state.control.deliver(&catalog, &name, &reason, &who.caller(), false).await?;
    Ok(axum::Json(serde_json::to_value(&delivery).map_err(ApiError::internal)?))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ParityQuery {
    /// The environment to compare with.
    pub with: String,
}

/// Every difference between this environment's resource graph and another's,
/// with their names masked: declared parameter differences and undeclared ones.
#[utoipa::path(get, path = "/api/v1/environments/{name}/parity", tag = "environments", params(("name" = String, Path), ParityQuery),
    responses((status = 200, description = "OK", body = Vec<Object>), AccessErrors, (status = 404, description = "Not found", body = ErrorBody)))]
pub async fn parity_environment(
    State(state): State<AppState>,
    who: Authed,
    Path(name): Path<String>,
    Query(q): Query<ParityQuery>,
) -> Result<axum::Json<serde_json::Value>, ApiError> {
    authorised(&state, &who, &name, Role::Viewer, "environment.parity").await?;
    authorised(&state, &who, &q.with, Role::Viewer, "environment.parity").await?;
    let catalog = state.control.catalog(who.request.clone());
    let differences = state.control.parity(&catalog, &name, &q.with).await?;
    Ok(axum::Json(serde_json::to_value(differences).map_err(ApiError::internal)?))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LogsQuery {
    /// Only the last N lines of each container.
    pub tail: Option<usize>,
    /// Only this container.
    pub container: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct LogLineView {
    pub container: String,
    pub line: String,
}

/// A service's output in the environment (developers: logs can hold data).
#[utoipa::path(get, path = "/api/v1/environments/{name}/services/{service}/logs", tag = "environments",
    params(("name" = String, Path), ("service" = String, Path), LogsQuery),
    responses((status = 200, description = "OK", body = Vec<LogLineView>),
        AccessErrors,
        (status = 404, description = "Not found", body = ErrorBody)))]
pub async fn service_logs(
    State(state): State<AppState>,
    who: Authed,
    Path((name, service)): Path<(String, String)>,
    Query(q): Query<LogsQuery>,
) -> Result<axum::Json<Vec<LogLineView>>, ApiError> {
    authorised(&state, &who, &name, Role::Developer, "environment.logs").await?;
    let lines = state.control.logs(&name, &service, q.container.as_deref(), q.tail).await?;
    Ok(axum::Json(lines.into_iter().map(|l| LogLineView { container: l.container, line: l.line }).collect()))
}
