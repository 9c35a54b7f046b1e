//! The orchestrator against a SQLite store and an in-memory "cloud" whose
//! resources outlive each apply (as real ones do).

use paved_engine::{
    Driver, DriverError, Drivers, Engine, EngineError, FaultInjecting, NullDriver, Observation, Options, Outcome,
    Outputs, Quiet, Resource,
};
use paved_model::{Clock, Provider};
use paved_plan::{Node, ResourceGraph};
use paved_store::{SqlStore, Store};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

struct FixedClock;
impl Clock for FixedClock {
    fn now(&self) -> time::OffsetDateTime {
        time::OffsetDateTime::from_unix_timestamp(1_764_000_000).unwrap()
    }
}

/// Resources kept by external name, with a log of every mutating call.
#[derive(Default)]
struct Cloud {
    resources: Mutex<BTreeMap<String, Value>>,
    log: Mutex<Vec<String>>,
    creates: Mutex<BTreeMap<String, usize>>,
    /// External names whose create "crashes" after the resource exists.
    crash_after_create: Mutex<Vec<String>>,
    /// External names that fail permanently.
    broken: Mutex<Vec<String>>,
    running: AtomicUsize,
    max_running: AtomicUsize,
}

#[async_trait::async_trait]
impl Driver for Cloud {
    async fn observe(&self, r: &Resource) -> Result<Observation, DriverError> {
        Ok(match self.resources.lock().unwrap().get(&r.external_name) {
            Some(props) => Observation::Present {
                properties: props.clone(),
                outputs: Outputs::from([("id".into(), json!(r.external_name))]),
                ready: true,
            },
            None => Observation::Absent,
        })
    }

    async fn create(&self, r: &Resource) -> Result<Outputs, DriverError> {
        let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_running.fetch_max(now, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(5)).await;
        self.running.fetch_sub(1, Ordering::SeqCst);
        if self.broken.lock().unwrap().contains(&r.external_name) {
            return Err(DriverError::Permanent(format!("quota exceeded for {}", r.external_name)));
        }
        self.resources.lock().unwrap().insert(r.external_name.clone(), r.properties.clone());
        *self.creates.lock().unwrap().entry(r.external_name.clone()).or_default() += 1;
        self.log.lock().unwrap().push(format!("create {}", r.id));
        if self.crash_after_create.lock().unwrap().contains(&r.external_name) {
            return Err(DriverError::Permanent("connection lost".into()));
        }
        Ok(Outputs::from([("id".into(), json!(r.external_name))]))
    }

    async fn update(&self, r: &Resource) -> Result<Outputs, DriverError> {
        self.resources.lock().unwrap().insert(r.external_name.clone(), r.properties.clone());
        self.log.lock().unwrap().push(format!("update {}", r.id));
        Ok(Outputs::from([("id".into(), json!(r.external_name))]))
    }

    async fn delete(&self, r: &Resource) -> Result<(), DriverError> {
        self.resources.lock().unwrap().remove(&r.external_name);
        self.log.lock().unwrap().push(format!("delete {}", r.id));
        Ok(())
    }
}

struct Setup {
    engine: Engine,
    cloud: Arc<Cloud>,
    store: Arc<dyn Store>,
    _dir: tempfile::TempDir,
}

async fn setup_with(wrap: impl Fn(Arc<Cloud>) -> Arc<dyn Driver>) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> =
        Arc::new(SqlStore::open(&format!("sqlite://{}", dir.path().join("s.db").display())).await.unwrap());
    let cloud = Arc::new(Cloud::default());
    let drivers = Drivers::default().with("thing", wrap(cloud.clone())).with("null", Arc::new(NullDriver));
    Setup { engine: Engine::new(store.clone(), drivers, Arc::new(FixedClock)), cloud, store, _dir: dir }
}

async fn setup() -> Setup {
    setup_with(|c| c).await
}

fn opts() -> Options {
    Options { initial_backoff: Duration::from_millis(1), max_backoff: Duration::from_millis(5), ..Options::default() }
}

/// net ← db ← app, and app's `dbId` refers to the database's output.
fn stack(db_size: &str) -> ResourceGraph {
    let mut g = ResourceGraph::new(Provider::Local, "dev");
    g.add(Node::new("thing", "net", json!({"cidr": "10.0.0.0/16"})));
    g.add(
        Node::new("thing", "db", json!({"database": "app", "size": db_size}))
            .after(["thing/net".into()])
            .outputs(&["id"])
            .immutable(&["database"]),
    );
    g.add(Node::new("thing", "app", json!({"dbId": "${ref:thing/db.id}"})).after(["thing/db".into()]));
    g
}

