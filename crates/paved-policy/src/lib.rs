//! Policy as code: the `Policy` specs' Rego modules, evaluated in-process by
//! regorus at paved's decision points, with `PolicyException`s applied.
//!
//! Contract of a policy module (what `paved policy test` and the decision
//! points rely on):
//!
//! | in the module                                   | means                                                   |
//! |-------------------------------------------------|---------------------------------------------------------|
//! | `package paved.NAME` (any package)              | the rules below are read from `data.<package>`           |
//! | `deny_RULE contains msg if { … }` (or `deny`)    | a finding named `deny_RULE`; the policy's enforcement   |
//! | `warn_RULE contains msg if { … }` (or `warn`)    | always only a warning, whatever the enforcement         |
//! | `allow_RULE contains msg if { … }` (or `allow`)  | a grant: opens what paved refuses unless a policy allows |
//! |                                                 | it (`branch-deploy`); read nowhere else                 |
//! | `msg` a string, or an object with `msg`          | the message shown, audited and returned by the API      |
//! | `test_NAME if { … }` (usually in `*_test.rego`)  | a test `paved policy test` runs; passes when true        |
//! | `input`                                         | a [`input`] document: `apiVersion`, `decision`, …        |
//! | `data`                                          | the policy's `spec.data`                                |
//!
//! Each policy has its own engine: two policies cannot see or overwrite each
//! other's packages or data. An evaluation is bounded in time
//! ([`EVAL_LIMIT`]); a policy that errors fails closed (the decision is a
//! denial naming the error), since a guardrail that silently stops applying
//! is worse than one that blocks until fixed.
//!
//! A grant never overrides a denial: an operation a policy allows still
//! stops when another denies it, and what it opens still passes paved's own
//! checks (a branch's production deployment, the promotion order).
//!
//! An exception waives a finding when it names the policy (and the rule, if
//! it lists rules), the decision's environment (if it lists environments)
//! and has not expired at the decision's time (injected: `now`).

pub mod input;

use paved_model::{DecisionPoint, Enforcement, Policy, PolicyException};
use regex::Regex;
use serde::Serialize;
use std::sync::LazyLock;
use time::OffsetDateTime;

/// Longest one policy may take for one decision.
pub const EVAL_LIMIT: std::time::Duration = std::time::Duration::from_millis(500);

#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("policy `{policy}`, module `{module}`{}: {message}", at(*line, *column))]
    Module { policy: String, module: String, line: Option<u32>, column: Option<u32>, message: String },
    #[error("policy `{policy}`: spec.data: {message}")]
    Data { policy: String, message: String },
    #[error("the input document: {0}")]
    Input(String),
}

fn at(line: Option<u32>, column: Option<u32>) -> String {
    match (line, column) {
        (Some(l), Some(c)) => format!(" (line {l}, column {c})"),
        (Some(l), None) => format!(" (line {l})"),
        _ => String::new(),
    }
}

/// One thing a policy found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub policy: String,
    pub version: String,
    pub rule: String,
    pub message: String,
    /// What the finding does: `deny` stops the operation, `warn` is recorded.
    pub enforcement: Enforcement,
    /// The exception that waives it, when one does.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub excepted_by: Option<String>,
}

impl Finding {
    pub fn blocks(&self) -> bool {
        self.enforcement == Enforcement::Deny && self.excepted_by.is_none()
    }

    /// `policy/rule: message`, as the CLI and logs show it.
    pub fn line(&self) -> String {
        format!("policy `{}` ({}) rule `{}`: {}", self.policy, self.version, self.rule, self.message)
    }
}

/// A policy's `allow_*` rule that holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Grant {
    pub policy: String,
    pub version: String,
    pub rule: String,
    pub message: String,
}

/// What the policies said at one decision point.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Decision {
    pub findings: Vec<Finding>,
    /// The `allow_*` rules that hold (read where paved needs a grant).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub grants: Vec<Grant>,
}

impl Decision {
    pub fn allowed(&self) -> bool {
        !self.findings.iter().any(Finding::blocks)
    }

    /// Some policy grants the operation and none blocks it.
    pub fn granted(&self) -> bool {
        self.allowed() && !self.grants.is_empty()
    }

    pub fn denials(&self) -> impl Iterator<Item = &Finding> {
        self.findings.iter().filter(|f| f.blocks())
    }

    /// Findings that do not block: warnings and waived denials.
    pub fn warnings(&self) -> impl Iterator<Item = &Finding> {
        self.findings.iter().filter(|f| !f.blocks())
    }
}

