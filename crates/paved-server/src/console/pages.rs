//! The console's pages: sign-in, the services × environments matrix, an
//! environment (resources, drift, parity, apply), a service, the audit log
//! and an operation's live progress.

use super::{User, cookie, over_https, page_error, render, same_origin};
use crate::AppState;
use crate::api::environments::{authorised, start};
use crate::auth::Authed;
use crate::error::ApiError;
use askama::Template;
use axum::extract::{Form, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use paved_auth::{Request, Target};
use paved_control::StatusRow;
use paved_engine::DriftStatus;
use paved_model::{Kind, Role, Spec, Workload};
use paved_store::{AuditFilter, AuditOutcome};
use serde::Deserialize;
use std::collections::BTreeMap;

pub(super) fn when(t: time::OffsetDateTime) -> String {
    let f = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second] UTC");
    t.to_offset(time::UtcOffset::UTC).format(&f).unwrap_or_default()
}

#[derive(Template)]
#[template(path = "error.html")]
pub struct ErrorPage {
    pub subject: Option<String>,
    pub title: String,
    pub message: String,
}

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage {
    subject: Option<String>,
    error: Option<String>,
    next: String,
}

#[derive(Deserialize)]
pub struct LoginQuery {
    next: Option<String>,
}

/// Only pages of the console are followed after sign-in (no open redirect).
fn safe_next(next: Option<&str>) -> String {
    next.filter(|n| n.starts_with("/console") && !n.starts_with("//")).unwrap_or("/console").to_string()
}

/// The sign-in form.
#[utoipa::path(get, path = "/console/login", tag = "console", security(()),
    responses((status = 200, description = "The sign-in page", content_type = "text/html")))]
pub async fn login_page(Query(q): Query<LoginQuery>) -> Response {
    render(&LoginPage { subject: None, error: None, next: safe_next(q.next.as_deref()) })
}

#[derive(Deserialize)]
pub struct LoginForm {
    token: String,
    next: Option<String>,
}

/// Signs in with an API token: checked, then kept in an HttpOnly cookie.
#[utoipa::path(post, path = "/console/login", tag = "console", security(()),
    request_body(content = String, content_type = "application/x-www-form-urlencoded", description = "token, next"),
    responses((status = 303, description = "Signed in: to the page asked for"), (status = 401, description = "The token is not usable", content_type = "text/html")))]
pub async fn login(State(state): State<AppState>, headers: HeaderMap, Form(form): Form<LoginForm>) -> Response {
    let next = safe_next(form.next.as_deref());
    if let Err(e) = same_origin(&headers) {
        return page_error(None, e);
    }
    let token = form.token.trim();
    let problem = match paved_auth::token::parse(token) {
        Err(e) => Some(e.to_string()),
        Ok(hash) => match state.control.store.token_by_hash(&hash).await {
            Err(e) => Some(format!("cannot check the token: {e}")),
            Ok(None) => Some("unknown API token".into()),
            Ok(Some(t)) => t.unusable_at(state.control.clock.now()).map(|why| format!("API token {} is {why}", t.id)),
        },
    };
    match problem {
        Some(error) => {
            let mut r = render(&LoginPage { subject: None, error: Some(error), next });
            *r.status_mut() = StatusCode::UNAUTHORIZED;
            r
        }
        None => {
            ([(header::SET_COOKIE, cookie(token, None, over_https(&headers)))], Redirect::to(&next)).into_response()
        }
    }
}

/// Signs out (forgets the cookie).
#[utoipa::path(post, path = "/console/logout", tag = "console", security(()),
    responses((status = 303, description = "Signed out: to the sign-in page")))]
pub async fn logout(headers: HeaderMap) -> Response {
    ([(header::SET_COOKIE, cookie("", Some(0), over_https(&headers)))], Redirect::to("/console/login")).into_response()
}

/// One service in one environment.
pub struct Cell {
    pub environment: String,
    pub applied: bool,
    pub image: String,
    pub health: String,
    pub class: &'static str,
    pub since: String,
    pub by: String,
    /// Why the last apply left the service out here.
    pub blocked: Option<String>,
}

pub struct EnvColumn {
    pub name: String,
    pub env_type: String,
}

pub struct MatrixRow {
    pub service: String,
    pub owner: String,
    pub cells: Vec<Cell>,
}

