//! The AWS drivers: one per node kind the AWS translation plans
//! (`paved_plan::aws`), all behind the engine's [`Driver`] interface.
//!
//! Every driver follows the same rules:
//! * `observe` reports the resource in the *node's* property shape, so the
//!   engine's comparison (and `paved drift`) works field by field; fields a
//!   provider reports beyond what paved manages are left out or ignored;
//! * resources are found by their tags (EC2: `Name` = the node's external
//!   name, set at creation in the same call) or by their deterministic
//!   name, so a create after a crash adopts what the crashed run made;
//! * creates whose API takes an idempotency token send one
//!   ([`Session::client_token`]: `CreateNatGateway`, `CreateRouteTable`,
//!   `CreateFlowLogs`, EKS creates and updates, ACM `RequestCertificate`):
//!   a create retried after a lost answer — before the new resource's tags
//!   can be listed — returns the first one instead of making a second;
//! * SDK errors are classified: throttling, 5xx and network errors are
//!   retryable, the rest permanent (with AWS's own message).
//!
//! Every client signs with [`crate::BrokeredCredentials`]: short-lived
//! credentials STS issued for paved's token for this environment.

mod broker;
mod cache;
mod certs;
mod cluster;
mod data;
mod dbuser;
mod errors;
mod identity;
mod keys;
mod logs;
mod network;
mod props;
mod routes;
mod secret;

use crate::{BrokeredCredentials, ClientConfig};
use aws_credential_types::provider::SharedCredentialsProvider;
use aws_types::region::Region;
use paved_engine::{Driver, DriverError, Drivers};
use std::sync::Arc;

pub(crate) use errors::{failed, is_code};
pub(crate) use props::Props;

/// The same error for every resource of a sweep (its listing failed).
pub(crate) fn every(
    rs: &[paved_engine::Resource],
    e: DriverError,
) -> Vec<Result<paved_engine::Observation, DriverError>> {
    rs.iter().map(|_| Err(e.clone())).collect()
}

/// Tags of every resource of `types` in the session's region, by ARN, from
/// the Resource Groups Tagging API: one paginated `GetResources` (100
/// resources a page) in place of a tag call per resource, for sweeps of
/// kinds whose own listing has no tags (KMS keys, log groups).
///
/// `types` are service names or `service:type` filters; a service name
/// matches all of its types (AWS's log-group type is `logs:log-group`, the
/// test emulator's `logs:loggroup`). The listing is eventually consistent:
/// a tag changed seconds ago may show on the next sweep. A resource never
/// tagged is not listed, and its tags read as none
/// (<https://docs.aws.amazon.com/resourcegroupstagging/latest/APIReference/API_GetResources.html>).
pub(crate) async fn tags_by_arn(
    s: &Session,
    types: &[&str],
) -> Result<std::collections::HashMap<String, serde_json::Value>, DriverError> {
    let mut pages = s
        .tagging
        .get_resources()
        .set_resource_type_filters(Some(types.iter().map(|t| t.to_string()).collect()))
        .resources_per_page(100)
        .into_paginator()
        .send();
    let mut out = std::collections::HashMap::new();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| failed("GetResources", e))?;
        for m in page.resource_tag_mapping_list() {
            let Some(arn) = m.resource_arn() else { continue };
            let tags = props::tags_value(m.tags().iter().map(|t| (t.key(), t.value())));
            out.insert(arn.to_string(), tags);
        }
    }
    Ok(out)
}

/// Tags of Elastic Load Balancing resources (load balancers, target
/// groups) by ARN, 20 ARNs a call — `DescribeTags`' most
/// (<https://docs.aws.amazon.com/elasticloadbalancing/latest/APIReference/API_DescribeTags.html>).
pub(crate) async fn elb_tags(
    elb: &aws_sdk_elasticloadbalancingv2::Client,
    arns: &[&str],
) -> Result<std::collections::HashMap<String, Vec<aws_sdk_elasticloadbalancingv2::types::Tag>>, DriverError> {
    let mut tags = std::collections::HashMap::new();
    for chunk in arns.chunks(20) {
        let asked = chunk.iter().map(|a| a.to_string()).collect();
        let out =
            elb.describe_tags().set_resource_arns(Some(asked)).send().await.map_err(|e| failed("DescribeTags", e))?;
        for d in out.tag_descriptions() {
            tags.insert(d.resource_arn().unwrap_or_default().to_string(), d.tags().to_vec());
        }
    }
    Ok(tags)
}

