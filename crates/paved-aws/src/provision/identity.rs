//! The IAM OIDC provider of an environment's cluster: what lets a
//! ServiceAccount's token be exchanged for its service's role (IRSA,
//! <https://docs.aws.amazon.com/eks/latest/userguide/enable-iam-roles-for-service-accounts.html>).
//! Found by its URL: IAM names the provider `oidc-provider/HOST/PATH`. No
//! thumbprint is sent: IAM secures EKS's issuers with its own trusted
//! certificate authorities and ignores one
//! (<https://docs.aws.amazon.com/IAM/latest/UserGuide/id_roles_providers_create_oidc_verify-thumbprint.html>).

use super::props::{like, tags_value};
use super::{Props, Session, failed, is_code};
use async_trait::async_trait;
use paved_engine::{Driver, DriverError, Observation, Outputs, Resource};
use serde_json::{Value, json};
use std::sync::Arc;

pub(crate) struct OidcProvider(pub(crate) Arc<Session>);

/// `https://oidc.eks.REGION.amazonaws.com/id/X` → `oidc.eks.REGION.amazonaws.com/id/X`
fn issuer(url: &str) -> &str {
    url.trim_start_matches("https://").trim_end_matches('/')
}

impl OidcProvider {
    async fn find(&self, r: &Resource) -> Result<Option<String>, DriverError> {
        Ok(Self::matching(&self.arns().await?, r)?.map(str::to_string))
    }

    /// The account's OIDC providers' ARNs (IAM lists them all in one call).
    async fn arns(&self) -> Result<Vec<String>, DriverError> {
        let out = self
            .0
            .iam
            .list_open_id_connect_providers()
            .send()
            .await
            .map_err(|e| failed("ListOpenIDConnectProviders", e))?;
        Ok(out.open_id_connect_provider_list().iter().filter_map(|p| p.arn()).map(str::to_string).collect())
    }

    /// The provider of the node's URL among `arns`.
    fn matching<'a>(arns: &'a [String], r: &Resource) -> Result<Option<&'a str>, DriverError> {
        let want = format!("oidc-provider/{}", issuer(Props::of(r).str("url")?));
        Ok(arns.iter().find(|a| a.ends_with(&want)).map(String::as_str))
    }

    /// The provider as IAM holds it.
    async fn seen(&self, r: &Resource, arn: &str) -> Result<Observation, DriverError> {
        let out = match self.0.iam.get_open_id_connect_provider().open_id_connect_provider_arn(arn).send().await {
            Ok(out) => out,
            Err(e) if is_code(&e, &["NoSuchEntity"]) => return Ok(Observation::Absent),
            Err(e) => return Err(failed("GetOpenIDConnectProvider", e)),
        };
        let clients: Vec<Value> = out.client_id_list().iter().map(|c| json!(c)).collect();
        let properties = json!({
            "url": Props::of(r).str("url")?,
            "clientIds": like(Props::of(r).value("clientIds"), clients),
            "tags": tags_value(out.tags().iter().map(|t| (t.key(), t.value()))),
        });
        Ok(Observation::Present { properties, outputs: Self::outputs(arn, r)?, ready: true })
    }

    fn outputs(arn: &str, r: &Resource) -> Result<Outputs, DriverError> {
        Ok(Outputs::from([
            ("arn".to_string(), json!(arn)),
            ("issuer".to_string(), json!(issuer(Props::of(r).str("url")?))),
        ]))
    }
}

#[async_trait]
impl Driver for OidcProvider {
    async fn observe(&self, r: &Resource) -> Result<Observation, DriverError> {
        let Some(arn) = self.find(r).await? else { return Ok(Observation::Absent) };
        self.seen(r, &arn).await
    }

    /// A sweep's providers: the account's listed once, then each read
    /// (IAM has no batch read of providers).
    async fn observe_all(&self, rs: &[Resource]) -> Vec<Result<Observation, DriverError>> {
        let arns = match self.arns().await {
            Ok(arns) => arns,
            Err(e) => return super::every(rs, e),
        };
        let mut out = Vec::with_capacity(rs.len());
        for r in rs {
            out.push(match Self::matching(&arns, r) {
                Ok(Some(arn)) => self.seen(r, arn).await,
                Ok(None) => Ok(Observation::Absent),
                Err(e) => Err(e),
            });
        }
        out
    }

    async fn create(&self, r: &Resource) -> Result<Outputs, DriverError> {
        let p = Props::of(r);
        let created = self
            .0
            .iam
            .create_open_id_connect_provider()
            .url(p.str("url")?)
            .set_client_id_list(Some(p.strings("clientIds")))
            .set_tags(Some(super::logs::Role::tags(r)))
            .send()
            .await;
        match created {
            Ok(out) => Self::outputs(out.open_id_connect_provider_arn().unwrap_or_default(), r),
            Err(e) if is_code(&e, &["EntityAlreadyExists"]) => self.update(r).await,
            Err(e) => Err(failed("CreateOpenIDConnectProvider", e)),
        }
    }

