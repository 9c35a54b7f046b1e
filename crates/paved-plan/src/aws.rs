//! Translation for the `aws` provider. The drivers that apply these kinds
//! live in `paved_aws::provision`; planning does no I/O.
//!
//! | neutral / Score | AWS kinds | notes |
//! |---|---|---|
//! | network | `aws.vpc`, `aws.subnet` (2 AZs per tier), `aws.internet-gateway`, `aws.nat-gateway` + `aws.eip`, `aws.route-table` | a /20 per environment from the blueprint's address space, no overlap within an account; subnets are /24s of it |
//! | security baseline | `aws.kms-key` (alias `paved/ENV`, rotation on, key policy), `aws.flow-log` + `aws.log-group` (always on, KMS-encrypted) + `aws.iam-role` (may only write that group), `aws.security-group`, `aws.default-security-group` (empty: `security.defaultDeny`) | ingress only on declared ports; 0.0.0.0/0 only on the public load balancer's 443 and 80 |
//! | compute | `aws.eks-cluster`, `aws.eks-node-group`, two `aws.iam-role`s (EKS's managed policies only), `aws.iam-oidc-provider` (the cluster's issuer, audience `sts.amazonaws.com`), `aws.security-group-ingress` (the cluster security group EKS made admits the load balancer's group: pods are the targets) | private endpoint, secrets encrypted with the environment's key, control-plane logs, access by EKS access entries only (`authenticationMode: API`) and no standing administrator rights for paved's role; workloads come with the Kubernetes rendering |
//! | ingress (on a cluster) | `aws.iam-role` `paved-ENV-lb-controller`: trusted only by `kube-system/aws-load-balancer-controller`; may describe, and register/deregister targets in paved's target group only | the controller behind the manifests' `TargetGroupBinding` (<https://kubernetes-sigs.github.io/aws-load-balancer-controller/latest/guide/targetgroupbinding/targetgroupbinding/>) |
//! | service (on a cluster) | `aws.iam-role` `paved-ENV-svc-SERVICE`: trusted only by the ServiceAccount `system:serviceaccount:ENV:SERVICE` through the cluster's OIDC provider (IRSA); its inline policy reaches only that service's buckets (objects, list), queues (send, receive, delete, attributes), its own secret `paved/ENV/SERVICE` (read) and the environment's key (decrypt, data keys) | <https://docs.aws.amazon.com/eks/latest/userguide/iam-roles-for-service-accounts.html>; the trust is built by the driver from `webIdentity`, because its condition keys name the issuer, an apply-time output |
//! | ingress | `aws.lb` (application), `aws.acm-certificate` (`ENV.DOMAIN` and `*.ENV.DOMAIN`, validated by DNS in the zone `ingress.tls.domain`) | idle timeout, health check and TLS policy from the blueprint (see the normalised behaviours below); the HTTPS listener serves the certificate (AWS refuses an HTTPS listener without one: a blueprint with TLS and no domain is a plan error) |
//! | `postgres` | `aws.db-subnet-group`, `aws.rds-instance`, `aws.security-group` `KEY-db`, `aws.log-group`s of its exports, an `aws.db-user` per client service | encrypted with the environment's key, never public, backups and multi-AZ from parameters, master password managed (and rotated) by RDS in Secrets Manager and never copied; each service connects as its own login `app_SERVICE` (password made by Secrets Manager, kept in `paved/ENV/db/KEY/SERVICE`); the group admits its clients' groups and the cluster's pod subnets on 5432 (pods carry the nodes' group; NetworkPolicy narrows to the declared clients) |
//! | `mysql` | as `postgres`, engine `mysql` 8.4 on 3306 | logs `error`, `slowquery`; the login (at most 32 characters) must use TLS (`REQUIRE SSL`) and is granted its database only; no Performance Insights on the small class (RDS refuses it there for MySQL) |
//! | `redis` | `aws.elasticache-subnet-group`, `aws.elasticache-replication-group` (+ `paved.secret` for its AUTH token, a `-redis` security group) | TLS in transit, at rest with the environment's key, failover and Multi-AZ from `highAvailability`, snapshots from `backupRetentionDays` (≤ 35) |
//! | `s3` | `aws.s3-bucket` | KMS encryption, every public access blocked, versioning |
//! | `queue` | `aws.sqs-queue` | KMS encryption |
//! | `amqp` | `aws.mq-broker` (+ `paved.secret` for its user's password, a `-mq` security group) | Amazon MQ for RabbitMQ, private; single instance, or a 3-node cluster in production |
//! | `dns`, `route` | `aws.lb-target-group` (the service's, `paved-ENV-SERVICE`, IP targets, the blueprint's health check, tagged `paved:cluster`), `aws.lb-route` (a listener rule: host and path → that group), `aws.dns-record` | the host is `params.host`, else `SERVICE.ENV.DOMAIN`; a host under the domain gets an alias `A` record to the load balancer in the domain's Route 53 zone |
//! | `service` | `aws.service-link` | the target's name inside the environment's cluster (`SERVICE.ENV.svc.cluster.local`) |
//!
//! | environment of type `preview` | its own key, databases, buckets, queues, roles and secrets; **no** network, cluster or load balancer: those of its host (the environment it was opened from, [`Host`]) | a namespace on the host's cluster; its subnet groups, security groups and target groups in the host's VPC, its listener rules on the host's load balancer, hosts `SERVICE-PREVIEW.HOST.DOMAIN` under the host's wildcard certificate; planning fails until the host is applied |
//!
//! Normalised behaviours — a blueprint states a behaviour once, each
//! provider sets its own knob to match (each row has a test):
//!
//! | blueprint | AWS setting | AWS default it replaces |
//! |---|---|---|
//! | `ingress.timeouts.idle` | ALB `idle_timeout.timeout_seconds` (1–4000, checked here: the API does not) | 60 s |
//! | `ingress.healthCheck` | target group path, interval, timeout, healthy/unhealthy thresholds | `/`, 30 s, 5 s, 5/2 |
//! | `ingress.tls.minVersion` | listener SSL policy (`1.2` → `ELBSecurityPolicy-TLS13-1-2-2021-06`, `1.3` → `ELBSecurityPolicy-TLS13-1-3-2021-06`) | `ELBSecurityPolicy-2016-08` (TLS 1.0) |
//! | `observability.logRetentionDays` | flow-log group retention | never expire |
//!
//! Every node carries the tags `paved:environment`, `paved:managed-by`,
//! `paved:blueprint` and, for a service's resources, `paved:service`: drivers
//! find their resources by them after a crash.

use crate::provision;
use crate::resolve::{self, ResourceBinding};
use crate::{Node, PlanError, PlanInput, ResourceGraph};
use paved_model::EnvType;
use paved_model::blueprint::{DatabaseEngine, Egress, NetworkTier, Size, TlsVersion};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};

const PROVIDER: &str = "aws";
const SUPPORTED: &str = "postgres, mysql, redis, s3, queue, amqp, dns, route, service, service-port, environment";
/// An environment's subnets span two zones (one subnet per tier and
/// zone). Node ids name a zone by its place (`ENV-TIER-a` is in the first
/// zone), not by its AWS name: not every account has every zone letter
/// (<https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/using-regions-availability-zones.html>),
/// and an environment keeps its ids whichever zones its account offers.
pub const ZONE_SLOTS: [&str; 2] = ["a", "b"];
/// The identity key marking zones planned without asking AWS.
const PROVISIONAL_ZONES: &str = "az-provisional";
/// The Kubernetes version of the EKS clusters this translation plans when
/// the blueprint names none: the newest in EKS's standard support on
/// 2026-12-05 (1.35, until 2027-03-27; 1.34's ended on 2026-12-02 —
/// <https://docs.aws.amazon.com/eks/latest/userguide/kubernetes-versions.html>).
pub const EKS_VERSION: &str = "1.35";
/// The prefix length of an environment's address block.
const ENVIRONMENT_BLOCK: u8 = 20;

/// Address blocks of an account's environments, as recorded by their applied
/// VPCs, and the account's environment names (for a deterministic first fit
/// of those not applied yet). Filled in by the caller; planning does no I/O.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AddressPlan {
    pub allocated: BTreeMap<String, String>,
    pub account_environments: Vec<String>,
}

fn parse_cidr(cidr: &str) -> Option<(u32, u8)> {
    let (ip, len) = cidr.split_once('/')?;
    let len: u8 = len.parse().ok().filter(|l| *l <= 32)?;
    let octets: Vec<u8> = ip.split('.').map(|o| o.parse().ok()).collect::<Option<_>>()?;
    let [a, b, c, d] = octets[..] else { return None };
    let addr = u32::from_be_bytes([a, b, c, d]);
    let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
    Some((addr & mask, len))
}

fn format_cidr(addr: u32, len: u8) -> String {
    let [a, b, c, d] = addr.to_be_bytes();
    format!("{a}.{b}.{c}.{d}/{len}")
}

/// The `netnum`-th block of `newbits` more bits inside `cidr` (Terraform's `cidrsubnet`).
pub fn cidr_subnet(cidr: &str, newbits: u8, netnum: u32) -> Option<String> {
    let (base, len) = parse_cidr(cidr)?;
    let new_len = len.checked_add(newbits).filter(|l| *l <= 32)?;
    if u64::from(netnum) >= 1u64 << newbits {
        return None;
    }
    Some(format_cidr(base | (netnum << (32 - new_len)), new_len))
}

/// The environment's block: the one its VPC was created with, else the
/// first free one in the pool, handed out to the account's unallocated
/// environments in name order (so plans of siblings agree).
pub fn allocate(pool: &str, environment: &str, plan: &AddressPlan) -> Result<String, String> {
    if let Some(cidr) = plan.allocated.get(environment) {
        return Ok(cidr.clone());
    }
    let (_, pool_len) = parse_cidr(pool).ok_or_else(|| format!("`{pool}` is not an IPv4 CIDR block"))?;
    let newbits = ENVIRONMENT_BLOCK
        .checked_sub(pool_len)
        .ok_or_else(|| format!("address space {pool} is smaller than one environment's /{ENVIRONMENT_BLOCK}"))?;
    let taken: BTreeSet<&String> = plan.allocated.values().collect();
    let mut free = (0..1u32 << newbits).filter_map(|n| cidr_subnet(pool, newbits, n)).filter(|c| !taken.contains(c));
    let mut waiting: Vec<&str> = plan
        .account_environments
        .iter()
        .map(String::as_str)
        .filter(|e| !plan.allocated.contains_key(*e))
        .chain(std::iter::once(environment))
        .collect();
    waiting.sort();
    waiting.dedup();
    for e in waiting {
        let block = free.next().ok_or_else(|| {
            format!("address space {pool} has no free /{ENVIRONMENT_BLOCK} left for environment `{e}`")
        })?;
        if e == environment {
            return Ok(block);
        }
    }
    Err(format!("no block for environment `{environment}`"))
}

