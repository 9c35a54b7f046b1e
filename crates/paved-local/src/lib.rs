//! The `local` provider: environments on one machine.
//!
//! Every resource kind of [`paved_plan::local`](../paved_plan/local/index.html)
//! has a driver here. The state of the provider lives in files under
//! `DATA/local/` (one directory per environment), so a crashed apply finds
//! what it created by path: paths are the deterministic external names.
//!
//! * `local.network`: a loopback address `127.0.N.1` per environment; the
//!   environment's services bind to it, so two environments never collide.
//! * `local.postgres.cluster` / `local.postgres.database`: one PostgreSQL
//!   cluster managed by paved, one database + role per resource; a role can
//!   connect only to its own database.
//! * `local.mysql.server` / `local.mysql.database`: one MariaDB server
//!   managed by paved, one database + user per resource (`mysql`).
//! * `local.rabbitmq.server` / `local.rabbitmq.vhost`: one RabbitMQ node
//!   managed by paved, one vhost + user per resource (`amqp`).
//! * `local.redis`: a password-protected `redis-server` per resource.
//! * `local.workload`: each Score container as a supervised process run from
//!   a bundle in paved's local image store (the `process` runtime).
//! * `local.proxy` / `local.route` / `local.dns`: a reverse proxy per
//!   environment routing `SERVICE.ENV.localhost` to the services.
//! * `local.service-link` / `local.volume`: stable in-environment addresses
//!   and directories.
//!
//! Long-running parts (workloads, the proxy) run under `paved __supervise`,
//! a detached supervisor per workload that outlives the CLI, restarts its
//! processes with backoff, captures their output and is found again through
//! an exclusive lock on its directory.

pub mod docker;
pub mod fsutil;
pub mod images;
mod links;
pub mod mysql;
mod network;
pub mod postgres;
pub mod probe;
mod process;
pub mod provisioners;
pub mod proxy;
pub mod rabbitmq;
mod redis;
pub mod sandbox;
pub mod slots;
pub mod supervisor;
mod workload;

use paved_engine::Drivers;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Where the local provider keeps its state and how it starts its helpers.
#[derive(Debug, Clone)]
pub struct Config {
    /// paved's data directory; the provider uses `DATA/local/` and `DATA/images/`.
    pub data_dir: PathBuf,
    /// The `paved` executable, started as `paved __supervise DIR` and `paved __proxy …`.
    pub exe: PathBuf,
    /// PostgreSQL server binaries (`initdb`, `pg_ctl`); found on PATH or under
    /// `/usr/lib/postgresql/*/bin` when not given (`PAVED_PG_BIN`).
    pub pg_bin: Option<PathBuf>,
    /// Where the programs and Terraform modules blueprints' provisioners
    /// may name are installed (`PAVED_PROVISIONERS`, else `DATA/provisioners`).
    pub provisioners: Option<PathBuf>,
}

impl Config {
    pub fn local_dir(&self) -> PathBuf {
        self.data_dir.join("local")
    }

    /// The provisioner directory: programs and modules the administrator installed.
    pub fn provisioner_dir(&self) -> PathBuf {
        self.provisioners
            .clone()
            .or_else(|| std::env::var_os("PAVED_PROVISIONERS").map(PathBuf::from))
            .unwrap_or_else(|| self.data_dir.join("provisioners"))
    }

    pub fn env_dir(&self, env: &str) -> PathBuf {
        self.local_dir().join("envs").join(env)
    }

    pub fn workload_dir(&self, env: &str, service: &str) -> PathBuf {
        self.env_dir(env).join("workloads").join(service)
    }

    pub fn proxy_dir(&self, env: &str) -> PathBuf {
        self.env_dir(env).join("proxy")
    }

    pub fn images(&self) -> images::ImageStore {
        images::ImageStore::new(self.data_dir.join("images"))
    }

    /// Log file of one container of a service.
    pub fn log_file(&self, env: &str, service: &str, container: &str) -> PathBuf {
        supervisor::log_path(&self.workload_dir(env, service), container)
    }
}