#[derive(Template)]
#[template(path = "matrix.html")]
struct MatrixPage {
    subject: Option<String>,
    environments: Vec<EnvColumn>,
    rows: Vec<MatrixRow>,
    dora: Vec<DoraRow>,
}

/// What is known of one environment's workloads: when applied, their health now, who applied last.
struct EnvState {
    applied: BTreeMap<String, time::OffsetDateTime>,
    health: BTreeMap<String, DriftStatus>,
    last_actor: String,
}

async fn env_state(state: &AppState, env: &str) -> Result<EnvState, ApiError> {
    let nodes = state.control.store.applied_nodes(env).await?;
    let applied: BTreeMap<String, time::OffsetDateTime> =
        nodes.iter().map(|n| (n.node_id.clone(), n.updated_at)).collect();
    let health = if applied.is_empty() {
        BTreeMap::new()
    } else {
        state.control.drift(env).await?.nodes.into_iter().map(|n| (n.id, n.status)).collect()
    };
    let filter = AuditFilter {
        target: Some(format!("Environment/{env}")),
        action: Some("environment.apply".into()),
        newest_first: true,
        limit: 50,
        ..Default::default()
    };
    let last_actor = state
        .control
        .store
        .audit_events(&filter)
        .await?
        .into_iter()
        .find(|e| e.event.outcome == AuditOutcome::Succeeded)
        .map_or_else(|| "-".into(), |e| e.event.actor);
    Ok(EnvState { applied, health, last_actor })
}

fn health(status: Option<&DriftStatus>) -> (String, &'static str) {
    match status {
        Some(DriftStatus::InSync) => ("healthy".into(), "ok"),
        Some(DriftStatus::Changed) => ("drifted".into(), "warn"),
        Some(DriftStatus::Missing) => ("down".into(), "bad"),
        Some(DriftStatus::Unreadable { .. }) | None => ("unknown".into(), "muted"),
    }
}

fn images(w: &Workload) -> String {
    w.containers
        .values()
        .map(|c| c.image.rsplit('/').next().unwrap_or(&c.image).to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// One cell: what runs (the deployed digest and its commit, or the Score image),
/// its health (the deployment's, unless what runs drifted or is down), since when and by whom.
fn cell(w: &Workload, env: &str, s: &EnvState, row: Option<&StatusRow>) -> Cell {
    let id = format!("local.workload/{}", w.metadata.name);
    let (live, class) = health(s.health.get(&id));
    let applied = s.applied.contains_key(&id);
    match row.filter(|r| r.number.is_some()) {
        Some(r) => {
            let digest = paved_control::short(&r.artifact).trim_start_matches("sha256:").to_string();
            let commit =
                r.commit.as_deref().map_or_else(String::new, |c| format!(" @{}", paved_control::short_commit(c)));
            let (health, class) = match live.as_str() {
                "healthy" if r.health == "healthy" => (r.health.clone(), "ok"),
                "healthy" => (r.health.clone(), "warn"),
                _ => (live, class),
            };
            Cell {
                environment: env.to_string(),
                applied,
                image: format!("#{} {digest}{commit}", r.number.unwrap_or_default()),
                health,
                class,
                since: r.since.map(when).unwrap_or_default(),
                by: r.by.clone().unwrap_or_else(|| s.last_actor.clone()),
                blocked: r.blocked.clone(),
            }
        }
        None => Cell {
            environment: env.to_string(),
            applied,
            image: images(w),
            health: live,
            class,
            since: s.applied.get(&id).map(|t| when(*t)).unwrap_or_default(),
            by: s.last_actor.clone(),
            blocked: row.and_then(|r| r.blocked.clone()),
        },
    }
}

/// DORA figures as the console shows them.
pub struct DoraRow {
    pub team: String,
    pub service: String,
    pub deployments: usize,
    pub frequency: String,
    pub lead_time: String,
    pub failure_rate: String,
    pub restore: String,
}

fn hours(seconds: Option<f64>) -> String {
    seconds.map_or_else(
        || "-".into(),
        |s| if s < 3600.0 { format!("{:.0} min", s / 60.0) } else { format!("{:.1} h", s / 3600.0) },
    )
}

fn dora_rows(figures: Vec<paved_control::Dora>) -> Vec<DoraRow> {
    figures
        .into_iter()
        .map(|f| DoraRow {
            team: f.team,
            service: f.service.unwrap_or_else(|| "(team)".into()),
            deployments: f.deployments,
            frequency: format!("{:.2}/day", f.deployment_frequency_per_day),
            lead_time: hours(f.lead_time_seconds),
            failure_rate: f.change_failure_rate.map_or_else(|| "-".into(), |r| format!("{:.0} %", r * 100.0)),
            restore: hours(f.time_to_restore_seconds),
        })
        .collect()
}

/// The services and environments the caller may view.
async fn services_and_environments(
    state: &AppState,
    who: &Authed,
) -> Result<(Vec<Workload>, Vec<paved_model::Environment>), ApiError> {
    let catalog = state.control.catalog(who.request.clone());
    let services = who
        .visible(state, catalog.list(Some(Kind::Service)).await?)
        .await?
        .into_iter()
        .filter_map(|o| if let Spec::Service(w) = o.spec { Some(w) } else { None })
        .collect();
    let envs = who
        .visible(state, catalog.list(Some(Kind::Environment)).await?)
        .await?
        .into_iter()
        .filter_map(|o| if let Spec::Environment(e) = o.spec { Some(e) } else { None })
        .collect();
    Ok((services, envs))
}

/// The services × environments matrix: image, health, last change and by whom.
#[utoipa::path(get, path = "/console", tag = "console",
    responses((status = 200, description = "The matrix", content_type = "text/html"), (status = 303, description = "Not signed in: to the sign-in page")))]
