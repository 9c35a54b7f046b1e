//! The git flow on the real server: real GitHub deliveries (from
//! the reference fixtures' `github-webhooks/`, see [`support::reference`]), signed with a test secret,
//! create, update and delete preview environments; artifacts that arrive
//! later are deployed then; notifications reach a local receiver.

mod support;

use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::{Platform, wait_for};

const SECRET: &str = "a-test-secret-of-this-suite";

fn delivery(name: &str) -> Value {
    let path = support::reference(&format!("github-webhooks/{name}"));
    serde_json::from_slice(&std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))).unwrap()
}

use support::github_delivery as send;

/// The secret paved signs its notifications with in these tests.
const NOTIFY_SECRET: &str = "notify-secret";

/// A local receiver of paved's notifications: every JSON body POSTed to it
/// whose `X-Paved-Signature-256` verifies (HMAC-SHA256 of `TIMESTAMP.BODY`
/// under [`NOTIFY_SECRET`]); unsigned or forged ones are dropped.
fn receiver() -> (String, Arc<Mutex<Vec<Value>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let got = Arc::new(Mutex::new(Vec::new()));
    let sink = got.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut reader = BufReader::new(stream);
            let (mut length, mut timestamp, mut signature) = (0, String::new(), String::new());
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                let lower = line.to_ascii_lowercase();
                if let Some(v) = lower.strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap_or(0);
                } else if let Some(v) = lower.strip_prefix("x-paved-timestamp:") {
                    timestamp = v.trim().to_string();
                } else if let Some(v) = lower.strip_prefix("x-paved-signature-256:") {
                    signature = v.trim().to_string();
                }
            }
            let mut body = vec![0; length];
            let signed = |body: &[u8]| {
                use hmac::{KeyInit, Mac};
                let mut mac = <hmac::Hmac<sha2::Sha256> as KeyInit>::new_from_slice(NOTIFY_SECRET.as_bytes()).unwrap();
                mac.update(format!("{timestamp}.").as_bytes());
                mac.update(body);
                let fresh = timestamp.parse::<i64>().is_ok_and(|t| {
                    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
                    (now as i64 - t).abs() < 300
                });
                fresh && signature == format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
            };
            if reader.read_exact(&mut body).is_ok()
                && signed(&body)
                && let Ok(v) = serde_json::from_slice::<Value>(&body)
            {
                sink.lock().unwrap().push(v);
            }
            let _ = reader.get_mut().write_all(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n");
        }
    });
    (url, got)
}

fn environment(p: &Platform, name: &str) -> Option<Value> {
    let out = p.command(&["get", "environment", name, "-o", "json"]).output().unwrap();
    out.status.success().then(|| serde_json::from_slice(&out.stdout).unwrap())
}

fn env_dir(p: &Platform, env: &str) -> PathBuf {
    p.data.path().join("local/envs").join(env)
}

/// `(status, body)` of web in `env`, through the environment's proxy.
fn web(p: &Platform, env: &str) -> Option<(u16, String)> {
    let proxy: Value = serde_json::from_slice(&std::fs::read(env_dir(p, env).join("proxy/proxy.json")).ok()?).ok()?;
    let mut s = TcpStream::connect(("127.0.0.1", proxy["port"].as_u64()? as u16)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(s, "GET / HTTP/1.0\r\nHost: web.{env}.localhost\r\n\r\n").ok()?;
    let mut resp = String::new();
    s.read_to_string(&mut resp).ok()?;
    let status = resp.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, resp))
}

