//! The reference engine behind the engine protocol (`PROTOCOL.md`).
//!
//! [`ReferenceAdapter`] answers protocol requests with `syncgate-engine`. The
//! harness runs it in its own process for speed (`--engine reference`,
//! crashes returned as errors), and the binary `syncgate-reference-adapter`
//! runs it behind stdin/stdout (`--engine exec:...`, crashes exit the
//! process). Both go through [`ReferenceAdapter::handle`], so the protocol
//! path and the in-process path are the same code.

mod faults;
mod pause;
pub mod serve;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;

pub use faults::{CrashMode, FaultSwitch, FaultyRemote, CRASH_EXIT_CODE, INJECTED};
pub use pause::{HoldAt, PauseSwitch, Reached};
use syncgate_engine::rusqlite::types::Value as EValue;
use syncgate_engine::{
    id_space, Clock, ColumnDef, ColumnType, Config, Error, Mutant, PgRemote, Remote, Replica, RoundTrips, Schema,
    SqliteRemote, TableDef, WriteRefusal,
};
use syncgate_protocol::{
    Blob, Capabilities, ColumnKind, CrashPoint, DeletePolicy, ErrorCode, IdPolicy, Init, InitOk, MergePolicy,
    NaturalKeyPolicy, Op, OutsideInsertIds, OutsideWrites, PendingAfterSync, Policies, Profile, PushPolicy, PushPull,
    ReadRow, Real, RefusalClass, RemoteLocation, Request, Response, SyncFailureClass, SyncReport, Value, LATEST,
    VERSION,
};

/// How this adapter runs the reference engine.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// A planted bug from the engine's mutant catalog.
    pub mutant: Option<Mutant>,
    /// A correct engine that differs only in incidental choices: the remote
    /// registers one extra replica first, so every minted id differs from
    /// the reference spec's.
    pub shifted_ids: bool,
    /// A correct engine that differs only in incidental choices: sync
    /// reports always say 0 conflicts.
    pub no_conflict_counts: bool,
    /// Speaks protocol version 2 and takes application rollbacks (`write`
    /// with `abort`): the transaction's writes run through the engine's
    /// writer and are rolled back with everything they captured.
    pub aborts: bool,
    /// Speaks protocol version 2 as a write-through layer (`push:
    /// on_commit`): every committed write is pushed before the write
    /// answers; a push that fails leaves it pending for the next one. A
    /// correct engine whose pending counts are not the reference spec's (it
    /// then declares no profile).
    pub write_through: bool,
    /// Speaks protocol version 2 and declares `transactions: atomic`: what
    /// the reference spec keeps (a push sends whole local transactions, S2;
    /// a pull is one local transaction, P5), so the contract checks it.
    pub atomic: bool,
    /// Speaks protocol version 2 and declares `consistency: causal`: what
    /// the reference spec keeps (a pull brings everything the remote has,
    /// P1, and the remote has a write only after every write it follows).
    pub causal: bool,
}

impl Options {
    /// Whether the engine still implements the reference spec exactly.
    pub fn is_reference_profile(&self) -> bool {
        !self.shifted_ids && !self.no_conflict_counts && !self.write_through
    }

    /// The protocol version the engine answers: 2 when it declares
    /// anything of version 2.
    pub fn protocol(&self) -> u32 {
        if self.aborts || self.write_through || self.atomic || self.causal {
            LATEST
        } else {
            VERSION
        }
    }

    /// The name reports use.
    pub fn engine_name(&self) -> String {
        let mut name = match self.mutant {
            Some(m) => format!("mutant:{}", m.name()),
            None => "reference".to_string(),
        };
        if self.shifted_ids {
            name.push_str("+shifted-ids");
        }
        if self.no_conflict_counts {
            name.push_str("+no-conflict-counts");
        }
        if self.aborts {
            name.push_str("+aborts");
        }
        if self.write_through {
            name.push_str("+write-through");
        }
        if self.atomic {
            name.push_str("+atomic");
        }
        if self.causal {
            name.push_str("+causal");
        }
        name
    }
}

