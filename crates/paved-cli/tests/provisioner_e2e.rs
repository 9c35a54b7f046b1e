//! End-to-end on platform-defined provisioners: the example blueprint's
//! `mongodb` template provisioner planned, applied and read by a real
//! workload (its generated password stable across applies), a template
//! change seen as a change, a broken template blocking only its service
//! with the provisioner, output, resource and service named, and destroy.
//! Then a command provisioner (a program that creates topics on a test
//! broker) and a Terraform module provisioner, each through apply, a change,
//! bad answers, kill -9 and destroy.

mod support;

use std::path::PathBuf;
use std::time::{Duration, Instant};
use support::Platform;

const CATALOG: &str = "apiVersion: score.dev/v1b1\nmetadata:\n  name: catalog\n  annotations:\n    \
paved.dev/owner: platform\ncontainers:\n  main:\n    image: registry.example.com/test/tools:1\n    \
command: [\"/bin/sh\", \"-c\", \"echo \\\"$MONGO_URL\\\" > $PAVED_ROOT/url; exec sleep 600\"]\n    \
variables:\n      MONGO_URL: ${resources.store.connection}\nresources:\n  store:\n    type: mongodb\n";

fn url_file(p: &Platform) -> PathBuf {
    p.data.path().join("local/envs/dev/workloads/catalog/slots/blue/containers/main/root/url")
}

/// The URL the workload was started with, once it differs from `not`.
fn url_seen(p: &Platform, not: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(text) = std::fs::read_to_string(url_file(p))
            && !text.trim().is_empty()
            && text.trim() != not
        {
            return text.trim().to_string();
        }
        assert!(Instant::now() < deadline, "the workload never wrote a new URL:\n{}", p.ok(&["status"]));
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn blueprint() -> String {
    std::fs::read_to_string(support::repo_root().join("examples/platform/blueprint-web-service-standard.yaml")).unwrap()
}

#[test]
fn a_template_provisioner_serves_a_type_paved_does_not_build_in() {
    let p = Platform::new();
    let _down = support::Down::of(&p);
    p.ok(&["apply", "-f", "examples/platform"]);
    p.ok(&["apply", "-f", "examples/environments/local.yaml"]);
    let tools = support::tools_bundle(&p.data.path().join("tools"), &["sh", "sleep"]);
    p.ok(&["image", "import", tools.to_str().unwrap(), "--tag", "registry.example.com/test/tools:1"]);
    p.ok_with_input(&["apply", "-f", "-"], CATALOG);

    let plan = p.ok(&["plan", "-e", "dev"]);
    assert!(plan.contains("+ paved.template/catalog-store") && plan.contains("+ paved.secret/catalog-store--password"));
    assert!(!plan.contains("blocked"), "{plan}");
    p.ok(&["apply", "-e", "dev"]);
    let url = url_seen(&p, "");
    let password = url
        .strip_prefix("mongodb://catalog-store:")
        .and_then(|rest| rest.strip_suffix("@mongo.dev.internal:27017/catalog-store"))
        .unwrap_or_else(|| panic!("unexpected URL {url}"));
    assert_eq!(password.len(), 32, "{url}");
    // The generated password is sealed: not in the graph, the plan or the state's node.
    let graph = p.ok(&["plan", "-e", "dev", "--graph"]);
    assert!(!graph.contains(password) && graph.contains("${ref:paved.secret/catalog-store--password.value}"));

    // A second apply changes nothing; the password stays.
    assert!(p.ok(&["plan", "-e", "dev"]).contains("0 to add, 0 to change, 0 to replace, 0 to destroy"));
    p.ok(&["apply", "-e", "dev"]);
    assert_eq!(std::fs::read_to_string(url_file(&p)).unwrap().trim(), url);

    // The platform team moves the cluster: a changed output is a change, and the workload gets it.
    let moved =
        blueprint().replace("mongo.${environment.name}.internal:27017", "mongo2.${environment.name}.internal:27017");
    p.ok_with_input(&["apply", "-f", "-"], &moved);
    let plan = p.ok(&["plan", "-e", "dev"]);
    assert!(plan.contains("~ paved.template/catalog-store"), "{plan}");
    p.ok(&["apply", "-e", "dev"]);
    let new_url = url_seen(&p, &url);
    assert_eq!(new_url, format!("mongodb://catalog-store:{password}@mongo2.dev.internal:27017/catalog-store"));

    // A template reading an input that does not exist is refused when recorded, at its line.
    let broken = blueprint().replace("port: \"27017\"", "port: ${parameters.mongoPort}");
    let mut apply = p.command(&["apply", "-f", "-"]);
    apply.stdin(std::process::Stdio::piped()).stderr(std::process::Stdio::piped());
    let mut child = apply.spawn().unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), broken.as_bytes()).unwrap();
    let refused = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "{err}");
    assert!(err.contains("`${parameters.mongoPort}`: the blueprint has no parameter `mongoPort`"), "{err}");
    let line = broken.lines().position(|l| l.contains("${parameters.mongoPort}")).unwrap() + 1;
    assert!(err.contains("spec.provisioners[0].template.outputs.port"), "{err}");
    assert!(err.contains(&format!("<stdin>:{line}:17")), "{err}");
    // One that needs what a resource does not give: that service is blocked at plan time with
    // every name needed to fix it, the rest applies, and the fix converges.
    let needs_params = blueprint().replace("port: \"27017\"", "port: ${params.port}");
    p.ok_with_input(&["apply", "-f", "-"], &needs_params);
    let plan = p.ok(&["plan", "-e", "dev"]);
    assert!(
        plan.contains(
            "blocked: service `catalog` is left out (the rest applies; what it runs stays): service `catalog`: resource `store`: blueprint `web-service-standard` spec.provisioners[0] (type `mongodb`), output `port`: `${params.port}`: the resource sets no such `params` entry"
        ),
        "{plan}"
    );
    p.ok(&["apply", "-e", "dev"]);
    p.ok_with_input(&["apply", "-f", "-"], &blueprint());
    let out = p.ok(&["apply", "-e", "dev"]);
    assert!(!out.contains("blocked"), "{out}");
    assert_eq!(url_seen(&p, &new_url), url, "back on the first cluster, same password");

    // Destroy removes its nodes with the rest.
    p.ok(&["destroy", "-e", "dev"]);
    let plan = p.ok(&["plan", "-e", "dev"]);
    assert!(plan.contains("+ paved.template/catalog-store"), "{plan}");

    // kill -9 in the middle of applying it, at a few points: the next apply converges to one
    // password the workload and the state agree on, and nothing is left to do.
    for delay in [50, 250, 600] {
        let mut killed = p.command(&["apply", "-e", "dev"]).spawn().unwrap();
        std::thread::sleep(Duration::from_millis(delay));
        let _ = killed.kill();
        killed.wait().unwrap();
        p.ok(&["apply", "-e", "dev"]);
        assert!(p.ok(&["plan", "-e", "dev"]).contains("0 to add, 0 to change, 0 to replace, 0 to destroy"));
        let seen = url_seen(&p, "");
        let password = seen.strip_prefix("mongodb://catalog-store:").and_then(|r| r.split_once('@')).map(|(pw, _)| pw);
        assert_eq!(password.map(str::len), Some(32), "{seen}");
        p.ok(&["destroy", "-e", "dev"]);
        let _ = std::fs::remove_file(url_file(&p));
    }
}

