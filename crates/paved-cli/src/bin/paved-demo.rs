//! The demo services `paved up` runs: `api` (HTTP, reads and writes its own
//! PostgreSQL table), `worker` (background jobs in the same database) and
//! `web` (an HTML page showing what api returns). Real programs, so the
//! local provider is exercised end to end.
//!
//! Which one runs follows the program name (`/bin/api`, as in the demo
//! bundles) or the first argument (`paved-demo api`). Configuration comes
//! from the environment, as Score variables: `HOST`, `PORT`, `DATABASE_URL`,
//! `API_URL`, and `PAVED_ROOT` for files.
//!
//! `api --never-ready` never passes its readiness probe (a broken release,
//! for rollout tests); `GET /version` says which artifact runs.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse};
use axum::routing::get;
use axum::{Json, Router};
use sqlx::postgres::{PgPool, PgPoolOptions};
use std::time::Duration;

fn var(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_string())
}

fn fail(msg: String) -> ! {
    eprintln!("error: {msg}");
    std::process::exit(1)
}

async fn connect() -> PgPool {
    let url = std::env::var("DATABASE_URL").unwrap_or_else(|_| fail("DATABASE_URL is not set".into()));
    let mut last = String::new();
    for _ in 0..60 {
        match PgPoolOptions::new().max_connections(4).acquire_timeout(Duration::from_secs(3)).connect(&url).await {
            Ok(pool) => return pool,
            Err(e) => last = e.to_string(),
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    fail(format!("cannot connect to the database: {last}"))
}

async fn listen(default_port: &str) -> tokio::net::TcpListener {
    let addr = format!("{}:{}", var("HOST", "127.0.0.1"), var("PORT", default_port));
    let l =
        tokio::net::TcpListener::bind(&addr).await.unwrap_or_else(|e| fail(format!("cannot listen on {addr}: {e}")));
    println!("listening on {addr}");
    l
}

#[derive(serde::Serialize, serde::Deserialize, sqlx::FromRow)]
struct Item {
    id: i32,
    name: String,
}

async fn api(args: &[String]) {
    let never_ready = args.iter().any(|a| a == "--never-ready");
    let pool = connect().await;
    let env = var("PAVED_ENVIRONMENT", "unknown");
    sqlx::raw_sql("CREATE TABLE IF NOT EXISTS items (id serial PRIMARY KEY, name text NOT NULL)")
        .execute(&pool)
        .await
        .unwrap_or_else(|e| fail(format!("cannot create table items: {e}")));
    let empty: bool =
        sqlx::query_scalar("SELECT NOT EXISTS (SELECT 1 FROM items)").fetch_one(&pool).await.unwrap_or(false);
    if empty {
        let _ = sqlx::query("INSERT INTO items (name) VALUES ($1)")
            .bind(format!("first item of the {env} environment"))
            .execute(&pool)
            .await;
    }
    let app = Router::new()
        .route("/items", get(list_items).post(add_item))
        .route("/healthz", get(healthz))
        .route("/hang", axum::routing::post(hang))
        .route("/readyz", get(move |state| ready(state, never_ready)))
        .route("/version", get(version))
        .with_state(pool);
    axum::serve(listen("8080").await, app).await.unwrap_or_else(|e| fail(e.to_string()));
}

/// Set by `POST /hang`: the process stays up but stops being healthy, as a
/// hung one would, so liveness probes can be tried out.
static HUNG: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

async fn hang() -> &'static str {
    HUNG.store(true, std::sync::atomic::Ordering::SeqCst);
    "api now fails /healthz until restarted\n"
}

async fn healthz() -> (StatusCode, &'static str) {
    if HUNG.load(std::sync::atomic::Ordering::SeqCst) {
        (StatusCode::SERVICE_UNAVAILABLE, "hung (POST /hang)")
    } else {
        (StatusCode::OK, "ok")
    }
}

async fn list_items(State(pool): State<PgPool>) -> Result<Json<Vec<Item>>, (StatusCode, String)> {
    sqlx::query_as::<_, Item>("SELECT id, name FROM items ORDER BY id")
        .fetch_all(&pool)
        .await
        .map(Json)
        .map_err(|e| (StatusCode::SERVICE_UNAVAILABLE, e.to_string()))
}

#[derive(serde::Deserialize)]
struct NewItem {
    name: String,
}

async fn add_item(State(pool): State<PgPool>, Json(item): Json<NewItem>) -> Result<Json<Item>, (StatusCode, String)> {
    sqlx::query_as::<_, Item>("INSERT INTO items (name) VALUES ($1) RETURNING id, name")
        .bind(item.name)
        .fetch_one(&pool)
        .await
        .map(Json)
        .map_err(|e| (StatusCode::SERVICE_UNAVAILABLE, e.to_string()))
}

/// The artifact this process runs (`PAVED_IMAGE_DIGEST`, set by the process runtime).
async fn version() -> Json<serde_json::Value> {
    Json(serde_json::json!({"digest": var("PAVED_IMAGE_DIGEST", ""), "pid": std::process::id()}))
}

async fn ready(State(pool): State<PgPool>, never_ready: bool) -> impl IntoResponse {
    if never_ready {
        return (StatusCode::SERVICE_UNAVAILABLE, "never ready (--never-ready)".to_string());
    }
    match sqlx::query("SELECT 1").execute(&pool).await {
        Ok(_) => (StatusCode::OK, "ready".to_string()),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    }
}

async fn worker(args: &[String]) {
    if args.first().map(String::as_str) == Some("health") {
        let url = std::env::var("DATABASE_URL").unwrap_or_default();
        let ok = match PgPoolOptions::new().acquire_timeout(Duration::from_secs(2)).connect(&url).await {
            Ok(pool) => sqlx::query("SELECT 1").execute(&pool).await.is_ok(),
            Err(_) => false,
        };
        std::process::exit(if ok { 0 } else { 1 });
    }
    let queue = args.iter().skip_while(|a| *a != "--queue").nth(1).cloned().unwrap_or_else(|| "default".into());
    let pool = connect().await;
    sqlx::raw_sql("CREATE TABLE IF NOT EXISTS jobs (id serial PRIMARY KEY, queue text NOT NULL, done_at timestamptz NOT NULL DEFAULT now())")
        .execute(&pool)
        .await
        .unwrap_or_else(|e| fail(format!("cannot create table jobs: {e}")));
    println!("working on queue {queue}");
    loop {
        if let Err(e) = sqlx::query("INSERT INTO jobs (queue) VALUES ($1)").bind(&queue).execute(&pool).await {
            eprintln!("job failed: {e}");
        }
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
}

#[derive(Clone)]
struct Web {
    api: String,
    banner: String,
}

async fn web() {
    let root = var("PAVED_ROOT", "/");
    let banner = std::fs::read_to_string(std::path::Path::new(&root).join("app/config/banner.txt")).unwrap_or_default();
    let state = Web { api: var("API_URL", "http://127.0.0.1:8080"), banner };
    let app = Router::new().route("/", get(page)).route("/healthz", get(|| async { "ok" })).with_state(state);
    axum::serve(listen("3000").await, app).await.unwrap_or_else(|e| fail(e.to_string()));
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

async fn fetch_items(api: &str) -> Result<Vec<Item>, String> {
    use http_body_util::BodyExt;
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Empty<hyper::body::Bytes>>();
    let uri: hyper::Uri = format!("{api}/items").parse().map_err(|e| format!("bad API_URL: {e}"))?;
    let resp = tokio::time::timeout(Duration::from_secs(5), client.get(uri))
        .await
        .map_err(|_| "api did not answer in 5 s".to_string())?
        .map_err(|e| format!("api is unreachable: {e}"))?;
    let status = resp.status();
    let body = resp.into_body().collect().await.map_err(|e| e.to_string())?.to_bytes();
    if !status.is_success() {
        return Err(format!("api answered {status}: {}", String::from_utf8_lossy(&body)));
    }
    serde_json::from_slice(&body).map_err(|e| format!("api sent something else than items: {e}"))
}

async fn page(State(web): State<Web>) -> impl IntoResponse {
    let (status, list) = match fetch_items(&web.api).await {
        Ok(items) => (
            StatusCode::OK,
            items.iter().map(|i| format!("<li data-id=\"{}\">{}</li>", i.id, escape(&i.name))).collect::<String>(),
        ),
        Err(e) => (StatusCode::BAD_GATEWAY, format!("<li class=\"error\">{}</li>", escape(&e))),
    };
    let html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>storefront</title></head>\
         <body><h1>Storefront</h1><p>{}</p><h2>Items from api</h2><ul>{list}</ul></body></html>",
        escape(web.banner.trim())
    );
    (status, Html(html))
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let mut args: Vec<String> = std::env::args().collect();
    let argv0 = std::path::Path::new(&args[0]).file_name().and_then(|n| n.to_str()).unwrap_or("").to_string();
    let role = if matches!(argv0.as_str(), "api" | "worker" | "web") {
        args.remove(0);
        argv0
    } else if args.len() > 1 {
        args.drain(..2).nth(1).unwrap_or_default()
    } else {
        String::new()
    };
    match role.as_str() {
        "api" => api(&args).await,
        "worker" => worker(&args).await,
        "web" => web().await,
        _ => fail("usage: paved-demo api|worker|web (or run it as /bin/api, /bin/worker, /bin/web)".into()),
    }
}
