//! The syncgate engine protocol, versions 1 and 2: the messages between the
//! harness and an engine adapter, one JSON object per line (see `PROTOCOL.md`
//! at the root of the workspace, which is the normative text; these types
//! follow it field by field).
//!
//! A Rust adapter reads [`Envelope<Request>`] lines from stdin and writes
//! [`Reply<Response>`] lines to stdout. Unknown fields are ignored on both
//! sides; an unknown request type is answered with [`Response::Error`].
//! Version 2 adds optional fields only, each defaulting to what version 1
//! means, and left out when it has that default, so a version 1 exchange
//! serializes the same whichever version's types write it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The version an `init` names: the oldest this crate speaks, so that an
/// adapter written for it answers; `init.protocols` lists every version.
pub const VERSION: u32 = 1;

/// Every protocol version this crate speaks, oldest first.
pub const VERSIONS: [u32; 2] = [1, 2];

/// The newest version this crate speaks.
pub const LATEST: u32 = 2;

fn is_default<T: Default + PartialEq>(value: &T) -> bool {
    *value == T::default()
}

/// A request with its number.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Envelope<T> {
    pub msg_id: u64,
    #[serde(flatten)]
    pub body: T,
}

/// A reply with the number of the request it answers.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Reply<T> {
    pub in_reply_to: u64,
    #[serde(flatten)]
    pub body: T,
}

/// Everything the harness asks of an engine.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Request {
    /// The handshake: always the first request of a process.
    Init(Box<Init>),
    /// One local transaction; with `abort` (version 2, engines that declare
    /// `aborts`), the application rolls it back after its ops ran.
    Write {
        ops: Vec<Op>,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        abort: bool,
    },
    Push,
    Pull,
    /// A push, then a pull.
    Sync,
    Pending,
    SetClock {
        ms: i64,
    },
    ArmCrash {
        point: CrashPoint,
    },
    MintId {
        table: String,
    },
    /// Every row of `table` as the engine's own read API returns it (only
    /// if `reads` is `true`).
    Read {
        table: String,
    },
    /// Version 2, `outside_writes: delegated`: one statement written around
    /// the engine's API, to run on a connection set up as the
    /// application's other connections are.
    ExecSql {
        sql: String,
        params: Vec<Value>,
    },
}

impl Request {
    /// The request's `type`, as it travels.
    pub fn name(&self) -> &'static str {
        match self {
            Request::Init(_) => "init",
            Request::Write { .. } => "write",
            Request::Push => "push",
            Request::Pull => "pull",
            Request::Sync => "sync",
            Request::Pending => "pending",
            Request::SetClock { .. } => "set_clock",
            Request::ArmCrash { .. } => "arm_crash",
            Request::MintId { .. } => "mint_id",
            Request::Read { .. } => "read",
            Request::ExecSql { .. } => "exec_sql",
        }
    }
}

/// Everything an engine answers.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Response {
    InitOk(InitOk),
    WriteOk {
        ids: Vec<i64>,
        /// Version 2, `ids: renumbered`: rows of this replica's cache this
        /// request gave another id.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        renumbered: Vec<Renumbering>,
    },
    /// Version 2: the ops of a write sent with `abort` ran, and the
    /// application rolled the transaction back. `ids` (optional) are what
    /// its inserts had before the rollback, for reports only.
    WriteAborted {
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        ids: Vec<i64>,
    },
    Refused {
        class: RefusalClass,
        message: String,
    },
    SyncOk(SyncReport),
    SyncFailed {
        class: SyncFailureClass,
        message: String,
        /// For `busy`, optionally: how many times the engine tried.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        attempts: Option<u64>,
        /// For `busy`, optionally: how long it waited between tries, in ms
        /// of the clock the harness sets.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        waited_ms: Option<u64>,
        /// Optionally, with a PostgreSQL remote: see
        /// [`SyncReport::remote_round_trips`].
        #[serde(default, skip_serializing_if = "Option::is_none")]
        remote_round_trips: Option<u64>,
        /// Version 2, `ids: renumbered`: see [`SyncReport::renumbered`].
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        renumbered: Vec<Renumbering>,
    },
    PendingOk {
        pending: u64,
    },
    SetClockOk,
    ArmCrashOk,
    ReadOk {
        rows: Vec<ReadRow>,
    },
    MintIdOk {
        id: i64,
    },
    /// Version 2: the statement of an `exec_sql` ran and committed.
    ExecSqlOk {
        changes: u64,
        last_insert_rowid: i64,
    },
    Error {
        code: ErrorCode,
        message: String,
    },
}

