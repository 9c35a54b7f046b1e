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
//! | `command`   | `paved.command/KEY`: program, rendered args, timeout, declared outputs |
//! |             | and secrets, and the request the program reads (resource, environment, |
//! |             | blueprint parameters); its outputs are what the program answers        |
//! | `terraform` | `paved.terraform/KEY`: module, rendered variables, timeout, declared   |
//! |             | outputs and secrets; its outputs are the module's root outputs         |
//!
//! The drivers of `paved.command` and `paved.terraform` run on the machine
//! that applies (`paved_local::provisioners`); this module only plans.
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
use paved_model::blueprint::{How, Provisioner, TemplateProvisioner};
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
    let (index, p) = find(scope, resource.2, key)?;
    let (service, name, r) = resource;
    let fail = |what: &str, reason: String| PlanError::Provisioner {
        service: service.to_string(),
        resource: name.to_string(),
        at: format!(
            "blueprint `{}` spec.provisioners[{index}] (type `{}`){what}",
            scope.blueprint.metadata.name, p.resource_type
        ),
        reason,
    };
    let no_secrets = BTreeMap::new();
    let render = |what: String, text: &str| {
        render(text, scope, (name, r), key, &no_secrets).map(|(v, _)| v).map_err(|reason| fail(&what, reason))
    };
    let timeout = |t: &Option<paved_model::duration::SpecDuration>, default: u64| {
        t.as_ref().and_then(|t| t.parse()).map_or(default, |d| d.as_secs().max(1))
    };
    Some(match p.how() {
        Ok(How::Template(t)) => template(g, scope, &fail, t, (name, r), key),
        Ok(How::Command(c)) => (|| {
            let args = c
                .args
                .iter()
                .enumerate()
                .map(|(i, a)| render(format!(", args[{i}]"), a))
                .collect::<Result<Vec<_>, _>>()?;
            let request = json!({
                "resource": {
                    "type": r.kind, "class": r.class, "id": key, "name": name,
                    "params": r.params.clone().map(Value::Object).unwrap_or(json!({})),
                },
                "environment": environment(scope.environment),
                "parameters": scope.parameters,
            });
            let properties = json!({
                "program": c.program,
                "args": args,
                "timeoutSeconds": timeout(&c.timeout, 60),
                "outputs": c.outputs,
                "secrets": c.secrets,
                "request": escaped(request),
            });
            Ok(bind(g, Node::new("paved.command", key, properties), &c.outputs, &c.secrets))
        })(),
        Ok(How::Terraform(t)) => (|| {
            let mut variables = serde_json::Map::new();
            for (k, v) in &t.variables {
                variables.insert(k.clone(), Value::String(render(format!(", variables.{k}"), v)?));
            }
            let properties = json!({
                "resource": name,
                "module": t.module,
                "variables": variables,
                "timeoutSeconds": timeout(&t.timeout, 600),
                "outputs": t.outputs,
                "secrets": t.secrets,
            });
            Ok(bind(g, Node::new("paved.terraform", key, properties), &t.outputs, &t.secrets))
        })(),
        Err(why) => Err(fail("", why)),
    })
}

/// A command or module node added, its outputs (secrets sealed) bound.
fn bind(g: &mut ResourceGraph, mut node: Node, outputs: &[String], secrets: &[String]) -> ResourceBinding {
    let names: Vec<String> = outputs.iter().chain(secrets).cloned().collect();
    node.outputs.extend(names.iter().cloned());
    node.sensitive.extend(secrets.iter().cloned());
    ResourceBinding { node: g.add(node), outputs: names }
}

/// The environment as a provisioner's request names it.
fn environment(env: &Environment) -> Value {
    json!({
        "name": env.metadata.name,
        "type": env.spec.env_type.to_string(),
        "region": env.spec.region,
        "account": env.spec.account,
    })
}

/// `v` with every `${` written `$${`: a request is data, never a reference
/// the engine would resolve.
fn escaped(v: Value) -> Value {
    match v {
        Value::String(s) => Value::String(s.replace("${", "$${")),
        Value::Array(a) => Value::Array(a.into_iter().map(escaped).collect()),
        Value::Object(o) => Value::Object(o.into_iter().map(|(k, v)| (k, escaped(v))).collect()),
        other => other,
    }
}

/// A resource's nodes from a template provisioner, and how its outputs bind.
fn template(
    g: &mut ResourceGraph,
    scope: &Scope<'_>,
    fail: &dyn Fn(&str, String) -> PlanError,
    t: &TemplateProvisioner,
    (resource, r): (&str, &ResourceSpec),
    key: &str,
) -> Result<ResourceBinding, PlanError> {
    let mut secrets = BTreeMap::new();
    for name in &t.secrets {
        let node = Node::new("paved.secret", &format!("{key}--{name}"), json!({"length": SECRET_LENGTH}))
            .outputs(&["value"])
            .sensitive(&["value"])
            .immutable(&["length"]);
        secrets.insert(name.clone(), g.add(node));
    }
    let mut rendered = serde_json::Map::new();
    let mut sensitive: Vec<String> = t.secrets.clone();
    for (output, text) in &t.outputs {
        let (value, uses_secret) = render(text, scope, (resource, r), key, &secrets)
            .map_err(|reason| fail(&format!(", output `{output}`"), reason))?;
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
