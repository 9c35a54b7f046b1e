//! Delivery through Git: an environment's rendered Kubernetes tree
//! (`paved-k8s`) committed to its account's GitOps repository, where Argo CD
//! in the cluster picks it up. paved never reaches the Kubernetes API.
//!
//! Contract of [`Control::deliver`]:
//!
//! * one delivery is at most **one commit** on the branch, touching only the
//!   environment's own files (`PATH/envs/ENV/…`, `PATH/apps/ENV.yaml`); no
//!   commit when the tree is unchanged;
//! * the commit names the operation, the actor, the deployment number and
//!   paved's request id (subject line, and as `Paved-*` trailers a program
//!   can read back with `git log --format=%(trailers)`); the author is the
//!   actor, the committer paved, both dated by paved's clock;
//! * history is never rewritten: every attempt starts from the branch's tip
//!   as the server has it, and a push the server rejects because the branch
//!   moved is retried from the new tip (no lost update, no force push);
//! * a private `http(s)://` repository is signed in to with the
//!   environment's `PAVED_GITOPS_TOKEN` from the vault, passed to git only
//!   as configuration in its environment (never an argument, a URL or a
//!   file), and never over plain http beyond loopback;
//! * a failure leaves the repository as it was (nothing is pushed unless the
//!   whole tree was written) and names the environment, the repository, the
//!   git step and git's own words.
//!
//! Git itself does the talking (the `git` program: clone, fetch, push over
//! `git://`, `http(s)://` or `ssh://`): pushing is the one thing Rust's Git
//! libraries do not do well yet (gix has no push), and `git` is on every
//! machine that runs Argo CD's peers. Every attempt works in a fresh shallow
//! checkout of the branch's tip, so deliveries of several environments, or
//! several processes, never share a working tree.

use crate::{Caller, Control, ControlError};
use paved_catalog::Catalog;
use paved_store::AuditOutcome;
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

/// Attempts before a branch that keeps moving is reported.
const MAX_ATTEMPTS: u32 = 8;
/// The longest one git command may take (a slow or unreachable server).
const GIT_TIMEOUT: Duration = Duration::from_secs(120);

#[derive(Debug, thiserror::Error)]
pub enum GitOpsError {
    #[error(
        "environment `{environment}` has no GitOps repository: add `spec.gitops: {{repository: URL}}` to account `{account}`"
    )]
    NoRepository { environment: String, account: String },
    #[error(
        "delivering `{environment}` to {repository}: `git {step}` failed: {detail}; check that the repository is reachable and accepts pushes on branch `{branch}`"
    )]
    Git { environment: String, repository: String, branch: String, step: String, detail: String },
    #[error(
        "delivering `{environment}` to {repository}: branch `{branch}` moved under {attempts} attempts in a row; try again"
    )]
    Contended { environment: String, repository: String, branch: String, attempts: u32 },
    #[error(
        "environment `{environment}`: the GitOps token would cross the network in clear text to {repository}; use an https:// repository (http:// only on loopback)"
    )]
    ClearTextToken { environment: String, repository: String },
    #[error("delivering `{environment}`: {what}: {source}")]
    Io {
        environment: String,
        what: String,
        #[source]
        source: std::io::Error,
    },
}

/// Why a delivery is made: the commit message and audit event say it.
#[derive(Debug, Clone)]
pub struct DeliveryReason {
    /// `apply`, `deploy`, `promote`, `rollback`, `destroy`, `deliver`, …
    pub operation: String,
    /// A one-line summary after the operation (`api sha256:ab12…`).
    pub summary: Option<String>,
    pub deployment: Option<i64>,
    /// The service of that deployment.
    pub service: Option<String>,
}

/// What a delivery did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Delivery {
    pub environment: String,
    pub repository: String,
    pub branch: String,
    /// The commit pushed; `None` when the tree was already there.
    pub commit: Option<String>,
    /// Files added, changed or removed, relative to the repository.
    pub files: Vec<String>,
    /// Pushes tried (more than one when the branch moved meanwhile).
    pub attempts: u32,
    /// Services not delivered yet, and why.
    pub pending: std::collections::BTreeMap<String, String>,
    pub warnings: Vec<String>,
    /// The artifacts the tree runs, each seen in (or put into) the
    /// environment's registry before the commit.
    pub artifacts: Vec<crate::Placed>,
}

