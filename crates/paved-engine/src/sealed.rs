//! Sensitive outputs (a database password a driver generated) are kept in
//! the vault; the state store records `{"$sealed": …}` in their place.

use crate::{EngineError, Outputs};
use async_trait::async_trait;
use serde_json::{Value, json};

/// Where sensitive outputs are kept. Implemented over the secrets vault.
#[async_trait]
pub trait SensitiveOutputs: Send + Sync {
    /// Keeps `value`; returns what identifies it (recorded in the state).
    async fn seal(&self, environment: &str, node: &str, output: &str, value: &str) -> Result<Value, String>;
    /// The value `seal` returned `sealed` for.
    async fn open(&self, environment: &str, node: &str, output: &str, sealed: &Value) -> Result<String, String>;
    /// The resource is gone: its credential is no longer current (history may stay).
    async fn forget(&self, environment: &str, node: &str, output: &str) -> Result<(), String>;
}

const MARKER: &str = "$sealed";

/// `outputs` as the store records them: each sensitive string replaced by
/// its sealed reference. Without a vault they are recorded as they are.
pub(crate) async fn seal(
    vault: Option<&dyn SensitiveOutputs>,
    environment: &str,
    node: &paved_plan::Node,
    outputs: &Outputs,
) -> Result<Outputs, String> {
    let Some(vault) = vault else { return Ok(outputs.clone()) };
    let mut recorded = outputs.clone();
    for name in &node.sensitive {
        if let Some(Value::String(value)) = outputs.get(name) {
            let sealed = vault.seal(environment, &node.id(), name, value).await?;
            recorded.insert(name.clone(), json!({ MARKER: sealed }));
        }
    }
    Ok(recorded)
}

/// Retires the sensitive outputs of a deleted node.
pub(crate) async fn forget(
    vault: Option<&dyn SensitiveOutputs>,
    environment: &str,
    node: &paved_plan::Node,
) -> Result<(), String> {
    let Some(vault) = vault else { return Ok(()) };
    for name in &node.sensitive {
        vault.forget(environment, &node.id(), name).await?;
    }
    Ok(())
}

/// `outputs` as drivers and references need them: sealed ones opened.
pub(crate) async fn open(
    vault: Option<&dyn SensitiveOutputs>,
    environment: &str,
    node: &str,
    mut outputs: Outputs,
) -> Result<Outputs, EngineError> {
    for (name, value) in outputs.iter_mut() {
        let Some(sealed) = value.get(MARKER) else { continue };
        let vault = vault.ok_or_else(|| EngineError::CorruptState {
            node: node.into(),
            reason: format!("output `{name}` is sealed in the vault, and this engine has none"),
        })?;
        let opened = vault
            .open(environment, node, name, sealed)
            .await
            .map_err(|reason| EngineError::CorruptState { node: node.into(), reason })?;
        *value = Value::String(opened);
    }
    Ok(outputs)
}
