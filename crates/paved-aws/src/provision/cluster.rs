//! Compute and ingress: the EKS cluster and its node group, the application
//! load balancer (with its default target group and listeners; routes are
//! `routes.rs`), and links between services, which are only recorded.

use super::props::{like, tags_value, version_like};
use super::{Props, Session, failed, is_code, until_gone};
use async_trait::async_trait;
use aws_sdk_eks::types::{
    AuthenticationMode, CreateAccessConfigRequest, EncryptionConfig, LogSetup, LogType, Logging,
    NodegroupScalingConfig, Provider, UpdateAccessConfigRequest, VpcConfigRequest,
};
use aws_sdk_elasticloadbalancingv2::types::{
    Action, ActionTypeEnum, LoadBalancerAttribute, LoadBalancerSchemeEnum, LoadBalancerTypeEnum, ProtocolEnum,
    RedirectActionConfig, RedirectActionStatusCodeEnum, TargetTypeEnum,
};
use paved_engine::{Driver, DriverError, Observation, Outputs, Resource};
use serde_json::{Value, json};
use std::sync::Arc;

/// EKS's health issues of a cluster or node group, as `CODE: message; …`.
fn health_issues<'a>(issues: impl Iterator<Item = (Option<&'a str>, Option<&'a str>)>) -> String {
    let text: Vec<String> =
        issues.map(|(code, message)| format!("{}: {}", code.unwrap_or("?"), message.unwrap_or_default())).collect();
    if text.is_empty() { "no health issue given".into() } else { text.join("; ") }
}

pub(crate) struct EksCluster(pub(crate) Arc<Session>);

impl EksCluster {
    async fn find(&self, r: &Resource) -> Result<Option<aws_sdk_eks::types::Cluster>, DriverError> {
        match self.0.eks.describe_cluster().name(Props::of(r).str("name")?).send().await {
            Ok(out) => Ok(out.cluster().cloned()),
            Err(e) if is_code(&e, &["ResourceNotFoundException"]) => Ok(None),
            Err(e) => Err(failed("DescribeCluster", e)),
        }
    }

    fn logging(r: &Resource) -> Logging {
        let types = Props::of(r).strings("enabledLogTypes").iter().map(|t| LogType::from(t.as_str())).collect();
        Logging::builder().cluster_logging(LogSetup::builder().set_types(Some(types)).enabled(true).build()).build()
    }

    fn properties(c: &aws_sdk_eks::types::Cluster, r: &Resource) -> Value {
        let p = Props::of(r);
        let vpc = c.resources_vpc_config();
        let log_types: Vec<Value> = c
            .logging()
            .map(|l| l.cluster_logging())
            .unwrap_or_default()
            .iter()
            .filter(|s| s.enabled() == Some(true))
            .flat_map(|s| s.types().iter().map(|t| json!(t.as_str())))
            .collect();
        json!({
            "name": c.name(),
            "version": version_like(p.value("version"), c.version()),
            "roleArn": c.role_arn(),
            "endpointPrivateAccess": vpc.map(|v| v.endpoint_private_access()),
            "endpointPublicAccess": vpc.map(|v| v.endpoint_public_access()),
            "subnetIds": like(p.value("subnetIds"), vpc.map(|v| v.subnet_ids()).unwrap_or_default().iter().map(|s| json!(s)).collect()),
            "secretsEncryptionKeyArn": c.encryption_config().iter().find_map(|e| e.provider().and_then(|p| p.key_arn())),
            "enabledLogTypes": like(p.value("enabledLogTypes"), log_types),
            "authenticationMode": c.access_config().and_then(|a| a.authentication_mode()).map(|m| m.as_str()),
            "bootstrapClusterCreatorAdminPermissions": c.access_config().and_then(|a| a.bootstrap_cluster_creator_admin_permissions()),
            "tags": tags_value(c.tags().into_iter().flatten().map(|(k, v)| (k.as_str(), v.as_str()))),
        })
    }

    fn outputs(c: &aws_sdk_eks::types::Cluster) -> Outputs {
        Outputs::from([
            ("arn".to_string(), json!(c.arn())),
            ("endpoint".to_string(), json!(c.endpoint())),
            ("name".to_string(), json!(c.name())),
            // The issuer of the cluster's ServiceAccount tokens (IRSA trusts it).
            ("oidcIssuer".to_string(), json!(c.identity().and_then(|i| i.oidc()).and_then(|o| o.issuer()))),
            // The group EKS made and put on the managed nodes, which pods carry.
            (
                "securityGroupId".to_string(),
                json!(c.resources_vpc_config().and_then(|v| v.cluster_security_group_id())),
            ),
        ])
    }
}

