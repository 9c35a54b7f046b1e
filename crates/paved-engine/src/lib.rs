//! The orchestrator: executes the diff between an environment's desired
//! resource graph and what was applied, as a DAG, through provider drivers.
//!
//! * Independent nodes run in parallel (bounded); a node starts once its
//!   dependencies succeeded; a failure skips its dependants; deletions run in
//!   reverse dependency order after everything else.
//! * Retryable driver errors and timeouts are retried with exponential
//!   backoff and deterministic jitter; permanent errors stop the node at once.
//! * Every node's outcome is written to the store the moment it is known, and
//!   drivers create idempotently (adopting what a crashed apply left behind),
//!   so an interrupted apply resumes without duplicates or orphans.
//! * One apply per environment at a time: a lease in the store, renewed while
//!   the apply runs, taken over only when it expired. A run that finds it
//!   taken, or cannot renew it for two thirds of the lease, drops its running
//!   steps at once: it stops calling drivers before another run can start.
//!
//! Architecture invariant: the engine knows no provider API; everything
//! provider-specific is behind [`Driver`].

mod dag;
pub use dag::STOP_GRACE;
mod drift;
pub mod driver;
pub mod provisioned;
mod recorder;
mod refs;
mod sealed;
mod secrets;

pub use drift::{DriftReport, DriftStatus, NodeDrift};
pub use driver::{Driver, DriverError, Drivers, FaultInjecting, NullDriver, Observation, Outputs, Resource};
pub use sealed::SensitiveOutputs;
pub use secrets::{REDACTED, SecretValues, secret_refs};

use paved_model::Clock;
use paved_plan::{Action, Node, PlanError, ResourceGraph};
use paved_store::{AppliedNode, Lock, Store, StoreError};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::hash::{Hash, Hasher};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What happened to one node.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "outcome", rename_all = "kebab-case")]
pub enum Outcome {
    Created,
    /// Found already existing under its external name (after a crash) and taken over.
    Adopted,
    Updated,
    Replaced,
    Deleted,
    Unchanged,
    Failed {
        error: String,
        attempts: u32,
    },
    Skipped {
        because: String,
    },
    /// Not started because the apply was cancelled.
    NotStarted,
}

impl Outcome {
    pub fn succeeded(&self) -> bool {
        !matches!(self, Outcome::Failed { .. } | Outcome::Skipped { .. } | Outcome::NotStarted)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    pub environment: String,
    pub outcomes: BTreeMap<String, Outcome>,
    pub cancelled: bool,
    /// The desired graph's blocked services (left out of this apply).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub blocked: BTreeMap<String, Vec<String>>,
}

impl Report {
    pub fn succeeded(&self) -> bool {
        !self.cancelled && self.outcomes.values().all(Outcome::succeeded)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("environment `{environment}` is being applied by {holder} since {since}; wait for it or try again later")]
    Locked { environment: String, holder: String, since: time::OffsetDateTime },
    #[error("no driver for {}: these resources cannot be applied yet", kinds.join(", "))]
    MissingDrivers { kinds: Vec<String> },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Plan(#[from] PlanError),
    #[error("recorded state of `{node}` cannot be read: {reason}")]
    CorruptState { node: String, reason: String },
}

/// How an apply runs.
#[derive(Debug, Clone)]
pub struct Options {
    pub parallelism: usize,
    /// Attempts per node for retryable errors (1 = no retry).
    pub max_attempts: u32,
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
    /// Longest a single driver call may take before it counts as a retryable failure.
    pub node_timeout: Duration,
    /// Longest a created or updated resource may take to become ready.
    pub ready_timeout: Duration,
    /// Who holds the environment's lease (`user@host:pid`).
    pub holder: String,
    pub lease: Duration,
    /// Seed of the backoff jitter (fixed in tests, random in production).
    pub jitter_seed: u64,
    /// Values for the graph's `${secret:…}` references, resolved by the
    /// caller for this run only; redacted from every reported error.
    pub secrets: SecretValues,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            parallelism: 8,
            max_attempts: 5,
            initial_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(10),
            node_timeout: Duration::from_secs(600),
            ready_timeout: Duration::from_secs(300),
            holder: "paved".into(),
            lease: Duration::from_secs(60),
            jitter_seed: 0,
            secrets: SecretValues::default(),
        }
    }
}

/// Told about each node as the apply progresses (progress bars, logs).
pub trait Progress: Send + Sync {
    fn planned(&self, _total: usize) {}
    fn started(&self, _id: &str, _action: Action) {}
    fn finished(&self, _id: &str, _outcome: &Outcome) {}
}

