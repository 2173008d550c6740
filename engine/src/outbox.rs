//! `_sg_outbox`: every captured write not yet acknowledged by the remote
//! (rules C1–C3, S1–S4).
//!
//! Architecture Invariant: this module alone knows the outbox's format — its
//! table, the SQL the capture triggers run to append an entry, how an entry
//! is encoded and decoded, how a batch is cut, read and acknowledged, and
//! how pending entries and the write ledger are read. Everything else goes
//! through these functions.

use rusqlite::types::Value;
use rusqlite::{Connection, OptionalExtension};

use crate::error::{Error, Result};
use crate::meta;
use crate::schema::Schema;
use crate::stamp::Stamp;

pub(crate) const OUTBOX_DDL: &str = "
CREATE TABLE IF NOT EXISTS _sg_outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    txn INTEGER NOT NULL,
    tbl TEXT NOT NULL,
    row_id INTEGER NOT NULL,
    op INTEGER NOT NULL,
    stamp INTEGER NOT NULL,
    mask INTEGER NOT NULL,
    vals TEXT
);
CREATE INDEX IF NOT EXISTS _sg_outbox_row ON _sg_outbox (tbl, row_id);
";

/// What a captured write did to its row.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Op {
    Insert,
    Update,
    Delete,
}

impl Op {
    /// The code stored in the outbox.
    fn code(self) -> i64 {
        match self {
            Op::Insert => 1,
            Op::Update => 2,
            Op::Delete => 3,
        }
    }

    fn of_code(code: i64) -> Option<Op> {
        match code {
            1 => Some(Op::Insert),
            2 => Some(Op::Update),
            3 => Some(Op::Delete),
            _ => None,
        }
    }
}

/// One captured write, read back from the outbox.
#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    /// Outbox seq: goes up by one per captured write, never reused.
    pub seq: i64,
    /// The local transaction that made the write (rule S2).
    pub txn: i64,
    /// Index of the table in the schema (`Schema::table_names` order).
    pub table: usize,
    pub id: i64,
    pub op: Op,
    pub stamp: Stamp,
    /// Columns the write set: every column for an insert, the changed ones
    /// for an update, none for a delete.
    pub columns: Vec<usize>,
    /// The row after the write, in declared order (empty for a delete).
    pub values: Vec<Value>,
}

/// What a cache's outbox says about every write it ever captured: the
/// write ledger a checker compares with the remote's applied seq.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ledger {
    /// The highest outbox seq ever handed out (0 when nothing was captured).
    pub captured_max: i64,
    /// Seqs still pending, ascending.
    pub pending: Vec<i64>,
}

/// The write ledger of the cache `conn` is connected to.
pub fn read_ledger(conn: &Connection) -> Result<Ledger> {
    let captured_max: i64 = conn
        .query_row("SELECT seq FROM sqlite_sequence WHERE name = '_sg_outbox'", [], |r| {
            r.get(0)
        })
        .optional()?
        .unwrap_or(0);
    let mut stmt = conn.prepare_cached("SELECT seq FROM _sg_outbox ORDER BY seq")?;
    let pending = stmt
        .query_map([], |r| r.get(0))?
        .collect::<rusqlite::Result<Vec<i64>>>()?;
    if let Some(&last) = pending.last() {
        assert!(
            last <= captured_max,
            "pending seq {last} above the highest seq handed out ({captured_max})"
        );
    }
    Ok(Ledger { captured_max, pending })
}

/// Every pending entry with a seq above `after`, in seq order.
pub fn read_entries(conn: &Connection, schema: &Schema, after: i64) -> Result<Vec<Entry>> {
    let replica = meta::replica(conn)?;
    let mut stmt = conn.prepare_cached(&format!("{SELECT_ENTRY} WHERE seq > ?1 ORDER BY seq"))?;
    let mut rows = stmt.query([after])?;
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        out.push(decode(schema, replica, row)?);
    }
    Ok(out)
}

const SELECT_ENTRY: &str = "SELECT seq, txn, tbl, row_id, op, stamp, mask, vals FROM _sg_outbox";

