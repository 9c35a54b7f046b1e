//! `local.rabbitmq.server` and `local.rabbitmq.vhost`: one RabbitMQ node
//! managed by paved (Debian `rabbitmq-server`), a virtual host and a user
//! per Score `amqp` resource — the shape of the platform PostgreSQL.
//!
//! | step | how |
//! |------|-----|
//! | start | `rabbitmq-server` in its own session with everything in its 0700 directory (`RABBITMQ_MNESIA_BASE`, logs, config, an Erlang cookie of its own), no plugins, AMQP on 127.0.0.1 only; its node name and distribution port are its own, so it never meets the machine's RabbitMQ |
//! | secure | the default `guest` user is deleted on every start |
//! | administer | `rabbitmqctl` against that node (passwords on stdin, never on a command line every local user can read) |
//! | a vhost | `add_vhost ENV_KEY`, `add_user ENV_KEY` with a generated password, permissions `.*` on that vhost only: one environment's credentials open no other vhost |
//! | stop | `rabbitmqctl stop` when no vhost of paved is left (`paved down`) |
//!
//! RabbitMQ runs as the `rabbitmq` system user (made by the Debian
//! package) when paved runs as root, in `/var/lib/paved/rabbitmq-HASH`.

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

const MISSING: &str = "the platform AMQP broker is RabbitMQ, which is not installed: install the Debian package \
                       `rabbitmq-server`";
/// Where Debian puts the scripts (`/usr/sbin/rabbitmqctl` is a wrapper that insists on the system user).
const SCRIPTS: &str = "/usr/lib/rabbitmq/bin";

pub struct Server {
    /// Holds `mnesia/`, `log/`, the config, the cookie, `port`, `dist-port`.
    dir: PathBuf,
    lock: PathBuf,
    /// The node's name, unique to this data directory.
    node: String,
    run_as: Option<String>,
}

fn script(name: &str) -> Result<PathBuf, String> {
    let p = PathBuf::from(SCRIPTS).join(name);
    if p.is_file() { Ok(p) } else { crate::sandbox::find(name).ok_or_else(|| MISSING.to_string()) }
}

impl Server {
    pub fn new(config: &Config) -> Server {
        let hash = hex::encode(Sha256::digest(config.data_dir.to_string_lossy().as_bytes()));
        let (dir, run_as) = if fsutil::is_root() {
            (PathBuf::from("/var/lib/paved").join(format!("rabbitmq-{}", &hash[..12])), Some("rabbitmq".to_string()))
        } else {
            (config.local_dir().join("rabbitmq"), None)
        };
        Server {
            lock: config.local_dir().join("rabbitmq.lock"),
            dir,
            node: format!("paved-{}@localhost", &hash[..12]),
            run_as,
        }
    }

    fn read_port(&self, file: &str) -> Option<u16> {
        std::fs::read_to_string(self.dir.join(file)).ok().and_then(|s| s.trim().parse().ok())
    }

    fn port(&self) -> Option<u16> {
        self.read_port("port")
    }

    pub fn initialised(&self) -> bool {
        self.dir.join("rabbitmq.conf").is_file()
    }

    /// Whether its AMQP listener accepts connections.
    pub fn running(&self) -> bool {
        self.port().is_some_and(|p| std::net::TcpStream::connect(("127.0.0.1", p)).is_ok())
    }

