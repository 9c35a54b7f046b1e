//! `local.mysql.server` and `local.mysql.database`: one MariaDB server
//! managed by paved (Debian `mariadb-server`), one database + user per
//! Score `mysql` resource — the same shape as the platform PostgreSQL.
//!
//! | step | how |
//! |------|-----|
//! | create the server's files | `mariadb-install-db` into a staging directory, renamed into place (a crash leaves no half server) |
//! | start | `mariadbd` in its own session (it outlives the CLI), on 127.0.0.1 and a socket in its 0700 directory; an `--init-file` gives `root@localhost` paved's password and drops every other root account *before* the first connection is accepted, on every start |
//! | administer | the `mariadb` client with a 0600 defaults file (the password never on a command line, which every local user can read) |
//! | a database | `CREATE DATABASE`, `CREATE USER 'ENV_KEY'@'%'` with a generated password, `GRANT ALL ON ENV_KEY.*` only: one environment's credentials open no other database |
//! | stop | `mariadb-admin shutdown` when no database is left (`paved down`) |
//!
//! MariaDB refuses to run as root: when paved runs as root, the server runs
//! as the `mysql` system user (made by the Debian package) in
//! `/var/lib/paved/mariadb-HASH` (root's home is not readable by it).

use crate::Config;
use crate::fsutil::{self, FileLock};
use async_trait::async_trait;
use paved_engine::{Driver, DriverError, Observation, Outputs, Resource};
use serde_json::json;
use sha2::{Digest, Sha256};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

const MISSING: &str = "the platform MySQL is MariaDB, which is not installed: install the Debian package \
                       `mariadb-server` (mariadbd, mariadb-install-db and the mariadb client)";

pub struct Server {
    /// Holds `data/`, `port`, the socket, `server.log` and paved's password files.
    dir: PathBuf,
    lock: PathBuf,
    /// The system user MariaDB runs as when paved is root.
    run_as: Option<String>,
}

fn find(name: &str) -> Result<PathBuf, String> {
    crate::sandbox::find(name)
        .or_else(|| ["/usr/sbin", "/usr/bin"].iter().map(|d| PathBuf::from(d).join(name)).find(|p| p.is_file()))
        .ok_or_else(|| MISSING.to_string())
}

impl Server {
    pub fn new(config: &Config) -> Server {
        let (dir, run_as) = if fsutil::is_root() {
            let hash = hex::encode(Sha256::digest(config.data_dir.to_string_lossy().as_bytes()));
            (PathBuf::from("/var/lib/paved").join(format!("mariadb-{}", &hash[..12])), Some("mysql".to_string()))
        } else {
            (config.local_dir().join("mariadb"), None)
        };
        Server { lock: config.local_dir().join("mariadb.lock"), dir, run_as }
    }

    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    fn socket(&self) -> PathBuf {
        self.dir.join("mysqld.sock")
    }

    fn password_file(&self) -> PathBuf {
        self.dir.join("root.password")
    }

    fn port(&self) -> Option<u16> {
        std::fs::read_to_string(self.dir.join("port")).ok().and_then(|s| s.trim().parse().ok())
    }

    pub fn initialised(&self) -> bool {
        self.data().join("mysql").is_dir()
    }

    /// Whether it accepts connections on its socket.
    pub fn running(&self) -> bool {
        self.initialised() && std::os::unix::net::UnixStream::connect(self.socket()).is_ok()
    }

    fn chown(&self, path: &std::path::Path) -> Result<(), String> {
        let Some(user) = &self.run_as else { return Ok(()) };
        let out = Command::new("chown").arg("-R").arg(user).arg(path).output();
        if out.as_ref().is_ok_and(|o| o.status.success()) {
            Ok(())
        } else {
            Err(format!(
                "paved runs as root and MariaDB refuses to: it runs the platform MySQL as the system user \
                 `{user}`, which is missing ({MISSING})"
            ))
        }
    }

