//! The resource graph: what one environment consists of on one provider.

use crate::PlanError;
use paved_model::Provider;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// One provider object. Its id is `kind/name`, unique in the graph.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Node {
    pub kind: String,
    pub name: String,
    /// Desired properties (canonical JSON: keys sorted). Values that are only
    /// known at apply time are references: `${ref:KIND/NAME.OUTPUT}`.
    pub properties: serde_json::Value,
    pub depends_on: BTreeSet<String>,
    /// Outputs other nodes may reference (host, port, password, …).
    pub outputs: BTreeSet<String>,
    /// Top-level properties that cannot change in place: changing one
    /// replaces the node.
    pub immutable: BTreeSet<String>,
    /// Outputs that are credentials (a generated password): the engine
    /// keeps them sealed in the vault, never in the state in plaintext.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub sensitive: BTreeSet<String>,
}

impl Node {
    pub fn new(kind: &str, name: &str, properties: serde_json::Value) -> Node {
        Node {
            kind: kind.to_string(),
            name: name.to_string(),
            properties: paved_model::canonical_json(&prune(properties)),
            depends_on: BTreeSet::new(),
            outputs: BTreeSet::new(),
            immutable: BTreeSet::new(),
            sensitive: BTreeSet::new(),
        }
    }

    pub fn id(&self) -> String {
        format!("{}/{}", self.kind, self.name)
    }

    pub fn after(mut self, ids: impl IntoIterator<Item = String>) -> Node {
        self.depends_on.extend(ids);
        self
    }

    pub fn outputs(mut self, names: &[&str]) -> Node {
        self.outputs.extend(names.iter().map(|s| s.to_string()));
        self
    }

    pub fn immutable(mut self, names: &[&str]) -> Node {
        self.immutable.extend(names.iter().map(|s| s.to_string()));
        self
    }

    /// Marks outputs (already declared) as credentials.
    pub fn sensitive(mut self, names: &[&str]) -> Node {
        self.sensitive.extend(names.iter().map(|s| s.to_string()));
        self
    }
}

/// Drops `null`s and empty maps: an absent setting is simply not there, so
/// it neither shows in plans nor differs between equivalent inputs.
fn prune(v: serde_json::Value) -> serde_json::Value {
    match v {
        serde_json::Value::Object(m) => serde_json::Value::Object(
            m.into_iter()
                .map(|(k, v)| (k, prune(v)))
                .filter(|(_, v)| !v.is_null() && !v.as_object().is_some_and(|o| o.is_empty()))
                .collect(),
        ),
        serde_json::Value::Array(items) => serde_json::Value::Array(items.into_iter().map(prune).collect()),
        other => other,
    }
}

/// Every node of one environment on one provider. Serialises to the same
/// bytes for the same input (ordered maps, canonical properties).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResourceGraph {
    pub provider: Provider,
    pub environment: String,
    pub nodes: BTreeMap<String, Node>,
    /// Values that differ between environments by construction besides the
    /// name (region, address blocks): parity masks them as `{KEY}`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub identity: BTreeMap<String, String>,
}

impl ResourceGraph {
    pub fn new(provider: Provider, environment: &str) -> ResourceGraph {
        ResourceGraph {
            provider,
            environment: environment.to_string(),
            nodes: BTreeMap::new(),
            identity: BTreeMap::new(),
        }
    }

    /// Adds a node; a node with the same id is merged (shared resources are
    /// declared by every service that uses them).
    pub fn add(&mut self, node: Node) -> String {
        let id = node.id();
        match self.nodes.get_mut(&id) {
            Some(existing) => existing.depends_on.extend(node.depends_on),
            None => {
                self.nodes.insert(id.clone(), node);
            }
        }
        id
    }

    /// The graph as pretty, canonical JSON.
    pub fn to_bytes(&self) -> Vec<u8> {
        let value = serde_json::to_value(self).unwrap_or(serde_json::Value::Null);
        let mut bytes = serde_json::to_vec_pretty(&paved_model::canonical_json(&value)).unwrap_or_default();
        bytes.push(b'\n');
        bytes
    }

    /// Checks that every dependency exists and that there is no cycle; a
    /// cycle is reported with its path.
    pub fn validate(&self) -> Result<(), PlanError> {
        for (id, node) in &self.nodes {
            if let Some(missing) = node.depends_on.iter().find(|d| !self.nodes.contains_key(*d)) {
                return Err(PlanError::DanglingDependency { node: id.clone(), missing: missing.clone() });
            }
        }
        self.order().map(|_| ())
    }

    /// Node ids in dependency order (dependencies first; ties by id).
    pub fn order(&self) -> Result<Vec<String>, PlanError> {
        #[derive(Clone, Copy, PartialEq)]
        enum Mark {
            Visiting,
            Done,
        }
        let mut marks: BTreeMap<&str, Mark> = BTreeMap::new();
        let mut out = Vec::new();
        // Iterative depth-first search, so deep graphs cannot overflow the stack.
        for start in self.nodes.keys() {
            if marks.contains_key(start.as_str()) {
                continue;
            }
            let mut stack: Vec<(&str, Vec<&str>)> = vec![(start.as_str(), self.deps(start))];
            marks.insert(start, Mark::Visiting);
            while let Some((id, pending)) = stack.last_mut() {
                match pending.pop() {
                    Some(dep) => match marks.get(dep) {
                        Some(Mark::Done) => {}
                        Some(Mark::Visiting) => {
                            let from = stack.iter().position(|(n, _)| *n == dep).unwrap_or(0);
                            let mut cycle: Vec<String> = stack[from..].iter().map(|(n, _)| n.to_string()).collect();
                            cycle.push(dep.to_string());
                            return Err(PlanError::Cycle { path: cycle });
                        }
                        None => {
                            marks.insert(dep, Mark::Visiting);
                            let deps = self.deps(dep);
                            stack.push((dep, deps));
                        }
                    },
                    None => {
                        let id = *id;
                        marks.insert(id, Mark::Done);
                        out.push(id.to_string());
                        stack.pop();
                    }
                }
            }
        }
        Ok(out)
    }

    fn deps(&self, id: &str) -> Vec<&str> {
        // Reverse order so that popping visits dependencies by ascending id.
        self.nodes.get(id).map(|n| n.depends_on.iter().rev().map(String::as_str).collect()).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn graph(edges: &[(&str, &[&str])]) -> ResourceGraph {
        let mut g = ResourceGraph::new(Provider::Local, "t");
        for (name, deps) in edges {
            g.add(Node::new("n", name, json!({})).after(deps.iter().map(|d| format!("n/{d}"))));
        }
        g
    }

    #[test]
    fn orders_dependencies_first() {
        let g = graph(&[("app", &["db", "net"]), ("db", &["net"]), ("net", &[])]);
        assert_eq!(g.order().unwrap(), ["n/net", "n/db", "n/app"]);
    }

    #[test]
    fn reports_cycles_with_their_path() {
        let g = graph(&[("a", &["b"]), ("b", &["c"]), ("c", &["a"])]);
        match g.validate() {
            Err(PlanError::Cycle { path }) => assert_eq!(path, ["n/a", "n/b", "n/c", "n/a"]),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn reports_missing_dependencies() {
        let g = graph(&[("a", &["ghost"])]);
        assert!(matches!(g.validate(), Err(PlanError::DanglingDependency { .. })));
    }
}
