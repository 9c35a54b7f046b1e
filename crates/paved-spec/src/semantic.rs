//! Checks on one document that a schema cannot express: parameter
//! constraints, placeholder references, provider rules, address spaces.

use crate::diagnostic::Diagnostic;
use crate::params::check_value;
use crate::source::SourceFile;
use crate::suggest::did_you_mean;
use crate::yaml::{Node, Pos, Span};
use paved_model::blueprint::{Egress, NetworkTier, Param};
use paved_model::placeholder::{self, Placeholder};
use paved_model::score::{PAVED_ANNOTATIONS, RESOURCE_TYPES};
use paved_model::{Blueprint, CloudAccount, EnvType, Environment, ParamType, Provider, Spec, Team, Workload};
use regex::Regex;
use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::time::Duration;

/// Longest time to live of an environment.
pub const MAX_TTL: Duration = Duration::from_secs(90 * 86_400);

/// Collects diagnostics for one document, addressing fields by path.
pub(crate) struct Report<'a> {
    pub root: &'a Node,
    pub file: &'a str,
    pub out: Vec<Diagnostic>,
}

pub(crate) fn path(s: &str) -> Vec<String> {
    s.split('.').map(str::to_string).collect()
}

impl<'a> Report<'a> {
    pub fn new(root: &'a Node, file: &'a str) -> Report<'a> {
        Report { root, file, out: Vec::new() }
    }

    /// An error at the value of a field.
    pub fn error(&mut self, code: &'static str, at: &[String], message: impl Into<String>) -> &mut Diagnostic {
        let span = self.root.span_of(at);
        self.out.push(Diagnostic::error(code, message, self.file, span).at_path(at));
        self.out.last_mut().expect("just pushed")
    }

    /// An error at the key of a field (for "this field should not be here").
    pub fn key_error(&mut self, code: &'static str, at: &[String], message: impl Into<String>) -> &mut Diagnostic {
        let span = self.root.key_span_of(at);
        self.out.push(Diagnostic::error(code, message, self.file, span).at_path(at));
        self.out.last_mut().expect("just pushed")
    }

    pub fn warning(&mut self, code: &'static str, at: &[String], message: impl Into<String>) -> &mut Diagnostic {
        let span = self.root.span_of(at);
        self.out.push(Diagnostic::warning(code, message, self.file, span).at_path(at));
        self.out.last_mut().expect("just pushed")
    }
}

pub fn check_document(spec: &Spec, root: &Node, source: &SourceFile) -> Vec<Diagnostic> {
    let mut r = Report::new(root, &source.path);
    match spec {
        Spec::Blueprint(b) => blueprint(b, &mut r),
        Spec::CloudAccount(a) => account(a, &mut r),
        Spec::Environment(e) => environment(e, &mut r),
        Spec::Team(t) => team(t, &mut r),
        Spec::RoleBinding(b) => role_binding(b, &mut r),
        Spec::Service(w) => workload(w, &mut r, source),
        Spec::Policy(p) => policy(p, &mut r),
        Spec::PolicyException(e) => policy_exception(e, &mut r),
    }
    r.out
}

fn set_hint(d: &mut Diagnostic, hint: impl Into<String>) {
    d.hint = Some(hint.into());
}

