//! `paved render` / `paved export kubernetes`: the manifests of every
//! example cluster environment pass `kubernetes-validate --strict` for the
//! Kubernetes versions paved writes for, and checkov's Kubernetes checks
//! with zero failures on the baseline below; no secret value reaches a
//! manifest; rendering is repeatable and keeps the folder in step.
//!
//! Needs kubernetes-validate (`PAVED_TEST_KUBERNETES_VALIDATE`) and checkov
//! (`PAVED_TEST_CHECKOV`); scripts/test installs both. Objects of other
//! projects' CRDs (Argo CD `Application`, External Secrets `SecretStore` /
//! `ExternalSecret`, AWS Load Balancer Controller `TargetGroupBinding`) have
//! no schema here (kubernetes-validate ships Kubernetes' own; the projects'
//! CRDs cannot be downloaded): their fields are asserted in paved-k8s's unit
//! tests, and kubernetes-validate still checks their YAML and metadata.

mod support;

use serde_json::Value;
use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use support::Platform;

/// Kubernetes checks every rendered workload must pass, as checkov names them.
const BASELINE: [(&str, &str); 22] = [
    ("CKV_K8S_8", "liveness probe"),
    ("CKV_K8S_9", "readiness probe"),
    ("CKV_K8S_10", "CPU requests"),
    ("CKV_K8S_11", "CPU limits"),
    ("CKV_K8S_12", "memory requests"),
    ("CKV_K8S_13", "memory limits"),
    ("CKV_K8S_14", "image tag fixed"),
    ("CKV_K8S_15", "image pull policy Always"),
    ("CKV_K8S_16", "not privileged"),
    ("CKV_K8S_17", "no host PID"),
    ("CKV_K8S_18", "no host IPC"),
    ("CKV_K8S_19", "no host network"),
    ("CKV_K8S_20", "no privilege escalation"),
    ("CKV_K8S_21", "not the default namespace"),
    ("CKV_K8S_22", "read-only root filesystem"),
    ("CKV_K8S_23", "no root containers"),
    ("CKV_K8S_28", "no NET_RAW"),
    ("CKV_K8S_31", "seccomp RuntimeDefault"),
    ("CKV_K8S_37", "capabilities dropped"),
    ("CKV_K8S_38", "service account token not mounted"),
    ("CKV_K8S_40", "high UID"),
    ("CKV_K8S_43", "image by digest"),
];

use support::DIGEST;

fn tool(var: &str, fallback: &str, what: &str) -> String {
    let path = std::env::var(var).unwrap_or_else(|_| {
        let home = std::env::var("HOME").unwrap_or_default();
        format!("{home}/.cache/paved/{fallback}")
    });
    assert!(Path::new(&path).exists(), "{path} missing: scripts/test installs {what}");
    path
}

