//! What an engine declared in its handshake, and what the run makes of it
//! before any case: declarations this syncgate cannot check (refused, exit
//! 2), the run's shape fitted to them, the notes a summary prints about
//! what went unchecked, which properties a run checks and which required
//! events it can reach.

use syncgate_protocol::{
    ConsistencyPolicy, CrashPoint, DeletePolicy, IdPolicy, InitOk, OutsideWrites, PendingAfterSync, Profile,
    PushPolicy, PushPull, ReferencesPolicy, TransactionsPolicy,
};

use crate::check::{Invariant, Oracle};
use crate::error::HarnessError;
use crate::events::Event;
use crate::scenario::GenConfig;

/// Refuses, before any case, what an engine declares that this harness
/// cannot check yet, or that contradicts the reference profile it also
/// declares: checking something else instead would pass or fail falsely.
pub fn check_declared(init: &InitOk, schema: &syncgate_model::Schema) -> Result<(), HarnessError> {
    let policies = &init.policies;
    if policies.ids != IdPolicy::Stable {
        if init.capabilities.profile == Some(Profile::Reference) {
            return Err(HarnessError::Setup(
                "the engine declares the reference profile and ids that change or differ between places: the \
                 reference spec's ids are stable (rule I1); drop one of the two"
                    .into(),
            ));
        }
        crate::check::identity::Naming::of(schema).map_err(|e| HarnessError::Setup(e.to_string()))?;
    }
    if policies.transactions == TransactionsPolicy::Atomic && policies.ids != IdPolicy::Stable {
        return Err(HarnessError::Setup(
            "the engine declares transactions: atomic and ids that change or differ between places: this syncgate \
             checks atomic visibility on stable ids only (not yet on rows named by their writes); declare one of the two"
                .into(),
        ));
    }
    if policies.consistency == ConsistencyPolicy::Causal && policies.ids != IdPolicy::Stable {
        return Err(HarnessError::Setup(
            "the engine declares consistency: causal and ids that change or differ between places: this syncgate \
             checks causal visibility on stable ids only (not yet on rows named by their writes); declare one of the two"
                .into(),
        ));
    }
    if init.capabilities.replicas_max == Some(0) {
        return Err(HarnessError::Setup(
            "the engine declares replicas_max 0: a case has at least one replica".into(),
        ));
    }
    let profile = init.capabilities.profile == Some(Profile::Reference);
    if profile && (policies.push != PushPolicy::Explicit || policies.pending_after_sync != PendingAfterSync::Zero) {
        return Err(HarnessError::Setup(
            "the engine declares the reference profile and a push or pending rule of its own: the reference spec \
             pushes only on push and sync and leaves nothing pending after a sync (SEMANTICS.md); drop one of the two"
                .into(),
        ));
    }
    let weaker_keys = !policies.natural_keys.identifies_rows();
    if profile && (weaker_keys || policies.references != ReferencesPolicy::Enforced) {
        return Err(HarnessError::Setup(
            "the engine declares the reference profile and weaker promises per constraint (natural_keys local_only or \
             unenforced, references local_only or unenforced): the reference spec merges rows by natural key (rule N2) \
             and keeps every reference (D2); drop one of the two"
                .into(),
        ));
    }
    if weaker_keys && policies.ids != IdPolicy::Stable {
        return Err(HarnessError::Setup(
            "the engine declares natural_keys local_only or unenforced and ids that change or differ between places: \
             this syncgate names rows by their writes only where natural keys merge or refuse (not yet for keys that \
             name nothing); declare one of the two"
                .into(),
        ));
    }
    Ok(())
}

/// The run's shape for an engine that declared `init`: no case has more
/// replicas than it supports, and rollbacks are drawn where it takes them.
pub fn fit(gen: &GenConfig, init: &InitOk) -> GenConfig {
    let mut gen = gen.clone();
    if let Some(max) = init.capabilities.replicas_max {
        let max = usize::try_from(max).unwrap_or(usize::MAX).max(1);
        gen.replicas = gen.replicas.map(|n| n.min(max));
        gen.replicas_max = gen.replicas_max.min(max);
    }
    gen.aborts = init.capabilities.aborts;
    gen.integers = init.capabilities.value_domain.integers;
    gen
}

