//! Shared by the end-to-end suites: a paved data directory, the real
//! binary run against it, a `paved server` on it, raw HTTP, and the test
//! Python (`PAVED_TEST_PYTHON`, set up by scripts/test).
#![allow(dead_code)]

use serde_json::Value;
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A bundle holding copies of the host programs `programs` (found on PATH)
/// in `bin/`: the process runtime runs only a workload's own programs, so a
/// test service that needs a shell carries one, like an image would.
pub fn tools_bundle(dir: &Path, programs: &[&str]) -> PathBuf {
    std::fs::create_dir_all(dir.join("bin")).unwrap();
    for name in programs {
        let found = std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
            .chain([PathBuf::from("/usr/bin"), PathBuf::from("/bin")])
            .map(|d| d.join(name))
            .find(|p| p.is_file())
            .unwrap_or_else(|| panic!("`{name}` is not installed"));
        std::fs::copy(&found, dir.join("bin").join(name)).unwrap();
    }
    std::fs::write(dir.join("bundle.json"), r#"{"cmd": ["/bin/sh"]}"#).unwrap();
    dir.to_path_buf()
}

/// A file of the reference fixtures: `PAVED_REFERENCE_DIR` (the one setting),
/// else `../shared/reference` beside the clone.
///
/// The fixtures (the official Score schema, real GitHub deliveries) live
/// beside this project's CI clone, not in the repository, so the tests that
/// read them are `#[ignore = "reads the reference fixtures …"]`: `scripts/test`
/// runs them when the fixtures are there, lists them as skipped with the
/// reason when not, and fails under `CI=true` when they are missing.
pub fn reference(relative: &str) -> PathBuf {
    let dir = std::env::var_os("PAVED_REFERENCE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("../shared/reference"));
    let path = dir.join(relative);
    assert!(
        path.exists(),
        "reference fixture {} not found: set PAVED_REFERENCE_DIR to the directory holding \
         score-v1b1.json and github-webhooks/ (scripts/test skips these tests when it is absent)",
        path.display()
    );
    path
}

/// A paved data directory and a server on it.
pub struct Platform {
    pub data: tempfile::TempDir,
    pub server: Option<Child>,
    pub port: u16,
    /// `--state` for every command (SQLite in the data directory when `None`).
    pub state: Option<String>,
    /// Environment variables for every command (and the server).
    pub env: Vec<(String, String)>,
    /// Replicas (ports) that take requests in turn, as behind a load
    /// balancer; empty: every request goes to `port`.
    pub replicas: Vec<u16>,
    turn: std::sync::atomic::AtomicUsize,
}

pub struct Response {
    pub status: u16,
    pub headers: BTreeMap<String, String>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

impl Platform {
    pub fn new() -> Platform {
        let data = tempfile::Builder::new().prefix("paved-server-").tempdir().unwrap();
        Platform {
            data,
            server: None,
            port: 0,
            state: None,
            env: Vec::new(),
            replicas: Vec::new(),
            turn: Default::default(),
        }
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_paved"));
        c.args(args)
            .current_dir(repo_root())
            .env("PAVED_DATA_DIR", self.data.path())
            .env("PAVED_DEMO_BIN", env!("CARGO_BIN_EXE_paved-demo"))
            .env("PAVED_ACTOR", "e2e")
            .env("PAVED_CONFIG_DIR", self.data.path().join("config"))
            .env("PAVED_RUNTIME", "process")
            .env_remove("PAVED_STATE")
            .env("NO_COLOR", "1");
        if let Some(state) = &self.state {
            c.env("PAVED_STATE", state);
        }
        c.envs(self.env.iter().map(|(k, v)| (k, v)));
        c
    }

    pub fn ok(&self, args: &[&str]) -> String {
        let out: Output = self.command(args).output().unwrap();
        assert!(
            out.status.success(),
            "paved {args:?} failed:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    pub fn ok_with_input(&self, args: &[&str], input: &str) -> String {
        let mut child =
            self.command(args).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
        child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "paved {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    }

    /// Issues a token through the CLI; returns (id, secret).
    pub fn token(&self, name: &str, subject: &str, expires: Option<&str>) -> (String, String) {
        let mut args = vec!["token", "create", name, "--subject", subject, "-o", "json"];
        if let Some(e) = expires {
            args.extend(["--expires", e]);
        }
        let v: Value = serde_json::from_str(&self.ok(&args)).unwrap();
        (v["token"]["id"].as_str().unwrap().to_string(), v["secret"].as_str().unwrap().to_string())
    }

    pub fn start(&mut self, extra: &[&str]) {
        self.start_on(free_port(), extra)
    }

    /// Starts `paved server` on `port` (for a server that must know its URL beforehand).
    pub fn start_on(&mut self, port: u16, extra: &[&str]) {
        let listen = format!("127.0.0.1:{port}");
        let mut args = vec!["server", "--listen", listen.as_str()];
        args.extend(extra);
        let log = std::fs::File::create(self.data.path().join("server.log")).unwrap();
        self.server = Some(self.command(&args).stdout(log.try_clone().unwrap()).stderr(log).spawn().unwrap());
        self.port = port;
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("server did not listen: {}", self.log());
    }

    pub fn log(&self) -> String {
        self.log_of("server.log")
    }

    /// A log in the data directory (another replica's, say).
    pub fn log_of(&self, name: &str) -> String {
        std::fs::read_to_string(self.data.path().join(name)).unwrap_or_default()
    }

    pub fn request(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Response {
        let port = match self.replicas.len() {
            0 => self.port,
            n => {
                let turn = self.turn.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                self.replicas[turn % n]
            }
        };
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        let mut head = format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Length: {}\r\n",
            body.len()
        );
        if let Some(t) = token {
            head.push_str(&format!("Authorization: Bearer {t}\r\n"));
        }
        for (k, v) in headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str("\r\n");
        s.write_all(head.as_bytes()).unwrap();
        // A server refusing a large body may close before reading all of it.
        let _ = s.write_all(body);
        let mut raw = Vec::new();
        let _ = s.read_to_end(&mut raw);
        parse_response(&raw)
            .unwrap_or_else(|| panic!("no HTTP response to {method} {path}: {:?}", String::from_utf8_lossy(&raw)))
    }

    pub fn get(&self, path: &str, token: &str) -> Response {
        self.request("GET", path, Some(token), &[], b"")
    }

    /// Waits for an operation to end; returns it.
    pub fn wait_operation(&self, id: &str, token: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let op = self.get(&format!("/api/v1/operations/{id}"), token).json();
            if op["status"] != "running" {
                return op;
            }
            assert!(Instant::now() < deadline, "operation {id} still running: {op}");
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Platform {
    fn drop(&mut self) {
        if let Some(mut s) = self.server.take() {
            // SIGTERM: graceful shutdown.
            unsafe { libc::kill(s.id() as i32, libc::SIGTERM) };
            let deadline = Instant::now() + Duration::from_secs(30);
            while Instant::now() < deadline && s.try_wait().ok().flatten().is_none() {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = s.kill();
            let _ = s.wait();
        }
        let _ = self.command(&["down"]).output();
    }
}

/// One request to `port`, with timeouts (2 s to connect, 10 s to answer):
/// `None` when nothing answered in time — a stopped or cut-off replica.
pub fn try_request(port: u16, method: &str, path: &str, token: Option<&str>, body: &[u8]) -> Option<Response> {
    let mut s = TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    let auth = token.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n{auth}Content-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).ok()?;
    s.write_all(body).ok()?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).ok()?;
    parse_response(&raw)
}

pub fn parse_response(raw: &[u8]) -> Option<Response> {
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&raw[..split]).ok()?;
    let mut lines = head.split("\r\n");
    let status = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let headers: BTreeMap<String, String> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    if headers.get("transfer-encoding").is_some_and(|t| t == "chunked") {
        body = dechunk(&body);
    }
    Some(Response { status, headers, body })
}

pub fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(end) = b.windows(2).position(|w| w == b"\r\n") {
        let size = usize::from_str_radix(std::str::from_utf8(&b[..end]).unwrap_or("0").trim(), 16).unwrap_or(0);
        if size == 0 || b.len() < end + 2 + size {
            break;
        }
        out.extend_from_slice(&b[end + 2..end + 2 + size]);
        b = &b[(end + 4 + size).min(b.len())..];
    }
    out
}

pub fn python() -> String {
    std::env::var("PAVED_TEST_PYTHON").unwrap_or_else(|_| "python3".into())
}

/// Runs a Python snippet with `input` on stdin; its stdout.
pub fn run_python(code: &str, input: &[u8]) -> String {
    let mut child = Command::new(python())
        .args(["-c", code])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 (PAVED_TEST_PYTHON)");
    child.stdin.take().unwrap().write_all(input).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "python failed (scripts/test installs openapi-spec-validator and prometheus-client):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A load balancer in front of replicas: Debian's nginx on 127.0.0.1:`port`,
/// each request to the next of `upstreams` (nginx's default round robin),
/// responses unbuffered so event streams flow; stopped when dropped.
pub struct Nginx {
    child: Child,
    _dir: tempfile::TempDir,
}

impl Nginx {
    pub fn start(port: u16, upstreams: &[u16]) -> Nginx {
        let nginx = ["/usr/sbin/nginx", "/usr/bin/nginx"].into_iter().find(|p| Path::new(p).exists()).unwrap_or_else(
            || panic!("nginx missing: this test puts Debian's nginx-light in front of the replicas (scripts/test installs it)"),
        );
        let dir = tempfile::Builder::new().prefix("paved-nginx-").tempdir().unwrap();
        let d = dir.path().display();
        let servers: String = upstreams.iter().map(|p| format!("server 127.0.0.1:{p}; ")).collect();
        // One process as the invoking user; every path inside `dir`.
        let conf = format!(
            "daemon off; master_process off; worker_processes 1; pid {d}/nginx.pid; error_log {d}/error.log;\n\
             events {{ worker_connections 512; }}\n\
             http {{ access_log {d}/access.log; client_body_temp_path {d}/body; proxy_temp_path {d}/proxy;\n\
             fastcgi_temp_path {d}/fastcgi; uwsgi_temp_path {d}/uwsgi; scgi_temp_path {d}/scgi;\n\
             upstream paved {{ {servers}}}\n\
             server {{ listen 127.0.0.1:{port}; location / {{ proxy_pass http://paved; proxy_http_version 1.1;\n\
             proxy_buffering off; proxy_read_timeout 1h; proxy_set_header Host $http_host;\n\
             proxy_set_header X-Forwarded-For $remote_addr; }} }} }}\n"
        );
        std::fs::write(dir.path().join("nginx.conf"), conf).unwrap();
        let conf = dir.path().join("nginx.conf");
        let child = Command::new(nginx)
            .args(["-p", &d.to_string(), "-e", &format!("{d}/error.log"), "-c"])
            .arg(&conf)
            .stdin(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("{nginx}: {e}"));
        let mut balancer = Nginx { child, _dir: dir };
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = balancer.child.try_wait() {
                let log = std::fs::read_to_string(balancer._dir.path().join("error.log")).unwrap_or_default();
                panic!("nginx exited ({status}): {log}");
            }
            assert!(Instant::now() < deadline, "nginx did not listen on {port} within 10 s");
            std::thread::sleep(Duration::from_millis(50));
        }
        balancer
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A real AWS API emulator (`moto_server` from the test virtualenv) on
/// 127.0.0.1, stopped when dropped.
pub struct Moto {
    child: Child,
    pub url: String,
    /// The real PostgreSQL behind every RDS for PostgreSQL instance's
    /// endpoint (its superuser is `paved`, RDS's master user as paved names it).
    pub postgres: String,
    /// The MariaDB behind every RDS for MySQL instance's endpoint, when asked for.
    pub mysql: Option<RdsMysql>,
}

/// A MariaDB standing in for RDS for MySQL (Debian's `mariadb-server`):
/// TLS only (`require_secure_transport`, a self-signed certificate as RDS
/// has its own CA's), the master user `paved` with the password the test
/// moto's master secret holds, and the databases RDS would have made.
pub struct RdsMysql {
    child: Child,
    pub port: u16,
    pub dir: tempfile::TempDir,
}

impl RdsMysql {
    pub fn start(databases: &[&str]) -> RdsMysql {
        let dir = tempfile::Builder::new().prefix("paved-rds-mysql-").tempdir().unwrap();
        let path = |name: &str| dir.path().join(name).display().to_string();
        let run = |program: &str, args: &[String]| {
            let out = Command::new(program).args(args).output().unwrap_or_else(|e| {
                panic!("{program}: {e} (the RDS for MySQL tests need Debian's mariadb-server and openssl)")
            });
            assert!(out.status.success(), "{program}: {}", String::from_utf8_lossy(&out.stderr));
        };
        run(
            "openssl",
            &["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1"]
                .iter()
                .map(|s| s.to_string())
                .chain(["-keyout".into(), path("key.pem"), "-out".into(), path("cert.pem")])
                .collect::<Vec<_>>(),
        );
        // `mariadbd` run by root needs `--user=root`.
        let root = paved_local::fsutil::is_root();
        let user = |args: &mut Vec<String>| {
            if root {
                args.push("--user=root".into());
            }
        };
        let mut install = vec![
            "--no-defaults".into(),
            format!("--datadir={}", path("data")),
            "--auth-root-authentication-method=socket".into(),
            "--skip-test-db".into(),
        ];
        user(&mut install);
        run("mariadb-install-db", &install);
        let init: String = ["CREATE USER IF NOT EXISTS 'paved'@'%' IDENTIFIED BY 'P@55w0rd!';".to_string()]
            .into_iter()
            .chain(databases.iter().map(|db| format!("CREATE DATABASE IF NOT EXISTS `{db}`;")))
            .chain(["GRANT ALL PRIVILEGES ON *.* TO 'paved'@'%' WITH GRANT OPTION;".to_string()])
            .collect::<Vec<_>>()
            .join("\n");
        std::fs::write(dir.path().join("init.sql"), init).unwrap();
        let port = free_port();
        let mut args = vec![
            "--no-defaults".into(),
            format!("--datadir={}", path("data")),
            format!("--socket={}", path("mysqld.sock")),
            format!("--port={port}"),
            "--bind-address=127.0.0.1".into(),
            format!("--log-error={}", path("server.log")),
            format!("--init-file={}", path("init.sql")),
            format!("--ssl-cert={}", path("cert.pem")),
            format!("--ssl-key={}", path("key.pem")),
            "--require-secure-transport=ON".into(),
            "--skip-name-resolve".into(),
        ];
        user(&mut args);
        let child = Command::new("mariadbd")
            .args(&args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("mariadbd (Debian's mariadb-server)");
        let log = path("server.log");
        let mut me = RdsMysql { child, port, dir };
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = me.child.try_wait() {
                panic!("mariadbd exited ({status}): {}", std::fs::read_to_string(&log).unwrap_or_default());
            }
            assert!(Instant::now() < deadline, "mariadbd did not listen on {port} within 30 s");
            std::thread::sleep(Duration::from_millis(100));
        }
        me
    }

    /// Runs `sql` as `user` (TLS, as the server requires); the rows, tab-separated.
    pub fn sql(&self, user: &str, password: &str, sql: &str) -> Result<String, String> {
        let out = Command::new("mariadb")
            .args(["--no-defaults", "--ssl", "--batch", "--skip-column-names", "-h", "127.0.0.1"])
            .arg(format!("--port={}", self.port))
            .arg(format!("--user={user}"))
            .arg(format!("--password={password}"))
            .args(["-e", sql])
            .output()
            .expect("the mariadb client");
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
        }
    }
}

impl Drop for RdsMysql {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The databases the examples' RDS instances hold (RDS makes an
/// instance's database; here the test server has them).
const RDS_DATABASES: [&str; 1] = ["payments_db"];

impl Moto {
    pub fn start() -> Moto {
        Moto::start_with(None)
    }

    /// With RDS for MySQL instances answering on `mysql`.
    pub fn start_with(mysql: Option<RdsMysql>) -> Moto {
        let python = PathBuf::from(python());
        assert!(
            python.with_file_name("moto_server").exists(),
            "{}: the AWS tests need moto (scripts/test installs `moto[server]` into its virtualenv)",
            python.display()
        );
        let port = free_port();
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let urls: Vec<String> = RDS_DATABASES
            .iter()
            .map(|db| runtime.block_on(paved_store::testing::postgres_database(db)).expect("the test PostgreSQL"))
            .collect();
        let postgres = urls[0].rsplit_once('/').map(|(base, _)| base.to_string()).unwrap_or_default();
        let endpoint = postgres.trim_start_matches("postgres://").rsplit('@').next().unwrap_or_default().to_string();
        // moto's server with each EKS cluster given its own OIDC issuer, as AWS does.
        let mut command = Command::new(&python);
        if let Some(m) = &mysql {
            command.env("PAVED_TEST_RDS_MYSQL_ENDPOINT", format!("127.0.0.1:{}", m.port));
        }
        let child = command
            .arg(repo_root().join("crates/paved-cli/tests/support/moto_server.py"))
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            // AWS's managed policies (EKS's roles attach them) exist in every real account.
            .env("MOTO_IAM_LOAD_MANAGED_POLICIES", "true")
            // RDS instances answer on a real PostgreSQL (services' logins are made there).
            .env("PAVED_TEST_RDS_ENDPOINT", &endpoint)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let moto = Moto { child, url: format!("http://127.0.0.1:{port}"), postgres, mysql };
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) {
                let _ = s.write_all(b"GET /moto-api/ HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
                let mut raw = Vec::new();
                let _ = s.read_to_end(&mut raw);
                if raw.starts_with(b"HTTP/1.1 200") || raw.starts_with(b"HTTP/1.0 200") {
                    return moto;
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("moto_server did not answer on port {port}");
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Raw HTTP to 127.0.0.1:`port`; the response body.
pub fn http(port: u16, method: &str, path: &str) -> Vec<u8> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.write_all(
        format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")
            .as_bytes(),
    )
    .unwrap();
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    parse_response(&raw).map(|r| r.body).unwrap_or_default()
}

/// A counting, optionally throttling, proxy in front of moto
/// (`tests/support/aws_proxy.py`): point paved at `url` and every AWS call
/// it makes is counted by "service region operation".
pub struct AwsProxy {
    child: Child,
    port: u16,
    pub url: String,
}

impl AwsProxy {
    pub fn start(upstream: &Moto) -> AwsProxy {
        let port = free_port();
        let script = repo_root().join("crates/paved-cli/tests/support/aws_proxy.py");
        let child = Command::new(python())
            .arg(script)
            .arg(port.to_string())
            .arg(&upstream.url)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "the AWS proxy did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        AwsProxy { child, port, url: format!("http://127.0.0.1:{port}") }
    }

    /// Calls since the last reset, by "service region operation".
    pub fn calls(&self) -> BTreeMap<String, u64> {
        let stats: Value = serde_json::from_slice(&http(self.port, "GET", "/_proxy/stats")).unwrap();
        serde_json::from_value(stats["calls"].clone()).unwrap()
    }

    pub fn throttled(&self) -> u64 {
        let stats: Value = serde_json::from_slice(&http(self.port, "GET", "/_proxy/stats")).unwrap();
        stats["throttled"].as_u64().unwrap_or(0)
    }

    pub fn reset(&self) {
        http(self.port, "POST", "/_proxy/reset");
    }

    /// Answers `percent`% of requests (except STS) with a throttling error.
    /// Answers as AWS does in the moments after a create (`aws_proxy.py`).
    pub fn propagation(&self, on: bool) {
        http(self.port, "POST", &format!("/_proxy/propagation?on={}", u8::from(on)));
    }

    /// Every operation called since the proxy started, as `SERVICE Operation`.
    pub fn seen(&self) -> Vec<String> {
        serde_json::from_slice(&http(self.port, "GET", "/_proxy/seen")).unwrap()
    }

    /// How many of those answers were given, by error code.
    pub fn injected(&self) -> BTreeMap<String, u64> {
        serde_json::from_slice(&http(self.port, "GET", "/_proxy/injected")).unwrap()
    }

    pub fn faults(&self, percent: u32) {
        http(self.port, "POST", &format!("/_proxy/faults?percent={percent}"));
    }

    /// `CreateNatGateway` answers (or no longer answers) a gateway that failed.
    pub fn nat_fails(&self, on: bool) {
        http(self.port, "POST", &format!("/_proxy/nat?fail={}", u8::from(on)));
    }

    /// `DescribeAvailabilityZones` leaves these zones out from now on (an
    /// account that lacks those zone letters).
    pub fn drop_zones(&self, zones: &[&str]) {
        http(self.port, "POST", &format!("/_proxy/zones?drop={}", zones.join(",")));
    }
}

impl Drop for AwsProxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether an AWS operation changes something (by AWS's naming).
pub fn mutating(call: &str) -> bool {
    let op = call.rsplit(' ').next().unwrap_or_default();
    let method = call.split(' ').nth(2).unwrap_or_default();
    let reads = ["Describe", "Get", "List", "Head", "AssumeRoleWithWebIdentity"];
    if ["GET", "HEAD"].contains(&method) {
        return false;
    }
    if ["POST", "PUT", "DELETE", "PATCH"].contains(&method) {
        return true;
    }
    !reads.iter().any(|r| op.starts_with(r))
}

/// A real Git server (`git daemon`, receive-pack enabled) on 127.0.0.1
/// serving one empty bare repository; stopped when dropped. Pushes and
/// fetches go over the `git://` protocol, not a path on disk.
/// A temporary directory holding `repos/deployments.git`, an empty bare
/// repository on branch `main`; the directory and `repos`.
fn bare_repository(prefix: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::Builder::new().prefix(prefix).tempdir().unwrap();
    let repos = dir.path().join("repos");
    let init =
        Command::new("git").args(["init", "-q", "--bare", "-b", "main"]).arg(repos.join("deployments.git")).status();
    assert!(init.is_ok_and(|s| s.success()), "the GitOps tests need git (Debian package git)");
    (dir, repos)
}

/// Runs git on the bare repository of a [`bare_repository`] directory; its output.
fn git_in(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git").arg("--git-dir").arg(dir.join("repos/deployments.git")).args(args).output().unwrap();
    assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

pub struct GitServer {
    child: Child,
    pub dir: tempfile::TempDir,
    pub url: String,
}

impl GitServer {
    pub fn start() -> GitServer {
        let (dir, repos) = bare_repository("paved-git-");
        let port = free_port();
        let child = Command::new("git")
            .args(["daemon", "--export-all", "--enable=receive-pack", "--reuseaddr", "--listen=127.0.0.1"])
            .arg(format!("--port={port}"))
            .arg(format!("--base-path={}", repos.display()))
            .arg(&repos)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("git daemon (Debian package git)");
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "git daemon did not listen on 127.0.0.1:{port}");
            std::thread::sleep(Duration::from_millis(20));
        }
        GitServer { child, dir, url: format!("git://127.0.0.1:{port}/deployments.git") }
    }

    /// Runs git on the server's bare repository (what is really there).
    pub fn git(&self, args: &[&str]) -> String {
        git_in(self.dir.path(), args)
    }
}

impl Drop for GitServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The example accounts, `aws-eu` with a GitOps repository (`url`, else
/// the example's own address, which only rendering may use: it is never
/// reached).
pub fn accounts_with_gitops(url: Option<&str>) -> String {
    let accounts = std::fs::read_to_string(repo_root().join("examples/platform/accounts.yaml")).unwrap();
    let url = url.unwrap_or("https://git.example.com/platform/deployments.git");
    let role = "      roleArn: arn:aws:iam::123456789012:role/paved-provisioner\n";
    assert!(accounts.contains(role), "the example account changed: {accounts}");
    accounts.replace(role, &format!("{role}  gitops:\n    repository: {url}\n    branch: main\n    path: clusters\n"))
}

/// The digest the pinned examples run.
pub const DIGEST: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

/// Records the examples with every service's image pinned by digest (as a
/// team that builds once writes them) and, with `gitops`, the AWS account's
/// GitOps repository at that URL.
pub fn pinned_examples(p: &Platform, gitops: Option<&str>) {
    p.ok_with_input(&["apply", "-f", "-"], &accounts_with_gitops(gitops));
    p.ok(&[
        "apply",
        "-f",
        "examples/platform/blueprint-web-service-standard.yaml",
        "-f",
        "examples/platform/teams.yaml",
        "-f",
        "examples/environments",
    ]);
    let services = repo_root().join("examples/services");
    let mut files: Vec<PathBuf> = std::fs::read_dir(services).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    for file in files {
        let text = std::fs::read_to_string(file).unwrap();
        let pinned: String = text
            .lines()
            .map(|l| match l.trim_start().strip_prefix("image: ") {
                Some(image) => {
                    let repo = image.rsplit_once(':').map_or(image, |(r, _)| r);
                    format!("{}image: {repo}@{DIGEST}", &l[..l.len() - l.trim_start().len()])
                }
                None => l.to_string(),
            })
            .collect::<Vec<_>>()
            .join("\n");
        p.ok_with_input(&["apply", "-f", "-"], &pinned);
    }
}

/// The emulator's dummy root: used by tests only, to install the trust (as
/// a platform engineer would once) and to look at what exists.
pub const AWS_ROOT: [(&str, &str); 3] =
    [("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing"), ("AWS_DEFAULT_REGION", "eu-central-1")];

/// Runs Python with boto3 as the emulator's root; its standard output.
pub fn py(code: &str, args: &[&str]) -> String {
    let out =
        Command::new(python()).arg("-c").arg(code).args(args).envs(AWS_ROOT).stdin(Stdio::null()).output().unwrap();
    assert!(out.status.success(), "python failed:\n{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// Installs the OIDC provider and role from `paved account trust-policy`.
pub const TRUST: &str = r#"
import json, sys, boto3
endpoint, setup = sys.argv[1], json.loads(sys.argv[2])
iam = boto3.client("iam", endpoint_url=endpoint)
provider = setup["oidc_provider"]
iam.create_open_id_connect_provider(Url=provider["url"], ClientIDList=provider["client_ids"])
iam.create_role(RoleName=setup["role_arn"].split("/")[-1], AssumeRolePolicyDocument=json.dumps(setup["trust_policy"]))
"#;

/// A real OCI registry: Debian's `docker-registry` (distribution 2.8) on
/// 127.0.0.1, filesystem storage in a temporary directory, stopped when dropped.
pub struct OciRegistry {
    child: Child,
    pub dir: tempfile::TempDir,
    pub url: String,
}

impl OciRegistry {
    pub fn start() -> OciRegistry {
        let dir = tempfile::Builder::new().prefix("paved-registry-").tempdir().unwrap();
        let port = free_port();
        let config = dir.path().join("config.yml");
        let storage = dir.path().join("data");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\n\
                 http:\n  addr: 127.0.0.1:{port}\n",
                storage.display()
            ),
        )
        .unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("the artifact tests need Debian's docker-registry package (distribution 2.8)");
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "docker-registry did not listen on 127.0.0.1:{port}");
            std::thread::sleep(Duration::from_millis(20));
        }
        OciRegistry { child, dir, url: format!("http://127.0.0.1:{port}") }
    }

    /// The manifest `digest` of `repository` as any client is served it, if the registry has it.
    pub fn manifest(&self, repository: &str, digest: &str) -> Option<Vec<u8>> {
        let port: u16 = self.url.rsplit(':').next().unwrap().parse().unwrap();
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        write!(
            s,
            "GET /v2/{repository}/manifests/{digest} HTTP/1.0\r\nHost: 127.0.0.1\r\n\
             Accept: application/vnd.oci.image.manifest.v1+json\r\n\r\n"
        )
        .unwrap();
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).unwrap();
        let r = parse_response(&raw)?;
        (r.status == 200).then_some(r.body)
    }
}

impl Drop for OciRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The example account's ECR registry in a region.
pub fn ecr(region: &str) -> String {
    format!("123456789012.dkr.ecr.{region}.amazonaws.com")
}

/// What a cluster deploy needs on AWS: moto for ECR's API (repositories,
/// `GetAuthorizationToken`) with the account's trust installed, and a real
/// registry for each of the examples' regions, which paved reaches through
/// `PAVED_REGISTRY_ENDPOINTS` while manifests keep ECR's names.
pub struct CloudArtifacts {
    pub moto: Moto,
    /// eu-central-1 (eu-dev), eu-west-1 (eu-staging, eu-prod).
    pub registries: [OciRegistry; 2],
}

impl CloudArtifacts {
    pub fn start(p: &mut Platform) -> CloudArtifacts {
        let moto = Moto::start();
        let setup = p.ok(&["account", "trust-policy", "aws-eu", "-o", "json"]);
        py(TRUST, &[&moto.url, &setup]);
        let registries = [OciRegistry::start(), OciRegistry::start()];
        let endpoints =
            format!("{}={},{}={}", ecr("eu-central-1"), registries[0].url, ecr("eu-west-1"), registries[1].url);
        for (k, v) in [
            ("AWS_ENDPOINT_URL", moto.url.clone()),
            ("PAVED_REGISTRY_ENDPOINTS", endpoints),
            ("AWS_ACCESS_KEY_ID", "AKIASTATICKEYNOTUSED".into()),
            ("AWS_SECRET_ACCESS_KEY", "static-secret-not-used".into()),
        ] {
            p.env.push((k.into(), v));
        }
        CloudArtifacts { moto, registries }
    }

    /// ECR's settings of a repository in a region: (tag mutability, scan on push).
    pub fn repository(&self, region: &str, name: &str) -> Option<(String, bool)> {
        let out = py(
            r#"
import json, sys, boto3
ecr = boto3.client("ecr", endpoint_url=sys.argv[1], region_name=sys.argv[2])
try:
    r = ecr.describe_repositories(repositoryNames=[sys.argv[3]])["repositories"][0]
    print(json.dumps([r["imageTagMutability"], r["imageScanningConfiguration"]["scanOnPush"]]))
except ecr.exceptions.RepositoryNotFoundException:
    print("null")
"#,
            &[&self.moto.url, region, name],
        );
        serde_json::from_str::<Option<(String, bool)>>(out.trim()).unwrap()
    }
}

/// A Git server over smart HTTP that wants a password
/// (`tests/support/git_http.py`: `git http-backend` behind HTTP Basic), on
/// 127.0.0.1; every request it saw is in [`GitHttpServer::requests`].
pub struct GitHttpServer {
    child: Child,
    pub dir: tempfile::TempDir,
    pub url: String,
    log: PathBuf,
}

impl GitHttpServer {
    pub fn start(user: &str, password: &str) -> GitHttpServer {
        let (dir, repos) = bare_repository("paved-git-http-");
        let port = free_port();
        let log = dir.path().join("requests.log");
        let child = Command::new(python())
            .arg(repo_root().join("crates/paved-cli/tests/support/git_http.py"))
            .args([&port.to_string(), repos.to_str().unwrap(), user, password])
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "git_http.py did not listen on 127.0.0.1:{port}");
            std::thread::sleep(Duration::from_millis(20));
        }
        GitHttpServer { child, dir, url: format!("http://127.0.0.1:{port}/deployments.git"), log }
    }

    /// Runs git on the server's bare repository (what is really there).
    pub fn git(&self, args: &[&str]) -> String {
        git_in(self.dir.path(), args)
    }

    /// `METHOD PATH STATUS AUTHORIZED` per request, in order.
    pub fn requests(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for GitHttpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Every file under `dir` whose bytes contain `needle`.
pub fn files_containing(dir: &Path, needle: &[u8]) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let path = e.path();
            if path.is_dir() {
                stack.push(path);
            } else if std::fs::read(&path).is_ok_and(|b| b.windows(needle.len()).any(|w| w == needle)) {
                out.push(path);
            }
        }
    }
    out
}

/// The account's public zone of the examples' domain (certificates are validated there).
pub const ZONE: &str = r#"
import sys, boto3
boto3.client("route53", endpoint_url=sys.argv[1]).create_hosted_zone(Name="example.com", CallerReference="paved-tests")
"#;

/// POSTs a GitHub delivery to the server, signed with `secret` as GitHub signs (HMAC-SHA256).
pub fn github_delivery(p: &Platform, event: &str, id: &str, payload: &Value, secret: &str) -> Response {
    use hmac::{KeyInit, Mac};
    let body = serde_json::to_vec(payload).unwrap();
    let mut mac = <hmac::Hmac<sha2::Sha256> as KeyInit>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(&body);
    let signature = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
    let headers = [
        ("X-GitHub-Event", event),
        ("X-GitHub-Delivery", id),
        ("X-Hub-Signature-256", signature.as_str()),
        ("Content-Type", "application/json"),
    ];
    p.request("POST", "/api/v1/webhooks/github", None, &headers, &body)
}

/// Polls `f` every 250 ms until it gives a value; fails naming `what` after `seconds`.
pub fn wait_for<T>(what: &str, seconds: u64, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(seconds);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(std::time::Instant::now() < deadline, "timed out after {seconds} s waiting for {what}");
        std::thread::sleep(std::time::Duration::from_millis(250));
    }
}

/// `paved down` when the test ends, however it ends.
pub struct Down(Command);

impl Down {
    pub fn of(p: &Platform) -> Down {
        Down(p.command(&["down"]))
    }
}

impl Drop for Down {
    fn drop(&mut self) {
        let _ = self.0.output();
    }
}
