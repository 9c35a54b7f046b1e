//! A cluster service's secret in AWS Secrets Manager (`paved/ENV/SERVICE`,
//! encrypted with the environment's key): the resolved values of its
//! variables that hold resource outputs or secrets, one JSON object, which
//! the External Secrets Operator brings into the service's namespace.
//!
//! Observing reads the value but never reports it: a key whose value
//! matches what paved wrote reads back as the desired value, any other as
//! [`CHANGED`] (drift masks these fields whole). Deleting schedules the
//! deletion with AWS's shortest recovery window (7 days), and creating a
//! secret scheduled for deletion restores it first
//! (<https://docs.aws.amazon.com/secretsmanager/latest/apireference/API_DeleteSecret.html>).
//!
//! A drift sweep reads many secrets at once ([`SecretsRead`]): metadata
//! from `ListSecrets`, values from `BatchGetSecretValue`, in place of a
//! `DescribeSecret` and a `GetSecretValue` per secret.

use super::props::tags_value;
use super::{Props, Session, failed, is_code};
use async_trait::async_trait;
use paved_engine::{Driver, DriverError, Observation, Outputs, Resource};
use serde_json::{Map, Value, json};
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

/// What a value changed outside paved reads as.
pub(crate) const CHANGED: &str = "(changed outside paved)";

/// A node's `tags` as Secrets Manager takes them (service secrets and
/// database logins' secrets).
pub(crate) fn tags(r: &Resource) -> Vec<aws_sdk_secretsmanager::types::Tag> {
    Props::of(r)
        .tags()
        .into_iter()
        .map(|(k, v)| aws_sdk_secretsmanager::types::Tag::builder().key(k).value(v).build())
        .collect()
}

/// What paved compares of a secret besides its value: from
/// `DescribeSecret` one at a time, or from a `ListSecrets` entry in a sweep.
pub(crate) struct Meta {
    pub(crate) name: Option<String>,
    pub(crate) arn: Option<String>,
    pub(crate) kms_key_id: Option<String>,
    /// In the nodes' `tags` shape ([`tags_value`]).
    pub(crate) tags: Value,
}

impl Meta {
    pub(crate) fn of(
        name: Option<&str>,
        arn: Option<&str>,
        kms_key_id: Option<&str>,
        tags: &[aws_sdk_secretsmanager::types::Tag],
    ) -> Self {
        Meta {
            name: name.map(str::to_string),
            arn: arn.map(str::to_string),
            kms_key_id: kms_key_id.map(str::to_string),
            tags: tags_value(tags.iter().filter_map(|t| Some((t.key()?, t.value()?)))),
        }
    }
}

/// Many secrets read at once, for a drift sweep.
///
/// | read | AWS | AWS's rules kept here |
/// |---|---|---|
/// | metadata (ARN, key, tags) of the secrets asked by name | `ListSecrets`, 100 a page, filtered by the names' prefixes (`paved/`) | at most 10 values in a filter; secrets scheduled for deletion are left out unless asked for, which is what a read wants (they read as absent); the listing is eventually consistent, so a name it does not show is confirmed with `DescribeSecret` before it reads as absent (<https://docs.aws.amazon.com/secretsmanager/latest/apireference/API_ListSecrets.html>) |
/// | values of the listed secrets and of secrets asked by ARN (RDS's master secrets) | `BatchGetSecretValue` with a `SecretIdList` | at most 20 ids a call; a secret that cannot be read is an entry of `Errors` (by the id asked), not a failed call (<https://docs.aws.amazon.com/secretsmanager/latest/apireference/API_BatchGetSecretValue.html>) |
pub(crate) struct SecretsRead {
    /// The secrets asked by name that exist and are not scheduled for deletion.
    listed: HashMap<String, Meta>,
    /// `SecretString`s by the name and the ARN of their secret.
    values: HashMap<String, String>,
    /// What could not be read, by the id asked: AWS's code and message.
    errors: HashMap<String, (String, String)>,
}

/// `BatchGetSecretValue`'s largest `SecretIdList`.
const BATCH: usize = 20;
/// `ListSecrets`' largest page.
const PAGE: i32 = 100;
/// The most values one `ListSecrets` filter takes.
const FILTER_VALUES: usize = 10;

