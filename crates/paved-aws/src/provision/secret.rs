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

use super::props::tags_value;
use super::{Props, Session, failed, is_code};
use async_trait::async_trait;
use paved_engine::{Driver, DriverError, Observation, Outputs, Resource};
use serde_json::{Map, Value, json};
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
        let p = Props::of(r);
        let stored = match self.0.secrets.get_secret_value().secret_id(p.str("name")?).send().await {
            Ok(out) => out.secret_string().and_then(|s| serde_json::from_str::<Value>(s).ok()).unwrap_or(Value::Null),
            Err(e) if is_code(&e, &["ResourceNotFoundException"]) => Value::Null,
            Err(e) => return Err(failed("GetSecretValue", e)),
        };
        let values: Map<String, Value> = p
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
            "name": secret.name(),
            "kmsKeyId": secret.kms_key_id(),
            "values": values,
            "tags": tags_value(secret.tags().iter().filter_map(|t| Some((t.key()?, t.value()?)))),
        });
        Ok(Observation::Present { properties, outputs: Self::outputs(secret.arn()), ready: true })
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
