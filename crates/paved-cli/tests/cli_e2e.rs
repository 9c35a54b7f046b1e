//! End-to-end: the real binary against the examples, as a user would drive it.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

struct Paved {
    state: String,
    _dir: tempfile::TempDir,
}

impl Paved {
    fn new() -> Paved {
        let dir = tempfile::tempdir().unwrap();
        let state = format!("sqlite://{}", dir.path().join("state.db").display());
        Paved { state, _dir: dir }
    }

    fn run(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_paved"))
            .args(args)
            .env("PAVED_STATE", &self.state)
            .env("PAVED_DATA_DIR", self._dir.path())
            .env("PAVED_ACTOR", "alice")
            .env("NO_COLOR", "1")
            .output()
            .unwrap()
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(out.status.success(), "paved {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    }

    fn json(&self, args: &[&str]) -> Value {
        let mut full = vec!["-o", "json"];
        full.extend_from_slice(args);
        serde_json::from_str(&self.ok(&full)).unwrap()
    }
}

fn examples() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples").display().to_string()
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn every_example_validates() {
    let p = Paved::new();
    let out = p.ok(&["validate", "-f", &examples()]);
    assert!(out.contains("19 document(s) in 9 file(s) are valid"), "{out}");
}

#[test]
fn applying_examples_twice_records_one_generation_each() {
    let p = Paved::new();
    let first = p.json(&["apply", "-f", &examples()]);
    let first = first.as_array().unwrap();
    assert_eq!(first.len(), 19);
    assert!(first.iter().all(|o| o["action"] == "created" && o["generation"] == 1), "{first:?}");
    let second = p.ok(&["apply", "-f", &examples()]);
    assert!(second.contains("0 created, 0 updated, 19 unchanged"), "{second}");
    let history = p.json(&["history", "environment", "production"]);
    assert_eq!(history.as_array().unwrap().len(), 1);
}

#[test]
fn status_lists_recorded_services_and_environments_before_anything_is_applied() {
    let p = Paved::new();
    p.ok(&["apply", "-f", &examples()]);
    let rows = p.json(&["status"]);
    let rows = rows.as_array().unwrap();
    let services = p.json(&["get", "services"]).as_array().unwrap().len();
    let environments = p.json(&["get", "environments"]).as_array().unwrap().len();
    // Every service in every environment, none of them applied yet.
    assert_eq!(rows.len(), services * environments, "{rows:?}");
    assert!(rows.iter().all(|r| r["health"] == "not-applied" && r["number"].is_null()), "{rows:?}");
    let api_dev = rows.iter().find(|r| r["service"] == "api" && r["environment"] == "dev").unwrap();
    assert!(api_dev["artifact"].as_str().is_some_and(|i| !i.is_empty()), "the Score image is shown: {api_dev}");

    let table = p.ok(&["status"]);
    let mut lines = table.lines();
    let header = lines.next().unwrap();
    assert!(header.starts_with("SERVICE") && header.contains("DEV") && header.contains("EU-PRODUCTION"), "{table}");
    let api = table.lines().find(|l| l.starts_with("api ")).unwrap_or_else(|| panic!("no api row: {table}"));
    assert!(api.contains("not-applied"), "{table}");
}

#[test]
fn a_changed_spec_becomes_a_new_generation_and_history_keeps_both() {
    let p = Paved::new();
    p.ok(&["apply", "-f", &examples()]);
    let dir = tempfile::tempdir().unwrap();
    let env = std::fs::read_to_string(Path::new(&examples()).join("environments/aws-eu.yaml")).unwrap();
    let changed = write(dir.path(), "aws-eu.yaml", &env.replace("replicas: 4", "replicas: 6"));
    let out = p.ok(&["apply", "-f", changed.to_str().unwrap()]);
    assert!(out.contains("environment/eu-production updated (generation 2)"), "{out}");
    assert!(out.contains("0 created, 1 updated, 2 unchanged"), "{out}");
    let table = p.ok(&["history", "env", "eu-production"]);
    let lines: Vec<&str> = table.lines().collect();
    assert!(lines[0].starts_with("GEN") && lines[1].starts_with("1") && lines[2].starts_with("2"), "{table}");
    assert!(lines[2].contains("updated") && lines[2].contains("alice"), "{table}");
    let current = p.json(&["get", "env", "eu-production"]);
    assert_eq!(current["document"]["spec"]["parameters"]["replicas"], 6);
    assert_eq!(current["generation"], 2);
}

#[test]
fn get_and_describe_show_what_runs_where() {
    let p = Paved::new();
    p.ok(&["apply", "-f", &examples()]);
    let table = p.ok(&["get", "environments"]);
    assert!(table.lines().next().unwrap().split_whitespace().eq([
        "NAME",
        "TYPE",
        "BLUEPRINT",
        "ACCOUNT",
        "REGION",
        "OWNER",
        "GEN",
        "UPDATED"
    ]));
    assert!(
        table.lines().any(|l| l.starts_with("eu-production") && l.contains("eu-west-1") && l.contains("aws-eu")),
        "{table}"
    );
    let described = p.ok(&["describe", "environment", "eu-production"]);
    // Parameters resolve to the environment's own values or the blueprint's production defaults.
    assert!(
        described
            .lines()
            .any(|l| l.trim_start().starts_with("replicas") && l.contains('4') && l.contains("set by environment")),
        "{described}"
    );
    assert!(
        described.lines().any(|l| l.trim_start().starts_with("highAvailability")
            && l.contains("true")
            && l.contains("production default")),
        "{described}"
    );
    let bp = p.ok(&["describe", "blueprint", "web-service-standard"]);
    assert!(bp.contains("Name:        web-service-standard@1.2.0"), "{bp}");
    assert!(bp.contains("Environment eu-production"), "{bp}");
    let yaml = p.ok(&["-o", "yaml", "get", "service", "api"]);
    assert!(yaml.contains("apiVersion: score.dev/v1b1") && yaml.contains("paved.dev/owner: payments"), "{yaml}");
}

#[test]
fn recorded_yaml_round_trips_through_apply() {
    let p = Paved::new();
    p.ok(&["apply", "-f", &examples()]);
    let doc = p.json(&["get", "env", "staging"])["document"].clone();
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "staging.json.yaml", &serde_json::to_string(&doc).unwrap());
    let out = p.ok(&["apply", "-f", file.to_str().unwrap()]);
    assert!(out.contains("environment/staging unchanged"), "{out}");
}

#[test]
fn delete_refuses_while_used_and_keeps_history() {
    let p = Paved::new();
    p.ok(&["apply", "-f", &examples()]);
    let refused = p.run(&["delete", "account", "aws-eu"]);
    assert_eq!(refused.status.code(), Some(1));
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(err.contains("still used by Environment `eu-dev`"), "{err}");
    for env in ["eu-dev", "eu-staging", "eu-production"] {
        p.ok(&["delete", "env", env]);
    }
    let out = p.ok(&["delete", "account", "aws-eu"]);
    assert!(out.contains("cloudaccount/aws-eu deleted (generation 2"), "{out}");
    let missing = p.run(&["get", "account", "aws-eu"]);
    assert_eq!(missing.status.code(), Some(1));
    let history = p.json(&["history", "env", "eu-dev"]);
    assert_eq!(
        history.as_array().unwrap().iter().map(|r| r["deleted"].as_bool().unwrap()).collect::<Vec<_>>(),
        [false, true]
    );
    // Re-applying brings it back as a new generation.
    let out = p.ok(&["apply", "-f", &examples()]);
    assert!(out.contains("environment/eu-dev created (generation 3)"), "{out}");
}

#[test]
fn unknown_names_get_suggestions_and_exit_code_one() {
    let p = Paved::new();
    p.ok(&["apply", "-f", &examples()]);
    let out = p.run(&["get", "env", "prodution"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("did you mean `production`?"));
    let out = p.run(&["get", "widgets"]);
    assert_eq!(out.status.code(), Some(1));
    let out = p.run(&["frobnicate"]);
    assert_eq!(out.status.code(), Some(1), "usage errors are user errors");
}

#[test]
fn an_unreachable_store_is_an_internal_error() {
    let out = Command::new(env!("CARGO_BIN_EXE_paved"))
        .args(["--state", "postgres://nobody@127.0.0.1:1/none", "get", "teams"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn all_errors_of_a_file_are_reported_at_once_with_snippets() {
    let p = Paved::new();
    p.ok(&["apply", "-f", &examples()]);
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "bad.yaml",
        "apiVersion: paved.dev/v1alpha1\nkind: Environment\nmetadata:\n  name: bad\nspec:\n  blueprint: web-service-standard@1.2.0\n  account: aws-eu\n  region: us-east-1\n  type: staging\n  owner: nobody\n  parameters:\n    replicas: 99\n",
    );
    let out = p.run(&["apply", "-f", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    for expected in [
        "error[region-not-allowed]",
        "8 |   region: us-east-1",
        "error[unknown-team]",
        "error[invalid-parameter]",
        "allowed regions: eu-central-1, eu-west-1",
        "3 error(s)",
    ] {
        assert!(err.contains(expected), "missing {expected:?} in:\n{err}");
    }
}

#[test]
fn an_aws_environment_name_too_long_for_its_load_balancer_is_refused_at_apply_with_the_limit() {
    let p = Paved::new();
    p.ok(&["apply", "-f", &examples()]);
    let dir = tempfile::tempdir().unwrap();
    let name = "payments-eu-central-staging"; // 27 characters: `paved-…` would be 33
    let file = write(
        dir.path(),
        "long.yaml",
        &format!(
            "apiVersion: paved.dev/v1alpha1\nkind: Environment\nmetadata:\n  name: {name}\nspec:\n  blueprint: web-service-standard@1.2.0\n  account: aws-eu\n  region: eu-west-1\n  type: staging\n  owner: platform\n"
        ),
    );
    let out = p.run(&["apply", "-f", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    for expected in ["error[name-too-long-for-aws]", "long.yaml:4:", "ELB takes at most 32", "at most 26 characters"] {
        assert!(err.contains(expected), "missing {expected:?} in:\n{err}");
    }
    assert!(!p.ok(&["get", "environments"]).contains(name), "nothing is recorded");
    // On the local provider the same name is fine.
    let local =
        std::fs::read_to_string(file.as_path()).unwrap().replace("aws-eu", "local").replace("eu-west-1", "local");
    std::fs::write(&file, local).unwrap();
    p.ok(&["apply", "-f", file.to_str().unwrap()]);
}

#[test]
fn a_typo_does_not_hide_the_other_problems_of_a_document() {
    let p = Paved::new();
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "bp.yaml",
        "apiVersion: paved.dev/v1alpha1\nkind: Blueprint\nmetadata:\n  name: bp\nspec:\n  version: 1.0.0\n  \
         network: {addressSpace: 8.8.0.0/16, tiers: [private], egress: none}\n  \
         compute: {runtime: process, size: small, replicas: 1, autoscale: true}\n",
    );
    let out = p.run(&["-o", "json", "validate", "-f", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let codes: Vec<&str> =
        report["diagnostics"].as_array().unwrap().iter().map(|d| d["code"].as_str().unwrap()).collect();
    assert_eq!(codes, ["not-private", "unknown-field"], "{report}");
}

#[test]
fn schemas_are_printed_for_every_kind() {
    let p = Paved::new();
    for kind in ["blueprint", "account", "environment", "team", "service"] {
        let schema: Value = serde_json::from_str(&p.ok(&["schema", kind])).unwrap();
        assert_eq!(schema["$schema"], "https://json-schema.org/draft/2020-12/schema", "{kind}");
        assert!(schema["properties"]["metadata"].is_object(), "{kind}");
    }
    let env: Value = serde_json::from_str(&p.ok(&["schema", "Environment"])).unwrap();
    assert_eq!(env["properties"]["kind"]["const"], "Environment");
}

#[test]
fn shell_completions_and_help_with_examples() {
    let p = Paved::new();
    let bash = p.ok(&["completions", "bash"]);
    assert!(bash.contains("_paved()") && bash.contains("validate"), "bash completion");
    let help = p.ok(&["apply", "--help"]);
    assert!(help.contains("Examples:") && help.contains("paved apply -f examples/"), "{help}");
}

#[test]
fn specs_can_come_from_standard_input() {
    use std::io::Write;
    let p = Paved::new();
    let mut child = Command::new(env!("CARGO_BIN_EXE_paved"))
        .args(["validate", "-f", "-"])
        .env("PAVED_STATE", &p.state)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"apiVersion: paved.dev/v1alpha1\nkind: Team\nmetadata:\n  name: solo\nspec:\n  members: [\"user:a@example.com\"]\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("1 document(s) in 1 file(s) are valid"));
}

#[test]
fn plan_shows_what_an_environment_consists_of() {
    let p = Paved::new();
    p.ok(&["apply", "-f", &examples()]);
    let out = p.ok(&["plan", "-e", "dev"]);
    assert!(out.contains("  + local.postgres.database/payments-db"), "{out}");
    assert!(out.contains("database = \"dev_payments_db\""), "{out}");
    assert!(out.contains("Plan: 10 to add, 0 to change, 0 to replace, 0 to destroy."), "{out}");
    let json = p.json(&["plan", "-e", "dev"]);
    assert_eq!(json["environment"], "dev");
    assert!(json["nodes"].as_array().unwrap().iter().all(|n| n["action"] == "create"));
    assert_eq!(
        p.ok(&["plan", "-e", "dev", "--graph"]),
        p.ok(&["plan", "-e", "dev", "--graph"]),
        "plans are deterministic"
    );
    // AWS environments plan (their own address block, the baseline); applying them is aws_e2e's.
    let aws = p.ok(&["plan", "-e", "eu-dev"]);
    assert!(aws.contains("Plan for environment eu-dev (aws provider, region eu-central-1)"), "{aws}");
    assert!(aws.contains("  + aws.vpc/eu-dev") && aws.contains("  + aws.flow-log/eu-dev"), "{aws}");
    assert!(aws.contains("cidrBlock = \"10.40.0.0/20\""), "{aws}");
    // Two regions, one blueprint: every difference comes from a declared parameter.
    let parity = p.ok(&["parity", "eu-dev", "eu-staging"]);
    assert!(parity.contains("no undeclared differences") && parity.contains("backupRetentionDays"), "{parity}");
}

#[test]
fn the_audit_log_records_every_change_and_verify_names_a_tampered_event() {
    let p = Paved::new();
    p.ok(&["apply", "-f", &examples()]);
    p.ok(&["delete", "environment", "eu-dev"]);
    // A refused attempt is recorded too, with why.
    assert_eq!(p.run(&["delete", "team", "storefront"]).status.code(), Some(1));
    let refused = p.json(&["audit", "list", "--target", "Team/storefront", "--action", "spec.delete"]);
    assert_eq!(refused[0]["outcome"], "failed", "{refused}");
    assert!(refused[0]["details"]["error"].as_str().unwrap().contains("still used by Service `web`"), "{refused}");

    let events = p.json(&["audit", "list", "--target", "Environment/eu-dev"]);
    let events = events.as_array().unwrap();
    let actions: Vec<&str> = events.iter().map(|e| e["action"].as_str().unwrap()).collect();
    assert_eq!(actions, ["spec.put", "spec.delete"]);
    assert!(events.iter().all(|e| e["actor"] == "alice" && e["origin"].as_str().unwrap().starts_with("cli@")));
    assert_ne!(events[0]["request_id"], events[1]["request_id"], "each command is its own request");
    assert_eq!(events[1]["before"], events[0]["after"], "the delete names the content it removed");
    assert_eq!(events[1]["prev_hash"].as_str().unwrap().len(), 64);

    // Export: JSON lines, one per event, all of them.
    let export = p.ok(&["audit", "export"]);
    let lines: Vec<Value> = export.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 21, "19 specs recorded, one deleted, one delete refused");
    assert_eq!(lines.iter().map(|e| e["seq"].as_i64().unwrap()).collect::<Vec<_>>(), (1..=21).collect::<Vec<_>>());
    assert!(p.ok(&["audit", "verify"]).contains("audit log intact: 21 events"));

    // Someone with the database file edits an event behind the triggers' back.
    let path = p.state.strip_prefix("sqlite://").unwrap().to_string();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        use sqlx::Connection;
        sqlx::any::install_default_drivers();
        let mut c = sqlx::AnyConnection::connect(&format!("sqlite://{path}")).await.unwrap();
        for sql in ["DROP TRIGGER audit_events_no_update", "UPDATE audit_events SET actor = 'mallory' WHERE seq = 5"] {
            sqlx::query(sql).execute(&mut c).await.unwrap();
        }
        c.close().await.unwrap();
    });
    let out = p.run(&["audit", "verify"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("audit log broken at event 5") && err.contains("edited") && err.contains("4 events before"),
        "{err}"
    );
}

/// What a database administrator with the SQLite file (and not paved's host)
/// can do: drop the triggers, rewrite the events with `change`, renumber
/// them and re-hash the whole chain so that it verifies on its own.
fn rewrite_history(p: &Paved, change: impl FnOnce(&mut Vec<paved_store::audit::StoredEvent>)) {
    use paved_store::audit::{GENESIS, StoredEvent};
    use sqlx::{Connection, Row};
    let path = p.state.strip_prefix("sqlite://").unwrap().to_string();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        sqlx::any::install_default_drivers();
        let mut c = sqlx::AnyConnection::connect(&format!("sqlite://{path}")).await.unwrap();
        let rows = sqlx::query("SELECT * FROM audit_events ORDER BY seq").fetch_all(&mut c).await.unwrap();
        let mut events: Vec<StoredEvent> = rows
            .iter()
            .map(|r| StoredEvent {
                seq: r.get("seq"),
                at: r.get("at"),
                actor: r.get("actor"),
                action: r.get("action"),
                target: r.get("target"),
                outcome: r.get("outcome"),
                request_id: r.get("request_id"),
                origin: r.get("origin"),
                before_digest: r.get("before_digest"),
                after_digest: r.get("after_digest"),
                details: r.get("details"),
                prev_hash: r.get("prev_hash"),
                hash: r.get("hash"),
            })
            .collect();
        change(&mut events);
        for sql in [
            "DROP TRIGGER IF EXISTS audit_events_no_update",
            "DROP TRIGGER IF EXISTS audit_events_no_delete",
            "DELETE FROM audit_events",
        ] {
            sqlx::query(sql).execute(&mut c).await.unwrap();
        }
        let mut prev = GENESIS.to_string();
        for (i, e) in events.iter_mut().enumerate() {
            e.seq = i as i64 + 1;
            e.prev_hash = prev.clone();
            e.hash = e.expected_hash(&prev);
            prev = e.hash.clone();
        }
        paved_store::testing::insert_stored_events(&mut c, &events).await.unwrap();
        c.close().await.unwrap();
    });
}

/// `paved audit verify` must fail naming `needle`.
fn assert_tampered(p: &Paved, needle: &str) {
    let out = p.run(&["audit", "verify"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "verify passed a rewritten log: {}", String::from_utf8_lossy(&out.stdout));
    assert!(err.contains("audit log tampered with") && err.contains(needle), "{err}");
}

#[test]
fn a_rewritten_and_rehashed_audit_log_is_caught_by_paveds_signed_checkpoints() {
    let p = Paved::new();
    p.ok(&["apply", "-f", &examples()]);
    let signed = p.ok(&["audit", "checkpoint"]);
    assert!(signed.contains("signed checkpoint of event 19"), "{signed}");
    assert!(p.ok(&["audit", "checkpoint"]).contains("nothing to sign"));
    p.ok(&["delete", "environment", "eu-dev"]);
    let verified = p.ok(&["audit", "verify"]);
    assert!(verified.contains("audit log intact: 21 events") && verified.contains("covers events 1..19"), "{verified}");

    // The re-hashed chain verifies on its own; the signed head of event 15 does not fit it.
    rewrite_history(&p, |events| events[2].actor = "mallory".into());
    let out = p.run(&["-o", "json", "audit", "verify"]);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v["first_break"].is_null(), "the chain itself was re-hashed: {v}");
    assert_tampered(&p, "rewritten at or before event 19");

    // Removing the checkpoint too leaves paved's anchor file, outside the database.
    rewrite_history(&p, |events| events.retain(|e| e.action != "audit.checkpoint"));
    assert_tampered(&p, "the anchor file on this host");

    // A forged checkpoint (a key paved's KEK does not open) proves nothing.
    let anchor = p._dir.path().join("audit-anchor.json");
    let genuine: Value = serde_json::from_slice(&std::fs::read(&anchor).unwrap()).unwrap();
    rewrite_history(&p, |events| {
        let mut forged = events.last().unwrap().clone();
        forged.action = "audit.checkpoint".into();
        let sig = genuine["signature"].as_str().unwrap();
        let (head, _) = sig.rsplit_once('.').unwrap();
        forged.details = serde_json::json!({"seq": 1, "head": "00", "signature": format!("{head}.AAAA")}).to_string();
        events.push(forged);
    });
    std::fs::remove_file(&anchor).unwrap();
    assert_tampered(&p, "not signed by paved");
}

#[test]
fn removing_the_newest_audit_events_is_caught_by_the_anchor_file() {
    let p = Paved::new();
    p.ok(&["apply", "-f", &examples()]);
    p.ok(&["audit", "checkpoint"]);
    rewrite_history(&p, |events| events.truncate(10));
    assert_tampered(&p, "events were removed: paved signed event 19");
}