fn blueprint(b: &Blueprint, r: &mut Report<'_>) {
    let spec = &b.spec;
    provisioners(b, r);
    for (name, p) in &spec.parameters {
        let base = format!("spec.parameters.{name}");
        let field = |f: &str| path(&format!("{base}.{f}"));
        let t = p.kind.as_str();
        if p.kind != ParamType::Integer {
            for (f, set) in [("min", p.min.is_some()), ("max", p.max.is_some())] {
                if set {
                    let d = r.key_error(
                        "constraint-mismatch",
                        &field(f),
                        format!("`{f}` only applies to integer parameters, `{name}` is {t}"),
                    );
                    set_hint(d, "remove it, or change `type` to `integer`");
                }
            }
        }
        if !matches!(p.kind, ParamType::Enum | ParamType::Size) && p.values.is_some() {
            let d = r.key_error(
                "constraint-mismatch",
                &field("values"),
                format!("`values` only applies to enum and size parameters, `{name}` is {t}"),
            );
            set_hint(d, "remove it, or change `type` to `enum`");
        }
        if p.kind != ParamType::String && p.pattern.is_some() {
            let d = r.key_error(
                "constraint-mismatch",
                &field("pattern"),
                format!("`pattern` only applies to string parameters, `{name}` is {t}"),
            );
            set_hint(d, "remove it, or change `type` to `string`");
        }
        if let (Some(lo), Some(hi)) = (p.min, p.max)
            && lo > hi
        {
            let d = r.error("invalid-range", &field("max"), format!("`max` ({hi}) is below `min` ({lo})"));
            set_hint(d, "swap the bounds or fix one of them");
        }
        if p.kind == ParamType::Enum && p.values.as_ref().is_none_or(Vec::is_empty) {
            let d = r.key_error(
                "missing-field",
                &path(&base),
                format!("enum parameter `{name}` needs a non-empty `values` list"),
            );
            set_hint(d, "add `values: [a, b]`");
        }
        if let Some(values) = &p.values {
            let mut seen = BTreeSet::new();
            for (i, v) in values.iter().enumerate() {
                if !seen.insert(v) {
                    r.error("duplicate-item", &field(&format!("values.{i}")), format!("value `{v}` is listed twice"));
                }
            }
        }
        if let Some(pattern) = &p.pattern
            && let Err(e) = Regex::new(pattern)
        {
            let msg = e.to_string().lines().last().unwrap_or("invalid regular expression").trim().to_string();
            r.error("invalid-pattern", &field("pattern"), format!("invalid regular expression: {msg}"));
        }
        if let Some(v) = &p.default
            && let Err(m) = check_value(name, p, v)
        {
            r.error("invalid-default", &field("default"), format!("default: {}", m.message)).expected =
                Some(m.expected);
        }
        for (env, v) in &p.defaults {
            if let Err(m) = check_value(name, p, v) {
                r.error(
                    "invalid-default",
                    &field(&format!("defaults.{env}")),
                    format!("default for {env}: {}", m.message),
                )
                .expected = Some(m.expected);
            }
        }
        let missing: Vec<&str> =
            EnvType::ALL.iter().filter(|t| p.default_for(**t).is_none()).map(|t| t.as_str()).collect();
        if !missing.is_empty() {
            let d = r.key_error(
                "missing-default",
                &path(&base),
                format!("parameter `{name}` has no default for environment type(s) {}", missing.join(", ")),
            );
            set_hint(d, format!("add `default:` (used for every type) or `defaults.{}:`", missing[0]));
        }
    }

    let declared: Vec<&String> = spec.parameters.keys().collect();
    for (at, reference, field_type) in spec.parameter_refs() {
        let at = path(&at);
        let Some(name) = reference.parameter() else {
            continue;
        };
        let Some(p) = spec.parameters.get(name) else {
            let d =
                r.error("unknown-parameter", &at, format!("`{}` refers to undeclared parameter `{name}`", reference.0));
            let hint = match did_you_mean(name, &declared) {
                Some(s) => format!("did you mean `${{parameters.{s}}}`?"),
                None => format!("declare it under `spec.parameters.{name}`"),
            };
            set_hint(d, hint);
            continue;
        };
        let compatible = match field_type {
            ParamType::Size => matches!(p.kind, ParamType::Size | ParamType::Enum),
            other => p.kind == other,
        };
        if !compatible {
            let d = r.error(
                "parameter-type-mismatch",
                &at,
                format!("this field needs a {} but parameter `{name}` is {}", field_type.as_str(), p.kind.as_str()),
            );
            set_hint(d, format!("change the type of `spec.parameters.{name}` or reference another parameter"));
        } else if field_type == ParamType::Size {
            let sizes = ["small", "medium", "large", "xlarge"];
            if let Some(bad) = p.allowed_values().iter().find(|v| !sizes.contains(&v.as_str())) {
                let d = r.error(
                    "parameter-type-mismatch",
                    &at,
                    format!("parameter `{name}` allows `{bad}`, which is not a size"),
                );
                set_hint(d, "size fields accept small, medium, large and xlarge");
            }
        } else if field_type == ParamType::Integer && p.min.is_none_or(|lo| lo < 0) {
            let d = r.error(
                "parameter-type-mismatch",
                &at,
                format!("this field counts things but parameter `{name}` may be negative"),
            );
            set_hint(d, format!("set `spec.parameters.{name}.min` to 0 or more"));
        }
    }

    check_cidr(&spec.network.address_space, r);
    let tiers: BTreeSet<NetworkTier> = spec.network.tiers.iter().copied().collect();
    if tiers.len() != spec.network.tiers.len() {
        r.error("duplicate-item", &path("spec.network.tiers"), "each network tier may be listed once");
    }
    if spec.network.egress == Egress::Nat && !tiers.contains(&NetworkTier::Public) {
        let d = r.error(
            "inconsistent",
            &path("spec.network.egress"),
            "NAT egress needs a `public` tier for the NAT gateway",
        );
        set_hint(d, "add `public` to `spec.network.tiers` or set `egress: none`");
    }
    if let Some(ingress) = &spec.ingress {
        if ingress.public && !tiers.contains(&NetworkTier::Public) {
            let d =
                r.error("inconsistent", &path("spec.ingress.public"), "a public ingress needs a `public` network tier");
            set_hint(d, "add `public` to `spec.network.tiers` or set `ingress.public: false`");
        }
        let idle = duration_in(r, "spec.ingress.timeouts.idle", &ingress.timeouts.idle.0, (1, 4000));
        let request = duration_in(r, "spec.ingress.timeouts.request", &ingress.timeouts.request.0, (1, 4000));
        if let (Some(idle), Some(request)) = (idle, request)
            && request > idle
        {
            let d = r.warning(
                "inconsistent",
                &path("spec.ingress.timeouts.request"),
                "request timeout is longer than the idle timeout",
            );
            set_hint(d, "connections idle longer than `idle` are closed, so a slower response can never arrive");
        }
        let interval = duration_in(r, "spec.ingress.healthCheck.interval", &ingress.health_check.interval.0, (5, 300));
        let timeout = duration_in(r, "spec.ingress.healthCheck.timeout", &ingress.health_check.timeout.0, (2, 120));
        if let (Some(interval), Some(timeout)) = (interval, timeout)
            && timeout >= interval
        {
            let d = r.error(
                "inconsistent",
                &path("spec.ingress.healthCheck.timeout"),
                "health-check timeout must be shorter than its interval",
            );
            set_hint(d, "lower `timeout` or raise `interval`");
        }
    }
    if let Some(a) = &spec.compute.autoscaling
        && let (Param::Value(lo), Param::Value(hi)) = (&a.min_replicas, &a.max_replicas)
        && lo > hi
    {
        r.error(
            "invalid-range",
            &path("spec.compute.autoscaling.maxReplicas"),
            format!("`maxReplicas` ({hi}) is below `minReplicas` ({lo})"),
        );
    }
}

