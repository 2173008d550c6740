//! Pull, in the steps of SEMANTICS.md ("Key operations"): read the remote's
//! changes after the cursor (tombstones and aliases, then live rows), refuse
//! them all on clock drift, merge each with the pending local writes, and
//! store the rows, the clock and the new cursor in one local transaction.
//!
//! Architecture Invariant: rows applied by a pull are never captured again
//! (`_sg_meta.applying` is set for the duration of the local transaction, so
//! no other connection ever sees it set).

use rusqlite::types::Value;
use rusqlite::{Connection, OptionalExtension, Transaction, TransactionBehavior};

use crate::aliases;
use crate::cache;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::hlc;
use crate::meta::{self, APPLYING_MERGE, APPLYING_NONE, APPLYING_PULL};
use crate::mutant::Mutant;
use crate::outbox::{self, Op, PendingIndex};
use crate::remote::{Change, ChangeKind, Remote, RemoteRow};
use crate::schema::{quote, Schema};
use crate::stamp::Stamp;
use crate::tombstones;
use crate::victims;

/// What one pull did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Pulled {
    /// Remote rows received.
    pub rows: u64,
    pub conflicts: u64,
}

/// One pull attempt, at local time `now_ms`.
pub(crate) fn pull<R: Remote>(
    conn: &mut Connection,
    remote: &mut R,
    schema: &Schema,
    config: &Config,
    replica: u32,
    now_ms: i64,
) -> Result<Pulled> {
    let mut cursor_before = None;
    if config.planted(Mutant::NonAtomicPull) {
        // Mutant: the cursor moves to the remote head in its own transaction,
        // before the data; a crash in between loses those changes.
        cursor_before = Some(meta::cursor(conn)?);
        remote.begin_read()?;
        let head = remote.head();
        remote.rollback();
        meta::set_cursor(conn, head?)?;
    }
    // Step 1: the locks, the cache's first, then a read snapshot of the remote.
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    if let Err(e) = remote.begin_read() {
        // Mutant busy-read-leaks-txn: nobody rolls the failed read back.
        if !config.planted(Mutant::BusyReadLeaksTxn) {
            remote.rollback();
        }
        return Err(e);
    }
    // Steps 3 to 5 (step 2, the crash point, is the remote's).
    let outcome = apply_changes(&tx, remote, schema, config, replica, now_ms, cursor_before)
        .and_then(|pulled| remote.commit().map(|()| pulled));
    match outcome {
        // Step 6: the rows, the clock and the cursor commit together.
        Ok(pulled) => {
            commit_pull(tx, schema)?;
            Ok(pulled)
        }
        Err(e) => {
            remote.rollback();
            Err(e)
        }
    }
}

/// Steps 3 to 5: reads the changes after the cursor page by page, gone rows
/// first (rules P1, P2), refuses them on drift (O4), raises the clock (O2)
/// and applies each (P3, P4, N3, D2) without capture (C2); then sets the
/// cursor to the remote head.
fn apply_changes<R: Remote>(
    tx: &Transaction<'_>,
    remote: &mut R,
    schema: &Schema,
    config: &Config,
    replica: u32,
    now_ms: i64,
    cursor_before: Option<i64>,
) -> Result<Pulled> {
    let page_rows = config.pull_page_rows.max(1);
    let cursor = meta::cursor(tx)?;
    let hlc_before = hlc::now(tx)?;
    let head = remote.head()?;
    if head < cursor {
        return Err(Error::RemoteBehindCursor { cursor, head });
    }
    let cursor = cursor_before.unwrap_or(cursor);
    // Mutant cursor-off-by-one: the first change after the cursor is skipped.
    let cursor = if config.planted(Mutant::CursorOffByOne) {
        cursor + 1
    } else {
        cursor
    };
    let advance_clock = !config.planted(Mutant::NoClockAdvance) && !config.planted(Mutant::WallClockLww);
    meta::set_applying(tx, APPLYING_PULL)?;
    let pending = outbox::index_pending(tx)?;
    let mut pulled = Pulled::default();
    let mut hlc = hlc_before;
    let mut foreign_keys_deferred = false;
    for kind in [ChangeKind::Gone, ChangeKind::Live] {
        let mut after = cursor;
        loop {
            let page = remote.changes(kind, after, head, page_rows)?;
            if !page.is_empty() && !foreign_keys_deferred {
                defer_foreign_keys(tx)?;
                foreign_keys_deferred = true;
            }
            for change in &page {
                // The remote's data, not this engine's: a typed error, never
                // an assertion (two writers that were not serialized can
                // hand out one seq twice, rule P6).
                if change.seq <= after || change.seq > head {
                    return Err(Error::CorruptRemote {
                        table: schema.table(change.table).name.clone(),
                        id: change.id,
                        detail: format!(
                            "its change seq {} is outside ({after}, {head}]: two changes share a seq, \
                             or the remote returned them out of order",
                            change.seq
                        ),
                    });
                }
                if let RemoteRow::Live { stamps, .. } = &change.row {
                    refuse_drift(schema, config, (change, replica), stamps, now_ms)?;
                    if advance_clock {
                        hlc = stamps.iter().fold(hlc, |h, s| h.max(s.hlc));
                    }
                }
                if apply_change(tx, remote, schema, config, (replica, pending), change)? {
                    pulled.conflicts += 1;
                }
                pulled.rows += 1;
                after = change.seq;
            }
            if page.len() < page_rows {
                break;
            }
        }
    }
    assert!(
        hlc >= hlc_before,
        "a pull only raises the clock: from {hlc_before} to {hlc}"
    );
    hlc::raise(tx, hlc)?;
    meta::set_cursor(tx, head)?;
    meta::set_applying(tx, APPLYING_NONE)?;
    Ok(pulled)
}

