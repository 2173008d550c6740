//! A replica: one local SQLite cache, synced with one remote.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rusqlite::types::Value;
use rusqlite::{Connection, OptionalExtension, Transaction, TransactionBehavior};

use crate::cache::{self, META_DDL};
use crate::error::{Error, Result, WriteRefusal};
use crate::mutant::Mutant;
use crate::remote::Remote;
use crate::schema::{quote, Schema};
use crate::stamp::{hlc_of_ms, Clock};

/// Bits of a row id that a replica numbers itself; the bits above are its
/// replica id, so no two replicas can mint the same id and ids still fit
/// SQLite's `INTEGER PRIMARY KEY`.
pub const ID_SPACE_BITS: u32 = 40;

/// The half-open range of ids only `replica` may mint.
pub fn id_space(replica: u32) -> (i64, i64) {
    let lo = i64::from(replica) << ID_SPACE_BITS;
    (lo, lo + (1_i64 << ID_SPACE_BITS))
}

/// Distinct statements the engine prepares per connection, with room to spare.
pub(crate) const STATEMENT_CACHE_CAPACITY: usize = 256;

/// Tuning and limits. Outcomes depend on `max_drift_ms` and `push_batch_max`
/// only; the rest is about waiting and memory.
#[derive(Clone, Debug)]
pub struct Config {
    /// Pulled stamps further ahead of this replica's clock are refused.
    pub max_drift_ms: i64,
    /// A push batch (one remote transaction) holds whole local transactions
    /// and stops growing once the next one would take it past this.
    pub push_batch_max: usize,
    /// Rows read from the remote per page during a pull.
    pub pull_page_rows: usize,
    /// How long SQLite itself waits on a lock before reporting busy.
    pub busy_timeout_ms: u64,
    /// Attempts after the first before a sync or write returns `Error::Busy`.
    pub busy_retries_max: u32,
    /// First backoff between attempts; doubles up to `backoff_max_ms`.
    pub backoff_base_ms: u64,
    pub backoff_max_ms: u64,
    /// `synchronous=FULL` on the cache: a committed write survives power loss.
    pub durable: bool,
    /// A deliberately planted bug, for the harness's mutant catalog.
    #[cfg(feature = "mutants")]
    pub mutant: Option<crate::mutant::Mutant>,
}

impl Config {
    /// Whether `mutant` is planted: always false without the mutants feature.
    #[inline]
    pub(crate) fn planted(&self, mutant: crate::mutant::Mutant) -> bool {
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

impl Default for Config {
    fn default() -> Self {
        Config {
            max_drift_ms: 60_000,
            push_batch_max: 10_000,
            pull_page_rows: 1_000,
            busy_timeout_ms: 5_000,
            busy_retries_max: 5,
            backoff_base_ms: 50,
            backoff_max_ms: 2_000,
            durable: true,
            #[cfg(feature = "mutants")]
            mutant: None,
        }
    }
}

/// What a sync did, exactly.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SyncReport {
    /// Outbox entries acknowledged (applied on the remote, then removed).
    pub pushed: u64,
    /// Remote rows received.
    pub pulled: u64,
    /// Writes that did not take effect as written (see SEMANTICS.md, rule S6).
    pub conflicts: u64,
}

impl std::ops::AddAssign for SyncReport {
    fn add_assign(&mut self, other: SyncReport) {
        self.pushed += other.pushed;
        self.pulled += other.pulled;
        self.conflicts += other.conflicts;
    }
}

/// What `status()` tells.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Status {
    pub replica: u32,
    /// Captured writes not yet acknowledged by the remote.
    pub pending: u64,
    /// The last completed sync step's report.
    pub last_report: Option<SyncReport>,
    /// The last failed sync step's error message.
    pub last_error: Option<String>,
    /// Busy retries since this replica was opened.
    pub busy_retries: u64,
}

/// One row as read back: its id and its values in declared column order.
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    pub id: i64,
    pub values: Vec<Value>,
}

