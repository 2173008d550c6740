//! The one seam every engine under test goes through.
//!
//! The reference engine, its mutants, and later other remotes or engines in
//! other languages implement [`Subject`]; the runner never calls an engine
//! any other way. Writes arrive in the model's vocabulary; the subject maps
//! them to its own API by the declared column names.

use std::cell::Cell;
use std::path::Path;
use std::rc::Rc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use syncgate_engine::rusqlite::types::Value as EValue;
use syncgate_engine::rusqlite::Connection;
use syncgate_engine::{
    Change, ChangeKind, Clock, Config, Error, Remote, RemoteRow, Replica, Schema, SqliteRemote, WriteRefusal,
};
use syncgate_model as model;

use crate::scenario::{CrashAt, SyncKind};

/// How a subject answered a write or a sync, in the model's terms, or an
/// error the model has no word for (always a failure).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer<T> {
    Ok(T),
    Refused(model::WriteRefusal),
    Failed(model::SyncFailure),
    Error(String),
}

/// A clock the runner moves; waiting between busy retries takes no time.
#[derive(Debug, Default)]
pub struct SimClock(AtomicI64);

impl SimClock {
    pub fn set(&self, ms: i64) {
        self.0.store(ms, Ordering::Relaxed);
    }
}

impl Clock for SimClock {
    fn now_ms(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
    fn sleep_ms(&self, _ms: u64) {}
}

/// A crash armed for the next sync of one replica.
#[derive(Clone, Default)]
pub struct FaultSwitch(Rc<Cell<Option<CrashAt>>>);

impl FaultSwitch {
    pub fn arm(&self, at: CrashAt) {
        self.0.set(Some(at));
    }
    pub fn disarm(&self) -> Option<CrashAt> {
        self.0.take()
    }
}

/// What a subject's durable sync state says about every captured write of a
/// replica (the write ledger).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ledger {
    /// Highest outbox seq ever handed out.
    pub captured_max: i64,
    /// Seqs still in the outbox.
    pub pending: Vec<i64>,
    /// Highest seq the remote has applied.
    pub remote_acked: i64,
}

/// An engine under test.
pub trait Subject: Sync {
    fn name(&self) -> String;
    /// Whether a case's starting files (the remote and each replica's cache,
    /// as `remote.db` and `replicaN.db`, freshly created) may be made once
    /// and copied for every case. Copying skips the schema setup that
    /// otherwise dominates short cases.
    fn files_are_copyable(&self) -> bool {
        false
    }
    fn create_remote(&self, remote: &Path) -> Result<(), String>;
    /// Opens a replica (new, or restarted from its files). Replicas are
    /// opened in index order first, so replica index `i` registers `i`-th.
    fn open_replica(
        &self,
        cache: &Path,
        remote: &Path,
        clock: Arc<SimClock>,
        faults: FaultSwitch,
    ) -> Result<Box<dyn SubjectReplica>, String>;
}

/// One open replica of a subject.
pub trait SubjectReplica {
    fn write(&mut self, writes: &[model::Write]) -> Answer<Vec<i64>>;
    fn sync(&mut self, kind: SyncKind) -> Answer<model::SyncReport>;
    fn tables(&self) -> Result<model::Tables, String>;
    fn pending(&self) -> Result<u64, String>;
    fn ledger(&mut self) -> Result<Ledger, String>;
    fn busy_retries(&self) -> u64;
}

/// The reference engine, optionally with one mutation.
pub struct ReferenceEngine {
    pub schema: Schema,
    pub config: Config,
}

impl ReferenceEngine {
    pub fn new() -> ReferenceEngine {
        ReferenceEngine {
            schema: Schema::test_schema(),
            config: harness_config(),
        }
    }
}

impl ReferenceEngine {
    /// The reference engine with one planted bug.
    pub fn mutant(mutant: syncgate_engine::Mutant) -> ReferenceEngine {
        let mut engine = ReferenceEngine::new();
        engine.config.mutant = Some(mutant);
        engine
    }
}

impl Default for ReferenceEngine {
    fn default() -> Self {
        ReferenceEngine::new()
    }
}

