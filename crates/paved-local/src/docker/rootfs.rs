//! Images built from this machine's files: no registry is needed.
//!
//! A [`RootFs`] collects files (a program, a bundle, a directory tree) at
//! their paths in the image, adds the shared libraries every ELF file links
//! (as `ldd` reports them) and becomes a `FROM scratch` image. The image is
//! tagged with a digest of its content, so building the same content again
//! is a lookup, and containers are created from the image id (a digest).

use super::is_not_found;
use bollard::Docker;
use bollard::query_parameters::BuildImageOptionsBuilder;
use futures_util::StreamExt;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

#[derive(Debug, Clone)]
enum Source {
    File(PathBuf),
    Bytes(Vec<u8>),
    Dir,
}

#[derive(Debug, Clone)]
struct Entry {
    source: Source,
    mode: u32,
    uid: u64,
}

/// The files of an image, by their absolute path inside it.
#[derive(Debug, Clone, Default)]
pub struct RootFs {
    entries: BTreeMap<PathBuf, Entry>,
}

/// What the image runs, as in a Dockerfile.
#[derive(Debug, Clone, Default)]
pub struct ImageConfig {
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    pub user: Option<String>,
    pub env: Vec<(String, String)>,
}

fn inside(at: &Path) -> PathBuf {
    Path::new("/").join(at.strip_prefix("/").unwrap_or(at))
}

fn is_elf(path: &Path) -> bool {
    let mut magic = [0u8; 4];
    std::fs::File::open(path).and_then(|mut f| f.read_exact(&mut magic)).is_ok() && magic == *b"\x7fELF"
}

/// The shared libraries a program or library loads at start, from `ldd`.
fn libraries(path: &Path) -> Result<Vec<PathBuf>, String> {
    let out = Command::new("ldd")
        .arg(path)
        .output()
        .map_err(|e| format!("cannot run `ldd` (Debian package `libc-bin`) to find the libraries of images: {e}"))?;
    // Static programs: "not a dynamic executable", exit status 1.
    let text = String::from_utf8_lossy(&out.stdout);
    Ok(text
        .lines()
        .filter_map(|line| {
            let line = line.trim();
            let path = match line.split_once("=>") {
                Some((_, rest)) => rest.split_whitespace().next()?,
                None => line.split_whitespace().next()?,
            };
            path.starts_with('/').then(|| PathBuf::from(path))
        })
        .collect())
}

impl RootFs {
    pub fn new() -> RootFs {
        let mut fs = RootFs::default();
        fs.dir("/tmp", 0o1777, 0);
        fs
    }

    pub fn dir(&mut self, at: impl AsRef<Path>, mode: u32, uid: u64) -> &mut Self {
        self.entries.insert(inside(at.as_ref()), Entry { source: Source::Dir, mode, uid });
        self
    }

    pub fn bytes(&mut self, at: impl AsRef<Path>, bytes: impl Into<Vec<u8>>, mode: u32) -> &mut Self {
        self.entries.insert(inside(at.as_ref()), Entry { source: Source::Bytes(bytes.into()), mode, uid: 0 });
        self
    }

    /// `/etc/passwd`, `/etc/group` and `/etc/nsswitch.conf` naming `root`
    /// and the given `(name, uid, gid, home)` accounts: programs that look up
    /// their user (PostgreSQL does) and resolve names find them.
    pub fn accounts(&mut self, users: &[(&str, u32, u32, &str)]) -> &mut Self {
        let mut passwd = String::from("root:x:0:0:root:/:/sbin/nologin\n");
        let mut group = String::from("root:x:0:\n");
        for (name, uid, gid, home) in users {
            passwd.push_str(&format!("{name}:x:{uid}:{gid}:{name}:{home}:/sbin/nologin\n"));
            group.push_str(&format!("{name}:x:{gid}:\n"));
        }
        self.bytes("/etc/passwd", passwd, 0o644);
        self.bytes("/etc/group", group, 0o644);
        self.bytes("/etc/nsswitch.conf", "passwd: files\ngroup: files\nhosts: files dns\n", 0o644)
    }

