//! The least-privilege IAM policy of the provisioner role
//! (`paved account permissions-policy NAME`): what the drivers of
//! [`crate::provision`] and the artifact placement ([`crate::ecr`]) call,
//! and the authorization-only actions those calls need.
//!
//! | service | actions | resources |
//! |---|---|---|
//! | IAM | roles, their inline and managed policies, OIDC providers; `PassRole` to EKS, EC2 and VPC Flow Logs only; service-linked roles of ELB, RDS and EKS | `role/paved-*` and `oidc-provider/*` of the account; `PassRole` conditioned on `iam:PassedToService` |
//! | everything else | exactly the calls listed in [`ACTIONS`] | `*` (EC2, ELB, RDS, EKS describe calls take no resource-level permissions) |
//!
//! The list is kept by hand next to the drivers; the AWS end-to-end suite
//! checks that every call it saw (the counting proxy's log) is covered
//! ([`action_for`] turns an API operation into its IAM action).

use serde_json::{Value, json};

/// IAM actions per service prefix, beyond IAM's own (see [`policy`]).
pub const ACTIONS: &[(&str, &[&str])] = &[
    (
        "ec2",
        &[
            "AllocateAddress",
            "AssociateRouteTable",
            "AttachInternetGateway",
            "AuthorizeSecurityGroupEgress",
            "AuthorizeSecurityGroupIngress",
            "CreateFlowLogs",
            "CreateInternetGateway",
            "CreateNatGateway",
            "CreateNetworkInterface",
            "CreateNetworkInterfacePermission",
            "CreateRoute",
            "CreateRouteTable",
            "CreateSecurityGroup",
            "CreateSubnet",
            "CreateTags",
            "CreateVpc",
            "DeleteFlowLogs",
            "DeleteInternetGateway",
            "DeleteNatGateway",
            "DeleteNetworkInterface",
            "DeleteRoute",
            "DeleteRouteTable",
            "DeleteSecurityGroup",
            "DeleteSubnet",
            "DeleteVpc",
            "DescribeAddresses",
            "DescribeAvailabilityZones",
            "DescribeFlowLogs",
            "DescribeInternetGateways",
            "DescribeNatGateways",
            "DescribeNetworkInterfaces",
            "DescribeRouteTables",
            "DescribeSecurityGroups",
            "DescribeSubnets",
            "DescribeVpcAttribute",
            "DescribeVpcs",
            "DetachInternetGateway",
            "DisassociateRouteTable",
            "ModifySubnetAttribute",
            "ModifyVpcAttribute",
            "ReleaseAddress",
            "ReplaceRoute",
            "RevokeSecurityGroupEgress",
            "RevokeSecurityGroupIngress",
        ],
    ),
    (
        "eks",
        &[
            "CreateCluster",
            "CreateNodegroup",
            "DeleteCluster",
            "DeleteNodegroup",
            "DescribeCluster",
            "DescribeNodegroup",
            "DescribeUpdate",
            "ListTagsForResource",
            "TagResource",
            "UpdateClusterConfig",
            "UpdateClusterVersion",
            "UpdateNodegroupConfig",
            "UpdateNodegroupVersion",
        ],
    ),
    (
        "elasticloadbalancing",
        &[
            "AddTags",
            "CreateListener",
            "CreateLoadBalancer",
            "CreateRule",
            "CreateTargetGroup",
            "DeleteListener",
            "DeleteLoadBalancer",
            "DeleteRule",
            "DeleteTargetGroup",
            "DescribeListeners",
            "DescribeLoadBalancerAttributes",
            "DescribeLoadBalancers",
            "DescribeRules",
            "DescribeTags",
            "DescribeTargetGroups",
            "ModifyListener",
            "ModifyLoadBalancerAttributes",
            "ModifyRule",
            "ModifyTargetGroup",
            "SetSecurityGroups",
            "SetSubnets",
        ],
    ),
    (
        "rds",
        &[
            "AddTagsToResource",
            "CreateDBInstance",
            "CreateDBSubnetGroup",
            "DeleteDBInstance",
            "DeleteDBSubnetGroup",
            "DescribeDBInstances",
            "DescribeDBSubnetGroups",
            "ListTagsForResource",
            "ModifyDBInstance",
            "ModifyDBSubnetGroup",
            // A final snapshot on deletion (production).
            "CreateDBSnapshot",
        ],
    ),
    (
        "s3",
        &[
            "CreateBucket",
            "DeleteBucket",
            "DeleteObject",
            "DeleteObjectVersion",
            "GetBucketPublicAccessBlock",
            "GetBucketTagging",
            "GetBucketVersioning",
            "GetEncryptionConfiguration",
            "ListBucket",
            "ListBucketVersions",
            "PutBucketPublicAccessBlock",
            "PutBucketTagging",
            "PutBucketVersioning",
            "PutEncryptionConfiguration",
        ],
    ),
    // Amazon MQ for RabbitMQ; creating a private broker also needs the EC2
    // network-interface calls below
    // (<https://docs.aws.amazon.com/amazon-mq/latest/developer-guide/amazon-mq-setting-up.html>).
    ("mq", &["CreateBroker", "CreateTags", "DeleteBroker", "DescribeBroker", "ListBrokers", "UpdateBroker"]),
    (
        "elasticache",
        &[
            "AddTagsToResource",
            "CreateCacheSubnetGroup",
            "CreateReplicationGroup",
            "DeleteCacheSubnetGroup",
            "DeleteReplicationGroup",
            "DescribeCacheSubnetGroups",
            "DescribeReplicationGroups",
            "ListTagsForResource",
            "ModifyCacheSubnetGroup",
            "ModifyReplicationGroup",
        ],
    ),
    (
        "sqs",
        &[
            "CreateQueue",
            "DeleteQueue",
            "GetQueueAttributes",
            "GetQueueUrl",
            "ListQueueTags",
            "SetQueueAttributes",
            "TagQueue",
        ],
    ),
    (
        "kms",
        &[
            "CreateAlias",
            "CreateKey",
            "DeleteAlias",
            "DescribeKey",
            "DisableKeyRotation",
            "EnableKeyRotation",
            "GetKeyPolicy",
            "GetKeyRotationStatus",
            "ListAliases",
            "ListResourceTags",
            "PutKeyPolicy",
            "ScheduleKeyDeletion",
            "TagResource",
            "UpdateAlias",
            "UpdateKeyDescription",
            // EKS (secrets encryption) and RDS (storage, the managed master
            // secret) use the environment's key through grants made as the caller.
            "CreateGrant",
            "Decrypt",
            "GenerateDataKey",
        ],
    ),
    (
        "logs",
        &[
            "AssociateKmsKey",
            "CreateLogGroup",
            "DeleteLogGroup",
            "DescribeLogGroups",
            "ListTagsForResource",
            "ListTagsLogGroup",
            "PutRetentionPolicy",
            "TagResource",
            "TagLogGroup",
        ],
    ),
    (
        "secretsmanager",
        &[
            // A drift sweep's reads: values 20 at a time (the caller also
            // needs GetSecretValue on each), metadata from the listing.
            "BatchGetSecretValue",
            "CreateSecret",
            "DeleteSecret",
            "DescribeSecret",
            "GetRandomPassword",
            "GetSecretValue",
            "ListSecrets",
            "PutSecretValue",
            "RestoreSecret",
            "TagResource",
            "UpdateSecret",
        ],
    ),
    (
        "acm",
        &[
            "AddTagsToCertificate",
            "DeleteCertificate",
            "DescribeCertificate",
            "ListCertificates",
            "ListTagsForCertificate",
            "RequestCertificate",
        ],
    ),
    ("route53", &["ChangeResourceRecordSets", "GetChange", "ListHostedZonesByName", "ListResourceRecordSets"]),
    // The Resource Groups Tagging API (a crashed create's KMS key, found by its tags;
    // a drift sweep's tags of keys, log groups and certificates).
    ("tag", &["GetResources"]),
    (
        "ecr",
        &[
            "BatchCheckLayerAvailability",
            "BatchGetImage",
            "CompleteLayerUpload",
            "CreateRepository",
            "DescribeRepositories",
            "GetAuthorizationToken",
            "GetDownloadUrlForLayer",
            "InitiateLayerUpload",
            "PutImage",
            "TagResource",
            "UploadLayerPart",
        ],
    ),
];

