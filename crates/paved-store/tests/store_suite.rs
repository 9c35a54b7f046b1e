//! The same behaviour, asserted against SQLite and a real PostgreSQL server.

use paved_store::ReleaseStore;
use paved_store::{
    ApiToken, AppliedNode, AuditFilter, AuditOutcome, Change, Lock, NewAuditEvent, Operation, RequestContext, SqlStore,
    Store, StoreError,
};
use serde_json::json;
use std::sync::Arc;
use time::OffsetDateTime;

struct Backend {
    url: String,
    _dir: Option<tempfile::TempDir>,
}

async fn sqlite() -> Backend {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("state.db").display());
    Backend { url, _dir: Some(dir) }
}

async fn postgres() -> Backend {
    let url = paved_store::testing::postgres_url().await.unwrap_or_else(|e| panic!("{e}"));
    Backend { url, _dir: None }
}

fn at(secs: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(1_700_000_000 + secs).unwrap()
}

fn put(kind: &str, name: &str, expected: Option<i64>, spec: serde_json::Value) -> Change {
    let hash = format!("h-{spec}");
    Change {
        kind: kind.into(),
        name: name.into(),
        expected_generation: expected,
        operation: Operation::Put { spec, content_hash: hash },
        actor: "alice".into(),
        source: Some("team.yaml:1".into()),
        at: at(0),
        request: RequestContext { request_id: "req-1".into(), origin: "test".into() },
    }
}

async fn records_and_lists(b: Backend) {
    let store = SqlStore::open(&b.url).await.unwrap();
    store
        .commit(&[
            put("Team", "payments", None, json!({"members": ["user:a"]})),
            put("Team", "search", None, json!({})),
        ])
        .await
        .unwrap();
    let listed = store.list(Some("Team")).await.unwrap();
    assert_eq!(listed.iter().map(|r| r.name.as_str()).collect::<Vec<_>>(), ["payments", "search"]);
    let r = store.get("Team", "payments").await.unwrap().unwrap();
    assert_eq!((r.generation, r.spec.clone(), r.actor.as_str()), (1, Some(json!({"members": ["user:a"]})), "alice"));
    assert_eq!(r.created_at, at(0));
    assert!(store.list(Some("Blueprint")).await.unwrap().is_empty());
    assert!(store.get("Team", "nope").await.unwrap().is_none());
}

async fn updates_keep_history(b: Backend) {
    let store = SqlStore::open(&b.url).await.unwrap();
    store.commit(&[put("Team", "t", None, json!({"v": 1}))]).await.unwrap();
    store.commit(&[put("Team", "t", Some(1), json!({"v": 2}))]).await.unwrap();
    let history = store.history("Team", "t").await.unwrap();
    assert_eq!(
        history.iter().map(|r| (r.generation, r.spec.clone().unwrap())).collect::<Vec<_>>(),
        [(1, json!({"v": 1})), (2, json!({"v": 2}))]
    );
    assert_eq!(store.get("Team", "t").await.unwrap().unwrap().generation, 2);
}

async fn stale_batches_change_nothing(b: Backend) {
    let store = SqlStore::open(&b.url).await.unwrap();
    store.commit(&[put("Team", "t", None, json!({"v": 1}))]).await.unwrap();
    // The first change is fine, the second is stale: neither may land.
    let err = store
        .commit(&[put("Team", "new", None, json!({})), put("Team", "t", Some(7), json!({"v": 9}))])
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict { ref name, .. } if name == "t"), "{err}");
    assert!(store.get("Team", "new").await.unwrap().is_none());
    assert_eq!(store.history("Team", "t").await.unwrap().len(), 1);
    // Creating what exists is a conflict too.
    let err = store.commit(&[put("Team", "t", None, json!({}))]).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict { .. }), "{err}");
}

async fn deletes_are_tombstones(b: Backend) {
    let store = SqlStore::open(&b.url).await.unwrap();
    store.commit(&[put("Team", "t", None, json!({"v": 1}))]).await.unwrap();
    let mut del = put("Team", "t", Some(1), json!(null));
    del.operation = Operation::Delete;
    store.commit(&[del]).await.unwrap();
    assert!(store.list(None).await.unwrap().is_empty());
    let tomb = store.get("Team", "t").await.unwrap().unwrap();
    assert!(tomb.deleted && tomb.spec.is_none() && tomb.generation == 2);
    store.commit(&[put("Team", "t", Some(2), json!({"v": 3}))]).await.unwrap();
    let history = store.history("Team", "t").await.unwrap();
    assert_eq!(history.iter().map(|r| r.deleted).collect::<Vec<_>>(), [false, true, false]);
}

async fn concurrent_writers_lose_nothing(b: Backend) {
    let store = Arc::new(SqlStore::open(&b.url).await.unwrap());
    let mut tasks = Vec::new();
    for i in 0..8 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            // A writer re-reads and retries on conflict, as the catalog does.
            for _ in 0..200 {
                let expected = store.get("Team", "hot").await.unwrap().map(|r| r.generation);
                match store.commit(&[put("Team", "hot", expected, json!({"writer": i}))]).await {
                    Ok(()) => return,
                    Err(StoreError::Conflict { .. }) => tokio::time::sleep(std::time::Duration::from_millis(5)).await,
                    Err(e) => panic!("{e}"),
                }
            }
            panic!("writer {i} never got through");
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let history = store.history("Team", "hot").await.unwrap();
    assert_eq!(history.iter().map(|r| r.generation).collect::<Vec<_>>(), (1..=8).collect::<Vec<_>>());
    let mut writers: Vec<i64> = history.iter().map(|r| r.spec.as_ref().unwrap()["writer"].as_i64().unwrap()).collect();
    writers.sort();
    assert_eq!(writers, (0..8).collect::<Vec<_>>());
}

