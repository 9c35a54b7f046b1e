//! The `docker` runtime: workloads as containers on the Docker Engine API
//! (through bollard), one Docker network per environment.
//!
//! Every object paved creates is named `paved-INSTANCE-ENV-…` and labelled
//! `paved.instance`, `paved.environment` (and `paved.service` for
//! workloads), where INSTANCE is derived from the data directory: several
//! paved installations (users, test runs) share one engine without touching
//! each other's objects, and a crash-resumed apply finds its containers by
//! name and labels.
//!
//! No image is pulled: images are built locally from files of this machine
//! (see [`rootfs`]) and cached by a digest of their content.

pub mod liveness;
pub mod rootfs;
pub mod workload;

use crate::Config;
use bollard::Docker;
use bollard::models::{ContainerSummaryStateEnum, NetworkCreateRequest};
use bollard::query_parameters::{
    InspectNetworkOptions, ListContainersOptionsBuilder, ListNetworksOptionsBuilder, RemoveContainerOptionsBuilder,
};
use paved_engine::DriverError;
use std::collections::HashMap;
use std::time::Duration;

pub const LABEL_INSTANCE: &str = "paved.instance";
pub const LABEL_ENVIRONMENT: &str = "paved.environment";
pub const LABEL_SERVICE: &str = "paved.service";
pub const LABEL_CONTAINER: &str = "paved.container";
/// Which of a workload's two slots a container belongs to (`blue`, `green`).
pub const LABEL_SLOT: &str = "paved.slot";
/// A digest of what the container was created from: a different one means
/// the container must be recreated (containers are immutable).
pub const LABEL_SPEC: &str = "paved.spec";

/// Connects to the local engine (`DOCKER_HOST` or `/var/run/docker.sock`)
/// at the API version it speaks.
pub async fn connect() -> Result<Docker, String> {
    let docker = Docker::connect_with_local_defaults().map_err(|e| format!("cannot reach the Docker Engine: {e}"))?;
    match tokio::time::timeout(Duration::from_secs(5), docker.negotiate_version()).await {
        Ok(Ok(d)) => Ok(d),
        Ok(Err(e)) => Err(format!(
            "the Docker Engine does not answer ({e}); start it, or use the process runtime (`PAVED_RUNTIME=process`)"
        )),
        Err(_) => Err("the Docker Engine did not answer within 5 s; use the process runtime (`PAVED_RUNTIME=process`)"
            .to_string()),
    }
}

/// Whether a Docker Engine answers on this machine (runtime detection).
pub async fn available() -> bool {
    connect().await.is_ok()
}

pub(crate) async fn engine() -> Result<Docker, DriverError> {
    connect().await.map_err(DriverError::Retryable)
}

/// Errors of the engine: a missing object is handled by callers; a refused
/// request (bad configuration) is permanent; the rest may pass.
pub(crate) fn api_err(what: &str) -> impl Fn(bollard::errors::Error) -> DriverError + '_ {
    move |e| match &e {
        bollard::errors::Error::DockerResponseServerError { status_code: 400 | 403 | 422, message } => {
            DriverError::Permanent(format!("{what}: the Docker Engine refused: {message}"))
        }
        _ => DriverError::Retryable(format!("{what}: {e}")),
    }
}

pub(crate) fn is_not_found(e: &bollard::errors::Error) -> bool {
    matches!(e, bollard::errors::Error::DockerResponseServerError { status_code: 404, .. })
}

impl Config {
    /// Tells this data directory's objects apart from other installations'.
    pub fn instance(&self) -> String {
        use sha2::{Digest, Sha256};
        hex::encode(Sha256::digest(self.data_dir.to_string_lossy().as_bytes()))[..10].to_string()
    }

    /// Name of a Docker object of an environment: `paved-INSTANCE-ENV[-REST]`.
    pub fn docker_name(&self, env: &str, rest: &[&str]) -> String {
        let mut name = format!("paved-{}-{env}", self.instance());
        for part in rest {
            name.push('-');
            name.push_str(part);
        }
        name
    }
}

pub(crate) fn labels(config: &Config, env: &str, extra: &[(&str, &str)]) -> HashMap<String, String> {
    let mut l = HashMap::from([
        (LABEL_INSTANCE.to_string(), config.instance()),
        (LABEL_ENVIRONMENT.to_string(), env.to_string()),
    ]);
    l.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    l
}

/// Containers of this installation matching all `labels` (`key=value`).
pub(crate) async fn containers(
    docker: &Docker,
    config: &Config,
    labels: &[String],
) -> Result<Vec<bollard::models::ContainerSummary>, bollard::errors::Error> {
    let mut filter = vec![format!("{LABEL_INSTANCE}={}", config.instance())];
    filter.extend(labels.iter().cloned());
    let opts = ListContainersOptionsBuilder::default()
        .all(true)
        .filters(&HashMap::from([("label".to_string(), filter)]))
        .build();
    docker.list_containers(Some(opts)).await
}

