//! `local.workload`: a Score workload, run by one of two runtimes behind
//! the small [`Runtime`] interface: supervised processes
//! ([`crate::process`]) or containers on the Docker Engine
//! ([`crate::docker::workload`]), as the `runtime` property says.
//!
//! What does not depend on the runtime lives here: the workload directory
//! `envs/ENV/workloads/SERVICE/` with `properties.json` (what was applied,
//! how the workload is found again), outputs, and observing which service
//! ports really listen on the environment's address (both runtimes serve
//! them there).

use crate::Config;
use crate::fsutil;
use async_trait::async_trait;
use paved_engine::{Driver, DriverError, Observation, Outputs, Resource};
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

pub struct WorkloadDriver {
    pub config: Arc<Config>,
    pub(crate) process: crate::process::ProcessRuntime,
    pub(crate) docker: crate::docker::workload::DockerRuntime,
}

impl WorkloadDriver {
    pub fn new(config: Arc<Config>) -> WorkloadDriver {
        WorkloadDriver {
            process: crate::process::ProcessRuntime { config: config.clone() },
            docker: crate::docker::workload::DockerRuntime { config: config.clone() },
            config,
        }
    }
}

/// How a workload's containers run. Implementations find what they started
/// again by the workload directory and the resource alone (crash safety).
#[async_trait]
pub(crate) trait Runtime: Send + Sync {
    /// Starts the containers, or restarts them when the properties changed.
    async fn start(&self, r: &Resource, dir: &Path) -> Result<(), DriverError>;
    /// `running`, `crash-looping` (up, not all of it) or `stopped`.
    async fn state(&self, r: &Resource, dir: &Path) -> Result<&'static str, DriverError>;
    /// Whether every readiness probe passes.
    async fn ready(&self, r: &Resource, dir: &Path) -> Result<bool, DriverError>;
    /// Stops the containers and removes what the runtime created for them.
    async fn stop(&self, r: &Resource, dir: &Path) -> Result<(), DriverError>;
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Container {
    pub(crate) image: String,
    pub(crate) command: Option<Vec<String>>,
    pub(crate) args: Option<Vec<String>>,
    #[serde(default)]
    pub(crate) variables: BTreeMap<String, String>,
    #[serde(default)]
    pub(crate) files: BTreeMap<String, FileSpec>,
    #[serde(default)]
    pub(crate) volumes: BTreeMap<String, VolumeSpec>,
    pub(crate) liveness_probe: Option<ScoreProbe>,
    pub(crate) readiness_probe: Option<ScoreProbe>,
    pub(crate) limits: Option<Limits>,
}

/// Score `resources.limits`: `cpu` in cores or millicores (`"1"`, `"250m"`),
/// `memory` with a binary or decimal suffix (`"256Mi"`, `"1G"`).
#[derive(Debug, Deserialize)]
pub(crate) struct Limits {
    pub(crate) cpu: Option<String>,
    pub(crate) memory: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct FileSpec {
    pub(crate) content: Option<String>,
    pub(crate) source: Option<String>,
    pub(crate) binary_content: Option<String>,
    pub(crate) mode: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct VolumeSpec {
    pub(crate) source: String,
    #[serde(default)]
    pub(crate) read_only: bool,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ScoreProbe {
    pub(crate) http_get: Option<HttpGet>,
    pub(crate) exec: Option<ExecCommand>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct HttpGet {
    pub(crate) path: String,
    pub(crate) port: u16,
}

#[derive(Debug, Deserialize)]
pub(crate) struct ExecCommand {
    pub(crate) command: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Port {
    pub(crate) target_port: u16,
}

pub(crate) fn permanent(e: impl std::fmt::Display) -> DriverError {
    DriverError::Permanent(e.to_string())
}

impl WorkloadDriver {
    fn dir(&self, r: &Resource) -> PathBuf {
        self.config.workload_dir(&r.environment, &r.name)
    }

    fn outputs(r: &Resource) -> Outputs {
        let address = r.properties["address"].as_str().unwrap_or_default().to_string();
        let mut out = Outputs::from([("address".to_string(), json!(address))]);
        if let Some(port) = target_ports(&r.properties).into_values().next() {
            out.insert("url".into(), json!(format!("http://{address}:{port}")));
        }
        out
    }

    fn runtime(&self, r: &Resource) -> &dyn Runtime {
        if r.properties["runtime"] == "docker" { &self.docker } else { &self.process }
    }

    async fn start(&self, r: &Resource) -> Result<Outputs, DriverError> {
        let dir = self.dir(r);
        std::fs::create_dir_all(&dir).map_err(|e| DriverError::Retryable(e.to_string()))?;
        self.runtime(r).start(r, &dir).await?;
        // Written last: a workload whose start failed is not taken as applied.
        fsutil::write_json(&dir.join("properties.json"), &r.properties, true).map_err(DriverError::Retryable)?;
        Ok(Self::outputs(r))
    }
}

pub(crate) fn target_ports(properties: &Value) -> BTreeMap<String, u16> {
    serde_json::from_value::<BTreeMap<String, Port>>(properties["ports"].clone())
        .unwrap_or_default()
        .into_iter()
        .map(|(k, p)| (k, p.target_port))
        .collect()
}

/// The applied ports that really listen on the environment's address: a
/// process or container that moved port is drift.
async fn listening_ports(applied: &Resource) -> Result<Value, DriverError> {
    let address = applied.properties["address"].as_str().unwrap_or("127.0.0.1").to_string();
    let mut ports = applied.properties["ports"].clone();
    let targets = target_ports(&applied.properties);
    let down: Vec<String> = tokio::task::spawn_blocking(move || {
        targets
            .into_iter()
            .filter(|(_, port)| !crate::probe::listening(&address, *port, Duration::from_millis(300)))
            .map(|(name, _)| name)
            .collect()
    })
    .await
    .map_err(|e| DriverError::Retryable(e.to_string()))?;
    if let Value::Object(map) = &mut ports {
        for name in down {
            map.remove(&name);
        }
    }
    Ok(ports)
}

/// A Score file under the container root; `..` cannot escape it.
pub(crate) fn write_file(root: &Path, target: &str, f: &FileSpec) -> Result<(), DriverError> {
    let rel = Path::new(target.trim_start_matches('/'));
    if rel.components().any(|c| !matches!(c, std::path::Component::Normal(_))) {
        return Err(permanent(format!("file target `{target}` must be a plain path inside the container")));
    }
    let bytes = match (&f.content, &f.binary_content, &f.source) {
        (Some(text), _, _) => text.clone().into_bytes(),
        (None, Some(_), _) => return Err(permanent(format!("file `{target}`: binaryContent is not supported yet"))),
        (None, None, Some(src)) => {
            return Err(permanent(format!("file `{target}`: `source: {src}` is not supported yet; inline `content`")));
        }
        (None, None, None) => Vec::new(),
    };
    let path = root.join(rel);
    fsutil::write_atomic(&path, &bytes, false).map_err(DriverError::Retryable)?;
    let mode = f.mode.as_deref().and_then(|m| u32::from_str_radix(m, 8).ok()).unwrap_or(0o644);
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(mode))
        .map_err(|e| DriverError::Retryable(e.to_string()))
}

#[async_trait]
impl Driver for WorkloadDriver {
    async fn observe(&self, r: &Resource) -> Result<Observation, DriverError> {
        let dir = self.dir(r);
        let Some(mut properties) = fsutil::read_json::<Value>(&dir.join("properties.json")).map_err(permanent)? else {
            return Ok(Observation::Absent);
        };
        let applied = Resource { properties: properties.clone(), ..r.clone() };
        let runtime = self.runtime(&applied);
        let state = runtime.state(&applied, &dir).await?;
        properties["state"] = json!(state);
        let ready = state == "running" && runtime.ready(&applied, &dir).await?;
        properties["ports"] = listening_ports(&applied).await?;
        Ok(Observation::Present { properties, outputs: Self::outputs(&applied), ready })
    }

    async fn create(&self, r: &Resource) -> Result<Outputs, DriverError> {
        self.start(r).await
    }

    async fn update(&self, r: &Resource) -> Result<Outputs, DriverError> {
        self.start(r).await
    }

    async fn delete(&self, r: &Resource) -> Result<(), DriverError> {
        let dir = self.dir(r);
        self.runtime(r).stop(r, &dir).await?;
        crate::remove_dir(&dir).map_err(DriverError::Retryable)
    }
}
