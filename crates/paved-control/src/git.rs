//! Git flow: what a GitHub delivery asks of paved, and the loop that makes
//! it so.
//!
//! A delivery is turned into desired state at once (a preview Environment
//! recorded, marked closed, or a deployment waiting for the artifact of a
//! commit); [`Control::converge_git`] then applies, deploys and removes until
//! that state runs. The webhook answers fast, a crash loses nothing (the
//! next pass picks up what was recorded), and a redelivery records the
//! same state again, which changes nothing.
//!
//! Payloads are read leniently: only the fields paved uses are looked at,
//! and any of them may be missing or null.

use crate::deploy::is_digest;
use crate::{Caller, Control, ControlError, RunOptions};
use futures_util::StreamExt;
use paved_model::score::{ANNOTATION_BRANCHES, ANNOTATION_OWNER, ANNOTATION_REPOSITORY};
use paved_model::{EnvType, Kind, Spec};
use paved_store::{AuditOutcome, PendingDeployment, RequestContext};
use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::Arc;

/// Previews applied or removed at the same time by one pass.
const PREVIEWS_AT_ONCE: usize = 4;

/// Labels paved puts on a preview Environment.
pub const LABEL_PULL_REQUEST: &str = "paved.dev/pull-request";
pub const LABEL_HEAD: &str = "paved.dev/head";
pub const LABEL_EXPIRES_AT: &str = "paved.dev/expires-at";
pub const LABEL_CLOSED: &str = "paved.dev/closed";
/// The environment a preview was opened from: on a cloud account, the one
/// whose network, cluster and load balancer it shares.
pub const LABEL_PREVIEW_OF: &str = "paved.dev/preview-of";

/// What a delivery asks, as far as paved is concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GitEvent {
    Ping,
    PullRequest {
        action: String,
        number: u64,
        repository: String,
        head: Option<String>,
        author: Option<String>,
    },
    Push {
        repository: String,
        branch: Option<String>,
        commit: Option<String>,
    },
    /// An event paved does not act on.
    Other(String),
}

/// Why a delivery could not be turned into desired state.
#[derive(Debug, thiserror::Error)]
pub enum GitRefusal {
    #[error("the `{event}` delivery lacks {field}")]
    Missing { event: String, field: &'static str },
    #[error(
        "team `{team}` already has {open} open preview(s), its limit (blueprint `{blueprint}`, spec.preview.maxPerTeam); close a pull request or raise the limit"
    )]
    Quota { team: String, open: usize, blueprint: String },
    #[error("no blueprint offers previews to a development environment: add `spec.preview` to the blueprint of one")]
    NoPreviewBlueprint,
}

/// Reads a delivery (the `X-GitHub-Event` name and the JSON body).
pub fn parse_event(event: &str, body: &Value) -> Result<GitEvent, GitRefusal> {
    let repository = || {
        body["repository"]["full_name"]
            .as_str()
            .map(str::to_string)
            .ok_or(GitRefusal::Missing { event: event.into(), field: "repository.full_name" })
    };
    Ok(match event {
        "ping" => GitEvent::Ping,
        "pull_request" => {
            let pr = &body["pull_request"];
            GitEvent::PullRequest {
                action: body["action"]
                    .as_str()
                    .ok_or(GitRefusal::Missing { event: event.into(), field: "action" })?
                    .to_string(),
                number: body["number"]
                    .as_u64()
                    .or_else(|| pr["number"].as_u64())
                    .ok_or(GitRefusal::Missing { event: event.into(), field: "number" })?,
                repository: repository()?,
                head: pr["head"]["sha"].as_str().map(str::to_string),
                author: pr["user"]["login"].as_str().or_else(|| body["sender"]["login"].as_str()).map(str::to_string),
            }
        }
        "push" => GitEvent::Push {
            repository: repository()?,
            branch: body["ref"].as_str().and_then(|r| r.strip_prefix("refs/heads/")).map(str::to_string),
            commit: body["after"]
                .as_str()
                .filter(|sha| !sha.bytes().all(|b| b == b'0') && body["deleted"].as_bool() != Some(true))
                .map(str::to_string),
        },
        other => GitEvent::Other(other.to_string()),
    })
}

