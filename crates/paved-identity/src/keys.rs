//! ES256 signing keys: generated from injected randomness, stored with the
//! private scalar wrapped by the local KEK, published as JWKs.

use crate::IdentityError;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::EncodingKey;
use p256::pkcs8::EncodePrivateKey;
use serde_json::json;
use sha2::{Digest, Sha256};

/// A P-256 key in memory.
pub(crate) struct SigningKey {
    pub kid: String,
    pub scalar: [u8; 32],
    pub public_jwk: serde_json::Value,
}

impl SigningKey {
    /// Builds the key from 32 random bytes; `None` in the 2^-128 case that
    /// they are not a valid scalar (the caller draws again).
    pub fn from_scalar(scalar: [u8; 32]) -> Option<SigningKey> {
        let secret = p256::SecretKey::from_slice(&scalar).ok()?;
        let point = p256::elliptic_curve::sec1::ToEncodedPoint::to_encoded_point(&secret.public_key(), false);
        let (x, y) = (URL_SAFE_NO_PAD.encode(point.x()?), URL_SAFE_NO_PAD.encode(point.y()?));
        // RFC 7638 thumbprint: the required members, sorted, no whitespace.
        let canonical = format!(r#"{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}"#);
        let kid = URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes()));
        let public_jwk = json!({"kty": "EC", "crv": "P-256", "x": x, "y": y, "kid": kid, "use": "sig", "alg": "ES256"});
        Some(SigningKey { kid, scalar, public_jwk })
    }

    pub fn encoding_key(&self) -> Result<EncodingKey, IdentityError> {
        let secret = p256::SecretKey::from_slice(&self.scalar)
            .map_err(|e| IdentityError::Key { kid: self.kid.clone(), reason: e.to_string() })?;
        let der =
            secret.to_pkcs8_der().map_err(|e| IdentityError::Key { kid: self.kid.clone(), reason: e.to_string() })?;
        Ok(EncodingKey::from_ec_der(der.as_bytes()))
    }
}
