//! Refusing long-lived cloud credentials in specs.
//!
//! paved only ever uses short-lived credentials obtained with a token it signs
//! itself. A spec that carries an access key or a private key is refused with
//! an explanation of the keyless alternative, before anything else is said
//! about the field.

use crate::diagnostic::Diagnostic;
use crate::yaml::{Node, Value};
use paved_model::Kind;
use regex::Regex;
use std::sync::LazyLock;

static AWS_KEY_ID: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\b(AKIA|ASIA)[A-Z0-9]{16}\b").expect("static regex"));
static PRIVATE_KEY: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"-----BEGIN ([A-Z]+ )*PRIVATE KEY-----").expect("static regex"));

/// Field names that only ever hold long-lived secrets (compared lowercase,
/// without `_` and `-`).
const CREDENTIAL_KEYS: [&str; 13] = [
    "accesskey",
    "accesskeyid",
    "awsaccesskeyid",
    "secretaccesskey",
    "awssecretaccesskey",
    "secretkey",
    "sessiontoken",
    "privatekey",
    "privatekeyid",
    "clientsecret",
    "credentialsjson",
    "serviceaccountkey",
    "password",
];

const KEYLESS_HINT: &str = "paved never stores cloud keys. Remove this field and configure keyless access: for AWS set \
`spec.credentials.aws.roleArn` (paved assumes the role with AssumeRoleWithWebIdentity using a short-lived token it signs; \
`paved account trust-policy NAME` prints the trust policy to install), for GCP `credentials.gcp.workloadIdentityProvider`, \
for Azure `credentials.azure` with a federated credential";

const WORKLOAD_HINT: &str = "never put credentials in a spec: store the value as a paved secret of the environment and \
reference it through a resource output placeholder such as `${resources.db.password}`";

/// Long-lived credentials found in a document, with the field paths they sit at.
pub fn find(kind: Kind, root: &Node, file: &str) -> Vec<(Vec<String>, Diagnostic)> {
    let mut out = Vec::new();
    walk(kind, root, &mut Vec::new(), file, &mut out);
    out
}

fn walk(kind: Kind, node: &Node, path: &mut Vec<String>, file: &str, out: &mut Vec<(Vec<String>, Diagnostic)>) {
    let hint = if kind == Kind::Service { WORKLOAD_HINT } else { KEYLESS_HINT };
    match &node.value {
        Value::Map(entries) => {
            for e in entries {
                path.push(e.key.clone());
                let normalized: String =
                    e.key.chars().filter(|c| *c != '_' && *c != '-').collect::<String>().to_lowercase();
                if kind == Kind::CloudAccount && CREDENTIAL_KEYS.contains(&normalized.as_str()) {
                    out.push((
                        path.clone(),
                        Diagnostic::error(
                            "long-lived-credential",
                            format!("`{}` is a long-lived credential; a CloudAccount must not carry one", e.key),
                            file,
                            e.key_span,
                        )
                        .at_path(path)
                        .with_hint(hint),
                    ));
                } else {
                    walk(kind, &e.value, path, file, out);
                }
                path.pop();
            }
        }
        Value::Seq(items) => {
            for (i, item) in items.iter().enumerate() {
                path.push(i.to_string());
                walk(kind, item, path, file, out);
                path.pop();
            }
        }
        Value::Str(s) => {
            let what = if AWS_KEY_ID.is_match(s) {
                Some("an AWS access key id (AKIA…/ASIA…)")
            } else if PRIVATE_KEY.is_match(s) {
                Some("a private key block")
            } else {
                None
            };
            if let Some(what) = what {
                out.push((
                    path.clone(),
                    Diagnostic::error("long-lived-credential", format!("this value contains {what}"), file, node.span)
                        .at_path(path)
                        .with_hint(hint),
                ));
            }
        }
        _ => {}
    }
}
