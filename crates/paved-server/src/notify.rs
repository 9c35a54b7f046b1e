//! Outgoing notifications: each git-flow event (a preview ready, failed or
//! deleted, a deployment healthy or failed) is POSTed as JSON to every
//! `--notify-url`, so a CI job or a chat bridge can tell people. Delivery is
//! best effort: three attempts with backoff, failures logged.
//!
//! Signed the way GitHub signs its deliveries, with a timestamp so a
//! captured notification cannot be replayed later (Stripe's scheme):
//!
//! | header                  | value                                                         |
//! |-------------------------|---------------------------------------------------------------|
//! | `X-Paved-Timestamp`     | Unix seconds when it was sent                                 |
//! | `X-Paved-Signature-256` | `sha256=` + hex HMAC-SHA256(secret, `TIMESTAMP` `.` body)      |
//!
//! A receiver recomputes the HMAC under the shared secret
//! (`--notify-secret-file`), compares in constant time, and refuses a
//! timestamp more than a few minutes old.

use hmac::{KeyInit, Mac};
use http_body_util::Full;
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use paved_control::git::GitNotice;
use paved_model::Clock;
use std::sync::Arc;
use std::time::Duration;

/// `sha256=HEX` of HMAC-SHA256(secret, `timestamp.body`).
pub fn signature(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    let mut mac = <hmac::Hmac<sha2::Sha256> as KeyInit>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

#[derive(Clone)]
pub struct Notifier {
    urls: Vec<String>,
    secret: Arc<Vec<u8>>,
    clock: Arc<dyn Clock>,
    client: Client<HttpConnector, Full<Bytes>>,
}

impl Notifier {
    pub fn new(urls: Vec<String>, secret: Vec<u8>, clock: Arc<dyn Clock>) -> Notifier {
        Notifier { urls, secret: Arc::new(secret), clock, client: Client::builder(TokioExecutor::new()).build_http() }
    }

    /// Sends `notice` to every URL in the background.
    pub fn send(&self, notice: &GitNotice) {
        let Ok(body) = serde_json::to_vec(notice) else { return };
        let timestamp = self.clock.now().unix_timestamp();
        let signed = signature(&self.secret, timestamp, &body);
        for url in &self.urls {
            let (client, url, body, event) = (self.client.clone(), url.clone(), body.clone(), notice.event.clone());
            let signed = signed.clone();
            tokio::spawn(async move {
                for attempt in 0..3u32 {
                    let request = hyper::Request::post(&url)
                        .header("content-type", "application/json")
                        .header("x-paved-event", &event)
                        .header("x-paved-timestamp", timestamp.to_string())
                        .header("x-paved-signature-256", &signed)
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

#[cfg(test)]
mod tests {
    use super::signature;

    #[test]
    fn the_signature_covers_the_timestamp_and_the_body() {
        let s = signature(b"secret", 1_700_000_000, br#"{"event":"preview.ready"}"#);
        assert!(s.starts_with("sha256=") && s.len() == 7 + 64, "{s}");
        assert_eq!(s, signature(b"secret", 1_700_000_000, br#"{"event":"preview.ready"}"#));
        assert_ne!(s, signature(b"secret", 1_700_000_001, br#"{"event":"preview.ready"}"#), "a replay later differs");
        assert_ne!(s, signature(b"other", 1_700_000_000, br#"{"event":"preview.ready"}"#));
        assert_ne!(s, signature(b"secret", 1_700_000_000, br#"{"event":"preview.gone"}"#));
    }
}
