//! The audit log: attributed actions in a SHA-256 hash chain.
//!
//! Event `n` stores `hash(n) = SHA-256(hash(n-1) ‖ canonical(n))`, where
//! `canonical` is a JSON array of the event's fields exactly as stored (the
//! timestamp and details as text). Changing, removing or reordering any
//! stored event breaks the chain at that event, which [`verify`] names. The
//! database refuses UPDATE and DELETE on the table besides (triggers), so
//! tampering needs someone who can drop them, and is still detected. Such
//! a person can also re-hash everything after an edit, and remove a tail:
//! the chain alone cannot see either. paved-control's `anchor` module signs
//! the head with a key the database does not hold (checkpoints) for that.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

/// The `prev_hash` of the first event.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// How an attempted action ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuditOutcome {
    Succeeded,
    Failed,
    /// Refused by authorisation.
    Denied,
}

impl AuditOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            AuditOutcome::Succeeded => "succeeded",
            AuditOutcome::Failed => "failed",
            AuditOutcome::Denied => "denied",
        }
    }

    pub fn parse(s: &str) -> Option<AuditOutcome> {
        match s {
            "succeeded" => Some(AuditOutcome::Succeeded),
            "failed" => Some(AuditOutcome::Failed),
            "denied" => Some(AuditOutcome::Denied),
            _ => None,
        }
    }
}

/// Who asked for a change, for the audit log: a request id (one per CLI
/// command or API request) and where it came from.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestContext {
    pub request_id: String,
    /// A source address, or `cli@HOST` for the embedded CLI.
    pub origin: String,
}

/// An action to record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewAuditEvent {
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    pub actor: String,
    /// What was done, `noun.verb`: `spec.put`, `spec.delete`, `environment.apply`, …
    pub action: String,
    /// What it was done to: `Environment/dev`, `Service/api`, …
    pub target: String,
    pub outcome: AuditOutcome,
    #[serde(flatten)]
    pub request: RequestContext,
    /// Content digest of the target before and after the action.
    pub before: Option<String>,
    pub after: Option<String>,
    pub details: serde_json::Value,
}

/// A recorded event: its place in the chain and the hashes that bind it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEvent {
    pub seq: i64,
    #[serde(flatten)]
    pub event: NewAuditEvent,
    pub prev_hash: String,
    pub hash: String,
}

/// Which events to list; every field narrows.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AuditFilter {
    pub actor: Option<String>,
    pub action: Option<String>,
    pub target: Option<String>,
    pub since: Option<OffsetDateTime>,
    pub until: Option<OffsetDateTime>,
    /// Only events after this sequence number (paging).
    pub after_seq: i64,
    pub limit: i64,
    /// Newest first (then `after_seq` is ignored): "the last apply of X"
    /// reads a few rows, not the target's whole history.
    pub newest_first: bool,
}

/// An event's columns as stored: what the hash covers.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredEvent {
    pub seq: i64,
    pub at: String,
    pub actor: String,
    pub action: String,
    pub target: String,
    pub outcome: String,
    pub request_id: String,
    pub origin: String,
    pub before_digest: Option<String>,
    pub after_digest: Option<String>,
    pub details: String,
    pub prev_hash: String,
    pub hash: String,
}

impl StoredEvent {
    /// The hash this event must carry, given the one before it.
    pub fn expected_hash(&self, prev_hash: &str) -> String {
        hex::encode(self.digest(prev_hash, &mut Vec::new()))
    }

    /// Whether the stored hash is the one its content and `prev_hash` give.
    /// `buf` is scratch space reused across events, and the digest is compared
    /// as hex on the stack: verifying a million events allocates nothing per event.
    pub fn hash_fits(&self, prev_hash: &str, buf: &mut Vec<u8>) -> bool {
        let mut hex = [0_u8; 64];
        // 32 bytes always fit 64 hex digits.
        let _ = hex::encode_to_slice(self.digest(prev_hash, buf), &mut hex);
        hex.as_slice() == self.hash.as_bytes()
    }

    /// SHA-256 of `prev_hash`, a newline and a JSON array of the stored columns
    /// (serialised straight from a tuple: no intermediate `Value`).
    fn digest(&self, prev_hash: &str, buf: &mut Vec<u8>) -> [u8; 32] {
        let canonical = (
            self.seq,
            &self.at,
            &self.actor,
            &self.action,
            &self.target,
            &self.outcome,
            &self.request_id,
            &self.origin,
            &self.before_digest,
            &self.after_digest,
            &self.details,
        );
        buf.clear();
        buf.extend_from_slice(prev_hash.as_bytes());
        buf.push(b'\n');
        // Serialising strings and integers into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut *buf, &canonical);
        Sha256::digest(&buf).into()
    }
}

