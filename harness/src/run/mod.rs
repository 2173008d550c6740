//! Runs one scenario on a subject, step by step: translate the step against
//! what the harness last read, perform it through the seam, observe the
//! places it touched by reading the files, and check. After the steps,
//! quiescence, then the final checks.
//!
//! Architecture Invariant: a run is deterministic. One thread runs the
//! steps in order; time comes from the scenario (step number plus each
//! replica's offset); locks are held by connections the harness owns and
//! releases at named steps. Same scenario, same trace, byte for byte. The
//! runner reaches engines only through `crate::subject`, and files only
//! through `crate::places`.

mod restart;
mod sync;
mod translate;

use std::collections::BTreeSet;
use std::path::Path;

use syncgate_model as model;
use syncgate_protocol::{InitOk, OutsideInsertIds, Profile, RefusalClass, RemoteLocation, SyncFailureClass};

use crate::check::contract::{self, Expect};
use crate::check::{profile, reads, Invariant, Violation};
use crate::events::{count, Event, Events};
use crate::history::{History, WriteKind, WriteRecord};
use crate::places::{OutsideRefusal, Places};
use crate::report;
use crate::scenario::{CrashAt, LockKind, Reconnect, Scenario, Step, SyncKind};
use crate::subject::{Answer, OpenSpec, Subject, SubjectReplica};
pub use translate::{descendants, Action, Cell, PlannedKind, PlannedOp};
use translate::{describe, model_writes, protocol_ops, View};

/// Wall-clock start of every case, in ms since the epoch.
pub const T0_MS: i64 = 1_700_000_000_000;
/// True time advances this much per step.
pub const STEP_MS: i64 = 1_000;
/// Sync rounds quiescence may take before the queue counts as stuck.
pub const QUIESCENCE_ROUNDS_MAX: usize = 6;

/// What one run produced.
#[derive(Clone, Debug)]
pub struct CaseResult {
    /// One line per step, then the quiescence rounds.
    pub trace: Vec<String>,
    /// The first violation and the step (1-based; beyond the steps means
    /// quiescence) where it happened.
    pub failure: Option<(usize, Violation)>,
    pub events: Events,
    /// Every place's final rows as a table, for reports and the double-run
    /// check.
    pub final_state: String,
    /// Whether the reference profile (lockstep with the model) was checked.
    pub profile_checked: bool,
    /// What the engine declared in its handshake, when it started at all.
    pub engine: Option<InitOk>,
}

/// Runs `scenario` on `subject` in a fresh folder under `base`. A panic (an
/// assertion of the model, the harness or an in-process engine) fails the
/// case as `Panicked`, so it is shrunk and replayed like any failure.
pub fn run_case(subject: &dyn Subject, scenario: &Scenario, base: &Path) -> CaseResult {
    let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        run_case_unguarded(subject, scenario, base)
    }));
    run.unwrap_or_else(|payload| {
        let message = payload
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "a panic without a message".into());
        CaseResult {
            trace: Vec::new(),
            failure: Some((0, Violation::new(Invariant::Panicked, message))),
            events: Events::new(),
            final_state: String::new(),
            profile_checked: false,
            engine: None,
        }
    })
}

fn run_case_unguarded(subject: &dyn Subject, scenario: &Scenario, base: &Path) -> CaseResult {
    let mut trace = Vec::new();
    let dir = match tempfile::Builder::new().prefix("syncgate-case-").tempdir_in(base) {
        Ok(dir) => dir,
        Err(e) => {
            return setup_failure(
                trace,
                format!("cannot make a temporary folder in {}: {e}", base.display()),
            )
        }
    };
    let mut runner = match Runner::new(subject, scenario, dir.path()) {
        Ok(r) => r,
        Err(msg) => return setup_failure(trace, msg),
    };
    let mut failure = None;
    for (i, step) in scenario.steps.iter().enumerate() {
        runner.time_ms = T0_MS + (i as i64 + 1) * scenario.step_ms.unwrap_or(STEP_MS);
        runner.step_no = i + 1;
        let outcome = runner.step(step);
        trace.push(format!("{:>3}. {}", i + 1, outcome.line));
        if let Err(v) = outcome.verdict {
            failure = Some((i + 1, v));
            break;
        }
        runner.tick_locks();
    }
    if failure.is_none() {
        let n = scenario.steps.len();
        if let Err((at, v)) = runner.quiesce(&mut trace, n) {
            failure = Some((at, v));
        }
    }
    runner.release_locks();
    if let Some((_, v)) = &mut failure {
        let tails = runner.log_tails();
        if !tails.is_empty() {
            v.detail.push_str(&tails);
        }
    }
    let final_state = runner.final_state();
    CaseResult {
        trace,
        failure,
        events: runner.events,
        final_state,
        profile_checked: runner.model.is_some(),
        engine: runner.engine,
    }
}

fn setup_failure(trace: Vec<String>, msg: String) -> CaseResult {
    CaseResult {
        trace,
        failure: Some((0, Violation::new(Invariant::EngineFailed, msg))),
        events: Events::new(),
        final_state: String::new(),
        profile_checked: false,
        engine: None,
    }
}

/// The verdict of one step's checks.
type Verdict = Result<(), Violation>;

