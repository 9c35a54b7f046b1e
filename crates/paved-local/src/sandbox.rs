//! The sandbox every workload process (and its exec probes) runs in on the
//! `process` runtime: Debian's `bubblewrap` (`bwrap`).
//!
//! Why bubblewrap: it is the small, audited setup tool Flatpak builds on —
//! mount, PID, IPC and UTS namespaces, an empty root assembled from explicit
//! binds, all capabilities dropped, `no_new_privs` — and it needs no daemon
//! and no setuid bit (it uses unprivileged user namespaces). Doing the same
//! with raw `unshare`/`mount`/`pivot_root` calls here would be the same
//! steps, hand-written and unaudited.
//!
//! What a sandboxed process sees (the contract):
//!
//! | path                         | what                                   | access     |
//! |------------------------------|----------------------------------------|------------|
//! | `/<entry>` for each entry of the bundle | the workload's image (like a container's `/`) | read-only |
//! | `/usr/lib*`, `/lib*`         | the host's shared libraries, unless the bundle has its own | read-only |
//! | `/usr/bin`, `/bin`, `/usr/local/bin`, `/usr/share` | the host's programs, for platform provisioners only (`host_tools`) | read-only |
//! | a few `/etc` files           | resolv.conf, hosts, nsswitch.conf, ld.so.cache, localtime, ssl | read-only |
//! | `/proc`, `/dev`, `/tmp`      | its own (new PID namespace, minimal devices, private tmpfs) | own |
//! | `$PAVED_ROOT` (same path as on the host) | the container's directory: Score files, volume mounts | read-write |
//! | each volume's target         | its source (a paved volume, or a host path the blueprint allows) | as declared |
//!
//! Nothing else of the host exists inside: not paved's data directory (the
//! key-encryption key, the state store, tokens, other environments), not
//! `/home`, `/root`, `/usr/bin`. The first program must be one of the bundle's
//! own (checked before the sandbox starts). The network namespace is the
//! host's: the local provider separates environments by loopback address.
//!
//! Who it runs as: when paved runs as root, as an unprivileged user of its
//! own per environment ([`uid_for`]: 200000 + a hash of the name, never
//! paved's own); otherwise as paved's user inside a user namespace, which
//! still sees none of paved's files.

use serde::{Deserialize, Serialize};
use std::path::{Component, Path, PathBuf};
use std::process::Command;

/// First uid of the range environments' users are taken from (above the
/// 65536 ids of a typical `/etc/subuid` allocation's start, below 2^31).
const UID_BASE: u32 = 200_000;
const UID_SPAN: u32 = 60_000;

/// Everything needed to start one sandboxed program; written to the
/// supervisor's `spec.json`, so it is plain data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Sandbox {
    /// The bundle's root directory: its entries become the sandbox's `/`.
    pub image: PathBuf,
    /// The container's writable directory (bound at the same path).
    pub root: PathBuf,
    /// Volumes: (source on the host, absolute target inside, read-only).
    #[serde(default)]
    pub volumes: Vec<Mount>,
    /// The host user and group to run as (`None`: paved's own user, in a user namespace).
    pub uid: Option<u32>,
    /// Also the host's programs (`/usr/bin`, `/bin`, `/usr/local/bin`,
    /// `/usr/share`) read-only: for platform provisioners, which are the
    /// server's own programs and modules, not a workload's image.
    #[serde(default)]
    pub host_tools: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Mount {
    pub source: PathBuf,
    pub target: String,
    pub read_only: bool,
}

/// The unprivileged user an environment's workloads run as when paved is root.
pub fn uid_for(environment: &str) -> Option<u32> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return None;
    }
    // FNV-1a: stable across releases (std's hasher is not).
    let mut h: u32 = 0x811c_9dc5;
    for b in environment.bytes() {
        h = (h ^ u32::from(b)).wrapping_mul(0x0100_0193);
    }
    Some(UID_BASE + h % UID_SPAN)
}

