//! The CLI against a paved server (`paved login --server URL`): the same
//! commands, sent to `/api/v1` with the saved token, so the server's access
//! checks and audit trail apply; output is printed by the same functions
//! as in embedded mode.
//!
//! The connection is https (rustls; the system's roots, or only the CA
//! bundle given at login) or plain http to this machine's loopback
//! addresses; plain http to anywhere else is refused unless asked for by
//! name, since the token would cross the network in clear text.

use crate::Failure;
use crate::cli::{AuditCommand, Format};
use crate::commands::Ctx;
use crate::output::structured;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use paved_catalog::Object;
use paved_model::{Kind, Spec};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// What `paved login` saves (mode 0600).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Remote {
    pub server: String,
    pub token: String,
    /// PEM certificates the server's must chain to, instead of the system's roots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    /// Built at the first call (reading the roots once per command).
    #[serde(skip)]
    client: std::sync::OnceLock<Client<HttpsConnector<HttpConnector>, Full<Bytes>>>,
}

/// The trust anchors and TLS settings of calls to the server.
fn tls_config(ca_file: Option<&Path>) -> Result<rustls::ClientConfig, Failure> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    match ca_file {
        Some(path) => {
            let bad = |e: &dyn std::fmt::Display| {
                Failure::User(format!(
                    "{}: not a PEM certificate bundle ({e}); pass the CA's certificate",
                    path.display()
                ))
            };
            let certs: Vec<CertificateDer> = CertificateDer::pem_file_iter(path)
                .map_err(|e| bad(&e))?
                .collect::<Result<_, _>>()
                .map_err(|e| bad(&e))?;
            if certs.is_empty() {
                return Err(bad(&"it holds no CERTIFICATE block"));
            }
            for c in certs {
                roots.add(c).map_err(|e| bad(&e))?;
            }
        }
        None => {
            // Certificates the system cannot parse are skipped, as every TLS client does.
            for c in rustls_native_certs::load_native_certs().certs {
                let _ = roots.add(c);
            }
        }
    }
    let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Failure::User(format!("TLS setup: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// Whether `url` is plain http to this machine (where no network is crossed).
fn loopback_http(url: &str) -> bool {
    let Some(rest) = url.strip_prefix("http://") else { return false };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => authority.rsplit_once(':').map_or(authority, |(h, _)| h),
    };
    host == "localhost" || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

pub fn config_file() -> PathBuf {
    std::env::var_os("PAVED_CONFIG_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| dirs::config_dir().unwrap_or_else(std::env::temp_dir).join("paved"))
        .join("server.json")
}

impl Remote {
    /// The saved server, if `paved login` was run.
    pub fn load() -> Result<Option<Remote>, Failure> {
        let path = config_file();
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| {
                Failure::User(format!(
                    "{} is not a paved login ({e}); run `paved logout` and log in again",
                    path.display()
                ))
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Failure::User(format!("cannot read {}: {e}", path.display()))),
        }
    }

    fn client(&self) -> Result<&Client<HttpsConnector<HttpConnector>, Full<Bytes>>, Failure> {
        if let Some(c) = self.client.get() {
            return Ok(c);
        }
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls_config(self.ca_file.as_deref())?)
            .https_or_http()
            .enable_http1()
            .build();
        Ok(self.client.get_or_init(|| Client::builder(TokioExecutor::new()).build(connector)))
    }

    async fn call(&self, method: &str, path: &str, body: Option<(&str, Vec<u8>)>) -> Result<(u16, Value), Failure> {
        let client = self.client()?;
        let url = format!("{}{path}", self.server.trim_end_matches('/'));
        let mut req = hyper::Request::builder()
            .method(method)
            .uri(&url)
            .header("authorization", format!("Bearer {}", self.token))
            .header("user-agent", concat!("paved/", env!("CARGO_PKG_VERSION")));
        let bytes = match body {
            Some((content_type, b)) => {
                req = req.header("content-type", content_type);
                b
            }
            None => vec![],
        };
        let req = req.body(Full::new(Bytes::from(bytes))).map_err(|e| Failure::User(format!("bad URL {url}: {e}")))?;
        let response = tokio::time::timeout(Duration::from_secs(120), client.request(req))
            .await
            .map_err(|_| Failure::User(format!("{url} did not answer within 120 s")))?
            .map_err(|e| {
                // hyper's error hides the cause (a certificate problem) behind "client error (Connect)".
                let mut why = e.to_string();
                let mut source = std::error::Error::source(&e);
                while let Some(s) = source {
                    why = format!("{why}: {s}");
                    source = s.source();
                }
                let hint = if why.contains("certificate") {
                    "\n  hint: if the server's certificate comes from your own CA, log in again with --ca-file CA.pem"
                } else {
                    ""
                };
                Failure::User(format!("cannot reach the paved server at {}: {why}{hint}", self.server))
            })?;
        let status = response.status().as_u16();
        let body = response.into_body().collect().await.map_err(|e| Failure::User(e.to_string()))?.to_bytes();
        let value = if body.is_empty() { Value::Null } else { serde_json::from_slice(&body).unwrap_or(Value::Null) };
        if status >= 400 {
            return Err(Failure::User(api_error(status, &value)));
        }
        Ok((status, value))
    }

    pub(crate) async fn get(&self, path: &str) -> Result<Value, Failure> {
        Ok(self.call("GET", path, None).await?.1)
    }

    /// Every item of a paginated listing.
    async fn all(&self, path: &str) -> Result<Vec<Value>, Failure> {
        let sep = if path.contains('?') { '&' } else { '?' };
        let (mut items, mut after) = (vec![], None::<String>);
        loop {
            let page_path = match &after {
                Some(a) => format!("{path}{sep}limit=1000&after={}", encode(a)),
                None => format!("{path}{sep}limit=1000"),
            };
            let page = self.get(&page_path).await?;
            items.extend(page["items"].as_array().cloned().unwrap_or_default());
            match page["next"].as_str() {
                Some(n) => after = Some(n.to_string()),
                None => return Ok(items),
            }
        }
    }
}

/// Everything but RFC 3986's unreserved characters is escaped (a path segment or query value).
const SEGMENT: &percent_encoding::AsciiSet =
    &percent_encoding::NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~');

pub(crate) fn encode(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, SEGMENT).to_string()
}