/// The zones an environment's subnets go in, one per [`ZONE_SLOTS`]: the
/// first of `available` in name order, or (`None`: AWS was not asked)
/// the region's `a` and `b`, provisional until the apply places them.
fn environment_zones(env: &str, region: &str, available: Option<&[String]>) -> Result<Vec<String>, PlanError> {
    let Some(available) = available else {
        return Ok(ZONE_SLOTS.iter().map(|slot| format!("{region}{slot}")).collect());
    };
    let mut sorted: Vec<String> = available.to_vec();
    sorted.sort();
    sorted.dedup();
    if sorted.len() < ZONE_SLOTS.len() {
        return Err(PlanError::TooFewZones {
            environment: env.into(),
            region: region.into(),
            count: sorted.len(),
            zones: sorted.join(", "),
            needed: ZONE_SLOTS.len(),
        });
    }
    sorted.truncate(ZONE_SLOTS.len());
    Ok(sorted)
}

/// Whether `graph`'s zones were planned without asking AWS (the apply
/// then reads them and calls [`place_zones`]).
pub fn zones_provisional(graph: &ResourceGraph) -> bool {
    graph.identity.contains_key(PROVISIONAL_ZONES)
}

/// Puts `graph`'s subnets in `available` zones (what
/// `DescribeAvailabilityZones` answered), as planning with them would have.
pub fn place_zones(graph: &mut ResourceGraph, available: &[String]) -> Result<(), PlanError> {
    let region = graph.identity.get("region").cloned().unwrap_or_default();
    let zones = environment_zones(&graph.environment, &region, Some(available))?;
    graph.identity.remove(PROVISIONAL_ZONES);
    for (slot, zone) in ZONE_SLOTS.iter().zip(&zones) {
        graph.identity.insert(format!("az-{slot}"), zone.clone());
    }
    for (id, node) in graph.nodes.iter_mut().filter(|(id, _)| id.starts_with("aws.subnet/")) {
        let slot = id.rsplit('-').next().unwrap_or_default();
        if let Some(i) = ZONE_SLOTS.iter().position(|s| *s == slot) {
            node.properties["availabilityZone"] = json!(zones[i]);
        }
    }
    Ok(())
}

/// The target group of an environment's load balancer (the HTTPS
/// listener's default action), which a cluster's `TargetGroupBinding` names.
pub fn target_group_name(environment: &str) -> String {
    format!("paved-{environment}")
}

/// The host of an account's ECR registry in a region: what image
/// references name and the cluster pulls from
/// (<https://docs.aws.amazon.com/AmazonECR/latest/userguide/Registries.html>;
/// the host ends in the partition's DNS suffix, `.amazonaws.com.cn` in China).
pub fn ecr_registry(account_id: &str, region: &str) -> String {
    let suffix = paved_model::partition::of_region(region).dns_suffix;
    format!("{account_id}.dkr.ecr.{region}.{suffix}")
}

/// The ECR repository of a service's artifacts (one per service and
/// account/region, shared by its environments there, created on first push).
pub fn ecr_repository(service: &str) -> String {
    format!("paved/{service}")
}

/// The IAM role a service's pods act as in an environment (`-svc-` keeps
/// a service named like an environment role, `eks-nodes`, from colliding with it).
pub fn service_role_name(environment: &str, service: &str) -> String {
    fit(&format!("paved-{environment}-svc-{service}"), IAM_ROLE_NAME)
}

/// Longest names AWS takes, for the names paved derives from environment,
/// service and resource names (each limit's page is beside it).
/// <https://docs.aws.amazon.com/IAM/latest/APIReference/API_CreateRole.html>
pub const IAM_ROLE_NAME: usize = 64;
/// <https://docs.aws.amazon.com/AmazonRDS/latest/APIReference/API_CreateDBInstance.html> (`DBInstanceIdentifier`)
pub const RDS_IDENTIFIER: usize = 63;
/// <https://docs.aws.amazon.com/AmazonS3/latest/userguide/bucketnamingrules.html>
pub const S3_BUCKET: usize = 63;
/// <https://docs.aws.amazon.com/AWSSimpleQueueService/latest/APIReference/API_CreateQueue.html> (`QueueName`)
pub const SQS_QUEUE: usize = 80;
/// Amazon MQ broker names: 1–50 characters of letters, digits, `-`, `.`, `_`, `~`
/// (<https://docs.aws.amazon.com/amazon-mq/latest/developer-guide/amazon-mq-limits.html>).
pub const MQ_BROKER_NAME: usize = 50;
/// ElastiCache replication group ids: 1–40 letters, digits and hyphens,
/// starting with a letter, no `--`, no trailing hyphen
/// (<https://docs.aws.amazon.com/AmazonElastiCache/latest/APIReference/API_CreateReplicationGroup.html>).
pub const ELASTICACHE_ID: usize = 40;
/// ELB load balancer and target group names
/// (<https://docs.aws.amazon.com/elasticloadbalancing/latest/APIReference/API_CreateLoadBalancer.html>).
pub const ELB_NAME: usize = 32;
/// A DNS label (RFC 1035), as a route's first label.
pub const DNS_LABEL: usize = 63;
/// The retentions CloudWatch Logs takes, in days
/// (<https://docs.aws.amazon.com/AmazonCloudWatchLogs/latest/APIReference/API_PutRetentionPolicy.html>).
pub const LOG_RETENTION_DAYS: [u32; 22] =
    [1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653];

/// `name` if it fits in `limit` characters, else its start and 8 hex digits
/// of its SHA-256: still unique, stable, and free of a trailing hyphen
/// (which S3, RDS and ELB refuse).
pub fn fit(name: &str, limit: usize) -> String {
    if name.len() <= limit {
        return name.to_string();
    }
    let hash: String = Sha256::digest(name.as_bytes()).iter().take(4).map(|b| format!("{b:02x}")).collect();
    let keep = limit.saturating_sub(hash.len() + 1).min(name.len());
    let start = name[..keep].trim_end_matches('-');
    format!("{start}-{hash}")
}

/// What the RDS engines paved offers differ in.
struct Rds {
    /// RDS's `Engine`.
    engine: &'static str,
    /// The blueprint's offer it needs.
    blueprint: DatabaseEngine,
    /// The major version when the blueprint names none.
    version: &'static str,
    port: u16,
    /// The logs RDS publishes to CloudWatch Logs for the engine.
    exports: &'static [&'static str],
    /// The longest user name the engine takes.
    login_limit: usize,
}

/// RDS for PostgreSQL: logs per
/// <https://docs.aws.amazon.com/AmazonRDS/latest/UserGuide/USER_LogAccess.Concepts.PostgreSQL.html>.
const RDS_POSTGRES: Rds = Rds {
    engine: "postgres",
    blueprint: DatabaseEngine::Postgres,
    version: "16",
    port: 5432,
    exports: &["postgresql", "upgrade"],
    login_limit: 63,
};

/// RDS for MySQL: 8.4, the long-term release (8.0 left RDS's standard
/// support on 2026-07-31,
/// <https://docs.aws.amazon.com/AmazonRDS/latest/UserGuide/MySQL.Concepts.VersionMgmt.html>);
/// logs per <https://docs.aws.amazon.com/AmazonRDS/latest/UserGuide/USER_LogAccess.MySQLDB.PublishtoCloudWatchLogs.html>;
/// user names of at most 32 characters
/// (<https://dev.mysql.com/doc/refman/8.4/en/user-names.html>).
const RDS_MYSQL: Rds = Rds {
    engine: "mysql",
    blueprint: DatabaseEngine::Mysql,
    version: "8.4",
    port: 3306,
    exports: &["error", "slowquery"],
    login_limit: 32,
};

impl Rds {
    /// Whether an instance of `class` can have Performance Insights: RDS
    /// for MySQL refuses it on the micro and small burstable classes
    /// (<https://docs.aws.amazon.com/AmazonRDS/latest/UserGuide/USER_DatabaseInsights.Engines.html>),
    /// PostgreSQL takes it on every class.
    fn insights(&self, class: &str) -> bool {
        const MYSQL_WITHOUT: [&str; 6] =
            ["db.t2.micro", "db.t2.small", "db.t3.micro", "db.t3.small", "db.t4g.micro", "db.t4g.small"];
        self.engine != "mysql" || !MYSQL_WITHOUT.contains(&class)
    }
}

/// The PostgreSQL login of a service on a database: `app_SERVICE`
/// (hyphens as underscores), so no service can be named like the master
/// user (`paved`) or a role RDS keeps (`rdsadmin`, `rds_*`); at most 63
/// bytes, PostgreSQL's identifier limit
/// (<https://www.postgresql.org/docs/current/sql-syntax-lexical.html#SQL-SYNTAX-IDENTIFIERS>).
pub fn db_username(service: &str) -> String {
    fit(&format!("app_{}", service.replace('-', "_")), 63)
}

/// The role the cluster's AWS Load Balancer Controller acts as (its
/// ServiceAccount `kube-system/aws-load-balancer-controller` is annotated
/// with it when the platform team installs the controller).
pub fn lb_controller_role_name(environment: &str) -> String {
    format!("paved-{environment}-lb-controller")
}

/// Who may assume a role: one ServiceAccount of the cluster, through its
/// OIDC provider, for STS (the IAM driver builds the trust from this).
fn web_identity(oidc: &Oidc, subject: &str) -> Value {
    json!({"provider": oidc.arn.value, "issuer": oidc.issuer, "subject": subject, "audience": "sts.amazonaws.com"})
}

/// What a service's pod role is made of.
struct PodRole<'a> {
    env: &'a str,
    svc: &'a str,
    partition: &'a str,
    region: &'a str,
    account_id: &'a str,
    oidc: &'a Oidc,
    kms: &'a str,
    bindings: &'a BTreeMap<String, ResourceBinding>,
    tags: Value,
}

