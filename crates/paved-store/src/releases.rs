//! Artifacts and deployments as stored.
//!
//! An artifact is recorded once per digest and never changes; a tag names
//! one digest of a service forever. Deployments are numbered per service and
//! environment, carry the request id that created them (a retried request
//! finds its deployment instead of making a second one) and are never
//! deleted: only their status moves forward.
//!
//! Every write appends its audit event in the same transaction.

use crate::sql::{SqlStore, timestamp};
use crate::{NewAuditEvent, StoreError};
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use sqlx::Row;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// A build's output, named by the digest of its content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Artifact {
    /// `sha256:…`.
    pub digest: String,
    pub service: String,
    pub commit: Option<String>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub commit_time: Option<OffsetDateTime>,
    pub branch: Option<String>,
    /// Who or what built it (`ci`, `user:grace`).
    pub builder: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// Tags naming this digest, sorted.
    #[serde(default)]
    pub tags: Vec<String>,
}

/// What recording an artifact did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArtifactPut {
    Created,
    /// The digest was recorded before; nothing changed (tags it lacked were added).
    Existing,
    /// A tag already names another digest of the service: nothing was written.
    TagTaken {
        tag: String,
        digest: String,
    },
}

/// Where a deployment is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DeploymentStatus {
    Pending,
    RollingOut,
    Healthy,
    Failed,
    RolledBack,
    /// A healthy deployment a later one replaced.
    Superseded,
}

impl DeploymentStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            DeploymentStatus::Pending => "pending",
            DeploymentStatus::RollingOut => "rolling-out",
            DeploymentStatus::Healthy => "healthy",
            DeploymentStatus::Failed => "failed",
            DeploymentStatus::RolledBack => "rolled-back",
            DeploymentStatus::Superseded => "superseded",
        }
    }

    pub fn parse(s: &str) -> Option<DeploymentStatus> {
        [
            DeploymentStatus::Pending,
            DeploymentStatus::RollingOut,
            DeploymentStatus::Healthy,
            DeploymentStatus::Failed,
            DeploymentStatus::RolledBack,
            DeploymentStatus::Superseded,
        ]
        .into_iter()
        .find(|d| d.as_str() == s)
    }

    /// Whether the deployment still says what should run (it did not fail).
    pub fn is_wanted(self) -> bool {
        matches!(
            self,
            DeploymentStatus::Pending
                | DeploymentStatus::RollingOut
                | DeploymentStatus::Healthy
                | DeploymentStatus::Superseded
        )
    }

    /// Whether the deployment's artifact ran healthy here.
    pub fn was_healthy(self) -> bool {
        matches!(self, DeploymentStatus::Healthy | DeploymentStatus::Superseded)
    }
}

impl std::fmt::Display for DeploymentStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A deployment about to be recorded.
#[derive(Debug, Clone, PartialEq)]
pub struct NewDeployment {
    pub environment: String,
    pub service: String,
    pub artifact: String,
    pub strategy: String,
    pub soak_ms: i64,
    pub ready_timeout_ms: i64,
    pub actor: String,
    pub request_id: String,
    pub origin: Option<String>,
    pub at: OffsetDateTime,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Deployment {
    pub environment: String,
    pub service: String,
    /// 1, 2, … per service and environment.
    pub number: i64,
    pub artifact: String,
    pub strategy: String,
    pub soak_ms: i64,
    /// How long the new version may take to become ready.
    pub ready_timeout_ms: i64,
    pub status: DeploymentStatus,
    /// Why it failed or was rolled back; what it rolled back to.
    pub reason: Option<String>,
    pub actor: String,
    pub request_id: String,
    pub origin: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
    /// When it became healthy, failed or was rolled back.
    #[serde(with = "time::serde::rfc3339::option")]
    pub finished_at: Option<OffsetDateTime>,
}

/// Which deployments to list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeploymentFilter {
    pub environment: Option<String>,
    pub service: Option<String>,
}

/// A deployment a git push asked for, waiting for its artifact.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingDeployment {
    pub environment: String,
    pub service: String,
    pub commit: String,
    pub request_id: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

