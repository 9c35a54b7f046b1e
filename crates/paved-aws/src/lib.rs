//! AWS, keyless. Every AWS call paved makes is signed with credentials that
//! STS issued for one of paved's own short-lived tokens
//! ([`StsFederation`]); no code path reads a static key, and the SDK's
//! default credential chain (environment variables, profiles, instance
//! metadata) is never built.
//!
//! * [`client_config`]: region and endpoint for an SDK client (the
//!   standard `AWS_ENDPOINT_URL` override is honoured, e.g. for an emulator).
//! * [`StsFederation`]: a [`paved_identity::Federation`] for
//!   `AssumeRoleWithWebIdentity`.
//! * [`BrokeredCredentials`]: the SDK's credential provider over a
//!   [`paved_identity::CredentialBroker`], refreshed before expiry.
//! * [`KmsKey`]: an AWS KMS key as paved's key-encryption key.
//! * [`Ecr`]: an account's artifact registry (repositories, login).
//! * [`trust_policy`]: the IAM trust policy a platform engineer installs once.
//! * [`provision`]: the drivers that apply the AWS translation's nodes.

mod credentials;
mod ecr;
mod kms;
pub mod permissions;
pub mod provision;
mod sts;
mod trust;

pub use credentials::BrokeredCredentials;
pub use ecr::{Ecr, EcrLogin};
pub use kms::KmsKey;
pub use sts::{StsFederation, caller_identity};
pub use trust::{OidcProvider, trust_policy};

/// The default audience of tokens for AWS STS.
pub const STS_AUDIENCE: &str = "sts.amazonaws.com";

/// Where SDK clients send requests: a region, and the endpoint override
/// from `AWS_ENDPOINT_URL` when set (an emulator, a VPC endpoint).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientConfig {
    pub region: String,
    pub endpoint: Option<String>,
}

pub fn client_config(region: &str) -> ClientConfig {
    ClientConfig {
        region: region.to_string(),
        endpoint: std::env::var("AWS_ENDPOINT_URL").ok().filter(|e| !e.is_empty()),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AwsError {
    #[error("account `{account}`: {reason}")]
    Account { account: String, reason: String },
    #[error("AWS {operation}: {message}")]
    Api { operation: &'static str, message: String },
}

/// An SDK error with its service message (the `Display` of an SDK error
/// says only "service error").
pub(crate) fn api_error<E, R>(operation: &'static str, e: aws_sdk_sts::error::SdkError<E, R>) -> AwsError
where
    E: std::error::Error + 'static,
    R: std::fmt::Debug,
{
    use std::error::Error;
    let mut message = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        message = format!("{message}: {s}");
        source = s.source();
    }
    AwsError::Api { operation, message }
}