/// The IAM role of a service's pods: trusted by its ServiceAccount only,
/// allowed only its own buckets, queues, secret and the environment's key.
fn pod_role(s: PodRole<'_>) -> Node {
    let PodRole { env, svc, partition, region, account_id, oidc, kms, bindings, tags } = s;
    let account = if account_id.is_empty() { "*" } else { account_id };
    let mut statements = vec![
        json!({"Sid": "OwnSecret", "Effect": "Allow",
               "Action": ["secretsmanager:GetSecretValue", "secretsmanager:DescribeSecret"],
               "Resource": format!("arn:{partition}:secretsmanager:{region}:{account}:secret:paved/{env}/{svc}-*")}),
        json!({"Sid": "EnvironmentKey", "Effect": "Allow", "Action": ["kms:Decrypt", "kms:GenerateDataKey"],
               "Resource": r(kms, "arn")}),
    ];
    let mut after: Vec<String> = oidc.arn.after.iter().cloned().chain([kms.to_string()]).collect();
    let mut nodes: Vec<&str> = bindings.values().map(|b| b.node.as_str()).collect();
    nodes.sort();
    nodes.dedup();
    for node in nodes {
        if node.starts_with("aws.s3-bucket/") {
            statements.push(json!({"Effect": "Allow", "Action": ["s3:ListBucket"], "Resource": r(node, "arn")}));
            statements.push(json!({"Effect": "Allow", "Action": ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"],
                                   "Resource": format!("${{ref:{node}.arn}}/*")}));
        } else if node.starts_with("aws.sqs-queue/") {
            statements.push(json!({"Effect": "Allow",
                "Action": ["sqs:SendMessage", "sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility",
                           "sqs:GetQueueAttributes", "sqs:GetQueueUrl"],
                "Resource": r(node, "arn")}));
        } else {
            continue;
        }
        after.push(node.to_string());
    }
    Node::new(
        "aws.iam-role",
        &format!("{env}-svc-{svc}"),
        json!({
            "name": service_role_name(env, svc),
            "webIdentity": web_identity(oidc, &format!("system:serviceaccount:{env}:{svc}")),
            "policy": {"Version": "2012-10-17", "Statement": statements},
            "tags": tags,
        }),
    )
    .after(after)
    .outputs(&["arn"])
}

/// The target group a routed service's pods join (its cluster's
/// `TargetGroupBinding` names it): `paved-ENV-SERVICE`, shortened with a hash
/// of the whole to ELB's 32 characters (letters, digits, hyphens; no hyphen
/// first or last: <https://docs.aws.amazon.com/elasticloadbalancing/latest/APIReference/API_CreateTargetGroup.html>).
pub fn route_target_group_name(environment: &str, service: &str) -> String {
    fit(&format!("paved-{environment}-{service}"), ELB_NAME)
}

/// The default host of a route: `SERVICE.ENV.DOMAIN`; a preview's services
/// take `SERVICE-PREVIEW.HOST.DOMAIN`, which its host's certificate
/// (`*.HOST.DOMAIN`) already covers.
fn route_host(service: &str, environment: &str, parent: &str, domain: &str) -> String {
    if environment == parent {
        format!("{service}.{environment}.{domain}")
    } else {
        format!("{}.{parent}.{domain}", fit(&format!("{service}-{environment}"), DNS_LABEL))
    }
}

/// The host of a service's `dns` or `route` resource: its `params.host`,
/// which may name the host of another of the service's resources
/// (`${resources.dns.host}`, Score's idiom), else `default`.
fn resource_host(
    w: &paved_model::Workload,
    resource: &str,
    default: Option<String>,
) -> Result<Option<String>, PlanError> {
    let mut name = resource;
    // A chain of names, at most as long as the service's resources.
    for _ in 0..=w.resources.len() {
        let param = w.resources.get(name).and_then(|r| r.params.as_ref()).and_then(|p| p.get("host"));
        let Some(host) = param.and_then(Value::as_str) else { return Ok(default) };
        let Some(inner) = host.strip_prefix("${resources.").and_then(|h| h.strip_suffix(".host}")) else {
            if host.contains("${") {
                break;
            }
            return Ok(Some(host.to_string()));
        };
        if !w.resources.get(inner).is_some_and(|r| matches!(r.kind.as_str(), "dns" | "route")) {
            break;
        }
        name = inner;
    }
    Err(PlanError::Unsatisfiable {
        service: w.metadata.name.clone(),
        field: format!("resources.{resource}.params.host"),
        placeholder: w.resources[resource]
            .params
            .as_ref()
            .and_then(|p| p.get("host"))
            .map(|h| h.to_string())
            .unwrap_or_default(),
        reason: "a route's host is a name, or `${resources.NAME.host}` of the service's own `dns` or `route` resource"
            .into(),
    })
}

/// What a preview shares of the environment it was opened from: that
/// environment's applied nodes (properties and outputs), read by the caller.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Host {
    pub environment: String,
    /// Node id → what the host's state holds of it.
    pub nodes: BTreeMap<String, HostNode>,
}

/// One applied node of a preview's host.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HostNode {
    pub properties: Value,
    pub outputs: Value,
}

/// A value one node takes from elsewhere: an output of a node of this graph
/// (which the node then comes after), or a value a preview's host already has.
#[derive(Debug, Clone)]
struct At {
    value: Value,
    after: Vec<String>,
}

impl At {
    fn node(id: &str, output: &str) -> At {
        At { value: r(id, output), after: vec![id.to_string()] }
    }

    fn nodes(ids: &[String], output: &str) -> At {
        At { value: Value::Array(ids.iter().map(|id| r(id, output)).collect()), after: ids.to_vec() }
    }

    fn host(value: Value) -> At {
        At { value, after: Vec::new() }
    }
}

/// The cluster's OIDC provider, which pod roles trust.
struct Oidc {
    arn: At,
    issuer: Value,
}

/// The load balancer routes are added to.
struct LbAt {
    arn: At,
    dns: Value,
    zone: Value,
    /// Its HTTPS listener serves a certificate (else routes go on port 80).
    tls: bool,
}

/// What an environment's services are planned on: its own network,
/// cluster and load balancer, or (a preview) those of its host.
struct Base {
    vpc: At,
    /// The VPC's address block.
    block: String,
    /// The subnets databases live in.
    data: At,
    /// The blocks pods take their addresses from.
    pod_blocks: Vec<String>,
    lb_sg: Option<At>,
    lb: Option<LbAt>,
    /// The environment whose name route hosts sit under.
    dns_parent: String,
    oidc: Oidc,
    /// The EKS cluster's name.
    cluster: String,
}

/// A preview's base: its host's VPC, subnets, cluster and load balancer,
/// read from the host's applied state. The preview keeps its own key,
/// databases, buckets, queues, roles and secrets.
fn host_base(input: &PlanInput<'_>, g: &mut ResourceGraph) -> Result<Base, Vec<PlanError>> {
    let env = input.environment.metadata.name.as_str();
    let Some(host) = &input.host else { return Err(vec![PlanError::NoHost { environment: env.into() }]) };
    let h = host.environment.as_str();
    let missing = |node: String| {
        vec![PlanError::HostNotApplied { environment: env.into(), host: h.into(), missing: format!("`{node}`") }]
    };
    let output = |node: String, output: &str| -> Result<Value, Vec<PlanError>> {
        match host.nodes.get(&node).map(|n| &n.outputs[output]) {
            Some(v) if !v.is_null() => Ok(v.clone()),
            _ => Err(missing(format!("{node}.{output}"))),
        }
    };
    let vpc = format!("aws.vpc/{h}");
    let block = host
        .nodes
        .get(&vpc)
        .and_then(|n| n.properties["cidrBlock"].as_str())
        .map(str::to_string)
        .ok_or_else(|| missing(vpc.clone()))?;
    g.identity.insert("cidr".into(), block.clone());
    g.identity.insert("host".into(), h.into());
    // The host's subnets by tier, as its identity names them.
    let mut tiers: BTreeMap<String, Vec<(Value, String)>> = BTreeMap::new();
    for (id, n) in host.nodes.iter().filter(|(id, _)| id.starts_with("aws.subnet/")) {
        let (Some(tier), Some(cidr)) = (n.properties["tier"].as_str(), n.properties["cidrBlock"].as_str()) else {
            continue;
        };
        let zone = id.rsplit('-').next().unwrap_or_default();
        g.identity.insert(format!("subnet-{tier}-{zone}"), cidr.into());
        tiers.entry(tier.into()).or_default().push((output(id.clone(), "id")?, cidr.into()));
    }
    let tier = |names: [&str; 2]| names.iter().find_map(|t| tiers.get(*t)).cloned().unwrap_or_default();
    let private = tier(["private", "isolated"]);
    let data = tier(["isolated", "private"]);
    let lb_id = format!("aws.lb/{h}");
    let lb = match input.blueprint.spec.ingress {
        Some(_) => Some(LbAt {
            arn: At::host(output(lb_id.clone(), "arn")?),
            dns: output(lb_id.clone(), "dnsName")?,
            zone: output(lb_id.clone(), "canonicalHostedZoneId")?,
            tls: host
                .nodes
                .get(&lb_id)
                .and_then(|n| n.properties["listeners"].as_array())
                .is_some_and(|ls| ls.iter().any(|l| l["protocol"] == "HTTPS")),
        }),
        None => None,
    };
    let lb_sg = match input.blueprint.spec.ingress {
        Some(_) => Some(At::host(output(format!("aws.security-group/{h}-lb"), "id")?)),
        None => None,
    };
    let oidc = format!("aws.iam-oidc-provider/{h}");
    Ok(Base {
        vpc: At::host(output(vpc, "id")?),
        block,
        data: At::host(Value::Array(data.iter().map(|(id, _)| id.clone()).collect())),
        pod_blocks: private.iter().map(|(_, cidr)| cidr.clone()).collect(),
        lb_sg,
        lb,
        dns_parent: h.into(),
        oidc: Oidc { arn: At::host(output(oidc.clone(), "arn")?), issuer: output(oidc, "issuer")? },
        cluster: format!("paved-{h}"),
    })
}

/// A target group's health check, from the blueprint's ingress.
fn health_check(i: &paved_model::blueprint::IngressSpec) -> Value {
    json!({
        "path": i.health_check.path,
        "intervalSeconds": seconds(&i.health_check.interval),
        "timeoutSeconds": seconds(&i.health_check.timeout),
        "healthyThreshold": i.health_check.healthy_threshold,
        "unhealthyThreshold": i.health_check.unhealthy_threshold,
    })
}

