//! Environments: blueprint@version × account × region × type × parameter values.

use crate::duration::SpecDuration;
use crate::meta::Metadata;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Environment {
    pub metadata: Metadata,
    pub spec: EnvironmentSpec,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum EnvType {
    Development,
    Staging,
    Production,
    Preview,
}

impl EnvType {
    pub const ALL: [EnvType; 4] = [EnvType::Development, EnvType::Staging, EnvType::Production, EnvType::Preview];

    pub fn as_str(self) -> &'static str {
        match self {
            EnvType::Development => "development",
            EnvType::Staging => "staging",
            EnvType::Production => "production",
            EnvType::Preview => "preview",
        }
    }
}

impl fmt::Display for EnvType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct EnvironmentSpec {
    /// The blueprint and version this environment is built from: `name@1.2.0`.
    pub blueprint: BlueprintRef,
    /// Name of the CloudAccount to provision into.
    pub account: String,
    /// Must be one of the account's `allowedRegions`.
    pub region: String,
    #[serde(rename = "type")]
    pub env_type: EnvType,
    /// The Team that owns this environment.
    pub owner: String,
    /// Time to live; required for `preview` environments.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<SpecDuration>,
    /// Values for the blueprint's parameters; unset ones take the blueprint's
    /// default for this environment type.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub parameters: BTreeMap<String, serde_json::Value>,
    /// Environments whose secrets this one may use where it has none of its
    /// own, looked up in this order (a preview sharing staging's test
    /// credentials, say). A non-production environment may not name a
    /// production one: production secrets never reach previews.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secrets_from: Vec<String>,
}

/// `name@MAJOR.MINOR.PATCH`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(transparent)]
#[schemars(extend("pattern" = r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?@[0-9]+\.[0-9]+\.[0-9]+$"))]
pub struct BlueprintRef(pub String);

impl BlueprintRef {
    pub fn name(&self) -> &str {
        self.0.split_once('@').map_or(self.0.as_str(), |(n, _)| n)
    }

    pub fn version(&self) -> &str {
        self.0.split_once('@').map_or("", |(_, v)| v)
    }
}
