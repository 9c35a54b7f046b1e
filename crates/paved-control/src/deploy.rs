//! Build once, promote by digest: artifacts, deployments, rollback,
//! promotion and "what runs where".
//!
//! A deployment is a record (who, which digest, which strategy, its status)
//! plus what it changes in the resource graph: the service's workload node
//! runs the digest of the service's current deployment (the latest one that
//! did not fail), with the deployment's strategy. Applying the environment
//! rolls it out; the workload driver's health gate decides, and a failed
//! rollout leaves the previous version serving. So `apply`, crash safety,
//! drift and parity cover deployments like any node.

use crate::{Caller, Control, ControlError, RunOptions};
use paved_catalog::EnvironmentContext;
use paved_engine::{Outcome, Progress};
use paved_model::score::ANNOTATION_STAGES;
use paved_model::{EnvType, Provider, Strategy};
use paved_plan::Release;
use paved_store::{
    Artifact, ArtifactPut, AuditOutcome, Deployment, DeploymentFilter, DeploymentStatus, NewAuditEvent, NewDeployment,
    RequestContext,
};
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

/// Why a deployment, rollback or promotion was not started.
#[derive(Debug, thiserror::Error)]
pub enum DeployRefusal {
    #[error("artifact `{0}` is not a digest: write `sha256:` and 64 hexadecimal digits (see `paved artifact list`)")]
    NotADigest(String),
    #[error("artifact {digest} was never pushed; push it first with `paved artifact push DIR --service {service}`")]
    UnknownArtifact { digest: String, service: String },
    #[error("artifact {digest} was built for service `{built_for}`, not `{service}`")]
    OtherService { digest: String, built_for: String, service: String },
    #[error("service `{service}` is not deployed to environment `{environment}` (it has no Score spec recorded)")]
    UnknownService { service: String, environment: String },
    #[error(
        "environment `{environment}` is on the {provider} provider; deployments reach it through Git: give its blueprint `compute.runtime: cluster` and its account `spec.gitops`"
    )]
    Provider { environment: String, provider: String },
    #[error(
        "{environment} accepts only artifacts already healthy in {previous} (promotion order {order}); {digest} never was. Deploy it there first, then `paved promote {service} --from ENV --to {environment}`"
    )]
    NotPromoted { service: String, environment: String, digest: String, previous: String, order: String },
    #[error(
        "service `{service}`: annotation `paved.dev/stages` puts `{first}` before `{second}`, against its blueprint's promotion order ({order}); a service may leave stages out, not reorder them"
    )]
    StagesReordered { service: String, first: String, second: String, order: String },
    #[error("service `{service}` is not healthy in `{environment}`{current}; only a healthy deployment is promoted")]
    SourceUnhealthy { service: String, environment: String, current: String },
    #[error("service `{service}` has no earlier healthy deployment in `{environment}` to roll back to")]
    NothingToRollBackTo { service: String, environment: String },
    #[error("deployment #{number} of `{service}` in `{environment}` {why}")]
    BadRollbackTarget { service: String, environment: String, number: i64, why: String },
    #[error("tag `{tag}` of service `{service}` already names {digest}; a tag is never reused: pick a new one")]
    TagTaken { service: String, tag: String, digest: String },
    #[error("environment `{environment}` cannot be planned, so nothing is deployed to it: {problems}")]
    Unplannable { environment: String, problems: String },
    #[error("{0}")]
    Bundle(String),
}

/// What `paved artifact push` records besides the content.
#[derive(Debug, Clone, Default)]
pub struct BuildInfo {
    pub service: String,
    pub commit: Option<String>,
    pub commit_time: Option<time::OffsetDateTime>,
    pub branch: Option<String>,
    pub tags: Vec<String>,
}

/// A deployment asked for.
#[derive(Debug, Clone)]
pub struct DeployRequest {
    pub service: String,
    pub environment: String,
    pub artifact: String,
    /// The blueprint's default when `None`.
    pub strategy: Option<Strategy>,
    pub soak: Option<Duration>,
    /// How long the new version may take to become ready (default: the blueprint's `spec.rollout.readyTimeout`).
    pub ready_timeout: Option<Duration>,
    /// Exactly once: a second request with this id returns the first one's deployment.
    pub request_id: String,
}

/// How a deployment ended.
#[derive(Debug, Clone, Serialize)]
pub struct DeployResult {
    pub deployment: Deployment,
    /// `false` when the request id was seen before (nothing was deployed again).
    pub created: bool,
    /// The deployment that serves again after this one failed.
    pub restored: Option<Deployment>,
}

