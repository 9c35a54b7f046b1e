//! [`Store`] over SQLite and PostgreSQL with sqlx's `Any` driver.

use crate::audit::{
    self, AuditEvent, AuditFilter, AuditOutcome, NewAuditEvent, PackedEvents, StoredEvent, Verification,
};
use crate::{
    ApiToken, AppliedNode, Change, Fence, Heads, Lease, Lock, Operation, Record, RequestContext, Store, StoreError,
};
use async_trait::async_trait;
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::migrate::Migrator;
use sqlx::{AnyPool, Row};
use std::sync::Arc;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("./migrations/postgres");

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Backend {
    Sqlite,
    Postgres,
}

#[derive(Debug, Clone)]
pub struct SqlStore {
    pool: AnyPool,
    backend: Backend,
    /// Where the pool connects: PostgreSQL's binary `COPY` needs a native connection.
    url: String,
    /// SQLite's file: `verify_audit` reads it on a connection of its own.
    location: Option<std::path::PathBuf>,
    /// The lease every write transaction checks first ([`Store::fenced`]).
    fence: Option<Arc<Fence>>,
}

const LIST: &str = "SELECT g.kind, g.name, g.generation, g.content_hash, g.spec, g.deleted, g.actor, g.source, g.created_at \
     FROM objects o JOIN generations g ON g.kind = o.kind AND g.name = o.name AND g.generation = o.generation \
     WHERE o.deleted = $1 AND ($2 = '' OR o.kind = $2) ORDER BY o.kind, o.name";
/// One kind's live objects by name, after a name (index range on `objects`).
const LIST_KIND_PAGE: &str = "SELECT g.kind, g.name, g.generation, g.content_hash, g.spec, g.deleted, g.actor, g.source, g.created_at \
     FROM objects o JOIN generations g ON g.kind = o.kind AND g.name = o.name AND g.generation = o.generation \
     WHERE o.kind = $1 AND o.name > $2 AND o.deleted = 0 ORDER BY o.name LIMIT $3";
const GET: &str = "SELECT kind, name, generation, content_hash, spec, deleted, actor, source, created_at \
     FROM generations WHERE kind = $1 AND name = $2 \
     AND generation = (SELECT generation FROM objects WHERE kind = $1 AND name = $2)";
const HISTORY: &str = "SELECT kind, name, generation, content_hash, spec, deleted, actor, source, created_at \
     FROM generations WHERE kind = $1 AND name = $2 ORDER BY generation";

/// Limits PostgreSQL enforces on each of the store's sessions, so that a
/// replica cut off from the database in the middle of a transaction does not
/// keep its locks (the audit chain's table lock, the lease row's share lock:
/// every replica's audited writes and a takeover wait on them) until TCP
/// gives up on the lost peer, about 15 minutes on Linux. The server ends a
/// session that sits idle inside a transaction, or whose sent data goes
/// unacknowledged, for 5 s; the store's own transactions never pause
/// between statements. A setting named in the state URL (`options=-c …` or
/// `options[name]=…`) is left as the URL says.
/// <https://www.postgresql.org/docs/current/runtime-config-client.html#GUC-IDLE-IN-TRANSACTION-SESSION-TIMEOUT>,
/// <https://www.postgresql.org/docs/current/runtime-config-connection.html#GUC-TCP-USER-TIMEOUT>
const PG_SESSION_LIMITS: &[(&str, &str)] =
    &[("idle_in_transaction_session_timeout", "5s"), ("tcp_user_timeout", "5000")]; // (milliseconds, as SHOW says)

impl SqlStore {
    /// Opens (and migrates) the store at `url`: `sqlite://PATH` (the file and
    /// its directory are created) or `postgres://…`.
    pub async fn open(url: &str) -> Result<SqlStore, StoreError> {
        sqlx::any::install_default_drivers();
        let mut location = None;
        let (backend, connect_url) = if let Some(path) = url.strip_prefix("sqlite://") {
            if let Some(dir) = std::path::Path::new(path).parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir)
                    .map_err(|e| StoreError::Open { url: redacted(url), source: sqlx::Error::Io(e) })?;
            }
            location = Some(std::path::PathBuf::from(path));
            (Backend::Sqlite, format!("sqlite://{path}?mode=rwc"))
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            (Backend::Postgres, url.to_string())
        } else {
            return Err(StoreError::BadUrl(url.to_string()));
        };
        // A CLI should say quickly that the server is unreachable, not wait 30 s.
        let mut options = AnyPoolOptions::new()
            .max_connections(if backend == Backend::Sqlite { 4 } else { 8 })
            .acquire_timeout(std::time::Duration::from_secs(5));
        if backend == Backend::Sqlite {
            options = options.after_connect(|conn, _| {
                Box::pin(async move {
                    sqlx::query("PRAGMA busy_timeout = 10000").execute(&mut *conn).await?;
                    sqlx::query("PRAGMA foreign_keys = ON").execute(&mut *conn).await?;
                    Ok(())
                })
            });
        } else {
            let settings: Vec<String> = PG_SESSION_LIMITS
                .iter()
                .filter(|(name, _)| !url.contains(name))
                .map(|(name, value)| format!("SET {name} = '{value}'"))
                .collect();
            options = options.after_connect(move |conn, _| {
                let settings = settings.clone();
                Box::pin(async move {
                    for set in &settings {
                        // Names and values are the constants of PG_SESSION_LIMITS.
                        sqlx::query(sqlx::AssertSqlSafe(set.clone())).execute(&mut *conn).await?;
                    }
                    Ok(())
                })
            });
        }
        let pool =
            options.connect(&connect_url).await.map_err(|e| StoreError::Open { url: redacted(url), source: e })?;
        if backend == Backend::Sqlite {
            sqlx::query("PRAGMA journal_mode = WAL").execute(&pool).await?;
        }
        let known = match backend {
            Backend::Sqlite => &SQLITE_MIGRATIONS,
            Backend::Postgres => &POSTGRES_MIGRATIONS,
        };
        // Migrations a newer paved applied are not an error in themselves
        // (sqlx's default): `store_compat` says whether this release may
        // still use the schema. On PostgreSQL sqlx holds an advisory lock
        // while it migrates, so replicas starting together migrate once.
        let mut migrator = Migrator { migrations: known.migrations.clone(), ..Migrator::DEFAULT };
        #[cfg(feature = "testing")]
        crate::testing::as_next_release(&mut migrator);
        migrator.set_ignore_missing(true);
        migrator.run(&pool).await?;
        let store = SqlStore { pool, backend, url: connect_url, location, fence: None };
        store.check_compatible(url, migrator.iter().map(|m| m.version).max().unwrap_or(0)).await?;
        Ok(store)
    }

    /// Refuses a database a newer paved changed in a way this release
    /// cannot work with (`store_compat.min_reader` above the newest
    /// migration it knows); a newer schema that only added keeps serving.
    async fn check_compatible(&self, url: &str, known: i64) -> Result<(), StoreError> {
        let row = sqlx::query(
            "SELECT (SELECT min_reader FROM store_compat WHERE id = 1) AS needs, \
             (SELECT MAX(version) FROM _sqlx_migrations) AS applied",
        )
        .fetch_one(&self.pool)
        .await?;
        let (needs, applied): (i64, i64) = (row.try_get("needs")?, row.try_get("applied")?);
        if needs > known {
            return Err(StoreError::TooNew { url: redacted(url), applied, needs, known });
        }
        Ok(())
    }
}

