//! A service's own login on an RDS database (`aws.db-user`), PostgreSQL or
//! MySQL (`engine`): its workloads connect as it, never as the master user.
//!
//! | step | how |
//! |---|---|
//! | password | made by Secrets Manager (`GetRandomPassword`, letters and digits), kept in the secret `secretName` (`paved/ENV/db/KEY/SERVICE`) under the environment's key: the secret is the truth, paved's vault holds the output |
//! | master credentials | read at each apply from the secret RDS manages (`masterSecretArn`), so they are current after RDS rotates them (every 7 days); never stored by paved. Right after the database is created RDS may not have made it yet (`ResourceNotFoundException`): retried |
//! | connection | over TLS (`PAVED_RDS_SSLMODE`, `require` unless told otherwise: RDS for PostgreSQL 15+ refuses plain connections, <https://docs.aws.amazon.com/AmazonRDS/latest/UserGuide/PostgreSQL.Concepts.General.SSL.html>; RDS for MySQL takes them unless `require_secure_transport` is on, <https://docs.aws.amazon.com/AmazonRDS/latest/UserGuide/mysql-ssl-connections.html>, and paved never sends the master password in the clear) |
//! | the login, PostgreSQL | `CREATE ROLE … LOGIN`, then `ALTER ROLE … NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD …`, `CONNECT, TEMPORARY` on the database, `USAGE, CREATE` on schema `public` |
//! | the login, MySQL | `CREATE USER IF NOT EXISTS '…'@'%' … REQUIRE SSL`, then (an existing one: `REVOKE ALL PRIVILEGES, GRANT OPTION`), `ALTER USER` (password, `REQUIRE SSL`, `ACCOUNT UNLOCK`), `ALL PRIVILEGES` on its database only (no `GRANT OPTION`) |
//! | observe | the secret (absent or scheduled for deletion: absent), the login (absent: absent; `login` false when it cannot log in or has more than its due: PostgreSQL superuser/createdb/createrole; MySQL locked (`SHOW CREATE USER`), TLS not required, or any global privilege) |
//! | delete | refused while the database is deletion-protected (production keeps its logins with its data); else PostgreSQL: `REASSIGN OWNED` to the master user, `DROP OWNED`, `DROP ROLE`; MySQL: `DROP USER` (its tables belong to the database); then the secret (7-day recovery window) |
//!
//! paved must reach the database to make the login: it runs where the
//! environment's VPC is reachable (in it, peered, or over a VPN), as
//! Terraform's and Crossplane's SQL providers do. An unreachable database
//! fails this node with that said; the rest of the environment applies.

use super::secret::{Meta, SecretsRead};
use super::{Props, Session, failed, is_code};
use async_trait::async_trait;
use paved_engine::{Driver, DriverError, Observation, Outputs, Resource};
use serde_json::{Value, json};
use sqlx::Connection;
use sqlx::mysql::{MySqlConnectOptions, MySqlConnection, MySqlSslMode};
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

/// `text` as a MySQL string literal (backslash escapes are on by default).
fn my_literal(text: &str) -> String {
    format!("'{}'", text.replace('\\', "\\\\").replace('\'', "''"))
}

/// `name` as a MySQL identifier.
fn my_ident(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

/// The TLS mode of a MySQL connection for the PostgreSQL-named setting.
fn mysql_tls(mode: PgSslMode) -> MySqlSslMode {
    match mode {
        PgSslMode::Disable => MySqlSslMode::Disabled,
        PgSslMode::Allow | PgSslMode::Prefer => MySqlSslMode::Preferred,
        PgSslMode::Require => MySqlSslMode::Required,
        PgSslMode::VerifyCa => MySqlSslMode::VerifyCa,
        PgSslMode::VerifyFull => MySqlSslMode::VerifyIdentity,
    }
}

/// Where a login is made: the database, and the master user's credentials.
struct Target<'a> {
    host: &'a str,
    port: u16,
    database: &'a str,
    user: &'a str,
    password: &'a str,
    tls: PgSslMode,
}

/// A connection to a database as its master user, in its engine's
/// protocol; each engine's statements for a login beside it.
enum Database {
    Postgres(PgConnection),
    Mysql(MySqlConnection),
}

