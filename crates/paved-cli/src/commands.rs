//! One function per subcommand.

use crate::Failure;
use crate::cli::{Cli, ColorChoice, Command, Format};
use crate::output::{short_hash, structured, table, timestamp};
use clap::CommandFactory;
use paved_catalog::{Action, Catalog, CatalogError, Object, SystemClock};
use paved_model::{Kind, Spec};
use paved_spec::{Batch, Diagnostic, Severity, SourceFile};
use paved_store::SqlStore;
use serde::Serialize;
use std::io::{IsTerminal, Read};
use std::path::PathBuf;
use std::sync::Arc;

impl From<paved_control::ControlError> for Failure {
    fn from(e: paved_control::ControlError) -> Failure {
        use paved_control::ControlError;
        match e {
            ControlError::Catalog(e) => e.into(),
            ControlError::Engine(e) => crate::provision::engine_failure(e),
            ControlError::Store(e) => Failure::Internal(e.into()),
            ControlError::Secret(paved_control::SecretError::Vault(paved_secrets::SecretsError::Store(e))) => {
                Failure::Internal(e.into())
            }
            ControlError::Secret(e) => Failure::User(e.to_string()),
            ControlError::Identity(e) => Failure::User(e.to_string()),
            ControlError::Deploy(e) => Failure::User(e.to_string()),
            ControlError::Git(e) => Failure::User(e.to_string()),
            bad @ (ControlError::BadTokenRequest(_)
            | ControlError::StillProvisioned { .. }
            | ControlError::HostsPreviews { .. }
            | ControlError::NoLogs { .. }
            | ControlError::OtherRunner { .. }) => Failure::User(bad.to_string()),
            unplannable @ ControlError::Unplannable { .. } => Failure::User(unplannable.to_string()),
            unrenderable @ ControlError::Unrenderable { .. } => Failure::User(unrenderable.to_string()),
            ControlError::GitOps(e) => Failure::User(e.to_string()),
            ControlError::Artifact(e) => Failure::User(e.to_string()),
            anchor @ ControlError::Anchor(_) => Failure::User(anchor.to_string()),
        }
    }
}

impl From<CatalogError> for Failure {
    fn from(e: CatalogError) -> Failure {
        match e {
            CatalogError::Store(e) => Failure::Internal(e.into()),
            CatalogError::Corrupt { .. } => Failure::Internal(anyhow::anyhow!("{e}")),
            other => Failure::User(other.to_string()),
        }
    }
}

pub(crate) struct Ctx {
    pub(crate) format: Format,
    color: bool,
    state: String,
    pub(crate) actor: String,
    /// The store, once a command opened it; closed before exit.
    store: std::sync::OnceLock<Arc<dyn paved_store::Store>>,
    pub(crate) data_dir: PathBuf,
    /// The local runtime asked for (`--runtime`), if any.
    pub(crate) runtime: Option<crate::cli::Runtime>,
    /// How long to wait for another paved's lock on an environment.
    pub(crate) lock_timeout: std::time::Duration,
    /// This command as the audit log records it (one request id per run).
    pub(crate) request: paved_store::RequestContext,
    /// The key-encryption key of secrets (`--kek`).
    pub(crate) kek: paved_control::KekSource,
    /// Earlier KEKs still read (`--kek-previous`), during a rotation.
    pub(crate) kek_previous: Vec<paved_control::KekSource>,
    /// paved's public URL (`--public-url`): the issuer of its tokens.
    pub(crate) public_url: String,
}

pub(crate) fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname").map_or_else(|_| "localhost".into(), |h| h.trim().to_string())
}

/// Different for every run: the process's random hasher keys, mixed with its pid.
pub(crate) fn random_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    h.finish()
}

impl Ctx {
    /// Who holds an environment's lock while this command applies it.
    pub(crate) fn holder(&self) -> String {
        format!("{}@{}:{}", self.actor, hostname(), std::process::id())
    }

    pub(crate) fn caller(&self) -> paved_control::Caller {
        paved_control::Caller { actor: self.actor.clone(), request: self.request.clone() }
    }

