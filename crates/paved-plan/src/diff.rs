//! Desired graph vs what was applied: create / update / replace / delete /
//! no-op per node, with field-level changes.

use crate::{PlanError, ResourceGraph};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Create,
    Update,
    Replace,
    Delete,
    #[serde(rename = "no-op")]
    NoOp,
}

impl Action {
    /// The terraform-style marker: `+`, `~`, `-/+`, `-`, blank.
    pub fn symbol(self) -> &'static str {
        match self {
            Action::Create => "+",
            Action::Update => "~",
            Action::Replace => "-/+",
            Action::Delete => "-",
            Action::NoOp => " ",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FieldChange {
    /// Dotted path of a leaf property, e.g. `containers.api.variables.PORT`.
    pub field: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub before: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub after: Option<Value>,
    /// Changing this field forces replacement.
    pub forces_replacement: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlannedNode {
    pub id: String,
    pub kind: String,
    pub name: String,
    pub action: Action,
    pub changes: Vec<FieldChange>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    pub environment: String,
    /// Creations, updates and replacements in dependency order, then
    /// deletions in reverse dependency order.
    pub nodes: Vec<PlannedNode>,
    /// What would make the apply fail although the plan is valid (a
    /// referenced secret that is not set), filled in by the caller.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// Services left out because they cannot be planned here, with why
    /// ([`crate::plan_services`]); the rest applies.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub blocked: std::collections::BTreeMap<String, Vec<String>>,
}

impl Plan {
    pub fn count(&self, action: Action) -> usize {
        self.nodes.iter().filter(|n| n.action == action).count()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.iter().all(|n| n.action == Action::NoOp)
    }
}

/// Every leaf of `v` by the dotted path [`field_changes`] names it with.
pub fn leaf_fields(v: &Value) -> BTreeMap<String, Value> {
    let mut out = BTreeMap::new();
    flatten("", v, &mut out);
    out
}

/// Sets (or with `None` removes) the leaf at a dotted `field` path, as
/// [`leaf_fields`] and [`field_changes`] name it; missing objects are created.
pub fn set_field(v: &mut Value, field: &str, value: Option<Value>) {
    let mut at = v;
    let mut parts = field.split('.').peekable();
    while let Some(key) = parts.next() {
        if !at.is_object() {
            *at = Value::Object(Default::default());
        }
        let Value::Object(map) = at else { return };
        if parts.peek().is_none() {
            match value {
                Some(value) => {
                    map.insert(key.to_string(), value);
                }
                None => {
                    map.remove(key);
                }
            }
            return;
        }
        at = map.entry(key.to_string()).or_insert(Value::Null);
    }
}

fn flatten(prefix: &str, v: &Value, out: &mut BTreeMap<String, Value>) {
    match v {
        Value::Object(m) if !m.is_empty() => {
            for (k, child) in m {
                let p = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
                flatten(&p, child, out);
            }
        }
        other => {
            out.insert(prefix.to_string(), other.clone());
        }
    }
}

/// Compares the desired graph with the recorded one (`None`: nothing applied yet).
pub fn diff(desired: &ResourceGraph, recorded: Option<&ResourceGraph>) -> Result<Plan, PlanError> {
    let empty = ResourceGraph::new(desired.provider, &desired.environment);
    let recorded = recorded.unwrap_or(&empty);
    let mut nodes = Vec::new();
    for id in desired.order()? {
        let want = &desired.nodes[&id];
        let (action, changes) = match recorded.nodes.get(&id) {
            None => (Action::Create, field_changes(&Value::Null, &want.properties, want)),
            // The common case of a re-plan, decided without flattening both trees.
            Some(have) if have.properties == want.properties => (Action::NoOp, Vec::new()),
            Some(have) => {
                let changes = field_changes(&have.properties, &want.properties, want);
                let action = if changes.is_empty() {
                    Action::NoOp
                } else if changes.iter().any(|c| c.forces_replacement) {
                    Action::Replace
                } else {
                    Action::Update
                };
                (action, changes)
            }
        };
        nodes.push(PlannedNode { id: id.clone(), kind: want.kind.clone(), name: want.name.clone(), action, changes });
    }
    for id in recorded.order()?.into_iter().rev() {
        if !desired.nodes.contains_key(&id) {
            let have = &recorded.nodes[&id];
            let changes = field_changes(&have.properties, &Value::Null, have);
            nodes.push(PlannedNode {
                id: id.clone(),
                kind: have.kind.clone(),
                name: have.name.clone(),
                action: Action::Delete,
                changes,
            });
        }
    }
    Ok(Plan { environment: desired.environment.clone(), nodes, warnings: vec![], blocked: desired.blocked.clone() })
}

/// Leaf-level differences between two property trees of `node`.
pub fn field_changes(before: &Value, after: &Value, node: &crate::Node) -> Vec<FieldChange> {
    let (mut b, mut a) = (BTreeMap::new(), BTreeMap::new());
    if !before.is_null() {
        flatten("", before, &mut b);
    }
    if !after.is_null() {
        flatten("", after, &mut a);
    }
    let fields: std::collections::BTreeSet<&String> = b.keys().chain(a.keys()).collect();
    fields
        .into_iter()
        .filter(|f| b.get(*f) != a.get(*f))
        .map(|f| {
            let top = f.split('.').next().unwrap_or_default();
            FieldChange {
                field: f.clone(),
                before: b.get(f).cloned(),
                after: a.get(f).cloned(),
                forces_replacement: !before.is_null() && !after.is_null() && node.immutable.contains(top),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Node;
    use paved_model::Provider;
    use serde_json::json;

    fn graph(nodes: Vec<Node>) -> ResourceGraph {
        let mut g = ResourceGraph::new(Provider::Local, "dev");
        for n in nodes {
            g.add(n);
        }
        g
    }

    #[test]
    fn classifies_every_action() {
        let before = graph(vec![
            Node::new("db", "a", json!({"database": "a", "size": "small"})).immutable(&["database"]),
            Node::new("db", "b", json!({"database": "b"})).immutable(&["database"]),
            Node::new("app", "c", json!({"replicas": 1})),
            Node::new("app", "gone", json!({"x": 1})),
        ]);
        let after = graph(vec![
            Node::new("db", "a", json!({"database": "a", "size": "large"})).immutable(&["database"]),
            Node::new("db", "b", json!({"database": "b2"})).immutable(&["database"]),
            Node::new("app", "c", json!({"replicas": 1})),
            Node::new("app", "new", json!({"x": 1})),
        ]);
        let plan = diff(&after, Some(&before)).unwrap();
        let actions: BTreeMap<&str, Action> = plan.nodes.iter().map(|n| (n.id.as_str(), n.action)).collect();
        assert_eq!(actions["db/a"], Action::Update);
        assert_eq!(actions["db/b"], Action::Replace);
        assert_eq!(actions["app/c"], Action::NoOp);
        assert_eq!(actions["app/new"], Action::Create);
        assert_eq!(actions["app/gone"], Action::Delete);
        let a = plan.nodes.iter().find(|n| n.id == "db/a").unwrap();
        assert_eq!(
            a.changes,
            vec![FieldChange {
                field: "size".into(),
                before: Some(json!("small")),
                after: Some(json!("large")),
                forces_replacement: false
            }]
        );
        assert_eq!(plan.nodes.last().unwrap().action, Action::Delete, "deletions come last");
    }

    #[test]
    fn nothing_changed_is_an_empty_plan() {
        let g = graph(vec![Node::new("app", "c", json!({"replicas": 1}))]);
        assert!(diff(&g, Some(&g)).unwrap().is_empty());
        assert!(!diff(&g, None).unwrap().is_empty());
    }

    #[test]
    fn deletions_run_in_reverse_dependency_order() {
        let before = graph(vec![
            Node::new("net", "n", json!({})),
            Node::new("db", "d", json!({})).after(["net/n".to_string()]),
            Node::new("app", "a", json!({})).after(["db/d".to_string()]),
        ]);
        let after = graph(vec![]);
        let order: Vec<String> = diff(&after, Some(&before)).unwrap().nodes.into_iter().map(|n| n.id).collect();
        assert_eq!(order, ["app/a", "db/d", "net/n"]);
    }
}
