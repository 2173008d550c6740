//! Caches as older versions of the reference engine left them: the state an
//! application update finds on a device. `downgrade` rewrites a cache in the
//! reference engine's cache format 3 into format 2, 1 or 0 with the same
//! meaning — every pending write with its seq, transaction, values and
//! stamp, the highest seq ever handed out, the clock, the cursor, the id
//! reservations, tombstones and aliases — so a correct engine opens it,
//! upgrades it, and goes on exactly as if nothing had happened; the model is
//! told nothing.
//!
//! The formats are the engine's (`engine/src/format.rs` lists them); the
//! SQL here is written from their description and from the files in
//! `engine/tests/fixtures/v0`, never by calling the engine's upgrade code,
//! so a bug there cannot hide itself. A test below holds the tables this
//! writes to the fixture's text. The old capture triggers are not written
//! back (they are gone, as after a migration): an old cache's triggers
//! always differ from the new engine's, which must reinstall its own.
//!
//! Architecture Invariant: only the reference engine's format-3 caches are
//! rewritten; any other file is left alone (`Downgrade::NotReferenceFormat`).

use rusqlite::{Connection, TransactionBehavior};
use syncgate_model as model;

use super::PlaceError;
use crate::schema::quote;

/// The cache formats an older reference engine wrote.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LegacyFormat {
    /// Before the meta row recorded a format: outbox values as JSON, stamps
    /// stored, an AUTOINCREMENT seq, the id range stored.
    V0,
    /// Format 0 with the format recorded.
    V1,
    /// Format 3 without `_sg_victims`: a pending delete's victims were not
    /// remembered.
    V2,
}

impl LegacyFormat {
    pub fn from_number(n: u8) -> Option<LegacyFormat> {
        match n {
            0 => Some(LegacyFormat::V0),
            1 => Some(LegacyFormat::V1),
            2 => Some(LegacyFormat::V2),
            _ => None,
        }
    }

    pub fn number(self) -> u8 {
        match self {
            LegacyFormat::V0 => 0,
            LegacyFormat::V1 => 1,
            LegacyFormat::V2 => 2,
        }
    }
}

/// What `downgrade` did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Downgrade {
    /// The cache is now in the older format; it holds `pending` writes.
    Done { pending: usize },
    /// The file is not a reference-engine cache in format 3: left alone.
    NotReferenceFormat,
    /// The cache holds what the older format could not keep (formats 0 and
    /// 1 held outbox values as JSON: no blobs, reals as decimal text;
    /// formats before 3 kept no delete's victims), so no older version of
    /// the engine ever left such a cache: left alone.
    NoOlderVersion,
}

/// The format-0 meta row (`engine/tests/fixtures/v0`); format 1 adds
/// `format` at the end, as the engine's `ALTER TABLE` did.
const META_V0_DDL: &str = "CREATE TABLE _sg_meta_old (
    k INTEGER PRIMARY KEY CHECK (k = 1),
    replica INTEGER NOT NULL,
    id_lo INTEGER NOT NULL,
    id_hi INTEGER NOT NULL,
    next_id INTEGER NOT NULL,
    hlc INTEGER NOT NULL,
    txn INTEGER NOT NULL,
    applying INTEGER NOT NULL,
    cursor INTEGER NOT NULL
)";

/// The format-0/1 outbox: one row per pending write, its stamp stored, its
/// values a JSON array in declared column order (NULL for a delete).
const OUTBOX_V0_DDL: &str = "CREATE TABLE _sg_outbox_old (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    txn INTEGER NOT NULL,
    tbl TEXT NOT NULL,
    row_id INTEGER NOT NULL,
    op INTEGER NOT NULL,
    stamp INTEGER NOT NULL,
    mask INTEGER NOT NULL,
    vals TEXT
)";

const OUTBOX_V0_INDEX: &str = "CREATE INDEX _sg_outbox_row ON _sg_outbox (tbl, row_id)";