impl Database {
    async fn connect(engine: &str, t: &Target<'_>) -> Result<Database, sqlx::Error> {
        Ok(match engine {
            "mysql" => Database::Mysql(
                MySqlConnection::connect_with(
                    &MySqlConnectOptions::new()
                        .host(t.host)
                        .port(t.port)
                        .username(t.user)
                        .password(t.password)
                        .database(t.database)
                        .ssl_mode(mysql_tls(t.tls)),
                )
                .await?,
            ),
            _ => Database::Postgres(
                PgConnection::connect_with(
                    &PgConnectOptions::new()
                        .host(t.host)
                        .port(t.port)
                        .username(t.user)
                        .password(t.password)
                        .database(t.database)
                        .ssl_mode(t.tls)
                        .application_name("paved"),
                )
                .await?,
            ),
        })
    }

    /// `(can log in, has no more than its due)` of the login, if it exists.
    async fn login(&mut self, name: &str) -> Result<Option<bool>, DriverError> {
        let read = |e: sqlx::Error| DriverError::Retryable(format!("reading login {name}: {e}"));
        match self {
            Database::Postgres(c) => {
                let row: Option<(bool, bool, bool, bool)> = sqlx::query_as(
                    "SELECT rolcanlogin, rolsuper, rolcreatedb, rolcreaterole FROM pg_roles WHERE rolname = $1",
                )
                .bind(name)
                .fetch_optional(&mut *c)
                .await
                .map_err(read)?;
                Ok(row.map(|(login, sup, db, role)| login && !sup && !db && !role))
            }
            // Every global privilege is a column of `mysql.user` (a view in MariaDB); a lock
            // is not on MariaDB's view, but `SHOW CREATE USER` says it on both engines.
            Database::Mysql(c) => {
                let row: Option<(i64,)> = sqlx::query_as(
                    "SELECT CAST(ssl_type <> '' AND Select_priv = 'N' AND Insert_priv = 'N' AND Update_priv = 'N' \
                     AND Delete_priv = 'N' AND Create_priv = 'N' AND Drop_priv = 'N' AND Grant_priv = 'N' \
                     AND Super_priv = 'N' AND Create_user_priv = 'N' AND File_priv = 'N' AND Process_priv = 'N' \
                     AND Shutdown_priv = 'N' AS SIGNED) FROM mysql.user WHERE User = ? AND Host = '%'",
                )
                .bind(name)
                .fetch_optional(&mut *c)
                .await
                .map_err(read)?;
                let Some((due,)) = row else { return Ok(None) };
                let shown = sqlx::raw_sql(sqlx::AssertSqlSafe(format!("SHOW CREATE USER {}@'%'", my_literal(name))))
                    .fetch_one(&mut *c)
                    .await
                    .map_err(read)?;
                let create: String = sqlx::Row::try_get(&shown, 0).map_err(read)?;
                Ok(Some(due == 1 && !create.contains("ACCOUNT LOCK")))
            }
        }
    }

    /// The statements that make `name` a login of `database` with
    /// `password` and nothing more (`exists`: whether it is there already).
    fn grant(&self, name: &str, password: &str, database: &str, exists: bool) -> Vec<String> {
        match self {
            Database::Postgres(_) => {
                let role = ident(name);
                let create = (!exists).then(|| format!("CREATE ROLE {role} LOGIN"));
                create
                    .into_iter()
                    .chain([format!(
                        "ALTER ROLE {role} WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD {};\n\
                         GRANT CONNECT, TEMPORARY ON DATABASE {} TO {role};\n\
                         GRANT USAGE, CREATE ON SCHEMA public TO {role};",
                        literal(password),
                        ident(database),
                    )])
                    .collect()
            }
            Database::Mysql(_) => {
                let user = format!("{}@'%'", my_literal(name));
                let password = my_literal(password);
                // An existing login loses whatever was granted by hand before it gets its due.
                let revoke = exists.then(|| format!("REVOKE ALL PRIVILEGES, GRANT OPTION FROM {user}"));
                [format!("CREATE USER IF NOT EXISTS {user} IDENTIFIED BY {password} REQUIRE SSL")]
                    .into_iter()
                    .chain(revoke)
                    .chain([
                        format!("ALTER USER {user} IDENTIFIED BY {password} REQUIRE SSL ACCOUNT UNLOCK"),
                        format!("GRANT ALL PRIVILEGES ON {}.* TO {user}", my_ident(database)),
                    ])
                    .collect()
            }
        }
    }

    /// The statements that remove the login `name`.
    fn revoke(&self, name: &str) -> Vec<String> {
        match self {
            Database::Postgres(_) => {
                let role = ident(name);
                vec![format!("REASSIGN OWNED BY {role} TO CURRENT_USER;\nDROP OWNED BY {role};\nDROP ROLE {role};")]
            }
            Database::Mysql(_) => vec![format!("DROP USER IF EXISTS {}@'%'", my_literal(name))],
        }
    }

