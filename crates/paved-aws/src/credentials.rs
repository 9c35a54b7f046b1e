//! The SDK's credential provider, fed by paved's broker: every client
//! signs with credentials STS issued for paved's token, refreshed by the
//! broker before they expire.

use aws_credential_types::Credentials;
use aws_credential_types::provider::{self, ProvideCredentials, future};
use paved_identity::{CredentialBroker, Federation, WorkloadIdentity};
use std::sync::Arc;

#[derive(Clone)]
pub struct BrokeredCredentials {
    broker: Arc<CredentialBroker>,
    federation: Arc<dyn Federation>,
    identity: WorkloadIdentity,
}

impl std::fmt::Debug for BrokeredCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BrokeredCredentials").field("subject", &self.identity.subject()).finish_non_exhaustive()
    }
}

impl BrokeredCredentials {
    pub fn new(broker: Arc<CredentialBroker>, federation: Arc<dyn Federation>, identity: WorkloadIdentity) -> Self {
        BrokeredCredentials { broker, federation, identity }
    }

    async fn fetch(&self) -> provider::Result {
        let c = self
            .broker
            .credentials(self.federation.as_ref(), &self.identity)
            .await
            .map_err(|e| provider::error::CredentialsError::provider_error(e.to_string()))?;
        let field = |k: &str| c.fields.get(k).cloned().unwrap_or_default();
        let expiry =
            std::time::UNIX_EPOCH + std::time::Duration::from_secs(c.expires_at.unix_timestamp().max(0) as u64);
        Ok(Credentials::new(
            field("access_key_id"),
            field("secret_access_key"),
            Some(field("session_token")),
            Some(expiry),
            "paved-web-identity",
        ))
    }
}

impl ProvideCredentials for BrokeredCredentials {
    fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        future::ProvideCredentials::new(self.fetch())
    }
}
