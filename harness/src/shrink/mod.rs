//! Shrinking a failing scenario to a minimal one that fails the same way.
//!
//! Works on the concrete steps (not on proptest's value tree), so a trace
//! loaded from a file shrinks as well as a freshly generated one: first
//! remove chunks of steps (halves, quarters, ... single steps), then make
//! each remaining step simpler, then drop unused replicas, then shrink a
//! case's own schema (`schema.rs`); repeat until nothing changes or the
//! budget of runs is spent.

mod schema;

use std::path::Path;

use crate::check::Invariant;
use crate::events::Event;
use crate::run::{run_case, CaseResult};
use crate::scenario::{IdChoice, Interleave, Reconnect, Scenario, Step, SyncKind, Val};
use crate::subject::Subject;
use syncgate_protocol::Limits;

/// What a shrunk case must still do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// Fail this property.
    Fails(Invariant),
    /// Reach this event and fail nothing (an example of what an engine's
    /// declarations let through).
    Reaches(Event),
}

impl Target {
    fn hit(self, result: &CaseResult) -> bool {
        match self {
            Target::Fails(invariant) => result.failure.as_ref().is_some_and(|(_, v)| v.invariant == invariant),
            Target::Reaches(event) => {
                result.failure.is_none() && result.fault.is_none() && result.events.get(&event).is_some_and(|n| *n > 0)
            }
        }
    }
}

/// The shrunk scenario, its run, and how many runs shrinking took.
pub struct Shrunk {
    pub scenario: Scenario,
    pub result: CaseResult,
    pub runs: usize,
}

pub fn shrink(subject: &dyn Subject, scenario: &Scenario, target: Target, base: &Path, runs_max: usize) -> Shrunk {
    let mut shrinker = Shrinker {
        subject,
        target,
        base,
        runs_max,
        best: scenario.clone(),
        best_result: run_case(subject, scenario, base),
        runs: 1,
    };
    loop {
        // Each pass runs whatever it must; `|` keeps every pass in every round.
        let progress = shrinker.remove_chunks()
            | shrinker.simplify_steps()
            | shrinker.reset_configuration()
            | shrinker.drop_replicas()
            | shrinker.shrink_schema();
        if !progress || shrinker.runs >= runs_max {
            break;
        }
    }
    let Shrinker {
        best,
        best_result,
        runs,
        ..
    } = shrinker;
    // Shrinking only ever removes or simplifies.
    assert!(
        best.steps.len() <= scenario.steps.len() && best.replicas <= scenario.replicas,
        "shrinking grew the case: {} steps x {} replicas from {} x {}",
        best.steps.len(),
        best.replicas,
        scenario.steps.len(),
        scenario.replicas
    );
    Shrunk {
        scenario: best,
        result: best_result,
        runs,
    }
}

/// The smallest failing scenario found so far, and the budget left.
struct Shrinker<'a> {
    subject: &'a dyn Subject,
    target: Target,
    base: &'a Path,
    runs_max: usize,
    best: Scenario,
    best_result: CaseResult,
    runs: usize,
}

