//! Resolving `${ref:NODE.OUTPUT}` and `${secret:SERVICE/NAME}` references
//! at apply time.

use crate::Outputs;
use crate::secrets::SecretValues;
use serde_json::Value;
use std::collections::BTreeMap;

/// Replaces every reference with the named output of an applied node and
/// turns `$${` escapes into a literal `${`. A reference to an output that
/// does not exist is an error (the plan guarantees it should).
pub fn resolve(v: &Value, outputs: &BTreeMap<String, Outputs>, secrets: &SecretValues) -> Result<Value, String> {
    Ok(match v {
        Value::String(s) => Value::String(resolve_str(s, outputs, secrets)?),
        Value::Array(items) => {
            Value::Array(items.iter().map(|i| resolve(i, outputs, secrets)).collect::<Result<_, _>>()?)
        }
        Value::Object(m) => Value::Object(
            m.iter().map(|(k, i)| Ok((k.clone(), resolve(i, outputs, secrets)?))).collect::<Result<_, String>>()?,
        ),
        other => other.clone(),
    })
}

fn resolve_str(s: &str, outputs: &BTreeMap<String, Outputs>, secrets: &SecretValues) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        if let Some(after) = tail.strip_prefix("$${") {
            out.push_str("${");
            rest = after;
        } else if let Some(after) = tail.strip_prefix("${ref:") {
            let end = after.find('}').ok_or_else(|| format!("unterminated reference in `{s}`"))?;
            let (node, output) =
                after[..end].rsplit_once('.').ok_or_else(|| format!("malformed reference `{}`", &after[..end]))?;
            let value = outputs
                .get(node)
                .and_then(|o| o.get(output))
                .ok_or_else(|| format!("`{node}` has no output `{output}` (yet)"))?;
            match value {
                Value::String(v) => out.push_str(v),
                other => out.push_str(&other.to_string()),
            }
            rest = &after[end + 1..];
        } else if let Some(after) = tail.strip_prefix("${secret:") {
            let end = after.find('}').ok_or_else(|| format!("unterminated secret reference in `{s}`"))?;
            let key = &after[..end];
            let value = secrets.get(key).ok_or_else(|| {
                let (service, name) = key.split_once('/').unwrap_or(("", key));
                format!("secret `{name}` (used by `{service}`) is not set: `paved secret set {name} -e ENV`")
            })?;
            out.push_str(value);
            rest = &after[end + 1..];
        } else {
            out.push('$');
            rest = &tail[1..];
        }
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn resolves_references_and_escapes() {
        let outputs = BTreeMap::from([(
            "local.postgres.database/db".to_string(),
            Outputs::from([("host".to_string(), json!("127.0.0.1")), ("port".to_string(), json!(5432))]),
        )]);
        let v = json!({"url": "pg://${ref:local.postgres.database/db.host}:${ref:local.postgres.database/db.port}/x", "lit": "$${HOME} costs $5"});
        assert_eq!(
            resolve(&v, &outputs, &SecretValues::default()).unwrap(),
            json!({"url": "pg://127.0.0.1:5432/x", "lit": "${HOME} costs $5"})
        );
        assert!(
            resolve(&json!("${ref:a/b.c}"), &outputs, &SecretValues::default()).unwrap_err().contains("has no output")
        );
        let secrets = SecretValues::new(BTreeMap::from([("api/DB".to_string(), "s3cr3t".to_string())]));
        assert_eq!(resolve(&json!("pw=${secret:api/DB}"), &outputs, &secrets).unwrap(), json!("pw=s3cr3t"));
        let missing = resolve(&json!("${secret:api/NOPE}"), &outputs, &secrets).unwrap_err();
        assert!(missing.contains("`NOPE`") && missing.contains("paved secret set"), "{missing}");
    }
}
