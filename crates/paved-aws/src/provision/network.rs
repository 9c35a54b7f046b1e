//! EC2 networking: VPC, subnets, gateways, route tables, security groups,
//! flow logs. Every resource is created with its tags in the same call
//! (`TagSpecifications`), `Name` = the node's external name: a create that
//! crashed right after AWS answered is found again by that tag.

use super::props::{like, tags_value};
use super::{Props, Session, failed, is_code, until_gone};
use async_trait::async_trait;
use aws_sdk_ec2::types::{
    AttributeBooleanValue, ConnectivityType, DomainType, Filter, FlowLogsResourceType, IpPermission, IpRange,
    LogDestinationType, ResourceType, Tag, TagSpecification, TrafficType, UserIdGroupPair, VpcAttributeName,
};
use paved_engine::{Driver, DriverError, Observation, Outputs, Resource};
use serde_json::{Value, json};
use std::sync::Arc;

fn ec2_tags(r: &Resource, extra: &[(&str, &str)]) -> Vec<Tag> {
    let mut tags = Props::of(r).tags();
    tags.insert("Name".into(), r.external_name.clone());
    for (k, v) in extra {
        tags.insert(k.to_string(), v.to_string());
    }
    tags.into_iter().map(|(k, v)| Tag::builder().key(k).value(v).build()).collect()
}

fn tag_spec(kind: ResourceType, r: &Resource, extra: &[(&str, &str)]) -> TagSpecification {
    TagSpecification::builder().resource_type(kind).set_tags(Some(ec2_tags(r, extra))).build()
}

fn named(r: &Resource) -> Filter {
    filter("tag:Name", &r.external_name)
}

fn filter(name: &str, value: &str) -> Filter {
    Filter::builder().name(name).values(value).build()
}

/// Whether `tags` name this node's resource. Checked on every answer, not
/// only in the request's filter: an emulator (or an API) that ignores a
/// filter must never make paved adopt, or retag, another environment's resource.
fn ours(tags: &[Tag], r: &Resource) -> bool {
    tags.iter().any(|t| t.key() == Some("Name") && t.value() == Some(r.external_name.as_str()))
}

fn observed_tags(tags: &[Tag]) -> Value {
    tags_value(tags.iter().filter_map(|t| Some((t.key()?, t.value()?))))
}

fn tag(tags: &[Tag], key: &str) -> Option<String> {
    tags.iter().find(|t| t.key() == Some(key)).and_then(|t| t.value()).map(str::to_string)
}

fn id_output(id: &str) -> Outputs {
    Outputs::from([("id".to_string(), json!(id))])
}

/// The filters a sweep lists with: paved's resources of the environments
/// asked about (at most 200 values per filter, AWS's limit).
fn environment_filters(rs: &[Resource]) -> Vec<Vec<Filter>> {
    let mut envs: Vec<&str> = rs.iter().map(|r| r.environment.as_str()).collect();
    envs.sort();
    envs.dedup();
    envs.chunks(200)
        .map(|chunk| {
            vec![
                Filter::builder()
                    .name("tag:paved:environment")
                    .set_values(Some(chunk.iter().map(|e| e.to_string()).collect()))
                    .build(),
                filter("tag:paved:managed-by", "paved"),
            ]
        })
        .collect()
}

/// Every item a paginated EC2 describe call returns for a sweep's filters.
macro_rules! list_tagged {
    ($session:expr, $rs:expr, $op:ident, $set_filters:ident, $name:literal) => {{
        let mut out = Vec::new();
        let mut failure = None;
        'chunks: for filters in environment_filters($rs) {
            let mut pages = $session.ec2.$op().$set_filters(Some(filters)).into_paginator().items().send();
            while let Some(item) = pages.next().await {
                match item {
                    Ok(item) => out.push(item),
                    Err(e) => {
                        failure = Some(failed($name, e));
                        break 'chunks;
                    }
                }
            }
        }
        match failure {
            Some(e) => Err(e),
            None => Ok(out),
        }
    }};
}

/// Answers a sweep from one listing: each resource matched by its Name tag.
fn answer<T>(
    rs: &[Resource],
    listed: Result<Vec<T>, DriverError>,
    tags: impl Fn(&T) -> &[Tag],
    seen: impl Fn(&T, &Resource) -> Observation,
) -> Vec<Result<Observation, DriverError>> {
    match listed {
        Err(e) => super::every(rs, e),
        Ok(items) => rs
            .iter()
            .map(|r| Ok(items.iter().find(|i| ours(tags(i), r)).map_or(Observation::Absent, |i| seen(i, r))))
            .collect(),
    }
}

/// (Re)applies the node's tags: a removed or edited tag comes back.
async fn retag(s: &Session, id: &str, r: &Resource, extra: &[(&str, &str)]) -> Result<(), DriverError> {
    s.ec2
        .create_tags()
        .resources(id)
        .set_tags(Some(ec2_tags(r, extra)))
        .send()
        .await
        .map_err(|e| failed("CreateTags", e))?;
    Ok(())
}

fn present(properties: Value, outputs: Outputs, ready: bool) -> Observation {
    Observation::Present { properties, outputs, ready }
}

/// A deletion AWS refuses while something inside still goes away.
fn settling<E>(
    operation: &str,
    e: aws_sdk_ec2::error::SdkError<E, aws_sdk_ec2::config::http::HttpResponse>,
) -> DriverError
where
    E: aws_sdk_ec2::error::ProvideErrorMetadata + std::error::Error + 'static,
{
    if is_code(&e, &["DependencyViolation", "InvalidIPAddress.InUse", "AuthFailure.AddressInUse"]) {
        return DriverError::Retryable(format!("AWS {operation}: still in use by resources being deleted"));
    }
    failed(operation, e)
}

impl Session {
    /// The region's zones the account may use now: `available`, and of
    /// type `availability-zone` needing no opt-in (Local and Wavelength
    /// Zones are opt-in and carry no EKS or RDS). Which letters exist
    /// differs between accounts, hence the question
    /// (<https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_DescribeAvailabilityZones.html>).
    pub async fn availability_zones(&self) -> Result<Vec<String>, DriverError> {
        let out =
            self.ec2.describe_availability_zones().send().await.map_err(|e| failed("DescribeAvailabilityZones", e))?;
        let mut zones: Vec<String> = out
            .availability_zones()
            .iter()
            .filter(|z| z.state().is_some_and(|s| s.as_str() == "available"))
            .filter(|z| z.zone_type().is_none_or(|t| t == "availability-zone"))
            .filter(|z| z.opt_in_status().is_none_or(|o| o.as_str() == "opt-in-not-required"))
            .filter_map(|z| z.zone_name().map(str::to_string))
            .collect();
        zones.sort();
        Ok(zones)
    }
}

