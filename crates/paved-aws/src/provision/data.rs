//! Data services: RDS (instance and subnet group), S3 buckets, SQS queues.
//! All found by their deterministic names.

use super::props::{like, tags_value, version_like};
use super::{Props, Session, every, failed, is_code, until_gone};
use async_trait::async_trait;
use aws_sdk_s3::types::{
    BucketLocationConstraint, BucketVersioningStatus, CreateBucketConfiguration, PublicAccessBlockConfiguration,
    ServerSideEncryption, ServerSideEncryptionByDefault, ServerSideEncryptionConfiguration, ServerSideEncryptionRule,
    Tagging,
};
use aws_sdk_sqs::types::QueueAttributeName;
use paved_engine::{Driver, DriverError, Observation, Outputs, Resource};
use serde_json::{Value, json};
use std::sync::Arc;

fn rds_tags(r: &Resource) -> Vec<aws_sdk_rds::types::Tag> {
    Props::of(r).tags().into_iter().map(|(k, v)| aws_sdk_rds::types::Tag::builder().key(k).value(v).build()).collect()
}

fn rds_tag_value(tags: &[aws_sdk_rds::types::Tag]) -> Value {
    tags_value(tags.iter().filter_map(|t| Some((t.key()?, t.value()?))))
}

pub(crate) struct DbSubnetGroup(pub(crate) Arc<Session>);

impl DbSubnetGroup {
    async fn find(&self, r: &Resource) -> Result<Option<aws_sdk_rds::types::DbSubnetGroup>, DriverError> {
        match self.0.rds.describe_db_subnet_groups().db_subnet_group_name(Props::of(r).str("name")?).send().await {
            Ok(out) => Ok(out.db_subnet_groups().first().cloned()),
            Err(e) if is_code(&e, &["DBSubnetGroupNotFoundFault"]) => Ok(None),
            Err(e) => Err(failed("DescribeDBSubnetGroups", e)),
        }
    }

    fn outputs(r: &Resource) -> Outputs {
        Outputs::from([("name".to_string(), json!(Props::of(r).opt_str("name")))])
    }

    async fn seen(&self, g: &aws_sdk_rds::types::DbSubnetGroup, r: &Resource) -> Result<Observation, DriverError> {
        let tags = self
            .0
            .rds
            .list_tags_for_resource()
            .resource_name(g.db_subnet_group_arn().unwrap_or_default())
            .send()
            .await
            .map_err(|e| failed("ListTagsForResource", e))?;
        let subnets = g.subnets().iter().filter_map(|s| s.subnet_identifier()).map(|s| json!(s)).collect();
        let properties = json!({
            "name": g.db_subnet_group_name(),
            "subnetIds": like(Props::of(r).value("subnetIds"), subnets),
            "tags": rds_tag_value(tags.tag_list()),
        });
        Ok(Observation::Present { properties, outputs: Self::outputs(r), ready: true })
    }
}

#[async_trait]
impl Driver for DbSubnetGroup {
    async fn observe(&self, r: &Resource) -> Result<Observation, DriverError> {
        let Some(g) = self.find(r).await? else { return Ok(Observation::Absent) };
        self.seen(&g, r).await
    }

    /// One listing for all groups; their tags are a call each (the listing has none).
    async fn observe_all(&self, rs: &[Resource]) -> Vec<Result<Observation, DriverError>> {
        let mut pages = self.0.rds.describe_db_subnet_groups().into_paginator().items().send();
        let mut all = Vec::new();
        while let Some(item) = pages.next().await {
            match item {
                Ok(g) => all.push(g),
                Err(e) => return every(rs, failed("DescribeDBSubnetGroups", e)),
            }
        }
        let mut out = Vec::new();
        for r in rs {
            let name = Props::of(r).opt_str("name");
            out.push(match all.iter().find(|g| g.db_subnet_group_name() == name) {
                Some(g) => self.seen(g, r).await,
                None => Ok(Observation::Absent),
            });
        }
        out
    }

    async fn create(&self, r: &Resource) -> Result<Outputs, DriverError> {
        let p = Props::of(r);
        let out = self
            .0
            .rds
            .create_db_subnet_group()
            .db_subnet_group_name(p.str("name")?)
            .db_subnet_group_description(format!("paved environment {}", r.environment))
            .set_subnet_ids(Some(p.strings("subnetIds")))
            .set_tags(Some(rds_tags(r)))
            .send()
            .await;
        match out {
            Ok(_) => Ok(Self::outputs(r)),
            Err(e) if is_code(&e, &["DBSubnetGroupAlreadyExists"]) => self.update(r).await,
            Err(e) => Err(failed("CreateDBSubnetGroup", e)),
        }
    }

