//! The decision points where paved asks its policies, and the input
//! document each builds ([`paved_policy::input`]). Every door (CLI, API,
//! webhook, reconciler) reaches these through the same `Control` functions,
//! so no door skips a policy.
//!
//! | decision        | asked in                                   | target                    |
//! |-----------------|--------------------------------------------|---------------------------|
//! | `admission`     | `Catalog::apply` (every recorded spec)     | `KIND/NAME`               |
//! | `plan`          | `Control::run`, before an apply            | `Environment/NAME`        |
//! | `deploy`        | `record_deployment`                        | `Service/SVC@ENV`         |
//! | `promote`       | `record_promotion`                         | `Service/SVC@ENV`         |
//! | `rollback`      | `record_rollback`                          | `Service/SVC@ENV`         |
//! | `secret-reveal` | `reveal_secret`                            | `Secret/ENV[/SVC]/NAME`   |
//! | `preview`       | opening a pull request's preview           | `Environment/PREVIEW`     |
//! | `branch-deploy` | a push to a branch mapped to production    | `Service/SVC@ENV`         |
//!
//! `branch-deploy` is the one decision that needs a grant: without a
//! policy's `allow_*` rule holding, the push is refused.

use crate::{Caller, Control, ControlError};
use paved_catalog::Catalog;
use paved_model::DecisionPoint;
use paved_plan::ResourceGraph;
use paved_policy::PolicySet;
use paved_policy::input::{DeploymentInput, EnvironmentInput, Input, PreviewInput, ResourceInput, SecretInput};

impl Control {
    /// Asks `set`; a denial (audited by the catalog) is the error.
    async fn gate(&self, catalog: &Catalog, set: &PolicySet, input: &Input, target: &str) -> Result<(), ControlError> {
        catalog.decide_in(set, input, target).await?;
        Ok(())
    }

    pub(crate) async fn environment_input(
        &self,
        catalog: &Catalog,
        environment: &str,
    ) -> Result<EnvironmentInput, ControlError> {
        let c = catalog.environment_context(environment).await?;
        Ok(paved_catalog::environment_input(&c.environment, c.account.spec.provider.as_str()))
    }

    /// `plan`: the graph about to be applied, each node with what the plan does to it.
    pub(crate) async fn gate_plan(
        &self,
        caller: &Caller,
        desired: &ResourceGraph,
        applied: &ResourceGraph,
    ) -> Result<(), ControlError> {
        let catalog = self.catalog(caller.request.clone());
        let set = catalog.policies().await?;
        if set.is_empty() {
            return Ok(());
        }
        let input = self.policy_plan_input(&catalog, &caller.actor, desired, applied).await?;
        self.gate(&catalog, &set, &input, &format!("Environment/{}", desired.environment)).await
    }

    /// What the policies would say about applying `desired` (for `paved
    /// plan`: nothing is audited, nothing refused).
    pub async fn plan_policies(
        &self,
        caller: &Caller,
        desired: &ResourceGraph,
        applied: &ResourceGraph,
    ) -> Result<paved_policy::Decision, ControlError> {
        let catalog = self.catalog(caller.request.clone());
        let set = catalog.policies().await?;
        if set.is_empty() || desired.nodes.is_empty() {
            return Ok(paved_policy::Decision::default());
        }
        let input = self.policy_plan_input(&catalog, &caller.actor, desired, applied).await?;
        Ok(set.evaluate(DecisionPoint::Plan, &input.to_json(), self.clock.now()))
    }

    async fn policy_plan_input(
        &self,
        catalog: &Catalog,
        actor: &str,
        desired: &ResourceGraph,
        applied: &ResourceGraph,
    ) -> Result<Input, ControlError> {
        let mut input = Input::new(DecisionPoint::Plan, actor);
        input.environment = Some(self.environment_input(catalog, &desired.environment).await?);
        input.resources = Some(
            desired
                .nodes
                .iter()
                .map(|(id, n)| {
                    let action = match applied.nodes.get(id) {
                        None => "create",
                        Some(old) if old.properties == n.properties => "none",
                        Some(_) => "update",
                    };
                    ResourceInput {
                        id: id.clone(),
                        resource_type: n.kind.clone(),
                        properties: n.properties.clone(),
                        action: action.into(),
                    }
                })
                .collect(),
        );
        Ok(input)
    }

