//! Artifacts into the registry a cluster environment pulls from, before
//! any manifest names them.
//!
//! Contract of [`Control::place_artifacts`]: a delivery commits a manifest
//! naming `REGISTRY/REPOSITORY@DIGEST` only after paved has seen `DIGEST` in
//! that registry. When it is missing, paved puts it there — copied byte
//! for byte from the registry of another environment that ran it (a
//! promotion across accounts or regions moves what ran before, never a
//! rebuild), else pushed from paved's own store (the OCI image `paved
//! artifact push` built) — and records which in the audit log.
//! A digest found nowhere fails the delivery, naming the digest, the
//! registry and what to do; nothing is committed.
//!
//! On AWS the registry is the account's ECR in the environment's region
//! (`paved_plan::aws::ecr_registry`), its repository `paved/SERVICE` is
//! created on first push (immutable tags, scan on push), and the login comes
//! from `GetAuthorizationToken` with the environment's keyless credentials.
//! `PAVED_REGISTRY_ENDPOINTS` (`NAME=URL,…`) tells paved where to reach a
//! registry other than at its own name (a pull-through mirror, a VPC
//! endpoint, an emulator on loopback); image references keep the name.

use crate::{Caller, Control, ControlError};
use paved_catalog::{Catalog, EnvironmentContext};
use paved_identity::WorkloadIdentity;
use paved_model::Provider;
use paved_oci::Registry;
use paved_store::{AuditOutcome, DeploymentFilter};
use serde::Serialize;

#[derive(Debug, thiserror::Error)]
pub enum ArtifactError {
    #[error("delivering `{environment}`: {reason}")]
    Registry { environment: String, reason: String },
    #[error(
        "delivering `{environment}`: artifact {digest} of `{service}` is in no registry paved can reach and not in paved's store ({why}); push the bundle again with `paved artifact push DIR --service {service}`"
    )]
    Nowhere { environment: String, service: String, digest: String, why: String },
    #[error("`{endpoint}` in PAVED_REGISTRY_ENDPOINTS is not NAME=URL")]
    BadEndpoints { endpoint: String },
}

/// How an artifact got into an environment's registry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Placement {
    /// The registry had it already.
    Present,
    /// Pushed from paved's own store.
    Pushed,
    /// Copied from the registry of environment `from`.
    Copied { from: String },
}

/// One artifact a delivery made sure of.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Placed {
    pub service: String,
    pub digest: String,
    /// `REGISTRY/REPOSITORY@DIGEST`, as the manifest names it.
    pub image: String,
    pub placement: Placement,
}

/// Where `PAVED_REGISTRY_ENDPOINTS` says a registry is reached, if it says.
fn endpoint_of(name: &str) -> Result<Option<String>, ArtifactError> {
    let Ok(all) = std::env::var("PAVED_REGISTRY_ENDPOINTS") else { return Ok(None) };
    for pair in all.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (n, url) =
            pair.split_once('=').ok_or_else(|| ArtifactError::BadEndpoints { endpoint: pair.to_string() })?;
        if n.trim() == name {
            return Ok(Some(url.trim().to_string()));
        }
    }
    Ok(None)
}

impl Control {
    /// The registry an environment's cluster pulls from, signed in with the
    /// environment's keyless credentials; `repositories`: created if missing.
    async fn registry_of(
        &self,
        catalog: &Catalog,
        c: &EnvironmentContext,
        repositories: &[String],
    ) -> Result<Registry, ControlError> {
        let environment = c.environment.metadata.name.clone();
        let fail = |reason: String| ArtifactError::Registry { environment: environment.clone(), reason };
        if c.account.spec.provider != Provider::Aws {
            return Err(fail(format!(
                "account `{}` ({}) has no artifact registry paved can push to; only AWS (ECR) is supported",
                c.account.metadata.name,
                c.account.spec.provider.as_str()
            ))
            .into());
        }
        let account_id = c.account.spec.account_id.clone().unwrap_or_default();
        let name = paved_plan::aws::ecr_registry(&account_id, &c.environment.spec.region);
        let identity = WorkloadIdentity {
            environment: environment.clone(),
            account: c.account.metadata.name.clone(),
            operation: "artifact-push".into(),
            service: None,
        };
        let (credentials, mut config) = self.aws_credentials(catalog, identity, "pushing artifacts").await?;
        config.region = c.environment.spec.region.clone();
        let ecr = paved_aws::Ecr::new(&config, credentials);
        for repository in repositories {
            // Read first: a deploy to a registry that has the repository changes nothing in the account.
            let exists =
                ecr.repository_settings(repository).await.map_err(|e| fail(format!("registry {name}: {e}")))?.is_some();
            if !exists {
                ecr.ensure_repository(repository).await.map_err(|e| fail(format!("registry {name}: {e}")))?;
            }
        }
        let login = ecr.login().await.map_err(|e| fail(format!("registry {name}: {e}")))?;
        let auth = paved_oci::Auth::Basic { user: login.user, password: login.password };
        Ok(Registry::new(&name, endpoint_of(&name)?.as_deref(), auth).map_err(|e| fail(e.to_string()))?)
    }

