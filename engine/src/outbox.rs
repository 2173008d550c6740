//! `_sg_outbox`: every captured write not yet acknowledged by the remote
//! (rules C1–C3, S1–S4).
//!
//! Architecture Invariant: this module alone knows the outbox's format — its
//! table, the SQL the capture triggers run to append an entry, how an entry
//! is encoded and decoded, how a batch is cut, read and acknowledged, and
//! how pending entries and the write ledger are read. Everything else goes
//! through these functions.
//!
//! The format (cache format 2): one row per entry, keyed by its seq.
//! - `seq`: goes up by one per captured write and is never reused. SQLite
//!   hands out `max(seq) + 1`, so an acknowledgement keeps the last seq it
//!   removed as a *floor row* (`op` 0): the outbox never forgets how far it
//!   counted, and no capture pays for an AUTOINCREMENT counter.
//! - `txn`: the local transaction (rule S2). `tbl`, `row_id`: the row.
//! - `op`: 1 insert, 2 update, 3 delete, 0 the floor row.
//! - `hlc_offset`: the entry's HLC stamp is `hlc_offset + seq` (see `hlc.rs`).
//! - `mask`: bit `c` set when the write set column `c` (every column for an
//!   insert, the changed ones for an update, none for a delete).
//! - `v0`, `v1`, ...: the row's values after the write, in declared column
//!   order, as SQLite stored them (NULL for a delete and past the table's
//!   columns). There are as many as the widest synced table has columns.
//!
//! There is no index but the seq: a capture writes one row into one B-tree.
//! A pull that needs the pending entries of a row indexes them by row once,
//! in a temporary table (`index_pending`).

use rusqlite::types::Value;
use rusqlite::{Connection, OptionalExtension};

use crate::error::{Error, Result};
use crate::meta::{self, CAPTURE_APPLYING_SQL, CAPTURE_HLC_OFFSET_SQL, CAPTURE_TXN_SQL};
use crate::schema::Schema;
use crate::stamp::Stamp;

/// What a captured write did to its row.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Op {
    Insert,
    Update,
    Delete,
}

/// `op` of the floor row: a seq handed out and acknowledged.
const FLOOR: i64 = 0;

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
    /// For each row remembered as a pending delete's victim (rule D2), the
    /// seq of that delete, ascending; each must still be pending.
    pub victim_causes: Vec<i64>,
}

/// The write ledger of the cache `conn` is connected to.
pub fn read_ledger(conn: &Connection) -> Result<Ledger> {
    let captured_max = seq_max(conn)?;
    let mut stmt = conn.prepare_cached("SELECT seq FROM _sg_outbox WHERE op != 0 ORDER BY seq")?;
    let pending = stmt
        .query_map([], |r| r.get(0))?
        .collect::<rusqlite::Result<Vec<i64>>>()?;
    let victim_causes = crate::victims::causes(conn)?;
    Ok(Ledger {
        captured_max,
        pending,
        victim_causes,
    })
}

/// Every pending entry with a seq above `after`, in seq order.
pub fn read_entries(conn: &Connection, schema: &Schema, after: i64) -> Result<Vec<Entry>> {
    let replica = meta::replica(conn)?;
    let mut stmt = conn.prepare_cached(&select_entries(schema, "WHERE seq > ?1 AND op != 0 ORDER BY seq"))?;
    let mut rows = stmt.query([after])?;
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        out.push(decode(schema, replica, row)?);
    }
    Ok(out)
}

/// Value columns: as many as the widest table has columns.
fn width(schema: &Schema) -> usize {
    schema
        .tables()
        .iter()
        .map(|t| t.columns.len())
        .max()
        .unwrap_or(0)
        .max(1)
}

fn value_columns(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("v{i}")).collect()
}

/// The outbox's table, for `schema`.
pub(crate) fn ddl(schema: &Schema) -> String {
    ddl_named("_sg_outbox", schema)
}

fn ddl_named(name: &str, schema: &Schema) -> String {
    format!(
        "CREATE TABLE {name} (seq INTEGER PRIMARY KEY, txn INTEGER NOT NULL, tbl TEXT NOT NULL, \
         row_id INTEGER NOT NULL, op INTEGER NOT NULL, hlc_offset INTEGER NOT NULL, mask INTEGER NOT NULL, {})",
        value_columns(width(schema)).join(", ")
    )
}