    /// A file of this machine (symbolic links followed) at `at`.
    pub fn file(&mut self, host: &Path, at: impl AsRef<Path>) -> Result<&mut Self, String> {
        let meta = std::fs::metadata(host).map_err(|e| format!("cannot read {}: {e}", host.display()))?;
        let mode = std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o7777;
        self.entries.insert(inside(at.as_ref()), Entry { source: Source::File(host.to_path_buf()), mode, uid: 0 });
        Ok(self)
    }

    /// A directory tree of this machine at `at`, minus names in `skip`.
    pub fn tree(&mut self, host: &Path, at: impl AsRef<Path>, skip: &[&str]) -> Result<&mut Self, String> {
        let at = inside(at.as_ref());
        if at != Path::new("/") {
            self.dir(&at, 0o755, 0);
        }
        let entries = std::fs::read_dir(host).map_err(|e| format!("cannot read {}: {e}", host.display()))?;
        for e in entries.flatten() {
            let name = e.file_name();
            if skip.iter().any(|s| name.to_str().is_some_and(|n| n == *s || n.starts_with(&format!("{s}.")))) {
                continue;
            }
            let path = e.path();
            if path.is_dir() {
                self.tree(&path, at.join(&name), skip)?;
            } else if path.is_file() {
                self.file(&path, at.join(&name))?;
            }
        }
        Ok(self)
    }

    /// Adds, at their own paths, the shared libraries of every ELF file in
    /// the image (and theirs), so the programs run in an empty image.
    pub fn with_libraries(&mut self) -> Result<&mut Self, String> {
        let elves: Vec<PathBuf> = self
            .entries
            .values()
            .filter_map(|e| match &e.source {
                Source::File(p) if is_elf(p) => Some(p.clone()),
                _ => None,
            })
            .collect();
        let mut wanted = std::collections::BTreeSet::new();
        for elf in elves {
            wanted.extend(libraries(&elf)?);
        }
        for lib in wanted {
            if !self.entries.contains_key(&lib) {
                self.file(&lib, &lib)?;
            }
        }
        Ok(self)
    }

    /// A digest of the content (paths, modes, owners and file bytes).
    pub fn digest(&self, config: &ImageConfig) -> Result<String, String> {
        let mut h = Sha256::new();
        h.update(format!("{:?}{:?}{:?}{:?}\0", config.entrypoint, config.cmd, config.user, config.env));
        for (at, e) in &self.entries {
            h.update(format!("{}\0{:o}\0{}\0", at.display(), e.mode, e.uid));
            match &e.source {
                Source::Dir => h.update(b"d"),
                Source::Bytes(b) => h.update(b),
                Source::File(p) => {
                    let mut f = std::fs::File::open(p).map_err(|e| format!("cannot read {}: {e}", p.display()))?;
                    let mut buf = vec![0u8; 1 << 16];
                    loop {
                        match f.read(&mut buf).map_err(|e| format!("cannot read {}: {e}", p.display()))? {
                            0 => break,
                            n => h.update(&buf[..n]),
                        }
                    }
                }
            }
        }
        Ok(hex::encode(h.finalize()))
    }