impl Response {
    /// The response's `type`, as it travels.
    pub fn name(&self) -> &'static str {
        match self {
            Response::InitOk(_) => "init_ok",
            Response::WriteOk { .. } => "write_ok",
            Response::WriteAborted { .. } => "write_aborted",
            Response::Refused { .. } => "refused",
            Response::SyncOk(_) => "sync_ok",
            Response::SyncFailed { .. } => "sync_failed",
            Response::PendingOk { .. } => "pending_ok",
            Response::SetClockOk => "set_clock_ok",
            Response::ArmCrashOk => "arm_crash_ok",
            Response::MintIdOk { .. } => "mint_id_ok",
            Response::ReadOk { .. } => "read_ok",
            Response::ExecSqlOk { .. } => "exec_sql_ok",
            Response::Error { .. } => "error",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Init {
    /// [`VERSION`]: what an adapter of any version reads.
    pub protocol: u32,
    /// Every version the harness speaks; the engine answers the highest it
    /// knows (1 when this is absent).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub protocols: Vec<u32>,
    pub replica: usize,
    pub replicas: usize,
    pub cache: String,
    pub remote: RemoteLocation,
    /// The remote does not exist yet: create it before answering.
    pub create_remote: bool,
    /// The first start of this replica in the case (no cache file yet).
    pub fresh: bool,
    pub schema: Schema,
    pub clock_ms: i64,
    /// Limits drawn for this case (FoundationDB's "buggify"): an engine that
    /// has such a knob uses the value given, so its boundaries are crossed;
    /// knobs an engine does not have are ignored.
    #[serde(default, skip_serializing_if = "Limits::is_default")]
    pub limits: Limits,
}

/// Engine limits a case may set; `None` keeps the engine's own default.
///
/// On the wire the drift bound goes by two names: `drift_ms_max` (the name
/// every limit's shape follows: the qualifier last) and `max_drift_ms`
/// (protocol version 1's), both sent with the same value so an adapter
/// written for either keeps working; either is read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(from = "LimitsOnTheWire", into = "LimitsOnTheWire")]
pub struct Limits {
    /// Rows per page of a pull.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pull_page_rows: Option<u64>,
    /// Writes per push batch (whole local transactions stay together).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub push_batch_max: Option<u64>,
    /// Retries of a busy operation before giving up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub busy_retries_max: Option<u32>,
    /// First and largest wait between busy retries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backoff_base_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backoff_max_ms: Option<u64>,
    /// How far ahead of the local clock a pulled stamp may be.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drift_ms_max: Option<i64>,
    /// Prepared statements kept per connection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub statement_cache: Option<u64>,
}

/// [`Limits`] as JSON carries them: the drift bound under both its names.
#[derive(Clone, Copy, Default, Serialize, Deserialize)]
struct LimitsOnTheWire {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pull_page_rows: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    push_batch_max: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    busy_retries_max: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    backoff_base_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    backoff_max_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    drift_ms_max: Option<i64>,
    /// Version 1's name of `drift_ms_max`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    max_drift_ms: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    statement_cache: Option<u64>,
}

impl From<LimitsOnTheWire> for Limits {
    fn from(w: LimitsOnTheWire) -> Limits {
        Limits {
            pull_page_rows: w.pull_page_rows,
            push_batch_max: w.push_batch_max,
            busy_retries_max: w.busy_retries_max,
            backoff_base_ms: w.backoff_base_ms,
            backoff_max_ms: w.backoff_max_ms,
            drift_ms_max: w.drift_ms_max.or(w.max_drift_ms),
            statement_cache: w.statement_cache,
        }
    }
}

impl From<Limits> for LimitsOnTheWire {
    fn from(l: Limits) -> LimitsOnTheWire {
        LimitsOnTheWire {
            pull_page_rows: l.pull_page_rows,
            push_batch_max: l.push_batch_max,
            busy_retries_max: l.busy_retries_max,
            backoff_base_ms: l.backoff_base_ms,
            backoff_max_ms: l.backoff_max_ms,
            drift_ms_max: l.drift_ms_max,
            max_drift_ms: l.drift_ms_max,
            statement_cache: l.statement_cache,
        }
    }
}

impl Limits {
    pub fn is_default(&self) -> bool {
        *self == Limits::default()
    }
}

impl std::fmt::Display for Limits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut parts = Vec::new();
        let mut show = |name: &str, v: Option<String>| {
            if let Some(v) = v {
                parts.push(format!("{name}={v}"));
            }
        };
        show("pull_page_rows", self.pull_page_rows.map(|v| v.to_string()));
        show("push_batch_max", self.push_batch_max.map(|v| v.to_string()));
        show("busy_retries_max", self.busy_retries_max.map(|v| v.to_string()));
        show("backoff_base_ms", self.backoff_base_ms.map(|v| v.to_string()));
        show("backoff_max_ms", self.backoff_max_ms.map(|v| v.to_string()));
        show("drift_ms_max", self.drift_ms_max.map(|v| v.to_string()));
        show("statement_cache", self.statement_cache.map(|v| v.to_string()));
        if parts.is_empty() {
            write!(f, "defaults")
        } else {
            write!(f, "{}", parts.join(" "))
        }
    }
}