    async fn update(&self, r: &Resource) -> Result<Outputs, DriverError> {
        let Some(g) = self.find(r).await? else { return self.create(r).await };
        let p = Props::of(r);
        let mut have: Vec<String> =
            g.subnets().iter().filter_map(|s| s.subnet_identifier().map(str::to_string)).collect();
        let mut want = p.strings("subnetIds");
        have.sort();
        want.sort();
        if have != want {
            self.0
                .rds
                .modify_db_subnet_group()
                .db_subnet_group_name(p.str("name")?)
                .set_subnet_ids(Some(want))
                .send()
                .await
                .map_err(|e| failed("ModifyDBSubnetGroup", e))?;
        }
        self.0
            .rds
            .add_tags_to_resource()
            .resource_name(g.db_subnet_group_arn().unwrap_or_default())
            .set_tags(Some(rds_tags(r)))
            .send()
            .await
            .map_err(|e| failed("AddTagsToResource", e))?;
        Ok(Self::outputs(r))
    }

    async fn delete(&self, r: &Resource) -> Result<(), DriverError> {
        match self.0.rds.delete_db_subnet_group().db_subnet_group_name(Props::of(r).str("name")?).send().await {
            Ok(_) => Ok(()),
            Err(e) if is_code(&e, &["DBSubnetGroupNotFoundFault"]) => Ok(()),
            Err(e) if is_code(&e, &["InvalidDBSubnetGroupStateFault"]) => {
                Err(DriverError::Retryable(format!("{}: still used by a database being deleted", r.id)))
            }
            Err(e) => Err(failed("DeleteDBSubnetGroup", e)),
        }
    }
}

/// An RDS instance. Its master password is managed (and rotated) by RDS in
/// Secrets Manager, encrypted with the environment's key; workloads never
/// get it (each service has its own login, [`super::dbuser`]).
pub(crate) struct RdsInstance(pub(crate) Arc<Session>);

type Db = aws_sdk_rds::types::DbInstance;

impl RdsInstance {
    async fn find(&self, r: &Resource) -> Result<Option<Db>, DriverError> {
        match self.0.rds.describe_db_instances().db_instance_identifier(Props::of(r).str("identifier")?).send().await {
            Ok(out) => Ok(out.db_instances().first().filter(|d| d.db_instance_status() != Some("deleting")).cloned()),
            Err(e) if is_code(&e, &["DBInstanceNotFound", "DBInstanceNotFoundFault"]) => Ok(None),
            Err(e) => Err(failed("DescribeDBInstances", e)),
        }
    }

    fn properties(d: &Db, r: &Resource) -> Value {
        let p = Props::of(r);
        json!({
            "identifier": d.db_instance_identifier(),
            "engine": d.engine(),
            "engineVersion": version_like(p.value("engineVersion"), d.engine_version()),
            "instanceClass": d.db_instance_class(),
            "allocatedStorage": d.allocated_storage(),
            "maxAllocatedStorage": d.max_allocated_storage(),
            "storageEncrypted": d.storage_encrypted(),
            "kmsKeyArn": d.kms_key_id(),
            "publiclyAccessible": d.publicly_accessible(),
            "backupRetentionDays": d.backup_retention_period(),
            "multiAz": d.multi_az(),
            "dbSubnetGroup": d.db_subnet_group().and_then(|g| g.db_subnet_group_name()),
            "securityGroupIds": like(p.value("securityGroupIds"), d.vpc_security_groups().iter().filter_map(|g| g.vpc_security_group_id()).map(|g| json!(g)).collect()),
            "manageMasterUserPassword": d.master_user_secret().is_some(),
            "masterUserSecretKmsKeyArn": d.master_user_secret().and_then(|s| s.kms_key_id()),
            "iamDatabaseAuthentication": d.iam_database_authentication_enabled(),
            "autoMinorVersionUpgrade": d.auto_minor_version_upgrade(),
            "cloudwatchLogsExports": like(p.value("cloudwatchLogsExports"), d.enabled_cloudwatch_logs_exports().iter().map(|l| json!(l)).collect()),
            // AWS reports the Performance Insights key only while it can be read; an answer without one is not a change.
            "performanceInsightsKmsKeyArn": d.performance_insights_kms_key_id().map(|k| json!(k)).unwrap_or_else(|| p.value("performanceInsightsKmsKeyArn").clone()),
            "deletionProtection": d.deletion_protection(),
            // What happens at deletion is paved's choice, not a setting AWS keeps.
            "finalSnapshot": p.value("finalSnapshot"),
            "databaseName": d.db_name(),
            "tags": rds_tag_value(d.tag_list()),
        })
    }

