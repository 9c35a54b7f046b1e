//! Commands that change or read real resources: `apply -e`, `destroy`,
//! `drift`, `logs`, `up`, `down`, `image`.

use crate::Failure;
use crate::cli::ImageCommand;
use crate::commands::{Ctx, open, open_store};
use crate::output::structured;
use crate::progress::Bars;
use paved_control::{LockWatcher, RunOptions};
use paved_engine::{DriftStatus, EngineError, Outcome, Report};
use paved_model::{Kind, Provider, Spec};
use paved_plan::ResourceGraph;
use std::collections::BTreeMap;
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

pub(crate) fn engine_failure(e: EngineError) -> Failure {
    match e {
        EngineError::Store(e) => Failure::Internal(e.into()),
        EngineError::CorruptState { .. } => Failure::Internal(anyhow::anyhow!("{e}")),
        EngineError::Locked { .. } => Failure::User(format!("{e} (`--lock-timeout 5m` waits for it)")),
        other => Failure::User(other.to_string()),
    }
}

/// One line per node outcome, terraform-like: `+ created   local.workload/api`.
pub(crate) fn describe_outcome(id: &str, o: &Outcome) -> String {
    match o {
        Outcome::Created => format!("+ created    {id}"),
        Outcome::Adopted => format!("+ adopted    {id}   (found after an interrupted apply)"),
        Outcome::Updated => format!("~ updated    {id}"),
        Outcome::Replaced => format!("-/+ replaced {id}"),
        Outcome::Deleted => format!("- destroyed  {id}"),
        Outcome::Unchanged => format!("  unchanged  {id}"),
        Outcome::Failed { error, attempts } => format!("! failed     {id}: {error} (after {attempts} attempt(s))"),
        Outcome::Skipped { because } => format!("  skipped    {id}: {because}"),
        Outcome::NotStarted => format!("  not started {id} (cancelled)"),
    }
}

/// Runs the engine on one environment towards `desired`, with progress
/// bars and Ctrl-C handling.
async fn run_engine(ctx: &Ctx, desired: &ResourceGraph, parallelism: u16) -> Result<Report, Failure> {
    let control = ctx.control().await?;
    let cancel = Arc::new(AtomicBool::new(false));
    let ctrl_c = {
        let cancel = cancel.clone();
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                eprintln!(
                    "\nstopping: no new step starts; running ones get 5 s to finish and are recorded (the next apply \
                     finishes the rest). Ctrl-C again quits at once."
                );
                cancel.store(true, Ordering::SeqCst);
                if tokio::signal::ctrl_c().await.is_ok() {
                    std::process::exit(130);
                }
            }
        })
    };
    let run = RunOptions {
        parallelism: parallelism as usize,
        holder: ctx.holder(),
        lock_timeout: ctx.lock_timeout,
        jitter_seed: crate::commands::random_u64(),
        operation: None,
    };
    let bars = Arc::new(Bars::new(&desired.environment));
    let result = control.run(desired, &run, &ctx.caller(), cancel, bars.clone(), &LockNotes).await;
    bars.finish();
    ctrl_c.abort();
    Ok(result?)
}

/// Says on standard error why an apply waits or takes over a lock.
struct LockNotes;

impl LockWatcher for LockNotes {
    fn waiting(&self, holder: &str, environment: &str, timeout: Duration) {
        eprintln!("waiting up to {timeout:?} for {holder}, which is working on {environment}");
    }

    fn taking_over(&self, holder: &str) {
        eprintln!("note: taking over the lock of {holder}, which no longer runs (killed?)");
    }
}

