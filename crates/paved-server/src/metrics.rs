//! `/metrics`: HTTP latency by route and status, applies and node outcomes,
//! drift findings, denials, and the platform SLIs (provisioning latency,
//! apply success, API availability as 5xx against all requests).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    pub method: String,
    /// The route template (`/api/v1/environments/{name}`), never the raw path.
    pub route: String,
    pub status: u16,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub outcome: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OperationLabels {
    pub operation: String,
    pub outcome: String,
}

pub struct Metrics {
    registry: Registry,
    pub http: Family<HttpLabels, Histogram>,
    pub operations: Family<OperationLabels, Counter>,
    pub nodes: Family<OutcomeLabels, Counter>,
    pub provisioning: Family<OperationLabels, Histogram>,
    pub drift_findings: Counter,
    pub denied: Counter,
    /// Secret values read through the API, by outcome (every one is also audited).
    pub reveals: Family<OutcomeLabels, Counter>,
    /// Resources drifted per environment at the last reconcile pass.
    pub drifted: Family<EnvironmentLabels, Gauge>,
    /// Applies the reconciler made to heal drift, by outcome.
    pub heals: Family<OutcomeLabels, Counter>,
    /// Rollouts started through the API, by how they ended (`healthy`, `failed`).
    pub deployments: Family<OutcomeLabels, Counter>,
    /// GitHub deliveries, by what became of them.
    pub webhooks: Family<OutcomeLabels, Counter>,
    /// DORA figures per service, computed from the deployment history at
    /// most once per refresh interval (see [`Metrics::dora_due`]).
    pub dora: Family<DoraLabels, Gauge<f64, std::sync::atomic::AtomicU64>>,
    /// Times the DORA figures were computed: what a scrape costs is visible.
    pub dora_refreshes: Counter,
    /// 1 while this replica holds the background lease (runs the reconciler,
    /// the git loop and audit checkpoints), else 0; labelled with the replica.
    pub leader: Family<ReplicaLabels, Gauge>,
    /// Times this replica took the background lease after it had lapsed or
    /// been released (a start, or a failover).
    pub lease_takeovers: Counter,
    /// Operations running on any replica (the store's queue), as this replica last counted them.
    pub operations_queued: Gauge,
    /// Seconds since the stalest heartbeat of a running operation: grows
    /// past the heartbeat when a replica died holding one.
    pub operation_oldest_heartbeat: Gauge<f64, std::sync::atomic::AtomicU64>,
    /// Operations this replica took over from a replica that stopped beating their heartbeat.
    pub operation_takeovers: Counter,
    /// When the DORA figures were last computed. A scrape holds this lock
    /// while it computes, so concurrent scrapes share one computation.
    dora_at: tokio::sync::Mutex<Option<time::OffsetDateTime>>,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DoraLabels {
    pub service: String,
    pub team: String,
    /// `deployment_frequency_per_day`, `lead_time_seconds`, `change_failure_rate`, `time_to_restore_seconds`.
    pub figure: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReplicaLabels {
    pub replica: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EnvironmentLabels {
    pub environment: String,
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::default();
        let http = Family::<HttpLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.000_25, 2.0, 16))
        });
        let operations = Family::<OperationLabels, Counter>::default();
        let nodes = Family::<OutcomeLabels, Counter>::default();
        let provisioning = Family::<OperationLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.25, 2.0, 12))
        });
        let drift_findings = Counter::default();
        let denied = Counter::default();
        let reveals = Family::<OutcomeLabels, Counter>::default();
        registry.register("paved_http_request_duration_seconds", "API and console request latency", http.clone());
        registry.register(
            "paved_operations",
            "Applies and destroys by outcome (deployment success rate = succeeded / all)",
            operations.clone(),
        );
        registry.register("paved_node_outcomes", "Resource outcomes of applies and destroys", nodes.clone());
        registry.register(
            "paved_provisioning_duration_seconds",
            "Provisioning latency: request accepted to environment ready (or failed)",
            provisioning.clone(),
        );
        registry.register("paved_drift_findings", "Resources found drifted by drift checks", drift_findings.clone());
        registry.register("paved_access_denied", "Requests refused by authorisation", denied.clone());
        registry.register(
            "paved_secret_reveals",
            "Secret values read through the API, by outcome (each one is in the audit log)",
            reveals.clone(),
        );
        let drifted = Family::<EnvironmentLabels, Gauge>::default();
        let heals = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "paved_environment_drifted_resources",
            "Resources that differ from what paved applied, per environment, at the last reconcile pass",
            drifted.clone(),
        );
        registry.register(
            "paved_reconcile_heals",
            "Applies the reconciler made to repair drift, by outcome",
            heals.clone(),
        );
        let deployments = Family::<OutcomeLabels, Counter>::default();
        registry.register("paved_deployments", "Rollouts started through the API, by outcome", deployments.clone());
        let webhooks = Family::<OutcomeLabels, Counter>::default();
        registry.register("paved_webhook_deliveries", "GitHub deliveries by outcome", webhooks.clone());
        let dora = Family::<DoraLabels, Gauge<f64, std::sync::atomic::AtomicU64>>::default();
        registry.register(
            "paved_dora",
            "DORA figures per service over the last 30 days (production): deployment frequency per day, \
             lead time (commit to healthy) and time to restore in seconds, change failure rate",
            dora.clone(),
        );
        let dora_refreshes = Counter::default();
        registry.register(
            "paved_dora_refreshes",
            "Times the DORA figures were computed from the deployment history (at most once per --metrics-refresh)",
            dora_refreshes.clone(),
        );
        let leader = Family::<ReplicaLabels, Gauge>::default();
        registry.register(
            "paved_leader",
            "1 while this replica holds the background lease (reconciler, git loop, audit checkpoints)",
            leader.clone(),
        );
        let lease_takeovers = Counter::default();
        registry.register(
            "paved_lease_takeovers",
            "Times this replica took the background lease after it lapsed or was released",
            lease_takeovers.clone(),
        );
        let operations_queued = Gauge::default();
        registry.register(
            "paved_operations_queued",
            "Operations running on any replica of this store",
            operations_queued.clone(),
        );
        let operation_oldest_heartbeat = Gauge::<f64, std::sync::atomic::AtomicU64>::default();
        registry.register(
            "paved_operation_oldest_heartbeat_seconds",
            "Seconds since the stalest heartbeat of a running operation",
            operation_oldest_heartbeat.clone(),
        );
        let operation_takeovers = Counter::default();
        registry.register(
            "paved_operation_takeovers",
            "Operations this replica took over from a replica that stopped",
            operation_takeovers.clone(),
        );
        Metrics {
            registry,
            dora_refreshes,
            leader,
            lease_takeovers,
            operations_queued,
            operation_oldest_heartbeat,
            operation_takeovers,
            dora_at: tokio::sync::Mutex::new(None),
            http,
            operations,
            nodes,
            provisioning,
            drift_findings,
            denied,
            reveals,
            drifted,
            heals,
            deployments,
            webhooks,
            dora,
        }
    }

    pub fn drifted(&self, environment: &str, resources: usize) {
        self.drifted.get_or_create(&EnvironmentLabels { environment: environment.into() }).set(resources as i64);
    }

    /// Sets the DORA gauges (a figure without data is left out).
    pub fn set_dora(&self, figures: &[paved_control::Dora]) {
        self.dora.clear();
        for f in figures {
            let service = f.service.clone().unwrap_or_else(|| "*".into());
            let values = [
                ("deployment_frequency_per_day", Some(f.deployment_frequency_per_day)),
                ("lead_time_seconds", f.lead_time_seconds),
                ("change_failure_rate", f.change_failure_rate),
                ("time_to_restore_seconds", f.time_to_restore_seconds),
            ];
            for (figure, value) in values {
                if let Some(v) = value {
                    let labels = DoraLabels { service: service.clone(), team: f.team.clone(), figure: figure.into() };
                    self.dora.get_or_create(&labels).set(v);
                }
            }
        }
    }

    /// Recomputes the DORA gauges with `compute` unless they were computed
    /// less than `every` before `now`: an unauthenticated `/metrics` costs
    /// one read of the deployment history per interval however often, and
    /// however many at once, it is scraped.
    pub async fn refresh_dora<F, Fut, E>(&self, now: time::OffsetDateTime, every: std::time::Duration, compute: F)
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<Vec<paved_control::Dora>, E>>,
        E: std::fmt::Display,
    {
        let mut at = self.dora_at.lock().await;
        if at.is_some_and(|t| now - t < every) {
            return;
        }
        match compute().await {
            Ok(figures) => self.set_dora(&figures),
            Err(e) => tracing::warn!(error = %e, "DORA figures could not be computed for /metrics"),
        }
        self.dora_refreshes.inc();
        *at = Some(now);
    }

    /// The OpenMetrics text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics::new()
    }
}
