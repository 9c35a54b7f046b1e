//! The policies page: which policies are in force where, the exceptions
//! that waive them (and when those expire), and the latest decisions with
//! their reasons — the page a team opens when an operation was refused.

use super::{User, page_error, render};
use crate::AppState;
use crate::error::ApiError;
use askama::Template;
use axum::extract::State;
use axum::response::Response;
use paved_auth::{Request, Target};
use paved_model::{Kind, Role, Spec};
use paved_store::AuditFilter;

pub struct PolicyRow {
    pub name: String,
    pub version: String,
    pub enforcement: &'static str,
    pub decisions: String,
    pub description: String,
}

pub struct ExceptionRow {
    pub name: String,
    pub policy: String,
    pub rules: String,
    pub environments: String,
    pub owner: String,
    pub reason: String,
    pub expires: String,
    pub active: bool,
}

pub struct DecisionRow {
    pub seq: i64,
    pub at: String,
    pub actor: String,
    /// `deny`, `warn`, `allow`.
    pub verdict: String,
    pub class: &'static str,
    pub decision: String,
    pub target: String,
    pub rule: String,
    pub message: String,
    /// How to get past a denial, or which exception waived a finding.
    pub hint: String,
}

#[derive(Template)]
#[template(path = "policies.html")]
struct PoliciesPage {
    subject: Option<String>,
    policies: Vec<PolicyRow>,
    exceptions: Vec<ExceptionRow>,
    /// `None` when the caller may not read the audit log.
    decisions: Option<Vec<DecisionRow>>,
}

/// The latest policy decisions shown: enough to find a refusal of today.
const DECISIONS: i64 = 50;

/// Policies, exceptions and the latest decisions (deny, warn, allow) with their reasons.
#[utoipa::path(get, path = "/console/policies", tag = "console",
    responses((status = 200, description = "The policies page", content_type = "text/html"), (status = 303, description = "Not signed in"),
        (status = 403, description = "Not allowed", content_type = "text/html")))]
pub async fn policies(State(state): State<AppState>, User(who): User) -> Response {
    let subject = Some(who.subject.clone());
    let page = async {
        who.allow(&state, Request { needs: Role::Viewer, on: Target::Anywhere }, "policy.list", "Policy/*").await?;
        let catalog = state.control.catalog(who.request.clone());
        let now = state.control.clock.now();
        let mut policies = Vec::new();
        for o in catalog.list(Some(Kind::Policy)).await? {
            if let Spec::Policy(p) = o.spec {
                let decisions = p.spec.decisions.iter().map(|d| d.as_str()).collect::<Vec<_>>().join(", ");
                policies.push(PolicyRow {
                    name: p.metadata.name,
                    version: p.spec.version,
                    enforcement: match p.spec.enforcement {
                        paved_model::Enforcement::Deny => "deny",
                        paved_model::Enforcement::Warn => "warn",
                    },
                    decisions: if decisions.is_empty() { "every decision".into() } else { decisions },
                    description: p.spec.description,
                });
            }
        }
        let mut exceptions = Vec::new();
        for o in catalog.list(Some(Kind::PolicyException)).await? {
            if let Spec::PolicyException(e) = o.spec {
                let all = |v: &[String], what: &str| if v.is_empty() { format!("every {what}") } else { v.join(", ") };
                exceptions.push(ExceptionRow {
                    active: e.spec.expires_at().is_some_and(|t| now < t),
                    name: e.metadata.name,
                    rules: all(&e.spec.rules, "rule"),
                    environments: all(&e.spec.environments, "environment"),
                    policy: e.spec.policy,
                    owner: e.spec.owner.0,
                    reason: e.spec.reason,
                    expires: e.spec.expires,
                });
            }
        }
        let audit = Request { needs: Role::Operator, on: Target::Organisation };
        let decisions = if who.can(&state, audit).await? { Some(latest_decisions(&state).await?) } else { None };
        Ok::<_, ApiError>(PoliciesPage { subject: subject.clone(), policies, exceptions, decisions })
    };
    match page.await {
        Ok(p) => render(&p),
        Err(e) => page_error(subject, e),
    }
}

/// The newest `policy.deny`, `policy.warn` and `policy.allow` events, newest first.
async fn latest_decisions(state: &AppState) -> Result<Vec<DecisionRow>, ApiError> {
    let mut events = Vec::new();
    for action in ["policy.deny", "policy.warn", "policy.allow"] {
        let filter =
            AuditFilter { action: Some(action.into()), newest_first: true, limit: DECISIONS, ..Default::default() };
        events.extend(state.control.store.audit_events(&filter).await?);
    }
    events.sort_by_key(|e| std::cmp::Reverse(e.seq));
    events.truncate(DECISIONS as usize);
    Ok(events
        .into_iter()
        .map(|e| {
            let d = &e.event.details;
            let text = |k: &str| d[k].as_str().unwrap_or_default().to_string();
            let verdict = e.event.action.trim_start_matches("policy.").to_string();
            let hint = match (verdict.as_str(), d["exceptedBy"].as_str()) {
                (_, Some(by)) => format!("waived by exception {by}"),
                ("deny", None) => format!(
                    "fix what the rule names, or ask an operator for a PolicyException (policy: {}, rules: [{}])",
                    text("policy"),
                    text("rule")
                ),
                _ => String::new(),
            };
            DecisionRow {
                seq: e.seq,
                at: super::pages::when(e.event.at),
                actor: e.event.actor,
                class: match verdict.as_str() {
                    "deny" if d["exceptedBy"].is_null() => "bad",
                    "allow" => "ok",
                    _ => "warn",
                },
                verdict,
                decision: text("decision"),
                target: e.event.target,
                rule: format!("{} ({}) · {}", text("policy"), text("version"), text("rule")),
                message: text("message"),
                hint,
            }
        })
        .collect())
}
