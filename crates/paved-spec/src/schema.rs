//! JSON Schemas for every kind, generated from the `paved-model` types, and
//! the translation of schema violations into positioned diagnostics.
//!
//! Structural validation runs the generated schema (with the `jsonschema`
//! crate) over the whole document, so *all* structural errors of a document
//! are reported at once; each error's instance path is mapped back to the
//! YAML node it came from.

use crate::diagnostic::{Diagnostic, format_path};
use crate::suggest::did_you_mean;
use crate::yaml::{self, Node};
use jsonschema::error::{TypeKind, ValidationErrorKind};
use jsonschema::paths::LocationSegment;
use jsonschema::{ValidationError, Validator};
use paved_model::{Kind, PAVED_API_VERSION};
use schemars::generate::SchemaSettings;
use serde_json::{Value, json};
use std::sync::OnceLock;

fn generator() -> schemars::SchemaGenerator {
    SchemaSettings::draft2020_12().into_generator()
}

/// Optional fields are omitted, never `null` (as in the Score schema): drop
/// the `null` alternative schemars adds for `Option<T>`.
fn strip_null(v: &mut Value) {
    match v {
        Value::Object(map) => {
            if let Some(Value::Array(types)) = map.get_mut("type") {
                types.retain(|t| t != "null");
                if types.len() == 1 {
                    let only = types.remove(0);
                    map.insert("type".into(), only);
                }
            }
            if let Some(Value::Array(alts)) = map.get_mut("anyOf") {
                let before = alts.len();
                alts.retain(|a| a.get("type").and_then(Value::as_str) != Some("null"));
                if alts.len() == 1
                    && before == 2
                    && let Some(Value::Object(only)) = alts.pop()
                {
                    map.remove("anyOf");
                    for (k, val) in only {
                        map.entry(k).or_insert(val);
                    }
                }
            }
            map.values_mut().for_each(strip_null);
        }
        Value::Array(items) => items.iter_mut().for_each(strip_null),
        _ => {}
    }
}

/// The JSON Schema of a kind's document, as printed by `paved schema KIND`.
pub fn document_schema(kind: Kind) -> Value {
    let g = generator();
    let mut schema = match kind {
        Kind::Blueprint => g.into_root_schema_for::<paved_model::Blueprint>(),
        Kind::CloudAccount => g.into_root_schema_for::<paved_model::CloudAccount>(),
        Kind::Environment => g.into_root_schema_for::<paved_model::Environment>(),
        Kind::Team => g.into_root_schema_for::<paved_model::Team>(),
        Kind::RoleBinding => g.into_root_schema_for::<paved_model::RoleBinding>(),
        Kind::Service => g.into_root_schema_for::<paved_model::Workload>(),
        Kind::Policy => g.into_root_schema_for::<paved_model::Policy>(),
        Kind::PolicyException => g.into_root_schema_for::<paved_model::PolicyException>(),
    }
    .to_value();
    strip_null(&mut schema);
    if kind != Kind::Service
        && let Some(obj) = schema.as_object_mut()
    {
        let props = obj.entry("properties").or_insert_with(|| json!({}));
        if let Some(props) = props.as_object_mut() {
            let mut with_envelope = serde_json::Map::new();
            with_envelope.insert("apiVersion".into(), json!({"const": PAVED_API_VERSION}));
            with_envelope.insert("kind".into(), json!({"const": kind.as_str()}));
            with_envelope.extend(std::mem::take(props));
            *props = with_envelope;
        }
        let required = obj.entry("required").or_insert_with(|| json!([]));
        if let Some(req) = required.as_array_mut() {
            req.insert(0, json!("kind"));
            req.insert(0, json!("apiVersion"));
        }
        obj.insert("$id".into(), json!(format!("https://paved.dev/schemas/{}.json", kind.as_str())));
    }
    schema
}

/// A kind's schema and its compiled validator, built once per process.
struct Compiled {
    schema: Value,
    validator: Validator,
}

