//! Translation for the `local` provider: one machine, real processes or
//! Docker containers, a platform-managed PostgreSQL, a reverse proxy.
//!
//! | neutral / Score           | local kind                      | notes |
//! |---------------------------|---------------------------------|-------|
//! | network                   | `local.network`                 | one Docker network (or loopback block) per environment |
//! | ingress                   | `local.proxy`                   | idle/request timeouts and health checks from the blueprint |
//! | compute (any runtime)     | `local.workload` per service    | `docker` when an engine answers, else `process` |
//! | `postgres`                | `local.postgres.database`       | one database + role per resource (shared by Score `id`) on `local.postgres.cluster` |
//! | `mysql`                   | `local.mysql.database`          | one database + user per resource on `local.mysql.server` (the platform MariaDB); process runtime only |
//! | `amqp`                    | `local.rabbitmq.vhost`          | one vhost + user per resource on `local.rabbitmq.server` (the platform RabbitMQ); process runtime only |
//! | `redis`                   | `local.redis`                   | needs `redis-server` |
//! | `volume`                  | `local.volume`                  | a directory under paved's data dir |
//! | `dns`                     | `local.dns`                     | `SERVICE.ENV.localhost` |
//! | `route`                   | `local.route`                   | a path on the proxy to the service |
//! | `service`                 | `local.service-link`            | a stable URL of another service in the environment |
//! | deployment (paved)        | `local.workload` `artifact`, `rollout` | the deployed digest replaces the main container's image; the strategy is the driver's |

use crate::provision;
use crate::resolve::{self, ResourceBinding};
use crate::{Capabilities, Node, PlanError, PlanInput, Release, ResourceGraph};
use paved_model::Workload;
use paved_model::account::LocalRuntime;
use paved_model::blueprint::{DatabaseEngine, Runtime, WorkloadSecurity};
use paved_model::placeholder::{self, Segment};
use paved_model::score::{Files, Volumes};
use serde_json::{Value, json};
use std::collections::BTreeMap;

const PROVIDER: &str = "local";
const SUPPORTED: &str = "postgres, mysql, amqp, redis, volume, dns, route, service, service-port, environment";

/// A blueprint asking for processes gets processes; otherwise the account
/// decides, and without a word from it the machine (is there a Docker Engine).
fn runtime(bp: Runtime, account: Option<LocalRuntime>, caps: Capabilities) -> &'static str {
    match (bp, account) {
        (Runtime::Process, _) => "process",
        (_, Some(r)) => r.as_str(),
        (_, None) if caps.docker => "docker",
        (_, None) => "process",
    }
}

fn seconds(d: &paved_model::SpecDuration) -> u64 {
    d.parse().map_or(0, |d| d.as_secs())
}

