//! `paved export terraform`: the AWS graph paved plans, as Terraform JSON,
//! scanned by checkov (run offline) for the security baseline paved
//! promises from the first second: flow logs, encryption at rest, private
//! databases, no exposure beyond the public load balancer, TLS, logging.
//!
//! Needs checkov (`PAVED_TEST_CHECKOV`; scripts/test installs it in a
//! virtualenv of its own).

mod support;

use serde_json::Value;
use std::collections::BTreeSet;
use std::process::Command;
use support::Platform;

/// The baseline, as checkov names it. Every one must run on every example
/// environment and pass.
const BASELINE: [(&str, &str); 22] = [
    ("CKV2_AWS_11", "VPC flow logs"),
    ("CKV_AWS_7", "KMS key rotation"),
    ("CKV2_AWS_64", "KMS key policy"),
    ("CKV_AWS_158", "flow-log group encrypted with KMS"),
    ("CKV_AWS_16", "RDS encrypted at rest"),
    ("CKV_AWS_17", "RDS not publicly accessible"),
    ("CKV_AWS_133", "RDS backups"),
    ("CKV_AWS_161", "RDS IAM authentication"),
    ("CKV_AWS_129", "RDS logs exported"),
    ("CKV_AWS_145", "S3 encrypted with KMS"),
    ("CKV_AWS_53", "S3 blocks public ACLs"),
    ("CKV_AWS_54", "S3 blocks public policies"),
    ("CKV_AWS_55", "S3 ignores public ACLs"),
    ("CKV_AWS_56", "S3 restricts public buckets"),
    ("CKV_AWS_27", "SQS encrypted"),
    ("CKV_AWS_24", "no SSH from anywhere"),
    ("CKV_AWS_25", "no RDP from anywhere"),
    ("CKV2_AWS_12", "default security group admits nothing"),
    ("CKV_AWS_39", "EKS endpoint not public"),
    ("CKV_AWS_58", "EKS secrets encrypted"),
    ("CKV_AWS_37", "EKS control-plane logging"),
    ("CKV_AWS_103", "load balancer TLS 1.2 or better"),
];

fn checkov() -> String {
    let path = std::env::var("PAVED_TEST_CHECKOV").unwrap_or_else(|_| {
        let home = std::env::var("HOME").unwrap_or_default();
        format!("{home}/.cache/paved/checkov-venv/bin/checkov")
    });
    assert!(
        std::path::Path::new(&path).exists(),
        "{path} missing: scripts/test installs checkov in its own virtualenv"
    );
    path
}

#[test]
fn the_terraform_export_of_every_aws_environment_passes_the_baseline_checks() {
    let p = Platform::new();
    p.ok(&["apply", "-f", "examples"]);
    // A service with its own bucket and queue beside the examples.
    p.ok_with_input(
        &["apply", "-f", "-"],
        "apiVersion: score.dev/v1b1\nmetadata:\n  name: reports\n  annotations:\n    paved.dev/owner: payments\n\
         service:\n  ports:\n    http:\n      port: 8081\ncontainers:\n  main:\n    image: reports:1\n    variables:\n      \
         BUCKET: ${resources.exports.name}\n      QUEUE: ${resources.jobs.url}\nresources:\n  exports:\n    type: s3\n  jobs:\n    type: queue\n",
    );
    let checks: Vec<&str> = BASELINE.iter().map(|(id, _)| *id).collect();
    for env in ["eu-dev", "eu-staging", "eu-production"] {
        let dir = p.data.path().join("export").join(env);
        std::fs::create_dir_all(&dir).unwrap();
        let doc = p.ok(&["export", "terraform", "-e", env]);
        let parsed: Value = serde_json::from_str(&doc).unwrap();
        assert!(parsed["resource"]["aws_flow_log"].is_object(), "{env}: {doc}");
        // The reports pods' role trusts the cluster's OIDC provider for its ServiceAccount only.
        let role = &parsed["resource"]["aws_iam_role"]["reports_svc"];
        let role = if role.is_null() {
            parsed["resource"]["aws_iam_role"]
                .as_object()
                .unwrap()
                .values()
                .find(|r| r["name"].as_str().is_some_and(|n| n.ends_with("-svc-reports")))
                .unwrap_or_else(|| panic!("{env}: no role for reports: {doc}"))
        } else {
            role
        };
        let trust = role["assume_role_policy"].as_str().unwrap();
        assert!(
            trust.contains("aws_iam_openid_connect_provider.")
                && trust.contains(&format!(":sub\":\"system:serviceaccount:{env}:reports\"")),
            "{env}: {trust}"
        );
        assert!(parsed["resource"]["aws_iam_openid_connect_provider"].is_object(), "{env}: {doc}");
        // Its secret is exported, never its values.
        let secrets = parsed["resource"]["aws_secretsmanager_secret"].as_object().unwrap();
        assert!(secrets.values().all(|s| s.get("secret_string").is_none()));
        assert!(parsed["resource"]["aws_secretsmanager_secret_version"].is_null());
        std::fs::write(dir.join("main.tf.json"), &doc).unwrap();
        let out = Command::new(checkov())
            .args(["--skip-download", "-f"])
            .arg(dir.join("main.tf.json"))
            .args(["-c", &checks.join(","), "-o", "json"])
            .env("CKV_SKIP_PACKAGE_UPDATE_CHECK", "true")
            .env("BC_SKIP_MAPPING", "TRUE")
            .output()
            .unwrap();
        let report: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "checkov said no JSON ({e}):\n{}\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )
        });
        let report = if report.is_array() { report[0].clone() } else { report };
        let failed: Vec<String> = report["results"]["failed_checks"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|c| format!("{} {} ({})", c["check_id"], c["resource"], c["check_name"]))
            .collect();
        assert!(failed.is_empty(), "{env}: baseline checks failed:\n{}", failed.join("\n"));
        // Nothing passes by not running: every baseline check ran on this environment.
        let ran: BTreeSet<&str> = report["results"]["passed_checks"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| c["check_id"].as_str())
            .collect();
        let missing: Vec<&str> = checks.iter().copied().filter(|c| !ran.contains(c)).collect();
        assert!(missing.is_empty(), "{env}: checks that did not run: {missing:?}");
    }
}