fn seconds(d: &paved_model::SpecDuration) -> u64 {
    d.parse().map_or(0, |d| d.as_secs())
}

/// The listener SSL policy for a minimum TLS version.
pub fn ssl_policy(min: TlsVersion) -> &'static str {
    match min {
        TlsVersion::V1_3 => "ELBSecurityPolicy-TLS13-1-3-2021-06",
        _ => "ELBSecurityPolicy-TLS13-1-2-2021-06",
    }
}

fn db_class(size: Size) -> &'static str {
    match size {
        Size::Small => "db.t4g.small",
        Size::Medium => "db.m6g.large",
        Size::Large => "db.m6g.xlarge",
        Size::Xlarge => "db.m6g.2xlarge",
    }
}

/// ElastiCache node types
/// (<https://docs.aws.amazon.com/AmazonElastiCache/latest/dg/CacheNodes.SupportedTypes.html>).
fn cache_class(size: Size) -> &'static str {
    match size {
        Size::Small => "cache.t4g.small",
        Size::Medium => "cache.m7g.large",
        Size::Large => "cache.m7g.xlarge",
        Size::Xlarge => "cache.m7g.2xlarge",
    }
}

fn node_class(size: Size) -> &'static str {
    match size {
        Size::Small => "t3.medium",
        Size::Medium => "m6i.large",
        Size::Large => "m6i.xlarge",
        Size::Xlarge => "m6i.2xlarge",
    }
}

fn r(id: &str, output: &str) -> Value {
    Value::String(format!("${{ref:{id}.{output}}}"))
}

/// The AWS graph of an environment.
pub fn translate(input: &PlanInput<'_>) -> Result<ResourceGraph, Vec<PlanError>> {
    translate_with_bindings(input).map(|t| t.graph)
}

/// A translation and, per service, which node holds each of its Score
/// resources: what a workload renderer (`paved-k8s`) needs to turn the
/// service's placeholders into the same references the graph holds.
#[derive(Debug, Clone)]
pub struct Translation {
    pub graph: ResourceGraph,
    /// service → resource name → binding.
    pub bindings: BTreeMap<String, BTreeMap<String, ResourceBinding>>,
}