/// The outcome of one `test_*` rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TestResult {
    pub policy: String,
    pub test: String,
    pub passed: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

struct Compiled {
    name: String,
    version: String,
    enforcement: Enforcement,
    decisions: Vec<DecisionPoint>,
    engine: regorus::Engine,
    /// `data.<package>.<rule>` of every `deny*` / `warn*` rule.
    rules: Vec<(String, String)>,
    /// `data.<package>.<rule>` of every `allow*` rule.
    allows: Vec<(String, String)>,
    /// `data.<package>.<rule>` of every `test_*` rule.
    tests: Vec<(String, String)>,
}

/// The policies and exceptions in force, compiled once.
#[derive(Default)]
pub struct PolicySet {
    compiled: Vec<Compiled>,
    exceptions: Vec<PolicyException>,
}

static RULE_HEAD: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?m)^\s*((?:deny|warn|allow|test)[A-Za-z0-9_]*)\s*(?:contains|if|:=|=|\[|\{)")
        .expect("a valid pattern")
});

/// Parses one module on its own: `Err((line, column, message))` when it is
/// not valid Rego (v1). For validating specs before they are recorded.
pub fn check_module(name: &str, source: &str) -> Result<String, (Option<u32>, Option<u32>, String)> {
    let mut engine = regorus::Engine::new();
    engine.add_policy(name.to_string(), source.to_string()).map_err(|e| located(&e.to_string()))
}

/// Reads regorus' report (`--> FILE:LINE:COL`, the source line, then
/// `error: MESSAGE`) as its position and message.
fn located(error: &str) -> (Option<u32>, Option<u32>, String) {
    static POS: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"-->\s*[^\n]*?:(\d+):(\d+)").expect("a valid pattern"));
    let (line, column) = match POS.captures(error) {
        Some(c) => (c[1].parse().ok(), c[2].parse().ok()),
        None => (None, None),
    };
    let message = error
        .lines()
        .find_map(|l| l.trim().strip_prefix("error:").map(str::trim))
        .or_else(|| error.lines().map(str::trim).find(|l| !l.is_empty()))
        .unwrap_or("invalid Rego")
        .to_string();
    (line, column, message)
}

impl PolicySet {
    /// Compiles every policy (its modules and data) and keeps the exceptions.
    pub fn compile(policies: &[Policy], exceptions: &[PolicyException]) -> Result<PolicySet, PolicyError> {
        let mut compiled = Vec::with_capacity(policies.len());
        for p in policies {
            compiled.push(compile_one(p)?);
        }
        compiled.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(PolicySet { compiled, exceptions: exceptions.to_vec() })
    }

    pub fn len(&self) -> usize {
        self.compiled.len()
    }

    pub fn is_empty(&self) -> bool {
        self.compiled.is_empty()
    }

    /// Asks every policy that applies at `point` about `input`.
    pub fn evaluate(&self, point: DecisionPoint, input: &serde_json::Value, now: OffsetDateTime) -> Decision {
        let environment = input.pointer("/environment/name").and_then(|v| v.as_str());
        // Converted once: regorus values share their contents, so each policy's copy is cheap.
        let value = regorus::Value::from_json_str(&input.to_string());
        let (mut findings, mut grants) = (Vec::new(), Vec::new());
        for c in self.compiled.iter().filter(|c| c.decisions.is_empty() || c.decisions.contains(&point)) {
            let (found, granted) = match &value {
                Ok(v) => c.evaluate(v),
                Err(e) => (c.failed(e.to_string()), Vec::new()),
            };
            for mut f in found {
                f.excepted_by = self.exception_for(&f, environment, now);
                findings.push(f);
            }
            grants.extend(granted);
        }
        Decision { findings, grants }
    }

    fn exception_for(&self, f: &Finding, environment: Option<&str>, now: OffsetDateTime) -> Option<String> {
        self.exceptions
            .iter()
            .filter(|e| e.spec.policy == f.policy)
            .filter(|e| e.spec.rules.is_empty() || e.spec.rules.contains(&f.rule))
            .filter(|e| {
                e.spec.environments.is_empty()
                    || environment.is_some_and(|n| e.spec.environments.iter().any(|x| x == n))
            })
            .find(|e| e.spec.expires_at().is_some_and(|t| now < t))
            .map(|e| e.metadata.name.clone())
    }

