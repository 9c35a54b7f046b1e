//! The operations every door of paved runs: the CLI embedded, and the
//! server for API and console requests. Planning an environment, applying or
//! destroying it (waiting for or taking over its lock, recording the run in
//! the audit log) and reading its drift happen here once, so the doors
//! differ only in how they show progress and results.

pub mod anchor;
pub mod argocd;
mod artifacts;
mod cluster_secrets;
mod deploy;
mod dora;
mod gate;
pub mod git;
pub mod gitops;
mod identity;
mod logs;
mod reconcile;
mod secrets;
mod tokens;

pub use artifacts::{ArtifactError, Placed, Placement};
pub use deploy::{BuildInfo, DeployRefusal, DeployRequest, DeployResult, NOT_APPLIED, StatusRow, short, short_commit};
pub use dora::Dora;
pub use identity::{AccountCheck, IdentityFailure, TrustSetup};
pub use reconcile::Reconciled;
pub use secrets::{KekSource, SecretError};
pub use tokens::BadTokenRequest;

use paved_catalog::{Catalog, CatalogError, EnvironmentContext};
use paved_engine::{DriftReport, Engine, EngineError, Options, Progress, Report};
use paved_model::{Clock, Provider};
use paved_plan::{Capabilities, PlanInput, ResourceGraph};
use paved_store::{AuditOutcome, NewAuditEvent, RequestContext, Store, StoreError};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    BadTokenRequest(#[from] BadTokenRequest),
    #[error(transparent)]
    Secret(#[from] SecretError),
    #[error(transparent)]
    Identity(#[from] IdentityFailure),
    /// The audit anchor file could not be written.
    #[error("audit anchor: {0}")]
    Anchor(String),
    #[error(transparent)]
    Deploy(#[from] DeployRefusal),
    #[error(transparent)]
    Git(#[from] git::GitRefusal),
    #[error("service `{service}` has no logs in environment `{environment}`: {reason}")]
    NoLogs { service: String, environment: String, reason: String },
    #[error(
        "environment `{environment}` still has {resources} provisioned resource(s); remove them first with `paved destroy -e {environment}`"
    )]
    StillProvisioned { environment: String, resources: usize },
    #[error(
        "environment `{environment}` hosts the preview(s) {} on its cluster and network; close their pull requests (or `paved destroy -e PREVIEW`) first", .previews.join(", ")
    )]
    HostsPreviews { environment: String, previews: Vec<String> },
    #[error("environment `{environment}` cannot be planned ({} problem(s)): {}", .problems.len(), .problems.join("; "))]
    Unplannable { environment: String, problems: Vec<String> },
    #[error(transparent)]
    GitOps(#[from] gitops::GitOpsError),
    #[error(transparent)]
    Artifact(#[from] artifacts::ArtifactError),
    #[error("environment `{environment}` cannot be rendered for Kubernetes ({} problem(s)): {}", .problems.len(), .problems.join("; "))]
    Unrenderable { environment: String, problems: Vec<String> },
    #[error(
        "environment `{environment}` runs on `{runner}`, not on this machine (`{here}`): the local provider's processes, containers and data live there, so apply, drift and destroy it on `{runner}`; if that machine is gone for good, `paved apply -e {environment} --take-over` re-creates the environment here (its data does not move)"
    )]
    OtherRunner { environment: String, runner: String, here: String },
}

/// Who asks for an operation, as the audit log records it.
#[derive(Debug, Clone)]
pub struct Caller {
    pub actor: String,
    pub request: RequestContext,
}

/// How the local provider runs workloads when the account does not say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuntimeChoice {
    Docker,
    Process,
}

/// How an apply or destroy runs.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub parallelism: usize,
    /// Who holds the environment's lock meanwhile (`actor@host:pid`).
    pub holder: String,
    /// How long to wait for another live paved's lock.
    pub lock_timeout: Duration,
    pub jitter_seed: u64,
    /// The server's operation this run belongs to: its audit event is then
    /// appended once however many replicas run it (a takeover runs it again).
    pub operation: Option<OperationRef>,
}

/// An operation of the server's durable queue, as the replica running it holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OperationRef {
    pub id: String,
    /// The replica instance that owns it now.
    pub owner: String,
}

/// What happened while waiting for an environment's lock.
pub trait LockWatcher: Send + Sync {
    fn waiting(&self, _holder: &str, _environment: &str, _timeout: Duration) {}
    fn taking_over(&self, _holder: &str) {}
}

/// Reports nothing.
pub struct Silent;
impl LockWatcher for Silent {}

