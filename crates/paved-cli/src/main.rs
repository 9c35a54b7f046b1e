//! The `paved` binary: parses arguments and wires the library crates.

mod account;
mod audit;
mod cli;
mod commands;
mod deploy;
mod output;
mod plan;
mod policy;
mod progress;
mod provision;
mod remote;
mod render;
mod secret;
mod server;

use clap::Parser;
use std::process::ExitCode;

/// Rust ignores SIGPIPE, which turns `paved plan | head` into a panic on the
/// next write. Restore the default so a closed pipe ends paved quietly, as it
/// does any other Unix tool.
fn restore_sigpipe() {
    #[cfg(unix)]
    // SAFETY: called first thing in main, before any thread exists; resetting a
    // signal disposition to its default has no other effect.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

/// A failure with the exit code it maps to.
#[derive(Debug)]
pub enum Failure {
    /// Bad input, unknown objects, refused changes: exit code 1.
    User(String),
    /// Already reported (e.g. diagnostics printed): exit code 1.
    Reported,
    /// Anything else (the store is unreachable, a bug): exit code 2.
    Internal(anyhow::Error),
    /// `paved drift` found differences (already printed): exit code 3.
    Drift,
}

fn main() -> ExitCode {
    restore_sigpipe();
    let cli = match cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            // --help and --version are successes; usage mistakes are user errors.
            return if e.use_stderr() { ExitCode::from(1) } else { ExitCode::SUCCESS };
        }
    };
    // The supervisor forks: it must start before any thread exists.
    if let cli::Command::Supervise { dir } = &cli.command {
        return match paved_local::supervisor::main(dir) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: supervisor of {}: {e}", dir.display());
                ExitCode::from(2)
            }
        };
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(commands::run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Reported) => ExitCode::from(1),
        Err(Failure::Drift) => ExitCode::from(3),
        Err(Failure::User(msg)) => {
            eprintln!("error: {msg}");
            ExitCode::from(1)
        }
        Err(Failure::Internal(e)) => {
            eprintln!("internal error: {e:#}");
            ExitCode::from(2)
        }
    }
}