/// A local cache synced with `remote`.
pub struct Replica<R: Remote> {
    pub(crate) conn: Connection,
    pub(crate) remote: R,
    /// Shared, so a write transaction can hold it while the replica is borrowed.
    pub(crate) schema: Arc<Schema>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) config: Config,
    pub(crate) replica_id: u32,
    last_report: Option<SyncReport>,
    last_error: Option<String>,
    busy_retries: u64,
    path: PathBuf,
}

impl<R: Remote> Replica<R> {
    /// Opens the cache at `path`, creating it (and claiming a replica id from
    /// the remote) when it is new. An existing cache keeps its replica id and
    /// its pending outbox.
    pub fn open(
        path: &Path,
        schema: &Schema,
        mut remote: R,
        clock: Arc<dyn Clock>,
        config: Config,
    ) -> Result<Replica<R>> {
        let wrap = |e| Error::Open {
            what: "cache",
            path: path.to_path_buf(),
            source: e,
        };
        let conn = Connection::open(path).map_err(wrap)?;
        conn.busy_timeout(std::time::Duration::from_millis(config.busy_timeout_ms))
            .map_err(wrap)?;
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE_CAPACITY);
        // Keep one plan per statement: otherwise SQLite re-plans the pending-
        // writes lookup on every pulled row (62% of pull time, measured).
        conn.set_db_config(rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true)
            .map_err(wrap)?;
        let mode: String = conn
            .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
            .map_err(wrap)?;
        if !mode.eq_ignore_ascii_case("wal") && !mode.eq_ignore_ascii_case("memory") {
            return Err(Error::NotInitialized {
                place: path.display().to_string(),
                what: "cache",
                detail: format!("it could not switch to WAL mode (got {mode}); is it on a network file system?"),
            });
        }
        conn.pragma_update(None, "synchronous", if config.durable { "FULL" } else { "NORMAL" })
            .map_err(wrap)?;
        conn.pragma_update(None, "foreign_keys", "ON").map_err(wrap)?;
        // Deletes made by REPLACE and by triggers fire the capture triggers too.
        conn.pragma_update(None, "recursive_triggers", "ON").map_err(wrap)?;
        let initialized: bool = conn
            .query_row(
                "SELECT count(*) > 0 FROM sqlite_master WHERE name = '_sg_meta'",
                [],
                |r| r.get(0),
            )
            .map_err(wrap)?;
        if initialized && config.planted(Mutant::MemoryOutbox) {
            // Mutant memory-outbox: what was pending lived in memory and is gone.
            conn.execute("DELETE FROM _sg_outbox", [])?;
        }
        if !initialized {
            for t in schema.tables() {
                let exists: bool = conn.query_row(
                    "SELECT count(*) > 0 FROM sqlite_master WHERE type = 'table' AND name = ?1",
                    [&t.name],
                    |r| r.get(0),
                )?;
                if exists {
                    let rows: i64 =
                        conn.query_row(&format!("SELECT count(*) FROM {}", quote(&t.name)), [], |r| r.get(0))?;
                    if rows > 0 {
                        return Err(Error::NotInitialized {
                            place: path.display().to_string(),
                            what: "cache",
                            detail: format!("table {:?} already holds {rows} rows that were never captured; start from an empty cache", t.name),
                        });
                    }
                }
            }
            let replica = remote.register_replica()?;
            let (lo, hi) = id_space(replica);
            let tx = conn.unchecked_transaction()?;
            tx.execute_batch(META_DDL)?;
            tx.execute(
                "INSERT INTO _sg_meta (k, replica, id_lo, id_hi, next_id, hlc, txn, applying, cursor) \
                 VALUES (1, ?1, ?2, ?3, ?2, 0, 0, 0, 0)",
                rusqlite::params![replica, lo, hi],
            )?;
            for stmt in schema.create_statements() {
                tx.execute_batch(&stmt)?;
            }
            tx.commit()?;
        }
        schema.verify(&conn, "cache")?;
        let triggers = cache::trigger_statements(schema, &config);
        let present: i64 = conn.query_row(
            "SELECT count(*) FROM sqlite_master WHERE type = 'trigger' AND name LIKE '\\_sg\\_%' ESCAPE '\\'",
            [],
            |r| r.get(0),
        )?;
        if present != triggers.len() as i64 {
            let tx = conn.unchecked_transaction()?;
            for stmt in &triggers {
                tx.execute_batch(stmt)?;
            }
            tx.commit()?;
        }
        let replica_id: u32 = conn.query_row("SELECT replica FROM _sg_meta", [], |r| r.get(0))?;
        Ok(Replica {
            conn,
            remote,
            schema: Arc::new(schema.clone()),
            clock,
            config,
            replica_id,
            last_report: None,
            last_error: None,
            busy_retries: 0,
            path: path.to_path_buf(),
        })
    }

    pub fn replica_id(&self) -> u32 {
        self.replica_id
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn schema(&self) -> &Schema {
        &self.schema
    }

    /// The raw connection, for the application's own SQL. Writes through it
    /// are captured like any other (inserts must carry an id from
    /// [`Replica::next_id`]).
    pub fn connection(&self) -> &Connection {
        &self.conn
    }

    /// The remote handle, e.g. for a harness that wraps it.
    pub fn remote(&self) -> &R {
        &self.remote
    }

    /// The remote handle, mutable.
    pub fn remote_mut(&mut self) -> &mut R {
        &mut self.remote
    }

    /// Mints the next id of this replica's space (and reserves it).
    pub fn next_id(&mut self) -> Result<i64> {
        self.retrying("cache", |r| {
            let tx = r.conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let id: i64 = tx.query_row(
                "UPDATE _sg_meta SET next_id = next_id + 1 RETURNING next_id - 1",
                [],
                |r| r.get(0),
            )?;
            tx.commit()?;
            Ok(id)
        })
    }

    /// Runs `f` as one local transaction: all of its writes are captured and
    /// pushed together, or none is made.
    pub fn write<T>(&mut self, mut f: impl FnMut(&mut Writer<'_>) -> Result<T>) -> Result<T> {
        let now = self.clock.now_ms();
        let schema = self.schema.clone();
        let autoincrement =
            self.config.planted(Mutant::AutoincrementIds) || self.config.planted(Mutant::InsertOrReplace);
        // Mutant wall-clock-lww: the stamp is the wall clock, whatever came before.
        let tick = if self.config.planted(Mutant::WallClockLww) {
            "UPDATE _sg_meta SET hlc = ?1, txn = txn + 1"
        } else {
            "UPDATE _sg_meta SET hlc = max(hlc, ?1), txn = txn + 1"
        };
        self.retrying("cache", |r| {
            let tx = r.conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            tx.execute(tick, [hlc_of_ms(now)])?;
            let mut writer = Writer {
                tx: &tx,
                schema: &schema,
                autoincrement,
                merged_id_reuse: r.config.planted(Mutant::MergedIdReuse),
            };
            let out = f(&mut writer)?;
            tx.commit()?;
            Ok(out)
        })
    }

    /// Inserts one row in its own transaction; `id: None` mints one.
    pub fn insert(&mut self, table: &str, id: Option<i64>, values: &[(&str, Value)]) -> Result<i64> {
        self.write(|w| w.insert(table, id, values))
    }

    pub fn update(&mut self, table: &str, id: i64, set: &[(&str, Value)]) -> Result<()> {
        self.write(|w| w.update(table, id, set))
    }

    pub fn delete(&mut self, table: &str, id: i64) -> Result<()> {
        self.write(|w| w.delete(table, id))
    }

    /// Every row of `table`, by id, with columns read by their declared names.
    pub fn rows(&self, table: &str) -> Result<Vec<Row>> {
        read_rows(&self.conn, &self.schema, table)
    }

    /// Captured writes not yet acknowledged by the remote.
    pub fn pending(&self) -> Result<u64> {
        let n: i64 = self
            .conn
            .query_row("SELECT count(*) FROM _sg_outbox", [], |r| r.get(0))?;
        Ok(n as u64)
    }

    /// Busy retries since this replica was opened.
    pub fn busy_retries(&self) -> u64 {
        self.busy_retries
    }

    pub fn status(&self) -> Result<Status> {
        Ok(Status {
            replica: self.replica_id,
            pending: self.pending()?,
            last_report: self.last_report,
            last_error: self.last_error.clone(),
            busy_retries: self.busy_retries,
        })
    }

    /// Push, then pull.
    pub fn sync(&mut self) -> Result<SyncReport> {
        let mut report = SyncReport::default();
        let outcome = self.push_inner(&mut report).and_then(|()| self.pull_inner(&mut report));
        self.record(outcome.map(|()| report))
    }

    pub fn push(&mut self) -> Result<SyncReport> {
        let mut report = SyncReport::default();
        let outcome = self.push_inner(&mut report);
        self.record(outcome.map(|()| report))
    }

    pub fn pull(&mut self) -> Result<SyncReport> {
        let mut report = SyncReport::default();
        let outcome = self.pull_inner(&mut report);
        self.record(outcome.map(|()| report))
    }

    fn record(&mut self, outcome: Result<SyncReport>) -> Result<SyncReport> {
        match &outcome {
            Ok(report) => {
                self.last_report = Some(*report);
                self.last_error = None;
            }
            Err(e) => self.last_error = Some(e.to_string()),
        }
        outcome
    }

    /// Runs `attempt` until it is not busy, at most `busy_retries_max` more
    /// times, with doubling backoff on the injected clock.
    pub(crate) fn retrying<T>(
        &mut self,
        what: &'static str,
        mut attempt: impl FnMut(&mut Self) -> Result<T>,
    ) -> Result<T> {
        let mut attempts = 0_u32;
        loop {
            attempts += 1;
            match attempt(self) {
                Err(e) if e.is_busy() => {
                    if attempts > self.config.busy_retries_max {
                        return Err(Error::Busy { what, attempts });
                    }
                    self.busy_retries += 1;
                    let backoff = self
                        .config
                        .backoff_base_ms
                        .saturating_mul(1 << (attempts - 1).min(20))
                        .min(self.config.backoff_max_ms);
                    self.clock.sleep_ms(backoff);
                }
                other => return other,
            }
        }
    }
}

/// Writes inside one local transaction. Each call checks what SQLite would
/// refuse and says so in a typed error; the triggers enforce the same rules
/// for writes that come through raw SQL.
pub struct Writer<'a> {
    tx: &'a Transaction<'a>,
    schema: &'a Schema,
    /// Mutants autoincrement-ids and insert-or-replace: local 1, 2, 3 ids.
    autoincrement: bool,
    /// Mutant merged-id-reuse: ids merged away by natural key are free again.
    merged_id_reuse: bool,
}