pub(crate) struct Vpc(pub(crate) Arc<Session>);

impl Vpc {
    async fn seen(&self, vpc: &aws_sdk_ec2::types::Vpc) -> Result<Observation, DriverError> {
        let id = vpc.vpc_id().unwrap_or_default();
        let properties = json!({
            "cidrBlock": vpc.cidr_block(),
            "enableDnsHostnames": self.attribute(id, VpcAttributeName::EnableDnsHostnames).await?,
            "enableDnsSupport": self.attribute(id, VpcAttributeName::EnableDnsSupport).await?,
            "tags": observed_tags(vpc.tags()),
        });
        let ready = vpc.state().is_some_and(|s| s.as_str() == "available");
        Ok(present(properties, id_output(id), ready))
    }

    async fn find(&self, r: &Resource) -> Result<Option<aws_sdk_ec2::types::Vpc>, DriverError> {
        let out = self.0.ec2.describe_vpcs().filters(named(r)).send().await.map_err(|e| failed("DescribeVpcs", e))?;
        Ok(out.vpcs().iter().find(|v| ours(v.tags(), r)).cloned())
    }

    async fn attribute(&self, id: &str, name: VpcAttributeName) -> Result<bool, DriverError> {
        let out = self
            .0
            .ec2
            .describe_vpc_attribute()
            .vpc_id(id)
            .attribute(name.clone())
            .send()
            .await
            .map_err(|e| failed("DescribeVpcAttribute", e))?;
        let v = match name {
            VpcAttributeName::EnableDnsHostnames => out.enable_dns_hostnames(),
            _ => out.enable_dns_support(),
        };
        Ok(v.and_then(AttributeBooleanValue::value).unwrap_or(false))
    }

    async fn configure(&self, id: &str, r: &Resource) -> Result<Outputs, DriverError> {
        let p = Props::of(r);
        // One attribute per call: the API refuses two.
        for (name, want) in [("hostnames", p.bool("enableDnsHostnames")), ("support", p.bool("enableDnsSupport"))] {
            let value = AttributeBooleanValue::builder().value(want).build();
            let call = self.0.ec2.modify_vpc_attribute().vpc_id(id);
            let call =
                if name == "hostnames" { call.enable_dns_hostnames(value) } else { call.enable_dns_support(value) };
            call.send().await.map_err(|e| failed("ModifyVpcAttribute", e))?;
        }
        Ok(id_output(id))
    }
}

#[async_trait]
impl Driver for Vpc {
    async fn observe(&self, r: &Resource) -> Result<Observation, DriverError> {
        let Some(vpc) = self.find(r).await? else { return Ok(Observation::Absent) };
        self.seen(&vpc).await
    }

    /// One listing for all VPCs; their DNS attributes are not in it (two
    /// calls per VPC: the API has no batch form).
    async fn observe_all(&self, rs: &[Resource]) -> Vec<Result<Observation, DriverError>> {
        let listed: Result<Vec<aws_sdk_ec2::types::Vpc>, DriverError> =
            list_tagged!(self.0, rs, describe_vpcs, set_filters, "DescribeVpcs");
        let mut out = Vec::new();
        for r in rs {
            out.push(match &listed {
                Err(e) => Err(e.clone()),
                Ok(vpcs) => match vpcs.iter().find(|v| ours(v.tags(), r)) {
                    Some(vpc) => self.seen(vpc).await,
                    None => Ok(Observation::Absent),
                },
            });
        }
        out
    }

    async fn create(&self, r: &Resource) -> Result<Outputs, DriverError> {
        let out = self
            .0
            .ec2
            .create_vpc()
            .cidr_block(Props::of(r).str("cidrBlock")?)
            .tag_specifications(tag_spec(ResourceType::Vpc, r, &[]))
            .send()
            .await
            .map_err(|e| failed("CreateVpc", e))?;
        let id = out.vpc().and_then(|v| v.vpc_id()).unwrap_or_default().to_string();
        self.configure(&id, r).await
    }

    async fn update(&self, r: &Resource) -> Result<Outputs, DriverError> {
        let Some(vpc) = self.find(r).await? else { return self.create(r).await };
        let id = vpc.vpc_id().unwrap_or_default();
        if vpc.cidr_block() != Props::of(r).opt_str("cidrBlock") {
            return Err(DriverError::Permanent(format!("{}: a VPC's address block cannot change", r.id)));
        }
        retag(&self.0, id, r, &[]).await?;
        self.configure(id, r).await
    }

    async fn delete(&self, r: &Resource) -> Result<(), DriverError> {
        let Some(vpc) = self.find(r).await? else { return Ok(()) };
        match self.0.ec2.delete_vpc().vpc_id(vpc.vpc_id().unwrap_or_default()).send().await {
            Ok(_) => Ok(()),
            Err(e) if is_code(&e, &["InvalidVpcID.NotFound"]) => Ok(()),
            Err(e) => Err(settling("DeleteVpc", e)),
        }
    }
}

pub(crate) struct Subnet(pub(crate) Arc<Session>);

impl Subnet {
    async fn find(&self, r: &Resource) -> Result<Option<aws_sdk_ec2::types::Subnet>, DriverError> {
        let out =
            self.0.ec2.describe_subnets().filters(named(r)).send().await.map_err(|e| failed("DescribeSubnets", e))?;
        Ok(out.subnets().iter().find(|v| ours(v.tags(), r)).cloned())
    }

    fn seen(subnet: &aws_sdk_ec2::types::Subnet, _: &Resource) -> Observation {
        let properties = json!({
            "vpcId": subnet.vpc_id(),
            "cidrBlock": subnet.cidr_block(),
            "availabilityZone": subnet.availability_zone(),
            "tier": tag(subnet.tags(), "paved:tier"),
            "mapPublicIpOnLaunch": subnet.map_public_ip_on_launch().unwrap_or(false),
            "tags": observed_tags(subnet.tags()),
        });
        let ready = subnet.state().is_some_and(|s| s.as_str() == "available");
        present(properties, id_output(subnet.subnet_id().unwrap_or_default()), ready)
    }

    async fn map_public_ip(&self, id: &str, r: &Resource) -> Result<(), DriverError> {
        self.0
            .ec2
            .modify_subnet_attribute()
            .subnet_id(id)
            .map_public_ip_on_launch(
                AttributeBooleanValue::builder().value(Props::of(r).bool("mapPublicIpOnLaunch")).build(),
            )
            .send()
            .await
            .map_err(|e| failed("ModifySubnetAttribute", e))?;
        Ok(())
    }
}

#[async_trait]
impl Driver for Subnet {
    async fn observe(&self, r: &Resource) -> Result<Observation, DriverError> {
        Ok(self.find(r).await?.map_or(Observation::Absent, |subnet| Self::seen(&subnet, r)))
    }

