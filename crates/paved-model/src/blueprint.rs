//! Blueprints: provider-neutral environment definitions with typed parameters.
//!
//! Components say *what* an environment has (a network with tiers, a
//! compute runtime, an ingress with stated timeouts, databases, …). The only
//! things allowed to differ between environments built from one blueprint are
//! its declared parameters; component fields that may vary reference them as
//! `${parameters.NAME}`.

use crate::duration::SpecDuration;
use crate::environment::EnvType;
use crate::meta::Metadata;
use crate::rollout::RolloutSpec;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Blueprint {
    pub metadata: Metadata,
    pub spec: BlueprintSpec,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct BlueprintSpec {
    /// Semantic version (`MAJOR.MINOR.PATCH`); environments pin `name@version`.
    #[schemars(regex(pattern = r"^[0-9]+\.[0-9]+\.[0-9]+$"))]
    pub version: String,
    /// The only allowed differences between environments of this blueprint.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("propertyNames" = {"pattern": "^[a-z][a-zA-Z0-9_]{0,62}$"}))]
    pub parameters: BTreeMap<String, ParameterSpec>,
    pub network: NetworkSpec,
    pub compute: ComputeSpec,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingress: Option<IngressSpec>,
    /// Database offerings by engine (the Score resource type they serve).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub databases: BTreeMap<DatabaseEngine, DatabaseSpec>,
    #[serde(default)]
    pub observability: ObservabilitySpec,
    #[serde(default)]
    pub security: SecurityBaseline,
    /// What the control plane does about an edit made outside paved.
    #[serde(default, skip_serializing_if = "DriftMode::is_default")]
    pub drift: DriftMode,
    /// Deployment defaults and the promotion order of environment types.
    #[serde(default, skip_serializing_if = "RolloutSpec::is_default")]
    pub rollout: RolloutSpec,
    /// Offers preview environments (one per pull request) made from this blueprint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preview: Option<crate::preview::PreviewSpec>,
    /// How this blueprint's environments provision Score resource types:
    /// the platform team's own types (`mongodb`, `kafka-topic`, …) or its
    /// own way for a built-in one (matched by class or id). The first that
    /// matches a resource wins, before any built-in.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub provisioners: Vec<Provisioner>,
}

/// One provisioner: which resources it serves and how (exactly one of
/// `template`, `command`, `terraform`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Provisioner {
    /// The Score resource type it serves.
    #[serde(rename = "type")]
    #[schemars(regex(pattern = r"^[A-Za-z0-9][A-Za-z0-9-]{0,61}[A-Za-z0-9]$"))]
    pub resource_type: String,
    /// Only resources of this class (any class when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class: Option<String>,
    /// Only the resource with this id (any when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Providers it applies on (`local`, `aws`); every provider when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub providers: Vec<crate::Provider>,
    /// Outputs from templates: each value may use `${environment.name}`
    /// (`.type`, `.region`, `.account`), `${parameters.NAME}` (the
    /// blueprint's, resolved for the environment), `${resource.name}`
    /// (`.type`, `.class`, `.id`: the resource's shared key), `${params.NAME}`
    /// (the resource's Score `params`) and `${secrets.NAME}` (a generated
    /// secret below). `$${` is a literal `${`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<TemplateProvisioner>,
    /// Outputs from a program the platform installed in paved's provisioner
    /// directory: it reads a JSON request on stdin and writes JSON outputs,
    /// sandboxed like workloads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<CommandProvisioner>,
    /// Outputs from a Terraform module in paved's provisioner directory,
    /// applied once per resource with its state kept by paved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub terraform: Option<TerraformProvisioner>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TemplateProvisioner {
    /// Output name → template.
    #[schemars(length(min = 1))]
    pub outputs: BTreeMap<String, String>,
    /// Secrets generated once per resource (32 random characters, kept
    /// sealed in the vault, the same on every apply); each is also an output.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secrets: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CommandProvisioner {
    /// The program's file name in the provisioner directory (no `/`): only
    /// programs the server's administrator installed there can run.
    #[schemars(regex(pattern = r"^[A-Za-z0-9._-]+$"))]
    pub program: String,
    /// Arguments, each a template over the same inputs as a template
    /// provisioner's outputs (no `secrets.*`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    /// How long one run may take (default 60s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<crate::duration::SpecDuration>,
    /// The outputs it must answer with (what workloads may read).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub outputs: Vec<String>,
    /// Outputs that are secrets: kept sealed in the vault, never in a plan.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secrets: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TerraformProvisioner {
    /// The module's directory name in the provisioner directory (no `/`).
    #[schemars(regex(pattern = r"^[A-Za-z0-9._-]+$"))]
    pub module: String,
    /// The module's input variables, each a template over the same inputs
    /// as a template provisioner's outputs (no `secrets.*`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub variables: BTreeMap<String, String>,
    /// How long one `terraform` run may take (default 10m).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<crate::duration::SpecDuration>,
    /// The module's outputs workloads may read (`terraform output -json`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub outputs: Vec<String>,
    /// Outputs that are secrets (every output the module marks
    /// `sensitive` must be one): kept sealed in the vault.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secrets: Vec<String>,
}