impl Shrinker<'_> {
    /// Runs `candidate`; keeps it when it still hits the target.
    fn attempt(&mut self, candidate: Scenario) -> bool {
        if self.runs >= self.runs_max {
            return false;
        }
        self.runs += 1;
        let result = run_case(self.subject, &candidate, self.base);
        if !self.target.hit(&result) {
            return false;
        }
        self.best = candidate;
        self.best_result = result;
        true
    }

    /// Pass 1: remove chunks of steps: halves, quarters, ... single steps.
    fn remove_chunks(&mut self) -> bool {
        let mut progress = false;
        let mut chunk = (self.best.steps.len() / 2).max(1);
        loop {
            let mut i = 0;
            while i < self.best.steps.len() && self.best.steps.len() > 1 {
                let mut candidate = self.best.clone();
                let end = (i + chunk).min(candidate.steps.len());
                candidate.steps.drain(i..end);
                if candidate.steps.is_empty() {
                    i += chunk;
                    continue;
                }
                if self.attempt(candidate) {
                    progress = true;
                } else {
                    i += chunk;
                }
            }
            if chunk == 1 {
                return progress;
            }
            chunk /= 2;
        }
    }

    /// Pass 2: make each step simpler: the first simpler form that still fails.
    fn simplify_steps(&mut self) -> bool {
        let mut progress = false;
        for i in 0..self.best.steps.len() {
            for simpler in simplifications(&self.best.steps[i]) {
                let mut candidate = self.best.clone();
                candidate.steps[i] = simpler;
                if self.attempt(candidate) {
                    progress = true;
                    break;
                }
            }
        }
        progress
    }

    /// Pass 3: move each drawn limit back to the engine's default, and the
    /// clock's pace back to a second per step.
    fn reset_configuration(&mut self) -> bool {
        let mut progress = false;
        for knob in 0..LIMIT_KNOBS {
            let mut candidate = self.best.clone();
            if reset_limit(&mut candidate.limits, knob) && self.attempt(candidate) {
                progress = true;
            }
        }
        if self.best.step_ms.is_some() {
            let mut candidate = self.best.clone();
            candidate.step_ms = None;
            progress |= self.attempt(candidate);
        }
        progress
    }

    /// Pass 5: a case's own schema loses the tables, then the columns, no
    /// step needs (`schema.rs`), one at a time.
    fn shrink_schema(&mut self) -> bool {
        let mut progress = false;
        loop {
            let candidates = schema::without_a_table(&self.best)
                .into_iter()
                .chain(schema::without_a_column(&self.best));
            let mut shrunk = false;
            for candidate in candidates {
                if self.attempt(candidate) {
                    shrunk = true;
                    break;
                }
            }
            if !shrunk || self.runs >= self.runs_max {
                return progress;
            }
            progress = true;
        }
    }

    /// Pass 4: drop replicas no step uses, highest first.
    fn drop_replicas(&mut self) -> bool {
        let mut progress = false;
        while self.best.replicas > 1 && !self.best.steps.iter().any(|s| uses_replica(s, self.best.replicas - 1)) {
            let mut candidate = self.best.clone();
            candidate.replicas -= 1;
            if !self.attempt(candidate) {
                break;
            }
            progress = true;
        }
        progress
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
        5 => reset(&mut limits.drift_ms_max),
        _ => reset(&mut limits.statement_cache),
    }
}

fn uses_replica(step: &Step, r: usize) -> bool {
    step.replica() == Some(r)
}

/// Simpler variants of a step, simplest first.
fn simplifications(step: &Step) -> Vec<Step> {
    match step {
        Step::Insert {
            replica,
            table,
            id,
            values,
        } => simpler_inserts(*replica, *table, id, values),
        Step::Update {
            replica,
            table,
            row,
            column,
            value,
        } => {
            let update = |replica, row| Step::Update {
                replica,
                table: *table,
                row,
                column: *column,
                value: value.clone(),
            };
            let mut out = Vec::new();
            if *row > 0 {
                out.push(update(*replica, 0));
            }
            if *replica > 0 {
                out.push(update(0, *row));
            }
            out
        }
        Step::Delete { replica, table, row } => {
            let delete = |replica, row| Step::Delete {
                replica,
                table: *table,
                row,
            };
            let mut out = Vec::new();
            if *row > 0 {
                out.push(delete(*replica, 0));
            }
            if *replica > 0 {
                out.push(delete(0, *row));
            }
            out
        }
        Step::InsertFamily {
            replica,
            domain,
            records,
        } => {
            let family = |replica, records: &[Vec<Val>]| Step::InsertFamily {
                replica,
                domain: domain.clone(),
                records: records.to_vec(),
            };
            let mut out = Vec::new();
            if records.len() > 1 {
                out.push(family(*replica, &records[..1]));
            }
            if *replica > 0 {
                out.push(family(0, records));
            }
            out
        }
        Step::Sync {
            replica,
            kind,
            sessions_cut,
            interleave: Some(inner),
        } => simpler_interleavings(*replica, *kind, *sessions_cut, *inner),
        Step::Sync {
            replica,
            kind,
            sessions_cut,
            interleave: None,
        } => simpler_syncs(*replica, *kind, *sessions_cut),
        Step::Crash { replica, kind, at } => {
            let mut out = vec![Step::Sync {
                replica: *replica,
                kind: *kind,
                sessions_cut: None,
                interleave: None,
            }];
            if *kind == SyncKind::Full {
                for kind in [SyncKind::Push, SyncKind::Pull] {
                    out.push(Step::Crash {
                        replica: *replica,
                        kind,
                        at: *at,
                    });
                }
            }
            out
        }
        Step::LockRemote {
            lock,
            hold,
            ends_when_busy,
        } => {
            let mut out = Vec::new();
            if *ends_when_busy {
                out.push(Step::LockRemote {
                    lock: *lock,
                    hold: *hold,
                    ends_when_busy: false,
                });
            }
            if *hold > 1 {
                out.push(Step::LockRemote {
                    lock: *lock,
                    hold: 1,
                    ends_when_busy: *ends_when_busy,
                });
            }
            out
        }
        Step::LockCache { replica, hold } if *hold > 1 => vec![Step::LockCache {
            replica: *replica,
            hold: 1,
        }],
        // One thing that befell the replica fewer, one at a time.
        Step::Restart { replica, while_down } => (0..while_down.len())
            .map(|i| {
                let mut fewer = while_down.clone();
                fewer.remove(i);
                Step::Restart {
                    replica: *replica,
                    while_down: fewer,
                }
            })
            .collect(),
        Step::Clock { replica, offset_ms } if *offset_ms % 1000 != 0 => vec![Step::Clock {
            replica: *replica,
            offset_ms: offset_ms / 1000 * 1000,
        }],
        Step::Outside(inner) => simplifications(inner)
            .into_iter()
            .map(|s| Step::Outside(Box::new(s)))
            .collect(),
        // A rolled-back write: the same write committed is not simpler (it
        // shows other things), a simpler rolled-back write is.
        Step::Abort(inner) => simplifications(inner)
            .into_iter()
            .map(|s| Step::Abort(Box::new(s)))
            .collect(),
        _ => Vec::new(),
    }
}