impl Writer<'_> {
    /// Inserts a row; `id: None` mints the next id of this replica's space.
    /// Columns not named are NULL. Returns the row's id.
    pub fn insert(&mut self, table: &str, id: Option<i64>, values: &[(&str, Value)]) -> Result<i64> {
        let t = self.schema.index(table)?;
        let def = self.schema.table(t);
        let mut row = vec![Value::Null; def.columns.len()];
        for (name, v) in values {
            row[column_index(self.schema, t, name)?] = v.clone();
        }
        let (lo, hi, next): (i64, i64, i64) = self
            .tx
            .prepare_cached("SELECT id_lo, id_hi, next_id FROM _sg_meta")?
            .query_row([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
        let next = if self.autoincrement {
            let sql = format!("SELECT coalesce(max(\"id\"), 0) + 1 FROM {}", quote(table));
            self.tx.query_row(&sql, [], |r| r.get(0))?
        } else {
            next
        };
        let id = match id {
            Some(id) if !self.autoincrement && (id < lo || id >= hi) => {
                return Err(WriteRefusal::IdOutsideReplica {
                    table: table.into(),
                    id,
                    lo,
                    hi,
                }
                .into());
            }
            Some(id) => id,
            None => next,
        };
        if row_exists(self.tx, table, id)? {
            return Err(WriteRefusal::IdTaken {
                table: table.into(),
                id,
            }
            .into());
        }
        // A row merged away by natural key is gone too: reusing its id would
        // send an insert that merges into the survivor and renames it (N4).
        if tombstoned(self.tx, table, id)? || (!self.merged_id_reuse && aliased(self.tx, table, id)?) {
            return Err(WriteRefusal::IdDeleted {
                table: table.into(),
                id,
            }
            .into());
        }
        if let Some(k) = def.natural_key {
            if let Some(holder) = natural_key_holder(self.tx, self.schema, t, &row[k], None)? {
                return Err(WriteRefusal::NaturalKeyTaken {
                    table: table.into(),
                    column: def.columns[k].name.clone(),
                    value: display(&row[k]),
                    holder,
                }
                .into());
            }
        }
        let all: Vec<usize> = (0..row.len()).collect();
        check_parents(self.tx, self.schema, t, &row, &all)?;
        let mut bind: Vec<&dyn rusqlite::ToSql> = vec![&id];
        bind.extend(row.iter().map(|v| v as &dyn rusqlite::ToSql));
        self.tx.prepare_cached(&def.sql.insert)?.execute(&bind[..])?;
        Ok(id)
    }

    /// Sets the named columns of row `id`.
    pub fn update(&mut self, table: &str, id: i64, set: &[(&str, Value)]) -> Result<()> {
        let t = self.schema.index(table)?;
        let def = self.schema.table(t);
        let Some(old) = read_row(self.tx, self.schema, t, id)? else {
            return Err(WriteRefusal::RowNotFound {
                table: table.into(),
                id,
            }
            .into());
        };
        let mut new = old.clone();
        for (name, v) in set {
            new[column_index(self.schema, t, name)?] = v.clone();
        }
        if let Some(k) = def.natural_key {
            if new[k] != old[k] {
                return Err(WriteRefusal::KeyImmutable {
                    table: table.into(),
                    column: def.columns[k].name.clone(),
                }
                .into());
            }
        }
        let changed: Vec<usize> = (0..new.len()).filter(|&c| new[c] != old[c]).collect();
        check_parents(self.tx, self.schema, t, &new, &changed)?;
        if changed.is_empty() {
            return Ok(());
        }
        let sets: Vec<String> = changed
            .iter()
            .enumerate()
            .map(|(i, &c)| format!("{} = ?{}", quote(&def.columns[c].name), i + 2))
            .collect();
        let sql = format!("UPDATE {} SET {} WHERE \"id\" = ?1", quote(table), sets.join(", "));
        let mut bind: Vec<&dyn rusqlite::ToSql> = vec![&id];
        bind.extend(changed.iter().map(|&c| &new[c] as &dyn rusqlite::ToSql));
        self.tx.prepare_cached(&sql)?.execute(&bind[..])?;
        Ok(())
    }

    /// Deletes row `id` and, by cascade, its children.
    pub fn delete(&mut self, table: &str, id: i64) -> Result<()> {
        self.schema.index(table)?;
        let n = self
            .tx
            .prepare_cached(&format!("DELETE FROM {} WHERE \"id\" = ?1", quote(table)))?
            .execute([id])?;
        if n == 0 {
            return Err(WriteRefusal::RowNotFound {
                table: table.into(),
                id,
            }
            .into());
        }
        Ok(())
    }

    /// The transaction, for reads (or raw writes, which are captured too).
    pub fn transaction(&self) -> &Transaction<'_> {
        self.tx
    }
}

