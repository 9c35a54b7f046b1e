//! Checks across documents: the batch being applied, overlaid on what is
//! already recorded, must form a consistent world.

use crate::diagnostic::Diagnostic;
use crate::params::check_value;
use crate::parse::Batch;
use crate::semantic::path;
use crate::suggest::did_you_mean;
use paved_model::environment::EnvType;
use paved_model::score::ANNOTATION_OWNER;
use paved_model::{Environment, Kind, Spec};
use std::collections::BTreeMap;

/// One problem found with an object, before it is placed in a file.
struct Finding {
    code: &'static str,
    path: Vec<String>,
    key: bool,
    message: String,
    hint: Option<String>,
    expected: Option<String>,
}

impl Finding {
    fn new(code: &'static str, at: &str, message: String) -> Finding {
        Finding { code, path: path(at), key: false, message, hint: None, expected: None }
    }

    fn hint(mut self, h: impl Into<String>) -> Finding {
        self.hint = Some(h.into());
        self
    }
}

/// Every object of the world, with the batch document that defines it (if any).
struct World<'a> {
    objects: BTreeMap<(Kind, String), (&'a Spec, Option<usize>)>,
}

impl<'a> World<'a> {
    fn names(&self, kind: Kind) -> Vec<&str> {
        self.objects.keys().filter(|(k, _)| *k == kind).map(|(_, n)| n.as_str()).collect()
    }

    fn get(&self, kind: Kind, name: &str) -> Option<&'a Spec> {
        self.objects.get(&(kind, name.to_string())).map(|(s, _)| *s)
    }

    fn doc(&self, kind: Kind, name: &str) -> Option<usize> {
        self.objects.get(&(kind, name.to_string())).and_then(|(_, d)| *d)
    }
}

fn missing_hint(kind: Kind, name: &str, known: &[&str]) -> String {
    match did_you_mean(name, known) {
        Some(s) => format!("did you mean `{s}`?"),
        None => format!("apply the {kind} `{name}` first, or in the same apply"),
    }
}

/// Checks the batch's documents against each other and the recorded specs.
pub fn check_batch(batch: &mut Batch, recorded: &[Spec]) {
    let mut findings: Vec<(usize, Finding)> = Vec::new();
    let mut world = World { objects: BTreeMap::new() };
    for spec in recorded {
        world.objects.insert((spec.kind(), spec.object_name()), (spec, None));
    }
    let mut first_seen: BTreeMap<(Kind, String), usize> = BTreeMap::new();
    for (i, doc) in batch.documents.iter().enumerate() {
        let key = (doc.spec.kind(), doc.spec.object_name());
        if let Some(first) = first_seen.get(&key) {
            let f = &batch.documents[*first];
            let at = f.root.get("metadata").and_then(|m| m.entry("name")).map_or(f.root.span, |e| e.value.span);
            findings.push((
                i,
                Finding::new(
                    "duplicate-name",
                    "metadata.name",
                    format!("{} `{}` is defined twice in this apply", key.0, key.1),
                )
                .hint(format!(
                    "the first definition is at {}:{}:{}; rename or remove one",
                    batch.sources[f.file].path, at.start.line, at.start.col
                )),
            ));
            continue;
        }
        first_seen.insert(key.clone(), i);
        world.objects.insert(key, (&doc.spec, Some(i)));
    }

    let objects: Vec<(&Spec, Option<usize>)> = world.objects.values().copied().collect();
    for (spec, doc) in objects {
        match spec {
            Spec::Environment(env) => {
                let found = check_environment(env, &world);
                match doc {
                    Some(d) => findings.extend(found.into_iter().map(|f| (d, f))),
                    None => blame_dependencies(env, found, &world, &mut findings),
                }
            }
            Spec::Service(w) => {
                if let (Some(d), Some(owner)) = (doc, w.annotation(ANNOTATION_OWNER))
                    && world.get(Kind::Team, owner).is_none()
                {
                    let mut f = Finding::new(
                        "unknown-team",
                        "metadata.annotations",
                        format!("owner team `{owner}` does not exist"),
                    );
                    f.path.push(ANNOTATION_OWNER.to_string());
                    findings.push((d, f.hint(missing_hint(Kind::Team, owner, &world.names(Kind::Team)))));
                }
            }
            Spec::Team(team) => {
                let Some(d) = doc else { continue };
                for (i, svc) in team.spec.services.iter().enumerate() {
                    let at = format!("spec.services.{i}");
                    let owner = match world.get(Kind::Service, svc) {
                        Some(Spec::Service(w)) => w.annotation(ANNOTATION_OWNER),
                        _ => None,
                    };
                    if owner.is_some_and(|o| o != team.metadata.name) {
                        let o = owner.unwrap_or_default();
                        findings.push((
                            d,
                            Finding::new(
                                "ownership-conflict",
                                &at,
                                format!("service `{svc}` is owned by team `{o}` (its `{ANNOTATION_OWNER}` annotation)"),
                            )
                            .hint("list the service under the team that owns it, or change its annotation"),
                        ));
                    }
                    let other = world.objects.iter().find_map(|((k, n), (s, _))| match s {
                        Spec::Team(t)
                            if *k == Kind::Team && *n != team.metadata.name && t.spec.services.contains(svc) =>
                        {
                            Some(n.clone())
                        }
                        _ => None,
                    });
                    if let Some(other) =
                        other.filter(|o| o.as_str() < team.metadata.name.as_str() || world.doc(Kind::Team, o).is_none())
                    {
                        findings.push((
                            d,
                            Finding::new(
                                "ownership-conflict",
                                &at,
                                format!("service `{svc}` is also claimed by team `{other}`"),
                            )
                            .hint("a service has exactly one owning team"),
                        ));
                    }
                }
            }
            _ => {}
        }
    }

    for (doc_idx, f) in findings {
        let doc = &batch.documents[doc_idx];
        let file = batch.sources[doc.file].path.as_str();
        let span = if f.key { doc.root.key_span_of(&f.path) } else { doc.root.span_of(&f.path) };
        let mut d = Diagnostic::error(f.code, f.message, file, span).at_path(&f.path).maybe_hint(f.hint);
        d.expected = f.expected;
        batch.diagnostics.push(d);
    }
}

