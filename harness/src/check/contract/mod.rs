//! The contract: properties every correct sync layer has, whatever its
//! incidental choices (ids, report counts, bookkeeping). Checked from the
//! history the runner recorded and the rows the harness read itself, for
//! every engine, against the policies the engine declared: here the checks
//! after each step, in `settled.rs` those after quiescence.

mod atomic;
mod causal;
mod integrity;
mod monotonic;
mod settled;

pub use atomic::check_atomic_visibility;
pub use causal::check_causal_visibility;
pub use integrity::{breaches, check_integrity, check_own_write_kept_constraints, Breach, MadeBy, Promises};
pub use monotonic::check_monotonic_reads;
pub use settled::{check_converged, check_final, check_settled};

use std::collections::{BTreeMap, BTreeSet};

use syncgate_model as model;
use syncgate_protocol::{DeletePolicy, MergePolicy, Policies};

use super::answers::engine_violation;
use super::{Invariant, Violation};
use crate::history::{tag_of, History, WriteKind, WriteRecord};
use crate::scenario::SyncKind;
use crate::show::{kind_name, show_row, show_value};
use crate::subject::Answer;

/// What a replica's cache must show right after a write it answered `write_ok`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Expect {
    /// The row holds at least these column values.
    Row {
        table: usize,
        id: i64,
        values: Vec<(usize, model::Value)>,
    },
    /// The row is gone.
    Gone { table: usize, id: i64 },
}

/// Read-your-writes: the cache shows each write of a transaction it
/// answered `write_ok`. `what` names the writes for the report.
pub fn check_read_your_writes(
    schema: &model::Schema,
    place: &str,
    what: &str,
    expect: &[Expect],
    tables: &model::Tables,
) -> Result<(), Violation> {
    for e in expect {
        match e {
            Expect::Row { table, id, values } => {
                let name = &schema.tables[*table].name;
                let Some(row) = tables[*table].get(id) else {
                    return Err(Violation::new(
                        Invariant::ReadYourWrites,
                        format!("{place}: {what} answered ok, but {name}/{id} is not in the cache right after"),
                    ));
                };
                for (c, v) in values {
                    if row[*c] != *v {
                        return Err(Violation::new(
                            Invariant::ReadYourWrites,
                            format!(
                                "{place}: {what} answered ok, but {name}/{id}.{} is {} right after, not {}",
                                schema.tables[*table].columns[*c].name,
                                show_value(&row[*c]),
                                show_value(v)
                            ),
                        ));
                    }
                }
            }
            Expect::Gone { table, id } => {
                if let Some(row) = tables[*table].get(id) {
                    return Err(Violation::new(
                        Invariant::ReadYourWrites,
                        format!(
                            "{place}: {what} deleted {}/{id}, but the cache still holds {} right after",
                            schema.tables[*table].name,
                            show_row(row)
                        ),
                    ));
                }
            }
        }
    }
    Ok(())
}

/// A write committed and answered ok that changed anything is pending until
/// a push applies it: an engine that says 0 pending will never push it.
/// `pending` is the engine's answer right after; `what` names the writes.
pub fn check_committed_is_pending(r: usize, what: &str, outside: bool, pending: &Answer<u64>) -> Result<(), Violation> {
    match pending {
        Answer::Ok(0) => Err(Violation::new(
            Invariant::TruthfulStatus,
            format!(
                "r{r} committed {what}{} but reports 0 pending: it will never be pushed",
                if outside { " (made outside its API)" } else { "" }
            ),
        )),
        Answer::Ok(_) => Ok(()),
        other => Err(engine_violation(&format!("r{r} pending"), other)),
    }
}

/// Bound on parent chains followed when deciding whether a row died with an
/// ancestor (the declared schemas are shallow; a cycle cannot hang the check).
const ANCESTRY_DEPTH_MAX: usize = 16;

/// Which rows some write's delete reached: the row itself, a row with its
/// natural key, or an ancestor (a delete cascades to children another
/// replica added concurrently, when they arrive).
pub(super) struct Doom {
    deleted: BTreeSet<(usize, i64)>,
    deleted_keys: crate::history::DeletedKeys,
    key_of: BTreeMap<(usize, i64), model::Value>,
    /// Parents each row was given, by any write.
    parents: BTreeMap<(usize, i64), BTreeSet<(usize, i64)>>,
}

