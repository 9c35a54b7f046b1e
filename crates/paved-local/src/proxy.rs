//! `paved __proxy`: the reverse proxy of one environment.
//!
//! Routes are JSON files in a directory (written by the `local.route`
//! driver), re-read when the directory changes, so routes come and go
//! without a restart. A request is sent to the route whose host matches the
//! `Host` header (`web.dev.localhost`, any port) and whose path is the
//! longest prefix of the request path.

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

type Body = BoxBody<Bytes, hyper::Error>;

fn text(status: StatusCode, msg: String) -> Response<Body> {
    let mut resp = Response::new(Full::new(Bytes::from(msg)).map_err(|never| match never {}).boxed());
    *resp.status_mut() = status;
    resp.headers_mut().insert(hyper::header::CONTENT_TYPE, hyper::header::HeaderValue::from_static("text/plain"));
    resp
}

async fn handle(
    table: Arc<Mutex<Table>>,
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
    let pq = req.uri().path_and_query().map_or("/", |p| p.as_str()).to_string();
    match format!("http://{}{pq}", route.backend).parse() {
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
    let table = Arc::new(Mutex::new(Table { dir: routes, loaded: None, routes: Vec::new() }));
    let client: Client<HttpConnector, Incoming> = Client::builder(TokioExecutor::new()).build_http();
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(s) => s,
            Err(_) => continue,
        };
        let (table, client) = (table.clone(), client.clone());
        tokio::spawn(async move {
            let service =
                hyper::service::service_fn(move |req| handle(table.clone(), client.clone(), request_timeout, req));
            let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
        });
    }
}
