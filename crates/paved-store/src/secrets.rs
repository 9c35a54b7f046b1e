//! Sealed secrets, data keys and signing keys as stored.
//!
//! The store only ever holds ciphertext and wrapped keys (hex text); sealing
//! and opening happen in `paved-secrets`. Writes that rotation performs are
//! conditional on what they replace (`from_kek`, `from_key`), so a rotation
//! interrupted at any point and run again never re-seals twice or loses a
//! value.

use crate::sql::{SqlStore, parse_time, timestamp};
use crate::{NewAuditEvent, StoreError};
use async_trait::async_trait;
use sqlx::Row;
use sqlx::any::AnyRow;
use time::OffsetDateTime;

/// A data key, wrapped by the key-encryption key `kek_id`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredDataKey {
    pub id: String,
    pub environment: String,
    pub kek_id: String,
    pub nonce: String,
    pub wrapped: String,
    pub created_at: OffsetDateTime,
    /// Set when a newer key took over; the key still opens what it sealed.
    pub retired_at: Option<OffsetDateTime>,
}

/// One version of a secret, sealed with the data key `key_id`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredSecret {
    pub environment: String,
    /// `""` for a secret of the whole environment.
    pub service: String,
    pub name: String,
    pub version: i64,
    pub key_id: String,
    pub nonce: String,
    pub ciphertext: String,
    /// A deletion: a version without a value.
    pub deleted: bool,
    pub created_at: OffsetDateTime,
    pub created_by: String,
}

/// An OIDC signing key: the private half wrapped by a KEK.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredSigningKey {
    pub kid: String,
    pub algorithm: String,
    pub kek_id: String,
    pub nonce: String,
    pub wrapped: String,
    /// The public half, as a JWK (JSON text).
    pub public_jwk: String,
    /// Published (in the JWKS) from then on.
    pub created_at: OffsetDateTime,
    /// Signs tokens from then on.
    pub activate_at: OffsetDateTime,
    /// Signs no more tokens from then on.
    pub rotate_at: OffsetDateTime,
    /// Leaves the JWKS then: every token it signed has expired.
    pub publish_until: OffsetDateTime,
}

/// A key wrapped again, by another KEK.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rewrapped {
    pub kek_id: String,
    pub nonce: String,
    pub wrapped: String,
}

#[async_trait]
pub trait SecretStore: Send + Sync {
    /// Data keys, of one environment or all, oldest first per environment.
    async fn data_keys(&self, environment: Option<&str>) -> Result<Vec<StoredDataKey>, StoreError>;
    /// Adds a data key and retires the environment's other keys, in one transaction.
    async fn add_data_key(&self, key: &StoredDataKey) -> Result<(), StoreError>;
    /// Replaces the wrapping of a data key, if it is still wrapped by `from_kek`.
    async fn rewrap_data_key(&self, id: &str, from_kek: &str, to: &Rewrapped) -> Result<bool, StoreError>;
    /// Deletes a retired data key that no stored value uses any more.
    async fn delete_unused_data_key(&self, id: &str) -> Result<bool, StoreError>;
    /// Records a new version and its audit event in one transaction; a
    /// version already taken is a [`StoreError::Conflict`].
    async fn add_secret_version(&self, secret: &StoredSecret, event: &NewAuditEvent) -> Result<(), StoreError>;
    /// Versions of an environment's secrets (optionally of one service's
    /// scope and one name), by service, name and version.
    async fn secret_versions(
        &self,
        environment: &str,
        service: Option<&str>,
        name: Option<&str>,
    ) -> Result<Vec<StoredSecret>, StoreError>;
    /// Up to `limit` stored values sealed with data key `key_id`.
    async fn secrets_sealed_with(&self, key_id: &str, limit: i64) -> Result<Vec<StoredSecret>, StoreError>;
    /// Stores re-sealed versions, in one transaction, each only if its row
    /// is still sealed with `from_key`; returns how many were stored.
    async fn reseal_secrets(&self, secrets: &[StoredSecret], from_key: &str) -> Result<usize, StoreError>;
    /// Every signing key, oldest first.
    async fn signing_keys(&self) -> Result<Vec<StoredSigningKey>, StoreError>;
    async fn add_signing_key(&self, key: &StoredSigningKey) -> Result<(), StoreError>;
    /// Replaces the wrapping of a signing key, if it is still wrapped by `from_kek`.
    async fn rewrap_signing_key(&self, kid: &str, from_kek: &str, to: &Rewrapped) -> Result<bool, StoreError>;
    /// Forgets signing keys no longer published at `now`.
    async fn delete_expired_signing_keys(&self, now: OffsetDateTime) -> Result<u64, StoreError>;
}

macro_rules! data_key_columns {
    () => {
        "id, environment, kek_id, nonce, wrapped, created_at, retired_at"
    };
}
macro_rules! secret_columns {
    () => {
        "environment, service, name, version, key_id, nonce, ciphertext, deleted, created_at, created_by"
    };
}
macro_rules! signing_key_columns {
    () => {
        "kid, algorithm, kek_id, nonce, wrapped, public_jwk, created_at, activate_at, rotate_at, publish_until"
    };
}