async fn history_is_append_only(b: Backend) {
    let store = SqlStore::open(&b.url).await.unwrap();
    store.commit(&[put("Team", "t", None, json!({"v": 1}))]).await.unwrap();
    store.close().await;
    sqlx::any::install_default_drivers();
    let mut conn = <sqlx::AnyConnection as sqlx::Connection>::connect(&b.url).await.unwrap();
    let upd = sqlx::query("UPDATE generations SET actor = 'mallory'").execute(&mut conn).await;
    let del = sqlx::query("DELETE FROM generations").execute(&mut conn).await;
    assert!(upd.unwrap_err().to_string().contains("append-only"));
    assert!(del.unwrap_err().to_string().contains("append-only"));
}

async fn reopening_keeps_state(b: Backend) {
    let store = SqlStore::open(&b.url).await.unwrap();
    store.commit(&[put("Team", "t", None, json!({"v": 1}))]).await.unwrap();
    store.close().await;
    let again = SqlStore::open(&b.url).await.unwrap();
    assert_eq!(again.get("Team", "t").await.unwrap().unwrap().spec, Some(json!({"v": 1})));
}

fn event(actor: &str, target: &str) -> NewAuditEvent {
    NewAuditEvent {
        at: at(5),
        actor: actor.into(),
        action: "environment.apply".into(),
        target: target.into(),
        outcome: AuditOutcome::Succeeded,
        request: RequestContext { request_id: "req-2".into(), origin: "127.0.0.1".into() },
        before: None,
        after: Some("sha256:abc".into()),
        details: json!({"nodes": {"created": 3}}),
    }
}

/// Tampering is done as an attacker with the database's owner rights would:
/// the append-only triggers switched off first.
async fn tamper(b: &Backend, statements: &[&str]) {
    let mut conn = <sqlx::AnyConnection as sqlx::Connection>::connect(&b.url).await.unwrap();
    let (off, on): (&[&str], &[&str]) = if b.url.starts_with("sqlite") {
        (
            &["DROP TRIGGER audit_events_no_update", "DROP TRIGGER audit_events_no_delete"],
            &[
                "CREATE TRIGGER audit_events_no_update BEFORE UPDATE ON audit_events BEGIN SELECT RAISE(ABORT, 'audit events are append-only: UPDATE refused'); END",
                "CREATE TRIGGER audit_events_no_delete BEFORE DELETE ON audit_events BEGIN SELECT RAISE(ABORT, 'audit events are append-only: DELETE refused'); END",
            ],
        )
    } else {
        (&["ALTER TABLE audit_events DISABLE TRIGGER USER"], &["ALTER TABLE audit_events ENABLE TRIGGER USER"])
    };
    for sql in off.iter().chain(statements).chain(on) {
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_string())).execute(&mut conn).await.unwrap();
    }
}

/// Events 2 and 3 trade places (applied twice, they are back).
const SWAP_2_AND_3: &[&str] = &[
    "UPDATE audit_events SET seq = 10 WHERE seq = 2",
    "UPDATE audit_events SET seq = 2 WHERE seq = 3",
    "UPDATE audit_events SET seq = 3 WHERE seq = 10",
];

