//! Key-encryption keys: where they come from, and wrapping data keys with them.

use crate::SecretsError;
use crate::envelope::{DataKey, WrappedKey, decrypt, encrypt};
use rand::CryptoRng;
use std::path::{Path, PathBuf};

/// A key-encryption key. Wrapping binds the data key's id as associated
/// data, so a wrapped key cannot be swapped for another environment's.
pub trait KeyProvider: Send + Sync {
    /// A stable name for this KEK (recorded with every key it wraps).
    fn id(&self) -> &str;
    fn wrap(&self, key: &DataKey, rng: &mut dyn rand::Rng) -> WrappedKey;
    fn unwrap(&self, wrapped: &WrappedKey) -> Result<DataKey, SecretsError>;
}

/// A 256-bit KEK held in memory.
struct Kek {
    id: String,
    bytes: [u8; 32],
}

impl Kek {
    fn wrap(&self, key: &DataKey, rng: &mut dyn rand::Rng) -> WrappedKey {
        let mut n = [0u8; 12];
        rng.fill_bytes(&mut n);
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
            use std::io::Write;
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)
                .map_err(|e| bad(e.to_string()))?;
            writeln!(f, "{}", hex::encode(bytes)).and_then(|_| f.sync_all()).map_err(|e| bad(e.to_string()))?;
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
        impl KeyProvider for $t {
            fn id(&self) -> &str {
                &self.kek.id
            }
            fn wrap(&self, key: &DataKey, rng: &mut dyn rand::Rng) -> WrappedKey {
                self.kek.wrap(key, rng)
            }
            fn unwrap(&self, wrapped: &WrappedKey) -> Result<DataKey, SecretsError> {
                self.kek.unwrap(wrapped)
            }
        }
    };
}
provider!(KeyFile);
provider!(EnvKey);
