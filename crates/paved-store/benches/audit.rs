//! The audit log: append rate through the store, and `verify` over a large
//! chain. SQLite (the embedded default) and a throwaway PostgreSQL server,
//! side by side.
//!
//!     cargo bench -p paved-store --bench audit            (1,000,000 events)
//!     AUDIT_EVENTS=100000 cargo bench -p paved-store --bench audit
//!
//! The large chain is written in bulk (hashes computed as the store computes
//! them, rows inserted in one transaction), since appending a million events
//! one request at a time measures the append rate, which is reported apart.

use paved_store::audit::{GENESIS, sample_chain};
use paved_store::{AuditOutcome, NewAuditEvent, RequestContext, SqlStore, Store};
use sqlx::Connection;
use std::time::Instant;

const APPENDS: usize = 2_000;

fn event(i: usize) -> NewAuditEvent {
    NewAuditEvent {
        at: time::OffsetDateTime::from_unix_timestamp(1_764_000_000 + i as i64).unwrap(),
        actor: format!("user-{}", i % 50),
        action: "environment.apply".into(),
        target: format!("Environment/env-{}", i % 10_000),
        outcome: AuditOutcome::Succeeded,
        request: RequestContext { request_id: format!("{i:016x}"), origin: "10.0.0.7".into() },
        before: Some(format!("sha256:{i:064x}")),
        after: Some(format!("sha256:{:064x}", i + 1)),
        details: serde_json::json!({"nodes": {"created": 3, "unchanged": 12}}),
    }
}

async fn bulk_insert(url: &str, n: usize) {
    sqlx::any::install_default_drivers();
    let mut conn = sqlx::AnyConnection::connect(url).await.unwrap();
    let mut tx = conn.begin().await.unwrap();
    let mut prev = GENESIS.to_string();
    const BATCH: usize = 50_000;
    for start in (1..=n).step_by(BATCH) {
        let rows = sample_chain(start as i64, (start + BATCH).min(n + 1) as i64, prev.clone());
        prev = rows.last().map(|r| r.hash.clone()).unwrap_or(prev);
        paved_store::testing::insert_stored_events(&mut tx, &rows).await.unwrap();
    }
    tx.commit().await.unwrap();
}

async fn run(name: &str, url: &str, events: usize) {
    let store = SqlStore::open(url).await.unwrap();
    let t = Instant::now();
    for i in 0..APPENDS {
        store.append_audit(&event(i)).await.unwrap();
    }
    let append = t.elapsed();
    let v = store.verify_audit().await.unwrap();
    assert_eq!((v.events, v.first_break), (APPENDS as i64, None));
    store.close().await;

    // A fresh database for the large chain.
    let url = if let Some(path) = url.strip_prefix("sqlite://") {
        let big = format!("{path}.big");
        let _ = std::fs::remove_file(&big);
        format!("sqlite://{big}")
    } else {
        paved_store::testing::postgres_url().await.unwrap()
    };
    SqlStore::open(&url).await.unwrap().close().await;
    let t = Instant::now();
    bulk_insert(&format!("{url}{}", if url.starts_with("sqlite") { "?mode=rwc" } else { "" }), events).await;
    let load = t.elapsed();
    let store = SqlStore::open(&url).await.unwrap();
    // Verified three times: one run says little on a shared machine; the
    // figure is the slowest, each run is printed.
    let mut runs = Vec::new();
    for _ in 0..3 {
        let t = Instant::now();
        let v = store.verify_audit().await.unwrap();
        runs.push(t.elapsed());
        assert_eq!((v.events, v.first_break), (events as i64, None));
    }
    let verify = runs.iter().copied().max().unwrap_or_default();
    let each: Vec<String> = runs.iter().map(|r| format!("{:.2}", r.as_secs_f64())).collect();
    println!("{name:<10} verify {events} events, three runs: {} s", each.join(" / "));
    println!(
        "{name:<10} append {:>7.0} events/s ({APPENDS} one by one, {:.2} ms each) | verify {events} events: {:.2} s \
         ({:.0} events/s) | bulk load {:.1} s",
        APPENDS as f64 / append.as_secs_f64(),
        append.as_secs_f64() * 1000.0 / APPENDS as f64,
        verify.as_secs_f64(),
        events as f64 / verify.as_secs_f64(),
        load.as_secs_f64(),
    );
    // For bench/all's table.
    println!("RESULT\taudit\t{name}: append, one by one\t{:.0} events/s", APPENDS as f64 / append.as_secs_f64());
    println!(
        "RESULT\taudit\t{name}: verify {events} events (slowest of 3)\t{:.2} s ({} s)",
        verify.as_secs_f64(),
        each.join(" / ")
    );
    store.close().await;
}

/// The check without a database: the floor under `verify_audit`.
fn in_memory(events: usize) {
    let rows = sample_chain(1, events as i64 + 1, GENESIS.to_string());
    // Page by page, as `verify_audit` does.
    let t = Instant::now();
    let mut position = (0, GENESIS.to_string());
    for page in rows.chunks(5_000) {
        position = paved_store::audit::verify(page, position).unwrap();
    }
    println!("in memory  hash and link {events} events: {:.2} s", t.elapsed().as_secs_f64());
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let events: usize = std::env::var("AUDIT_EVENTS").ok().and_then(|v| v.parse().ok()).unwrap_or(1_000_000);
    in_memory(events);
    if std::env::var_os("AUDIT_IN_MEMORY_ONLY").is_some() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    run("sqlite", &format!("sqlite://{}", dir.path().join("audit.db").display()), events).await;
    let pg = paved_store::testing::postgres_url().await.unwrap_or_else(|e| panic!("{e}"));
    run("postgres", &pg, events).await;
}
