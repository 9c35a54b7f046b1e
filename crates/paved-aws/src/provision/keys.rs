//! The environment's KMS key, found by its alias (`alias/paved/ENV`).

use super::props::{policy, tags_value};
use super::{Props, Session, failed, is_code};
use async_trait::async_trait;
use aws_sdk_kms::types::{KeyMetadata, KeyState, Tag};
use paved_engine::{Driver, DriverError, Observation, Outputs, Resource};
use serde_json::json;
use std::sync::Arc;

pub(crate) struct KmsKeyDriver(pub(crate) Arc<Session>);

fn outputs(key: &KeyMetadata) -> Outputs {
    Outputs::from([("arn".to_string(), json!(key.arn())), ("keyId".to_string(), json!(key.key_id()))])
}

fn kms_tags(r: &Resource) -> Vec<Tag> {
    Props::of(r).tags().into_iter().filter_map(|(k, v)| Tag::builder().tag_key(k).tag_value(v).build().ok()).collect()
}

fn usable(key: &KeyMetadata) -> bool {
    !matches!(key.key_state(), Some(KeyState::PendingDeletion | KeyState::PendingReplicaDeletion))
}

impl KmsKeyDriver {
    /// The key the alias points at, unless it is being deleted.
    async fn find(&self, r: &Resource) -> Result<Option<KeyMetadata>, DriverError> {
        let alias = Props::of(r).str("alias")?;
        match self.0.kms.describe_key().key_id(alias).send().await {
            Ok(out) => Ok(out.key_metadata().filter(|k| usable(k)).cloned()),
            Err(e) if is_code(&e, &["NotFoundException"]) => Ok(None),
            Err(e) => Err(failed("DescribeKey", e)),
        }
    }

    /// A key a crashed create made before it could name it: tagged for
    /// this environment, described like this node, with no alias. Found
    /// through the Resource Groups Tagging API, which lists only the
    /// account's KMS keys carrying these tags: listing every key and
    /// reading its tags meets AccessDenied on keys whose policy does not
    /// delegate to the account, and throttling in large accounts
    /// (<https://docs.aws.amazon.com/resourcegroupstagging/latest/APIReference/API_GetResources.html>).
    async fn orphan(&self, r: &Resource) -> Result<Option<KeyMetadata>, DriverError> {
        use aws_sdk_resourcegroupstagging::types::TagFilter;
        let p = Props::of(r);
        let description = p.opt_str("description");
        let filters: Vec<TagFilter> =
            p.tags().into_iter().map(|(k, v)| TagFilter::builder().key(k).values(v).build()).collect();
        let mut pages = self
            .0
            .tagging
            .get_resources()
            .resource_type_filters("kms:key")
            .set_tag_filters(Some(filters))
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| failed("GetResources", e))?;
            for arn in page.resource_tag_mapping_list().iter().filter_map(|m| m.resource_arn()) {
                let key = match self.0.kms.describe_key().key_id(arn).send().await {
                    Ok(out) => out,
                    // A key in the listing that KMS no longer shows, or one this role may not read: not ours.
                    Err(e) if is_code(&e, &["NotFoundException", "AccessDeniedException"]) => continue,
                    Err(e) => return Err(failed("DescribeKey", e)),
                };
                let Some(key) = key.key_metadata() else { continue };
                let aliases = self
                    .0
                    .kms
                    .list_aliases()
                    .key_id(key.key_id())
                    .send()
                    .await
                    .map_err(|e| failed("ListAliases", e))?;
                if usable(key) && key.description() == description && aliases.aliases().is_empty() {
                    return Ok(Some(key.clone()));
                }
            }
        }
        Ok(None)
    }

    /// Names `key` with the node's alias. An alias left on a key being
    /// deleted (a crash between `ScheduleKeyDeletion` and `DeleteAlias`)
    /// is moved to the new key; one on a live key is not taken over.
    async fn name(&self, key: &KeyMetadata, r: &Resource) -> Result<(), DriverError> {
        let alias = Props::of(r).str("alias")?;
        let created = self.0.kms.create_alias().alias_name(alias).target_key_id(key.key_id()).send().await;
        let Err(e) = created else { return Ok(()) };
        if !is_code(&e, &["AlreadyExistsException"]) {
            return Err(failed("CreateAlias", e));
        }
        let current = self.0.kms.describe_key().key_id(alias).send().await.map_err(|e| failed("DescribeKey", e))?;
        match current.key_metadata() {
            Some(k) if k.key_id() == key.key_id() => Ok(()),
            Some(k) if usable(k) => Err(DriverError::Permanent(format!(
                "{}: alias `{alias}` already names key {}, which is in use; delete the alias or the key if it is not paved's",
                r.id,
                k.key_id()
            ))),
            _ => self
                .0
                .kms
                .update_alias()
                .alias_name(alias)
                .target_key_id(key.key_id())
                .send()
                .await
                .map(|_| ())
                .map_err(|e| failed("UpdateAlias", e)),
        }
    }

    /// Sets everything but the alias and tags on `key`.
    async fn configure(&self, key: &KeyMetadata, r: &Resource) -> Result<(), DriverError> {
        let p = Props::of(r);
        let id = key.key_id();
        if p.bool("enableKeyRotation") {
            self.0.kms.enable_key_rotation().key_id(id).send().await.map_err(|e| failed("EnableKeyRotation", e))?;
        } else {
            self.0.kms.disable_key_rotation().key_id(id).send().await.map_err(|e| failed("DisableKeyRotation", e))?;
        }
        self.0
            .kms
            .put_key_policy()
            .key_id(id)
            .policy_name("default")
            .policy(p.document("policy")?)
            .send()
            .await
            .map_err(|e| failed("PutKeyPolicy", e))?;
        if let Some(d) = p.opt_str("description")
            && key.description() != Some(d)
        {
            self.0
                .kms
                .update_key_description()
                .key_id(id)
                .description(d)
                .send()
                .await
                .map_err(|e| failed("UpdateKeyDescription", e))?;
        }
        Ok(())
    }

    /// The key as observed; its tags from `listed` (a sweep's tagging-API
    /// listing) when given, else read with `ListResourceTags`.
    async fn observe_with(
        &self,
        r: &Resource,
        listed: Option<&std::collections::HashMap<String, serde_json::Value>>,
    ) -> Result<Observation, DriverError> {
        let Some(key) = self.find(r).await? else { return Ok(Observation::Absent) };
        let id = key.key_id();
        let rotation = self
            .0
            .kms
            .get_key_rotation_status()
            .key_id(id)
            .send()
            .await
            .map_err(|e| failed("GetKeyRotationStatus", e))?;
        let key_policy = self
            .0
            .kms
            .get_key_policy()
            .key_id(id)
            .policy_name("default")
            .send()
            .await
            .map_err(|e| failed("GetKeyPolicy", e))?;
        let tags = match listed {
            Some(listed) => key.arn().and_then(|arn| listed.get(arn)).cloned().unwrap_or_else(|| json!({})),
            None => {
                let tags = self
                    .0
                    .kms
                    .list_resource_tags()
                    .key_id(id)
                    .send()
                    .await
                    .map_err(|e| failed("ListResourceTags", e))?;
                tags_value(tags.tags().iter().map(|t| (t.tag_key(), t.tag_value())))
            }
        };
        let properties = json!({
            "alias": Props::of(r).opt_str("alias"),
            "enableKeyRotation": rotation.key_rotation_enabled(),
            "description": key.description(),
            "policy": key_policy.policy().map(policy),
            "tags": tags,
        });
        let ready = key.key_state() == Some(&KeyState::Enabled);
        Ok(Observation::Present { properties, outputs: outputs(&key), ready })
    }
}

