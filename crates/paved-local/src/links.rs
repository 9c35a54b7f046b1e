//! The small kinds of the local provider: the environment's proxy, its
//! routes and DNS names, links between services and volumes.

use crate::Config;
use crate::fsutil;
use crate::proxy::Route;
use crate::supervisor::{self, ContainerSpec, Spec};
use async_trait::async_trait;
use paved_engine::{Driver, DriverError, Observation, Outputs, Resource};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

fn retry(e: impl std::fmt::Display) -> DriverError {
    DriverError::Retryable(e.to_string())
}

fn remove_file(path: &std::path::Path) -> Result<(), DriverError> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(retry(e)),
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct ProxyState {
    port: u16,
}

fn proxy_port(config: &Config, env: &str) -> Option<u16> {
    fsutil::read_json::<ProxyState>(&config.proxy_dir(env).join("proxy.json")).ok().flatten().map(|s| s.port)
}

/// `local.proxy`: one reverse proxy per environment on `127.0.0.1:PORT`,
/// run by a supervisor like a workload.
pub struct ProxyDriver {
    pub config: Arc<Config>,
}

#[async_trait]
impl Driver for ProxyDriver {
    async fn observe(&self, r: &Resource) -> Result<Observation, DriverError> {
        let dir = self.config.proxy_dir(&r.environment);
        let Some(port) = proxy_port(&self.config, &r.environment) else { return Ok(Observation::Absent) };
        if !supervisor::is_running(&dir) {
            return Ok(Observation::Absent);
        }
        let ready =
            tokio::task::spawn_blocking(move || crate::probe::listening("127.0.0.1", port, Duration::from_millis(300)))
                .await
                .unwrap_or(false);
        Ok(Observation::Present {
            properties: fsutil::read_json(&dir.join("properties.json")).ok().flatten().unwrap_or(Value::Null),
            outputs: Outputs::from([("port".to_string(), json!(port))]),
            ready,
        })
    }

    async fn create(&self, r: &Resource) -> Result<Outputs, DriverError> {
        let dir = self.config.proxy_dir(&r.environment);
        let port = match proxy_port(&self.config, &r.environment) {
            Some(p) => p,
            None => {
                let p = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map_err(retry)?.port();
                fsutil::write_json(&dir.join("proxy.json"), &ProxyState { port: p }, false).map_err(retry)?;
                p
            }
        };
        supervisor::stop(&dir).await.map_err(retry)?;
        let timeout = r.properties["requestTimeoutSeconds"].as_u64().filter(|s| *s > 0).unwrap_or(60);
        let routes = dir.join("routes");
        std::fs::create_dir_all(&routes).map_err(retry)?;
        let spec = Spec {
            containers: vec![ContainerSpec {
                name: "proxy".into(),
                program: self.config.exe.clone(),
                args: vec![
                    "__proxy".into(),
                    "--routes".into(),
                    routes.display().to_string(),
                    "--listen".into(),
                    format!("127.0.0.1:{port}"),
                    "--request-timeout".into(),
                    timeout.to_string(),
                ],
                env: [("PATH".to_string(), "/usr/local/bin:/usr/bin:/bin".to_string())].into(),
                cwd: dir.clone(),
                liveness: None,
                sandbox: None,
            }],
        };
        fsutil::write_json(&supervisor::spec_path(&dir), &spec, false).map_err(retry)?;
        fsutil::write_json(&dir.join("properties.json"), &r.properties, false).map_err(retry)?;
        supervisor::start(&self.config.exe, &dir).await.map_err(retry)?;
        Ok(Outputs::from([("port".to_string(), json!(port))]))
    }

    async fn update(&self, r: &Resource) -> Result<Outputs, DriverError> {
        self.create(r).await
    }

    async fn delete(&self, r: &Resource) -> Result<(), DriverError> {
        let dir = self.config.proxy_dir(&r.environment);
        supervisor::stop(&dir).await.map_err(retry)?;
        crate::remove_dir(&dir).map_err(retry)
    }
}

/// `local.route`: a route file the environment's proxy picks up.
pub struct RouteDriver {
    pub config: Arc<Config>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ServicePort {
    port: u16,
    target_port: u16,
}

impl RouteDriver {
    fn file(&self, r: &Resource) -> PathBuf {
        self.config.proxy_dir(&r.environment).join("routes").join(format!("{}.json", r.name))
    }

    fn route(&self, r: &Resource) -> Result<Route, DriverError> {
        let service = r.properties["service"].as_str().unwrap_or_default().to_string();
        let params = &r.properties["params"];
        let host =
            params["host"].as_str().map_or_else(|| format!("{service}.{}.localhost", r.environment), str::to_string);
        let path = params["path"].as_str().unwrap_or("/").to_string();
        let workload: Value =
            fsutil::read_json(&self.config.workload_dir(&r.environment, &service).join("properties.json"))
                .map_err(DriverError::Permanent)?
                .ok_or_else(|| retry(format!("service `{service}` is not running yet")))?;
        let ports: std::collections::BTreeMap<String, ServicePort> =
            serde_json::from_value(workload["ports"].clone()).unwrap_or_default();
        let wanted = params["port"].as_u64();
        let port = ports
            .values()
            .find(|p| Some(p.port as u64) == wanted)
            .or_else(|| ports.values().next())
            .ok_or_else(|| DriverError::Permanent(format!("service `{service}` declares no port to route to")))?;
        let address = workload["address"].as_str().unwrap_or("127.0.0.1");
        Ok(Route { host, path, backend: format!("{address}:{}", port.target_port), service })
    }

