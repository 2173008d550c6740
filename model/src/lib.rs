//! The specification of a correct sync, as a pure in-memory step function.
//!
//! `SEMANTICS.md` beside this crate is the prose form of the same rules; each
//! rule there names the function here that implements it. This crate has no
//! dependencies, no I/O, no clock and no randomness: time is an argument of
//! every step (`now_ms`), and every step is total — a refusal is a value, never
//! a panic.
//!
//! Architecture Invariant: the model never depends on the engine. The harness
//! compares the two, and that comparison is only worth something because they
//! were written independently against the same spec.

mod outbox;
mod remote;
mod replica;
mod schema;

pub use outbox::{Entry, EntryKind};
pub use remote::{RemoteRow, RemoteState};
pub use replica::ReplicaState;
pub use schema::{test_schema, Column, ColumnKind, Schema, Table, TableIdx};

use std::collections::BTreeMap;

/// A column value. Only the kinds the declared schemas use.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Value {
    Null,
    Int(i64),
    Real(Real),
    Text(String),
    Blob(Vec<u8>),
}

/// A real value: a finite IEEE-754 double other than `-0.0` (see
/// "Value" in SEMANTICS.md). Two reals are equal when their bits are, so
/// convergence is bit-exact and `Value` keeps `Eq`, `Ord` and `Hash`.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Real(u64);

impl Real {
    /// `None` for NaN, the infinities and `-0.0`: values no place holds.
    pub fn new(x: f64) -> Option<Real> {
        (x.is_finite() && !(x == 0.0 && x.is_sign_negative())).then(|| Real(x.to_bits()))
    }

    pub fn get(self) -> f64 {
        f64::from_bits(self.0)
    }
}

impl std::fmt::Debug for Real {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", self.get())
    }
}

/// A hybrid-logical-clock stamp and the replica that made it. Stamps compare
/// by `hlc` first and by `replica` second (rule O3, the tie-break).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Stamp {
    pub hlc: i64,
    pub replica: u32,
}

/// Bits of logical counter below the physical milliseconds in an HLC value.
pub const HLC_LOGICAL_BITS: u32 = 16;
/// Bits of a row id that a replica numbers itself; the bits above are the
/// replica id (rule I1).
pub const ID_SPACE_BITS: u32 = 40;

/// Replica ids stay below this (Assumptions): `(r + 1) << ID_SPACE_BITS`
/// then fits an `i64`.
pub const REPLICAS_MAX: u32 = 1 << 22;

/// The half-open range of row ids that only `replica_id` may mint (rule I1).
pub fn id_space(replica_id: u32) -> (i64, i64) {
    assert!(
        replica_id < REPLICAS_MAX,
        "replica id {replica_id} is not below {REPLICAS_MAX}"
    );
    let lo = i64::from(replica_id) << ID_SPACE_BITS;
    (lo, lo + (1_i64 << ID_SPACE_BITS))
}

/// The HLC value of wall-clock time `now_ms` with a zero logical counter.
pub fn hlc_of_ms(now_ms: i64) -> i64 {
    now_ms << HLC_LOGICAL_BITS
}

/// The wall-clock milliseconds of an HLC value.
pub fn ms_of_hlc(hlc: i64) -> i64 {
    hlc >> HLC_LOGICAL_BITS
}

/// One application write, as the application states it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Write {
    /// `id: None` asks the replica to mint the next id of its own space.
    Insert {
        table: TableIdx,
        id: Option<i64>,
        values: Vec<Value>,
    },
    Update {
        table: TableIdx,
        id: i64,
        set: Vec<(usize, Value)>,
    },
    Delete {
        table: TableIdx,
        id: i64,
    },
}

/// Why an application write (a whole local transaction) was refused. A refused
/// transaction changes nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum WriteRefusal {
    /// The replica is crashed and not yet restarted.
    Down,
    /// Another connection holds the cache's write lock.
    Busy,
    /// An explicit id outside this replica's id space (rule I2).
    IdOutsideReplica,
    /// The id names a row that exists here (rule I2).
    IdTaken,
    /// The id names a row that was deleted (rule D1).
    IdDeleted,
    /// A live row already has this natural key (rule N1).
    NaturalKeyTaken,
    /// A reference to a parent row that is not here.
    ParentMissing,
    /// Update or delete of a row that is not here.
    RowNotFound,
    /// An update that changes the natural key (rule N4).
    KeyImmutable,
}

