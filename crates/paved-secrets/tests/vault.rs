//! The vault over a real SQLite store: versions, listings without values,
//! audited reveals, ciphertexts that do not open elsewhere, and key rotation
//! that can stop at any write and be resumed.

use paved_model::Clock;
use paved_secrets::{Actor, KeyFile, KeyProvider, KeyRing, RotateOptions, Scope, SecretValue, SecretsError, Vault};
use paved_store::{AuditFilter, SecretStore, SqlStore, Store};
use std::sync::Arc;
use time::OffsetDateTime;

struct FixedClock;
impl Clock for FixedClock {
    fn now(&self) -> OffsetDateTime {
        time::macros::datetime!(2026-11-25 12:00 UTC)
    }
}

struct Setup {
    dir: tempfile::TempDir,
    store: Arc<SqlStore>,
}

async fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqlStore::open(&format!("sqlite://{}/state.db", dir.path().display())).await.unwrap());
    Setup { dir, store }
}

impl Setup {
    fn kek(&self, name: &str) -> Arc<dyn KeyProvider> {
        Arc::new(KeyFile::open_or_create(&self.dir.path().join(name), &mut rand::rng()).unwrap())
    }

    fn vault(&self, keys: KeyRing) -> Vault {
        Vault::new(self.store.clone(), keys, Arc::new(FixedClock))
    }
}

fn grace() -> Actor {
    Actor { subject: "user:grace".into(), request: Default::default() }
}

const CANARY: &str = "canary-51d2e7-never-shown";

#[tokio::test]
async fn versions_are_listed_without_values_and_reveals_are_audited() {
    let s = setup().await;
    let vault = s.vault(KeyRing::new(s.kek("kek")));
    let staging = Scope::environment("staging");
    vault.set(&staging, "DB_PASSWORD", &SecretValue(b"first".to_vec()), &grace()).await.unwrap();
    let second = vault.set(&staging, "DB_PASSWORD", &SecretValue(CANARY.into()), &grace()).await.unwrap();
    assert_eq!(second.version, 2);
    vault.set(&Scope::service("staging", "api"), "API_KEY", &SecretValue(b"k".to_vec()), &grace()).await.unwrap();

    let listed = vault.list("staging", None).await.unwrap();
    let names: Vec<_> = listed.iter().map(|i| (i.service.clone(), i.name.as_str(), i.version)).collect();
    assert_eq!(names, [(None, "DB_PASSWORD", 2), (Some("api".into()), "API_KEY", 1)]);
    assert!(!serde_json::to_string(&listed).unwrap().contains(CANARY));

    let (info, value) = vault.reveal(&staging, "DB_PASSWORD", None, &grace()).await.unwrap();
    assert_eq!((info.version, value.0.as_slice()), (2, CANARY.as_bytes()));
    let (_, old) = vault.reveal(&staging, "DB_PASSWORD", Some(1), &grace()).await.unwrap();
    assert_eq!(old.0, b"first");
    let missing = vault.reveal(&staging, "NOPE", None, &grace()).await.unwrap_err();
    assert!(missing.to_string().contains("secret:staging/NOPE"), "{missing}");

    let events = s.store.audit_events(&AuditFilter::default()).await.unwrap();
    let actions: Vec<_> = events.iter().map(|e| (e.event.action.as_str(), e.event.outcome.as_str())).collect();
    assert_eq!(
        actions,
        [
            ("secret.set", "succeeded"),
            ("secret.set", "succeeded"),
            ("secret.set", "succeeded"),
            ("secret.reveal", "succeeded"),
            ("secret.reveal", "succeeded"),
            ("secret.reveal", "failed"),
        ]
    );
    assert!(!serde_json::to_string(&events).unwrap().contains(CANARY));

    // Deleted: gone from the listing, kept in the history, no longer revealed.
    vault.delete(&staging, "DB_PASSWORD", &grace()).await.unwrap();
    assert_eq!(vault.list("staging", Some("")).await.unwrap().len(), 0);
    assert_eq!(vault.history(&staging, "DB_PASSWORD").await.unwrap().len(), 3);
    assert!(matches!(vault.reveal(&staging, "DB_PASSWORD", None, &grace()).await, Err(SecretsError::NotFound { .. })));
    assert!(matches!(
        vault.set(&staging, "no spaces", &SecretValue(vec![]), &grace()).await,
        Err(SecretsError::BadName { .. })
    ));
}

