//! `paved render -e ENV` and `paved export kubernetes -e ENV`: a cluster
//! environment's Kubernetes manifests, as files or as one stream.

use crate::Failure;
use crate::commands::{Ctx, open};
use crate::output::structured;
use serde::Serialize;
use std::path::Path;

/// A rendered tree as the commands show it, whether made here or by the server.
#[derive(serde::Deserialize)]
pub(crate) struct Rendered {
    pub files: std::collections::BTreeMap<String, String>,
    pub objects: std::collections::BTreeMap<String, usize>,
    pub stream: String,
    pub pending: std::collections::BTreeMap<String, String>,
    pub warnings: Vec<String>,
}

impl From<paved_k8s::Tree> for Rendered {
    fn from(tree: paved_k8s::Tree) -> Rendered {
        Rendered {
            files: tree.to_files(),
            objects: tree.files.iter().map(|(p, docs)| (p.clone(), docs.len())).collect(),
            stream: tree.to_stream(),
            pending: tree.pending,
            warnings: tree.warnings,
        }
    }
}

async fn tree(ctx: &Ctx, environment: &str) -> Result<Rendered, Failure> {
    let catalog = open(ctx).await?;
    match ctx.control().await?.render_kubernetes(&catalog, environment).await {
        Err(paved_control::ControlError::Unrenderable { problems, .. }) => {
            for p in &problems {
                eprintln!("error: {p}");
            }
            eprintln!("error: environment `{environment}` cannot be rendered ({} problem(s))", problems.len());
            Err(Failure::Reported)
        }
        other => other.map(Rendered::from).map_err(Failure::from),
    }
}

fn notices(tree: &Rendered) {
    for w in &tree.warnings {
        eprintln!("warning: {w}");
    }
    for (service, why) in &tree.pending {
        eprintln!("pending: {service}: {why}");
    }
}

/// `paved export kubernetes -e ENV`.
pub async fn export(ctx: &Ctx, environment: &str) -> Result<(), Failure> {
    print_stream(&tree(ctx, environment).await?);
    Ok(())
}

pub(crate) fn print_stream(tree: &Rendered) {
    notices(tree);
    print!("{}", tree.stream);
}

/// `paved export argocd-notifications -e ENV --paved-url URL`.
pub async fn export_notifications(ctx: &Ctx, environment: &str, paved_url: Option<&str>) -> Result<(), Failure> {
    let Some(url) = paved_url.filter(|u| u.starts_with("https://") || u.starts_with("http://")) else {
        return Err(Failure::User(
            "--paved-url URL is needed: where Argo CD reaches paved's server (https://…)".into(),
        ));
    };
    let catalog = open(ctx).await?;
    if !ctx.control().await?.delivers_through_git(&catalog, environment).await? {
        return Err(Failure::User(format!(
            "environment `{environment}` does not deliver through Git (a cluster blueprint and an account with `spec.gitops`)"
        )));
    }
    print!("{}", paved_spec::render::to_yaml_string(&[paved_k8s::argocd_notifications(environment, url)]));
    Ok(())
}

#[derive(Serialize)]
struct Written {
    environment: String,
    files: Vec<WrittenFile>,
    removed: Vec<String>,
    pending: std::collections::BTreeMap<String, String>,
    warnings: Vec<String>,
}

#[derive(Serialize)]
struct WrittenFile {
    path: String,
    objects: usize,
    changed: bool,
}

/// Writes `text` to `path` through a temporary file beside it, so a reader
/// never sees half a manifest; `false` when the file already held it.
fn write_file(path: &Path, text: &str) -> std::io::Result<bool> {
    if std::fs::read_to_string(path).is_ok_and(|old| old == text) {
        return Ok(false);
    }
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let tmp = path.with_extension("yaml.tmp");
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path)?;
    Ok(true)
}

/// `paved render -e ENV -d DIR`.
pub async fn render(ctx: &Ctx, environment: &str, dir: &Path) -> Result<(), Failure> {
    write_tree(ctx, environment, dir, &tree(ctx, environment).await?)
}

