//! API tokens as stored: who they act as, when they stop working; the
//! secret itself never reaches the store, only its SHA-256.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiToken {
    /// Public id (`tok_…`), shown in listings and used to revoke.
    pub id: String,
    /// What it is for (`ci-deploy`, `grace-laptop`).
    pub name: String,
    /// The subject it acts as: `user:…` or `serviceaccount:…`.
    pub subject: String,
    #[serde(skip)]
    pub hash: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    pub created_by: String,
    #[serde(with = "time::serde::rfc3339::option")]
    pub expires_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub revoked_at: Option<OffsetDateTime>,
}

impl ApiToken {
    /// Why the token cannot be used at `now`, if it cannot.
    pub fn unusable_at(&self, now: OffsetDateTime) -> Option<&'static str> {
        if self.revoked_at.is_some() {
            Some("revoked")
        } else if self.expires_at.is_some_and(|e| e <= now) {
            Some("expired")
        } else {
            None
        }
    }
}