/// The example blueprint with `extra` provisioners first.
fn blueprint_with(extra: &str) -> String {
    blueprint().replacen("  provisioners:\n", &format!("  provisioners:\n{extra}"), 1)
}

/// Records what is sent to it, one line per connection (a stand-in for a
/// message broker's admin API).
struct Broker {
    port: u16,
    seen: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Broker {
    fn start() -> Broker {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let log = seen.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let mut line = String::new();
                let _ = std::io::BufRead::read_line(&mut std::io::BufReader::new(conn), &mut line);
                log.lock().unwrap().push(line.trim().to_string());
            }
        });
        Broker { port, seen }
    }

    fn seen(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }
}

/// A provisioner program: creates and deletes topics on the broker named by
/// its first argument; `params.mode` makes it misbehave; `sees` lists which
/// of the other arguments (host paths) exist inside its sandbox.
const TOPICS: &str = r#"#!/usr/bin/python3
import json, os, socket, sys, time
req = json.load(sys.stdin)
res, params = req["resource"], req["resource"]["params"]
host, port = sys.argv[1].split(":")
def send(line):
    with socket.create_connection((host, int(port))) as s:
        s.sendall((line + "\n").encode())
if req["action"] == "delete":
    send("DELETE " + res["id"])
    sys.exit(0)
mode = params.get("mode", "")
if mode == "slow":
    time.sleep(30)
if mode == "fail":
    print("broker refused: topic quota reached", file=sys.stderr)
    sys.exit(3)
