//! Long operations (apply, destroy) run in the background; the request that
//! started one gets its id, and progress is read by polling
//! (`GET /operations/{id}`) or as Server-Sent Events. This module holds
//! the operations this replica runs, in memory, where its readers follow
//! them as they happen; [`crate::queue`] records them in the store, where
//! every replica reads them and one takes over those of a replica that died.
//!
//! Finished operations are kept for a retention (default an hour) and at
//! most [`Retention::keep`] of them, oldest evicted first, so a server that
//! runs for months holds a bounded trail; running operations are never
//! evicted. Eviction happens when an operation starts (time comes from the
//! operations themselves, so it is as injectable as the clock that made them).

use crate::metrics::{Metrics, OperationLabels, OutcomeLabels};
use paved_engine::{Outcome, Progress};
use paved_plan::Action;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use time::OffsetDateTime;
use utoipa::ToSchema;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Running,
    Succeeded,
    Failed,
    Cancelled,
}

/// One step of an operation's progress.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct OperationEvent {
    pub seq: usize,
    /// `waiting` (for another apply's lock), `planned`, `started`, `finished` or `done`.
    pub event: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// What is done to the node (`create`, `update`, …) or what came of it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<serde_json::Value>,
}

/// An apply or destroy, as the API shows it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Operation {
    pub id: String,
    /// `apply` or `destroy`.
    pub operation: String,
    pub environment: String,
    pub actor: String,
    pub request_id: String,
    pub status: Status,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub started_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub finished_at: Option<OffsetDateTime>,
    /// Resources planned and finished so far.
    pub total: usize,
    pub done: usize,
    /// Each resource's outcome, once known.
    #[schema(value_type = Object)]
    pub outcomes: BTreeMap<String, serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// How many replicas have run it: 1, plus one per takeover (its replica died).
    #[serde(default = "one")]
    pub attempts: i64,
    /// Services the apply leaves out, with why (their resources cannot be
    /// provisioned here); the rest of the environment applies.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schema(value_type = Object)]
    pub blocked: BTreeMap<String, Vec<String>>,
}

impl Operation {
    /// A new operation of `who` on `environment`, running from `at`.
    pub fn running(operation: &str, environment: &str, who: &crate::auth::Authed, at: OffsetDateTime) -> Operation {
        Operation {
            id: format!("op_{}", crate::new_id()),
            operation: operation.into(),
            environment: environment.into(),
            actor: who.subject.clone(),
            request_id: who.request.request_id.clone(),
            status: Status::Running,
            started_at: at,
            finished_at: None,
            total: 0,
            done: 0,
            outcomes: BTreeMap::new(),
            error: None,
            attempts: 1,
            blocked: BTreeMap::new(),
        }
    }
}

fn one() -> i64 {
    1
}

struct Entry {
    op: Operation,
    events: Vec<OperationEvent>,
    cancel: Arc<AtomicBool>,
}

/// How long finished operations stay readable, and how many at most.
#[derive(Debug, Clone, Copy)]
pub struct Retention {
    pub after_end: time::Duration,
    pub keep: usize,
}

impl Default for Retention {
    fn default() -> Retention {
        Retention { after_end: time::Duration::HOUR, keep: 1000 }
    }
}

/// Every operation of this server process, and a signal when any changes.
#[derive(Clone, Default)]
pub struct Operations {
    inner: Arc<Mutex<BTreeMap<String, Entry>>>,
    changed: Arc<tokio::sync::Notify>,
    retention: Retention,
}

impl Operations {
    pub fn with_retention(retention: Retention) -> Operations {
        Operations { retention, ..Operations::default() }
    }

    /// Registers a running operation, evicting finished ones past the retention.
    pub fn start(&self, op: Operation) -> Arc<AtomicBool> {
        let cancel = Arc::new(AtomicBool::new(false));
        let entry = Entry { op: op.clone(), events: vec![], cancel: cancel.clone() };
        let mut all = self.lock();
        let cutoff = op.started_at - self.retention.after_end;
        all.retain(|_, e| e.op.finished_at.is_none_or(|end| end >= cutoff));
        let mut finished: Vec<(OffsetDateTime, String)> =
            all.values().filter_map(|e| e.op.finished_at.map(|end| (end, e.op.id.clone()))).collect();
        if finished.len() >= self.retention.keep {
            finished.sort();
            for (_, id) in finished.iter().take(finished.len() + 1 - self.retention.keep.max(1)) {
                all.remove(id);
            }
        }
        all.insert(op.id, entry);
        cancel
    }

