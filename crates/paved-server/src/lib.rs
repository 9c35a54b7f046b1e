//! paved's control-plane server: the REST API under `/api/v1` (described by
//! an OpenAPI 3.1 document generated from the handlers themselves), API
//! tokens and access checks on every route, `/metrics`, health endpoints.
//!
//! Handlers do no work of their own: they authenticate, ask
//! [`auth::Authed::allow`], then call the same [`paved_control`] and
//! [`paved_catalog`] operations the CLI runs embedded.

pub mod api;
pub mod auth;
pub mod console;
pub mod error;
pub mod metrics;
pub mod notify;
pub mod operations;
pub mod queue;

use crate::auth::RequestId;
use crate::metrics::{HttpLabels, Metrics};
use crate::operations::Operations;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use paved_control::Control;
use paved_model::{Kind, RoleBinding, Spec, Team};
use rand::Rng;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error("server stopped: {0}")]
    Serve(std::io::Error),
    #[error("cannot write the bootstrap token to {path}: {source}")]
    BootstrapFile { path: PathBuf, source: std::io::Error },
    #[error(transparent)]
    Store(#[from] paved_store::StoreError),
    #[error("cannot issue the bootstrap token: {0}")]
    Bootstrap(String),
    #[error("cannot retire the bootstrap token: {0}")]
    Retire(String),
}

/// Limits and knobs of the server.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    /// Largest request body accepted (413 beyond).
    pub body_limit: usize,
    /// Longest a request may take (apply and destroy return at once; SSE is exempt).
    pub request_timeout: Duration,
    /// Requests per second per token, and the burst allowed above it.
    pub rate_per_second: NonZeroU32,
    pub rate_burst: NonZeroU32,
    /// Parallelism of applies started through the API.
    pub parallelism: usize,
    /// How long shutdown waits for running applies to checkpoint.
    pub shutdown_grace: Duration,
    /// How often the reconciler checks every environment for drift (and
    /// heals those whose blueprint says so); `None`: never.
    pub reconcile_interval: Option<Duration>,
    /// The shared secret of GitHub deliveries; `None`: the webhook answers 503.
    pub github_webhook_secret: Option<Vec<u8>>,
    /// Where git-flow notifications are POSTed.
    pub notify_urls: Vec<String>,
    /// The shared secret notifications are signed with (see `notify`).
    pub notify_secret: Vec<u8>,
    /// How often the git loop runs without a delivery waking it (previews
    /// to apply or reap, artifacts arrived for waiting deployments).
    pub git_interval: Duration,
    /// How long the bootstrap token keeps working once real admins have
    /// tokens ([`retire_bootstrap`]).
    pub bootstrap_grace: Duration,
    /// How long finished operations stay readable (`GET /operations/{id}`).
    pub operation_retention: Duration,
    /// How often `/metrics` recomputes the DORA figures (scrapes in between
    /// read the last ones).
    pub metrics_refresh: Duration,
    /// How often the audit chain's head is signed as a checkpoint (when it
    /// moved); `None`: never.
    pub audit_checkpoint_interval: Option<Duration>,
    /// This replica's name among the servers sharing one store (`--replica-id`;
    /// empty: `HOST:PID`).
    pub replica_id: String,
    /// How long the background lease lasts without renewal: the longest
    /// the background loops stop when their replica dies (renewed every
    /// third of it).
    pub lease_ttl: Duration,
    /// How often a replica running an operation records its progress and
    /// beats the operation's heartbeat; another replica takes an operation
    /// over once its heartbeat is [`queue::STALE_AFTER`] beats old.
    pub operation_heartbeat: Duration,
}

impl Default for ServerConfig {
    fn default() -> ServerConfig {
        ServerConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 7480)),
            body_limit: 1024 * 1024,
            request_timeout: Duration::from_secs(30),
            rate_per_second: NonZeroU32::new(50).unwrap_or(NonZeroU32::MIN),
            rate_burst: NonZeroU32::new(100).unwrap_or(NonZeroU32::MIN),
            parallelism: 8,
            shutdown_grace: Duration::from_secs(60),
            reconcile_interval: Some(Duration::from_secs(60)),
            github_webhook_secret: None,
            notify_urls: Vec::new(),
            notify_secret: Vec::new(),
            git_interval: Duration::from_secs(10),
            bootstrap_grace: BOOTSTRAP_GRACE,
            operation_retention: Duration::from_secs(3600),
            metrics_refresh: Duration::from_secs(30),
            audit_checkpoint_interval: Some(Duration::from_secs(300)),
            replica_id: String::new(),
            lease_ttl: Duration::from_secs(15),
            operation_heartbeat: Duration::from_secs(5),
        }
    }
}

/// Whether this replica runs the background loops (see [`lead`]).
#[derive(Debug, Default)]
pub struct Leadership {
    held: std::sync::atomic::AtomicBool,
    token: std::sync::atomic::AtomicI64,
}