/// Where the chain breaks first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChainBreak {
    /// The first event that does not fit (for a gap: the one after it).
    pub seq: i64,
    pub reason: String,
    /// The last event of the intact part before it (0: none).
    pub intact_until: i64,
}

/// Checks events in order, continuing from `(last_seq, last_hash)` (start
/// with `(0, GENESIS)`); returns the new position or the first break.
/// Each event's hash depends only on its own row, so they are recomputed on
/// all cores first; the links are then checked in order.
pub fn verify(events: &[StoredEvent], (mut last_seq, start_hash): (i64, String)) -> Result<(i64, String), ChainBreak> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(8);
    let chunk = events.len().div_ceil(threads).max(1);
    let mut edited = vec![false; events.len()];
    std::thread::scope(|s| {
        for (rows, flags) in events.chunks(chunk).zip(edited.chunks_mut(chunk)) {
            s.spawn(move || {
                let mut buf = Vec::with_capacity(1024);
                for (e, flag) in rows.iter().zip(flags) {
                    *flag = !e.hash_fits(&e.prev_hash, &mut buf);
                }
            });
        }
    });
    let mut last_hash = start_hash.as_str();
    for (e, edited) in events.iter().zip(edited) {
        if e.seq != last_seq + 1 {
            return Err(ChainBreak {
                seq: e.seq,
                reason: format!("follows event {last_seq}: events {}..{} are missing", last_seq + 1, e.seq - 1),
                intact_until: last_seq,
            });
        }
        if e.prev_hash != last_hash {
            return Err(ChainBreak {
                seq: e.seq,
                reason: "its prev_hash is not the hash of the event before it (an event was removed or reordered)"
                    .into(),
                intact_until: last_seq,
            });
        }
        if edited {
            return Err(ChainBreak {
                seq: e.seq,
                reason: "its content does not match its hash (it was edited)".into(),
                intact_until: last_seq,
            });
        }
        last_seq = e.seq;
        last_hash = &e.hash;
    }
    Ok((last_seq, last_hash.to_string()))
}

/// What `verify` found over the whole log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Verification {
    /// Events found intact (all of them, or those before the first break).
    pub events: i64,
    /// The hash of the last intact event.
    pub head: String,
    pub first_break: Option<ChainBreak>,
}

/// A valid chain of events `from..to` continuing `prev`, with realistic
/// sizes, for tests and benchmarks.
#[cfg(any(test, feature = "testing"))]
pub fn sample_chain(from: i64, to: i64, mut prev: String) -> Vec<StoredEvent> {
    (from..to)
        .map(|seq| {
            let mut e = StoredEvent {
                seq,
                at: format!("2026-11-25T10:{:02}:{:02}.000000000Z", (seq / 60) % 60, seq % 60),
                actor: format!("user-{}", seq % 50),
                action: "environment.apply".into(),
                target: format!("Environment/env-{}", seq % 10_000),
                outcome: "succeeded".into(),
                request_id: format!("{seq:016x}"),
                origin: "10.0.0.7".into(),
                before_digest: Some(format!("sha256:{seq:064x}")),
                after_digest: Some(format!("sha256:{:064x}", seq + 1)),
                details: r#"{"nodes":{"created":3,"unchanged":12}}"#.into(),
                prev_hash: prev.clone(),
                hash: String::new(),
            };
            e.hash = e.expected_hash(&prev);
            prev = e.hash.clone();
            e
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(n: i64) -> Vec<StoredEvent> {
        sample_chain(1, n + 1, GENESIS.to_string())
    }

    #[test]
    fn an_intact_chain_verifies_and_any_tampering_names_the_event() {
        let events = chain(5);
        assert_eq!(verify(&events, (0, GENESIS.into())).unwrap().0, 5);

        let mut edited = events.clone();
        edited[2].actor = "mallory".into();
        assert_eq!(verify(&edited, (0, GENESIS.into())).unwrap_err().seq, 3);

        let mut removed = events.clone();
        removed.remove(1);
        let err = verify(&removed, (0, GENESIS.into())).unwrap_err();
        assert_eq!((err.seq, err.reason.contains("missing")), (3, true));

        // Swapping two events' places (renumbered so the sequence looks whole).
        let mut swapped = events.clone();
        swapped.swap(1, 2);
        swapped[1].seq = 2;
        swapped[2].seq = 3;
        assert_eq!(verify(&swapped, (0, GENESIS.into())).unwrap_err().seq, 2);

        // Re-hashing an edited event does not help: the next one no longer fits.
        let mut rehashed = events;
        rehashed[1].target = "Team/other".into();
        rehashed[1].hash = rehashed[1].expected_hash(&rehashed[1].prev_hash);
        assert_eq!(verify(&rehashed, (0, GENESIS.into())).unwrap_err().seq, 3);
    }
}
