//! The places the harness reads, locks and writes itself: every replica's
//! cache file and the remote (a file, or a schema on a PostgreSQL server:
//! `remote.rs`). The harness never asks an engine what its state is; it
//! opens the files and the server itself. Locks are connections held for a
//! named number of steps; outside writes are the application writing
//! around the engine's API.

mod error;
mod legacy_cache;
mod remote;
mod wire_server;
mod wire_tap;

use std::path::{Path, PathBuf};

pub use error::{pg_text, PlaceError};
pub use legacy_cache::{older_formats_hold, Downgrade, LegacyFormat};
pub use remote::{RemotePlace, RemoteTarget, UnknownRemote, PG_URL_VAR};
use rusqlite::types::Value as SValue;
use rusqlite::Connection;
use syncgate_model as model;
use syncgate_protocol::RemoteLocation;
use syncgate_protocol::{Op, Value};
use wire_tap::WireTap;
pub use wire_tap::{PauseAt, Paused};

use crate::scenario::LockKind;
use crate::schema::{quote, real_of_place};

/// What a reference-profile engine's durable sync state says about every
/// captured write of a replica (the write ledger).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ledger {
    /// Highest outbox seq ever handed out.
    pub captured_max: i64,
    /// Seqs still in the outbox.
    pub pending: Vec<i64>,
    /// Highest seq the remote has applied.
    pub remote_acked: i64,
    /// The pending delete each remembered victim belongs to (rule D2).
    pub victim_causes: Vec<i64>,
}

/// The column a newer application's migration adds to a remote table.
const DRIFT_COLUMN: &str = "sg_added_by_a_newer_version";

/// Why an outside write did not happen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OutsideRefusal {
    /// The cache is locked by another connection.
    Busy,
    /// SQLite refused it (a constraint, a trigger's RAISE): its message.
    Refused(String),
    /// The harness could not open the cache to write at all.
    Unwritable(PlaceError),
}

/// What went wrong in a replica's wire tap (its forwarding threads met an
/// error): the harness's own trouble, or a protocol it could not follow.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TapTrouble(pub String);

struct Lock {
    #[expect(dead_code, reason = "held for its open transaction, which is the lock")]
    conn: Connection,
    steps_left: usize,
}

/// One case's files and its remote.
pub struct Places {
    schema: model::Schema,
    dir: PathBuf,
    remote: RemotePlace,
    cache_conns: Vec<Option<Connection>>,
    cache_locks: Vec<Option<Lock>>,
    /// Each replica's wire tap to a PostgreSQL remote (`wire_tap.rs`),
    /// started with its first process.
    taps: Vec<Option<WireTap>>,
}

impl Places {
    pub fn new(schema: &model::Schema, dir: &Path, replicas: usize, remote: &RemoteTarget) -> Places {
        Places {
            schema: schema.clone(),
            dir: dir.to_path_buf(),
            remote: RemotePlace::new(remote, dir, schema),
            cache_conns: (0..replicas).map(|_| None).collect(),
            cache_locks: (0..replicas).map(|_| None).collect(),
            taps: (0..replicas).map(|_| None).collect(),
        }
    }

    /// Where a new process of replica `r` finds the remote: a PostgreSQL
    /// server through the replica's wire tap, whose round-trip count starts
    /// again for this process. A connection string the tap cannot stand in
    /// for (a Unix socket, several hosts) is given as it is, untapped.
    pub fn engine_remote(&mut self, r: usize) -> Result<RemoteLocation, PlaceError> {
        let location = self.remote.location();
        let RemoteLocation::Postgres { url, schema } = &location else {
            return Ok(location);
        };
        let Some(upstream) = wire_tap::upstream_of(url) else {
            return Ok(location);
        };
        if self.taps[r].is_none() {
            let tap = WireTap::start(upstream)
                .map_err(|e| PlaceError::Harness(format!("starting replica {r}'s wire tap: {e}")))?;
            self.taps[r] = Some(tap);
        }
        let Some(tap) = self.taps[r].as_ref() else {
            unreachable!("started above")
        };
        tap.restart();
        Ok(match wire_tap::tapped_url(url, tap.local()) {
            Some(tapped) => RemoteLocation::Postgres {
                url: tapped,
                schema: schema.clone(),
            },
            None => location,
        })
    }

