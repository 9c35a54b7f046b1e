//! End-to-end on the local provider: the real `paved` binary brings up the
//! examples as real processes (or containers on the Docker Engine) with a
//! real PostgreSQL, and tears them down.
//!
//! Needs the PostgreSQL server binaries (scripts/test installs them) and,
//! for the docker runtime, a running Docker Engine.

mod support;

use sha2::{Digest, Sha256};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;
use support::repo_root;

struct Paved {
    data: tempfile::TempDir,
    runtime: &'static str,
}

impl Paved {
    fn new() -> Paved {
        Self::with_runtime("process")
    }

    fn with_runtime(runtime: &'static str) -> Paved {
        Paved { data: tempfile::Builder::new().prefix("paved-e2e-").tempdir().unwrap(), runtime }
    }

    fn on_docker() -> Paved {
        let out = Command::new("docker").args(["version", "--format", "{{.Server.Version}}"]).output();
        assert!(
            out.is_ok_and(|o| o.status.success()),
            "this test needs a running Docker Engine and the `docker` CLI (Debian package docker.io)"
        );
        Self::with_runtime("docker")
    }

    fn dir(&self) -> &Path {
        self.data.path()
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_paved"));
        c.args(args)
            .current_dir(repo_root())
            .env("PAVED_DATA_DIR", self.dir())
            .env("PAVED_DEMO_BIN", env!("CARGO_BIN_EXE_paved-demo"))
            .env("PAVED_ACTOR", "e2e")
            .env("PAVED_RUNTIME", self.runtime)
            .env_remove("PAVED_STATE")
            .env("NO_COLOR", "1");
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().unwrap()
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "paved {args:?} failed ({}):\n{}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// `paved drift -e ENV` finds drift (exit 3) whose report contains every needle.
    fn assert_drift(&self, env: &str, needles: &[&str]) {
        let drift = self.run(&["drift", "-e", env]);
        let text = String::from_utf8_lossy(&drift.stdout);
        assert_eq!(drift.status.code(), Some(3), "{text}");
        assert!(needles.iter().all(|n| text.contains(n)), "{needles:?} not all in:\n{text}");
    }

    /// `paved drift -e ENV` finds none (exit 0); `context` says when.
    fn assert_no_drift(&self, env: &str, context: &str) {
        let drift = self.run(&["drift", "-e", env]);
        assert_eq!(drift.status.code(), Some(0), "{context}: {}", String::from_utf8_lossy(&drift.stdout));
    }

    fn spawn(&self, args: &[&str]) -> Child {
        self.command(args).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap()
    }

    fn env_dir(&self, env: &str) -> PathBuf {
        self.dir().join("local/envs").join(env)
    }

    fn address(&self, env: &str) -> String {
        let v: serde_json::Value =
            serde_json::from_slice(&std::fs::read(self.env_dir(env).join("network.json")).unwrap()).unwrap();
        v["address"].as_str().unwrap().to_string()
    }

    fn db_password(&self, env: &str) -> String {
        let path = self.env_dir(env).join("postgres/payments-db.json");
        let v: serde_json::Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
        v["password"].as_str().unwrap().to_string()
    }

    /// Where the platform PostgreSQL lives for this data dir (root runs it as `postgres`).
    fn cluster_dir(&self) -> PathBuf {
        if unsafe { libc::geteuid() } == 0 {
            let hash = hex::encode(Sha256::digest(self.dir().to_string_lossy().as_bytes()));
            PathBuf::from("/var/lib/paved").join(format!("postgres-{}", &hash[..12]))
        } else {
            self.dir().join("local/postgres")
        }
    }

    fn pg_port(&self) -> u16 {
        std::fs::read_to_string(self.cluster_dir().join("port")).unwrap().trim().parse().unwrap()
    }

    /// Processes whose command line mentions this data dir or its cluster.
    fn processes(&self) -> Vec<(i32, i32, String)> {
        let needles = [self.dir().display().to_string(), self.cluster_dir().display().to_string()];
        processes().into_iter().filter(|(_, _, cmd)| needles.iter().any(|n| cmd.contains(n.as_str()))).collect()
    }
}

impl Drop for Paved {
    fn drop(&mut self) {
        let _ = self.run(&["down"]);
        for (pid, _, _) in self.processes() {
            unsafe {
                libc::kill(pid, libc::SIGKILL);
            }
        }
    }
}

/// (pid, parent pid, command line) of every process.
fn processes() -> Vec<(i32, i32, String)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else { continue };
        let Ok(cmd) = std::fs::read(e.path().join("cmdline")) else { continue };
        let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else { continue };
        let ppid = stat.rsplit_once(')').and_then(|(_, r)| r.split_whitespace().nth(1)).and_then(|p| p.parse().ok());
        if cmd.is_empty() {
            continue; // zombie or kernel thread
        }
        let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
        out.push((pid, ppid.unwrap_or(0), cmd));
    }
    out
}