/// `pr-<number>-<repo>`, a valid environment name.
/// The pull request a preview is opened for.
#[derive(Clone, Copy)]
struct PullRequest<'a> {
    number: u64,
    repository: &'a str,
    head: &'a str,
    author: Option<&'a str>,
}

pub fn preview_name(number: u64, repository: &str) -> String {
    let repo = repository.rsplit('/').next().unwrap_or(repository).to_ascii_lowercase();
    let mut clean: String = repo.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '-' }).collect();
    while clean.contains("--") {
        clean = clean.replace("--", "-");
    }
    let mut name = format!("pr-{number}-{}", clean.trim_matches('-'));
    name.truncate(63);
    name.trim_end_matches('-').to_string()
}

/// Whether a service's `paved.dev/repository` names `full_name` (`owner/repo`).
fn same_repository(annotation: &str, full_name: &str) -> bool {
    let a = annotation.trim_end_matches('/').trim_end_matches(".git").to_ascii_lowercase();
    let f = full_name.to_ascii_lowercase();
    a == f || a.ends_with(&format!("/{f}")) || a.ends_with(&format!(":{f}"))
}

/// What one pass of [`Control::converge_git`] did, for logs and notifications.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GitNotice {
    /// `preview.ready`, `preview.failed`, `preview.deleted`, `deployment.healthy`, `deployment.failed`.
    pub event: String,
    pub environment: String,
    /// `owner/repo#N` for previews.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pull_request: Option<String>,
    /// The environment's route URLs.
    pub urls: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

impl Control {
    fn git_caller(&self, request: &RequestContext) -> Caller {
        Caller { actor: "paved-git".into(), request: request.clone() }
    }

    /// Records that `service` in `environment` should run the artifact of
    /// `commit` once it is pushed (the latest delivery wins).
    async fn await_artifact(
        &self,
        environment: &str,
        service: &str,
        commit: &str,
        delivery: &str,
    ) -> Result<(), ControlError> {
        let pending = PendingDeployment {
            environment: environment.into(),
            service: service.into(),
            commit: commit.into(),
            request_id: format!("git:{delivery}:{service}"),
            created_at: self.clock.now(),
        };
        Ok(self.store.put_pending_deployment(&pending).await?)
    }

    /// Turns a delivery into desired state; returns what it did, in words.
    pub async fn handle_git(
        &self,
        event: &GitEvent,
        delivery: &str,
        request: &RequestContext,
    ) -> Result<String, ControlError> {
        let catalog = self.catalog(request.clone());
        let services: Vec<paved_model::Workload> = catalog
            .list(Some(Kind::Service))
            .await?
            .into_iter()
            .filter_map(|o| if let Spec::Service(w) = o.spec { Some(w) } else { None })
            .collect();
        let of_repo = |repository: &str| -> Vec<&paved_model::Workload> {
            services
                .iter()
                .filter(|w| w.annotation(ANNOTATION_REPOSITORY).is_some_and(|a| same_repository(a, repository)))
                .collect()
        };
        match event {
            GitEvent::Ping => Ok("pong".into()),
            GitEvent::Other(name) => Ok(format!("event `{name}` ignored")),
            GitEvent::Push { repository, branch, commit } => {
                let (Some(branch), Some(commit)) = (branch, commit) else {
                    return Ok("not a branch update: ignored".into());
                };
                let mut asked = Vec::new();
                for w in of_repo(repository) {
                    let map = w.annotation(ANNOTATION_BRANCHES).unwrap_or_default();
                    for (b, env) in map.split(',').filter_map(|pair| pair.trim().split_once('=')) {
                        if b.trim() != branch {
                            continue;
                        }
                        let env = env.trim();
                        // A service's own annotation cannot open production to every push: only a
                        // policy can (`branch-deploy`), and the deployment then still passes the
                        // promotion order when its artifact arrives, like a manual promote.
                        if let Ok(o) = catalog.get(Kind::Environment, env).await
                            && let Spec::Environment(e) = o.spec
                            && e.spec.env_type == paved_model::EnvType::Production
                        {
                            let caller = self.git_caller(request);
                            let push = (repository.as_str(), branch.as_str(), commit.as_str());
                            let reason = match self.gate_branch_deploy(&caller, env, &w.metadata.name, push).await? {
                                Ok(grant) => {
                                    self.await_artifact(env, &w.metadata.name, commit, delivery).await?;
                                    asked.push(format!("{} to {env}, allowed by {grant}", w.metadata.name));
                                    continue;
                                }
                                Err(reason) => reason,
                            };
                            let why = format!("`{ANNOTATION_BRANCHES}: {branch}={env}` refused: {reason}");
                            let details = serde_json::json!({"commit": commit, "branch": branch, "reason": why});
                            let target = format!("Service/{}@{env}", w.metadata.name);
                            self.record(&caller, "deployment.create", target, AuditOutcome::Denied, None, details)
                                .await?;
                            asked.push(why);
                            continue;
                        }
                        self.await_artifact(env, &w.metadata.name, commit, delivery).await?;
                        asked.push(format!("{} to {env}", w.metadata.name));
                    }
                }
                Ok(if asked.is_empty() {
                    format!("no service of {repository} deploys branch `{branch}`")
                } else {
                    format!("deploying {commit} ({})", asked.join(", "))
                })
            }
            GitEvent::PullRequest { action, number, repository, head, author } => {
                let ours = of_repo(repository);
                if ours.is_empty() {
                    return Ok(format!(
                        "no service names repository {repository} (`{ANNOTATION_REPOSITORY}`): ignored"
                    ));
                }
                let name = preview_name(*number, repository);
                match action.as_str() {
                    "opened" | "reopened" | "synchronize" => {
                        let head = head.clone().ok_or(GitRefusal::Missing {
                            event: "pull_request".into(),
                            field: "pull_request.head.sha",
                        })?;
                        let caller = self.git_caller(request);
                        let pr = PullRequest { number: *number, repository, head: &head, author: author.as_deref() };
                        self.open_preview(&catalog, &caller, &name, &pr, &ours).await?;
                        for w in &ours {
                            self.await_artifact(&name, &w.metadata.name, &head, delivery).await?;
                        }
                        Ok(format!("preview {name} at {head}"))
                    }
                    "closed" => {
                        if self.close_preview(&catalog, &name).await? {
                            Ok(format!("preview {name} closed"))
                        } else {
                            Ok(format!("no preview {name}: nothing to close"))
                        }
                    }
                    other => Ok(format!("pull_request `{other}` ignored")),
                }
            }
        }
    }