/// `url` without its password, for messages (a state URL may carry one).
fn redacted(url: &str) -> String {
    let Some(start) = url.find("://").map(|i| i + 3) else { return url.to_string() };
    // The authority ends at the path or the query; credentials end at its last `@`.
    let end = url[start..].find(['/', '?']).map_or(url.len(), |i| start + i);
    match url[start..end].rfind('@').map(|i| start + i) {
        Some(at) => match url[start..at].split_once(':') {
            Some((user, _)) => format!("{}{user}:***{}", &url[..start], &url[at..]),
            None => url.to_string(),
        },
        None => url.to_string(),
    }
}

fn to_record(row: &AnyRow) -> Result<Record, StoreError> {
    let kind: String = row.try_get("kind")?;
    let name: String = row.try_get("name")?;
    let generation: i64 = row.try_get("generation")?;
    let corrupt = |reason: String| StoreError::Corrupt { kind: kind.clone(), name: name.clone(), generation, reason };
    let spec: Option<String> = row.try_get("spec")?;
    let spec =
        spec.map(|s| serde_json::from_str(&s)).transpose().map_err(|e| corrupt(format!("spec is not JSON: {e}")))?;
    let created: String = row.try_get("created_at")?;
    let created_at = OffsetDateTime::parse(&created, &Rfc3339).map_err(|e| corrupt(format!("bad timestamp: {e}")))?;
    Ok(Record {
        content_hash: row.try_get("content_hash")?,
        deleted: row.try_get::<i64, _>("deleted")? != 0,
        actor: row.try_get("actor")?,
        source: row.try_get("source")?,
        spec,
        created_at,
        kind,
        name,
        generation,
    })
}

/// RFC 3339 in UTC with a fixed width (nine fractional digits), so that
/// timestamps compare correctly as text in SQL on every backend.
pub(crate) fn timestamp(at: OffsetDateTime) -> String {
    let f = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:9]Z");
    at.to_offset(time::UtcOffset::UTC).format(&f).unwrap_or_default()
}

/// SQLite reports a lost race for the write lock as "database is locked";
/// to the caller that is the same as a conflicting writer.
pub(crate) fn is_conflict(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Database(db) => {
            db.is_unique_violation() || db.message().contains("database is locked") || db.message().contains("busy")
        }
        _ => false,
    }
}

/// The audit table's columns, for `concat!` (sqlx takes literal SQL only).
macro_rules! audit_columns {
    () => {
        "seq, at, actor, action, target, outcome, request_id, origin, before_digest, after_digest, details, prev_hash, hash"
    };
}

fn to_stored_event(row: &AnyRow) -> Result<StoredEvent, sqlx::Error> {
    Ok(StoredEvent {
        seq: row.try_get("seq")?,
        at: row.try_get("at")?,
        actor: row.try_get("actor")?,
        action: row.try_get("action")?,
        target: row.try_get("target")?,
        outcome: row.try_get("outcome")?,
        request_id: row.try_get("request_id")?,
        origin: row.try_get("origin")?,
        before_digest: row.try_get("before_digest")?,
        after_digest: row.try_get("after_digest")?,
        details: row.try_get("details")?,
        prev_hash: row.try_get("prev_hash")?,
        hash: row.try_get("hash")?,
    })
}

fn to_audit_event(e: StoredEvent) -> Result<AuditEvent, StoreError> {
    let corrupt = |reason: String| StoreError::CorruptAudit { seq: e.seq, reason };
    let at = OffsetDateTime::parse(&e.at, &Rfc3339).map_err(|err| corrupt(format!("bad timestamp: {err}")))?;
    let outcome = AuditOutcome::parse(&e.outcome).ok_or_else(|| corrupt(format!("unknown outcome `{}`", e.outcome)))?;
    let details = serde_json::from_str(&e.details).map_err(|err| corrupt(format!("details are not JSON: {err}")))?;
    Ok(AuditEvent {
        seq: e.seq,
        event: NewAuditEvent {
            at,
            actor: e.actor,
            action: e.action,
            target: e.target,
            outcome,
            request: RequestContext { request_id: e.request_id, origin: e.origin },
            before: e.before_digest,
            after: e.after_digest,
            details,
        },
        prev_hash: e.prev_hash,
        hash: e.hash,
    })
}

