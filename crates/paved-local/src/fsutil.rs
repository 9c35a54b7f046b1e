//! Small file helpers: atomic JSON writes, so a crash never leaves a torn
//! state file behind.

use serde::Serialize;
use serde::de::DeserializeOwned;
use std::io::Write;
use std::path::Path;

/// Writes `value` as JSON to `path` through a temporary file and a rename.
/// `private` makes the file readable by its owner only (0600).
pub fn write_json<T: Serialize>(path: &Path, value: &T, private: bool) -> Result<(), String> {
    let bytes = serde_json::to_vec_pretty(value).map_err(|e| e.to_string())?;
    write_atomic(path, &bytes, private)
}

pub fn write_atomic(path: &Path, bytes: &[u8], private: bool) -> Result<(), String> {
    use std::os::unix::fs::OpenOptionsExt;
    let dir = path.parent().ok_or_else(|| format!("{} has no parent directory", path.display()))?;
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let tmp = dir.join(format!(".{}.tmp", path.file_name().and_then(|n| n.to_str()).unwrap_or("state")));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(if private { 0o600 } else { 0o644 })
        .open(&tmp)
        .map_err(|e| format!("cannot write {}: {e}", tmp.display()))?;
    f.write_all(bytes).and_then(|_| f.sync_all()).map_err(|e| format!("cannot write {}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, path).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// Reads a JSON file; `Ok(None)` when it does not exist.
pub fn read_json<T: DeserializeOwned>(path: &Path) -> Result<Option<T>, String> {
    match std::fs::read(path) {
        Ok(bytes) => {
            serde_json::from_slice(&bytes).map(Some).map_err(|e| format!("{} is corrupt: {e}", path.display()))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("cannot read {}: {e}", path.display())),
    }
}

/// Holds an exclusive lock on a file for as long as the value lives.
pub struct FileLock(#[allow(dead_code)] std::fs::File);

impl FileLock {
    /// Blocks until the lock is free.
    pub fn acquire(path: &Path) -> Result<FileLock, String> {
        let f = open_lock_file(path)?;
        f.lock().map_err(|e| format!("cannot lock {}: {e}", path.display()))?;
        Ok(FileLock(f))
    }

    /// `Ok(None)` when another process holds it.
    pub fn try_acquire(path: &Path) -> Result<Option<FileLock>, String> {
        let f = open_lock_file(path)?;
        match f.try_lock() {
            Ok(()) => Ok(Some(FileLock(f))),
            Err(std::fs::TryLockError::WouldBlock) => Ok(None),
            Err(std::fs::TryLockError::Error(e)) => Err(format!("cannot lock {}: {e}", path.display())),
        }
    }
}

fn open_lock_file(path: &Path) -> Result<std::fs::File, String> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(|e| format!("cannot open {}: {e}", path.display()))
}

/// A random password of URL- and shell-safe characters.
pub fn random_password(len: usize) -> String {
    use rand::RngExt;
    const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789";
    let mut rng = rand::rng();
    (0..len).map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char).collect()
}

/// Whether paved runs as root (platform servers then run as their system user).
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// A port on 127.0.0.1 nobody listens on now, for `what`.
pub fn free_port(what: &str) -> Result<u16, String> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("no free port for {what}: {e}"))
}

/// The password a platform server's user was (or is about to be) given,
/// kept 0600 in `file` (`{"password": …}`): written down before the user
/// exists, so an apply that crashed in between reuses it.
pub fn kept_password(file: &Path) -> Result<String, String> {
    #[derive(serde::Serialize, serde::Deserialize)]
    struct Kept {
        password: String,
    }
    if let Some(kept) = read_json::<Kept>(file)? {
        return Ok(kept.password);
    }
    let kept = Kept { password: random_password(32) };
    write_json(file, &kept, true)?;
    Ok(kept.password)
}

/// The password `kept_password` wrote, if it did.
pub fn read_kept_password(file: &Path) -> Result<Option<String>, String> {
    Ok(read_json::<serde_json::Value>(file)?.and_then(|v| v["password"].as_str().map(str::to_string)))
}

/// Removes `path`; already gone is fine.
pub fn remove_file(path: &Path) -> Result<(), String> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(format!("cannot remove {}: {e}", path.display())),
    }
}