/// An API error as the CLI shows it: the message, then each detail with where it is.
fn api_error(status: u16, v: &Value) -> String {
    let mut out = format!("{} (HTTP {status})", v["message"].as_str().unwrap_or("the server refused the request"));
    for d in v["details"].as_array().into_iter().flatten() {
        let at = match (d["line"].as_u64(), d["column"].as_u64()) {
            (Some(l), Some(c)) => format!(" (line {l}, column {c})"),
            _ => String::new(),
        };
        out.push_str(&format!(
            "\n  {}{at}: {}",
            d["path"].as_str().unwrap_or("-"),
            d["message"].as_str().unwrap_or("")
        ));
        if let Some(h) = d["hint"].as_str() {
            out.push_str(&format!("\n    hint: {h}"));
        }
    }
    out
}

/// How `paved login` reaches the server.
pub struct LoginArgs<'a> {
    pub server: &'a str,
    pub token_file: Option<&'a Path>,
    pub ca_file: Option<&'a Path>,
    pub insecure_http: bool,
}

/// `paved login --server URL`: reads the token (standard input or a 0600 file), checks it, saves both.
pub async fn login(args: LoginArgs<'_>) -> Result<(), Failure> {
    let LoginArgs { server, token_file, ca_file, insecure_http } = args;
    if !server.starts_with("https://") && !server.starts_with("http://") {
        return Err(Failure::User(format!("`{server}`: the server is an https:// URL (or http:// on this machine)")));
    }
    if server.starts_with("http://") && !loopback_http(server) && !insecure_http {
        return Err(Failure::User(format!(
            "`{server}`: plain http would send your token across the network in clear text; use https:// \
             (with --ca-file if your CA is private), or --insecure-http if you really mean it"
        )));
    }
    let ca_file = ca_file
        .map(|p| std::path::absolute(p).map_err(|e| Failure::User(format!("{}: {e}", p.display()))))
        .transpose()?;
    let token = match token_file {
        Some(path) => {
            use std::os::unix::fs::PermissionsExt;
            let meta = std::fs::metadata(path).map_err(|e| Failure::User(format!("{}: {e}", path.display())))?;
            if meta.permissions().mode() & 0o077 != 0 {
                return Err(Failure::User(format!(
                    "{} can be read by others (mode {:o}); `chmod 600` it first",
                    path.display(),
                    meta.permissions().mode() & 0o777
                )));
            }
            std::fs::read_to_string(path).map_err(|e| Failure::User(format!("{}: {e}", path.display())))?
        }
        None => {
            if std::io::stdin().is_terminal() {
                eprint!("API token: ");
            }
            let mut t = String::new();
            std::io::stdin().take(4096).read_to_string(&mut t).map_err(|e| Failure::User(e.to_string()))?;
            t
        }
    };
    let remote = Remote {
        server: server.trim_end_matches('/').to_string(),
        token: token.trim().to_string(),
        ca_file,
        client: Default::default(),
    };
    let me = remote.get("/api/v1/whoami").await?;
    let path = config_file();
    let write = || -> std::io::Result<()> {
        use std::os::unix::fs::OpenOptionsExt;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let tmp = path.with_extension("json.tmp");
        let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp)?;
        f.write_all(&serde_json::to_vec_pretty(&remote).unwrap_or_default())?;
        f.sync_all()?;
        std::fs::rename(&tmp, &path)
    };
    write().map_err(|e| Failure::User(format!("cannot save {}: {e}", path.display())))?;
    eprintln!(
        "logged in to {} as {} (saved in {})",
        remote.server,
        me["subject"].as_str().unwrap_or("?"),
        path.display()
    );
    Ok(())
}

