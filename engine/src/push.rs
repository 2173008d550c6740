//! Push, in the steps of SEMANTICS.md ("Key operations"): cut a batch of
//! whole local transactions from the outbox, apply it on the remote in one
//! remote transaction, commit the remote, acknowledge locally.
//!
//! Architecture Invariant: an outbox entry is removed only by a local
//! transaction that runs after the remote transaction that applied it has
//! committed; the remote remembers the last applied seq per replica, so a
//! re-push after a crash between the two applies nothing twice.

use std::collections::BTreeMap;

use rusqlite::{Connection, Transaction, TransactionBehavior};

use crate::aliases;
use crate::apply::{apply_entry, kill_victims};
use crate::config::Config;
use crate::error::Result;
use crate::mutant::Mutant;
use crate::outbox::{self, Batch, Entry, Op};
use crate::remote::Remote;
use crate::report::SyncReport;
use crate::schema::Schema;
use crate::staged::{Staged, PUSH_CHUNK_ENTRIES};
use crate::victims;

/// One push attempt: batches until the outbox is empty, each added to
/// `report` once acknowledged. The remote-side steps 4, 5 and 9 (crash
/// points, the reader that stops a commit) happen inside `Remote::commit`.
pub(crate) fn push<R: Remote>(
    conn: &mut Connection,
    remote: &mut R,
    schema: &Schema,
    config: &Config,
    replica: u32,
    report: &mut SyncReport,
) -> Result<()> {
    loop {
        // Step 1: nothing pending, nothing to lock.
        if outbox::is_empty(conn)? {
            return Ok(());
        }
        // Step 2: the locks, the cache's first (the remote's at `begin_write`).
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        // Step 3: cut the batch.
        let Some(batch) = cut_batch(&tx, config)? else {
            return Ok(());
        };
        if config.planted(Mutant::AckWithoutApply) {
            // Mutant: "0 records synced" — acknowledged, never sent.
            acknowledge(tx, batch)?;
            report.pushed += batch.entries;
            continue;
        }
        if let Err(e) = remote.begin_write() {
            remote.rollback();
            if e.is_busy() && config.planted(Mutant::NoBusyRetry) {
                // Mutant: a busy remote is treated as nothing to do.
                return Ok(());
            }
            return Err(e);
        }
        // Steps 6 and 7: each entry, paired with its local alias, applied on
        // the remote; step 8: the batch's last seq recorded as applied.
        let applied = apply_batch(&tx, remote, schema, config, replica, batch);
        if config.planted(Mutant::AckBeforeCommit) {
            // Mutant: acknowledged locally before the remote commit.
            let conflicts = match applied {
                Ok(c) => c,
                Err(e) => {
                    remote.rollback();
                    return Err(e);
                }
            };
            acknowledge(tx, batch)?;
            commit_remote(remote, Ok(conflicts))?;
            report.pushed += batch.entries;
            report.conflicts += conflicts;
            continue;
        }
        // Step 8: commit the remote.
        let conflicts = match commit_remote(remote, applied) {
            Err(e) if e.is_busy() && config.planted(Mutant::BusyRetryCountsTwice) => {
                // Mutant: the busy batch is counted, and again by its retry.
                report.pushed += batch.entries;
                return Err(e);
            }
            committed => committed?,
        };
        // Step 10: acknowledge locally.
        acknowledge(tx, batch)?;
        report.pushed += batch.entries;
        if !config.planted(Mutant::LyingStatus) {
            report.conflicts += conflicts;
        }
    }
}

/// Step 3 (rule S2): whole local transactions, up to `push_batch_max`.
fn cut_batch(tx: &Connection, config: &Config) -> Result<Option<Batch>> {
    if config.planted(Mutant::SplitTransaction) {
        // Mutant: one entry per remote transaction, whatever its local transaction.
        return outbox::cut_first(tx);
    }
    outbox::cut_batch(tx, config.push_batch_max)
}

