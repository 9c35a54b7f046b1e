//! Cloud accounts: where environments are provisioned, which regions data may
//! live in, and how paved obtains short-lived credentials (never long-lived keys).

use crate::meta::Metadata;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CloudAccount {
    pub metadata: Metadata,
    pub spec: CloudAccountSpec,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Provider {
    Local,
    Aws,
    Gcp,
    Azure,
    Kubernetes,
}

impl Provider {
    pub fn as_str(self) -> &'static str {
        match self {
            Provider::Local => "local",
            Provider::Aws => "aws",
            Provider::Gcp => "gcp",
            Provider::Azure => "azure",
            Provider::Kubernetes => "kubernetes",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CloudAccountSpec {
    pub provider: Provider,
    /// AWS account id (12 digits), GCP project id, Azure subscription id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account_id: Option<String>,
    /// Data residency: environments of this account may only use these regions.
    #[schemars(length(min = 1))]
    pub allowed_regions: Vec<String>,
    /// Keyless credential configuration for the provider.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials: Option<Credentials>,
    /// How the local provider runs workloads. When absent: `docker` where a
    /// Docker Engine answers, else `process`. Only for `provider: local`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime: Option<LocalRuntime>,
    /// Where the Kubernetes manifests of this account's cluster environments
    /// are committed for Argo CD to apply (GitOps). Only for cloud providers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gitops: Option<GitOps>,
}

/// A GitOps repository. Its credential (a token, `PAVED_GITOPS_TOKEN` in
/// the environment's secrets) lives in paved's vault, never in a spec.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct GitOps {
    /// The repository's clone URL (`https://…`, `http://…`, `ssh://…` or
    /// `git://…`; never a path on paved's machine or a command transport).
    #[schemars(regex(pattern = r"^(https?|ssh|git)://[^\s]+$"))]
    pub repository: String,
    /// The branch Argo CD follows.
    #[serde(default = "default_branch")]
    #[schemars(regex(pattern = r"^[A-Za-z0-9_][A-Za-z0-9._/-]*$"), length(max = 200))]
    pub branch: String,
    /// The folder of the repository that paved owns (empty: the root); no
    /// segment may be `.` or `..`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    #[schemars(regex(pattern = r"^((?:[A-Za-z0-9_-][A-Za-z0-9._-]*/)*[A-Za-z0-9_-][A-Za-z0-9._-]*)?$"))]
    pub path: String,
    /// The user paved names with the token of an `https://` repository (the
    /// vault's `PAVED_GITOPS_TOKEN`); default `x-access-token` (GitHub's
    /// tokens; GitLab and Gitea accept any user with a token).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[A-Za-z0-9._@-]{1,100}$"))]
    pub username: Option<String>,
}

fn default_branch() -> String {
    "main".into()
}

/// The local provider's workload runtimes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum LocalRuntime {
    /// Containers on the Docker Engine, a Docker network per environment.
    Docker,
    /// Supervised processes from artifact bundles, a loopback address per environment.
    Process,
}

impl LocalRuntime {
    pub fn as_str(self) -> &'static str {
        match self {
            LocalRuntime::Docker => "docker",
            LocalRuntime::Process => "process",
        }
    }
}

/// How paved proves its identity to the provider with a short-lived token it
/// signs itself. Exactly the block matching `provider` is expected.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Credentials {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aws: Option<AwsCredentials>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gcp: Option<GcpCredentials>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub azure: Option<AzureCredentials>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AwsCredentials {
    /// The IAM role paved assumes with `AssumeRoleWithWebIdentity`.
    #[schemars(regex(pattern = r"^arn:aws[a-z-]*:iam::[0-9]{12}:role/[A-Za-z0-9+=,.@_/-]{1,512}$"))]
    pub role_arn: String,
    /// Audience of the web-identity token (default `sts.amazonaws.com`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audience: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct GcpCredentials {
    /// `projects/NUMBER/locations/global/workloadIdentityPools/POOL/providers/PROVIDER`
    pub workload_identity_provider: String,
    pub service_account_email: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AzureCredentials {
    pub tenant_id: String,
    pub client_id: String,
}
