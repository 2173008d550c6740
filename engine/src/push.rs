//! Push, in the steps SEMANTICS.md names: read the outbox batch, apply it on
//! the remote, commit the remote, acknowledge locally.
//!
//! Architecture Invariant: an outbox entry is removed only by a local
//! transaction that runs after the remote transaction that applied it has
//! committed; the remote remembers the last applied seq per replica, so a
//! re-push after a crash between the two applies nothing twice.

use rusqlite::types::Value;
use rusqlite::{Connection, OptionalExtension, TransactionBehavior};

use crate::cache::{OP_DELETE, OP_INSERT, OP_UPDATE};
use crate::error::{Error, Result};
use crate::mutant::Mutant;
use crate::remote::{Remote, RemoteRow};
use crate::replica::{Config, Replica, SyncReport};
use crate::schema::Schema;
use crate::stamp::Stamp;

/// One captured write, read back from the outbox.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct OutboxEntry {
    pub seq: i64,
    pub txn: i64,
    pub table: usize,
    pub id: i64,
    pub op: i64,
    pub stamp: Stamp,
    /// Columns the write set (every column for an insert).
    pub columns: Vec<usize>,
    /// The row after the write, in declared order (empty for a delete).
    pub values: Vec<Value>,
}

impl<R: Remote> Replica<R> {
    pub(crate) fn push_inner(&mut self, report: &mut SyncReport) -> Result<()> {
        self.retrying("push", |r| r.push_attempt(report))
    }

    fn push_attempt(&mut self, report: &mut SyncReport) -> Result<()> {
        loop {
            // Step 0: nothing pending, nothing to lock.
            let empty: bool = self
                .conn
                .query_row("SELECT NOT EXISTS (SELECT 1 FROM _sg_outbox)", [], |r| r.get(0))?;
            if empty {
                return Ok(());
            }
            let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            // Step 1: find where the outbox batch ends (whole local transactions).
            let end = if self.config.planted(Mutant::SplitTransaction) {
                // Mutant: one entry per remote transaction, whatever its local transaction.
                tx.query_row("SELECT min(seq) FROM _sg_outbox", [], |r| r.get::<_, Option<i64>>(0))?
                    .map(|seq| (seq, 1))
            } else {
                batch_end(&tx, self.config.push_batch_max)?
            };
            let Some((last, entries)) = end else {
                return Ok(());
            };
            if self.config.planted(Mutant::AckWithoutApply) {
                // Mutant: "0 records synced" — acknowledged, never sent.
                tx.execute("DELETE FROM _sg_outbox WHERE seq <= ?1", [last])?;
                tx.commit()?;
                report.pushed += entries;
                continue;
            }
            // Step 2: apply it on the remote, in one remote transaction.
            if let Err(e) = self.remote.begin_write() {
                self.remote.rollback();
                if e.is_busy() && self.config.planted(Mutant::NoBusyRetry) {
                    // Mutant: a busy remote is treated as nothing to do.
                    return Ok(());
                }
                return Err(e);
            }
            // Entries stream from the outbox to the remote: memory stays
            // bounded however large one local transaction is.
            let applied = apply_batch(&tx, &mut self.remote, &self.schema, &self.config, self.replica_id, last);
            if self.config.planted(Mutant::AckBeforeCommit) {
                // Mutant: acknowledged locally before the remote commit.
                let conflicts = match applied {
                    Ok(c) => c,
                    Err(e) => {
                        self.remote.rollback();
                        return Err(e);
                    }
                };
                tx.execute("DELETE FROM _sg_outbox WHERE seq <= ?1", [last])?;
                tx.commit()?;
                if let Err(e) = self.remote.commit() {
                    self.remote.rollback();
                    return Err(e);
                }
                report.pushed += entries;
                report.conflicts += conflicts;
                continue;
            }
            // Step 3: commit the remote.
            let conflicts = match applied.and_then(|c| self.remote.commit().map(|()| c)) {
                Ok(conflicts) => conflicts,
                Err(e) => {
                    self.remote.rollback();
                    return Err(e);
                }
            };
            // Step 4: acknowledge locally.
            tx.execute("DELETE FROM _sg_outbox WHERE seq <= ?1", [last])?;
            tx.commit()?;
            report.pushed += entries;
            if !self.config.planted(Mutant::LyingStatus) {
                report.conflicts += conflicts;
            }
        }
    }
}

