//! The state store: paved's system of record for desired state.
//!
//! Every applied spec is an *object* (`kind`, `name`) with a monotonically
//! increasing *generation*. A generation is written only when content
//! changes, is never rewritten (database triggers refuse UPDATE and DELETE on
//! history), and a delete is one more generation (a tombstone).
//!
//! Writes use optimistic concurrency: each [`Change`] states the generation it
//! was computed against, and [`Store::commit`] applies all changes of a batch
//! in one transaction or none of them, failing with [`StoreError::Conflict`]
//! when another writer got there first. No update is ever lost.
//!
//! The store also keeps the audit log ([`audit`]): every committed change is
//! recorded in the same transaction as an event in a SHA-256 hash chain, and
//! callers append other actions (applies, denials) with
//! [`Store::append_audit`].
//!
//! One implementation, [`SqlStore`], serves SQLite (embedded default, WAL)
//! and PostgreSQL through sqlx's `Any` driver; the dialects differ only in
//! their migration files.
//!
//! Long operations and their progress ([`queue`]) are a durable queue that
//! every replica of a server reads, and any takes over from a dead one.
//!
//! Artifacts and deployments ([`releases`]) are kept forever; a deployment
//! only moves forward through its statuses.
//!
//! Secrets ([`secrets`]) are stored sealed: data keys wrapped by a
//! key-encryption key, values encrypted with them, OIDC signing keys
//! wrapped the same way. The store never holds a plaintext.
//!
//! Architecture invariant: the store knows nothing about spec kinds; it stores
//! JSON documents under string keys and never reads the clock (callers pass
//! timestamps).

pub mod audit;
mod pgcopy;
pub mod queue;
pub mod releases;
pub mod secrets;
mod sql;
#[cfg(feature = "testing")]
pub mod testing;
pub mod tokens;

pub use audit::{AuditEvent, AuditFilter, AuditOutcome, NewAuditEvent, RequestContext, Verification};
pub use queue::{OperationStore, QueueStats, StoredOperation};
pub use releases::{
    Artifact, ArtifactPut, Deployment, DeploymentFilter, DeploymentStatus, NewDeployment, PendingDeployment,
    ReleaseStore,
};
pub use secrets::{Rewrapped, SecretStore, StoredDataKey, StoredSecret, StoredSigningKey};
pub use sql::SqlStore;
pub use tokens::ApiToken;

use async_trait::async_trait;
use serde::Serialize;
use time::OffsetDateTime;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(
        "{kind} `{name}` changed while this apply was running (expected generation {expected:?}); re-run to apply on top of the new state"
    )]
    Conflict { kind: String, name: String, expected: Option<i64> },
    #[error("unsupported state URL `{0}`: use sqlite://PATH or postgres://USER@HOST/DB")]
    BadUrl(String),
    #[error("cannot open the state store at {url}: {source}")]
    Open { url: String, source: sqlx::Error },
    #[error("state store migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error(
        "the state store at {url} was upgraded by a newer paved (its schema is at migration {applied} and needs a paved that knows migration {needs}); this paved knows migrations up to {known}: upgrade paved here to the release of the other replicas"
    )]
    TooNew { url: String, applied: i64, needs: i64, known: i64 },
    #[error(
        "`{holder}` no longer holds the `{lease}` lease (its token {token} was superseded: another replica took over); nothing was written"
    )]
    Fenced { lease: String, holder: String, token: i64 },
    #[error("state store error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("corrupt record {kind} `{name}` generation {generation}: {reason}")]
    Corrupt { kind: String, name: String, generation: i64, reason: String },
    #[error("audit event {seq} cannot be read: {reason} (`paved audit verify` checks the log)")]
    CorruptAudit { seq: i64, reason: String },
}

/// One generation of one object.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Record {
    pub kind: String,
    pub name: String,
    pub generation: i64,
    pub content_hash: String,
    /// The document; `None` for a deletion (tombstone).
    pub spec: Option<serde_json::Value>,
    pub deleted: bool,
    pub actor: String,
    /// Where the spec came from (`file:line`), for `describe` and `history`.
    pub source: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

/// What a change does to an object.
#[derive(Debug, Clone, PartialEq)]
pub enum Operation {
    Put { spec: serde_json::Value, content_hash: String },
    Delete,
}

