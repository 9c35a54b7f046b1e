//! Operations as a durable queue in the store, so that replicas sharing
//! one are interchangeable: any answers for an operation, and one finishes
//! the operations of a replica that died.
//!
//! | moment | what happens |
//! |---|---|
//! | accepted | recorded `running`, owned by this replica's instance, with its `work` (the graph or deployment to run and who asked), then run here |
//! | running | a journal task writes new events and the current state every [`FLUSH`] while they change, and at least every heartbeat (`--operation-heartbeat`); the write is the heartbeat |
//! | taken over | a write refused (another replica claimed it) stops the run here: its steps finish, nothing more is scheduled, and readers here follow the store |
//! | replica dead | every replica looks each heartbeat for running operations whose heartbeat is [`STALE_AFTER`] beats old and claims one (`FOR UPDATE SKIP LOCKED`); it runs the same work again, which the engine's journal makes a resumption (applied nodes are not redone; a lock of a dead process on this host is taken over) |
//! | audit | the run's audit event is appended in one transaction with marking the operation audited: one event however many replicas ran it |
//! | ended | the final state and its `done` event are written, and other replicas' readers woken (PostgreSQL `NOTIFY`) |
//! | shutdown | running operations stop scheduling and are released (heartbeat cleared): another replica claims them at its next look instead of after the timeout |
//!
//! Readers: `GET /operations/{id}` and its event stream read this
//! replica's memory for what it runs, else the store; a stream resumes
//! after the `Last-Event-ID` it was given, on any replica.

use crate::AppState;
use crate::auth::Authed;
use crate::error::ApiError;
use crate::operations::{self, Operation, OperationEvent, Status};
use paved_control::{Caller, OperationRef, RunOptions};
use paved_plan::ResourceGraph;
use paved_store::{Deployment, RequestContext, StoredOperation};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// How long a journal waits to gather more events before writing.
const FLUSH: Duration = Duration::from_millis(200);
/// Heartbeats an operation may miss before another replica takes it over.
pub const STALE_AFTER: u32 = 3;
/// The store channel that wakes readers of operations on other replicas.
pub(crate) const OPERATIONS_CHANNEL: &str = "paved_operations";
/// How long environment locks held by other live processes are waited for.
const LOCK_WAIT: Duration = Duration::from_secs(600);

/// What a replica runs to finish an operation (stored as its `work`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", tag = "run")]
pub enum Work {
    /// Bring the environment to this graph (empty: destroy it).
    Graph { graph: ResourceGraph, caller: StoredCaller },
    /// Roll out this recorded deployment.
    Deploy { deployment: Box<Deployment>, caller: StoredCaller },
}

/// Who asked, as the audit log records it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoredCaller {
    pub actor: String,
    pub request: RequestContext,
}

impl From<&Caller> for StoredCaller {
    fn from(c: &Caller) -> StoredCaller {
        StoredCaller { actor: c.actor.clone(), request: c.request.clone() }
    }
}

impl From<StoredCaller> for Caller {
    fn from(c: StoredCaller) -> Caller {
        Caller { actor: c.actor, request: c.request }
    }
}

fn stored_status(status: Status) -> &'static str {
    match status {
        Status::Running => paved_store::queue::RUNNING,
        Status::Succeeded => "succeeded",
        Status::Failed => "failed",
        Status::Cancelled => "cancelled",
    }
}

/// Records an operation of `who` and runs it here; the answer to give (202).
pub(crate) async fn accept(state: &AppState, who: &Authed, op: Operation, work: Work) -> Result<Operation, ApiError> {
    let now = state.control.clock.now();
    let record = StoredOperation {
        id: op.id.clone(),
        environment: op.environment.clone(),
        status: paved_store::queue::RUNNING.into(),
        owner: state.instance.clone(),
        heartbeat_at: now,
        attempts: 1,
        started_at: op.started_at,
        finished_at: None,
        body: serde_json::to_value(&op).map_err(ApiError::internal)?,
        work: serde_json::to_value(&work).map_err(ApiError::internal)?,
    };
    state.control.store.put_operation(&record).await.map_err(|e| {
        tracing::warn!(operation = %op.id, actor = %who.subject, error = %e, "could not record an operation");
        ApiError::from(e)
    })?;
    let cancel = state.operations.start(op.clone());
    tokio::spawn(drive(state.clone(), op.id.clone(), work, cancel, 0));
    Ok(op)
}

