//! Signed checkpoints of the audit chain: what a database administrator
//! cannot rewrite silently.
//!
//! The chain alone ([`paved_store::audit`]) is unkeyed: whoever can drop the
//! triggers can edit an event and re-hash every event after it, and the
//! chain verifies. A checkpoint closes that: paved signs `{seq, head}` (the
//! hash of event `seq`) with its OIDC issuer's key (ES256; the private half
//! is wrapped by the KEK, which lives outside the database) and appends it
//! as an `audit.checkpoint` event; it also writes the newest one to
//! `DATA_DIR/audit-anchor.json` (0600), outside the database.
//!
//! | what someone with only the database does            | found by                                  |
//! |------------------------------------------------------|-------------------------------------------|
//! | edits, removes or reorders an event                  | the chain (first break named)             |
//! | … and re-hashes the rest of the chain                | the newest checkpoint's signed head       |
//! | … and removes the checkpoints after the edit too     | the anchor file's signed head             |
//! | removes the newest events (tail)                     | the anchor file (the chain is shorter)    |
//! | adds a forged checkpoint                             | its signature (no key the KEK opens)      |
//!
//! What it does not protect: events after the newest checkpoint (at most one
//! checkpoint interval of them) when verifying away from the anchor file's
//! host; anyone who holds the KEK (paved's own host) can sign; a checkpoint
//! whose key has been forgotten (keys are kept until their tokens expire)
//! or was wrapped by a KEK since replaced is reported as unverifiable, not
//! as tampering. A signature is verified with the public half derived from
//! the private key the KEK opens, never with a public key read from the
//! database (which an administrator could add).

use crate::{Caller, Control, ControlError};
use paved_store::{AuditFilter, AuditOutcome, Verification};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::path::PathBuf;

pub const CHECKPOINT_ACTION: &str = "audit.checkpoint";
/// The `sub` of a checkpoint statement.
const SUBJECT: &str = "paved:audit-chain";

/// A signed statement that event `seq` of the chain had hash `head`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub seq: i64,
    pub head: String,
    /// The compact JWS (ES256) over `{sub, seq, head, iss, iat}`.
    pub signature: String,
}

/// The chain's verification, and what signed checkpoints add to it.
#[derive(Debug, Clone, Serialize)]
pub struct AuditVerification {
    #[serde(flatten)]
    pub chain: Verification,
    /// The newest checkpoint whose signature verified: the events up to it
    /// cannot have been rewritten without paved's key.
    pub anchored_seq: Option<i64>,
    /// Where the checkpoints contradict the chain: rewritten, truncated or
    /// forged. `None` when they agree.
    pub anchor_break: Option<String>,
    /// A checkpoint that could not be checked, and why (not tampering).
    pub unverifiable: Option<String>,
}

impl AuditVerification {
    pub fn intact(&self) -> bool {
        self.chain.first_break.is_none() && self.anchor_break.is_none()
    }
}

impl Control {
    fn anchor_file(&self) -> PathBuf {
        self.local.data_dir.join("audit-anchor.json")
    }

    /// Verifies the chain, then signs its head as a checkpoint event and
    /// keeps it in the anchor file. Nothing is signed over a broken chain
    /// (the break is returned instead) or when nothing happened since the
    /// last checkpoint.
    ///
    /// `signer` says who signed, for whoever reads the log later (the
    /// server's replica and lease token; the CLI's host): it goes into the
    /// event's details beside the checkpoint.
    pub async fn checkpoint_audit(
        &self,
        caller: &Caller,
        signer: serde_json::Value,
    ) -> Result<(AuditVerification, Option<Checkpoint>), ControlError> {
        let v = self.verify_audit().await?;
        if !v.intact() || v.chain.events == 0 {
            return Ok((v, None));
        }
        // The newest event is the last checkpoint itself: nothing new to sign.
        let newest = self.newest_event_action().await?;
        if newest.as_deref() == Some(CHECKPOINT_ACTION) {
            return Ok((v, None));
        }
        let issuer = self.issuer().await?;
        let claims = json!({"sub": SUBJECT, "seq": v.chain.events, "head": v.chain.head});
        let signature = issuer.sign_statement(claims).await.map_err(crate::IdentityFailure::from)?;
        let checkpoint = Checkpoint { seq: v.chain.events, head: v.chain.head.clone(), signature };
        let mut details = serde_json::to_value(&checkpoint).unwrap_or_default();
        details["signer"] = signer;
        let target = format!("Audit/{}", checkpoint.seq);
        self.record(caller, CHECKPOINT_ACTION, target, AuditOutcome::Succeeded, None, details).await?;
        let bytes = serde_json::to_vec_pretty(&checkpoint).unwrap_or_default();
        paved_local::fsutil::write_atomic(&self.anchor_file(), &bytes, true).map_err(ControlError::Anchor)?;
        Ok((v, Some(checkpoint)))
    }