pub fn translate(input: &PlanInput<'_>) -> Result<ResourceGraph, Vec<PlanError>> {
    let env = &input.environment.metadata.name;
    let bp = &input.blueprint.spec;
    let params = resolve::parameters(input.environment, input.blueprint)?;
    let mut errors = Vec::new();
    let mut g = ResourceGraph::new(paved_model::Provider::Local, env);

    let runtime = runtime(bp.compute.runtime, input.account.spec.runtime, input.capabilities);
    let docker = runtime == "docker";
    let network = g.add(
        Node::new("local.network", env, json!({"name": format!("paved-{env}"), "runtime": runtime}))
            .immutable(&["name", "runtime"])
            .outputs(&["address"]),
    );
    let address = format!("${{ref:{network}.address}}");
    let proxy_props = match &bp.ingress {
        Some(i) => json!({
            "public": i.public,
            "tls": i.tls.enabled,
            "idleTimeoutSeconds": seconds(&i.timeouts.idle),
            "requestTimeoutSeconds": seconds(&i.timeouts.request),
            "healthCheck": {
                "path": i.health_check.path,
                "intervalSeconds": seconds(&i.health_check.interval),
                "timeoutSeconds": seconds(&i.health_check.timeout),
                "healthyThreshold": i.health_check.healthy_threshold,
                "unhealthyThreshold": i.health_check.unhealthy_threshold,
            },
        }),
        None => json!({"public": false}),
    };
    let proxy = g.add(Node::new("local.proxy", env, proxy_props).after([network.clone()]).outputs(&["port"]));

    let size = resolve::param("spec.compute.size", &bp.compute.size, &params);
    let replicas = resolve::param("spec.compute.replicas", &bp.compute.replicas, &params);
    let (size, replicas) = match (size, replicas) {
        (Ok(s), Ok(r)) => (s, r),
        (s, r) => {
            errors.extend(s.err());
            errors.extend(r.err());
            return Err(errors);
        }
    };
    let service_names: Vec<&str> = input.services.iter().map(|w| w.metadata.name.as_str()).collect();
    let mut shared = resolve::SharedResources::default();
    errors.extend(port_collisions(env, &input.services));

    let scope = provision::Scope {
        environment: input.environment,
        blueprint: input.blueprint,
        parameters: &params,
        provider: paved_model::Provider::Local,
    };
    for w in &input.services {
        let svc = w.metadata.name.as_str();
        let mut bindings: BTreeMap<String, ResourceBinding> = BTreeMap::new();
        let mut routes = Vec::new();
        for (rname, r) in &w.resources {
            let key = match shared.key(svc, rname, r) {
                Ok(key) => key,
                Err(conflict) => {
                    errors.push(conflict);
                    continue;
                }
            };
            let unavailable = |what: &str, hint: &str| PlanError::Unavailable {
                service: svc.to_string(),
                resource: rname.clone(),
                what: what.to_string(),
                hint: hint.to_string(),
            };
            // The platform team's provisioner, when one serves it, before any built-in.
            if let Some(provisioned) = provision::provisioned(&mut g, &scope, (svc, rname, r), &key) {
                match provisioned {
                    Ok(binding) => {
                        bindings.insert(rname.clone(), binding);
                    }
                    Err(e) => errors.push(e),
                }
                continue;
            }
            let binding = match r.kind.as_str() {
                // Values the environment provides: its secrets, resolved when applied.
                "environment" => ResourceBinding::environment(),
                "postgres" => {
                    let Some(db) = bp.databases.get(&DatabaseEngine::Postgres) else {
                        errors.push(unavailable(
                            "a postgres database",
                            &format!(
                                "blueprint `{}` offers none; the platform team adds `spec.databases.postgres`",
                                input.blueprint.metadata.name
                            ),
                        ));
                        continue;
                    };
                    let version = db.version.clone().unwrap_or_else(|| "16".into());
                    // Processes share the platform cluster (roles keep environments apart); on
                    // Docker each environment has its own, attached only to its network.
                    let cluster = if docker {
                        Node::new("local.postgres.cluster", env, json!({"version": version, "runtime": runtime}))
                            .after([network.clone()])
                    } else {
                        Node::new("local.postgres.cluster", "platform", json!({"version": version}))
                    };
                    let cluster = g.add(cluster.outputs(&["host", "port"]));
                    let class = resolve::param("spec.databases.postgres.class", &db.class, &params);
                    let backups = resolve::param(
                        "spec.databases.postgres.backupRetentionDays",
                        &db.backup_retention_days,
                        &params,
                    );
                    let (class, backups) = match (class, backups) {
                        (Ok(c), Ok(b)) => (c, b),
                        (c, b) => {
                            errors.extend(c.err());
                            errors.extend(b.err());
                            continue;
                        }
                    };
                    let ident = format!("{env}_{key}").replace(['-', '.'], "_");
                    let node = Node::new(
                        "local.postgres.database",
                        &key,
                        json!({
                            "database": ident,
                            "role": ident,
                            "class": class,
                            "backupRetentionDays": backups,
                            "network": format!("paved-{env}"),
                            "runtime": runtime,
                            // Observed as `changed-outside-paved` when someone resets the password (drift).
                            "credentials": "issued-by-paved",
                        }),
                    )
                    .after([cluster, network.clone()])
                    .outputs(&["host", "port", "name", "database", "username", "password"])
                    .sensitive(&["password"])
                    .immutable(&["database", "role"]);
                    ResourceBinding {
                        node: g.add(node),
                        outputs: resolve::outputs(&["host", "port", "name", "database", "username", "password"]),
                    }
                }
                "mysql" => {
                    if !bp.databases.contains_key(&DatabaseEngine::Mysql) {
                        errors.push(unavailable(
                            "a mysql database",
                            &format!(
                                "blueprint `{}` offers none; the platform team adds `spec.databases.mysql`",
                                input.blueprint.metadata.name
                            ),
                        ));
                        continue;
                    }
                    if docker {
                        errors.push(unavailable(
                            "a mysql database on the docker runtime",
                            "the platform MariaDB runs on this machine for the process runtime only; run the \
                             environment on processes (`paved up --runtime process`) or offer `mysql` through a \
                             provisioner",
                        ));
                        continue;
                    }
                    // One platform MariaDB shared by the process runtime's environments; a
                    // database and a user per resource keep them apart.
                    let server = g.add(
                        Node::new("local.mysql.server", "platform", json!({"engine": "mariadb"}))
                            .outputs(&["host", "port"]),
                    );
                    let ident = format!("{env}_{key}").replace(['-', '.'], "_");
                    let node = Node::new(
                        "local.mysql.database",
                        &key,
                        json!({"database": ident, "username": ident, "credentials": "issued-by-paved"}),
                    )
                    .after([server, network.clone()])
                    .outputs(&["host", "port", "name", "database", "username", "password"])
                    .sensitive(&["password"])
                    .immutable(&["database", "username"]);
                    ResourceBinding {
                        node: g.add(node),
                        outputs: resolve::outputs(&["host", "port", "name", "database", "username", "password"]),
                    }
                }
                "amqp" => {
                    if docker {
                        errors.push(unavailable(
                            "an AMQP broker on the docker runtime",
                            "the platform RabbitMQ runs on this machine for the process runtime only; run the \
                             environment on processes (`paved up --runtime process`) or offer `amqp` through a \
                             provisioner",
                        ));
                        continue;
                    }
                    // One platform RabbitMQ shared by the process runtime's environments; a
                    // vhost and a user per resource keep them apart.
                    let server = g.add(
                        Node::new("local.rabbitmq.server", "platform", json!({"engine": "rabbitmq"}))
                            .outputs(&["host", "port"]),
                    );
                    let ident = format!("{env}_{key}").replace(['-', '.'], "_");
                    let node = Node::new(
                        "local.rabbitmq.vhost",
                        &key,
                        json!({"vhost": ident, "username": ident, "credentials": "issued-by-paved"}),
                    )
                    .after([server, network.clone()])
                    .outputs(&["host", "port", "vhost", "username", "password"])
                    .sensitive(&["password"])
                    .immutable(&["vhost", "username"]);
                    ResourceBinding {
                        node: g.add(node),
                        outputs: resolve::outputs(&["host", "port", "vhost", "username", "password"]),
                    }
                }
                "redis" => {
                    if !bp.databases.contains_key(&DatabaseEngine::Redis) {
                        errors.push(unavailable(
                            "redis",
                            &format!(
                                "blueprint `{}` offers none; the platform team adds `spec.databases.redis`",
                                input.blueprint.metadata.name
                            ),
                        ));
                        continue;
                    }
                    if !input.capabilities.redis_server {
                        errors.push(unavailable(
                            "`redis-server`",
                            "install it (Debian package `redis-server`) on the machine running paved",
                        ));
                        continue;
                    }
                    let props = json!({
                        "network": format!("paved-{env}"),
                        "runtime": runtime,
                        "address": address,
                        // Observed otherwise when stopped or its password was changed (drift).
                        "state": "running",
                        "credentials": "issued-by-paved",
                    });
                    let node = Node::new("local.redis", &key, props)
                        .after([network.clone()])
                        .outputs(&["host", "port", "username", "password"])
                        .sensitive(&["password"]);
                    ResourceBinding {
                        node: g.add(node),
                        outputs: resolve::outputs(&["host", "port", "username", "password"]),
                    }
                }
                "volume" => {
                    let node = Node::new("local.volume", &key, json!({"path": format!("volumes/{env}/{key}")}))
                        .outputs(&["source"]);
                    ResourceBinding { node: g.add(node), outputs: resolve::outputs(&["source"]) }
                }
                "dns" => {
                    // A name shared by `id` is named after the id: which of its services is
                    // planned first must not decide it.
                    let label = if r.id.is_some() { key.as_str() } else { svc };
                    let node = Node::new("local.dns", &key, json!({"host": format!("{label}.{env}.localhost")}))
                        .after([proxy.clone()])
                        .outputs(&["host"]);
                    ResourceBinding { node: g.add(node), outputs: resolve::outputs(&["host"]) }
                }
                "service" => {
                    let target = r.params.as_ref().and_then(|p| p.get("name")).and_then(Value::as_str).unwrap_or(rname);
                    if !service_names.contains(&target) {
                        errors.push(unavailable(
                            &format!("service `{target}` in environment `{env}`"),
                            &format!(
                                "deploy `{target}` to this environment, or set `params.name` to one of: {}",
                                service_names.join(", ")
                            ),
                        ));
                        continue;
                    }
                    // The target's address inside the environment, known before the target
                    // runs, so services may call each other without a dependency cycle.
                    let port =
                        input.services.iter().find(|t| t.metadata.name == target).and_then(|t| first_target_port(t));
                    let Some(port) = port else {
                        errors.push(unavailable(
                            &format!("a port of service `{target}`"),
                            &format!("`{target}` declares no `service.ports`; add one so others can call it"),
                        ));
                        continue;
                    };
                    // On Docker the target answers to its name on the environment's network.
                    let host = if docker { target.to_string() } else { address.clone() };
                    let node =
                        Node::new("local.service-link", &key, json!({"target": target, "address": host, "port": port}))
                            .after([network.clone()])
                            .outputs(&["host", "port", "url"]);
                    ResourceBinding { node: g.add(node), outputs: resolve::outputs(&["host", "port", "url"]) }
                }
                // Score's `service-port` (as score-compose offers it): `params.workload` and
                // `params.port` (a port name of its `service.ports`) give `hostname` and `port`,
                // where that port is reached inside the environment (its target port here).
                "service-port" => {
                    let param = |name: &str| r.params.as_ref().and_then(|p| p.get(name)).and_then(Value::as_str);
                    let (Some(target), Some(port_name)) = (param("workload"), param("port")) else {
                        errors.push(unavailable(
                            "`params.workload` and `params.port`",
                            "name the workload and one of its `service.ports`",
                        ));
                        continue;
                    };
                    let ports = input
                        .services
                        .iter()
                        .find(|t| t.metadata.name == target)
                        .and_then(|t| t.service.as_ref())
                        .and_then(|s| s.ports.as_ref());
                    let Some(port) = ports.and_then(|p| p.get(port_name)).map(|p| p.target_port.unwrap_or(p.port))
                    else {
                        let offered = ports.map(|p| p.keys().cloned().collect::<Vec<_>>().join(", "));
                        errors.push(unavailable(
                            &format!("port `{port_name}` of workload `{target}` in environment `{env}`"),
                            &match offered {
                                Some(o) if !o.is_empty() => format!("`{target}` declares: {o}"),
                                _ => format!("deploy `{target}` to this environment with that port in `service.ports`"),
                            },
                        ));
                        continue;
                    };
                    let host = if docker { target.to_string() } else { address.clone() };
                    let node =
                        Node::new("local.service-link", &key, json!({"target": target, "address": host, "port": port}))
                            .after([network.clone()])
                            .outputs(&["host", "hostname", "port", "url"]);
                    let node = g.add(node);
                    // score-compose's names: `hostname` and `port` (`host` too, as a service link).
                    ResourceBinding { node, outputs: resolve::outputs(&["hostname", "port", "host", "url"]) }
                }
                "route" => {
                    routes.push((rname.clone(), key.clone()));
                    continue;
                }
                other => {
                    errors.push(PlanError::UnsupportedResource {
                        service: svc.to_string(),
                        resource: rname.clone(),
                        kind: other.to_string(),
                        class: r.class.as_deref().map(Box::from),
                        provider: PROVIDER,
                        supported: SUPPORTED,
                    });
                    continue;
                }
            };
            bindings.insert(rname.clone(), binding);
        }

        if runtime == "process" && !input.capabilities.sandbox {
            errors.push(PlanError::NoSandbox { service: svc.to_string() });
            continue;
        }
        let workload = match workload_properties(w, &bindings, runtime, replicas, &size_name(&size), &address)
            .and_then(|props| confine_volumes(w, &bp.security.workloads, props))
            .and_then(|props| with_release(w, props, input.releases.get(svc)))
        {
            Ok(props) => props,
            Err(e) => {
                errors.push(e);
                continue;
            }
        };
        // After the proxy: it serves the service's stable address (see `paved_local::proxy`).
        let deps: Vec<String> = [network.clone(), proxy.clone()]
            .into_iter()
            .chain(bindings.values().filter(|b| b.has_node()).map(|b| b.node.clone()))
            .collect();
        let workload_id = g.add(Node::new("local.workload", svc, workload).after(deps).outputs(&["url"]));

        for (rname, key) in routes {
            let r = &w.resources[&rname];
            let field = format!("resources.{rname}.params");
            let params = match r.params.as_ref().map(|p| rewrite_value(w, &field, &Value::Object(p.clone()), &bindings))
            {
                Some(Ok(v)) => v,
                Some(Err(e)) => {
                    errors.push(e);
                    continue;
                }
                None => json!({}),
            };
            let deps: Vec<String> = refs_in(&params).into_iter().chain([proxy.clone(), workload_id.clone()]).collect();
            g.add(Node::new("local.route", &key, json!({"service": svc, "params": params})).after(deps));
        }
    }
    if errors.is_empty() { Ok(g) } else { Err(errors) }
}

