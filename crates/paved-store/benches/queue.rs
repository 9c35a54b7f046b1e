//! The operation queue under load: `QUEUE_OPS` operations (default 100)
//! run at once, each owner recording its progress every 100 ms (the
//! journal's write, which is also the heartbeat); meanwhile as many
//! operations whose replica died are claimed by three replicas polling
//! side by side, as `paved server`'s adopt loop does. Reported: the latency
//! of each claim and of each progress write, and how long until every dead
//! replica's operation had a new owner. SQLite and a throwaway PostgreSQL
//! server, side by side.
//!
//!     cargo bench -p paved-store --bench queue
//!     QUEUE_OPS=10 cargo bench -p paved-store --bench queue

use paved_store::{OperationStore, SqlStore, Store, StoredOperation};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use time::OffsetDateTime;

const CLAIMERS: usize = 3;
const BEAT: Duration = Duration::from_millis(100);

fn operation(id: String, owner: &str, heartbeat: OffsetDateTime) -> StoredOperation {
    StoredOperation {
        id,
        environment: "dev".into(),
        status: "running".into(),
        owner: owner.into(),
        heartbeat_at: heartbeat,
        attempts: 1,
        started_at: heartbeat,
        finished_at: None,
        body: serde_json::json!({"operation": "apply", "total": 40, "done": 0}),
        work: serde_json::json!({"run": "graph", "graph": {"nodes": {}}}),
    }
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

async fn run(name: &str, url: &str, ops: usize) {
    let store = Arc::new(SqlStore::open(url).await.unwrap());
    let now = OffsetDateTime::now_utc();
    let dead = now - time::Duration::minutes(5);
    for i in 0..ops {
        store.put_operation(&operation(format!("dead-{i:04}"), "gone#0", dead)).await.unwrap();
        store.put_operation(&operation(format!("live-{i:04}"), &format!("live#{i}"), now)).await.unwrap();
    }
    let stop = Arc::new(AtomicBool::new(false));
    // The live operations' owners: a progress write (two events) every beat each.
    let mut owners = Vec::new();
    for i in 0..ops {
        let (store, stop) = (store.clone(), stop.clone());
        owners.push(tokio::spawn(async move {
            let (id, owner) = (format!("live-{i:04}"), format!("live#{i}"));
            let mut latencies = Vec::new();
            let mut seq = 0_i64;
            while !stop.load(Ordering::SeqCst) {
                let events = [(seq, r#"{"event":"started"}"#.to_string()), (seq + 1, r#"{"event":"finished"}"#.into())];
                seq += 2;
                let body = serde_json::json!({"done": seq});
                let t = Instant::now();
                let owned =
                    store.save_operation(&id, &owner, "running", &body, &events, OffsetDateTime::now_utc()).await;
                latencies.push(t.elapsed());
                assert!(owned.unwrap(), "a live owner lost its operation");
                tokio::time::sleep(BEAT).await;
            }
            latencies
        }));
    }
    tokio::time::sleep(BEAT * 3).await; // the writers under way
    // Three replicas claim what the dead one left, as fast as the store lets them.
    let started = Instant::now();
    let mut claimers = Vec::new();
    for r in 0..CLAIMERS {
        let store = store.clone();
        claimers.push(tokio::spawn(async move {
            let owner = format!("replica-{r}");
            let mut latencies = Vec::new();
            loop {
                let t = Instant::now();
                let now = OffsetDateTime::now_utc();
                let claimed = store.claim_stale_operation(&owner, now, now - time::Duration::seconds(15)).await;
                let took = t.elapsed();
                match claimed.unwrap() {
                    Some(op) => {
                        assert!(op.id.starts_with("dead-"), "a live operation was claimed: {}", op.id);
                        latencies.push(took);
                    }
                    None => return latencies,
                }
            }
        }));
    }
    let mut claims = Vec::new();
    for c in claimers {
        claims.extend(c.await.unwrap());
    }
    let all_claimed = started.elapsed();
    stop.store(true, Ordering::SeqCst);
    let mut writes = Vec::new();
    for o in owners {
        writes.extend(o.await.unwrap());
    }
    assert_eq!(claims.len(), ops, "every dead replica's operation claimed exactly once");
    claims.sort();
    writes.sort();
    println!(
        "{name:<10} {ops} operations claimed by {CLAIMERS} replicas while {ops} others record progress: all in {:.3} s; \
         claim p50 {:.2} ms, p99 {:.2} ms | progress write p50 {:.2} ms, p99 {:.2} ms ({} writes)",
        all_claimed.as_secs_f64(),
        percentile(&claims, 0.5),
        percentile(&claims, 0.99),
        percentile(&writes, 0.5),
        percentile(&writes, 0.99),
        writes.len(),
    );
    println!(
        "RESULT\tqueue\t{name}: claim latency, {ops} dead operations, {ops} live ones writing\tp50 {:.2} ms, p99 {:.2} ms (all claimed in {:.2} s)",
        percentile(&claims, 0.5),
        percentile(&claims, 0.99),
        all_claimed.as_secs_f64()
    );
    println!(
        "RESULT\tqueue\t{name}: progress write (heartbeat) latency meanwhile\tp50 {:.2} ms, p99 {:.2} ms",
        percentile(&writes, 0.5),
        percentile(&writes, 0.99)
    );
    store.close().await;
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let ops: usize = std::env::var("QUEUE_OPS").ok().and_then(|v| v.parse().ok()).unwrap_or(100);
    let dir = tempfile::tempdir().unwrap();
    run("sqlite", &format!("sqlite://{}", dir.path().join("queue.db").display()), ops).await;
    let pg = paved_store::testing::postgres_url().await.unwrap_or_else(|e| panic!("{e}"));
    run("postgres", &pg, ops).await;
}
