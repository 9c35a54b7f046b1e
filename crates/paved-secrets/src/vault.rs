//! The vault: secrets of environments (optionally narrowed to a service),
//! versioned, stored sealed, audited, and re-keyed by rotation.
//!
//! Listings and histories carry names, versions, who and when — never a
//! value. Values leave the vault only through [`Vault::reveal`] (always
//! audited) and [`Vault::resolve`] (for an apply, which hands them to
//! workloads).

use crate::SecretsError;
use crate::envelope::{Binding, DataKey, Sealed, SecretValue, WrappedKey, open, seal};
use crate::keys::KeyRing;
use paved_model::Clock;
use paved_store::{
    AuditOutcome, NewAuditEvent, RequestContext, Rewrapped, Store, StoreError, StoredDataKey, StoredSecret,
};
use rand::{CryptoRng, SeedableRng};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use time::OffsetDateTime;

/// Where a secret lives: an environment, optionally one of its services.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Scope {
    pub environment: String,
    pub service: Option<String>,
}

impl Scope {
    pub fn environment(environment: impl Into<String>) -> Scope {
        Scope { environment: environment.into(), service: None }
    }

    pub fn service(environment: impl Into<String>, service: impl Into<String>) -> Scope {
        Scope { environment: environment.into(), service: Some(service.into()) }
    }

    fn service_column(&self) -> &str {
        self.service.as_deref().unwrap_or_default()
    }

    /// `secret:ENV/NAME` or `secret:ENV/SERVICE/NAME`, as audit targets name it.
    pub fn target(&self, name: &str) -> String {
        match &self.service {
            Some(s) => format!("secret:{}/{s}/{name}", self.environment),
            None => format!("secret:{}/{name}", self.environment),
        }
    }
}

/// What may be shown about a secret version: everything but the value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct SecretInfo {
    pub environment: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    pub name: String,
    pub version: i64,
    pub deleted: bool,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    pub created_by: String,
}

impl From<&StoredSecret> for SecretInfo {
    fn from(s: &StoredSecret) -> SecretInfo {
        SecretInfo {
            environment: s.environment.clone(),
            service: Some(s.service.clone()).filter(|s| !s.is_empty()),
            name: s.name.clone(),
            version: s.version,
            deleted: s.deleted,
            created_at: s.created_at,
            created_by: s.created_by.clone(),
        }
    }
}

/// Who acts, for the audit log.
#[derive(Debug, Clone)]
pub struct Actor {
    pub subject: String,
    pub request: RequestContext,
}

/// How far a key rotation got.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RotationReport {
    /// Data (and signing) keys wrapped again by the new KEK.
    pub rewrapped: usize,
    /// Environments that got a new data key.
    pub new_data_keys: usize,
    /// Secret versions sealed again under a new data key.
    pub resealed: usize,
    /// Retired data keys removed once nothing used them.
    pub retired_keys_removed: usize,
    /// `false` when stopped by `stop_after` (run again to continue).
    pub finished: bool,
    /// The KEKs data keys are wrapped by now (one, when finished).
    pub kek_ids: Vec<String>,
}

/// Progress of a rotation, for a progress bar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RotationPhase {
    Rewrapping,
    NewDataKeys,
    Resealing,
    Cleaning,
}

#[derive(Debug, Clone, Copy)]
pub struct RotateOptions {
    /// Secret versions re-sealed per store round trip.
    pub batch_size: i64,
    /// Stop after this many writes (spread a rotation over windows; tests
    /// stop it at every point). `None`: run to the end.
    pub stop_after: Option<usize>,
    /// Re-wrap the OIDC issuer's signing keys too. Not when the new KEK is a
    /// cloud KMS: the issuer must sign before any cloud credential exists.
    pub rewrap_signing_keys: bool,
}

impl Default for RotateOptions {
    fn default() -> RotateOptions {
        RotateOptions { batch_size: 100, stop_after: None, rewrap_signing_keys: true }
    }
}

