//! Policy as code: `Policy` specs (Rego modules evaluated by paved-policy at
//! decision points) and `PolicyException` specs (a named, owned, expiring
//! waiver of a policy's findings).
//!
//! A policy's modules declare set rules whose names start with `deny` (or
//! `warn`); each value is a message (or an object with `msg`). The rule's
//! name is what decisions, the audit log and exceptions call it.

use crate::meta::Metadata;
use crate::team::Subject;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Policy {
    pub metadata: Metadata,
    pub spec: PolicySpec,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PolicySpec {
    /// The policy's own version (shown with every decision it makes).
    pub version: String,
    /// What the policy is for.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// `deny` stops the operation; `warn` lets it run and records the finding
    /// (for rolling a policy out).
    #[serde(default)]
    pub enforcement: Enforcement,
    /// Where the policy is evaluated; every decision point when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub decisions: Vec<DecisionPoint>,
    /// Rego modules by file name (`*_test.rego` files hold `test_*` rules
    /// for `paved policy test`).
    #[schemars(length(min = 1))]
    pub modules: BTreeMap<String, String>,
    /// A JSON document the modules read as `data.<package>…` (merged at the root).
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub data: serde_json::Value,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Enforcement {
    #[default]
    Deny,
    Warn,
}

/// The places paved asks its policies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum DecisionPoint {
    /// A spec is being recorded (`paved apply -f`, `POST /specs`).
    Admission,
    /// An environment's resource graph was planned and is about to be applied.
    Plan,
    Deploy,
    Promote,
    Rollback,
    /// A secret's value is about to be shown to a person.
    SecretReveal,
    /// A preview environment is about to be created for a pull request.
    Preview,
    /// A push to a branch a service maps to a production environment
    /// (`paved.dev/branches`). Refused unless a policy's `allow_*` rule
    /// grants it; the deployment then still passes the promotion order.
    BranchDeploy,
}

impl DecisionPoint {
    pub const ALL: [DecisionPoint; 8] = [
        DecisionPoint::Admission,
        DecisionPoint::Plan,
        DecisionPoint::Deploy,
        DecisionPoint::Promote,
        DecisionPoint::Rollback,
        DecisionPoint::SecretReveal,
        DecisionPoint::Preview,
        DecisionPoint::BranchDeploy,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DecisionPoint::Admission => "admission",
            DecisionPoint::Plan => "plan",
            DecisionPoint::Deploy => "deploy",
            DecisionPoint::Promote => "promote",
            DecisionPoint::Rollback => "rollback",
            DecisionPoint::SecretReveal => "secret-reveal",
            DecisionPoint::Preview => "preview",
            DecisionPoint::BranchDeploy => "branch-deploy",
        }
    }

    /// Where paved refuses unless a policy's `allow_*` rule grants it.
    pub fn reads_grants(self) -> bool {
        self == DecisionPoint::BranchDeploy
    }

    pub fn parse(s: &str) -> Option<DecisionPoint> {
        DecisionPoint::ALL.into_iter().find(|d| d.as_str() == s)
    }
}

impl std::fmt::Display for DecisionPoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PolicyException {
    pub metadata: Metadata,
    pub spec: PolicyExceptionSpec,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PolicyExceptionSpec {
    /// The policy whose findings are waived.
    pub policy: String,
    /// Its rules waived (`deny_public_database`); every rule when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<String>,
    /// Environments it applies in; every environment when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub environments: Vec<String>,
    /// Who answers for it.
    pub owner: Subject,
    /// Why the finding is accepted.
    #[schemars(length(min = 1))]
    pub reason: String,
    /// When it stops applying (RFC 3339, e.g. `2027-01-31T00:00:00Z`).
    #[schemars(extend("format" = "date-time"))]
    pub expires: String,
}

impl PolicyExceptionSpec {
    /// The expiry as a time; `None` when it does not parse (validation
    /// refuses such a spec, so an unparsable one never applies).
    pub fn expires_at(&self) -> Option<time::OffsetDateTime> {
        time::OffsetDateTime::parse(&self.expires, &time::format_description::well_known::Rfc3339).ok()
    }
}
