//! Artifacts as OCI images: a bundle becomes one reproducible image whose
//! manifest digest is the artifact's identity everywhere — in paved's
//! store, in every registry it is copied to, and in every manifest that
//! runs it — and the few registry operations paved needs, by digest only.
//!
//! | bundle                                   | OCI image                                                         |
//! |------------------------------------------|-------------------------------------------------------------------|
//! | every file but `bundle.json`, by path    | one **uncompressed** tar layer (`…layer.v1.tar`)                  |
//! | directories                              | tar entries, mode 0755                                            |
//! | a file's executable bit                  | mode 0755, else 0644; uid/gid 0, mtime 0, no user or group names   |
//! | `entrypoint`, `cmd` of `bundle.json`     | `config.Entrypoint`, `config.Cmd`                                 |
//! | —                                        | `config.User` `10001` (the uid the rendered Deployments run as)   |
//! | —                                        | `os` linux, `architecture` of the machine that built it           |
//! | the artifact's digest                    | sha256 of the manifest's bytes                                    |
//!
//! Why uncompressed: the digest must not change with a compression
//! library's version, or the same bundle pushed by two paved versions
//! would be two artifacts. No timestamp and no build annotation is
//! recorded for the same reason (the commit lives in paved's artifact
//! record, not in the image).
//!
//! Entries are sorted by path and written with a fixed header layout, so
//! the same files give the same bytes on every machine (tested).

mod layout;
mod registry;

pub use layout::Layout;
pub use registry::{Auth, Registry};

use sha2::{Digest, Sha256};
use std::path::Path;

/// `application/vnd.oci.image.manifest.v1+json`
pub const MANIFEST_MEDIA_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
/// `application/vnd.oci.image.config.v1+json`
pub const CONFIG_MEDIA_TYPE: &str = "application/vnd.oci.image.config.v1+json";
/// `application/vnd.oci.image.layer.v1.tar`
pub const LAYER_MEDIA_TYPE: &str = "application/vnd.oci.image.layer.v1.tar";
/// The uid the image runs as (and paved's Kubernetes manifests ask for).
pub const RUN_AS_USER: u32 = 10001;

/// The error of building, storing or moving an image.
#[derive(Debug, thiserror::Error)]
pub enum OciError {
    #[error("{path}: {reason}")]
    Io { path: String, reason: String },
    #[error("{0}: bundles hold regular files and directories only")]
    NotAFile(String),
    #[error("`{0}` is not a sha256 digest (sha256: and 64 hex digits)")]
    BadDigest(String),
    #[error("image {digest} is not in paved's store at {layout}")]
    NotStored { digest: String, layout: String },
    #[error("{what} of image {digest} is corrupt: its content hashes to {actual}")]
    Corrupt { digest: String, what: String, actual: String },
    #[error("registry {registry}: {reason}")]
    Registry { registry: String, reason: String },
    #[error("`{endpoint}` is not a registry endpoint: use https://HOST[:PORT] (or http:// for a registry on loopback)")]
    BadEndpoint { endpoint: String },
}

/// A content-addressed blob of an image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blob {
    pub media_type: &'static str,
    /// `sha256:…` of `bytes`.
    pub digest: String,
    pub bytes: Vec<u8>,
}

impl Blob {
    fn new(media_type: &'static str, bytes: Vec<u8>) -> Blob {
        Blob { media_type, digest: sha256(&bytes), bytes }
    }

    fn descriptor(&self) -> serde_json::Value {
        serde_json::json!({"mediaType": self.media_type, "digest": self.digest, "size": self.bytes.len()})
    }
}

/// An image: its manifest (whose digest is the image's) and the blobs it names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    pub manifest: Blob,
    pub config: Blob,
    pub layers: Vec<Blob>,
}

impl Image {
    /// The image's digest: the manifest's.
    pub fn digest(&self) -> &str {
        &self.manifest.digest
    }

