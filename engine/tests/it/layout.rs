//! The workspace's crates form layers: in no crate does a module import,
//! directly or through others, a module that imports it back (an import
//! circle makes a reader hold every file of the circle in mind at once).
//! Checked for the engine, the model and the harness; a module is a file
//! of `src` or a folder of it (`harness/src/run/` is the module `run`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The crates whose modules are checked, by folder from the workspace root.
const CRATES: [&str; 4] = ["engine", "model", "harness", "adapters/reference"];

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Every `.rs` file under `dir`, with the top module it belongs to.
fn sources(src: &Path, dir: &Path, out: &mut Vec<(String, String)>) {
    for entry in std::fs::read_dir(dir).expect("a source folder") {
        let path = entry.expect("dir entry").path();
        let rel = path.strip_prefix(src).expect("under src");
        let top = rel
            .components()
            .next()
            .expect("a component")
            .as_os_str()
            .to_string_lossy()
            .trim_end_matches(".rs")
            .to_string();
        if path.is_dir() {
            if top != "bin" {
                sources(src, &path, out);
            }
        } else if path.extension().is_some_and(|e| e == "rs") && top != "lib" && top != "main" {
            out.push((top, std::fs::read_to_string(&path).expect("source")));
        }
    }
}

/// Each top module of `crate_dir/src` and the modules of the same crate it names.
fn imports(crate_dir: &str) -> BTreeMap<String, BTreeSet<String>> {
    let src = workspace().join(crate_dir).join("src");
    let mut files = Vec::new();
    sources(&src, &src, &mut files);
    let modules: BTreeSet<String> = files.iter().map(|(m, _)| m.clone()).collect();
    let mut graph: BTreeMap<String, BTreeSet<String>> = modules.iter().map(|m| (m.clone(), BTreeSet::new())).collect();
    for (name, text) in &files {
        for (at, _) in text.match_indices("crate::") {
            let rest = &text[at + "crate::".len()..];
            let heads: Vec<&str> = match rest.strip_prefix('{') {
                Some(group) => group[..group.find('}').unwrap_or(group.len())]
                    .split(',')
                    .map(|path| path.trim().split("::").next().unwrap_or(""))
                    .collect(),
                None => vec![rest
                    .split(|c: char| !(c.is_alphanumeric() || c == '_'))
                    .next()
                    .unwrap_or("")],
            };
            for head in heads {
                if modules.contains(head) && head != name {
                    graph.entry(name.clone()).or_default().insert(head.to_string());
                }
            }
        }
    }
    graph
}

/// A circle through `from`, if there is one, as the modules along it.
fn circle(graph: &BTreeMap<String, BTreeSet<String>>, path: &mut Vec<String>) -> Option<Vec<String>> {
    let at = path.last().expect("a start").clone();
    for next in graph.get(&at).into_iter().flatten() {
        if let Some(start) = path.iter().position(|m| m == next) {
            let mut found = path[start..].to_vec();
            found.push(next.clone());
            return Some(found);
        }
        path.push(next.clone());
        if let Some(found) = circle(graph, path) {
            return Some(found);
        }
        path.pop();
    }
    None
}

#[test]
fn no_crate_has_an_import_circle() {
    for krate in CRATES {
        let graph = imports(krate);
        assert!(graph.len() >= 2, "read {krate}'s modules: {:?}", graph.keys());
        for module in graph.keys() {
            if let Some(found) = circle(&graph, &mut vec![module.clone()]) {
                panic!("import circle in {krate}: {}", found.join(" -> "));
            }
        }
    }
}

#[test]
fn the_module_reader_sees_folders_and_their_imports() {
    // The harness's runner is a folder; it imports the checks, which must
    // not import it back.
    let graph = imports("harness");
    assert!(graph["run"].contains("check"), "{graph:?}");
    assert!(!graph["check"].contains("run"), "{graph:?}");
}

#[test]
fn the_circle_check_finds_a_circle() {
    // The canary: a graph with a circle must be reported.
    let graph: BTreeMap<String, BTreeSet<String>> = [("a", "b"), ("b", "c"), ("c", "a")]
        .into_iter()
        .map(|(from, to)| (from.to_string(), BTreeSet::from([to.to_string()])))
        .collect();
    let found = circle(&graph, &mut vec!["a".to_string()]);
    assert_eq!(
        found,
        Some(vec!["a", "b", "c", "a"].into_iter().map(String::from).collect())
    );
}

#[test]
fn the_outbox_format_lives_in_one_module() {
    // The outbox's table is named in SQL only by `outbox.rs` (and the
    // upgrade from older formats in `format.rs`).
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    for entry in std::fs::read_dir(&src).expect("engine/src") {
        let path = entry.expect("dir entry").path();
        let name = path.file_name().expect("name").to_string_lossy().to_string();
        if name == "outbox.rs" || name == "format.rs" {
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("source");
        assert!(
            !text.contains("_sg_outbox"),
            "{name} names the outbox's table; only outbox.rs knows its format"
        );
    }
}
