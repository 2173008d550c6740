//! The cache file's format: its sync tables and triggers, created in a new
//! cache, upgraded in place in an older one, refused in a newer one.
//!
//! Formats (`_sg_meta.format`; 0 is the format before it was recorded):
//! - 0: the first format.
//! - 1: the meta row records the format.
//! - 2: capture writes one outbox row and nothing else: values in columns,
//!   stamps from the seq, no outbox index, no AUTOINCREMENT counter, no
//!   per-write meta update (`outbox.rs` describes the format).
//! - 3: `_sg_victims` keeps the rows a pull removed because a pending local
//!   delete reached them (`victims.rs`).
//!
//! Triggers carry no number: at every open their text is compared with what
//! this version of the engine would create, and any difference reinstalls
//! them all.

use std::collections::BTreeMap;
use std::path::Path;

use rusqlite::{Connection, Transaction, TransactionBehavior};

use crate::aliases::ALIASES_DDL;
use crate::capture;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::ids::id_space;
use crate::meta;
use crate::outbox;
use crate::schema::{quote, Schema};
use crate::tombstones::TOMBSTONES_DDL;
use crate::victims::VICTIMS_DDL;

/// The format this version of the engine writes.
pub const CACHE_FORMAT: i64 = 3;

/// Makes the file behind `conn` a cache in `CACHE_FORMAT` with the triggers
/// `schema` and `config` call for: a new file gets its sync tables (and a
/// replica id from `register`), an older one is upgraded, each in one
/// transaction. Returns whether the cache existed before.
pub(crate) fn open(
    conn: &mut Connection,
    schema: &Schema,
    config: &Config,
    path: &Path,
    register: impl FnOnce() -> Result<u32>,
) -> Result<bool> {
    if !is_cache(conn)? {
        check_no_uncaptured_rows(conn, schema, path)?;
        let replica = register()?;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        create(&tx, schema, replica)?;
        schema.verify(&tx, "cache")?;
        install_triggers(&tx, &capture::triggers(schema, config, replica))?;
        tx.commit()?;
        return Ok(false);
    }
    check_not_newer(meta::format(conn)?, path)?;
    schema.verify(conn, "cache")?;
    let wanted = capture::triggers(schema, config, meta::replica(conn)?);
    if meta::format(conn)? == CACHE_FORMAT && installed_triggers(conn)? == wanted {
        return Ok(true);
    }
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    // Read again under the write lock: another connection may have upgraded.
    let format = meta::format(&tx)?;
    check_not_newer(format, path)?;
    if format < CACHE_FORMAT {
        upgrade(&tx, schema, format)?;
    }
    install_triggers(&tx, &wanted)?;
    tx.commit()?;
    Ok(true)
}

/// Whether the file at `conn` already holds a syncgate cache.
fn is_cache(conn: &Connection) -> Result<bool> {
    Ok(conn.query_row(
        "SELECT count(*) > 0 FROM sqlite_master WHERE name = '_sg_meta'",
        [],
        |r| r.get(0),
    )?)
}

fn check_not_newer(format: i64, path: &Path) -> Result<()> {
    if format > CACHE_FORMAT {
        return Err(Error::CacheFormatTooNew {
            path: path.to_path_buf(),
            found: format,
            supported: CACHE_FORMAT,
        });
    }
    Ok(())
}

/// Refuses a new cache whose synced tables already hold rows: they were
/// never captured, so they could never sync.
fn check_no_uncaptured_rows(conn: &Connection, schema: &Schema, path: &Path) -> Result<()> {
    for t in schema.tables() {
        let exists: bool = conn.query_row(
            "SELECT count(*) > 0 FROM sqlite_master WHERE type = 'table' AND name = ?1",
            [&t.name],
            |r| r.get(0),
        )?;
        if !exists {
            continue;
        }
        let rows: i64 = conn.query_row(&format!("SELECT count(*) FROM {}", quote(&t.name)), [], |r| r.get(0))?;
        if rows > 0 {
            return Err(Error::NotInitialized {
                place: path.display().to_string(),
                what: "cache",
                detail: format!(
                    "table {:?} already holds {rows} rows that were never captured; start from an empty cache",
                    t.name
                ),
            });
        }
    }
    Ok(())
}

/// The sync tables and the synced tables of a new cache for `replica`.
fn create(tx: &Transaction<'_>, schema: &Schema, replica: u32) -> Result<()> {
    meta::create(tx, CACHE_FORMAT, replica, id_space(replica).0)?;
    tx.execute_batch(&outbox::ddl(schema))?;
    tx.execute_batch(TOMBSTONES_DDL)?;
    tx.execute_batch(ALIASES_DDL)?;
    tx.execute_batch(VICTIMS_DDL)?;
    for stmt in schema.create_statements() {
        tx.execute_batch(&stmt)?;
    }
    Ok(())
}

/// Upgrades a cache in `format` to `CACHE_FORMAT`, one format at a time.
/// Every pending outbox entry, tombstone and alias survives. The old
/// triggers go first (they name old columns); the caller installs the new.
fn upgrade(tx: &Transaction<'_>, schema: &Schema, format: i64) -> Result<()> {
    assert!(
        (0..CACHE_FORMAT).contains(&format),
        "format {format} outside 0..{CACHE_FORMAT}"
    );
    drop_triggers(tx)?;
    if format < 1 {
        meta::upgrade_to_1(tx)?;
    }
    if format < 2 {
        let seq_max = outbox::upgrade_to_2(tx, schema)?;
        meta::upgrade_to_2(tx, seq_max)?;
    }
    if format < 3 {
        tx.execute_batch(VICTIMS_DDL)?;
    }
    meta::set_format(tx, CACHE_FORMAT)?;
    Ok(())
}

fn drop_triggers(tx: &Transaction<'_>) -> Result<()> {
    for name in installed_triggers(tx)?.keys() {
        tx.execute_batch(&format!("DROP TRIGGER {}", quote(name)))?;
    }
    Ok(())
}

/// Makes the cache's triggers exactly `wanted`: when any is missing, extra
/// or different (a trigger changed in a new version of the engine), all are
/// dropped and created again.
fn install_triggers(tx: &Transaction<'_>, wanted: &BTreeMap<String, String>) -> Result<()> {
    if installed_triggers(tx)? == *wanted {
        return Ok(());
    }
    drop_triggers(tx)?;
    for sql in wanted.values() {
        tx.execute_batch(sql)?;
    }
    assert_eq!(
        installed_triggers(tx)?,
        *wanted,
        "SQLite keeps a trigger's text as written, so the next open finds it unchanged"
    );
    Ok(())
}

fn installed_triggers(conn: &Connection) -> Result<BTreeMap<String, String>> {
    let mut stmt = conn
        .prepare("SELECT name, sql FROM sqlite_master WHERE type = 'trigger' AND name LIKE '\\_sg\\_%' ESCAPE '\\'")?;
    let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}
