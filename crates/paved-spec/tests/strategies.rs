//! Input generators shared by the property tests and the `parser_fuzz` bench.

use paved_model::environment::{BlueprintRef, EnvType, Environment, EnvironmentSpec};
use paved_model::meta::Metadata;
use paved_model::score::{Container, Workload, WorkloadMetadata};
use paved_model::team::{Subject, Team, TeamSpec};
use paved_model::{Spec, SpecDuration};
use proptest::prelude::*;
use std::collections::BTreeMap;

pub fn name() -> impl Strategy<Value = String> {
    "[a-z][a-z0-9-]{0,20}[a-z0-9]"
}

/// Any text without `$` (placeholders are checked, not under test here),
/// including YAML-significant characters, quotes, newlines and non-ASCII.
pub fn text() -> impl Strategy<Value = String> {
    "[^$\\x00-\\x08\\x0b-\\x1f\\x7f\\u{fffe}\\u{ffff}]{0,40}"
}

fn metadata() -> impl Strategy<Value = Metadata> {
    (name(), proptest::option::of(text()), proptest::collection::btree_map("[a-z]{1,8}", text(), 0..3))
        .prop_map(|(name, description, labels)| Metadata { name, description, labels })
}

fn team() -> impl Strategy<Value = Spec> {
    (metadata(), proptest::collection::vec("[a-z]{1,10}@example\\.com", 0..4), proptest::collection::vec(name(), 0..3))
        .prop_map(|(metadata, members, services)| {
            Spec::Team(Team {
                metadata,
                spec: TeamSpec {
                    members: members.into_iter().map(|m| Subject(format!("user:{m}"))).collect(),
                    services,
                },
            })
        })
}

fn env_type() -> impl Strategy<Value = EnvType> {
    prop_oneof![Just(EnvType::Development), Just(EnvType::Staging), Just(EnvType::Production), Just(EnvType::Preview)]
}

fn param_value() -> impl Strategy<Value = serde_json::Value> {
    prop_oneof![
        any::<i64>().prop_map(serde_json::Value::from),
        any::<bool>().prop_map(serde_json::Value::from),
        text().prop_map(serde_json::Value::from),
    ]
}

fn environment() -> impl Strategy<Value = Spec> {
    (
        metadata(),
        name(),
        name(),
        name(),
        env_type(),
        proptest::collection::btree_map("[a-z][a-zA-Z0-9]{0,8}", param_value(), 0..4),
        1u32..500,
    )
        .prop_map(|(metadata, bp, account, owner, env_type, parameters, hours)| {
            Spec::Environment(Environment {
                metadata,
                spec: EnvironmentSpec {
                    blueprint: BlueprintRef(format!("{bp}@1.2.3")),
                    account,
                    region: "local".into(),
                    env_type,
                    owner,
                    ttl: Some(SpecDuration(format!("{hours}h"))),
                    parameters,
                    secrets_from: vec![],
                },
            })
        })
}

fn workload() -> impl Strategy<Value = Spec> {
    (
        name(),
        proptest::collection::btree_map("[A-Z][A-Z0-9_]{0,10}", text(), 0..5),
        proptest::collection::vec(text(), 0..3),
    )
        .prop_map(|(name, variables, args)| {
            let container = Container {
                image: format!("registry.example.com/{name}:1"),
                command: None,
                args: if args.is_empty() { None } else { Some(args) },
                variables: if variables.is_empty() { None } else { Some(variables) },
                files: None,
                volumes: None,
                before: None,
                resources: None,
                liveness_probe: None,
                readiness_probe: None,
            };
            Spec::Service(Workload {
                api_version: "score.dev/v1b1".into(),
                metadata: WorkloadMetadata { name, annotations: BTreeMap::new(), extra: BTreeMap::new() },
                service: None,
                containers: BTreeMap::from([("main".to_string(), container)]),
                resources: BTreeMap::new(),
            })
        })
}

pub fn spec() -> impl Strategy<Value = Spec> {
    prop_oneof![team(), environment(), workload()]
}

/// Text that looks like YAML: indentation, indicators, anchors, aliases,
/// quotes, flow collections, document markers, tags and keys of our kinds.
pub fn yamlish() -> impl Strategy<Value = String> {
    let token = prop_oneof![
        Just("\n".to_string()),
        Just("  ".to_string()),
        Just("- ".to_string()),
        Just(": ".to_string()),
        Just("---\n".to_string()),
        Just("[".to_string()),
        Just("]".to_string()),
        Just("{".to_string()),
        Just("}".to_string()),
        Just(", ".to_string()),
        Just("&a ".to_string()),
        Just("*a".to_string()),
        Just("!!str ".to_string()),
        Just("\"".to_string()),
        Just("'".to_string()),
        Just("|\n".to_string()),
        Just("# c\n".to_string()),
        Just("${resources.db.host}".to_string()),
        Just("apiVersion: paved.dev/v1alpha1\n".to_string()),
        Just("apiVersion: score.dev/v1b1\n".to_string()),
        Just("kind: Environment\n".to_string()),
        Just("kind: Blueprint\n".to_string()),
        Just("metadata:\n  name: x\n".to_string()),
        Just("spec:\n".to_string()),
        Just("containers:\n  main:\n    image: x\n".to_string()),
        "[a-zA-Z0-9_.@/-]{1,8}",
        any::<i64>().prop_map(|i| i.to_string()),
        "\\PC{1,4}",
    ];
    proptest::collection::vec(token, 0..60).prop_map(|t| t.concat())
}
