//! `aws.elasticache-subnet-group` and `aws.elasticache-replication-group`:
//! Score's `redis` on ElastiCache, found by their deterministic names.
//!
//! | kind | create | update | delete |
//! |------|--------|--------|--------|
//! | subnet group | `CreateCacheSubnetGroup` | `ModifyCacheSubnetGroup` | `DeleteCacheSubnetGroup` (retried while a group is still deleting) |
//! | replication group | `CreateReplicationGroup`: TLS in transit, encrypted at rest with the environment's key, an AUTH token | `ModifyReplicationGroup` (node type, version, failover, Multi-AZ, groups, snapshots; applied immediately) | `DeleteReplicationGroup`, then waits until it is gone |
//!
//! Rules AWS enforces that an emulator does not, checked before any call
//! (<https://docs.aws.amazon.com/AmazonElastiCache/latest/APIReference/API_CreateReplicationGroup.html>,
//! <https://docs.aws.amazon.com/AmazonElastiCache/latest/dg/auth.html>): the
//! id is 1–40 letters, digits and hyphens starting with a letter, with no
//! `--` and no trailing hyphen; an AUTH token is 16–128 printable
//! characters without `@`, `"` or `/`, and needs encryption in transit;
//! automatic failover needs a replica (2 nodes or more) and Multi-AZ needs
//! automatic failover.
//!
//! The AUTH token cannot be read back: paved sets it at creation (from its
//! sealed `paved.secret`) and reports what it set. Ready when the group's
//! status is `available` (creation takes AWS several minutes).

use super::props::{like, tags_value};
use super::{Props, Session, failed, is_code, until_gone};
use async_trait::async_trait;
use aws_sdk_elasticache::types::{ReplicationGroup, Tag};
use paved_engine::{Driver, DriverError, Observation, Outputs, Resource};
use serde_json::json;
use std::sync::Arc;

fn tags(r: &Resource) -> Vec<Tag> {
    Props::of(r).tags().into_iter().map(|(k, v)| Tag::builder().key(k).value(v).build()).collect()
}

async fn tag_value(s: &Session, arn: Option<&str>) -> Result<serde_json::Value, DriverError> {
    let Some(arn) = arn else { return Ok(json!({})) };
    let out = s
        .elasticache
        .list_tags_for_resource()
        .resource_name(arn)
        .send()
        .await
        .map_err(|e| failed("ListTagsForResource", e))?;
    Ok(tags_value(out.tag_list().iter().filter_map(|t| Some((t.key()?, t.value()?)))))
}

pub(crate) struct SubnetGroup(pub(crate) Arc<Session>);

impl SubnetGroup {
    async fn find(&self, r: &Resource) -> Result<Option<aws_sdk_elasticache::types::CacheSubnetGroup>, DriverError> {
        let name = Props::of(r).str("name")?;
        match self.0.elasticache.describe_cache_subnet_groups().cache_subnet_group_name(name).send().await {
            Ok(out) => Ok(out.cache_subnet_groups().first().cloned()),
            Err(e) if is_code(&e, &["CacheSubnetGroupNotFoundFault"]) => Ok(None),
            Err(e) => Err(failed("DescribeCacheSubnetGroups", e)),
        }
    }

    fn outputs(r: &Resource) -> Outputs {
        Outputs::from([("name".to_string(), json!(Props::of(r).opt_str("name")))])
    }
}

#[async_trait]
impl Driver for SubnetGroup {
    async fn observe(&self, r: &Resource) -> Result<Observation, DriverError> {
        let Some(g) = self.find(r).await? else { return Ok(Observation::Absent) };
        let subnets = g.subnets().iter().filter_map(|s| s.subnet_identifier()).map(|s| json!(s)).collect();
        let properties = json!({
            "name": g.cache_subnet_group_name(),
            "subnetIds": like(Props::of(r).value("subnetIds"), subnets),
            "tags": tag_value(&self.0, g.arn()).await?,
        });
        Ok(Observation::Present { properties, outputs: Self::outputs(r), ready: true })
    }