/// Reports nothing.
pub struct Quiet;
impl Progress for Quiet {}

pub struct Engine {
    store: Arc<dyn Store>,
    drivers: Drivers,
    clock: Arc<dyn Clock>,
    sensitive: Option<Arc<dyn SensitiveOutputs>>,
}

/// Everything one node execution needs, shared by the parallel tasks.
struct Run {
    env: String,
    store: Arc<dyn Store>,
    drivers: Drivers,
    clock: Arc<dyn Clock>,
    opts: Options,
    progress: Arc<dyn Progress>,
    desired: ResourceGraph,
    recorded: BTreeMap<String, Node>,
    outputs: Mutex<BTreeMap<String, Outputs>>,
    sensitive: Option<Arc<dyn SensitiveOutputs>>,
    /// Outcomes are committed in groups (see [`recorder`]).
    recorder: recorder::Recorder,
}

impl Engine {
    pub fn new(store: Arc<dyn Store>, drivers: Drivers, clock: Arc<dyn Clock>) -> Engine {
        Engine { store, drivers, clock, sensitive: None }
    }

    /// Keeps nodes' sensitive outputs in `vault` instead of the state.
    pub fn with_sensitive_outputs(mut self, vault: Arc<dyn SensitiveOutputs>) -> Engine {
        self.sensitive = Some(vault);
        self
    }

    /// The graph recorded as applied for an environment, without opening
    /// any sealed output (for plans: they compare nodes, not outputs).
    pub async fn recorded(
        &self,
        environment: &str,
        provider: paved_model::Provider,
    ) -> Result<ResourceGraph, EngineError> {
        let mut graph = ResourceGraph::new(provider, environment);
        for applied in self.store.applied_nodes(environment).await? {
            graph.nodes.insert(applied.node_id.clone(), decode_node(&applied)?);
        }
        Ok(graph)
    }

    /// The graph recorded as applied for an environment, with node outputs.
    pub async fn applied(
        &self,
        environment: &str,
        provider: paved_model::Provider,
    ) -> Result<(ResourceGraph, BTreeMap<String, Outputs>), EngineError> {
        applied_graph(self.store.as_ref(), environment, provider, self.sensitive.as_deref()).await
    }

    /// Brings the environment to `desired`. Returns once every node has an
    /// outcome (or, after `cancel` was set, once running nodes finished).
    pub async fn apply(
        &self,
        desired: &ResourceGraph,
        opts: &Options,
        cancel: Arc<AtomicBool>,
        progress: Arc<dyn Progress>,
    ) -> Result<Report, EngineError> {
        let env = desired.environment.clone();
        desired.validate()?;
        let lease = time::Duration::try_from(opts.lease).unwrap_or(time::Duration::minutes(1));
        if let Lock::HeldBy { holder, since, .. } =
            self.store.acquire_lock(&env, &opts.holder, self.clock.now(), lease).await?
        {
            return Err(EngineError::Locked { environment: env, holder, since });
        }
        let stop = dag::Stop { cancel, cut_off: Arc::default() };
        let heartbeat = tokio::spawn(hold_lock(
            self.store.clone(),
            self.clock.clone(),
            env.clone(),
            opts.holder.clone(),
            opts.lease,
            stop.cut_off.clone(),
        ));
        let result = self.apply_locked(desired, opts, &stop, progress).await;
        heartbeat.abort();
        self.store.release_lock(&env, &opts.holder).await?;
        result
    }

