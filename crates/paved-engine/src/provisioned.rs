//! Drivers of the nodes platform provisioners plan (`paved_plan::provision`),
//! the same on every provider: they hold no state outside paved's own.
//!
//! | kind             | create / update                         | delete  |
//! |------------------|-----------------------------------------|---------|
//! | `paved.template` | outputs = `properties.outputs` (resolved) | nothing |
//! | `paved.secret`   | output `value`: `length` random characters, made once (a change of `length` replaces it) | nothing |
//!
//! Neither is observed on apply (`has_external_state` is false: nothing
//! outside paved can change them), so `observe` answers `Absent` and a
//! change is made by `create`.

use crate::driver::{Driver, DriverError, Drivers, Observation, Outputs, Resource};
use async_trait::async_trait;
use std::sync::Arc;

/// Makes a random secret of the given length (injected: tests and the
/// control plane choose the source).
pub type Random = Arc<dyn Fn(usize) -> String + Send + Sync>;

/// `drivers` with the provisioner kinds added.
pub fn with_provisioners(drivers: Drivers, random: Random) -> Drivers {
    drivers.with("paved.template", Arc::new(TemplateDriver)).with("paved.secret", Arc::new(SecretDriver { random }))
}

pub struct TemplateDriver;

#[async_trait]
impl Driver for TemplateDriver {
    async fn observe(&self, _: &Resource) -> Result<Observation, DriverError> {
        Ok(Observation::Absent)
    }
    async fn create(&self, r: &Resource) -> Result<Outputs, DriverError> {
        let outputs = r.properties["outputs"].as_object().cloned().unwrap_or_default();
        Ok(outputs.into_iter().collect())
    }
    async fn update(&self, r: &Resource) -> Result<Outputs, DriverError> {
        self.create(r).await
    }
    async fn delete(&self, _: &Resource) -> Result<(), DriverError> {
        Ok(())
    }
    fn has_external_state(&self) -> bool {
        false
    }
}

pub struct SecretDriver {
    pub random: Random,
}

#[async_trait]
impl Driver for SecretDriver {
    async fn observe(&self, _: &Resource) -> Result<Observation, DriverError> {
        Ok(Observation::Absent)
    }
    async fn create(&self, r: &Resource) -> Result<Outputs, DriverError> {
        let length = r.properties["length"].as_u64().unwrap_or(32).clamp(16, 256) as usize;
        Ok(Outputs::from([("value".to_string(), serde_json::Value::String((self.random)(length)))]))
    }
    async fn update(&self, _: &Resource) -> Result<Outputs, DriverError> {
        // Its one property is immutable: a change replaces it (delete, create).
        Err(DriverError::Permanent("a generated secret is never updated in place".into()))
    }
    async fn delete(&self, _: &Resource) -> Result<(), DriverError> {
        Ok(())
    }
    fn has_external_state(&self) -> bool {
        false
    }
}