/// Writes a rendered tree under `dir` (removing the files of services that
/// left) and reports what changed.
pub(crate) fn write_tree(ctx: &Ctx, environment: &str, dir: &Path, tree: &Rendered) -> Result<(), Failure> {
    let files = &tree.files;
    let io = |what: &str, p: &Path, e: std::io::Error| Failure::User(format!("cannot {what} {}: {e}", p.display()));
    let mut written = Vec::new();
    for (rel, text) in files {
        let path = dir.join(rel);
        let changed = write_file(&path, text).map_err(|e| io("write", &path, e))?;
        written.push(WrittenFile { path: rel.clone(), objects: tree.objects.get(rel).copied().unwrap_or(0), changed });
    }
    // A service that left the environment leaves no manifest behind.
    let own = dir.join("envs").join(environment);
    let mut removed = Vec::new();
    if let Ok(entries) = std::fs::read_dir(&own) {
        let mut stale: Vec<_> = entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
            .filter(|p| {
                let rel = format!("envs/{environment}/{}", p.file_name().unwrap_or_default().to_string_lossy());
                !files.contains_key(&rel)
            })
            .collect();
        stale.sort();
        for p in stale {
            std::fs::remove_file(&p).map_err(|e| io("remove", &p, e))?;
            removed.push(format!("envs/{environment}/{}", p.file_name().unwrap_or_default().to_string_lossy()));
        }
    }
    let report = Written {
        environment: environment.into(),
        files: written,
        removed,
        pending: tree.pending.clone(),
        warnings: tree.warnings.clone(),
    };
    if let Some(text) = structured(ctx.format, &report) {
        println!("{text}");
        return Ok(());
    }
    notices(tree);
    let mut rows: Vec<Vec<String>> = report
        .files
        .iter()
        .map(|f| vec![f.path.clone(), f.objects.to_string(), if f.changed { "yes" } else { "no" }.into()])
        .collect();
    rows.extend(report.removed.iter().map(|r| vec![r.clone(), "0".into(), "removed".into()]));
    println!("{}", crate::output::table(&["FILE", "OBJECTS", "CHANGED"], rows));
    println!("Rendered {environment} into {}", dir.display());
    Ok(())
}

/// One line telling what a delivery did.
pub(crate) fn summary(delivery: &paved_control::gitops::Delivery) -> String {
    let env = &delivery.environment;
    match &delivery.commit {
        Some(commit) => format!(
            "Delivered {env} to {} ({}): commit {} ({} file(s){})",
            delivery.repository,
            delivery.branch,
            paved_control::short_commit(commit),
            delivery.files.len(),
            if delivery.attempts > 1 { format!(", pushed on attempt {}", delivery.attempts) } else { String::new() }
        ),
        None => {
            format!("{env} is already delivered to {} ({}): nothing to commit", delivery.repository, delivery.branch)
        }
    }
}

/// `paved deliver -e ENV`: renders and commits an environment to its GitOps repository.
pub async fn deliver(ctx: &Ctx, environment: &str) -> Result<(), Failure> {
    let catalog = open(ctx).await?;
    let control = ctx.control().await?;
    let reason = paved_control::gitops::DeliveryReason {
        operation: "deliver".into(),
        summary: None,
        deployment: None,
        service: None,
    };
    let delivery = control.deliver(&catalog, environment, &reason, &ctx.caller(), false).await?;
    show_delivery(ctx, &delivery);
    Ok(())
}

/// A delivery as `paved deliver` prints it.
pub(crate) fn show_delivery(ctx: &Ctx, delivery: &paved_control::gitops::Delivery) {
    if let Some(text) = structured(ctx.format, delivery) {
        println!("{text}");
        return;
    }
    notices_of(delivery);
    println!("{}", summary(delivery));
}

/// Warnings and pending services of a delivery, on standard error.
pub(crate) fn notices_of(delivery: &paved_control::gitops::Delivery) {
    for w in &delivery.warnings {
        eprintln!("warning: {w}");
    }
    for (service, why) in &delivery.pending {
        eprintln!("pending: {service}: {why}");
    }
    for a in &delivery.artifacts {
        let how = match &a.placement {
            paved_control::Placement::Present => continue,
            paved_control::Placement::Pushed => "pushed from paved's store".to_string(),
            paved_control::Placement::Copied { from } => format!("copied from {from}'s registry"),
        };
        eprintln!("artifact: {} {} {how}", a.service, a.image);
    }
}
