//! The issuer: signing keys in the store, discovery and JWKS documents,
//! and short-lived tokens for workloads of environments.

use crate::IdentityError;
use crate::keys::SigningKey;
use jsonwebtoken::{Algorithm, Header};
use paved_model::Clock;
use paved_secrets::{DataKey, KeyRing, WrappedKey};
use paved_store::{Store, StoredSigningKey};
use rand::{CryptoRng, SeedableRng};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use time::{Duration, OffsetDateTime};

/// The longest a token may live: a leaked token is useless soon.
pub const MAX_TOKEN_TTL: Duration = Duration::minutes(15);
/// Clock difference between paved and verifiers that is tolerated.
const SKEW: Duration = Duration::minutes(5);

#[derive(Debug, Clone)]
pub struct IssuerConfig {
    /// paved's public URL: the `iss` claim, and where verifiers fetch
    /// `/.well-known/openid-configuration`.
    pub url: String,
    pub token_ttl: Duration,
    /// How long one key signs before the next takes over.
    pub key_lifetime: Duration,
    /// How long before it signs a key is published (verifiers cache JWKS).
    pub publish_ahead: Duration,
}

impl IssuerConfig {
    /// Checks the URL (http(s), no query or fragment; a trailing `/` is
    /// dropped so `iss` matches what verifiers are configured with).
    pub fn new(url: &str) -> Result<IssuerConfig, IdentityError> {
        let url = url.trim_end_matches('/');
        let scheme_ok = url.starts_with("https://") || url.starts_with("http://");
        let host = url.split_once("://").map_or("", |(_, rest)| rest);
        if !scheme_ok || host.is_empty() || url.contains(['?', '#', ' ']) {
            return Err(IdentityError::Config(format!(
                "the public URL `{url}` is not an http(s) URL without query or fragment (e.g. https://paved.example.com)"
            )));
        }
        Ok(IssuerConfig {
            url: url.to_string(),
            token_ttl: Duration::minutes(10),
            key_lifetime: Duration::hours(24),
            publish_ahead: Duration::hours(1),
        })
    }

    pub fn with_token_ttl(mut self, ttl: Duration) -> Result<IssuerConfig, IdentityError> {
        if ttl <= Duration::ZERO || ttl > MAX_TOKEN_TTL {
            return Err(IdentityError::Config(format!(
                "a token lifetime of {ttl} is not between 1 s and {MAX_TOKEN_TTL}"
            )));
        }
        self.token_ttl = ttl;
        Ok(self)
    }
}

/// Who a token speaks for: an environment (or one of its services) being
/// provisioned, or paved's control plane itself (its secrets' KMS key).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkloadIdentity {
    /// Empty for the control plane.
    pub environment: String,
    pub account: String,
    /// The provisioning operation (an apply's request id).
    pub operation: String,
    pub service: Option<String>,
}

/// The subject of the control plane's own tokens (`paved:control-plane`).
pub const CONTROL_PLANE_SUBJECT: &str = "paved:control-plane";

impl WorkloadIdentity {
    /// paved's control plane acting in `account` (e.g. for a KMS key).
    pub fn control_plane(account: &str, operation: &str) -> WorkloadIdentity {
        WorkloadIdentity {
            environment: String::new(),
            account: account.into(),
            operation: operation.into(),
            service: None,
        }
    }

    /// `paved:env:ENV`, `paved:env:ENV:service:SERVICE` or
    /// `paved:control-plane`: trust policies match on it (`paved:env:prod`
    /// exactly, `paved:env:prod:service:*` for its services).
    pub fn subject(&self) -> String {
        match (&self.service, self.environment.is_empty()) {
            (_, true) => CONTROL_PLANE_SUBJECT.to_string(),
            (Some(s), false) => format!("paved:env:{}:service:{s}", self.environment),
            (None, false) => format!("paved:env:{}", self.environment),
        }
    }
}

/// The claims of a paved token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub iss: String,
    pub sub: String,
    pub aud: String,
    pub iat: i64,
    pub nbf: i64,
    pub exp: i64,
    pub jti: String,
    pub environment: String,
    pub account: String,
    pub operation: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
}

/// A signed token. `Debug` does not show it: it is a bearer credential.
#[derive(Clone)]
pub struct SignedToken {
    pub token: String,
    pub kid: String,
    pub claims: Claims,
    pub expires_at: OffsetDateTime,
}

impl std::fmt::Debug for SignedToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignedToken").field("kid", &self.kid).field("claims", &self.claims).finish_non_exhaustive()
    }
}

pub struct Issuer {
    store: Arc<dyn Store>,
    keys: KeyRing,
    clock: Arc<dyn Clock>,
    config: IssuerConfig,
    rng: Mutex<Box<dyn CryptoRng + Send>>,
}

