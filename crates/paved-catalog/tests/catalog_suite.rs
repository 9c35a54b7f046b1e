//! The catalog on SQLite and on a real PostgreSQL server: the same applies
//! give the same recorded state, and concurrent applies lose nothing.

use paved_catalog::{Action, Catalog, CatalogError, Clock};
use paved_model::Kind;
use paved_spec::SourceFile;
use paved_store::{SqlStore, Store};
use std::path::Path;
use std::sync::Arc;
use time::OffsetDateTime;

struct FixedClock;

impl Clock for FixedClock {
    fn now(&self) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_764_000_000).unwrap()
    }
}

async fn catalog(url: &str) -> Catalog {
    let store: Arc<dyn Store> = Arc::new(SqlStore::open(url).await.unwrap());
    Catalog::new(store, Arc::new(FixedClock))
}

fn examples() -> Vec<SourceFile> {
    let (sources, diags) = paved_spec::read_path(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples"));
    assert!(diags.is_empty());
    sources
}

fn team(members: &[&str]) -> Vec<SourceFile> {
    let list = members.iter().map(|m| format!("\"user:{m}@example.com\"")).collect::<Vec<_>>().join(", ");
    vec![SourceFile::new(
        "team.yaml",
        format!("apiVersion: paved.dev/v1alpha1\nkind: Team\nmetadata:\n  name: hot\nspec:\n  members: [{list}]\n"),
    )]
}

/// What a user would see of the recorded state, independent of the backend.
async fn snapshot(c: &Catalog) -> Vec<(String, String, i64, String)> {
    c.list(None)
        .await
        .unwrap()
        .into_iter()
        .map(|o| (o.record.kind, o.record.name, o.record.generation, o.record.content_hash))
        .collect()
}

async fn sqlite_url(dir: &tempfile::TempDir) -> String {
    format!("sqlite://{}", dir.path().join("state.db").display())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_and_postgres_record_the_same_state() {
    let dir = tempfile::tempdir().unwrap();
    let lite = catalog(&sqlite_url(&dir).await).await;
    let pg = catalog(&paved_store::testing::postgres_url().await.unwrap()).await;
    for c in [&lite, &pg] {
        let first = c.apply(examples(), vec![], "alice").await.unwrap();
        assert!(first.outcomes.iter().all(|o| o.action == Action::Created));
        let second = c.apply(examples(), vec![], "alice").await.unwrap();
        assert!(second.outcomes.iter().all(|o| o.action == Action::Unchanged));
    }
    let (a, b) = (snapshot(&lite).await, snapshot(&pg).await);
    assert_eq!(a.len(), 19);
    assert_eq!(a, b);
    let env = pg.get(Kind::Environment, "eu-production").await.unwrap();
    assert_eq!(env.record.created_at, FixedClock.now());
    assert_eq!(
        env.record.source.as_deref().map(|s| s.ends_with("environments/aws-eu.yaml:23")),
        Some(true),
        "{:?}",
        env.record.source
    );
}

async fn concurrent_applies(url: String) {
    let c = Arc::new(catalog(&url).await);
    let mut tasks = Vec::new();
    for i in 0..6 {
        let c = c.clone();
        tasks
            .push(tokio::spawn(async move { c.apply(team(&[&format!("member{i}")]), vec![], "ci").await.map(|_| ()) }));
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    let history = c.history(Kind::Team, "hot").await.unwrap();
    let mut members: Vec<String> =
        history.iter().map(|r| r.spec.as_ref().unwrap()["spec"]["members"][0].as_str().unwrap().to_string()).collect();
    members.sort();
    assert_eq!(history.iter().map(|r| r.generation).collect::<Vec<_>>(), (1..=6).collect::<Vec<_>>());
    assert_eq!(members, (0..6).map(|i| format!("user:member{i}@example.com")).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_applies_lose_no_update_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    concurrent_applies(sqlite_url(&dir).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_applies_lose_no_update_on_postgres() {
    concurrent_applies(paved_store::testing::postgres_url().await.unwrap()).await;
}

#[tokio::test]
async fn an_invalid_batch_records_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let c = catalog(&sqlite_url(&dir).await).await;
    let mut sources = examples();
    sources.push(SourceFile::new(
        "bad.yaml",
        "apiVersion: paved.dev/v1alpha1\nkind: Team\nmetadata:\n  name: Bad Name\nspec: {}\n",
    ));
    match c.apply(sources, vec![], "alice").await {
        Err(CatalogError::Invalid(batch)) => {
            assert_eq!(batch.diagnostics.iter().filter(|d| d.is_error()).count(), 1)
        }
        other => panic!("expected Invalid, got {other:?}"),
    }
    assert!(c.list(None).await.unwrap().is_empty());
}
