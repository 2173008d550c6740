//! Deliberately broken variants of the engine, one bug each, so the harness
//! can prove it catches every class of sync bug.
//!
//! Architecture Invariant: only the `mutants` cargo feature (enabled by the
//! harness alone) makes a mutant selectable; without it `Config` has no
//! mutant field and every `Config::planted` check is a constant `false`.

/// One planted bug. The doc comment of each variant is the bug.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Mutant {
    /// Push marks outbox entries synced without executing them on the remote.
    AckWithoutApply,
    /// Pending writes live only in memory: reopening a cache loses them.
    MemoryOutbox,
    /// One write path is not captured: writes to the second declared table
    /// (`hosts` in the test schema; the first when there is only one).
    BypassCapture,
    /// Capture runs after commit, when deleted rows are already gone: deletes are missed.
    AfterCommitCapture,
    /// Replicas mint local autoincrement ids (1, 2, 3, ...) and push them with plain INSERT.
    AutoincrementIds,
    /// Autoincrement ids pushed with INSERT OR REPLACE: another replica's row is overwritten.
    InsertOrReplace,
    /// Last-writer-wins on wall-clock time: no HLC, skew picks the winner.
    WallClockLww,
    /// A busy remote makes push skip its work and report success.
    NoBusyRetry,
    /// The outbox is acknowledged before the remote transaction commits.
    AckBeforeCommit,
    /// Deletes are not remembered: pulled tombstones are ignored.
    NoTombstones,
    /// Pulled rows are captured again and sent back.
    EchoCapture,
    /// Pull skips the first change after the cursor.
    CursorOffByOne,
    /// The cursor is advanced in a separate transaction before the data.
    NonAtomicPull,
    /// The sync report never counts conflicts.
    LyingStatus,
    /// No natural-key merge: the same key on two replicas is pushed as two rows.
    NaturalKeyInsert,
    /// One local transaction is pushed across several remote transactions.
    SplitTransaction,
    /// Pull overwrites pending local writes even when they win by stamp.
    PullOverwritesPending,
    /// The clock does not advance on pulled stamps.
    NoClockAdvance,
    /// Rows deleted as a side effect (cascade) never reach the outbox.
    UncapturedReplaceDelete,
    /// A remote read that fails busy leaves its transaction open (a bug the
    /// harness found in the engine: `busy_read_left_a_transaction_open.json`).
    BusyReadLeaksTxn,
    /// The id of a row merged away by natural key may be inserted again, so
    /// the insert renames the survivor (a bug the spec review found, rule N4).
    MergedIdReuse,
    /// The natural-key guard compares keys with `!=`, which is not true
    /// when either side is NULL: an update over another connection that sets
    /// a key to or from NULL is accepted (rule N4; issue 21's example).
    KeyGuardNull,
    /// A PostgreSQL pull reads its head and its pages in READ COMMITTED
    /// instead of one REPEATABLE READ snapshot: a push that commits between
    /// two pages shows the later pages rows the head does not cover, and
    /// hides rows it moved past the head (issue 22's example; SQLite
    /// remotes are unaffected, their read lock is the snapshot).
    PullPagesReadCommitted,
    /// A batch whose remote commit failed busy is counted in the sync
    /// report, and counted again when the retry pushes it (issue 22's
    /// example: seen only when a lock ends within the sync).
    BusyRetryCountsTwice,
}

#[cfg_attr(
    not(feature = "mutants"),
    allow(dead_code, reason = "selectable only with the mutants feature")
)]
impl Mutant {
    /// The table bypass-capture leaves uncaptured: the second declared
    /// (`hosts` in the test schema), or the only one.
    pub(crate) fn bypassed(schema: &crate::schema::Schema) -> usize {
        1.min(schema.tables().len().saturating_sub(1))
    }

