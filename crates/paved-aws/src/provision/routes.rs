//! Routes on a load balancer: each routed service's own target group and the
//! listener rule that sends its host and path there. The cluster's AWS Load
//! Balancer Controller puts the service's pods in the group
//! (`TargetGroupBinding`); a preview's routes sit on its host's load
//! balancer, so one listener serves an environment and all its previews.
//!
//! | node | AWS | AWS's rules kept here |
//! |---|---|---|
//! | `aws.lb-target-group` | `CreateTargetGroup` (IP targets, HTTP, the blueprint's health check), tagged `paved:cluster` | creating again with the same settings returns the group: a crashed create is adopted; a group a rule still forwards to cannot be deleted (`ResourceInUse`, retried once the rule is gone) (<https://docs.aws.amazon.com/elasticloadbalancing/latest/APIReference/API_CreateTargetGroup.html>) |
//! | `aws.lb-route` | `CreateRule` on the listener of `listenerPort`: `host-header` (the route's host) and `path-pattern` (`PATH` and `PATH/*`; `/*` for `/` without a host), forward to the group | priorities are unique per listener (1–50,000): the lowest free one is taken, and a race lost to another environment (`PriorityInUse`) is retried with the next; a rule needs at least one condition (<https://docs.aws.amazon.com/elasticloadbalancing/latest/application/listener-update-rules.html>, <https://docs.aws.amazon.com/elasticloadbalancing/latest/APIReference/API_CreateRule.html>) |
//!
//! A rule is found again by the group it forwards to and its host and path
//! (which the plan marks immutable: a new host is a new rule), so no rule
//! id is kept in state.

use super::props::tags_value;
use super::{Props, Session, failed, is_code};
use async_trait::async_trait;
use aws_sdk_elasticloadbalancingv2::types::{
    Action, ActionTypeEnum, HostHeaderConditionConfig, PathPatternConditionConfig, ProtocolEnum, Rule, RuleCondition,
    Tag, TargetGroup, TargetTypeEnum,
};
use paved_engine::{Driver, DriverError, Observation, Outputs, Resource};
use serde_json::{Value, json};
use std::sync::Arc;

fn tags(r: &Resource) -> Vec<Tag> {
    Props::of(r).tags().into_iter().map(|(k, v)| Tag::builder().key(k).value(v).build()).collect()
}

/// The target group of that name, if there is one.
pub(super) async fn target_group_named(s: &Session, name: &str) -> Result<Option<TargetGroup>, DriverError> {
    match s.elb.describe_target_groups().names(name).send().await {
        Ok(out) => Ok(out.target_groups().first().cloned()),
        Err(e) if is_code(&e, &["TargetGroupNotFound"]) => Ok(None),
        Err(e) => Err(failed("DescribeTargetGroups", e)),
    }
}

/// A routed service's target group.
pub(crate) struct RouteTargetGroup(pub(crate) Arc<Session>);

impl RouteTargetGroup {
    async fn find(&self, r: &Resource) -> Result<Option<TargetGroup>, DriverError> {
        target_group_named(&self.0, Props::of(r).str("name")?).await
    }

    fn outputs(tg: &TargetGroup) -> Outputs {
        Outputs::from([("arn".to_string(), json!(tg.target_group_arn()))])
    }

    fn int(hc: &Value, k: &str) -> Option<i32> {
        hc[k].as_i64().and_then(|n| i32::try_from(n).ok())
    }

    /// The node as ELB holds it.
    fn seen(tg: &TargetGroup, tags: &[Tag]) -> Observation {
        let properties = json!({
            "name": tg.target_group_name(),
            "vpcId": tg.vpc_id(),
            "protocol": tg.protocol().map(|p| p.as_str()),
            "port": tg.port(),
            "targetType": tg.target_type().map(|t| t.as_str()),
            "healthCheck": {
                "path": tg.health_check_path(),
                "intervalSeconds": tg.health_check_interval_seconds(),
                "timeoutSeconds": tg.health_check_timeout_seconds(),
                "healthyThreshold": tg.healthy_threshold_count(),
                "unhealthyThreshold": tg.unhealthy_threshold_count(),
            },
            "tags": tags_value(tags.iter().filter_map(|t| Some((t.key()?, t.value()?)))),
        });
        Observation::Present { properties, outputs: Self::outputs(tg), ready: true }
    }

