//! The reference profile: the engine compared with the model in lockstep,
//! for engines that declare they implement the reference spec exactly.

use std::collections::BTreeSet;

use syncgate_model as model;

use super::answers::engine_violation;
use super::{Invariant, Violation};
use crate::places::Ledger;
use crate::show::show_row;
use crate::subject::Answer;

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

/// A sync inside another (SEMANTICS.md L3) that no order of the two, run on
/// the model, explains: `mismatch` is how the order `name` (the first
/// tried) differs from what happened.
pub fn no_order_explains(inner: (usize, &str), outer: (usize, &str), name: &str, mismatch: Violation) -> Violation {
    let ((s, inner_kind), (r, kind)) = (inner, outer);
    Violation::new(
        mismatch.invariant,
        format!(
            "no order of r{s}'s {inner_kind} and r{r}'s {kind} explains what they answered and what the places hold \
             (tried r{s}'s before, after, and between r{r}'s push batches); in the order '{name}': {}",
            mismatch.detail
        ),
    )
}

/// Rules of the ledger: every seq up to the highest captured one is pending
/// or at most the remote's applied seq; and every remembered victim belongs
/// to a delete still pending (rule D2: its acknowledgement forgets it).
pub fn check_ledger(place: &str, ledger: &Ledger) -> Result<(), Violation> {
    if let Some(cause) = ledger
        .victim_causes
        .iter()
        .find(|cause| ledger.pending.binary_search(cause).is_err())
    {
        return Err(Violation::new(
            Invariant::PendingAgreement,
            format!(
                "{place}: a row is still remembered as a victim of the delete with outbox seq {cause}, which is no \
                 longer pending (pending: {:?}); the push that applied the delete should have forgotten it",
                ledger.pending
            ),
        ));
    }
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

/// The engine's pending count equals the model's outbox length.
pub fn check_pending(place: &str, expected: u64, answer: &Answer<u64>) -> Result<(), Violation> {
    match answer {
        Answer::Ok(p) if *p == expected => Ok(()),
        Answer::Ok(p) => Err(Violation::new(
            Invariant::PendingAgreement,
            format!("{place}: expected {expected} pending, engine says {p}"),
        )),
        other => Err(engine_violation(&format!("{place} pending"), other)),
    }
}
