//! paved's own copy of every image it built: blobs by digest under
//! `blobs/sha256/`, as in an OCI image layout, so an image can be pushed
//! to any registry later (a deploy to an account whose registry lacks it)
//! without the bundle directory it came from.

use crate::{Blob, Image, OciError, hex_of, io, sha256};
use std::path::{Path, PathBuf};

pub struct Layout {
    dir: PathBuf,
}

impl Layout {
    pub fn new(dir: PathBuf) -> Layout {
        Layout { dir }
    }

    fn blob(&self, digest: &str) -> Result<PathBuf, OciError> {
        Ok(self.dir.join("blobs").join("sha256").join(hex_of(digest)?))
    }

    /// Stores an image's blobs; those already there are kept. Each blob is
    /// written aside and renamed, so a reader never sees half of one.
    pub fn write(&self, image: &Image) -> Result<(), OciError> {
        for blob in image.layers.iter().chain([&image.config, &image.manifest]) {
            let path = self.blob(&blob.digest)?;
            if path.exists() {
                continue;
            }
            let parent = path.parent().unwrap_or(&self.dir);
            std::fs::create_dir_all(parent).map_err(io(parent))?;
            let tmp = parent.join(format!(".incoming-{}-{}", hex_of(&blob.digest)?, std::process::id()));
            std::fs::write(&tmp, &blob.bytes).map_err(io(&tmp))?;
            std::fs::rename(&tmp, &path).map_err(io(&path))?;
        }
        Ok(())
    }

    /// The image of a manifest digest, every blob checked against its digest.
    pub fn read(&self, digest: &str) -> Result<Image, OciError> {
        let manifest = self.read_blob(digest, crate::MANIFEST_MEDIA_TYPE, digest, "the manifest")?;
        let named = Image::named_blobs(&manifest.bytes).map_err(|reason| OciError::Corrupt {
            digest: digest.to_string(),
            what: "the manifest".into(),
            actual: reason,
        })?;
        let mut blobs = named.iter().map(|(d, media)| {
            let media =
                if media == crate::CONFIG_MEDIA_TYPE { crate::CONFIG_MEDIA_TYPE } else { crate::LAYER_MEDIA_TYPE };
            self.read_blob(digest, media, d, "a blob")
        });
        let config = blobs.next().expect("named_blobs starts with the config")?;
        let layers = blobs.collect::<Result<Vec<_>, _>>()?;
        Ok(Image { manifest, config, layers })
    }

    fn read_blob(&self, image: &str, media_type: &'static str, digest: &str, what: &str) -> Result<Blob, OciError> {
        let path = self.blob(digest)?;
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(OciError::NotStored { digest: image.to_string(), layout: self.dir.display().to_string() });
            }
            Err(e) => return Err(io(&path)(e)),
        };
        let actual = sha256(&bytes);
        if actual != digest {
            return Err(OciError::Corrupt { digest: image.to_string(), what: format!("{what} {digest}"), actual });
        }
        Ok(Blob { media_type, digest: digest.to_string(), bytes })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_image_written_reads_back_and_a_changed_blob_is_refused() {
        let src = tempfile::tempdir().unwrap();
        std::fs::write(src.path().join("app"), "x").unwrap();
        let image = Image::of_bundle(src.path(), &["/app".into()], &[]).unwrap();
        let store = tempfile::tempdir().unwrap();
        let layout = Layout::new(store.path().to_path_buf());
        layout.write(&image).unwrap();
        layout.write(&image).unwrap();
        assert_eq!(layout.read(image.digest()).unwrap(), image);
        let missing = sha256(b"nothing");
        assert!(matches!(layout.read(&missing), Err(OciError::NotStored { .. })));
        std::fs::write(layout.blob(&image.layers[0].digest).unwrap(), "tampered").unwrap();
        assert!(matches!(layout.read(image.digest()), Err(OciError::Corrupt { .. })));
    }
}
