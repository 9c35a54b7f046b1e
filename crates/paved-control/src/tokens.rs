//! Issuing and revoking API tokens, audited, for the CLI and the API alike.

use crate::{Caller, Control, ControlError};
use paved_store::{ApiToken, AuditOutcome, NewAuditEvent};

/// Why a token request is refused, naming the field.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{field}: {message}")]
pub struct BadTokenRequest {
    pub field: &'static str,
    pub message: String,
}

impl Control {
    fn token_event(&self, caller: &Caller, action: &str, id: &str, details: serde_json::Value) -> NewAuditEvent {
        NewAuditEvent {
            at: self.clock.now(),
            actor: caller.actor.clone(),
            action: action.into(),
            target: format!("Token/{id}"),
            outcome: AuditOutcome::Succeeded,
            request: caller.request.clone(),
            before: None,
            after: None,
            details,
        }
    }

    /// Issues a token acting as `subject`; returns it with its secret, which
    /// exists nowhere else afterwards.
    pub async fn issue_token(
        &self,
        caller: &Caller,
        name: &str,
        subject: &str,
        lifetime: Option<std::time::Duration>,
    ) -> Result<(ApiToken, String), ControlError> {
        if name.is_empty() || name.len() > 63 {
            return Err(BadTokenRequest { field: "name", message: "a token name is 1 to 63 characters".into() }.into());
        }
        let subject_ok =
            ["user:", "serviceaccount:"].iter().any(|p| subject.strip_prefix(p).is_some_and(|r| !r.is_empty()));
        if !subject_ok {
            let message = format!("`{subject}` is not `user:EMAIL` or `serviceaccount:NAME`");
            return Err(BadTokenRequest { field: "subject", message }.into());
        }
        let lifetime = lifetime
            .map(|l| {
                time::Duration::try_from(l)
                    .map_err(|_| BadTokenRequest { field: "expires_in", message: "too long a lifetime".into() })
            })
            .transpose()?;
        let now = self.clock.now();
        let issued = paved_auth::token::issue(&mut rand::rng());
        let token = ApiToken {
            id: issued.id.clone(),
            name: name.into(),
            subject: subject.into(),
            hash: issued.hash,
            created_at: now,
            created_by: caller.actor.clone(),
            expires_at: lifetime.map(|l| now + l),
            revoked_at: None,
        };
        let details = serde_json::json!({
            "name": token.name,
            "subject": token.subject,
            "expires_at": token.expires_at.map(|t| t.to_string()),
        });
        self.store.create_token(&token, &self.token_event(caller, "token.create", &token.id, details)).await?;
        Ok((token, issued.secret))
    }

    /// Makes a live token expire at `at` unless it expires sooner already;
    /// `why` goes into the audit event.
    pub async fn expire_token(
        &self,
        caller: &Caller,
        id: &str,
        at: time::OffsetDateTime,
        why: &str,
    ) -> Result<bool, ControlError> {
        let details = serde_json::json!({ "expires_at": at.to_string(), "reason": why });
        let event = self.token_event(caller, "token.expire", id, details);
        Ok(self.store.expire_token(id, at, &event).await?)
    }

    /// Revokes a live token; `false` when there is none with that id.
    pub async fn revoke_token(&self, caller: &Caller, id: &str) -> Result<bool, ControlError> {
        let event = self.token_event(caller, "token.revoke", id, serde_json::json!({}));
        Ok(self.store.revoke_token(id, &event).await?)
    }
}
