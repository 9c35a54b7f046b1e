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
use crate::slots::{self, Slot};
use async_trait::async_trait;
use paved_engine::{Driver, DriverError, Observation, Outputs, Resource};
use paved_model::Strategy;
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::Path;
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

    /// What was applied last, if anything.
    fn applied(&self, r: &Resource) -> Result<Option<Resource>, DriverError> {
        let file = slots::workload_dir(&self.config, r).join("properties.json");
        let properties = fsutil::read_json::<Value>(&file).map_err(permanent)?;
        Ok(properties.map(|properties| Resource { properties, ..r.clone() }))
    }

    /// Starts `r` in `slot` (restarting whatever ran there).
    async fn run_in(&self, r: &Resource, slot: Slot) -> Result<(), DriverError> {
        let dir = slots::slot_dir(&self.config, r, slot);
        std::fs::create_dir_all(&dir).map_err(|e| DriverError::Retryable(e.to_string()))?;
        self.runtime(r).start(&slots::in_slot(r, slot), &dir).await
    }

    async fn stop_slot(&self, r: &Resource, slot: Slot) -> Result<(), DriverError> {
        self.runtime(r).stop(&slots::in_slot(r, slot), &slots::slot_dir(&self.config, r, slot)).await
    }

    /// Running, every readiness probe passing and every port listening on the slot's address.
    async fn healthy(&self, r: &Resource, slot: Slot) -> Result<Result<(), String>, DriverError> {
        let (run, dir) = (slots::in_slot(r, slot), slots::slot_dir(&self.config, r, slot));
        let runtime = self.runtime(r);
        let state = runtime.state(&run, &dir).await?;
        if state != "running" {
            return Ok(Err(format!("is {state}")));
        }
        if !runtime.ready(&run, &dir).await? {
            return Ok(Err("fails its readiness probe".into()));
        }
        let listening = listening_ports(&run).await?;
        let missing: Vec<String> = target_ports(&r.properties)
            .into_iter()
            .filter(|(name, _)| listening.get(name).is_none())
            .map(|(_, port)| port.to_string())
            .collect();
        if !missing.is_empty() {
            return Ok(Err(format!("does not listen on port {}", missing.join(", "))));
        }
        Ok(Ok(()))
    }

    /// Waits until the slot is healthy; the last reason it was not, on timeout.
    async fn wait_ready(&self, r: &Resource, slot: Slot, timeout: Duration) -> Result<Result<(), String>, DriverError> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let why = match self.healthy(r, slot).await? {
                Ok(()) => return Ok(Ok(())),
                Err(why) => why,
            };
            if tokio::time::Instant::now() >= deadline {
                return Ok(Err(format!("did not become ready within {timeout:?}: it {why}")));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Watches the slot stay healthy for `soak`.
    async fn soak(&self, r: &Resource, slot: Slot, soak: Duration) -> Result<Result<(), String>, DriverError> {
        let deadline = tokio::time::Instant::now() + soak;
        while tokio::time::Instant::now() < deadline {
            if let Err(why) = self.healthy(r, slot).await? {
                return Ok(Err(format!("failed during the {soak:?} soak: it {why}")));
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        Ok(Ok(()))
    }

    /// The health gate: ready in time, then healthy for the whole soak.
    async fn gate(&self, r: &Resource, slot: Slot, rollout: &Rollout) -> Result<Result<(), String>, DriverError> {
        match self.wait_ready(r, slot, rollout.ready_timeout()).await? {
            Ok(()) => self.soak(r, slot, rollout.soak()).await,
            failed => Ok(failed),
        }
    }

    /// Records `r` as applied: written last, so a rollout that did not finish is not taken as applied.
    /// An apply ends when the service answers at its stable address: the
    /// proxy picks new service files up within a tick, and a caller that
    /// connects right after `apply` returns must not meet a refused connection.
    async fn finish(&self, r: &Resource) -> Result<Outputs, DriverError> {
        slots::wait_served(r, PROXY_PICKUP).await?;
        let file = slots::workload_dir(&self.config, r).join("properties.json");
        fsutil::write_json(&file, &r.properties, true).map_err(DriverError::Retryable)?;
        Ok(Self::outputs(r))
    }

    /// A first start, in the slot that served last (a crashed run's, if any).
    async fn first_start(&self, r: &Resource) -> Result<Outputs, DriverError> {
        let slot = slots::active(&self.config, &r.environment, &r.name).unwrap_or(Slot::Blue);
        self.run_in(r, slot).await?;
        slots::switch(&self.config, r, slot)?;
        if let Some(rollout) = Rollout::of(r)
            && let Err(why) = self.gate(r, slot, &rollout).await?
        {
            self.stop_slot(r, slot).await?;
            return Err(failed_rollout(r, &why, "nothing ran before, so nothing runs now"));
        }
        self.finish(r).await
    }

    /// Stops the old version, starts the new one in the same slot; a new
    /// version that fails the gate is replaced by the old one again.
    async fn recreate(&self, old: &Resource, r: &Resource, slot: Slot) -> Result<Outputs, DriverError> {
        self.stop_slot(old, slot).await?;
        self.run_in(r, slot).await?;
        slots::switch(&self.config, r, slot)?;
        if let Some(rollout) = Rollout::of(r)
            && let Err(why) = self.gate(r, slot, &rollout).await?
        {
            self.stop_slot(r, slot).await?;
            self.run_in(old, slot).await?;
            slots::switch(&self.config, old, slot)?;
            return Err(failed_rollout(r, &why, "the previous version was started again"));
        }
        self.finish(r).await
    }

    /// Starts the new version in the other slot and switches to it when it is
    /// ready; blue-green soaks it before the switch, rolling after.
    async fn beside(
        &self,
        old: &Resource,
        r: &Resource,
        from: Slot,
        rollout: &Rollout,
    ) -> Result<Outputs, DriverError> {
        let to = from.other();
        self.run_in(r, to).await?;
        let before_switch = match rollout.strategy {
            Strategy::BlueGreen => self.gate(r, to, rollout).await?,
            _ => self.wait_ready(r, to, rollout.ready_timeout()).await?,
        };
        if let Err(why) = before_switch {
            self.stop_slot(r, to).await?;
            return Err(failed_rollout(r, &why, "the previous version kept serving"));
        }
        slots::switch(&self.config, r, to)?;
        // Requests that reached the old version finish before it stops.
        tokio::time::sleep(DRAIN).await;
        self.stop_slot(old, from).await?;
        if rollout.strategy == Strategy::Rolling
            && let Err(why) = self.soak(r, to, rollout.soak()).await?
        {
            self.run_in(old, from).await?;
            let _ = self.wait_ready(old, from, rollout.ready_timeout()).await?;
            slots::switch(&self.config, old, from)?;
            tokio::time::sleep(DRAIN).await;
            self.stop_slot(r, to).await?;
            return Err(failed_rollout(r, &why, "switched back to the previous version"));
        }
        self.finish(r).await
    }
}

/// How long the environment's proxy may take to listen on a new stable address
/// (it re-reads its service files every 200 ms).
const PROXY_PICKUP: Duration = Duration::from_secs(10);

/// How long a slot that stopped serving keeps running for requests in flight.
const DRAIN: Duration = Duration::from_millis(1500);

/// A workload's `rollout` property: present when a deployment put it there.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Rollout {
    strategy: Strategy,
    soak_ms: u64,
    ready_timeout_ms: u64,
}

impl Rollout {
    fn of(r: &Resource) -> Option<Rollout> {
        serde_json::from_value(r.properties.get("rollout")?.clone()).ok()
    }

    fn soak(&self) -> Duration {
        Duration::from_millis(self.soak_ms)
    }

    fn ready_timeout(&self) -> Duration {
        Duration::from_millis(self.ready_timeout_ms.max(1000))
    }
}

/// A rollout the health gate stopped. Permanent: applying the same artifact again would fail the same way.
fn failed_rollout(r: &Resource, why: &str, outcome: &str) -> DriverError {
    let artifact = r.properties["artifact"].as_str().unwrap_or("the new version");
    DriverError::Permanent(format!("rollout of {artifact} failed: the new version {why}; {outcome}"))
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
        (None, Some(data), _) => {
            use base64::Engine;
            let compact: String = data.chars().filter(|c| !c.is_ascii_whitespace()).collect();
            base64::engine::general_purpose::STANDARD
                .decode(compact)
                .map_err(|e| permanent(format!("file `{target}`: binaryContent is not base64: {e}")))?
        }
        (None, None, Some(src)) => {
            return Err(permanent(format!(
                "file `{target}`: `source: {src}` is not supported (paved cannot read the machine the Score file \
                 came from); inline it as `content` or `binaryContent`"
            )));
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
        let Some(applied) = self.applied(r)? else { return Ok(Observation::Absent) };
        let slot = slots::active(&self.config, &r.environment, &r.name).unwrap_or(Slot::Blue);
        let (run, dir) = (slots::in_slot(&applied, slot), slots::slot_dir(&self.config, r, slot));
        let runtime = self.runtime(&applied);
        let mut properties = applied.properties.clone();
        let state = runtime.state(&run, &dir).await?;
        properties["state"] = json!(state);
        let ready = state == "running" && runtime.ready(&run, &dir).await?;
        properties["ports"] = listening_ports(&run).await?;
        Ok(Observation::Present { properties, outputs: Self::outputs(&applied), ready })
    }

    async fn create(&self, r: &Resource) -> Result<Outputs, DriverError> {
        match self.applied(r)? {
            Some(old) => self.update_from(&old, r).await,
            None => self.first_start(r).await,
        }
    }

    async fn update(&self, r: &Resource) -> Result<Outputs, DriverError> {
        self.create(r).await
    }

    async fn delete(&self, r: &Resource) -> Result<(), DriverError> {
        let applied = self.applied(r)?.unwrap_or_else(|| r.clone());
        slots::unpublish(&self.config, r)?;
        for slot in [Slot::Blue, Slot::Green] {
            self.stop_slot(&applied, slot).await?;
        }
        // Whatever runs under the workload's directory (an older layout included).
        let dir = slots::workload_dir(&self.config, r);
        self.runtime(&applied).stop(&applied, &dir).await?;
        crate::remove_dir(&dir).map_err(DriverError::Retryable)
    }
}

impl WorkloadDriver {
    async fn update_from(&self, old: &Resource, r: &Resource) -> Result<Outputs, DriverError> {
        let from = slots::active(&self.config, &r.environment, &r.name).unwrap_or(Slot::Blue);
        if old.properties["runtime"] != "docker" {
            // A supervisor of the layout before slots runs in the workload directory itself.
            crate::supervisor::stop(&slots::workload_dir(&self.config, r)).await.map_err(DriverError::Retryable)?;
        }
        // A runtime change cannot overlap two versions: the old one stops first.
        let same_runtime = old.properties["runtime"] == r.properties["runtime"];
        match Rollout::of(r) {
            Some(rollout) if rollout.strategy != Strategy::Recreate && same_runtime => {
                self.beside(old, r, from, &rollout).await
            }
            _ => self.recreate(old, r, from).await,
        }
    }
}
