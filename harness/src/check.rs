//! The invariants, each named once, and the functions that check them.

use std::collections::BTreeSet;
use std::fmt;

use serde::{Deserialize, Serialize};
use syncgate_model as model;

use crate::subject::Ledger;

/// Every property the runner checks. Each variant's doc comment is its spec.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Invariant {
    /// The engine answers each step as the model does: the same ids for
    /// inserts, the same refusal, the same sync report, the same failure.
    OutcomeAgreement,
    /// Every row the model says a place holds is there (no lost write).
    WriteLost,
    /// No row the model has deleted is visible again.
    RowResurrected,
    /// No row the model does not know is visible (no duplicate, no phantom).
    RowUnexpected,
    /// Every row's values equal the model's (read-your-writes included).
    ValueDiverged,
    /// Each replica's pending count equals the model's.
    PendingAgreement,
    /// Every captured write is, at every step, still in its replica's
    /// outbox or applied on the remote.
    AcknowledgedWriteLost,
    /// No row references a parent that is not there.
    ForeignKeyViolated,
    /// No two live rows share a natural key.
    UniqueViolated,
    /// After quiescence every replica holds exactly the remote's rows.
    ReplicasDiverged,
    /// Quiescence drains every outbox within the round bound.
    StuckQueue,
    /// The engine could be opened and read at all.
    EngineFailed,
}

impl fmt::Display for Invariant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// A failed check: which invariant, where, and expected against actual.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Violation {
    pub invariant: Invariant,
    pub detail: String,
}

impl Violation {
    pub fn new(invariant: Invariant, detail: impl Into<String>) -> Violation {
        Violation {
            invariant,
            detail: detail.into(),
        }
    }
}

pub fn show_row(values: &[model::Value]) -> String {
    let parts: Vec<String> = values.iter().map(show_value).collect();
    format!("({})", parts.join(", "))
}

pub fn show_value(v: &model::Value) -> String {
    match v {
        model::Value::Null => "NULL".into(),
        model::Value::Int(i) => i.to_string(),
        model::Value::Text(s) => format!("{s:?}"),
    }
}

/// Compares what a place holds with what the model says it holds.
/// `deleted` are the rows the model knows were deleted there.
pub fn compare_tables(
    schema: &model::Schema,
    place: &str,
    expected: &model::Tables,
    actual: &model::Tables,
    deleted: &BTreeSet<(usize, i64)>,
) -> Result<(), Violation> {
    for (t, table) in schema.tables.iter().enumerate() {
        let (exp, act) = (&expected[t], &actual[t]);
        for (id, values) in exp {
            match act.get(id) {
                None => {
                    return Err(Violation::new(
                        Invariant::WriteLost,
                        format!(
                            "{place}: {}/{id} expected {} but it is missing",
                            table.name,
                            show_row(values)
                        ),
                    ))
                }
                Some(got) if got != values => {
                    return Err(Violation::new(
                        Invariant::ValueDiverged,
                        format!(
                            "{place}: {}/{id} expected {} actual {}",
                            table.name,
                            show_row(values),
                            show_row(got)
                        ),
                    ))
                }
                Some(_) => {}
            }
        }
        if let Some((id, values)) = act.iter().find(|(id, _)| !exp.contains_key(id)) {
            let invariant = if deleted.contains(&(t, *id)) {
                Invariant::RowResurrected
            } else {
                Invariant::RowUnexpected
            };
            return Err(Violation::new(
                invariant,
                format!(
                    "{place}: {}/{id} = {} should not be there",
                    table.name,
                    show_row(values)
                ),
            ));
        }
    }
    Ok(())
}

/// Rule of the ledger: every seq up to the highest captured one is pending
/// or at most the remote's applied seq.
pub fn check_ledger(place: &str, ledger: &Ledger) -> Result<(), Violation> {
    let unapplied = ledger.captured_max - ledger.remote_acked.min(ledger.captured_max);
    let pending_unapplied = ledger.pending.iter().filter(|&&s| s > ledger.remote_acked).count() as i64;
    if pending_unapplied < unapplied {
        let pending: BTreeSet<i64> = ledger.pending.iter().copied().collect();
        let lost: Vec<i64> = (ledger.remote_acked + 1..=ledger.captured_max)
            .filter(|s| !pending.contains(s))
            .take(5)
            .collect();
        return Err(Violation::new(
            Invariant::AcknowledgedWriteLost,
            format!(
                "{place}: outbox seqs {lost:?} are neither pending nor applied on the remote (remote applied up to {}, captured up to {})",
                ledger.remote_acked, ledger.captured_max
            ),
        ));
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
                            Invariant::UniqueViolated,
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
                                Invariant::ForeignKeyViolated,
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