/// Every driver of the local provider.
pub fn drivers(config: &Config) -> Drivers {
    let config = Arc::new(config.clone());
    let cluster = Arc::new(postgres::Cluster::new(&config));
    let mysql = Arc::new(mysql::Server::new(&config));
    let rabbitmq = Arc::new(rabbitmq::Server::new(&config));
    Drivers::default()
        .with("local.network", Arc::new(network::NetworkDriver { config: config.clone() }))
        .with(
            "local.postgres.cluster",
            Arc::new(postgres::ClusterDriver { cluster: cluster.clone(), config: config.clone() }),
        )
        .with("local.postgres.database", Arc::new(postgres::DatabaseDriver { cluster, config: config.clone() }))
        .with("local.mysql.server", Arc::new(mysql::ServerDriver { server: mysql.clone() }))
        .with("local.mysql.database", Arc::new(mysql::DatabaseDriver { server: mysql, config: config.clone() }))
        .with("local.rabbitmq.server", Arc::new(rabbitmq::ServerDriver { server: rabbitmq.clone() }))
        .with("local.rabbitmq.vhost", Arc::new(rabbitmq::VhostDriver { server: rabbitmq, config: config.clone() }))
        .with("local.redis", Arc::new(redis::RedisDriver { config: config.clone() }))
        .with("local.workload", Arc::new(workload::WorkloadDriver::new(config.clone())))
        .with("local.proxy", Arc::new(links::ProxyDriver { config: config.clone() }))
        .with("local.route", Arc::new(links::RouteDriver { config: config.clone() }))
        .with("local.dns", Arc::new(links::DerivedDriver { outputs: links::dns_outputs }))
        .with("local.service-link", Arc::new(links::DerivedDriver { outputs: links::link_outputs }))
        .with("local.volume", Arc::new(links::VolumeDriver { config }))
}

/// `drivers` with the platform provisioners that run programs and modules
/// on this machine (`paved.command`, `paved.terraform`): the same for every
/// provider, since they run where paved applies.
pub fn with_provisioners(drivers: Drivers, config: &Config) -> Drivers {
    let config = Arc::new(config.clone());
    drivers
        .with("paved.command", Arc::new(provisioners::CommandDriver { config: config.clone() }))
        .with("paved.terraform", Arc::new(provisioners::TerraformDriver { config }))
}

/// Everything the provider started on this machine for paved, stopped and
/// removed: supervisors, the PostgreSQL cluster, state directories. Used by
/// `paved down` after the environments were destroyed.
pub async fn teardown(config: &Config) -> Result<(), String> {
    let envs = config.local_dir().join("envs");
    if let Ok(entries) = std::fs::read_dir(&envs) {
        for e in entries.flatten() {
            supervisor::stop_all_under(&e.path()).await;
        }
    }
    docker::teardown(config).await?;
    Arc::new(postgres::Cluster::new(config)).destroy().await?;
    mysql::Server::new(config).destroy().await?;
    Arc::new(rabbitmq::Server::new(config)).destroy().await?;
    remove_dir(&config.local_dir())
}

/// Removes `dir` and everything in it, all at once as far as a crash can
/// tell: the directory is first renamed to a tombstone beside it
/// (`.NAME.removing`), which is then emptied. A crash midway leaves either
/// the whole directory or a tombstone — never a half-removed cluster whose
/// files say it exists while its password file is gone. A tombstone left by
/// a crash is removed by the next removal of the same directory.
pub(crate) fn remove_dir(dir: &Path) -> Result<(), String> {
    let gone = |e: &std::io::Error| e.kind() == std::io::ErrorKind::NotFound;
    let tombstone = match (dir.parent(), dir.file_name()) {
        (Some(parent), Some(name)) => parent.join(format!(".{}.removing", name.to_string_lossy())),
        _ => return Err(format!("cannot remove {}: not a directory inside another", dir.display())),
    };
    let remove = |d: &Path| match std::fs::remove_dir_all(d) {
        Ok(()) => Ok(()),
        Err(e) if gone(&e) => Ok(()),
        Err(e) => Err(format!("cannot remove {}: {e}", d.display())),
    };
    remove(&tombstone)?;
    match std::fs::rename(dir, &tombstone) {
        Ok(()) => remove(&tombstone),
        Err(e) if gone(&e) => Ok(()),
        Err(e) => Err(format!("cannot remove {} (renaming it to {}): {e}", dir.display(), tombstone.display())),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_removal_takes_the_whole_directory_and_any_tombstone_a_crash_left() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("postgres");
        std::fs::create_dir_all(dir.join("data/base")).unwrap();
        std::fs::write(dir.join("superuser.password"), "secret").unwrap();
        std::fs::write(dir.join("data/PG_VERSION"), "15").unwrap();
        // What a crash in an earlier removal left: the renamed directory, half emptied.
        let tombstone = root.path().join(".postgres.removing");
        std::fs::create_dir_all(tombstone.join("data")).unwrap();
        std::fs::write(tombstone.join("data/PG_VERSION"), "15").unwrap();

        super::remove_dir(&dir).unwrap();
        assert!(!dir.exists() && !tombstone.exists());
        assert_eq!(std::fs::read_dir(root.path()).unwrap().count(), 0, "nothing else left beside it");
        super::remove_dir(&dir).unwrap();
    }
}