    async fn create(&self, r: &Resource) -> Result<Outputs, DriverError> {
        let p = Props::of(r);
        let out = self
            .0
            .elasticache
            .create_cache_subnet_group()
            .cache_subnet_group_name(p.str("name")?)
            .cache_subnet_group_description(format!("paved environment {}", r.environment))
            .set_subnet_ids(Some(p.strings("subnetIds")))
            .set_tags(Some(tags(r)))
            .send()
            .await;
        match out {
            Ok(_) => Ok(Self::outputs(r)),
            Err(e) if is_code(&e, &["CacheSubnetGroupAlreadyExists"]) => self.update(r).await,
            Err(e) => Err(failed("CreateCacheSubnetGroup", e)),
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
                .elasticache
                .modify_cache_subnet_group()
                .cache_subnet_group_name(p.str("name")?)
                .set_subnet_ids(Some(want))
                .send()
                .await
                .map_err(|e| failed("ModifyCacheSubnetGroup", e))?;
        }
        if let Some(arn) = g.arn() {
            self.0
                .elasticache
                .add_tags_to_resource()
                .resource_name(arn)
                .set_tags(Some(tags(r)))
                .send()
                .await
                .map_err(|e| failed("AddTagsToResource", e))?;
        }
        Ok(Self::outputs(r))
    }

    async fn delete(&self, r: &Resource) -> Result<(), DriverError> {
        match self
            .0
            .elasticache
            .delete_cache_subnet_group()
            .cache_subnet_group_name(Props::of(r).str("name")?)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if is_code(&e, &["CacheSubnetGroupNotFoundFault"]) => Ok(()),
            Err(e) if is_code(&e, &["CacheSubnetGroupInUse"]) => {
                Err(DriverError::Retryable(format!("{}: still used by a cache being deleted", r.id)))
            }
            Err(e) => Err(failed("DeleteCacheSubnetGroup", e)),
        }
    }
}

/// Why AWS would refuse these properties, before asking it.
pub(crate) fn refused(p: &Props<'_>) -> Option<String> {
    let id = p.opt_str("id").unwrap_or_default();
    let id_ok = (1..=40).contains(&id.len())
        && id.starts_with(|c: char| c.is_ascii_alphabetic())
        && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        && !id.contains("--")
        && !id.ends_with('-');
    if !id_ok {
        return Some(format!(
            "ElastiCache refuses the replication group id `{id}`: 1–40 letters, digits and hyphens, starting with \
             a letter, without `--` or a trailing hyphen"
        ));
    }
    let token = p.opt_str("authToken").unwrap_or_default();
    if !(16..=128).contains(&token.len())
        || token.contains(['@', '"', '/'])
        || !token.chars().all(|c| c.is_ascii_graphic())
    {
        return Some(
            "ElastiCache refuses an AUTH token that is not 16–128 printable characters or holds `@`, `\"` or `/`"
                .into(),
        );
    }
    if !p.bool("transitEncryption") {
        return Some("ElastiCache takes an AUTH token only with encryption in transit".into());
    }
    let nodes = p.value("nodes").as_u64().unwrap_or(1);
    if p.bool("automaticFailover") && nodes < 2 {
        return Some("ElastiCache's automatic failover needs a replica: 2 nodes or more".into());
    }
    if p.bool("multiAz") && !p.bool("automaticFailover") {
        return Some("ElastiCache's Multi-AZ needs automatic failover".into());
    }
    None
}

pub(crate) struct ReplicationGroupDriver(pub(crate) Arc<Session>);

