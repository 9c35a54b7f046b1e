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
        hex::encode(self.columns().digest(prev_hash, &mut Vec::new()))
    }

    /// The columns, borrowed.
    pub fn columns(&self) -> EventColumns<'_> {
        EventColumns {
            seq: self.seq,
            at: &self.at,
            actor: &self.actor,
            action: &self.action,
            target: &self.target,
            outcome: &self.outcome,
            request_id: &self.request_id,
            origin: &self.origin,
            before_digest: self.before_digest.as_deref(),
            after_digest: self.after_digest.as_deref(),
            details: &self.details,
            prev_hash: &self.prev_hash,
            hash: &self.hash,
        }
    }
}

/// An event's stored columns, borrowed from wherever they were read
/// ([`StoredEvent`], or a [`PackedEvents`] page).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EventColumns<'a> {
    pub seq: i64,
    pub at: &'a str,
    pub actor: &'a str,
    pub action: &'a str,
    pub target: &'a str,
    pub outcome: &'a str,
    pub request_id: &'a str,
    pub origin: &'a str,
    pub before_digest: Option<&'a str>,
    pub after_digest: Option<&'a str>,
    pub details: &'a str,
    pub prev_hash: &'a str,
    pub hash: &'a str,
}

impl EventColumns<'_> {
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
            self.at,
            self.actor,
            self.action,
            self.target,
            self.outcome,
            self.request_id,
            self.origin,
            self.before_digest,
            self.after_digest,
            self.details,
        );
        buf.clear();
        buf.extend_from_slice(prev_hash.as_bytes());
        buf.push(b'\n');
        // Serialising strings and integers into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut *buf, &canonical);
        Sha256::digest(&buf).into()
    }
}

/// A page of events as a reader copies them from the database: every text
/// column appended to one buffer, each event a row of offsets into it. A
/// million events read this way cost a few hundred buffer growths instead
/// of twelve strings each (allocated by the reader, freed by the checker on
/// another thread).
#[derive(Debug, Default)]
pub struct PackedEvents {
    text: String,
    rows: Vec<PackedRow>,
}

#[derive(Debug)]
struct PackedRow {
    seq: i64,
    /// Where the first of the 12 text columns (`at` … `hash`) starts in
    /// `text`, and where each ends (each starts where the one before ended).
    start: usize,
    ends: [usize; 12],
    /// Bit `i`: column `i` is NULL (only the digests may be).
    nulls: u16,
}

/// The text columns that may be NULL (`before_digest`, `after_digest`).
const NULLABLE: u16 = (1 << 7) | (1 << 8);

impl PackedEvents {
    pub fn with_capacity(events: usize) -> PackedEvents {
        PackedEvents { text: String::with_capacity(events * 400), rows: Vec::with_capacity(events) }
    }

    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Appends an event: `seq` and its 12 text columns in stored order.
    pub fn push(&mut self, seq: i64, columns: [Option<&str>; 12]) -> Result<(), String> {
        let start = self.text.len();
        let mut ends = [0; 12];
        let mut nulls = 0_u16;
        for (i, c) in columns.iter().enumerate() {
            match c {
                Some(t) => self.text.push_str(t),
                None if NULLABLE & (1 << i) != 0 => nulls |= 1 << i,
                None => {
                    self.text.truncate(start);
                    return Err(format!("event {seq}: column {} is NULL", i + 1));
                }
            }
            ends[i] = self.text.len();
        }
        self.rows.push(PackedRow { seq, start, ends, nulls });
        Ok(())
    }

