//! One service's objects (the per-service rows of the crate's table).

use crate::quantity::{cpu_millis, format_cpu, format_memory, memory_bytes};
use crate::{RenderError, Scope, base_labels, size_defaults};
use paved_model::Strategy;
use paved_model::score::{Container, ContainerFile, Files, Probe, Workload};
use paved_plan::resolve::{self, ResourceBinding};
use serde_json::{Map, Value, json};
use std::collections::{BTreeMap, BTreeSet};

/// The uid and gid pods run as: not root, and above the range a host's own
/// users take (checkov CKV_K8S_40).
const POD_USER: u64 = 10001;

/// CPU millicores and memory bytes.
type Amounts = (u64, u64);

/// CPU millicores and memory bytes, requested and limited, and pods: what
/// the namespace quota must admit.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct PodBudget {
    pub pods: u64,
    pub requests: Amounts,
    pub limits: Amounts,
}

impl PodBudget {
    pub fn add(&mut self, other: &PodBudget) {
        self.pods += other.pods;
        self.requests = (self.requests.0 + other.requests.0, self.requests.1 + other.requests.1);
        self.limits = (self.limits.0 + other.limits.0, self.limits.1 + other.limits.1);
    }
}

pub(crate) struct Rendered {
    pub objects: Vec<Value>,
    pub secrets: BTreeMap<String, String>,
    pub budget: PodBudget,
    pub warnings: Vec<String>,
}

/// The image a service runs here, by digest: its current deployment's
/// artifact in the account's registry ([`Cloud::image_repository`], where
/// paved puts it before committing), else the Score image when it is
/// already pinned. `None`: nothing to run yet.
///
/// [`Cloud::image_repository`]: crate::cloud::Cloud::image_repository
pub(crate) fn image(scope: &Scope<'_>, w: &Workload) -> Option<String> {
    let name = w.metadata.name.as_str();
    let score_image = w.containers.get(name).or_else(|| w.containers.values().next())?.image.as_str();
    match scope.releases.get(name) {
        Some(r) => Some(format!("{}@{}", scope.cloud.image_repository(name), r.artifact)),
        None if score_image.contains("@sha256:") => Some(score_image.to_string()),
        None => None,
    }
}

/// A rewritten value, with the outputs the plan already knows written in.
enum Resolved {
    /// No reference left: the text as Kubernetes takes it.
    Literal(String),
    /// References remain: the template paved resolves at delivery.
    Template(String),
}

/// Substitutes `${ref:NODE.OUTPUT}` where the node's planned properties hold
/// the output as a plain value; keeps every other reference.
fn resolve_known(graph: &paved_plan::ResourceGraph, text: &str) -> Resolved {
    let mut out = String::new();
    let mut rest = text;
    let mut refs = false;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        if let Some(after) = tail.strip_prefix("$${") {
            out.push_str("$${");
            rest = after;
            continue;
        }
        if tail.starts_with("${") {
            // The rewrite closes every reference it writes; an unclosed one stays text.
            let Some(end) = tail.find('}') else {
                out.push_str(tail);
                rest = "";
                break;
            };
            let token = &tail[2..end];
            let known = token
                .strip_prefix("ref:")
                .and_then(|r| r.rsplit_once('.'))
                .and_then(|(node, output)| graph.nodes.get(node)?.properties.get(output).cloned())
                .and_then(|v| match v {
                    Value::String(s) if !s.contains("${") => Some(s),
                    Value::Number(n) => Some(n.to_string()),
                    _ => None,
                });
            match known {
                Some(v) => out.push_str(&v),
                None => {
                    refs = true;
                    out.push_str(&tail[..=end]);
                }
            }
            rest = &tail[end + 1..];
            continue;
        }
        out.push('$');
        rest = &tail[1..];
    }
    out.push_str(rest);
    if refs {
        Resolved::Template(out)
    } else {
        // Kubernetes expands `$(VAR)` in env values, command and args: a literal one is written `$$(`.
        Resolved::Literal(out.replace("$${", "${").replace("$(", "$$("))
    }
}

/// [`resolve_known`] for the tests: the text it keeps, whether literal or template.
#[cfg(test)]
pub(crate) fn resolve_known_for_tests(graph: &paved_plan::ResourceGraph, text: &str) -> String {
    match resolve_known(graph, text) {
        Resolved::Literal(s) | Resolved::Template(s) => s,
    }
}