/// The engine configuration for checked runs: no waiting on locks (a lock in
/// a scenario is held until a later step, so waiting cannot help), two
/// retries, and outcome knobs equal to the model's defaults.
pub fn checked_config() -> Config {
    Config {
        drift_ms_max: 60_000,
        push_batch_max: 10_000,
        pull_page_rows: 64,
        busy_timeout_ms: 0,
        busy_retries_max: 2,
        backoff_base_ms: 1,
        backoff_max_ms: 4,
        durable: false,
        mutant: None,
    }
}

/// The engine knobs a case's limits set (the statement cache size is not a
/// knob of the engine yet, so that limit is ignored).
pub fn apply_limits(config: &mut Config, limits: &syncgate_protocol::Limits) {
    if let Some(v) = limits.pull_page_rows {
        config.pull_page_rows = usize::try_from(v).unwrap_or(usize::MAX).max(1);
    }
    if let Some(v) = limits.push_batch_max {
        config.push_batch_max = usize::try_from(v).unwrap_or(usize::MAX).max(1);
    }
    if let Some(v) = limits.busy_retries_max {
        config.busy_retries_max = v;
    }
    if let Some(v) = limits.backoff_base_ms {
        config.backoff_base_ms = v;
    }
    if let Some(v) = limits.backoff_max_ms {
        config.backoff_max_ms = v;
    }
    if let Some(v) = limits.drift_ms_max {
        config.drift_ms_max = v;
    }
}

/// A clock the harness sets; waiting between busy retries takes no time,
/// but is added up, so a busy failure can tell how long the engine waited.
#[derive(Debug, Default)]
pub struct SetClock {
    now_ms: AtomicI64,
    slept_ms: AtomicU64,
    /// A backoff is where a harness may hold the sync (`HoldAt::Backoff`).
    pause: PauseSwitch,
}

impl SetClock {
    fn set(&self, ms: i64) {
        self.now_ms.store(ms, Ordering::Relaxed);
    }

    /// Every wait asked for since the clock was made.
    pub fn slept_ms(&self) -> u64 {
        self.slept_ms.load(Ordering::Relaxed)
    }
}

impl Clock for SetClock {
    fn now_ms(&self) -> i64 {
        self.now_ms.load(Ordering::Relaxed)
    }
    fn sleep_ms(&self, ms: u64) {
        self.slept_ms.fetch_add(ms, Ordering::Relaxed);
        self.pause.at_backoff();
    }
}

/// What handling a request produced.
#[derive(Debug)]
pub enum Handled {
    Reply(Response),
    /// The request stopped at an armed crash point (only in
    /// [`CrashMode::Error`]; in [`CrashMode::Exit`] the process is gone).
    Crashed,
}

/// One replica of the reference engine, answering protocol requests.
pub struct ReferenceAdapter {
    replica: Replica<FaultyRemote>,
    schema: syncgate_protocol::Schema,
    clock: Arc<SetClock>,
    faults: FaultSwitch,
    /// Holds a sync between two remote transactions (in-process only).
    pause: PauseSwitch,
    options: Options,
    /// Round trips to a PostgreSQL remote, reported with every sync.
    round_trips: Option<RoundTrips>,
}

/// What the reference engine declares in its handshake.
pub fn init_ok(options: &Options) -> InitOk {
    InitOk {
        protocol: options.protocol(),
        engine: format!(
            "syncgate-engine {} ({})",
            env!("CARGO_PKG_VERSION"),
            options.engine_name()
        ),
        capabilities: Capabilities {
            clock: true,
            crash_points: CrashPoint::ALL.to_vec(),
            outside_writes: OutsideWrites::Captured,
            outside_insert_ids: OutsideInsertIds::Engine,
            profile: options.is_reference_profile().then_some(Profile::Reference),
            reads: true,
            push_pull: PushPull::Separate,
            replicas_max: None,
            aborts: options.aborts,
            value_domain: Default::default(),
        },
        renumbered: Vec::new(),
        policies: Policies {
            merge: MergePolicy::Column,
            delete: DeletePolicy::DeleteWins,
            natural_keys: NaturalKeyPolicy::Merge,
            explicit_ids: true,
            push: if options.write_through {
                PushPolicy::OnCommit
            } else {
                PushPolicy::Explicit
            },
            pending_after_sync: PendingAfterSync::Zero,
            ids: IdPolicy::Stable,
            transactions: if options.atomic {
                syncgate_protocol::TransactionsPolicy::Atomic
            } else {
                syncgate_protocol::TransactionsPolicy::Unit
            },
            consistency: if options.causal {
                syncgate_protocol::ConsistencyPolicy::Causal
            } else {
                syncgate_protocol::ConsistencyPolicy::Eventual
            },
            references: syncgate_protocol::ReferencesPolicy::Enforced,
        },
    }
}

