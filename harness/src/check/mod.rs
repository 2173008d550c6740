//! The invariants, each named once, and every verdict of a case: the runner
//! performs a step and reads the places (`run/observe.rs`); what it saw is
//! judged here, and only here (a test fails on a `Violation::new` outside
//! this folder).
//!
//! Two oracles: the **contract** ([`contract`]) holds for every correct sync
//! layer whatever its incidental choices, and is checked for every engine;
//! the **profile** ([`profile`]) is the lockstep comparison with the model,
//! checked only for engines that declare the reference spec. [`answers`]
//! judges the engine's answer to one request; [`observed`] what the harness
//! read after a step. Blame is a verdict too: [`blame`] decides whether a
//! place the harness could not read stops the case as the engine's failure
//! or as the harness's own.

pub mod answers;
pub mod contract;
pub mod identity;
pub mod observed;
pub mod profile;
pub mod reads;

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::HarnessFault;
use crate::places::PlaceError;

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
    /// (`transactions: atomic`) no place but the writer's replica shows
    /// part of a committed local transaction: one of its writes while a
    /// row it inserted is missing, or a cell another of its writes set
    /// holds an older value that write causally follows (a fractured read).
    AtomicVisibility,
    /// (`consistency: causal`) writes follow reads: no place shows a write
    /// while a write it causally follows (program order, push then pull)
    /// is missing there (a row it inserted, that no delete or natural-key
    /// merge took) or stale (a cell it set holds an older value it
    /// follows). Adya's G-single's cousin across replicas; Elle's "causal".
    CausalVisibility,
    /// (`consistency: causal`) monotonic reads: a replica's cache never
    /// goes back; once a cell showed the value of write `x`, it never later
    /// shows the value of a write `x` causally follows (a restart from its
    /// files included). Jepsen's "monotonic reads", a session guarantee.
    MonotonicReads,
    /// Adya's G1a, aborted read (engines that declare `aborts`): no value a
    /// transaction the application rolled back wrote is seen in any cache,
    /// on the remote or through the engine's reads, at any step.
    NoAbortedRead,
    /// What the engine's read API returns (engines that declare `reads`)
    /// is exactly the cache's rows: every row, every declared column by its
    /// name, nothing else.
    ReadsTruthful,
    /// A committed write shows as pending until a push applies it; pending
    /// is zero after quiescence.
    TruthfulStatus,
    /// (`ids: renumbered`) a row of a cache that now has another id was
    /// reported by a reply since the harness last read it (after a crash,
    /// a renumbering found by its tags needs no report); with `ids:
    /// remote_map`, a cache's ids never change.
    RenumberingReported,
    /// A reference follows its parent to the parent's new id: none still
    /// holds an id its parent left.
    ReferencesFollowIds,
    /// An update lands on the row the application addressed: no row holds
    /// the value of an update made to another row (an update sent with a
    /// local id that names another row on the server).
    WriteOnWrongRow,
    /// On one place, an id never names one row and later another: SQLite
    /// reuses a deleted row's id when an insert lets it choose, and a layer
    /// that takes it for the same row resurrects or overwrites.
    NoIdReuse,
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
    /// Each replica's pending count equals the model's, and what its sync
    /// state keeps for a pending delete (its victims, rule D2) belongs to
    /// one still pending.
    PendingAgreement,
    /// Every captured write is, at every step, still in its replica's
    /// outbox or applied on the remote (the write ledger).
    AcknowledgedWriteLost,
}

impl Invariant {
    /// Every property, in the order reports list them.
    pub const ALL: [Invariant; 27] = [
        Invariant::Convergence,
        Invariant::Integrity,
        Invariant::NoLostWrite,
        Invariant::NoClobber,
        Invariant::NoResurrection,
        Invariant::ReadYourWrites,
        Invariant::AtomicVisibility,
        Invariant::CausalVisibility,
        Invariant::MonotonicReads,
        Invariant::NoAbortedRead,
        Invariant::ReadsTruthful,
        Invariant::TruthfulStatus,
        Invariant::RenumberingReported,
        Invariant::ReferencesFollowIds,
        Invariant::WriteOnWrongRow,
        Invariant::NoIdReuse,
        Invariant::Liveness,
        Invariant::ProtocolViolated,
        Invariant::EngineFailed,
        Invariant::Panicked,
        Invariant::OutcomeAgreement,
        Invariant::WriteLost,
        Invariant::RowResurrected,
        Invariant::RowUnexpected,
        Invariant::ValueDiverged,
        Invariant::PendingAgreement,
        Invariant::AcknowledgedWriteLost,
    ];

    pub fn oracle(self) -> Oracle {
        match self {
            Invariant::Convergence
            | Invariant::Integrity
            | Invariant::NoLostWrite
            | Invariant::NoClobber
            | Invariant::NoResurrection
            | Invariant::ReadYourWrites
            | Invariant::AtomicVisibility
            | Invariant::CausalVisibility
            | Invariant::MonotonicReads
            | Invariant::NoAbortedRead
            | Invariant::ReadsTruthful
            | Invariant::TruthfulStatus
            | Invariant::RenumberingReported
            | Invariant::ReferencesFollowIds
            | Invariant::WriteOnWrongRow
            | Invariant::NoIdReuse
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

/// Why a case stopped before its end: the engine broke a property, or the
/// harness itself failed (then nothing is said about the engine).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Stop {
    Violation(Violation),
    Fault(HarnessFault),
}

impl From<Violation> for Stop {
    fn from(v: Violation) -> Stop {
        Stop::Violation(v)
    }
}

/// The verdict of a step's checks.
pub type Verdict = Result<(), Stop>;

/// Who is to blame when the harness could not read, lock or write a place:
/// the harness for its own trouble (its folder, its server session, its own
/// statements: it could not `doing`), else the engine, which holds the lock
/// or made the place (`EngineFailed`: "`what`: the place's own words").
pub fn blame(what: &str, doing: &str, e: PlaceError) -> Stop {
    match e {
        PlaceError::Harness(why) => Stop::Fault(HarnessFault::new(doing, why)),
        engine_made => Stop::Violation(Violation::new(
            Invariant::EngineFailed,
            format!("{what}: {engine_made}"),
        )),
    }
}

/// [`blame`] for a place whose own words say what was being done (a lock
/// step: "taking the remote Shared lock: ...").
pub fn blame_place(doing: &str, e: PlaceError) -> Stop {
    match e {
        PlaceError::Harness(why) => Stop::Fault(HarnessFault::new(doing, why)),
        engine_made => Stop::Violation(Violation::new(Invariant::EngineFailed, engine_made.to_string())),
    }
}

/// A panic met while running a case: a programmer error of the model, the
/// harness or an in-process engine, reported with its message.
pub fn panicked(message: String) -> Violation {
    Violation::new(Invariant::Panicked, message)
}