/// [`translate`], keeping the resource bindings of every service.
pub fn translate_with_bindings(input: &PlanInput<'_>) -> Result<Translation, Vec<PlanError>> {
    let env = input.environment.metadata.name.as_str();
    let region = input.environment.spec.region.as_str();
    let bp = &input.blueprint.spec;
    let mut errors = Vec::new();
    if !input.account.spec.allowed_regions.iter().any(|r| r == region) {
        return Err(vec![PlanError::RegionNotAllowed {
            environment: env.into(),
            region: region.into(),
            account: input.account.metadata.name.clone(),
            allowed: input.account.spec.allowed_regions.join(", "),
        }]);
    }
    let params = resolve::parameters(input.environment, input.blueprint)?;
    let blueprint = format!("{}@{}", input.blueprint.metadata.name, bp.version);
    let tags = |service: Option<&str>| {
        let mut t = json!({"paved:environment": env, "paved:managed-by": "paved", "paved:blueprint": blueprint});
        if let Some(s) = service {
            t["paved:service"] = json!(s);
        }
        t
    };
    let mut g = ResourceGraph::new(paved_model::Provider::Aws, env);
    g.identity.insert("region".into(), region.into());

    let account_id = input.account.spec.account_id.clone().unwrap_or_default();
    let paved_model::partition::Partition { name: partition, dns_suffix } = paved_model::partition::of_region(region);
    // The account administers the key; CloudWatch Logs of this region may use it for the flow-log group.
    let key_policy = json!({
        "Version": "2012-10-17",
        "Statement": [
            {"Sid": "AccountAdministers", "Effect": "Allow", "Principal": {"AWS": format!("arn:{partition}:iam::{account_id}:root")},
             "Action": "kms:*", "Resource": "*"},
            // Only for this environment's log groups
            // (<https://docs.aws.amazon.com/AmazonCloudWatch/latest/logs/encrypt-log-data-kms.html>).
            {"Sid": "FlowLogGroup", "Effect": "Allow", "Principal": {"Service": format!("logs.{region}.{dns_suffix}")},
             "Action": ["kms:Encrypt*", "kms:Decrypt*", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:Describe*"], "Resource": "*",
             "Condition": {"ArnLike": {"kms:EncryptionContext:aws:logs:arn": [
                 format!("arn:{partition}:logs:{region}:{account_id}:log-group:/paved/{env}/*"),
                 format!("arn:{partition}:logs:{region}:{account_id}:log-group:/aws/eks/paved-{env}/*"),
                 format!("arn:{partition}:logs:{region}:{account_id}:log-group:/aws/rds/instance/paved-{env}-*"),
             ]}}},
        ]
    });
    let kms = g.add(
        Node::new(
            "aws.kms-key",
            env,
            json!({"alias": format!("alias/paved/{env}"), "enableKeyRotation": true, "description": format!("paved environment {env}"),
                   "policy": key_policy, "tags": tags(None)}),
        )
        .outputs(&["arn", "keyId"]),
    );
    // Nodes in private subnets reach ECR, STS and the EKS API through the NAT
    // gateway; without one they never join the cluster
    // (<https://docs.aws.amazon.com/eks/latest/userguide/private-clusters.html>).
    let tiers = &bp.network.tiers;
    let why = match (bp.network.egress, tiers.contains(&NetworkTier::Public), tiers.contains(&NetworkTier::Private)) {
        (Egress::Nat, true, true) => None,
        (Egress::None, _, _) => Some("`egress: none`".to_string()),
        (Egress::Internet, _, _) => {
            Some("`egress: internet` gives only public subnets a route out, and nodes run in private ones".into())
        }
        (Egress::Nat, false, _) => Some("a NAT gateway needs a `public` tier".into()),
        (Egress::Nat, true, false) => Some("nodes run in a `private` tier, which this network lacks".into()),
    };
    if let Some(why) = why {
        errors.push(PlanError::NoNodeEgress { blueprint: input.blueprint.metadata.name.clone(), why });
    }
    let domain = bp.ingress.as_ref().filter(|i| i.tls.enabled).and_then(|i| i.tls.domain.clone());
    if bp.ingress.as_ref().is_some_and(|i| i.tls.enabled) && domain.is_none() {
        errors.push(PlanError::NoCertificateDomain { blueprint: input.blueprint.metadata.name.clone() });
    }
    let log_days = resolve::param("spec.observability.logRetentionDays", &bp.observability.log_retention_days, &params);
    let log_days: u32 = log_days.map_err(|e| vec![e])?;
    if !LOG_RETENTION_DAYS.contains(&log_days) {
        return Err(vec![PlanError::BadParameter {
            parameter: "spec.observability.logRetentionDays".into(),
            value: log_days.to_string(),
            field: format!(
                "CloudWatch Logs' retention, one of {} days",
                LOG_RETENTION_DAYS.iter().map(u32::to_string).collect::<Vec<_>>().join(", ")
            ),
        }]);
    }
    // The log groups AWS services write to (EKS's control plane, RDS's
    // exports) are made by paved first, so they are encrypted with the
    // environment's key, keep the blueprint's retention and go with the
    // environment; a service makes its own otherwise, unencrypted, kept
    // forever and left behind
    // (<https://docs.aws.amazon.com/eks/latest/userguide/control-plane-logs.html>,
    // <https://docs.aws.amazon.com/AmazonRDS/latest/UserGuide/USER_LogAccess.Procedural.UploadtoCloudWatch.html>).
    let service_logs = |g: &mut ResourceGraph, id: &str, name: String, tags: Value| {
        g.add(
            Node::new(
                "aws.log-group",
                id,
                json!({"name": name, "retentionDays": log_days, "kmsKeyArn": r(&kms, "arn"), "tags": tags}),
            )
            .after([kms.clone()])
            .immutable(&["name"])
            .outputs(&["arn"]),
        )
    };
    let base = if input.environment.spec.env_type == EnvType::Preview {
        host_base(input, &mut g)?
    } else {
        let block = allocate(&bp.network.address_space, env, &input.addresses).map_err(|reason| {
            vec![PlanError::BadParameter {
                parameter: "network.addressSpace".into(),
                value: bp.network.address_space.clone(),
                field: reason,
            }]
        })?;
        g.identity.insert("cidr".into(), block.clone());
        let vpc = g.add(
            Node::new(
                "aws.vpc",
                env,
                json!({"cidrBlock": block, "enableDnsHostnames": true, "enableDnsSupport": true, "tags": tags(None)}),
            )
            .immutable(&["cidrBlock"])
            .outputs(&["id"]),
        );
        let log_group =
            service_logs(&mut g, &format!("{env}-flow-logs"), format!("/paved/{env}/vpc-flow-logs"), tags(None));
        // Flow logs are always on, whatever the blueprint says: the baseline.
        // The flow-log service writes to the group through a role that may do only that.
        let flow_role = g.add(
            Node::new(
                "aws.iam-role",
                &format!("{env}-flow-logs"),
                json!({
                    "name": format!("paved-{env}-flow-logs"),
                    // Only for flow logs of this account: no confused deputy
                    // (<https://docs.aws.amazon.com/vpc/latest/userguide/flow-logs-iam-role.html>).
                    "assumeRolePolicy": {"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
                        "Principal": {"Service": "vpc-flow-logs.amazonaws.com"}, "Action": "sts:AssumeRole",
                        "Condition": {"StringEquals": {"aws:SourceAccount": account_id},
                                      "ArnLike": {"aws:SourceArn": format!("arn:{partition}:ec2:{region}:{account_id}:vpc-flow-log/*")}}}]},
                    "policy": {"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
                        "Action": ["logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams"],
                        "Resource": format!("${{ref:{log_group}.arn}}:*")}]},
                    "tags": tags(None),
                }),
            )
            .after([log_group.clone()])
            .outputs(&["arn"]),
        );
        g.add(
            Node::new(
                "aws.flow-log",
                env,
                json!({"vpcId": r(&vpc, "id"), "trafficType": "ALL", "logGroupArn": r(&log_group, "arn"),
                   "iamRoleArn": r(&flow_role, "arn"), "tags": tags(None)}),
            )
            .after([vpc.clone(), log_group.clone(), flow_role]),
        );
        // The VPC's default security group admits nothing: traffic flows only through paved's groups.
        if bp.security.default_deny {
            g.add(
                Node::new(
                    "aws.default-security-group",
                    env,
                    json!({"vpcId": r(&vpc, "id"), "ingress": [], "egress": [], "tags": tags(None)}),
                )
                .after([vpc.clone()]),
            );
        }

        // Subnets: tier i, zone j → the (2i + j)-th /24 of the block.
        let zones = environment_zones(env, region, input.zones.as_deref()).map_err(|e| vec![e])?;
        if input.zones.is_none() {
            g.identity.insert(PROVISIONAL_ZONES.into(), String::new());
        }
        for (slot, zone) in ZONE_SLOTS.iter().zip(&zones) {
            g.identity.insert(format!("az-{slot}"), zone.clone());
        }
        let mut subnets: BTreeMap<NetworkTier, Vec<String>> = BTreeMap::new();
        for (i, tier) in bp.network.tiers.iter().enumerate() {
            let tier_name = match tier {
                NetworkTier::Public => "public",
                NetworkTier::Private => "private",
                NetworkTier::Isolated => "isolated",
            };
            for (j, (slot, zone)) in ZONE_SLOTS.iter().zip(&zones).enumerate() {
                let name = format!("{env}-{tier_name}-{slot}");
                let cidr = cidr_subnet(&block, 24 - ENVIRONMENT_BLOCK, (2 * i + j) as u32).unwrap_or_default();
                g.identity.insert(format!("subnet-{tier_name}-{slot}"), cidr.clone());
                let id = g.add(
                    Node::new(
                        "aws.subnet",
                        &name,
                        json!({"vpcId": r(&vpc, "id"), "cidrBlock": cidr, "availabilityZone": zone,
                           "tier": tier_name, "mapPublicIpOnLaunch": false, "tags": tags(None)}),
                    )
                    .after([vpc.clone()])
                    .immutable(&["cidrBlock", "availabilityZone"])
                    .outputs(&["id"]),
                );
                subnets.entry(*tier).or_default().push(id);
            }
        }
        let ids = |tier: NetworkTier| -> Vec<String> { subnets.get(&tier).cloned().unwrap_or_default() };
        let refs = |nodes: &[String]| -> Value { Value::Array(nodes.iter().map(|n| r(n, "id")).collect()) };
        let public = ids(NetworkTier::Public);
        let private: Vec<String> = {
            let p = ids(NetworkTier::Private);
            if p.is_empty() { ids(NetworkTier::Isolated) } else { p }
        };
        let data: Vec<String> = {
            let i = ids(NetworkTier::Isolated);
            if i.is_empty() { private.clone() } else { i }
        };
        if !public.is_empty() {
            let igw = g.add(
                Node::new("aws.internet-gateway", env, json!({"vpcId": r(&vpc, "id"), "tags": tags(None)}))
                    .after([vpc.clone()])
                    .outputs(&["id"]),
            );
            g.add(
            Node::new(
                "aws.route-table",
                &format!("{env}-public"),
                json!({"vpcId": r(&vpc, "id"), "routes": [{"destination": "0.0.0.0/0", "internetGatewayId": r(&igw, "id")}],
                       "subnetIds": refs(&public), "tags": tags(None)}),
            )
            .after(public.iter().cloned().chain([igw.clone()])),
        );
            let private_only = ids(NetworkTier::Private);
            if !private_only.is_empty() {
                // Production gets a NAT gateway per zone, each zone's private
                // subnets routed through their own: a zone's outage leaves
                // the other's nodes their way out. Other environments share
                // one (a NAT gateway costs by the hour).
                // <https://docs.aws.amazon.com/vpc/latest/userguide/nat-gateway-basics.html>
                let per_zone = input.environment.spec.env_type == EnvType::Production;
                let groups: Vec<(String, Vec<String>, usize)> = if per_zone {
                    ZONE_SLOTS
                        .iter()
                        .enumerate()
                        .filter(|(k, _)| *k < private_only.len() && *k < public.len())
                        .map(|(k, slot)| (format!("-{slot}"), vec![private_only[k].clone()], k))
                        .collect()
                } else {
                    vec![(String::new(), private_only.clone(), 0)]
                };
                for (suffix, subnets, k) in groups {
                    let (routes, deps) = if bp.network.egress == Egress::Nat {
                        // A public NAT gateway needs an Elastic IP of its own.
                        let eip = g.add(
                            Node::new(
                                "aws.eip",
                                &format!("{env}-nat{suffix}"),
                                json!({"domain": "vpc", "tags": tags(None)}),
                            )
                            .outputs(&["allocationId", "publicIp"]),
                        );
                        let nat = g.add(
                            Node::new(
                                "aws.nat-gateway",
                                &format!("{env}{suffix}"),
                                json!({"subnetId": r(&public[k], "id"), "allocationId": r(&eip, "allocationId"),
                                       "connectivity": "public", "tags": tags(None)}),
                            )
                            .after([public[k].clone(), igw.clone(), eip])
                            .outputs(&["id"]),
                        );
                        (json!([{"destination": "0.0.0.0/0", "natGatewayId": r(&nat, "id")}]), vec![nat])
                    } else {
                        (json!([]), vec![])
                    };
                    g.add(
                        Node::new(
                            "aws.route-table",
                            &format!("{env}-private{suffix}"),
                            json!({"vpcId": r(&vpc, "id"), "routes": routes, "subnetIds": refs(&subnets), "tags": tags(None)}),
                        )
                        .after(subnets.iter().cloned().chain(deps)),
                    );
                }
            }
        }

        // The load balancer and its security group: the only ingress from anywhere.
        let lb_sg = bp.ingress.as_ref().map(|i| {
        let from = if i.public { "0.0.0.0/0".to_string() } else { block.clone() };
        g.add(
            Node::new(
                "aws.security-group",
                &format!("{env}-lb"),
                json!({"vpcId": r(&vpc, "id"), "description": format!("paved {env}: load balancer"),
                       "ingress": [{"protocol": "tcp", "port": 443, "cidr": from}, {"protocol": "tcp", "port": 80, "cidr": from}],
                       "egress": [{"protocol": "tcp", "fromPort": 1, "toPort": 65535, "cidr": block}],
                       "tags": tags(None)}),
            )
            .after([vpc.clone()])
            .outputs(&["id"]),
        )
    });
        // The HTTPS listener's certificate: requested from ACM for the
        // environment's names, validated by DNS in the blueprint domain's zone.
        let certificate = domain.as_ref().map(|domain| {
            g.add(
                Node::new(
                    "aws.acm-certificate",
                    env,
                    json!({"domain": format!("{env}.{domain}"), "alternativeNames": [format!("*.{env}.{domain}")],
                       "zone": domain, "tags": tags(None)}),
                )
                .immutable(&["domain", "alternativeNames", "zone"])
                .outputs(&["arn"]),
            )
        });
        let lb = match (&bp.ingress, &lb_sg) {
            (Some(i), Some(sg)) => {
                let idle = seconds(&i.timeouts.idle);
                if !(1..=4000).contains(&idle) {
                    errors.push(PlanError::BadParameter {
                        parameter: "ingress.timeouts.idle".into(),
                        value: format!("{idle}s"),
                        field: "the AWS load balancer's idle timeout (1 to 4000 seconds)".into(),
                    });
                }
                let subnets = if i.public { &public } else { &private };
                Some(
                    g.add(
                        Node::new(
                            "aws.lb",
                            env,
                            json!({
                                // The load balancer and its target group share the name.
                                "name": target_group_name(env),
                                "vpcId": r(&vpc, "id"),
                                "type": "application",
                                "scheme": if i.public { "internet-facing" } else { "internal" },
                                "subnetIds": refs(subnets),
                                "securityGroupIds": [r(sg, "id")],
                                "idleTimeoutSeconds": idle,
                                "dropInvalidHeaderFields": true,
                            "deletionProtection": input.environment.spec.env_type == paved_model::EnvType::Production,
                                "listeners": match &certificate {
                                    Some(cert) => json!([
                                        {"port": 443, "protocol": "HTTPS", "sslPolicy": ssl_policy(i.tls.min_version),
                                         "certificateArn": r(cert, "arn")},
                                        {"port": 80, "protocol": "HTTP", "redirectTo": 443},
                                    ]),
                                    None => json!([{"port": 80, "protocol": "HTTP"}]),
                                },
                                "healthCheck": health_check(i),
                                "tags": tags(None),
                            }),
                        )
                        .after(subnets.iter().cloned().chain([sg.clone()]).chain(certificate.clone()))
                        .outputs(&["arn", "dnsName", "canonicalHostedZoneId"]),
                    ),
                )
            }
            _ => None,
        };

        // Compute: one cluster per environment, reachable only inside the VPC.
        let size = resolve::param("spec.compute.size", &bp.compute.size, &params);
        let replicas = resolve::param("spec.compute.replicas", &bp.compute.replicas, &params);
        let (size, replicas): (Size, u32) = match (size, replicas) {
            (Ok(s), Ok(r)) => (s, r),
            (s, r) => {
                errors.extend(s.err());
                errors.extend(r.err());
                return Err(errors);
            }
        };
        // The control plane and the nodes act through roles that may do only what EKS documents.
        let service_role = |g: &mut ResourceGraph, name: &str, service: &str, policies: &[&str]| {
            g.add(Node::new(
            "aws.iam-role",
            &format!("{env}-{name}"),
            json!({
                "name": format!("paved-{env}-{name}"),
                "assumeRolePolicy": {"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
                    "Principal": {"Service": service}, "Action": "sts:AssumeRole"}]},
                "managedPolicyArns": policies.iter().map(|p| format!("arn:{partition}:iam::aws:policy/{p}")).collect::<Vec<_>>(),
                "tags": tags(None),
            }),
        )
        .outputs(&["arn"]))
        };
        let cluster_role = service_role(&mut g, "eks-cluster", "eks.amazonaws.com", &["AmazonEKSClusterPolicy"]);
        let node_role = service_role(
            &mut g,
            "eks-nodes",
            "ec2.amazonaws.com",
            &["AmazonEKSWorkerNodePolicy", "AmazonEKS_CNI_Policy", "AmazonEC2ContainerRegistryReadOnly"],
        );
        let version = bp.compute.kubernetes_version.clone().unwrap_or_else(|| EKS_VERSION.into());
        let cluster_logs =
            service_logs(&mut g, &format!("{env}-eks"), format!("/aws/eks/paved-{env}/cluster"), tags(None));
        let cluster = g.add(
            Node::new(
                "aws.eks-cluster",
                env,
                json!({
                    "name": format!("paved-{env}"),
                    "version": version,
                    "roleArn": r(&cluster_role, "arn"),
                    "endpointPrivateAccess": true,
                    "endpointPublicAccess": false,
                    "subnetIds": refs(&private),
                    "secretsEncryptionKeyArn": r(&kms, "arn"),
                    "enabledLogTypes": ["api", "audit", "authenticator", "controllerManager", "scheduler"],
                    // Kubernetes access through EKS access entries only, and paved's
                    // provisioning role is not made the cluster's administrator
                    // (<https://docs.aws.amazon.com/eks/latest/userguide/grant-k8s-access.html>):
                    // in-cluster controllers act as their ServiceAccounts; people get
                    // access entries of their own.
                    "authenticationMode": "API",
                    "bootstrapClusterCreatorAdminPermissions": false,
                    "tags": tags(None),
                }),
            )
            .after(private.iter().cloned().chain([kms.clone(), cluster_role, cluster_logs]))
            .immutable(&["name", "endpointPrivateAccess", "secretsEncryptionKeyArn"])
            .outputs(&["arn", "endpoint", "name", "securityGroupId"]),
        );
        g.add(
            Node::new(
                "aws.eks-node-group",
                env,
                json!({
                    "clusterName": r(&cluster, "name"),
                    // Nodes follow the control plane (upgraded after it: this node comes after the cluster).
                    "version": version,
                    "nodeRoleArn": r(&node_role, "arn"),
                    "subnetIds": refs(&private),
                    "instanceType": node_class(size),
                    "desiredSize": replicas.max(2),
                    "minSize": 2,
                    "maxSize": replicas.max(2) * 2,
                    "tags": tags(None),
                }),
            )
            .after(private.iter().cloned().chain([cluster.clone(), node_role]))
            // EKS cannot move a managed node group to other subnets or
            // instance types (`UpdateNodegroupConfig` takes neither): a new group.
            .immutable(&["instanceType", "subnetIds"])
            .outputs(&["arn"]),
        );

        // Pods act as their service's role, trusted through the cluster's issuer (IRSA).
        let oidc = g.add(
            Node::new(
                "aws.iam-oidc-provider",
                env,
                json!({"url": r(&cluster, "oidcIssuer"), "clientIds": ["sts.amazonaws.com"], "tags": tags(None)}),
            )
            .after([cluster.clone()])
            .outputs(&["arn", "issuer"]),
        );
        let oidc = Oidc { arn: At::node(&oidc, "arn"), issuer: r(&oidc, "issuer") };
        let cluster_name = format!("paved-{env}");

        // The AWS Load Balancer Controller in the cluster puts pods behind
        // paved's target group (TargetGroupBinding): its own role, for its
        // ServiceAccount only, allowed to register targets in that group alone.
        if lb.is_some() {
            let account = if account_id.is_empty() { "*" } else { account_id.as_str() };
            g.add(
            Node::new(
                "aws.iam-role",
                &format!("{env}-lb-controller"),
                json!({
                    "name": lb_controller_role_name(env),
                    "webIdentity": web_identity(&oidc, "system:serviceaccount:kube-system:aws-load-balancer-controller"),
                    "policy": {"Version": "2012-10-17", "Statement": [
                        // Describe calls take no resource-level permissions.
                        {"Sid": "Read", "Effect": "Allow", "Resource": "*", "Action": [
                            "elasticloadbalancing:DescribeTargetGroups", "elasticloadbalancing:DescribeTargetHealth",
                            "elasticloadbalancing:DescribeLoadBalancers", "elasticloadbalancing:DescribeListeners",
                            "elasticloadbalancing:DescribeTags", "ec2:DescribeInstances", "ec2:DescribeNetworkInterfaces",
                            "ec2:DescribeSecurityGroups", "ec2:DescribeSubnets", "ec2:DescribeVpcs",
                            "ec2:DescribeAvailabilityZones"]},
                        // The route target groups of this cluster's namespaces (its own and its
                        // previews'), told apart by their `paved:cluster` tag
                        // (<https://docs.aws.amazon.com/service-authorization/latest/reference/list_awselasticloadbalancingv2.html>).
                        {"Sid": "ClusterTargetGroups", "Effect": "Allow",
                         "Action": ["elasticloadbalancing:RegisterTargets", "elasticloadbalancing:DeregisterTargets"],
                         "Resource": format!("arn:{partition}:elasticloadbalancing:{region}:{account}:targetgroup/*/*"),
                         "Condition": {"StringEquals": {"aws:ResourceTag/paved:cluster": cluster_name}}},
                    ]},
                    "tags": tags(None),
                }),
            )
            .after(oidc.arn.after.clone())
            .outputs(&["arn"]),
        );
        }
        // Targets are pod IPs (TargetGroupBinding `ip`), and pods carry the
        // cluster security group EKS put on the nodes: it admits the load
        // balancer's group. One rule for the cluster, so its previews need none.
        if let Some(sg) = &lb_sg {
            g.add(
                Node::new(
                    "aws.security-group-ingress",
                    &format!("{env}-lb-to-pods"),
                    json!({"groupId": r(&cluster, "securityGroupId"), "protocol": "tcp", "fromPort": 1, "toPort": 65535,
                           "sourceSecurityGroupId": r(sg, "id")}),
                )
                .after([cluster.clone(), sg.clone()]),
            );
        }
        let pod_blocks: Vec<String> = private
            .iter()
            .filter_map(|id| g.nodes.get(id).and_then(|n| n.properties["cidrBlock"].as_str()).map(str::to_string))
            .collect();
        Base {
            vpc: At::node(&vpc, "id"),
            block,
            data: At::nodes(&data, "id"),
            pod_blocks,
            lb_sg: lb_sg.map(|sg| At::node(&sg, "id")),
            lb: lb.map(|lb| LbAt {
                arn: At::node(&lb, "arn"),
                dns: r(&lb, "dnsName"),
                zone: r(&lb, "canonicalHostedZoneId"),
                tls: certificate.is_some(),
            }),
            dns_parent: env.to_string(),
            oidc,
            cluster: cluster_name,
        }
    };
    g.identity.insert("cluster".into(), base.cluster.clone());

    let mut shared = resolve::SharedResources::default();
    let mut all_bindings = BTreeMap::new();
    // A data-tier endpoint's clients, by the group named `KEY-SUFFIX`: (port, suffix, what, client groups).
    let mut db_clients: BTreeMap<String, (u16, &str, &str, BTreeSet<String>)> = BTreeMap::new();
    let scope = provision::Scope {
        environment: input.environment,
        blueprint: input.blueprint,
        parameters: &params,
        provider: paved_model::Provider::Aws,
    };
    for w in &input.services {
        let svc = w.metadata.name.as_str();
        // Each service gets a group; only the load balancer reaches its declared ports.
        let ports: BTreeSet<u16> = w
            .service
            .as_ref()
            .and_then(|s| s.ports.as_ref())
            .map(|p| p.values().map(|p| p.target_port.unwrap_or(p.port)).collect())
            .unwrap_or_default();
        let ingress: Vec<Value> = match &base.lb_sg {
            Some(sg) => {
                ports.iter().map(|p| json!({"protocol": "tcp", "port": p, "sourceSecurityGroupId": sg.value})).collect()
            }
            None => vec![],
        };
        let block = &base.block;
        let svc_sg = g.add(
            Node::new(
                "aws.security-group",
                svc,
                json!({"vpcId": base.vpc.value, "description": format!("paved {env}: service {svc}"), "ingress": ingress,
                       "egress": [{"protocol": "tcp", "fromPort": 443, "toPort": 443, "cidr": "0.0.0.0/0"}, {"protocol": "tcp", "fromPort": 1, "toPort": 65535, "cidr": block}],
                       "tags": tags(Some(svc))}),
            )
            .after(base.vpc.after.iter().chain(base.lb_sg.iter().flat_map(|sg| &sg.after)).cloned())
            .outputs(&["id"]),
        );
        let mut bindings: BTreeMap<String, ResourceBinding> = BTreeMap::new();
        for (rname, res) in &w.resources {
            let key = match shared.key(svc, rname, res) {
                Ok(key) => key,
                Err(conflict) => {
                    errors.push(conflict);
                    continue;
                }
            };
            // The platform team's provisioner, when one serves it, before any built-in.
            if let Some(provisioned) = provision::provisioned(&mut g, &scope, (svc, rname, res), &key) {
                match provisioned {
                    Ok(binding) => {
                        bindings.insert(rname.clone(), binding);
                    }
                    Err(e) => errors.push(e),
                }
                continue;
            }
            let binding = match res.kind.as_str() {
                // Values the environment provides: its secrets, resolved when applied.
                "environment" => ResourceBinding::environment(),
                kind @ ("postgres" | "mysql") => {
                    let rds = if kind == "mysql" { &RDS_MYSQL } else { &RDS_POSTGRES };
                    let Some(db) = bp.databases.get(&rds.blueprint) else {
                        errors.push(PlanError::Unavailable {
                            service: svc.into(),
                            resource: rname.clone(),
                            what: format!("a {kind} database"),
                            hint: format!("blueprint `{}` offers none", input.blueprint.metadata.name),
                        });
                        continue;
                    };
                    let field = |f: &str| format!("spec.databases.{kind}.{f}");
                    let class = resolve::param(&field("class"), &db.class, &params);
                    let backups = resolve::param(&field("backupRetentionDays"), &db.backup_retention_days, &params);
                    let ha = resolve::param(&field("highAvailability"), &db.high_availability, &params);
                    let (class, backups, ha): (Size, u32, bool) = match (class, backups, ha) {
                        (Ok(c), Ok(b), Ok(h)) => (c, b, h),
                        (c, b, h) => {
                            errors.extend(c.err());
                            errors.extend(b.err());
                            errors.extend(h.err());
                            continue;
                        }
                    };
                    db_clients
                        .entry(key.clone())
                        .or_insert((rds.port, "db", "database", BTreeSet::new()))
                        .3
                        .insert(svc_sg.clone());
                    let group = g.add(
                        Node::new(
                            "aws.db-subnet-group",
                            env,
                            json!({"name": format!("paved-{env}"), "subnetIds": base.data.value, "tags": tags(None)}),
                        )
                        .after(base.data.after.clone())
                        .outputs(&["name"]),
                    );
                    let db_sg = format!("aws.security-group/{key}-db");
                    let identifier = fit(&format!("paved-{env}-{key}"), RDS_IDENTIFIER);
                    let exports = rds.exports;
                    let db_logs: Vec<String> = exports
                        .iter()
                        .map(|log| {
                            let name = format!("/aws/rds/instance/{identifier}/{log}");
                            service_logs(&mut g, &format!("{key}-{log}"), name, tags(Some(svc)))
                        })
                        .collect();
                    let node = Node::new(
                        "aws.rds-instance",
                        &key,
                        json!({
                            "identifier": identifier,
                            "engine": rds.engine,
                            "engineVersion": db.version.clone().unwrap_or_else(|| rds.version.into()),
                            "instanceClass": db_class(class),
                            "allocatedStorage": 20,
                            // Storage grows by itself up to this (GiB) instead of filling up
                            // (<https://docs.aws.amazon.com/AmazonRDS/latest/UserGuide/USER_PIOPS.Autoscaling.html>).
                            "maxAllocatedStorage": 100,
                            "storageEncrypted": true,
                            "kmsKeyArn": r(&kms, "arn"),
                            "publiclyAccessible": false,
                            "backupRetentionDays": backups,
                            "multiAz": ha,
                            "dbSubnetGroup": r(&group, "name"),
                            "securityGroupIds": [r(&db_sg, "id")],
                            "manageMasterUserPassword": true,
                            "masterUserSecretKmsKeyArn": r(&kms, "arn"),
                            "iamDatabaseAuthentication": true,
                            "autoMinorVersionUpgrade": true,
                            "cloudwatchLogsExports": exports,
                            "performanceInsightsKmsKeyArn": rds.insights(db_class(class)).then(|| r(&kms, "arn")),
                            "deletionProtection": input.environment.spec.env_type == paved_model::EnvType::Production,
                            // Production's data outlives its instance: a final snapshot and the automated backups.
                            "finalSnapshot": input.environment.spec.env_type == paved_model::EnvType::Production,
                            "databaseName": key.replace('-', "_"),
                            "tags": tags(Some(svc)),
                        }),
                    )
                    .after([group, kms.clone(), db_sg].into_iter().chain(db_logs))
                    .outputs(&["host", "port", "name", "database", "username", "masterSecretArn"])
                    .immutable(&["identifier", "engine", "storageEncrypted", "databaseName"]);
                    let instance = g.add(node);
                    // The service connects as a login of its own, never as the master user.
                    let login = Node::new(
                        "aws.db-user",
                        &format!("{key}-{svc}"),
                        json!({
                            "host": r(&instance, "host"),
                            "port": r(&instance, "port"),
                            "name": r(&instance, "name"),
                            "database": r(&instance, "database"),
                            "identifier": identifier,
                            "masterSecretArn": r(&instance, "masterSecretArn"),
                            "engine": rds.engine,
                            "username": fit(&db_username(svc), rds.login_limit),
                            "secretName": format!("paved/{env}/db/{key}/{svc}"),
                            "kmsKeyArn": r(&kms, "arn"),
                            "login": true,
                            "tags": tags(Some(svc)),
                        }),
                    )
                    .after([instance, kms.clone()])
                    .immutable(&["username", "secretName", "identifier", "engine"])
                    .outputs(&["host", "port", "name", "database", "username", "password"])
                    .sensitive(&["password"]);
                    ResourceBinding {
                        node: g.add(login),
                        outputs: resolve::outputs(&["host", "port", "name", "database", "username", "password"]),
                    }
                }
                // Redis on ElastiCache: a replication group in the data subnets, encrypted in
                // transit (TLS) and at rest with the environment's key, an AUTH token paved
                // generates and seals; failover across zones when the blueprint asks for it.
                "redis" => {
                    let Some(db) = bp.databases.get(&DatabaseEngine::Redis) else {
                        errors.push(PlanError::Unavailable {
                            service: svc.into(),
                            resource: rname.clone(),
                            what: "redis".into(),
                            hint: format!("blueprint `{}` offers none", input.blueprint.metadata.name),
                        });
                        continue;
                    };
                    let class = resolve::param("spec.databases.redis.class", &db.class, &params);
                    let backups =
                        resolve::param("spec.databases.redis.backupRetentionDays", &db.backup_retention_days, &params);
                    let ha = resolve::param("spec.databases.redis.highAvailability", &db.high_availability, &params);
                    let (class, backups, ha): (Size, u32, bool) = match (class, backups, ha) {
                        (Ok(c), Ok(b), Ok(h)) => (c, b, h),
                        (c, b, h) => {
                            errors.extend(c.err());
                            errors.extend(b.err());
                            errors.extend(h.err());
                            continue;
                        }
                    };
                    db_clients
                        .entry(key.clone())
                        .or_insert((6379, "redis", "cache", BTreeSet::new()))
                        .3
                        .insert(svc_sg.clone());
                    let group = g.add(
                        Node::new(
                            "aws.elasticache-subnet-group",
                            env,
                            json!({"name": format!("paved-{env}"), "subnetIds": base.data.value, "tags": tags(None)}),
                        )
                        .after(base.data.after.clone())
                        .outputs(&["name"]),
                    );
                    let token = g.add(
                        Node::new("paved.secret", &format!("{key}--auth"), json!({"length": provision::SECRET_LENGTH}))
                            .outputs(&["value"])
                            .sensitive(&["value"])
                            .immutable(&["length"]),
                    );
                    let cache_sg = format!("aws.security-group/{key}-redis");
                    let node = Node::new(
                        "aws.elasticache-replication-group",
                        &key,
                        json!({
                            "id": fit(&format!("paved-{env}-{key}"), ELASTICACHE_ID).replace("--", "-"),
                            "description": format!("paved {env}: {key}"),
                            "engine": "redis",
                            "engineVersion": db.version.clone().unwrap_or_else(|| "7.1".into()),
                            "nodeType": cache_class(class),
                            // Automatic failover needs a replica; Multi-AZ needs automatic failover.
                            "nodes": if ha { 2 } else { 1 },
                            "automaticFailover": ha,
                            "multiAz": ha,
                            "transitEncryption": true,
                            "atRestEncryption": true,
                            "kmsKeyArn": r(&kms, "arn"),
                            "authToken": r(&token, "value"),
                            "subnetGroup": r(&group, "name"),
                            "securityGroupIds": [r(&cache_sg, "id")],
                            // ElastiCache keeps automatic snapshots for at most 35 days.
                            "snapshotRetentionDays": backups.min(35),
                            "tags": tags(Some(svc)),
                        }),
                    )
                    .after([group, kms.clone(), cache_sg, token])
                    .outputs(&["host", "port", "username", "password"])
                    .sensitive(&["password"])
                    .immutable(&[
                        "id",
                        "engine",
                        "transitEncryption",
                        "atRestEncryption",
                        "kmsKeyArn",
                        "subnetGroup",
                    ]);
                    ResourceBinding {
                        node: g.add(node),
                        outputs: resolve::outputs(&["host", "port", "username", "password"]),
                    }
                }
                "s3" => {
                    let node = Node::new(
                        "aws.s3-bucket",
                        &key,
                        json!({
                            "bucket": fit(&format!("paved-{account_id}-{env}-{key}"), S3_BUCKET),
                            // Every call names the owner: bucket names are global.
                            "expectedBucketOwner": account_id,
                            "encryption": {"sseAlgorithm": "aws:kms", "kmsKeyArn": r(&kms, "arn"), "bucketKeyEnabled": true},
                            "publicAccessBlock": {"blockPublicAcls": true, "blockPublicPolicy": true, "ignorePublicAcls": true, "restrictPublicBuckets": true},
                            "versioning": true,
                            // Only a non-production bucket is emptied when its environment goes.
                            "forceDestroy": input.environment.spec.env_type != paved_model::EnvType::Production,
                            "tags": tags(Some(svc)),
                        }),
                    )
                    .after([kms.clone()])
                    .immutable(&["bucket"])
                    .outputs(&["name", "arn", "region"]);
                    ResourceBinding { node: g.add(node), outputs: resolve::outputs(&["name", "arn", "region"]) }
                }
                // AMQP 0-9-1 needs a RabbitMQ broker (SQS speaks no AMQP): Amazon MQ for
                // RabbitMQ, private in the data subnets, one administrative user whose
                // password paved generates and seals.
                "amqp" => {
                    let production = input.environment.spec.env_type == paved_model::EnvType::Production;
                    let subnets: Vec<Value> = match &base.data.value {
                        Value::Array(ids) => ids.clone(),
                        one => vec![one.clone()],
                    };
                    // A single-instance broker takes exactly one subnet; a cluster (three nodes
                    // across zones) needs mq.m5 instances and a subnet per zone
                    // (<https://docs.aws.amazon.com/amazon-mq/latest/developer-guide/rabbitmq-broker-architecture.html>).
                    let (mode, instance, subnets) = if production && subnets.len() >= 2 {
                        ("CLUSTER_MULTI_AZ", "mq.m5.large", subnets)
                    } else {
                        (
                            "SINGLE_INSTANCE",
                            if production { "mq.m5.large" } else { "mq.t3.micro" },
                            subnets[..1].to_vec(),
                        )
                    };
                    let password = g.add(
                        Node::new(
                            "paved.secret",
                            &format!("{key}--broker"),
                            json!({"length": provision::SECRET_LENGTH}),
                        )
                        .outputs(&["value"])
                        .sensitive(&["value"])
                        .immutable(&["length"]),
                    );
                    db_clients
                        .entry(key.clone())
                        .or_insert((5671, "mq", "broker", BTreeSet::new()))
                        .3
                        .insert(svc_sg.clone());
                    let broker_sg = format!("aws.security-group/{key}-mq");
                    let node = Node::new(
                        "aws.mq-broker",
                        &key,
                        json!({
                            "name": fit(&format!("paved-{env}-{key}"), MQ_BROKER_NAME),
                            "engineType": "RABBITMQ",
                            "engineVersion": "3.13",
                            // 3.13 and later brokers must take minor upgrades
                            // (<https://docs.aws.amazon.com/amazon-mq/latest/developer-guide/rabbitmq-version-management.html>).
                            "autoMinorVersionUpgrade": true,
                            "deploymentMode": mode,
                            "hostInstanceType": instance,
                            "publiclyAccessible": false,
                            "subnetIds": subnets,
                            "securityGroupIds": [r(&broker_sg, "id")],
                            // RabbitMQ brokers are encrypted with an AWS-owned key; a customer key
                            // applies to ActiveMQ only
                            // (<https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/aws-properties-amazonmq-broker-encryptionoptions.html>).
                            "generalLogs": true,
                            "username": "paved",
                            "password": r(&password, "value"),
                            "tags": tags(Some(svc)),
                        }),
                    )
                    .after(base.data.after.iter().cloned().chain([broker_sg, password]))
                    .outputs(&["host", "port", "vhost", "username", "password", "arn"])
                    .sensitive(&["password"])
                    .immutable(&[
                        "name",
                        "engineType",
                        "deploymentMode",
                        "publiclyAccessible",
                        "subnetIds",
                        "username",
                    ]);
                    ResourceBinding {
                        node: g.add(node),
                        outputs: resolve::outputs(&["host", "port", "vhost", "username", "password"]),
                    }
                }
                "queue" => {
                    let node = Node::new(
                        "aws.sqs-queue",
                        &key,
                        json!({"name": fit(&format!("paved-{env}-{key}"), SQS_QUEUE), "kmsMasterKeyId": r(&kms, "arn"), "tags": tags(Some(svc))}),
                    )
                    .after([kms.clone()])
                    .immutable(&["name"])
                    .outputs(&["url", "arn", "name"]);
                    ResourceBinding { node: g.add(node), outputs: resolve::outputs(&["url", "arn", "name"]) }
                }
                "dns" | "route" => {
                    let Some(lb) = &base.lb else {
                        errors.push(PlanError::Unavailable {
                            service: svc.into(),
                            resource: rname.clone(),
                            what: "an ingress".into(),
                            hint: format!("blueprint `{}` declares no `spec.ingress`", input.blueprint.metadata.name),
                        });
                        continue;
                    };
                    let params = res.params.clone().unwrap_or_default();
                    // Under the blueprint's domain a route has a name of its own, written in its zone.
                    let default_host = domain.as_ref().map(|d| route_host(svc, env, &base.dns_parent, d));
                    let host = match resource_host(w, rname, default_host) {
                        Ok(host) => host,
                        Err(e) => {
                            errors.push(e);
                            continue;
                        }
                    };
                    let mut after = lb.arn.after.clone();
                    if let (Some(d), Some(h)) = (&domain, &host)
                        && h.ends_with(&format!(".{d}"))
                    {
                        let record = format!("aws.dns-record/{h}");
                        if !g.nodes.contains_key(&record) {
                            g.add(
                                Node::new(
                                    "aws.dns-record",
                                    h,
                                    json!({"zone": d, "name": h, "type": "A",
                                           "aliasTarget": {"dnsName": lb.dns, "hostedZoneId": lb.zone}}),
                                )
                                .after(lb.arn.after.clone()),
                            );
                        }
                        after.push(record);
                    }
                    if res.kind == "dns" {
                        // A name only: the routes that use it send the traffic.
                        let node = Node::new(
                            "aws.dns-name",
                            &key,
                            json!({"host": host, "loadBalancerDns": lb.dns, "scheme": if lb.tls { "https" } else { "http" }}),
                        )
                        .after(after)
                        .outputs(&["host", "url"]);
                        bindings.insert(
                            rname.clone(),
                            ResourceBinding { node: g.add(node), outputs: resolve::outputs(&["host", "url"]) },
                        );
                        continue;
                    }
                    // The service's own target group, which its pods join (the
                    // cluster's TargetGroupBinding), and a listener rule sending
                    // the route's host and path there.
                    let group = format!("aws.lb-target-group/{env}-{svc}");
                    if !g.nodes.contains_key(&group) {
                        let mut group_tags = tags(Some(svc));
                        group_tags["paved:cluster"] = json!(base.cluster);
                        let port = ports.iter().next().copied().unwrap_or(80);
                        let health = bp.ingress.as_ref().map(health_check).unwrap_or(Value::Null);
                        g.add(
                            Node::new(
                                "aws.lb-target-group",
                                &format!("{env}-{svc}"),
                                json!({"name": route_target_group_name(env, svc), "vpcId": base.vpc.value, "protocol": "HTTP",
                                       "port": port, "targetType": "ip", "healthCheck": health, "tags": group_tags}),
                            )
                            .after(base.vpc.after.clone())
                            .immutable(&["name", "vpcId", "protocol", "port", "targetType"])
                            .outputs(&["arn"]),
                        );
                    }
                    after.push(group.clone());
                    let path = params.get("path").and_then(Value::as_str).unwrap_or("/").to_string();
                    let node = Node::new(
                        "aws.lb-route",
                        &key,
                        json!({"loadBalancerArn": lb.arn.value, "loadBalancerDns": lb.dns,
                               "listenerPort": if lb.tls { 443 } else { 80 }, "scheme": if lb.tls { "https" } else { "http" },
                               "targetGroupArn": r(&group, "arn"), "kind": res.kind, "service": svc,
                               "host": host, "path": path, "tags": tags(Some(svc))}),
                    )
                    .after(after)
                    // The rule is found again by its group, host and path: a new host or path is a new rule.
                    .immutable(&["loadBalancerArn", "listenerPort", "targetGroupArn", "host", "path"])
                    .outputs(&["host", "url", "priority"]);
                    ResourceBinding { node: g.add(node), outputs: resolve::outputs(&["host", "url"]) }
                }
                "service" => {
                    let target =
                        res.params.as_ref().and_then(|p| p.get("name")).and_then(Value::as_str).unwrap_or(rname);
                    // Callers reach the target through its Kubernetes Service: the Score `port`, not the container's.
                    let port = input
                        .services
                        .iter()
                        .find(|t| t.metadata.name == target)
                        .and_then(|t| t.service.as_ref()?.ports.as_ref()?.values().next().map(|p| p.port));
                    let Some(port) = port else {
                        errors.push(PlanError::Unavailable {
                            service: svc.into(),
                            resource: rname.clone(),
                            what: format!("service `{target}` with a port in environment `{env}`"),
                            hint: format!("deploy `{target}` here with `service.ports`, or set `params.name`"),
                        });
                        continue;
                    };
                    let node = Node::new(
                        "aws.service-link",
                        &key,
                        json!({"target": target, "host": format!("{target}.{env}.svc.cluster.local"), "port": port}),
                    )
                    .outputs(&["host", "port", "url"]);
                    ResourceBinding { node: g.add(node), outputs: resolve::outputs(&["host", "port", "url"]) }
                }
                // Score's `service-port`: `params.workload` and `params.port` (a port name of its
                // `service.ports`) give `hostname` and `port` of its Kubernetes Service.
                "service-port" => {
                    let param = |name: &str| res.params.as_ref().and_then(|p| p.get(name)).and_then(Value::as_str);
                    let target = param("workload").unwrap_or_default();
                    let port_name = param("port").unwrap_or_default();
                    let ports = input
                        .services
                        .iter()
                        .find(|t| t.metadata.name == target)
                        .and_then(|t| t.service.as_ref()?.ports.as_ref());
                    let Some(port) = ports.and_then(|p| p.get(port_name)).map(|p| p.port) else {
                        let declared =
                            ports.map(|p| p.keys().cloned().collect::<Vec<_>>().join(", ")).unwrap_or_default();
                        errors.push(PlanError::Unavailable {
                            service: svc.into(),
                            resource: rname.clone(),
                            what: format!("port `{port_name}` of workload `{target}` in environment `{env}`"),
                            hint: if declared.is_empty() {
                                "set `params.workload` and `params.port` to a workload here and one of its `service.ports`"
                                    .into()
                            } else {
                                format!("`{target}` declares: {declared}")
                            },
                        });
                        continue;
                    };
                    let host = format!("{target}.{env}.svc.cluster.local");
                    let node = Node::new(
                        "aws.service-link",
                        &key,
                        json!({"target": target, "host": host, "hostname": host, "port": port}),
                    )
                    .outputs(&["host", "hostname", "port", "url"]);
                    ResourceBinding {
                        node: g.add(node),
                        outputs: resolve::outputs(&["hostname", "port", "host", "url"]),
                    }
                }
                other => {
                    errors.push(PlanError::UnsupportedResource {
                        service: svc.into(),
                        resource: rname.clone(),
                        kind: other.into(),
                        class: res.class.as_deref().map(Box::from),
                        provider: PROVIDER,
                        supported: SUPPORTED,
                    });
                    continue;
                }
            };
            bindings.insert(rname.clone(), binding);
        }
        // Workloads are rendered for the cluster later; their placeholders must be satisfiable now.
        for (cname, c) in &w.containers {
            for (k, v) in c.variables.iter().flatten() {
                if let Err(e) = resolve::rewrite(w, &format!("containers.{cname}.variables.{k}"), v, &bindings) {
                    errors.push(e);
                }
            }
        }
        g.add(pod_role(PodRole {
            env,
            svc,
            partition,
            region,
            account_id: &account_id,
            oidc: &base.oidc,
            kms: &kms,
            bindings: &bindings,
            tags: tags(Some(svc)),
        }));
        all_bindings.insert(svc.to_string(), bindings);
    }
    // Pods take their addresses from the cluster's (private) subnets and
    // carry the nodes' group, not their service's: the database admits those
    // subnets on its port, and the namespace's NetworkPolicies narrow that to
    // the services that declared the database.
    let pod_blocks = &base.pod_blocks;
    for (key, (port, suffix, what, clients)) in db_clients {
        let ingress: Vec<Value> = clients
            .iter()
            .map(|c| json!({"protocol": "tcp", "port": port, "sourceSecurityGroupId": r(c, "id")}))
            .chain(pod_blocks.iter().map(|b| json!({"protocol": "tcp", "port": port, "cidr": b})))
            .collect();
        g.add(
            Node::new(
                "aws.security-group",
                &format!("{key}-{suffix}"),
                json!({"vpcId": base.vpc.value, "description": format!("paved {env}: {what} {key}"),
                       "ingress": ingress,
                       "egress": [], "tags": tags(None)}),
            )
            .after(base.vpc.after.iter().cloned().chain(clients))
            .outputs(&["id"]),
        );
    }
    if errors.is_empty() { Ok(Translation { graph: g, bindings: all_bindings }) } else { Err(errors) }
}