/// Parses a duration field and checks it lies within `bounds` seconds.
fn duration_in(r: &mut Report<'_>, at: &str, text: &str, bounds: (u64, u64)) -> Option<Duration> {
    let Some(d) = paved_model::duration::parse_duration(text) else {
        r.error("invalid-format", &path(at), format!("`{text}` is not a valid duration"));
        return None;
    };
    let (lo, hi) = bounds;
    if d < Duration::from_secs(lo) || d > Duration::from_secs(hi) {
        let msg = format!("`{text}` is outside the supported range {lo}s–{hi}s");
        let d = r.error("out-of-range", &path(at), msg);
        set_hint(d, "every provider must be able to honour this value, so it is limited to what all of them support");
        return None;
    }
    Some(d)
}

fn check_cidr(text: &str, r: &mut Report<'_>) {
    let at = path("spec.network.addressSpace");
    let parsed =
        text.split_once('/').and_then(|(ip, len)| Some((ip.parse::<Ipv4Addr>().ok()?, len.parse::<u8>().ok()?)));
    let Some((ip, len)) = parsed.filter(|(_, len)| *len <= 32) else {
        let d = r.error("invalid-format", &at, format!("`{text}` is not an IPv4 CIDR block"));
        set_hint(d, "write it like `10.0.0.0/16`");
        return;
    };
    if !(8..=24).contains(&len) {
        let d = r.error("out-of-range", &at, format!("prefix /{len} is outside /8 – /24"));
        set_hint(d, "an environment needs room for at least two tiers in two zones; use /16 to /24");
        return;
    }
    let bits = u32::from(ip);
    let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
    if bits & !mask != 0 {
        let d = r.error("invalid-format", &at, format!("`{text}` has host bits set"));
        set_hint(d, format!("did you mean `{}/{len}`?", Ipv4Addr::from(bits & mask)));
        return;
    }
    let private = ip.is_private() || (bits & 0xFFC0_0000) == 0x6440_0000;
    if !private {
        let d = r.error("not-private", &at, format!("`{text}` is not a private address range"));
        set_hint(d, "use a block inside 10.0.0.0/8, 172.16.0.0/12 or 192.168.0.0/16");
    }
}

