//! Secret values for one apply or drift check: resolved by the caller just
//! before the run, substituted for `${secret:SERVICE/NAME}` references only
//! when a driver is called, and kept out of everything the engine reports.

use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::Arc;

/// Values by reference key (`SERVICE/NAME`). `Debug` never shows them.
#[derive(Clone, Default)]
pub struct SecretValues(Arc<BTreeMap<String, String>>);

impl std::fmt::Debug for SecretValues {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SecretValues(<{} redacted>)", self.0.len())
    }
}

/// What stands in for a secret's value in reports.
pub const REDACTED: &str = "<secret>";

impl SecretValues {
    pub fn new(values: BTreeMap<String, String>) -> SecretValues {
        SecretValues(Arc::new(values))
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    /// `text` with every secret value in it replaced by [`REDACTED`]
    /// (longest first, so a value containing another is hidden whole).
    pub fn redact(&self, text: &str) -> String {
        let mut values: Vec<&String> = self.0.values().filter(|v| !v.is_empty()).collect();
        values.sort_by_key(|v| std::cmp::Reverse(v.len()));
        let mut out = text.to_string();
        for v in values {
            if out.contains(v.as_str()) {
                out = out.replace(v.as_str(), REDACTED);
            }
        }
        out
    }

    /// A JSON value with every string redacted.
    pub fn redact_value(&self, v: &Value) -> Value {
        match v {
            Value::String(s) => Value::String(self.redact(s)),
            Value::Array(items) => Value::Array(items.iter().map(|i| self.redact_value(i)).collect()),
            Value::Object(m) => Value::Object(m.iter().map(|(k, i)| (k.clone(), self.redact_value(i))).collect()),
            other => other.clone(),
        }
    }
}

/// The `SERVICE/NAME` keys of every `${secret:…}` reference in `v`.
pub fn secret_refs(v: &Value, out: &mut std::collections::BTreeSet<String>) {
    match v {
        Value::String(s) => {
            let mut rest = s.as_str();
            while let Some(i) = rest.find("${") {
                // `$${` is an escape, not a reference.
                if i > 0 && rest.as_bytes()[i - 1] == b'$' {
                    rest = &rest[i + 2..];
                    continue;
                }
                let tail = &rest[i + 2..];
                match (tail.strip_prefix("secret:"), tail.find('}')) {
                    (Some(after), Some(end)) if end > "secret:".len() => {
                        out.insert(after[..end - "secret:".len()].to_string());
                        rest = &tail[end + 1..];
                    }
                    _ => rest = tail,
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|i| secret_refs(i, out)),
        Value::Object(m) => m.values().for_each(|i| secret_refs(i, out)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn finds_references_and_redacts_values() {
        let mut refs = std::collections::BTreeSet::new();
        secret_refs(
            &json!({"a": "x${secret:api/DB}y", "b": ["$${secret:api/NOT}", "${ref:n.o}${secret:web/K}"]}),
            &mut refs,
        );
        assert_eq!(refs.into_iter().collect::<Vec<_>>(), ["api/DB", "web/K"]);
        let s = SecretValues::new(BTreeMap::from([
            ("api/DB".into(), "hunter2".into()),
            ("web/K".into(), "hunter2-long".into()),
        ]));
        assert_eq!(s.redact("pw=hunter2-long;hunter2"), "pw=<secret>;<secret>");
        assert_eq!(s.redact_value(&json!({"v": ["hunter2"]})), json!({"v": ["<secret>"]}));
        assert!(!format!("{s:?}").contains("hunter2"));
    }
}