/// The engine configuration the checked runs use: no waiting on locks (a
/// lock in a scenario is held until a later step, so waiting cannot help),
/// two retries, and outcome knobs equal to the model's.
pub fn harness_config() -> Config {
    let m = model::Config::default();
    Config {
        max_drift_ms: m.max_drift_ms,
        push_batch_max: m.push_batch_max,
        pull_page_rows: 64,
        busy_timeout_ms: 0,
        busy_retries_max: 2,
        backoff_base_ms: 1,
        backoff_max_ms: 4,
        durable: false,
        mutant: None,
    }
}

impl Subject for ReferenceEngine {
    fn name(&self) -> String {
        match self.config.mutant {
            Some(m) => format!("mutant:{}", m.name()),
            None => "reference".into(),
        }
    }

    fn files_are_copyable(&self) -> bool {
        true
    }

    fn create_remote(&self, remote: &Path) -> Result<(), String> {
        SqliteRemote::create(remote, &self.schema, 0)
            .map(drop)
            .map_err(|e| e.to_string())
    }

    fn open_replica(
        &self,
        cache: &Path,
        remote: &Path,
        clock: Arc<SimClock>,
        faults: FaultSwitch,
    ) -> Result<Box<dyn SubjectReplica>, String> {
        let mut inner = SqliteRemote::open(remote, &self.schema, 0).map_err(|e| e.to_string())?;
        if let Some(mutant) = self.config.mutant {
            // Remote-side mutants live in the remote handle.
            inner.plant(mutant);
        }
        let remote = FaultyRemote {
            inner,
            faults,
            writing: false,
        };
        let replica =
            Replica::open(cache, &self.schema, remote, clock, self.config.clone()).map_err(|e| e.to_string())?;
        Ok(Box::new(ReferenceReplica {
            replica,
            schema: model::test_schema(),
        }))
    }
}

struct ReferenceReplica {
    replica: Replica<FaultyRemote>,
    schema: model::Schema,
}

/// Maps a model write to the engine's API, by declared column names.
pub fn engine_write(
    w: &mut syncgate_engine::Writer<'_>,
    schema: &model::Schema,
    write: &model::Write,
) -> Result<Option<i64>, Error> {
    match write {
        model::Write::Insert { table, id, values } => {
            let t = &schema.tables[*table];
            let named: Vec<(&str, EValue)> = t
                .columns
                .iter()
                .zip(values)
                .map(|(c, v)| (c.name.as_str(), to_engine(v)))
                .collect();
            w.insert(&t.name, *id, &named).map(Some)
        }
        model::Write::Update { table, id, set } => {
            let t = &schema.tables[*table];
            let named: Vec<(&str, EValue)> = set
                .iter()
                .map(|(c, v)| (t.columns[*c].name.as_str(), to_engine(v)))
                .collect();
            w.update(&t.name, *id, &named).map(|()| None)
        }
        model::Write::Delete { table, id } => w.delete(&schema.tables[*table].name, *id).map(|()| None),
    }
}

pub fn to_engine(v: &model::Value) -> EValue {
    match v {
        model::Value::Null => EValue::Null,
        model::Value::Int(i) => EValue::Integer(*i),
        model::Value::Text(s) => EValue::Text(s.clone()),
    }
}

pub fn to_model(v: &EValue) -> model::Value {
    match v {
        EValue::Null => model::Value::Null,
        EValue::Integer(i) => model::Value::Int(*i),
        EValue::Text(s) => model::Value::Text(s.clone()),
        EValue::Real(f) => model::Value::Text(format!("<real {f}>")),
        EValue::Blob(b) => model::Value::Text(format!("<blob {} bytes>", b.len())),
    }
}

