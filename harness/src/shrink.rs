//! Shrinking a failing scenario to a minimal one that fails the same way.
//!
//! Works on the concrete steps (not on proptest's value tree), so a trace
//! loaded from a file shrinks as well as a freshly generated one: first
//! remove chunks of steps (halves, quarters, ... single steps), then make
//! each remaining step simpler, then drop unused replicas; repeat until
//! nothing changes or the budget of runs is spent.

use std::path::Path;

use crate::check::Invariant;
use crate::run::{run_case, CaseResult};
use crate::scenario::{IdChoice, Reconnect, Scenario, Step, SyncKind, Val};
use crate::subject::Subject;
use syncgate_protocol::Limits;

/// The shrunk scenario, its run, and how many runs shrinking took.
pub struct Shrunk {
    pub scenario: Scenario,
    pub result: CaseResult,
    pub runs: usize,
}

pub fn shrink(
    subject: &dyn Subject,
    scenario: &Scenario,
    invariant: Invariant,
    base: &Path,
    runs_max: usize,
) -> Shrunk {
    let mut best = scenario.clone();
    let mut best_result = run_case(subject, &best, base);
    let mut runs = 1;
    let try_candidate = |candidate: &Scenario, runs: &mut usize| -> Option<CaseResult> {
        if *runs >= runs_max {
            return None;
        }
        *runs += 1;
        let result = run_case(subject, candidate, base);
        match &result.failure {
            Some((_, v)) if v.invariant == invariant => Some(result),
            _ => None,
        }
    };
    loop {
        let mut progress = false;
        // 1. Remove chunks of steps.
        let mut chunk = (best.steps.len() / 2).max(1);
        loop {
            let mut i = 0;
            while i < best.steps.len() && best.steps.len() > 1 {
                let mut candidate = best.clone();
                let end = (i + chunk).min(candidate.steps.len());
                candidate.steps.drain(i..end);
                if candidate.steps.is_empty() {
                    i += chunk;
                    continue;
                }
                if let Some(result) = try_candidate(&candidate, &mut runs) {
                    best = candidate;
                    best_result = result;
                    progress = true;
                } else {
                    i += chunk;
                }
            }
            if chunk == 1 {
                break;
            }
            chunk /= 2;
        }
        // 2. Simplify each step.
        for i in 0..best.steps.len() {
            for simpler in simplifications(&best.steps[i]) {
                let mut candidate = best.clone();
                candidate.steps[i] = simpler;
                if let Some(result) = try_candidate(&candidate, &mut runs) {
                    best = candidate;
                    best_result = result;
                    progress = true;
                    break;
                }
            }
        }
        // 3. Move each drawn limit back to the engine's default.
        for knob in 0..LIMIT_KNOBS {
            let mut candidate = best.clone();
            if !reset_limit(&mut candidate.limits, knob) {
                continue;
            }
            if let Some(result) = try_candidate(&candidate, &mut runs) {
                best = candidate;
                best_result = result;
                progress = true;
            }
        }
        // ... and the clock's pace back to a second per step.
        if best.step_ms.is_some() {
            let mut candidate = best.clone();
            candidate.step_ms = None;
            if let Some(result) = try_candidate(&candidate, &mut runs) {
                best = candidate;
                best_result = result;
                progress = true;
            }
        }
        // 4. Drop replicas no step uses, highest first.
        while best.replicas > 1 && !best.steps.iter().any(|s| uses_replica(s, best.replicas - 1)) {
            let mut candidate = best.clone();
            candidate.replicas -= 1;
            match try_candidate(&candidate, &mut runs) {
                Some(result) => {
                    best = candidate;
                    best_result = result;
                    progress = true;
                }
                None => break,
            }
        }
        if !progress || runs >= runs_max {
            break;
        }
    }
    Shrunk {
        scenario: best,
        result: best_result,
        runs,
    }
}

/// How many limits `reset_limit` knows.
const LIMIT_KNOBS: usize = 7;

/// Sets limit number `knob` back to the default; false if it already was.
fn reset_limit(limits: &mut Limits, knob: usize) -> bool {
    fn reset<T>(slot: &mut Option<T>) -> bool {
        slot.take().is_some()
    }
    match knob {
        0 => reset(&mut limits.pull_page_rows),
        1 => reset(&mut limits.push_batch_max),
        2 => reset(&mut limits.busy_retries_max),
        3 => reset(&mut limits.backoff_base_ms),
        4 => reset(&mut limits.backoff_max_ms),
        5 => reset(&mut limits.max_drift_ms),
        _ => reset(&mut limits.statement_cache),
    }
}

fn uses_replica(step: &Step, r: usize) -> bool {
    step.replica() == Some(r)
}