if mode == "invalid":
    print("created topic, all good")
    sys.exit(0)
send("CREATE %s partitions=%s env=%s" % (res["id"], params.get("partitions", 1), req["environment"]["name"]))
out = {"topic": res["id"], "partitions": str(params.get("partitions", 1)), "password": "pw-" + res["id"]}
if mode == "short":
    del out["topic"]
out["sees"] = ",".join(p for p in sys.argv[2:] if os.path.exists(p)) or "nothing"
print(json.dumps({"outputs": out}))
"#;

fn orders(params: &str) -> String {
    format!(
        "apiVersion: score.dev/v1b1\nmetadata:\n  name: orders\n  annotations:\n    paved.dev/owner: platform\n\
         containers:\n  main:\n    image: registry.example.com/test/tools:1\n    \
         command: [\"/bin/sh\", \"-c\", \"echo \\\"$TOPIC $PARTS $PASSWORD $SEES\\\" > $PAVED_ROOT/seen; exec sleep 600\"]\n    \
         variables:\n      TOPIC: ${{resources.events.topic}}\n      PARTS: ${{resources.events.partitions}}\n      \
         PASSWORD: ${{resources.events.password}}\n      SEES: ${{resources.events.sees}}\n\
         resources:\n  events:\n    type: kafka-topic\n    params: {params}\n"
    )
}

fn seen_file(p: &Platform, service: &str) -> PathBuf {
    p.data.path().join(format!("local/envs/dev/workloads/{service}/slots/blue/containers/main/root/seen"))
}

/// What the workload wrote, once it differs from `not`.
fn written(p: &Platform, service: &str, not: &str) -> String {
    support::wait_for(&format!("{service} to write what it was given"), 30, || {
        std::fs::read_to_string(seen_file(p, service))
            .ok()
            .map(|t| t.trim().to_string())
            .filter(|t| !t.is_empty() && t != not)
    })
}

/// `paved apply -e dev`'s failure: its stderr and stdout together.
fn failed_apply(p: &Platform) -> String {
    let out = p.command(&["apply", "-e", "dev"]).output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(!out.status.success(), "the apply should fail:\n{text}");
    text
}

fn platform_with_tools() -> Platform {
    let p = Platform::new();
    p.ok(&["apply", "-f", "examples/platform"]);
    p.ok(&["apply", "-f", "examples/environments/local.yaml"]);
    let tools = support::tools_bundle(&p.data.path().join("tools"), &["sh", "sleep"]);
    p.ok(&["image", "import", tools.to_str().unwrap(), "--tag", "registry.example.com/test/tools:1"]);
    p
}