    /// Runs `statements` in order. Two logins granted on one database at
    /// once collide in PostgreSQL's catalog ("tuple concurrently
    /// updated"), as do serialization failures and deadlocks (SQLSTATE
    /// 40001 on both engines): those are retried, anything else is the
    /// database's refusal.
    async fn execute(&mut self, id: &str, statements: Vec<String>) -> Result<(), DriverError> {
        for sql in statements {
            let sql = sqlx::AssertSqlSafe(sql);
            let done = match self {
                Database::Postgres(c) => sqlx::raw_sql(sql).execute(&mut *c).await.map(drop),
                Database::Mysql(c) => sqlx::raw_sql(sql).execute(&mut *c).await.map(drop),
            };
            if let Err(e) = done {
                let db = e.as_database_error();
                let code = db.and_then(|d| d.code()).unwrap_or_default();
                let collided = matches!(code.as_ref(), "40001" | "40P01")
                    || db.is_some_and(|d| d.message().contains("tuple concurrently updated"));
                let message = format!("{id}: the database refused: {e}");
                return Err(if collided { DriverError::Retryable(message) } else { DriverError::Permanent(message) });
            }
        }
        Ok(())
    }

    async fn close(self) {
        let _ = match self {
            Database::Postgres(c) => c.close().await,
            Database::Mysql(c) => c.close().await,
        };
    }
}

impl DbUser {
    /// The login's secret: `(metadata, password)`; `None` when there is
    /// none or it is scheduled for deletion.
    async fn secret(&self, r: &Resource) -> Result<Option<(Meta, String)>, DriverError> {
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
        let meta = Meta::of(described.name(), described.arn(), described.kms_key_id(), described.tags());
        Ok(Self::password(value.secret_string()).map(|p| (meta, p)))
    }

    /// The password a login's secret holds.
    fn password(secret: Option<&str>) -> Option<String> {
        let json: Value = secret.and_then(|s| serde_json::from_str(s).ok()).unwrap_or_default();
        json["password"].as_str().map(str::to_string)
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
        match self.0.secrets.get_secret_value().secret_id(arn).send().await {
            Ok(v) => Self::credentials(r, v.secret_string()),
            // RDS makes the secret a moment after the instance.
            Err(e) if is_code(&e, &["ResourceNotFoundException"]) => Self::credentials(r, None),
            Err(e) => Err(failed("GetSecretValue", e)),
        }
    }

    /// The username and password in RDS's master secret (`None`: not made yet).
    fn credentials(r: &Resource, secret: Option<&str>) -> Result<(String, String), DriverError> {
        let Some(secret) = secret else {
            return Err(DriverError::Retryable(format!("{}: RDS has not made the master secret yet", r.id)));
        };
        let json: Value = serde_json::from_str(secret).unwrap_or_default();
        match (json["username"].as_str(), json["password"].as_str()) {
            (Some(u), Some(p)) => Ok((u.to_string(), p.to_string())),
            _ => Err(DriverError::Permanent(format!(
                "{}: the master secret {} holds no username and password",
                r.id,
                Props::of(r).str("masterSecretArn").unwrap_or_default()
            ))),
        }
    }

    /// A connection to the node's database as the master user.
    async fn connect(&self, r: &Resource) -> Result<Database, DriverError> {
        let master = self.master(r).await?;
        self.connect_as(r, master).await
    }

    /// A connection to the node's database as `(user, password)`.
    async fn connect_as(&self, r: &Resource, (user, password): (String, String)) -> Result<Database, DriverError> {
        let p = Props::of(r);
        let host = p.str("host")?;
        // A reference resolves to text; RDS reports a number.
        let port: u16 = match p.value("port") {
            Value::Number(n) => n.as_u64().and_then(|n| u16::try_from(n).ok()),
            Value::String(s) => s.parse().ok(),
            _ => None,
        }
        .ok_or_else(|| DriverError::Permanent(format!("{}: property `port` must be a port number", r.id)))?;
        let target = Target {
            host,
            port,
            database: p.str("database")?,
            user: &user,
            password: &password,
            tls: self.0.database_tls,
        };
        let unreachable = |why: String| {
            DriverError::Retryable(format!(
                "{}: cannot reach database {host}:{port} ({why}); paved connects to the database to make the service's login: run paved where the environment's VPC is reachable (in the VPC, peered, or over a VPN)",
                r.id
            ))
        };
        match tokio::time::timeout(CONNECT_TIMEOUT, Database::connect(Self::engine(r), &target)).await {
            Ok(Ok(c)) => Ok(c),
            Ok(Err(e)) => Err(unreachable(e.to_string())),
            Err(_) => Err(unreachable(format!("no answer in {} s", CONNECT_TIMEOUT.as_secs()))),
        }
    }

