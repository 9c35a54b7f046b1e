//! Drift: what really exists, read through each driver's `observe`, against
//! what paved recorded as applied. Reading only; `apply` repairs.

use crate::{Engine, EngineError, SecretValues, resource_of};
use paved_plan::FieldChange;
use serde::Serialize;

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum DriftStatus {
    InSync,
    /// Some recorded fields differ from what the provider reports.
    Changed,
    /// The resource is gone.
    Missing,
    /// The driver could not read it (or no driver handles the kind).
    Unreadable {
        error: String,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NodeDrift {
    pub id: String,
    pub status: DriftStatus,
    /// Recorded value (`before`) against the observed one (`after`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub changes: Vec<FieldChange>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DriftReport {
    pub environment: String,
    pub nodes: Vec<NodeDrift>,
}

impl DriftReport {
    /// `true` when something differs (or could not be checked).
    pub fn drifted(&self) -> bool {
        self.nodes.iter().any(|n| n.status != DriftStatus::InSync)
    }
}

impl Engine {
    /// Observes every applied node of an environment, in dependency order.
    /// `secrets` resolves the graph's secret references, so a secret is
    /// compared like any value, and is redacted from the report.
    pub async fn drift(
        &self,
        environment: &str,
        provider: paved_model::Provider,
        secrets: &SecretValues,
    ) -> Result<DriftReport, EngineError> {
        let (graph, outputs) = self.applied(environment, provider).await?;
        let mut nodes = Vec::new();
        for id in graph.order()? {
            let node = &graph.nodes[&id];
            let status_of = |status| NodeDrift { id: id.clone(), status, changes: Vec::new() };
            let Some(driver) = self.drivers.get(&node.kind) else {
                nodes.push(status_of(DriftStatus::Unreadable { error: format!("no driver for `{}`", node.kind) }));
                continue;
            };
            // What exists only in paved's state cannot drift.
            if !driver.has_external_state() {
                nodes.push(status_of(DriftStatus::InSync));
                continue;
            }
            let resource = match resource_of(environment, node, &outputs, secrets) {
                Ok(r) => r,
                Err(e) => {
                    nodes.push(status_of(DriftStatus::Unreadable { error: e.to_string() }));
                    continue;
                }
            };
            nodes.push(match driver.observe(&resource).await {
                Err(e) => status_of(DriftStatus::Unreadable { error: secrets.redact(&e.to_string()) }),
                Ok(crate::Observation::Absent) => status_of(DriftStatus::Missing),
                Ok(crate::Observation::Present { properties, .. }) => {
                    // Fields fed by a secret are masked whole: the observed side may
                    // hold an earlier version, which `secrets` does not know.
                    let secret_fields: std::collections::BTreeSet<String> = paved_plan::leaf_fields(&node.properties)
                        .into_iter()
                        .filter(|(_, v)| v.to_string().contains("${secret:"))
                        .map(|(field, _)| field)
                        .collect();
                    let mask = |field: &str, v: serde_json::Value| {
                        if secret_fields.contains(field) {
                            serde_json::Value::String(crate::REDACTED.into())
                        } else {
                            secrets.redact_value(&v)
                        }
                    };
                    // Only what paved manages counts: a provider may report more.
                    let changes: Vec<FieldChange> = paved_plan::field_changes(&resource.properties, &properties, node)
                        .into_iter()
                        .filter(|c| c.before.is_some())
                        .map(|mut c| {
                            c.before = c.before.take().map(|v| mask(&c.field, v));
                            c.after = c.after.take().map(|v| mask(&c.field, v));
                            c
                        })
                        .collect();
                    let status = if changes.is_empty() { DriftStatus::InSync } else { DriftStatus::Changed };
                    NodeDrift { id: id.clone(), status, changes }
                }
            });
        }
        Ok(DriftReport { environment: environment.to_string(), nodes })
    }
}
