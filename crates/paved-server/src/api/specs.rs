//! Specs as versioned desired state: list, read (with an ETag), record
//! (all or nothing, `If-Match` against lost updates), delete, history.

use crate::AppState;
use crate::api::AccessErrors;
use crate::api::{Page, paginate};
use crate::auth::{Authed, role_to_write, spec_target};
use crate::error::{ApiError, ErrorBody, diagnostics};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use paved_auth::{Request, Target};
use paved_catalog::{Catalog, Object, Precondition};
use paved_model::{Kind, Role, Spec};
use paved_spec::SourceFile;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// One recorded generation of an object.
#[derive(Debug, Serialize, ToSchema)]
pub struct SpecObject {
    pub kind: String,
    pub name: String,
    pub generation: i64,
    pub content_hash: String,
    pub deleted: bool,
    pub actor: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    #[schema(value_type = String, format = DateTime)]
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: time::OffsetDateTime,
    /// The document as written (`apiVersion`, `kind`, `metadata`, `spec`), absent for a deletion.
    #[schema(value_type = Option<Object>)]
    pub document: Option<serde_json::Value>,
}

impl From<&paved_store::Record> for SpecObject {
    fn from(r: &paved_store::Record) -> SpecObject {
        SpecObject {
            kind: r.kind.clone(),
            name: r.name.clone(),
            generation: r.generation,
            content_hash: r.content_hash.clone(),
            deleted: r.deleted,
            actor: r.actor.clone(),
            source: r.source.clone(),
            created_at: r.created_at,
            document: r.spec.clone(),
        }
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Only this kind (`environment`, `service`, … singular or plural).
    pub kind: Option<String>,
    /// Continue after this `Kind/name` (the previous page's `next`).
    pub after: Option<String>,
    /// At most this many (1–1000, default 100).
    pub limit: Option<usize>,
}

pub(crate) fn parse_kind(s: &str) -> Result<Kind, ApiError> {
    Kind::from_cli(s).ok_or_else(|| {
        ApiError::bad_request(
            "kind",
            format!("unknown kind `{s}`; use blueprint, account, environment, team, rolebinding or service"),
        )
    })
}

fn etag(generation: i64) -> HeaderValue {
    HeaderValue::from_str(&format!("\"{generation}\"")).unwrap_or(HeaderValue::from_static("\"0\""))
}

/// The generation an `If-Match` asks for (`*`: any live one is not a precondition we can check, so refused).
fn if_match(headers: &HeaderMap) -> Result<Option<i64>, ApiError> {
    let Some(v) = headers.get(header::IF_MATCH) else { return Ok(None) };
    let text = v.to_str().unwrap_or_default().trim();
    text.trim_start_matches("W/").trim_matches('"').parse::<i64>().map(Some).map_err(|_| {
        ApiError::bad_request("If-Match", format!("`{text}` is not an ETag this API gave out (e.g. \"3\")"))
    })
}

fn catalog(state: &AppState, who: &Authed) -> Catalog {
    state.control.catalog(who.request.clone())
}

/// Specs, newest generation of each, ordered by kind and name.
#[utoipa::path(get, path = "/api/v1/specs", tag = "specs", params(ListQuery),
    responses((status = 200, description = "OK", body = Page<SpecObject>), (status = 400, description = "A malformed parameter or header (details name it)", body = ErrorBody), AccessErrors))]