impl SecretsRead {
    /// Reads the secrets `names` (metadata and value) and the values of
    /// `value_ids` (names or ARNs of secrets paved did not make).
    pub(crate) async fn read(s: &Session, names: &[&str], value_ids: &[&str]) -> Result<Self, DriverError> {
        let sm = &s.secrets;
        let wanted: BTreeSet<&str> = names.iter().copied().collect();
        // `paved/ENV/SERVICE` → `paved/`: one listing covers every environment.
        let prefixes: BTreeSet<&str> = wanted.iter().map(|n| n.find('/').map_or(*n, |i| &n[..=i])).collect();
        let prefixes: Vec<&str> = prefixes.into_iter().collect();
        let mut listed = HashMap::new();
        for chunk in prefixes.chunks(FILTER_VALUES) {
            let filter = aws_sdk_secretsmanager::types::Filter::builder()
                .key(aws_sdk_secretsmanager::types::FilterNameStringType::Name)
                .set_values(Some(chunk.iter().map(|p| p.to_string()).collect()))
                .build();
            let mut pages = sm.list_secrets().filters(filter).max_results(PAGE).into_paginator().send();
            while let Some(page) = pages.next().await {
                let page = page.map_err(|e| failed("ListSecrets", e))?;
                for e in page.secret_list() {
                    let Some(name) = e.name().filter(|n| wanted.contains(n)) else { continue };
                    if e.deleted_date().is_none() {
                        listed.insert(name.to_string(), Meta::of(e.name(), e.arn(), e.kms_key_id(), e.tags()));
                    }
                }
            }
        }
        // Not listed: new (the listing lags) or absent — asked one by one.
        let unlisted: Vec<&str> = wanted.iter().copied().filter(|n| !listed.contains_key(*n)).collect();
        for name in unlisted {
            match sm.describe_secret().secret_id(name).send().await {
                Ok(d) if d.deleted_date().is_none() => {
                    listed.insert(name.to_string(), Meta::of(d.name(), d.arn(), d.kms_key_id(), d.tags()));
                }
                Ok(_) => {}
                Err(e) if is_code(&e, &["ResourceNotFoundException"]) => {}
                Err(e) => return Err(failed("DescribeSecret", e)),
            }
        }
        let mut ids: Vec<String> = listed.values().filter_map(|m| m.arn.clone()).collect();
        ids.extend(value_ids.iter().map(|id| id.to_string()));
        ids.sort();
        ids.dedup();
        let mut values = HashMap::new();
        let mut errors = HashMap::new();
        for chunk in ids.chunks(BATCH) {
            let out = sm
                .batch_get_secret_value()
                .set_secret_id_list(Some(chunk.to_vec()))
                .send()
                .await
                .map_err(|e| failed("BatchGetSecretValue", e))?;
            for v in out.secret_values() {
                let Some(text) = v.secret_string() else { continue };
                for key in [v.name(), v.arn()].into_iter().flatten() {
                    values.insert(key.to_string(), text.to_string());
                }
            }
            for e in out.errors() {
                if let Some(id) = e.secret_id() {
                    let code = e.error_code().unwrap_or("Unknown").to_string();
                    errors.insert(id.to_string(), (code, e.message().unwrap_or_default().to_string()));
                }
            }
        }
        Ok(SecretsRead { listed, values, errors })
    }

    /// The metadata of a secret asked by name; `None` when it does not
    /// exist or is scheduled for deletion.
    pub(crate) fn meta(&self, name: &str) -> Option<&Meta> {
        self.listed.get(name)
    }

    /// The value of a secret by the name or ARN it was asked under:
    /// `Ok(None)` when there is none to read (gone since it was listed,
    /// scheduled for deletion), an error as `GetSecretValue`'s would read.
    pub(crate) fn value(&self, id: &str) -> Result<Option<&str>, DriverError> {
        if let Some(v) = self.values.get(id) {
            return Ok(Some(v));
        }
        let arn = self.listed.get(id).and_then(|m| m.arn.as_deref());
        let asked = self.errors.get(id).or_else(|| arn.and_then(|a| self.errors.get(a)));
        match asked {
            None => Ok(None),
            Some((code, _)) if code == "ResourceNotFoundException" || code == "InvalidRequestException" => Ok(None),
            Some((code, message)) => {
                let text = format!("AWS BatchGetSecretValue: {code}: {message} ({id})");
                let retryable = code == "InternalServiceError" || code.contains("Throttl");
                Err(if retryable { DriverError::Retryable(text) } else { DriverError::Permanent(text) })
            }
        }
    }
}

pub(crate) struct Secret(pub(crate) Arc<Session>);

impl Secret {
    async fn describe(
        &self,
        r: &Resource,
    ) -> Result<Option<aws_sdk_secretsmanager::operation::describe_secret::DescribeSecretOutput>, DriverError> {
        match self.0.secrets.describe_secret().secret_id(Props::of(r).str("name")?).send().await {
            Ok(out) => Ok(Some(out)),
            Err(e) if is_code(&e, &["ResourceNotFoundException"]) => Ok(None),
            Err(e) => Err(failed("DescribeSecret", e)),
        }
    }

    fn value(r: &Resource) -> String {
        Props::of(r).value("values").to_string()
    }

    fn outputs(arn: Option<&str>) -> Outputs {
        Outputs::from([("arn".to_string(), json!(arn))])
    }