#[test]
fn a_command_provisioner_runs_the_platforms_program_sandboxed_and_its_answers_are_checked() {
    let p = platform_with_tools();
    let _down = support::Down::of(&p);
    let broker = Broker::start();
    let programs = p.data.path().join("provisioners");
    std::fs::create_dir_all(&programs).unwrap();
    let program = programs.join("topics");
    std::fs::write(&program, TOPICS).unwrap();
    std::fs::set_permissions(&program, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    // Paths the program looks for: paved's state store, its key-encryption key and root's home
    // must not exist inside its sandbox; the host's programs do.
    let data = p.data.path().display().to_string();
    let provisioner = format!(
        "    - type: kafka-topic\n      command:\n        program: topics\n        \
         args: [\"127.0.0.1:{}\", \"{data}/state.db\", \"{data}/keys/kek\", \"/root\", \"/usr/bin/python3\"]\n        \
         timeout: 3s\n        outputs: [topic, partitions, sees]\n        secrets: [password]\n",
        broker.port
    );
    p.ok_with_input(&["apply", "-f", "-"], &blueprint_with(&provisioner));
    p.ok_with_input(&["apply", "-f", "-"], &orders("{partitions: 3}"));

    let plan = p.ok(&["plan", "-e", "dev"]);
    assert!(plan.contains("+ paved.command/orders-events"), "{plan}");
    p.ok(&["apply", "-e", "dev"]);
    // The workload got the program's outputs; inside its sandbox the program saw the host's
    // programs but nothing of paved's data directory or root's home.
    assert_eq!(written(&p, "orders", ""), "orders-events 3 pw-orders-events /usr/bin/python3");
    assert_eq!(broker.seen(), ["CREATE orders-events partitions=3 env=dev"]);
    // The secret output is sealed: not in the state store's bytes.
    for file in ["state.db", "state.db-wal"] {
        let bytes = std::fs::read(p.data.path().join(file)).unwrap_or_default();
        assert!(!bytes.windows(16).any(|w| w == b"pw-orders-events"), "the secret is in {file} in the clear");
    }

    // Nothing changed: the program is not run again.
    assert!(p.ok(&["plan", "-e", "dev"]).contains("0 to add, 0 to change, 0 to replace, 0 to destroy"));
    p.ok(&["apply", "-e", "dev"]);
    assert_eq!(broker.seen().len(), 1);

    // A changed input is a change: the program runs again and the workload gets its new answer.
    p.ok_with_input(&["apply", "-f", "-"], &orders("{partitions: 6}"));
    assert!(p.ok(&["plan", "-e", "dev"]).contains("~ paved.command/orders-events"));
    p.ok(&["apply", "-e", "dev"]);
    assert_eq!(
        written(&p, "orders", "orders-events 3 pw-orders-events /usr/bin/python3"),
        "orders-events 6 pw-orders-events /usr/bin/python3"
    );
    assert_eq!(broker.seen().last().unwrap(), "CREATE orders-events partitions=6 env=dev");

    // Bad answers: each named with the program, the resource and its node; nothing recorded;
    // the workload keeps what it had.
    let cases = [
        ("{partitions: 6, mode: invalid}", "provisioner program `topics` printed invalid JSON on stdout"),
        (
            "{partitions: 6, mode: fail}",
            "provisioner program `topics` failed (apply, exit 3): broker refused: topic quota reached",
        ),
        (
            "{partitions: 6, mode: short}",
            "provisioner program `topics` omits the declared output `topic` (it answered `partitions`, `password`, `sees`)",
        ),
        (
            "{partitions: 6, mode: slow}",
            "provisioner program `topics` (apply) did not finish within 3s and was stopped",
        ),
    ];
    for (params, message) in cases {
        p.ok_with_input(&["apply", "-f", "-"], &orders(params));
        let err = failed_apply(&p);
        assert!(err.contains(message) && err.contains("paved.command/orders-events"), "{message}:\n{err}");
        assert!(err.contains("resource `events`"), "{err}");
        assert!(p.ok(&["plan", "-e", "dev"]).contains("~ paved.command/orders-events"), "recorded after a failure");
    }
    assert_eq!(written(&p, "orders", ""), "orders-events 6 pw-orders-events /usr/bin/python3");
    // Fixed: converges.
    p.ok_with_input(&["apply", "-f", "-"], &orders("{partitions: 6}"));
    p.ok(&["apply", "-e", "dev"]);
    assert!(p.ok(&["plan", "-e", "dev"]).contains("0 to add, 0 to change, 0 to replace, 0 to destroy"));

    // A program the administrator did not install cannot be named.
    p.ok_with_input(&["apply", "-f", "-"], &blueprint_with(&provisioner.replace("program: topics", "program: sh")));
    p.ok_with_input(&["apply", "-f", "-"], &orders("{partitions: 7}"));
    let err = failed_apply(&p);
    assert!(
        err.contains(
            "provisioner program `sh` is not installed: the server runs only programs in its provisioner directory"
        ),
        "{err}"
    );
    p.ok_with_input(&["apply", "-f", "-"], &blueprint_with(&provisioner));

    // Destroy asks the program to delete what it made.
    p.ok(&["destroy", "-e", "dev"]);
    assert_eq!(broker.seen().last().unwrap(), "DELETE orders-events");

    // kill -9 in the middle of an apply: the next one converges with nothing left to do.
    for delay in [100, 400, 900] {
        let mut killed = p.command(&["apply", "-e", "dev"]).spawn().unwrap();
        std::thread::sleep(Duration::from_millis(delay));
        let _ = killed.kill();
        killed.wait().unwrap();
        p.ok(&["apply", "-e", "dev"]);
        assert!(p.ok(&["plan", "-e", "dev"]).contains("0 to add, 0 to change, 0 to replace, 0 to destroy"));
        assert_eq!(written(&p, "orders", ""), "orders-events 7 pw-orders-events /usr/bin/python3");
        p.ok(&["destroy", "-e", "dev"]);
        let _ = std::fs::remove_file(seen_file(&p, "orders"));
    }
    assert_eq!(broker.seen().last().unwrap(), "DELETE orders-events");
}

/// A module of Terraform's built-in `terraform_data` only (no provider can
/// be downloaded here): a queue named per environment and resource.
const QUEUE_MODULE: &str = r#"
variable "name" { type = string }
variable "environment" { type = string }
resource "terraform_data" "queue" { input = "${var.environment}/${var.name}" }
output "url" { value = "amqp://queues.internal/${terraform_data.queue.output}" }
output "token" {
  value     = "t-${terraform_data.queue.id}"
  sensitive = true
}
"#;

fn jobs() -> String {
    "apiVersion: score.dev/v1b1\nmetadata:\n  name: jobs\n  annotations:\n    paved.dev/owner: platform\n\
     containers:\n  main:\n    image: registry.example.com/test/tools:1\n    \
     command: [\"/bin/sh\", \"-c\", \"echo \\\"$URL $TOKEN\\\" > $PAVED_ROOT/seen; exec sleep 600\"]\n    \
     variables:\n      URL: ${resources.queue.url}\n      TOKEN: ${resources.queue.token}\n\
     resources:\n  queue:\n    type: work-queue\n"
        .into()
}

#[test]
fn a_terraform_module_provisioner_applies_per_resource_with_paved_keeping_its_state() {
    let p = platform_with_tools();
    let _down = support::Down::of(&p);
    let module = p.data.path().join("provisioners/queue");
    std::fs::create_dir_all(&module).unwrap();
    std::fs::write(module.join("main.tf"), QUEUE_MODULE).unwrap();
    let provisioner = "    - type: work-queue\n      terraform:\n        module: queue\n        \
                       variables:\n          name: ${resource.id}\n          environment: ${environment.name}\n        \
                       outputs: [url]\n        secrets: [token]\n";
    p.ok_with_input(&["apply", "-f", "-"], &blueprint_with(provisioner));
    p.ok_with_input(&["apply", "-f", "-"], &jobs());
    assert!(p.ok(&["plan", "-e", "dev"]).contains("+ paved.terraform/jobs-queue"));
    p.ok(&["apply", "-e", "dev"]);
    let first = written(&p, "jobs", "");
    let (url, token) = first.split_once(' ').unwrap();
    assert_eq!(url, "amqp://queues.internal/dev/jobs-queue");
    assert!(token.starts_with("t-") && token.len() == 38, "{first}");
    let state = p.data.path().join("local/provisioners/dev/jobs-queue/terraform.tfstate");
    assert!(state.is_file(), "paved keeps the module's state");

    // Applied again: Terraform's plan finds nothing to do; the token stays.
    assert!(p.ok(&["plan", "-e", "dev"]).contains("0 to add, 0 to change, 0 to replace, 0 to destroy"));
    p.ok(&["apply", "-e", "dev"]);
    assert_eq!(written(&p, "jobs", ""), first);

    // The platform team edits the module: the next apply applies it and the workload gets the new URL.
    std::fs::write(module.join("main.tf"), QUEUE_MODULE.replace("queues.internal", "queues2.internal")).unwrap();
    p.ok(&["apply", "-e", "dev"]);
    assert_eq!(written(&p, "jobs", &first), format!("amqp://queues2.internal/dev/jobs-queue {token}"));

    // A failing module: Terraform's error, the module and the node named; nothing recorded.
    std::fs::write(module.join("main.tf"), QUEUE_MODULE.replace("var.environment", "var.region")).unwrap();
    let err = failed_apply(&p);
    assert!(err.contains("terraform module `queue` failed") && err.contains("paved.terraform/jobs-queue"), "{err}");
    assert!(err.contains("Reference to undeclared input variable"), "{err}");
    // A sensitive output not listed under `secrets` is refused rather than stored in the clear.
    std::fs::write(
        module.join("main.tf"),
        QUEUE_MODULE
            .replace("sensitive = true", "sensitive = true\n}\noutput \"key\" {\n  value = \"k\"\n  sensitive = true"),
    )
    .unwrap();
    let err = failed_apply(&p);
    assert!(
        err.contains(
            "output `key` is sensitive, so paved keeps it sealed only if the provisioner lists it under `secrets`"
        ),
        "{err}"
    );
    std::fs::write(module.join("main.tf"), QUEUE_MODULE).unwrap();
    p.ok(&["apply", "-e", "dev"]);
    assert_eq!(written(&p, "jobs", ""), first);

    // Destroy runs `terraform destroy` and forgets the state.
    p.ok(&["destroy", "-e", "dev"]);
    assert!(!state.exists());

    // kill -9 mid-apply: the next apply converges; the workload and the state agree on one token.
    for delay in [200, 700, 1500] {
        let mut killed = p.command(&["apply", "-e", "dev"]).spawn().unwrap();
        std::thread::sleep(Duration::from_millis(delay));
        let _ = killed.kill();
        killed.wait().unwrap();
        p.ok(&["apply", "-e", "dev"]);
        assert!(p.ok(&["plan", "-e", "dev"]).contains("0 to add, 0 to change, 0 to replace, 0 to destroy"));
        let seen = written(&p, "jobs", "");
        let token = seen.split_once(' ').unwrap().1.to_string();
        let kept = std::fs::read_to_string(&state).unwrap();
        assert!(kept.contains(token.trim_start_matches("t-")), "the workload's token is not the state's: {seen}");
        p.ok(&["destroy", "-e", "dev"]);
        let _ = std::fs::remove_file(seen_file(&p, "jobs"));
    }
}

#[test]
fn a_files_binary_content_and_source_reach_the_workload_byte_for_byte() {
    let p = platform_with_tools();
    let _down = support::Down::of(&p);
    let score = "apiVersion: score.dev/v1b1\nmetadata:\n  name: badge\n  annotations:\n    paved.dev/owner: platform\n\
                 containers:\n  main:\n    image: registry.example.com/test/tools:1\n    command: [\"/bin/sh\", \"-c\", \"exec sleep 600\"]\n    \
                 files:\n      /srv/badge.bin:\n        binaryContent: AP8QaGkK\n        mode: \"0600\"\n";
    p.ok_with_input(&["apply", "-f", "-"], score);
    p.ok(&["apply", "-e", "dev"]);
    let file = p.data.path().join("local/envs/dev/workloads/badge/slots/blue/containers/main/root/srv/badge.bin");
    let bytes = support::wait_for("the file", 30, || std::fs::read(&file).ok());
    assert_eq!(bytes, [0x00, 0xff, 0x10, b'h', b'i', b'\n']);
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&file).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);

    // Not base64: refused when recorded, at the field.
    let mut apply = p.command(&["apply", "-f", "-"]);
    apply.stdin(std::process::Stdio::piped()).stderr(std::process::Stdio::piped());
    let mut child = apply.spawn().unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), score.replace("AP8QaGkK", "not*base64").as_bytes())
        .unwrap();
    let refused = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success() && err.contains("binaryContent is not base64"), "{err}");
    assert!(err.contains("<stdin>:12:24"), "{err}");

    // A `source` is read beside the Score file when it is applied: text becomes `content`
    // (placeholders expanded), anything else `binaryContent`.
    let dir = p.data.path().join("motd");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("motd.txt"), "welcome to ${metadata.name}\n").unwrap();
    std::fs::write(dir.join("logo.bin"), [0u8, 1, 2, 0xfe]).unwrap();
    let sourced = score
        .replace("badge", "motd")
        .replace("binaryContent: AP8QaGkK", "source: motd.txt")
        .replace("      /srv/motd.bin:\n", "      /srv/motd.txt:\n")
        + "      /srv/logo.bin:\n        source: ./logo.bin\n";
    std::fs::write(dir.join("score.yaml"), &sourced).unwrap();
    p.ok(&["apply", "-f", dir.join("score.yaml").to_str().unwrap()]);
    let out = p.ok(&["apply", "-e", "dev"]);
    assert!(!out.contains("blocked"), "{out}");
    let root = p.data.path().join("local/envs/dev/workloads/motd/slots/blue/containers/main/root/srv");
    let text = support::wait_for("motd's files", 30, || std::fs::read_to_string(root.join("motd.txt")).ok());
    assert_eq!(text, "welcome to motd\n");
    assert_eq!(std::fs::read(root.join("logo.bin")).unwrap(), [0u8, 1, 2, 0xfe]);
    // A file that is not there: refused when applied, at the `source:` value, nothing recorded.
    std::fs::remove_file(dir.join("logo.bin")).unwrap();
    let refused = p.command(&["apply", "-f", dir.join("score.yaml").to_str().unwrap()]).output().unwrap();
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success() && err.contains("`source: ./logo.bin`: cannot read"), "{err}");
    let line = sourced.lines().position(|l| l.contains("source: ./logo.bin")).unwrap() + 1;
    assert!(err.contains(&format!("score.yaml:{line}:17")), "{err}");
    assert_eq!(std::fs::read(&file).unwrap(), [0x00, 0xff, 0x10, b'h', b'i', b'\n'], "badge keeps running");
}