    /// Holds an operation taken over from another replica, with the events
    /// recorded so far (numbering goes on after them).
    pub fn resume(&self, op: Operation, events: Vec<OperationEvent>) -> Arc<AtomicBool> {
        let cancel = Arc::new(AtomicBool::new(false));
        let entry = Entry { op: op.clone(), events, cancel: cancel.clone() };
        self.lock().insert(op.id, entry);
        self.changed.notify_waiters();
        cancel
    }

    /// Stops holding an operation another replica took over: it is read
    /// from the store from now on. Its run is asked to stop.
    pub fn forget(&self, id: &str) {
        if let Some(e) = self.lock().remove(id) {
            e.cancel.store(true, std::sync::atomic::Ordering::SeqCst);
        }
        self.changed.notify_waiters();
    }

    /// Wakes everyone waiting for a change (one that is not in an operation's own state).
    pub fn touch(&self) {
        self.changed.notify_waiters();
    }

    /// Waits until an operation changes (or `timeout` passes).
    pub async fn changed(&self, timeout: std::time::Duration) {
        let _ = tokio::time::timeout(timeout, self.changed.notified()).await;
    }

    /// How many operations are held (running and finished).
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Entry>> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn get(&self, id: &str) -> Option<Operation> {
        self.lock().get(id).map(|e| e.op.clone())
    }

    /// Events from `from` on, and whether the operation has ended.
    pub fn events_since(&self, id: &str, from: usize) -> Option<(Vec<OperationEvent>, bool)> {
        self.lock().get(id).map(|e| (e.events.iter().skip(from).cloned().collect(), e.op.status != Status::Running))
    }

    /// Events from `from` on, waiting until there are some or the operation
    /// has ended; `None` for an unknown operation.
    pub async fn next_events(&self, id: &str, from: usize) -> Option<(Vec<OperationEvent>, bool)> {
        loop {
            // Registered before looking, so a change made in between is not missed.
            let notified = self.changed.notified();
            let mut notified = std::pin::pin!(notified);
            notified.as_mut().enable();
            let (events, finished) = self.events_since(id, from)?;
            if !events.is_empty() || finished {
                return Some((events, finished));
            }
            notified.await;
        }
    }

    fn update(&self, id: &str, f: impl FnOnce(&mut Entry)) {
        if let Some(e) = self.lock().get_mut(id) {
            f(e);
        }
        self.changed.notify_waiters();
    }

    fn push(&self, id: &str, event: &str, node: Option<&str>, detail: Option<serde_json::Value>) {
        self.update(id, |e| {
            let seq = e.events.len();
            e.events.push(OperationEvent { seq, event: event.into(), node: node.map(str::to_string), detail });
        });
    }

    /// Ends an operation; its status and its `done` event change together, so
    /// a reader never sees it ended without the event.
    pub fn finish(&self, id: &str, status: Status, error: Option<String>, at: OffsetDateTime) {
        self.update(id, |e| {
            let detail = serde_json::json!({"status": status, "error": error});
            e.op.status = status;
            e.op.error = error;
            e.op.finished_at = Some(at);
            let seq = e.events.len();
            e.events.push(OperationEvent { seq, event: "done".into(), node: None, detail: Some(detail) });
        });
    }

    /// Asks every running operation to stop scheduling (graceful shutdown):
    /// running steps finish and are recorded.
    pub fn cancel_all(&self) {
        for e in self.lock().values() {
            e.cancel.store(true, std::sync::atomic::Ordering::SeqCst);
        }
    }

    pub fn running(&self) -> usize {
        self.lock().values().filter(|e| e.op.status == Status::Running).count()
    }

    /// Records that the operation waits for another holder of the environment's lock.
    pub fn waiting(&self, id: &str, holder: &str) {
        self.push(id, "waiting", None, Some(serde_json::json!({"holder": holder})));
    }

    /// A [`Progress`] that records the engine's steps on operation `id`.
    pub fn progress(&self, id: &str, metrics: Arc<Metrics>) -> Arc<dyn Progress> {
        Arc::new(Recorder { ops: self.clone(), id: id.to_string(), metrics })
    }
}

struct Recorder {
    ops: Operations,
    id: String,
    metrics: Arc<Metrics>,
}

impl Progress for Recorder {
    fn planned(&self, total: usize) {
        self.ops.update(&self.id, |e| e.op.total = total);
        self.ops.push(&self.id, "planned", None, Some(serde_json::json!({"total": total})));
    }

