//! `_sg_victims`: rows a pull removed because a local delete reached them
//! before that delete was pushed (rule D2, a delete's victims). Each row
//! names the outbox seq of that delete; the push that applies the delete
//! kills its victims on the remote too, and its acknowledgement forgets
//! them. Victims are not captured (C2): they add nothing pending.

use std::collections::BTreeMap;

use rusqlite::{Connection, OptionalExtension};

use crate::error::{Error, Result};
use crate::schema::Schema;

pub(crate) const VICTIMS_DDL: &str = "
CREATE TABLE _sg_victims (
    tbl TEXT NOT NULL,
    id INTEGER NOT NULL,
    cause INTEGER NOT NULL,
    PRIMARY KEY (tbl, id)
) WITHOUT ROWID;
";

/// The delete row `id` of `table` is remembered as a victim of, if it is.
pub(crate) fn cause_of(conn: &Connection, table: &str, id: i64) -> Result<Option<i64>> {
    let mut stmt = conn.prepare_cached("SELECT cause FROM _sg_victims WHERE tbl = ?1 AND id = ?2")?;
    Ok(stmt.query_row(rusqlite::params![table, id], |r| r.get(0)).optional()?)
}

/// Records `rows` (table index, id) as victims of the delete entry `cause`.
pub(crate) fn record(tx: &Connection, schema: &Schema, rows: &[(usize, i64)], cause: i64) -> Result<()> {
    let mut stmt = tx.prepare_cached("INSERT OR IGNORE INTO _sg_victims (tbl, id, cause) VALUES (?1, ?2, ?3)")?;
    for &(t, id) in rows {
        stmt.execute(rusqlite::params![schema.table(t).name, id, cause])?;
    }
    Ok(())
}

/// The victims of the deletes up to seq `last`: cause → rows in table then
/// id order (the order the push kills them in).
pub(crate) fn up_to(conn: &Connection, schema: &Schema, last: i64) -> Result<BTreeMap<i64, Vec<(usize, i64)>>> {
    let mut stmt = conn.prepare_cached("SELECT cause, tbl, id FROM _sg_victims WHERE cause <= ?1")?;
    let mut rows = stmt.query([last])?;
    let mut out: BTreeMap<i64, Vec<(usize, i64)>> = BTreeMap::new();
    while let Some(row) = rows.next()? {
        let (cause, tbl, id): (i64, String, i64) = (row.get(0)?, row.get(1)?, row.get(2)?);
        let t = schema.index(&tbl).map_err(|_| Error::CorruptOutbox {
            seq: cause,
            detail: format!("a victim of this delete names unknown table {tbl:?}"),
        })?;
        out.entry(cause).or_default().push((t, id));
    }
    for rows in out.values_mut() {
        rows.sort_unstable();
    }
    Ok(out)
}

/// Forgets the victims of the deletes up to seq `last`, acknowledged now.
pub(crate) fn forget_up_to(tx: &Connection, last: i64) -> Result<()> {
    tx.prepare_cached("DELETE FROM _sg_victims WHERE cause <= ?1")?
        .execute([last])?;
    Ok(())
}

/// The cause of every remembered victim, ascending (the write ledger's view;
/// a cache in a format before 3 has none).
pub(crate) fn causes(conn: &Connection) -> Result<Vec<i64>> {
    let kept: bool = conn.query_row(
        "SELECT count(*) > 0 FROM sqlite_master WHERE type = 'table' AND name = '_sg_victims'",
        [],
        |r| r.get(0),
    )?;
    if !kept {
        return Ok(Vec::new());
    }
    let mut stmt = conn.prepare_cached("SELECT cause FROM _sg_victims ORDER BY cause")?;
    let causes = stmt.query_map([], |r| r.get(0))?;
    Ok(causes.collect::<rusqlite::Result<Vec<i64>>>()?)
}
