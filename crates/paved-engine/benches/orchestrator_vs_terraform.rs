//! paved's orchestrator against `terraform apply` on the same 1,000-node
//! no-op graph, in three shapes (chain, wide, random DAG), side by side in
//! one run. paved applies `null` nodes through its engine into SQLite;
//! Terraform applies `terraform_data` resources (built in, works offline).
//!
//!     cargo bench -p paved-engine --bench orchestrator_vs_terraform
//!
//! `PAVED_BENCH_NODES` changes the node count. Needs `terraform` on PATH.

use paved_engine::{Drivers, Engine, NullDriver, Options, Quiet};
use paved_model::{Clock, Provider};
use paved_plan::{Node, ResourceGraph};
use paved_store::SqlStore;
use serde_json::json;
use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

struct SystemClock;
impl Clock for SystemClock {
    fn now(&self) -> time::OffsetDateTime {
        time::OffsetDateTime::now_utc()
    }
}

/// Edges as "node i depends on these j < i".
fn shape(name: &str, n: usize) -> Vec<BTreeSet<usize>> {
    let mut seed: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    (0..n)
        .map(|i| match name {
            "chain" => (i > 0).then(|| i - 1).into_iter().collect(),
            "wide" => BTreeSet::new(),
            _ => (0..3).filter(|_| i > 0).map(|_| (next() % i as u64) as usize).collect(),
        })
        .collect()
}

fn graph(edges: &[BTreeSet<usize>]) -> ResourceGraph {
    let mut g = ResourceGraph::new(Provider::Local, "bench");
    for (i, deps) in edges.iter().enumerate() {
        g.add(Node::new("null", &format!("n{i}"), json!({"i": i})).after(deps.iter().map(|d| format!("null/n{d}"))));
    }
    g
}

fn terraform_json(edges: &[BTreeSet<usize>]) -> String {
    let resources: serde_json::Map<String, serde_json::Value> = edges
        .iter()
        .enumerate()
        .map(|(i, deps)| {
            let depends: Vec<String> = deps.iter().map(|d| format!("terraform_data.n{d}")).collect();
            (format!("n{i}"), json!({"input": i, "depends_on": depends}))
        })
        .collect();
    json!({"resource": {"terraform_data": resources}}).to_string()
}

fn terraform(dir: &Path, args: &[&str]) -> f64 {
    let rc = dir.join("empty.tfrc");
    std::fs::write(&rc, "").unwrap();
    let start = Instant::now();
    let out = Command::new("terraform")
        .args(args)
        .current_dir(dir)
        .env("CHECKPOINT_DISABLE", "1")
        .env("TF_CLI_CONFIG_FILE", &rc)
        .env("TF_IN_AUTOMATION", "1")
        .output()
        .expect("terraform on PATH");
    assert!(out.status.success(), "terraform {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    start.elapsed().as_secs_f64()
}

async fn paved(g: &ResourceGraph, dir: &Path) -> (f64, f64) {
    let store = Arc::new(SqlStore::open(&format!("sqlite://{}", dir.join("state.db").display())).await.unwrap());
    let engine = Engine::new(store, Drivers::default().with("null", Arc::new(NullDriver)), Arc::new(SystemClock));
    let opts = Options { parallelism: 10, ..Options::default() };
    let run = || engine.apply(g, &opts, Arc::new(AtomicBool::new(false)), Arc::new(Quiet));
    let start = Instant::now();
    assert!(run().await.unwrap().succeeded());
    let create = start.elapsed().as_secs_f64();
    let start = Instant::now();
    assert!(run().await.unwrap().succeeded());
    (create, start.elapsed().as_secs_f64())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let n: usize = std::env::var("PAVED_BENCH_NODES").ok().and_then(|v| v.parse().ok()).unwrap_or(1000);
    println!("{n} no-op nodes, parallelism 10 for both; seconds (lower is better)\n");
    println!(
        "{:<8} {:>14} {:>14} {:>8}   {:>14} {:>14} {:>8}",
        "shape", "paved apply", "tf apply", "ratio", "paved no-op", "tf no-op", "ratio"
    );
    for name in ["chain", "wide", "random"] {
        let edges = shape(name, n);
        let dir = tempfile::tempdir().unwrap();
        let (p_create, p_noop) = paved(&graph(&edges), dir.path()).await;
        let tf = dir.path().join("tf");
        std::fs::create_dir(&tf).unwrap();
        std::fs::write(tf.join("main.tf.json"), terraform_json(&edges)).unwrap();
        terraform(&tf, &["init", "-input=false", "-no-color"]);
        let t_create = terraform(&tf, &["apply", "-auto-approve", "-input=false", "-no-color", "-parallelism=10"]);
        let t_noop = terraform(&tf, &["apply", "-auto-approve", "-input=false", "-no-color", "-parallelism=10"]);
        println!(
            "{name:<8} {p_create:>14.2} {t_create:>14.2} {:>8.2}   {p_noop:>14.2} {t_noop:>14.2} {:>8.2}",
            p_create / t_create,
            p_noop / t_noop
        );
        println!(
            "RESULT\torchestrator\t{n} no-op nodes, {name}: paved / terraform apply\t{p_create:.2} s / {t_create:.2} s = {:.0}x faster",
            t_create / p_create
        );
    }
    println!("\nratio = paved / terraform");
}
