//! Trace files: a shrunk counterexample saved as its steps, so it replays
//! even after the generators change (older files load through the shims of
//! `scenario.rs`).

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::check::Invariant;
use crate::error::HarnessError;
use crate::scenario::Scenario;
use crate::subject::Subject;

/// A saved counterexample: the steps themselves, so it replays even after
/// the generators change.
#[derive(Clone, Debug, Serialize, serde::Deserialize)]
pub struct TraceFile {
    pub engine: String,
    /// The kind of remote it ran on (never the server's connection string);
    /// older trace files, without it, ran on SQLite.
    #[serde(default)]
    pub remote: crate::places::RemoteTarget,
    pub seed: String,
    pub invariant: Invariant,
    pub scenario: Scenario,
}

/// Saves a shrunk counterexample of `subject` in `dir`; returns its path.
pub(crate) fn save_trace(
    dir: &Path,
    subject: &dyn Subject,
    seed: &str,
    invariant: Invariant,
    scenario: &Scenario,
) -> std::io::Result<PathBuf> {
    let engine = &subject.name();
    std::fs::create_dir_all(dir)?;
    let safe: String = format!("{engine}-{seed}")
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '_' })
        .collect();
    let path = dir.join(format!("{safe}.json"));
    let file = TraceFile {
        engine: engine.to_string(),
        remote: subject.remote(),
        seed: seed.to_string(),
        invariant,
        scenario: scenario.clone(),
    };
    let text = serde_json::to_string_pretty(&file)?;
    std::fs::write(&path, text)?;
    Ok(path)
}

pub fn load_trace(path: &Path) -> Result<TraceFile, HarnessError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| HarnessError::Setup(format!("cannot read trace file {}: {e}", path.display())))?;
    serde_json::from_str(&text)
        .map_err(|e| HarnessError::Setup(format!("{} is not a syncgate trace file: {e}", path.display())))
}