pub fn logout() -> Result<(), Failure> {
    match std::fs::remove_file(config_file()) {
        Ok(()) => {
            eprintln!("logged out; commands use the local state again");
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Failure::User(e.to_string())),
    }
}

fn unreadable(what: &str, v: &Value) -> Failure {
    Failure::Internal(anyhow::anyhow!("the server sent {what} paved cannot read: {v}"))
}

/// A recorded generation from its API form.
fn record_of(v: &Value) -> Result<paved_store::Record, Failure> {
    let kind = Kind::from_cli(v["kind"].as_str().unwrap_or_default()).ok_or_else(|| unreadable("a record", v))?;
    let created_at = time::OffsetDateTime::parse(
        v["created_at"].as_str().unwrap_or_default(),
        &time::format_description::well_known::Rfc3339,
    )
    .map_err(|_| unreadable("a record", v))?;
    Ok(paved_store::Record {
        kind: kind.as_str().into(),
        name: v["name"].as_str().unwrap_or_default().into(),
        generation: v["generation"].as_i64().unwrap_or_default(),
        content_hash: v["content_hash"].as_str().unwrap_or_default().into(),
        spec: Some(v["document"].clone()).filter(|d| !d.is_null()),
        deleted: v["deleted"].as_bool().unwrap_or(false),
        actor: v["actor"].as_str().unwrap_or_default().into(),
        source: v["source"].as_str().map(str::to_string),
        created_at,
    })
}

/// A recorded object from its API form, for the embedded mode's printers.
fn object(v: &Value) -> Result<Object, Failure> {
    let record = record_of(v)?;
    let kind = Kind::from_cli(&record.kind).ok_or_else(|| unreadable("an object", v))?;
    let spec = Spec::from_document(kind, v["document"].clone()).map_err(|_| unreadable("an object", v))?;
    Ok(Object { spec, record })
}

