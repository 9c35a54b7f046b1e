//! `paved secret`: set (stdin or a file, never an argument), list, history,
//! reveal, delete, rotate-keys — embedded or through the server.

use crate::Failure;
use crate::cli::{SecretCommand, SecretScope};
use crate::commands::Ctx;
use crate::output::{structured, table, timestamp};
use paved_secrets::{RotateOptions, RotationPhase, Scope, SecretInfo, SecretValue};
use std::io::{IsTerminal, Read};

impl From<&SecretScope> for Scope {
    fn from(s: &SecretScope) -> Scope {
        Scope { environment: s.environment.clone(), service: s.service.clone().filter(|s| !s.is_empty()) }
    }
}

/// Refuses a value given as an argument, before anything else happens.
pub(crate) fn refuse_argument(value: &Option<String>, name: &str, scope: &SecretScope) -> Result<(), Failure> {
    match value {
        Some(_) => Err(Failure::User(format!(
            "refusing a secret value on the command line: it would stay in your shell history and be visible to \
             other users in `ps`. Pipe it in instead: `printf %s \"$VALUE\" | paved secret set {name} -e {}`, \
             or use --from-file PATH",
            scope.environment
        ))),
        None => Ok(()),
    }
}

/// The value from `--from-env`, `--from-file` (as is) or standard input
/// (one trailing newline removed, as `echo` and terminals add one).
pub(crate) fn read_value(from_file: Option<&std::path::Path>, from_env: Option<&str>) -> Result<SecretValue, Failure> {
    if let Some(var) = from_env {
        return match std::env::var_os(var) {
            Some(v) if !v.is_empty() => Ok(SecretValue(std::os::unix::ffi::OsStringExt::into_vec(v))),
            _ => Err(Failure::User(format!("--from-env: the variable `{var}` is not set or empty"))),
        };
    }
    if let Some(path) = from_file {
        let bytes = std::fs::read(path).map_err(|e| Failure::User(format!("cannot read {}: {e}", path.display())))?;
        return Ok(SecretValue(bytes));
    }
    let stdin = std::io::stdin();
    let mut bytes = Vec::new();
    let read = if stdin.is_terminal() {
        eprintln!("Enter the value (not shown), then Enter and Ctrl-D; or pipe it in / use --from-file:");
        let _hidden = NoEcho::on_stdin();
        stdin.lock().read_to_end(&mut bytes)
    } else {
        stdin.lock().read_to_end(&mut bytes)
    };
    read.map_err(|e| Failure::User(format!("cannot read standard input: {e}")))?;
    if bytes.last() == Some(&b'\n') {
        bytes.pop();
        if bytes.last() == Some(&b'\r') {
            bytes.pop();
        }
    }
    if bytes.is_empty() {
        return Err(Failure::User("the value is empty: nothing was read from standard input".into()));
    }
    Ok(SecretValue(bytes))
}

/// Turns the terminal's echo off until dropped, so a typed value is not shown.
struct NoEcho(Option<libc::termios>);

impl NoEcho {
    fn on_stdin() -> NoEcho {
        // SAFETY: tcgetattr/tcsetattr on fd 0 with a zeroed, then filled, termios.
        unsafe {
            let mut saved: libc::termios = std::mem::zeroed();
            if libc::tcgetattr(0, &mut saved) != 0 {
                return NoEcho(None);
            }
            let mut quiet = saved;
            quiet.c_lflag &= !libc::ECHO;
            if libc::tcsetattr(0, libc::TCSANOW, &quiet) != 0 {
                return NoEcho(None);
            }
            NoEcho(Some(saved))
        }
    }
}

impl Drop for NoEcho {
    fn drop(&mut self) {
        if let Some(saved) = self.0 {
            // SAFETY: restores the attributes read in `on_stdin`.
            unsafe { libc::tcsetattr(0, libc::TCSANOW, &saved) };
            eprintln!();
        }
    }
}

pub(crate) fn print_infos(ctx: &Ctx, infos: &[SecretInfo]) {
    if let Some(text) = structured(ctx.format, &infos) {
        println!("{text}");
        return;
    }
    let rows = infos
        .iter()
        .map(|i| {
            vec![
                i.name.clone(),
                i.service.clone().unwrap_or_else(|| "-".into()),
                i.version.to_string(),
                timestamp(i.created_at),
                i.created_by.clone(),
                if i.deleted { "deleted" } else { "" }.to_string(),
            ]
        })
        .collect();
    println!("{}", table(&["NAME", "SERVICE", "VERSION", "SET AT", "SET BY", ""], rows));
}