/// Simpler variants of a step, simplest first.
fn simplifications(step: &Step) -> Vec<Step> {
    let mut out = Vec::new();
    match step {
        Step::Insert {
            replica,
            table,
            id,
            values,
        } => {
            if *id != IdChoice::Mint {
                out.push(Step::Insert {
                    replica: *replica,
                    table: *table,
                    id: IdChoice::Mint,
                    values: values.clone(),
                });
            }
            for (c, v) in values.iter().enumerate() {
                if let Val::Parent(n) = v {
                    if *n > 0 {
                        let mut values = values.clone();
                        values[c] = Val::Parent(0);
                        out.push(Step::Insert {
                            replica: *replica,
                            table: *table,
                            id: id.clone(),
                            values,
                        });
                    }
                }
            }
            if *replica > 0 {
                out.push(Step::Insert {
                    replica: 0,
                    table: *table,
                    id: id.clone(),
                    values: values.clone(),
                });
            }
        }
        Step::Update {
            replica,
            table,
            row,
            column,
            value,
        } => {
            if *row > 0 {
                out.push(Step::Update {
                    replica: *replica,
                    table: *table,
                    row: 0,
                    column: *column,
                    value: value.clone(),
                });
            }
            if *replica > 0 {
                out.push(Step::Update {
                    replica: 0,
                    table: *table,
                    row: *row,
                    column: *column,
                    value: value.clone(),
                });
            }
        }
        Step::Delete { replica, table, row } => {
            if *row > 0 {
                out.push(Step::Delete {
                    replica: *replica,
                    table: *table,
                    row: 0,
                });
            }
            if *replica > 0 {
                out.push(Step::Delete {
                    replica: 0,
                    table: *table,
                    row: *row,
                });
            }
        }
        Step::InsertFamily {
            replica,
            domain,
            records,
        } => {
            if records.len() > 1 {
                out.push(Step::InsertFamily {
                    replica: *replica,
                    domain: domain.clone(),
                    records: records[..1].to_vec(),
                });
            }
            if *replica > 0 {
                out.push(Step::InsertFamily {
                    replica: 0,
                    domain: domain.clone(),
                    records: records.clone(),
                });
            }
        }
        Step::Sync {
            replica,
            kind,
            sessions_cut,
        } => {
            if let Some(reconnect) = sessions_cut {
                out.push(Step::Sync {
                    replica: *replica,
                    kind: *kind,
                    sessions_cut: None,
                });
                if *reconnect != Reconnect::Accepted {
                    out.push(Step::Sync {
                        replica: *replica,
                        kind: *kind,
                        sessions_cut: Some(Reconnect::Accepted),
                    });
                }
            }
            if *kind == SyncKind::Full {
                out.push(Step::Sync {
                    replica: *replica,
                    kind: SyncKind::Push,
                    sessions_cut: *sessions_cut,
                });
                out.push(Step::Sync {
                    replica: *replica,
                    kind: SyncKind::Pull,
                    sessions_cut: *sessions_cut,
                });
            }
            if *replica > 0 {
                out.push(Step::Sync {
                    replica: 0,
                    kind: *kind,
                    sessions_cut: *sessions_cut,
                });
            }
        }
        Step::Crash { replica, kind, at } => {
            out.push(Step::Sync {
                replica: *replica,
                kind: *kind,
                sessions_cut: None,
            });
            if *kind == SyncKind::Full {
                out.push(Step::Crash {
                    replica: *replica,
                    kind: SyncKind::Push,
                    at: *at,
                });
                out.push(Step::Crash {
                    replica: *replica,
                    kind: SyncKind::Pull,
                    at: *at,
                });
            }
        }
        Step::LockRemote { lock, hold } if *hold > 1 => out.push(Step::LockRemote { lock: *lock, hold: 1 }),
        Step::LockCache { replica, hold } if *hold > 1 => out.push(Step::LockCache {
            replica: *replica,
            hold: 1,
        }),
        Step::Restart {
            replica,
            offset_ms,
            rebuilt,
            cache_format,
            app_holds_cache,
            remote_drifted,
        } => {
            let restart = |rebuilt, cache_format, app_holds_cache, remote_drifted| Step::Restart {
                replica: *replica,
                offset_ms: *offset_ms,
                rebuilt,
                cache_format,
                app_holds_cache,
                remote_drifted,
            };
            if rebuilt.is_some() {
                out.push(restart(None, *cache_format, *app_holds_cache, *remote_drifted));
            }
            if cache_format.is_some() {
                out.push(restart(*rebuilt, None, *app_holds_cache, *remote_drifted));
            }
            if *app_holds_cache {
                out.push(restart(*rebuilt, *cache_format, false, *remote_drifted));
            }
            if remote_drifted.is_some() {
                out.push(restart(*rebuilt, *cache_format, *app_holds_cache, None));
            }
        }
        Step::Clock { replica, offset_ms } if *offset_ms % 1000 != 0 => out.push(Step::Clock {
            replica: *replica,
            offset_ms: offset_ms / 1000 * 1000,
        }),
        Step::Outside(inner) => out.extend(simplifications(inner).into_iter().map(|s| Step::Outside(Box::new(s)))),
        _ => {}
    }
    out
}