/// The model's word for an engine error, if it has one.
pub fn classify(e: &Error) -> Answer<std::convert::Infallible> {
    match e {
        Error::Write(r) => Answer::Refused(match r {
            WriteRefusal::IdOutsideReplica { .. } => model::WriteRefusal::IdOutsideReplica,
            WriteRefusal::IdTaken { .. } => model::WriteRefusal::IdTaken,
            WriteRefusal::IdDeleted { .. } => model::WriteRefusal::IdDeleted,
            WriteRefusal::NaturalKeyTaken { .. } => model::WriteRefusal::NaturalKeyTaken,
            WriteRefusal::ParentMissing { .. } => model::WriteRefusal::ParentMissing,
            WriteRefusal::RowNotFound { .. } => model::WriteRefusal::RowNotFound,
            WriteRefusal::KeyImmutable { .. } => model::WriteRefusal::KeyImmutable,
            other => return Answer::Error(other.to_string()),
        }),
        Error::Busy { .. } => Answer::Failed(model::SyncFailure::Busy),
        Error::RemoteUnavailable(msg) if msg.starts_with(INJECTED) => Answer::Failed(model::SyncFailure::Crashed),
        Error::ClockDrift { .. } => Answer::Failed(model::SyncFailure::ClockDrift),
        other => Answer::Error(other.to_string()),
    }
}

fn answer<T>(e: &Error) -> Answer<T> {
    match classify(e) {
        Answer::Refused(r) => Answer::Refused(r),
        Answer::Failed(f) => Answer::Failed(f),
        Answer::Error(s) => Answer::Error(s),
        Answer::Ok(never) => match never {},
    }
}

impl SubjectReplica for ReferenceReplica {
    fn write(&mut self, writes: &[model::Write]) -> Answer<Vec<i64>> {
        let schema = &self.schema;
        let outcome = self.replica.write(|w| {
            let mut ids = Vec::new();
            for write in writes {
                if let Some(id) = engine_write(w, schema, write)? {
                    ids.push(id);
                }
            }
            Ok(ids)
        });
        match outcome {
            Ok(ids) => Answer::Ok(ids),
            Err(e) => answer(&e),
        }
    }

    fn sync(&mut self, kind: SyncKind) -> Answer<model::SyncReport> {
        let outcome = match kind {
            SyncKind::Push => self.replica.push(),
            SyncKind::Pull => self.replica.pull(),
            SyncKind::Full => self.replica.sync(),
        };
        match outcome {
            Ok(r) => Answer::Ok(model::SyncReport {
                pushed: r.pushed,
                pulled: r.pulled,
                conflicts: r.conflicts,
            }),
            Err(e) => answer(&e),
        }
    }

    fn tables(&self) -> Result<model::Tables, String> {
        read_tables(self.replica.connection())
    }

    fn pending(&self) -> Result<u64, String> {
        self.replica.pending().map_err(|e| e.to_string())
    }

    fn ledger(&mut self) -> Result<Ledger, String> {
        let replica = self.replica.replica_id();
        let remote_acked = self.replica.remote_mut().acked(replica).map_err(|e| e.to_string())?;
        read_ledger(self.replica.connection(), remote_acked)
    }

    fn busy_retries(&self) -> u64 {
        self.replica.busy_retries()
    }
}

/// Every synced table of the test schema in `conn`, read by column name.
/// All tables are read in one read transaction, so they form one snapshot.
pub fn read_tables(conn: &Connection) -> Result<model::Tables, String> {
    conn.execute_batch("BEGIN DEFERRED").map_err(|e| e.to_string())?;
    let tables = read_tables_in_transaction(conn);
    conn.execute_batch("COMMIT").map_err(|e| e.to_string())?;
    tables
}

fn read_tables_in_transaction(conn: &Connection) -> Result<model::Tables, String> {
    let schema = model::test_schema();
    let mut out = Vec::new();
    for t in &schema.tables {
        let cols: Vec<String> = t.columns.iter().map(|c| format!("\"{}\"", c.name)).collect();
        let sql = format!("SELECT \"id\", {} FROM \"{}\" ORDER BY \"id\"", cols.join(", "), t.name);
        let mut stmt = conn.prepare_cached(&sql).map_err(|e| e.to_string())?;
        let n = cols.len();
        let rows = stmt
            .query_map([], |r| {
                let id: i64 = r.get("id")?;
                let values = (1..=n)
                    .map(|i| r.get::<_, EValue>(i).map(|v| to_model(&v)))
                    .collect::<Result<Vec<_>, _>>()?;
                Ok((id, values))
            })
            .map_err(|e| e.to_string())?
            .collect::<Result<model::Rows, _>>()
            .map_err(|e| e.to_string())?;
        out.push(rows);
    }
    Ok(out)
}

