//! Build once, promote by digest: artifacts, deployments with their health
//! gate and strategies, rollback, promotion rules and `paved status`, on the
//! real binary and the local provider's processes.

mod support;

use serde_json::Value;
use sha2::{Digest, Sha256};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;
use support::Platform;

/// A bundle of the demo api: its program and a `RELEASE` file, so each
/// release has content of its own; `args` go to the program (`cmd`).
fn bundle(p: &Platform, name: &str, args: &[&str]) -> PathBuf {
    let dir = p.data.path().join("builds").join(name);
    std::fs::create_dir_all(dir.join("bin")).unwrap();
    std::fs::copy(env!("CARGO_BIN_EXE_paved-demo"), dir.join("bin/api")).unwrap();
    std::fs::write(dir.join("RELEASE"), name).unwrap();
    let manifest = serde_json::json!({"entrypoint": ["/bin/api"], "cmd": args});
    std::fs::write(dir.join("bundle.json"), manifest.to_string()).unwrap();
    dir
}

fn push(p: &Platform, dir: &Path, commit: &str, tags: &[&str]) -> String {
    let mut args = vec!["artifact", "push", dir.to_str().unwrap(), "--service", "api", "--commit", commit];
    for t in tags {
        args.extend(["--tag", t]);
    }
    let digest = p.ok(&args).trim().to_string();
    assert!(digest.starts_with("sha256:") && digest.len() == 71, "{digest}");
    digest
}

/// Runs paved; `(success, stdout, stderr)`.
fn run(p: &Platform, args: &[&str]) -> (bool, String, String) {
    let out = p.command(args).output().unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into())
}

fn address(p: &Platform, env: &str) -> String {
    let file = p.data.path().join("local/envs").join(env).join("network.json");
    let v: Value = serde_json::from_slice(&std::fs::read(file).unwrap()).unwrap();
    v["address"].as_str().unwrap().to_string()
}

fn get(addr: &str, host: &str, path: &str) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n")?;
    let mut resp = String::new();
    s.read_to_string(&mut resp)?;
    let status = resp.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    Ok((status, resp.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default()))
}

/// What api runs in `env`, asked at its stable address: the digest it was
/// started from, and the SHA-256 of the program file its process executes.
fn running(p: &Platform, env: &str) -> (String, String) {
    let addr = format!("{}:8080", address(p, env));
    let (status, body) = get(&addr, "api", "/version").unwrap_or_else(|e| panic!("api in {env} at {addr}: {e}"));
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    let pid = host_pid(env, v["digest"].as_str().unwrap(), v["pid"].as_u64().unwrap());
    let exe = std::fs::read(format!("/proc/{pid}/exe")).unwrap();
    (v["digest"].as_str().unwrap().to_string(), hex::encode(Sha256::digest(exe)))
}

/// The host's pid of api's process in `env`, which reports its pid inside
/// its sandbox (its own PID namespace): the one running `digest` whose
/// `NSpid` ends with it.
fn host_pid(env: &str, digest: &str, inner: u64) -> u64 {
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u64>() else { continue };
        let status = std::fs::read_to_string(e.path().join("status")).unwrap_or_default();
        let ns: Vec<u64> = status
            .lines()
            .find_map(|l| l.strip_prefix("NSpid:"))
            .map(|l| l.split_whitespace().filter_map(|n| n.parse().ok()).collect())
            .unwrap_or_default();
        let environ = std::fs::read(e.path().join("environ")).unwrap_or_default();
        let has = |kv: &str| environ.split(|b| *b == 0).any(|v| v == kv.as_bytes());
        if ns.len() > 1
            && ns.last() == Some(&inner)
            && has(&format!("PAVED_ENVIRONMENT={env}"))
            && has("PAVED_SERVICE=api")
            && has(&format!("PAVED_IMAGE_DIGEST={digest}"))
        {
            return pid;
        }
    }
    panic!("no process of api in {env} has pid {inner} in its namespace")
}