/// How a [`Control`] is set up, beyond its store.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `--runtime`, when given.
    pub runtime: Option<RuntimeChoice>,
    /// The key-encryption key of secrets.
    pub kek: KekSource,
    /// Earlier KEKs still accepted for unwrapping while a rotation runs.
    pub kek_previous: Vec<KekSource>,
    /// The local key that wraps the OIDC issuer's signing keys: `kek` when it
    /// is local; a key file otherwise (the issuer signs the very tokens a
    /// cloud KMS asks for, so it cannot depend on one).
    pub issuer_kek: KekSource,
    /// paved's public URL: the issuer of its tokens.
    pub public_url: String,
    /// This machine, as the local provider's environments are pinned to it
    /// (`PAVED_RUNNER_ID`, else the host name): a local environment runs
    /// where it was first applied ([`Control::on_this_runner`]).
    pub runner: String,
}

/// The control plane's operations over one store and this machine's local provider.
#[derive(Clone)]
pub struct Control {
    pub store: Arc<dyn Store>,
    pub local: paved_local::Config,
    pub clock: Arc<dyn Clock>,
    pub settings: Settings,
    vault: Arc<tokio::sync::OnceCell<Arc<paved_secrets::Vault>>>,
    broker: Arc<tokio::sync::OnceCell<Arc<paved_identity::CredentialBroker>>>,
}

/// What the killed paved asked of other programs (the Docker Engine removing a
/// container, say) finishes after it died: let that settle before looking.
const TAKEOVER_SETTLE: Duration = Duration::from_secs(2);

impl Control {
    pub fn new(
        store: Arc<dyn Store>,
        local: paved_local::Config,
        clock: Arc<dyn Clock>,
        settings: Settings,
    ) -> Control {
        Control { store, local, clock, settings, vault: Default::default(), broker: Default::default() }
    }

    /// Refuses to act on a local-provider environment pinned to another
    /// machine: its processes, containers and data are there, and acting
    /// here would re-create it empty or report it all missing. `claim`
    /// (an apply) pins an unpinned environment to this machine.
    pub async fn on_this_runner(&self, environment: &str, provider: Provider, claim: bool) -> Result<(), ControlError> {
        if provider != Provider::Local {
            return Ok(());
        }
        let here = &self.settings.runner;
        let pinned = if claim {
            Some(self.store.claim_runner(environment, here, self.clock.now()).await?)
        } else {
            self.store.runner_of(environment).await?.map(|(runner, _)| runner)
        };
        match pinned {
            Some(runner) if &runner != here => {
                Err(ControlError::OtherRunner { environment: environment.to_string(), runner, here: here.clone() })
            }
            _ => Ok(()),
        }
    }

    /// Moves a local-provider environment to this machine (its old one is
    /// gone): the next apply re-creates it here. Audited with both
    /// machines' names; returns the one it ran on.
    pub async fn take_over_runner(&self, caller: &Caller, environment: &str) -> Result<Option<String>, ControlError> {
        let context = self.catalog(caller.request.clone()).environment_context(environment).await?;
        let provider = context.account.spec.provider;
        if provider != Provider::Local {
            return Err(ControlError::Unplannable {
                environment: environment.to_string(),
                problems: vec![format!(
                    "only a local-provider environment runs on one machine and can be taken over; `{environment}` runs on {}",
                    format!("{provider:?}").to_lowercase()
                )],
            });
        }
        let before = self.store.runner_of(environment).await?.map(|(runner, _)| runner);
        let here = self.settings.runner.clone();
        self.store.set_runner(environment, Some(&here), self.clock.now()).await?;
        let details = serde_json::json!({"from": before, "to": here});
        self.record(
            caller,
            "environment.take-over",
            format!("Environment/{environment}"),
            AuditOutcome::Succeeded,
            None,
            details,
        )
        .await?;
        Ok(before)
    }

    /// The same control plane over another store (a fenced one, say: the
    /// server's singleton loops write only while their lease holds).
    pub fn with_store(&self, store: Arc<dyn Store>) -> Control {
        Control { store, ..self.clone() }
    }

    pub fn catalog(&self, request: RequestContext) -> Catalog {
        Catalog::new(self.store.clone(), self.clock.clone()).with_request(request)
    }

    /// The engine over this machine's drivers; generated credentials go to the vault.
    pub fn engine(&self) -> Engine {
        self.engine_over(paved_local::drivers(&self.local))
    }

    /// An engine over a provider's drivers and the platform provisioners'
    /// (`paved.template`, `paved.secret`, `paved.command`, `paved.terraform`).
    fn engine_over(&self, drivers: paved_engine::Drivers) -> Engine {
        let random: paved_engine::provisioned::Random = Arc::new(paved_local::fsutil::random_password);
        let drivers = paved_engine::provisioned::with_provisioners(drivers, random);
        let drivers = paved_local::with_provisioners(drivers, &self.local);
        Engine::new(self.store.clone(), drivers, self.clock.clone())
            .with_sensitive_outputs(Arc::new(secrets::ResourceCredentials { control: self.clone() }))
    }

