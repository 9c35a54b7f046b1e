//! `local.postgres.cluster` and `local.postgres.database`: one PostgreSQL
//! cluster managed by paved, one database + role per Score resource.
//!
//! The cluster is created with `initdb` on first use and started with
//! `pg_ctl`; it listens on 127.0.0.1 and on a Unix socket in its directory,
//! both with password authentication (SCRAM). The cluster directory is 0700
//! and paved's superuser password sits in it (`superuser.password`, 0600),
//! so no other local account reaches the socket, and knowing the socket is
//! not enough either: a cluster created before this rule (trust on the
//! socket) is given a password and reloaded on its next start. Each
//! database belongs to its role; `CONNECT` is revoked from everybody else, so
//! one environment's credentials cannot open another environment's database.
//!
//! PostgreSQL refuses to run as root: when paved runs as root, the cluster
//! runs as the `postgres` system user in `/var/lib/paved/postgres-HASH`
//! (root's home is not readable by other users).

use crate::Config;
use crate::fsutil::{self, FileLock};
use async_trait::async_trait;
use paved_engine::{Driver, DriverError, Observation, Outputs, Resource};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::{AssertSqlSafe, Connection, Row};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

/// Connections the shared platform cluster accepts (see where it starts).
const PLATFORM_MAX_CONNECTIONS: u32 = 2000;

pub struct Cluster {
    /// Holds `data/` (PGDATA), `port`, the socket and `server.log`.
    dir: PathBuf,
    /// Serialises start/stop between concurrent drivers and processes.
    lock: PathBuf,
    pg_bin: Option<PathBuf>,
    /// The system user PostgreSQL runs as when paved is root.
    run_as: Option<String>,
    /// Where the server runs: `None` on this machine (`pg_ctl`); on the
    /// docker runtime, a container attached only to its environment's
    /// network (the data directory is bind-mounted, the socket with it).
    container: Option<Placement>,
}

struct Placement {
    config: Arc<Config>,
    env: String,
}

/// The name other containers of an environment reach its database by.
pub const CONTAINER_HOST: &str = "paved-postgres";
const CONTAINER_PORT: u16 = 5432;
/// Where the cluster directory is mounted in its container.
pub const CONTAINER_DIR: &str = "/var/lib/postgresql";

impl Cluster {
    /// The platform cluster of the process runtime, shared by environments.
    pub fn new(config: &Config) -> Cluster {
        Self::at(config, "postgres", None)
    }

    /// The cluster of one environment on the docker runtime.
    pub fn for_environment(config: &Arc<Config>, env: &str) -> Cluster {
        let placement = Placement { config: config.clone(), env: env.to_string() };
        Self::at(config, &format!("postgres-{env}"), Some(placement))
    }

    fn at(config: &Config, name: &str, container: Option<Placement>) -> Cluster {
        let (dir, run_as) = if fsutil::is_root() {
            let hash = hex::encode(Sha256::digest(config.data_dir.to_string_lossy().as_bytes()));
            let name = name.replacen("postgres", &format!("postgres-{}", &hash[..12]), 1);
            (PathBuf::from("/var/lib/paved").join(name), Some("postgres".to_string()))
        } else {
            (config.local_dir().join(name), None)
        };
        Cluster {
            dir,
            lock: config.local_dir().join(format!("{name}.lock")),
            pg_bin: config.pg_bin.clone().or_else(|| std::env::var_os("PAVED_PG_BIN").map(PathBuf::from)),
            run_as,
            container,
        }
    }

    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    fn bin(&self, name: &str) -> Result<PathBuf, String> {
        const MISSING: &str = "PostgreSQL server binaries (initdb, pg_ctl) were not found: install the Debian \
                               package `postgresql` (or your system's PostgreSQL server package), or point \
                               PAVED_PG_BIN at the directory that holds them";
        if let Some(dir) = &self.pg_bin {
            let p = dir.join(name);
            return if p.exists() { Ok(p) } else { Err(format!("{} does not exist. {MISSING}", p.display())) };
        }
        let on_path = std::env::var_os("PATH")
            .into_iter()
            .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
            .map(|d| d.join(name))
            .find(|p| p.is_file());
        if let Some(p) = on_path {
            return Ok(p);
        }
        let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
            .map(|rd| rd.flatten().map(|e| e.path().join("bin").join(name)).filter(|p| p.exists()).collect())
            .unwrap_or_default();
        versions.sort();
        versions.pop().ok_or_else(|| MISSING.to_string())
    }

