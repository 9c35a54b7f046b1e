//! Walking a dependency graph with bounded parallelism: the one walker that
//! serves creation (dependencies first) and deletion (dependents first).

use crate::Outcome;
use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::task::JoinSet;

/// How long running steps may go on after a cancel before they are dropped.
pub const STOP_GRACE: Duration = Duration::from_secs(5);

/// What ends a walk early.
#[derive(Clone, Default)]
pub struct Stop {
    /// Set by whoever asked for the run (Ctrl-C, a server's shutdown):
    /// nothing new starts, running steps get [`STOP_GRACE`].
    pub cancel: Arc<AtomicBool>,
    /// Set when the run lost its environment's lock: running steps are
    /// dropped at once, before the lock's next holder can start them again.
    pub cut_off: Arc<AtomicBool>,
}

impl Stop {
    fn stopping(&self) -> bool {
        self.cancel.load(Ordering::SeqCst) || self.cut_off.load(Ordering::SeqCst)
    }
}

/// How often a walk looks at the cancel flag while steps run.
const CANCEL_POLL: Duration = Duration::from_millis(100);

/// Runs `run(id)` for every node once all of its `after` nodes succeeded.
/// Entries of `after` that are not nodes of this walk count as done. A
/// failure skips everything that waits on it; after `cancel` is set, no new
/// node starts and running ones get [`STOP_GRACE`] to finish before they are
/// dropped; after `cut_off`, they are dropped at once.
///
/// Why drop them: a running step may wait on something the cancel keeps
/// from starting (a workload's readiness needs a dependency that is no
/// longer scheduled), and would hold the stop to its own timeout. Dropping
/// a step is what a crash at that point does, which the engine recovers
/// from: the next apply observes the resource and converges it.
pub async fn walk<F, Fut>(
    after: BTreeMap<String, BTreeSet<String>>,
    parallelism: usize,
    stop: &Stop,
    run: F,
) -> BTreeMap<String, Outcome>
where
    F: Fn(String) -> Fut,
    Fut: Future<Output = Outcome> + Send + 'static,
{
    let mut outcomes: BTreeMap<String, Outcome> = BTreeMap::new();
    let mut waiting: BTreeMap<String, BTreeSet<String>> = after
        .iter()
        .map(|(id, deps)| (id.clone(), deps.iter().filter(|d| after.contains_key(*d)).cloned().collect()))
        .collect();
    let mut running: JoinSet<Outcome> = JoinSet::new();
    let mut task_ids: BTreeMap<tokio::task::Id, String> = BTreeMap::new();
    let mut stop_by: Option<tokio::time::Instant> = None;
    let mut aborted = false;
    loop {
        // Skip whatever waits on a failure; start whatever is ready.
        let mut progressed = true;
        while progressed {
            progressed = false;
            let ids: Vec<String> = waiting.keys().cloned().collect();
            for id in ids {
                let deps = &waiting[&id];
                // Once stopping, what waits stays not started (not "skipped").
                let failed = || deps.iter().find(|d| outcomes.get(*d).is_some_and(|o| !o.succeeded()));
                if let Some(bad) = failed().filter(|_| !stop.stopping()) {
                    let because = format!("`{bad}` did not succeed");
                    waiting.remove(&id);
                    outcomes.insert(id, Outcome::Skipped { because });
                    progressed = true;
                } else if running.len() < parallelism.max(1)
                    && !stop.stopping()
                    && deps.iter().all(|d| outcomes.get(d).is_some_and(Outcome::succeeded))
                {
                    waiting.remove(&id);
                    let handle = running.spawn(run(id.clone()));
                    task_ids.insert(handle.id(), id);
                    progressed = true;
                }
            }
        }
        if stop_by.is_none() && stop.cancel.load(Ordering::SeqCst) {
            stop_by = Some(tokio::time::Instant::now() + STOP_GRACE);
        }
        if stop.cut_off.load(Ordering::SeqCst) && !aborted {
            stop_by = Some(tokio::time::Instant::now());
        }
        let deadline = stop_by.filter(|_| !aborted);
        let next = tokio::select! {
            next = running.join_next_with_id() => next,
            // The flag has no waker: look at it a few times a second.
            _ = tokio::time::sleep(CANCEL_POLL), if !aborted && !running.is_empty() => continue,
            _ = tokio::time::sleep_until(deadline.unwrap_or_else(tokio::time::Instant::now)), if deadline.is_some() => {
                running.abort_all();
                aborted = true;
                continue;
            }
        };
        match next {
            Some(Ok((task, outcome))) => {
                outcomes.insert(task_ids.remove(&task).unwrap_or_default(), outcome);
            }
            Some(Err(e)) if e.is_cancelled() => {
                let id = task_ids.remove(&e.id()).unwrap_or_default();
                let error = if stop.cut_off.load(Ordering::SeqCst) {
                    "interrupted: this run lost its environment's lock (the store did not renew it in time, or \
                     another run took it over); the run holding the lock observes this step and finishes it"
                        .to_string()
                } else {
                    format!(
                        "interrupted: the apply was cancelled and this step was still running after {STOP_GRACE:?}; \
                         the next apply observes it and finishes it"
                    )
                };
                outcomes.insert(id, Outcome::Failed { error, attempts: 1 });
            }
            Some(Err(e)) => {
                // A panicking driver must not take the apply down with it.
                let id = task_ids.remove(&e.id()).unwrap_or_default();
                outcomes.insert(id, Outcome::Failed { error: format!("driver panicked: {e}"), attempts: 1 });
            }
            None => break,
        }
    }
    for id in waiting.into_keys() {
        outcomes.insert(id, Outcome::NotStarted);
    }
    outcomes
}
