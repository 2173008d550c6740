//! `transactions: "atomic"` (PROTOCOL.md, "Consistency levels"): no place
//! but the writer's own replica shows part of a committed local transaction.
//! Checked today for the fractured read a split push or a half-applied pull
//! makes: a place shows one write of the transaction (a cell holds its
//! tagged value) while a row the same transaction inserted is missing there
//! (absent, and no delete reached it or an ancestor, and no natural-key
//! merge took it).

use std::collections::BTreeMap;

use syncgate_model as model;
use syncgate_protocol::{NaturalKeyPolicy, Policies, TransactionsPolicy};

use super::Doom;
use crate::check::{Invariant, Violation};
use crate::history::{tag_of, History, WriteKind, WriteRecord};
use crate::show::show_value;

/// Checks one observation of `place` (`own`: the replica it is, if any; its
/// own transactions are not judged there).
pub fn check_atomic_visibility(
    schema: &model::Schema,
    place: &str,
    own: Option<usize>,
    history: &History,
    tables: &model::Tables,
    policies: &Policies,
) -> Result<(), Violation> {
    if policies.transactions != TransactionsPolicy::Atomic {
        return Ok(());
    }
    let mut transactions: BTreeMap<(usize, usize), Vec<&WriteRecord>> = BTreeMap::new();
    for w in history.writes.iter().filter(|w| !w.outside && Some(w.replica) != own) {
        transactions.entry((w.replica, w.step)).or_default().push(w);
    }
    let mut doom = None;
    for ((replica, step), writes) in transactions {
        if writes.len() < 2 {
            continue;
        }
        let Some((shown, column, value)) = writes.iter().find_map(|w| shown_cell(w, tables)) else {
            continue;
        };
        for w in writes.iter().filter(|w| w.kind == WriteKind::Insert) {
            let table = &schema.tables[w.table];
            if tables[w.table].contains_key(&w.id) {
                continue;
            }
            // A row with a natural key may have merged into the key's row
            // (or, with natural_keys refuse, been refused at push).
            if let (Some(k), Some(key)) = (table.natural_key, &w.key) {
                if *key != model::Value::Null
                    && (policies.natural_keys == NaturalKeyPolicy::Refuse
                        || tables[w.table].values().any(|row| row[k] == *key))
                {
                    continue;
                }
            }
            if doom
                .get_or_insert_with(|| Doom::of(schema, history))
                .doomed(w.table, w.id)
            {
                continue;
            }
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
    Ok(())
}

/// A cell of `tables` that holds `w`'s own tagged value: `w` is shown there.
fn shown_cell<'a>(w: &'a WriteRecord, tables: &model::Tables) -> Option<(&'a WriteRecord, usize, &'a model::Value)> {
    if w.kind == WriteKind::Delete {
        return None;
    }
    let row = tables[w.table].get(&w.id)?;
    w.set
        .iter()
        .find(|(c, v)| tag_of(v) == Some(w.n) && row[*c] == *v)
        .map(|(c, v)| (w, *c, v))
}