fn typed<T: serde::de::DeserializeOwned>(what: &str, v: Value) -> Result<T, Failure> {
    serde_json::from_value(v.clone()).map_err(|_| unreadable(what, &v))
}

pub async fn plan(ctx: &Ctx, remote: &Remote, env: &str) -> Result<(), Failure> {
    let e = remote.get(&format!("/api/v1/environments/{}", encode(env))).await?;
    let plan: paved_plan::Plan =
        typed("a plan", remote.get(&format!("/api/v1/environments/{}/plan", encode(env))).await?)?;
    let header = format!(
        "Plan for environment {env} (account {}, region {}):",
        e["account"].as_str().unwrap_or("?"),
        e["region"].as_str().unwrap_or("?")
    );
    crate::plan::print_plan(ctx, &header, &plan);
    Ok(())
}

/// The server's rendering of a cluster environment.
async fn rendered(remote: &Remote, env: &str) -> Result<crate::render::Rendered, Failure> {
    typed("a rendered tree", remote.get(&format!("/api/v1/environments/{}/kubernetes", encode(env))).await?)
}

/// `paved render -e ENV -d DIR` against the server: its tree, written here.
pub async fn render(ctx: &Ctx, remote: &Remote, env: &str, dir: &std::path::Path) -> Result<(), Failure> {
    crate::render::write_tree(ctx, env, dir, &rendered(remote, env).await?)
}

/// `paved export kubernetes -e ENV` against the server.
pub async fn export_kubernetes(remote: &Remote, env: &str) -> Result<(), Failure> {
    crate::render::print_stream(&rendered(remote, env).await?);
    Ok(())
}

/// `paved deliver -e ENV` against the server: the server commits.
pub async fn deliver(ctx: &Ctx, remote: &Remote, env: &str) -> Result<(), Failure> {
    let (_, v) = remote.call("POST", &format!("/api/v1/environments/{}/deliver", encode(env)), None).await?;
    crate::render::show_delivery(ctx, &typed("a delivery", v)?);
    Ok(())
}

pub async fn parity(ctx: &Ctx, remote: &Remote, left: &str, right: &str) -> Result<(), Failure> {
    let path = format!("/api/v1/environments/{}/parity?with={}", encode(left), encode(right));
    let differences: Vec<paved_plan::parity::Difference> = typed("a parity report", remote.get(&path).await?)?;
    crate::plan::print_parity(ctx, left, right, &differences)
}

pub async fn history(ctx: &Ctx, remote: &Remote, kind: Kind, name: &str) -> Result<(), Failure> {
    let v = remote.get(&format!("/api/v1/specs/{}/{}/history", kind.as_str(), encode(name))).await?;
    let records = v.as_array().into_iter().flatten().map(record_of).collect::<Result<Vec<_>, _>>()?;
    crate::commands::print_history(ctx, &records);
    Ok(())
}