    /// Client ids and tags; a changed URL is another provider (the node's
    /// URL is the cluster's, which changes only with the cluster).
    async fn update(&self, r: &Resource) -> Result<Outputs, DriverError> {
        let Some(arn) = self.find(r).await? else { return self.create(r).await };
        let iam = &self.0.iam;
        let have = iam
            .get_open_id_connect_provider()
            .open_id_connect_provider_arn(&arn)
            .send()
            .await
            .map_err(|e| failed("GetOpenIDConnectProvider", e))?;
        let want = Props::of(r).strings("clientIds");
        for c in want.iter().filter(|c| !have.client_id_list().contains(c)) {
            iam.add_client_id_to_open_id_connect_provider()
                .open_id_connect_provider_arn(&arn)
                .client_id(c)
                .send()
                .await
                .map_err(|e| failed("AddClientIDToOpenIDConnectProvider", e))?;
        }
        for c in have.client_id_list().iter().filter(|c| !want.contains(c)) {
            iam.remove_client_id_from_open_id_connect_provider()
                .open_id_connect_provider_arn(&arn)
                .client_id(c)
                .send()
                .await
                .map_err(|e| failed("RemoveClientIDFromOpenIDConnectProvider", e))?;
        }
        iam.tag_open_id_connect_provider()
            .open_id_connect_provider_arn(&arn)
            .set_tags(Some(super::logs::Role::tags(r)))
            .send()
            .await
            .map_err(|e| failed("TagOpenIDConnectProvider", e))?;
        Self::outputs(&arn, r)
    }

    async fn delete(&self, r: &Resource) -> Result<(), DriverError> {
        let Some(arn) = self.find(r).await? else { return Ok(()) };
        match self.0.iam.delete_open_id_connect_provider().open_id_connect_provider_arn(arn).send().await {
            Ok(_) => Ok(()),
            Err(e) if is_code(&e, &["NoSuchEntity"]) => Ok(()),
            Err(e) => Err(failed("DeleteOpenIDConnectProvider", e)),
        }
    }
}

/// The trust policy of a role assumed with a cluster's ServiceAccount
/// token: only that ServiceAccount (`sub`), only for STS (`aud`).
pub(crate) fn web_identity_trust(web: &Value) -> Result<Value, String> {
    let field = |k: &str| web[k].as_str().ok_or_else(|| format!("webIdentity.{k} is missing"));
    let issuer = field("issuer")?;
    Ok(json!({"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow",
        "Principal": {"Federated": field("provider")?},
        "Action": "sts:AssumeRoleWithWebIdentity",
        "Condition": {"StringEquals": {
            format!("{issuer}:sub"): field("subject")?,
            format!("{issuer}:aud"): field("audience")?,
        }},
    }]}))
}

/// The `webIdentity` a trust policy grants, if it is one of
/// [`web_identity_trust`]'s shape (anything else reads as `null`, which
/// differs from every desired value: drift).
pub(crate) fn web_identity_of(trust: &Value) -> Value {
    let statements = trust["Statement"].as_array().cloned().unwrap_or_default();
    let [s] = statements.as_slice() else { return Value::Null };
    let (Some(provider), Some(conditions)) =
        (s["Principal"]["Federated"].as_str(), s["Condition"]["StringEquals"].as_object())
    else {
        return Value::Null;
    };
    if s["Action"] != "sts:AssumeRoleWithWebIdentity" || s["Effect"] != "Allow" || conditions.len() != 2 {
        return Value::Null;
    }
    let find = |suffix: &str| conditions.iter().find(|(k, _)| k.ends_with(suffix)).map(|(k, v)| (k.clone(), v.clone()));
    let (Some((sub_key, subject)), Some((aud_key, audience))) = (find(":sub"), find(":aud")) else {
        return Value::Null;
    };
    let issuer = sub_key.trim_end_matches(":sub");
    if aud_key.trim_end_matches(":aud") != issuer {
        return Value::Null;
    }
    json!({"provider": provider, "issuer": issuer, "subject": subject, "audience": audience})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_web_identity_trust_reads_back_as_what_made_it_and_anything_wider_does_not() {
        let web = json!({"provider": "arn:aws:iam::1:oidc-provider/oidc.eks.eu-central-1.amazonaws.com/id/AB",
                         "issuer": "oidc.eks.eu-central-1.amazonaws.com/id/AB",
                         "subject": "system:serviceaccount:eu-dev:api", "audience": "sts.amazonaws.com"});
        let trust = web_identity_trust(&web).unwrap();
        assert_eq!(
            trust["Statement"][0]["Condition"]["StringEquals"]["oidc.eks.eu-central-1.amazonaws.com/id/AB:sub"],
            "system:serviceaccount:eu-dev:api"
        );
        assert_eq!(web_identity_of(&trust), web);
        // A condition loosened in the console (any ServiceAccount) is not the same trust.
        let mut loose = trust.clone();
        loose["Statement"][0]["Condition"] =
            json!({"StringLike": {"oidc.eks.eu-central-1.amazonaws.com/id/AB:sub": "*"}});
        assert_eq!(web_identity_of(&loose), Value::Null);
        let mut extra = trust;
        extra["Statement"].as_array_mut().unwrap().push(json!({"Effect": "Allow", "Principal": "*"}));
        assert_eq!(web_identity_of(&extra), Value::Null);
        assert!(web_identity_trust(&json!({"provider": "p"})).is_err());
    }
}