    /// The engine for one environment, with its provider's drivers (for a
    /// cloud: clients in its region, keyless credentials for `operation`),
    /// and that provider.
    pub async fn engine_for(&self, environment: &str, operation: &str) -> Result<(Engine, Provider), ControlError> {
        let catalog = self.catalog(RequestContext::default());
        let c = catalog.environment_context(environment).await?;
        Ok(match c.account.spec.provider {
            Provider::Aws => {
                (self.engine_over(self.aws_drivers(&catalog, &c.environment, operation).await?), Provider::Aws)
            }
            other => (self.engine(), other),
        })
    }

    /// The graph that destroys an environment: nothing, on its provider.
    /// An environment whose network and cluster previews still use is not
    /// destroyed under them.
    pub async fn empty_graph(&self, environment: &str) -> Result<ResourceGraph, ControlError> {
        let catalog = self.catalog(RequestContext::default());
        let provider = catalog.environment_context(environment).await?.account.spec.provider;
        if provider != Provider::Local {
            let previews: Vec<String> = catalog
                .list(Some(paved_model::Kind::Environment))
                .await?
                .into_iter()
                .filter(|o| match &o.spec {
                    paved_model::Spec::Environment(e) => {
                        e.metadata.labels.get(git::LABEL_PREVIEW_OF).is_some_and(|h| h == environment)
                    }
                    _ => false,
                })
                .map(|o| o.record.name)
                .collect();
            if !previews.is_empty() {
                return Err(ControlError::HostsPreviews { environment: environment.into(), previews });
            }
        }
        Ok(ResourceGraph::new(provider, environment))
    }

    /// What this machine offers the local provider. Planning is pure; detection
    /// happens here, at the edge. Containers are planned when asked for
    /// (`--runtime`), else when the environment already runs on them, else when
    /// a Docker Engine answers: an environment does not flip runtime (which
    /// replaces everything) because the engine was down for a moment.
    pub async fn capabilities(&self, environment: &str) -> Result<Capabilities, ControlError> {
        let on_path = |bin: &str| {
            std::env::var_os("PATH").is_some_and(|paths| std::env::split_paths(&paths).any(|d| d.join(bin).is_file()))
        };
        let docker = match self.settings.runtime {
            Some(r) => r == RuntimeChoice::Docker,
            None => {
                let applied = self.store.applied_nodes(environment).await?;
                match applied.iter().find(|n| n.node_id.starts_with("local.network/")) {
                    Some(n) => n.node["properties"]["runtime"] == "docker",
                    None => paved_local::docker::available().await,
                }
            }
        };
        Ok(Capabilities { docker, redis_server: on_path("redis-server"), sandbox: on_path("bwrap") })
    }

    /// The desired resource graph of an environment, from the recorded specs.
    pub async fn desired_graph(
        &self,
        catalog: &Catalog,
        environment: &str,
    ) -> Result<(ResourceGraph, EnvironmentContext), ControlError> {
        let c = catalog.environment_context(environment).await?;
        let graph = self.plan_context(catalog, &c, &c.environment).await?;
        Ok((graph, c))
    }

    /// Plans `environment` (the context's, or a variant of it) with the rest of `c`.
    async fn plan_context(
        &self,
        catalog: &Catalog,
        c: &EnvironmentContext,
        environment: &paved_model::Environment,
    ) -> Result<ResourceGraph, ControlError> {
        let mut input = self.plan_input(catalog, c, environment).await?;
        let unplannable = |errors: Vec<String>| ControlError::Unplannable {
            environment: environment.metadata.name.clone(),
            problems: errors,
        };
        let mut graph = paved_plan::plan_services(&input)
            .map_err(|errors| unplannable(errors.iter().map(|e| e.to_string()).collect()))?;
        if !graph.blocked.is_empty() {
            // What runs stays until the blocked services plan again (see `keep_applied`).
            let mut applied = ResourceGraph::new(graph.provider, &graph.environment);
            for n in self.store.applied_nodes(&environment.metadata.name).await? {
                let node = serde_json::from_value(n.node)
                    .map_err(|e| unplannable(vec![format!("applied node `{}` is unreadable: {e}", n.node_id)]))?;
                applied.nodes.insert(n.node_id, node);
            }
            paved_plan::keep_applied(&mut graph, &applied).map_err(|e| unplannable(vec![e.to_string()]))?;
            input.services.retain(|w| !graph.blocked.contains_key(&w.metadata.name));
        }
        // A cluster's services read their output-holding values from the
        // cloud's secret store: the apply writes them there. An environment
        // that cannot be rendered cannot be planned either: leaving its
        // secret nodes out would make the next apply delete the secrets its
        // running services read.
        if c.account.spec.provider == Provider::Aws
            && c.blueprint.spec.compute.runtime == paved_model::blueprint::Runtime::Cluster
        {
            let tree = paved_k8s::render(&input).map_err(|errors| ControlError::Unplannable {
                environment: environment.metadata.name.clone(),
                problems: errors.iter().map(|e| e.to_string()).collect(),
            })?;
            cluster_secrets::add_aws(&mut graph, &tree);
        }
        Ok(graph)
    }