/// Whether a volume's `source` is the bare name of one of the service's
/// `volume` resources (`source: data`), the form Score files written before
/// `${resources.data}` use; it means that resource.
fn names_volume(w: &Workload, source: &str) -> bool {
    w.resources.get(source).is_some_and(|r| r.kind == "volume")
}

/// A Score volume's `source` is a `volume` resource of the service, or a host
/// directory the blueprint allows: a developer cannot mount `/`, paved's
/// data directory or another team's files. Also carries the blueprint's
/// `runAsRoot` exception to the driver.
fn confine_volumes(w: &Workload, rules: &WorkloadSecurity, mut props: Value) -> Result<Value, PlanError> {
    let svc = &w.metadata.name;
    for (cname, c) in &w.containers {
        let vols = c.volumes.as_ref().map(Volumes::entries).unwrap_or_default();
        for (target, v) in vols {
            let of_volume = match placeholder::parse(&v.source).as_deref() {
                Ok([Segment::Placeholder(p)]) => match p.path.iter().map(String::as_str).collect::<Vec<_>>()[..] {
                    ["resources", name] | ["resources", name, "source"] => {
                        w.resources.get(name).is_some_and(|r| r.kind == "volume")
                    }
                    _ => false,
                },
                _ => false,
            };
            let literal = !v.source.contains("${");
            if of_volume || names_volume(w, &v.source) || (literal && rules.allows_host_path(&v.source)) {
                continue;
            }
            let allowed = if rules.host_volumes.is_empty() {
                "; this blueprint allows no host directories".to_string()
            } else {
                format!(
                    " or a directory under {} (the blueprint's `spec.security.workloads.hostVolumes`)",
                    rules.host_volumes.join(", ")
                )
            };
            return Err(PlanError::HostVolumeNotAllowed {
                service: svc.clone(),
                field: format!("containers.{cname}.volumes.{target}.source"),
                source_path: v.source.clone(),
                allowed,
            });
        }
    }
    if rules.run_as_root {
        props["runAsRoot"] = json!(true);
    }
    Ok(props)
}

