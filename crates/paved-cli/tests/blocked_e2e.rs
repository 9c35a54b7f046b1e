//! End-to-end on a broken service among working ones: any well-formed Score
//! file is recorded, a resource nothing provisions blocks only its own
//! service (reported by plan, apply, status and the audit log), the rest of
//! the environment applies, and what a blocked service runs stays running.

mod support;

use serde_json::Value;
use support::Platform;

const ORDERS: &str = "apiVersion: score.dev/v1b1\nmetadata:\n  name: orders\n  annotations:\n    \
paved.dev/owner: payments\ncontainers:\n  main:\n    image: registry.example.com/payments/api:1.4.2\n    \
variables:\n      CASSANDRA_KEYSPACE: ${resources.bus.name}\n\
resources:\n  bus:\n    type: cassandra\n    class: durable\n";

fn status(p: &Platform) -> Vec<Value> {
    serde_json::from_str::<Value>(&p.ok(&["status", "-o", "json"])).unwrap().as_array().unwrap().clone()
}

fn row<'a>(rows: &'a [Value], service: &str, env: &str) -> &'a Value {
    rows.iter().find(|r| r["service"] == service && r["environment"] == env).unwrap()
}

#[test]
fn an_unprovisionable_service_is_blocked_alone_and_what_runs_stays() {
    let p = Platform::new();
    let _down = support::Down::of(&p);
    p.ok(&["up"]);

    // Score's resource types are open: the file is valid and recorded.
    p.ok_with_input(&["validate", "-f", "-"], ORDERS);
    p.ok_with_input(&["apply", "-f", "-"], ORDERS);

    // The plan leaves orders out, says why, and plans the rest.
    let plan = p.ok(&["plan", "-e", "dev"]);
    assert!(
        plan.contains(
            "blocked: service `orders` is left out (the rest applies; what it runs stays): service `orders`: resource `bus` has type `cassandra` (class `durable`), which nothing provisions on the local provider"
        ),
        "{plan}"
    );
    let json: Value = serde_json::from_str(&p.ok(&["plan", "-e", "dev", "-o", "json"])).unwrap();
    assert!(json["blocked"]["orders"][0].as_str().unwrap().contains("`cassandra`"), "{json}");

    // The apply goes through for the others and reports the blocked one.
    let out = p.ok(&["apply", "-e", "dev"]);
    assert!(out.contains("blocked: service `orders` was left out"), "{out}");
    let rows = status(&p);
    assert!(row(&rows, "orders", "dev")["blocked"].as_str().unwrap().contains("`cassandra`"), "{rows:?}");
    assert_eq!(row(&rows, "orders", "dev")["health"], "not-applied");
    assert_eq!(row(&rows, "api", "dev")["health"], "applied", "{rows:?}");
    assert!(row(&rows, "api", "dev")["blocked"].is_null());
    let table = p.ok(&["status"]);
    assert!(table.contains("blocked: orders in dev was left out of its last apply"), "{table}");
    let audit: Value =
        serde_json::from_str(&p.ok(&["audit", "list", "--action", "environment.apply", "-o", "json"])).unwrap();
    let last = audit.as_array().unwrap().last().unwrap();
    assert_eq!(last["outcome"], "succeeded", "{last}");
    assert!(last["details"]["blocked"]["orders"].is_array(), "{last}");
    // Nothing to deploy it to.
    let out =
        p.command(&["deploy", "orders", "-e", "dev", "--artifact", &format!("sha256:{}", "a".repeat(64))]).output();
    assert!(!out.unwrap().status.success());

    // A running service whose new spec cannot be provisioned keeps running as it was:
    // nothing is destroyed while it is blocked.
    let api = std::fs::read_to_string(support::repo_root().join("examples/services/api.score.yaml")).unwrap();
    let broken = api.replace("resources:\n  db:\n", "resources:\n  docs:\n    type: solr\n  db:\n");
    p.ok_with_input(&["apply", "-f", "-"], &broken);
    let plan = p.ok(&["plan", "-e", "dev"]);
    assert!(plan.contains("blocked: service `api`") && plan.contains("0 to destroy"), "{plan}");
    p.ok(&["apply", "-e", "dev"]);
    let rows = status(&p);
    assert_eq!(row(&rows, "api", "dev")["health"], "applied", "{rows:?}");
    assert!(row(&rows, "api", "dev")["blocked"].as_str().unwrap().contains("`solr`"), "{rows:?}");
    p.ok(&["drift", "-e", "dev"]);

    // Fixed, everything converges and nothing is blocked any more.
    p.ok_with_input(&["apply", "-f", "-"], &api);
    p.ok(&["delete", "service", "orders"]);
    let out = p.ok(&["apply", "-e", "dev"]);
    assert!(!out.contains("blocked"), "{out}");
    let rows = status(&p);
    assert!(rows.iter().all(|r| r["blocked"].is_null()), "{rows:?}");
}
