//! Kubernetes manifests of a cluster environment: what paved commits to the
//! environment's GitOps repository for Argo CD to apply. Pure like the plan
//! translations: the same specs give the same bytes ([`Tree::to_files`]),
//! and nothing here reads a clock, a file or the network.
//!
//! The manifests depend on the specs and the deployments only, never on
//! values an apply produces: a Score variable that names a resource output
//! the plan cannot know (a database's host or password) is delivered through
//! the cloud's secret store — paved writes the resolved values there, an
//! `ExternalSecret` brings them into the namespace — and the Deployment
//! reads it by `secretKeyRef`. So no secret value is ever in a manifest or in
//! Git, and a manifest does not change when a password rotates.
//!
//! | paved / Score | Kubernetes | notes |
//! |---|---|---|
//! | environment | `Namespace` (labels: environment, blueprint, team; Pod Security `restricted`), `ResourceQuota`, `LimitRange`, `NetworkPolicy` `default-deny` + `allow-dns` | quota = what the rendered services need at full surge (replicas + 1 each), no `LoadBalancer`/`NodePort` services; container defaults from `compute.size` |
//! | service | `ServiceAccount` (no token mounted; the cloud identity of [`cloud`]), `Deployment`, `Service` (when `service.ports`), `PodDisruptionBudget` (replicas > 1) | image by digest: the service's current deployment (in the account's registry, [`cloud`]), else a Score image already pinned `@sha256:`; a service with neither is *pending* and not rendered |
//! | `containers.*.image`, `command`, `args` | `image` (`REGISTRY/REPOSITORY@sha256:…`), `command`, `args` | a resource output in `command`/`args` is refused: use a variable and `$(VAR)` |
//! | `containers.*.variables` | `env`: literal values inline; values with resource outputs or secrets by `secretKeyRef` into `SERVICE-env` | outputs the plan already knows (a service link's host and port) are written inline |
//! | `containers.*.files` | `ConfigMap` `SERVICE-files` (literal content) or the `SERVICE-env` Secret (content with outputs), mounted file by file (`subPath`) with its mode | `source` (a file on the applying machine) is refused: use `content` |
//! | `containers.*.volumes` | — | refused: a cluster volume needs a storage class the blueprint does not declare yet |
//! | `containers.*.resources` | `resources.requests` / `limits` | only requests → limits = requests; only limits → requests = limits; neither → the blueprint size's |
//! | `livenessProbe`, `readinessProbe` | same, `httpGet` or `exec` | no readiness → the liveness probe also gates readiness; no liveness → a warning |
//! | — | pod: non-root (uid 10001), `RuntimeDefault` seccomp; container: read-only root filesystem (an `emptyDir` at `/tmp`), all capabilities dropped, no privilege escalation | the restricted Pod Security profile |
//! | `compute.replicas` | `replicas`, zone spread (`topology.kubernetes.io/zone`, max skew 1) when > 1 | |
//! | deployment strategy | `recreate` → `Recreate`; `rolling`, `blue-green` → `RollingUpdate` (surge 1, none unavailable), soak → `minReadySeconds`, ready timeout → `progressDeadlineSeconds` | a blue-green switch needs Argo Rollouts; rendered as a rolling update whose old pods serve until the new ones are ready |
//! | `service` resource | `NetworkPolicy` of the target: ingress from the caller's pods on the target's ports; of the caller: egress to them | |
//! | `route`, `dns` resource | the cloud's route object ([`cloud`]) to the service's own target group; ingress from the load balancer's subnets | the load balancer's listener rule (host, path) forwards to that group: any number of routed services |
//! | `postgres`, `mysql`, `amqp`, `redis` | egress to the data subnets on 5432, 3306, 5671 (AMQPS), 6379 | |
//! | `s3`, `queue` | egress on 443 outside the VPC (the cloud APIs) | |
//! | account `spec.gitops` | Argo CD `Application` `paved-ENV` in `argocd`: the environment's folder, automated sync with prune and self-heal, destination cluster `paved-ENV` (a preview: its host's cluster, namespace `PREVIEW`) | without `gitops`, no Application (a warning) |
//!
//! Files of the tree: `apps/ENV.yaml` (the Application, for an app-of-apps
//! root) and `envs/ENV/namespace.yaml`, `envs/ENV/SERVICE.yaml`.