async fn the_audit_log_is_append_only_and_tamper_evident(b: Backend) {
    let store = SqlStore::open(&b.url).await.unwrap();
    // Spec changes are recorded with their commit, with before/after digests.
    store.commit(&[put("Team", "t", None, json!({"v": 1}))]).await.unwrap();
    store.commit(&[put("Team", "t", Some(1), json!({"v": 2}))]).await.unwrap();
    let third = store.append_audit(&event("bob", "Environment/dev")).await.unwrap();
    store.append_audit(&event("carol", "Environment/staging")).await.unwrap();
    let all = store.audit_events(&AuditFilter::default()).await.unwrap();
    assert_eq!(all.iter().map(|e| e.seq).collect::<Vec<_>>(), [1, 2, 3, 4]);
    assert_eq!((all[1].event.action.as_str(), all[1].event.target.as_str()), ("spec.put", "Team/t"));
    assert_eq!(all[1].event.before.as_deref(), Some(r#"h-{"v":1}"#));
    assert_eq!(all[1].event.after.as_deref(), Some(r#"h-{"v":2}"#));
    assert_eq!(all[1].event.request.request_id, "req-1");
    assert_eq!(all[1].prev_hash, all[0].hash);
    assert_eq!(all[2], third);
    // Filters narrow; paging continues after a sequence number.
    let bob = AuditFilter { actor: Some("bob".into()), ..Default::default() };
    assert_eq!(store.audit_events(&bob).await.unwrap().iter().map(|e| e.seq).collect::<Vec<_>>(), [3]);
    let page = AuditFilter { after_seq: 2, limit: 1, ..Default::default() };
    assert_eq!(store.audit_events(&page).await.unwrap()[0].seq, 3);
    let newest = AuditFilter { newest_first: true, limit: 2, ..Default::default() };
    let seqs: Vec<i64> = store.audit_events(&newest).await.unwrap().iter().map(|e| e.seq).collect();
    assert!(seqs.len() == 2 && seqs[0] > seqs[1], "{seqs:?}");
    let later = AuditFilter { since: Some(at(5)), ..Default::default() };
    assert_eq!(store.audit_events(&later).await.unwrap().len(), 2);
    let v = store.verify_audit().await.unwrap();
    assert_eq!((v.events, v.first_break.clone(), v.head.clone()), (4, None, all[3].hash.clone()));
    store.close().await;

    // The database refuses changes.
    let mut conn = <sqlx::AnyConnection as sqlx::Connection>::connect(&b.url).await.unwrap();
    let upd = sqlx::query("UPDATE audit_events SET actor = 'mallory'").execute(&mut conn).await;
    let del = sqlx::query("DELETE FROM audit_events WHERE seq = 4").execute(&mut conn).await;
    assert!(upd.unwrap_err().to_string().contains("append-only"));
    assert!(del.unwrap_err().to_string().contains("append-only"));
    drop(conn);

    // Behind the triggers' back: an edit, a removal and a reordering are each found, named by event.
    let first_break = |b: &Backend| {
        let url = b.url.clone();
        async move {
            let store = SqlStore::open(&url).await.unwrap();
            let v = store.verify_audit().await.unwrap();
            store.close().await;
            v.first_break.map(|x| x.seq)
        }
    };
    tamper(&b, &["UPDATE audit_events SET actor = 'mallory' WHERE seq = 3"]).await;
    assert_eq!(first_break(&b).await, Some(3));
    tamper(&b, &["UPDATE audit_events SET actor = 'bob' WHERE seq = 3"]).await;
    assert_eq!(first_break(&b).await, None, "restoring the row restores the chain");
    tamper(&b, SWAP_2_AND_3).await;
    assert_eq!(first_break(&b).await, Some(2));
    tamper(&b, SWAP_2_AND_3).await;
    tamper(&b, &["DELETE FROM audit_events WHERE seq = 2"]).await;
    let store = SqlStore::open(&b.url).await.unwrap();
    let v = store.verify_audit().await.unwrap();
    let broken = v.first_break.unwrap();
    assert_eq!((v.events, broken.seq), (1, 3));
    assert!(broken.reason.contains("missing"), "{}", broken.reason);
}

/// Verification reads the chain in pages of thousands: a long chain (with
/// an event whose text needs escaping in any packing) verifies whole, and a
/// break past the first pages is named by its event.
async fn a_long_chain_verifies_across_pages_and_a_late_break_is_named(b: Backend) {
    use paved_store::audit::{GENESIS, sample_chain};
    SqlStore::open(&b.url).await.unwrap().close().await;
    let mut events = sample_chain(1, 6_000, GENESIS.to_string());
    let mut odd = sample_chain(6_000, 6_001, events[5_998].hash.clone()).remove(0);
    odd.actor = "zoë \"quoted\" \\ \u{1f}λ,]".into();
    odd.hash = odd.expected_hash(&odd.prev_hash);
    events.extend(sample_chain(6_001, 12_001, odd.hash.clone()).into_iter().chain([odd]));
    let mut conn = <sqlx::AnyConnection as sqlx::Connection>::connect(&b.url).await.unwrap();
    let mut tx = sqlx::Connection::begin(&mut conn).await.unwrap();
    paved_store::testing::insert_stored_events(&mut tx, &events).await.unwrap();
    tx.commit().await.unwrap();
    drop(conn);
    let verify = || async {
        let store = SqlStore::open(&b.url).await.unwrap();
        let v = store.verify_audit().await;
        store.close().await;
        v
    };
    let v = verify().await.unwrap();
    let last = events.iter().find(|e| e.seq == 12_000).unwrap();
    assert_eq!((v.events, v.first_break, v.head), (12_000, None, last.hash.clone()));

    tamper(&b, &["UPDATE audit_events SET target = 'Environment/elsewhere' WHERE seq = 11001"]).await;
    let v = verify().await.unwrap();
    let broken = v.first_break.unwrap();
    assert_eq!((v.events, broken.seq), (11_000, 11_001), "{}", broken.reason);
    if b.url.starts_with("sqlite") {
        // SQLite stores what it is given: a blob where text belongs is named, not a panic.
        tamper(&b, &["UPDATE audit_events SET details = X'00FF' WHERE seq = 7000"]).await;
        let e = verify().await.unwrap_err().to_string();
        assert!(e.contains("event 7000"), "{e}");
    }
}

async fn concurrent_appends_keep_one_chain(b: Backend) {
    let store = Arc::new(SqlStore::open(&b.url).await.unwrap());
    let mut tasks = Vec::new();
    for i in 0..8 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            for j in 0..5 {
                store.append_audit(&event(&format!("writer-{i}"), &format!("Environment/e{j}"))).await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let v = store.verify_audit().await.unwrap();
    assert_eq!((v.events, v.first_break), (40, None));
}

async fn tokens_are_stored_hashed_revoked_once_and_audited(b: Backend) {
    let store = SqlStore::open(&b.url).await.unwrap();
    let token = ApiToken {
        id: "tok_0123456789ab".into(),
        name: "ci".into(),
        subject: "serviceaccount:ci".into(),
        hash: "0123456789ab".repeat(5) + "cdef",
        created_at: at(1),
        created_by: "user:ada@example.com".into(),
        expires_at: Some(at(100)),
        revoked_at: None,
    };
    let created =
        NewAuditEvent { action: "token.create".into(), target: "Token/tok_0123456789ab".into(), ..event("ada", "") };
    store.create_token(&token, &created).await.unwrap();
    // The same secret twice is refused by the database, and nothing is audited for it.
    assert!(store.create_token(&ApiToken { id: "tok_other".into(), ..token.clone() }, &created).await.is_err());
    assert_eq!(store.token_by_hash(&token.hash).await.unwrap().as_ref(), Some(&token));
    assert_eq!(store.token_by_hash("nope").await.unwrap(), None);
    assert_eq!(store.list_tokens().await.unwrap(), vec![token.clone()]);
    assert_eq!(token.unusable_at(at(50)), None);
    assert_eq!(token.unusable_at(at(100)), Some("expired"));

    let revoked = NewAuditEvent { action: "token.revoke".into(), at: at(60), ..created.clone() };
    assert!(store.revoke_token(&token.id, &revoked).await.unwrap());
    assert!(!store.revoke_token(&token.id, &revoked).await.unwrap(), "revoked twice");
    assert!(!store.revoke_token("tok_unknown", &revoked).await.unwrap());
    let now = store.token_by_hash(&token.hash).await.unwrap().unwrap();
    assert_eq!((now.revoked_at, now.unusable_at(at(61))), (Some(at(60)), Some("revoked")));
    let actions: Vec<String> =
        store.audit_events(&AuditFilter::default()).await.unwrap().into_iter().map(|e| e.event.action).collect();
    assert_eq!(actions, ["token.create", "token.revoke"]);
    assert!(store.verify_audit().await.unwrap().first_break.is_none());
    // The secret's hash is not in a listing's JSON.
    assert!(!serde_json::to_string(&now).unwrap().contains(&token.hash));
}

async fn listings_page_by_name_within_a_kind(b: Backend) {
    let store = SqlStore::open(&b.url).await.unwrap();
    let changes: Vec<Change> =
        ["e", "a", "d", "b", "c"].iter().map(|n| put("Environment", n, None, json!({"n": n}))).collect();
    store.commit(&changes).await.unwrap();
    store.commit(&[put("Team", "a", None, json!({}))]).await.unwrap();
    store
        .commit(&[Change { operation: Operation::Delete, ..put("Environment", "c", Some(1), json!({})) }])
        .await
        .unwrap();
    let names = |rs: Vec<paved_store::Record>| rs.into_iter().map(|r| r.name).collect::<Vec<_>>();
    assert_eq!(names(store.list_page("Environment", "", 2).await.unwrap()), ["a", "b"]);
    // The deleted `c` is skipped; other kinds never appear.
    assert_eq!(names(store.list_page("Environment", "b", 2).await.unwrap()), ["d", "e"]);
    assert!(store.list_page("Environment", "e", 2).await.unwrap().is_empty());
    assert_eq!(names(store.list(Some("Environment")).await.unwrap()), ["a", "b", "d", "e"]);
}

async fn a_lease_has_one_holder_and_a_new_token_after_each_lapse(b: Backend) {
    use paved_store::Lease;
    let store = SqlStore::open(&b.url).await.unwrap();
    let ttl = time::Duration::seconds(10);
    let Lease::Held { token: first, .. } = store.acquire_lease("background", "a", at(0), ttl).await.unwrap() else {
        panic!("a free lease is taken")
    };
    // Renewed in time: the same token. Another replica sees who has it.
    assert_eq!(
        store.acquire_lease("background", "a", at(5), ttl).await.unwrap(),
        Lease::Held { token: first, expires: at(15) }
    );
    assert_eq!(
        store.acquire_lease("background", "b", at(14), ttl).await.unwrap(),
        Lease::HeldBy { holder: "a".into(), token: first, expires: at(15) }
    );
    // Lapsed: taken over with a higher token; the old holder cannot renew.
    let Lease::Held { token: second, .. } = store.acquire_lease("background", "b", at(16), ttl).await.unwrap() else {
        panic!("a lapsed lease is taken over")
    };
    assert!(second > first);
    assert!(
        matches!(store.acquire_lease("background", "a", at(17), ttl).await.unwrap(), Lease::HeldBy { holder, .. } if holder == "b")
    );
    // Released on shutdown: the next taker need not wait, and its token is higher still.
    store.release_lease("background", "b").await.unwrap();
    let Lease::Held { token: third, .. } = store.acquire_lease("background", "a", at(18), ttl).await.unwrap() else {
        panic!("a released lease is free")
    };
    assert!(third > second);
    // Another lease is another name.
    assert!(matches!(store.acquire_lease("other", "b", at(18), ttl).await.unwrap(), Lease::Held { .. }));
}

async fn a_fenced_store_writes_nothing_once_its_lease_was_taken_over(b: Backend) {
    use paved_store::{Fence, Lease};
    let store = SqlStore::open(&b.url).await.unwrap();
    let ttl = time::Duration::seconds(10);
    let Lease::Held { token, .. } = store.acquire_lease("background", "a", at(0), ttl).await.unwrap() else {
        panic!("a free lease is taken")
    };
    let fenced = store.fenced(Fence { lease: "background".into(), holder: "a".into(), token });
    // While the lease holds, writes go through.
    fenced.commit(&[put("Team", "before", None, json!({}))]).await.unwrap();
    fenced.put_applied_node("dev", &node("aws.vpc/dev", 1)).await.unwrap();
    fenced.append_audit(&event("reconciler", "Environment/dev")).await.unwrap();
    // Another replica takes the lapsed lease: every kind of write from the old holder is refused.
    assert!(matches!(store.acquire_lease("background", "b", at(11), ttl).await.unwrap(), Lease::Held { .. }));
    let head = store.heads().await.unwrap();
    let fenced_out = |r: Result<(), StoreError>| match r {
        Err(StoreError::Fenced { lease, holder, token: t }) => {
            assert_eq!((lease.as_str(), holder.as_str(), t), ("background", "a", token))
        }
        other => panic!("a write after the takeover: {other:?}"),
    };
    fenced_out(fenced.commit(&[put("Team", "after", None, json!({}))]).await);
    fenced_out(fenced.put_applied_node("dev", &node("aws.subnet/dev", 1)).await);
    fenced_out(fenced.delete_applied_node("dev", "aws.vpc/dev").await);
    fenced_out(fenced.append_audit(&event("reconciler", "Environment/dev")).await.map(|_| ()));
    fenced_out(fenced.acquire_lock("dev", "reconciler", at(12), ttl).await.map(|_| ()));
    let err = fenced.commit(&[put("Team", "after", None, json!({}))]).await.unwrap_err().to_string();
    assert!(err.contains("another replica took over") && err.contains("nothing was written"), "{err}");
    // Nothing of it landed; reads still work.
    assert!(store.get("Team", "after").await.unwrap().is_none());
    assert_eq!(store.heads().await.unwrap(), head);
    assert_eq!(fenced.applied_nodes("dev").await.unwrap().len(), 1);
    assert!(fenced.get("Team", "before").await.unwrap().is_some());
}

async fn a_local_environment_is_pinned_to_the_first_runner_until_taken_over_or_destroyed(b: Backend) {
    let store = SqlStore::open(&b.url).await.unwrap();
    assert_eq!(store.runner_of("dev").await.unwrap(), None);
    assert_eq!(store.claim_runner("dev", "host-a", at(0)).await.unwrap(), "host-a");
    // A second machine's claim names the first; nothing moves.
    assert_eq!(store.claim_runner("dev", "host-b", at(1)).await.unwrap(), "host-a");
    assert_eq!(store.runner_of("dev").await.unwrap(), Some(("host-a".to_string(), at(0))));
    store.set_runner("dev", Some("host-b"), at(2)).await.unwrap();
    assert_eq!(store.runner_of("dev").await.unwrap(), Some(("host-b".to_string(), at(2))));
    store.set_runner("dev", None, at(3)).await.unwrap();
    assert_eq!(store.runner_of("dev").await.unwrap(), None);
    assert_eq!(store.claim_runner("dev", "host-a", at(4)).await.unwrap(), "host-a");
}

/// A newer paved's migration as it would be recorded (sqlx's table).
fn newer_migration(b: &Backend, version: i64) -> String {
    let checksum = if b.url.starts_with("sqlite") { "X'00'" } else { "'\\x00'::bytea" };
    format!(
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
         VALUES ({version}, 'from a newer paved', TRUE, {checksum}, 1)"
    )
}

async fn a_newer_schema_serves_until_it_says_this_release_cannot_use_it(b: Backend) {
    let store = SqlStore::open(&b.url).await.unwrap();
    store.commit(&[put("Team", "payments", None, json!({}))]).await.unwrap();
    drop(store);
    // The next release added a table (additive): this one keeps serving beside it.
    tamper(&b, &[&newer_migration(&b, 900), "CREATE TABLE from_a_newer_paved (id INTEGER)"]).await;
    let store = SqlStore::open(&b.url).await.unwrap();
    assert!(store.get("Team", "payments").await.unwrap().is_some());
    store.commit(&[put("Team", "search", None, json!({}))]).await.unwrap();
    drop(store);
    // A later one changed what this release reads: refused, saying what to do, nothing written.
    tamper(&b, &[&newer_migration(&b, 901), "UPDATE store_compat SET min_reader = 901 WHERE id = 1"]).await;
    let err = SqlStore::open(&b.url).await.expect_err("a schema this release cannot use");
    let text = err.to_string();
    assert!(matches!(err, StoreError::TooNew { applied: 901, needs: 901, known, .. } if known < 900), "{text}");
    assert!(text.contains("needs a paved that knows migration 901") && text.contains("upgrade paved"), "{text}");
}

/// Wake-ups cross processes on PostgreSQL (LISTEN/NOTIFY); SQLite has none to give.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wake_up_reaches_every_listener_on_postgres_and_none_is_offered_on_sqlite() {
    let b = postgres().await;
    let (one, other) = (SqlStore::open(&b.url).await.unwrap(), SqlStore::open(&b.url).await.unwrap());
    let mut first = one.wakes("paved_git").await.unwrap().expect("PostgreSQL listens");
    let mut second = other.wakes("paved_git").await.unwrap().expect("PostgreSQL listens");
    let mut unrelated = other.wakes("paved_other").await.unwrap().expect("PostgreSQL listens");
    other.wake("paved_git").await.unwrap();
    for rx in [&mut first, &mut second] {
        tokio::time::timeout(std::time::Duration::from_secs(5), rx.recv()).await.expect("woken").unwrap();
    }
    assert!(tokio::time::timeout(std::time::Duration::from_millis(300), unrelated.recv()).await.is_err());
    let lite = sqlite().await;
    let store = SqlStore::open(&lite.url).await.unwrap();
    assert!(store.wakes("paved_git").await.unwrap().is_none());
    store.wake("paved_git").await.unwrap();
}

/// PostgreSQL only: the store replicas share (SQLite is one machine's).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_starting_together_on_postgres_migrate_once() {
    let b = postgres().await;
    let opened = futures_util::future::join_all((0..3).map(|_| SqlStore::open(&b.url))).await;
    for store in &opened {
        assert!(store.is_ok(), "{:?}", store.as_ref().err());
    }
    let mut conn = <sqlx::AnyConnection as sqlx::Connection>::connect(&b.url).await.unwrap();
    let (rows, versions): (i64, i64) =
        sqlx::query_as("SELECT COUNT(*), COUNT(DISTINCT version) FROM _sqlx_migrations WHERE success")
            .fetch_one(&mut conn)
            .await
            .unwrap();
    assert!(rows >= 8 && rows == versions, "{rows} migrations recorded for {versions} versions");
}

macro_rules! suite {
    ($($name:ident),* $(,)?) => {
        mod on_sqlite { $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)] async fn $name() { super::$name(super::sqlite().await).await } )* }
        mod on_postgres { $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)] async fn $name() { super::$name(super::postgres().await).await } )* }
    };
}

