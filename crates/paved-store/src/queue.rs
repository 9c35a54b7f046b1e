//! Long operations as a durable queue shared by every replica.
//!
//! | step | how |
//! |---|---|
//! | accept | the replica that accepts a request records the operation as `running`, owned by itself ([`OperationStore::put_operation`]) |
//! | progress | the owner writes new events and the operation's current state together, which also beats its heartbeat ([`OperationStore::save_operation`]); refused (nothing written) once another replica owns it |
//! | takeover | any replica claims the oldest running operation whose heartbeat is older than a cutoff ([`OperationStore::claim_stale_operation`]; PostgreSQL: `FOR UPDATE SKIP LOCKED`, so two claimers never take one) and runs its `work` again |
//! | audit | the operation's audit event is appended once, across takeovers ([`OperationStore::audit_operation`]) |
//! | read | any replica reads the state and the events after the last one a reader saw ([`OperationStore::operation_events`]) |
//! | prune | finished operations older than a retention go with their events ([`OperationStore::prune_operations`]) |
//!
//! The store reads neither `body` nor `work`: they are the server's JSON.

use crate::sql::{SqlStore, parse_time, timestamp};
use crate::{NewAuditEvent, StoreError};
use async_trait::async_trait;
use sqlx::Row;
use time::OffsetDateTime;

/// An operation as recorded.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredOperation {
    pub id: String,
    pub environment: String,
    /// `running` until it ends (then the server's final status).
    pub status: String,
    /// The replica instance running it.
    pub owner: String,
    pub heartbeat_at: OffsetDateTime,
    /// How many replicas have run it (1, plus one per takeover).
    pub attempts: i64,
    pub started_at: OffsetDateTime,
    pub finished_at: Option<OffsetDateTime>,
    /// The operation as the API shows it.
    pub body: serde_json::Value,
    /// What a replica runs to finish it.
    pub work: serde_json::Value,
}

/// The running operations, for the queue's metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct QueueStats {
    pub running: i64,
    /// The oldest heartbeat among them: how stale the most lagging claim is.
    pub oldest_heartbeat: Option<OffsetDateTime>,
}

pub const RUNNING: &str = "running";

#[async_trait]
pub trait OperationStore: Send + Sync {
    /// Records a new operation (its status `running`, owned by `op.owner`).
    async fn put_operation(&self, op: &StoredOperation) -> Result<(), StoreError>;
    async fn get_operation(&self, id: &str) -> Result<Option<StoredOperation>, StoreError>;
    /// While `owner` owns it: appends `events` (`(seq, JSON)`; a number
    /// already stored is kept), replaces its body and status, and beats its
    /// heartbeat, in one transaction. `false`: another replica owns it now,
    /// and nothing was written.
    async fn save_operation(
        &self,
        id: &str,
        owner: &str,
        status: &str,
        body: &serde_json::Value,
        events: &[(i64, String)],
        now: OffsetDateTime,
    ) -> Result<bool, StoreError>;
    /// Up to `limit` events numbered after `after` (`-1`: from the first), in order.
    async fn operation_events(&self, id: &str, after: i64, limit: i64) -> Result<Vec<(i64, String)>, StoreError>;
    /// Claims for `owner` the oldest running operation whose heartbeat is
    /// older than `stale_before`: its owner is gone. Its heartbeat is set to
    /// `now` and its attempts counted.
    async fn claim_stale_operation(
        &self,
        owner: &str,
        now: OffsetDateTime,
        stale_before: OffsetDateTime,
    ) -> Result<Option<StoredOperation>, StoreError>;
    /// Gives up a running operation `owner` holds (a replica shutting down),
    /// so the next claim takes it at once. `false`: not held by `owner`.
    async fn release_operation(&self, id: &str, owner: &str) -> Result<bool, StoreError>;
    /// Appends the operation's audit event, in one transaction with marking
    /// it audited, unless it was audited before (by a replica that died
    /// after) or `owner` no longer owns it. `true`: appended now.
    async fn audit_operation(&self, id: &str, owner: &str, event: &NewAuditEvent) -> Result<bool, StoreError>;
    async fn queue_stats(&self) -> Result<QueueStats, StoreError>;
    /// Deletes operations that finished before `before`, with their events; how many.
    async fn prune_operations(&self, before: OffsetDateTime) -> Result<u64, StoreError>;
}