#[async_trait]
impl Driver for EksCluster {
    async fn observe(&self, r: &Resource) -> Result<Observation, DriverError> {
        let Some(c) = self.find(r).await? else { return Ok(Observation::Absent) };
        let status = c.status().map(|s| s.as_str().to_string()).unwrap_or_default();
        if status == "DELETING" {
            return Ok(Observation::Absent);
        }
        // A failed cluster stays failed: say so now rather than wait out the ready timeout
        // (<https://docs.aws.amazon.com/eks/latest/APIReference/API_Cluster.html>, `status`).
        if status == "FAILED" {
            let issues = c.health().map(|h| h.issues()).unwrap_or_default();
            return Err(DriverError::Permanent(format!(
                "{}: EKS reports the cluster FAILED ({}); delete it in AWS (or `paved destroy`) and apply again",
                r.id,
                health_issues(issues.iter().map(|i| (i.code().map(|c| c.as_str()), i.message())))
            )));
        }
        Ok(Observation::Present {
            properties: Self::properties(&c, r),
            outputs: Self::outputs(&c),
            ready: status == "ACTIVE",
        })
    }

    async fn create(&self, r: &Resource) -> Result<Outputs, DriverError> {
        let p = Props::of(r);
        let vpc = VpcConfigRequest::builder()
            .set_subnet_ids(Some(p.strings("subnetIds")))
            .endpoint_private_access(p.bool("endpointPrivateAccess"))
            .endpoint_public_access(p.bool("endpointPublicAccess"))
            .build();
        let encryption = EncryptionConfig::builder()
            .provider(Provider::builder().key_arn(p.str("secretsEncryptionKeyArn")?).build())
            .build();
        let out = self
            .0
            .eks
            .create_cluster()
            .client_request_token(self.0.client_token(r))
            .name(p.str("name")?)
            .version(p.str("version")?)
            .role_arn(p.str("roleArn")?)
            .resources_vpc_config(vpc)
            .encryption_config(encryption)
            .access_config(
                CreateAccessConfigRequest::builder()
                    .authentication_mode(AuthenticationMode::from(p.str("authenticationMode")?))
                    .bootstrap_cluster_creator_admin_permissions(p.bool("bootstrapClusterCreatorAdminPermissions"))
                    .build(),
            )
            .logging(Self::logging(r))
            .set_tags(Some(p.tags().into_iter().collect()))
            .send()
            .await;
        match out {
            Ok(out) => Ok(out.cluster().map(Self::outputs).unwrap_or_default()),
            Err(e) if is_code(&e, &["ResourceInUseException"]) => {
                Err(DriverError::Retryable(format!("{}: a cluster of that name is still being deleted", r.id)))
            }
            Err(e) => Err(failed("CreateCluster", e)),
        }
    }

    /// One EKS update after another: EKS runs one update of a cluster at a
    /// time and refuses a second meanwhile (`ResourceInUseException`), so
    /// each is waited for before the next is sent.
    async fn update(&self, r: &Resource) -> Result<Outputs, DriverError> {
        let Some(c) = self.find(r).await? else { return self.create(r).await };
        let have = Self::properties(&c, r);
        let p = Props::of(r);
        let name = p.str("name")?;
        let eks = &self.0.eks;
        let token = self.0.client_token(r);
        if have["enabledLogTypes"] != *p.value("enabledLogTypes") {
            let out = eks
                .update_cluster_config()
                .name(name)
                .client_request_token(format!("{token}-logging"))
                .logging(Self::logging(r))
                .send()
                .await
                .map_err(|e| failed("UpdateClusterConfig", e))?;
            wait_update(&self.0, name, None, out.update(), &r.id).await?;
        }
        if have["endpointPublicAccess"] != *p.value("endpointPublicAccess")
            || have["subnetIds"] != *p.value("subnetIds")
        {
            // The control plane's subnets may change, in the zones it was created in
            // (<https://docs.aws.amazon.com/eks/latest/userguide/network-reqs.html>).
            let vpc = VpcConfigRequest::builder()
                .set_subnet_ids(Some(p.strings("subnetIds")))
                .endpoint_private_access(p.bool("endpointPrivateAccess"))
                .endpoint_public_access(p.bool("endpointPublicAccess"))
                .build();
            let out = eks
                .update_cluster_config()
                .name(name)
                .client_request_token(format!("{token}-vpc"))
                .resources_vpc_config(vpc)
                .send()
                .await
                .map_err(|e| failed("UpdateClusterConfig", e))?;
            wait_update(&self.0, name, None, out.update(), &r.id).await?;
        }
        // Access moves only towards access entries (CONFIG_MAP → API_AND_CONFIG_MAP → API);
        // whether the creator is an administrator is set at creation only.
        if have["authenticationMode"] != *p.value("authenticationMode") {
            let out = eks
                .update_cluster_config()
                .name(name)
                .client_request_token(format!("{token}-access"))
                .access_config(
                    UpdateAccessConfigRequest::builder()
                        .authentication_mode(AuthenticationMode::from(p.str("authenticationMode")?))
                        .build(),
                )
                .send()
                .await
                .map_err(|e| failed("UpdateClusterConfig", e))?;
            wait_update(&self.0, name, None, out.update(), &r.id).await?;
        }
        if have["version"] != *p.value("version") {
            // One minor version per update, as EKS upgrades
            // (<https://docs.aws.amazon.com/eks/latest/userguide/update-cluster.html>).
            let out = eks
                .update_cluster_version()
                .name(name)
                .client_request_token(format!("{token}-version"))
                .version(p.str("version")?)
                .send()
                .await
                .map_err(|e| failed("UpdateClusterVersion", e))?;
            wait_update(&self.0, name, None, out.update(), &r.id).await?;
        }
        eks.tag_resource()
            .resource_arn(c.arn().unwrap_or_default())
            .set_tags(Some(p.tags().into_iter().collect()))
            .send()
            .await
            .map_err(|e| failed("TagResource", e))?;
        Ok(Self::outputs(&c))
    }