#[async_trait]
pub trait ReleaseStore: Send + Sync {
    /// Whether a webhook delivery was handled before.
    async fn delivery_seen(&self, id: &str) -> Result<bool, StoreError>;
    /// Sets the outcome of a delivery recorded (claimed) before.
    async fn finish_delivery(&self, id: &str, outcome: &str) -> Result<(), StoreError>;
    /// Records a delivery — how a handler claims it, in one atomic insert;
    /// `false` when it already was (another request has it or had it).
    async fn record_delivery(
        &self,
        id: &str,
        event: &str,
        outcome: &str,
        at: OffsetDateTime,
    ) -> Result<bool, StoreError>;
    /// Sets the deployment waiting for a service's artifact in an environment (the latest push wins).
    async fn put_pending_deployment(&self, pending: &PendingDeployment) -> Result<(), StoreError>;
    async fn pending_deployments(&self) -> Result<Vec<PendingDeployment>, StoreError>;
    /// Removes a pending deployment, if it is still the one with `request_id`.
    async fn delete_pending_deployment(&self, pending: &PendingDeployment) -> Result<(), StoreError>;
    /// Records an artifact and its tags with the audit event, all or nothing.
    async fn put_artifact(&self, artifact: &Artifact, event: &NewAuditEvent) -> Result<ArtifactPut, StoreError>;
    async fn artifact(&self, digest: &str) -> Result<Option<Artifact>, StoreError>;
    /// Artifacts, of one service or all, newest first.
    async fn artifacts(&self, service: Option<&str>) -> Result<Vec<Artifact>, StoreError>;
    /// Records a deployment numbered after the last one of its service and
    /// environment. A request id seen before returns that deployment and
    /// writes nothing (`false`).
    async fn create_deployment(
        &self,
        new: &NewDeployment,
        event: &NewAuditEvent,
    ) -> Result<(Deployment, bool), StoreError>;
    /// Moves a deployment to `status`, if it is still in one of `from`.
    async fn set_deployment_status(
        &self,
        deployment: &Deployment,
        from: &[DeploymentStatus],
        status: DeploymentStatus,
        reason: Option<&str>,
        at: OffsetDateTime,
    ) -> Result<bool, StoreError>;
    /// Deployments, by environment, service and number.
    async fn deployments(&self, filter: &DeploymentFilter) -> Result<Vec<Deployment>, StoreError>;
}

macro_rules! deployment_columns {
    () => {
        "environment, service, number, artifact, strategy, soak_ms, ready_timeout_ms, status, reason, actor, request_id, origin, \
         created_at, updated_at, finished_at"
    };
}

fn corrupt(what: &str, name: &str, reason: String) -> StoreError {
    StoreError::Corrupt { kind: what.into(), name: name.into(), generation: 0, reason }
}

fn parse_time(what: &str, name: &str, v: String) -> Result<OffsetDateTime, StoreError> {
    OffsetDateTime::parse(&v, &Rfc3339).map_err(|e| corrupt(what, name, format!("bad timestamp: {e}")))
}

fn to_deployment(row: &sqlx::any::AnyRow) -> Result<Deployment, StoreError> {
    let environment: String = row.try_get("environment")?;
    let service: String = row.try_get("service")?;
    let name = format!("{service}@{environment}");
    let time = |v: String| parse_time("deployment", &name, v);
    let status: String = row.try_get("status")?;
    Ok(Deployment {
        number: row.try_get("number")?,
        artifact: row.try_get("artifact")?,
        strategy: row.try_get("strategy")?,
        soak_ms: row.try_get("soak_ms")?,
        ready_timeout_ms: row.try_get("ready_timeout_ms")?,
        status: DeploymentStatus::parse(&status)
            .ok_or_else(|| corrupt("deployment", &name, format!("unknown status `{status}`")))?,
        reason: row.try_get("reason")?,
        actor: row.try_get("actor")?,
        request_id: row.try_get("request_id")?,
        origin: row.try_get("origin")?,
        created_at: time(row.try_get("created_at")?)?,
        updated_at: time(row.try_get("updated_at")?)?,
        finished_at: row.try_get::<Option<String>, _>("finished_at")?.map(time).transpose()?,
        environment,
        service,
    })
}

impl SqlStore {
    async fn tags_of(&self, digest: &str) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query("SELECT tag FROM artifact_tags WHERE digest = $1 ORDER BY tag")
            .bind(digest)
            .fetch_all(self.pool())
            .await?;
        rows.iter().map(|r| r.try_get("tag").map_err(StoreError::from)).collect()
    }

    async fn to_artifact(&self, row: &sqlx::any::AnyRow) -> Result<Artifact, StoreError> {
        let digest: String = row.try_get("digest")?;
        let time = |v: String| parse_time("artifact", &digest, v);
        Ok(Artifact {
            service: row.try_get("service")?,
            commit: row.try_get("git_commit")?,
            commit_time: row.try_get::<Option<String>, _>("commit_time")?.map(time).transpose()?,
            branch: row.try_get("branch")?,
            builder: row.try_get("builder")?,
            created_at: time(row.try_get("created_at")?)?,
            tags: self.tags_of(&digest).await?,
            digest,
        })
    }
}