mod cloud;
pub mod quantity;
mod workload;

use cloud::Cloud;
use paved_model::blueprint::{NetworkTier, Runtime, Size};
use paved_model::{Provider, Workload};
use paved_plan::{PlanError, PlanInput, resolve};
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// The Kubernetes versions the manifests are written for: the one the AWS
/// translation plans for EKS, and the newest the tests validate against.
pub const KUBERNETES_VERSIONS: [&str; 2] = [paved_plan::aws::EKS_VERSION, "1.37"];

/// Why an environment cannot be rendered.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RenderError {
    #[error("{0}")]
    Plan(PlanError),
    #[error(
        "environment `{environment}` is on the local provider, which runs its services itself; Kubernetes manifests are rendered for cluster environments of a cloud account"
    )]
    LocalProvider { environment: String },
    #[error("the {provider} provider has no Kubernetes rendering yet; `aws` has")]
    ProviderNotRendered { provider: &'static str },
    #[error(
        "environment `{environment}`: blueprint `{blueprint}` says `compute.runtime: {runtime}`; Kubernetes manifests are rendered for `cluster`"
    )]
    NotCluster { environment: String, blueprint: String, runtime: &'static str },
    #[error("service `{service}`: {field}: {problem}; {hint}")]
    Inexpressible { service: String, field: String, problem: String, hint: String },
}

/// The rendered tree of one environment.
#[derive(Debug, Clone, PartialEq)]
pub struct Tree {
    pub environment: String,
    /// Path in the repository → its objects, in order.
    pub files: BTreeMap<String, Vec<Value>>,
    /// Service → key of its `SERVICE-env` Secret → the value with its
    /// references (`${ref:NODE.OUTPUT}`, `${secret:SERVICE/NAME}`, `$${` for
    /// a literal `${`). paved resolves these and writes them to the cloud's
    /// secret store when it applies the environment (pending services'
    /// too); they never enter the tree.
    pub secrets: BTreeMap<String, BTreeMap<String, String>>,
    /// Services not rendered, and why (no digest to run yet).
    pub pending: BTreeMap<String, String>,
    pub warnings: Vec<String>,
}

impl Tree {
    /// Each file's YAML text.
    pub fn to_files(&self) -> BTreeMap<String, String> {
        self.files.iter().map(|(path, docs)| (path.clone(), paved_spec::render::to_yaml_string(docs))).collect()
    }

    /// Every object as one YAML stream, files in path order.
    pub fn to_stream(&self) -> String {
        let docs: Vec<Value> = self.files.values().flatten().cloned().collect();
        paved_spec::render::to_yaml_string(&docs)
    }

    /// Every object, files in path order.
    pub fn objects(&self) -> impl Iterator<Item = &Value> {
        self.files.values().flatten()
    }
}

/// What the rendering of one environment works from (built once, read by
/// every service).
pub(crate) struct Scope<'a> {
    pub env: &'a str,
    pub cloud: Cloud,
    pub graph: &'a paved_plan::ResourceGraph,
    pub services: Vec<&'a Workload>,
    /// Service → the services that call it (their `service` resources).
    pub callers: BTreeMap<String, std::collections::BTreeSet<String>>,
    pub releases: &'a BTreeMap<String, paved_plan::Release>,
    pub replicas: u32,
    pub size: Size,
    pub rollout: paved_model::RolloutSpec,
    /// Subnet blocks the load balancer sends from.
    pub lb_blocks: Vec<String>,
    /// Subnet blocks the databases live in.
    pub data_blocks: Vec<String>,
    pub vpc_block: String,
    pub owner: &'a str,
}

/// Default container requests and limits of a blueprint size (CPU
/// millicores, memory bytes).
pub(crate) fn size_defaults(size: Size) -> (u64, u64) {
    match size {
        Size::Small => (250, 256 << 20),
        Size::Medium => (500, 512 << 20),
        Size::Large => (1000, 1 << 30),
        Size::Xlarge => (2000, 2 << 30),
    }
}