    /// The operations shared with the server, over this command's store.
    pub(crate) async fn control(&self) -> Result<paved_control::Control, Failure> {
        // The issuer keeps the local key file when secrets move to a cloud KMS.
        let issuer_kek = if self.kek.is_local() {
            self.kek.clone()
        } else {
            paved_control::KekSource::File(self.data_dir.join("keys").join("kek"))
        };
        let settings = paved_control::Settings {
            runtime: self.runtime.map(|r| match r {
                crate::cli::Runtime::Docker => paved_control::RuntimeChoice::Docker,
                crate::cli::Runtime::Process => paved_control::RuntimeChoice::Process,
            }),
            kek: self.kek.clone(),
            kek_previous: self.kek_previous.clone(),
            issuer_kek,
            public_url: self.public_url.clone(),
            runner: runner_id(),
        };
        Ok(paved_control::Control::new(open_store(self).await?, self.local_config()?, Arc::new(SystemClock), settings))
    }

    pub(crate) fn local_config(&self) -> Result<paved_local::Config, Failure> {
        let exe = std::env::current_exe()
            .map_err(|e| Failure::Internal(anyhow::anyhow!("cannot find paved's own executable: {e}")))?;
        Ok(paved_local::Config { data_dir: self.data_dir.clone(), exe, pg_bin: None, provisioners: None })
    }
}

/// This machine, as local-provider environments are pinned to it:
/// `PAVED_RUNNER_ID`, else the host name.
fn runner_id() -> String {
    std::env::var("PAVED_RUNNER_ID").ok().filter(|r| !r.trim().is_empty()).unwrap_or_else(|| {
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .ok()
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "localhost".into())
    })
}

fn default_data_dir() -> PathBuf {
    dirs::data_dir().unwrap_or_else(std::env::temp_dir).join("paved")
}

