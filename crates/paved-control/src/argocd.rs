//! Health from the cluster: Argo CD's notifications about an environment's
//! Application, sent to `POST /api/v1/webhooks/argocd`.
//!
//! Argo CD does not sign its webhooks, so each environment has a secret of
//! its own (`PAVED_ARGOCD_WEBHOOK` in the vault, generated on the
//! environment's first delivery; read it with `paved secret reveal
//! PAVED_ARGOCD_WEBHOOK -e ENV`, which is audited) that the notification
//! carries in a header. A request without it changes nothing.
//!
//! | trigger | revision | what paved does |
//! |---|---|---|
//! | `on-deployed` (synced and healthy) | a commit paved delivered for the environment | every deployment still rolling out whose delivery is that commit or an earlier one becomes healthy (the ones before it superseded); again for the same commit: nothing |
//! | `on-health-degraded`, `on-sync-failed` | same | those deployments fail with Argo CD's message, and the environment is delivered again without them — a new commit running the previous healthy digests (the local provider's health gate, by Git); they end `rolled-back` |
//! | any | a commit paved did not deliver, or one before the last reported | recorded in the audit log, nothing else (a stale or foreign notification) |
//!
//! "Delivered before" is the order of the deliveries' audit events, which is
//! the order their pushes landed on the branch.

use crate::gitops::DeliveryReason;
use crate::{Caller, Control, ControlError};
use paved_store::{AuditFilter, AuditOutcome, DeploymentFilter, DeploymentStatus};
use serde::{Deserialize, Serialize};

/// The vault name of an environment's webhook secret.
pub const WEBHOOK_SECRET: &str = "PAVED_ARGOCD_WEBHOOK";

/// What Argo CD reports (the body paved's notification templates render).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HealthNotice {
    pub environment: String,
    /// `on-deployed`, `on-health-degraded` or `on-sync-failed`.
    pub trigger: String,
    /// The commit the Application is at.
    pub revision: String,
    /// Argo CD's health and sync status and its message, for the record.
    #[serde(default)]
    pub health: Option<String>,
    #[serde(default)]
    pub sync: Option<String>,
    #[serde(default)]
    pub message: Option<String>,
}

/// What paved made of a notice.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HealthOutcome {
    /// `healthy`, `rolled-back`, `stale` or `nothing-to-do`.
    pub result: String,
    /// `SERVICE #N` of each deployment it decided.
    pub deployments: Vec<String>,
    /// The rollback commit, when one was made.
    pub commit: Option<String>,
}

impl Control {
    /// The environment's webhook secret, generated and kept on first use.
    pub async fn argocd_secret(&self, environment: &str, caller: &Caller) -> Result<String, ControlError> {
        let vault = self.vault().await?;
        let scope = paved_secrets::Scope::environment(environment);
        if let Some((_, value)) =
            vault.resolve(&[environment.to_string()], None, WEBHOOK_SECRET).await.map_err(crate::SecretError::from)?
        {
            return Ok(String::from_utf8_lossy(&value.0).into_owned());
        }
        let mut bytes = [0u8; 32];
        rand::Rng::fill_bytes(&mut rand::rng(), &mut bytes);
        let token = hex::encode(bytes);
        let actor = paved_secrets::Actor { subject: caller.actor.clone(), request: caller.request.clone() };
        vault
            .keep(&scope, WEBHOOK_SECRET, &paved_secrets::SecretValue(token.clone().into_bytes()), &actor)
            .await
            .map_err(crate::SecretError::from)?;
        Ok(token)
    }

    /// Whether `presented` is the environment's webhook secret (compared in
    /// constant time; an environment without one accepts nothing).
    pub async fn argocd_secret_matches(&self, environment: &str, presented: &str) -> Result<bool, ControlError> {
        let vault = self.vault().await?;
        let Some((_, value)) =
            vault.resolve(&[environment.to_string()], None, WEBHOOK_SECRET).await.map_err(crate::SecretError::from)?
        else {
            return Ok(false);
        };
        let (a, b) = (value.0.as_slice(), presented.as_bytes());
        Ok(a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0)
    }