/// Runs the deployed artifact in the service's main container (the one named
/// like the service, or its only one) and records how to roll it out.
fn with_release(w: &Workload, mut props: Value, release: Option<&Release>) -> Result<Value, PlanError> {
    let Some(release) = release else { return Ok(props) };
    let svc = &w.metadata.name;
    let main = if w.containers.len() == 1 {
        w.containers.keys().next()
    } else {
        w.containers.get_key_value(svc).map(|(k, _)| k)
    };
    let Some(main) = main else {
        return Err(PlanError::AmbiguousArtifact {
            service: svc.clone(),
            containers: w.containers.keys().map(|c| format!("`{c}`")).collect::<Vec<_>>().join(", "),
        });
    };
    props["containers"][main]["image"] = json!(release.artifact);
    props["artifact"] = json!(release.artifact);
    props["rollout"] = json!({
        "strategy": release.strategy.as_str(),
        "soakMs": release.soak_ms,
        "readyTimeoutMs": release.ready_timeout_ms,
    });
    Ok(props)
}

/// The port a service listens on (`targetPort`) for its first declared port.
pub(crate) fn first_target_port(w: &Workload) -> Option<u16> {
    let ports = w.service.as_ref()?.ports.as_ref()?;
    ports.values().next().map(|p| p.target_port.unwrap_or(p.port))
}

