//! `local.redis`: one Redis server per Score resource, password required,
//! from this machine's `redis-server`.
//!
//! Under `envs/ENV/redis/KEY/`: `state.json` (port and generated password,
//! 0600, written before the server starts so a crashed apply reuses them)
//! and `redis.conf` (0600). On the process runtime the server runs under a
//! supervisor on the environment's address; on the docker runtime in a
//! container attached only to the environment's network, reachable there
//! as `redis-KEY:6379`.

use crate::Config;
use crate::fsutil;
use crate::supervisor::{self, ContainerSpec, Spec};
use async_trait::async_trait;
use paved_engine::{Driver, DriverError, Observation, Outputs, Resource};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

const CONTAINER_PORT: u16 = 6379;
const CONTAINER_DIR: &str = "/var/lib/redis";

#[derive(Debug, Serialize, Deserialize)]
struct State {
    port: u16,
    password: String,
}

pub struct RedisDriver {
    pub config: Arc<Config>,
}

fn retry(e: impl std::fmt::Display) -> DriverError {
    DriverError::Retryable(e.to_string())
}

fn is_docker(r: &Resource) -> bool {
    r.properties["runtime"] == "docker"
}

/// `redis-server` from PATH, or an error naming the package.
fn redis_server() -> Result<PathBuf, DriverError> {
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join("redis-server"))
        .find(|p| p.is_file())
        .ok_or_else(|| {
            DriverError::Permanent("`redis-server` is not installed: install the Debian package `redis-server`".into())
        })
}

/// Sends `AUTH password` and `PING`: `Ok(true)` when both succeed,
/// `Ok(false)` when the server answers but refuses the password.
fn auth_ping(host: &str, port: u16, password: &str) -> Result<bool, String> {
    let addr = std::net::ToSocketAddrs::to_socket_addrs(&(host, port))
        .map_err(|e| e.to_string())?
        .next()
        .ok_or("no address")?;
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1)).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(2))).map_err(|e| e.to_string())?;
    let cmd = format!("*2\r\n$4\r\nAUTH\r\n${}\r\n{password}\r\n*1\r\n$4\r\nPING\r\n", password.len());
    s.write_all(cmd.as_bytes()).map_err(|e| e.to_string())?;
    let mut answer = Vec::new();
    let mut buf = [0u8; 256];
    while !answer.ends_with(b"\r\n") || answer.iter().filter(|b| **b == b'\n').count() < 2 {
        match s.read(&mut buf).map_err(|e| e.to_string())? {
            0 => break,
            n => answer.extend_from_slice(&buf[..n]),
        }
    }
    Ok(String::from_utf8_lossy(&answer).starts_with("+OK\r\n+PONG"))
}

impl RedisDriver {
    fn dir(&self, r: &Resource) -> PathBuf {
        self.config.env_dir(&r.environment).join("redis").join(&r.name)
    }

    fn container(&self, r: &Resource) -> String {
        self.config.docker_name(&r.environment, &["redis", &r.name])
    }

    fn alias(r: &Resource) -> String {
        format!("redis-{}", r.name)
    }

    /// Where workloads connect: the environment's address, or the alias on its network.
    fn endpoint(r: &Resource, state: &State) -> (String, u16) {
        if is_docker(r) {
            (Self::alias(r), CONTAINER_PORT)
        } else {
            (r.properties["address"].as_str().unwrap_or("127.0.0.1").to_string(), state.port)
        }
    }

    fn outputs(r: &Resource, state: &State) -> Outputs {
        let (host, port) = Self::endpoint(r, state);
        Outputs::from([
            ("host".to_string(), json!(host)),
            ("port".to_string(), json!(port)),
            // The user `requirepass` authenticates (Redis 6+ ACL), as score-compose names it.
            ("username".to_string(), json!("default")),
            ("password".to_string(), json!(state.password)),
        ])
    }

