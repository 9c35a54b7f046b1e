//! The issuer over a real SQLite store: tokens verify against the published
//! JWKS, keys are published before they sign and stay published until
//! their tokens expire.

use jsonwebtoken::{DecodingKey, Validation, jwk::JwkSet};
use paved_identity::{Claims, Issuer, IssuerConfig, WorkloadIdentity};
use paved_model::Clock;
use paved_secrets::{KeyFile, KeyRing};
use paved_store::SqlStore;
use std::sync::{Arc, Mutex};
use time::{Duration, OffsetDateTime};

struct TestClock(Mutex<OffsetDateTime>);
impl Clock for TestClock {
    fn now(&self) -> OffsetDateTime {
        *self.0.lock().unwrap()
    }
}
impl TestClock {
    fn advance(&self, by: Duration) {
        *self.0.lock().unwrap() += by;
    }
}

async fn issuer(dir: &tempfile::TempDir, clock: Arc<TestClock>) -> Issuer {
    let store = Arc::new(SqlStore::open(&format!("sqlite://{}/state.db", dir.path().display())).await.unwrap());
    let kek = Arc::new(KeyFile::open_or_create(&dir.path().join("kek"), &mut rand::rng()).unwrap());
    let mut config = IssuerConfig::new("https://paved.example.com/").unwrap();
    config.key_lifetime = Duration::hours(1);
    config.publish_ahead = Duration::minutes(10);
    Issuer::new(store, KeyRing::new(kek), clock, config)
}

fn prod() -> WorkloadIdentity {
    WorkloadIdentity {
        environment: "production".into(),
        account: "aws-prod".into(),
        operation: "op-1".into(),
        service: None,
    }
}

/// Verifies `token` the way a cloud does: the key named by `kid` from the JWKS.
fn verify(token: &str, jwks: &serde_json::Value, now: OffsetDateTime) -> Result<Claims, String> {
    let set: JwkSet = serde_json::from_value(jwks.clone()).unwrap();
    let kid = jsonwebtoken::decode_header(token).map_err(|e| e.to_string())?.kid.ok_or("no kid")?;
    let jwk = set.find(&kid).ok_or_else(|| format!("kid {kid} is not published"))?;
    let mut v = Validation::new(jsonwebtoken::Algorithm::ES256);
    v.set_audience(&["sts.amazonaws.com"]);
    v.set_issuer(&["https://paved.example.com"]);
    v.validate_exp = false; // checked against the test clock below
    let claims = jsonwebtoken::decode::<Claims>(token, &DecodingKey::from_jwk(jwk).unwrap(), &v)
        .map_err(|e| e.to_string())?
        .claims;
    if claims.exp <= now.unix_timestamp() {
        return Err("expired".into());
    }
    Ok(claims)
}

#[tokio::test]
async fn tokens_name_the_environment_and_verify_against_the_published_keys() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(TestClock(Mutex::new(time::macros::datetime!(2026-11-25 09:00 UTC))));
    let issuer = issuer(&dir, clock.clone()).await;
    let mut svc = prod();
    svc.service = Some("api".into());
    let token = issuer.mint(&svc, "sts.amazonaws.com").await.unwrap();
    let claims = verify(&token.token, &issuer.jwks().await.unwrap(), clock.now()).unwrap();
    assert_eq!(claims.sub, "paved:env:production:service:api");
    assert_eq!(claims.iss, "https://paved.example.com");
    assert_eq!(
        (claims.environment.as_str(), claims.account.as_str(), claims.operation.as_str()),
        ("production", "aws-prod", "op-1")
    );
    assert_eq!(claims.exp - claims.iat, 600, "ten minutes by default");
    assert!(!format!("{token:?}").contains(&token.token));
    let discovery = issuer.discovery();
    assert_eq!(discovery["issuer"], "https://paved.example.com");
    assert_eq!(discovery["jwks_uri"], "https://paved.example.com/.well-known/jwks.json");
    // A token lifetime beyond 15 minutes is refused.
    assert!(IssuerConfig::new("https://x").unwrap().with_token_ttl(Duration::minutes(16)).is_err());
    assert!(IssuerConfig::new("ftp://x").is_err());
}

#[tokio::test]
async fn keys_rotate_with_an_overlap_that_outlives_their_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let start = time::macros::datetime!(2026-11-25 09:00 UTC);
    let clock = Arc::new(TestClock(Mutex::new(start)));
    let issuer = issuer(&dir, clock.clone()).await;
    let first = issuer.mint(&prod(), "sts.amazonaws.com").await.unwrap();
    let kids = |jwks: serde_json::Value| -> Vec<String> {
        jwks["keys"].as_array().unwrap().iter().map(|k| k["kid"].as_str().unwrap().to_string()).collect()
    };
    assert_eq!(kids(issuer.jwks().await.unwrap()), std::slice::from_ref(&first.kid));

    // Ten minutes before it rotates, the successor is published (not yet signing).
    clock.advance(Duration::minutes(52));
    let still_first = issuer.mint(&prod(), "sts.amazonaws.com").await.unwrap();
    assert_eq!(still_first.kid, first.kid);
    let published = kids(issuer.jwks().await.unwrap());
    assert_eq!(published.len(), 2, "{published:?}");
    let successor = published.iter().find(|k| **k != first.kid).unwrap().clone();

    // After the rotation the successor signs; tokens of the first key still verify.
    clock.advance(Duration::minutes(9));
    let second = issuer.mint(&prod(), "sts.amazonaws.com").await.unwrap();
    assert_eq!(second.kid, successor);
    let jwks = issuer.jwks().await.unwrap();
    assert!(verify(&still_first.token, &jwks, clock.now()).is_ok());
    assert!(verify(&second.token, &jwks, clock.now()).is_ok());

    // Once every token of the first key has expired, it leaves the JWKS.
    clock.advance(Duration::minutes(25));
    let jwks = issuer.jwks().await.unwrap();
    assert!(!kids(jwks.clone()).contains(&first.kid), "{jwks}");
    assert!(verify(&second.token, &jwks, clock.now()).unwrap_err().contains("expired"));
    let third = issuer.mint(&prod(), "sts.amazonaws.com").await.unwrap();
    assert!(verify(&third.token, &jwks, clock.now()).is_ok());
}

