//! `_sg_meta`: the one row of a cache's sync state — its format, its replica
//! id, the id reservations, the hybrid logical clock, the local transaction
//! counter, the pull cursor, and whether a pull is applying rows right now.

use rusqlite::Connection;

use crate::error::Result;

/// `applying` while the application writes: triggers capture.
pub(crate) const APPLYING_NONE: i64 = 0;
/// While a pull applies remote rows: no capture, but deletes leave tombstones.
pub(crate) const APPLYING_PULL: i64 = 1;
/// While a pull removes a row merged into a survivor: no capture, no tombstone.
pub(crate) const APPLYING_MERGE: i64 = 2;

/// `next_id`: ids below it are reserved by `Replica::next_id` (minting also
/// skips every id already used, see `ids::next_free`). `hlc`: the clock's
/// value when the outbox had handed out seqs up to `hlc_seq`; every captured
/// write since advanced it by one (see `hlc.rs`).
const META_DDL: &str = "
CREATE TABLE _sg_meta (
    k INTEGER PRIMARY KEY CHECK (k = 1),
    format INTEGER NOT NULL,
    replica INTEGER NOT NULL,
    next_id INTEGER NOT NULL,
    hlc INTEGER NOT NULL,
    hlc_seq INTEGER NOT NULL,
    txn INTEGER NOT NULL,
    applying INTEGER NOT NULL,
    cursor INTEGER NOT NULL
);
";

/// Creates the row of a new cache in `format` for `replica`, whose first id
/// is `first_id`.
pub(crate) fn create(tx: &Connection, format: i64, replica: u32, first_id: i64) -> Result<()> {
    tx.execute_batch(META_DDL)?;
    tx.execute(
        "INSERT INTO _sg_meta (k, format, replica, next_id, hlc, hlc_seq, txn, applying, cursor) \
         VALUES (1, ?1, ?2, ?3, 0, 0, 0, ?4, 0)",
        rusqlite::params![format, replica, first_id, APPLYING_NONE],
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

/// Format 1 to 2: the clock is kept with the outbox seq it was taken at
/// (`seq_max`, the highest seq handed out), and the id range, which follows
/// from the replica id, is no longer stored. The triggers that read the old
/// columns must be gone.
pub(crate) fn upgrade_to_2(tx: &Connection, seq_max: i64) -> Result<()> {
    tx.execute_batch(
        "ALTER TABLE _sg_meta ADD COLUMN hlc_seq INTEGER NOT NULL DEFAULT 0; \
         ALTER TABLE _sg_meta DROP COLUMN id_lo; \
         ALTER TABLE _sg_meta DROP COLUMN id_hi;",
    )?;
    tx.execute("UPDATE _sg_meta SET hlc_seq = ?1", [seq_max])?;
    Ok(())
}

pub(crate) fn set_format(tx: &Connection, format: i64) -> Result<()> {
    tx.execute("UPDATE _sg_meta SET format = ?1", [format])?;
    Ok(())
}

pub(crate) fn replica(conn: &Connection) -> Result<u32> {
    Ok(conn.query_row("SELECT replica FROM _sg_meta", [], |r| r.get(0))?)
}

/// Ids below this are reserved.
pub(crate) fn next_id(conn: &Connection) -> Result<i64> {
    Ok(conn
        .prepare_cached("SELECT next_id FROM _sg_meta")?
        .query_row([], |r| r.get(0))?)
}

/// Reserves the ids below `next_id`.
pub(crate) fn set_next_id(tx: &Connection, next_id: i64) -> Result<()> {
    let before = self::next_id(tx)?;
    assert!(next_id > before, "reservations only grow: from {before} to {next_id}");
    tx.execute("UPDATE _sg_meta SET next_id = ?1", [next_id])?;
    Ok(())
}

/// The stored clock: `(hlc, hlc_seq)`.
pub(crate) fn clock(conn: &Connection) -> Result<(i64, i64)> {
    Ok(conn
        .prepare_cached("SELECT hlc, hlc_seq FROM _sg_meta")?
        .query_row([], |r| Ok((r.get(0)?, r.get(1)?)))?)
}

/// Stores the clock as `hlc` at outbox seq `hlc_seq`; with `new_txn`, the
/// writes that follow belong to a new local transaction.
pub(crate) fn set_clock(tx: &Connection, hlc: i64, hlc_seq: i64, new_txn: bool) -> Result<()> {
    let sql = if new_txn {
        "UPDATE _sg_meta SET hlc = ?1, hlc_seq = ?2, txn = txn + 1"
    } else {
        "UPDATE _sg_meta SET hlc = ?1, hlc_seq = ?2"
    };
    tx.prepare_cached(sql)?.execute([hlc, hlc_seq])?;
    Ok(())
}

pub(crate) fn cursor(conn: &Connection) -> Result<i64> {
    Ok(conn.query_row("SELECT cursor FROM _sg_meta", [], |r| r.get(0))?)
}

/// Moves the cursor. It only moves forward (rule P1).
pub(crate) fn set_cursor(tx: &Connection, cursor: i64) -> Result<()> {
    let before = self::cursor(tx)?;
    assert!(
        cursor >= before,
        "the cursor moves only forward: from {before} to {cursor}"
    );
    tx.execute("UPDATE _sg_meta SET cursor = ?1", [cursor])?;
    Ok(())
}

pub(crate) fn set_applying(tx: &Connection, mode: i64) -> Result<()> {
    tx.prepare_cached("UPDATE _sg_meta SET applying = ?1")?
        .execute([mode])?;
    Ok(())
}

/// SQL for the columns a capture trigger reads from the meta row: the
/// local transaction, the clock's offset from the outbox seq (an entry's
/// HLC is this plus its seq), and whether it should capture at all.
pub(crate) const CAPTURE_TXN_SQL: &str = "txn";
pub(crate) const CAPTURE_HLC_OFFSET_SQL: &str = "hlc - hlc_seq";
pub(crate) const CAPTURE_APPLYING_SQL: &str = "applying";