/// A recorded environment that the batch breaks: the error belongs to the
/// batch document of the blueprint, account or team it depends on.
fn blame_dependencies(env: &Environment, found: Vec<Finding>, world: &World<'_>, out: &mut Vec<(usize, Finding)>) {
    let deps = [
        world.doc(Kind::Blueprint, &env.spec.blueprint.0),
        world.doc(Kind::CloudAccount, &env.spec.account),
        world.doc(Kind::Team, &env.spec.owner),
    ];
    let Some(doc) = deps.into_iter().flatten().next() else {
        return;
    };
    for f in found {
        let message = format!("this change breaks recorded Environment `{}`: {}", env.metadata.name, f.message);
        out.push((
            doc,
            Finding {
                code: "breaks-dependent",
                path: path("metadata.name"),
                key: false,
                message,
                hint: f.hint,
                expected: None,
            },
        ));
    }
}

/// The longest name of an AWS environment: its load balancer and default
/// target group are `paved-ENV`, and ELB names take at most 32 characters
/// (<https://docs.aws.amazon.com/elasticloadbalancing/latest/APIReference/API_CreateLoadBalancer.html>).
/// Every other name paved derives from it is shortened to fit
/// (`paved_plan::aws::fit`); these two are the names people look for.
pub const AWS_ENVIRONMENT_NAME: usize = 26;

