//! paved as an OpenID Connect issuer, so no cloud key is ever stored.
//!
//! For each provisioning operation paved signs a short-lived JWT
//! ([`Issuer::mint`]) naming the environment (and service) it acts for. A
//! cloud that trusts paved's issuer URL (an IAM OIDC provider, a GCP
//! workload identity pool, an Azure federated credential) exchanges it for
//! credentials of its own that expire soon after ([`Federation`]); a
//! [`CredentialBroker`] keeps them in memory until shortly before expiry.
//!
//! Verifiers find the keys through the discovery document and JWKS
//! ([`Issuer::discovery`], [`Issuer::jwks`]). Signing keys (ES256) rotate:
//! each is published before it signs, signs for a while, and stays
//! published until every token it signed has expired.

mod broker;
mod issuer;
mod keys;

pub use broker::{CloudCredentials, CredentialBroker, Federation};
pub use issuer::{CONTROL_PLANE_SUBJECT, Claims, Issuer, IssuerConfig, MAX_TOKEN_TTL, SignedToken, WorkloadIdentity};

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("issuer configuration: {0}")]
    Config(String),
    #[error("signing key `{kid}` cannot be used: {reason}")]
    Key { kid: String, reason: String },
    #[error(transparent)]
    Secrets(#[from] paved_secrets::SecretsError),
    #[error(transparent)]
    Store(#[from] paved_store::StoreError),
    /// The cloud refused the token.
    #[error("{provider} refused the web-identity token of {subject}: {reason}")]
    Exchange { provider: String, subject: String, reason: String },
    /// The cloud's token service could not be reached (network, DNS, timeout).
    #[error("{provider} could not be reached to exchange the token of {subject}: {reason}")]
    Unreachable { provider: String, subject: String, reason: String },
}