/// Why a push, pull or sync did not complete.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SyncFailure {
    Down,
    /// A lock held elsewhere outlasted the bounded retries. Nothing changed.
    Busy,
    /// The replica crashed at the injected point; it is down until restarted.
    Crashed,
    /// A pulled stamp lies too far ahead of this replica's clock (rule O4).
    ClockDrift,
    /// The server closed the replica's session and refuses its new one
    /// while it starts up (rule L2). Nothing changed.
    Unavailable,
    /// The server closed the replica's session and refuses its new login:
    /// the role, the password or the database (rule L2). Nothing changed.
    LoginRefused,
}

/// A named crash point inside a sync (rule S5).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum CrashPoint {
    /// Push: the outbox batch was read and applied on the remote, but the
    /// remote transaction did not commit.
    PushBeforeRemoteCommit,
    /// Push: the remote transaction committed; the local acknowledgement did not.
    PushAfterRemoteCommit,
    /// Pull: rows were read and partly applied; the local transaction did not
    /// commit, so the cursor did not advance.
    PullBeforeLocalCommit,
}

/// Which lock another connection holds on the remote file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RemoteLock {
    /// A read transaction (SHARED): writers cannot commit.
    Shared,
    /// `BEGIN IMMEDIATE` (RESERVED): no other writer may begin.
    Reserved,
    /// `BEGIN EXCLUSIVE`: nobody may read or write.
    Exclusive,
}

/// What a sync step reports (rule S6): exactly what happened.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SyncReport {
    /// Outbox entries acknowledged by this push.
    pub pushed: u64,
    /// Remote rows received by this pull.
    pub pulled: u64,
    /// Writes that did not take effect as written: superseded by a later
    /// stamp, absorbed by a tombstone, merged by natural key, or kept over an
    /// older remote value.
    pub conflicts: u64,
}

/// Which parts of a sync to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SyncKind {
    Push,
    Pull,
    /// Push, then pull.
    Full,
}

/// Knobs that change outcomes. The engine must be configured the same way.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// Pulled stamps further than this ahead of the local clock are refused.
    pub drift_ms_max: i64,
    /// A push batch holds whole local transactions and stops growing once the
    /// next transaction would take it past this many entries.
    pub push_batch_max: usize,
    /// Retries after a busy attempt, before the step fails `Busy` (rule L1).
    pub busy_retries_max: u32,
    /// The wait before the first retry; it doubles for each next one (L1).
    pub backoff_base_ms: u64,
    /// The longest wait before one retry (L1).
    pub backoff_max_ms: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            drift_ms_max: 60_000,
            push_batch_max: 10_000,
            busy_retries_max: 2,
            backoff_base_ms: 1,
            backoff_max_ms: 4,
        }
    }
}

/// How a step that stays busy ends (rule L1): after this many attempts,
/// having waited this long in all between them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BusyTries {
    pub attempts: u64,
    pub waited_ms: u64,
}

impl Config {
    /// Rule L1: a busy step is tried once and retried `busy_retries_max`
    /// times; before retry k (from 1) the engine waits
    /// `min(backoff_base_ms * 2^(k-1), backoff_max_ms)` on the injected
    /// clock. Locks do not change within a step, so every try is busy.
    pub fn busy_tries(&self) -> BusyTries {
        let waited_ms = (1..=u64::from(self.busy_retries_max))
            .map(|k| {
                let doubled = self.backoff_base_ms.saturating_mul(1_u64 << (k - 1).min(20));
                doubled.min(self.backoff_max_ms)
            })
            .fold(0_u64, u64::saturating_add);
        BusyTries {
            attempts: 1 + u64::from(self.busy_retries_max),
            waited_ms,
        }
    }
}