    /// Health check and tags brought to the node's.
    async fn configure(&self, tg: &TargetGroup, r: &Resource) -> Result<Outputs, DriverError> {
        let arn = tg.target_group_arn().unwrap_or_default();
        let hc = Props::of(r).value("healthCheck");
        if hc.is_object() {
            self.0
                .elb
                .modify_target_group()
                .target_group_arn(arn)
                .set_health_check_path(hc["path"].as_str().map(str::to_string))
                .set_health_check_interval_seconds(Self::int(hc, "intervalSeconds"))
                .set_health_check_timeout_seconds(Self::int(hc, "timeoutSeconds"))
                .set_healthy_threshold_count(Self::int(hc, "healthyThreshold"))
                .set_unhealthy_threshold_count(Self::int(hc, "unhealthyThreshold"))
                .send()
                .await
                .map_err(|e| failed("ModifyTargetGroup", e))?;
        }
        self.0
            .elb
            .add_tags()
            .resource_arns(arn)
            .set_tags(Some(tags(r)))
            .send()
            .await
            .map_err(|e| failed("AddTags", e))?;
        Ok(Self::outputs(tg))
    }
}

#[async_trait]
impl Driver for RouteTargetGroup {
    async fn observe(&self, r: &Resource) -> Result<Observation, DriverError> {
        let Some(tg) = self.find(r).await? else { return Ok(Observation::Absent) };
        let arn = tg.target_group_arn().unwrap_or_default();
        let described =
            self.0.elb.describe_tags().resource_arns(arn).send().await.map_err(|e| failed("DescribeTags", e))?;
        let tags: Vec<Tag> = described.tag_descriptions().iter().flat_map(|d| d.tags()).cloned().collect();
        Ok(Self::seen(&tg, &tags))
    }

    /// A sweep's groups: every target group listed (400 a page) and the
    /// tags of the wanted ones 20 at a time (`DescribeTags`' most), instead
    /// of two calls per group
    /// (<https://docs.aws.amazon.com/elasticloadbalancing/latest/APIReference/API_DescribeTags.html>).
    async fn observe_all(&self, rs: &[Resource]) -> Vec<Result<Observation, DriverError>> {
        let elb = &self.0.elb;
        let mut groups = Vec::new();
        let mut pages = elb.describe_target_groups().page_size(400).into_paginator().items().send();
        while let Some(item) = pages.next().await {
            match item {
                Ok(tg) => groups.push(tg),
                Err(e) => return super::every(rs, failed("DescribeTargetGroups", e)),
            }
        }
        let wanted: Vec<&TargetGroup> = groups
            .iter()
            .filter(|g| rs.iter().any(|r| Props::of(r).opt_str("name") == g.target_group_name()))
            .collect();
        let arns: Vec<&str> = wanted.iter().filter_map(|g| g.target_group_arn()).collect();
        let tags = match super::elb_tags(elb, &arns).await {
            Ok(tags) => tags,
            Err(e) => return super::every(rs, e),
        };
        rs.iter()
            .map(|r| {
                let name = Props::of(r).opt_str("name");
                Ok(match wanted.iter().find(|g| g.target_group_name() == name) {
                    None => Observation::Absent,
                    Some(tg) => {
                        let arn = tg.target_group_arn().unwrap_or_default();
                        Self::seen(tg, tags.get(arn).map_or(&[][..], Vec::as_slice))
                    }
                })
            })
            .collect()
    }

    async fn create(&self, r: &Resource) -> Result<Outputs, DriverError> {
        let p = Props::of(r);
        let hc = p.value("healthCheck");
        let out = self
            .0
            .elb
            .create_target_group()
            .name(p.str("name")?)
            .protocol(ProtocolEnum::from(p.str("protocol")?))
            .port(p.int("port")?)
            .vpc_id(p.str("vpcId")?)
            .target_type(TargetTypeEnum::from(p.str("targetType")?))
            .set_health_check_path(hc["path"].as_str().map(str::to_string))
            .set_health_check_interval_seconds(Self::int(hc, "intervalSeconds"))
            .set_health_check_timeout_seconds(Self::int(hc, "timeoutSeconds"))
            .set_healthy_threshold_count(Self::int(hc, "healthyThreshold"))
            .set_unhealthy_threshold_count(Self::int(hc, "unhealthyThreshold"))
            .set_tags(Some(tags(r)))
            .send()
            .await
            .map_err(|e| failed("CreateTargetGroup", e))?;
        let tg = out
            .target_groups()
            .first()
            .cloned()
            .ok_or_else(|| DriverError::Retryable("AWS CreateTargetGroup returned nothing".into()))?;
        Ok(Self::outputs(&tg))
    }

    async fn update(&self, r: &Resource) -> Result<Outputs, DriverError> {
        match self.find(r).await? {
            Some(tg) => self.configure(&tg, r).await,
            None => self.create(r).await,
        }
    }

