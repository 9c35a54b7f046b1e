//! Keyless cloud access for both doors: the OIDC issuer under the local
//! issuer key, the credential broker, and per account the federation that
//! turns paved's tokens into that cloud's short-lived credentials.

use crate::{Control, ControlError};
use paved_aws::{BrokeredCredentials, ClientConfig, KmsKey, OidcProvider, STS_AUDIENCE, StsFederation};
use paved_catalog::Catalog;
use paved_identity::{CredentialBroker, Federation, Issuer, IssuerConfig, SignedToken, WorkloadIdentity};
use paved_model::{CloudAccount, Kind, Provider, Spec};
use paved_secrets::{KeyProvider, KeyRing};
use std::sync::Arc;

/// Why keyless access could not be set up or used.
#[derive(Debug, thiserror::Error)]
pub enum IdentityFailure {
    #[error(transparent)]
    Identity(#[from] paved_identity::IdentityError),
    #[error(
        "account `{account}` has no keyless AWS access: set `spec.credentials.aws.roleArn` (then `paved account trust-policy {account}` prints what to install in AWS)"
    )]
    NoAwsRole { account: String },
    #[error("account `{account}` is a {provider} account; {what} needs an AWS account")]
    NotAws { account: String, provider: &'static str, what: &'static str },
    #[error(transparent)]
    Aws(#[from] paved_aws::AwsError),
}

/// What to install in an AWS account once so paved can reach it keylessly.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct TrustSetup {
    pub account: String,
    pub role_arn: String,
    pub oidc_provider: OidcProvider,
    /// The role's trust policy (its `AssumeRolePolicyDocument`).
    pub trust_policy: serde_json::Value,
}

/// The outcome of `paved account check`: who AWS says paved is, with its own token.
#[derive(Debug, Clone, serde::Serialize)]
pub struct AccountCheck {
    pub account: String,
    /// The token's subject.
    pub subject: String,
    /// The assumed role session AWS reports for the credentials.
    pub principal: String,
    #[serde(with = "time::serde::rfc3339")]
    pub credentials_expire_at: time::OffsetDateTime,
}

struct AwsAccess {
    federation: Arc<StsFederation>,
    role_arn: String,
    audience: String,
    region: String,
}

impl Control {
    /// The credential broker (and its issuer), built once per `Control`.
    pub async fn broker(&self) -> Result<Arc<CredentialBroker>, ControlError> {
        self.broker
            .get_or_try_init(|| async {
                let kek = self.provider(&self.settings.issuer_kek).await?;
                let config = IssuerConfig::new(&self.settings.public_url).map_err(IdentityFailure::from)?;
                let issuer = Issuer::new(self.store.clone(), KeyRing::new(kek), self.clock.clone(), config);
                Ok(Arc::new(CredentialBroker::new(Arc::new(issuer), self.clock.clone())))
            })
            .await
            .cloned()
    }

    pub async fn issuer(&self) -> Result<Arc<Issuer>, ControlError> {
        Ok(self.broker().await?.issuer().clone())
    }

    /// A token for `identity` (for debugging a trust setup; applies mint their own).
    pub async fn mint_token(
        &self,
        identity: &WorkloadIdentity,
        audience: &str,
        ttl: std::time::Duration,
    ) -> Result<SignedToken, ControlError> {
        let ttl = time::Duration::try_from(ttl).unwrap_or(paved_identity::MAX_TOKEN_TTL);
        Ok(self.issuer().await?.mint_for(identity, audience, ttl).await.map_err(IdentityFailure::from)?)
    }

    async fn aws_access(
        &self,
        catalog: &Catalog,
        account: &str,
        what: &'static str,
    ) -> Result<AwsAccess, ControlError> {
        let Spec::CloudAccount(CloudAccount { spec, .. }) = catalog.get(Kind::CloudAccount, account).await?.spec else {
            return Err(IdentityFailure::NoAwsRole { account: account.into() }.into());
        };
        if spec.provider != Provider::Aws {
            return Err(
                IdentityFailure::NotAws { account: account.into(), provider: spec.provider.as_str(), what }.into()
            );
        }
        let aws = spec
            .credentials
            .and_then(|c| c.aws)
            .ok_or_else(|| IdentityFailure::NoAwsRole { account: account.into() })?;
        let audience = aws.audience.unwrap_or_else(|| STS_AUDIENCE.to_string());
        let region = spec.allowed_regions.first().cloned().unwrap_or_else(|| "us-east-1".into());
        let federation = Arc::new(StsFederation::new(&aws.role_arn, &audience, &paved_aws::client_config(&region)));
        Ok(AwsAccess { federation, role_arn: aws.role_arn, audience, region })
    }

    /// The OIDC provider and role trust policy for an AWS account: admits
    /// the account's environments (and with `control_plane`, paved itself).
    pub async fn trust_setup(&self, account: &str, control_plane: bool) -> Result<TrustSetup, ControlError> {
        let catalog = self.catalog(Default::default());
        let access = self.aws_access(&catalog, account, "a trust policy").await?;
        let environments: Vec<String> = catalog
            .list(Some(Kind::Environment))
            .await?
            .into_iter()
            .filter_map(|o| match o.spec {
                Spec::Environment(e) if e.spec.account == account => Some(e.metadata.name),
                _ => None,
            })
            .collect();
        let issuer = self.issuer().await?;
        let (oidc_provider, trust_policy) = paved_aws::trust_policy(
            &access.role_arn,
            &issuer.config().url,
            &access.audience,
            &environments,
            control_plane,
        );
        Ok(TrustSetup { account: account.into(), role_arn: access.role_arn, oidc_provider, trust_policy })
    }

