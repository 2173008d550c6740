//! `consistency: "causal"`, its other half (PROTOCOL.md, "Consistency
//! levels"): **monotonic reads**. A replica's cache never goes back: once a
//! cell showed the value of write `x`, it never later shows the value of a
//! write `x` causally follows (a replica restarted from its files
//! included). Judged between two observations of one replica's cache: the
//! one the runner kept last (`before`) and the one just made (`after`).
//!
//! A value names its write only when one write wrote it (a tag); a natural
//! key or a reference names none (merges and cascades write those). Under
//! row merges a concurrent write to the row may win with its whole row,
//! older cells included: a cell of a row that some write not before `x`
//! touched is left alone, as in `atomic.rs`'s `stale_cell`.

use syncgate_model as model;
use syncgate_protocol::{ConsistencyPolicy, MergePolicy, Policies};

use super::{sole_writer, tagged_columns};
use crate::check::{Invariant, Violation};
use crate::history::History;
use crate::show::show_value;

/// Checks that no cell of `after` went back from its value in `before`.
/// `Ok(true)`: some cell moved from one write's value to another write's
/// that is causally ordered with it, and the move was judged; `Ok(false)`:
/// no such move happened.
pub fn check_monotonic_reads(
    schema: &model::Schema,
    place: &str,
    history: &History,
    before: &model::Tables,
    after: &model::Tables,
    policies: &Policies,
) -> Result<bool, Violation> {
    if policies.consistency != ConsistencyPolicy::Causal {
        return Ok(false);
    }
    let mut judged = false;
    let writer = |t: usize, c: usize, v: &model::Value| sole_writer(history, t, c, v);
    for (t, rows) in after.iter().enumerate() {
        let columns = tagged_columns(schema, t);
        for (id, now) in rows {
            let Some(was) = before[t].get(id) else { continue };
            for &c in &columns {
                if was[c] == now[c] {
                    continue;
                }
                let (Some(seen), Some(shown)) = (writer(t, c, &was[c]), writer(t, c, &now[c])) else {
                    continue;
                };
                if seen.n == shown.n {
                    continue;
                }
                if !history.follows(shown, seen) {
                    judged |= history.follows(seen, shown);
                    continue;
                }
                let row_may_have_won = policies.merge == MergePolicy::Row
                    && history
                        .writes
                        .iter()
                        .any(|y| y.table == t && y.id == *id && y.n != seen.n && !history.follows(y, seen));
                if row_may_have_won {
                    continue;
                }
                let table = &schema.tables[t];
                return Err(Violation::new(
                    Invariant::MonotonicReads,
                    format!(
                        "{place} went back: {}/{id}.{} showed {} of w{}, and now shows {} of w{}, which w{} causally \
                         follows ({}); the engine declares consistency: causal (monotonic reads)",
                        table.name,
                        table.columns[c].name,
                        show_value(&was[c]),
                        seen.n,
                        show_value(&now[c]),
                        shown.n,
                        seen.n,
                        history.explain(shown, seen)
                    ),
                ));
            }
        }
    }
    Ok(judged)
}
