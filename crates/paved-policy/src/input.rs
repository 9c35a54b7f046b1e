//! The input document policies read, one shape for every decision point
//! (the parts that do not apply are absent). Versioned by `apiVersion`: a
//! field is only ever added within a version; `paved schema policy-input`
//! prints its JSON Schema.
//!
//! | decision                       | present                                   |
//! |--------------------------------|-------------------------------------------|
//! | `admission`                    | `spec` (and `environment` for one)        |
//! | `plan`                         | `environment`, `resources`                |
//! | `deploy`, `promote`, `rollback`| `environment`, `deployment`               |
//! | `secret-reveal`                | `environment`, `secret`                   |
//! | `preview`                      | `environment` (the preview), `preview`    |
//! | `branch-deploy`                | `environment`, `deployment` (with `branch`, `repository`, `commit`; `digest` empty: nothing is built yet) |

use paved_model::DecisionPoint;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub const API_VERSION: &str = "paved.dev/policy-input/v1";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Input {
    /// Always `paved.dev/policy-input/v1`.
    pub api_version: String,
    pub decision: DecisionPoint,
    /// Who asks: `user:…`, `serviceaccount:…`, `paved-git`, `paved-reconciler`.
    pub actor: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment: Option<EnvironmentInput>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spec: Option<SpecInput>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<Vec<ResourceInput>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployment: Option<DeploymentInput>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<SecretInput>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preview: Option<PreviewInput>,
}

impl Input {
    pub fn new(decision: DecisionPoint, actor: &str) -> Input {
        Input {
            api_version: API_VERSION.into(),
            decision,
            actor: actor.into(),
            environment: None,
            spec: None,
            resources: None,
            deployment: None,
            secret: None,
            preview: None,
        }
    }

    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or(serde_json::Value::Null)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EnvironmentInput {
    pub name: String,
    /// `development`, `staging`, `production`, `preview`.
    #[serde(rename = "type")]
    pub env_type: String,
    pub account: String,
    /// `local`, `aws`, …
    pub provider: String,
    pub region: String,
    /// The owning team.
    pub owner: String,
    /// `name@version` of its blueprint.
    pub blueprint: String,
}

/// A spec being recorded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SpecInput {
    pub kind: String,
    pub name: String,
    /// The document as recorded (`apiVersion`, `kind`, `metadata`, `spec` …).
    pub document: serde_json::Value,
}

/// One node of the planned resource graph.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ResourceInput {
    /// `aws.rds-instance/dev/payments-db`, …
    pub id: String,
    /// `aws.rds-instance`, `aws.security-group`, `local.postgres.database`, …
    #[serde(rename = "type")]
    pub resource_type: String,
    /// What the node asks the provider for (`aws.security-group`: `ingress`
    /// with `cidrBlocks`; `aws.rds-instance`: `publiclyAccessible`,
    /// `storageEncrypted`; …). Secrets never appear here.
    pub properties: serde_json::Value,
    /// What the plan does to it: `create`, `update`, `replace`, `delete`, `none`.
    pub action: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeploymentInput {
    pub service: String,
    /// The artifact's digest (`sha256:…`).
    pub digest: String,
    /// The environment a promotion takes the digest from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// The commit the artifact was built from, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
    /// `branch-deploy`: the branch pushed (`main`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub branch: Option<String>,
    /// `branch-deploy`: the repository pushed to (`payments/api`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repository: Option<String>,
    /// The time of the decision (RFC 3339, UTC): freeze windows read it.
    pub at: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SecretInput {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PreviewInput {
    /// The environment the preview is made from.
    pub of: String,
    pub repository: String,
    pub pull_request: u64,
    /// Secrets the preview will read from the environment it is made from.
    #[serde(default)]
    pub shared_secrets: Vec<String>,
}

/// The JSON Schema of [`Input`] (`paved schema policy-input`).
pub fn schema() -> serde_json::Value {
    serde_json::to_value(schemars::schema_for!(Input)).unwrap_or_default()
}