pub async fn secret(ctx: &Ctx, remote: &Remote, command: crate::cli::SecretCommand) -> Result<(), Failure> {
    use crate::cli::SecretCommand;
    use crate::secret as s;
    let base = |env: &str, name: Option<&str>| match name {
        Some(n) => format!("/api/v1/environments/{}/secrets/{}", encode(env), encode(n)),
        None => format!("/api/v1/environments/{}/secrets", encode(env)),
    };
    let service_query = |service: &Option<String>| match service {
        Some(svc) => format!("?service={}", encode(svc)),
        None => String::new(),
    };
    match command {
        SecretCommand::Set { name, value, scope, from_file, from_env } => {
            s::refuse_argument(&value, &name, &scope)?;
            let value = s::read_value(from_file.as_deref(), from_env.as_deref())?;
            let text = String::from_utf8(value.0)
                .map_err(|_| Failure::User("the server takes UTF-8 text values; this one is binary".into()))?;
            let body = serde_json::json!({ "value": text }).to_string().into_bytes();
            let path = format!("{}{}", base(&scope.environment, Some(&name)), service_query(&scope.service));
            let (_, v) = remote.call("PUT", &path, Some(("application/json", body))).await?;
            s::print_stored(ctx, &typed("a secret", v)?);
        }
        SecretCommand::List { environment, service } => {
            let path = format!("{}{}", base(&environment, None), service_query(&service));
            s::print_infos(ctx, &typed::<Vec<paved_secrets::SecretInfo>>("secrets", remote.get(&path).await?)?);
        }
        SecretCommand::History { name, scope } => {
            let path = format!("{}/versions{}", base(&scope.environment, Some(&name)), service_query(&scope.service));
            s::print_infos(ctx, &typed::<Vec<paved_secrets::SecretInfo>>("versions", remote.get(&path).await?)?);
        }
        SecretCommand::Reveal { name, scope, version } => {
            let mut query: Vec<String> = Vec::new();
            if let Some(svc) = &scope.service {
                query.push(format!("service={}", encode(svc)));
            }
            if let Some(v) = version {
                query.push(format!("version={v}"));
            }
            let q = if query.is_empty() { String::new() } else { format!("?{}", query.join("&")) };
            let path = format!("{}/reveal{q}", base(&scope.environment, Some(&name)));
            let (_, v) = remote.call("POST", &path, None).await?;
            let value = paved_secrets::SecretValue(v["value"].as_str().unwrap_or_default().as_bytes().to_vec());
            s::print_revealed(ctx, &typed("a secret", v)?, &value);
        }
        SecretCommand::Delete { name, scope } => {
            let path = format!("{}{}", base(&scope.environment, Some(&name)), service_query(&scope.service));
            let (_, v) = remote.call("DELETE", &path, None).await?;
            s::print_stored(ctx, &typed("a secret", v)?);
        }
        SecretCommand::RotateKeys { .. } => {
            return Err(Failure::User("`paved secret rotate-keys` runs where the keys are: use --state".into()));
        }
    }
    Ok(())
}

pub async fn token(ctx: &Ctx, remote: &Remote, command: crate::cli::TokenCommand) -> Result<(), Failure> {
    use crate::cli::TokenCommand;
    match command {
        TokenCommand::Create { name, subject, expires } => {
            let mut body = serde_json::json!({"name": name, "subject": subject});
            if let Some(e) = expires {
                body["expires_in"] = format!("{}s", e.as_secs()).into();
            }
            let (_, v) = remote
                .call("POST", "/api/v1/tokens", Some(("application/json", body.to_string().into_bytes())))
                .await?;
            let secret = v["secret"].as_str().unwrap_or_default().to_string();
            let token: paved_store::ApiToken = typed("a token", v)?;
            crate::server::print_issued(ctx, &token, &secret);
        }
        TokenCommand::List => {
            let tokens: Vec<paved_store::ApiToken> = typed("tokens", remote.get("/api/v1/tokens").await?)?;
            crate::server::print_tokens(ctx, &tokens);
        }
        TokenCommand::Revoke { id } => {
            remote.call("DELETE", &format!("/api/v1/tokens/{}", encode(&id)), None).await?;
            println!("revoked {id}");
        }
    }
    Ok(())
}

pub async fn get(ctx: &Ctx, remote: &Remote, kind: Kind, name: Option<&str>) -> Result<(), Failure> {
    let objects = match name {
        Some(n) => vec![object(&remote.get(&format!("/api/v1/specs/{}/{}", kind.as_str(), encode(n))).await?)?],
        None => list(remote, kind).await?,
    };
    crate::commands::print_objects(ctx, kind, name.is_some(), &objects);
    Ok(())
}

/// Every recorded object of `kind` the caller may view.
pub(crate) async fn list(remote: &Remote, kind: Kind) -> Result<Vec<Object>, Failure> {
    remote.all(&format!("/api/v1/specs?kind={}", kind.as_str())).await?.iter().map(object).collect()
}