/// Where the remote is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum RemoteLocation {
    Sqlite {
        path: String,
    },
    /// A PostgreSQL server (`url`, a libpq connection string) and the schema
    /// (namespace) that holds this case's remote tables: each case has its
    /// own, created by the `create_remote` process, dropped by the harness.
    Postgres {
        url: String,
        schema: String,
    },
}

/// The declared synced tables. Every table also has `id INTEGER PRIMARY KEY`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Schema {
    pub tables: Vec<Table>,
    /// `CREATE TABLE` statements as the harness expects the tables.
    #[serde(default)]
    pub ddl: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Table {
    pub name: String,
    pub columns: Vec<Column>,
    #[serde(default)]
    pub natural_key: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Column {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: ColumnKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub references: Option<String>,
    /// `NOT NULL`: the harness never writes NULL into it (version 2's
    /// declared schemas; absent means nullable).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub not_null: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ColumnKind {
    Integer,
    Real,
    Text,
    Blob,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InitOk {
    pub protocol: u32,
    pub engine: String,
    pub capabilities: Capabilities,
    pub policies: Policies,
    /// Version 2, `ids: renumbered`: renumberings the engine finished while
    /// recovering at open.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub renumbered: Vec<Renumbering>,
}

/// What the harness may ask of an engine.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Capabilities {
    /// Accepts `set_clock` and reads time only from it.
    pub clock: bool,
    /// The crash points the engine can stop at.
    #[serde(default)]
    pub crash_points: Vec<CrashPoint>,
    pub outside_writes: OutsideWrites,
    #[serde(default = "default_outside_insert_ids")]
    pub outside_insert_ids: OutsideInsertIds,
    /// `Some(Reference)` promises the reference spec exactly.
    #[serde(default)]
    pub profile: Option<Profile>,
    /// Answers `read`: the rows of a table as the engine's read API returns
    /// them to the application.
    #[serde(default)]
    pub reads: bool,
    /// Version 2: `together` when the layer has one combined sync only.
    #[serde(default, skip_serializing_if = "is_default")]
    pub push_pull: PushPull,
    /// Version 2: the most replicas one remote may have (`None`: no bound).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas_max: Option<u32>,
    /// Version 2: `write` may carry `abort` (the application rolls back).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub aborts: bool,
    /// Version 2: the values the engine's platform holds, so the harness
    /// sends no other.
    #[serde(default, skip_serializing_if = "is_default")]
    pub value_domain: ValueDomain,
}

/// The values an engine can hold (PROTOCOL.md, "Value domain").
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ValueDomain {
    #[serde(default, skip_serializing_if = "is_default")]
    pub integers: IntegerDomain,
}

/// Which integers an engine holds exactly.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IntegerDomain {
    /// Every 64-bit signed integer, as SQLite does (version 1).
    #[default]
    I64,
    /// Only the integers a double holds exactly, |n| <= 2^53 - 1
    /// (JavaScript's safe integers): the harness sends no other.
    Safe,
}

impl IntegerDomain {
    /// The largest magnitude of an integer this domain holds.
    pub fn max(self) -> i64 {
        match self {
            IntegerDomain::I64 => i64::MAX,
            IntegerDomain::Safe => (1_i64 << 53) - 1,
        }
    }
}

/// Whether the layer syncs in two halves or only whole.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PushPull {
    /// `push`, `pull` and `sync` (version 1).
    #[default]
    Separate,
    /// `sync` only: push and pull steps are sent as `sync`.
    Together,
}