/// Records an operation that ended as it was accepted (a retried deploy
/// request): readable from every replica, nothing to run.
pub(crate) async fn record_ended(state: &AppState, op: &Operation) -> Result<(), ApiError> {
    let record = StoredOperation {
        id: op.id.clone(),
        environment: op.environment.clone(),
        status: paved_store::queue::RUNNING.into(),
        owner: state.instance.clone(),
        heartbeat_at: op.started_at,
        attempts: 1,
        started_at: op.started_at,
        finished_at: None,
        body: serde_json::to_value(op).map_err(ApiError::internal)?,
        work: serde_json::Value::Null,
    };
    let store = &state.control.store;
    store.put_operation(&record).await?;
    // Ended with its `done` event, as every operation ends.
    let done = OperationEvent {
        seq: 0,
        event: "done".into(),
        node: None,
        detail: Some(serde_json::json!({"status": op.status, "error": op.error})),
    };
    let events = [(0, serde_json::to_string(&done).map_err(ApiError::internal)?)];
    let at = op.finished_at.unwrap_or(op.started_at);
    store.save_operation(&op.id, &state.instance, stored_status(op.status), &record.body, &events, at).await?;
    Ok(())
}

/// Runs an operation this replica owns to its end, with its journal
/// (`written`: how many of its events the store holds already).
async fn drive(state: AppState, id: String, work: Work, cancel: Arc<AtomicBool>, written: usize) {
    let started = Instant::now();
    let lost = Arc::new(AtomicBool::new(false));
    let handed = Arc::new(AtomicBool::new(false));
    let journal = tokio::spawn(journal(state.clone(), id.clone(), written, lost.clone(), handed.clone()));
    let kind = state.operations.get(&id).map(|o| o.operation).unwrap_or_default();
    let (status, error) = match work {
        Work::Graph { graph, caller } => run_graph(&state, &id, graph, caller.into(), cancel).await,
        Work::Deploy { deployment, caller } => run_deploy(&state, &id, *deployment, caller.into()).await,
    };
    if lost.load(Ordering::SeqCst) {
        // Another replica owns it now and ends it; this run's end is not the operation's.
        tracing::warn!(operation = %id, "the operation was taken over by another replica; stopped here");
        let _ = journal.await;
        return;
    }
    if status == Status::Cancelled && state.shutting_down.load(Ordering::SeqCst) {
        // Stopped by this replica's shutdown, not by anyone's wish: another replica finishes it.
        handed.store(true, Ordering::SeqCst);
        state.operations.touch();
        let _ = journal.await;
        return;
    }
    operations::observe(&state.metrics, &kind, status, started.elapsed().as_secs_f64());
    let environment = state.operations.get(&id).map(|o| o.environment).unwrap_or_default();
    tracing::info!(operation = %id, kind = %kind, environment = %environment, ?status,
        error = error.as_deref().unwrap_or(""), "operation finished");
    state.operations.finish(&id, status, error, state.control.clock.now());
    let _ = journal.await;
}

fn run_options(state: &AppState, id: &str, caller: &Caller) -> RunOptions {
    RunOptions {
        parallelism: state.config.parallelism,
        holder: format!("{}@{}:{}", caller.actor, state.holder_host, std::process::id()),
        lock_timeout: LOCK_WAIT,
        jitter_seed: rand::random(),
        operation: Some(OperationRef { id: id.to_string(), owner: state.instance.clone() }),
    }
}

struct Waiting {
    ops: operations::Operations,
    id: String,
}