#[test]
fn every_example_cluster_environment_renders_manifests_that_validate_and_pass_the_baseline() {
    let p = Platform::new();
    support::pinned_examples(&p, None);
    let validate = tool("PAVED_TEST_KUBERNETES_VALIDATE", "venv/bin/kubernetes-validate", "kubernetes-validate");
    let checkov = tool("PAVED_TEST_CHECKOV", "checkov-venv/bin/checkov", "checkov in its own virtualenv");
    let checks: Vec<&str> = BASELINE.iter().map(|(id, _)| *id).collect();
    for env in ["eu-dev", "eu-staging", "eu-production"] {
        let dir = p.data.path().join("gitops");
        let out = p.ok(&["render", "-e", env, "-d", dir.to_str().unwrap(), "-o", "json"]);
        let report: Value = serde_json::from_str(&out).unwrap();
        assert!(report["pending"].as_object().unwrap().is_empty(), "{env}: {out}");
        let files: Vec<String> =
            report["files"].as_array().unwrap().iter().map(|f| f["path"].as_str().unwrap().to_string()).collect();
        for want in [format!("apps/{env}.yaml"), format!("envs/{env}/namespace.yaml"), format!("envs/{env}/api.yaml")] {
            assert!(files.contains(&want), "{env}: {files:?}");
        }
        for version in paved_k8s_versions() {
            for f in &files {
                let out = Command::new(&validate)
                    .args(["--strict", "--quiet", "-k", &version])
                    .arg(dir.join(f))
                    .output()
                    .unwrap();
                assert!(
                    out.status.success(),
                    "{env}: {f} is not valid Kubernetes {version}:\n{}{}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                );
            }
        }
        let out = Command::new(&checkov)
            .args(["--skip-download", "--framework", "kubernetes", "-d"])
            .arg(dir.join("envs").join(env))
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
        let passed: Vec<&Value> = report["results"]["passed_checks"].as_array().into_iter().flatten().collect();
        let ran: BTreeSet<&str> = passed.iter().filter_map(|c| c["check_id"].as_str()).collect();
        let missing: Vec<&str> = checks.iter().copied().filter(|c| !ran.contains(c)).collect();
        assert!(missing.is_empty(), "{env}: checks that did not run: {missing:?}");
        // Every Deployment was scanned, not just one file.
        let scanned: BTreeSet<&str> =
            passed.iter().filter(|c| c["check_id"] == "CKV_K8S_43").filter_map(|c| c["resource"].as_str()).collect();
        assert_eq!(scanned.len(), 3, "{env}: {scanned:?}");
    }
}

/// The versions paved writes for, as `paved render --help`-independent
/// knowledge: the EKS version of the AWS translation and the newest.
fn paved_k8s_versions() -> Vec<String> {
    paved_k8s::KUBERNETES_VERSIONS.iter().map(|v| v.to_string()).collect()
}

#[test]
fn no_secret_value_reaches_a_manifest() {
    let p = Platform::new();
    support::pinned_examples(&p, None);
    let canary = "canary-3f9a1c77e0d2";
    p.ok_with_input(&["secret", "set", "STRIPE_KEY", "-e", "eu-dev", "--service", "api"], canary);
    let api = std::fs::read_to_string(support::repo_root().join("examples/services/api.score.yaml"))
        .unwrap()
        .replace(":1.4.2", &format!("@{DIGEST}"))
        .replace("      PORT: \"8080\"", "      PORT: \"8080\"\n      STRIPE_KEY: ${secrets.STRIPE_KEY}");
    p.ok_with_input(&["apply", "-f", "-"], &api);
    let stream = p.ok(&["export", "kubernetes", "-e", "eu-dev"]);
    assert!(!stream.contains(canary), "the secret's value is in the manifests");
    let docs: Vec<Value> = support::run_python(
        "import sys, yaml, json; print(json.dumps([d for d in yaml.safe_load_all(sys.stdin) if d]))",
        stream.as_bytes(),
    )
    .parse::<Value>()
    .map(|v| v.as_array().cloned().unwrap_or_default())
    .unwrap();
    let deployment = docs.iter().find(|d| d["kind"] == "Deployment" && d["metadata"]["name"] == "api").unwrap();
    let env = deployment["spec"]["template"]["spec"]["containers"][0]["env"].as_array().unwrap();
    let key = env.iter().find(|e| e["name"] == "STRIPE_KEY").unwrap();
    assert_eq!(key["valueFrom"]["secretKeyRef"]["name"], "api-env");
    let db = env.iter().find(|e| e["name"] == "DATABASE_URL").unwrap();
    assert!(db.get("value").is_none(), "the database URL (with its password) is written inline: {db}");
    let external = docs.iter().find(|d| d["kind"] == "ExternalSecret" && d["metadata"]["name"] == "api-env").unwrap();
    assert_eq!(external["spec"]["dataFrom"][0]["extract"]["key"], "paved/eu-dev/api");
    // One stream, the same objects as the files `paved render` writes.
    let dir = p.data.path().join("tree");
    p.ok(&["render", "-e", "eu-dev", "-d", dir.to_str().unwrap()]);
    let written: usize =
        walk(&dir).iter().map(|f| std::fs::read_to_string(f).unwrap().matches("\nkind: ").count()).sum();
    assert_eq!(written, docs.len());
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let path = e.unwrap().path();
        if path.is_dir() { out.extend(walk(&path)) } else { out.push(path) }
    }
    out.sort();
    out
}

#[test]
fn rendering_again_changes_nothing_and_a_removed_service_leaves_no_manifest() {
    let p = Platform::new();
    support::pinned_examples(&p, None);
    let dir = p.data.path().join("tree");
    let d = dir.to_str().unwrap();
    p.ok(&["render", "-e", "eu-staging", "-d", d]);
    let before: Vec<(std::path::PathBuf, String)> =
        walk(&dir).into_iter().map(|f| (f.clone(), std::fs::read_to_string(&f).unwrap())).collect();
    let again: Value = serde_json::from_str(&p.ok(&["render", "-e", "eu-staging", "-d", d, "-o", "json"])).unwrap();
    assert!(again["files"].as_array().unwrap().iter().all(|f| f["changed"] == false), "{again}");
    let after: Vec<(std::path::PathBuf, String)> =
        walk(&dir).into_iter().map(|f| (f.clone(), std::fs::read_to_string(&f).unwrap())).collect();
    assert_eq!(before, after);
    p.ok(&["delete", "service", "worker"]);
    let table = p.ok(&["render", "-e", "eu-staging", "-d", d]);
    assert!(table.contains("envs/eu-staging/worker.yaml") && table.contains("removed"), "{table}");
    assert!(!dir.join("envs/eu-staging/worker.yaml").exists());
    assert!(dir.join("envs/eu-staging/api.yaml").exists());
}

