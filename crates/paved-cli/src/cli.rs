//! Command-line arguments.

use clap::{Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(
    name = "paved",
    version,
    about = "paved — a self-hosted internal developer platform",
    long_about = "paved records blueprints, cloud accounts, environments, teams and Score workloads as versioned \
desired state, validates them with precise diagnostics, plans each environment as a resource graph and applies it \
through provider drivers.",
    after_help = "Examples:\n  paved up                      # the demo platform on this machine\n  paved up --runtime process    # the same without Docker\n  paved validate -f examples/\n  paved apply -f examples/\n  paved plan -e dev\n  paved apply -e dev\n  paved drift -e dev\n  paved get environments\n  \
paved describe environment eu-production\n  paved history blueprint web-service-standard\n  paved schema Environment > environment.schema.json\n\n\
State defaults to SQLite under your data directory; use --state postgres://USER@HOST/DB for PostgreSQL.\n\
Exit codes: 0 success, 1 user error (invalid specs, unknown objects, failed resources), 2 internal error, \
3 drift found (paved drift) or differences no parameter explains (paved parity)."
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
    /// paved's data directory (local provider state, image store, default SQLite state).
    #[arg(long, global = true, env = "PAVED_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// How the local provider runs workloads where the account does not say:
    /// docker or process. Default: docker when a Docker Engine answers, else
    /// process; an applied environment keeps the runtime it was made with.
    #[arg(long, global = true, env = "PAVED_RUNTIME", value_enum)]
    pub runtime: Option<Runtime>,
    /// How long apply and destroy wait for an environment another paved is
    /// working on (e.g. 30s, 5m); by default they fail at once, naming it.
    #[arg(long, global = true, env = "PAVED_LOCK_TIMEOUT", value_parser = parse_lock_timeout, default_value = "0s")]
    pub lock_timeout: std::time::Duration,
    /// When to colour diagnostics.
    #[arg(long, global = true, value_enum, default_value_t = ColorChoice::Auto)]
    pub color: ColorChoice,
    /// The key-encryption key of secrets: file:PATH (created 0600 on first
    /// use), env:VARIABLE (64 hex digits) or aws-kms:ACCOUNT/KEY (AWS KMS,
    /// reached with the account's keyless credentials). Default:
    /// file:DATA_DIR/keys/kek.
    #[arg(long, global = true, env = "PAVED_KEK")]
    pub kek: Option<String>,
    /// Earlier key-encryption keys still accepted for reading, while
    /// `paved secret rotate-keys` moves everything to --kek (so servers keep
    /// serving during a rotation). Comma-separated key sources.
    #[arg(long, global = true, env = "PAVED_KEK_PREVIOUS", value_delimiter = ',')]
    pub kek_previous: Vec<String>,
    /// paved's public URL: the issuer of the tokens clouds trust (they fetch
    /// URL/.well-known/openid-configuration). Must match what was installed
    /// with `paved account trust-policy`. Default: http://LISTEN for `paved
    /// server`, else http://127.0.0.1:7480.
    #[arg(long, global = true, env = "PAVED_PUBLIC_URL")]
    pub public_url: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Table,
    Json,
    Yaml,
}

/// A duration, or `off` (zero: never).
fn parse_interval(s: &str) -> Result<std::time::Duration, String> {
    if s == "off" { Ok(std::time::Duration::ZERO) } else { parse_lock_timeout(s) }
}

fn parse_lock_timeout(s: &str) -> Result<std::time::Duration, String> {
    paved_model::duration::parse_duration(s).ok_or_else(|| format!("`{s}` is not a duration such as 30s, 5m or 1h"))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Runtime {
    Docker,
    Process,
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
    /// Record specs as desired state (all or nothing), and/or bring environments to it.
    #[command(after_help = "Examples:\n  paved apply -f examples/                 # record specs only\n  \
paved apply -e dev                       # provision dev from the recorded specs\n  \
paved apply -f examples/ -e dev          # both\n  paved apply --all --parallelism 4\n  \
paved apply -e dev --take-over           # a local environment whose machine is gone: re-create it here\n\n\
Ctrl-C stops scheduling, lets running steps finish and records them; run the same command again to continue.\n\
A local-provider environment runs on the machine that first applied it (PAVED_RUNNER_ID, else the host name);\n\
other machines refuse to apply, drift or destroy it.")]
    Apply {
        /// Spec files or directories (recursive); `-` reads standard input.
        #[arg(short = 'f', long = "file", required_unless_present_any = ["environment", "all"])]
        files: Vec<PathBuf>,
        /// Provision this environment from the recorded specs.
        #[arg(short = 'e', long = "environment", conflicts_with = "all")]
        environment: Option<String>,
        /// Provision every environment whose provider paved can drive.
        #[arg(long)]
        all: bool,
        /// Resources worked on at the same time.
        #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..=256))]
        parallelism: u16,
        /// Move a local-provider environment to this machine before applying (its machine is gone for good):
        /// it is re-created here, empty; audited.
        #[arg(long, requires = "environment")]
        take_over: bool,
    },
    /// Remove every resource of an environment (its spec stays recorded).
    #[command(
        after_help = "Examples:\n  paved destroy -e staging\n  paved destroy -e staging && paved delete env staging"
    )]
    Destroy {
        #[arg(short = 'e', long = "environment")]
        environment: String,
        #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..=256))]
        parallelism: u16,
    },
    /// Compare what runs with what paved applied (exit code 3 when they differ).
    #[command(after_help = "Examples:\n  paved drift -e dev\n  paved drift -e production -o json\n  \
paved drift -e dev || paved apply -e dev   # repair\n  paved drift --all   # every applied environment, read as one sweep\n\n\
Exit codes: 0 in sync, 3 drift found, 1/2 errors.")]
    Drift {
        #[arg(short = 'e', long = "environment", required_unless_present = "all", conflicts_with = "all")]
        environment: Option<String>,
        /// Every applied environment: each kind is listed once per account and region, across environments.
        #[arg(long)]
        all: bool,
    },
    /// Print a service's output (stdout and stderr of its processes or containers).
    #[command(
        after_help = "Examples:\n  paved logs api -e dev\n  paved logs api -e dev -f\n  paved logs web -e dev --tail 20"
    )]
    Logs {
        service: String,
        #[arg(short = 'e', long = "environment")]
        environment: String,
        /// Keep printing new output.
        #[arg(short = 'f', long)]
        follow: bool,
        /// Only this container (default: every container of the service).
        #[arg(short = 'c', long)]
        container: Option<String>,
        /// Only the last N lines.
        #[arg(long)]
        tail: Option<usize>,
    },
    /// One command for a newcomer: record examples/, provision `dev` with the demo services, print the URLs.
    #[command(after_help = "Examples:\n  paved up\n  paved up --specs examples/ -e staging\n  paved down")]
    Up {
        /// Specs to record first.
        #[arg(long, default_value = "examples")]
        specs: PathBuf,
        #[arg(short = 'e', long = "environment", default_value = "dev")]
        environment: String,
    },
    /// Remove everything `paved up` and `paved apply` created on this machine.
    #[command(after_help = "Examples:\n  paved down")]
    Down,
    /// The local image store: bundles by digest (the docker runtime builds images from them).
    #[command(subcommand)]
    Image(ImageCommand),
    /// Run the control-plane server: the REST API (/api/v1, OpenAPI at
    /// /api/v1/openapi.json), /metrics, /healthz and /readyz.
    #[command(
        after_help = "Examples:\n  paved server\n  paved server --listen 0.0.0.0:7480 --state postgres://paved@db/paved\n  \
curl -H \"Authorization: Bearer $(cat ~/.local/share/paved/bootstrap-admin.token)\" http://127.0.0.1:7480/api/v1/whoami\n  \
paved server --state postgres://paved@db/paved --replica-id paved-1   # one of several replicas\n\n\
At first start an admin token is written to the bootstrap file (mode 0600; it is never printed or logged).\n\
Replicas sharing a PostgreSQL store answer any request; the reconciler, the git loop and audit checkpoints run on\n\
the one holding the background lease (/readyz says which), and move to another within --lease-ttl when it dies.\n\
SIGINT/SIGTERM stop accepting requests; running applies stop starting steps, give running ones 5 s, record them\n\
and hand the operation to another replica (or to this server when it starts again)."
    )]
    Server(ServerArgs),
    /// Use a paved server from this CLI: checks the token (read from standard
    /// input, or a file only you can read) and saves both (mode 0600).
    #[command(
        after_help = "Examples:\n  paved token create me --subject user:ada@example.com | paved login --server https://paved.internal\n  \
paved login --server https://paved.internal --ca-file /etc/ssl/corp-ca.pem --token-file ~/.config/paved/token\n  \
paved login --server http://127.0.0.1:7480 --token-file ~/.config/paved/token\n\n\
Afterwards get, apply, destroy, drift, plan, parity, history, delete, audit and token go to the server
(its roles and audit log apply);\n\
`--state URL` or `paved logout` works on local state again."
    )]
    Login {
        #[arg(long)]
        server: String,
        /// Read the token from this file (it must not be readable by others).
        #[arg(long)]
        token_file: Option<PathBuf>,
        /// Trust only the CA certificates in this PEM file for the server's https (default: the system's roots).
        #[arg(long)]
        ca_file: Option<PathBuf>,
        /// Allow plain http to a server that is not on this machine (the token crosses the network unencrypted).
        #[arg(long)]
        insecure_http: bool,
    },
    /// Forget the server `paved login` saved.
    Logout,
    /// Who this CLI acts as, and where (the server and your role bindings, when logged in).
    Whoami,
    /// API tokens for the server: issue (the secret is printed once), list, revoke.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Secrets of environments: set (from stdin or a file), list, reveal (audited), rotate keys.
    #[command(subcommand)]
    Secret(SecretCommand),
    /// Cloud accounts: the trust to install once for keyless access, and a check that it works.
    #[command(subcommand)]
    Account(AccountCommand),
    /// paved as an OIDC issuer: mint a token to debug a cloud's trust setup.
    #[command(subcommand)]
    Identity(IdentityCommand),
    /// The audit log: every change of specs and environments, in a hash chain.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// List objects of a kind, or show one.
    #[command(
        after_help = "Examples:\n  paved get environments\n  paved get env eu-production -o yaml\n  paved get services -o json"
    )]
    Get {
        /// blueprint, account, environment (env), team, rolebinding, service (svc) — singular or plural.
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
    /// Every recorded generation of an object, or a service's deployments to an environment.
    #[command(
        after_help = "Examples:\n  paved history environment production\n  paved history api -e production   # deployments, kept forever"
    )]
    History {
        /// A kind (then NAME), or a service (with `-e`).
        kind: String,
        name: Option<String>,
        /// The deployments of service KIND to this environment.
        #[arg(short = 'e', long = "environment", conflicts_with = "name")]
        environment: Option<String>,
    },
    /// Artifacts: builds stored by content digest, with their commit.
    #[command(subcommand)]
    Artifact(ArtifactCommand),
    /// Deploy an artifact (by digest) of a service to an environment and wait for its health gate.
    #[command(after_help = "Examples:\n  paved deploy api -e dev --artifact sha256:4f2a…\n  \
