//! A replica: one local SQLite cache, synced with one remote. The public
//! API; the work is done by the modules named after what they handle.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rusqlite::types::Value;
use rusqlite::{Connection, TransactionBehavior};

use crate::cache::{self, Row};
use crate::config::{Config, STATEMENT_CACHE_CAPACITY};
use crate::error::{Error, Result};
use crate::format;
use crate::hlc;
use crate::ids;
use crate::meta;
use crate::mutant::Mutant;
use crate::outbox;
use crate::pull;
use crate::push;
use crate::remote::Remote;
use crate::report::{Status, SyncReport};
use crate::schema::Schema;
use crate::stamp::{hlc_of_ms, Clock};
use crate::writer::Writer;

/// A local cache synced with `remote`.
pub struct Replica<R: Remote> {
    conn: Connection,
    remote: R,
    /// Shared, so a write transaction can hold it while the replica is borrowed.
    schema: Arc<Schema>,
    clock: Arc<dyn Clock>,
    config: Config,
    replica_id: u32,
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
        let mut conn = open_connection(path, &config)?;
        let existed = format::open(&mut conn, schema, &config, path, || remote.register_replica())?;
        if existed && config.planted(Mutant::MemoryOutbox) {
            // Mutant memory-outbox: what was pending lived in memory and is gone.
            outbox::forget_pending(&conn)?;
        }
        let replica_id = meta::replica(&conn)?;
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
            let id = ids::next_free(&tx, &r.schema, r.replica_id)?;
            meta::set_next_id(&tx, id + 1)?;
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
        let wall_clock = self.config.planted(Mutant::WallClockLww);
        self.retrying("cache", |r| {
            let tx = r.conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            hlc::tick(&tx, hlc_of_ms(now), wall_clock)?;
            let merged_id_reuse = r.config.planted(Mutant::MergedIdReuse);
            let mut writer = Writer::new(&tx, &schema, r.replica_id, autoincrement, merged_id_reuse);
            let out = f(&mut writer)?;
            drop(writer);
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
        cache::read_rows(&self.conn, &self.schema, table)
    }

    /// Captured writes not yet acknowledged by the remote.
    pub fn pending(&self) -> Result<u64> {
        outbox::pending_count(&self.conn)
    }

    /// What the outbox says about every write this replica captured.
    pub fn ledger(&self) -> Result<outbox::Ledger> {
        outbox::read_ledger(&self.conn)
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
        let outcome = self
            .push_retrying(&mut report)
            .and_then(|()| self.pull_retrying(&mut report));
        self.record(outcome.map(|()| report))
    }

    pub fn push(&mut self) -> Result<SyncReport> {
        let mut report = SyncReport::default();
        let outcome = self.push_retrying(&mut report);
        self.record(outcome.map(|()| report))
    }

    pub fn pull(&mut self) -> Result<SyncReport> {
        let mut report = SyncReport::default();
        let outcome = self.pull_retrying(&mut report);
        self.record(outcome.map(|()| report))
    }

    fn push_retrying(&mut self, report: &mut SyncReport) -> Result<()> {
        self.retrying("push", |r| {
            push::push(&mut r.conn, &mut r.remote, &r.schema, &r.config, r.replica_id, report)
        })
    }

    fn pull_retrying(&mut self, report: &mut SyncReport) -> Result<()> {
        let now = self.clock.now_ms();
        let pulled = self.retrying("pull", |r| {
            pull::pull(&mut r.conn, &mut r.remote, &r.schema, &r.config, r.replica_id, now)
        })?;
        *report += SyncReport {
            pushed: 0,
            pulled: pulled.rows,
            conflicts: pulled.conflicts,
        };
        Ok(())
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
    fn retrying<T>(&mut self, what: &'static str, mut attempt: impl FnMut(&mut Self) -> Result<T>) -> Result<T> {
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

/// Opens the cache file with the connection settings every cache needs.
fn open_connection(path: &Path, config: &Config) -> Result<Connection> {
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
    Ok(conn)
}