/// One row as an engine's read API returns it: its id and its declared
/// columns by name.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ReadRow {
    pub id: i64,
    pub values: BTreeMap<String, Value>,
}

fn default_outside_insert_ids() -> OutsideInsertIds {
    OutsideInsertIds::Sqlite
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutsideWrites {
    Captured,
    NotCaptured,
    /// Version 2: captured on a connection the engine sets up, so the
    /// harness sends them as `exec_sql`.
    Delegated,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutsideInsertIds {
    /// The harness asks `mint_id` first.
    Engine,
    /// SQLite chooses (an `INSERT` without an id).
    Sqlite,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Profile {
    Reference,
}

/// The rules an engine follows; the contract checks against them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Policies {
    pub merge: MergePolicy,
    pub delete: DeletePolicy,
    pub natural_keys: NaturalKeyPolicy,
    pub explicit_ids: bool,
    /// Version 2: when a write is pushed.
    #[serde(default, skip_serializing_if = "is_default")]
    pub push: PushPolicy,
    /// Version 2: whether pending may stay above 0 after a sync.
    #[serde(default, skip_serializing_if = "is_default")]
    pub pending_after_sync: PendingAfterSync,
    /// Version 2: how row ids relate across places and time.
    #[serde(default, skip_serializing_if = "is_default")]
    pub ids: IdPolicy,
    /// Version 2: what another place may see of a local transaction.
    #[serde(default, skip_serializing_if = "is_default")]
    pub transactions: TransactionsPolicy,
    /// Version 2: what a place may show before quiescence, across
    /// transactions (PROTOCOL.md, "Consistency levels").
    #[serde(default, skip_serializing_if = "is_default")]
    pub consistency: ConsistencyPolicy,
    /// Version 2: where references to a parent are kept valid.
    #[serde(default, skip_serializing_if = "is_default")]
    pub references: ReferencesPolicy,
}

/// Where a reference to a parent row is kept valid (PROTOCOL.md,
/// "Promises per constraint").
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReferencesPolicy {
    /// Everywhere, always (version 1): no place ever holds a row whose
    /// parent it does not hold.
    #[default]
    Enforced,
    /// The engine's own writes never leave a reference dangling in its
    /// cache; a merge may (a child inserted under a parent another replica
    /// deleted concurrently), and such rows are counted, not failed.
    LocalOnly,
    /// Nowhere: dangling references are counted wherever they appear.
    Unenforced,
}

/// What a place may show of writes before quiescence.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConsistencyPolicy {
    /// Nothing before quiescence (version 1's contract).
    #[default]
    Eventual,
    /// No place shows a write without the writes it causally follows
    /// (`CausalVisibility`; writes follow reads).
    Causal,
}

/// What another place may see of a committed local transaction before
/// quiescence (PROTOCOL.md, "Consistency levels").
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TransactionsPolicy {
    /// Nothing is promised before quiescence (version 1).
    #[default]
    Unit,
    /// All of it or none of it (no fractured read: `AtomicVisibility`).
    Atomic,
}

/// When a committed write is pushed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PushPolicy {
    /// By `push` or `sync` (version 1).
    #[default]
    Explicit,
    /// Inside the write request, before it answers (write-through).
    OnCommit,
}

/// What pending may be right after a successful `sync`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PendingAfterSync {
    /// 0 (version 1).
    #[default]
    Zero,
    /// Above 0 when the pull made writes of the engine's own (conflict
    /// resolutions) that a later push sends.
    Resolutions,
}

/// How row ids relate across places and time.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IdPolicy {
    /// An id names its row on every place, forever (version 1).
    #[default]
    Stable,
    /// A cache's ids never change; the remote's may differ.
    RemoteMap,
    /// A cache's ids may change, and replies say so.
    Renumbered,
}

/// The fields of `init_ok`, `capabilities` and `policies` this crate knows,
/// by the object they sit in: any other is a declaration of a newer
/// version, ignored and listed.
pub const KNOWN_FIELDS: [(&str, &[&str]); 3] = [
    (
        "init_ok",
        &[
            "type",
            "in_reply_to",
            "protocol",
            "engine",
            "capabilities",
            "policies",
            "renumbered",
        ],
    ),
    (
        "capabilities",
        &[
            "clock",
            "crash_points",
            "outside_writes",
            "outside_insert_ids",
            "profile",
            "reads",
            "push_pull",
            "replicas_max",
            "aborts",
            "value_domain",
        ],
    ),
    (
        "policies",
        &[
            "merge",
            "delete",
            "natural_keys",
            "explicit_ids",
            "push",
            "pending_after_sync",
            "ids",
            "transactions",
            "consistency",
            "references",
        ],
    ),
];