    async fn newest_event_action(&self) -> Result<Option<String>, ControlError> {
        let filter = AuditFilter { newest_first: true, limit: 1, ..AuditFilter::default() };
        Ok(self.store.audit_events(&filter).await?.pop().map(|e| e.event.action))
    }

    /// The hash chain, then the newest signed checkpoint in the log and the
    /// anchor file on this host against it.
    pub async fn verify_audit(&self) -> Result<AuditVerification, ControlError> {
        let chain = self.store.verify_audit().await?;
        let mut v = AuditVerification { chain, anchored_seq: None, anchor_break: None, unverifiable: None };
        let filter =
            AuditFilter { action: Some(CHECKPOINT_ACTION.into()), newest_first: true, limit: 1, ..Default::default() };
        let newest = self.store.audit_events(&filter).await?.pop();
        let in_log = newest.and_then(|e| serde_json::from_value::<Checkpoint>(e.event.details).ok());
        let on_host =
            std::fs::read(self.anchor_file()).ok().and_then(|b| serde_json::from_slice::<Checkpoint>(&b).ok());
        for (checkpoint, place) in [(on_host, "the anchor file on this host"), (in_log, "the newest checkpoint")] {
            let Some(checkpoint) = checkpoint else { continue };
            match self.check(&checkpoint, &v.chain, place).await? {
                Check::Holds(seq) => v.anchored_seq = Some(v.anchored_seq.map_or(seq, |s: i64| s.max(seq))),
                Check::Broken(why) => {
                    v.anchor_break.get_or_insert(why);
                }
                Check::Unverifiable(why) => {
                    v.unverifiable.get_or_insert(why);
                }
            }
        }
        Ok(v)
    }

    /// One checkpoint against the chain as verified.
    async fn check(&self, c: &Checkpoint, chain: &Verification, place: &str) -> Result<Check, ControlError> {
        let issuer = self.issuer().await?;
        let claims = match issuer.verify_statement(&c.signature).await {
            Ok(claims) => claims,
            Err(paved_identity::IdentityError::Key { kid, reason }) if reason.contains("no longer holds") => {
                return Ok(Check::Unverifiable(format!("{place} was signed by key {kid}: {reason}")));
            }
            Err(paved_identity::IdentityError::Secrets(e)) => {
                return Ok(Check::Unverifiable(format!("{place}'s key cannot be opened with this KEK: {e}")));
            }
            Err(e) => return Ok(Check::Broken(format!("{place} is not signed by paved: {e}"))),
        };
        let (Some(seq), Some(head)) = (claims["seq"].as_i64(), claims["head"].as_str()) else {
            return Ok(Check::Broken(format!("{place} signs no event")));
        };
        if claims["sub"] != SUBJECT {
            return Ok(Check::Broken(format!("{place} is a signed statement, but not a checkpoint")));
        }
        let at = claims["iat"].as_i64().and_then(|t| time::OffsetDateTime::from_unix_timestamp(t).ok());
        let when = at.map(|t| format!(" at {t}")).unwrap_or_default();
        if chain.first_break.is_none() && chain.events < seq {
            return Ok(Check::Broken(format!(
                "events were removed: paved signed event {seq}{when} ({place}), the log ends at event {}",
                chain.events
            )));
        }
        let filter = AuditFilter { after_seq: seq - 1, limit: 1, ..AuditFilter::default() };
        let event = self.store.audit_events(&filter).await?.pop();
        match event {
            Some(e) if e.seq == seq && e.hash == head => Ok(Check::Holds(seq)),
            Some(e) if e.seq == seq => Ok(Check::Broken(format!(
                "the log was rewritten at or before event {seq}: its hash is not the one paved signed{when} ({place}); \
                 the chain was re-hashed to hide it"
            ))),
            _ => Ok(Check::Broken(format!("event {seq}, which paved signed{when} ({place}), is gone"))),
        }
    }
}

enum Check {
    Holds(i64),
    Broken(String),
    Unverifiable(String),
}
