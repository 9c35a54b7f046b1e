//! A real, throwaway PostgreSQL server for test suites.
//!
//! If `PAVED_TEST_POSTGRES_URL` is set, that server is used. Otherwise one
//! server per test process is created with `initdb` + `pg_ctl` in a temporary
//! directory (binaries found on PATH, in `PAVED_PG_BIN`, or under
//! `/usr/lib/postgresql/*/bin`), and a watchdog stops it when the test
//! process exits. Each call returns a URL to a fresh, empty database.

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

struct Server {
    base_url: String,
    /// The cluster's files, when this process started it.
    data: Option<PathBuf>,
}

static SERVER: OnceLock<Result<Server, String>> = OnceLock::new();
static NEXT_DB: AtomicUsize = AtomicUsize::new(0);

/// Where this machine's PostgreSQL server programs are.
pub fn pg_bin_dir() -> Result<PathBuf, String> {
    if let Ok(dir) = std::env::var("PAVED_PG_BIN") {
        return Ok(PathBuf::from(dir));
    }
    let mut candidates: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|rd| rd.flatten().map(|e| e.path().join("bin")).collect())
        .unwrap_or_default();
    candidates.sort();
    if let Some(dir) = candidates.into_iter().rev().find(|d| d.join("initdb").exists()) {
        return Ok(dir);
    }
    let which = Command::new("sh").args(["-c", "command -v initdb"]).output().map_err(|e| e.to_string())?;
    let path = String::from_utf8_lossy(&which.stdout).trim().to_string();
    if path.is_empty() {
        return Err("PostgreSQL server binaries (initdb, pg_ctl) not found: install the Debian package `postgresql` \
                    (scripts/test does this), set PAVED_PG_BIN, or set PAVED_TEST_POSTGRES_URL"
            .into());
    }
    Ok(PathBuf::from(path).parent().map(PathBuf::from).unwrap_or_default())
}

fn free_port() -> Result<u16, String> {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).map_err(|e| e.to_string())
}

fn run(cmd: &mut Command, what: &str) -> Result<(), String> {
    let out = cmd.output().map_err(|e| format!("{what}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{what} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(())
}

fn start() -> Result<Server, String> {
    if let Ok(url) = std::env::var("PAVED_TEST_POSTGRES_URL") {
        return Ok(Server { base_url: url.trim_end_matches('/').to_string(), data: None });
    }
    let bin = pg_bin_dir()?;
    let dir = tempfile::Builder::new().prefix("paved-pg-").tempdir().map_err(|e| e.to_string())?.keep();
    let data = dir.join("data");
    let port = free_port()?;
    // PostgreSQL refuses to run as root: run it as the `postgres` user then.
    let as_root = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false);
    let wrap = |args: &[String]| -> Command {
        if as_root {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).args(args);
            c
        } else {
            let mut c = Command::new(&args[0]);
            c.args(&args[1..]);
            c
        }
    };
    if as_root {
        run(Command::new("chown").args(["-R", "postgres"]).arg(&dir), "chown test dir to postgres")?;
    }
    let s = |p: &PathBuf| p.display().to_string();
    // TLS on, as managed databases have it (RDS for PostgreSQL 15+ refuses
    // plain connections): a self-signed certificate, made by openssl.
    let (cert, key) = (dir.join("server.crt"), dir.join("server.key"));
    run(
        Command::new("openssl")
            .args(["req", "-new", "-x509", "-days", "2", "-nodes", "-subj", "/CN=127.0.0.1", "-keyout"])
            .arg(&key)
            .arg("-out")
            .arg(&cert),
        "openssl (Debian package `openssl`) making the test server's certificate",
    )?;
    run(Command::new("chmod").arg("600").arg(&key), "chmod the test server's key")?;
    if as_root {
        run(Command::new("chown").arg("postgres").arg(&key).arg(&cert), "chown the test server's key")?;
    }
    run(
        &mut wrap(&[
            s(&bin.join("initdb")),
            "-D".into(),
            s(&data),
            "-U".into(),
            "paved".into(),
            "-A".into(),
            "trust".into(),
            "--no-sync".into(),
        ]),
        "initdb",
    )?;
    let opts = format!(
        "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200 -c ssl=on -c ssl_cert_file={} -c ssl_key_file={}",
        s(&dir),
        s(&cert),
        s(&key)
    );
    run(
        &mut wrap(&[
            s(&bin.join("pg_ctl")),
            "-D".into(),
            s(&data),
            "-o".into(),
            opts,
            "-l".into(),
            s(&dir.join("log")),
            "-w".into(),
            "start".into(),
        ]),
        "pg_ctl start",
    )?;
    // Watchdog: stop the server and remove its files once this process is gone.
    let pid = std::process::id();
    let stop = format!(
        "while kill -0 {pid} 2>/dev/null; do sleep 1; done; {} {} -D {} -m immediate stop >/dev/null 2>&1; rm -rf {}",
        if as_root { "runuser -u postgres --" } else { "" },
        s(&bin.join("pg_ctl")),
        s(&data),
        s(&dir)
    );
    Command::new("setsid")
        .args(["sh", "-c", &stop])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .map_err(|e| format!("watchdog: {e}"))?;
    Ok(Server { base_url: format!("postgres://paved@127.0.0.1:{port}"), data: Some(data) })
}

