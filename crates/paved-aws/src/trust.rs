//! The IAM side of keyless access, installed once per AWS account by a
//! platform engineer: an OIDC provider for paved's issuer URL, and a role
//! whose trust policy admits paved's tokens for that account's
//! environments only.

use paved_identity::CONTROL_PLANE_SUBJECT;
use serde_json::{Value, json};

/// The IAM OIDC provider to create (`aws iam create-open-id-connect-provider`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct OidcProvider {
    /// paved's issuer URL.
    pub url: String,
    /// The provider's ARN once created in the account.
    pub arn: String,
    /// The audiences (`--client-id-list`).
    pub client_ids: Vec<String>,
    /// Why no thumbprint is printed.
    pub thumbprint: String,
}

/// The provider and the role trust policy for `role_arn`, admitting tokens
/// whose `sub` names one of `environments` (or a service in one), with the
/// `audience`. With `control_plane`, paved's own subject is admitted too
/// (for a KMS key used as paved's key-encryption key).
pub fn trust_policy(
    role_arn: &str,
    issuer_url: &str,
    audience: &str,
    environments: &[String],
    control_plane: bool,
) -> (OidcProvider, Value) {
    // arn:PARTITION:iam::ACCOUNT:role/NAME
    let parts: Vec<&str> = role_arn.split(':').collect();
    let partition = parts.get(1).copied().unwrap_or("aws");
    let account = parts.get(4).copied().unwrap_or_default();
    let host_path = issuer_url.split_once("://").map_or(issuer_url, |(_, rest)| rest).trim_end_matches('/');
    let provider_arn = format!("arn:{partition}:iam::{account}:oidc-provider/{host_path}");
    let mut subjects: Vec<String> =
        environments.iter().flat_map(|e| [format!("paved:env:{e}"), format!("paved:env:{e}:service:*")]).collect();
    if control_plane {
        subjects.push(CONTROL_PLANE_SUBJECT.to_string());
    }
    let policy = json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Sid": "PavedWebIdentity",
            "Effect": "Allow",
            "Principal": {"Federated": provider_arn},
            "Action": "sts:AssumeRoleWithWebIdentity",
            "Condition": {
                "StringEquals": {format!("{host_path}:aud"): audience},
                "StringLike": {format!("{host_path}:sub"): subjects},
            }
        }]
    });
    let provider = OidcProvider {
        url: issuer_url.trim_end_matches('/').to_string(),
        arn: provider_arn,
        client_ids: vec![audience.to_string()],
        thumbprint: "not needed: IAM verifies the issuer's TLS certificate against its trusted CAs when no thumbprint \
                     is given (give one only for a private CA)"
            .into(),
    };
    (provider, policy)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admits_only_the_accounts_environments() {
        let (provider, policy) = trust_policy(
            "arn:aws:iam::123456789012:role/paved",
            "https://paved.example.com/",
            "sts.amazonaws.com",
            &["eu-dev".into(), "eu-prod".into()],
            false,
        );
        assert_eq!(provider.arn, "arn:aws:iam::123456789012:oidc-provider/paved.example.com");
        let statement = &policy["Statement"][0];
        assert_eq!(statement["Principal"]["Federated"], provider.arn);
        assert_eq!(statement["Condition"]["StringEquals"]["paved.example.com:aud"], "sts.amazonaws.com");
        assert_eq!(
            statement["Condition"]["StringLike"]["paved.example.com:sub"],
            json!([
                "paved:env:eu-dev",
                "paved:env:eu-dev:service:*",
                "paved:env:eu-prod",
                "paved:env:eu-prod:service:*"
            ])
        );
    }
}