    /// Runs every policy's `test_*` rules.
    pub fn test(&self) -> Vec<TestResult> {
        let mut out = Vec::new();
        for c in &self.compiled {
            for (package, rule) in &c.tests {
                let mut engine = c.engine.clone();
                let result = engine.eval_rule(format!("{package}.{rule}"));
                let (passed, error) = match result {
                    Ok(v) => (v == regorus::Value::Bool(true), None),
                    Err(e) => (false, Some(e.to_string())),
                };
                out.push(TestResult { policy: c.name.clone(), test: rule.clone(), passed, error });
            }
        }
        out
    }
}

fn compile_one(p: &Policy) -> Result<Compiled, PolicyError> {
    let name = p.metadata.name.clone();
    let mut engine = regorus::Engine::new();
    let (mut rules, mut allows, mut tests) = (Vec::new(), Vec::new(), Vec::new());
    for (module, source) in &p.spec.modules {
        let package = engine.add_policy(module.clone(), source.clone()).map_err(|e| {
            let (line, column, message) = located(&e.to_string());
            PolicyError::Module { policy: name.clone(), module: module.clone(), line, column, message }
        })?;
        for c in RULE_HEAD.captures_iter(source) {
            let rule = c[1].to_string();
            let list = if rule.starts_with("test") {
                &mut tests
            } else if rule.starts_with("allow") {
                &mut allows
            } else {
                &mut rules
            };
            if !list.iter().any(|(pk, r)| *pk == package && *r == rule) {
                list.push((package.clone(), rule));
            }
        }
    }
    if !p.spec.data.is_null() {
        let data = regorus::Value::from_json_str(&p.spec.data.to_string())
            .map_err(|e| PolicyError::Data { policy: name.clone(), message: e.to_string() })?;
        engine.add_data(data).map_err(|e| PolicyError::Data { policy: name.clone(), message: e.to_string() })?;
    }
    // An engine prepares its modules at its first evaluation and a clone
    // keeps that (and the time limit): evaluating once here spares every
    // decision the work.
    engine.set_execution_timer_config(time_limit());
    engine.set_input(regorus::Value::new_object());
    for (package, rule) in rules.iter().chain(&allows) {
        let _ = engine.eval_rule(format!("{package}.{rule}"));
    }
    Ok(Compiled {
        name,
        version: p.spec.version.clone(),
        enforcement: p.spec.enforcement,
        decisions: p.spec.decisions.clone(),
        engine,
        rules,
        allows,
        tests,
    })
}

impl Compiled {
    fn finding(&self, rule: &str, message: String, enforcement: Enforcement) -> Finding {
        Finding {
            policy: self.name.clone(),
            version: self.version.clone(),
            rule: rule.to_string(),
            message,
            enforcement,
            excepted_by: None,
        }
    }

    /// The one finding of a policy that could not be evaluated: a denial.
    fn failed(&self, why: String) -> Vec<Finding> {
        vec![self.finding("error", format!("the policy failed to evaluate: {why}"), Enforcement::Deny)]
    }

    /// This policy's findings and grants for `input`. An error is a
    /// denial (and grants nothing).
    fn evaluate(&self, input: &regorus::Value) -> (Vec<Finding>, Vec<Grant>) {
        let mut engine = self.engine.clone();
        engine.set_input(input.clone());
        let mut eval = |rule: &str, package: &str| {
            engine
                .eval_rule(format!("{package}.{rule}"))
                .map_err(|e| format!("{rule}: {}", e.to_string().lines().next().unwrap_or("")))
        };
        let mut out = Vec::new();
        for (package, rule) in &self.rules {
            let value = match eval(rule, package) {
                Ok(v) => v,
                Err(why) => return (self.failed(why), Vec::new()),
            };
            let enforcement = if rule.starts_with("warn") { Enforcement::Warn } else { self.enforcement };
            for message in messages(&value) {
                out.push(self.finding(rule, message, enforcement));
            }
        }
        let mut grants = Vec::new();
        for (package, rule) in &self.allows {
            let value = match eval(rule, package) {
                Ok(v) => v,
                Err(why) => return (self.failed(why), Vec::new()),
            };
            for message in messages(&value) {
                let (policy, version, rule) = (self.name.clone(), self.version.clone(), rule.clone());
                grants.push(Grant { policy, version, rule, message });
            }
        }
        out.sort_by(|a, b| (&a.rule, &a.message).cmp(&(&b.rule, &b.message)));
        grants.sort_by(|a, b| (&a.rule, &a.message).cmp(&(&b.rule, &b.message)));
        (out, grants)
    }
}

