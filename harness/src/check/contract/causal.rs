//! `consistency: "causal"` (PROTOCOL.md, "Consistency levels"): writes
//! follow reads. No place shows a write `w` while a write `v` that `w`
//! causally follows (program order on a replica, push then pull between
//! replicas: `History::follows`) is missing there or stale there, in the
//! senses of `atomic.rs` (`missing_insert`, `stale_cell`): a row `v`
//! inserted is absent with nothing that took it, or a cell `v` set holds an
//! older value `v` follows.
//!
//! Writes made outside the engine's API are left out as causes (an engine
//! may declare them not captured: they never leave their replica), and so
//! are deletes (their absence is judged by `NoResurrection`).

use syncgate_model as model;
use syncgate_protocol::{ConsistencyPolicy, Policies};

use super::atomic::{missing_insert, shown_cell, stale_cell};
use crate::check::{Invariant, Violation};
use crate::history::{History, WriteKind, WriteRecord};
use crate::show::show_value;

/// Checks one observation of `place`. `Ok(true)`: the place showed a write
/// that causally follows another replica's write (through a push and a
/// pull), and its causes were judged; `Ok(false)`: nothing such was shown.
pub fn check_causal_visibility(
    schema: &model::Schema,
    place: &str,
    history: &History,
    tables: &model::Tables,
    policies: &Policies,
) -> Result<bool, Violation> {
    if policies.consistency != ConsistencyPolicy::Causal {
        return Ok(false);
    }
    let shown: Vec<_> = history
        .writes
        .iter()
        .filter(|w| !w.outside)
        .filter_map(|w| shown_cell(w, tables))
        .collect();
    // Per origin replica, how many of its first writes some shown write
    // follows: every write below that count is a cause to find here.
    let mut causes = vec![0_usize; history.replicas()];
    let mut across_replicas = false;
    for (w, _, _) in &shown {
        for (origin, known) in causes.iter_mut().enumerate() {
            let follows = if origin == w.replica { w.seq } else { w.knew[origin] };
            across_replicas |= origin != w.replica && follows > 0;
            *known = (*known).max(follows);
        }
    }
    let mut doom = None;
    for v in history
        .writes
        .iter()
        .filter(|v| !v.outside && v.kind != WriteKind::Delete && v.seq < causes[v.replica])
    {
        let witness = || {
            shown
                .iter()
                .find(|(w, _, _)| w.n != v.n && history.follows(v, w))
                .expect("a cause is followed by a shown write")
        };
        if let Some((v, column, held, older)) = stale_cell(schema, history, tables, policies, v) {
            let (w, shown_column, value) = witness();
            let table = &schema.tables[v.table];
            return Err(Violation::new(
                Invariant::CausalVisibility,
                format!(
                    "{place} shows {} but not w{}, which it causally follows ({}): {}/{}.{} holds {} of w{}, which \
                     w{} causally follows; the engine declares consistency: causal (writes follow reads)",
                    shown_text(schema, w, *shown_column, value),
                    v.n,
                    history.explain(v, w),
                    table.name,
                    v.id,
                    table.columns[column].name,
                    show_value(held),
                    older.n,
                    v.n
                ),
            ));
        }
        if missing_insert(schema, history, tables, policies, &mut doom, v) {
            let (w, shown_column, value) = witness();
            return Err(Violation::new(
                Invariant::CausalVisibility,
                format!(
                    "{place} shows {} but not w{}, which it causally follows ({}): no {}/{} there, and no delete or \
                     natural-key merge took it; the engine declares consistency: causal (writes follow reads)",
                    shown_text(schema, w, *shown_column, value),
                    v.n,
                    history.explain(v, w),
                    schema.tables[v.table].name,
                    v.id
                ),
            ));
        }
    }
    Ok(across_replicas)
}

fn shown_text(schema: &model::Schema, w: &WriteRecord, column: usize, value: &model::Value) -> String {
    let table = &schema.tables[w.table];
    format!(
        "w{} of r{} ({}/{}.{} holds {})",
        w.n,
        w.replica,
        table.name,
        w.id,
        table.columns[column].name,
        show_value(value)
    )
}