/// What one step did: its line in the trace, and the verdict of the checks
/// that followed it.
#[derive(Clone, Debug)]
pub struct StepOutcome {
    pub line: String,
    pub verdict: Verdict,
}

impl StepOutcome {
    fn new(line: String, verdict: Verdict) -> StepOutcome {
        StepOutcome { line, verdict }
    }
}

struct Runner<'a> {
    subject: &'a dyn Subject,
    schema: model::Schema,
    places: Places,
    replicas: Vec<Option<Box<dyn SubjectReplica>>>,
    /// The handshake of the first replica; every later one must match it.
    engine: Option<InitOk>,
    /// The model, when the engine declared the reference profile.
    model: Option<model::World>,
    /// Each cache as last read, and the remote.
    caches: Vec<model::Tables>,
    remote: model::Tables,
    /// Every id each replica ever held, per table.
    seen: Vec<Vec<BTreeSet<i64>>>,
    /// Every id the application had minted (`mint_id`), used or given up.
    minted: BTreeSet<i64>,
    history: History,
    offsets: Vec<i64>,
    events: Events,
    time_ms: i64,
    step_no: usize,
    limits: syncgate_protocol::Limits,
    /// The furthest any clock was set ahead of true time.
    offsets_ahead_max: i64,
    /// Per replica: its last push failed busy (for the busy-then-pushed event).
    push_was_busy: Vec<bool>,
}

