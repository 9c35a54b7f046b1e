//! paved's domain types.
//!
//! Every spec kind a user writes is a plain Rust type here, deriving `serde`
//! (what is accepted) and `schemars` (the JSON Schema printed by
//! `paved schema` and enforced by `paved-spec`). One definition serves both,
//! so the documentation can never drift from what the parser accepts.
//!
//! Architecture invariant: this crate does no I/O and knows nothing about YAML,
//! storage or providers.

pub mod access;
pub mod account;
pub mod blueprint;
pub mod duration;
pub mod environment;
pub mod kind;
pub mod meta;
pub mod partition;
pub mod placeholder;
pub mod policy;
pub mod preview;
pub mod rollout;
pub mod score;
pub mod team;

pub use access::{BindingScope, BindingSubject, Role, RoleBinding, RoleBindingSpec};
pub use account::{CloudAccount, CloudAccountSpec, Provider};
pub use blueprint::{Blueprint, BlueprintSpec, ParamType, ParameterSpec};
pub use duration::SpecDuration;
pub use environment::{BlueprintRef, EnvType, Environment, EnvironmentSpec};
pub use kind::{Kind, PAVED_API_VERSION, SCORE_API_VERSION};
pub use meta::Metadata;
pub use policy::{DecisionPoint, Enforcement, Policy, PolicyException, PolicyExceptionSpec, PolicySpec};
pub use preview::PreviewSpec;
pub use rollout::{RolloutSpec, Strategy};
pub use score::Workload;
pub use team::{Team, TeamSpec};

/// Injected time, so tests and replays control it. Implementations that read
/// the system clock live at the edges (`paved_catalog::SystemClock`).
pub trait Clock: Send + Sync {
    fn now(&self) -> time::OffsetDateTime;
}

/// A validated spec of any kind, as stored and compared by the catalog.
// Specs are few and short-lived; boxing the larger variants would only add noise.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(untagged)]
pub enum Spec {
    Blueprint(Blueprint),
    CloudAccount(CloudAccount),
    Environment(Environment),
    Team(Team),
    RoleBinding(RoleBinding),
    Service(Workload),
    Policy(Policy),
    PolicyException(PolicyException),
}

impl Spec {
    pub fn kind(&self) -> Kind {
        match self {
            Spec::Blueprint(_) => Kind::Blueprint,
            Spec::CloudAccount(_) => Kind::CloudAccount,
            Spec::Environment(_) => Kind::Environment,
            Spec::Team(_) => Kind::Team,
            Spec::RoleBinding(_) => Kind::RoleBinding,
            Spec::Service(_) => Kind::Service,
            Spec::Policy(_) => Kind::Policy,
            Spec::PolicyException(_) => Kind::PolicyException,
        }
    }

    /// The key an object is recorded under. Blueprints are versioned, so each
    /// version is its own object (`name@version`): environments pin a version.
    pub fn object_name(&self) -> String {
        match self {
            Spec::Blueprint(b) => format!("{}@{}", b.metadata.name, b.spec.version),
            Spec::CloudAccount(a) => a.metadata.name.clone(),
            Spec::Environment(e) => e.metadata.name.clone(),
            Spec::Team(t) => t.metadata.name.clone(),
            Spec::RoleBinding(b) => b.metadata.name.clone(),
            Spec::Service(w) => w.metadata.name.clone(),
            Spec::Policy(p) => p.metadata.name.clone(),
            Spec::PolicyException(e) => e.metadata.name.clone(),
        }
    }

    /// The document as a user would write it (with `apiVersion` and `kind`).
    pub fn to_document(&self) -> serde_json::Value {
        let (api, kind) = match self {
            Spec::Service(_) => (SCORE_API_VERSION, None),
            other => (PAVED_API_VERSION, Some(other.kind().as_str())),
        };
        let body = match self {
            Spec::Blueprint(x) => serde_json::to_value(x),
            Spec::CloudAccount(x) => serde_json::to_value(x),
            Spec::Environment(x) => serde_json::to_value(x),
            Spec::Team(x) => serde_json::to_value(x),
            Spec::RoleBinding(x) => serde_json::to_value(x),
            Spec::Service(x) => serde_json::to_value(x),
            Spec::Policy(x) => serde_json::to_value(x),
            Spec::PolicyException(x) => serde_json::to_value(x),
        }
        .unwrap_or(serde_json::Value::Null);
        let mut doc = serde_json::Map::new();
        doc.insert("apiVersion".into(), api.into());
        if let Some(kind) = kind {
            doc.insert("kind".into(), kind.into());
        }
        if let serde_json::Value::Object(fields) = body {
            doc.extend(fields.into_iter().filter(|(k, _)| k != "apiVersion"));
        }
        serde_json::Value::Object(doc)
    }