    /// Records (or updates) the preview Environment of a pull request
    /// (once the policies allow it, at the `preview` decision point).
    #[allow(clippy::too_many_arguments)]
    async fn open_preview(
        &self,
        catalog: &paved_catalog::Catalog,
        caller: &Caller,
        name: &str,
        pr: &PullRequest<'_>,
        services: &[&paved_model::Workload],
    ) -> Result<(), ControlError> {
        let PullRequest { number, repository, head, author } = *pr;
        let environments: Vec<paved_model::Environment> = catalog
            .list(Some(Kind::Environment))
            .await?
            .into_iter()
            .filter_map(|o| if let Spec::Environment(e) = o.spec { Some(e) } else { None })
            .collect();
        // The template: the first development environment whose blueprint offers previews.
        let mut template = None;
        for e in environments.iter().filter(|e| e.spec.env_type == EnvType::Development) {
            if let Ok(Spec::Blueprint(bp)) = catalog.get(Kind::Blueprint, &e.spec.blueprint.0).await.map(|o| o.spec)
                && let Some(preview) = bp.spec.preview.clone()
            {
                template = Some((e.clone(), bp, preview));
                break;
            }
        }
        let Some((template, blueprint, preview)) = template else { return Err(GitRefusal::NoPreviewBlueprint.into()) };
        let teams: Vec<paved_model::Team> = catalog
            .list(Some(Kind::Team))
            .await?
            .into_iter()
            .filter_map(|o| if let Spec::Team(t) = o.spec { Some(t) } else { None })
            .collect();
        // The author's team (a member `user:LOGIN`), else the service's owner, else the template's.
        let team = author
            .and_then(|login| teams.iter().find(|t| t.spec.members.iter().any(|m| m.0 == format!("user:{login}"))))
            .map(|t| t.metadata.name.clone())
            .or_else(|| services.iter().find_map(|w| w.annotation(ANNOTATION_OWNER)).map(str::to_string))
            .unwrap_or_else(|| template.spec.owner.clone());
        let open = environments
            .iter()
            .filter(|e| e.spec.env_type == EnvType::Preview && e.spec.owner == team && e.metadata.name != name)
            .filter(|e| !e.metadata.labels.contains_key(LABEL_CLOSED))
            .count();
        if open >= preview.max_per_team as usize {
            return Err(GitRefusal::Quota { team, open, blueprint: blueprint.metadata.name.clone() }.into());
        }
        let ttl = preview.ttl.parse().unwrap_or(std::time::Duration::from_secs(72 * 3600));
        let expires = self.clock.now() + ttl;
        let expires = expires.format(&time::format_description::well_known::Rfc3339).unwrap_or_default();
        let doc = serde_json::json!({
            "apiVersion": paved_model::PAVED_API_VERSION,
            "kind": "Environment",
            "metadata": {
                "name": name,
                "description": format!("Preview of {repository}#{number}"),
                "labels": {
                    LABEL_PULL_REQUEST: format!("{repository}#{number}"),
                    LABEL_HEAD: head,
                    LABEL_EXPIRES_AT: expires,
                    LABEL_PREVIEW_OF: template.metadata.name,
                },
            },
            "spec": {
                "blueprint": template.spec.blueprint.0,
                "account": template.spec.account,
                "region": template.spec.region,
                "type": "preview",
                "owner": team,
                "ttl": preview.ttl.0,
            },
        });
        let provider = match catalog.get(Kind::CloudAccount, &template.spec.account).await.map(|o| o.spec) {
            Ok(Spec::CloudAccount(a)) => a.spec.provider.as_str().to_string(),
            _ => String::new(),
        };
        let preview_env = paved_policy::input::EnvironmentInput {
            name: name.into(),
            env_type: EnvType::Preview.to_string(),
            owner: team.clone(),
            ..paved_catalog::environment_input(&template, &provider)
        };
        self.gate_preview(caller, preview_env, &template.metadata.name, repository, number).await?;
        let source = paved_spec::SourceFile::new(format!("github:{repository}#{number}"), doc.to_string());
        catalog.apply(vec![source], vec![], "paved-git").await?;
        Ok(())
    }

