//! Who may do what: roles bound to subjects at a scope.
//!
//! A `RoleBinding` is a spec like any other, so access is declared in the
//! same repository as the platform, reviewed, versioned and audited the same
//! way (`paved apply -f rbac.yaml`, `paved history rolebinding NAME`).

use crate::meta::Metadata;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::fmt;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RoleBinding {
    pub metadata: Metadata,
    pub spec: RoleBindingSpec,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RoleBindingSpec {
    pub role: Role,
    /// `user:EMAIL`, `group:NAME`, `serviceaccount:NAME`, or `team:NAME`
    /// (every member of that Team).
    pub subjects: Vec<BindingSubject>,
    /// Where the role applies: `organisation`, `team:NAME` (that team's
    /// services and environments) or `environment:NAME`.
    #[serde(default)]
    pub scope: BindingScope,
    /// Production environments are changed only through a binding that says
    /// so here (or that names the environment in its scope).
    #[serde(default)]
    pub production: bool,
    /// Lets its subjects read secret values (`paved secret reveal`) in its
    /// scope, with at least the developer role. No role implies it: reading
    /// a secret is granted explicitly, and every reveal is audited.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub reveal_secrets: bool,
}

/// What a subject may do, each role including the ones before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Reads specs, environments, plans and drift.
    Viewer,
    /// Also records services and environments and applies them; reads logs.
    Developer,
    /// Also records blueprints and accounts, destroys environments, reads the audit log.
    Operator,
    /// Also records teams and role bindings and manages API tokens.
    Admin,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Viewer, Role::Developer, Role::Operator, Role::Admin];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Developer => "developer",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(transparent)]
#[schemars(extend("pattern" = r"^(user|group|serviceaccount|team):[A-Za-z0-9._@+-]{1,254}$"))]
pub struct BindingSubject(pub String);

/// `organisation`, `team:NAME` or `environment:NAME`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum BindingScope {
    #[default]
    Organisation,
    Team(String),
    Environment(String),
}

impl BindingScope {
    pub fn parse(s: &str) -> Option<BindingScope> {
        let valid =
            |n: &str| !n.is_empty() && n.len() <= 63 && n.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
        match s.split_once(':') {
            None if s == "organisation" || s == "organization" => Some(BindingScope::Organisation),
            Some(("team", n)) if valid(n) => Some(BindingScope::Team(n.into())),
            Some(("environment", n)) if valid(n) => Some(BindingScope::Environment(n.into())),
            _ => None,
        }
    }
}

impl fmt::Display for BindingScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BindingScope::Organisation => f.write_str("organisation"),
            BindingScope::Team(t) => write!(f, "team:{t}"),
            BindingScope::Environment(e) => write!(f, "environment:{e}"),
        }
    }
}

impl Serialize for BindingScope {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for BindingScope {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        BindingScope::parse(&s).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "`{s}` is not a scope: use `organisation`, `team:NAME` or `environment:NAME`"
            ))
        })
    }
}

impl JsonSchema for BindingScope {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "BindingScope".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "pattern": "^(organisation|organization|team:[A-Za-z0-9-]{1,63}|environment:[A-Za-z0-9-]{1,63})$",
            "description": "`organisation`, `team:NAME` or `environment:NAME`"
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_round_trip_and_bad_ones_are_refused() {
        for s in ["organisation", "team:payments", "environment:eu-production"] {
            assert_eq!(BindingScope::parse(s).unwrap().to_string(), s);
        }
        for s in ["", "team:", "env:x", "team:a b", "org"] {
            assert_eq!(BindingScope::parse(s), None, "{s}");
        }
    }

    #[test]
    fn roles_are_ordered_by_power() {
        assert!(Role::Viewer < Role::Developer && Role::Developer < Role::Operator && Role::Operator < Role::Admin);
    }
}
