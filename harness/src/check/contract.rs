//! The contract: properties every correct sync layer has, whatever its
//! incidental choices (ids, report counts, bookkeeping). Checked from the
//! history the runner recorded and the rows the harness read itself, for
//! every engine, against the policies the engine declared.

use std::collections::{BTreeMap, BTreeSet};

use syncgate_model as model;
use syncgate_protocol::{DeletePolicy, MergePolicy, NaturalKeyPolicy, Policies};

use super::{show_row, show_value, Invariant, Violation};
use crate::history::{History, WriteKind, WriteRecord};

/// Bound on parent chains followed when deciding whether a row died with an
/// ancestor (the declared schemas are shallow; a cycle cannot hang the check).
const ANCESTRY_DEPTH_MAX: usize = 16;

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

fn deleter(history: &History, t: usize, id: i64) -> String {
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
    let writer = |t: usize, c: usize, v: &model::Value| -> Option<&WriteRecord> {
        let mut found = history
            .writes
            .iter()
            .filter(|w| w.table == t && w.set.iter().any(|(wc, wv)| *wc == c && wv == v));
        let first = found.next();
        // A value two writes wrote identifies neither (untagged integers).
        if found.next().is_some() {
            None
        } else {
            first
        }
    };
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

/// After quiescence every replica holds exactly the remote's rows.
pub fn check_converged(
    schema: &model::Schema,
    caches: &[model::Tables],
    remote: &model::Tables,
) -> Result<(), Violation> {
    for (r, cache) in caches.iter().enumerate() {
        for (t, table) in schema.tables.iter().enumerate() {
            let (mine, theirs) = (&cache[t], &remote[t]);
            if mine == theirs {
                continue;
            }
            let diff = mine
                .iter()
                .find(|(id, v)| theirs.get(id) != Some(v))
                .map(|(id, v)| match theirs.get(id) {
                    Some(rv) => format!(
                        "{}/{id}: r{r} has {}, the remote {}",
                        table.name,
                        show_row(v),
                        show_row(rv)
                    ),
                    None => format!("{}/{id}: r{r} has {}, the remote nothing", table.name, show_row(v)),
                })
                .or_else(|| {
                    theirs
                        .iter()
                        .find(|(id, _)| !mine.contains_key(id))
                        .map(|(id, v)| format!("{}/{id}: the remote has {}, r{r} nothing", table.name, show_row(v)))
                })
                .unwrap_or_default();
            return Err(Violation::new(
                Invariant::Convergence,
                format!("after quiescence r{r} differs from the remote: {diff}"),
            ));
        }
    }
    Ok(())
}

/// The checks on the final state, after quiescence: `remote` is what every
/// replica converged to.
pub fn check_final(
    schema: &model::Schema,
    history: &History,
    policies: &Policies,
    remote: &model::Tables,
) -> Result<(), Violation> {
    check_no_clobber(schema, history, remote)?;
    check_no_resurrection(schema, history, policies, remote)?;
    check_inserts_survive(schema, history, policies, remote)?;
    match policies.merge {
        MergePolicy::Column => check_cells(schema, history, remote),
        MergePolicy::Row => check_rows(schema, history, remote),
    }
}

fn describe(schema: &model::Schema, w: &WriteRecord) -> String {
    let kind = match w.kind {
        WriteKind::Insert => "inserted",
        WriteKind::Update => "updated",
        WriteKind::Delete => "deleted",
    };
    let outside = if w.outside { " outside the engine's API" } else { "" };
    format!(
        "w{} on r{} {kind} {}/{} at step {}{outside}",
        w.n, w.replica, schema.tables[w.table].name, w.id, w.step
    )
}

/// No two inserts name the same row.
fn check_no_clobber(schema: &model::Schema, history: &History, remote: &model::Tables) -> Result<(), Violation> {
    let mut inserts: BTreeMap<(usize, i64), &WriteRecord> = BTreeMap::new();
    for w in history.writes.iter().filter(|w| w.kind == WriteKind::Insert) {
        if let Some(first) = inserts.insert((w.table, w.id), w) {
            let holds = match remote[w.table].get(&w.id) {
                Some(row) => format!("the remote ends with {} under that id", show_row(row)),
                None => "the remote ends with no row under that id".into(),
            };
            return Err(Violation::new(
                Invariant::NoClobber,
                format!(
                    "{} and {}: two rows under one id, so one overwrites the other wherever both arrive; {holds}",
                    describe(schema, first),
                    describe(schema, w)
                ),
            ));
        }
    }
    Ok(())
}

fn check_no_resurrection(
    schema: &model::Schema,
    history: &History,
    policies: &Policies,
    remote: &model::Tables,
) -> Result<(), Violation> {
    if policies.delete != DeletePolicy::DeleteWins {
        return Ok(());
    }
    let (deleted, _) = history.deleted();
    for (t, id) in deleted {
        if let Some(row) = remote[t].get(&id) {
            return Err(Violation::new(
                Invariant::NoResurrection,
                format!(
                    "{}/{id} = {} is live on the remote at the end, but {} deleted it",
                    schema.tables[t].name,
                    show_row(row),
                    deleter(history, t, id)
                ),
            ));
        }
    }
    Ok(())
}

/// Rows no write deleted (nor any ancestor, nor any row with the same
/// natural key) exist at the end.
fn check_inserts_survive(
    schema: &model::Schema,
    history: &History,
    policies: &Policies,
    remote: &model::Tables,
) -> Result<(), Violation> {
    let (deleted, deleted_keys) = history.deleted();
    let key_of: BTreeMap<(usize, i64), model::Value> = history
        .writes
        .iter()
        .filter(|w| w.kind == WriteKind::Insert)
        .filter_map(|w| w.key.clone().map(|k| ((w.table, w.id), k)))
        .collect();
    let dead = |t: usize, id: i64| -> bool {
        deleted.contains(&(t, id))
            || key_of
                .get(&(t, id))
                .is_some_and(|k| deleted_keys.get(&t).is_some_and(|keys| keys.contains(k)))
    };
    // Parents each row was given, by any write.
    let mut parents: BTreeMap<(usize, i64), BTreeSet<(usize, i64)>> = BTreeMap::new();
    for w in &history.writes {
        for (c, v) in &w.set {
            if let (Some(pt), model::Value::Int(p)) = (schema.tables[w.table].columns[*c].references, v) {
                parents.entry((w.table, w.id)).or_default().insert((pt, *p));
            }
        }
    }
    let doomed = |t: usize, id: i64| -> bool {
        let mut frontier = vec![(t, id)];
        for _ in 0..ANCESTRY_DEPTH_MAX {
            if frontier.iter().any(|&(t, id)| dead(t, id)) {
                return true;
            }
            frontier = frontier
                .iter()
                .flat_map(|row| parents.get(row).into_iter().flatten().copied())
                .collect();
            if frontier.is_empty() {
                return false;
            }
        }
        true
    };
    for w in history.writes.iter().filter(|w| w.kind == WriteKind::Insert) {
        let table = &schema.tables[w.table];
        let key = w.key.clone().filter(|k| *k != model::Value::Null);
        if doomed(w.table, w.id) {
            continue;
        }
        if key.is_some() && policies.natural_keys == NaturalKeyPolicy::Refuse {
            continue;
        }
        let by_key = match (&key, table.natural_key) {
            (Some(k), Some(kc)) => remote[w.table].values().any(|row| row[kc] == *k),
            _ => false,
        };
        if !remote[w.table].contains_key(&w.id) && !by_key {
            let under = match &key {
                Some(k) => format!(
                    " (nor any row with {} = {})",
                    table.columns[table.natural_key.unwrap_or(0)].name,
                    show_value(k)
                ),
                None => String::new(),
            };
            return Err(Violation::new(
                Invariant::NoLostWrite,
                format!(
                    "{}; nothing deleted it or its parent, yet the remote ends without {}/{}{under}",
                    describe(schema, w),
                    table.name,
                    w.id
                ),
            ));
        }
    }
    Ok(())
}

/// For each final row, the ids whose writes it carries: its own, and those
/// inserted with its natural key that are gone (merged into it).
fn merge_class(schema: &model::Schema, history: &History, remote: &model::Tables, t: usize, id: i64) -> Vec<i64> {
    let mut class = vec![id];
    let table = &schema.tables[t];
    if let Some(k) = table.natural_key {
        let key = &remote[t][&id][k];
        if *key != model::Value::Null {
            for w in &history.writes {
                if w.kind == WriteKind::Insert
                    && w.table == t
                    && w.key.as_ref() == Some(key)
                    && !remote[t].contains_key(&w.id)
                    && !class.contains(&w.id)
                {
                    class.push(w.id);
                }
            }
        }
    }
    class
}

/// Columns whose values identify their write: not references (a merge may
/// re-point them) and not natural keys (they collide on purpose).
fn tagged_columns(schema: &model::Schema, t: usize) -> Vec<usize> {
    let table = &schema.tables[t];
    (0..table.columns.len())
        .filter(|&c| table.columns[c].references.is_none() && table.natural_key != Some(c))
        .collect()
}

/// Column-level engines: each final cell comes from a write to that cell
/// that no other write to it causally follows.
fn check_cells(schema: &model::Schema, history: &History, remote: &model::Tables) -> Result<(), Violation> {
    for (t, rows) in remote.iter().enumerate() {
        let table = &schema.tables[t];
        for (id, values) in rows {
            let class = merge_class(schema, history, remote, t, *id);
            let row_writes: Vec<&WriteRecord> = history
                .writes
                .iter()
                .filter(|w| w.table == t && w.kind != WriteKind::Delete && class.contains(&w.id))
                .collect();
            if row_writes.is_empty() {
                return Err(Violation::new(
                    Invariant::NoLostWrite,
                    format!(
                        "{}/{id} = {} is on the remote at the end, but no write made it",
                        table.name,
                        show_row(values)
                    ),
                ));
            }
            for c in tagged_columns(schema, t) {
                let value = &values[c];
                let cell: Vec<(&WriteRecord, &model::Value)> = row_writes
                    .iter()
                    .filter_map(|w| w.set.iter().find(|(wc, _)| *wc == c).map(|(_, v)| (*w, v)))
                    .collect();
                if cell.is_empty() {
                    continue;
                }
                let column = &table.columns[c].name;
                let candidates: Vec<&WriteRecord> = cell.iter().filter(|(_, v)| *v == value).map(|(w, _)| *w).collect();
                if candidates.is_empty() {
                    let origin = history
                        .writes
                        .iter()
                        .find(|w| w.table == t && w.set.iter().any(|(wc, v)| *wc == c && v == value))
                        .map(|w| format!("; it is the value {} wrote", describe(schema, w)))
                        .unwrap_or_else(|| "; no write of this case wrote it".into());
                    return Err(Violation::new(
                        Invariant::NoLostWrite,
                        format!(
                            "{}/{id}.{column} ends as {}, which no write to that cell wrote{origin}; the writes to it: {}",
                            table.name,
                            show_value(value),
                            list(schema, &cell)
                        ),
                    ));
                }
                let unfollowed = candidates
                    .iter()
                    .any(|a| !cell.iter().any(|(b, _)| b.n != a.n && history.follows(a, b)));
                if !unfollowed {
                    let a = candidates[candidates.len() - 1];
                    let (b, bv) = cell
                        .iter()
                        .rfind(|(b, _)| b.n != a.n && history.follows(a, b))
                        .copied()
                        .unwrap_or((a, value));
                    return Err(Violation::new(
                        Invariant::NoLostWrite,
                        format!(
                            "{}/{id}.{column} ends as {}, the value of w{} (r{}, step {}), but {}, and wrote {}: w{} was lost",
                            table.name,
                            show_value(value),
                            a.n,
                            a.replica,
                            a.step,
                            history.explain(a, b),
                            show_value(bv),
                            b.n
                        ),
                    ));
                }
            }
        }
    }
    Ok(())
}

fn list(schema: &model::Schema, cell: &[(&WriteRecord, &model::Value)]) -> String {
    let parts: Vec<String> = cell
        .iter()
        .map(|(w, v)| format!("{} = {}", describe(schema, w), show_value(v)))
        .collect();
    parts.join("; ")
}

/// Row-level engines: each final row is the row some latest write to it
/// left (a write no other write to the row causally follows).
fn check_rows(schema: &model::Schema, history: &History, remote: &model::Tables) -> Result<(), Violation> {
    for (t, rows) in remote.iter().enumerate() {
        let table = &schema.tables[t];
        let columns = tagged_columns(schema, t);
        for (id, values) in rows {
            let class = merge_class(schema, history, remote, t, *id);
            let row_writes: Vec<&WriteRecord> = history
                .writes
                .iter()
                .filter(|w| w.table == t && w.kind != WriteKind::Delete && class.contains(&w.id))
                .collect();
            if row_writes.is_empty() {
                return Err(Violation::new(
                    Invariant::NoLostWrite,
                    format!(
                        "{}/{id} = {} is on the remote at the end, but no write made it",
                        table.name,
                        show_row(values)
                    ),
                ));
            }
            let latest: Vec<&WriteRecord> = row_writes
                .iter()
                .filter(|a| !row_writes.iter().any(|b| b.n != a.n && history.follows(a, b)))
                .copied()
                .collect();
            let left_it = |w: &WriteRecord| {
                w.image
                    .as_ref()
                    .is_some_and(|image| columns.iter().all(|&c| image[c] == values[c]))
            };
            if !latest.iter().any(|w| left_it(w)) {
                let shown: Vec<String> = latest
                    .iter()
                    .map(|w| match &w.image {
                        Some(image) => format!("{} left {}", describe(schema, w), show_row(image)),
                        None => describe(schema, w),
                    })
                    .collect();
                let why = row_writes
                    .iter()
                    .find(|w| left_it(w))
                    .and_then(|old| {
                        latest
                            .iter()
                            .find(|b| history.follows(old, b))
                            .map(|b| format!(": it is the row w{} left, but {}", old.n, history.explain(old, b)))
                    })
                    .unwrap_or_default();
                return Err(Violation::new(
                    Invariant::NoLostWrite,
                    format!(
                        "{}/{id} ends as {}, which is not the row any latest write to it left{why}; latest writes: {}",
                        table.name,
                        show_row(values),
                        shown.join("; ")
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// No natural key held twice, no reference to a missing parent.
pub fn check_integrity(schema: &model::Schema, place: &str, tables: &model::Tables) -> Result<(), Violation> {
    for (t, table) in schema.tables.iter().enumerate() {
        if let Some(k) = table.natural_key {
            let mut seen = std::collections::BTreeMap::new();
            for (id, row) in &tables[t] {
                if row[k] != model::Value::Null {
                    if let Some(other) = seen.insert(row[k].clone(), *id) {
                        return Err(Violation::new(
                            Invariant::Integrity,
                            format!(
                                "{place}: {}.{} = {} held by rows {other} and {id}",
                                table.name,
                                table.columns[k].name,
                                show_value(&row[k])
                            ),
                        ));
                    }
                }
            }
        }
        for (c, col) in table.columns.iter().enumerate() {
            if let Some(p) = col.references {
                for (id, row) in &tables[t] {
                    if let model::Value::Int(parent) = row[c] {
                        if !tables[p].contains_key(&parent) {
                            return Err(Violation::new(
                                Invariant::Integrity,
                                format!(
                                    "{place}: {}/{id}.{} references missing {}/{parent}",
                                    table.name, col.name, schema.tables[p].name
                                ),
                            ));
                        }
                    }
                }
            }
        }
    }
    Ok(())
}
