//! End-to-end on platform-defined provisioners: the example blueprint's
//! `mongodb` template provisioner planned, applied and read by a real
//! workload (its generated password stable across applies), a template
//! change seen as a change, a broken template blocking only its service
//! with the provisioner, output, resource and service named, and destroy.

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