#[async_trait]
impl Driver for KmsKeyDriver {
    async fn observe(&self, r: &Resource) -> Result<Observation, DriverError> {
        self.observe_with(r, None).await
    }

    /// Each key's attributes are calls of its own (KMS has no listing with
    /// them), but the tags of all come from one tagging-API listing
    /// ([`super::tags_by_arn`]) instead of a `ListResourceTags` per key.
    async fn observe_all(&self, rs: &[Resource]) -> Vec<Result<Observation, DriverError>> {
        let tags = match super::tags_by_arn(&self.0, &["kms:key"]).await {
            Ok(tags) => tags,
            Err(e) => return super::every(rs, e),
        };
        let mut out = Vec::with_capacity(rs.len());
        for r in rs {
            out.push(self.observe_with(r, Some(&tags)).await);
        }
        out
    }

    async fn create(&self, r: &Resource) -> Result<Outputs, DriverError> {
        let p = Props::of(r);
        let key = match self.orphan(r).await? {
            Some(key) => key,
            None => {
                let out = self
                    .0
                    .kms
                    .create_key()
                    .set_description(p.opt_str("description").map(str::to_string))
                    .policy(p.document("policy")?)
                    .set_tags(Some(kms_tags(r)))
                    .send()
                    .await
                    .map_err(|e| failed("CreateKey", e))?;
                out.key_metadata()
                    .cloned()
                    .ok_or_else(|| DriverError::Retryable("AWS CreateKey returned no key".into()))?
            }
        };
        self.name(&key, r).await?;
        self.configure(&key, r).await?;
        Ok(outputs(&key))
    }

    async fn update(&self, r: &Resource) -> Result<Outputs, DriverError> {
        let Some(key) = self.find(r).await? else { return self.create(r).await };
        self.configure(&key, r).await?;
        self.0
            .kms
            .tag_resource()
            .key_id(key.key_id())
            .set_tags(Some(kms_tags(r)))
            .send()
            .await
            .map_err(|e| failed("TagResource", e))?;
        Ok(outputs(&key))
    }

    /// Schedules the key's deletion (KMS's shortest wait, 7 days: data
    /// sealed with it stays readable until then), then frees the alias:
    /// in that order, a rerun after a crash still finds the key, and a
    /// create after such a crash moves the leftover alias ([`Self::name`]).
    async fn delete(&self, r: &Resource) -> Result<(), DriverError> {
        let alias = Props::of(r).str("alias")?;
        let key = match self.0.kms.describe_key().key_id(alias).send().await {
            Ok(out) => out.key_metadata().cloned(),
            Err(e) if is_code(&e, &["NotFoundException"]) => return Ok(()),
            Err(e) => return Err(failed("DescribeKey", e)),
        };
        if let Some(key) = key.filter(usable) {
            self.0
                .kms
                .schedule_key_deletion()
                .key_id(key.key_id())
                .pending_window_in_days(7)
                .send()
                .await
                .map_err(|e| failed("ScheduleKeyDeletion", e))?;
        }
        match self.0.kms.delete_alias().alias_name(alias).send().await {
            Ok(_) => Ok(()),
            Err(e) if is_code(&e, &["NotFoundException"]) => Ok(()),
            Err(e) => Err(failed("DeleteAlias", e)),
        }
    }
}