    /// Parses a recorded document back (the inverse of [`Spec::to_document`]).
    pub fn from_document(kind: Kind, doc: serde_json::Value) -> Result<Spec, serde_json::Error> {
        let mut doc = doc;
        if let serde_json::Value::Object(map) = &mut doc {
            map.remove("kind");
            if kind != Kind::Service {
                map.remove("apiVersion");
            }
        }
        Ok(match kind {
            Kind::Blueprint => Spec::Blueprint(serde_json::from_value(doc)?),
            Kind::CloudAccount => Spec::CloudAccount(serde_json::from_value(doc)?),
            Kind::Environment => Spec::Environment(serde_json::from_value(doc)?),
            Kind::Team => Spec::Team(serde_json::from_value(doc)?),
            Kind::RoleBinding => Spec::RoleBinding(serde_json::from_value(doc)?),
            Kind::Service => Spec::Service(serde_json::from_value(doc)?),
            Kind::Policy => Spec::Policy(serde_json::from_value(doc)?),
            Kind::PolicyException => Spec::PolicyException(serde_json::from_value(doc)?),
        })
    }
}

/// Serialises a JSON value with every object's keys sorted — the bytes
/// [`canonical_json`]'s result serialises to — without copying the value
/// (a plan of thousands of nodes spent more time copying than writing).
pub struct Canonical<'a>(pub &'a serde_json::Value);

impl serde::Serialize for Canonical<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::{SerializeMap, SerializeSeq};
        match self.0 {
            serde_json::Value::Object(m) => {
                let mut entries: Vec<(&String, &serde_json::Value)> = m.iter().collect();
                entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
                let mut map = s.serialize_map(Some(entries.len()))?;
                for (k, v) in entries {
                    map.serialize_entry(k, &Canonical(v))?;
                }
                map.end()
            }
            serde_json::Value::Array(a) => {
                let mut seq = s.serialize_seq(Some(a.len()))?;
                for v in a {
                    seq.serialize_element(&Canonical(v))?;
                }
                seq.end()
            }
            other => other.serialize(s),
        }
    }
}

/// The same JSON with every object's keys sorted, recursively: the form that
/// is hashed and serialised wherever output must be byte-for-byte stable.
pub fn canonical_json(v: &serde_json::Value) -> serde_json::Value {
    match v {
        serde_json::Value::Object(m) => {
            let sorted: std::collections::BTreeMap<&String, serde_json::Value> =
                m.iter().map(|(k, v)| (k, canonical_json(v))).collect();
            serde_json::Value::Object(sorted.into_iter().map(|(k, v)| (k.clone(), v)).collect())
        }
        serde_json::Value::Array(a) => serde_json::Value::Array(a.iter().map(canonical_json).collect()),
        other => other.clone(),
    }
}

#[cfg(test)]
mod canonical_tests {
    use super::*;

    #[test]
    fn canonical_serialisation_writes_the_bytes_of_the_sorted_copy() {
        let v = serde_json::json!({"z": [{"b": 1, "a": {"y": null, "x": "é"}}], "a": true, "m": {"k2": 2.5, "k1": []}});
        let copied = serde_json::to_string(&canonical_json(&v)).unwrap();
        assert_eq!(serde_json::to_string(&Canonical(&v)).unwrap(), copied);
        assert_eq!(
            serde_json::to_vec_pretty(&Canonical(&v)).unwrap(),
            serde_json::to_vec_pretty(&canonical_json(&v)).unwrap()
        );
        assert!(copied.starts_with(r#"{"a":true,"m":{"k1":[],"k2":2.5},"z":[{"a":{"x""#), "{copied}");
    }
}