impl ReplicationGroupDriver {
    async fn find(&self, r: &Resource) -> Result<Option<ReplicationGroup>, DriverError> {
        let id = Props::of(r).str("id")?;
        match self.0.elasticache.describe_replication_groups().replication_group_id(id).send().await {
            Ok(out) => Ok(out.replication_groups().first().cloned()),
            Err(e) if is_code(&e, &["ReplicationGroupNotFoundFault"]) => Ok(None),
            Err(e) => Err(failed("DescribeReplicationGroups", e)),
        }
    }

    fn outputs(g: &ReplicationGroup, r: &Resource) -> Outputs {
        let primary = g.node_groups().first().and_then(|n| n.primary_endpoint());
        Outputs::from([
            ("host".to_string(), json!(primary.and_then(|e| e.address()))),
            ("port".to_string(), json!(primary.and_then(|e| e.port()).unwrap_or(6379))),
            // Redis 6+ names the user an AUTH token authenticates `default`.
            ("username".to_string(), json!("default")),
            ("password".to_string(), json!(Props::of(r).opt_str("authToken"))),
        ])
    }
}

#[async_trait]
impl Driver for ReplicationGroupDriver {
    async fn observe(&self, r: &Resource) -> Result<Observation, DriverError> {
        let Some(g) = self.find(r).await? else { return Ok(Observation::Absent) };
        if g.status() == Some("deleting") {
            return Ok(Observation::Absent);
        }
        let p = Props::of(r);
        let failover = g.automatic_failover().is_some_and(|f| f.as_str() == "enabled" || f.as_str() == "enabling");
        let multi_az = g.multi_az().is_some_and(|m| m.as_str() == "enabled");
        let nodes = g.member_clusters().len().max(1);
        let properties = json!({
            "id": g.replication_group_id(),
            "description": g.description(),
            "engine": p.opt_str("engine"),
            "engineVersion": p.opt_str("engineVersion"),
            "nodeType": g.cache_node_type(),
            "nodes": nodes,
            "automaticFailover": failover,
            "multiAz": multi_az,
            "transitEncryption": g.transit_encryption_enabled().unwrap_or(false),
            "atRestEncryption": g.at_rest_encryption_enabled().unwrap_or(false),
            "kmsKeyArn": g.kms_key_id(),
            // Not readable from AWS: what paved set, when AWS says a token is set.
            "authToken": if g.auth_token_enabled().unwrap_or(false) { json!(p.opt_str("authToken")) } else { json!(null) },
            "subnetGroup": p.opt_str("subnetGroup"),
            "securityGroupIds": p.value("securityGroupIds"),
            "snapshotRetentionDays": g.snapshot_retention_limit().unwrap_or(0),
            "tags": tag_value(&self.0, g.arn()).await?,
        });
        let ready = g.status() == Some("available");
        Ok(Observation::Present { properties, outputs: Self::outputs(&g, r), ready })
    }

    async fn create(&self, r: &Resource) -> Result<Outputs, DriverError> {
        let p = Props::of(r);
        if let Some(why) = refused(&p) {
            return Err(DriverError::Permanent(why));
        }
        let out = self
            .0
            .elasticache
            .create_replication_group()
            .replication_group_id(p.str("id")?)
            .replication_group_description(p.str("description")?)
            .engine(p.str("engine")?)
            .engine_version(p.str("engineVersion")?)
            .cache_node_type(p.str("nodeType")?)
            .num_cache_clusters(p.value("nodes").as_i64().unwrap_or(1) as i32)
            .automatic_failover_enabled(p.bool("automaticFailover"))
            .multi_az_enabled(p.bool("multiAz"))
            .transit_encryption_enabled(p.bool("transitEncryption"))
            .at_rest_encryption_enabled(p.bool("atRestEncryption"))
            .kms_key_id(p.str("kmsKeyArn")?)
            .auth_token(p.str("authToken")?)
            .cache_subnet_group_name(p.str("subnetGroup")?)
            .set_security_group_ids(Some(p.strings("securityGroupIds")))
            .snapshot_retention_limit(p.int("snapshotRetentionDays")?)
            .set_tags(Some(tags(r)))
            .send()
            .await;
        match out {
            Ok(_) => {}
            Err(e) if is_code(&e, &["ReplicationGroupAlreadyExistsFault", "ReplicationGroupAlreadyExists"]) => {}
            Err(e) => return Err(failed("CreateReplicationGroup", e)),
        }
        let g = self.find(r).await?.ok_or_else(|| DriverError::Retryable("replication group not listed yet".into()))?;
        Ok(Self::outputs(&g, r))
    }

