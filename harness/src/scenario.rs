//! What a case is: its configuration and its steps (`generate.rs`: how
//! proptest makes them).
//!
//! Steps name rows by position ("the 2nd host replica 1 can see"), not by id,
//! so a step still means something after shrinking removed the steps before
//! it. They are resolved against what the harness last read when they run.

mod generate;
mod random_schema;
mod shape;

use serde::{Deserialize, Deserializer, Serialize};
use syncgate_protocol::Limits;

pub use generate::{scenario_strategy, GenConfig, CLOCK_JUMPS_MS, CLOCK_OFFSET_BEYOND_DRIFT_MS, CLOCK_OFFSET_MAX_MS};
pub use random_schema::TABLES_MAX;
pub use shape::Shape;

/// A value as a trace file stores it. `Parent(n)` is a reference to the n-th
/// parent row the writing replica can see (resolved when the step runs).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Val {
    Null,
    Int(i64),
    /// Text that gets its write's tag (`alpha.w12`), except in natural keys.
    Text(String),
    Parent(usize),
    /// Text written as it is: empty, shared by several writes, or equal to
    /// another replica's value.
    Raw(String),
    /// A real, written as it is (a finite double other than `-0.0`).
    Real(syncgate_protocol::Real),
    /// A blob, by its length and the byte it starts from ([`BlobSpec`]):
    /// a trace file stays small however large its blobs are.
    Blob(BlobSpec),
}

/// A blob's bytes, made from a length and a salt: every byte value occurs,
/// so blobs are not UTF-8, and two salts give two different blobs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlobSpec {
    pub len: usize,
    pub salt: u8,
}

impl BlobSpec {
    pub fn bytes(self) -> Vec<u8> {
        (0..self.len)
            .map(|i| (i.wrapping_mul(167) ^ (i >> 8)) as u8 ^ self.salt)
            .collect()
    }
}

/// Which id an insert asks for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum IdChoice {
    /// Let the replica mint one.
    Mint,
    /// The id of the n-th row of this table that another replica or the
    /// remote holds: a collision with a row made elsewhere.
    Foreign(usize),
    /// The id of the n-th row this replica holds.
    Taken(usize),
    /// The id of the n-th row this replica deleted (or had merged away).
    Deleted(usize),
    /// The id of the n-th row of this replica that a pull merged away by
    /// natural key (rule N4: it is gone too).
    MergedAway(usize),
    /// Outside inserts, for engines that mint their ids: the application
    /// first mints this many ids for rows it then gives up on (its
    /// transaction rolled back), then mints the one it inserts with. A
    /// minted id is reserved: it is never minted again, used or not.
    /// Elsewhere it is `Mint`.
    MintAbandoning(u8),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SyncKind {
    Push,
    Pull,
    Full,
}

/// Another replica's sync that runs inside a sync, at a point the harness
/// picks on the wire (a PostgreSQL remote's tap; PROTOCOL.md "Interleavings
/// inside a step"): after `after` round trips of the sync to the server, the
/// session is held, `replica` syncs (`kind`) to the end and is observed,
/// then the held session goes on. Where the paused session holds a lock a
/// writer could wait on, or the sync makes fewer round trips, nothing runs
/// inside it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Interleave {
    pub after: u8,
    pub replica: usize,
    pub kind: SyncKind,
}

/// Where an injected crash stops a sync.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CrashAt {
    /// Push: after the outbox was read and applied, before the remote commit.
    BeforeRemoteCommit,
    /// Push: after the remote commit, before the local acknowledgement.
    AfterRemoteCommit,
    /// Pull: rows read and partly applied, before the local commit (so
    /// before the cursor advances).
    BeforeLocalCommit,
}

/// How the server answers a replica's new connections during the sync
/// after it closed the replica's sessions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reconnect {
    /// As always: the restart is over, or only the connection dropped.
    Accepted,
    /// SQLSTATE 57P03: the server is starting up (retry later).
    StartingUp,
    /// SQLSTATE 28000: the role no longer exists.
    RoleMissing,
    /// SQLSTATE 28P01: the password is refused.
    PasswordRefused,
    /// SQLSTATE 3D000: the database no longer exists.
    DatabaseMissing,
}