pub async fn list_specs(
    State(state): State<AppState>,
    who: Authed,
    Query(q): Query<ListQuery>,
) -> Result<Response, ApiError> {
    let kind = q.kind.as_deref().map(parse_kind).transpose()?;
    who.allow(&state, Request { needs: Role::Viewer, on: Target::Anywhere }, "spec.list", "Spec/*").await?;
    let key = |o: &SpecObject| format!("{}/{}", o.kind, o.name);
    // Listings hold what the caller may view; `next` follows the store, so a
    // page can hold fewer items than `limit` without the listing ending.
    let Some(kind) = kind else {
        let objects = who.visible(&state, catalog(&state, &who).list(None).await?).await?;
        let items: Vec<SpecObject> = objects.iter().map(|o| SpecObject::from(&o.record)).collect();
        return Ok(axum::Json(paginate(items, key, q.after.as_deref(), q.limit)).into_response());
    };
    // One kind pages through the store: `after` is `Kind/name` (or just the name).
    let after = q.after.as_deref().unwrap_or("");
    let after = after.split_once('/').filter(|(k, _)| *k == kind.as_str()).map_or(after, |(_, n)| n);
    let limit = crate::api::page_size(q.limit);
    state
        .rendered(&who, &format!("specs\0{}\0{after}\0{limit}", kind.as_str()), 0, || async {
            let page = state.page(who.head, kind, after, limit + 1).await?;
            let next = if page.len() > limit {
                page.get(limit - 1).map(|o| format!("{}/{}", kind.as_str(), o.record.name))
            } else {
                None
            };
            let visible = who.visible(&state, page.iter().take(limit)).await?;
            let items: Vec<SpecObject> = visible.iter().map(|o| SpecObject::from(&o.record)).collect();
            serde_json::to_vec(&Page { items, next }).map_err(ApiError::internal)
        })
        .await
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RecordQuery {
    /// Validate and authorise only; record nothing.
    #[serde(default)]
    pub dry_run: bool,
}

/// What recording a batch did, per object.
#[derive(Debug, Serialize, ToSchema)]
pub struct RecordResult {
    #[schema(value_type = Vec<Object>)]
    pub outcomes: Vec<serde_json::Value>,
    /// Warnings about the documents (errors make the request fail with 422).
    pub warnings: Vec<crate::error::ErrorDetail>,
    pub dry_run: bool,
}

/// Parses and checks a request body of spec documents; every document must be allowed to the caller.
async fn checked_batch(
    state: &AppState,
    who: &Authed,
    catalog: &Catalog,
    body: String,
) -> Result<paved_spec::Batch, ApiError> {
    let batch = catalog.validate(vec![SourceFile::new("request body", body)], vec![]).await?;
    if batch.has_errors() {
        let n = batch.diagnostics.iter().filter(|d| d.is_error()).count();
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid",
            format!("{n} error(s) in the specs; nothing was recorded"),
        )
        .with_details(diagnostics(&batch.diagnostics)));
    }
    for doc in &batch.documents {
        let kind = doc.spec.kind();
        let name = doc.spec.object_name();
        let target = format!("{}/{name}", kind.as_str());
        // Both the new owner and the current one must allow it: a spec cannot be moved out of a team's hands by others.
        who.allow(state, Request { needs: role_to_write(kind), on: spec_target(&doc.spec) }, "spec.put", &target)
            .await?;
        if let Ok(current) = catalog.get(kind, &name).await {
            who.allow(
                state,
                Request { needs: role_to_write(kind), on: spec_target(&current.spec) },
                "spec.put",
                &target,
            )
            .await?;
        }
    }
    Ok(batch)
}

fn warnings(batch: &paved_spec::Batch) -> Vec<crate::error::ErrorDetail> {
    batch.diagnostics.iter().filter(|d| !d.is_error()).map(crate::error::detail).collect()
}

/// Records a batch of documents (YAML or JSON, several separated by `---`), all or nothing — `paved apply -f`.
#[utoipa::path(post, path = "/api/v1/specs", tag = "specs", params(RecordQuery),
    request_body(content = String, content_type = "application/yaml", description = "One or more spec documents"),
    responses((status = 200, description = "OK", body = RecordResult), (status = 400, description = "A malformed parameter or header (details name it)", body = ErrorBody), AccessErrors, (status = 413, description = "The body is larger than the server accepts", body = ErrorBody), (status = 422, description = "Invalid input (details name each field, with line and column for documents)", body = ErrorBody)))]
pub async fn record_specs(
    State(state): State<AppState>,
    who: Authed,
    Query(q): Query<RecordQuery>,
    body: String,
) -> Result<axum::Json<RecordResult>, ApiError> {
    let catalog = catalog(&state, &who);
    let batch = checked_batch(&state, &who, &catalog, body.clone()).await?;
    let warnings = warnings(&batch);
    if q.dry_run {
        return Ok(axum::Json(RecordResult { outcomes: vec![], warnings, dry_run: true }));
    }
    let report = catalog.apply(vec![SourceFile::new("request body", body)], vec![], &who.subject).await?;
    let outcomes = report.outcomes.iter().filter_map(|o| serde_json::to_value(o).ok()).collect();
    Ok(axum::Json(RecordResult { outcomes, warnings, dry_run: false }))
}

fn object_response(o: &Object) -> Response {
    let mut response = axum::Json(SpecObject::from(&o.record)).into_response();
    response.headers_mut().insert(header::ETAG, etag(o.record.generation));
    response
}

/// One object's current generation; its `ETag` is the generation, for `If-Match`.
#[utoipa::path(get, path = "/api/v1/specs/{kind}/{name}", tag = "specs",
    params(("kind" = String, Path, description = "environment, service, blueprint, account, team, rolebinding"), ("name" = String, Path)),
    responses((status = 200, description = "OK", body = SpecObject, headers(("ETag" = String))), (status = 400, description = "A malformed parameter or header (details name it)", body = ErrorBody), AccessErrors, (status = 404, description = "Not found", body = ErrorBody)))]