    /// Round trips replica `r`'s current process made to a PostgreSQL
    /// remote, as its wire tap counted them (`None`: no tap), or what went
    /// wrong in the tap.
    pub fn remote_round_trips(&self, r: usize) -> Option<Result<u64, TapTrouble>> {
        let tap = self.taps[r].as_ref()?;
        Some(match tap.trouble() {
            Some(trouble) => Err(TapTrouble(trouble)),
            None => Ok(tap.round_trips()),
        })
    }

    /// Answers replica `r`'s new connections to a PostgreSQL remote with a
    /// FATAL error (SQLSTATE, message) until called again with `None`.
    pub fn refuse_remote_logins(&self, r: usize, refusal: Option<(&'static str, &'static str)>) {
        if let Some(tap) = self.taps[r].as_ref() {
            tap.refuse_logins(refusal.map(|(sqlstate, message)| (sqlstate, message.to_string())));
        }
    }

    /// Closes replica `r`'s open sessions with a PostgreSQL remote, as a
    /// server restart or a dropped connection would; how many were open
    /// (`None`: no tap, so nothing to cut).
    pub fn cut_remote_sessions(&self, r: usize) -> Option<usize> {
        self.taps[r].as_ref().map(WireTap::cut)
    }

    /// Arms a pause in replica `r`'s wire tap for the step about to run
    /// (`false`: no tap, a SQLite remote): its engine's first message after
    /// `at` is held, `notify` told, until [`Places::resume_remote_session`].
    pub fn arm_pause(&self, r: usize, at: PauseAt, notify: std::sync::mpsc::Sender<Paused>) -> bool {
        match self.taps[r].as_ref() {
            Some(tap) => {
                tap.arm_pause(at, notify);
                true
            }
            None => false,
        }
    }

    /// Lets replica `r`'s held message go on (and disarms its pause).
    pub fn resume_remote_session(&self, r: usize) {
        if let Some(tap) = self.taps[r].as_ref() {
            tap.resume();
        }
    }

    /// Whether replica `r` reaches its remote through a wire tap.
    pub fn tapped(&self, r: usize) -> bool {
        self.taps[r].is_some()
    }

    /// The locks a PostgreSQL server session holds that a writer could wait
    /// on, described (all but read locks on relations and its own virtual
    /// transaction id).
    pub fn session_write_locks(&mut self, pid: i32) -> Result<Vec<String>, PlaceError> {
        self.remote.session_write_locks(pid)
    }

    pub fn cache_path(&self, r: usize) -> PathBuf {
        self.dir.join(format!("replica{r}.db"))
    }

    fn cache(&mut self, r: usize) -> Result<&mut Connection, PlaceError> {
        if self.cache_conns[r].is_none() {
            let conn = Connection::open(self.cache_path(r))?;
            conn.pragma_update(None, "foreign_keys", "ON")?;
            // Deletes by REPLACE and by triggers fire triggers too, as an
            // application that follows the engine's README would set it.
            conn.pragma_update(None, "recursive_triggers", "ON")?;
            self.cache_conns[r] = Some(conn);
        }
        match self.cache_conns[r].as_mut() {
            Some(conn) => Ok(conn),
            None => unreachable!("opened above"),
        }
    }

    /// The engine declared the reference profile: its own tables (the
    /// ledger, the locks its spec names) exist and may be read and locked.
    pub fn declare_reference_profile(&mut self) {
        self.remote.declare_reference_profile();
    }

    /// Whether the remote can be read now (no exclusive lock held on it).
    pub fn remote_readable(&self) -> bool {
        self.remote.readable()
    }