impl Reconnect {
    /// The SQLSTATE and message the server refuses a new connection with.
    pub fn refusal(self) -> Option<(&'static str, &'static str)> {
        match self {
            Reconnect::Accepted => None,
            Reconnect::StartingUp => Some(("57P03", "the database system is starting up")),
            Reconnect::RoleMissing => Some(("28000", "role \"syncgate\" does not exist")),
            Reconnect::PasswordRefused => Some(("28P01", "password authentication failed for user \"syncgate\"")),
            Reconnect::DatabaseMissing => Some(("3D000", "database \"syncgate\" does not exist")),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum LockKind {
    /// A read transaction: writers cannot commit.
    Shared,
    /// `BEGIN IMMEDIATE`: no other writer may begin.
    Reserved,
    /// `BEGIN EXCLUSIVE`: nobody may read or write.
    Exclusive,
}

/// One step of a scenario.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Step {
    Insert {
        replica: usize,
        table: usize,
        id: IdChoice,
        values: Vec<Val>,
    },
    Update {
        replica: usize,
        table: usize,
        row: usize,
        column: usize,
        value: Val,
    },
    Delete {
        replica: usize,
        table: usize,
        row: usize,
    },
    /// One local transaction of several writes: a new parent row (minted
    /// id) and `records` children under it, in the schema's family tables
    /// (`model::Schema::family`: a domain and its dns_records in the
    /// built-in schema). Generated as a kind of insert.
    InsertFamily {
        replica: usize,
        /// The parent's columns (named `domain` since the built-in schema).
        domain: Vec<Val>,
        /// Each record's columns after its reference to the new domain.
        records: Vec<Vec<Val>>,
    },
    Sync {
        replica: usize,
        kind: SyncKind,
        /// Just before the sync, the server closed the replica's sessions
        /// with a PostgreSQL remote (a server restart, an idle timeout, a
        /// dropped connection), and answers its new ones as this says; the
        /// harness does both in its wire tap. On a SQLite remote nothing
        /// happens.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        sessions_cut: Option<Reconnect>,
        /// Another replica's sync runs inside this one (PostgreSQL remotes;
        /// on a SQLite remote nothing runs inside).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        interleave: Option<Interleave>,
    },
    /// A sync that crashes at `at`; the replica stays down until `Restart`.
    Crash {
        replica: usize,
        kind: SyncKind,
        at: CrashAt,
    },
    /// The replica's process starts again from its files (a no-op for a
    /// replica that is up), after what befell it while it was down.
    #[serde(deserialize_with = "restart_fields")]
    Restart {
        replica: usize,
        /// What happened to the replica's files, clock or remote while its
        /// process was down, in the order the generator drew it (the runner
        /// applies each kind at its own moment of the restart).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        while_down: Vec<WhileDown>,
    },
    /// Another connection locks the remote for the next `hold` steps.
    LockRemote {
        lock: LockKind,
        hold: usize,
        /// The lock ends earlier, inside the first sync that meets it busy,
        /// once the server refused that sync's statement (PostgreSQL
        /// remotes: the wire tap sees the refusal; the engine's retry then
        /// finds the remote free). On a SQLite remote it holds its steps.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        ends_when_busy: bool,
    },
    /// Another connection takes the cache's write lock for the next `hold` steps.
    LockCache {
        replica: usize,
        hold: usize,
    },
    /// The replica's clock is set `offset_ms` away from true time.
    Clock {
        replica: usize,
        offset_ms: i64,
    },
    /// An insert, update or delete made straight into the replica's cache
    /// file over another connection, as another part of the application
    /// would (inserts always take a fresh id).
    Outside(Box<Step>),
    /// An application write (an insert, update, delete or family) whose
    /// transaction the application rolls back after its ops ran (engines
    /// that declare `aborts`): nothing of it may ever be seen anywhere.
    Abort(Box<Step>),
}

impl Step {
    /// The replica a step acts on, if it acts on one.
    pub fn replica(&self) -> Option<usize> {
        match self {
            Step::Insert { replica, .. }
            | Step::Update { replica, .. }
            | Step::Delete { replica, .. }
            | Step::InsertFamily { replica, .. }
            | Step::Sync { replica, .. }
            | Step::Crash { replica, .. }
            | Step::Restart { replica, .. }
            | Step::LockCache { replica, .. }
            | Step::Clock { replica, .. } => Some(*replica),
            Step::Outside(inner) | Step::Abort(inner) => inner.replica(),
            Step::LockRemote { .. } => None,
        }
    }
}

/// One thing that befalls a replica while its process is down, applied
/// when the `Restart` step brings it back. Each variant's doc comment is
/// what happens and what the engine must do about it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WhileDown {
    /// The process comes back to a clock this far from true time (a clock
    /// that went backwards across the restart). Engines without an injected
    /// clock are not told.
    ClockMoved { offset_ms: i64 },
    /// A migration rebuilt this table (by index) of the replica's cache, as
    /// schema tools do on SQLite; a rebuild drops the table's triggers with
    /// it, so an engine that captures by trigger must notice at open, or its
    /// writes go uncaptured.
    TableRebuilt { table: usize },
    /// The process that comes back is the engine's next version over a
    /// cache its previous version wrote in this older format (0 or 1;
    /// reference-format caches only, see `places/legacy_cache.rs`): the
    /// engine must upgrade it at open and lose nothing.
    CacheFromOlderVersion { format: u8 },
    /// A newer version of the engine wrote the cache (the app went back a
    /// version; reference-format caches only): the engine must refuse to
    /// open it and leave it as it is; then the newer version comes back.
    CacheFromNewerVersion,
    /// Another part of the application holds the cache's write lock while
    /// the engine starts (reference-profile engines, and only over an open
    /// that needs no change: no rebuilt table, no other format): opening a
    /// cache that is up to date must write nothing, or the sync process
    /// cannot start while the application writes.
    AppHoldsCache,
    /// A newer version of the application added a column to this table (by
    /// index) of the remote, which the case's schema does not declare
    /// (reference-profile engines): the engine must refuse to open the
    /// remote rather than sync against tables it does not know; then the
    /// column goes again and the restart goes on.
    RemoteDrifted { table: usize },
}

impl WhileDown {
    /// Whether this is a cache written by another version of the engine.
    pub fn is_other_cache_version(self) -> bool {
        matches!(
            self,
            WhileDown::CacheFromOlderVersion { .. } | WhileDown::CacheFromNewerVersion
        )
    }
}

/// A restart step as trace files store it: `while_down`, or the separate
/// fields of files written before it existed (one per thing, each optional),
/// which become the same list in the same order.
#[derive(Deserialize)]
struct RestartFile {
    replica: usize,
    #[serde(default)]
    while_down: Vec<WhileDown>,
    #[serde(default)]
    offset_ms: Option<i64>,
    #[serde(default)]
    rebuilt: Option<usize>,
    #[serde(default)]
    cache_format: Option<u8>,
    #[serde(default)]
    app_holds_cache: bool,
    #[serde(default)]
    remote_drifted: Option<usize>,
}

fn restart_fields<'de, D: Deserializer<'de>>(deserializer: D) -> Result<(usize, Vec<WhileDown>), D::Error> {
    let file = RestartFile::deserialize(deserializer)?;
    let mut while_down = file.while_down;
    while_down.extend(file.offset_ms.map(|offset_ms| WhileDown::ClockMoved { offset_ms }));
    while_down.extend(file.rebuilt.map(|table| WhileDown::TableRebuilt { table }));
    // Trace files from before format 3 named a newer version's cache 3.
    while_down.extend(file.cache_format.map(|format| match format {
        format if format >= NEWER_CACHE_FORMAT - 1 => WhileDown::CacheFromNewerVersion,
        format => WhileDown::CacheFromOlderVersion { format },
    }));
    while_down.extend(file.app_holds_cache.then_some(WhileDown::AppHoldsCache));
    while_down.extend(file.remote_drifted.map(|table| WhileDown::RemoteDrifted { table }));
    Ok((file.replica, while_down))
}

/// Kinds of step, for swarm weights. The last, `abort`, is drawn only for
/// engines that declare `aborts` (its weight is absent otherwise).
pub const STEP_KINDS: [&str; 11] = [
    "insert",
    "update",
    "delete",
    "sync",
    "crash",
    "restart",
    "lock-remote",
    "lock-cache",
    "clock",
    "outside",
    "abort",
];

/// Per-case weights of each step kind (swarm testing): a zero leaves that
/// kind out of the case entirely, so some cases are all writes and syncs
/// while others hammer locks or crashes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Swarm {
    /// One weight per entry of [`STEP_KINDS`] (older trace files have fewer:
    /// the missing kinds weigh 0).
    pub weights: Vec<u32>,
}