fn corrupt(what: &str, name: &str) -> impl Fn(String) -> StoreError + use<> {
    let (kind, name) = (what.to_string(), name.to_string());
    move |reason| StoreError::Corrupt { kind: kind.clone(), name: name.clone(), generation: 0, reason }
}

fn to_data_key(row: &AnyRow) -> Result<StoredDataKey, StoreError> {
    let id: String = row.try_get("id")?;
    let bad = corrupt("data key", &id);
    let retired: Option<String> = row.try_get("retired_at")?;
    Ok(StoredDataKey {
        environment: row.try_get("environment")?,
        kek_id: row.try_get("kek_id")?,
        nonce: row.try_get("nonce")?,
        wrapped: row.try_get("wrapped")?,
        created_at: parse_time(&row.try_get::<String, _>("created_at")?).map_err(&bad)?,
        retired_at: retired.map(|t| parse_time(&t)).transpose().map_err(&bad)?,
        id,
    })
}

fn to_secret(row: &AnyRow) -> Result<StoredSecret, StoreError> {
    let name: String = row.try_get("name")?;
    let bad = corrupt("secret", &name);
    Ok(StoredSecret {
        environment: row.try_get("environment")?,
        service: row.try_get("service")?,
        version: row.try_get("version")?,
        key_id: row.try_get("key_id")?,
        nonce: row.try_get("nonce")?,
        ciphertext: row.try_get("ciphertext")?,
        deleted: row.try_get::<i64, _>("deleted")? != 0,
        created_at: parse_time(&row.try_get::<String, _>("created_at")?).map_err(&bad)?,
        created_by: row.try_get("created_by")?,
        name,
    })
}

fn to_signing_key(row: &AnyRow) -> Result<StoredSigningKey, StoreError> {
    let kid: String = row.try_get("kid")?;
    let bad = corrupt("signing key", &kid);
    let time = |column: &str| -> Result<OffsetDateTime, StoreError> {
        parse_time(&row.try_get::<String, _>(column)?).map_err(&bad)
    };
    Ok(StoredSigningKey {
        algorithm: row.try_get("algorithm")?,
        kek_id: row.try_get("kek_id")?,
        nonce: row.try_get("nonce")?,
        wrapped: row.try_get("wrapped")?,
        public_jwk: row.try_get("public_jwk")?,
        created_at: time("created_at")?,
        activate_at: time("activate_at")?,
        rotate_at: time("rotate_at")?,
        publish_until: time("publish_until")?,
        kid,
    })
}

impl SqlStore {
    /// Runs a conditional re-wrap (`sql` binds new KEK id, nonce, wrapped key, id, old KEK id).
    async fn rewrap(&self, sql: &'static str, id: &str, from_kek: &str, to: &Rewrapped) -> Result<bool, StoreError> {
        let done = self
            .write(sqlx::query(sql).bind(&to.kek_id).bind(&to.nonce).bind(&to.wrapped).bind(id).bind(from_kek))
            .await?;
        Ok(done.rows_affected() == 1)
    }
}

#[async_trait]
impl SecretStore for SqlStore {
    async fn data_keys(&self, environment: Option<&str>) -> Result<Vec<StoredDataKey>, StoreError> {
        let sql = concat!(
            "SELECT ",
            data_key_columns!(),
            " FROM secret_data_keys WHERE ($1 = '' OR environment = $1) \
             ORDER BY environment, created_at, id"
        );
        let rows = sqlx::query(sql).bind(environment.unwrap_or_default()).fetch_all(self.pool()).await?;
        rows.iter().map(to_data_key).collect()
    }

    async fn add_data_key(&self, key: &StoredDataKey) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        sqlx::query("UPDATE secret_data_keys SET retired_at = $1 WHERE environment = $2 AND retired_at IS NULL")
            .bind(timestamp(key.created_at))
            .bind(&key.environment)
            .execute(&mut *tx)
            .await?;
        sqlx::query(concat!(
            "INSERT INTO secret_data_keys (",
            data_key_columns!(),
            ") VALUES ($1, $2, $3, $4, $5, $6, NULL)"
        ))
        .bind(&key.id)
        .bind(&key.environment)
        .bind(&key.kek_id)
        .bind(&key.nonce)
        .bind(&key.wrapped)
        .bind(timestamp(key.created_at))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn rewrap_data_key(&self, id: &str, from_kek: &str, to: &Rewrapped) -> Result<bool, StoreError> {
        let sql = "UPDATE secret_data_keys SET kek_id = $1, nonce = $2, wrapped = $3 WHERE id = $4 AND kek_id = $5";
        self.rewrap(sql, id, from_kek, to).await
    }