pub(crate) fn print_stored(ctx: &Ctx, info: &SecretInfo) {
    if let Some(text) = structured(ctx.format, info) {
        println!("{text}");
        return;
    }
    let what = if info.deleted { "deleted" } else { "stored" };
    let service = info.service.as_ref().map(|s| format!(" (service {s})")).unwrap_or_default();
    println!("{what} {} version {} in {}{service}", info.name, info.version, info.environment);
}

/// Prints a revealed value: raw on a table output (for `$(…)` and pipes),
/// else with what it is.
pub(crate) fn print_revealed(ctx: &Ctx, info: &SecretInfo, value: &SecretValue) {
    let text = String::from_utf8_lossy(&value.0);
    let mut doc = serde_json::to_value(info).unwrap_or_default();
    doc["value"] = serde_json::Value::String(text.to_string());
    match structured(ctx.format, &doc) {
        Some(out) => println!("{out}"),
        None => println!("{text}"),
    }
}

pub async fn run(ctx: &Ctx, command: SecretCommand) -> Result<(), Failure> {
    let control = ctx.control().await?;
    let caller = ctx.caller();
    match command {
        SecretCommand::Set { name, value, scope, from_file, from_env } => {
            refuse_argument(&value, &name, &scope)?;
            let value = read_value(from_file.as_deref(), from_env.as_deref())?;
            let info = control.set_secret(&caller, &Scope::from(&scope), &name, &value).await?;
            print_stored(ctx, &info);
        }
        SecretCommand::List { environment, service } => {
            print_infos(ctx, &control.list_secrets(&environment, service.as_deref()).await?);
        }
        SecretCommand::History { name, scope } => {
            print_infos(ctx, &control.secret_history(&Scope::from(&scope), &name).await?);
        }
        SecretCommand::Reveal { name, scope, version } => {
            let (info, value) = control.reveal_secret(&caller, &Scope::from(&scope), &name, version).await?;
            print_revealed(ctx, &info, &value);
        }
        SecretCommand::Delete { name, scope } => {
            print_stored(ctx, &control.delete_secret(&caller, &Scope::from(&scope), &name).await?);
        }
        SecretCommand::RotateKeys { to, batch_size, max_writes } => {
            let to = to.map(|t| t.parse::<paved_control::KekSource>()).transpose().map_err(Failure::User)?;
            let bar = indicatif::ProgressBar::new_spinner();
            if !std::io::stderr().is_terminal() {
                bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
            }
            let report_progress = |phase: RotationPhase, done: usize| {
                let what = match phase {
                    RotationPhase::Rewrapping => "keys re-wrapped",
                    RotationPhase::NewDataKeys => "new data keys",
                    RotationPhase::Resealing => "values re-sealed",
                    RotationPhase::Cleaning => "removing retired keys",
                };
                bar.set_message(format!("{what}: {done}"));
                bar.tick();
                // Plain lines too, so a log (or a test) sees how far it got.
                if !std::io::stderr().is_terminal() && done > 0 {
                    eprintln!("{what}: {done}");
                }
            };
            let opts = RotateOptions { batch_size, stop_after: max_writes, rewrap_signing_keys: true };
            let report = control.rotate_keys(&caller, to.as_ref(), opts, &report_progress).await?;
            bar.finish_and_clear();
            if let Some(text) = structured(ctx.format, &report) {
                println!("{text}");
            } else {
                println!(
                    "{}: {} key(s) re-wrapped, {} new data key(s), {} value(s) re-sealed, {} retired key(s) removed",
                    if report.finished { "rotated" } else { "stopped (run again to continue)" },
                    report.rewrapped,
                    report.new_data_keys,
                    report.resealed,
                    report.retired_keys_removed
                );
                if report.finished
                    && let Some(to) = &to
                {
                    println!("data keys are wrapped by {to} only now; use --kek {to} (or PAVED_KEK) from here on");
                }
            }
        }
    }
    Ok(())
}
