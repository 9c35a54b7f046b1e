//! API tokens: 256 random bits, shown once, stored only as a SHA-256 digest.
//!
//! A slow password hash (argon2, bcrypt) protects *guessable* secrets; these
//! are uniformly random, so a SHA-256 preimage is as hard as guessing the
//! token itself, and looking a token up costs one hash per request instead
//! of tens of milliseconds. (GitHub and most API platforms do the same.)

use rand::CryptoRng;
use sha2::{Digest, Sha256};

/// Every token starts with this, so scanners (and people) recognise a leaked one.
pub const PREFIX: &str = "pvd_";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    #[error("not a paved API token: it should start with `{PREFIX}` followed by 64 hex digits")]
    Malformed,
}

/// A freshly issued token: the secret to hand out once, and what is stored.
pub struct IssuedToken {
    pub secret: String,
    /// The token's public id (shown in listings, used to revoke it).
    pub id: String,
    /// SHA-256 of the secret, hex: the only form the store keeps.
    pub hash: String,
}

impl std::fmt::Debug for IssuedToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuedToken").field("id", &self.id).finish_non_exhaustive()
    }
}

pub fn issue(rng: &mut impl CryptoRng) -> IssuedToken {
    let mut bytes = [0u8; 32];
    rng.fill_bytes(&mut bytes);
    let secret = format!("{PREFIX}{}", hex::encode(bytes));
    let hash = hash(&secret);
    IssuedToken { id: id_of(&hash), hash, secret }
}

/// The digest a presented token is looked up by; refuses what cannot be a
/// token before touching the store.
pub fn parse(presented: &str) -> Result<String, TokenError> {
    let body = presented.strip_prefix(PREFIX).ok_or(TokenError::Malformed)?;
    if body.len() != 64 || !body.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(TokenError::Malformed);
    }
    Ok(hash(presented))
}

fn hash(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// The public id: the first 12 hex digits of the hash (not of the secret).
pub fn id_of(hash: &str) -> String {
    format!("tok_{}", &hash[..12.min(hash.len())])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_issued_token_parses_to_its_stored_hash_and_nothing_else_does() {
        let mut rng = rand::rng();
        let t = issue(&mut rng);
        assert!(t.secret.starts_with(PREFIX) && t.secret.len() == 68);
        assert_eq!(parse(&t.secret).unwrap(), t.hash);
        assert!(!t.hash.contains(&t.secret[4..]));
        assert_ne!(issue(&mut rng).hash, t.hash);
        for bad in ["", "pvd_", "Bearer x", &t.secret[..60], &format!("{}g", &t.secret[..67])] {
            assert_eq!(parse(bad), Err(TokenError::Malformed), "{bad}");
        }
        assert!(!format!("{t:?}").contains(&t.secret));
    }
}
