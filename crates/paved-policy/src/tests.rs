use super::*;
use paved_model::{Metadata, PolicyExceptionSpec, PolicySpec, team::Subject};
use serde_json::json;
use std::collections::BTreeMap;

const NO_PUBLIC_DB: &str = r#"
package paved.no_public_databases

deny_public_database contains msg if {
    some r in input.resources
    r.type == "aws.rds-instance"
    r.properties.publiclyAccessible == true
    msg := sprintf("database %s is reachable from the internet", [r.id])
}

warn_small_backups contains msg if {
    some r in input.resources
    r.type == "aws.rds-instance"
    r.properties.backupRetentionPeriod < data.minimum_backup_days
    msg := sprintf("database %s keeps backups %d days", [r.id, r.properties.backupRetentionPeriod])
}
"#;

const NO_PUBLIC_DB_TEST: &str = r#"
package paved.no_public_databases_test

import data.paved.no_public_databases

test_public_database_is_denied if {
    count(no_public_databases.deny_public_database) == 1 with input as {"resources": [
        {"id": "db", "type": "aws.rds-instance", "properties": {"publiclyAccessible": true}}]}
}

test_private_database_passes if {
    count(no_public_databases.deny_public_database) == 0 with input as {"resources": [
        {"id": "db", "type": "aws.rds-instance", "properties": {"publiclyAccessible": false}}]}
}

test_that_fails if {
    count(no_public_databases.deny_public_database) == 5 with input as {"resources": []}
}
"#;

fn policy(name: &str, enforcement: Enforcement, modules: &[(&str, &str)], data: serde_json::Value) -> Policy {
    Policy {
        metadata: Metadata::named(name),
        spec: PolicySpec {
            version: "1.2.0".into(),
            description: String::new(),
            enforcement,
            decisions: vec![DecisionPoint::Plan],
            modules: modules.iter().map(|(n, s)| (n.to_string(), s.to_string())).collect::<BTreeMap<_, _>>(),
            data,
        },
    }
}

fn exception(policy: &str, rules: &[&str], envs: &[&str], expires: &str) -> PolicyException {
    PolicyException {
        metadata: Metadata::named("legacy-db"),
        spec: PolicyExceptionSpec {
            policy: policy.into(),
            rules: rules.iter().map(|s| s.to_string()).collect(),
            environments: envs.iter().map(|s| s.to_string()).collect(),
            owner: Subject("user:dba@example.com".into()),
            reason: "migrating off the public endpoint".into(),
            expires: expires.into(),
        },
    }
}

fn plan_input(public: bool, backup_days: i64) -> serde_json::Value {
    json!({
        "apiVersion": input::API_VERSION, "decision": "plan", "actor": "user:ada@example.com",
        "environment": {"name": "prod", "type": "production"},
        "resources": [{"id": "aws.rds-instance/prod/db", "type": "aws.rds-instance", "action": "create",
                       "properties": {"publiclyAccessible": public, "backupRetentionPeriod": backup_days}}]
    })
}

fn at(s: &str) -> OffsetDateTime {
    OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).unwrap()
}

fn set(enforcement: Enforcement, exceptions: &[PolicyException]) -> PolicySet {
    let p =
        policy("no-public-databases", enforcement, &[("main.rego", NO_PUBLIC_DB)], json!({"minimum_backup_days": 7}));
    PolicySet::compile(&[p], exceptions).unwrap()
}

#[test]
fn a_deny_rule_blocks_with_policy_rule_and_message_and_warn_rules_only_warn() {
    let d = set(Enforcement::Deny, &[]).evaluate(DecisionPoint::Plan, &plan_input(true, 1), at("2026-12-06T00:00:00Z"));
    assert!(!d.allowed());
    let denial = d.denials().next().unwrap();
    assert_eq!(
        (denial.policy.as_str(), denial.version.as_str(), denial.rule.as_str()),
        ("no-public-databases", "1.2.0", "deny_public_database")
    );
    assert_eq!(denial.message, "database aws.rds-instance/prod/db is reachable from the internet");
    let warnings: Vec<_> = d.warnings().map(|f| f.rule.as_str()).collect();
    assert_eq!(warnings, ["warn_small_backups"], "data is read from spec.data");
    // Nothing found: allowed, no findings.
    let clean =
        set(Enforcement::Deny, &[]).evaluate(DecisionPoint::Plan, &plan_input(false, 30), at("2026-12-06T00:00:00Z"));
    assert!(clean.allowed() && clean.findings.is_empty(), "{clean:?}");
}