/// A raw HTTP/1.0 request to 127.x.y.z:port with a Host header: `(status, body)`.
fn http(addr: &str, host: &str, method: &str, path: &str, body: &str) -> (u16, String) {
    try_http(addr, host, method, path, body).unwrap_or_else(|e| panic!("{method} {path} on {addr}: {e}"))
}

/// [`http`] for a server that may be restarting: an error instead of a panic.
fn try_http(addr: &str, host: &str, method: &str, path: &str, body: &str) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        s,
        "{method} {path} HTTP/1.0\r\nHost: {host}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )?;
    let mut resp = String::new();
    s.read_to_string(&mut resp)?;
    let status = resp.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    Ok((status, resp.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default()))
}

/// `http://web.dev.localhost:PORT/` from paved's output.
fn web_url(stdout: &str, env: &str) -> (String, String) {
    let prefix = format!("http://web.{env}.localhost:");
    let start = stdout.find(&prefix).unwrap_or_else(|| panic!("no URL for web in:\n{stdout}"));
    let rest = &stdout[start + prefix.len()..];
    let port: String = rest.chars().take_while(char::is_ascii_digit).collect();
    (format!("127.0.0.1:{port}"), format!("web.{env}.localhost:{port}"))
}

/// Logs in over TCP as `user` and lists every database and role name.
fn connect_db(port: u16, user: &str, password: &str, db: &str) -> Result<Vec<String>, String> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        use sqlx::Connection;
        let opts = sqlx::postgres::PgConnectOptions::new_without_pgpass()
            .host("127.0.0.1")
            .port(port)
            .username(user)
            .password(password)
            .database(db);
        let mut c = sqlx::postgres::PgConnection::connect_with(&opts).await.map_err(|e| e.to_string())?;
        let names =
            sqlx::query_scalar("SELECT datname FROM pg_database UNION ALL SELECT rolname FROM pg_roles ORDER BY 1")
                .fetch_all(&mut c)
                .await
                .map_err(|e| e.to_string())?;
        let _ = c.close().await;
        Ok(names)
    })
}

