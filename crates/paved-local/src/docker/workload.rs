//! `local.workload` on the `docker` runtime: each Score container as a
//! Docker container, the containers of one workload sharing a network
//! namespace (like a pod: they reach each other on localhost).
//!
//! The first container joins the environment's network under the service's
//! name (other services resolve it there) and publishes the service's
//! target ports on the environment's loopback address, where the proxy and
//! probes reach it, exactly as on the process runtime. Score files are
//! written under the workload directory and bind-mounted read-only.
//!
//! Images are used by id (a digest): a Docker image of that name, else a
//! bundle of paved's image store turned into an image (the same artifact
//! on both runtimes).

use super::liveness::{Watch, WatchProbe};
use super::rootfs::{ImageConfig, RootFs};
use super::{LABEL_CONTAINER, LABEL_ENVIRONMENT, LABEL_SERVICE, LABEL_SLOT, LABEL_SPEC, api_err, engine, is_not_found};
use crate::Config;
use crate::fsutil;
use crate::supervisor::{self, ContainerSpec, Spec};
use crate::workload::{Container, Runtime, ScoreProbe, permanent, target_ports, write_file};
use bollard::Docker;
use bollard::container::LogOutput;
use bollard::models::{
    ContainerCreateBody, EndpointSettings, HostConfig, HostConfigLogConfig, Mount, MountType, NetworkingConfig,
    PortBinding, RestartPolicy, RestartPolicyNameEnum,
};
use bollard::query_parameters::{CreateContainerOptionsBuilder, LogsOptionsBuilder};
use futures_util::{Stream, StreamExt};
use paved_engine::{DriverError, Resource};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::time::Duration;

fn parse(r: &Resource) -> Result<BTreeMap<String, Container>, DriverError> {
    serde_json::from_value(r.properties["containers"].clone()).map_err(permanent)
}

/// The digest a workload's containers are labelled with: the properties
/// they were created from. A different one means recreate.
fn spec_digest(r: &Resource) -> String {
    hex::encode(Sha256::digest(r.properties.to_string().as_bytes()))[..16].to_string()
}

/// `"1"` → 1e9, `"250m"` → 2.5e8 (Docker's NanoCpus).
fn nano_cpus(cpu: &str) -> Option<i64> {
    match cpu.strip_suffix('m') {
        Some(milli) => milli.parse::<f64>().ok().map(|m| (m * 1e6) as i64),
        None => cpu.parse::<f64>().ok().map(|c| (c * 1e9) as i64),
    }
}

/// `"256Mi"` → 268435456, `"1G"` → 1e9 (Kubernetes quantities).
fn memory_bytes(mem: &str) -> Option<i64> {
    const UNITS: [(&str, f64); 8] = [
        ("Ki", 1024.0),
        ("Mi", 1048576.0),
        ("Gi", 1073741824.0),
        ("Ti", 1099511627776.0),
        ("k", 1e3),
        ("M", 1e6),
        ("G", 1e9),
        ("T", 1e12),
    ];
    for (suffix, factor) in UNITS {
        if let Some(n) = mem.strip_suffix(suffix) {
            return n.parse::<f64>().ok().map(|n| (n * factor) as i64);
        }
    }
    mem.parse::<i64>().ok()
}

