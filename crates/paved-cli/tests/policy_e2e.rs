//! End-to-end on policy as code: Policy and PolicyException specs recorded
//! through the real binary, enforced at their decision points (plan before
//! an apply on the local provider, admission, secret reveal), with every
//! finding in the audit log.

mod support;

use serde_json::Value;
use std::io::Write;
use std::process::Stdio;
use std::time::{Duration, Instant};
use support::Platform;

const NO_DATABASES_IN_DEV: &str = r#"
apiVersion: paved.dev/v1alpha1
kind: Policy
metadata:
  name: shared-fixtures
spec:
  version: 2.0.1
  enforcement: ENFORCEMENT
  decisions: [plan]
  modules:
    main.rego: |
      package paved.shared_fixtures

      deny_own_database contains msg if {
          input.environment.name == "dev"
          some r in input.resources
          r.type == "local.postgres.database"
          msg := sprintf("%s: dev reads the shared fixtures, not a database of its own", [r.id])
      }
"#;

fn exception(expires: &str) -> String {
    format!(
        "apiVersion: paved.dev/v1alpha1\nkind: PolicyException\nmetadata:\n  name: payments-migration\nspec:\n  \
         policy: shared-fixtures\n  rules: [deny_own_database]\n  environments: [dev]\n  owner: user:lead@example.com\n  \
         reason: payments moves to the fixtures next sprint\n  expires: {expires}\n"
    )
}

/// `paved ARGS` with `input` on standard input, which must fail (exit 1): its standard error.
fn refused_with_input(p: &Platform, args: &[&str], input: &str) -> String {
    let mut child = p.command(args).stdin(Stdio::piped()).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "paved {args:?} was not refused: {err}");
    err
}

fn audit(p: &Platform, action: &str) -> Vec<Value> {
    let v: Value = serde_json::from_str(&p.ok(&["audit", "list", "--action", action, "-o", "json"])).unwrap();
    v.as_array().unwrap().clone()
}

fn rfc3339(t: time::OffsetDateTime) -> String {
    t.replace_nanosecond(0).unwrap().format(&time::format_description::well_known::Rfc3339).unwrap()
}

