//! Rendering results as tables, JSON or YAML.

use crate::cli::Format;
use comfy_table::{Table, presets};
use serde::Serialize;

pub fn table(headers: &[&str], rows: Vec<Vec<String>>) -> String {
    let mut t = Table::new();
    t.load_style(presets::NOTHING);
    t.set_header(headers.iter().copied());
    for r in rows {
        t.add_row(r);
    }
    // comfy-table pads the first column with one space; kubectl-style output has none.
    t.to_string()
        .lines()
        .map(|l| l.strip_prefix(' ').unwrap_or(l).trim_end().to_string())
        .collect::<Vec<_>>()
        .join("\n")
}

/// JSON or YAML for machine-readable formats; `None` for tables.
pub fn structured<T: Serialize>(format: Format, value: &T) -> Option<String> {
    let json = serde_json::to_value(value).unwrap_or(serde_json::Value::Null);
    match format {
        Format::Table => None,
        Format::Json => Some(serde_json::to_string_pretty(&json).unwrap_or_default()),
        Format::Yaml => Some(paved_spec::render::to_yaml_string(std::slice::from_ref(&json)).trim_end().to_string()),
    }
}

/// "3m ago"-style ages are time-dependent; tables show UTC timestamps instead
/// so output is reproducible.
pub fn timestamp(t: time::OffsetDateTime) -> String {
    let f = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second]Z");
    t.to_offset(time::UtcOffset::UTC).format(&f).unwrap_or_default()
}

pub fn short_hash(h: &str) -> String {
    h.strip_prefix("sha256:").unwrap_or(h).chars().take(12).collect()
}