    async fn observe_all(&self, rs: &[Resource]) -> Vec<Result<Observation, DriverError>> {
        let listed = list_tagged!(self.0, rs, describe_subnets, set_filters, "DescribeSubnets");
        answer(rs, listed, |s| s.tags(), Self::seen)
    }

    async fn create(&self, r: &Resource) -> Result<Outputs, DriverError> {
        let p = Props::of(r);
        let out = self
            .0
            .ec2
            .create_subnet()
            .vpc_id(p.str("vpcId")?)
            .cidr_block(p.str("cidrBlock")?)
            .availability_zone(p.str("availabilityZone")?)
            .tag_specifications(tag_spec(ResourceType::Subnet, r, &[("paved:tier", p.str("tier")?)]))
            .send()
            .await
            .map_err(|e| failed("CreateSubnet", e))?;
        let id = out.subnet().and_then(|s| s.subnet_id()).unwrap_or_default().to_string();
        if p.bool("mapPublicIpOnLaunch") {
            self.map_public_ip(&id, r).await?;
        }
        Ok(id_output(&id))
    }

    async fn update(&self, r: &Resource) -> Result<Outputs, DriverError> {
        let Some(subnet) = self.find(r).await? else { return self.create(r).await };
        let id = subnet.subnet_id().unwrap_or_default();
        retag(&self.0, id, r, &[("paved:tier", Props::of(r).str("tier")?)]).await?;
        self.map_public_ip(id, r).await?;
        Ok(id_output(id))
    }

    async fn delete(&self, r: &Resource) -> Result<(), DriverError> {
        let Some(subnet) = self.find(r).await? else { return Ok(()) };
        match self.0.ec2.delete_subnet().subnet_id(subnet.subnet_id().unwrap_or_default()).send().await {
            Ok(_) => Ok(()),
            Err(e) if is_code(&e, &["InvalidSubnetID.NotFound"]) => Ok(()),
            Err(e) => Err(settling("DeleteSubnet", e)),
        }
    }
}

pub(crate) struct InternetGateway(pub(crate) Arc<Session>);

impl InternetGateway {
    async fn find(&self, r: &Resource) -> Result<Option<aws_sdk_ec2::types::InternetGateway>, DriverError> {
        let out = self
            .0
            .ec2
            .describe_internet_gateways()
            .filters(named(r))
            .send()
            .await
            .map_err(|e| failed("DescribeInternetGateways", e))?;
        Ok(out.internet_gateways().iter().find(|v| ours(v.tags(), r)).cloned())
    }

    fn seen(igw: &aws_sdk_ec2::types::InternetGateway, _: &Resource) -> Observation {
        let properties = json!({"vpcId": Self::attached(igw), "tags": observed_tags(igw.tags())});
        present(properties, id_output(igw.internet_gateway_id().unwrap_or_default()), true)
    }

    fn attached(igw: &aws_sdk_ec2::types::InternetGateway) -> Option<&str> {
        igw.attachments().iter().find_map(|a| a.vpc_id())
    }

    /// Attaches the gateway to the node's VPC (detaching it from another first).
    async fn attach(&self, igw: &aws_sdk_ec2::types::InternetGateway, r: &Resource) -> Result<Outputs, DriverError> {
        let id = igw.internet_gateway_id().unwrap_or_default();
        let want = Props::of(r).str("vpcId")?;
        match Self::attached(igw) {
            Some(vpc) if vpc == want => {}
            other => {
                if let Some(vpc) = other {
                    self.0
                        .ec2
                        .detach_internet_gateway()
                        .internet_gateway_id(id)
                        .vpc_id(vpc)
                        .send()
                        .await
                        .map_err(|e| failed("DetachInternetGateway", e))?;
                }
                self.0
                    .ec2
                    .attach_internet_gateway()
                    .internet_gateway_id(id)
                    .vpc_id(want)
                    .send()
                    .await
                    .map_err(|e| failed("AttachInternetGateway", e))?;
            }
        }
        Ok(id_output(id))
    }
}

#[async_trait]
impl Driver for InternetGateway {
    async fn observe(&self, r: &Resource) -> Result<Observation, DriverError> {
        Ok(self.find(r).await?.map_or(Observation::Absent, |igw| Self::seen(&igw, r)))
    }

    async fn observe_all(&self, rs: &[Resource]) -> Vec<Result<Observation, DriverError>> {
        let listed = list_tagged!(self.0, rs, describe_internet_gateways, set_filters, "DescribeInternetGateways");
        answer(rs, listed, |i| i.tags(), Self::seen)
    }

    async fn create(&self, r: &Resource) -> Result<Outputs, DriverError> {
        let out = self
            .0
            .ec2
            .create_internet_gateway()
            .tag_specifications(tag_spec(ResourceType::InternetGateway, r, &[]))
            .send()
            .await
            .map_err(|e| failed("CreateInternetGateway", e))?;
        let igw =
            out.internet_gateway().cloned().unwrap_or_else(|| aws_sdk_ec2::types::InternetGateway::builder().build());
        self.attach(&igw, r).await
    }

    async fn update(&self, r: &Resource) -> Result<Outputs, DriverError> {
        let Some(igw) = self.find(r).await? else { return self.create(r).await };
        retag(&self.0, igw.internet_gateway_id().unwrap_or_default(), r, &[]).await?;
        self.attach(&igw, r).await
    }

    async fn delete(&self, r: &Resource) -> Result<(), DriverError> {
        let Some(igw) = self.find(r).await? else { return Ok(()) };
        let id = igw.internet_gateway_id().unwrap_or_default();
        if let Some(vpc) = Self::attached(&igw) {
            self.0
                .ec2
                .detach_internet_gateway()
                .internet_gateway_id(id)
                .vpc_id(vpc)
                .send()
                .await
                .map_err(|e| settling("DetachInternetGateway", e))?;
        }
        self.0
            .ec2
            .delete_internet_gateway()
            .internet_gateway_id(id)
            .send()
            .await
            .map_err(|e| settling("DeleteInternetGateway", e))?;
        Ok(())
    }
}

pub(crate) struct ElasticIp(pub(crate) Arc<Session>);

impl ElasticIp {
    async fn find(&self, r: &Resource) -> Result<Option<aws_sdk_ec2::types::Address>, DriverError> {
        let out = self
            .0
            .ec2
            .describe_addresses()
            .filters(named(r))
            .send()
            .await
            .map_err(|e| failed("DescribeAddresses", e))?;
        Ok(out.addresses().iter().find(|v| ours(v.tags(), r)).cloned())
    }