    async fn delete(&self, r: &Resource) -> Result<(), DriverError> {
        let Some(tg) = self.find(r).await? else { return Ok(()) };
        match self.0.elb.delete_target_group().target_group_arn(tg.target_group_arn().unwrap_or_default()).send().await
        {
            Ok(_) => Ok(()),
            Err(e) if is_code(&e, &["TargetGroupNotFound"]) => Ok(()),
            Err(e) if is_code(&e, &["ResourceInUse"]) => {
                Err(DriverError::Retryable(format!("{}: a listener rule still forwards to the target group", r.id)))
            }
            Err(e) => Err(failed("DeleteTargetGroup", e)),
        }
    }
}

/// A route's listener rule.
pub(crate) struct ListenerRule(pub(crate) Arc<Session>);

/// The path patterns of a route: the path and everything under it; `/*`
/// for `/` without a host (a rule needs one condition); none for `/` with one.
fn patterns(host: Option<&str>, path: &str) -> Vec<String> {
    match (path.trim_end_matches('/'), host) {
        ("", Some(_)) => vec![],
        ("", None) => vec!["/*".into()],
        (p, _) => vec![p.to_string(), format!("{p}/*")],
    }
}

/// The rule's conditions: the host, and the path with everything under it.
fn conditions(host: Option<&str>, path: &str) -> Vec<RuleCondition> {
    let mut out = Vec::new();
    if let Some(host) = host {
        out.push(
            RuleCondition::builder()
                .field("host-header")
                .host_header_config(HostHeaderConditionConfig::builder().values(host).build())
                .build(),
        );
    }
    let patterns = patterns(host, path);
    if !patterns.is_empty() {
        out.push(
            RuleCondition::builder()
                .field("path-pattern")
                .path_pattern_config(PathPatternConditionConfig::builder().set_values(Some(patterns)).build())
                .build(),
        );
    }
    out
}

/// A condition's values, whichever form AWS answered in.
fn condition_values(rule: &Rule, field: &str) -> Vec<String> {
    rule.conditions()
        .iter()
        .filter(|c| c.field() == Some(field))
        .flat_map(|c| {
            let typed = match field {
                "host-header" => c.host_header_config().map(|h| h.values().to_vec()),
                _ => c.path_pattern_config().map(|p| p.values().to_vec()),
            };
            typed.filter(|v| !v.is_empty()).unwrap_or_else(|| c.values().to_vec())
        })
        .collect()
}

impl ListenerRule {
    /// The listener on the node's port of the node's load balancer.
    async fn listener(&self, r: &Resource) -> Result<String, DriverError> {
        let p = Props::of(r);
        let lb = p.str("loadBalancerArn")?;
        let port = p.int("listenerPort")?;
        let out = self
            .0
            .elb
            .describe_listeners()
            .load_balancer_arn(lb)
            .send()
            .await
            .map_err(|e| failed("DescribeListeners", e))?;
        out.listeners()
            .iter()
            .find(|l| l.port() == Some(port))
            .and_then(|l| l.listener_arn().map(str::to_string))
            // The load balancer's own apply adds its listeners: wait for it.
            .ok_or_else(|| DriverError::Retryable(format!("{}: the load balancer has no listener on {port} yet", r.id)))
    }

    async fn rules(&self, listener: &str) -> Result<Vec<Rule>, DriverError> {
        let out =
            self.0.elb.describe_rules().listener_arn(listener).send().await.map_err(|e| failed("DescribeRules", e))?;
        Ok(out.rules().to_vec())
    }

    fn forwards_to(rule: &Rule, group: &str) -> bool {
        !rule.is_default().unwrap_or(false)
            && rule.actions().iter().any(|a| {
                a.target_group_arn() == Some(group)
                    || a.forward_config()
                        .is_some_and(|f| f.target_groups().iter().any(|t| t.target_group_arn() == Some(group)))
            })
    }

    async fn find(&self, r: &Resource) -> Result<Option<(String, Rule)>, DriverError> {
        let listener = match self.listener(r).await {
            Ok(l) => l,
            Err(DriverError::Retryable(_)) => return Ok(None),
            Err(e) => return Err(e),
        };
        let p = Props::of(r);
        let group = p.str("targetGroupArn")?;
        let host = p.opt_str("host");
        let want_hosts: Vec<String> = host.map(str::to_string).into_iter().collect();
        let mut want_patterns = patterns(host, p.opt_str("path").unwrap_or("/"));
        want_patterns.sort();
        let same = |rule: &Rule| {
            let mut have = condition_values(rule, "path-pattern");
            have.sort();
            condition_values(rule, "host-header") == want_hosts && have == want_patterns
        };
        let rules = self.rules(&listener).await?;
        Ok(rules.into_iter().find(|rule| Self::forwards_to(rule, group) && same(rule)).map(|rule| (listener, rule)))
    }