pub async fn run(cli: Cli) -> Result<(), Failure> {
    let color = match cli.color {
        ColorChoice::Always => true,
        ColorChoice::Never => false,
        ColorChoice::Auto => std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none(),
    };
    let explicit_state = cli.state.is_some();
    let actor = cli.actor.or_else(|| std::env::var("USER").ok()).unwrap_or_else(|| "local".into());
    let data_dir = cli.data_dir.unwrap_or_else(default_data_dir);
    let kek = match &cli.kek {
        Some(source) => source.parse().map_err(|e: String| Failure::User(format!("--kek: {e}")))?,
        None => paved_control::KekSource::File(data_dir.join("keys").join("kek")),
    };
    let kek_previous = cli
        .kek_previous
        .iter()
        .map(|s| s.parse().map_err(|e: String| Failure::User(format!("--kek-previous: {e}"))))
        .collect::<Result<Vec<paved_control::KekSource>, Failure>>()?;
    let public_url = match (&cli.public_url, &cli.command) {
        (Some(url), _) => url.clone(),
        (None, Command::Server(args)) => format!("http://{}", args.listen),
        (None, _) => "http://127.0.0.1:7480".to_string(),
    };
    // A malformed issuer URL is a configuration error now, not a 503 later.
    paved_identity::IssuerConfig::new(&public_url).map_err(|e| Failure::User(format!("--public-url: {e}")))?;
    let ctx = Ctx {
        kek,
        kek_previous,
        public_url,
        format: cli.output,
        color,
        state: cli.state.unwrap_or_else(|| format!("sqlite://{}", data_dir.join("state.db").display())),
        actor,
        store: std::sync::OnceLock::new(),
        data_dir,
        runtime: cli.runtime,
        lock_timeout: cli.lock_timeout,
        request: paved_store::RequestContext {
            request_id: format!("{:016x}", random_u64()),
            origin: format!("cli@{}", hostname()),
        },
    };
    // Logged in to a server (and no --state given): the commands it serves go there.
    // Commands about this machine (up, down, logs, server, image, internal helpers) always run here.
    let machine_local = matches!(
        cli.command,
        Command::Schema { .. }
            | Command::Completions { .. }
            | Command::Supervise { .. }
            | Command::Watch { .. }
            | Command::Proxy { .. }
            | Command::Server(_)
            | Command::Up { .. }
            | Command::Down
            | Command::Image(_)
            | Command::Logs { .. }
            | Command::Login { .. }
            | Command::Logout
            | Command::Secret(crate::cli::SecretCommand::RotateKeys { .. })
            | Command::Account(crate::cli::AccountCommand::Check { .. })
            | Command::Identity(_)
    );
    let remote = if explicit_state || machine_local { None } else { crate::remote::Remote::load()? };
    if let Some(remote) = &remote {
        return remote_command(&ctx, remote, cli.command).await;
    }
    let command = match crate::deploy::Rollout::of(&ctx, cli.command) {
        Ok(what) => return crate::deploy::roll_out(&ctx, what).await,
        Err(other) => other,
    };
    let result = match command {
        Command::Login { server, token_file, ca_file, insecure_http } => {
            let args = crate::remote::LoginArgs {
                server: &server,
                token_file: token_file.as_deref(),
                ca_file: ca_file.as_deref(),
                insecure_http,
            };
            crate::remote::login(args).await
        }
        Command::Logout => crate::remote::logout(),
        Command::Whoami => crate::remote::whoami(&ctx, None).await,
        Command::Validate { files } => validate(&ctx, &files).await,
        Command::Apply { files, environment, all, parallelism, take_over } => {
            if !files.is_empty() {
                apply(&ctx, &files).await?;
            }
            if let (true, Some(env)) = (take_over, &environment) {
                crate::provision::take_over(&ctx, env).await?;
            }
            match (environment, all) {
                (Some(env), _) => crate::provision::apply_environments(&ctx, &[env], parallelism).await,
                (None, true) => crate::provision::apply_all(&ctx, parallelism).await,
                (None, false) => Ok(()),
            }
        }
        Command::Destroy { environment, parallelism } => {
            crate::provision::destroy(&ctx, &environment, parallelism).await
        }
        Command::Drift { environment: Some(environment), .. } => crate::provision::drift(&ctx, &environment).await,
        Command::Drift { environment: None, .. } => crate::provision::drift_all(&ctx).await,
        Command::Logs { service, environment, follow, container, tail } => {
            crate::provision::logs(&ctx, &service, &environment, container.as_deref(), follow, tail).await
        }
        Command::Up { specs, environment } => crate::provision::up(&ctx, &specs, &environment).await,
        Command::Down => crate::provision::down(&ctx).await,
        Command::Image(sub) => crate::provision::image(&ctx, sub).await,
        Command::Audit(sub) => crate::audit::run(&ctx, sub).await,
        Command::Server(args) => crate::server::serve(&ctx, args).await,
        Command::Token(sub) => crate::server::token(&ctx, sub).await,
        Command::Secret(sub) => crate::secret::run(&ctx, sub).await,
        Command::Account(sub) => crate::account::account(&ctx, sub).await,
        Command::Identity(sub) => crate::account::identity(&ctx, sub).await,
        Command::Supervise { .. } => Err(Failure::User("`__supervise` is started by paved itself".into())),
        Command::Watch { file } => paved_local::docker::liveness::main(&file).await.map_err(Failure::User),
        Command::Proxy { routes, listen, request_timeout } => {
            paved_local::proxy::serve(routes, listen, std::time::Duration::from_secs(request_timeout))
                .await
                .map_err(Failure::User)
        }
        Command::Export { format, environment, .. } if format == "kubernetes" => {
            crate::render::export(&ctx, &environment).await
        }
        Command::Export { format, environment, paved_url } if format == "argocd-notifications" => {
            crate::render::export_notifications(&ctx, &environment, paved_url.as_deref()).await
        }
        Command::Export { format: _, environment, .. } => crate::plan::export_terraform(&ctx, &environment).await,
        Command::Render { environment, dir } => crate::render::render(&ctx, &environment, &dir).await,
        Command::Deliver { environment } => crate::render::deliver(&ctx, &environment).await,
        Command::Get { kind, name } => get(&ctx, parse_kind(&kind)?, name.as_deref()).await,
        Command::Describe { kind, name } => describe(&ctx, parse_kind(&kind)?, &name).await,
        Command::Delete { kind, name } => delete(&ctx, parse_kind(&kind)?, &name).await,
        Command::History { kind, name: _, environment: Some(env) } => crate::deploy::history(&ctx, &kind, &env).await,
        Command::History { kind, name, environment: None } => {
            history(&ctx, parse_kind(&kind)?, &need_name(name)?).await
        }
        Command::Artifact(sub) => crate::deploy::artifact(&ctx, sub).await,
        Command::Status => crate::deploy::status(&ctx).await,
        // Taken by `Rollout::of` above.
        Command::Deploy { .. } | Command::Rollback { .. } | Command::Promote { .. } => {
            Err(Failure::Internal(anyhow::anyhow!("a rollout command reached the general dispatch")))
        }
        Command::Plan { environment, graph } => crate::plan::plan(&ctx, &environment, graph).await,
        Command::Parity { left, right } => crate::plan::parity(&ctx, &left, &right).await,
        Command::Policy(sub) => crate::policy::run(&ctx, sub, None).await,
        Command::Schema { kind } => {
            let schema = if kind.eq_ignore_ascii_case("policy-input") {
                paved_policy::input::schema()
            } else {
                paved_spec::schema::document_schema(parse_kind(&kind)?)
            };
            println!("{}", serde_json::to_string_pretty(&schema).map_err(|e| Failure::Internal(e.into()))?);
            Ok(())
        }
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "paved", &mut std::io::stdout());
            Ok(())
        }
    };
    if let Some(store) = ctx.store.get() {
        store.close().await;
    }
    result
}

