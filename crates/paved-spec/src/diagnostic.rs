//! Diagnostics: what was wrong, where (file:line:column and field path), what
//! was expected and how to fix it. Rendered rustc-style with source snippets
//! for terminals, or as structured JSON.

use crate::source::SourceFile;
use crate::yaml::Span;
use annotate_snippets::{AnnotationKind, Group, Level, Renderer, Snippet};
use serde::Serialize;
use std::fmt::Write as _;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    pub severity: Severity,
    /// Stable machine-readable code, e.g. `unknown-field`, `region-not-allowed`.
    pub code: &'static str,
    pub message: String,
    pub file: String,
    pub line: usize,
    pub column: usize,
    pub end_line: usize,
    pub end_column: usize,
    /// Field path inside the document, e.g. `spec.parameters.replicas.max`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expected: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
    /// Character range in the file, for rendering.
    #[serde(skip)]
    pub chars: (usize, usize),
    /// The field path as segments, where a later step needs it.
    #[serde(skip)]
    pub segments: Option<Vec<String>>,
}

impl Diagnostic {
    pub fn error(code: &'static str, message: impl Into<String>, file: &str, span: Span) -> Diagnostic {
        Diagnostic {
            severity: Severity::Error,
            code,
            message: message.into(),
            file: file.to_string(),
            line: span.start.line,
            column: span.start.col,
            end_line: span.end.line,
            end_column: span.end.col,
            path: None,
            expected: None,
            hint: None,
            chars: (span.start.index, span.end.index.max(span.start.index)),
            segments: None,
        }
    }

    pub fn warning(code: &'static str, message: impl Into<String>, file: &str, span: Span) -> Diagnostic {
        Diagnostic { severity: Severity::Warning, ..Diagnostic::error(code, message, file, span) }
    }

    pub fn at_path(mut self, path: &[String]) -> Diagnostic {
        if !path.is_empty() {
            self.path = Some(format_path(path));
        }
        self
    }

    pub fn with_expected(mut self, expected: impl Into<String>) -> Diagnostic {
        self.expected = Some(expected.into());
        self
    }

    pub fn with_hint(mut self, hint: impl Into<String>) -> Diagnostic {
        self.hint = Some(hint.into());
        self
    }

    pub fn maybe_hint(mut self, hint: Option<String>) -> Diagnostic {
        if hint.is_some() {
            self.hint = hint;
        }
        self
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }

    /// `file:line:column: error: message` — one line, for logs and tests.
    pub fn short(&self) -> String {
        let sev = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        format!("{}:{}:{}: {sev}[{}]: {}", self.file, self.line, self.column, self.code, self.message)
    }
}

/// Renders a field path: `spec.parameters.replicas.max`,
/// `metadata.annotations["paved.dev/owner"]`, `spec.tiers[0]`.
pub fn format_path<S: AsRef<str>>(path: &[S]) -> String {
    let mut out = String::new();
    for seg in path {
        let seg = seg.as_ref();
        if !seg.is_empty() && seg.bytes().all(|b| b.is_ascii_digit()) {
            let _ = write!(out, "[{seg}]");
        } else if seg.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-') && !seg.is_empty() {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(seg);
        } else {
            let _ = write!(out, "[{}]", serde_json::Value::String(seg.to_string()));
        }
    }
    out
}

/// Sorts diagnostics by file and position so output is deterministic.
pub fn sort(diags: &mut [Diagnostic]) {
    diags.sort_by(|a, b| (&a.file, a.line, a.column, &a.message).cmp(&(&b.file, b.line, b.column, &b.message)));
}

/// Renders diagnostics with source snippets (rustc style).
pub fn render(diags: &[Diagnostic], sources: &[SourceFile], color: bool) -> String {
    let renderer = if color { Renderer::styled() } else { Renderer::plain() };
    let mut out = String::new();
    for d in diags {
        let level = match d.severity {
            Severity::Error => Level::ERROR,
            Severity::Warning => Level::WARNING,
        };
        let mut title = d.message.clone();
        if let Some(path) = &d.path {
            let _ = write!(title, " (at `{path}`)");
        }
        let source = sources.iter().find(|s| s.path == d.file);
        let excerpt = source.and_then(|s| excerpt(&s.text, d));
        let mut group = Group::with_title(level.primary_title(title).id(d.code));
        if let Some((text, first_line, range)) = &excerpt {
            let label = d.expected.as_deref().map(|e| format!("expected {e}")).unwrap_or_default();
            group = group.element(
                Snippet::source(text.as_str())
                    .line_start(*first_line)
                    .path(d.file.as_str())
                    .annotation(AnnotationKind::Primary.span(range.clone()).label(label)),
            );
        } else {
            group = group.element(Level::NOTE.message(format!("in {}:{}:{}", d.file, d.line, d.column)));
        }
        if let Some(hint) = &d.hint {
            group = group.element(Level::HELP.message(hint.as_str()));
        }
        let report: [Group<'_>; 1] = [group];
        let _ = writeln!(out, "{}\n", renderer.render(&report));
    }
    out
}

/// The lines a diagnostic covers (at most a few), and its byte range in them.
fn excerpt(text: &str, d: &Diagnostic) -> Option<(String, usize, std::ops::Range<usize>)> {
    let first_line = d.line.max(1);
    let last_line = d.end_line.clamp(first_line, first_line + 3);
    let start_byte = line_start(text, first_line)?;
    let end_byte = line_start(text, last_line + 1).unwrap_or(text.len());
    let window = text.get(start_byte..end_byte)?.trim_end_matches(['\n', '\r']).to_string();
    let char_to_byte = |idx: usize| text.char_indices().nth(idx).map_or(text.len(), |(b, _)| b);
    let s = char_to_byte(d.chars.0).clamp(start_byte, start_byte + window.len()) - start_byte;
    let mut e = char_to_byte(d.chars.1).clamp(start_byte, start_byte + window.len()) - start_byte;
    if e <= s {
        e = (s + window[s..].chars().next().map_or(0, char::len_utf8)).min(window.len());
    }
    Some((window, first_line, s..e))
}

fn line_start(text: &str, line: usize) -> Option<usize> {
    if line == 1 {
        return Some(0);
    }
    text.match_indices('\n').nth(line - 2).map(|(i, _)| i + 1)
}