/// Format-2 outbox op codes: 0 is the floor row (a seq handed out and
/// acknowledged), 3 a delete.
const OP_FLOOR: i64 = 0;
const OP_DELETE: i64 = 3;

/// Whether the older formats could keep a cache of `schema`: their outbox
/// held values as JSON, which has no blobs and writes reals as decimal text.
pub fn older_formats_hold(schema: &model::Schema) -> bool {
    let json_holds = |c: &model::Column| matches!(c.kind, model::ColumnKind::Integer | model::ColumnKind::Text);
    schema.tables.iter().all(|t| t.columns.iter().all(json_holds))
}

/// Rewrites the cache behind `conn` into `to`, in one transaction. The
/// engine must not have the file open.
pub(super) fn downgrade(
    conn: &mut Connection,
    schema: &model::Schema,
    to: LegacyFormat,
) -> Result<Downgrade, PlaceError> {
    if to != LegacyFormat::V2 && !older_formats_hold(schema) {
        return Ok(Downgrade::NoOlderVersion);
    }
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    if !is_format_3(&tx)? {
        return Ok(Downgrade::NotReferenceFormat);
    }
    let victims: i64 = tx.query_row("SELECT count(*) FROM _sg_victims", [], |r| r.get(0))?;
    if victims > 0 {
        return Ok(Downgrade::NoOlderVersion);
    }
    let triggers: Vec<String> = {
        let mut stmt =
            tx.prepare("SELECT name FROM sqlite_master WHERE type = 'trigger' AND name LIKE '\\_sg\\_%' ESCAPE '\\'")?;
        let names = stmt.query_map([], |r| r.get(0))?;
        names.collect::<rusqlite::Result<_>>()?
    };
    for name in &triggers {
        tx.execute_batch(&format!("DROP TRIGGER {}", quote(name)))?;
    }

    tx.execute_batch("DROP TABLE _sg_victims; UPDATE _sg_meta SET format = 2;")?;
    if to == LegacyFormat::V2 {
        let pending: i64 = tx.query_row("SELECT count(*) FROM _sg_outbox WHERE op != ?1", [OP_FLOOR], |r| {
            r.get(0)
        })?;
        tx.commit()?;
        return Ok(Downgrade::Done {
            pending: usize::try_from(pending).unwrap_or(0),
        });
    }
    let (replica, hlc, hlc_seq): (i64, i64, i64) =
        tx.query_row("SELECT replica, hlc, hlc_seq FROM _sg_meta", [], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })?;
    let seq_max: i64 = tx.query_row("SELECT coalesce(max(seq), 0) FROM _sg_outbox", [], |r| r.get(0))?;
    let pending_before: i64 = tx.query_row("SELECT count(*) FROM _sg_outbox WHERE op != ?1", [OP_FLOOR], |r| {
        r.get(0)
    })?;
    // Format 2's clock is `hlc` at seq `hlc_seq`, one tick per write since;
    // the older formats stored the clock's value itself.
    let clock_now = hlc + (seq_max - hlc_seq);

    tx.execute_batch(OUTBOX_V0_DDL)?;
    for table in &schema.tables {
        let values: Vec<String> = (0..table.columns.len()).map(|i| format!("v{i}")).collect();
        tx.execute(
            &format!(
                "INSERT INTO _sg_outbox_old (seq, txn, tbl, row_id, op, stamp, mask, vals) \
                 SELECT seq, txn, tbl, row_id, op, hlc_offset + seq, mask, \
                        CASE WHEN op = ?2 THEN NULL ELSE json_array({}) END \
                 FROM _sg_outbox WHERE tbl = ?1 AND op != ?3",
                values.join(", ")
            ),
            rusqlite::params![table.name, OP_DELETE, OP_FLOOR],
        )?;
    }
    tx.execute_batch(
        "DROP TABLE _sg_outbox; \
         ALTER TABLE _sg_outbox_old RENAME TO _sg_outbox; \
         DELETE FROM sqlite_sequence WHERE name = '_sg_outbox';",
    )?;
    tx.execute_batch(OUTBOX_V0_INDEX)?;
    if seq_max > 0 {
        // The AUTOINCREMENT counter keeps the highest seq ever handed out,
        // acknowledged ones included.
        tx.execute(
            "INSERT INTO sqlite_sequence (name, seq) VALUES ('_sg_outbox', ?1)",
            [seq_max],
        )?;
    }

    let replica =
        u32::try_from(replica).map_err(|_| PlaceError::Content(format!("replica id {replica} is not a u32")))?;
    if replica >= syncgate_engine::REPLICAS_MAX {
        return Err(PlaceError::Content(format!(
            "replica id {replica} is not below REPLICAS_MAX"
        )));
    }
    let (id_lo, id_hi) = syncgate_engine::id_space(replica);
    tx.execute_batch(META_V0_DDL)?;
    tx.execute(
        "INSERT INTO _sg_meta_old (k, replica, id_lo, id_hi, next_id, hlc, txn, applying, cursor) \
         SELECT k, replica, ?1, ?2, next_id, ?3, txn, applying, cursor FROM _sg_meta",
        [id_lo, id_hi, clock_now],
    )?;
    tx.execute_batch("DROP TABLE _sg_meta; ALTER TABLE _sg_meta_old RENAME TO _sg_meta;")?;
    if to == LegacyFormat::V1 {
        tx.execute_batch(
            "ALTER TABLE _sg_meta ADD COLUMN format INTEGER NOT NULL DEFAULT 0; UPDATE _sg_meta SET format = 1;",
        )?;
    }

    let pending_after: i64 = tx.query_row("SELECT count(*) FROM _sg_outbox", [], |r| r.get(0))?;
    assert_eq!(pending_after, pending_before, "the downgrade keeps every pending write");
    tx.commit()?;
    Ok(Downgrade::Done {
        pending: usize::try_from(pending_after).unwrap_or(0),
    })
}

