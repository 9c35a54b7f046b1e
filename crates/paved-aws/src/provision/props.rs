//! Reading a node's properties, with a clear error when the plan and the
//! driver disagree (a bug, never retried).

use paved_engine::{DriverError, Resource};
use serde_json::{Value, json};
use std::collections::BTreeMap;

pub(crate) struct Props<'a> {
    resource: &'a Resource,
}

impl<'a> Props<'a> {
    pub(crate) fn of(resource: &'a Resource) -> Props<'a> {
        Props { resource }
    }

    fn missing(&self, field: &str, what: &str) -> DriverError {
        DriverError::Permanent(format!("{}: property `{field}` must be {what}", self.resource.id))
    }

    pub(crate) fn value(&self, field: &str) -> &'a Value {
        self.resource.properties.get(field).unwrap_or(&Value::Null)
    }

    pub(crate) fn str(&self, field: &str) -> Result<&'a str, DriverError> {
        self.value(field).as_str().ok_or_else(|| self.missing(field, "a string"))
    }

    pub(crate) fn opt_str(&self, field: &str) -> Option<&'a str> {
        self.value(field).as_str()
    }

    pub(crate) fn bool(&self, field: &str) -> bool {
        self.value(field).as_bool().unwrap_or(false)
    }

    pub(crate) fn int(&self, field: &str) -> Result<i32, DriverError> {
        self.value(field).as_i64().and_then(|n| i32::try_from(n).ok()).ok_or_else(|| self.missing(field, "a number"))
    }

    pub(crate) fn strings(&self, field: &str) -> Vec<String> {
        strings(self.value(field))
    }

    /// The node's `tags` object.
    pub(crate) fn tags(&self) -> BTreeMap<String, String> {
        tags_of(self.value("tags"))
    }

    /// A JSON document property (a policy) as the text AWS takes.
    pub(crate) fn document(&self, field: &str) -> Result<String, DriverError> {
        match self.value(field) {
            Value::Null => Err(self.missing(field, "a JSON document")),
            v => Ok(v.to_string()),
        }
    }
}

pub(crate) fn strings(v: &Value) -> Vec<String> {
    v.as_array().map(|a| a.iter().filter_map(|s| s.as_str().map(str::to_string)).collect()).unwrap_or_default()
}

pub(crate) fn tags_of(v: &Value) -> BTreeMap<String, String> {
    v.as_object()
        .map(|o| o.iter().filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_string()))).collect())
        .unwrap_or_default()
}

/// Observed tags as a JSON object, `Name` (paved's finding tag) left out.
pub(crate) fn tags_value<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Value {
    Value::Object(
        pairs
            .into_iter()
            .filter(|(k, _)| *k != "Name" && *k != "paved:tier")
            .map(|(k, v)| (k.to_string(), Value::String(v.to_string())))
            .collect(),
    )
}

/// `observed`, reordered like `desired`: the items `desired` has first in
/// its order, then the others (sorted). Lists AWS reports in its own order
/// (subnets, rules, routes) then compare as sets.
pub(crate) fn like(desired: &Value, mut observed: Vec<Value>) -> Value {
    let mut out = Vec::new();
    for want in desired.as_array().into_iter().flatten() {
        if let Some(at) = observed.iter().position(|o| o == want) {
            out.push(observed.remove(at));
        }
    }
    observed.sort_by_key(|v| v.to_string());
    out.extend(observed);
    Value::Array(out)
}

/// An engine version as the node would write it: the node's own when AWS's
/// satisfies it — the same, a longer spelling of it (`16` asked, `16.4`
/// running: RDS picks the minor version,
/// <https://docs.aws.amazon.com/AmazonRDS/latest/APIReference/API_CreateDBInstance.html>),
/// or a later minor of the same major that AWS upgraded to by itself (RDS
/// automatic minor upgrades, EKS at the end of a version's support:
/// <https://docs.aws.amazon.com/eks/latest/userguide/kubernetes-versions.html>).
/// Otherwise AWS's, so a real difference is still seen. Asking AWS to go
/// back down is what it refuses, and what a naive comparison would do.
pub(crate) fn version_like(desired: &Value, observed: Option<&str>) -> Value {
    let Some(observed) = observed else { return Value::Null };
    let Some(want) = desired.as_str() else { return json!(observed) };
    let parts = |v: &str| v.split('.').map(|p| p.parse::<u64>().ok()).collect::<Option<Vec<u64>>>();
    let satisfied = observed == want
        || observed.starts_with(&format!("{want}."))
        || matches!((parts(want), parts(observed)), (Some(w), Some(o)) if !w.is_empty() && w[0] == o[0] && o >= w);
    if satisfied { desired.clone() } else { json!(observed) }
}

/// A policy document AWS returns URL-encoded (IAM) or as text (KMS), parsed.
pub(crate) fn policy(text: &str) -> Value {
    let decoded = if text.trim_start().starts_with('%') || text.contains("%22") {
        percent_encoding::percent_decode_str(text).decode_utf8_lossy().into_owned()
    } else {
        text.to_string()
    };
    serde_json::from_str(&decoded).unwrap_or(Value::String(decoded))
}

#[cfg(test)]
mod tests {
    use super::version_like;
    use serde_json::json;

    #[test]
    fn a_version_aws_chose_or_upgraded_to_satisfies_the_one_asked() {
        // RDS picks the minor version of `16`, and upgrades minors by itself.
        assert_eq!(version_like(&json!("16"), Some("16.4")), json!("16"));
        assert_eq!(version_like(&json!("16.3"), Some("16.4")), json!("16.3"));
        // EKS upgrades a cluster at the end of its version's support.
        assert_eq!(version_like(&json!("1.30"), Some("1.31")), json!("1.30"));
        // An upgrade asked for, or another major, is a difference.
        assert_eq!(version_like(&json!("1.31"), Some("1.30")), json!("1.30"));
        assert_eq!(version_like(&json!("16"), Some("17.1")), json!("17.1"));
        assert_eq!(version_like(&json!("16"), Some("160")), json!("160"));
        assert_eq!(version_like(&json!("16"), None), serde_json::Value::Null);
    }
}
