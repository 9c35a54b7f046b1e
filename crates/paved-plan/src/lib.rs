//! Planning: desired state → a resource graph for one provider → the diff
//! against what was applied.
//!
//! [`plan`] is a pure function of its [`PlanInput`] (blueprint, account,
//! environment, services and the capabilities of the target, all passed in):
//! the same input gives a byte-identical graph ([`ResourceGraph::to_bytes`]).
//! Each provider has one translation module mapping neutral components and
//! Score resource types to that provider's kinds and normalising behaviour
//! (timeouts, health checks) so providers behave alike; [`local`] is the
//! first. Placeholders a provider cannot satisfy are errors here, at plan
//! time, never at apply.
//!
//! Architecture invariant: no I/O, no clock, no randomness. Values that only
//! exist after apply (passwords, ports chosen at runtime) are references
//! (`${ref:KIND/NAME.OUTPUT}`) resolved by the engine.

pub mod aws;
pub mod diff;
pub mod graph;
pub mod local;
pub mod parity;
pub mod provision;
pub mod resolve;
pub mod terraform;

pub use diff::{Action, FieldChange, Plan, PlannedNode, diff, field_changes, leaf_fields, set_field};
pub use graph::{Node, ResourceGraph};

use paved_model::{Blueprint, CloudAccount, Environment, Provider, Strategy, Workload};
use std::collections::BTreeMap;

/// What the target can do, detected by the caller (planning itself does no I/O).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Capabilities {
    /// A Docker Engine answers: the local provider runs containers.
    pub docker: bool,
    /// `redis-server` is installed: the local provider can offer redis.
    pub redis_server: bool,
    /// bubblewrap is installed: the local provider can run processes sandboxed
    /// (it runs none without).
    pub sandbox: bool,
}

/// Everything a plan depends on.
#[derive(Debug, Clone)]
pub struct PlanInput<'a> {
    pub environment: &'a Environment,
    pub blueprint: &'a Blueprint,
    pub account: &'a CloudAccount,
    /// The services deployed to the environment.
    pub services: Vec<&'a Workload>,
    pub capabilities: Capabilities,
    /// Address blocks already taken in the account (cloud providers).
    pub addresses: aws::AddressPlan,
    /// The artifact each service should run here (its current deployment);
    /// services without one run the image their Score file names.
    pub releases: BTreeMap<String, Release>,
    /// A cloud preview's host: the environment whose network, cluster and
    /// load balancer it shares, as applied (filled in by the caller).
    pub host: Option<aws::Host>,
    /// The zones of the environment's region it may use (cloud providers):
    /// those its applied subnets are in, else what the cloud answers
    /// (AWS `DescribeAvailabilityZones`); `None` plans provisional zones
    /// that the apply replaces ([`aws::place_zones`]).
    pub zones: Option<Vec<String>>,
}

/// A deployment as planning sees it: which digest, rolled out how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Release {
    /// `sha256:…` of the artifact.
    pub artifact: String,
    pub strategy: Strategy,
    pub soak_ms: u64,
    pub ready_timeout_ms: u64,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PlanError {
    #[error(
        "service `{service}`: resource `{resource}` has type `{kind}`{}, which nothing provisions on the {provider} provider (built in: {supported})",
        class.as_ref().map(|c| format!(" (class `{c}`)")).unwrap_or_default()
    )]
    UnsupportedResource {
        service: String,
        resource: String,
        kind: String,
        /// Boxed: keeps every `Result<_, PlanError>` small.
        class: Option<Box<str>>,
        provider: &'static str,
        supported: &'static str,
    },
    /// `at`: the provisioner (blueprint, index, type) and the output.
    #[error("service `{service}`: resource `{resource}`: {at}: {reason}")]
    Provisioner { service: String, resource: String, at: String, reason: String },
    #[error("service `{service}`: resource `{resource}` needs {what}; {hint}")]
    Unavailable { service: String, resource: String, what: String, hint: String },
    #[error("service `{service}`: `{placeholder}` in {field} cannot be satisfied: {reason}")]
    Unsatisfiable { service: String, field: String, placeholder: String, reason: String },
    #[error(
        "resource id `{id}` is declared with type `{first}` and with type `{second}`; a shared resource has one type"
    )]
    ConflictingShare { id: String, first: String, second: String },
    #[error("parameter `{parameter}` has no value for environment `{environment}`")]
    MissingParameter { environment: String, parameter: String },
    #[error("parameter `{parameter}` has value {value}, which does not fit {field}")]
    BadParameter { parameter: String, value: String, field: String },
    #[error(
        "blueprint `{blueprint}`: an HTTPS listener on AWS needs a certificate (AWS refuses one without); set `spec.ingress.tls.domain` to a domain whose Route 53 zone is in the account (paved requests the certificate and validates it there), or `spec.ingress.tls.enabled: false`"
    )]
    NoCertificateDomain { blueprint: String },
    #[error(
        "blueprint `{blueprint}`: the cluster's nodes on AWS need a way out to pull images (ECR), get credentials (STS) and join the cluster, and this network gives them none ({why}); use `network.egress: nat` with `public` and `private` tiers (VPC endpoints instead of NAT are not planned yet)"
    )]
    NoNodeEgress { blueprint: String, why: String },
    #[error(
        "preview `{environment}` runs as a namespace on the cluster of the environment it was opened from, and names none (label `paved.dev/preview-of`); open it again from a pull request"
    )]
    NoHost { environment: String },
    #[error(
        "preview `{environment}` runs on the cluster of `{host}`, which is not applied yet (no {missing}): apply it first with `paved apply -e {host}`"
    )]
    HostNotApplied { environment: String, host: String, missing: String },
    #[error(
        "environment `{environment}`: region `{region}` offers the account {count} available zone(s) ({zones}), and an environment's subnets span {needed}; choose another region"
    )]
    TooFewZones { environment: String, region: String, count: usize, zones: String, needed: usize },
    #[error(
        "service `{service}`: {field} is `{source_path}`, a directory of the machine running paved; a volume's source is a `volume` resource (`${{resources.NAME}}`){allowed}"
    )]
    HostVolumeNotAllowed { service: String, field: String, source_path: String, allowed: String },
    #[error(
        "service `{service}` would run as processes, which paved runs only in a sandbox made by bubblewrap: install it (Debian package `bubblewrap`) on the machine running paved, or run the environment on Docker"
    )]
    NoSandbox { service: String },
    #[error("the {0} provider cannot be planned yet; `local` and `aws` can")]
    ProviderNotPlannable(&'static str),
    #[error(
        "environment `{environment}` is in region `{region}`, which account `{account}` does not allow (data residency; allowed: {allowed})"
    )]
    RegionNotAllowed { environment: String, region: String, account: String, allowed: String },
    #[error("environment `{environment}` cannot get an address block: {reason}")]
    AddressSpace { environment: String, reason: String },
    #[error(
        "service `{service}` has containers {containers}; a deployment replaces the image of one of them: name it `{service}`"
    )]
    AmbiguousArtifact { service: String, containers: String },
    #[error(
        "service `{service}`: {field} reads `source: {path}`, a file beside the Score file, which paved never sees (it records the Score file's text, not its directory); put the file's text in `content`, or its bytes base64-encoded in `binaryContent`"
    )]
    FileSource { service: String, field: String, path: String },
    #[error("node `{node}` depends on `{missing}`, which is not in the graph")]
    DanglingDependency { node: String, missing: String },
    #[error("dependency cycle: {}", path.join(" → "))]
    Cycle { path: Vec<String> },
}

