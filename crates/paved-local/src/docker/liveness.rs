//! `paved __watch FILE`: liveness probes for the docker runtime.
//!
//! Docker restarts a container whose process exits (with backoff, by its
//! restart policy) but only marks one whose health check fails. A Score
//! liveness probe means "restart me when I hang", so each workload with
//! liveness probes gets a watcher, run by the same supervisor as processes:
//! every 5 s it probes (HTTP on the published port, or a command inside the
//! container) and restarts the container after three failures in a row, as
//! the process runtime's supervisor does.

use super::{api_err, connect};
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::time::Duration;

const PERIOD: Duration = Duration::from_secs(5);
const FAILURES: u32 = 3;

/// What one watcher checks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Watch {
    pub container: String,
    pub probe: WatchProbe,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum WatchProbe {
    Http { host: String, port: u16, path: String },
    Exec { command: Vec<String> },
}

async fn check(docker: &bollard::Docker, w: &Watch) -> Result<(), String> {
    match &w.probe {
        WatchProbe::Http { host, port, path } => {
            let probe = crate::probe::Probe::Http { host: host.clone(), port: *port, path: path.clone() };
            tokio::task::spawn_blocking(move || probe.check(Duration::from_secs(2))).await.map_err(|e| e.to_string())?
        }
        WatchProbe::Exec { command } => match super::exec(docker, &w.container, command.clone()).await {
            Some((0, _)) => Ok(()),
            Some((code, _)) => Err(format!("{command:?} exited with {code}")),
            None => Err(format!("{command:?} could not run")),
        },
    }
}

/// Runs until killed (by the supervisor, when the workload goes).
pub async fn main(file: &Path) -> Result<(), String> {
    let w: Watch = crate::fsutil::read_json(file)?.ok_or_else(|| format!("{} does not exist", file.display()))?;
    let docker = connect().await?;
    let mut failures = 0;
    loop {
        tokio::time::sleep(PERIOD).await;
        match check(&docker, &w).await {
            Ok(()) => failures = 0,
            Err(e) => {
                failures += 1;
                println!("liveness probe of {} failed ({failures}/{FAILURES}): {e}", w.container);
                if failures >= FAILURES {
                    docker
                        .restart_container(&w.container, None::<bollard::query_parameters::RestartContainerOptions>)
                        .await
                        .map_err(|e| api_err("restarting a container")(e).to_string())?;
                    println!("restarted {}", w.container);
                    failures = 0;
                }
            }
        }
    }
}