fn account(a: &CloudAccount, r: &mut Report<'_>) {
    let spec = &a.spec;
    let mut seen = BTreeSet::new();
    let region_re = match spec.provider {
        Provider::Aws => Some((r"^[a-z]{2}(-gov)?-[a-z]+-[0-9]$", "AWS regions look like `eu-central-1`")),
        Provider::Gcp => Some((r"^[a-z]+-[a-z]+[0-9]$", "GCP regions look like `europe-west3`")),
        Provider::Azure => Some((r"^[a-z]+[a-z0-9]*$", "Azure regions look like `westeurope`")),
        Provider::Local | Provider::Kubernetes => None,
    };
    for (i, region) in spec.allowed_regions.iter().enumerate() {
        let at = path(&format!("spec.allowedRegions.{i}"));
        if !seen.insert(region) {
            r.error("duplicate-item", &at, format!("region `{region}` is listed twice"));
        }
        if let Some((re, hint)) = region_re
            && !Regex::new(re).is_ok_and(|re| re.is_match(region))
        {
            let d = r.error("invalid-region", &at, format!("`{region}` is not a {} region", spec.provider.as_str()));
            set_hint(d, hint);
        }
    }
    if spec.runtime.is_some() && spec.provider != Provider::Local {
        let d = r.error(
            "not-applicable",
            &path("spec.runtime"),
            format!(
                "`runtime` chooses how the local provider runs workloads; a {} account has none",
                spec.provider.as_str()
            ),
        );
        set_hint(d, "remove `spec.runtime`, or set `provider: local`");
    }
    let creds = spec.credentials.as_ref();
    let provided = [
        ("aws", creds.is_some_and(|c| c.aws.is_some())),
        ("gcp", creds.is_some_and(|c| c.gcp.is_some())),
        ("azure", creds.is_some_and(|c| c.azure.is_some())),
    ];
    for (name, present) in provided {
        if present && name != spec.provider.as_str() {
            let d = r.key_error(
                "inconsistent",
                &path(&format!("spec.credentials.{name}")),
                format!("`{name}` credentials do not apply to a {} account", spec.provider.as_str()),
            );
            set_hint(d, "remove this block");
        }
    }
    let needs_id = matches!(spec.provider, Provider::Aws | Provider::Gcp | Provider::Azure);
    if needs_id && spec.account_id.is_none() {
        let d = r.key_error(
            "missing-field",
            &path("spec.provider"),
            format!("a {} account needs `spec.accountId`", spec.provider.as_str()),
        );
        set_hint(d, "add the AWS account id, GCP project id or Azure subscription id");
    }
    match spec.provider {
        Provider::Aws => {
            if let Some(id) = &spec.account_id
                && (id.len() != 12 || !id.bytes().all(|b| b.is_ascii_digit()))
            {
                let d = r.error("invalid-format", &path("spec.accountId"), format!("`{id}` is not an AWS account id"));
                set_hint(d, "AWS account ids are 12 digits; quote them so leading zeros survive: `\"012345678901\"`");
            }
            match creds.and_then(|c| c.aws.as_ref()) {
                None => {
                    let d = r.key_error(
                        "missing-credentials",
                        &path("spec.provider"),
                        "an aws account needs `spec.credentials.aws.roleArn`",
                    );
                    set_hint(
                        d,
                        "paved assumes this IAM role with a short-lived web-identity token; no access keys are ever stored",
                    );
                }
                Some(aws) => {
                    let arn_account = aws.role_arn.split(':').nth(4).unwrap_or_default();
                    if let Some(id) = &spec.account_id
                        && arn_account != id
                    {
                        let d = r.error(
                            "inconsistent",
                            &path("spec.credentials.aws.roleArn"),
                            format!("role is in account {arn_account}, but `accountId` is {id}"),
                        );
                        set_hint(d, "use a role of the account this CloudAccount describes");
                    }
                }
            }
        }
        Provider::Gcp if creds.and_then(|c| c.gcp.as_ref()).is_none() => {
            let d = r.key_error(
                "missing-credentials",
                &path("spec.provider"),
                "a gcp account needs `spec.credentials.gcp` (workload identity federation)",
            );
            set_hint(d, "set `workloadIdentityProvider` and `serviceAccountEmail`");
        }
        Provider::Azure if creds.and_then(|c| c.azure.as_ref()).is_none() => {
            let d = r.key_error(
                "missing-credentials",
                &path("spec.provider"),
                "an azure account needs `spec.credentials.azure` (federated credential)",
            );
            set_hint(d, "set `tenantId` and `clientId` of an app registration with a federated credential for paved");
        }
        _ => {}
    }
}