fn tier_blocks(graph: &paved_plan::ResourceGraph, tier: &str) -> Vec<String> {
    graph.identity.iter().filter(|(k, _)| k.starts_with(&format!("subnet-{tier}-"))).map(|(_, v)| v.clone()).collect()
}

fn tier_name(t: NetworkTier) -> &'static str {
    match t {
        NetworkTier::Public => "public",
        NetworkTier::Private => "private",
        NetworkTier::Isolated => "isolated",
    }
}

/// Renders an environment's manifests. All problems are returned at once.
pub fn render(input: &PlanInput<'_>) -> Result<Tree, Vec<RenderError>> {
    let env = input.environment.metadata.name.as_str();
    let bp = &input.blueprint.spec;
    match input.account.spec.provider {
        Provider::Aws => {}
        Provider::Local => return Err(vec![RenderError::LocalProvider { environment: env.into() }]),
        other => return Err(vec![RenderError::ProviderNotRendered { provider: other.as_str() }]),
    }
    if bp.compute.runtime != Runtime::Cluster {
        let runtime = match bp.compute.runtime {
            Runtime::Cluster => "cluster",
            Runtime::Container => "container",
            Runtime::Process => "process",
        };
        return Err(vec![RenderError::NotCluster {
            environment: env.into(),
            blueprint: input.blueprint.metadata.name.clone(),
            runtime,
        }]);
    }
    let plan_errors = |e: Vec<PlanError>| e.into_iter().map(RenderError::Plan).collect::<Vec<_>>();
    let translation = paved_plan::aws::translate_with_bindings(input).map_err(plan_errors)?;
    let params = resolve::parameters(input.environment, input.blueprint).map_err(plan_errors)?;
    let replicas = resolve::param("spec.compute.replicas", &bp.compute.replicas, &params);
    let size = resolve::param("spec.compute.size", &bp.compute.size, &params);
    let (replicas, size): (u32, Size) = match (replicas, size) {
        (Ok(r), Ok(s)) => (r, s),
        (r, s) => return Err(r.err().into_iter().chain(s.err()).map(RenderError::Plan).collect()),
    };
    let graph = &translation.graph;
    let lb_tier = if bp.ingress.as_ref().is_some_and(|i| i.public) { "public" } else { "private" };
    let data_tier = if bp.network.tiers.contains(&NetworkTier::Isolated) {
        tier_name(NetworkTier::Isolated)
    } else {
        tier_name(NetworkTier::Private)
    };
    let mut services = input.services.clone();
    services.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    let mut callers: BTreeMap<String, std::collections::BTreeSet<String>> = BTreeMap::new();
    for w in &services {
        for target in workload::calls(w) {
            callers.entry(target).or_default().insert(w.metadata.name.clone());
        }
    }
    let scope = Scope {
        env,
        cloud: Cloud {
            provider: input.account.spec.provider,
            account_id: input.account.spec.account_id.clone().unwrap_or_default(),
            region: input.environment.spec.region.clone(),
        },
        graph,
        services,
        callers,
        releases: &input.releases,
        replicas,
        size,
        rollout: bp.rollout.clone(),
        lb_blocks: tier_blocks(graph, lb_tier),
        data_blocks: tier_blocks(graph, data_tier),
        vpc_block: graph.identity.get("cidr").cloned().unwrap_or_default(),
        owner: &input.environment.spec.owner,
    };

    let mut tree = Tree {
        environment: env.into(),
        files: BTreeMap::new(),
        secrets: BTreeMap::new(),
        pending: BTreeMap::new(),
        warnings: Vec::new(),
    };
    let mut errors = Vec::new();
    let mut need = workload::PodBudget::default();
    for w in &scope.services {
        let name = w.metadata.name.as_str();
        let bindings = translation.bindings.get(name).cloned().unwrap_or_default();
        let Some(image) = workload::image(&scope, w) else {
            // Its secret store entry exists before its first deploy (the
            // values do not depend on the image), so a deploy needs no apply.
            if let Ok(out) = workload::render(&scope, w, "pending", &bindings)
                && !out.secrets.is_empty()
            {
                tree.secrets.insert(name.into(), out.secrets);
            }
            tree.pending.insert(
                name.into(),
                format!(
                    "no deployment in `{env}` and its Score image is not pinned by digest: `paved deploy {name} --artifact sha256:… -e {env}`"
                ),
            );
            continue;
        };
        match workload::render(&scope, w, &image, &bindings) {
            Ok(out) => {
                need.add(&out.budget);
                if !out.secrets.is_empty() {
                    tree.secrets.insert(name.into(), out.secrets);
                }
                tree.warnings.extend(out.warnings);
                tree.files.insert(format!("envs/{env}/{name}.yaml"), out.objects);
            }
            Err(e) => errors.extend(e),
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    tree.files.insert(format!("envs/{env}/namespace.yaml"), namespace(&scope, input, &need));
    match &input.account.spec.gitops {
        Some(gitops) => {
            let cluster = graph.identity.get("cluster").cloned().unwrap_or_else(|| format!("paved-{env}"));
            tree.files.insert(format!("apps/{env}.yaml"), vec![application(env, &cluster, gitops)]);
        }
        None => tree.warnings.push(format!(
            "account `{}` has no `spec.gitops`: no Argo CD Application is rendered for `{env}`",
            input.account.metadata.name
        )),
    }
    Ok(tree)
}

/// The cloud secret a service's values are kept in (`paved/ENV/SERVICE`),
/// which its `ExternalSecret` reads.
pub fn secret_name(env: &str, service: &str) -> String {
    Cloud::secret_name(env, service)
}

/// The labels every object of the environment carries.
pub(crate) fn base_labels(env: &str) -> serde_json::Map<String, Value> {
    let mut m = serde_json::Map::new();
    m.insert("app.kubernetes.io/managed-by".into(), json!("paved"));
    m.insert("paved.dev/environment".into(), json!(env));
    m
}

fn namespace(scope: &Scope<'_>, input: &PlanInput<'_>, need: &workload::PodBudget) -> Vec<Value> {
    let env = scope.env;
    let mut labels = base_labels(env);
    labels.insert("paved.dev/blueprint".into(), json!(input.blueprint.metadata.name));
    labels.insert("paved.dev/blueprint-version".into(), json!(input.blueprint.spec.version));
    labels.insert("paved.dev/team".into(), json!(scope.owner));
    labels.insert("pod-security.kubernetes.io/enforce".into(), json!("restricted"));
    let object_labels = Value::Object(base_labels(env));
    let (cpu, memory) = size_defaults(scope.size);
    vec![
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": env, "labels": labels}}),
        json!({
            "apiVersion": "v1",
            "kind": "ResourceQuota",
            "metadata": {"name": "paved", "namespace": env, "labels": object_labels},
            "spec": {"hard": {
                "pods": need.pods.to_string(),
                "requests.cpu": quantity::format_cpu(need.requests.0),
                "requests.memory": quantity::format_memory(need.requests.1),
                "limits.cpu": quantity::format_cpu(need.limits.0),
                "limits.memory": quantity::format_memory(need.limits.1),
                "services.loadbalancers": "0",
                "services.nodeports": "0",
            }},
        }),
        json!({
            "apiVersion": "v1",
            "kind": "LimitRange",
            "metadata": {"name": "paved", "namespace": env, "labels": object_labels},
            "spec": {"limits": [{
                "type": "Container",
                "default": {"cpu": quantity::format_cpu(cpu), "memory": quantity::format_memory(memory)},
                "defaultRequest": {"cpu": quantity::format_cpu(cpu), "memory": quantity::format_memory(memory)},
            }]},
        }),
        json!({
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": {"name": "default-deny", "namespace": env, "labels": object_labels},
            "spec": {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]},
        }),
        json!({
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": {"name": "allow-dns", "namespace": env, "labels": object_labels},
            "spec": {
                "podSelector": {},
                "policyTypes": ["Egress"],
                "egress": [{
                    "to": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
                            "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}}],
                    "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}],
                }],
            },
        }),
    ]
}

/// The Argo CD notifications paved listens to, by their trigger names.
pub const TRIGGERS: [&str; 3] = ["on-deployed", "on-health-degraded", "on-sync-failed"];

/// When each trigger fires (Argo CD's expression language, on the Application).
fn trigger_condition(trigger: &str) -> &'static str {
    match trigger {
        "on-deployed" => {
            "app.status.operationState != nil and app.status.operationState.phase in ['Succeeded'] and app.status.health.status == 'Healthy'"
        }
        "on-health-degraded" => "app.status.health.status == 'Degraded'",
        _ => "app.status.operationState != nil and app.status.operationState.phase in ['Error', 'Failed']",
    }
}