suite!(
    records_and_lists,
    operations_are_claimed_once_from_a_dead_owner_and_audited_once,
    a_local_environment_is_pinned_to_the_first_runner_until_taken_over_or_destroyed,
    a_lease_has_one_holder_and_a_new_token_after_each_lapse,
    a_fenced_store_writes_nothing_once_its_lease_was_taken_over,
    a_newer_schema_serves_until_it_says_this_release_cannot_use_it,
    updates_keep_history,
    stale_batches_change_nothing,
    deletes_are_tombstones,
    concurrent_writers_lose_nothing,
    history_is_append_only,
    reopening_keeps_state,
    applied_nodes_are_upserted_per_environment,
    one_apply_per_environment_at_a_time,
    concurrent_lockers_get_one_winner,
    the_audit_log_is_append_only_and_tamper_evident,
    concurrent_appends_keep_one_chain,
    a_long_chain_verifies_across_pages_and_a_late_break_is_named,
    tokens_are_stored_hashed_revoked_once_and_audited,
    listings_page_by_name_within_a_kind,
    artifacts_are_immutable_and_deployments_exactly_once,
);

fn queued(id: &str, owner: &str, heartbeat: i64) -> paved_store::StoredOperation {
    paved_store::StoredOperation {
        id: id.into(),
        environment: "dev".into(),
        status: "running".into(),
        owner: owner.into(),
        heartbeat_at: at(heartbeat),
        attempts: 1,
        started_at: at(heartbeat),
        finished_at: None,
        body: json!({"id": id, "done": 0}),
        work: json!({"run": "graph"}),
    }
}