/// The digest api runs in `env`, asked at its stable address.
fn api_digest(p: &Platform, env: &str) -> Option<String> {
    let network: Value = serde_json::from_slice(&std::fs::read(env_dir(p, env).join("network.json")).ok()?).ok()?;
    let mut s = TcpStream::connect(format!("{}:8080", network["address"].as_str()?)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(s, "GET /version HTTP/1.0\r\nHost: api\r\n\r\n").ok()?;
    let mut resp = String::new();
    s.read_to_string(&mut resp).ok()?;
    let body: Value = serde_json::from_str(resp.split_once("\r\n\r\n")?.1).ok()?;
    body["digest"].as_str().map(str::to_string)
}

fn bundle(p: &Platform, name: &str) -> PathBuf {
    let dir = p.data.path().join("builds").join(name);
    std::fs::create_dir_all(dir.join("bin")).unwrap();
    std::fs::copy(env!("CARGO_BIN_EXE_paved-demo"), dir.join("bin/api")).unwrap();
    std::fs::write(dir.join("RELEASE"), name).unwrap();
    std::fs::write(dir.join("bundle.json"), r#"{"entrypoint": ["/bin/api"]}"#).unwrap();
    dir
}

/// The api service of the examples, built from the repository of the deliveries.
fn record_specs(p: &Platform, blueprint_preview: &str) {
    let root = support::repo_root();
    let api = std::fs::read_to_string(root.join("examples/services/api.score.yaml"))
        .unwrap()
        .replace("https://git.example.com/payments/api", "https://github.com/Codertocat/Hello-World")
        .replace(
            "    paved.dev/owner: payments\n",
            "    paved.dev/owner: payments\n    paved.dev/branches: main=dev\n",
        );
    let blueprint = std::fs::read_to_string(root.join("examples/platform/blueprint-web-service-standard.yaml"))
        .unwrap()
        .replace("    ttl: 72h\n    maxPerTeam: 3\n", blueprint_preview);
    p.ok_with_input(&["apply", "-f", "-"], &format!("{api}\n---\n{blueprint}"));
}

fn supervisors_of(p: &Platform, env: &str) -> Vec<String> {
    let dir = env_dir(p, env).display().to_string();
    let out = std::process::Command::new("ps").args(["-eo", "args"]).output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains("__supervise") && l.contains(&format!("{dir}/")))
        .map(str::to_string)
        .collect()
}

fn start(p: &mut Platform, notify: &str) {
    let secret_file = p.data.path().join("webhook-secret");
    if !secret_file.exists() {
        std::fs::write(&secret_file, format!("{SECRET}\n")).unwrap();
    }
    let secret = secret_file.to_str().unwrap().to_string();
    let notify_secret = p.data.path().join("notify-secret");
    std::fs::write(&notify_secret, format!("{NOTIFY_SECRET}\n")).unwrap();
    let notify_secret = notify_secret.to_str().unwrap().to_string();
    let args = [
        "--notify-secret-file",
        &notify_secret,
        "--github-webhook-secret-file",
        &secret,
        "--notify-url",
        notify,
        "--git-interval",
        "1s",
        "--reconcile-interval",
        "off",
    ];
    p.start(&args);
}

#[test]
#[ignore = "reads the reference fixtures (PAVED_REFERENCE_DIR, default ../shared/reference)"]
fn real_deliveries_open_update_and_close_previews_exactly_once() {
    let mut p = Platform::new();
    p.ok(&["up"]);
    record_specs(&p, "    ttl: 72h\n    maxPerTeam: 3\n");
    let (url, notices) = receiver();
    start(&mut p, &url);
    let preview = "pr-2-hello-world";

    // ping: acknowledged. Unknown events: acknowledged and ignored.
    let r = send(&p, "ping", "d-ping", &delivery("ping_payload.json"), SECRET);
    assert_eq!((r.status, r.json()["result"].as_str()), (202, Some("pong")), "{}", r.text());
    let r = send(&p, "star", "d-star", &serde_json::json!({"action": "created"}), SECRET);
    assert_eq!((r.status, r.json()["status"].as_str()), (202, Some("ignored")));

    // A bad signature is 401 and changes nothing.
    let opened = delivery("pull_request_opened.payload.json");
    let r = send(&p, "pull_request", "d-open", &opened, "not-the-secret");
    assert_eq!((r.status, r.json()["code"].as_str()), (401, Some("bad-signature")));
    std::thread::sleep(Duration::from_millis(1500));
    assert!(environment(&p, preview).is_none(), "a refused delivery recorded a preview");

    // The real delivery (same id: the refused one was not recorded) creates the preview.
    let sent = Instant::now();
    let r = send(&p, "pull_request", "d-open", &opened, SECRET);
    assert_eq!(r.status, 202, "{}", r.text());
    let env = environment(&p, preview).expect("the preview is recorded at once");
    assert_eq!(env["document"]["spec"]["type"], "preview", "{env}");
    assert_eq!(env["document"]["spec"]["owner"], "payments", "the service's team owns it: {env}");
    assert_eq!(env["document"]["metadata"]["labels"]["paved.dev/pull-request"], "Codertocat/Hello-World#2");
    let (status, page) = wait_for("the preview to serve", 90, || web(&p, preview).filter(|(s, _)| *s == 200));
    assert_eq!(status, 200);
    eprintln!("delivery → preview serving: {:.1} s", sent.elapsed().as_secs_f64());
    assert!(page.contains(preview) || page.contains("api"), "{page}");
    // Its own database: the preview's role exists, dev's is untouched.
    assert!(env_dir(&p, preview).join("postgres").exists());

    // A replayed delivery does nothing twice.
    let r = send(&p, "pull_request", "d-open", &opened, SECRET);
    assert_eq!((r.status, r.json()["status"].as_str()), (200, Some("duplicate")));

    // The artifact of the head commit arrives after the pull request: it is deployed then.
    let head = opened["pull_request"]["head"]["sha"].as_str().unwrap().to_string();
    let v1 = bundle(&p, "v1");
    let d1 =
        p.ok(&["artifact", "push", v1.to_str().unwrap(), "--service", "api", "--commit", &head]).trim().to_string();
    wait_for("the head commit's artifact to run in the preview", 90, || (api_digest(&p, preview)? == d1).then_some(()));

    // synchronize: a new head commit (the real delivery with its sha changed) is deployed.
    let mut sync = delivery("pull_request_synchronize.payload.json");
    let new_head = "1111111111111111111111111111111111111111";
    sync["pull_request"]["head"]["sha"] = Value::from(new_head);
    let v2 = bundle(&p, "v2");
    let d2 =
        p.ok(&["artifact", "push", v2.to_str().unwrap(), "--service", "api", "--commit", new_head]).trim().to_string();
    assert_eq!(send(&p, "pull_request", "d-sync", &sync, SECRET).status, 202);
    wait_for("the new head to run in the preview", 90, || (api_digest(&p, preview)? == d2).then_some(()));
    // … and passes its soak: the first deployment is superseded.
    wait_for("the new deployment to be healthy", 60, || {
        let history: Value = serde_json::from_str(&p.ok(&["history", "api", "-e", preview, "-o", "json"])).unwrap();
        let statuses: Vec<String> =
            history.as_array().unwrap().iter().map(|d| d["status"].as_str().unwrap().to_string()).collect();
        (statuses == ["superseded", "healthy"]).then_some(())
    });
    // dev was not touched by any of it.
    assert!(api_digest(&p, "dev").is_some_and(|d| d != d1 && d != d2));

    // A push to `main` (mapped to dev) deploys its commit's artifact to dev once it is pushed.
    let mut push = delivery("push_payload.json");
    let main_head = "2222222222222222222222222222222222222222";
    push["ref"] = Value::from("refs/heads/main");
    push["after"] = Value::from(main_head);
    push["deleted"] = Value::from(false);
    let r = send(&p, "push", "d-push", &push, SECRET);
    assert_eq!(r.status, 202, "{}", r.text());
    assert!(r.json()["result"].as_str().unwrap().contains("api to dev"), "{}", r.text());
    let v3 = bundle(&p, "v3");
    let d3 =
        p.ok(&["artifact", "push", v3.to_str().unwrap(), "--service", "api", "--commit", main_head]).trim().to_string();
    wait_for("main's commit to run in dev", 90, || (api_digest(&p, "dev")? == d3).then_some(()));
    // A tag push (the real delivery as it is) deploys nothing.
    let r = send(&p, "push", "d-tag", &delivery("push_payload.json"), SECRET);
    assert!(r.json()["result"].as_str().unwrap().contains("not a branch update"), "{}", r.text());

    // Notifications reached the receiver, with the preview's URL.
    let got = wait_for("notifications", 30, || {
        let n = notices.lock().unwrap().clone();
        (n.iter().any(|v| v["event"] == "preview.ready")
            && n.iter().filter(|v| v["event"] == "deployment.healthy").count() >= 2)
            .then_some(n)
    });
    let ready = got.iter().find(|v| v["event"] == "preview.ready").unwrap();
    assert_eq!(ready["pull_request"], "Codertocat/Hello-World#2");
    assert!(ready["urls"].as_object().unwrap().values().any(|u| u.as_str().unwrap().contains(preview)), "{ready}");

    // closed: the preview and everything it ran are gone.
    assert_eq!(send(&p, "pull_request", "d-close", &delivery("pull_request_closed.payload.json"), SECRET).status, 202);
    wait_for("the preview to be deleted", 90, || environment(&p, preview).is_none().then_some(()));
    assert!(supervisors_of(&p, preview).is_empty(), "{:?}", supervisors_of(&p, preview));
    assert!(!env_dir(&p, preview).join("workloads").exists(), "workload directories left behind");
    wait_for("preview.deleted", 30, || {
        notices.lock().unwrap().iter().any(|v| v["event"] == "preview.deleted").then_some(())
    });
    // The audit log has every delivery that did something.
    let audit: Value = serde_json::from_str(&p.ok(&["audit", "list", "-o", "json"])).unwrap();
    let deliveries = audit.as_array().unwrap().iter().filter(|e| e["action"] == "webhook.github").count();
    assert_eq!(
        deliveries, 6,
        "ping, opened, synchronize, two pushes, closed (the duplicate and the refused one are not)"
    );
}

#[test]
#[ignore = "reads the reference fixtures (PAVED_REFERENCE_DIR, default ../shared/reference)"]
fn quotas_expiry_and_a_crash_during_creation_converge() {
    let mut p = Platform::new();
    p.ok(&["up"]);
    // One open preview per team, living 20 seconds.
    record_specs(&p, "    ttl: 20s\n    maxPerTeam: 1\n");
    let (url, _) = receiver();
    start(&mut p, &url);
    let opened = delivery("pull_request_opened.payload.json");
    let mut other = opened.clone();
    other["number"] = Value::from(3);
    other["pull_request"]["number"] = Value::from(3);

    // Killed (-9) while the preview is being created; the restarted server finishes it.
    assert_eq!(send(&p, "pull_request", "d-2", &opened, SECRET).status, 202);
    std::thread::sleep(Duration::from_millis(1500));
    let mut server = p.server.take().unwrap();
    server.kill().unwrap();
    server.wait().unwrap();
    start(&mut p, &url);
    wait_for("the preview to serve after the restart", 90, || web(&p, "pr-2-hello-world").filter(|(s, _)| *s == 200));
    let supervisors = supervisors_of(&p, "pr-2-hello-world");
    assert_eq!(supervisors.len(), 4, "one proxy and one supervisor per workload: {supervisors:#?}");

    // The team's quota: a second preview is refused with what to do.
    let r = send(&p, "pull_request", "d-3", &other, SECRET);
    assert_eq!(r.status, 409, "{}", r.text());
    assert!(r.json()["message"].as_str().unwrap().contains("maxPerTeam"), "{}", r.text());
    assert!(environment(&p, "pr-3-hello-world").is_none());

    // The reaper deletes the expired preview.
    wait_for("the expired preview to be reaped", 120, || environment(&p, "pr-2-hello-world").is_none().then_some(()));
    assert!(supervisors_of(&p, "pr-2-hello-world").is_empty());
}