fn inexpressible(service: &str, field: String, problem: &str, hint: &str) -> RenderError {
    RenderError::Inexpressible { service: service.into(), field, problem: problem.into(), hint: hint.into() }
}

/// A Kubernetes port name (≤ 15 characters, lowercase alphanumerics and
/// `-`, at least one letter) from a Score port name, else `pPORT`.
fn port_name(name: &str, port: u16) -> String {
    let ok = !name.is_empty()
        && name.len() <= 15
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && name.chars().any(|c| c.is_ascii_lowercase())
        && !name.starts_with('-')
        && !name.ends_with('-')
        && !name.contains("--");
    if ok { name.to_string() } else { format!("p{port}") }
}

fn probe(p: &Probe) -> Option<Value> {
    if let Some(h) = &p.http_get {
        let mut get = Map::new();
        get.insert("path".into(), json!(h.path));
        get.insert("port".into(), json!(h.port));
        if let Some(host) = &h.host {
            get.insert("host".into(), json!(host));
        }
        if let Some(scheme) = h.scheme {
            get.insert("scheme".into(), serde_json::to_value(scheme).unwrap_or(Value::Null));
        }
        if let Some(headers) = &h.http_headers {
            get.insert(
                "httpHeaders".into(),
                headers.iter().map(|x| json!({"name": x.name, "value": x.value})).collect(),
            );
        }
        return Some(json!({"httpGet": get}));
    }
    p.exec.as_ref().map(|e| json!({"exec": {"command": e.command}}))
}

