//! From source files to validated, typed documents (one file at a time).

use crate::diagnostic::{Diagnostic, Severity};
use crate::source::{SourceFile, check_size};
use crate::suggest::did_you_mean;
use crate::yaml::{self, Node, Span, Value};
use crate::{credentials, schema, semantic};
use paved_model::{Kind, PAVED_API_VERSION, SCORE_API_VERSION, Spec};

/// A document that passed every single-document check.
#[derive(Debug, Clone)]
pub struct ParsedDocument {
    /// Index into [`Batch::sources`].
    pub file: usize,
    pub root: Node,
    pub spec: Spec,
}

/// The result of parsing a set of files: the documents that are valid on
/// their own, and every diagnostic found (in all files, all documents).
#[derive(Debug, Clone, Default)]
pub struct Batch {
    pub sources: Vec<SourceFile>,
    pub documents: Vec<ParsedDocument>,
    pub diagnostics: Vec<Diagnostic>,
}

impl Batch {
    pub fn has_errors(&self) -> bool {
        self.diagnostics.iter().any(|d| d.severity == Severity::Error)
    }

    pub fn file_of(&self, doc: &ParsedDocument) -> &str {
        &self.sources[doc.file].path
    }
}

/// Parses and checks every document of every source.
///
/// Files are independent until the cross-document checks, so a large set is
/// parsed on every core, in contiguous runs of files; the results are joined
/// in file order, so the batch is the same as parsing them one by one.
pub fn parse_sources(sources: Vec<SourceFile>) -> Batch {
    /// Below this many files a thread costs more than it saves.
    const PER_THREAD: usize = 64;
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(sources.len() / PER_THREAD).max(1);
    let mut batch = Batch { sources, ..Batch::default() };
    if threads == 1 {
        let (documents, diagnostics) = parse_files(&batch.sources, 0);
        (batch.documents, batch.diagnostics) = (documents, diagnostics);
        return batch;
    }
    let chunk = batch.sources.len().div_ceil(threads);
    let parts: Vec<(Vec<ParsedDocument>, Vec<Diagnostic>)> = std::thread::scope(|scope| {
        let handles: Vec<_> = batch
            .sources
            .chunks(chunk)
            .enumerate()
            .map(|(n, files)| scope.spawn(move || parse_files(files, n * chunk)))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic))).collect()
    });
    for (mut documents, mut diagnostics) in parts {
        batch.documents.append(&mut documents);
        batch.diagnostics.append(&mut diagnostics);
    }
    batch
}

/// Parses a run of files; `first` is the index of the first in the batch.
fn parse_files(files: &[SourceFile], first: usize) -> (Vec<ParsedDocument>, Vec<Diagnostic>) {
    let (mut documents, mut diagnostics) = (Vec::new(), Vec::new());
    for (offset, source) in files.iter().enumerate() {
        if let Some(d) = check_size(source) {
            diagnostics.push(d);
            continue;
        }
        let docs = match yaml::parse(&source.text) {
            Ok(docs) => docs,
            Err(e) => {
                diagnostics.push(Diagnostic::error("invalid-yaml", e.message, &source.path, e.span).maybe_hint(e.hint));
                continue;
            }
        };
        if docs.is_empty() {
            diagnostics.push(
                Diagnostic::warning("empty-file", "file contains no YAML documents", &source.path, Span::default())
                    .with_hint("remove the file or add a spec to it"),
            );
        }
        for doc in docs {
            let (parsed, mut diags) = parse_document(first + offset, source, doc.root);
            diagnostics.append(&mut diags);
            documents.extend(parsed);
        }
    }
    (documents, diagnostics)
}

fn detect_kind(root: &Node, file: &str) -> Result<Kind, Box<Diagnostic>> {
    if !matches!(root.value, Value::Map(_)) {
        return Err(Box::new(Diagnostic::error("not-a-mapping", "a spec document must be a mapping", file, root.span)
            .with_hint("start the document with `apiVersion:` and `kind:` (or a Score workload with `apiVersion: score.dev/v1b1`)")));
    }
    let Some(api) = root.entry("apiVersion") else {
        return Err(Box::new(
            Diagnostic::error("missing-field", "missing required field `apiVersion`", file, root.span).with_hint(
                format!("add `apiVersion: {PAVED_API_VERSION}` (or `{SCORE_API_VERSION}` for a Score workload)"),
            ),
        ));
    };
    match api.value.as_str() {
        Some(SCORE_API_VERSION) => Ok(Kind::Service),
        Some(PAVED_API_VERSION) => {
            let Some(kind) = root.entry("kind") else {
                return Err(Box::new(
                    Diagnostic::error("missing-field", "missing required field `kind`", file, api.key_span)
                        .at_path(&["kind".to_string()])
                        .with_hint("add `kind:` with one of Blueprint, CloudAccount, Environment, Team"),
                ));
            };
            let text = kind.value.as_str().unwrap_or_default();
            Kind::from_document_kind(text).ok_or_else(|| {
                let names: Vec<&str> = Kind::PAVED.iter().map(|k| k.as_str()).collect();
                let hint = match did_you_mean(text, &names) {
                    Some(s) => format!("did you mean `{s}`?"),
                    None => format!(
                        "use one of {}; Score workloads use `apiVersion: {SCORE_API_VERSION}` and no kind",
                        names.join(", ")
                    ),
                };
                Box::new(
                    Diagnostic::error("unknown-kind", format!("unknown kind `{text}`"), file, kind.value.span)
                        .at_path(&["kind".to_string()])
                        .with_hint(hint),
                )
            })
        }
        other => {
            let shown = other.map_or_else(|| yaml_to_text(&api.value), str::to_string);
            let known = [PAVED_API_VERSION, SCORE_API_VERSION];
            let hint = match other.and_then(|s| did_you_mean(s, &known)) {
                Some(s) => format!("did you mean `{s}`?"),
                None => {
                    format!("use `{PAVED_API_VERSION}` for paved kinds or `{SCORE_API_VERSION}` for Score workloads")
                }
            };
            Err(Box::new(
                Diagnostic::error("unknown-api-version", format!("unknown apiVersion `{shown}`"), file, api.value.span)
                    .at_path(&["apiVersion".to_string()])
                    .with_hint(hint),
            ))
        }
    }
}