#[async_trait]
impl ReleaseStore for SqlStore {
    async fn delivery_seen(&self, id: &str) -> Result<bool, StoreError> {
        let row =
            sqlx::query("SELECT id FROM webhook_deliveries WHERE id = $1").bind(id).fetch_optional(self.pool()).await?;
        Ok(row.is_some())
    }

    async fn record_delivery(
        &self,
        id: &str,
        event: &str,
        outcome: &str,
        at: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        let done = self
            .write(
                sqlx::query(
                    "INSERT INTO webhook_deliveries (id, event, received_at, outcome) VALUES ($1, $2, $3, $4) \
             ON CONFLICT DO NOTHING",
                )
                .bind(id)
                .bind(event)
                .bind(timestamp(at))
                .bind(outcome),
            )
            .await?
            .rows_affected();
        Ok(done == 1)
    }

    async fn finish_delivery(&self, id: &str, outcome: &str) -> Result<(), StoreError> {
        self.write(sqlx::query("UPDATE webhook_deliveries SET outcome = $2 WHERE id = $1").bind(id).bind(outcome))
            .await?;
        Ok(())
    }

    async fn put_pending_deployment(&self, p: &PendingDeployment) -> Result<(), StoreError> {
        self.write(
            sqlx::query(
                "INSERT INTO pending_deployments (environment, service, git_commit, request_id, created_at) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (environment, service) DO UPDATE SET \
             git_commit = excluded.git_commit, request_id = excluded.request_id, created_at = excluded.created_at",
            )
            .bind(&p.environment)
            .bind(&p.service)
            .bind(&p.commit)
            .bind(&p.request_id)
            .bind(timestamp(p.created_at)),
        )
        .await?;
        Ok(())
    }

    async fn pending_deployments(&self) -> Result<Vec<PendingDeployment>, StoreError> {
        let rows = sqlx::query("SELECT * FROM pending_deployments ORDER BY environment, service")
            .fetch_all(self.pool())
            .await?;
        rows.iter()
            .map(|row| {
                let environment: String = row.try_get("environment")?;
                Ok(PendingDeployment {
                    service: row.try_get("service")?,
                    commit: row.try_get("git_commit")?,
                    request_id: row.try_get("request_id")?,
                    created_at: parse_time("pending deployment", &environment, row.try_get("created_at")?)?,
                    environment,
                })
            })
            .collect()
    }

    async fn delete_pending_deployment(&self, p: &PendingDeployment) -> Result<(), StoreError> {
        self.write(
            sqlx::query("DELETE FROM pending_deployments WHERE environment = $1 AND service = $2 AND request_id = $3")
                .bind(&p.environment)
                .bind(&p.service)
                .bind(&p.request_id),
        )
        .await?;
        Ok(())
    }

    async fn put_artifact(&self, a: &Artifact, event: &NewAuditEvent) -> Result<ArtifactPut, StoreError> {
        let mut tx = self.begin().await?;
        self.lock_audit_chain(&mut tx).await?;
        for tag in &a.tags {
            let taken: Option<String> = sqlx::query("SELECT digest FROM artifact_tags WHERE service = $1 AND tag = $2")
                .bind(&a.service)
                .bind(tag)
                .fetch_optional(&mut *tx)
                .await?
                .map(|r| r.try_get("digest"))
                .transpose()?;
            if let Some(digest) = taken.filter(|d| *d != a.digest) {
                return Ok(ArtifactPut::TagTaken { tag: tag.clone(), digest });
            }
        }
        let existing = sqlx::query("SELECT digest FROM artifacts WHERE digest = $1")
            .bind(&a.digest)
            .fetch_optional(&mut *tx)
            .await?
            .is_some();
        if !existing {
            sqlx::query(
                "INSERT INTO artifacts (digest, service, git_commit, commit_time, branch, builder, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(&a.digest)
            .bind(&a.service)
            .bind(&a.commit)
            .bind(a.commit_time.map(timestamp))
            .bind(&a.branch)
            .bind(&a.builder)
            .bind(timestamp(a.created_at))
            .execute(&mut *tx)
            .await?;
        }
        let mut added = 0;
        for tag in &a.tags {
            added += sqlx::query(
                "INSERT INTO artifact_tags (service, tag, digest) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
            )
            .bind(&a.service)
            .bind(tag)
            .bind(&a.digest)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        }
        if existing && added == 0 {
            return Ok(ArtifactPut::Existing);
        }
        Self::append_in(&mut tx, event).await?;
        tx.commit().await?;
        Ok(if existing { ArtifactPut::Existing } else { ArtifactPut::Created })
    }

    async fn artifact(&self, digest: &str) -> Result<Option<Artifact>, StoreError> {
        let row =
            sqlx::query("SELECT * FROM artifacts WHERE digest = $1").bind(digest).fetch_optional(self.pool()).await?;
        match row {
            Some(row) => Ok(Some(self.to_artifact(&row).await?)),
            None => Ok(None),
        }
    }

    async fn artifacts(&self, service: Option<&str>) -> Result<Vec<Artifact>, StoreError> {
        let rows =
            sqlx::query("SELECT * FROM artifacts WHERE ($1 = '' OR service = $1) ORDER BY created_at DESC, digest")
                .bind(service.unwrap_or_default())
                .fetch_all(self.pool())
                .await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            out.push(self.to_artifact(row).await?);
        }
        Ok(out)
    }