async fn operations_are_claimed_once_from_a_dead_owner_and_audited_once(b: Backend) {
    use paved_store::OperationStore;
    let store = Arc::new(SqlStore::open(&b.url).await.unwrap());
    store.put_operation(&queued("op_1", "a#1", 0)).await.unwrap();
    let events = |from: i64, to: i64| (from..to).map(|i| (i, format!("{{\"seq\":{i}}}"))).collect::<Vec<_>>();
    // The owner records progress; each write is a heartbeat.
    assert!(store.save_operation("op_1", "a#1", "running", &json!({"done": 2}), &events(0, 3), at(5)).await.unwrap());
    let got = store.get_operation("op_1").await.unwrap().unwrap();
    assert_eq!((got.heartbeat_at, got.body["done"].clone(), got.attempts), (at(5), json!(2), 1));
    // Not stale yet: nobody takes it.
    assert_eq!(store.claim_stale_operation("b#2", at(6), at(4)).await.unwrap(), None);
    // Its owner stopped beating: several replicas look at once, exactly one claims it.
    let mut claims = Vec::new();
    for i in 0..6 {
        let store = store.clone();
        claims.push(tokio::spawn(async move { store.claim_stale_operation(&format!("r#{i}"), at(20), at(10)).await }));
    }
    let mut winners = Vec::new();
    for c in claims {
        if let Some(op) = c.await.unwrap().unwrap() {
            winners.push(op);
        }
    }
    assert_eq!(winners.len(), 1, "{winners:?}");
    let claimed = winners.remove(0);
    assert_eq!((claimed.id.as_str(), claimed.attempts, claimed.heartbeat_at), ("op_1", 2, at(20)));
    assert_eq!(claimed.work, json!({"run": "graph"}));
    let owner = claimed.owner.clone();
    // The old owner comes back (a pause, a partition): its writes are refused and change nothing.
    assert!(
        !store.save_operation("op_1", "a#1", "succeeded", &json!({"done": 9}), &events(3, 5), at(21)).await.unwrap()
    );
    assert_eq!(store.get_operation("op_1").await.unwrap().unwrap().status, "running");
    assert_eq!(store.operation_events("op_1", -1, 100).await.unwrap().len(), 3);
    // The audit event: once, by the owner; the dead one (or a second attempt) appends nothing.
    let head = store.heads().await.unwrap().audit;
    assert!(!store.audit_operation("op_1", "a#1", &event("ada", "Environment/dev")).await.unwrap());
    assert!(store.audit_operation("op_1", &owner, &event("ada", "Environment/dev")).await.unwrap());
    assert!(!store.audit_operation("op_1", &owner, &event("ada", "Environment/dev")).await.unwrap());
    assert_eq!(store.heads().await.unwrap().audit, head + 1);
    // The new owner goes on after the recorded events and ends it; readers page after what they saw.
    assert!(store.save_operation("op_1", &owner, "running", &json!({"done": 4}), &events(3, 5), at(22)).await.unwrap());
    let after = store.operation_events("op_1", 1, 2).await.unwrap();
    assert_eq!(after.iter().map(|(s, _)| *s).collect::<Vec<_>>(), [2, 3]);
    assert_eq!(store.queue_stats().await.unwrap().running, 1);
    assert!(
        store.save_operation("op_1", &owner, "succeeded", &json!({"done": 5}), &events(5, 6), at(23)).await.unwrap()
    );
    let ended = store.get_operation("op_1").await.unwrap().unwrap();
    assert_eq!((ended.status.as_str(), ended.finished_at), ("succeeded", Some(at(23))));
    // An ended operation is never claimed, however old; nor written again.
    assert_eq!(store.claim_stale_operation("c#3", at(500), at(400)).await.unwrap(), None);
    assert!(!store.save_operation("op_1", &owner, "running", &json!({}), &[], at(24)).await.unwrap());
    assert_eq!(store.queue_stats().await.unwrap(), paved_store::QueueStats::default());

    // A replica shutting down releases what it runs: claimed at the next look, not after the timeout.
    store.put_operation(&queued("op_2", "a#1", 100)).await.unwrap();
    assert!(!store.release_operation("op_2", "someone-else").await.unwrap());
    assert_eq!(store.claim_stale_operation("b#2", at(101), at(99)).await.unwrap(), None);
    assert!(store.release_operation("op_2", "a#1").await.unwrap());
    let stats = store.queue_stats().await.unwrap();
    assert_eq!(stats.running, 1);
    let taken = store.claim_stale_operation("b#2", at(101), at(99)).await.unwrap().unwrap();
    assert_eq!((taken.id.as_str(), taken.owner.as_str()), ("op_2", "b#2"));

    // Finished operations past the retention go, with their events; running ones stay.
    assert_eq!(store.prune_operations(at(30)).await.unwrap(), 1);
    assert_eq!(store.get_operation("op_1").await.unwrap(), None);
    assert!(store.operation_events("op_1", -1, 100).await.unwrap().is_empty());
    assert_eq!(store.prune_operations(at(10_000)).await.unwrap(), 0);
    assert!(store.get_operation("op_2").await.unwrap().is_some());
}