    fn seen(a: &aws_sdk_ec2::types::Address, _: &Resource) -> Observation {
        let properties = json!({"domain": a.domain().map(|d| d.as_str()), "tags": observed_tags(a.tags())});
        present(properties, Self::outputs(a), true)
    }

    fn outputs(a: &aws_sdk_ec2::types::Address) -> Outputs {
        Outputs::from([
            ("allocationId".to_string(), json!(a.allocation_id())),
            ("publicIp".to_string(), json!(a.public_ip())),
        ])
    }
}

#[async_trait]
impl Driver for ElasticIp {
    async fn observe(&self, r: &Resource) -> Result<Observation, DriverError> {
        Ok(self.find(r).await?.map_or(Observation::Absent, |a| Self::seen(&a, r)))
    }

    /// DescribeAddresses has no pages: one call per 200 environments.
    async fn observe_all(&self, rs: &[Resource]) -> Vec<Result<Observation, DriverError>> {
        let mut listed = Ok(Vec::new());
        for filters in environment_filters(rs) {
            match self.0.ec2.describe_addresses().set_filters(Some(filters)).send().await {
                Ok(out) => {
                    if let Ok(all) = listed.as_mut() {
                        all.extend(out.addresses().iter().cloned());
                    }
                }
                Err(e) => listed = Err(failed("DescribeAddresses", e)),
            }
        }
        answer(rs, listed, |a| a.tags(), Self::seen)
    }

    async fn create(&self, r: &Resource) -> Result<Outputs, DriverError> {
        let out = self
            .0
            .ec2
            .allocate_address()
            .domain(DomainType::Vpc)
            .tag_specifications(tag_spec(ResourceType::ElasticIp, r, &[]))
            .send()
            .await
            .map_err(|e| failed("AllocateAddress", e))?;
        Ok(Outputs::from([
            ("allocationId".to_string(), json!(out.allocation_id())),
            ("publicIp".to_string(), json!(out.public_ip())),
        ]))
    }

    async fn update(&self, r: &Resource) -> Result<Outputs, DriverError> {
        let Some(a) = self.find(r).await? else { return self.create(r).await };
        retag(&self.0, a.allocation_id().unwrap_or_default(), r, &[]).await?;
        Ok(Self::outputs(&a))
    }

    async fn delete(&self, r: &Resource) -> Result<(), DriverError> {
        let Some(a) = self.find(r).await? else { return Ok(()) };
        self.0
            .ec2
            .release_address()
            .allocation_id(a.allocation_id().unwrap_or_default())
            .send()
            .await
            .map_err(|e| settling("ReleaseAddress", e))?;
        Ok(())
    }
}

pub(crate) struct NatGateway(pub(crate) Arc<Session>);

impl NatGateway {
    fn live(nat: &aws_sdk_ec2::types::NatGateway) -> bool {
        nat.state().is_some_and(|s| !matches!(s.as_str(), "deleted" | "deleting" | "failed"))
    }

    fn seen(nat: &aws_sdk_ec2::types::NatGateway, _: &Resource) -> Observation {
        let properties = json!({
            "subnetId": nat.subnet_id(),
            "allocationId": nat.nat_gateway_addresses().iter().find_map(|a| a.allocation_id()),
            "connectivity": nat.connectivity_type().map(|c| c.as_str()),
            "tags": observed_tags(nat.tags()),
        });
        let ready = nat.state().is_some_and(|s| s.as_str() == "available");
        present(properties, id_output(nat.nat_gateway_id().unwrap_or_default()), ready)
    }

    /// The live gateway (a deleted one stays listed for an hour).
    async fn find(&self, r: &Resource) -> Result<Option<aws_sdk_ec2::types::NatGateway>, DriverError> {
        let out = self
            .0
            .ec2
            .describe_nat_gateways()
            .filter(named(r))
            .send()
            .await
            .map_err(|e| failed("DescribeNatGateways", e))?;
        Ok(out.nat_gateways().iter().find(|n| ours(n.tags(), r) && Self::live(n)).cloned())
    }
}

#[async_trait]
impl Driver for NatGateway {
    async fn observe(&self, r: &Resource) -> Result<Observation, DriverError> {
        Ok(self.find(r).await?.map_or(Observation::Absent, |nat| Self::seen(&nat, r)))
    }

    async fn observe_all(&self, rs: &[Resource]) -> Vec<Result<Observation, DriverError>> {
        let listed: Result<Vec<_>, _> =
            list_tagged!(self.0, rs, describe_nat_gateways, set_filter, "DescribeNatGateways");
        let live = listed.map(|all| all.into_iter().filter(Self::live).collect());
        answer(rs, live, |n| n.tags(), Self::seen)
    }

    async fn create(&self, r: &Resource) -> Result<Outputs, DriverError> {
        let p = Props::of(r);
        let out = self
            .0
            .ec2
            .create_nat_gateway()
            .client_token(self.0.client_token(r))
            .subnet_id(p.str("subnetId")?)
            .allocation_id(p.str("allocationId")?)
            .connectivity_type(ConnectivityType::from(p.str("connectivity")?))
            .tag_specifications(tag_spec(ResourceType::Natgateway, r, &[]))
            .send()
            .await
            .map_err(|e| failed("CreateNatGateway", e))?;
        // A gateway that failed stays `failed` (listed for an hour, then
        // gone): the same run's retry gets it back for its client token, and
        // says why at once instead of waiting for readiness until the timeout
        // (<https://docs.aws.amazon.com/vpc/latest/userguide/nat-gateway-troubleshooting.html>).
        if let Some(nat) = out.nat_gateway().filter(|n| n.state().is_some_and(|s| s.as_str() == "failed")) {
            return Err(DriverError::Permanent(format!(
                "{}: AWS reports NAT gateway {} failed ({}: {}); fix that and apply again",
                r.id,
                nat.nat_gateway_id().unwrap_or("-"),
                nat.failure_code().unwrap_or("-"),
                nat.failure_message().unwrap_or("no message")
            )));
        }
        Ok(id_output(out.nat_gateway().and_then(|n| n.nat_gateway_id()).unwrap_or_default()))
    }

    async fn update(&self, r: &Resource) -> Result<Outputs, DriverError> {
        let Some(nat) = self.find(r).await? else { return self.create(r).await };
        let id = nat.nat_gateway_id().unwrap_or_default();
        retag(&self.0, id, r, &[]).await?;
        Ok(id_output(id))
    }

    /// Returns once the gateway is gone: its address and subnet are freed only then.
    async fn delete(&self, r: &Resource) -> Result<(), DriverError> {
        let Some(nat) = self.find(r).await? else { return Ok(()) };
        let id = nat.nat_gateway_id().unwrap_or_default();
        if nat.state().is_some_and(|s| s.as_str() != "deleting") {
            self.0
                .ec2
                .delete_nat_gateway()
                .nat_gateway_id(id)
                .send()
                .await
                .map_err(|e| failed("DeleteNatGateway", e))?;
        }
        until_gone(|| async { Ok(self.find(r).await?.is_none()) }).await
    }
}