/// Rows of one table: id → values (declared column order, without `id`).
pub type Rows = BTreeMap<i64, Vec<Value>>;
/// Every synced table's rows, by table index.
pub type Tables = Vec<Rows>;

/// Counters of interesting events, so a checker can tell which states a run
/// reached.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Events {
    pub conflicts_won_locally: u64,
    pub conflicts_won_remotely: u64,
    pub natural_key_merges: u64,
    pub tombstone_absorbed: u64,
    pub cascade_deletes: u64,
    pub duplicate_pushes_skipped: u64,
    /// A pushed write met a column stamped with the same HLC by another
    /// replica (the tie-break of rule O3 decided).
    pub hlc_ties: u64,
    /// A push cut its outbox into more than one batch (rule S2).
    pub batch_cuts: u64,
    /// A pull brought the death of a row this replica held children of
    /// (rule D2, the cascade of a pulled delete).
    pub pulled_deaths_with_local_children: u64,
    /// A push killed a row its delete had reached here in a pull, live on
    /// the remote still (rule D2, a delete's victims).
    pub victims_killed: u64,
}

/// The whole system: one remote, several replicas.
#[derive(Clone, Debug)]
pub struct World {
    pub schema: Schema,
    pub config: Config,
    pub remote: RemoteState,
    pub replicas: Vec<ReplicaState>,
    pub events: Events,
    /// During [`World::sync_refused`]: the server refuses the syncing
    /// replica's new session with this failure (rule L2).
    reconnect_refused: Option<SyncFailure>,
}

impl World {
    /// A new remote and `replicas` new caches. Replica `i` registers with the
    /// remote `i`-th and so gets replica id `i + 1` (rule I1).
    pub fn new(schema: Schema, config: Config, replicas: usize) -> World {
        let remote = RemoteState::new(&schema);
        let replicas = (0..replicas)
            .map(|i| ReplicaState::new(&schema, u32::try_from(i + 1).unwrap_or(u32::MAX)))
            .collect();
        World {
            schema,
            config,
            remote,
            replicas,
            events: Events::default(),
            reconnect_refused: None,
        }
    }

    /// Rule L2: a sync right after the server closed replica `r`'s session,
    /// while the server refuses the new one with `refusal`
    /// ([`SyncFailure::Unavailable`] or [`SyncFailure::LoginRefused`]). A sync
    /// that reaches the remote fails so, after the cache's lock and before
    /// the remote's; one that has nothing to do there succeeds.
    pub fn sync_refused(
        &mut self,
        r: usize,
        now_ms: i64,
        kind: SyncKind,
        refusal: SyncFailure,
    ) -> Result<SyncReport, SyncFailure> {
        assert!(
            matches!(refusal, SyncFailure::Unavailable | SyncFailure::LoginRefused),
            "a refused session is unavailable or a refused login, not {refusal:?}"
        );
        self.reconnect_refused = Some(refusal);
        let outcome = self.sync(r, now_ms, kind, None);
        self.reconnect_refused = None;
        outcome
    }

    /// Runs one local transaction on replica `r`. Returns the ids written
    /// (minted or explicit) for inserts, in order.
    pub fn write(&mut self, r: usize, now_ms: i64, writes: &[Write]) -> Result<Vec<i64>, WriteRefusal> {
        let replica = &mut self.replicas[r];
        if !replica.up {
            return Err(WriteRefusal::Down);
        }
        if replica.cache_locked {
            return Err(WriteRefusal::Busy);
        }
        let mut scratch = replica.clone();
        let ids = scratch.transaction(&self.schema, now_ms, writes)?;
        *replica = scratch;
        Ok(ids)
    }

    /// Runs one local transaction made outside the engine's API (raw SQL on
    /// the cache file): captured like any write (C1), but its stamps follow
    /// the last HLC without reading the clock, and it opens no new local
    /// transaction for batching (rule O1, C1: triggers cannot read the
    /// injected clock).
    pub fn write_outside(&mut self, r: usize, writes: &[Write]) -> Result<Vec<i64>, WriteRefusal> {
        let replica = &mut self.replicas[r];
        if !replica.up {
            return Err(WriteRefusal::Down);
        }
        if replica.cache_locked {
            return Err(WriteRefusal::Busy);
        }
        let mut scratch = replica.clone();
        let ids = scratch.apply_writes(&self.schema, writes)?;
        *replica = scratch;
        Ok(ids)
    }