/// Marks the reference-format cache behind `conn` as written in `format`
/// by a newer version of the engine (only the recorded number changes: a
/// newer version's other changes cannot be known here, and an engine must
/// refuse the file before it reads anything else). Returns the format it
/// had, or `None` when the file is not a format-3 reference cache.
pub(super) fn mark_newer(conn: &mut Connection, format: i64) -> Result<Option<i64>, PlaceError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    if !is_format_3(&tx)? {
        return Ok(None);
    }
    assert!(format > 3, "a newer version's format is above 3, not {format}");
    tx.execute("UPDATE _sg_meta SET format = ?1", [format])?;
    tx.commit()?;
    Ok(Some(3))
}

/// Puts back the format `mark_newer` replaced (the newer version is back).
pub(super) fn restore_format(conn: &Connection, format: i64) -> Result<(), PlaceError> {
    conn.execute("UPDATE _sg_meta SET format = ?1", [format])
        .map(|_| ())
        .map_err(PlaceError::from)
}

/// Whether the file holds a reference-engine cache in format 3 (its meta row
/// records format 3, its outbox stores stamps as offsets, and it keeps
/// victims).
fn is_format_3(conn: &Connection) -> Result<bool, PlaceError> {
    let has_column = |table: &str, column: &str| -> Result<bool, PlaceError> {
        conn.query_row(
            "SELECT count(*) > 0 FROM pragma_table_info(?1) WHERE name = ?2",
            [table, column],
            |r| r.get(0),
        )
        .map_err(PlaceError::from)
    };
    if !has_column("_sg_meta", "format")?
        || !has_column("_sg_meta", "hlc_seq")?
        || !has_column("_sg_outbox", "hlc_offset")?
        || !has_column("_sg_victims", "cause")?
    {
        return Ok(false);
    }
    let format: i64 = conn.query_row("SELECT format FROM _sg_meta", [], |r| r.get(0))?;
    Ok(format == 3)
}

#[cfg(test)]
mod tests;