impl Leadership {
    /// `Some(fencing token)` while this replica holds the background lease.
    pub fn held(&self) -> Option<i64> {
        use std::sync::atomic::Ordering::SeqCst;
        self.held.load(SeqCst).then(|| self.token.load(SeqCst))
    }
}

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    pub control: Control,
    pub operations: Operations,
    pub metrics: Arc<Metrics>,
    pub limiter: Arc<DefaultKeyedRateLimiter<String>>,
    pub config: Arc<ServerConfig>,
    /// `actor@host:pid` prefix for environment locks held by this server.
    pub holder_host: String,
    pub access: Arc<AccessCache>,
    /// Wakes the git loop (a delivery recorded something to do).
    pub git_wake: Arc<tokio::sync::Notify>,
    pub notifier: notify::Notifier,
    /// This replica's name (the configured one, or `HOST:PID`).
    pub replica: String,
    /// This process among the replicas: the replica's name and a random
    /// suffix, unique even if two replicas were given one `--replica-id`
    /// (they would otherwise both hold the lease and pass each other's
    /// fence, or own each other's operations). Holds the lease and owns operations.
    pub instance: String,
    pub leadership: Arc<Leadership>,
    /// Wakes readers of operations run by other replicas (their progress was recorded).
    pub operation_wake: Arc<tokio::sync::Notify>,
    /// Set when the server stops: operations it stops are handed to the other replicas, not cancelled.
    pub shutting_down: Arc<std::sync::atomic::AtomicBool>,
}

impl AppState {
    pub fn new(control: Control, config: ServerConfig) -> AppState {
        let quota = Quota::per_second(config.rate_per_second).allow_burst(config.rate_burst);
        let notifier =
            notify::Notifier::new(config.notify_urls.clone(), config.notify_secret.clone(), control.clock.clone());
        let host: String = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map_or_else(|_| "localhost".into(), |h| h.trim().to_string());
        let config_replica = config.replica_id.clone();
        let replica = if config_replica.is_empty() { format!("{host}:{}", std::process::id()) } else { config_replica };
        AppState {
            control,
            operations: Operations::with_retention(operations::Retention {
                after_end: time::Duration::try_from(config.operation_retention).unwrap_or(time::Duration::HOUR),
                ..operations::Retention::default()
            }),
            metrics: Arc::new(Metrics::new()),
            limiter: Arc::new(RateLimiter::keyed(quota)),
            config: Arc::new(config),
            holder_host: host.clone(),
            access: Arc::default(),
            git_wake: Arc::default(),
            notifier,
            instance: format!("{replica}#{:016x}", rand::random::<u64>()),
            replica,
            leadership: Arc::default(),
            operation_wake: Arc::default(),
            shutting_down: Arc::default(),
        }
    }

    /// The role bindings and teams in force (plus the bootstrap admin's
    /// binding), cached until the audit head moves past `head`.
    pub async fn policy_inputs(&self, head: i64) -> Result<Arc<PolicyInputs>, error::ApiError> {
        if let Some(p) = self.access.policy(head) {
            return Ok(p);
        }
        let catalog = self.control.catalog(Default::default());
        let mut bindings = vec![RoleBinding {
            metadata: paved_model::Metadata::named(auth::BOOTSTRAP_BINDING),
            spec: paved_model::RoleBindingSpec {
                role: paved_model::Role::Admin,
                subjects: vec![paved_model::BindingSubject(auth::BOOTSTRAP_SUBJECT.into())],
                scope: paved_model::BindingScope::Organisation,
                production: true,
                // Reading secret values is granted explicitly, even to the bootstrap admin.
                reveal_secrets: false,
            },
        }];
        let mut teams = vec![];
        for o in catalog.list(Some(Kind::RoleBinding)).await? {
            if let Spec::RoleBinding(b) = o.spec {
                bindings.push(b);
            }
        }
        for o in catalog.list(Some(Kind::Team)).await? {
            if let Spec::Team(t) = o.spec {
                teams.push(t);
            }
        }
        let inputs = Arc::new(PolicyInputs { bindings, teams });
        self.access.put_policy(head, inputs.clone());
        Ok(inputs)
    }
}

/// What access decisions are made over.
pub struct PolicyInputs {
    pub bindings: Vec<RoleBinding>,
    pub teams: Vec<Team>,
}

/// Tokens, policy inputs and recorded objects as last read, valid while the
/// audit head stays where it was: every change of a token, a role binding, a
/// team or any recorded spec appends an audit event in its own transaction
/// (`Store::commit`), so one indexed read per request says whether anything
/// they depend on changed (including changes made by another paved process
/// on the same store). Applied resources are written without an audit
/// event per node; what shows them is kept with the applied-resources clock
/// it was read at ([`paved_store::Heads`]) and used only at that clock.
///
/// A request whose head is older than the cache's (it read the head before a
/// newer request did) neither reads nor fills it, so the cache never goes
/// back to an older head.
#[derive(Default)]
pub struct AccessCache {
    inner: std::sync::Mutex<Cached>,
}