/// A provisioner's way of making outputs, whichever it declares.
#[derive(Debug, Clone, Copy)]
pub enum How<'a> {
    Template(&'a TemplateProvisioner),
    Command(&'a CommandProvisioner),
    Terraform(&'a TerraformProvisioner),
}

impl Provisioner {
    /// Its one way of making outputs, or why it has none or several.
    pub fn how(&self) -> Result<How<'_>, String> {
        match (&self.template, &self.command, &self.terraform) {
            (Some(t), None, None) => Ok(How::Template(t)),
            (None, Some(c), None) => Ok(How::Command(c)),
            (None, None, Some(t)) => Ok(How::Terraform(t)),
            (None, None, None) => Err("a provisioner needs one of `template`, `command` or `terraform`".into()),
            _ => Err("a provisioner takes exactly one of `template`, `command` or `terraform`".into()),
        }
    }

    /// The names of the secrets it makes or reports (sealed in the vault).
    pub fn secrets(&self) -> &[String] {
        match self.how() {
            Ok(How::Template(t)) => &t.secrets,
            Ok(How::Command(c)) => &c.secrets,
            Ok(How::Terraform(t)) => &t.secrets,
            Err(_) => &[],
        }
    }

    /// Why a template placeholder's `path` is not an input this provisioner
    /// can read (`None` when it is); `parameter` says which blueprint
    /// parameters exist. A resource's `params.NAME` is only known per
    /// resource, when planned. Only a template provisioner generates
    /// secrets; a command or module makes its own.
    pub fn unknown_input(&self, path: &[&str], parameter: impl Fn(&str) -> bool) -> Option<String> {
        let generates = |name: &str| matches!(self.how(), Ok(How::Template(t)) if t.secrets.iter().any(|s| s == name));
        match path {
            ["environment", "name" | "type" | "region" | "account"]
            | ["resource", "name" | "type" | "class" | "id"]
            | ["params", _] => None,
            ["parameters", name] if parameter(name) => None,
            ["parameters", name] => Some(format!("the blueprint has no parameter `{name}`")),
            ["secrets", name] if generates(name) => None,
            ["secrets", _] if !matches!(self.how(), Ok(How::Template(_))) => {
                Some("only a template provisioner generates secrets; a command or module makes its own".into())
            }
            ["secrets", name] => Some(format!("the provisioner generates no secret `{name}` (list it in `secrets`)")),
            _ => Some(
                "not a template input; templates read environment.name|type|region|account, parameters.NAME, \
                 resource.name|type|class|id, params.NAME and secrets.NAME"
                    .into(),
            ),
        }
    }

    /// Whether it serves a resource of `kind` (type), `class` and shared key `id` on `provider`.
    pub fn serves(&self, kind: &str, class: Option<&str>, id: Option<&str>, provider: crate::Provider) -> bool {
        self.resource_type == kind
            && self.class.as_deref().is_none_or(|c| Some(c) == class)
            && self.id.as_deref().is_none_or(|i| Some(i) == id)
            && (self.providers.is_empty() || self.providers.contains(&provider))
    }
}

/// What paved's reconciler does when an environment drifted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum DriftMode {
    /// Reports it (metrics, logs, `paved drift`); people decide.
    #[default]
    ReportOnly,
    /// Applies the environment again, restoring what paved applied.
    AutoHeal,
}