pub(crate) struct RouteTable(pub(crate) Arc<Session>);

/// A route as the node states it.
fn route_value(route: &aws_sdk_ec2::types::Route) -> Option<Value> {
    let destination = route.destination_cidr_block()?;
    if let Some(nat) = route.nat_gateway_id() {
        return Some(json!({"destination": destination, "natGatewayId": nat}));
    }
    match route.gateway_id() {
        Some("local") | None => None,
        Some(igw) => Some(json!({"destination": destination, "internetGatewayId": igw})),
    }
}

impl RouteTable {
    async fn find(&self, r: &Resource) -> Result<Option<aws_sdk_ec2::types::RouteTable>, DriverError> {
        let out = self
            .0
            .ec2
            .describe_route_tables()
            .filters(named(r))
            .send()
            .await
            .map_err(|e| failed("DescribeRouteTables", e))?;
        Ok(out.route_tables().iter().find(|v| ours(v.tags(), r)).cloned())
    }

    fn seen(table: &aws_sdk_ec2::types::RouteTable, r: &Resource) -> Observation {
        let p = Props::of(r);
        let properties = json!({
            "vpcId": table.vpc_id(),
            "routes": like(p.value("routes"), table.routes().iter().filter_map(route_value).collect()),
            "subnetIds": like(p.value("subnetIds"), Self::subnets(table)),
            "tags": observed_tags(table.tags()),
        });
        present(properties, id_output(table.route_table_id().unwrap_or_default()), true)
    }

    fn subnets(table: &aws_sdk_ec2::types::RouteTable) -> Vec<Value> {
        table
            .associations()
            .iter()
            .filter(|a| a.main() != Some(true))
            .filter_map(|a| a.subnet_id())
            .map(|s| json!(s))
            .collect()
    }

    /// Brings routes and subnet associations to the node's.
    async fn converge(&self, table: &aws_sdk_ec2::types::RouteTable, r: &Resource) -> Result<Outputs, DriverError> {
        let ec2 = &self.0.ec2;
        let id = table.route_table_id().unwrap_or_default();
        let p = Props::of(r);
        let want: Vec<Value> = p.value("routes").as_array().cloned().unwrap_or_default();
        let have: Vec<Value> = table.routes().iter().filter_map(route_value).collect();
        let destination = |v: &Value| v["destination"].as_str().unwrap_or_default().to_string();
        for route in have.iter().filter(|h| !want.iter().any(|w| destination(w) == destination(h))) {
            ec2.delete_route()
                .route_table_id(id)
                .destination_cidr_block(destination(route))
                .send()
                .await
                .map_err(|e| failed("DeleteRoute", e))?;
        }
        for route in want.iter().filter(|w| !have.contains(w)) {
            let exists = have.iter().any(|h| destination(h) == destination(route));
            let (igw, nat) = (route["internetGatewayId"].as_str(), route["natGatewayId"].as_str());
            if exists {
                ec2.replace_route()
                    .route_table_id(id)
                    .destination_cidr_block(destination(route))
                    .set_gateway_id(igw.map(str::to_string))
                    .set_nat_gateway_id(nat.map(str::to_string))
                    .send()
                    .await
                    .map_err(|e| failed("ReplaceRoute", e))?;
            } else {
                ec2.create_route()
                    .route_table_id(id)
                    .destination_cidr_block(destination(route))
                    .set_gateway_id(igw.map(str::to_string))
                    .set_nat_gateway_id(nat.map(str::to_string))
                    .send()
                    .await
                    .map_err(|e| failed("CreateRoute", e))?;
            }
        }
        let want_subnets = p.strings("subnetIds");
        for a in table.associations().iter().filter(|a| a.main() != Some(true)) {
            if a.subnet_id().is_some_and(|s| !want_subnets.iter().any(|w| w == s)) {
                ec2.disassociate_route_table()
                    .association_id(a.route_table_association_id().unwrap_or_default())
                    .send()
                    .await
                    .map_err(|e| failed("DisassociateRouteTable", e))?;
            }
        }
        let have_subnets = Self::subnets(table);
        for subnet in want_subnets.iter().filter(|s| !have_subnets.contains(&json!(s))) {
            ec2.associate_route_table()
                .route_table_id(id)
                .subnet_id(subnet)
                .send()
                .await
                .map_err(|e| failed("AssociateRouteTable", e))?;
        }
        Ok(id_output(id))
    }
}

#[async_trait]
impl Driver for RouteTable {
    async fn observe(&self, r: &Resource) -> Result<Observation, DriverError> {
        Ok(self.find(r).await?.map_or(Observation::Absent, |table| Self::seen(&table, r)))
    }

    async fn observe_all(&self, rs: &[Resource]) -> Vec<Result<Observation, DriverError>> {
        let listed = list_tagged!(self.0, rs, describe_route_tables, set_filters, "DescribeRouteTables");
        answer(rs, listed, |t| t.tags(), Self::seen)
    }

    async fn create(&self, r: &Resource) -> Result<Outputs, DriverError> {
        let out = self
            .0
            .ec2
            .create_route_table()
            .client_token(self.0.client_token(r))
            .vpc_id(Props::of(r).str("vpcId")?)
            .tag_specifications(tag_spec(ResourceType::RouteTable, r, &[]))
            .send()
            .await
            .map_err(|e| failed("CreateRouteTable", e))?;
        let table = out.route_table().cloned().unwrap_or_else(|| aws_sdk_ec2::types::RouteTable::builder().build());
        self.converge(&table, r).await
    }

    async fn update(&self, r: &Resource) -> Result<Outputs, DriverError> {
        let Some(table) = self.find(r).await? else { return self.create(r).await };
        retag(&self.0, table.route_table_id().unwrap_or_default(), r, &[]).await?;
        self.converge(&table, r).await
    }

    async fn delete(&self, r: &Resource) -> Result<(), DriverError> {
        let Some(table) = self.find(r).await? else { return Ok(()) };
        for a in table.associations().iter().filter(|a| a.main() != Some(true)) {
            self.0
                .ec2
                .disassociate_route_table()
                .association_id(a.route_table_association_id().unwrap_or_default())
                .send()
                .await
                .map_err(|e| failed("DisassociateRouteTable", e))?;
        }
        self.0
            .ec2
            .delete_route_table()
            .route_table_id(table.route_table_id().unwrap_or_default())
            .send()
            .await
            .map_err(|e| settling("DeleteRouteTable", e))?;
        Ok(())
    }
}