    /// The image of a bundle directory (see the table at the top).
    pub fn of_bundle(root: &Path, entrypoint: &[String], cmd: &[String]) -> Result<Image, OciError> {
        let layer = Blob::new(LAYER_MEDIA_TYPE, layer_of(root)?);
        let mut container = serde_json::Map::new();
        container.insert("User".into(), RUN_AS_USER.to_string().into());
        if !entrypoint.is_empty() {
            container.insert("Entrypoint".into(), entrypoint.into());
        }
        if !cmd.is_empty() {
            container.insert("Cmd".into(), cmd.into());
        }
        let config = serde_json::json!({
            "architecture": architecture(),
            "os": "linux",
            "config": container,
            "rootfs": {"type": "layers", "diff_ids": [layer.digest]},
        });
        let config = Blob::new(CONFIG_MEDIA_TYPE, to_bytes(&config));
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": MANIFEST_MEDIA_TYPE,
            "config": config.descriptor(),
            "layers": [layer.descriptor()],
        });
        Ok(Image { manifest: Blob::new(MANIFEST_MEDIA_TYPE, to_bytes(&manifest)), config, layers: vec![layer] })
    }

    /// The blobs a manifest names (config first), read from its bytes.
    pub(crate) fn named_blobs(manifest: &[u8]) -> Result<Vec<(String, String)>, String> {
        let m: serde_json::Value =
            serde_json::from_slice(manifest).map_err(|e| format!("manifest is not JSON: {e}"))?;
        let descriptor = |d: &serde_json::Value| -> Result<(String, String), String> {
            let digest = d["digest"].as_str().ok_or("a descriptor has no digest")?;
            let media = d["mediaType"].as_str().unwrap_or_default();
            Ok((digest.to_string(), media.to_string()))
        };
        let mut out = vec![descriptor(&m["config"])?];
        for l in m["layers"].as_array().ok_or("the manifest has no layers")? {
            out.push(descriptor(l)?);
        }
        Ok(out)
    }
}

fn to_bytes(v: &serde_json::Value) -> Vec<u8> {
    serde_json::to_vec(v).expect("a JSON value serialises")
}

/// The OCI name of this machine's architecture (Go's GOARCH names).
fn architecture() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    }
}

