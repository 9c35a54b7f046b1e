//! The AWS provider end to end: the real `paved` binary applies the
//! examples' `aws-eu` environments through the AWS SDK against a real AWS
//! API emulator (moto), keylessly (paved's own token → STS), with every
//! call counted by a proxy between the two (`support/aws_proxy.py`). What
//! exists is checked through the emulator with boto3, not through paved.
//!
//! Needs `PAVED_TEST_PYTHON` with moto[server] and boto3 (scripts/test installs them).

mod support;

use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::process::{Output, Stdio};
use std::time::Duration;
use support::{AwsProxy, Moto, Platform, RdsMysql, TRUST, ZONE, mutating, py};

/// Everything that exists for an environment, by kind, as AWS lists it.
const INVENTORY: &str = r#"
import json, sys, boto3
endpoint, env, region = sys.argv[1:4]
c = lambda s: boto3.client(s, endpoint_url=endpoint, region_name=region)
ec2 = c("ec2")
mine = [{"Name": "tag:paved:environment", "Values": [env]}]
def tagged(items):
    return [i for i in items if {"Key": "paved:environment", "Value": env} in i.get("Tags", [])]
out = {
    "vpc": len(tagged(ec2.describe_vpcs(Filters=mine)["Vpcs"])),
    "subnet": len(tagged(ec2.describe_subnets(Filters=mine)["Subnets"])),
    "internet-gateway": len(tagged(ec2.describe_internet_gateways(Filters=mine)["InternetGateways"])),
    "eip": len(tagged(ec2.describe_addresses(Filters=mine)["Addresses"])),
    "nat-gateway": len([n for n in tagged(ec2.describe_nat_gateways()["NatGateways"]) if n["State"] not in ("deleted", "deleting")]),
    "route-table": len(tagged(ec2.describe_route_tables(Filters=mine)["RouteTables"])),
    "security-group": len([g for g in tagged(ec2.describe_security_groups(Filters=mine)["SecurityGroups"]) if g["GroupName"] != "default"]),
    "flow-log": len(tagged(ec2.describe_flow_logs()["FlowLogs"])),
}
kms = c("kms")
keys = 0
for k in kms.list_keys()["Keys"]:
    meta = kms.describe_key(KeyId=k["KeyId"])["KeyMetadata"]
    tags = kms.list_resource_tags(KeyId=k["KeyId"]).get("Tags", [])
    if meta["KeyState"] != "PendingDeletion" and {"TagKey": "paved:environment", "TagValue": env} in tags:
        keys += 1
out["kms-key"] = keys
# paved's own, EKS's control plane's and RDS's exports (all made by paved, encrypted with the environment's key).
logs = c("logs")
groups = [g for prefix in (f"/paved/{env}/", f"/aws/eks/paved-{env}/", f"/aws/rds/instance/paved-{env}-")
          for g in logs.describe_log_groups(logGroupNamePrefix=prefix)["logGroups"]]
out["log-group"] = len(groups)
out["unencrypted-log-group"] = len([g for g in groups if not g.get("kmsKeyId")])
out["iam-role"] = len([r for r in c("iam").list_roles()["Roles"] if r["RoleName"].startswith(f"paved-{env}-")])
eks = c("eks")
clusters = [n for n in eks.list_clusters()["clusters"] if n == f"paved-{env}"]
out["eks-cluster"] = len(clusters)
out["eks-node-group"] = sum(len(eks.list_nodegroups(clusterName=n)["nodegroups"]) for n in clusters)
# The cluster security group's rules admitting one of the environment's own groups.
ours = {g["GroupId"] for g in tagged(ec2.describe_security_groups(Filters=mine)["SecurityGroups"])}
out["security-group-ingress"] = 0
for n in clusters:
    sg = eks.describe_cluster(name=n)["cluster"]["resourcesVpcConfig"].get("clusterSecurityGroupId")
    for g in ec2.describe_security_groups(GroupIds=[sg])["SecurityGroups"] if sg else []:
        out["security-group-ingress"] += sum(1 for p in g["IpPermissions"] for pair in p.get("UserIdGroupPairs", []) if pair["GroupId"] in ours)
elb = c("elbv2")
out["lb"] = len([l for l in elb.describe_load_balancers()["LoadBalancers"] if l["LoadBalancerName"] == f"paved-{env}"])
groups = {g["TargetGroupArn"] for g in elb.describe_target_groups()["TargetGroups"] if g["TargetGroupName"].startswith(f"paved-{env}-")}
out["lb-target-group"] = len(groups)
# Listener rules forwarding to those groups, on whichever load balancer (a preview's are on its host's).
out["lb-route"] = sum(1 for l in elb.describe_load_balancers()["LoadBalancers"]
    for ls in elb.describe_listeners(LoadBalancerArn=l["LoadBalancerArn"])["Listeners"]
    for rule in elb.describe_rules(ListenerArn=ls["ListenerArn"])["Rules"]
    if any(a.get("TargetGroupArn") in groups for a in rule["Actions"]))
rds = c("rds")
out["db-subnet-group"] = len([g for g in rds.describe_db_subnet_groups()["DBSubnetGroups"] if g["DBSubnetGroupName"] == f"paved-{env}"])
out["rds-instance"] = len([d for d in rds.describe_db_instances()["DBInstances"] if d["DBInstanceIdentifier"].startswith(f"paved-{env}-")])
out["s3-bucket"] = len([b for b in c("s3").list_buckets()["Buckets"] if f"-{env}-" in b["Name"]])
out["sqs-queue"] = len([q for q in c("sqs").list_queues(QueueNamePrefix=f"paved-{env}-").get("QueueUrls", [])])
secrets = [x["Name"] for x in c("secretsmanager").list_secrets()["SecretList"]
           if x["Name"].startswith(f"paved/{env}/") and "DeletedDate" not in x]
# A service's database login keeps its password in a secret of its own.
out["db-user"] = len([n for n in secrets if n.startswith(f"paved/{env}/db/")])
out["secret"] = len(secrets) - out["db-user"]
out["acm-certificate"] = len([x for x in c("acm").list_certificates()["CertificateSummaryList"]
    if x["DomainName"] == f"{env}.example.com"])
r53 = c("route53")
zone = [z for z in r53.list_hosted_zones()["HostedZones"] if z["Name"] == "example.com."][0]["Id"]
out["dns-record"] = len([x for x in r53.list_resource_record_sets(HostedZoneId=zone)["ResourceRecordSets"]
    if x["Type"] == "A" and x["Name"].endswith(f".{env}.example.com.")])
iam = c("iam")
out["iam-oidc-provider"] = len([p for p in iam.list_open_id_connect_providers()["OpenIDConnectProviderList"]
    if {"Key": "paved:environment", "Value": env} in iam.get_open_id_connect_provider(OpenIDConnectProviderArn=p["Arn"]).get("Tags", [])])
print(json.dumps(out))
"#;

/// The HTTPS listener's certificate and the web route's record.
const NAMES: &str = r#"
import json, sys, boto3
endpoint, env, region = sys.argv[1:4]
elb = boto3.client("elbv2", endpoint_url=endpoint, region_name=region)
lb = elb.describe_load_balancers(Names=[f"paved-{env}"])["LoadBalancers"][0]
https = [l for l in elb.describe_listeners(LoadBalancerArn=lb["LoadBalancerArn"])["Listeners"] if l["Port"] == 443][0]
cert = boto3.client("acm", endpoint_url=endpoint, region_name=region).describe_certificate(
    CertificateArn=https["Certificates"][0]["CertificateArn"])["Certificate"]
r53 = boto3.client("route53", endpoint_url=endpoint)
zone = [z for z in r53.list_hosted_zones()["HostedZones"] if z["Name"] == "example.com."][0]["Id"]
records = {x["Name"]: x for x in r53.list_resource_record_sets(HostedZoneId=zone)["ResourceRecordSets"]}
web = records.get(f"web.{env}.example.com.", {})
groups = {g["TargetGroupArn"]: g["TargetGroupName"] for g in elb.describe_target_groups()["TargetGroups"]}
rules = [{"hosts": [v for c in r["Conditions"] if c["Field"] == "host-header" for v in c.get("HostHeaderConfig", {}).get("Values", c.get("Values", []))],
          "group": groups.get(r["Actions"][0].get("TargetGroupArn"))}
         for r in elb.describe_rules(ListenerArn=https["ListenerArn"])["Rules"] if not r["IsDefault"]]
print(json.dumps({"status": cert["Status"], "domain": cert["DomainName"], "sans": cert["SubjectAlternativeNames"], "rules": rules,
                  "web": web.get("AliasTarget", {}).get("DNSName", "").rstrip("."), "lb": lb["DNSName"],
                  "validation": [o["ResourceRecord"]["Name"] in records for o in cert["DomainValidationOptions"]]}))
"#;