fn select_entries(schema: &Schema, rest: &str) -> String {
    format!(
        "SELECT seq, txn, tbl, row_id, op, hlc_offset, mask, {} FROM _sg_outbox {rest}",
        value_columns(width(schema)).join(", ")
    )
}

/// The SQL statement a capture trigger of `table` runs to append one entry
/// (rules C1, O1). `id`, `mask` and `values` are SQL expressions over the
/// trigger's `NEW`/`OLD` row; `check` is an SQL expression evaluated only
/// while capturing (it may `RAISE`), and the entry is written when it is
/// true. The stamp comes from the meta row's clock and the entry's seq: the
/// trigger writes nothing else.
pub(crate) fn append_sql(table: &str, op: Op, id: &str, mask: &str, values: &[String], check: &str) -> String {
    let mut columns = vec![
        "txn".to_string(),
        "tbl".into(),
        "row_id".into(),
        "op".into(),
        "hlc_offset".into(),
        "mask".into(),
    ];
    columns.extend(value_columns(values.len()));
    let mut exprs = vec![
        CAPTURE_TXN_SQL.to_string(),
        format!("'{table}'"),
        id.to_string(),
        op.code().to_string(),
        CAPTURE_HLC_OFFSET_SQL.to_string(),
        mask.to_string(),
    ];
    exprs.extend(values.iter().cloned());
    // The check names a meta column, so SQLite evaluates it inside the loop
    // over the meta row, after `applying`, never hoisted before it.
    format!(
        "INSERT INTO _sg_outbox ({}) SELECT {} FROM _sg_meta \
         WHERE CASE WHEN {CAPTURE_APPLYING_SQL} != {none} THEN 0 ELSE {check} END;",
        columns.join(", "),
        exprs.join(", "),
        none = meta::APPLYING_NONE,
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
    let params: Vec<String> = (0..values.len()).map(|i| format!("?{}", i + 4)).collect();
    let sql = format!(
        "INSERT INTO _sg_outbox (txn, tbl, row_id, op, hlc_offset, mask{comma}{cols}) \
         SELECT {CAPTURE_TXN_SQL}, ?1, ?2, {op}, {CAPTURE_HLC_OFFSET_SQL}, ?3{comma}{params} FROM _sg_meta",
        comma = if values.is_empty() { "" } else { ", " },
        cols = value_columns(values.len()).join(", "),
        op = op.code(),
        params = params.join(", "),
    );
    let mut bind: Vec<&dyn rusqlite::ToSql> = vec![&def.name, &id, &mask];
    bind.extend(values.iter().map(|v| v as &dyn rusqlite::ToSql));
    tx.prepare_cached(&sql)?.execute(&bind[..])?;
    Ok(())
}

/// The highest seq ever handed out (0 when none was).
pub(crate) fn seq_max(conn: &Connection) -> Result<i64> {
    Ok(conn
        .prepare_cached("SELECT coalesce(max(seq), 0) FROM _sg_outbox")?
        .query_row([], |r| r.get(0))?)
}

/// Whether nothing is pending.
pub(crate) fn is_empty(conn: &Connection) -> Result<bool> {
    Ok(conn
        .prepare_cached("SELECT NOT EXISTS (SELECT 1 FROM _sg_outbox WHERE op != 0)")?
        .query_row([], |r| r.get(0))?)
}

/// How many entries are pending.
pub(crate) fn pending_count(conn: &Connection) -> Result<u64> {
    let n: i64 = conn
        .prepare_cached("SELECT count(*) FROM _sg_outbox WHERE op != 0")?
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
    let mut stmt = conn.prepare_cached("SELECT seq, txn FROM _sg_outbox WHERE op != 0 ORDER BY seq")?;
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
    let first: Option<i64> = conn.query_row("SELECT min(seq) FROM _sg_outbox WHERE op != 0", [], |r| r.get(0))?;
    Ok(first.map(|last| Batch { last, entries: 1 }))
}

/// The seq of the pending delete of row `id` of `table`, if one is pending.
pub(crate) fn pending_delete_of(conn: &Connection, table: &str, id: i64) -> Result<Option<i64>> {
    let mut stmt = conn.prepare_cached("SELECT seq FROM _sg_outbox WHERE tbl = ?1 AND row_id = ?2 AND op = ?3")?;
    Ok(stmt
        .query_row(rusqlite::params![table, id, Op::Delete.code()], |r| r.get(0))
        .optional()?)
}

/// Streams the entries of `batch` to `apply`, in seq order, so memory stays
/// bounded however large one local transaction is.
pub(crate) fn for_each_in_batch(
    conn: &Connection,
    schema: &Schema,
    replica: u32,
    batch: Batch,
    mut apply: impl FnMut(Entry) -> Result<()>,
) -> Result<()> {
    let mut stmt = conn.prepare_cached(&select_entries(schema, "WHERE seq <= ?1 AND op != 0 ORDER BY seq"))?;
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
        apply(entry)?;
    }
    assert_eq!(
        read, batch.entries,
        "the batch up to seq {} was cut with {} entries but holds {read}",
        batch.last, batch.entries
    );
    Ok(())
}

