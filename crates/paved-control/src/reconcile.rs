//! The reconciler: what a server does in the background about drift. Each
//! pass reads every applied environment's live state; an environment whose
//! blueprint says `drift: auto-heal` is applied again (as the control
//! plane, audited like any apply), the others are only reported.

use crate::{Caller, Control, ControlError, LockWatcher, RunOptions};
use paved_engine::Quiet;
use paved_model::blueprint::DriftMode;
use paved_model::{Kind, Spec};
use paved_store::RequestContext;
use serde::Serialize;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

/// What one pass found and did for one environment.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Reconciled {
    pub environment: String,
    /// Resources that differ from what paved applied (or could not be read).
    pub drifted: usize,
    pub mode: DriftMode,
    /// Whether the pass applied the environment, and whether that succeeded.
    pub healed: Option<bool>,
    /// Why the environment could not be checked or healed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

struct NoWait;
impl LockWatcher for NoWait {}

impl Control {
    /// One reconcile pass over every environment with applied resources.
    /// An environment another apply holds is left for the next pass.
    pub async fn reconcile(&self, holder: &str) -> Result<Vec<Reconciled>, ControlError> {
        let request = RequestContext { request_id: "reconcile".into(), origin: "reconciler".into() };
        let catalog = self.catalog(request.clone());
        let mut out = Vec::new();
        for object in catalog.list(Some(Kind::Environment)).await? {
            let Spec::Environment(env) = object.spec else { continue };
            let name = env.metadata.name.clone();
            if self.store.applied_nodes(&name).await?.is_empty() {
                continue;
            }
            let mut result = Reconciled {
                environment: name.clone(),
                drifted: 0,
                mode: DriftMode::ReportOnly,
                healed: None,
                error: None,
            };
            match self.reconcile_one(&catalog, &request, &name, holder, &mut result).await {
                Ok(()) => {}
                Err(e) => result.error = Some(e.to_string()),
            }
            out.push(result);
        }
        Ok(out)
    }

    async fn reconcile_one(
        &self,
        catalog: &paved_catalog::Catalog,
        request: &RequestContext,
        name: &str,
        holder: &str,
        result: &mut Reconciled,
    ) -> Result<(), ControlError> {
        let (desired, context) = self.desired_graph(catalog, name).await?;
        result.mode = context.blueprint.spec.drift;
        let report = self.drift(name).await?;
        result.drifted = report.nodes.iter().filter(|n| n.status != paved_engine::DriftStatus::InSync).count();
        if result.drifted == 0 || result.mode != DriftMode::AutoHeal {
            return Ok(());
        }
        let caller = Caller { actor: "paved-reconciler".into(), request: request.clone() };
        let run = RunOptions {
            parallelism: 8,
            holder: holder.into(),
            lock_timeout: Duration::ZERO,
            jitter_seed: 0,
            operation: None,
        };
        let report =
            self.run(&desired, &run, &caller, Arc::new(AtomicBool::new(false)), Arc::new(Quiet), &NoWait).await?;
        result.healed = Some(report.succeeded());
        Ok(())
    }
}