    /// The state of a resource, created (port, password) on first use.
    fn state(&self, r: &Resource) -> Result<State, DriverError> {
        let file = self.dir(r).join("state.json");
        if let Some(s) = fsutil::read_json::<State>(&file).map_err(DriverError::Permanent)? {
            return Ok(s);
        }
        let port = if is_docker(r) {
            CONTAINER_PORT
        } else {
            let address = r.properties["address"].as_str().unwrap_or("127.0.0.1");
            std::net::TcpListener::bind((address, 0)).and_then(|l| l.local_addr()).map_err(retry)?.port()
        };
        let s = State { port, password: fsutil::random_password(32) };
        fsutil::write_json(&file, &s, true).map_err(retry)?;
        Ok(s)
    }

    fn write_conf(&self, r: &Resource, state: &State, dir_inside: &str) -> Result<PathBuf, DriverError> {
        let bind = if is_docker(r) { "0.0.0.0" } else { r.properties["address"].as_str().unwrap_or("127.0.0.1") };
        // Not persisted: a cache or queue of a development environment, like the process runtime's memory.
        let conf = format!(
            "bind {bind}\nport {}\nprotected-mode yes\nrequirepass {}\nsave \"\"\nappendonly no\ndir {dir_inside}\n\
             daemonize no\nlogfile \"\"\n",
            state.port, state.password
        );
        let path = self.dir(r).join("redis.conf");
        fsutil::write_atomic(&path, conf.as_bytes(), true).map_err(retry)?;
        Ok(path)
    }

    async fn start_process(&self, r: &Resource, state: &State) -> Result<(), DriverError> {
        let dir = self.dir(r);
        if supervisor::is_running(&dir) {
            return Ok(());
        }
        let conf = self.write_conf(r, state, &dir.display().to_string())?;
        let spec = Spec {
            containers: vec![ContainerSpec {
                name: "redis".into(),
                program: redis_server()?,
                args: vec![conf.display().to_string()],
                env: [("PATH".to_string(), "/usr/local/bin:/usr/bin:/bin".to_string())].into(),
                cwd: dir.clone(),
                liveness: None,
                sandbox: None,
            }],
        };
        fsutil::write_json(&supervisor::spec_path(&dir), &spec, false).map_err(retry)?;
        supervisor::start(&self.config.exe, &dir).await.map_err(retry)
    }

    async fn start_container(&self, r: &Resource, state: &State) -> Result<(), DriverError> {
        let docker = crate::docker::engine().await?;
        self.write_conf(r, state, CONTAINER_DIR)?;
        // Not canonicalised: Debian's redis-server is a link to a binary that acts by its name.
        let server = redis_server()?;
        let dir = self.dir(r);
        let container = crate::docker::PlatformContainer {
            name: self.container(r),
            env: &r.environment,
            alias: Self::alias(r),
            labels: &[(crate::docker::LABEL_SERVICE, "redis"), (crate::docker::LABEL_CONTAINER, &r.name)],
            dir: &dir,
            mount: CONTAINER_DIR,
            cmd: vec![server.display().to_string(), format!("{CONTAINER_DIR}/redis.conf")],
        };
        let image = |_, _| redis_image(&docker, &server);
        crate::docker::ensure_platform_container(&docker, &self.config, container, image).await
    }