pub async fn matrix(State(state): State<AppState>, User(who): User) -> Response {
    let subject = Some(who.subject.clone());
    let page = async {
        who.allow(&state, Request { needs: Role::Viewer, on: Target::Anywhere }, "environment.list", "Environment/*")
            .await?;
        let (services, envs) = services_and_environments(&state, &who).await?;
        let mut states = Vec::new();
        for e in &envs {
            states.push(env_state(&state, &e.metadata.name).await?);
        }
        // The same rows the API's /api/v1/status answers with.
        let deployed = crate::api::deployments::status_rows(&state, &who).await?;
        let find = |service: &str, env: &str| deployed.iter().find(|r| r.service == service && r.environment == env);
        let rows = services
            .iter()
            .map(|w| MatrixRow {
                service: w.metadata.name.clone(),
                owner: w.annotation(paved_model::score::ANNOTATION_OWNER).unwrap_or("-").to_string(),
                cells: envs
                    .iter()
                    .zip(&states)
                    .map(|(e, s)| cell(w, &e.metadata.name, s, find(&w.metadata.name, &e.metadata.name)))
                    .collect(),
            })
            .collect();
        let dora = dora_rows(state.control.dora(30).await?);
        let environments = envs
            .iter()
            .map(|e| EnvColumn { name: e.metadata.name.clone(), env_type: e.spec.env_type.to_string() })
            .collect();
        Ok::<_, ApiError>(MatrixPage { subject: subject.clone(), environments, rows, dora })
    };
    match page.await {
        Ok(p) => render(&p),
        Err(e) => page_error(subject, e),
    }
}

pub struct ResourceRow {
    pub id: String,
    pub status: String,
    pub class: &'static str,
    pub updated_at: String,
}

#[derive(Template)]
#[template(path = "environment.html")]
struct EnvironmentPage {
    subject: Option<String>,
    name: String,
    env_type: String,
    owner: String,
    blueprint: String,
    account: String,
    region: String,
    last_operation: Option<String>,
    drifted: usize,
    resources: Vec<ResourceRow>,
    urls: Vec<(String, String)>,
    others: Vec<String>,
    parity_with: Option<String>,
    /// (resource, field, this side, other side, declared by a parameter)
    parity: Vec<(String, String, String, String, bool)>,
    undeclared: usize,
    /// (name, scope, version, set at, set by): never values.
    secrets: Vec<(String, String, i64, String, String)>,
}

#[derive(Deserialize)]
pub struct EnvironmentQuery {
    parity: Option<String>,
}

/// An environment: facts, resources with their observed status, last operation, parity, actions.
#[utoipa::path(get, path = "/console/environments/{name}", tag = "console", params(("name" = String, Path)),
    responses((status = 200, description = "The environment page", content_type = "text/html"), (status = 303, description = "Not signed in"),
        (status = 403, description = "Not allowed", content_type = "text/html"), (status = 404, description = "Not found", content_type = "text/html")))]
