//! Terraform JSON (`main.tf.json`) of an AWS resource graph: the same graph
//! paved applies, for review with IaC scanners (checkov) and for export.
//! References between nodes become Terraform references, so a scanner sees
//! which flow log belongs to which VPC. Nodes that are only paved's record
//! (`aws.service-link`) have no Terraform resource, nor has a route's
//! listener rule (`aws.lb-route`): the listener it joins is part of the
//! `aws.lb` node, not a resource it could reference.

use crate::{Node, ResourceGraph};
use serde_json::{Map, Value, json};

/// The Terraform resource type of a node kind, and the attribute behind each output.
fn resource_type(kind: &str) -> Option<&'static str> {
    Some(match kind {
        "aws.kms-key" => "aws_kms_key",
        "aws.vpc" => "aws_vpc",
        "aws.log-group" => "aws_cloudwatch_log_group",
        "aws.flow-log" => "aws_flow_log",
        "aws.subnet" => "aws_subnet",
        "aws.internet-gateway" => "aws_internet_gateway",
        "aws.nat-gateway" => "aws_nat_gateway",
        "aws.eip" => "aws_eip",
        "aws.iam-role" => "aws_iam_role",
        "aws.route-table" => "aws_route_table",
        "aws.security-group" => "aws_security_group",
        "aws.default-security-group" => "aws_default_security_group",
        "aws.eks-cluster" => "aws_eks_cluster",
        "aws.eks-node-group" => "aws_eks_node_group",
        "aws.lb" => "aws_lb",
        "aws.lb-target-group" => "aws_lb_target_group",
        "aws.security-group-ingress" => "aws_security_group_rule",
        "aws.db-subnet-group" => "aws_db_subnet_group",
        "aws.rds-instance" => "aws_db_instance",
        "aws.s3-bucket" => "aws_s3_bucket",
        "aws.sqs-queue" => "aws_sqs_queue",
        "aws.mq-broker" => "aws_mq_broker",
        "aws.elasticache-subnet-group" => "aws_elasticache_subnet_group",
        "aws.elasticache-replication-group" => "aws_elasticache_replication_group",
        "aws.iam-oidc-provider" => "aws_iam_openid_connect_provider",
        "aws.secret" => "aws_secretsmanager_secret",
        _ => return None,
    })
}

fn attribute(output: &str) -> &str {
    match output {
        "keyId" => "key_id",
        "allocationId" => "allocation_id",
        "publicIp" => "public_ip",
        "dnsName" => "dns_name",
        "host" => "address",
        "oidcIssuer" => "identity[0].oidc[0].issuer",
        "securityGroupId" => "vpc_config[0].cluster_security_group_id",
        // The provider's URL attribute is the issuer without `https://`.
        "issuer" => "url",
        other => other,
    }
}

/// A role's trust document: as given, or the one its `webIdentity` (a
/// cluster ServiceAccount, IRSA) stands for, as the IAM driver builds it.
fn trust_policy(p: &Value) -> Value {
    let web = &p["webIdentity"];
    if web.is_null() {
        return p["assumeRolePolicy"].clone();
    }
    let issuer = web["issuer"].as_str().unwrap_or_default();
    json!({"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow",
        "Principal": {"Federated": web["provider"]},
        "Action": "sts:AssumeRoleWithWebIdentity",
        "Condition": {"StringEquals": {format!("{issuer}:sub"): web["subject"], format!("{issuer}:aud"): web["audience"]}},
    }]})
}

/// A Terraform-safe local name for a paved node name.
fn local_name(name: &str) -> String {
    let mut out: String = name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' { c } else { '_' }).collect();
    if !out.starts_with(|c: char| c.is_ascii_alphabetic()) {
        out.insert(0, 'n');
    }
    out
}