paved deploy api -e dev --artifact sha256:4f2a… --strategy blue-green --soak 30s\n\n\
A new version that fails readiness or the soak is rolled back automatically (exit code 1).\n\
Environments after the first stage accept only digests healthy in the stage before: use `paved promote`.")]
    Deploy {
        service: String,
        #[arg(short = 'e', long = "environment")]
        environment: String,
        /// `sha256:…`, as `paved artifact push` printed it.
        #[arg(long)]
        artifact: String,
        /// recreate, rolling or blue-green (default: the blueprint's `spec.rollout.strategy`).
        #[arg(long, value_parser = parse_strategy)]
        strategy: Option<paved_model::Strategy>,
        /// How long the new version must stay healthy (default: the blueprint's `spec.rollout.soak`).
        #[arg(long, value_parser = parse_lock_timeout)]
        soak: Option<std::time::Duration>,
        /// How long the new version may take to become ready (default: the blueprint's `spec.rollout.readyTimeout`).
        #[arg(long, value_parser = parse_lock_timeout)]
        ready_timeout: Option<std::time::Duration>,
        /// Makes a retried command deploy once (default: a new id per run).
        #[arg(long)]
        request_id: Option<String>,
    },
    /// Deploy again the artifact of an earlier healthy deployment.
    #[command(after_help = "Examples:\n  paved rollback api -e production          # the previous healthy one\n  \
