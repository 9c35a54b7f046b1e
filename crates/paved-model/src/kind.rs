//! The spec kinds paved understands and the names users call them by.

use std::fmt;

pub const PAVED_API_VERSION: &str = "paved.dev/v1alpha1";
pub const SCORE_API_VERSION: &str = "score.dev/v1b1";

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    Blueprint,
    CloudAccount,
    Environment,
    Team,
    RoleBinding,
    /// A Score workload (`apiVersion: score.dev/v1b1`, no `kind` field).
    Service,
    Policy,
    PolicyException,
}

impl Kind {
    pub const ALL: [Kind; 8] = [
        Kind::Blueprint,
        Kind::CloudAccount,
        Kind::Environment,
        Kind::Team,
        Kind::RoleBinding,
        Kind::Service,
        Kind::Policy,
        Kind::PolicyException,
    ];

    /// The kinds written with `apiVersion: paved.dev/v1alpha1` and a `kind` field.
    pub const PAVED: [Kind; 7] = [
        Kind::Blueprint,
        Kind::CloudAccount,
        Kind::Environment,
        Kind::Team,
        Kind::RoleBinding,
        Kind::Policy,
        Kind::PolicyException,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Blueprint => "Blueprint",
            Kind::CloudAccount => "CloudAccount",
            Kind::Environment => "Environment",
            Kind::Team => "Team",
            Kind::RoleBinding => "RoleBinding",
            Kind::Service => "Service",
            Kind::Policy => "Policy",
            Kind::PolicyException => "PolicyException",
        }
    }

    /// Parses the `kind:` field of a document (exact, case-sensitive).
    pub fn from_document_kind(s: &str) -> Option<Kind> {
        Kind::PAVED.into_iter().find(|k| k.as_str() == s)
    }

    /// Parses what a user types on the command line: `env`, `environments`,
    /// `Blueprint`, `svc`, `workload` … (case-insensitive, plural allowed).
    pub fn from_cli(s: &str) -> Option<Kind> {
        let lower = s.to_ascii_lowercase();
        let k = match lower.as_str() {
            "blueprint" | "blueprints" | "bp" => Kind::Blueprint,
            "cloudaccount" | "cloudaccounts" | "account" | "accounts" => Kind::CloudAccount,
            "environment" | "environments" | "env" | "envs" => Kind::Environment,
            "team" | "teams" => Kind::Team,
            "rolebinding" | "rolebindings" | "binding" | "bindings" => Kind::RoleBinding,
            "service" | "services" | "svc" | "workload" | "workloads" => Kind::Service,
            "policy" | "policies" => Kind::Policy,
            "policyexception" | "policyexceptions" | "exception" | "exceptions" => Kind::PolicyException,
            _ => return None,
        };
        Some(k)
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl serde::Serialize for Kind {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}