/// On one machine, services of one environment share its address: two
/// listening on the same port cannot both run.
fn port_collisions(env: &str, services: &[&Workload]) -> Vec<PlanError> {
    let mut seen: BTreeMap<u16, &str> = BTreeMap::new();
    let mut errors = Vec::new();
    for w in services {
        let ports = w.service.as_ref().and_then(|s| s.ports.as_ref());
        for p in ports.into_iter().flat_map(|p| p.values()) {
            let port = p.target_port.unwrap_or(p.port);
            match seen.get(&port) {
                Some(other) if *other != w.metadata.name => errors.push(PlanError::Unavailable {
                    service: w.metadata.name.clone(),
                    resource: "service.ports".into(),
                    what: format!("port {port} in environment `{env}`"),
                    hint: format!("service `{other}` already listens on it; give one of them another `targetPort`"),
                }),
                _ => {
                    seen.insert(port, &w.metadata.name);
                }
            }
        }
    }
    errors
}

fn size_name(size: &paved_model::blueprint::Size) -> String {
    serde_json::to_value(size).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default()
}

/// Node ids referenced by `${ref:ID.OUTPUT}` anywhere in a value.
fn refs_in(v: &Value) -> Vec<String> {
    let mut out = Vec::new();
    let text = v.to_string();
    let mut rest = text.as_str();
    while let Some(i) = rest.find("${ref:") {
        let after = &rest[i + 6..];
        let Some(end) = after.find('}') else { break };
        if let Some((id, _)) = after[..end].rsplit_once('.') {
            out.push(id.to_string());
        }
        rest = &after[end..];
    }
    out.sort();
    out.dedup();
    out
}