    /// Every synced table of the remote, as one snapshot.
    pub fn read_remote(&mut self) -> Result<model::Tables, PlaceError> {
        self.remote.read_tables()
    }

    /// Every synced table of replica `r`'s cache, as one snapshot.
    pub fn read_cache(&mut self, r: usize) -> Result<model::Tables, PlaceError> {
        let schema = self.schema.clone();
        read_tables(self.cache(r)?, &schema)
    }

    /// The write ledger of a reference-profile replica: its outbox and the
    /// remote's record of what it applied.
    pub fn ledger(&mut self, r: usize) -> Result<Ledger, PlaceError> {
        let cache = self.cache(r)?;
        let replica: i64 = cache.query_row("SELECT replica FROM _sg_meta", [], |row| row.get(0))?;
        // The outbox's format is the engine's to know (outbox.rs).
        let outbox = syncgate_engine::outbox::read_ledger(cache).map_err(|e| PlaceError::Content(e.to_string()))?;
        let remote_acked = self.remote.acked(replica)?;
        Ok(Ledger {
            captured_max: outbox.captured_max,
            pending: outbox.pending,
            remote_acked,
            victim_causes: outbox.victim_causes,
        })
    }

    /// What a migration that rebuilds `table` of replica `r`'s cache does to
    /// its triggers (SQLite drops a table's triggers with the table): every
    /// trigger on it is dropped. Rows and columns stay as they were. Returns
    /// how many triggers there were.
    pub fn drop_table_triggers(&mut self, r: usize, table: &str) -> Result<usize, PlaceError> {
        let conn = self.cache(r)?;
        let names: Vec<String> = {
            let mut stmt = conn.prepare("SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = ?1")?;
            let rows = stmt.query_map([table], |row| row.get(0))?;
            rows.collect::<rusqlite::Result<_>>()?
        };
        for name in &names {
            conn.execute_batch(&format!("DROP TRIGGER {}", quote(name)))?;
        }
        Ok(names.len())
    }

    /// What an application update finds when the reference engine's
    /// previous version wrote replica `r`'s cache: the cache rewritten into
    /// the older format `to`, with the same meaning (`legacy_cache.rs`).
    pub fn downgrade_cache(&mut self, r: usize, to: LegacyFormat) -> Result<Downgrade, PlaceError> {
        let schema = self.schema.clone();
        legacy_cache::downgrade(self.cache(r)?, &schema, to)
    }

    /// A newer version of the engine wrote replica `r`'s cache: its format
    /// is `format` (`legacy_cache::mark_newer`). Returns the format it had,
    /// `None` if it is not a reference-format cache (left alone).
    pub fn mark_cache_newer(&mut self, r: usize, format: i64) -> Result<Option<i64>, PlaceError> {
        legacy_cache::mark_newer(self.cache(r)?, format)
    }

    /// The remote's `table` gains a column the case's schema does not declare,
    /// as a newer version of the application's migration would add it.
    pub fn add_remote_column(&mut self, table: &str) -> Result<(), PlaceError> {
        self.remote
            .alter_table(table, &format!("ADD COLUMN {} TEXT", quote(DRIFT_COLUMN)))
    }

    /// The column [`Places::add_remote_column`] added is gone again.
    pub fn drop_remote_column(&mut self, table: &str) -> Result<(), PlaceError> {
        self.remote
            .alter_table(table, &format!("DROP COLUMN {}", quote(DRIFT_COLUMN)))
    }

    /// The newer version is back: replica `r`'s cache gets `format` again.
    pub fn restore_cache_format(&mut self, r: usize, format: i64) -> Result<(), PlaceError> {
        legacy_cache::restore_format(self.cache(r)?, format)
    }

