//! `local.workload` on the `process` runtime: each Score container as a
//! supervised process run from a bundle of the local image store.
//!
//! Under `envs/ENV/workloads/SERVICE/`: `properties.json` (what was applied),
//! `spec.json` (what the supervisor runs), `containers/NAME/root/` (working
//! directory, Score files and volume links; `$PAVED_ROOT` points at it since
//! a process, unlike a container, cannot be given its own `/`) and `logs/`.
//!
//! Processes get a clean environment: the Score variables, `PATH`, and
//! `HOST` / `PAVED_BIND_ADDRESS` = the environment's loopback address, which
//! they must listen on (as `PORT` is the convention on many PaaS).

use crate::Config;
use crate::fsutil;
use crate::images::Image;
use crate::probe::Probe;
use crate::supervisor::{self, ContainerSpec, Spec, Status};
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

/// Where a program named in a command lives: inside the bundle first (like
/// a container's root filesystem), else as given (PATH lookup).
fn program(image: &Image, name: &str) -> PathBuf {
    let inside = image.root.join(name.trim_start_matches('/'));
    if inside.is_file() { inside } else { PathBuf::from(name) }
}

impl WorkloadDriver {
    fn dir(&self, r: &Resource) -> PathBuf {
        self.config.workload_dir(&r.environment, &r.name)
    }

    /// Turns the resolved properties into what the supervisor runs, writing
    /// Score files and volume links on the way.
    fn prepare(&self, r: &Resource, dir: &Path) -> Result<(Spec, Vec<Probe>), DriverError> {
        let address = r.properties["address"].as_str().unwrap_or("127.0.0.1").to_string();
        let containers: BTreeMap<String, Container> =
            serde_json::from_value(r.properties["containers"].clone()).map_err(permanent)?;
        let images = self.config.images();
        let mut spec = Spec { containers: Vec::new() };
        let mut readiness = Vec::new();
        for (name, c) in containers {
            let image = images.resolve(&c.image).map_err(permanent)?;
            let mut argv: Vec<String> = match &c.command {
                Some(cmd) => cmd.clone(),
                None => image.manifest.entrypoint.clone(),
            };
            match (&c.args, &c.command) {
                (Some(args), _) => argv.extend(args.iter().cloned()),
                (None, None) => argv.extend(image.manifest.cmd.iter().cloned()),
                (None, Some(_)) => {}
            }
            if argv.is_empty() {
                return Err(permanent(format!(
                    "container `{name}`: image {} has no entrypoint and the Score file no `command`",
                    image.digest
                )));
            }
            let root = dir.join("containers").join(&name).join("root");
            std::fs::create_dir_all(&root).map_err(|e| DriverError::Retryable(e.to_string()))?;
            for (target, f) in &c.files {
                write_file(&root, target, f)?;
            }
            for (target, v) in &c.volumes {
                link_volume(&root, target, &v.source)?;
            }
            let mut env = c.variables.clone();
            env.entry("HOST".into()).or_insert_with(|| address.clone());
            env.insert("PAVED_BIND_ADDRESS".into(), address.clone());
            env.insert("PAVED_ROOT".into(), root.display().to_string());
            env.insert("PAVED_ENVIRONMENT".into(), r.environment.clone());
            env.insert("PAVED_SERVICE".into(), r.name.clone());
            env.insert("PAVED_IMAGE_DIGEST".into(), image.digest.clone());
            env.entry("PATH".into()).or_insert_with(|| "/usr/local/bin:/usr/bin:/bin".into());
            let probe = |p: &ScoreProbe| -> Option<Probe> {
                if let Some(h) = &p.http_get {
                    return Some(Probe::Http { host: address.clone(), port: h.port, path: h.path.clone() });
                }
                let cmd = p.exec.as_ref()?.command.clone();
                let (first, rest) = cmd.split_first()?;
                Some(Probe::Exec {
                    program: program(&image, first),
                    args: rest.to_vec(),
                    env: env.clone(),
                    cwd: root.clone(),
                })
            };
            readiness.extend(c.readiness_probe.as_ref().and_then(probe));
            let liveness = c.liveness_probe.as_ref().and_then(probe);
            spec.containers.push(ContainerSpec {
                name,
                program: program(&image, &argv[0]),
                args: argv[1..].to_vec(),
                env,
                cwd: root,
                liveness,
            });
        }
        Ok((spec, readiness))
    }

