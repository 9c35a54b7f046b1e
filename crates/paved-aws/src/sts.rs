//! `AssumeRoleWithWebIdentity`: paved's token in, a role's short-lived
//! credentials out. The call is unsigned: it needs no credentials at all.

use crate::{ClientConfig, api_error};
use async_trait::async_trait;
use aws_sdk_sts::config::{BehaviorVersion, Region};
use paved_identity::{CloudCredentials, Federation, IdentityError, SignedToken};
use std::collections::BTreeMap;

pub struct StsFederation {
    role_arn: String,
    audience: String,
    client: aws_sdk_sts::Client,
    /// Seconds the credentials last (STS allows 900 to the role's maximum).
    duration_seconds: i32,
}

impl StsFederation {
    pub fn new(role_arn: &str, audience: &str, config: &ClientConfig) -> StsFederation {
        let mut builder = aws_sdk_sts::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(config.region.clone()));
        if let Some(endpoint) = &config.endpoint {
            builder = builder.endpoint_url(endpoint);
        }
        StsFederation {
            role_arn: role_arn.into(),
            audience: audience.into(),
            client: aws_sdk_sts::Client::from_conf(builder.build()),
            duration_seconds: 900,
        }
    }
}

/// `paved-ENV-OPERATION`, within STS's 64 characters of `[\w+=,.@-]`: the
/// session name shows in CloudTrail next to every call made with it.
fn session_name(token: &SignedToken) -> String {
    let raw = format!("paved-{}-{}", token.claims.environment, token.claims.operation);
    raw.chars().map(|c| if c.is_ascii_alphanumeric() || "+=,.@-_".contains(c) { c } else { '-' }).take(64).collect()
}

#[async_trait]
impl Federation for StsFederation {
    fn provider(&self) -> &str {
        "aws"
    }

    fn audience(&self) -> &str {
        &self.audience
    }

    fn target(&self) -> &str {
        &self.role_arn
    }

    async fn exchange(&self, token: &SignedToken) -> Result<CloudCredentials, IdentityError> {
        let refused = |reason: String| IdentityError::Exchange {
            provider: "AWS STS".into(),
            subject: token.claims.sub.clone(),
            reason,
        };
        let out = self
            .client
            .assume_role_with_web_identity()
            .role_arn(&self.role_arn)
            .role_session_name(session_name(token))
            .web_identity_token(&token.token)
            .duration_seconds(self.duration_seconds)
            .send()
            .await
            .map_err(|e| {
                let unreachable = matches!(
                    e,
                    aws_sdk_sts::error::SdkError::DispatchFailure(_) | aws_sdk_sts::error::SdkError::TimeoutError(_)
                );
                let reason = api_error("AssumeRoleWithWebIdentity", e).to_string();
                if unreachable {
                    IdentityError::Unreachable {
                        provider: "AWS STS".into(),
                        subject: token.claims.sub.clone(),
                        reason: format!("{reason} (check the network, or AWS_ENDPOINT_URL)"),
                    }
                } else {
                    refused(reason)
                }
            })?;
        let c = out.credentials.ok_or_else(|| refused("the answer holds no credentials".into()))?;
        let expires_at = time::OffsetDateTime::from_unix_timestamp(c.expiration.secs())
            .map_err(|e| refused(format!("bad expiry: {e}")))?;
        let principal = out.assumed_role_user.map(|u| u.arn).unwrap_or_else(|| self.role_arn.clone());
        Ok(CloudCredentials {
            provider: "aws".into(),
            principal,
            expires_at,
            fields: BTreeMap::from([
                ("access_key_id".to_string(), c.access_key_id),
                ("secret_access_key".to_string(), c.secret_access_key),
                ("session_token".to_string(), c.session_token),
            ]),
        })
    }
}

/// Who `credentials` are to AWS (`GetCallerIdentity`, which needs no
/// permission): proves that the keyless path works end to end.
pub async fn caller_identity(
    config: &ClientConfig,
    credentials: crate::BrokeredCredentials,
) -> Result<String, crate::AwsError> {
    let mut builder = aws_sdk_sts::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(config.region.clone()))
        .credentials_provider(credentials);
    if let Some(endpoint) = &config.endpoint {
        builder = builder.endpoint_url(endpoint);
    }
    let out = aws_sdk_sts::Client::from_conf(builder.build())
        .get_caller_identity()
        .send()
        .await
        .map_err(|e| api_error("GetCallerIdentity", e))?;
    Ok(out.arn.unwrap_or_default())
}