#[derive(Default)]
struct Cached {
    head: i64,
    tokens: HashMap<String, Option<paved_store::ApiToken>>,
    policy: Option<Arc<PolicyInputs>>,
    objects: HashMap<(Kind, String), Arc<paved_catalog::Object>>,
    /// Listing pages by kind, the name they start after, and their length.
    pages: HashMap<(Kind, String, usize), Arc<Vec<paved_catalog::Object>>>,
    /// The latest apply or destroy of each environment (audit events themselves).
    last_operations: HashMap<String, Option<paved_store::AuditEvent>>,
    /// Response bodies as rendered for one caller (see [`AppState::rendered`]),
    /// with the applied-resources clock they were read at (0: they show none).
    bodies: HashMap<String, (i64, axum::body::Bytes)>,
    /// Their total size, held under [`MAX_CACHED_BODY_BYTES`].
    body_bytes: usize,
}

/// Unknown tokens and names are remembered too (a flood of made-up ones
/// costs one query each once); past this many entries a map starts over.
const MAX_CACHED: usize = 10_000;
/// Listing pages hold up to a page of objects each and any caller picks
/// where one starts: fewer of them, so a viewer walking every `after` cannot
/// make the server hold the catalog many times over.
const MAX_CACHED_PAGES: usize = 256;
/// Rendered bodies are per caller and a listing's can be large (up to
/// 1,000 items): bounded in number and in bytes.
const MAX_CACHED_BODIES: usize = 1_024;
const MAX_CACHED_BODY_BYTES: usize = 32 << 20;

impl AccessCache {
    fn at(&self, head: i64) -> Option<std::sync::MutexGuard<'_, Cached>> {
        let mut c = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if head < c.head {
            return None;
        }
        if c.head != head {
            *c = Cached { head, ..Cached::default() };
        }
        Some(c)
    }

    /// The entry `key` of the map `pick` chooses, at `head`.
    fn get<K, Q, V>(&self, head: i64, pick: fn(&mut Cached) -> &mut HashMap<K, V>, key: &Q) -> Option<V>
    where
        K: std::borrow::Borrow<Q> + std::hash::Hash + Eq,
        Q: std::hash::Hash + Eq + ?Sized,
        V: Clone,
    {
        self.at(head).and_then(|mut c| pick(&mut c).get(key).cloned())
    }

    fn put<K: std::hash::Hash + Eq, V>(
        &self,
        head: i64,
        pick: fn(&mut Cached) -> &mut HashMap<K, V>,
        key: K,
        value: V,
        most: usize,
    ) {
        if let Some(mut c) = self.at(head) {
            let map = pick(&mut c);
            if map.len() >= most {
                map.clear();
            }
            map.insert(key, value);
        }
    }

    pub fn token(&self, head: i64, hash: &str) -> Option<Option<paved_store::ApiToken>> {
        self.get(head, |c| &mut c.tokens, hash)
    }

    pub fn put_token(&self, head: i64, hash: &str, token: Option<paved_store::ApiToken>) {
        self.put(head, |c| &mut c.tokens, hash.to_string(), token, MAX_CACHED);
    }

    fn put_body(&self, head: i64, key: String, applied: i64, body: axum::body::Bytes) {
        if let Some(mut c) = self.at(head) {
            if c.bodies.len() >= MAX_CACHED_BODIES || c.body_bytes + body.len() > MAX_CACHED_BODY_BYTES {
                c.bodies.clear();
                c.body_bytes = 0;
            }
            c.body_bytes += body.len();
            if let Some((_, old)) = c.bodies.insert(key, (applied, body)) {
                c.body_bytes -= old.len();
            }
        }
    }

    fn policy(&self, head: i64) -> Option<Arc<PolicyInputs>> {
        self.at(head).and_then(|c| c.policy.clone())
    }

    fn put_policy(&self, head: i64, p: Arc<PolicyInputs>) {
        if let Some(mut c) = self.at(head) {
            c.policy = Some(p);
        }
    }
}