impl Doom {
    pub(super) fn of(schema: &model::Schema, history: &History) -> Doom {
        let (deleted, mut deleted_keys) = history.deleted();
        let key_of: BTreeMap<(usize, i64), model::Value> = history
            .writes
            .iter()
            .filter(|w| w.kind == WriteKind::Insert)
            .filter_map(|w| w.key.clone().map(|k| ((w.table, w.id), k)))
            .collect();
        // A row a cascade took carries its natural key away too: the row
        // its key merged into on the remote is the same row (rule N), and
        // dies with it (a natural-key table under a parent).
        for row in &deleted {
            if let Some(key) = key_of.get(row).filter(|k| **k != model::Value::Null) {
                deleted_keys.entry(row.0).or_default().insert(key.clone());
            }
        }
        let mut parents: BTreeMap<(usize, i64), BTreeSet<(usize, i64)>> = BTreeMap::new();
        for w in &history.writes {
            for (c, v) in &w.set {
                if let (Some(pt), model::Value::Int(p)) = (schema.tables[w.table].columns[*c].references, v) {
                    parents.entry((w.table, w.id)).or_default().insert((pt, *p));
                }
            }
        }
        Doom {
            deleted,
            deleted_keys,
            key_of,
            parents,
        }
    }

    fn dead(&self, t: usize, id: i64) -> bool {
        self.deleted.contains(&(t, id))
            || self
                .key_of
                .get(&(t, id))
                .is_some_and(|k| self.deleted_keys.get(&t).is_some_and(|keys| keys.contains(k)))
    }

    /// Whether a delete reached the row or an ancestor of it.
    pub(super) fn doomed(&self, t: usize, id: i64) -> bool {
        let mut frontier = vec![(t, id)];
        for _ in 0..ANCESTRY_DEPTH_MAX {
            if frontier.iter().any(|&(t, id)| self.dead(t, id)) {
                return true;
            }
            // A row's parents, and those its natural-key twins gave it: a
            // merge by key may take a twin's reference (rule N, then column
            // merge), and the twin's parent's delete then cascades to it.
            frontier = frontier
                .iter()
                .flat_map(|row| {
                    let twins = self.key_of.get(row).map(|k| (row.0, k)).into_iter().flat_map(|(t, k)| {
                        self.key_of
                            .iter()
                            .filter(move |((tt, _), kk)| *tt == t && *kk == k && *k != model::Value::Null)
                            .map(|(twin, _)| *twin)
                    });
                    std::iter::once(*row)
                        .chain(twins)
                        .flat_map(|r| self.parents.get(&r).into_iter().flatten().copied())
                        .collect::<Vec<_>>()
                })
                .collect();
            if frontier.is_empty() {
                return false;
            }
        }
        true
    }
}

/// Write-through (`push: "on_commit"`): a committed transaction the engine
/// reports as not pending (0) is on the remote already. Each cell it set
/// holds its value, or the value of a write it does not causally follow (a
/// concurrent winner; under `merge: "row"` any cell of a row a concurrent
/// write to it may have left); a row it inserted is there (or merged into the row
/// of its natural key, or deleted by a write it does not follow); a row it
/// deleted is gone (delete-wins engines). `what` names the writes.
pub fn check_pushed_on_commit(
    schema: &model::Schema,
    r: usize,
    what: &str,
    history: &History,
    written: &[WriteRecord],
    policies: &Policies,
    remote: &model::Tables,
) -> Result<(), Violation> {
    let false_claim = |detail: String| {
        Err(Violation::new(
            Invariant::TruthfulStatus,
            format!(
                "r{r} answered write_ok for {what} and reports 0 pending, so it must be on the remote now, but {detail}: \
                 the claim \"0 pending\" is false (a push that failed inside the commit was dropped, not kept)"
            ),
        ))
    };
    let doom = Doom::of(schema, history);
    for w in written {
        let table = &schema.tables[w.table];
        let held = remote[w.table].get(&w.id);
        match w.kind {
            WriteKind::Delete => {
                if let (Some(row), DeletePolicy::DeleteWins) = (held, policies.delete) {
                    return false_claim(format!(
                        "the remote still holds {}/{} = {} that w{} deleted",
                        table.name,
                        w.id,
                        show_row(row),
                        w.n
                    ));
                }
            }
            WriteKind::Insert | WriteKind::Update => {
                let Some(row) = held else {
                    let merged = match (table.natural_key, &w.key) {
                        (Some(k), Some(key)) if *key != model::Value::Null => {
                            remote[w.table].values().any(|row| row[k] == *key)
                        }
                        _ => false,
                    };
                    if merged || doom.doomed(w.table, w.id) {
                        continue;
                    }
                    return false_claim(format!("the remote has no {}/{} (w{} wrote it)", table.name, w.id, w.n));
                };
                // Row-level merges: a concurrent write to the row may have
                // won with its whole row, cells older than w included (the
                // row it left carries them): nothing to say about the cells.
                let row_winner = policies.merge == MergePolicy::Row
                    && history
                        .writes
                        .iter()
                        .any(|y| y.table == w.table && y.id == w.id && y.n != w.n && !history.follows(y, w));
                if row_winner {
                    continue;
                }
                for (c, value) in &w.set {
                    if row[*c] == *value || table.natural_key == Some(*c) || table.columns[*c].references.is_some() {
                        continue;
                    }
                    // The value there is another write's: only one w does
                    // not causally follow may have won. (A value several
                    // writes wrote names none of them: nothing to say.)
                    let writers: Vec<&WriteRecord> = history
                        .writes
                        .iter()
                        .filter(|x| x.table == w.table && x.set.iter().any(|(xc, xv)| xc == c && *xv == row[*c]))
                        .collect();
                    let older = match writers.as_slice() {
                        [x] if x.n != w.n && history.follows(x, w) => Some(*x),
                        _ => None,
                    };
                    if let Some(x) = older {
                        return false_claim(format!(
                            "the remote's {}/{}.{} holds {} of w{}, which w{} causally follows",
                            table.name,
                            w.id,
                            table.columns[*c].name,
                            show_value(&row[*c]),
                            x.n,
                            w.n
                        ));
                    }
                }
            }
        }
    }
    Ok(())
}

