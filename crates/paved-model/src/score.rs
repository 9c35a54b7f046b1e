//! Score workloads (`score.dev/v1b1`), taken as they are.
//!
//! These types mirror the official Score schema field for field, so a file
//! the Score tooling accepts is accepted here and vice versa (checked in tests
//! against the official schema as an oracle). paved's own extensions live
//! under `metadata.annotations` with the `paved.dev/` prefix.

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

/// Annotation naming the Team that owns a service.
pub const ANNOTATION_OWNER: &str = "paved.dev/owner";
/// Annotation naming the source repository of a service.
pub const ANNOTATION_REPOSITORY: &str = "paved.dev/repository";
/// Annotation with the stage order a service is promoted through (`dev,staging,production`).
pub const ANNOTATION_STAGES: &str = "paved.dev/stages";
/// Annotation mapping git branches to the environments a push deploys to (`main=dev,release=staging`).
pub const ANNOTATION_BRANCHES: &str = "paved.dev/branches";
/// All `paved.dev/` annotations paved understands.
pub const PAVED_ANNOTATIONS: [&str; 4] =
    [ANNOTATION_OWNER, ANNOTATION_REPOSITORY, ANNOTATION_STAGES, ANNOTATION_BRANCHES];

/// Resource types paved can provision (on at least one provider).
pub const RESOURCE_TYPES: [&str; 12] = [
    "postgres",
    "mysql",
    "redis",
    "s3",
    "queue",
    "amqp",
    "dns",
    "route",
    "volume",
    "service",
    "service-port",
    "environment",
];

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Workload {
    #[schemars(regex(pattern = r"^score\.dev/v1b1$"))]
    pub api_version: String,
    pub metadata: WorkloadMetadata,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<ServiceSpec>,
    #[schemars(extend("minProperties" = 1, "propertyNames" = {"minLength": 2, "maxLength": 63, "pattern": "^[a-z0-9][a-z0-9-]{0,61}[a-z0-9]$"}))]
    pub containers: BTreeMap<String, Container>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("propertyNames" = {"minLength": 2, "maxLength": 63, "pattern": "^[a-z0-9][a-z0-9-]{0,61}[a-z0-9]$"}))]
    pub resources: BTreeMap<String, ResourceSpec>,
}

impl Workload {
    pub fn annotation(&self, key: &str) -> Option<&str> {
        self.metadata.annotations.get(key).map(String::as_str)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct WorkloadMetadata {
    #[schemars(regex(pattern = r"^[a-z0-9][a-z0-9-]{0,61}[a-z0-9]$"), length(min = 2, max = 63))]
    pub name: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("propertyNames" = {"minLength": 2, "maxLength": 316, "pattern": "^(([a-z0-9][a-z0-9-]{0,61}[a-z0-9])(\\.[a-z0-9][a-z0-9-]{0,61}[a-z0-9])*/)?[A-Za-z0-9][A-Za-z0-9._-]{0,61}[A-Za-z0-9]$"}))]
    pub annotations: BTreeMap<String, String>,
    /// Score allows further metadata fields; they are kept as written.
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ServiceSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("propertyNames" = {"minLength": 2, "maxLength": 63, "pattern": "^[a-z0-9][a-z0-9-]{0,61}[a-z0-9]$"}))]
    pub ports: Option<BTreeMap<String, ServicePort>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ServicePort {
    #[schemars(range(min = 1, max = 65535))]
    pub port: u16,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<Protocol>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 65535))]
    pub target_port: Option<u16>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum Protocol {
    #[serde(rename = "TCP")]
    Tcp,
    #[serde(rename = "UDP")]
    Udp,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Container {
    #[schemars(length(min = 1))]
    pub image: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub args: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("propertyNames" = {"minLength": 1, "pattern": "^[^=]+$"}))]
    pub variables: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub files: Option<Files>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volumes: Option<Volumes>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("propertyNames" = {"minLength": 2, "maxLength": 63, "pattern": "^[a-z0-9][a-z0-9-]{0,61}[a-z0-9]$"}))]
    pub before: Option<BTreeMap<String, Before>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ContainerResources>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub liveness_probe: Option<Probe>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub readiness_probe: Option<Probe>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Before {
    pub ready: ReadyCondition,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ReadyCondition {
    Started,
    Healthy,
    Complete,
}

/// Files to mount: a map of target path → file (the array form is deprecated
/// but still accepted, as the Score schema does).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Files {
    Map(BTreeMap<String, ContainerFile>),
    List(Vec<ContainerFile>),
}

