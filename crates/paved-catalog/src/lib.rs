//! The desired-state catalog: what `paved apply -f`, `get`, `describe`,
//! `history` and `delete` do, shared by the CLI and (later) the API server so
//! both doors run the same code.
//!
//! An apply is all-or-nothing: the whole batch is validated against what is
//! recorded, and only then are the changed objects committed, in one store
//! transaction. Unchanged documents (same content hash) create no generation.
//! A conflicting concurrent writer makes the apply re-read and re-validate.

use paved_model::{Kind, Spec};
use paved_spec::{Batch, Diagnostic, SourceFile};
use paved_store::{Change, Operation, Record, RequestContext, Store, StoreError};
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::Arc;
use time::OffsetDateTime;

pub use paved_model::Clock;

/// The clock of the machine.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("{} error(s) in the specs; nothing was recorded", .0.diagnostics.iter().filter(|d| d.is_error()).count())]
    Invalid(Box<Batch>),
    #[error("{kind} `{name}` not found{}", suggestion(.suggestions))]
    NotFound { kind: Kind, name: String, suggestions: Vec<String> },
    #[error("{kind} `{name}` is still used by {}; delete or change those first", list(.dependents))]
    HasDependents { kind: Kind, name: String, dependents: Vec<(Kind, String)> },
    #[error("gave up after {0} attempts: other applies kept changing the same objects; try again")]
    Contended(usize),
    #[error(
        "{kind} `{name}` is at generation {current:?}, not {expected:?} as the request expected; read it again and retry"
    )]
    Stale { kind: Kind, name: String, expected: Option<i64>, current: Option<i64> },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("recorded {kind} `{name}` cannot be read back: {reason}")]
    Corrupt { kind: Kind, name: String, reason: String },
    /// A policy refused the operation (its denials are in the audit log).
    #[error(transparent)]
    PolicyDenied(#[from] paved_policy::Denied),
    /// The recorded policies do not compile (validation keeps this from
    /// happening; a store edited behind paved's back can still).
    #[error("the recorded policies cannot be used: {0}")]
    Policy(#[from] paved_policy::PolicyError),
}

fn suggestion(s: &[String]) -> String {
    if s.is_empty() { String::new() } else { format!(" (did you mean `{}`?)", s.join("`, `")) }
}

fn list(d: &[(Kind, String)]) -> String {
    d.iter().map(|(k, n)| format!("{k} `{n}`")).collect::<Vec<_>>().join(", ")
}

/// Audit events a decision leaves, by target: `(action, denied, details)`.
type Findings = Vec<(String, (&'static str, bool, serde_json::Value))>;

/// What policies see of an environment.
pub fn environment_input(e: &paved_model::Environment, provider: &str) -> paved_policy::input::EnvironmentInput {
    paved_policy::input::EnvironmentInput {
        name: e.metadata.name.clone(),
        env_type: e.spec.env_type.to_string(),
        account: e.spec.account.clone(),
        provider: provider.to_string(),
        region: e.spec.region.clone(),
        owner: e.spec.owner.clone(),
        blueprint: e.spec.blueprint.0.clone(),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Created,
    Updated,
    Unchanged,
}

/// What an apply did to one object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Outcome {
    pub kind: Kind,
    pub name: String,
    pub action: Action,
    pub generation: i64,
}

#[derive(Debug)]
pub struct ApplyReport {
    pub outcomes: Vec<Outcome>,
    /// Warnings (an apply with errors records nothing and returns `Invalid`).
    pub batch: Batch,
}

/// A recorded object, decoded.
#[derive(Debug, Clone)]
pub struct Object {
    pub spec: Spec,
    pub record: Record,
}

/// An environment with everything it is built from, as recorded.
#[derive(Debug, Clone)]
pub struct EnvironmentContext {
    pub environment: paved_model::Environment,
    pub blueprint: paved_model::Blueprint,
    pub account: paved_model::CloudAccount,
    /// The services deployed to it: today every recorded service.
    pub services: Vec<paved_model::Workload>,
}

/// SHA-256 of the canonical JSON of a document (keys sorted), so formatting,
/// key order and comments never create a new generation.
pub fn content_hash(doc: &serde_json::Value) -> String {
    let text = serde_json::to_string(&paved_model::Canonical(doc)).unwrap_or_default();
    format!("sha256:{}", hex::encode(Sha256::digest(text.as_bytes())))
}

const MAX_ATTEMPTS: usize = 8;

/// The generation a writer expects an object to be at (`None`: absent or deleted).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Precondition {
    pub kind: Kind,
    pub name: String,
    pub generation: Option<i64>,
}

impl Precondition {
    fn check(&self, current: Option<&Record>) -> Result<(), CatalogError> {
        let live = current.filter(|r| !r.deleted).map(|r| r.generation);
        if live == self.generation {
            Ok(())
        } else {
            Err(CatalogError::Stale {
                kind: self.kind,
                name: self.name.clone(),
                expected: self.generation,
                current: live,
            })
        }
    }
}

pub struct Catalog {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    /// Recorded with every change in the audit log.
    request: RequestContext,
}

impl Catalog {
    pub fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>) -> Catalog {
        Catalog { store, clock, request: RequestContext::default() }
    }

    /// The request (id, origin) the changes made through this catalog belong to.
    pub fn with_request(mut self, request: RequestContext) -> Catalog {
        self.request = request;
        self
    }

    /// Closes the store; call before exiting so nothing is left half-flushed.
    pub async fn close(&self) {
        self.store.close().await;
    }

    fn decode(record: Record) -> Result<Object, CatalogError> {
        let kind = Kind::ALL.into_iter().find(|k| k.as_str() == record.kind).ok_or_else(|| CatalogError::Corrupt {
            kind: Kind::Team,
            name: record.name.clone(),
            reason: format!("unknown kind `{}`", record.kind),
        })?;
        let doc = record.spec.clone().unwrap_or(serde_json::Value::Null);
        let spec = Spec::from_document(kind, doc).map_err(|e| CatalogError::Corrupt {
            kind,
            name: record.name.clone(),
            reason: e.to_string(),
        })?;
        Ok(Object { spec, record })
    }

    /// Every live object, optionally of one kind, ordered by kind and name.
    pub async fn list(&self, kind: Option<Kind>) -> Result<Vec<Object>, CatalogError> {
        let records = self.store.list(kind.map(Kind::as_str)).await?;
        records.into_iter().map(Self::decode).collect()
    }

    /// Up to `limit` objects of a kind named after `after`, by name.
    pub async fn list_page(&self, kind: Kind, after: &str, limit: usize) -> Result<Vec<Object>, CatalogError> {
        let records = self.store.list_page(kind.as_str(), after, limit.try_into().unwrap_or(i64::MAX)).await?;
        records.into_iter().map(Self::decode).collect()
    }

    async fn recorded_specs(&self) -> Result<Vec<Spec>, CatalogError> {
        Ok(self.list(None).await?.into_iter().map(|o| o.spec).collect())
    }

    /// Finds an object by name. A blueprint may be named without its
    /// version: the highest recorded version is returned.
    pub async fn get(&self, kind: Kind, name: &str) -> Result<Object, CatalogError> {
        if let Some(rec) = self.store.get(kind.as_str(), name).await?.filter(|r| !r.deleted) {
            return Self::decode(rec);
        }
        let all = self.list(Some(kind)).await?;
        if kind == Kind::Blueprint && !name.contains('@') {
            let latest = all
                .iter()
                .filter(|o| o.record.name.split('@').next() == Some(name))
                .max_by_key(|o| version_key(&o.record.name));
            if let Some(o) = latest {
                return Ok(o.clone());
            }
        }
        let names: Vec<String> = all.iter().map(|o| o.record.name.clone()).collect();
        let suggestions = close_names(name, &names);
        Err(CatalogError::NotFound { kind, name: name.to_string(), suggestions })
    }

    /// An environment and the recorded blueprint, account and services it is built from.
    pub async fn environment_context(&self, name: &str) -> Result<EnvironmentContext, CatalogError> {
        let Spec::Environment(environment) = self.get(Kind::Environment, name).await?.spec else {
            return Err(CatalogError::NotFound {
                kind: Kind::Environment,
                name: name.to_string(),
                suggestions: vec![],
            });
        };
        let Spec::Blueprint(blueprint) = self.get(Kind::Blueprint, &environment.spec.blueprint.0).await?.spec else {
            return Err(CatalogError::NotFound {
                kind: Kind::Blueprint,
                name: environment.spec.blueprint.0.clone(),
                suggestions: vec![],
            });
        };
        let Spec::CloudAccount(account) = self.get(Kind::CloudAccount, &environment.spec.account).await?.spec else {
            return Err(CatalogError::NotFound {
                kind: Kind::CloudAccount,
                name: environment.spec.account.clone(),
                suggestions: vec![],
            });
        };
        let services = self
            .list(Some(Kind::Service))
            .await?
            .into_iter()
            .filter_map(|o| match o.spec {
                Spec::Service(w) => Some(w),
                _ => None,
            })
            .collect();
        Ok(EnvironmentContext { environment, blueprint, account, services })
    }

    /// Every generation of an object, oldest first (deletions included).
    pub async fn history(&self, kind: Kind, name: &str) -> Result<Vec<Record>, CatalogError> {
        let name = match self.get(kind, name).await {
            Ok(o) => o.record.name,
            Err(_) => name.to_string(),
        };
        let history = self.store.history(kind.as_str(), &name).await?;
        if history.is_empty() {
            let names: Vec<String> = self.list(Some(kind)).await?.into_iter().map(|o| o.record.name).collect();
            let suggestions = close_names(&name, &names);
            return Err(CatalogError::NotFound { kind, name, suggestions });
        }
        Ok(history)
    }

    /// Validates files against what is recorded, without writing anything.
    pub async fn validate(&self, sources: Vec<SourceFile>, read_diags: Vec<Diagnostic>) -> Result<Batch, CatalogError> {
        Ok(self.check(sources, read_diags).await?.0)
    }

    /// Validates files against what is recorded, and hands back the live
    /// records that one listing read, by kind and name (an apply compares
    /// against them, so an unchanged document costs no query of its own).
    async fn check(
        &self,
        sources: Vec<SourceFile>,
        read_diags: Vec<Diagnostic>,
    ) -> Result<(Batch, HashMap<(String, String), Record>), CatalogError> {
        let (recorded, records): (Vec<Spec>, Vec<Record>) =
            self.list(None).await?.into_iter().map(|o| (o.spec, o.record)).unzip();
        let live = records.into_iter().map(|r| ((r.kind.clone(), r.name.clone()), r)).collect();
        Ok((paved_spec::check_sources(sources, read_diags, &recorded), live))
    }

    /// Validates and records a batch, all or nothing.
    pub async fn apply(
        &self,
        sources: Vec<SourceFile>,
        read_diags: Vec<Diagnostic>,
        actor: &str,
    ) -> Result<ApplyReport, CatalogError> {
        self.apply_expecting(sources, read_diags, actor, None).await
    }

    /// [`Catalog::apply`], failing with [`CatalogError::Stale`] unless the
    /// object `expect` names is still at that generation (`None`: not
    /// recorded or deleted) — an HTTP `If-Match` / `If-None-Match`.
    pub async fn apply_expecting(
        &self,
        sources: Vec<SourceFile>,
        read_diags: Vec<Diagnostic>,
        actor: &str,
        expect: Option<&Precondition>,
    ) -> Result<ApplyReport, CatalogError> {
        for _ in 0..MAX_ATTEMPTS {
            // The commit checks every expected generation, so a writer that slipped
            // in after this read is caught there (and the batch retried).
            let (batch, mut live) = self.check(sources.clone(), read_diags.clone()).await?;
            if batch.has_errors() {
                return Err(CatalogError::Invalid(Box::new(batch)));
            }
            let at = self.clock.now();
            let mut changes = Vec::new();
            let mut outcomes = Vec::new();
            for doc in &batch.documents {
                let kind = doc.spec.kind();
                let name = doc.spec.object_name();
                let document = doc.spec.to_document();
                let hash = content_hash(&document);
                // Not live: absent, or deleted (its tombstone holds the generation to continue from).
                let current = match live.remove(&(kind.as_str().to_string(), name.clone())) {
                    Some(record) => Some(record),
                    None => self.store.get(kind.as_str(), &name).await?,
                };
                if let Some(p) = expect.filter(|p| p.kind == kind && p.name == name) {
                    p.check(current.as_ref())?;
                }
                let (action, generation) = match &current {
                    Some(r) if !r.deleted && r.content_hash == hash => (Action::Unchanged, r.generation),
                    Some(r) if !r.deleted => (Action::Updated, r.generation + 1),
                    Some(r) => (Action::Created, r.generation + 1),
                    None => (Action::Created, 1),
                };
                outcomes.push(Outcome { kind, name: name.clone(), action, generation });
                if action != Action::Unchanged {
                    let line = doc.root.span.start.line;
                    changes.push(Change {
                        kind: kind.as_str().to_string(),
                        name,
                        expected_generation: current.map(|r| r.generation),
                        operation: Operation::Put { spec: document, content_hash: hash },
                        actor: actor.to_string(),
                        source: Some(format!("{}:{line}", batch.file_of(doc))),
                        at,
                        request: self.request.clone(),
                    });
                }
            }
            let changed: Vec<&paved_spec::ParsedDocument> = batch
                .documents
                .iter()
                .zip(&outcomes)
                .filter(|(_, o)| o.action != Action::Unchanged)
                .map(|(d, _)| d)
                .collect();
            let warnings = self.admit(&changed, actor).await?;
            match self.store.commit(&changes).await {
                Ok(()) => {
                    self.audit_findings(warnings, actor).await?;
                    return Ok(ApplyReport { outcomes, batch });
                }
                Err(StoreError::Conflict { .. }) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(CatalogError::Contended(MAX_ATTEMPTS))
    }

    /// The policies and exceptions recorded now, compiled (shared with every
    /// caller while they stay the same).
    pub async fn policies(&self) -> Result<Arc<paved_policy::PolicySet>, CatalogError> {
        let (mut policies, mut exceptions) = (Vec::new(), Vec::new());
        for o in self.list(Some(Kind::Policy)).await? {
            if let Spec::Policy(p) = o.spec {
                policies.push(p);
            }
        }
        if policies.is_empty() {
            return Ok(Arc::default());
        }
        for o in self.list(Some(Kind::PolicyException)).await? {
            if let Spec::PolicyException(e) = o.spec {
                exceptions.push(e);
            }
        }
        Ok(paved_policy::compiled(&policies, &exceptions)?)
    }

    /// Asks the policies about `input` at its decision point for `target`:
    /// every finding is audited; a blocking one is the error.
    pub async fn decide(
        &self,
        input: &paved_policy::input::Input,
        target: &str,
    ) -> Result<paved_policy::Decision, CatalogError> {
        self.decide_in(&*self.policies().await?, input, target).await
    }

    /// [`Catalog::decide`] with the policies already in hand (a caller that
    /// looked them up to skip building an input when there are none).
    pub async fn decide_in(
        &self,
        set: &paved_policy::PolicySet,
        input: &paved_policy::input::Input,
        target: &str,
    ) -> Result<paved_policy::Decision, CatalogError> {
        if set.is_empty() {
            return Ok(paved_policy::Decision::default());
        }
        let decision = set.evaluate(input.decision, &input.to_json(), self.clock.now());
        let findings = decision.audit(input.decision).into_iter().map(|f| (target.to_string(), f)).collect();
        self.audit_findings(findings, &input.actor).await?;
        match decision.denied(input.decision, target) {
            Some(denied) => Err(denied.into()),
            None => Ok(decision),
        }
    }

    /// Admission: each changed document against the policies. Denials are
    /// audited and refuse the whole batch; the warnings are returned, to be
    /// audited once the batch is recorded. Policies and exceptions
    /// themselves are not admitted by policy (role bindings decide who
    /// records them): a broken admission policy could otherwise refuse its
    /// own fix.
    async fn admit(&self, docs: &[&paved_spec::ParsedDocument], actor: &str) -> Result<Findings, CatalogError> {
        let docs: Vec<_> =
            docs.iter().filter(|d| !matches!(d.spec.kind(), Kind::Policy | Kind::PolicyException)).collect();
        let set = self.policies().await?;
        if set.is_empty() || docs.is_empty() {
            return Ok(Vec::new());
        }
        let point = paved_model::DecisionPoint::Admission;
        let mut warnings = Vec::new();
        for doc in docs {
            let kind = doc.spec.kind();
            let name = doc.spec.object_name();
            let mut input = paved_policy::input::Input::new(point, actor);
            input.spec = Some(paved_policy::input::SpecInput {
                kind: kind.as_str().into(),
                name: name.clone(),
                document: doc.spec.to_document(),
            });
            if let Spec::Environment(e) = &doc.spec {
                let provider = match self.get(Kind::CloudAccount, &e.spec.account).await.map(|o| o.spec) {
                    Ok(Spec::CloudAccount(a)) => a.spec.provider.as_str().to_string(),
                    _ => String::new(),
                };
                input.environment = Some(environment_input(e, &provider));
            }
            let target = format!("{kind}/{name}");
            let decision = set.evaluate(point, &input.to_json(), self.clock.now());
            if let Some(denied) = decision.denied(point, &target) {
                let findings = decision.audit(point).into_iter().map(|f| (target.clone(), f)).collect();
                self.audit_findings(findings, actor).await?;
                return Err(denied.into());
            }
            warnings.extend(decision.audit(point).into_iter().map(|f| (target.clone(), f)));
        }
        Ok(warnings)
    }

    async fn audit_findings(&self, findings: Findings, actor: &str) -> Result<(), CatalogError> {
        for (target, (action, denied, details)) in findings {
            let event = paved_store::NewAuditEvent {
                at: self.clock.now(),
                actor: actor.to_string(),
                action: action.into(),
                target,
                outcome: if denied { paved_store::AuditOutcome::Denied } else { paved_store::AuditOutcome::Succeeded },
                request: self.request.clone(),
                before: None,
                after: None,
                details,
            };
            self.store.append_audit(&event).await?;
        }
        Ok(())
    }

    /// Deletes an object (records a tombstone), refusing while others depend on it.
    pub async fn delete(&self, kind: Kind, name: &str, actor: &str) -> Result<Record, CatalogError> {
        self.delete_expecting(kind, name, actor, None).await
    }

    /// [`Catalog::delete`], failing with [`CatalogError::Stale`] unless the
    /// object is still at `generation`.
    pub async fn delete_expecting(
        &self,
        kind: Kind,
        name: &str,
        actor: &str,
        generation: Option<i64>,
    ) -> Result<Record, CatalogError> {
        for _ in 0..MAX_ATTEMPTS {
            let object = self.get(kind, name).await?;
            if let Some(g) = generation {
                Precondition { kind, name: object.record.name.clone(), generation: Some(g) }
                    .check(Some(&object.record))?;
            }
            let recorded = self.recorded_specs().await?;
            let dependents = paved_spec::dependents(&recorded, kind, &object.record.name);
            if !dependents.is_empty() {
                return Err(CatalogError::HasDependents { kind, name: object.record.name, dependents });
            }
            let change = Change {
                kind: kind.as_str().to_string(),
                name: object.record.name.clone(),
                expected_generation: Some(object.record.generation),
                operation: Operation::Delete,
                actor: actor.to_string(),
                source: None,
                at: self.clock.now(),
                request: self.request.clone(),
            };
            match self.store.commit(std::slice::from_ref(&change)).await {
                Ok(()) => {
                    return self.store.get(kind.as_str(), &object.record.name).await?.ok_or(CatalogError::NotFound {
                        kind,
                        name: object.record.name,
                        suggestions: vec![],
                    });
                }
                Err(StoreError::Conflict { .. }) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(CatalogError::Contended(MAX_ATTEMPTS))
    }
}

fn version_key(name: &str) -> Vec<u64> {
    name.split('@').nth(1).unwrap_or("").split('.').map(|p| p.parse().unwrap_or(0)).collect()
}

fn close_names(name: &str, names: &[String]) -> Vec<String> {
    paved_spec::suggest::did_you_mean(name, names).map(|s| vec![s.to_string()]).unwrap_or_default()
}