/// The id of the image a Score `image` names: a Docker image of that name,
/// else a bundle of paved's image store built into one.
/// An image's id, and whether its configured user is root (no `USER`, `0`, `root`).
async fn image_id(docker: &Docker, config: &Config, name: &str) -> Result<(String, bool), DriverError> {
    match docker.inspect_image(name).await {
        Ok(image) => {
            let user = image.config.and_then(|c| c.user).unwrap_or_default();
            let name_part = user.split(':').next().unwrap_or_default();
            let root = matches!(name_part, "" | "0" | "root");
            return Ok((image.id.ok_or_else(|| permanent(format!("image {name} has no id")))?, root));
        }
        Err(e) if is_not_found(&e) => {}
        Err(e) => return Err(api_err("inspecting an image")(e)),
    }
    let bundle = config.images().resolve(name).map_err(|e| {
        permanent(format!(
            "image `{name}` is not in the Docker Engine either; build it there (`docker build -t {name} .`) or {e}"
        ))
    })?;
    let (fs, image_config) = tokio::task::spawn_blocking(move || -> Result<(RootFs, ImageConfig), String> {
        let mut fs = RootFs::new();
        fs.tree(&bundle.root, "/", &["bundle.json"])?;
        fs.accounts(&[("nobody", 65534, 65534, "/")]);
        fs.with_libraries()?;
        // The bundle's programs run as nobody, with no capabilities (see `start`).
        let config = ImageConfig {
            entrypoint: bundle.manifest.entrypoint.clone(),
            cmd: bundle.manifest.cmd.clone(),
            user: Some("65534:65534".into()),
            env: vec![("PAVED_IMAGE_DIGEST".into(), bundle.digest.clone())],
        };
        Ok((fs, config))
    })
    .await
    .map_err(|e| DriverError::Retryable(e.to_string()))?
    .map_err(permanent)?;
    let id = fs.build(docker, "paved-local/bundle", &image_config).await.map_err(DriverError::Retryable)?;
    Ok((id, false))
}

/// The slot a resource runs in (see [`crate::slots`]); none for a whole-service operation.
fn slot(r: &Resource) -> Option<&str> {
    r.properties["slot"].as_str()
}

/// The label filter of a workload's containers: of one slot, or of every slot.
fn service_labels(r: &Resource) -> Vec<String> {
    let mut labels = vec![format!("{LABEL_ENVIRONMENT}={}", r.environment), format!("{LABEL_SERVICE}={}", r.name)];
    labels.extend(slot(r).map(|s| format!("{LABEL_SLOT}={s}")));
    labels
}

fn container_name(config: &Config, r: &Resource, container: &str) -> String {
    match slot(r) {
        Some(slot) => config.docker_name(&r.environment, &[&r.name, slot, container]),
        None => config.docker_name(&r.environment, &[&r.name, container]),
    }
}

