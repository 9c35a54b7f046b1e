//! `paved __proxy`: the reverse proxy of one environment.
//!
//! Routes are JSON files in a directory (written by the `local.route`
//! driver), re-read when the directory changes, so routes come and go
//! without a restart. A request is sent to the route whose host matches the
//! `Host` header (`web.dev.localhost`, any port) and whose path is the
//! longest prefix of the request path.
//!
//! The proxy also serves each service's stable address (the environment's
//! `127.0.N.1` on the service's ports), forwarding connections to the slot
//! that serves it (`services/SERVICE.json`, see [`crate::slots`]); HTTP routes
//! to a stable address go straight to that slot. A switch of slots therefore
//! takes effect at the next connection, with no restart of anything.

use crate::slots::ServiceFile;
use http_body_util::{BodyExt, Full, combinators::BoxBody};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

/// One route, as the `local.route` driver writes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Route {
    pub host: String,
    pub path: String,
    /// `ADDRESS:PORT` of the service.
    pub backend: String,
    pub service: String,
}

struct Table {
    dir: PathBuf,
    loaded: Option<SystemTime>,
    routes: Vec<Route>,
}

impl Table {
    fn refresh(&mut self) {
        let modified = std::fs::metadata(&self.dir).and_then(|m| m.modified()).ok();
        if modified.is_some() && modified == self.loaded {
            return;
        }
        self.loaded = modified;
        self.routes = load(&self.dir);
    }

    fn find(&self, host: &str, path: &str) -> Option<Route> {
        self.routes
            .iter()
            .filter(|r| r.host.eq_ignore_ascii_case(host) && path.starts_with(r.path.as_str()))
            .max_by_key(|r| r.path.len())
            .cloned()
    }
}

/// Every route file of a directory, sorted by host and path.
pub fn load(dir: &Path) -> Vec<Route> {
    let mut routes: Vec<Route> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
                .filter_map(|e| crate::fsutil::read_json::<Route>(&e.path()).ok().flatten())
                .collect()
        })
        .unwrap_or_default();
    routes.sort_by(|a, b| (&a.host, &a.path).cmp(&(&b.host, &b.path)));
    routes
}

/// The services' files, re-read when their directory changes (and every second,
/// in case two writes fell within one tick of the file system's clock).
struct Services {
    dir: PathBuf,
    loaded: Option<(SystemTime, std::time::Instant)>,
    files: Vec<ServiceFile>,
}

impl Services {
    fn refresh(&mut self) {
        let modified = std::fs::metadata(&self.dir).and_then(|m| m.modified()).ok();
        if let (Some(m), Some((seen, at))) = (modified, self.loaded)
            && m == seen
            && at.elapsed() < Duration::from_secs(1)
        {
            return;
        }
        self.loaded = modified.map(|m| (m, std::time::Instant::now()));
        self.files = std::fs::read_dir(&self.dir)
            .map(|rd| {
                rd.flatten()
                    .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
                    .filter_map(|e| crate::fsutil::read_json::<ServiceFile>(&e.path()).ok().flatten())
                    .collect()
            })
            .unwrap_or_default();
    }

    /// The serving slot's `ADDRESS:PORT` for a stable `ADDRESS:PORT`.
    fn backend(&self, stable: &str) -> Option<String> {
        let (address, port) = stable.rsplit_once(':')?;
        let port: u16 = port.parse().ok()?;
        self.files
            .iter()
            .find(|f| f.address == address && f.ports.contains(&port))
            .map(|f| format!("{}:{port}", f.backend))
    }