/// The engine's schema for the protocol's declared tables.
pub fn engine_schema(schema: &syncgate_protocol::Schema) -> Result<Schema, String> {
    let tables = schema
        .tables
        .iter()
        .map(|t| TableDef {
            name: t.name.clone(),
            columns: t
                .columns
                .iter()
                .map(|c| ColumnDef {
                    name: c.name.clone(),
                    kind: match c.kind {
                        ColumnKind::Integer => ColumnType::Integer,
                        ColumnKind::Real => ColumnType::Real,
                        ColumnKind::Text => ColumnType::Text,
                        ColumnKind::Blob => ColumnType::Blob,
                    },
                    references: c.references.clone(),
                })
                .collect(),
            natural_key: t.natural_key.clone(),
        })
        .collect();
    let engine = Schema::new(tables).map_err(|e| e.to_string())?;
    // Both sides of the boundary: the engine names the tables and columns
    // the protocol declared, in their order.
    let declared: Vec<&str> = schema.tables.iter().map(|t| t.name.as_str()).collect();
    let named: Vec<&str> = engine.table_names().collect();
    if named != declared {
        return Err(format!(
            "the engine's schema names tables {named:?}, the harness declared {declared:?}"
        ));
    }
    for t in &schema.tables {
        let declared: Vec<&str> = t.columns.iter().map(|c| c.name.as_str()).collect();
        let named = engine.column_names(&t.name).map_err(|e| e.to_string())?;
        if named != declared {
            return Err(format!(
                "the engine's schema names columns {named:?} of {:?}, the harness declared {declared:?}",
                t.name
            ));
        }
    }
    Ok(engine)
}

/// Opens the remote a case names (creating it first for the first process
/// of a case), with `options.mutant` planted in it.
pub fn open_remote(
    location: &RemoteLocation,
    schema: &Schema,
    options: &Options,
    create: bool,
) -> Result<Box<dyn Remote + Send>, String> {
    open_counted_remote(location, schema, options, create).map(|(remote, _)| remote)
}

/// [`open_remote`], with the counter of its round trips to a PostgreSQL
/// server (none for a SQLite file).
pub fn open_counted_remote(
    location: &RemoteLocation,
    schema: &Schema,
    options: &Options,
    create: bool,
) -> Result<(Box<dyn Remote + Send>, Option<RoundTrips>), String> {
    let text = |e: Error| e.to_string();
    let mut round_trips = None;
    let mut remote: Box<dyn Remote + Send> = match location {
        RemoteLocation::Sqlite { path } => {
            let path = Path::new(path);
            let mut remote = if create {
                SqliteRemote::create(path, schema, 0).map_err(text)?
            } else {
                SqliteRemote::open(path, schema, 0).map_err(text)?
            };
            if let Some(m) = options.mutant {
                remote.plant(m);
            }
            Box::new(remote)
        }
        RemoteLocation::Postgres { url, schema: namespace } => {
            let mut remote = if create {
                PgRemote::create(url, namespace, schema, 0).map_err(text)?
            } else {
                PgRemote::open(url, namespace, schema, 0).map_err(text)?
            };
            if let Some(m) = options.mutant {
                remote.plant(m);
            }
            round_trips = Some(remote.round_trip_counter());
            Box::new(remote)
        }
    };
    if create && options.shifted_ids {
        // Another replica registered first: every replica id, and so every
        // minted id, differs from the reference spec's.
        remote.register_replica().map_err(text)?;
    }
    Ok((remote, round_trips))
}