fn environment(e: &Environment, r: &mut Report<'_>) {
    let spec = &e.spec;
    match &spec.ttl {
        None if spec.env_type == EnvType::Preview => {
            let d = r.key_error("missing-field", &path("spec.type"), "a preview environment needs a `ttl`");
            set_hint(d, "add `ttl: 72h` under `spec`; previews are deleted when it expires");
        }
        Some(ttl) => match ttl.parse() {
            Some(d) if d > MAX_TTL => {
                let d = r.error(
                    "out-of-range",
                    &path("spec.ttl"),
                    format!("ttl `{}` is longer than the maximum of 90d", ttl.0),
                );
                set_hint(d, "long-lived environments should not have a ttl at all");
            }
            Some(d) if d.is_zero() => {
                r.error("out-of-range", &path("spec.ttl"), "ttl must be longer than zero");
            }
            Some(_) => {}
            None => {
                r.error("invalid-format", &path("spec.ttl"), format!("`{}` is not a valid duration", ttl.0));
            }
        },
        None => {}
    }
}

fn team(t: &Team, r: &mut Report<'_>) {
    let mut seen = BTreeSet::new();
    for (i, m) in t.spec.members.iter().enumerate() {
        if !seen.insert(&m.0) {
            r.warning(
                "duplicate-item",
                &path(&format!("spec.members.{i}")),
                format!("member `{}` is listed twice", m.0),
            );
        }
    }
    let mut seen = BTreeSet::new();
    for (i, s) in t.spec.services.iter().enumerate() {
        if !seen.insert(s) {
            r.error("duplicate-item", &path(&format!("spec.services.{i}")), format!("service `{s}` is listed twice"));
        }
    }
}

/// Each module must be Rego the engine accepts; the error points into the
/// module (its line and column there, the block's place in the file).
fn policy(p: &paved_model::Policy, r: &mut Report<'_>) {
    for (name, source) in &p.spec.modules {
        if let Err((line, column, message)) = paved_policy::check_module(name, source) {
            let at = match (line, column) {
                (Some(l), Some(c)) => format!(" at line {l}, column {c} of the module"),
                _ => String::new(),
            };
            let d = r.error("invalid-rego", &path(&format!("spec.modules.{name}")), format!("`{name}`{at}: {message}"));
            set_hint(d, "the module is Rego v1 (`deny_x contains msg if { … }`); `paved policy test` runs its tests");
        }
    }
    let mut seen = BTreeSet::new();
    for (i, d) in p.spec.decisions.iter().enumerate() {
        if !seen.insert(d) {
            r.warning("duplicate-item", &path(&format!("spec.decisions.{i}")), format!("`{d}` is listed twice"));
        }
    }
}

fn policy_exception(e: &paved_model::PolicyException, r: &mut Report<'_>) {
    if e.spec.expires_at().is_none() {
        let d = r.error("invalid-time", &path("spec.expires"), format!("`{}` is not an RFC 3339 time", e.spec.expires));
        set_hint(d, "write e.g. `2027-01-31T00:00:00Z`: every exception ends");
    }
    if e.spec.reason.trim().is_empty() {
        r.error("missing-field", &path("spec.reason"), "an exception needs a reason");
    }
}