fn rewrite_value(
    w: &Workload,
    field: &str,
    v: &Value,
    b: &BTreeMap<String, ResourceBinding>,
) -> Result<Value, PlanError> {
    Ok(match v {
        Value::String(s) => Value::String(resolve::rewrite(w, field, s, b)?),
        Value::Array(items) => {
            Value::Array(items.iter().map(|i| rewrite_value(w, field, i, b)).collect::<Result<_, _>>()?)
        }
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, i)| Ok((k.clone(), rewrite_value(w, &format!("{field}.{k}"), i, b)?)))
                .collect::<Result<_, _>>()?,
        ),
        other => other.clone(),
    })
}

fn workload_properties(
    w: &Workload,
    b: &BTreeMap<String, ResourceBinding>,
    runtime: &str,
    replicas: u32,
    size: &str,
    address: &str,
) -> Result<Value, PlanError> {
    let svc = &w.metadata.name;
    let mut containers = serde_json::Map::new();
    for (cname, c) in &w.containers {
        let at = |f: &str| format!("containers.{cname}.{f}");
        let mut variables = serde_json::Map::new();
        for (k, v) in c.variables.iter().flatten() {
            variables.insert(k.clone(), Value::String(resolve::rewrite(w, &at(&format!("variables.{k}")), v, b)?));
        }
        let list = |name: &str, l: &Option<Vec<String>>| -> Result<Option<Vec<String>>, PlanError> {
            l.as_ref().map(|items| items.iter().map(|s| resolve::rewrite(w, &at(name), s, b)).collect()).transpose()
        };
        let mut files = serde_json::Map::new();
        let entries: Vec<(String, &paved_model::score::ContainerFile)> = match &c.files {
            Some(Files::Map(m)) => m.iter().map(|(k, f)| (k.clone(), f)).collect(),
            Some(Files::List(l)) => l.iter().map(|f| (f.target.clone().unwrap_or_default(), f)).collect(),
            None => Vec::new(),
        };
        for (target, f) in entries {
            if let Some(path) = &f.source {
                let (service, field) = (w.metadata.name.clone(), at(&format!("files.{target}")));
                return Err(PlanError::FileSource { service, field, path: path.clone() });
            }
            let content = match (&f.content, f.no_expand.unwrap_or(false)) {
                (Some(text), false) => Some(resolve::rewrite(w, &at(&format!("files.{target}")), text, b)?),
                (Some(text), true) => Some(text.replace("${", "$${")),
                (None, _) => None,
            };
            // A file holding a secret is readable by its owner only, unless the Score file says otherwise.
            let holds_secret = content.as_deref().is_some_and(|c| c.contains("${secret:"));
            let mode = f.mode.clone().unwrap_or_else(|| if holds_secret { "0600" } else { "0644" }.into());
            files.insert(
                target,
                json!({"content": content, "source": f.source, "binaryContent": f.binary_content, "mode": mode}),
            );
        }
        let mut volumes = serde_json::Map::new();
        let vols = c.volumes.as_ref().map(Volumes::entries).unwrap_or_default();
        for (target, v) in vols {
            let named = format!("${{resources.{}}}", v.source);
            let source = if names_volume(w, &v.source) { &named } else { &v.source };
            let source = resolve::rewrite(w, &at(&format!("volumes.{target}")), source, b)?;
            volumes.insert(target, json!({"source": source, "path": v.path, "readOnly": v.read_only.unwrap_or(false)}));
        }
        containers.insert(
            cname.clone(),
            json!({
                "image": c.image,
                "command": list("command", &c.command)?,
                "args": list("args", &c.args)?,
                "variables": variables,
                "files": files,
                "volumes": volumes,
                "limits": c.resources.as_ref().and_then(|r| r.limits.as_ref()).map(|l| json!({"cpu": l.cpu, "memory": l.memory})),
                "livenessProbe": c.liveness_probe,
                "readinessProbe": c.readiness_probe,
            }),
        );
    }
    let ports: BTreeMap<&String, Value> = w
        .service
        .as_ref()
        .and_then(|s| s.ports.as_ref())
        .map(|ports| {
            ports
                .iter()
                .map(|(n, p)| {
                    (n, json!({"port": p.port, "targetPort": p.target_port.unwrap_or(p.port), "protocol": p.protocol}))
                })
                .collect()
        })
        .unwrap_or_default();
    Ok(json!({
        "service": svc,
        "runtime": runtime,
        "address": address,
        // Observed as `stopped` or `crash-looping` when the workload is not running (drift).
        "state": "running",
        "replicas": replicas,
        "size": size,
        "containers": containers,
        "ports": ports,
    }))
}