fn file_sha(path: &Path) -> String {
    hex::encode(Sha256::digest(std::fs::read(path).unwrap()))
}

/// Requests api's stable address and web's route over and over until stopped;
/// counts requests and failures (anything but 200).
struct Prober {
    stop: Arc<AtomicBool>,
    requests: Arc<AtomicU64>,
    failures: Arc<std::sync::Mutex<Vec<String>>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Prober {
    fn start(targets: Vec<(String, String, String)>) -> Prober {
        let stop = Arc::new(AtomicBool::new(false));
        let requests = Arc::new(AtomicU64::new(0));
        let failures = Arc::new(std::sync::Mutex::new(Vec::new()));
        let threads = targets
            .into_iter()
            .map(|(addr, host, path)| {
                let (stop, requests, failures) = (stop.clone(), requests.clone(), failures.clone());
                std::thread::spawn(move || {
                    while !stop.load(Ordering::SeqCst) {
                        requests.fetch_add(1, Ordering::SeqCst);
                        match get(&addr, &host, &path) {
                            Ok((200, _)) => {}
                            other => failures.lock().unwrap().push(format!("{host}{path}: {other:?}")),
                        }
                        std::thread::sleep(Duration::from_millis(20));
                    }
                })
            })
            .collect();
        Prober { stop, requests, failures, threads }
    }

    /// `(requests, failures)`.
    fn finish(self) -> (u64, Vec<String>) {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.threads {
            t.join().unwrap();
        }
        let failures = self.failures.lock().unwrap().clone();
        (self.requests.load(Ordering::SeqCst), failures)
    }
}

fn web_route(p: &Platform, env: &str) -> (String, String, String) {
    let file = p.data.path().join("local/envs").join(env).join("proxy/proxy.json");
    let port: Value = serde_json::from_slice(&std::fs::read(file).unwrap()).unwrap();
    (format!("127.0.0.1:{}", port["port"]), format!("web.{env}.localhost"), "/".to_string())
}

fn history(p: &Platform, env: &str) -> Vec<Value> {
    let v: Value = serde_json::from_str(&p.ok(&["history", "api", "-e", env, "-o", "json"])).unwrap();
    v.as_array().unwrap().clone()
}

fn statuses(p: &Platform, env: &str) -> Vec<String> {
    history(p, env).iter().map(|d| d["status"].as_str().unwrap().to_string()).collect()
}

#[test]
fn one_artifact_is_promoted_by_digest_rolled_out_safely_rolled_back_and_shown_where_it_runs() {
    let p = Platform::new();
    p.ok(&["up"]);
    p.ok(&["apply", "-e", "staging"]);
    p.ok(&["apply", "-e", "production"]);

    // Artifacts: content-addressed, pushing twice is a no-op, a tag never moves.
    let (v1, v2) = (bundle(&p, "v1", &[]), bundle(&p, "v2", &[]));
    let broken = bundle(&p, "broken", &["--never-ready"]);
    let d1 = push(&p, &v1, "1111111aaaa", &["1.5.0"]);
    assert_eq!(push(&p, &v1, "1111111aaaa", &["1.5.0"]), d1, "same content, same digest");
    let (ok, _, err) = run(&p, &["artifact", "push", v2.to_str().unwrap(), "--service", "api", "--tag", "1.5.0"]);
    assert!(!ok && err.contains("never reused"), "{err}");
    let d2 = push(&p, &v2, "2222222bbbb", &["1.6.0"]);
    let bad = push(&p, &broken, "3333333cccc", &[]);
    let listed: Value = serde_json::from_str(&p.ok(&["artifact", "list", "--service", "api", "-o", "json"])).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 3, "{listed}");