/// Creates (or recreates, when the properties changed) and starts the
/// workload's containers.
async fn start(config: &Config, r: &Resource, dir: &Path) -> Result<(), DriverError> {
    let containers = parse(r)?;
    let docker = engine().await?;
    let digest = spec_digest(r);
    let address = r.properties["address"].as_str().unwrap_or("127.0.0.1").to_string();
    let network = config.docker_name(&r.environment, &[]);
    let wanted: Vec<String> = containers.keys().map(|c| container_name(config, r, c)).collect();

    // Containers are immutable: whatever runs from other properties goes.
    let existing = super::containers(&docker, config, &service_labels(r))
        .await
        .map_err(api_err("listing the service's containers"))?;
    let name_of = |c: &bollard::models::ContainerSummary| {
        c.names.iter().flatten().next().map(|n| n.trim_start_matches('/').to_string()).unwrap_or_default()
    };
    // A workload is kept or recreated as a whole: its containers share the first one's namespace.
    let unchanged = existing.len() == wanted.len()
        && existing.iter().all(|c| {
            c.labels.as_ref().and_then(|l| l.get(LABEL_SPEC)) == Some(&digest)
                && wanted.contains(&name_of(c))
                && !super::is_going(c)
        });
    if !unchanged {
        for id in existing.iter().filter_map(|c| c.id.as_ref()) {
            super::remove_container(&docker, id).await?;
        }
    }

    let mut first: Option<String> = None;
    let ports = target_ports(&r.properties);
    for (cname, c) in &containers {
        let name = container_name(config, r, cname);
        if unchanged {
            if !existing.iter().any(|e| name_of(e) == name && super::is_running(e)) {
                docker.start_container(&name, None).await.map_err(api_err("starting a container"))?;
            }
            first.get_or_insert(name);
            continue;
        }
        let (image, image_runs_as_root) = image_id(&docker, config, &c.image).await?;
        // An image that would run as root runs as nobody unless the blueprint
        // allows root (`spec.security.workloads.runAsRoot`).
        let user = (image_runs_as_root && r.properties["runAsRoot"] != true).then(|| "65534:65534".to_string());
        let mut mounts = Vec::new();
        let files = dir.join("containers").join(cname).join("files");
        for (target, f) in &c.files {
            write_file(&files, target, f)?;
            mounts.push(Mount {
                target: Some(target.clone()),
                source: Some(files.join(target.trim_start_matches('/')).display().to_string()),
                typ: Some(MountType::BIND),
                read_only: Some(true),
                ..Default::default()
            });
        }
        for (target, v) in &c.volumes {
            mounts.push(Mount {
                target: Some(target.clone()),
                source: Some(v.source.clone()),
                typ: Some(MountType::BIND),
                read_only: Some(v.read_only),
                ..Default::default()
            });
        }
        let mut env: BTreeMap<String, String> = c.variables.clone();
        env.entry("HOST".into()).or_insert_with(|| "0.0.0.0".into());
        env.insert("PAVED_BIND_ADDRESS".into(), "0.0.0.0".into());
        env.insert("PAVED_ROOT".into(), "/".into());
        env.insert("PAVED_ENVIRONMENT".into(), r.environment.clone());
        env.insert("PAVED_SERVICE".into(), r.name.clone());
        let limits = c.limits.as_ref();
        let mut host = HostConfig {
            mounts: Some(mounts),
            restart_policy: Some(RestartPolicy {
                name: Some(RestartPolicyNameEnum::UNLESS_STOPPED),
                maximum_retry_count: None,
            }),
            memory: limits.and_then(|l| l.memory.as_deref()).and_then(memory_bytes),
            nano_cpus: limits.and_then(|l| l.cpu.as_deref()).and_then(nano_cpus),
            cap_drop: Some(vec!["ALL".into()]),
            security_opt: Some(vec!["no-new-privileges".into()]),
            init: Some(true),
            // Rotated like the process runtime's logs: 10 MiB, one older file.
            log_config: Some(HostConfigLogConfig {
                typ: Some("json-file".into()),
                config: Some(HashMap::from([
                    ("max-size".to_string(), "10m".to_string()),
                    ("max-file".to_string(), "2".to_string()),
                ])),
            }),
            ..Default::default()
        };
        let mut networking = None;
        let mut exposed = None;
        match &first {
            // Later containers share the first one's network: one address, ports published once.
            Some(f) => host.network_mode = Some(format!("container:{f}")),
            None => {
                host.network_mode = Some(network.clone());
                host.port_bindings = Some(
                    ports
                        .values()
                        .map(|p| {
                            let binding =
                                PortBinding { host_ip: Some(address.clone()), host_port: Some(p.to_string()) };
                            (format!("{p}/tcp"), Some(vec![binding]))
                        })
                        .collect(),
                );
                exposed = Some(ports.values().map(|p| format!("{p}/tcp")).collect());
                networking = Some(NetworkingConfig {
                    endpoints_config: Some(HashMap::from([(
                        network.clone(),
                        EndpointSettings { aliases: Some(vec![r.name.clone()]), ..Default::default() },
                    )])),
                });
            }
        }
        let body = ContainerCreateBody {
            image: Some(image),
            user,
            entrypoint: c.command.clone(),
            cmd: c.args.clone(),
            env: Some(env.iter().map(|(k, v)| format!("{k}={v}")).collect()),
            labels: Some(super::labels(
                config,
                &r.environment,
                &[
                    (LABEL_SERVICE, &r.name),
                    (LABEL_CONTAINER, cname),
                    (LABEL_SPEC, &digest),
                    (LABEL_SLOT, slot(r).unwrap_or_default()),
                ],
            )),
            exposed_ports: exposed,
            host_config: Some(host),
            networking_config: networking,
            ..Default::default()
        };
        let opts = CreateContainerOptionsBuilder::default().name(&name).build();
        match docker.create_container(Some(opts), body).await {
            Ok(_) => {}
            // An interrupted apply created it already: removed and made again next attempt.
            Err(bollard::errors::Error::DockerResponseServerError { status_code: 409, message }) => {
                super::remove_container(&docker, &name).await?;
                return Err(DriverError::Retryable(format!("container {name} existed: {message}")));
            }
            Err(e) => return Err(api_err("creating a container")(e)),
        }
        docker.start_container(&name, None).await.map_err(api_err("starting a container"))?;
        first.get_or_insert(name);
    }
    watch_liveness(config, r, dir, &containers, &ports).await
}

