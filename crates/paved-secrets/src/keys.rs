//! Key-encryption keys: where they come from, and wrapping data keys with them.

use crate::SecretsError;
use crate::envelope::{DataKey, WrappedKey, decrypt, encrypt};
use async_trait::async_trait;
use rand::CryptoRng;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A key-encryption key. Wrapping binds the data key's id as associated
/// data, so a wrapped key cannot be swapped for another environment's.
/// Asynchronous because a KEK may live in a cloud KMS.
#[async_trait]
pub trait KeyProvider: Send + Sync {
    /// A stable name for this KEK (recorded with every key it wraps).
    fn id(&self) -> &str;
    /// Wraps `key`; `nonce` is fresh randomness from the caller (a KMS may ignore it).
    async fn wrap(&self, key: &DataKey, nonce: [u8; 12]) -> Result<WrappedKey, SecretsError>;
    async fn unwrap(&self, wrapped: &WrappedKey) -> Result<DataKey, SecretsError>;
}

/// The KEK that wraps new keys, and the ones still accepted for unwrapping
/// (during a rotation: the one being replaced).
#[derive(Clone)]
pub struct KeyRing {
    current: Arc<dyn KeyProvider>,
    previous: Vec<Arc<dyn KeyProvider>>,
}

impl KeyRing {
    pub fn new(current: Arc<dyn KeyProvider>) -> KeyRing {
        KeyRing { current, previous: Vec::new() }
    }

    /// A ring that wraps with `to` and still unwraps what `from` wrapped.
    pub fn rotating(from: Arc<dyn KeyProvider>, to: Arc<dyn KeyProvider>) -> KeyRing {
        KeyRing { current: to, previous: vec![from] }
    }

    /// This ring, also unwrapping what `previous` wrapped.
    pub fn also_reading(mut self, previous: Arc<dyn KeyProvider>) -> KeyRing {
        self.previous.push(previous);
        self
    }

    /// A ring that wraps with `to` and still unwraps with every KEK of this one.
    pub fn rotating_to(self, to: Arc<dyn KeyProvider>) -> KeyRing {
        let mut previous = vec![self.current];
        previous.extend(self.previous);
        KeyRing { current: to, previous }
    }

    pub fn current(&self) -> &Arc<dyn KeyProvider> {
        &self.current
    }

    pub async fn wrap(&self, key: &DataKey, nonce: [u8; 12]) -> Result<WrappedKey, SecretsError> {
        self.current.wrap(key, nonce).await
    }

    /// Unwraps with whichever KEK of the ring wrapped the key.
    pub async fn unwrap(&self, wrapped: &WrappedKey) -> Result<DataKey, SecretsError> {
        match std::iter::once(&self.current).chain(&self.previous).find(|k| k.id() == wrapped.kek_id) {
            Some(kek) => kek.unwrap(wrapped).await,
            None => {
                Err(SecretsError::OtherKek { wrapped_by: wrapped.kek_id.clone(), provider: self.current.id().into() })
            }
        }
    }
}

/// A 256-bit KEK held in memory.
struct Kek {
    id: String,
    bytes: [u8; 32],
}

impl Kek {
    fn wrap(&self, key: &DataKey, n: [u8; 12]) -> WrappedKey {
        let ciphertext = encrypt(&self.bytes, &n, key.bytes(), key.id.as_bytes());
        WrappedKey { key_id: key.id.clone(), kek_id: self.id.clone(), nonce: n, ciphertext }
    }

    fn unwrap(&self, wrapped: &WrappedKey) -> Result<DataKey, SecretsError> {
        if wrapped.kek_id != self.id {
            return Err(SecretsError::OtherKek { wrapped_by: wrapped.kek_id.clone(), provider: self.id.clone() });
        }
        let refused = || SecretsError::DoesNotUnwrap { key_id: wrapped.key_id.clone(), kek_id: self.id.clone() };
        let bytes =
            decrypt(&self.bytes, &wrapped.nonce, &wrapped.ciphertext, wrapped.key_id.as_bytes()).ok_or_else(refused)?;
        let bytes: [u8; 32] = bytes.try_into().map_err(|_| refused())?;
        Ok(DataKey::from_bytes(wrapped.key_id.clone(), bytes))
    }
}

fn parse_hex_key(source_name: &str, text: &str) -> Result<[u8; 32], SecretsError> {
    let bad = |reason: &str| SecretsError::BadKek { source_name: source_name.into(), reason: reason.into() };
    let bytes = hex::decode(text.trim()).map_err(|_| bad("not hex: write 64 hex digits (32 bytes)"))?;
    bytes.try_into().map_err(|_| bad("not 32 bytes: write 64 hex digits"))
}