    // Production accepts only digests already healthy in the stage before: no shortcut.
    let (ok, _, err) = run(&p, &["deploy", "api", "-e", "production", "--artifact", &d1]);
    assert!(!ok && err.contains("accepts only artifacts already healthy in a staging environment"), "{err}");
    // Nor promotion from where it is not healthy.
    let (ok, _, err) = run(&p, &["promote", "api", "--from", "staging", "--to", "production"]);
    assert!(!ok && err.contains("is not healthy in `staging`"), "{err}");
    let audit: Value = serde_json::from_str(&p.ok(&["audit", "list", "-o", "json"])).unwrap();
    let denied: Vec<&str> = audit
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["outcome"] == "denied")
        .filter_map(|e| e["action"].as_str())
        .collect();
    assert!(denied.contains(&"deployment.create") && denied.contains(&"deployment.promote"), "{denied:?}");

    // dev → staging → production, the same bytes everywhere.
    let out = p.ok(&["deploy", "api", "-e", "dev", "--artifact", &d1]);
    assert!(out.contains("is healthy"), "{out}");
    // A service's own order cannot loosen its blueprint's: leaving
    // production out, or naming it right after dev, still needs the digest
    // healthy in staging; putting the stages in another order is refused.
    let api = std::fs::read_to_string(support::repo_root().join("examples/services/api.score.yaml")).unwrap();
    for (stages, why) in [
        ("dev", "healthy in a staging environment"),
        ("dev,production", "healthy in a staging environment"),
        ("production,staging", "puts `production` before `staging`"),
    ] {
        let annotated = api.replace(
            "    paved.dev/owner: payments\n",
            &format!("    paved.dev/owner: payments\n    paved.dev/stages: {stages}\n"),
        );
        p.ok_with_input(&["apply", "-f", "-"], &annotated);
        let (ok, _, err) = run(&p, &["deploy", "api", "-e", "production", "--artifact", &d1]);
        assert!(!ok && err.contains(why), "{stages}: {err}");
    }
    p.ok_with_input(&["apply", "-f", "-"], &api);
    p.ok(&["promote", "api", "--from", "dev", "--to", "staging"]);
    p.ok(&["promote", "api", "--from", "staging", "--to", "production"]);
    let program = file_sha(&v1.join("bin/api"));
    for env in ["dev", "staging", "production"] {
        assert_eq!(running(&p, env), (d1.clone(), program.clone()), "{env} runs v1");
    }

    // `paved status` says what runs.
    let rows: Value = serde_json::from_str(&p.ok(&["status", "-o", "json"])).unwrap();
    for env in ["dev", "staging", "production"] {
        let row = rows.as_array().unwrap().iter().find(|r| r["service"] == "api" && r["environment"] == env).unwrap();
        assert_eq!(row["artifact"], d1.as_str(), "{row}");
        assert_eq!(row["health"], "healthy", "{row}");
        assert_eq!(row["commit"], "1111111aaaa", "{row}");
        assert_eq!(row["by"], "e2e", "{row}");
    }
    let table = p.ok(&["status"]);
    assert!(table.contains("SERVICE") && table.contains(&d1[7..19]) && table.contains("@1111111"), "{table}");

    // Blue-green: the old version serves until the new one has soaked; no request fails.
    let stable = format!("{}:8080", address(&p, "dev"));
    let probe = Prober::start(vec![
        (stable.clone(), "api".into(), "/healthz".into()),
        (stable.clone(), "api".into(), "/items".into()),
        web_route(&p, "dev"),
    ]);
    let out = p.ok(&["deploy", "api", "-e", "dev", "--artifact", &d2, "--strategy", "blue-green", "--soak", "2s"]);
    let (requests, failures) = probe.finish();
    assert!(out.contains("is healthy (blue-green rollout)"), "{out}");
    assert!(requests > 50, "only {requests} requests");
    assert!(failures.is_empty(), "{} of {requests} requests failed during blue-green: {failures:?}", failures.len());
    assert_eq!(running(&p, "dev"), (d2.clone(), file_sha(&v2.join("bin/api"))));

    // A release that never becomes ready: rolled back automatically, the old one serving throughout.
    let probe = Prober::start(vec![(stable.clone(), "api".into(), "/healthz".into())]);
    let (ok, out, _) =
        run(&p, &["deploy", "api", "-e", "dev", "--artifact", &bad, "--strategy", "rolling", "--ready-timeout", "8s"]);
    let (requests, failures) = probe.finish();
    assert!(!ok, "a broken release must fail the deploy: {out}");
    assert!(out.contains("rolled-back") && out.contains("did not become ready"), "{out}");
    assert!(
        failures.is_empty(),
        "{} of {requests} requests failed during a failed rolling deploy: {failures:?}",
        failures.len()
    );
    assert_eq!(running(&p, "dev").0, d2, "the previous version still runs");
    assert_eq!(statuses(&p, "dev"), ["superseded", "healthy", "rolled-back"]);

    // Recreate stops the old version first; the broken one is replaced by it again.
    let (ok, out, _) =
        run(&p, &["deploy", "api", "-e", "dev", "--artifact", &bad, "--strategy", "recreate", "--ready-timeout", "8s"]);
    assert!(!ok && out.contains("rolled-back"), "{out}");
    assert_eq!(running(&p, "dev").0, d2);

    // Rolling back on purpose: to the last healthy deployment before the current one.
    let out = p.ok(&["rollback", "api", "-e", "dev"]);
    assert!(out.contains("is healthy"), "{out}");
    assert_eq!(running(&p, "dev").0, d1);
    let h = history(&p, "dev");
    assert_eq!(h.len(), 5);
    assert_eq!(h[4]["artifact"], d1.as_str());
    // Nothing drifted: what runs is what was applied.
    p.ok(&["drift", "-e", "dev"]);

    // Exactly once: the same request id deploys once.
    let args = ["deploy", "api", "-e", "dev", "--artifact", &d2, "--request-id", "retry-me", "--soak", "1s"];
    p.ok(&args);
    let again = p.ok(&args);
    assert!(again.contains("already made"), "{again}");
    assert_eq!(history(&p, "dev").len(), 6);
    assert_eq!(running(&p, "dev").0, d2);

    // kill -9 in the middle of a rollout: the next apply finishes it and the deployment ends healthy.
    let mut killed = p.command(&["deploy", "api", "-e", "dev", "--artifact", &d1, "--soak", "4s"]).spawn().unwrap();
    std::thread::sleep(Duration::from_millis(2500));
    killed.kill().unwrap();
    killed.wait().unwrap();
    assert!(matches!(statuses(&p, "dev").last().map(String::as_str), Some("pending" | "rolling-out")));
    p.ok(&["apply", "-e", "dev"]);
    assert_eq!(statuses(&p, "dev").last().map(String::as_str), Some("healthy"));
    assert_eq!(running(&p, "dev").0, d1);
    p.ok(&["drift", "-e", "dev"]);

    // A freeze policy stops deploy, promote and rollback alike, each with its reason and audited;
    // nothing is recorded and dev keeps running what it ran.
    p.ok_with_input(&["apply", "-f", "-"], FREEZE);
    let before = history(&p, "dev").len();
    for (args, decision) in [
        (vec!["deploy", "api", "-e", "dev", "--artifact", d2.as_str()], "deploy"),
        (vec!["promote", "api", "--from", "staging", "--to", "dev"], "promote"),
        (vec!["rollback", "api", "-e", "dev"], "rollback"),
    ] {
        let (ok, _, err) = run(&p, &args);
        assert!(!ok, "{args:?} ran through a freeze");
        assert!(err.contains(&format!("{decision} of Service/api@dev denied by policy")), "{err}");
        assert!(err.contains(&format!("rule `deny_frozen`: {decision} to dev: frozen for the release")), "{err}");
    }
    let denied: Value =
        serde_json::from_str(&p.ok(&["audit", "list", "--action", "policy.deny", "-o", "json"])).unwrap();
    let decisions: Vec<&str> =
        denied.as_array().unwrap().iter().filter_map(|e| e["details"]["decision"].as_str()).collect();
    assert_eq!(decisions, ["deploy", "promote", "rollback"], "{denied}");
    assert_eq!(history(&p, "dev").len(), before, "a frozen environment recorded a deployment");
    assert_eq!(running(&p, "dev").0, d1);
}

