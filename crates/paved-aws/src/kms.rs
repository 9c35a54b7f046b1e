//! An AWS KMS key as the key-encryption key of paved's data keys: a data
//! key is wrapped by KMS `Encrypt` with an encryption context naming it, so
//! a wrapped key moved to another id does not decrypt.

use crate::{BrokeredCredentials, ClientConfig, api_error};
use async_trait::async_trait;
use aws_sdk_kms::config::{BehaviorVersion, Region};
use aws_sdk_kms::primitives::Blob;
use paved_secrets::{DataKey, KeyProvider, SecretsError, WrappedKey};

pub struct KmsKey {
    /// `aws-kms:ACCOUNT/KEY`, as recorded with every key it wraps.
    id: String,
    key_id: String,
    client: aws_sdk_kms::Client,
}

const CONTEXT_KEY: &str = "paved:data-key";

impl KmsKey {
    /// `key_id` is a key id, ARN or `alias/…`; calls are signed with
    /// `credentials` (the account's keyless ones).
    pub fn new(account: &str, key_id: &str, config: &ClientConfig, credentials: BrokeredCredentials) -> KmsKey {
        let mut builder = aws_sdk_kms::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(config.region.clone()))
            .credentials_provider(credentials);
        if let Some(endpoint) = &config.endpoint {
            builder = builder.endpoint_url(endpoint);
        }
        KmsKey {
            id: format!("aws-kms:{account}/{key_id}"),
            key_id: key_id.into(),
            client: aws_sdk_kms::Client::from_conf(builder.build()),
        }
    }

    fn kms_error<E, R>(operation: &'static str, e: aws_sdk_kms::error::SdkError<E, R>) -> SecretsError
    where
        E: std::error::Error + 'static,
        R: std::fmt::Debug,
    {
        SecretsError::Kms(api_error(operation, e).to_string())
    }
}

#[async_trait]
impl KeyProvider for KmsKey {
    fn id(&self) -> &str {
        &self.id
    }

    async fn wrap(&self, key: &DataKey, _nonce: [u8; 12]) -> Result<WrappedKey, SecretsError> {
        let out = self
            .client
            .encrypt()
            .key_id(&self.key_id)
            .plaintext(Blob::new(key.bytes().to_vec()))
            .encryption_context(CONTEXT_KEY, &key.id)
            .send()
            .await
            .map_err(|e| Self::kms_error("Encrypt", e))?;
        let blob = out.ciphertext_blob.ok_or_else(|| SecretsError::Kms("Encrypt returned no ciphertext".into()))?;
        Ok(WrappedKey {
            key_id: key.id.clone(),
            kek_id: self.id.clone(),
            nonce: [0; 12],
            ciphertext: blob.into_inner(),
        })
    }

    async fn unwrap(&self, wrapped: &WrappedKey) -> Result<DataKey, SecretsError> {
        if wrapped.kek_id != self.id {
            return Err(SecretsError::OtherKek { wrapped_by: wrapped.kek_id.clone(), provider: self.id.clone() });
        }
        let out = self
            .client
            .decrypt()
            .key_id(&self.key_id)
            .ciphertext_blob(Blob::new(wrapped.ciphertext.clone()))
            .encryption_context(CONTEXT_KEY, &wrapped.key_id)
            .send()
            .await
            .map_err(|e| {
                // A ciphertext KMS rejects was moved or edited; anything else is KMS being unreachable.
                if e.as_service_error().is_some_and(|s| s.is_invalid_ciphertext_exception()) {
                    SecretsError::DoesNotUnwrap { key_id: wrapped.key_id.clone(), kek_id: self.id.clone() }
                } else {
                    Self::kms_error("Decrypt", e)
                }
            })?;
        let bytes: [u8; 32] =
            out.plaintext.map(|b| b.into_inner()).and_then(|b| b.try_into().ok()).ok_or_else(|| {
                SecretsError::DoesNotUnwrap { key_id: wrapped.key_id.clone(), kek_id: self.id.clone() }
            })?;
        Ok(DataKey::from_bytes(wrapped.key_id.clone(), bytes))
    }
}