    /// Whether the server runs and still takes the password paved issued.
    async fn check(&self, r: &Resource, state: &State) -> Result<(bool, bool), DriverError> {
        if is_docker(r) {
            let docker = crate::docker::engine().await?;
            let found = docker
                .inspect_container(&self.container(r), None::<bollard::query_parameters::InspectContainerOptions>)
                .await;
            let running = found.is_ok_and(|c| c.state.and_then(|s| s.running).unwrap_or(false));
            if !running {
                return Ok((false, true));
            }
            // Not reachable from this machine: asked from inside, with the client the image carries.
            let cli = redis_server()?.with_file_name("redis-cli");
            let ping = vec![
                cli.display().to_string(),
                "--no-auth-warning".into(),
                "-a".into(),
                state.password.clone(),
                "ping".into(),
            ];
            let answer = crate::docker::exec(&docker, &self.container(r), ping).await;
            return Ok(match answer {
                Some((_, out)) if out.contains("PONG") => (true, true),
                Some((_, out)) if out.contains("NOAUTH") || out.contains("WRONGPASS") => (true, false),
                // Starting, or the client is not where expected: nothing to say about the password.
                _ => (true, true),
            });
        }
        if !supervisor::is_running(&self.dir(r)) {
            return Ok((false, true));
        }
        let (host, port) = Self::endpoint(r, state);
        let password = state.password.clone();
        let ok = tokio::task::spawn_blocking(move || auth_ping(&host, port, &password)).await.map_err(retry)?;
        Ok(match ok {
            Ok(accepted) => (true, accepted),
            // Started, not listening yet.
            Err(_) => (true, true),
        })
    }
}

/// An image running this machine's `redis-server`.
async fn redis_image(docker: &bollard::Docker, server: &Path) -> Result<String, DriverError> {
    use crate::docker::rootfs::{ImageConfig, RootFs};
    let server = server.to_path_buf();
    let fs = tokio::task::spawn_blocking(move || -> Result<RootFs, String> {
        let mut fs = RootFs::new();
        fs.file(&server, &server)?;
        // The client too: drift asks the server from inside (`docker exec … redis-cli`), as people can.
        if let Some(cli) = server.parent().map(|d| d.join("redis-cli")).filter(|p| p.is_file()) {
            fs.file(&cli, &cli)?;
        }
        fs.dir(CONTAINER_DIR, 0o755, 0);
        fs.with_libraries()?;
        Ok(fs)
    })
    .await
    .map_err(retry)?
    .map_err(DriverError::Permanent)?;
    fs.build(docker, "paved-local/redis", &ImageConfig::default()).await.map_err(retry)
}

#[async_trait]
impl Driver for RedisDriver {
    async fn observe(&self, r: &Resource) -> Result<Observation, DriverError> {
        let Some(state) =
            fsutil::read_json::<State>(&self.dir(r).join("state.json")).map_err(DriverError::Permanent)?
        else {
            return Ok(Observation::Absent);
        };
        let (running, accepted) = self.check(r, &state).await?;
        let mut properties = r.properties.clone();
        properties["state"] = json!(if running { "running" } else { "stopped" });
        properties["credentials"] = json!(if accepted { "issued-by-paved" } else { "changed-outside-paved" });
        let ready = running && accepted;
        Ok(Observation::Present { properties, outputs: Self::outputs(r, &state), ready })
    }

    async fn create(&self, r: &Resource) -> Result<Outputs, DriverError> {
        let state = self.state(r)?;
        // A password changed out of band is repaired by a restart with paved's configuration.
        let changed = matches!(self.check(r, &state).await?, (true, false));
        if is_docker(r) {
            if changed {
                let docker = crate::docker::engine().await?;
                docker
                    .restart_container(&self.container(r), None::<bollard::query_parameters::RestartContainerOptions>)
                    .await
                    .map_err(crate::docker::api_err("restarting redis"))?;
            }
            self.start_container(r, &state).await?;
        } else {
            if changed {
                supervisor::stop(&self.dir(r)).await.map_err(retry)?;
            }
            self.start_process(r, &state).await?;
        }
        Ok(Self::outputs(r, &state))
    }

    async fn update(&self, r: &Resource) -> Result<Outputs, DriverError> {
        self.create(r).await
    }

    async fn delete(&self, r: &Resource) -> Result<(), DriverError> {
        if is_docker(r) {
            let docker = crate::docker::engine().await?;
            crate::docker::remove_container(&docker, &self.container(r)).await?;
        }
        let dir = self.dir(r);
        supervisor::stop(&dir).await.map_err(retry)?;
        crate::remove_dir(&dir).map_err(retry)
    }
}