    /// Endpoint and names, and where RDS keeps the master credentials: paved
    /// never copies the master password (RDS rotates it every 7 days); the
    /// services' logins (`aws.db-user`) read it there when they are made.
    fn outputs(d: &Db) -> Outputs {
        Outputs::from([
            ("host".to_string(), json!(d.endpoint().and_then(|e| e.address()))),
            ("port".to_string(), json!(d.endpoint().and_then(|e| e.port()))),
            // Score's reference provisioners give the database's name as both `name` and `database`.
            ("name".to_string(), json!(d.db_name())),
            ("database".to_string(), json!(d.db_name())),
            ("username".to_string(), json!(d.master_username())),
            ("masterSecretArn".to_string(), json!(d.master_user_secret().and_then(|s| s.secret_arn()))),
            // What a delete keeps when the node asks for a final snapshot
            // (`paved destroy` names it).
            ("finalSnapshotName".to_string(), json!(final_snapshot_name(d))),
        ])
    }
}

/// `IDENTIFIER-final-CREATED`: the instance's creation time makes each
/// incarnation's final snapshot its own.
fn final_snapshot_name(d: &Db) -> String {
    let created = d.instance_create_time().map_or(0, |t| t.secs());
    format!("{}-final-{created}", d.db_instance_identifier().unwrap_or_default())
}

#[async_trait]
impl Driver for RdsInstance {
    async fn observe(&self, r: &Resource) -> Result<Observation, DriverError> {
        let Some(d) = self.find(r).await? else { return Ok(Observation::Absent) };
        // States RDS does not leave by itself
        // (<https://docs.aws.amazon.com/AmazonRDS/latest/UserGuide/accessing-monitoring.html#Overview.DBInstance.Status>).
        if let Some(
            state @ ("failed"
            | "incompatible-network"
            | "incompatible-parameters"
            | "incompatible-restore"
            | "inaccessible-encryption-credentials"
            | "storage-full"),
        ) = d.db_instance_status()
        {
            return Err(DriverError::Permanent(format!(
                "{}: RDS reports the instance `{state}`, which it does not leave by itself; see the instance's events in the RDS console",
                r.id
            )));
        }
        let ready = d.db_instance_status() == Some("available");
        Ok(Observation::Present { properties: Self::properties(&d, r), outputs: Self::outputs(&d), ready })
    }

    /// All instances in one paginated listing (it carries their tags).
    async fn observe_all(&self, rs: &[Resource]) -> Vec<Result<Observation, DriverError>> {
        let mut pages = self.0.rds.describe_db_instances().into_paginator().items().send();
        let mut all = Vec::new();
        while let Some(item) = pages.next().await {
            match item {
                Ok(d) => all.push(d),
                Err(e) => return every(rs, failed("DescribeDBInstances", e)),
            }
        }
        rs.iter()
            .map(|r| {
                let id = Props::of(r).opt_str("identifier");
                Ok(all
                    .iter()
                    .find(|d| d.db_instance_identifier() == id && d.db_instance_status() != Some("deleting"))
                    .map_or(Observation::Absent, |d| Observation::Present {
                        properties: Self::properties(d, r),
                        outputs: Self::outputs(d),
                        ready: d.db_instance_status() == Some("available"),
                    }))
            })
            .collect()
    }

