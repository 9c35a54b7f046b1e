//! Planning the example platform's AWS environments: address blocks without
//! overlap, the security baseline in every graph, the blueprint's behaviours
//! set on AWS's own knobs, tags on everything, residency, and parity across
//! regions.

mod world;

use paved_plan::aws::AddressPlan;
use paved_plan::{Capabilities, Node, PlanError, ResourceGraph, plan};
use paved_spec::SourceFile;
use serde_json::Value;
use std::collections::BTreeSet;
use world::World;

const ENVS: [&str; 3] = ["eu-dev", "eu-staging", "eu-production"];

fn account_plan(allocated: &[(&str, &str)]) -> AddressPlan {
    AddressPlan {
        allocated: allocated.iter().map(|(e, c)| (e.to_string(), c.to_string())).collect(),
        account_environments: ENVS.iter().map(|e| e.to_string()).collect(),
    }
}

fn graph(world: &World, env: &str, addresses: AddressPlan) -> ResourceGraph {
    let mut input = world.input(env, Capabilities::default());
    input.addresses = addresses;
    plan(&input).unwrap_or_else(|e| panic!("{env}: {e:?}"))
}

fn kind<'a>(g: &'a ResourceGraph, kind: &str) -> Vec<&'a Node> {
    g.nodes.values().filter(|n| n.kind == kind).collect()
}

/// The examples plus a service with its own bucket and queue.
fn with_storage() -> World {
    World::with_extra(vec![SourceFile::new(
        "reports.score.yaml",
        "apiVersion: score.dev/v1b1\nmetadata:\n  name: reports\n  annotations:\n    paved.dev/owner: payments\n\
         service:\n  ports:\n    http:\n      port: 8081\ncontainers:\n  main:\n    image: reports:1\n    variables:\n      \
         BUCKET: ${resources.exports.name}\n      QUEUE: ${resources.jobs.url}\nresources:\n  exports:\n    type: s3\n  jobs:\n    type: queue\n",
    )])
}

