//! Envelope encryption of secrets (first part of the secrets capability).
//!
//! Each environment has its own data key (DEK, AES-256). A secret value is
//! sealed with its environment's DEK under AES-256-GCM, with associated data
//! that names where it belongs — environment, secret name, version — so a
//! ciphertext copied to another environment or name, or edited, does not
//! open. DEKs are stored only wrapped (AES-256-GCM again) by a
//! key-encryption key (KEK) from a [`KeyProvider`]: a local key file (0600,
//! created on first use) or an environment variable; a cloud KMS fits the
//! same trait.
//!
//! Randomness is passed in (nonces, keys), so tests control it.

mod envelope;
mod keys;
pub mod vault;

pub use envelope::{Binding, DataKey, Sealed, SecretValue, WrappedKey, nonce, open, seal};
pub use keys::{EnvKey, KeyFile, KeyProvider, KeyRing};
pub use vault::{Actor, RotateOptions, RotationPhase, RotationReport, Scope, SecretInfo, Vault};

#[derive(Debug, thiserror::Error)]
pub enum SecretsError {
    /// Wrong key, moved to another place, or edited: AES-GCM cannot tell which.
    #[error(
        "the secret `{name}` (version {version}) does not decrypt for environment `{environment}`: it was sealed for another place, edited, or with another key"
    )]
    DoesNotOpen { environment: String, name: String, version: u64 },
    #[error(
        "the data key `{key_id}` does not unwrap with key-encryption key `{kek_id}`: wrong or rotated KEK, or an edited key"
    )]
    DoesNotUnwrap { key_id: String, kek_id: String },
    #[error(
        "the data key was wrapped by key-encryption key `{wrapped_by}`, not by `{provider}` (rotate or configure that KEK)"
    )]
    OtherKek { wrapped_by: String, provider: String },
    #[error("key-encryption key {source_name}: {reason}")]
    BadKek { source_name: String, reason: String },
    #[error("sealed data is malformed: {0}")]
    Malformed(String),
    #[error("no secret {scope}: `paved secret list -e ENV` shows the names that exist")]
    NotFound { scope: String },
    #[error("invalid secret name `{name}`: {reason}")]
    BadName { name: String, reason: String },
    /// A key-encryption key held by a cloud KMS could not be used.
    #[error("key management service: {0}")]
    Kms(String),
    #[error(transparent)]
    Store(#[from] paved_store::StoreError),
}
