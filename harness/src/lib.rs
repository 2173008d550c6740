//! syncgate's harness: random interleavings of writes, syncs, locks,
//! crashes and clock skew, run on an engine and checked after every step,
//! against the contract every sync layer must keep and, for engines that
//! implement the reference spec, against the model in lockstep.
//!
//! Architecture Invariant: the harness is the only crate that knows both
//! the engine and the model.

pub mod check;
pub mod declared;
pub mod declared_breaches;
pub mod error;
pub mod events;
pub mod gate;
pub mod history;
pub mod merge;
pub mod mutants;
pub mod places;
pub mod report;
pub mod run;
pub mod scenario;
pub mod schema;
pub mod seed;
pub mod shard;
pub mod show;
pub mod shrink;
pub mod stress;
pub mod subject;
pub mod trace_file;

use error::HarnessError;
use places::RemoteTarget;
use subject::process::{ProcessEngine, REQUEST_TIMEOUT_MS_DEFAULT};
use subject::reference::ReferenceEngine;
use subject::{ContractOnly, OnRemote, Subject};
use syncgate_reference_adapter::Options;

/// Engine names `--engine` accepts besides `exec:COMMAND`.
pub fn subject_names() -> Vec<String> {
    let mut names = vec![
        "reference".to_string(),
        "reference+shifted-ids".to_string(),
        "reference+no-conflict-counts".to_string(),
        "reference+aborts".to_string(),
        "reference+write-through".to_string(),
        "reference+atomic".to_string(),
        "reference+causal".to_string(),
    ];
    names.extend(
        syncgate_engine::Mutant::ALL
            .iter()
            .map(|m| format!("mutant:{}", m.name())),
    );
    names
}

/// Which oracles check a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum OracleChoice {
    /// The contract, plus the reference profile for engines that declare it.
    Auto,
    /// The contract alone, even for engines that declare the profile.
    Contract,
}

/// The engine `--engine` names: `reference`, `mutant:NAME`,
/// `reference+shifted-ids`, `reference+no-conflict-counts`,
/// `reference+aborts` (protocol version 2, application rollbacks),
/// `reference+write-through` (protocol version 2, `push: on_commit`),
/// `reference+atomic` (protocol version 2, `transactions: atomic`),
/// `reference+causal` (also `consistency: causal`), or
/// `exec:COMMAND` for any engine behind the protocol; its cases run on
/// `remote`.
pub fn subject_by_name(
    name: &str,
    oracle: OracleChoice,
    timeout_ms: Option<u64>,
    remote: &RemoteTarget,
) -> Result<Box<dyn Subject>, HarnessError> {
    let subject: Box<dyn Subject> = match name {
        "reference" => Box::new(ReferenceEngine::new()),
        "reference+shifted-ids" => Box::new(ReferenceEngine::with(Options {
            shifted_ids: true,
            ..Options::default()
        })),
        "reference+aborts" => Box::new(ReferenceEngine::with(Options {
            aborts: true,
            ..Options::default()
        })),
        "reference+write-through" => Box::new(ReferenceEngine::with(Options {
            write_through: true,
            ..Options::default()
        })),
        "reference+atomic" => Box::new(ReferenceEngine::with(Options {
            atomic: true,
            ..Options::default()
        })),
        "reference+causal" => Box::new(ReferenceEngine::with(Options {
            atomic: true,
            causal: true,
            ..Options::default()
        })),
        "reference+no-conflict-counts" => Box::new(ReferenceEngine::with(Options {
            no_conflict_counts: true,
            ..Options::default()
        })),
        other if other.starts_with("exec:") => {
            let command = other["exec:".len()..].trim();
            if command.is_empty() {
                return Err(HarnessError::Setup(
                    "--engine exec: needs a command, e.g. --engine 'exec:python3 my_adapter.py'".into(),
                ));
            }
            Box::new(ProcessEngine::new(
                command,
                timeout_ms.unwrap_or(REQUEST_TIMEOUT_MS_DEFAULT),
            ))
        }
        other if other.starts_with("mutant:") => syncgate_engine::Mutant::by_name(&other["mutant:".len()..])
            .map(|m| Box::new(ReferenceEngine::mutant(m)) as Box<dyn Subject>)
            .ok_or_else(|| {
                HarnessError::Setup(format!(
                    "unknown mutant {other:?}; known engines: {}, or exec:COMMAND",
                    subject_names().join(", ")
                ))
            })?,
        other => {
            return Err(HarnessError::Setup(format!(
                "unknown engine {other:?}; known engines: {}, or exec:COMMAND",
                subject_names().join(", ")
            )))
        }
    };
    Ok(on_remote(
        match oracle {
            OracleChoice::Auto => subject,
            OracleChoice::Contract => Box::new(ContractOnly(subject)),
        },
        remote,
    ))
}

/// `subject` with its cases on `remote` (unchanged for SQLite files).
pub fn on_remote(subject: Box<dyn Subject>, remote: &RemoteTarget) -> Box<dyn Subject> {
    match remote {
        RemoteTarget::Sqlite => subject,
        RemoteTarget::Postgres { .. } => Box::new(OnRemote {
            subject,
            remote: remote.clone(),
        }),
    }
}