/// Declarations of version 2's design that this crate knows by name but
/// the harness does not check yet (PROTOCOL.md, "Designed, not yet
/// checked"), as `object.field`.
pub const DESIGNED_NOT_CHECKED: [&str; 4] = [
    "capabilities.topologies",
    "capabilities.outside_connection",
    "policies.constraints",
    "capabilities.pause_points",
];

/// The fields of an `init_ok` line this crate does not know, as
/// `object.field` (a newer version's declarations, or a misspelling).
pub fn unknown_declarations(init_ok: &serde_json::Value) -> Vec<String> {
    let mut unknown = Vec::new();
    for (object, known) in KNOWN_FIELDS {
        let fields = match object {
            "init_ok" => init_ok.as_object(),
            nested => init_ok.get(nested).and_then(serde_json::Value::as_object),
        };
        for name in fields.into_iter().flat_map(|map| map.keys()) {
            if !known.contains(&name.as_str()) {
                unknown.push(format!("{object}.{name}"));
            }
        }
    }
    unknown
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MergePolicy {
    Column,
    Row,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeletePolicy {
    DeleteWins,
    UpdateWins,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NaturalKeyPolicy {
    /// Two rows inserted apart with one natural key become one row.
    Merge,
    /// The later of two such rows is refused (at its write or its push).
    Refuse,
    /// Version 2: unique among a replica's own rows (its writes that would
    /// duplicate a key it holds are refused); rows with one key inserted
    /// on different replicas stay distinct rows, and the duplicates merging
    /// makes are counted, not failed.
    LocalOnly,
    /// Version 2: not kept unique anywhere; a natural key is a plain column
    /// and every duplicate is counted, not failed.
    Unenforced,
}

impl NaturalKeyPolicy {
    /// Whether a natural key names its row across places (so two rows with
    /// one key are one logical row, merged or refused).
    pub fn identifies_rows(self) -> bool {
        matches!(self, NaturalKeyPolicy::Merge | NaturalKeyPolicy::Refuse)
    }
}

/// A named point inside a sync where an engine can be made to stop.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CrashPoint {
    PushBeforeRemoteCommit,
    PushAfterRemoteCommit,
    PullBeforeLocalCommit,
}

impl CrashPoint {
    pub const ALL: [CrashPoint; 3] = [
        CrashPoint::PushBeforeRemoteCommit,
        CrashPoint::PushAfterRemoteCommit,
        CrashPoint::PullBeforeLocalCommit,
    ];
}

/// One operation of a write transaction.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Op {
    Insert {
        table: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<i64>,
        values: BTreeMap<String, Value>,
    },
    Update {
        table: String,
        id: i64,
        set: BTreeMap<String, Value>,
    },
    Delete {
        table: String,
        id: i64,
    },
}

/// A column value: NULL, an integer, a real, a string, a blob, or (in
/// inserts) the id that an earlier insert of the same write request minted.
/// The JSON forms are PROTOCOL.md's table of values: an integer has neither
/// fraction nor exponent (so it is tried first), a real always has one.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Value {
    Null,
    Int(i64),
    Real(Real),
    Text(String),
    Blob {
        blob: Blob,
    },
    Ref {
        #[serde(rename = "ref")]
        op: usize,
    },
}

/// A real value as it crosses the protocol. Equal when the bits are: a
/// real converges bit for bit (PROTOCOL.md).
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Real(pub f64);

impl PartialEq for Real {
    fn eq(&self, other: &Real) -> bool {
        self.0.to_bits() == other.0.to_bits()
    }
}

impl Eq for Real {}

/// A blob's bytes, written as standard base64 with padding.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Blob(pub Vec<u8>);

impl Serialize for Blob {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use base64::Engine as _;
        serializer.serialize_str(&base64::engine::general_purpose::STANDARD.encode(&self.0))
    }
}