    fn command(&self, program: &Path) -> Command {
        match &self.run_as {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.args(["-u", user, "--"]).arg(program);
                c
            }
            None => Command::new(program),
        }
    }

    fn run(&self, program: &str, args: &[String]) -> Result<std::process::Output, String> {
        let bin = self.bin(program)?;
        self.command(&bin).args(args).output().map_err(|e| format!("cannot run {}: {e}", bin.display()))
    }

    fn port(&self) -> Option<u16> {
        if self.container.is_some() {
            return self.initialised().then_some(CONTAINER_PORT);
        }
        std::fs::read_to_string(self.dir.join("port")).ok().and_then(|s| s.trim().parse().ok())
    }

    fn initialised(&self) -> bool {
        self.data().join("PG_VERSION").exists()
    }

    /// paved's superuser password (written at `initdb`, before the cluster exists).
    fn password_file(&self) -> PathBuf {
        self.dir.join("superuser.password")
    }

    fn superuser_password(&self) -> Result<String, String> {
        std::fs::read_to_string(self.password_file()).map(|s| s.trim().to_string()).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                self.lost_password()
            } else {
                format!("cannot read {}: {e}", self.password_file().display())
            }
        })
    }

    /// What to say when the password file is gone (only removing it by hand
    /// does that): paved cannot log in to the cluster any more.
    fn lost_password(&self) -> String {
        format!(
            "the platform PostgreSQL at {} has lost paved's superuser password ({} is missing); restore the file, \
             or remove that directory to have paved create the cluster again (its databases go with it)",
            self.dir.display(),
            self.password_file().display()
        )
    }

    /// Gives the owner alone access to the directory that holds the socket.
    fn restrict_dir(&self) -> Result<(), String> {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&self.dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| format!("cannot restrict {}: {e}", self.dir.display()))
    }

    /// A cluster made by an earlier paved trusted every local connection:
    /// its superuser gets a password and its socket SCRAM, then it reloads.
    /// Runs while the cluster is up and before the first password login.
    async fn secure_legacy(&self, port: u16) -> Result<(), String> {
        let hba = self.data().join("pg_hba.conf");
        let text = std::fs::read_to_string(&hba).map_err(|e| format!("cannot read {}: {e}", hba.display()))?;
        if !text.lines().any(is_local_trust) {
            // Secured already; without the password file (removed by hand) paved cannot log in.
            return if self.password_file().exists() { Ok(()) } else { Err(self.lost_password()) };
        }
        let password = self.superuser_password().unwrap_or_else(|_| fsutil::random_password(32));
        let opts =
            PgConnectOptions::new_without_pgpass().socket(&self.dir).port(port).username("paved").database("postgres");
        let mut conn = PgConnection::connect_with(&opts).await.map_err(|e| format!("platform PostgreSQL: {e}"))?;
        // The password alphabet is letters and digits only: safe inside quotes.
        sqlx::raw_sql(AssertSqlSafe(format!("ALTER ROLE paved WITH PASSWORD '{password}'")))
            .execute(&mut conn)
            .await
            .map_err(|e| format!("platform PostgreSQL: {e}"))?;
        // Written once the role has it (the socket still trusts until the rewrite below, so a crash before
        // this line only repeats the step).
        fsutil::write_atomic(&self.password_file(), password.as_bytes(), true)?;
        let secured: String = text
            .lines()
            .map(|l| if is_local_trust(l) { l.replacen("trust", "scram-sha-256", 1) } else { l.to_string() })
            .collect::<Vec<_>>()
            .join("\n");
        fsutil::write_atomic(&hba, format!("{secured}\n").as_bytes(), true)?;
        if let Some(user) = &self.run_as {
            let _ = Command::new("chown").arg(user).arg(&hba).output();
        }
        sqlx::raw_sql("SELECT pg_reload_conf()")
            .execute(&mut conn)
            .await
            .map_err(|e| format!("platform PostgreSQL: {e}"))?;
        Ok(())
    }

    fn host_running(&self) -> bool {
        self.initialised()
            && self
                .run("pg_ctl", &["status".into(), "-D".into(), self.data().display().to_string()])
                .is_ok_and(|o| o.status.success())
    }

    pub async fn running(self: &Arc<Self>) -> bool {
        match &self.container {
            None => {
                let me = self.clone();
                tokio::task::spawn_blocking(move || me.host_running()).await.unwrap_or(false)
            }
            Some(p) => {
                let Ok(docker) = crate::docker::connect().await else { return false };
                let name = p.config.docker_name(&p.env, &["postgres"]);
                let up = docker
                    .inspect_container(&name, None::<bollard::query_parameters::InspectContainerOptions>)
                    .await
                    .is_ok_and(|c| c.state.and_then(|s| s.running).unwrap_or(false));
                up && self.initialised()
            }
        }
    }

    /// Creates the cluster's files with `initdb` unless they exist.
    fn init_blocking(&self) -> Result<(), String> {
        if self.initialised() {
            return Ok(());
        }
        crate::remove_dir(&self.dir)?;
        std::fs::create_dir_all(&self.dir).map_err(|e| format!("cannot create {}: {e}", self.dir.display()))?;
        if let Some(user) = &self.run_as {
            let out = Command::new("chown").args([user.as_str()]).arg(&self.dir).output();
            if !out.as_ref().is_ok_and(|o| o.status.success()) {
                return Err(format!(
                    "paved runs as root and PostgreSQL refuses to: it runs the platform database as the \
                     system user `{user}`, which is missing (install the Debian package `postgresql`, which \
                     creates it, or run paved as a normal user)"
                ));
            }
        }
        self.restrict_dir()?;
        let staging = self.dir.join("data.initdb");
        // initdb reads the password from a file (never the command line, which
        // every local user can see); the file stays for paved's own logins.
        fsutil::write_atomic(&self.password_file(), fsutil::random_password(32).as_bytes(), true)?;
        if let Some(user) = &self.run_as {
            let _ = Command::new("chown").arg(user).arg(self.password_file()).output();
        }
        let out = self.run(
            "initdb",
            &[
                "-D".into(),
                staging.display().to_string(),
                "-U".into(),
                "paved".into(),
                format!("--pwfile={}", self.password_file().display()),
                "--auth-local=scram-sha-256".into(),
                "--auth-host=scram-sha-256".into(),
                "-E".into(),
                "UTF8".into(),
                // A container has no locales but C: the cluster must not depend on the host's.
                "--locale=C".into(),
                "--no-instructions".into(),
            ],
        )?;
        if !out.status.success() {
            return Err(format!("initdb failed: {}", String::from_utf8_lossy(&out.stderr).trim()));
        }
        if self.container.is_some() {
            // Only the environment's network reaches the container; passwords still apply.
            let hba = staging.join("pg_hba.conf");
            let mut text = std::fs::read_to_string(&hba).map_err(|e| format!("cannot read {}: {e}", hba.display()))?;
            text.push_str("\n# paved: the environment's network (the only one this container is attached to)\nhost all all all scram-sha-256\n");
            std::fs::write(&hba, text).map_err(|e| format!("cannot write {}: {e}", hba.display()))?;
        }
        // Renamed into place last: a crash mid-initdb leaves no half cluster behind.
        std::fs::rename(&staging, self.data()).map_err(|e| format!("cannot move the new cluster into place: {e}"))
    }

    /// Starts the cluster on this machine unless it runs; returns its port.
    fn start_host_blocking(&self) -> Result<u16, String> {
        let port = match self.port() {
            Some(p) => p,
            None => {
                let p = std::net::TcpListener::bind("127.0.0.1:0")
                    .and_then(|l| l.local_addr())
                    .map_err(|e| format!("no free port for PostgreSQL: {e}"))?
                    .port();
                fsutil::write_atomic(&self.dir.join("port"), p.to_string().as_bytes(), false)?;
                p
            }
        };
        if !self.host_running() {
            let out = self.run(
                "pg_ctl",
                &[
                    "-D".into(),
                    self.data().display().to_string(),
                    "-l".into(),
                    self.data().join("server.log").display().to_string(),
                    "-w".into(),
                    "-t".into(),
                    "60".into(),
                    "-o".into(),
                    // Shared by every environment on the process runtime: each service keeps a
                    // pool of connections, and 100 (the default) ran out at about 30 previews.
                    format!(
                        "-p {port} -k {} -c listen_addresses=127.0.0.1 -c max_connections={PLATFORM_MAX_CONNECTIONS}",
                        self.dir.display()
                    ),
                    "start".into(),
                ],
            )?;
            if !out.status.success() {
                return Err(format!(
                    "PostgreSQL did not start: {} (log: {})",
                    String::from_utf8_lossy(&out.stdout).trim(),
                    self.data().join("server.log").display()
                ));
            }
        }
        Ok(port)
    }

    /// Runs the cluster in a container on the environment's network unless
    /// it runs, and waits until it accepts connections.
    async fn start_container(&self, p: &Placement) -> Result<u16, String> {
        let docker = crate::docker::connect().await?;
        let name = p.config.docker_name(&p.env, &["postgres"]);
        // Where the package put it: the server finds its share files relative to itself.
        let postgres = self.bin("postgres")?;
        let postgres = std::fs::canonicalize(&postgres).unwrap_or(postgres);
        let container = crate::docker::PlatformContainer {
            name: name.clone(),
            env: &p.env,
            alias: CONTAINER_HOST.to_string(),
            labels: &[(crate::docker::LABEL_SERVICE, "postgres")],
            dir: &self.dir,
            mount: CONTAINER_DIR,
            cmd: vec![
                postgres.display().to_string(),
                "-D".into(),
                format!("{CONTAINER_DIR}/data"),
                "-p".into(),
                CONTAINER_PORT.to_string(),
                "-c".into(),
                "listen_addresses=*".into(),
                "-c".into(),
                format!("unix_socket_directories={CONTAINER_DIR}"),
            ],
        };
        let image = |uid, gid| {
            let (docker, postgres) = (docker.clone(), postgres.clone());
            async move { postgres_image(&docker, &postgres, uid, gid).await.map_err(DriverError::Retryable) }
        };
        crate::docker::ensure_platform_container(&docker, &p.config, container, image)
            .await
            .map_err(|e| e.to_string())?;
        let socket = self.dir.join(format!(".s.PGSQL.{CONTAINER_PORT}"));
        for _ in 0..120 {
            if std::os::unix::net::UnixStream::connect(&socket).is_ok() {
                return Ok(CONTAINER_PORT);
            }
            tokio::time::sleep(std::time::Duration::from_millis(250)).await;
        }
        Err(format!("PostgreSQL in container {name} did not accept connections within 30 s (`docker logs {name}`)"))
    }

    /// Creates the cluster if needed, starts it if stopped; returns its port.
    pub async fn ensure(self: &Arc<Self>) -> Result<u16, DriverError> {
        let me = self.clone();
        let _lock = tokio::task::spawn_blocking(move || {
            let lock = FileLock::acquire(&me.lock)?;
            me.init_blocking()?;
            match &me.container {
                None => me.start_host_blocking().map(|_| lock),
                Some(_) => Ok(lock),
            }
        })
        .await
        .map_err(|e| DriverError::Retryable(e.to_string()))?
        .map_err(DriverError::Retryable)?;
        let port = match &self.container {
            Some(p) => self.start_container(p).await.map_err(DriverError::Retryable)?,
            None => self.port().ok_or_else(|| DriverError::Retryable("cluster port unknown".into()))?,
        };
        self.restrict_dir().map_err(DriverError::Retryable)?;
        self.secure_legacy(port).await.map_err(DriverError::Retryable)?;
        Ok(port)
    }

    async fn admin(&self, port: u16) -> Result<PgConnection, DriverError> {
        let password = self.superuser_password().map_err(DriverError::Retryable)?;
        let opts = PgConnectOptions::new_without_pgpass()
            .socket(&self.dir)
            .port(port)
            .username("paved")
            .password(&password)
            .database("postgres");
        PgConnection::connect_with(&opts)
            .await
            .map_err(|e| DriverError::Retryable(format!("cannot connect to the platform PostgreSQL: {e}")))
    }

    /// Host and port the environment's workloads connect to.
    fn endpoint(&self, port: u16) -> (String, u16) {
        match &self.container {
            Some(_) => (CONTAINER_HOST.to_string(), CONTAINER_PORT),
            None => ("127.0.0.1".to_string(), port),
        }
    }

    /// Stops the cluster and removes its files (`paved down`, or the
    /// environment's cluster on the docker runtime).
    pub async fn destroy(self: &Arc<Self>) -> Result<(), String> {
        if let Some(p) = &self.container {
            let docker = crate::docker::connect().await?;
            crate::docker::remove_container(&docker, &p.config.docker_name(&p.env, &["postgres"]))
                .await
                .map_err(|e| e.to_string())?;
        } else if self.initialised() && self.running().await {
            let out = self.run(
                "pg_ctl",
                &[
                    "-D".into(),
                    self.data().display().to_string(),
                    "-m".into(),
                    "fast".into(),
                    "-w".into(),
                    "stop".into(),
                ],
            )?;
            if !out.status.success() {
                return Err(format!("PostgreSQL did not stop: {}", String::from_utf8_lossy(&out.stderr).trim()));
            }
        }
        crate::remove_dir(&self.dir)
    }
}