    async fn create(&self, r: &Resource) -> Result<Outputs, DriverError> {
        let p = Props::of(r);
        let out = self
            .0
            .rds
            .create_db_instance()
            .db_instance_identifier(p.str("identifier")?)
            .engine(p.str("engine")?)
            .engine_version(p.str("engineVersion")?)
            .db_instance_class(p.str("instanceClass")?)
            .allocated_storage(p.int("allocatedStorage")?)
            .set_max_allocated_storage(p.int("maxAllocatedStorage").ok())
            .storage_encrypted(p.bool("storageEncrypted"))
            .kms_key_id(p.str("kmsKeyArn")?)
            .publicly_accessible(p.bool("publiclyAccessible"))
            .backup_retention_period(p.int("backupRetentionDays")?)
            .multi_az(p.bool("multiAz"))
            .db_subnet_group_name(p.str("dbSubnetGroup")?)
            .set_vpc_security_group_ids(Some(p.strings("securityGroupIds")))
            .master_username("paved")
            .manage_master_user_password(p.bool("manageMasterUserPassword"))
            .set_master_user_secret_kms_key_id(p.opt_str("masterUserSecretKmsKeyArn").map(str::to_string))
            .enable_iam_database_authentication(p.bool("iamDatabaseAuthentication"))
            .auto_minor_version_upgrade(p.bool("autoMinorVersionUpgrade"))
            .set_enable_cloudwatch_logs_exports(Some(p.strings("cloudwatchLogsExports")))
            .enable_performance_insights(p.opt_str("performanceInsightsKmsKeyArn").is_some())
            .set_performance_insights_kms_key_id(p.opt_str("performanceInsightsKmsKeyArn").map(str::to_string))
            .deletion_protection(p.bool("deletionProtection"))
            .db_name(p.str("databaseName")?)
            .set_tags(Some(rds_tags(r)))
            .send()
            .await;
        match out {
            Ok(out) => match out.db_instance() {
                Some(d) => Ok(Self::outputs(d)),
                None => Err(DriverError::Retryable("AWS CreateDBInstance returned no instance".into())),
            },
            Err(e) if is_code(&e, &["DBInstanceAlreadyExists", "DBInstanceAlreadyExistsFault"]) => self.update(r).await,
            Err(e) => Err(failed("CreateDBInstance", e)),
        }
    }

    /// Applies the changeable settings at once (a blueprint change or a
    /// console edit is not left for the next maintenance window).
    async fn update(&self, r: &Resource) -> Result<Outputs, DriverError> {
        let Some(d) = self.find(r).await? else { return self.create(r).await };
        let p = Props::of(r);
        let have = Self::properties(&d, r);
        let differs = |f: &str| have[f] != *p.value(f);
        if [
            "engineVersion",
            "instanceClass",
            "allocatedStorage",
            "maxAllocatedStorage",
            "backupRetentionDays",
            "multiAz",
            "securityGroupIds",
            "iamDatabaseAuthentication",
            "autoMinorVersionUpgrade",
            "deletionProtection",
            "cloudwatchLogsExports",
            "publiclyAccessible",
        ]
        .iter()
        .any(|f| differs(f))
        {
            let logs_have: Vec<String> = d.enabled_cloudwatch_logs_exports().to_vec();
            let logs_want = p.strings("cloudwatchLogsExports");
            let logs = aws_sdk_rds::types::CloudwatchLogsExportConfiguration::builder()
                .set_enable_log_types(Some(logs_want.iter().filter(|l| !logs_have.contains(l)).cloned().collect()))
                .set_disable_log_types(Some(logs_have.iter().filter(|l| !logs_want.contains(l)).cloned().collect()))
                .build();
            self.0
                .rds
                .modify_db_instance()
                .db_instance_identifier(p.str("identifier")?)
                .apply_immediately(true)
                .set_engine_version(
                    differs("engineVersion").then(|| p.opt_str("engineVersion").map(str::to_string)).flatten(),
                )
                .db_instance_class(p.str("instanceClass")?)
                .allocated_storage(p.int("allocatedStorage")?)
                .set_max_allocated_storage(p.int("maxAllocatedStorage").ok())
                .backup_retention_period(p.int("backupRetentionDays")?)
                .multi_az(p.bool("multiAz"))
                .set_vpc_security_group_ids(Some(p.strings("securityGroupIds")))
                .enable_iam_database_authentication(p.bool("iamDatabaseAuthentication"))
                .auto_minor_version_upgrade(p.bool("autoMinorVersionUpgrade"))
                .deletion_protection(p.bool("deletionProtection"))
                .publicly_accessible(p.bool("publiclyAccessible"))
                .cloudwatch_logs_export_configuration(logs)
                .send()
                .await
                .map_err(|e| failed("ModifyDBInstance", e))?;
        }
        self.0
            .rds
            .add_tags_to_resource()
            .resource_name(d.db_instance_arn().unwrap_or_default())
            .set_tags(Some(rds_tags(r)))
            .send()
            .await
            .map_err(|e| failed("AddTagsToResource", e))?;
        let d = self.find(r).await?.unwrap_or(d);
        Ok(Self::outputs(&d))
    }