    /// A command for one of RabbitMQ's scripts, as its user, with only the
    /// environment that names this node.
    fn command(&self, name: &str) -> Result<Command, String> {
        let program = script(name)?;
        let mut c = match &self.run_as {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.args(["-u", user, "--"]).arg(program);
                c
            }
            None => Command::new(program),
        };
        c.env_clear()
            .env("PATH", "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin")
            .env("HOME", &self.dir)
            .env("LANG", "C.UTF-8")
            .env("RABBITMQ_NODENAME", &self.node)
            .env("RABBITMQ_MNESIA_BASE", self.dir.join("mnesia"))
            .env("RABBITMQ_LOG_BASE", self.dir.join("log"))
            .env("RABBITMQ_CONFIG_FILE", self.dir.join("rabbitmq"))
            .env("RABBITMQ_ENABLED_PLUGINS_FILE", self.dir.join("enabled_plugins"))
            .env("RABBITMQ_PID_FILE", self.dir.join("rabbitmq.pid"));
        if let Some(dist) = self.read_port("dist-port") {
            c.env("RABBITMQ_DIST_PORT", dist.to_string());
        }
        Ok(c)
    }

    /// Writes the node's configuration unless it exists.
    fn init_blocking(&self) -> Result<(), String> {
        if self.initialised() {
            return Ok(());
        }
        script("rabbitmq-server")?;
        crate::remove_dir(&self.dir)?;
        std::fs::create_dir_all(&self.dir).map_err(|e| format!("cannot create {}: {e}", self.dir.display()))?;
        std::fs::set_permissions(&self.dir, std::os::unix::fs::PermissionsExt::from_mode(0o700))
            .map_err(|e| format!("cannot restrict {}: {e}", self.dir.display()))?;
        let (port, dist) = (fsutil::free_port("RabbitMQ")?, fsutil::free_port("RabbitMQ")?);
        fsutil::write_atomic(&self.dir.join("port"), port.to_string().as_bytes(), false)?;
        fsutil::write_atomic(&self.dir.join("dist-port"), dist.to_string().as_bytes(), false)?;
        fsutil::write_atomic(&self.dir.join("enabled_plugins"), b"[].\n", false)?;
        let cookie = self.dir.join(".erlang.cookie");
        fsutil::write_atomic(&cookie, fsutil::random_password(32).as_bytes(), true)?;
        std::fs::set_permissions(&cookie, std::os::unix::fs::PermissionsExt::from_mode(0o400))
            .map_err(|e| e.to_string())?;
        // Written last: its presence says the directory is complete.
        fsutil::write_atomic(
            &self.dir.join("rabbitmq.conf"),
            format!("listeners.tcp.1 = 127.0.0.1:{port}\nlog.console = false\n").as_bytes(),
            false,
        )?;
        if let Some(user) = &self.run_as {
            let out = Command::new("chown").arg("-R").arg(user).arg(&self.dir).output();
            if !out.as_ref().is_ok_and(|o| o.status.success()) {
                return Err(format!(
                    "paved runs as root and runs the platform RabbitMQ as the system user `{user}`, which is \
                     missing ({MISSING})"
                ));
            }
        }
        Ok(())
    }

    /// Starts the node unless it runs; returns its AMQP port.
    fn start_blocking(&self) -> Result<u16, String> {
        let port = self.port().ok_or("the platform RabbitMQ has no port recorded")?;
        if self.running() {
            return Ok(port);
        }
        let mut c = self.command("rabbitmq-server")?;
        // Its own session: it outlives the CLI that started it.
        std::os::unix::process::CommandExt::process_group(&mut c, 0);
        let mut child = c
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start rabbitmq-server: {e}"))?;
        for _ in 0..480 {
            if self.running() {
                std::thread::spawn(move || child.wait());
                // The default `guest` user is never needed: each resource has its own.
                let _ = self.ctl_blocking(&["delete_user", "guest"], None);
                return Ok(port);
            }
            if let Ok(Some(status)) = child.try_wait() {
                return Err(format!("RabbitMQ did not start ({status}; logs: {})", self.dir.join("log").display()));
            }
            std::thread::sleep(Duration::from_millis(125));
        }
        Err(format!("RabbitMQ did not accept connections within 60 s (logs: {})", self.dir.join("log").display()))
    }

    /// Runs `rabbitmqctl ARGS` against the node, `stdin` written to it; its stdout.
    fn ctl_blocking(&self, args: &[&str], stdin: Option<&str>) -> Result<String, String> {
        let mut c = self.command("rabbitmqctl")?;
        c.args(["-n", &self.node, "-q"]).args(args).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = c.spawn().map_err(|e| format!("cannot run rabbitmqctl: {e}"))?;
        if let Some(mut input) = child.stdin.take() {
            use std::io::Write;
            let _ = input.write_all(stdin.unwrap_or_default().as_bytes());
        }
        let out = child.wait_with_output().map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(format!("rabbitmqctl {}: {}", args.first().unwrap_or(&""), String::from_utf8_lossy(&out.stderr).trim()))
        }
    }

    async fn ctl(self: &Arc<Self>, args: &[&str], stdin: Option<&str>) -> Result<String, DriverError> {
        let (me, args, stdin) =
            (self.clone(), args.iter().map(|a| a.to_string()).collect::<Vec<_>>(), stdin.map(str::to_string));
        tokio::task::spawn_blocking(move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            me.ctl_blocking(&args, stdin.as_deref())
        })
        .await
        .map_err(|e| DriverError::Retryable(e.to_string()))?
        .map_err(DriverError::Retryable)
    }

    /// Creates the node's files if needed, starts it if stopped; its port.
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

    /// Stops the node and removes its files (`paved down`, or no vhost left).
    pub async fn destroy(self: &Arc<Self>) -> Result<(), String> {
        if self.running() {
            self.ctl(&["stop"], None).await.map_err(|e| e.to_string())?;
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

    /// Shared by every environment: stopped and removed when no vhost but `/` is left.
    async fn delete(&self, _: &Resource) -> Result<(), DriverError> {
        if !self.server.running() {
            return Ok(());
        }
        let vhosts = self.server.ctl(&["list_vhosts", "name"], None).await?;
        if vhosts.lines().any(|v| !v.trim().is_empty() && v.trim() != "/" && v.trim() != "name") {
            return Ok(());
        }
        self.server.destroy().await.map_err(DriverError::Retryable)
    }
}

pub struct VhostDriver {
    pub server: Arc<Server>,
    pub config: Arc<Config>,
}

/// A name paved generated (`ENV_KEY`), checked before it goes on a command line.
fn ident(r: &Resource, field: &str) -> Result<String, DriverError> {
    let v = r.properties[field].as_str().unwrap_or_default();
    let ok = !v.is_empty()
        && v.len() <= 128
        && v.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        && !v.starts_with('-');
    if ok {
        Ok(v.to_string())
    } else {
        Err(DriverError::Permanent(format!(
            "`{v}` cannot name a RabbitMQ {field}: use lower-case letters, digits and `_`"
        )))
    }
}

impl VhostDriver {
    fn credentials_file(&self, r: &Resource) -> PathBuf {
        self.config.env_dir(&r.environment).join("rabbitmq").join(format!("{}.json", r.name))
    }

    fn outputs(&self, port: u16, vhost: &str, user: &str, password: &str) -> Outputs {
        let mut out = self.server.endpoint(port);
        out.insert("vhost".into(), json!(vhost));
        out.insert("username".into(), json!(user));
        out.insert("password".into(), json!(password));
        out
    }
}

#[async_trait]
impl Driver for VhostDriver {
    async fn observe(&self, r: &Resource) -> Result<Observation, DriverError> {
        let (vhost, user) = (ident(r, "vhost")?, ident(r, "username")?);
        let Some(port) = self.server.port().filter(|_| self.server.running()) else {
            return Ok(Observation::Absent);
        };
        let Some(password) = fsutil::read_kept_password(&self.credentials_file(r)).map_err(DriverError::Permanent)?
        else {
            return Ok(Observation::Absent);
        };
        let vhosts = self.server.ctl(&["list_vhosts", "name"], None).await?;
        if !vhosts.lines().any(|v| v.trim() == vhost) {
            return Ok(Observation::Absent);
        }
        let mut properties = r.properties.clone();
        let users = self.server.ctl(&["list_users"], None).await?;
        if !users.lines().any(|l| l.split_whitespace().next() == Some(user.as_str())) {
            properties["username"] = serde_json::Value::Null;
        }
        let authenticated = self.server.ctl(&["authenticate_user", &user], Some(&password)).await.is_ok();
        properties["credentials"] =
            if authenticated { json!("issued-by-paved") } else { json!("changed-outside-paved") };
        Ok(Observation::Present { properties, outputs: self.outputs(port, &vhost, &user, &password), ready: true })
    }

    async fn create(&self, r: &Resource) -> Result<Outputs, DriverError> {
        let (vhost, user) = (ident(r, "vhost")?, ident(r, "username")?);
        let port = self.server.ensure().await?;
        let password = fsutil::kept_password(&self.credentials_file(r)).map_err(DriverError::Retryable)?;
        self.server.ctl(&["add_vhost", &vhost], None).await?;
        let users = self.server.ctl(&["list_users"], None).await?;
        let verb = if users.lines().any(|l| l.split_whitespace().next() == Some(user.as_str())) {
            "change_password"
        } else {
            "add_user"
        };
        self.server.ctl(&[verb, &user], Some(&password)).await?;
        self.server.ctl(&["set_permissions", "-p", &vhost, &user, ".*", ".*", ".*"], None).await?;
        Ok(self.outputs(port, &vhost, &user, &password))
    }

    async fn update(&self, r: &Resource) -> Result<Outputs, DriverError> {
        // Re-issues the password paved generated (repairs a changed one).
        self.create(r).await
    }

    async fn delete(&self, r: &Resource) -> Result<(), DriverError> {
        let (vhost, user) = (ident(r, "vhost")?, ident(r, "username")?);
        if self.server.running() {
            let vhosts = self.server.ctl(&["list_vhosts", "name"], None).await?;
            if vhosts.lines().any(|v| v.trim() == vhost) {
                self.server.ctl(&["delete_vhost", &vhost], None).await?;
            }
            let users = self.server.ctl(&["list_users"], None).await?;
            if users.lines().any(|l| l.split_whitespace().next() == Some(user.as_str())) {
                self.server.ctl(&["delete_user", &user], None).await?;
            }
        } else if self.server.initialised() {
            self.server.ensure().await?;
            return Err(DriverError::Retryable("started the platform RabbitMQ to delete from it".into()));
        }
        fsutil::remove_file(&self.credentials_file(r)).map_err(DriverError::Retryable)
    }
}