/// A `pg_hba.conf` line trusting Unix-socket connections.
fn is_local_trust(line: &str) -> bool {
    let fields: Vec<&str> = line.split_whitespace().collect();
    fields.first() == Some(&"local") && fields.last() == Some(&"trust")
}

/// An image running this machine's PostgreSQL server as `uid:gid` (the
/// owner of the bind-mounted cluster directory).
pub async fn postgres_image(docker: &bollard::Docker, postgres: &Path, uid: u32, gid: u32) -> Result<String, String> {
    use crate::docker::rootfs::{ImageConfig, RootFs};
    let root = postgres.parent().and_then(Path::parent).ok_or("unexpected PostgreSQL layout")?.to_path_buf();
    let version = root.file_name().map(|v| v.to_string_lossy().to_string()).unwrap_or_default();
    let postgres = postgres.to_path_buf();
    let fs = tokio::task::spawn_blocking(move || -> Result<RootFs, String> {
        let mut fs = RootFs::new();
        fs.file(&postgres, &postgres)?;
        if root.join("lib").is_dir() {
            // JIT would pull in all of LLVM; the server runs without it.
            fs.tree(&root.join("lib"), root.join("lib"), &["bitcode", "llvmjit", "llvmjit_types"])?;
        }
        for share in [PathBuf::from("/usr/share/postgresql").join(&version), PathBuf::from("/usr/share/zoneinfo")] {
            if share.is_dir() {
                fs.tree(&share, &share, &["posix", "right"])?;
            }
        }
        fs.accounts(&[("postgres", uid, gid, CONTAINER_DIR)]);
        fs.dir(CONTAINER_DIR, 0o700, uid.into());
        fs.with_libraries()?;
        Ok(fs)
    })
    .await
    .map_err(|e| e.to_string())??;
    let config = ImageConfig { user: Some(format!("{uid}:{gid}")), ..Default::default() };
    fs.build(docker, "paved-local/postgres", &config).await
}

