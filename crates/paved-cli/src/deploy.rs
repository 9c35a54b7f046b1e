//! `artifact`, `deploy`, `rollback`, `promote`, `history SERVICE -e ENV`, `status`.

use crate::Failure;
use crate::cli::ArtifactCommand;
use crate::commands::Ctx;
use crate::output::{structured, table, timestamp};
use crate::progress::Bars;
use paved_control::{BuildInfo, DeployResult, RunOptions, StatusRow, short};
use paved_store::{ArtifactPut, Deployment, DeploymentStatus};
use std::sync::Arc;

pub(crate) async fn artifact(ctx: &Ctx, sub: ArtifactCommand) -> Result<(), Failure> {
    let control = ctx.control().await?;
    match sub {
        ArtifactCommand::Push { dir, service, commit, commit_time, branch, tags, environments } => {
            let build = BuildInfo {
                service,
                commit,
                commit_time: commit_time.or_else(|| Some(control.clock.now())),
                branch,
                tags,
            };
            // Every target is checked before anything is stored.
            for environment in &environments {
                control.pulls_from_registry(environment).await?;
            }
            let (artifact, put) = control.push_artifact(&ctx.caller(), &dir, &build).await?;
            for environment in &environments {
                let placed =
                    control.place_artifact(environment, &artifact.service, &artifact.digest, &ctx.caller()).await?;
                let how = match &placed.placement {
                    paved_control::Placement::Present => "already there".to_string(),
                    paved_control::Placement::Pushed => "pushed".to_string(),
                    paved_control::Placement::Copied { from } => format!("copied from {from}'s registry"),
                };
                eprintln!("{environment}: {} {how}", placed.image);
            }
            if let Some(text) = structured(ctx.format, &artifact) {
                println!("{text}");
            } else {
                let note = match put {
                    ArtifactPut::Created => "stored",
                    _ => "already stored (same content): nothing changed",
                };
                eprintln!("artifact of `{}` {note}", artifact.service);
                println!("{}", artifact.digest);
            }
            Ok(())
        }
        ArtifactCommand::List { service } => {
            let artifacts =
                control.store.artifacts(service.as_deref()).await.map_err(|e| Failure::Internal(e.into()))?;
            if let Some(text) = structured(ctx.format, &artifacts) {
                println!("{text}");
                return Ok(());
            }
            let rows = artifacts
                .iter()
                .map(|a| {
                    vec![
                        a.service.clone(),
                        short(&a.digest),
                        a.commit.clone().unwrap_or_else(|| "-".into()),
                        a.branch.clone().unwrap_or_else(|| "-".into()),
                        if a.tags.is_empty() { "-".into() } else { a.tags.join(",") },
                        timestamp(a.created_at),
                        a.builder.clone(),
                    ]
                })
                .collect();
            println!("{}", table(&["SERVICE", "DIGEST", "COMMIT", "BRANCH", "TAGS", "CREATED", "BY"], rows));
            Ok(())
        }
    }
}

/// What `deploy`, `rollback` and `promote` do once the control plane knows the target.
pub(crate) enum Rollout {
    Deploy(paved_control::DeployRequest),
    Rollback { service: String, environment: String, to: Option<i64>, request_id: String },
    Promote { service: String, from: String, to: String, request_id: String },
}

impl Rollout {
    /// The rollout a `deploy`, `rollback` or `promote` command asks for (the
    /// command's own request id unless one is given); any other command is handed back.
    // The command is handed back as it came (moved once, at start-up): its size does not matter.
    #[allow(clippy::result_large_err)]
    pub(crate) fn of(ctx: &Ctx, command: crate::cli::Command) -> Result<Rollout, crate::cli::Command> {
        use crate::cli::Command;
        let id = |given: Option<String>| given.unwrap_or_else(|| ctx.request.request_id.clone());
        Ok(match command {
            Command::Deploy { service, environment, artifact, strategy, soak, ready_timeout, request_id } => {
                Rollout::Deploy(paved_control::DeployRequest {
                    service,
                    environment,
                    artifact,
                    strategy,
                    soak,
                    ready_timeout,
                    request_id: id(request_id),
                })
            }
            Command::Rollback { service, environment, to, request_id } => {
                Rollout::Rollback { service, environment, to, request_id: id(request_id) }
            }
            Command::Promote { service, from, to, request_id } => {
                Rollout::Promote { service, from, to, request_id: id(request_id) }
            }
            other => return Err(other),
        })
    }
}

pub(crate) async fn roll_out(ctx: &Ctx, what: Rollout) -> Result<(), Failure> {
    let control = ctx.control().await?;
    let environment = match &what {
        Rollout::Deploy(r) => r.environment.clone(),
        Rollout::Rollback { environment, .. } => environment.clone(),
        Rollout::Promote { to, .. } => to.clone(),
    };
    let run = RunOptions {
        parallelism: 8,
        holder: ctx.holder(),
        lock_timeout: ctx.lock_timeout,
        jitter_seed: crate::commands::random_u64(),
        operation: None,
    };
    let bars = Arc::new(Bars::new(&environment));
    let caller = ctx.caller();
    let (deployment, created) = match what {
        Rollout::Deploy(req) => control.record_deployment(&req, &caller).await?,
        Rollout::Rollback { service, environment, to, request_id } => {
            control.record_rollback(&service, &environment, to, &request_id, &caller).await?
        }
        Rollout::Promote { service, from, to, request_id } => {
            control.record_promotion(&service, &from, &to, &request_id, &caller).await?
        }
    };
    let result = control.finish(deployment, created, &caller, &run, bars.clone()).await;
    bars.finish();
    report(ctx, &result?)
}