async fn apply(s: &Setup, g: &ResourceGraph, o: &Options) -> Result<paved_engine::Report, EngineError> {
    s.engine.apply(g, o, Arc::new(AtomicBool::new(false)), Arc::new(Quiet)).await
}

#[tokio::test]
async fn creates_in_dependency_order_resolving_references() {
    let s = setup().await;
    let report = apply(&s, &stack("small"), &opts()).await.unwrap();
    assert!(report.succeeded(), "{report:?}");
    assert!(report.outcomes.values().all(|o| *o == Outcome::Created));
    assert_eq!(*s.cloud.log.lock().unwrap(), ["create thing/net", "create thing/db", "create thing/app"]);
    assert_eq!(s.cloud.resources.lock().unwrap()["paved-dev-app"], json!({"dbId": "paved-dev-db"}));
    assert_eq!(s.store.applied_nodes("dev").await.unwrap().len(), 3, "every outcome is recorded");
}

#[tokio::test]
async fn a_second_apply_changes_nothing_and_a_change_updates_only_that_node() {
    let s = setup().await;
    apply(&s, &stack("small"), &opts()).await.unwrap();
    let again = apply(&s, &stack("small"), &opts()).await.unwrap();
    assert!(again.outcomes.values().all(|o| *o == Outcome::Unchanged), "{again:?}");
    let changed = apply(&s, &stack("large"), &opts()).await.unwrap();
    assert_eq!(changed.outcomes["thing/db"], Outcome::Updated);
    assert_eq!(changed.outcomes["thing/app"], Outcome::Unchanged);
    assert_eq!(s.cloud.resources.lock().unwrap()["paved-dev-db"]["size"], "large");
}

#[tokio::test]
async fn an_immutable_change_replaces_and_removed_nodes_are_deleted_dependents_first() {
    let s = setup().await;
    apply(&s, &stack("small"), &opts()).await.unwrap();
    let mut g = stack("small");
    g.nodes.get_mut("thing/db").unwrap().properties["database"] = json!("app2");
    let r = apply(&s, &g, &opts()).await.unwrap();
    assert_eq!(r.outcomes["thing/db"], Outcome::Replaced);
    s.cloud.log.lock().unwrap().clear();
    let empty = ResourceGraph::new(Provider::Local, "dev");
    let r = apply(&s, &empty, &opts()).await.unwrap();
    assert!(r.outcomes.values().all(|o| *o == Outcome::Deleted), "{r:?}");
    assert_eq!(*s.cloud.log.lock().unwrap(), ["delete thing/app", "delete thing/db", "delete thing/net"]);
    assert!(s.cloud.resources.lock().unwrap().is_empty(), "nothing is left behind");
    assert!(s.store.applied_nodes("dev").await.unwrap().is_empty());
}

#[tokio::test]
async fn transient_failures_are_retried_until_it_converges() {
    let s = setup_with(|c| Arc::new(FaultInjecting::new(c, 20, 7)) as Arc<dyn Driver>).await;
    let mut g = ResourceGraph::new(Provider::Local, "dev");
    for i in 0..40 {
        let after: Vec<String> = if i > 0 { vec![format!("thing/n{}", i / 2)] } else { vec![] };
        g.add(Node::new("thing", &format!("n{i}"), json!({"i": i})).after(after));
    }
    let o = Options { max_attempts: 10, ..opts() };
    let r = apply(&s, &g, &o).await.unwrap();
    assert!(r.succeeded(), "{r:?}");
    assert_eq!(s.cloud.resources.lock().unwrap().len(), 40);
    assert!(s.cloud.creates.lock().unwrap().values().all(|n| *n == 1), "no duplicates");
}

#[tokio::test]
async fn a_permanent_failure_stops_dependants_and_names_the_root_cause() {
    let s = setup().await;
    s.cloud.broken.lock().unwrap().push("paved-dev-db".into());
    let r = apply(&s, &stack("small"), &opts()).await.unwrap();
    assert!(!r.succeeded());
    assert_eq!(r.outcomes["thing/net"], Outcome::Created);
    assert!(
        matches!(&r.outcomes["thing/db"], Outcome::Failed { error, attempts: 1 } if error.contains("quota exceeded"))
    );
    assert!(matches!(&r.outcomes["thing/app"], Outcome::Skipped { because } if because.contains("thing/db")));
    assert!(!s.cloud.resources.lock().unwrap().contains_key("paved-dev-app"));
}

