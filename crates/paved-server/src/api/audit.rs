//! The audit log over the API: filtered listings and chain verification.

use crate::AppState;
use crate::api::AccessErrors;
use crate::api::Page;
use crate::auth::Authed;
use crate::error::{ApiError, ErrorBody};
use axum::extract::{Query, State};
use paved_auth::{Request, Target};
use paved_model::Role;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    pub actor: Option<String>,
    /// `spec.put`, `environment.apply`, `token.create`, …
    pub action: Option<String>,
    /// `Kind/name`, e.g. `Environment/dev`.
    pub target: Option<String>,
    /// RFC 3339; events at or after.
    pub since: Option<String>,
    /// RFC 3339; events before.
    pub until: Option<String>,
    /// Continue after this sequence number (the previous page's `next`).
    pub after: Option<i64>,
    pub limit: Option<usize>,
}

/// One event, as stored, with its place in the chain.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditEventView {
    pub seq: i64,
    #[schema(value_type = String, format = DateTime)]
    #[serde(with = "time::serde::rfc3339")]
    pub at: time::OffsetDateTime,
    pub actor: String,
    pub action: String,
    pub target: String,
    /// `succeeded`, `failed` or `denied`.
    pub outcome: String,
    pub request_id: String,
    /// Source address of the request (`cli@HOST` for the embedded CLI).
    pub origin: String,
    pub before: Option<String>,
    pub after: Option<String>,
    #[schema(value_type = Object)]
    pub details: serde_json::Value,
    pub prev_hash: String,
    pub hash: String,
}

impl From<paved_store::AuditEvent> for AuditEventView {
    fn from(e: paved_store::AuditEvent) -> AuditEventView {
        let ev = e.event;
        AuditEventView {
            seq: e.seq,
            at: ev.at,
            actor: ev.actor,
            action: ev.action,
            target: ev.target,
            outcome: ev.outcome.as_str().into(),
            request_id: ev.request.request_id,
            origin: ev.request.origin,
            before: ev.before,
            after: ev.after,
            details: ev.details,
            prev_hash: e.prev_hash,
            hash: e.hash,
        }
    }
}

fn time_param(name: &str, v: &Option<String>) -> Result<Option<time::OffsetDateTime>, ApiError> {
    v.as_deref()
        .map(|s| {
            time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).map_err(|e| {
                ApiError::bad_request(name, format!("`{s}` is not an RFC 3339 time such as 2026-11-25T09:00:00Z: {e}"))
            })
        })
        .transpose()
}

/// Audit events, oldest first, filtered by actor, action, target and time.
#[utoipa::path(get, path = "/api/v1/audit", tag = "audit", params(AuditQuery),
    responses((status = 200, description = "OK", body = Page<AuditEventView>), (status = 400, description = "A malformed parameter or header (details name it)", body = ErrorBody), AccessErrors))]
pub async fn list_audit(
    State(state): State<AppState>,
    who: Authed,
    Query(q): Query<AuditQuery>,
) -> Result<axum::Json<Page<AuditEventView>>, ApiError> {
    let (since, until) = (time_param("since", &q.since)?, time_param("until", &q.until)?);
    who.allow(&state, Request { needs: Role::Operator, on: Target::Organisation }, "audit.list", "Audit/*").await?;
    let limit = q.limit.unwrap_or(100).clamp(1, crate::api::MAX_LIMIT);
    let filter = paved_store::AuditFilter {
        actor: q.actor,
        action: q.action,
        target: q.target,
        since,
        until,
        after_seq: q.after.unwrap_or(0),
        limit: limit as i64 + 1,
        newest_first: false,
    };
    let events = state.control.store.audit_events(&filter).await?;
    let items = events.into_iter().map(AuditEventView::from).collect();
    Ok(axum::Json(crate::api::page_of(items, limit, |e| e.seq.to_string())))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct VerifyResult {
    /// The chain holds and agrees with every signed checkpoint.
    pub intact: bool,
    pub events: i64,
    #[schema(value_type = Option<Object>)]
    pub first_break: Option<serde_json::Value>,
    /// The newest event covered by a checkpoint paved signed (and verified).
    pub anchored_seq: Option<i64>,
    /// How a signed checkpoint contradicts the chain (rewritten and
    /// re-hashed, truncated, forged).
    pub anchor_break: Option<String>,
    /// A checkpoint that could not be checked, and why (not tampering).
    pub unverifiable: Option<String>,
}

/// Checks the whole hash chain and names the first event edited, removed or
/// moved, then checks it against the checkpoints paved signed.
#[utoipa::path(get, path = "/api/v1/audit/verify", tag = "audit",
    responses((status = 200, description = "OK", body = VerifyResult), AccessErrors))]
pub async fn verify_audit(State(state): State<AppState>, who: Authed) -> Result<axum::Json<VerifyResult>, ApiError> {
    who.allow(&state, Request { needs: Role::Operator, on: Target::Organisation }, "audit.verify", "Audit/*").await?;
    let v = state.control.verify_audit().await?;
    Ok(axum::Json(VerifyResult {
        intact: v.intact(),
        events: v.chain.events,
        first_break: v.chain.first_break.as_ref().and_then(|b| serde_json::to_value(b).ok()),
        anchored_seq: v.anchored_seq,
        anchor_break: v.anchor_break,
        unverifiable: v.unverifiable,
    }))
}