    /// What planning `environment` (the context's, or a variant of it)
    /// takes besides the specs: the target's capabilities, the account's
    /// address blocks, the releases and, for a cloud preview, its host as
    /// applied. Planning itself does no I/O.
    async fn plan_input<'a>(
        &self,
        catalog: &Catalog,
        c: &'a EnvironmentContext,
        environment: &'a paved_model::Environment,
    ) -> Result<PlanInput<'a>, ControlError> {
        let cloud = c.account.spec.provider != Provider::Local;
        let addresses =
            if cloud { self.address_plan(catalog, &c.account.metadata.name).await? } else { Default::default() };
        let host = match environment.metadata.labels.get(git::LABEL_PREVIEW_OF) {
            Some(host) if cloud && environment.spec.env_type == paved_model::EnvType::Preview => {
                self.check_preview_host(catalog, environment, host).await?;
                let nodes = self.store.applied_nodes(host).await?;
                Some(paved_plan::aws::Host {
                    environment: host.clone(),
                    nodes: nodes
                        .into_iter()
                        .map(|n| {
                            let node = paved_plan::aws::HostNode {
                                properties: n.node["properties"].clone(),
                                outputs: n.outputs,
                            };
                            (n.node_id, node)
                        })
                        .collect(),
                })
            }
            _ => None,
        };
        let zones = if cloud { self.applied_zones(&environment.metadata.name).await? } else { None };
        Ok(PlanInput {
            environment,
            blueprint: &c.blueprint,
            account: &c.account,
            services: c.services.iter().collect(),
            capabilities: self.capabilities(&environment.metadata.name).await?,
            addresses,
            releases: self.releases(c).await?,
            host,
            zones,
        })
    }

    /// The Kubernetes manifests of a cluster environment (`paved render`):
    /// its services at their current deployments.
    pub async fn render_kubernetes(
        &self,
        catalog: &Catalog,
        environment: &str,
    ) -> Result<paved_k8s::Tree, ControlError> {
        let c = catalog.environment_context(environment).await?;
        let input = self.plan_input(catalog, &c, &c.environment).await?;
        paved_k8s::render(&input).map_err(|errors| ControlError::Unrenderable {
            environment: environment.to_string(),
            problems: errors.iter().map(|e| e.to_string()).collect(),
        })
    }

    /// A preview runs on its host's cluster and network: the host must be a
    /// development environment of the preview's account, region and
    /// blueprint. The
    /// label naming it is a spec field anyone who may write environments
    /// can set, and must not put a pull request's code on production's
    /// cluster or in another account.
    async fn check_preview_host(
        &self,
        catalog: &Catalog,
        preview: &paved_model::Environment,
        host: &str,
    ) -> Result<(), ControlError> {
        let refuse = |why: String| ControlError::Unplannable {
            environment: preview.metadata.name.clone(),
            problems: vec![format!(
                "label `{}: {host}`: {why}; previews run only on a development environment of their own account, region and blueprint",
                git::LABEL_PREVIEW_OF
            )],
        };
        let found = match catalog.get(paved_model::Kind::Environment, host).await {
            Ok(o) => o,
            Err(paved_catalog::CatalogError::NotFound { .. }) => return Err(refuse("no such environment".into())),
            Err(e) => return Err(e.into()),
        };
        let paved_model::Spec::Environment(h) = found.spec else { return Err(refuse("not an environment".into())) };
        if h.spec.env_type != paved_model::EnvType::Development {
            return Err(refuse(format!("`{host}` is a {} environment", h.spec.env_type.as_str())));
        }
        if h.spec.account != preview.spec.account {
            return Err(refuse(format!("`{host}` is in account `{}`", h.spec.account)));
        }
        if h.spec.region != preview.spec.region {
            return Err(refuse(format!("`{host}` is in region `{}`", h.spec.region)));
        }
        if h.spec.blueprint.name() != preview.spec.blueprint.name() {
            return Err(refuse(format!("`{host}` is built from blueprint `{}`", h.spec.blueprint.name())));
        }
        Ok(())
    }

    /// The zones an environment's applied subnets are in, when they fill
    /// every zone slot; else `None`, and the apply asks AWS
    /// ([`Self::place_zones`]). Planning never calls the cloud.
    async fn applied_zones(&self, environment: &str) -> Result<Option<Vec<String>>, ControlError> {
        let zones: BTreeSet<String> = self
            .store
            .applied_nodes(environment)
            .await?
            .iter()
            .filter(|n| n.node_id.starts_with("aws.subnet/"))
            .filter_map(|n| n.node["properties"]["availabilityZone"].as_str().map(str::to_string))
            .collect();
        Ok((zones.len() >= paved_plan::aws::ZONE_SLOTS.len()).then(|| zones.into_iter().collect()))
    }

    /// The address blocks an account's environments hold (from their applied
    /// VPCs) and the account's environments, for planning without overlap.
    async fn address_plan(
        &self,
        catalog: &Catalog,
        account: &str,
    ) -> Result<paved_plan::aws::AddressPlan, ControlError> {
        let mut plan = paved_plan::aws::AddressPlan::default();
        for o in catalog.list(Some(paved_model::Kind::Environment)).await? {
            let paved_model::Spec::Environment(e) = o.spec else { continue };
            if e.spec.account != account {
                continue;
            }
            let vpc = format!("aws.vpc/{}", e.metadata.name);
            let applied = self.store.applied_nodes(&e.metadata.name).await?;
            if let Some(cidr) =
                applied.iter().find(|n| n.node_id == vpc).and_then(|n| n.node["properties"]["cidrBlock"].as_str())
            {
                plan.allocated.insert(e.metadata.name.clone(), cidr.to_string());
            }
            // A preview lives in its host's network: it takes no block.
            if e.spec.env_type != paved_model::EnvType::Preview {
                plan.account_environments.push(e.metadata.name);
            }
        }
        Ok(plan)
    }

    /// How two environments' desired graphs differ, names masked.
    pub async fn parity(
        &self,
        catalog: &Catalog,
        left: &str,
        right: &str,
    ) -> Result<Vec<paved_plan::parity::Difference>, ControlError> {
        let (a, left_context) = self.desired_graph(catalog, left).await?;
        let (b, right_context) = self.desired_graph(catalog, right).await?;
        let mut differences = paved_plan::parity::parity(&a, &b);
        // What remains when the right environment takes the left one's
        // parameter values was not declared by the blueprint.
        if left_context.blueprint.metadata.name == right_context.blueprint.metadata.name {
            let values = paved_plan::resolve::parameters(&left_context.environment, &left_context.blueprint).map_err(
                |errors| ControlError::Unplannable {
                    environment: left.to_string(),
                    problems: errors.iter().map(|e| e.to_string()).collect(),
                },
            )?;
            let mut same_values = right_context.environment.clone();
            same_values.spec.parameters = values;
            let b_same = self.plan_context(catalog, &right_context, &same_values).await?;
            paved_plan::parity::classify(&mut differences, &paved_plan::parity::parity(&a, &b_same));
        }
        // What runs: an edit outside paved in either environment shows even
        // where the plans agree.
        if let (Some(live_a), Some(live_b)) = (self.live_graph(&a).await?, self.live_graph(&b).await?) {
            let (a, b) = (live_a, live_b);
            let planned: Vec<_> = differences.clone();
            for mut d in paved_plan::parity::parity(&a, &b) {
                let same = |p: &&paved_plan::parity::Difference| {
                    (p.node == d.node && p.field == d.field) && (p.left == d.left && p.right == d.right)
                };
                if !planned.iter().any(|p| same(&p)) {
                    d.live = true;
                    differences.push(d);
                }
            }
        }
        Ok(differences)
    }

    /// What paved applied to the environment of `desired` with what drift
    /// found in its place (changed fields as observed, missing resources
    /// left out), masked like `desired`; `None` when nothing is applied.
    async fn live_graph(&self, desired: &ResourceGraph) -> Result<Option<ResourceGraph>, ControlError> {
        let environment = desired.environment.as_str();
        let (engine, provider) = self.engine_for(environment, "parity").await?;
        let mut graph = engine.recorded(environment, provider).await?;
        if graph.nodes.is_empty() {
            return Ok(None);
        }
        graph.identity = desired.identity.clone();
        let catalog = self.catalog(RequestContext::default());
        let secrets = self.secret_values(&catalog, environment, &[&graph]).await?;
        for node in engine.drift(environment, provider, &secrets).await?.nodes {
            match node.status {
                paved_engine::DriftStatus::Missing => {
                    graph.nodes.remove(&node.id);
                }
                _ => {
                    if let Some(n) = graph.nodes.get_mut(&node.id) {
                        for c in node.changes {
                            paved_plan::set_field(&mut n.properties, &c.field, c.after);
                        }
                    }
                }
            }
        }
        Ok(Some(graph))
    }

    /// Deletes a recorded object (a tombstone; history stays), refusing an
    /// environment that still has resources: forgetting its spec would orphan them.
    pub async fn delete_spec(
        &self,
        catalog: &Catalog,
        kind: paved_model::Kind,
        name: &str,
        actor: &str,
        expected_generation: Option<i64>,
    ) -> Result<paved_store::Record, ControlError> {
        if kind == paved_model::Kind::Environment {
            let resources = self.store.applied_nodes(name).await?.len();
            if resources > 0 {
                return Err(ControlError::StillProvisioned { environment: name.to_string(), resources });
            }
        }
        Ok(catalog.delete_expecting(kind, name, actor, expected_generation).await?)
    }

    /// Drift of an environment; its secrets are compared like any value
    /// (a workload started with an old secret shows) and never shown.
    pub async fn drift(&self, environment: &str) -> Result<DriftReport, ControlError> {
        let catalog = self.catalog(RequestContext::default());
        let (engine, provider) = self.engine_for(environment, "drift").await?;
        self.on_this_runner(environment, provider, false).await?;
        let graph = engine.recorded(environment, provider).await?;
        let secrets = self.secret_values(&catalog, environment, &[&graph]).await?;
        Ok(engine.drift(environment, provider, &secrets).await?)
    }

    /// Drift of every applied environment, read as a sweep: environments
    /// of one account and region share one set of clients (the control
    /// plane's credentials), and each kind is listed across all of them at
    /// once. Reports sorted by environment.
    pub async fn drift_sweep(&self) -> Result<Vec<DriftReport>, ControlError> {
        let catalog = self.catalog(RequestContext::default());
        // (provider, account, region) → the environments read with one set of clients.
        type Sweep = Vec<(String, Provider, paved_engine::SecretValues)>;
        let mut groups: BTreeMap<(Provider, String, String), Sweep> = BTreeMap::new();
        let mut elsewhere = Vec::new();
        for o in catalog.list(Some(paved_model::Kind::Environment)).await? {
            let paved_model::Spec::Environment(e) = o.spec else { continue };
            let name = e.metadata.name.clone();
            if self.store.applied_nodes(&name).await?.is_empty() {
                continue;
            }
            let provider = catalog.environment_context(&name).await?.account.spec.provider;
            let recorded = self.engine().recorded(&name, provider).await?;
            // Another machine's local environment: each node unreadable from here, saying where it runs.
            if let Err(e @ ControlError::OtherRunner { .. }) = self.on_this_runner(&name, provider, false).await {
                let unreadable = paved_engine::DriftStatus::Unreadable { error: e.to_string() };
                let order = recorded.order().unwrap_or_else(|_| recorded.nodes.keys().cloned().collect());
                let nodes = order.into_iter().map(|id| paved_engine::NodeDrift {
                    id,
                    status: unreadable.clone(),
                    changes: Vec::new(),
                });
                elsewhere.push(DriftReport { environment: name, nodes: nodes.collect() });
                continue;
            }
            let secrets = self.secret_values(&catalog, &name, &[&recorded]).await?;
            groups
                .entry((provider, e.spec.account.clone(), e.spec.region.clone()))
                .or_default()
                .push((name, provider, secrets));
        }
        let mut reports = elsewhere;
        for ((provider, account, region), environments) in groups {
            let engine = match provider {
                Provider::Aws => self.engine_over(self.aws_sweep_drivers(&catalog, &account, &region).await?),
                _ => self.engine(),
            };
            reports.extend(engine.drift_many(&environments).await?);
        }
        reports.sort_by(|a, b| a.environment.cmp(&b.environment));
        Ok(reports)
    }

    /// The URLs of an environment's routes, from what was applied.
    pub async fn urls(&self, environment: &str) -> Result<Vec<(String, String)>, ControlError> {
        Ok(route_urls(&self.store.applied_nodes(environment).await?))
    }

    /// Brings an environment to `desired` (an empty graph destroys it) and
    /// records the run in the audit log. Waits for another live paved's lock
    /// up to `lock_timeout`; takes over the lock of a paved on this machine
    /// that is gone.
    pub async fn run(
        &self,
        desired: &ResourceGraph,
        run: &RunOptions,
        caller: &Caller,
        cancel: Arc<AtomicBool>,
        progress: Arc<dyn Progress>,
        watcher: &dyn LockWatcher,
    ) -> Result<Report, ControlError> {
        let operation = if desired.nodes.is_empty() { "destroy" } else { "apply" };
        let placed;
        let desired = if desired.provider == Provider::Aws && paved_plan::aws::zones_provisional(desired) {
            placed = self.place_zones(desired, operation).await?;
            &placed
        } else {
            desired
        };
        let (engine, provider) = self.engine_for(&desired.environment, operation).await?;
        self.on_this_runner(&desired.environment, provider, false).await?;
        let applied = engine.recorded(&desired.environment, desired.provider).await?;
        if !desired.nodes.is_empty() {
            self.gate_plan(caller, desired, &applied).await?;
        }
        let catalog = self.catalog(caller.request.clone());
        let secrets = self.secret_values(&catalog, &desired.environment, &[desired, &applied]).await?;
        // Pinned only by an apply that is going ahead (not one policy refused);
        // the claim settles a race between two first applies.
        if !desired.nodes.is_empty() {
            self.on_this_runner(&desired.environment, provider, true).await?;
        }
        let opts = Options {
            secrets,
            parallelism: run.parallelism,
            holder: run.holder.clone(),
            // A cloud takes its time: an EKS cluster or an RDS instance is
            // ready (or deleted) after 10 to 20 minutes.
            ready_timeout: if provider == Provider::Local {
                Duration::from_secs(120)
            } else {
                Duration::from_secs(45 * 60)
            },
            node_timeout: if provider == Provider::Local {
                Duration::from_secs(300)
            } else {
                Duration::from_secs(30 * 60)
            },
            // Propagation (IAM, EC2's eventual consistency) takes seconds to a
            // minute: ten attempts backing off to 15 s wait up to about one.
            max_attempts: if provider == Provider::Local { 5 } else { 10 },
            max_backoff: if provider == Provider::Local { Duration::from_secs(10) } else { Duration::from_secs(15) },
            jitter_seed: run.jitter_seed,
            ..Options::default()
        };
        let mut result = engine.apply(desired, &opts, cancel.clone(), progress.clone()).await;
        let deadline = Instant::now() + run.lock_timeout;
        let mut told = false;
        while let Err(EngineError::Locked { holder, .. }) = &result
            && !crashed_here(&run.holder, holder)
            && Instant::now() < deadline
            && !cancel.load(Ordering::SeqCst)
        {
            if !told {
                watcher.waiting(holder, &desired.environment, run.lock_timeout);
                told = true;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
            result = engine.apply(desired, &opts, cancel.clone(), progress.clone()).await;
        }
        if let Err(EngineError::Locked { holder, .. }) = &result
            && crashed_here(&run.holder, holder)
        {
            watcher.taking_over(holder);
            self.store.release_lock(&desired.environment, holder).await?;
            tokio::time::sleep(TAKEOVER_SETTLE).await;
            result = engine.apply(desired, &opts, cancel, progress).await;
        }
        self.audit_run(desired, caller, &result, run.operation.as_ref()).await?;
        let report = result?;
        if !desired.nodes.is_empty() {
            self.settle(&desired.environment, &report).await?;
        } else if provider == Provider::Local && report.succeeded() {
            // Destroyed: the next apply may run on any machine.
            self.store.set_runner(&desired.environment, None, self.clock.now()).await?;
        }
        Ok(report)
    }

    /// An AWS graph planned before its environment had subnets (zones
    /// provisional), put in the zones AWS offers the account in its region
    /// now. The applied subnets then hold them, and later plans read them
    /// from there without asking AWS.
    async fn place_zones(&self, desired: &ResourceGraph, operation: &str) -> Result<ResourceGraph, ControlError> {
        let catalog = self.catalog(RequestContext::default());
        let c = catalog.environment_context(&desired.environment).await?;
        let unplannable = |problem: String| ControlError::Unplannable {
            environment: desired.environment.clone(),
            problems: vec![problem],
        };
        let session = self.aws_session(&catalog, &c.environment, operation).await?;
        let zones = session.availability_zones().await.map_err(|e| {
            unplannable(format!(
                "the availability zones of region `{}` could not be read from AWS, and the subnets need them: {e}",
                c.environment.spec.region
            ))
        })?;
        let mut placed = desired.clone();
        paved_plan::aws::place_zones(&mut placed, &zones).map_err(|e| unplannable(e.to_string()))?;
        Ok(placed)
    }

    /// Records an apply or destroy of an environment in the audit log: the
    /// digest of the graph it worked towards and what came of each node.
    async fn audit_run(
        &self,
        desired: &ResourceGraph,
        caller: &Caller,
        result: &Result<Report, EngineError>,
        operation: Option<&OperationRef>,
    ) -> Result<(), ControlError> {
        let (outcome, details) = match result {
            Ok(report) => {
                let mut counts: BTreeMap<String, usize> = BTreeMap::new();
                for o in report.outcomes.values() {
                    let name = serde_json::to_value(o)
                        .ok()
                        .and_then(|v| v["outcome"].as_str().map(str::to_string))
                        .unwrap_or_default();
                    *counts.entry(name).or_default() += 1;
                }
                let outcome = if report.succeeded() { AuditOutcome::Succeeded } else { AuditOutcome::Failed };
                let mut details = serde_json::json!({"nodes": counts, "cancelled": report.cancelled});
                if !report.blocked.is_empty() {
                    details["blocked"] = serde_json::json!(report.blocked);
                }
                (outcome, details)
            }
            Err(e) => (AuditOutcome::Failed, serde_json::json!({"error": e.to_string()})),
        };
        let action = if desired.nodes.is_empty() { "environment.destroy" } else { "environment.apply" };
        let digest = format!("sha256:{}", hex::encode(Sha256::digest(desired.to_bytes())));
        let target = format!("Environment/{}", desired.environment);
        let Some(op) = operation else {
            return self.record(caller, action, target, outcome, Some(digest), details).await;
        };
        if matches!(result, Ok(report) if report.cancelled) {
            // A queued operation stops only when its replica does: another
            // replica finishes it, and that run's event is the operation's.
            return Ok(());
        }
        let mut details = details;
        details["operation"] = serde_json::json!(op.id);
        let event = NewAuditEvent { after: Some(digest), details, ..self.event(caller, action, target, outcome) };
        // A replica that died after appending it already did: one event per operation.
        self.store.audit_operation(&op.id, &op.owner, &event).await?;
        Ok(())
    }

    /// Appends one event for `caller` to the audit log.
    pub async fn record(
        &self,
        caller: &Caller,
        action: &str,
        target: String,
        outcome: AuditOutcome,
        after: Option<String>,
        details: serde_json::Value,
    ) -> Result<(), ControlError> {
        let event = NewAuditEvent { after, details, ..self.event(caller, action, target, outcome) };
        self.store.append_audit(&event).await?;
        Ok(())
    }

    /// An audit event by `caller`, now, without digests or details yet.
    pub(crate) fn event(&self, caller: &Caller, action: &str, target: String, outcome: AuditOutcome) -> NewAuditEvent {
        NewAuditEvent {
            at: self.clock.now(),
            actor: caller.actor.clone(),
            action: action.into(),
            target,
            outcome,
            request: caller.request.clone(),
            before: None,
            after: None,
            details: serde_json::json!({}),
        }
    }
}

