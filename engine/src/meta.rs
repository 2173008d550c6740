//! `_sg_meta`: the one row of a cache's sync state — its replica id, the
//! next id to mint, the hybrid logical clock, the local transaction counter,
//! the pull cursor, and whether a pull is applying rows right now.

use rusqlite::Connection;

use crate::error::Result;

/// `applying` while the application writes: triggers capture.
pub(crate) const APPLYING_NONE: i64 = 0;
/// While a pull applies remote rows: no capture, but deletes leave tombstones.
pub(crate) const APPLYING_PULL: i64 = 1;
/// While a pull removes a row merged into a survivor: no capture, no tombstone.
pub(crate) const APPLYING_MERGE: i64 = 2;

pub(crate) const META_DDL: &str = "
CREATE TABLE IF NOT EXISTS _sg_meta (
    k INTEGER PRIMARY KEY CHECK (k = 1),
    format INTEGER NOT NULL,
    replica INTEGER NOT NULL,
    id_lo INTEGER NOT NULL,
    id_hi INTEGER NOT NULL,
    next_id INTEGER NOT NULL,
    hlc INTEGER NOT NULL,
    txn INTEGER NOT NULL,
    applying INTEGER NOT NULL,
    cursor INTEGER NOT NULL
);
";

/// Creates the row of a new cache in `format` for `replica`, whose ids are
/// `[lo, hi)`.
pub(crate) fn create(tx: &Connection, format: i64, replica: u32, (lo, hi): (i64, i64)) -> Result<()> {
    tx.execute_batch(META_DDL)?;
    tx.execute(
        "INSERT INTO _sg_meta (k, format, replica, id_lo, id_hi, next_id, hlc, txn, applying, cursor) \
         VALUES (1, ?1, ?2, ?3, ?4, ?3, 0, 0, ?5, 0)",
        rusqlite::params![format, replica, lo, hi, APPLYING_NONE],
    )?;
    Ok(())
}

/// The format the cache file is in: 0 before caches recorded one.
pub(crate) fn format(conn: &Connection) -> Result<i64> {
    let recorded: bool = conn.query_row(
        "SELECT count(*) > 0 FROM pragma_table_info('_sg_meta') WHERE name = 'format'",
        [],
        |r| r.get(0),
    )?;
    if !recorded {
        return Ok(0);
    }
    Ok(conn.query_row("SELECT format FROM _sg_meta", [], |r| r.get(0))?)
}

/// Format 0 to 1: the meta row records the format.
pub(crate) fn upgrade_to_1(tx: &Connection) -> Result<()> {
    tx.execute_batch("ALTER TABLE _sg_meta ADD COLUMN format INTEGER NOT NULL DEFAULT 0")?;
    Ok(())
}

pub(crate) fn set_format(tx: &Connection, format: i64) -> Result<()> {
    tx.execute("UPDATE _sg_meta SET format = ?1", [format])?;
    Ok(())
}

pub(crate) fn replica(conn: &Connection) -> Result<u32> {
    Ok(conn.query_row("SELECT replica FROM _sg_meta", [], |r| r.get(0))?)
}

/// Starts a local transaction's clock (rule O1): `hlc = max(hlc, floor)`, or
/// `hlc = floor` when `wall_clock` (the wall-clock-lww mutant), and a new txn.
pub(crate) fn tick(tx: &Connection, floor: i64, wall_clock: bool) -> Result<()> {
    let sql = if wall_clock {
        "UPDATE _sg_meta SET hlc = ?1, txn = txn + 1"
    } else {
        "UPDATE _sg_meta SET hlc = max(hlc, ?1), txn = txn + 1"
    };
    tx.prepare_cached(sql)?.execute([floor])?;
    Ok(())
}

/// The next id to mint (not reserved).
pub(crate) fn next_id(conn: &Connection) -> Result<i64> {
    Ok(conn
        .prepare_cached("SELECT next_id FROM _sg_meta")?
        .query_row([], |r| r.get(0))?)
}

/// Mints the next id and reserves it.
pub(crate) fn reserve_next_id(tx: &Connection) -> Result<i64> {
    Ok(tx.query_row(
        "UPDATE _sg_meta SET next_id = next_id + 1 RETURNING next_id - 1",
        [],
        |r| r.get(0),
    )?)
}

/// The pull cursor and the clock.
pub(crate) fn cursor_and_hlc(conn: &Connection) -> Result<(i64, i64)> {
    Ok(conn.query_row("SELECT cursor, hlc FROM _sg_meta", [], |r| Ok((r.get(0)?, r.get(1)?)))?)
}

pub(crate) fn set_applying(tx: &Connection, mode: i64) -> Result<()> {
    tx.prepare_cached("UPDATE _sg_meta SET applying = ?1")?
        .execute([mode])?;
    Ok(())
}

/// Moves the cursor. The cursor only moves forward (rule P1).
pub(crate) fn set_cursor(tx: &Connection, cursor: i64) -> Result<()> {
    let (before, _) = cursor_and_hlc(tx)?;
    assert!(
        cursor >= before,
        "the cursor moves only forward: from {before} to {cursor}"
    );
    tx.execute("UPDATE _sg_meta SET cursor = ?1", [cursor])?;
    Ok(())
}

/// Ends a pull: the new cursor and clock, and capture back on (rule P5).
pub(crate) fn finish_pull(tx: &Connection, cursor: i64, hlc: i64) -> Result<()> {
    let (cursor_before, _) = cursor_and_hlc(tx)?;
    assert!(
        cursor >= cursor_before,
        "the cursor moves only forward: from {cursor_before} to {cursor}"
    );
    tx.execute(
        "UPDATE _sg_meta SET cursor = ?1, hlc = ?2, applying = ?3",
        rusqlite::params![cursor, hlc, APPLYING_NONE],
    )?;
    Ok(())
}