#[test]
fn a_deny_policy_blocks_the_apply_until_an_exception_and_again_after_it_expires() {
    let mut p = Platform::new();
    let _down = support::Down::of(&p);
    p.ok(&["apply", "-f", "examples"]);
    p.ok_with_input(&["apply", "-f", "-"], &NO_DATABASES_IN_DEV.replace("ENFORCEMENT", "deny"));

    // The plan says what the apply would meet; the apply is refused with the rule's message.
    let plan = p.ok(&["plan", "-e", "dev"]);
    assert!(
        plan.contains(
            "policy `shared-fixtures` rule `deny_own_database` would deny the apply: local.postgres.database/payments-db:"
        ),
        "{plan}"
    );
    // (`paved up` imports the demo services' images, then applies dev.)
    let out = p.command(&["up"]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("plan of Environment/dev denied by policy"), "{err}");
    assert!(
        err.contains("policy `shared-fixtures` (2.0.1) rule `deny_own_database`: local.postgres.database/payments-db:"),
        "{err}"
    );
    assert!(err.contains("PolicyException (spec.policy: shared-fixtures, spec.rules: [deny_own_database]"), "{err}");
    // Audited with policy, rule and message; nothing was applied.
    let denied = audit(&p, "policy.deny");
    assert_eq!(denied.len(), 1, "{denied:?}");
    let d = &denied[0];
    assert_eq!((d["target"].as_str(), d["outcome"].as_str()), (Some("Environment/dev"), Some("denied")), "{d}");
    assert_eq!(
        (d["details"]["policy"].as_str(), d["details"]["rule"].as_str()),
        (Some("shared-fixtures"), Some("deny_own_database"))
    );
    assert_eq!(d["details"]["decision"], "plan");
    assert!(audit(&p, "environment.apply").is_empty(), "the denied apply ran");
    assert!(!p.data.path().join("local/envs/dev").exists(), "the denied apply created resources");

    // An exception with an expiry lets it through, and the waiver is on record.
    let expires = time::OffsetDateTime::now_utc() + Duration::from_secs(20);
    p.ok_with_input(&["apply", "-f", "-"], &exception(&rfc3339(expires)));
    p.ok(&["apply", "-e", "dev"]);
    let waived = audit(&p, "policy.warn");
    assert!(waived.iter().any(|e| e["details"]["exceptedBy"] == "payments-migration"), "{waived:?}");
    assert_eq!(audit(&p, "environment.apply").len(), 1);

    // Once it expires, the same plan is denied again.
    while time::OffsetDateTime::now_utc() <= expires + Duration::from_secs(1) {
        std::thread::sleep(Duration::from_millis(250));
    }
    let started = Instant::now();
    let out = p.command(&["apply", "-e", "dev"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "an expired exception still applied");
    assert!(String::from_utf8_lossy(&out.stderr).contains("denied by policy"));
    assert!(started.elapsed() < Duration::from_secs(30));
    assert_eq!(audit(&p, "policy.deny").len(), 2);

    // `warn` lets the operation run and records the finding.
    p.ok_with_input(&["apply", "-f", "-"], &NO_DATABASES_IN_DEV.replace("ENFORCEMENT", "warn"));
    p.ok(&["apply", "-e", "dev"]);
    let warned = audit(&p, "policy.warn");
    assert!(
        warned.iter().any(|e| e["details"]["rule"] == "deny_own_database" && e["details"]["exceptedBy"].is_null()),
        "{warned:?}"
    );
    assert_eq!(audit(&p, "environment.apply").len(), 2);

    // The console's policies page: the policy, the expired exception, and (for an operator)
    // the decisions with their reasons and how to get past a denial; a viewer sees no audit.
    p.ok_with_input(&["apply", "-f", "-"], CONSOLE_BINDINGS);
    let operator = p.token("ops", "serviceaccount:ops", None).1;
    let viewer = p.token("view", "serviceaccount:view", None).1;
    p.start(&["--reconcile-interval", "off"]);
    let page = p.get("/console/policies", &operator);
    let html = page.text();
    assert_eq!(page.status, 200, "{html}");
    for expected in [
        "shared-fixtures</td><td>2.0.1</td>",
        "payments-migration</td><td>shared-fixtures</td><td>deny_own_database</td><td>dev</td>",
        "(expired)",
        "shared-fixtures (2.0.1) · deny_own_database",
        "dev reads the shared fixtures, not a database of its own",
        "ask an operator for a PolicyException (policy: shared-fixtures, rules: [deny_own_database])",
        "waived by exception payments-migration",
    ] {
        assert!(html.contains(expected), "{expected} missing from the policies page:\n{html}");
    }
    let page = p.get("/console/policies", &viewer);
    let html = page.text();
    assert_eq!(page.status, 200, "{html}");
    assert!(html.contains("shared-fixtures</td>") && !html.contains("id=\"decisions\""), "{html}");
    assert!(html.contains("needs the operator role"), "{html}");

    // Logged in, `paved policy eval` asks the server's policies (and exceptions).
    p.ok_with_input(&["login", "--server", &format!("http://127.0.0.1:{}", p.port)], &viewer);
    let input = p.data.path().join("plan-input.json");
    let document = serde_json::json!({"apiVersion": "paved.dev/policy-input/v1", "decision": "plan", "actor": "user:me",
        "environment": {"name": "dev", "type": "development", "account": "local", "provider": "local",
                        "region": "local", "owner": "payments", "blueprint": "web-service-standard@1.2.0"},
        "resources": [{"id": "local.postgres.database/x", "type": "local.postgres.database", "properties": {}, "action": "create"}]});
    std::fs::write(&input, document.to_string()).unwrap();
    let out = p.command(&["policy", "eval", "--input", input.to_str().unwrap()]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    // The recorded policy is `warn` by now: the finding is shown, the plan allowed.
    assert!(out.status.success() && text.contains("deny_own_database") && text.contains("warn"), "{text}");
    let listed = p.log().lines().filter(|l| l.contains("\"route\":\"/api/v1/specs\"") && l.contains("GET")).count();
    assert!(listed >= 2, "the policies and exceptions were not read from the server:\n{}", p.log());
}

const CONSOLE_BINDINGS: &str = "apiVersion: paved.dev/v1alpha1\nkind: RoleBinding\nmetadata:\n  name: ops\nspec:\n  \
role: operator\n  subjects: [serviceaccount:ops]\n  scope: organisation\n---\n\
apiVersion: paved.dev/v1alpha1\nkind: RoleBinding\nmetadata:\n  name: view\nspec:\n  \
role: viewer\n  subjects: [serviceaccount:view]\n  scope: organisation\n";

#[test]
fn admission_and_secret_reveal_ask_the_policies_and_a_broken_module_is_refused_where_it_is() {
    let p = Platform::new();
    p.ok(&["apply", "-f", "examples/platform", "-f", "examples/environments/local.yaml"]);
    let policy = r#"
apiVersion: paved.dev/v1alpha1
kind: Policy
metadata:
  name: ownership
spec:
  version: 1.0.0
  decisions: [admission, secret-reveal]
  modules:
    main.rego: |
      package paved.ownership

      deny_unowned_service contains msg if {
          input.decision == "admission"
          input.spec.kind == "Service"
          not input.spec.document.metadata.annotations["paved.dev/owner"]
          msg := sprintf("service %s names no owner (metadata.annotations.paved.dev/owner)", [input.spec.name])
      }

      deny_production_reveal contains msg if {
          input.decision == "secret-reveal"
          input.environment.type == "production"
          msg := sprintf("%s is not shown to people in production; use the break-glass procedure", [input.secret.name])
      }
"#;
    p.ok_with_input(&["apply", "-f", "-"], policy);

    // Admission: the unowned service is not recorded; an owned one is.
    let unowned = "apiVersion: score.dev/v1b1\nmetadata:\n  name: orphan\ncontainers:\n  main:\n    image: busybox\n";
    let err = refused_with_input(&p, &["apply", "-f", "-"], unowned);
    assert!(err.contains("admission of Service/orphan denied by policy") && err.contains("names no owner"), "{err}");
    let missing = p.command(&["get", "service", "orphan"]).output().unwrap();
    assert!(!missing.status.success(), "the denied service was recorded");
    let owned = unowned.replace("  name: orphan\n", "  name: orphan\n  annotations:\n    paved.dev/owner: platform\n");
    p.ok_with_input(&["apply", "-f", "-"], &owned);

    // Secret reveal: production values stay hidden, other environments' are shown.
    for env in ["production", "staging"] {
        p.ok_with_input(&["secret", "set", "API_KEY", "-e", env], "s3cret");
    }
    assert_eq!(p.ok(&["secret", "reveal", "API_KEY", "-e", "staging"]).trim(), "s3cret");
    let out = p.command(&["secret", "reveal", "API_KEY", "-e", "production"]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(!String::from_utf8_lossy(&out.stdout).contains("s3cret"));
    assert!(
        err.contains("secret-reveal of secret:production/API_KEY denied by policy") && err.contains("break-glass"),
        "{err}"
    );
    let denied = audit(&p, "policy.deny");
    assert_eq!(
        denied.iter().map(|e| e["details"]["rule"].as_str().unwrap()).collect::<Vec<_>>(),
        ["deny_unowned_service", "deny_production_reveal"]
    );

    // A policy that refuses every spec cannot refuse its own fix: policies are not admitted by policy.
    let lockdown = "apiVersion: paved.dev/v1alpha1\nkind: Policy\nmetadata:\n  name: lockdown\nspec:\n  version: 1.0.0\n  \
                    enforcement: ENFORCEMENT\n  decisions: [admission]\n  modules:\n    main.rego: |\n      package paved.lockdown\n\n      \
                    deny_everything contains \"nothing may change\" if { true }\n";
    p.ok_with_input(&["apply", "-f", "-"], &lockdown.replace("ENFORCEMENT", "deny"));
    let team = "apiVersion: paved.dev/v1alpha1\nkind: Team\nmetadata:\n  name: newcomers\nspec: {}\n";
    refused_with_input(&p, &["apply", "-f", "-"], team);
    p.ok_with_input(&["apply", "-f", "-"], &lockdown.replace("ENFORCEMENT", "warn"));
    p.ok_with_input(&["apply", "-f", "-"], team);

    // A module that is not Rego is refused at its line and column, nothing recorded.
    let broken = policy
        .replace("      deny_production_reveal contains msg if {", "      deny_production_reveal contains msg if {{");
    let err = refused_with_input(&p, &["apply", "-f", "-"], &broken);
    assert!(err.contains("invalid-rego") && err.contains("`main.rego` at line"), "{err}");
}

#[test]
fn the_example_baseline_policies_pass_their_tests_and_every_example_plan() {
    let p = Platform::new();
    let tests = p.ok(&["policy", "test", "-f", "examples/policies"]);
    assert!(tests.contains("11 passed, 0 failed"), "{tests}");
    p.ok(&["apply", "-f", "examples"]);
    for env in ["dev", "staging", "production", "eu-dev", "eu-staging", "eu-production"] {
        let plan = p.ok(&["plan", "-e", env]);
        assert!(!plan.contains("warning: policy"), "{env}: {plan}");
    }
    // A graph that breaks the baseline is caught (the input a plan of eu-dev would give, one database made public).
    let input = serde_json::json!({
        "apiVersion": "paved.dev/policy-input/v1", "decision": "plan", "actor": "user:ada@example.com",
        "environment": {"name": "eu-dev", "type": "development", "account": "aws-eu", "provider": "aws",
                        "region": "eu-central-1", "owner": "platform", "blueprint": "web-service-standard@1.2.0"},
        "resources": [{"id": "aws.rds-instance/eu-dev/payments-db", "type": "aws.rds-instance", "action": "create",
                       "properties": {"publiclyAccessible": true, "storageEncrypted": true}}]
    });
    let file = p.data.path().join("input.json");
    std::fs::write(&file, input.to_string()).unwrap();
    let out = p.command(&["policy", "eval", "--input", file.to_str().unwrap()]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("data-protection") && text.contains("deny_public_database") && text.contains("denied"),
        "{text}"
    );
}
