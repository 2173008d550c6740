//! Rows named by the write that inserted them, for engines whose ids change
//! or differ between places (`ids: remote_map`, `ids: renumbered`): the
//! harness never trusts an id there. Every table has an **identity column**
//! (the first text column that is neither a natural key nor a reference),
//! and the runner gives it a tagged value on every insert and on every
//! update of it, so the tag it holds names the last write to it; that
//! write names the row (an insert its own row, an update the row it
//! addressed). A place's rows, read by id, become **logical rows**: keyed
//! by the number of the write that inserted the row (`L12` is the row w12
//! inserted), with each reference translated to the logical row it names
//! in that place. Every contract check then runs on logical rows as it
//! runs on ids for engines whose ids are stable.

use std::collections::BTreeMap;

use syncgate_model as model;

use syncgate_protocol::{IdPolicy, Renumbering};

use super::{Invariant, Violation};
use crate::history::{tag_of, History, WriteKind};
use crate::show::{show_row, show_value};

/// Per table, each physical id of a place and the logical row it is.
pub type IdMaps = Vec<BTreeMap<i64, i64>>;

/// A table with no column that can carry a write tag: the harness cannot
/// tell its rows apart without trusting their ids.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "table {0} has no text column that is neither a natural key nor a reference, so no column can carry a \
     write tag: rows whose ids change or differ between places cannot be told apart there; declare ids: stable"
)]
pub struct NoIdentityColumn(pub String);

/// The identity column of every table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Naming {
    columns: Vec<usize>,
}

impl Naming {
    pub fn of(schema: &model::Schema) -> Result<Naming, NoIdentityColumn> {
        let columns = schema
            .tables
            .iter()
            .map(|t| {
                t.columns
                    .iter()
                    .enumerate()
                    .position(|(c, col)| {
                        col.kind == model::ColumnKind::Text && col.references.is_none() && t.natural_key != Some(c)
                    })
                    .ok_or_else(|| NoIdentityColumn(t.name.clone()))
            })
            .collect::<Result<_, _>>()?;
        Ok(Naming { columns })
    }

    /// The identity column of table `t`.
    pub fn column(&self, t: usize) -> usize {
        self.columns[t]
    }

    /// `place`'s rows by logical row, and each physical id's logical row.
    /// A row whose identity names no write, or two rows that are one
    /// logical row, are violations: the place holds what no write made.
    pub fn logical(
        &self,
        schema: &model::Schema,
        history: &History,
        place: &str,
        tables: &model::Tables,
    ) -> Result<(model::Tables, IdMaps), Violation> {
        let mut maps: IdMaps = vec![BTreeMap::new(); tables.len()];
        for (t, rows) in tables.iter().enumerate() {
            let c = self.columns[t];
            let table = &schema.tables[t];
            for (id, row) in rows {
                let Some(logical) = tag_of(&row[c]).and_then(|n| logical_row_of_write(history, n)) else {
                    return Err(Violation::new(
                        Invariant::NoLostWrite,
                        format!(
                            "{place}: {}/{id} = {}: its {} {} names no write of this case, so no write made \
                             this row (the identity column carries the tag of the last write to it)",
                            table.name,
                            show_row(row),
                            table.columns[c].name,
                            show_value(&row[c])
                        ),
                    ));
                };
                if let Some((other, _)) = maps[t].iter().find(|(_, l)| **l == logical) {
                    let tag = tag_of(&row[c]).and_then(|n| history.write(n));
                    if let Some(update) = tag.filter(|w| w.kind == WriteKind::Update) {
                        return Err(Violation::new(
                            Invariant::WriteOnWrongRow,
                            format!(
                                "{place}: {}/{id} holds {} = {}, the value w{} wrote to L{logical} (the row \
                                 w{logical} inserted), which is {}/{other} here: the update reached a row it did \
                                 not address (was a local id sent for a remote one?)",
                                table.name,
                                table.columns[c].name,
                                show_value(&row[c]),
                                update.n,
                                table.name
                            ),
                        ));
                    }
                    return Err(Violation::new(
                        Invariant::Integrity,
                        format!(
                            "{place}: {}/{other} and {}/{id} are both L{logical} (the row w{logical} inserted): \
                             one row held twice",
                            table.name, table.name
                        ),
                    ));
                }
                maps[t].insert(*id, logical);
            }
        }
        let logical = tables
            .iter()
            .enumerate()
            .map(|(t, rows)| {
                rows.iter()
                    .map(|(id, row)| {
                        let values = row
                            .iter()
                            .enumerate()
                            .map(|(c, v)| translate_reference(schema, &maps, t, c, v))
                            .collect();
                        (maps[t][id], values)
                    })
                    .collect()
            })
            .collect();
        Ok((logical, maps))
    }
}

