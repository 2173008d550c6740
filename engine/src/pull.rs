//! Pull, in the steps SEMANTICS.md names: read the remote's changes after the
//! cursor (tombstones and aliases, then live rows), merge each with pending
//! local writes, and store the rows and the new cursor in one local
//! transaction.
//!
//! Architecture Invariant: rows applied by a pull are never captured again
//! (`_sg_meta.applying` is set for the duration of the local transaction, so
//! no other connection ever sees it set).

use rusqlite::types::Value;
use rusqlite::{Connection, OptionalExtension, Transaction, TransactionBehavior};

use crate::cache::{APPLYING_MERGE, APPLYING_NONE, APPLYING_PULL, OP_DELETE};
use crate::error::{Error, Result};
use crate::mutant::Mutant;
use crate::push::read_pending_for;
use crate::remote::{Change, ChangeKind, Remote, RemoteRow};
use crate::replica::{natural_key_holder, row_exists, tombstoned, Config, Replica, SyncReport};
use crate::schema::{quote, Schema};
use crate::stamp::Stamp;

/// Bound on alias chains; the rules keep them at depth one.
const ALIAS_HOPS_MAX: usize = 8;

impl<R: Remote> Replica<R> {
    pub(crate) fn pull_inner(&mut self, report: &mut SyncReport) -> Result<()> {
        let (pulled, conflicts) = self.retrying("pull", |r| r.pull_attempt())?;
        report.pulled += pulled;
        report.conflicts += conflicts;
        Ok(())
    }

    fn pull_attempt(&mut self) -> Result<(u64, u64)> {
        let now = self.clock.now_ms();
        let mut cursor_before = None;
        if self.config.planted(Mutant::NonAtomicPull) {
            // Mutant: the cursor moves to the remote head in its own transaction,
            // before the data; a crash in between loses those changes.
            cursor_before = Some(
                self.conn
                    .query_row("SELECT cursor FROM _sg_meta", [], |r| r.get::<_, i64>(0))?,
            );
            self.remote.begin_read()?;
            let head = self.remote.head();
            self.remote.rollback();
            self.conn.execute("UPDATE _sg_meta SET cursor = ?1", [head?])?;
        }
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        if let Err(e) = self.remote.begin_read() {
            // Mutant busy-read-leaks-txn: nobody rolls the failed read back.
            if !self.config.planted(Mutant::BusyReadLeaksTxn) {
                self.remote.rollback();
            }
            return Err(e);
        }
        let outcome = pull_into(
            &tx,
            &mut self.remote,
            &self.schema,
            &self.config,
            self.replica_id,
            now,
            cursor_before,
        );
        let outcome = outcome.and_then(|counts| self.remote.commit().map(|()| counts));
        match outcome {
            Ok(counts) => {
                commit_pull(tx, &self.schema)?;
                Ok(counts)
            }
            Err(e) => {
                self.remote.rollback();
                Err(e)
            }
        }
    }
}

/// Commits the pull's local transaction (rule P5). Foreign keys are checked
/// here, at commit (they are deferred while rows arrive in seq order); a
/// violation is a bug of the pull, reported with the row it broke instead of
/// SQLite's bare "FOREIGN KEY constraint failed", and nothing is applied.
fn commit_pull(tx: Transaction<'_>, schema: &Schema) -> Result<()> {
    match tx.execute_batch("COMMIT") {
        Ok(()) => Ok(()),
        Err(e) if e.sqlite_error_code() == Some(rusqlite::ErrorCode::ConstraintViolation) => {
            // A failed COMMIT leaves the transaction open: name the broken
            // reference, then `tx` rolls back as it drops.
            Err(broken_reference(&tx, schema)?.unwrap_or(Error::Sqlite(e)))
        }
        Err(e) => Err(e.into()),
    }
}

