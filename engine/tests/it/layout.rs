//! The engine's modules form layers: no module imports, directly or through
//! others, a module that imports it back (an import circle makes a reader
//! hold every file of the circle in mind at once).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Each module of `engine/src` and the modules of this crate it names.
fn imports() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = BTreeMap::new();
    for entry in std::fs::read_dir(&src).expect("engine/src") {
        let path = entry.expect("dir entry").path();
        if path.extension().is_some_and(|e| e == "rs") {
            let name = path.file_stem().expect("file name").to_string_lossy().to_string();
            files.insert(name, std::fs::read_to_string(&path).expect("source"));
        }
    }
    let modules: BTreeSet<String> = files.keys().cloned().collect();
    files
        .iter()
        .filter(|(name, _)| name.as_str() != "lib")
        .map(|(name, text)| {
            let mut named = BTreeSet::new();
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
                        named.insert(head.to_string());
                    }
                }
            }
            (name.clone(), named)
        })
        .collect()
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
fn the_engine_has_no_import_circle() {
    let graph = imports();
    assert!(graph.len() > 10, "read the engine's modules: {:?}", graph.keys());
    for module in graph.keys() {
        if let Some(found) = circle(&graph, &mut vec![module.clone()]) {
            panic!("import circle: {}", found.join(" -> "));
        }
    }
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