impl AppState {
    /// A response body for `who`, rendered once per audit head (and, when
    /// it shows applied resources, per `applied` clock; 0 when it shows
    /// none) by `render`, then answered from memory: listings and
    /// environment details are the console's and scripts' most frequent
    /// reads, and building them costs several times the token check. The
    /// body is exact because everything it shows and every decision behind
    /// it (the caller's bindings and teams) moves one of the two heads when
    /// it changes; `key` must name everything else it depends on (route,
    /// names, paging). Tokens' expiry and rate limits are checked per
    /// request before this, denials are never cached (they are errors).
    pub async fn rendered<F, Fut>(
        &self,
        who: &auth::Authed,
        key: &str,
        applied: i64,
        render: F,
    ) -> Result<Response, error::ApiError>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<Vec<u8>, error::ApiError>>,
    {
        let key = format!("{}\0{key}", who.subject);
        let body = match self.access.get(who.head, |c| &mut c.bodies, key.as_str()) {
            Some((at, body)) if at == applied => body,
            _ => {
                let body = axum::body::Bytes::from(render().await?);
                self.access.put_body(who.head, key, applied, body.clone());
                body
            }
        };
        Ok(([(axum::http::header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], body).into_response())
    }

    /// A recorded object, read from the store once per audit head.
    pub async fn object(
        &self,
        head: i64,
        kind: Kind,
        name: &str,
    ) -> Result<Arc<paved_catalog::Object>, error::ApiError> {
        let key = (kind, name.to_string());
        if let Some(o) = self.access.get(head, |c| &mut c.objects, &key) {
            return Ok(o);
        }
        let o = Arc::new(self.control.catalog(Default::default()).get(kind, name).await?);
        self.access.put(head, |c| &mut c.objects, key, o.clone(), MAX_CACHED);
        Ok(o)
    }

    /// A listing page of `kind` (up to `limit` objects after `after`), read
    /// from the store once per audit head.
    pub async fn page(
        &self,
        head: i64,
        kind: Kind,
        after: &str,
        limit: usize,
    ) -> Result<Arc<Vec<paved_catalog::Object>>, error::ApiError> {
        let key = (kind, after.to_string(), limit);
        if let Some(p) = self.access.get(head, |c| &mut c.pages, &key) {
            return Ok(p);
        }
        let p = Arc::new(self.control.catalog(Default::default()).list_page(kind, after, limit).await?);
        self.access.put(head, |c| &mut c.pages, key, p.clone(), MAX_CACHED_PAGES);
        Ok(p)
    }

    /// The latest apply or destroy of an environment (denied attempts
    /// aside), read once per audit head: it is an audit event itself.
    pub async fn last_operation(
        &self,
        head: i64,
        env: &str,
    ) -> Result<Option<paved_store::AuditEvent>, error::ApiError> {
        if let Some(e) = self.access.get(head, |c| &mut c.last_operations, env) {
            return Ok(e);
        }
        let filter = paved_store::AuditFilter {
            target: Some(format!("Environment/{env}")),
            newest_first: true,
            limit: 50,
            ..Default::default()
        };
        let events = self.control.store.audit_events(&filter).await?;
        let last = events.into_iter().find(|e| {
            matches!(e.event.action.as_str(), "environment.apply" | "environment.destroy")
                && e.event.outcome != paved_store::AuditOutcome::Denied
        });
        self.access.put(head, |c| &mut c.last_operations, env.to_string(), last.clone(), MAX_CACHED);
        Ok(last)
    }
}

/// A fresh id: 16 hex digits from the thread's CSPRNG.
pub fn new_id() -> String {
    format!("{:016x}", rand::rng().next_u64())
}

/// Request ids, latency metrics by route template, and the request timeout.
async fn observe(
    axum::extract::State(state): axum::extract::State<AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let id = request
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic()))
        .map_or_else(new_id, str::to_string);
    request.extensions_mut().insert(RequestId(id.clone()));
    let route = request.extensions().get::<MatchedPath>().map_or("unmatched", |m| m.as_str()).to_string();
    let method = request.method().to_string();
    let streaming = route.ends_with("/events");
    let mut response = if streaming {
        next.run(request).await
    } else {
        match tokio::time::timeout(state.config.request_timeout, next.run(request)).await {
            Ok(r) => r,
            Err(_) => error::ApiError::new(StatusCode::REQUEST_TIMEOUT, "timeout", "the request took too long")
                .into_response(),
        }
    };
    if let Ok(v) = HeaderValue::from_str(&id) {
        response.headers_mut().insert("x-request-id", v);
    }
    let elapsed = started.elapsed();
    let status = response.status().as_u16();
    tracing::info!(request_id = %id, method = %method, route = %route, status, ms = elapsed.as_secs_f64() * 1e3, "request");
    let labels = HttpLabels { method, route, status };
    state.metrics.http.get_or_create(&labels).observe(elapsed.as_secs_f64());
    response
}

/// axum's own rejections (body too large, a query string or form that does
/// not parse, a wrong content type) are plain text; API clients get them as
/// JSON like every other error, with the field named where axum names one.
async fn json_errors(request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    let status = response.status();
    let typed = response.headers().get("content-type").is_some_and(|v| {
        let v = v.as_bytes();
        v.starts_with(b"application/json") || v.starts_with(b"text/html")
    });
    if !status.is_client_error() || typed {
        return response;
    }
    if status == StatusCode::PAYLOAD_TOO_LARGE {
        return error::ApiError::new(
            status,
            "too-large",
            "the request body is larger than the server accepts (`paved server --body-limit`)",
        )
        .into_response();
    }
    let bytes = axum::body::to_bytes(response.into_body(), 64 * 1024).await.unwrap_or_default();
    let text = String::from_utf8_lossy(&bytes).trim().to_string();
    // "Failed to deserialize query string: limit: invalid digit found in string"
    let field = text.split_once(": ").and_then(|(_, rest)| rest.split_once(": ")).map(|(f, _)| f.to_string());
    let mut e = error::ApiError::new(status, "bad-request", text.clone());
    if let Some(f) = field.filter(|f| !f.contains(' ')) {
        e = e.with_details(vec![error::ErrorDetail::field(f, text)]);
    }
    e.into_response()
}