/// The write ledger from the cache's outbox and the remote's applied seq.
pub fn read_ledger(cache: &Connection, remote_acked: i64) -> Result<Ledger, String> {
    let outbox = syncgate_engine::outbox::read_ledger(cache).map_err(|e| e.to_string())?;
    Ok(Ledger {
        captured_max: outbox.captured_max,
        pending: outbox.pending,
        remote_acked,
    })
}

/// Marks errors the harness injected, so they are told from real ones.
pub const INJECTED: &str = "injected crash";

/// Wraps the SQLite remote to crash at a named point of a sync.
pub struct FaultyRemote {
    inner: SqliteRemote,
    faults: FaultSwitch,
    writing: bool,
}

impl FaultyRemote {
    fn fire_if(&mut self, at: CrashAt) -> bool {
        if self.faults.0.get() == Some(at) {
            self.faults.0.set(None);
            true
        } else {
            false
        }
    }
}

impl Remote for FaultyRemote {
    fn register_replica(&mut self) -> syncgate_engine::Result<u32> {
        self.inner.register_replica()
    }
    fn begin_write(&mut self) -> syncgate_engine::Result<()> {
        self.writing = true;
        self.inner.begin_write()
    }
    fn begin_read(&mut self) -> syncgate_engine::Result<()> {
        self.writing = false;
        self.inner.begin_read()
    }
    fn commit(&mut self) -> syncgate_engine::Result<()> {
        if self.writing && self.fire_if(CrashAt::BeforeRemoteCommit) {
            self.inner.rollback();
            return Err(Error::RemoteUnavailable(format!("{INJECTED} before the remote commit")));
        }
        if self.writing && self.faults.0.get() == Some(CrashAt::AfterRemoteCommit) {
            self.inner.commit()?;
            self.faults.0.set(None);
            return Err(Error::RemoteUnavailable(format!("{INJECTED} after the remote commit")));
        }
        self.inner.commit()
    }
    fn rollback(&mut self) {
        self.inner.rollback()
    }
    fn acked(&mut self, replica: u32) -> syncgate_engine::Result<i64> {
        self.inner.acked(replica)
    }
    fn set_acked(&mut self, replica: u32, seq: i64) -> syncgate_engine::Result<()> {
        self.inner.set_acked(replica, seq)
    }
    fn row(&mut self, table: usize, id: i64) -> syncgate_engine::Result<Option<RemoteRow>> {
        self.inner.row(table, id)
    }
    fn put(&mut self, table: usize, id: i64, row: &RemoteRow) -> syncgate_engine::Result<()> {
        self.inner.put(table, id, row)
    }
    fn touch(&mut self, table: usize, id: i64) -> syncgate_engine::Result<()> {
        self.inner.touch(table, id)
    }
    fn live_with_key(&mut self, table: usize, key: &EValue) -> syncgate_engine::Result<Option<i64>> {
        self.inner.live_with_key(table, key)
    }
    fn live_children(&mut self, table: usize, column: usize, parent: i64) -> syncgate_engine::Result<Vec<i64>> {
        self.inner.live_children(table, column, parent)
    }
    fn head(&mut self) -> syncgate_engine::Result<i64> {
        self.inner.head()
    }
    fn changes(
        &mut self,
        kind: ChangeKind,
        after: i64,
        upto: i64,
        limit: usize,
    ) -> syncgate_engine::Result<Vec<Change>> {
        if kind == ChangeKind::Live && self.fire_if(CrashAt::BeforeLocalCommit) {
            return Err(Error::RemoteUnavailable(format!("{INJECTED} in the middle of a pull")));
        }
        self.inner.changes(kind, after, upto, limit)
    }
}