    /// Acts on a notice whose secret was checked (see the module's table).
    pub async fn cluster_health(&self, notice: &HealthNotice, caller: &Caller) -> Result<HealthOutcome, ControlError> {
        let env = notice.environment.as_str();
        let failing = match notice.trigger.as_str() {
            "on-deployed" => false,
            "on-health-degraded" | "on-sync-failed" => true,
            other => {
                return Err(ControlError::BadTokenRequest(crate::BadTokenRequest {
                    field: "trigger",
                    message: format!(
                        "trigger `{other}` is not one paved acts on (on-deployed, on-health-degraded, on-sync-failed)"
                    ),
                }));
            }
        };
        // The environment's deliveries, in the order they landed: which deployment each carried.
        let filter = AuditFilter {
            action: Some("environment.deliver".into()),
            target: Some(format!("Environment/{env}")),
            limit: 10_000,
            ..Default::default()
        };
        let deliveries = self.store.audit_events(&filter).await?;
        let position = deliveries.iter().position(|e| e.event.after.as_deref() == Some(notice.revision.as_str()));
        let target = format!("Environment/{env}");
        let details = serde_json::json!({
            "trigger": notice.trigger, "revision": notice.revision, "health": notice.health,
            "sync": notice.sync, "message": notice.message,
        });
        let Some(position) = position else {
            self.record(caller, "cluster.health", target, AuditOutcome::Denied, None, details).await?;
            return Ok(HealthOutcome { result: "stale".into(), deployments: vec![], commit: None });
        };
        // Deployments each delivery up to this one carried.
        let carried: Vec<(String, i64)> = deliveries[..=position]
            .iter()
            .filter_map(|e| {
                let n = e.event.details["deployment"].as_i64()?;
                Some((e.event.details["service"].as_str()?.to_string(), n))
            })
            .collect();
        let all = self.store.deployments(&DeploymentFilter { environment: Some(env.into()), service: None }).await?;
        let covered: Vec<&paved_store::Deployment> = all
            .iter()
            .filter(|d| d.status == DeploymentStatus::RollingOut)
            .filter(|d| carried.iter().any(|(s, n)| *s == d.service && *n == d.number))
            .collect();
        let names: Vec<String> = covered.iter().map(|d| format!("{} #{}", d.service, d.number)).collect();
        self.record(caller, "cluster.health", target, AuditOutcome::Succeeded, Some(notice.revision.clone()), details)
            .await?;
        if covered.is_empty() {
            return Ok(HealthOutcome { result: "nothing-to-do".into(), deployments: names, commit: None });
        }
        if !failing {
            for d in &covered {
                self.mark_healthy(d).await?;
            }
            return Ok(HealthOutcome { result: "healthy".into(), deployments: names, commit: None });
        }
        let why = format!(
            "Argo CD reports {} at {}{}",
            notice.trigger.trim_start_matches("on-"),
            crate::short_commit(&notice.revision),
            notice.message.as_deref().map(|m| format!(": {m}")).unwrap_or_default()
        );
        let from = [DeploymentStatus::RollingOut];
        for d in &covered {
            self.store.set_deployment_status(d, &from, DeploymentStatus::Failed, Some(&why), self.clock.now()).await?;
        }
        // Without the failed deployments the tree runs the previous healthy digests again.
        let catalog = self.catalog(caller.request.clone());
        let reason = DeliveryReason {
            operation: "rollback".into(),
            summary: Some(format!("{} after {}", names.join(", "), notice.trigger.trim_start_matches("on-"))),
            deployment: None,
            service: None,
        };
        let delivery = self.deliver(&catalog, env, &reason, caller, false).await?;
        for d in &covered {
            let to = self
                .current_of(env, &d.service)
                .await?
                .map_or("the Score image".to_string(), |p| format!("#{} ({})", p.number, crate::short(&p.artifact)));
            let reason = format!("{why}; rolled back to {to}");
            self.store
                .set_deployment_status(
                    d,
                    &[DeploymentStatus::Failed],
                    DeploymentStatus::RolledBack,
                    Some(&reason),
                    self.clock.now(),
                )
                .await?;
            let details = serde_json::json!({"number": d.number, "to": to, "commit": delivery.commit});
            self.record(
                caller,
                "deployment.rollback",
                format!("Service/{}@{env}", d.service),
                AuditOutcome::Succeeded,
                None,
                details,
            )
            .await?;
        }
        Ok(HealthOutcome { result: "rolled-back".into(), deployments: names, commit: delivery.commit })
    }
}