/// A reference cell names its parent by the parent's logical row in the
/// same place; a reference to no row there stays as it is (integrity,
/// checked on the ids themselves, names it).
fn translate_reference(schema: &model::Schema, maps: &IdMaps, t: usize, c: usize, v: &model::Value) -> model::Value {
    match (schema.tables[t].columns[c].references, v) {
        (Some(p), model::Value::Int(parent)) => {
            maps[p].get(parent).map_or_else(|| v.clone(), |l| model::Value::Int(*l))
        }
        _ => v.clone(),
    }
}

/// What the engine reported and what the harness saw between two reads of
/// a replica's cache: the ids by logical row before and after, and the
/// renumberings the replies in between reported.
#[derive(Clone, Debug, Default)]
pub struct Renumberings {
    pub before: IdMaps,
    pub reported: Vec<Renumbering>,
    /// The replica's process stopped at a crash point since: what it
    /// renumbered before the crash could not be reported.
    pub crashed: bool,
}

/// Every row whose id changed in a cache between two reads was reported
/// (`ids: renumbered`; with `remote_map` none may change), each report
/// names the row that moved, and no reference still holds an id its parent
/// left.
pub fn check_renumberings(
    schema: &model::Schema,
    history: &History,
    place: &str,
    policy: IdPolicy,
    seen: &Renumberings,
    after: &IdMaps,
    tables: &model::Tables,
) -> Result<(), Violation> {
    // Two logical rows inserted with one natural key are one row once
    // merged: the row keeps its id while the write naming it changes.
    let one_row = |was: i64, now: i64| {
        let key = |l: i64| {
            usize::try_from(l)
                .ok()
                .and_then(|n| history.write(n))
                .and_then(|w| w.key.clone())
        };
        was == now || key(was).is_some_and(|k| k != model::Value::Null && Some(k) == key(now))
    };
    let mut moved: Vec<(usize, i64, i64)> = Vec::new();
    for (t, table) in schema.tables.iter().enumerate() {
        let was: BTreeMap<i64, i64> = seen.before[t].iter().map(|(id, l)| (*l, *id)).collect();
        for (id, l) in &after[t] {
            let Some(&old) = was.get(l) else { continue };
            if old == *id {
                continue;
            }
            let reported = seen
                .reported
                .iter()
                .any(|n| n.table == table.name && n.from == old && n.to == *id);
            let fail = |why: &str| {
                Err(Violation::new(
                    Invariant::RenumberingReported,
                    format!(
                        "{place}: {} L{l} (the row w{l} inserted) moved from id {old} to {id}, {why}",
                        table.name
                    ),
                ))
            };
            match policy {
                IdPolicy::Renumbered if reported || seen.crashed => {}
                IdPolicy::Renumbered => return fail("and no reply since the harness last read the cache reported it"),
                _ => return fail("but the engine declares ids: remote_map: a cache's ids never change"),
            }
            moved.push((t, old, *id));
        }
    }
    for n in &seen.reported {
        let Some(t) = schema.tables.iter().position(|t| t.name == n.table) else {
            return Err(Violation::new(
                Invariant::RenumberingReported,
                format!(
                    "{place}: a reply reported a renumbering in {:?}, which is not a synced table",
                    n.table
                ),
            ));
        };
        let was = seen.before[t].get(&n.from);
        let now = after[t].get(&n.to);
        if let (Some(&was), Some(&now)) = (was, now) {
            if !one_row(was, now) {
                return Err(Violation::new(
                    Invariant::RenumberingReported,
                    format!(
                        "{place}: a reply reported {}/{} renumbered to {}, but {} was L{was} and {} is L{now}",
                        n.table, n.from, n.to, n.from, n.to
                    ),
                ));
            }
        }
        moved.push((t, n.from, n.to));
    }
    for (pt, from, to) in moved {
        if after[pt].contains_key(&from) {
            continue; // another row has that id now: references to it name that row
        }
        for (t, table) in schema.tables.iter().enumerate() {
            for (c, col) in table.columns.iter().enumerate() {
                if col.references != Some(pt) {
                    continue;
                }
                if let Some((id, _)) = tables[t].iter().find(|(_, row)| row[c] == model::Value::Int(from)) {
                    return Err(Violation::new(
                        Invariant::ReferencesFollowIds,
                        format!(
                            "{place}: {}/{id}.{} still holds {from}, the id of its parent in {} before it became {to}",
                            table.name, col.name, schema.tables[pt].name
                        ),
                    ));
                }
            }
        }
    }
    Ok(())
}

