//! Provider-independent resolution: blueprint parameters for an environment,
//! and Score placeholders rewritten into graph references.

use crate::PlanError;
use paved_model::Workload;
use paved_model::blueprint::Param;
use paved_model::placeholder::{self, Segment};
use paved_model::{Blueprint, Environment};
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::collections::BTreeMap;

/// The parameter values of an environment: its own, else the blueprint's
/// default for its type.
pub fn parameters(env: &Environment, bp: &Blueprint) -> Result<BTreeMap<String, Value>, Vec<PlanError>> {
    let mut out = BTreeMap::new();
    let mut errors = Vec::new();
    for (name, p) in &bp.spec.parameters {
        match env.spec.parameters.get(name).or_else(|| p.default_for(env.spec.env_type)) {
            Some(v) => {
                out.insert(name.clone(), v.clone());
            }
            None => errors
                .push(PlanError::MissingParameter { environment: env.metadata.name.clone(), parameter: name.clone() }),
        }
    }
    if errors.is_empty() { Ok(out) } else { Err(errors) }
}

/// The value of a component field, literal or taken from a parameter.
pub fn param<T: DeserializeOwned + Clone>(
    field: &str,
    value: &Param<T>,
    params: &BTreeMap<String, Value>,
) -> Result<T, PlanError> {
    match value {
        Param::Value(v) => Ok(v.clone()),
        Param::Ref(r) => {
            let name = r.parameter().unwrap_or_default();
            let v = params.get(name).ok_or_else(|| PlanError::MissingParameter {
                environment: String::new(),
                parameter: name.to_string(),
            })?;
            serde_json::from_value(v.clone()).map_err(|_| PlanError::BadParameter {
                parameter: name.to_string(),
                value: v.to_string(),
                field: field.to_string(),
            })
        }
    }
}

/// How a provider satisfies `${resources.NAME.FIELD}`: the node id that
/// holds the resource and the outputs it offers (the first is the default
/// for `${resources.NAME}` without a field).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceBinding {
    pub node: String,
    pub outputs: Vec<String>,
}

impl ResourceBinding {
    /// Score's `environment` type: values the environment provides, here
    /// its secrets — `${resources.env.NAME}` is `${secrets.NAME}` (set with
    /// `paved secret set NAME -e ENV`), resolved only when applied. It has
    /// no node: nothing is provisioned.
    pub fn environment() -> ResourceBinding {
        ResourceBinding { node: String::new(), outputs: Vec::new() }
    }

    /// Whether a graph node holds it (every type but `environment`).
    pub fn has_node(&self) -> bool {
        !self.node.is_empty()
    }
}

/// A built-in type's output names, for a [`ResourceBinding`].
pub fn outputs(names: &[&str]) -> Vec<String> {
    names.iter().map(|n| n.to_string()).collect()
}

/// Rewrites the placeholders of one string: `${metadata.…}` becomes its
/// value, `${resources.R.F}` becomes `${ref:NODE.F}`, `${secrets.NAME}`
/// becomes `${secret:SERVICE/NAME}`, `$${` stays an escape.
pub fn rewrite(
    w: &Workload,
    field: &str,
    text: &str,
    bindings: &BTreeMap<String, ResourceBinding>,
) -> Result<String, PlanError> {
    let fail = |placeholder: String, reason: String| PlanError::Unsatisfiable {
        service: w.metadata.name.clone(),
        field: field.to_string(),
        placeholder,
        reason,
    };
    let segments = placeholder::parse(text).map_err(|e| fail(text.to_string(), e.to_string()))?;
    let mut out = String::new();
    for seg in segments {
        match seg {
            Segment::Literal(l) => out.push_str(&l.replace("${", "$${")),
            Segment::Placeholder(p) => {
                let path: Vec<&str> = p.path.iter().map(String::as_str).collect();
                match path.as_slice() {
                    ["metadata", "name"] => out.push_str(&w.metadata.name),
                    ["metadata", "annotations", key @ ..] => match w.metadata.annotations.get(&key.join(".")) {
                        Some(v) => out.push_str(v),
                        None => return Err(fail(p.text(), "no such annotation".into())),
                    },
                    ["resources", name, rest @ ..] => {
                        let b = bindings
                            .get(*name)
                            .ok_or_else(|| fail(p.text(), format!("resource `{name}` is not declared")))?;
                        if !b.has_node() {
                            match rest {
                                [f] => out.push_str(&format!("${{secret:{}/{f}}}", w.metadata.name)),
                                _ => {
                                    return Err(fail(
                                        p.text(),
                                        format!(
                                            "name the value: `${{resources.{name}.NAME}}` (the environment's secret NAME)"
                                        ),
                                    ));
                                }
                            }
                            continue;
                        }
                        let output = match rest {
                            [] => b
                                .outputs
                                .first()
                                .map(String::as_str)
                                .ok_or_else(|| fail(p.text(), "this resource has no outputs".into()))?,
                            [f] if b.outputs.iter().any(|o| o == f) => f,
                            _ => {
                                let offered =
                                    if b.outputs.is_empty() { "none".to_string() } else { b.outputs.join(", ") };
                                return Err(fail(p.text(), format!("outputs offered: {offered}")));
                            }
                        };
                        out.push_str(&format!("${{ref:{}.{output}}}", b.node));
                    }
                    // Resolved at apply time only: the graph (and so every plan) holds the reference.
                    ["secrets", name] => out.push_str(&format!("${{secret:{}/{name}}}", w.metadata.name)),
                    _ => return Err(fail(p.text(), "unknown placeholder".into())),
                }
            }
        }
    }
    Ok(out)
}

/// Score resources shared between services by `id`: each resource's key,
/// and one type per key.
#[derive(Debug, Default)]
pub struct SharedResources(BTreeMap<String, String>);

impl SharedResources {
    /// The resource's key (its `id`, else `SERVICE-NAME`); an error when the
    /// id was declared before with another type.
    pub fn key(
        &mut self,
        service: &str,
        name: &str,
        r: &paved_model::score::ResourceSpec,
    ) -> Result<String, PlanError> {
        let key = r.id.clone().unwrap_or_else(|| format!("{service}-{name}"));
        match self.0.insert(key.clone(), r.kind.clone()).filter(|t| *t != r.kind) {
            Some(first) => Err(PlanError::ConflictingShare { id: key, first, second: r.kind.clone() }),
            None => Ok(key),
        }
    }
}