pub(crate) fn report(ctx: &Ctx, r: &DeployResult) -> Result<(), Failure> {
    let d = &r.deployment;
    if let Some(text) = structured(ctx.format, r) {
        println!("{text}");
    } else {
        let what = format!("{} #{} ({}) in {}", d.service, d.number, short(&d.artifact), d.environment);
        match (r.created, d.status) {
            (false, s) => println!("{what}: this request was already made; the deployment is {s}"),
            (true, DeploymentStatus::Healthy) => println!("{what} is healthy ({} rollout)", d.strategy),
            (true, s) => println!("{what} is {s}: {}", d.reason.as_deref().unwrap_or("no reason recorded")),
        }
    }
    match d.status {
        // The reason is printed above; exit code 1.
        DeploymentStatus::Failed | DeploymentStatus::RolledBack => Err(Failure::Reported),
        _ => Ok(()),
    }
}

pub(crate) async fn history(ctx: &Ctx, service: &str, environment: &str) -> Result<(), Failure> {
    let control = ctx.control().await?;
    let deployments = control.history(service, environment).await?;
    print_history(ctx, &deployments);
    Ok(())
}

pub(crate) fn print_history(ctx: &Ctx, deployments: &[Deployment]) {
    if let Some(text) = structured(ctx.format, &deployments) {
        println!("{text}");
        return;
    }
    let rows = deployments
        .iter()
        .map(|d| {
            vec![
                format!("#{}", d.number),
                short(&d.artifact),
                d.strategy.clone(),
                d.status.to_string(),
                timestamp(d.created_at),
                d.finished_at.map_or_else(|| "-".into(), timestamp),
                d.actor.clone(),
                d.reason.clone().unwrap_or_default(),
            ]
        })
        .collect();
    println!("{}", table(&["#", "ARTIFACT", "STRATEGY", "STATUS", "STARTED", "FINISHED", "BY", "REASON"], rows));
}

pub(crate) async fn status(ctx: &Ctx) -> Result<(), Failure> {
    let control = ctx.control().await?;
    let rows = control.status_matrix().await?;
    print_status(ctx, &rows);
    Ok(())
}

/// The matrix: one row per service, one column per environment that runs it.
pub(crate) fn print_status(ctx: &Ctx, rows: &[StatusRow]) {
    if let Some(text) = structured(ctx.format, &rows) {
        println!("{text}");
        return;
    }
    let mut environments: Vec<&str> = rows.iter().map(|r| r.environment.as_str()).collect();
    environments.sort();
    environments.dedup();
    let mut services: Vec<&str> = rows.iter().map(|r| r.service.as_str()).collect();
    services.sort();
    services.dedup();
    let cell = |r: &StatusRow| {
        // A digest by its first hex digits; a Score image by its last path segment, as the console shows it.
        let what = if r.artifact.starts_with("sha256:") {
            short(&r.artifact)[7..].to_string()
        } else {
            r.artifact.rsplit('/').next().unwrap_or(&r.artifact).to_string()
        };
        let number = r.number.map_or_else(String::new, |n| format!("#{n} "));
        let commit = r.commit.as_deref().map_or_else(String::new, |c| format!(" @{}", paved_control::short_commit(c)));
        let since = r.since.map_or_else(String::new, |t| format!(" since {}", timestamp(t)));
        let by = r.by.as_deref().map_or_else(String::new, |b| format!(" by {b}"));
        let failed = r.last_failed.map_or_else(String::new, |n| format!(" (#{n} failed)"));
        let blocked = if r.blocked.is_some() { " BLOCKED" } else { "" };
        format!("{number}{what}{commit} {}{failed}{blocked}{since}{by}", r.health)
    };
    let table_rows = services
        .iter()
        .map(|s| {
            std::iter::once(s.to_string())
                .chain(environments.iter().map(|e| {
                    rows.iter().find(|r| r.service == *s && r.environment == *e).map_or_else(|| "-".into(), cell)
                }))
                .collect()
        })
        .collect();
    let headers: Vec<String> =
        std::iter::once("SERVICE".to_string()).chain(environments.iter().map(|e| e.to_uppercase())).collect();
    let headers: Vec<&str> = headers.iter().map(String::as_str).collect();
    println!("{}", table(&headers, table_rows));
    for r in rows.iter().filter(|r| r.blocked.is_some()) {
        println!(
            "blocked: {} in {} was left out of its last apply: {}",
            r.service,
            r.environment,
            r.blocked.as_deref().unwrap_or_default()
        );
    }
}
