//! Fills a state store for the API load benchmark (`bench/api-load.sh`):
//! N environments (on the recorded example blueprint and account) with M
//! applied resources each, written straight through the store in batches.
//!
//! Usage: seed_store STATE_URL ENVIRONMENTS RESOURCES_PER_ENVIRONMENT

use paved_store::{AppliedNode, Change, Operation, RequestContext, SqlStore, Store};
use serde_json::json;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let [_, url, envs, per] = args.as_slice() else {
        return Err("usage: seed_store STATE_URL ENVIRONMENTS RESOURCES_PER_ENVIRONMENT".into());
    };
    let (envs, per): (usize, usize) = (envs.parse()?, per.parse()?);
    let store = SqlStore::open(url).await?;
    let at = time::OffsetDateTime::now_utc();
    let started = std::time::Instant::now();
    let names: Vec<String> = (0..envs).map(|i| format!("env-{i:05}")).collect();
    for batch in names.chunks(500) {
        let changes: Vec<Change> = batch
            .iter()
            .map(|name| {
                let doc = json!({
                    "apiVersion": "paved.dev/v1alpha1", "kind": "Environment",
                    "metadata": {"name": name},
                    "spec": {"blueprint": "web-service-standard@1.2.0", "account": "local", "region": "local",
                             "type": "development", "owner": "platform"}
                });
                Change {
                    kind: "Environment".into(),
                    name: name.clone(),
                    expected_generation: None,
                    operation: Operation::Put { content_hash: paved_catalog::content_hash(&doc), spec: doc },
                    actor: "seed".into(),
                    source: None,
                    at,
                    request: RequestContext { request_id: "seed".into(), origin: "seed".into() },
                }
            })
            .collect();
        store.commit(&changes).await?;
    }
    for name in &names {
        for r in 0..per {
            let node = AppliedNode {
                node_id: format!("local.workload/svc-{r:02}"),
                node: json!({"kind": "local.workload", "name": format!("svc-{r:02}"), "properties": {"replicas": 1}}),
                outputs: json!({}),
                updated_at: at,
            };
            store.put_applied_node(name, &node).await?;
        }
    }
    store.close().await;
    eprintln!("seeded {envs} environments with {} resources in {:.1} s", envs * per, started.elapsed().as_secs_f64());
    Ok(())
}
