//! Rules of the harness's layout, enforced: every verdict is made under
//! `src/check/` (the runner performs and observes; it judges nothing), and
//! no signature outside `main.rs` carries an error as a bare `String` (an
//! error says whose it is by its type). Import circles are checked for
//! every crate by the engine's layout test.

use std::path::{Path, PathBuf};

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("a source folder") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

fn harness_sources() -> Vec<(String, String)> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut paths = Vec::new();
    sources(&src, &mut paths);
    paths
        .into_iter()
        .map(|p| {
            let rel = p.strip_prefix(&src).expect("under src").display().to_string();
            (rel, std::fs::read_to_string(&p).expect("source"))
        })
        .collect()
}

/// Lines of `text` that build a violation.
fn verdicts(text: &str) -> Vec<&str> {
    text.lines().filter(|l| l.contains("Violation::new(")).collect()
}

/// Lines of `text` whose `Result` carries a bare `String` error.
fn string_errors(text: &str) -> Vec<&str> {
    text.lines()
        .filter(|l| {
            let l = l.trim();
            !l.starts_with("//") && l.contains("Result<") && (l.contains(", String>") || l.contains(",String>"))
        })
        .collect()
}

#[test]
fn every_verdict_is_made_under_check() {
    let files = harness_sources();
    assert!(files.len() > 20, "read the harness: {}", files.len());
    for (name, text) in &files {
        if name.starts_with("check/") {
            continue;
        }
        assert!(
            verdicts(text).is_empty(),
            "{name} builds a Violation: verdicts belong under src/check/: {:?}",
            verdicts(text)
        );
    }
}

#[test]
fn no_error_is_a_bare_string_outside_main() {
    for (name, text) in harness_sources() {
        if name == "main.rs" {
            continue;
        }
        assert!(
            string_errors(&text).is_empty(),
            "{name} has a Result<_, String>: give the error a type that says whose it is: {:?}",
            string_errors(&text)
        );
    }
}

#[test]
fn the_scans_find_what_they_look_for() {
    // The canaries: each scan must see its own target.
    assert_eq!(verdicts("    Err(Violation::new(Invariant::Liveness, \"x\"))").len(), 1);
    assert_eq!(
        string_errors("fn open(&self) -> Result<Box<Replica>, String> {").len(),
        1
    );
    assert!(string_errors("// Result<(), String> in a comment").is_empty());
}