    /// Mints and reserves the next id of replica `r`'s space for an insert
    /// made outside the engine's API (rule I1).
    pub fn mint_id(&mut self, r: usize) -> Result<i64, WriteRefusal> {
        let replica = &mut self.replicas[r];
        if !replica.up {
            return Err(WriteRefusal::Down);
        }
        if replica.cache_locked {
            return Err(WriteRefusal::Busy);
        }
        let id = replica.next_id;
        replica.next_id += 1;
        Ok(id)
    }

    /// A push, pull or full sync of replica `r`, optionally crashing at `crash`.
    pub fn sync(
        &mut self,
        r: usize,
        now_ms: i64,
        kind: SyncKind,
        crash: Option<CrashPoint>,
    ) -> Result<SyncReport, SyncFailure> {
        if !self.replicas[r].up {
            return Err(SyncFailure::Down);
        }
        let mut report = SyncReport::default();
        if matches!(kind, SyncKind::Push | SyncKind::Full) {
            let (pushed, conflicts) = self.push(r, crash)?;
            report.pushed = pushed;
            report.conflicts += conflicts;
        }
        if matches!(kind, SyncKind::Pull | SyncKind::Full) {
            let (pulled, conflicts) = self.pull(r, now_ms, crash)?;
            report.pulled = pulled;
            report.conflicts += conflicts;
        }
        Ok(report)
    }

    /// Rule S1–S3: push the outbox in batches of whole local transactions,
    /// each in one remote transaction, acknowledged locally after the remote
    /// commit.
    fn push(&mut self, r: usize, crash: Option<CrashPoint>) -> Result<(u64, u64), SyncFailure> {
        self.push_up_to(r, crash, usize::MAX)
    }

    /// The first `batches` batches of replica `r`'s push (rules S1–S3), as
    /// far as a push got when another replica's step ran inside it between
    /// two of its remote transactions (SEMANTICS.md, "Interleavings").
    pub fn push_batches(&mut self, r: usize, batches: usize) -> Result<SyncReport, SyncFailure> {
        if !self.replicas[r].up {
            return Err(SyncFailure::Down);
        }
        let (pushed, conflicts) = self.push_up_to(r, None, batches)?;
        Ok(SyncReport {
            pushed,
            conflicts,
            ..SyncReport::default()
        })
    }

    fn push_up_to(&mut self, r: usize, crash: Option<CrashPoint>, batches: usize) -> Result<(u64, u64), SyncFailure> {
        let mut pushed = 0;
        let mut conflicts = 0;
        let mut first_batch = true;
        for _ in 0..batches {
            let replica = &self.replicas[r];
            if replica.outbox.is_empty() {
                return Ok((pushed, conflicts));
            }
            if replica.cache_locked {
                return Err(SyncFailure::Busy);
            }
            if let Some(refused) = self.reconnect_refused {
                return Err(refused);
            }
            if matches!(self.remote.lock, Some(RemoteLock::Reserved | RemoteLock::Exclusive)) {
                return Err(SyncFailure::Busy);
            }
            let batch = replica.next_batch(self.config.push_batch_max);
            if !first_batch {
                self.events.batch_cuts += 1;
            }
            let crash_here = if first_batch { crash } else { None };
            first_batch = false;
            if crash_here == Some(CrashPoint::PushBeforeRemoteCommit) {
                self.replicas[r].up = false;
                return Err(SyncFailure::Crashed);
            }
            if self.remote.lock == Some(RemoteLock::Shared) {
                return Err(SyncFailure::Busy);
            }
            let replica = &self.replicas[r];
            let entries: Vec<(Entry, Option<i64>)> = replica.outbox[..batch]
                .iter()
                .map(|e| (e.clone(), replica.local_alias_of(e)))
                .collect();
            let replica_id = replica.replica_id;
            let mut batch_conflicts = 0;
            for (entry, alias) in &entries {
                batch_conflicts += self
                    .remote
                    .apply(&self.schema, replica_id, entry, *alias, &mut self.events);
                let victims = self.replicas[r].victims_of(entry.seq);
                self.remote
                    .kill_victims(&self.schema, replica_id, entry.seq, &victims, &mut self.events);
            }
            if let Some((last, _)) = entries.last() {
                // S4: the applied seq only grows. A re-push after a crash past
                // the remote commit sends entries applied already, and a
                // smaller batch may end below what was applied.
                let acked = self.remote.acked.entry(replica_id).or_insert(0);
                *acked = (*acked).max(last.seq);
            }
            if crash_here == Some(CrashPoint::PushAfterRemoteCommit) {
                self.replicas[r].up = false;
                return Err(SyncFailure::Crashed);
            }
            let replica = &mut self.replicas[r];
            let acknowledged = replica.outbox[batch - 1].seq;
            replica.outbox.drain(..batch);
            replica.victims.retain(|_, cause| *cause > acknowledged);
            pushed += batch as u64;
            conflicts += batch_conflicts;
        }
        Ok((pushed, conflicts))
    }