impl ReferenceAdapter {
    /// Opens the replica an `init` names (creating the remote first when asked).
    pub fn open(init: &Init, options: &Options, mode: CrashMode) -> Result<ReferenceAdapter, String> {
        if init.protocol != VERSION {
            return Err(format!(
                "this adapter speaks protocol {VERSION}, the harness asked for {}",
                init.protocol
            ));
        }
        let schema = engine_schema(&init.schema)?;
        // Remote-side mutants live in the remote handle.
        let (remote, round_trips) = open_counted_remote(&init.remote, &schema, options, init.create_remote)?;
        let mut config = checked_config();
        apply_limits(&mut config, &init.limits);
        config.mutant = options.mutant;
        let faults = FaultSwitch::default();
        let pause = PauseSwitch::default();
        let clock = Arc::new(SetClock {
            pause: pause.clone(),
            ..SetClock::default()
        });
        clock.set(init.clock_ms);
        let remote = FaultyRemote::new(remote, faults.clone(), pause.clone(), mode);
        let replica =
            Replica::open(Path::new(&init.cache), &schema, remote, clock.clone(), config).map_err(|e| e.to_string())?;
        Ok(ReferenceAdapter {
            replica,
            schema: init.schema.clone(),
            clock,
            faults,
            pause,
            options: options.clone(),
            round_trips,
        })
    }

    /// The switch that holds this replica's next sync between two of its
    /// remote transactions, or at its backoff after a busy attempt (a
    /// harness running the adapter in its process).
    pub fn pause_switch(&self) -> PauseSwitch {
        self.pause.clone()
    }

    /// Answers one request after the handshake.
    pub fn handle(&mut self, request: &Request) -> Handled {
        let reply = match request {
            Request::Init(_) => error(ErrorCode::Malformed, "init may only be the first request"),
            Request::Write { ops, abort: false } if self.options.write_through => {
                let answer = self.write(ops);
                if let Response::WriteOk { .. } = answer {
                    // Pushed before answering; a failed push (the remote
                    // locked, say) leaves the write pending, as it must.
                    let _ = self.replica.push();
                }
                answer
            }
            Request::Write { ops, abort: false } => self.write(ops),
            Request::Write { ops, abort: true } if self.options.aborts => self.write_rolled_back(ops),
            Request::Write { abort: true, .. } => error(
                ErrorCode::Unsupported,
                "this engine declares no `aborts`: a write is never sent with `abort`",
            ),
            Request::Push | Request::Pull | Request::Sync => {
                let retries_before = self.replica.busy_retries();
                let slept_before = self.clock.slept_ms();
                let outcome = match request {
                    Request::Push => self.replica.push(),
                    Request::Pull => self.replica.pull(),
                    _ => self.replica.sync(),
                };
                // An armed crash lasts for one sync request, reached or not;
                // the switch, not the error's words, says whether it fired.
                if self.faults.disarm().is_some() {
                    return Handled::Crashed;
                }
                match outcome {
                    Ok(r) => Response::SyncOk(SyncReport {
                        pushed: r.pushed,
                        pulled: r.pulled,
                        conflicts: if self.options.no_conflict_counts {
                            0
                        } else {
                            r.conflicts
                        },
                        remote_round_trips: self.remote_round_trips(),
                        renumbered: Vec::new(),
                    }),
                    Err(e) => {
                        // Its tries, from the replica's own counter and the
                        // clock's record of the waits between them.
                        let tries = BusyTries {
                            attempts: self.replica.busy_retries() - retries_before + 1,
                            waited_ms: self.clock.slept_ms() - slept_before,
                        };
                        sync_failed(&e, tries, self.remote_round_trips())
                    }
                }
            }
            Request::Pending => match self.replica.pending() {
                Ok(pending) => Response::PendingOk { pending },
                Err(e) => error(ErrorCode::Internal, &e.to_string()),
            },
            Request::SetClock { ms } => {
                self.clock.set(*ms);
                Response::SetClockOk
            }
            Request::ArmCrash { point } => {
                self.faults.arm(*point);
                Response::ArmCrashOk
            }
            Request::MintId { table } => {
                if !self.schema.tables.iter().any(|t| &t.name == table) {
                    error(ErrorCode::Malformed, &format!("unknown table {table:?}"))
                } else {
                    match self.replica.next_id() {
                        Ok(id) => {
                            // Both sides of the boundary: a minted id lies in
                            // the space of the replica the engine says it is.
                            let (lo, hi) = id_space(self.replica.replica_id());
                            if (lo..hi).contains(&id) {
                                Response::MintIdOk { id }
                            } else {
                                error(
                                    ErrorCode::Internal,
                                    &format!(
                                        "minted id {id} lies outside replica {}'s id space [{lo}, {hi})",
                                        self.replica.replica_id()
                                    ),
                                )
                            }
                        }
                        Err(e) => refused(&e),
                    }
                }
            }
            Request::Read { table } => self.read(table),
            // Its outside writes are captured by triggers on any connection.
            Request::ExecSql { .. } => error(
                ErrorCode::Unsupported,
                "exec_sql: the reference declares outside_writes captured, not delegated",
            ),
        };
        Handled::Reply(reply)
    }