/// Secret names look like environment variable names (they often become one).
pub fn check_name(name: &str) -> Result<(), SecretsError> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && name.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-'));
    if ok {
        Ok(())
    } else {
        Err(SecretsError::BadName {
            name: name.into(),
            reason: "use letters, digits, `_` and `-`, starting with a letter or `_` (at most 128)".into(),
        })
    }
}

type SharedRng = Mutex<Box<dyn CryptoRng + Send>>;

pub struct Vault {
    store: Arc<dyn Store>,
    keys: KeyRing,
    clock: Arc<dyn Clock>,
    rng: SharedRng,
    /// Data keys unwrapped so far, by (environment, key id).
    unwrapped: Mutex<HashMap<(String, String), DataKey>>,
}

fn hex_nonce(text: &str) -> Result<[u8; 12], SecretsError> {
    let bytes = hex::decode(text).map_err(|e| SecretsError::Malformed(format!("nonce: {e}")))?;
    bytes.try_into().map_err(|_| SecretsError::Malformed("nonce is not 12 bytes".into()))
}

fn hex_bytes(text: &str) -> Result<Vec<u8>, SecretsError> {
    hex::decode(text).map_err(|e| SecretsError::Malformed(format!("ciphertext: {e}")))
}

fn wrapped_of(k: &StoredDataKey) -> Result<WrappedKey, SecretsError> {
    Ok(WrappedKey {
        key_id: k.id.clone(),
        kek_id: k.kek_id.clone(),
        nonce: hex_nonce(&k.nonce)?,
        ciphertext: hex_bytes(&k.wrapped)?,
    })
}

fn binding(s: &StoredSecret) -> Binding {
    Binding {
        environment: s.environment.clone(),
        service: s.service.clone(),
        name: s.name.clone(),
        version: s.version as u64,
    }
}

impl Vault {
    /// A vault with its own cryptographically secure generator.
    pub fn new(store: Arc<dyn Store>, keys: KeyRing, clock: Arc<dyn Clock>) -> Vault {
        let rng = rand::rngs::StdRng::from_rng(&mut rand::rng());
        Vault::with_rng(store, keys, clock, Box::new(rng))
    }

    pub fn with_rng(
        store: Arc<dyn Store>,
        keys: KeyRing,
        clock: Arc<dyn Clock>,
        rng: Box<dyn CryptoRng + Send>,
    ) -> Vault {
        Vault { store, keys, clock, rng: Mutex::new(rng), unwrapped: Mutex::default() }
    }

    pub fn keys(&self) -> &KeyRing {
        &self.keys
    }

    fn random<T>(&self, f: impl FnOnce(&mut dyn CryptoRng) -> T) -> T {
        let mut rng = self.rng.lock().unwrap_or_else(|p| p.into_inner());
        f(rng.as_mut())
    }

    fn fresh_nonce(&self) -> [u8; 12] {
        self.random(|r| {
            let mut n = [0u8; 12];
            r.fill_bytes(&mut n);
            n
        })
    }

    /// A stored data key, unwrapped once per vault: a key's bytes never
    /// change under its id (rotation re-wraps, it does not re-key), and with
    /// a cloud KMS every unwrap is a network call.
    async fn unwrapped(&self, stored: &StoredDataKey) -> Result<DataKey, SecretsError> {
        let key = (stored.environment.clone(), stored.id.clone());
        if let Some(k) = self.unwrapped.lock().unwrap_or_else(|p| p.into_inner()).get(&key) {
            return Ok(k.clone());
        }
        let k = self.keys.unwrap(&wrapped_of(stored)?).await?;
        self.unwrapped.lock().unwrap_or_else(|p| p.into_inner()).insert(key, k.clone());
        Ok(k)
    }

    /// The environment's active data key, created on first use.
    async fn active_key(&self, environment: &str) -> Result<DataKey, SecretsError> {
        let keys = self.store.data_keys(Some(environment)).await?;
        if let Some(active) = keys.iter().rev().find(|k| k.retired_at.is_none()) {
            return self.unwrapped(active).await;
        }
        self.new_data_key(environment).await
    }