/// Connection trouble, lock conflicts, a server shutting down and a
/// concurrent creator (an interrupted apply's statement still finishing:
/// unique violation, duplicate database or role) are worth retrying; any
/// other error the server reports is not.
fn sql_err(e: sqlx::Error) -> DriverError {
    let msg = format!("platform PostgreSQL: {e}");
    match &e {
        sqlx::Error::Database(db) => {
            let code = db.code().map(|c| c.to_string()).unwrap_or_default();
            let class = code.get(..2).unwrap_or_default();
            if matches!(class, "08" | "40" | "53" | "55" | "57") || matches!(code.as_str(), "23505" | "42P04" | "42710")
            {
                DriverError::Retryable(msg)
            } else {
                DriverError::Permanent(msg)
            }
        }
        _ => DriverError::Retryable(msg),
    }
}

/// Runs statements one by one (some, like DROP DATABASE, refuse to run in
/// the implicit transaction of a multi-statement string).
async fn execute(conn: &mut PgConnection, statements: &[String]) -> Result<(), DriverError> {
    for sql in statements {
        sqlx::raw_sql(AssertSqlSafe(sql.clone())).execute(&mut *conn).await.map_err(sql_err)?;
    }
    Ok(())
}

/// The cluster a resource lives in: the shared platform cluster, or on the
/// docker runtime the environment's own.
fn cluster_of(platform: &Arc<Cluster>, config: &Arc<Config>, r: &Resource) -> Arc<Cluster> {
    if r.properties["runtime"] == "docker" {
        Arc::new(Cluster::for_environment(config, &r.environment))
    } else {
        platform.clone()
    }
}