/// The last seq and entry count of the next batch: whole local transactions
/// in seq order, growing until the next transaction would take it past
/// `batch_max` (a transaction larger than that is a batch of its own; rule
/// S2). Reads only `(seq, txn)`, and stops as soon as the cut is known.
fn batch_end(conn: &Connection, batch_max: usize) -> Result<Option<(i64, u64)>> {
    let mut stmt = conn.prepare_cached("SELECT seq, txn FROM _sg_outbox ORDER BY seq")?;
    let mut rows = stmt.query([])?;
    let (mut taken, mut last): (u64, Option<i64>) = (0, None);
    let (mut group_txn, mut group_len, mut group_last): (Option<i64>, u64, i64) = (None, 0, 0);
    let max = batch_max as u64;
    loop {
        let next: Option<(i64, i64)> = match rows.next()? {
            Some(row) => Some((row.get(0)?, row.get(1)?)),
            None => None,
        };
        if next.map(|(_, txn)| txn) != group_txn && group_txn.is_some() {
            // The group just ended: take it whole, or stop before it.
            if taken > 0 && taken + group_len > max {
                break;
            }
            taken += group_len;
            last = Some(group_last);
            if taken >= max || next.is_none() {
                break;
            }
            group_len = 0;
        }
        let Some((seq, txn)) = next else { break };
        group_txn = Some(txn);
        group_len += 1;
        group_last = seq;
    }
    Ok(last.map(|last| (last, taken)))
}

/// Streams the outbox entries up to `last` onto the remote, skipping those
/// the remote already applied (rule S4), and records `last` as applied.
fn apply_batch<R: Remote>(
    conn: &Connection,
    remote: &mut R,
    schema: &Schema,
    config: &Config,
    replica: u32,
    last: i64,
) -> Result<u64> {
    assert!(last > 0, "outbox seq must be positive: seq={last}");
    let acked = remote.acked(replica)?;
    let mut conflicts = 0;
    let mut stmt = conn.prepare_cached(
        "SELECT seq, txn, tbl, row_id, op, stamp, mask, vals FROM _sg_outbox WHERE seq <= ?1 ORDER BY seq",
    )?;
    let mut rows = stmt.query([last])?;
    while let Some(row) = rows.next()? {
        let entry = decode_entry(schema, replica, row)?;
        if entry.seq <= acked {
            continue;
        }
        let alias = if entry.op == OP_INSERT {
            local_alias(conn, schema, entry.table, entry.id)?
        } else {
            None
        };
        conflicts += apply_entry(remote, schema, config, &entry, alias)?;
    }
    remote.set_acked(replica, last.max(acked))?;
    Ok(conflicts)
}

fn resolve<R: Remote>(remote: &mut R, table: usize, id: i64) -> Result<i64> {
    Ok(match remote.row(table, id)? {
        Some(RemoteRow::Alias(survivor)) => survivor,
        _ => id,
    })
}

fn is_live<R: Remote>(remote: &mut R, table: usize, id: i64) -> Result<bool> {
    Ok(matches!(remote.row(table, id)?, Some(RemoteRow::Live { .. })))
}