fn print_report(ctx: &Ctx, report: &Report, elapsed: Duration) -> Result<(), Failure> {
    if let Some(text) = structured(ctx.format, report) {
        println!("{text}");
    } else {
        let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
        for (id, o) in &report.outcomes {
            let key = match o {
                Outcome::Created | Outcome::Adopted => "created",
                Outcome::Updated | Outcome::Replaced => "changed",
                Outcome::Deleted => "destroyed",
                Outcome::Unchanged => "unchanged",
                Outcome::Failed { .. } => "failed",
                Outcome::Skipped { .. } | Outcome::NotStarted => "not done",
            };
            *counts.entry(key).or_default() += 1;
            if matches!(o, Outcome::Failed { .. } | Outcome::Skipped { .. } | Outcome::NotStarted) {
                println!("  {}", describe_outcome(id, o));
            }
        }
        let summary: Vec<String> = ["created", "changed", "destroyed", "unchanged", "failed", "not done"]
            .iter()
            .filter_map(|k| counts.get(k).map(|n| format!("{n} {k}")))
            .collect();
        let verdict = if report.cancelled {
            "stopped (Ctrl-C); run the command again to continue"
        } else if report.succeeded() {
            "done"
        } else {
            "failed"
        };
        println!(
            "{}: {verdict} in {:.1} s — {}",
            report.environment,
            elapsed.as_secs_f64(),
            if summary.is_empty() { "nothing to do".into() } else { summary.join(", ") }
        );
        for (service, reasons) in &report.blocked {
            println!("  blocked: service `{service}` was left out (what it runs stays): {}", reasons.join("; "));
        }
    }
    if report.succeeded() { Ok(()) } else { Err(Failure::Reported) }
}

/// `paved apply -e ENV`.
pub async fn apply_environments(ctx: &Ctx, environments: &[String], parallelism: u16) -> Result<(), Failure> {
    let catalog = open(ctx).await?;
    let mut failed = false;
    for env in environments {
        let started = Instant::now();
        let (graph, _) = crate::plan::desired_graph(ctx, &catalog, env).await?;
        let report = run_engine(ctx, &graph, parallelism).await?;
        match print_report(ctx, &report, started.elapsed()) {
            Ok(()) => {
                print_urls(ctx, env).await?;
                delivered(ctx, &graph).await?;
            }
            Err(Failure::Reported) => failed = true,
            Err(e) => return Err(e),
        }
        if report.cancelled {
            break;
        }
    }
    if failed { Err(Failure::Reported) } else { Ok(()) }
}

/// `paved apply --all`: every environment on a provider paved can drive.
pub async fn apply_all(ctx: &Ctx, parallelism: u16) -> Result<(), Failure> {
    let catalog = open(ctx).await?;
    let mut envs = Vec::new();
    for object in catalog.list(Some(Kind::Environment)).await? {
        let name = object.record.name.clone();
        let c = catalog.environment_context(&name).await?;
        match c.account.spec.provider {
            Provider::Local | Provider::Aws => envs.push(name),
            other => eprintln!("skipping {name}: the {} provider cannot be applied yet", other.as_str()),
        }
    }
    apply_environments(ctx, &envs, parallelism).await
}

async fn print_urls(ctx: &Ctx, env: &str) -> Result<(), Failure> {
    if ctx.format != crate::cli::Format::Table {
        return Ok(());
    }
    for (id, url) in ctx.control().await?.urls(env).await? {
        println!("  {url}   ({id})");
    }
    Ok(())
}

/// After a run that succeeded: a cluster environment's manifests go to its
/// GitOps repository (its services come through Git). One line on standard
/// output, or on standard error beside a structured report.
async fn delivered(ctx: &Ctx, graph: &paved_plan::ResourceGraph) -> Result<(), Failure> {
    let Some(delivery) = ctx.control().await?.deliver_after_run(graph, &ctx.caller()).await? else {
        return Ok(());
    };
    crate::render::notices_of(&delivery);
    let line = crate::render::summary(&delivery);
    if ctx.format == crate::cli::Format::Table {
        println!("{line}")
    } else {
        eprintln!("{line}")
    }
    Ok(())
}