    /// The node as AWS holds it: values compared key by key and never
    /// shown ([`CHANGED`] for any that differ).
    fn seen(r: &Resource, meta: &Meta, stored: Option<&str>) -> Result<Observation, DriverError> {
        let stored = stored.and_then(|s| serde_json::from_str::<Value>(s).ok()).unwrap_or(Value::Null);
        let values: Map<String, Value> = Props::of(r)
            .value("values")
            .as_object()
            .map(|want| {
                want.iter()
                    .map(|(k, v)| {
                        let seen = if stored.get(k) == Some(v) { v.clone() } else { json!(CHANGED) };
                        (k.clone(), seen)
                    })
                    .collect()
            })
            .unwrap_or_default();
        let properties = json!({
            "name": meta.name,
            "kmsKeyId": meta.kms_key_id,
            "values": values,
            "tags": meta.tags,
        });
        Ok(Observation::Present { properties, outputs: Self::outputs(meta.arn.as_deref()), ready: true })
    }

    /// Writes the value, the key and the tags of an existing secret.
    async fn configure(&self, r: &Resource, arn: Option<&str>) -> Result<Outputs, DriverError> {
        let p = Props::of(r);
        let name = p.str("name")?;
        let sm = &self.0.secrets;
        sm.update_secret()
            .secret_id(name)
            .kms_key_id(p.str("kmsKeyId")?)
            .secret_string(Self::value(r))
            .send()
            .await
            .map_err(|e| failed("UpdateSecret", e))?;
        sm.tag_resource().secret_id(name).set_tags(Some(tags(r))).send().await.map_err(|e| failed("TagResource", e))?;
        Ok(Self::outputs(arn))
    }
}

#[async_trait]
impl Driver for Secret {
    async fn observe(&self, r: &Resource) -> Result<Observation, DriverError> {
        let Some(secret) = self.describe(r).await? else { return Ok(Observation::Absent) };
        if secret.deleted_date().is_some() {
            return Ok(Observation::Absent);
        }
        let stored = match self.0.secrets.get_secret_value().secret_id(Props::of(r).str("name")?).send().await {
            Ok(out) => out.secret_string().map(str::to_string),
            Err(e) if is_code(&e, &["ResourceNotFoundException"]) => None,
            Err(e) => return Err(failed("GetSecretValue", e)),
        };
        let meta = Meta::of(secret.name(), secret.arn(), secret.kms_key_id(), secret.tags());
        Self::seen(r, &meta, stored.as_deref())
    }

    /// A sweep's secrets: listed and read in batches ([`SecretsRead`]).
    async fn observe_all(&self, rs: &[Resource]) -> Vec<Result<Observation, DriverError>> {
        let names: Vec<&str> = rs.iter().filter_map(|r| Props::of(r).str("name").ok()).collect();
        let read = match SecretsRead::read(&self.0, &names, &[]).await {
            Ok(read) => read,
            Err(e) => return super::every(rs, e),
        };
        rs.iter()
            .map(|r| {
                let name = Props::of(r).str("name")?;
                let Some(meta) = read.meta(name) else { return Ok(Observation::Absent) };
                Self::seen(r, meta, read.value(name)?)
            })
            .collect()
    }

    async fn create(&self, r: &Resource) -> Result<Outputs, DriverError> {
        if let Some(existing) = self.describe(r).await? {
            if existing.deleted_date().is_some() {
                self.0
                    .secrets
                    .restore_secret()
                    .secret_id(Props::of(r).str("name")?)
                    .send()
                    .await
                    .map_err(|e| failed("RestoreSecret", e))?;
            }
            return self.configure(r, existing.arn()).await;
        }
        let p = Props::of(r);
        let created = self
            .0
            .secrets
            .create_secret()
            .name(p.str("name")?)
            .description(format!("paved: the values of {}", r.id))
            .kms_key_id(p.str("kmsKeyId")?)
            .secret_string(Self::value(r))
            .set_tags(Some(tags(r)))
            .send()
            .await;
        match created {
            Ok(out) => Ok(Self::outputs(out.arn())),
            Err(e) if is_code(&e, &["ResourceExistsException"]) => self.update(r).await,
            Err(e) => Err(failed("CreateSecret", e)),
        }
    }

    async fn update(&self, r: &Resource) -> Result<Outputs, DriverError> {
        match self.describe(r).await? {
            Some(s) if s.deleted_date().is_none() => self.configure(r, s.arn()).await,
            _ => self.create(r).await,
        }
    }

    async fn delete(&self, r: &Resource) -> Result<(), DriverError> {
        let Some(secret) = self.describe(r).await? else { return Ok(()) };
        if secret.deleted_date().is_some() {
            return Ok(());
        }
        match self
            .0
            .secrets
            .delete_secret()
            .secret_id(Props::of(r).str("name")?)
            .recovery_window_in_days(7)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if is_code(&e, &["ResourceNotFoundException"]) => Ok(()),
            Err(e) => Err(failed("DeleteSecret", e)),
        }
    }
}