fn column_index(schema: &Schema, t: usize, name: &str) -> Result<usize> {
    let def = schema.table(t);
    def.columns
        .iter()
        .position(|c| c.name == name)
        .ok_or_else(|| Error::UnknownColumn {
            table: def.name.clone(),
            column: name.to_string(),
        })
}

fn display(v: &Value) -> String {
    match v {
        Value::Null => "NULL".into(),
        Value::Integer(i) => i.to_string(),
        Value::Real(f) => f.to_string(),
        Value::Text(s) => format!("{s:?}"),
        Value::Blob(b) => format!("<{} bytes>", b.len()),
    }
}

fn check_parents(conn: &Connection, schema: &Schema, t: usize, row: &[Value], columns: &[usize]) -> Result<()> {
    let def = schema.table(t);
    for &c in columns {
        if let (Some(p), Value::Integer(parent)) = (def.parents[c], &row[c]) {
            if !row_exists(conn, &schema.table(p).name, *parent)? {
                return Err(WriteRefusal::ParentMissing {
                    table: def.name.clone(),
                    column: def.columns[c].name.clone(),
                    parent: *parent,
                }
                .into());
            }
        }
    }
    Ok(())
}

pub(crate) fn row_exists(conn: &Connection, table: &str, id: i64) -> Result<bool> {
    let sql = format!("SELECT 1 FROM {} WHERE \"id\" = ?1", quote(table));
    Ok(conn
        .prepare_cached(&sql)?
        .query_row([id], |_| Ok(()))
        .optional()?
        .is_some())
}