    async fn apply_locked(
        &self,
        desired: &ResourceGraph,
        opts: &Options,
        stop: &dag::Stop,
        progress: Arc<dyn Progress>,
    ) -> Result<Report, EngineError> {
        let env = desired.environment.clone();
        let (recorded, outputs) =
            applied_graph(self.store.as_ref(), &env, desired.provider, self.sensitive.as_deref()).await?;
        let plan = paved_plan::diff(desired, Some(&recorded))?;
        let kinds = plan.nodes.iter().filter(|n| n.action != Action::NoOp).map(|n| n.kind.as_str());
        let missing = self.drivers.missing(kinds);
        if !missing.is_empty() {
            return Err(EngineError::MissingDrivers { kinds: missing });
        }
        let actions: BTreeMap<String, Action> = plan.nodes.iter().map(|n| (n.id.clone(), n.action)).collect();
        // Unchanged nodes are observed too (a refresh): what changed outside
        // paved since the last apply is repaired.
        let refreshed = |id: &String, a: &Action| {
            *a != Action::NoOp || self.drivers.get(&desired.nodes[id].kind).is_some_and(|d| d.has_external_state())
        };
        progress.planned(
            actions.iter().filter(|(id, a)| **a != Action::Delete && refreshed(id, a)).count()
                + actions.values().filter(|a| **a == Action::Delete).count(),
        );
        let run = Arc::new(Run {
            env: env.clone(),
            store: self.store.clone(),
            drivers: self.drivers.clone(),
            clock: self.clock.clone(),
            opts: opts.clone(),
            progress,
            desired: desired.clone(),
            recorded: recorded.nodes.clone(),
            outputs: Mutex::new(outputs),
            sensitive: self.sensitive.clone(),
            recorder: recorder::Recorder::start(self.store.clone(), env.clone()),
        });

        // Creations, updates and replacements: dependencies first.
        let forward: BTreeMap<String, BTreeSet<String>> = actions
            .iter()
            .filter(|(id, a)| **a != Action::Delete && refreshed(id, a))
            .map(|(id, _)| (id.clone(), desired.nodes[id].depends_on.clone()))
            .collect();
        let mut outcomes = {
            let (run, actions) = (run.clone(), actions.clone());
            dag::walk(forward, opts.parallelism, stop, move |id| {
                let (run, action) = (run.clone(), actions[&id]);
                async move { run.converge(&id, action).await }
            })
            .await
        };
        // Deletions: dependents first.
        let mut backward: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (id, node) in &recorded.nodes {
            if actions.get(id) == Some(&Action::Delete) {
                backward.entry(id.clone()).or_default();
                for dep in &node.depends_on {
                    if actions.get(dep) == Some(&Action::Delete) {
                        backward.entry(dep.clone()).or_default().insert(id.clone());
                    }
                }
            }
        }
        let deleted = {
            let run = run.clone();
            dag::walk(backward, opts.parallelism, stop, move |id| {
                let run = run.clone();
                async move { run.remove(&id).await }
            })
            .await
        };
        outcomes.extend(deleted);
        for (id, action) in &actions {
            if *action == Action::NoOp {
                outcomes.entry(id.clone()).or_insert(Outcome::Unchanged);
            }
        }
        Ok(Report {
            environment: env,
            outcomes,
            cancelled: stop.cancel.load(std::sync::atomic::Ordering::SeqCst)
                || stop.cut_off.load(std::sync::atomic::Ordering::SeqCst),
            blocked: desired.blocked.clone(),
        })
    }
}

/// Renews the environment's lock every third of `lease` while a run holds
/// it, and sets `cut_off` once the run must stop acting: another run took
/// the lock, or no renewal succeeded for two thirds of the lease (a store
/// out of reach: the lock may lapse at the full lease and another run take
/// it, so this one stops first). Each renewal waits no longer than that
/// deadline — a partition holds a query, it does not refuse it.
async fn hold_lock(
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    env: String,
    holder: String,
    lease: Duration,
    cut_off: Arc<AtomicBool>,
) {
    let lease_time = time::Duration::try_from(lease).unwrap_or(time::Duration::minutes(1));
    let mut renewed = tokio::time::Instant::now();
    let mut pause = lease / 3;
    loop {
        tokio::time::sleep(pause).await;
        pause = lease / 3;
        let must_stop_by = renewed + lease * 2 / 3;
        let asked = tokio::time::Instant::now();
        match tokio::time::timeout_at(must_stop_by, store.acquire_lock(&env, &holder, clock.now(), lease_time)).await {
            Ok(Ok(Lock::Acquired)) => renewed = asked,
            Ok(Ok(Lock::HeldBy { holder: other, .. })) => {
                tracing::warn!(environment = %env, holder = %other, "another run took this environment's lock: stopping at once");
                cut_off.store(true, std::sync::atomic::Ordering::SeqCst);
                return;
            }
            Ok(Err(_)) | Err(_) if tokio::time::Instant::now() + lease / 10 >= must_stop_by => {
                tracing::warn!(environment = %env, "the environment's lock was not renewed in time: stopping at once");
                cut_off.store(true, std::sync::atomic::Ordering::SeqCst);
                return;
            }
            // Retried soon: the deadline counts from the last renewal.
            Ok(Err(_)) | Err(_) => pause = lease / 10,
        }
    }
}

fn decode_node(applied: &AppliedNode) -> Result<Node, EngineError> {
    serde_json::from_value(applied.node.clone())
        .map_err(|e| EngineError::CorruptState { node: applied.node_id.clone(), reason: e.to_string() })
}

