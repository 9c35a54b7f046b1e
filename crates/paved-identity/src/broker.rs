//! Exchanging paved's tokens for cloud credentials, kept in memory only
//! and refreshed before they expire.

use crate::IdentityError;
use crate::issuer::{Issuer, SignedToken, WorkloadIdentity};
use async_trait::async_trait;
use paved_model::Clock;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use time::{Duration, OffsetDateTime};

/// Short-lived credentials of one cloud. `Debug` shows no secret.
#[derive(Clone)]
pub struct CloudCredentials {
    /// `aws`, `gcp`, `azure`.
    pub provider: String,
    /// Who the cloud says they are (an assumed-role ARN, a service account).
    pub principal: String,
    pub expires_at: OffsetDateTime,
    /// Provider-specific fields (`access_key_id`, `secret_access_key`,
    /// `session_token` for AWS; an access token for GCP and Azure).
    pub fields: BTreeMap<String, String>,
}

impl std::fmt::Debug for CloudCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CloudCredentials")
            .field("provider", &self.provider)
            .field("principal", &self.principal)
            .field("expires_at", &self.expires_at)
            .field("fields", &self.fields.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// One cloud's token exchange (AWS STS `AssumeRoleWithWebIdentity`, GCP
/// STS + service account impersonation, Azure federated credentials).
/// Callers only ever ask a [`CredentialBroker`]; adding a cloud adds an
/// implementation, not a code path.
#[async_trait]
pub trait Federation: Send + Sync {
    fn provider(&self) -> &str;
    /// The `aud` the cloud expects (`sts.amazonaws.com`, a pool's URL, …).
    fn audience(&self) -> &str;
    /// Where the credentials are for (a role ARN, a service account): part
    /// of what cached credentials are keyed by.
    fn target(&self) -> &str;
    async fn exchange(&self, token: &SignedToken) -> Result<CloudCredentials, IdentityError>;
}

/// Mints a token, exchanges it, and caches the credentials until
/// `refresh_before` ahead of their expiry.
pub struct CredentialBroker {
    issuer: Arc<Issuer>,
    clock: Arc<dyn Clock>,
    refresh_before: Duration,
    cache: tokio::sync::Mutex<HashMap<(String, String, String), CloudCredentials>>,
}

impl CredentialBroker {
    pub fn new(issuer: Arc<Issuer>, clock: Arc<dyn Clock>) -> CredentialBroker {
        CredentialBroker { issuer, clock, refresh_before: Duration::minutes(5), cache: Default::default() }
    }

    pub fn issuer(&self) -> &Arc<Issuer> {
        &self.issuer
    }

    /// Credentials for `identity` from `federation`: cached ones while they
    /// have more than `refresh_before` left, else freshly exchanged.
    pub async fn credentials(
        &self,
        federation: &dyn Federation,
        identity: &WorkloadIdentity,
    ) -> Result<CloudCredentials, IdentityError> {
        let key = (federation.provider().to_string(), federation.target().to_string(), identity.subject());
        let mut cache = self.cache.lock().await;
        let now = self.clock.now();
        if let Some(c) = cache.get(&key).filter(|c| c.expires_at - self.refresh_before > now) {
            return Ok(c.clone());
        }
        let token = self.issuer.mint(identity, federation.audience()).await?;
        let fresh = federation.exchange(&token).await?;
        cache.retain(|_, c| c.expires_at > now);
        cache.insert(key, fresh.clone());
        Ok(fresh)
    }
}