/// The first foreign-key violation in the open transaction, as a typed error.
fn broken_reference(tx: &Connection, schema: &Schema) -> Result<Option<Error>> {
    for t in schema.tables() {
        let found = tx
            .query_row(
                "SELECT rowid, parent, fkid FROM pragma_foreign_key_check(?1)",
                [&t.name],
                |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?, r.get::<_, i64>(2)?)),
            )
            .optional()?;
        if let Some((id, parent_table, fk)) = found {
            let column: String = tx.query_row(
                "SELECT \"from\" FROM pragma_foreign_key_list(?1) WHERE id = ?2",
                rusqlite::params![t.name, fk],
                |r| r.get(0),
            )?;
            let parent_id = tx.query_row(
                &format!("SELECT {} FROM {} WHERE \"id\" = ?1", quote(&column), quote(&t.name)),
                [id],
                |r| r.get(0),
            )?;
            return Ok(Some(Error::PullBrokeReference {
                table: t.name.clone(),
                id,
                column,
                parent_table,
                parent_id,
            }));
        }
    }
    Ok(None)
}

fn pull_into<R: Remote>(
    tx: &Transaction<'_>,
    remote: &mut R,
    schema: &Schema,
    config: &Config,
    replica: u32,
    now_ms: i64,
    cursor_before: Option<i64>,
) -> Result<(u64, u64)> {
    let (max_drift_ms, page_rows) = (config.max_drift_ms, config.pull_page_rows);
    let (cursor, mut hlc): (i64, i64) =
        tx.query_row("SELECT cursor, hlc FROM _sg_meta", [], |r| Ok((r.get(0)?, r.get(1)?)))?;
    let cursor = cursor_before.unwrap_or(cursor);
    // Mutant cursor-off-by-one: the first change after the cursor is skipped.
    let cursor = if config.planted(Mutant::CursorOffByOne) {
        cursor + 1
    } else {
        cursor
    };
    let advance_clock = !config.planted(Mutant::NoClockAdvance) && !config.planted(Mutant::WallClockLww);
    let head = remote.head()?;
    tx.execute_batch("PRAGMA defer_foreign_keys = ON")?;
    set_applying(tx, APPLYING_PULL)?;
    let mut pulled = 0_u64;
    let mut conflicts = 0_u64;
    for kind in [ChangeKind::Gone, ChangeKind::Live] {
        let mut after = cursor;
        loop {
            let page = remote.changes(kind, after, head, page_rows.max(1))?;
            for change in &page {
                assert!(
                    change.seq > after && change.seq <= head,
                    "change seq={} outside ({after}, {head}]",
                    change.seq
                );
                if let RemoteRow::Live { stamps, .. } = &change.row {
                    for s in stamps {
                        let ahead_ms = s.ms() - now_ms;
                        if ahead_ms > max_drift_ms {
                            return Err(Error::ClockDrift {
                                table: schema.table(change.table).name.clone(),
                                id: change.id,
                                replica: s.replica,
                                ahead_ms,
                                max_drift_ms,
                            });
                        }
                        if advance_clock {
                            hlc = hlc.max(s.hlc);
                        }
                    }
                }
                if apply_change(tx, schema, config, replica, change)? {
                    conflicts += 1;
                }
                pulled += 1;
                after = change.seq;
            }
            if page.len() < page_rows.max(1) {
                break;
            }
        }
    }
    tx.execute(
        "UPDATE _sg_meta SET cursor = ?1, hlc = ?2, applying = ?3",
        rusqlite::params![head, hlc, APPLYING_NONE],
    )?;
    Ok((pulled, conflicts))
}

fn set_applying(tx: &Connection, mode: i64) -> Result<()> {
    tx.prepare_cached("UPDATE _sg_meta SET applying = ?1")?
        .execute([mode])?;
    Ok(())
}