pub async fn environment(
    State(state): State<AppState>,
    User(who): User,
    Path(name): Path<String>,
    Query(q): Query<EnvironmentQuery>,
) -> Response {
    let subject = Some(who.subject.clone());
    let page = async {
        let (env, _) = authorised(&state, &who, &name, Role::Viewer, "environment.get").await?;
        let nodes = state.control.store.applied_nodes(&name).await?;
        let drift: BTreeMap<String, DriftStatus> = if nodes.is_empty() {
            BTreeMap::new()
        } else {
            state.control.drift(&name).await?.nodes.into_iter().map(|n| (n.id, n.status)).collect()
        };
        let resources: Vec<ResourceRow> = nodes
            .iter()
            .map(|n| {
                let (status, class) = match drift.get(&n.node_id) {
                    Some(DriftStatus::InSync) => ("in sync".to_string(), "ok"),
                    Some(DriftStatus::Changed) => ("changed".to_string(), "warn"),
                    Some(DriftStatus::Missing) => ("missing".to_string(), "bad"),
                    Some(DriftStatus::Unreadable { error }) => (format!("unreadable: {error}"), "muted"),
                    None => ("unknown".to_string(), "muted"),
                };
                ResourceRow { id: n.node_id.clone(), status, class, updated_at: when(n.updated_at) }
            })
            .collect();
        let drifted = resources.iter().filter(|r| r.class != "ok").count();
        let last_operation = state.last_operation(who.head, &name).await?.map(|e| {
            let verb = e.event.action.trim_start_matches("environment.");
            format!("{verb} {} at {} by {}", e.event.outcome.as_str(), when(e.event.at), e.event.actor)
        });
        let urls = paved_control::route_urls(&nodes);
        let secrets = state
            .control
            .list_secrets(&name, None)
            .await?
            .into_iter()
            .map(|i| {
                let scope =
                    i.service.map_or_else(|| "environment".to_string(), |s| s.replace("resource:", "generated for "));
                (i.name, scope, i.version, when(i.created_at), i.created_by)
            })
            .collect();
        let (_, envs) = services_and_environments(&state, &who).await?;
        let others: Vec<String> = envs.iter().map(|e| e.metadata.name.clone()).filter(|n| *n != name).collect();
        let mut parity = vec![];
        if let Some(other) = &q.parity {
            authorised(&state, &who, other, Role::Viewer, "environment.parity").await?;
            let catalog = state.control.catalog(who.request.clone());
            let show = |v: &Option<serde_json::Value>| v.as_ref().map_or("(absent)".to_string(), |v| v.to_string());
            parity = state
                .control
                .parity(&catalog, &name, other)
                .await?
                .iter()
                .map(|d| (d.node.clone(), d.field.clone(), show(&d.left), show(&d.right), d.declared))
                .collect();
        }
        Ok::<_, ApiError>(EnvironmentPage {
            subject: subject.clone(),
            name: name.clone(),
            env_type: env.spec.env_type.to_string(),
            owner: env.spec.owner.clone(),
            blueprint: env.spec.blueprint.0.clone(),
            account: env.spec.account.clone(),
            region: env.spec.region.clone(),
            last_operation,
            drifted,
            resources,
            urls,
            secrets,
            others,
            parity_with: q.parity.clone(),
            undeclared: parity.iter().filter(|d| !d.4).count(),
            parity,
        })
    };
    match page.await {
        Ok(p) => render(&p),
        Err(e) => page_error(subject, e),
    }
}

async fn act(state: AppState, who: Authed, headers: HeaderMap, name: String, destroy: bool) -> Response {
    let subject = Some(who.subject.clone());
    let started = async {
        same_origin(&headers)?;
        let (needs, action) =
            if destroy { (Role::Operator, "environment.destroy") } else { (Role::Developer, "environment.apply") };
        authorised(&state, &who, &name, needs, action).await?;
        let graph = if destroy {
            state.control.empty_graph(&name).await?
        } else {
            state.control.desired_graph(&state.control.catalog(who.request.clone()), &name).await?.0
        };
        let (_, op) = start(&state, &who, if destroy { "destroy" } else { "apply" }, graph).await?;
        Ok::<_, ApiError>(op.0.id)
    };
    match started.await {
        Ok(id) => Redirect::to(&format!("/console/operations/{id}")).into_response(),
        Err(e) => page_error(subject, e),
    }
}

/// Starts an apply and shows its progress.
#[utoipa::path(post, path = "/console/environments/{name}/apply", tag = "console", params(("name" = String, Path)),
    responses((status = 303, description = "Started: to the operation's page"), (status = 403, description = "Not allowed", content_type = "text/html")))]
