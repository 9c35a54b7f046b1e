//! CloudWatch log groups and IAM roles, both found by their deterministic names.

use super::props::{policy, tags_value};
use super::{Props, Session, failed, is_code};
use async_trait::async_trait;
use paved_engine::{Driver, DriverError, Observation, Outputs, Resource};
use serde_json::{Value, json};
use std::sync::Arc;

pub(crate) struct LogGroup(pub(crate) Arc<Session>);

/// A log group's ARN without the `:*` DescribeLogGroups appends.
fn group_arn(arn: &str) -> &str {
    arn.strip_suffix(":*").unwrap_or(arn)
}

impl LogGroup {
    async fn find(&self, r: &Resource) -> Result<Option<aws_sdk_cloudwatchlogs::types::LogGroup>, DriverError> {
        let name = Props::of(r).str("name")?;
        let out = self
            .0
            .logs
            .describe_log_groups()
            .log_group_name_prefix(name)
            .send()
            .await
            .map_err(|e| failed("DescribeLogGroups", e))?;
        Ok(out.log_groups().iter().find(|g| g.log_group_name() == Some(name)).cloned())
    }

    async fn configure(&self, r: &Resource, current: Option<&str>) -> Result<(), DriverError> {
        let p = Props::of(r);
        let name = p.str("name")?;
        self.0
            .logs
            .put_retention_policy()
            .log_group_name(name)
            .retention_in_days(p.int("retentionDays")?)
            .send()
            .await
            .map_err(|e| failed("PutRetentionPolicy", e))?;
        if let Some(key) = p.opt_str("kmsKeyArn")
            && current != Some(key)
        {
            self.0
                .logs
                .associate_kms_key()
                .log_group_name(name)
                .kms_key_id(key)
                .send()
                .await
                .map_err(|e| failed("AssociateKmsKey", e))?;
        }
        Ok(())
    }

    fn outputs(g: &aws_sdk_cloudwatchlogs::types::LogGroup) -> Outputs {
        Outputs::from([("arn".to_string(), json!(g.arn().map(group_arn)))])
    }
}

#[async_trait]
impl Driver for LogGroup {
    async fn observe(&self, r: &Resource) -> Result<Observation, DriverError> {
        let Some(g) = self.find(r).await? else { return Ok(Observation::Absent) };
        self.seen(&g).await
    }

    /// paved's groups in one paginated listing per prefix paved names them
    /// under (its own, EKS's and RDS's for paved's clusters and databases);
    /// their tags from one tagging-API listing ([`super::tags_by_arn`]).
    async fn observe_all(&self, rs: &[Resource]) -> Vec<Result<Observation, DriverError>> {
        const PREFIXES: [&str; 3] = ["/paved/", "/aws/eks/paved-", "/aws/rds/instance/paved-"];
        let mut all = Vec::new();
        for prefix in PREFIXES {
            if !rs.iter().any(|r| Props::of(r).opt_str("name").is_some_and(|n| n.starts_with(prefix))) {
                continue;
            }
            let mut pages =
                self.0.logs.describe_log_groups().log_group_name_prefix(prefix).into_paginator().items().send();
            while let Some(item) = pages.next().await {
                match item {
                    Ok(g) => all.push(g),
                    Err(e) => return super::every(rs, failed("DescribeLogGroups", e)),
                }
            }
        }
        let tags = match super::tags_by_arn(&self.0, &["logs"]).await {
            Ok(tags) => tags,
            Err(e) => return super::every(rs, e),
        };
        rs.iter()
            .map(|r| {
                let name = Props::of(r).opt_str("name");
                Ok(match all.iter().find(|g| g.log_group_name() == name) {
                    Some(g) => {
                        let arn = g.arn().map(group_arn).unwrap_or_default();
                        Self::seen_with(g, tags.get(arn).cloned().unwrap_or_else(|| json!({})))
                    }
                    None => Observation::Absent,
                })
            })
            .collect()
    }

    async fn create(&self, r: &Resource) -> Result<Outputs, DriverError> {
        self.create_group(r).await
    }