/// A local environment's processes and data live on one machine: others are
/// refused (not left to re-create it empty or report it all missing) until
/// one takes it over explicitly; a destroy frees it.
#[test]
fn a_local_environment_runs_on_the_machine_that_applied_it_until_another_takes_it_over() {
    let p = Paved::new();
    let on = |runner: &str, args: &[&str]| p.command(args).env("PAVED_RUNNER_ID", runner).output().unwrap();
    let text = |out: &Output| String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    let up = on("machine-a", &["up"]);
    assert!(up.status.success(), "{}", text(&up));
    for args in [&["apply", "-e", "dev"][..], &["drift", "-e", "dev"], &["destroy", "-e", "dev"]] {
        let refused = on("machine-b", args);
        assert_eq!(refused.status.code(), Some(1), "{args:?}: {}", text(&refused));
        let why = text(&refused);
        assert!(why.contains("runs on `machine-a`") && why.contains("--take-over"), "{args:?}: {why}");
    }
    // A sweep from another machine reports the environment as unreadable there, saying where it runs.
    let sweep = on("machine-b", &["drift", "--all", "-o", "json"]);
    assert_eq!(sweep.status.code(), Some(3), "{}", text(&sweep));
    let reports: serde_json::Value = serde_json::from_slice(&sweep.stdout).unwrap();
    let dev = reports.as_array().unwrap().iter().find(|r| r["environment"] == "dev").unwrap();
    assert!(
        dev["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .all(|n| n["status"]["unreadable"]["error"].as_str().is_some_and(|e| e.contains("runs on `machine-a`"))),
        "{dev}"
    );
    // Untouched on its own machine.
    let drift = on("machine-a", &["drift", "-e", "dev"]);
    assert_eq!(drift.status.code(), Some(0), "{}", text(&drift));

    // machine-a is gone: machine-b takes the environment over, audited, and applies it.
    let taken = on("machine-b", &["apply", "-e", "dev", "--take-over"]);
    assert!(taken.status.success(), "{}", text(&taken));
    assert!(text(&taken).contains("taken over from `machine-a`"), "{}", text(&taken));
    let events: serde_json::Value =
        serde_json::from_str(&p.ok(&["audit", "list", "--action", "environment.take-over", "-o", "json"])).unwrap();
    assert_eq!(events[0]["details"], serde_json::json!({"from": "machine-a", "to": "machine-b"}), "{events}");
    let refused = on("machine-a", &["drift", "-e", "dev"]);
    assert!(text(&refused).contains("runs on `machine-b`"), "{}", text(&refused));
    // Only a local environment has a machine to take over from.
    let aws = on("machine-a", &["apply", "-e", "eu-dev", "--take-over"]);
    assert!(!aws.status.success() && text(&aws).contains("only a local-provider environment"), "{}", text(&aws));

    // Destroyed on its machine, it belongs to none: any machine may apply it next.
    let destroyed = on("machine-b", &["destroy", "-e", "dev"]);
    assert!(destroyed.status.success(), "{}", text(&destroyed));
    let drift = on("machine-a", &["drift", "-e", "dev"]);
    assert_eq!(drift.status.code(), Some(0), "{}", text(&drift));
}

#[test]
fn up_runs_isolated_environments_repairs_drift_and_down_removes_everything() {
    let p = Paved::new();

    // 1. `paved up`: api + worker + web with a real database, reachable by a stable URL.
    let out = p.ok(&["up"]);
    assert!(out.contains("dev is up and healthy"), "{out}");
    let (addr, host) = web_url(&out, "dev");
    let (status, page) = http(&addr, &host, "GET", "/", "");
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("first item of the dev environment"), "web did not show api's data: {page}");

    // The apply is in the audit log, with the digest of the graph it applied.
    let events: serde_json::Value =
        serde_json::from_str(&p.ok(&["audit", "list", "--action", "environment.apply", "-o", "json"])).unwrap();
    let e = &events[0];
    assert_eq!((e["target"].as_str(), e["outcome"].as_str()), (Some("Environment/dev"), Some("succeeded")), "{events}");
    let nodes: u64 = e["details"]["nodes"].as_object().unwrap().values().map(|n| n.as_u64().unwrap()).sum();
    assert!(e["after"].as_str().unwrap().starts_with("sha256:") && nodes == 10, "{e}");

    // Data written through api lands in dev's database and shows on dev's web page.
    let api = format!("{}:8080", p.address("dev"));
    let (status, body) = http(&api, "api", "POST", "/items", r#"{"name": "written in dev"}"#);
    assert_eq!(status, 200, "{body}");
    assert!(http(&addr, &host, "GET", "/", "").1.contains("written in dev"));

    // The database password paved generated is kept sealed in the vault, not in the state.
    let password = p.db_password("dev");
    for file in ["state.db", "state.db-wal"] {
        let bytes = std::fs::read(p.dir().join(file)).unwrap_or_default();
        assert!(!bytes.windows(password.len()).any(|w| w == password.as_bytes()), "{file} holds the password");
    }
    let kept: serde_json::Value = serde_json::from_str(&p.ok(&["secret", "list", "-e", "dev", "-o", "json"])).unwrap();
    assert!(
        kept.as_array().unwrap().iter().any(|s| s["name"] == "password"
            && s["service"].as_str().is_some_and(|svc| svc.starts_with("resource:local.postgres.database/"))),
        "{kept}"
    );

    // The platform cluster's socket is no back door: its directory is the owner's alone and
    // even paved's superuser needs the password there (paved keeps it, 0600).
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(p.cluster_dir()).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o700, "cluster directory mode {mode:o}");
    let pw = p.cluster_dir().join("superuser.password");
    assert_eq!(std::fs::metadata(&pw).unwrap().permissions().mode() & 0o777, 0o600);
    let socket = |password: Option<String>| {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            use sqlx::Connection;
            let mut opts = sqlx::postgres::PgConnectOptions::new_without_pgpass()
                .socket(p.cluster_dir())
                .port(p.pg_port())
                .username("paved")
                .database("postgres");
            if let Some(pw) = &password {
                opts = opts.password(pw);
            }
            sqlx::postgres::PgConnection::connect_with(&opts).await.map(|_| ()).map_err(|e| e.to_string())
        })
    };
    let refused = socket(None).expect_err("the socket let paved's superuser in without a password");
    assert!(refused.contains("password"), "{refused}");
    socket(Some(std::fs::read_to_string(&pw).unwrap())).expect("the superuser password opens the socket");
    // Without that file paved cannot log in: it says so and how to recover, and changes nothing.
    let aside = p.dir().join("superuser.password.aside");
    std::fs::rename(&pw, &aside).unwrap();
    let lost = p.run(&["apply", "-e", "dev"]);
    // The failed step's reason is in the summary (stdout) or the error (stderr), as the run ended.
    let text = String::from_utf8_lossy(&lost.stdout).to_string() + &String::from_utf8_lossy(&lost.stderr);
    assert_eq!(lost.status.code(), Some(1), "{text}");
    assert!(text.contains("lost paved's superuser password") && text.contains(&pw.display().to_string()), "{text}");
    eprintln!("apply without the password file:\n{text}");
    assert!(!pw.exists(), "a new password file was made up");
    std::fs::rename(&aside, &pw).unwrap();
    p.ok(&["apply", "-e", "dev"]);

    // 2. A second environment from the same specs runs side by side, with its own data.
    // While one paved applies it, another is refused with who holds it, or waits when told to.
    let mut first = p.spawn(&["apply", "-e", "staging"]);
    std::thread::sleep(Duration::from_millis(100));
    let refused = p.run(&["apply", "-e", "staging"]);
    let text = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(1), "{text}");
    assert!(text.contains("is being applied by e2e@") && text.contains("--lock-timeout"), "{text}");
    let waited = p.run(&["apply", "-e", "staging", "--lock-timeout", "2m"]);
    assert!(waited.status.success(), "{}", String::from_utf8_lossy(&waited.stderr));
    assert!(String::from_utf8_lossy(&waited.stderr).contains("waiting up to"));
    assert!(first.wait().unwrap().success());
    let out = String::from_utf8(waited.stdout).unwrap();
    let (s_addr, s_host) = web_url(&out, "staging");
    assert_ne!(p.address("dev"), p.address("staging"));
    let (status, page) = http(&s_addr, &s_host, "GET", "/", "");
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("first item of the staging environment") && !page.contains("written in dev"), "{page}");

    // Its credentials cannot open dev's database; they open its own.
    let port = p.pg_port();
    let staging_pw = p.db_password("staging");
    let denied = connect_db(port, "staging_payments_db", &staging_pw, "dev_payments_db").unwrap_err();
    assert!(denied.contains("permission denied"), "{denied}");
    connect_db(port, "staging_payments_db", &staging_pw, "staging_payments_db").unwrap();

    // 3. A process that dies is restarted by its supervisor.
    let status = p.env_dir("dev").join("workloads/api/slots/blue/status.json");
    let api_pid = || -> (i64, i64) {
        let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&status).unwrap()).unwrap();
        let c = &v["containers"]["api"];
        (c["pid"].as_i64().unwrap_or(0), c["restarts"].as_i64().unwrap_or(0))
    };
    let (before, _) = api_pid();
    unsafe {
        libc::kill(before as i32, libc::SIGKILL);
    }
    let restarted = (0..100).any(|_| {
        std::thread::sleep(Duration::from_millis(100));
        let (pid, restarts) = api_pid();
        pid != 0 && pid != before && restarts >= 1
    });
    assert!(restarted, "api was not restarted: {:?}", api_pid());

    // Drift: a killed workload is reported, then repaired.
    let supervisor: i32 = std::fs::read_to_string(p.env_dir("dev").join("workloads/web/slots/blue/supervisor.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    unsafe {
        libc::kill(supervisor, libc::SIGKILL);
    }
    std::thread::sleep(Duration::from_millis(300));
    p.assert_drift("dev", &["local.workload/web", r#"state: "running" -> "stopped""#]);
    p.ok(&["apply", "-e", "dev"]);
    p.assert_no_drift("dev", "after the repairing apply");
    assert!(http(&addr, &host, "GET", "/", "").1.contains("written in dev"), "web is back with the same data");

    // Logs of the service are there.
    // The process listens in its slot (`127.0.N.2`); the proxy serves the stable address `api`.
    let logs = p.ok(&["logs", "api", "-e", "dev"]);
    let slot = format!("{}.2:8080", p.address("dev").rsplit_once('.').unwrap().0);
    assert!(logs.contains(&format!("listening on {slot}")), "{logs}");

    // 4. A provisioned environment's spec cannot be deleted (its resources would be orphaned)…
    let refused = p.run(&["delete", "environment", "staging"]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("paved destroy -e staging"));
    // …destroying it leaves none of its processes, files, database or role behind.
    p.ok(&["destroy", "-e", "staging"]);
    // Its generated database password is retired with the database (the history stays).
    let kept: serde_json::Value =
        serde_json::from_str(&p.ok(&["secret", "list", "-e", "staging", "-o", "json"])).unwrap();
    assert_eq!(kept, serde_json::json!([]), "{kept}");
    p.ok(&["delete", "environment", "staging"]);
    assert!(!p.env_dir("staging").exists());
    assert!(p.processes().iter().all(|(_, _, c)| !c.contains("envs/staging")), "{:?}", p.processes());
    let names = connect_db(port, "dev_payments_db", &p.db_password("dev"), "dev_payments_db").unwrap();
    assert!(names.iter().all(|n| !n.starts_with("staging")), "{names:?}");
    assert!(names.contains(&"dev_payments_db".to_string()));

    // 5. `paved down` removes everything: processes, the cluster, the provider's files.
    p.ok(&["down"]);
    let downs: serde_json::Value =
        serde_json::from_str(&p.ok(&["audit", "list", "--action", "platform.down", "-o", "json"])).unwrap();
    assert_eq!(downs.as_array().map(Vec::len), Some(1), "{downs}");
    assert!(p.ok(&["audit", "verify"]).contains("intact"));
    assert_eq!(p.processes(), vec![], "processes left behind");
    assert!(!p.dir().join("local").exists());
    assert!(!p.cluster_dir().exists());
}

/// `docker ARGS…`, its standard output trimmed; panics on failure.
fn docker(args: &[&str]) -> String {
    let out = Command::new("docker").args(args).output().unwrap();
    assert!(out.status.success(), "docker {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// Names of this installation's containers (of one environment, or all).
fn containers_of(p: &Paved, env: Option<&str>) -> Vec<String> {
    let instance = hex::encode(Sha256::digest(p.dir().to_string_lossy().as_bytes()))[..10].to_string();
    let mut args = vec!["ps".to_string(), "-a".into(), "--format".into(), "{{.Names}}".into()];
    args.extend(["--filter".into(), format!("label=paved.instance={instance}")]);
    if let Some(env) = env {
        args.extend(["--filter".into(), format!("label=paved.environment={env}")]);
    }
    let mut names: Vec<String> =
        docker(&args.iter().map(String::as_str).collect::<Vec<_>>()).lines().map(str::to_string).collect();
    names.sort();
    names
}

/// Whether the worker image's own health check reaches a database from a
/// throwaway container on `network`.
fn db_reachable_from(network: &str, image: &str, url: &str) -> bool {
    let out = Command::new("docker")
        .args(["run", "--rm", "--network", network, "-e", &format!("DATABASE_URL={url}")])
        .args(["--entrypoint", "/bin/worker", image, "health"])
        .output()
        .unwrap();
    out.status.success()
}

#[test]
fn up_on_docker_runs_containers_isolated_by_network_and_down_removes_them() {
    let p = Paved::on_docker();

    // 1. The same examples as containers: web shows what api read from its database.
    let out = p.ok(&["up"]);
    let (addr, host) = web_url(&out, "dev");
    let (status, page) = http(&addr, &host, "GET", "/", "");
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("first item of the dev environment"), "web did not show api's data: {page}");
    let api = format!("{}:8080", p.address("dev"));
    let (status, body) = http(&api, "api", "POST", "/items", r#"{"name": "written in dev"}"#);
    assert_eq!(status, 200, "{body}");
    assert!(http(&addr, &host, "GET", "/", "").1.contains("written in dev"));

    let dev = containers_of(&p, Some("dev"));
    let names: Vec<&str> = dev.iter().map(|n| n.rsplit_once("-dev-").map_or(n.as_str(), |(_, rest)| rest)).collect();
    assert_eq!(names, ["api-blue-api", "postgres", "web-blue-web", "worker-blue-worker"], "{dev:?}");
    let api_c = dev.iter().find(|n| n.ends_with("-dev-api-blue-api")).unwrap();
    // Created from an image id (a digest), limited as the Score file says (cpu "1", memory 256Mi).
    let inspect = docker(&[
        "inspect",
        "-f",
        "{{.Config.Image}} {{.Image}} {{.HostConfig.NanoCpus}} {{.HostConfig.Memory}} {{index .Config.Labels \"paved.service\"}}",
        api_c,
    ]);
    let f: Vec<&str> = inspect.split(' ').collect();
    assert!(f[0].starts_with("sha256:") && f[0] == f[1], "{inspect}");
    assert_eq!(&f[2..], ["1000000000", "268435456", "api"], "{inspect}");

    // 2. staging side by side, with its own data and its own database container.
    let out = p.ok(&["apply", "-e", "staging"]);
    let (s_addr, s_host) = web_url(&out, "staging");
    let (status, page) = http(&s_addr, &s_host, "GET", "/", "");
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("first item of the staging environment") && !page.contains("written in dev"), "{page}");

    // dev's database container is on dev's network only and publishes nothing: a container on
    // staging's network cannot reach it even with dev's credentials; one on dev's network can.
    let pg = dev.iter().find(|n| n.ends_with("-dev-postgres")).unwrap();
    let networks =
        docker(&["inspect", "-f", "{{range $k, $v := .NetworkSettings.Networks}}{{$k}} {{$v.IPAddress}}{{end}}", pg]);
    let (dev_net, dev_ip) = networks.split_once(' ').unwrap();
    assert!(dev_net.ends_with("-dev") && !dev_ip.contains(' '), "attached to more than its network: {networks}");
    assert_eq!(docker(&["inspect", "-f", "{{len .NetworkSettings.Ports}}", pg]), "0");
    let staging_net = dev_net.replace("-dev", "-staging");
    let worker_image =
        docker(&["inspect", "-f", "{{.Image}}", dev.iter().find(|n| n.ends_with("-worker-blue-worker")).unwrap()]);
    let url = format!("postgres://dev_payments_db:{}@{dev_ip}:5432/dev_payments_db", p.db_password("dev"));
    assert!(db_reachable_from(dev_net, &worker_image, &url), "dev's own network must reach its database");
    assert!(!db_reachable_from(&staging_net, &worker_image, &url), "staging's network reached dev's database");

    // 3. Drift: a container removed out of band is reported, then recreated by apply.
    docker(&["rm", "-f", dev.iter().find(|n| n.ends_with("-web-blue-web")).unwrap()]);
    p.assert_drift("dev", &["local.workload/web", r#"state: "running" -> "stopped""#]);
    p.ok(&["apply", "-e", "dev"]);
    p.assert_no_drift("dev", "after the repairing apply");
    assert!(http(&addr, &host, "GET", "/", "").1.contains("written in dev"), "web is back with the same data");

    // A container that stops being live (api's /healthz fails) is restarted by its watcher.
    let started = || docker(&["inspect", "-f", "{{.State.StartedAt}}", api_c]);
    let before = started();
    assert_eq!(http(&api, "api", "POST", "/hang", "").0, 200);
    assert_eq!(http(&api, "api", "GET", "/healthz", "").0, 503);
    let restarted = (0..60).any(|_| {
        std::thread::sleep(Duration::from_millis(500));
        started() != before && try_http(&api, "api", "GET", "/healthz", "").is_ok_and(|(status, _)| status == 200)
    });
    assert!(restarted, "api was not restarted after failing its liveness probe");

    // Logs come from the engine.
    let logs = p.ok(&["logs", "api", "-e", "dev"]);
    assert!(logs.contains("listening on 0.0.0.0:8080"), "{logs}");

    // redis on Docker: a container on the environment's network; the workload gets its name and password;
    // a password changed inside the container is drift, and apply restores paved's.
    let specs = p.dir().join("redis-specs");
    write_redis_specs(&specs, "docker");
    p.ok(&["apply", "-f", specs.to_str().unwrap(), "-e", "cache-dev"]);
    let state: serde_json::Value = serde_json::from_slice(
        &std::fs::read(p.env_dir("cache-dev").join("redis/cache-user-cache/state.json")).unwrap(),
    )
    .unwrap();
    let password = state["password"].as_str().unwrap();
    let redis =
        containers_of(&p, Some("cache-dev")).into_iter().find(|n| n.ends_with("-redis-cache-user-cache")).unwrap();
    let user = containers_of(&p, Some("cache-dev")).into_iter().find(|n| n.ends_with("-cache-user-blue-main")).unwrap();
    let env = docker(&["inspect", "-f", "{{range .Config.Env}}{{println .}}{{end}}", &user]);
    assert!(env.contains("REDIS_HOST=redis-cache-user-cache") && env.contains(&format!("REDIS_PASSWORD={password}")));
    // Its answer, or nothing while it (re)starts.
    let cli = |pw: &str, args: &[&str]| {
        let out = Command::new("docker")
            .args(["exec", &redis, "/usr/bin/redis-cli", "--no-auth-warning", "-a", pw])
            .args(args)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    assert_eq!(cli(password, &["ping"]), "PONG");
    assert_eq!(cli(password, &["config", "set", "requirepass", "changed"]), "OK");
    p.assert_drift("cache-dev", &["local.redis/cache-user-cache", "changed-outside-paved"]);
    p.ok(&["apply", "-e", "cache-dev"]);
    let restored = (0..20).any(|_| {
        std::thread::sleep(Duration::from_millis(250));
        cli(password, &["ping"]) == "PONG"
    });
    assert!(restored, "paved's redis password was not restored");
    p.ok(&["destroy", "-e", "cache-dev"]);
    assert_eq!(containers_of(&p, Some("cache-dev")), Vec::<String>::new());

    // 4. Destroying staging leaves none of its containers or its network; `paved down` removes the rest.
    p.ok(&["destroy", "-e", "staging"]);
    assert_eq!(containers_of(&p, Some("staging")), Vec::<String>::new());
    assert!(
        Command::new("docker").args(["network", "inspect", &staging_net]).output().unwrap().status.code() != Some(0)
    );
    p.ok(&["down"]);
    assert_eq!(containers_of(&p, None), Vec::<String>::new());
    assert!(Command::new("docker").args(["network", "inspect", dev_net]).output().unwrap().status.code() != Some(0));
    assert!(!p.dir().join("local").exists());
}

/// `redis-cli` against a server: its answer, trimmed.
fn redis_cli(addr: &str, port: u16, password: &str, args: &[&str]) -> String {
    let out = Command::new("redis-cli")
        .args(["--no-auth-warning", "-h", addr, "-p", &port.to_string(), "-a", password])
        .args(args)
        .output()
        .expect("redis-cli (Debian package redis-tools, installed with redis-server)");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A blueprint offering redis (as the example's does), an environment of it
/// and a service using a redis resource, whose workload writes a key with
/// the credentials paved resolved into its variables.
fn write_redis_specs(dir: &Path, runtime: &str) {
    let blueprint = std::fs::read_to_string(repo_root().join("examples/platform/blueprint-web-service-standard.yaml"))
        .unwrap()
        .replace("name: web-service-standard", "name: cache-standard");
    assert!(blueprint.contains("    redis:\n"), "the example blueprint offers redis");
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("blueprint.yaml"), blueprint).unwrap();
    std::fs::write(
        dir.join("environment.yaml"),
        "apiVersion: paved.dev/v1alpha1\nkind: Environment\nmetadata:\n  name: cache-dev\nspec:\n  \
         blueprint: cache-standard@1.2.0\n  account: local\n  region: local\n  type: development\n  owner: platform\n",
    )
    .unwrap();
    // Containers have no shell: on Docker the workload is the web demo, which just keeps running.
    let main = if runtime == "docker" {
        "    image: registry.example.com/storefront/web:2.0.1\n    variables:\n      API_URL: http://nowhere:1\n"
    } else {
        "    image: registry.example.com/test/tools:1\n    command: [\"/bin/sh\", \"-c\", \"while true; do redis-cli --no-auth-warning -h \\\"$REDIS_HOST\\\" -p \\\"$REDIS_PORT\\\" -a \\\"$REDIS_PASSWORD\\\" set seen-by cache-user; sleep 1; done\"]\n    variables:\n"
    };
    std::fs::write(
        dir.join("cache-user.score.yaml"),
        format!("apiVersion: score.dev/v1b1\nmetadata:\n  name: cache-user\ncontainers:\n  main:\n{main}")
            + r#"      REDIS_HOST: ${resources.cache.host}
      REDIS_PORT: ${resources.cache.port}
      REDIS_PASSWORD: ${resources.cache.password}
resources:
  cache:
    type: redis
"#,
    )
    .unwrap();
}

#[test]
fn redis_resources_are_password_protected_servers_repaired_on_drift() {
    let p = Paved::new();
    p.ok(&["up"]);
    let specs = p.dir().join("redis-specs");
    let tools = support::tools_bundle(&p.dir().join("tools"), &["sh", "redis-cli", "sleep"]);
    p.ok(&["image", "import", tools.to_str().unwrap(), "--tag", "registry.example.com/test/tools:1"]);
    write_redis_specs(&specs, "process");
    p.ok(&["apply", "-f", specs.to_str().unwrap(), "-e", "cache-dev"]);

    let state: serde_json::Value = serde_json::from_slice(
        &std::fs::read(p.env_dir("cache-dev").join("redis/cache-user-cache/state.json")).unwrap(),
    )
    .unwrap();
    let (port, password) = (state["port"].as_u64().unwrap() as u16, state["password"].as_str().unwrap().to_string());
    let addr = p.address("cache-dev");
    // The workload reached it with the host, port and password paved resolved.
    let seen = (0..50).any(|_| {
        std::thread::sleep(Duration::from_millis(200));
        redis_cli(&addr, port, &password, &["get", "seen-by"]) == "cache-user"
    });
    assert!(seen, "the workload did not write to its redis");
    assert!(redis_cli(&addr, port, "wrong", &["ping"]).contains("NOAUTH"), "a wrong password was accepted");

    // A password changed out of band is drift; apply restores paved's.
    assert_eq!(redis_cli(&addr, port, &password, &["config", "set", "requirepass", "changed"]), "OK");
    p.assert_drift("cache-dev", &["local.redis/cache-user-cache", "changed-outside-paved"]);
    p.ok(&["apply", "-e", "cache-dev"]);
    assert_eq!(redis_cli(&addr, port, &password, &["ping"]), "PONG");

    // Destroying the environment stops the server and removes its files.
    p.ok(&["destroy", "-e", "cache-dev"]);
    assert!(!p.env_dir("cache-dev").exists());
    assert!(p.processes().iter().all(|(_, _, c)| !c.contains("redis-server")), "{:?}", p.processes());
}

/// A small deterministic generator (the seeds must replay).
fn lcg(seed: u64) -> impl FnMut() -> u64 {
    let mut x = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    move || {
        x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        x >> 33
    }
}

/// After an apply completed: one supervisor per workload, every service
/// process under a live supervisor (its sandbox's two bubblewrap processes
/// between them), no drift.
fn assert_converged(p: &Paved, seed: u64) {
    let procs = p.processes();
    // A workload's supervisor runs in one of its two slots (`slots/blue`, `slots/green`).
    for dir in ["workloads/api/slots/", "workloads/worker/slots/", "workloads/web/slots/", "proxy "] {
        let path = format!("{}/{dir}", p.env_dir("dev").display());
        let n = procs.iter().filter(|(_, _, c)| c.contains("__supervise") && c.contains(&path)).count();
        assert_eq!(n, 1, "seed {seed}: {n} supervisors for {dir}: {procs:?}");
    }
    let supervisors: Vec<i32> =
        procs.iter().filter(|(_, _, c)| c.contains("__supervise")).map(|(pid, _, _)| *pid).collect();
    let blobs = p.dir().join("images/blobs").display().to_string();
    // The workloads' own programs do not name the data directory: every process of the machine.
    let all = processes();
    let parent: std::collections::BTreeMap<i32, i32> = all.iter().map(|(pid, ppid, _)| (*pid, *ppid)).collect();
    let supervised = |mut pid: i32| {
        for _ in 0..4 {
            match parent.get(&pid) {
                Some(ppid) if supervisors.contains(ppid) => return true,
                Some(ppid) => pid = *ppid,
                None => return false,
            }
        }
        false
    };
    let sandboxed = |c: &str| c.contains(&blobs) || c.contains("/.paved/setpriv");
    for (pid, ppid, cmd) in procs.iter().filter(|(_, _, c)| sandboxed(c) || c.contains("__proxy")) {
        assert!(supervised(*pid), "seed {seed}: orphaned process {pid} ({cmd}), parent {ppid}");
    }
    // Each workload's own process (the bundle's program) is there, under its sandbox.
    for program in ["/bin/api", "/bin/web", "/bin/worker"] {
        let found = all.iter().filter(|(pid, _, c)| c.starts_with(program) && supervised(*pid)).count();
        assert_eq!(found, 1, "seed {seed}: {found} processes of {program} under this test's supervisors");
    }
    p.assert_no_drift("dev", &format!("seed {seed}"));
}

#[test]
fn apply_killed_at_random_points_converges_without_duplicates_or_orphans() {
    let p = Paved::new();
    kill_applies_at_random_points(&p, "PAVED_CRASH_SEEDS", 20, assert_converged);
    assert!(p.processes().iter().all(|(_, _, c)| !c.contains("__supervise")), "{:?}", p.processes());
    // The platform cluster goes with its last database.
    assert!(!p.cluster_dir().exists(), "the platform PostgreSQL outlived its last database");
    p.ok(&["down"]);
    assert_eq!(p.processes(), vec![]);
}

/// Applies (or destroys) dev, SIGKILLs paved at a random moment, applies
/// again and checks convergence, once per seed; then destroys dev.
fn kill_applies_at_random_points(p: &Paved, seeds_var: &str, default_seeds: u64, converged: fn(&Paved, u64)) {
    let seeds: u64 = std::env::var(seeds_var).ok().and_then(|s| s.parse().ok()).unwrap_or(default_seeds);
    p.ok(&["apply", "-f", "examples"]);
    p.ok(&["up"]); // imports the demo images and creates dev once
    let mut interrupted = 0;
    for seed in 0..seeds {
        let mut rng = lcg(seed);
        let destroying = seed % 2 == 1;
        if !destroying {
            p.ok(&["destroy", "-e", "dev"]);
        }
        let mut child = p.spawn(if destroying { &["destroy", "-e", "dev"] } else { &["apply", "-e", "dev"] });
        std::thread::sleep(Duration::from_millis(rng() % 1500));
        if child.try_wait().unwrap().is_none() {
            interrupted += 1;
        }
        let _ = child.kill(); // SIGKILL
        let _ = child.wait();
        let out = p.run(&["apply", "-e", "dev"]);
        if !out.status.success() {
            let containers = Command::new("docker").args(["ps", "-a"]).output().map(|o| o.stdout).unwrap_or_default();
            panic!(
                "seed {seed} ({}): the apply after the kill failed:\n{}{}\nprocesses: {:#?}\ncontainers:\n{}\nweb: {}",
                if destroying { "destroy killed" } else { "apply killed" },
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr),
                p.processes(),
                String::from_utf8_lossy(&containers),
                p.run(&["logs", "web", "-e", "dev", "--tail", "20"]).stdout.escape_ascii(),
            );
        }
        converged(p, seed);
    }
    // The kills must land while paved works, not only after it finished.
    assert!(interrupted * 2 >= seeds, "only {interrupted} of {seeds} kills interrupted an apply");
    p.ok(&["destroy", "-e", "dev"]);
    assert!(!p.env_dir("dev").exists());
}

#[test]
fn apply_on_docker_killed_at_random_points_converges_without_duplicate_containers() {
    let p = Paved::on_docker();
    kill_applies_at_random_points(&p, "PAVED_DOCKER_CRASH_SEEDS", 6, |p, seed| {
        let names = containers_of(p, Some("dev"));
        let short: Vec<&str> = names.iter().filter_map(|n| n.rsplit_once("-dev-").map(|(_, s)| s)).collect();
        assert_eq!(short, ["api-blue-api", "postgres", "web-blue-web", "worker-blue-worker"], "seed {seed}: {names:?}");
        for n in &names {
            assert_eq!(docker(&["inspect", "-f", "{{.State.Running}}", n]), "true", "seed {seed}: {n} is not running");
        }
        p.assert_no_drift("dev", &format!("seed {seed}"));
    });
    assert_eq!(containers_of(&p, Some("dev")), Vec::<String>::new());
    p.ok(&["down"]);
    assert_eq!(containers_of(&p, None), Vec::<String>::new());
}