impl paved_control::LockWatcher for Waiting {
    fn waiting(&self, holder: &str, _environment: &str, _timeout: Duration) {
        self.ops.waiting(&self.id, holder);
    }
}

async fn run_graph(
    state: &AppState,
    id: &str,
    desired: ResourceGraph,
    caller: Caller,
    cancel: Arc<AtomicBool>,
) -> (Status, Option<String>) {
    let run = run_options(state, id, &caller);
    let progress = state.operations.progress(id, state.metrics.clone());
    let waiting = Waiting { ops: state.operations.clone(), id: id.to_string() };
    let mut result = state.control.run(&desired, &run, &caller, cancel, progress, &waiting).await;
    // A cluster environment's services come through Git: its manifests are committed once it is provisioned.
    if let Ok(report) = &result
        && report.succeeded()
        && !report.cancelled
        && let Err(e) = state.control.deliver_after_run(&desired, &caller).await
    {
        result = Err(e);
    }
    match result {
        Ok(report) if report.cancelled => (Status::Cancelled, None),
        Ok(report) if report.succeeded() => (Status::Succeeded, None),
        Ok(_) => (Status::Failed, Some("some resources failed; see outcomes".to_string())),
        Err(e) => (Status::Failed, Some(e.to_string())),
    }
}

async fn run_deploy(state: &AppState, id: &str, deployment: Deployment, caller: Caller) -> (Status, Option<String>) {
    // A rollout is several applies (the deploy, and a rollback's), each
    // audited as before: the once-per-operation event is for applies and destroys.
    let run = RunOptions { operation: None, ..run_options(state, id, &caller) };
    let progress = state.operations.progress(id, state.metrics.clone());
    let result = state.control.roll_out(deployment, &caller, &run, progress).await;
    let (status, error) = match result {
        Ok(r) if r.deployment.status == paved_store::DeploymentStatus::Healthy => (Status::Succeeded, None),
        Ok(r) => (
            Status::Failed,
            Some(format!(
                "deployment #{} is {}: {}",
                r.deployment.number,
                r.deployment.status,
                r.deployment.reason.unwrap_or_default()
            )),
        ),
        Err(e) => (Status::Failed, Some(e.to_string())),
    };
    let outcome = if status == Status::Succeeded { "healthy" } else { "failed" };
    state.metrics.deployments.get_or_create(&crate::metrics::OutcomeLabels { outcome: outcome.into() }).inc();
    (status, error)
}

/// Writes an operation's progress to the store while this replica runs it:
/// soon after each change, and at least every heartbeat (the write is the
/// heartbeat). Ends after writing its end; sets `lost` and stops the run
/// here when another replica took it over. `handed`: this replica is
/// shutting down; what it did is written and the operation released.
async fn journal(state: AppState, id: String, mut written: usize, lost: Arc<AtomicBool>, handed: Arc<AtomicBool>) {
    let store = state.control.store.clone();
    let heartbeat = state.config.operation_heartbeat;
    let mut last_write = Instant::now();
    loop {
        let Some(op) = state.operations.get(&id) else { return };
        let (events, _) = state.operations.events_since(&id, written).unwrap_or_default();
        if handed.load(Ordering::SeqCst) {
            let (rows, body) = stored_progress(&events, &op);
            let now = state.control.clock.now();
            match store.save_operation(&id, &state.instance, paved_store::queue::RUNNING, &body, &rows, now).await {
                Ok(true) => release_all(&state, std::slice::from_ref(&id)).await,
                // Its heartbeat lapsed while the run stopped: another replica has it already.
                Ok(false) => {
                    tracing::info!(operation = %id, "a running operation was taken over while this replica stopped")
                }
                Err(e) => {
                    tracing::warn!(operation = %id, error = %e, "could not record an operation's last progress before handing it over");
                    release_all(&state, std::slice::from_ref(&id)).await;
                }
            }
            state.operations.forget(&id);
            return;
        }
        let due = last_write.elapsed() >= heartbeat;
        if events.is_empty() && op.status == Status::Running && !due {
            // A change made just before this wait began is caught by the next look, at most a second later.
            let wait = heartbeat.saturating_sub(last_write.elapsed()).min(Duration::from_secs(1));
            state.operations.changed(wait).await;
            // Gather what follows the change into one write.
            tokio::time::sleep(FLUSH).await;
            continue;
        }
        let (rows, body) = stored_progress(&events, &op);
        let now = state.control.clock.now();
        match store.save_operation(&id, &state.instance, stored_status(op.status), &body, &rows, now).await {
            Ok(true) => {
                written += events.len();
                last_write = Instant::now();
                if !events.is_empty() || op.status != Status::Running {
                    let _ = store.wake(OPERATIONS_CHANNEL).await;
                }
                if op.status != Status::Running {
                    return;
                }
            }
            Ok(false) => {
                lost.store(true, Ordering::SeqCst);
                state.operations.forget(&id);
                return;
            }
            Err(e) => {
                // Retried at the next change or beat; an owner that cannot
                // write for STALE_AFTER beats is taken over, and learns it here.
                tracing::warn!(operation = %id, error = %e, "could not record an operation's progress");
                tokio::time::sleep(heartbeat / 4).await;
            }
        }
    }
}