/// Rows arrive in seq order, a child possibly before its parent: foreign
/// keys are checked at commit (`commit_pull`). Set only once a pull has
/// something to apply: any flag pragma expires every prepared statement of
/// the connection (SQLite's OP_Expire), so setting it on every pull made the
/// next use of each cached statement prepare it again (about a quarter of
/// all prepares in a gate run, counted with a uprobe on sqlite3Reprepare).
/// SQLite turns it off again at commit or rollback.
fn defer_foreign_keys(tx: &Transaction<'_>) -> Result<()> {
    tx.execute_batch("PRAGMA defer_foreign_keys = ON")?;
    Ok(())
}

/// Step 4 (rule O4): a stamp too far ahead of the local clock refuses the
/// whole pull (`replica`: this replica's id, to say when the stamp is its
/// own: its clock went back since it stamped it).
fn refuse_drift(
    schema: &Schema,
    config: &Config,
    (change, replica): (&Change, u32),
    stamps: &[Stamp],
    now_ms: i64,
) -> Result<()> {
    for s in stamps {
        let ahead_ms = s.ms() - now_ms;
        if ahead_ms > config.drift_ms_max {
            return Err(Error::ClockDrift {
                table: schema.table(change.table).name.clone(),
                id: change.id,
                replica: s.replica,
                ahead_ms,
                drift_ms_max: config.drift_ms_max,
                own: s.replica == replica,
            });
        }
    }
    Ok(())
}

/// Step 6 (rule P5): commits the pull's local transaction. Foreign keys are
/// checked here, at commit (they are deferred while rows arrive in seq
/// order); a violation is a bug of the pull, reported with the row it broke
/// instead of SQLite's bare "FOREIGN KEY constraint failed", and nothing is
/// applied.
fn commit_pull(tx: Transaction<'_>, schema: &Schema) -> Result<()> {
    match tx.execute_batch("COMMIT") {
        Ok(()) => Ok(()),
        Err(e) if e.sqlite_error_code() == Some(rusqlite::ErrorCode::ConstraintViolation) => {
            // A failed COMMIT leaves the transaction open: name the broken
            // reference, then `tx` rolls back as it drops.
            Err(broken_reference(&tx, schema)?.unwrap_or(Error::Sqlite(e)))
        }
        Err(e) => Err(e.into()),
    }
}

/// The first foreign-key violation in the open transaction, as a typed error.
fn broken_reference(tx: &Connection, schema: &Schema) -> Result<Option<Error>> {
    for t in schema.tables() {
        let found = tx
            .query_row(
                "SELECT rowid, parent, fkid FROM pragma_foreign_key_check(?1)",
                [&t.name],
                |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?, r.get::<_, i64>(2)?)),
            )
            .optional()?;
        if let Some((id, parent_table, fk)) = found {
            let column: String = tx.query_row(
                "SELECT \"from\" FROM pragma_foreign_key_list(?1) WHERE id = ?2",
                rusqlite::params![t.name, fk],
                |r| r.get(0),
            )?;
            let parent_id = tx.query_row(
                &format!("SELECT {} FROM {} WHERE \"id\" = ?1", quote(&column), quote(&t.name)),
                [id],
                |r| r.get(0),
            )?;
            return Ok(Some(Error::PullBrokeReference {
                table: t.name.clone(),
                id,
                column,
                parent_table,
                parent_id,
            }));
        }
    }
    Ok(None)
}

