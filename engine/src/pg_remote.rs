//! The remote on a PostgreSQL server, in a schema (namespace) of its own.
//!
//! Commit order is change-seq order (SEMANTICS.md, rule P6): a write
//! transaction takes the remote's writer lock (a transaction-scoped
//! advisory lock keyed by the namespace, [`PgRemote::writer_lock_key`])
//! before it reads the head, so pushers run one at a time and each hands
//! out seqs above every committed one; readers never wait for it. A pull
//! reads in one `REPEATABLE READ` snapshot, which therefore holds every
//! change up to the head it reads and nothing above it: a cursor moved to
//! that head can never pass a change committed later. The head itself is
//! stored at commit, so a session holding `_sg_remote`'s row (`FOR SHARE`)
//! stops a push at its commit, as a SQLite reader does.

use std::collections::HashMap;

use postgres::types::ToSql;
use rusqlite::types::Value;

use crate::error::{Error, Result};
use crate::ids::REPLICAS_MAX;
use crate::mutant::{Mutant, Planted};
use crate::pg_session::{PgSession, RoundTrips};
use crate::pg_sql::{column_array, read_value, read_values, PgSql, STATE_ALIAS, STATE_DEAD, STATE_LIVE};
use crate::remote::{Change, ChangeKind, Remote, RemoteRow, RemoteWrites};
use crate::schema::{check_identifier, quote, Schema};
use crate::stamp::Stamp;

/// How long creating a remote waits on another session's catalog locks.
const DDL_LOCK_TIMEOUT_S: u32 = 60;

/// A remote kept in a PostgreSQL database, in the schema `namespace`.
pub struct PgRemote {
    session: PgSession,
    namespace: String,
    schema: Schema,
    sql: PgSql,
    /// The head read when the open transaction began, moved by `write`.
    head: Option<i64>,
    /// `write` moved the head: `commit` stores it.
    head_moved: bool,
    verified: bool,
    serialize_writers: bool,
    planted: Planted,
}

impl PgRemote {
    /// Creates (or adopts) the remote's namespace, its sync tables and the
    /// synced tables, in one transaction.
    pub fn create(url: &str, namespace: &str, schema: &Schema, lock_timeout_ms: u64) -> Result<PgRemote> {
        let mut remote = PgRemote::connect(url, namespace, schema, lock_timeout_ms)?;
        // Creating a remote is a one-time setup, not a sync: it waits for
        // other sessions' DDL on the catalogs (a concurrent CREATE or DROP
        // SCHEMA) instead of failing at the sync's lock timeout, which the
        // gate found under load.
        let ddl = format!(
            "BEGIN; SET LOCAL lock_timeout = '{DDL_LOCK_TIMEOUT_S}s'; {} COMMIT;",
            remote.sql.ddl
        );
        if let Err(e) = remote.session.batch(&ddl) {
            remote.session.batch("ROLLBACK").ok();
            return Err(e);
        }
        remote.verify()?;
        Ok(remote)
    }

    /// Opens an existing remote; a missing namespace or tables that disagree
    /// with `schema` are an error, never a silent re-creation. A remote
    /// locked by another session is checked at its first transaction.
    pub fn open(url: &str, namespace: &str, schema: &Schema, lock_timeout_ms: u64) -> Result<PgRemote> {
        let mut remote = PgRemote::connect(url, namespace, schema, lock_timeout_ms)?;
        match remote.verify() {
            Err(e) if e.is_busy() => Ok(remote),
            Err(e) => Err(e),
            Ok(()) => Ok(remote),
        }
    }

    fn connect(url: &str, namespace: &str, schema: &Schema, lock_timeout_ms: u64) -> Result<PgRemote> {
        check_identifier(namespace)?;
        Ok(PgRemote {
            session: PgSession::connect(url, lock_timeout_ms)?,
            namespace: namespace.to_string(),
            schema: schema.clone(),
            sql: PgSql::new(namespace, schema),
            head: None,
            head_moved: false,
            verified: false,
            serialize_writers: true,
            planted: Planted::default(),
        })
    }

