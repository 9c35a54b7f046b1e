//! Progress of applies and destroys: by polling, or as Server-Sent Events.

use crate::AppState;
use crate::api::AccessErrors;
use crate::auth::{Authed, spec_target};
use crate::error::{ApiError, ErrorBody};
use crate::operations::Operation;
use axum::extract::{Path, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::Stream;
use paved_auth::{Request, Target};
use paved_model::{Kind, Role};
use std::convert::Infallible;

/// Who may follow an operation: viewers of its environment.
pub(crate) async fn authorised(state: &AppState, who: &Authed, id: &str) -> Result<Operation, ApiError> {
    let op = state.operations.get(id).ok_or_else(|| ApiError::not_found(format!("operation `{id}` not found")))?;
    let catalog = state.control.catalog(who.request.clone());
    let spec = catalog.get(Kind::Environment, &op.environment).await.ok().map(|o| o.spec);
    let on = spec.as_ref().map_or(Target::Organisation, spec_target);
    who.allow(state, Request { needs: Role::Viewer, on }, "operation.get", &format!("Operation/{id}")).await?;
    Ok(op)
}

/// An operation's state: status, resources done, each one's outcome.
#[utoipa::path(get, path = "/api/v1/operations/{id}", tag = "operations", params(("id" = String, Path)),
    responses((status = 200, description = "OK", body = Operation), AccessErrors, (status = 404, description = "Not found", body = ErrorBody)))]
pub async fn get_operation(
    State(state): State<AppState>,
    who: Authed,
    Path(id): Path<String>,
) -> Result<axum::Json<Operation>, ApiError> {
    Ok(axum::Json(authorised(&state, &who, &id).await?))
}

/// The operation's progress as Server-Sent Events (`planned`, `started`,
/// `finished`, then `done`), from the beginning; the stream ends with the operation.
#[utoipa::path(get, path = "/api/v1/operations/{id}/events", tag = "operations", params(("id" = String, Path)),
    responses((status = 200, description = "Server-Sent Events, one JSON OperationEvent each", content_type = "text/event-stream"),
        AccessErrors, (status = 404, description = "Not found", body = ErrorBody)))]
pub async fn operation_events(
    State(state): State<AppState>,
    who: Authed,
    Path(id): Path<String>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    authorised(&state, &who, &id).await?;
    let ops = state.operations.clone();
    let stream = futures_util::stream::unfold((ops, id, 0usize, false), |(ops, id, next, ended)| async move {
        if ended {
            return None;
        }
        let (events, finished) = ops.next_events(&id, next).await?;
        if events.is_empty() {
            return None;
        }
        let n = next + events.len();
        let batch: Vec<Result<Event, Infallible>> = events
            .iter()
            .map(|e| Ok(Event::default().event(e.event.clone()).id(e.seq.to_string()).json_data(e).unwrap_or_default()))
            .collect();
        // Ended, and nothing was added after this batch: this is the last one.
        let last = finished && ops.events_since(&id, n).is_some_and(|(rest, _)| rest.is_empty());
        Some((futures_util::stream::iter(batch), (ops, id, n, last)))
    });
    use futures_util::StreamExt;
    Ok(Sse::new(stream.flatten()).keep_alive(KeepAlive::default()))
}