    async fn update(&self, r: &Resource) -> Result<Outputs, DriverError> {
        self.update_group(r).await
    }

    async fn delete(&self, r: &Resource) -> Result<(), DriverError> {
        self.delete_group(r).await
    }
}

impl LogGroup {
    async fn seen(&self, g: &aws_sdk_cloudwatchlogs::types::LogGroup) -> Result<Observation, DriverError> {
        let tags = self
            .0
            .logs
            .list_tags_for_resource()
            .resource_arn(g.arn().map(group_arn).unwrap_or_default())
            .send()
            .await
            .map_err(|e| failed("ListTagsForResource", e))?;
        let tags = tags_value(tags.tags().into_iter().flatten().map(|(k, v)| (k.as_str(), v.as_str())));
        Ok(Self::seen_with(g, tags))
    }

    fn seen_with(g: &aws_sdk_cloudwatchlogs::types::LogGroup, tags: Value) -> Observation {
        let properties = json!({
            "name": g.log_group_name(),
            "retentionDays": g.retention_in_days(),
            "kmsKeyArn": g.kms_key_id(),
            "tags": tags,
        });
        Observation::Present { properties, outputs: Self::outputs(g), ready: true }
    }

    async fn create_group(&self, r: &Resource) -> Result<Outputs, DriverError> {
        let p = Props::of(r);
        let created = self
            .0
            .logs
            .create_log_group()
            .log_group_name(p.str("name")?)
            .set_kms_key_id(p.opt_str("kmsKeyArn").map(str::to_string))
            .set_tags(Some(p.tags().into_iter().collect()))
            .send()
            .await;
        match created {
            Ok(_) => {}
            Err(e) if is_code(&e, &["ResourceAlreadyExistsException"]) => {}
            Err(e) => return Err(failed("CreateLogGroup", e)),
        }
        let g = self
            .find(r)
            .await?
            .ok_or_else(|| DriverError::Retryable(format!("{}: log group not visible yet", r.id)))?;
        self.configure(r, g.kms_key_id()).await?;
        Ok(Self::outputs(&g))
    }

    async fn update_group(&self, r: &Resource) -> Result<Outputs, DriverError> {
        let Some(g) = self.find(r).await? else { return self.create_group(r).await };
        self.configure(r, g.kms_key_id()).await?;
        self.0
            .logs
            .tag_resource()
            .resource_arn(g.arn().map(group_arn).unwrap_or_default())
            .set_tags(Some(Props::of(r).tags().into_iter().collect()))
            .send()
            .await
            .map_err(|e| failed("TagResource", e))?;
        Ok(Self::outputs(&g))
    }

    async fn delete_group(&self, r: &Resource) -> Result<(), DriverError> {
        match self.0.logs.delete_log_group().log_group_name(Props::of(r).str("name")?).send().await {
            Ok(_) => Ok(()),
            Err(e) if is_code(&e, &["ResourceNotFoundException"]) => Ok(()),
            Err(e) => Err(failed("DeleteLogGroup", e)),
        }
    }
}

/// An IAM role with one inline policy (`paved`) and any managed policies.
pub(crate) struct Role(pub(crate) Arc<Session>);

const INLINE_POLICY: &str = "paved";

impl Role {
    async fn find(&self, r: &Resource) -> Result<Option<aws_sdk_iam::types::Role>, DriverError> {
        match self.0.iam.get_role().role_name(Props::of(r).str("name")?).send().await {
            Ok(out) => Ok(out.role().cloned()),
            Err(e) if is_code(&e, &["NoSuchEntity"]) => Ok(None),
            Err(e) => Err(failed("GetRole", e)),
        }
    }

    async fn attached(&self, name: &str) -> Result<Vec<String>, DriverError> {
        let out = self
            .0
            .iam
            .list_attached_role_policies()
            .role_name(name)
            .send()
            .await
            .map_err(|e| failed("ListAttachedRolePolicies", e))?;
        Ok(out.attached_policies().iter().filter_map(|p| p.policy_arn().map(str::to_string)).collect())
    }