impl Issuer {
    /// `keys` wraps the private halves: a local KEK (the issuer must sign
    /// before any cloud credential, and so any cloud KMS, is reachable).
    pub fn new(store: Arc<dyn Store>, keys: KeyRing, clock: Arc<dyn Clock>, config: IssuerConfig) -> Issuer {
        let rng = rand::rngs::StdRng::from_rng(&mut rand::rng());
        Issuer::with_rng(store, keys, clock, config, Box::new(rng))
    }

    pub fn with_rng(
        store: Arc<dyn Store>,
        keys: KeyRing,
        clock: Arc<dyn Clock>,
        config: IssuerConfig,
        rng: Box<dyn CryptoRng + Send>,
    ) -> Issuer {
        Issuer { store, keys, clock, config, rng: Mutex::new(rng) }
    }

    pub fn config(&self) -> &IssuerConfig {
        &self.config
    }

    fn random<const N: usize>(&self) -> [u8; N] {
        let mut b = [0u8; N];
        self.rng.lock().unwrap_or_else(|p| p.into_inner()).fill_bytes(&mut b);
        b
    }

    /// The OpenID Provider metadata verifiers read.
    pub fn discovery(&self) -> Value {
        json!({
            "issuer": self.config.url,
            "jwks_uri": format!("{}/.well-known/jwks.json", self.config.url),
            "response_types_supported": ["id_token"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["ES256"],
            "scopes_supported": ["openid"],
            "claims_supported": ["iss", "sub", "aud", "iat", "nbf", "exp", "jti", "environment", "account", "operation", "service"],
        })
    }

    /// The published keys: each from before it signs until every token it
    /// signed has expired.
    pub async fn jwks(&self) -> Result<Value, IdentityError> {
        let now = self.clock.now();
        self.current_key(now).await?;
        let keys: Vec<Value> = self
            .store
            .signing_keys()
            .await?
            .iter()
            .filter(|k| k.created_at <= now && now < k.publish_until)
            .map(|k| serde_json::from_str(&k.public_jwk).unwrap_or(Value::Null))
            .filter(|k| !k.is_null())
            .collect();
        Ok(json!({ "keys": keys }))
    }

    /// Signs a token for `identity`, valid for the configured lifetime.
    pub async fn mint(&self, identity: &WorkloadIdentity, audience: &str) -> Result<SignedToken, IdentityError> {
        self.mint_for(identity, audience, self.config.token_ttl).await
    }

    /// Signs a token valid for `ttl` (at most [`MAX_TOKEN_TTL`]).
    pub async fn mint_for(
        &self,
        identity: &WorkloadIdentity,
        audience: &str,
        ttl: Duration,
    ) -> Result<SignedToken, IdentityError> {
        if ttl <= Duration::ZERO || ttl > MAX_TOKEN_TTL {
            return Err(IdentityError::Config(format!(
                "a token lifetime of {ttl} is not between 1 s and {MAX_TOKEN_TTL}"
            )));
        }
        let now = self.clock.now();
        let key = self.current_key(now).await?;
        let expires_at = now + ttl;
        let claims = Claims {
            iss: self.config.url.clone(),
            sub: identity.subject(),
            aud: audience.to_string(),
            iat: now.unix_timestamp(),
            nbf: now.unix_timestamp(),
            exp: expires_at.unix_timestamp(),
            jti: hex::encode(self.random::<16>()),
            environment: identity.environment.clone(),
            account: identity.account.clone(),
            operation: identity.operation.clone(),
            service: identity.service.clone(),
        };
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(key.kid.clone());
        header.typ = Some("JWT".into());
        let token = jsonwebtoken::encode(&header, &claims, &key.encoding_key()?)
            .map_err(|e| IdentityError::Key { kid: key.kid.clone(), reason: e.to_string() })?;
        Ok(SignedToken { token, kid: key.kid, claims, expires_at })
    }

    /// Signs a statement of paved's own (an audit checkpoint, say) as a
    /// compact JWS with the current key. `claims` gets `iss` and `iat`.
    pub async fn sign_statement(&self, mut claims: Value) -> Result<String, IdentityError> {
        let now = self.clock.now();
        let key = self.current_key(now).await?;
        if let Some(map) = claims.as_object_mut() {
            map.insert("iss".into(), json!(self.config.url));
            map.insert("iat".into(), json!(now.unix_timestamp()));
        }
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(key.kid.clone());
        jsonwebtoken::encode(&header, &claims, &key.encoding_key()?)
            .map_err(|e| IdentityError::Key { kid: key.kid.clone(), reason: e.to_string() })
    }

    /// The claims of a statement this issuer signed. The key must be one
    /// this issuer's KEK opens, and the signature is checked against the
    /// public half derived from that private key, never the stored JWK: a
    /// key row someone added to the database proves nothing.
    pub async fn verify_statement(&self, jws: &str) -> Result<Value, IdentityError> {
        let bad = |kid: &str, reason: String| IdentityError::Key { kid: kid.to_string(), reason };
        let header = jsonwebtoken::decode_header(jws).map_err(|e| bad("?", format!("not a signed statement: {e}")))?;
        let kid = header.kid.unwrap_or_default();
        let keys = self.store.signing_keys().await?;
        let stored = keys.iter().find(|k| k.kid == kid).ok_or_else(|| {
            bad(&kid, "the store no longer holds this key (retired keys are forgotten once their tokens expire)".into())
        })?;
        let key = self.open(stored).await?;
        let jwk: jsonwebtoken::jwk::Jwk =
            serde_json::from_value(key.public_jwk.clone()).map_err(|e| bad(&kid, e.to_string()))?;
        let decoding = jsonwebtoken::DecodingKey::from_jwk(&jwk).map_err(|e| bad(&kid, e.to_string()))?;
        let mut validation = jsonwebtoken::Validation::new(Algorithm::ES256);
        validation.required_spec_claims.clear();
        validation.validate_exp = false;
        validation.validate_aud = false;
        // Not the issuer URL: it follows --public-url, the key is what proves who signed.
        jsonwebtoken::decode::<Value>(jws, &decoding, &validation)
            .map(|d| d.claims)
            .map_err(|e| bad(&kid, format!("the signature does not verify: {e}")))
    }

    /// The key that signs at `now`, creating it (and publishing its
    /// successor ahead of time) as needed; forgets keys past publication.
    async fn current_key(&self, now: OffsetDateTime) -> Result<SigningKey, IdentityError> {
        self.store.delete_expired_signing_keys(now).await?;
        let keys = self.store.signing_keys().await?;
        let active = keys.iter().filter(|k| k.activate_at <= now && now < k.rotate_at).max_by_key(|k| k.activate_at);
        let active = match active {
            Some(k) => k.clone(),
            None => self.create_key(now, now).await?,
        };
        let successor_due = now >= active.rotate_at - self.config.publish_ahead;
        if successor_due && !keys.iter().any(|k| k.activate_at >= active.rotate_at) {
            self.create_key(now, active.rotate_at).await?;
        }
        match self.open(&active).await {
            // Wrapped by a KEK this issuer no longer has (it was changed):
            // signing keys are disposable, so a new one takes over at once;
            // the old one's public half stays published for its tokens.
            Err(IdentityError::Secrets(paved_secrets::SecretsError::OtherKek { .. })) => {
                let fresh = self.create_key(now, now).await?;
                self.open(&fresh).await
            }
            other => other,
        }
    }

    async fn create_key(
        &self,
        now: OffsetDateTime,
        activate_at: OffsetDateTime,
    ) -> Result<StoredSigningKey, IdentityError> {
        let key = loop {
            if let Some(k) = SigningKey::from_scalar(self.random::<32>()) {
                break k;
            }
        };
        let wrapped = self.keys.wrap(&DataKey::from_bytes(key.kid.clone(), key.scalar), self.random::<12>()).await?;
        let rotate_at = activate_at + self.config.key_lifetime;
        let stored = StoredSigningKey {
            kid: key.kid.clone(),
            algorithm: "ES256".into(),
            kek_id: wrapped.kek_id,
            nonce: hex::encode(wrapped.nonce),
            wrapped: hex::encode(wrapped.ciphertext),
            public_jwk: key.public_jwk.to_string(),
            created_at: now,
            activate_at,
            rotate_at,
            publish_until: rotate_at + MAX_TOKEN_TTL + SKEW,
        };
        self.store.add_signing_key(&stored).await?;
        Ok(stored)
    }

    async fn open(&self, stored: &StoredSigningKey) -> Result<SigningKey, IdentityError> {
        let bad = |reason: String| IdentityError::Key { kid: stored.kid.clone(), reason };
        let nonce: [u8; 12] = hex::decode(&stored.nonce)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| bad("malformed nonce".into()))?;
        let ciphertext = hex::decode(&stored.wrapped).map_err(|e| bad(e.to_string()))?;
        let wrapped = WrappedKey { key_id: stored.kid.clone(), kek_id: stored.kek_id.clone(), nonce, ciphertext };
        let data = self.keys.unwrap(&wrapped).await?;
        let key = SigningKey::from_scalar(*data.bytes()).ok_or_else(|| bad("not a P-256 key".into()))?;
        if key.kid != stored.kid {
            return Err(bad("the private key does not match its published half".into()));
        }
        Ok(key)
    }
}