/// What a run on an engine that declared `init` leaves unchecked, in words.
pub fn notes(init: &InitOk) -> Vec<String> {
    let caps = &init.capabilities;
    let mut notes = Vec::new();
    if caps.push_pull == PushPull::Together {
        notes.push("the engine syncs only whole (push_pull: together): push and pull steps were sent as sync".into());
    }
    if let Some(max) = caps.replicas_max {
        notes.push(format!(
            "the engine declares replicas_max {max}: no case had more replicas"
        ));
    }
    if init.policies.ids != IdPolicy::Stable {
        notes.push(format!(
            "the engine's ids change or differ between places (ids: {}): rows were named by the write that \
             inserted them, found by the write tag of each table's identity column, which every insert and \
             update set (never NULL there)",
            serde_json::to_string(&init.policies.ids)
                .unwrap_or_default()
                .trim_matches('"')
        ));
    }
    if init.policies.push == PushPolicy::OnCommit {
        notes.push(
            "the engine pushes inside the commit (push: on_commit): a write it reported as not pending was \
             checked on the remote"
                .into(),
        );
    }
    if init.policies.pending_after_sync == PendingAfterSync::Resolutions {
        notes.push(
            "the engine may leave writes of its own pending after a sync (pending_after_sync: resolutions): \
             only a push must leave nothing pending"
                .into(),
        );
    }
    if caps.outside_writes == OutsideWrites::NotCaptured {
        notes.push(
            "the engine declares that writes bypassing its API are not synced: no outside writes were made".into(),
        );
    }
    if caps.outside_writes == OutsideWrites::Delegated {
        notes.push(
            "the engine runs writes made around its API itself (outside_writes: delegated): each was sent as \
             exec_sql, the statement the harness would have run"
                .into(),
        );
    }
    if caps.value_domain.integers == syncgate_protocol::IntegerDomain::Safe {
        notes.push(format!(
            "the engine holds integers up to 2^53 - 1 in magnitude (value_domain: integers safe): none beyond \
             ±{} was sent",
            syncgate_protocol::IntegerDomain::Safe.max()
        ));
    }
    if !caps.clock {
        notes.push("the engine takes no injected clock: clock-skew steps were skipped".into());
    }
    let missing: Vec<String> = CrashPoint::ALL
        .iter()
        .filter(|p| !caps.crash_points.contains(p))
        .map(|p| format!("{p:?}"))
        .collect();
    if !missing.is_empty() {
        notes.push(format!(
            "crash points the engine does not offer (those crash steps ran as plain syncs): {}",
            missing.join(", ")
        ));
    }
    if !init.policies.explicit_ids {
        notes.push("the engine mints every id: inserts with colliding explicit ids were skipped".into());
    }
    if !init.policies.natural_keys.identifies_rows() || init.policies.references != ReferencesPolicy::Enforced {
        let (keys, _) = allowed_by(Event::KeyDuplicateByMerge, init);
        let (references, _) = allowed_by(Event::DanglingByMerge, init);
        let names = if init.policies.natural_keys.identifies_rows() {
            ""
        } else {
            "; rows are named by their ids alone, not by natural keys"
        };
        notes.push(format!(
            "the engine promises less than every constraint everywhere ({keys}, {references}): the natural-key \
             duplicates and dangling references its declarations allow were counted (below, when any), not \
             failed{names}"
        ));
    }
    notes
}

/// The declaration that lets a declared-breach event happen, and what the
/// event counts, in words.
pub(crate) fn allowed_by(event: Event, init: &InitOk) -> (String, String) {
    let name = |v: Result<String, serde_json::Error>| v.unwrap_or_default().trim_matches('"').to_string();
    let keys = format!(
        "natural_keys: {}",
        name(serde_json::to_string(&init.policies.natural_keys))
    );
    let references = format!("references: {}", name(serde_json::to_string(&init.policies.references)));
    // Under local_only the engine's own writes make none (that fails), so
    // the writes that did were made around its API.
    let by_writes = |local_only: bool| {
        if local_only {
            "writes around the engine's API"
        } else {
            "writes"
        }
    };
    let keys_local = init.policies.natural_keys == syncgate_protocol::NaturalKeyPolicy::LocalOnly;
    let references_local = init.policies.references == ReferencesPolicy::LocalOnly;
    match event {
        Event::KeyDuplicateByMerge => (keys, "natural-key duplicates made by merges".into()),
        Event::KeyDuplicateByWrite => (
            keys,
            format!("natural-key duplicates made by {}", by_writes(keys_local)),
        ),
        Event::DanglingByMerge => (references, "dangling references made by merges".into()),
        _ => (
            references,
            format!("dangling references made by {}", by_writes(references_local)),
        ),
    }
}

/// How the harness can hold a run's syncs inside (`run/held.rs`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum InsideHolds {
    /// Not at all, or a run of one replica (no other to sync inside).
    None,
    /// The in-process reference's seam on a SQLite remote: before a remote
    /// transaction, and at a backoff wait.
    Seam,
    /// A PostgreSQL remote's wire tap: after any round trip.
    WireTap,
}

impl InsideHolds {
    /// How `subject`'s syncs are held, on runs of at most `replicas`
    /// replicas (`None`: the generator's choice, more than one).
    pub(crate) fn of(subject: &dyn crate::subject::Subject, replicas: Option<usize>) -> InsideHolds {
        if replicas.is_some_and(|n| n < 2) {
            InsideHolds::None
        } else if matches!(subject.remote(), crate::places::RemoteTarget::Postgres { .. }) {
            InsideHolds::WireTap
        } else if subject.held_at_seam() {
            InsideHolds::Seam
        } else {
            InsideHolds::None
        }
    }
}