#[tokio::test]
async fn a_crash_after_creating_is_resumed_by_adoption_without_duplicates() {
    let s = setup().await;
    // The database gets created, but the apply never learns it (a crash).
    s.cloud.crash_after_create.lock().unwrap().push("paved-dev-db".into());
    let r = apply(&s, &stack("small"), &opts()).await.unwrap();
    assert!(!r.succeeded());
    s.cloud.crash_after_create.lock().unwrap().clear();
    let r = apply(&s, &stack("small"), &opts()).await.unwrap();
    assert!(r.succeeded(), "{r:?}");
    assert_eq!(r.outcomes["thing/db"], Outcome::Adopted);
    assert_eq!(r.outcomes["thing/net"], Outcome::Unchanged);
    assert!(s.cloud.creates.lock().unwrap().values().all(|n| *n == 1), "{:?}", s.cloud.creates.lock().unwrap());
}

#[tokio::test]
async fn parallelism_is_bounded() {
    let s = setup().await;
    let mut g = ResourceGraph::new(Provider::Local, "dev");
    for i in 0..30 {
        g.add(Node::new("thing", &format!("w{i}"), json!({})));
    }
    let r = apply(&s, &g, &Options { parallelism: 3, ..opts() }).await.unwrap();
    assert!(r.succeeded());
    let max = s.cloud.max_running.load(Ordering::SeqCst);
    assert!((2..=3).contains(&max), "max concurrent creates: {max}");
}

#[tokio::test]
async fn cancelling_starts_nothing_new() {
    let s = setup().await;
    let cancel = Arc::new(AtomicBool::new(true));
    let r = s.engine.apply(&stack("small"), &opts(), cancel, Arc::new(Quiet)).await.unwrap();
    assert!(r.cancelled);
    assert!(r.outcomes.values().all(|o| *o == Outcome::NotStarted));
    assert!(s.store.applied_nodes("dev").await.unwrap().is_empty());
    // And the next apply finishes the job.
    assert!(apply(&s, &stack("small"), &opts()).await.unwrap().succeeded());
}

/// A step that waits on something the cancel keeps from starting (as a
/// workload's readiness waits on a dependency) never finishes by itself.
struct Waits;

#[async_trait::async_trait]
impl Driver for Waits {
    async fn observe(&self, _: &Resource) -> Result<Observation, DriverError> {
        Ok(Observation::Absent)
    }
    async fn create(&self, _: &Resource) -> Result<Outputs, DriverError> {
        std::future::pending().await
    }
    async fn update(&self, _: &Resource) -> Result<Outputs, DriverError> {
        std::future::pending().await
    }
    async fn delete(&self, _: &Resource) -> Result<(), DriverError> {
        Ok(())
    }
}