struct Repo<'a> {
    environment: &'a str,
    url: &'a str,
    branch: &'a str,
    /// Git configuration carried in the environment of every git command
    /// (the credential's header): never in an argument, a URL or a file.
    auth: Vec<(String, String)>,
}

impl Repo<'_> {
    fn fail(&self, step: &str, detail: impl Into<String>) -> GitOpsError {
        GitOpsError::Git {
            environment: self.environment.into(),
            repository: self.url.into(),
            branch: self.branch.into(),
            step: step.into(),
            detail: detail.into(),
        }
    }

    /// Runs `git ARGS` in `dir`; its output, or the step's error.
    async fn git(
        &self,
        dir: &Path,
        args: &[&str],
        env: &[(&str, String)],
    ) -> Result<std::process::Output, GitOpsError> {
        let mut cmd = tokio::process::Command::new("git");
        cmd.args(args)
            .current_dir(dir)
            .env("GIT_TERMINAL_PROMPT", "0")
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("LC_ALL", "C")
            // Only network transports, whatever a URL or a server's redirect asks for.
            .env("GIT_ALLOW_PROTOCOL", "http:https:ssh:git")
            .stdin(Stdio::null())
            .kill_on_drop(true);
        for (k, v) in env {
            cmd.env(k, v);
        }
        for (k, v) in &self.auth {
            cmd.env(k, v);
        }
        let step = args.first().copied().unwrap_or_default();
        let out = match tokio::time::timeout(GIT_TIMEOUT, cmd.output()).await {
            Ok(Ok(out)) => out,
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(self.fail(step, "the `git` program is not installed (Debian package git)"));
            }
            Ok(Err(e)) => return Err(self.fail(step, e.to_string())),
            Err(_) => return Err(self.fail(step, format!("no answer within {} s", GIT_TIMEOUT.as_secs()))),
        };
        Ok(out)
    }

    async fn ok(&self, dir: &Path, args: &[&str], env: &[(&str, String)]) -> Result<String, GitOpsError> {
        let out = self.git(dir, args, env).await?;
        if !out.status.success() {
            return Err(self.fail(&args.join(" "), stderr(&out)));
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    }
}

fn stderr(out: &std::process::Output) -> String {
    let text = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with("hint:")).collect();
    if lines.is_empty() { format!("exit status {}", out.status) } else { lines.join(" / ") }
}

/// A push refused because the branch is no longer where this attempt started.
fn moved(detail: &str) -> bool {
    ["[rejected]", "non-fast-forward", "fetch first", "cannot lock ref", "failed to update ref", "stale info"]
        .iter()
        .any(|m| detail.contains(m))
}

/// The author of a commit: the actor, with an address git accepts.
fn author(actor: &str) -> (String, String) {
    let email = if actor.contains('@') && !actor.contains(['<', '>', ' ']) {
        actor.rsplit(':').next().unwrap_or(actor).to_string()
    } else {
        "paved@paved.invalid".into()
    };
    (actor.to_string(), email)
}

fn message(environment: &str, reason: &DeliveryReason, caller: &Caller) -> String {
    let mut subject = format!("{} {environment}", reason.operation);
    if let Some(s) = &reason.summary {
        subject.push_str(&format!(": {s}"));
    }
    if let Some(n) = reason.deployment {
        subject.push_str(&format!(" (deployment #{n})"));
    }
    let mut trailers = vec![
        format!("Paved-Environment: {environment}"),
        format!("Paved-Operation: {}", reason.operation),
        format!("Paved-Actor: {}", caller.actor),
    ];
    if let Some(n) = reason.deployment {
        trailers.push(format!("Paved-Deployment: {n}"));
    }
    if !caller.request.request_id.is_empty() {
        trailers.push(format!("Paved-Request-Id: {}", caller.request.request_id));
    }
    format!("{subject} by {}\n\n{}\n", caller.actor, trailers.join("\n"))
}