    fn remote_round_trips(&self) -> Option<u64> {
        self.round_trips.as_ref().map(RoundTrips::get)
    }

    fn write(&mut self, ops: &[Op]) -> Response {
        if let [op] = ops {
            return self.write_one(op);
        }
        match self.replica.write(|w| apply_ops(w, ops)) {
            Ok(ids) => Response::WriteOk {
                ids,
                renumbered: Vec::new(),
            },
            Err(e) => refused(&e),
        }
    }

    /// The ops run in one transaction through the engine's writer, as an
    /// application's would, and the application then rolls it back: the
    /// writes go, and with them everything the capture triggers made of
    /// them (they run in the same transaction).
    fn write_rolled_back(&mut self, ops: &[Op]) -> Response {
        let ran = std::cell::Cell::new(None);
        let outcome = self.replica.write(|w| {
            ran.set(Some(apply_ops(w, ops)?));
            // Any error rolls the transaction back; this one never leaves
            // the adapter (`ran` tells it from a real one).
            Err::<(), _>(Error::InvalidSchema("rolled back by the application".into()))
        });
        match (ran.take(), outcome) {
            (Some(ids), Err(_)) => Response::WriteAborted { ids },
            (None, Err(e)) => refused(&e),
            (_, Ok(())) => unreachable!("the write always rolls back"),
        }
    }

    /// Every row of `table` through the engine's read API, each column named
    /// as the engine's schema names it.
    fn read(&self, table: &str) -> Response {
        let names = match self.replica.schema().column_names(table) {
            Ok(names) => names,
            Err(e) => return error(ErrorCode::Malformed, &e.to_string()),
        };
        let rows = match self.replica.rows(table) {
            Ok(rows) => rows,
            Err(e) => return error(ErrorCode::Internal, &e.to_string()),
        };
        let rows = rows
            .into_iter()
            .map(|row| ReadRow {
                id: row.id,
                values: names
                    .iter()
                    .zip(row.values)
                    .map(|(name, v)| (name.to_string(), protocol_value(v)))
                    .collect(),
            })
            .collect();
        Response::ReadOk { rows }
    }

    /// A write of one op, through the engine's one-op API (`Replica::insert`,
    /// `update`, `delete`), as an application that writes a row at a time
    /// would: the gate checks that API too, not only `Replica::write`.
    fn write_one(&mut self, op: &Op) -> Response {
        let outcome = match op {
            Op::Insert { table, id, values } => named_values(values, &[]).and_then(|named| {
                let borrowed: Vec<(&str, EValue)> = named.iter().map(|(c, v)| (c.as_str(), v.clone())).collect();
                self.replica.insert(table, *id, &borrowed).map(|id| vec![id])
            }),
            Op::Update { table, id, set } => named_values(set, &[]).and_then(|named| {
                let borrowed: Vec<(&str, EValue)> = named.iter().map(|(c, v)| (c.as_str(), v.clone())).collect();
                self.replica.update(table, *id, &borrowed).map(|()| Vec::new())
            }),
            Op::Delete { table, id } => self.replica.delete(table, *id).map(|()| Vec::new()),
        };
        match outcome {
            Ok(ids) => Response::WriteOk {
                ids,
                renumbered: Vec::new(),
            },
            Err(e) => refused(&e),
        }
    }
}

/// Column values for the engine, with `{"ref": k}` replaced by the id op `k`
/// of the same request minted.
fn named_values(
    values: &BTreeMap<String, Value>,
    minted: &[Option<i64>],
) -> syncgate_engine::Result<Vec<(String, EValue)>> {
    values
        .iter()
        .map(|(column, v)| {
            let value = match v {
                Value::Null => EValue::Null,
                Value::Int(i) => EValue::Integer(*i),
                Value::Real(r) => EValue::Real(r.0),
                Value::Text(s) => EValue::Text(s.clone()),
                Value::Blob { blob } => EValue::Blob(blob.0.clone()),
                Value::Ref { op } => match minted.get(*op) {
                    Some(Some(id)) => EValue::Integer(*id),
                    _ => {
                        return Err(Error::InvalidSchema(format!(
                            "{column}: {{\"ref\": {op}}} does not name an earlier insert of this write"
                        )))
                    }
                },
            };
            Ok((column.clone(), value))
        })
        .collect()
}