    /// The key of the transaction-scoped advisory lock every write
    /// transaction on the remote in `namespace` holds (FNV-1a of the name):
    /// whoever holds it, in a transaction or a session, keeps pushers out.
    pub fn writer_lock_key(namespace: &str) -> i64 {
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for byte in "syncgate-writer:".bytes().chain(namespace.bytes()) {
            hash = (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
        }
        hash as i64
    }

    /// This remote's round trips to the server (requests it answered:
    /// connections, statements prepared or executed, simple queries), as a
    /// handle that outlives borrows of the remote: the reference adapter
    /// reports the count with every sync, benches and tests read it.
    pub fn round_trip_counter(&self) -> RoundTrips {
        self.session.round_trips().clone()
    }

    /// Drops the remote's namespace and everything in it.
    pub fn drop_namespace(url: &str, namespace: &str) -> Result<()> {
        check_identifier(namespace)?;
        PgSession::connect(url, 0)?.batch(&format!("DROP SCHEMA IF EXISTS {} CASCADE", quote(namespace)))
    }

    /// Plants `mutant` in this remote handle (the harness's mutant catalog).
    #[cfg(feature = "mutants")]
    pub fn plant(&mut self, mutant: Mutant) {
        self.planted.plant(mutant);
    }

    /// Planted bug for the cursor-safety test alone: write transactions no
    /// longer lock out each other and take their seqs as a database
    /// sequence would hand them out (visible to everyone at once, committed
    /// later), so change seqs commit out of order and a puller can move its
    /// cursor past a change not yet committed.
    #[cfg(feature = "mutants")]
    pub fn unserialize_writers(&mut self) {
        self.serialize_writers = false;
    }

    /// The planted bug's seqs: a block taken in a transaction of its own,
    /// as `nextval` would.
    fn reserve_seqs(&mut self) -> Result<()> {
        const BLOCK: i64 = 1 << 20;
        let mut other = self.session.another()?;
        let sql = format!(
            "UPDATE {}.\"_sg_remote\" SET seq = seq + $1 RETURNING seq - $1",
            quote(&self.namespace)
        );
        let prepared = other.prepare(&sql);
        self.session.count_answered(&prepared);
        let statement = prepared.map_err(|e| self.session.classify(e))?;
        let row = other.query_one(&statement, &[&BLOCK]);
        self.session.count_answered(&row);
        let start: i64 = row.map_err(|e| self.session.classify(e))?.try_get(0)?;
        self.head = Some(start);
        Ok(())
    }

    /// The statement that takes the writer lock in a transaction (the key is
    /// a number derived from the validated namespace, not an application
    /// value), or nothing when the lock is planted away.
    fn writer_lock(&self) -> String {
        if self.serialize_writers {
            format!(
                "; SELECT pg_advisory_xact_lock({})",
                PgRemote::writer_lock_key(&self.namespace)
            )
        } else {
            String::new()
        }
    }

    /// Starts a transaction with `begin` and reads the head in it.
    fn begin(&mut self, begin: &str) -> Result<()> {
        self.head_moved = false;
        let text = format!("{begin}; {}", self.sql.head);
        let head = self.session.begin(&text)?;
        let head = head
            .and_then(|h| h.parse::<i64>().ok())
            .ok_or_else(|| Error::NotInitialized {
                place: self.session.place().to_string(),
                what: "remote",
                detail: format!("{}._sg_remote has no head row", self.namespace),
            })?;
        self.head = Some(head);
        if !self.verified {
            self.verify()?;
        }
        Ok(())
    }

    /// Checks that the namespace holds the sync tables and the declared
    /// tables with exactly the declared columns.
    fn verify(&mut self) -> Result<()> {
        let ns = self.namespace.clone();
        let sync_tables = self.sql.sync_tables.clone();
        let found: i64 = self.session.query(&sync_tables, &[&ns])?[0].try_get(0)?;
        if found != 3 {
            return Err(Error::NotInitialized {
                place: format!("{} schema {ns}", self.session.place()),
                what: "remote",
                detail: "its sync tables are missing; create it with PgRemote::create".into(),
            });
        }
        let columns_sql = self.sql.columns.clone();
        for t in 0..self.schema.tables().len() {
            let def = self.schema.table(t).clone();
            let found: Vec<(String, String)> = self
                .session
                .query(&columns_sql, &[&ns, &def.name])?
                .iter()
                .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
                .collect::<Result<_>>()?;
            if found.is_empty() {
                return Err(Error::SchemaMismatch {
                    place: "remote",
                    table: def.name.clone(),
                    detail: format!("the table does not exist in schema {ns} (or this role may not see it)"),
                });
            }
            let mut expected = vec![("id".to_string(), "bigint".to_string())];
            expected.extend(
                def.columns
                    .iter()
                    .map(|c| (c.name.clone(), crate::pg_sql::pg_type(c.kind).to_string())),
            );
            if found != expected {
                return Err(Error::SchemaMismatch {
                    place: "remote",
                    table: def.name.clone(),
                    detail: format!("expected columns {expected:?}, found {found:?}"),
                });
            }
        }
        self.verified = true;
        Ok(())
    }

    fn head_in_transaction(&self) -> i64 {
        self.head.expect("the head is read when a transaction begins")
    }

    fn decode(
        &self,
        table: usize,
        id: i64,
        state: i16,
        alias_of: Option<i64>,
        stamps: Option<&[u8]>,
    ) -> Result<RemoteRow> {
        let corrupt = |detail: String| Error::CorruptRemote {
            table: self.schema.table(table).name.clone(),
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
                let stamps = Stamp::decode_all(stamps.unwrap_or_default(), n)
                    .ok_or_else(|| corrupt("stamps do not match the columns".into()))?;
                Ok(RemoteRow::Live {
                    values: Vec::new(),
                    stamps,
                })
            }
            other => Err(corrupt(format!("unknown state {other}"))),
        }
    }
}

