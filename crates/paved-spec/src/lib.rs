//! YAML specs → validated `paved-model` values, with compiler-quality diagnostics.
//!
//! The pipeline for a set of files:
//!
//! 1. [`source`] reads files (size-limited) and [`yaml`] parses them into
//!    nodes that remember their line and column (alias bombs, deep nesting and
//!    duplicate keys are refused);
//! 2. [`parse`] detects each document's kind, refuses long-lived credentials
//!    ([`credentials`]), checks the document against its generated JSON Schema
//!    ([`schema`]) and per-document rules ([`semantic`]);
//! 3. [`crossref`] checks the documents against each other and against what
//!    is already recorded (blueprints exist, regions are allowed, parameter
//!    values fit their types, names are unique).
//!
//! Every problem becomes a [`Diagnostic`] with file, line, column, field path,
//! expectation and hint; all problems are reported at once.
//!
//! Architecture invariant: the only I/O here is reading spec files in
//! [`source`]; nothing is written anywhere.

pub mod credentials;
pub mod crossref;
pub mod diagnostic;
pub mod params;
pub mod parse;
pub mod render;
pub mod schema;
pub mod semantic;
pub mod source;
pub mod suggest;
pub mod yaml;

pub use crossref::{check_batch, dependents};
pub use diagnostic::{Diagnostic, Severity};
pub use parse::{Batch, ParsedDocument, parse_sources};
pub use source::{SourceFile, read_path};

/// Parses and checks sources already in memory (`read_diags` are problems
/// found while reading them, reported with the rest).
pub fn check_sources(
    sources: Vec<SourceFile>,
    mut read_diags: Vec<Diagnostic>,
    recorded: &[paved_model::Spec],
) -> Batch {
    let mut batch = parse_sources(sources);
    batch.diagnostics.append(&mut read_diags);
    check_batch(&mut batch, recorded);
    diagnostic::sort(&mut batch.diagnostics);
    batch
}