fn corrupt(id: &str, reason: String) -> StoreError {
    StoreError::Corrupt { kind: "Operation".into(), name: id.to_string(), generation: 0, reason }
}

fn to_operation(row: &sqlx::any::AnyRow) -> Result<StoredOperation, StoreError> {
    let id: String = row.try_get("id")?;
    let time = |column: &str| -> Result<OffsetDateTime, StoreError> {
        parse_time(&row.try_get::<String, _>(column)?).map_err(|r| corrupt(&id, r))
    };
    let json = |column: &str| -> Result<serde_json::Value, StoreError> {
        serde_json::from_str(&row.try_get::<String, _>(column)?)
            .map_err(|e| corrupt(&id, format!("{column} is not JSON: {e}")))
    };
    let finished: Option<String> = row.try_get("finished_at")?;
    Ok(StoredOperation {
        environment: row.try_get("environment")?,
        status: row.try_get("status")?,
        owner: row.try_get("owner")?,
        heartbeat_at: time("heartbeat_at")?,
        attempts: row.try_get("attempts")?,
        started_at: time("started_at")?,
        finished_at: finished.map(|f| parse_time(&f).map_err(|r| corrupt(&id, r))).transpose()?,
        body: json("body")?,
        work: json("work")?,
        id,
    })
}

macro_rules! operation_columns {
    () => {
        "id, environment, status, owner, heartbeat_at, attempts, started_at, finished_at, body, work"
    };
}

/// Claims the stalest running operation past the cutoff (`$3`) for `$1` at `$2`.
macro_rules! claim {
    ($pick:literal) => {
        concat!(
            "UPDATE operations SET owner = $1, heartbeat_at = $2, attempts = attempts + 1 \
             WHERE id = (SELECT id FROM operations WHERE status = 'running' AND heartbeat_at < $3 \
                         ORDER BY heartbeat_at, id LIMIT 1 ",
            $pick,
            ") AND status = 'running' AND heartbeat_at < $3 RETURNING ",
            operation_columns!()
        )
    };
}

#[async_trait]
impl OperationStore for SqlStore {
    async fn put_operation(&self, op: &StoredOperation) -> Result<(), StoreError> {
        self.write(
            sqlx::query(
                "INSERT INTO operations (id, environment, status, owner, heartbeat_at, attempts, started_at, finished_at, body, work) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
            )
            .bind(&op.id)
            .bind(&op.environment)
            .bind(&op.status)
            .bind(&op.owner)
            .bind(timestamp(op.heartbeat_at))
            .bind(op.attempts)
            .bind(timestamp(op.started_at))
            .bind(op.finished_at.map(timestamp))
            .bind(op.body.to_string())
            .bind(op.work.to_string()),
        )
        .await?;
        Ok(())
    }

    async fn get_operation(&self, id: &str) -> Result<Option<StoredOperation>, StoreError> {
        let sql = concat!("SELECT ", operation_columns!(), " FROM operations WHERE id = $1");
        let row = sqlx::query(sql).bind(id).fetch_optional(self.pool()).await?;
        row.as_ref().map(to_operation).transpose()
    }