pub struct ClusterDriver {
    pub cluster: Arc<Cluster>,
    pub config: Arc<Config>,
}

#[async_trait]
impl Driver for ClusterDriver {
    async fn observe(&self, r: &Resource) -> Result<Observation, DriverError> {
        let cluster = cluster_of(&self.cluster, &self.config, r);
        match (cluster.running().await, cluster.port()) {
            (true, Some(port)) => Ok(Observation::Present {
                // The local provider serves the installed server version, whatever the blueprint asks.
                properties: r.properties.clone(),
                outputs: cluster_outputs(cluster.endpoint(port)),
                ready: true,
            }),
            _ => Ok(Observation::Absent),
        }
    }

    async fn create(&self, r: &Resource) -> Result<Outputs, DriverError> {
        let cluster = cluster_of(&self.cluster, &self.config, r);
        let port = cluster.ensure().await?;
        Ok(cluster_outputs(cluster.endpoint(port)))
    }

    async fn update(&self, r: &Resource) -> Result<Outputs, DriverError> {
        self.create(r).await
    }

    /// The platform cluster is shared by every environment: stopped and
    /// removed only when no database is left in it. An environment's own
    /// cluster goes with it.
    async fn delete(&self, r: &Resource) -> Result<(), DriverError> {
        let cluster = cluster_of(&self.cluster, &self.config, r);
        if cluster.container.is_some() {
            return cluster.destroy().await.map_err(DriverError::Retryable);
        }
        if !cluster.running().await {
            return Ok(());
        }
        let port = cluster.port().ok_or_else(|| DriverError::Retryable("cluster port unknown".into()))?;
        let mut conn = cluster.admin(port).await?;
        let left: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_database WHERE datname NOT IN ('postgres', 'template0', 'template1')",
        )
        .fetch_one(&mut conn)
        .await
        .map_err(sql_err)?;
        let _ = conn.close().await;
        if left > 0 {
            return Ok(());
        }
        self.cluster.destroy().await.map_err(DriverError::Retryable)
    }
}

