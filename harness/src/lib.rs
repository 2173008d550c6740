//! syncgate's harness: random interleavings of writes, syncs, locks,
//! crashes and clock skew, run on an engine and checked against the model
//! after every step.
//!
//! Architecture Invariant: the harness is the only crate that knows both
//! the engine and the model.

pub mod check;
pub mod gate;
pub mod mutants;
pub mod run;
pub mod scenario;
pub mod seed;
pub mod shrink;
pub mod stress;
pub mod subject;

use subject::{ReferenceEngine, Subject};

/// Engine names `--engine` accepts.
pub fn subject_names() -> Vec<String> {
    let mut names = vec!["reference".to_string()];
    names.extend(
        syncgate_engine::Mutant::ALL
            .iter()
            .map(|m| format!("mutant:{}", m.name())),
    );
    names
}

/// The engine called `name`.
pub fn subject_by_name(name: &str) -> Result<Box<dyn Subject>, String> {
    match name {
        "reference" => Ok(Box::new(ReferenceEngine::new())),
        other if other.starts_with("mutant:") => syncgate_engine::Mutant::by_name(&other["mutant:".len()..])
            .map(|m| Box::new(ReferenceEngine::mutant(m)) as Box<dyn Subject>)
            .ok_or_else(|| {
                format!(
                    "unknown mutant {other:?}; known engines: {}",
                    subject_names().join(", ")
                )
            }),
        other => Err(format!(
            "unknown engine {other:?}; known engines: {}",
            subject_names().join(", ")
        )),
    }
}