    fn forward(r: &Resource) -> Result<Action, DriverError> {
        Ok(Action::builder()
            .r#type(ActionTypeEnum::Forward)
            .target_group_arn(Props::of(r).str("targetGroupArn")?)
            .build())
    }

    fn outputs(r: &Resource, priority: &str) -> Outputs {
        let p = Props::of(r);
        let host = p.opt_str("host").or(p.opt_str("loadBalancerDns")).unwrap_or_default();
        let path = p.opt_str("path").unwrap_or("/");
        let scheme = p.opt_str("scheme").unwrap_or("https");
        Outputs::from([
            ("host".to_string(), json!(host)),
            ("url".to_string(), json!(format!("{scheme}://{host}{path}"))),
            ("priority".to_string(), json!(priority)),
        ])
    }
}

#[async_trait]
impl Driver for ListenerRule {
    async fn observe(&self, r: &Resource) -> Result<Observation, DriverError> {
        let Some((_, rule)) = self.find(r).await? else { return Ok(Observation::Absent) };
        // What the rule holds; the rest of the node (names, tags) is paved's own record.
        let mut properties = r.properties.clone();
        let hosts = condition_values(&rule, "host-header");
        properties["host"] = hosts.first().map_or(Value::Null, |h| json!(h));
        let patterns = condition_values(&rule, "path-pattern");
        let path = patterns.iter().find(|p| !p.ends_with("/*")).cloned().unwrap_or_else(|| "/".into());
        properties["path"] = json!(path);
        let priority = rule.priority().unwrap_or_default().to_string();
        Ok(Observation::Present { properties, outputs: Self::outputs(r, &priority), ready: true })
    }

    async fn create(&self, r: &Resource) -> Result<Outputs, DriverError> {
        if let Some((_, rule)) = self.find(r).await? {
            // A crashed create: the rule is there already.
            return self.update_rule(r, &rule).await;
        }
        let listener = self.listener(r).await?;
        let p = Props::of(r);
        let taken: std::collections::BTreeSet<i32> =
            self.rules(&listener).await?.iter().filter_map(|rule| rule.priority()?.parse().ok()).collect();
        let priority = (1..=50_000)
            .find(|n| !taken.contains(n))
            .ok_or_else(|| DriverError::Permanent(format!("{}: the listener has 50,000 rules, AWS's most", r.id)))?;
        match self
            .0
            .elb
            .create_rule()
            .listener_arn(&listener)
            .priority(priority)
            .set_conditions(Some(conditions(p.opt_str("host"), p.opt_str("path").unwrap_or("/"))))
            .actions(Self::forward(r)?)
            .set_tags(Some(tags(r)))
            .send()
            .await
        {
            Ok(_) => Ok(Self::outputs(r, &priority.to_string())),
            // Another environment took the priority between our read and our write.
            Err(e) if is_code(&e, &["PriorityInUse"]) => {
                Err(DriverError::Retryable(format!("{}: rule priority {priority} was just taken", r.id)))
            }
            Err(e) => Err(failed("CreateRule", e)),
        }
    }

    async fn update(&self, r: &Resource) -> Result<Outputs, DriverError> {
        match self.find(r).await? {
            Some((_, rule)) => self.update_rule(r, &rule).await,
            None => self.create(r).await,
        }
    }

    async fn delete(&self, r: &Resource) -> Result<(), DriverError> {
        let Some((_, rule)) = self.find(r).await? else { return Ok(()) };
        match self.0.elb.delete_rule().rule_arn(rule.rule_arn().unwrap_or_default()).send().await {
            Ok(_) => Ok(()),
            Err(e) if is_code(&e, &["RuleNotFound"]) => Ok(()),
            Err(e) => Err(failed("DeleteRule", e)),
        }
    }
}

impl ListenerRule {
    async fn update_rule(&self, r: &Resource, rule: &Rule) -> Result<Outputs, DriverError> {
        let p = Props::of(r);
        self.0
            .elb
            .modify_rule()
            .rule_arn(rule.rule_arn().unwrap_or_default())
            .set_conditions(Some(conditions(p.opt_str("host"), p.opt_str("path").unwrap_or("/"))))
            .actions(Self::forward(r)?)
            .send()
            .await
            .map_err(|e| failed("ModifyRule", e))?;
        Ok(Self::outputs(r, rule.priority().unwrap_or_default()))
    }
}