/// One cell of the services × environments matrix.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct StatusRow {
    pub service: String,
    pub environment: String,
    /// The deployment that should run (the latest that did not fail).
    pub number: Option<i64>,
    /// `sha256:…`, or the Score image for a service never deployed by digest.
    pub artifact: String,
    pub commit: Option<String>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub since: Option<time::OffsetDateTime>,
    pub by: Option<String>,
    /// `healthy`, `rolling-out`, `pending`, `applied` (running the Score image),
    /// or `not-applied` (recorded, never applied in this environment).
    pub health: String,
    /// The latest deployment, when it failed or was rolled back.
    pub last_failed: Option<i64>,
    /// Why the environment's last apply left this service out (its
    /// resources cannot be provisioned there); what it ran before still runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blocked: Option<String>,
}

pub(crate) fn is_digest(s: &str) -> bool {
    s.strip_prefix("sha256:").is_some_and(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// The deployment that should run per service: the latest that did not fail.
fn current(deployments: &[Deployment]) -> BTreeMap<&str, &Deployment> {
    let mut out = BTreeMap::new();
    for d in deployments.iter().filter(|d| d.status.is_wanted()) {
        out.insert(d.service.as_str(), d);
    }
    out
}

impl Control {
    /// Stores a bundle in the content-addressed store and records it as an
    /// artifact of a service. The same content again changes nothing.
    pub async fn push_artifact(
        &self,
        caller: &Caller,
        bundle: &std::path::Path,
        build: &BuildInfo,
    ) -> Result<(Artifact, ArtifactPut), ControlError> {
        let images = self.local.images();
        let src = bundle.to_path_buf();
        let digest = tokio::task::spawn_blocking(move || images.import(&src, &[]))
            .await
            .map_err(|e| DeployRefusal::Bundle(e.to_string()))?
            .map_err(DeployRefusal::Bundle)?;
        let mut tags = build.tags.clone();
        tags.sort();
        tags.dedup();
        let artifact = Artifact {
            digest: digest.clone(),
            service: build.service.clone(),
            commit: build.commit.clone(),
            commit_time: build.commit_time,
            branch: build.branch.clone(),
            builder: caller.actor.clone(),
            created_at: self.clock.now(),
            tags,
        };
        if let Some(existing) = self.store.artifact(&digest).await?
            && existing.service != build.service
        {
            return Err(DeployRefusal::OtherService {
                digest,
                built_for: existing.service,
                service: build.service.clone(),
            }
            .into());
        }
        let event = self
            .event(caller, "artifact.push", format!("Artifact/{}", build.service), AuditOutcome::Succeeded)
            .with_after(
                &digest,
                serde_json::json!({"commit": build.commit, "branch": build.branch, "tags": artifact.tags}),
            );
        match self.store.put_artifact(&artifact, &event).await? {
            ArtifactPut::TagTaken { tag, digest } => {
                Err(DeployRefusal::TagTaken { service: build.service.clone(), tag, digest }.into())
            }
            put => {
                let stored = self.store.artifact(&digest).await?.unwrap_or(artifact);
                Ok((stored, put))
            }
        }
    }

    /// The artifact each service of an environment should run (planning input).
    pub(crate) async fn releases(&self, c: &EnvironmentContext) -> Result<BTreeMap<String, Release>, ControlError> {
        let environment = &c.environment.metadata.name;
        let filter = DeploymentFilter { environment: Some(environment.clone()), service: None };
        let deployments = self.store.deployments(&filter).await?;
        Ok(current(&deployments)
            .into_iter()
            .map(|(service, d)| {
                let release = Release {
                    artifact: d.artifact.clone(),
                    strategy: Strategy::parse(&d.strategy).unwrap_or_default(),
                    soak_ms: d.soak_ms.max(0) as u64,
                    ready_timeout_ms: d.ready_timeout_ms.max(0) as u64,
                };
                (service.to_string(), release)
            })
            .collect())
    }

    /// Deploys an artifact to an environment and waits for the health gate.
    /// A rollout that fails leaves (or puts) the previous healthy version
    /// back, and the deployment ends `rolled-back`.
    pub async fn deploy(
        &self,
        req: &DeployRequest,
        caller: &Caller,
        run: &RunOptions,
        progress: Arc<dyn Progress>,
    ) -> Result<DeployResult, ControlError> {
        let (deployment, created) = self.record_deployment(req, caller).await?;
        self.finish(deployment, created, caller, run, progress).await
    }

    /// Rolls out a deployment just recorded (by [`Control::record_deployment`],
    /// `record_rollback` or `record_promotion`); a repeated request's is reported as it is.
    pub async fn finish(
        &self,
        deployment: Deployment,
        created: bool,
        caller: &Caller,
        run: &RunOptions,
        progress: Arc<dyn Progress>,
    ) -> Result<DeployResult, ControlError> {
        if !created {
            return Ok(DeployResult { deployment, created, restored: None });
        }
        self.roll_out(deployment, caller, run, progress).await
    }

    /// Checks a deployment request against the promotion rules and records
    /// it (`pending`); refusals are audited. `false`: the request id was seen
    /// before and that deployment is returned.
    pub async fn record_deployment(
        &self,
        req: &DeployRequest,
        caller: &Caller,
    ) -> Result<(Deployment, bool), ControlError> {
        self.record_deployment_as(req, caller, paved_model::DecisionPoint::Deploy, None).await
    }

    /// [`Control::record_deployment`] asking the policies as `point`
    /// (`deploy`, or `promote` from `from`).
    async fn record_deployment_as(
        &self,
        req: &DeployRequest,
        caller: &Caller,
        point: paved_model::DecisionPoint,
        from: Option<&str>,
    ) -> Result<(Deployment, bool), ControlError> {
        let catalog = self.catalog(caller.request.clone());
        let c = catalog.environment_context(&req.environment).await?;
        let check = async {
            if !is_digest(&req.artifact) {
                return Err(DeployRefusal::NotADigest(req.artifact.clone()));
            }
            if c.account.spec.provider != Provider::Local
                && !self.delivers_through_git(&catalog, &req.environment).await.unwrap_or(false)
            {
                return Err(DeployRefusal::Provider {
                    environment: req.environment.clone(),
                    provider: c.account.spec.provider.as_str().into(),
                });
            }
            if !c.services.iter().any(|w| w.metadata.name == req.service) {
                return Err(DeployRefusal::UnknownService {
                    service: req.service.clone(),
                    environment: req.environment.clone(),
                });
            }
            match self.store.artifact(&req.artifact).await {
                Ok(Some(a)) if a.service != req.service => {
                    return Err(DeployRefusal::OtherService {
                        digest: req.artifact.clone(),
                        built_for: a.service,
                        service: req.service.clone(),
                    });
                }
                Ok(Some(_)) => {}
                Ok(None) => {
                    return Err(DeployRefusal::UnknownArtifact {
                        digest: req.artifact.clone(),
                        service: req.service.clone(),
                    });
                }
                Err(e) => return Err(DeployRefusal::Bundle(e.to_string())),
            }
            self.check_stage(&catalog, &c, &req.service, &req.artifact).await?;
            // The target must plan (its blueprint's parameters valid for it) before anything is recorded.
            match self.desired_graph(&catalog, &req.environment).await {
                Err(ControlError::Unplannable { problems, .. }) => Err(DeployRefusal::Unplannable {
                    environment: req.environment.clone(),
                    problems: problems.join("; "),
                }),
                // Its own resources cannot be provisioned there: nothing to roll it out to.
                Ok((graph, _)) if graph.blocked.contains_key(&req.service) => Err(DeployRefusal::Unplannable {
                    environment: req.environment.clone(),
                    problems: graph.blocked[&req.service].join("; "),
                }),
                _ => Ok(()),
            }
        };
        if let Err(refusal) = check.await {
            let target = format!("Service/{}@{}", req.service, req.environment);
            let details = serde_json::json!({"artifact": req.artifact, "reason": refusal.to_string()});
            self.record(caller, "deployment.create", target, AuditOutcome::Denied, None, details).await?;
            return Err(refusal.into());
        }
        self.gate_deployment(caller, point, &req.environment, &req.service, &req.artifact, from).await?;
        let rollout = &c.blueprint.spec.rollout;
        let soak = req.soak.or_else(|| rollout.soak.parse()).unwrap_or(Duration::from_secs(5));
        let ready_timeout =
            req.ready_timeout.or_else(|| rollout.ready_timeout.parse()).unwrap_or(Duration::from_secs(120));
        let new = NewDeployment {
            environment: req.environment.clone(),
            service: req.service.clone(),
            artifact: req.artifact.clone(),
            strategy: req.strategy.unwrap_or(rollout.strategy).as_str().into(),
            soak_ms: soak.as_millis() as i64,
            ready_timeout_ms: ready_timeout.as_millis() as i64,
            actor: caller.actor.clone(),
            request_id: req.request_id.clone(),
            origin: Some(caller.request.origin.clone()).filter(|o| !o.is_empty()),
            at: self.clock.now(),
        };
        let event = self
            .event(
                caller,
                "deployment.create",
                format!("Service/{}@{}", req.service, req.environment),
                AuditOutcome::Succeeded,
            )
            .with_after(&req.artifact, serde_json::json!({"strategy": new.strategy, "soakMs": new.soak_ms}));
        Ok(self.store.create_deployment(&new, &event).await?)
    }

    /// Applies the environment with `deployment` as its service's release and
    /// records how it went; on failure applies it again without it.
    pub async fn roll_out(
        &self,
        deployment: Deployment,
        caller: &Caller,
        run: &RunOptions,
        progress: Arc<dyn Progress>,
    ) -> Result<DeployResult, ControlError> {
        let env = deployment.environment.clone();
        let at = self.clock.now();
        self.store
            .set_deployment_status(&deployment, &[DeploymentStatus::Pending], DeploymentStatus::RollingOut, None, at)
            .await?;
        let catalog = self.catalog(caller.request.clone());
        if self.delivers_through_git(&catalog, &env).await? {
            return self.deliver_deployment(&catalog, deployment, caller).await;
        }
        let outcome = self.apply_environment(&env, caller, run, progress.clone()).await;
        let node = format!("local.workload/{}", deployment.service);
        let failure = match &outcome {
            Ok(report) => report.outcomes.get(&node).and_then(failure_of).or_else(|| {
                (!report.succeeded()).then(|| "the environment's apply did not finish (see `paved plan`)".to_string())
            }),
            Err(e) => Some(e.to_string()),
        };
        let Some(why) = failure else {
            self.mark_healthy(&deployment).await?;
            let deployment = self.deployment(&deployment).await?;
            return Ok(DeployResult { deployment, created: true, restored: None });
        };
        self.fail_deployment(&deployment, &why, caller).await?;
        let target = format!("Service/{}@{}", deployment.service, deployment.environment);
        // Without the failed deployment, the plan asks for the previous one again.
        let again = self.apply_environment(&env, caller, run, progress).await;
        let restored = self.current_of(&env, &deployment.service).await?;
        if again.as_ref().is_ok_and(|r| r.succeeded()) {
            let to = restored
                .as_ref()
                .map_or("the Score image".to_string(), |d| format!("#{} ({})", d.number, short(&d.artifact)));
            let reason = format!("{why}; rolled back to {to}");
            self.store
                .set_deployment_status(
                    &deployment,
                    &[DeploymentStatus::Failed],
                    DeploymentStatus::RolledBack,
                    Some(&reason),
                    self.clock.now(),
                )
                .await?;
            self.record(
                caller,
                "deployment.rollback",
                target,
                AuditOutcome::Succeeded,
                None,
                serde_json::json!({"number": deployment.number, "to": to}),
            )
            .await?;
        }
        let deployment = self.deployment(&deployment).await?;
        Ok(DeployResult { deployment, created: true, restored })
    }

    /// Marks a deployment that was pending or rolling out failed, with why, in the audit log too.
    async fn fail_deployment(&self, deployment: &Deployment, why: &str, caller: &Caller) -> Result<(), ControlError> {
        let from = [DeploymentStatus::Pending, DeploymentStatus::RollingOut];
        self.store
            .set_deployment_status(deployment, &from, DeploymentStatus::Failed, Some(why), self.clock.now())
            .await?;
        let target = format!("Service/{}@{}", deployment.service, deployment.environment);
        let details = serde_json::json!({"number": deployment.number, "reason": why});
        self.record(caller, "deployment.fail", target, AuditOutcome::Failed, Some(deployment.artifact.clone()), details)
            .await
    }

    /// A cluster environment's rollout: one commit of its tree with the
    /// deployment in it. Argo CD applies it; its notification (or none)
    /// decides health. A delivery that fails leaves the deployment `failed`
    /// with git's reason, and nothing committed.
    async fn deliver_deployment(
        &self,
        catalog: &paved_catalog::Catalog,
        deployment: Deployment,
        caller: &Caller,
    ) -> Result<DeployResult, ControlError> {
        let reason = crate::gitops::DeliveryReason {
            operation: "deploy".into(),
            summary: Some(format!("{} {}", deployment.service, short(&deployment.artifact))),
            deployment: Some(deployment.number),
            service: Some(deployment.service.clone()),
        };
        if let Err(e) = self.deliver(catalog, &deployment.environment, &reason, caller, false).await {
            self.fail_deployment(&deployment, &e.to_string(), caller).await?;
        }
        let deployment = self.deployment(&deployment).await?;
        Ok(DeployResult { deployment, created: true, restored: None })
    }

    async fn apply_environment(
        &self,
        environment: &str,
        caller: &Caller,
        run: &RunOptions,
        progress: Arc<dyn Progress>,
    ) -> Result<paved_engine::Report, ControlError> {
        let catalog = self.catalog(caller.request.clone());
        let (desired, _) = self.desired_graph(&catalog, environment).await?;
        let cancel = Arc::new(AtomicBool::new(false));
        self.run(&desired, run, caller, cancel, progress, &crate::Silent).await
    }

    async fn deployment(&self, d: &Deployment) -> Result<Deployment, ControlError> {
        let filter = DeploymentFilter { environment: Some(d.environment.clone()), service: Some(d.service.clone()) };
        Ok(self
            .store
            .deployments(&filter)
            .await?
            .into_iter()
            .find(|x| x.number == d.number)
            .unwrap_or_else(|| d.clone()))
    }

    pub(crate) async fn current_of(
        &self,
        environment: &str,
        service: &str,
    ) -> Result<Option<Deployment>, ControlError> {
        let filter = DeploymentFilter { environment: Some(environment.into()), service: Some(service.into()) };
        let all = self.store.deployments(&filter).await?;
        Ok(current(&all).get(service).map(|d| (*d).clone()))
    }

    /// Marks a deployment healthy and the healthy ones before it superseded.
    pub(crate) async fn mark_healthy(&self, d: &Deployment) -> Result<(), ControlError> {
        let now = self.clock.now();
        let from = [DeploymentStatus::Pending, DeploymentStatus::RollingOut];
        if !self.store.set_deployment_status(d, &from, DeploymentStatus::Healthy, None, now).await? {
            return Ok(());
        }
        let filter = DeploymentFilter { environment: Some(d.environment.clone()), service: Some(d.service.clone()) };
        for earlier in self.store.deployments(&filter).await?.iter().filter(|x| x.number < d.number) {
            let from = [DeploymentStatus::Healthy, DeploymentStatus::Pending, DeploymentStatus::RollingOut];
            let status = if earlier.status == DeploymentStatus::Healthy {
                DeploymentStatus::Superseded
            } else {
                DeploymentStatus::Failed
            };
            let reason =
                (status == DeploymentStatus::Failed).then(|| format!("replaced by #{} before it finished", d.number));
            self.store.set_deployment_status(earlier, &from, status, reason.as_deref(), now).await?;
        }
        Ok(())
    }

    /// After an apply that succeeded: deployments it finished rolling out
    /// (one interrupted by a crash, say) are healthy now.
    pub(crate) async fn settle(&self, environment: &str, report: &paved_engine::Report) -> Result<(), ControlError> {
        if !report.succeeded() {
            return Ok(());
        }
        let filter = DeploymentFilter { environment: Some(environment.into()), service: None };
        let deployments = self.store.deployments(&filter).await?;
        let applied = self.store.applied_nodes(environment).await?;
        for (service, d) in current(&deployments) {
            if !matches!(d.status, DeploymentStatus::Pending | DeploymentStatus::RollingOut) {
                continue;
            }
            let node = format!("local.workload/{service}");
            let runs =
                applied.iter().find(|n| n.node_id == node).and_then(|n| n.node["properties"]["artifact"].as_str());
            if runs == Some(d.artifact.as_str()) {
                self.mark_healthy(d).await?;
            }
        }
        Ok(())
    }

    /// The promotion order: an environment of a stage accepts only digests
    /// already healthy in the stage before. The order is the blueprint's
    /// (`spec.rollout.stages`, environment types) and always holds; a
    /// service may only narrow it (`paved.dev/stages: dev,staging,production`,
    /// environment names: its environment then also needs the digest healthy
    /// in the one it names before). An annotation that puts the blueprint's
    /// stages in another order is refused: a spec cannot loosen a gate.
    async fn check_stage(
        &self,
        catalog: &paved_catalog::Catalog,
        c: &EnvironmentContext,
        service: &str,
        digest: &str,
    ) -> Result<(), DeployRefusal> {
        let environment = &c.environment.metadata.name;
        let stages = &c.blueprint.spec.rollout.stages;
        let order = stages.iter().map(|t| t.as_str()).collect::<Vec<_>>().join(" → ");
        let listed = catalog
            .list(Some(paved_model::Kind::Environment))
            .await
            .map_err(|e| DeployRefusal::Bundle(e.to_string()))?;
        let type_of: BTreeMap<String, EnvType> = listed
            .into_iter()
            .filter_map(|o| match o.spec {
                paved_model::Spec::Environment(e) => Some((e.metadata.name, e.spec.env_type)),
                _ => None,
            })
            .collect();
        // The service's own order may only narrow it: never reorder the blueprint's.
        let workload = c.services.iter().find(|w| w.metadata.name == service);
        let by_service: Option<Vec<String>> = workload
            .and_then(|w| w.annotation(ANNOTATION_STAGES))
            .map(|s| s.split(',').map(|x| x.trim().to_string()).filter(|x| !x.is_empty()).collect());
        let named = by_service.unwrap_or_default();
        let rank = |env: &String| type_of.get(env).and_then(|t| stages.iter().position(|s| s == t));
        if let Some(pair) = named.windows(2).find(|p| matches!((rank(&p[0]), rank(&p[1])), (Some(a), Some(b)) if a > b))
        {
            return Err(DeployRefusal::StagesReordered {
                service: service.into(),
                first: pair[0].clone(),
                second: pair[1].clone(),
                order,
            });
        }
        // The blueprint's gate, whatever the service says.
        if let Some(i) = stages.iter().position(|t| *t == c.environment.spec.env_type)
            && i > 0
        {
            let before: EnvType = stages[i - 1];
            let names: Vec<String> = type_of.iter().filter(|(_, t)| **t == before).map(|(n, _)| n.clone()).collect();
            self.healthy_in(service, environment, digest, &names, format!("a {} environment", before.as_str()), &order)
                .await?;
        }
        // …and then its own gate.
        let Some(i) = named.iter().position(|s| s == environment) else { return Ok(()) };
        if i == 0 {
            return Ok(());
        }
        self.healthy_in(
            service,
            environment,
            digest,
            &named[i - 1..i],
            format!("`{}`", named[i - 1]),
            &named.join(" → "),
        )
        .await
    }

    /// Ok when `digest` of `service` was healthy in one of `candidates`;
    /// else the refusal naming `previous` and the `order`.
    async fn healthy_in(
        &self,
        service: &str,
        environment: &str,
        digest: &str,
        candidates: &[String],
        previous: String,
        order: &str,
    ) -> Result<(), DeployRefusal> {
        for env in candidates {
            let filter = DeploymentFilter { environment: Some(env.clone()), service: Some(service.into()) };
            let deployments =
                self.store.deployments(&filter).await.map_err(|e| DeployRefusal::Bundle(e.to_string()))?;
            if deployments.iter().any(|d| d.artifact == digest && d.status.was_healthy()) {
                return Ok(());
            }
        }
        Err(DeployRefusal::NotPromoted {
            service: service.into(),
            environment: environment.into(),
            digest: short(digest),
            previous,
            order: order.into(),
        })
    }

    /// Records a rollback: a new deployment of the artifact of an earlier
    /// healthy one (`to`, or the last healthy one before the current).
    pub async fn record_rollback(
        &self,
        service: &str,
        environment: &str,
        to: Option<i64>,
        request_id: &str,
        caller: &Caller,
    ) -> Result<(Deployment, bool), ControlError> {
        let filter = DeploymentFilter { environment: Some(environment.into()), service: Some(service.into()) };
        let all = self.store.deployments(&filter).await?;
        let current = current(&all).get(service).map(|d| d.number).unwrap_or(i64::MAX);
        let target = match to {
            Some(n) => {
                let bad = |why: &str| DeployRefusal::BadRollbackTarget {
                    service: service.into(),
                    environment: environment.into(),
                    number: n,
                    why: why.into(),
                };
                let d =
                    all.iter().find(|d| d.number == n).ok_or_else(|| bad("does not exist (see `paved history`)"))?;
                if !d.status.was_healthy() {
                    return Err(bad(&format!("never ran healthy (it is {})", d.status)).into());
                }
                d
            }
            None => all
                .iter()
                .rev()
                .find(|d| d.number < current && d.status.was_healthy() && d.status != DeploymentStatus::Healthy)
                .ok_or_else(|| DeployRefusal::NothingToRollBackTo {
                    service: service.into(),
                    environment: environment.into(),
                })?,
        };
        let point = paved_model::DecisionPoint::Rollback;
        self.gate_deployment(caller, point, environment, service, &target.artifact, None).await?;
        let new = NewDeployment {
            environment: environment.into(),
            service: service.into(),
            artifact: target.artifact.clone(),
            strategy: target.strategy.clone(),
            soak_ms: target.soak_ms,
            ready_timeout_ms: target.ready_timeout_ms,
            actor: caller.actor.clone(),
            request_id: request_id.into(),
            origin: Some(caller.request.origin.clone()).filter(|o| !o.is_empty()),
            at: self.clock.now(),
        };
        let event = self
            .event(caller, "deployment.create", format!("Service/{service}@{environment}"), AuditOutcome::Succeeded)
            .with_after(&target.artifact, serde_json::json!({"rollbackTo": target.number, "strategy": new.strategy}));
        Ok(self.store.create_deployment(&new, &event).await?)
    }

    /// Records a promotion: a deployment to `to` of the digest healthy in `from`.
    pub async fn record_promotion(
        &self,
        service: &str,
        from: &str,
        to: &str,
        request_id: &str,
        caller: &Caller,
    ) -> Result<(Deployment, bool), ControlError> {
        let source = self.current_of(from, service).await?;
        let Some(source) = source.filter(|d| d.status == DeploymentStatus::Healthy) else {
            let current = self.current_of(from, service).await?;
            let refusal = DeployRefusal::SourceUnhealthy {
                service: service.into(),
                environment: from.into(),
                current: current.map_or(" (it was never deployed there)".into(), |d| {
                    format!(" (#{} on {} is {})", d.number, short(&d.artifact), d.status)
                }),
            };
            let details = serde_json::json!({"from": from, "reason": refusal.to_string()});
            self.record(
                caller,
                "deployment.promote",
                format!("Service/{service}@{to}"),
                AuditOutcome::Denied,
                None,
                details,
            )
            .await?;
            return Err(refusal.into());
        };
        let req = DeployRequest {
            service: service.into(),
            environment: to.into(),
            artifact: source.artifact.clone(),
            strategy: Strategy::parse(&source.strategy),
            soak: None,
            ready_timeout: None,
            request_id: request_id.into(),
        };
        self.record_deployment_as(&req, caller, paved_model::DecisionPoint::Promote, Some(from)).await
    }

    /// Deployments of a service in an environment, oldest first.
    pub async fn history(&self, service: &str, environment: &str) -> Result<Vec<Deployment>, ControlError> {
        let filter = DeploymentFilter { environment: Some(environment.into()), service: Some(service.into()) };
        Ok(self.store.deployments(&filter).await?)
    }

    /// The services × environments matrix: what should run where, since
    /// when, by whom, and how it is. Services never deployed by digest show
    /// the Score image their applied workload runs.
    pub async fn status_matrix(&self) -> Result<Vec<StatusRow>, ControlError> {
        let deployments = self.store.deployments(&DeploymentFilter::default()).await?;
        let mut by_env: BTreeMap<&str, Vec<Deployment>> = BTreeMap::new();
        for d in &deployments {
            by_env.entry(d.environment.as_str()).or_default().push(d.clone());
        }
        let artifacts: BTreeMap<String, Artifact> =
            self.store.artifacts(None).await?.into_iter().map(|a| (a.digest.clone(), a)).collect();
        let catalog = self.catalog(RequestContext::default());
        let workloads: Vec<paved_model::Workload> = catalog
            .list(Some(paved_model::Kind::Service))
            .await?
            .into_iter()
            .filter_map(|o| if let paved_model::Spec::Service(w) = o.spec { Some(w) } else { None })
            .collect();
        let mut rows = Vec::new();
        for o in catalog.list(Some(paved_model::Kind::Environment)).await? {
            let paved_model::Spec::Environment(e) = o.spec else { continue };
            let env = e.metadata.name.as_str();
            let list = by_env.remove(env).unwrap_or_default();
            let currents = current(&list);
            let mut services: BTreeMap<String, StatusRow> = BTreeMap::new();
            for n in self.store.applied_nodes(env).await? {
                let Some(service) = n.node_id.strip_prefix("local.workload/") else { continue };
                let image = n.node["properties"]["containers"]
                    .as_object()
                    .and_then(|c| c.values().next())
                    .and_then(|c| c["image"].as_str())
                    .unwrap_or_default();
                services.insert(
                    service.into(),
                    StatusRow {
                        service: service.into(),
                        environment: env.into(),
                        number: None,
                        artifact: n.node["properties"]["artifact"].as_str().unwrap_or(image).to_string(),
                        commit: None,
                        since: Some(n.updated_at),
                        by: None,
                        health: "applied".into(),
                        last_failed: None,
                        blocked: None,
                    },
                );
            }
            for (service, d) in &currents {
                let a = artifacts.get(&d.artifact);
                services.insert(
                    (*service).into(),
                    StatusRow {
                        service: (*service).into(),
                        environment: env.into(),
                        number: Some(d.number),
                        artifact: d.artifact.clone(),
                        commit: a.and_then(|a| a.commit.clone()),
                        since: Some(d.finished_at.unwrap_or(d.created_at)),
                        by: Some(d.actor.clone()),
                        health: match d.status {
                            DeploymentStatus::Superseded => DeploymentStatus::Healthy.to_string(),
                            s => s.to_string(),
                        },
                        last_failed: None,
                        blocked: None,
                    },
                );
            }
            for d in &list {
                let latest = list.iter().filter(|x| x.service == d.service).map(|x| x.number).max();
                if Some(d.number) == latest
                    && !d.status.is_wanted()
                    && let Some(row) = services.get_mut(&d.service)
                {
                    row.last_failed = Some(d.number);
                }
            }
            // Recorded but never applied here: listed all the same, so the matrix
            // shows what exists before anything runs (the console does the same).
            for w in &workloads {
                services.entry(w.metadata.name.clone()).or_insert_with(|| StatusRow {
                    service: w.metadata.name.clone(),
                    environment: env.into(),
                    number: None,
                    artifact: w.containers.values().next().map(|c| c.image.clone()).unwrap_or_default(),
                    commit: None,
                    since: None,
                    by: None,
                    health: NOT_APPLIED.into(),
                    last_failed: None,
                    blocked: None,
                });
            }
            for (service, why) in self.blocked_at_last_apply(env).await? {
                if let Some(row) = services.get_mut(&service) {
                    row.blocked = Some(why);
                }
            }
            rows.extend(services.into_values());
        }
        rows.sort_by(|a, b| (&a.service, &a.environment).cmp(&(&b.service, &b.environment)));
        Ok(rows)
    }

    /// The services the environment's last apply left out, with why (from
    /// its `environment.apply` audit event).
    async fn blocked_at_last_apply(&self, environment: &str) -> Result<BTreeMap<String, String>, ControlError> {
        let filter = paved_store::AuditFilter {
            action: Some("environment.apply".into()),
            target: Some(format!("Environment/{environment}")),
            newest_first: true,
            limit: 1,
            ..Default::default()
        };
        let last = self.store.audit_events(&filter).await?;
        let blocked = last.first().and_then(|e| e.event.details["blocked"].as_object().cloned()).unwrap_or_default();
        Ok(blocked
            .into_iter()
            .map(|(service, reasons)| {
                let reasons: Vec<&str> = reasons.as_array().into_iter().flatten().filter_map(|r| r.as_str()).collect();
                (service, reasons.join("; "))
            })
            .collect())
    }

    /// DORA figures of production environments over the last `window_days`, per service and team.
    pub async fn dora(&self, window_days: u32) -> Result<Vec<crate::Dora>, ControlError> {
        let catalog = self.catalog(RequestContext::default());
        let mut production = std::collections::BTreeSet::new();
        for o in catalog.list(Some(paved_model::Kind::Environment)).await? {
            if let paved_model::Spec::Environment(e) = o.spec
                && e.spec.env_type == EnvType::Production
            {
                production.insert(e.metadata.name);
            }
        }
        let mut owners = BTreeMap::new();
        for o in catalog.list(Some(paved_model::Kind::Service)).await? {
            if let paved_model::Spec::Service(w) = o.spec
                && let Some(team) = w.annotation(paved_model::score::ANNOTATION_OWNER)
            {
                owners.insert(w.metadata.name.clone(), team.to_string());
            }
        }
        let deployments = self.store.deployments(&DeploymentFilter::default()).await?;
        let artifacts: BTreeMap<String, Artifact> =
            self.store.artifacts(None).await?.into_iter().map(|a| (a.digest.clone(), a)).collect();
        let history = crate::dora::History {
            deployments: &deployments,
            artifacts: &artifacts,
            environments: &production,
            owners: &owners,
        };
        Ok(crate::dora::dora(&history, self.clock.now(), window_days))
    }
}

trait WithAfter {
    fn with_after(self, digest: &str, details: serde_json::Value) -> Self;
}

impl WithAfter for NewAuditEvent {
    fn with_after(mut self, digest: &str, details: serde_json::Value) -> Self {
        self.after = Some(digest.to_string());
        self.details = details;
        self
    }
}

/// The error a node's outcome reports, if it did not succeed.
fn failure_of(outcome: &Outcome) -> Option<String> {
    match outcome {
        Outcome::Failed { error, .. } => Some(error.clone()),
        Outcome::Skipped { because } => Some(format!("skipped: {because}")),
        Outcome::NotStarted => Some("the apply was cancelled before it started".into()),
        _ => None,
    }
}

/// The health of a service recorded but never applied in an environment.
pub const NOT_APPLIED: &str = "not-applied";

/// The first seven characters of a commit, as people read it (by character:
/// a commit string is whatever a client sent, not always hex).
pub fn short_commit(commit: &str) -> String {
    commit.chars().take(7).collect()
}

/// `sha256:0123456789ab`: the digest as people read it.
pub fn short(digest: &str) -> String {
    digest.chars().take(19).collect()
}
