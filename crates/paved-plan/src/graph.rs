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
    /// Services of the environment this graph leaves out, with why (see
    /// [`crate::plan_services`]): a service that cannot be provisioned
    /// does not stop its neighbours.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub blocked: BTreeMap<String, Vec<String>>,
}

/// A graph serialised as its canonical JSON (every object's keys sorted)
/// straight from the structs: the same bytes as sorting a `serde_json::Value`
/// copy of it (a test holds the two together), without the copy.
struct CanonicalGraph<'a>(&'a ResourceGraph);
struct CanonicalNode<'a>(&'a Node);

impl Serialize for CanonicalGraph<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let g = self.0;
        let mut map = s.serialize_map(None)?;
        if !g.blocked.is_empty() {
            map.serialize_entry("blocked", &g.blocked)?;
        }
        map.serialize_entry("environment", &g.environment)?;
        if !g.identity.is_empty() {
            map.serialize_entry("identity", &g.identity)?;
        }
        let nodes: BTreeMap<&String, CanonicalNode> = g.nodes.iter().map(|(id, n)| (id, CanonicalNode(n))).collect();
        map.serialize_entry("nodes", &nodes)?;
        map.serialize_entry("provider", &g.provider)?;
        map.end()
    }
}

impl Serialize for CanonicalNode<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let n = self.0;
        let mut map = s.serialize_map(None)?;
        map.serialize_entry("depends_on", &n.depends_on)?;
        map.serialize_entry("immutable", &n.immutable)?;
        map.serialize_entry("kind", &n.kind)?;
        map.serialize_entry("name", &n.name)?;
        map.serialize_entry("outputs", &n.outputs)?;
        map.serialize_entry("properties", &paved_model::Canonical(&n.properties))?;
        if !n.sensitive.is_empty() {
            map.serialize_entry("sensitive", &n.sensitive)?;
        }
        map.end()
    }
}

impl ResourceGraph {
    pub fn new(provider: Provider, environment: &str) -> ResourceGraph {
        ResourceGraph {
            provider,
            environment: environment.to_string(),
            nodes: BTreeMap::new(),
            identity: BTreeMap::new(),
            blocked: BTreeMap::new(),
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
        let mut bytes = serde_json::to_vec_pretty(&CanonicalGraph(self)).unwrap_or_default();
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
    ///
    /// Ids are numbered once (a graph's ids share long prefixes, so
    /// comparing them on every visit was most of the cost); a dependency
    /// that names no node is listed where it is first reached, as a node
    /// without dependencies ([`ResourceGraph::validate`] refuses those).
    pub fn order(&self) -> Result<Vec<String>, PlanError> {
        #[derive(Clone, Copy, PartialEq)]
        enum Mark {
            Unseen,
            Visiting,
            Done,
        }
        let mut ids: Vec<&str> = self.nodes.keys().map(String::as_str).collect();
        let mut index: std::collections::HashMap<&str, usize> =
            ids.iter().enumerate().map(|(i, id)| (*id, i)).collect();
        let mut deps: Vec<Vec<usize>> = Vec::with_capacity(ids.len());
        for node in self.nodes.values() {
            // Reverse order so that popping visits dependencies by ascending id.
            let mut of_node = Vec::with_capacity(node.depends_on.len());
            for d in node.depends_on.iter().rev() {
                let i = *index.entry(d.as_str()).or_insert_with(|| {
                    ids.push(d.as_str());
                    ids.len() - 1
                });
                of_node.push(i);
            }
            deps.push(of_node);
        }
        deps.resize(ids.len(), Vec::new());
        let mut marks = vec![Mark::Unseen; ids.len()];
        let mut out = Vec::with_capacity(ids.len());
        // Iterative depth-first search, so deep graphs cannot overflow the stack.
        for start in 0..self.nodes.len() {
            if marks[start] != Mark::Unseen {
                continue;
            }
            let mut stack: Vec<(usize, usize)> = vec![(start, deps[start].len())];
            marks[start] = Mark::Visiting;
            while let Some((id, pending)) = stack.last_mut() {
                if *pending == 0 {
                    let id = *id;
                    marks[id] = Mark::Done;
                    out.push(ids[id].to_string());
                    stack.pop();
                    continue;
                }
                *pending -= 1;
                let dep = deps[*id][*pending];
                match marks[dep] {
                    Mark::Done => {}
                    Mark::Visiting => {
                        let from = stack.iter().position(|(n, _)| *n == dep).unwrap_or(0);
                        let mut cycle: Vec<String> = stack[from..].iter().map(|(n, _)| ids[*n].to_string()).collect();
                        cycle.push(ids[dep].to_string());
                        return Err(PlanError::Cycle { path: cycle });
                    }
                    Mark::Unseen => {
                        marks[dep] = Mark::Visiting;
                        stack.push((dep, deps[dep].len()));
                    }
                }
            }
        }
        Ok(out)
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
    fn canonical_bytes_equal_those_of_a_sorted_copy() {
        let mut g = ResourceGraph::new(Provider::Aws, "t");
        g.identity.insert("region".into(), "eu-west-1".into());
        g.add(Node::new("n", "db", json!({"z": 1, "a": {"y": [{"b": 2, "a": 1}], "x": "é"}})).outputs(&["password"]));
        g.nodes.get_mut("n/db").unwrap().sensitive.insert("password".into());
        g.nodes.get_mut("n/db").unwrap().properties["added"] = json!({"later": true, "after": 1});
        g.add(Node::new("n", "app", json!({"image": "x"})).after(["n/db".to_string()]).immutable(&["image"]));
        let value = serde_json::to_value(&g).unwrap();
        let mut expected = serde_json::to_vec_pretty(&paved_model::canonical_json(&value)).unwrap();
        expected.push(b'\n');
        assert_eq!(String::from_utf8(g.to_bytes()).unwrap(), String::from_utf8(expected).unwrap());
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