/// Whether a run on an engine that declared `init`, whose syncs the
/// harness holds inside as `holds` says, can reach `event`.
pub(crate) fn reachable(event: Event, init: &InitOk, profile: bool, holds: InsideHolds) -> bool {
    let caps = &init.capabilities;
    let write_through = init.policies.push == PushPolicy::OnCommit;
    match event {
        e if e.needs_model() => profile,
        // Reached only through knobs the engine has: the reference's do.
        Event::DriftRefused | Event::PageCut => profile,
        // Reached only by engines that capture with triggers: the reference does.
        Event::TableRebuilt => profile,
        // Reached only by engines whose caches are in the reference's format.
        Event::CacheFromOlderVersion => profile,
        // Drawn only for engines that declare the reference profile (an
        // engine may write at every open by design; the reference may not).
        Event::RestartUnderCacheLock => profile,
        Event::OutsideWrite => caps.outside_writes != OutsideWrites::NotCaptured,
        // A write-through engine has something to push (and so to crash in,
        // or to hold over a restart) only after a push inside a commit
        // failed: reachable, but too rare to require of a run.
        Event::CrashAfterRemoteCommit => {
            caps.crash_points.contains(&CrashPoint::PushAfterRemoteCommit) && !write_through
        }
        Event::RestartWithPending => !caps.crash_points.is_empty() && !write_through,
        // Likewise a push that pushes something after a busy one: the
        // write-through example reached it in some 300-case runs, not all.
        Event::BusyThenPushed => !write_through,
        Event::IdCollisionRefused => init.policies.explicit_ids,
        Event::ClockJump => caps.clock,
        Event::AtomicVisibilityJudged => init.policies.transactions == TransactionsPolicy::Atomic,
        Event::CausalVisibilityJudged | Event::MonotonicReadsJudged => {
            init.policies.consistency == ConsistencyPolicy::Causal
        }
        // How many round trips another engine's sync makes, and whether its
        // statements wait or fail busy, is its own: required of the
        // reference. Only a wire tap holds a sync inside a read transaction.
        Event::PushBetweenPullPages => profile && holds == InsideHolds::WireTap,
        e if e.needs_hold_inside() => profile && holds != InsideHolds::None,
        _ => true,
    }
}

/// Whether cases on `schema` can reach `event`: a schema without a natural
/// key never merges by one, without references never cascades, without a
/// column an update may set never has conflicting updates.
pub(crate) fn in_schema(event: Event, schema: &syncgate_model::Schema) -> bool {
    let natural_key = schema.tables.iter().any(|t| t.natural_key.is_some());
    let references = schema
        .tables
        .iter()
        .any(|t| t.columns.iter().any(|c| c.references.is_some()));
    let updatable = schema.tables.iter().any(|t| {
        t.columns
            .iter()
            .enumerate()
            .any(|(c, col)| col.references.is_none() && t.natural_key != Some(c))
    });
    match event {
        Event::NaturalKeyMerge => natural_key,
        Event::CascadeDelete | Event::PulledParentDeath => references,
        Event::MultiWriteTransaction | Event::AtomicVisibilityJudged => schema.family().is_some(),
        Event::MonotonicReadsJudged => updatable,
        Event::CacheFromOlderVersion => crate::places::older_formats_hold(schema),
        Event::NullTransition | Event::ConflictWonLocally | Event::ConflictWonRemotely | Event::DeleteAbsorbedWrite => {
            updatable
        }
        _ => true,
    }
}

/// The properties a run on an engine that declared `init` checks, in
/// `Invariant::ALL`'s order: the others cannot fail for it (reports list
/// these as passed or failed, never the others).
pub fn checked_properties(init: &InitOk, profile: bool) -> Vec<Invariant> {
    let ids_move = init.policies.ids != IdPolicy::Stable;
    Invariant::ALL
        .into_iter()
        .filter(|i| match i {
            Invariant::NoAbortedRead => init.capabilities.aborts,
            Invariant::AtomicVisibility => init.policies.transactions == TransactionsPolicy::Atomic,
            Invariant::CausalVisibility | Invariant::MonotonicReads => {
                init.policies.consistency == ConsistencyPolicy::Causal
            }
            Invariant::ReadsTruthful => init.capabilities.reads,
            Invariant::NoResurrection => init.policies.delete == DeletePolicy::DeleteWins,
            Invariant::RenumberingReported | Invariant::ReferencesFollowIds | Invariant::WriteOnWrongRow => ids_move,
            i => i.oracle() == Oracle::Contract || profile,
        })
        .collect()
}