/// Each provisioner has one way of making outputs, each of its templates
/// (template outputs, command arguments, module variables) reads a known
/// input, and no output is declared twice.
fn provisioners(b: &Blueprint, r: &mut Report<'_>) {
    use paved_model::blueprint::How;
    for (i, p) in b.spec.provisioners.iter().enumerate() {
        let at = |rest: &[&str]| -> Vec<String> {
            ["spec", "provisioners", &i.to_string()].iter().chain(rest).map(|s| s.to_string()).collect()
        };
        let how = match p.how() {
            Ok(how) => how,
            Err(why) => {
                let d = r.error("invalid-provisioner", &at(&[]), why);
                set_hint(
                    d,
                    "keep one of `template:` (outputs from text), `command:` (a program) or `terraform:` (a module)",
                );
                continue;
            }
        };
        // (field, what the templates are, [(key, template)], declared outputs, secrets)
        // Declared outputs are (where, name): a template's by key, a list's by index.
        type Templates<'a> = (&'a str, &'a str, Vec<(String, &'a String)>, Vec<(String, &'a String)>, &'a [String]);
        let (field, list, templates, declared, secrets): Templates<'_> = match how {
            How::Template(t) => (
                "template",
                "outputs",
                t.outputs.iter().map(|(k, v)| (k.clone(), v)).collect(),
                t.outputs.keys().map(|k| (k.clone(), k)).collect(),
                &t.secrets,
            ),
            How::Command(c) => (
                "command",
                "args",
                c.args.iter().enumerate().map(|(n, v)| (n.to_string(), v)).collect(),
                c.outputs.iter().enumerate().map(|(i, o)| (i.to_string(), o)).collect(),
                &c.secrets,
            ),
            How::Terraform(t) => (
                "terraform",
                "variables",
                t.variables.iter().map(|(k, v)| (k.clone(), v)).collect(),
                t.outputs.iter().enumerate().map(|(i, o)| (i.to_string(), o)).collect(),
                &t.secrets,
            ),
        };
        for (key, text) in templates {
            let place = at(&[field, list, &key]);
            match placeholder::placeholders(text) {
                Err(e) => {
                    let d = r.error("invalid-placeholder", &place, e.to_string());
                    set_hint(d, "close it with `}`, or write `$${` for a literal `${`");
                }
                Ok(found) => {
                    for ph in found {
                        let path: Vec<&str> = ph.path.iter().map(String::as_str).collect();
                        if let Some(why) = p.unknown_input(&path, |n| b.spec.parameters.contains_key(n)) {
                            r.error("unresolved-placeholder", &place, format!("`{}`: {why}", ph.text()));
                        }
                    }
                }
            }
        }
        for (key, output) in declared {
            if secrets.contains(output) {
                let what = match how {
                    How::Template(_) => "a generated secret and a templated output",
                    _ => "listed under both `outputs` and `secrets`",
                };
                let d = r.error("duplicate-output", &at(&[field, "outputs", &key]), format!("`{output}` is {what}"));
                set_hint(d, "keep one: a secret is already an output of that name");
            }
        }
        let timeout = match how {
            How::Command(c) => c.timeout.as_ref(),
            How::Terraform(t) => t.timeout.as_ref(),
            How::Template(_) => None,
        };
        if let Some(t) = timeout {
            duration_in(r, &at(&[field, "timeout"]).join("."), &t.0, (1, 3600));
        }
        if let How::Command(c) = how
            && c.outputs.is_empty()
            && c.secrets.is_empty()
        {
            let d =
                r.error("missing-field", &at(&["command", "outputs"]), "a command provisioner declares its outputs");
            set_hint(d, "list the outputs the program answers with, e.g. `outputs: [host, port]`");
        }
    }
}

fn role_binding(b: &paved_model::RoleBinding, r: &mut Report<'_>) {
    if b.spec.subjects.is_empty() {
        let d = r.error("empty-subjects", &path("spec.subjects"), "a role binding needs at least one subject");
        set_hint(d, "add e.g. `team:payments` or `serviceaccount:ci`");
    }
    let mut seen = BTreeSet::new();
    for (i, s) in b.spec.subjects.iter().enumerate() {
        if !seen.insert(&s.0) {
            r.warning(
                "duplicate-item",
                &path(&format!("spec.subjects.{i}")),
                format!("subject `{}` is listed twice", s.0),
            );
        }
    }
    if b.spec.production && b.spec.role == paved_model::Role::Viewer {
        r.warning("no-effect", &path("spec.production"), "viewers change nothing, so `production: true` has no effect");
    }
}