/// Step 5 for one remote row (rules P3, P4, D1, D2, N2, N3). Returns whether
/// a conflict was resolved here.
fn apply_change<R: Remote>(
    tx: &Connection,
    remote: &mut R,
    schema: &Schema,
    config: &Config,
    local: (u32, PendingIndex),
    change: &Change,
) -> Result<bool> {
    let t = change.table;
    let name = &schema.table(t).name;
    let id = change.id;
    match &change.row {
        RemoteRow::Dead if config.planted(Mutant::NoTombstones) => Ok(false),
        RemoteRow::Dead => {
            kill(tx, remote, schema, t, id)?;
            Ok(false)
        }
        RemoteRow::Alias(survivor) => {
            aliases::record(tx, name, id, *survivor)?;
            if cache::row_exists(tx, name, id)? {
                let target = aliases::resolve(tx, name, *survivor)?;
                if tombstones::tombstoned(tx, name, target)? {
                    let dying = keep_moved_children(tx, remote, schema, t, id)?;
                    cache::delete_row(tx, schema, t, id)?;
                    if let Some(cause) = delete_reaching(tx, name, target)? {
                        victims::record(tx, schema, &dying, cause)?;
                    }
                } else {
                    merge_away(tx, schema, t, id, target)?;
                }
            }
            Ok(false)
        }
        RemoteRow::Live { values, stamps } => apply_live(tx, remote, schema, config, local, (t, id), values, stamps),
    }
}

#[allow(clippy::too_many_arguments, reason = "the pull's context, then the row")]
fn apply_live<R: Remote>(
    tx: &Connection,
    remote: &mut R,
    schema: &Schema,
    config: &Config,
    (replica, index): (u32, PendingIndex),
    (t, id): (usize, i64),
    values: &[Value],
    stamps: &[Stamp],
) -> Result<bool> {
    let def = schema.table(t);
    let name = &def.name;
    if tombstones::tombstoned(tx, name, id)? {
        return Ok(false);
    }
    let target = aliases::resolve(tx, name, id)?;
    if target != id && tombstones::tombstoned(tx, name, target)? {
        return Ok(false);
    }
    let mut values = values.to_vec();
    for (c, v) in values.iter_mut().enumerate() {
        if let (Some(p), Value::Integer(parent)) = (def.parents[c], &*v) {
            *v = Value::Integer(aliases::resolve(tx, &schema.table(p).name, *parent)?);
        }
    }
    let mut merged = false;
    if let Some(k) = def.natural_key {
        if let Some(local) = cache::natural_key_holder(tx, schema, t, &values[k], Some(target))? {
            merge_away(tx, schema, t, local, target)?;
            merged = true;
        }
    }
    let pending = if config.planted(Mutant::PullOverwritesPending) {
        // Mutant: pending local writes are ignored; the remote value always wins.
        vec![None; def.columns.len()]
    } else {
        pending_columns(tx, schema, (replica, index), t, target)?
    };
    let mut won_local = false;
    for (c, slot) in values.iter_mut().enumerate() {
        if let Some((stamp, value)) = &pending[c] {
            if *stamp > stamps[c] {
                *slot = value.clone();
                won_local = true;
            }
        }
    }
    // D2 on the row as it stands after P3 (a pending reference of a row
    // merged into it may win): a parent deleted here takes it along, with
    // the rows merged into it just now and their children.
    let mut parent_deleted = false;
    let mut cause: Option<i64> = None;
    for (c, v) in values.iter().enumerate() {
        if let (Some(p), Value::Integer(parent)) = (def.parents[c], v) {
            let parent_table = &schema.table(p).name;
            if tombstones::tombstoned(tx, parent_table, *parent)? {
                parent_deleted = true;
                let reaching = delete_reaching(tx, parent_table, *parent)?;
                cause = match (cause, reaching) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
            }
        }
    }
    if parent_deleted {
        let dying = kill(tx, remote, schema, t, target)?;
        if let Some(cause) = cause {
            victims::record(tx, schema, &dying, cause)?;
        }
        return Ok(merged);
    }
    cache::upsert_row(tx, schema, t, target, &values)?;
    if config.planted(Mutant::EchoCapture) {
        // Mutant: the pulled row is captured again, as if the app wrote it.
        outbox::append(
            tx,
            schema,
            t,
            target,
            Op::Update,
            &(0..values.len()).collect::<Vec<_>>(),
            &values,
        )?;
    }
    Ok(merged || won_local)
}