impl PlanError {
    /// The service a problem belongs to, when it is that service's alone (its
    /// resources, placeholders, volumes or image). Every other problem is the
    /// platform's — blueprint, account, network, machine — and stops the
    /// whole environment.
    pub fn service(&self) -> Option<&str> {
        match self {
            PlanError::UnsupportedResource { service, .. }
            | PlanError::Unavailable { service, .. }
            | PlanError::Provisioner { service, .. }
            | PlanError::FileSource { service, .. }
            | PlanError::Unsatisfiable { service, .. }
            | PlanError::HostVolumeNotAllowed { service, .. }
            | PlanError::AmbiguousArtifact { service, .. } => Some(service),
            _ => None,
        }
    }
}

/// Plans an environment, leaving out the services that cannot be planned
/// (listed in [`ResourceGraph::blocked`] with their problems) so one team's
/// unprovisionable resource does not stop the others. A platform problem
/// (see [`PlanError::service`]) still fails the whole plan. With services
/// blocked, the caller keeps what is applied ([`keep_applied`]).
pub fn plan_services(input: &PlanInput<'_>) -> Result<ResourceGraph, Vec<PlanError>> {
    let mut blocked: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut graph = loop {
        let mut without = input.clone();
        without.services.retain(|w| !blocked.contains_key(&w.metadata.name));
        match plan(&without) {
            Ok(g) => break g,
            Err(errors) => {
                // Each pass blocks at least one more service, or gives up.
                let progress = errors.iter().all(|e| e.service().is_some_and(|s| !blocked.contains_key(s)));
                if !progress {
                    return Err(errors);
                }
                for e in &errors {
                    blocked.entry(e.service().unwrap_or_default().to_string()).or_default().push(e.to_string());
                }
            }
        }
    };
    graph.blocked = blocked;
    Ok(graph)
}

/// While a service is blocked nothing applied is deleted: every `applied`
/// node the graph no longer holds is kept as it is (with what it depends
/// on). A broken spec must not tear down what its service runs, and which
/// applied nodes were the blocked service's is not recorded, so all
/// deletions wait until no service is blocked. Returns the ids kept.
pub fn keep_applied(graph: &mut ResourceGraph, applied: &ResourceGraph) -> Result<Vec<String>, PlanError> {
    let mut kept = Vec::new();
    if graph.blocked.is_empty() {
        return Ok(kept);
    }
    let mut keep: Vec<&String> = applied.nodes.keys().filter(|id| !graph.nodes.contains_key(*id)).collect();
    while let Some(id) = keep.pop() {
        if graph.nodes.contains_key(id) {
            continue;
        }
        let node = &applied.nodes[id];
        keep.extend(node.depends_on.iter().filter_map(|d| applied.nodes.get_key_value(d).map(|(k, _)| k)));
        graph.nodes.insert(id.clone(), node.clone());
        kept.push(id.clone());
    }
    graph.validate()?;
    kept.sort();
    Ok(kept)
}

/// Plans an environment on its account's provider. All problems are
/// returned at once.
pub fn plan(input: &PlanInput<'_>) -> Result<ResourceGraph, Vec<PlanError>> {
    let graph = match input.account.spec.provider {
        Provider::Local => local::translate(input)?,
        Provider::Aws => aws::translate(input)?,
        other => return Err(vec![PlanError::ProviderNotPlannable(other.as_str())]),
    };
    graph.validate().map_err(|e| vec![e])?;
    Ok(graph)
}