/// `paved destroy -e ENV`: applies an empty graph.
pub async fn destroy(ctx: &Ctx, env: &str, parallelism: u16) -> Result<(), Failure> {
    let started = Instant::now();
    let empty = ctx.control().await?.empty_graph(env).await?;
    let applied = open_store(ctx).await?.applied_nodes(env).await.map_err(|e| Failure::Internal(e.into()))?;
    let kept = paved_control::kept_on_destroy(&applied);
    let report = run_engine(ctx, &empty, parallelism).await?;
    let printed = print_report(ctx, &report, started.elapsed());
    // What the destroy kept, where the environment's data now is (beside
    // structured output, on stderr).
    for (node, what) in kept.iter().filter(|(node, _)| matches!(report.outcomes.get(node), Some(Outcome::Deleted))) {
        let line = format!("  kept {what}: the data of {node}");
        if ctx.format == crate::cli::Format::Table { println!("{line}") } else { eprintln!("{line}") }
    }
    printed?;
    delivered(ctx, &empty).await
}

/// `paved apply -e ENV --take-over`: the environment moves to this machine
/// (said on stderr, with the machine it ran on) before the apply.
pub async fn take_over(ctx: &Ctx, env: &str) -> Result<(), Failure> {
    let control = ctx.control().await?;
    let before = control.take_over_runner(&ctx.caller(), env).await?;
    let here = &control.settings.runner;
    match before {
        Some(old) if &old != here => eprintln!("{env}: taken over from `{old}`; it is re-created on `{here}`"),
        _ => eprintln!("{env}: runs on `{here}`"),
    }
    Ok(())
}

/// `paved drift -e ENV`.
pub async fn drift(ctx: &Ctx, env: &str) -> Result<(), Failure> {
    let report = ctx.control().await?.drift(env).await?;
    if let Some(text) = structured(ctx.format, &report) {
        println!("{text}");
    } else {
        print_drift(&report);
    }
    if report.drifted() { Err(Failure::Drift) } else { Ok(()) }
}

/// `paved drift --all`: one sweep over every applied environment.
pub async fn drift_all(ctx: &Ctx) -> Result<(), Failure> {
    let reports = ctx.control().await?.drift_sweep().await?;
    if let Some(text) = structured(ctx.format, &reports) {
        println!("{text}");
    } else if reports.is_empty() {
        println!("no environment has applied resources");
    } else {
        for report in &reports {
            print_drift(report);
        }
    }
    if reports.iter().any(|r| r.drifted()) { Err(Failure::Drift) } else { Ok(()) }
}

fn print_drift(report: &paved_engine::DriftReport) {
    let env = &report.environment;
    if report.nodes.is_empty() {
        println!("{env}: nothing applied yet");
    } else {
        for n in &report.nodes {
            match &n.status {
                DriftStatus::InSync => {}
                DriftStatus::Missing => println!("  - {}: missing", n.id),
                DriftStatus::Unreadable { error } => println!("  ? {}: cannot be read: {error}", n.id),
                DriftStatus::Changed => {
                    println!("  ~ {}: changed outside paved", n.id);
                    for c in &n.changes {
                        let show =
                            |v: &Option<serde_json::Value>| v.as_ref().map_or("(absent)".into(), |v| v.to_string());
                        println!("      {}: {} -> {}", c.field, show(&c.before), show(&c.after));
                    }
                }
            }
        }
        let drifted = report.nodes.iter().filter(|n| n.status != DriftStatus::InSync).count();
        if drifted == 0 {
            println!("{env}: no drift ({} resources checked)", report.nodes.len());
        } else {
            println!(
                "{env}: {drifted} of {} resources drifted; `paved apply -e {env}` repairs them",
                report.nodes.len()
            );
        }
    }
}

