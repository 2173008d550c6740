//! The contract after quiescence: every replica converged to the remote,
//! and the remote's rows are what the history allows (no clobbered insert,
//! no resurrection, no lost write: every cell from a write nothing follows).

use std::collections::BTreeMap;

use syncgate_model as model;
use syncgate_protocol::{DeletePolicy, IdPolicy, MergePolicy, NaturalKeyPolicy, Policies};

use super::{deleter, reused, tagged_columns, Doom};
use crate::check::{Invariant, Violation};
use crate::history::{History, WriteKind, WriteRecord};
use crate::show::{show_row, show_value};

/// Quiescence: syncing every replica round after round reaches a state
/// nobody changes and nothing is pending, within the round bound.
pub fn check_settled(settled: bool, rounds: usize, pending: &[u64]) -> Result<(), Violation> {
    if settled {
        return Ok(());
    }
    Err(Violation::new(
        Invariant::Liveness,
        format!(
            "after {rounds} rounds of syncing every replica the state still changes or writes stay pending; pending per replica {pending:?}"
        ),
    ))
}

/// After quiescence every replica holds exactly the remote's rows.
pub fn check_converged(
    schema: &model::Schema,
    caches: &[model::Tables],
    remote: &model::Tables,
    logical: bool,
) -> Result<(), Violation> {
    // Rows named by the writes that made them show as `L12`, not ids.
    let row = |table: &str, id: &i64| {
        if logical {
            format!("{table} L{id}")
        } else {
            format!("{table}/{id}")
        }
    };
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
                        "{}: r{r} has {}, the remote {}",
                        row(&table.name, id),
                        show_row(v),
                        show_row(rv)
                    ),
                    None => format!("{}: r{r} has {}, the remote nothing", row(&table.name, id), show_row(v)),
                })
                .or_else(|| {
                    theirs.iter().find(|(id, _)| !mine.contains_key(id)).map(|(id, v)| {
                        format!("{}: the remote has {}, r{r} nothing", row(&table.name, id), show_row(v))
                    })
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
    // Rows named by the writes that inserted them (ids that change or
    // differ between places): a reference names a logical row too, and is
    // checked like any cell where no natural-key merge re-points it.
    let logical = policies.ids != IdPolicy::Stable;
    let references = logical && policies.natural_keys != NaturalKeyPolicy::Merge;
    match policies.merge {
        MergePolicy::Column => check_cells(schema, history, remote, logical, references),
        MergePolicy::Row => check_rows(schema, history, remote, logical, references),
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
            if reused(history, w.table, w.id).is_some() {
                return Err(Violation::new(
                    Invariant::NoIdReuse,
                    format!(
                        "{} and {}: the second took the id of the first after {} deleted it (SQLite reuses a \
                         deleted row's id when an insert lets it choose); {holds}",
                        describe(schema, first),
                        describe(schema, w),
                        deleter(history, w.table, w.id)
                    ),
                ));
            }
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
            if let Some(reuse) = reused(history, t, id) {
                return Err(Violation::new(
                    Invariant::NoIdReuse,
                    format!(
                        "{}/{id} = {} is live on the remote at the end as the row {reuse} inserted under the id \
                         of a row {} deleted (SQLite reuses a deleted row's id when an insert lets it choose)",
                        schema.tables[t].name,
                        show_row(row),
                        deleter(history, t, id)
                    ),
                ));
            }
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
    let doom = Doom::of(schema, history);
    for w in history.writes.iter().filter(|w| w.kind == WriteKind::Insert) {
        let table = &schema.tables[w.table];
        let key = w.key.clone().filter(|k| *k != model::Value::Null);
        if doom.doomed(w.table, w.id) {
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

/// Column-level engines: each final cell comes from a write to that cell
/// that no other write to it causally follows.
fn check_cells(
    schema: &model::Schema,
    history: &History,
    remote: &model::Tables,
    logical: bool,
    references: bool,
) -> Result<(), Violation> {
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
            let mut columns = tagged_columns(schema, t);
            if references {
                columns.extend((0..table.columns.len()).filter(|&c| table.columns[c].references.is_some()));
            }
            for c in columns {
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
                    let origin_write = history
                        .writes
                        .iter()
                        .find(|w| w.table == t && w.set.iter().any(|(wc, v)| *wc == c && v == value));
                    let origin = origin_write
                        .map(|w| format!("; it is the value {} wrote", describe(schema, w)))
                        .unwrap_or_else(|| "; no write of this case wrote it".into());
                    // Rows named by the writes that made them: a value an
                    // update addressed to another row landed here.
                    let elsewhere = logical && origin_write.is_some_and(|w| !class.contains(&w.id));
                    if elsewhere {
                        return Err(Violation::new(
                            Invariant::WriteOnWrongRow,
                            format!(
                                "{} L{id} (the row w{id} inserted).{column} ends as {}{origin}, to another row: \
                                 the write reached a row it did not address (was a local id sent for a remote \
                                 one?); the writes to this row's {column}: {}",
                                table.name,
                                show_value(value),
                                list(schema, &cell)
                            ),
                        ));
                    }
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
fn check_rows(
    schema: &model::Schema,
    history: &History,
    remote: &model::Tables,
    logical: bool,
    references: bool,
) -> Result<(), Violation> {
    for (t, rows) in remote.iter().enumerate() {
        let table = &schema.tables[t];
        let mut columns = tagged_columns(schema, t);
        if references {
            columns.extend((0..table.columns.len()).filter(|&c| table.columns[c].references.is_some()));
        }
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
                // Rows named by the writes that made them: a value of a
                // write to another row landed here.
                let stray = columns.iter().find_map(|&c| {
                    let writers: Vec<&WriteRecord> = history
                        .writes
                        .iter()
                        .filter(|w| w.table == t && w.set.iter().any(|(wc, v)| *wc == c && *v == values[c]))
                        .collect();
                    match writers.as_slice() {
                        [w] if logical && !class.contains(&w.id) => Some((c, *w)),
                        _ => None,
                    }
                });
                if let Some((c, w)) = stray {
                    return Err(Violation::new(
                        Invariant::WriteOnWrongRow,
                        format!(
                            "{} L{id} (the row w{id} inserted) ends as {}: its {} is the value {} wrote, to another \
                             row: the write reached a row it did not address (was a local id sent for a remote \
                             one?); latest writes to this row: {}",
                            table.name,
                            show_row(values),
                            table.columns[c].name,
                            describe(schema, w),
                            shown.join("; ")
                        ),
                    ));
                }
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