#[test]
fn what_cannot_be_rendered_is_named_and_nothing_is_written() {
    let p = Platform::new();
    p.ok(&["apply", "-f", "examples"]);
    let dir = p.data.path().join("tree");
    let d = dir.to_str().unwrap();
    // Tagged images: nothing to run until a digest is known.
    let out = p.command(&["render", "-e", "eu-dev", "-d", d]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success());
    assert!(stderr.contains("pending: api:") && stderr.contains("pinned by digest"), "{stderr}");
    assert!(!dir.join("envs/eu-dev/api.yaml").exists());
    // The local provider runs its services itself.
    let out = p.command(&["render", "-e", "dev", "-d", d]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("local provider"));
    // A Score feature a cluster cannot take: the service and field, and nothing written for it.
    let source = "apiVersion: score.dev/v1b1\nmetadata:\n  name: api\n  annotations:\n    paved.dev/owner: payments\n\
                  service:\n  ports:\n    http:\n      port: 80\n      targetPort: 8080\n\
                  containers:\n  api:\n    image: registry.example.com/payments/api@"
        .to_string()
        + DIGEST
        + "\n    args: [\"--db\", \"${resources.db.host}\"]\nresources:\n  db:\n    type: postgres\n";
    p.ok_with_input(&["apply", "-f", "-"], &source);
    let before = walk(&dir);
    let out = p.command(&["render", "-e", "eu-dev", "-d", d]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("service `api`: containers.api.args") && stderr.contains("$(VARIABLE)"), "{stderr}");
    assert_eq!(walk(&dir), before, "a refused render wrote files");
    // Nor can the environment be planned: an apply would otherwise drop the
    // secret-store entries its running services read.
    let out = p.command(&["plan", "-e", "eu-dev"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("containers.api.args"), "{stderr}");
}

#[test]
fn the_argo_cd_notifications_configuration_parses_and_renders_the_body_paved_reads() {
    let p = Platform::new();
    support::pinned_examples(&p, None);
    let out = p.command(&["export", "argocd-notifications", "-e", "eu-dev"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--paved-url"));
    let cm = p.ok(&["export", "argocd-notifications", "-e", "eu-dev", "--paved-url", "https://paved.example.com/"]);
    // Every value is YAML Argo CD reads; each template's body, with Argo CD's placeholders filled, is the JSON paved takes.
    let checked = support::run_python(
        r#"
import sys, yaml, json, re
cm = yaml.safe_load(sys.stdin)
data = cm["data"]
svc = yaml.safe_load(data["service.webhook.paved-eu-dev"])
assert svc["url"] == "https://paved.example.com/api/v1/webhooks/argocd", svc
assert {"name": "X-Paved-Token", "value": "$paved-argocd-eu-dev"} in svc["headers"], svc
out = []
for trigger in ["on-deployed", "on-health-degraded", "on-sync-failed"]:
    t = yaml.safe_load(data["trigger.paved-eu-dev-" + trigger])[0]
    assert t["send"] == ["paved-eu-dev-" + trigger] and t["when"] and t["oncePer"], t
    body = yaml.safe_load(data["template.paved-eu-dev-" + trigger])["webhook"]["paved-eu-dev"]["body"]
    notice = json.loads(re.sub(r"\{\{[^}]*\}\}", "abc123", body))
    assert sorted(notice) == ["environment", "health", "revision", "sync", "trigger"], notice
    assert notice["environment"] == "eu-dev" and notice["trigger"] == trigger
    out.append(trigger)
print(",".join(out))
"#,
        cm.as_bytes(),
    );
    assert_eq!(checked.trim(), "on-deployed,on-health-degraded,on-sync-failed");
    // The Application subscribes to them.
    let stream = p.ok(&["export", "kubernetes", "-e", "eu-dev"]);
    let subscribed = support::run_python(
        r#"
import sys, yaml
app = [d for d in yaml.safe_load_all(sys.stdin) if d and d["kind"] == "Application"][0]
subs = yaml.safe_load(app["metadata"]["annotations"]["notifications.argoproj.io/subscriptions"])
print(",".join(subs[0]["trigger"]), subs[0]["destinations"][0]["service"])
"#,
        stream.as_bytes(),
    );
    assert_eq!(
        subscribed.trim(),
        "paved-eu-dev-on-deployed,paved-eu-dev-on-health-degraded,paved-eu-dev-on-sync-failed paved-eu-dev"
    );
}