paved rollback api -e production --to 12  # deployment #12 (see `paved history api -e production`)")]
    Rollback {
        service: String,
        #[arg(short = 'e', long = "environment")]
        environment: String,
        /// The deployment number to return to.
        #[arg(long)]
        to: Option<i64>,
        #[arg(long)]
        request_id: Option<String>,
    },
    /// Deploy the digest that is healthy in one environment to the next one.
    #[command(
        after_help = "Examples:\n  paved promote api --from dev --to staging\n  paved promote api --from staging --to production"
    )]
    Promote {
        service: String,
        #[arg(long)]
        from: String,
        #[arg(long)]
        to: String,
        #[arg(long)]
        request_id: Option<String>,
    },
    /// What runs where: services × environments (digest, commit, since, by whom, health).
    #[command(after_help = "Examples:\n  paved status\n  paved status -o json")]
    Status,
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
    /// Compare two environments' resource graphs with their names, regions and
    /// address blocks masked: every difference left, field by field, marked as
    /// declared (a blueprint parameter explains it) or not (exit code 3 when
    /// any is not).
    #[command(after_help = "Examples:\n  paved parity staging production\n  paved parity dev staging -o json")]
    Parity { left: String, right: String },
    /// Render an environment for other tools (nothing is applied).
    #[command(after_help = "Examples:\n  paved export terraform -e eu-dev > main.tf.json\n  \
