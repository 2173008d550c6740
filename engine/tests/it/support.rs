//! A small world of replicas over one remote file, with a controllable clock,
//! a remote that can fail at commit, and the check helpers every module uses
//! (so an API change touches one place).

#![allow(dead_code, reason = "each test module uses a different subset")]

use std::path::PathBuf;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use syncgate_engine::rusqlite::types::Value;
use syncgate_engine::rusqlite::Connection;
use syncgate_engine::{
    Change, ChangeKind, Clock, Config, Error, Remote, RemoteRow, RemoteWrites, Replica, Result, Schema, SqliteRemote,
    SyncReport, WriteRefusal,
};

/// A clock the test sets by hand. Sleeping does not pass time.
#[derive(Default)]
pub(crate) struct ManualClock(AtomicI64);

impl ManualClock {
    pub(crate) fn at(ms: i64) -> Arc<ManualClock> {
        Arc::new(ManualClock(AtomicI64::new(ms)))
    }
    pub(crate) fn set(&self, ms: i64) {
        self.0.store(ms, Ordering::SeqCst);
    }
    pub(crate) fn advance(&self, ms: i64) {
        self.0.fetch_add(ms, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
    fn sleep_ms(&self, _ms: u64) {}
}

pub(crate) const T0: i64 = 1_700_000_000_000;

/// One table's rows: `(id, values in declared order)`, by id.
pub(crate) type Rows = Vec<(i64, Vec<Value>)>;
/// Every synced table's rows, by table name.
pub(crate) type State = Vec<(String, Rows)>;

/// Never waits on a lock; retries busy twice (on the manual clock).
pub(crate) fn test_config() -> Config {
    Config {
        busy_timeout_ms: 0,
        busy_retries_max: 2,
        ..Config::default()
    }
}

pub(crate) struct World {
    pub dir: tempfile::TempDir,
    pub schema: Schema,
    pub config: Config,
}

impl World {
    pub(crate) fn new() -> World {
        World::with_schema(Schema::test_schema())
    }

    pub(crate) fn with_schema(schema: Schema) -> World {
        let dir = tempfile::tempdir().expect("temp dir");
        SqliteRemote::create(&dir.path().join("remote.db"), &schema, 0).expect("create remote");
        World {
            dir,
            schema,
            config: test_config(),
        }
    }

    pub(crate) fn remote_path(&self) -> PathBuf {
        self.dir.path().join("remote.db")
    }

    pub(crate) fn cache_path(&self, name: &str) -> PathBuf {
        self.dir.path().join(format!("{name}.db"))
    }

    pub(crate) fn remote(&self) -> SqliteRemote {
        SqliteRemote::open(&self.remote_path(), &self.schema, 0).expect("open remote")
    }

    /// Opens (or reopens) replica `name` with `clock`.
    pub(crate) fn replica(&self, name: &str, clock: Arc<ManualClock>) -> Replica<SqliteRemote> {
        self.open_with(name, clock, self.remote(), self.config.clone())
    }

    /// Opens (or reopens) replica `name` over a remote that can fail at commit.
    pub(crate) fn faulty(&self, name: &str, clock: Arc<ManualClock>) -> Replica<FaultyRemote> {
        self.open_with(name, clock, FaultyRemote::new(self.remote()), self.config.clone())
    }

    pub(crate) fn open_with<R: Remote>(
        &self,
        name: &str,
        clock: Arc<ManualClock>,
        remote: R,
        config: Config,
    ) -> Replica<R> {
        Replica::open(&self.cache_path(name), &self.schema, remote, clock, config).expect("open replica")
    }

    /// A plain connection to a file of this world, that never waits on a lock.
    pub(crate) fn raw(&self, path: &std::path::Path) -> Connection {
        let conn = Connection::open(path).expect("open raw connection");
        conn.busy_timeout(std::time::Duration::ZERO).expect("busy timeout");
        conn
    }

    /// The remote's rows of `table`, read with a plain connection.
    pub(crate) fn remote_rows(&self, table: &str) -> Rows {
        read_table(&self.raw(&self.remote_path()), &self.schema, table)
    }

    pub(crate) fn remote_state(&self) -> State {
        let conn = self.raw(&self.remote_path());
        self.schema
            .table_names()
            .map(|t| (t.to_string(), read_table(&conn, &self.schema, t)))
            .collect()
    }

    /// The remote's last change seq: it moves whenever the remote stores anything.
    pub(crate) fn remote_head(&self) -> i64 {
        self.raw(&self.remote_path())
            .query_row("SELECT seq FROM _sg_remote", [], |r| r.get(0))
            .expect("remote head")
    }
}

fn read_table(conn: &Connection, schema: &Schema, table: &str) -> Rows {
    let names = schema.column_names(table).expect("table");
    let cols = names.join("\", \"");
    let mut stmt = conn
        .prepare(&format!("SELECT \"id\", \"{cols}\" FROM \"{table}\" ORDER BY \"id\""))
        .expect("prepare");
    let n = names.len();
    stmt.query_map([], |r| {
        Ok((r.get(0)?, (1..=n).map(|i| r.get(i)).collect::<Result<Vec<Value>, _>>()?))
    })
    .expect("query")
    .collect::<Result<_, _>>()
    .expect("rows")
}

pub(crate) fn text(s: &str) -> Value {
    Value::Text(s.to_string())
}

pub(crate) fn int(i: i64) -> Value {
    Value::Integer(i)
}

pub(crate) fn rows<R: Remote>(r: &Replica<R>, table: &str) -> Rows {
    r.rows(table)
        .expect("rows")
        .into_iter()
        .map(|row| (row.id, row.values))
        .collect()
}

pub(crate) fn state<R: Remote>(r: &Replica<R>) -> State {
    r.schema().table_names().map(|t| (t.to_string(), rows(r, t))).collect()
}

pub(crate) fn ids<R: Remote>(r: &Replica<R>, table: &str) -> Vec<i64> {
    rows(r, table).into_iter().map(|(id, _)| id).collect()
}

pub(crate) fn ids_of(rows: &Rows) -> Vec<i64> {
    rows.iter().map(|(id, _)| *id).collect()
}

pub(crate) fn pending<R: Remote>(r: &Replica<R>) -> u64 {
    r.pending().expect("pending")
}

/// The pull cursor stored in the cache.
pub(crate) fn cursor<R: Remote>(r: &Replica<R>) -> i64 {
    r.connection()
        .query_row("SELECT cursor FROM _sg_meta", [], |row| row.get(0))
        .expect("cursor")
}

/// `(pushed, pulled, conflicts)`.
pub(crate) fn counts(report: SyncReport) -> (u64, u64, u64) {
    (report.pushed, report.pulled, report.conflicts)
}

pub(crate) fn sync<R: Remote>(r: &mut Replica<R>) -> (u64, u64, u64) {
    counts(r.sync().expect("sync"))
}

pub(crate) fn push<R: Remote>(r: &mut Replica<R>) -> (u64, u64, u64) {
    counts(r.push().expect("push"))
}

pub(crate) fn pull<R: Remote>(r: &mut Replica<R>) -> (u64, u64, u64) {
    counts(r.pull().expect("pull"))
}

pub(crate) fn host<R: Remote>(r: &mut Replica<R>, hostname: &str, ip: &str) -> i64 {
    r.insert("hosts", None, &[("hostname", text(hostname)), ("ip", text(ip))])
        .expect("insert host")
}

pub(crate) fn domain<R: Remote>(r: &mut Replica<R>, name: &str, registrar: &str) -> i64 {
    r.insert("domains", None, &[("name", text(name)), ("registrar", text(registrar))])
        .expect("insert domain")
}

pub(crate) fn record<R: Remote>(r: &mut Replica<R>, domain: i64, kind: &str, value: &str) -> i64 {
    r.insert(
        "dns_records",
        None,
        &[("domain_id", int(domain)), ("kind", text(kind)), ("value", text(value))],
    )
    .expect("insert dns record")
}

/// The refusal inside a write's error; anything else fails the test.
pub(crate) fn refusal<T: std::fmt::Debug>(outcome: Result<T>) -> WriteRefusal {
    match outcome {
        Err(Error::Write(refusal)) => refusal,
        other => panic!("expected a write refusal, got {other:?}"),
    }
}

/// Every replica holds exactly what the remote holds, and nothing is pending.
pub(crate) fn assert_converged<R: Remote>(w: &World, replicas: &[&Replica<R>]) {
    let remote = w.remote_state();
    for r in replicas {
        assert_eq!(state(*r), remote, "replica {} differs from the remote", r.replica_id());
        assert_eq!(pending(*r), 0, "replica {} still has pending writes", r.replica_id());
    }
}

/// Where [`FaultyRemote`] fails the next commit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CommitFault {
    /// Roll back, then report the connection lost: the remote has nothing.
    BeforeCommit,
    /// Really commit, then report the connection lost: the remote has it all.
    AfterCommit,
}

/// A [`SqliteRemote`] that fails its next `commit()` when told to.
pub(crate) struct FaultyRemote {
    pub inner: SqliteRemote,
    fault: Option<CommitFault>,
    /// Commits to let through before the fault.
    skip: u32,
}

impl FaultyRemote {
    pub(crate) fn new(inner: SqliteRemote) -> FaultyRemote {
        FaultyRemote {
            inner,
            fault: None,
            skip: 0,
        }
    }