fn cluster_outputs((host, port): (String, u16)) -> Outputs {
    Outputs::from([("host".to_string(), json!(host)), ("port".to_string(), json!(port))])
}

/// The generated password of one database, kept by the driver (0600) so an
/// apply that crashed after creating the role reuses it.
#[derive(Debug, Serialize, Deserialize)]
struct Credentials {
    password: String,
    /// The SCRAM verifier PostgreSQL stored for it: a different one means the
    /// password was changed outside paved (drift).
    verifier: Option<String>,
}

pub struct DatabaseDriver {
    pub cluster: Arc<Cluster>,
    pub config: Arc<Config>,
}

/// A PostgreSQL identifier paved generated (`ENV_RESOURCE`), checked before it goes into SQL.
fn ident(r: &Resource, field: &str) -> Result<String, DriverError> {
    let v = r.properties[field].as_str().unwrap_or_default();
    let ok = !v.is_empty()
        && v.len() <= 63
        && v.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        && !v.as_bytes()[0].is_ascii_digit();
    if ok {
        Ok(v.to_string())
    } else {
        Err(DriverError::Permanent(format!(
            "`{v}` cannot name a PostgreSQL {field}: use lower-case letters, digits and `_` (at most 63)"
        )))
    }
}

impl DatabaseDriver {
    fn credentials_file(&self, r: &Resource) -> PathBuf {
        self.config.env_dir(&r.environment).join("postgres").join(format!("{}.json", r.name))
    }