const FREEZE: &str = r#"
apiVersion: paved.dev/v1alpha1
kind: Policy
metadata:
  name: release-freeze
spec:
  version: 1.0.0
  decisions: [deploy, promote, rollback]
  modules:
    main.rego: |
      package paved.release_freeze

      deny_frozen contains msg if {
          input.environment.name == "dev"
          msg := sprintf("%s to %s: frozen for the release", [input.decision, input.environment.name])
      }
"#;

#[test]
fn on_docker_blue_green_switches_containers_without_a_failed_request() {
    let docker = std::process::Command::new("docker").args(["version", "--format", "{{.Server.Version}}"]).output();
    assert!(
        docker.is_ok_and(|o| o.status.success()),
        "this test needs a running Docker Engine and the `docker` CLI (Debian package docker.io)"
    );
    let mut p = Platform::new();
    p.env.push(("PAVED_RUNTIME".into(), "docker".into()));
    p.ok(&["up"]);
    let v1 = bundle(&p, "v1", &[]);
    let d1 = push(&p, &v1, "1111111aaaa", &[]);
    let stable = format!("{}:8080", address(&p, "dev"));
    let digest = || {
        let (_, body) = get(&stable, "api", "/version").unwrap();
        serde_json::from_str::<Value>(&body).unwrap()["digest"].as_str().unwrap_or_default().to_string()
    };
    // Through api's stable address (the proxy). Calls between containers go by Docker's DNS name,
    // which answers with both slots while they overlap and may still name the old container for a
    // moment after it stopped (see ARCHITECTURE.md): those are not probed here.
    let probe = Prober::start(vec![
        (stable.clone(), "api".into(), "/healthz".into()),
        (stable.clone(), "api".into(), "/items".into()),
    ]);
    let out = p.ok(&["deploy", "api", "-e", "dev", "--artifact", &d1, "--strategy", "blue-green", "--soak", "2s"]);
    let (requests, failures) = probe.finish();
    assert!(out.contains("is healthy (blue-green rollout)"), "{out}");
    assert!(requests > 20 && failures.is_empty(), "{} of {requests} failed: {failures:?}", failures.len());
    let names = std::process::Command::new("docker").args(["ps", "--format", "{{.Names}}"]).output().unwrap();
    let names = String::from_utf8_lossy(&names.stdout).to_string();
    let api: Vec<&str> = names.lines().filter(|n| n.contains("-dev-api-")).collect();
    assert_eq!(api.len(), 1, "the old slot's container is gone: {api:?}");
    assert!(api[0].ends_with("-dev-api-green-api"), "{api:?}");
    // The docker runtime builds its image from the bundle; the digest it started from is the artifact's.
    let inspect = std::process::Command::new("docker")
        .args(["inspect", "-f", "{{range .Config.Env}}{{println .}}{{end}}", api[0]])
        .output()
        .unwrap();
    let env = String::from_utf8_lossy(&inspect.stdout).to_string();
    assert!(env.contains(&format!("PAVED_IMAGE_DIGEST={d1}")) || digest() == d1, "{env}");
    p.ok(&["drift", "-e", "dev"]);
}