    async fn save_operation(
        &self,
        id: &str,
        owner: &str,
        status: &str,
        body: &serde_json::Value,
        events: &[(i64, String)],
        now: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        let mut tx = self.begin().await?;
        // The update first: it takes the row's lock (SQLite: the write lock),
        // so a claim cannot slip in between the check and the events.
        let finished = (status != RUNNING).then(|| timestamp(now));
        let owned = sqlx::query(
            "UPDATE operations SET status = $3, body = $4, heartbeat_at = $5, finished_at = $6 \
             WHERE id = $1 AND owner = $2 AND status = 'running'",
        )
        .bind(id)
        .bind(owner)
        .bind(status)
        .bind(body.to_string())
        .bind(timestamp(now))
        .bind(finished)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if owned == 0 {
            return Ok(false);
        }
        for (seq, event) in events {
            sqlx::query(
                "INSERT INTO operation_events (operation, seq, body) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
            )
            .bind(id)
            .bind(seq)
            .bind(event)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    async fn operation_events(&self, id: &str, after: i64, limit: i64) -> Result<Vec<(i64, String)>, StoreError> {
        let rows = sqlx::query(
            "SELECT seq, body FROM operation_events WHERE operation = $1 AND seq > $2 ORDER BY seq LIMIT $3",
        )
        .bind(id)
        .bind(after)
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(|r| Ok((r.try_get("seq")?, r.try_get("body")?))).collect()
    }

    async fn claim_stale_operation(
        &self,
        owner: &str,
        now: OffsetDateTime,
        stale_before: OffsetDateTime,
    ) -> Result<Option<StoredOperation>, StoreError> {
        // PostgreSQL: a row another claimer holds is skipped, not waited for;
        // SQLite has one writer at a time, so the subquery and the update
        // cannot interleave with another claim.
        let sql = match self.backend() {
            crate::sql::Backend::Postgres => claim!("FOR UPDATE SKIP LOCKED"),
            crate::sql::Backend::Sqlite => claim!(""),
        };
        let row = sqlx::query(sql)
            .bind(owner)
            .bind(timestamp(now))
            .bind(timestamp(stale_before))
            .fetch_optional(self.pool())
            .await?;
        row.as_ref().map(to_operation).transpose()
    }

    async fn release_operation(&self, id: &str, owner: &str) -> Result<bool, StoreError> {
        let done = self
            .write(
                sqlx::query(
                    "UPDATE operations SET heartbeat_at = $3 WHERE id = $1 AND owner = $2 AND status = 'running'",
                )
                .bind(id)
                .bind(owner)
                .bind(timestamp(OffsetDateTime::UNIX_EPOCH)),
            )
            .await?
            .rows_affected();
        Ok(done == 1)
    }

    async fn audit_operation(&self, id: &str, owner: &str, event: &NewAuditEvent) -> Result<bool, StoreError> {
        let mut tx = self.begin().await?;
        self.lock_audit_chain(&mut tx).await?;
        let marked = sqlx::query("UPDATE operations SET audited = 1 WHERE id = $1 AND owner = $2 AND audited = 0")
            .bind(id)
            .bind(owner)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if marked == 0 {
            return Ok(false);
        }
        Self::append_in(&mut tx, event).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn queue_stats(&self) -> Result<QueueStats, StoreError> {
        let row = sqlx::query(
            "SELECT COUNT(*) AS running, MIN(heartbeat_at) AS oldest FROM operations WHERE status = 'running'",
        )
        .fetch_one(self.pool())
        .await?;
        let oldest: Option<String> = row.try_get("oldest")?;
        Ok(QueueStats {
            running: row.try_get("running")?,
            oldest_heartbeat: oldest.map(|o| parse_time(&o).map_err(|r| corrupt("queue", r))).transpose()?,
        })
    }

    async fn prune_operations(&self, before: OffsetDateTime) -> Result<u64, StoreError> {
        let mut tx = self.begin().await?;
        let cutoff = timestamp(before);
        sqlx::query(
            "DELETE FROM operation_events WHERE operation IN \
             (SELECT id FROM operations WHERE status <> 'running' AND finished_at < $1)",
        )
        .bind(&cutoff)
        .execute(&mut *tx)
        .await?;
        let gone = sqlx::query("DELETE FROM operations WHERE status <> 'running' AND finished_at < $1")
            .bind(&cutoff)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        tx.commit().await?;
        Ok(gone)
    }
}