/// The SQL a capture trigger of `table` runs to append one entry: `id`,
/// `mask` and `values` are SQL expressions over the trigger's `NEW`/`OLD`
/// row (rules C1, O1: each entry takes the next stamp).
pub(crate) fn append_sql(table: &str, op: Op, id: &str, mask: &str, values: &[String]) -> String {
    let vals = match op {
        Op::Delete => "NULL".to_string(),
        Op::Insert | Op::Update => format!("json_array({})", values.join(", ")),
    };
    format!(
        "UPDATE _sg_meta SET hlc = hlc + 1; \
         INSERT INTO _sg_outbox (txn, tbl, row_id, op, stamp, mask, vals) \
           SELECT txn, '{table}', {id}, {op}, hlc, {mask}, {vals} FROM _sg_meta;",
        op = op.code()
    )
}

/// Appends an entry from Rust, as a capture trigger would.
pub(crate) fn append(
    tx: &Connection,
    schema: &Schema,
    t: usize,
    id: i64,
    op: Op,
    columns: &[usize],
    values: &[Value],
) -> Result<()> {
    let def = schema.table(t);
    let mask = columns.iter().fold(0_i64, |m, &c| m | 1 << c);
    let vals = match op {
        Op::Delete => None,
        Op::Insert | Op::Update => {
            assert_eq!(
                values.len(),
                def.columns.len(),
                "append {}/{id}: values do not match",
                def.name
            );
            Some(serde_json::Value::Array(values.iter().map(json_of).collect()).to_string())
        }
    };
    tx.execute("UPDATE _sg_meta SET hlc = hlc + 1", [])?;
    tx.execute(
        "INSERT INTO _sg_outbox (txn, tbl, row_id, op, stamp, mask, vals) \
         SELECT txn, ?1, ?2, ?3, hlc, ?4, ?5 FROM _sg_meta",
        rusqlite::params![def.name, id, op.code(), mask, vals],
    )?;
    Ok(())
}

/// Whether nothing is pending.
pub(crate) fn is_empty(conn: &Connection) -> Result<bool> {
    Ok(conn
        .prepare_cached("SELECT NOT EXISTS (SELECT 1 FROM _sg_outbox)")?
        .query_row([], |r| r.get(0))?)
}

/// How many entries are pending.
pub(crate) fn pending_count(conn: &Connection) -> Result<u64> {
    let n: i64 = conn
        .prepare_cached("SELECT count(*) FROM _sg_outbox")?
        .query_row([], |r| r.get(0))?;
    Ok(n as u64)
}

/// The leading pending entries one push applies in one remote transaction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Batch {
    /// Seq of the batch's last entry.
    pub last: i64,
    /// How many entries it holds.
    pub entries: u64,
}

/// Rule S2: the next batch holds whole local transactions in seq order,
/// growing until the next transaction would take it past `batch_max` (a
/// transaction larger than that is a batch of its own). Reads only
/// `(seq, txn)`, and stops as soon as the cut is known.
pub(crate) fn cut_batch(conn: &Connection, batch_max: usize) -> Result<Option<Batch>> {
    let mut stmt = conn.prepare_cached("SELECT seq, txn FROM _sg_outbox ORDER BY seq")?;
    let mut rows = stmt.query([])?;
    let (mut taken, mut last): (u64, Option<i64>) = (0, None);
    let (mut group_txn, mut group_len, mut group_last): (Option<i64>, u64, i64) = (None, 0, 0);
    let mut seq_before = i64::MIN;
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
        assert!(seq > seq_before, "outbox seqs increase: {seq} after {seq_before}");
        seq_before = seq;
        group_txn = Some(txn);
        group_len += 1;
        group_last = seq;
    }
    Ok(last.map(|last| Batch { last, entries: taken }))
}

/// A batch of the first pending entry alone, whatever its transaction (the
/// split-transaction mutant).
pub(crate) fn cut_first(conn: &Connection) -> Result<Option<Batch>> {
    let first: Option<i64> = conn.query_row("SELECT min(seq) FROM _sg_outbox", [], |r| r.get(0))?;
    Ok(first.map(|last| Batch { last, entries: 1 }))
}

