//! Readiness and liveness probes: an HTTP GET (2xx/3xx is healthy) or a
//! command (exit status 0 is healthy), each with a timeout. Blocking on
//! purpose: the supervisor is plain threads, the drivers call these from
//! `spawn_blocking`.

use crate::sandbox::Sandbox;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// A probe with everything resolved (address, program path).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Probe {
    Http {
        host: String,
        port: u16,
        path: String,
    },
    Exec {
        program: PathBuf,
        args: Vec<String>,
        env: BTreeMap<String, String>,
        cwd: PathBuf,
        /// A workload's probe runs in the workload's sandbox.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        sandbox: Option<Sandbox>,
    },
}

impl Probe {
    pub fn check(&self, timeout: Duration) -> Result<(), String> {
        match self {
            Probe::Http { host, port, path } => http_get(host, *port, path, timeout).and_then(|status| {
                if (200..400).contains(&status) { Ok(()) } else { Err(format!("GET {path} answered {status}")) }
            }),
            Probe::Exec { program, args, env, cwd, sandbox } => {
                exec(program, args, env, cwd, sandbox.as_ref(), timeout)
            }
        }
    }
}

/// `true` when something accepts TCP connections on `host:port`.
pub fn listening(host: &str, port: u16, timeout: Duration) -> bool {
    resolve(host, port).is_ok_and(|addr| TcpStream::connect_timeout(&addr, timeout).is_ok())
}

fn resolve(host: &str, port: u16) -> Result<SocketAddr, String> {
    (host, port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {host}: {e}"))?
        .next()
        .ok_or_else(|| format!("{host} has no address"))
}

/// The status code of `GET path` on `host:port` (HTTP/1.0, no body read).
pub fn http_get(host: &str, port: u16, path: &str, timeout: Duration) -> Result<u16, String> {
    let addr = resolve(host, port)?;
    let mut s = TcpStream::connect_timeout(&addr, timeout).map_err(|e| format!("cannot connect to {addr}: {e}"))?;
    s.set_read_timeout(Some(timeout)).and_then(|_| s.set_write_timeout(Some(timeout))).map_err(|e| e.to_string())?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {host}:{port}\r\nUser-Agent: paved-probe\r\n\r\n")
        .map_err(|e| format!("cannot send to {addr}: {e}"))?;
    let mut head = [0u8; 64];
    let mut got = 0;
    while got < 12 {
        match s.read(&mut head[got..]).map_err(|e| format!("no answer from {addr}: {e}"))? {
            0 => break,
            n => got += n,
        }
    }
    let line = String::from_utf8_lossy(&head[..got]);
    line.split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| format!("{addr} did not answer HTTP (`{}`)", line.trim()))
}

fn exec(
    program: &PathBuf,
    args: &[String],
    env: &BTreeMap<String, String>,
    cwd: &PathBuf,
    sandbox: Option<&Sandbox>,
    timeout: Duration,
) -> Result<(), String> {
    let mut cmd = match sandbox {
        Some(s) => s.command(&program.to_string_lossy(), args)?,
        None => {
            let mut c = std::process::Command::new(program);
            c.args(args).current_dir(cwd);
            c
        }
    };
    let mut child = cmd
        .env_clear()
        .envs(env)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", program.display()))?;
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait().map_err(|e| e.to_string())? {
            Some(status) if status.success() => return Ok(()),
            Some(status) => return Err(format!("{} exited with {status}", program.display())),
            None if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("{} did not finish within {timeout:?}", program.display()));
            }
            None => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}
