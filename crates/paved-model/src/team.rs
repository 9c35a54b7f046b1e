//! Teams: who owns which services and environments.

use crate::meta::Metadata;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Team {
    pub metadata: Metadata,
    pub spec: TeamSpec,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TeamSpec {
    /// Subjects: `user:EMAIL`, `group:NAME` or `serviceaccount:NAME`.
    #[serde(default)]
    pub members: Vec<Subject>,
    /// Names of the services (Score workloads) this team owns.
    #[serde(default)]
    pub services: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
#[serde(transparent)]
#[schemars(extend("pattern" = r"^(user|group|serviceaccount):[A-Za-z0-9._@+-]{1,254}$"))]
pub struct Subject(pub String);
