//! A service's own login on an RDS PostgreSQL database (`aws.db-user`):
//! its workloads connect as it, never as the master user.
//!
//! | step | how |
//! |---|---|
//! | password | made by Secrets Manager (`GetRandomPassword`, letters and digits), kept in the secret `secretName` (`paved/ENV/db/KEY/SERVICE`) under the environment's key: the secret is the truth, paved's vault holds the output |
//! | master credentials | read at each apply from the secret RDS manages (`masterSecretArn`), so they are current after RDS rotates them (every 7 days); never stored by paved. Right after the database is created RDS may not have made it yet (`ResourceNotFoundException`): retried |
//! | the login | over TLS (`sslmode=require`: RDS for PostgreSQL 15+ refuses plain connections, <https://docs.aws.amazon.com/AmazonRDS/latest/UserGuide/PostgreSQL.Concepts.General.SSL.html>) to the database: `CREATE ROLE … LOGIN`, then `ALTER ROLE … NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD …`, `CONNECT, TEMPORARY` on the database, `USAGE, CREATE` on schema `public` |
//! | observe | the secret (absent or scheduled for deletion: absent), the role (absent: absent; `login` false when it cannot log in or has more than its due) |
//! | delete | refused while the database is deletion-protected (production keeps its logins with its data); else `REASSIGN OWNED` to the master user, `DROP OWNED`, `DROP ROLE`, then the secret (7-day recovery window) |
//!
//! paved must reach the database to make the login: it runs where the
//! environment's VPC is reachable (in it, peered, or over a VPN), as
//! Terraform's and Crossplane's SQL providers do. An unreachable database
//! fails this node with that said; the rest of the environment applies.

use super::props::tags_value;
use super::{Props, Session, failed, is_code};
use async_trait::async_trait;
use paved_engine::{Driver, DriverError, Observation, Outputs, Resource};
use serde_json::{Value, json};
use sqlx::Connection;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgSslMode};
use std::sync::Arc;
use std::time::Duration;

/// How long a connection to the database may take before it counts as unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

pub(crate) struct DbUser(pub(crate) Arc<Session>);

/// `name` as a PostgreSQL identifier.
fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// `text` as a PostgreSQL string literal.
fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

impl DbUser {
    /// The login's secret: `(described, password)`; `None` when there is
    /// none or it is scheduled for deletion.
    async fn secret(
        &self,
        r: &Resource,
    ) -> Result<Option<(aws_sdk_secretsmanager::operation::describe_secret::DescribeSecretOutput, String)>, DriverError>
    {
        let name = Props::of(r).str("secretName")?;
        let described = match self.0.secrets.describe_secret().secret_id(name).send().await {
            Ok(out) if out.deleted_date().is_none() => out,
            Ok(_) => return Ok(None),
            Err(e) if is_code(&e, &["ResourceNotFoundException"]) => return Ok(None),
            Err(e) => return Err(failed("DescribeSecret", e)),
        };
        let value = self.0.secrets.get_secret_value().secret_id(name).send().await;
        let value = match value {
            Ok(v) => v,
            Err(e) if is_code(&e, &["ResourceNotFoundException"]) => return Ok(None),
            Err(e) => return Err(failed("GetSecretValue", e)),
        };
        let json: Value = value.secret_string().and_then(|s| serde_json::from_str(s).ok()).unwrap_or_default();
        Ok(json["password"].as_str().map(|p| (described, p.to_string())))
    }

    /// The login's password: the secret's, or a new one Secrets Manager
    /// makes (restoring a secret scheduled for deletion first).
    async fn ensure_secret(&self, r: &Resource) -> Result<String, DriverError> {
        if let Some((_, password)) = self.secret(r).await? {
            return Ok(password);
        }
        let p = Props::of(r);
        let sm = &self.0.secrets;
        let name = p.str("secretName")?;
        // Letters and digits only: nothing to escape in a URL or a shell.
        let password = sm
            .get_random_password()
            .password_length(32)
            .exclude_punctuation(true)
            .send()
            .await
            .map_err(|e| failed("GetRandomPassword", e))?
            .random_password()
            .map(str::to_string)
            .ok_or_else(|| DriverError::Retryable("AWS GetRandomPassword returned no password".into()))?;
        let value = json!({"username": p.str("username")?, "password": password}).to_string();
        let created = sm
            .create_secret()
            .name(name)
            .description(format!("paved: the login of {}", r.id))
            .kms_key_id(p.str("kmsKeyArn")?)
            .secret_string(&value)
            .set_tags(Some(super::secret::tags(r)))
            .send()
            .await;
        match created {
            Ok(_) => Ok(password),
            // Scheduled for deletion (a destroy a moment ago): restored, and given the new password.
            Err(e) if is_code(&e, &["InvalidRequestException", "ResourceExistsException"]) => {
                if let Err(e) = sm.restore_secret().secret_id(name).send().await
                    && !is_code(&e, &["InvalidRequestException"])
                {
                    return Err(failed("RestoreSecret", e));
                }
                sm.put_secret_value()
                    .secret_id(name)
                    .secret_string(&value)
                    .send()
                    .await
                    .map_err(|e| failed("PutSecretValue", e))?;
                Ok(password)
            }
            Err(e) => Err(failed("CreateSecret", e)),
        }
    }