/// Applies one entry on the remote (rules M1–M4, D1–D3, N2–N3). Returns 1
/// when the write did not take effect as written.
fn apply_entry<R: Remote>(
    remote: &mut R,
    schema: &Schema,
    config: &Config,
    entry: &OutboxEntry,
    local_alias: Option<i64>,
) -> Result<u64> {
    let t = entry.table;
    let def = schema.table(t);
    let mut values = entry.values.clone();
    for (c, v) in values.iter_mut().enumerate() {
        if let (Some(p), Value::Integer(parent)) = (def.parents.get(c).copied().flatten(), &*v) {
            *v = Value::Integer(resolve(remote, p, *parent)?);
        }
    }
    let all: Vec<usize> = (0..def.columns.len()).collect();
    match entry.op {
        OP_INSERT => {
            if let Some(target) = local_alias {
                let target = resolve(remote, t, target)?;
                if remote.row(t, entry.id)?.is_none() {
                    remote.put(t, entry.id, &RemoteRow::Alias(target))?;
                }
                if let Some(mut row) = remote.row(t, target)? {
                    if merge_columns(&mut row, &values, &all, entry.stamp).is_some() {
                        remote.put(t, target, &row)?;
                    }
                }
                return Ok(1);
            }
            match remote.row(t, entry.id)? {
                Some(RemoteRow::Dead) => {
                    remote.touch(t, entry.id)?;
                    Ok(1)
                }
                Some(mut row @ RemoteRow::Live { .. }) => {
                    if config.planted(Mutant::AutoincrementIds) {
                        // Mutant: a plain INSERT of an id another replica already used.
                        return Err(Error::CorruptRemote {
                            table: def.name.clone(),
                            id: entry.id,
                            detail: "UNIQUE constraint failed (plain INSERT of a colliding id)".into(),
                        });
                    }
                    if config.planted(Mutant::InsertOrReplace) {
                        // Mutant: INSERT OR REPLACE silently overwrites the other row.
                        let stamps = vec![entry.stamp; values.len()];
                        remote.put(t, entry.id, &RemoteRow::Live { values, stamps })?;
                        return Ok(0);
                    }
                    let lost = merge_columns(&mut row, &values, &all, entry.stamp).unwrap_or(false);
                    remote.put(t, entry.id, &row)?;
                    Ok(u64::from(lost))
                }
                Some(RemoteRow::Alias(target)) => {
                    if let Some(mut row) = remote.row(t, target)? {
                        if merge_columns(&mut row, &values, &all, entry.stamp).is_some() {
                            remote.put(t, target, &row)?;
                        }
                    }
                    Ok(1)
                }
                None => {
                    for (c, v) in values.iter().enumerate() {
                        if let (Some(p), Value::Integer(parent)) = (def.parents[c], v) {
                            if !is_live(remote, p, *parent)? {
                                remote.put(t, entry.id, &RemoteRow::Dead)?;
                                return Ok(1);
                            }
                        }
                    }
                    if let Some(k) = def.natural_key.filter(|_| !config.planted(Mutant::NaturalKeyInsert)) {
                        if let Some(survivor) = remote.live_with_key(t, &values[k])? {
                            remote.put(t, entry.id, &RemoteRow::Alias(survivor))?;
                            if let Some(mut row) = remote.row(t, survivor)? {
                                merge_columns(&mut row, &values, &all, entry.stamp);
                                remote.put(t, survivor, &row)?;
                            }
                            return Ok(1);
                        }
                    }
                    let stamps = vec![entry.stamp; values.len()];
                    remote.put(t, entry.id, &RemoteRow::Live { values, stamps })?;
                    Ok(0)
                }
            }
        }
        OP_UPDATE => {
            let target = resolve(remote, t, entry.id)?;
            match remote.row(t, target)? {
                Some(mut row @ RemoteRow::Live { .. }) => {
                    let lost = merge_columns(&mut row, &values, &entry.columns, entry.stamp).unwrap_or(false);
                    remote.put(t, target, &row)?;
                    Ok(u64::from(lost))
                }
                Some(_) => {
                    remote.touch(t, target)?;
                    Ok(1)
                }
                None => Ok(1),
            }
        }
        OP_DELETE => {
            let target = resolve(remote, t, entry.id)?;
            match remote.row(t, target)? {
                Some(RemoteRow::Live { .. }) => kill(remote, schema, t, target)?,
                Some(_) => remote.touch(t, target)?,
                None => remote.put(t, target, &RemoteRow::Dead)?,
            }
            Ok(0)
        }
        other => unreachable!("read_outbox_batch admits only known ops, got {other}"),
    }
}

/// Column-level last-writer-wins on a live row. `None` when the row is not
/// live; otherwise whether any listed column kept a later stamp.
fn merge_columns(row: &mut RemoteRow, values: &[Value], columns: &[usize], stamp: Stamp) -> Option<bool> {
    let RemoteRow::Live { values: have, stamps } = row else {
        return None;
    };
    let mut lost = false;
    for &c in columns {
        if stamp > stamps[c] {
            have[c] = values[c].clone();
            stamps[c] = stamp;
        } else {
            lost = true;
        }
    }
    Some(lost)
}