/// A service's pod role as IAM has it: its trust, its inline policy, and
/// the issuer of the environment's cluster.
const POD_ROLE: &str = r#"
import json, sys, boto3
endpoint, env, region, service = sys.argv[1:5]
iam = boto3.client("iam", endpoint_url=endpoint)
role = iam.get_role(RoleName=f"paved-{env}-svc-{service}")["Role"]
policy = iam.get_role_policy(RoleName=role["RoleName"], PolicyName="paved")["PolicyDocument"]
issuer = boto3.client("eks", endpoint_url=endpoint, region_name=region).describe_cluster(name=f"paved-{env}")["cluster"]["identity"]["oidc"]["issuer"]
print(json.dumps({"trust": role["AssumeRolePolicyDocument"], "policy": policy, "issuer": issuer}))
"#;

/// A service's secret in Secrets Manager, as the cluster's External Secrets
/// Operator reads it, the service's own database login (its secret) and the
/// master credentials RDS keeps for the database.
const SERVICE_SECRET: &str = r#"
import json, sys, boto3
endpoint, env, region, service = sys.argv[1:5]
sm = boto3.client("secretsmanager", endpoint_url=endpoint, region_name=region)
described = sm.describe_secret(SecretId=f"paved/{env}/{service}")
value = json.loads(sm.get_secret_value(SecretId=f"paved/{env}/{service}")["SecretString"])
login = json.loads(sm.get_secret_value(SecretId=f"paved/{env}/db/payments-db/{service}")["SecretString"])
rds = boto3.client("rds", endpoint_url=endpoint, region_name=region)
db = rds.describe_db_instances(DBInstanceIdentifier=f"paved-{env}-payments-db")["DBInstances"][0]
master = json.loads(sm.get_secret_value(SecretId=db["MasterUserSecret"]["SecretArn"])["SecretString"])
print(json.dumps({"kms": described.get("KmsKeyId"), "value": value, "login": login, "master": master,
                  "host": db["Endpoint"]["Address"]}))
"#;