/// The KEK in a local file (64 hex digits), created with mode 0600 on first use.
pub struct KeyFile {
    path: PathBuf,
    kek: Kek,
}

impl KeyFile {
    /// Reads the key file, or creates it (0600) with a fresh key. Refuses a
    /// file others can read.
    pub fn open_or_create(path: &Path, rng: &mut impl CryptoRng) -> Result<KeyFile, SecretsError> {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        let name = path.display().to_string();
        let bad = |reason: String| SecretsError::BadKek { source_name: name.clone(), reason };
        if !path.exists() {
            let mut bytes = [0u8; 32];
            rng.fill_bytes(&mut bytes);
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir).map_err(|e| bad(e.to_string()))?;
            }
            // Written aside and linked into place, so a paved starting at the same moment
            // reads either no file or the whole key, never half of one; the first link wins.
            use std::io::Write;
            static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
            let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let tmp = path.with_extension(format!("new-{}-{n}", std::process::id()));
            let _ = std::fs::remove_file(&tmp);
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&tmp)
                .map_err(|e| bad(e.to_string()))?;
            let written = writeln!(f, "{}", hex::encode(bytes)).and_then(|_| f.sync_all());
            let linked = written.and_then(|_| match std::fs::hard_link(&tmp, path) {
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
                other => other,
            });
            let _ = std::fs::remove_file(&tmp);
            linked.map_err(|e| bad(e.to_string()))?;
        }
        let mode = std::fs::metadata(path).map_err(|e| bad(e.to_string()))?.permissions().mode();
        if mode & 0o077 != 0 {
            return Err(bad(format!("readable by others (mode {:o}); `chmod 600` it", mode & 0o777)));
        }
        let text = std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))?;
        let bytes = parse_hex_key(&name, &text)?;
        Ok(KeyFile { path: path.to_path_buf(), kek: Kek { id: format!("file:{}", fingerprint(&bytes)), bytes } })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// The KEK from an environment variable (64 hex digits).
pub struct EnvKey {
    kek: Kek,
}

impl EnvKey {
    pub fn from_var(var: &str) -> Result<EnvKey, SecretsError> {
        let source_name = format!("${var}");
        let text = std::env::var(var)
            .map_err(|_| SecretsError::BadKek { source_name: source_name.clone(), reason: "not set".into() })?;
        let bytes = parse_hex_key(&source_name, &text)?;
        Ok(EnvKey { kek: Kek { id: format!("env:{}", fingerprint(&bytes)), bytes } })
    }
}

/// A KEK's public name: a hash of it, never the key.
fn fingerprint(bytes: &[u8; 32]) -> String {
    // Encrypting a constant block under the key is a key check value (as
    // HSMs use), and reveals nothing about the key itself.
    hex::encode(&encrypt(bytes, &[0u8; 12], b"", b"paved.kek.fingerprint")[..8])
}

macro_rules! provider {
    ($t:ty) => {
        #[async_trait]
        impl KeyProvider for $t {
            fn id(&self) -> &str {
                &self.kek.id
            }
            async fn wrap(&self, key: &DataKey, nonce: [u8; 12]) -> Result<WrappedKey, SecretsError> {
                Ok(self.kek.wrap(key, nonce))
            }
            async fn unwrap(&self, wrapped: &WrappedKey) -> Result<DataKey, SecretsError> {
                self.kek.unwrap(wrapped)
            }
        }
    };
}
provider!(KeyFile);
provider!(EnvKey);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paveds_starting_together_create_one_key_file_and_all_read_it_whole() {
        for _ in 0..20 {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("keys").join("kek");
            let ids: Vec<String> = std::thread::scope(|s| {
                let handles: Vec<_> = (0..8)
                    .map(|_| s.spawn(|| KeyFile::open_or_create(&path, &mut rand::rng()).map(|k| k.kek.id.clone())))
                    .collect();
                handles.into_iter().map(|h| h.join().unwrap().expect("a whole key")).collect()
            });
            assert!(ids.windows(2).all(|w| w[0] == w[1]), "{ids:?}");
            let left: Vec<_> = std::fs::read_dir(path.parent().unwrap()).unwrap().collect();
            assert_eq!(left.len(), 1, "temporary files left behind");
        }
    }
}