    fn outputs(&self, (host, port): (String, u16), db: &str, role: &str, password: &str) -> Outputs {
        Outputs::from([
            ("host".to_string(), json!(host)),
            ("port".to_string(), json!(port)),
            ("name".to_string(), json!(db)),
            ("database".to_string(), json!(db)),
            ("username".to_string(), json!(role)),
            ("password".to_string(), json!(password)),
        ])
    }
}

async fn verifier(conn: &mut PgConnection, role: &str) -> Result<Option<String>, DriverError> {
    let row = sqlx::query("SELECT rolpassword FROM pg_authid WHERE rolname = $1")
        .bind(role)
        .fetch_optional(conn)
        .await
        .map_err(sql_err)?;
    Ok(row.and_then(|r| r.try_get::<Option<String>, _>(0).ok().flatten()))
}

#[async_trait]
impl Driver for DatabaseDriver {
    async fn observe(&self, r: &Resource) -> Result<Observation, DriverError> {
        let (db, role) = (ident(r, "database")?, ident(r, "role")?);
        let cluster = cluster_of(&self.cluster, &self.config, r);
        let running = cluster.running().await;
        let Some(port) = cluster.port().filter(|_| running) else { return Ok(Observation::Absent) };
        let Some(creds) =
            fsutil::read_json::<Credentials>(&self.credentials_file(r)).map_err(DriverError::Permanent)?
        else {
            return Ok(Observation::Absent);
        };
        let mut conn = cluster.admin(port).await?;
        let owner: Option<String> = sqlx::query_scalar(
            "SELECT r.rolname FROM pg_database d JOIN pg_roles r ON r.oid = d.datdba WHERE d.datname = $1",
        )
        .bind(&db)
        .fetch_optional(&mut conn)
        .await
        .map_err(sql_err)?;
        let current = verifier(&mut conn, &role).await?;
        let _ = conn.close().await;
        let Some(owner) = owner else { return Ok(Observation::Absent) };
        let mut properties = r.properties.clone();
        properties["role"] = if current.is_some() { json!(owner) } else { Value::Null };
        properties["credentials"] = if current.is_some() && current == creds.verifier {
            json!("issued-by-paved")
        } else {
            json!("changed-outside-paved")
        };
        let outputs = self.outputs(cluster.endpoint(port), &db, &role, &creds.password);
        Ok(Observation::Present { properties, outputs, ready: true })
    }