impl DriftMode {
    pub fn is_default(&self) -> bool {
        *self == DriftMode::ReportOnly
    }
}

/// The type of a blueprint parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ParamType {
    Integer,
    Enum,
    Boolean,
    String,
    /// One of `values` (default `small`, `medium`, `large`), ordered by size.
    Size,
}

impl ParamType {
    pub fn as_str(self) -> &'static str {
        match self {
            ParamType::Integer => "integer",
            ParamType::Enum => "enum",
            ParamType::Boolean => "boolean",
            ParamType::String => "string",
            ParamType::Size => "size",
        }
    }
}

pub const DEFAULT_SIZES: [&str; 3] = ["small", "medium", "large"];

/// A typed parameter. Which constraint fields apply depends on `type`:
/// `min`/`max` for integers, `values` for enums and sizes, `pattern` for strings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ParameterSpec {
    #[serde(rename = "type")]
    pub kind: ParamType,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub values: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pattern: Option<String>,
    /// Default for every environment type not listed in `defaults`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<serde_json::Value>,
    /// Default per environment type; overrides `default`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub defaults: BTreeMap<EnvType, serde_json::Value>,
}

impl ParameterSpec {
    /// The allowed values for enum and size parameters.
    pub fn allowed_values(&self) -> Vec<String> {
        match (&self.values, self.kind) {
            (Some(v), _) => v.clone(),
            (None, ParamType::Size) => DEFAULT_SIZES.iter().map(|s| s.to_string()).collect(),
            (None, _) => Vec::new(),
        }
    }

    /// The default value for an environment type, if one is declared.
    pub fn default_for(&self, env: EnvType) -> Option<&serde_json::Value> {
        self.defaults.get(&env).or(self.default.as_ref())
    }
}

/// A component field that is either a literal or a `${parameters.NAME}` reference.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum Param<T> {
    Value(T),
    Ref(ParamRef),
}

/// `${parameters.NAME}`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(transparent)]
#[schemars(extend("pattern" = r"^\$\{parameters\.[a-z][a-zA-Z0-9_]*\}$"))]
pub struct ParamRef(pub String);