/// Polls `gone` until it says so (backing off to every 15 s): for
/// deletions other resources wait on — a cluster, a NAT gateway or a
/// database holds addresses in the subnets deleted after it. The engine's
/// call timeout bounds the wait.
pub(crate) async fn until_gone<F, Fut>(mut gone: F) -> Result<(), DriverError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<bool, DriverError>>,
{
    let mut pause = std::time::Duration::from_millis(200);
    while !gone().await? {
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(std::time::Duration::from_secs(15));
    }
    Ok(())
}

/// SDK clients for one environment: its region, its credentials.
pub struct Session {
    pub region: String,
    /// What makes this run's idempotency tokens its own (the run's start):
    /// retries within a run repeat a token, a later run (after a destroy,
    /// say) does not reuse one AWS still remembers — EC2 keeps them for at
    /// least 24 hours (<https://docs.aws.amazon.com/ec2/latest/devguide/ec2-api-idempotency.html>).
    run: String,
    /// The TLS a service login's database connection asks for ([`dbuser`]).
    pub(crate) database_tls: sqlx::postgres::PgSslMode,
    pub(crate) ec2: aws_sdk_ec2::Client,
    pub(crate) kms: aws_sdk_kms::Client,
    pub(crate) logs: aws_sdk_cloudwatchlogs::Client,
    pub(crate) iam: aws_sdk_iam::Client,
    pub(crate) eks: aws_sdk_eks::Client,
    pub(crate) elb: aws_sdk_elasticloadbalancingv2::Client,
    pub(crate) rds: aws_sdk_rds::Client,
    pub(crate) s3: aws_sdk_s3::Client,
    pub(crate) sqs: aws_sdk_sqs::Client,
    pub(crate) mq: aws_sdk_mq::Client,
    pub(crate) elasticache: aws_sdk_elasticache::Client,
    pub(crate) secrets: aws_sdk_secretsmanager::Client,
    pub(crate) acm: aws_sdk_acm::Client,
    pub(crate) tagging: aws_sdk_resourcegroupstagging::Client,
    /// Route 53 is global: its calls are signed for us-east-1 whatever the region.
    pub(crate) route53: aws_sdk_route53::Client,
}

impl Session {
    /// Clients for `config`'s region; `run` names the run (its start time,
    /// say) for [`Session::client_token`].
    pub fn new(config: &ClientConfig, credentials: BrokeredCredentials, run: &str) -> Session {
        let mut builder = aws_types::SdkConfig::builder()
            .behavior_version(aws_sdk_ec2::config::BehaviorVersion::latest())
            .region(Region::new(config.region.clone()))
            .credentials_provider(SharedCredentialsProvider::new(credentials))
            // Throttling is retried by the SDK first (with its own backoff), then by the engine.
            .retry_config(aws_types::sdk_config::RetryConfig::standard().with_max_attempts(5));
        if let Some(endpoint) = &config.endpoint {
            builder = builder.endpoint_url(endpoint);
        }
        let sdk = builder.build();
        // An endpoint override (an emulator, a VPC endpoint) is not a bucket's DNS name.
        let s3 = aws_sdk_s3::config::Builder::from(&sdk).force_path_style(config.endpoint.is_some()).build();
        Session {
            region: config.region.clone(),
            run: run.to_string(),
            database_tls: dbuser::database_tls(std::env::var("PAVED_RDS_SSLMODE").ok().as_deref()).unwrap_or_else(
                |e| {
                    tracing::warn!("{e}; using require");
                    sqlx::postgres::PgSslMode::Require
                },
            ),
            ec2: aws_sdk_ec2::Client::new(&sdk),
            kms: aws_sdk_kms::Client::new(&sdk),
            logs: aws_sdk_cloudwatchlogs::Client::new(&sdk),
            iam: aws_sdk_iam::Client::new(&sdk),
            eks: aws_sdk_eks::Client::new(&sdk),
            elb: aws_sdk_elasticloadbalancingv2::Client::new(&sdk),
            rds: aws_sdk_rds::Client::new(&sdk),
            s3: aws_sdk_s3::Client::from_conf(s3),
            sqs: aws_sdk_sqs::Client::new(&sdk),
            mq: aws_sdk_mq::Client::new(&sdk),
            elasticache: aws_sdk_elasticache::Client::new(&sdk),
            secrets: aws_sdk_secretsmanager::Client::new(&sdk),
            acm: aws_sdk_acm::Client::new(&sdk),
            tagging: aws_sdk_resourcegroupstagging::Client::new(&sdk),
            route53: aws_sdk_route53::Client::new(&sdk),
        }
    }
}