    /// The build context: `Dockerfile` and `rootfs/`.
    fn context(&self, config: &ImageConfig) -> Result<Vec<u8>, String> {
        let mut dockerfile = String::from("FROM scratch\nCOPY rootfs/ /\n");
        let json = |v: &[String]| serde_json::to_string(v).unwrap_or_default();
        for (k, v) in &config.env {
            dockerfile.push_str(&format!("ENV {k}={}\n", serde_json::to_string(v).unwrap_or_default()));
        }
        if let Some(user) = &config.user {
            dockerfile.push_str(&format!("USER {user}\n"));
        }
        if !config.entrypoint.is_empty() {
            dockerfile.push_str(&format!("ENTRYPOINT {}\n", json(&config.entrypoint)));
        }
        if !config.cmd.is_empty() {
            dockerfile.push_str(&format!("CMD {}\n", json(&config.cmd)));
        }
        let io = |e: std::io::Error| format!("cannot pack the image: {e}");
        let mut tar = tar::Builder::new(Vec::new());
        let header = |size: u64, mode: u32, uid: u64, kind: tar::EntryType| {
            let mut h = tar::Header::new_gnu();
            h.set_size(size);
            h.set_mode(mode);
            h.set_uid(uid);
            h.set_gid(uid);
            h.set_mtime(0);
            h.set_entry_type(kind);
            h
        };
        let mut h = header(dockerfile.len() as u64, 0o644, 0, tar::EntryType::Regular);
        tar.append_data(&mut h, "Dockerfile", dockerfile.as_bytes()).map_err(io)?;
        let mut h = header(0, 0o755, 0, tar::EntryType::Directory);
        tar.append_data(&mut h, "rootfs/", std::io::empty()).map_err(io)?;
        for (at, e) in &self.entries {
            let name = Path::new("rootfs").join(at.strip_prefix("/").unwrap_or(at));
            match &e.source {
                Source::Dir => {
                    let mut h = header(0, e.mode, e.uid, tar::EntryType::Directory);
                    tar.append_data(&mut h, &name, std::io::empty()).map_err(io)?;
                }
                Source::Bytes(b) => {
                    let mut h = header(b.len() as u64, e.mode, e.uid, tar::EntryType::Regular);
                    tar.append_data(&mut h, &name, b.as_slice()).map_err(io)?;
                }
                Source::File(p) => {
                    let f = std::fs::File::open(p).map_err(|err| format!("cannot read {}: {err}", p.display()))?;
                    let size = f.metadata().map_err(io)?.len();
                    let mut h = header(size, e.mode, e.uid, tar::EntryType::Regular);
                    tar.append_data(&mut h, &name, f).map_err(io)?;
                }
            }
        }
        tar.into_inner().map_err(io)
    }

    /// Builds the image (unless an image of the same content exists) and
    /// returns its id, `sha256:…`.
    pub async fn build(&self, docker: &Docker, repository: &str, config: &ImageConfig) -> Result<String, String> {
        let me = self.clone();
        let cfg = config.clone();
        let digest = tokio::task::spawn_blocking(move || me.digest(&cfg)).await.map_err(|e| e.to_string())??;
        let tag = format!("{repository}:{}", &digest[..16]);
        match docker.inspect_image(&tag).await {
            Ok(image) => return image.id.ok_or_else(|| format!("image {tag} has no id")),
            Err(e) if is_not_found(&e) => {}
            Err(e) => return Err(format!("cannot inspect image {tag}: {e}")),
        }
        let me = self.clone();
        let cfg = config.clone();
        let context = tokio::task::spawn_blocking(move || me.context(&cfg)).await.map_err(|e| e.to_string())??;
        let labels = std::collections::HashMap::from([("paved.content".to_string(), digest.clone())]);
        let opts = BuildImageOptionsBuilder::default().t(&tag).rm(true).forcerm(true).labels(&labels).build();
        let mut stream = docker.build_image(opts, None, Some(bollard::body_full(context.into())));
        let mut log = String::new();
        while let Some(item) = stream.next().await {
            let info = item.map_err(|e| format!("building image {tag} failed: {e}"))?;
            if let Some(err) = info.error_detail.and_then(|d| d.message) {
                return Err(format!("building image {tag} failed: {err}\n{log}"));
            }
            if let Some(s) = info.stream {
                log.push_str(&s);
            }
        }
        let image = docker.inspect_image(&tag).await.map_err(|e| format!("image {tag} was not built: {e}\n{log}"))?;
        image.id.ok_or_else(|| format!("image {tag} has no id"))
    }
}