/// `paved logs SERVICE -e ENV`.
pub async fn logs(
    ctx: &Ctx,
    service: &str,
    env: &str,
    container: Option<&str>,
    follow: bool,
    tail: Option<usize>,
) -> Result<(), Failure> {
    let control = ctx.control().await?;
    if control.on_docker(env, service) {
        return docker_logs(&control.local, service, env, container, follow, tail).await;
    }
    // What is there now (the same lines the API serves), then, with -f, what follows.
    let lines = control.logs(env, service, container, tail).await?;
    let files = control.log_files(env, service, container);
    let several = files.len() > 1;
    let prefix = |container: &str| if several { format!("{container}| ") } else { String::new() };
    {
        let mut out = std::io::stdout().lock();
        for l in &lines {
            let _ = writeln!(out, "{}{}", prefix(&l.container), l.line);
        }
    }
    if !follow {
        return Ok(());
    }
    let mut offsets: Vec<u64> = files.iter().map(|f| std::fs::metadata(f).map_or(0, |m| m.len())).collect();
    loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        for (f, offset) in files.iter().zip(offsets.iter_mut()) {
            let Ok(mut file) = std::fs::File::open(f) else { continue };
            if file.seek(std::io::SeekFrom::Start(*offset)).is_err() {
                continue;
            }
            let mut more = String::new();
            if let Ok(n) = file.read_to_string(&mut more) {
                *offset += n as u64;
                let container = f.file_stem().unwrap_or_default().to_string_lossy();
                for line in more.lines() {
                    println!("{}{line}", prefix(&container));
                }
            }
        }
    }
}

/// `paved logs` of a workload on the docker runtime: the engine keeps the output.
async fn docker_logs(
    config: &paved_local::Config,
    service: &str,
    env: &str,
    container: Option<&str>,
    follow: bool,
    tail: Option<usize>,
) -> Result<(), Failure> {
    use futures_util::StreamExt;
    let (count, lines) = paved_local::docker::workload::logs(config, env, service, container, follow, tail)
        .await
        .map_err(Failure::User)?;
    let mut lines = std::pin::pin!(lines);
    while let Some(l) = lines.next().await {
        if count > 1 {
            println!("{}| {}", l.container, l.line);
        } else {
            println!("{}", l.line);
        }
    }
    Ok(())
}

/// The demo programs `paved up` can stand in for, by service name.
const DEMO_SERVICES: [&str; 3] = ["api", "worker", "web"];

fn demo_binary() -> Result<PathBuf, Failure> {
    if let Some(p) = std::env::var_os("PAVED_DEMO_BIN") {
        return Ok(PathBuf::from(p));
    }
    let exe = std::env::current_exe().map_err(|e| Failure::Internal(e.into()))?;
    let beside = exe.with_file_name("paved-demo");
    if beside.is_file() {
        return Ok(beside);
    }
    Err(Failure::User(format!(
        "the demo services' program `paved-demo` is not next to {}; build both with `cargo build -p paved-cli` \
         (or set PAVED_DEMO_BIN)",
        exe.display()
    )))
}

/// Packs the demo program as a bundle per demo service and tags it with the
/// image its Score file names, so the examples run unchanged.
async fn import_demo_images(ctx: &Ctx) -> Result<(), Failure> {
    let catalog = open(ctx).await?;
    let bin = demo_binary()?;
    let config = ctx.local_config()?;
    let images = config.images();
    for object in catalog.list(Some(Kind::Service)).await? {
        let Spec::Service(w) = &object.spec else { continue };
        let name = w.metadata.name.as_str();
        if !DEMO_SERVICES.contains(&name) {
            continue;
        }
        let tags: Vec<String> = w.containers.values().map(|c| c.image.clone()).filter(|i| i != ".").collect();
        let build = ctx.data_dir.join("images").join(format!(".build-{name}"));
        let prepared = (|| -> std::io::Result<()> {
            let _ = std::fs::remove_dir_all(&build);
            std::fs::create_dir_all(build.join("bin"))?;
            std::fs::copy(&bin, build.join("bin").join(name))?;
            std::fs::write(build.join("bundle.json"), format!("{{\"entrypoint\": [\"/bin/{name}\"]}}\n"))
        })();
        prepared.map_err(|e| Failure::Internal(anyhow::anyhow!("cannot prepare the {name} bundle: {e}")))?;
        let digest = images.import(&build, &tags).map_err(Failure::User)?;
        let _ = std::fs::remove_dir_all(&build);
        if ctx.format == crate::cli::Format::Table {
            println!("image {} = {digest} (demo {name})", tags.join(", "));
        }
    }
    Ok(())
}