/// `paved apply -f` against a server: the files as one batch (all or nothing),
/// with each diagnostic mapped back to its file and line.
pub async fn record(ctx: &Ctx, remote: &Remote, sources: &[paved_spec::SourceFile]) -> Result<(), Failure> {
    let mut body = String::new();
    let mut starts = vec![];
    for s in sources {
        if !body.is_empty() {
            body.push_str("\n---\n");
        }
        starts.push((body.lines().count() + 1, s.path.clone()));
        body.push_str(&s.text);
    }
    let result = remote.call("POST", "/api/v1/specs", Some(("application/yaml", body.into_bytes()))).await;
    let result = result.map_err(|e| match e {
        Failure::User(msg) => Failure::User(relocate(&msg, &starts)),
        other => other,
    })?;
    let outcomes = result.1["outcomes"].as_array().cloned().unwrap_or_default();
    if let Some(text) = structured(ctx.format, &outcomes) {
        println!("{text}");
        return Ok(());
    }
    let count = |a: &str| outcomes.iter().filter(|o| o["action"] == a).count();
    println!("specs: {} created, {} updated, {} unchanged", count("created"), count("updated"), count("unchanged"));
    Ok(())
}

/// Rewrites `(line N, column C)` of the joined body into `FILE:LINE:COLUMN`.
fn relocate(msg: &str, starts: &[(usize, String)]) -> String {
    let re = regex::Regex::new(r"\(line (\d+), column (\d+)\)").expect("constant pattern");
    re.replace_all(msg, |c: &regex::Captures<'_>| {
        let line: usize = c[1].parse().unwrap_or(0);
        match starts.iter().rev().find(|(start, _)| *start <= line) {
            Some((start, file)) => format!("({file}:{}:{})", line - start + 1, &c[2]),
            None => c[0].to_string(),
        }
    })
    .into_owned()
}

