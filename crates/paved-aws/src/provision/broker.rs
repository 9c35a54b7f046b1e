//! `aws.mq-broker`: an Amazon MQ for RabbitMQ broker, for Score's `amqp`
//! (AMQP 0-9-1; SQS speaks none of it).
//!
//! | step | call |
//! |------|------|
//! | find | `ListBrokers` (paged), by its deterministic name, then `DescribeBroker` |
//! | create | `CreateBroker` with a creator request id (retries in a run are one request) and the one administrative user RabbitMQ brokers take at creation |
//! | update | `UpdateBroker`: instance type, engine version, minor upgrades, security groups, logs; `CreateTags` |
//! | delete | `DeleteBroker`, then waits until the name is gone (it holds addresses in the data subnets) |
//!
//! Rules AWS enforces that an emulator does not, checked before any call
//! (<https://docs.aws.amazon.com/amazon-mq/latest/api-reference/brokers.html>,
//! <https://docs.aws.amazon.com/amazon-mq/latest/api-reference/brokers-broker-id-users-username.html>):
//! the password is at least 12 characters with 4 different ones and no `,`,
//! `:` or `=`; the username is 2–100 of letters, digits, `-`, `.`, `_` and not
//! `guest`; a single-instance broker takes exactly one subnet; `mq.t3.micro`
//! runs single-instance brokers only.
//!
//! The password cannot be read back from AWS: paved sets it at creation
//! (from its sealed `paved.secret`) and reports what it set.
//! A broker is ready when its state is `RUNNING` (creation takes AWS
//! 10–20 minutes; the engine waits with its ready timeout).

use super::props::tags_value;
use super::{Props, Session, failed, until_gone};
use async_trait::async_trait;
use aws_sdk_mq::types::{BrokerState, DeploymentMode, EngineType, Logs, User};
use paved_engine::{Driver, DriverError, Observation, Outputs, Resource};
use serde_json::json;
use std::sync::Arc;

pub(crate) struct Broker(pub(crate) Arc<Session>);

/// Why AWS would refuse these properties, before asking it.
pub(crate) fn refused(p: &Props<'_>) -> Option<String> {
    let password = p.opt_str("password").unwrap_or_default();
    let distinct: std::collections::BTreeSet<char> = password.chars().collect();
    if password.len() < 12 || distinct.len() < 4 || password.contains([',', ':', '=']) {
        return Some(
            "Amazon MQ refuses a broker user's password shorter than 12 characters, with fewer than 4 different \
             characters, or holding `,` `:` `=`"
                .into(),
        );
    }
    let user = p.opt_str("username").unwrap_or_default();
    let user_ok = (2..=100).contains(&user.len())
        && user.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'))
        && user != "guest";
    if !user_ok {
        return Some(format!(
            "Amazon MQ refuses the RabbitMQ username `{user}`: 2–100 letters, digits, `-`, `.`, `_`, and not `guest`"
        ));
    }
    let single = p.opt_str("deploymentMode") == Some("SINGLE_INSTANCE");
    let subnets = p.strings("subnetIds").len();
    if single && subnets != 1 {
        return Some(format!("a single-instance Amazon MQ broker takes exactly one subnet, not {subnets}"));
    }
    if !single && p.opt_str("hostInstanceType").is_some_and(|t| t.starts_with("mq.t3.")) {
        return Some("Amazon MQ runs mq.t3.micro brokers as single instances only".into());
    }
    None
}

impl Broker {
    async fn find(
        &self,
        r: &Resource,
    ) -> Result<Option<aws_sdk_mq::operation::describe_broker::DescribeBrokerOutput>, DriverError> {
        let name = Props::of(r).str("name")?;
        let mut token = None;
        loop {
            let page = self
                .0
                .mq
                .list_brokers()
                .set_next_token(token)
                .max_results(100)
                .send()
                .await
                .map_err(|e| failed("ListBrokers", e))?;
            if let Some(id) =
                page.broker_summaries().iter().find(|b| b.broker_name() == Some(name)).and_then(|b| b.broker_id())
            {
                let found =
                    self.0.mq.describe_broker().broker_id(id).send().await.map_err(|e| failed("DescribeBroker", e))?;
                return Ok(Some(found));
            }
            match page.next_token() {
                Some(t) if !t.is_empty() => token = Some(t.to_string()),
                _ => return Ok(None),
            }
        }
    }