#[tokio::test]
async fn a_cancel_drops_steps_still_running_after_the_grace_and_the_next_apply_finishes_them() {
    let s = setup_with(|_| Arc::new(Waits)).await;
    let cancel = Arc::new(AtomicBool::new(false));
    let started = tokio::time::Instant::now();
    let (graph, o) = (stack("small"), opts());
    let (r, ()) = tokio::join!(s.engine.apply(&graph, &o, cancel.clone(), Arc::new(Quiet)), async {
        tokio::time::sleep(Duration::from_millis(500)).await;
        cancel.store(true, Ordering::SeqCst);
    });
    let r = r.unwrap();
    let took = started.elapsed();
    assert!(r.cancelled && !r.succeeded());
    // Not a timing gate: without the grace this apply never returns.
    assert!(took >= paved_engine::STOP_GRACE, "took {took:?}");
    match &r.outcomes["thing/net"] {
        Outcome::Failed { error, .. } => assert!(error.starts_with("interrupted"), "{error}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(r.outcomes["thing/db"], Outcome::NotStarted);
    // The store has nothing half-done that a later apply would trip on.
    assert!(s.store.applied_nodes("dev").await.unwrap().is_empty());
    let lock = s.store.acquire_lock("dev", "next", FixedClock.now(), time::Duration::seconds(60)).await.unwrap();
    assert!(matches!(lock, paved_store::Lock::Acquired), "{lock:?}");
}

#[tokio::test]
async fn a_run_whose_lock_was_taken_over_drops_its_running_steps_at_once() {
    let s = setup_with(|_| Arc::new(Waits)).await;
    // A short lock: renewed every 100 ms.
    let o = Options { lease: Duration::from_millis(300), ..opts() };
    let cancel = Arc::new(AtomicBool::new(false));
    let graph = stack("small");
    let apply = s.engine.apply(&graph, &o, cancel, Arc::new(Quiet));
    let take_over = async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        // Another run, whose clock says the lock lapsed, takes it (as after a partition).
        let later = FixedClock.now() + time::Duration::minutes(5);
        let lock = s.store.acquire_lock("dev", "other@elsewhere:1", later, time::Duration::minutes(1)).await.unwrap();
        assert!(matches!(lock, paved_store::Lock::Acquired), "{lock:?}");
    };
    // Without the fence the waiting step never returns: bounded so the test fails instead of hanging.
    let (r, ()) = tokio::time::timeout(Duration::from_secs(30), async { tokio::join!(apply, take_over) })
        .await
        .expect("the run went on after losing its lock");
    let r = r.unwrap();
    assert!(r.cancelled && !r.succeeded());
    match &r.outcomes["thing/net"] {
        Outcome::Failed { error, .. } => assert!(error.contains("lost its environment's lock"), "{error}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(r.outcomes["thing/db"], Outcome::NotStarted);
}

#[tokio::test]
async fn a_second_apply_of_the_same_environment_is_refused_while_one_runs() {
    let s = setup().await;
    let lease = time::Duration::seconds(60);
    s.store.acquire_lock("dev", "alice@ci:42", FixedClock.now(), lease).await.unwrap();
    match apply(&s, &stack("small"), &opts()).await {
        Err(EngineError::Locked { holder, .. }) => assert_eq!(holder, "alice@ci:42"),
        other => panic!("{other:?}"),
    }
    assert!(s.cloud.log.lock().unwrap().is_empty());
}

#[tokio::test]
async fn kinds_without_a_driver_are_refused_before_anything_changes() {
    let s = setup().await;
    let mut g = stack("small");
    g.add(Node::new("local.network", "dev", json!({})));
    match apply(&s, &g, &opts()).await {
        Err(EngineError::MissingDrivers { kinds }) => assert_eq!(kinds, ["local.network"]),
        other => panic!("{other:?}"),
    }
    assert!(s.cloud.log.lock().unwrap().is_empty());
}

/// A driver that refuses every resource, quoting what it was given (as
/// real APIs' error messages do).
struct Quoting;

#[async_trait::async_trait]
impl Driver for Quoting {
    async fn observe(&self, _: &Resource) -> Result<Observation, DriverError> {
        Ok(Observation::Absent)
    }
    async fn create(&self, r: &Resource) -> Result<Outputs, DriverError> {
        Err(DriverError::Permanent(format!("invalid configuration {}", r.properties)))
    }
    async fn update(&self, r: &Resource) -> Result<Outputs, DriverError> {
        self.create(r).await
    }
    async fn delete(&self, _: &Resource) -> Result<(), DriverError> {
        Ok(())
    }
}

fn with_secret() -> ResourceGraph {
    let mut g = ResourceGraph::new(Provider::Local, "dev");
    g.add(Node::new("thing", "app", json!({"env": {"TOKEN": "${secret:app/TOKEN}", "MODE": "fast"}})));
    g
}

fn secrets(value: &str) -> Options {
    let values = BTreeMap::from([("app/TOKEN".to_string(), value.to_string())]);
    Options { secrets: paved_engine::SecretValues::new(values), ..opts() }
}

#[tokio::test]
async fn secrets_reach_drivers_only_and_never_what_the_engine_records_or_reports() {
    let s = setup().await;
    let report = apply(&s, &with_secret(), &secrets("hunter2-v1")).await.unwrap();
    assert!(report.succeeded(), "{report:?}");
    // The driver got the value; the store keeps the reference.
    assert_eq!(s.cloud.resources.lock().unwrap()["paved-dev-app"]["env"]["TOKEN"], "hunter2-v1");
    let recorded = serde_json::to_string(&s.store.applied_nodes("dev").await.unwrap()).unwrap();
    assert!(recorded.contains("${secret:app/TOKEN}") && !recorded.contains("hunter2"), "{recorded}");

    // A new version: drift names the field, masking both the running and the new value.
    let drift = s.engine.drift("dev", Provider::Local, &secrets("hunter2-v2").secrets).await.unwrap();
    let text = serde_json::to_string(&drift).unwrap();
    assert!(drift.drifted() && text.contains("env.TOKEN") && text.contains("<secret>"), "{text}");
    assert!(!text.contains("hunter2"), "{text}");
    // Without its value the node fails naming the secret, not guessing.
    let missing = apply(&s, &with_secret(), &opts()).await.unwrap();
    let text = format!("{missing:?}");
    assert!(text.contains("`TOKEN`") && text.contains("not set"), "{text}");

    // A driver quoting its input has the value redacted from the outcome.
    let quoting = setup_with(|_| Arc::new(Quoting)).await;
    let failed = apply(&quoting, &with_secret(), &secrets("hunter2-v1")).await.unwrap();
    let text = format!("{failed:?}");
    assert!(text.contains("<secret>") && text.contains("fast") && !text.contains("hunter2"), "{text}");
}