    async fn create(&self, r: &Resource) -> Result<Outputs, DriverError> {
        let (db, role) = (ident(r, "database")?, ident(r, "role")?);
        let cluster = cluster_of(&self.cluster, &self.config, r);
        let port = cluster.ensure().await?;
        let file = self.credentials_file(r);
        // The password is written down before the role exists, so a crash in
        // between leaves nothing paved cannot log in to.
        let mut creds = match fsutil::read_json::<Credentials>(&file).map_err(DriverError::Permanent)? {
            Some(c) => c,
            None => {
                let c = Credentials { password: fsutil::random_password(32), verifier: None };
                fsutil::write_json(&file, &c, true).map_err(DriverError::Retryable)?;
                c
            }
        };
        let mut conn = cluster.admin(port).await?;
        let role_exists: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)")
            .bind(&role)
            .fetch_one(&mut conn)
            .await
            .map_err(sql_err)?;
        // The password alphabet is letters and digits only: safe inside quotes.
        let verb = if role_exists { "ALTER" } else { "CREATE" };
        let sql = format!("{verb} ROLE \"{role}\" WITH LOGIN PASSWORD '{}'", creds.password);
        sqlx::raw_sql(AssertSqlSafe(sql)).execute(&mut conn).await.map_err(sql_err)?;
        let db_exists: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
            .bind(&db)
            .fetch_one(&mut conn)
            .await
            .map_err(sql_err)?;
        if !db_exists {
            sqlx::raw_sql(AssertSqlSafe(format!("CREATE DATABASE \"{db}\" OWNER \"{role}\"")))
                .execute(&mut conn)
                .await
                .map_err(sql_err)?;
        }
        execute(
            &mut conn,
            &[
                format!("ALTER DATABASE \"{db}\" OWNER TO \"{role}\""),
                format!("REVOKE ALL ON DATABASE \"{db}\" FROM PUBLIC"),
                format!("GRANT CONNECT, TEMPORARY ON DATABASE \"{db}\" TO \"{role}\""),
            ],
        )
        .await?;
        creds.verifier = verifier(&mut conn, &role).await?;
        let _ = conn.close().await;
        fsutil::write_json(&file, &creds, true).map_err(DriverError::Retryable)?;
        Ok(self.outputs(cluster.endpoint(port), &db, &role, &creds.password))
    }

    async fn update(&self, r: &Resource) -> Result<Outputs, DriverError> {
        // Re-issues the password paved generated (repairs a changed one).
        self.create(r).await
    }

    async fn delete(&self, r: &Resource) -> Result<(), DriverError> {
        let (db, role) = (ident(r, "database")?, ident(r, "role")?);
        let cluster = cluster_of(&self.cluster, &self.config, r);
        if cluster.running().await
            && let Some(port) = cluster.port()
        {
            let mut conn = cluster.admin(port).await?;
            let drop =
                [format!("DROP DATABASE IF EXISTS \"{db}\" WITH (FORCE)"), format!("DROP ROLE IF EXISTS \"{role}\"")];
            execute(&mut conn, &drop).await?;
            let _ = conn.close().await;
        } else if cluster.initialised() {
            // Stopped, not gone: start it to drop what is in it.
            cluster.ensure().await?;
            return Err(DriverError::Retryable("started the platform PostgreSQL to delete from it".into()));
        }
        match std::fs::remove_file(self.credentials_file(r)) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(DriverError::Retryable(e.to_string())),
        }
    }
}