    /// Deletes the instance and waits until it is gone (its subnet group
    /// and security group are freed only then). A protected instance
    /// (production) is refused with what to do. An instance whose node asks
    /// for it (`finalSnapshot`: production's) leaves a final snapshot
    /// `IDENTIFIER-final-CREATED` (the instance's creation time, so each
    /// incarnation's is its own) and keeps its automated backups
    /// (<https://docs.aws.amazon.com/AmazonRDS/latest/APIReference/API_DeleteDBInstance.html>);
    /// others go without either.
    async fn delete(&self, r: &Resource) -> Result<(), DriverError> {
        let Some(d) = self.find(r).await? else { return Ok(()) };
        let id = Props::of(r).str("identifier")?;
        if d.deletion_protection() == Some(true) {
            return Err(DriverError::Permanent(format!(
                "{}: database `{id}` has deletion protection (production keeps its data); turn it off in AWS first if this environment really goes",
                r.id
            )));
        }
        let keep = Props::of(r).bool("finalSnapshot");
        let snapshot = keep.then(|| final_snapshot_name(&d));
        match self
            .0
            .rds
            .delete_db_instance()
            .db_instance_identifier(id)
            .skip_final_snapshot(!keep)
            .set_final_db_snapshot_identifier(snapshot)
            .delete_automated_backups(!keep)
            .send()
            .await
        {
            Ok(_) => {}
            Err(e) if is_code(&e, &["DBInstanceNotFound", "DBInstanceNotFoundFault"]) => return Ok(()),
            Err(e) if is_code(&e, &["InvalidDBInstanceState", "InvalidDBInstanceStateFault"]) => {
                return Err(DriverError::Retryable(format!("{}: database busy, not deletable yet", r.id)));
            }
            Err(e) => return Err(failed("DeleteDBInstance", e)),
        }
        until_gone(|| async { Ok(self.find(r).await?.is_none()) }).await
    }
}

/// The account that must own a node's bucket: every call names it
/// (`ExpectedBucketOwner`), so a bucket of the same global name in another
/// account is never read, changed or emptied
/// (<https://docs.aws.amazon.com/AmazonS3/latest/userguide/bucket-owner-condition.html>).
fn owner(r: &Resource) -> Option<String> {
    Props::of(r).opt_str("expectedBucketOwner").filter(|o| !o.is_empty()).map(str::to_string)
}

/// An S3 bucket: KMS encryption, public access blocked, versioning, tags.
pub(crate) struct Bucket(pub(crate) Arc<Session>);

impl Bucket {
    async fn exists(&self, r: &Resource) -> Result<bool, DriverError> {
        let bucket = Props::of(r).str("bucket")?;
        match self.0.s3.head_bucket().bucket(bucket).set_expected_bucket_owner(owner(r)).send().await {
            Ok(_) => Ok(true),
            Err(e) if e.raw_response().is_some_and(|r| r.status().as_u16() == 404) => Ok(false),
            Err(e) => Err(failed("HeadBucket", e)),
        }
    }

    fn outputs(&self, bucket: &str) -> Outputs {
        Outputs::from([
            ("name".to_string(), json!(bucket)),
            (
                "arn".to_string(),
                json!(format!("arn:{}:s3:::{bucket}", paved_model::partition::of_region(&self.0.region).name)),
            ),
            ("region".to_string(), json!(self.0.region)),
        ])
    }