    fn outputs(found: &aws_sdk_mq::operation::describe_broker::DescribeBrokerOutput, r: &Resource) -> Outputs {
        // `amqps://b-….mq.REGION.amazonaws.com:5671`: the first instance's AMQP endpoint.
        let endpoint = found
            .broker_instances()
            .iter()
            .flat_map(|i| i.endpoints())
            .find(|e| e.starts_with("amqps://"))
            .cloned()
            .unwrap_or_default();
        let rest = endpoint.trim_start_matches("amqps://");
        let (host, port) = rest.rsplit_once(':').map_or((rest, "5671"), |(h, p)| (h, p));
        Outputs::from([
            ("host".to_string(), json!(host)),
            ("port".to_string(), json!(port.parse::<u16>().unwrap_or(5671))),
            ("vhost".to_string(), json!("/")),
            ("username".to_string(), json!(Props::of(r).opt_str("username"))),
            ("password".to_string(), json!(Props::of(r).opt_str("password"))),
            ("arn".to_string(), json!(found.broker_arn())),
        ])
    }
}

#[async_trait]
impl Driver for Broker {
    async fn observe(&self, r: &Resource) -> Result<Observation, DriverError> {
        let Some(found) = self.find(r).await? else { return Ok(Observation::Absent) };
        let state = found.broker_state().cloned();
        if matches!(state, Some(BrokerState::DeletionInProgress)) {
            return Ok(Observation::Absent);
        }
        let p = Props::of(r);
        let properties = json!({
            "name": found.broker_name(),
            "engineType": found.engine_type().map(|e| e.as_str().to_uppercase()),
            "engineVersion": found.engine_version(),
            "autoMinorVersionUpgrade": found.auto_minor_version_upgrade(),
            "deploymentMode": found.deployment_mode().map(|m| m.as_str()),
            "hostInstanceType": found.host_instance_type(),
            "publiclyAccessible": found.publicly_accessible(),
            "subnetIds": found.subnet_ids(),
            "securityGroupIds": found.security_groups(),
            "generalLogs": found.logs().and_then(|l| l.general()).unwrap_or(false),
            "username": p.opt_str("username"),
            // Not readable from AWS: what paved set.
            "password": p.opt_str("password"),
            "tags": tags_value(found.tags().into_iter().flatten().map(|(k, v)| (k.as_str(), v.as_str()))),
        });
        let ready = matches!(state, Some(BrokerState::Running));
        if matches!(state, Some(BrokerState::CriticalActionRequired)) {
            return Err(DriverError::Permanent(format!(
                "Amazon MQ reports broker {} as CRITICAL_ACTION_REQUIRED (its actions required: {:?})",
                found.broker_name().unwrap_or_default(),
                found.actions_required()
            )));
        }
        Ok(Observation::Present { properties, outputs: Self::outputs(&found, r), ready })
    }