/// The whole application: API routes, their OpenAPI document, middleware.
pub fn app(state: AppState) -> (axum::Router, utoipa::openapi::OpenApi) {
    let (router, openapi) = api::router().merge(console::router()).split_for_parts();
    let limit = state.config.body_limit;
    let doc = openapi.clone();
    let router = router
        .route(
            "/api/v1/openapi.json",
            axum::routing::get(move || {
                let doc = doc.clone();
                async move { axum::Json(doc) }
            }),
        )
        .route("/", axum::routing::get(console::root))
        .layer(axum::middleware::from_fn(json_errors))
        .layer(DefaultBodyLimit::max(limit))
        .route_layer(axum::middleware::from_fn_with_state(state.clone(), observe))
        .with_state(state);
    (router, openapi)
}

/// Serves until `shutdown` resolves; then stops accepting requests, asks
/// running operations to stop scheduling, and waits (up to the grace
/// period) for them to record what they finished and hand themselves to
/// the other replicas ([`queue`]).
pub async fn serve(
    state: AppState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    let addr = state.config.listen;
    let listener = tokio::net::TcpListener::bind(addr).await.map_err(|source| ServerError::Bind { addr, source })?;
    let (router, _) = app(state.clone());
    // Deliveries accepted by other replicas wake this one's git loop, and
    // progress they record wakes this one's readers of it (PostgreSQL).
    let git_wake = state.git_wake.clone();
    let woken = forward_wakes(
        &state,
        GIT_CHANNEL,
        move || git_wake.notify_one(),
        "deliveries; the git loop runs at its interval",
    )
    .await;
    let operation_wake = state.operation_wake.clone();
    let followed = forward_wakes(
        &state,
        queue::OPERATIONS_CHANNEL,
        move || operation_wake.notify_waiters(),
        "progress; their operations are read once a second",
    )
    .await;
    let adopting = tokio::spawn(queue::adopt_loop(state.clone()));
    let (stop_leading, stopped) = tokio::sync::watch::channel(false);
    let leading = tokio::spawn(lead(state.clone(), stopped));
    let ops = state.operations.clone();
    let stopping = state.shutting_down.clone();
    let grace = state.config.shutdown_grace;
    axum::serve(listener, router.into_make_service_with_connect_info::<SocketAddr>())
        .with_graceful_shutdown(async move {
            shutdown.await;
            // Running operations stop scheduling and are handed to the other
            // replicas; event streams end (their clients resume elsewhere).
            stopping.store(true, std::sync::atomic::Ordering::SeqCst);
            ops.cancel_all();
            ops.touch();
        })
        .await
        .map_err(ServerError::Serve)?;
    adopting.abort();
    if let Some(f) = followed {
        f.abort();
    }
    // The background loops stop and the lease is let go, so another
    // replica takes over at once instead of after the lease lapses.
    let _ = stop_leading.send(true);
    let _ = tokio::time::timeout(Duration::from_secs(5), leading).await;
    if let Some(w) = woken {
        w.abort();
    }
    let deadline = Instant::now() + grace;
    while state.operations.running() > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

/// Calls `wake` for each wake-up another replica sends on `channel`, until
/// the task is aborted; `None` where the store sends none (SQLite) or the
/// listening failed (`missed` says what is then read by polling).
async fn forward_wakes(
    state: &AppState,
    channel: &str,
    wake: impl Fn() + Send + 'static,
    missed: &str,
) -> Option<tokio::task::JoinHandle<()>> {
    match state.control.store.wakes(channel).await {
        Ok(Some(mut wakes)) => Some(tokio::spawn(async move {
            while wakes.recv().await.is_some() {
                wake();
            }
        })),
        Ok(None) => None,
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for other replicas' {missed}");
            None
        }
    }
}

/// The lease the background loops run under.
const BACKGROUND_LEASE: &str = "background";

/// The store channel that wakes the git loop on whichever replica runs it.
pub(crate) const GIT_CHANNEL: &str = "paved_git";