fn compiled(kind: Kind) -> &'static Compiled {
    static COMPILED: [OnceLock<Compiled>; Kind::ALL.len()] = [const { OnceLock::new() }; Kind::ALL.len()];
    let idx = Kind::ALL.iter().position(|k| *k == kind).unwrap_or(0);
    COMPILED[idx].get_or_init(|| {
        let schema = document_schema(kind);
        // The schema is generated from our own types: failing to compile it is a bug
        // caught by the tests of this module, never by user input.
        let validator = jsonschema::validator_for(&schema).expect("generated schema compiles");
        Compiled { schema, validator }
    })
}

struct Ctx<'a> {
    file: &'a str,
    root: &'a Node,
    schema: &'a Value,
}

/// Validates a document's JSON form against its kind's schema. Also returns
/// the paths of unknown fields, so a caller can drop them and still run the
/// remaining checks (reporting every problem of a file at once).
pub fn check(kind: Kind, doc: &Value, root: &Node, file: &str) -> (Vec<Diagnostic>, Vec<Vec<String>>) {
    let compiled = compiled(kind);
    let ctx = Ctx { file, root, schema: &compiled.schema };
    let mut out = Vec::new();
    for err in compiled.validator.iter_errors(doc) {
        translate(&err, &ctx, &mut out);
    }
    out.dedup_by(|a, b| a.path == b.path && a.message == b.message);
    let unknown = out.iter().filter(|d| d.code == "unknown-field").filter_map(|d| d.segments.clone()).collect();
    (out, unknown)
}

fn segments(loc: &jsonschema::paths::Location) -> Vec<String> {
    loc.iter()
        .map(|s| match s {
            LocationSegment::Property(p) => p.to_string(),
            LocationSegment::Index(i) => i.to_string(),
        })
        .collect()
}

/// The sub-schema at a keyword location, following `$ref`s.
fn schema_at<'a>(root: &'a Value, path: &[String]) -> Option<&'a Value> {
    let mut cur = root;
    for seg in path {
        cur = if seg == "$ref" {
            let r = cur.get("$ref")?.as_str()?;
            root.pointer(r.strip_prefix('#')?)?
        } else {
            match cur {
                Value::Object(m) => m.get(seg)?,
                Value::Array(a) => a.get(seg.parse::<usize>().ok()?)?,
                _ => return None,
            }
        };
    }
    // A schema that is only a reference stands for its target.
    while let Some(r) = cur.get("$ref").and_then(Value::as_str) {
        cur = root.pointer(r.strip_prefix('#')?)?;
    }
    Some(cur)
}

fn describe(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => format!("boolean `{b}`"),
        Value::Number(n) if n.is_i64() || n.is_u64() => format!("integer `{n}`"),
        Value::Number(n) => format!("number `{n}`"),
        Value::String(s) if s.chars().count() > 40 => {
            format!("string \"{}…\"", s.chars().take(40).collect::<String>())
        }
        Value::String(s) => format!("string \"{s}\""),
        Value::Array(_) => "a list".into(),
        Value::Object(_) => "a mapping".into(),
    }
}

fn type_name(kind: &TypeKind) -> String {
    let name = |t: jsonschema::JsonType| match t.to_string().as_str() {
        "object" => "a mapping".to_string(),
        "array" => "a list".to_string(),
        other => other.to_string(),
    };
    match kind {
        TypeKind::Single(t) => name(*t),
        TypeKind::Multiple(set) => set.iter().map(name).collect::<Vec<_>>().join(" or "),
    }
}