    pub(crate) fn fail_next_commit(&mut self, fault: CommitFault) {
        self.fail_commit_after(0, fault);
    }

    /// Lets `skip` commits through, then fails the next one with `fault`.
    pub(crate) fn fail_commit_after(&mut self, skip: u32, fault: CommitFault) {
        self.fault = Some(fault);
        self.skip = skip;
    }
}

impl Remote for FaultyRemote {
    fn register_replica(&mut self) -> Result<u32> {
        self.inner.register_replica()
    }
    fn begin_write(&mut self) -> Result<()> {
        self.inner.begin_write()
    }
    fn begin_read(&mut self) -> Result<()> {
        self.inner.begin_read()
    }
    fn commit(&mut self) -> Result<()> {
        if self.fault.is_some() && self.skip > 0 {
            self.skip -= 1;
            return self.inner.commit();
        }
        match self.fault.take() {
            None => self.inner.commit(),
            Some(CommitFault::BeforeCommit) => {
                self.inner.rollback();
                Err(Error::RemoteUnavailable(
                    "injected: connection lost before COMMIT".into(),
                ))
            }
            Some(CommitFault::AfterCommit) => {
                self.inner.commit()?;
                Err(Error::RemoteUnavailable(
                    "injected: connection lost after COMMIT".into(),
                ))
            }
        }
    }
    fn rollback(&mut self) {
        self.inner.rollback();
    }
    fn acked(&mut self, replica: u32) -> Result<i64> {
        self.inner.acked(replica)
    }
    fn rows(&mut self, table: usize, ids: &[i64]) -> Result<Vec<(i64, RemoteRow)>> {
        self.inner.rows(table, ids)
    }
    fn live_with_keys(&mut self, table: usize, keys: &[Value]) -> Result<Vec<(Value, i64)>> {
        self.inner.live_with_keys(table, keys)
    }
    fn live_children(&mut self, table: usize, column: usize, parents: &[i64]) -> Result<Vec<(i64, i64)>> {
        self.inner.live_children(table, column, parents)
    }
    fn write(&mut self, writes: &RemoteWrites) -> Result<()> {
        self.inner.write(writes)
    }
    fn head(&mut self) -> Result<i64> {
        self.inner.head()
    }
    fn changes(&mut self, kind: ChangeKind, after: i64, upto: i64, limit: usize) -> Result<Vec<Change>> {
        self.inner.changes(kind, after, upto, limit)
    }
}