    /// The login as its database and its secret hold it.
    async fn seen(
        &self,
        r: &Resource,
        secret: &Meta,
        password: &str,
        master: (String, String),
    ) -> Result<Observation, DriverError> {
        let mut c = self.connect_as(r, master).await?;
        let login = c.login(Props::of(r).str("username")?).await;
        c.close().await;
        let Some(login) = login? else { return Ok(Observation::Absent) };
        let mut properties = r.properties.clone();
        properties["login"] = json!(login);
        properties["kmsKeyArn"] = json!(secret.kms_key_id);
        properties["tags"] = secret.tags.clone();
        Ok(Observation::Present { properties, outputs: Self::outputs(r, password), ready: true })
    }

    /// The database's engine: `postgres` unless the node says otherwise.
    fn engine(r: &Resource) -> &str {
        Props::of(r).opt_str("engine").unwrap_or("postgres")
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
        let Some((meta, password)) = self.secret(r).await? else { return Ok(Observation::Absent) };
        let master = self.master(r).await?;
        self.seen(r, &meta, &password, master).await
    }

    /// A sweep's logins: their secrets and the databases' master secrets
    /// read in batches ([`SecretsRead`]), then each login in its database.
    async fn observe_all(&self, rs: &[Resource]) -> Vec<Result<Observation, DriverError>> {
        let names: Vec<&str> = rs.iter().filter_map(|r| Props::of(r).str("secretName").ok()).collect();
        let masters: Vec<&str> = rs.iter().filter_map(|r| Props::of(r).str("masterSecretArn").ok()).collect();
        let read = match SecretsRead::read(&self.0, &names, &masters).await {
            Ok(read) => read,
            Err(e) => return super::every(rs, e),
        };
        let mut out = Vec::with_capacity(rs.len());
        for r in rs {
            let observed = async {
                let name = Props::of(r).str("secretName")?;
                let Some(meta) = read.meta(name) else { return Ok(Observation::Absent) };
                let Some(password) = Self::password(read.value(name)?) else { return Ok(Observation::Absent) };
                let master = Self::credentials(r, read.value(Props::of(r).str("masterSecretArn")?)?)?;
                self.seen(r, meta, &password, master).await
            };
            out.push(observed.await);
        }
        out
    }

    async fn create(&self, r: &Resource) -> Result<Outputs, DriverError> {
        let p = Props::of(r);
        let password = self.ensure_secret(r).await?;
        // A password made by Secrets Manager without punctuation: letters and digits only.
        if !password.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Err(DriverError::Permanent(format!("{}: the login's secret holds an unexpected password", r.id)));
        }
        let name = p.str("username")?;
        let mut c = self.connect(r).await?;
        let made = match c.login(name).await {
            Ok(exists) => {
                let statements = c.grant(name, &password, p.str("database")?, exists.is_some());
                c.execute(&r.id, statements).await
            }
            Err(e) => Err(e),
        };
        c.close().await;
        made?;
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
            let dropped = match c.login(name).await {
                Ok(Some(_)) => {
                    let statements = c.revoke(name);
                    c.execute(&r.id, statements).await
                }
                Ok(None) => Ok(()),
                Err(e) => Err(e),
            };
            c.close().await;
            dropped?;
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
    use super::{ident, literal, my_ident, my_literal};

    #[test]
    fn names_and_values_are_quoted_for_postgresql() {
        assert_eq!(ident("app_api"), "\"app_api\"");
        assert_eq!(ident("a\"b"), "\"a\"\"b\"");
        assert_eq!(literal("it's"), "'it''s'");
    }

    #[test]
    fn names_and_values_are_quoted_for_mysql() {
        assert_eq!(my_ident("shop_db"), "`shop_db`");
        assert_eq!(my_ident("a`b"), "`a``b`");
        assert_eq!(my_literal("it's"), "'it''s'");
        // A backslash escapes in MySQL's default mode: doubled, it stays one.
        assert_eq!(my_literal("a\\'b"), "'a\\\\''b'");
    }
}