/// Per column, the latest pending local write to `target` or to a row merged
/// into it: its stamp and value (references resolved through aliases).
fn pending_columns(
    tx: &Connection,
    schema: &Schema,
    (replica, index): (u32, PendingIndex),
    t: usize,
    target: i64,
) -> Result<Vec<Option<(Stamp, Value)>>> {
    let def = schema.table(t);
    let mut best: Vec<Option<(Stamp, Value)>> = vec![None; def.columns.len()];
    for entry in outbox::pending_for(tx, index, schema, replica, t, target)? {
        if entry.op == Op::Delete {
            continue;
        }
        for &c in &entry.columns {
            let value = match (&entry.values[c], def.parents[c]) {
                (Value::Integer(parent), Some(p)) => {
                    Value::Integer(aliases::resolve(tx, &schema.table(p).name, *parent)?)
                }
                (v, _) => v.clone(),
            };
            if best[c].as_ref().is_none_or(|(s, _)| entry.stamp > *s) {
                best[c] = Some((entry.stamp, value));
            }
        }
    }
    Ok(best)
}

/// The pending delete that reached tombstoned row `id` of `table` here: its
/// own delete entry, or the delete it is a victim of (rule D2).
fn delete_reaching(tx: &Connection, table: &str, id: i64) -> Result<Option<i64>> {
    match outbox::pending_delete_of(tx, table, id)? {
        Some(seq) => Ok(Some(seq)),
        None => victims::cause_of(tx, table, id),
    }
}

/// `from` becomes an alias of `to`: its children move to `to`, and the row
/// goes without a tombstone (rule N3).
fn merge_away(tx: &Connection, schema: &Schema, t: usize, from: i64, to: i64) -> Result<()> {
    aliases::record(tx, &schema.table(t).name, from, to)?;
    cache::repoint_children(tx, schema, t, from, to)?;
    meta::set_applying(tx, APPLYING_MERGE)?;
    cache::delete_row(tx, schema, t, from)?;
    meta::set_applying(tx, APPLYING_PULL)?;
    Ok(())
}

/// A pulled death (rule D2): the row, if held, goes with its children (the
/// cache's `ON DELETE CASCADE`); if it is not held here, children may still
/// point at it, re-pointed by a natural-key merge earlier in this pull, so
/// they are deleted directly (each cascading further). Every deleted row is
/// tombstoned by the tombstone trigger, and `id` itself here. Children the
/// remote holds live under another parent stay (`keep_moved_children`).
/// Returns the rows that die: `id` and each child below it that stays.
fn kill<R: Remote>(tx: &Connection, remote: &mut R, schema: &Schema, t: usize, id: i64) -> Result<Vec<(usize, i64)>> {
    let dying = keep_moved_children(tx, remote, schema, t, id)?;
    if cache::delete_row(tx, schema, t, id)? == 0 {
        cache::delete_children(tx, schema, t, id)?;
    }
    tombstones::add(tx, &schema.table(t).name, id)?;
    Ok(dying)
}

/// D2 in a pull, before a death cascades here: a child of `id` (at any
/// depth) that the remote holds live under another parent moved there (a
/// natural-key merge took a twin's reference, rule N2) after this replica
/// last saw it. It is re-pointed as the remote has it instead of dying with
/// `id`; the rest of its row arrives with the live rows (P2). Each dying row
/// is searched once: references may form a circle here (a merge that
/// re-points a row's children can make a row its own parent). Returns the
/// rows that die: `id` and the children that were not moved, at any depth.
fn keep_moved_children<R: Remote>(
    tx: &Connection,
    remote: &mut R,
    schema: &Schema,
    t: usize,
    id: i64,
) -> Result<Vec<(usize, i64)>> {
    let mut searched = std::collections::BTreeSet::new();
    let mut dying = vec![(t, id)];
    while let Some((t, id)) = dying.pop() {
        if !searched.insert((t, id)) {
            continue;
        }
        for &(ct, c) in &schema.table(t).children {
            let held = cache::children_ids(tx, schema, ct, c, id)?;
            if held.is_empty() {
                continue;
            }
            let parent_table = &schema.table(t).name;
            let mut moved = Vec::new();
            for (child, row) in remote.rows(ct, &held)? {
                if let RemoteRow::Live { values, .. } = row {
                    if values[c] != Value::Integer(id) {
                        let parent = match &values[c] {
                            Value::Integer(p) => Value::Integer(aliases::resolve(tx, parent_table, *p)?),
                            other => other.clone(),
                        };
                        cache::set_column(tx, schema, ct, child, c, &parent)?;
                        moved.push(child);
                    }
                }
            }
            dying.extend(
                held.into_iter()
                    .filter(|child| !moved.contains(child))
                    .map(|child| (ct, child)),
            );
        }
    }
    Ok(searched.into_iter().collect())
}