/// Parses a timestamp as [`timestamp`] writes it.
pub(crate) fn parse_time(text: &str) -> Result<OffsetDateTime, String> {
    OffsetDateTime::parse(text, &Rfc3339).map_err(|e| format!("bad timestamp `{text}`: {e}"))
}

impl SqlStore {
    pub(crate) fn pool(&self) -> &AnyPool {
        &self.pool
    }

    pub(crate) fn backend(&self) -> Backend {
        self.backend
    }

    /// Runs one writing statement: on the pool, or in a fenced store in a
    /// transaction that checks the fence first ([`Self::begin`]).
    pub(crate) async fn write(
        &self,
        q: sqlx::query::Query<'_, sqlx::Any, sqlx::any::AnyArguments>,
    ) -> Result<sqlx::any::AnyQueryResult, StoreError> {
        if self.fence.is_none() {
            return Ok(q.execute(&self.pool).await?);
        }
        let mut tx = self.begin().await?;
        let done = q.execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(done)
    }

    /// Starts a write transaction; in a fenced store its first statement
    /// checks the fence, holding the lease row (PostgreSQL: `FOR SHARE`)
    /// so a takeover waits for this transaction to end.
    pub(crate) async fn begin(&self) -> Result<sqlx::Transaction<'static, sqlx::Any>, StoreError> {
        let mut tx = self.pool.begin().await?;
        if let Some(f) = &self.fence {
            // SQLite: the write lock first (queued on busy_timeout). A read
            // first would pin a snapshot that any other writer's commit
            // makes stale, and the transaction's first write would then
            // fail at once ("database is locked") instead of waiting.
            if self.backend == Backend::Sqlite {
                sqlx::query("UPDATE leases SET name = name WHERE 0 = 1").execute(&mut *tx).await?;
            }
            let sql = match self.backend {
                Backend::Sqlite => "SELECT token FROM leases WHERE name = $1 AND holder = $2 AND token = $3",
                Backend::Postgres => {
                    "SELECT token FROM leases WHERE name = $1 AND holder = $2 AND token = $3 FOR SHARE"
                }
            };
            let held = sqlx::query(sql).bind(&f.lease).bind(&f.holder).bind(f.token).fetch_optional(&mut *tx).await?;
            if held.is_none() {
                return Err(StoreError::Fenced { lease: f.lease.clone(), holder: f.holder.clone(), token: f.token });
            }
        }
        Ok(tx)
    }

    /// Serialises writers of the audit chain for the rest of the
    /// transaction (SQLite: the database write lock; PostgreSQL: a table lock).
    pub(crate) async fn lock_audit_chain(&self, tx: &mut sqlx::Transaction<'_, sqlx::Any>) -> Result<(), sqlx::Error> {
        match self.backend {
            Backend::Sqlite => sqlx::query("UPDATE objects SET kind = kind WHERE 0 = 1").execute(&mut **tx).await?,
            Backend::Postgres => sqlx::query("LOCK TABLE audit_events IN EXCLUSIVE MODE").execute(&mut **tx).await?,
        };
        Ok(())
    }

    /// Appends an event after the chain's head, inside the caller's
    /// transaction (which holds [`Self::lock_audit_chain`]).
    pub(crate) async fn append_in(
        tx: &mut sqlx::Transaction<'_, sqlx::Any>,
        e: &NewAuditEvent,
    ) -> Result<AuditEvent, StoreError> {
        let head = sqlx::query("SELECT seq, hash FROM audit_events ORDER BY seq DESC LIMIT 1")
            .fetch_optional(&mut **tx)
            .await?;
        let (last_seq, prev_hash) = match head {
            Some(row) => (row.try_get::<i64, _>("seq")?, row.try_get::<String, _>("hash")?),
            None => (0, audit::GENESIS.to_string()),
        };
        let mut stored = StoredEvent {
            seq: last_seq + 1,
            at: timestamp(e.at),
            actor: e.actor.clone(),
            action: e.action.clone(),
            target: e.target.clone(),
            outcome: e.outcome.as_str().to_string(),
            request_id: e.request.request_id.clone(),
            origin: e.request.origin.clone(),
            before_digest: e.before.clone(),
            after_digest: e.after.clone(),
            details: e.details.to_string(),
            prev_hash: prev_hash.clone(),
            hash: String::new(),
        };
        stored.hash = stored.expected_hash(&prev_hash);
        sqlx::query(concat!(
            "INSERT INTO audit_events (",
            audit_columns!(),
            ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)"
        ))
        .bind(stored.seq)
        .bind(&stored.at)
        .bind(&stored.actor)
        .bind(&stored.action)
        .bind(&stored.target)
        .bind(&stored.outcome)
        .bind(&stored.request_id)
        .bind(&stored.origin)
        .bind(&stored.before_digest)
        .bind(&stored.after_digest)
        .bind(&stored.details)
        .bind(&stored.prev_hash)
        .bind(&stored.hash)
        .execute(&mut **tx)
        .await?;
        to_audit_event(stored)
    }
}

impl SqlStore {
    /// Runs `sql` (binding `$1` = `value`, `$2` = the token id) and, when it
    /// changed the token, records `event`, in one transaction.
    async fn change_token(
        &self,
        sql: &'static str,
        value: &str,
        id: &str,
        event: &NewAuditEvent,
    ) -> Result<bool, StoreError> {
        let mut tx = self.begin().await?;
        self.lock_audit_chain(&mut tx).await?;
        let done = sqlx::query(sql).bind(value).bind(id).execute(&mut *tx).await?.rows_affected() == 1;
        if done {
            Self::append_in(&mut tx, event).await?;
            tx.commit().await?;
        }
        Ok(done)
    }
}

/// Events read per query while verifying.
const VERIFY_PAGE: i64 = 5_000;
/// Pages read ahead of the check while verifying.
const READ_AHEAD: usize = 3;