fn node(id: &str, v: i64) -> AppliedNode {
    AppliedNode {
        node_id: id.into(),
        node: json!({"kind": "null", "v": v}),
        outputs: json!({"id": v}),
        updated_at: at(v),
    }
}

async fn applied_nodes_are_upserted_per_environment(b: Backend) {
    let store = SqlStore::open(&b.url).await.unwrap();
    store.put_applied_node("dev", &node("null/a", 1)).await.unwrap();
    store.put_applied_node("dev", &node("null/b", 2)).await.unwrap();
    store.put_applied_node("dev", &node("null/a", 3)).await.unwrap();
    store.put_applied_node("staging", &node("null/a", 9)).await.unwrap();
    let dev = store.applied_nodes("dev").await.unwrap();
    assert_eq!(
        dev.iter().map(|n| (n.node_id.as_str(), n.outputs["id"].as_i64().unwrap())).collect::<Vec<_>>(),
        [("null/a", 3), ("null/b", 2)]
    );
    assert_eq!(dev[0].updated_at, at(3));
    store.delete_applied_node("dev", "null/a").await.unwrap();
    assert_eq!(store.applied_nodes("dev").await.unwrap().len(), 1);
    assert_eq!(store.applied_nodes("staging").await.unwrap().len(), 1);

    // Every write to applied resources moves the clock, whoever makes it (a
    // trigger counts them), and nothing else does; the audit head is read with it.
    let heads = || async { store.heads().await.unwrap() };
    let before = heads().await;
    store.commit(&[put("Team", "t", None, json!({}))]).await.unwrap();
    let after_spec = heads().await;
    assert_eq!((after_spec.applied, after_spec.audit), (before.applied, before.audit + 1));
    store.put_applied_nodes("dev", &[node("null/c", 4), node("null/d", 5)]).await.unwrap();
    let after_put = heads().await;
    assert!(after_put.applied > after_spec.applied, "{after_put:?}");
    assert_eq!(after_put.audit, after_spec.audit);
    let mut conn = <sqlx::AnyConnection as sqlx::Connection>::connect(&b.url).await.unwrap();
    sqlx::query("UPDATE applied_nodes SET outputs = '{}' WHERE node_id = 'null/c'").execute(&mut conn).await.unwrap();
    let after_hand_edit = heads().await;
    assert!(after_hand_edit.applied > after_put.applied);
    sqlx::query("DELETE FROM applied_nodes WHERE environment = 'staging'").execute(&mut conn).await.unwrap();
    assert!(heads().await.applied > after_hand_edit.applied);
    let unchanged = heads().await;
    store.applied_nodes("dev").await.unwrap();
    assert_eq!(heads().await, unchanged, "reads do not move it");
}