    /// Marks a preview closed; the next pass destroys and deletes it.
    async fn close_preview(&self, catalog: &paved_catalog::Catalog, name: &str) -> Result<bool, ControlError> {
        let Ok(object) = catalog.get(Kind::Environment, name).await else { return Ok(false) };
        let Spec::Environment(mut e) = object.spec else { return Ok(false) };
        if e.spec.env_type != EnvType::Preview {
            return Ok(false);
        }
        e.metadata.labels.insert(LABEL_CLOSED.into(), "true".into());
        let doc = Spec::Environment(e).to_document();
        catalog
            .apply(vec![paved_spec::SourceFile::new(format!("github:{name}"), doc.to_string())], vec![], "paved-git")
            .await?;
        Ok(true)
    }

    /// Brings one preview to what its spec says: gone when closed or expired,
    /// else applied in full.
    #[allow(clippy::too_many_arguments)]
    async fn converge_preview(
        &self,
        e: &paved_model::Environment,
        now: time::OffsetDateTime,
        pending: &[PendingDeployment],
        run: &RunOptions,
        caller: &Caller,
        catalog: &paved_catalog::Catalog,
        progress: Arc<dyn paved_engine::Progress>,
    ) -> Result<Option<GitNotice>, ControlError> {
        let name = e.metadata.name.clone();
        let pull_request = e.metadata.labels.get(LABEL_PULL_REQUEST).cloned();
        let expired = e
            .metadata
            .labels
            .get(LABEL_EXPIRES_AT)
            .and_then(|t| time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).ok())
            .is_some_and(|t| t <= now);
        let closed = e.metadata.labels.contains_key(LABEL_CLOSED);
        let notice = |event: &str, urls: BTreeMap<String, String>, detail: Option<String>| GitNotice {
            event: event.into(),
            environment: name.clone(),
            pull_request: pull_request.clone(),
            urls,
            detail,
        };
        let cancel = Arc::new(std::sync::atomic::AtomicBool::new(false));
        if closed || expired {
            let graph = self.empty_graph(&name).await?;
            // A cluster preview's manifests leave its repository first, so
            // Argo CD removes the workloads before their database goes.
            if let Err(err) = self.deliver_after_run(&graph, caller).await {
                return Ok(Some(notice("preview.failed", BTreeMap::new(), Some(err.to_string()))));
            }
            return Ok(Some(match self.run(&graph, run, caller, cancel, progress, &crate::Silent).await {
                Ok(report) if report.succeeded() => {
                    for p in pending.iter().filter(|p| p.environment == name) {
                        self.store.delete_pending_deployment(p).await?;
                    }
                    self.delete_spec(catalog, Kind::Environment, &name, "paved-git", None).await?;
                    let why = if closed { "pull request closed" } else { "time to live expired" };
                    notice("preview.deleted", BTreeMap::new(), Some(why.into()))
                }
                Ok(_) => notice("preview.failed", BTreeMap::new(), Some("its destroy did not finish".into())),
                Err(err) => notice("preview.failed", BTreeMap::new(), Some(err.to_string())),
            }));
        }
        // Not applied yet, or only in part (a crash during creation): apply.
        let (desired, _) = self.desired_graph(catalog, &name).await?;
        let applied: std::collections::BTreeSet<String> =
            self.store.applied_nodes(&name).await?.into_iter().map(|n| n.node_id).collect();
        if !desired.nodes.keys().any(|id| !applied.contains(id)) {
            return Ok(None);
        }
        let result = self.run(&desired, run, caller, cancel, progress, &crate::Silent).await;
        let urls: BTreeMap<String, String> = self.urls(&name).await?.into_iter().collect();
        Ok(Some(match result {
            // A cluster preview's namespace is one commit to its repository.
            Ok(report) if report.succeeded() => match self.deliver_after_run(&desired, caller).await {
                Ok(_) => notice("preview.ready", urls, None),
                Err(err) => notice("preview.failed", urls, Some(err.to_string())),
            },
            Ok(_) => notice("preview.failed", urls, Some("some resources failed".into())),
            Err(err) => notice("preview.failed", urls, Some(err.to_string())),
        }))
    }

    /// One pass: removes closed and expired previews (and what a crash left
    /// of them), applies previews not applied yet, and starts the
    /// deployments whose artifacts have arrived. Returns what it did.
    pub async fn converge_git(
        &self,
        run: &RunOptions,
        progress: Arc<dyn paved_engine::Progress>,
    ) -> Result<Vec<GitNotice>, ControlError> {
        let request = RequestContext {
            request_id: format!("git-{}", self.clock.now().unix_timestamp_nanos()),
            origin: "paved-git".into(),
        };
        let caller = self.git_caller(&request);
        let catalog = self.catalog(request.clone());
        let now = self.clock.now();
        let mut notices = Vec::new();
        let previews: Vec<paved_model::Environment> = catalog
            .list(Some(Kind::Environment))
            .await?
            .into_iter()
            .filter_map(|o| if let Spec::Environment(e) = o.spec { Some(e) } else { None })
            .filter(|e| e.spec.env_type == EnvType::Preview && e.metadata.labels.contains_key(LABEL_PULL_REQUEST))
            .collect();
        let pending = self.store.pending_deployments().await?;
        // Previews converge side by side (each under its own environment lock).
        let mut passes = Vec::with_capacity(previews.len());
        for e in &previews {
            passes.push(self.converge_preview(e, now, &pending, run, &caller, &catalog, progress.clone()));
        }
        let done: Vec<Result<Option<GitNotice>, ControlError>> =
            futures_util::stream::iter(passes).buffer_unordered(PREVIEWS_AT_ONCE).collect().await;
        for notice in done {
            notices.extend(notice?);
        }
        // Deployments waiting for their artifact.
        for p in pending {
            if catalog.get(Kind::Environment, &p.environment).await.is_err() {
                self.store.delete_pending_deployment(&p).await?;
                continue;
            }
            let artifacts = self.store.artifacts(Some(&p.service)).await?;
            let Some(artifact) = artifacts.iter().find(|a| {
                a.commit.as_deref().is_some_and(|c| c == p.commit || (c.len() >= 7 && p.commit.starts_with(c)))
            }) else {
                continue;
            };
            if !is_digest(&artifact.digest) {
                continue;
            }
            let req = crate::DeployRequest {
                service: p.service.clone(),
                environment: p.environment.clone(),
                artifact: artifact.digest.clone(),
                strategy: None,
                soak: None,
                ready_timeout: None,
                request_id: p.request_id.clone(),
            };
            let result = self.deploy(&req, &caller, run, progress.clone()).await;
            self.store.delete_pending_deployment(&p).await?;
            let urls: BTreeMap<String, String> = self.urls(&p.environment).await?.into_iter().collect();
            let pull_request = previews
                .iter()
                .find(|e| e.metadata.name == p.environment)
                .and_then(|e| e.metadata.labels.get(LABEL_PULL_REQUEST).cloned());
            let (event, detail) = match result {
                Ok(r) if r.deployment.status == paved_store::DeploymentStatus::Healthy => {
                    ("deployment.healthy", format!("{} #{} {}", p.service, r.deployment.number, artifact.digest))
                }
                Ok(r) => ("deployment.failed", r.deployment.reason.unwrap_or_default()),
                Err(e) => ("deployment.failed", e.to_string()),
            };
            notices.push(GitNotice {
                event: event.into(),
                environment: p.environment.clone(),
                pull_request,
                urls,
                detail: Some(detail),
            });
        }
        Ok(notices)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A real delivery from the reference fixtures (`PAVED_REFERENCE_DIR`, default
    /// `../shared/reference` beside the clone; `scripts/test` runs this test only where they exist).
    fn reference(name: &str) -> Value {
        let dir = std::env::var("PAVED_REFERENCE_DIR")
            .unwrap_or_else(|_| format!("{}/../../../shared/reference", env!("CARGO_MANIFEST_DIR")));
        let path = format!("{dir}/github-webhooks/{name}");
        let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}; set PAVED_REFERENCE_DIR"));
        serde_json::from_slice(&bytes).unwrap()
    }

    #[test]
    #[ignore = "reads the reference fixtures (PAVED_REFERENCE_DIR, default ../shared/reference)"]
    fn real_deliveries_are_read() {
        let opened = parse_event("pull_request", &reference("pull_request_opened.payload.json")).unwrap();
        assert_eq!(
            opened,
            GitEvent::PullRequest {
                action: "opened".into(),
                number: 2,
                repository: "Codertocat/Hello-World".into(),
                head: Some("ec26c3e57ca3a959ca5aad62de7213c562f8c821".into()),
                author: Some("Codertocat".into()),
            }
        );
        // A tag push is no branch update.
        let push = parse_event("push", &reference("push_payload.json")).unwrap();
        assert_eq!(push, GitEvent::Push { repository: "Codertocat/Hello-World".into(), branch: None, commit: None });
        assert_eq!(parse_event("ping", &reference("ping_payload.json")).unwrap(), GitEvent::Ping);
        assert_eq!(parse_event("star", &serde_json::json!({})).unwrap(), GitEvent::Other("star".into()));
    }

    #[test]
    fn missing_and_null_fields_are_tolerated_or_named() {
        // Only what paved needs is required.
        let minimal = serde_json::json!({"action": "closed", "number": 7, "pull_request": null,
            "repository": {"full_name": "acme/api", "owner": null}, "sender": null});
        let event = parse_event("pull_request", &minimal).unwrap();
        assert!(matches!(event, GitEvent::PullRequest { number: 7, head: None, author: None, .. }), "{event:?}");
        let err = parse_event("pull_request", &serde_json::json!({"action": "opened", "number": 1})).unwrap_err();
        assert!(err.to_string().contains("repository.full_name"), "{err}");
        let branch = parse_event(
            "push",
            &serde_json::json!({"ref": "refs/heads/main", "after": "abc", "repository": {"full_name": "a/b"}}),
        )
        .unwrap();
        assert_eq!(
            branch,
            GitEvent::Push { repository: "a/b".into(), branch: Some("main".into()), commit: Some("abc".into()) }
        );
    }

    #[test]
    fn preview_names_are_environment_names() {
        assert_eq!(preview_name(2, "Codertocat/Hello-World"), "pr-2-hello-world");
        assert_eq!(preview_name(12, "acme/api.v2__x"), "pr-12-api-v2-x");
        let long = preview_name(123456, &"a".repeat(100));
        assert!(long.len() <= 63 && !long.ends_with('-'), "{long}");
        assert!(same_repository("https://github.com/Codertocat/Hello-World.git", "Codertocat/Hello-World"));
        assert!(same_repository("git@github.com:acme/api", "acme/api"));
        assert!(!same_repository("https://github.com/acme/api-gateway", "acme/api"));
    }
}
