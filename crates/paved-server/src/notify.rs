//! Outgoing notifications: each git-flow event (a preview ready, failed or
//! deleted, a deployment healthy or failed) is POSTed as JSON to every
//! `--notify-url`, so a CI job or a chat bridge can tell people. Delivery is
//! best effort: three attempts with backoff, failures logged.

use http_body_util::Full;
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use paved_control::git::GitNotice;
use std::time::Duration;

#[derive(Clone)]
pub struct Notifier {
    urls: Vec<String>,
    client: Client<HttpConnector, Full<Bytes>>,
}

impl Notifier {
    pub fn new(urls: Vec<String>) -> Notifier {
        Notifier { urls, client: Client::builder(TokioExecutor::new()).build_http() }
    }

    /// Sends `notice` to every URL in the background.
    pub fn send(&self, notice: &GitNotice) {
        let Ok(body) = serde_json::to_vec(notice) else { return };
        for url in &self.urls {
            let (client, url, body, event) = (self.client.clone(), url.clone(), body.clone(), notice.event.clone());
            tokio::spawn(async move {
                for attempt in 0..3u32 {
                    let request = hyper::Request::post(&url)
                        .header("content-type", "application/json")
                        .header("x-paved-event", &event)
                        .body(Full::new(Bytes::from(body.clone())));
                    let Ok(request) = request else {
                        tracing::warn!(%url, "notification URL is not valid");
                        return;
                    };
                    match tokio::time::timeout(Duration::from_secs(5), client.request(request)).await {
                        Ok(Ok(r)) if r.status().is_success() => return,
                        Ok(Ok(r)) => {
                            tracing::warn!(%url, status = r.status().as_u16(), attempt, "notification refused")
                        }
                        Ok(Err(e)) => tracing::warn!(%url, error = %e, attempt, "notification not delivered"),
                        Err(_) => tracing::warn!(%url, attempt, "notification timed out"),
                    }
                    tokio::time::sleep(Duration::from_millis(500 * 2u64.pow(attempt))).await;
                }
            });
        }
    }
}
