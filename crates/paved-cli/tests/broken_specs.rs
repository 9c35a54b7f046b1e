//! The broken-spec corpus: every file in `tests/broken/` must be refused with
//! the expected diagnostic at the expected line:column, and the state store
//! must be byte-for-byte unchanged afterwards.
//!
//! Each file states its expectation in its first lines:
//!
//! ```text
//! # expect: CODE @ TOKEN | MESSAGE SUBSTRING
//! # expect-hint: HINT SUBSTRING
//! ```
//!
//! The position is where TOKEN first occurs outside comment lines (a `^`
//! inside TOKEN marks the exact character), or `^LINE:COL` literally.

use std::path::{Path, PathBuf};
use std::process::Command;

fn paved(state: &str, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_paved"))
        .args(args)
        .env("PAVED_STATE", state)
        .env("PAVED_ACTOR", "tester")
        .env("NO_COLOR", "1")
        .output()
        .expect("run paved")
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

struct Expectation {
    code: String,
    line: usize,
    column: usize,
    message: String,
    hint: Option<String>,
}

fn expectation(path: &Path, text: &str) -> Expectation {
    let header = text
        .lines()
        .find_map(|l| l.strip_prefix("# expect: "))
        .unwrap_or_else(|| panic!("{}: no `# expect:` line", path.display()));
    let (code, rest) = header.split_once(" @ ").expect("CODE @ TOKEN | MESSAGE");
    let (token, message) = rest.split_once(" | ").expect("TOKEN | MESSAGE");
    let hint = text.lines().find_map(|l| l.strip_prefix("# expect-hint: ")).map(str::to_string);
    let (line, column) = if let Some(pos) = token.strip_prefix('^') {
        let (l, c) = pos.split_once(':').expect("^LINE:COL");
        (l.parse().unwrap(), c.parse().unwrap())
    } else {
        let caret = token.find('^').unwrap_or(0);
        let needle = token.replace('^', "");
        text.lines()
            .enumerate()
            .filter(|(_, l)| !l.starts_with('#'))
            .find_map(|(i, l)| l.find(&needle).map(|c| (i + 1, l[..c + caret].chars().count() + 1)))
            .unwrap_or_else(|| panic!("{}: token `{needle}` not found", path.display()))
    };
    Expectation { code: code.to_string(), line, column, message: message.to_string(), hint }
}

fn check(state: &str, file: &Path, exp: &Expectation) -> Result<(), String> {
    let out = paved(state, &["-o", "json", "apply", "-f", file.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    if out.status.code() != Some(1) {
        return Err(format!(
            "{}: exit code {:?}, stderr: {}",
            file.display(),
            out.status.code(),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let report: serde_json::Value =
        serde_json::from_str(&stdout).map_err(|e| format!("{}: bad JSON ({e}): {stdout}", file.display()))?;
    let diags = report["diagnostics"].as_array().cloned().unwrap_or_default();
    let found = diags.iter().any(|d| {
        d["code"] == exp.code.as_str()
            && d["line"] == exp.line
            && d["column"] == exp.column
            && d["file"].as_str().is_some_and(|f| f.ends_with(file.file_name().unwrap().to_str().unwrap()))
            && d["message"].as_str().is_some_and(|m| m.contains(&exp.message))
            && exp.hint.as_ref().is_none_or(|h| d["hint"].as_str().is_some_and(|dh| dh.contains(h.as_str())))
    });
    if !found {
        return Err(format!(
            "{}: expected {} at {}:{} containing {:?} (hint {:?}); got:\n{}",
            file.display(),
            exp.code,
            exp.line,
            exp.column,
            exp.message,
            exp.hint,
            serde_json::to_string_pretty(&diags).unwrap()
        ));
    }
    Ok(())
}

#[test]
fn broken_specs_are_refused_precisely_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("state.db");
    let state = format!("sqlite://{}", db.display());
    let examples = workspace().join("examples");
    let setup = paved(&state, &["apply", "-f", examples.to_str().unwrap()]);
    assert!(setup.status.success(), "{}", String::from_utf8_lossy(&setup.stderr));
    let before = std::fs::read(&db).unwrap();

    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/broken");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&corpus).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    assert!(files.len() >= 40, "the corpus must hold at least 40 broken specs, has {}", files.len());

    let mut failures = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        if let Err(e) = check(&state, file, &expectation(file, &text)) {
            failures.push(e);
        }
    }

    // Generated cases: too large to keep in the repository.
    let big = dir.path().join("huge.yaml");
    let mut text = String::from("apiVersion: paved.dev/v1alpha1\nkind: Team\nmetadata:\n  name: huge\n  labels:\n");
    let mut i = 0;
    while text.len() < 10 * 1024 * 1024 {
        text.push_str(&format!("    label-{i}: \"{}\"\n", "x".repeat(100)));
        i += 1;
    }
    text.push_str("spec: {}\n");
    std::fs::write(&big, &text).unwrap();
    let exp = Expectation {
        code: "file-too-large".into(),
        line: 1,
        column: 1,
        message: "limit for a spec file".into(),
        hint: None,
    };
    if let Err(e) = check(&state, &big, &exp) {
        failures.push(e);
    }

    assert!(
        failures.is_empty(),
        "{} of {} broken specs misreported:\n{}",
        failures.len(),
        files.len() + 1,
        failures.join("\n\n")
    );
    let after = std::fs::read(&db).unwrap();
    assert!(before == after, "the state store changed although every apply failed");
    let listing = paved(&state, &["-o", "json", "get", "teams"]);
    let teams: serde_json::Value = serde_json::from_slice(&listing.stdout).unwrap();
    assert_eq!(teams.as_array().map(Vec::len), Some(3), "only the example teams are recorded");
}