    /// Creates a data key for the environment and retires its others.
    async fn new_data_key(&self, environment: &str) -> Result<DataKey, SecretsError> {
        let id = self.random(|r| {
            let mut b = [0u8; 8];
            r.fill_bytes(&mut b);
            format!("dek_{}", hex::encode(b))
        });
        let key = self.random(|r| {
            let mut b = [0u8; 32];
            r.fill_bytes(&mut b);
            DataKey::from_bytes(id, b)
        });
        let wrapped = self.keys.wrap(&key, self.fresh_nonce()).await?;
        self.store
            .add_data_key(&StoredDataKey {
                id: key.id.clone(),
                environment: environment.into(),
                kek_id: wrapped.kek_id,
                nonce: hex::encode(wrapped.nonce),
                wrapped: hex::encode(wrapped.ciphertext),
                created_at: self.clock.now(),
                retired_at: None,
            })
            .await?;
        self.unwrapped
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert((environment.to_string(), key.id.clone()), key.clone());
        Ok(key)
    }

    async fn data_key(&self, environment: &str, id: &str) -> Result<DataKey, SecretsError> {
        let cached =
            self.unwrapped.lock().unwrap_or_else(|p| p.into_inner()).get(&(environment.into(), id.into())).cloned();
        if let Some(k) = cached {
            return Ok(k);
        }
        let keys = self.store.data_keys(Some(environment)).await?;
        let stored = keys.iter().find(|k| k.id == id).ok_or_else(|| {
            SecretsError::Malformed(format!("data key `{id}` of environment `{environment}` is missing"))
        })?;
        self.unwrapped(stored).await
    }

    async fn latest(&self, scope: &Scope, name: &str) -> Result<Option<StoredSecret>, SecretsError> {
        let versions = self.store.secret_versions(&scope.environment, Some(scope.service_column()), Some(name)).await?;
        Ok(versions.into_iter().last())
    }

    /// Stores a new version of a secret; returns what may be shown about it.
    pub async fn set(
        &self,
        scope: &Scope,
        name: &str,
        value: &SecretValue,
        actor: &Actor,
    ) -> Result<SecretInfo, SecretsError> {
        check_name(name)?;
        self.write(scope, name, Some(value), actor).await
    }

    /// Records a deletion (a version without a value); earlier versions stay
    /// in the history.
    pub async fn delete(&self, scope: &Scope, name: &str, actor: &Actor) -> Result<SecretInfo, SecretsError> {
        match self.latest(scope, name).await? {
            Some(s) if !s.deleted => self.write(scope, name, None, actor).await,
            _ => Err(SecretsError::NotFound { scope: scope.target(name) }),
        }
    }