impl Remote for PgRemote {
    fn register_replica(&mut self) -> Result<u32> {
        // A write like any other: under the writer lock.
        if let Err(e) = self.begin(&format!("BEGIN ISOLATION LEVEL READ COMMITTED{}", self.writer_lock())) {
            self.rollback();
            return Err(e);
        }
        let register = self.sql.register.clone();
        let max = i64::from(REPLICAS_MAX);
        let registered = self
            .session
            .query(&register, &[&max])
            .and_then(|rows| match rows.first() {
                Some(row) => Ok(u32::try_from(row.try_get::<_, i64>(0)?).expect("replica ids stay below REPLICAS_MAX")),
                None => Err(Error::ReplicaIdsExhausted(REPLICAS_MAX)),
            });
        match registered {
            Ok(id) => self.commit().map(|()| id),
            Err(e) => {
                self.rollback();
                Err(e)
            }
        }
    }

    fn begin_write(&mut self) -> Result<()> {
        let mut outcome = self.begin(&format!("BEGIN ISOLATION LEVEL READ COMMITTED{}", self.writer_lock()));
        if !self.serialize_writers && outcome.is_ok() {
            outcome = self.reserve_seqs();
        }
        if outcome.is_err() {
            self.rollback();
        }
        outcome
    }

    fn begin_read(&mut self) -> Result<()> {
        let outcome = if self.planted.is(Mutant::PullPagesReadCommitted) {
            // Mutant pull-pages-read-committed: each page sees the latest commits.
            self.begin("BEGIN ISOLATION LEVEL READ COMMITTED READ ONLY")
        } else {
            self.begin("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        };
        // Mutant busy-read-leaks-txn: the failed read's BEGIN stays open.
        if outcome.is_err() && !self.planted.is(Mutant::BusyReadLeaksTxn) {
            self.rollback();
        }
        outcome
    }

    fn commit(&mut self) -> Result<()> {
        if self.head_moved {
            let head = self.head_in_transaction();
            let sql = self.sql.set_head.clone();
            if let Err(e) = self.session.execute(&sql, &[&head]) {
                self.rollback();
                return Err(e);
            }
        }
        let outcome = self.session.commit();
        self.head = None;
        self.head_moved = false;
        outcome
    }

    fn rollback(&mut self) {
        self.session.rollback();
        self.head = None;
        self.head_moved = false;
    }

    fn acked(&mut self, replica: u32) -> Result<i64> {
        let sql = self.sql.acked.clone();
        let rows = self.session.query(&sql, &[&i64::from(replica)])?;
        Ok(match rows.first() {
            Some(r) => r.try_get(0)?,
            None => 0,
        })
    }

    fn head(&mut self) -> Result<i64> {
        Ok(self.head_in_transaction())
    }

    fn rows(&mut self, table: usize, ids: &[i64]) -> Result<Vec<(i64, RemoteRow)>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let sql = self.sql.tables[table].rows.clone();
        let name = self.schema.table(table).name.clone();
        let found = self.session.query(&sql, &[&name, &ids])?;
        let def = self.schema.table(table).clone();
        let mut out = Vec::with_capacity(found.len());
        for r in &found {
            let id: i64 = r.try_get(0)?;
            let stamps: Option<&[u8]> = r.try_get(3)?;
            let mut row = self.decode(table, id, r.try_get(1)?, r.try_get(2)?, stamps)?;
            if let RemoteRow::Live { values, .. } = &mut row {
                let present: Option<i64> = r.try_get(4)?;
                if present.is_none() {
                    return Err(Error::CorruptRemote {
                        table: name,
                        id,
                        detail: "live row without data".into(),
                    });
                }
                *values = read_values(r, 5, &def)?;
            }
            out.push((id, row));
        }
        Ok(out)
    }

    fn live_with_keys(&mut self, table: usize, keys: &[Value]) -> Result<Vec<(Value, i64)>> {
        let def = self.schema.table(table).clone();
        let (Some(k), Some(sql)) = (def.natural_key, self.sql.tables[table].keys.clone()) else {
            return Ok(Vec::new());
        };
        let keys: Vec<&Value> = keys.iter().filter(|k| **k != Value::Null).collect();
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let array = column_array(&def, k, keys.into_iter())?;
        let found = self.session.query(&sql, &[&*array])?;
        found
            .iter()
            .map(|r| Ok((read_value(r, 0, def.columns[k].kind)?, r.try_get(1)?)))
            .collect()
    }

    fn live_children(&mut self, table: usize, column: usize, parents: &[i64]) -> Result<Vec<(i64, i64)>> {
        if parents.is_empty() {
            return Ok(Vec::new());
        }
        let sql = self.sql.tables[table].children[column]
            .clone()
            .expect("children are asked only through a reference column");
        let found = self.session.query(&sql, &[&parents])?;
        found.iter().map(|r| Ok((r.try_get(0)?, r.try_get(1)?))).collect()
    }

    fn write(&mut self, writes: &RemoteWrites) -> Result<()> {
        let head = self.head_in_transaction();
        assert!(
            writes.head >= head,
            "the head only moves forward: from {head} to {}",
            writes.head
        );
        let tables = self.schema.tables().len();
        let mut gone: Vec<Vec<i64>> = vec![Vec::new(); tables];
        let mut live: Vec<Vec<&Change>> = vec![Vec::new(); tables];
        let (mut tbl, mut id, mut seq, mut state, mut alias_of, mut stamps) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for change in &writes.rows {
            assert!(
                change.seq > head && change.seq <= writes.head,
                "a stored row's seq {} is outside ({head}, {}]",
                change.seq,
                writes.head
            );
            tbl.push(self.schema.table(change.table).name.clone());
            id.push(change.id);
            seq.push(change.seq);
            match &change.row {
                RemoteRow::Live { stamps: s, .. } => {
                    live[change.table].push(change);
                    state.push(STATE_LIVE);
                    alias_of.push(None);
                    stamps.push(Some(Stamp::encode_all(s)));
                }
                RemoteRow::Dead | RemoteRow::Alias(_) => {
                    gone[change.table].push(change.id);
                    state.push(if change.row == RemoteRow::Dead {
                        STATE_DEAD
                    } else {
                        STATE_ALIAS
                    });
                    alias_of.push(match change.row {
                        RemoteRow::Alias(s) => Some(s),
                        _ => None,
                    });
                    stamps.push(None::<Vec<u8>>);
                }
            }
        }
        // Rows that leave the synced tables go first, so a live row never
        // meets the natural key of a row that died in the same write.
        for (t, ids) in gone.iter().enumerate().filter(|(_, ids)| !ids.is_empty()) {
            let sql = self.sql.tables[t].delete.clone();
            self.session.execute(&sql, &[ids])?;
        }
        for (t, rows) in live.iter().enumerate().filter(|(_, rows)| !rows.is_empty()) {
            let def = self.schema.table(t).clone();
            let ids: Vec<i64> = rows.iter().map(|c| c.id).collect();
            let mut arrays: Vec<Box<dyn ToSql + Sync>> = Vec::with_capacity(def.columns.len());
            for c in 0..def.columns.len() {
                arrays.push(column_array(
                    &def,
                    c,
                    rows.iter().map(|change| match &change.row {
                        RemoteRow::Live { values, .. } => &values[c],
                        _ => unreachable!("only live rows are upserted"),
                    }),
                )?);
            }
            let mut params: Vec<&(dyn ToSql + Sync)> = vec![&ids];
            params.extend(arrays.iter().map(|a| &**a as &(dyn ToSql + Sync)));
            let sql = self.sql.tables[t].upsert.clone();
            self.session.execute(&sql, &params)?;
        }
        if !writes.rows.is_empty() {
            let sql = self.sql.write_rows.clone();
            self.session
                .execute(&sql, &[&tbl, &id, &seq, &state, &alias_of, &stamps])?;
        }
        if let Some((replica, acked)) = writes.acked {
            let sql = self.sql.set_acked.clone();
            self.session.execute(&sql, &[&i64::from(replica), &acked])?;
        }
        // Stored at commit (see the module's comment).
        self.head_moved |= writes.head != head;
        self.head = Some(writes.head);
        Ok(())
    }

    fn changes(&mut self, kind: ChangeKind, after: i64, upto: i64, limit: usize) -> Result<Vec<Change>> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let index = |remote: &PgRemote, tbl: &str, id: i64| {
            remote.schema.index(tbl).map_err(|_| Error::CorruptRemote {
                table: tbl.to_string(),
                id,
                detail: "change for a table that is not in the declared schema".into(),
            })
        };
        match kind {
            ChangeKind::Gone => {
                let sql = self.sql.changes_gone.clone();
                let found = self.session.query(&sql, &[&after, &upto, &limit])?;
                found
                    .iter()
                    .map(|r| {
                        let (tbl, id): (String, i64) = (r.try_get(0)?, r.try_get(1)?);
                        let table = index(self, &tbl, id)?;
                        let row = self.decode(table, id, r.try_get(3)?, r.try_get(4)?, None)?;
                        Ok(Change {
                            table,
                            id,
                            seq: r.try_get(2)?,
                            row,
                        })
                    })
                    .collect()
            }
            ChangeKind::Live => {
                let sql = self.sql.changes_live.clone();
                let found = self.session.query(&sql, &[&after, &upto, &limit])?;
                let mut changes = Vec::with_capacity(found.len());
                let mut ids: Vec<Vec<i64>> = vec![Vec::new(); self.schema.tables().len()];
                for r in &found {
                    let (tbl, id): (String, i64) = (r.try_get(0)?, r.try_get(1)?);
                    let table = index(self, &tbl, id)?;
                    let stamps: Option<&[u8]> = r.try_get(3)?;
                    let row = self.decode(table, id, STATE_LIVE, None, stamps)?;
                    ids[table].push(id);
                    changes.push(Change {
                        table,
                        id,
                        seq: r.try_get(2)?,
                        row,
                    });
                }
                // One read of values per table the page touches.
                let mut values: HashMap<(usize, i64), Vec<Value>> = HashMap::with_capacity(changes.len());
                for (t, ids) in ids.iter().enumerate().filter(|(_, ids)| !ids.is_empty()) {
                    let def = self.schema.table(t).clone();
                    let sql = self.sql.tables[t].values.clone();
                    for r in self.session.query(&sql, &[ids])? {
                        values.insert((t, r.try_get(0)?), read_values(&r, 1, &def)?);
                    }
                }
                for change in &mut changes {
                    let found = values
                        .remove(&(change.table, change.id))
                        .ok_or_else(|| Error::CorruptRemote {
                            table: self.schema.table(change.table).name.clone(),
                            id: change.id,
                            detail: "live row without data".into(),
                        })?;
                    if let RemoteRow::Live { values, .. } = &mut change.row {
                        *values = found;
                    }
                }
                Ok(changes)
            }
        }
    }
}