/// A human phrase for the patterns our schemas use.
fn pattern_hint(pattern: &str) -> Option<&'static str> {
    let table: [(&str, &str); 11] = [
        (
            "^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$",
            "use lowercase letters, digits and `-`, starting and ending with a letter or digit, at most 63 characters",
        ),
        (
            "^[a-z0-9][a-z0-9-]{0,61}[a-z0-9]$",
            "use 2–63 lowercase letters, digits and `-`, starting and ending with a letter or digit",
        ),
        ("([0-9]+(ms|s|m|h|d))+", "write a duration such as `30s`, `5m`, `1h30m` or `7d`"),
        ("@[0-9]+\\.[0-9]+\\.[0-9]+$", "write `BLUEPRINT@VERSION`, e.g. `web-service-standard@1.2.0`"),
        ("^[0-9]+\\.[0-9]+\\.[0-9]+$", "use MAJOR.MINOR.PATCH, e.g. `1.2.0`"),
        ("parameters\\.", "reference a blueprint parameter as `${parameters.NAME}`"),
        ("^(user|group|serviceaccount):", "write `user:EMAIL`, `group:NAME` or `serviceaccount:NAME`"),
        (":iam::", "an IAM role ARN such as `arn:aws:iam::123456789012:role/paved-provisioner`"),
        ("(K|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$", "write memory as bytes with an optional unit, e.g. `512Mi` or `1.5Gi`"),
        ("^\\d+(?:m|\\.\\d+)?$", "write CPU as whole or fractional CPUs or millicpus, e.g. `2`, `0.5` or `250m`"),
        ("^0?[0-7]{3}$", "write the mode as an octal string, e.g. `\"0600\"`"),
    ];
    table.iter().find(|(p, _)| pattern.contains(p)).map(|(_, h)| *h)
}