/// Steps 6 to 8: streams the batch's entries onto the remote, skipping those
/// the remote already applied (rule S4), a chunk at a time: each chunk's
/// remote rows are read in a few set-based calls, the rules applied to them
/// in memory, and the changed rows stored in one write; the last write also
/// records the batch's last seq as applied. All in the open remote
/// transaction. Returns the conflicts.
fn apply_batch<R: Remote>(
    tx: &Connection,
    remote: &mut R,
    schema: &Schema,
    config: &Config,
    replica: u32,
    batch: Batch,
) -> Result<u64> {
    let acked = remote.acked(replica)?;
    // The batch's local transaction holds the cache's write lock: no alias
    // can appear while it runs.
    let any_alias = aliases::any(tx)?;
    let victims = victims::up_to(tx, schema, batch.last)?;
    let mut staged = Staged::begin(remote, schema)?;
    let mut conflicts = 0;
    let mut chunk: Vec<(Entry, Option<i64>)> = Vec::with_capacity(PUSH_CHUNK_ENTRIES.min(batch.entries as usize));
    outbox::for_each_in_batch(tx, schema, replica, batch, |entry| {
        if entry.seq <= acked {
            return Ok(());
        }
        let alias = if any_alias {
            local_alias(tx, schema, &entry)?
        } else {
            None
        };
        chunk.push((entry, alias));
        if chunk.len() == PUSH_CHUNK_ENTRIES {
            conflicts += apply_chunk(&mut staged, schema, config, &chunk, &victims)?;
            chunk.clear();
            staged.flush(None)?;
        }
        Ok(())
    })?;
    conflicts += apply_chunk(&mut staged, schema, config, &chunk, &victims)?;
    staged.flush(Some(record_acked(replica, acked, batch)))?;
    Ok(conflicts)
}

/// Steps 6 and 7 for one chunk: its remote rows read at once, then each
/// entry applied in seq order, a delete followed by its victims (rule D2).
fn apply_chunk<R: Remote>(
    staged: &mut Staged<'_, R>,
    schema: &Schema,
    config: &Config,
    chunk: &[(Entry, Option<i64>)],
    victims: &BTreeMap<i64, Vec<(usize, i64)>>,
) -> Result<u64> {
    staged.prefetch(chunk)?;
    let mut conflicts = 0;
    for (entry, alias) in chunk {
        conflicts += apply_entry(staged, schema, config, entry, *alias)?;
        if let Some(rows) = victims.get(&entry.seq) {
            kill_victims(staged, schema, rows)?;
        }
    }
    Ok(conflicts)
}

/// Step 6 (rule N3): the survivor this replica already merged an inserted
/// row into, sent along so the remote merges the same way.
fn local_alias(tx: &Connection, schema: &Schema, entry: &Entry) -> Result<Option<i64>> {
    if entry.op != Op::Insert {
        return Ok(None);
    }
    aliases::survivor(tx, &schema.table(entry.table).name, entry.id)
}

/// Step 8 (rule S4): the remote remembers the highest seq it applied; it
/// only ever goes up.
fn record_acked(replica: u32, acked: i64, batch: Batch) -> (u32, i64) {
    assert!(batch.last > 0, "outbox seqs are positive: batch ends at {}", batch.last);
    (replica, batch.last.max(acked))
}

/// Step 8: commits the remote transaction once the batch applied, or rolls
/// it back on any error.
fn commit_remote<R: Remote>(remote: &mut R, applied: Result<u64>) -> Result<u64> {
    match applied.and_then(|conflicts| remote.commit().map(|()| conflicts)) {
        Ok(conflicts) => Ok(conflicts),
        Err(e) => {
            remote.rollback();
            Err(e)
        }
    }
}

/// Step 10 (rule S3): the batch leaves the outbox, in a local transaction
/// after the remote commit.
fn acknowledge(tx: Transaction<'_>, batch: Batch) -> Result<()> {
    outbox::acknowledge(&tx, batch)?;
    victims::forget_up_to(&tx, batch.last)?;
    tx.commit()?;
    Ok(())
}
