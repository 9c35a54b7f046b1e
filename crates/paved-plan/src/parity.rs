//! Parity: how two environments' resource graphs differ, with what must
//! differ (their names, and with them their derived identifiers) masked out.
//! What remains is every other difference, field by field: the parameters
//! the blueprint declares, and anything nobody declared.

use crate::ResourceGraph;
use crate::diff::field_changes;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeSet;

/// One difference between the two environments.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Difference {
    /// The node, with the environment's name written `{env}`.
    pub node: String,
    /// Dotted field path; empty when the node exists on one side only.
    pub field: String,
    pub left: Option<Value>,
    pub right: Option<Value>,
    /// Explained by the blueprint's parameters (their values differ between
    /// the two environments); set by [`classify`].
    #[serde(default)]
    pub declared: bool,
    /// Found in the live state (an edit outside paved in one of the two
    /// environments), not in what paved plans for them.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub live: bool,
}

/// Marks each difference `declared` unless it is still there when the right
/// environment is planned with the left one's parameter values
/// (`undeclared`: the parity of those two graphs).
pub fn classify(differences: &mut [Difference], undeclared: &[Difference]) {
    let remaining: BTreeSet<(&str, &str)> = undeclared.iter().map(|d| (d.node.as_str(), d.field.as_str())).collect();
    for d in differences {
        d.declared = !remaining.contains(&(d.node.as_str(), d.field.as_str()));
    }
}

/// Replaces `name` where it stands as a whole word (between non-alphanumerics).
fn mask(text: &str, name: &str) -> String {
    if name.is_empty() {
        return text.to_string();
    }
    let word = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric());
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find(name) {
        let before = if i > 0 { rest[..i].chars().last() } else { out.chars().last() };
        let after = rest[i + name.len()..].chars().next();
        out.push_str(&rest[..i]);
        out.push_str(if word(before) || word(after) { name } else { "{env}" });
        rest = &rest[i + name.len()..];
    }
    out.push_str(rest);
    out
}

fn mask_value(v: &Value, name: &str) -> Value {
    match v {
        Value::String(s) => Value::String(mask(s, name)),
        Value::Array(a) => Value::Array(a.iter().map(|x| mask_value(x, name)).collect()),
        Value::Object(m) => Value::Object(m.iter().map(|(k, x)| (mask(k, name), mask_value(x, name))).collect()),
        other => other.clone(),
    }
}

type Masked<'a> = std::collections::BTreeMap<String, (Value, &'a crate::Node)>;

/// `v` with every identity value of `g` (region, address blocks) written `{KEY}`.
fn mask_identity(v: Value, g: &ResourceGraph) -> Value {
    match v {
        Value::String(mut s) => {
            for (key, value) in &g.identity {
                if !value.is_empty() && s.contains(value.as_str()) {
                    s = s.replace(value.as_str(), &format!("{{{key}}}"));
                }
            }
            Value::String(s)
        }
        Value::Array(a) => Value::Array(a.into_iter().map(|x| mask_identity(x, g)).collect()),
        Value::Object(m) => Value::Object(m.into_iter().map(|(k, x)| (k, mask_identity(x, g))).collect()),
        other => other,
    }
}

fn masked(g: &ResourceGraph) -> Masked<'_> {
    g.nodes
        .iter()
        .map(|(id, n)| (mask(id, &g.environment), (mask_identity(mask_value(&n.properties, &g.environment), g), n)))
        .collect()
}

/// Every difference between `left` and `right` once their names are masked, ordered by node and field.
pub fn parity(left: &ResourceGraph, right: &ResourceGraph) -> Vec<Difference> {
    let (l, r) = (masked(left), masked(right));
    let ids: BTreeSet<&String> = l.keys().chain(r.keys()).collect();
    let mut out = Vec::new();
    for id in ids {
        match (l.get(id), r.get(id)) {
            (Some((a, node)), Some((b, _))) => {
                out.extend(field_changes(a, b, node).into_iter().map(|c| Difference {
                    node: id.clone(),
                    field: c.field,
                    left: c.before,
                    right: c.after,
                    declared: false,
                    live: false,
                }));
            }
            (a, b) => out.push(Difference {
                node: id.clone(),
                field: String::new(),
                left: a.map(|_| Value::from("present")),
                right: b.map(|_| Value::from("present")),
                declared: false,
                live: false,
            }),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Node;
    use paved_model::Provider;
    use serde_json::json;

    fn graph(env: &str, replicas: u64) -> ResourceGraph {
        let mut g = ResourceGraph::new(Provider::Local, env);
        let node = |kind: &str, name: &str, properties: Value| Node {
            kind: kind.into(),
            name: name.into(),
            properties,
            depends_on: Default::default(),
            outputs: Default::default(),
            immutable: Default::default(),
            sensitive: Default::default(),
        };
        g.nodes.insert(
            format!("local.network/{env}"),
            node("local.network", env, json!({"name": format!("paved-{env}")})),
        );
        g.nodes.insert(
            "local.workload/api".into(),
            node(
                "local.workload",
                "api",
                json!({"replicas": replicas, "env": env, "host": format!("api.{env}.localhost")}),
            ),
        );
        g
    }

    #[test]
    fn names_are_masked_and_everything_else_is_listed() {
        assert_eq!(parity(&graph("dev", 1), &graph("staging", 1)), vec![]);
        let d = parity(&graph("dev", 1), &graph("staging", 3));
        assert_eq!(
            d,
            vec![Difference {
                node: "local.workload/api".into(),
                field: "replicas".into(),
                left: Some(json!(1)),
                right: Some(json!(3)),
                declared: false,
                live: false,
            }]
        );
        // Classified against the parity of graphs planned with the same values: explained.
        let mut classified = d.clone();
        classify(&mut classified, &parity(&graph("dev", 1), &graph("staging", 1)));
        assert!(classified[0].declared);
        classify(&mut classified, &d);
        assert!(!classified[0].declared);
        let mut extra = graph("staging", 1);
        extra.nodes.remove("local.workload/api");
        assert_eq!(parity(&graph("dev", 1), &extra)[0].right, None);
    }

    #[test]
    fn only_whole_words_are_masked() {
        assert_eq!(
            mask("dev device dev-db api.dev.localhost dev", "dev"),
            "{env} device {env}-db api.{env}.localhost {env}"
        );
    }
}