fn translate(err: &ValidationError<'_>, ctx: &Ctx<'_>, out: &mut Vec<Diagnostic>) {
    let path = segments(err.instance_path());
    let schema_path = segments(err.schema_path());
    let span = ctx.root.span_of(&path);
    let at = |code: &'static str, msg: String| Diagnostic::error(code, msg, ctx.file, span).at_path(&path);
    let instance = err.instance();
    let d = match err.kind() {
        ValidationErrorKind::AdditionalProperties { unexpected } => {
            let parent = schema_at(ctx.schema, &schema_path[..schema_path.len().saturating_sub(1)]);
            let allowed: Vec<String> = parent
                .and_then(|s| s.get("properties"))
                .and_then(Value::as_object)
                .map(|p| p.keys().cloned().collect())
                .unwrap_or_default();
            for key in unexpected {
                let mut key_path = path.clone();
                key_path.push(key.clone());
                let span = ctx.root.key_span_of(&key_path);
                let hint = match did_you_mean(key, &allowed) {
                    Some(s) => format!("did you mean `{s}`?"),
                    None if allowed.is_empty() => "remove this field".to_string(),
                    None => format!("remove it; the fields allowed here are: {}", allowed.join(", ")),
                };
                let mut d = Diagnostic::error("unknown-field", format!("unknown field `{key}`"), ctx.file, span)
                    .at_path(&key_path)
                    .with_hint(hint);
                d.segments = Some(key_path);
                out.push(d);
            }
            return;
        }
        ValidationErrorKind::Required { property } => {
            let name = property.as_str().unwrap_or_default().to_string();
            let parent = if path.is_empty() { "the document".to_string() } else { format!("`{}`", format_path(&path)) };
            let mut full = path.clone();
            full.push(name.clone());
            let desc = schema_at(ctx.schema, &schema_path[..schema_path.len().saturating_sub(1)])
                .and_then(|s| s.get("properties"))
                .and_then(|p| p.get(&name))
                .and_then(|p| p.get("description"))
                .and_then(Value::as_str)
                .map(|d| format!(" ({})", d.trim_end_matches('.')))
                .unwrap_or_default();
            // Point at the key of the mapping that lacks the field (`spec:`), not its whole body.
            let span =
                if path.is_empty() { yaml::Span::point(ctx.root.span.start) } else { ctx.root.key_span_of(&path) };
            Diagnostic::error("missing-field", format!("missing required field `{name}`"), ctx.file, span)
                .at_path(&full)
                .with_hint(format!("add `{name}:` to {parent}{desc}"))
        }
        ValidationErrorKind::Type { kind } => {
            let expected = type_name(kind);
            at("wrong-type", format!("expected {expected}, found {}", describe(instance))).with_expected(expected)
        }
        ValidationErrorKind::Enum { options } => {
            let opts: Vec<String> = options
                .as_array()
                .map(|a| a.iter().map(|v| v.as_str().map_or(v.to_string(), str::to_string)).collect())
                .unwrap_or_default();
            let listed = opts.iter().map(|o| format!("`{o}`")).collect::<Vec<_>>().join(", ");
            let hint = instance.as_str().and_then(|s| did_you_mean(s, &opts)).map(|s| format!("did you mean `{s}`?"));
            at("invalid-value", format!("{} is not one of {listed}", describe(instance)))
                .with_expected(format!("one of {listed}"))
                .maybe_hint(hint)
        }
        ValidationErrorKind::Constant { expected_value } => {
            let exp = expected_value.as_str().map_or(expected_value.to_string(), str::to_string);
            at("invalid-value", format!("expected `{exp}`, found {}", describe(instance)))
                .with_expected(format!("`{exp}`"))
        }
        ValidationErrorKind::Pattern { pattern } => {
            at("invalid-format", format!("{} does not have the required format", describe(instance)))
                .with_expected(format!("a string matching `{pattern}`"))
                .maybe_hint(pattern_hint(pattern).map(str::to_string))
        }
        ValidationErrorKind::Minimum { limit } | ValidationErrorKind::ExclusiveMinimum { limit } => {
            at("out-of-range", format!("{} is below the minimum of {limit}", describe(instance)))
                .with_expected(format!(">= {limit}"))
        }
        ValidationErrorKind::Maximum { limit } | ValidationErrorKind::ExclusiveMaximum { limit } => {
            at("out-of-range", format!("{} is above the maximum of {limit}", describe(instance)))
                .with_expected(format!("<= {limit}"))
        }
        ValidationErrorKind::MinLength { limit } => {
            at("too-short", format!("{} is shorter than {limit} characters", describe(instance)))
        }
        ValidationErrorKind::MaxLength { limit } => at("too-long", format!("value is longer than {limit} characters")),
        ValidationErrorKind::MinItems { limit } => at("too-few-items", format!("list needs at least {limit} item(s)")),
        ValidationErrorKind::MaxItems { limit } => at("too-many-items", format!("list has more than {limit} items")),
        ValidationErrorKind::MinProperties { limit } => at(
            "too-few-entries",
            format!("mapping needs at least {limit} entr{}", if *limit == 1 { "y" } else { "ies" }),
        ),
        ValidationErrorKind::UniqueItems => at("duplicate-item", "list items must be unique".to_string()),
        ValidationErrorKind::PropertyNames { error } => {
            let key = error.instance().as_str().unwrap_or_default().to_string();
            let mut key_path = path.clone();
            key_path.push(key.clone());
            let span = ctx.root.key_span_of(&key_path);
            let reason = match error.kind() {
                ValidationErrorKind::Pattern { pattern } => {
                    pattern_hint(pattern).map_or_else(|| format!("it must match `{pattern}`"), str::to_string)
                }
                ValidationErrorKind::MinLength { limit } => {
                    format!("it must be at least {limit} characters long")
                }
                ValidationErrorKind::MaxLength { limit } => {
                    format!("it must be at most {limit} characters long")
                }
                _ => error.to_string(),
            };
            Diagnostic::error("invalid-key", format!("invalid key `{key}`"), ctx.file, span)
                .at_path(&key_path)
                .with_hint(reason)
        }
        ValidationErrorKind::Not { .. } => {
            let hint = if instance.get("target").is_some() {
                "`target` is only allowed in the deprecated list form; in the map form the key is the target"
            } else {
                "remove the field this value must not have"
            };
            at("not-allowed", "this value has a form that is not allowed here".to_string()).with_hint(hint)
        }
        ValidationErrorKind::OneOfMultipleValid { .. } => {
            let alternatives = required_alternatives(schema_at(ctx.schema, &schema_path));
            match alternatives {
                Some(fields) => at("ambiguous", format!("set exactly one of {fields}, not several")),
                None => at("ambiguous", "value matches more than one allowed form".to_string()),
            }
        }
        ValidationErrorKind::AnyOf { context } | ValidationErrorKind::OneOfNotValid { context } => {
            if let Some(fields) = required_alternatives(schema_at(ctx.schema, &schema_path)) {
                out.push(at("missing-field", format!("set one of {fields}")));
                return;
            }
            alternatives(context, &path, instance, ctx, out);
            return;
        }
        _ => at("invalid", err.to_string()),
    };
    out.push(d);
}