/// Applies one remote row (rules P3, P4, D1, N2, N3). Returns whether a
/// conflict was resolved here.
fn apply_change(tx: &Connection, schema: &Schema, config: &Config, replica: u32, change: &Change) -> Result<bool> {
    let t = change.table;
    let name = &schema.table(t).name;
    let id = change.id;
    match &change.row {
        RemoteRow::Dead if config.planted(Mutant::NoTombstones) => Ok(false),
        RemoteRow::Dead => {
            kill(tx, schema, t, id)?;
            Ok(false)
        }
        RemoteRow::Alias(survivor) => {
            tx.prepare_cached("INSERT OR REPLACE INTO _sg_aliases (tbl, id, survivor) VALUES (?1, ?2, ?3)")?
                .execute(rusqlite::params![name, id, survivor])?;
            if row_exists(tx, name, id)? {
                let target = resolve(tx, name, *survivor)?;
                if tombstoned(tx, name, target)? {
                    delete_row(tx, name, id)?;
                } else {
                    merge_away(tx, schema, t, id, target)?;
                }
            }
            Ok(false)
        }
        RemoteRow::Live { values, stamps } => apply_live(tx, schema, config, replica, (t, id), values, stamps),
    }
}

fn apply_live(
    tx: &Connection,
    schema: &Schema,
    config: &Config,
    replica: u32,
    (t, id): (usize, i64),
    values: &[Value],
    stamps: &[Stamp],
) -> Result<bool> {
    let def = schema.table(t);
    let name = &def.name;
    if tombstoned(tx, name, id)? {
        return Ok(false);
    }
    let target = resolve(tx, name, id)?;
    if tombstoned(tx, name, target)? {
        return Ok(false);
    }
    let mut values = values.to_vec();
    for (c, v) in values.iter_mut().enumerate() {
        if let (Some(p), Value::Integer(parent)) = (def.parents[c], &*v) {
            *v = Value::Integer(resolve(tx, &schema.table(p).name, *parent)?);
        }
    }
    let mut merged = false;
    if let Some(k) = def.natural_key {
        if let Some(local) = natural_key_holder(tx, schema, t, &values[k], Some(target))? {
            merge_away(tx, schema, t, local, target)?;
            merged = true;
        }
    }
    for (c, v) in values.iter().enumerate() {
        if let (Some(p), Value::Integer(parent)) = (def.parents[c], v) {
            if tombstoned(tx, &schema.table(p).name, *parent)? {
                // Rows merged into `target` just now brought their children
                // along: they die with it (D2).
                kill(tx, schema, t, target)?;
                return Ok(merged);
            }
        }
    }
    let pending = if config.planted(Mutant::PullOverwritesPending) {
        // Mutant: pending local writes are ignored; the remote value always wins.
        vec![None; def.columns.len()]
    } else {
        pending_columns(tx, schema, replica, t, target)?
    };
    let mut won_local = false;
    for (c, slot) in values.iter_mut().enumerate() {
        if let Some((stamp, value)) = &pending[c] {
            if *stamp > stamps[c] {
                *slot = value.clone();
                won_local = true;
            }
        }
    }
    let sql = &def.sql.upsert;
    let mut bind: Vec<&dyn rusqlite::ToSql> = vec![&target];
    bind.extend(values.iter().map(|v| v as &dyn rusqlite::ToSql));
    tx.prepare_cached(sql)?.execute(&bind[..])?;
    if config.planted(Mutant::EchoCapture) {
        // Mutant: the pulled row is captured again, as if the app wrote it.
        let json = serde_json::Value::Array(values.iter().map(json_of).collect()).to_string();
        tx.execute("UPDATE _sg_meta SET hlc = hlc + 1", [])?;
        tx.execute(
            "INSERT INTO _sg_outbox (txn, tbl, row_id, op, stamp, mask, vals) \
             SELECT txn, ?1, ?2, 2, hlc, ?3, ?4 FROM _sg_meta",
            rusqlite::params![name, target, (1_i64 << def.columns.len()) - 1, json],
        )?;
    }
    Ok(merged || won_local)
}