    async fn create(&self, r: &Resource) -> Result<Outputs, DriverError> {
        let p = Props::of(r);
        if let Some(why) = refused(&p) {
            return Err(DriverError::Permanent(why));
        }
        if let Some(found) = self.find(r).await? {
            return Ok(Self::outputs(&found, r));
        }
        self.0
            .mq
            .create_broker()
            .broker_name(p.str("name")?)
            .engine_type(EngineType::Rabbitmq)
            .engine_version(p.str("engineVersion")?)
            .auto_minor_version_upgrade(p.bool("autoMinorVersionUpgrade"))
            .deployment_mode(DeploymentMode::from(p.str("deploymentMode")?))
            .host_instance_type(p.str("hostInstanceType")?)
            .publicly_accessible(p.bool("publiclyAccessible"))
            .set_subnet_ids(Some(p.strings("subnetIds")))
            .set_security_groups(Some(p.strings("securityGroupIds")))
            .logs(Logs::builder().general(p.bool("generalLogs")).build())
            .users(User::builder().username(p.str("username")?).password(p.str("password")?).build())
            .set_tags(Some(p.tags().into_iter().collect()))
            .creator_request_id(self.0.client_token(r))
            .send()
            .await
            .map_err(|e| failed("CreateBroker", e))?;
        let found = self.find(r).await?.ok_or_else(|| DriverError::Retryable("broker not listed yet".into()))?;
        Ok(Self::outputs(&found, r))
    }

    async fn update(&self, r: &Resource) -> Result<Outputs, DriverError> {
        let p = Props::of(r);
        let Some(found) = self.find(r).await? else { return self.create(r).await };
        let id = found.broker_id().unwrap_or_default().to_string();
        self.0
            .mq
            .update_broker()
            .broker_id(&id)
            .engine_version(p.str("engineVersion")?)
            .auto_minor_version_upgrade(p.bool("autoMinorVersionUpgrade"))
            .host_instance_type(p.str("hostInstanceType")?)
            .set_security_groups(Some(p.strings("securityGroupIds")))
            .logs(Logs::builder().general(p.bool("generalLogs")).build())
            .send()
            .await
            .map_err(|e| failed("UpdateBroker", e))?;
        if let Some(arn) = found.broker_arn() {
            self.0
                .mq
                .create_tags()
                .resource_arn(arn)
                .set_tags(Some(p.tags().into_iter().collect()))
                .send()
                .await
                .map_err(|e| failed("CreateTags", e))?;
        }
        let found = self.find(r).await?.ok_or_else(|| DriverError::Retryable("broker not listed".into()))?;
        Ok(Self::outputs(&found, r))
    }

    async fn delete(&self, r: &Resource) -> Result<(), DriverError> {
        let Some(found) = self.find(r).await? else { return Ok(()) };
        if !matches!(found.broker_state(), Some(BrokerState::DeletionInProgress)) {
            let id = found.broker_id().unwrap_or_default();
            self.0.mq.delete_broker().broker_id(id).send().await.map_err(|e| failed("DeleteBroker", e))?;
        }
        until_gone(|| async { Ok(self.find(r).await?.is_none()) }).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn props(v: Value) -> Resource {
        Resource {
            environment: "dev".into(),
            id: "aws.mq-broker/x".into(),
            kind: "aws.mq-broker".into(),
            name: "x".into(),
            properties: v,
            external_name: "paved-dev-x".into(),
        }
    }

    #[test]
    fn what_amazon_mq_refuses_is_refused_first() {
        let ok = json!({"password": "Abcdefgh2345xyz", "username": "paved", "deploymentMode": "SINGLE_INSTANCE",
                        "subnetIds": ["subnet-1"], "hostInstanceType": "mq.t3.micro"});
        assert_eq!(refused(&Props::of(&props(ok.clone()))), None);
        let with = |k: &str, v: Value| {
            let mut p = ok.clone();
            p[k] = v;
            refused(&Props::of(&props(p))).unwrap_or_default()
        };
        assert!(with("password", json!("short")).contains("12 characters"));
        assert!(with("password", json!("aaaaaaaaaaaaaaaa")).contains("4 different"));
        assert!(with("password", json!("Abcdefgh:2345xyz")).contains("`:`"));
        assert!(with("username", json!("guest")).contains("not `guest`"));
        assert!(with("subnetIds", json!(["a", "b"])).contains("exactly one subnet"));
        let mut cluster = ok.clone();
        cluster["deploymentMode"] = json!("CLUSTER_MULTI_AZ");
        cluster["subnetIds"] = json!(["a", "b", "c"]);
        assert!(refused(&Props::of(&props(cluster))).unwrap().contains("single instances only"));
    }
}