/// What destroying the environment of `nodes` (its applied nodes) keeps:
/// `(node, what)` for each database that leaves a final snapshot
/// (production's), named as the AWS driver names it.
pub fn kept_on_destroy(nodes: &[paved_store::AppliedNode]) -> Vec<(String, String)> {
    nodes
        .iter()
        .filter(|n| n.node_id.starts_with("aws.rds-instance/") && n.node["properties"]["finalSnapshot"] == true)
        .filter_map(|n| {
            let name = n.outputs.get("finalSnapshotName")?.as_str()?;
            Some((
                n.node_id.clone(),
                format!("final snapshot `{name}` (restore with `aws rds restore-db-instance-from-db-snapshot`)"),
            ))
        })
        .collect()
}

/// `(route node, URL)` of every applied route among `nodes`, sorted: for
/// callers that already read an environment's applied nodes.
pub fn route_urls(nodes: &[paved_store::AppliedNode]) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = nodes
        .iter()
        .filter(|n| n.node_id.starts_with("local.route/"))
        .filter_map(|n| n.outputs.get("url").and_then(|u| u.as_str()).map(|u| (n.node_id.clone(), u.to_string())))
        .collect();
    out.sort();
    out
}

/// `true` when a lock holder (`user@host:pid`) was a paved process on this
/// machine that is gone: its lease need not be waited out.
fn crashed_here(mine: &str, holder: &str) -> bool {
    let host_of =
        |h: &str| h.rsplit_once(':').and_then(|(left, _)| left.split_once('@')).map(|(_, host)| host.to_string());
    let Some(pid) = holder.rsplit_once(':').and_then(|(_, pid)| pid.parse::<i32>().ok()) else { return false };
    // SAFETY: signal 0 only checks that the process exists.
    let alive = unsafe { libc::kill(pid, 0) == 0 || *libc::__errno_location() == libc::EPERM };
    host_of(holder).is_some() && host_of(holder) == host_of(mine) && !alive
}