/// One rule, whichever way it is written: (protocol, from, to, peer).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Rule {
    protocol: String,
    from: i32,
    to: i32,
    /// `cidr:…` or `sg:…`.
    peer: String,
}

impl Rule {
    fn of(v: &Value) -> Option<Rule> {
        let port = |k: &str| v.get(k).and_then(Value::as_i64).and_then(|n| i32::try_from(n).ok());
        let (from, to) = match port("port") {
            Some(p) => (p, p),
            None => (port("fromPort")?, port("toPort")?),
        };
        let peer = match (v["cidr"].as_str(), v["sourceSecurityGroupId"].as_str()) {
            (Some(c), _) => format!("cidr:{c}"),
            (None, Some(g)) => format!("sg:{g}"),
            _ => return None,
        };
        Some(Rule { protocol: v["protocol"].as_str()?.to_string(), from, to, peer })
    }

    fn of_permissions(permissions: &[IpPermission]) -> Vec<Rule> {
        let mut out = Vec::new();
        for p in permissions {
            let (protocol, from, to) =
                (p.ip_protocol().unwrap_or("-1").to_string(), p.from_port().unwrap_or(-1), p.to_port().unwrap_or(-1));
            for range in p.ip_ranges() {
                let peer = format!("cidr:{}", range.cidr_ip().unwrap_or_default());
                out.push(Rule { protocol: protocol.clone(), from, to, peer });
            }
            for pair in p.user_id_group_pairs() {
                let peer = format!("sg:{}", pair.group_id().unwrap_or_default());
                out.push(Rule { protocol: protocol.clone(), from, to, peer });
            }
        }
        out
    }

    /// As the node would write it: the node's own spelling when it has this rule.
    fn value(&self, desired: &Value) -> Value {
        if let Some(v) = desired.as_array().into_iter().flatten().find(|v| Rule::of(v).as_ref() == Some(self)) {
            return v.clone();
        }
        let mut v = json!({"protocol": self.protocol, "fromPort": self.from, "toPort": self.to});
        match self.peer.split_once(':') {
            Some(("cidr", c)) => v["cidr"] = json!(c),
            Some((_, g)) => v["sourceSecurityGroupId"] = json!(g),
            None => {}
        }
        v
    }

    fn permission(&self) -> IpPermission {
        let b = IpPermission::builder().ip_protocol(&self.protocol).from_port(self.from).to_port(self.to);
        match self.peer.split_once(':') {
            Some(("cidr", c)) => b.ip_ranges(IpRange::builder().cidr_ip(c).build()),
            Some((_, g)) => b.user_id_group_pairs(UserIdGroupPair::builder().group_id(g).build()),
            None => b,
        }
        .build()
    }
}

fn desired_rules(v: &Value) -> Vec<Rule> {
    v.as_array().into_iter().flatten().filter_map(Rule::of).collect()
}

/// Brings a group's rules to exactly the node's: extra rules (a console
/// edit, AWS's default allow-all egress) are revoked, missing ones added.
async fn converge_rules(
    s: &Session,
    group: &aws_sdk_ec2::types::SecurityGroup,
    r: &Resource,
) -> Result<(), DriverError> {
    let id = group.group_id().unwrap_or_default();
    let p = Props::of(r);
    for ingress in [true, false] {
        let (want, have) = if ingress {
            (desired_rules(p.value("ingress")), Rule::of_permissions(group.ip_permissions()))
        } else {
            (desired_rules(p.value("egress")), Rule::of_permissions(group.ip_permissions_egress()))
        };
        let extra: Vec<IpPermission> = have.iter().filter(|h| !want.contains(h)).map(Rule::permission).collect();
        let missing: Vec<IpPermission> = want.iter().filter(|w| !have.contains(w)).map(Rule::permission).collect();
        match (ingress, extra.is_empty()) {
            (_, true) => {}
            (true, false) => {
                s.ec2
                    .revoke_security_group_ingress()
                    .group_id(id)
                    .set_ip_permissions(Some(extra))
                    .send()
                    .await
                    .map_err(|e| failed("RevokeSecurityGroupIngress", e))?;
            }
            (false, false) => {
                s.ec2
                    .revoke_security_group_egress()
                    .group_id(id)
                    .set_ip_permissions(Some(extra))
                    .send()
                    .await
                    .map_err(|e| failed("RevokeSecurityGroupEgress", e))?;
            }
        }
        match (ingress, missing.is_empty()) {
            (_, true) => {}
            (true, false) => {
                s.ec2
                    .authorize_security_group_ingress()
                    .group_id(id)
                    .set_ip_permissions(Some(missing))
                    .send()
                    .await
                    .map_err(|e| failed("AuthorizeSecurityGroupIngress", e))?;
            }
            (false, false) => {
                s.ec2
                    .authorize_security_group_egress()
                    .group_id(id)
                    .set_ip_permissions(Some(missing))
                    .send()
                    .await
                    .map_err(|e| failed("AuthorizeSecurityGroupEgress", e))?;
            }
        }
    }
    Ok(())
}

fn group_properties(g: &aws_sdk_ec2::types::SecurityGroup, r: &Resource, description: bool) -> Value {
    let p = Props::of(r);
    let rules = |desired: &Value, have: &[IpPermission]| {
        like(desired, Rule::of_permissions(have).iter().map(|rule| rule.value(desired)).collect())
    };
    let mut v = json!({
        "vpcId": g.vpc_id(),
        "ingress": rules(p.value("ingress"), g.ip_permissions()),
        "egress": rules(p.value("egress"), g.ip_permissions_egress()),
        "tags": observed_tags(g.tags()),
    });
    if description {
        v["description"] = json!(g.description());
    }
    v
}

pub(crate) struct SecurityGroup(pub(crate) Arc<Session>);

impl SecurityGroup {
    async fn find(&self, r: &Resource) -> Result<Option<aws_sdk_ec2::types::SecurityGroup>, DriverError> {
        let out = self
            .0
            .ec2
            .describe_security_groups()
            .filters(named(r))
            .send()
            .await
            .map_err(|e| failed("DescribeSecurityGroups", e))?;
        Ok(out.security_groups().iter().find(|g| ours(g.tags(), r)).cloned())
    }

    fn seen(g: &aws_sdk_ec2::types::SecurityGroup, r: &Resource) -> Observation {
        present(group_properties(g, r, true), id_output(g.group_id().unwrap_or_default()), true)
    }

    async fn found(&self, r: &Resource) -> Result<aws_sdk_ec2::types::SecurityGroup, DriverError> {
        self.find(r).await?.ok_or_else(|| DriverError::Retryable(format!("{}: security group not visible yet", r.id)))
    }
}

#[async_trait]
impl Driver for SecurityGroup {
    async fn observe(&self, r: &Resource) -> Result<Observation, DriverError> {
        Ok(self.find(r).await?.map_or(Observation::Absent, |g| Self::seen(&g, r)))
    }