    async fn write(
        &self,
        scope: &Scope,
        name: &str,
        value: Option<&SecretValue>,
        actor: &Actor,
    ) -> Result<SecretInfo, SecretsError> {
        // Two writers racing for a version: the loser takes the next one.
        let mut attempts = 0;
        loop {
            let version = self.latest(scope, name).await?.map_or(1, |s| s.version + 1);
            let at = self.clock.now();
            let mut stored = StoredSecret {
                environment: scope.environment.clone(),
                service: scope.service_column().into(),
                name: name.into(),
                version,
                key_id: String::new(),
                nonce: String::new(),
                ciphertext: String::new(),
                deleted: value.is_none(),
                created_at: at,
                created_by: actor.subject.clone(),
            };
            if let Some(value) = value {
                let key = self.active_key(&scope.environment).await?;
                let sealed = self.random(|r| seal(&key, value, &binding(&stored), &mut &mut *r));
                stored.key_id = sealed.key_id;
                stored.nonce = hex::encode(sealed.nonce);
                stored.ciphertext = hex::encode(sealed.ciphertext);
            }
            let event = NewAuditEvent {
                at,
                actor: actor.subject.clone(),
                action: if value.is_some() { "secret.set" } else { "secret.delete" }.into(),
                target: scope.target(name),
                outcome: AuditOutcome::Succeeded,
                request: actor.request.clone(),
                before: None,
                after: None,
                details: serde_json::json!({ "version": version }),
            };
            match self.store.add_secret_version(&stored, &event).await {
                Ok(()) => return Ok(SecretInfo::from(&stored)),
                Err(StoreError::Conflict { .. }) if attempts < 5 => attempts += 1,
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// The newest version of each secret of a scope (`service: None` lists
    /// the environment's own and every service's), deleted ones left out.
    pub async fn list(&self, environment: &str, service: Option<&str>) -> Result<Vec<SecretInfo>, SecretsError> {
        let versions = self.store.secret_versions(environment, service, None).await?;
        let mut newest: BTreeMap<(String, String), &StoredSecret> = BTreeMap::new();
        for v in &versions {
            newest.insert((v.service.clone(), v.name.clone()), v);
        }
        Ok(newest.values().filter(|s| !s.deleted).map(|s| SecretInfo::from(*s)).collect())
    }

    /// Every version of one secret, oldest first.
    pub async fn history(&self, scope: &Scope, name: &str) -> Result<Vec<SecretInfo>, SecretsError> {
        let versions = self.store.secret_versions(&scope.environment, Some(scope.service_column()), Some(name)).await?;
        if versions.is_empty() {
            return Err(SecretsError::NotFound { scope: scope.target(name) });
        }
        Ok(versions.iter().map(SecretInfo::from).collect())
    }

    async fn open_stored(&self, s: &StoredSecret) -> Result<SecretValue, SecretsError> {
        let key = self.data_key(&s.environment, &s.key_id).await?;
        let sealed =
            Sealed { key_id: s.key_id.clone(), nonce: hex_nonce(&s.nonce)?, ciphertext: hex_bytes(&s.ciphertext)? };
        open(&key, &sealed, &binding(s))
    }

    /// A secret's value (the newest version, or `version`). Always audited,
    /// whether it succeeds or not.
    pub async fn reveal(
        &self,
        scope: &Scope,
        name: &str,
        version: Option<i64>,
        actor: &Actor,
    ) -> Result<(SecretInfo, SecretValue), SecretsError> {
        let result = self.reveal_unaudited(scope, name, version).await;
        let event = NewAuditEvent {
            at: self.clock.now(),
            actor: actor.subject.clone(),
            action: "secret.reveal".into(),
            target: scope.target(name),
            outcome: if result.is_ok() { AuditOutcome::Succeeded } else { AuditOutcome::Failed },
            request: actor.request.clone(),
            before: None,
            after: None,
            details: match &result {
                Ok((info, _)) => serde_json::json!({ "version": info.version }),
                Err(e) => serde_json::json!({ "error": e.to_string() }),
            },
        };
        self.store.append_audit(&event).await?;
        result
    }

    /// Keeps a value paved itself produced (a password a driver generated)
    /// as a version of `scope`/`name`, unless the newest version already
    /// holds it (applies repeat); returns that version.
    pub async fn keep(
        &self,
        scope: &Scope,
        name: &str,
        value: &SecretValue,
        actor: &Actor,
    ) -> Result<i64, SecretsError> {
        if let Some(latest) = self.latest(scope, name).await?.filter(|s| !s.deleted)
            && self.open_stored(&latest).await? == *value
        {
            return Ok(latest.version);
        }
        Ok(self.write(scope, name, Some(value), actor).await?.version)
    }

    /// A version's value for an apply (audited as a whole, not per read).
    pub async fn read(
        &self,
        scope: &Scope,
        name: &str,
        version: Option<i64>,
    ) -> Result<(SecretInfo, SecretValue), SecretsError> {
        self.reveal_unaudited(scope, name, version).await
    }

    async fn reveal_unaudited(
        &self,
        scope: &Scope,
        name: &str,
        version: Option<i64>,
    ) -> Result<(SecretInfo, SecretValue), SecretsError> {
        let versions = self.store.secret_versions(&scope.environment, Some(scope.service_column()), Some(name)).await?;
        let found = match version {
            Some(v) => versions.iter().find(|s| s.version == v),
            None => versions.last(),
        };
        match found {
            Some(s) if !s.deleted => Ok((SecretInfo::from(s), self.open_stored(s).await?)),
            _ => Err(SecretsError::NotFound {
                scope: match version {
                    Some(v) => format!("{} version {v}", scope.target(name)),
                    None => scope.target(name),
                },
            }),
        }
    }

    /// The value an apply uses for `name` as seen by `service`: looked up in
    /// each environment of `chain` in order (the environment itself first,
    /// then the ones it shares from), the service's own secret before the
    /// environment's. `None` when no scope has it.
    pub async fn resolve(
        &self,
        chain: &[String],
        service: Option<&str>,
        name: &str,
    ) -> Result<Option<(SecretInfo, SecretValue)>, SecretsError> {
        match self.find(chain, service, name).await? {
            Some(s) => Ok(Some((SecretInfo::from(&s), self.open_stored(&s).await?))),
            None => Ok(None),
        }
    }

    /// Which version [`Vault::resolve`] would open, without opening it
    /// (plans check that every referenced secret exists).
    pub async fn find(
        &self,
        chain: &[String],
        service: Option<&str>,
        name: &str,
    ) -> Result<Option<StoredSecret>, SecretsError> {
        for environment in chain {
            let versions = self.store.secret_versions(environment, None, Some(name)).await?;
            for svc in service.into_iter().chain(std::iter::once("")) {
                match versions.iter().rfind(|s| s.service == svc) {
                    Some(s) if !s.deleted => return Ok(Some(s.clone())),
                    _ => {}
                }
            }
        }
        Ok(None)
    }

    /// Rotates keys, resumably: (1) every data and signing key not yet
    /// wrapped by the ring's current KEK is wrapped again by it; (2) each
    /// environment gets a new data key (unless a previous run already gave
    /// it one and has not finished re-sealing); (3) values sealed with
    /// retired data keys are sealed again with the new ones, in batches;
    /// (4) retired data keys nothing uses any more are removed. Every write
    /// is conditional on what it replaces, so running it again after a
    /// crash at any point continues where it stopped.
    pub async fn rotate(
        &self,
        opts: RotateOptions,
        progress: &(dyn Fn(RotationPhase, usize) + Sync),
    ) -> Result<RotationReport, SecretsError> {
        let mut report = RotationReport::default();
        let mut budget = opts.stop_after;
        // Spends one write from the budget; `false` when none is left.
        let mut spend = || match &mut budget {
            Some(0) => false,
            Some(n) => {
                *n -= 1;
                true
            }
            None => true,
        };
        let current = self.keys.current().id().to_string();

        progress(RotationPhase::Rewrapping, 0);
        for k in self.store.data_keys(None).await? {
            if k.kek_id == current {
                continue;
            }
            if !spend() {
                return self.stopped(report).await;
            }
            let key = self.unwrapped(&k).await?;
            let w = self.keys.wrap(&key, self.fresh_nonce()).await?;
            let to = Rewrapped { kek_id: w.kek_id, nonce: hex::encode(w.nonce), wrapped: hex::encode(w.ciphertext) };
            report.rewrapped += usize::from(self.store.rewrap_data_key(&k.id, &k.kek_id, &to).await?);
            progress(RotationPhase::Rewrapping, report.rewrapped);
        }
        let signing_keys = if opts.rewrap_signing_keys { self.store.signing_keys().await? } else { Vec::new() };
        for k in signing_keys {
            if k.kek_id == current {
                continue;
            }
            if !spend() {
                return self.stopped(report).await;
            }
            let wrapped = WrappedKey {
                key_id: k.kid.clone(),
                kek_id: k.kek_id.clone(),
                nonce: hex_nonce(&k.nonce)?,
                ciphertext: hex_bytes(&k.wrapped)?,
            };
            let key = self.keys.unwrap(&wrapped).await?;
            let w = self.keys.wrap(&key, self.fresh_nonce()).await?;
            let to = Rewrapped { kek_id: w.kek_id, nonce: hex::encode(w.nonce), wrapped: hex::encode(w.ciphertext) };
            report.rewrapped += usize::from(self.store.rewrap_signing_key(&k.kid, &k.kek_id, &to).await?);
            progress(RotationPhase::Rewrapping, report.rewrapped);
        }

        progress(RotationPhase::NewDataKeys, 0);
        let mut by_env: BTreeMap<String, Vec<StoredDataKey>> = BTreeMap::new();
        for k in self.store.data_keys(None).await? {
            by_env.entry(k.environment.clone()).or_default().push(k);
        }
        for (environment, keys) in &by_env {
            for retired in keys.iter().filter(|k| k.retired_at.is_some()) {
                report.retired_keys_removed += usize::from(self.store.delete_unused_data_key(&retired.id).await?);
            }
            let pending = self.store.data_keys(Some(environment)).await?.iter().any(|k| k.retired_at.is_some());
            if !pending {
                if !spend() {
                    return self.stopped(report).await;
                }
                self.new_data_key(environment).await?;
                report.new_data_keys += 1;
                progress(RotationPhase::NewDataKeys, report.new_data_keys);
            }
        }

        progress(RotationPhase::Resealing, 0);
        for environment in by_env.keys() {
            let keys = self.store.data_keys(Some(environment)).await?;
            let Some(active) = keys.iter().rev().find(|k| k.retired_at.is_none()) else { continue };
            let new_key = self.unwrapped(active).await?;
            for retired in keys.iter().filter(|k| k.retired_at.is_some()) {
                let old_key = self.unwrapped(retired).await?;
                loop {
                    let batch = self.store.secrets_sealed_with(&retired.id, opts.batch_size.max(1)).await?;
                    if batch.is_empty() {
                        break;
                    }
                    if !spend() {
                        return self.stopped(report).await;
                    }
                    let mut moved = Vec::with_capacity(batch.len());
                    for s in batch {
                        let sealed = Sealed {
                            key_id: s.key_id.clone(),
                            nonce: hex_nonce(&s.nonce)?,
                            ciphertext: hex_bytes(&s.ciphertext)?,
                        };
                        let value = open(&old_key, &sealed, &binding(&s))?;
                        let again = self.random(|r| seal(&new_key, &value, &binding(&s), &mut &mut *r));
                        moved.push(StoredSecret {
                            key_id: again.key_id,
                            nonce: hex::encode(again.nonce),
                            ciphertext: hex::encode(again.ciphertext),
                            ..s
                        });
                    }
                    // One transaction per batch: all of it is re-sealed, or none.
                    report.resealed += self.store.reseal_secrets(&moved, &retired.id).await?;
                    progress(RotationPhase::Resealing, report.resealed);
                }
            }
        }

        progress(RotationPhase::Cleaning, 0);
        for k in self.store.data_keys(None).await? {
            if k.retired_at.is_some() {
                report.retired_keys_removed += usize::from(self.store.delete_unused_data_key(&k.id).await?);
            }
        }
        report.finished = true;
        report.kek_ids = self.kek_ids().await?;
        Ok(report)
    }

    async fn stopped(&self, mut report: RotationReport) -> Result<RotationReport, SecretsError> {
        report.kek_ids = self.kek_ids().await?;
        Ok(report)
    }

    /// The KEKs that stored data keys are wrapped by.
    pub async fn kek_ids(&self) -> Result<Vec<String>, SecretsError> {
        let mut ids: Vec<String> = self.store.data_keys(None).await?.into_iter().map(|k| k.kek_id).collect();
        ids.sort();
        ids.dedup();
        Ok(ids)
    }

    /// Wraps key material (a signing key) with the current KEK.
    pub async fn wrap(&self, key: &DataKey) -> Result<WrappedKey, SecretsError> {
        self.keys.wrap(key, self.fresh_nonce()).await
    }

    pub async fn unwrap(&self, wrapped: &WrappedKey) -> Result<DataKey, SecretsError> {
        self.keys.unwrap(wrapped).await
    }

    /// A fresh random value (key material, identifiers).
    pub fn random_bytes<const N: usize>(&self) -> [u8; N] {
        self.random(|r| {
            let mut b = [0u8; N];
            r.fill_bytes(&mut b);
            b
        })
    }
}
