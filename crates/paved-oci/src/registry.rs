//! A registry as paved uses it: images by digest only (never a tag, so
//! nothing paved writes can be moved under a running environment), through
//! the OCI distribution client of the ORAS project.
//!
//! A registry has two addresses: its **name**, the host that image
//! references carry (what the cluster pulls: `123456789012.dkr.ecr.eu-central-1.amazonaws.com`),
//! and its **endpoint**, where paved reaches it (the same host over https
//! unless told otherwise: a VPC endpoint, a mirror, or an emulator on
//! loopback).

use crate::{Image, MANIFEST_MEDIA_TYPE, OciError, sha256};
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::errors::{OciDistributionError, OciErrorCode};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference, RegistryOperation};

/// How paved signs in to a registry.
#[derive(Clone)]
pub enum Auth {
    Anonymous,
    /// User and password (ECR: `AWS` and the token of `GetAuthorizationToken`).
    Basic {
        user: String,
        password: String,
    },
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Auth::Anonymous => f.write_str("Anonymous"),
            Auth::Basic { user, .. } => write!(f, "Basic({user}, ***)"),
        }
    }
}

pub struct Registry {
    name: String,
    /// `host[:port]` paved connects to.
    endpoint: String,
    auth: RegistryAuth,
    client: Client,
}

impl Registry {
    /// `endpoint`: `https://HOST[:PORT]`, or `http://` for a registry on
    /// loopback only (tokens never cross a network in clear text); `None`:
    /// the name's own host over https.
    pub fn new(name: &str, endpoint: Option<&str>, auth: Auth) -> Result<Registry, OciError> {
        let (endpoint, protocol) = match endpoint {
            None => (name.to_string(), ClientProtocol::Https),
            Some(e) => {
                let bad = || OciError::BadEndpoint { endpoint: e.to_string() };
                let (scheme, host) = e.trim_end_matches('/').split_once("://").ok_or_else(bad)?;
                if host.is_empty() || host.contains('/') {
                    return Err(bad());
                }
                match scheme {
                    "https" => (host.to_string(), ClientProtocol::Https),
                    "http" if is_loopback(host) => (host.to_string(), ClientProtocol::HttpsExcept(vec![host.into()])),
                    _ => return Err(bad()),
                }
            }
        };
        let config = ClientConfig {
            protocol,
            connect_timeout: Some(std::time::Duration::from_secs(10)),
            read_timeout: Some(std::time::Duration::from_secs(60)),
            ..Default::default()
        };
        let auth = match auth {
            Auth::Anonymous => RegistryAuth::Anonymous,
            Auth::Basic { user, password } => RegistryAuth::Basic(user, password),
        };
        Ok(Registry { name: name.to_string(), endpoint, auth, client: Client::new(config) })
    }

    /// The registry's name (the host in image references).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `NAME/REPOSITORY@DIGEST`: what a manifest runs.
    pub fn image_reference(&self, repository: &str, digest: &str) -> String {
        format!("{}/{repository}@{digest}", self.name)
    }

    fn reference(&self, repository: &str, digest: &str) -> Reference {
        Reference::with_digest(self.endpoint.clone(), repository.to_string(), digest.to_string())
    }

    /// The error with its causes (a client's "error sending request" says
    /// why only in its sources: refused, timed out, a TLS failure).
    fn fail(&self, e: impl std::fmt::Display) -> OciError {
        OciError::Registry { registry: self.describe(), reason: e.to_string() }
    }

    fn fail_oci(&self, e: OciDistributionError) -> OciError {
        let mut reason = e.to_string();
        let mut source = std::error::Error::source(&e);
        while let Some(s) = source {
            let text = s.to_string();
            if !reason.contains(&text) {
                reason = format!("{reason}: {text}");
            }
            source = s.source();
        }
        self.fail(reason)
    }

    fn describe(&self) -> String {
        if self.endpoint == self.name { self.name.clone() } else { format!("{} (at {})", self.name, self.endpoint) }
    }

    async fn sign_in(&self, reference: &Reference, op: RegistryOperation) -> Result<(), OciError> {
        self.client.auth(reference, &self.auth, op).await.map(|_| ()).map_err(|e| self.fail_oci(e))
    }

    /// Whether the registry holds the image `digest` in `repository`.
    pub async fn has(&self, repository: &str, digest: &str) -> Result<bool, OciError> {
        crate::hex_of(digest)?;
        let reference = self.reference(repository, digest);
        self.sign_in(&reference, RegistryOperation::Pull).await?;
        match self.client.fetch_manifest_digest(&reference, &self.auth).await {
            Ok(found) => Ok(found == digest),
            Err(e) if not_found(&e) => Ok(false),
            Err(e) => Err(self.fail_oci(e)),
        }
    }