/// `sha256:` and the hex digest of `bytes`.
pub fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// The hex part of a `sha256:…` digest, checked.
pub fn hex_of(digest: &str) -> Result<&str, OciError> {
    digest
        .strip_prefix("sha256:")
        .filter(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
        .ok_or_else(|| OciError::BadDigest(digest.to_string()))
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> OciError + '_ {
    move |e| OciError::Io { path: path.display().to_string(), reason: e.to_string() }
}

/// The layer: every directory and file under `root` but `bundle.json`.
fn layer_of(root: &Path) -> Result<Vec<u8>, OciError> {
    let mut entries = Vec::new();
    walk(root, root, &mut entries)?;
    entries.sort();
    let mut tar = tar::Builder::new(Vec::new());
    for (rel, is_dir) in entries {
        let path = root.join(&rel);
        let mut header = tar::Header::new_gnu();
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(0);
        if is_dir {
            header.set_entry_type(tar::EntryType::Directory);
            header.set_mode(0o755);
            header.set_size(0);
            tar.append_data(&mut header, format!("{rel}/"), std::io::empty()).map_err(io(&path))?;
        } else {
            let meta = std::fs::metadata(&path).map_err(io(&path))?;
            let exec = std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o111 != 0;
            let bytes = std::fs::read(&path).map_err(io(&path))?;
            header.set_entry_type(tar::EntryType::Regular);
            header.set_mode(if exec { 0o755 } else { 0o644 });
            header.set_size(bytes.len() as u64);
            tar.append_data(&mut header, &rel, bytes.as_slice()).map_err(io(&path))?;
        }
    }
    tar.into_inner().map_err(io(root))
}

/// Relative paths under `dir` (`/`-separated) and whether each is a directory.
fn walk(root: &Path, dir: &Path, out: &mut Vec<(String, bool)>) -> Result<(), OciError> {
    for e in std::fs::read_dir(dir).map_err(io(dir))? {
        let e = e.map_err(io(dir))?;
        let path = e.path();
        let rel = path.strip_prefix(root).unwrap_or(&path).to_string_lossy().into_owned();
        let ty = e.file_type().map_err(io(&path))?;
        if ty.is_dir() {
            out.push((rel, true));
            walk(root, &path, out)?;
        } else if ty.is_file() {
            if rel != "bundle.json" {
                out.push((rel, false));
            }
        } else {
            return Err(OciError::NotAFile(path.display().to_string()));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bundle(dir: &Path, body: &str) {
        std::fs::create_dir_all(dir.join("bin")).unwrap();
        std::fs::write(dir.join("bundle.json"), r#"{"entrypoint": ["/bin/api"]}"#).unwrap();
        std::fs::write(dir.join("bin/api"), body).unwrap();
        let mut perm = std::fs::metadata(dir.join("bin/api")).unwrap().permissions();
        std::os::unix::fs::PermissionsExt::set_mode(&mut perm, 0o700);
        std::fs::set_permissions(dir.join("bin/api"), perm).unwrap();
        std::fs::write(dir.join("README"), "hello").unwrap();
    }

    #[test]
    fn the_same_files_give_the_same_digest_whatever_their_times_and_owners() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        bundle(a.path(), "v1");
        std::thread::sleep(std::time::Duration::from_millis(20));
        bundle(b.path(), "v1");
        let ep = vec!["/bin/api".to_string()];
        let (x, y) = (Image::of_bundle(a.path(), &ep, &[]).unwrap(), Image::of_bundle(b.path(), &ep, &[]).unwrap());
        assert_eq!(x, y);
        assert_eq!(x.digest(), sha256(&x.manifest.bytes));
        std::fs::write(b.path().join("bin/api"), "v2").unwrap();
        assert_ne!(Image::of_bundle(b.path(), &ep, &[]).unwrap().digest(), x.digest());
    }

    #[test]
    fn the_layer_holds_the_files_but_bundle_json_with_normalised_headers() {
        let dir = tempfile::tempdir().unwrap();
        bundle(dir.path(), "v1");
        let image = Image::of_bundle(dir.path(), &["/bin/api".into()], &["--port".into(), "8080".into()]).unwrap();
        let mut archive = tar::Archive::new(image.layers[0].bytes.as_slice());
        let entries: Vec<(String, u32, u64, u64)> = archive
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                let h = e.header();
                (e.path().unwrap().display().to_string(), h.mode().unwrap(), h.uid().unwrap(), h.mtime().unwrap())
            })
            .collect();
        assert_eq!(
            entries,
            vec![("README".into(), 0o644, 0, 0), ("bin/".into(), 0o755, 0, 0), ("bin/api".into(), 0o755, 0, 0)]
        );
        let config: serde_json::Value = serde_json::from_slice(&image.config.bytes).unwrap();
        assert_eq!(config["config"]["Entrypoint"][0], "/bin/api");
        assert_eq!(config["config"]["Cmd"][1], "8080");
        assert_eq!(config["config"]["User"], "10001");
        assert_eq!(config["rootfs"]["diff_ids"][0], image.layers[0].digest.as_str());
        let manifest: serde_json::Value = serde_json::from_slice(&image.manifest.bytes).unwrap();
        assert_eq!(manifest["config"]["digest"], image.config.digest.as_str());
        assert_eq!(manifest["layers"][0]["size"], image.layers[0].bytes.len());
        assert_eq!(
            Image::named_blobs(&image.manifest.bytes).unwrap(),
            vec![
                (image.config.digest.clone(), CONFIG_MEDIA_TYPE.to_string()),
                (image.layers[0].digest.clone(), LAYER_MEDIA_TYPE.to_string())
            ]
        );
    }

    #[test]
    fn digests_are_checked() {
        assert!(hex_of(&sha256(b"x")).is_ok());
        for bad in ["sha256:ABC", "md5:00", &format!("sha256:{}", "G".repeat(64))] {
            assert!(matches!(hex_of(bad), Err(OciError::BadDigest(_))), "{bad}");
        }
    }
}