/// `${ref:KIND/NAME.OUTPUT}` → `${TYPE.NAME.ATTRIBUTE}` in every string.
fn references(v: &Value) -> Value {
    match v {
        Value::String(s) => {
            let mut out = String::new();
            let mut rest = s.as_str();
            while let Some(i) = rest.find("${ref:") {
                out.push_str(&rest[..i]);
                let after = &rest[i + 6..];
                let Some(end) = after.find('}') else { break };
                let target = &after[..end];
                match target.rsplit_once('.').and_then(|(node, output)| {
                    let (kind, name) = node.split_once('/')?;
                    Some(format!("${{{}.{}.{}}}", resource_type(kind)?, local_name(name), attribute(output)))
                }) {
                    Some(r) => out.push_str(&r),
                    None => out.push_str(&rest[i..i + 6 + end + 1]),
                }
                rest = &after[end + 1..];
            }
            out.push_str(rest);
            Value::String(out)
        }
        Value::Array(a) => Value::Array(a.iter().map(references).collect()),
        Value::Object(m) => Value::Object(m.iter().map(|(k, x)| (k.clone(), references(x))).collect()),
        other => other.clone(),
    }
}

fn rule(r: &Value) -> Value {
    let (from, to) = match (r.get("port"), r.get("fromPort"), r.get("toPort")) {
        (Some(p), _, _) => (p.clone(), p.clone()),
        (None, Some(f), Some(t)) => (f.clone(), t.clone()),
        _ => (json!(0), json!(0)),
    };
    json!({
        "description": "managed by paved",
        "from_port": from,
        "to_port": to,
        "protocol": r["protocol"],
        "cidr_blocks": r.get("cidr").map_or(json!([]), |c| json!([c])),
        "security_groups": r.get("sourceSecurityGroupId").map_or(json!([]), |s| json!([s])),
        "ipv6_cidr_blocks": [],
        "prefix_list_ids": [],
        "self": false,
    })
}