/// One change in a batch.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    pub kind: String,
    pub name: String,
    /// The generation this change was computed against; `None` when the
    /// object was never recorded.
    pub expected_generation: Option<i64>,
    pub operation: Operation,
    pub actor: String,
    pub source: Option<String>,
    pub at: OffsetDateTime,
    /// Recorded with the change in the audit log.
    pub request: RequestContext,
}

/// A resource-graph node as applied, with the outputs its driver reported.
/// The node itself is opaque JSON here (the store does not know graphs).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AppliedNode {
    pub node_id: String,
    pub node: serde_json::Value,
    pub outputs: serde_json::Value,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

/// The result of asking for an environment's lock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lock {
    Acquired,
    HeldBy { holder: String, since: OffsetDateTime, expires: OffsetDateTime },
}

/// The result of asking for a lease of singleton work ([`Store::acquire_lease`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lease {
    /// The caller holds it until `expires`; `token` is its fencing token
    /// (the same while it keeps renewing in time, higher after a lapse).
    Held { token: i64, expires: OffsetDateTime },
    /// Another holder has it until `expires`.
    HeldBy { holder: String, token: i64, expires: OffsetDateTime },
}

/// What a fenced store's writes must still hold ([`Store::fenced`]): the
/// lease `lease` with `token`, for `holder`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fence {
    pub lease: String,
    pub holder: String,
    pub token: i64,
}

/// Where the store's change counters stand (see [`Store::heads`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Heads {
    /// The newest audit event's sequence number: moves with every change
    /// of specs, tokens, secrets and deployments.
    pub audit: i64,
    /// Moves with every write to applied resources (a database trigger
    /// counts them in the writing transaction); applies record node
    /// outcomes without an audit event each.
    pub applied: i64,
}