/// [`containers`] without those on their way out ([`is_going`]).
pub(crate) async fn live_containers(
    docker: &Docker,
    config: &Config,
    labels: &[String],
) -> Result<Vec<bollard::models::ContainerSummary>, bollard::errors::Error> {
    Ok(containers(docker, config, labels).await?.into_iter().filter(|c| !is_going(c)).collect())
}

pub(crate) fn is_running(c: &bollard::models::ContainerSummary) -> bool {
    c.state == Some(ContainerSummaryStateEnum::RUNNING)
}

/// Being removed (an interrupted delete the engine still finishes) or dead:
/// as good as gone.
pub(crate) fn is_going(c: &bollard::models::ContainerSummary) -> bool {
    matches!(c.state, Some(ContainerSummaryStateEnum::REMOVING | ContainerSummaryStateEnum::DEAD))
}

pub(crate) async fn remove_container(docker: &Docker, name: &str) -> Result<(), DriverError> {
    let opts = RemoveContainerOptionsBuilder::default().force(true).v(true).build();
    match docker.remove_container(name, Some(opts)).await {
        Ok(()) => Ok(()),
        Err(e) if is_not_found(&e) => Ok(()),
        // 409: removal already in progress (a concurrent or interrupted apply).
        Err(bollard::errors::Error::DockerResponseServerError { status_code: 409, message }) => {
            Err(DriverError::Retryable(format!("container {name} is being removed: {message}")))
        }
        Err(e) => Err(api_err("removing a container")(e)),
    }
}

/// Runs a command in a running container: its exit code and output, or
/// `None` when it could not run (no such container or program, 5 s timeout).
pub(crate) async fn exec(docker: &Docker, container: &str, command: Vec<String>) -> Option<(i64, String)> {
    use bollard::exec::{CreateExecOptions, StartExecResults};
    use futures_util::StreamExt;
    let opts = CreateExecOptions {
        cmd: Some(command),
        attach_stdout: Some(true),
        attach_stderr: Some(true),
        ..Default::default()
    };
    let exec = docker.create_exec(container, opts).await.ok()?;
    let mut output = String::new();
    if let Ok(StartExecResults::Attached { output: mut stream, .. }) = docker.start_exec(&exec.id, None).await {
        let drain = async {
            while let Some(Ok(chunk)) = stream.next().await {
                output.push_str(&chunk.to_string());
            }
        };
        tokio::time::timeout(Duration::from_secs(5), drain).await.ok()?;
    }
    let code = docker.inspect_exec(&exec.id).await.ok()?.exit_code?;
    Some((code, output))
}

/// A platform service of one environment (its PostgreSQL, a Redis): a
/// container attached only to the environment's network, reachable there
/// as `alias`, publishing nothing, with its state directory bind-mounted
/// and run as that directory's owner (so it reads its 0600 files).
pub(crate) struct PlatformContainer<'a> {
    pub name: String,
    pub env: &'a str,
    pub alias: String,
    /// `paved.service` (and `paved.container`, if any) labels.
    pub labels: &'a [(&'a str, &'a str)],
    pub dir: &'a std::path::Path,
    pub mount: &'a str,
    pub cmd: Vec<String>,
}