pub async fn apply(
    State(state): State<AppState>,
    User(who): User,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Response {
    act(state, who, headers, name, false).await
}

/// Starts a destroy and shows its progress.
#[utoipa::path(post, path = "/console/environments/{name}/destroy", tag = "console", params(("name" = String, Path)),
    responses((status = 303, description = "Started: to the operation's page"), (status = 403, description = "Not allowed", content_type = "text/html")))]
pub async fn destroy(
    State(state): State<AppState>,
    User(who): User,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Response {
    act(state, who, headers, name, true).await
}

#[derive(Template)]
#[template(path = "service.html")]
struct ServicePage {
    subject: Option<String>,
    name: String,
    owner: String,
    generation: i64,
    recorded: String,
    recorded_by: String,
    containers: Vec<(String, String)>,
    resources: Vec<(String, String)>,
    cells: Vec<Cell>,
}

/// A service: what it runs and needs, and where it runs.
#[utoipa::path(get, path = "/console/services/{name}", tag = "console", params(("name" = String, Path)),
    responses((status = 200, description = "The service page", content_type = "text/html"), (status = 303, description = "Not signed in"),
        (status = 403, description = "Not allowed", content_type = "text/html"), (status = 404, description = "Not found", content_type = "text/html")))]
pub async fn service(State(state): State<AppState>, User(who): User, Path(name): Path<String>) -> Response {
    let subject = Some(who.subject.clone());
    let page = async {
        let object = state.control.catalog(who.request.clone()).get(Kind::Service, &name).await?;
        who.allow(
            &state,
            Request { needs: Role::Viewer, on: crate::auth::spec_target(&object.spec) },
            "spec.get",
            &format!("Service/{name}"),
        )
        .await?;
        let Spec::Service(w) = &object.spec else {
            return Err(ApiError::internal("a Service record holds another kind"));
        };
        let (_, envs) = services_and_environments(&state, &who).await?;
        let deployed = crate::api::deployments::status_rows(&state, &who).await?;
        let mut cells = vec![];
        for e in &envs {
            let row = deployed.iter().find(|r| r.service == name && r.environment == e.metadata.name);
            cells.push(cell(w, &e.metadata.name, &env_state(&state, &e.metadata.name).await?, row));
        }
        Ok::<_, ApiError>(ServicePage {
            subject: subject.clone(),
            name: name.clone(),
            owner: w.annotation(paved_model::score::ANNOTATION_OWNER).unwrap_or("-").to_string(),
            generation: object.record.generation,
            recorded: when(object.record.created_at),
            recorded_by: object.record.actor.clone(),
            containers: w.containers.iter().map(|(n, c)| (n.clone(), c.image.clone())).collect(),
            resources: w.resources.iter().map(|(n, r)| (n.clone(), r.kind.clone())).collect(),
            cells,
        })
    };
    match page.await {
        Ok(p) => render(&p),
        Err(e) => page_error(subject, e),
    }
}

pub struct AuditRow {
    pub seq: i64,
    pub at: String,
    pub actor: String,
    pub action: String,
    pub target: String,
    pub outcome: String,
    pub class: &'static str,
    pub origin: String,
    pub details: String,
}

#[derive(Template)]
#[template(path = "audit.html")]
struct AuditPage {
    subject: Option<String>,
    actor: String,
    action: String,
    target: String,
    since: String,
    until: String,
    error: Option<String>,
    events: Vec<AuditRow>,
    limit: usize,
}

#[derive(Deserialize, Default)]
pub struct AuditQuery {
    #[serde(default)]
    actor: String,
    #[serde(default)]
    action: String,
    #[serde(default)]
    target: String,
    #[serde(default)]
    since: String,
    #[serde(default)]
    until: String,
}

const AUDIT_PAGE: usize = 200;

/// The audit log, newest first, filtered by actor, action, target and time.
#[utoipa::path(get, path = "/console/audit", tag = "console",
    responses((status = 200, description = "The audit log page", content_type = "text/html"), (status = 303, description = "Not signed in"),
        (status = 403, description = "Not allowed", content_type = "text/html")))]
