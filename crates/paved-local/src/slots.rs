//! Two slots per workload, so a new version can start beside the old one.
//!
//! A service's stable address is the environment's (`127.0.N.1`): links,
//! routes and URLs use it. The environment's proxy listens there on the
//! service's ports and forwards to the slot that serves (`blue` on
//! `127.0.N.2`, `green` on `127.0.N.3`), as the service file
//! `proxy/services/SERVICE.json` says. Switching is rewriting that file;
//! the proxy picks it up for the next connection.
//!
//! ```text
//! workloads/SERVICE/properties.json   what was applied (written last)
//! workloads/SERVICE/active.json       {"slot": "blue"}: which slot serves
//! workloads/SERVICE/slots/blue/       the runtime's directory of that slot
//! ```

use crate::Config;
use crate::fsutil;
use paved_engine::{DriverError, Resource};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::path::PathBuf;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Slot {
    Blue,
    Green,
}

impl Slot {
    pub fn name(self) -> &'static str {
        match self {
            Slot::Blue => "blue",
            Slot::Green => "green",
        }
    }

    pub fn other(self) -> Slot {
        match self {
            Slot::Blue => Slot::Green,
            Slot::Green => Slot::Blue,
        }
    }

    /// The slot's address in the environment's block: `127.0.N.2` or `.3`.
    pub fn address(self, environment_address: &str) -> String {
        let prefix = environment_address.rsplit_once('.').map_or("127.0.0", |(p, _)| p);
        let last = match self {
            Slot::Blue => 2,
            Slot::Green => 3,
        };
        format!("{prefix}.{last}")
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct Active {
    slot: Slot,
}

/// A service as the proxy serves it: its stable address and ports, and the
/// address of the slot that answers for it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServiceFile {
    pub service: String,
    pub address: String,
    pub ports: Vec<u16>,
    pub backend: String,
}

pub(crate) fn workload_dir(config: &Config, r: &Resource) -> PathBuf {
    config.workload_dir(&r.environment, &r.name)
}

pub(crate) fn slot_dir(config: &Config, r: &Resource, slot: Slot) -> PathBuf {
    workload_dir(config, r).join("slots").join(slot.name())
}

/// The slot serving the service, if it was ever started.
pub fn active(config: &Config, environment: &str, service: &str) -> Option<Slot> {
    let file = config.workload_dir(environment, service).join("active.json");
    fsutil::read_json::<Active>(&file).ok().flatten().map(|a| a.slot)
}

/// The runtime directory of the slot that serves (logs live there).
pub fn serving_dir(config: &Config, environment: &str, service: &str) -> PathBuf {
    let slot = active(config, environment, service).unwrap_or(Slot::Blue);
    config.workload_dir(environment, service).join("slots").join(slot.name())
}

/// The resource as one slot runs it: same properties, the slot's address.
pub(crate) fn in_slot(r: &Resource, slot: Slot) -> Resource {
    let mut r = r.clone();
    let address = r.properties["address"].as_str().unwrap_or("127.0.0.1").to_string();
    r.properties["address"] = json!(slot.address(&address));
    r.properties["slot"] = json!(slot.name());
    r
}

fn service_file(config: &Config, r: &Resource) -> PathBuf {
    config.proxy_dir(&r.environment).join("services").join(format!("{}.json", r.name))
}

/// Points the service's stable address at `slot` and records it as serving.
pub(crate) fn switch(config: &Config, r: &Resource, slot: Slot) -> Result<(), DriverError> {
    let address = r.properties["address"].as_str().unwrap_or("127.0.0.1").to_string();
    let mut ports: Vec<u16> = crate::workload::target_ports(&r.properties).into_values().collect();
    ports.sort_unstable();
    ports.dedup();
    let file = ServiceFile { service: r.name.clone(), backend: slot.address(&address), address, ports };
    fsutil::write_json(&service_file(config, r), &file, false).map_err(DriverError::Retryable)?;
    let active = workload_dir(config, r).join("active.json");
    fsutil::write_json(&active, &Active { slot }, false).map_err(DriverError::Retryable)
}

/// Waits until the proxy accepts connections on every port of the service's
/// stable address; a proxy that does not within `timeout` is a retryable failure.
pub(crate) async fn wait_served(r: &Resource, timeout: std::time::Duration) -> Result<(), DriverError> {
    let address = r.properties["address"].as_str().unwrap_or("127.0.0.1");
    let deadline = tokio::time::Instant::now() + timeout;
    for port in crate::workload::target_ports(&r.properties).into_values() {
        let stable = format!("{address}:{port}");
        while tokio::net::TcpStream::connect(&stable).await.is_err() {
            if tokio::time::Instant::now() >= deadline {
                return Err(DriverError::Retryable(format!(
                    "the environment's proxy does not listen on {stable} after {timeout:?}; \
                     is `paved __proxy` running for environment {}?",
                    r.environment
                )));
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }
    Ok(())
}

/// Stops serving the service's stable address.
pub(crate) fn unpublish(config: &Config, r: &Resource) -> Result<(), DriverError> {
    match std::fs::remove_file(service_file(config, r)) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(DriverError::Retryable(e.to_string())),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_take_the_second_and_third_address_of_the_environment_block() {
        assert_eq!(Slot::Blue.address("127.0.7.1"), "127.0.7.2");
        assert_eq!(Slot::Green.address("127.0.7.1"), "127.0.7.3");
        assert_eq!(Slot::Blue.other(), Slot::Green);
    }
}