fn io(environment: &str, what: String) -> impl FnOnce(std::io::Error) -> GitOpsError + '_ {
    move |source| GitOpsError::Io { environment: environment.into(), what, source }
}

/// Writes the environment's files under `root` (after removing what it
/// had there), returning nothing: git tells what changed.
fn write_tree(
    root: &Path,
    environment: &str,
    files: &std::collections::BTreeMap<String, String>,
) -> Result<(), GitOpsError> {
    let own_dir = root.join("envs").join(environment);
    if own_dir.exists() {
        std::fs::remove_dir_all(&own_dir).map_err(io(environment, format!("removing {}", own_dir.display())))?;
    }
    let app = root.join("apps").join(format!("{environment}.yaml"));
    if app.exists() {
        std::fs::remove_file(&app).map_err(io(environment, format!("removing {}", app.display())))?;
    }
    for (rel, text) in files {
        let path = root.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(io(environment, format!("creating {}", parent.display())))?;
        }
        std::fs::write(&path, text).map_err(io(environment, format!("writing {}", path.display())))?;
    }
    Ok(())
}

/// The vault secret holding an environment's GitOps token.
pub const TOKEN_SECRET: &str = "PAVED_GITOPS_TOKEN";

impl Control {
    /// The git configuration that signs in to an `http(s)://` repository
    /// with the environment's `PAVED_GITOPS_TOKEN` (through its secret
    /// chain), as HTTP Basic with the account's `gitops.username`. Nothing
    /// without a token (a public repository, or `ssh://` with this
    /// machine's keys). The token travels only as an environment variable
    /// of the git processes (`GIT_CONFIG_*`, `http.extraHeader`).
    async fn gitops_auth(
        &self,
        catalog: &Catalog,
        environment: &str,
        gitops: &paved_model::account::GitOps,
    ) -> Result<Vec<(String, String)>, ControlError> {
        let url = gitops.repository.as_str();
        if !(url.starts_with("https://") || url.starts_with("http://")) {
            return Ok(Vec::new());
        }
        let chain = self.secret_chain(catalog, environment).await?;
        let vault = self.vault().await?;
        let Some((_, token)) = vault.resolve(&chain, None, TOKEN_SECRET).await.map_err(crate::SecretError::from)?
        else {
            return Ok(Vec::new());
        };
        if let Some(rest) = url.strip_prefix("http://") {
            let host = rest.split(['/', '@']).next().unwrap_or_default();
            let host = host.rsplit_once(':').map_or(host, |(h, _)| h);
            if !(host == "localhost" || host.parse::<std::net::Ipv4Addr>().is_ok_and(|ip| ip.is_loopback())) {
                return Err(
                    GitOpsError::ClearTextToken { environment: environment.into(), repository: url.into() }.into()
                );
            }
        }
        let user = gitops.username.as_deref().unwrap_or("x-access-token");
        let mut basic = user.as_bytes().to_vec();
        basic.push(b':');
        basic.extend_from_slice(&token.0);
        use base64::Engine as _;
        let header = format!("Authorization: Basic {}", base64::engine::general_purpose::STANDARD.encode(basic));
        Ok(vec![
            ("GIT_CONFIG_COUNT".into(), "1".into()),
            ("GIT_CONFIG_KEY_0".into(), "http.extraHeader".into()),
            ("GIT_CONFIG_VALUE_0".into(), header),
        ])
    }

    /// The environment's GitOps repository, or why it has none.
    fn gitops_of(c: &paved_catalog::EnvironmentContext) -> Result<&paved_model::account::GitOps, GitOpsError> {
        c.account.spec.gitops.as_ref().ok_or_else(|| GitOpsError::NoRepository {
            environment: c.environment.metadata.name.clone(),
            account: c.account.metadata.name.clone(),
        })
    }

    /// Whether an environment delivers through Git: a cluster environment
    /// of a cloud account that names a GitOps repository.
    pub async fn delivers_through_git(&self, catalog: &Catalog, environment: &str) -> Result<bool, ControlError> {
        let c = catalog.environment_context(environment).await?;
        Ok(c.account.spec.provider != paved_model::Provider::Local
            && c.blueprint.spec.compute.runtime == paved_model::blueprint::Runtime::Cluster
            && c.account.spec.gitops.is_some())
    }

