//! The harness's own failures: what it could not do, never what the engine
//! did wrong. A case that meets one stops without a verdict on the engine,
//! is not shrunk, and the run exits with code 2 naming what failed.

use crate::places::{PlaceError, UnknownRemote};
use crate::subject::OpenError;

/// What the harness itself could not do in a case.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the harness could not {what}: {why}")]
pub struct HarnessFault {
    /// What it was doing, as a verb phrase ("read the remote").
    pub what: String,
    /// Why not, in the words of whatever refused.
    pub why: String,
}

impl HarnessFault {
    pub fn new(what: impl Into<String>, why: impl std::fmt::Display) -> HarnessFault {
        HarnessFault {
            what: what.into(),
            why: why.to_string(),
        }
    }
}

/// Why a run (`check`, `replay`, `mutants`, `stress`) could not go on: a
/// usage or setup problem, or the harness's own failure in a case. The CLI
/// exits with code 2 for every one of them.
#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    /// An argument, a file or a value the run was given cannot be used.
    #[error("{0}")]
    Setup(String),
    /// The engine could not be started, or refused the handshake, before
    /// any case ran.
    #[error(transparent)]
    Open(#[from] OpenError),
    /// The declared schema (`--schema`) cannot be checked.
    #[error(transparent)]
    Schema(#[from] crate::schema::SchemaRefused),
    /// A place the harness needs (a folder, the server) is not usable.
    #[error(transparent)]
    Place(#[from] PlaceError),
    /// The harness failed in the middle of a case.
    #[error(
        "case {seed}, step {step}: {fault}\n  this is the harness's failure, not the engine's: nothing was shrunk; \
         fix the machine or the setup and run again\n  replay: {replay}"
    )]
    Case {
        seed: String,
        step: usize,
        fault: HarnessFault,
        /// The command that runs the case again.
        replay: String,
    },
}

impl From<UnknownRemote> for HarnessError {
    fn from(e: UnknownRemote) -> HarnessError {
        HarnessError::Setup(e.0)
    }
}