/// The test server's data directory (for tests that look at what reaches
/// the disk); `None` when `PAVED_TEST_POSTGRES_URL` names an outside server.
pub fn postgres_data_dir() -> Option<PathBuf> {
    SERVER.get().and_then(|s| s.as_ref().ok()).and_then(|s| s.data.clone())
}

/// A URL to the database `name` on the test server, created if it is not
/// there yet (an engine's own database, as a managed service makes it).
pub async fn postgres_database(name: &str) -> Result<String, String> {
    let server = SERVER.get_or_init(start).as_ref().map_err(Clone::clone)?;
    if !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(format!("database name `{name}`: letters, digits and underscores only"));
    }
    sqlx::any::install_default_drivers();
    let admin = format!("{}/postgres", server.base_url);
    let mut conn = <sqlx::AnyConnection as sqlx::Connection>::connect(&admin)
        .await
        .map_err(|e| format!("connect {admin}: {e}"))?;
    match sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"))).execute(&mut conn).await {
        Ok(_) => {}
        Err(e) if e.as_database_error().and_then(|d| d.code()).as_deref() == Some("42P04") => {}
        Err(e) => return Err(e.to_string()),
    }
    Ok(format!("{}/{name}", server.base_url))
}

/// A URL to a new, empty database on the test server.
pub async fn postgres_url() -> Result<String, String> {
    let server = SERVER.get_or_init(start).as_ref().map_err(Clone::clone)?;
    let db = format!("t{}_{}", std::process::id(), NEXT_DB.fetch_add(1, Ordering::SeqCst));
    sqlx::any::install_default_drivers();
    let admin = format!("{}/postgres", server.base_url);
    let mut conn = <sqlx::AnyConnection as sqlx::Connection>::connect(&admin)
        .await
        .map_err(|e| format!("connect {admin}: {e}"))?;
    // `db` is made of digits and underscores only.
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {db}")))
        .execute(&mut conn)
        .await
        .map_err(|e| e.to_string())?;
    Ok(format!("{}/{db}", server.base_url))
}

/// Writes `events` as stored rows, hashes as they are (for chains built with
/// [`crate::audit::sample_chain`], or deliberately broken ones), on `conn`:
/// tests and benchmarks that need a long chain without appending it one
/// request at a time.
pub async fn insert_stored_events(
    conn: &mut sqlx::AnyConnection,
    events: &[crate::audit::StoredEvent],
) -> Result<(), sqlx::Error> {
    for e in events {
        sqlx::query(
            "INSERT INTO audit_events (seq, at, actor, action, target, outcome, request_id, origin, \
             before_digest, after_digest, details, prev_hash, hash) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
        )
        .bind(e.seq)
        .bind(&e.at)
        .bind(&e.actor)
        .bind(&e.action)
        .bind(&e.target)
        .bind(&e.outcome)
        .bind(&e.request_id)
        .bind(&e.origin)
        .bind(&e.before_digest)
        .bind(&e.after_digest)
        .bind(&e.details)
        .bind(&e.prev_hash)
        .bind(&e.hash)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

/// The rehearsal of a rolling upgrade: with `PAVED_TEST_NEXT_RELEASE=additive`
/// a build with this feature (the binary the test suites run; release
/// builds do not have it) behaves as the next release, knowing one more
/// migration than this one — version 9000, which adds a table and leaves
/// `store_compat.min_reader` alone, as an additive migration does — so a
/// test can replace replicas one at a time by "the next release" while the
/// others keep serving.
pub(crate) fn as_next_release(migrator: &mut sqlx::migrate::Migrator) {
    if std::env::var("PAVED_TEST_NEXT_RELEASE").as_deref() != Ok("additive") {
        return;
    }
    let next = sqlx::migrate::Migration::new(
        NEXT_RELEASE_MIGRATION,
        "rehearsal of the next release: an added table".into(),
        sqlx::migrate::MigrationType::Simple,
        sqlx::SqlStr::from_static("CREATE TABLE upgrade_rehearsal (id BIGINT PRIMARY KEY, note TEXT NOT NULL)"),
        false,
    );
    let mut migrations = migrator.migrations.to_vec();
    migrations.push(next);
    migrator.migrations = migrations.into();
}

/// The version of the rehearsal's migration ([`as_next_release`]).
pub const NEXT_RELEASE_MIGRATION: i64 = 9000;