/// Starts a liveness watcher per container with a liveness probe, under the
/// workload directory's supervisor (see [`super::liveness`]).
async fn watch_liveness(
    config: &Config,
    r: &Resource,
    dir: &Path,
    containers: &BTreeMap<String, Container>,
    published: &BTreeMap<String, u16>,
) -> Result<(), DriverError> {
    let address = r.properties["address"].as_str().unwrap_or("127.0.0.1").to_string();
    let mut watchers = Vec::new();
    for (cname, c) in containers {
        let Some(p) = &c.liveness_probe else { continue };
        let probe = match (&p.http_get, &p.exec) {
            // Reachable from this machine only on a published port.
            (Some(h), _) if published.values().any(|port| *port == h.port) => {
                WatchProbe::Http { host: address.clone(), port: h.port, path: h.path.clone() }
            }
            (_, Some(e)) => WatchProbe::Exec { command: e.command.clone() },
            _ => continue,
        };
        let file = dir.join(format!("liveness-{cname}.json"));
        let watch = Watch { container: container_name(config, r, cname), probe };
        fsutil::write_json(&file, &watch, false).map_err(DriverError::Retryable)?;
        watchers.push(ContainerSpec {
            name: format!("liveness-{cname}"),
            program: config.exe.clone(),
            args: vec!["__watch".into(), file.display().to_string()],
            env: [("PATH".to_string(), "/usr/local/bin:/usr/bin:/bin".to_string())].into(),
            cwd: dir.to_path_buf(),
            liveness: None,
            sandbox: None,
        });
    }
    supervisor::stop(dir).await.map_err(DriverError::Retryable)?;
    if watchers.is_empty() {
        return Ok(());
    }
    fsutil::write_json(&supervisor::spec_path(dir), &Spec { containers: watchers }, false)
        .map_err(DriverError::Retryable)?;
    supervisor::start(&config.exe, dir).await.map_err(DriverError::Retryable)
}

/// `running`, `crash-looping` (restarting or exited) or `stopped` (gone).
async fn state(config: &Config, r: &Resource) -> Result<&'static str, DriverError> {
    let docker = engine().await?;
    let wanted = parse(r)?.len();
    let found = super::live_containers(&docker, config, &service_labels(r))
        .await
        .map_err(api_err("listing the service's containers"))?;
    let running = found.iter().filter(|c| super::is_running(c)).count();
    Ok(if found.is_empty() {
        "stopped"
    } else if running == wanted && found.len() == wanted {
        "running"
    } else {
        "crash-looping"
    })
}

/// Runs the readiness probes: HTTP from this machine on the published
/// ports, commands inside the container.
async fn ready(config: &Config, r: &Resource) -> Result<bool, DriverError> {
    let address = r.properties["address"].as_str().unwrap_or("127.0.0.1").to_string();
    for (cname, c) in parse(r)? {
        let Some(ScoreProbe { http_get, exec }) = c.readiness_probe else { continue };
        if let Some(h) = http_get {
            let addr = address.clone();
            let ok = tokio::task::spawn_blocking(move || {
                crate::probe::Probe::Http { host: addr, port: h.port, path: h.path }.check(Duration::from_secs(2))
            })
            .await
            .map_err(|e| DriverError::Retryable(e.to_string()))?
            .is_ok();
            if !ok {
                return Ok(false);
            }
        }
        if let Some(e) = exec {
            let docker = engine().await?;
            if super::exec(&docker, &container_name(config, r, &cname), e.command).await.map(|(code, _)| code)
                != Some(0)
            {
                return Ok(false);
            }
        }
    }
    Ok(true)
}