    /// Credentials for `identity` in its AWS account, as the SDK's provider.
    pub(crate) async fn aws_credentials(
        &self,
        catalog: &Catalog,
        identity: WorkloadIdentity,
        what: &'static str,
    ) -> Result<(BrokeredCredentials, ClientConfig), ControlError> {
        let access = self.aws_access(catalog, &identity.account, what).await?;
        let federation: Arc<dyn Federation> = access.federation;
        let credentials = BrokeredCredentials::new(self.broker().await?, federation, identity);
        Ok((credentials, paved_aws::client_config(&access.region)))
    }

    /// SDK clients for an environment: in its region, signed with
    /// credentials STS issues for paved's token for that environment and
    /// `operation`. Nothing is called until a client is used.
    pub(crate) async fn aws_session(
        &self,
        catalog: &Catalog,
        environment: &paved_model::Environment,
        operation: &str,
    ) -> Result<paved_aws::provision::Session, ControlError> {
        let identity = WorkloadIdentity {
            environment: environment.metadata.name.clone(),
            account: environment.spec.account.clone(),
            operation: operation.into(),
            service: None,
        };
        let (credentials, mut config) = self.aws_credentials(catalog, identity, "provisioning").await?;
        config.region = environment.spec.region.clone();
        Ok(paved_aws::provision::Session::new(&config, credentials, &self.run_name(operation)))
    }

    /// The AWS drivers for an environment, over [`Self::aws_session`].
    pub(crate) async fn aws_drivers(
        &self,
        catalog: &Catalog,
        environment: &paved_model::Environment,
        operation: &str,
    ) -> Result<paved_engine::Drivers, ControlError> {
        Ok(paved_aws::provision::drivers(self.aws_session(catalog, environment, operation).await?))
    }

    /// What tells this run's idempotency tokens from another's: the
    /// operation and the moment it started.
    fn run_name(&self, operation: &str) -> String {
        format!("{operation}@{}", self.clock.now().unix_timestamp_nanos())
    }

    /// AWS drivers acting for the control plane in one account and region:
    /// a drift sweep reads many environments with one set of clients.
    pub(crate) async fn aws_sweep_drivers(
        &self,
        catalog: &Catalog,
        account: &str,
        region: &str,
    ) -> Result<paved_engine::Drivers, ControlError> {
        let identity = WorkloadIdentity::control_plane(account, "drift-sweep");
        let (credentials, mut config) = self.aws_credentials(catalog, identity, "a drift sweep").await?;
        config.region = region.to_string();
        let session = paved_aws::provision::Session::new(&config, credentials, &self.run_name("drift-sweep"));
        Ok(paved_aws::provision::drivers(session))
    }

    /// Assumes the account's role with paved's own token (for `environment`,
    /// or as the control plane) and asks AWS who that is.
    pub async fn check_account(
        &self,
        account: &str,
        environment: Option<&str>,
        operation: &str,
    ) -> Result<AccountCheck, ControlError> {
        let catalog = self.catalog(Default::default());
        let identity = match environment {
            Some(env) => {
                let Spec::Environment(e) = catalog.get(Kind::Environment, env).await?.spec else {
                    unreachable!("the catalog returns the kind asked for")
                };
                if e.spec.account != account {
                    return Err(IdentityFailure::Aws(paved_aws::AwsError::Account {
                        account: account.into(),
                        reason: format!("environment `{env}` belongs to account `{}`", e.spec.account),
                    })
                    .into());
                }
                WorkloadIdentity {
                    environment: env.into(),
                    account: account.into(),
                    operation: operation.into(),
                    service: None,
                }
            }
            None => WorkloadIdentity::control_plane(account, operation),
        };
        let subject = identity.subject();
        let access = self.aws_access(&catalog, account, "checking access").await?;
        let broker = self.broker().await?;
        // Exchanged once here (for the expiry); the SDK call below reuses the broker's cached credentials.
        let exchanged =
            broker.credentials(access.federation.as_ref(), &identity).await.map_err(IdentityFailure::from)?;
        let config = paved_aws::client_config(&access.region);
        let credentials = BrokeredCredentials::new(broker, access.federation, identity);
        let principal = paved_aws::caller_identity(&config, credentials).await.map_err(IdentityFailure::from)?;
        Ok(AccountCheck { account: account.into(), subject, principal, credentials_expire_at: exchanged.expires_at })
    }

    /// An AWS KMS key as the secrets' KEK, used with the control plane's
    /// keyless credentials in that account.
    pub(crate) async fn kms_key(&self, account: &str, key: &str) -> Result<Arc<dyn KeyProvider>, ControlError> {
        let catalog = self.catalog(Default::default());
        let identity = WorkloadIdentity::control_plane(account, "secrets");
        let (credentials, mut config) = self.aws_credentials(&catalog, identity, "a KMS key-encryption key").await?;
        // A key ARN names its region; an id or alias lives in the account's first region.
        if let Some(region) = key.strip_prefix("arn:").and_then(|arn| arn.split(':').nth(2)) {
            config.region = region.to_string();
        }
        Ok(Arc::new(KmsKey::new(account, key, &config, credentials)))
    }
}