impl Session {
    /// The idempotency token of `r`'s create (or update) in this run: the
    /// same for every retry of it, different for another node, other
    /// properties or another run. 32 hex digits fit every API's limit
    /// (ACM's is 32 word characters; EC2's and EKS's 64).
    pub(crate) fn client_token(&self, r: &paved_engine::Resource) -> String {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        for part in
            [self.run.as_bytes(), r.environment.as_bytes(), r.id.as_bytes(), r.properties.to_string().as_bytes()]
        {
            h.update((part.len() as u64).to_be_bytes());
            h.update(part);
        }
        hex::encode(&h.finalize()[..16])
    }
}

/// The drivers for every kind the AWS translation plans, over one session.
pub fn drivers(session: Session) -> Drivers {
    let s = Arc::new(session);
    let d = |driver: Arc<dyn Driver>| driver;
    Drivers::default()
        .with("aws.kms-key", d(Arc::new(keys::KmsKeyDriver(s.clone()))))
        .with("aws.vpc", d(Arc::new(network::Vpc(s.clone()))))
        .with("aws.subnet", d(Arc::new(network::Subnet(s.clone()))))
        .with("aws.internet-gateway", d(Arc::new(network::InternetGateway(s.clone()))))
        .with("aws.eip", d(Arc::new(network::ElasticIp(s.clone()))))
        .with("aws.nat-gateway", d(Arc::new(network::NatGateway(s.clone()))))
        .with("aws.route-table", d(Arc::new(network::RouteTable(s.clone()))))
        .with("aws.security-group", d(Arc::new(network::SecurityGroup(s.clone()))))
        .with("aws.default-security-group", d(Arc::new(network::DefaultSecurityGroup(s.clone()))))
        .with("aws.security-group-ingress", d(Arc::new(network::SecurityGroupIngress(s.clone()))))
        .with("aws.flow-log", d(Arc::new(network::FlowLog(s.clone()))))
        .with("aws.log-group", d(Arc::new(logs::LogGroup(s.clone()))))
        .with("aws.iam-role", d(Arc::new(logs::Role(s.clone()))))
        .with("aws.iam-oidc-provider", d(Arc::new(identity::OidcProvider(s.clone()))))
        .with("aws.secret", d(Arc::new(secret::Secret(s.clone()))))
        .with("aws.acm-certificate", d(Arc::new(certs::Certificate(s.clone()))))
        .with("aws.dns-record", d(Arc::new(certs::DnsRecord(s.clone()))))
        .with("aws.eks-cluster", d(Arc::new(cluster::EksCluster(s.clone()))))
        .with("aws.eks-node-group", d(Arc::new(cluster::EksNodeGroup(s.clone()))))
        .with("aws.lb", d(Arc::new(cluster::LoadBalancer(s.clone()))))
        .with("aws.lb-target-group", d(Arc::new(routes::RouteTargetGroup(s.clone()))))
        .with("aws.lb-route", d(Arc::new(routes::ListenerRule(s.clone()))))
        .with("aws.service-link", d(Arc::new(cluster::Recorded)))
        .with("aws.dns-name", d(Arc::new(cluster::Recorded)))
        .with("aws.db-subnet-group", d(Arc::new(data::DbSubnetGroup(s.clone()))))
        .with("aws.rds-instance", d(Arc::new(data::RdsInstance(s.clone()))))
        .with("aws.db-user", d(Arc::new(dbuser::DbUser(s.clone()))))
        .with("aws.s3-bucket", d(Arc::new(data::Bucket(s.clone()))))
        .with("aws.sqs-queue", d(Arc::new(data::Queue(s.clone()))))
        .with("aws.elasticache-subnet-group", d(Arc::new(cache::SubnetGroup(s.clone()))))
        .with("aws.elasticache-replication-group", d(Arc::new(cache::ReplicationGroupDriver(s.clone()))))
        .with("aws.mq-broker", d(Arc::new(broker::Broker(s))))
}