fn remove_path(v: &mut serde_json::Value, path: &[String]) {
    let Some((last, parents)) = path.split_last() else { return };
    let mut cur = v;
    for seg in parents {
        cur = match cur {
            serde_json::Value::Object(m) => match m.get_mut(seg) {
                Some(next) => next,
                None => return,
            },
            serde_json::Value::Array(a) => match seg.parse::<usize>().ok().and_then(|i| a.get_mut(i)) {
                Some(next) => next,
                None => return,
            },
            _ => return,
        };
    }
    if let serde_json::Value::Object(m) = cur {
        m.remove(last);
    }
}

fn yaml_to_text(node: &Node) -> String {
    node.to_json().to_string()
}

fn parse_document(file_idx: usize, source: &SourceFile, root: Node) -> (Option<ParsedDocument>, Vec<Diagnostic>) {
    let file = source.path.as_str();
    let kind = match detect_kind(&root, file) {
        Ok(k) => k,
        Err(d) => return (None, vec![*d]),
    };
    let json = root.to_json();
    let secrets = credentials::find(kind, &root, file);
    let mut diags: Vec<Diagnostic> = secrets.iter().map(|(_, d)| d.clone()).collect();
    let covered = |d: &Diagnostic| {
        secrets
            .iter()
            .any(|(p, _)| d.path.as_deref().is_some_and(|dp| dp.starts_with(&crate::diagnostic::format_path(p))))
    };
    let (schema_diags, unknown) = schema::check(kind, &json, &root, file);
    diags.extend(schema_diags.into_iter().filter(|d| !covered(d)));
    if !diags.is_empty() {
        // Without the offending fields the document may still be readable:
        // then the remaining checks run too, so every problem shows at once.
        let mut lenient = json;
        for path in unknown.iter().chain(secrets.iter().map(|(p, _)| p)) {
            remove_path(&mut lenient, path);
        }
        if let Ok(spec) = Spec::from_document(kind, lenient) {
            diags.extend(semantic::check_document(&spec, &root, source));
        }
        return (None, diags);
    }
    let spec = match Spec::from_document(kind, json) {
        Ok(s) => s,
        Err(e) => {
            // The schema accepted what serde refused: report it rather than panic.
            return (None, vec![Diagnostic::error("invalid", format!("cannot read {kind}: {e}"), file, root.span)]);
        }
    };
    let diags = semantic::check_document(&spec, &root, source);
    let ok = !diags.iter().any(Diagnostic::is_error);
    (ok.then_some(ParsedDocument { file: file_idx, root, spec }), diags)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_large_set_parsed_on_several_threads_equals_the_set_parsed_in_order() {
        let sources: Vec<SourceFile> = (0..300)
            .map(|i| {
                let text = match i % 3 {
                    0 => format!("apiVersion: paved.dev/v1alpha1\nkind: Team\nmetadata:\n  name: team-{i}\nspec: {{}}\n"),
                    1 => format!("apiVersion: score.dev/v1b1\nmetadata:\n  name: svc-{i}\ncontainers:\n  main:\n    image: x:{i}\n"),
                    _ => format!("apiVersion: paved.dev/v1alpha1\nkind: Team\nmetadata: [broken-{i}\n"),
                };
                SourceFile::new(format!("f-{i:03}.yaml"), text)
            })
            .collect();
        let batch = parse_sources(sources.clone());
        let (documents, diagnostics) = parse_files(&sources, 0);
        assert_eq!(batch.documents.len(), documents.len());
        assert!(batch.documents.len() >= 100 && diagnostics.len() >= 100, "{} {}", documents.len(), diagnostics.len());
        for (a, b) in batch.documents.iter().zip(&documents) {
            assert_eq!((a.file, format!("{:?}", a.spec)), (b.file, format!("{:?}", b.spec)));
            assert_eq!(batch.sources[a.file].path, sources[b.file].path);
        }
        assert_eq!(format!("{:?}", batch.diagnostics), format!("{diagnostics:?}"));
    }
}