    async fn observe_all(&self, rs: &[Resource]) -> Vec<Result<Observation, DriverError>> {
        let listed = list_tagged!(self.0, rs, describe_security_groups, set_filters, "DescribeSecurityGroups");
        answer(rs, listed, |g| g.tags(), Self::seen)
    }

    async fn create(&self, r: &Resource) -> Result<Outputs, DriverError> {
        let p = Props::of(r);
        self.0
            .ec2
            .create_security_group()
            .group_name(&r.external_name)
            .description(p.str("description")?)
            .vpc_id(p.str("vpcId")?)
            .tag_specifications(tag_spec(ResourceType::SecurityGroup, r, &[]))
            .send()
            .await
            .map_err(|e| failed("CreateSecurityGroup", e))?;
        let group = self.found(r).await?;
        converge_rules(&self.0, &group, r).await?;
        Ok(id_output(group.group_id().unwrap_or_default()))
    }

    async fn update(&self, r: &Resource) -> Result<Outputs, DriverError> {
        let Some(group) = self.find(r).await? else { return self.create(r).await };
        let id = group.group_id().unwrap_or_default();
        retag(&self.0, id, r, &[]).await?;
        converge_rules(&self.0, &group, r).await?;
        Ok(id_output(id))
    }

    async fn delete(&self, r: &Resource) -> Result<(), DriverError> {
        let Some(group) = self.find(r).await? else { return Ok(()) };
        match self.0.ec2.delete_security_group().group_id(group.group_id().unwrap_or_default()).send().await {
            Ok(_) => Ok(()),
            Err(e) if is_code(&e, &["InvalidGroup.NotFound"]) => Ok(()),
            Err(e) => Err(settling("DeleteSecurityGroup", e)),
        }
    }
}

/// The VPC's default group, emptied: it exists as long as the VPC does, so
/// "create" takes it over and "delete" leaves it to the VPC.
pub(crate) struct DefaultSecurityGroup(pub(crate) Arc<Session>);

impl DefaultSecurityGroup {
    async fn find(&self, r: &Resource) -> Result<Option<aws_sdk_ec2::types::SecurityGroup>, DriverError> {
        let out = self
            .0
            .ec2
            .describe_security_groups()
            .filters(filter("vpc-id", Props::of(r).str("vpcId")?))
            .filters(filter("group-name", "default"))
            .send()
            .await
            .map_err(|e| failed("DescribeSecurityGroups", e))?;
        let vpc = Props::of(r).str("vpcId")?;
        Ok(out.security_groups().iter().find(|g| g.vpc_id() == Some(vpc) && g.group_name() == Some("default")).cloned())
    }
}

#[async_trait]
impl Driver for DefaultSecurityGroup {
    async fn observe(&self, r: &Resource) -> Result<Observation, DriverError> {
        let Some(g) = self.find(r).await? else { return Ok(Observation::Absent) };
        Ok(present(group_properties(&g, r, false), id_output(g.group_id().unwrap_or_default()), true))
    }

    /// The default groups of the sweep's VPCs, listed by VPC id.
    async fn observe_all(&self, rs: &[Resource]) -> Vec<Result<Observation, DriverError>> {
        let vpcs: Vec<String> = rs.iter().filter_map(|r| Props::of(r).opt_str("vpcId").map(str::to_string)).collect();
        let mut listed: Result<Vec<aws_sdk_ec2::types::SecurityGroup>, DriverError> = Ok(Vec::new());
        for chunk in vpcs.chunks(200) {
            let mut pages = self
                .0
                .ec2
                .describe_security_groups()
                .filters(Filter::builder().name("vpc-id").set_values(Some(chunk.to_vec())).build())
                .filters(filter("group-name", "default"))
                .into_paginator()
                .items()
                .send();
            while let Some(item) = pages.next().await {
                match (item, listed.as_mut()) {
                    (Ok(g), Ok(all)) => all.push(g),
                    (Err(e), _) => listed = Err(failed("DescribeSecurityGroups", e)),
                    _ => {}
                }
            }
        }
        match listed {
            Err(e) => super::every(rs, e),
            Ok(groups) => rs
                .iter()
                .map(|r| {
                    let vpc = Props::of(r).opt_str("vpcId");
                    Ok(groups
                        .iter()
                        .find(|g| g.vpc_id() == vpc && g.group_name() == Some("default"))
                        .map_or(Observation::Absent, |g| {
                            present(group_properties(g, r, false), id_output(g.group_id().unwrap_or_default()), true)
                        }))
                })
                .collect(),
        }
    }

    async fn create(&self, r: &Resource) -> Result<Outputs, DriverError> {
        self.update(r).await
    }

    async fn update(&self, r: &Resource) -> Result<Outputs, DriverError> {
        let group = self
            .find(r)
            .await?
            .ok_or_else(|| DriverError::Retryable(format!("{}: the VPC's default group is not visible yet", r.id)))?;
        let id = group.group_id().unwrap_or_default();
        retag(&self.0, id, r, &[]).await?;
        converge_rules(&self.0, &group, r).await?;
        Ok(id_output(id))
    }

    async fn delete(&self, _: &Resource) -> Result<(), DriverError> {
        Ok(())
    }
}

pub(crate) struct FlowLog(pub(crate) Arc<Session>);

impl FlowLog {
    fn seen(f: &aws_sdk_ec2::types::FlowLog, _: &Resource) -> Observation {
        let properties = json!({
            "vpcId": f.resource_id(),
            "trafficType": f.traffic_type().map(|t| t.as_str()),
            "logGroupArn": f.log_destination(),
            "iamRoleArn": f.deliver_logs_permission_arn(),
            "tags": observed_tags(f.tags()),
        });
        present(properties, id_output(f.flow_log_id().unwrap_or_default()), true)
    }

    async fn find(&self, r: &Resource) -> Result<Option<aws_sdk_ec2::types::FlowLog>, DriverError> {
        let out = self
            .0
            .ec2
            .describe_flow_logs()
            .filter(filter("resource-id", Props::of(r).str("vpcId")?))
            .send()
            .await
            .map_err(|e| failed("DescribeFlowLogs", e))?;
        Ok(out.flow_logs().iter().find(|f| ours(f.tags(), r)).cloned())
    }
}

#[async_trait]
impl Driver for FlowLog {
    async fn observe(&self, r: &Resource) -> Result<Observation, DriverError> {
        Ok(self.find(r).await?.map_or(Observation::Absent, |f| Self::seen(&f, r)))
    }

    async fn observe_all(&self, rs: &[Resource]) -> Vec<Result<Observation, DriverError>> {
        let listed = list_tagged!(self.0, rs, describe_flow_logs, set_filter, "DescribeFlowLogs");
        answer(rs, listed, |f| f.tags(), Self::seen)
    }