/// A value the engine read, in the protocol's words.
fn protocol_value(v: EValue) -> Value {
    match v {
        EValue::Integer(i) => Value::Int(i),
        EValue::Text(s) => Value::Text(s),
        EValue::Real(r) => Value::Real(Real(r)),
        EValue::Blob(b) => Value::Blob { blob: Blob(b) },
        EValue::Null => Value::Null,
    }
}

fn error(code: ErrorCode, message: &str) -> Response {
    Response::Error {
        code,
        message: message.to_string(),
    }
}

/// A write's error in the protocol's words.
/// Applies a write request's ops in order inside one writer transaction;
/// the ids of its inserts.
fn apply_ops(w: &mut syncgate_engine::Writer<'_>, ops: &[Op]) -> syncgate_engine::Result<Vec<i64>> {
    let mut minted: Vec<Option<i64>> = Vec::with_capacity(ops.len());
    let mut ids = Vec::new();
    for op in ops {
        match op {
            Op::Insert { table, id, values } => {
                let named = named_values(values, &minted)?;
                let borrowed: Vec<(&str, EValue)> = named.iter().map(|(c, v)| (c.as_str(), v.clone())).collect();
                let new_id = w.insert(table, *id, &borrowed)?;
                minted.push(Some(new_id));
                ids.push(new_id);
            }
            Op::Update { table, id, set } => {
                let named = named_values(set, &minted)?;
                let borrowed: Vec<(&str, EValue)> = named.iter().map(|(c, v)| (c.as_str(), v.clone())).collect();
                w.update(table, *id, &borrowed)?;
                minted.push(None);
            }
            Op::Delete { table, id } => {
                w.delete(table, *id)?;
                minted.push(None);
            }
        }
    }
    Ok(ids)
}

fn refused(e: &Error) -> Response {
    let class = match e {
        Error::Write(r) => match r {
            WriteRefusal::IdOutsideReplica { .. } => RefusalClass::IdOutsideReplica,
            WriteRefusal::IdTaken { .. } => RefusalClass::IdTaken,
            WriteRefusal::IdDeleted { .. } => RefusalClass::IdDeleted,
            WriteRefusal::NaturalKeyTaken { .. } => RefusalClass::NaturalKeyTaken,
            WriteRefusal::ParentMissing { .. } => RefusalClass::ParentMissing,
            WriteRefusal::RowNotFound { .. } => RefusalClass::RowNotFound,
            WriteRefusal::KeyImmutable { .. } => RefusalClass::KeyImmutable,
            _ => RefusalClass::Other,
        },
        e if e.is_busy() => RefusalClass::Busy,
        _ => return error(ErrorCode::Internal, &e.to_string()),
    };
    Response::Refused {
        class,
        message: e.to_string(),
    }
}

/// How often a failed sync tried, and how long it waited between tries.
struct BusyTries {
    attempts: u64,
    waited_ms: u64,
}

/// A sync's error in the protocol's words; a busy one tells its tries.
fn sync_failed(e: &Error, tries: BusyTries, remote_round_trips: Option<u64>) -> Response {
    let class = match e {
        e if e.is_busy() => SyncFailureClass::Busy,
        Error::ClockDrift { .. } => SyncFailureClass::ClockDrift,
        Error::RemoteUnavailable(_) | Error::PgUnreachable { .. } => SyncFailureClass::Unavailable,
        Error::PgLoginRefused { .. } => SyncFailureClass::LoginRefused,
        _ => SyncFailureClass::Other,
    };
    let busy = class == SyncFailureClass::Busy;
    Response::SyncFailed {
        class,
        message: e.to_string(),
        attempts: busy.then_some(tries.attempts),
        waited_ms: busy.then_some(tries.waited_ms),
        remote_round_trips,
        renumbered: Vec::new(),
    }
}