fn workload(w: &Workload, r: &mut Report<'_>, source: &SourceFile) {
    for key in w.metadata.annotations.keys() {
        if key.starts_with("paved.dev/") && !PAVED_ANNOTATIONS.contains(&key.as_str()) {
            let at = vec!["metadata".into(), "annotations".into(), key.clone()];
            let hint = match did_you_mean(key, &PAVED_ANNOTATIONS) {
                Some(s) => format!("did you mean `{s}`?"),
                None => format!("paved understands {}", PAVED_ANNOTATIONS.join(", ")),
            };
            let d = r.key_error("unknown-annotation", &at, format!("unknown paved annotation `{key}`"));
            set_hint(d, hint);
        }
    }
    // Resource types are open in Score (`mongodb`, `kafka-topic`, a platform's
    // own): any type validates, and whether an environment can provision it
    // is a plan-time finding. Only a near miss of a built-in type is worth a
    // warning here.
    for (name, res) in &w.resources {
        if RESOURCE_TYPES.contains(&res.kind.as_str()) {
            continue;
        }
        if let Some(s) = did_you_mean(&res.kind, &RESOURCE_TYPES) {
            let at = vec!["resources".into(), name.clone(), "type".into()];
            let d = r.warning(
                "unknown-resource-type",
                &at,
                format!("`{}` is not a type paved provisions built in; did you mean `{s}`?", res.kind),
            );
            set_hint(d, "a provisioner may still offer it: `paved plan` says, per environment");
        }
    }
    confined_paths(w, r);
    binary_contents(w, r);
    let resource_names: Vec<&String> = w.resources.keys().collect();
    for field in w.placeholder_fields() {
        let node_span = r.root.span_of(&field.path);
        match placeholder::placeholders(field.value) {
            Err(e) => {
                let raw = &field.value[e.offset()..];
                let span = locate(source, node_span, raw.get(..2).unwrap_or(raw));
                r.out.push(
                    Diagnostic::error("invalid-placeholder", e.to_string(), r.file, span)
                        .at_path(&field.path)
                        .with_hint("close it with `}`, or write `$${` for a literal `${`"),
                );
            }
            Ok(found) => {
                for p in found {
                    if let Some((message, hint)) = check_placeholder(w, &p, &resource_names) {
                        let span = locate(source, node_span, &field.value[p.start..p.end]);
                        r.out.push(
                            Diagnostic::error("unresolved-placeholder", message, r.file, span)
                                .at_path(&field.path)
                                .with_hint(hint),
                        );
                    }
                }
            }
        }
    }
}

/// Each file's `binaryContent` is standard base64 (it is written as the
/// bytes it encodes, never expanded).
fn binary_contents(w: &Workload, r: &mut Report<'_>) {
    use base64::Engine;
    use paved_model::score::Files;
    for (cname, c) in &w.containers {
        let entries: Vec<(Vec<String>, &paved_model::score::ContainerFile)> = match &c.files {
            Some(Files::Map(m)) => m.iter().map(|(t, f)| (vec![t.clone()], f)).collect(),
            Some(Files::List(l)) => l.iter().enumerate().map(|(i, f)| (vec![i.to_string()], f)).collect(),
            None => Vec::new(),
        };
        for (key, f) in entries {
            let Some(data) = &f.binary_content else { continue };
            let compact: String = data.chars().filter(|c| !c.is_ascii_whitespace()).collect();
            if let Err(e) = base64::engine::general_purpose::STANDARD.decode(compact) {
                let at =
                    [vec!["containers".to_string(), cname.clone(), "files".into()], key, vec!["binaryContent".into()]]
                        .concat();
                let d = r.error("invalid-format", &at, format!("binaryContent is not base64: {e}"));
                set_hint(d, "encode the bytes with `base64 -w0 FILE` (standard alphabet, `=` padding)");
            }
        }
    }
}