/// A command while logged in to a server: what the API serves goes there;
/// the rest says how to proceed.
async fn remote_command(ctx: &Ctx, remote: &crate::remote::Remote, command: Command) -> Result<(), Failure> {
    use crate::remote as r;
    let command = match crate::deploy::Rollout::of(ctx, command) {
        Ok(what) => return r::roll_out(ctx, remote, what).await,
        Err(other) => other,
    };
    match command {
        Command::Whoami => r::whoami(ctx, Some(remote)).await,
        Command::Get { kind, name } => r::get(ctx, remote, parse_kind(&kind)?, name.as_deref()).await,
        Command::Delete { kind, name } => r::delete(ctx, remote, parse_kind(&kind)?, &name).await,
        Command::Apply { take_over: true, .. } => Err(Failure::User(
            "`apply --take-over` moves an environment to the machine paved runs on: run it there, without a server login"
                .into(),
        )),
        Command::Apply { files, environment, all, .. } => {
            if !files.is_empty() {
                let (sources, diags) = read_files(&files);
                if let Some(d) = diags.first() {
                    return Err(Failure::User(format!("{}: {}", d.file, d.message)));
                }
                r::record(ctx, remote, &sources).await?;
            }
            match (environment, all) {
                (Some(env), _) => r::run(ctx, remote, &env, false).await,
                (None, true) => {
                    Err(Failure::User("`apply --all` runs embedded only; apply environments one by one".into()))
                }
                (None, false) => Ok(()),
            }
        }
        Command::Destroy { environment, .. } => r::run(ctx, remote, &environment, true).await,
        Command::Drift { environment: Some(environment), .. } => r::drift(ctx, remote, &environment).await,
        Command::Drift { environment: None, .. } => Err(Failure::User(
            "`paved drift --all` runs where the state is (not against --server); ask per environment with -e".into(),
        )),
        Command::Audit(sub) => r::audit(ctx, remote, sub).await,
        Command::Plan { environment, graph: false } => r::plan(ctx, remote, &environment).await,
        Command::Parity { left, right } => r::parity(ctx, remote, &left, &right).await,
        Command::Render { environment, dir } => r::render(ctx, remote, &environment, &dir).await,
        Command::Export { format, environment, .. } if format == "kubernetes" => {
            r::export_kubernetes(remote, &environment).await
        }
        Command::Deliver { environment } => r::deliver(ctx, remote, &environment).await,
        Command::History { kind, name, environment: None } => {
            r::history(ctx, remote, parse_kind(&kind)?, &need_name(name)?).await
        }
        Command::History { kind, name: _, environment: Some(env) } => {
            r::deployment_history(ctx, remote, &kind, &env).await
        }
        Command::Status => r::status(ctx, remote).await,
        Command::Policy(sub) => crate::policy::run(ctx, sub, Some(remote)).await,
        Command::Token(sub) => r::token(ctx, remote, sub).await,
        Command::Secret(sub) => r::secret(ctx, remote, sub).await,
        Command::Account(crate::cli::AccountCommand::TrustPolicy { name, control_plane }) => {
            let path = format!("/api/v1/accounts/{}/trust-policy?control_plane={control_plane}", r::encode(&name));
            let setup = serde_json::from_value(remote.get(&path).await?)
                .map_err(|e| Failure::User(format!("unexpected answer from the server: {e}")))?;
            crate::account::print_trust(ctx, &setup);
            Ok(())
        }
        other => Err(Failure::User(format!(
            "`paved {}` does not go through the server yet (its API does: see {}/api/v1/openapi.json); \
             `paved logout` to run it on local state",
            format!("{other:?}").split([' ', '{', '(']).next().unwrap_or("").to_lowercase(),
            remote.server
        ))),
    }
}