/// Rule S3: removes the entries of `batch`, after the remote transaction
/// that applied them committed, and keeps its last seq as the floor row.
pub(crate) fn acknowledge(tx: &Connection, batch: Batch) -> Result<()> {
    let removed = tx
        .prepare_cached("DELETE FROM _sg_outbox WHERE seq <= ?1 AND op != 0")?
        .execute([batch.last])?;
    assert_eq!(
        removed as u64, batch.entries,
        "acknowledging the batch up to seq {} removed {removed} entries, not {}",
        batch.last, batch.entries
    );
    keep_floor(tx, batch.last)
}

/// Makes `seq` the floor row, replacing the floor rows below it.
fn keep_floor(tx: &Connection, seq: i64) -> Result<()> {
    tx.prepare_cached("DELETE FROM _sg_outbox WHERE seq < ?1 AND op = ?2")?
        .execute([seq, FLOOR])?;
    tx.prepare_cached(
        "INSERT INTO _sg_outbox (seq, txn, tbl, row_id, op, hlc_offset, mask) VALUES (?1, 0, '', 0, ?2, 0, 0)",
    )?
    .execute([seq, FLOOR])?;
    Ok(())
}

/// Makes sure the next seq handed out is above `seq`, with a floor row.
pub(crate) fn keep_seqs_up_to(tx: &Connection, seq: i64) -> Result<()> {
    if seq_max(tx)? < seq {
        keep_floor(tx, seq)?;
    }
    Ok(())
}

/// Drops every pending entry, keeping the seqs handed out (the memory-outbox
/// mutant: what was pending lived in memory and is gone).
pub(crate) fn forget_pending(conn: &Connection) -> Result<()> {
    let max = seq_max(conn)?;
    conn.execute("DELETE FROM _sg_outbox", [])?;
    if max > 0 {
        keep_floor(conn, max)?;
    }
    Ok(())
}

/// Whether a pull found pending entries, which it then looks up by row.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct PendingIndex {
    any: bool,
}

/// Indexes the pending entries by row for a pull, in a temporary table of
/// this connection (rebuilt at every pull: a pull captures nothing, rule C2,
/// so the index stays exact for the whole pull).
pub(crate) fn index_pending(tx: &Connection) -> Result<PendingIndex> {
    if is_empty(tx)? {
        return Ok(PendingIndex { any: false });
    }
    tx.execute_batch(
        "CREATE TEMP TABLE IF NOT EXISTS _sg_pending_rows \
           (tbl TEXT NOT NULL, row_id INTEGER NOT NULL, seq INTEGER NOT NULL, PRIMARY KEY (tbl, row_id, seq)) \
           WITHOUT ROWID; \
         DELETE FROM temp._sg_pending_rows; \
         INSERT INTO temp._sg_pending_rows SELECT tbl, row_id, seq FROM _sg_outbox WHERE op != 0;",
    )?;
    Ok(PendingIndex { any: true })
}

/// Pending entries for row `id` of table `t`, or for rows merged into it.
pub(crate) fn pending_for(
    conn: &Connection,
    index: PendingIndex,
    schema: &Schema,
    replica: u32,
    t: usize,
    id: i64,
) -> Result<Vec<Entry>> {
    if !index.any {
        return Ok(Vec::new());
    }
    let sql = format!(
        "SELECT o.seq, o.txn, o.tbl, o.row_id, o.op, o.hlc_offset, o.mask, {} \
         FROM temp._sg_pending_rows p JOIN _sg_outbox o ON o.seq = p.seq \
         WHERE p.tbl = ?1 AND (p.row_id = ?2 OR p.row_id IN ({})) ORDER BY p.seq",
        value_columns(width(schema))
            .iter()
            .map(|c| format!("o.{c}"))
            .collect::<Vec<_>>()
            .join(", "),
        crate::aliases::MERGED_INTO_SQL
    );
    let mut stmt = conn.prepare_cached(&sql)?;
    let mut rows = stmt.query(rusqlite::params![schema.table(t).name, id])?;
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        out.push(decode(schema, replica, row)?);
    }
    Ok(out)
}

