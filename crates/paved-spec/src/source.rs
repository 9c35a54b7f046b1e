//! Reading spec files and directories, with limits checked before reading.

use crate::diagnostic::Diagnostic;
use crate::yaml::{Pos, Span};
use std::path::{Path, PathBuf};

/// Largest spec file accepted. Real specs are kilobytes; anything this big is
/// a mistake (or an attack) and is refused before it is read.
pub const MAX_FILE_BYTES: u64 = 4 * 1024 * 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceFile {
    /// The path as the user gave it (or found under a directory they gave).
    pub path: String,
    pub text: String,
}

impl SourceFile {
    pub fn new(path: impl Into<String>, text: impl Into<String>) -> SourceFile {
        SourceFile { path: path.into(), text: text.into() }
    }
}

fn file_error(path: &Path, code: &'static str, message: String, hint: &str) -> Diagnostic {
    let start = Pos { line: 1, col: 1, index: 0 };
    Diagnostic::error(code, message, &path.display().to_string(), Span::point(start)).with_hint(hint)
}

/// Reads a file, or every `*.yaml` / `*.yml` file under a directory
/// (recursively, in sorted order). Problems with individual files are
/// diagnostics; readable files are returned alongside them.
pub fn read_path(path: &Path) -> (Vec<SourceFile>, Vec<Diagnostic>) {
    let mut files = Vec::new();
    let mut diags = Vec::new();
    if path.is_dir() {
        let mut found = Vec::new();
        collect_yaml_files(path, &mut found, &mut diags);
        found.sort();
        if found.is_empty() {
            diags.push(file_error(
                path,
                "no-specs",
                format!("no *.yaml or *.yml files under `{}`", path.display()),
                "point -f at a spec file or a directory that contains some",
            ));
        }
        for f in found {
            read_one(&f, &mut files, &mut diags);
        }
    } else {
        read_one(path, &mut files, &mut diags);
    }
    (files, diags)
}

fn collect_yaml_files(dir: &Path, out: &mut Vec<PathBuf>, diags: &mut Vec<Diagnostic>) {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) => {
            diags.push(file_error(
                dir,
                "unreadable",
                format!("cannot read directory: {e}"),
                "check the path and permissions",
            ));
            return;
        }
    };
    for entry in entries.flatten() {
        let p = entry.path();
        let name = entry.file_name();
        if name.to_string_lossy().starts_with('.') {
            continue;
        }
        if p.is_dir() {
            collect_yaml_files(&p, out, diags);
        } else if matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml")) {
            out.push(p);
        }
    }
}

fn read_one(path: &Path, files: &mut Vec<SourceFile>, diags: &mut Vec<Diagnostic>) {
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) => {
            diags.push(file_error(
                path,
                "unreadable",
                format!("cannot read `{}`: {e}", path.display()),
                "check the path",
            ));
            return;
        }
    };
    if meta.len() > MAX_FILE_BYTES {
        diags.push(file_error(
            path,
            "file-too-large",
            format!("file is {} bytes; the limit for a spec file is {} bytes (4 MiB)", meta.len(), MAX_FILE_BYTES),
            "split the file into smaller ones; a directory of specs can be applied at once",
        ));
        return;
    }
    match std::fs::read(path) {
        Ok(bytes) => match String::from_utf8(bytes) {
            Ok(text) => files.push(SourceFile::new(path.display().to_string(), text)),
            Err(e) => diags.push(file_error(
                path,
                "not-utf8",
                format!("file is not valid UTF-8 (byte {})", e.utf8_error().valid_up_to()),
                "save the file as UTF-8",
            )),
        },
        Err(e) => diags.push(file_error(
            path,
            "unreadable",
            format!("cannot read `{}`: {e}", path.display()),
            "check permissions",
        )),
    }
}

/// Checks the size limit of text that did not come from a file (stdin, API bodies).
pub fn check_size(source: &SourceFile) -> Option<Diagnostic> {
    (source.text.len() as u64 > MAX_FILE_BYTES).then(|| {
        file_error(
            Path::new(&source.path),
            "file-too-large",
            format!("document is {} bytes; the limit is {} bytes (4 MiB)", source.text.len(), MAX_FILE_BYTES),
            "split it into smaller documents",
        )
    })
}

/// Largest file a Score file's `source` may name (it becomes part of the
/// recorded spec).
pub const MAX_SOURCED_BYTES: u64 = 1024 * 1024;