impl<'de> Deserialize<'de> for Blob {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Blob, D::Error> {
        use base64::Engine as _;
        let text = String::deserialize(deserializer)?;
        base64::engine::general_purpose::STANDARD
            .decode(text.as_bytes())
            .map(Blob)
            .map_err(|e| serde::de::Error::custom(format!("a blob is standard base64 with padding: {e}")))
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncReport {
    pub pushed: u64,
    pub pulled: u64,
    pub conflicts: u64,
    /// Optionally, with a PostgreSQL remote: the round trips this process
    /// has made to the server since it started (each connection's startup,
    /// each simple query, each extended-protocol exchange up to its `Sync`).
    /// The harness counts them on the wire and fails a count that differs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote_round_trips: Option<u64>,
    /// Version 2, `ids: renumbered`: every id of this replica's cache the
    /// request changed, with every reference to it and every pending write
    /// that named it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub renumbered: Vec<Renumbering>,
}

/// A row of a cache that now has another id (version 2, `ids: renumbered`).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Renumbering {
    pub table: String,
    pub from: i64,
    pub to: i64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RefusalClass {
    IdOutsideReplica,
    IdTaken,
    IdDeleted,
    NaturalKeyTaken,
    ParentMissing,
    RowNotFound,
    KeyImmutable,
    Busy,
    Other,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SyncFailureClass {
    Busy,
    ClockDrift,
    /// The remote cannot be reached now (a server restarting, a dropped
    /// connection): retrying later may work.
    Unavailable,
    /// The server refused the engine's login (its role, password or
    /// database): retrying will not help until the configuration is fixed.
    LoginRefused,
    Other,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    UnknownType,
    Malformed,
    Unsupported,
    Internal,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip<T: Serialize + for<'de> Deserialize<'de> + PartialEq + std::fmt::Debug>(value: &T, text: &str) {
        assert_eq!(serde_json::to_string(value).unwrap(), text);
        assert_eq!(&serde_json::from_str::<T>(text).unwrap(), value);
    }

    #[test]
    fn values_take_protocol_md_forms_and_keep_every_bit() {
        round_trip(&Value::Int(1), "1");
        round_trip(&Value::Int(i64::MIN), "-9223372036854775808");
        round_trip(&Value::Real(Real(1.0)), "1.0");
        round_trip(&Value::Real(Real(-0.5)), "-0.5");
        round_trip(&Value::Blob { blob: Blob(vec![]) }, r#"{"blob":""}"#);
        round_trip(
            &Value::Blob {
                blob: Blob(vec![0, 0xff, 0x80]),
            },
            r#"{"blob":"AP+A"}"#,
        );
        round_trip(&Value::Ref { op: 2 }, r#"{"ref":2}"#);
        // The doubles a decimal parser most easily gets one bit wrong.
        for x in [
            5e-324,
            f64::MAX,
            f64::MIN_POSITIVE,
            0.1,
            f64::from_bits(0x000f_ffff_ffff_ffff),
            9007199254740993.0,
            1e23,
        ] {
            let text = serde_json::to_string(&Value::Real(Real(x))).unwrap();
            assert!(text.contains(['.', 'e']), "{text} would read back as an integer");
            match serde_json::from_str::<Value>(&text).unwrap() {
                Value::Real(Real(y)) => assert_eq!(y.to_bits(), x.to_bits(), "{text}"),
                other => panic!("{text} read back as {other:?}"),
            }
        }
        let bad = serde_json::from_str::<Value>(r#"{"blob": "not base64!"}"#);
        assert!(bad.is_err(), "{bad:?}");
    }

    #[test]
    fn write_request_as_protocol_md_shows_it() {
        let mut domain = BTreeMap::new();
        domain.insert("name".to_string(), Value::Text("a.example".into()));
        domain.insert("updated".to_string(), Value::Int(12));
        let mut record = BTreeMap::new();
        record.insert("domain_id".to_string(), Value::Ref { op: 0 });
        record.insert("value".to_string(), Value::Null);
        let request = Envelope {
            msg_id: 4,
            body: Request::Write {
                ops: vec![
                    Op::Insert {
                        table: "domains".into(),
                        id: None,
                        values: domain,
                    },
                    Op::Insert {
                        table: "dns_records".into(),
                        id: Some(7),
                        values: record,
                    },
                    Op::Delete {
                        table: "hosts".into(),
                        id: 3,
                    },
                ],
                abort: false,
            },
        };
        round_trip(
            &request,
            r#"{"msg_id":4,"type":"write","ops":[{"op":"insert","table":"domains","values":{"name":"a.example","updated":12}},{"op":"insert","table":"dns_records","id":7,"values":{"domain_id":{"ref":0},"value":null}},{"op":"delete","table":"hosts","id":3}]}"#,
        );
    }

    #[test]
    fn replies_carry_their_request_number() {
        round_trip(
            &Reply {
                in_reply_to: 5,
                body: Response::SyncOk(SyncReport {
                    pushed: 1,
                    pulled: 2,
                    conflicts: 0,
                    remote_round_trips: None,
                    renumbered: Vec::new(),
                }),
            },
            r#"{"in_reply_to":5,"type":"sync_ok","pushed":1,"pulled":2,"conflicts":0}"#,
        );
        round_trip(
            &Reply {
                in_reply_to: 6,
                body: Response::Refused {
                    class: RefusalClass::IdTaken,
                    message: "taken".into(),
                },
            },
            r#"{"in_reply_to":6,"type":"refused","class":"id_taken","message":"taken"}"#,
        );
        round_trip(
            &Envelope {
                msg_id: 1,
                body: Request::Push,
            },
            r#"{"msg_id":1,"type":"push"}"#,
        );
    }

    #[test]
    fn reads_and_busy_tries_as_protocol_md_shows_them() {
        round_trip(
            &Reply {
                in_reply_to: 9,
                body: Response::ReadOk {
                    rows: vec![ReadRow {
                        id: 1_099_511_627_776,
                        values: [
                            ("hostname".to_string(), Value::Text("web1.w1".into())),
                            ("ip".to_string(), Value::Null),
                        ]
                        .into(),
                    }],
                },
            },
            r#"{"in_reply_to":9,"type":"read_ok","rows":[{"id":1099511627776,"values":{"hostname":"web1.w1","ip":null}}]}"#,
        );
        round_trip(
            &Reply {
                in_reply_to: 7,
                body: Response::SyncFailed {
                    class: SyncFailureClass::Busy,
                    message: "remote busy after 3 attempts".into(),
                    attempts: Some(3),
                    waited_ms: Some(3),
                    remote_round_trips: Some(41),
                    renumbered: Vec::new(),
                },
            },
            r#"{"in_reply_to":7,"type":"sync_failed","class":"busy","message":"remote busy after 3 attempts","attempts":3,"waited_ms":3,"remote_round_trips":41}"#,
        );
        // Both are optional: an engine that says nothing of its tries.
        round_trip(
            &Reply {
                in_reply_to: 8,
                body: Response::SyncFailed {
                    class: SyncFailureClass::Busy,
                    message: "busy".into(),
                    attempts: None,
                    waited_ms: None,
                    remote_round_trips: None,
                    renumbered: Vec::new(),
                },
            },
            r#"{"in_reply_to":8,"type":"sync_failed","class":"busy","message":"busy"}"#,
        );
    }

    #[test]
    fn unknown_fields_are_ignored_and_defaults_fill_in() {
        let text = r#"{"type":"init_ok","in_reply_to":0,"protocol":1,"engine":"x","future":true,
            "capabilities":{"clock":false,"outside_writes":"not_captured"},
            "policies":{"merge":"row","delete":"delete_wins","natural_keys":"refuse","explicit_ids":false}}"#;
        let reply: Reply<Response> = serde_json::from_str(text).unwrap();
        let Response::InitOk(ok) = reply.body else {
            panic!("not init_ok: {reply:?}")
        };
        assert_eq!(ok.capabilities.crash_points, vec![]);
        assert_eq!(ok.capabilities.outside_insert_ids, OutsideInsertIds::Sqlite);
        assert_eq!(ok.capabilities.profile, None);
        assert_eq!(ok.policies.merge, MergePolicy::Row);
    }

    #[test]
    fn version_2_as_protocol_md_shows_it() {
        // A write the application rolls back, and its answer.
        round_trip(
            &Envelope {
                msg_id: 5,
                body: Request::Write {
                    ops: vec![Op::Delete {
                        table: "hosts".into(),
                        id: 1,
                    }],
                    abort: true,
                },
            },
            r#"{"msg_id":5,"type":"write","ops":[{"op":"delete","table":"hosts","id":1}],"abort":true}"#,
        );
        round_trip(
            &Reply {
                in_reply_to: 5,
                body: Response::WriteAborted { ids: Vec::new() },
            },
            r#"{"in_reply_to":5,"type":"write_aborted"}"#,
        );
        // A version 2 handshake answer with every new declaration.
        let text = r#"{"type":"init_ok","in_reply_to":0,"protocol":2,"engine":"wt-sync 0.1","capabilities":{"clock":false,"crash_points":[],"outside_writes":"not_captured","outside_insert_ids":"sqlite","aborts":true,"push_pull":"together","replicas_max":1},"policies":{"merge":"row","delete":"delete_wins","natural_keys":"refuse","explicit_ids":false,"push":"on_commit","pending_after_sync":"resolutions"}}"#;
        let reply: Reply<Response> = serde_json::from_str(text).expect("decode");
        let Response::InitOk(ok) = reply.body else {
            panic!("an init_ok")
        };
        assert_eq!(ok.protocol, 2);
        assert_eq!(ok.capabilities.push_pull, PushPull::Together);
        assert_eq!(ok.capabilities.replicas_max, Some(1));
        assert!(ok.capabilities.aborts);
        assert_eq!(ok.policies.push, PushPolicy::OnCommit);
        assert_eq!(ok.policies.pending_after_sync, PendingAfterSync::Resolutions);
        assert_eq!(ok.policies.ids, IdPolicy::Stable);
    }

    #[test]
    fn defaults_serialize_as_version_1_did() {
        // A version 2 type with every new field at its default writes what
        // version 1 wrote: a version 1 adapter sees nothing new.
        let caps = Capabilities {
            clock: true,
            crash_points: Vec::new(),
            outside_writes: OutsideWrites::Captured,
            outside_insert_ids: OutsideInsertIds::Engine,
            profile: None,
            reads: false,
            push_pull: PushPull::Separate,
            replicas_max: None,
            aborts: false,
            value_domain: Default::default(),
        };
        assert_eq!(
            serde_json::to_string(&caps).expect("encode"),
            r#"{"clock":true,"crash_points":[],"outside_writes":"captured","outside_insert_ids":"engine","profile":null,"reads":false}"#
        );
        let policies = Policies {
            merge: MergePolicy::Column,
            delete: DeletePolicy::DeleteWins,
            natural_keys: NaturalKeyPolicy::Merge,
            explicit_ids: true,
            push: PushPolicy::Explicit,
            pending_after_sync: PendingAfterSync::Zero,
            ids: IdPolicy::Stable,
            transactions: TransactionsPolicy::Unit,
            consistency: ConsistencyPolicy::Eventual,
            references: ReferencesPolicy::Enforced,
        };
        assert_eq!(
            serde_json::to_string(&policies).expect("encode"),
            r#"{"merge":"column","delete":"delete_wins","natural_keys":"merge","explicit_ids":true}"#
        );
    }

    #[test]
    fn declarations_of_a_newer_version_are_named() {
        let raw: serde_json::Value = serde_json::from_str(
            r#"{"type":"init_ok","in_reply_to":0,"protocol":2,"engine":"x","future":1,
                "capabilities":{"clock":false,"outside_writes":"captured","topologies":["peer"]},
                "policies":{"merge":"row","delete":"delete_wins","natural_keys":"merge","explicit_ids":false,"constraints":{}}}"#,
        )
        .expect("json");
        assert_eq!(
            unknown_declarations(&raw),
            vec!["init_ok.future", "capabilities.topologies", "policies.constraints"]
        );
    }

    #[test]
    fn the_drift_bound_goes_by_both_its_names() {
        // Sent under both names, so an adapter written for version 1 keeps
        // reading it; read under either.
        let limits = Limits {
            drift_ms_max: Some(5_000),
            ..Limits::default()
        };
        let text = serde_json::to_string(&limits).expect("encode");
        assert_eq!(text, r#"{"drift_ms_max":5000,"max_drift_ms":5000}"#);
        let old: Limits = serde_json::from_str(r#"{"max_drift_ms":15000}"#).expect("decode");
        assert_eq!(old.drift_ms_max, Some(15_000));
        let new: Limits = serde_json::from_str(r#"{"drift_ms_max":30000}"#).expect("decode");
        assert_eq!(new.drift_ms_max, Some(30_000));
        assert_eq!(serde_json::to_string(&Limits::default()).expect("encode"), "{}");
    }

    #[test]
    fn an_unknown_type_is_an_error_naming_it() {
        let err = serde_json::from_str::<Envelope<Request>>(r#"{"msg_id":1,"type":"teleport"}"#).unwrap_err();
        assert!(err.to_string().contains("teleport"), "{err}");
    }
}