/// Reads one entry from a row of `select_entries` (columns by position).
fn decode(schema: &Schema, replica: u32, row: &rusqlite::Row<'_>) -> Result<Entry> {
    let seq: i64 = row.get(0)?;
    let corrupt = |detail: String| Error::CorruptOutbox { seq, detail };
    let tbl: String = row.get(2)?;
    let table = schema
        .index(&tbl)
        .map_err(|_| corrupt(format!("unknown table {tbl:?}")))?;
    let n = schema.table(table).columns.len();
    let code: i64 = row.get(4)?;
    let op = Op::of_code(code).ok_or_else(|| corrupt(format!("unknown op {code}")))?;
    let hlc_offset: i64 = row.get(5)?;
    let mask: i64 = row.get(6)?;
    let all = (1_i64 << n) - 1;
    let valid_mask = match op {
        Op::Insert => mask == all,
        Op::Update => mask > 0 && mask & !all == 0,
        Op::Delete => mask == 0,
    };
    if !valid_mask {
        return Err(corrupt(format!(
            "column mask {mask} does not fit a {op:?} of {n} columns"
        )));
    }
    let (columns, values) = match op {
        Op::Insert | Op::Update => (
            (0..n).filter(|c| mask >> c & 1 == 1).collect(),
            (0..n)
                .map(|c| row.get::<_, Value>(7 + c))
                .collect::<rusqlite::Result<Vec<_>>>()?,
        ),
        Op::Delete => (Vec::new(), Vec::new()),
    };
    let hlc = hlc_offset
        .checked_add(seq)
        .filter(|&hlc| hlc > 0)
        .ok_or_else(|| corrupt(format!("stamp offset {hlc_offset} gives no positive stamp")))?;
    Ok(Entry {
        seq,
        txn: row.get(1)?,
        table,
        id: row.get(3)?,
        op,
        stamp: Stamp { hlc, replica },
        columns,
        values,
    })
}

/// Format 1 to 2: the entries move to the new table, values out of JSON
/// into columns, stamps into offsets from the seq; the highest seq ever
/// handed out (kept by format 1's AUTOINCREMENT counter) becomes the floor
/// row when no pending entry holds it. Returns that seq.
pub(crate) fn upgrade_to_2(tx: &Connection, schema: &Schema) -> Result<i64> {
    let highest: i64 = tx.query_row(
        "SELECT max(coalesce((SELECT seq FROM sqlite_sequence WHERE name = '_sg_outbox'), 0), \
                    coalesce((SELECT max(seq) FROM _sg_outbox), 0))",
        [],
        |r| r.get(0),
    )?;
    let pending_before: i64 = tx.query_row("SELECT count(*) FROM _sg_outbox", [], |r| r.get(0))?;
    tx.execute_batch(&ddl_named("_sg_outbox_2", schema))?;
    let n = width(schema);
    let extract: Vec<String> = (0..n).map(|i| format!("json_extract(vals, '$[{i}]')")).collect();
    tx.execute_batch(&format!(
        "INSERT INTO _sg_outbox_2 (seq, txn, tbl, row_id, op, hlc_offset, mask, {}) \
         SELECT seq, txn, tbl, row_id, op, stamp - seq, mask, {} FROM _sg_outbox;",
        value_columns(n).join(", "),
        extract.join(", ")
    ))?;
    tx.execute_batch(
        "DROP TABLE _sg_outbox; \
         ALTER TABLE _sg_outbox_2 RENAME TO _sg_outbox; \
         DELETE FROM sqlite_sequence WHERE name = '_sg_outbox';",
    )?;
    if highest > seq_max(tx)? {
        tx.execute(
            "INSERT INTO _sg_outbox (seq, txn, tbl, row_id, op, hlc_offset, mask) VALUES (?1, 0, '', 0, ?2, 0, 0)",
            [highest, FLOOR],
        )?;
    }
    assert_eq!(
        pending_count(tx)? as i64,
        pending_before,
        "the upgrade keeps every pending entry"
    );
    assert_eq!(seq_max(tx)?, highest, "the upgrade keeps the highest seq handed out");
    Ok(highest)
}