/// Where a program is on PATH (or in `/usr/bin`), if installed.
pub fn find(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .chain([PathBuf::from("/usr/bin")])
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// `path` joined to `base` with every component checked: absolute or
/// relative, no `..`, so the result stays inside `base`.
pub fn confined(base: &Path, path: &str) -> Result<PathBuf, String> {
    let mut out = base.to_path_buf();
    for c in Path::new(path).components() {
        match c {
            Component::RootDir | Component::CurDir => {}
            Component::Normal(n) => out.push(n),
            Component::ParentDir | Component::Prefix(_) => {
                return Err(format!("`{path}` leaves the container's directory (`..` is not allowed)"));
            }
        }
    }
    if out == base {
        return Err(format!("`{path}` names the container's directory itself, not a path in it"));
    }
    Ok(out)
}

/// Host directories of shared libraries a bundle without its own gets.
const LIBRARY_DIRS: [&str; 5] = ["lib", "lib64", "lib32", "usr/lib", "usr/lib64"];
/// Host directories of programs (and the data interpreters read) a
/// provisioner's sandbox gets.
const TOOL_DIRS: [&str; 6] = ["bin", "sbin", "usr/bin", "usr/sbin", "usr/local/bin", "usr/share"];
/// Host files under `/etc` that name resolution, TLS and time zones read.
const ETC_FILES: [&str; 8] = [
    "etc/resolv.conf",
    "etc/hosts",
    "etc/nsswitch.conf",
    "etc/ld.so.cache",
    "etc/localtime",
    "etc/ssl",
    "etc/ca-certificates",
    "etc/alternatives",
];

impl Sandbox {
    /// Checks that `program` (an absolute path inside the sandbox, or a name
    /// looked up in the bundle's `bin` directories) is the bundle's own.
    pub fn program(&self, program: &str) -> Result<String, String> {
        let candidates: Vec<String> = if program.starts_with('/') {
            vec![program.to_string()]
        } else {
            ["bin", "usr/bin", "usr/local/bin", "sbin", "usr/sbin"].iter().map(|d| format!("/{d}/{program}")).collect()
        };
        for c in &candidates {
            if let Ok(p) = confined(&self.image, c)
                && p.is_file()
            {
                return Ok(c.clone());
            }
        }
        Err(format!(
            "`{program}` is not in the workload's image; the process runtime runs only the image's own programs \
             (add it to the bundle, e.g. `bin/{}`, and import it again)",
            Path::new(program).file_name().map_or(program.into(), |n| n.to_string_lossy())
        ))
    }

    /// The `bwrap` command that runs `program args…` inside the sandbox. The
    /// caller adds the environment (kept by bwrap) and stdio.
    ///
    /// As root, bwrap builds the sandbox with root's rights (so paths under a
    /// `0700` home resolve) and util-linux's `setpriv`, bound at
    /// `/.paved/setpriv`, drops to the environment's user, every capability
    /// and supplementary group before the workload's program starts
    /// (`no_new_privs` is set by bwrap). Otherwise bwrap runs unprivileged
    /// in a user namespace.
    pub fn command(&self, program: &str, args: &[String]) -> Result<Command, String> {
        let bwrap = find("bwrap").ok_or(
            "the process runtime runs workloads in a sandbox made by bubblewrap, which is not installed \
             (Debian package `bubblewrap`)",
        )?;
        let s = |p: &Path| p.display().to_string();
        let mut binds: Vec<(String, String, String)> = Vec::new(); // (how, source, destination)
        let mut own: Vec<String> = Vec::new();
        if let Ok(entries) = std::fs::read_dir(&self.image) {
            let mut entries: Vec<_> = entries.flatten().collect();
            entries.sort_by_key(|e| e.file_name());
            for e in entries {
                let name = e.file_name().to_string_lossy().into_owned();
                if matches!(name.as_str(), "bundle.json" | "proc" | "dev" | "tmp" | ".paved") {
                    continue;
                }
                binds.push(("--ro-bind".into(), s(&e.path()), format!("/{name}")));
                own.push(name);
            }
        }
        let mut links: Vec<(String, String)> = Vec::new();
        let tools: &[&str] = if self.host_tools { &TOOL_DIRS } else { &[] };
        for &dir in LIBRARY_DIRS.iter().chain(tools) {
            let top = dir.split('/').next().unwrap_or(dir);
            if own.iter().any(|o| o == top) {
                continue; // The bundle brings its own.
            }
            let host = Path::new("/").join(dir);
            match std::fs::read_link(&host) {
                // Merged /usr: `/lib` → `usr/lib`.
                Ok(to) => links.push((s(&to), format!("/{dir}"))),
                Err(_) if host.is_dir() => binds.push(("--ro-bind".into(), s(&host), format!("/{dir}"))),
                Err(_) => {}
            }
        }
        if !own.iter().any(|o| o == "etc") {
            for f in ETC_FILES {
                if Path::new("/").join(f).exists() {
                    binds.push(("--ro-bind".into(), format!("/{f}"), format!("/{f}")));
                }
            }
        }
        binds.push(("--bind".into(), s(&self.root), s(&self.root)));
        for m in &self.volumes {
            let target = confined(&self.root, &m.target)?;
            let how = if m.read_only { "--ro-bind" } else { "--bind" };
            binds.push((how.into(), s(&m.source), s(&target)));
        }
        let setpriv = match self.uid {
            Some(_) => {
                let tool = find("setpriv").ok_or(
                    "paved runs as root, so workloads drop to an unprivileged user with `setpriv`, \
                     which is not installed (Debian package `util-linux`)",
                )?;
                binds.push(("--ro-bind".into(), s(&tool), "/.paved/setpriv".into()));
                Some(tool)
            }
            None => None,
        };

        let mut c = Command::new(bwrap);
        c.args(["--die-with-parent", "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try"]);
        if setpriv.is_none() {
            c.args(["--unshare-user", "--cap-drop", "ALL"]);
        }
        // First, so the binds below may lie under `/tmp` (a data directory there).
        c.args(["--proc", "/proc", "--dev", "/dev", "--perms", "1777", "--tmpfs", "/tmp"]);
        // Directories bwrap makes for mount points are root's and `0700`
        // unless made first with their mode: every ancestor of a mount point
        // that is not inside another mount.
        let dests: Vec<&str> = binds.iter().map(|b| b.2.as_str()).chain(links.iter().map(|l| l.1.as_str())).collect();
        let mut dirs: Vec<String> = Vec::new();
        for d in &dests {
            for a in Path::new(d).ancestors().skip(1) {
                let a = s(a);
                let inside = dests.iter().any(|o| a == *o || a.starts_with(&format!("{o}/")));
                if !matches!(a.as_str(), "/" | "/tmp") && !inside && !dirs.contains(&a) {
                    dirs.push(a);
                }
            }
        }
        dirs.sort_by_key(|d| (d.matches('/').count(), d.clone()));
        for d in dirs {
            c.args(["--perms", "0755", "--dir"]).arg(d);
        }
        for (how, source, dest) in &binds {
            c.args([how, source, dest]);
        }
        for (to, at) in &links {
            c.args(["--symlink", to, at]);
        }
        c.args(["--chdir".into(), s(&self.root), "--".into()]);
        if let (Some(uid), Some(_)) = (self.uid, &setpriv) {
            c.arg("/.paved/setpriv").arg(format!("--reuid={uid}")).arg(format!("--regid={uid}")).args([
                "--clear-groups",
                "--inh-caps=-all",
                "--bounding-set=-all",
                "--",
            ]);
        }
        c.arg(program).args(args);
        Ok(c)
    }

    /// Gives the environment's user the container's directory (and what it holds).
    pub fn hand_over(&self, path: &Path) -> std::io::Result<()> {
        let Some(uid) = self.uid else { return Ok(()) };
        chown_tree(path, uid)
    }
}

/// `chown -R uid:uid path`, not following symbolic links.
pub fn chown_tree(path: &Path, uid: u32) -> std::io::Result<()> {
    std::os::unix::fs::lchown(path, Some(uid), Some(uid))?;
    if std::fs::symlink_metadata(path)?.is_dir() {
        for e in std::fs::read_dir(path)? {
            chown_tree(&e?.path(), uid)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_confined() {
        let base = Path::new("/w/root");
        assert_eq!(confined(base, "/etc/app.conf").unwrap(), Path::new("/w/root/etc/app.conf"));
        assert_eq!(confined(base, "data/x").unwrap(), Path::new("/w/root/data/x"));
        assert!(confined(base, "/../../etc/passwd").unwrap_err().contains("`..`"));
        assert!(confined(base, "/data/../../x").is_err());
        assert!(confined(base, "/").is_err());
    }

    #[test]
    fn environments_get_stable_distinct_users_above_the_system_range() {
        if let (Some(a), Some(b)) = (uid_for("dev"), uid_for("production")) {
            assert_ne!(a, b);
            assert_eq!(uid_for("dev"), Some(a));
            assert!((UID_BASE..UID_BASE + UID_SPAN).contains(&a));
        }
    }

    #[test]
    fn only_the_bundles_programs_run() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("bin")).unwrap();
        std::fs::write(dir.path().join("bin/api"), "").unwrap();
        let s = Sandbox { image: dir.path().into(), root: "/r".into(), volumes: vec![], uid: None, host_tools: false };
        assert_eq!(s.program("/bin/api").unwrap(), "/bin/api");
        assert_eq!(s.program("api").unwrap(), "/bin/api");
        let e = s.program("/bin/sh").unwrap_err();
        assert!(e.contains("not in the workload's image"), "{e}");
        assert!(s.program("/bin/../../../usr/bin/sh").is_err());
    }
}