paved export terraform -e eu-dev | checkov -f /dev/stdin --framework terraform_json\n  \
paved export kubernetes -e eu-dev | kubernetes-validate --strict -\n\n\
terraform: the same graph paved applies, as Terraform JSON, for review with IaC scanners or to leave paved.\n\
kubernetes: the manifests `paved render` writes, as one YAML stream.\n\
argocd-notifications: the keys of Argo CD's `argocd-notifications-cm` that report the environment's health \
to paved (merge them into yours; put the environment's `PAVED_ARGOCD_WEBHOOK` secret into \
`argocd-notifications-secret` as `paved-argocd-ENV`):\n  \
paved export argocd-notifications -e eu-dev --paved-url https://paved.example.com")]
    Export {
        /// The format: terraform (Terraform JSON, AWS environments), kubernetes (cluster environments)
        /// or argocd-notifications.
        #[arg(value_parser = ["terraform", "kubernetes", "argocd-notifications"])]
        format: String,
        #[arg(short = 'e', long = "environment")]
        environment: String,
        /// Where Argo CD reaches paved's server (argocd-notifications).
        #[arg(long)]
        paved_url: Option<String>,
    },
    /// Write the Kubernetes manifests of a cluster environment: a Namespace
    /// with its quota and default-deny network policy, and per service its
    /// ServiceAccount, Deployment (image by digest), Service, network policy,
    /// secrets by reference and route; plus the Argo CD Application. Files
    /// of services that no longer exist are removed; nothing is applied.
    #[command(
        after_help = "Examples:\n  paved render -e eu-dev                 # into ./envs/eu-dev and ./apps/eu-dev.yaml\n  \
paved render -e eu-dev -d gitops/      # into a checkout of the GitOps repository\n  \
paved render -e eu-dev -o json         # what was written, as JSON\n\n\
A service is rendered once it has a digest to run here (`paved deploy`), or when its Score image is \
pinned `@sha256:`. No secret value is written: values with resource outputs reach the pods through the \
cloud's secret store."
    )]
    Render {
        #[arg(short = 'e', long = "environment")]
        environment: String,
        /// The folder to write into (the root of a GitOps checkout).
        #[arg(short = 'd', long = "dir", default_value = ".")]
        dir: PathBuf,
    },
    /// Render a cluster environment and commit its manifests to the account's
    /// GitOps repository (one commit; none when nothing changed), for Argo CD
    /// to apply. `paved apply -e` does this after provisioning.
    #[command(after_help = "Examples:\n  paved deliver -e eu-dev\n  paved deliver -e eu-dev -o json\n\n\
The repository comes from the account's `spec.gitops` (repository, branch, path). A push the server \
rejects because the branch moved is retried on top of it; history is never rewritten.")]
    Deliver {
        #[arg(short = 'e', long = "environment")]
        environment: String,
    },
    /// Print the JSON Schema of a kind (generated from paved's types), or of
    /// the input document policies read (`policy-input`).
    #[command(after_help = "Examples:\n  paved schema Blueprint\n  paved schema service > score.schema.json\n  \