/// Runs the background loops — the reconciler, the git loop and audit
/// checkpoints — while this replica holds the store's `background` lease,
/// so replicas sharing a store run them once between them.
///
/// | step | how |
/// |---|---|
/// | take or renew | every third of `--lease-ttl` ([`paved_store::Store::acquire_lease`]); a new fencing token restarts the loops under it |
/// | fencing | the loops act through a fenced store: once another replica took the lease, their writes fail in the store and change nothing |
/// | cut off | a failed renewal is retried every tenth of the lease; no renewal by two thirds into it (an asking never waits longer) stops the loops before the lease can lapse and another replica take it; the next renewal starts them again |
/// | lost | another holder: the loops stop |
/// | shutdown | the loops stop and the lease is released, so another replica takes over at once |
async fn lead(state: AppState, mut stop: tokio::sync::watch::Receiver<bool>) {
    use std::sync::atomic::Ordering::SeqCst;
    let ttl = state.config.lease_ttl;
    let store = state.control.store.clone();
    let holder = state.instance.clone();
    let labels = metrics::ReplicaLabels { replica: state.replica.clone() };
    let mut running: Option<(i64, Vec<tokio::task::JoinHandle<()>>)> = None;
    let mut renewed_at = Instant::now();
    // The token this replica last held: loops restarted under the same one
    // (after the store was out of reach for a while) are not a takeover.
    let mut last_token = 0;
    let mut retry_soon = false;
    let stop_loops = |running: &mut Option<(i64, Vec<tokio::task::JoinHandle<()>>)>| {
        if let Some((token, tasks)) = running.take() {
            tasks.iter().for_each(tokio::task::JoinHandle::abort);
            tracing::info!(replica = %state.replica, token, "background loops stopped");
        }
    };
    let ttl_time = time::Duration::try_from(ttl).unwrap_or(time::Duration::seconds(15));
    loop {
        let asked = Instant::now();
        // Never wait on the store past the moment a holder must have stopped
        // (a partition can hold a query for minutes).
        let stop_by = renewed_at + ttl * 2 / 3;
        let deadline = if running.is_some() { stop_by } else { asked + ttl / 3 };
        let asking = store.acquire_lease(BACKGROUND_LEASE, &holder, state.control.clock.now(), ttl_time);
        match tokio::time::timeout_at(tokio::time::Instant::from_std(deadline), asking).await {
            Ok(Ok(paved_store::Lease::Held { token, .. })) => {
                renewed_at = asked;
                if running.as_ref().map(|(t, _)| *t) != Some(token) {
                    stop_loops(&mut running);
                    if token != last_token {
                        state.metrics.lease_takeovers.inc();
                        last_token = token;
                    }
                    tracing::info!(replica = %state.replica, token, "took the background lease: running the reconciler, the git loop and audit checkpoints");
                    running = Some((token, start_loops(&state, &holder, token)));
                }
            }
            Ok(Ok(paved_store::Lease::HeldBy { holder: other, .. })) => {
                if running.is_some() {
                    tracing::warn!(replica = %state.replica, holder = %other, "lost the background lease");
                }
                stop_loops(&mut running);
            }
            failed => {
                let why = match failed {
                    Ok(Err(e)) => e.to_string(),
                    _ => "the store did not answer in time".to_string(),
                };
                tracing::warn!(replica = %state.replica, error = %why, "could not renew the background lease");
                // No renewal by two thirds into the lease stops the loops:
                // before it can lapse and another replica take it. Until
                // then a failed renewal is retried soon; the loops start
                // again with the next renewal.
                if running.is_some() {
                    if Instant::now() + ttl / 10 >= stop_by {
                        stop_loops(&mut running);
                    } else {
                        retry_soon = true;
                    }
                }
            }
        }
        state.leadership.token.store(running.as_ref().map_or(0, |(t, _)| *t), SeqCst);
        state.leadership.held.store(running.is_some(), SeqCst);
        state.metrics.leader.get_or_create(&labels).set(i64::from(running.is_some()));
        let pause = if std::mem::take(&mut retry_soon) { ttl / 10 } else { ttl / 3 };
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = stop.changed() => {
                stop_loops(&mut running);
                state.leadership.held.store(false, SeqCst);
                state.metrics.leader.get_or_create(&labels).set(0);
                if let Err(e) = store.release_lease(BACKGROUND_LEASE, &holder).await {
                    tracing::warn!(error = %e, "could not release the background lease; it lapses by itself");
                }
                return;
            }
        }
    }
}

/// The background loops, acting through a store fenced by `token`.
fn start_loops(state: &AppState, holder: &str, token: i64) -> Vec<tokio::task::JoinHandle<()>> {
    let fence = paved_store::Fence { lease: BACKGROUND_LEASE.into(), holder: holder.to_string(), token };
    let fenced = AppState { control: state.control.with_store(state.control.store.fenced(fence)), ..state.clone() };
    let mut tasks = vec![tokio::spawn(git_loop(fenced.clone()))];
    if let Some(every) = state.config.reconcile_interval {
        tasks.push(tokio::spawn(reconcile_every(fenced.clone(), every)));
    }
    if let Some(every) = state.config.audit_checkpoint_interval {
        let signer = serde_json::json!({"replica": state.replica, "lease_token": token});
        tasks.push(tokio::spawn(checkpoint_every(fenced, every, signer)));
    }
    tasks
}

