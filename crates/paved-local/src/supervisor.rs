//! `paved __supervise DIR`: keeps the processes of one workload running.
//!
//! The driver writes `DIR/spec.json` and starts a supervisor, detached from
//! the terminal (its own session), so workloads outlive the `paved` command
//! that created them. The supervisor:
//! * holds an exclusive lock on `DIR/supervisor.lock` for its whole life —
//!   how drivers tell whether it runs (immune to pid reuse) and why a second
//!   supervisor for the same directory exits at once;
//! * starts each container's process with a clean environment, its output
//!   appended to `DIR/logs/CONTAINER.log`, in its own process group, killed
//!   by the kernel if the supervisor dies (`PR_SET_PDEATHSIG`);
//! * restarts exited processes with exponential backoff, and processes whose
//!   liveness probe fails three times in a row;
//! * rotates a container's log past 10 MiB (one older file kept);
//! * writes `DIR/status.json` whenever something changes;
//! * on SIGTERM stops every process (SIGTERM, then SIGKILL after 5 s) and exits.
//!
//! Plain threads and `std::process`: no async runtime, so it can fork safely.

use crate::fsutil::{self, FileLock};
use crate::probe::Probe;
use crate::sandbox::Sandbox;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

/// What to run: written by the driver, read by the supervisor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Spec {
    pub containers: Vec<ContainerSpec>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerSpec {
    pub name: String,
    pub program: PathBuf,
    pub args: Vec<String>,
    pub env: BTreeMap<String, String>,
    pub cwd: PathBuf,
    #[serde(default)]
    pub liveness: Option<Probe>,
    /// Workloads run sandboxed (`program` is then a path inside it); the
    /// platform's own processes (redis, the proxy) do not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sandbox: Option<Sandbox>,
}

/// What the supervisor reports in `status.json`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Status {
    pub supervisor: u32,
    pub containers: BTreeMap<String, ContainerStatus>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerStatus {
    /// `running`, `backoff` (waiting to restart) or `stopped`.
    pub state: String,
    pub pid: Option<u32>,
    pub restarts: u32,
    pub last_error: Option<String>,
}

pub fn spec_path(dir: &Path) -> PathBuf {
    dir.join("spec.json")
}
pub fn status_path(dir: &Path) -> PathBuf {
    dir.join("status.json")
}
fn lock_path(dir: &Path) -> PathBuf {
    dir.join("supervisor.lock")
}
fn pid_path(dir: &Path) -> PathBuf {
    dir.join("supervisor.pid")
}
pub fn log_path(dir: &Path, container: &str) -> PathBuf {
    dir.join("logs").join(format!("{container}.log"))
}

fn stop_marker(dir: &Path) -> PathBuf {
    dir.join("stop-requested")
}

/// `true` while a supervisor holds `DIR`'s lock and was not told to stop (one
/// that is stopping, maybe for a `paved` killed while waiting, does not count).
pub fn is_running(dir: &Path) -> bool {
    holds_lock(dir) && !stop_marker(dir).exists()
}

fn holds_lock(dir: &Path) -> bool {
    lock_path(dir).exists() && matches!(FileLock::try_acquire(&lock_path(dir)), Ok(None))
}