    async fn create(&self, r: &Resource) -> Result<Outputs, DriverError> {
        let p = Props::of(r);
        let out = self
            .0
            .ec2
            .create_flow_logs()
            .client_token(self.0.client_token(r))
            .resource_ids(p.str("vpcId")?)
            .resource_type(FlowLogsResourceType::Vpc)
            .traffic_type(TrafficType::from(p.str("trafficType")?))
            .log_destination_type(LogDestinationType::CloudWatchLogs)
            .log_destination(p.str("logGroupArn")?)
            .deliver_logs_permission_arn(p.str("iamRoleArn")?)
            .tag_specifications(tag_spec(ResourceType::VpcFlowLog, r, &[]))
            .send()
            .await
            .map_err(|e| failed("CreateFlowLogs", e))?;
        if let Some(problem) = out.unsuccessful().first() {
            let reason = problem.error().and_then(|e| e.message()).unwrap_or("refused");
            return Err(DriverError::Permanent(format!("AWS CreateFlowLogs: {reason}")));
        }
        Ok(id_output(out.flow_log_ids().first().map(String::as_str).unwrap_or_default()))
    }

    /// A flow log cannot be changed: it is replaced.
    async fn update(&self, r: &Resource) -> Result<Outputs, DriverError> {
        if let Some(f) = self.find(r).await? {
            let same = Some(Props::of(r).str("logGroupArn")?) == f.log_destination()
                && Props::of(r).opt_str("iamRoleArn") == f.deliver_logs_permission_arn()
                && Props::of(r).opt_str("trafficType") == f.traffic_type().map(|t| t.as_str());
            if same {
                retag(&self.0, f.flow_log_id().unwrap_or_default(), r, &[]).await?;
                return Ok(id_output(f.flow_log_id().unwrap_or_default()));
            }
            self.delete(r).await?;
        }
        self.create(r).await
    }

    async fn delete(&self, r: &Resource) -> Result<(), DriverError> {
        let Some(f) = self.find(r).await? else { return Ok(()) };
        self.0
            .ec2
            .delete_flow_logs()
            .flow_log_ids(f.flow_log_id().unwrap_or_default())
            .send()
            .await
            .map_err(|e| failed("DeleteFlowLogs", e))?;
        Ok(())
    }
}

/// One ingress rule paved adds to a group it does not own (the cluster
/// security group EKS created, which its managed nodes and so the pods
/// carry): the load balancer's group may reach the pods. Only this rule is
/// observed, added and revoked; EKS's own rules are left alone
/// (<https://docs.aws.amazon.com/eks/latest/userguide/sec-group-reqs.html>).
pub(crate) struct SecurityGroupIngress(pub(crate) Arc<Session>);

impl SecurityGroupIngress {
    fn rule(r: &Resource) -> Result<Rule, DriverError> {
        Rule::of(&r.properties)
            .ok_or_else(|| DriverError::Permanent(format!("{}: the rule needs protocol, ports and a source", r.id)))
    }

    /// The group, if it exists, and whether it has the rule.
    async fn find(&self, r: &Resource) -> Result<Option<bool>, DriverError> {
        let group = Props::of(r).str("groupId")?;
        match self.0.ec2.describe_security_groups().group_ids(group).send().await {
            Ok(out) => Ok(out
                .security_groups()
                .first()
                .map(|g| Self::rule(r).is_ok_and(|rule| Rule::of_permissions(g.ip_permissions()).contains(&rule)))),
            Err(e) if is_code(&e, &["InvalidGroup.NotFound"]) => Ok(None),
            Err(e) => Err(failed("DescribeSecurityGroups", e)),
        }
    }
}

#[async_trait]
impl Driver for SecurityGroupIngress {
    async fn observe(&self, r: &Resource) -> Result<Observation, DriverError> {
        Ok(match self.find(r).await? {
            Some(true) => present(r.properties.clone(), Outputs::new(), true),
            _ => Observation::Absent,
        })
    }

    /// The sweep's groups in one listing, by a `group-id` filter of up to
    /// 200 values (a filter, not `GroupIds`: one missing group would fail
    /// the whole call with `InvalidGroup.NotFound`).
    async fn observe_all(&self, rs: &[Resource]) -> Vec<Result<Observation, DriverError>> {
        let mut ids: Vec<String> =
            rs.iter().filter_map(|r| Props::of(r).opt_str("groupId").map(str::to_string)).collect();
        ids.sort();
        ids.dedup();
        let mut groups = Vec::new();
        for chunk in ids.chunks(200) {
            let mut pages = self
                .0
                .ec2
                .describe_security_groups()
                .filters(Filter::builder().name("group-id").set_values(Some(chunk.to_vec())).build())
                .into_paginator()
                .items()
                .send();
            while let Some(item) = pages.next().await {
                match item {
                    Ok(g) => groups.push(g),
                    Err(e) => return super::every(rs, failed("DescribeSecurityGroups", e)),
                }
            }
        }
        rs.iter()
            .map(|r| {
                let group = Props::of(r).str("groupId")?;
                let has = groups.iter().find(|g| g.group_id() == Some(group)).is_some_and(|g| {
                    Self::rule(r).is_ok_and(|rule| Rule::of_permissions(g.ip_permissions()).contains(&rule))
                });
                Ok(if has { present(r.properties.clone(), Outputs::new(), true) } else { Observation::Absent })
            })
            .collect()
    }

    async fn create(&self, r: &Resource) -> Result<Outputs, DriverError> {
        let rule = Self::rule(r)?;
        match self
            .0
            .ec2
            .authorize_security_group_ingress()
            .group_id(Props::of(r).str("groupId")?)
            .ip_permissions(rule.permission())
            .send()
            .await
        {
            Ok(_) => Ok(Outputs::new()),
            Err(e) if is_code(&e, &["InvalidPermission.Duplicate"]) => Ok(Outputs::new()),
            Err(e) => Err(failed("AuthorizeSecurityGroupIngress", e)),
        }
    }

    async fn update(&self, r: &Resource) -> Result<Outputs, DriverError> {
        self.create(r).await
    }

    async fn delete(&self, r: &Resource) -> Result<(), DriverError> {
        if self.find(r).await? != Some(true) {
            return Ok(());
        }
        match self
            .0
            .ec2
            .revoke_security_group_ingress()
            .group_id(Props::of(r).str("groupId")?)
            .ip_permissions(Self::rule(r)?.permission())
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if is_code(&e, &["InvalidPermission.NotFound", "InvalidGroup.NotFound"]) => Ok(()),
            Err(e) => Err(failed("RevokeSecurityGroupIngress", e)),
        }
    }
}