    /// The operator the natural-key guard compares old and new keys with:
    /// `IS NOT`, or `!=` when the key-guard-null mutant is `planted`.
    pub(crate) fn key_differs(planted: bool) -> &'static str {
        if planted {
            "!="
        } else {
            "IS NOT"
        }
    }

    pub const ALL: [Mutant; 24] = [
        Mutant::AckWithoutApply,
        Mutant::MemoryOutbox,
        Mutant::BypassCapture,
        Mutant::AfterCommitCapture,
        Mutant::AutoincrementIds,
        Mutant::InsertOrReplace,
        Mutant::WallClockLww,
        Mutant::NoBusyRetry,
        Mutant::AckBeforeCommit,
        Mutant::NoTombstones,
        Mutant::EchoCapture,
        Mutant::CursorOffByOne,
        Mutant::NonAtomicPull,
        Mutant::LyingStatus,
        Mutant::NaturalKeyInsert,
        Mutant::SplitTransaction,
        Mutant::PullOverwritesPending,
        Mutant::NoClockAdvance,
        Mutant::UncapturedReplaceDelete,
        Mutant::BusyReadLeaksTxn,
        Mutant::MergedIdReuse,
        Mutant::KeyGuardNull,
        Mutant::PullPagesReadCommitted,
        Mutant::BusyRetryCountsTwice,
    ];

    /// The kebab-case name `--engine mutant:NAME` takes.
    pub fn name(self) -> &'static str {
        match self {
            Mutant::AckWithoutApply => "ack-without-apply",
            Mutant::MemoryOutbox => "memory-outbox",
            Mutant::BypassCapture => "bypass-capture",
            Mutant::AfterCommitCapture => "after-commit-capture",
            Mutant::AutoincrementIds => "autoincrement-ids",
            Mutant::InsertOrReplace => "insert-or-replace",
            Mutant::WallClockLww => "wall-clock-lww",
            Mutant::NoBusyRetry => "no-busy-retry",
            Mutant::AckBeforeCommit => "ack-before-commit",
            Mutant::NoTombstones => "no-tombstones",
            Mutant::EchoCapture => "echo-capture",
            Mutant::CursorOffByOne => "cursor-off-by-one",
            Mutant::NonAtomicPull => "non-atomic-pull",
            Mutant::LyingStatus => "lying-status",
            Mutant::NaturalKeyInsert => "natural-key-insert",
            Mutant::SplitTransaction => "split-transaction",
            Mutant::PullOverwritesPending => "pull-overwrites-pending",
            Mutant::NoClockAdvance => "no-clock-advance",
            Mutant::UncapturedReplaceDelete => "uncaptured-replace-delete",
            Mutant::BusyReadLeaksTxn => "busy-read-leaks-txn",
            Mutant::MergedIdReuse => "merged-id-reuse",
            Mutant::KeyGuardNull => "key-guard-null",
            Mutant::PullPagesReadCommitted => "pull-pages-read-committed",
            Mutant::BusyRetryCountsTwice => "busy-retry-counts-twice",
        }
    }

    /// Whether the gate reaches the bug only on a PostgreSQL remote: it
    /// lives in that remote's code, or shows only when another sync runs
    /// inside a pull's read transaction, where only the wire tap holds one.
    pub fn postgres_only(self) -> bool {
        matches!(self, Mutant::PullPagesReadCommitted)
    }

    /// Whether the bug shows only when something happens inside a sync (a
    /// held sync: another replica's sync inside it, or a remote lock that
    /// ends once it met it busy), which a case reaches in few of its syncs.
    pub fn inside_a_step(self) -> bool {
        matches!(self, Mutant::PullPagesReadCommitted | Mutant::BusyRetryCountsTwice)
    }

    pub fn by_name(name: &str) -> Option<Mutant> {
        Mutant::ALL.into_iter().find(|m| m.name() == name)
    }
}

/// The bug planted in one remote handle, if any. Without the mutants
/// feature it holds nothing and [`Planted::is`] is a constant `false`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Planted {
    #[cfg(feature = "mutants")]
    mutant: Option<Mutant>,
}

impl Planted {
    #[cfg(feature = "mutants")]
    pub(crate) fn plant(&mut self, mutant: Mutant) {
        self.mutant = Some(mutant);
    }

    /// Whether `mutant` is planted.
    #[inline]
    pub(crate) fn is(&self, mutant: Mutant) -> bool {
        #[cfg(feature = "mutants")]
        {
            self.mutant == Some(mutant)
        }
        #[cfg(not(feature = "mutants"))]
        {
            let _ = mutant;
            false
        }
    }
}
