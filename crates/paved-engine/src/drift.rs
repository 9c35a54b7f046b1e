//! Drift: what really exists, read through each driver's `observe`, against
//! what paved recorded as applied. Reading only; `apply` repairs.

use crate::{Engine, EngineError, SecretValues, resource_of};
use paved_plan::FieldChange;
use serde::Serialize;
use std::collections::BTreeMap;

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
    /// Observes every applied node of an environment. `secrets` resolves
    /// the graph's secret references, so a secret is compared like any
    /// value, and is redacted from the report.
    pub async fn drift(
        &self,
        environment: &str,
        provider: paved_model::Provider,
        secrets: &SecretValues,
    ) -> Result<DriftReport, EngineError> {
        let mut reports = self.drift_many(&[(environment.to_string(), provider, secrets.clone())]).await?;
        Ok(reports.remove(0))
    }

    /// A sweep: the drift of several environments, read kind by kind
    /// across all of them with each driver's [`Driver::observe_all`], so a
    /// cloud answers each kind with a few listing calls. Reports in the
    /// order asked, nodes in dependency order.
    pub async fn drift_many(
        &self,
        environments: &[(String, paved_model::Provider, SecretValues)],
    ) -> Result<Vec<DriftReport>, EngineError> {
        // Every node to read: (environment index, node, resource), grouped by kind.
        struct Pending {
            env: usize,
            node: paved_plan::Node,
            resource: crate::Resource,
            masked: std::collections::BTreeSet<String>,
        }
        let mut reports = Vec::new();
        let mut by_kind: BTreeMap<String, Vec<Pending>> = BTreeMap::new();
        let mut statuses: Vec<BTreeMap<String, NodeDrift>> = Vec::new();
        for (i, (environment, provider, secrets)) in environments.iter().enumerate() {
            let (graph, outputs) = self.applied(environment, *provider).await?;
            let order = graph.order()?;
            let mut known = BTreeMap::new();
            for id in &order {
                let node = &graph.nodes[id];
                let status_of = |status| NodeDrift { id: id.clone(), status, changes: Vec::new() };
                let Some(driver) = self.drivers.get(&node.kind) else {
                    known.insert(
                        id.clone(),
                        status_of(DriftStatus::Unreadable { error: format!("no driver for `{}`", node.kind) }),
                    );
                    continue;
                };
                // What exists only in paved's state cannot drift.
                if !driver.has_external_state() {
                    known.insert(id.clone(), status_of(DriftStatus::InSync));
                    continue;
                }
                match resource_of(environment, node, &outputs, secrets) {
                    Ok(resource) => by_kind.entry(node.kind.clone()).or_default().push(Pending {
                        env: i,
                        node: node.clone(),
                        resource,
                        masked: masked_fields(&graph, node),
                    }),
                    Err(e) => {
                        known.insert(id.clone(), status_of(DriftStatus::Unreadable { error: e.to_string() }));
                    }
                }
            }
            reports.push((environment.clone(), order));
            statuses.push(known);
        }
        for (kind, pending) in by_kind {
            let Some(driver) = self.drivers.get(&kind) else { continue };
            let resources: Vec<crate::Resource> = pending.iter().map(|p| p.resource.clone()).collect();
            let observed = driver.observe_all(&resources).await;
            for (p, observation) in pending.iter().zip(observed) {
                let secrets = &environments[p.env].2;
                statuses[p.env].insert(p.node.id(), compare(&p.node, &p.resource, observation, secrets, &p.masked));
            }
        }
        Ok(reports
            .into_iter()
            .zip(statuses)
            .map(|((environment, order), mut known)| DriftReport {
                environment,
                nodes: order.iter().filter_map(|id| known.remove(id)).collect(),
            })
            .collect())
    }
}

/// The fields of a node that a secret or a sensitive output feeds: masked
/// whole in a report (the observed side may hold an earlier version, which
/// `secrets` does not know, and a sensitive output is never shown).
fn masked_fields(graph: &paved_plan::ResourceGraph, node: &paved_plan::Node) -> std::collections::BTreeSet<String> {
    let sensitive = |text: &str| {
        text.split("${ref:").skip(1).any(|tail| {
            let reference = tail.split('}').next().unwrap_or_default();
            reference
                .rsplit_once('.')
                .is_some_and(|(id, output)| graph.nodes.get(id).is_some_and(|n| n.sensitive.contains(output)))
        })
    };
    paved_plan::leaf_fields(&node.properties)
        .into_iter()
        .filter(|(_, v)| {
            let text = v.to_string();
            text.contains("${secret:") || sensitive(&text)
        })
        .map(|(field, _)| field)
        .collect()
}

/// One node's drift from what its driver observed.
fn compare(
    node: &paved_plan::Node,
    resource: &crate::Resource,
    observation: Result<crate::Observation, crate::DriverError>,
    secrets: &SecretValues,
    secret_fields: &std::collections::BTreeSet<String>,
) -> NodeDrift {
    let id = node.id();
    let status_of = |status| NodeDrift { id: id.clone(), status, changes: Vec::new() };
    match observation {
        Err(e) => status_of(DriftStatus::Unreadable { error: secrets.redact(&e.to_string()) }),
        Ok(crate::Observation::Absent) => status_of(DriftStatus::Missing),
        Ok(crate::Observation::Present { properties, .. }) => {
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
            NodeDrift { id, status, changes }
        }
    }
}