fn parse_kind(s: &str) -> Result<Kind, Failure> {
    Kind::from_cli(s).ok_or_else(|| {
        Failure::User(format!(
            "unknown kind `{s}`; use one of blueprint, account, environment (env), team, rolebinding, service (svc)"
        ))
    })
}

pub(crate) async fn open_store(ctx: &Ctx) -> Result<Arc<dyn paved_store::Store>, Failure> {
    if let Some(store) = ctx.store.get() {
        return Ok(store.clone());
    }
    let store = SqlStore::open(&ctx.state).await.map_err(|e| match e {
        paved_store::StoreError::BadUrl(_) => Failure::User(e.to_string()),
        other => Failure::Internal(other.into()),
    })?;
    Ok(ctx.store.get_or_init(|| Arc::new(store)).clone())
}

pub(crate) async fn open(ctx: &Ctx) -> Result<Catalog, Failure> {
    Ok(Catalog::new(open_store(ctx).await?, Arc::new(SystemClock)).with_request(ctx.request.clone()))
}

/// Reads `-f` arguments; `-` is standard input.
pub(crate) fn read_files(files: &[PathBuf]) -> (Vec<SourceFile>, Vec<Diagnostic>) {
    let mut sources = Vec::new();
    let mut diags = Vec::new();
    for f in files {
        if f.as_os_str() == "-" {
            let mut text = String::new();
            match std::io::stdin().take(paved_spec::source::MAX_FILE_BYTES + 1).read_to_string(&mut text) {
                Ok(_) => sources.push(SourceFile::new("<stdin>", text)),
                Err(e) => diags.push(Diagnostic::error(
                    "unreadable",
                    format!("cannot read standard input: {e}"),
                    "<stdin>",
                    Default::default(),
                )),
            }
        } else {
            let (mut s, mut d) = paved_spec::read_path(f);
            sources.append(&mut s);
            diags.append(&mut d);
        }
    }
    // A Score file's `source:` names a file beside it, which only this machine can read.
    for s in &mut sources {
        let dir = match s.path.as_str() {
            "<stdin>" => PathBuf::from("."),
            path => std::path::Path::new(path).parent().map(PathBuf::from).unwrap_or_default(),
        };
        diags.extend(paved_spec::source::inline_file_sources(s, &dir, None));
    }
    (sources, diags)
}

#[derive(Serialize)]
struct DiagnosticsReport<'a> {
    valid: bool,
    documents: usize,
    errors: usize,
    warnings: usize,
    diagnostics: &'a [Diagnostic],
}

/// Prints diagnostics (to stderr for people, stdout as JSON/YAML for machines).
pub(crate) fn report_diagnostics(ctx: &Ctx, batch: &Batch) {
    let errors = batch.diagnostics.iter().filter(|d| d.severity == Severity::Error).count();
    let warnings = batch.diagnostics.len() - errors;
    let report = DiagnosticsReport {
        valid: errors == 0,
        documents: batch.documents.len(),
        errors,
        warnings,
        diagnostics: &batch.diagnostics,
    };
    if let Some(text) = structured(ctx.format, &report) {
        println!("{text}");
        return;
    }
    if !batch.diagnostics.is_empty() {
        eprint!("{}", paved_spec::diagnostic::render(&batch.diagnostics, &batch.sources, ctx.color));
    }
    if errors > 0 {
        eprintln!(
            "error: {errors} error(s), {warnings} warning(s) in {} file(s); nothing was recorded",
            batch.sources.len()
        );
    }
}