paved schema policy-input")]
    Schema { kind: String },
    /// Policies as code: run their Rego tests, or evaluate them on an input document.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Print shell completions.
    #[command(
        after_help = "Examples:\n  paved completions bash > /etc/bash_completion.d/paved\n  paved completions zsh > ~/.zfunc/_paved"
    )]
    Completions { shell: clap_complete::Shell },
    /// Internal: supervise the processes of one workload (started by paved).
    #[command(name = "__supervise", hide = true)]
    Supervise { dir: PathBuf },
    /// Internal: liveness probes of a container on the docker runtime (started by paved).
    #[command(name = "__watch", hide = true)]
    Watch { file: PathBuf },
    /// Internal: an environment's reverse proxy (started by paved).
    #[command(name = "__proxy", hide = true)]
    Proxy {
        #[arg(long)]
        routes: PathBuf,
        #[arg(long)]
        listen: std::net::SocketAddr,
        #[arg(long, default_value_t = 60)]
        request_timeout: u64,
    },
}

#[derive(Debug, Subcommand)]
pub enum ArtifactCommand {
    /// Store a bundle directory (with a bundle.json) by content digest as an artifact of a service.
    /// Pushing the same content again changes nothing; a tag never moves to other content.
    #[command(
        after_help = "Examples:\n  paved artifact push ./build/api --service api --commit $(git rev-parse HEAD)\n  \
paved artifact push ./build/api --service api --commit 4f2a9c1 --branch main --tag 1.4.3\n  \
paved artifact push ./build/api --service api -e eu-dev   # also into eu-dev's registry now (else at its first deploy)"
    )]
    Push {
        dir: PathBuf,
        #[arg(long)]
        service: String,
        /// Also put the image into the registry of this cluster environment
        /// now (repeatable); deploys put it there anyway when it is missing.
        #[arg(short = 'e', long = "environment", value_name = "ENV")]
        environments: Vec<String>,
        /// The git commit it was built from.
        #[arg(long)]
        commit: Option<String>,
        /// When that commit was made (RFC 3339; for lead time). Default: now.
        #[arg(long, value_parser = parse_time)]
        commit_time: Option<time::OffsetDateTime>,
        #[arg(long)]
        branch: Option<String>,
        #[arg(short, long = "tag")]
        tags: Vec<String>,
    },
    /// Artifacts, newest first.
    List {
        #[arg(long)]
        service: Option<String>,
    },
}

fn parse_strategy(s: &str) -> Result<paved_model::Strategy, String> {
    paved_model::Strategy::parse(s)
        .ok_or_else(|| format!("`{s}` is not a strategy: use recreate, rolling or blue-green"))
}

#[derive(Debug, Subcommand)]
pub enum ImageCommand {
    /// Store a bundle directory (with a bundle.json) under its content digest and tag it.
    #[command(after_help = "Examples:\n  paved image import ./build/api --tag registry.example.com/payments/api:1.4.2")]
    Import {
        dir: PathBuf,
        #[arg(short, long = "tag")]
        tags: Vec<String>,
    },
    /// Tags and the digests they point at.
    List,
}