pub(crate) fn aliased(conn: &Connection, table: &str, id: i64) -> Result<bool> {
    let mut stmt = conn.prepare_cached("SELECT 1 FROM _sg_aliases WHERE tbl = ?1 AND id = ?2")?;
    Ok(stmt
        .query_row(rusqlite::params![table, id], |_| Ok(()))
        .optional()?
        .is_some())
}

pub(crate) fn tombstoned(conn: &Connection, table: &str, id: i64) -> Result<bool> {
    let mut stmt = conn.prepare_cached("SELECT 1 FROM _sg_tombstones WHERE tbl = ?1 AND id = ?2")?;
    Ok(stmt
        .query_row(rusqlite::params![table, id], |_| Ok(()))
        .optional()?
        .is_some())
}

/// The row other than `except` whose natural key is `key`.
pub(crate) fn natural_key_holder(
    conn: &Connection,
    schema: &Schema,
    t: usize,
    key: &Value,
    except: Option<i64>,
) -> Result<Option<i64>> {
    let def = schema.table(t);
    let Some(k) = def.natural_key else { return Ok(None) };
    if *key == Value::Null {
        return Ok(None);
    }
    let sql = format!(
        "SELECT \"id\" FROM {} WHERE {} = ?1 AND \"id\" IS NOT ?2 ORDER BY \"id\" LIMIT 1",
        quote(&def.name),
        quote(&def.columns[k].name)
    );
    Ok(conn
        .prepare_cached(&sql)?
        .query_row(rusqlite::params![key, except], |r| r.get(0))
        .optional()?)
}

pub(crate) fn read_row(conn: &Connection, schema: &Schema, t: usize, id: i64) -> Result<Option<Vec<Value>>> {
    let def = schema.table(t);
    let n = def.columns.len();
    Ok(conn
        .prepare_cached(&def.sql.select_values)?
        .query_row([id], |r| {
            (0..n)
                .map(|i| r.get::<_, Value>(i))
                .collect::<rusqlite::Result<Vec<_>>>()
        })
        .optional()?)
}

pub(crate) fn read_rows(conn: &Connection, schema: &Schema, table: &str) -> Result<Vec<Row>> {
    let t = schema.index(table)?;
    let def = schema.table(t);
    let cols: Vec<String> = def.columns.iter().map(|c| quote(&c.name)).collect();
    let sql = format!(
        "SELECT \"id\", {} FROM {} ORDER BY \"id\"",
        cols.join(", "),
        quote(&def.name)
    );
    let n = cols.len();
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query_map([], |r| {
        Ok(Row {
            id: r.get("id")?,
            values: (1..=n)
                .map(|i| r.get::<_, Value>(i))
                .collect::<rusqlite::Result<Vec<_>>>()?,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
}