/// The git loop: previews to apply or reap, deployments whose artifact
/// arrived; woken by each delivery, else every `git_interval`. The first
/// pass runs at start, so what a crash interrupted continues.
async fn git_loop(state: AppState) {
    let holder = format!("paved-git@{}:{}", state.holder_host, std::process::id());
    let run = paved_control::RunOptions {
        parallelism: state.config.parallelism,
        holder,
        lock_timeout: Duration::from_secs(600),
        jitter_seed: rand::random(),
        operation: None,
    };
    loop {
        match state.control.converge_git(&run, Arc::new(paved_engine::Quiet)).await {
            Ok(notices) => {
                for n in notices {
                    tracing::info!(event = %n.event, environment = %n.environment, pull_request = n.pull_request.as_deref().unwrap_or(""),
                        detail = n.detail.as_deref().unwrap_or(""), "git flow");
                    state.notifier.send(&n);
                }
            }
            Err(e) => tracing::warn!(error = %e, "git loop pass failed; retrying at the next one"),
        }
        tokio::select! {
            _ = state.git_wake.notified() => {}
            _ = tokio::time::sleep(state.config.git_interval) => {}
        }
    }
}

/// Signs the audit chain's head every `every` (the first after `every`), so a
/// rewrite of the log is caught even when re-hashed (see
/// `paved_control::anchor`). A broken chain is logged, never signed.
///
/// Each checkpoint names its replica and lease token (`details.signer`): the
/// fence makes the tokens in the log's order never go down.
async fn checkpoint_every(state: AppState, every: Duration, signer: serde_json::Value) {
    loop {
        tokio::time::sleep(every).await;
        let caller = server_caller();
        match state.control.checkpoint_audit(&caller, signer.clone()).await {
            Ok((v, _)) if !v.intact() => {
                let why = v.anchor_break.clone().or_else(|| v.chain.first_break.as_ref().map(|b| b.reason.clone()));
                tracing::error!(
                    reason = why.unwrap_or_default(),
                    "the audit log does not verify; no checkpoint signed"
                );
            }
            Ok((_, Some(c))) => tracing::info!(seq = c.seq, "audit checkpoint signed"),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "audit checkpoint failed"),
        }
    }
}