    async fn delete_unused_data_key(&self, id: &str) -> Result<bool, StoreError> {
        let done = self
            .write(
                sqlx::query(
                    "DELETE FROM secret_data_keys WHERE id = $1 AND retired_at IS NOT NULL \
             AND NOT EXISTS (SELECT 1 FROM secret_versions WHERE key_id = $1)",
                )
                .bind(id),
            )
            .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn add_secret_version(&self, s: &StoredSecret, event: &NewAuditEvent) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        self.lock_audit_chain(&mut tx).await?;
        let inserted = sqlx::query(concat!(
            "INSERT INTO secret_versions (",
            secret_columns!(),
            ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
        ))
        .bind(&s.environment)
        .bind(&s.service)
        .bind(&s.name)
        .bind(s.version)
        .bind(&s.key_id)
        .bind(&s.nonce)
        .bind(&s.ciphertext)
        .bind(i64::from(s.deleted))
        .bind(timestamp(s.created_at))
        .bind(&s.created_by)
        .execute(&mut *tx)
        .await;
        if let Err(e) = inserted {
            return Err(if crate::sql::is_conflict(&e) {
                StoreError::Conflict {
                    kind: "secret".into(),
                    name: format!("{}/{}", s.environment, s.name),
                    expected: Some(s.version - 1),
                }
            } else {
                e.into()
            });
        }
        SqlStore::append_in(&mut tx, event).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn secret_versions(
        &self,
        environment: &str,
        service: Option<&str>,
        name: Option<&str>,
    ) -> Result<Vec<StoredSecret>, StoreError> {
        let sql = concat!(
            "SELECT ",
            secret_columns!(),
            " FROM secret_versions WHERE environment = $1 \
             AND ($2 = '*' OR service = $2) AND ($3 = '' OR name = $3) ORDER BY service, name, version"
        );
        let rows = sqlx::query(sql)
            .bind(environment)
            .bind(service.unwrap_or("*"))
            .bind(name.unwrap_or_default())
            .fetch_all(self.pool())
            .await?;
        rows.iter().map(to_secret).collect()
    }

    async fn secrets_sealed_with(&self, key_id: &str, limit: i64) -> Result<Vec<StoredSecret>, StoreError> {
        let sql = concat!(
            "SELECT ",
            secret_columns!(),
            " FROM secret_versions WHERE key_id = $1 ORDER BY service, name, version LIMIT $2"
        );
        let rows = sqlx::query(sql).bind(key_id).bind(limit).fetch_all(self.pool()).await?;
        rows.iter().map(to_secret).collect()
    }

    async fn reseal_secrets(&self, secrets: &[StoredSecret], from_key: &str) -> Result<usize, StoreError> {
        let mut tx = self.begin().await?;
        let mut stored = 0;
        for s in secrets {
            let done = sqlx::query(
                "UPDATE secret_versions SET key_id = $1, nonce = $2, ciphertext = $3 \
                 WHERE environment = $4 AND service = $5 AND name = $6 AND version = $7 AND key_id = $8",
            )
            .bind(&s.key_id)
            .bind(&s.nonce)
            .bind(&s.ciphertext)
            .bind(&s.environment)
            .bind(&s.service)
            .bind(&s.name)
            .bind(s.version)
            .bind(from_key)
            .execute(&mut *tx)
            .await?;
            stored += done.rows_affected() as usize;
        }
        tx.commit().await?;
        Ok(stored)
    }

    async fn signing_keys(&self) -> Result<Vec<StoredSigningKey>, StoreError> {
        let sql = concat!("SELECT ", signing_key_columns!(), " FROM signing_keys ORDER BY created_at, kid");
        let rows = sqlx::query(sql).fetch_all(self.pool()).await?;
        rows.iter().map(to_signing_key).collect()
    }

    async fn add_signing_key(&self, k: &StoredSigningKey) -> Result<(), StoreError> {
        self.write(
            sqlx::query(concat!(
                "INSERT INTO signing_keys (",
                signing_key_columns!(),
                ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
            ))
            .bind(&k.kid)
            .bind(&k.algorithm)
            .bind(&k.kek_id)
            .bind(&k.nonce)
            .bind(&k.wrapped)
            .bind(&k.public_jwk)
            .bind(timestamp(k.created_at))
            .bind(timestamp(k.activate_at))
            .bind(timestamp(k.rotate_at))
            .bind(timestamp(k.publish_until)),
        )
        .await?;
        Ok(())
    }

    async fn rewrap_signing_key(&self, kid: &str, from_kek: &str, to: &Rewrapped) -> Result<bool, StoreError> {
        let sql = "UPDATE signing_keys SET kek_id = $1, nonce = $2, wrapped = $3 WHERE kid = $4 AND kek_id = $5";
        self.rewrap(sql, kid, from_kek, to).await
    }

    async fn delete_expired_signing_keys(&self, now: OffsetDateTime) -> Result<u64, StoreError> {
        let done =
            self.write(sqlx::query("DELETE FROM signing_keys WHERE publish_until <= $1").bind(timestamp(now))).await?;
        Ok(done.rows_affected())
    }
}
