//! `_sg_tombstones`: ids deleted here or learned deleted, never live again
//! (rule D1).

use rusqlite::{Connection, OptionalExtension};

use crate::error::Result;

pub(crate) const TOMBSTONES_DDL: &str = "
CREATE TABLE _sg_tombstones (
    tbl TEXT NOT NULL,
    id INTEGER NOT NULL,
    PRIMARY KEY (tbl, id)
) WITHOUT ROWID;
";

/// SQL that is true when `id` (an SQL expression) of `table` is tombstoned.
pub(crate) fn is_tombstoned_sql(table: &str, id: &str) -> String {
    format!("EXISTS (SELECT 1 FROM _sg_tombstones WHERE tbl = '{table}' AND id = {id})")
}

/// The start of an `INSERT ... SELECT` that tombstones `id` (an SQL
/// expression) of `table`; the caller adds `FROM` and `WHERE`.
pub(crate) fn add_select_sql(table: &str, id: &str) -> String {
    format!("INSERT OR IGNORE INTO _sg_tombstones (tbl, id) SELECT '{table}', {id}")
}

pub(crate) fn tombstoned(conn: &Connection, table: &str, id: i64) -> Result<bool> {
    let mut stmt = conn.prepare_cached("SELECT 1 FROM _sg_tombstones WHERE tbl = ?1 AND id = ?2")?;
    Ok(stmt
        .query_row(rusqlite::params![table, id], |_| Ok(()))
        .optional()?
        .is_some())
}

pub(crate) fn add(tx: &Connection, table: &str, id: i64) -> Result<()> {
    tx.prepare_cached("INSERT OR IGNORE INTO _sg_tombstones (tbl, id) VALUES (?1, ?2)")?
        .execute(rusqlite::params![table, id])?;
    Ok(())
}

/// The largest id of `table` in `[lo, hi)` here.
pub(crate) fn max_id_in(conn: &Connection, table: &str, lo: i64, hi: i64) -> Result<Option<i64>> {
    let mut stmt = conn.prepare_cached("SELECT max(id) FROM _sg_tombstones WHERE tbl = ?1 AND id >= ?2 AND id < ?3")?;
    Ok(stmt.query_row(rusqlite::params![table, lo, hi], |r| r.get(0))?)
}