/// The background reconciler: a pass every `every` (the first one after
/// `every`), its findings in the logs and in `/metrics`.
async fn reconcile_every(state: AppState, every: Duration) {
    let holder = format!("paved-reconciler@{}:{}", state.holder_host, std::process::id());
    loop {
        tokio::time::sleep(every).await;
        match state.control.reconcile(&holder).await {
            Ok(results) => {
                for r in results {
                    state.metrics.drifted(&r.environment, r.drifted);
                    if let Some(ok) = r.healed {
                        state
                            .metrics
                            .heals
                            .get_or_create(&metrics::OutcomeLabels {
                                outcome: if ok { "succeeded" } else { "failed" }.into(),
                            })
                            .inc();
                    }
                    match (&r.error, r.drifted, r.healed) {
                        (Some(e), _, _) => {
                            tracing::warn!(environment = %r.environment, error = %e, "reconcile: could not check")
                        }
                        (None, 0, _) => {}
                        (None, n, Some(ok)) => {
                            tracing::warn!(environment = %r.environment, drifted = n, healed = ok, "reconcile: drift healed")
                        }
                        (None, n, None) => {
                            tracing::warn!(environment = %r.environment, drifted = n, "reconcile: drift reported (blueprint is report-only)")
                        }
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "reconcile pass failed"),
        }
    }
}

/// How long the bootstrap admin token keeps working, by default, once an
/// organisation admin holds a token of their own: a day to finish setting up.
pub const BOOTSTRAP_GRACE: Duration = Duration::from_secs(24 * 3600);

/// What [`bootstrap`] did at this start.
#[derive(Debug, Default)]
pub struct Bootstrap {
    /// The token file, when this start wrote it (the store's first start).
    pub written: Option<PathBuf>,
    /// The token file's mode before it was put back to 0600, when it had
    /// been loosened since.
    pub tightened: Option<u32>,
    /// When the bootstrap token stops working, once that is decided.
    pub expires: Option<time::OffsetDateTime>,
}

fn server_caller() -> paved_control::Caller {
    paved_control::Caller {
        actor: "paved server".into(),
        request: paved_store::RequestContext { request_id: new_id(), origin: "server".into() },
    }
}

/// On every start: at the store's first, issues the bootstrap admin token
/// and writes it to `path` (mode 0600, never logged); later, puts the file
/// back to 0600 if someone loosened it, and retires the token once real
/// admins exist ([`retire_bootstrap`]).
pub async fn bootstrap(control: &Control, path: &Path, grace: Duration) -> Result<Bootstrap, ServerError> {
    let tokens = control.store.list_tokens().await?;
    if tokens.iter().any(|t| t.subject == auth::BOOTSTRAP_SUBJECT) {
        use std::os::unix::fs::PermissionsExt;
        let mut report = Bootstrap::default();
        if let Ok(meta) = std::fs::symlink_metadata(path) {
            let mode = meta.permissions().mode() & 0o7777;
            if meta.is_file() && mode != 0o600 {
                std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
                    .map_err(|source| ServerError::BootstrapFile { path: path.to_path_buf(), source })?;
                report.tightened = Some(mode);
            }
        }
        report.expires = retire_bootstrap(control, grace).await?;
        return Ok(report);
    }
    let caller = server_caller();
    let write = |secret: &str| -> std::io::Result<()> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(path)?;
        writeln!(f, "{secret}")?;
        f.sync_all()
    };
    // Issued once per store, ever: a revoked bootstrap token stays revoked across restarts.
    // A crash between recording and writing leaves a token nobody holds; on the server's
    // machine `paved token create admin --subject serviceaccount:paved-bootstrap-admin` makes another.
    let (_, secret) = control
        .issue_token(&caller, "bootstrap-admin", auth::BOOTSTRAP_SUBJECT, None)
        .await
        .map_err(|e| ServerError::Bootstrap(e.to_string()))?;
    write(&secret).map_err(|source| ServerError::BootstrapFile { path: path.to_path_buf(), source })?;
    Ok(Bootstrap { written: Some(path.to_path_buf()), ..Bootstrap::default() })
}

/// The bootstrap token is for the first hour of an installation, not a
/// standing credential: once a live token acts as a subject with an
/// organisation-wide admin binding, the bootstrap token expires `grace`
/// later (audited as `token.expire`). Checked at every start and after
/// every token is issued. Returns when it stops working.
pub async fn retire_bootstrap(control: &Control, grace: Duration) -> Result<Option<time::OffsetDateTime>, ServerError> {
    let now = control.clock.now();
    let tokens = control.store.list_tokens().await?;
    let Some(boot) = tokens.iter().find(|t| t.subject == auth::BOOTSTRAP_SUBJECT && t.unusable_at(now).is_none())
    else {
        return Ok(None);
    };
    if boot.expires_at.is_some() {
        return Ok(boot.expires_at);
    }
    let mut admins = std::collections::BTreeSet::new();
    let bindings = control.catalog(Default::default()).list(Some(Kind::RoleBinding)).await;
    for o in bindings.map_err(|e| ServerError::Retire(e.to_string()))? {
        if let Spec::RoleBinding(b) = o.spec
            && b.spec.role == paved_model::Role::Admin
            && b.spec.scope == paved_model::BindingScope::Organisation
        {
            admins.extend(b.spec.subjects.into_iter().map(|s| s.0));
        }
    }
    let Some(real) = tokens
        .iter()
        .find(|t| t.subject != auth::BOOTSTRAP_SUBJECT && t.unusable_at(now).is_none() && admins.contains(&t.subject))
    else {
        return Ok(None);
    };
    let at = now + time::Duration::try_from(grace).unwrap_or(time::Duration::DAY);
    let why = format!("an organisation admin ({}) holds token {}", real.subject, real.id);
    control.expire_token(&server_caller(), &boot.id, at, &why).await.map_err(|e| ServerError::Retire(e.to_string()))?;
    Ok(Some(at))
}

#[cfg(test)]
mod tests {
    use super::AccessCache;

    #[test]
    fn the_access_cache_follows_the_audit_head_and_never_goes_back() {
        let cache = AccessCache::default();
        cache.put_token(5, "h", None);
        assert_eq!(cache.token(5, "h"), Some(None));
        // The head moved: everything read before is gone.
        assert_eq!(cache.token(6, "h"), None);
        cache.put_token(6, "h", None);
        // A request that read the head before the newest one neither reads nor fills.
        assert_eq!(cache.token(5, "h"), None);
        cache.put_token(5, "old", None);
        assert_eq!(cache.token(6, "old"), None);
        assert_eq!(cache.token(6, "h"), Some(None));
    }

    #[test]
    fn listing_pages_stay_few_wherever_callers_start_them() {
        let cache = AccessCache::default();
        for i in 0..1_000 {
            let key = (paved_model::Kind::Environment, format!("env-{i:05}"), 51);
            cache.put(1, |c| &mut c.pages, key, std::sync::Arc::new(vec![]), super::MAX_CACHED_PAGES);
        }
        assert!(cache.at(1).unwrap().pages.len() <= super::MAX_CACHED_PAGES);
    }

    #[test]
    fn rendered_bodies_stay_within_their_byte_budget_and_count_replacements_once() {
        let cache = AccessCache::default();
        let big = axum::body::Bytes::from(vec![b' '; 200_000]);
        for i in 0..1_000 {
            cache.put_body(1, format!("viewer\0environments\0env-{i:05}\01000"), 0, big.clone());
            let c = cache.at(1).unwrap();
            assert!(c.body_bytes <= super::MAX_CACHED_BODY_BYTES);
            assert_eq!(c.body_bytes, c.bodies.values().map(|(_, b)| b.len()).sum::<usize>());
        }
        cache.put_body(1, "k".into(), 0, big.clone());
        cache.put_body(1, "k".into(), 7, axum::body::Bytes::from_static(b"{}"));
        let c = cache.at(1).unwrap();
        assert_eq!(c.bodies.get("k").map(|(at, b)| (*at, b.len())), Some((7, 2)));
        assert_eq!(c.body_bytes, c.bodies.values().map(|(_, b)| b.len()).sum::<usize>());
    }
}
