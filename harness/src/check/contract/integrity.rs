//! `Integrity`: no natural key held twice, no reference to a missing
//! parent, as far as the engine promised (PROTOCOL.md, "Promises per
//! constraint"). What a promise lets through is a [`Breach`] the runner
//! counts, once per case, by what made it; the rest fails here.

use std::collections::BTreeSet;

use syncgate_model as model;
use syncgate_protocol::{NaturalKeyPolicy, Policies, ReferencesPolicy};

use crate::check::{Invariant, Violation};
use crate::show::show_value;

/// A constraint some place breaks, named by what identifies it across
/// places and steps (so one breach is counted once however many places
/// show it).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Breach {
    /// Row `id` holds the natural key `value` that an older row of its
    /// table (a smaller id) holds too.
    Duplicate {
        table: usize,
        column: usize,
        value: model::Value,
        id: i64,
    },
    /// Row `id`'s `column` names `parent`, which the place does not hold.
    Dangling {
        table: usize,
        id: i64,
        column: usize,
        parent: i64,
    },
}

/// What made a breach the promises allow: a merge (a sync, on any place),
/// or a write (the engine's own, or one made around its API).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MadeBy {
    Merge,
    Write,
}

/// How far an engine keeps each kind of constraint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Promises {
    pub natural_keys: NaturalKeyPolicy,
    pub references: ReferencesPolicy,
}

impl Promises {
    /// Everything, everywhere: version 1, and the reference.
    pub const STRICT: Promises = Promises {
        natural_keys: NaturalKeyPolicy::Merge,
        references: ReferencesPolicy::Enforced,
    };

    pub fn of(policies: &Policies) -> Promises {
        Promises {
            natural_keys: policies.natural_keys,
            references: policies.references,
        }
    }

    /// Whether no place may ever show `breach`.
    fn forbids(&self, breach: &Breach) -> bool {
        match breach {
            Breach::Duplicate { .. } => self.natural_keys.identifies_rows(),
            Breach::Dangling { .. } => self.references == ReferencesPolicy::Enforced,
        }
    }

    /// Whether the engine's own write must not make `breach` in its cache.
    fn forbids_own(&self, breach: &Breach) -> bool {
        self.forbids(breach)
            || match breach {
                Breach::Duplicate { .. } => self.natural_keys == NaturalKeyPolicy::LocalOnly,
                Breach::Dangling { .. } => self.references == ReferencesPolicy::LocalOnly,
            }
    }

    /// The declaration that allows `breach`, as a note names it.
    pub fn declaration(&self, breach: &Breach) -> String {
        let (field, value) = match breach {
            Breach::Duplicate { .. } => ("natural_keys", serde_json::to_string(&self.natural_keys)),
            Breach::Dangling { .. } => ("references", serde_json::to_string(&self.references)),
        };
        format!("{field}: {}", value.unwrap_or_default().trim_matches('"'))
    }
}

/// Every breach in `tables`, in a stable order.
pub fn breaches(schema: &model::Schema, tables: &model::Tables) -> Vec<Breach> {
    let mut found = Vec::new();
    for (t, table) in schema.tables.iter().enumerate() {
        if let Some(k) = table.natural_key {
            // Rows come by id: the first holder of a key is the oldest.
            let mut held: BTreeSet<&model::Value> = BTreeSet::new();
            for (id, row) in &tables[t] {
                if row[k] != model::Value::Null && !held.insert(&row[k]) {
                    found.push(Breach::Duplicate {
                        table: t,
                        column: k,
                        value: row[k].clone(),
                        id: *id,
                    });
                }
            }
        }
        for (c, col) in table.columns.iter().enumerate() {
            let Some(p) = col.references else { continue };
            for (id, row) in &tables[t] {
                if let model::Value::Int(parent) = row[c] {
                    if !tables[p].contains_key(&parent) {
                        found.push(Breach::Dangling {
                            table: t,
                            id: *id,
                            column: c,
                            parent,
                        });
                    }
                }
            }
        }
    }
    found
}

/// The oldest row of `rows` holding `value` in column `k`.
fn holders_first(rows: &model::Rows, k: usize, value: &model::Value) -> i64 {
    rows.iter()
        .find(|(_, row)| row[k] == *value)
        .map(|(id, _)| *id)
        .unwrap_or_default()
}

/// The breach in words, as `place` shows it.
fn show_breach(schema: &model::Schema, place: &str, breach: &Breach, tables: &model::Tables) -> String {
    match breach {
        Breach::Duplicate {
            table,
            column,
            value,
            id,
        } => {
            let holder = holders_first(&tables[*table], *column, value);
            let t = &schema.tables[*table];
            format!(
                "{place}: {}.{} = {} held by rows {holder} and {id}",
                t.name,
                t.columns[*column].name,
                show_value(value)
            )
        }
        Breach::Dangling {
            table,
            id,
            column,
            parent,
        } => {
            let t = &schema.tables[*table];
            format!(
                "{place}: {}/{id}.{} references missing {}/{parent}",
                t.name,
                t.columns[*column].name,
                schema.tables[t.columns[*column].references.unwrap_or(*table)].name
            )
        }
    }
}

/// No breach the engine's promises forbid everywhere.
pub fn check_integrity(
    schema: &model::Schema,
    place: &str,
    tables: &model::Tables,
    promises: &Promises,
) -> Result<(), Violation> {
    match breaches(schema, tables).into_iter().find(|b| promises.forbids(b)) {
        Some(breach) => Err(Violation::new(
            Invariant::Integrity,
            show_breach(schema, place, &breach, tables),
        )),
        None => Ok(()),
    }
}

/// Under `local_only`, the engine's own write (`what`, answered ok) made
/// no breach in its cache: none the cache shows now (`after`) that it did
/// not show before the write.
pub fn check_own_write_kept_constraints(
    schema: &model::Schema,
    place: &str,
    what: &str,
    before: &model::Tables,
    after: &model::Tables,
    promises: &Promises,
) -> Result<(), Violation> {
    let old: BTreeSet<Breach> = breaches(schema, before).into_iter().collect();
    let made = breaches(schema, after)
        .into_iter()
        .find(|b| promises.forbids_own(b) && !old.contains(b));
    match made {
        Some(breach) => Err(Violation::new(
            Invariant::Integrity,
            format!(
                "{}, right after {what} answered ok (not before it): the engine declares {}, so its own \
                 writes must keep that constraint in its cache (refuse the write instead)",
                show_breach(schema, place, &breach, after),
                promises.declaration(&breach)
            ),
        )),
        None => Ok(()),
    }
}