/// SQLite: the whole chain, in seq order, read by one statement in one read
/// transaction on a connection of its own, sent on as pages of
/// [`VERIFY_PAGE`] events (on a blocking thread: it steps a million rows).
///
/// rusqlite, not the pool: sqlx decodes a 13-column row in 4.3 µs (6.6 µs
/// through `Any`), and the JSON page packing used before cost SQLite about
/// 1.3 µs per row to build; stepping the statement directly is what is left.
fn read_sqlite_audit(path: std::path::PathBuf, pages: tokio::sync::mpsc::Sender<Result<PackedEvents, String>>) {
    let read = || -> Result<(), String> {
        use rusqlite::OpenFlags;
        let conn = rusqlite::Connection::open_with_flags(
            &path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| format!("cannot open {} to read the audit log: {e}", path.display()))?;
        conn.busy_timeout(std::time::Duration::from_secs(10)).map_err(|e| e.to_string())?;
        let mut statement = conn
            .prepare(concat!("SELECT ", audit_columns!(), " FROM audit_events ORDER BY seq"))
            .map_err(|e| e.to_string())?;
        let mut rows = statement.query([]).map_err(|e| e.to_string())?;
        let mut page = PackedEvents::with_capacity(VERIFY_PAGE as usize);
        while let Some(row) = rows.next().map_err(|e| e.to_string())? {
            let seq: i64 = row.get(0).map_err(|e| format!("an event's seq: {e}"))?;
            // Borrowed from SQLite's row and copied once, into the page.
            let text = |i: usize| -> Result<Option<&str>, String> {
                match row.get_ref(i).map_err(|e| format!("event {seq}, column {i}: {e}"))? {
                    rusqlite::types::ValueRef::Null => Ok(None),
                    rusqlite::types::ValueRef::Text(t) => std::str::from_utf8(t)
                        .map(Some)
                        .map_err(|e| format!("event {seq}, column {i} is not UTF-8: {e}")),
                    other => Err(format!("event {seq}, column {i} is {:?}, not text", other.data_type())),
                }
            };
            page.push(
                seq,
                [
                    text(1)?,
                    text(2)?,
                    text(3)?,
                    text(4)?,
                    text(5)?,
                    text(6)?,
                    text(7)?,
                    text(8)?,
                    text(9)?,
                    text(10)?,
                    text(11)?,
                    text(12)?,
                ],
            )?;
            if page.len() == VERIFY_PAGE as usize {
                let full = std::mem::replace(&mut page, PackedEvents::with_capacity(VERIFY_PAGE as usize));
                if pages.blocking_send(Ok(full)).is_err() {
                    return Ok(()); // the check stopped at a break
                }
            }
        }
        if !page.is_empty() {
            let _ = pages.blocking_send(Ok(page));
        }
        Ok(())
    };
    if let Err(reason) = read() {
        let _ = pages.blocking_send(Err(reason));
    }
}

/// Checks one page of the chain from `position` (on a blocking thread: it
/// hashes thousands of events); the verification that ends at the first
/// break, or `None` and `position` moved to the page's last event.
async fn check_page(page: PackedEvents, position: &mut (i64, String)) -> Result<Option<Verification>, StoreError> {
    let last = page.get(page.len().saturating_sub(1)).map_or(position.0, |e| e.seq);
    let from = position.clone();
    let (checked, page) = tokio::task::spawn_blocking(move || (audit::verify_packed(&page, from), page))
        .await
        .map_err(|e| StoreError::CorruptAudit { seq: last, reason: e.to_string() })?;
    match checked {
        Ok(reached) => {
            *position = reached;
            Ok(None)
        }
        Err(first_break) => {
            let until = first_break.intact_until;
            let head = page.iter().find(|e| e.seq == until).map_or(position.1.clone(), |e| e.hash.to_string());
            Ok(Some(Verification { events: until, head, first_break: Some(first_break) }))
        }
    }
}

/// PostgreSQL: the whole chain, in seq order, in one binary `COPY` (see
/// [`crate::pgcopy`]), sent on as pages of [`VERIFY_PAGE`] events.
async fn copy_audit_pages(url: String, pages: tokio::sync::mpsc::Sender<Result<PackedEvents, String>>) {
    let read = async {
        use futures_util::StreamExt;
        use sqlx::Connection;
        let mut conn = sqlx::postgres::PgConnection::connect(&url).await.map_err(|e| e.to_string())?;
        let sql =
            concat!("COPY (SELECT ", audit_columns!(), " FROM audit_events ORDER BY seq) TO STDOUT (FORMAT binary)");
        let mut stream = conn.copy_out_raw(sql).await.map_err(|e| e.to_string())?;
        let mut reader = crate::pgcopy::CopyReader::default();
        let mut page = PackedEvents::with_capacity(VERIFY_PAGE as usize);
        while let Some(chunk) = stream.next().await {
            reader.push(&chunk.map_err(|e| e.to_string())?);
            while reader.next_into(&mut page)? {
                if page.len() == VERIFY_PAGE as usize {
                    let full = std::mem::replace(&mut page, PackedEvents::with_capacity(VERIFY_PAGE as usize));
                    if pages.send(Ok(full)).await.is_err() {
                        return Ok(());
                    }
                }
            }
        }
        if !reader.ended() {
            return Err("the COPY stream of the audit log ended before its end marker".to_string());
        }
        if !page.is_empty() {
            let _ = pages.send(Ok(page)).await;
        }
        Ok(())
    };
    if let Err(reason) = read.await {
        let _ = pages.send(Err(reason)).await;
    }
}

macro_rules! token_columns {
    () => {
        "id, name, subject, hash, created_at, created_by, expires_at, revoked_at"
    };
}

