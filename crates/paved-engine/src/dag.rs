//! Walking a dependency graph with bounded parallelism: the one walker that
//! serves creation (dependencies first) and deletion (dependents first).

use crate::Outcome;
use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::task::JoinSet;

/// Runs `run(id)` for every node once all of its `after` nodes succeeded.
/// Entries of `after` that are not nodes of this walk count as done. A
/// failure skips everything that waits on it; after `cancel` is set, no new
/// node starts (running ones finish).
pub async fn walk<F, Fut>(
    after: BTreeMap<String, BTreeSet<String>>,
    parallelism: usize,
    cancel: Arc<AtomicBool>,
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
    loop {
        // Skip whatever waits on a failure; start whatever is ready.
        let mut progressed = true;
        while progressed {
            progressed = false;
            let ids: Vec<String> = waiting.keys().cloned().collect();
            for id in ids {
                let deps = &waiting[&id];
                if let Some(bad) = deps.iter().find(|d| outcomes.get(*d).is_some_and(|o| !o.succeeded())) {
                    let because = format!("`{bad}` did not succeed");
                    waiting.remove(&id);
                    outcomes.insert(id, Outcome::Skipped { because });
                    progressed = true;
                } else if running.len() < parallelism.max(1)
                    && !cancel.load(Ordering::SeqCst)
                    && deps.iter().all(|d| outcomes.get(d).is_some_and(Outcome::succeeded))
                {
                    waiting.remove(&id);
                    let handle = running.spawn(run(id.clone()));
                    task_ids.insert(handle.id(), id);
                    progressed = true;
                }
            }
        }
        match running.join_next_with_id().await {
            Some(Ok((task, outcome))) => {
                outcomes.insert(task_ids.remove(&task).unwrap_or_default(), outcome);
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