async fn validate(ctx: &Ctx, files: &[PathBuf]) -> Result<(), Failure> {
    let (sources, read_diags) = read_files(files);
    // Validate against recorded state when there is some; never create a store for it.
    let sqlite_missing = ctx.state.strip_prefix("sqlite://").is_some_and(|p| !std::path::Path::new(p).exists());
    let batch = if sqlite_missing {
        paved_spec::check_sources(sources, read_diags, &[])
    } else {
        open(ctx).await?.validate(sources, read_diags).await?
    };
    report_diagnostics(ctx, &batch);
    if batch.has_errors() {
        return Err(Failure::Reported);
    }
    if ctx.format == Format::Table {
        println!("{} document(s) in {} file(s) are valid", batch.documents.len(), batch.sources.len());
    }
    Ok(())
}

async fn apply(ctx: &Ctx, files: &[PathBuf]) -> Result<(), Failure> {
    record(ctx, files, true).await
}

/// Records specs and prints only the counts (`paved up`).
pub(crate) async fn apply_quiet(ctx: &Ctx, files: &[PathBuf]) -> Result<(), Failure> {
    record(ctx, files, false).await
}

async fn record(ctx: &Ctx, files: &[PathBuf], verbose: bool) -> Result<(), Failure> {
    let (sources, read_diags) = read_files(files);
    let catalog = open(ctx).await?;
    let report = match catalog.apply(sources, read_diags, &ctx.actor).await {
        Ok(r) => r,
        Err(CatalogError::Invalid(batch)) => {
            report_diagnostics(ctx, &batch);
            return Err(Failure::Reported);
        }
        Err(e) => return Err(e.into()),
    };
    if let Some(text) = structured(ctx.format, &report.outcomes).filter(|_| verbose) {
        println!("{text}");
        return Ok(());
    }
    if ctx.format != Format::Table {
        return Ok(());
    }
    if !report.batch.diagnostics.is_empty() {
        eprint!("{}", paved_spec::diagnostic::render(&report.batch.diagnostics, &report.batch.sources, ctx.color));
    }
    let mut counts = [0usize; 3];
    for o in &report.outcomes {
        let (word, idx) = match o.action {
            Action::Created => ("created", 0),
            Action::Updated => ("updated", 1),
            Action::Unchanged => ("unchanged", 2),
        };
        counts[idx] += 1;
        if verbose {
            println!("{}/{} {word} (generation {})", o.kind.as_str().to_lowercase(), o.name, o.generation);
        }
    }
    let prefix = if verbose { "" } else { "specs: " };
    println!("{prefix}{} created, {} updated, {} unchanged", counts[0], counts[1], counts[2]);
    Ok(())
}

/// An object as shown by `get -o json|yaml` and `describe -o json|yaml`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ObjectView {
    kind: Kind,
    name: String,
    generation: i64,
    content_hash: String,
    updated_at: String,
    updated_by: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    source: Option<String>,
    document: serde_json::Value,
}

fn view(o: &Object) -> ObjectView {
    ObjectView {
        kind: o.spec.kind(),
        name: o.record.name.clone(),
        generation: o.record.generation,
        content_hash: o.record.content_hash.clone(),
        updated_at: timestamp(o.record.created_at),
        updated_by: o.record.actor.clone(),
        source: o.record.source.clone(),
        document: o.spec.to_document(),
    }
}

fn columns(kind: Kind) -> &'static [&'static str] {
    match kind {
        Kind::Blueprint => &["NAME", "VERSION", "PARAMETERS", "RUNTIME", "GEN", "UPDATED"],
        Kind::CloudAccount => &["NAME", "PROVIDER", "ACCOUNT", "REGIONS", "GEN", "UPDATED"],
        Kind::Environment => &["NAME", "TYPE", "BLUEPRINT", "ACCOUNT", "REGION", "OWNER", "GEN", "UPDATED"],
        Kind::Team => &["NAME", "MEMBERS", "SERVICES", "GEN", "UPDATED"],
        Kind::RoleBinding => &["NAME", "ROLE", "SCOPE", "PRODUCTION", "SUBJECTS", "GEN", "UPDATED"],
        Kind::Service => &["NAME", "OWNER", "CONTAINERS", "RESOURCES", "GEN", "UPDATED"],
        Kind::Policy => &["NAME", "VERSION", "ENFORCEMENT", "DECISIONS", "GEN", "UPDATED"],
        Kind::PolicyException => &["NAME", "POLICY", "RULES", "ENVIRONMENTS", "OWNER", "EXPIRES", "GEN", "UPDATED"],
    }
}