    /// Writes `op` straight into replica `r`'s cache over the harness's own
    /// connection, as another part of the application would. Returns the id
    /// an insert got.
    pub fn outside_write(&mut self, r: usize, op: &Op) -> Result<Option<i64>, OutsideRefusal> {
        let statement = outside_statement(&self.schema, op)
            .ok_or_else(|| OutsideRefusal::Refused(format!("not a synced table: {op:?}")))?;
        let conn = self.cache(r).map_err(OutsideRefusal::Unwritable)?;
        let bind = |v: &Value| match v {
            Value::Null | Value::Ref { .. } => SValue::Null,
            Value::Int(i) => SValue::Integer(*i),
            Value::Real(r) => SValue::Real(r.0),
            Value::Text(s) => SValue::Text(s.clone()),
            Value::Blob { blob } => SValue::Blob(blob.0.clone()),
        };
        conn.execute(
            &statement.sql,
            rusqlite::params_from_iter(statement.params.iter().map(bind)),
        )
        .map(|_| matches!(op, Op::Insert { .. }).then(|| conn.last_insert_rowid()))
        .map_err(|e| match e.sqlite_error_code() {
            Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked) => OutsideRefusal::Busy,
            _ => OutsideRefusal::Refused(e.to_string()),
        })
    }

    /// Another connection locks the remote for the next `hold` steps.
    pub fn lock_remote(&mut self, lock: LockKind, hold: usize) -> Result<(), PlaceError> {
        self.remote.lock(lock, hold)
    }

    pub fn remote_locked(&self) -> bool {
        self.remote.locked()
    }

    /// Ends the remote lock the harness holds, whatever its steps left.
    pub fn release_remote_lock(&mut self) {
        self.remote.release();
    }

    /// Another connection takes replica `r`'s cache write lock for `hold` steps.
    pub fn lock_cache(&mut self, r: usize, hold: usize) -> Result<(), PlaceError> {
        let conn = Connection::open(self.cache_path(r))?;
        conn.execute_batch("BEGIN IMMEDIATE")
            .map_err(|e| PlaceError::from(e).context(&format!("taking r{r}'s cache lock")))?;
        self.cache_locks[r] = Some(Lock { conn, steps_left: hold });
        Ok(())
    }

    /// Releases replica `r`'s cache lock now (dropping its connection rolls
    /// its transaction back).
    pub fn release_cache_lock(&mut self, r: usize) {
        self.cache_locks[r] = None;
    }

    pub fn cache_locked(&self, r: usize) -> bool {
        self.cache_locks[r].is_some()
    }

    /// Counts down every held lock; returns what was released: the remote's
    /// (if its time was up) and the replicas whose cache lock was.
    pub fn tick_locks(&mut self) -> (bool, Vec<usize>) {
        let remote_released = self.remote.tick();
        let mut released = Vec::new();
        for (r, slot) in self.cache_locks.iter_mut().enumerate() {
            if let Some(lock) = slot {
                lock.steps_left = lock.steps_left.saturating_sub(1);
                if lock.steps_left == 0 {
                    *slot = None;
                    released.push(r);
                }
            }
        }
        (remote_released, released)
    }

    /// Releases every lock (dropping a connection rolls its transaction back).
    pub fn release_locks(&mut self) {
        self.remote.release();
        for slot in &mut self.cache_locks {
            *slot = None;
        }
    }
}

/// Every synced table in `conn`, read by column name in one read transaction.
pub fn read_tables(conn: &Connection, schema: &model::Schema) -> Result<model::Tables, PlaceError> {
    // Cached statements: a case reads after nearly every step.
    conn.prepare_cached("BEGIN DEFERRED").and_then(|mut s| s.execute([]))?;
    let tables = read_tables_in_transaction(conn, schema);
    conn.prepare_cached("COMMIT").and_then(|mut s| s.execute([]))?;
    let tables = tables?;
    assert_eq!(tables.len(), schema.tables.len(), "one read per synced table");
    Ok(tables)
}

