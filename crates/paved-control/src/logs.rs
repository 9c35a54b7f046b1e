//! A service's recent output in an environment, from either runtime: the
//! process runtime's log files or the Docker Engine's container logs.

use crate::{Control, ControlError};
use paved_local::docker::workload::LogLine;
use std::path::PathBuf;

impl Control {
    /// The last `tail` lines (all without it) of each container of a service,
    /// in file order per container.
    pub async fn logs(
        &self,
        env: &str,
        service: &str,
        container: Option<&str>,
        tail: Option<usize>,
    ) -> Result<Vec<LogLine>, ControlError> {
        if self.on_docker(env, service) {
            use futures_util::StreamExt;
            let (_, lines) = paved_local::docker::workload::logs(&self.local, env, service, container, false, tail)
                .await
                .map_err(|reason| ControlError::NoLogs { service: service.into(), environment: env.into(), reason })?;
            return Ok(lines.collect().await);
        }
        let files = self.log_files(env, service, container);
        if files.is_empty() {
            return Err(ControlError::NoLogs {
                service: service.into(),
                environment: env.into(),
                reason: format!(
                    "nothing logged{}; is it applied? (`paved apply -e {env}`)",
                    container.map(|c| format!(" by container `{c}`")).unwrap_or_default()
                ),
            });
        }
        let mut out = vec![];
        for f in &files {
            let text = std::fs::read_to_string(f).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            let skip = tail.map_or(0, |n| lines.len().saturating_sub(n));
            let container = f.file_stem().unwrap_or_default().to_string_lossy().into_owned();
            out.extend(lines[skip..].iter().map(|l| LogLine { container: container.clone(), line: l.to_string() }));
        }
        Ok(out)
    }

    /// Whether the service was applied on the docker runtime (its output is then the engine's).
    pub fn on_docker(&self, env: &str, service: &str) -> bool {
        let properties = self.local.workload_dir(env, service).join("properties.json");
        let applied: Option<serde_json::Value> = paved_local::fsutil::read_json(&properties).ok().flatten();
        applied.is_some_and(|p| p["runtime"] == "docker")
    }

    /// The process runtime's log files of a service (one per container), sorted.
    pub fn log_files(&self, env: &str, service: &str, container: Option<&str>) -> Vec<PathBuf> {
        let dir = paved_local::slots::serving_dir(&self.local, env, service).join("logs");
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .map(|rd| rd.flatten().map(|e| e.path()).filter(|p| p.extension().is_some_and(|x| x == "log")).collect())
            .unwrap_or_default();
        files.sort();
        if let Some(c) = container {
            files.retain(|p| p.file_stem().is_some_and(|s| s == c));
        }
        files
    }
}