    fn outputs(&self, r: &Resource, route: &Route) -> Outputs {
        let port = proxy_port(&self.config, &r.environment).unwrap_or(0);
        Outputs::from([("url".to_string(), json!(format!("http://{}:{port}{}", route.host, route.path)))])
    }
}

#[async_trait]
impl Driver for RouteDriver {
    async fn observe(&self, r: &Resource) -> Result<Observation, DriverError> {
        let Some(route) = fsutil::read_json::<Route>(&self.file(r)).map_err(DriverError::Permanent)? else {
            return Ok(Observation::Absent);
        };
        // The proxy serves what the file says: a changed backend is drift.
        let properties = match self.route(r) {
            Ok(want) if want == route => r.properties.clone(),
            _ => {
                json!({"service": route.service, "params": {"host": route.host, "path": route.path, "backend": route.backend}})
            }
        };
        Ok(Observation::Present { properties, outputs: self.outputs(r, &route), ready: true })
    }

    async fn create(&self, r: &Resource) -> Result<Outputs, DriverError> {
        let route = self.route(r)?;
        fsutil::write_json(&self.file(r), &route, false).map_err(retry)?;
        Ok(self.outputs(r, &route))
    }

    async fn update(&self, r: &Resource) -> Result<Outputs, DriverError> {
        self.create(r).await
    }

    async fn delete(&self, r: &Resource) -> Result<(), DriverError> {
        remove_file(&self.file(r))
    }
}

/// A kind with no state of its own (`local.dns`, `local.service-link`): its
/// outputs follow from its properties, so it always exists and is ready.
pub struct DerivedDriver {
    pub outputs: fn(&Resource) -> Outputs,
}

#[async_trait]
impl Driver for DerivedDriver {
    async fn observe(&self, r: &Resource) -> Result<Observation, DriverError> {
        Ok(Observation::Present { properties: r.properties.clone(), outputs: (self.outputs)(r), ready: true })
    }
    async fn create(&self, r: &Resource) -> Result<Outputs, DriverError> {
        Ok((self.outputs)(r))
    }
    async fn update(&self, r: &Resource) -> Result<Outputs, DriverError> {
        Ok((self.outputs)(r))
    }
    async fn delete(&self, _: &Resource) -> Result<(), DriverError> {
        Ok(())
    }
}

/// `local.dns`: `SERVICE.ENV.localhost`, which resolves to the loopback
/// interface by convention (RFC 6761), so there is nothing to create.
pub fn dns_outputs(r: &Resource) -> Outputs {
    Outputs::from([("host".to_string(), r.properties["host"].clone())])
}

/// `local.service-link`: where another service of the environment listens.
pub fn link_outputs(r: &Resource) -> Outputs {
    let host = r.properties["address"].as_str().unwrap_or("127.0.0.1").to_string();
    let port = r.properties["port"].as_u64().unwrap_or(0);
    Outputs::from([
        ("host".to_string(), json!(host)),
        // Score's `service-port` calls it `hostname`.
        ("hostname".to_string(), json!(host)),
        ("port".to_string(), json!(port)),
        ("url".to_string(), json!(format!("http://{host}:{port}"))),
    ])
}

/// `local.volume`: a directory of the environment.
pub struct VolumeDriver {
    pub config: Arc<Config>,
}

impl VolumeDriver {
    fn dir(&self, r: &Resource) -> PathBuf {
        self.config.env_dir(&r.environment).join("volumes").join(&r.name)
    }
}

#[async_trait]
impl Driver for VolumeDriver {
    async fn observe(&self, r: &Resource) -> Result<Observation, DriverError> {
        let dir = self.dir(r);
        if !dir.is_dir() {
            return Ok(Observation::Absent);
        }
        Ok(Observation::Present {
            properties: r.properties.clone(),
            outputs: Outputs::from([("source".to_string(), json!(dir.display().to_string()))]),
            ready: true,
        })
    }
    async fn create(&self, r: &Resource) -> Result<Outputs, DriverError> {
        let dir = self.dir(r);
        std::fs::create_dir_all(&dir).map_err(retry)?;
        // Writable by the environment's workloads, which run as its own user.
        if let Some(uid) = crate::sandbox::uid_for(&r.environment) {
            std::os::unix::fs::lchown(&dir, Some(uid), Some(uid)).map_err(retry)?;
        }
        Ok(Outputs::from([("source".to_string(), json!(dir.display().to_string()))]))
    }
    async fn update(&self, r: &Resource) -> Result<Outputs, DriverError> {
        self.create(r).await
    }
    async fn delete(&self, r: &Resource) -> Result<(), DriverError> {
        crate::remove_dir(&self.dir(r)).map_err(retry)
    }
}