/// Starts `exe __supervise DIR` in its own session and waits until it holds
/// its lock. Starting one where one already runs is a no-op.
pub async fn start(exe: &Path, dir: &Path) -> Result<(), String> {
    if is_running(dir) {
        return Ok(());
    }
    // A supervisor told to stop may still be on its way out: let it finish.
    stop(dir).await?;
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("supervisor.log"))
        .map_err(|e| format!("cannot open {}: {e}", dir.join("supervisor.log").display()))?;
    let mut cmd = Command::new(exe);
    cmd.arg("__supervise")
        .arg(dir)
        .stdin(Stdio::null())
        .stdout(log.try_clone().map_err(|e| e.to_string())?)
        .stderr(log);
    // SAFETY: setsid is async-signal-safe; it detaches the supervisor from the
    // terminal so Ctrl-C on `paved apply` does not stop the workloads.
    unsafe {
        cmd.pre_exec(|| {
            libc::setsid();
            Ok(())
        });
    }
    // The first process forks the real supervisor and exits: reap it now so
    // no zombie is left behind in a long-running paved.
    let status = tokio::task::spawn_blocking(move || cmd.status())
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("cannot start {}: {e}", exe.display()))?;
    if !status.success() {
        return Err(format!("the supervisor for {} did not start ({status})", dir.display()));
    }
    for _ in 0..100 {
        if is_running(dir) {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Err(format!("the supervisor for {} did not start; see {}", dir.display(), dir.join("supervisor.log").display()))
}

/// Stops the supervisor of `DIR` (and so its processes) and waits until it is gone.
pub async fn stop(dir: &Path) -> Result<(), String> {
    if !holds_lock(dir) {
        let _ = std::fs::remove_file(stop_marker(dir));
        return Ok(());
    }
    // Written first: if this paved dies while waiting, the next one knows.
    fsutil::write_atomic(&stop_marker(dir), b"", false)?;
    let pid: Option<i32> = std::fs::read_to_string(pid_path(dir)).ok().and_then(|s| s.trim().parse().ok());
    if let Some(pid) = pid.filter(|p| *p > 1) {
        // SAFETY: sending a signal has no memory effects; the pid belongs to the
        // supervisor, which still holds its lock (checked above).
        unsafe {
            libc::kill(pid, libc::SIGTERM);
        }
    }
    for _ in 0..200 {
        if !holds_lock(dir) {
            let _ = std::fs::remove_file(stop_marker(dir));
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Err(format!("the supervisor of {} did not stop within 10 s", dir.display()))
}

/// Stops every supervisor in the tree under `dir`.
pub async fn stop_all_under(dir: &Path) {
    let mut pending = vec![dir.to_path_buf()];
    while let Some(d) = pending.pop() {
        if lock_path(&d).exists() {
            let _ = stop(&d).await;
        }
        if let Ok(entries) = std::fs::read_dir(&d) {
            pending.extend(entries.flatten().filter(|e| e.file_type().is_ok_and(|t| t.is_dir())).map(|e| e.path()));
        }
    }
}

static TERMINATE: AtomicBool = AtomicBool::new(false);

extern "C" fn on_terminate(_: libc::c_int) {
    TERMINATE.store(true, Ordering::SeqCst);
}

/// The body of `paved __supervise DIR`. Call before any thread exists (it forks).
pub fn main(dir: &Path) -> Result<(), String> {
    // SAFETY: single-threaded at this point; the parent returns at once and
    // the child continues as the supervisor.
    match unsafe { libc::fork() } {
        -1 => return Err("fork failed".into()),
        0 => {}
        _ => return Ok(()),
    }
    let Some(_lock) = FileLock::try_acquire(&lock_path(dir))? else {
        return Ok(()); // Another supervisor already runs this workload.
    };
    std::fs::write(pid_path(dir), std::process::id().to_string()).map_err(|e| e.to_string())?;
    // SAFETY: the handler only stores to an atomic.
    unsafe {
        libc::signal(libc::SIGTERM, on_terminate as *const () as libc::sighandler_t);
        libc::signal(libc::SIGINT, on_terminate as *const () as libc::sighandler_t);
    }
    let spec: Spec = fsutil::read_json(&spec_path(dir))?.ok_or("spec.json is missing")?;
    let mut running: Vec<Supervised> = spec.containers.into_iter().map(Supervised::new).collect();
    let mut last_status = Status::default();
    loop {
        if TERMINATE.load(Ordering::SeqCst) {
            for s in &mut running {
                s.stop(dir);
            }
            write_status(dir, &running, &mut last_status);
            return Ok(());
        }
        for s in &mut running {
            s.tick(dir);
        }
        write_status(dir, &running, &mut last_status);
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn write_status(dir: &Path, running: &[Supervised], last: &mut Status) {
    let status = Status {
        supervisor: std::process::id(),
        containers: running.iter().map(|s| (s.spec.name.clone(), s.status.clone())).collect(),
    };
    if status != *last && fsutil::write_json(&status_path(dir), &status, false).is_ok() {
        *last = status;
    }
}

const INITIAL_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// A process that ran this long starts over at the initial backoff.
const STABLE_AFTER: Duration = Duration::from_secs(30);
const LIVENESS_PERIOD: Duration = Duration::from_secs(5);
const LIVENESS_FAILURES: u32 = 3;
/// A container's log is rotated past this size; one older log is kept.
pub const LOG_LIMIT: u64 = 10 * 1024 * 1024;

/// Copies a log past `limit` to `NAME.log.1` and empties it: the process
/// keeps its descriptor (opened for appending), so its next write lands at
/// the start of the emptied file (logrotate's copytruncate).
pub fn rotate_log(path: &Path, limit: u64) -> std::io::Result<bool> {
    if std::fs::metadata(path).map_or(true, |m| m.len() <= limit) {
        return Ok(false);
    }
    let mut old = path.as_os_str().to_owned();
    old.push(".1");
    std::fs::copy(path, &old)?;
    std::fs::OpenOptions::new().write(true).open(path)?.set_len(0)?;
    Ok(true)
}

struct Supervised {
    spec: ContainerSpec,
    child: Option<Child>,
    started: Instant,
    next_start: Instant,
    backoff: Duration,
    next_probe: Instant,
    probe_failures: u32,
    status: ContainerStatus,
}

impl Supervised {
    fn new(spec: ContainerSpec) -> Supervised {
        let now = Instant::now();
        Supervised {
            spec,
            child: None,
            started: now,
            next_start: now,
            backoff: INITIAL_BACKOFF,
            next_probe: now,
            probe_failures: 0,
            status: ContainerStatus { state: "backoff".into(), ..Default::default() },
        }
    }

    fn log(&self, dir: &Path, line: &str) {
        let path = log_path(dir, &self.spec.name);
        if let Some(parent) = path.parent() {
            let _ = std::fs::create_dir_all(parent);
        }
        if let Ok(mut f) = std::fs::OpenOptions::new().create(true).append(true).open(&path) {
            let secs = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs());
            let _ = writeln!(f, "[paved {secs}] {line}");
        }
    }

    fn tick(&mut self, dir: &Path) {
        if let Some(child) = &mut self.child {
            match child.try_wait() {
                Ok(None) => {
                    self.check_liveness(dir);
                    if let Ok(true) = rotate_log(&log_path(dir, &self.spec.name), LOG_LIMIT) {
                        self.log(dir, &format!("log rotated (older lines in {}.log.1)", self.spec.name));
                    }
                    return;
                }
                Ok(Some(exit)) => {
                    let ran = self.started.elapsed();
                    self.child = None;
                    self.log(dir, &format!("process exited ({exit}) after {ran:.1?}"));
                    self.status.last_error = Some(format!("exited with {exit}"));
                    self.schedule_restart(ran);
                }
                Err(e) => {
                    self.status.last_error = Some(e.to_string());
                    return;
                }
            }
        }
        if self.child.is_none() && Instant::now() >= self.next_start {
            self.spawn(dir);
        }
    }

    fn schedule_restart(&mut self, ran: Duration) {
        if ran >= STABLE_AFTER {
            self.backoff = INITIAL_BACKOFF;
        }
        self.next_start = Instant::now() + self.backoff;
        self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
        self.status.state = "backoff".into();
        self.status.pid = None;
        self.status.restarts += 1;
    }

    fn spawn(&mut self, dir: &Path) {
        let log = log_path(dir, &self.spec.name);
        if let Some(parent) = log.parent() {
            let _ = std::fs::create_dir_all(parent);
        }
        let open = || std::fs::OpenOptions::new().create(true).append(true).open(&log);
        let (out, err) = match (open(), open()) {
            (Ok(o), Ok(e)) => (o, e),
            (Err(e), _) | (_, Err(e)) => {
                self.status.last_error = Some(format!("cannot open {}: {e}", log.display()));
                self.schedule_restart(Duration::ZERO);
                return;
            }
        };
        let mut cmd = match &self.spec.sandbox {
            None => {
                let mut c = Command::new(&self.spec.program);
                c.args(&self.spec.args).current_dir(&self.spec.cwd);
                c
            }
            Some(sandbox) => match sandbox.command(&self.spec.program.to_string_lossy(), &self.spec.args) {
                Ok(c) => c,
                Err(e) => {
                    self.log(dir, &e);
                    self.status.last_error = Some(e);
                    self.schedule_restart(Duration::ZERO);
                    return;
                }
            },
        };
        cmd.env_clear().envs(&self.spec.env).stdin(Stdio::null()).stdout(out).stderr(err);
        // SAFETY: prctl and setpgid are async-signal-safe.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                libc::setpgid(0, 0);
                Ok(())
            });
        }
        match cmd.spawn() {
            Ok(child) => {
                self.log(dir, &format!("started {} (pid {})", self.spec.program.display(), child.id()));
                self.status.pid = Some(child.id());
                self.status.state = "running".into();
                self.child = Some(child);
                self.started = Instant::now();
                self.next_probe = self.started + LIVENESS_PERIOD;
                self.probe_failures = 0;
            }
            Err(e) => {
                let msg = format!("cannot start {}: {e}", self.spec.program.display());
                self.log(dir, &msg);
                self.status.last_error = Some(msg);
                self.schedule_restart(Duration::ZERO);
            }
        }
    }

    fn check_liveness(&mut self, dir: &Path) {
        let Some(probe) = &self.spec.liveness else { return };
        if Instant::now() < self.next_probe {
            return;
        }
        self.next_probe = Instant::now() + LIVENESS_PERIOD;
        match probe.check(Duration::from_secs(2)) {
            Ok(()) => self.probe_failures = 0,
            Err(e) => {
                self.probe_failures += 1;
                self.log(dir, &format!("liveness probe failed ({}/{LIVENESS_FAILURES}): {e}", self.probe_failures));
                if self.probe_failures >= LIVENESS_FAILURES {
                    self.log(dir, "restarting: the process is not alive");
                    self.kill_group(libc::SIGKILL);
                }
            }
        }
    }

    fn kill_group(&self, signal: libc::c_int) {
        if let Some(child) = &self.child {
            // SAFETY: signalling the child's own process group (set up in pre_exec).
            unsafe {
                libc::kill(-(child.id() as i32), signal);
            }
        }
    }

    fn stop(&mut self, dir: &Path) {
        self.kill_group(libc::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(5);
        if let Some(child) = &mut self.child {
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        self.kill_group(libc::SIGKILL);
        if let Some(mut child) = self.child.take() {
            let _ = child.wait();
            self.log(dir, "stopped");
        }
        self.status.state = "stopped".into();
        self.status.pid = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn a_log_past_its_limit_moves_aside_and_the_writer_carries_on_at_the_start() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("api.log");
        let mut writer = std::fs::OpenOptions::new().create(true).append(true).open(&path).unwrap();
        writer.write_all(b"0123456789\n").unwrap();
        assert!(!rotate_log(&path, 100).unwrap(), "under the limit nothing moves");
        assert!(rotate_log(&path, 5).unwrap());
        assert_eq!(std::fs::read_to_string(dir.path().join("api.log.1")).unwrap(), "0123456789\n");
        writer.write_all(b"after\n").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "after\n");
    }
}