    /// Creates the server's files unless they exist.
    fn init_blocking(&self) -> Result<(), String> {
        if self.initialised() {
            return Ok(());
        }
        let install = find("mariadb-install-db")?;
        crate::remove_dir(&self.dir)?;
        std::fs::create_dir_all(&self.dir).map_err(|e| format!("cannot create {}: {e}", self.dir.display()))?;
        std::fs::set_permissions(&self.dir, std::os::unix::fs::PermissionsExt::from_mode(0o700))
            .map_err(|e| format!("cannot restrict {}: {e}", self.dir.display()))?;
        let password = fsutil::random_password(32);
        fsutil::write_atomic(&self.password_file(), password.as_bytes(), true)?;
        // Read by `mariadbd` at every start, before it accepts a connection. The
        // password alphabet is letters and digits only: safe inside quotes.
        let init = format!(
            "DELETE FROM mysql.global_priv WHERE User = 'root' AND Host <> 'localhost';\n\
             DELETE FROM mysql.global_priv WHERE User = '';\n\
             FLUSH PRIVILEGES;\n\
             ALTER USER 'root'@'localhost' IDENTIFIED BY '{password}';\n"
        );
        fsutil::write_atomic(&self.dir.join("init.sql"), init.as_bytes(), true)?;
        fsutil::write_atomic(
            &self.dir.join("client.cnf"),
            format!("[client]\nuser=root\npassword={password}\nsocket={}\n", self.socket().display()).as_bytes(),
            true,
        )?;
        self.chown(&self.dir)?;
        let staging = self.dir.join("data.install");
        let mut c = Command::new(install);
        c.arg("--no-defaults")
            .arg(format!("--datadir={}", staging.display()))
            .args(["--auth-root-authentication-method=normal", "--skip-test-db"]);
        if let Some(user) = &self.run_as {
            c.arg(format!("--user={user}"));
        }
        let out = c.output().map_err(|e| format!("cannot run mariadb-install-db: {e}"))?;
        if !out.status.success() {
            return Err(format!("mariadb-install-db failed: {}", String::from_utf8_lossy(&out.stderr).trim()));
        }
        std::fs::rename(&staging, self.data()).map_err(|e| format!("cannot move the new server into place: {e}"))
    }

    /// Starts it unless it runs; returns its port.
    fn start_blocking(&self) -> Result<u16, String> {
        let port = match self.port() {
            Some(p) => p,
            None => {
                let p = fsutil::free_port("MariaDB")?;
                fsutil::write_atomic(&self.dir.join("port"), p.to_string().as_bytes(), false)?;
                p
            }
        };
        if self.running() {
            return Ok(port);
        }
        let mariadbd = find("mariadbd")?;
        let _ = std::fs::remove_file(self.socket());
        let mut c = Command::new(mariadbd);
        c.arg("--no-defaults")
            .arg(format!("--datadir={}", self.data().display()))
            .arg(format!("--socket={}", self.socket().display()))
            .arg(format!("--port={port}"))
            .arg("--bind-address=127.0.0.1")
            .arg(format!("--pid-file={}", self.dir.join("mariadbd.pid").display()))
            .arg(format!("--log-error={}", self.dir.join("server.log").display()))
            .arg(format!("--init-file={}", self.dir.join("init.sql").display()))
            .arg("--skip-name-resolve")
            .arg("--max-connections=1000");
        if let Some(user) = &self.run_as {
            c.arg(format!("--user={user}"));
        }
        // Its own session: it outlives the CLI that started it, like `pg_ctl start`.
        std::os::unix::process::CommandExt::process_group(&mut c, 0);
        let mut child = c
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start mariadbd: {e}"))?;
        for _ in 0..240 {
            if self.running() {
                // Reaped by a thread of its own so it never lingers as a zombie of a long-lived server.
                std::thread::spawn(move || child.wait());
                return Ok(port);
            }
            if let Ok(Some(status)) = child.try_wait() {
                return Err(format!(
                    "MariaDB did not start ({status}; log: {})",
                    self.dir.join("server.log").display()
                ));
            }
            std::thread::sleep(Duration::from_millis(125));
        }
        Err(format!("MariaDB did not accept connections within 30 s (log: {})", self.dir.join("server.log").display()))
    }