    fn started(&self, id: &str, action: Action) {
        self.ops.push(&self.id, "started", Some(id), serde_json::to_value(action).ok());
    }

    fn finished(&self, id: &str, outcome: &Outcome) {
        let value = serde_json::to_value(outcome).unwrap_or_default();
        let name = value["outcome"].as_str().unwrap_or("unknown").to_string();
        self.metrics.nodes.get_or_create(&OutcomeLabels { outcome: name }).inc();
        self.ops.update(&self.id, |e| {
            e.op.done += 1;
            e.op.outcomes.insert(id.to_string(), value.clone());
        });
        self.ops.push(&self.id, "finished", Some(id), Some(value));
    }
}

/// Counts a finished operation and its duration.
pub fn observe(metrics: &Metrics, operation: &str, status: Status, seconds: f64) {
    let outcome = serde_json::to_value(status).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default();
    let labels = OperationLabels { operation: operation.into(), outcome };
    metrics.operations.get_or_create(&labels).inc();
    metrics.provisioning.get_or_create(&labels).observe(seconds);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(id: &str) -> Operation {
        Operation {
            id: id.into(),
            operation: "apply".into(),
            environment: "dev".into(),
            actor: "a".into(),
            request_id: "r".into(),
            status: Status::Running,
            started_at: OffsetDateTime::UNIX_EPOCH,
            finished_at: None,
            total: 0,
            done: 0,
            outcomes: BTreeMap::new(),
            error: None,
            attempts: 1,
            blocked: BTreeMap::new(),
        }
    }

    fn at(minutes: i64) -> OffsetDateTime {
        OffsetDateTime::UNIX_EPOCH + time::Duration::minutes(minutes)
    }

    #[test]
    fn finished_operations_are_evicted_after_the_retention_and_beyond_the_cap() {
        let ops = Operations::with_retention(Retention { after_end: time::Duration::HOUR, keep: 3 });
        let started = |id: &str, minute| Operation { started_at: at(minute), ..op(id) };
        ops.start(started("long-running", 0));
        ops.start(started("a", 0));
        ops.finish("a", Status::Succeeded, None, at(1));
        ops.start(started("b", 2));
        ops.finish("b", Status::Failed, Some("no".into()), at(30));
        // An hour after a ended, it is gone; b (ended later) and the running one stay.
        ops.start(started("c", 62));
        assert!(ops.get("a").is_none());
        assert!(ops.get("b").is_some() && ops.get("long-running").is_some());
        // At most three finished (room is made as one starts): the oldest go first, running ones never.
        for (i, id) in ["d", "e", "f"].iter().enumerate() {
            ops.finish("c", Status::Succeeded, None, at(63));
            ops.start(started(id, 64 + i as i64));
            ops.finish(id, Status::Succeeded, None, at(65 + i as i64));
        }
        ops.start(started("g", 70));
        assert!(["b", "c", "d"].iter().all(|id| ops.get(id).is_none()), "the oldest finished were kept");
        assert!(["e", "f", "g", "long-running"].iter().all(|id| ops.get(id).is_some()));
        assert_eq!(ops.len(), 4);
        // Far later, every finished operation has gone; the running ones stay.
        ops.start(started("h", 10_000));
        let left: Vec<_> = ["long-running", "g", "h"].iter().filter(|id| ops.get(id).is_some()).collect();
        assert_eq!(left, [&"long-running", &"g", &"h"]);
        assert_eq!(ops.len(), 3);
    }

    #[tokio::test]
    async fn a_follower_is_woken_by_progress_and_sees_the_end_with_its_event() {
        let ops = Operations::default();
        ops.start(op("x"));
        let follower = {
            let ops = ops.clone();
            tokio::spawn(async move { ops.next_events("x", 0).await })
        };
        tokio::task::yield_now().await;
        ops.waiting("x", "someone");
        let (events, finished) =
            tokio::time::timeout(std::time::Duration::from_secs(5), follower).await.unwrap().unwrap().unwrap();
        assert_eq!((events.len(), finished), (1, false));
        ops.finish("x", Status::Succeeded, None, OffsetDateTime::UNIX_EPOCH);
        let (events, finished) = ops.next_events("x", 1).await.unwrap();
        assert!(finished);
        assert_eq!(events.iter().map(|e| e.event.as_str()).collect::<Vec<_>>(), ["done"]);
        assert!(ops.next_events("nope", 0).await.is_none());
    }
}
