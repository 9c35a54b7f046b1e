//! Command-line arguments.

use clap::{Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(
    name = "paved",
    version,
    about = "paved — a self-hosted internal developer platform",
    long_about = "paved records blueprints, cloud accounts, environments, teams and Score workloads as versioned \
desired state, validates them with precise diagnostics, and (in later versions) plans and applies them.",
    after_help = "Examples:\n  paved validate -f examples/\n  paved apply -f examples/\n  paved get environments\n  \
paved describe environment eu-production\n  paved history blueprint web-service-standard\n  paved schema Environment > environment.schema.json\n\n\
State defaults to SQLite under your data directory; use --state postgres://USER@HOST/DB for PostgreSQL.\n\
Exit codes: 0 success, 1 user error (invalid specs, unknown objects), 2 internal error."
)]
pub struct Cli {
    /// Output format.
    #[arg(short, long, global = true, value_enum, default_value_t = Format::Table)]
    pub output: Format,
    /// State store URL: sqlite://PATH or postgres://USER@HOST/DB.
    #[arg(long, global = true, env = "PAVED_STATE")]
    pub state: Option<String>,
    /// Who is acting (recorded with every change).
    #[arg(long, global = true, env = "PAVED_ACTOR")]
    pub actor: Option<String>,
    /// When to colour diagnostics.
    #[arg(long, global = true, value_enum, default_value_t = ColorChoice::Auto)]
    pub color: ColorChoice,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Table,
    Json,
    Yaml,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ColorChoice {
    Auto,
    Always,
    Never,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check spec files without recording anything.
    #[command(after_help = "Examples:\n  paved validate -f examples/\n  paved validate -f api.score.yaml -o json\n  \
cat env.yaml | paved validate -f -")]
    Validate {
        /// Spec files or directories (recursive); `-` reads standard input.
        #[arg(short = 'f', long = "file", required = true)]
        files: Vec<PathBuf>,
    },
    /// Record specs as desired state (all or nothing).
    #[command(
        after_help = "Examples:\n  paved apply -f examples/\n  paved apply -f platform/ -f services/api.score.yaml"
    )]
    Apply {
        /// Spec files or directories (recursive); `-` reads standard input.
        #[arg(short = 'f', long = "file", required = true)]
        files: Vec<PathBuf>,
    },
    /// List objects of a kind, or show one.
    #[command(
        after_help = "Examples:\n  paved get environments\n  paved get env eu-production -o yaml\n  paved get services -o json"
    )]
    Get {
        /// blueprint, account, environment (env), team, service (svc) — singular or plural.
        kind: String,
        name: Option<String>,
    },
    /// Show one object in detail, with what depends on it.
    #[command(
        after_help = "Examples:\n  paved describe environment eu-production\n  paved describe blueprint web-service-standard"
    )]
    Describe { kind: String, name: String },
    /// Delete an object (its history is kept).
    #[command(after_help = "Examples:\n  paved delete environment eu-dev")]
    Delete { kind: String, name: String },
    /// Every recorded generation of an object.
    #[command(after_help = "Examples:\n  paved history environment production")]
    History { kind: String, name: String },
    /// Show what applying an environment would do (nothing is changed).
    #[command(
        after_help = "Examples:\n  paved plan -e dev\n  paved plan -e dev -o json > plan.json\n  paved plan -e dev --graph   # the resource graph itself"
    )]
    Plan {
        /// The environment to plan.
        #[arg(short = 'e', long = "environment")]
        environment: String,
        /// Print the resource graph (canonical JSON) instead of the plan.
        #[arg(long)]
        graph: bool,
    },
    /// Print the JSON Schema of a kind (generated from paved's types).
    #[command(after_help = "Examples:\n  paved schema Blueprint\n  paved schema service > score.schema.json")]
    Schema { kind: String },
    /// Print shell completions.
    #[command(
        after_help = "Examples:\n  paved completions bash > /etc/bash_completion.d/paved\n  paved completions zsh > ~/.zfunc/_paved"
    )]
    Completions { shell: clap_complete::Shell },
}