fn row(o: &Object) -> Vec<String> {
    let gen_ = o.record.generation.to_string();
    let at = timestamp(o.record.created_at);
    let mut r = match &o.spec {
        Spec::Blueprint(b) => vec![
            b.metadata.name.clone(),
            b.spec.version.clone(),
            b.spec.parameters.keys().cloned().collect::<Vec<_>>().join(","),
            serde_json::to_value(b.spec.compute.runtime)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default(),
        ],
        Spec::CloudAccount(a) => vec![
            a.metadata.name.clone(),
            a.spec.provider.as_str().to_string(),
            a.spec.account_id.clone().unwrap_or_else(|| "-".into()),
            a.spec.allowed_regions.join(","),
        ],
        Spec::Environment(e) => vec![
            e.metadata.name.clone(),
            e.spec.env_type.to_string(),
            e.spec.blueprint.0.clone(),
            e.spec.account.clone(),
            e.spec.region.clone(),
            e.spec.owner.clone(),
        ],
        Spec::Team(t) => vec![t.metadata.name.clone(), t.spec.members.len().to_string(), t.spec.services.join(",")],
        Spec::RoleBinding(b) => vec![
            b.metadata.name.clone(),
            b.spec.role.to_string(),
            b.spec.scope.to_string(),
            if b.spec.production { "yes" } else { "no" }.into(),
            b.spec.subjects.iter().map(|s| s.0.as_str()).collect::<Vec<_>>().join(","),
        ],
        Spec::Service(w) => vec![
            w.metadata.name.clone(),
            w.annotation(paved_model::score::ANNOTATION_OWNER).unwrap_or("-").to_string(),
            w.containers.keys().cloned().collect::<Vec<_>>().join(","),
            w.resources.iter().map(|(n, r)| format!("{n}:{}", r.kind)).collect::<Vec<_>>().join(","),
        ],
        Spec::Policy(p) => vec![
            p.metadata.name.clone(),
            p.spec.version.clone(),
            serde_json::to_value(p.spec.enforcement)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default(),
            if p.spec.decisions.is_empty() {
                "all".into()
            } else {
                p.spec.decisions.iter().map(|d| d.as_str()).collect::<Vec<_>>().join(",")
            },
        ],
        Spec::PolicyException(e) => {
            let all = |v: &[String]| if v.is_empty() { "all".to_string() } else { v.join(",") };
            vec![
                e.metadata.name.clone(),
                e.spec.policy.clone(),
                all(&e.spec.rules),
                all(&e.spec.environments),
                e.spec.owner.0.clone(),
                e.spec.expires.clone(),
            ]
        }
    };
    r.push(gen_);
    r.push(at);
    r
}

async fn get(ctx: &Ctx, kind: Kind, name: Option<&str>) -> Result<(), Failure> {
    let catalog = open(ctx).await?;
    let objects = match name {
        Some(n) => vec![catalog.get(kind, n).await?],
        None => catalog.list(Some(kind)).await?,
    };
    print_objects(ctx, kind, name.is_some(), &objects);
    Ok(())
}

/// `paved get` output, embedded or from a server.
pub(crate) fn print_objects(ctx: &Ctx, kind: Kind, one: bool, objects: &[Object]) {
    let views: Vec<ObjectView> = objects.iter().map(view).collect();
    let out = match views.first() {
        Some(first) if one => structured(ctx.format, first),
        _ => structured(ctx.format, &views),
    };
    if let Some(text) = out {
        println!("{text}");
    } else if objects.is_empty() {
        eprintln!("no {} recorded yet; record some with `paved apply -f PATH`", kind.as_str());
    } else {
        println!("{}", table(columns(kind), objects.iter().map(row).collect()));
    }
}