/// [`EVAL_LIMIT`], checked every thousand steps of the interpreter.
fn time_limit() -> regorus::utils::limits::ExecutionTimerConfig {
    regorus::utils::limits::ExecutionTimerConfig {
        limit: EVAL_LIMIT,
        check_interval: std::num::NonZeroU32::MIN.saturating_add(999),
    }
}

/// The messages of a rule's value: a set or array of strings or `{msg}`
/// objects, a single string, or `true` (a boolean rule that holds).
fn messages(v: &regorus::Value) -> Vec<String> {
    let json: serde_json::Value =
        v.to_json_str().ok().and_then(|s| serde_json::from_str(&s).ok()).unwrap_or(serde_json::Value::Null);
    let one = |x: &serde_json::Value| match x {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Object(o) => o
            .get("msg")
            .or_else(|| o.get("message"))
            .and_then(|m| m.as_str())
            .map(str::to_string)
            .or_else(|| Some(x.to_string())),
        serde_json::Value::Bool(true) => Some("denied".to_string()),
        serde_json::Value::Null | serde_json::Value::Bool(false) => None,
        other => Some(other.to_string()),
    };
    match &json {
        serde_json::Value::Array(items) => items.iter().filter_map(one).collect(),
        other => one(other).into_iter().collect(),
    }
}

#[cfg(test)]
mod tests;

/// An operation the policies refused: what, where, and how to get past it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
pub struct Denied {
    pub decision: DecisionPoint,
    /// What was refused: `Environment/prod`, `Service/api@prod`, …
    pub target: String,
    pub findings: Vec<Finding>,
}

impl std::fmt::Display for Denied {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} of {} denied by policy:", self.decision, self.target)?;
        for d in &self.findings {
            write!(f, "\n  {}", d.line())?;
        }
        let first = self.findings.first();
        write!(
            f,
            "\n  hint: fix what the rule names, or ask an operator for a PolicyException (spec.policy: {}, spec.rules: [{}], \
             an owner, a reason and an expiry)",
            first.map_or("POLICY", |d| d.policy.as_str()),
            first.map_or("RULE", |d| d.rule.as_str()),
        )
    }
}

impl Decision {
    /// The refusal, when a finding blocks.
    pub fn denied(&self, decision: DecisionPoint, target: &str) -> Option<Denied> {
        (!self.allowed()).then(|| Denied {
            decision,
            target: target.to_string(),
            findings: self.denials().cloned().collect(),
        })
    }

    /// The audit events a decision leaves: `(action, denied, details)` per
    /// finding — `policy.deny` for a blocking one, `policy.warn` for a
    /// warning or a waived denial (naming the exception) — and per grant,
    /// `policy.allow`, where the decision reads grants.
    pub fn audit(&self, decision: DecisionPoint) -> Vec<(&'static str, bool, serde_json::Value)> {
        let grants = self.grants.iter().filter(|_| decision.reads_grants()).map(|g| {
            let details = serde_json::json!({
                "decision": decision, "policy": g.policy, "version": g.version, "rule": g.rule, "message": g.message,
            });
            ("policy.allow", false, details)
        });
        self.findings
            .iter()
            .map(|f| {
                let action = if f.blocks() { "policy.deny" } else { "policy.warn" };
                let details = serde_json::json!({
                    "decision": decision,
                    "policy": f.policy,
                    "version": f.version,
                    "rule": f.rule,
                    "message": f.message,
                    "exceptedBy": f.excepted_by,
                });
                (action, f.blocks(), details)
            })
            .chain(grants)
            .collect()
    }
}

/// The compiled set for these policies and exceptions, compiled once per
/// content: every caller in the process shares the last one.
pub fn compiled(policies: &[Policy], exceptions: &[PolicyException]) -> Result<std::sync::Arc<PolicySet>, PolicyError> {
    use std::sync::{Arc, Mutex};
    static LAST: Mutex<Option<(String, Arc<PolicySet>)>> = Mutex::new(None);
    let key = serde_json::to_string(&(policies, exceptions)).unwrap_or_default();
    if let Some((k, set)) = LAST.lock().unwrap_or_else(|p| p.into_inner()).as_ref()
        && *k == key
    {
        return Ok(set.clone());
    }
    let set = Arc::new(PolicySet::compile(policies, exceptions)?);
    *LAST.lock().unwrap_or_else(|p| p.into_inner()) = Some((key, set.clone()));
    Ok(set)
}