fn to_token(row: &AnyRow) -> Result<ApiToken, StoreError> {
    let id: String = row.try_get("id")?;
    let corrupt =
        |reason: String| StoreError::Corrupt { kind: "api token".into(), name: id.clone(), generation: 0, reason };
    let time = |v: String| OffsetDateTime::parse(&v, &Rfc3339).map_err(|e| corrupt(e.to_string()));
    let optional = |v: Option<String>| v.map(time).transpose();
    Ok(ApiToken {
        name: row.try_get("name")?,
        subject: row.try_get("subject")?,
        hash: row.try_get("hash")?,
        created_at: time(row.try_get("created_at")?)?,
        created_by: row.try_get("created_by")?,
        expires_at: optional(row.try_get("expires_at")?)?,
        revoked_at: optional(row.try_get("revoked_at")?)?,
        id: id.clone(),
    })
}

#[async_trait]
impl Store for SqlStore {
    async fn create_token(&self, token: &ApiToken, event: &NewAuditEvent) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        self.lock_audit_chain(&mut tx).await?;
        sqlx::query(concat!(
            "INSERT INTO api_tokens (",
            token_columns!(),
            ") VALUES ($1, $2, $3, $4, $5, $6, $7, NULL)"
        ))
        .bind(&token.id)
        .bind(&token.name)
        .bind(&token.subject)
        .bind(&token.hash)
        .bind(timestamp(token.created_at))
        .bind(&token.created_by)
        .bind(token.expires_at.map(timestamp))
        .execute(&mut *tx)
        .await?;
        Self::append_in(&mut tx, event).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn token_by_hash(&self, hash: &str) -> Result<Option<ApiToken>, StoreError> {
        let sql = concat!("SELECT ", token_columns!(), " FROM api_tokens WHERE hash = $1");
        let row = sqlx::query(sql).bind(hash).fetch_optional(&self.pool).await?;
        row.as_ref().map(to_token).transpose()
    }

    async fn list_tokens(&self) -> Result<Vec<ApiToken>, StoreError> {
        let sql = concat!("SELECT ", token_columns!(), " FROM api_tokens ORDER BY created_at, id");
        let rows = sqlx::query(sql).fetch_all(&self.pool).await?;
        rows.iter().map(to_token).collect()
    }

    async fn revoke_token(&self, id: &str, event: &NewAuditEvent) -> Result<bool, StoreError> {
        let sql = "UPDATE api_tokens SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL";
        self.change_token(sql, &timestamp(event.at), id, event).await
    }

    async fn expire_token(&self, id: &str, at: OffsetDateTime, event: &NewAuditEvent) -> Result<bool, StoreError> {
        let sql = "UPDATE api_tokens SET expires_at = $1 WHERE id = $2 AND revoked_at IS NULL \
                   AND (expires_at IS NULL OR expires_at > $1)";
        self.change_token(sql, &timestamp(at), id, event).await
    }

    async fn append_audit(&self, event: &NewAuditEvent) -> Result<AuditEvent, StoreError> {
        let mut tx = self.begin().await?;
        self.lock_audit_chain(&mut tx).await?;
        let recorded = Self::append_in(&mut tx, event).await?;
        tx.commit().await?;
        Ok(recorded)
    }

