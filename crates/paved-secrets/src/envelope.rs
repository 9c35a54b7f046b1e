//! Sealing and opening values with a data key, bound to where they belong.

use crate::SecretsError;
use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use rand::CryptoRng;

/// A secret's plaintext; never shown by `Debug` (logs, errors, panics).
#[derive(Clone, PartialEq, Eq)]
pub struct SecretValue(pub Vec<u8>);

impl std::fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SecretValue(<{} bytes redacted>)", self.0.len())
    }
}

/// An environment's data key (AES-256), in memory only while used.
#[derive(Clone)]
pub struct DataKey {
    pub id: String,
    bytes: [u8; 32],
}

impl std::fmt::Debug for DataKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DataKey").field("id", &self.id).finish_non_exhaustive()
    }
}

impl DataKey {
    pub fn generate(id: impl Into<String>, rng: &mut impl CryptoRng) -> DataKey {
        let mut bytes = [0u8; 32];
        rng.fill_bytes(&mut bytes);
        DataKey { id: id.into(), bytes }
    }

    /// Key material from elsewhere (a KMS's data key, a signing key's scalar).
    pub fn from_bytes(id: String, bytes: [u8; 32]) -> DataKey {
        DataKey { id, bytes }
    }

    pub fn bytes(&self) -> &[u8; 32] {
        &self.bytes
    }
}

/// A data key as stored: encrypted by a KEK.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrappedKey {
    pub key_id: String,
    /// Which KEK wrapped it (so rotation knows what still needs re-wrapping).
    pub kek_id: String,
    pub nonce: [u8; 12],
    pub ciphertext: Vec<u8>,
}

/// Where a value belongs; part of what is authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    pub environment: String,
    /// `""` for a secret of the whole environment.
    pub service: String,
    pub name: String,
    pub version: u64,
}

impl Binding {
    /// Unambiguous: length-prefixed fields, so `("a:b", "c")` and `("a", "b:c")` differ.
    fn associated_data(&self) -> Vec<u8> {
        let mut aad = b"paved.secret.v1".to_vec();
        for field in [self.environment.as_bytes(), self.service.as_bytes(), self.name.as_bytes()] {
            aad.extend_from_slice(&(field.len() as u64).to_be_bytes());
            aad.extend_from_slice(field);
        }
        aad.extend_from_slice(&self.version.to_be_bytes());
        aad
    }
}

/// A sealed value: the data key's id, a fresh nonce, the ciphertext (with tag).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sealed {
    pub key_id: String,
    pub nonce: [u8; 12],
    pub ciphertext: Vec<u8>,
}

pub(crate) fn encrypt(key: &[u8; 32], nonce: &[u8; 12], plaintext: &[u8], aad: &[u8]) -> Vec<u8> {
    let cipher = Aes256Gcm::new(&Key::<Aes256Gcm>::from(*key));
    // Encryption fails only for inputs beyond 64 GiB; secrets are far smaller.
    cipher.encrypt(&Nonce::from(*nonce), Payload { msg: plaintext, aad }).unwrap_or_default()
}

pub(crate) fn decrypt(key: &[u8; 32], nonce: &[u8; 12], ciphertext: &[u8], aad: &[u8]) -> Option<Vec<u8>> {
    let cipher = Aes256Gcm::new(&Key::<Aes256Gcm>::from(*key));
    cipher.decrypt(&Nonce::from(*nonce), Payload { msg: ciphertext, aad }).ok()
}

pub fn nonce(rng: &mut impl CryptoRng) -> [u8; 12] {
    let mut n = [0u8; 12];
    rng.fill_bytes(&mut n);
    n
}

pub fn seal(key: &DataKey, value: &SecretValue, at: &Binding, rng: &mut impl CryptoRng) -> Sealed {
    let nonce = nonce(rng);
    Sealed { key_id: key.id.clone(), nonce, ciphertext: encrypt(&key.bytes, &nonce, &value.0, &at.associated_data()) }
}

pub fn open(key: &DataKey, sealed: &Sealed, at: &Binding) -> Result<SecretValue, SecretsError> {
    let refused = || SecretsError::DoesNotOpen {
        environment: at.environment.clone(),
        name: at.name.clone(),
        version: at.version,
    };
    if sealed.key_id != key.id {
        return Err(refused());
    }
    decrypt(&key.bytes, &sealed.nonce, &sealed.ciphertext, &at.associated_data()).map(SecretValue).ok_or_else(refused)
}
