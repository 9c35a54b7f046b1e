//! The secret-store side of a cluster environment: for each service whose
//! rendered manifests read values from the cloud's secret store (variables
//! holding resource outputs or secrets, see `paved-k8s`), a node of the
//! environment's graph that writes them there. The values stay templates in
//! the graph (`${ref:…}`, `${secret:…}`); the engine resolves them for the
//! apply only, so no value is planned, stored in state or shown.
//!
//! | rendered | AWS node |
//! |---|---|
//! | `Tree::secrets[SERVICE]` | `aws.secret/SERVICE`: `paved/ENV/SERVICE` in Secrets Manager, the environment's KMS key, the service's tags; after the environment's key and every node its values name |
//!
//! This composition lives here because the rendering is made from the
//! plan (`paved-k8s` depends on `paved-plan`), so the plan cannot hold it.

use paved_plan::{Node, ResourceGraph};
use serde_json::{Value, json};

/// Adds the secret nodes of `tree` to an AWS environment's `graph`.
pub(crate) fn add_aws(graph: &mut ResourceGraph, tree: &paved_k8s::Tree) {
    let env = graph.environment.clone();
    let kms = format!("aws.kms-key/{env}");
    for (service, values) in &tree.secrets {
        let mut after = vec![kms.clone()];
        for template in values.values() {
            after.extend(references(template).into_iter().filter(|id| graph.nodes.contains_key(id)));
        }
        after.sort();
        after.dedup();
        // The service's tags, as the translation gave its other nodes.
        let tags = graph
            .nodes
            .get(&format!("aws.security-group/{service}"))
            .map(|n| n.properties["tags"].clone())
            .unwrap_or_else(
                || json!({"paved:environment": env, "paved:managed-by": "paved", "paved:service": service}),
            );
        let values: serde_json::Map<String, Value> =
            values.iter().map(|(k, v)| (k.clone(), Value::String(v.clone()))).collect();
        graph.add(
            Node::new(
                "aws.secret",
                service,
                json!({
                    "name": paved_k8s::secret_name(&env, service),
                    "kmsKeyId": format!("${{ref:{kms}.arn}}"),
                    "values": values,
                    "tags": tags,
                }),
            )
            .after(after)
            .outputs(&["arn"]),
        );
    }
}

/// The nodes a template's `${ref:NODE.OUTPUT}` references name (`$${` is a
/// literal and names nothing).
fn references(template: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = template;
    while let Some(i) = rest.find("${") {
        let escaped = i > 0 && rest.as_bytes()[i - 1] == b'$';
        let tail = &rest[i + 2..];
        let Some(end) = tail.find('}') else { break };
        if !escaped
            && let Some(reference) = tail[..end].strip_prefix("ref:")
            && let Some((node, _output)) = reference.rsplit_once('.')
        {
            out.push(node.to_string());
        }
        rest = &tail[end + 1..];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_name_their_nodes_and_escapes_name_nothing() {
        assert_eq!(
            references("postgres://${ref:aws.rds-instance/payments-db.username}:${secret:api/X}@$${ref:a/b.c}"),
            vec!["aws.rds-instance/payments-db".to_string()]
        );
        assert!(references("plain ${unclosed").is_empty());
    }
}
