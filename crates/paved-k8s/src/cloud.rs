//! What differs between the clouds a cluster runs on: the pod's cloud
//! identity, the secret store the External Secrets Operator reads, and how
//! the load balancer paved created reaches the pods. Only AWS exists today;
//! GKE (Workload Identity, Secret Manager, NEG) and AKS (Workload Identity,
//! Key Vault, AGIC) are further arms of the same three functions.
//!
//! | concern | AWS (EKS) | why this one |
//! |---|---|---|
//! | pod identity | IRSA: ServiceAccount annotated `eks.amazonaws.com/role-arn` with the service's role `paved-ENV-svc-SERVICE` (created by the AWS translation, trusted by this ServiceAccount only) | the External Secrets Operator authenticates a per-service `SecretStore` as that ServiceAccount (`auth.jwt`), so each service reads only its own secret; EKS Pod Identity credentials exist only inside the pod and cannot be used by the operator on the service's behalf |
//! | secret store | AWS Secrets Manager, one secret `paved/ENV/SERVICE` per service (the environment's KMS key; written by the apply, `aws.secret`), read by an `ExternalSecret` | a native Secret feeds environment variables, which is what Score variables are; the Secrets Store CSI driver would mount files and need its sync-to-Secret mode for env anyway |
//! | artifacts | the account's ECR registry in the environment's region, repository `paved/SERVICE`, by digest | paved pushes (or copies) the digest there before it commits a manifest naming it; the node role pulls from its own account |
//! | route | `TargetGroupBinding` (AWS Load Balancer Controller) to the service's target group `paved-ENV-SERVICE`, which paved created with a listener rule on its load balancer, by name | paved already owns the ALB, its listeners, TLS policy and health check; an `Ingress` of class `alb` would make the controller create a second ALB beside it |

use paved_model::Provider;
use serde_json::{Value, json};

/// The cloud account and region a cluster environment runs in.
#[derive(Debug, Clone)]
pub(crate) struct Cloud {
    pub provider: Provider,
    pub account_id: String,
    pub region: String,
}

impl Cloud {
    /// The partition of an AWS region: its ARNs say `arn:PARTITION:`.
    fn partition(&self) -> &'static str {
        paved_model::partition::of_region(&self.region).name
    }

    /// The IAM role a service's pods act as (named as the AWS translation names it).
    pub fn role_arn(&self, env: &str, service: &str) -> String {
        format!(
            "arn:{}:iam::{}:role/{}",
            self.partition(),
            self.account_id,
            paved_plan::aws::service_role_name(env, service)
        )
    }

    /// Where a service's artifacts are pulled from: `REGISTRY/REPOSITORY`.
    pub fn image_repository(&self, service: &str) -> String {
        match self.provider {
            Provider::Aws => format!(
                "{}/{}",
                paved_plan::aws::ecr_registry(&self.account_id, &self.region),
                paved_plan::aws::ecr_repository(service)
            ),
            other => format!("{}/{service}", other.as_str()),
        }
    }

    /// Annotations of a service's ServiceAccount that give its pods their cloud identity.
    pub fn service_account_annotations(&self, env: &str, service: &str) -> Value {
        match self.provider {
            Provider::Aws => json!({"eks.amazonaws.com/role-arn": self.role_arn(env, service)}),
            _ => json!({}),
        }
    }

    /// Where a service's resolved variables are kept for the cluster to read.
    pub fn secret_name(env: &str, service: &str) -> String {
        format!("paved/{env}/{service}")
    }

    /// The `spec.provider` of a service's `SecretStore`.
    pub fn secret_store_provider(&self, service: &str) -> Value {
        json!({"aws": {
            "service": "SecretsManager",
            "region": self.region,
            "auth": {"jwt": {"serviceAccountRef": {"name": service}}},
        }})
    }

    /// The object that sends the environment's load balancer traffic to a service.
    pub fn route(&self, env: &str, service: &str, port: u16, labels: &Value) -> Value {
        json!({
            "apiVersion": "elbv2.k8s.aws/v1beta1",
            "kind": "TargetGroupBinding",
            "metadata": {"name": service, "namespace": env, "labels": labels},
            "spec": {
                "targetGroupName": paved_plan::aws::route_target_group_name(env, service),
                "targetType": "ip",
                "serviceRef": {"name": service, "port": port},
            },
        })
    }
}