#[async_trait]
pub trait Store: SecretStore + ReleaseStore + OperationStore + Send + Sync {
    /// The current generation of every live (not deleted) object, optionally
    /// of one kind, ordered by kind and name.
    async fn list(&self, kind: Option<&str>) -> Result<Vec<Record>, StoreError>;
    /// Up to `limit` live objects of one kind whose names sort after
    /// `after`, by name: listings page through the store, not memory.
    async fn list_page(&self, kind: &str, after: &str, limit: i64) -> Result<Vec<Record>, StoreError>;
    /// The current generation of an object, tombstones included (so callers
    /// know which generation to build on).
    async fn get(&self, kind: &str, name: &str) -> Result<Option<Record>, StoreError>;
    /// Every generation of an object, oldest first.
    async fn history(&self, kind: &str, name: &str) -> Result<Vec<Record>, StoreError>;
    /// Applies all changes in one transaction, or none; each change is
    /// recorded in the audit log (`spec.put` / `spec.delete`) in the same
    /// transaction.
    async fn commit(&self, changes: &[Change]) -> Result<(), StoreError>;
    /// Appends one event to the audit log's hash chain.
    async fn append_audit(&self, event: &NewAuditEvent) -> Result<AuditEvent, StoreError>;
    /// The audit head — the sequence number of the newest audit event (0:
    /// none) — and the applied-resources clock, read together (one query).
    /// Every change of specs and tokens appends an event in its own
    /// transaction, and every change of applied resources moves the clock,
    /// so callers cache what they derive from them until a head moves.
    async fn heads(&self) -> Result<Heads, StoreError>;
    /// Events matching the filter, oldest first.
    async fn audit_events(&self, filter: &AuditFilter) -> Result<Vec<AuditEvent>, StoreError>;
    /// Checks the whole audit chain, in pages, and names the first event
    /// that breaks it.
    async fn verify_audit(&self) -> Result<Verification, StoreError>;
    /// Records a new API token and its audit event, in one transaction.
    async fn create_token(&self, token: &ApiToken, event: &NewAuditEvent) -> Result<(), StoreError>;
    /// The token with this SHA-256, revoked and expired ones included.
    async fn token_by_hash(&self, hash: &str) -> Result<Option<ApiToken>, StoreError>;
    /// Every token ever issued, oldest first.
    async fn list_tokens(&self) -> Result<Vec<ApiToken>, StoreError>;
    /// Marks a token revoked and records the event, in one transaction;
    /// `false` (and nothing recorded) when no live token has that id.
    async fn revoke_token(&self, id: &str, event: &NewAuditEvent) -> Result<bool, StoreError>;
    /// Makes a live token expire at `at` (only ever sooner) and records the
    /// event, in one transaction; `false` (nothing recorded) when no live
    /// token with that id would expire later than `at`.
    async fn expire_token(&self, id: &str, at: OffsetDateTime, event: &NewAuditEvent) -> Result<bool, StoreError>;
    /// Every node applied in an environment, ordered by id.
    async fn applied_nodes(&self, environment: &str) -> Result<Vec<AppliedNode>, StoreError>;
    /// Records (inserts or replaces) one applied node.
    async fn put_applied_node(&self, environment: &str, node: &AppliedNode) -> Result<(), StoreError> {
        self.put_applied_nodes(environment, std::slice::from_ref(node)).await
    }
    /// Records (inserts or replaces) applied nodes in one transaction: all or none.
    async fn put_applied_nodes(&self, environment: &str, nodes: &[AppliedNode]) -> Result<(), StoreError>;
    /// Forgets a node whose resource was deleted.
    async fn delete_applied_node(&self, environment: &str, node_id: &str) -> Result<(), StoreError>;
    /// Takes the environment's lock for `holder` until `now + ttl`, unless
    /// someone else holds an unexpired one. Taking it again as the same
    /// holder extends it (a heartbeat).
    async fn acquire_lock(
        &self,
        environment: &str,
        holder: &str,
        now: OffsetDateTime,
        ttl: time::Duration,
    ) -> Result<Lock, StoreError>;
    /// Releases the lock if `holder` has it.
    async fn release_lock(&self, environment: &str, holder: &str) -> Result<(), StoreError>;
    /// Takes the lease `name` for `holder` until `now + ttl` when it is
    /// free or lapsed (a new fencing token), or renews it when `holder`
    /// has it and it has not lapsed (the same token); else says who has it.
    /// Holders compare `now` with each other's expiry: their clocks must
    /// agree to well within `ttl` (NTP).
    async fn acquire_lease(
        &self,
        name: &str,
        holder: &str,
        now: OffsetDateTime,
        ttl: time::Duration,
    ) -> Result<Lease, StoreError>;
    /// Lets the lease go at once if `holder` has it (a clean shutdown), so
    /// another replica need not wait for it to lapse.
    async fn release_lease(&self, name: &str, holder: &str) -> Result<(), StoreError>;
    /// The runner (machine) a local-provider environment is pinned to, and
    /// since when; `None`: not pinned.
    async fn runner_of(&self, environment: &str) -> Result<Option<(String, OffsetDateTime)>, StoreError>;
    /// Pins `environment` to `runner` unless it is pinned already (in one
    /// statement: two first applies on two machines agree); returns the
    /// runner it is pinned to.
    async fn claim_runner(&self, environment: &str, runner: &str, now: OffsetDateTime) -> Result<String, StoreError>;
    /// Pins `environment` to `runner` whatever it was pinned to (a
    /// take-over), or unpins it (`None`: destroyed).
    async fn set_runner(&self, environment: &str, runner: Option<&str>, now: OffsetDateTime) -> Result<(), StoreError>;
    /// Wakes every process listening on `channel` ([`Store::wakes`]):
    /// PostgreSQL's `NOTIFY`, delivered when the calling transaction (here:
    /// none) commits; nothing on SQLite, which serves one machine.
    async fn wake(&self, channel: &str) -> Result<(), StoreError>;
    /// Wake-ups on `channel` from any process sharing this store
    /// (PostgreSQL's `LISTEN` on a connection of its own, reconnected when
    /// lost — a loss also counts as a wake-up, since one may have been
    /// missed); `None` on SQLite. Wake-ups carry nothing: a listener looks
    /// in the store for what changed, and still polls in case one is lost.
    async fn wakes(&self, channel: &str) -> Result<Option<tokio::sync::mpsc::Receiver<()>>, StoreError>;
    /// This store, with every write transaction first checking (in the
    /// same transaction) that `fence` still holds: once another holder took
    /// the lease, writes fail with [`StoreError::Fenced`] and change nothing.
    fn fenced(&self, fence: Fence) -> std::sync::Arc<dyn Store>;
    /// Waits for connections to finish and closes them (SQLite then folds
    /// its write-ahead log back into the database file).
    async fn close(&self);
}
