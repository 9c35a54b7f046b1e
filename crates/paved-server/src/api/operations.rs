//! Progress of applies and destroys: by polling, or as Server-Sent Events,
//! from any replica (see [`crate::queue`]).

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
    let op = crate::queue::read(state, id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("operation `{id}` not found")))?;
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
/// `finished`, then `done`; `waiting` for another apply's lock, `resumed`
/// when a replica took it over from one that stopped), from the beginning,
/// or after the event a `Last-Event-ID` header names (a stream cut off, by
/// its replica stopping say, resumes on any replica where it left off).
/// The stream ends with the operation.
#[utoipa::path(get, path = "/api/v1/operations/{id}/events", tag = "operations",
    params(("id" = String, Path), ("Last-Event-ID" = Option<String>, Header, description = "Resume after this event")),
    responses((status = 200, description = "Server-Sent Events, one JSON OperationEvent each", content_type = "text/event-stream"),
        AccessErrors, (status = 404, description = "Not found", body = ErrorBody),
        (status = 422, description = "A Last-Event-ID that is not an event number", body = ErrorBody)))]
pub async fn operation_events(
    State(state): State<AppState>,
    who: Authed,
    Path(id): Path<String>,
    headers: axum::http::HeaderMap,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    authorised(&state, &who, &id).await?;
    let after = match headers.get("last-event-id") {
        None => -1,
        Some(v) => v.to_str().ok().and_then(|v| v.trim().parse::<i64>().ok()).filter(|n| *n >= 0).ok_or_else(|| {
            ApiError::invalid("Last-Event-ID", "the header must be the number of an event this stream sent (its `id:`)")
        })?,
    };
    let stream = futures_util::stream::unfold((state, id, after, false), |(state, id, after, ended)| async move {
        if ended {
            return None;
        }
        let (events, finished) = crate::queue::next_events(&state, &id, after).await?;
        if events.is_empty() {
            return None; // ended with nothing more to send
        }
        let last = events.last().map_or(after, |e| e.seq as i64);
        // The `done` event is the last one an operation has.
        let done = finished && events.iter().any(|e| e.event == "done");
        let batch: Vec<Result<Event, Infallible>> = events
            .iter()
            .map(|e| Ok(Event::default().event(e.event.clone()).id(e.seq.to_string()).json_data(e).unwrap_or_default()))
            .collect();
        Some((futures_util::stream::iter(batch), (state, id, last, done)))
    });
    use futures_util::StreamExt;
    Ok(Sse::new(stream.flatten()).keep_alive(KeepAlive::default()))
}