pub async fn get_spec(
    State(state): State<AppState>,
    who: Authed,
    Path((kind, name)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let kind = parse_kind(&kind)?;
    let object = state.object(who.head, kind, &name).await?;
    let target = format!("{}/{}", kind.as_str(), object.record.name);
    who.allow(&state, Request { needs: Role::Viewer, on: spec_target(&object.spec) }, "spec.get", &target).await?;
    Ok(object_response(&object))
}

/// Records one document under this kind and name. `If-Match: "GEN"` makes a
/// stale update fail with 412 (nothing recorded); `If-None-Match: *` only creates.
#[utoipa::path(put, path = "/api/v1/specs/{kind}/{name}", tag = "specs",
    params(("kind" = String, Path), ("name" = String, Path), ("If-Match" = Option<String>, Header), ("If-None-Match" = Option<String>, Header)),
    request_body(content = String, content_type = "application/json", description = "The document (JSON or YAML)"),
    responses((status = 200, description = "OK", body = SpecObject, headers(("ETag" = String))), (status = 400, description = "A malformed parameter or header (details name it)", body = ErrorBody), AccessErrors, (status = 412, description = "Stale: the object changed since it was read", body = ErrorBody), (status = 413, description = "The body is larger than the server accepts", body = ErrorBody), (status = 422, description = "Invalid input (details name each field, with line and column for documents)", body = ErrorBody)))]
pub async fn put_spec(
    State(state): State<AppState>,
    who: Authed,
    Path((kind, name)): Path<(String, String)>,
    headers: HeaderMap,
    body: String,
) -> Result<Response, ApiError> {
    let kind = parse_kind(&kind)?;
    let catalog = catalog(&state, &who);
    let batch = checked_batch(&state, &who, &catalog, body.clone()).await?;
    let [doc] = batch.documents.as_slice() else {
        return Err(ApiError::invalid("", format!("expected one document, found {}", batch.documents.len())));
    };
    if doc.spec.kind() != kind {
        return Err(ApiError::invalid("kind", format!("the document is a {}, the URL says {}", doc.spec.kind(), kind)));
    }
    if doc.spec.object_name() != name {
        return Err(ApiError::invalid(
            "metadata.name",
            format!("the document is `{}`, the URL says `{name}`", doc.spec.object_name()),
        ));
    }
    let create_only = headers.get(header::IF_NONE_MATCH).is_some_and(|v| v.as_bytes() == b"*");
    let expect = match (if_match(&headers)?, create_only) {
        (Some(g), _) => Some(Precondition { kind, name: name.clone(), generation: Some(g) }),
        (None, true) => Some(Precondition { kind, name: name.clone(), generation: None }),
        (None, false) => None,
    };
    catalog.apply_expecting(vec![SourceFile::new("request body", body)], vec![], &who.subject, expect.as_ref()).await?;
    Ok(object_response(&catalog.get(kind, &name).await?))
}

/// Deletes an object (its history stays). Refused with 409 while others depend on
/// it, or, for an environment, while it still has provisioned resources.
#[utoipa::path(delete, path = "/api/v1/specs/{kind}/{name}", tag = "specs",
    params(("kind" = String, Path), ("name" = String, Path), ("If-Match" = Option<String>, Header)),
    responses((status = 200, description = "OK", body = SpecObject), (status = 400, description = "A malformed parameter or header (details name it)", body = ErrorBody), AccessErrors,
        (status = 404, description = "Not found", body = ErrorBody), (status = 409, description = "Conflicts with the current state", body = ErrorBody), (status = 412, description = "Stale: the object changed since it was read", body = ErrorBody)))]
pub async fn delete_spec(
    State(state): State<AppState>,
    who: Authed,
    Path((kind, name)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<axum::Json<SpecObject>, ApiError> {
    let kind = parse_kind(&kind)?;
    let catalog = catalog(&state, &who);
    let object = catalog.get(kind, &name).await?;
    let target = format!("{}/{}", kind.as_str(), object.record.name);
    who.allow(&state, Request { needs: role_to_write(kind), on: spec_target(&object.spec) }, "spec.delete", &target)
        .await?;
    let record = state.control.delete_spec(&catalog, kind, &name, &who.subject, if_match(&headers)?).await?;
    Ok(axum::Json(SpecObject::from(&record)))
}

/// Every generation of an object, oldest first.
#[utoipa::path(get, path = "/api/v1/specs/{kind}/{name}/history", tag = "specs",
    params(("kind" = String, Path), ("name" = String, Path)),
    responses((status = 200, description = "OK", body = Vec<SpecObject>), (status = 400, description = "A malformed parameter or header (details name it)", body = ErrorBody), AccessErrors, (status = 404, description = "Not found", body = ErrorBody)))]
pub async fn spec_history(
    State(state): State<AppState>,
    who: Authed,
    Path((kind, name)): Path<(String, String)>,
) -> Result<axum::Json<Vec<SpecObject>>, ApiError> {
    let kind = parse_kind(&kind)?;
    let catalog = catalog(&state, &who);
    let history = catalog.history(kind, &name).await?;
    let live = history.iter().rev().find_map(|r| r.spec.clone().and_then(|d| Spec::from_document(kind, d).ok()));
    let on = live.as_ref().map_or(Target::Organisation, spec_target);
    who.allow(&state, Request { needs: Role::Viewer, on }, "spec.history", &format!("{}/{name}", kind.as_str()))
        .await?;
    Ok(axum::Json(history.iter().map(SpecObject::from).collect()))
}