/// IAM's actions, on paved's roles and the account's OIDC providers.
const IAM_ACTIONS: &[&str] = &[
    "AttachRolePolicy",
    "CreateOpenIDConnectProvider",
    "CreateRole",
    "DeleteOpenIDConnectProvider",
    "DeleteRole",
    "DeleteRolePolicy",
    "DetachRolePolicy",
    "GetAccountAuthorizationDetails",
    "GetOpenIDConnectProvider",
    "GetRole",
    "GetRolePolicy",
    "ListAttachedRolePolicies",
    "ListOpenIDConnectProviders",
    "ListRolePolicies",
    "PutRolePolicy",
    "TagOpenIDConnectProvider",
    "TagRole",
    "UpdateAssumeRolePolicy",
];

/// API operations whose IAM action has another name
/// (<https://docs.aws.amazon.com/service-authorization/latest/reference/list_amazons3.html>).
const RENAMED: &[(&str, &str, &str)] = &[
    ("s3", "HeadBucket", "ListBucket"),
    ("s3", "ListObjectsV2", "ListBucket"),
    ("s3", "ListObjectVersions", "ListBucketVersions"),
    ("s3", "DeleteObjects", "DeleteObject"),
    ("s3", "GetBucketEncryption", "GetEncryptionConfiguration"),
    ("s3", "PutBucketEncryption", "PutEncryptionConfiguration"),
    ("s3", "GetPublicAccessBlock", "GetBucketPublicAccessBlock"),
    ("s3", "PutPublicAccessBlock", "PutBucketPublicAccessBlock"),
];