    /// The master user's credentials, from the secret RDS manages.
    async fn master(&self, r: &Resource) -> Result<(String, String), DriverError> {
        let arn = Props::of(r).str("masterSecretArn")?;
        let value = match self.0.secrets.get_secret_value().secret_id(arn).send().await {
            Ok(v) => v,
            // RDS makes the secret a moment after the instance.
            Err(e) if is_code(&e, &["ResourceNotFoundException"]) => {
                return Err(DriverError::Retryable(format!("{}: RDS has not made the master secret yet", r.id)));
            }
            Err(e) => return Err(failed("GetSecretValue", e)),
        };
        let json: Value = value.secret_string().and_then(|s| serde_json::from_str(s).ok()).unwrap_or_default();
        match (json["username"].as_str(), json["password"].as_str()) {
            (Some(u), Some(p)) => Ok((u.to_string(), p.to_string())),
            _ => {
                Err(DriverError::Permanent(format!("{}: the master secret {arn} holds no username and password", r.id)))
            }
        }
    }

    /// A connection to the node's database as the master user.
    async fn connect(&self, r: &Resource) -> Result<PgConnection, DriverError> {
        let p = Props::of(r);
        let host = p.str("host")?;
        // A reference resolves to text; RDS reports a number.
        let port: u16 = match p.value("port") {
            Value::Number(n) => n.as_u64().and_then(|n| u16::try_from(n).ok()),
            Value::String(s) => s.parse().ok(),
            _ => None,
        }
        .ok_or_else(|| DriverError::Permanent(format!("{}: property `port` must be a port number", r.id)))?;
        let (user, password) = self.master(r).await?;
        let options = PgConnectOptions::new()
            .host(host)
            .port(port)
            .username(&user)
            .password(&password)
            .database(p.str("database")?)
            .ssl_mode(self.0.database_tls)
            .application_name("paved");
        let unreachable = |why: String| {
            DriverError::Retryable(format!(
                "{}: cannot reach database {host}:{port} ({why}); paved connects to the database to make the service's login: run paved where the environment's VPC is reachable (in the VPC, peered, or over a VPN)",
                r.id
            ))
        };
        match tokio::time::timeout(CONNECT_TIMEOUT, PgConnection::connect_with(&options)).await {
            Ok(Ok(c)) => Ok(c),
            Ok(Err(e)) => Err(unreachable(e.to_string())),
            Err(_) => Err(unreachable(format!("no answer in {} s", CONNECT_TIMEOUT.as_secs()))),
        }
    }

    /// `(can log in, has no more than its due)` of the role, if it exists.
    async fn role(c: &mut PgConnection, name: &str) -> Result<Option<bool>, DriverError> {
        let row: Option<(bool, bool, bool, bool)> =
            sqlx::query_as("SELECT rolcanlogin, rolsuper, rolcreatedb, rolcreaterole FROM pg_roles WHERE rolname = $1")
                .bind(name)
                .fetch_optional(&mut *c)
                .await
                .map_err(|e| DriverError::Retryable(format!("reading role {name}: {e}")))?;
        Ok(row.map(|(login, sup, db, role)| login && !sup && !db && !role))
    }

    /// Runs `sql`. Two logins granted on one database at once collide in
    /// PostgreSQL's catalog ("tuple concurrently updated"), as do
    /// serialization failures and deadlocks: those are retried, anything
    /// else is the database's refusal.
    async fn execute(c: &mut PgConnection, id: &str, sql: String) -> Result<(), DriverError> {
        match sqlx::raw_sql(sqlx::AssertSqlSafe(sql)).execute(&mut *c).await {
            Ok(_) => Ok(()),
            Err(e) => {
                let db = e.as_database_error();
                let code = db.and_then(|d| d.code()).unwrap_or_default();
                let collided = matches!(code.as_ref(), "40001" | "40P01")
                    || db.is_some_and(|d| d.message().contains("tuple concurrently updated"));
                let message = format!("{id}: the database refused: {e}");
                Err(if collided { DriverError::Retryable(message) } else { DriverError::Permanent(message) })
            }
        }
    }

    fn outputs(r: &Resource, password: &str) -> Outputs {
        let p = Props::of(r);
        ["host", "port", "name", "database", "username"]
            .iter()
            .map(|k| (k.to_string(), p.value(k).clone()))
            .chain([("password".to_string(), json!(password))])
            .collect()
    }
}