    async fn configure(&self, r: &Resource) -> Result<Outputs, DriverError> {
        let p = Props::of(r);
        let bucket = p.str("bucket")?;
        let enc = p.value("encryption");
        let default = ServerSideEncryptionByDefault::builder()
            .sse_algorithm(ServerSideEncryption::from(enc["sseAlgorithm"].as_str().unwrap_or("aws:kms")))
            .set_kms_master_key_id(enc["kmsKeyArn"].as_str().map(str::to_string))
            .build()
            .map_err(|e| DriverError::Permanent(e.to_string()))?;
        let rule = ServerSideEncryptionRule::builder()
            .apply_server_side_encryption_by_default(default)
            .bucket_key_enabled(enc["bucketKeyEnabled"].as_bool().unwrap_or(false))
            .build();
        let s3 = &self.0.s3;
        let config = ServerSideEncryptionConfiguration::builder()
            .rules(rule)
            .build()
            .map_err(|e| DriverError::Permanent(e.to_string()))?;
        s3.put_bucket_encryption()
            .bucket(bucket)
            .set_expected_bucket_owner(owner(r))
            .server_side_encryption_configuration(config)
            .send()
            .await
            .map_err(|e| failed("PutBucketEncryption", e))?;
        let block = p.value("publicAccessBlock");
        let flag = |k: &str| block[k].as_bool().unwrap_or(true);
        s3.put_public_access_block()
            .bucket(bucket)
            .set_expected_bucket_owner(owner(r))
            .public_access_block_configuration(
                PublicAccessBlockConfiguration::builder()
                    .block_public_acls(flag("blockPublicAcls"))
                    .block_public_policy(flag("blockPublicPolicy"))
                    .ignore_public_acls(flag("ignorePublicAcls"))
                    .restrict_public_buckets(flag("restrictPublicBuckets"))
                    .build(),
            )
            .send()
            .await
            .map_err(|e| failed("PutPublicAccessBlock", e))?;
        let status =
            if p.bool("versioning") { BucketVersioningStatus::Enabled } else { BucketVersioningStatus::Suspended };
        s3.put_bucket_versioning()
            .bucket(bucket)
            .set_expected_bucket_owner(owner(r))
            .versioning_configuration(aws_sdk_s3::types::VersioningConfiguration::builder().status(status).build())
            .send()
            .await
            .map_err(|e| failed("PutBucketVersioning", e))?;
        let tags = p
            .tags()
            .into_iter()
            .map(|(k, v)| aws_sdk_s3::types::Tag::builder().key(k).value(v).build())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| DriverError::Permanent(e.to_string()))?;
        let tagging =
            Tagging::builder().set_tag_set(Some(tags)).build().map_err(|e| DriverError::Permanent(e.to_string()))?;
        s3.put_bucket_tagging()
            .bucket(bucket)
            .set_expected_bucket_owner(owner(r))
            .tagging(tagging)
            .send()
            .await
            .map_err(|e| failed("PutBucketTagging", e))?;
        Ok(self.outputs(bucket))
    }
}

#[async_trait]
impl Driver for Bucket {
    async fn observe(&self, r: &Resource) -> Result<Observation, DriverError> {
        let bucket = Props::of(r).str("bucket")?;
        if !self.exists(r).await? {
            return Ok(Observation::Absent);
        }
        let s3 = &self.0.s3;
        let encryption =
            match s3.get_bucket_encryption().bucket(bucket).set_expected_bucket_owner(owner(r)).send().await {
                Ok(out) => out
                    .server_side_encryption_configuration()
                    .and_then(|c| c.rules().first())
                    .map(|rule| {
                        let d = rule.apply_server_side_encryption_by_default();
                        json!({
                            "sseAlgorithm": d.map(|d| d.sse_algorithm().as_str()),
                            "kmsKeyArn": d.and_then(|d| d.kms_master_key_id()),
                            "bucketKeyEnabled": rule.bucket_key_enabled().unwrap_or(false),
                        })
                    })
                    .unwrap_or(Value::Null),
                Err(e) if is_code(&e, &["ServerSideEncryptionConfigurationNotFoundError"]) => Value::Null,
                Err(e) => return Err(failed("GetBucketEncryption", e)),
            };
        let block = match s3.get_public_access_block().bucket(bucket).set_expected_bucket_owner(owner(r)).send().await {
            Ok(out) => out
                .public_access_block_configuration()
                .map(|b| {
                    json!({
                        "blockPublicAcls": b.block_public_acls().unwrap_or(false),
                        "blockPublicPolicy": b.block_public_policy().unwrap_or(false),
                        "ignorePublicAcls": b.ignore_public_acls().unwrap_or(false),
                        "restrictPublicBuckets": b.restrict_public_buckets().unwrap_or(false),
                    })
                })
                .unwrap_or(Value::Null),
            Err(e) if is_code(&e, &["NoSuchPublicAccessBlockConfiguration"]) => Value::Null,
            Err(e) => return Err(failed("GetPublicAccessBlock", e)),
        };
        let versioning = s3
            .get_bucket_versioning()
            .bucket(bucket)
            .set_expected_bucket_owner(owner(r))
            .send()
            .await
            .map_err(|e| failed("GetBucketVersioning", e))?;
        let tags = match s3.get_bucket_tagging().bucket(bucket).set_expected_bucket_owner(owner(r)).send().await {
            Ok(out) => tags_value(out.tag_set().iter().map(|t| (t.key(), t.value()))),
            Err(e) if is_code(&e, &["NoSuchTagSet"]) => json!({}),
            Err(e) => return Err(failed("GetBucketTagging", e)),
        };
        let properties = json!({
            "bucket": bucket,
            "encryption": encryption,
            "publicAccessBlock": block,
            "versioning": versioning.status() == Some(&BucketVersioningStatus::Enabled),
            // paved's own deletion rule, not a bucket setting: as stated.
            "forceDestroy": Props::of(r).bool("forceDestroy"),
            // A condition on every call, not a setting S3 keeps.
            "expectedBucketOwner": Props::of(r).value("expectedBucketOwner"),
            "tags": tags,
        });
        Ok(Observation::Present { properties, outputs: self.outputs(bucket), ready: true })
    }