    /// A resource's tags as IAM takes them (roles and OIDC providers).
    pub(crate) fn tags(r: &Resource) -> Vec<aws_sdk_iam::types::Tag> {
        Props::of(r)
            .tags()
            .into_iter()
            .filter_map(|(k, v)| aws_sdk_iam::types::Tag::builder().key(k).value(v).build().ok())
            .collect()
    }

    /// The trust policy: `assumeRolePolicy` as given, or the one a
    /// `webIdentity` (a cluster's ServiceAccount, IRSA) stands for.
    fn trust(r: &Resource) -> Result<String, DriverError> {
        let p = Props::of(r);
        match p.value("webIdentity") {
            Value::Null => p.document("assumeRolePolicy"),
            web => super::identity::web_identity_trust(web)
                .map(|t| t.to_string())
                .map_err(|e| DriverError::Permanent(format!("{}: {e}", r.id))),
        }
    }

    /// The observed trust as the desired properties express it.
    fn trust_properties(r: &Resource, properties: &mut Value, trust: Option<Value>) {
        if Props::of(r).value("webIdentity").is_null() {
            properties["assumeRolePolicy"] = trust.unwrap_or(Value::Null);
        } else {
            properties["webIdentity"] = trust.map_or(Value::Null, |t| super::identity::web_identity_of(&t));
        }
    }

    /// Sets the trust policy, the inline policy and the managed policies.
    async fn configure(&self, r: &Resource) -> Result<Outputs, DriverError> {
        let p = Props::of(r);
        let name = p.str("name")?;
        let iam = &self.0.iam;
        iam.update_assume_role_policy()
            .role_name(name)
            .policy_document(Self::trust(r)?)
            .send()
            .await
            .map_err(|e| failed("UpdateAssumeRolePolicy", e))?;
        if !p.value("policy").is_null() {
            iam.put_role_policy()
                .role_name(name)
                .policy_name(INLINE_POLICY)
                .policy_document(p.document("policy")?)
                .send()
                .await
                .map_err(|e| failed("PutRolePolicy", e))?;
        }
        let want = p.strings("managedPolicyArns");
        let have = self.attached(name).await?;
        for arn in have.iter().filter(|a| !want.contains(a)) {
            iam.detach_role_policy()
                .role_name(name)
                .policy_arn(arn)
                .send()
                .await
                .map_err(|e| failed("DetachRolePolicy", e))?;
        }
        for arn in want.iter().filter(|a| !have.contains(a)) {
            iam.attach_role_policy()
                .role_name(name)
                .policy_arn(arn)
                .send()
                .await
                .map_err(|e| failed("AttachRolePolicy", e))?;
        }
        let role =
            self.find(r).await?.ok_or_else(|| DriverError::Retryable(format!("{}: role not visible yet", r.id)))?;
        Ok(Outputs::from([("arn".to_string(), json!(role.arn()))]))
    }
}

#[async_trait]
impl Driver for Role {
    async fn observe(&self, r: &Resource) -> Result<Observation, DriverError> {
        let Some(role) = self.find(r).await? else { return Ok(Observation::Absent) };
        let name = role.role_name();
        let inline = match self.0.iam.get_role_policy().role_name(name).policy_name(INLINE_POLICY).send().await {
            Ok(out) => policy(out.policy_document()),
            Err(e) if is_code(&e, &["NoSuchEntity"]) => Value::Null,
            Err(e) => return Err(failed("GetRolePolicy", e)),
        };
        let mut properties = json!({
            "name": name,
            "policy": inline,
            "tags": tags_value(role.tags().iter().map(|t| (t.key(), t.value()))),
        });
        Self::trust_properties(r, &mut properties, role.assume_role_policy_document().map(policy));
        if !Props::of(r).value("managedPolicyArns").is_null() {
            properties["managedPolicyArns"] = super::props::like(
                Props::of(r).value("managedPolicyArns"),
                self.attached(name).await?.into_iter().map(Value::String).collect(),
            );
        }
        let outputs = Outputs::from([("arn".to_string(), json!(role.arn()))]);
        Ok(Observation::Present { properties, outputs, ready: true })
    }

