//! The syncgate engine protocol, version 1: the messages between the harness
//! and an engine adapter, one JSON object per line (see `PROTOCOL.md` at the
//! root of the workspace, which is the normative text; these types follow it
//! field by field).
//!
//! A Rust adapter reads [`Envelope<Request>`] lines from stdin and writes
//! [`Reply<Response>`] lines to stdout. Unknown fields are ignored on both
//! sides; an unknown request type is answered with [`Response::Error`].

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The protocol version this crate speaks.
pub const VERSION: u32 = 1;

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
    /// One local transaction.
    Write {
        ops: Vec<Op>,
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
            Response::Refused { .. } => "refused",
            Response::SyncOk(_) => "sync_ok",
            Response::SyncFailed { .. } => "sync_failed",
            Response::PendingOk { .. } => "pending_ok",
            Response::SetClockOk => "set_clock_ok",
            Response::ArmCrashOk => "arm_crash_ok",
            Response::MintIdOk { .. } => "mint_id_ok",
            Response::ReadOk { .. } => "read_ok",
            Response::Error { .. } => "error",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Init {
    pub protocol: u32,
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
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ColumnKind {
    Integer,
    Text,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InitOk {
    pub protocol: u32,
    pub engine: String,
    pub capabilities: Capabilities,
    pub policies: Policies,
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
    Merge,
    Refuse,
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

/// A column value: NULL, an integer, a string, or (in inserts) the id that
/// an earlier insert of the same write request minted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Value {
    Null,
    Int(i64),
    Text(String),
    Ref {
        #[serde(rename = "ref")]
        op: usize,
    },
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
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
