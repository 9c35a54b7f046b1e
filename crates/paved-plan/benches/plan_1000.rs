//! Plan + no-change diff of 1,000 services in each of 20 local environments,
//! twice side by side: each service's database a built-in `postgres`, then a
//! `mongodb` served by the example blueprint's template provisioner. Prints
//! time per environment, total, and the process's peak memory.
//!
//!     cargo bench -p paved-plan --bench plan_1000
//!     PAVED_BENCH_SERVICES=50 PAVED_BENCH_ENVIRONMENTS=2 cargo bench -p paved-plan --bench plan_1000
//!
//! Every service listens on a port of its own: services share their
//! environment's address on the local provider, so two on one port are refused.

use paved_model::{Kind, Spec};
use paved_plan::{Capabilities, PlanInput, diff, plan};
use paved_spec::SourceFile;
use std::path::Path;
use std::time::Instant;

fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

fn main() {
    for (resource, label) in [("postgres", "built-in postgres"), ("mongodb", "template-provisioned mongodb")] {
        run(resource, label);
    }
}

fn run(resource: &str, label: &str) {
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    let (mut sources, _) = paved_spec::read_path(&examples.join("platform"));
    sources.extend(paved_spec::read_path(&examples.join("environments")).0);
    let count = |name: &str, default: usize| std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default);
    let (n_services, n_envs) = (count("PAVED_BENCH_SERVICES", 1000), count("PAVED_BENCH_ENVIRONMENTS", 20));
    for i in 0..n_envs {
        let t = ["development", "staging", "production", "development"][i % 4];
        sources.push(SourceFile::new(
            format!("env-{i}.yaml"),
            format!("apiVersion: paved.dev/v1alpha1\nkind: Environment\nmetadata:\n  name: bench-{i}\nspec:\n  blueprint: web-service-standard@1.2.0\n  account: local\n  region: local\n  type: {t}\n  owner: platform\n"),
        ));
    }
    for i in 0..n_services {
        let port = 10_000 + i;
        sources.push(SourceFile::new(
            format!("svc-{i}.yaml"),
            [
                "apiVersion: score.dev/v1b1".to_string(),
                "metadata:".into(),
                format!("  name: svc-{i}"),
                format!("service:\n  ports:\n    http:\n      port: {port}\n      targetPort: {port}"),
                "containers:\n  main:".into(),
                format!("    image: registry.example.com/svc-{i}:1"),
                "    variables:".into(),
                "      DB: ${resources.db.host}:${resources.db.port}/${resources.db.username}".into(),
                "      DB_PASSWORD: ${resources.db.password}".into(),
                "      SELF: ${metadata.name}".into(),
                format!("    readinessProbe:\n      httpGet:\n        path: /ready\n        port: {port}"),
                format!("resources:\n  db:\n    type: {resource}\n  dns:\n    type: dns\n"),
            ]
            .join("\n"),
        ));
    }
    let batch = paved_spec::check_sources(sources, vec![], &[]);
    let errors: Vec<String> = batch.diagnostics.iter().filter(|d| d.is_error()).map(|d| d.short()).take(3).collect();
    assert!(errors.is_empty(), "{errors:?}");
    let specs: Vec<Spec> = batch.documents.into_iter().map(|d| d.spec).collect();
    let blueprint = specs.iter().find_map(|s| if let Spec::Blueprint(b) = s { Some(b) } else { None }).unwrap();
    let account = specs
        .iter()
        .find_map(|s| match s {
            Spec::CloudAccount(a) if a.metadata.name == "local" => Some(a),
            _ => None,
        })
        .unwrap();
    let services: Vec<_> = specs.iter().filter_map(|s| if let Spec::Service(w) = s { Some(w) } else { None }).collect();
    let envs: Vec<_> = specs
        .iter()
        .filter(|s| s.kind() == Kind::Environment && s.object_name().starts_with("bench-"))
        .filter_map(|s| if let Spec::Environment(e) = s { Some(e) } else { None })
        .collect();

    let start = Instant::now();
    let mut nodes = 0;
    for env in &envs {
        let input = PlanInput {
            environment: env,
            blueprint,
            account,
            services: services.clone(),
            capabilities: Capabilities { docker: true, redis_server: false, sandbox: true },
            addresses: Default::default(),
            releases: Default::default(),
            host: None,
            zones: None,
        };
        let graph = plan(&input).expect("plans");
        let bytes = graph.to_bytes();
        let unchanged = diff(&graph, Some(&graph)).expect("diffs");
        assert!(unchanged.is_empty());
        nodes += graph.nodes.len();
        std::hint::black_box(bytes);
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "plan_1000 ({label}): {} environments x {} services = {nodes} nodes planned, serialised and diffed (no changes) in {secs:.2} s ({:.0} ms per environment), peak RSS {:.0} MiB",
        envs.len(),
        services.len(),
        secs * 1000.0 / envs.len() as f64,
        peak_rss_mib()
    );
    let what = format!("plan + no-change diff, {} services x {} environments, {label}", services.len(), envs.len());
    println!("RESULT\tplan\t{what}\t{secs:.2} s, peak RSS {:.0} MiB", peak_rss_mib());
}