/// The Terraform resources (type, local name, body) one node becomes.
fn resources(node: &Node) -> Vec<(&'static str, String, Value)> {
    let Some(kind) = resource_type(&node.kind) else { return vec![] };
    let p = &node.properties;
    let name = local_name(&node.name);
    let tags = p["tags"].clone();
    let main = match node.kind.as_str() {
        "aws.kms-key" => json!({"description": p["description"], "enable_key_rotation": p["enableKeyRotation"],
                                "policy": p["policy"].to_string(), "tags": tags}),
        // No rule blocks at all: the default group admits nothing.
        "aws.default-security-group" => json!({"vpc_id": p["vpcId"], "tags": tags}),
        "aws.vpc" => json!({"cidr_block": p["cidrBlock"], "enable_dns_hostnames": p["enableDnsHostnames"],
                            "enable_dns_support": p["enableDnsSupport"], "tags": tags}),
        "aws.log-group" => {
            json!({"name": p["name"], "retention_in_days": p["retentionDays"], "kms_key_id": p["kmsKeyArn"], "tags": tags})
        }
        "aws.flow-log" => {
            json!({"vpc_id": p["vpcId"], "traffic_type": p["trafficType"], "log_destination": p["logGroupArn"],
                                 "log_destination_type": "cloud-watch-logs", "iam_role_arn": p["iamRoleArn"], "tags": tags})
        }
        "aws.subnet" => {
            json!({"vpc_id": p["vpcId"], "cidr_block": p["cidrBlock"], "availability_zone": p["availabilityZone"],
                               "map_public_ip_on_launch": p["mapPublicIpOnLaunch"], "tags": tags})
        }
        "aws.internet-gateway" => json!({"vpc_id": p["vpcId"], "tags": tags}),
        "aws.nat-gateway" => json!({"subnet_id": p["subnetId"], "allocation_id": p["allocationId"],
                                    "connectivity_type": p["connectivity"], "tags": tags}),
        "aws.eip" => json!({"domain": p["domain"], "tags": tags}),
        "aws.iam-role" => {
            json!({"name": p["name"], "assume_role_policy": trust_policy(p).to_string(), "tags": tags})
        }
        "aws.iam-oidc-provider" => json!({"url": p["url"], "client_id_list": p["clientIds"], "tags": tags}),
        // The values are never exported: they are secrets, resolved by paved at apply.
        "aws.secret" => json!({"name": p["name"], "kms_key_id": p["kmsKeyId"], "tags": tags}),
        "aws.route-table" => json!({
            "vpc_id": p["vpcId"],
            "route": p["routes"].as_array().into_iter().flatten().map(|r| json!({
                "cidr_block": r["destination"],
                "gateway_id": r.get("internetGatewayId").cloned().unwrap_or(Value::Null),
                "nat_gateway_id": r.get("natGatewayId").cloned().unwrap_or(Value::Null),
            })).collect::<Vec<_>>(),
            "tags": tags,
        }),
        "aws.security-group" => json!({
            "name": format!("paved-{}", node.name),
            "description": p["description"],
            "vpc_id": p["vpcId"],
            "ingress": p["ingress"].as_array().into_iter().flatten().map(rule).collect::<Vec<_>>(),
            "egress": p["egress"].as_array().into_iter().flatten().map(rule).collect::<Vec<_>>(),
            "tags": tags,
        }),
        "aws.eks-cluster" => json!({
            "name": p["name"],
            "version": p["version"],
            "role_arn": p["roleArn"],
            "vpc_config": {"subnet_ids": p["subnetIds"], "endpoint_private_access": p["endpointPrivateAccess"],
                           "endpoint_public_access": p["endpointPublicAccess"]},
            "encryption_config": {"provider": {"key_arn": p["secretsEncryptionKeyArn"]}, "resources": ["secrets"]},
            "enabled_cluster_log_types": p["enabledLogTypes"],
            "access_config": {"authentication_mode": p["authenticationMode"],
                              "bootstrap_cluster_creator_admin_permissions": p["bootstrapClusterCreatorAdminPermissions"]},
            "tags": tags,
        }),
        "aws.eks-node-group" => json!({
            "cluster_name": p["clusterName"],
            "node_group_name": format!("paved-{}", node.name),
            "node_role_arn": p["nodeRoleArn"],
            "version": p["version"],
            "subnet_ids": p["subnetIds"],
            "instance_types": [p["instanceType"]],
            "scaling_config": {"desired_size": p["desiredSize"], "min_size": p["minSize"], "max_size": p["maxSize"]},
            "tags": tags,
        }),
        "aws.lb" => json!({
            "name": p["name"],
            "load_balancer_type": p["type"],
            "internal": p["scheme"] != "internet-facing",
            "subnets": p["subnetIds"],
            "security_groups": p["securityGroupIds"],
            "idle_timeout": p["idleTimeoutSeconds"],
            "drop_invalid_header_fields": p["dropInvalidHeaderFields"],
            "enable_deletion_protection": p["deletionProtection"],
            "tags": tags,
        }),
        "aws.security-group-ingress" => json!({
            "type": "ingress",
            "security_group_id": p["groupId"],
            "protocol": p["protocol"],
            "from_port": p["fromPort"],
            "to_port": p["toPort"],
            "source_security_group_id": p["sourceSecurityGroupId"],
        }),
        "aws.lb-target-group" => json!({
            "name": p["name"],
            "vpc_id": p["vpcId"],
            "protocol": p["protocol"],
            "port": p["port"],
            "target_type": p["targetType"],
            "health_check": [{
                "path": p["healthCheck"]["path"],
                "interval": p["healthCheck"]["intervalSeconds"],
                "timeout": p["healthCheck"]["timeoutSeconds"],
                "healthy_threshold": p["healthCheck"]["healthyThreshold"],
                "unhealthy_threshold": p["healthCheck"]["unhealthyThreshold"],
            }],
            "tags": tags,
        }),
        "aws.db-subnet-group" => json!({"name": p["name"], "subnet_ids": p["subnetIds"], "tags": tags}),
        "aws.rds-instance" => json!({
            "identifier": p["identifier"],
            "engine": p["engine"],
            "engine_version": p["engineVersion"],
            "instance_class": p["instanceClass"],
            "allocated_storage": p["allocatedStorage"],
            "max_allocated_storage": p["maxAllocatedStorage"],
            "storage_encrypted": p["storageEncrypted"],
            "kms_key_id": p["kmsKeyArn"],
            "publicly_accessible": p["publiclyAccessible"],
            "backup_retention_period": p["backupRetentionDays"],
            "multi_az": p["multiAz"],
            "db_subnet_group_name": p["dbSubnetGroup"],
            "vpc_security_group_ids": p["securityGroupIds"],
            "username": "paved",
            "manage_master_user_password": p["manageMasterUserPassword"],
            "master_user_secret_kms_key_id": p["masterUserSecretKmsKeyArn"],
            "iam_database_authentication_enabled": p["iamDatabaseAuthentication"],
            "auto_minor_version_upgrade": p["autoMinorVersionUpgrade"],
            "enabled_cloudwatch_logs_exports": p["cloudwatchLogsExports"],
            "performance_insights_enabled": !p["performanceInsightsKmsKeyArn"].is_null(),
            "performance_insights_kms_key_id": p["performanceInsightsKmsKeyArn"],
            "deletion_protection": p["deletionProtection"],
            "skip_final_snapshot": p["finalSnapshot"] != true,
            "final_snapshot_identifier": if p["finalSnapshot"] == true { json!(format!("{}-final", p["identifier"].as_str().unwrap_or_default())) } else { Value::Null },
            "delete_automated_backups": p["finalSnapshot"] != true,
            "db_name": p["databaseName"],
            "copy_tags_to_snapshot": true,
            "tags": tags,
        }),
        "aws.s3-bucket" => json!({"bucket": p["bucket"], "tags": tags}),
        "aws.sqs-queue" => json!({"name": p["name"], "kms_master_key_id": p["kmsMasterKeyId"], "tags": tags}),
        "aws.elasticache-subnet-group" => json!({"name": p["name"], "subnet_ids": p["subnetIds"], "tags": tags}),
        "aws.elasticache-replication-group" => json!({
            "replication_group_id": p["id"],
            "description": p["description"],
            "engine": p["engine"],
            "engine_version": p["engineVersion"],
            "node_type": p["nodeType"],
            "num_cache_clusters": p["nodes"],
            "automatic_failover_enabled": p["automaticFailover"],
            "multi_az_enabled": p["multiAz"],
            "transit_encryption_enabled": p["transitEncryption"],
            "at_rest_encryption_enabled": p["atRestEncryption"],
            "kms_key_id": p["kmsKeyArn"],
            "auth_token": "(generated by paved, sealed)",
            "subnet_group_name": p["subnetGroup"],
            "security_group_ids": p["securityGroupIds"],
            "snapshot_retention_limit": p["snapshotRetentionDays"],
            "tags": tags,
        }),
        "aws.mq-broker" => json!({
            "broker_name": p["name"],
            "engine_type": "RabbitMQ",
            "engine_version": p["engineVersion"],
            "auto_minor_version_upgrade": p["autoMinorVersionUpgrade"],
            "deployment_mode": p["deploymentMode"],
            "host_instance_type": p["hostInstanceType"],
            "publicly_accessible": p["publiclyAccessible"],
            "subnet_ids": p["subnetIds"],
            "security_groups": p["securityGroupIds"],
            "logs": {"general": p["generalLogs"]},
            // The password is paved's sealed secret; a reviewer sees only that it is set.
            "user": [{"username": p["username"], "password": "(generated by paved, sealed)"}],
            "tags": tags,
        }),
        _ => return vec![],
    };
    let mut out = vec![(kind, name.clone(), main)];
    match node.kind.as_str() {
        "aws.iam-role" => {
            if !p["policy"].is_null() {
                out.push((
                    "aws_iam_role_policy",
                    name.clone(),
                    json!({"name": "paved", "role": format!("${{aws_iam_role.{name}.id}}"), "policy": p["policy"].to_string()}),
                ));
            }
            for (i, arn) in p["managedPolicyArns"].as_array().into_iter().flatten().enumerate() {
                out.push((
                    "aws_iam_role_policy_attachment",
                    format!("{name}_{i}"),
                    json!({"role": format!("${{aws_iam_role.{name}.name}}"), "policy_arn": arn}),
                ));
            }
        }
        "aws.kms-key" => out.push((
            "aws_kms_alias",
            name.clone(),
            json!({"name": p["alias"], "target_key_id": format!("${{aws_kms_key.{name}.key_id}}")}),
        )),
        "aws.route-table" => {
            for (i, subnet) in p["subnetIds"].as_array().into_iter().flatten().enumerate() {
                out.push((
                    "aws_route_table_association",
                    format!("{name}_{i}"),
                    json!({"route_table_id": format!("${{aws_route_table.{name}.id}}"), "subnet_id": subnet}),
                ));
            }
        }
        "aws.lb" => {
            let https = &p["listeners"][0];
            out.push((
                "aws_lb_listener",
                format!("{name}_https"),
                json!({"load_balancer_arn": format!("${{aws_lb.{name}.arn}}"), "port": https["port"], "protocol": "HTTPS",
                       "ssl_policy": https["sslPolicy"], "certificate_arn": "${var.certificate_arn}",
                       "default_action": {"type": "fixed-response", "fixed_response": {"content_type": "text/plain", "status_code": "404"}}}),
            ));
            out.push((
                "aws_lb_listener",
                format!("{name}_http"),
                json!({"load_balancer_arn": format!("${{aws_lb.{name}.arn}}"), "port": 80, "protocol": "HTTP",
                       "default_action": {"type": "redirect", "redirect": {"port": "443", "protocol": "HTTPS", "status_code": "HTTP_301"}}}),
            ));
        }
        "aws.s3-bucket" => {
            let bucket = format!("${{aws_s3_bucket.{name}.id}}");
            let e = &p["encryption"];
            out.push((
                "aws_s3_bucket_server_side_encryption_configuration",
                name.clone(),
                json!({"bucket": bucket, "rule": {"bucket_key_enabled": e["bucketKeyEnabled"],
                       "apply_server_side_encryption_by_default": {"sse_algorithm": e["sseAlgorithm"], "kms_master_key_id": e["kmsKeyArn"]}}}),
            ));
            let b = &p["publicAccessBlock"];
            out.push((
                "aws_s3_bucket_public_access_block",
                name.clone(),
                json!({"bucket": bucket, "block_public_acls": b["blockPublicAcls"], "block_public_policy": b["blockPublicPolicy"],
                       "ignore_public_acls": b["ignorePublicAcls"], "restrict_public_buckets": b["restrictPublicBuckets"]}),
            ));
            out.push((
                "aws_s3_bucket_versioning",
                name.clone(),
                json!({"bucket": bucket, "versioning_configuration": {"status": if p["versioning"] == true { "Enabled" } else { "Suspended" }}}),
            ));
        }
        _ => {}
    }
    out
}

/// The graph as one Terraform JSON document (deterministic: keys sorted).
pub fn render(graph: &ResourceGraph) -> Value {
    let mut by_type: Map<String, Value> = Map::new();
    for node in graph.nodes.values() {
        for (kind, name, body) in resources(node) {
            let entry = by_type.entry(kind.to_string()).or_insert_with(|| Value::Object(Map::new()));
            if let Value::Object(m) = entry {
                m.insert(name, references(&body));
            }
        }
    }
    let region = graph.identity.get("region").cloned().unwrap_or_default();
    paved_model::canonical_json(&json!({
        "terraform": {"required_providers": {"aws": {"source": "hashicorp/aws", "version": ">= 5.0"}}},
        "provider": {"aws": {"region": region}},
        "variable": {
            "certificate_arn": {"type": "string", "description": "ACM certificate of the HTTPS listener"},
        },
        "resource": by_type,
    }))
}