/// Per column, the latest pending local write to `target` or to a row merged
/// into it: its stamp and value (references resolved through aliases).
fn pending_columns(
    tx: &Connection,
    schema: &Schema,
    replica: u32,
    t: usize,
    target: i64,
) -> Result<Vec<Option<(Stamp, Value)>>> {
    let def = schema.table(t);
    let mut best: Vec<Option<(Stamp, Value)>> = vec![None; def.columns.len()];
    for entry in read_pending_for(tx, schema, replica, t, target)? {
        if entry.op == OP_DELETE {
            continue;
        }
        for &c in &entry.columns {
            let value = match (&entry.values[c], def.parents[c]) {
                (Value::Integer(parent), Some(p)) => Value::Integer(resolve(tx, &schema.table(p).name, *parent)?),
                (v, _) => v.clone(),
            };
            if best[c].as_ref().is_none_or(|(s, _)| entry.stamp > *s) {
                best[c] = Some((entry.stamp, value));
            }
        }
    }
    Ok(best)
}

fn resolve(tx: &Connection, table: &str, mut id: i64) -> Result<i64> {
    let mut stmt = tx.prepare_cached("SELECT survivor FROM _sg_aliases WHERE tbl = ?1 AND id = ?2")?;
    for _ in 0..ALIAS_HOPS_MAX {
        match stmt.query_row(rusqlite::params![table, id], |r| r.get(0)).optional()? {
            Some(next) => id = next,
            None => break,
        }
    }
    Ok(id)
}

/// `from` becomes an alias of `to`: its children move to `to`, and the row
/// goes without a tombstone (rule N2).
fn merge_away(tx: &Connection, schema: &Schema, t: usize, from: i64, to: i64) -> Result<()> {
    let name = &schema.table(t).name;
    tx.prepare_cached("INSERT OR REPLACE INTO _sg_aliases (tbl, id, survivor) VALUES (?1, ?2, ?3)")?
        .execute(rusqlite::params![name, from, to])?;
    for &(ct, c) in &schema.table(t).children {
        let child = schema.table(ct);
        let sql = format!(
            "UPDATE {} SET {1} = ?1 WHERE {1} = ?2",
            quote(&child.name),
            quote(&child.columns[c].name)
        );
        tx.prepare_cached(&sql)?.execute([to, from])?;
    }
    set_applying(tx, APPLYING_MERGE)?;
    delete_row(tx, name, from)?;
    set_applying(tx, APPLYING_PULL)?;
    Ok(())
}

/// A pulled death (rule D2): the row, if held, goes with its children (the
/// cache's `ON DELETE CASCADE`); if it is not held here, children may still
/// point at it, re-pointed by a natural-key merge earlier in this pull, so
/// they are deleted directly (each cascading further). Every deleted row is
/// tombstoned by the tombstone trigger, and `id` itself here.
fn kill(tx: &Connection, schema: &Schema, t: usize, id: i64) -> Result<()> {
    let name = &schema.table(t).name;
    if delete_row(tx, name, id)? == 0 {
        for &(ct, c) in &schema.table(t).children {
            let child = schema.table(ct);
            let sql = format!(
                "DELETE FROM {} WHERE {} = ?1",
                quote(&child.name),
                quote(&child.columns[c].name)
            );
            tx.prepare_cached(&sql)?.execute([id])?;
        }
    }
    add_tombstone(tx, name, id)
}

/// Deletes row `id` of `table`; returns how many rows went (0 or 1).
fn delete_row(tx: &Connection, table: &str, id: i64) -> Result<usize> {
    Ok(tx
        .prepare_cached(&format!("DELETE FROM {} WHERE \"id\" = ?1", quote(table)))?
        .execute([id])?)
}

fn add_tombstone(tx: &Connection, table: &str, id: i64) -> Result<()> {
    tx.prepare_cached("INSERT OR IGNORE INTO _sg_tombstones (tbl, id) VALUES (?1, ?2)")?
        .execute(rusqlite::params![table, id])?;
    Ok(())
}

fn json_of(v: &Value) -> serde_json::Value {
    match v {
        Value::Null | Value::Blob(_) => serde_json::Value::Null,
        Value::Integer(i) => serde_json::Value::from(*i),
        Value::Real(f) => serde_json::Value::from(*f),
        Value::Text(s) => serde_json::Value::from(s.clone()),
    }
}