    /// Pushes an image by digest; blobs the repository has are not sent again.
    pub async fn push(&self, repository: &str, image: &Image) -> Result<(), OciError> {
        let reference = self.reference(repository, image.digest());
        self.sign_in(&reference, RegistryOperation::Push).await?;
        for blob in image.layers.iter().chain([&image.config]) {
            self.put_blob(&reference, &blob.digest, || Ok(blob.bytes.clone())).await?;
        }
        self.put_manifest(&reference, image.manifest.bytes.clone()).await
    }

    /// Copies the image `digest` from another registry (same bytes, same
    /// digest: a promotion never rebuilds). Fails when the source lacks it.
    pub async fn copy_from(
        &self,
        source: &Registry,
        source_repository: &str,
        repository: &str,
        digest: &str,
    ) -> Result<(), OciError> {
        let from = source.reference(source_repository, digest);
        source.sign_in(&from, RegistryOperation::Pull).await?;
        let (manifest, found) = source
            .client
            .pull_manifest_raw(&from, &source.auth, &[MANIFEST_MEDIA_TYPE])
            .await
            .map_err(|e| source.fail_oci(e))?;
        let actual = sha256(&manifest);
        if found != digest || actual != digest {
            return Err(source.fail(format!("asked for {digest}, the manifest served hashes to {actual}")));
        }
        let named = Image::named_blobs(&manifest).map_err(|e| source.fail(e))?;
        let to = self.reference(repository, digest);
        self.sign_in(&to, RegistryOperation::Push).await?;
        for (blob, _) in named {
            if self.client.blob_exists(&to, &blob).await.map_err(|e| self.fail_oci(e))? {
                continue;
            }
            let mut bytes = Vec::new();
            source.client.pull_blob(&from, blob.as_str(), &mut bytes).await.map_err(|e| source.fail_oci(e))?;
            self.put_blob(&to, &blob, || Ok(bytes)).await?;
        }
        self.put_manifest(&to, manifest.to_vec()).await
    }

    async fn put_blob(
        &self,
        reference: &Reference,
        digest: &str,
        bytes: impl FnOnce() -> Result<Vec<u8>, OciError>,
    ) -> Result<(), OciError> {
        if self.client.blob_exists(reference, digest).await.map_err(|e| self.fail_oci(e))? {
            return Ok(());
        }
        self.client.push_blob(reference, bytes()?, digest).await.map(|_| ()).map_err(|e| self.fail_oci(e))
    }

    async fn put_manifest(&self, reference: &Reference, manifest: Vec<u8>) -> Result<(), OciError> {
        let content_type = http::HeaderValue::from_static(MANIFEST_MEDIA_TYPE);
        self.client.push_manifest_raw(reference, manifest, content_type).await.map(|_| ()).map_err(|e| self.fail_oci(e))
    }
}

fn is_loopback(host: &str) -> bool {
    let h = host.rsplit_once(':').map_or(host, |(h, _)| h);
    h == "localhost" || h.parse::<std::net::Ipv4Addr>().is_ok_and(|ip| ip.is_loopback()) || h == "[::1]"
}

/// A 404 or a registry's "unknown manifest / repository" answer.
fn not_found(e: &OciDistributionError) -> bool {
    match e {
        OciDistributionError::ImageManifestNotFoundError(_) => true,
        OciDistributionError::ServerError { code, .. } => *code == 404,
        OciDistributionError::RegistryError { envelope, .. } => envelope.errors.iter().any(|e| {
            matches!(e.code, OciErrorCode::ManifestUnknown | OciErrorCode::NameUnknown | OciErrorCode::NotFound)
        }),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_are_https_or_loopback_http() {
        for ok in
            ["https://registry.example.com", "https://10.0.0.1:5000/", "http://127.0.0.1:5000", "http://localhost:5000"]
        {
            assert!(Registry::new("r.example.com", Some(ok), Auth::Anonymous).is_ok(), "{ok}");
        }
        for bad in ["http://registry.example.com", "ftp://x", "registry.example.com", "https://x/path", "https://"] {
            assert!(
                matches!(Registry::new("r.example.com", Some(bad), Auth::Anonymous), Err(OciError::BadEndpoint { .. })),
                "{bad}"
            );
        }
    }

    #[test]
    fn the_password_never_shows() {
        assert_eq!(format!("{:?}", Auth::Basic { user: "AWS".into(), password: "s3cr3t".into() }), "Basic(AWS, ***)");
    }
}