async fn applied_graph(
    store: &dyn Store,
    env: &str,
    provider: paved_model::Provider,
    sensitive: Option<&dyn SensitiveOutputs>,
) -> Result<(ResourceGraph, BTreeMap<String, Outputs>), EngineError> {
    let mut graph = ResourceGraph::new(provider, env);
    let mut outputs = BTreeMap::new();
    for applied in store.applied_nodes(env).await? {
        let node = decode_node(&applied)?;
        let out: Outputs = serde_json::from_value(applied.outputs)
            .map_err(|e| EngineError::CorruptState { node: applied.node_id.clone(), reason: e.to_string() })?;
        let out = sealed::open(sensitive, env, &applied.node_id, out).await?;
        outputs.insert(applied.node_id.clone(), out);
        graph.nodes.insert(applied.node_id, node);
    }
    Ok((graph, outputs))
}

/// `true` when every field of `want` has the same value in `have` (a
/// provider may report more than paved manages).
fn covers(have: &serde_json::Value, want: &serde_json::Value) -> bool {
    match (have, want) {
        (serde_json::Value::Object(h), serde_json::Value::Object(w)) => {
            w.iter().all(|(k, wv)| h.get(k).is_some_and(|hv| covers(hv, wv)))
        }
        (h, w) => h == w,
    }
}

/// A node as its driver sees it: every reference replaced by the output it names.
fn resource_of(
    env: &str,
    node: &Node,
    outputs: &BTreeMap<String, Outputs>,
    secrets: &SecretValues,
) -> Result<Resource, DriverError> {
    let properties = refs::resolve(&node.properties, outputs, secrets).map_err(DriverError::Permanent)?;
    Ok(Resource {
        environment: env.to_string(),
        id: node.id(),
        kind: node.kind.clone(),
        name: node.name.clone(),
        properties,
        external_name: format!("paved-{env}-{}", node.name),
    })
}

impl Run {
    fn resource(&self, node: &Node) -> Result<Resource, DriverError> {
        let outputs = self.outputs.lock().unwrap_or_else(|p| p.into_inner());
        resource_of(&self.env, node, &outputs, &self.opts.secrets)
    }

    fn backoff(&self, id: &str, attempt: u32) -> Duration {
        let base = self.opts.initial_backoff.saturating_mul(2u32.saturating_pow(attempt.saturating_sub(1)));
        let capped = base.min(self.opts.max_backoff);
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (self.opts.jitter_seed, id, attempt).hash(&mut h);
        // Full jitter between half and all of the backoff.
        let fraction = 0.5 + (h.finish() % 1000) as f64 / 2000.0;
        capped.mul_f64(fraction)
    }

    /// Runs `op` with a timeout per call and retries for retryable errors.
    async fn retry<T, F, Fut>(&self, id: &str, op: F) -> Result<T, (String, u32)>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<T, DriverError>>,
    {
        let max = self.opts.max_attempts.max(1);
        for attempt in 1..=max {
            let err = match tokio::time::timeout(self.opts.node_timeout, op()).await {
                Ok(Ok(v)) => return Ok(v),
                Ok(Err(DriverError::Permanent(e))) => return Err((e, attempt)),
                Ok(Err(DriverError::Retryable(e))) => e,
                Err(_) => format!("timed out after {:?}", self.opts.node_timeout),
            };
            if attempt == max {
                return Err((err, attempt));
            }
            tokio::time::sleep(self.backoff(id, attempt)).await;
        }
        Err(("no attempt was made".into(), 0))
    }

    async fn record(&self, node: &Node, outputs: Outputs) -> Result<(), String> {
        let recorded = sealed::seal(self.sensitive.as_deref(), &self.env, node, &outputs)
            .await
            .map_err(|e| format!("keeping its credentials in the vault failed: {e}"))?;
        let applied = AppliedNode {
            node_id: node.id(),
            node: serde_json::to_value(node).map_err(|e| e.to_string())?,
            outputs: serde_json::to_value(&recorded).map_err(|e| e.to_string())?,
            updated_at: self.clock.now(),
        };
        self.recorder.record(applied).await.map_err(|e| format!("recording the outcome failed: {e}"))?;
        self.outputs.lock().unwrap_or_else(|p| p.into_inner()).insert(node.id(), outputs);
        Ok(())
    }

    /// Creates, updates or replaces one node, waits until it is ready and records it.
    async fn converge(&self, id: &str, action: Action) -> Outcome {
        self.progress.started(id, action);
        let outcome = match self.converge_inner(id, action).await {
            // A driver's message may quote what it was given.
            Outcome::Failed { error, attempts } => {
                Outcome::Failed { error: self.opts.secrets.redact(&error), attempts }
            }
            other => other,
        };
        self.progress.finished(id, &outcome);
        outcome
    }

