//! Secrets for both doors: the vault under the configured key-encryption
//! key, which environments' secrets an environment may use, and the values
//! an apply hands to its workloads.

use crate::{Caller, Control, ControlError};
use paved_catalog::Catalog;
use paved_engine::SecretValues;
use paved_model::{EnvType, Kind, Spec};
use paved_plan::ResourceGraph;
use paved_secrets::{
    Actor, KeyFile, KeyProvider, KeyRing, RotateOptions, RotationPhase, RotationReport, Scope, SecretInfo, SecretValue,
    Vault,
};
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;

/// Where the key-encryption key comes from (`--kek`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KekSource {
    /// A local key file (64 hex digits, 0600), created on first use.
    File(PathBuf),
    /// An environment variable holding 64 hex digits.
    Env(String),
    /// An AWS KMS key, used with the keyless credentials of a CloudAccount.
    AwsKms { account: String, key: String },
}

impl std::str::FromStr for KekSource {
    type Err = String;
    fn from_str(s: &str) -> Result<KekSource, String> {
        let bad = || {
            format!(
                "`{s}` is not a key source: use file:PATH, env:VARIABLE or aws-kms:ACCOUNT/KEY (a CloudAccount name and a key id, ARN or alias)"
            )
        };
        match s.split_once(':') {
            Some(("file", path)) if !path.is_empty() => Ok(KekSource::File(path.into())),
            Some(("env", var)) if !var.is_empty() => Ok(KekSource::Env(var.into())),
            Some(("aws-kms", rest)) => match rest.split_once('/') {
                Some((account, key)) if !account.is_empty() && !key.is_empty() => {
                    Ok(KekSource::AwsKms { account: account.into(), key: key.into() })
                }
                _ => Err(bad()),
            },
            _ => Err(bad()),
        }
    }
}

impl std::fmt::Display for KekSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KekSource::File(p) => write!(f, "file:{}", p.display()),
            KekSource::Env(v) => write!(f, "env:{v}"),
            KekSource::AwsKms { account, key } => write!(f, "aws-kms:{account}/{key}"),
        }
    }
}

impl KekSource {
    /// Local sources need nothing but this machine; a KMS needs the network.
    pub fn is_local(&self) -> bool {
        !matches!(self, KekSource::AwsKms { .. })
    }
}

/// How a secret request failed, for the doors to map onto exit codes and statuses.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error(transparent)]
    Vault(#[from] paved_secrets::SecretsError),
    #[error(
        "{env_type} environment `{environment}` may not use the secrets of production environment `{source_env}` (secretsFrom)"
    )]
    ProductionShared { environment: String, env_type: EnvType, source_env: String },
    #[error("the key-encryption key {source_name} cannot be used: {reason}")]
    Kek { source_name: String, reason: String },
    #[error(
        "secret `{name}` (version {version} in {environment}) is not UTF-8 text; workloads receive secrets as text (variables, files): set it again as text (e.g. base64)"
    )]
    NotText { name: String, environment: String, version: i64 },
}

impl Control {
    pub(crate) async fn provider(&self, source: &KekSource) -> Result<Arc<dyn KeyProvider>, ControlError> {
        let kek_error = |reason: String| SecretError::Kek { source_name: source.to_string(), reason };
        Ok(match source {
            KekSource::File(path) => {
                Arc::new(KeyFile::open_or_create(path, &mut rand::rng()).map_err(|e| kek_error(e.to_string()))?)
            }
            KekSource::Env(var) => {
                Arc::new(paved_secrets::EnvKey::from_var(var).map_err(|e| kek_error(e.to_string()))?)
            }
            // Boxed: a KMS key needs the broker, whose issuer needs a (local) provider.
            KekSource::AwsKms { account, key } => Box::pin(self.kms_key(account, key)).await?,
        })
    }

    /// The configured KEK, with the previous ones still read.
    async fn key_ring(&self) -> Result<KeyRing, ControlError> {
        let mut ring = KeyRing::new(self.provider(&self.settings.kek).await?);
        for previous in &self.settings.kek_previous {
            // An earlier key must exist: creating a fresh one here would read nothing.
            if let KekSource::File(path) = previous
                && !path.exists()
            {
                return Err(SecretError::Kek {
                    source_name: previous.to_string(),
                    reason: "no such file (--kek-previous names a key that already wrapped data keys)".into(),
                }
                .into());
            }
            ring = ring.also_reading(self.provider(previous).await?);
        }
        Ok(ring)
    }

    /// The vault under the configured KEK, opened once per `Control`.
    pub async fn vault(&self) -> Result<Arc<Vault>, ControlError> {
        self.vault
            .get_or_try_init(|| async {
                Ok(Arc::new(Vault::new(self.store.clone(), self.key_ring().await?, self.clock.clone())))
            })
            .await
            .cloned()
    }