/// An insert with a minted id, then with its first parent, then on replica 0.
fn simpler_inserts(replica: usize, table: usize, id: &IdChoice, values: &[Val]) -> Vec<Step> {
    let insert = |replica, id: &IdChoice, values: Vec<Val>| Step::Insert {
        replica,
        table,
        id: id.clone(),
        values,
    };
    let mut out = Vec::new();
    if *id != IdChoice::Mint {
        out.push(insert(replica, &IdChoice::Mint, values.to_vec()));
    }
    for (c, v) in values.iter().enumerate() {
        if let Val::Parent(n) = v {
            if *n > 0 {
                let mut values = values.to_vec();
                values[c] = Val::Parent(0);
                out.push(insert(replica, id, values));
            }
        }
    }
    if replica > 0 {
        out.push(insert(0, id, values.to_vec()));
    }
    out
}

/// A sync with nothing inside it, then the inner sync earlier in the
/// sync, then the inner sync's halves.
fn simpler_interleavings(
    replica: usize,
    kind: SyncKind,
    sessions_cut: Option<Reconnect>,
    inner: Interleave,
) -> Vec<Step> {
    let sync = |interleave| Step::Sync {
        replica,
        kind,
        sessions_cut,
        interleave,
    };
    let mut out = vec![sync(None)];
    if inner.after > 1 {
        out.push(sync(Some(Interleave {
            after: inner.after / 2,
            ..inner
        })));
        out.push(sync(Some(Interleave {
            after: inner.after - 1,
            ..inner
        })));
    }
    if inner.kind == SyncKind::Full {
        for half in [SyncKind::Push, SyncKind::Pull] {
            out.push(sync(Some(Interleave { kind: half, ..inner })));
        }
    }
    out
}

/// A sync with no sessions cut (or cut but accepted), then its halves, then
/// on replica 0.
fn simpler_syncs(replica: usize, kind: SyncKind, sessions_cut: Option<Reconnect>) -> Vec<Step> {
    let sync = |replica, kind, sessions_cut| Step::Sync {
        replica,
        kind,
        sessions_cut,
        interleave: None,
    };
    let mut out = Vec::new();
    if let Some(reconnect) = sessions_cut {
        out.push(sync(replica, kind, None));
        if reconnect != Reconnect::Accepted {
            out.push(sync(replica, kind, Some(Reconnect::Accepted)));
        }
    }
    if kind == SyncKind::Full {
        out.push(sync(replica, SyncKind::Push, sessions_cut));
        out.push(sync(replica, SyncKind::Pull, sessions_cut));
    }
    if replica > 0 {
        out.push(sync(0, kind, sessions_cut));
    }
    out
}