#[async_trait]
impl Driver for DbUser {
    async fn observe(&self, r: &Resource) -> Result<Observation, DriverError> {
        let Some((secret, password)) = self.secret(r).await? else { return Ok(Observation::Absent) };
        let p = Props::of(r);
        let name = p.str("username")?;
        let mut c = self.connect(r).await?;
        let Some(login) = Self::role(&mut c, name).await? else { return Ok(Observation::Absent) };
        let _ = c.close().await;
        let mut properties = r.properties.clone();
        properties["login"] = json!(login);
        properties["kmsKeyArn"] = json!(secret.kms_key_id());
        properties["tags"] = tags_value(secret.tags().iter().filter_map(|t| Some((t.key()?, t.value()?))));
        Ok(Observation::Present { properties, outputs: Self::outputs(r, &password), ready: true })
    }

    async fn create(&self, r: &Resource) -> Result<Outputs, DriverError> {
        let p = Props::of(r);
        let password = self.ensure_secret(r).await?;
        // A password made by Secrets Manager without punctuation: letters and digits only.
        if !password.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Err(DriverError::Permanent(format!("{}: the login's secret holds an unexpected password", r.id)));
        }
        let name = p.str("username")?;
        let role = ident(name);
        let mut c = self.connect(r).await?;
        if Self::role(&mut c, name).await?.is_none() {
            Self::execute(&mut c, &r.id, format!("CREATE ROLE {role} LOGIN")).await?;
        }
        Self::execute(
            &mut c,
            &r.id,
            format!(
                "ALTER ROLE {role} WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD {};\n\
                 GRANT CONNECT, TEMPORARY ON DATABASE {} TO {role};\n\
                 GRANT USAGE, CREATE ON SCHEMA public TO {role};",
                literal(&password),
                ident(p.str("database")?),
            ),
        )
        .await?;
        let _ = c.close().await;
        let sm = &self.0.secrets;
        sm.tag_resource()
            .secret_id(p.str("secretName")?)
            .set_tags(Some(super::secret::tags(r)))
            .send()
            .await
            .map_err(|e| failed("TagResource", e))?;
        Ok(Self::outputs(r, &password))
    }

    async fn update(&self, r: &Resource) -> Result<Outputs, DriverError> {
        self.create(r).await
    }

    async fn delete(&self, r: &Resource) -> Result<(), DriverError> {
        let p = Props::of(r);
        let identifier = p.str("identifier")?;
        let instance = self.0.rds.describe_db_instances().db_instance_identifier(identifier).send().await;
        let instance = match instance {
            Ok(out) => out.db_instances().first().cloned(),
            Err(e) if is_code(&e, &["DBInstanceNotFound", "DBInstanceNotFoundFault"]) => None,
            Err(e) => return Err(failed("DescribeDBInstances", e)),
        };
        if let Some(d) = &instance {
            if d.deletion_protection() == Some(true) {
                return Err(DriverError::Permanent(format!(
                    "{}: database `{identifier}` has deletion protection (production keeps its data and logins); turn it off in AWS first if this environment really goes",
                    r.id
                )));
            }
            let name = p.str("username")?;
            let mut c = self.connect(r).await?;
            if Self::role(&mut c, name).await?.is_some() {
                let role = ident(name);
                Self::execute(
                    &mut c,
                    &r.id,
                    format!("REASSIGN OWNED BY {role} TO CURRENT_USER;\nDROP OWNED BY {role};\nDROP ROLE {role};"),
                )
                .await?;
            }
            let _ = c.close().await;
        }
        match self.0.secrets.delete_secret().secret_id(p.str("secretName")?).recovery_window_in_days(7).send().await {
            Ok(_) => Ok(()),
            Err(e) if is_code(&e, &["ResourceNotFoundException", "InvalidRequestException"]) => Ok(()),
            Err(e) => Err(failed("DeleteSecret", e)),
        }
    }
}

/// The TLS a login's connection asks for: `require` unless told otherwise
/// (`PAVED_RDS_SSLMODE`: `verify-full` with the RDS CA bundle installed as
/// the system's roots, or `prefer`/`disable` for a database without TLS).
pub fn database_tls(mode: Option<&str>) -> Result<PgSslMode, String> {
    match mode.unwrap_or("require") {
        "disable" => Ok(PgSslMode::Disable),
        "prefer" => Ok(PgSslMode::Prefer),
        "require" => Ok(PgSslMode::Require),
        "verify-ca" => Ok(PgSslMode::VerifyCa),
        "verify-full" => Ok(PgSslMode::VerifyFull),
        other => Err(format!("PAVED_RDS_SSLMODE `{other}`: one of disable, prefer, require, verify-ca, verify-full")),
    }
}

#[cfg(test)]
mod tests {
    use super::{ident, literal};

    #[test]
    fn names_and_values_are_quoted_for_postgresql() {
        assert_eq!(ident("app_api"), "\"app_api\"");
        assert_eq!(ident("a\"b"), "\"a\"\"b\"");
        assert_eq!(literal("it's"), "'it''s'");
    }
}