#[derive(Debug, clap::Args)]
pub struct ServerArgs {
    /// Address to listen on.
    #[arg(long, env = "PAVED_LISTEN", default_value = "127.0.0.1:7480")]
    pub listen: std::net::SocketAddr,
    /// Where the bootstrap admin token is written at first start (default: DATA_DIR/bootstrap-admin.token).
    #[arg(long)]
    pub bootstrap_token_file: Option<PathBuf>,
    /// How long the bootstrap admin token keeps working once an organisation admin has a token of their own.
    #[arg(long, value_parser = parse_lock_timeout, default_value = "24h")]
    pub bootstrap_grace: std::time::Duration,
    /// How long a finished operation stays readable at /api/v1/operations/{id} (from any replica; then pruned).
    #[arg(long, value_parser = parse_lock_timeout, default_value = "1h")]
    pub operation_retention: std::time::Duration,
    /// How often /metrics recomputes the DORA figures from the deployment history (scrapes in between are cheap).
    #[arg(long, value_parser = parse_lock_timeout, default_value = "30s")]
    pub metrics_refresh: std::time::Duration,
    /// How often the audit log's head is signed as a checkpoint (when it moved); `off` disables.
    #[arg(long, value_parser = parse_interval, default_value = "5m")]
    pub audit_checkpoint_interval: std::time::Duration,
    /// Largest request body in bytes.
    #[arg(long, default_value_t = 1024 * 1024)]
    pub body_limit: usize,
    /// Requests per second allowed per token.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..))]
    pub rate_limit: u32,
    /// Requests a token may send at once above the rate.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..))]
    pub rate_burst: u32,
    /// Longest a request may take (e.g. 30s).
    #[arg(long, value_parser = parse_lock_timeout, default_value = "30s")]
    pub request_timeout: std::time::Duration,
    /// Resources an apply started through the API works on at the same time.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub parallelism: u16,
    /// How often every environment is checked for drift (healed when its blueprint says `drift: auto-heal`); `off` disables.
    #[arg(long, value_parser = parse_interval, default_value = "60s")]
    pub reconcile_interval: std::time::Duration,
    /// File holding the shared secret of GitHub deliveries to /api/v1/webhooks/github (without it the route answers 503).
    #[arg(long, env = "PAVED_GITHUB_WEBHOOK_SECRET_FILE")]
    pub github_webhook_secret_file: Option<PathBuf>,
    /// POST git-flow notifications (preview ready/deleted, deployment healthy/failed) as JSON here; repeatable.
    /// Needs --notify-secret-file: every notification is signed.
    #[arg(long = "notify-url", requires = "notify_secret_file")]
    pub notify_urls: Vec<String>,
    /// File holding the secret notifications are signed with: `X-Paved-Signature-256: sha256=HMAC(secret,
    /// TIMESTAMP.BODY)` with `X-Paved-Timestamp` (receivers refuse old timestamps).
    #[arg(long, env = "PAVED_NOTIFY_SECRET_FILE")]
    pub notify_secret_file: Option<PathBuf>,
    /// How often previews and waiting deployments are checked without a delivery (a delivery wakes it at once).
    #[arg(long, value_parser = parse_lock_timeout, default_value = "10s")]
    pub git_interval: std::time::Duration,
    /// This replica's name among servers sharing one store (default HOST:PID); shown by /readyz and /metrics.
    #[arg(long, env = "PAVED_REPLICA_ID", default_value = "")]
    pub replica_id: String,
    /// How long the background lease lasts unrenewed: the longest the reconciler and git loop pause when the
    /// replica running them dies (renewed every third of it; replicas' clocks must agree well within it).
    #[arg(long, value_parser = parse_lock_timeout, default_value = "15s")]
    pub lease_ttl: std::time::Duration,
    /// How often a replica records a running operation's progress (its heartbeat); another replica takes the
    /// operation over and finishes it after three missed beats (the replica died or lost the store).
    #[arg(long, value_parser = parse_lock_timeout, default_value = "5s")]
    pub operation_heartbeat: std::time::Duration,
    /// Request logs on standard error: JSON lines, or text for people. Filter with PAVED_LOG (e.g. warn).
    #[arg(long, value_enum, default_value_t = LogFormat::Json)]
    pub log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Json,
    Text,
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Issue a token; its secret is printed once (store it, it cannot be shown again).
    #[command(after_help = "Examples:\n  paved token create ci-deploy --subject serviceaccount:ci --expires 90d\n  \
paved token create grace --subject user:grace@example.com --expires 30d -o json")]
    Create {
        /// What it is for.
        name: String,
        /// Who it acts as: user:EMAIL or serviceaccount:NAME (RoleBindings say what it may do).
        #[arg(long)]
        subject: String,
        /// Lifetime (e.g. 30d, 12h); without it the token lasts until revoked.
        #[arg(long, value_parser = parse_lock_timeout)]
        expires: Option<std::time::Duration>,
    },
    /// Tokens issued (never their secrets).
    List,
    /// Revoke a token by id (tok_…); it stops working at once.
    Revoke { id: String },
}

#[derive(Debug, Subcommand)]
pub enum AccountCommand {
    /// The IAM OIDC provider and role trust policy that let paved assume the
    /// account's role with its own tokens, for that account's environments only.
    #[command(after_help = "Examples:\n  paved account trust-policy aws-eu\n  \
paved account trust-policy aws-eu -o json | jq .trust_policy > trust.json\n  \
aws iam create-open-id-connect-provider --url \"$PAVED_PUBLIC_URL\" --client-id-list sts.amazonaws.com\n  \
aws iam update-assume-role-policy --role-name paved --policy-document file://trust.json\n\n\
Run it again after adding environments to the account: the policy lists them.")]
    TrustPolicy {
        name: String,
        /// Also admit paved's own control-plane token (when this account's
        /// KMS key is the key-encryption key: --kek aws-kms:NAME/KEY).
        #[arg(long)]
        control_plane: bool,
    },
    /// The least-privilege IAM policy for the account's provisioner role:
    /// every call paved's AWS drivers make, IAM only on `paved-*` roles,
    /// roles passed only to EKS, EC2 and VPC Flow Logs.
    #[command(after_help = "Examples:\n  paved account permissions-policy aws-eu > policy.json\n  \