impl<'a> Runner<'a> {
    fn new(subject: &'a dyn Subject, scenario: &Scenario, dir: &Path) -> Result<Runner<'a>, String> {
        let n = scenario.replicas;
        let schema = model::test_schema();
        let empty: model::Tables = vec![model::Rows::new(); schema.tables.len()];
        let mut runner = Runner {
            subject,
            places: Places::new(&schema, dir, n, &subject.remote()),
            replicas: (0..n).map(|_| None).collect(),
            engine: None,
            model: None,
            caches: vec![empty.clone(); n],
            remote: empty,
            seen: vec![vec![BTreeSet::new(); schema.tables.len()]; n],
            minted: BTreeSet::new(),
            history: History::new(n),
            offsets: vec![0; n],
            events: Events::new(),
            time_ms: T0_MS,
            step_no: 0,
            limits: scenario.limits,
            offsets_ahead_max: 0,
            push_was_busy: vec![false; n],
            schema,
        };
        let copied = subject.files_are_copyable() && copy_template(subject, n, dir)?;
        for r in 0..n {
            let replica = runner.open(r, !copied && r == 0, !copied)?;
            runner.replicas[r] = Some(replica);
        }
        if runner.profile() {
            // The model knows the two limits that change outcomes: how far a
            // stamp may drift (O4) and where a push batch is cut (S2, S5).
            let defaults = model::Config::default();
            // It is also told the busy retries and their backoff, which
            // decide how a busy step ends (L1).
            let limits = &scenario.limits;
            let config = model::Config {
                max_drift_ms: limits.max_drift_ms.unwrap_or(defaults.max_drift_ms),
                push_batch_max: limits.push_batch_max.map_or(defaults.push_batch_max, |v| {
                    usize::try_from(v).unwrap_or(usize::MAX).max(1)
                }),
                busy_retries_max: limits.busy_retries_max.unwrap_or(defaults.busy_retries_max),
                backoff_base_ms: limits.backoff_base_ms.unwrap_or(defaults.backoff_base_ms),
                backoff_max_ms: limits.backoff_max_ms.unwrap_or(defaults.backoff_max_ms),
            };
            runner.model = Some(model::World::new(runner.schema.clone(), config, n));
        }
        Ok(runner)
    }

    fn profile(&self) -> bool {
        self.engine
            .as_ref()
            .is_some_and(|e| e.capabilities.profile == Some(Profile::Reference))
    }

    fn caps(&self) -> &syncgate_protocol::Capabilities {
        match &self.engine {
            Some(e) => &e.capabilities,
            None => unreachable!("a runner exists only after a handshake"),
        }
    }

    fn open(&mut self, r: usize, create_remote: bool, fresh: bool) -> Result<Box<dyn SubjectReplica>, String> {
        let spec = OpenSpec {
            replica: r,
            replicas: self.replicas.len(),
            cache: self.places.cache_path(r),
            remote: self.places.engine_remote(r)?,
            create_remote,
            fresh,
            clock_ms: self.now(r),
            limits: self.limits,
        };
        let (replica, init_ok) = self.subject.open_replica(&spec)?;
        match &self.engine {
            None => self.engine = Some(init_ok),
            Some(first) if *first != init_ok => {
                return Err(format!(
                    "replica {r} declared other capabilities or policies than replica 0: {init_ok:?} vs {first:?}"
                ))
            }
            Some(_) => {}
        }
        Ok(replica)
    }

    fn now(&self, r: usize) -> i64 {
        self.time_ms + self.offsets[r]
    }

    fn up(&self, r: usize) -> bool {
        self.replicas[r].is_some()
    }

    /// Runs one step; returns its trace line and the checks' verdict.
    fn step(&mut self, step: &Step) -> StepOutcome {
        let (deleted, _) = self.history.deleted();
        let view = View {
            schema: &self.schema,
            caches: &self.caches,
            remote: &self.remote,
            seen: &self.seen,
            deleted: &deleted,
            next_write: self.history.next_write_number(),
            explicit_ids: self.engine.as_ref().is_some_and(|e| e.policies.explicit_ids),
        };
        let action = match view.translate(step) {
            Ok(action) => action,
            Err(why) => {
                let who = step.replica().map(|r| format!("r{r} ")).unwrap_or_default();
                return StepOutcome::new(format!("{who}{why} (skipped)"), Ok(()));
            }
        };
        let before = self.model.as_ref().map(|m| m.events.clone());
        let out = match action {
            Action::Write {
                replica,
                ops,
                outside,
                abandoned_ids,
            } => {
                if outside {
                    self.outside_write(replica, &ops, abandoned_ids)
                } else {
                    self.write(replica, &ops)
                }
            }
            Action::Sync {
                replica,
                kind,
                crash,
                sessions_cut,
            } => self.sync(replica, kind, crash, sessions_cut),
            Action::Restart {
                replica,
                offset_ms,
                rebuilt,
                cache_format,
                remote_drifted,
                app_holds_cache,
            } => self.restart_step(
                replica,
                offset_ms,
                rebuilt,
                cache_format,
                remote_drifted,
                app_holds_cache,
            ),
            Action::LockRemote { lock, hold } => self.lock_remote(lock, hold),
            Action::LockCache { replica, hold } => self.lock_cache(replica, hold),
            Action::Clock { replica, offset_ms } => {
                if self.caps().clock {
                    self.offsets[replica] = offset_ms;
                    self.offsets_ahead_max = self.offsets_ahead_max.max(offset_ms);
                    count(&mut self.events, Event::ClockSkew, u64::from(offset_ms != 0));
                    StepOutcome::new(format!("r{replica} clock offset {offset_ms:+} ms"), Ok(()))
                } else {
                    StepOutcome::new(
                        format!("r{replica} clock offset (skipped: the engine takes no injected clock)"),
                        Ok(()),
                    )
                }
            }
        };
        if let Some(before) = before {
            self.count_model_events(&before);
        }
        out
    }

    fn count_model_events(&mut self, before: &model::Events) {
        let Some(m) = &self.model else { return };
        let now = m.events.clone();
        let e = &mut self.events;
        count(
            e,
            Event::ConflictWonLocally,
            now.conflicts_won_locally - before.conflicts_won_locally,
        );
        count(
            e,
            Event::ConflictWonRemotely,
            now.conflicts_won_remotely - before.conflicts_won_remotely,
        );
        count(
            e,
            Event::NaturalKeyMerge,
            now.natural_key_merges - before.natural_key_merges,
        );
        count(
            e,
            Event::DeleteAbsorbedWrite,
            now.tombstone_absorbed - before.tombstone_absorbed,
        );
        count(e, Event::CascadeDelete, now.cascade_deletes - before.cascade_deletes);
        count(
            e,
            Event::DuplicatePushSkipped,
            now.duplicate_pushes_skipped - before.duplicate_pushes_skipped,
        );
        count(e, Event::HlcTie, now.hlc_ties - before.hlc_ties);
        count(e, Event::BatchCut, now.batch_cuts - before.batch_cuts);
        count(
            e,
            Event::PulledParentDeath,
            now.pulled_deaths_with_local_children - before.pulled_deaths_with_local_children,
        );
    }

    /// Tells the engine the replica's time, where it takes an injected clock.
    fn set_clock(&mut self, r: usize) -> Verdict {
        if !self.caps().clock {
            return Ok(());
        }
        let now = self.now(r);
        let Some(replica) = self.replicas[r].as_mut() else {
            return Ok(());
        };
        match replica.set_clock(now) {
            Answer::Ok(()) => Ok(()),
            other => Err(engine_violation(&format!("r{r} set_clock"), &other)),
        }
    }

    // ----------------------------------------------------------------- writes

    fn write(&mut self, r: usize, ops: &[PlannedOp]) -> StepOutcome {
        let desc = describe(&self.schema, ops);
        let now = self.now(r);
        let expected = self.model.as_mut().map(|m| {
            let writes = model_writes(ops, m.replicas[r].next_id);
            m.write(r, now, &writes)
        });
        if !self.up(r) {
            let verdict = down_agrees(expected.as_ref().map(|e| e == &Err(model::WriteRefusal::Down)));
            return StepOutcome::new(format!("r{r} {desc} -> down"), verdict);
        }
        if let Err(v) = self.set_clock(r) {
            return StepOutcome::new(format!("r{r} {desc} -> error"), Err(v));
        }
        let answer = match self.replicas[r].as_mut() {
            Some(replica) => replica.write(&protocol_ops(&self.schema, ops)),
            None => Answer::Error("replica vanished".into()),
        };
        let shown = match &answer {
            Answer::Ok(ids) => format!("ok {ids:?}"),
            other => show_failure(other),
        };
        let line = format!("r{r} {desc} -> {shown}");
        self.count_write_answer(&answer, ops.len());
        let mut verdict = match (&answer, &expected) {
            (_, Some(expected)) => write_agrees(r, expected, &answer, &shown),
            (Answer::Ok(_) | Answer::Refused(..), None) => Ok(()),
            (other, None) => Err(engine_violation(&format!("r{r} write"), other)),
        };
        if verdict.is_ok() {
            verdict = self.after_write(r, ops, &answer, false);
        }
        StepOutcome::new(line, verdict)
    }

    fn outside_write(&mut self, r: usize, ops: &[PlannedOp], abandoned_ids: u8) -> StepOutcome {
        let mut ops = ops.to_vec();
        let desc = describe(&self.schema, &ops);
        let mut gave_up = Vec::new();
        let line =
            |gave_up: &[i64], answer: &str| format!("r{r} outside the engine: {}{desc} -> {answer}", given_up(gave_up));
        if self.caps().outside_writes == syncgate_protocol::OutsideWrites::NotCaptured {
            return StepOutcome::new(
                line(
                    &[],
                    "skipped: the engine declares it does not capture writes made outside its API",
                ),
                Ok(()),
            );
        }
        if !self.up(r) {
            return StepOutcome::new(line(&[], "skipped: the application is down"), Ok(()));
        }
        // An insert takes an id the engine mints, where it asks for that;
        // ids minted and given up on first stay reserved.
        let table = ops[0].table;
        if let PlannedKind::Insert { id } = &mut ops[0].kind {
            if self.caps().outside_insert_ids == OutsideInsertIds::Engine {
                for _ in 0..abandoned_ids {
                    match self.mint_outside(r, table) {
                        Ok(Some(minted)) => gave_up.push(minted),
                        Ok(None) => return StepOutcome::new(line(&gave_up, "mint_id refused busy"), Ok(())),
                        Err((shown, v)) => return StepOutcome::new(line(&gave_up, &shown), Err(v)),
                    }
                }
                count(&mut self.events, Event::MintedIdAbandoned, gave_up.len() as u64);
                match self.mint_outside(r, table) {
                    Ok(Some(minted)) => *id = Some(minted),
                    Ok(None) => return StepOutcome::new(line(&gave_up, "mint_id refused busy"), Ok(())),
                    Err((shown, v)) => return StepOutcome::new(line(&gave_up, &shown), Err(v)),
                }
            }
        }
        let desc_now = describe(&self.schema, &ops);
        let expected = self.model.as_mut().map(|m| {
            let writes = model_writes(&ops, m.replicas[r].next_id);
            m.write_outside(r, &writes)
        });
        let op = &protocol_ops(&self.schema, &ops)[0];
        let outcome = self.places.outside_write(r, op);
        let answer = match &outcome {
            Ok(id) => Answer::Ok(id.map(|id| vec![id]).unwrap_or_default()),
            Err(OutsideRefusal::Busy) => Answer::Refused(RefusalClass::Busy, "the cache is locked".into()),
            Err(OutsideRefusal::Refused(msg)) => Answer::Refused(RefusalClass::Other, msg.clone()),
        };
        let shown = match &answer {
            Answer::Ok(ids) => format!("ok {ids:?}"),
            other => show_failure(other),
        };
        let line = format!("r{r} outside the engine: {}{desc_now} -> {shown}", given_up(&gave_up));
        count(
            &mut self.events,
            Event::OutsideWrite,
            u64::from(matches!(answer, Answer::Ok(_))),
        );
        if matches!(answer, Answer::Refused(RefusalClass::Busy, _)) {
            count(&mut self.events, Event::Busy, 1);
        }
        // Raw SQL refuses with its own words: only ok against refused counts.
        let verdict = match &expected {
            Some(Ok(ids)) if matches!(&answer, Answer::Ok(a) if a == ids) => Ok(()),
            Some(Err(model::WriteRefusal::Busy)) if matches!(answer, Answer::Refused(RefusalClass::Busy, _)) => Ok(()),
            Some(Err(_)) if matches!(answer, Answer::Refused(..)) => Ok(()),
            Some(expected) => Err(Violation::new(
                Invariant::OutcomeAgreement,
                format!("r{r} outside write: model says {expected:?}, SQLite says {shown}"),
            )),
            None => Ok(()),
        };
        let verdict = verdict.and_then(|()| self.after_write(r, &ops, &answer, true));
        StepOutcome::new(line, verdict)
    }

    /// The application asks replica `r` to mint an id of `table`: the id,
    /// `None` when refused busy (as the model says), or the violation with
    /// what the engine said.
    fn mint_outside(&mut self, r: usize, table: usize) -> Result<Option<i64>, (String, Violation)> {
        let expected = self.model.as_mut().map(|m| m.mint_id(r));
        let answer = match self.replicas[r].as_mut() {
            Some(replica) => replica.mint_id(&self.schema.tables[table].name),
            None => Answer::Error("replica vanished".into()),
        };
        if let Answer::Ok(minted) = answer {
            if !self.minted.insert(minted) {
                // Contract: a minted id is reserved, used or given up.
                return Err((
                    format!("minted {minted}"),
                    Violation::new(
                        Invariant::NoClobber,
                        format!("r{r} mint_id handed out {minted} again: an id once minted is reserved, used or not"),
                    ),
                ));
            }
        }
        match (answer, expected) {
            (Answer::Ok(minted), None) => Ok(Some(minted)),
            (Answer::Ok(minted), Some(Ok(model_id))) if minted == model_id => Ok(Some(minted)),
            (Answer::Refused(RefusalClass::Busy, _), None | Some(Err(model::WriteRefusal::Busy))) => {
                count(&mut self.events, Event::Busy, 1);
                Ok(None)
            }
            (answer, expected) => {
                let shown = match &answer {
                    Answer::Ok(id) => format!("minted {id}"),
                    other => show_failure(other),
                };
                let v = match expected {
                    Some(expected) => Violation::new(
                        Invariant::OutcomeAgreement,
                        format!("r{r} mint_id: model says {expected:?}, engine says {shown}"),
                    ),
                    None => engine_violation(&format!("r{r} mint_id"), &answer),
                };
                Err((shown, v))
            }
        }
    }

    fn count_write_answer(&mut self, answer: &Answer<Vec<i64>>, ops: usize) {
        match answer {
            Answer::Ok(_) if ops > 1 => count(&mut self.events, Event::MultiWriteTransaction, 1),
            Answer::Refused(RefusalClass::IdTaken | RefusalClass::IdDeleted | RefusalClass::IdOutsideReplica, _) => {
                count(&mut self.events, Event::IdCollisionRefused, 1)
            }
            Answer::Refused(RefusalClass::Busy, _) | Answer::Failed(SyncFailureClass::Busy, _) => {
                count(&mut self.events, Event::Busy, 1)
            }
            _ => {}
        }
    }

    /// Records a committed write, then observes and checks the replica.
    fn after_write(&mut self, r: usize, ops: &[PlannedOp], answer: &Answer<Vec<i64>>, outside: bool) -> Verdict {
        let Answer::Ok(ids) = answer else {
            return self.observe_replica(r, false);
        };
        let inserts = ops
            .iter()
            .filter(|op| matches!(op.kind, PlannedKind::Insert { .. }))
            .count();
        if ids.len() != inserts {
            return Err(Violation::new(
                Invariant::ProtocolViolated,
                format!("r{r} answered {} ids to a write of {inserts} inserts", ids.len()),
            ));
        }
        let before = self.caches[r].clone();
        let mut minted: Vec<Option<i64>> = Vec::new();
        let mut next_id = ids.iter();
        let mut expect = Vec::new();
        let mut records = Vec::new();
        for op in ops {
            let t = op.table;
            let key_col = self.schema.tables[t].natural_key;
            let set: Vec<(usize, model::Value)> = op
                .values
                .iter()
                .map(|(c, cell)| {
                    let v = match cell {
                        Cell::Value(v) => v.clone(),
                        Cell::Ref(k) => minted
                            .get(*k)
                            .copied()
                            .flatten()
                            .map_or(model::Value::Null, model::Value::Int),
                    };
                    (*c, v)
                })
                .collect();
            let (id, kind) = match op.kind {
                PlannedKind::Insert { .. } => (*next_id.next().unwrap_or(&0), WriteKind::Insert),
                PlannedKind::Update { id } => (id, WriteKind::Update),
                PlannedKind::Delete { id } => (id, WriteKind::Delete),
            };
            minted.push((kind == WriteKind::Insert).then_some(id));
            let key = key_col.and_then(|k| match kind {
                WriteKind::Insert => set.iter().find(|(c, _)| *c == k).map(|(_, v)| v.clone()),
                _ => before[t].get(&id).map(|row| row[k].clone()),
            });
            let cascade = if kind == WriteKind::Delete {
                descendants(&self.schema, &before, t, id)
            } else {
                Vec::new()
            };
            match kind {
                WriteKind::Delete => {
                    expect.push(Expect::Gone { table: t, id });
                    expect.extend(cascade.iter().map(|&(table, id)| Expect::Gone { table, id }));
                }
                _ => expect.push(Expect::Row {
                    table: t,
                    id,
                    values: set.clone(),
                }),
            }
            records.push(WriteRecord {
                n: 0,
                replica: r,
                step: self.step_no,
                seq: 0,
                table: t,
                id,
                kind,
                set,
                key,
                cascade,
                knew: Vec::new(),
                outside,
                image: None,
            });
        }
        let null_transitions = records
            .iter()
            .filter(|w| w.kind == WriteKind::Update)
            .filter(|w| {
                before[w.table].get(&w.id).is_some_and(|row| {
                    w.set
                        .iter()
                        .any(|(c, v)| (row[*c] == model::Value::Null) != (*v == model::Value::Null))
                })
            })
            .count();
        count(&mut self.events, Event::NullTransition, null_transitions as u64);
        // An update to the values a row already holds changes nothing, and
        // nothing need be pushed for it.
        let changes = records.iter().any(|w| match w.kind {
            WriteKind::Update => before[w.table]
                .get(&w.id)
                .is_none_or(|row| w.set.iter().any(|(c, v)| row[*c] != *v)),
            _ => true,
        });
        let first = self.history.next_write_number();
        let what = if records.len() == 1 {
            format!("w{first}")
        } else {
            format!("w{first}..w{}", first + records.len() - 1)
        };
        self.observe_replica(r, false)?;
        for mut record in records {
            record.image = self.caches[r][record.table].get(&record.id).cloned();
            self.history.record(record);
        }
        contract::check_read_your_writes(&self.schema, &format!("r{r}"), &what, &expect, &self.caches[r])?;
        // A committed write is pending until a push applies it.
        if let Some(replica) = self.replicas[r].as_mut().filter(|_| changes) {
            match replica.pending() {
                Answer::Ok(0) => {
                    return Err(Violation::new(
                        Invariant::TruthfulStatus,
                        format!(
                            "r{r} committed {what}{} but reports 0 pending: it will never be pushed",
                            if outside { " (made outside its API)" } else { "" }
                        ),
                    ))
                }
                Answer::Ok(_) => {}
                other => return Err(engine_violation(&format!("r{r} pending"), &other)),
            }
        }
        Ok(())
    }

    // ----------------------------------------------------------------- locks

    fn lock_remote(&mut self, lock: LockKind, hold: usize) -> StepOutcome {
        if self.places.remote_locked() {
            return StepOutcome::new("remote lock (already locked)".to_string(), Ok(()));
        }
        match self.places.lock_remote(lock, hold) {
            Ok(()) => {
                if let Some(m) = &mut self.model {
                    m.lock_remote(Some(match lock {
                        LockKind::Shared => model::RemoteLock::Shared,
                        LockKind::Reserved => model::RemoteLock::Reserved,
                        LockKind::Exclusive => model::RemoteLock::Exclusive,
                    }));
                }
                StepOutcome::new(format!("remote {} lock for {hold} steps", lock_name(lock)), Ok(()))
            }
            Err(e) => StepOutcome::new(
                "remote lock -> error".to_string(),
                Err(Violation::new(Invariant::EngineFailed, e)),
            ),
        }
    }

    fn lock_cache(&mut self, r: usize, hold: usize) -> StepOutcome {
        if self.places.cache_locked(r) {
            return StepOutcome::new(format!("r{r} cache lock (already locked)"), Ok(()));
        }
        match self.places.lock_cache(r, hold) {
            Ok(()) => {
                if let Some(m) = &mut self.model {
                    m.lock_cache(r, true);
                }
                StepOutcome::new(format!("r{r} cache write lock for {hold} steps"), Ok(()))
            }
            Err(e) => StepOutcome::new(
                format!("r{r} cache lock -> error"),
                Err(Violation::new(Invariant::EngineFailed, e)),
            ),
        }
    }

    fn tick_locks(&mut self) {
        let (remote, caches) = self.places.tick_locks();
        if let Some(m) = &mut self.model {
            if remote {
                m.lock_remote(None);
            }
            for r in caches {
                m.lock_cache(r, false);
            }
        }
    }

    fn release_locks(&mut self) {
        self.places.release_locks();
        if let Some(m) = &mut self.model {
            m.lock_remote(None);
            for r in 0..m.replicas.len() {
                m.lock_cache(r, false);
            }
        }
    }

    // ---------------------------------------------------------- observation

    /// Reads replica `r`'s cache and checks it: integrity and resurrection
    /// (contract); rows, pending and, after syncs, the ledger (profile).
    fn observe_replica(&mut self, r: usize, with_ledger: bool) -> Verdict {
        let place = format!("r{r}");
        let tables = self
            .places
            .read_cache(r)
            .map_err(|e| Violation::new(Invariant::EngineFailed, format!("{place} read: {e}")))?;
        for (t, rows) in tables.iter().enumerate() {
            self.seen[r][t].extend(rows.keys().copied());
        }
        self.caches[r] = tables;
        self.check_reads(r)?;
        let tables = &self.caches[r];
        contract::check_integrity(&self.schema, &place, tables)?;
        let policies = self.engine.as_ref().map(|e| e.policies);
        if let Some(policies) = &policies {
            contract::check_not_resurrected(&self.schema, &place, &self.history, r, tables, policies)?;
        }
        let Some(m) = &self.model else { return Ok(()) };
        let state = &m.replicas[r];
        profile::compare_tables(&self.schema, &place, &state.tables, tables, &state.tombstones)?;
        let expected_pending = state.outbox.len() as u64;
        let Some(replica) = self.replicas[r].as_mut() else {
            return Ok(());
        };
        match replica.pending() {
            Answer::Ok(p) if p == expected_pending => {}
            Answer::Ok(p) => {
                return Err(Violation::new(
                    Invariant::PendingAgreement,
                    format!("{place}: expected {expected_pending} pending, engine says {p}"),
                ))
            }
            other => return Err(engine_violation(&format!("{place} pending"), &other)),
        }
        if with_ledger && self.places.remote_readable() {
            let ledger = self
                .places
                .ledger(r)
                .map_err(|e| Violation::new(Invariant::EngineFailed, format!("{place} ledger: {e}")))?;
            profile::check_ledger(&place, &ledger)?;
        }
        Ok(())
    }

    /// For an engine that declares `reads`: what its read API returns for
    /// every table of replica `r` is what the harness just read from the
    /// cache (`ReadsTruthful`).
    fn check_reads(&mut self, r: usize) -> Verdict {
        if !self.caps().reads {
            return Ok(());
        }
        let Some(replica) = self.replicas[r].as_mut() else {
            return Ok(());
        };
        for (t, table) in self.schema.tables.iter().enumerate() {
            match replica.read(&table.name) {
                Answer::Ok(rows) => {
                    reads::check_reads_match_cache(&self.schema, &format!("r{r}"), t, &rows, &self.caches[r][t])?
                }
                other => return Err(engine_violation(&format!("r{r} read {}", table.name), &other)),
            }
        }
        Ok(())
    }

    /// Reads the remote (unless it is locked exclusively) and checks it.
    fn observe_remote(&mut self) -> Verdict {
        if !self.places.remote_readable() {
            return Ok(());
        }
        self.remote = self
            .places
            .read_remote()
            .map_err(|e| Violation::new(Invariant::EngineFailed, format!("remote read: {e}")))?;
        contract::check_integrity(&self.schema, "remote", &self.remote)?;
        let Some(m) = &self.model else { return Ok(()) };
        let dead: BTreeSet<(usize, i64)> = m
            .remote
            .rows
            .iter()
            .filter(|(_, (row, _))| !matches!(row, model::RemoteRow::Live { .. }))
            .map(|(key, _)| *key)
            .collect();
        profile::compare_tables(&self.schema, "remote", &m.remote_visible(), &self.remote, &dead)
    }

    // ------------------------------------------------------------ quiescence

    /// Releases every lock, restarts every crashed replica, then syncs all
    /// replicas round by round until a round changes nothing anyone can see
    /// and nothing is pending; then the final checks.
    fn quiesce(&mut self, trace: &mut Vec<String>, steps: usize) -> Result<(), (usize, Violation)> {
        self.release_locks();
        // Every clock is set right, and time moves past the furthest stamp
        // any skewed clock made, so no stamp is refused as drift (O4).
        let ahead = self.offsets_ahead_max;
        self.offsets.iter_mut().for_each(|o| *o = 0);
        self.time_ms += ahead;
        let mut line = steps;
        for r in 0..self.replicas.len() {
            if !self.up(r) {
                line += 1;
                self.time_ms += STEP_MS;
                self.step_no = line;
                let outcome = self.restart(r);
                trace.push(format!("{line:>3}. {} (quiescence)", outcome.line));
                outcome.verdict.map_err(|v| (line, v))?;
            }
        }
        let mut last = self.fingerprint().map_err(|v| (line, v))?;
        for round in 1..=QUIESCENCE_ROUNDS_MAX {
            for r in 0..self.replicas.len() {
                line += 1;
                self.time_ms += STEP_MS;
                self.step_no = line;
                let before = self.model.as_ref().map(|m| m.events.clone());
                let outcome = self.sync(r, SyncKind::Full, None, None);
                if let Some(before) = before {
                    self.count_model_events(&before);
                }
                trace.push(format!("{line:>3}. {} (quiescence round {round})", outcome.line));
                outcome.verdict.map_err(|v| (line, v))?;
            }
            let now = self.fingerprint().map_err(|v| (line, v))?;
            let settled = now == last && now.1.iter().all(|p| *p == 0);
            last = now;
            if settled {
                return self.check_final().map_err(|v| (line + 1, v));
            }
        }
        let (_, pending) = last;
        Err((
            line + 1,
            Violation::new(
                Invariant::Liveness,
                format!(
                    "after {QUIESCENCE_ROUNDS_MAX} rounds of syncing every replica the state still changes or writes stay pending; pending per replica {pending:?}"
                ),
            ),
        ))
    }

    /// What everyone sees, and what each replica says is pending.
    fn fingerprint(&mut self) -> Result<(Vec<model::Tables>, Vec<u64>), Violation> {
        let mut pending = Vec::new();
        for r in 0..self.replicas.len() {
            let p = match self.replicas[r].as_mut().map(|x| x.pending()) {
                Some(Answer::Ok(p)) => p,
                Some(other) => return Err(engine_violation(&format!("r{r} pending"), &other)),
                None => u64::MAX,
            };
            pending.push(p);
        }
        let mut seen = self.caches.clone();
        seen.push(self.remote.clone());
        Ok((seen, pending))
    }

    fn check_final(&mut self) -> Verdict {
        self.observe_remote()?;
        contract::check_converged(&self.schema, &self.caches, &self.remote)?;
        let policies = match &self.engine {
            Some(e) => e.policies,
            None => return Ok(()),
        };
        contract::check_final(&self.schema, &self.history, &policies, &self.remote)
    }

    // ------------------------------------------------------------- reporting

    fn log_tails(&self) -> String {
        let mut out = String::new();
        for (r, replica) in self.replicas.iter().enumerate() {
            if let Some(replica) = replica {
                let tail = replica.log_tail();
                if !tail.is_empty() {
                    out.push_str(&format!("\n  r{r} engine stderr (last lines):\n{tail}"));
                }
            }
        }
        out
    }

    /// Every place's final rows as a table (read from the files).
    fn final_state(&mut self) -> String {
        let remote = self.places.read_remote().ok();
        let caches: Vec<Option<model::Tables>> = (0..self.replicas.len())
            .map(|r| self.places.read_cache(r).ok())
            .collect();
        report::final_state(&self.schema, remote.as_ref(), &caches)
    }
}

/// Fresh starting files per (engine, replica count), made once per process.
static TEMPLATES: std::sync::Mutex<std::collections::BTreeMap<(String, usize), tempfile::TempDir>> =
    std::sync::Mutex::new(std::collections::BTreeMap::new());

/// Copies the fresh starting files of `n` replicas into `dir`, making them
/// first if needed.
fn copy_template(subject: &dyn Subject, n: usize, dir: &Path) -> Result<bool, String> {
    let mut templates = TEMPLATES
        .lock()
        .map_err(|_| "a template builder panicked".to_string())?;
    let key = (subject.name(), n);
    if !templates.contains_key(&key) {
        let template = tempfile::Builder::new()
            .prefix("syncgate-template-")
            .tempdir_in(dir.parent().unwrap_or(dir))
            .map_err(|e| e.to_string())?;
        for r in 0..n {
            let spec = OpenSpec {
                replica: r,
                replicas: n,
                cache: template.path().join(format!("replica{r}.db")),
                remote: RemoteLocation::Sqlite {
                    path: template.path().join("remote.db").display().to_string(),
                },
                create_remote: r == 0,
                fresh: true,
                clock_ms: T0_MS,
                limits: Default::default(),
            };
            drop(subject.open_replica(&spec)?);
        }
        templates.insert(key.clone(), template);
    }
    let template = &templates[&key];
    for entry in std::fs::read_dir(template.path()).map_err(|e| e.to_string())? {
        let entry = entry.map_err(|e| e.to_string())?;
        std::fs::copy(entry.path(), dir.join(entry.file_name())).map_err(|e| e.to_string())?;
    }
    Ok(true)
}

/// How a trace line tells the ids an outside insert minted and gave up.
fn given_up(ids: &[i64]) -> String {
    if ids.is_empty() {
        String::new()
    } else {
        format!("minted {ids:?} and gave them up, then ")
    }
}

/// A step on a down replica: under the profile the model must say so too.
fn down_agrees(model_says_down: Option<bool>) -> Verdict {
    match model_says_down {
        Some(false) => Err(Violation::new(
            Invariant::OutcomeAgreement,
            "the replica is down, but the model says it is up",
        )),
        _ => Ok(()),
    }
}

/// An answer outside the vocabulary, as the contract names it.
fn engine_violation<T: std::fmt::Debug>(what: &str, answer: &Answer<T>) -> Violation {
    match answer {
        Answer::Broken(why) => Violation::new(Invariant::ProtocolViolated, format!("{what}: {why}")),
        Answer::Crashed => Violation::new(
            Invariant::ProtocolViolated,
            format!("{what}: the engine stopped without a crash point armed"),
        ),
        other => Violation::new(Invariant::EngineFailed, format!("{what}: {}", show_failure(other))),
    }
}

fn show_failure<T: std::fmt::Debug>(answer: &Answer<T>) -> String {
    match answer {
        Answer::Ok(t) => format!("ok {t:?}"),
        Answer::Refused(class, msg) => format!("refused {class:?}: {msg}"),
        Answer::Failed(class, msg) => format!("failed {class:?}: {msg}"),
        Answer::Crashed => "crashed".into(),
        Answer::Error(e) => format!("error {e}"),
        Answer::Broken(e) => format!("broke the protocol: {e}"),
    }
}

fn refusal_class(r: model::WriteRefusal) -> Option<RefusalClass> {
    Some(match r {
        model::WriteRefusal::Down => return None,
        model::WriteRefusal::Busy => RefusalClass::Busy,
        model::WriteRefusal::IdOutsideReplica => RefusalClass::IdOutsideReplica,
        model::WriteRefusal::IdTaken => RefusalClass::IdTaken,
        model::WriteRefusal::IdDeleted => RefusalClass::IdDeleted,
        model::WriteRefusal::NaturalKeyTaken => RefusalClass::NaturalKeyTaken,
        model::WriteRefusal::ParentMissing => RefusalClass::ParentMissing,
        model::WriteRefusal::RowNotFound => RefusalClass::RowNotFound,
        model::WriteRefusal::KeyImmutable => RefusalClass::KeyImmutable,
    })
}

/// Profile: the write's answer equals the model's.
fn write_agrees(
    r: usize,
    expected: &Result<Vec<i64>, model::WriteRefusal>,
    answer: &Answer<Vec<i64>>,
    shown: &str,
) -> Verdict {
    let agrees = match (expected, answer) {
        (Ok(e), Answer::Ok(a)) => e == a,
        (Err(e), Answer::Refused(class, _)) => refusal_class(*e) == Some(*class),
        _ => false,
    };
    if agrees {
        Ok(())
    } else {
        Err(Violation::new(
            Invariant::OutcomeAgreement,
            format!("r{r} write: model says {expected:?}, engine says {shown}"),
        ))
    }
}

pub fn kind_name(kind: SyncKind) -> &'static str {
    match kind {
        SyncKind::Push => "push",
        SyncKind::Pull => "pull",
        SyncKind::Full => "sync",
    }
}

pub fn crash_name(at: CrashAt) -> &'static str {
    match at {
        CrashAt::BeforeRemoteCommit => "before remote commit",
        CrashAt::AfterRemoteCommit => "after remote commit",
        CrashAt::BeforeLocalCommit => "mid-pull before local commit",
    }
}

pub fn reconnect_name(reconnect: Reconnect) -> &'static str {
    match reconnect {
        Reconnect::Accepted => "which reconnects",
        Reconnect::StartingUp => "refusing new ones while it starts up",
        Reconnect::RoleMissing => "refusing new ones: role missing",
        Reconnect::PasswordRefused => "refusing new ones: password refused",
        Reconnect::DatabaseMissing => "refusing new ones: database missing",
    }
}

pub fn lock_name(lock: LockKind) -> &'static str {
    match lock {
        LockKind::Shared => "read",
        LockKind::Reserved => "write",
        LockKind::Exclusive => "exclusive",
    }
}
