//! `paved policy test|eval`: the policies' own Rego tests, and one
//! evaluation on an input document for debugging a decision. Both run on
//! this machine, over the files given (`-f`) or else the recorded policies
//! and exceptions: the local state's, or the server's when logged in.

use crate::Failure;
use crate::cli::PolicyCommand;
use crate::commands::{Ctx, open, read_files, report_diagnostics};
use crate::output::{structured, table};
use crate::remote::Remote;
use paved_model::{DecisionPoint, Kind, Spec};
use paved_policy::PolicySet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub async fn run(ctx: &Ctx, command: PolicyCommand, remote: Option<&Remote>) -> Result<(), Failure> {
    match command {
        PolicyCommand::Test { files } => {
            let set = load(ctx, &files, remote).await?;
            let results = set.test();
            if let Some(text) = structured(ctx.format, &results) {
                println!("{text}");
            } else if results.is_empty() {
                println!("no tests: add `test_*` rules (in a *_test.rego module) to the policies");
            } else {
                let rows = results
                    .iter()
                    .map(|r| {
                        let outcome = if r.passed { "PASS".to_string() } else { "FAIL".to_string() };
                        vec![r.policy.clone(), r.test.clone(), outcome, r.error.clone().unwrap_or_default()]
                    })
                    .collect();
                println!("{}", table(&["POLICY", "TEST", "RESULT", "ERROR"], rows));
                let failed = results.iter().filter(|r| !r.passed).count();
                println!("{} passed, {failed} failed", results.len() - failed);
            }
            if results.iter().any(|r| !r.passed) { Err(Failure::Reported) } else { Ok(()) }
        }
        PolicyCommand::Eval { input, decision, at, files } => {
            let set = load(ctx, &files, remote).await?;
            let document = read_input(&input)?;
            let point = match decision.as_deref().or_else(|| document["decision"].as_str()) {
                Some(d) => DecisionPoint::parse(d).ok_or_else(|| {
                    let all: Vec<&str> = DecisionPoint::ALL.iter().map(|d| d.as_str()).collect();
                    Failure::User(format!("`{d}` is not a decision point ({})", all.join(", ")))
                })?,
                None => {
                    return Err(Failure::User(
                        "the input names no `decision`; pass --decision (e.g. plan, deploy)".into(),
                    ));
                }
            };
            let now = match at {
                Some(t) => time::OffsetDateTime::parse(&t, &time::format_description::well_known::Rfc3339)
                    .map_err(|e| Failure::User(format!("--at `{t}`: not an RFC 3339 time ({e})")))?,
                None => time::OffsetDateTime::now_utc(),
            };
            let decision = set.evaluate(point, &document, now);
            // Where paved needs a grant (`branch-deploy`), no grant is a refusal too.
            let allowed = if point.reads_grants() { decision.granted() } else { decision.allowed() };
            if let Some(text) = structured(ctx.format, &decision) {
                println!("{text}");
            } else {
                if decision.findings.is_empty() && decision.grants.is_empty() {
                    println!("no policy found anything at `{point}` ({} policies)", set.len());
                } else {
                    let findings = decision.findings.iter().map(|f| {
                        let effect = match (&f.excepted_by, f.blocks()) {
                            (Some(e), _) => format!("waived by {e}"),
                            (None, true) => "deny".into(),
                            (None, false) => "warn".into(),
                        };
                        vec![f.policy.clone(), f.rule.clone(), effect, f.message.clone()]
                    });
                    let grants = decision
                        .grants
                        .iter()
                        .filter(|_| point.reads_grants())
                        .map(|g| vec![g.policy.clone(), g.rule.clone(), "allow".into(), g.message.clone()]);
                    println!("{}", table(&["POLICY", "RULE", "EFFECT", "MESSAGE"], findings.chain(grants).collect()));
                }
                println!(
                    "{}",
                    match (allowed, point.reads_grants()) {
                        (true, _) => "allowed",
                        (false, true) if decision.allowed() => "denied: no policy's allow_* rule grants it",
                        (false, _) => "denied",
                    }
                );
            }
            if allowed { Ok(()) } else { Err(Failure::Reported) }
        }
    }
}

fn read_input(path: &Path) -> Result<serde_json::Value, Failure> {
    let text = if path == Path::new("-") {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut s).map_err(|e| Failure::User(e.to_string()))?;
        s
    } else {
        std::fs::read_to_string(path).map_err(|e| Failure::User(format!("{}: {e}", path.display())))?
    };
    serde_json::from_str(&text)
        .map_err(|e| Failure::User(format!("{}:{}:{}: not a JSON document: {e}", path.display(), e.line(), e.column())))
}

/// The policies and exceptions of `files` (validated like `paved validate`),
/// or the recorded ones (the server's, when logged in to one).
async fn load(ctx: &Ctx, files: &[PathBuf], remote: Option<&Remote>) -> Result<Arc<PolicySet>, Failure> {
    match (files.is_empty(), remote) {
        (true, None) => return Ok(open(ctx).await?.policies().await?),
        (true, Some(remote)) => {
            let (mut policies, mut exceptions) = (Vec::new(), Vec::new());
            for o in crate::remote::list(remote, Kind::Policy).await? {
                if let Spec::Policy(p) = o.spec {
                    policies.push(p);
                }
            }
            for o in crate::remote::list(remote, Kind::PolicyException).await? {
                if let Spec::PolicyException(e) = o.spec {
                    exceptions.push(e);
                }
            }
            return paved_policy::compiled(&policies, &exceptions).map_err(|e| Failure::User(e.to_string()));
        }
        (false, _) => {}
    }
    let (sources, read_diags) = read_files(files);
    let batch = paved_spec::check_sources(sources, read_diags, &[]);
    report_diagnostics(ctx, &batch);
    if batch.has_errors() {
        return Err(Failure::Reported);
    }
    let (mut policies, mut exceptions) = (Vec::new(), Vec::new());
    for d in &batch.documents {
        match &d.spec {
            Spec::Policy(p) => policies.push(p.clone()),
            Spec::PolicyException(e) => exceptions.push(e.clone()),
            _ => {}
        }
    }
    if policies.is_empty() {
        return Err(Failure::User("no Policy documents in the files given".into()));
    }
    paved_policy::compiled(&policies, &exceptions).map_err(|e| Failure::User(e.to_string()))
}