impl std::fmt::Display for Swarm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let parts: Vec<String> = STEP_KINDS
            .iter()
            .zip(&self.weights)
            .map(|(name, w)| format!("{name}={w}"))
            .collect();
        write!(f, "{}", parts.join(" "))
    }
}

/// The format of a cache "a newer version of the engine wrote": one above
/// the reference engine's.
pub const NEWER_CACHE_FORMAT: u8 = 4;

/// One generated case.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Scenario {
    pub replicas: usize,
    pub swarm: Swarm,
    /// Engine limits drawn for this case ("buggify"), so boundaries such as
    /// a pull page or a push batch are crossed; the shrinker moves them back
    /// toward the engine's defaults.
    #[serde(default)]
    pub limits: Limits,
    /// How far true time moves at each step, in ms: `None` is
    /// `run::STEP_MS` (a second). `Some(0)` is a clock that stands still
    /// (a coarse or frozen clock), so replicas that write at different
    /// steps stamp from the same ms and their HLCs tie across replicas.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step_ms: Option<i64>,
    /// The tables the case syncs, when not the built-in schema (`--schema`):
    /// a trace file carries them, so it replays on its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<syncgate_protocol::Schema>,
    pub steps: Vec<Step>,
}

impl Scenario {
    /// The drawn configuration, as a trace shows it: the limits that differ
    /// from the engine's defaults, and the clock's pace.
    pub fn config_line(&self) -> String {
        let l = &self.limits;
        let knobs = [
            ("pull_page_rows", l.pull_page_rows.map(|v| v.to_string())),
            ("push_batch_max", l.push_batch_max.map(|v| v.to_string())),
            ("busy_retries_max", l.busy_retries_max.map(|v| v.to_string())),
            ("backoff_base_ms", l.backoff_base_ms.map(|v| v.to_string())),
            ("backoff_max_ms", l.backoff_max_ms.map(|v| v.to_string())),
            ("drift_ms_max", l.drift_ms_max.map(|v| v.to_string())),
            ("statement_cache", l.statement_cache.map(|v| v.to_string())),
        ];
        let drawn: Vec<String> = knobs
            .iter()
            .filter_map(|(name, v)| v.as_ref().map(|v| format!("{name}={v}")))
            .collect();
        let limits = if drawn.is_empty() {
            "engine defaults".to_string()
        } else {
            drawn.join(" ")
        };
        let clock = match self.step_ms {
            None => "1 s per step".to_string(),
            Some(0) => "stands still".to_string(),
            Some(ms) => format!("{ms} ms per step"),
        };
        let tables = match &self.schema {
            Some(schema) => format!("; tables {}", random_schema::compact(schema)),
            None => String::new(),
        };
        format!("limits {limits}; clock {clock}{tables}")
    }
}