async fn one_apply_per_environment_at_a_time(b: Backend) {
    let store = SqlStore::open(&b.url).await.unwrap();
    let ttl = time::Duration::seconds(30);
    assert_eq!(store.acquire_lock("dev", "alice@host1", at(0), ttl).await.unwrap(), Lock::Acquired);
    match store.acquire_lock("dev", "bob@host2", at(10), ttl).await.unwrap() {
        Lock::HeldBy { holder, since, .. } => assert_eq!((holder.as_str(), since), ("alice@host1", at(0))),
        other => panic!("{other:?}"),
    }
    // Other environments are independent.
    assert_eq!(store.acquire_lock("staging", "bob@host2", at(10), ttl).await.unwrap(), Lock::Acquired);
    // The holder extends its lease (heartbeat) and keeps its start time.
    assert_eq!(store.acquire_lock("dev", "alice@host1", at(25), ttl).await.unwrap(), Lock::Acquired);
    assert!(matches!(store.acquire_lock("dev", "bob@host2", at(40), ttl).await.unwrap(), Lock::HeldBy { .. }));
    // An expired lease (a crashed holder) can be taken over.
    assert_eq!(store.acquire_lock("dev", "bob@host2", at(56), ttl).await.unwrap(), Lock::Acquired);
    store.release_lock("dev", "alice@host1").await.unwrap();
    assert!(
        matches!(store.acquire_lock("dev", "carol", at(57), ttl).await.unwrap(), Lock::HeldBy { .. }),
        "only the holder releases"
    );
    store.release_lock("dev", "bob@host2").await.unwrap();
    assert_eq!(store.acquire_lock("dev", "carol", at(58), ttl).await.unwrap(), Lock::Acquired);
}