/// New events as stored rows `(seq, JSON)`, and the operation's state as stored.
fn stored_progress(events: &[OperationEvent], op: &Operation) -> (Vec<(i64, String)>, serde_json::Value) {
    let rows = events.iter().map(|e| (e.seq as i64, serde_json::to_string(e).unwrap_or_default())).collect();
    (rows, serde_json::to_value(op).unwrap_or_default())
}

/// Every replica: each heartbeat, claims an operation whose replica
/// stopped beating its heartbeat and finishes it; now and then prunes
/// operations past their retention and counts the queue for `/metrics`.
pub(crate) async fn adopt_loop(state: AppState) {
    let heartbeat = state.config.operation_heartbeat;
    let stale = time::Duration::try_from(heartbeat * STALE_AFTER).unwrap_or(time::Duration::seconds(15));
    let retention = time::Duration::try_from(state.config.operation_retention).unwrap_or(time::Duration::HOUR);
    let mut pruned_at: Option<Instant> = None;
    loop {
        if state.shutting_down.load(Ordering::SeqCst) {
            return; // a stopping replica takes nothing on
        }
        let store = &state.control.store;
        let now = state.control.clock.now();
        match store.claim_stale_operation(&state.instance, now, now - stale).await {
            Ok(Some(claimed)) => {
                if let Err(e) = resume(&state, claimed).await {
                    tracing::warn!(error = %e, "could not resume an operation taken over");
                }
                continue; // there may be more
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, "could not look for operations to take over"),
        }
        if let Ok(stats) = store.queue_stats().await {
            state.metrics.operations_queued.set(stats.running);
            let age = stats.oldest_heartbeat.map_or(0.0, |h| (now - h).as_seconds_f64().max(0.0));
            state.metrics.operation_oldest_heartbeat.set(age);
        }
        if pruned_at.is_none_or(|at| at.elapsed() >= Duration::from_secs(60)) {
            pruned_at = Some(Instant::now());
            match store.prune_operations(now - retention).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(operations = n, "pruned finished operations past their retention"),
                Err(e) => tracing::warn!(error = %e, "could not prune finished operations"),
            }
        }
        tokio::time::sleep(heartbeat).await;
    }
}

