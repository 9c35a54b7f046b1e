//! Delivery through Git against a real Git server (`git daemon` on
//! 127.0.0.1, pushed to over `git://`): `paved deliver` commits the rendered
//! tree once, names who and why, commits nothing when nothing changed, loses
//! no concurrent delivery, never writes a secret value into history, and
//! names what failed when the server cannot be reached. Deploys put their
//! artifact into the environment's registry first (ECR's API on moto, the
//! registry itself a real `docker-registry` on 127.0.0.1).

mod support;

use serde_json::Value;
use support::{CloudArtifacts, GitServer, Platform, ecr};

fn deliver_json(p: &Platform, env: &str) -> Value {
    serde_json::from_str(&p.ok(&["deliver", "-e", env, "-o", "json"])).unwrap()
}

#[test]
fn a_delivery_is_one_commit_of_the_rendered_tree_and_none_when_unchanged() {
    let git = GitServer::start();
    let p = Platform::new();
    support::pinned_examples(&p, Some(&git.url));
    let first = deliver_json(&p, "eu-dev");
    let commit = first["commit"].as_str().unwrap().to_string();
    assert_eq!(git.git(&["rev-parse", "main"]).trim(), commit);
    // The repository holds exactly what `paved render` writes, under the account's path.
    let dir = p.data.path().join("rendered");
    p.ok(&["render", "-e", "eu-dev", "-d", dir.to_str().unwrap()]);
    for rel in ["apps/eu-dev.yaml", "envs/eu-dev/namespace.yaml", "envs/eu-dev/api.yaml", "envs/eu-dev/web.yaml"] {
        let there = git.git(&["show", &format!("main:clusters/{rel}")]);
        assert_eq!(there, std::fs::read_to_string(dir.join(rel)).unwrap(), "{rel}");
    }
    // Who and why, readable by a program.
    let trailers = git.git(&["log", "-1", "--format=%an%n%(trailers:only,unfold)", "main"]);
    assert!(trailers.starts_with("e2e\n"), "{trailers}");
    for t in ["Paved-Environment: eu-dev", "Paved-Operation: deliver", "Paved-Actor: e2e", "Paved-Request-Id: "] {
        assert!(trailers.contains(t), "{t} missing in\n{trailers}");
    }
    let again = deliver_json(&p, "eu-dev");
    assert!(again["commit"].is_null(), "{again}");
    assert_eq!(git.git(&["rev-list", "--count", "main"]).trim(), "1");
    // The audit log has the delivery, with the commit.
    let audit: Value = serde_json::from_str(&p.ok(&["audit", "list", "-o", "json"])).unwrap();
    let events = audit.as_array().cloned().unwrap_or_else(|| audit["events"].as_array().cloned().unwrap_or_default());
    assert!(events.iter().any(|e| e["action"] == "environment.deliver" && e["after"] == commit.as_str()), "{audit}");
}

#[test]
fn concurrent_deliveries_all_land_and_a_removed_service_leaves_in_its_own_commit() {
    let git = GitServer::start();
    let p = Platform::new();
    support::pinned_examples(&p, Some(&git.url));
    // Three processes push to one branch at once: the ones that lose the race go again on top.
    let children: Vec<_> = ["eu-dev", "eu-staging", "eu-production"]
        .iter()
        .map(|env| {
            p.command(&["deliver", "-e", env, "-o", "json"]).stdout(std::process::Stdio::piped()).spawn().unwrap()
        })
        .collect();
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    assert_eq!(git.git(&["rev-list", "--count", "main"]).trim(), "3", "a delivery was lost");
    let files = git.git(&["ls-tree", "-r", "--name-only", "main"]);
    for env in ["eu-dev", "eu-staging", "eu-production"] {
        assert!(files.contains(&format!("clusters/envs/{env}/api.yaml")), "{files}");
    }
    p.ok(&["delete", "service", "worker"]);
    let d = deliver_json(&p, "eu-staging");
    assert_eq!(
        d["files"],
        serde_json::json!(["clusters/envs/eu-staging/namespace.yaml", "clusters/envs/eu-staging/worker.yaml"])
    );
    let files = git.git(&["ls-tree", "-r", "--name-only", "main"]);
    assert!(
        !files.contains("clusters/envs/eu-staging/worker.yaml") && files.contains("clusters/envs/eu-dev/worker.yaml")
    );
    // History is never rewritten: every earlier commit is still an ancestor.
    assert_eq!(git.git(&["rev-list", "--count", "main"]).trim(), "4");
}

