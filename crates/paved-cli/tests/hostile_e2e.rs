//! A developer trying to get more than their role bindings give, through the
//! real server with a developer token: each attempt is refused with a clear
//! reason, and the host, the store and the environments stay as they were.

mod support;

use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use support::Platform;

const BINDINGS: &str = "apiVersion: paved.dev/v1alpha1\nkind: RoleBinding\nmetadata:\n  name: admins\nspec:\n  \
role: admin\n  subjects: [serviceaccount:admin]\n  scope: organisation\n  production: true\n---\n\
apiVersion: paved.dev/v1alpha1\nkind: RoleBinding\nmetadata:\n  name: mallory-dev\nspec:\n  \
role: developer\n  subjects: [serviceaccount:mallory]\n  scope: environment:dev\n---\n\
apiVersion: paved.dev/v1alpha1\nkind: RoleBinding\nmetadata:\n  name: mallory-team\nspec:\n  \
role: developer\n  subjects: [serviceaccount:mallory]\n  scope: team:platform\n---\n\
apiVersion: paved.dev/v1alpha1\nkind: Environment\nmetadata:\n  name: dev\nspec:\n  \
blueprint: web-service-standard@1.2.0\n  account: local\n  region: local\n  type: development\n  owner: platform\n---\n";

fn score(name: &str, image: &str, container: &str) -> String {
    format!(
        "apiVersion: score.dev/v1b1\nmetadata:\n  name: {name}\n  annotations:\n    paved.dev/owner: platform\n\
         containers:\n  main:\n    image: {image}\n{container}"
    )
}

struct Attacker<'a> {
    p: &'a Platform,
    token: String,
    admin: String,
}