fn read_tables_in_transaction(conn: &Connection, schema: &model::Schema) -> rusqlite::Result<model::Tables> {
    let mut out = Vec::new();
    for t in &schema.tables {
        let cols: Vec<String> = t.columns.iter().map(|c| quote(&c.name)).collect();
        let sql = format!(
            "SELECT \"id\", {} FROM {} ORDER BY \"id\"",
            cols.join(", "),
            quote(&t.name)
        );
        let mut stmt = conn.prepare_cached(&sql)?;
        let n = cols.len();
        let rows = stmt
            .query_map([], |r| {
                let id: i64 = r.get("id")?;
                let values = (1..=n)
                    .map(|i| r.get::<_, SValue>(i).map(|v| to_model(&v, t.columns[i - 1].kind)))
                    .collect::<Result<Vec<_>, _>>()?;
                Ok((id, values))
            })?
            .collect::<Result<model::Rows, _>>()?;
        out.push(rows);
    }
    Ok(out)
}

/// A cell as the model sees it. A real column's integer is that real (an
/// engine may declare the column without REAL affinity); a real no write
/// can have sent (NaN, an infinity) reads as text that says so, and then
/// differs from every value the model holds.
pub fn to_model(v: &SValue, kind: model::ColumnKind) -> model::Value {
    match (v, kind) {
        (SValue::Null, _) => model::Value::Null,
        (SValue::Integer(i), model::ColumnKind::Real) => real_cell(*i as f64),
        (SValue::Integer(i), _) => model::Value::Int(*i),
        (SValue::Text(s), _) => model::Value::Text(s.clone()),
        (SValue::Real(f), _) => real_cell(*f),
        (SValue::Blob(b), _) => model::Value::Blob(b.clone()),
    }
}

fn real_cell(x: f64) -> model::Value {
    real_of_place(x).map_or_else(|| model::Value::Text(format!("<real {x}>")), model::Value::Real)
}

/// One write around the engine's API as one SQL statement: identifiers from
/// the schema, quoted; values bound by position (`?1`, ...).
#[derive(Clone, Debug, PartialEq)]
pub struct OutsideStatement {
    pub sql: String,
    pub params: Vec<Value>,
}

/// The statement another part of the application would run for `op`
/// (none for a table the schema does not declare).
pub fn outside_statement(schema: &model::Schema, op: &Op) -> Option<OutsideStatement> {
    let known = |table: &str| schema.tables.iter().any(|t| t.name == table);
    let plain = |v: &Value| match v {
        Value::Ref { .. } => Value::Null,
        other => other.clone(),
    };
    match op {
        Op::Insert { table, id, values } if known(table) => {
            let mut cols: Vec<String> = Vec::new();
            let mut params: Vec<Value> = Vec::new();
            if let Some(id) = id {
                cols.push(quote("id"));
                params.push(Value::Int(*id));
            }
            for (c, v) in values {
                cols.push(quote(c));
                params.push(plain(v));
            }
            let marks: Vec<String> = (1..=params.len()).map(|i| format!("?{i}")).collect();
            Some(OutsideStatement {
                sql: format!(
                    "INSERT INTO {} ({}) VALUES ({})",
                    quote(table),
                    cols.join(", "),
                    marks.join(", ")
                ),
                params,
            })
        }
        Op::Update { table, id, set } if known(table) => {
            let assignments: Vec<String> = set
                .keys()
                .enumerate()
                .map(|(i, c)| format!("{} = ?{}", quote(c), i + 2))
                .collect();
            let mut params = vec![Value::Int(*id)];
            params.extend(set.values().map(plain));
            Some(OutsideStatement {
                sql: format!(
                    "UPDATE {} SET {} WHERE \"id\" = ?1",
                    quote(table),
                    assignments.join(", ")
                ),
                params,
            })
        }
        Op::Delete { table, id } if known(table) => Some(OutsideStatement {
            sql: format!("DELETE FROM {} WHERE \"id\" = ?1", quote(table)),
            params: vec![Value::Int(*id)],
        }),
        _ => None,
    }
}