/// Replaces each Score file's `source: PATH` in `file` by the file's
/// contents, read relative to `dir` (the Score file's directory): `content`
/// when it is UTF-8 text (placeholders then expand unless `noExpand`, as
/// Score says), else `binaryContent` (base64). paved records a Score file's
/// text, not its directory, so this happens where the file is read — the
/// CLI, or the GitOps loop in its checkout — never on the server for a path
/// a client names. The replacement stays on the `source:` line, so every
/// other line keeps its position for diagnostics. `confine`: the directory
/// the path must stay inside (a repository checkout), if any.
pub fn inline_file_sources(file: &mut SourceFile, dir: &Path, confine: Option<&Path>) -> Vec<Diagnostic> {
    use crate::yaml::Value;
    use base64::Engine;
    if !file.text.contains("source") {
        return Vec::new();
    }
    let Ok(docs) = crate::yaml::parse(&file.text) else { return Vec::new() };
    let mut edits: Vec<(usize, usize, String)> = Vec::new(); // (start, end) in characters, replacement
    let mut diags = Vec::new();
    for doc in &docs {
        let is_score = doc.root.get("apiVersion").and_then(|v| v.as_str()).is_some_and(|v| v.starts_with("score.dev/"));
        let Some(Value::Map(containers)) = doc.root.get("containers").map(|c| &c.value) else { continue };
        if !is_score {
            continue;
        }
        for c in containers {
            let files: Vec<&crate::yaml::Node> = match c.value.get("files").map(|f| &f.value) {
                Some(Value::Map(entries)) => entries.iter().map(|e| &e.value).collect(),
                Some(Value::Seq(items)) => items.iter().collect(),
                _ => continue,
            };
            for f in files {
                let Some(entry) = f.entry("source") else { continue };
                if f.get("content").is_some() || f.get("binaryContent").is_some() {
                    continue; // Ambiguous: validation names it.
                }
                let Some(path) = entry.value.as_str() else { continue };
                if entry.key_span.start.line != entry.value.span.end.line {
                    continue; // A path over several lines: left for validation to report.
                }
                let at = |code, message: String, hint: &str| {
                    Diagnostic::error(code, message, &file.path, entry.value.span).with_hint(hint)
                };
                let full = dir.join(path);
                if let Some(root) = confine {
                    let inside = std::fs::canonicalize(&full).ok().zip(std::fs::canonicalize(root).ok());
                    if !inside.is_some_and(|(f, r)| f.starts_with(r)) {
                        diags.push(at(
                            "unconfined-path",
                            format!("`source: {path}` is not a file inside the repository"),
                            "name a file of the repository, relative to the Score file",
                        ));
                        continue;
                    }
                }
                let bytes = match std::fs::metadata(&full) {
                    Ok(m) if m.len() > MAX_SOURCED_BYTES => {
                        diags.push(at(
                            "file-too-large",
                            format!("`source: {path}` is {} bytes; a Score file's file is at most 1 MiB", m.len()),
                            "mount larger data as a volume",
                        ));
                        continue;
                    }
                    _ => match std::fs::read(&full) {
                        Ok(b) => b,
                        Err(e) => {
                            diags.push(at(
                                "unreadable",
                                format!("`source: {path}`: cannot read {}: {e}", full.display()),
                                "the path is relative to the Score file",
                            ));
                            continue;
                        }
                    },
                };
                let replacement = match String::from_utf8(bytes) {
                    Ok(text) if !text.contains('\0') => {
                        format!("content: {}", serde_json::Value::String(text))
                    }
                    Ok(text) => format!("binaryContent: {}", base64::engine::general_purpose::STANDARD.encode(text)),
                    Err(e) => {
                        format!("binaryContent: {}", base64::engine::general_purpose::STANDARD.encode(e.into_bytes()))
                    }
                };
                edits.push((entry.key_span.start.index, entry.value.span.end.index, replacement));
            }
        }
    }
    if edits.is_empty() {
        return diags;
    }
    // Diagnostics point at the text as it will be: shifted by the edits before them.
    for d in &mut diags {
        let shift = |at: usize| -> usize {
            let delta: isize = edits
                .iter()
                .filter(|(_, end, _)| *end <= at)
                .map(|(start, end, r)| r.chars().count() as isize - (end - start) as isize)
                .sum();
            at.saturating_add_signed(delta)
        };
        d.chars = (shift(d.chars.0), shift(d.chars.1));
    }
    edits.sort_by_key(|e| std::cmp::Reverse(e.0));
    let mut chars: Vec<char> = file.text.chars().collect();
    for (start, end, replacement) in edits {
        if start <= end && end <= chars.len() {
            chars.splice(start..end, replacement.chars());
        }
    }
    file.text = chars.into_iter().collect();
    diags
}