fn files_of(c: &Container) -> Vec<(String, &ContainerFile)> {
    let mut out: Vec<(String, &ContainerFile)> = match &c.files {
        Some(Files::Map(m)) => m.iter().map(|(k, f)| (f.target.clone().unwrap_or_else(|| k.clone()), f)).collect(),
        Some(Files::List(l)) => l.iter().map(|f| (f.target.clone().unwrap_or_default(), f)).collect(),
        None => Vec::new(),
    };
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// Requests and limits of a container: Score's, completed as the table says.
fn container_resources(
    service: &str,
    cname: &str,
    c: &Container,
    default: Amounts,
) -> Result<(Amounts, Amounts), RenderError> {
    let field = |which: &str, what: &str| format!("containers.{cname}.resources.{which}.{what}");
    let read = |which: &str,
                v: Option<&paved_model::score::ResourceLimits>|
     -> Result<(Option<u64>, Option<u64>), RenderError> {
        let Some(v) = v else { return Ok((None, None)) };
        let cpu = match &v.cpu {
            Some(t) => Some(cpu_millis(t).ok_or_else(|| {
                inexpressible(
                    service,
                    field(which, "cpu"),
                    &format!("`{t}` is not a CPU quantity"),
                    "write cores (`1`, `0.5`) or millicores (`250m`)",
                )
            })?),
            None => None,
        };
        let memory = match &v.memory {
            Some(t) => Some(memory_bytes(t).ok_or_else(|| {
                inexpressible(
                    service,
                    field(which, "memory"),
                    &format!("`{t}` is not a memory quantity"),
                    "write bytes with a suffix (`128Mi`, `1Gi`)",
                )
            })?),
            None => None,
        };
        Ok((cpu, memory))
    };
    let r = c.resources.as_ref();
    let (req_cpu, req_mem) = read("requests", r.and_then(|r| r.requests.as_ref()))?;
    let (lim_cpu, lim_mem) = read("limits", r.and_then(|r| r.limits.as_ref()))?;
    let pick = |req: Option<u64>, lim: Option<u64>, d: u64| match (req, lim) {
        (Some(q), Some(l)) => (q, l),
        (Some(q), None) => (q, q),
        (None, Some(l)) => (l, l),
        (None, None) => (d, d),
    };
    let (cpu_q, cpu_l) = pick(req_cpu, lim_cpu, default.0);
    let (mem_q, mem_l) = pick(req_mem, lim_mem, default.1);
    for (what, q, l) in [("cpu", cpu_q, cpu_l), ("memory", mem_q, mem_l)] {
        if q > l {
            return Err(inexpressible(
                service,
                field("requests", what),
                "the request is above the limit",
                "lower the request or raise the limit",
            ));
        }
    }
    Ok(((cpu_q, mem_q), (cpu_l, mem_l)))
}

fn selector(service: &str) -> Value {
    json!({"app.kubernetes.io/name": service})
}

/// Renders one service's objects.
pub(crate) fn render(
    scope: &Scope<'_>,
    w: &Workload,
    image: &str,
    bindings: &BTreeMap<String, ResourceBinding>,
) -> Result<Rendered, Vec<RenderError>> {
    let env = scope.env;
    let svc = w.metadata.name.as_str();
    let mut errors = Vec::new();
    let mut warnings = Vec::new();
    let mut secrets: BTreeMap<String, String> = BTreeMap::new();
    let mut labels = base_labels(env);
    labels.insert("app.kubernetes.io/name".into(), json!(svc));
    if let Some(team) = w.annotation(paved_model::score::ANNOTATION_OWNER) {
        labels.insert("paved.dev/team".into(), json!(team));
    }
    let labels = Value::Object(labels);
    let meta = |name: &str| json!({"name": name, "namespace": env, "labels": labels});
    let env_secret = format!("{svc}-env");
    let files_map = format!("{svc}-files");
    let main = if w.containers.contains_key(svc) {
        svc.to_string()
    } else {
        w.containers.keys().next().cloned().unwrap_or_default()
    };
    let ports: Vec<(String, u16, u16, Value)> = w
        .service
        .as_ref()
        .and_then(|s| s.ports.as_ref())
        .map(|p| {
            p.iter()
                .map(|(n, p)| {
                    let target = p.target_port.unwrap_or(p.port);
                    let protocol = serde_json::to_value(p.protocol.unwrap_or(paved_model::score::Protocol::Tcp))
                        .unwrap_or(json!("TCP"));
                    (port_name(n, target), p.port, target, protocol)
                })
                .collect()
        })
        .unwrap_or_default();

    let mut config_data = Map::new();
    let mut binary_data = Map::new();
    // Items of the `files` (ConfigMap) and `env` (Secret) volumes: each file with its mode.
    let mut config_items = Vec::new();
    let mut secret_items = Vec::new();
    let mut containers = Vec::new();
    let mut budget = PodBudget::default();
    let default = size_defaults(scope.size);
    for (cname, c) in &w.containers {
        let field = |f: &str| format!("containers.{cname}.{f}");
        if c.volumes.as_ref().is_some_and(|v| match v {
            paved_model::score::Volumes::Map(m) => !m.is_empty(),
            paved_model::score::Volumes::List(l) => !l.is_empty(),
        }) {
            errors.push(inexpressible(
                svc,
                field("volumes"),
                "volumes cannot be rendered for a cluster yet",
                "keep state in a database or bucket resource, or run the service on the local provider",
            ));
        }
        if c.before.as_ref().is_some_and(|b| !b.is_empty()) {
            errors.push(inexpressible(
                svc,
                field("before"),
                "start ordering between containers cannot be rendered for a cluster yet",
                "make the container wait for its dependency itself",
            ));
        }
        let mut args_of = |what: &str, list: &Option<Vec<String>>| -> Option<Vec<String>> {
            let list = list.as_ref()?;
            let mut out = Vec::new();
            for (i, v) in list.iter().enumerate() {
                let f = field(&format!("{what}.{i}"));
                match resolve::rewrite(w, &f, v, bindings).map(|t| resolve_known(scope.graph, &t)) {
                    Ok(Resolved::Literal(s)) => out.push(s),
                    Ok(Resolved::Template(_)) => errors.push(inexpressible(
                        svc,
                        f,
                        "a resource output or secret in a command line",
                        "set a variable to it and write `$(VARIABLE)` in the argument",
                    )),
                    Err(e) => errors.push(RenderError::Plan(e)),
                }
            }
            Some(out)
        };
        let command = args_of("command", &c.command);
        let args = args_of("args", &c.args);
        let mut env_vars = Vec::new();
        for (k, v) in c.variables.iter().flatten() {
            let f = field(&format!("variables.{k}"));
            match resolve::rewrite(w, &f, v, bindings).map(|t| resolve_known(scope.graph, &t)) {
                Ok(Resolved::Literal(s)) => env_vars.push(json!({"name": k, "value": s})),
                Ok(Resolved::Template(t)) => {
                    let key = if w.containers.len() == 1 { k.clone() } else { format!("{cname}.{k}") };
                    secrets.insert(key.clone(), t);
                    env_vars.push(json!({"name": k, "valueFrom": {"secretKeyRef": {"name": env_secret, "key": key}}}));
                }
                Err(e) => errors.push(RenderError::Plan(e)),
            }
        }
        let mut mounts = vec![json!({"name": "tmp", "mountPath": "/tmp"})];
        for (i, (target, f)) in files_of(c).into_iter().enumerate() {
            let ffield = field(&format!("files.{target}"));
            let key = format!("file.{cname}.{i}");
            let mode = match f.mode.as_deref().map(|m| u32::from_str_radix(m, 8)) {
                None => None,
                Some(Ok(m)) if m <= 0o777 => Some(m),
                Some(_) => {
                    errors.push(inexpressible(
                        svc,
                        ffield.clone(),
                        "`mode` is not an octal file mode",
                        "write it like `0644`",
                    ));
                    None
                }
            };
            let volume = if f.source.is_some() {
                errors.push(inexpressible(
                    svc,
                    ffield,
                    "`source` names a file on the machine that applies, which a cluster cannot read",
                    "put the file's text in `content`",
                ));
                continue;
            } else if let Some(b) = &f.binary_content {
                binary_data.insert(key.clone(), json!(b));
                "files"
            } else {
                let content = f.content.clone().unwrap_or_default();
                let resolved = if f.no_expand.unwrap_or(false) {
                    Resolved::Literal(content)
                } else {
                    match resolve::rewrite(w, &ffield, &content, bindings) {
                        // File content is not expanded by Kubernetes: only the `$${` escape is undone.
                        Ok(t) => match resolve_known(scope.graph, &t) {
                            Resolved::Literal(s) => Resolved::Literal(s.replace("$$(", "$(")),
                            template => template,
                        },
                        Err(e) => {
                            errors.push(RenderError::Plan(e));
                            continue;
                        }
                    }
                };
                match resolved {
                    Resolved::Literal(s) => {
                        config_data.insert(key.clone(), json!(s));
                        "files"
                    }
                    Resolved::Template(t) => {
                        secrets.insert(key.clone(), t);
                        "env"
                    }
                }
            };
            let mut item = json!({"key": key, "path": key});
            if let Some(m) = mode {
                item["mode"] = json!(m);
            }
            if volume == "files" {
                config_items.push(item)
            } else {
                secret_items.push(item)
            }
            mounts.push(json!({"name": volume, "mountPath": target, "subPath": key, "readOnly": true}));
        }
        let ((cpu_q, mem_q), (cpu_l, mem_l)) = match container_resources(svc, cname, c, default) {
            Ok(r) => r,
            Err(e) => {
                errors.push(e);
                continue;
            }
        };
        budget.requests = (budget.requests.0 + cpu_q, budget.requests.1 + mem_q);
        budget.limits = (budget.limits.0 + cpu_l, budget.limits.1 + mem_l);
        let mut container = Map::new();
        container.insert("name".into(), json!(cname));
        container.insert("image".into(), json!(if *cname == main { image.to_string() } else { c.image.clone() }));
        container.insert("imagePullPolicy".into(), json!("Always"));
        if let Some(cmd) = command {
            container.insert("command".into(), json!(cmd));
        }
        if let Some(a) = args {
            container.insert("args".into(), json!(a));
        }
        if *cname == main && !ports.is_empty() {
            container.insert(
                "ports".into(),
                ports
                    .iter()
                    .map(|(n, _, t, proto)| json!({"name": n, "containerPort": t, "protocol": proto}))
                    .collect(),
            );
        }
        if !env_vars.is_empty() {
            container.insert("env".into(), Value::Array(env_vars));
        }
        container.insert(
            "resources".into(),
            json!({"requests": {"cpu": format_cpu(cpu_q), "memory": format_memory(mem_q)},
                   "limits": {"cpu": format_cpu(cpu_l), "memory": format_memory(mem_l)}}),
        );
        let liveness = c.liveness_probe.as_ref().and_then(probe);
        let readiness = c.readiness_probe.as_ref().and_then(probe).or_else(|| liveness.clone());
        if liveness.is_none() {
            warnings.push(format!(
                "service `{svc}`: container `{cname}` declares no livenessProbe; Kubernetes restarts it only when it exits"
            ));
        }
        if let Some(p) = liveness {
            container.insert("livenessProbe".into(), p);
        }
        if let Some(p) = readiness {
            container.insert("readinessProbe".into(), p);
        }
        container.insert(
            "securityContext".into(),
            json!({
                "runAsNonRoot": true,
                "allowPrivilegeEscalation": false,
                "privileged": false,
                "readOnlyRootFilesystem": true,
                "capabilities": {"drop": ["ALL"]},
            }),
        );
        container.insert("volumeMounts".into(), Value::Array(mounts));
        containers.push(Value::Object(container));
    }
    if !errors.is_empty() {
        return Err(errors);
    }

    let release = scope.releases.get(svc);
    let strategy = release.map_or(scope.rollout.strategy, |r| r.strategy);
    let soak_s = release.map_or_else(|| scope.rollout.soak.parse().map_or(0, |d| d.as_secs()), |r| r.soak_ms / 1000);
    let ready_s = release.map_or_else(
        || scope.rollout.ready_timeout.parse().map_or(600, |d| d.as_secs()),
        |r| r.ready_timeout_ms / 1000,
    );
    let replicas = u64::from(scope.replicas);
    let surge = if strategy == Strategy::Recreate { 0 } else { 1 };
    budget.pods = replicas + surge;
    budget.requests = (budget.requests.0 * budget.pods, budget.requests.1 * budget.pods);
    budget.limits = (budget.limits.0 * budget.pods, budget.limits.1 * budget.pods);

    let mut volumes = vec![json!({"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}})];
    if !config_items.is_empty() {
        volumes.push(
            json!({"name": "files", "configMap": {"name": files_map, "defaultMode": 0o444, "items": config_items}}),
        );
    }
    if !secret_items.is_empty() {
        volumes.push(
            json!({"name": "env", "secret": {"secretName": env_secret, "defaultMode": 0o440, "items": secret_items}}),
        );
    }
    let mut pod_spec = Map::new();
    pod_spec.insert("serviceAccountName".into(), json!(svc));
    pod_spec.insert("automountServiceAccountToken".into(), json!(false));
    pod_spec.insert(
        "securityContext".into(),
        json!({"runAsNonRoot": true, "runAsUser": POD_USER, "runAsGroup": POD_USER, "fsGroup": POD_USER,
               "seccompProfile": {"type": "RuntimeDefault"}}),
    );
    if scope.replicas > 1 {
        pod_spec.insert(
            "topologySpreadConstraints".into(),
            json!([{"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone", "whenUnsatisfiable": "DoNotSchedule",
                    "labelSelector": {"matchLabels": selector(svc)}}]),
        );
    }
    pod_spec.insert("containers".into(), Value::Array(containers));
    pod_spec.insert("volumes".into(), Value::Array(volumes));
    let strategy_value = match strategy {
        Strategy::Recreate => json!({"type": "Recreate"}),
        Strategy::Rolling | Strategy::BlueGreen => {
            json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}})
        }
    };

    let mut objects = vec![json!({
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": {"name": svc, "namespace": env, "labels": labels, "annotations": scope.cloud.service_account_annotations(env, svc)},
        "automountServiceAccountToken": false,
    })];
    if !secrets.is_empty() {
        objects.push(json!({
            "apiVersion": "external-secrets.io/v1",
            "kind": "SecretStore",
            "metadata": meta(svc),
            "spec": {"provider": scope.cloud.secret_store_provider(svc)},
        }));
        objects.push(json!({
            "apiVersion": "external-secrets.io/v1",
            "kind": "ExternalSecret",
            "metadata": meta(&env_secret),
            "spec": {
                "refreshInterval": "1h",
                "secretStoreRef": {"kind": "SecretStore", "name": svc},
                "target": {"name": env_secret, "creationPolicy": "Owner", "deletionPolicy": "Delete"},
                "dataFrom": [{"extract": {"key": crate::cloud::Cloud::secret_name(env, svc)}}],
            },
        }));
    }
    if !config_data.is_empty() || !binary_data.is_empty() {
        let mut cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta(&files_map)});
        if !config_data.is_empty() {
            cm["data"] = Value::Object(config_data);
        }
        if !binary_data.is_empty() {
            cm["binaryData"] = Value::Object(binary_data);
        }
        objects.push(cm);
    }
    objects.push(json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": meta(svc),
        "spec": {
            "replicas": scope.replicas,
            "revisionHistoryLimit": 5,
            "minReadySeconds": soak_s,
            "progressDeadlineSeconds": ready_s.max(soak_s + 1),
            "strategy": strategy_value,
            "selector": {"matchLabels": selector(svc)},
            "template": {
                "metadata": {"labels": labels},
                "spec": pod_spec,
            },
        },
    }));
    if !ports.is_empty() {
        objects.push(json!({
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": meta(svc),
            "spec": {
                "type": "ClusterIP",
                "selector": selector(svc),
                "ports": ports.iter().map(|(n, p, t, proto)| json!({"name": n, "port": p, "targetPort": t, "protocol": proto})).collect::<Vec<_>>(),
            },
        }));
    }
    if scope.replicas > 1 {
        objects.push(json!({
            "apiVersion": "policy/v1",
            "kind": "PodDisruptionBudget",
            "metadata": meta(svc),
            "spec": {"maxUnavailable": 1, "selector": {"matchLabels": selector(svc)}},
        }));
    }

    // Traffic: who may call this service, and whom it may call.
    let routes = w.resources.values().any(|r| matches!(r.kind.as_str(), "route" | "dns"));
    let mut ingress = Vec::new();
    let target_ports: Vec<Value> = ports.iter().map(|(_, _, t, proto)| json!({"protocol": proto, "port": t})).collect();
    let callers = scope.callers.get(svc).cloned().unwrap_or_default();
    if !callers.is_empty() && !target_ports.is_empty() {
        ingress.push(json!({
            "from": callers.iter().map(|c| json!({"podSelector": {"matchLabels": selector(c)}})).collect::<Vec<_>>(),
            "ports": target_ports,
        }));
    }
    if routes && !ports.is_empty() {
        ingress.push(json!({
            "from": scope.lb_blocks.iter().map(|b| json!({"ipBlock": {"cidr": b}})).collect::<Vec<_>>(),
            "ports": target_ports,
        }));
        objects.push(scope.cloud.route(env, svc, ports[0].1, &labels));
    }
    let mut egress = Vec::new();
    for callee in calls(w) {
        let Ok(i) = scope.services.binary_search_by(|s| s.metadata.name.as_str().cmp(callee.as_str())) else {
            continue;
        };
        let t = scope.services[i];
        let callee_ports: Vec<Value> = t
            .service
            .as_ref()
            .and_then(|s| s.ports.as_ref())
            .map(|p| p.values().map(|p| json!({"protocol": "TCP", "port": p.target_port.unwrap_or(p.port)})).collect())
            .unwrap_or_default();
        if !callee_ports.is_empty() {
            egress.push(json!({"to": [{"podSelector": {"matchLabels": selector(&callee)}}], "ports": callee_ports}));
        }
    }
    let kinds: BTreeSet<&str> = w.resources.values().map(|r| r.kind.as_str()).collect();
    // RDS (PostgreSQL 5432, MySQL 3306), Amazon MQ for RabbitMQ (AMQPS, 5671) and
    // ElastiCache (6379) live in the data subnets.
    for (kind, port) in [("postgres", 5432), ("mysql", 3306), ("amqp", 5671), ("redis", 6379)] {
        if kinds.contains(kind) && !scope.data_blocks.is_empty() {
            egress.push(json!({
                "to": scope.data_blocks.iter().map(|b| json!({"ipBlock": {"cidr": b}})).collect::<Vec<_>>(),
                "ports": [{"protocol": "TCP", "port": port}],
            }));
        }
    }
    if ["s3", "queue"].iter().any(|k| kinds.contains(k)) {
        egress.push(json!({
            "to": [{"ipBlock": {"cidr": "0.0.0.0/0", "except": [scope.vpc_block]}}],
            "ports": [{"protocol": "TCP", "port": 443}],
        }));
    }
    let mut policy = json!({"podSelector": {"matchLabels": selector(svc)}, "policyTypes": ["Ingress", "Egress"]});
    if !ingress.is_empty() {
        policy["ingress"] = Value::Array(ingress);
    }
    if !egress.is_empty() {
        policy["egress"] = Value::Array(egress);
    }
    objects.push(
        json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": meta(svc), "spec": policy}),
    );

    Ok(Rendered { objects, secrets, budget, warnings })
}

/// The services a workload calls (its `service` resources' targets).
pub(crate) fn calls(w: &Workload) -> BTreeSet<String> {
    w.resources
        .iter()
        .filter(|(_, r)| r.kind == "service")
        .map(|(name, r)| {
            r.params.as_ref().and_then(|p| p.get("name")).and_then(Value::as_str).unwrap_or(name).to_string()
        })
        .collect()
}
