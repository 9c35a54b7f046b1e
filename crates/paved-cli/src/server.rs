//! `paved server` and `paved token`.

use crate::Failure;
use crate::cli::{ServerArgs, TokenCommand};
use crate::commands::Ctx;
use crate::output::{structured, table, timestamp};
use std::num::NonZeroU32;

/// Structured logs on standard error: JSON lines (one per request, with its
/// request id) unless `--log-format text`; `PAVED_LOG` filters (e.g. `warn`,
/// `paved_server=debug`).
fn init_logs(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("PAVED_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_target(false);
    let _ = if json { builder.json().try_init() } else { builder.try_init() };
}

pub async fn serve(ctx: &Ctx, args: ServerArgs) -> Result<(), Failure> {
    if args.lease_ttl < std::time::Duration::from_secs(1) {
        return Err(Failure::User(format!(
            "--lease-ttl {:?} is too short: the lease is renewed every third of it; give at least 1s (default 15s)",
            args.lease_ttl
        )));
    }
    if args.operation_heartbeat < std::time::Duration::from_millis(100) {
        return Err(Failure::User(format!(
            "--operation-heartbeat {:?} is too short: each beat writes to the store; give at least 100ms (default 5s)",
            args.operation_heartbeat
        )));
    }
    init_logs(args.log_format == crate::cli::LogFormat::Json);
    let control = ctx.control().await?;
    let bootstrap_file = args.bootstrap_token_file.unwrap_or_else(|| ctx.data_dir.join("bootstrap-admin.token"));
    let fail = |e: paved_server::ServerError| Failure::User(e.to_string());
    let boot = paved_server::bootstrap(&control, &bootstrap_file, args.bootstrap_grace).await.map_err(fail)?;
    if let Some(path) = &boot.written {
        eprintln!("paved server: bootstrap admin token written to {} (mode 0600)", path.display());
    }
    if let Some(mode) = boot.tightened {
        eprintln!(
            "paved server: warning: {} had mode {mode:04o}; set back to 0600 (only paved's user may read it)",
            bootstrap_file.display()
        );
    }
    if let Some(at) = boot.expires {
        eprintln!(
            "paved server: the bootstrap admin token stops working at {} (organisation admins have tokens of their own)",
            crate::output::timestamp(at)
        );
    }
    let github_webhook_secret =
        args.github_webhook_secret_file.as_deref().map(|p| read_secret(p, "the webhook secret")).transpose()?;
    let notify_secret = args
        .notify_secret_file
        .as_deref()
        .map(|p| read_secret(p, "the notification secret"))
        .transpose()?
        .unwrap_or_default();
    let config = paved_server::ServerConfig {
        github_webhook_secret,
        notify_urls: args.notify_urls.clone(),
        notify_secret,
        git_interval: args.git_interval,
        listen: args.listen,
        body_limit: args.body_limit,
        request_timeout: args.request_timeout,
        rate_per_second: NonZeroU32::new(args.rate_limit).unwrap_or(NonZeroU32::MIN),
        rate_burst: NonZeroU32::new(args.rate_burst).unwrap_or(NonZeroU32::MIN),
        parallelism: args.parallelism as usize,
        reconcile_interval: Some(args.reconcile_interval).filter(|d| !d.is_zero()),
        bootstrap_grace: args.bootstrap_grace,
        operation_retention: args.operation_retention,
        metrics_refresh: args.metrics_refresh,
        audit_checkpoint_interval: Some(args.audit_checkpoint_interval).filter(|d| !d.is_zero()),
        replica_id: args.replica_id.clone(),
        lease_ttl: args.lease_ttl,
        operation_heartbeat: args.operation_heartbeat,
        ..paved_server::ServerConfig::default()
    };
    let state = paved_server::AppState::new(control, config);
    eprintln!("paved server: listening on http://{} (API /api/v1, OpenAPI /api/v1/openapi.json)", args.listen);
    let issuer = ctx.public_url.trim_end_matches('/');
    eprintln!("paved server: OIDC issuer {issuer} (/.well-known/openid-configuration)");
    let loopback = ["http://127.0.0.1", "http://localhost", "http://[::1]"].iter().any(|p| issuer.starts_with(p));
    if !issuer.starts_with("https://") && !loopback {
        eprintln!(
            "paved server: warning: clouds only trust an https issuer; set --public-url https://… (behind a TLS proxy) \
             before installing `paved account trust-policy`"
        );
    }
    let shutdown = async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        let sigterm = async {
            match term.as_mut() {
                Some(s) => {
                    s.recv().await;
                }
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = sigterm => {}
        }
        eprintln!("paved server: stopping; running applies finish their current steps");
    };
    paved_server::serve(state, shutdown).await.map_err(fail)?;
    eprintln!("paved server: stopped");
    Ok(())
}

pub async fn token(ctx: &Ctx, command: TokenCommand) -> Result<(), Failure> {
    let control = ctx.control().await?;
    match command {
        TokenCommand::Create { name, subject, expires } => {
            let (token, secret) = control.issue_token(&ctx.caller(), &name, &subject, expires).await?;
            print_issued(ctx, &token, &secret);
        }
        TokenCommand::List => {
            let tokens = control.store.list_tokens().await.map_err(|e| Failure::Internal(e.into()))?;
            print_tokens(ctx, &tokens);
        }
        TokenCommand::Revoke { id } => {
            if !control.revoke_token(&ctx.caller(), &id).await? {
                return Err(Failure::User(format!("no live token `{id}` (`paved token list` shows them)")));
            }
            println!("revoked {id}");
        }
    }
    Ok(())
}

/// A new token, its secret printed once (on stdout, so it can be piped).
pub(crate) fn print_issued(ctx: &Ctx, token: &paved_store::ApiToken, secret: &str) {
    if let Some(text) = structured(ctx.format, &serde_json::json!({"token": token, "secret": secret})) {
        println!("{text}");
    } else {
        eprintln!("issued {} for {} — the secret below is shown once:", token.id, token.subject);
        println!("{secret}");
    }
}

/// `paved token list` output, embedded or from a server.
pub(crate) fn print_tokens(ctx: &Ctx, tokens: &[paved_store::ApiToken]) {
    if let Some(text) = structured(ctx.format, &tokens) {
        println!("{text}");
        return;
    }
    let now = time::OffsetDateTime::now_utc();
    let rows = tokens
        .iter()
        .map(|t| {
            vec![
                t.id.clone(),
                t.name.clone(),
                t.subject.clone(),
                timestamp(t.created_at),
                t.expires_at.map_or("never".into(), timestamp),
                t.unusable_at(now).unwrap_or("active").to_string(),
            ]
        })
        .collect();
    println!("{}", table(&["ID", "NAME", "SUBJECT", "CREATED", "EXPIRES", "STATE"], rows));
}

/// A shared secret from a file (trimmed; an empty one is refused).
fn read_secret(path: &std::path::Path, what: &str) -> Result<Vec<u8>, Failure> {
    let secret =
        std::fs::read(path).map_err(|e| Failure::User(format!("cannot read {what} {}: {e}", path.display())))?;
    let secret = secret.trim_ascii().to_vec();
    if secret.is_empty() {
        return Err(Failure::User(format!("{what} file {} is empty", path.display())));
    }
    Ok(secret)
}
