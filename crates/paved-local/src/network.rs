//! `local.network`: an environment's own loopback address.
//!
//! Every environment gets `127.0.N.1` (N from 1 to 254, the lowest free on
//! this machine), recorded in `envs/ENV/network.json`. Its services bind to that address, so
//! two environments running the same services on the same ports never collide.

use crate::Config;
use crate::fsutil::{self, FileLock};
use async_trait::async_trait;
use paved_engine::{Driver, DriverError, Observation, Outputs, Resource};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::sync::Arc;

#[derive(Debug, Serialize, Deserialize)]
struct Allocation {
    name: String,
    address: String,
    runtime: String,
}

pub struct NetworkDriver {
    pub config: Arc<Config>,
}

impl NetworkDriver {
    fn file(&self, env: &str) -> std::path::PathBuf {
        self.config.env_dir(env).join("network.json")
    }

    fn read(&self, env: &str) -> Result<Option<Allocation>, DriverError> {
        fsutil::read_json(&self.file(env)).map_err(DriverError::Permanent)
    }
}

/// Addresses are a machine-wide resource: several paved data directories
/// (users, test runs) share the loopback interface. A lease file per address
/// names the environment directory holding it.
fn address_registry() -> std::path::PathBuf {
    std::env::temp_dir().join("paved-loopback-addresses")
}

/// A lease is in use while the environment it names still records that address.
fn lease_in_use(lease: &std::path::Path) -> bool {
    let Ok(owner) = std::fs::read_to_string(lease) else { return false };
    let n = lease.file_name().and_then(|n| n.to_str()).unwrap_or_default();
    fsutil::read_json::<Allocation>(&std::path::Path::new(&owner).join("network.json"))
        .ok()
        .flatten()
        .is_some_and(|a| a.address == format!("127.0.{n}.1"))
}

fn observed(a: &Allocation) -> Observation {
    Observation::Present {
        properties: json!({"name": a.name, "runtime": a.runtime}),
        outputs: Outputs::from([("address".to_string(), Value::String(a.address.clone()))]),
        ready: true,
    }
}

#[async_trait]
impl Driver for NetworkDriver {
    async fn observe(&self, r: &Resource) -> Result<Observation, DriverError> {
        let Some(a) = self.read(&r.environment)? else { return Ok(Observation::Absent) };
        if a.runtime == "docker" && !crate::docker::network_exists(&self.config, &r.environment).await? {
            return Ok(Observation::Absent);
        }
        Ok(observed(&a))
    }

    async fn create(&self, r: &Resource) -> Result<Outputs, DriverError> {
        let runtime = r.properties["runtime"].as_str().unwrap_or("process").to_string();
        match runtime.as_str() {
            "process" => {}
            "docker" => {
                crate::docker::ensure_network(&self.config, &r.environment).await?;
            }
            other => {
                return Err(DriverError::Permanent(format!(
                    "unknown local runtime `{other}`: use `docker` or `process`"
                )));
            }
        }
        let registry = address_registry();
        let _lock = FileLock::acquire(&registry.join(".lock")).map_err(DriverError::Retryable)?;
        if let Some(a) = self.read(&r.environment)? {
            return Ok(match observed(&a) {
                Observation::Present { outputs, .. } => outputs,
                Observation::Absent => Outputs::new(),
            });
        }
        let owner = self.config.env_dir(&r.environment);
        let address = (1..=254u8)
            .find(|n| !lease_in_use(&registry.join(n.to_string())))
            .map(|n| {
                fsutil::write_atomic(&registry.join(n.to_string()), owner.display().to_string().as_bytes(), false)
                    .map(|_| format!("127.0.{n}.1"))
            })
            .ok_or_else(|| DriverError::Permanent("all 254 local environment addresses are in use".into()))?
            .map_err(DriverError::Retryable)?;
        let a = Allocation { name: r.properties["name"].as_str().unwrap_or_default().to_string(), address, runtime };
        fsutil::write_json(&self.file(&r.environment), &a, false).map_err(DriverError::Retryable)?;
        Ok(Outputs::from([("address".to_string(), Value::String(a.address))]))
    }

    async fn update(&self, r: &Resource) -> Result<Outputs, DriverError> {
        // Name and runtime are immutable (a change replaces the network); nothing else to update.
        self.create(r).await
    }

    async fn delete(&self, r: &Resource) -> Result<(), DriverError> {
        let env_dir = self.config.env_dir(&r.environment);
        if r.properties["runtime"] == "docker" {
            // Whatever container of the environment is left goes with its network.
            crate::docker::remove_environment(&self.config, &r.environment).await?;
        }
        if let Some(a) = self.read(&r.environment)?
            && let Some(n) = a.address.strip_prefix("127.0.").and_then(|rest| rest.strip_suffix(".1"))
        {
            let lease = address_registry().join(n);
            if std::fs::read_to_string(&lease).is_ok_and(|o| o == env_dir.display().to_string()) {
                let _ = std::fs::remove_file(lease);
            }
        }
        match std::fs::remove_file(self.file(&r.environment)) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(DriverError::Retryable(e.to_string())),
        }
        // The network goes last: whatever is left of the environment goes with it.
        crate::supervisor::stop_all_under(&env_dir).await;
        crate::remove_dir(&env_dir).map_err(DriverError::Retryable)
    }
}