pub async fn audit(State(state): State<AppState>, User(who): User, Query(q): Query<AuditQuery>) -> Response {
    let subject = Some(who.subject.clone());
    if let Err(e) =
        who.allow(&state, Request { needs: Role::Operator, on: Target::Organisation }, "audit.list", "Audit/*").await
    {
        return page_error(subject, e);
    }
    let time = |name: &str, v: &str| -> Result<Option<time::OffsetDateTime>, String> {
        if v.is_empty() {
            return Ok(None);
        }
        time::OffsetDateTime::parse(v, &time::format_description::well_known::Rfc3339)
            .map(Some)
            .map_err(|e| format!("{name}: `{v}` is not an RFC 3339 time such as 2026-11-25T09:00:00Z ({e})"))
    };
    let text = |v: &str| if v.is_empty() { None } else { Some(v.to_string()) };
    let (mut events, mut error) = (vec![], None);
    match (time("since", &q.since), time("until", &q.until)) {
        (Ok(since), Ok(until)) => {
            let filter = AuditFilter {
                actor: text(&q.actor),
                action: text(&q.action),
                target: text(&q.target),
                since,
                until,
                newest_first: true,
                limit: AUDIT_PAGE as i64,
                ..Default::default()
            };
            match state.control.store.audit_events(&filter).await {
                Ok(newest) => {
                    events = newest
                        .into_iter()
                        .map(|e| AuditRow {
                            seq: e.seq,
                            at: when(e.event.at),
                            class: match e.event.outcome {
                                AuditOutcome::Succeeded => "ok",
                                AuditOutcome::Failed => "warn",
                                AuditOutcome::Denied => "bad",
                            },
                            outcome: e.event.outcome.as_str().to_string(),
                            actor: e.event.actor,
                            action: e.event.action,
                            target: e.event.target,
                            origin: e.event.request.origin,
                            details: e.event.details.to_string(),
                        })
                        .collect()
                }
                Err(e) => error = Some(e.to_string()),
            }
        }
        (Err(e), _) | (_, Err(e)) => error = Some(e),
    }
    let mut r = render(&AuditPage {
        subject,
        actor: q.actor,
        action: q.action,
        target: q.target,
        since: q.since,
        until: q.until,
        error: error.clone(),
        events,
        limit: AUDIT_PAGE,
    });
    if error.is_some() {
        *r.status_mut() = StatusCode::BAD_REQUEST;
    }
    r
}

#[derive(Template)]
#[template(path = "operation.html")]
struct OperationPage {
    subject: Option<String>,
    id: String,
    operation: String,
    environment: String,
    actor: String,
    request_id: String,
    started: String,
    status: String,
    class: &'static str,
    running: bool,
    done: usize,
    total: usize,
    error: Option<String>,
    nodes: Vec<(String, String)>,
}

/// An apply's or destroy's progress, live (Server-Sent Events) with JavaScript, refreshed without.
#[utoipa::path(get, path = "/console/operations/{id}", tag = "console", params(("id" = String, Path)),
    responses((status = 200, description = "The operation page", content_type = "text/html"), (status = 303, description = "Not signed in"),
        (status = 403, description = "Not allowed", content_type = "text/html"), (status = 404, description = "Not found", content_type = "text/html")))]
pub async fn operation(State(state): State<AppState>, User(who): User, Path(id): Path<String>) -> Response {
    let subject = Some(who.subject.clone());
    let op = match crate::api::operations::authorised(&state, &who, &id).await {
        Ok(op) => op,
        Err(e) => return page_error(subject, e),
    };
    use crate::operations::Status;
    let status = serde_json::to_value(op.status).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default();
    let nodes = op
        .outcomes
        .iter()
        .map(|(n, o)| {
            let outcome = o["outcome"].as_str().unwrap_or("?").to_string();
            let text = match o["error"].as_str() {
                Some(e) => format!("{outcome}: {e}"),
                None => outcome,
            };
            (n.clone(), text)
        })
        .collect();
    render(&OperationPage {
        subject,
        class: match op.status {
            Status::Succeeded => "ok",
            Status::Running => "muted",
            Status::Failed | Status::Cancelled => "bad",
        },
        running: op.status == Status::Running,
        id: op.id,
        operation: op.operation,
        environment: op.environment,
        actor: op.actor,
        request_id: op.request_id,
        started: when(op.started_at),
        status,
        done: op.done,
        total: op.total,
        error: op.error,
        nodes,
    })
}

/// The console's landing: where a browser goes from `/`.
pub async fn root(user: Option<User>) -> Response {
    Redirect::to(if user.is_some() { "/console" } else { "/console/login" }).into_response()
}