async fn concurrent_lockers_get_one_winner(b: Backend) {
    let store = Arc::new(SqlStore::open(&b.url).await.unwrap());
    let mut tasks = Vec::new();
    for i in 0..8 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            store.acquire_lock("prod", &format!("p{i}"), at(0), time::Duration::seconds(60)).await.unwrap()
        }));
    }
    let mut winners = 0;
    for t in tasks {
        if t.await.unwrap() == Lock::Acquired {
            winners += 1;
        }
    }
    assert_eq!(winners, 1);
}

fn artifact(digest: &str, tags: &[&str]) -> paved_store::Artifact {
    paved_store::Artifact {
        digest: digest.into(),
        service: "api".into(),
        commit: Some("4f2a9c1".into()),
        commit_time: Some(at(-3600)),
        branch: Some("main".into()),
        builder: "ci".into(),
        created_at: at(0),
        tags: tags.iter().map(|t| t.to_string()).collect(),
    }
}

fn new_deployment(env: &str, digest: &str, request_id: &str) -> paved_store::NewDeployment {
    paved_store::NewDeployment {
        environment: env.into(),
        service: "api".into(),
        artifact: digest.into(),
        strategy: "rolling".into(),
        soak_ms: 5000,
        ready_timeout_ms: 120_000,
        actor: "alice".into(),
        request_id: request_id.into(),
        origin: Some("test".into()),
        at: at(10),
    }
}

async fn artifacts_are_immutable_and_deployments_exactly_once(b: Backend) {
    use paved_store::{ArtifactPut, DeploymentFilter, DeploymentStatus as S};
    let store = SqlStore::open(&b.url).await.unwrap();
    let head = || async { store.heads().await.unwrap().audit };
    assert_eq!(
        store.put_artifact(&artifact("sha256:a", &["1.0"]), &event("ci", "Artifact/api")).await.unwrap(),
        ArtifactPut::Created
    );
    let after_first = head().await;
    // Same content again: nothing written, not even an audit event.
    assert_eq!(
        store.put_artifact(&artifact("sha256:a", &["1.0"]), &event("ci", "Artifact/api")).await.unwrap(),
        ArtifactPut::Existing
    );
    assert_eq!(head().await, after_first);
    // A tag never moves to other content, and the refused artifact is not recorded.
    let taken = store.put_artifact(&artifact("sha256:b", &["1.0"]), &event("ci", "Artifact/api")).await.unwrap();
    assert_eq!(taken, ArtifactPut::TagTaken { tag: "1.0".into(), digest: "sha256:a".into() });
    assert!(store.artifact("sha256:b").await.unwrap().is_none());
    store.put_artifact(&artifact("sha256:b", &["1.1"]), &event("ci", "Artifact/api")).await.unwrap();
    let a = store.artifact("sha256:a").await.unwrap().unwrap();
    assert_eq!((a.tags, a.commit_time), (vec!["1.0".to_string()], Some(at(-3600))));
    assert_eq!(store.artifacts(Some("api")).await.unwrap().len(), 2);

    // Numbered per service and environment; a request id seen before returns its deployment.
    let (d1, created) = store
        .create_deployment(&new_deployment("dev", "sha256:a", "r1"), &event("alice", "Service/api@dev"))
        .await
        .unwrap();
    assert_eq!((d1.number, d1.status, created), (1, S::Pending, true));
    let (again, created) = store
        .create_deployment(&new_deployment("dev", "sha256:b", "r1"), &event("alice", "Service/api@dev"))
        .await
        .unwrap();
    assert_eq!((again.number, again.artifact.as_str(), created), (1, "sha256:a", false));
    let (d2, _) = store
        .create_deployment(&new_deployment("dev", "sha256:b", "r2"), &event("alice", "Service/api@dev"))
        .await
        .unwrap();
    let (s1, _) = store
        .create_deployment(&new_deployment("staging", "sha256:a", "r3"), &event("alice", "Service/api@staging"))
        .await
        .unwrap();
    assert_eq!((d2.number, s1.number), (2, 1));

    // Status moves only from the states the caller names.
    assert!(store.set_deployment_status(&d1, &[S::Pending], S::Healthy, None, at(20)).await.unwrap());
    assert!(!store.set_deployment_status(&d1, &[S::Pending], S::Failed, Some("late"), at(21)).await.unwrap());
    assert!(
        store
            .set_deployment_status(&d2, &[S::Pending, S::RollingOut], S::RolledBack, Some("not ready"), at(22))
            .await
            .unwrap()
    );
    let dev = store.deployments(&DeploymentFilter { environment: Some("dev".into()), service: None }).await.unwrap();
    assert_eq!(dev.iter().map(|d| (d.number, d.status)).collect::<Vec<_>>(), [(1, S::Healthy), (2, S::RolledBack)]);
    assert_eq!((dev[0].finished_at, dev[1].reason.as_deref()), (Some(at(20)), Some("not ready")));
    assert_eq!(store.deployments(&DeploymentFilter::default()).await.unwrap().len(), 3);
}