/// Runs an operation claimed from a dead replica, going on from its recorded events.
async fn resume(state: &AppState, claimed: StoredOperation) -> Result<(), String> {
    let mut op: Operation = serde_json::from_value(claimed.body).map_err(|e| format!("{}: {e}", claimed.id))?;
    let work: Work = serde_json::from_value(claimed.work).map_err(|e| format!("{}: {e}", claimed.id))?;
    let events = recorded_events(state, &claimed.id).await.map_err(|e| e.to_string())?;
    op.attempts = claimed.attempts;
    op.status = Status::Running;
    // The new attempt plans again and reports every node anew (those the
    // dead replica finished as unchanged); the trail keeps what it saw.
    (op.total, op.done) = (0, 0);
    op.outcomes.clear();
    state.metrics.operation_takeovers.inc();
    tracing::info!(operation = %op.id, environment = %op.environment, attempts = op.attempts, from = %claimed.owner,
        "took over an operation whose replica stopped");
    let id = op.id.clone();
    let mut events = events;
    let seq = events.len();
    let written = seq;
    events.push(OperationEvent {
        seq,
        event: "resumed".into(),
        node: None,
        detail: Some(serde_json::json!({"replica": state.replica, "attempt": op.attempts})),
    });
    let cancel = state.operations.resume(op, events);
    tokio::spawn(drive(state.clone(), id, work, cancel, written));
    Ok(())
}

/// Every event recorded for an operation, in order.
async fn recorded_events(state: &AppState, id: &str) -> Result<Vec<OperationEvent>, paved_store::StoreError> {
    let mut all = Vec::new();
    let mut after = -1;
    loop {
        let page = state.control.store.operation_events(id, after, 1000).await?;
        let Some((last, _)) = page.last() else { return Ok(all) };
        after = *last;
        all.extend(page.iter().filter_map(|(_, body)| serde_json::from_str(body).ok()));
    }
}

/// Gives up this replica's running operations at shutdown, after their
/// runs stopped scheduling: another replica claims them at once.
pub(crate) async fn release_all(state: &AppState, ids: &[String]) {
    for id in ids {
        match state.control.store.release_operation(id, &state.instance).await {
            Ok(true) => tracing::info!(operation = %id, "released a running operation to the other replicas"),
            Ok(false) => {}
            Err(e) => {
                tracing::warn!(operation = %id, error = %e, "could not release an operation; it is taken over after its heartbeat lapses")
            }
        }
    }
}

/// An operation as this replica knows it: its own running ones from
/// memory, the rest from the store.
pub(crate) async fn read(state: &AppState, id: &str) -> Result<Option<Operation>, ApiError> {
    if let Some(op) = state.operations.get(id) {
        return Ok(Some(op));
    }
    let Some(stored) = state.control.store.get_operation(id).await? else { return Ok(None) };
    let mut op: Operation = serde_json::from_value(stored.body).map_err(ApiError::internal)?;
    op.attempts = stored.attempts;
    Ok(Some(op))
}

/// Events after `after` (`-1`: all) and whether the operation has ended:
/// from memory when this replica runs it, else from the store, waiting
/// (woken by the owner's writes, or once a second) until there are some
/// or it ended. `None`: no such operation.
pub(crate) async fn next_events(state: &AppState, id: &str, after: i64) -> Option<(Vec<OperationEvent>, bool)> {
    let from = usize::try_from(after + 1).unwrap_or(0);
    loop {
        if state.shutting_down.load(Ordering::SeqCst) && state.operations.get(id).is_none() {
            return None; // a stopping replica ends its streams; they resume on another
        }
        let notified = state.operation_wake.notified();
        let mut notified = std::pin::pin!(notified);
        notified.as_mut().enable();
        if state.operations.get(id).is_some() {
            if let Some(found) = state.operations.next_events(id, from).await {
                return Some(found);
            }
            continue; // taken over meanwhile: the store has it
        }
        let events = state.control.store.operation_events(id, after, 1000).await.ok()?;
        let events: Vec<OperationEvent> = events.iter().filter_map(|(_, b)| serde_json::from_str(b).ok()).collect();
        let ended = read(state, id).await.ok()??.status != Status::Running;
        if !events.is_empty() || ended {
            return Some((events, ended));
        }
        let _ = tokio::time::timeout(Duration::from_secs(1), notified).await;
    }
}