/// Removes the workload's containers, each stopped first with SIGTERM (5 s
/// before SIGKILL): its program closes its connections, so callers on the
/// network reconnect (to the other slot) instead of waiting on a vanished address.
async fn stop(config: &Config, r: &Resource) -> Result<(), DriverError> {
    let docker = engine().await?;
    let found = super::containers(&docker, config, &service_labels(r))
        .await
        .map_err(api_err("listing the service's containers"))?;
    for c in found.into_iter().filter_map(|c| c.id) {
        let graceful = bollard::query_parameters::StopContainerOptionsBuilder::default().t(5).build();
        // Already stopped or gone: removal below settles it either way.
        let _ = docker.stop_container(&c, Some(graceful)).await;
        super::remove_container(&docker, &c).await?;
    }
    Ok(())
}

/// The docker implementation of [`Runtime`].
pub(crate) struct DockerRuntime {
    pub(crate) config: std::sync::Arc<Config>,
}

#[async_trait::async_trait]
impl Runtime for DockerRuntime {
    async fn start(&self, r: &Resource, dir: &Path) -> Result<(), DriverError> {
        start(&self.config, r, dir).await
    }

    async fn state(&self, r: &Resource, _: &Path) -> Result<&'static str, DriverError> {
        state(&self.config, r).await
    }

    async fn ready(&self, r: &Resource, _: &Path) -> Result<bool, DriverError> {
        ready(&self.config, r).await
    }

    /// The containers, then the liveness watchers.
    async fn stop(&self, r: &Resource, dir: &Path) -> Result<(), DriverError> {
        stop(&self.config, r).await?;
        supervisor::stop(dir).await.map_err(DriverError::Retryable)
    }
}

/// One line of a container's output.
pub struct LogLine {
    pub container: String,
    pub line: String,
}

/// The output of a service's containers (all, or one), line by line,
/// merged as it comes, with how many containers speak.
pub async fn logs(
    config: &Config,
    env: &str,
    service: &str,
    container: Option<&str>,
    follow: bool,
    tail: Option<usize>,
) -> Result<(usize, impl Stream<Item = LogLine> + use<>), String> {
    let docker = super::connect().await?;
    let mut filter = vec![format!("{LABEL_ENVIRONMENT}={env}"), format!("{LABEL_SERVICE}={service}")];
    if let Some(c) = container {
        filter.push(format!("{LABEL_CONTAINER}={c}"));
    }
    let found =
        super::containers(&docker, config, &filter).await.map_err(|e| format!("cannot list containers: {e}"))?;
    if found.is_empty() {
        return Err(format!("service `{service}` has no containers in environment `{env}`"));
    }
    let tail = tail.map_or_else(|| "all".to_string(), |n| n.to_string());
    let count = found.len();
    let streams = found.into_iter().map(|c| {
        let name = c.labels.as_ref().and_then(|l| l.get(LABEL_CONTAINER)).cloned().unwrap_or_default();
        let opts = LogsOptionsBuilder::default().stdout(true).stderr(true).follow(follow).tail(&tail).build();
        docker
            .logs(&c.id.unwrap_or_default(), Some(opts))
            .filter_map(|item| async move {
                match item {
                    Ok(
                        LogOutput::StdOut { message } | LogOutput::StdErr { message } | LogOutput::Console { message },
                    ) => Some(String::from_utf8_lossy(&message).to_string()),
                    _ => None,
                }
            })
            .flat_map(move |chunk| {
                let lines: Vec<LogLine> =
                    chunk.lines().map(|l| LogLine { container: name.clone(), line: l.to_string() }).collect();
                futures_util::stream::iter(lines)
            })
            .boxed()
    });
    Ok((count, futures_util::stream::select_all(streams)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn score_quantities_become_docker_limits() {
        assert_eq!(nano_cpus("1"), Some(1_000_000_000));
        assert_eq!(nano_cpus("250m"), Some(250_000_000));
        assert_eq!(nano_cpus("0.5"), Some(500_000_000));
        assert_eq!(nano_cpus("lots"), None);
        assert_eq!(memory_bytes("256Mi"), Some(268_435_456));
        assert_eq!(memory_bytes("1G"), Some(1_000_000_000));
        assert_eq!(memory_bytes("512"), Some(512));
        assert_eq!(memory_bytes("12Qi"), None);
    }
}