#[tokio::test]
async fn signing_keys_follow_a_kek_rotation_and_are_replaced_when_their_kek_is_gone() {
    use paved_secrets::{RotateOptions, Vault};
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(TestClock(Mutex::new(time::macros::datetime!(2026-11-25 09:00 UTC))));
    let store = Arc::new(SqlStore::open(&format!("sqlite://{}/state.db", dir.path().display())).await.unwrap());
    let kek = |name: &str| -> Arc<KeyFile> {
        Arc::new(KeyFile::open_or_create(&dir.path().join(name), &mut rand::rng()).unwrap())
    };
    let (old, new, unrelated) = (kek("old"), kek("new"), kek("unrelated"));
    let config = IssuerConfig::new("https://paved.example.com").unwrap();
    let issuer = |ring: KeyRing| Issuer::new(store.clone(), ring, clock.clone(), config.clone());
    let first = issuer(KeyRing::new(old.clone())).mint(&prod(), "sts.amazonaws.com").await.unwrap();

    // Rotating the KEK re-wraps the signing key: the same key signs under the new KEK.
    let vault = Vault::new(store.clone(), KeyRing::rotating(old, new.clone()), clock.clone());
    assert!(vault.rotate(RotateOptions::default(), &|_, _| {}).await.unwrap().finished);
    let after = issuer(KeyRing::new(new)).mint(&prod(), "sts.amazonaws.com").await.unwrap();
    assert_eq!(after.kid, first.kid);

    // A KEK that never wrapped it: a new key takes over; the old one stays published for its tokens.
    let lost = issuer(KeyRing::new(unrelated));
    let replaced = lost.mint(&prod(), "sts.amazonaws.com").await.unwrap();
    assert_ne!(replaced.kid, first.kid);
    let jwks = lost.jwks().await.unwrap();
    assert!(verify(&first.token, &jwks, clock.now()).is_ok() && verify(&replaced.token, &jwks, clock.now()).is_ok());
}

/// A cloud that counts exchanges and hands out credentials valid 15 minutes.
struct CountingCloud {
    exchanges: std::sync::atomic::AtomicUsize,
    clock: Arc<TestClock>,
}

#[async_trait::async_trait]
impl paved_identity::Federation for CountingCloud {
    fn provider(&self) -> &str {
        "test"
    }
    fn audience(&self) -> &str {
        "sts.amazonaws.com"
    }
    fn target(&self) -> &str {
        "role/test"
    }
    async fn exchange(
        &self,
        token: &paved_identity::SignedToken,
    ) -> Result<paved_identity::CloudCredentials, paved_identity::IdentityError> {
        let n = self.exchanges.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
        Ok(paved_identity::CloudCredentials {
            provider: "test".into(),
            principal: format!("{} #{n}", token.claims.sub),
            expires_at: self.clock.now() + Duration::minutes(15),
            fields: [("secret".to_string(), format!("s3cr3t-{n}"))].into(),
        })
    }
}

#[tokio::test]
async fn credentials_stay_in_memory_until_shortly_before_they_expire() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(TestClock(Mutex::new(time::macros::datetime!(2026-11-25 09:00 UTC))));
    let broker = paved_identity::CredentialBroker::new(Arc::new(issuer(&dir, clock.clone()).await), clock.clone());
    let cloud = CountingCloud { exchanges: Default::default(), clock: clock.clone() };
    let first = broker.credentials(&cloud, &prod()).await.unwrap();
    assert_eq!(first.principal, "paved:env:production #1");
    assert!(!format!("{first:?}").contains("s3cr3t"), "Debug shows no secret");
    // Reused while more than five minutes are left.
    clock.advance(Duration::minutes(9));
    assert_eq!(broker.credentials(&cloud, &prod()).await.unwrap().principal, "paved:env:production #1");
    // Refreshed before they expire.
    clock.advance(Duration::minutes(2));
    assert_eq!(broker.credentials(&cloud, &prod()).await.unwrap().principal, "paved:env:production #2");
    // Another environment has credentials of its own.
    let mut staging = prod();
    staging.environment = "staging".into();
    assert_eq!(broker.credentials(&cloud, &staging).await.unwrap().principal, "paved:env:staging #3");
}