impl Attacker<'_> {
    fn call(&self, method: &str, path: &str, body: &str) -> (u16, Value) {
        let r =
            self.p.request(method, path, Some(&self.token), &[("Content-Type", "application/yaml")], body.as_bytes());
        let text = r.text();
        (r.status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    /// Records `spec` and applies dev through the API; the finished operation.
    fn apply(&self, spec: &str) -> Value {
        let (status, body) = self.call("POST", "/api/v1/specs", spec);
        assert_eq!(status, 200, "recording: {body}");
        let (status, op) = self.call("POST", "/api/v1/environments/dev/apply", "");
        assert_eq!(status, 202, "{op}");
        self.p.wait_operation(op["id"].as_str().unwrap(), &self.admin)
    }
}

/// What the workload `name` wrote in its own directory (`$PAVED_ROOT/file`).
fn written(p: &Platform, name: &str, file: &str) -> Option<String> {
    let root = p.data.path().join(format!("local/envs/dev/workloads/{name}/slots/blue/containers/main/root"));
    std::fs::read_to_string(root.join(file)).ok()
}

fn wait_written(p: &Platform, name: &str, file: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(text) = written(p, name, file) {
            return text;
        }
        assert!(Instant::now() < deadline, "{name} never wrote {file}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn snapshot(dir: &Path) -> Vec<(PathBuf, u64)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let meta = e.metadata().unwrap();
            if meta.is_dir() {
                stack.push(e.path());
            } else {
                out.push((e.path(), meta.len()));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn a_developer_token_cannot_reach_the_host_the_store_or_the_keys() {
    let mut p = Platform::new();
    p.ok(&["apply", "-f", "examples/platform"]);
    p.ok_with_input(&["apply", "-f", "-"], BINDINGS);
    let tools = support::tools_bundle(&p.data.path().join("tools"), &["sh", "cat", "ls", "id", "sleep", "touch"]);
    p.ok(&["image", "import", tools.to_str().unwrap(), "--tag", "registry.example.com/test/tools:1"]);
    let demo = p.data.path().join("demo");
    std::fs::create_dir_all(demo.join("bin")).unwrap();
    std::fs::copy(env!("CARGO_BIN_EXE_paved-demo"), demo.join("bin/api")).unwrap();
    std::fs::write(demo.join("bundle.json"), r#"{"entrypoint": ["/bin/api"]}"#).unwrap();
    p.ok(&["image", "import", demo.to_str().unwrap(), "--tag", "registry.example.com/test/api:1"]);
    let admin = p.token("admin", "serviceaccount:admin", None).1;
    let token = p.token("mallory", "serviceaccount:mallory", None).1;
    p.start(&[]);
    let m = Attacker { p: &p, token, admin: admin.clone() };
    // A secret, so the key-encryption key exists.
    let body = json!({"value": "s3cr3t-canary"}).to_string();
    let r = p.request(
        "PUT",
        "/api/v1/environments/dev/secrets/TOKEN",
        Some(&admin),
        &[("Content-Type", "application/json")],
        body.as_bytes(),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let kek = p.data.path().join("keys/kek");
    assert!(kek.is_file(), "the key-encryption key is where paved keeps it");
    let kek_before = std::fs::read(&kek).unwrap();
    let canary = std::env::temp_dir().join(format!("paved-hostile-{}", std::process::id()));

    // 1. The host's shell through a Score command: the image does not hold it.
    let op = m.apply(&score(
        "shell",
        "registry.example.com/test/api:1",
        &format!("    command: [\"/bin/sh\", \"-c\", \"touch {}\"]\n", canary.display()),
    ));
    assert_eq!(op["status"], "failed", "{op}");
    let error = op.to_string();
    assert!(error.contains("`/bin/sh` is not in the workload's image"), "{error}");
    assert!(!canary.exists(), "the host's shell ran");
    // The platform team removes the broken service (a developer may not delete specs).
    let removed = p.request("DELETE", "/api/v1/specs/service/shell", Some(&admin), &[], b"");
    assert_eq!(removed.status, 200, "{}", removed.text());

    // 2. Mounting `/` or paved's data directory: refused when planned, naming the field. The
    //    service is blocked (left out of the apply, with the reason); the rest of dev applies.
    for source in ["/", p.data.path().to_str().unwrap()] {
        let spec = score(
            "mounter",
            "registry.example.com/test/tools:1",
            &format!("    volumes:\n      /host:\n        source: {source}\n"),
        );
        let op = m.apply(&spec);
        assert_eq!(op["status"], "succeeded", "{op}");
        let error = op["blocked"]["mounter"].to_string();
        assert!(
            error.contains("containers.main.volumes./host.source") && error.contains("allows no host directories"),
            "{op}"
        );
        assert!(!p.data.path().join("local/envs/dev/workloads/mounter").exists(), "the mounter ran");
    }
    let removed = p.request("DELETE", "/api/v1/specs/service/mounter", Some(&admin), &[], b"");
    assert_eq!(removed.status, 200, "{}", removed.text());

    // 3. Writing through `..` in a file or volume target: refused when recorded, with the place.
    let spec = score(
        "escaper",
        "registry.example.com/test/tools:1",
        "    files:\n      /../../../../../../etc/cron.d/paved:\n        content: x\n",
    );
    let (status, body) = m.call("POST", "/api/v1/specs", &spec);
    assert_eq!(status, 422, "{body}");
    assert!(body.to_string().contains("leaves the container"), "{body}");
    let (status, _) = m.call("GET", "/api/v1/specs/service/escaper", "");
    assert_eq!(status, 404, "nothing recorded");

    // 4. A workload that looks for the keys, the store and the host: it sees its image only,
    //    runs as an unprivileged user, and what it writes stays in its own directory.
    let before = snapshot(&p.data.path().join("keys"));
    let probe = format!(
        "    command: [\"/bin/sh\", \"-c\", \"cat {kek} > $PAVED_ROOT/kek 2>&1; cat {store} > $PAVED_ROOT/store 2>&1; \
         ls -a / > $PAVED_ROOT/root; id -u > $PAVED_ROOT/uid; touch {canary} 2> $PAVED_ROOT/touch; \
         kill -9 1 2> $PAVED_ROOT/kill; exec sleep 600\"]\n",
        kek = kek.display(),
        store = p.data.path().join("state.db").display(),
        canary = canary.display()
    );
    let op = m.apply(&score("snoop", "registry.example.com/test/tools:1", &probe));
    assert_eq!(op["status"], "succeeded", "{op}");
    let uid: u32 = wait_written(&p, "snoop", "uid").trim().parse().unwrap();
    // SAFETY: geteuid has no preconditions.
    assert_ne!(uid, unsafe { libc::geteuid() }, "the workload runs as paved's user");
    assert_ne!(uid, 0);
    assert!(wait_written(&p, "snoop", "kek").contains("No such file"), "the KEK is visible");
    assert!(wait_written(&p, "snoop", "store").contains("No such file"), "the store is visible");
    let listing = wait_written(&p, "snoop", "root");
    let entries: Vec<&str> = listing.lines().filter(|l| !matches!(*l, "." | "..")).collect();
    for absent in ["root", "home", "var", "work", "boot", "sbin"] {
        assert!(!entries.contains(&absent), "/{absent} is visible: {entries:?}");
    }
    assert!(entries.contains(&"bin") && entries.contains(&"tmp"), "{entries:?}");
    assert!(!canary.exists(), "the workload wrote on the host");
    assert_eq!(std::fs::read(&kek).unwrap(), kek_before);
    assert_eq!(snapshot(&p.data.path().join("keys")), before);

    // 5. A secret revealed without the grant: refused, and audited.
    let (status, body) = m.call("POST", "/api/v1/environments/dev/secrets/TOKEN/reveal", "");
    assert_eq!(status, 403, "{body}");
    assert!(!body.to_string().contains("s3cr3t-canary"));
    let audit = p.ok(&["audit", "list", "-o", "json"]);
    assert!(audit.contains("serviceaccount:mallory") && audit.contains("denied"), "{audit}");
    let _ = std::fs::remove_file(&canary);
}