#[test]
fn warn_enforcement_lets_the_operation_run_and_keeps_the_finding() {
    let d =
        set(Enforcement::Warn, &[]).evaluate(DecisionPoint::Plan, &plan_input(true, 30), at("2026-12-06T00:00:00Z"));
    assert!(d.allowed());
    assert_eq!(d.warnings().map(|f| f.rule.as_str()).collect::<Vec<_>>(), ["deny_public_database"]);
}

#[test]
fn an_exception_waives_its_rule_in_its_environments_until_it_expires() {
    let e = exception("no-public-databases", &["deny_public_database"], &["prod"], "2027-01-01T00:00:00Z");
    let s = set(Enforcement::Deny, &[e]);
    let before = s.evaluate(DecisionPoint::Plan, &plan_input(true, 30), at("2026-12-31T23:59:59Z"));
    assert!(before.allowed());
    assert_eq!(before.findings[0].excepted_by.as_deref(), Some("legacy-db"));
    let after = s.evaluate(DecisionPoint::Plan, &plan_input(true, 30), at("2027-01-01T00:00:00Z"));
    assert!(!after.allowed(), "an expired exception still applied");
    // Another environment, another rule, another policy: not waived.
    let mut other_env = plan_input(true, 30);
    other_env["environment"]["name"] = json!("staging");
    assert!(!s.evaluate(DecisionPoint::Plan, &other_env, at("2026-12-06T00:00:00Z")).allowed());
    let wrong_rule =
        set(Enforcement::Deny, &[exception("no-public-databases", &["deny_other"], &[], "2027-01-01T00:00:00Z")]);
    assert!(!wrong_rule.evaluate(DecisionPoint::Plan, &plan_input(true, 30), at("2026-12-06T00:00:00Z")).allowed());
    let wrong_policy = set(Enforcement::Deny, &[exception("another", &[], &[], "2027-01-01T00:00:00Z")]);
    assert!(!wrong_policy.evaluate(DecisionPoint::Plan, &plan_input(true, 30), at("2026-12-06T00:00:00Z")).allowed());
}

#[test]
fn a_policy_applies_only_at_its_decision_points() {
    let d =
        set(Enforcement::Deny, &[]).evaluate(DecisionPoint::Deploy, &plan_input(true, 1), at("2026-12-06T00:00:00Z"));
    assert!(d.findings.is_empty());
}

#[test]
fn policy_tests_run_and_report_each_result() {
    let p = policy(
        "no-public-databases",
        Enforcement::Deny,
        &[("main.rego", NO_PUBLIC_DB), ("main_test.rego", NO_PUBLIC_DB_TEST)],
        json!({"minimum_backup_days": 7}),
    );
    let results = PolicySet::compile(&[p], &[]).unwrap().test();
    let outcome: Vec<(&str, bool)> = results.iter().map(|r| (r.test.as_str(), r.passed)).collect();
    assert_eq!(
        outcome,
        [("test_public_database_is_denied", true), ("test_private_database_passes", true), ("test_that_fails", false)]
    );
}

#[test]
fn a_broken_module_is_named_with_its_line_and_column() {
    let err = check_module("main.rego", "package x\n\ndeny contains msg if {\n  msg := \n}\n").unwrap_err();
    assert_eq!((err.0, err.1), (Some(4), Some(7)), "{err:?}");
    assert!(err.2.contains("expecting `}`"), "{err:?}");
    let p = policy(
        "broken",
        Enforcement::Deny,
        &[("main.rego", "package x\n\ndeny contains msg if {\n  msg := \n}\n")],
        json!(null),
    );
    let e = PolicySet::compile(&[p], &[]).err().unwrap().to_string();
    assert!(e.starts_with("policy `broken`, module `main.rego` (line 4, column 7): expecting"), "{e}");
}