    fn outputs(r: &Resource) -> Outputs {
        let address = r.properties["address"].as_str().unwrap_or_default().to_string();
        let mut out = Outputs::from([("address".to_string(), json!(address))]);
        if let Some(port) = target_ports(&r.properties).into_values().next() {
            out.insert("url".into(), json!(format!("http://{address}:{port}")));
        }
        out
    }

    async fn start(&self, r: &Resource) -> Result<Outputs, DriverError> {
        let dir = self.dir(r);
        if is_docker(r) {
            std::fs::create_dir_all(&dir).map_err(|e| DriverError::Retryable(e.to_string()))?;
            crate::docker::workload::start(&self.config, r, &dir).await?;
            fsutil::write_json(&dir.join("properties.json"), &r.properties, true).map_err(DriverError::Retryable)?;
            return Ok(Self::outputs(r));
        }
        supervisor::stop(&dir).await.map_err(DriverError::Retryable)?;
        let (spec, readiness) = self.prepare(r, &dir)?;
        fsutil::write_json(&supervisor::spec_path(&dir), &spec, true).map_err(DriverError::Retryable)?;
        fsutil::write_json(&dir.join("readiness.json"), &readiness, true).map_err(DriverError::Retryable)?;
        fsutil::write_json(&dir.join("properties.json"), &r.properties, true).map_err(DriverError::Retryable)?;
        supervisor::start(&self.config.exe, &dir).await.map_err(DriverError::Retryable)?;
        Ok(Self::outputs(r))
    }
}

fn is_docker(r: &Resource) -> bool {
    r.properties["runtime"] == "docker"
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

fn link_volume(root: &Path, target: &str, source: &str) -> Result<(), DriverError> {
    let link = root.join(target.trim_start_matches('/'));
    if let Some(parent) = link.parent() {
        std::fs::create_dir_all(parent).map_err(|e| DriverError::Retryable(e.to_string()))?;
    }
    let _ = std::fs::remove_file(&link);
    std::os::unix::fs::symlink(source, &link).map_err(|e| DriverError::Retryable(e.to_string()))
}

#[async_trait]
impl Driver for WorkloadDriver {
    async fn observe(&self, r: &Resource) -> Result<Observation, DriverError> {
        let dir = self.dir(r);
        let Some(mut properties) = fsutil::read_json::<Value>(&dir.join("properties.json")).map_err(permanent)? else {
            return Ok(Observation::Absent);
        };
        let applied = Resource { properties: properties.clone(), ..r.clone() };
        if is_docker(&applied) {
            properties["state"] = json!(crate::docker::workload::state(&self.config, &applied).await?);
            let ready =
                properties["state"] == "running" && crate::docker::workload::ready(&self.config, &applied).await?;
            properties["ports"] = listening_ports(&applied).await?;
            return Ok(Observation::Present { properties, outputs: Self::outputs(&applied), ready });
        }
        let running = supervisor::is_running(&dir);
        let status: Status = fsutil::read_json(&supervisor::status_path(&dir)).ok().flatten().unwrap_or_default();
        let all_up = !status.containers.is_empty() && status.containers.values().all(|c| c.state == "running");
        let state = match (running, all_up) {
            (false, _) => "stopped",
            (true, true) => "running",
            (true, false) => "crash-looping",
        };
        properties["state"] = json!(state);
        let readiness: Vec<Probe> = fsutil::read_json(&dir.join("readiness.json")).ok().flatten().unwrap_or_default();
        let probes_pass =
            tokio::task::spawn_blocking(move || readiness.iter().all(|p| p.check(Duration::from_secs(2)).is_ok()))
                .await
                .map_err(|e| DriverError::Retryable(e.to_string()))?;
        properties["ports"] = listening_ports(&applied).await?;
        let ready = state == "running" && probes_pass;
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
        if is_docker(r) {
            crate::docker::workload::stop(&self.config, r).await?;
        }
        supervisor::stop(&dir).await.map_err(DriverError::Retryable)?;
        crate::remove_dir(&dir).map_err(DriverError::Retryable)
    }
}