    async fn update(&self, r: &Resource) -> Result<Outputs, DriverError> {
        let p = Props::of(r);
        if let Some(why) = refused(&p) {
            return Err(DriverError::Permanent(why));
        }
        let Some(g) = self.find(r).await? else { return self.create(r).await };
        self.0
            .elasticache
            .modify_replication_group()
            .replication_group_id(p.str("id")?)
            .cache_node_type(p.str("nodeType")?)
            .engine_version(p.str("engineVersion")?)
            .automatic_failover_enabled(p.bool("automaticFailover"))
            .multi_az_enabled(p.bool("multiAz"))
            .set_security_group_ids(Some(p.strings("securityGroupIds")))
            .snapshot_retention_limit(p.int("snapshotRetentionDays")?)
            .apply_immediately(true)
            .send()
            .await
            .map_err(|e| failed("ModifyReplicationGroup", e))?;
        if let Some(arn) = g.arn() {
            self.0
                .elasticache
                .add_tags_to_resource()
                .resource_name(arn)
                .set_tags(Some(tags(r)))
                .send()
                .await
                .map_err(|e| failed("AddTagsToResource", e))?;
        }
        Ok(Self::outputs(&g, r))
    }

    async fn delete(&self, r: &Resource) -> Result<(), DriverError> {
        let Some(g) = self.find(r).await? else { return Ok(()) };
        if g.status() != Some("deleting") {
            match self
                .0
                .elasticache
                .delete_replication_group()
                .replication_group_id(Props::of(r).str("id")?)
                .send()
                .await
            {
                Ok(_) => {}
                Err(e) if is_code(&e, &["ReplicationGroupNotFoundFault"]) => return Ok(()),
                Err(e) => return Err(failed("DeleteReplicationGroup", e)),
            }
        }
        until_gone(|| async { Ok(self.find(r).await?.is_none()) }).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn refusal(v: Value) -> Option<String> {
        let r = Resource {
            environment: "dev".into(),
            id: "aws.elasticache-replication-group/x".into(),
            kind: "aws.elasticache-replication-group".into(),
            name: "x".into(),
            properties: v,
            external_name: "paved-dev-x".into(),
        };
        refused(&Props::of(&r))
    }

    #[test]
    fn what_elasticache_refuses_is_refused_first() {
        let ok = json!({"id": "paved-dev-api-cache", "authToken": "Abcdefgh2345xyzQ", "transitEncryption": true,
                        "nodes": 1, "automaticFailover": false, "multiAz": false});
        assert_eq!(refusal(ok.clone()), None);
        let with = |k: &str, v: Value| {
            let mut p = ok.clone();
            p[k] = v;
            refusal(p).unwrap_or_default()
        };
        assert!(with("id", json!("9cache")).contains("starting with a letter"));
        assert!(with("id", json!("paved--x")).contains("`--`"));
        assert!(with("id", json!("x".repeat(41))).contains("1–40"));
        assert!(with("authToken", json!("short")).contains("16–128"));
        assert!(with("authToken", json!("Abcdefgh2345xyz@Q")).contains("`@`"));
        assert!(with("transitEncryption", json!(false)).contains("encryption in transit"));
        assert!(with("automaticFailover", json!(true)).contains("2 nodes or more"));
        assert!(with("multiAz", json!(true)).contains("needs automatic failover"));
    }
}