    /// Creates the server if needed, starts it if stopped; returns its port.
    pub async fn ensure(self: &Arc<Self>) -> Result<u16, DriverError> {
        let me = self.clone();
        tokio::task::spawn_blocking(move || {
            let _lock = FileLock::acquire(&me.lock)?;
            me.init_blocking()?;
            me.start_blocking()
        })
        .await
        .map_err(|e| DriverError::Retryable(e.to_string()))?
        .map_err(DriverError::Retryable)
    }

    /// Runs `sql` as paved's administrator; the rows, tab-separated.
    pub async fn sql(&self, sql: String) -> Result<String, DriverError> {
        use tokio::io::AsyncWriteExt;
        let client = find("mariadb").map_err(DriverError::Permanent)?;
        let mut child = tokio::process::Command::new(client)
            .arg(format!("--defaults-file={}", self.dir.join("client.cnf").display()))
            .args(["--batch", "--skip-column-names"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| DriverError::Retryable(format!("cannot run the mariadb client: {e}")))?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin.write_all(sql.as_bytes()).await.map_err(|e| DriverError::Retryable(e.to_string()))?;
        }
        let out = child.wait_with_output().await.map_err(|e| DriverError::Retryable(e.to_string()))?;
        if !out.status.success() {
            return Err(DriverError::Retryable(format!(
                "platform MariaDB: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Stops it and removes its files (`paved down`, or no database left).
    pub async fn destroy(&self) -> Result<(), String> {
        if self.running() {
            let admin = find("mariadb-admin")?;
            let out = tokio::process::Command::new(admin)
                .arg(format!("--defaults-file={}", self.dir.join("client.cnf").display()))
                .arg("shutdown")
                .output()
                .await
                .map_err(|e| e.to_string())?;
            if !out.status.success() {
                return Err(format!("MariaDB did not stop: {}", String::from_utf8_lossy(&out.stderr).trim()));
            }
        }
        crate::remove_dir(&self.dir)
    }

    fn endpoint(&self, port: u16) -> Outputs {
        Outputs::from([("host".to_string(), json!("127.0.0.1")), ("port".to_string(), json!(port))])
    }
}

pub struct ServerDriver {
    pub server: Arc<Server>,
}

#[async_trait]
impl Driver for ServerDriver {
    async fn observe(&self, r: &Resource) -> Result<Observation, DriverError> {
        match (self.server.running(), self.server.port()) {
            (true, Some(port)) => Ok(Observation::Present {
                properties: r.properties.clone(),
                outputs: self.server.endpoint(port),
                ready: true,
            }),
            _ => Ok(Observation::Absent),
        }
    }

    async fn create(&self, _: &Resource) -> Result<Outputs, DriverError> {
        let port = self.server.ensure().await?;
        Ok(self.server.endpoint(port))
    }

    async fn update(&self, r: &Resource) -> Result<Outputs, DriverError> {
        self.create(r).await
    }

    /// Shared by every environment: stopped and removed only when no
    /// database is left in it.
    async fn delete(&self, _: &Resource) -> Result<(), DriverError> {
        if !self.server.running() {
            return Ok(());
        }
        let left = self
            .server
            .sql(
                "SELECT count(*) FROM information_schema.schemata WHERE schema_name NOT IN \
                 ('mysql', 'information_schema', 'performance_schema', 'sys');"
                    .into(),
            )
            .await?;
        if left.trim() != "0" {
            return Ok(());
        }
        self.server.destroy().await.map_err(DriverError::Retryable)
    }
}

pub struct DatabaseDriver {
    pub server: Arc<Server>,
    pub config: Arc<Config>,
}

/// A MySQL identifier paved generated (`ENV_KEY`), checked before it goes into SQL.
fn ident(r: &Resource, field: &str) -> Result<String, DriverError> {
    let v = r.properties[field].as_str().unwrap_or_default();
    let ok = !v.is_empty()
        && v.len() <= 64
        && v.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        && !v.as_bytes()[0].is_ascii_digit();
    if ok {
        Ok(v.to_string())
    } else {
        Err(DriverError::Permanent(format!(
            "`{v}` cannot name a MySQL {field}: use lower-case letters, digits and `_` (at most 64)"
        )))
    }
}

impl DatabaseDriver {
    fn credentials_file(&self, r: &Resource) -> PathBuf {
        self.config.env_dir(&r.environment).join("mysql").join(format!("{}.json", r.name))
    }

    fn outputs(&self, port: u16, db: &str, user: &str, password: &str) -> Outputs {
        let mut out = self.server.endpoint(port);
        out.insert("name".into(), json!(db));
        out.insert("database".into(), json!(db));
        out.insert("username".into(), json!(user));
        out.insert("password".into(), json!(password));
        out
    }
}

#[async_trait]
impl Driver for DatabaseDriver {
    async fn observe(&self, r: &Resource) -> Result<Observation, DriverError> {
        let (db, user) = (ident(r, "database")?, ident(r, "username")?);
        let Some(port) = self.server.port().filter(|_| self.server.running()) else {
            return Ok(Observation::Absent);
        };
        let Some(password) = fsutil::read_kept_password(&self.credentials_file(r)).map_err(DriverError::Permanent)?
        else {
            return Ok(Observation::Absent);
        };
        // Identifiers are checked above; the password alphabet is letters and digits.
        let found = self
            .server
            .sql(format!(
                "SELECT (SELECT count(*) FROM information_schema.schemata WHERE schema_name = '{db}'), \
                 (SELECT count(*) FROM mysql.user WHERE User = '{user}' AND Host = '%'), \
                 (SELECT count(*) FROM mysql.user WHERE User = '{user}' AND Host = '%' AND \
                 authentication_string = PASSWORD('{password}'));"
            ))
            .await?;
        let counts: Vec<&str> = found.split_whitespace().collect();
        if counts.first() != Some(&"1") {
            return Ok(Observation::Absent);
        }
        let mut properties = r.properties.clone();
        if counts.get(1) != Some(&"1") {
            properties["username"] = serde_json::Value::Null;
        }
        properties["credentials"] =
            if counts.get(2) == Some(&"1") { json!("issued-by-paved") } else { json!("changed-outside-paved") };
        Ok(Observation::Present { properties, outputs: self.outputs(port, &db, &user, &password), ready: true })
    }

    async fn create(&self, r: &Resource) -> Result<Outputs, DriverError> {
        let (db, user) = (ident(r, "database")?, ident(r, "username")?);
        let port = self.server.ensure().await?;
        let password = &fsutil::kept_password(&self.credentials_file(r)).map_err(DriverError::Retryable)?;
        self.server
            .sql(format!(
                "CREATE DATABASE IF NOT EXISTS `{db}`;\n\
                 CREATE USER IF NOT EXISTS '{user}'@'%' IDENTIFIED BY '{password}';\n\
                 ALTER USER '{user}'@'%' IDENTIFIED BY '{password}';\n\
                 GRANT ALL PRIVILEGES ON `{db}`.* TO '{user}'@'%';\n"
            ))
            .await?;
        Ok(self.outputs(port, &db, &user, password))
    }

    async fn update(&self, r: &Resource) -> Result<Outputs, DriverError> {
        // Re-issues the password paved generated (repairs a changed one).
        self.create(r).await
    }

    async fn delete(&self, r: &Resource) -> Result<(), DriverError> {
        let (db, user) = (ident(r, "database")?, ident(r, "username")?);
        if self.server.running() {
            self.server.sql(format!("DROP DATABASE IF EXISTS `{db}`;\nDROP USER IF EXISTS '{user}'@'%';\n")).await?;
        } else if self.server.initialised() {
            // Stopped, not gone: start it to drop what is in it.
            self.server.ensure().await?;
            return Err(DriverError::Retryable("started the platform MariaDB to delete from it".into()));
        }
        fsutil::remove_file(&self.credentials_file(r)).map_err(DriverError::Retryable)
    }
}