fn check_environment(env: &Environment, world: &World<'_>) -> Vec<Finding> {
    let spec = &env.spec;
    let mut out = Vec::new();
    let bp_ref = &spec.blueprint;
    match world.get(Kind::Blueprint, &bp_ref.0) {
        Some(Spec::Blueprint(bp)) => {
            let declared: Vec<&String> = bp.spec.parameters.keys().collect();
            for (name, value) in &spec.parameters {
                let at = format!("spec.parameters.{name}");
                match bp.spec.parameters.get(name) {
                    None => {
                        let hint = match did_you_mean(name, &declared) {
                            Some(s) => format!("did you mean `{s}`?"),
                            None if declared.is_empty() => {
                                format!("blueprint `{}` declares no parameters", bp_ref.0)
                            }
                            None => format!(
                                "blueprint `{}` declares: {}",
                                bp_ref.0,
                                declared.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
                            ),
                        };
                        let mut f = Finding::new(
                            "unknown-parameter",
                            &at,
                            format!("blueprint `{}` has no parameter `{name}`", bp_ref.0),
                        )
                        .hint(hint);
                        f.key = true;
                        out.push(f);
                    }
                    Some(p) => {
                        if let Err(m) = check_value(name, p, value) {
                            let mut f = Finding::new("invalid-parameter", &at, m.message)
                                .hint("parameters are the only differences allowed between environments; their types and ranges come from the blueprint");
                            f.expected = Some(m.expected);
                            out.push(f);
                        }
                    }
                }
            }
        }
        _ => {
            let versions: Vec<&str> = world
                .names(Kind::Blueprint)
                .into_iter()
                .filter_map(|n| n.split_once('@').filter(|(name, _)| *name == bp_ref.name()).map(|(_, v)| v))
                .collect();
            let hint = if versions.is_empty() {
                let names: Vec<&str> =
                    world.names(Kind::Blueprint).into_iter().filter_map(|n| n.split('@').next()).collect();
                missing_hint(Kind::Blueprint, bp_ref.name(), &names)
            } else {
                format!("known versions of `{}`: {}", bp_ref.name(), versions.join(", "))
            };
            out.push(
                Finding::new("unknown-blueprint", "spec.blueprint", format!("unknown blueprint `{}`", bp_ref.0))
                    .hint(hint),
            );
        }
    }
    match world.get(Kind::CloudAccount, &spec.account) {
        Some(Spec::CloudAccount(acct)) => {
            // A preview has no load balancer of its own (it uses its host's).
            if acct.spec.provider == paved_model::Provider::Aws
                && spec.env_type != EnvType::Preview
                && env.metadata.name.len() > AWS_ENVIRONMENT_NAME
            {
                let name = &env.metadata.name;
                let mut f = Finding::new(
                    "name-too-long-for-aws",
                    "metadata.name",
                    format!(
                        "environment name `{name}` has {} characters; on AWS its load balancer `paved-{name}` would have {}, and ELB takes at most 32",
                        name.len(),
                        name.len() + 6
                    ),
                )
                .hint(format!("use a name of at most {AWS_ENVIRONMENT_NAME} characters"));
                f.expected = Some(format!("at most {AWS_ENVIRONMENT_NAME} characters"));
                out.push(f);
            }
            if !acct.spec.allowed_regions.contains(&spec.region) {
                let allowed = acct.spec.allowed_regions.join(", ");
                let mut f = Finding::new(
                    "region-not-allowed",
                    "spec.region",
                    format!("region `{}` is not allowed for account `{}` (data residency)", spec.region, spec.account),
                )
                .hint(match did_you_mean(&spec.region, &acct.spec.allowed_regions) {
                    Some(s) => format!("did you mean `{s}`? allowed regions: {allowed}"),
                    None => format!("allowed regions: {allowed}"),
                });
                f.expected = Some(format!("one of {allowed}"));
                out.push(f);
            }
        }
        _ => out.push(
            Finding::new("unknown-account", "spec.account", format!("unknown CloudAccount `{}`", spec.account))
                .hint(missing_hint(Kind::CloudAccount, &spec.account, &world.names(Kind::CloudAccount))),
        ),
    }
    if world.get(Kind::Team, &spec.owner).is_none() {
        out.push(
            Finding::new("unknown-team", "spec.owner", format!("owner team `{}` does not exist", spec.owner))
                .hint(missing_hint(Kind::Team, &spec.owner, &world.names(Kind::Team))),
        );
    }
    for (i, source) in spec.secrets_from.iter().enumerate() {
        let at = format!("spec.secretsFrom.{i}");
        match world.get(Kind::Environment, source) {
            _ if *source == env.metadata.name => out.push(
                Finding::new("secrets-from-self", &at, "an environment always uses its own secrets first".into())
                    .hint("remove it from `secretsFrom`"),
            ),
            Some(Spec::Environment(from))
                if from.spec.env_type == EnvType::Production && spec.env_type != EnvType::Production =>
            {
                out.push(
                    Finding::new(
                        "production-secrets-shared",
                        &at,
                        format!(
                            "{} environment `{}` may not use the secrets of production environment `{source}`",
                            spec.env_type, env.metadata.name
                        ),
                    )
                    .hint(format!(
                        "set the values it needs on it (`paved secret set NAME -e {}`) or share from a non-production environment",
                        env.metadata.name
                    )),
                )
            }
            Some(_) => {}
            None => out.push(
                Finding::new("unknown-environment", &at, format!("unknown Environment `{source}`"))
                    .hint(missing_hint(Kind::Environment, source, &world.names(Kind::Environment))),
            ),
        }
    }
    out
}

/// Objects that refer to `kind`/`name` (environments using a blueprint
/// version, account or team; services owned by a team). Deleting an object
/// with dependents is refused.
pub fn dependents(specs: &[Spec], kind: Kind, name: &str) -> Vec<(Kind, String)> {
    let mut out = Vec::new();
    for s in specs {
        let uses = match (s, kind) {
            (Spec::Environment(e), Kind::Blueprint) => e.spec.blueprint.0 == name,
            (Spec::Environment(e), Kind::CloudAccount) => e.spec.account == name,
            (Spec::Environment(e), Kind::Team) => e.spec.owner == name,
            (Spec::Environment(e), Kind::Environment) => e.spec.secrets_from.iter().any(|s| s == name),
            (Spec::Service(w), Kind::Team) => w.annotation(ANNOTATION_OWNER) == Some(name),
            _ => false,
        };
        if uses {
            out.push((s.kind(), s.object_name()));
        }
    }
    out.sort();
    out
}
