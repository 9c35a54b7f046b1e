//! The driver interface: how the engine talks to one provider's resources.
//!
//! Modelled on Crossplane's managed-resource client. The contract:
//! * `observe` never changes anything; it says whether the resource exists,
//!   what it looks like now, its outputs and whether it is ready;
//! * `create` is idempotent: it first looks for the resource by its
//!   deterministic external name and adopts it if present (this is what makes
//!   a crashed apply resumable without duplicates);
//! * `delete` is idempotent: a missing resource is already deleted;
//! * errors say whether retrying can help.
//!
//! The engine owns scheduling, retries, timeouts, locking and recording.

use async_trait::async_trait;
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::Arc;

/// A resource as a driver sees it: its graph node with every reference resolved.
#[derive(Debug, Clone)]
pub struct Resource {
    pub environment: String,
    pub id: String,
    pub kind: String,
    pub name: String,
    pub properties: Value,
    /// Deterministic name in the provider (`paved-ENV-NAME`), used to find
    /// the resource again after a crash.
    pub external_name: String,
}

pub type Outputs = BTreeMap<String, Value>;

#[derive(Debug, Clone, PartialEq)]
pub enum Observation {
    Absent,
    Present { properties: Value, outputs: Outputs, ready: bool },
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DriverError {
    /// Worth retrying: throttling, a timeout, a resource still settling.
    #[error("{0}")]
    Retryable(String),
    /// Retrying cannot help: invalid input, a quota, a permission.
    #[error("{0}")]
    Permanent(String),
}

#[async_trait]
pub trait Driver: Send + Sync {
    async fn observe(&self, r: &Resource) -> Result<Observation, DriverError>;
    async fn create(&self, r: &Resource) -> Result<Outputs, DriverError>;
    async fn update(&self, r: &Resource) -> Result<Outputs, DriverError>;
    async fn delete(&self, r: &Resource) -> Result<(), DriverError>;

    /// Observes many resources of this driver's kind at once, one answer
    /// per resource in order (a drift sweep). The default asks one by one;
    /// a cloud driver lists them with a few filtered, paginated calls, so
    /// a sweep costs calls per kind and page, not per resource. Outputs may
    /// be left out: a sweep compares properties.
    async fn observe_all(&self, resources: &[Resource]) -> Vec<Result<Observation, DriverError>> {
        let mut out = Vec::with_capacity(resources.len());
        for r in resources {
            out.push(self.observe(r).await);
        }
        out
    }

    /// Whether resources exist outside paved's state. Those that do are
    /// observed on every apply, so out-of-band changes are repaired.
    fn has_external_state(&self) -> bool {
        true
    }
}

/// The drivers available to an apply, by node kind.
#[derive(Clone, Default)]
pub struct Drivers {
    by_kind: BTreeMap<String, Arc<dyn Driver>>,
}

impl Drivers {
    pub fn with(mut self, kind: &str, driver: Arc<dyn Driver>) -> Drivers {
        self.by_kind.insert(kind.to_string(), driver);
        self
    }

    pub fn get(&self, kind: &str) -> Option<&Arc<dyn Driver>> {
        self.by_kind.get(kind)
    }

    /// Kinds of `kinds` that no driver handles, sorted and unique.
    pub fn missing<'a>(&self, kinds: impl IntoIterator<Item = &'a str>) -> Vec<String> {
        let mut out: Vec<String> =
            kinds.into_iter().filter(|k| !self.by_kind.contains_key(*k)).map(str::to_string).collect();
        out.sort();
        out.dedup();
        out
    }
}

/// Resources that exist only in paved's state (like Terraform's
/// `terraform_data`): the `null` kind, used to measure the orchestrator
/// itself. A `sleepMs` property makes each operation take that long.
pub struct NullDriver;

async fn pause(r: &Resource) {
    if let Some(ms) = r.properties.get("sleepMs").and_then(Value::as_u64) {
        tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
    }
}

#[async_trait]
impl Driver for NullDriver {
    async fn observe(&self, _: &Resource) -> Result<Observation, DriverError> {
        // Nothing exists outside paved's state, so there is never anything to adopt.
        Ok(Observation::Absent)
    }

    async fn create(&self, r: &Resource) -> Result<Outputs, DriverError> {
        pause(r).await;
        Ok(Outputs::from([("id".to_string(), Value::String(r.external_name.clone()))]))
    }

    async fn update(&self, r: &Resource) -> Result<Outputs, DriverError> {
        self.create(r).await
    }

    async fn delete(&self, r: &Resource) -> Result<(), DriverError> {
        pause(r).await;
        Ok(())
    }

    fn has_external_state(&self) -> bool {
        false
    }
}

/// Wraps a driver and makes a share of its calls fail with a retryable error
/// before reaching it (a flaky cloud). Deterministic for a given seed.
pub struct FaultInjecting {
    inner: Arc<dyn Driver>,
    percent: u64,
    seed: u64,
    calls: std::sync::atomic::AtomicU64,
}

impl FaultInjecting {
    pub fn new(inner: Arc<dyn Driver>, percent: u64, seed: u64) -> FaultInjecting {
        FaultInjecting { inner, percent, seed, calls: std::sync::atomic::AtomicU64::new(0) }
    }

    fn fault(&self, what: &str, r: &Resource) -> Result<(), DriverError> {
        use std::hash::{Hash, Hasher};
        let n = self.calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (self.seed, n, &r.id, what).hash(&mut h);
        if h.finish() % 100 < self.percent {
            return Err(DriverError::Retryable(format!("injected transient failure in {what} of {}", r.id)));
        }
        Ok(())
    }
}

#[async_trait]
impl Driver for FaultInjecting {
    async fn observe(&self, r: &Resource) -> Result<Observation, DriverError> {
        self.fault("observe", r)?;
        self.inner.observe(r).await
    }

    async fn create(&self, r: &Resource) -> Result<Outputs, DriverError> {
        self.fault("create", r)?;
        self.inner.create(r).await
    }

    async fn update(&self, r: &Resource) -> Result<Outputs, DriverError> {
        self.fault("update", r)?;
        self.inner.update(r).await
    }

    async fn delete(&self, r: &Resource) -> Result<(), DriverError> {
        self.fault("delete", r)?;
        self.inner.delete(r).await
    }

    fn has_external_state(&self) -> bool {
        self.inner.has_external_state()
    }
}
