//! How fast the vault stores, resolves and re-keys secrets on SQLite.
//!
//!     cargo bench -p paved-secrets --bench rotation [-- SECRETS]
//!
//! Prints, for one set of secrets (default 5,000 over 10 environments):
//! sequential `set`, `resolve` as an apply does, and a full key rotation to
//! a new KEK with batch sizes 1, 100 and 1,000 side by side (each on a
//! fresh copy of the same store, so they re-key the same data).

use paved_model::Clock;
use paved_secrets::{Actor, KeyFile, KeyRing, RotateOptions, Scope, SecretValue, Vault};
use paved_store::SqlStore;
use std::sync::Arc;
use std::time::Instant;

struct SystemClock;
impl Clock for SystemClock {
    fn now(&self) -> time::OffsetDateTime {
        time::OffsetDateTime::now_utc()
    }
}

async fn open(path: &std::path::Path) -> Arc<SqlStore> {
    Arc::new(SqlStore::open(&format!("sqlite://{}", path.display())).await.unwrap())
}

#[tokio::main]
async fn main() {
    let count: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(5000);
    let dir = tempfile::tempdir().unwrap();
    let old = Arc::new(KeyFile::open_or_create(&dir.path().join("old.kek"), &mut rand::rng()).unwrap());
    let new = Arc::new(KeyFile::open_or_create(&dir.path().join("new.kek"), &mut rand::rng()).unwrap());
    let base = dir.path().join("base.db");
    let vault = Vault::new(open(&base).await, KeyRing::new(old.clone()), Arc::new(SystemClock));
    let actor = Actor { subject: "user:bench".into(), request: Default::default() };

    let started = Instant::now();
    for i in 0..count {
        let scope = Scope::environment(format!("env-{}", i % 10));
        vault.set(&scope, &format!("S{i}"), &SecretValue(format!("value-{i}").into_bytes()), &actor).await.unwrap();
    }
    let set = started.elapsed();
    let started = Instant::now();
    let reads = 1000.min(count);
    for i in 0..reads {
        let chain = vec![format!("env-{}", i % 10)];
        vault.resolve(&chain, Some("api"), &format!("S{i}")).await.unwrap().unwrap();
    }
    let resolve = started.elapsed();
    println!("secrets: {count} over 10 environments (SQLite, one file)");
    println!(
        "  set      {:>8.0} /s  ({:.2} ms each, audited, sequential)",
        count as f64 / set.as_secs_f64(),
        set.as_secs_f64() * 1e3 / count as f64
    );
    println!(
        "  resolve  {:>8.0} /s  ({:.3} ms each, as an apply does)",
        reads as f64 / resolve.as_secs_f64(),
        resolve.as_secs_f64() * 1e3 / reads as f64
    );
    drop(vault);

    println!("RESULT\tsecrets\tset, sequential and audited\t{:.0} /s", count as f64 / set.as_secs_f64());
    println!("RESULT\tsecrets\tresolve\t{:.0} /s", reads as f64 / resolve.as_secs_f64());
    println!("rotation to a new KEK (re-wrap + new data keys + re-seal {count} values):");
    for batch in [1, 100, 1000] {
        let copy = dir.path().join(format!("rotate-{batch}.db"));
        // VACUUM INTO: a consistent copy of the store, WAL included.
        let src = open(&base).await;
        sqlx::query(sqlx::AssertSqlSafe(format!("VACUUM INTO '{}'", copy.display())))
            .execute(&sqlx::AnyPool::connect(&format!("sqlite://{}", base.display())).await.unwrap())
            .await
            .unwrap();
        drop(src);
        let vault = Vault::new(open(&copy).await, KeyRing::rotating(old.clone(), new.clone()), Arc::new(SystemClock));
        let started = Instant::now();
        let report = vault
            .rotate(RotateOptions { batch_size: batch, stop_after: None, rewrap_signing_keys: true }, &|_, _| {})
            .await
            .unwrap();
        let took = started.elapsed();
        assert!(report.finished && report.resealed == count);
        println!(
            "  batch {batch:>5}: {:>7.2} s  {:>8.0} values/s",
            took.as_secs_f64(),
            count as f64 / took.as_secs_f64()
        );
        if batch == 100 {
            println!(
                "RESULT\tsecrets\trotate {count} values, batch 100\t{:.0} values/s",
                count as f64 / took.as_secs_f64()
            );
        }
    }
}