/// Services whose IAM prefix is not the name they sign requests with.
const PREFIXES: &[(&str, &str)] = &[("tagging", "tag")];

/// The IAM action `service:Action` an API operation needs (`service` as
/// the request is signed for).
pub fn action_for(service: &str, operation: &str) -> String {
    let action =
        RENAMED.iter().find(|(s, op, _)| *s == service && *op == operation).map_or(operation, |(_, _, action)| action);
    let prefix = PREFIXES.iter().find(|(signed, _)| *signed == service).map_or(service, |(_, prefix)| prefix);
    format!("{prefix}:{action}")
}

/// The policy document for the provisioner role of an account
/// (`account_id`, or every account when unknown) in a partition.
pub fn policy(partition: &str, account_id: Option<&str>) -> Value {
    let account = account_id.unwrap_or("*");
    let mut actions: Vec<String> =
        ACTIONS.iter().flat_map(|(service, names)| names.iter().map(move |n| format!("{service}:{n}"))).collect();
    actions.sort();
    let mut iam: Vec<String> = IAM_ACTIONS.iter().map(|a| format!("iam:{a}")).collect();
    iam.sort();
    json!({
        "Version": "2012-10-17",
        "Statement": [
            {"Sid": "Provision", "Effect": "Allow", "Action": actions, "Resource": "*"},
            {"Sid": "PavedRolesAndOidcProviders", "Effect": "Allow", "Action": iam, "Resource": [
                format!("arn:{partition}:iam::{account}:role/paved-*"),
                format!("arn:{partition}:iam::{account}:oidc-provider/*"),
            ]},
            // EKS's cluster and node roles, the flow-log role: handed to those services only.
            {"Sid": "PassPavedRoles", "Effect": "Allow", "Action": "iam:PassRole",
             "Resource": format!("arn:{partition}:iam::{account}:role/paved-*"),
             "Condition": {"StringEquals": {"iam:PassedToService": [
                 "eks.amazonaws.com", "ec2.amazonaws.com", "vpc-flow-logs.amazonaws.com"]}}},
            // The first load balancer, database or cluster of an account creates its service-linked role.
            {"Sid": "ServiceLinkedRoles", "Effect": "Allow", "Action": "iam:CreateServiceLinkedRole",
             "Resource": "*",
             "Condition": {"StringEquals": {"iam:AWSServiceName": [
                 "elasticloadbalancing.amazonaws.com", "rds.amazonaws.com", "eks.amazonaws.com",
                 "eks-nodegroup.amazonaws.com", "mq.amazonaws.com", "elasticache.amazonaws.com"]}}},
        ],
    })
}

/// Whether `policy` allows `action` (exact names, as [`policy`] writes them).
pub fn allows(policy: &Value, action: &str) -> bool {
    policy["Statement"].as_array().into_iter().flatten().any(|s| match &s["Action"] {
        Value::String(a) => a == action,
        Value::Array(list) => list.iter().any(|a| a == action),
        _ => false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operations_map_to_their_actions_and_the_policy_allows_exactly_its_lists() {
        let policy = policy("aws", Some("123456789012"));
        for (service, names) in ACTIONS {
            for name in names.iter() {
                assert!(allows(&policy, &format!("{service}:{name}")), "{service}:{name}");
            }
        }
        assert!(allows(&policy, "iam:PassRole") && allows(&policy, "iam:CreateRole"));
        assert!(!allows(&policy, "iam:CreateUser") && !allows(&policy, "ec2:RunInstances"));
        // S3's operations and actions differ in name.
        assert_eq!(action_for("s3", "HeadBucket"), "s3:ListBucket");
        assert_eq!(action_for("s3", "PutBucketEncryption"), "s3:PutEncryptionConfiguration");
        assert_eq!(action_for("ec2", "CreateVpc"), "ec2:CreateVpc");
        // IAM only on paved's roles, and roles handed only to the services that need them.
        let pass = policy["Statement"].as_array().unwrap().iter().find(|s| s["Action"] == "iam:PassRole").unwrap();
        assert_eq!(pass["Resource"], "arn:aws:iam::123456789012:role/paved-*");
    }
}