impl JsonSchema for Files {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Files".into()
    }

    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        let file = generator.subschema_for::<ContainerFile>();
        map_or_list_schema(file)
    }
}

/// Volumes to mount: a map of target path → volume (array form deprecated).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Volumes {
    Map(BTreeMap<String, ContainerVolume>),
    List(Vec<ContainerVolume>),
}

impl Volumes {
    /// (target, volume) of either form; a list item without a target has `""`.
    pub fn entries(&self) -> Vec<(String, &ContainerVolume)> {
        match self {
            Volumes::Map(m) => m.iter().map(|(k, v)| (k.clone(), v)).collect(),
            Volumes::List(l) => l.iter().map(|v| (v.target.clone().unwrap_or_default(), v)).collect(),
        }
    }
}

impl JsonSchema for Volumes {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Volumes".into()
    }

    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        let volume = generator.subschema_for::<ContainerVolume>();
        map_or_list_schema(volume)
    }
}

/// Score's "map keyed by target (without a `target` field), or deprecated list" shape.
fn map_or_list_schema(item: Schema) -> Schema {
    json_schema!({
        "oneOf": [
            {"type": "array", "deprecated": true, "items": item},
            {"type": "object", "additionalProperties": {"allOf": [
                {"not": {"type": "object", "additionalProperties": true, "required": ["target"]}},
                item
            ]}}
        ]
    })
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[schemars(extend("oneOf" = [{"required": ["content"]}, {"required": ["binaryContent"]}, {"required": ["source"]}]))]
pub struct ContainerFile {
    /// Deprecated: only used by the array form.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub target: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^0?[0-7]{3}$"))]
    pub mode: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub source: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub binary_content: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub no_expand: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ContainerVolume {
    pub source: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_only: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ContainerResources {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<ResourceLimits>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests: Option<ResourceLimits>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ResourceLimits {
    /// Bytes with an optional unit: `125M`, `1.5Gi`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^(0\.\d+|[1-9]\d*(\.\d+)?)(K|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$"))]
    pub memory: Option<String>,
    /// Whole or fractional CPUs, or millicpus: `2`, `0.5`, `125m`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^\d+(?:m|\.\d+)?$"))]
    pub cpu: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[schemars(extend("anyOf" = [{"required": ["httpGet"]}, {"required": ["exec"]}]))]
pub struct Probe {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_get: Option<HttpProbe>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exec: Option<ExecProbe>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct HttpProbe {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub host: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheme: Option<Scheme>,
    pub path: String,
    #[schemars(range(min = 1, max = 65535))]
    pub port: u16,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_headers: Option<Vec<HttpHeader>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum Scheme {
    #[serde(rename = "HTTP")]
    Http,
    #[serde(rename = "HTTPS")]
    Https,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HttpHeader {
    #[schemars(regex(pattern = r"^[A-Za-z0-9_-]+$"))]
    pub name: String,
    #[schemars(length(min = 1))]
    pub value: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExecProbe {
    pub command: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ResourceSpec {
    #[serde(rename = "type")]
    #[schemars(regex(pattern = r"^[A-Za-z0-9][A-Za-z0-9-]{0,61}[A-Za-z0-9]$"), length(min = 2, max = 63))]
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[A-Za-z0-9][A-Za-z0-9-]{0,61}[A-Za-z0-9]$"), length(min = 2, max = 63))]
    pub class: Option<String>,
    /// Resources of one type, class and id are shared between workloads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        regex(pattern = r"^[a-z0-9]+(?:-+[a-z0-9]+)*(?:\.[a-z0-9]+(?:-+[a-z0-9]+)*)*$"),
        length(min = 2, max = 63)
    )]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<ResourceMetadata>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub params: Option<serde_json::Map<String, Value>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ResourceMetadata {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("propertyNames" = {"minLength": 2, "maxLength": 316, "pattern": "^(([a-z0-9][a-z0-9-]{0,61}[a-z0-9])(\\.[a-z0-9][a-z0-9-]{0,61}[a-z0-9])*/)?[A-Za-z0-9][A-Za-z0-9._-]{0,61}[A-Za-z0-9]$"}))]
    pub annotations: Option<BTreeMap<String, String>>,
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

/// One string field of a workload that may carry placeholders, with the JSON
/// path it sits at (used to point diagnostics at the right place).
pub struct PlaceholderField<'a> {
    pub path: Vec<String>,
    pub value: &'a str,
}

impl Workload {
    /// The fields in which Score expands placeholders: container variables,
    /// command and args, inline file content (unless `noExpand`), volume
    /// sources and resource params.
    pub fn placeholder_fields(&self) -> Vec<PlaceholderField<'_>> {
        let mut out = Vec::new();
        let p = |parts: &[&str]| parts.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        for (cname, c) in &self.containers {
            for (k, v) in c.variables.iter().flatten() {
                out.push(PlaceholderField { path: p(&["containers", cname, "variables", k]), value: v });
            }
            for (field, list) in [("command", &c.command), ("args", &c.args)] {
                for (i, v) in list.iter().flatten().enumerate() {
                    out.push(PlaceholderField { path: p(&["containers", cname, field, &i.to_string()]), value: v });
                }
            }
            let files: Vec<(String, &ContainerFile)> = match &c.files {
                Some(Files::Map(m)) => m.iter().map(|(k, f)| (k.clone(), f)).collect(),
                Some(Files::List(l)) => l.iter().enumerate().map(|(i, f)| (i.to_string(), f)).collect(),
                None => Vec::new(),
            };
            for (key, f) in files {
                if let (Some(content), false) = (&f.content, f.no_expand.unwrap_or(false)) {
                    out.push(PlaceholderField {
                        path: p(&["containers", cname, "files", &key, "content"]),
                        value: content,
                    });
                }
            }
            let volumes: Vec<(String, &ContainerVolume)> = match &c.volumes {
                Some(Volumes::Map(m)) => m.iter().map(|(k, v)| (k.clone(), v)).collect(),
                Some(Volumes::List(l)) => l.iter().enumerate().map(|(i, v)| (i.to_string(), v)).collect(),
                None => Vec::new(),
            };
            for (key, v) in volumes {
                out.push(PlaceholderField {
                    path: p(&["containers", cname, "volumes", &key, "source"]),
                    value: &v.source,
                });
            }
        }
        for (rname, r) in &self.resources {
            if let Some(params) = &r.params {
                collect_strings(params, p(&["resources", rname, "params"]), &mut out);
            }
        }
        out
    }
}

fn collect_strings<'a>(
    map: &'a serde_json::Map<String, Value>,
    base: Vec<String>,
    out: &mut Vec<PlaceholderField<'a>>,
) {
    fn walk<'a>(v: &'a Value, path: Vec<String>, out: &mut Vec<PlaceholderField<'a>>) {
        match v {
            Value::String(s) => out.push(PlaceholderField { path, value: s }),
            Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    let mut p = path.clone();
                    p.push(i.to_string());
                    walk(item, p, out);
                }
            }
            Value::Object(m) => {
                for (k, item) in m {
                    let mut p = path.clone();
                    p.push(k.clone());
                    walk(item, p, out);
                }
            }
            _ => {}
        }
    }
    for (k, v) in map {
        let mut p = base.clone();
        p.push(k.clone());
        walk(v, p, out);
    }
}