    async fn create(&self, r: &Resource) -> Result<Outputs, DriverError> {
        let bucket = Props::of(r).str("bucket")?;
        let mut call = self.0.s3.create_bucket().bucket(bucket);
        // us-east-1 is the one region that takes no location constraint.
        if self.0.region != "us-east-1" {
            call = call.create_bucket_configuration(
                CreateBucketConfiguration::builder()
                    .location_constraint(BucketLocationConstraint::from(self.0.region.as_str()))
                    .build(),
            );
        }
        match call.send().await {
            Ok(_) => {}
            Err(e) if is_code(&e, &["BucketAlreadyOwnedByYou"]) => {}
            // Bucket names are global: another account has this one.
            Err(e) if is_code(&e, &["BucketAlreadyExists"]) => {
                return Err(DriverError::Permanent(format!(
                    "{}: S3 bucket `{bucket}` belongs to another AWS account (bucket names are global); rename the resource or the environment",
                    r.id
                )));
            }
            Err(e) => return Err(failed("CreateBucket", e)),
        }
        self.configure(r).await
    }

    async fn update(&self, r: &Resource) -> Result<Outputs, DriverError> {
        if !self.exists(r).await? {
            return self.create(r).await;
        }
        self.configure(r).await
    }

    /// Deletes the bucket; one that still holds objects is emptied only
    /// when the node allows it (`forceDestroy`, false for production).
    async fn delete(&self, r: &Resource) -> Result<(), DriverError> {
        let p = Props::of(r);
        let bucket = p.str("bucket")?;
        if !self.exists(r).await? {
            return Ok(());
        }
        let s3 = &self.0.s3;
        loop {
            let listed = s3
                .list_object_versions()
                .bucket(bucket)
                .set_expected_bucket_owner(owner(r))
                .send()
                .await
                .map_err(|e| failed("ListObjectVersions", e))?;
            let objects: Vec<aws_sdk_s3::types::ObjectIdentifier> = listed
                .versions()
                .iter()
                .filter_map(|v| Some((v.key()?, v.version_id())))
                .chain(listed.delete_markers().iter().filter_map(|m| Some((m.key()?, m.version_id()))))
                .filter_map(|(k, v)| {
                    aws_sdk_s3::types::ObjectIdentifier::builder()
                        .key(k)
                        .set_version_id(v.map(str::to_string))
                        .build()
                        .ok()
                })
                .collect();
            if objects.is_empty() {
                break;
            }
            if !p.bool("forceDestroy") {
                return Err(DriverError::Permanent(format!(
                    "{}: bucket `{bucket}` still holds objects; empty it first (paved does not delete this environment's data)",
                    r.id
                )));
            }
            let delete = aws_sdk_s3::types::Delete::builder()
                .set_objects(Some(objects))
                .quiet(true)
                .build()
                .map_err(|e| DriverError::Permanent(e.to_string()))?;
            s3.delete_objects()
                .bucket(bucket)
                .set_expected_bucket_owner(owner(r))
                .delete(delete)
                .send()
                .await
                .map_err(|e| failed("DeleteObjects", e))?;
        }
        match s3.delete_bucket().bucket(bucket).set_expected_bucket_owner(owner(r)).send().await {
            Ok(_) => Ok(()),
            Err(e) if is_code(&e, &["NoSuchBucket"]) => Ok(()),
            Err(e) => Err(failed("DeleteBucket", e)),
        }
    }
}