    /// Whether `environment` pulls its artifacts from a registry (a cluster
    /// environment delivering through Git), or why not.
    pub async fn pulls_from_registry(&self, environment: &str) -> Result<(), ControlError> {
        let catalog = self.catalog(Default::default());
        if self.delivers_through_git(&catalog, environment).await? {
            return Ok(());
        }
        Err(ArtifactError::Registry {
            environment: environment.to_string(),
            reason: "it is not a cluster environment delivering through Git, so it pulls from no registry (its artifacts run from paved's store)".into(),
        }
        .into())
    }

    /// Puts one artifact into a cluster environment's registry now (a
    /// pipeline that pushes at build time), as a delivery would.
    pub async fn place_artifact(
        &self,
        environment: &str,
        service: &str,
        digest: &str,
        caller: &Caller,
    ) -> Result<Placed, ControlError> {
        let catalog = self.catalog(caller.request.clone());
        let c = catalog.environment_context(environment).await?;
        self.pulls_from_registry(environment).await?;
        let mut placed =
            self.place_artifacts(&catalog, &c, &[(service.to_string(), digest.to_string())], caller).await?;
        Ok(placed.remove(0))
    }

    /// Makes sure every `(service, digest)` is in the environment's registry
    /// (see the module's contract), and records each artifact put there.
    pub(crate) async fn place_artifacts(
        &self,
        catalog: &Catalog,
        c: &EnvironmentContext,
        artifacts: &[(String, String)],
        caller: &Caller,
    ) -> Result<Vec<Placed>, ControlError> {
        if artifacts.is_empty() {
            return Ok(Vec::new());
        }
        let environment = c.environment.metadata.name.clone();
        let fail = |reason: String| ArtifactError::Registry { environment: environment.clone(), reason };
        let repositories: Vec<String> =
            artifacts.iter().map(|(service, _)| paved_plan::aws::ecr_repository(service)).collect();
        let registry = self.registry_of(catalog, c, &repositories).await?;
        let mut placed = Vec::new();
        for ((service, digest), repository) in artifacts.iter().zip(&repositories) {
            let placement = if registry.has(repository, digest).await.map_err(|e| fail(e.to_string()))? {
                Placement::Present
            } else {
                self.put_artifact(catalog, c, &registry, service, repository, digest).await?
            };
            if placement != Placement::Present {
                let details = serde_json::json!({"registry": registry.name(), "repository": repository,
                                                 "placement": placement});
                self.record(
                    caller,
                    "artifact.place",
                    format!("Artifact/{service}@{environment}"),
                    AuditOutcome::Succeeded,
                    Some(digest.clone()),
                    details,
                )
                .await?;
            }
            let image = registry.image_reference(repository, digest);
            placed.push(Placed { service: service.clone(), digest: digest.clone(), image, placement });
        }
        Ok(placed)
    }

    /// Copies from the registry of an environment that ran the digest (a
    /// promotion moves what ran in the stage before), else pushes from
    /// paved's store.
    async fn put_artifact(
        &self,
        catalog: &Catalog,
        c: &EnvironmentContext,
        registry: &Registry,
        service: &str,
        repository: &str,
        digest: &str,
    ) -> Result<Placement, ControlError> {
        let environment = c.environment.metadata.name.clone();
        let fail = |reason: String| ArtifactError::Registry { environment: environment.clone(), reason };
        let filter = DeploymentFilter { environment: None, service: Some(service.to_string()) };
        let mut sources: Vec<String> = self
            .store
            .deployments(&filter)
            .await?
            .into_iter()
            .filter(|d| d.artifact == digest && d.environment != environment)
            .map(|d| d.environment)
            .collect();
        sources.sort();
        sources.dedup();
        let mut tried = Vec::new();
        for from in sources {
            let Ok(other) = catalog.environment_context(&from).await else { continue };
            if other.account.spec.provider != Provider::Aws {
                continue;
            }
            let source = match self.registry_of(catalog, &other, &[]).await {
                Ok(r) if r.name() == registry.name() => continue,
                Ok(r) => r,
                Err(e) => {
                    tried.push(e.to_string());
                    continue;
                }
            };
            match registry.copy_from(&source, repository, repository, digest).await {
                Ok(()) => return Ok(Placement::Copied { from }),
                Err(e) => tried.push(e.to_string()),
            }
        }
        let layout = self.local.images().oci();
        let digest_owned = digest.to_string();
        let stored =
            tokio::task::spawn_blocking(move || layout.read(&digest_owned)).await.map_err(|e| fail(e.to_string()))?;
        match stored {
            Ok(image) => {
                registry.push(repository, &image).await.map_err(|e| fail(e.to_string()))?;
                return Ok(Placement::Pushed);
            }
            Err(e) => tried.push(e.to_string()),
        }
        Err(ArtifactError::Nowhere {
            environment,
            service: service.to_string(),
            digest: digest.to_string(),
            why: tried.join("; "),
        }
        .into())
    }
}