/// `SELECT` on the test PostgreSQL behind the RDS endpoints, with psql: rows as `a|b` lines.
fn sql(url: &str, query: &str) -> String {
    let out = std::process::Command::new("psql")
        .args([url, "-tAc", query])
        .output()
        .expect("psql (Debian postgresql-client)");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Edits made in the "console": a port opened to the world, a backup
/// retention changed, a tag removed, a subnet deleted, a pod role's trust
/// widened to every ServiceAccount.
const CONSOLE_EDITS: &str = r#"
import json, sys, boto3
endpoint, env, region = sys.argv[1:4]
ec2 = boto3.client("ec2", endpoint_url=endpoint, region_name=region)
by_name = lambda name: [{"Name": "tag:Name", "Values": [name]}]
sg = ec2.describe_security_groups(Filters=by_name(f"paved-{env}-api"))["SecurityGroups"][0]["GroupId"]
ec2.authorize_security_group_ingress(GroupId=sg, IpPermissions=[{"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}])
rds = boto3.client("rds", endpoint_url=endpoint, region_name=region)
rds.modify_db_instance(DBInstanceIdentifier=f"paved-{env}-payments-db", BackupRetentionPeriod=9, ApplyImmediately=True)
vpc = ec2.describe_vpcs(Filters=by_name(f"paved-{env}-{env}"))["Vpcs"][0]["VpcId"]
ec2.delete_tags(Resources=[vpc], Tags=[{"Key": "paved:blueprint"}])
subnet = ec2.describe_subnets(Filters=by_name(f"paved-{env}-{env}-public-b"))["Subnets"][0]["SubnetId"]
ec2.delete_subnet(SubnetId=subnet)
iam = boto3.client("iam", endpoint_url=endpoint)
try:
    trust = iam.get_role(RoleName=f"paved-{env}-svc-archive")["Role"]["AssumeRolePolicyDocument"]
    trust["Statement"][0]["Condition"] = {"StringLike": {k: "*" for k in trust["Statement"][0]["Condition"]["StringEquals"]}}
    iam.update_assume_role_policy(RoleName=f"paved-{env}-svc-archive", PolicyDocument=json.dumps(trust))
except iam.exceptions.NoSuchEntityException:
    pass  # the archive service is not in this test's environment
sm = boto3.client("secretsmanager", endpoint_url=endpoint, region_name=region)
sm.put_secret_value(SecretId=f"paved/{env}/api", SecretString=json.dumps({"DATABASE_URL": "postgres://attacker@evil:5432/x"}))
# Tags a sweep reads from the tagging API, not from the resource: a key's and a log group's.
kms = boto3.client("kms", endpoint_url=endpoint, region_name=region)
key = kms.describe_key(KeyId=f"alias/paved/{env}")["KeyMetadata"]["KeyId"]
kms.tag_resource(KeyId=key, Tags=[{"TagKey": "paved:blueprint", "TagValue": "someone-else"}])
logs = boto3.client("logs", endpoint_url=endpoint, region_name=region)
group = logs.describe_log_groups(logGroupNamePrefix=f"/paved/{env}/vpc-flow-logs")["logGroups"][0]["arn"].removesuffix(":*")
logs.untag_resource(resourceArn=group, tagKeys=["paved:environment"])
# What a sweep reads from listings: a certificate's tag, a login secret's tag,
# the cluster's OIDC provider's tag, and a DNS record pointed elsewhere.
acm = boto3.client("acm", endpoint_url=endpoint, region_name=region)
cert = [c["CertificateArn"] for c in acm.list_certificates()["CertificateSummaryList"] if c["DomainName"] == f"{env}.example.com"][0]
acm.add_tags_to_certificate(CertificateArn=cert, Tags=[{"Key": "paved:blueprint", "Value": "someone-else"}])
logins = [x["Name"] for x in sm.list_secrets(Filters=[{"Key": "name", "Values": [f"paved/{env}/db/"]}])["SecretList"]][:1]
for name in logins:
    sm.untag_resource(SecretId=name, TagKeys=["paved:environment"])
print(json.dumps(logins))
for p in iam.list_open_id_connect_providers()["OpenIDConnectProviderList"]:
    tags = {t["Key"]: t["Value"] for t in iam.get_open_id_connect_provider(OpenIDConnectProviderArn=p["Arn"])["Tags"]}
    if tags.get("paved:environment") == env:
        iam.tag_open_id_connect_provider(OpenIDConnectProviderArn=p["Arn"], Tags=[{"Key": "paved:blueprint", "Value": "someone-else"}])
r53 = boto3.client("route53", endpoint_url=endpoint)
zone = r53.list_hosted_zones_by_name(DNSName="example.com")["HostedZones"][0]["Id"]
record = [x for x in r53.list_resource_record_sets(HostedZoneId=zone)["ResourceRecordSets"]
          if x["Type"] == "A" and f".{env}." in x["Name"]][0]
record["AliasTarget"]["DNSName"] = "elsewhere.example.net"
r53.change_resource_record_sets(HostedZoneId=zone, ChangeBatch={"Changes": [{"Action": "UPSERT", "ResourceRecordSet": record}]})
"#;

/// Fields drop in this order: the platform first (its `paved down` destroys
/// what the test left applied, while the emulator still answers), then the
/// proxy and the emulator.
struct Aws {
    p: Platform,
    proxy: AwsProxy,
    moto: Moto,
}

impl Aws {
    /// The examples recorded, the account's trust installed, paved pointed at the proxy.
    fn new() -> Aws {
        Aws::over(Moto::start())
    }

    fn over(moto: Moto) -> Aws {
        let proxy = AwsProxy::start(&moto);
        let p = Platform::new();
        p.ok(&["apply", "-f", "examples/platform"]);
        p.ok(&["apply", "-f", "examples/environments/aws-eu.yaml"]);
        p.ok(&["apply", "-f", "examples/services"]);
        // The control plane too: a drift sweep reads many environments with one identity.
        let setup = p.ok(&["account", "trust-policy", "aws-eu", "--control-plane", "-o", "json"]);
        py(TRUST, &[&moto.url, &setup]);
        // The blueprint's domain has its public zone in the account (certificates are validated there).
        py(ZONE, &[&moto.url]);
        let mut p = p;
        // Every paved command (and server) talks to the emulator through the
        // proxy, with a static key in its environment that must never be used.
        for (k, v) in [
            ("AWS_ENDPOINT_URL", proxy.url.as_str()),
            ("AWS_ACCESS_KEY_ID", "AKIASTATICKEYNOTUSED"),
            ("AWS_SECRET_ACCESS_KEY", "static-secret-not-used"),
        ] {
            p.env.push((k.into(), v.into()));
        }
        Aws { moto, proxy, p }
    }

    fn paved(&self, args: &[&str]) -> Output {
        self.p.command(args).output().unwrap()
    }

    fn ok(&self, args: &[&str]) -> String {
        self.p.ok(args)
    }

    /// What exists for the environment, by kind (kinds with nothing left out).
    fn inventory(&self, env: &str, region: &str) -> BTreeMap<String, u64> {
        let all: BTreeMap<String, u64> = serde_json::from_str(&py(INVENTORY, &[&self.moto.url, env, region])).unwrap();
        all.into_iter().filter(|(_, n)| *n > 0).collect()
    }

    /// What the plan says should exist, by kind (kinds only paved records, and
    /// the VPC's default group, left out).
    /// The provisioner role's least-privilege policy allows every call the proxy saw.
    fn assert_policy_covers_every_call(&self) {
        let policy: Value =
            serde_json::from_str(&self.ok(&["account", "permissions-policy", "aws-eu", "-o", "json"])).unwrap();
        let missing: Vec<String> = self
            .proxy
            .seen()
            .iter()
            .filter_map(|call| call.split_once(' '))
            // STS's web-identity exchange is how paved gets the role, not something the role does.
            .filter(|(service, _)| !["-", "sts"].contains(service))
            .map(|(service, op)| paved_aws::permissions::action_for(service, op))
            .filter(|action| !paved_aws::permissions::allows(&policy, action))
            .collect();
        assert_eq!(missing, Vec::<String>::new(), "calls the policy does not allow");
    }

    fn planned(&self, env: &str) -> BTreeMap<String, u64> {
        let plan: Value = serde_json::from_str(&self.p.ok(&["plan", "-e", env, "-o", "json"])).unwrap();
        let mut out = BTreeMap::new();
        for n in plan["nodes"].as_array().unwrap() {
            let kind = n["kind"].as_str().unwrap().trim_start_matches("aws.");
            if !["service-link", "dns-name", "default-security-group"].contains(&kind) {
                *out.entry(kind.to_string()).or_default() += 1;
            }
        }
        out
    }
}

fn mutating_calls(calls: &BTreeMap<String, u64>) -> Vec<String> {
    calls.keys().filter(|k| mutating(k)).cloned().collect()
}

const ENVIRONMENTS: [(&str, &str); 3] =
    [("eu-dev", "eu-central-1"), ("eu-staging", "eu-west-1"), ("eu-production", "eu-west-1")];

/// A service with a bucket and a queue (the examples have neither).
const STORAGE: &str = "apiVersion: score.dev/v1b1\nmetadata:\n  name: archive\n  annotations:\n    paved.dev/owner: payments\n\
containers:\n  archive:\n    image: registry.example.com/payments/archive:1.0.0\n    variables:\n      \
BUCKET: ${resources.files.name}\n      QUEUE_URL: ${resources.jobs.url}\nresources:\n  files:\n    type: s3\n  jobs:\n    type: queue\n";

#[test]
fn the_aws_examples_apply_keylessly_on_the_emulator_and_a_second_apply_changes_nothing() {
    let aws = Aws::new();
    // This account has no zone `b` in eu-west-1 (zone letters differ between accounts).
    aws.proxy.drop_zones(&["eu-west-1b"]);
    let plan = aws.ok(&["plan", "-e", "eu-staging"]);
    assert!(plan.contains("zones are provisional"), "{plan}");
    aws.p.ok_with_input(&["apply", "-f", "-"], STORAGE);
    // The account's cluster environments deliver their manifests to a real Git server after provisioning.
    let git = support::GitServer::start();
    aws.p.ok_with_input(&["apply", "-f", "-"], &support::accounts_with_gitops(Some(&git.url)));
    for (env, region) in ENVIRONMENTS {
        let planned = aws.planned(env);
        aws.proxy.reset();
        aws.ok(&["apply", "-e", env]);
        let calls = aws.proxy.calls();
        // Every call went to the environment's own region, signed with credentials from STS.
        assert!(
            calls
                .keys()
                .all(|k| k.contains(region) || k.contains("iam") || k.starts_with("- - AssumeRoleWithWebIdentity")),
            "{calls:?}"
        );
        assert!(calls.contains_key("- - AssumeRoleWithWebIdentity"), "{calls:?}");
        // Exactly what the plan holds exists, tagged for the environment.
        assert_eq!(aws.inventory(env, region), planned, "{env}");
        // …and its namespace and Argo CD Application are committed (its services wait for a digest).
        let files = git.git(&["ls-tree", "-r", "--name-only", "main"]);
        assert!(files.contains(&format!("clusters/envs/{env}/namespace.yaml")), "{env}: {files}");
        assert!(files.contains(&format!("clusters/apps/{env}.yaml")), "{env}: {files}");
    }
    let commits = git.git(&["rev-list", "--count", "main"]);
    assert_eq!(commits.trim(), ENVIRONMENTS.len().to_string());
    // Subnets are in the zones AWS offers the account, and later plans read them from what was applied.
    for (env, region, zones) in [
        ("eu-dev", "eu-central-1", ["eu-central-1a", "eu-central-1b"]),
        ("eu-staging", "eu-west-1", ["eu-west-1a", "eu-west-1c"]),
        ("eu-production", "eu-west-1", ["eu-west-1a", "eu-west-1c"]),
    ] {
        let placed: Vec<String> = serde_json::from_str(&py(SUBNET_ZONES, &[&aws.moto.url, env, region])).unwrap();
        assert_eq!(placed, zones, "{env}");
        let plan = aws.ok(&["plan", "-e", env]);
        assert!(!plan.contains("zones are provisional"), "{plan}");
    }
    // Production has a NAT gateway (and a route table) per zone; other environments share one.
    let nat = |env: &str| aws.inventory(env, if env == "eu-dev" { "eu-central-1" } else { "eu-west-1" })["nat-gateway"];
    assert_eq!((nat("eu-dev"), nat("eu-production")), (1, 2));

    // The HTTPS listener serves an issued certificate for the environment's
    // names, validated in the domain's zone; web's host points at the load balancer.
    let names: Value = serde_json::from_str(&py(NAMES, &[&aws.moto.url, "eu-dev", "eu-central-1"])).unwrap();
    assert_eq!(names["status"], "ISSUED", "{names}");
    assert_eq!(names["domain"], "eu-dev.example.com");
    assert!(names["sans"].as_array().unwrap().contains(&json!("*.eu-dev.example.com")), "{names}");
    assert!(names["validation"].as_array().unwrap().iter().all(|v| v == true), "{names}");
    assert_eq!(names["web"], names["lb"], "{names}");
    // The HTTPS listener sends web's host to web's own target group (its pods join it in the cluster).
    assert_eq!(names["rules"], json!([{"hosts": ["web.eu-dev.example.com"], "group": "paved-eu-dev-web"}]), "{names}");

    // The archive's pods act as its own role: trusted only by its
    // ServiceAccount through the cluster's issuer, allowed only its bucket,
    // its queue, its secret and the environment's key.
    let role: Value =
        serde_json::from_str(&py(POD_ROLE, &[&aws.moto.url, "eu-dev", "eu-central-1", "archive"])).unwrap();
    let issuer = role["issuer"].as_str().unwrap().trim_start_matches("https://");
    let trust = &role["trust"]["Statement"][0];
    assert_eq!(trust["Action"], "sts:AssumeRoleWithWebIdentity");
    assert!(trust["Principal"]["Federated"].as_str().unwrap().ends_with(&format!(":oidc-provider/{issuer}")), "{role}");
    assert_eq!(trust["Condition"]["StringEquals"][format!("{issuer}:sub")], "system:serviceaccount:eu-dev:archive");
    assert_eq!(trust["Condition"]["StringEquals"][format!("{issuer}:aud")], "sts.amazonaws.com");
    let resources: Vec<String> = role["policy"]["Statement"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| match &s["Resource"] {
            Value::Array(a) => a.iter().map(|r| r.as_str().unwrap().to_string()).collect(),
            r => vec![r.as_str().unwrap().to_string()],
        })
        .collect();
    assert!(
        resources.iter().all(|r| !r.contains('*') || r.ends_with("/*") || r.ends_with("paved/eu-dev/archive-*")),
        "{resources:?}"
    );
    assert!(resources.iter().any(|r| r.starts_with("arn:aws:s3:::") && r.contains("-eu-dev-")), "{resources:?}");
    assert!(resources.iter().any(|r| r.starts_with("arn:aws:sqs:eu-central-1:")), "{resources:?}");
    assert!(
        resources
            .contains(&"arn:aws:secretsmanager:eu-central-1:123456789012:secret:paved/eu-dev/archive-*".to_string())
    );

    // api's DATABASE_URL (resource outputs with a password) is in its own
    // secret, under the environment's key, resolved: what the
    // ExternalSecret of its manifest brings into the namespace. It names
    // api's own login, never the master user.
    let secret: Value =
        serde_json::from_str(&py(SERVICE_SECRET, &[&aws.moto.url, "eu-dev", "eu-central-1", "api"])).unwrap();
    let url = secret["value"]["DATABASE_URL"].as_str().unwrap();
    let password = secret["login"]["password"].as_str().unwrap();
    assert_eq!(secret["login"]["username"], "app_api", "{secret}");
    assert!(
        url.starts_with(&format!("postgres://app_api:{password}@{}:", secret["host"].as_str().unwrap())),
        "{secret}"
    );
    // `name` is the database's (Score's name for it), not the instance's.
    assert!(url.ends_with("/payments_db"), "{url}");
    let master = secret["master"]["password"].as_str().unwrap();
    assert!(!url.contains(master) && !url.contains("//paved:"), "{url}");
    assert!(secret["kms"].as_str().unwrap().starts_with("arn:aws:kms:eu-central-1:"), "{secret}");
    assert!(!aws.ok(&["plan", "-e", "eu-dev", "-o", "json"]).contains(password), "a plan never holds a value");
    // The login is real, on the database behind the RDS endpoint: it logs
    // in, with nothing beyond its due, and may use the database.
    let db = format!("{}/payments_db", aws.moto.postgres);
    let role = "SELECT rolcanlogin, rolsuper, rolcreaterole, rolcreatedb FROM pg_roles WHERE rolname = 'app_api'";
    assert_eq!(sql(&db, role), "t|f|f|f");
    assert_eq!(sql(&db, "SELECT has_database_privilege('app_api', 'payments_db', 'CONNECT')"), "t");
    assert_eq!(sql(&db, "SELECT has_schema_privilege('app_api', 'public', 'CREATE')"), "t");

    // A second apply reads, and changes nothing.
    for (env, _) in ENVIRONMENTS {
        aws.proxy.reset();
        let out = aws.ok(&["apply", "-e", env]);
        assert!(out.contains("unchanged") || out.is_empty(), "{out}");
        let calls = aws.proxy.calls();
        assert_eq!(mutating_calls(&calls), Vec::<String>::new(), "{env}: {calls:?}");
    }
    // Nothing changed, so nothing was committed.
    assert_eq!(git.git(&["rev-list", "--count", "main"]), commits);

    // Day 2: AWS reports the minor version RDS picked for `16`, and EKS
    // upgraded the cluster by itself: neither is a change to undo.
    py(AWS_UPGRADES, &[&aws.moto.url, "eu-production", "eu-west-1"]);
    aws.proxy.reset();
    aws.ok(&["apply", "-e", "eu-production"]);
    let calls = aws.proxy.calls();
    assert_eq!(mutating_calls(&calls), Vec::<String>::new(), "eu-production: {calls:?}");

    // The same blueprint in two regions: only the declared parameters differ.
    let parity = aws.ok(&["parity", "eu-dev", "eu-staging"]);
    assert!(parity.contains("no undeclared differences"), "{parity}");

    // Console edits: drift names each field, parity names the edit, apply repairs.
    let edited_logins: Vec<String> =
        serde_json::from_str(py(CONSOLE_EDITS, &[&aws.moto.url, "eu-dev", "eu-central-1"]).trim()).unwrap();
    let out = aws.paved(&["drift", "-e", "eu-dev", "-o", "json"]);
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    let drift: Value = serde_json::from_slice(&out.stdout).unwrap();
    let node = |id: &str| drift["nodes"].as_array().unwrap().iter().find(|n| n["id"] == id).cloned().unwrap();
    let change = |id: &str, field: &str| {
        node(id)["changes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["field"] == field)
            .cloned()
            .unwrap_or_else(|| panic!("{id} {field}: {drift}"))
    };
    let ingress = change("aws.security-group/api", "ingress");
    assert!(
        ingress["after"]
            .as_array()
            .unwrap()
            .contains(&json!({"protocol": "tcp", "fromPort": 22, "toPort": 22, "cidr": "0.0.0.0/0"})),
        "{ingress}"
    );
    let backups = change("aws.rds-instance/payments-db", "backupRetentionDays");
    assert_eq!((backups["before"].clone(), backups["after"].clone()), (json!(1), json!(9)));
    let tag = change("aws.vpc/eu-dev", "tags.paved:blueprint");
    assert_eq!(tag["after"], Value::Null);
    assert_eq!(change("aws.kms-key/eu-dev", "tags.paved:blueprint")["after"], json!("someone-else"));
    assert_eq!(change("aws.log-group/eu-dev-flow-logs", "tags.paved:environment")["after"], Value::Null);
    assert_eq!(node("aws.subnet/eu-dev-public-b")["status"], json!("missing"));
    assert_eq!(change("aws.acm-certificate/eu-dev", "tags.paved:blueprint")["after"], json!("someone-else"));
    assert_eq!(change("aws.iam-oidc-provider/eu-dev", "tags.paved:blueprint")["after"], json!("someone-else"));
    let nodes = drift["nodes"].as_array().unwrap();
    let login = nodes
        .iter()
        .filter(|n| n["id"].as_str().unwrap().starts_with("aws.db-user/"))
        .find(|n| n["changes"].as_array().into_iter().flatten().any(|c| c["field"] == "tags.paved:environment"));
    assert!(!edited_logins.is_empty() && login.is_some(), "{edited_logins:?}: {drift}");
    let moved = nodes
        .iter()
        .filter(|n| n["id"].as_str().unwrap().starts_with("aws.dns-record/"))
        .flat_map(|n| n["changes"].as_array().into_iter().flatten())
        .find(|c| c["field"] == "aliasTarget.dnsName")
        .unwrap_or_else(|| panic!("no DNS record drifted: {drift}"));
    assert_eq!(moved["after"], json!("elsewhere.example.net"));
    // A secret value overwritten in the console is drift, and neither side of it is shown.
    let overwritten = change("aws.secret/api", "values.DATABASE_URL");
    assert_eq!((overwritten["before"].clone(), overwritten["after"].clone()), (json!("<secret>"), json!("<secret>")));
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains(password)
            && !String::from_utf8_lossy(&out.stdout).contains("attacker")
    );
    // A trust widened to every ServiceAccount is no longer the archive's alone.
    let widened = change("aws.iam-role/eu-dev-svc-archive", "webIdentity.subject");
    assert_eq!(
        (widened["before"].clone(), widened["after"].clone()),
        (json!("system:serviceaccount:eu-dev:archive"), Value::Null)
    );

    // The same findings from one sweep over every environment, in fewer calls than one read per resource.
    aws.proxy.reset();
    let out = aws.paved(&["drift", "--all", "-o", "json"]);
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    let swept_calls = aws.proxy.calls();
    let sweep_calls: u64 = swept_calls.values().sum();
    // Kinds read from listings and batches: none of their one-resource reads.
    let one_by_one: Vec<&String> = swept_calls
        .keys()
        .filter(|k| {
            ["DescribeSecret", "GetSecretValue", "ListTagsForCertificate", "ListResourceTags", "ListTagsLogGroup"]
                .iter()
                .any(|op| k.ends_with(&format!(" {op}")))
        })
        .collect();
    assert!(one_by_one.is_empty(), "the sweep read one resource at a time: {one_by_one:?}");
    let reports: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    let swept = reports.iter().find(|r| r["environment"] == "eu-dev").unwrap();
    assert_eq!(swept["nodes"], drift["nodes"], "the sweep and `drift -e` disagree");
    let others: Vec<&Value> = reports.iter().filter(|r| r["environment"] != "eu-dev").collect();
    assert_eq!(others.len(), 2);
    assert!(
        others.iter().all(|r| r["nodes"].as_array().unwrap().iter().all(|n| n["status"] == "in-sync")),
        "{reports:?}"
    );
    aws.proxy.reset();
    for (env, _) in ENVIRONMENTS {
        aws.paved(&["drift", "-e", env]);
    }
    let per_environment: u64 = aws.proxy.calls().values().sum();
    assert!(sweep_calls < per_environment, "sweep {sweep_calls} calls, per environment {per_environment}");

    let out = aws.paved(&["parity", "eu-dev", "eu-staging", "-o", "json"]);
    assert_eq!(out.status.code(), Some(3));
    let parity: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    let live: Vec<(&str, &str)> = parity
        .iter()
        .filter(|d| d["live"] == true)
        .map(|d| (d["node"].as_str().unwrap(), d["field"].as_str().unwrap()))
        .collect();
    for expected in [
        ("aws.security-group/api", "ingress"),
        ("aws.vpc/{env}", "tags.paved:blueprint"),
        ("aws.subnet/{env}-public-b", ""),
    ] {
        assert!(live.contains(&expected), "{expected:?} not in {live:?}");
    }

    aws.ok(&["apply", "-e", "eu-dev"]);
    let out = aws.paved(&["drift", "-e", "eu-dev"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    assert_eq!(aws.inventory("eu-dev", "eu-central-1"), aws.planned("eu-dev"));

    // Destroy: nothing tagged for the environment remains; production keeps what is protected.
    for env in ["eu-dev", "eu-staging"] {
        aws.ok(&["destroy", "-e", env]);
    }
    for (env, region) in &ENVIRONMENTS[..2] {
        assert_eq!(aws.inventory(env, region), BTreeMap::new(), "{env}");
    }
    let out = aws.paved(&["destroy", "-e", "eu-production"]);
    assert!(!out.status.success());
    let text = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(text.contains("deletion protection"), "{text}");
    // Protection lifted in AWS, as the message says: production's database leaves a final snapshot.
    let snapshots = py(LIFT_PROTECTION, &[&aws.moto.url, "eu-production", "eu-west-1"]);
    assert_eq!(snapshots.trim(), "[]");
    let destroyed = aws.ok(&["destroy", "-e", "eu-production"]);
    let snapshots: Vec<String> =
        serde_json::from_str(&py(LIFT_PROTECTION, &[&aws.moto.url, "eu-production", "eu-west-1"])).unwrap();
    assert_eq!(snapshots.len(), 1, "{snapshots:?}");
    assert!(snapshots[0].starts_with("paved-eu-production-payments-db-final-"), "{snapshots:?}");
    // …and the destroy says where the data went.
    assert!(destroyed.contains(&format!("kept final snapshot `{}`", snapshots[0])), "{destroyed}");

    // The provisioner role's least-privilege policy covers every call this whole run made.
    assert!(aws.proxy.seen().len() > 80, "{:?}", aws.proxy.seen());
    aws.assert_policy_covers_every_call();
}

/// The zones of an environment's subnets, sorted, without repeats.
const SUBNET_ZONES: &str = r#"
import json, sys, boto3
endpoint, env, region = sys.argv[1:4]
ec2 = boto3.client("ec2", endpoint_url=endpoint, region_name=region)
subnets = ec2.describe_subnets(Filters=[{"Name": "tag:paved:environment", "Values": [env]}])["Subnets"]
print(json.dumps(sorted({s["AvailabilityZone"] for s in subnets})))
"#;

/// What AWS changes by itself: RDS reports the minor version it picked
/// (`16.4` for `16`), EKS upgrades a cluster at the end of its version's support.
const AWS_UPGRADES: &str = r#"
import sys, boto3
endpoint, env, region = sys.argv[1:4]
rds = boto3.client("rds", endpoint_url=endpoint, region_name=region)
for d in rds.describe_db_instances()["DBInstances"]:
    if d["DBInstanceIdentifier"].startswith(f"paved-{env}-"):
        rds.modify_db_instance(DBInstanceIdentifier=d["DBInstanceIdentifier"], EngineVersion="16.4", ApplyImmediately=True)
        assert rds.describe_db_instances(DBInstanceIdentifier=d["DBInstanceIdentifier"])["DBInstances"][0]["EngineVersion"] == "16.4"
eks = boto3.client("eks", endpoint_url=endpoint, region_name=region)
eks.update_cluster_version(name=f"paved-{env}", version="1.36")
assert eks.describe_cluster(name=f"paved-{env}")["cluster"]["version"] == "1.36"
"#;

/// Lifts deletion protection of the environment's databases and load
/// balancer (as a platform engineer would in AWS); prints the database
/// snapshots there are.
const LIFT_PROTECTION: &str = r#"
import json, sys, boto3
endpoint, env, region = sys.argv[1:4]
rds = boto3.client("rds", endpoint_url=endpoint, region_name=region)
for d in rds.describe_db_instances()["DBInstances"]:
    if d["DBInstanceIdentifier"].startswith(f"paved-{env}-"):
        rds.modify_db_instance(DBInstanceIdentifier=d["DBInstanceIdentifier"], DeletionProtection=False, ApplyImmediately=True)
elb = boto3.client("elbv2", endpoint_url=endpoint, region_name=region)
for lb in elb.describe_load_balancers()["LoadBalancers"]:
    if lb["LoadBalancerName"] == f"paved-{env}":
        elb.modify_load_balancer_attributes(LoadBalancerArn=lb["LoadBalancerArn"],
            Attributes=[{"Key": "deletion_protection.enabled", "Value": "false"}])
print(json.dumps([s["DBSnapshotIdentifier"] for s in rds.describe_db_snapshots()["DBSnapshots"]
                  if s["DBSnapshotIdentifier"].startswith(f"paved-{env}-")]))
"#;

#[test]
fn an_environment_outside_the_accounts_regions_is_refused_without_a_single_aws_call() {
    let aws = Aws::new();
    aws.proxy.reset();
    let spec = "apiVersion: paved.dev/v1alpha1\nkind: Environment\nmetadata:\n  name: us-dev\nspec:\n  \
                blueprint: web-service-standard@1.2.0\n  account: aws-eu\n  region: us-east-1\n  type: development\n  owner: platform\n";
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("us.yaml"), spec).unwrap();
    let out = aws.paved(&["apply", "-f", dir.path().join("us.yaml").to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("region `us-east-1` is not allowed for account `aws-eu`") && err.contains("us.yaml:8:"),
        "{err}"
    );
    let out = aws.paved(&["apply", "-e", "us-dev"]);
    assert!(!out.status.success());
    assert_eq!(aws.proxy.calls(), BTreeMap::new());
}

#[test]
fn an_apply_converges_while_aws_throttles_a_fifth_of_the_calls() {
    let aws = Aws::new();
    aws.proxy.faults(20);
    aws.ok(&["apply", "-e", "eu-dev"]);
    assert!(aws.proxy.throttled() > 10, "throttled {}", aws.proxy.throttled());
    aws.proxy.faults(0);
    assert_eq!(aws.inventory("eu-dev", "eu-central-1"), aws.planned("eu-dev"));
}

#[test]
fn an_apply_from_nothing_converges_through_awss_answers_right_after_creates() {
    // IAM roles not yet assumable, VPCs and subnets not yet visible, a
    // concurrent modification: as AWS answers them (`aws_proxy.py` names the
    // pages), all in one apply.
    let aws = Aws::new();
    aws.proxy.propagation(true);
    aws.ok(&["apply", "-e", "eu-dev"]);
    let injected = aws.proxy.injected();
    for code in
        ["InvalidParameterException", "InvalidVpcID.NotFound", "InvalidSubnetID.NotFound", "ConcurrentModification"]
    {
        assert!(injected.get(code).copied().unwrap_or(0) > 0, "{code} was never answered: {injected:?}");
    }
    aws.proxy.propagation(false);
    // Nothing duplicated: what exists is what the plan says.
    assert_eq!(aws.inventory("eu-dev", "eu-central-1"), aws.planned("eu-dev"));
    aws.proxy.reset();
    aws.ok(&["apply", "-e", "eu-dev"]);
    assert_eq!(mutating_calls(&aws.proxy.calls()), Vec::<String>::new());
}

#[test]
fn applies_killed_at_random_points_resume_without_duplicates() {
    let aws = Aws::new();
    let mut rng: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut killed = 0;
    for _ in 0..20 {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let mut c = aws.p.command(&["apply", "-e", "eu-dev"]);
        c.stdout(Stdio::null()).stderr(Stdio::null());
        let mut child = c.spawn().unwrap();
        std::thread::sleep(Duration::from_millis(100 + rng % 1500));
        if child.try_wait().unwrap().is_none() {
            killed += 1;
        }
        let _ = child.kill();
        let _ = child.wait();
    }
    assert!(killed >= 10, "only {killed} applies were still running when killed");
    aws.ok(&["apply", "-e", "eu-dev"]);
    assert_eq!(aws.inventory("eu-dev", "eu-central-1"), aws.planned("eu-dev"));
}

/// The HTTPS listener of an environment's load balancer: its ARN, TLS policy and rules.
const HTTPS_LISTENER: &str = r#"
import json, sys, boto3
endpoint, env, region = sys.argv[1:4]
elb = boto3.client("elbv2", endpoint_url=endpoint, region_name=region)
lb = elb.describe_load_balancers(Names=[f"paved-{env}"])["LoadBalancers"][0]
l = [l for l in elb.describe_listeners(LoadBalancerArn=lb["LoadBalancerArn"])["Listeners"] if l["Port"] == 443][0]
rules = [r["RuleArn"] for r in elb.describe_rules(ListenerArn=l["ListenerArn"])["Rules"] if not r["IsDefault"]]
print(json.dumps({"arn": l["ListenerArn"], "policy": l["SslPolicy"], "rules": rules}))
"#;

/// The versions EKS reports for an environment's cluster and node group.
const EKS_VERSIONS: &str = r#"
import json, sys, boto3
endpoint, env, region = sys.argv[1:4]
eks = boto3.client("eks", endpoint_url=endpoint, region_name=region)
groups = eks.list_nodegroups(clusterName=f"paved-{env}")["nodegroups"]
print(json.dumps({"cluster": eks.describe_cluster(name=f"paved-{env}")["cluster"]["version"],
                  "nodes": [eks.describe_nodegroup(clusterName=f"paved-{env}", nodegroupName=g)["nodegroup"]["version"] for g in groups]}))
"#;

#[test]
fn a_new_blueprint_version_changes_the_listener_in_place_and_upgrades_eks_one_update_at_a_time() {
    let aws = Aws::new();
    aws.ok(&["apply", "-e", "eu-dev"]);
    let before: Value = serde_json::from_str(&py(HTTPS_LISTENER, &[&aws.moto.url, "eu-dev", "eu-central-1"])).unwrap();
    assert_eq!(before["policy"], "ELBSecurityPolicy-TLS13-1-2-2021-06");
    assert_eq!(before["rules"].as_array().map(Vec::len), Some(1), "{before}");
    let versions: Value = serde_json::from_str(&py(EKS_VERSIONS, &[&aws.moto.url, "eu-dev", "eu-central-1"])).unwrap();
    assert_eq!(versions, json!({"cluster": paved_plan::aws::EKS_VERSION, "nodes": [paved_plan::aws::EKS_VERSION]}));
    // The blueprint asks for TLS 1.3 and Kubernetes 1.36 (a new version, the environment moved to it).
    let blueprint =
        std::fs::read_to_string(support::repo_root().join("examples/platform/blueprint-web-service-standard.yaml"))
            .unwrap()
            .replace("version: 1.2.0", "version: 1.3.0")
            .replace("minVersion: \"1.2\"", "minVersion: \"1.3\"")
            .replace("    runtime: cluster\n", "    runtime: cluster\n    kubernetesVersion: \"1.36\"\n");
    aws.p.ok_with_input(&["apply", "-f", "-"], &blueprint);
    let env = std::fs::read_to_string(support::repo_root().join("examples/environments/aws-eu.yaml"))
        .unwrap()
        .replacen("web-service-standard@1.2.0", "web-service-standard@1.3.0", 1);
    aws.p.ok_with_input(&["apply", "-f", "-"], &env);
    // EKS updates take time, and a second one meanwhile is refused
    // (ResourceInUseException): the proxy answers so (`aws_proxy.py`).
    aws.proxy.propagation(true);
    aws.proxy.reset();
    aws.ok(&["apply", "-e", "eu-dev"]);
    let injected = aws.proxy.injected();
    for code in ["InProgress", "ResourceInUseException"] {
        assert!(injected.get(code).copied().unwrap_or(0) > 0, "{code} was never answered: {injected:?}");
    }
    aws.proxy.propagation(false);
    let after: Value = serde_json::from_str(&py(HTTPS_LISTENER, &[&aws.moto.url, "eu-dev", "eu-central-1"])).unwrap();
    assert_eq!(after["policy"], "ELBSecurityPolicy-TLS13-1-3-2021-06");
    // The same listener, its rule still there: routes (and previews') never went down.
    assert_eq!((&after["arn"], &after["rules"]), (&before["arn"], &before["rules"]));
    let calls = mutating_calls(&aws.proxy.calls());
    assert!(calls.iter().any(|c| c.ends_with("ModifyListener")), "{calls:?}");
    assert!(!calls.iter().any(|c| c.ends_with("DeleteListener")), "{calls:?}");
    // The control plane, then its nodes; nothing replaced.
    let versions: Value = serde_json::from_str(&py(EKS_VERSIONS, &[&aws.moto.url, "eu-dev", "eu-central-1"])).unwrap();
    assert_eq!(versions, json!({"cluster": "1.36", "nodes": ["1.36"]}));
    assert!(!calls.iter().any(|c| c.ends_with("DeleteNodegroup") || c.ends_with("DeleteCluster")), "{calls:?}");
    aws.proxy.reset();
    aws.ok(&["apply", "-e", "eu-dev"]);
    assert_eq!(mutating_calls(&aws.proxy.calls()), Vec::<String>::new());
}

#[test]
fn an_auto_heal_blueprint_is_repaired_by_the_reconciler_within_two_intervals() {
    let mut aws = Aws::new();
    // The example blueprint, published as a new version that heals drift.
    let blueprint =
        std::fs::read_to_string(support::repo_root().join("examples/platform/blueprint-web-service-standard.yaml"))
            .unwrap()
            .replace("version: 1.2.0", "version: 1.3.0")
            .replace("  security:\n", "  drift: auto-heal\n  security:\n");
    aws.p.ok_with_input(&["apply", "-f", "-"], &blueprint);
    let env = std::fs::read_to_string(support::repo_root().join("examples/environments/aws-eu.yaml"))
        .unwrap()
        .replacen("web-service-standard@1.2.0", "web-service-standard@1.3.0", 1);
    aws.p.ok_with_input(&["apply", "-f", "-"], &env);
    aws.ok(&["apply", "-e", "eu-dev"]);

    let interval = Duration::from_secs(3);
    aws.p.start(&["--reconcile-interval", "3s"]);
    py(CONSOLE_EDITS, &[&aws.moto.url, "eu-dev", "eu-central-1"]);
    let edited = std::time::Instant::now();
    let in_sync = || aws.paved(&["drift", "-e", "eu-dev"]).status.success();
    assert!(!in_sync());
    while !in_sync() {
        assert!(
            edited.elapsed() < interval * 2 + Duration::from_secs(10),
            "not healed: {}\n{}",
            String::from_utf8_lossy(&aws.paved(&["drift", "-e", "eu-dev"]).stdout),
            aws.p.log()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    let healed_after = edited.elapsed();
    // The repair is an audited apply by the reconciler.
    let audit = aws.ok(&["audit", "list", "-o", "json"]);
    assert!(audit.contains("paved-reconciler") && audit.contains("environment.apply"), "{audit}");
    assert!(aws.p.log().contains("reconcile: drift healed"), "{}", aws.p.log());
    eprintln!("healed {healed_after:?} after the edit (interval {interval:?})");
}

#[test]
fn an_unreachable_sts_is_reported_as_unreachable_not_as_a_refusal() {
    let p = Platform::new();
    p.ok(&["apply", "-f", "examples/platform"]);
    p.ok(&["apply", "-f", "examples/environments/aws-eu.yaml"]);
    // Nothing listens there.
    let closed = format!("http://127.0.0.1:{}", support::free_port());
    let out =
        p.command(&["account", "check", "aws-eu", "-e", "eu-dev"]).env("AWS_ENDPOINT_URL", &closed).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("AWS STS could not be reached") && err.contains("AWS_ENDPOINT_URL"), "{err}");
    assert!(!err.contains("refused the web-identity token"), "{err}");
}

#[test]
fn a_preview_labelled_onto_production_or_another_account_is_refused() {
    // Anyone who may write environments can set the label that names a
    // preview's host: it must not put a pull request's code on production.
    let p = Platform::new();
    p.ok(&["apply", "-f", "examples/platform"]);
    p.ok(&["apply", "-f", "examples/environments/aws-eu.yaml"]);
    p.ok(&["apply", "-f", "examples/services"]);
    let forged = |name: &str, host: &str, region: &str| {
        format!(
            "apiVersion: paved.dev/v1alpha1\nkind: Environment\nmetadata:\n  name: {name}\n  labels:\n    paved.dev/preview-of: {host}\n\
             spec:\n  blueprint: web-service-standard@1.2.0\n  account: aws-eu\n  region: {region}\n  type: preview\n  ttl: 72h\n  owner: payments\n"
        )
    };
    for (name, host, region, why) in [
        ("pr-1-forged", "eu-production", "eu-west-1", "`eu-production` is a production environment"),
        ("pr-2-forged", "nowhere", "eu-west-1", "no such environment"),
        ("pr-4-forged", "eu-dev", "eu-west-1", "`eu-dev` is in region `eu-central-1`"),
    ] {
        p.ok_with_input(&["apply", "-f", "-"], &forged(name, host, region));
        let out = p.command(&["plan", "-e", name]).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(err.contains(why) && err.contains("previews run only on a development environment"), "{err}");
    }
    // The label as paved sets it, on the development environment, plans (up to its host not being applied yet).
    p.ok_with_input(&["apply", "-f", "-"], &forged("pr-3-real", "eu-dev", "eu-central-1"));
    let out = p.command(&["plan", "-e", "pr-3-real"]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("apply it first with `paved apply -e eu-dev`"), "{err}");
}

#[test]
fn a_nat_gateway_that_failed_fails_the_apply_at_once_with_awss_reason() {
    // EC2 leaves a failed NAT gateway `failed` with a code and a message
    // (<https://docs.aws.amazon.com/vpc/latest/userguide/nat-gateway-troubleshooting.html>):
    // the apply says so instead of waiting for it to become available.
    let aws = Aws::new();
    aws.proxy.nat_fails(true);
    let out = aws.paved(&["apply", "-e", "eu-dev"]);
    assert!(!out.status.success());
    let text = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(text.contains("aws.nat-gateway/eu-dev") && text.contains("failed (Gateway.NotAttached"), "{text}");
    // Fixed, the next apply converges.
    aws.proxy.nat_fails(false);
    aws.ok(&["apply", "-e", "eu-dev"]);
    assert_eq!(aws.inventory("eu-dev", "eu-central-1"), aws.planned("eu-dev"));
}

/// A service speaking AMQP 0-9-1.
const EVENTS: &str = "apiVersion: score.dev/v1b1\nmetadata:\n  name: events\n  annotations:\n    paved.dev/owner: payments\n\
containers:\n  events:\n    image: registry.example.com/payments/events:1.0.0\n    variables:\n      \
AMQP_HOST: ${resources.bus.host}\n      AMQP_PORT: ${resources.bus.port}\n      AMQP_VHOST: ${resources.bus.vhost}\n      \
AMQP_USER: ${resources.bus.username}\n      AMQP_PASSWORD: ${resources.bus.password}\nresources:\n  bus:\n    type: amqp\n";

/// The environment's Amazon MQ brokers and a service's secret.
const BROKERS: &str = r#"
import json, sys, boto3
endpoint, env, region, service = sys.argv[1:5]
mq = boto3.client("mq", endpoint_url=endpoint, region_name=region)
ours = [b for b in mq.list_brokers()["BrokerSummaries"] if b["BrokerName"].startswith(f"paved-{env}-")]
sm = boto3.client("secretsmanager", endpoint_url=endpoint, region_name=region)
try:
    secret = json.loads(sm.get_secret_value(SecretId=f"paved/{env}/{service}")["SecretString"])
except (sm.exceptions.ResourceNotFoundException, sm.exceptions.InvalidRequestException):  # gone, or deleted and waiting
    secret = None
print(json.dumps({"brokers": [mq.describe_broker(BrokerId=b["BrokerId"]) for b in ours], "secret": secret}, default=str))
"#;

#[test]
fn an_amqp_resource_is_a_private_rabbitmq_broker_on_amazon_mq_not_an_sqs_queue() {
    let aws = Aws::new();
    aws.p.ok_with_input(&["apply", "-f", "-"], EVENTS);
    let graph = aws.ok(&["plan", "-e", "eu-dev", "--graph"]);
    assert!(graph.contains("aws.mq-broker/events-bus") && !graph.contains("aws.sqs-queue/events-bus"), "{graph}");
    aws.ok(&["apply", "-e", "eu-dev"]);
    let seen: Value = serde_json::from_str(&py(BROKERS, &[&aws.moto.url, "eu-dev", "eu-central-1", "events"])).unwrap();
    let brokers = seen["brokers"].as_array().unwrap();
    assert_eq!(brokers.len(), 1, "{seen}");
    let b = &brokers[0];
    assert_eq!(b["BrokerName"], "paved-eu-dev-events-bus");
    assert_eq!(
        (b["EngineType"].as_str(), b["DeploymentMode"].as_str()),
        (Some("RABBITMQ"), Some("SINGLE_INSTANCE")),
        "{b}"
    );
    assert_eq!((b["HostInstanceType"].as_str(), b["PubliclyAccessible"].as_bool()), (Some("mq.t3.micro"), Some(false)));
    assert_eq!(
        b["Users"].as_array().unwrap().iter().map(|u| u["Username"].clone()).collect::<Vec<_>>(),
        [json!("paved")]
    );
    // One subnet (a single instance takes exactly one), one security group of its own.
    assert_eq!(b["SubnetIds"].as_array().unwrap().len(), 1, "{b}");
    assert_eq!(b["SecurityGroups"].as_array().unwrap().len(), 1, "{b}");
    // The generated password reaches the service through its secret only.
    let password = seen["secret"]["AMQP_PASSWORD"].as_str().unwrap_or_default();
    assert_eq!(password.len(), 32, "{seen}");
    assert!(!graph.contains(password) && !aws.ok(&["plan", "-e", "eu-dev", "--graph"]).contains(password));
    // Applied again, nothing changes.
    assert!(aws.ok(&["plan", "-e", "eu-dev"]).contains("0 to add, 0 to change, 0 to replace, 0 to destroy"));
    let calls = {
        aws.proxy.reset();
        aws.ok(&["apply", "-e", "eu-dev"]);
        aws.proxy.calls()
    };
    assert!(!calls.keys().any(|k| k.contains("CreateBroker") || k.contains("UpdateBroker")), "{calls:?}");

    // Destroyed with its environment; every call of the run is one the provisioner role may make.
    aws.ok(&["destroy", "-e", "eu-dev"]);
    let seen: Value = serde_json::from_str(&py(BROKERS, &[&aws.moto.url, "eu-dev", "eu-central-1", "events"])).unwrap();
    assert_eq!(seen["brokers"], json!([]), "{seen}");
    aws.assert_policy_covers_every_call();
}

/// A service with a Redis cache.
const SESSIONS: &str = "apiVersion: score.dev/v1b1\nmetadata:\n  name: sessions\n  annotations:\n    paved.dev/owner: payments\n\
containers:\n  sessions:\n    image: registry.example.com/payments/sessions:1.0.0\n    variables:\n      \
REDIS_HOST: ${resources.cache.host}\n      REDIS_PORT: ${resources.cache.port}\n      \
REDIS_USER: ${resources.cache.username}\n      REDIS_PASSWORD: ${resources.cache.password}\nresources:\n  cache:\n    type: redis\n";

/// The environment's ElastiCache replication groups and cache subnet groups, and a service's secret.
const CACHES: &str = r#"
import json, sys, boto3
endpoint, env, region, service = sys.argv[1:5]
ec = boto3.client("elasticache", endpoint_url=endpoint, region_name=region)
groups = [g for g in ec.describe_replication_groups()["ReplicationGroups"] if g["ReplicationGroupId"].startswith(f"paved-{env}-")]
subnets = [g["CacheSubnetGroupName"] for g in ec.describe_cache_subnet_groups()["CacheSubnetGroups"]]
sm = boto3.client("secretsmanager", endpoint_url=endpoint, region_name=region)
try:
    secret = json.loads(sm.get_secret_value(SecretId=f"paved/{env}/{service}")["SecretString"])
except (sm.exceptions.ResourceNotFoundException, sm.exceptions.InvalidRequestException):  # gone, or deleted and waiting
    secret = None
print(json.dumps({"groups": groups, "subnetGroups": subnets, "secret": secret}, default=str))
"#;

#[test]
fn a_redis_resource_is_an_encrypted_elasticache_replication_group_with_a_sealed_auth_token() {
    let aws = Aws::new();
    // The example blueprint offers redis: class from `size`, snapshots kept its default 7 days.
    aws.p.ok_with_input(&["apply", "-f", "-"], SESSIONS);
    let graph = aws.ok(&["plan", "-e", "eu-dev", "--graph"]);
    assert!(graph.contains("aws.elasticache-replication-group/sessions-cache"), "{graph}");
    aws.ok(&["apply", "-e", "eu-dev"]);
    let seen: Value =
        serde_json::from_str(&py(CACHES, &[&aws.moto.url, "eu-dev", "eu-central-1", "sessions"])).unwrap();
    let groups = seen["groups"].as_array().unwrap();
    assert_eq!(groups.len(), 1, "{seen}");
    let g = &groups[0];
    assert_eq!(g["ReplicationGroupId"], "paved-eu-dev-sessions-cache");
    assert_eq!(
        (g["TransitEncryptionEnabled"].as_bool(), g["AtRestEncryptionEnabled"].as_bool()),
        (Some(true), Some(true)),
        "{g}"
    );
    assert!(g["KmsKeyId"].as_str().is_some_and(|k| k.starts_with("arn:aws:kms:eu-central-1:")), "{g}");
    assert_eq!(g["AuthTokenEnabled"], json!(true), "{g}");
    assert!(g["CacheNodeType"].as_str().is_some_and(|t| t.starts_with("cache.")), "{g}");
    assert_eq!(g["SnapshotRetentionLimit"].as_u64(), Some(7), "{g}");
    assert_eq!(seen["subnetGroups"], json!(["paved-eu-dev"]), "{seen}");
    // The AUTH token reaches the service through its secret only.
    let token = seen["secret"]["REDIS_PASSWORD"].as_str().unwrap_or_default();
    assert_eq!(token.len(), 32, "{seen}");
    assert!(!aws.ok(&["plan", "-e", "eu-dev", "--graph"]).contains(token));
    // Applied again, nothing changes.
    assert!(aws.ok(&["plan", "-e", "eu-dev"]).contains("0 to add, 0 to change, 0 to replace, 0 to destroy"));
    let calls = {
        aws.proxy.reset();
        aws.ok(&["apply", "-e", "eu-dev"]);
        aws.proxy.calls()
    };
    assert!(!calls.keys().any(|k| k.contains("ReplicationGroup") && !k.contains("Describe")), "{calls:?}");

    // Destroyed with its environment; every call of the run is one the provisioner role may make.
    aws.ok(&["destroy", "-e", "eu-dev"]);
    let seen: Value =
        serde_json::from_str(&py(CACHES, &[&aws.moto.url, "eu-dev", "eu-central-1", "sessions"])).unwrap();
    assert_eq!((seen["groups"].clone(), seen["subnetGroups"].clone()), (json!([]), json!([])), "{seen}");
    aws.assert_policy_covers_every_call();
}

/// A service with a MySQL database.
const ORDERS: &str = "apiVersion: score.dev/v1b1\nmetadata:\n  name: orders\n  annotations:\n    paved.dev/owner: payments\n\
containers:\n  orders:\n    image: registry.example.com/payments/orders:1.0.0\n    variables:\n      \
DB_HOST: ${resources.db.host}\n      DB_PORT: ${resources.db.port}\n      DB_NAME: ${resources.db.name}\n      \
DB_USER: ${resources.db.username}\n      DB_PASSWORD: ${resources.db.password}\nresources:\n  db:\n    type: mysql\n";

/// The environment's RDS instances.
const DATABASES: &str = r#"
import json, sys, boto3
endpoint, env, region = sys.argv[1:4]
rds = boto3.client("rds", endpoint_url=endpoint, region_name=region)
dbs = [d for d in rds.describe_db_instances()["DBInstances"] if d["DBInstanceIdentifier"].startswith(f"paved-{env}-")]
print(json.dumps(dbs, default=str))
"#;

#[test]
fn a_mysql_resource_is_rds_for_mysql_and_the_service_logs_in_over_tls_as_its_own_user_granted_its_database_only() {
    let aws = Aws::over(Moto::start_with(Some(RdsMysql::start(&["orders_db", "payments_db"]))));
    let mysql = aws.moto.mysql.as_ref().unwrap();
    aws.p.ok_with_input(&["apply", "-f", "-"], ORDERS);
    let graph = aws.ok(&["plan", "-e", "eu-dev", "--graph"]);
    assert!(graph.contains("aws.rds-instance/orders-db") && graph.contains("aws.db-user/orders-db-orders"), "{graph}");
    aws.ok(&["apply", "-e", "eu-dev"]);
    let seen: Value = serde_json::from_str(&py(DATABASES, &[&aws.moto.url, "eu-dev", "eu-central-1"])).unwrap();
    let db = seen
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["DBInstanceIdentifier"] == "paved-eu-dev-orders-db")
        .unwrap_or_else(|| panic!("no RDS instance for orders: {seen}"));
    assert_eq!((db["Engine"].as_str(), db["EngineVersion"].as_str()), (Some("mysql"), Some("8.4")), "{db}");
    assert_eq!((db["StorageEncrypted"].as_bool(), db["PubliclyAccessible"].as_bool()), (Some(true), Some(false)));
    assert_eq!(db["EnabledCloudwatchLogsExports"], json!(["error", "slowquery"]), "{db}");
    // RDS for MySQL refuses Performance Insights on the small class dev runs on.
    assert_eq!(
        (db["DBInstanceClass"].as_str(), db["PerformanceInsightsEnabled"].as_bool()),
        (Some("db.t4g.small"), Some(false))
    );

    // The service's own login, its password only in the service's secret.
    let secret: Value =
        serde_json::from_str(&py(SECRET_OF, &[&aws.moto.url, "eu-dev", "eu-central-1", "orders"])).unwrap();
    let field = |k: &str| secret[k].as_str().unwrap_or_else(|| panic!("{k} not in {secret}"));
    let (user, password) = ("app_orders", field("DB_PASSWORD"));
    // The endpoint is the stand-in's; `name` is the database's, as Score's provisioners name it.
    assert_eq!((field("DB_PORT"), field("DB_NAME")), (mysql.port.to_string().as_str(), "orders_db"));
    assert!(!aws.ok(&["plan", "-e", "eu-dev", "--graph"]).contains(password));
    // It reads its rows over TLS, and nothing beyond its database.
    let rows = mysql.sql(
        user,
        password,
        "CREATE TABLE orders_db.items (n INT); INSERT INTO orders_db.items VALUES (42); SELECT n FROM orders_db.items",
    );
    assert_eq!(rows.as_deref(), Ok("42"));
    let refused = mysql.sql(user, password, "SELECT 1 FROM payments_db.t").unwrap_err();
    assert!(refused.contains("SELECT command denied to user 'app_orders'"), "{refused}");
    let refused = mysql.sql(user, password, "CREATE DATABASE elsewhere").unwrap_err();
    assert!(refused.contains("Access denied for user 'app_orders'"), "{refused}");
    let account = "SELECT ssl_type, Super_priv, Grant_priv FROM mysql.user WHERE User = 'app_orders'";
    assert_eq!(mysql.sql("paved", "P@55w0rd!", account).as_deref(), Ok("ANY\tN\tN"));

    // Applied again, nothing changes.
    assert!(aws.ok(&["plan", "-e", "eu-dev"]).contains("0 to add, 0 to change, 0 to replace, 0 to destroy"));
    // A login widened by hand is drift, and the apply narrows it again.
    mysql.sql("paved", "P@55w0rd!", "GRANT SUPER ON *.* TO 'app_orders'@'%'").unwrap();
    let out = aws.paved(&["drift", "-e", "eu-dev", "-o", "json"]);
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("aws.db-user/orders-db-orders"), "{out:?}");
    aws.ok(&["apply", "-e", "eu-dev"]);
    assert_eq!(mysql.sql("paved", "P@55w0rd!", account).as_deref(), Ok("ANY\tN\tN"));
    assert_eq!(mysql.sql(user, password, "SELECT n FROM orders_db.items").as_deref(), Ok("42"));

    // Destroyed with its environment: the login goes with the instance.
    aws.ok(&["destroy", "-e", "eu-dev"]);
    assert_eq!(
        mysql.sql("paved", "P@55w0rd!", "SELECT COUNT(*) FROM mysql.user WHERE User = 'app_orders'").as_deref(),
        Ok("0")
    );
    let seen: Value = serde_json::from_str(&py(DATABASES, &[&aws.moto.url, "eu-dev", "eu-central-1"])).unwrap();
    assert!(!seen.to_string().contains("orders"), "{seen}");
    aws.assert_policy_covers_every_call();
}

/// A service using a type only the blueprint's template provisioner offers.
const CATALOG: &str = "apiVersion: score.dev/v1b1\nmetadata:\n  name: catalog\n  annotations:\n    paved.dev/owner: payments\n\
containers:\n  catalog:\n    image: registry.example.com/payments/catalog:1.0.0\n    variables:\n      \
MONGO_URL: ${resources.store.connection}\n      MONGO_HOST: ${resources.store.host}\nresources:\n  store:\n    type: mongodb\n";

/// A service's secret in Secrets Manager.
const SECRET_OF: &str = r#"
import json, sys, boto3
endpoint, env, region, service = sys.argv[1:5]
sm = boto3.client("secretsmanager", endpoint_url=endpoint, region_name=region)
print(sm.get_secret_value(SecretId=f"paved/{env}/{service}")["SecretString"])
"#;

#[test]
fn a_template_provisioner_serves_an_aws_environment_its_generated_password_sealed_in_the_services_secret() {
    let aws = Aws::new();
    aws.p.ok_with_input(&["apply", "-f", "-"], CATALOG);
    let graph = aws.ok(&["plan", "-e", "eu-dev", "--graph"]);
    assert!(
        graph.contains("paved.template/catalog-store") && graph.contains("paved.secret/catalog-store--password"),
        "{graph}"
    );
    aws.ok(&["apply", "-e", "eu-dev"]);
    let secret: Value =
        serde_json::from_str(&py(SECRET_OF, &[&aws.moto.url, "eu-dev", "eu-central-1", "catalog"])).unwrap();
    let url = secret["MONGO_URL"].as_str().unwrap_or_default();
    let password = url
        .strip_prefix("mongodb://catalog-store:")
        .and_then(|rest| rest.strip_suffix("@mongo.eu-dev.internal:27017/catalog-store"))
        .unwrap_or_else(|| panic!("unexpected URL in the service's secret: {secret}"));
    assert_eq!(password.len(), 32, "{url}");
    assert!(!aws.ok(&["plan", "-e", "eu-dev", "--graph"]).contains(password));
    // Applied again: the same password, nothing to do.
    assert!(aws.ok(&["plan", "-e", "eu-dev"]).contains("0 to add, 0 to change, 0 to replace, 0 to destroy"));
    aws.ok(&["apply", "-e", "eu-dev"]);
    let again: Value =
        serde_json::from_str(&py(SECRET_OF, &[&aws.moto.url, "eu-dev", "eu-central-1", "catalog"])).unwrap();
    assert_eq!(again["MONGO_URL"], json!(url));
}