    /// The environments whose secrets `environment` uses, in lookup order:
    /// itself, then its `secretsFrom`. A non-production environment never
    /// gets a production one, even if that environment became production
    /// after the reference was recorded.
    pub async fn secret_chain(&self, catalog: &Catalog, environment: &str) -> Result<Vec<String>, ControlError> {
        let Spec::Environment(env) = catalog.get(Kind::Environment, environment).await?.spec else {
            return Ok(vec![environment.to_string()]);
        };
        let mut chain = vec![environment.to_string()];
        for source in &env.spec.secrets_from {
            let Ok(Spec::Environment(from)) = catalog.get(Kind::Environment, source).await.map(|o| o.spec) else {
                continue;
            };
            if from.spec.env_type == EnvType::Production && env.spec.env_type != EnvType::Production {
                return Err(SecretError::ProductionShared {
                    environment: environment.to_string(),
                    env_type: env.spec.env_type,
                    source_env: source.clone(),
                }
                .into());
            }
            chain.push(source.clone());
        }
        Ok(chain)
    }

    /// Values for every `${secret:SERVICE/NAME}` reference of an
    /// environment's graphs (the desired one, and the applied one whose
    /// nodes may be replaced or deleted), from the environment's chain. A
    /// missing secret is left out: the node that needs it fails and names
    /// it, the others still apply.
    pub async fn secret_values(
        &self,
        catalog: &Catalog,
        environment: &str,
        graphs: &[&ResourceGraph],
    ) -> Result<SecretValues, ControlError> {
        let mut keys = BTreeSet::new();
        for node in graphs.iter().flat_map(|g| g.nodes.values()) {
            paved_engine::secret_refs(&node.properties, &mut keys);
        }
        if keys.is_empty() {
            return Ok(SecretValues::default());
        }
        let chain = self.secret_chain(catalog, environment).await?;
        let vault = self.vault().await?;
        let mut values = BTreeMap::new();
        for key in keys {
            let (service, name) = key.split_once('/').unwrap_or(("", key.as_str()));
            let service = Some(service).filter(|s| !s.is_empty());
            if let Some((info, value)) = vault.resolve(&chain, service, name).await.map_err(SecretError::from)? {
                // Workloads take text (environment variables, files): a binary value is refused, not mangled.
                let text = String::from_utf8(value.0).map_err(|_| SecretError::NotText {
                    name: name.to_string(),
                    environment: info.environment.clone(),
                    version: info.version,
                })?;
                values.insert(key.clone(), text);
            }
        }
        Ok(SecretValues::new(values))
    }

    /// The `${secrets.NAME}` references of `graph` that nothing in the
    /// environment's chain answers (an apply would fail on them), as
    /// `SERVICE/NAME`. Plans show them before anything runs.
    pub async fn missing_secrets(&self, catalog: &Catalog, graph: &ResourceGraph) -> Result<Vec<String>, ControlError> {
        let mut keys = BTreeSet::new();
        for node in graph.nodes.values() {
            paved_engine::secret_refs(&node.properties, &mut keys);
        }
        if keys.is_empty() {
            return Ok(vec![]);
        }
        let chain = self.secret_chain(catalog, &graph.environment).await?;
        let vault = self.vault().await?;
        let mut missing = vec![];
        for key in keys {
            let (service, name) = key.split_once('/').unwrap_or(("", key.as_str()));
            let service = Some(service).filter(|s| !s.is_empty());
            if vault.find(&chain, service, name).await.map_err(SecretError::from)?.is_none() {
                missing.push(key);
            }
        }
        Ok(missing)
    }

    /// Refuses a scope naming an environment that is not recorded (a typo
    /// would otherwise hold a secret nothing ever reads).
    async fn check_scope(&self, catalog: &Catalog, scope: &Scope) -> Result<(), ControlError> {
        catalog.get(Kind::Environment, &scope.environment).await?;
        Ok(())
    }

    pub async fn set_secret(
        &self,
        caller: &Caller,
        scope: &Scope,
        name: &str,
        value: &SecretValue,
    ) -> Result<SecretInfo, ControlError> {
        self.check_scope(&self.catalog(caller.request.clone()), scope).await?;
        let vault = self.vault().await?;
        Ok(vault.set(scope, name, value, &actor(caller)).await.map_err(SecretError::from)?)
    }

    pub async fn delete_secret(&self, caller: &Caller, scope: &Scope, name: &str) -> Result<SecretInfo, ControlError> {
        Ok(self.vault().await?.delete(scope, name, &actor(caller)).await.map_err(SecretError::from)?)
    }