/// A tombstone for the row and, recursively, for each live child (rule D2).
fn kill<R: Remote>(remote: &mut R, schema: &Schema, t: usize, id: i64) -> Result<()> {
    remote.put(t, id, &RemoteRow::Dead)?;
    for &(ct, c) in &schema.table(t).children {
        for child in remote.live_children(ct, c, id)? {
            if is_live(remote, ct, child)? {
                kill(remote, schema, ct, child)?;
            }
        }
    }
    Ok(())
}

fn local_alias(conn: &Connection, schema: &Schema, table: usize, id: i64) -> Result<Option<i64>> {
    let mut stmt = conn.prepare_cached("SELECT survivor FROM _sg_aliases WHERE tbl = ?1 AND id = ?2")?;
    Ok(stmt
        .query_row(rusqlite::params![schema.table(table).name, id], |r| r.get(0))
        .optional()?)
}

fn decode_entry(schema: &Schema, replica: u32, row: &rusqlite::Row<'_>) -> Result<OutboxEntry> {
    let seq: i64 = row.get("seq")?;
    let corrupt = |detail: String| Error::CorruptOutbox { seq, detail };
    let tbl: String = row.get("tbl")?;
    let table = schema
        .index(&tbl)
        .map_err(|_| corrupt(format!("unknown table {tbl:?}")))?;
    let def = schema.table(table);
    let n = def.columns.len();
    let op: i64 = row.get("op")?;
    let mask: i64 = row.get("mask")?;
    let vals: Option<String> = row.get("vals")?;
    let (columns, values) = match op {
        OP_INSERT | OP_UPDATE => {
            let text = vals.ok_or_else(|| corrupt("no values".into()))?;
            let json: serde_json::Value =
                serde_json::from_str(&text).map_err(|e| corrupt(format!("values are not JSON: {e}")))?;
            let items = json
                .as_array()
                .filter(|a| a.len() == n)
                .ok_or_else(|| corrupt(format!("values are not an array of {n}")))?;
            let values = items
                .iter()
                .map(value_of_json)
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| corrupt("a value is not a scalar".into()))?;
            if mask <= 0 || mask >> n != 0 {
                return Err(corrupt(format!("column mask {mask} does not fit {n} columns")));
            }
            ((0..n).filter(|c| mask >> c & 1 == 1).collect(), values)
        }
        OP_DELETE => (Vec::new(), Vec::new()),
        other => return Err(corrupt(format!("unknown op {other}"))),
    };
    Ok(OutboxEntry {
        seq,
        txn: row.get("txn")?,
        table,
        id: row.get("row_id")?,
        op,
        stamp: Stamp {
            hlc: row.get("stamp")?,
            replica,
        },
        columns,
        values,
    })
}

fn value_of_json(v: &serde_json::Value) -> Option<Value> {
    Some(match v {
        serde_json::Value::Null => Value::Null,
        serde_json::Value::Number(n) => match n.as_i64() {
            Some(i) => Value::Integer(i),
            None => Value::Real(n.as_f64()?),
        },
        serde_json::Value::String(s) => Value::Text(s.clone()),
        _ => return None,
    })
}

/// Pending outbox entries for row `id` of `table`, or for rows merged into it.
pub(crate) fn read_pending_for(
    conn: &Connection,
    schema: &Schema,
    replica: u32,
    table: usize,
    id: i64,
) -> Result<Vec<OutboxEntry>> {
    let mut stmt = conn.prepare_cached(
        "SELECT seq, txn, tbl, row_id, op, stamp, mask, vals FROM _sg_outbox \
         WHERE tbl = ?1 AND (row_id = ?2 OR row_id IN (SELECT id FROM _sg_aliases WHERE tbl = ?1 AND survivor = ?2)) \
         ORDER BY seq",
    )?;
    let mut rows = stmt.query(rusqlite::params![schema.table(table).name, id])?;
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        out.push(decode_entry(schema, replica, row)?);
    }
    Ok(out)
}
