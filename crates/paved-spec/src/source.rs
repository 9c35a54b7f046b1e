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
