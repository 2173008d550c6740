//! `_sg_aliases`: ids merged by natural key into a survivor (rules N2, N3).
//! An alias names its survivor forever.

use rusqlite::{Connection, OptionalExtension};

use crate::error::{Error, Result};

/// Most aliases one id resolves through. The rules make chains short (a row
/// merged locally may itself have had rows merged into it); a longer chain
/// means a corrupt cache, reported as `Error::AliasChainTooLong`.
pub const ALIAS_HOPS_MAX: usize = 8;

pub(crate) const ALIASES_DDL: &str = "
CREATE TABLE _sg_aliases (
    tbl TEXT NOT NULL,
    id INTEGER NOT NULL,
    survivor INTEGER NOT NULL,
    PRIMARY KEY (tbl, id)
) WITHOUT ROWID;
CREATE INDEX _sg_aliases_survivor ON _sg_aliases (tbl, survivor);
";

/// SQL that is true when `id` (an SQL expression) of `table` is an alias.
pub(crate) fn is_alias_sql(table: &str, id: &str) -> String {
    format!("EXISTS (SELECT 1 FROM _sg_aliases WHERE tbl = '{table}' AND id = {id})")
}

/// SQL for the ids merged into survivor `?2` of table `?1`.
pub(crate) const MERGED_INTO_SQL: &str = "SELECT id FROM _sg_aliases WHERE tbl = ?1 AND survivor = ?2";

/// The survivor `id` was merged into, if it was.
pub(crate) fn survivor(conn: &Connection, table: &str, id: i64) -> Result<Option<i64>> {
    let mut stmt = conn.prepare_cached("SELECT survivor FROM _sg_aliases WHERE tbl = ?1 AND id = ?2")?;
    Ok(stmt.query_row(rusqlite::params![table, id], |r| r.get(0)).optional()?)
}

/// Whether the cache holds any alias at all (most never do: only a
/// natural-key merge makes one).
pub(crate) fn any(conn: &Connection) -> Result<bool> {
    let mut stmt = conn.prepare_cached("SELECT EXISTS (SELECT 1 FROM _sg_aliases)")?;
    Ok(stmt.query_row([], |r| r.get(0))?)
}

pub(crate) fn aliased(conn: &Connection, table: &str, id: i64) -> Result<bool> {
    Ok(survivor(conn, table, id)?.is_some())
}

/// Follows aliases from `id` to the row that stands for it now. A chain
/// longer than `ALIAS_HOPS_MAX` is an error, never a silent stop.
pub(crate) fn resolve(conn: &Connection, table: &str, id: i64) -> Result<i64> {
    let mut at = id;
    for _ in 0..ALIAS_HOPS_MAX {
        match survivor(conn, table, at)? {
            Some(next) => at = next,
            None => return Ok(at),
        }
    }
    match survivor(conn, table, at)? {
        None => Ok(at),
        Some(_) => Err(Error::AliasChainTooLong {
            table: table.to_string(),
            id,
            hops_max: ALIAS_HOPS_MAX,
        }),
    }
}

/// Records that `id` was merged into `survivor`.
pub(crate) fn record(tx: &Connection, table: &str, id: i64, survivor: i64) -> Result<()> {
    tx.prepare_cached("INSERT OR REPLACE INTO _sg_aliases (tbl, id, survivor) VALUES (?1, ?2, ?3)")?
        .execute(rusqlite::params![table, id, survivor])?;
    Ok(())
}

/// The largest id of `table` in `[lo, hi)` here.
pub(crate) fn max_id_in(conn: &Connection, table: &str, lo: i64, hi: i64) -> Result<Option<i64>> {
    let mut stmt = conn.prepare_cached("SELECT max(id) FROM _sg_aliases WHERE tbl = ?1 AND id >= ?2 AND id < ?3")?;
    Ok(stmt.query_row(rusqlite::params![table, lo, hi], |r| r.get(0))?)
}
