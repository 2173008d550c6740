//! The remote kept in a SQLite file, in rollback-journal mode.

use std::path::{Path, PathBuf};

use rusqlite::types::Value;
use rusqlite::{Connection, OpenFlags, OptionalExtension, TransactionBehavior};

use crate::config::STATEMENT_CACHE_CAPACITY;
use crate::error::{Error, Result};
use crate::ids::REPLICAS_MAX;
use crate::mutant::{Mutant, Planted};
use crate::remote::{Change, ChangeKind, Remote, RemoteRow, RemoteWrites};
use crate::schema::{quote, Schema};
use crate::stamp::Stamp;

/// A remote kept in a SQLite file, opened in rollback-journal mode so it works
/// on network file systems (WAL needs shared memory, which they lack).
pub struct SqliteRemote {
    conn: Connection,
    schema: Schema,
    path: PathBuf,
    /// Whether the file's sync tables and schema were checked.
    verified: bool,
    /// Whether the connection settings were applied.
    configured: bool,
    /// A deliberately planted bug, for the harness's mutant catalog.
    planted: Planted,
}

const REMOTE_DDL: &str = "
CREATE TABLE IF NOT EXISTS _sg_remote (
    k INTEGER PRIMARY KEY CHECK (k = 1),
    seq INTEGER NOT NULL,
    replicas INTEGER NOT NULL
);
INSERT OR IGNORE INTO _sg_remote (k, seq, replicas) VALUES (1, 0, 0);
CREATE TABLE IF NOT EXISTS _sg_replicas (replica INTEGER PRIMARY KEY, acked INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS _sg_rows (
    tbl TEXT NOT NULL,
    id INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    state INTEGER NOT NULL,
    alias_of INTEGER,
    stamps BLOB,
    PRIMARY KEY (tbl, id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS _sg_rows_seq ON _sg_rows (seq);
";

const STATE_LIVE: i64 = 0;
const STATE_DEAD: i64 = 1;
const STATE_ALIAS: i64 = 2;

impl SqliteRemote {
    /// Creates (or adopts) a remote file and its synced tables.
    pub fn create(path: &Path, schema: &Schema, busy_timeout_ms: u64) -> Result<SqliteRemote> {
        let conn = open(path, busy_timeout_ms, true)?;
        conn.pragma_update(None, "journal_mode", "DELETE")?;
        let tx = conn.unchecked_transaction()?;
        tx.execute_batch(REMOTE_DDL)?;
        for stmt in schema.create_statements() {
            tx.execute_batch(&stmt)?;
        }
        tx.commit()?;
        SqliteRemote::adopt(conn, path, schema)
    }

    /// Opens an existing remote; a missing file or a schema that disagrees
    /// with `schema` is an error, never a silent re-creation.
    pub fn open(path: &Path, schema: &Schema, busy_timeout_ms: u64) -> Result<SqliteRemote> {
        if !path.exists() {
            return Err(Error::RemoteMissing {
                path: path.to_path_buf(),
            });
        }
        let conn = open(path, busy_timeout_ms, false)?;
        SqliteRemote::adopt(conn, path, schema)
    }

    fn adopt(conn: Connection, path: &Path, schema: &Schema) -> Result<SqliteRemote> {
        let mut remote = SqliteRemote {
            conn,
            schema: schema.clone(),
            path: path.to_path_buf(),
            verified: false,
            configured: false,
            planted: Planted::default(),
        };
        match remote.configure().and_then(|()| remote.verify()) {
            // A remote locked by another connection is checked at the first
            // transaction instead, so a replica can restart while it is busy.
            Err(e) if e.is_busy() => Ok(remote),
            Err(e) => Err(e),
            Ok(()) => Ok(remote),
        }
    }

    /// Plants `mutant` in this remote handle (the harness's mutant catalog).
    #[cfg(feature = "mutants")]
    pub fn plant(&mut self, mutant: Mutant) {
        self.planted.plant(mutant);
    }

    /// Connection settings that read the file, applied at the first moment
    /// it is not locked (so opening never fails on a busy remote).
    fn configure(&mut self) -> Result<()> {
        if self.configured {
            return Ok(());
        }
        // Rollback journal: WAL does not work on network file systems.
        self.conn.pragma_update(None, "journal_mode", "DELETE")?;
        self.conn.pragma_update(None, "synchronous", "FULL")?;
        // Cascades on the remote are the engine's (each child gets a
        // tombstone); the harness checks integrity with foreign_key_check.
        self.conn.pragma_update(None, "foreign_keys", "OFF")?;
        self.configured = true;
        Ok(())
    }

    /// Checks that the file is a syncgate remote with the declared tables.
    fn verify(&mut self) -> Result<()> {
        if self.verified {
            return Ok(());
        }
        let has_meta: bool = self.conn.query_row(
            "SELECT count(*) = 3 FROM sqlite_master WHERE name IN ('_sg_remote', '_sg_replicas', '_sg_rows')",
            [],
            |r| r.get(0),
        )?;
        if !has_meta {
            return Err(Error::NotInitialized {
                place: self.path.display().to_string(),
                what: "remote",
                detail: "its sync tables are missing; create it with SqliteRemote::create".into(),
            });
        }
        self.schema.verify(&self.conn, "remote")?;
        self.verified = true;
        Ok(())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn table_name(&self, table: usize) -> &str {
        &self.schema.table(table).name
    }

    fn values(&self, table: usize, id: i64) -> Result<Option<Vec<Value>>> {
        let t = self.schema.table(table);
        let n = t.columns.len();
        let mut stmt = self.conn.prepare_cached(&t.sql.select_values)?;
        Ok(stmt
            .query_row([id], |r| {
                (0..n)
                    .map(|i| r.get::<_, Value>(i))
                    .collect::<rusqlite::Result<Vec<_>>>()
            })
            .optional()?)
    }

    fn decode(
        &self,
        table: usize,
        id: i64,
        state: i64,
        alias_of: Option<i64>,
        stamps: Option<Vec<u8>>,
    ) -> Result<RemoteRow> {
        let corrupt = |detail: String| Error::CorruptRemote {
            table: self.table_name(table).to_string(),
            id,
            detail,
        };
        match state {
            STATE_DEAD => Ok(RemoteRow::Dead),
            STATE_ALIAS => alias_of
                .map(RemoteRow::Alias)
                .ok_or_else(|| corrupt("alias without a survivor".into())),
            STATE_LIVE => {
                let n = self.schema.table(table).columns.len();
                let stamps = Stamp::decode_all(&stamps.unwrap_or_default(), n)
                    .ok_or_else(|| corrupt("stamps do not match the columns".into()))?;
                let values = self
                    .values(table, id)?
                    .ok_or_else(|| corrupt("live row without data".into()))?;
                Ok(RemoteRow::Live { values, stamps })
            }
            other => Err(corrupt(format!("unknown state {other}"))),
        }
    }

    /// One row of a write: the synced table's row (or its absence) and its
    /// `_sg_rows` record, at the row's seq.
    fn store(&mut self, change: &Change) -> Result<()> {
        let t = self.schema.table(change.table);
        let id = change.id;
        let (state, alias_of, stamps) = match &change.row {
            RemoteRow::Live { values, stamps } => {
                assert_eq!(
                    values.len(),
                    t.columns.len(),
                    "store {}/{id}: values do not match the columns",
                    t.name
                );
                let mut stmt = self.conn.prepare_cached(&t.sql.upsert)?;
                let mut bind: Vec<&dyn rusqlite::ToSql> = Vec::with_capacity(values.len() + 1);
                bind.push(&id);
                bind.extend(values.iter().map(|v| v as &dyn rusqlite::ToSql));
                stmt.execute(&bind[..])?;
                (STATE_LIVE, None, Some(Stamp::encode_all(stamps)))
            }
            RemoteRow::Dead => {
                self.conn.prepare_cached(&t.sql.delete)?.execute([id])?;
                (STATE_DEAD, None, None)
            }
            RemoteRow::Alias(survivor) => {
                self.conn.prepare_cached(&t.sql.delete)?.execute([id])?;
                (STATE_ALIAS, Some(*survivor), None)
            }
        };
        let mut stmt = self.conn.prepare_cached(
            "INSERT INTO _sg_rows (tbl, id, seq, state, alias_of, stamps) VALUES (?1, ?2, ?3, ?4, ?5, ?6) \
             ON CONFLICT (tbl, id) DO UPDATE SET seq = excluded.seq, state = excluded.state, \
             alias_of = excluded.alias_of, stamps = excluded.stamps",
        )?;
        stmt.execute(rusqlite::params![t.name, id, change.seq, state, alias_of, stamps])?;
        Ok(())
    }
}

fn open(path: &Path, busy_timeout_ms: u64, create: bool) -> Result<Connection> {
    let mut flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX | OpenFlags::SQLITE_OPEN_URI;
    if create {
        flags |= OpenFlags::SQLITE_OPEN_CREATE;
    }
    let wrap = |e| Error::Open {
        what: "remote",
        path: path.to_path_buf(),
        source: e,
    };
    let conn = Connection::open_with_flags(path, flags).map_err(wrap)?;
    conn.busy_timeout(std::time::Duration::from_millis(busy_timeout_ms))
        .map_err(wrap)?;
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE_CAPACITY);
    // One plan per statement, as on the cache (see Replica::open).
    conn.set_db_config(rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true)
        .map_err(wrap)?;
    Ok(conn)
}

impl Remote for SqliteRemote {
    fn register_replica(&mut self) -> Result<u32> {
        self.configure()?;
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let n: i64 = tx.query_row(
            "UPDATE _sg_remote SET replicas = replicas + 1 RETURNING replicas",
            [],
            |r| r.get(0),
        )?;
        let id = u32::try_from(n)
            .ok()
            .filter(|&n| n < REPLICAS_MAX)
            .ok_or(Error::ReplicaIdsExhausted(n as u32))?;
        tx.execute("INSERT INTO _sg_replicas (replica, acked) VALUES (?1, 0)", [n])?;
        tx.commit()?;
        Ok(id)
    }

    fn begin_write(&mut self) -> Result<()> {
        self.configure()?;
        self.conn.execute_batch("BEGIN IMMEDIATE")?;
        if let Err(e) = self.verify() {
            self.rollback();
            return Err(e);
        }
        Ok(())
    }

    fn begin_read(&mut self) -> Result<()> {
        self.configure()?;
        self.conn.execute_batch("BEGIN DEFERRED")?;
        // Take the read lock now, so the snapshot starts here.
        if let Err(e) = self
            .conn
            .query_row("SELECT seq FROM _sg_remote", [], |r| r.get::<_, i64>(0))
        {
            // Mutant busy-read-leaks-txn: the failed read's BEGIN stays open.
            if !self.planted.is(Mutant::BusyReadLeaksTxn) {
                self.rollback();
            }
            return Err(e.into());
        }
        if let Err(e) = self.verify() {
            self.rollback();
            return Err(e);
        }
        Ok(())
    }

    fn commit(&mut self) -> Result<()> {
        self.conn.execute_batch("COMMIT")?;
        Ok(())
    }

    fn rollback(&mut self) {
        if !self.conn.is_autocommit() {
            // A failed rollback leaves the transaction to the connection's
            // close, which rolls it back too.
            let _ = self.conn.execute_batch("ROLLBACK");
        }
    }

    fn acked(&mut self, replica: u32) -> Result<i64> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT acked FROM _sg_replicas WHERE replica = ?1")?;
        Ok(stmt.query_row([replica], |r| r.get(0)).optional()?.unwrap_or(0))
    }

    fn head(&mut self) -> Result<i64> {
        Ok(self.conn.query_row("SELECT seq FROM _sg_remote", [], |r| r.get(0))?)
    }

    fn rows(&mut self, table: usize, ids: &[i64]) -> Result<Vec<(i64, RemoteRow)>> {
        // In-process, one prepared lookup per id costs what a set-based read
        // would: there is no round trip to save.
        let mut out = Vec::with_capacity(ids.len());
        for &id in ids {
            let meta = {
                let mut stmt = self
                    .conn
                    .prepare_cached("SELECT state, alias_of, stamps FROM _sg_rows WHERE tbl = ?1 AND id = ?2")?;
                stmt.query_row(rusqlite::params![self.table_name(table), id], |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, Option<i64>>(1)?,
                        r.get::<_, Option<Vec<u8>>>(2)?,
                    ))
                })
                .optional()?
            };
            if let Some((state, alias_of, stamps)) = meta {
                out.push((id, self.decode(table, id, state, alias_of, stamps)?));
            }
        }
        Ok(out)
    }

    fn live_with_keys(&mut self, table: usize, keys: &[Value]) -> Result<Vec<(Value, i64)>> {
        let t = self.schema.table(table);
        let Some(k) = t.natural_key else { return Ok(Vec::new()) };
        let sql = format!(
            "SELECT \"id\" FROM {} WHERE {} = ?1",
            quote(&t.name),
            quote(&t.columns[k].name)
        );
        let mut stmt = self.conn.prepare_cached(&sql)?;
        let mut out = Vec::new();
        for key in keys.iter().filter(|k| **k != Value::Null) {
            if let Some(id) = stmt.query_row([key], |r| r.get(0)).optional()? {
                out.push((key.clone(), id));
            }
        }
        Ok(out)
    }

    fn live_children(&mut self, table: usize, column: usize, parents: &[i64]) -> Result<Vec<(i64, i64)>> {
        let t = self.schema.table(table);
        let sql = format!(
            "SELECT \"id\" FROM {} WHERE {} = ?1 ORDER BY \"id\"",
            quote(&t.name),
            quote(&t.columns[column].name)
        );
        let mut stmt = self.conn.prepare_cached(&sql)?;
        let mut parents = parents.to_vec();
        parents.sort_unstable();
        parents.dedup();
        let mut out = Vec::new();
        for parent in parents {
            let children = stmt.query_map([parent], |r| r.get::<_, i64>(0))?;
            for child in children {
                out.push((parent, child?));
            }
        }
        Ok(out)
    }

    fn write(&mut self, writes: &RemoteWrites) -> Result<()> {
        let head = self.head()?;
        assert!(
            writes.head >= head,
            "the head only moves forward: from {head} to {}",
            writes.head
        );
        // Rows that leave the synced tables go first, so a live row never
        // meets the natural key of a row that died in the same write.
        let (gone, live): (Vec<&Change>, Vec<&Change>) = writes
            .rows
            .iter()
            .partition(|c| !matches!(c.row, RemoteRow::Live { .. }));
        for change in gone.into_iter().chain(live) {
            assert!(
                change.seq > head && change.seq <= writes.head,
                "a stored row's seq {} is outside ({head}, {}]",
                change.seq,
                writes.head
            );
            self.store(change)?;
        }
        if writes.head != head {
            self.conn.execute("UPDATE _sg_remote SET seq = ?1", [writes.head])?;
        }
        if let Some((replica, seq)) = writes.acked {
            let mut stmt = self.conn.prepare_cached(
                "INSERT INTO _sg_replicas (replica, acked) VALUES (?1, ?2) \
                 ON CONFLICT (replica) DO UPDATE SET acked = excluded.acked",
            )?;
            stmt.execute(rusqlite::params![replica, seq])?;
        }
        Ok(())
    }

    fn changes(&mut self, kind: ChangeKind, after: i64, upto: i64, limit: usize) -> Result<Vec<Change>> {
        let sql = match kind {
            ChangeKind::Gone => "SELECT tbl, id, seq, state, alias_of, stamps FROM _sg_rows WHERE seq > ?1 AND seq <= ?2 AND state != 0 ORDER BY seq LIMIT ?3",
            ChangeKind::Live => "SELECT tbl, id, seq, state, alias_of, stamps FROM _sg_rows WHERE seq > ?1 AND seq <= ?2 AND state = 0 ORDER BY seq LIMIT ?3",
        };
        let raw = {
            let mut stmt = self.conn.prepare_cached(sql)?;
            let rows = stmt.query_map(rusqlite::params![after, upto, limit as i64], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, i64>(2)?,
                    r.get::<_, i64>(3)?,
                    r.get::<_, Option<i64>>(4)?,
                    r.get::<_, Option<Vec<u8>>>(5)?,
                ))
            })?;
            rows.collect::<rusqlite::Result<Vec<_>>>()?
        };
        let mut out = Vec::with_capacity(raw.len());
        for (tbl, id, seq, state, alias_of, stamps) in raw {
            let table = self.schema.index(&tbl).map_err(|_| Error::CorruptRemote {
                table: tbl.clone(),
                id,
                detail: "change for a table that is not in the declared schema".into(),
            })?;
            let row = self.decode(table, id, state, alias_of, stamps)?;
            out.push(Change { table, id, seq, row });
        }
        Ok(out)
    }
}