/// Streams the entries of `batch` to `apply`, in seq order, so memory stays
/// bounded however large one local transaction is.
pub(crate) fn for_each_in_batch(
    conn: &Connection,
    schema: &Schema,
    replica: u32,
    batch: Batch,
    mut apply: impl FnMut(&Entry) -> Result<()>,
) -> Result<()> {
    let mut stmt = conn.prepare_cached(&format!("{SELECT_ENTRY} WHERE seq <= ?1 ORDER BY seq"))?;
    let mut rows = stmt.query([batch.last])?;
    let (mut read, mut seq_before) = (0_u64, i64::MIN);
    while let Some(row) = rows.next()? {
        let entry = decode(schema, replica, row)?;
        assert!(
            entry.seq > seq_before,
            "outbox seqs increase: {} after {seq_before}",
            entry.seq
        );
        seq_before = entry.seq;
        read += 1;
        apply(&entry)?;
    }
    assert_eq!(
        read, batch.entries,
        "the batch up to seq {} was cut with {} entries but holds {read}",
        batch.last, batch.entries
    );
    Ok(())
}

/// Rule S3: removes the entries of `batch`, after the remote transaction
/// that applied them committed.
pub(crate) fn acknowledge(tx: &Connection, batch: Batch) -> Result<()> {
    let removed = tx
        .prepare_cached("DELETE FROM _sg_outbox WHERE seq <= ?1")?
        .execute([batch.last])?;
    assert_eq!(
        removed as u64, batch.entries,
        "acknowledging the batch up to seq {} removed {removed} entries, not {}",
        batch.last, batch.entries
    );
    Ok(())
}

/// Drops every pending entry, keeping the seqs handed out (the memory-outbox
/// mutant: what was pending lived in memory and is gone).
pub(crate) fn forget_pending(conn: &Connection) -> Result<()> {
    conn.execute("DELETE FROM _sg_outbox", [])?;
    Ok(())
}

/// Pending entries for row `id` of table `t`, or for rows merged into it.
pub(crate) fn pending_for(conn: &Connection, schema: &Schema, replica: u32, t: usize, id: i64) -> Result<Vec<Entry>> {
    let mut stmt = conn.prepare_cached(&format!(
        "{SELECT_ENTRY} WHERE tbl = ?1 AND (row_id = ?2 OR row_id IN ({})) ORDER BY seq",
        crate::aliases::MERGED_INTO_SQL
    ))?;
    let mut rows = stmt.query(rusqlite::params![schema.table(t).name, id])?;
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        out.push(decode(schema, replica, row)?);
    }
    Ok(out)
}

fn decode(schema: &Schema, replica: u32, row: &rusqlite::Row<'_>) -> Result<Entry> {
    let seq: i64 = row.get("seq")?;
    let corrupt = |detail: String| Error::CorruptOutbox { seq, detail };
    let tbl: String = row.get("tbl")?;
    let table = schema
        .index(&tbl)
        .map_err(|_| corrupt(format!("unknown table {tbl:?}")))?;
    let n = schema.table(table).columns.len();
    let code: i64 = row.get("op")?;
    let op = Op::of_code(code).ok_or_else(|| corrupt(format!("unknown op {code}")))?;
    let mask: i64 = row.get("mask")?;
    let vals: Option<String> = row.get("vals")?;
    let (columns, values) = match op {
        Op::Insert | Op::Update => {
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
            if op == Op::Insert && mask != (1 << n) - 1 {
                return Err(corrupt(format!("an insert sets every column, mask {mask}")));
            }
            ((0..n).filter(|c| mask >> c & 1 == 1).collect(), values)
        }
        Op::Delete => (Vec::new(), Vec::new()),
    };
    Ok(Entry {
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

fn json_of(v: &Value) -> serde_json::Value {
    match v {
        Value::Null | Value::Blob(_) => serde_json::Value::Null,
        Value::Integer(i) => serde_json::Value::from(*i),
        Value::Real(f) => serde_json::Value::from(*f),
        Value::Text(s) => serde_json::Value::from(s.clone()),
    }
}