aws iam put-role-policy --role-name paved-provisioner --policy-name paved --policy-document file://policy.json")]
    PermissionsPolicy { name: String },
    /// Assume the account's role with a token paved signs, and ask AWS who that is.
    #[command(
        after_help = "Examples:\n  paved account check aws-eu -e eu-dev\n  paved account check aws-eu   # as the control plane"
    )]
    Check {
        name: String,
        /// Act for this environment of the account (default: the control plane).
        #[arg(short = 'e', long = "environment")]
        environment: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum IdentityCommand {
    /// Print a short-lived token for an environment (or the control plane),
    /// as paved presents it to a cloud.
    #[command(after_help = "Examples:\n  paved identity token -e eu-dev\n  \
paved identity token -e eu-dev --service api --audience sts.amazonaws.com -o json")]
    Token {
        /// The environment the token speaks for (default: the control plane).
        #[arg(short = 'e', long = "environment")]
        environment: Option<String>,
        #[arg(long)]
        service: Option<String>,
        /// The `aud` claim.
        #[arg(long, default_value = "sts.amazonaws.com")]
        audience: String,
        /// Lifetime (at most 15m).
        #[arg(long, value_parser = parse_lock_timeout, default_value = "10m")]
        ttl: std::time::Duration,
    },
}

/// Where a secret lives.
#[derive(Debug, clap::Args)]
pub struct SecretScope {
    /// The environment the secret belongs to.
    #[arg(short = 'e', long = "environment")]
    pub environment: String,
    /// Narrow it to one service of the environment (its workloads see it
    /// before the environment's secret of the same name).
    #[arg(long)]
    pub service: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum SecretCommand {
    /// Store a new version of a secret, read from standard input or a file.
    #[command(after_help = "Examples:\n  printf %s \"$DB_PASSWORD\" | paved secret set DB_PASSWORD -e staging\n  \
paved secret set TLS_KEY -e production --service web --from-file tls.key\n  \
paved secret set DEPLOY_TOKEN -e dev --from-env CI_DEPLOY_TOKEN\n  \
paved secret set STRIPE_KEY -e dev              # type it, then Ctrl-D\n\n\
A value on the command line is refused: it would stay in shell history and be visible to `ps`.\n\
One trailing newline is removed from standard input (as `echo` adds one); files are stored as they are.\n\
Workloads use it as ${secrets.NAME} in their Score file; it is resolved when the environment is applied.")]
    Set {
        name: String,
        /// Refused (see below); present only to explain why.
        #[arg(hide = true)]
        value: Option<String>,
        #[command(flatten)]
        scope: SecretScope,
        /// Read the value from this file instead of standard input.
        #[arg(long, value_name = "PATH", conflicts_with = "from_env")]
        from_file: Option<PathBuf>,
        /// Read the value from this environment variable (CI pipelines).
        #[arg(long, value_name = "VARIABLE")]
        from_env: Option<String>,
    },
    /// The secrets of an environment: names, versions, who set them and when (never values).
    #[command(
        after_help = "Examples:\n  paved secret list -e staging\n  paved secret list -e staging --service api -o json"
    )]
    List {
        #[arg(short = 'e', long = "environment")]
        environment: String,
        /// Only this service's own secrets.
        #[arg(long)]
        service: Option<String>,
    },
    /// Every version of a secret (never values).
    #[command(after_help = "Examples:\n  paved secret history DB_PASSWORD -e staging")]
    History {
        name: String,
        #[command(flatten)]
        scope: SecretScope,
    },
    /// Print a secret's value. Needs the operator role on the server; always audited.
    #[command(
        after_help = "Examples:\n  paved secret reveal DB_PASSWORD -e staging\n  paved secret reveal DB_PASSWORD -e staging --version 2"
    )]
    Reveal {
        name: String,
        #[command(flatten)]
        scope: SecretScope,
        /// An earlier version (default: the newest).
        #[arg(long)]
        version: Option<i64>,
    },
    /// Delete a secret (a new version without a value; the history stays).
    #[command(after_help = "Examples:\n  paved secret delete OLD_TOKEN -e dev")]
    Delete {
        name: String,
        #[command(flatten)]
        scope: SecretScope,
    },
    /// Re-key: new data keys for every environment, values re-sealed under
    /// them, and with --to every data key wrapped by a new key-encryption
    /// key. Resumable: run it again after an interruption.
    #[command(after_help = "Examples:\n  paved secret rotate-keys\n  \
