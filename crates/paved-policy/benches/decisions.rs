//! What policies cost a decision: 50 policies loaded (the example baseline's
//! four and 46 more of the same shape, each with its own package, data and
//! a test module), all applying at every decision point; each point's input
//! as paved builds it (the plan: a production-sized AWS graph of 60 nodes).
//!
//!     cargo bench -p paved-policy --bench decisions [-- ITERATIONS]
//!
//! Prints the compile time of the set, then p50 / p99 / max per decision
//! point over ITERATIONS evaluations (default 1,000), and the same plan
//! decision with one policy, side by side.

use paved_model::{DecisionPoint, Policy, Spec};
use paved_policy::PolicySet;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

fn example_policies() -> Vec<Policy> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/policies");
    let mut out = Vec::new();
    for entry in std::fs::read_dir(&root).expect("examples/policies") {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        let batch =
            paved_spec::check_sources(vec![paved_spec::SourceFile::new(path.display().to_string(), text)], vec![], &[]);
        assert!(!batch.has_errors(), "{} does not validate", path.display());
        for d in batch.documents {
            if let Spec::Policy(p) = d.spec {
                out.push(p);
            }
        }
    }
    out
}

/// A policy like a platform team writes: a tag rule over the plan, a
/// deployment rule, a reveal rule, reading its own data.
fn generated(i: usize) -> Policy {
    let module = format!(
        r#"package paved.generated_{i}

deny_missing_tag contains msg if {{
    some r in input.resources
    startswith(r.type, "aws.")
    r.properties.tags
    not r.properties.tags[data.required_tag]
    msg := sprintf("%s lacks tag %s", [r.id, data.required_tag])
}}

deny_frozen contains msg if {{
    input.deployment
    input.environment.type == "production"
    some window in data.freeze
    input.deployment.at >= window.from
    input.deployment.at < window.until
    msg := sprintf("production is frozen until %s", [window.until])
}}

warn_reveal contains msg if {{
    input.secret
    input.secret.name in data.sensitive
    msg := sprintf("%s is sensitive", [input.secret.name])
}}
"#
    );
    let doc = json!({
        "metadata": {"name": format!("generated-{i}")},
        "spec": {
            "version": "1.0.0",
            "modules": {"main.rego": module, "main_test.rego": format!("package paved.generated_{i}_test\n\ntest_nothing if {{ true }}\n")},
            "data": {"required_tag": "paved:environment", "freeze": [{"from": "2026-12-24T00:00:00Z", "until": "2026-12-27T00:00:00Z"}], "sensitive": [format!("KEY_{i}")]}
        }
    });
    serde_json::from_value(doc).unwrap()
}

fn environment(kind: &str) -> Value {
    json!({"name": "eu-production", "type": kind, "account": "aws-eu", "provider": "aws", "region": "eu-west-1",
           "owner": "platform", "blueprint": "web-service-standard@1.2.0"})
}

fn inputs() -> Vec<(DecisionPoint, Value)> {
    let types = ["aws.security-group", "aws.subnet", "aws.rds-instance", "aws.s3-bucket", "aws.iam-role", "aws.route"];
    let resources: Vec<Value> = (0..60)
        .map(|i| {
            let t = types[i % types.len()];
            json!({"id": format!("{t}/eu-production/r{i}"), "type": t, "action": "create",
                   "properties": {"tags": {"paved:environment": "eu-production"}, "publiclyAccessible": false,
                                  "storageEncrypted": true,
                                  "ingress": [{"protocol": "tcp", "port": 443, "cidr": "10.40.0.0/20"}],
                                  "encryption": {"sseAlgorithm": "aws:kms"},
                                  "publicAccessBlock": {"blockPublicAcls": true, "blockPublicPolicy": true, "ignorePublicAcls": true, "restrictPublicBuckets": true}}})
        })
        .collect();
    let base =
        |d: &str| json!({"apiVersion": "paved.dev/policy-input/v1", "decision": d, "actor": "user:ada@example.com"});
    let with = |d: &str, extra: Value| {
        let mut v = base(d);
        v.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        v
    };
    let deployment =
        json!({"service": "api", "digest": "sha256:0123", "commit": "abc1234", "at": "2026-12-06T10:00:00Z"});
    vec![
        (
            DecisionPoint::Admission,
            with(
                "admission",
                json!({"spec": {"kind": "Service", "name": "api", "document": {"metadata": {"name": "api"}, "containers": {"main": {"image": "x"}}}}}),
            ),
        ),
        (DecisionPoint::Plan, with("plan", json!({"environment": environment("production"), "resources": resources}))),
        (
            DecisionPoint::Deploy,
            with("deploy", json!({"environment": environment("production"), "deployment": deployment})),
        ),
        (
            DecisionPoint::Promote,
            with("promote", json!({"environment": environment("production"), "deployment": deployment})),
        ),
        (
            DecisionPoint::Rollback,
            with("rollback", json!({"environment": environment("production"), "deployment": deployment})),
        ),
        (
            DecisionPoint::SecretReveal,
            with("secret-reveal", json!({"environment": environment("production"), "secret": {"name": "KEY_3"}})),
        ),
        (
            DecisionPoint::Preview,
            with(
                "preview",
                json!({"environment": environment("preview"), "preview": {"of": "dev", "repository": "payments/api", "pullRequest": 42, "sharedSecrets": ["DB_URL"]}}),
            ),
        ),
    ]
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn measure(set: &PolicySet, point: DecisionPoint, input: &Value, iterations: usize) -> Vec<Duration> {
    let now = time::OffsetDateTime::now_utc();
    let mut times: Vec<Duration> = (0..iterations)
        .map(|_| {
            let started = Instant::now();
            let d = set.evaluate(point, input, now);
            let spent = started.elapsed();
            assert!(d.allowed(), "{point}: {:?}", d.denials().next());
            spent
        })
        .collect();
    times.sort();
    times
}

fn main() {
    let iterations: usize = std::env::args().skip(1).find_map(|a| a.parse().ok()).unwrap_or(1000);
    let mut policies = example_policies();
    for p in &mut policies {
        p.spec.decisions.clear(); // every policy at every point: the worst case
    }
    let examples = policies.len();
    policies.extend((0..50 - examples).map(generated));
    let started = Instant::now();
    let set = PolicySet::compile(&policies, &[]).unwrap();
    let compile = started.elapsed();
    println!("{} policies ({examples} from examples/policies), {iterations} evaluations per decision point", set.len());
    println!("RESULT\tpolicy\tcompile {} policies\t{:.1} ms", set.len(), compile.as_secs_f64() * 1e3);
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    for (point, input) in inputs() {
        let t = measure(&set, point, &input, iterations);
        println!(
            "RESULT\tpolicy\t{point}, 50 policies: p50 / p99 / max\t{:.2} / {:.2} / {:.2} ms",
            ms(percentile(&t, 0.5)),
            ms(percentile(&t, 0.99)),
            ms(*t.last().unwrap())
        );
    }
    let one = PolicySet::compile(&policies[..1], &[]).unwrap();
    let (point, input) = inputs().swap_remove(1);
    let t = measure(&one, point, &input, iterations);
    println!(
        "RESULT\tpolicy\tplan, 1 policy: p50 / p99\t{:.2} / {:.2} ms",
        ms(percentile(&t, 0.5)),
        ms(percentile(&t, 0.99))
    );
}