    /// `deploy`, `promote` (with `from`) and `rollback`.
    pub(crate) async fn gate_deployment(
        &self,
        caller: &Caller,
        point: DecisionPoint,
        environment: &str,
        service: &str,
        digest: &str,
        from: Option<&str>,
    ) -> Result<(), ControlError> {
        let catalog = self.catalog(caller.request.clone());
        let set = catalog.policies().await?;
        if set.is_empty() {
            return Ok(());
        }
        let commit = self.store.artifact(digest).await.ok().flatten().and_then(|a| a.commit);
        let mut input = Input::new(point, &caller.actor);
        input.environment = Some(self.environment_input(&catalog, environment).await?);
        input.deployment = Some(DeploymentInput {
            service: service.into(),
            digest: digest.into(),
            from: from.map(str::to_string),
            commit,
            branch: None,
            repository: None,
            at: self.now_rfc3339(),
        });
        self.gate(&catalog, &set, &input, &format!("Service/{service}@{environment}")).await
    }

    fn now_rfc3339(&self) -> String {
        self.clock.now().format(&time::format_description::well_known::Rfc3339).unwrap_or_default()
    }

    /// `branch-deploy`: may a push to `branch` of `repository` deploy
    /// `service` to production `environment`? Only when a policy grants it
    /// (and none denies it); the grant's rule, or why there is none.
    pub(crate) async fn gate_branch_deploy(
        &self,
        caller: &Caller,
        environment: &str,
        service: &str,
        push: (&str, &str, &str),
    ) -> Result<Result<String, String>, ControlError> {
        let (repository, branch, commit) = push;
        let catalog = self.catalog(caller.request.clone());
        let mut input = Input::new(DecisionPoint::BranchDeploy, &caller.actor);
        input.environment = Some(self.environment_input(&catalog, environment).await?);
        input.deployment = Some(DeploymentInput {
            service: service.into(),
            digest: String::new(),
            from: None,
            commit: Some(commit.into()),
            branch: Some(branch.into()),
            repository: Some(repository.into()),
            at: self.now_rfc3339(),
        });
        let target = format!("Service/{service}@{environment}");
        let decision = match catalog.decide(&input, &target).await {
            Ok(d) => d,
            Err(paved_catalog::CatalogError::PolicyDenied(denied)) => return Ok(Err(denied.to_string())),
            Err(e) => return Err(e.into()),
        };
        Ok(match decision.grants.first() {
            Some(g) => Ok(format!("policy `{}` ({}) rule `{}`: {}", g.policy, g.version, g.rule, g.message)),
            None => Err(format!(
                "a branch does not deploy to production `{environment}` unless a policy allows it (an `allow_*` rule at \
                 decision `branch-deploy`); promote a digest healthy in the stage before (`paved promote`)"
            )),
        })
    }

    /// `secret-reveal`: a person is about to see a value.
    pub(crate) async fn gate_reveal(
        &self,
        caller: &Caller,
        scope: &paved_secrets::Scope,
        name: &str,
    ) -> Result<(), ControlError> {
        let catalog = self.catalog(caller.request.clone());
        let set = catalog.policies().await?;
        if set.is_empty() {
            return Ok(());
        }
        let mut input = Input::new(DecisionPoint::SecretReveal, &caller.actor);
        input.environment = self.environment_input(&catalog, &scope.environment).await.ok();
        input.secret = Some(SecretInput { name: name.into(), service: scope.service.clone() });
        self.gate(&catalog, &set, &input, &scope.target(name)).await
    }

    /// `preview`: the preview environment about to be recorded.
    pub(crate) async fn gate_preview(
        &self,
        caller: &Caller,
        preview: EnvironmentInput,
        of: &str,
        repository: &str,
        pull_request: u64,
    ) -> Result<(), ControlError> {
        let catalog = self.catalog(caller.request.clone());
        let set = catalog.policies().await?;
        if set.is_empty() {
            return Ok(());
        }
        let shared = match self.list_secrets(of, None).await {
            Ok(list) => list.into_iter().map(|s| s.name).collect(),
            Err(_) => Vec::new(),
        };
        let target = format!("Environment/{}", preview.name);
        let mut input = Input::new(DecisionPoint::Preview, &caller.actor);
        input.environment = Some(preview);
        input.preview =
            Some(PreviewInput { of: of.into(), repository: repository.into(), pull_request, shared_secrets: shared });
        self.gate(&catalog, &set, &input, &target).await
    }
}