/// An SQS queue, encrypted with the environment's key.
pub(crate) struct Queue(pub(crate) Arc<Session>);

impl Queue {
    async fn url(&self, r: &Resource) -> Result<Option<String>, DriverError> {
        match self.0.sqs.get_queue_url().queue_name(Props::of(r).str("name")?).send().await {
            Ok(out) => Ok(out.queue_url().map(str::to_string)),
            Err(e) if is_code(&e, &["AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist"]) => Ok(None),
            Err(e) => Err(failed("GetQueueUrl", e)),
        }
    }

    async fn outputs(&self, url: &str, r: &Resource) -> Result<(Outputs, Option<String>), DriverError> {
        let attributes = self
            .0
            .sqs
            .get_queue_attributes()
            .queue_url(url)
            .attribute_names(QueueAttributeName::All)
            .send()
            .await
            .map_err(|e| failed("GetQueueAttributes", e))?;
        let get = |k: QueueAttributeName| attributes.attributes().and_then(|a| a.get(&k)).cloned();
        let outputs = Outputs::from([
            ("url".to_string(), json!(url)),
            ("arn".to_string(), json!(get(QueueAttributeName::QueueArn))),
            ("name".to_string(), json!(Props::of(r).opt_str("name"))),
        ]);
        Ok((outputs, get(QueueAttributeName::KmsMasterKeyId)))
    }
}

#[async_trait]
impl Driver for Queue {
    async fn observe(&self, r: &Resource) -> Result<Observation, DriverError> {
        let Some(url) = self.url(r).await? else { return Ok(Observation::Absent) };
        let (outputs, key) = self.outputs(&url, r).await?;
        let tags = self.0.sqs.list_queue_tags().queue_url(&url).send().await.map_err(|e| failed("ListQueueTags", e))?;
        let properties = json!({
            "name": Props::of(r).opt_str("name"),
            "kmsMasterKeyId": key,
            "tags": tags_value(tags.tags().into_iter().flatten().map(|(k, v)| (k.as_str(), v.as_str()))),
        });
        Ok(Observation::Present { properties, outputs, ready: true })
    }

    /// CreateQueue is idempotent for the same name and attributes.
    async fn create(&self, r: &Resource) -> Result<Outputs, DriverError> {
        let p = Props::of(r);
        let out = self
            .0
            .sqs
            .create_queue()
            .queue_name(p.str("name")?)
            .set_attributes(
                p.opt_str("kmsMasterKeyId").map(|k| [(QueueAttributeName::KmsMasterKeyId, k.to_string())].into()),
            )
            .set_tags(Some(p.tags().into_iter().collect()))
            .send()
            .await;
        let url = match out {
            Ok(out) => out.queue_url().unwrap_or_default().to_string(),
            Err(e) if is_code(&e, &["QueueAlreadyExists", "AWS.SimpleQueueService.QueueNameExists"]) => {
                return self.update(r).await;
            }
            Err(e) => return Err(failed("CreateQueue", e)),
        };
        Ok(self.outputs(&url, r).await?.0)
    }

    async fn update(&self, r: &Resource) -> Result<Outputs, DriverError> {
        let Some(url) = self.url(r).await? else { return self.create(r).await };
        let p = Props::of(r);
        if let Some(key) = p.opt_str("kmsMasterKeyId") {
            self.0
                .sqs
                .set_queue_attributes()
                .queue_url(&url)
                .attributes(QueueAttributeName::KmsMasterKeyId, key)
                .send()
                .await
                .map_err(|e| failed("SetQueueAttributes", e))?;
        }
        self.0
            .sqs
            .tag_queue()
            .queue_url(&url)
            .set_tags(Some(p.tags().into_iter().collect()))
            .send()
            .await
            .map_err(|e| failed("TagQueue", e))?;
        Ok(self.outputs(&url, r).await?.0)
    }

    async fn delete(&self, r: &Resource) -> Result<(), DriverError> {
        let Some(url) = self.url(r).await? else { return Ok(()) };
        self.0.sqs.delete_queue().queue_url(url).send().await.map_err(|e| failed("DeleteQueue", e))?;
        Ok(())
    }
}