/// A push (or sync) that answers ok has pushed everything pending.
pub fn check_push_left_nothing_pending(r: usize, kind: SyncKind, pending: &Answer<u64>) -> Result<(), Violation> {
    match pending {
        Answer::Ok(0) => Ok(()),
        Answer::Ok(p) => Err(Violation::new(
            Invariant::TruthfulStatus,
            format!("r{r} {} answered ok, but {p} writes are still pending", kind_name(kind)),
        )),
        other => Err(engine_violation(&format!("r{r} pending"), other)),
    }
}

/// Adya's G1a, aborted read: no value a rolled-back transaction wrote is
/// seen anywhere (engines that declare `aborts`; the tags name the writes).
pub fn check_no_aborted_read(
    schema: &model::Schema,
    place: &str,
    history: &History,
    tables: &model::Tables,
) -> Result<(), Violation> {
    if history.aborted.is_empty() {
        return Ok(());
    }
    for (t, rows) in tables.iter().enumerate() {
        for (id, row) in rows {
            for (c, value) in row.iter().enumerate() {
                let Some(aborted) = tag_of(value).and_then(|n| history.aborted.get(&n)) else {
                    continue;
                };
                return Err(Violation::new(
                    Invariant::NoAbortedRead,
                    format!(
                        "G1a (aborted read): {place}: {}/{id}.{} holds {}, written by w{} (r{}, step {}), whose \
                         transaction the application rolled back",
                        schema.tables[t].name,
                        schema.tables[t].columns[c].name,
                        show_value(value),
                        aborted.n,
                        aborted.replica,
                        aborted.step
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// A rolled-back transaction leaves nothing pending: the count is what it
/// was before (a capture hook that kept the rolled-back writes would push
/// them).
pub fn check_abort_left_pending(r: usize, what: &str, before: u64, after: &Answer<u64>) -> Result<(), Violation> {
    match after {
        Answer::Ok(p) if *p == before => Ok(()),
        Answer::Ok(p) => Err(Violation::new(
            Invariant::TruthfulStatus,
            format!(
                "r{r} reports {p} pending after the application rolled back {what}, {before} before it: a rolled-back \
                 write is never pushed (G1a)"
            ),
        )),
        other => Err(engine_violation(&format!("r{r} pending"), other)),
    }
}

/// A row a replica deleted itself is never in its cache again.
pub fn check_not_resurrected(
    schema: &model::Schema,
    place: &str,
    history: &History,
    replica: usize,
    tables: &model::Tables,
    policies: &Policies,
) -> Result<(), Violation> {
    if policies.delete != DeletePolicy::DeleteWins {
        return Ok(());
    }
    for (t, id) in history.deleted_by(replica) {
        if let Some(row) = tables[t].get(&id) {
            let by = deleter(history, t, id);
            if let Some(reuse) = reused(history, t, id) {
                return Err(Violation::new(
                    Invariant::NoIdReuse,
                    format!(
                        "{place}: {}/{id} = {} is the row {reuse} inserted under the id of a row {by} deleted: \
                         the id was given again (SQLite reuses a deleted row's id when an insert lets it \
                         choose), and a layer that takes it for the same row resurrects or overwrites",
                        schema.tables[t].name,
                        show_row(row)
                    ),
                ));
            }
            return Err(Violation::new(
                Invariant::NoResurrection,
                format!(
                    "{place}: {}/{id} = {} is back, but {by} deleted it",
                    schema.tables[t].name,
                    show_row(row)
                ),
            ));
        }
    }
    Ok(())
}

/// The insert that gave `(t, id)` again after a delete of it, as a report
/// names it, if one did.
pub(super) fn reused(history: &History, t: usize, id: i64) -> Option<String> {
    let deleted_at = history
        .writes
        .iter()
        .find(|w| w.kind == WriteKind::Delete && ((w.table, w.id) == (t, id) || w.cascade.contains(&(t, id))))?
        .n;
    history
        .writes
        .iter()
        .find(|w| w.kind == WriteKind::Insert && (w.table, w.id) == (t, id) && w.n > deleted_at)
        .map(|w| format!("w{} on r{} at step {}", w.n, w.replica, w.step))
}

pub(super) fn deleter(history: &History, t: usize, id: i64) -> String {
    history
        .writes
        .iter()
        .find(|w| w.kind == WriteKind::Delete && ((w.table, w.id) == (t, id) || w.cascade.contains(&(t, id))))
        .map(|w| {
            let how = if (w.table, w.id) == (t, id) {
                ""
            } else {
                " (by cascade)"
            };
            format!("w{} on r{} at step {}{how}", w.n, w.replica, w.step)
        })
        .unwrap_or_else(|| "a delete".into())
}

/// A pull never replaces a cell's value with the value of a write that the
/// replaced value's write causally follows (a newer local value lost to an
/// older remote one, even for a moment). For column-level engines: a
/// row-level engine may take a concurrent row whose other cells are older.
pub fn check_pull_kept_newer(
    schema: &model::Schema,
    place: &str,
    history: &History,
    before: &model::Tables,
    after: &model::Tables,
) -> Result<(), Violation> {
    let writer = |t: usize, c: usize, v: &model::Value| sole_writer(history, t, c, v);
    for (t, rows) in after.iter().enumerate() {
        let columns = tagged_columns(schema, t);
        for (id, now) in rows {
            let Some(was) = before[t].get(id) else { continue };
            for &c in &columns {
                if was[c] == now[c] {
                    continue;
                }
                let (Some(old), Some(new)) = (writer(t, c, &was[c]), writer(t, c, &now[c])) else {
                    continue;
                };
                if old.n != new.n && history.follows(new, old) {
                    return Err(Violation::new(
                        Invariant::NoLostWrite,
                        format!(
                            "{place}: a pull replaced {}/{id}.{} = {} (w{}) with the older {} (w{}), but {}",
                            schema.tables[t].name,
                            schema.tables[t].columns[c].name,
                            show_value(&was[c]),
                            old.n,
                            show_value(&now[c]),
                            new.n,
                            history.explain(new, old)
                        ),
                    ));
                }
            }
        }
    }
    Ok(())
}

/// The one write that set column `c` of table `t` to `v`, if exactly one
/// did: a value two writes wrote identifies neither (untagged integers).
pub(super) fn sole_writer<'h>(history: &'h History, t: usize, c: usize, v: &model::Value) -> Option<&'h WriteRecord> {
    let mut found = history
        .writes
        .iter()
        .filter(|w| w.table == t && w.set.iter().any(|(wc, wv)| *wc == c && wv == v));
    match (found.next(), found.next()) {
        (Some(w), None) => Some(w),
        _ => None,
    }
}

/// Columns whose values identify their write: not references (a merge may
/// re-point them) and not natural keys (they collide on purpose).
pub(super) fn tagged_columns(schema: &model::Schema, t: usize) -> Vec<usize> {
    let table = &schema.tables[t];
    (0..table.columns.len())
        .filter(|&c| table.columns[c].references.is_none() && table.natural_key != Some(c))
        .collect()
}