#[test]
fn a_runaway_policy_is_stopped_and_fails_closed_while_undefined_is_no_error() {
    let looping = "package l\n\nn := numbers.range(1, 20000)\n\ndeny contains msg if {\n  count([x | some a in n; some b in n; x := a * b; x < 0]) > 0\n  msg := \"never\"\n}\n";
    let p = policy("looping", Enforcement::Deny, &[("main.rego", looping)], json!(null));
    let started = std::time::Instant::now();
    let set = PolicySet::compile(&[p], &[]).unwrap();
    let d = set.evaluate(DecisionPoint::Plan, &plan_input(true, 1), at("2026-12-06T00:00:00Z"));
    assert!(started.elapsed() < std::time::Duration::from_secs(5), "ran {:?}", started.elapsed());
    assert!(!d.allowed(), "{d:?}");
    assert_eq!(d.findings[0].rule, "error", "{d:?}");
    assert!(d.findings[0].message.starts_with("the policy failed to evaluate"), "{d:?}");

    // Reading what the input lacks makes a rule undefined (it does not hold), as in OPA.
    let reads_missing = "package f\n\ndeny contains msg if {\n  msg := sprintf(\"%s\", [input.nothing.deeper])\n}\n";
    let p = policy("reads-missing", Enforcement::Deny, &[("main.rego", reads_missing)], json!(null));
    let d = PolicySet::compile(&[p], &[]).unwrap().evaluate(
        DecisionPoint::Plan,
        &plan_input(true, 1),
        at("2026-12-06T00:00:00Z"),
    );
    assert!(d.allowed() && d.findings.is_empty(), "{d:?}");
}

#[test]
fn the_input_schema_documents_every_decision() {
    let s = input::schema();
    let text = s.to_string();
    for field in
        ["apiVersion", "decision", "actor", "environment", "resources", "deployment", "secret", "preview", "spec"]
    {
        assert!(text.contains(&format!("\"{field}\"")), "{field} missing from {text}");
    }
    for point in DecisionPoint::ALL {
        assert!(text.contains(point.as_str()), "{point}");
    }
}

const MAIN_TO_PRODUCTION: &str = r#"
package paved.release_from_main

allow_main_of_payments contains msg if {
    input.deployment.branch == "main"
    startswith(input.deployment.repository, "payments/")
    msg := sprintf("%s deploys main to production", [input.deployment.repository])
}

deny_reverted contains "commit abc was reverted" if {
    input.deployment.commit == data.reverted[_]
}
"#;

fn branch_input(repository: &str, branch: &str) -> serde_json::Value {
    json!({"apiVersion": input::API_VERSION, "decision": "branch-deploy", "actor": "paved-git",
           "environment": {"name": "production", "type": "production"},
           "deployment": {"service": "api", "digest": "", "branch": branch, "repository": repository,
                          "commit": "abc", "at": "2026-12-06T10:00:00Z"}})
}

#[test]
fn an_allow_rule_grants_only_what_it_matches_and_never_overrides_a_denial() {
    let data = json!({"reverted": ["abc"]});
    let mut p = policy("release-from-main", Enforcement::Deny, &[("main.rego", MAIN_TO_PRODUCTION)], data);
    p.spec.decisions = vec![DecisionPoint::BranchDeploy];
    let set = PolicySet::compile(&[p], &[]).unwrap();
    let now = OffsetDateTime::UNIX_EPOCH;
    let mut main = branch_input("payments/api", "main");
    main["deployment"]["commit"] = json!("def");
    let granted = set.evaluate(DecisionPoint::BranchDeploy, &main, now);
    assert!(granted.granted(), "{granted:?}");
    assert_eq!(granted.grants[0].rule, "allow_main_of_payments");
    assert_eq!(granted.grants[0].message, "payments/api deploys main to production");
    let audit = granted.audit(DecisionPoint::BranchDeploy);
    assert_eq!(audit.len(), 1);
    assert_eq!((audit[0].0, audit[0].1), ("policy.allow", false));
    assert_eq!(audit[0].2["rule"], "allow_main_of_payments");

    // Another team's repository, another branch: no grant.
    for (repo, branch) in [("shop/api", "main"), ("payments/api", "feature")] {
        let mut other = branch_input(repo, branch);
        other["deployment"]["commit"] = json!("def");
        let d = set.evaluate(DecisionPoint::BranchDeploy, &other, now);
        assert!(d.allowed() && !d.granted(), "{repo} {branch}: {d:?}");
    }
    // A grant does not outweigh a denial (commit abc was reverted).
    let d = set.evaluate(DecisionPoint::BranchDeploy, &branch_input("payments/api", "main"), now);
    assert!(!d.grants.is_empty() && !d.granted() && d.denials().count() == 1, "{d:?}");
    // Grants are not audited where no decision reads them.
    assert!(granted.audit(DecisionPoint::Deploy).is_empty());
}
