//! Score oracle: on a corpus of valid and invalid Score files, paved's
//! verdict must agree with the official Score JSON schema, evaluated by an
//! independent validator (Python `jsonschema`).
//!
//! Python is taken from `PAVED_TEST_PYTHON`, else `.venv/bin/python` in the
//! workspace (created by `scripts/test`), else `python3`.

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn python() -> PathBuf {
    if let Ok(p) = std::env::var("PAVED_TEST_PYTHON") {
        return PathBuf::from(p);
    }
    let venv = workspace().join(".venv/bin/python");
    if venv.exists() { venv } else { PathBuf::from("python3") }
}

fn corpus(kind: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/score-oracle").join(kind);
    // Score files only: a file a Score file's `source` names sits beside it.
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    files
}

fn oracle(files: &[PathBuf]) -> BTreeMap<String, bool> {
    let schema = support::reference("score-v1b1.json");
    let out = Command::new(python())
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/score_oracle.py"))
        .arg(&schema)
        .args(files)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run {}: {e}; run scripts/test, which creates .venv with jsonschema and pyyaml",
                python().display()
            )
        });
    assert!(
        out.status.success(),
        "the oracle failed (needs Python packages jsonschema and pyyaml; scripts/test installs them into .venv): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn paved_accepts(file: &Path, state: &str) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_paved"))
        .args(["-o", "json", "validate", "-f"])
        .arg(file)
        .env("PAVED_STATE", state)
        .output()
        .unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned())
}

#[test]
#[ignore = "reads the reference fixtures (PAVED_REFERENCE_DIR, default ../shared/reference)"]
fn paved_agrees_with_the_official_score_schema() {
    let valid = corpus("valid");
    let invalid = corpus("invalid");
    assert!(valid.len() >= 30 && invalid.len() >= 30, "need 30 valid and 30 invalid files");
    let all: Vec<PathBuf> = valid.iter().chain(&invalid).cloned().collect();
    let verdicts = oracle(&all);
    // Validate against an empty world (the state file does not exist and is not created).
    let dir = tempfile::tempdir().unwrap();
    let state = format!("sqlite://{}", dir.path().join("absent.db").display());
    let mut disagreements = Vec::new();
    for file in &all {
        let schema_says = verdicts[&file.display().to_string()];
        let expected = valid.contains(file);
        assert_eq!(
            schema_says,
            expected,
            "corpus file {} is in the wrong folder for the official schema",
            file.display()
        );
        let (paved_says, report) = paved_accepts(file, &state);
        if paved_says != schema_says {
            disagreements.push(format!("{}: schema {schema_says}, paved {paved_says}\n{report}", file.display()));
        }
    }
    assert!(!dir.path().join("absent.db").exists(), "validate must not create a store");
    assert!(disagreements.is_empty(), "{} disagreement(s):\n{}", disagreements.len(), disagreements.join("\n"));
}
