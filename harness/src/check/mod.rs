//! The invariants, each named once, and the functions that check them.
//!
//! Two oracles: the **contract** ([`contract`]) holds for every correct sync
//! layer whatever its incidental choices, and is checked for every engine;
//! the **profile** ([`profile`]) is the lockstep comparison with the model,
//! checked only for engines that declare the reference spec.

pub mod contract;
pub mod profile;
pub mod reads;

use std::fmt;

use serde::{Deserialize, Serialize};
use syncgate_model as model;

/// Which oracle an invariant belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Oracle {
    Contract,
    Profile,
}

/// Every property the runner checks. Each variant's doc comment is its spec.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Invariant {
    // ------------------------------------------------------------ contract
    /// After quiescence every replica's synced tables equal the remote's.
    #[serde(alias = "ReplicasDiverged")]
    Convergence,
    /// No UNIQUE (natural key), primary-key or foreign-key violation in any
    /// cache or on the remote, and no sync fails with one.
    #[serde(alias = "UniqueViolated", alias = "ForeignKeyViolated")]
    Integrity,
    /// Every final cell comes from a write that no other write to that cell
    /// (row, for row-level engines) causally follows; a row inserted and
    /// never deleted exists at the end, under its natural-key survivor where
    /// merged.
    NoLostWrite,
    /// An insert never overwrites another logical row: no two inserts name
    /// the same row.
    NoClobber,
    /// A deleted row never comes back (delete-wins engines).
    NoResurrection,
    /// A write answered `write_ok` is visible in the writer's cache at once.
    ReadYourWrites,
    /// What the engine's read API returns (engines that declare `reads`)
    /// is exactly the cache's rows: every row, every declared column by its
    /// name, nothing else.
    ReadsTruthful,
    /// A committed write shows as pending until a push applies it; pending
    /// is zero after quiescence.
    TruthfulStatus,
    /// Quiescence reaches a fixed point within the round bound.
    #[serde(alias = "StuckQueue")]
    Liveness,
    /// The engine process spoke the protocol: it answered in time, with
    /// well-formed replies, and exited only at an armed crash point.
    ProtocolViolated,
    /// The engine could be started and answered without errors outside its
    /// vocabulary.
    EngineFailed,
    /// Nothing asserted: a panic of the model, the harness or an in-process
    /// engine is a programmer error met on the way (its message says where).
    Panicked,
    // ------------------------------------------------------------- profile
    /// The engine answers each step as the model does: the same ids for
    /// inserts, the same refusal, the same sync report, the same failure.
    OutcomeAgreement,
    /// Every row the model says a place holds is there.
    WriteLost,
    /// No row the model has deleted is visible again.
    RowResurrected,
    /// No row the model does not know is visible (no duplicate, no phantom).
    RowUnexpected,
    /// Every row's values equal the model's (read-your-writes included).
    ValueDiverged,
    /// Each replica's pending count equals the model's.
    PendingAgreement,
    /// Every captured write is, at every step, still in its replica's
    /// outbox or applied on the remote (the write ledger).
    AcknowledgedWriteLost,
}

impl Invariant {
    pub fn oracle(self) -> Oracle {
        match self {
            Invariant::Convergence
            | Invariant::Integrity
            | Invariant::NoLostWrite
            | Invariant::NoClobber
            | Invariant::NoResurrection
            | Invariant::ReadYourWrites
            | Invariant::ReadsTruthful
            | Invariant::TruthfulStatus
            | Invariant::Liveness
            | Invariant::ProtocolViolated
            | Invariant::EngineFailed
            | Invariant::Panicked => Oracle::Contract,
            Invariant::OutcomeAgreement
            | Invariant::WriteLost
            | Invariant::RowResurrected
            | Invariant::RowUnexpected
            | Invariant::ValueDiverged
            | Invariant::PendingAgreement
            | Invariant::AcknowledgedWriteLost => Oracle::Profile,
        }
    }
}

impl fmt::Display for Invariant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// A failed check: which invariant, where, and expected against actual.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Violation {
    pub invariant: Invariant,
    pub detail: String,
}

impl Violation {
    pub fn new(invariant: Invariant, detail: impl Into<String>) -> Violation {
        Violation {
            invariant,
            detail: detail.into(),
        }
    }
}

pub fn show_row(values: &[model::Value]) -> String {
    let parts: Vec<String> = values.iter().map(show_value).collect();
    format!("({})", parts.join(", "))
}

pub fn show_value(v: &model::Value) -> String {
    match v {
        model::Value::Null => "NULL".into(),
        model::Value::Int(i) => i.to_string(),
        model::Value::Text(s) => format!("{s:?}"),
    }
}