#[test]
fn no_secret_value_is_ever_in_the_repository_history() {
    let git = GitServer::start();
    let p = Platform::new();
    support::pinned_examples(&p, Some(&git.url));
    let canary = "canary-7d41e0b9a3c5";
    p.ok_with_input(&["secret", "set", "STRIPE_KEY", "-e", "eu-dev", "--service", "api"], canary);
    let api = std::fs::read_to_string(support::repo_root().join("examples/services/api.score.yaml"))
        .unwrap()
        .replace(":1.4.2", &format!("@{}", support::DIGEST))
        .replace("      PORT: \"8080\"", "      PORT: \"8080\"\n      STRIPE_KEY: ${secrets.STRIPE_KEY}");
    p.ok_with_input(&["apply", "-f", "-"], &api);
    deliver_json(&p, "eu-dev");
    // Every blob of every commit, read back from the server.
    let history = git.git(&["log", "-p", "--all", "--format=%H %B"]);
    assert!(history.contains("STRIPE_KEY"), "the variable should be delivered (by reference)");
    assert!(!history.contains(canary), "the secret's value is in the GitOps repository");
}

#[test]
fn an_unreachable_server_or_a_missing_repository_is_named_and_nothing_is_recorded_as_delivered() {
    let p = Platform::new();
    let closed = format!("git://127.0.0.1:{}/deployments.git", support::free_port());
    support::pinned_examples(&p, Some(&closed));
    let out = p.command(&["deliver", "-e", "eu-dev"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("delivering `eu-dev` to") && stderr.contains(&closed) && stderr.contains("`git fetch"),
        "{stderr}"
    );
    let audit = p.ok(&["audit", "list", "-o", "json"]);
    assert!(!audit.contains("environment.deliver"), "{audit}");
    // No checkout is left behind.
    let left = std::fs::read_dir(p.data.path().join("gitops")).map(|d| d.count()).unwrap_or(0);
    assert_eq!(left, 0);
    // The local provider runs its services itself.
    let out = p.command(&["deliver", "-e", "dev"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("local provider"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // An account without a repository (as the examples' own) is named, with the field to add.
    p.ok(&["apply", "-f", "examples/platform/accounts.yaml"]);
    let out = p.command(&["deliver", "-e", "eu-dev"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr.contains("`spec.gitops") && stderr.contains("account `aws-eu`"), "{stderr}");
}

#[test]
fn a_deploy_to_a_cluster_environment_is_one_commit_naming_the_digest_and_the_deployment() {
    let git = GitServer::start();
    let mut p = Platform::new();
    support::pinned_examples(&p, Some(&git.url));
    let cloud = CloudArtifacts::start(&mut p);
    let digest = push_artifact(&p, "v1");
    assert_eq!(cloud.repository("eu-central-1", "paved/api"), None);
    let out: Value =
        serde_json::from_str(&p.ok(&["deploy", "api", "--artifact", &digest, "-e", "eu-dev", "-o", "json"])).unwrap();
    // Delivered, waiting for the cluster to say how it went.
    assert_eq!(out["deployment"]["status"], "rolling-out", "{out}");
    assert_eq!(git.git(&["rev-list", "--count", "main"]).trim(), "1");
    let manifest = git.git(&["show", "main:clusters/envs/eu-dev/api.yaml"]);
    let image = format!("{}/paved/api@{digest}", ecr("eu-central-1"));
    assert!(manifest.contains(&format!("image: \"{image}\"")), "{manifest}");
    // The digest the manifest names is in the registry the cluster pulls
    // from, in a repository made the way a platform team wants it.
    let served = cloud.registries[0].manifest("paved/api", &digest).expect("the image is in eu-central-1's registry");
    assert_eq!(format!("sha256:{}", sha256_hex(&served)), digest);
    assert_eq!(cloud.repository("eu-central-1", "paved/api"), Some(("IMMUTABLE".to_string(), true)));
    assert_eq!(placements(&p), vec![Value::from("pushed")]);
    let log = git.git(&["log", "-1", "--format=%s%n%(trailers:only,unfold)", "main"]);
    assert!(log.starts_with("deploy eu-dev: api sha256:") && log.contains("(deployment #1)"), "{log}");
    assert!(log.contains("Paved-Deployment: 1") && log.contains("Paved-Operation: deploy"), "{log}");
    let history: Value = serde_json::from_str(&p.ok(&["history", "api", "-e", "eu-dev", "-o", "json"])).unwrap();
    assert_eq!(history[0]["number"], 1);
    assert_eq!(history[0]["artifact"], digest.as_str());
    // The same digest again: the tree is unchanged, so no second commit.
    p.ok(&["deploy", "api", "--artifact", &digest, "-e", "eu-dev"]);
    assert_eq!(git.git(&["rev-list", "--count", "main"]).trim(), "1");
}

/// How each artifact got into a registry, as the audit log says.
fn placements(p: &Platform) -> Vec<Value> {
    fn find(v: &Value, out: &mut Vec<Value>) {
        match v {
            Value::Object(m) => {
                if let Some(p) = m.get("placement") {
                    out.push(p.clone());
                }
                m.values().for_each(|v| find(v, out));
            }
            Value::Array(a) => a.iter().for_each(|v| find(v, out)),
            _ => {}
        }
    }
    let events: Value =
        serde_json::from_str(&p.ok(&["audit", "list", "--action", "artifact.place", "-o", "json"])).unwrap();
    let mut out = Vec::new();
    find(&events, &mut out);
    out
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

#[test]
fn a_deploy_whose_delivery_fails_is_failed_with_the_reason_and_nothing_committed() {
    let mut p = Platform::new();
    let closed = format!("git://127.0.0.1:{}/deployments.git", support::free_port());
    support::pinned_examples(&p, Some(&closed));
    let _cloud = CloudArtifacts::start(&mut p);
    let digest = push_artifact(&p, "v1");
    let out = p.command(&["deploy", "api", "--artifact", &digest, "-e", "eu-dev"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let history: Value = serde_json::from_str(&p.ok(&["history", "api", "-e", "eu-dev", "-o", "json"])).unwrap();
    assert_eq!(history[0]["status"], "failed");
    assert!(history[0]["reason"].as_str().unwrap().contains("git fetch"), "{history}");
}

#[test]
fn a_registry_that_cannot_take_the_artifact_fails_the_deploy_before_anything_is_committed() {
    let git = GitServer::start();
    let mut p = Platform::new();
    support::pinned_examples(&p, Some(&git.url));
    let cloud = CloudArtifacts::start(&mut p);
    // eu-central-1's registry is down.
    let closed = format!("http://127.0.0.1:{}", support::free_port());
    let endpoints = format!("{}={closed},{}={}", ecr("eu-central-1"), ecr("eu-west-1"), cloud.registries[1].url);
    p.env.retain(|(k, _)| k != "PAVED_REGISTRY_ENDPOINTS");
    p.env.push(("PAVED_REGISTRY_ENDPOINTS".into(), endpoints));
    let v1 = push_artifact(&p, "v1");
    let out = p.command(&["deploy", "api", "--artifact", &v1, "-e", "eu-dev"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let h = history(&p, "eu-dev");
    assert_eq!(h[0]["status"], "failed");
    let reason = h[0]["reason"].as_str().unwrap();
    assert!(reason.contains(&format!("registry {}", ecr("eu-central-1"))) && reason.contains("eu-dev"), "{reason}");
    assert!(reason.contains("refused"), "the cause is told: {reason}");
    assert!(git.git(&["for-each-ref"]).trim().is_empty(), "nothing may be committed");
    // An artifact paved no longer holds, that no environment ran: named, with what to do.
    p.env.retain(|(k, _)| k != "PAVED_REGISTRY_ENDPOINTS");
    let endpoints = format!("{}={}", ecr("eu-central-1"), cloud.registries[0].url);
    p.env.push(("PAVED_REGISTRY_ENDPOINTS".into(), endpoints));
    let v2 = push_artifact(&p, "v2");
    std::fs::remove_dir_all(p.data.path().join("images/oci")).unwrap();
    let out = p.command(&["deploy", "api", "--artifact", &v2, "-e", "eu-dev"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let h = history(&p, "eu-dev");
    assert_eq!(h[1]["artifact"], v2.as_str());
    let reason = h[1]["reason"].as_str().unwrap().to_string();
    assert!(reason.contains(&v2) && reason.contains("paved artifact push"), "{h:#}");
    assert!(git.git(&["for-each-ref"]).trim().is_empty(), "nothing may be committed");
}

fn push_artifact(p: &Platform, name: &str) -> String {
    let bundle = p.data.path().join("bundles").join(name);
    std::fs::create_dir_all(&bundle).unwrap();
    std::fs::write(bundle.join("bundle.json"), format!(r#"{{"entrypoint": ["/bin/api"], "release": "{name}"}}"#))
        .unwrap();
    std::fs::write(bundle.join("RELEASE"), name).unwrap();
    let pushed: Value =
        serde_json::from_str(&p.ok(&["artifact", "push", bundle.to_str().unwrap(), "--service", "api", "-o", "json"]))
            .unwrap();
    pushed["artifact"]["digest"].as_str().or(pushed["digest"].as_str()).unwrap().to_string()
}

fn history(p: &Platform, env: &str) -> Value {
    serde_json::from_str(&p.ok(&["history", "api", "-e", env, "-o", "json"])).unwrap()
}

#[test]
fn argo_cd_reports_health_back_a_degraded_release_is_rolled_back_by_commit_and_promotion_copies_the_digest() {
    let git = GitServer::start();
    let mut p = Platform::new();
    support::pinned_examples(&p, Some(&git.url));
    let cloud = CloudArtifacts::start(&mut p);
    let (v1, v2) = (push_artifact(&p, "v1"), push_artifact(&p, "v2"));
    p.start(&[]);
    p.ok(&["deploy", "api", "--artifact", &v1, "-e", "eu-dev"]);
    let c1 = git.git(&["rev-parse", "main"]).trim().to_string();
    let notice = |trigger: &str, revision: &str| {
        serde_json::json!({"environment": "eu-dev", "trigger": trigger, "revision": revision,
                           "health": "Healthy", "sync": "Synced", "message": "successfully synced"})
        .to_string()
    };
    let post = |token: Option<&str>, body: &str| {
        let headers: Vec<(&str, &str)> = token.map(|t| vec![("X-Paved-Token", t)]).unwrap_or_default();
        p.request("POST", "/api/v1/webhooks/argocd", None, &headers, body.as_bytes())
    };
    // Argo CD does not sign: without the environment's secret, nothing is recorded.
    let audit_before = p.ok(&["audit", "list", "-o", "json"]);
    assert_eq!(post(None, &notice("on-deployed", &c1)).status, 401);
    assert_eq!(post(Some("0000"), &notice("on-deployed", &c1)).status, 401);
    assert_eq!(p.ok(&["audit", "list", "-o", "json"]), audit_before);
    assert_eq!(history(&p, "eu-dev")[0]["status"], "rolling-out");
    // The secret is in the vault from the first delivery; reading it is audited.
    let secret = p.ok(&["secret", "reveal", "PAVED_ARGOCD_WEBHOOK", "-e", "eu-dev"]).trim().to_string();
    assert_eq!(secret.len(), 64);
    let r = post(Some(&secret), &notice("on-deployed", &c1));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["result"], "healthy");
    assert_eq!(history(&p, "eu-dev")[0]["status"], "healthy");
    // Again for the same commit: nothing more.
    assert_eq!(post(Some(&secret), &notice("on-deployed", &c1)).json()["result"], "nothing-to-do");
    // v2 degrades: a new commit puts v1 back; history is never rewritten.
    p.ok(&["deploy", "api", "--artifact", &v2, "-e", "eu-dev"]);
    let c2 = git.git(&["rev-parse", "main"]).trim().to_string();
    assert!(git.git(&["show", "main:clusters/envs/eu-dev/api.yaml"]).contains(&v2));
    let r = post(Some(&secret), &notice("on-health-degraded", &c2));
    assert_eq!(r.json()["result"], "rolled-back", "{}", r.text());
    let c3 = r.json()["commit"].as_str().unwrap().to_string();
    assert_eq!(git.git(&["rev-parse", "main"]).trim(), c3);
    assert_eq!(git.git(&["rev-list", "--count", "main"]).trim(), "3");
    assert!(git.git(&["show", "main:clusters/envs/eu-dev/api.yaml"]).contains(&v1));
    assert!(
        git.git(&["log", "-1", "--format=%s", "main"]).starts_with("rollback eu-dev: api #2 after health-degraded")
    );
    let h = history(&p, "eu-dev");
    assert_eq!(h[1]["status"], "rolled-back");
    assert!(h[1]["reason"].as_str().unwrap().contains("rolled back to #1"), "{h}");
    // A revision paved did not deliver changes nothing.
    assert_eq!(post(Some(&secret), &notice("on-health-degraded", "deadbeef")).json()["result"], "stale");
    // Promotion copies the healthy digest: one commit in the next environment.
    p.ok(&["promote", "api", "--from", "eu-dev", "--to", "eu-staging"]);
    assert!(git.git(&["show", "main:clusters/envs/eu-staging/api.yaml"]).contains(&v1));
    assert_eq!(history(&p, "eu-staging")[0]["artifact"], v1.as_str());
    // eu-staging pulls from eu-west-1's registry: the image was copied there
    // from eu-dev's, byte for byte; v2 never left eu-dev.
    let copied = cloud.registries[1].manifest("paved/api", &v1).expect("v1 is in eu-west-1's registry");
    assert_eq!(Some(copied), cloud.registries[0].manifest("paved/api", &v1));
    assert_eq!(cloud.registries[1].manifest("paved/api", &v2), None);
    let placed = placements(&p);
    assert!(placed.contains(&serde_json::json!({"copied": {"from": "eu-dev"}})), "{placed:?}");
}

#[test]
fn a_private_repository_is_reached_with_the_token_from_the_vault_and_the_token_is_written_nowhere() {
    const TOKEN: &str = "ghp_canary7f3a9b2c41d8e6f05a1b2c3d4e5f6a7b8c9d0";
    let git = support::GitHttpServer::start("paved-bot", TOKEN);
    let p = Platform::new();
    support::pinned_examples(&p, Some(&git.url));
    let accounts = support::accounts_with_gitops(Some(&git.url))
        .replace("    path: clusters\n", "    path: clusters\n    username: paved-bot\n");
    p.ok_with_input(&["apply", "-f", "-"], &accounts);
    // Without a token the server refuses, and the error says where and what.
    let out = p.command(&["deliver", "-e", "eu-dev"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("git fetch") && err.contains(&git.url), "{err}");
    assert!(git.git(&["for-each-ref"]).trim().is_empty());
    // The token lives in the environment's secrets; the next delivery signs in with it.
    p.ok_with_input(&["secret", "set", "PAVED_GITOPS_TOKEN", "-e", "eu-dev"], TOKEN);
    let delivered = deliver_json(&p, "eu-dev");
    assert_eq!(git.git(&["rev-parse", "main"]).trim(), delivered["commit"].as_str().unwrap());
    let requests = git.requests();
    assert!(requests.lines().any(|l| l.starts_with("POST /deployments.git/git-receive-pack 200 True")), "{requests}");
    // Nowhere in paved's data (the vault holds it encrypted), the repository, or the audit log.
    assert_eq!(support::files_containing(p.data.path(), TOKEN.as_bytes()), Vec::<std::path::PathBuf>::new());
    assert!(!git.git(&["log", "-p", "--all"]).contains(TOKEN));
    assert!(!p.ok(&["audit", "list", "-o", "json"]).contains(TOKEN));
    // A token is never sent in clear text beyond this machine.
    let remote = "http://git.example.com/platform/deployments.git";
    p.ok_with_input(&["apply", "-f", "-"], &support::accounts_with_gitops(Some(remote)));
    let out = p.command(&["deliver", "-e", "eu-dev"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("clear text") && err.contains("https://"), "{err}");
}

#[test]
fn a_pipeline_can_push_into_a_cluster_environments_registry_at_build_time() {
    let mut p = Platform::new();
    support::pinned_examples(&p, Some("git://127.0.0.1:9/unused.git"));
    let cloud = CloudArtifacts::start(&mut p);
    let bundle = p.data.path().join("bundles/v1");
    std::fs::create_dir_all(&bundle).unwrap();
    std::fs::write(bundle.join("bundle.json"), r#"{"entrypoint": ["/bin/api"]}"#).unwrap();
    std::fs::write(bundle.join("RELEASE"), "v1").unwrap();
    let out = p
        .command(&["artifact", "push", bundle.to_str().unwrap(), "--service", "api", "-e", "eu-dev"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let digest = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("eu-dev: {}/paved/api@{digest} pushed", ecr("eu-central-1"))), "{err}");
    assert!(cloud.registries[0].manifest("paved/api", &digest).is_some());
    // An environment that pulls from no registry is told before anything is stored.
    std::fs::write(bundle.join("RELEASE"), "v2").unwrap();
    let before = p.ok(&["artifact", "list", "-o", "json"]);
    let out =
        p.command(&["artifact", "push", bundle.to_str().unwrap(), "--service", "api", "-e", "dev"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a cluster environment"));
    assert_eq!(p.ok(&["artifact", "list", "-o", "json"]), before);
}

#[test]
fn render_export_and_deliver_go_through_the_server_with_the_callers_rights() {
    let git = GitServer::start();
    let mut p = Platform::new();
    support::pinned_examples(&p, Some(&git.url));
    let bindings = "apiVersion: paved.dev/v1alpha1\nkind: RoleBinding\nmetadata:\n  name: readers\nspec:\n  role: viewer\n  \
                    subjects: [serviceaccount:reader]\n  scope: organisation\n  production: true\n---\n\
                    apiVersion: paved.dev/v1alpha1\nkind: RoleBinding\nmetadata:\n  name: shippers\nspec:\n  role: developer\n  \
                    subjects: [serviceaccount:shipper]\n  scope: organisation\n";
    p.ok_with_input(&["apply", "-f", "-"], bindings);
    let (_, reader) = p.token("reader", "serviceaccount:reader", None);
    let (_, shipper) = p.token("shipper", "serviceaccount:shipper", None);
    let local = p.data.path().join("local-render");
    p.ok(&["render", "-e", "eu-dev", "-d", local.to_str().unwrap()]);
    let local_stream = p.ok(&["export", "kubernetes", "-e", "eu-dev"]);
    p.start(&[]);
    let server = format!("http://127.0.0.1:{}", p.port);
    // A viewer reads the same tree the machine renders, but may not commit it.
    p.ok_with_input(&["login", "--server", &server], &reader);
    let remote = p.data.path().join("remote-render");
    p.ok(&["render", "-e", "eu-dev", "-d", remote.to_str().unwrap()]);
    for rel in ["apps/eu-dev.yaml", "envs/eu-dev/namespace.yaml", "envs/eu-dev/api.yaml"] {
        assert_eq!(
            std::fs::read_to_string(remote.join(rel)).unwrap(),
            std::fs::read_to_string(local.join(rel)).unwrap()
        );
    }
    assert_eq!(p.ok(&["export", "kubernetes", "-e", "eu-dev"]), local_stream);
    let out = p.command(&["deliver", "-e", "eu-dev"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("403"), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(git.git(&["for-each-ref"]).trim().is_empty());
    // A developer's delivery is the server's commit, authored by the developer.
    p.ok_with_input(&["login", "--server", &server], &shipper);
    let delivered: Value = serde_json::from_str(&p.ok(&["deliver", "-e", "eu-dev", "-o", "json"])).unwrap();
    assert_eq!(git.git(&["rev-parse", "main"]).trim(), delivered["commit"].as_str().unwrap());
    assert!(git.git(&["log", "-1", "--format=%an", "main"]).contains("serviceaccount:shipper"));
}

/// A pull request of the api's repository, with the fields of GitHub's
/// `pull_request` delivery paved reads.
fn pull_request(action: &str, number: u64) -> Value {
    serde_json::json!({
        "action": action,
        "number": number,
        "pull_request": {"number": number, "head": {"sha": "c0ffee00000000000000000000000000000000a1"}, "user": {"login": "octocat"}},
        "repository": {"full_name": "payments/api"},
    })
}

/// What the account holds of a preview: its database, the host's listener
/// rules for its routes, and anything of a network or cluster of its own.
const PREVIEW_INVENTORY: &str = r#"
import json, sys, boto3
endpoint, env, host, region = sys.argv[1:5]
c = lambda s: boto3.client(s, endpoint_url=endpoint, region_name=region)
elb = c("elbv2")
lb = elb.describe_load_balancers(Names=[f"paved-{host}"])["LoadBalancers"][0]
groups = {g["TargetGroupArn"]: g["TargetGroupName"] for g in elb.describe_target_groups()["TargetGroups"]}
rules = [{"hosts": [v for c in r["Conditions"] if c["Field"] == "host-header" for v in c.get("HostHeaderConfig", {}).get("Values", c.get("Values", []))],
          "group": groups.get(r["Actions"][0].get("TargetGroupArn"))}
         for l in elb.describe_listeners(LoadBalancerArn=lb["LoadBalancerArn"])["Listeners"]
         for r in elb.describe_rules(ListenerArn=l["ListenerArn"])["Rules"] if not r["IsDefault"]]
mine = [{"Name": "tag:paved:environment", "Values": [env]}]
print(json.dumps({
    "databases": sorted(d["DBInstanceIdentifier"] for d in c("rds").describe_db_instances()["DBInstances"]
                        if d["DBInstanceIdentifier"].startswith(f"paved-{env}-")),
    "rules": sorted(rules, key=lambda r: r["group"] or ""),
    "vpcs": len(c("ec2").describe_vpcs(Filters=mine)["Vpcs"]),
    "clusters": [n for n in c("eks").list_clusters()["clusters"] if n == f"paved-{env}"],
    "roles": sorted(r["RoleName"] for r in c("iam").list_roles()["Roles"] if r["RoleName"].startswith(f"paved-{env}-")),
}))
"#;

#[test]
fn a_pull_request_on_a_cloud_blueprint_is_a_namespace_on_the_dev_cluster_and_leaves_when_closed() {
    let git = GitServer::start();
    let mut p = Platform::new();
    support::pinned_examples(&p, Some(&git.url));
    // Previews are cut from the first development environment offering them: eu-dev here.
    p.ok(&["delete", "environment", "dev"]);
    let cloud = CloudArtifacts::start(&mut p);
    support::py(support::ZONE, &[&cloud.moto.url]);
    p.ok(&["apply", "-e", "eu-dev"]);
    let secret_file = p.data.path().join("webhook-secret");
    std::fs::write(&secret_file, "a-test-secret\n").unwrap();
    p.start(&[
        "--github-webhook-secret-file",
        secret_file.to_str().unwrap(),
        "--git-interval",
        "1s",
        "--reconcile-interval",
        "off",
    ]);
    let inventory = || -> Value {
        let out = support::py(PREVIEW_INVENTORY, &[&cloud.moto.url, "pr-7-api", "eu-dev", "eu-central-1"]);
        serde_json::from_str(&out).unwrap()
    };
    let in_git = |path: &str| {
        std::process::Command::new("git")
            .arg("--git-dir")
            .arg(git.dir.path().join("repos/deployments.git"))
            .args(["cat-file", "-e", &format!("main:clusters/{path}")])
            .stderr(std::process::Stdio::null())
            .status()
            .unwrap()
            .success()
    };
    let wait = |what: &str, mut done: Box<dyn FnMut() -> bool + '_>| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(180);
        while !done() {
            assert!(std::time::Instant::now() < deadline, "timed out waiting for {what}\n{}", p.log());
            std::thread::sleep(std::time::Duration::from_millis(500));
        }
    };

    let r = support::github_delivery(&p, "pull_request", "d-1", &pull_request("opened", 7), "a-test-secret");
    assert_eq!(r.status, 202, "{}", r.text());
    wait("the preview's namespace in the repository", Box::new(|| in_git("envs/pr-7-api/namespace.yaml")));
    // Argo CD syncs it into its own namespace on eu-dev's cluster.
    let app = git.git(&["show", "main:clusters/apps/pr-7-api.yaml"]);
    assert!(app.contains("  destination:\n    name: paved-eu-dev\n    namespace: pr-7-api\n"), "{app}");
    let namespace = git.git(&["show", "main:clusters/envs/pr-7-api/namespace.yaml"]);
    assert!(namespace.contains("name: pr-7-api"), "{namespace}");
    let web = git.git(&["show", "main:clusters/envs/pr-7-api/web.yaml"]);
    assert!(web.contains("targetGroupName: paved-pr-7-api-web"), "{web}");
    let subject = git.git(&["log", "-1", "--format=%s", "main", "--", "clusters/envs/pr-7-api"]);
    assert!(subject.starts_with("apply pr-7-api"), "{subject}");
    // In the account: its own database and pod roles, its route on eu-dev's
    // load balancer under eu-dev's certificate, and no network or cluster of its own.
    let held = inventory();
    assert_eq!(held["databases"], serde_json::json!(["paved-pr-7-api-payments-db"]), "{held}");
    assert_eq!(
        held["rules"],
        serde_json::json!([{"hosts": ["web.eu-dev.example.com"], "group": "paved-eu-dev-web"},
                           {"hosts": ["web-pr-7-api.eu-dev.example.com"], "group": "paved-pr-7-api-web"}]),
        "{held}"
    );
    assert_eq!((held["vpcs"].as_u64(), held["clusters"].as_array().map(Vec::len)), (Some(0), Some(0)), "{held}");
    assert!(held["roles"].as_array().unwrap().contains(&serde_json::json!("paved-pr-7-api-svc-api")), "{held}");

    // eu-dev cannot be destroyed under the preview.
    let out = p.command(&["destroy", "-e", "eu-dev"]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("hosts the preview(s) pr-7-api"), "{err}");
    assert_eq!(inventory()["rules"].as_array().map(Vec::len), Some(2));

    // Closed: its files leave the repository in a commit of their own, then its resources go.
    let r = support::github_delivery(&p, "pull_request", "d-2", &pull_request("closed", 7), "a-test-secret");
    assert_eq!(r.status, 202, "{}", r.text());
    wait("the preview to leave the repository", Box::new(|| !in_git("envs/pr-7-api/namespace.yaml")));
    assert!(!in_git("apps/pr-7-api.yaml"));
    assert!(in_git("envs/eu-dev/namespace.yaml"), "eu-dev's files went too");
    wait(
        "the preview's resources to be destroyed",
        Box::new(|| {
            let held = inventory();
            held["databases"].as_array().unwrap().is_empty() && held["rules"].as_array().unwrap().len() == 1
        }),
    );
    assert!(inventory()["roles"].as_array().unwrap().is_empty());
    let out = p.command(&["get", "environment", "pr-7-api"]).output().unwrap();
    assert!(!out.status.success(), "the preview is still recorded");
    // The platform goes first: its `paved down` destroys eu-dev while the emulator still answers.
    drop(p);
}
