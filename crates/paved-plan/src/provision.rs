//! Platform-defined provisioners (a blueprint's `spec.provisioners`), planned
//! as graph nodes like every built-in type, so ordering, crash safety,
//! parity and destroy apply to them unchanged.
//!
//! | provisioner | nodes                                                                  |
//! |-------------|------------------------------------------------------------------------|
//! | `template`  | `paved.template/KEY`: properties hold the rendered outputs; its        |
//! |             | outputs are those (references to secrets resolved at apply)            |
//! |             | `paved.secret/KEY--NAME` per generated secret: 32 random characters    |
//! |             | made once (output `value`, sealed in the vault)                        |
//!
//! Template placeholders, the `${…}` syntax Score users know:
//!
//! | placeholder                                  | value                                      |
//! |----------------------------------------------|--------------------------------------------|
//! | `${environment.name}` (`type`, `region`, `account`) | the environment's                   |
//! | `${parameters.NAME}`                         | the blueprint's parameter, resolved for it |
//! | `${resource.name}` (`type`, `class`, `id`)   | the Score resource (`id`: its key, shared by services naming the same `id`) |
//! | `${params.NAME}`                             | the resource's Score `params`              |
//! | `${secrets.NAME}`                            | a secret the provisioner generates         |
//!
//! An unknown placeholder is a plan-time error naming the provisioner, the
//! output, the resource and the service (which is then blocked, not its
//! neighbours).

use crate::resolve::ResourceBinding;
use crate::{Node, PlanError, ResourceGraph};
use paved_model::blueprint::Provisioner;
use paved_model::placeholder::{self, Segment};
use paved_model::score::ResourceSpec;
use paved_model::{Blueprint, Environment, Provider};
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// Length of a generated secret.
pub const SECRET_LENGTH: u64 = 32;

/// What a template may read besides the resource.
pub struct Scope<'a> {
    pub environment: &'a Environment,
    pub blueprint: &'a Blueprint,
    pub parameters: &'a BTreeMap<String, Value>,
    pub provider: Provider,
}

/// The blueprint's first provisioner serving `r` (shared key `key`), with its index.
pub fn find<'a>(scope: &Scope<'a>, r: &ResourceSpec, key: &str) -> Option<(usize, &'a Provisioner)> {
    let id = r.id.as_deref().map(|_| key);
    scope
        .blueprint
        .spec
        .provisioners
        .iter()
        .enumerate()
        .find(|(_, p)| p.serves(&r.kind, r.class.as_deref(), id, scope.provider))
}

/// The resource's binding from the blueprint's provisioner serving it, or
/// `None` when none does (a built-in type then may).
pub fn provisioned(
    g: &mut ResourceGraph,
    scope: &Scope<'_>,
    resource: (&str, &str, &ResourceSpec),
    key: &str,
) -> Option<Result<ResourceBinding, PlanError>> {
    let found = find(scope, resource.2, key)?;
    Some(template(g, scope, found, resource, key))
}

/// A resource's nodes from a template provisioner, and how its outputs bind.
pub fn template(
    g: &mut ResourceGraph,
    scope: &Scope<'_>,
    (index, p): (usize, &Provisioner),
    (service, resource, r): (&str, &str, &ResourceSpec),
    key: &str,
) -> Result<ResourceBinding, PlanError> {
    let fail = |output: &str, reason: String| PlanError::Provisioner {
        service: service.to_string(),
        resource: resource.to_string(),
        at: format!(
            "blueprint `{}` spec.provisioners[{index}] (type `{}`), output `{output}`",
            scope.blueprint.metadata.name, p.resource_type
        ),
        reason,
    };
    let mut secrets = BTreeMap::new();
    for name in &p.template.secrets {
        let node = Node::new("paved.secret", &format!("{key}--{name}"), json!({"length": SECRET_LENGTH}))
            .outputs(&["value"])
            .sensitive(&["value"])
            .immutable(&["length"]);
        secrets.insert(name.clone(), g.add(node));
    }
    let mut rendered = serde_json::Map::new();
    let mut sensitive: Vec<String> = p.template.secrets.clone();
    for (output, text) in &p.template.outputs {
        let (value, uses_secret) =
            render(text, scope, (resource, r), key, &secrets).map_err(|reason| fail(output, reason))?;
        if uses_secret {
            sensitive.push(output.clone());
        }
        rendered.insert(output.clone(), Value::String(value));
    }
    for (name, node) in &secrets {
        rendered.insert(name.clone(), Value::String(format!("${{ref:{node}.value}}")));
    }
    let names: Vec<String> = rendered.keys().cloned().collect();
    let mut node =
        Node::new("paved.template", key, json!({"type": r.kind, "outputs": rendered})).after(secrets.values().cloned());
    node.outputs.extend(names.iter().cloned());
    node.sensitive.extend(sensitive);
    Ok(ResourceBinding { node: g.add(node), outputs: names })
}

/// One template rendered; whether it used a generated secret.
fn render(
    text: &str,
    scope: &Scope<'_>,
    (name, r): (&str, &ResourceSpec),
    key: &str,
    secrets: &BTreeMap<String, String>,
) -> Result<(String, bool), String> {
    let segments = placeholder::parse(text).map_err(|e| e.to_string())?;
    let env = scope.environment;
    let (mut out, mut uses_secret) = (String::new(), false);
    for seg in segments {
        match seg {
            Segment::Literal(l) => out.push_str(&l.replace("${", "$${")),
            Segment::Placeholder(ph) => {
                let path: Vec<&str> = ph.path.iter().map(String::as_str).collect();
                let text = |v: &Value| match v {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                let value = match path.as_slice() {
                    ["environment", "name"] => env.metadata.name.clone(),
                    ["environment", "type"] => env.spec.env_type.to_string(),
                    ["environment", "region"] => env.spec.region.clone(),
                    ["environment", "account"] => env.spec.account.clone(),
                    ["parameters", name] => match scope.parameters.get(*name) {
                        Some(v) => text(v),
                        None => return Err(unknown(&ph.text(), "the blueprint has no such parameter")),
                    },
                    ["resource", "type"] => r.kind.clone(),
                    ["resource", "class"] => r.class.clone().unwrap_or_default(),
                    ["resource", "name"] => name.to_string(),
                    ["resource", "id"] => key.to_string(),
                    ["params", name] => match r.params.as_ref().and_then(|p| p.get(*name)) {
                        Some(v) => text(v),
                        None => return Err(unknown(&ph.text(), "the resource sets no such `params` entry")),
                    },
                    ["secrets", name] => match secrets.get(*name) {
                        Some(node) => {
                            uses_secret = true;
                            format!("${{ref:{node}.value}}")
                        }
                        None => return Err(unknown(&ph.text(), "the provisioner generates no such secret")),
                    },
                    // Validation refuses these first (`Provisioner::unknown_input`).
                    _ => return Err(unknown(&ph.text(), "not a template input")),
                };
                // A secret is a reference the engine resolves; every other value is literal text.
                if path.first() == Some(&"secrets") {
                    out.push_str(&value);
                } else {
                    out.push_str(&value.replace("${", "$${"));
                }
            }
        }
    }
    Ok((out, uses_secret))
}

fn unknown(placeholder: &str, why: &str) -> String {
    format!(
        "`{placeholder}`: {why}; templates read environment.name|type|region|account, parameters.NAME, \
         resource.name|type|class|id, params.NAME and secrets.NAME"
    )
}