    /// Every role with its inline and attached policies and tags in one
    /// paginated call (GetAccountAuthorizationDetails), IAM being global.
    async fn observe_all(&self, rs: &[Resource]) -> Vec<Result<Observation, DriverError>> {
        let mut pages = self
            .0
            .iam
            .get_account_authorization_details()
            .filter(aws_sdk_iam::types::EntityType::Role)
            .into_paginator()
            .send();
        let mut roles = Vec::new();
        while let Some(page) = pages.next().await {
            match page {
                Ok(page) => roles.extend(page.role_detail_list().iter().cloned()),
                Err(e) => return super::every(rs, failed("GetAccountAuthorizationDetails", e)),
            }
        }
        rs.iter()
            .map(|r| {
                let name = Props::of(r).opt_str("name");
                Ok(roles.iter().find(|d| d.role_name() == name).map_or(Observation::Absent, |d| {
                    let inline = d
                        .role_policy_list()
                        .iter()
                        .find(|p| p.policy_name() == Some(INLINE_POLICY))
                        .and_then(|p| p.policy_document())
                        .map_or(Value::Null, policy);
                    let mut properties = json!({
                        "name": d.role_name(),
                        "policy": inline,
                        "tags": tags_value(d.tags().iter().map(|t| (t.key(), t.value()))),
                    });
                    Self::trust_properties(r, &mut properties, d.assume_role_policy_document().map(policy));
                    if !Props::of(r).value("managedPolicyArns").is_null() {
                        let attached = d
                            .attached_managed_policies()
                            .iter()
                            .filter_map(|p| p.policy_arn())
                            .map(|a| json!(a))
                            .collect();
                        properties["managedPolicyArns"] =
                            super::props::like(Props::of(r).value("managedPolicyArns"), attached);
                    }
                    let outputs = Outputs::from([("arn".to_string(), json!(d.arn()))]);
                    Observation::Present { properties, outputs, ready: true }
                }))
            })
            .collect()
    }

    async fn create(&self, r: &Resource) -> Result<Outputs, DriverError> {
        let p = Props::of(r);
        let created = self
            .0
            .iam
            .create_role()
            .role_name(p.str("name")?)
            .assume_role_policy_document(Self::trust(r)?)
            .set_tags(Some(Self::tags(r)))
            .send()
            .await;
        match created {
            Ok(_) => {}
            Err(e) if is_code(&e, &["EntityAlreadyExists"]) => {}
            Err(e) => return Err(failed("CreateRole", e)),
        }
        self.configure(r).await
    }

    async fn update(&self, r: &Resource) -> Result<Outputs, DriverError> {
        if self.find(r).await?.is_none() {
            return self.create(r).await;
        }
        self.0
            .iam
            .tag_role()
            .role_name(Props::of(r).str("name")?)
            .set_tags(Some(Self::tags(r)))
            .send()
            .await
            .map_err(|e| failed("TagRole", e))?;
        self.configure(r).await
    }

    async fn delete(&self, r: &Resource) -> Result<(), DriverError> {
        let Some(role) = self.find(r).await? else { return Ok(()) };
        let name = role.role_name();
        let iam = &self.0.iam;
        match iam.delete_role_policy().role_name(name).policy_name(INLINE_POLICY).send().await {
            Ok(_) => {}
            Err(e) if is_code(&e, &["NoSuchEntity"]) => {}
            Err(e) => return Err(failed("DeleteRolePolicy", e)),
        }
        for arn in self.attached(name).await? {
            iam.detach_role_policy()
                .role_name(name)
                .policy_arn(arn)
                .send()
                .await
                .map_err(|e| failed("DetachRolePolicy", e))?;
        }
        match iam.delete_role().role_name(name).send().await {
            Ok(_) => Ok(()),
            Err(e) if is_code(&e, &["NoSuchEntity"]) => Ok(()),
            Err(e) => Err(failed("DeleteRole", e)),
        }
    }
}