/// The keys of `argocd-notifications-cm` that send an environment's
/// Application health to paved at `paved_url`: a webhook service whose
/// `X-Paved-Token` header comes from `argocd-notifications-secret` (key
/// `paved-argocd-ENV`, the environment's `PAVED_ARGOCD_WEBHOOK`), a template
/// per trigger rendering the body `/api/v1/webhooks/argocd` reads, and the
/// triggers (each once per revision). One ConfigMap serves every
/// environment of an Argo CD, so these are keys to merge into it (the Helm
/// chart's `notifications.notifiers`, `templates` and `triggers`), not an
/// object of the environment's tree.
pub fn argocd_notifications(env: &str, paved_url: &str) -> Value {
    let service = format!("paved-{env}");
    let mut data = serde_json::Map::new();
    data.insert(
        format!("service.webhook.{service}"),
        json!(format!(
            "url: {}/api/v1/webhooks/argocd\nheaders:\n  - name: X-Paved-Token\n    value: $paved-argocd-{env}\n  - name: Content-Type\n    value: application/json\n",
            paved_url.trim_end_matches('/')
        )),
    );
    for trigger in TRIGGERS {
        let name = format!("{service}-{trigger}");
        let body = format!(
            "{{\"environment\": \"{env}\", \"trigger\": \"{trigger}\", \"revision\": \"{{{{.app.status.sync.revision}}}}\", \"health\": \"{{{{.app.status.health.status}}}}\", \"sync\": \"{{{{.app.status.sync.status}}}}\"}}"
        );
        data.insert(
            format!("template.{name}"),
            json!(format!("webhook:\n  {service}:\n    method: POST\n    body: |\n      {body}\n")),
        );
        data.insert(
            format!("trigger.{name}"),
            json!(format!(
                "- description: paved {trigger} of {env}\n  oncePer: app.status.sync.revision\n  send: [{name}]\n  when: {}\n",
                trigger_condition(trigger)
            )),
        );
    }
    json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "argocd-notifications-cm", "namespace": "argocd", "labels": base_labels(env)},
        "data": data,
    })
}