impl ParamRef {
    /// The referenced parameter name.
    pub fn parameter(&self) -> Option<&str> {
        self.0.strip_prefix("${parameters.")?.strip_suffix('}')
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct NetworkSpec {
    /// The environment's private address space (IPv4 CIDR, e.g. `10.0.0.0/16`).
    pub address_space: String,
    /// Subnet tiers; `public` hosts the load balancer, `private` the workloads.
    #[schemars(length(min = 1))]
    pub tiers: Vec<NetworkTier>,
    pub egress: Egress,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum NetworkTier {
    Public,
    Private,
    Isolated,
}

/// How workloads reach the internet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Egress {
    Nat,
    Internet,
    None,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ComputeSpec {
    pub runtime: Runtime,
    /// Instance class of each replica: `small`, `medium`, `large`, `xlarge`.
    pub size: Param<Size>,
    pub replicas: Param<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autoscaling: Option<Autoscaling>,
    /// The Kubernetes minor version of a `cluster` runtime (`"1.35"`):
    /// raise it in a new blueprint version and promote that through the
    /// environments like any change. Unset: the newest version paved knows
    /// in its provider's standard support.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^1\.[0-9]{1,3}$"))]
    pub kubernetes_version: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Runtime {
    /// A managed container cluster (EKS, GKE, AKS, Kubernetes).
    Cluster,
    /// Containers on one host (the local provider's Docker Engine).
    Container,
    /// Supervised processes (the local provider without Docker).
    Process,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Size {
    Small,
    Medium,
    Large,
    Xlarge,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Autoscaling {
    pub min_replicas: Param<u32>,
    pub max_replicas: Param<u32>,
    #[serde(default = "default_cpu_target")]
    #[schemars(range(min = 1, max = 100))]
    pub target_cpu_percent: u32,
}

fn default_cpu_target() -> u32 {
    70
}

/// Ingress behaviour stated once, provider-neutrally; each provider's
/// translation sets its own knobs (ALB idle timeout, GCP backend timeout…) to match.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct IngressSpec {
    #[serde(default = "yes")]
    pub public: bool,
    #[serde(default)]
    pub tls: TlsSpec,
    pub timeouts: IngressTimeouts,
    pub health_check: HealthCheck,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TlsSpec {
    #[serde(default = "yes")]
    pub enabled: bool,
    #[serde(default = "default_tls_version")]
    pub min_version: TlsVersion,
    /// The domain the environments' hosts live under (`ENV.DOMAIN`,
    /// `SERVICE.ENV.DOMAIN`): on a cloud, paved requests the listener's
    /// certificate for them, validates it by DNS in the account's zone of
    /// this name, and writes each route's record there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$"), length(max = 200))]
    pub domain: Option<String>,
}

impl Default for TlsSpec {
    fn default() -> Self {
        TlsSpec { enabled: true, min_version: TlsVersion::V1_2, domain: None }
    }
}

fn default_tls_version() -> TlsVersion {
    TlsVersion::V1_2
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum TlsVersion {
    #[serde(rename = "1.2")]
    V1_2,
    #[serde(rename = "1.3")]
    V1_3,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct IngressTimeouts {
    /// How long an idle connection is kept open.
    pub idle: SpecDuration,
    /// How long a request may take before the ingress answers 504.
    pub request: SpecDuration,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct HealthCheck {
    #[schemars(regex(pattern = r"^/"))]
    pub path: String,
    pub interval: SpecDuration,
    pub timeout: SpecDuration,
    /// Consecutive successes before a target is healthy: 2–10, what ALB
    /// takes (<https://docs.aws.amazon.com/elasticloadbalancing/latest/APIReference/API_CreateTargetGroup.html>).
    #[serde(default = "default_threshold")]
    #[schemars(range(min = 2, max = 10))]
    pub healthy_threshold: u32,
    /// Consecutive failures before a target is unhealthy: 2–10 (same page).
    #[serde(default = "default_threshold")]
    #[schemars(range(min = 2, max = 10))]
    pub unhealthy_threshold: u32,
}

fn default_threshold() -> u32 {
    3
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum DatabaseEngine {
    Postgres,
    Mysql,
    Redis,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct DatabaseSpec {
    pub class: Param<Size>,
    /// Engine major version, e.g. `"16"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    #[serde(default = "default_backup_days")]
    pub backup_retention_days: Param<u32>,
    #[serde(default = "default_false_param")]
    pub high_availability: Param<bool>,
}

fn default_backup_days() -> Param<u32> {
    Param::Value(7)
}

fn default_false_param() -> Param<bool> {
    Param::Value(false)
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ObservabilitySpec {
    #[serde(default = "default_log_days")]
    pub log_retention_days: Param<u32>,
    #[serde(default = "yes")]
    pub metrics: bool,
    /// Fraction of requests traced, 0.0 – 1.0.
    #[serde(default = "default_sample")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub trace_sample_ratio: f64,
}

impl Default for ObservabilitySpec {
    fn default() -> Self {
        ObservabilitySpec {
            log_retention_days: default_log_days(),
            metrics: true,
            trace_sample_ratio: default_sample(),
        }
    }
}

fn default_log_days() -> Param<u32> {
    Param::Value(30)
}

fn default_sample() -> f64 {
    0.1
}

/// Security baseline applied at provisioning time. Everything is on unless a
/// blueprint turns it off explicitly (and policy may refuse that).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SecurityBaseline {
    #[serde(default = "yes")]
    pub encryption_at_rest: bool,
    #[serde(default = "yes")]
    pub flow_logs: bool,
    #[serde(default = "yes")]
    pub default_deny: bool,
    /// What workloads may do on the machine that runs them (local provider).
    #[serde(default, skip_serializing_if = "WorkloadSecurity::is_default")]
    pub workloads: WorkloadSecurity,
}

impl Default for SecurityBaseline {
    fn default() -> Self {
        SecurityBaseline {
            encryption_at_rest: true,
            flow_logs: true,
            default_deny: true,
            workloads: WorkloadSecurity::default(),
        }
    }
}

/// Exceptions to the workload sandbox, granted by the platform team only
/// (a Score file cannot ask for them).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct WorkloadSecurity {
    /// Containers whose image runs as root keep root (inside the container);
    /// otherwise they run as `nobody` (65534).
    #[serde(default)]
    pub run_as_root: bool,
    /// Host directories a Score volume's `source` may name (each with what is
    /// under it). None by default: volumes come from `volume` resources.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("items" = {"type": "string", "pattern": "^/"}))]
    pub host_volumes: Vec<String>,
}

impl WorkloadSecurity {
    pub fn is_default(&self) -> bool {
        *self == WorkloadSecurity::default()
    }

    /// Whether `path` (absolute, no `..`) is one of the allowed host directories or under one.
    pub fn allows_host_path(&self, path: &str) -> bool {
        use std::path::{Component, Path};
        let p = Path::new(path);
        if !p.is_absolute() || p.components().any(|c| matches!(c, Component::ParentDir)) {
            return false;
        }
        self.host_volumes.iter().any(|allowed| p.starts_with(Path::new(allowed)))
    }
}

fn yes() -> bool {
    true
}

impl BlueprintSpec {
    /// Every `${parameters.NAME}` reference in the components, with the JSON
    /// field path it sits at and the type the field expects.
    pub fn parameter_refs(&self) -> Vec<(String, &ParamRef, ParamType)> {
        let mut out: Vec<(String, &ParamRef, ParamType)> = Vec::new();
        fn push<'a>(
            out: &mut Vec<(String, &'a ParamRef, ParamType)>,
            path: String,
            r: Option<&'a ParamRef>,
            t: ParamType,
        ) {
            if let Some(r) = r {
                out.push((path, r, t));
            }
        }
        push(&mut out, "spec.compute.size".into(), self.compute.size.as_ref(), ParamType::Size);
        push(&mut out, "spec.compute.replicas".into(), self.compute.replicas.as_ref(), ParamType::Integer);
        if let Some(a) = &self.compute.autoscaling {
            push(&mut out, "spec.compute.autoscaling.minReplicas".into(), a.min_replicas.as_ref(), ParamType::Integer);
            push(&mut out, "spec.compute.autoscaling.maxReplicas".into(), a.max_replicas.as_ref(), ParamType::Integer);
        }
        for (engine, db) in &self.databases {
            let base = format!("spec.databases.{}", engine.as_str());
            push(&mut out, format!("{base}.class"), db.class.as_ref(), ParamType::Size);
            push(
                &mut out,
                format!("{base}.backupRetentionDays"),
                db.backup_retention_days.as_ref(),
                ParamType::Integer,
            );
            push(&mut out, format!("{base}.highAvailability"), db.high_availability.as_ref(), ParamType::Boolean);
        }
        push(
            &mut out,
            "spec.observability.logRetentionDays".into(),
            self.observability.log_retention_days.as_ref(),
            ParamType::Integer,
        );
        out
    }
}

impl<T> Param<T> {
    fn as_ref(&self) -> Option<&ParamRef> {
        match self {
            Param::Ref(r) => Some(r),
            Param::Value(_) => None,
        }
    }
}

impl DatabaseEngine {
    pub fn as_str(self) -> &'static str {
        match self {
            DatabaseEngine::Postgres => "postgres",
            DatabaseEngine::Mysql => "mysql",
            DatabaseEngine::Redis => "redis",
        }
    }
}