    /// Rule P1–P5: pull every remote row changed after the cursor, in one
    /// local transaction with the new cursor.
    fn pull(&mut self, r: usize, now_ms: i64, crash: Option<CrashPoint>) -> Result<(u64, u64), SyncFailure> {
        let replica = &self.replicas[r];
        if replica.cache_locked {
            return Err(SyncFailure::Busy);
        }
        if let Some(refused) = self.reconnect_refused {
            return Err(refused);
        }
        if self.remote.lock == Some(RemoteLock::Exclusive) {
            return Err(SyncFailure::Busy);
        }
        if crash == Some(CrashPoint::PullBeforeLocalCommit) {
            self.replicas[r].up = false;
            return Err(SyncFailure::Crashed);
        }
        let changed = self.remote.changed_after(replica.cursor);
        for (_, _, row) in &changed {
            if let RemoteRow::Live { stamps, .. } = row {
                if stamps
                    .iter()
                    .any(|s| ms_of_hlc(s.hlc) > now_ms + self.config.drift_ms_max)
                {
                    return Err(SyncFailure::ClockDrift);
                }
            }
        }
        let mut scratch = replica.clone();
        let conflicts = scratch.apply_pulled(&self.schema, &self.remote, &changed, &mut self.events);
        // The engine commits a pull with deferred foreign keys: every
        // reference must hold once the whole pull is applied.
        if let Some((t, id, c, parent)) = scratch.dangling_reference(&self.schema) {
            panic!(
                "pull left {}/{id}.{} pointing at missing {parent} (replica {r}, cursor {} -> {})",
                self.schema.tables[t].name, self.schema.tables[t].columns[c].name, replica.cursor, self.remote.seq
            );
        }
        assert!(
            self.remote.seq >= replica.cursor,
            "the cursor only moves forward: {} to {}",
            replica.cursor,
            self.remote.seq
        );
        scratch.cursor = self.remote.seq;
        self.replicas[r] = scratch;
        Ok((changed.len() as u64, conflicts))
    }

    /// The replica stops at once; its durable state is what it had committed.
    pub fn crash(&mut self, r: usize) {
        self.replicas[r].up = false;
    }

    /// The replica is reopened from its files.
    pub fn restart(&mut self, r: usize) {
        self.replicas[r].up = true;
    }

    pub fn lock_remote(&mut self, lock: Option<RemoteLock>) {
        self.remote.lock = lock;
    }

    pub fn lock_cache(&mut self, r: usize, locked: bool) {
        self.replicas[r].cache_locked = locked;
    }

    /// What replica `r`'s application sees.
    pub fn visible(&self, r: usize) -> &Tables {
        &self.replicas[r].tables
    }

    /// What a reader of the remote's synced tables sees.
    pub fn remote_visible(&self) -> Tables {
        self.remote.visible(&self.schema)
    }

    pub fn pending(&self, r: usize) -> usize {
        self.replicas[r].outbox.len()
    }
}