/// Every path a Score file names inside its container (file and volume
/// targets) is absolute and stays inside: no `..`, no NUL. paved writes files
/// and mounts volumes at these paths in the container's directory.
fn confined_paths(w: &Workload, r: &mut Report<'_>) {
    use paved_model::score::{Files, Volumes};
    for (cname, c) in &w.containers {
        let mut targets: Vec<(Vec<String>, bool, String)> = Vec::new();
        let base = |what: &str| vec!["containers".to_string(), cname.clone(), what.to_string()];
        match &c.files {
            Some(Files::Map(m)) => {
                targets.extend(m.keys().map(|t| ([base("files"), vec![t.clone()]].concat(), true, t.clone())))
            }
            Some(Files::List(l)) => targets.extend(l.iter().enumerate().filter_map(|(i, f)| {
                f.target.clone().map(|t| ([base("files"), vec![i.to_string(), "target".into()]].concat(), false, t))
            })),
            None => {}
        }
        match &c.volumes {
            Some(Volumes::Map(m)) => {
                targets.extend(m.keys().map(|t| ([base("volumes"), vec![t.clone()]].concat(), true, t.clone())))
            }
            Some(Volumes::List(l)) => targets.extend(l.iter().enumerate().filter_map(|(i, v)| {
                v.target.clone().map(|t| ([base("volumes"), vec![i.to_string(), "target".into()]].concat(), false, t))
            })),
            None => {}
        }
        for (at, is_key, target) in targets {
            let escapes = target.split('/').any(|part| part == "..");
            let problem = if target.contains('\0') {
                Some("contains a NUL character")
            } else if escapes {
                Some("leaves the container (`..`)")
            } else if target.trim_matches('/').is_empty() {
                Some("is the container's root")
            } else {
                None
            };
            if let Some(problem) = problem {
                let message = format!("path `{target}` {problem}");
                let d = if is_key {
                    r.key_error("unconfined-path", &at, message)
                } else {
                    r.error("unconfined-path", &at, message)
                };
                set_hint(d, "name an absolute path inside the container, like `/etc/app/config.yaml`, without `..`");
            }
        }
    }
}

fn check_placeholder(w: &Workload, p: &Placeholder, resources: &[&String]) -> Option<(String, String)> {
    let text = p.text();
    match p.path.first().map(String::as_str) {
        Some("resources") => {
            let Some(name) = p.path.get(1) else {
                return Some((format!("`{text}` names no resource"), "write `${resources.NAME.FIELD}`".into()));
            };
            if w.resources.contains_key(name) {
                return None;
            }
            let hint = match did_you_mean(name, resources) {
                Some(s) => format!("did you mean `{s}`? declared resources: {}", join(resources)),
                None if resources.is_empty() => {
                    format!("declare it under `resources.{name}` with a `type`")
                }
                None => format!("declare it under `resources.{name}`, or use one of: {}", join(resources)),
            };
            Some((format!("`{text}` refers to undeclared resource `{name}`"), hint))
        }
        Some("metadata") => {
            let ok = match p.path.get(1).map(String::as_str) {
                Some("name") => p.path.len() == 2,
                Some("annotations") => p.path.len() >= 3 && w.metadata.annotations.contains_key(&p.path[2..].join(".")),
                Some(other) => w.metadata.extra.contains_key(other),
                None => false,
            };
            (!ok).then(|| {
                (
                    format!("`{text}` refers to metadata that this workload does not declare"),
                    "use `${metadata.name}` or a declared annotation".into(),
                )
            })
        }
        Some("secrets") => match p.path.get(1) {
            Some(name) if p.path.len() == 2 && valid_secret_name(name) => None,
            _ => Some((
                format!("`{text}` is not a secret reference"),
                "write `${secrets.NAME}` with NAME made of letters, digits, `_` and `-` (the value is set with `paved secret set NAME -e ENV`)".into(),
            )),
        },
        _ => Some((
            format!("unknown placeholder `{text}`"),
            "placeholders start with `metadata.`, `resources.` or `secrets.`; write `$${` for a literal `${`".into(),
        )),
    }
}

/// The secret name rule (also `paved_secrets::vault::check_name`, which the
/// spec layer does not depend on).
fn valid_secret_name(name: &str) -> bool {
    name.len() <= 128
        && name.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-'))
}

fn join(names: &[&String]) -> String {
    names.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
}

/// Finds `needle` inside the source text of a node, so a diagnostic points at
/// the placeholder itself rather than the start of the string.
fn locate(source: &SourceFile, span: Span, needle: &str) -> Span {
    let text = &source.text;
    let to_byte = |idx: usize| text.char_indices().nth(idx).map_or(text.len(), |(b, _)| b);
    let (start, end) = (to_byte(span.start.index), to_byte(span.end.index.max(span.start.index)));
    let Some(found) = text.get(start..end).and_then(|s| s.find(needle)) else {
        return span;
    };
    let before = &text[start..start + found];
    let mut pos = span.start;
    for ch in before.chars() {
        pos.index += 1;
        if ch == '\n' {
            pos.line += 1;
            pos.col = 1;
        } else {
            pos.col += 1;
        }
    }
    let n = needle.chars().count();
    let end = Pos { line: pos.line, col: pos.col + n, index: pos.index + n };
    Span { start: pos, end }
}