/// The logical row write `n` wrote: an insert its own, an update the row it
/// addressed (recorded as a logical row).
pub fn logical_row_of_write(history: &History, n: usize) -> Option<i64> {
    let w = history.write(n)?;
    match w.kind {
        WriteKind::Insert => i64::try_from(n).ok(),
        WriteKind::Update | WriteKind::Delete => Some(w.id),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::WriteRecord;

    fn t(s: &str) -> model::Value {
        model::Value::Text(s.into())
    }

    fn insert(replica: usize, table: usize, id: i64, set: Vec<(usize, model::Value)>) -> WriteRecord {
        WriteRecord {
            n: 0,
            replica,
            step: 1,
            seq: 0,
            table,
            id,
            kind: WriteKind::Insert,
            set,
            key: None,
            cascade: Vec::new(),
            knew: Vec::new(),
            outside: false,
            image: None,
        }
    }

    #[test]
    fn rows_and_references_are_named_by_the_writes_that_made_them() {
        let schema = model::test_schema();
        let naming = Naming::of(&schema).expect("every table has one");
        assert_eq!((naming.column(0), naming.column(1), naming.column(2)), (1, 0, 1));
        let mut h = History::new(1);
        h.record(insert(0, 0, 1, vec![(0, t("a.example")), (1, t("alpha.w1"))]));
        h.record(insert(0, 2, 2, vec![(0, model::Value::Int(1)), (1, t("MX.w2"))]));
        // The server gave the domain id 905 and the record 906.
        let mut remote: model::Tables = vec![model::Rows::new(); 3];
        remote[0].insert(905, vec![t("a.example"), t("alpha.w1"), model::Value::Null]);
        remote[2].insert(906, vec![model::Value::Int(905), t("MX.w2"), model::Value::Null]);
        let (logical, maps) = naming.logical(&schema, &h, "remote", &remote).expect("named");
        assert_eq!(maps[0].get(&905), Some(&1));
        assert_eq!(logical[2].get(&2).map(|row| row[0].clone()), Some(model::Value::Int(1)));
        // A row no write made is named as such.
        remote[1].insert(7, vec![t("nobody.w9"), model::Value::Null]);
        let v = naming
            .logical(&schema, &h, "remote", &remote)
            .expect_err("no write made it");
        assert_eq!(v.invariant, Invariant::NoLostWrite);
        assert!(v.detail.contains("hosts/7"), "{}", v.detail);
    }

    #[test]
    fn a_table_without_a_tag_column_is_refused() {
        let mut schema = model::test_schema();
        schema.tables[1].columns[0].kind = model::ColumnKind::Integer;
        schema.tables[1].columns[1].kind = model::ColumnKind::Integer;
        assert_eq!(Naming::of(&schema), Err(NoIdentityColumn("hosts".into())));
    }
}