    /// Names, versions, who and when: never values.
    pub async fn list_secrets(
        &self,
        environment: &str,
        service: Option<&str>,
    ) -> Result<Vec<SecretInfo>, ControlError> {
        self.check_scope(&self.catalog(Default::default()), &Scope::environment(environment)).await?;
        Ok(self.vault().await?.list(environment, service).await.map_err(SecretError::from)?)
    }

    pub async fn secret_history(&self, scope: &Scope, name: &str) -> Result<Vec<SecretInfo>, ControlError> {
        Ok(self.vault().await?.history(scope, name).await.map_err(SecretError::from)?)
    }

    /// A value, for a caller allowed to see it; audited either way.
    pub async fn reveal_secret(
        &self,
        caller: &Caller,
        scope: &Scope,
        name: &str,
        version: Option<i64>,
    ) -> Result<(SecretInfo, SecretValue), ControlError> {
        self.gate_reveal(caller, scope, name).await?;
        Ok(self.vault().await?.reveal(scope, name, version, &actor(caller)).await.map_err(SecretError::from)?)
    }

    /// Rotates data keys, and with `to` the KEK as well (re-wrapping under
    /// it); resumable. Audited when it finishes.
    pub async fn rotate_keys(
        &self,
        caller: &Caller,
        to: Option<&KekSource>,
        opts: RotateOptions,
        progress: &(dyn Fn(RotationPhase, usize) + Sync),
    ) -> Result<RotationReport, ControlError> {
        let current = self.key_ring().await?;
        let ring = match to {
            Some(to) => current.rotating_to(self.provider(to).await?),
            None => current,
        };
        let vault = Vault::new(self.store.clone(), ring.clone(), self.clock.clone());
        // Signing keys follow the KEK only to another local one (see `issuer_kek`).
        let opts = RotateOptions {
            rewrap_signing_keys: to.is_some_and(KekSource::is_local) && self.settings.kek.is_local(),
            ..opts
        };
        let report = vault.rotate(opts, progress).await.map_err(SecretError::from)?;
        if report.finished {
            let details = serde_json::to_value(&report).unwrap_or_default();
            let target = format!("KEK/{}", ring.current().id());
            self.record(caller, "secret.rotate-keys", target, paved_store::AuditOutcome::Succeeded, None, details)
                .await?;
        }
        Ok(report)
    }
}

fn actor(caller: &Caller) -> Actor {
    Actor { subject: caller.actor.clone(), request: caller.request.clone() }
}

/// Sensitive outputs of resources (generated passwords) kept in the vault,
/// as secrets of the environment scoped to `resource:NODE`: they show in
/// `paved secret list`, are re-keyed by rotation, and the state store only
/// records their version.
pub(crate) struct ResourceCredentials {
    pub(crate) control: Control,
}

fn resource_scope(environment: &str, node: &str) -> Scope {
    Scope::service(environment, format!("resource:{node}"))
}

#[async_trait::async_trait]
impl paved_engine::SensitiveOutputs for ResourceCredentials {
    async fn seal(
        &self,
        environment: &str,
        node: &str,
        output: &str,
        value: &str,
    ) -> Result<serde_json::Value, String> {
        let vault = self.control.vault().await.map_err(|e| e.to_string())?;
        let actor = Actor { subject: "paved".into(), request: Default::default() };
        let scope = resource_scope(environment, node);
        let version = vault
            .keep(&scope, output, &SecretValue(value.as_bytes().to_vec()), &actor)
            .await
            .map_err(|e| e.to_string())?;
        Ok(serde_json::json!({ "version": version }))
    }

    async fn open(
        &self,
        environment: &str,
        node: &str,
        output: &str,
        sealed: &serde_json::Value,
    ) -> Result<String, String> {
        let vault = self.control.vault().await.map_err(|e| e.to_string())?;
        let version = sealed["version"].as_i64();
        let (_, value) =
            vault.read(&resource_scope(environment, node), output, version).await.map_err(|e| e.to_string())?;
        String::from_utf8(value.0).map_err(|_| format!("output `{output}` is not text"))
    }

    async fn forget(&self, environment: &str, node: &str, output: &str) -> Result<(), String> {
        let vault = self.control.vault().await.map_err(|e| e.to_string())?;
        let actor = Actor { subject: "paved".into(), request: Default::default() };
        match vault.delete(&resource_scope(environment, node), output, &actor).await {
            // Never kept (an apply that crashed before recording it) or already retired.
            Ok(_) | Err(paved_secrets::SecretsError::NotFound { .. }) => Ok(()),
            Err(e) => Err(e.to_string()),
        }
    }
}