    /// After an apply or destroy of `graph` that succeeded: a cluster
    /// environment delivering through Git commits its tree (or, destroyed,
    /// the removal of its files). `None` for every other environment.
    pub async fn deliver_after_run(
        &self,
        graph: &paved_plan::ResourceGraph,
        caller: &Caller,
    ) -> Result<Option<Delivery>, ControlError> {
        let catalog = self.catalog(caller.request.clone());
        if !self.delivers_through_git(&catalog, &graph.environment).await? {
            return Ok(None);
        }
        let destroyed = graph.nodes.is_empty();
        let reason = DeliveryReason {
            operation: if destroyed { "destroy" } else { "apply" }.into(),
            summary: None,
            deployment: None,
            service: None,
        };
        Ok(Some(self.deliver(&catalog, &graph.environment, &reason, caller, destroyed).await?))
    }

    /// Renders `environment` and commits its tree to the GitOps repository
    /// (see the module's contract). `remove`: take the environment's files
    /// out instead (it was destroyed).
    pub async fn deliver(
        &self,
        catalog: &Catalog,
        environment: &str,
        reason: &DeliveryReason,
        caller: &Caller,
        remove: bool,
    ) -> Result<Delivery, ControlError> {
        let c = catalog.environment_context(environment).await?;
        // What cannot be rendered (a local environment, say) is told before a missing repository.
        let (files, pending, warnings) = if remove {
            (Default::default(), Default::default(), Vec::new())
        } else {
            let tree = self.render_kubernetes(catalog, environment).await?;
            (tree.to_files(), tree.pending, tree.warnings)
        };
        let gitops = Self::gitops_of(&c)?.clone();
        // Every digest the tree names is in the registry the cluster pulls from before it is committed.
        let artifacts = if remove {
            Vec::new()
        } else {
            let rendered = |service: &str| files.contains_key(&format!("envs/{environment}/{service}.yaml"));
            let wanted: Vec<(String, String)> = self
                .releases(&c)
                .await?
                .into_iter()
                .filter(|(service, _)| rendered(service))
                .map(|(service, release)| (service, release.artifact))
                .collect();
            self.place_artifacts(catalog, &c, &wanted, caller).await?
        };
        if !remove {
            // The cluster's notifications authenticate with it: it exists from the first delivery on.
            self.argocd_secret(environment, caller).await?;
        }
        let auth = self.gitops_auth(catalog, environment, &gitops).await?;
        let repo = Repo { environment, url: &gitops.repository, branch: &gitops.branch, auth };
        let base = self.local.data_dir.join("gitops");
        std::fs::create_dir_all(&base).map_err(io(environment, format!("creating {}", base.display())))?;
        let (name, email) = author(&caller.actor);
        let date = format!("@{} +0000", self.clock.now().unix_timestamp());
        let identity = [
            ("GIT_AUTHOR_NAME", name),
            ("GIT_AUTHOR_EMAIL", email),
            ("GIT_AUTHOR_DATE", date.clone()),
            ("GIT_COMMITTER_NAME", "paved".to_string()),
            ("GIT_COMMITTER_EMAIL", "paved@paved.invalid".to_string()),
            ("GIT_COMMITTER_DATE", date),
        ];
        let msg = message(environment, reason, caller);
        let prefix = gitops.path.trim_matches('/').to_string();
        for attempt in 1..=MAX_ATTEMPTS {
            let work = WorkDir::new(&base, environment).map_err(io(environment, "creating a checkout".into()))?;
            let dir = work.0.as_path();
            repo.ok(dir, &["init", "-q", "-b", &gitops.branch], &[]).await?;
            repo.ok(dir, &["remote", "add", "origin", &gitops.repository], &[]).await?;
            let fetch = repo.git(dir, &["fetch", "-q", "--depth", "1", "origin", &gitops.branch], &[]).await?;
            if fetch.status.success() {
                repo.ok(dir, &["checkout", "-q", "-B", &gitops.branch, "FETCH_HEAD"], &[]).await?;
            } else {
                let detail = stderr(&fetch);
                // A new repository, or a new branch: this delivery starts it.
                if !detail.contains("couldn't find remote ref") {
                    return Err(repo.fail("fetch", detail).into());
                }
            }
            let root = if prefix.is_empty() { dir.to_path_buf() } else { dir.join(&prefix) };
            write_tree(&root, environment, &files)?;
            repo.ok(dir, &["add", "-A", "."], &[]).await?;
            let changed = repo.ok(dir, &["diff", "--cached", "--name-only"], &[]).await?;
            let changed: Vec<String> = changed.lines().map(str::to_string).collect();
            if changed.is_empty() {
                return Ok(Delivery {
                    environment: environment.into(),
                    repository: gitops.repository.clone(),
                    branch: gitops.branch.clone(),
                    commit: None,
                    files: vec![],
                    attempts: attempt,
                    pending,
                    warnings,
                    artifacts,
                });
            }
            let msg_file = dir.join(".git").join("PAVED_MSG");
            std::fs::write(&msg_file, &msg).map_err(io(environment, "writing the commit message".into()))?;
            let msg_path = msg_file.to_string_lossy().to_string();
            repo.ok(dir, &["commit", "-q", "--no-verify", "-F", &msg_path], &identity).await?;
            let push = repo
                .git(dir, &["push", "-q", "--porcelain", "origin", &format!("HEAD:refs/heads/{}", gitops.branch)], &[])
                .await?;
            let detail = format!("{}{}", String::from_utf8_lossy(&push.stdout), stderr(&push));
            if push.status.success() {
                let commit = repo.ok(dir, &["rev-parse", "HEAD"], &[]).await?;
                let delivery = Delivery {
                    environment: environment.into(),
                    repository: gitops.repository.clone(),
                    branch: gitops.branch.clone(),
                    commit: Some(commit.clone()),
                    files: changed,
                    attempts: attempt,
                    pending,
                    warnings,
                    artifacts,
                };
                let details = serde_json::json!({
                    "operation": reason.operation, "repository": delivery.repository, "branch": delivery.branch,
                    "files": delivery.files.len(), "deployment": reason.deployment, "service": reason.service,
                    "attempts": attempt,
                });
                self.record(
                    caller,
                    "environment.deliver",
                    format!("Environment/{environment}"),
                    AuditOutcome::Succeeded,
                    Some(commit),
                    details,
                )
                .await?;
                return Ok(delivery);
            }
            if !moved(&detail) {
                return Err(repo.fail("push", detail).into());
            }
            // Someone else's commit landed first: start again from it.
            tokio::time::sleep(Duration::from_millis(50 * u64::from(attempt))).await;
        }
        Err(GitOpsError::Contended {
            environment: environment.into(),
            repository: gitops.repository.clone(),
            branch: gitops.branch.clone(),
            attempts: MAX_ATTEMPTS,
        }
        .into())
    }
}

/// A scratch checkout, removed when dropped.
struct WorkDir(PathBuf);

impl WorkDir {
    fn new(base: &Path, environment: &str) -> std::io::Result<WorkDir> {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = base.join(format!("{environment}-{}-{n}", std::process::id()));
        if dir.exists() {
            std::fs::remove_dir_all(&dir)?;
        }
        std::fs::create_dir_all(&dir)?;
        Ok(WorkDir(dir))
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_moved_branch_is_told_from_other_push_failures() {
        assert!(moved(" ! [rejected]        HEAD -> main (fetch first)"));
        assert!(moved("error: failed to push some refs: non-fast-forward"));
        assert!(moved("remote: error: cannot lock ref 'refs/heads/main'"));
        assert!(!moved("fatal: unable to connect to 127.0.0.1"));
        assert!(!moved("fatal: remote error: access denied or repository not exported"));
    }

    #[test]
    fn the_author_is_the_actor() {
        assert_eq!(author("user:ada@example.com"), ("user:ada@example.com".into(), "ada@example.com".into()));
        assert_eq!(author("paved-git"), ("paved-git".into(), "paved@paved.invalid".into()));
    }
}
