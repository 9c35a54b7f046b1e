//! Rendering specs back to YAML (for `-o yaml` and round-trip tests).

use saphyr::{Mapping, Scalar, Yaml, YamlEmitter};
use std::borrow::Cow;

/// Converts JSON to a YAML node tree (key order preserved).
pub fn to_yaml(v: &serde_json::Value) -> Yaml<'static> {
    use serde_json::Value as J;
    match v {
        J::Null => Yaml::Value(Scalar::Null),
        J::Bool(b) => Yaml::Value(Scalar::Boolean(*b)),
        J::Number(n) => match n.as_i64() {
            Some(i) => Yaml::Value(Scalar::Integer(i)),
            None => Yaml::Value(Scalar::FloatingPoint(n.as_f64().unwrap_or(f64::NAN).into())),
        },
        J::String(s) => Yaml::Value(Scalar::String(Cow::Owned(s.clone()))),
        J::Array(items) => Yaml::Sequence(items.iter().map(to_yaml).collect()),
        J::Object(map) => {
            let mut m = Mapping::new();
            for (k, v) in map {
                m.insert(Yaml::Value(Scalar::String(Cow::Owned(k.clone()))), to_yaml(v));
            }
            Yaml::Mapping(m)
        }
    }
}

/// Renders JSON values as a multi-document YAML stream.
pub fn to_yaml_string(docs: &[serde_json::Value]) -> String {
    let mut out = String::new();
    for d in docs {
        let mut text = String::new();
        let y = to_yaml(d);
        let mut emitter = YamlEmitter::new(&mut text);
        emitter.multiline(true);
        // Emitting into a String cannot fail.
        let _ = emitter.dump(&y);
        out.push_str(&text);
        out.push('\n');
    }
    out
}