    async fn delete(&self, r: &Resource) -> Result<(), DriverError> {
        if self.find(r).await?.is_none() {
            return Ok(());
        }
        match self.0.eks.delete_cluster().name(Props::of(r).str("name")?).send().await {
            Ok(_) => {}
            Err(e) if is_code(&e, &["ResourceNotFoundException"]) => return Ok(()),
            Err(e) => return Err(failed("DeleteCluster", e)),
        }
        until_gone(|| async { Ok(self.find(r).await?.is_none()) }).await
    }
}

/// Waits for an EKS update to end: EKS runs one update of a cluster or
/// node group at a time and answers another with `ResourceInUseException`
/// meanwhile (<https://docs.aws.amazon.com/eks/latest/APIReference/API_UpdateClusterConfig.html>,
/// <https://docs.aws.amazon.com/eks/latest/APIReference/API_DescribeUpdate.html>).
/// A failed or cancelled update is reported with EKS's errors.
async fn wait_update(
    s: &Session,
    cluster: &str,
    nodegroup: Option<&str>,
    update: Option<&aws_sdk_eks::types::Update>,
    what: &str,
) -> Result<(), DriverError> {
    let Some(id) = update.and_then(|u| u.id()) else { return Ok(()) };
    let mut pause = std::time::Duration::from_millis(200);
    loop {
        let out = s
            .eks
            .describe_update()
            .name(cluster)
            .update_id(id)
            .set_nodegroup_name(nodegroup.map(str::to_string))
            .send()
            .await
            .map_err(|e| failed("DescribeUpdate", e))?;
        let Some(u) = out.update() else { return Ok(()) };
        match u.status().map(|s| s.as_str()) {
            Some("InProgress") => {}
            Some("Successful") | None => return Ok(()),
            Some(other) => {
                let errors: Vec<String> = u
                    .errors()
                    .iter()
                    .map(|e| {
                        format!(
                            "{}: {}",
                            e.error_code().map(|c| c.as_str()).unwrap_or("-"),
                            e.error_message().unwrap_or("-")
                        )
                    })
                    .collect();
                return Err(DriverError::Permanent(format!(
                    "{what}: EKS reports update {id} {other} ({})",
                    if errors.is_empty() { "no details".into() } else { errors.join("; ") }
                )));
            }
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(std::time::Duration::from_secs(15));
    }
}

pub(crate) struct EksNodeGroup(pub(crate) Arc<Session>);

impl EksNodeGroup {
    async fn find(&self, r: &Resource) -> Result<Option<aws_sdk_eks::types::Nodegroup>, DriverError> {
        let p = Props::of(r);
        let out = self
            .0
            .eks
            .describe_nodegroup()
            .cluster_name(p.str("clusterName")?)
            .nodegroup_name(&r.external_name)
            .send()
            .await;
        match out {
            Ok(out) => Ok(out.nodegroup().filter(|n| n.status().is_none_or(|s| s.as_str() != "DELETING")).cloned()),
            Err(e) if is_code(&e, &["ResourceNotFoundException"]) => Ok(None),
            Err(e) => Err(failed("DescribeNodegroup", e)),
        }
    }

    fn scaling(r: &Resource) -> Result<NodegroupScalingConfig, DriverError> {
        let p = Props::of(r);
        Ok(NodegroupScalingConfig::builder()
            .desired_size(p.int("desiredSize")?)
            .min_size(p.int("minSize")?)
            .max_size(p.int("maxSize")?)
            .build())
    }

    fn outputs(n: &aws_sdk_eks::types::Nodegroup) -> Outputs {
        Outputs::from([("arn".to_string(), json!(n.nodegroup_arn()))])
    }
}

#[async_trait]
impl Driver for EksNodeGroup {
    async fn observe(&self, r: &Resource) -> Result<Observation, DriverError> {
        let Some(n) = self.find(r).await? else { return Ok(Observation::Absent) };
        let scaling = n.scaling_config();
        let properties = json!({
            "clusterName": n.cluster_name(),
            "version": version_like(Props::of(r).value("version"), n.version()),
            "nodeRoleArn": n.node_role(),
            "subnetIds": like(Props::of(r).value("subnetIds"), n.subnets().iter().map(|s| json!(s)).collect()),
            "instanceType": n.instance_types().first(),
            "desiredSize": scaling.and_then(|s| s.desired_size()),
            "minSize": scaling.and_then(|s| s.min_size()),
            "maxSize": scaling.and_then(|s| s.max_size()),
            "tags": tags_value(n.tags().into_iter().flatten().map(|(k, v)| (k.as_str(), v.as_str()))),
        });
        // A node group that failed to be created or deleted stays so
        // (<https://docs.aws.amazon.com/eks/latest/APIReference/API_Nodegroup.html>, `status`).
        if let Some(state @ ("CREATE_FAILED" | "DELETE_FAILED")) = n.status().map(|s| s.as_str()) {
            let issues = n.health().map(|h| h.issues()).unwrap_or_default();
            return Err(DriverError::Permanent(format!(
                "{}: EKS reports the node group {state} ({})",
                r.id,
                health_issues(issues.iter().map(|i| (i.code().map(|c| c.as_str()), i.message())))
            )));
        }
        let ready = n.status().is_some_and(|s| s.as_str() == "ACTIVE");
        Ok(Observation::Present { properties, outputs: Self::outputs(&n), ready })
    }

    async fn create(&self, r: &Resource) -> Result<Outputs, DriverError> {
        let p = Props::of(r);
        let out = self
            .0
            .eks
            .create_nodegroup()
            .client_request_token(self.0.client_token(r))
            .cluster_name(p.str("clusterName")?)
            .nodegroup_name(&r.external_name)
            .node_role(p.str("nodeRoleArn")?)
            .set_version(p.opt_str("version").map(str::to_string))
            .set_subnets(Some(p.strings("subnetIds")))
            .instance_types(p.str("instanceType")?)
            .scaling_config(Self::scaling(r)?)
            .set_tags(Some(p.tags().into_iter().collect()))
            .send()
            .await
            .map_err(|e| failed("CreateNodegroup", e))?;
        Ok(out.nodegroup().map(Self::outputs).unwrap_or_default())
    }

    /// Scaling, then the Kubernetes version (after the cluster's: this node
    /// comes after it), then tags — one EKS update at a time.
    async fn update(&self, r: &Resource) -> Result<Outputs, DriverError> {
        let Some(n) = self.find(r).await? else { return self.create(r).await };
        let p = Props::of(r);
        let cluster = p.str("clusterName")?;
        let token = self.0.client_token(r);
        let scaling = n.scaling_config();
        let wanted = Self::scaling(r)?;
        if scaling.map(|s| (s.desired_size(), s.min_size(), s.max_size()))
            != Some((wanted.desired_size(), wanted.min_size(), wanted.max_size()))
        {
            let out = self
                .0
                .eks
                .update_nodegroup_config()
                .cluster_name(cluster)
                .nodegroup_name(&r.external_name)
                .client_request_token(format!("{token}-scaling"))
                .scaling_config(wanted)
                .send()
                .await
                .map_err(|e| failed("UpdateNodegroupConfig", e))?;
            wait_update(&self.0, cluster, Some(&r.external_name), out.update(), &r.id).await?;
        }
        if version_like(p.value("version"), n.version()) != *p.value("version") {
            let out = self
                .0
                .eks
                .update_nodegroup_version()
                .cluster_name(cluster)
                .nodegroup_name(&r.external_name)
                .client_request_token(format!("{token}-version"))
                .set_version(p.opt_str("version").map(str::to_string))
                .send()
                .await
                .map_err(|e| failed("UpdateNodegroupVersion", e))?;
            wait_update(&self.0, cluster, Some(&r.external_name), out.update(), &r.id).await?;
        }
        if let Some(arn) = n.nodegroup_arn() {
            self.0
                .eks
                .tag_resource()
                .resource_arn(arn)
                .set_tags(Some(p.tags().into_iter().collect()))
                .send()
                .await
                .map_err(|e| failed("TagResource", e))?;
        }
        Ok(Self::outputs(&n))
    }

    async fn delete(&self, r: &Resource) -> Result<(), DriverError> {
        if self.find(r).await?.is_none() {
            return Ok(());
        }
        let out = self
            .0
            .eks
            .delete_nodegroup()
            .cluster_name(Props::of(r).str("clusterName")?)
            .nodegroup_name(&r.external_name)
            .send()
            .await;
        match out {
            Ok(_) => {}
            Err(e) if is_code(&e, &["ResourceNotFoundException"]) => return Ok(()),
            Err(e) => return Err(failed("DeleteNodegroup", e)),
        }
        until_gone(|| async { Ok(self.find(r).await?.is_none()) }).await
    }
}

/// The application load balancer, its target group (health check) and
/// listeners (HTTPS forwarding, HTTP redirecting to it), all named after it.
pub(crate) struct LoadBalancer(pub(crate) Arc<Session>);

type Lb = aws_sdk_elasticloadbalancingv2::types::LoadBalancer;
type TargetGroup = aws_sdk_elasticloadbalancingv2::types::TargetGroup;

const ATTRIBUTES: [(&str, &str); 3] = [
    ("idleTimeoutSeconds", "idle_timeout.timeout_seconds"),
    ("dropInvalidHeaderFields", "routing.http.drop_invalid_header_fields.enabled"),
    ("deletionProtection", "deletion_protection.enabled"),
];

impl LoadBalancer {
    async fn find(&self, r: &Resource) -> Result<Option<Lb>, DriverError> {
        match self.0.elb.describe_load_balancers().names(Props::of(r).str("name")?).send().await {
            Ok(out) => Ok(out.load_balancers().first().cloned()),
            Err(e) if is_code(&e, &["LoadBalancerNotFound"]) => Ok(None),
            Err(e) => Err(failed("DescribeLoadBalancers", e)),
        }
    }

    async fn target_group(&self, r: &Resource) -> Result<Option<TargetGroup>, DriverError> {
        super::routes::target_group_named(&self.0, Props::of(r).str("name")?).await
    }

    async fn listeners(&self, lb: &str) -> Result<Vec<aws_sdk_elasticloadbalancingv2::types::Listener>, DriverError> {
        let out = self
            .0
            .elb
            .describe_listeners()
            .load_balancer_arn(lb)
            .send()
            .await
            .map_err(|e| failed("DescribeListeners", e))?;
        Ok(out.listeners().to_vec())
    }

    fn listener_value(l: &aws_sdk_elasticloadbalancingv2::types::Listener) -> Value {
        let mut v = json!({"port": l.port(), "protocol": l.protocol().map(|p| p.as_str())});
        // Only secure listeners have a policy (an emulator may report one for HTTP too).
        if let Some(policy) =
            l.ssl_policy().filter(|_| matches!(l.protocol().map(|p| p.as_str()), Some("HTTPS" | "TLS")))
        {
            v["sslPolicy"] = json!(policy);
        }
        if let Some(redirect) = l.default_actions().iter().find_map(|a| a.redirect_config()) {
            v["redirectTo"] = json!(redirect.port().and_then(|p| p.parse::<i64>().ok()));
        }
        if let Some(cert) = l.certificates().iter().find_map(|c| c.certificate_arn()) {
            v["certificateArn"] = json!(cert);
        }
        v
    }

    fn health_check(tg: &TargetGroup) -> Value {
        json!({
            "path": tg.health_check_path(),
            "intervalSeconds": tg.health_check_interval_seconds(),
            "timeoutSeconds": tg.health_check_timeout_seconds(),
            "healthyThreshold": tg.healthy_threshold_count(),
            "unhealthyThreshold": tg.unhealthy_threshold_count(),
        })
    }

    fn outputs(lb: &Lb) -> Outputs {
        Outputs::from([
            ("arn".to_string(), json!(lb.load_balancer_arn())),
            ("dnsName".to_string(), json!(lb.dns_name())),
            // The zone an alias record to the load balancer names.
            ("canonicalHostedZoneId".to_string(), json!(lb.canonical_hosted_zone_id())),
        ])
    }

    fn attribute_value(field: &str, value: &str) -> Value {
        match field {
            "idleTimeoutSeconds" => value.parse::<i64>().map(Value::from).unwrap_or(json!(value)),
            _ => json!(value == "true"),
        }
    }

    /// Attributes, target group, listeners and tags brought to the node's.
    async fn configure(&self, lb: &Lb, r: &Resource) -> Result<Outputs, DriverError> {
        let p = Props::of(r);
        let elb = &self.0.elb;
        let arn = lb.load_balancer_arn().unwrap_or_default();
        let attributes = ATTRIBUTES
            .iter()
            .map(|(field, key)| {
                let value = match p.value(field) {
                    Value::String(s) => s.clone(),
                    v => v.to_string(),
                };
                LoadBalancerAttribute::builder().key(*key).value(value).build()
            })
            .collect();
        elb.modify_load_balancer_attributes()
            .load_balancer_arn(arn)
            .set_attributes(Some(attributes))
            .send()
            .await
            .map_err(|e| failed("ModifyLoadBalancerAttributes", e))?;
        let hc = p.value("healthCheck");
        let int = |k: &str| hc[k].as_i64().and_then(|n| i32::try_from(n).ok());
        let tg = match self.target_group(r).await? {
            Some(tg) => {
                let out = elb
                    .modify_target_group()
                    .target_group_arn(tg.target_group_arn().unwrap_or_default())
                    .set_health_check_path(hc["path"].as_str().map(str::to_string))
                    .set_health_check_interval_seconds(int("intervalSeconds"))
                    .set_health_check_timeout_seconds(int("timeoutSeconds"))
                    .set_healthy_threshold_count(int("healthyThreshold"))
                    .set_unhealthy_threshold_count(int("unhealthyThreshold"))
                    .send()
                    .await
                    .map_err(|e| failed("ModifyTargetGroup", e))?;
                out.target_groups().first().cloned().unwrap_or(tg)
            }
            None => {
                let out = elb
                    .create_target_group()
                    .name(p.str("name")?)
                    .protocol(ProtocolEnum::Http)
                    .port(80)
                    .vpc_id(p.str("vpcId")?)
                    .target_type(TargetTypeEnum::Ip)
                    .set_health_check_path(hc["path"].as_str().map(str::to_string))
                    .set_health_check_interval_seconds(int("intervalSeconds"))
                    .set_health_check_timeout_seconds(int("timeoutSeconds"))
                    .set_healthy_threshold_count(int("healthyThreshold"))
                    .set_unhealthy_threshold_count(int("unhealthyThreshold"))
                    .set_tags(Some(Self::tags(r)))
                    .send()
                    .await
                    .map_err(|e| failed("CreateTargetGroup", e))?;
                out.target_groups()
                    .first()
                    .cloned()
                    .ok_or_else(|| DriverError::Retryable("AWS CreateTargetGroup returned nothing".into()))?
            }
        };
        let have = self.listeners(arn).await?;
        let want = p.value("listeners").as_array().cloned().unwrap_or_default();
        let port = |v: &Value| v["port"].as_i64().and_then(|n| i32::try_from(n).ok());
        // A listener on a port no longer wanted goes, with its rules.
        for l in &have {
            if !want.iter().any(|w| port(w) == l.port()) {
                elb.delete_listener()
                    .listener_arn(l.listener_arn().unwrap_or_default())
                    .send()
                    .await
                    .map_err(|e| failed("DeleteListener", e))?;
            }
        }
        for w in &want {
            let action = match w["redirectTo"].as_i64() {
                Some(port) => Action::builder()
                    .r#type(ActionTypeEnum::Redirect)
                    .redirect_config(
                        RedirectActionConfig::builder()
                            .protocol("HTTPS")
                            .port(port.to_string())
                            .status_code(RedirectActionStatusCodeEnum::Http301)
                            .build(),
                    )
                    .build(),
                None => Action::builder()
                    .r#type(ActionTypeEnum::Forward)
                    .target_group_arn(tg.target_group_arn().unwrap_or_default())
                    .build(),
            };
            let certificates = w["certificateArn"].as_str().map(|arn| {
                vec![aws_sdk_elasticloadbalancingv2::types::Certificate::builder().certificate_arn(arn).build()]
            });
            match have.iter().find(|l| l.port() == port(w)) {
                Some(l) if Self::listener_value(l) == *w => {}
                // Changed in place (a new TLS policy or certificate): deleting
                // it would take its rules — every route, previews' too — with it
                // (<https://docs.aws.amazon.com/elasticloadbalancing/latest/APIReference/API_ModifyListener.html>).
                Some(l) => {
                    elb.modify_listener()
                        .listener_arn(l.listener_arn().unwrap_or_default())
                        .set_protocol(w["protocol"].as_str().map(ProtocolEnum::from))
                        .set_ssl_policy(w["sslPolicy"].as_str().map(str::to_string))
                        .set_certificates(certificates)
                        .default_actions(action)
                        .send()
                        .await
                        .map_err(|e| failed("ModifyListener", e))?;
                }
                None => {
                    elb.create_listener()
                        .load_balancer_arn(arn)
                        .set_port(port(w))
                        .set_protocol(w["protocol"].as_str().map(ProtocolEnum::from))
                        .set_ssl_policy(w["sslPolicy"].as_str().map(str::to_string))
                        .set_certificates(certificates)
                        .default_actions(action)
                        .send()
                        .await
                        .map_err(|e| failed("CreateListener", e))?;
                }
            }
        }
        elb.add_tags()
            .resource_arns(arn)
            .set_tags(Some(Self::tags(r)))
            .send()
            .await
            .map_err(|e| failed("AddTags", e))?;
        Ok(Self::outputs(lb))
    }

    /// The node's view of a load balancer, given its tags and target group.
    async fn seen(
        &self,
        lb: &Lb,
        tags: &[aws_sdk_elasticloadbalancingv2::types::Tag],
        tg: Option<&TargetGroup>,
        r: &Resource,
    ) -> Result<Observation, DriverError> {
        let arn = lb.load_balancer_arn().unwrap_or_default();
        let p = Props::of(r);
        let attributes = self
            .0
            .elb
            .describe_load_balancer_attributes()
            .load_balancer_arn(arn)
            .send()
            .await
            .map_err(|e| failed("DescribeLoadBalancerAttributes", e))?;
        let listeners: Vec<Value> = self.listeners(arn).await?.iter().map(Self::listener_value).collect();
        let mut properties = json!({
            "name": lb.load_balancer_name(),
            "type": lb.r#type().map(|t| t.as_str()),
            "scheme": lb.scheme().map(|s| s.as_str()),
            "vpcId": lb.vpc_id(),
            "subnetIds": like(p.value("subnetIds"), lb.availability_zones().iter().filter_map(|z| z.subnet_id()).map(|s| json!(s)).collect()),
            "securityGroupIds": like(p.value("securityGroupIds"), lb.security_groups().iter().map(|s| json!(s)).collect()),
            "listeners": like(p.value("listeners"), listeners),
            "healthCheck": tg.map(Self::health_check),
            "tags": tags_value(tags.iter().filter_map(|t| Some((t.key()?, t.value()?)))),
        });
        for (field, key) in ATTRIBUTES {
            if let Some(a) = attributes.attributes().iter().find(|a| a.key() == Some(key)) {
                properties[field] = Self::attribute_value(field, a.value().unwrap_or_default());
            }
        }
        let ready = lb.state().and_then(|s| s.code()).is_some_and(|c| c.as_str() == "active");
        Ok(Observation::Present { properties, outputs: Self::outputs(lb), ready })
    }

    fn tags(r: &Resource) -> Vec<aws_sdk_elasticloadbalancingv2::types::Tag> {
        Props::of(r)
            .tags()
            .into_iter()
            .map(|(k, v)| aws_sdk_elasticloadbalancingv2::types::Tag::builder().key(k).value(v).build())
            .collect()
    }
}

#[async_trait]
impl Driver for LoadBalancer {
    async fn observe(&self, r: &Resource) -> Result<Observation, DriverError> {
        let Some(lb) = self.find(r).await? else { return Ok(Observation::Absent) };
        let arn = lb.load_balancer_arn().unwrap_or_default();
        let tags = self.0.elb.describe_tags().resource_arns(arn).send().await.map_err(|e| failed("DescribeTags", e))?;
        let tags: Vec<_> = tags.tag_descriptions().iter().flat_map(|d| d.tags()).cloned().collect();
        let tg = self.target_group(r).await?;
        self.seen(&lb, &tags, tg.as_ref(), r).await
    }

    /// Load balancers and target groups in one listing each, tags 20 load
    /// balancers a call; attributes and listeners are a call each per load
    /// balancer (the API has no batch form).
    async fn observe_all(&self, rs: &[Resource]) -> Vec<Result<Observation, DriverError>> {
        let elb = &self.0.elb;
        let mut lbs = Vec::new();
        let mut pages = elb.describe_load_balancers().into_paginator().items().send();
        while let Some(item) = pages.next().await {
            match item {
                Ok(lb) => lbs.push(lb),
                Err(e) => return super::every(rs, failed("DescribeLoadBalancers", e)),
            }
        }
        let mut groups = Vec::new();
        let mut pages = elb.describe_target_groups().into_paginator().items().send();
        while let Some(item) = pages.next().await {
            match item {
                Ok(tg) => groups.push(tg),
                Err(e) => return super::every(rs, failed("DescribeTargetGroups", e)),
            }
        }
        let wanted: Vec<&Lb> = lbs
            .iter()
            .filter(|lb| rs.iter().any(|r| Props::of(r).opt_str("name") == lb.load_balancer_name()))
            .collect();
        let arns: Vec<&str> = wanted.iter().filter_map(|lb| lb.load_balancer_arn()).collect();
        let tags = match super::elb_tags(elb, &arns).await {
            Ok(tags) => tags,
            Err(e) => return super::every(rs, e),
        };
        let mut out = Vec::new();
        for r in rs {
            let name = Props::of(r).opt_str("name");
            out.push(match wanted.iter().find(|lb| lb.load_balancer_name() == name) {
                None => Ok(Observation::Absent),
                Some(lb) => {
                    let tg = groups.iter().find(|g| g.target_group_name() == name);
                    let tags = tags.get(lb.load_balancer_arn().unwrap_or_default()).cloned().unwrap_or_default();
                    self.seen(lb, &tags, tg, r).await
                }
            });
        }
        out
    }

    async fn create(&self, r: &Resource) -> Result<Outputs, DriverError> {
        let p = Props::of(r);
        // CreateLoadBalancer is idempotent by name: a crashed create is adopted.
        let out = self
            .0
            .elb
            .create_load_balancer()
            .name(p.str("name")?)
            .r#type(LoadBalancerTypeEnum::from(p.str("type")?))
            .scheme(LoadBalancerSchemeEnum::from(p.str("scheme")?))
            .set_subnets(Some(p.strings("subnetIds")))
            .set_security_groups(Some(p.strings("securityGroupIds")))
            .set_tags(Some(Self::tags(r)))
            .send()
            .await
            .map_err(|e| failed("CreateLoadBalancer", e))?;
        let lb = out
            .load_balancers()
            .first()
            .cloned()
            .ok_or_else(|| DriverError::Retryable("AWS CreateLoadBalancer returned nothing".into()))?;
        self.configure(&lb, r).await
    }

    async fn update(&self, r: &Resource) -> Result<Outputs, DriverError> {
        let Some(lb) = self.find(r).await? else { return self.create(r).await };
        let p = Props::of(r);
        let arn = lb.load_balancer_arn().unwrap_or_default();
        let subnets: Vec<String> =
            lb.availability_zones().iter().filter_map(|z| z.subnet_id().map(str::to_string)).collect();
        let mut want = p.strings("subnetIds");
        want.sort();
        let mut have = subnets;
        have.sort();
        if want != have {
            self.0
                .elb
                .set_subnets()
                .load_balancer_arn(arn)
                .set_subnets(Some(want))
                .send()
                .await
                .map_err(|e| failed("SetSubnets", e))?;
        }
        let mut want = p.strings("securityGroupIds");
        want.sort();
        let mut have = lb.security_groups().to_vec();
        have.sort();
        if want != have {
            self.0
                .elb
                .set_security_groups()
                .load_balancer_arn(arn)
                .set_security_groups(Some(want))
                .send()
                .await
                .map_err(|e| failed("SetSecurityGroups", e))?;
        }
        self.configure(&lb, r).await
    }

    async fn delete(&self, r: &Resource) -> Result<(), DriverError> {
        if let Some(lb) = self.find(r).await? {
            let arn = lb.load_balancer_arn().unwrap_or_default();
            self.0.elb.delete_load_balancer().load_balancer_arn(arn).send().await.map_err(|e| match e {
                e if is_code(&e, &["OperationNotPermitted"]) => DriverError::Permanent(format!(
                    "{}: deletion protection is on (production environments keep their load balancer); turn it off in AWS first if this environment really goes",
                    r.id
                )),
                e => failed("DeleteLoadBalancer", e),
            })?;
            until_gone(|| async { Ok(self.find(r).await?.is_none()) }).await?;
        }
        if let Some(tg) = self.target_group(r).await? {
            self.0
                .elb
                .delete_target_group()
                .target_group_arn(tg.target_group_arn().unwrap_or_default())
                .send()
                .await
                .map_err(|e| match e {
                e if is_code(&e, &["ResourceInUse"]) => {
                    DriverError::Retryable(format!("{}: target group still in use", r.id))
                }
                e => failed("DeleteTargetGroup", e),
            })?;
        }
        Ok(())
    }
}

/// Kinds only in paved's state, whose outputs follow from their properties:
/// a link to another service (`aws.service-link`: host and port inside the
/// cluster) and a service's name (`aws.dns-name`: its host, else the load
/// balancer's, and URL; the record itself is `aws.dns-record`).
pub(crate) struct Recorded;

#[async_trait]
impl Driver for Recorded {
    async fn observe(&self, _: &Resource) -> Result<Observation, DriverError> {
        Ok(Observation::Absent)
    }

    async fn create(&self, r: &Resource) -> Result<Outputs, DriverError> {
        let p = Props::of(r);
        if let Some(port) = p.value("port").as_u64() {
            let host = p.str("host")?;
            let mut outputs = Outputs::from([
                ("host".to_string(), json!(host)),
                ("port".to_string(), json!(port)),
                ("url".to_string(), json!(format!("http://{host}:{port}"))),
            ]);
            // A Score `service-port` names it `hostname`.
            if let Some(hostname) = p.opt_str("hostname") {
                outputs.insert("hostname".to_string(), json!(hostname));
            }
            return Ok(outputs);
        }
        let host = p.opt_str("host").or(p.opt_str("loadBalancerDns")).unwrap_or_default();
        let scheme = p.opt_str("scheme").unwrap_or("https");
        Ok(Outputs::from([
            ("host".to_string(), json!(host)),
            ("url".to_string(), json!(format!("{scheme}://{host}/"))),
        ]))
    }

    async fn update(&self, r: &Resource) -> Result<Outputs, DriverError> {
        self.create(r).await
    }

    async fn delete(&self, _: &Resource) -> Result<(), DriverError> {
        Ok(())
    }

    fn has_external_state(&self) -> bool {
        false
    }
}
