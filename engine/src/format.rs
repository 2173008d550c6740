//! The cache file's sync tables and triggers: created in a new cache,
//! checked (and reinstalled when they differ) in an existing one.

use std::collections::BTreeMap;
use std::path::Path;

use rusqlite::{Connection, TransactionBehavior};

use crate::aliases::ALIASES_DDL;
use crate::capture;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::ids::id_space;
use crate::meta;
use crate::outbox::OUTBOX_DDL;
use crate::schema::{quote, Schema};
use crate::tombstones::TOMBSTONES_DDL;

/// Whether the file at `conn` already holds a syncgate cache.
pub(crate) fn is_cache(conn: &Connection) -> Result<bool> {
    Ok(conn.query_row(
        "SELECT count(*) > 0 FROM sqlite_master WHERE name = '_sg_meta'",
        [],
        |r| r.get(0),
    )?)
}

/// Refuses a new cache whose synced tables already hold rows: they were
/// never captured, so they could never sync.
pub(crate) fn check_no_uncaptured_rows(conn: &Connection, schema: &Schema, path: &Path) -> Result<()> {
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

/// Creates the sync tables and the synced tables of a new cache for
/// `replica`, in one transaction.
pub(crate) fn create(conn: &mut Connection, schema: &Schema, replica: u32) -> Result<()> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    meta::create(&tx, replica, id_space(replica))?;
    tx.execute_batch(OUTBOX_DDL)?;
    tx.execute_batch(TOMBSTONES_DDL)?;
    tx.execute_batch(ALIASES_DDL)?;
    for stmt in schema.create_statements() {
        tx.execute_batch(&stmt)?;
    }
    tx.commit()?;
    Ok(())
}

/// Makes the cache's triggers exactly the ones `schema` and `config` call
/// for: when any is missing, extra or different (a trigger changed in a new
/// version of the engine), all are dropped and created again, in one
/// transaction.
pub(crate) fn install_triggers(conn: &mut Connection, schema: &Schema, config: &Config) -> Result<()> {
    let wanted: BTreeMap<String, String> = capture::triggers(schema, config).into_iter().collect();
    if installed_triggers(conn)? == wanted {
        return Ok(());
    }
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    if installed_triggers(&tx)? != wanted {
        for name in installed_triggers(&tx)?.keys() {
            tx.execute_batch(&format!("DROP TRIGGER {}", quote(name)))?;
        }
        for sql in wanted.values() {
            tx.execute_batch(sql)?;
        }
        assert_eq!(
            installed_triggers(&tx)?,
            wanted,
            "SQLite stores trigger text as written, so a reinstall is not repeated at every open"
        );
    }
    tx.commit()?;
    Ok(())
}

fn installed_triggers(conn: &Connection) -> Result<BTreeMap<String, String>> {
    let mut stmt = conn
        .prepare("SELECT name, sql FROM sqlite_master WHERE type = 'trigger' AND name LIKE '\\_sg\\_%' ESCAPE '\\'")?;
    let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}