/// For `oneOf`/`anyOf` lists of `{"required": [x]}`: "`a`, `b` or `c`".
fn required_alternatives(schema: Option<&Value>) -> Option<String> {
    let list = schema?.as_array()?;
    let names: Option<Vec<String>> = list
        .iter()
        .map(|alt| {
            let req = alt.get("required")?.as_array()?;
            (alt.as_object()?.len() == 1 && req.len() == 1)
                .then(|| format!("`{}`", req[0].as_str().unwrap_or_default()))
        })
        .collect();
    let names = names?;
    let (last, rest) = names.split_last()?;
    Some(if rest.is_empty() { last.clone() } else { format!("{} or {last}", rest.join(", ")) })
}

/// Reports the failure of a value against alternatives (`anyOf` / `oneOf`):
/// a one-line "expected A or B" when each alternative failed on the value
/// itself, otherwise the errors of the alternative that came closest.
fn alternatives(
    context: &[Vec<ValidationError<'static>>],
    path: &[String],
    instance: &Value,
    ctx: &Ctx<'_>,
    out: &mut Vec<Diagnostic>,
) {
    let at_root = |e: &ValidationError<'_>| segments(e.instance_path()) == path;
    let single_shallow = context.iter().all(|branch| branch.len() == 1 && at_root(&branch[0]));
    if single_shallow && !context.is_empty() {
        let mut expected: Vec<String> = Vec::new();
        for branch in context {
            let phrase = match branch[0].kind() {
                ValidationErrorKind::Type { kind } => type_name(kind),
                ValidationErrorKind::Pattern { pattern } if pattern.contains("parameters\\.") => {
                    "a `${parameters.NAME}` reference".to_string()
                }
                ValidationErrorKind::Pattern { pattern } => {
                    format!("a string matching `{pattern}`")
                }
                ValidationErrorKind::Enum { options } => format!("one of {options}"),
                _ => continue,
            };
            if !expected.contains(&phrase) {
                expected.push(phrase);
            }
        }
        let exp = expected.join(" or ");
        out.push(
            Diagnostic::error(
                "wrong-type",
                format!("expected {exp}, found {}", describe(instance)),
                ctx.file,
                ctx.root.span_of(path),
            )
            .at_path(path)
            .with_expected(exp),
        );
        return;
    }
    // Skip alternatives that want a different shape altogether (a list where a
    // mapping was written); among the rest, the one with the fewest errors wins.
    let best = context
        .iter()
        .filter(|b| !b.iter().any(|e| at_root(e) && matches!(e.kind(), ValidationErrorKind::Type { .. })))
        .min_by_key(|b| b.len())
        .or_else(|| context.iter().min_by_key(|b| b.len()));
    if let Some(branch) = best {
        for e in branch {
            translate(e, ctx, out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_has_a_compilable_schema() {
        for kind in Kind::ALL {
            let _ = compiled(kind);
            let schema = document_schema(kind);
            assert_eq!(schema["$schema"], "https://json-schema.org/draft/2020-12/schema", "{kind}");
        }
    }

    #[test]
    fn paved_kinds_require_their_envelope() {
        let schema = document_schema(Kind::Team);
        assert_eq!(schema["properties"]["kind"]["const"], "Team");
        assert_eq!(schema["required"][0], "apiVersion");
    }
}