    async fn heads(&self) -> Result<Heads, StoreError> {
        let row = sqlx::query(
            "SELECT (SELECT COALESCE(MAX(seq), 0) FROM audit_events) AS audit, \
             (SELECT applied FROM store_clock WHERE id = 1) AS applied",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(Heads { audit: row.try_get("audit")?, applied: row.try_get("applied")? })
    }

    async fn audit_events(&self, f: &AuditFilter) -> Result<Vec<AuditEvent>, StoreError> {
        // Only the conditions asked for are in the statement (an `$n = '' OR …`
        // form would keep the planner off the actor/action/target indexes),
        // and every value is a bind parameter: the text is built from constants.
        let text = |v: &Option<String>| v.clone().filter(|s| !s.is_empty());
        let time = |v: Option<OffsetDateTime>| v.map(timestamp);
        let conditions: [(&str, Option<String>); 5] = [
            ("actor = ", text(&f.actor)),
            ("action = ", text(&f.action)),
            ("target = ", text(&f.target)),
            ("at >= ", time(f.since)),
            ("at < ", time(f.until)),
        ];
        let mut sql = format!("SELECT {} FROM audit_events WHERE seq > $1", audit_columns!());
        let mut values = vec![];
        for (condition, value) in conditions {
            if let Some(v) = value {
                values.push(v);
                sql.push_str(&format!(" AND {condition}${}", values.len() + 1));
            }
        }
        let order = if f.newest_first { "DESC" } else { "ASC" };
        sql.push_str(&format!(" ORDER BY seq {order} LIMIT ${}", values.len() + 2));
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(if f.newest_first { 0 } else { f.after_seq });
        for v in values {
            query = query.bind(v);
        }
        let rows = query.bind(if f.limit > 0 { f.limit } else { i64::MAX }).fetch_all(&self.pool).await?;
        rows.iter().map(|r| to_audit_event(to_stored_event(r)?)).collect()
    }

    async fn verify_audit(&self) -> Result<Verification, StoreError> {
        // One reader streams the whole chain in seq order (PostgreSQL: binary COPY;
        // SQLite: one statement on its own connection) while the pages before are
        // checked; a removed event shows as a gap, a moved or edited one as a hash
        // that does not fit.
        let mut position = (0_i64, audit::GENESIS.to_string());
        let (pages, mut incoming) = tokio::sync::mpsc::channel(READ_AHEAD);
        let reader = match (&self.location, self.backend) {
            (Some(path), Backend::Sqlite) => {
                let path = path.clone();
                tokio::task::spawn_blocking(move || read_sqlite_audit(path, pages))
            }
            _ => tokio::spawn(copy_audit_pages(self.url.clone(), pages)),
        };
        while let Some(page) = incoming.recv().await {
            let page = page.map_err(|reason| StoreError::CorruptAudit { seq: position.0, reason })?;
            if let Some(broken) = check_page(page, &mut position).await? {
                drop(incoming); // the reader stops at its next page
                reader.abort();
                return Ok(broken);
            }
        }
        Ok(Verification { events: position.0, head: position.1, first_break: None })
    }

    async fn list(&self, kind: Option<&str>) -> Result<Vec<Record>, StoreError> {
        if let Some(kind) = kind {
            return self.list_page(kind, "", i64::MAX).await;
        }
        let rows = sqlx::query(LIST).bind(0_i64).bind("").fetch_all(&self.pool).await?;
        rows.iter().map(to_record).collect()
    }

    async fn list_page(&self, kind: &str, after: &str, limit: i64) -> Result<Vec<Record>, StoreError> {
        let rows = sqlx::query(LIST_KIND_PAGE).bind(kind).bind(after).bind(limit).fetch_all(&self.pool).await?;
        rows.iter().map(to_record).collect()
    }

    async fn get(&self, kind: &str, name: &str) -> Result<Option<Record>, StoreError> {
        let row = sqlx::query(GET).bind(kind).bind(name).fetch_optional(&self.pool).await?;
        row.as_ref().map(to_record).transpose()
    }

    async fn history(&self, kind: &str, name: &str) -> Result<Vec<Record>, StoreError> {
        let rows = sqlx::query(HISTORY).bind(kind).bind(name).fetch_all(&self.pool).await?;
        rows.iter().map(to_record).collect()
    }

    async fn close(&self) {
        self.pool.close().await;
    }

    async fn applied_nodes(&self, environment: &str) -> Result<Vec<AppliedNode>, StoreError> {
        let rows = sqlx::query(
            "SELECT node_id, node, outputs, updated_at FROM applied_nodes WHERE environment = $1 ORDER BY node_id",
        )
        .bind(environment)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                let node_id: String = row.try_get("node_id")?;
                let corrupt = |reason: String| StoreError::Corrupt {
                    kind: "applied node".into(),
                    name: node_id.clone(),
                    generation: 0,
                    reason,
                };
                let node: String = row.try_get("node")?;
                let outputs: String = row.try_get("outputs")?;
                let at: String = row.try_get("updated_at")?;
                Ok(AppliedNode {
                    node: serde_json::from_str(&node).map_err(|e| corrupt(e.to_string()))?,
                    outputs: serde_json::from_str(&outputs).map_err(|e| corrupt(e.to_string()))?,
                    updated_at: OffsetDateTime::parse(&at, &Rfc3339).map_err(|e| corrupt(e.to_string()))?,
                    node_id,
                })
            })
            .collect()
    }

    async fn put_applied_nodes(&self, environment: &str, nodes: &[AppliedNode]) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        for node in nodes {
            sqlx::query(
                "INSERT INTO applied_nodes (environment, node_id, node, outputs, updated_at) VALUES ($1, $2, $3, $4, $5) \
                 ON CONFLICT (environment, node_id) DO UPDATE SET node = excluded.node, outputs = excluded.outputs, \
                 updated_at = excluded.updated_at",
            )
            .bind(environment)
            .bind(&node.node_id)
            .bind(node.node.to_string())
            .bind(node.outputs.to_string())
            .bind(timestamp(node.updated_at))
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn delete_applied_node(&self, environment: &str, node_id: &str) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        sqlx::query("DELETE FROM applied_nodes WHERE environment = $1 AND node_id = $2")
            .bind(environment)
            .bind(node_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn acquire_lock(
        &self,
        environment: &str,
        holder: &str,
        now: OffsetDateTime,
        ttl: time::Duration,
    ) -> Result<Lock, StoreError> {
        let (now_s, expires_s) = (timestamp(now), timestamp(now + ttl));
        // A lock released between our two statements means: try again.
        for _ in 0..3 {
            // Take a free lock, an expired one, or extend our own — in one statement.
            let mut tx = self.begin().await?;
            let taken = sqlx::query(
            "INSERT INTO environment_locks (environment, holder, acquired_at, expires_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (environment) DO UPDATE SET holder = excluded.holder, acquired_at = CASE \
             WHEN environment_locks.holder = excluded.holder THEN environment_locks.acquired_at ELSE excluded.acquired_at END, \
             expires_at = excluded.expires_at \
             WHERE environment_locks.holder = excluded.holder OR environment_locks.expires_at < excluded.acquired_at",
        )
        .bind(environment)
        .bind(holder)
        .bind(&now_s)
        .bind(&expires_s)
        .execute(&mut *tx)
        .await;
            match taken {
                Ok(done) if done.rows_affected() == 1 => {
                    tx.commit().await?;
                    return Ok(Lock::Acquired);
                }
                Ok(_) => drop(tx),
                Err(e) if is_conflict(&e) => {}
                Err(e) => return Err(e.into()),
            }
            let row =
                sqlx::query("SELECT holder, acquired_at, expires_at FROM environment_locks WHERE environment = $1")
                    .bind(environment)
                    .fetch_optional(&self.pool)
                    .await?;
            let Some(row) = row else { continue };
            let parse = |s: String| OffsetDateTime::parse(&s, &Rfc3339).unwrap_or(now);
            return Ok(Lock::HeldBy {
                holder: row.try_get("holder")?,
                since: parse(row.try_get("acquired_at")?),
                expires: parse(row.try_get("expires_at")?),
            });
        }
        Err(StoreError::Conflict { kind: "environment lock".into(), name: environment.to_string(), expected: None })
    }

    async fn release_lock(&self, environment: &str, holder: &str) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        sqlx::query("DELETE FROM environment_locks WHERE environment = $1 AND holder = $2")
            .bind(environment)
            .bind(holder)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn acquire_lease(
        &self,
        name: &str,
        holder: &str,
        now: OffsetDateTime,
        ttl: time::Duration,
    ) -> Result<Lease, StoreError> {
        let (now_s, expires) = (timestamp(now), now + ttl);
        // Free, lapsed (a new token) or ours and current (renewed, same token): one statement.
        let taken = sqlx::query(
            "INSERT INTO leases (name, holder, token, expires_at) VALUES ($1, $2, 1, $4) \
             ON CONFLICT (name) DO UPDATE SET \
             token = CASE WHEN leases.holder = excluded.holder AND leases.expires_at >= $3 \
                     THEN leases.token ELSE leases.token + 1 END, \
             holder = excluded.holder, expires_at = excluded.expires_at \
             WHERE leases.holder = excluded.holder OR leases.expires_at < $3 \
             RETURNING token",
        )
        .bind(name)
        .bind(holder)
        .bind(&now_s)
        .bind(timestamp(expires))
        .fetch_optional(&self.pool)
        .await;
        // An error (SQLite busy past its timeout, say) is an error: the
        // caller's renewal failed, which is not the same as a lost lease.
        if let Some(row) = taken? {
            return Ok(Lease::Held { token: row.try_get("token")?, expires });
        }
        let row = sqlx::query("SELECT holder, token, expires_at FROM leases WHERE name = $1")
            .bind(name)
            .fetch_one(&self.pool)
            .await?;
        let expires_at: String = row.try_get("expires_at")?;
        Ok(Lease::HeldBy {
            holder: row.try_get("holder")?,
            token: row.try_get("token")?,
            expires: parse_time(&expires_at).map_err(|reason| StoreError::Corrupt {
                kind: "Lease".into(),
                name: name.to_string(),
                generation: 0,
                reason,
            })?,
        })
    }

    async fn release_lease(&self, name: &str, holder: &str) -> Result<(), StoreError> {
        // Lapsed at once, the token kept: the next holder's is higher.
        sqlx::query("UPDATE leases SET expires_at = $3 WHERE name = $1 AND holder = $2")
            .bind(name)
            .bind(holder)
            .bind(timestamp(OffsetDateTime::UNIX_EPOCH))
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn runner_of(&self, environment: &str) -> Result<Option<(String, OffsetDateTime)>, StoreError> {
        let row = sqlx::query("SELECT runner, since FROM environment_runners WHERE environment = $1")
            .bind(environment)
            .fetch_optional(&self.pool)
            .await?;
        let Some(row) = row else { return Ok(None) };
        let since: String = row.try_get("since")?;
        let since = parse_time(&since).map_err(|reason| StoreError::Corrupt {
            kind: "EnvironmentRunner".into(),
            name: environment.to_string(),
            generation: 0,
            reason,
        })?;
        Ok(Some((row.try_get("runner")?, since)))
    }

    async fn claim_runner(&self, environment: &str, runner: &str, now: OffsetDateTime) -> Result<String, StoreError> {
        self.write(
            sqlx::query(
                "INSERT INTO environment_runners (environment, runner, since) VALUES ($1, $2, $3) \
                 ON CONFLICT (environment) DO NOTHING",
            )
            .bind(environment)
            .bind(runner)
            .bind(timestamp(now)),
        )
        .await?;
        let row = sqlx::query("SELECT runner FROM environment_runners WHERE environment = $1")
            .bind(environment)
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get("runner")?)
    }

    async fn set_runner(&self, environment: &str, runner: Option<&str>, now: OffsetDateTime) -> Result<(), StoreError> {
        let q = match runner {
            Some(runner) => sqlx::query(
                "INSERT INTO environment_runners (environment, runner, since) VALUES ($1, $2, $3) \
                 ON CONFLICT (environment) DO UPDATE SET runner = excluded.runner, since = excluded.since",
            )
            .bind(environment)
            .bind(runner)
            .bind(timestamp(now)),
            None => sqlx::query("DELETE FROM environment_runners WHERE environment = $1").bind(environment),
        };
        self.write(q).await?;
        Ok(())
    }

    async fn wake(&self, channel: &str) -> Result<(), StoreError> {
        if self.backend == Backend::Postgres {
            sqlx::query("SELECT pg_notify($1, '')").bind(channel).execute(&self.pool).await?;
        }
        Ok(())
    }

    async fn wakes(&self, channel: &str) -> Result<Option<tokio::sync::mpsc::Receiver<()>>, StoreError> {
        if self.backend != Backend::Postgres {
            return Ok(None);
        }
        let mut listener = sqlx::postgres::PgListener::connect(&self.url).await?;
        listener.listen(channel).await?;
        // One pending wake-up is as good as many: a channel of one, sent without waiting.
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        tokio::spawn(async move {
            loop {
                let woke = match listener.try_recv().await {
                    // A notification, or the connection lost (and one maybe missed).
                    Ok(_) => true,
                    Err(_) => {
                        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                        false
                    }
                };
                if tx.is_closed() {
                    return;
                }
                if woke {
                    let _ = tx.try_send(());
                }
            }
        });
        Ok(Some(rx))
    }

    fn fenced(&self, fence: Fence) -> Arc<dyn Store> {
        Arc::new(SqlStore { fence: Some(Arc::new(fence)), ..self.clone() })
    }

    async fn commit(&self, changes: &[Change]) -> Result<(), StoreError> {
        if changes.is_empty() {
            return Ok(());
        }
        let conflict = |c: &Change| StoreError::Conflict {
            kind: c.kind.clone(),
            name: c.name.clone(),
            expected: c.expected_generation,
        };
        let mut tx = self.begin().await?;
        // Take the write lock now (SQLite: concurrent writers queue on busy_timeout
        // instead of failing mid-transaction), which also orders the audit chain.
        self.lock_audit_chain(&mut tx).await?;
        for c in changes {
            let before: Option<String> = sqlx::query("SELECT content_hash FROM objects WHERE kind = $1 AND name = $2")
                .bind(&c.kind)
                .bind(&c.name)
                .fetch_optional(&mut *tx)
                .await?
                .map(|row| row.try_get("content_hash"))
                .transpose()?
                .filter(|h: &String| !h.is_empty());
            let (spec, hash, deleted) = match &c.operation {
                Operation::Put { spec, content_hash } => (Some(spec.to_string()), content_hash.clone(), 0_i64),
                Operation::Delete => (None, String::new(), 1_i64),
            };
            let at = timestamp(c.at);
            let generation = match c.expected_generation {
                None => {
                    let r = sqlx::query(
                        "INSERT INTO objects (kind, name, generation, content_hash, deleted, updated_at) VALUES ($1, $2, 1, $3, $4, $5)",
                    )
                    .bind(&c.kind)
                    .bind(&c.name)
                    .bind(&hash)
                    .bind(deleted)
                    .bind(&at)
                    .execute(&mut *tx)
                    .await;
                    match r {
                        Ok(_) => 1,
                        Err(e) if is_conflict(&e) => return Err(conflict(c)),
                        Err(e) => return Err(e.into()),
                    }
                }
                Some(expected) => {
                    let r = sqlx::query(
                        "UPDATE objects SET generation = $1, content_hash = $2, deleted = $3, updated_at = $4 \
                         WHERE kind = $5 AND name = $6 AND generation = $7",
                    )
                    .bind(expected + 1)
                    .bind(&hash)
                    .bind(deleted)
                    .bind(&at)
                    .bind(&c.kind)
                    .bind(&c.name)
                    .bind(expected)
                    .execute(&mut *tx)
                    .await;
                    match r {
                        Ok(done) if done.rows_affected() == 1 => expected + 1,
                        Ok(_) => return Err(conflict(c)),
                        Err(e) if is_conflict(&e) => return Err(conflict(c)),
                        Err(e) => return Err(e.into()),
                    }
                }
            };
            let r = sqlx::query(
                "INSERT INTO generations (kind, name, generation, content_hash, spec, deleted, actor, source, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            )
            .bind(&c.kind)
            .bind(&c.name)
            .bind(generation)
            .bind(&hash)
            .bind(spec)
            .bind(deleted)
            .bind(&c.actor)
            .bind(&c.source)
            .bind(&at)
            .execute(&mut *tx)
            .await;
            match r {
                Ok(_) => {}
                Err(e) if is_conflict(&e) => return Err(conflict(c)),
                Err(e) => return Err(e.into()),
            }
            let (action, after) = match &c.operation {
                Operation::Put { content_hash, .. } => ("spec.put", Some(content_hash.clone())),
                Operation::Delete => ("spec.delete", None),
            };
            let event = NewAuditEvent {
                at: c.at,
                actor: c.actor.clone(),
                action: action.into(),
                target: format!("{}/{}", c.kind, c.name),
                outcome: AuditOutcome::Succeeded,
                request: c.request.clone(),
                before,
                after,
                details: serde_json::json!({"generation": generation, "source": c.source}),
            };
            Self::append_in(&mut tx, &event).await?;
        }
        match tx.commit().await {
            Ok(()) => Ok(()),
            Err(e) if is_conflict(&e) => Err(StoreError::Conflict {
                kind: changes[0].kind.clone(),
                name: changes[0].name.clone(),
                expected: None,
            }),
            Err(e) => Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::SqlStore;
    use crate::{AuditOutcome, NewAuditEvent, RequestContext, Store};
    use sqlx::Row;
    use std::time::{Duration, Instant};

    /// A replica cut off from PostgreSQL inside a transaction goes silent
    /// holding its locks; the server must end that session well before TCP
    /// would (about 15 minutes), or every replica's audited writes wait on it.
    #[tokio::test]
    async fn a_transaction_gone_silent_lets_go_of_the_audit_chain() {
        let url = crate::testing::postgres_url().await.unwrap_or_else(|e| panic!("{e}"));
        let store = SqlStore::open(&url).await.unwrap();
        for (name, value) in super::PG_SESSION_LIMITS {
            let row = sqlx::query(sqlx::AssertSqlSafe(format!("SHOW {name}"))).fetch_one(&store.pool).await.unwrap();
            assert_eq!(row.try_get::<String, _>(0).unwrap(), *value, "{name} on the store's sessions");
        }

        // The state URL's own setting wins; a short one here, so the test need not wait 5 s.
        let sep = if url.contains('?') { '&' } else { '?' };
        let short =
            SqlStore::open(&format!("{url}{sep}options[idle_in_transaction_session_timeout]=1s")).await.unwrap();
        let mut silent = short.begin().await.unwrap();
        short.lock_audit_chain(&mut silent).await.unwrap();
        let event = NewAuditEvent {
            at: time::OffsetDateTime::UNIX_EPOCH,
            actor: "user:ada".into(),
            action: "environment.apply".into(),
            target: "Environment/dev".into(),
            outcome: AuditOutcome::Succeeded,
            request: RequestContext { request_id: "req-1".into(), origin: "test".into() },
            before: None,
            after: None,
            details: serde_json::json!({}),
        };
        let started = Instant::now();
        tokio::time::timeout(Duration::from_secs(20), store.append_audit(&event))
            .await
            .expect("an audited write still waits on the silent transaction's lock after 20 s")
            .unwrap();
        let waited = started.elapsed();
        assert!(
            waited >= Duration::from_millis(900),
            "the write did not wait for the lock ({waited:?}): no contention"
        );
        assert!(waited < Duration::from_secs(4), "the URL's 1 s limit applies, not the default 5 s ({waited:?})");
        assert!(silent.commit().await.is_err(), "the server ended the silent transaction; its commit cannot succeed");
    }

    #[test]
    fn a_state_urls_password_is_not_shown() {
        assert_eq!(super::redacted("postgres://paved:s3cr3t@db:5432/paved"), "postgres://paved:***@db:5432/paved");
        assert_eq!(super::redacted("postgres://paved@db/paved"), "postgres://paved@db/paved");
        assert_eq!(super::redacted("sqlite:///var/lib/paved/state.db"), "sqlite:///var/lib/paved/state.db");
        assert_eq!(
            super::redacted("postgres://paved:p%40ss@db/paved?application_name=a@b"),
            "postgres://paved:***@db/paved?application_name=a@b"
        );
    }
}