/// The Argo CD Application of an environment: its folder, synced into its
/// namespace on `cluster` (a preview's is its host's).
fn application(env: &str, cluster: &str, gitops: &paved_model::account::GitOps) -> Value {
    let path = match gitops.path.trim_matches('/') {
        "" => format!("envs/{env}"),
        prefix => format!("{prefix}/envs/{env}"),
    };
    json!({
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Application",
        "metadata": {
            "name": format!("paved-{env}"),
            "namespace": "argocd",
            "labels": base_labels(env),
            // Health comes back to paved through these ([`argocd_notifications`]).
            // (The list form: `subscribe.TRIGGER.SERVICE` keys outgrow the 63 characters of an annotation name.)
            "annotations": {"notifications.argoproj.io/subscriptions": format!(
                "- trigger: [{}]\n  destinations:\n    - service: paved-{env}\n      recipients: [paved]\n",
                TRIGGERS.iter().map(|t| format!("paved-{env}-{t}")).collect::<Vec<_>>().join(", ")
            )},
            "finalizers": ["resources-finalizer.argocd.argoproj.io"],
        },
        "spec": {
            "project": "default",
            "source": {"repoURL": gitops.repository, "targetRevision": gitops.branch, "path": path},
            "destination": {"name": cluster, "namespace": env},
            "syncPolicy": {
                "automated": {"prune": true, "selfHeal": true},
                "syncOptions": ["FailOnSharedResource=true"],
                "retry": {"limit": 5, "backoff": {"duration": "10s", "factor": 2, "maxDuration": "3m"}},
            },
        },
    })
}

#[cfg(test)]
mod tests;