#[test]
fn every_environment_of_the_account_gets_its_own_block_and_keeps_it() {
    let world = World::examples();
    let blocks: Vec<String> = ENVS
        .iter()
        .map(|e| {
            kind(&graph(&world, e, account_plan(&[])), "aws.vpc")[0].properties["cidrBlock"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    // From the blueprint's 10.40.0.0/16, a /20 each, handed out in name order.
    assert_eq!(blocks, ["10.40.0.0/20", "10.40.32.0/20", "10.40.16.0/20"]);
    // A VPC that exists keeps its block, and the others fit around it.
    let applied = account_plan(&[("eu-staging", "10.40.0.0/20")]);
    let dev = graph(&world, "eu-dev", applied.clone());
    assert_eq!(kind(&dev, "aws.vpc")[0].properties["cidrBlock"], "10.40.16.0/20");
    assert_eq!(kind(&graph(&world, "eu-staging", applied), "aws.vpc")[0].properties["cidrBlock"], "10.40.0.0/20");
    // Subnets: two zones per tier, /24s of the environment's block.
    let subnets: BTreeSet<(String, String)> = kind(&dev, "aws.subnet")
        .iter()
        .map(|s| {
            (
                s.properties["availabilityZone"].as_str().unwrap().into(),
                s.properties["cidrBlock"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(subnets.len(), 4);
    assert!(
        subnets
            .iter()
            .all(|(az, cidr)| az.starts_with("eu-central-1") && cidr.starts_with("10.40.1") && cidr.ends_with("/24"))
    );
    assert_eq!(paved_plan::aws::cidr_subnet("10.40.16.0/20", 4, 3).as_deref(), Some("10.40.19.0/24"));
}

#[test]
fn the_security_baseline_is_in_every_graph() {
    let world = with_storage();
    for env in ENVS {
        let g = graph(&world, env, account_plan(&[]));
        assert_eq!(kind(&g, "aws.flow-log").len(), 1, "{env}: flow logs");
        // The flow-log role may write to that one group, nothing else.
        let role = &g.nodes[&format!("aws.iam-role/{env}-flow-logs")].properties;
        assert_eq!(
            kind(&g, "aws.flow-log")[0].properties["iamRoleArn"],
            format!("${{ref:aws.iam-role/{env}-flow-logs.arn}}")
        );
        assert_eq!(role["policy"]["Statement"][0]["Resource"], format!("${{ref:aws.log-group/{env}-flow-logs.arn}}:*"));
        // Only this account's flow logs may assume it, and CloudWatch Logs may use the key only for these groups.
        let trust = &role["assumeRolePolicy"]["Statement"][0]["Condition"];
        assert_eq!(trust["StringEquals"]["aws:SourceAccount"], "123456789012");
        let key = &g.nodes[&format!("aws.kms-key/{env}")].properties["policy"]["Statement"][1];
        assert_eq!(key["Sid"], "FlowLogGroup");
        // Those groups: paved's own, EKS's control plane's and RDS's exports
        // (<https://docs.aws.amazon.com/AmazonCloudWatch/latest/logs/encrypt-log-data-kms.html>).
        let groups: Vec<&str> = key["Condition"]["ArnLike"]["kms:EncryptionContext:aws:logs:arn"]
            .as_array()
            .unwrap()
            .iter()
            .map(|g| g.as_str().unwrap().rsplit(":log-group:").next().unwrap())
            .collect();
        assert_eq!(
            groups,
            [format!("/paved/{env}/*"), format!("/aws/eks/paved-{env}/*"), format!("/aws/rds/instance/paved-{env}-*")],
            "{key}"
        );
        // …and every log group paved plans is one of them, encrypted, with the blueprint's retention.
        for group in kind(&g, "aws.log-group") {
            let name = group.properties["name"].as_str().unwrap();
            assert!(groups.iter().any(|g| name.starts_with(g.trim_end_matches('*'))), "{name} not in {groups:?}");
            assert!(group.properties["kmsKeyArn"].as_str().unwrap().starts_with("${ref:aws.kms-key/"), "{name}");
        }
        // A public NAT gateway has its own address.
        assert!(
            kind(&g, "aws.nat-gateway")[0].properties["allocationId"].as_str().unwrap().starts_with("${ref:aws.eip/")
        );
        assert_eq!(kind(&g, "aws.kms-key")[0].properties["alias"], format!("alias/paved/{env}"));
        for db in kind(&g, "aws.rds-instance") {
            assert_eq!(
                (&db.properties["storageEncrypted"], &db.properties["publiclyAccessible"]),
                (&Value::Bool(true), &Value::Bool(false))
            );
            assert!(db.properties["kmsKeyArn"].as_str().unwrap().starts_with("${ref:aws.kms-key/"), "{env}");
            // Storage grows by itself instead of filling up
            // (<https://docs.aws.amazon.com/AmazonRDS/latest/UserGuide/USER_PIOPS.Autoscaling.html>).
            assert!(db.properties["maxAllocatedStorage"].as_u64() > db.properties["allocatedStorage"].as_u64());
            // The master password stays with RDS: no output of paved's holds it.
            assert!(!db.outputs.contains("password"), "{env}");
            // Its exports go to log groups planned before it.
            let identifier = db.properties["identifier"].as_str().unwrap();
            for log in ["postgresql", "upgrade"] {
                let group = kind(&g, "aws.log-group")
                    .into_iter()
                    .find(|l| l.properties["name"] == format!("/aws/rds/instance/{identifier}/{log}"))
                    .unwrap_or_else(|| panic!("{env}: no {log} group"));
                assert!(db.depends_on.contains(&group.id()), "{env}: {log}");
            }
        }
        // Each client service connects as its own login, with its own secret.
        let logins = kind(&g, "aws.db-user");
        assert!(!logins.is_empty(), "{env}");
        for login in logins {
            let username = login.properties["username"].as_str().unwrap();
            assert!(username.starts_with("app_") && username != "paved", "{username}");
            assert!(login.sensitive.contains("password"));
            assert!(login.properties["masterSecretArn"].as_str().unwrap().ends_with(".masterSecretArn}"));
        }
        let bucket = &kind(&g, "aws.s3-bucket")[0].properties;
        assert_eq!(bucket["encryption"]["sseAlgorithm"], "aws:kms");
        // Bucket names are global: every call names the owner
        // (<https://docs.aws.amazon.com/AmazonS3/latest/userguide/bucket-owner-condition.html>).
        assert_eq!(bucket["expectedBucketOwner"], "123456789012");
        assert!(bucket["publicAccessBlock"].as_object().unwrap().values().all(|v| *v == Value::Bool(true)));
        assert!(kind(&g, "aws.sqs-queue")[0].properties["kmsMasterKeyId"].as_str().unwrap().contains("aws.kms-key"));
        let eks = &kind(&g, "aws.eks-cluster")[0].properties;
        assert_eq!(
            (&eks["endpointPrivateAccess"], &eks["endpointPublicAccess"]),
            (&Value::Bool(true), &Value::Bool(false))
        );
        // Ingress from anywhere only on the public load balancer's 443 and 80.
        for sg in kind(&g, "aws.security-group") {
            for rule in sg.properties["ingress"].as_array().unwrap() {
                if rule["cidr"] == "0.0.0.0/0" {
                    assert!(
                        sg.name.ends_with("-lb") && [443, 80].contains(&rule["port"].as_u64().unwrap()),
                        "{env}: {sg:?}"
                    );
                }
            }
        }
        // The database takes connections only from the services that use it
        // and from the cluster's pod subnets, on its port.
        let db_sg = g.nodes.values().find(|n| n.kind == "aws.security-group" && n.name.ends_with("-db")).unwrap();
        let rules = db_sg.properties["ingress"].as_array().unwrap();
        let sources: Vec<&str> = rules.iter().filter_map(|r| r["sourceSecurityGroupId"].as_str()).collect();
        assert_eq!(sources, ["${ref:aws.security-group/api.id}", "${ref:aws.security-group/worker.id}"], "{env}");
        let blocks: Vec<&str> = rules.iter().filter_map(|r| r["cidr"].as_str()).collect();
        let private: Vec<&str> = g
            .nodes
            .values()
            .filter(|n| n.kind == "aws.subnet" && n.name.contains("-private-"))
            .map(|n| n.properties["cidrBlock"].as_str().unwrap())
            .collect();
        assert_eq!(blocks, private, "{env}");
        assert!(rules.iter().all(|r| r["port"] == 5432), "{env}");
        // Every node is tagged (Route 53 records take no tags; links and names are paved's own record); a service's resources name the service.
        for n in g.nodes.values().filter(|n| {
            !["aws.service-link", "aws.dns-record", "aws.dns-name", "aws.security-group-ingress"]
                .contains(&n.kind.as_str())
        }) {
            let tags = &n.properties["tags"];
            assert_eq!(
                (tags["paved:environment"].as_str(), tags["paved:managed-by"].as_str()),
                (Some(env), Some("paved")),
                "{}",
                n.id()
            );
            assert_eq!(tags["paved:blueprint"], "web-service-standard@1.2.0");
        }
        assert_eq!(kind(&g, "aws.s3-bucket")[0].properties["tags"]["paved:service"], "reports");
    }
}

fn with_ingress(idle: &str, tls: &str) -> World {
    let blueprint = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../examples/platform/blueprint-web-service-standard.yaml"
    ))
    .unwrap()
    .replace("idle: 60s", &format!("idle: {idle}"))
    .replace("minVersion: \"1.2\"", &format!("minVersion: \"{tls}\""));
    World::with_extra(vec![SourceFile::new("platform/blueprint-web-service-standard.yaml", blueprint)])
}

#[test]
fn the_blueprints_ingress_behaviour_is_set_on_the_load_balancer() {
    // Idle timeout: the blueprint's, not ALB's default 60 s.
    let lb = |w: &World| kind(&graph(w, "eu-dev", account_plan(&[])), "aws.lb")[0].properties.clone();
    assert_eq!(lb(&with_ingress("45s", "1.2"))["idleTimeoutSeconds"], 45);
    // TLS minimum version → the listener's SSL policy.
    let https = |w: &World| lb(w)["listeners"][0]["sslPolicy"].as_str().unwrap().to_string();
    assert_eq!(https(&with_ingress("60s", "1.2")), "ELBSecurityPolicy-TLS13-1-2-2021-06");
    assert_eq!(https(&with_ingress("60s", "1.3")), "ELBSecurityPolicy-TLS13-1-3-2021-06");
    // The health check as declared (path, interval, timeout).
    let hc = lb(&World::examples())["healthCheck"].clone();
    assert_eq!(
        (hc["path"].as_str(), hc["intervalSeconds"].as_u64(), hc["timeoutSeconds"].as_u64()),
        (Some("/healthz"), Some(10), Some(5))
    );
    // Out of AWS's range: refused by paved (the API would not refuse it). Spec
    // validation already stops such a blueprint; planning checks again.
    let world = World::examples();
    let mut input = world.input("eu-dev", Capabilities::default());
    let mut blueprint = input.blueprint.clone();
    blueprint.spec.ingress.as_mut().unwrap().timeouts.idle = paved_model::SpecDuration("2h".into());
    input.blueprint = &blueprint;
    let errors = plan(&input).unwrap_err();
    assert!(errors.iter().any(|e| e.to_string().contains("1 to 4000 seconds")), "{errors:?}");
    // Flow-log retention follows the blueprint's parameter per environment type.
    let days = |env: &str| {
        kind(&graph(&World::examples(), env, account_plan(&[])), "aws.log-group")[0].properties["retentionDays"].clone()
    };
    assert_eq!((days("eu-dev"), days("eu-production")), (Value::from(7), Value::from(90)));
}

#[test]
fn the_https_listener_serves_a_certificate_for_the_environments_names_and_routes_get_records() {
    let g = graph(&World::examples(), "eu-dev", account_plan(&[]));
    let cert = &kind(&g, "aws.acm-certificate")[0];
    assert_eq!(cert.properties["domain"], "eu-dev.example.com");
    assert_eq!(cert.properties["alternativeNames"], serde_json::json!(["*.eu-dev.example.com"]));
    assert_eq!(cert.properties["zone"], "example.com");
    let lb = &kind(&g, "aws.lb")[0];
    assert_eq!(lb.properties["listeners"][0]["certificateArn"], format!("${{ref:{}.arn}}", cert.id()));
    assert!(lb.depends_on.contains(&cert.id()));
    // web's routes have no host of their own: web.eu-dev.example.com, one record for both.
    let records = kind(&g, "aws.dns-record");
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].properties["name"], "web.eu-dev.example.com");
    assert_eq!(
        records[0].properties["aliasTarget"]["hostedZoneId"],
        format!("${{ref:{}.canonicalHostedZoneId}}", lb.id())
    );
    // The controller that puts pods behind the target group has its own role, for its ServiceAccount only.
    let controller = g.nodes.get("aws.iam-role/eu-dev-lb-controller").unwrap();
    assert_eq!(
        controller.properties["webIdentity"]["subject"],
        "system:serviceaccount:kube-system:aws-load-balancer-controller"
    );
    let register = &controller.properties["policy"]["Statement"][1];
    assert_eq!(register["Resource"], "arn:aws:elasticloadbalancing:eu-central-1:123456789012:targetgroup/*/*");
    assert_eq!(register["Condition"]["StringEquals"]["aws:ResourceTag/paved:cluster"], "paved-eu-dev");
    // TLS without a domain cannot be planned on AWS: it would fail at the listener.
    let world = World::examples();
    let mut input = world.input("eu-dev", Capabilities::default());
    let mut blueprint = input.blueprint.clone();
    blueprint.spec.ingress.as_mut().unwrap().tls.domain = None;
    input.blueprint = &blueprint;
    let errors = plan(&input).unwrap_err();
    assert!(matches!(&errors[..], [PlanError::NoCertificateDomain { .. }]), "{errors:?}");
    assert!(errors[0].to_string().contains("spec.ingress.tls.domain"));
    // Without TLS, a plain HTTP listener and no certificate.
    let mut plain = blueprint.clone();
    plain.spec.ingress.as_mut().unwrap().tls.enabled = false;
    input.blueprint = &plain;
    let g = plan(&input).unwrap();
    assert!(kind(&g, "aws.acm-certificate").is_empty());
    assert_eq!(kind(&g, "aws.lb")[0].properties["listeners"], serde_json::json!([{"port": 80, "protocol": "HTTP"}]));
}

#[test]
fn a_region_outside_the_account_is_refused_at_plan_time() {
    let world = World::examples();
    let mut input = world.input("eu-dev", Capabilities::default());
    let mut env = input.environment.clone();
    env.spec.region = "us-east-1".into();
    input.environment = &env;
    let errors = plan(&input).unwrap_err();
    assert!(matches!(&errors[..], [PlanError::RegionNotAllowed { region, .. }] if region == "us-east-1"), "{errors:?}");
}

#[test]
fn environments_in_two_regions_differ_only_by_their_parameters() {
    let world = World::examples();
    let dev = graph(&world, "eu-dev", account_plan(&[]));
    let staging = graph(&world, "eu-staging", account_plan(&[]));
    // Names, regions and address blocks are masked; what remains comes from parameters.
    let differences: BTreeSet<(String, String)> =
        paved_plan::parity::parity(&dev, &staging).into_iter().map(|d| (d.node, d.field)).collect();
    let expected: BTreeSet<(String, String)> = [
        ("aws.eks-node-group/{env}", "instanceType"),
        ("aws.rds-instance/payments-db", "instanceClass"),
        ("aws.rds-instance/payments-db", "backupRetentionDays"),
    ]
    .iter()
    .map(|(n, f)| (n.to_string(), f.to_string()))
    .collect();
    assert_eq!(differences, expected);
}

#[test]
fn a_routed_service_gets_its_own_target_group_and_a_listener_rule_for_its_host() {
    let g = graph(&World::examples(), "eu-dev", account_plan(&[]));
    let group = g.nodes.get("aws.lb-target-group/eu-dev-web").expect("web's target group");
    assert_eq!(group.properties["name"], "paved-eu-dev-web");
    assert_eq!(group.properties["targetType"], "ip");
    // The controller of this cluster may register targets in it: the tag its policy names.
    assert_eq!(group.properties["tags"]["paved:cluster"], "paved-eu-dev");
    assert_eq!(group.properties["healthCheck"]["path"], "/healthz");
    let routes = kind(&g, "aws.lb-route");
    assert!(!routes.is_empty());
    for route in routes {
        assert_eq!(route.properties["targetGroupArn"], format!("${{ref:{}.arn}}", group.id()));
        assert_eq!(route.properties["listenerPort"], 443);
        assert_eq!(route.properties["host"], "web.eu-dev.example.com");
        assert!(route.depends_on.contains(&group.id()) && route.depends_on.contains("aws.lb/eu-dev"));
    }
    // Pods are the targets: the cluster's security group (EKS's, an apply-time output) admits the load balancer's.
    let admit = g.nodes.get("aws.security-group-ingress/eu-dev-lb-to-pods").expect("load balancer → pods rule");
    assert_eq!(admit.properties["groupId"], "${ref:aws.eks-cluster/eu-dev.securityGroupId}");
    assert_eq!(admit.properties["sourceSecurityGroupId"], "${ref:aws.security-group/eu-dev-lb.id}");
    // Kubernetes access by access entries only; paved's role gets no standing administrator rights.
    let cluster = &kind(&g, "aws.eks-cluster")[0].properties;
    assert_eq!(
        (&cluster["authenticationMode"], &cluster["bootstrapClusterCreatorAdminPermissions"]),
        (&Value::from("API"), &Value::from(false))
    );
    // ELB's 32 characters: a long name is shortened with a hash of the whole, distinct and stable.
    let long = paved_plan::aws::route_target_group_name("pr-1234-a-rather-long-repository", "checkout");
    assert!(long.len() <= 32 && !long.ends_with('-') && long.starts_with("paved-pr-1234-"), "{long}");
    assert_ne!(long, paved_plan::aws::route_target_group_name("pr-1234-a-rather-long-repository", "checkouts"));
    assert_eq!(paved_plan::aws::route_target_group_name("eu-dev", "web"), "paved-eu-dev-web");
}

/// `host`'s graph as its state would hold it once applied: every output a
/// value (`OUTPUT-of-NODE`).
fn applied(g: &ResourceGraph) -> paved_plan::aws::Host {
    let nodes = g
        .nodes
        .iter()
        .map(|(id, n)| {
            let outputs: serde_json::Map<String, Value> =
                n.outputs.iter().map(|o| (o.clone(), Value::from(format!("{o}-of-{id}")))).collect();
            (
                id.clone(),
                paved_plan::aws::HostNode { properties: n.properties.clone(), outputs: Value::Object(outputs) },
            )
        })
        .collect();
    paved_plan::aws::Host { environment: g.environment.clone(), nodes }
}

#[test]
fn a_preview_is_a_namespace_on_its_hosts_cluster_with_its_own_data_and_identity() {
    let world = World::examples();
    let host_graph = graph(&world, "eu-dev", account_plan(&[]));
    let mut input = world.input("eu-dev", Capabilities::default());
    let mut preview = input.environment.clone();
    preview.metadata.name = "pr-7-shop".into();
    preview.spec.env_type = paved_model::EnvType::Preview;
    input.environment = &preview;
    // Without its host, or before the host is applied: a plan error that says what to do.
    let errors = plan(&input).unwrap_err();
    assert!(matches!(&errors[..], [PlanError::NoHost { .. }]), "{errors:?}");
    input.host = Some(paved_plan::aws::Host { environment: "eu-dev".into(), nodes: Default::default() });
    let errors = plan(&input).unwrap_err();
    assert!(errors[0].to_string().contains("`eu-dev`, which is not applied yet"), "{errors:?}");
    assert!(errors[0].to_string().contains("paved apply -e eu-dev"), "{errors:?}");

    input.host = Some(applied(&host_graph));
    let g = plan(&input).unwrap_or_else(|e| panic!("{e:?}"));
    // Nothing of the host's is planned again.
    for shared in [
        "aws.vpc",
        "aws.subnet",
        "aws.nat-gateway",
        "aws.flow-log",
        "aws.eks-cluster",
        "aws.eks-node-group",
        "aws.iam-oidc-provider",
        "aws.lb",
        "aws.acm-certificate",
    ] {
        assert!(kind(&g, shared).is_empty(), "a preview plans its own {shared}");
    }
    assert!(!g.nodes.contains_key("aws.iam-role/pr-7-shop-lb-controller"));
    // Its own key, database and secrets' identity.
    assert!(g.nodes.contains_key("aws.kms-key/pr-7-shop"));
    let db = &kind(&g, "aws.rds-instance")[0];
    assert!(db.properties["identifier"].as_str().unwrap().starts_with("paved-pr-7-shop-"));
    let subnets = &kind(&g, "aws.db-subnet-group")[0].properties["subnetIds"];
    assert_eq!(subnets, &serde_json::json!(["id-of-aws.subnet/eu-dev-private-a", "id-of-aws.subnet/eu-dev-private-b"]));
    // The database admits the host's pod subnets.
    let db_group = kind(&g, "aws.security-group").into_iter().find(|n| n.id().ends_with("-db")).unwrap();
    assert_eq!(db_group.properties["vpcId"], "id-of-aws.vpc/eu-dev");
    let host_private = host_graph.nodes["aws.subnet/eu-dev-private-a"].properties["cidrBlock"].clone();
    assert!(db_group.properties["ingress"].as_array().unwrap().iter().any(|i| i["cidr"] == host_private));
    // Pods act as the preview's roles, trusted through the host cluster's issuer, for the preview's namespace.
    let api = g.nodes.get("aws.iam-role/pr-7-shop-svc-api").unwrap();
    assert_eq!(api.properties["webIdentity"]["provider"], "arn-of-aws.iam-oidc-provider/eu-dev");
    assert_eq!(api.properties["webIdentity"]["subject"], "system:serviceaccount:pr-7-shop:api");
    // Routes: the preview's own target group and rule, on the host's load balancer, under the host's certificate.
    let group = g.nodes.get("aws.lb-target-group/pr-7-shop-web").unwrap();
    assert_eq!(group.properties["tags"]["paved:cluster"], "paved-eu-dev");
    assert_eq!(group.properties["vpcId"], "id-of-aws.vpc/eu-dev");
    let route = &kind(&g, "aws.lb-route")[0];
    assert_eq!(route.properties["loadBalancerArn"], "arn-of-aws.lb/eu-dev");
    assert_eq!(route.properties["host"], "web-pr-7-shop.eu-dev.example.com");
    assert_eq!(kind(&g, "aws.dns-record")[0].properties["aliasTarget"]["dnsName"], "dnsName-of-aws.lb/eu-dev");
    assert_eq!(g.identity["cluster"], "paved-eu-dev");
    // Every dependency is inside the preview's own graph.
    g.validate().unwrap();
}

#[test]
fn names_derived_from_long_environment_and_service_names_fit_awss_limits() {
    // A preview of a long repository name: 63 characters, the most an environment name has.
    let world = with_storage();
    let host_graph = graph(&world, "eu-dev", account_plan(&[]));
    let mut input = world.input("eu-dev", Capabilities::default());
    let mut preview = input.environment.clone();
    preview.metadata.name =
        format!("pr-123456-{}", "a-very-long-repository-name-".repeat(2)).trim_end_matches('-').into();
    preview.metadata.name.truncate(63);
    preview.spec.env_type = paved_model::EnvType::Preview;
    input.environment = &preview;
    input.host = Some(applied(&host_graph));
    let g = plan(&input).unwrap_or_else(|e| panic!("{e:?}"));
    // Each limit is on the page `paved_plan::aws` cites beside it.
    use paved_plan::aws::{DNS_LABEL, ELB_NAME, IAM_ROLE_NAME, RDS_IDENTIFIER, S3_BUCKET, SQS_QUEUE};
    let limits = [
        ("aws.iam-role", "name", IAM_ROLE_NAME),
        ("aws.rds-instance", "identifier", RDS_IDENTIFIER),
        ("aws.s3-bucket", "bucket", S3_BUCKET),
        ("aws.sqs-queue", "name", SQS_QUEUE),
        ("aws.lb-target-group", "name", ELB_NAME),
    ];
    let mut checked = 0;
    for (kind_name, field, limit) in limits {
        for n in kind(&g, kind_name) {
            let name = n.properties[field].as_str().unwrap();
            assert!(name.len() <= limit && !name.ends_with('-'), "{kind_name} {name}: {} > {limit}", name.len());
            checked += 1;
        }
    }
    assert!(checked >= 8, "only {checked} names checked");
    for record in kind(&g, "aws.dns-record") {
        let label = record.properties["name"].as_str().unwrap().split('.').next().unwrap();
        assert!(label.len() <= DNS_LABEL, "{label}");
    }
    // The pod role the manifests annotate is the role the plan creates.
    let api = paved_plan::aws::service_role_name(&preview.metadata.name, "api");
    assert!(kind(&g, "aws.iam-role").iter().any(|n| n.properties["name"] == api.as_str()), "{api}");
    // Shortening is stable and keeps distinct names distinct.
    let fit = paved_plan::aws::fit;
    assert_eq!(fit("paved-eu-dev-db", 63), "paved-eu-dev-db");
    assert_eq!(fit(&"x".repeat(70), 63), fit(&"x".repeat(70), 63));
    assert_ne!(fit(&format!("{}a", "x".repeat(70)), 63), fit(&format!("{}b", "x".repeat(70)), 63));
}

#[test]
fn a_log_retention_cloudwatch_does_not_take_is_refused_at_plan_time() {
    // CloudWatch Logs takes only fixed retentions
    // (https://docs.aws.amazon.com/AmazonCloudWatchLogs/latest/APIReference/API_PutRetentionPolicy.html):
    // 10 days is within the blueprint's 1–365 but not one of them; 14 is.
    let world = World::examples();
    let with_days = |days: u32| {
        let mut env = world.input("eu-dev", Capabilities::default()).environment.clone();
        env.spec.parameters.insert("logDays".into(), serde_json::json!(days));
        env
    };
    let (ten, fourteen) = (with_days(10), with_days(14));
    let mut input = world.input("eu-dev", Capabilities::default());
    input.environment = &ten;
    let errors = plan(&input).unwrap_err();
    let text = errors[0].to_string();
    assert!(text.contains("spec.observability.logRetentionDays") && text.contains("1, 3, 5, 7, 14, 30"), "{text}");
    input.environment = &fourteen;
    assert!(plan(&input).is_ok());
}

#[test]
fn a_network_that_gives_the_clusters_nodes_no_way_out_is_refused_at_plan_time() {
    // Nodes in private subnets pull images and join the cluster through NAT
    // (https://docs.aws.amazon.com/eks/latest/userguide/private-clusters.html).
    use paved_model::blueprint::{Egress, NetworkTier};
    let world = World::examples();
    let base = world.input("eu-dev", Capabilities::default()).blueprint.clone();
    let cases = [
        (Egress::None, None, "`egress: none`"),
        (Egress::Internet, None, "nodes run in private ones"),
        (Egress::Nat, Some(vec![NetworkTier::Public, NetworkTier::Isolated]), "lacks"),
    ];
    for (egress, tiers, why) in cases {
        let mut blueprint = base.clone();
        blueprint.spec.network.egress = egress;
        if let Some(tiers) = tiers {
            blueprint.spec.network.tiers = tiers;
        }
        let mut input = world.input("eu-dev", Capabilities::default());
        input.blueprint = &blueprint;
        let errors = plan(&input).unwrap_err();
        let found = errors.iter().find(|e| matches!(e, PlanError::NoNodeEgress { .. })).expect("NoNodeEgress");
        assert!(found.to_string().contains(why) && found.to_string().contains("network.egress: nat"), "{found}");
    }
}

/// Zone letters differ between accounts
/// (<https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/using-regions-availability-zones.html>):
/// subnets go in the zones AWS offers, read before the first apply and
/// from the applied subnets after.
#[test]
fn subnets_go_in_the_zones_the_account_has() {
    let world = World::examples();
    let zones_of = |g: &ResourceGraph| -> BTreeSet<String> {
        kind(g, "aws.subnet").iter().map(|s| s.properties["availabilityZone"].as_str().unwrap().to_string()).collect()
    };
    // Not asked yet: provisional, and said so.
    let provisional = graph(&world, "eu-staging", account_plan(&[]));
    assert!(paved_plan::aws::zones_provisional(&provisional));
    assert_eq!(zones_of(&provisional), BTreeSet::from(["eu-west-1a".to_string(), "eu-west-1b".to_string()]));
    // An account without zone `b`: the first two it has, in name order; ids name the place.
    let offered = ["eu-west-1c".to_string(), "eu-west-1a".to_string(), "eu-west-1d".to_string()];
    let mut input = world.input("eu-staging", Capabilities::default());
    input.addresses = account_plan(&[]);
    input.zones = Some(offered.to_vec());
    let known = plan(&input).unwrap();
    assert!(!paved_plan::aws::zones_provisional(&known));
    assert_eq!(known.nodes["aws.subnet/eu-staging-private-a"].properties["availabilityZone"], "eu-west-1a");
    assert_eq!(known.nodes["aws.subnet/eu-staging-private-b"].properties["availabilityZone"], "eu-west-1c");
    // The apply places a provisional plan's subnets just as planning with the zones would have.
    let mut placed = provisional.clone();
    paved_plan::aws::place_zones(&mut placed, &offered).unwrap();
    assert_eq!(placed, known);
    // A region offering one zone cannot hold an environment.
    input.zones = Some(vec!["eu-west-1a".into()]);
    let errors = plan(&input).unwrap_err();
    assert!(matches!(&errors[0], PlanError::TooFewZones { count: 1, needed: 2, .. }), "{errors:?}");
    assert!(errors[0].to_string().contains("choose another region"), "{}", errors[0]);
}

/// <https://docs.aws.amazon.com/vpc/latest/userguide/nat-gateway-basics.html>:
/// a NAT gateway lives in one zone.
#[test]
fn production_has_a_nat_gateway_per_zone_and_other_environments_share_one() {
    let world = World::examples();
    let prod = graph(&world, "eu-production", account_plan(&[]));
    let nats = kind(&prod, "aws.nat-gateway");
    assert_eq!(nats.len(), 2);
    // Each zone's private subnet routes through the NAT gateway in its own zone's public subnet.
    for slot in paved_plan::aws::ZONE_SLOTS {
        let table = &prod.nodes[&format!("aws.route-table/eu-production-private-{slot}")].properties;
        assert_eq!(
            table["subnetIds"],
            serde_json::json!([format!("${{ref:aws.subnet/eu-production-private-{slot}.id}}")])
        );
        let nat = &prod.nodes[&format!("aws.nat-gateway/eu-production-{slot}")].properties;
        assert_eq!(nat["subnetId"], format!("${{ref:aws.subnet/eu-production-public-{slot}.id}}"));
        assert_eq!(table["routes"][0]["natGatewayId"], format!("${{ref:aws.nat-gateway/eu-production-{slot}.id}}"));
    }
    let dev = graph(&world, "eu-dev", account_plan(&[]));
    assert_eq!(kind(&dev, "aws.nat-gateway").len(), 1);
}

/// EKS versions: the blueprint's, else the newest in standard support
/// (<https://docs.aws.amazon.com/eks/latest/userguide/kubernetes-versions.html>);
/// nodes follow the control plane, and a node group's subnets cannot change
/// in place (`UpdateNodegroupConfig` takes none:
/// <https://docs.aws.amazon.com/eks/latest/APIReference/API_UpdateNodegroupConfig.html>).
#[test]
fn the_cluster_and_its_nodes_run_the_blueprints_kubernetes_version() {
    let world = World::examples();
    let g = graph(&world, "eu-dev", account_plan(&[]));
    let cluster = &kind(&g, "aws.eks-cluster")[0].properties;
    let nodes = kind(&g, "aws.eks-node-group")[0];
    assert_eq!(cluster["version"], paved_plan::aws::EKS_VERSION);
    assert_eq!(nodes.properties["version"], paved_plan::aws::EKS_VERSION);
    assert!(nodes.immutable.contains("subnetIds"));
    let blueprint = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../examples/platform/blueprint-web-service-standard.yaml"),
    )
    .unwrap()
    .replace("    runtime: cluster\n", "    runtime: cluster\n    kubernetesVersion: \"1.36\"\n");
    let world = World::with_extra(vec![SourceFile::new("blueprint-web-service-standard.yaml", &blueprint)]);
    let g = graph(&world, "eu-dev", account_plan(&[]));
    assert_eq!(kind(&g, "aws.eks-cluster")[0].properties["version"], "1.36");
    assert_eq!(kind(&g, "aws.eks-node-group")[0].properties["version"], "1.36");
    // The control plane's log group is paved's, and comes first.
    let group = &g.nodes["aws.log-group/eu-dev-eks"];
    assert_eq!(group.properties["name"], "/aws/eks/paved-eu-dev/cluster");
    assert!(kind(&g, "aws.eks-cluster")[0].depends_on.contains("aws.log-group/eu-dev-eks"));
}

#[test]
fn a_mysql_resource_is_rds_for_mysql_with_its_own_rules_and_a_short_login() {
    let name = "order-history-and-returns-service";
    let world = World::with_extra(vec![SourceFile::new(
        "orders.score.yaml",
        format!(
            "apiVersion: score.dev/v1b1\nmetadata:\n  name: {name}\n  annotations:\n    paved.dev/owner: payments\n\
             containers:\n  main:\n    image: orders:1\n    variables:\n      DB_USER: ${{resources.db.username}}\n\
             resources:\n  db:\n    type: mysql\n"
        ),
    )]);
    for (env, insights) in [("eu-dev", false), ("eu-production", true)] {
        let g = graph(&world, env, account_plan(&[]));
        let key = format!("{name}-db");
        let db = &g.nodes[&format!("aws.rds-instance/{key}")];
        let p = &db.properties;
        assert_eq!((p["engine"].as_str(), p["engineVersion"].as_str()), (Some("mysql"), Some("8.4")), "{env}");
        assert_eq!(p["cloudwatchLogsExports"], serde_json::json!(["error", "slowquery"]), "{env}");
        // RDS for MySQL refuses Performance Insights on db.t4g.small
        // (<https://docs.aws.amazon.com/AmazonRDS/latest/UserGuide/USER_DatabaseInsights.Engines.html>).
        assert_eq!(!p["performanceInsightsKmsKeyArn"].is_null(), insights, "{env}: {p}");
        assert_eq!(p["instanceClass"] == "db.t4g.small", !insights, "{env}");
        // The login fits MySQL's 32 characters and says which protocol to speak.
        let login = &g.nodes[&format!("aws.db-user/{key}-{name}")].properties;
        let user = login["username"].as_str().unwrap();
        assert!(user.len() <= 32 && user.starts_with("app_order_history"), "{user}");
        assert_eq!(login["engine"], "mysql");
        // Its security group admits the clients on MySQL's port only.
        let sg = &g.nodes[&format!("aws.security-group/{key}-db")].properties;
        let ports: BTreeSet<u64> =
            sg["ingress"].as_array().unwrap().iter().map(|i| i["port"].as_u64().unwrap()).collect();
        assert_eq!(ports, BTreeSet::from([3306]), "{sg}");
        // PostgreSQL beside it keeps its own settings.
        let pg = &g.nodes["aws.rds-instance/payments-db"].properties;
        assert_eq!((pg["engine"].as_str(), pg["performanceInsightsKmsKeyArn"].is_null()), (Some("postgres"), false));
    }
}
