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
//!
//! Every process and exec probe runs in a sandbox (`crate::sandbox`): the
//! bundle as its `/`, its own directory writable, volumes bound at their
//! targets, as the environment's unprivileged user; a program the bundle
//! does not hold is refused (a Score `command: [/bin/sh]` does not reach the
//! host's shell). The container's directory is emptied on each start, like
//! a container's writable layer, so nothing a workload left there (a
//! symbolic link, say) is followed by paved when it writes the Score files.

use crate::Config;
use crate::fsutil;
use crate::probe::Probe;
use crate::sandbox::{self, Mount, Sandbox};
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
            crate::remove_dir(&root).map_err(DriverError::Retryable)?;
            std::fs::create_dir_all(&root).map_err(|e| DriverError::Retryable(e.to_string()))?;
            for (target, f) in &c.files {
                write_file(&root, target, f)?;
            }
            let mut volumes = Vec::new();
            for (target, v) in &c.volumes {
                // The mount point, made now so it is the environment user's.
                let at = sandbox::confined(&root, target).map_err(|e| permanent(format!("volume {e}")))?;
                std::fs::create_dir_all(&at).map_err(|e| DriverError::Retryable(e.to_string()))?;
                volumes.push(Mount { source: v.source.clone().into(), target: target.clone(), read_only: v.read_only });
            }
            let sandbox = Sandbox {
                image: image.root.clone(),
                root: root.clone(),
                volumes,
                uid: sandbox::uid_for(&r.environment),
                host_tools: false,
            };
            sandbox.hand_over(&root).map_err(|e| DriverError::Retryable(format!("{}: {e}", root.display())))?;
            let program = |prog: &str| {
                sandbox.program(prog).map(PathBuf::from).map_err(|e| permanent(format!("container `{name}`: {e}")))
            };
            let mut env = c.variables.clone();
            env.entry("HOST".into()).or_insert_with(|| address.clone());
            env.insert("PAVED_BIND_ADDRESS".into(), address.clone());
            env.insert("PAVED_ROOT".into(), root.display().to_string());
            env.insert("PAVED_ENVIRONMENT".into(), r.environment.clone());
            env.insert("PAVED_SERVICE".into(), r.name.clone());
            env.insert("PAVED_IMAGE_DIGEST".into(), image.digest.clone());
            // Inside the sandbox these are the bundle's own directories.
            env.entry("PATH".into()).or_insert_with(|| "/usr/local/bin:/usr/bin:/bin".into());
            let probe = |p: &ScoreProbe| -> Option<Result<Probe, DriverError>> {
                if let Some(h) = &p.http_get {
                    return Some(Ok(Probe::Http { host: address.clone(), port: h.port, path: h.path.clone() }));
                }
                let cmd = p.exec.as_ref()?.command.clone();
                let (first, rest) = cmd.split_first()?;
                Some(program(first).map(|program| Probe::Exec {
                    program,
                    args: rest.to_vec(),
                    env: env.clone(),
                    cwd: root.clone(),
                    sandbox: Some(sandbox.clone()),
                }))
            };
            readiness.extend(c.readiness_probe.as_ref().and_then(probe).transpose()?);
            let liveness = c.liveness_probe.as_ref().and_then(probe).transpose()?;
            spec.containers.push(ContainerSpec {
                program: program(&argv[0])?,
                name,
                args: argv[1..].to_vec(),
                env,
                cwd: root,
                liveness,
                sandbox: Some(sandbox),
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