    /// Event `i`'s columns.
    pub fn get(&self, i: usize) -> Option<EventColumns<'_>> {
        let r = self.rows.get(i)?;
        let col = |c: usize| -> Option<&str> {
            let from = if c == 0 { r.start } else { r.ends[c - 1] };
            (r.nulls & (1 << c) == 0).then(|| self.text.get(from..r.ends[c]).unwrap_or_default())
        };
        let text = |c: usize| col(c).unwrap_or_default();
        Some(EventColumns {
            seq: r.seq,
            at: text(0),
            actor: text(1),
            action: text(2),
            target: text(3),
            outcome: text(4),
            request_id: text(5),
            origin: text(6),
            before_digest: col(7),
            after_digest: col(8),
            details: text(9),
            prev_hash: text(10),
            hash: text(11),
        })
    }

    pub fn iter(&self) -> impl Iterator<Item = EventColumns<'_>> {
        (0..self.rows.len()).filter_map(|i| self.get(i))
    }

    /// The events as owned values.
    pub fn to_events(&self) -> Vec<StoredEvent> {
        self.iter()
            .map(|c| StoredEvent {
                seq: c.seq,
                at: c.at.into(),
                actor: c.actor.into(),
                action: c.action.into(),
                target: c.target.into(),
                outcome: c.outcome.into(),
                request_id: c.request_id.into(),
                origin: c.origin.into(),
                before_digest: c.before_digest.map(str::to_string),
                after_digest: c.after_digest.map(str::to_string),
                details: c.details.into(),
                prev_hash: c.prev_hash.into(),
                hash: c.hash.into(),
            })
            .collect()
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
pub fn verify(events: &[StoredEvent], from: (i64, String)) -> Result<(i64, String), ChainBreak> {
    verify_columns(&events.iter().map(StoredEvent::columns).collect::<Vec<_>>(), from)
}

/// [`verify`] over a page as the store reads it.
pub fn verify_packed(page: &PackedEvents, from: (i64, String)) -> Result<(i64, String), ChainBreak> {
    verify_columns(&page.iter().collect::<Vec<_>>(), from)
}

fn verify_columns(
    events: &[EventColumns<'_>],
    (mut last_seq, start_hash): (i64, String),
) -> Result<(i64, String), ChainBreak> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(8);
    let chunk = events.len().div_ceil(threads).max(1);
    let mut edited = vec![false; events.len()];
    std::thread::scope(|s| {
        for (rows, flags) in events.chunks(chunk).zip(edited.chunks_mut(chunk)) {
            s.spawn(move || {
                let mut buf = Vec::with_capacity(1024);
                for (e, flag) in rows.iter().zip(flags) {
                    *flag = !e.hash_fits(e.prev_hash, &mut buf);
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
        last_hash = e.hash;
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

    fn packed(events: &[StoredEvent]) -> PackedEvents {
        let mut page = PackedEvents::default();
        for e in events {
            let c = e.columns();
            let texts = [
                Some(c.at),
                Some(c.actor),
                Some(c.action),
                Some(c.target),
                Some(c.outcome),
                Some(c.request_id),
                Some(c.origin),
                c.before_digest,
                c.after_digest,
                Some(c.details),
                Some(c.prev_hash),
                Some(c.hash),
            ];
            page.push(c.seq, texts).unwrap();
        }
        page
    }

    #[test]
    fn a_packed_page_holds_the_events_as_read_and_verifies_as_they_do() {
        let mut events = chain(6);
        events[2].after_digest = None;
        let events = sample_chain_from(events);
        let page = packed(&events);
        assert_eq!(page.to_events(), events);
        assert_eq!(verify_packed(&page, (0, GENESIS.into())), verify(&events, (0, GENESIS.into())));
        let mut edited = events.clone();
        edited[4].details = "{}".into();
        assert_eq!(verify_packed(&packed(&edited), (0, GENESIS.into())).unwrap_err().seq, 5);
        // Only the digests may be NULL; a page refuses anything else and keeps what it had.
        let mut page = packed(&events[..1]);
        let mut texts = [Some("x"); 12];
        texts[9] = None;
        assert!(page.push(7, texts).unwrap_err().contains("column 10 is NULL"));
        assert_eq!(page.to_events(), events[..1]);
    }

    /// Re-links a chain after edits to its events' content (hashes recomputed in order).
    fn sample_chain_from(mut events: Vec<StoredEvent>) -> Vec<StoredEvent> {
        let mut prev = GENESIS.to_string();
        for e in &mut events {
            e.prev_hash = prev.clone();
            e.hash = e.expected_hash(&prev);
            prev = e.hash.clone();
        }
        events
    }
}