    async fn create_deployment(
        &self,
        new: &NewDeployment,
        event: &NewAuditEvent,
    ) -> Result<(Deployment, bool), StoreError> {
        let by_request = concat!("SELECT ", deployment_columns!(), " FROM deployments WHERE request_id = $1");
        let mut tx = self.begin().await?;
        self.lock_audit_chain(&mut tx).await?;
        if let Some(row) = sqlx::query(by_request).bind(&new.request_id).fetch_optional(&mut *tx).await? {
            return Ok((to_deployment(&row)?, false));
        }
        let last: Option<i64> =
            sqlx::query("SELECT MAX(number) AS last FROM deployments WHERE environment = $1 AND service = $2")
                .bind(&new.environment)
                .bind(&new.service)
                .fetch_one(&mut *tx)
                .await?
                .try_get("last")?;
        let at = timestamp(new.at);
        sqlx::query(concat!(
            "INSERT INTO deployments (",
            deployment_columns!(),
            ") VALUES ($1, $2, $3, $4, $5, $6, $7, 'pending', NULL, $8, $9, $10, $11, $11, NULL)"
        ))
        .bind(&new.environment)
        .bind(&new.service)
        .bind(last.unwrap_or(0) + 1)
        .bind(&new.artifact)
        .bind(&new.strategy)
        .bind(new.soak_ms)
        .bind(new.ready_timeout_ms)
        .bind(&new.actor)
        .bind(&new.request_id)
        .bind(&new.origin)
        .bind(&at)
        .execute(&mut *tx)
        .await?;
        let row = sqlx::query(by_request).bind(&new.request_id).fetch_one(&mut *tx).await?;
        let deployment = to_deployment(&row)?;
        let mut event = event.clone();
        event.details["number"] = serde_json::json!(deployment.number);
        Self::append_in(&mut tx, &event).await?;
        tx.commit().await?;
        Ok((deployment, true))
    }

    async fn set_deployment_status(
        &self,
        d: &Deployment,
        from: &[DeploymentStatus],
        status: DeploymentStatus,
        reason: Option<&str>,
        at: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        let finished =
            matches!(status, DeploymentStatus::Healthy | DeploymentStatus::Failed | DeploymentStatus::RolledBack);
        if from.is_empty() {
            return Ok(false);
        }
        // Six slots, one per status; unused ones repeat the first.
        let from: Vec<&str> = (0..6).map(|i| from.get(i).unwrap_or(&from[0]).as_str()).collect();
        let sql = "UPDATE deployments SET status = $1, reason = COALESCE($2, reason), updated_at = $3, \
             finished_at = CASE WHEN $4 = 1 THEN $3 ELSE finished_at END \
             WHERE environment = $5 AND service = $6 AND number = $7 AND status IN ($8, $9, $10, $11, $12, $13)";
        let mut query = sqlx::query(sql)
            .bind(status.as_str())
            .bind(reason)
            .bind(timestamp(at))
            .bind(i64::from(finished))
            .bind(&d.environment)
            .bind(&d.service)
            .bind(d.number);
        for s in from {
            query = query.bind(s);
        }
        let done = self.write(query).await?.rows_affected();
        Ok(done == 1)
    }

    async fn deployments(&self, filter: &DeploymentFilter) -> Result<Vec<Deployment>, StoreError> {
        let sql = concat!(
            "SELECT ",
            deployment_columns!(),
            " FROM deployments WHERE ($1 = '' OR environment = $1) AND ($2 = '' OR service = $2) \
             ORDER BY environment, service, number"
        );
        let rows = sqlx::query(sql)
            .bind(filter.environment.as_deref().unwrap_or_default())
            .bind(filter.service.as_deref().unwrap_or_default())
            .fetch_all(self.pool())
            .await?;
        rows.iter().map(to_deployment).collect()
    }
}
