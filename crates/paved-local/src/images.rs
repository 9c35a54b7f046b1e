//! paved's local image store for the `process` runtime: artifact bundles
//! addressed by the digest of the OCI image they make (`paved_oci`), and
//! tags pointing at digests (like an OCI registry, on disk). The image's
//! blobs are kept beside the unpacked bundle (`oci/`), so the artifact a
//! local environment runs is the very image a registry is sent later.
//!
//! A bundle is a directory with a `bundle.json` (`entrypoint`, `cmd`, like
//! an image config) and the files the program needs; absolute paths in a
//! Score `command` (`/bin/api`) are looked up inside the bundle first.

use crate::fsutil::{self, FileLock};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The image config of a bundle.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    #[serde(default)]
    pub entrypoint: Vec<String>,
    #[serde(default)]
    pub cmd: Vec<String>,
}

/// An image found in the store.
#[derive(Debug, Clone, PartialEq)]
pub struct Image {
    /// `sha256:…` of the OCI image the bundle makes.
    pub digest: String,
    /// The bundle's root directory.
    pub root: PathBuf,
    pub manifest: Manifest,
}

pub struct ImageStore {
    dir: PathBuf,
}

impl ImageStore {
    pub fn new(dir: PathBuf) -> ImageStore {
        ImageStore { dir }
    }

    fn blob(&self, hex: &str) -> PathBuf {
        self.dir.join("blobs").join("sha256").join(hex)
    }

    /// The OCI blobs of every image imported.
    pub fn oci(&self) -> paved_oci::Layout {
        paved_oci::Layout::new(self.dir.join("oci"))
    }

    fn tags_file(&self) -> PathBuf {
        self.dir.join("tags.json")
    }

    pub fn tags(&self) -> Result<BTreeMap<String, String>, String> {
        Ok(fsutil::read_json(&self.tags_file())?.unwrap_or_default())
    }

    /// Copies a bundle directory into the store and points `tags` at it.
    /// Importing identical content again is a no-op; a tag moves to the new
    /// digest (like `docker tag`), the old content stays addressable.
    pub fn import(&self, src: &Path, tags: &[String]) -> Result<String, String> {
        let manifest_path = src.join("bundle.json");
        let manifest: Manifest = fsutil::read_json(&manifest_path)?
            .ok_or_else(|| format!("{} is not a bundle: it has no bundle.json", src.display()))?;
        let image = paved_oci::Image::of_bundle(src, &manifest.entrypoint, &manifest.cmd).map_err(|e| e.to_string())?;
        self.oci().write(&image).map_err(|e| e.to_string())?;
        let hex = paved_oci::hex_of(image.digest()).map_err(|e| e.to_string())?.to_string();
        let dest = self.blob(&hex);
        if !dest.exists() {
            let tmp = self.dir.join("blobs").join(format!(".incoming-{hex}-{}", std::process::id()));
            crate::remove_dir(&tmp)?;
            copy_tree(src, &tmp)?;
            if let Some(parent) = dest.parent() {
                std::fs::create_dir_all(parent).map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
            }
            std::fs::rename(&tmp, &dest)
                .or_else(|e| if dest.exists() { Ok(()) } else { Err(e) })
                .map_err(|e| format!("cannot store bundle: {e}"))?;
        }
        let _lock = FileLock::acquire(&self.dir.join("tags.lock"))?;
        let mut all = self.tags()?;
        for t in tags {
            all.insert(normalise(t), format!("sha256:{hex}"));
        }
        fsutil::write_json(&self.tags_file(), &all, false)?;
        Ok(format!("sha256:{hex}"))
    }

    /// Finds an image by `sha256:…`, `NAME@sha256:…`, `NAME:TAG` or `NAME` (`:latest`).
    pub fn resolve(&self, reference: &str) -> Result<Image, String> {
        let digest = match reference.rsplit_once('@') {
            Some((_, d)) => d.to_string(),
            None if reference.starts_with("sha256:") => reference.to_string(),
            None => self.tags()?.get(&normalise(reference)).cloned().ok_or_else(|| {
                format!(
                    "image `{reference}` is not in paved's local image store; import a bundle with \
                     `paved image import DIR --tag {reference}`"
                )
            })?,
        };
        let hex = digest
            .strip_prefix("sha256:")
            .filter(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
            .ok_or_else(|| format!("`{digest}` is not a sha256 digest"))?;
        let root = self.blob(hex);
        let manifest = fsutil::read_json(&root.join("bundle.json"))?
            .ok_or_else(|| format!("image {digest} is not in paved's local image store"))?;
        Ok(Image { digest, root, manifest })
    }
}

/// `name` means `name:latest`.
fn normalise(reference: &str) -> String {
    let last = reference.rsplit('/').next().unwrap_or(reference);
    if last.contains(':') { reference.to_string() } else { format!("{reference}:latest") }
}

fn copy_tree(src: &Path, dest: &Path) -> Result<(), String> {
    std::fs::create_dir_all(dest).map_err(|e| format!("cannot create {}: {e}", dest.display()))?;
    for e in std::fs::read_dir(src).map_err(|e| format!("cannot read {}: {e}", src.display()))?.flatten() {
        let to = dest.join(e.file_name());
        if e.file_type().map_err(|e| e.to_string())?.is_dir() {
            copy_tree(&e.path(), &to)?;
        } else {
            std::fs::copy(e.path(), &to).map_err(|err| format!("cannot copy {}: {err}", e.path().display()))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bundle(dir: &Path, body: &str) {
        std::fs::create_dir_all(dir.join("bin")).unwrap();
        std::fs::write(dir.join("bundle.json"), r#"{"entrypoint": ["/bin/app"]}"#).unwrap();
        std::fs::write(dir.join("bin/app"), body).unwrap();
    }

    #[test]
    fn identical_content_has_one_digest_and_tags_resolve_to_it() {
        let tmp = tempfile::tempdir().unwrap();
        let store = ImageStore::new(tmp.path().join("images"));
        bundle(&tmp.path().join("a"), "v1");
        bundle(&tmp.path().join("b"), "v1");
        let d1 = store.import(&tmp.path().join("a"), &["example/app:1".into()]).unwrap();
        let d2 = store.import(&tmp.path().join("b"), &[]).unwrap();
        assert_eq!(d1, d2);
        let img = store.resolve("example/app:1").unwrap();
        assert_eq!(img.digest, d1);
        // The digest is the OCI image's, whose blobs are kept for a registry.
        assert_eq!(store.oci().read(&d1).unwrap().digest(), d1);
        assert_eq!(img.manifest.entrypoint, ["/bin/app"]);
        assert_eq!(store.resolve(&format!("example/app@{d1}")).unwrap().root, img.root);
    }

    #[test]
    fn changed_content_gets_a_new_digest_and_unknown_images_say_how_to_import() {
        let tmp = tempfile::tempdir().unwrap();
        let store = ImageStore::new(tmp.path().join("images"));
        bundle(&tmp.path().join("a"), "v1");
        let d1 = store.import(&tmp.path().join("a"), &["app".into()]).unwrap();
        bundle(&tmp.path().join("a"), "v2");
        let d2 = store.import(&tmp.path().join("a"), &["app".into()]).unwrap();
        assert_ne!(d1, d2);
        assert_eq!(store.resolve("app:latest").unwrap().digest, d2);
        assert!(store.resolve(&d1).is_ok(), "old content stays addressable by digest");
        let err = store.resolve("nope:1").unwrap_err();
        assert!(err.contains("paved image import"), "{err}");
    }
}