    async fn converge_inner(&self, id: &str, action: Action) -> Outcome {
        let node = &self.desired.nodes[id];
        let Some(driver) = self.drivers.get(&node.kind).cloned() else {
            return Outcome::Failed { error: format!("no driver for `{}`", node.kind), attempts: 0 };
        };
        if action == Action::Replace
            && let Some(old) = self.recorded.get(id)
        {
            let old_resource = match self.resource(old) {
                Ok(r) => r,
                Err(e) => return Outcome::Failed { error: e.to_string(), attempts: 0 },
            };
            if let Err((error, attempts)) = self.retry(id, || driver.delete(&old_resource)).await {
                return Outcome::Failed { error: format!("deleting the old resource: {error}"), attempts };
            }
        }
        let resource = match self.resource(node) {
            Ok(r) => r,
            Err(e) => return Outcome::Failed { error: e.to_string(), attempts: 0 },
        };
        let converged = self
            .retry(id, || async {
                match driver.observe(&resource).await? {
                    Observation::Absent => Ok((driver.create(&resource).await?, Outcome::Created, false)),
                    Observation::Present { properties, outputs, ready }
                        if covers(&properties, &resource.properties) =>
                    {
                        let how = if action == Action::Create { Outcome::Adopted } else { Outcome::Unchanged };
                        Ok((outputs, how, ready))
                    }
                    Observation::Present { .. } => Ok((driver.update(&resource).await?, Outcome::Updated, false)),
                }
            })
            .await;
        let (outputs, how, ready) = match converged {
            Ok(v) => v,
            Err((error, attempts)) => return Outcome::Failed { error, attempts },
        };
        // What was just seen ready and left alone needs no second look.
        if !ready && let Err(error) = self.wait_ready(driver.as_ref(), &resource).await {
            return Outcome::Failed { error, attempts: 1 };
        }
        if let Err(error) = self.record(node, outputs).await {
            return Outcome::Failed { error, attempts: 1 };
        }
        match (action, how) {
            (Action::Replace, _) => Outcome::Replaced,
            (_, how) => how,
        }
    }

    async fn wait_ready(&self, driver: &dyn Driver, r: &Resource) -> Result<(), String> {
        let deadline = tokio::time::Instant::now() + self.opts.ready_timeout;
        let mut pause = Duration::from_millis(50);
        loop {
            match driver.observe(r).await {
                // Drivers without external state (null) report Absent: nothing to wait for.
                Ok(Observation::Absent) | Ok(Observation::Present { ready: true, .. }) => return Ok(()),
                Ok(Observation::Present { ready: false, .. }) | Err(DriverError::Retryable(_)) => {}
                Err(DriverError::Permanent(e)) => return Err(e),
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(format!("not ready after {:?}", self.opts.ready_timeout));
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_secs(2));
        }
    }

    /// Deletes one node's resource and forgets it.
    async fn remove(&self, id: &str) -> Outcome {
        self.progress.started(id, Action::Delete);
        let outcome = async {
            let node = &self.recorded[id];
            let Some(driver) = self.drivers.get(&node.kind).cloned() else {
                return Outcome::Failed { error: format!("no driver for `{}`", node.kind), attempts: 0 };
            };
            let resource = match self.resource(node) {
                Ok(r) => r,
                Err(e) => return Outcome::Failed { error: e.to_string(), attempts: 0 },
            };
            if let Err((error, attempts)) = self.retry(id, || driver.delete(&resource)).await {
                return Outcome::Failed { error, attempts };
            }
            if let Err(e) = sealed::forget(self.sensitive.as_deref(), &self.env, node).await {
                return Outcome::Failed { error: format!("retiring its credentials failed: {e}"), attempts: 1 };
            }
            match self.store.delete_applied_node(&self.env, id).await {
                Ok(()) => Outcome::Deleted,
                Err(e) => Outcome::Failed { error: format!("recording the deletion failed: {e}"), attempts: 1 },
            }
        }
        .await;
        let outcome = self.redacted(outcome);
        self.progress.finished(id, &outcome);
        outcome
    }

    /// A driver's message may quote what it was given: secret values go.
    fn redacted(&self, outcome: Outcome) -> Outcome {
        match outcome {
            Outcome::Failed { error, attempts } => {
                Outcome::Failed { error: self.opts.secrets.redact(&error), attempts }
            }
            other => other,
        }
    }
}