#[tokio::test]
async fn a_ciphertext_moved_in_the_database_does_not_open() {
    let s = setup().await;
    let vault = s.vault(KeyRing::new(s.kek("kek")));
    vault.set(&Scope::environment("production"), "TOKEN", &SecretValue(CANARY.into()), &grace()).await.unwrap();
    vault.set(&Scope::environment("staging"), "TOKEN", &SecretValue(b"staging".to_vec()), &grace()).await.unwrap();
    vault.set(&Scope::environment("staging"), "OTHER", &SecretValue(b"other".to_vec()), &grace()).await.unwrap();
    vault.set(&Scope::environment("dev"), "TOKEN", &SecretValue(b"dev".to_vec()), &grace()).await.unwrap();
    let prod = &s.store.secret_versions("production", None, Some("TOKEN")).await.unwrap()[0];
    let prod_key = &s.store.data_keys(Some("production")).await.unwrap()[0];
    // Someone with database access copies production's row and key over staging's.
    let pool = sqlx::AnyPool::connect(&format!("sqlite://{}/state.db", s.dir.path().display())).await.unwrap();
    for name in ["TOKEN", "OTHER"] {
        sqlx::query("UPDATE secret_versions SET key_id = $1, nonce = $2, ciphertext = $3 WHERE environment = 'staging' AND name = $4")
            .bind(&prod.key_id)
            .bind(&prod.nonce)
            .bind(&prod.ciphertext)
            .bind(name)
            .execute(&pool)
            .await
            .unwrap();
    }
    sqlx::query("UPDATE secret_data_keys SET environment = 'staging' WHERE id = $1")
        .bind(&prod_key.id)
        .execute(&pool)
        .await
        .unwrap();
    for name in ["TOKEN", "OTHER"] {
        let e = vault.reveal(&Scope::environment("staging"), name, None, &grace()).await.unwrap_err();
        assert!(matches!(e, SecretsError::DoesNotOpen { .. }), "{e}");
        assert!(e.to_string().contains("staging") && e.to_string().contains(name), "{e}");
        assert!(!e.to_string().contains(CANARY));
    }
    // An edited ciphertext does not open either.
    sqlx::query("UPDATE secret_versions SET ciphertext = '00' || substr(ciphertext, 3) WHERE environment = 'dev'")
        .execute(&pool)
        .await
        .unwrap();
    let e = vault.reveal(&Scope::environment("dev"), "TOKEN", None, &grace()).await.unwrap_err();
    assert!(matches!(e, SecretsError::DoesNotOpen { .. }), "{e}");
}

/// Fills three environments, rotates to a new KEK stopping after `stop`
/// writes, then finishes with a fresh vault: everything still opens, and
/// only the new KEK is needed afterwards.
async fn rotation_interrupted_after(stop: usize) -> usize {
    let s = setup().await;
    let old = s.kek("old.kek");
    let vault = s.vault(KeyRing::new(old.clone()));
    let mut expected = Vec::new();
    for env in ["dev", "staging", "production"] {
        for i in 0..7 {
            let value = format!("{env}-{i}-{CANARY}");
            let scope = if i % 3 == 0 { Scope::service(env, "api") } else { Scope::environment(env) };
            vault.set(&scope, &format!("S{i}"), &SecretValue(value.clone().into()), &grace()).await.unwrap();
            expected.push((scope, format!("S{i}"), value));
        }
    }
    let new = s.kek("new.kek");
    let rotating = s.vault(KeyRing::rotating(old.clone(), new.clone()));
    let opts = RotateOptions { batch_size: 3, stop_after: Some(stop), rewrap_signing_keys: true };
    let first = rotating.rotate(opts, &|_, _| {}).await.unwrap();
    // Values still open in the middle of a rotation.
    for (scope, name, value) in &expected {
        let (_, got) = rotating.reveal(scope, name, None, &grace()).await.unwrap();
        assert_eq!(got.0, value.as_bytes());
    }
    let resumed = s.vault(KeyRing::rotating(old, new.clone()));
    let done = resumed
        .rotate(RotateOptions { batch_size: 3, stop_after: None, rewrap_signing_keys: true }, &|_, _| {})
        .await
        .unwrap();
    assert!(done.finished);
    assert_eq!(done.kek_ids, [new.id().to_string()]);
    // The old KEK is no longer needed.
    let only_new = s.vault(KeyRing::new(new));
    for (scope, name, value) in &expected {
        let (_, got) = only_new.reveal(scope, name, None, &grace()).await.unwrap();
        assert_eq!(got.0, value.as_bytes(), "{name} after stopping at {stop}");
    }
    // One data key per environment remains, every value sealed with it.
    let keys = s.store.data_keys(None).await.unwrap();
    assert_eq!(keys.len(), 3, "{keys:?}");
    assert!(keys.iter().all(|k| k.retired_at.is_none()));
    if first.finished { 0 } else { stop + 1 }
}

#[tokio::test]
async fn rotation_resumes_after_stopping_at_any_write() {
    let mut stop = 0;
    // Each run stops one write later, until a run finishes on its own.
    while rotation_interrupted_after(stop).await != 0 {
        stop += 1;
        assert!(stop < 100, "rotation never finished");
    }
    // 3 rewraps + 3 new keys + 3 environments × 3 batches of 3 (7 values, batch 3) = 15 writes.
    assert_eq!(stop, 15);
}
