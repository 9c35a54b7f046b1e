//! Checking a value against a blueprint parameter's type and constraints.

use paved_model::{ParamType, ParameterSpec};
use serde_json::Value;

/// Why a value does not fit a parameter: a message and, where useful, a hint.
pub struct Mismatch {
    pub message: String,
    pub expected: String,
}

pub fn check_value(name: &str, p: &ParameterSpec, v: &Value) -> Result<(), Mismatch> {
    let found = || match v {
        Value::String(s) => format!("\"{s}\""),
        other => other.to_string(),
    };
    match p.kind {
        ParamType::Integer => {
            let Some(n) = v.as_i64() else {
                return Err(Mismatch {
                    message: format!("parameter `{name}` is an integer, found {}", found()),
                    expected: "an integer".into(),
                });
            };
            let range = match (p.min, p.max) {
                (Some(lo), Some(hi)) => format!("between {lo} and {hi}"),
                (Some(lo), None) => format!(">= {lo}"),
                (None, Some(hi)) => format!("<= {hi}"),
                (None, None) => "an integer".into(),
            };
            if p.min.is_some_and(|lo| n < lo) || p.max.is_some_and(|hi| n > hi) {
                return Err(Mismatch {
                    message: format!("parameter `{name}` must be {range}, found {n}"),
                    expected: range,
                });
            }
        }
        ParamType::Boolean => {
            if !v.is_boolean() {
                return Err(Mismatch {
                    message: format!("parameter `{name}` is a boolean, found {}", found()),
                    expected: "`true` or `false`".into(),
                });
            }
        }
        ParamType::Enum | ParamType::Size => {
            let allowed = p.allowed_values();
            let listed = allowed.iter().map(|a| format!("`{a}`")).collect::<Vec<_>>().join(", ");
            match v.as_str() {
                Some(s) if allowed.iter().any(|a| a == s) => {}
                _ => {
                    return Err(Mismatch {
                        message: format!("parameter `{name}` must be one of {listed}, found {}", found()),
                        expected: format!("one of {listed}"),
                    });
                }
            }
        }
        ParamType::String => {
            let Some(s) = v.as_str() else {
                return Err(Mismatch {
                    message: format!("parameter `{name}` is a string, found {}", found()),
                    expected: "a string".into(),
                });
            };
            if let Some(pattern) = &p.pattern {
                let ok = regex::Regex::new(pattern).map(|re| re.is_match(s)).unwrap_or(false);
                if !ok {
                    return Err(Mismatch {
                        message: format!("parameter `{name}` must match `{pattern}`, found \"{s}\""),
                        expected: format!("a string matching `{pattern}`"),
                    });
                }
            }
        }
    }
    Ok(())
}