/// `paved up`.
pub async fn up(ctx: &Ctx, specs: &Path, env: &str) -> Result<(), Failure> {
    if !specs.exists() {
        return Err(Failure::User(format!(
            "no specs at {}: run `paved up` from the repository root or pass --specs DIR",
            specs.display()
        )));
    }
    let started = Instant::now();
    crate::commands::apply_quiet(ctx, &[specs.to_path_buf()]).await?;
    import_demo_images(ctx).await?;
    apply_environments(ctx, &[env.to_string()], 8).await?;
    if ctx.format == crate::cli::Format::Table {
        println!(
            "\n{env} is up and healthy after {:.1} s. Logs: `paved logs api -e {env} -f`. \
             Everything goes away with `paved down`.",
            started.elapsed().as_secs_f64()
        );
    }
    Ok(())
}

/// `paved down`: destroys every environment applied on this machine, then
/// stops the platform database and removes the provider's state.
pub async fn down(ctx: &Ctx) -> Result<(), Failure> {
    let config = ctx.local_config()?;
    let store = open_store(ctx).await?;
    let mut envs: Vec<String> =
        open(ctx).await?.list(Some(Kind::Environment)).await?.into_iter().map(|o| o.record.name).collect();
    if let Ok(rd) = std::fs::read_dir(config.local_dir().join("envs")) {
        envs.extend(rd.flatten().filter_map(|e| e.file_name().to_str().map(str::to_string)));
    }
    envs.sort();
    envs.dedup();
    let mut failed = false;
    for env in envs {
        if store.applied_nodes(&env).await.map_err(|e| Failure::Internal(e.into()))?.is_empty() {
            continue;
        }
        if let Err(e) = destroy(ctx, &env, 8).await {
            failed = true;
            if let Failure::User(msg) = e {
                eprintln!("error: {msg}");
            }
        }
    }
    if failed {
        return Err(Failure::User("some resources could not be removed; fix the errors above and run again".into()));
    }
    paved_local::teardown(&config).await.map_err(Failure::User)?;
    let details = serde_json::json!({"removed": config.local_dir().display().to_string()});
    crate::audit::record(
        ctx,
        "platform.down",
        "Platform/local".into(),
        paved_store::AuditOutcome::Succeeded,
        None,
        details,
    )
    .await?;
    if ctx.format == crate::cli::Format::Table {
        println!("removed every environment, the platform database and {}", config.local_dir().display());
    }
    Ok(())
}

/// `paved image import|list`.
pub async fn image(ctx: &Ctx, command: ImageCommand) -> Result<(), Failure> {
    let images = ctx.local_config()?.images();
    match command {
        ImageCommand::Import { dir, tags } => {
            let digest = images.import(&dir, &tags).map_err(Failure::User)?;
            let details = serde_json::json!({"tags": tags, "from": dir.display().to_string()});
            let target = format!("Image/{}", tags.first().cloned().unwrap_or_else(|| digest.clone()));
            crate::audit::record(
                ctx,
                "image.import",
                target,
                paved_store::AuditOutcome::Succeeded,
                Some(digest.clone()),
                details,
            )
            .await?;
            println!("{digest}");
        }
        ImageCommand::List => {
            let tags = images.tags().map_err(Failure::User)?;
            if let Some(text) = structured(ctx.format, &tags) {
                println!("{text}");
            } else {
                for (tag, digest) in tags {
                    println!("{tag}  {digest}");
                }
            }
        }
    }
    Ok(())
}