/// Starts an apply or destroy and follows it to the end, one line per resource.
pub async fn run(ctx: &Ctx, remote: &Remote, env: &str, destroy: bool) -> Result<(), Failure> {
    let verb = if destroy { "destroy" } else { "apply" };
    let (_, op) = remote.call("POST", &format!("/api/v1/environments/{}/{verb}", encode(env)), None).await?;
    let id = op["id"].as_str().unwrap_or_default().to_string();
    if ctx.format == Format::Table {
        eprintln!("{verb} of {env} started on {} (operation {id})", remote.server);
    }
    let mut shown = std::collections::BTreeSet::new();
    loop {
        let op = remote.get(&format!("/api/v1/operations/{id}")).await?;
        if ctx.format == Format::Table {
            for (node, outcome) in op["outcomes"].as_object().into_iter().flatten() {
                if shown.insert(node.clone()) {
                    let error = outcome["error"].as_str().map(|e| format!(": {e}")).unwrap_or_default();
                    println!("  {:<10} {node}{error}", outcome["outcome"].as_str().unwrap_or("?"));
                }
            }
        }
        if op["status"] != "running" {
            if let Some(text) = structured(ctx.format, &op) {
                println!("{text}");
            } else {
                println!(
                    "{env}: {} ({} of {} resources)",
                    op["status"].as_str().unwrap_or("?"),
                    op["done"],
                    op["total"]
                );
            }
            return if op["status"] == "succeeded" { Ok(()) } else { Err(Failure::Reported) };
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// `paved status` from the server (the rows it answers with, printed as embedded).
pub async fn status(ctx: &Ctx, remote: &Remote) -> Result<(), Failure> {
    let rows: Vec<paved_control::StatusRow> =
        serde_json::from_value(remote.get("/api/v1/status").await?).map_err(unexpected)?;
    crate::deploy::print_status(ctx, &rows);
    Ok(())
}

fn unexpected(e: serde_json::Error) -> Failure {
    Failure::User(format!("unexpected answer from the server: {e}"))
}

fn deployments_path(service: &str, env: &str, what: &str) -> String {
    format!("/api/v1/environments/{}/services/{}/{what}", encode(env), encode(service))
}

/// `paved history SERVICE -e ENV` from the server.
pub async fn deployment_history(ctx: &Ctx, remote: &Remote, service: &str, env: &str) -> Result<(), Failure> {
    let list: Vec<paved_store::Deployment> =
        serde_json::from_value(remote.get(&deployments_path(service, env, "deployments")).await?)
            .map_err(unexpected)?;
    crate::deploy::print_history(ctx, &list);
    Ok(())
}

/// `deploy`, `rollback`, `promote` on the server: records, then follows the rollout's operation.
pub async fn roll_out(ctx: &Ctx, remote: &Remote, what: crate::deploy::Rollout) -> Result<(), Failure> {
    use crate::deploy::Rollout;
    let (path, body) = match &what {
        Rollout::Deploy(r) => (
            deployments_path(&r.service, &r.environment, "deployments"),
            serde_json::json!({
                "artifact": r.artifact,
                "strategy": r.strategy.map(|s| s.as_str()),
                "soakSeconds": r.soak.map(|d| d.as_secs()),
                "readyTimeoutSeconds": r.ready_timeout.map(|d| d.as_secs()),
                "requestId": r.request_id,
            }),
        ),
        Rollout::Rollback { service, environment, to, request_id } => {
            (deployments_path(service, environment, "rollback"), serde_json::json!({"to": to, "requestId": request_id}))
        }
        Rollout::Promote { service, from, to, request_id } => {
            (deployments_path(service, to, "promote"), serde_json::json!({"from": from, "requestId": request_id}))
        }
    };
    let body = serde_json::to_vec(&body).map_err(|e| Failure::Internal(e.into()))?;
    let (_, accepted) = remote.call("POST", &path, Some(("application/json", body))).await?;
    let id = accepted["operation"]["id"].as_str().unwrap_or_default().to_string();
    let deployment: paved_store::Deployment =
        serde_json::from_value(accepted["deployment"].clone()).map_err(unexpected)?;
    loop {
        let op = remote.get(&format!("/api/v1/operations/{id}")).await?;
        if op["status"] != "running" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let list: Vec<paved_store::Deployment> = serde_json::from_value(
        remote.get(&deployments_path(&deployment.service, &deployment.environment, "deployments")).await?,
    )
    .map_err(unexpected)?;
    let deployment = list.into_iter().find(|d| d.number == deployment.number).unwrap_or(deployment);
    let created = accepted["created"].as_bool().unwrap_or(true);
    crate::deploy::report(ctx, &paved_control::DeployResult { deployment, created, restored: None })
}

pub async fn drift(ctx: &Ctx, remote: &Remote, env: &str) -> Result<(), Failure> {
    let report = remote.get(&format!("/api/v1/environments/{}/drift", encode(env))).await?;
    if let Some(text) = structured(ctx.format, &report) {
        println!("{text}");
    } else {
        let nodes = report["nodes"].as_array().cloned().unwrap_or_default();
        let drifted: Vec<&Value> = nodes.iter().filter(|n| n["status"] != "in-sync").collect();
        for n in &drifted {
            let status = n["status"].as_str().map_or_else(|| n["status"].to_string(), str::to_string);
            println!("  ~ {}: {status}", n["id"].as_str().unwrap_or("?"));
            for c in n["changes"].as_array().into_iter().flatten() {
                println!("      {}: {} -> {}", c["field"].as_str().unwrap_or("?"), c["before"], c["after"]);
            }
        }
        if drifted.is_empty() {
            println!("{env}: no drift ({} resources checked)", nodes.len());
        } else {
            println!(
                "{env}: {} of {} resources drifted; `paved apply -e {env}` repairs them",
                drifted.len(),
                nodes.len()
            );
        }
    }
    if report["drifted"] == true { Err(Failure::Drift) } else { Ok(()) }
}

pub async fn delete(ctx: &Ctx, remote: &Remote, kind: Kind, name: &str) -> Result<(), Failure> {
    let (_, v) = remote.call("DELETE", &format!("/api/v1/specs/{}/{}", kind.as_str(), encode(name)), None).await?;
    match structured(ctx.format, &v) {
        Some(text) => println!("{text}"),
        None => println!("{} {name} deleted (generation {})", kind.as_str().to_lowercase(), v["generation"]),
    }
    Ok(())
}

pub async fn audit(ctx: &Ctx, remote: &Remote, command: AuditCommand) -> Result<(), Failure> {
    match command {
        AuditCommand::Verify => {
            let v = remote.get("/api/v1/audit/verify").await?;
            if let Some(text) = structured(ctx.format, &v) {
                println!("{text}");
            } else if v["intact"] == true {
                println!("audit log intact: {} events", v["events"]);
                if let Some(seq) = v["anchored_seq"].as_i64() {
                    println!("signed checkpoint covers events 1..{seq}");
                }
            } else if let Some(why) = v["anchor_break"].as_str().filter(|_| v["first_break"].is_null()) {
                println!("audit log tampered with: {why}");
            } else {
                println!("audit log broken at event {}: {}", v["first_break"]["seq"], v["first_break"]["reason"]);
            }
            if v["intact"] == true { Ok(()) } else { Err(Failure::Reported) }
        }
        AuditCommand::Checkpoint => Err(Failure::User(
            "the server signs checkpoints itself (--audit-checkpoint-interval); run `paved audit checkpoint` \
             on the server's machine for one now"
                .into(),
        )),
        AuditCommand::List(f) | AuditCommand::Export(f) => {
            let mut q = vec![];
            for (k, v) in [("actor", &f.actor), ("action", &f.action), ("target", &f.target)] {
                if let Some(v) = v {
                    q.push(format!("{k}={}", encode(v)));
                }
            }
            let rfc = &time::format_description::well_known::Rfc3339;
            for (k, v) in [("since", f.since), ("until", f.until)] {
                if let Some(t) = v.and_then(|t| t.format(rfc).ok()) {
                    q.push(format!("{k}={}", encode(&t)));
                }
            }
            let events = remote.all(&format!("/api/v1/audit?{}", q.join("&"))).await?;
            let mut events: Vec<paved_store::AuditEvent> =
                events.into_iter().map(serde_json::from_value).collect::<Result<_, _>>().map_err(|e| {
                    Failure::Internal(anyhow::anyhow!("the server sent an audit event paved cannot read: {e}"))
                })?;
            if let Some(limit) = f.limit {
                events.truncate(limit.max(0) as usize);
            }
            crate::audit::print_events(ctx, &events);
            Ok(())
        }
    }
}

pub async fn whoami(ctx: &Ctx, remote: Option<&Remote>) -> Result<(), Failure> {
    let Some(remote) = remote else {
        println!("{} (embedded: the local state, no server)", ctx.actor);
        return Ok(());
    };
    let me = remote.get("/api/v1/whoami").await?;
    if let Some(text) = structured(ctx.format, &me) {
        println!("{text}");
    } else {
        println!(
            "{} on {} (token {})",
            me["subject"].as_str().unwrap_or("?"),
            remote.server,
            me["token"].as_str().unwrap_or("?")
        );
        for b in me["bindings"].as_array().into_iter().flatten() {
            println!("  {}", b.as_str().unwrap_or_default());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::loopback_http;

    #[test]
    fn only_loopback_hosts_count_as_this_machine() {
        for url in ["http://127.0.0.1:7480", "http://127.9.9.9/api", "http://localhost:1", "http://[::1]:7480/x"] {
            assert!(loopback_http(url), "{url}");
        }
        for url in [
            "http://10.0.0.1:7480",
            "http://paved.internal",
            "http://127.0.0.1.evil.example:80",
            "http://localhost.evil.example",
            "https://127.0.0.1",
            "http://[::2]:1",
        ] {
            assert!(!loopback_http(url), "{url}");
        }
    }
}