/// Starts a [`PlatformContainer`] unless it runs, creating it first when
/// absent; `image(uid, gid)` builds its image only then.
pub(crate) async fn ensure_platform_container<F, Fut>(
    docker: &Docker,
    config: &Config,
    c: PlatformContainer<'_>,
    image: F,
) -> Result<(), DriverError>
where
    F: FnOnce(u32, u32) -> Fut,
    Fut: std::future::Future<Output = Result<String, DriverError>>,
{
    use bollard::models::{
        ContainerCreateBody, EndpointSettings, HostConfig, Mount, MountType, NetworkingConfig, RestartPolicy,
        RestartPolicyNameEnum,
    };
    use bollard::query_parameters::{CreateContainerOptionsBuilder, InspectContainerOptions};
    match docker.inspect_container(&c.name, None::<InspectContainerOptions>).await {
        Ok(found) if found.state.as_ref().and_then(|s| s.running).unwrap_or(false) => return Ok(()),
        Ok(_) => return docker.start_container(&c.name, None).await.map_err(api_err("starting a platform container")),
        Err(e) if is_not_found(&e) => {}
        Err(e) => return Err(api_err("inspecting a platform container")(e)),
    }
    let (uid, gid) = {
        use std::os::unix::fs::MetadataExt;
        let m = std::fs::metadata(c.dir)
            .map_err(|e| DriverError::Retryable(format!("cannot read {}: {e}", c.dir.display())))?;
        (m.uid(), m.gid())
    };
    let image = image(uid, gid).await?;
    let network = config.docker_name(c.env, &[]);
    let body = ContainerCreateBody {
        image: Some(image),
        user: Some(format!("{uid}:{gid}")),
        cmd: Some(c.cmd),
        labels: Some(labels(config, c.env, c.labels)),
        host_config: Some(HostConfig {
            mounts: Some(vec![Mount {
                target: Some(c.mount.into()),
                source: Some(c.dir.display().to_string()),
                typ: Some(MountType::BIND),
                ..Default::default()
            }]),
            network_mode: Some(network.clone()),
            restart_policy: Some(RestartPolicy {
                name: Some(RestartPolicyNameEnum::UNLESS_STOPPED),
                maximum_retry_count: None,
            }),
            cap_drop: Some(vec!["ALL".into()]),
            security_opt: Some(vec!["no-new-privileges".into()]),
            ..Default::default()
        }),
        networking_config: Some(NetworkingConfig {
            endpoints_config: Some(HashMap::from([(
                network,
                EndpointSettings { aliases: Some(vec![c.alias]), ..Default::default() },
            )])),
        }),
        ..Default::default()
    };
    let opts = CreateContainerOptionsBuilder::default().name(&c.name).build();
    docker.create_container(Some(opts), body).await.map_err(api_err("creating a platform container"))?;
    docker.start_container(&c.name, None).await.map_err(api_err("starting a platform container"))
}

/// Creates the environment's network unless it exists; returns its name.
pub(crate) async fn ensure_network(config: &Config, env: &str) -> Result<String, DriverError> {
    let docker = engine().await?;
    let name = config.docker_name(env, &[]);
    match docker.inspect_network(&name, None::<InspectNetworkOptions>).await {
        Ok(_) => return Ok(name),
        Err(e) if is_not_found(&e) => {}
        Err(e) => return Err(api_err("inspecting the environment's network")(e)),
    }
    let request = NetworkCreateRequest {
        name: name.clone(),
        driver: Some("bridge".into()),
        labels: Some(labels(config, env, &[])),
        ..Default::default()
    };
    match docker.create_network(request).await {
        Ok(_) => Ok(name),
        // Created concurrently (an interrupted apply still finishing): found next time.
        Err(bollard::errors::Error::DockerResponseServerError { status_code: 409, .. }) => {
            Err(DriverError::Retryable(format!("network {name} is being created")))
        }
        Err(e) => Err(api_err("creating the environment's network")(e)),
    }
}

pub(crate) async fn network_exists(config: &Config, env: &str) -> Result<bool, DriverError> {
    let docker = engine().await?;
    match docker.inspect_network(&config.docker_name(env, &[]), None::<InspectNetworkOptions>).await {
        Ok(_) => Ok(true),
        Err(e) if is_not_found(&e) => Ok(false),
        Err(e) => Err(api_err("inspecting the environment's network")(e)),
    }
}

/// Removes every container of the environment, then its network.
pub(crate) async fn remove_environment(config: &Config, env: &str) -> Result<(), DriverError> {
    let docker = engine().await?;
    let found = containers(&docker, config, &[format!("{LABEL_ENVIRONMENT}={env}")])
        .await
        .map_err(api_err("listing the environment's containers"))?;
    for c in found {
        if let Some(id) = c.id {
            remove_container(&docker, &id).await?;
        }
    }
    match docker.remove_network(&config.docker_name(env, &[])).await {
        Ok(()) => Ok(()),
        Err(e) if is_not_found(&e) => Ok(()),
        Err(e) => Err(api_err("removing the environment's network")(e)),
    }
}

/// Removes every container and network of this installation (`paved down`).
/// Nothing to do when no engine answers.
pub async fn teardown(config: &Config) -> Result<(), String> {
    let Ok(docker) = connect().await else { return Ok(()) };
    let found = containers(&docker, config, &[]).await.map_err(|e| format!("cannot list containers: {e}"))?;
    for c in found {
        if let Some(id) = c.id {
            remove_container(&docker, &id).await.map_err(|e| e.to_string())?;
        }
    }
    let filter = HashMap::from([("label".to_string(), vec![format!("{LABEL_INSTANCE}={}", config.instance())])]);
    let networks = docker
        .list_networks(Some(ListNetworksOptionsBuilder::default().filters(&filter).build()))
        .await
        .map_err(|e| format!("cannot list networks: {e}"))?;
    for n in networks.into_iter().filter_map(|n| n.name) {
        match docker.remove_network(&n).await {
            Ok(()) => {}
            Err(e) if is_not_found(&e) => {}
            Err(e) => return Err(format!("cannot remove network {n}: {e}")),
        }
    }
    Ok(())
}
