//! ECR as an account's artifact registry: the repository of a service,
//! created on first push with the settings a platform team expects, and the
//! short-lived registry login, both through paved's keyless credentials.
//!
//! | setting | value | AWS documentation |
//! |---|---|---|
//! | tag mutability | `IMMUTABLE` (paved pushes by digest; a tag can never move under a running environment) | <https://docs.aws.amazon.com/AmazonECR/latest/userguide/image-tag-mutability.html> |
//! | scan on push | on (basic scanning) | <https://docs.aws.amazon.com/AmazonECR/latest/userguide/image-scanning-basic.html> |
//! | encryption | AES-256 (the account's default; a KMS key cannot be changed after creation) | <https://docs.aws.amazon.com/AmazonECR/latest/userguide/encryption-at-rest.html> |
//! | login | `GetAuthorizationToken`: base64 of `AWS:PASSWORD`, valid 12 hours | <https://docs.aws.amazon.com/AmazonECR/latest/APIReference/API_GetAuthorizationToken.html> |
//! | repository name | `paved/SERVICE` (2–256 characters, lower case, `[._-/]` separators) | <https://docs.aws.amazon.com/AmazonECR/latest/APIReference/API_CreateRepository.html> |

use crate::{AwsError, BrokeredCredentials, ClientConfig, api_error};
use aws_sdk_ecr::config::{BehaviorVersion, Region};
use aws_sdk_ecr::types::{ImageScanningConfiguration, ImageTagMutability, Tag};
use base64::Engine as _;

pub struct Ecr {
    client: aws_sdk_ecr::Client,
}

/// The login `GetAuthorizationToken` gives.
pub struct EcrLogin {
    pub user: String,
    pub password: String,
}

impl std::fmt::Debug for EcrLogin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "EcrLogin({}, ***)", self.user)
    }
}

impl Ecr {
    pub fn new(config: &ClientConfig, credentials: BrokeredCredentials) -> Ecr {
        let mut builder = aws_sdk_ecr::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(config.region.clone()))
            .credentials_provider(credentials);
        if let Some(endpoint) = &config.endpoint {
            builder = builder.endpoint_url(endpoint);
        }
        Ecr { client: aws_sdk_ecr::Client::from_conf(builder.build()) }
    }

    /// Creates the repository unless it exists. Returns whether it was created.
    pub async fn ensure_repository(&self, name: &str) -> Result<bool, AwsError> {
        let created = self
            .client
            .create_repository()
            .repository_name(name)
            .image_tag_mutability(ImageTagMutability::Immutable)
            .image_scanning_configuration(ImageScanningConfiguration::builder().scan_on_push(true).build())
            .tags(Tag::builder().key("paved.dev/managed-by").value("paved").build().map_err(build_error)?)
            .send()
            .await;
        match created {
            Ok(_) => Ok(true),
            Err(e) if e.as_service_error().is_some_and(|e| e.is_repository_already_exists_exception()) => Ok(false),
            Err(e) => Err(api_error("ecr:CreateRepository", e)),
        }
    }

    /// A registry login for the next hours.
    pub async fn login(&self) -> Result<EcrLogin, AwsError> {
        let out = self
            .client
            .get_authorization_token()
            .send()
            .await
            .map_err(|e| api_error("ecr:GetAuthorizationToken", e))?;
        let bad = |why: &str| AwsError::Api { operation: "ecr:GetAuthorizationToken", message: why.to_string() };
        let token = out
            .authorization_data()
            .first()
            .and_then(|d| d.authorization_token())
            .ok_or_else(|| bad("the answer holds no authorization token"))?;
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(token)
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .ok_or_else(|| bad("the authorization token is not base64 of USER:PASSWORD"))?;
        let (user, password) =
            decoded.split_once(':').ok_or_else(|| bad("the authorization token is not base64 of USER:PASSWORD"))?;
        Ok(EcrLogin { user: user.to_string(), password: password.to_string() })
    }

    /// The repository's settings as ECR reports them: (tag mutability, scan on push).
    pub async fn repository_settings(&self, name: &str) -> Result<Option<(String, bool)>, AwsError> {
        let out = self.client.describe_repositories().repository_names(name).send().await;
        match out {
            Ok(out) => Ok(out.repositories().first().map(|r| {
                (
                    r.image_tag_mutability().map(|m| m.as_str().to_string()).unwrap_or_default(),
                    r.image_scanning_configuration().is_some_and(|c| c.scan_on_push()),
                )
            })),
            Err(e) if e.as_service_error().is_some_and(|e| e.is_repository_not_found_exception()) => Ok(None),
            Err(e) => Err(api_error("ecr:DescribeRepositories", e)),
        }
    }
}

fn build_error(e: aws_sdk_ecr::error::BuildError) -> AwsError {
    AwsError::Api { operation: "ecr:CreateRepository", message: e.to_string() }
}
