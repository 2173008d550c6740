//! `transactions: "atomic"` (PROTOCOL.md, "Consistency levels"): no place
//! but the writer's own replica shows part of a committed local transaction.
//! A place shows one write of the transaction (a cell holds its tagged
//! value) while another write of it is
//! - **missing**: a row the transaction inserted is absent there, and no
//!   delete reached it or an ancestor, and no natural-key merge took it; or
//! - **stale**: a cell the write set holds the value of a write it causally
//!   follows (so it never arrived), not a concurrent winner's (under
//!   `merge: "row"`, no write concurrent with it or after it touched the
//!   row) nor a later write's.
//!
//! Both are the fractured read of a push that sends a transaction in two
//! remote transactions, or of a pull that applies half of one.

use std::collections::BTreeMap;

use syncgate_model as model;
use syncgate_protocol::{MergePolicy, NaturalKeyPolicy, Policies, TransactionsPolicy};

use super::Doom;
use crate::check::{Invariant, Violation};
use crate::history::{tag_of, History, WriteKind, WriteRecord};
use crate::show::show_value;

/// Checks one observation of `place` (`own`: the replica it is, if any; its
/// own transactions are not judged there). `Ok(true)`: the place showed
/// part of another replica's transaction of several writes, and all of it
/// was judged; `Ok(false)`: it showed none, so nothing was.
pub fn check_atomic_visibility(
    schema: &model::Schema,
    place: &str,
    own: Option<usize>,
    history: &History,
    tables: &model::Tables,
    policies: &Policies,
) -> Result<bool, Violation> {
    if policies.transactions != TransactionsPolicy::Atomic {
        return Ok(false);
    }
    let mut transactions: BTreeMap<(usize, usize), Vec<&WriteRecord>> = BTreeMap::new();
    for w in history.writes.iter().filter(|w| !w.outside && Some(w.replica) != own) {
        transactions.entry((w.replica, w.step)).or_default().push(w);
    }
    let mut doom = None;
    let mut judged = false;
    for ((replica, step), writes) in transactions {
        if writes.len() < 2 {
            continue;
        }
        let Some((shown, column, value)) = writes.iter().find_map(|w| shown_cell(w, tables)) else {
            continue;
        };
        judged = true;
        if let Some(stale) = writes
            .iter()
            .find_map(|v| stale_cell(schema, history, tables, policies, v))
        {
            let (v, stale_column, held, older) = stale;
            let table = &schema.tables[v.table];
            return Err(Violation::new(
                Invariant::AtomicVisibility,
                format!(
                    "fractured read: {place} shows w{} of r{replica}'s transaction at step {step} ({}/{}.{} holds {}) but \
                     not w{} of the same transaction: {}/{}.{} holds {} of w{}, which w{} causally follows ({}); the \
                     engine declares transactions: atomic: all of a transaction or none of it",
                    shown.n,
                    schema.tables[shown.table].name,
                    shown.id,
                    schema.tables[shown.table].columns[column].name,
                    show_value(value),
                    v.n,
                    table.name,
                    v.id,
                    table.columns[stale_column].name,
                    show_value(held),
                    older.n,
                    v.n,
                    history.explain(older, v)
                ),
            ));
        }
        for w in writes.iter().filter(|w| w.kind == WriteKind::Insert) {
            if !missing_insert(schema, history, tables, policies, &mut doom, w) {
                continue;
            }
            let table = &schema.tables[w.table];
            return Err(Violation::new(
                Invariant::AtomicVisibility,
                format!(
                    "fractured read: {place} shows w{} of r{replica}'s transaction at step {step} ({}/{}.{} holds {}) but \
                     not w{} of the same transaction: no {}/{} there, and no delete or natural-key merge took it (the \
                     engine declares transactions: atomic: all of a transaction or none of it)",
                    shown.n,
                    schema.tables[shown.table].name,
                    shown.id,
                    schema.tables[shown.table].columns[column].name,
                    show_value(value),
                    w.n,
                    table.name,
                    w.id
                ),
            ));
        }
    }
    Ok(judged)
}

/// Whether the row insert `w` made is missing from `tables`: absent, and
/// no natural-key merge (or, with natural_keys refuse, a refusal at push)
/// and no delete of it, its key or an ancestor took it. `doom` is made
/// once, when first needed.
pub(super) fn missing_insert(
    schema: &model::Schema,
    history: &History,
    tables: &model::Tables,
    policies: &Policies,
    doom: &mut Option<Doom>,
    w: &WriteRecord,
) -> bool {
    if w.kind != WriteKind::Insert || tables[w.table].contains_key(&w.id) {
        return false;
    }
    if let (Some(k), Some(key)) = (schema.tables[w.table].natural_key, &w.key) {
        if *key != model::Value::Null
            && (policies.natural_keys == NaturalKeyPolicy::Refuse || tables[w.table].values().any(|row| row[k] == *key))
        {
            return false;
        }
    }
    !doom
        .get_or_insert_with(|| Doom::of(schema, history))
        .doomed(w.table, w.id)
}

/// A cell `v` set that holds, in `tables`, the value of an older write `v`
/// causally follows: `v` never reached this place. A cell of a concurrent
/// winner, or of a later write, is not stale; nor, under row merges, any
/// cell of a row a write not before `v` touched (its whole row may have won);
/// nor a natural key or a reference (merges and cascades write those), nor a
/// value several writes wrote (it names none of them).
pub(super) fn stale_cell<'a>(
    schema: &model::Schema,
    history: &'a History,
    tables: &'a model::Tables,
    policies: &Policies,
    v: &WriteRecord,
) -> Option<(&'a WriteRecord, usize, &'a model::Value, &'a WriteRecord)> {
    if v.kind == WriteKind::Delete {
        return None;
    }
    let v = history.write(v.n)?;
    let row = tables[v.table].get(&v.id)?;
    let table = &schema.tables[v.table];
    let touched_since = |y: &&WriteRecord| y.table == v.table && y.id == v.id && y.n != v.n && !history.follows(y, v);
    if policies.merge == MergePolicy::Row && history.writes.iter().any(|y| touched_since(&y)) {
        return None;
    }
    v.set.iter().find_map(|(c, value)| {
        if row[*c] == *value || table.natural_key == Some(*c) || table.columns[*c].references.is_some() {
            return None;
        }
        let mut writers = history
            .writes
            .iter()
            .filter(|x| x.table == v.table && x.set.iter().any(|(xc, xv)| xc == c && *xv == row[*c]));
        match (writers.next(), writers.next()) {
            (Some(older), None) if older.n != v.n && history.follows(older, v) => Some((v, *c, &row[*c], older)),
            _ => None,
        }
    })
}

/// A cell of `tables` that holds `w`'s own tagged value: `w` is shown there.
pub(super) fn shown_cell<'a>(
    w: &'a WriteRecord,
    tables: &model::Tables,
) -> Option<(&'a WriteRecord, usize, &'a model::Value)> {
    if w.kind == WriteKind::Delete {
        return None;
    }
    let row = tables[w.table].get(&w.id)?;
    w.set
        .iter()
        .find(|(c, v)| tag_of(v) == Some(w.n) && row[*c] == *v)
        .map(|(c, v)| (w, *c, v))
}