async fn describe(ctx: &Ctx, kind: Kind, name: &str) -> Result<(), Failure> {
    let catalog = open(ctx).await?;
    let object = catalog.get(kind, name).await?;
    let all: Vec<Spec> = catalog.list(None).await?.into_iter().map(|o| o.spec).collect();
    let dependents = paved_spec::dependents(&all, kind, &object.record.name);
    if let Some(text) = structured(ctx.format, &view(&object)) {
        println!("{text}");
        return Ok(());
    }
    let r = &object.record;
    println!("Kind:        {}", kind.as_str());
    println!("Name:        {}", r.name);
    println!("Generation:  {}", r.generation);
    println!("Content:     {}", r.content_hash);
    println!("Updated:     {} by {}", timestamp(r.created_at), r.actor);
    if let Some(src) = &r.source {
        println!("Source:      {src}");
    }
    if let Spec::Environment(env) = &object.spec
        && let Some(Spec::Blueprint(bp)) =
            all.iter().find(|s| matches!(s, Spec::Blueprint(_)) && s.object_name() == env.spec.blueprint.0)
    {
        println!("Parameters:");
        let rows = bp
            .spec
            .parameters
            .iter()
            .map(|(pname, p)| {
                let show = |v: &serde_json::Value| v.as_str().map_or_else(|| v.to_string(), str::to_string);
                let (value, origin) = match env.spec.parameters.get(pname) {
                    Some(v) => (show(v), "set by environment".to_string()),
                    None => (
                        p.default_for(env.spec.env_type).map(show).unwrap_or_else(|| "-".into()),
                        format!("{} default", env.spec.env_type),
                    ),
                };
                vec![format!("  {pname}"), value, origin]
            })
            .collect();
        println!("{}", table(&["  NAME", "VALUE", "FROM"], rows));
    }
    if !dependents.is_empty() {
        println!("Used by:");
        for (k, n) in &dependents {
            println!("  {} {n}", k.as_str());
        }
    }
    println!("Spec:");
    let yaml = paved_spec::render::to_yaml_string(&[object.spec.to_document()]);
    for line in yaml.lines().filter(|l| *l != "---") {
        println!("  {line}");
    }
    Ok(())
}

async fn delete(ctx: &Ctx, kind: Kind, name: &str) -> Result<(), Failure> {
    let result = delete_object(ctx, kind, name).await;
    if let Err(e) = &result
        && let Err(audit) =
            crate::audit::record_failure(ctx, "spec.delete", format!("{}/{name}", kind.as_str()), e).await
    {
        eprintln!("warning: the refused delete could not be recorded in the audit log: {audit:?}");
    }
    result
}

async fn delete_object(ctx: &Ctx, kind: Kind, name: &str) -> Result<(), Failure> {
    let catalog = open(ctx).await?;
    let tomb = ctx.control().await?.delete_spec(&catalog, kind, name, &ctx.actor, None).await?;
    #[derive(Serialize)]
    struct Deleted<'a> {
        kind: Kind,
        name: &'a str,
        generation: i64,
    }
    match structured(ctx.format, &Deleted { kind, name: &tomb.name, generation: tomb.generation }) {
        Some(text) => println!("{text}"),
        None => println!(
            "{}/{} deleted (generation {}; history kept)",
            kind.as_str().to_lowercase(),
            tomb.name,
            tomb.generation
        ),
    }
    Ok(())
}

/// `paved history KIND NAME`: the name is optional only with `-e`.
fn need_name(name: Option<String>) -> Result<String, Failure> {
    name.ok_or_else(|| {
        Failure::User(
            "name what to show: `paved history KIND NAME`, or `paved history SERVICE -e ENV` for deployments".into(),
        )
    })
}

async fn history(ctx: &Ctx, kind: Kind, name: &str) -> Result<(), Failure> {
    let catalog = open(ctx).await?;
    let records = catalog.history(kind, name).await?;
    print_history(ctx, &records);
    Ok(())
}

/// `paved history` output, embedded or from a server.
pub(crate) fn print_history(ctx: &Ctx, records: &[paved_store::Record]) {
    if let Some(text) = structured(ctx.format, &records) {
        println!("{text}");
        return;
    }
    let rows = records
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let change = if r.deleted {
                "deleted"
            } else if i == 0 || records[i - 1].deleted {
                "created"
            } else {
                "updated"
            };
            vec![
                r.generation.to_string(),
                change.to_string(),
                if r.deleted { "-".into() } else { short_hash(&r.content_hash) },
                timestamp(r.created_at),
                r.actor.clone(),
                r.source.clone().unwrap_or_else(|| "-".into()),
            ]
        })
        .collect();
    println!("{}", table(&["GEN", "CHANGE", "CONTENT", "AT", "BY", "SOURCE"], rows));
}