    fn stable_addresses(&self) -> std::collections::BTreeSet<String> {
        self.files.iter().flat_map(|f| f.ports.iter().map(|p| format!("{}:{p}", f.address))).collect()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Keeps a listener on every stable address the service files name; an
/// address still held by a workload of the layout before slots is retried.
async fn serve_stable_addresses(services: Arc<Mutex<Services>>) {
    let mut listeners: std::collections::HashMap<String, tokio::task::JoinHandle<()>> = Default::default();
    loop {
        let wanted = {
            let mut s = lock(&services);
            s.refresh();
            s.stable_addresses()
        };
        listeners.retain(|addr, task| {
            let keep = wanted.contains(addr) && !task.is_finished();
            if !keep {
                task.abort();
            }
            keep
        });
        for addr in wanted {
            if listeners.contains_key(&addr) {
                continue;
            }
            if let Ok(listener) = tokio::net::TcpListener::bind(&addr).await {
                listeners.insert(addr.clone(), tokio::spawn(forward(listener, addr, services.clone())));
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Forwards each connection to the slot serving `stable` when it arrives.
async fn forward(listener: tokio::net::TcpListener, stable: String, services: Arc<Mutex<Services>>) {
    loop {
        let Ok((mut inbound, _)) = listener.accept().await else { continue };
        let backend = {
            let mut s = lock(&services);
            s.refresh();
            s.backend(&stable)
        };
        tokio::spawn(async move {
            if let Some(backend) = backend
                && let Ok(mut outbound) = tokio::net::TcpStream::connect(&backend).await
            {
                let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
            }
        });
    }
}

type Body = BoxBody<Bytes, hyper::Error>;

fn text(status: StatusCode, msg: String) -> Response<Body> {
    let mut resp = Response::new(Full::new(Bytes::from(msg)).map_err(|never| match never {}).boxed());
    *resp.status_mut() = status;
    resp.headers_mut().insert(hyper::header::CONTENT_TYPE, hyper::header::HeaderValue::from_static("text/plain"));
    resp
}

async fn handle(
    table: Arc<Mutex<Table>>,
    services: Arc<Mutex<Services>>,
    client: Client<HttpConnector, Incoming>,
    timeout: Duration,
    mut req: Request<Incoming>,
) -> Result<Response<Body>, hyper::Error> {
    let host = req
        .headers()
        .get(hyper::header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(|h| h.rsplit_once(':').map_or(h, |(name, _)| name).to_string())
        .unwrap_or_default();
    let path = req.uri().path().to_string();
    let route = {
        let mut t = table.lock().unwrap_or_else(|p| p.into_inner());
        t.refresh();
        t.find(&host, &path).ok_or_else(|| t.routes.iter().map(|r| format!("{}{}", r.host, r.path)).collect::<Vec<_>>())
    };
    let route = match route {
        Ok(r) => r,
        Err(known) => {
            return Ok(text(
                StatusCode::NOT_FOUND,
                format!("paved: no route for {host}{path}; routes here: {}\n", known.join(", ")),
            ));
        }
    };
    let backend = {
        let mut s = lock(&services);
        s.refresh();
        s.backend(&route.backend).unwrap_or_else(|| route.backend.clone())
    };
    let pq = req.uri().path_and_query().map_or("/", |p| p.as_str()).to_string();
    match format!("http://{backend}{pq}").parse() {
        Ok(uri) => *req.uri_mut() = uri,
        Err(e) => return Ok(text(StatusCode::BAD_GATEWAY, format!("paved: bad backend {}: {e}\n", route.backend))),
    }
    match tokio::time::timeout(timeout, client.request(req)).await {
        Ok(Ok(resp)) => Ok(resp.map(|b| b.boxed())),
        Ok(Err(e)) => Ok(text(
            StatusCode::BAD_GATEWAY,
            format!("paved: service `{}` at {} did not answer: {e}\n", route.service, route.backend),
        )),
        Err(_) => Ok(text(
            StatusCode::GATEWAY_TIMEOUT,
            format!("paved: service `{}` took longer than {timeout:?}\n", route.service),
        )),
    }
}

/// Serves until the process is stopped.
pub async fn serve(routes: PathBuf, listen: SocketAddr, request_timeout: Duration) -> Result<(), String> {
    let listener =
        tokio::net::TcpListener::bind(listen).await.map_err(|e| format!("cannot listen on {listen}: {e}"))?;
    let services_dir = routes.parent().map_or_else(|| PathBuf::from("services"), |p| p.join("services"));
    let services = Arc::new(Mutex::new(Services { dir: services_dir, loaded: None, files: Vec::new() }));
    tokio::spawn(serve_stable_addresses(services.clone()));
    let table = Arc::new(Mutex::new(Table { dir: routes, loaded: None, routes: Vec::new() }));
    let client: Client<HttpConnector, Incoming> = Client::builder(TokioExecutor::new()).build_http();
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(s) => s,
            Err(_) => continue,
        };
        let (table, services, client) = (table.clone(), services.clone(), client.clone());
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                handle(table.clone(), services.clone(), client.clone(), request_timeout, req)
            });
            let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
        });
    }
}
