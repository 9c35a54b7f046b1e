//! `local.workload` on the `process` runtime: each Score container as a
//! supervised process run from a bundle of the local image store.
//!
//! Under the workload directory: `spec.json` (what the supervisor runs),
//! `containers/NAME/root/` (working directory, Score files and volume links;
//! `$PAVED_ROOT` points at it since a process, unlike a container, cannot be
//! given its own `/`), `readiness.json` and `logs/`.
//!
//! Processes get a clean environment: the Score variables, `PATH`, and
//! `HOST` / `PAVED_BIND_ADDRESS` = the environment's loopback address, which
//! they must listen on (as `PORT` is the convention on many PaaS).

use crate::Config;
use crate::fsutil;
use crate::images::Image;
use crate::probe::Probe;
use crate::supervisor::{self, ContainerSpec, Spec, Status};
use crate::workload::{Container, Runtime, ScoreProbe, permanent, write_file};
use async_trait::async_trait;
use paved_engine::{DriverError, Resource};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

pub(crate) struct ProcessRuntime {
    pub(crate) config: Arc<Config>,
}

/// Where a program named in a command lives: inside the bundle first (like
/// a container's root filesystem), else as given (PATH lookup).
fn program(image: &Image, name: &str) -> PathBuf {
    let inside = image.root.join(name.trim_start_matches('/'));
    if inside.is_file() { inside } else { PathBuf::from(name) }
}

impl ProcessRuntime {
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
}

#[async_trait]
impl Runtime for ProcessRuntime {
    async fn start(&self, r: &Resource, dir: &Path) -> Result<(), DriverError> {
        supervisor::stop(dir).await.map_err(DriverError::Retryable)?;
        let (spec, readiness) = self.prepare(r, dir)?;
        fsutil::write_json(&supervisor::spec_path(dir), &spec, true).map_err(DriverError::Retryable)?;
        fsutil::write_json(&dir.join("readiness.json"), &readiness, true).map_err(DriverError::Retryable)?;
        supervisor::start(&self.config.exe, dir).await.map_err(DriverError::Retryable)
    }

    async fn state(&self, _: &Resource, dir: &Path) -> Result<&'static str, DriverError> {
        let status: Status = fsutil::read_json(&supervisor::status_path(dir)).ok().flatten().unwrap_or_default();
        let all_up = !status.containers.is_empty() && status.containers.values().all(|c| c.state == "running");
        Ok(match (supervisor::is_running(dir), all_up) {
            (false, _) => "stopped",
            (true, true) => "running",
            (true, false) => "crash-looping",
        })
    }

    async fn ready(&self, _: &Resource, dir: &Path) -> Result<bool, DriverError> {
        let readiness: Vec<Probe> = fsutil::read_json(&dir.join("readiness.json")).ok().flatten().unwrap_or_default();
        tokio::task::spawn_blocking(move || readiness.iter().all(|p| p.check(Duration::from_secs(2)).is_ok()))
            .await
            .map_err(|e| DriverError::Retryable(e.to_string()))
    }

    async fn stop(&self, _: &Resource, dir: &Path) -> Result<(), DriverError> {
        supervisor::stop(dir).await.map_err(DriverError::Retryable)
    }
}

fn link_volume(root: &Path, target: &str, source: &str) -> Result<(), DriverError> {
    let link = root.join(target.trim_start_matches('/'));
    if let Some(parent) = link.parent() {
        std::fs::create_dir_all(parent).map_err(|e| DriverError::Retryable(e.to_string()))?;
    }
    let _ = std::fs::remove_file(&link);
    std::os::unix::fs::symlink(source, &link).map_err(|e| DriverError::Retryable(e.to_string()))
}