#[test]
fn a_branch_mapped_to_production_is_refused_unless_a_policy_allows_it_and_then_still_gated() {
    // `paved.dev/branches: main=production` in a service's own spec would
    // deploy every push straight to production: refused, dev still follows main.
    // A platform team's policy may open it; the deployment then still needs
    // its digest healthy in the stage before, like a manual promote.
    let mut p = Platform::new();
    p.ok(&["apply", "-f", "examples/platform"]);
    p.ok(&["apply", "-f", "examples/environments/local.yaml"]);
    let api = std::fs::read_to_string(support::repo_root().join("examples/services/api.score.yaml")).unwrap().replace(
        "    paved.dev/owner: payments\n",
        "    paved.dev/owner: payments\n    paved.dev/branches: main=production,main=dev\n",
    );
    p.ok_with_input(&["apply", "-f", "-"], &api);
    let secret = p.data.path().join("webhook-secret");
    std::fs::write(&secret, "a-test-secret\n").unwrap();
    let secret = secret.to_str().unwrap();
    p.start(&["--github-webhook-secret-file", secret, "--reconcile-interval", "off", "--git-interval", "1s"]);
    let delivery = serde_json::json!({"ref": "refs/heads/main", "after": "4444444dddd4444444dddd4444444dddd4444444",
                                  "repository": {"full_name": "payments/api"}});
    let r = support::github_delivery(&p, "push", "d-push-1", &delivery, "a-test-secret");
    assert_eq!(r.status, 202, "{}", r.text());
    let result = r.json()["result"].as_str().unwrap_or_default().to_string();
    assert!(
        result.contains("a branch does not deploy to production `production` unless a policy allows it"),
        "{result}"
    );
    assert!(result.contains("api to dev"), "{result}");
    let audit: Value = serde_json::from_str(&p.ok(&["audit", "list", "-o", "json"])).unwrap();
    let denied =
        audit.as_array().unwrap().iter().find(|e| e["outcome"] == "denied" && e["target"] == "Service/api@production");
    assert!(denied.is_some_and(|e| e["actor"] == "paved-git"), "{audit}");

    // One delivery replayed 10 times at once is handled once: one accepted, nine duplicates, one audit event.
    let delivery = serde_json::json!({"ref": "refs/heads/main", "after": "5555555eeee5555555eeee5555555eeee5555555",
                                  "repository": {"full_name": "payments/api"}});
    let answers: Vec<(u16, String)> = std::thread::scope(|s| {
        let sends: Vec<_> = (0..10)
            .map(|_| {
                s.spawn(|| {
                    let r = support::github_delivery(&p, "push", "d-push-2", &delivery, "a-test-secret");
                    (r.status, r.json()["status"].as_str().unwrap_or_default().to_string())
                })
            })
            .collect();
        sends.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let accepted = answers.iter().filter(|a| *a == &(202, "accepted".to_string())).count();
    let duplicates = answers.iter().filter(|a| *a == &(200, "duplicate".to_string())).count();
    assert_eq!((accepted, duplicates), (1, 9), "{answers:?}");
    let audit: Value = serde_json::from_str(&p.ok(&["audit", "list", "-o", "json"])).unwrap();
    let handled = audit.as_array().unwrap().iter().filter(|e| e["target"] == "Webhook/github/d-push-2").count();
    assert_eq!(handled, 1, "{audit}");

    // The platform team allows payments' main branch into production.
    p.ok_with_input(&["apply", "-f", "-"], RELEASE_FROM_MAIN);
    let commit = "6666666ffff6666666ffff6666666ffff6666666";
    let delivery =
        serde_json::json!({"ref": "refs/heads/main", "after": commit, "repository": {"full_name": "payments/api"}});
    let r = support::github_delivery(&p, "push", "d-push-3", &delivery, "a-test-secret");
    let result = r.json()["result"].as_str().unwrap_or_default().to_string();
    assert!(
        result.contains("api to production, allowed by policy `release-from-main` (1.0.0) rule `allow_payments_main`"),
        "{result}"
    );
    let audit: Value = serde_json::from_str(&p.ok(&["audit", "list", "-o", "json"])).unwrap();
    let allowed = audit.as_array().unwrap().iter().find(|e| e["action"] == "policy.allow");
    assert!(allowed.is_some_and(|e| e["target"] == "Service/api@production" && e["actor"] == "paved-git"), "{audit}");
    // Its artifact arrives; never healthy in staging, it is refused by the same check as `paved promote`.
    let built = push(&p, &bundle(&p, "v6", &[]), commit, &[]);
    let refusal = support::wait_for("the branch's production deployment to be decided", 60, || {
        let audit: Value = serde_json::from_str(&p.ok(&["audit", "list", "-o", "json"])).unwrap();
        audit
            .as_array()
            .unwrap()
            .iter()
            .find(|e| {
                e["outcome"] == "denied"
                    && e["target"] == "Service/api@production"
                    && e["details"]["artifact"] == built.as_str()
            })
            .cloned()
    });
    let reason = refusal["details"]["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("production accepts only artifacts already healthy in a staging environment"), "{reason}");
    let history: Value = serde_json::from_str(&p.ok(&["history", "api", "-e", "production", "-o", "json"])).unwrap();
    assert_eq!(history, serde_json::json!([]), "nothing was deployed to production");
    // Another repository's push is not covered by the grant.
    let delivery = serde_json::json!({"ref": "refs/heads/main", "after": commit, "repository": {"full_name": "payments/api-fork"}});
    let r = support::github_delivery(&p, "push", "d-push-4", &delivery, "a-test-secret");
    assert!(!r.json()["result"].as_str().unwrap_or_default().contains("allowed by"), "{}", r.text());

    // A preview that would read a secret of the environment it is made from is refused by policy:
    // nothing recorded, the reason in the answer and the audit log.
    p.ok_with_input(&["secret", "set", "SHARED_TOKEN", "-e", "dev"], "dev-only-value");
    p.ok_with_input(&["apply", "-f", "-"], PREVIEWS_READ_NO_SECRETS);
    let opened = serde_json::json!({"action": "opened", "number": 7, "repository": {"full_name": "payments/api"},
        "pull_request": {"number": 7, "head": {"sha": "7777777aaaa7777777aaaa7777777aaaa7777777"}, "user": {"login": "dev1"}}});
    let r = support::github_delivery(&p, "pull_request", "d-pr-7", &opened, "a-test-secret");
    let answer = r.json();
    assert_eq!((r.status, answer["code"].as_str()), (403, Some("policy-denied")), "{answer}");
    assert!(answer["message"].as_str().unwrap().starts_with("preview of Environment/pr-7-api denied by policy"));
    let reasons = answer["details"].as_array().unwrap();
    assert!(
        reasons.iter().any(|d| d["path"] == "previews-read-no-secrets/deny_shared_secrets"
            && d["message"] == "the preview would read SHARED_TOKEN of dev"),
        "{answer}"
    );
    let out = p.command(&["get", "environment", "pr-7-api"]).output().unwrap();
    assert!(!out.status.success(), "the refused preview was recorded");
    let denied: Value =
        serde_json::from_str(&p.ok(&["audit", "list", "--action", "policy.deny", "-o", "json"])).unwrap();
    assert!(denied.as_array().unwrap().iter().any(|e| e["details"]["decision"] == "preview"), "{denied}");
}

const PREVIEWS_READ_NO_SECRETS: &str = r#"
apiVersion: paved.dev/v1alpha1
kind: Policy
metadata:
  name: previews-read-no-secrets
spec:
  version: 1.0.0
  decisions: [preview]
  modules:
    main.rego: |
      package paved.previews

      deny_shared_secrets contains msg if {
          some s in input.preview.sharedSecrets
          msg := sprintf("the preview would read %s of %s", [s, input.preview.of])
      }
"#;

const RELEASE_FROM_MAIN: &str = r#"
apiVersion: paved.dev/v1alpha1
kind: Policy
metadata:
  name: release-from-main
spec:
  version: 1.0.0
  decisions: [branch-deploy]
  modules:
    main.rego: |
      package paved.release_from_main

      allow_payments_main contains msg if {
          input.deployment.branch == "main"
          input.deployment.repository == "payments/api"
          msg := "payments releases main to production"
      }
"#;