paved secret rotate-keys --to file:/etc/paved/kek-2026   # then use --kek file:/etc/paved/kek-2026\n  \
paved secret rotate-keys --to aws-kms:prod-account/alias/paved\n\n\
Runs locally against the state store (it needs the key-encryption keys); \
values stay readable throughout, by running paveds too.")]
    RotateKeys {
        /// The new key-encryption key (file:PATH, env:VARIABLE, aws-kms:ACCOUNT/KEY).
        #[arg(long)]
        to: Option<String>,
        /// Values re-sealed per round trip to the store.
        #[arg(long, default_value_t = 100)]
        batch_size: i64,
        /// Stop after this many writes (continue later by running it again).
        #[arg(long)]
        max_writes: Option<usize>,
    },
}

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Run the `test_*` rules of the policies (exit 1 when one fails).
    #[command(
        after_help = "Examples:\n  paved policy test -f examples/policies/\n  paved policy test          # the recorded policies"
    )]
    Test {
        /// Policy files or directories; the recorded policies when absent.
        #[arg(short = 'f', long = "file")]
        files: Vec<PathBuf>,
    },
    /// Evaluate the policies on an input document, as a decision point would
    /// (exit 1 when they deny); nothing is recorded.
    #[command(after_help = "Examples:\n  paved policy eval --input plan-input.json -f examples/policies/\n  \
paved policy eval --input - --decision deploy < input.json\n\nThe input's shape: `paved schema policy-input`.")]
    Eval {
        /// The input document (JSON); `-` reads standard input.
        #[arg(long)]
        input: PathBuf,
        /// The decision point (default: the input's `decision`).
        #[arg(long)]
        decision: Option<String>,
        /// Evaluate as of this time (RFC 3339), for exceptions' expiry (default: now).
        #[arg(long)]
        at: Option<String>,
        /// Policy (and exception) files or directories; the recorded ones when absent.
        #[arg(short = 'f', long = "file")]
        files: Vec<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Check the whole hash chain; names the first event that was edited,
    /// removed or moved (exit 1), else prints how many events are intact.
    /// Then checks it against the newest checkpoint paved signed (and the
    /// anchor file in the data directory): a rewrite that re-hashed the rest
    /// of the chain is caught there.
    #[command(after_help = "Examples:\n  paved audit verify\n  paved audit verify -o json")]
    Verify,
    /// Verify the log, then sign its head with paved's issuer key (an
    /// `audit.checkpoint` event, and DATA_DIR/audit-anchor.json). `paved
    /// server` does this every --audit-checkpoint-interval.
    #[command(after_help = "Examples:\n  paved audit checkpoint")]
    Checkpoint,
    /// Events, oldest first, as a table (or -o json|yaml).
    #[command(
        after_help = "Examples:\n  paved audit list --target Environment/dev\n  paved audit list --by alice --since 2026-11-01T00:00:00Z"
    )]
    List(AuditFilterArgs),
    /// Events as JSON lines, for a SIEM.
    #[command(
        after_help = "Examples:\n  paved audit export > audit.jsonl\n  paved audit export --action environment.apply --since 2026-11-25T00:00:00Z"
    )]
    Export(AuditFilterArgs),
}

#[derive(Debug, clap::Args)]
pub struct AuditFilterArgs {
    /// Only events by this actor. (Not `--actor`: that global flag says who
    /// *you* are, and clap would fill both from it.)
    #[arg(long = "by", id = "filter_by")]
    pub actor: Option<String>,
    /// Only this action (spec.put, spec.delete, environment.apply, environment.destroy).
    #[arg(long)]
    pub action: Option<String>,
    /// Only events on this target (Kind/name, e.g. Environment/dev).
    #[arg(long)]
    pub target: Option<String>,
    /// From this time on (RFC 3339).
    #[arg(long, value_parser = parse_time)]
    pub since: Option<time::OffsetDateTime>,
    /// Before this time (RFC 3339).
    #[arg(long, value_parser = parse_time)]
    pub until: Option<time::OffsetDateTime>,
    /// At most this many events.
    #[arg(long)]
    pub limit: Option<i64>,
}

fn parse_time(s: &str) -> Result<time::OffsetDateTime, String> {
    time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .map_err(|e| format!("`{s}` is not an RFC 3339 time such as 2026-11-25T09:00:00Z: {e}"))
}
