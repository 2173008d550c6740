//! Runs one scenario on a subject, step by step: translate the step against
//! what the harness last read, perform it through the seam, observe the
//! places it touched by reading the files (`observe.rs`), and hand what it
//! saw to `crate::check` for the verdict. After the steps, quiescence, then
//! the final checks.
//!
//! One file per kind of step: `write.rs` (application and outside writes),
//! `sync.rs` (and `interleave.rs`, a sync inside a sync), `restart.rs` (and what befalls a replica while down),
//! `locks.rs` and `clock.rs`; `template.rs` makes a case's starting files
//! once per process.
//!
//! Architecture Invariant: a run is deterministic. One thread runs the
//! steps in order; time comes from the scenario (step number plus each
//! replica's offset); locks are held by connections the harness owns and
//! releases at named steps. A sync with another inside it (`interleave.rs`)
//! waits on a second thread only while the wire tap holds its engine at a
//! round trip the scenario names. Same scenario, same trace, byte for byte. The
//! runner reaches engines only through `crate::subject`, and files only
//! through `crate::places`; it judges nothing itself.

mod clock;
mod held;
mod interleave;
mod locks;
mod observe;
mod restart;
mod sync;
mod template;
mod translate;
mod write;

use std::collections::BTreeSet;
use std::path::Path;

use syncgate_model as model;
use syncgate_protocol::{InitOk, Profile};

use crate::check::identity::{IdMaps, Naming};
use crate::check::observed::Expectation;
use crate::check::{answers, contract, Stop, Verdict, Violation};
use crate::error::HarnessFault;
use crate::events::{self, Event, Events};
use crate::history::History;
use crate::places::Places;
use crate::scenario::{Scenario, Step, SyncKind};
use crate::show;
use crate::subject::{Answer, OpenSpec, Subject, SubjectReplica};
pub use translate::{descendants, Action, Cell, PlannedKind, PlannedOp};
use translate::{Skip, View};

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
    /// The harness's own failure and the step where it stopped the case:
    /// the case says nothing about the engine.
    pub fault: Option<(usize, HarnessFault)>,
    pub events: Events,
    /// The required events the case's schema lets a case reach
    /// (`declared::in_schema`): a run requires an event only of enough
    /// cases whose schema could reach it (a drawn schema may not).
    pub schema_reaches: Vec<Event>,
    /// Every place's final rows as a table, for reports and the double-run
    /// check.
    pub final_state: String,
    /// Whether the reference profile (lockstep with the model) was checked.
    pub profile_checked: bool,
    /// What the engine declared in its handshake, when it started at all.
    pub engine: Option<InitOk>,
}

impl CaseResult {
    fn stopped(trace: Vec<String>, at: usize, stop: Stop) -> CaseResult {
        let (failure, fault) = match stop {
            Stop::Violation(v) => (Some((at, v)), None),
            Stop::Fault(f) => (None, Some((at, f))),
        };
        CaseResult {
            trace,
            failure,
            fault,
            events: Events::new(),
            schema_reaches: Vec::new(),
            final_state: String::new(),
            profile_checked: false,
            engine: None,
        }
    }
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
        CaseResult::stopped(Vec::new(), 0, crate::check::panicked(message).into())
    })
}

fn run_case_unguarded(subject: &dyn Subject, scenario: &Scenario, base: &Path) -> CaseResult {
    let mut trace = Vec::new();
    let dir = match tempfile::Builder::new().prefix("syncgate-case-").tempdir_in(base) {
        Ok(dir) => dir,
        Err(e) => {
            let fault = HarnessFault::new(format!("make a case folder in {}", base.display()), e);
            return CaseResult::stopped(trace, 0, Stop::Fault(fault));
        }
    };
    let mut runner = match Runner::new(subject, scenario, dir.path()) {
        Ok(r) => r,
        Err(stop) => return CaseResult::stopped(trace, 0, stop),
    };
    let mut stopped = None;
    for (i, step) in scenario.steps.iter().enumerate() {
        runner.time_ms = T0_MS + (i as i64 + 1) * scenario.step_ms.unwrap_or(STEP_MS);
        runner.step_no = i + 1;
        let outcome = runner.step(step);
        trace.push(format!("{:>3}. {}", i + 1, outcome.line));
        if let Err(stop) = outcome.verdict {
            stopped = Some((i + 1, stop));
            break;
        }
        runner.tick_locks();
    }
    if stopped.is_none() {
        let n = scenario.steps.len();
        if let Err((at, stop)) = runner.quiesce(&mut trace, n) {
            stopped = Some((at, stop));
        }
    }
    runner.release_locks();
    let (mut failure, mut fault) = (None, None);
    match stopped {
        Some((at, Stop::Violation(mut v))) => {
            for line in &runner.context {
                v.detail.push_str(&format!("\n  before it: {line}"));
            }
            v.detail.push_str(&runner.log_tails());
            failure = Some((at, v));
        }
        Some((at, Stop::Fault(f))) => fault = Some((at, f)),
        None => {}
    }
    let final_state = runner.final_state();
    let schema_reaches = crate::events::REQUIRED_EVENTS
        .into_iter()
        .filter(|e| crate::declared::in_schema(*e, &runner.schema))
        .collect();
    CaseResult {
        trace,
        failure,
        fault,
        events: runner.events,
        schema_reaches,
        final_state,
        profile_checked: runner.model.is_some(),
        engine: runner.engine,
    }
}

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

    /// A step whose only check is `checked`.
    fn checked(line: String, checked: Result<(), Violation>) -> StepOutcome {
        StepOutcome::new(line, checked.map_err(Stop::from))
    }
}

/// A replica process the runner asked for: up, or refused by the engine
/// (its words).
enum Started {
    Up(Box<dyn SubjectReplica>),
    Refused(String),
}

struct Runner<'a> {
    subject: &'a dyn Subject,
    schema: model::Schema,
    /// The schema as the handshake sends it.
    declared: syncgate_protocol::Schema,
    places: Places,
    replicas: Vec<Option<Box<dyn SubjectReplica>>>,
    /// The handshake of the first replica; every later one must match it.
    engine: Option<InitOk>,
    /// The model, when the engine declared the reference profile.
    model: Option<model::World>,
    /// Each cache as last read, and the remote, by id (what steps are
    /// translated against).
    caches: Vec<model::Tables>,
    remote: model::Tables,
    /// For engines whose ids change or differ between places: each
    /// table's identity column, and each cache and the remote as last read
    /// by logical row, with each cache's ids' logical rows
    /// (`check/identity.rs`).
    naming: Option<Naming>,
    logical_caches: Vec<model::Tables>,
    logical_remote: model::Tables,
    id_maps: Vec<IdMaps>,
    /// Per replica: its process stopped at a crash point since its cache
    /// was last read (what it renumbered could not be reported).
    crashed_since_read: Vec<bool>,
    /// Per replica: the pending count it last reported.
    last_pending: Vec<Option<u64>>,
    /// What happened that a later failure may trace back to (a restart
    /// that lost pending writes), shown with any failure of the case.
    context: Vec<String>,
    /// Every id each replica ever held, per table.
    seen: Vec<Vec<BTreeSet<i64>>>,
    /// Per replica, every id its current process minted (`mint_id`), used
    /// or given up: a process never mints one twice.
    minted: Vec<BTreeSet<i64>>,
    /// Per table, every id the remote was ever seen to hold.
    remote_seen: Vec<BTreeSet<i64>>,
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
    /// Every breach of a constraint some place showed in this case (what
    /// the engine's promises let through), so each is counted once.
    breaches_seen: BTreeSet<contract::Breach>,
    /// The remote lock the harness holds ends inside the first sync that
    /// meets it busy (`held.rs`).
    remote_lock_ends_when_busy: bool,
    /// The last sync that passed its answer's checks: replica, kind, answer
    /// (what a sync inside another one answered, `interleave.rs`).
    last_sync: Option<(usize, SyncKind, Answer<crate::subject::SyncReport>)>,
    /// Whether the harness can hold a sync inside: a wire tap (PostgreSQL)
    /// or the in-process reference's seam (`held.rs`).
    holds_inside: bool,
}

impl<'a> Runner<'a> {
    fn new(subject: &'a dyn Subject, scenario: &Scenario, dir: &Path) -> Result<Runner<'a>, Stop> {
        let n = scenario.replicas;
        let schema = crate::schema::of_case(scenario.schema.as_ref())
            .map_err(|e| Stop::Fault(HarnessFault::new("read the case's schema", e)))?;
        let declared = crate::schema::protocol_schema(&schema);
        let empty: model::Tables = vec![model::Rows::new(); schema.tables.len()];
        let mut runner = Runner {
            subject,
            places: Places::new(&schema, dir, n, &subject.remote()),
            replicas: (0..n).map(|_| None).collect(),
            engine: None,
            model: None,
            caches: vec![empty.clone(); n],
            remote: empty.clone(),
            naming: None,
            logical_caches: vec![empty.clone(); n],
            logical_remote: empty,
            id_maps: vec![vec![std::collections::BTreeMap::new(); schema.tables.len()]; n],
            crashed_since_read: vec![false; n],
            last_pending: vec![None; n],
            context: Vec::new(),
            seen: vec![vec![BTreeSet::new(); schema.tables.len()]; n],
            minted: vec![BTreeSet::new(); n],
            remote_seen: vec![BTreeSet::new(); schema.tables.len()],
            history: History::new(n),
            offsets: vec![0; n],
            events: Events::new(),
            time_ms: T0_MS,
            step_no: 0,
            limits: scenario.limits,
            offsets_ahead_max: 0,
            push_was_busy: vec![false; n],
            breaches_seen: BTreeSet::new(),
            last_sync: None,
            remote_lock_ends_when_busy: false,
            holds_inside: false,
            schema,
            declared,
        };
        let copied = subject.files_are_copyable() && template::copy(subject, n, &runner.declared, dir)?;
        for r in 0..n {
            match runner.start(r, !copied && r == 0, !copied)? {
                Started::Up(replica) => runner.replicas[r] = Some(replica),
                Started::Refused(why) => return Err(answers::start_refused(&why).into()),
            }
        }
        runner.holds_inside = (0..n).all(|r| runner.can_hold(r));
        if runner.policies().ids != syncgate_protocol::IdPolicy::Stable {
            // The gate refused a schema without identity columns already.
            runner.naming = Naming::of(&runner.schema).ok();
        }
        if runner.profile() {
            runner.places.declare_reference_profile();
            runner.model = Some(model::World::new(
                runner.schema.clone(),
                model_config(&scenario.limits),
                n,
            ));
        }
        Ok(runner)
    }

    /// Whether replica `r`'s sync can be held inside (it is up, and a wire
    /// tap or its seam holds it).
    fn can_hold(&self, r: usize) -> bool {
        self.places.tapped(r) || self.replicas[r].as_ref().is_some_and(|x| x.pausable())
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

    fn policies(&self) -> &syncgate_protocol::Policies {
        match &self.engine {
            Some(e) => &e.policies,
            None => unreachable!("a runner exists only after a handshake"),
        }
    }

    /// What the checks hold this step's observations to.
    fn expectation(&self) -> Expectation<'_> {
        Expectation {
            schema: &self.schema,
            policies: self.policies(),
            history: &self.history,
            model: self.model.as_ref(),
        }
    }

    /// Starts replica `r`'s process; its handshake must declare what
    /// replica 0's did. The engine may refuse (its words); the harness's own
    /// trouble stops the case as a fault.
    fn start(&mut self, r: usize, create_remote: bool, fresh: bool) -> Result<Started, Stop> {
        let remote = self
            .places
            .engine_remote(r)
            .map_err(|e| crate::check::blame(&format!("r{r} wire tap"), &format!("start r{r}'s wire tap"), e))?;
        let spec = OpenSpec {
            replica: r,
            replicas: self.replicas.len(),
            cache: self.places.cache_path(r),
            remote,
            create_remote,
            fresh,
            clock_ms: self.now(r),
            limits: self.limits,
            schema: self.declared.clone(),
        };
        match self.subject.open_replica(&spec) {
            Ok((replica, init_ok)) => {
                match &self.engine {
                    None => self.engine = Some(init_ok),
                    Some(first) => answers::same_declaration(r, &init_ok, first)?,
                }
                Ok(Started::Up(replica))
            }
            Err(e) if e.is_harness() => Err(Stop::Fault(HarnessFault::new(format!("start r{r}'s engine"), e))),
            Err(e) => Ok(Started::Refused(e.to_string())),
        }
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
            explicit_ids: self.policies().explicit_ids,
            identity: self.naming.as_ref(),
        };
        let action = match view.translate(step) {
            Ok(action) => action,
            Err(Skip(why)) => {
                let who = step.replica().map(|r| format!("r{r} ")).unwrap_or_default();
                return StepOutcome::new(format!("{who}{why} (skipped)"), Ok(()));
            }
        };
        let before = self.model.as_ref().map(|m| m.events.clone());
        let out = match action {
            Action::Write {
                replica,
                ops,
                tag,
                abort: true,
                ..
            } => self.aborted_write(replica, &ops, tag),
            Action::Write {
                replica,
                ops,
                tag,
                outside: false,
                ..
            } => self.write(replica, &ops, tag),
            Action::Write {
                replica,
                ops,
                tag,
                outside: true,
                abandoned_ids,
                ..
            } => self.outside_write(replica, &ops, tag, abandoned_ids),
            Action::Sync {
                replica,
                kind,
                crash,
                sessions_cut,
                interleave,
            } => self.sync(replica, kind, crash, sessions_cut, interleave),
            Action::Restart { replica, while_down } => self.restart_step(replica, &while_down),
            Action::LockRemote {
                lock,
                hold,
                ends_when_busy,
            } => self.lock_remote(lock, hold, ends_when_busy),
            Action::LockCache { replica, hold } => self.lock_cache(replica, hold),
            Action::Clock { replica, offset_ms } => self.clock_step(replica, offset_ms),
        };
        self.count_model_events(before);
        out
    }

    /// Counts what the model saw happen since `before` (profile runs).
    fn count_model_events(&mut self, before: Option<model::Events>) {
        if let (Some(before), Some(m)) = (before, &self.model) {
            events::count_model(&mut self.events, &before, &m.events);
        }
    }

    // ------------------------------------------------------------ quiescence

    /// Releases every lock, restarts every crashed replica, then syncs all
    /// replicas round by round until a round changes nothing anyone can see
    /// and nothing is pending; then the final checks.
    fn quiesce(&mut self, trace: &mut Vec<String>, steps: usize) -> Result<(), (usize, Stop)> {
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
                outcome.verdict.map_err(|stop| (line, stop))?;
            }
        }
        let mut last = self.fingerprint().map_err(|v| (line, v.into()))?;
        for round in 1..=QUIESCENCE_ROUNDS_MAX {
            for r in 0..self.replicas.len() {
                line += 1;
                self.time_ms += STEP_MS;
                self.step_no = line;
                let before = self.model.as_ref().map(|m| m.events.clone());
                let outcome = self.sync(r, SyncKind::Full, None, None, None);
                self.count_model_events(before);
                trace.push(format!("{line:>3}. {} (quiescence round {round})", outcome.line));
                outcome.verdict.map_err(|stop| (line, stop))?;
            }
            let now = self.fingerprint().map_err(|v| (line, v.into()))?;
            let settled = now == last && now.1.iter().all(|p| *p == 0);
            last = now;
            if settled {
                return self.check_final().map_err(|stop| (line + 1, stop));
            }
        }
        let (_, pending) = last;
        contract::check_settled(false, QUIESCENCE_ROUNDS_MAX, &pending).map_err(|v| (line + 1, v.into()))
    }

    /// What everyone sees, and what each replica says is pending.
    fn fingerprint(&mut self) -> Result<(Vec<model::Tables>, Vec<u64>), Violation> {
        let mut pending = Vec::new();
        for r in 0..self.replicas.len() {
            let p = match self.replicas[r].as_mut().map(|x| x.pending()) {
                Some(answer) => answers::answered(&format!("r{r} pending"), &answer)?,
                None => u64::MAX,
            };
            pending.push(p);
        }
        let mut seen: Vec<model::Tables> = (0..self.replicas.len()).map(|r| self.view(r).clone()).collect();
        seen.push(self.remote_view().clone());
        Ok((seen, pending))
    }

    fn check_final(&mut self) -> Verdict {
        self.observe_remote()?;
        let caches: Vec<model::Tables> = (0..self.replicas.len()).map(|r| self.view(r).clone()).collect();
        contract::check_converged(&self.schema, &caches, self.remote_view(), self.naming.is_some())?;
        contract::check_final(&self.schema, &self.history, self.policies(), self.remote_view())?;
        Ok(())
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
        show::final_state(&self.schema, remote.as_ref(), &caches)
    }
}

/// The model's configuration for a case's drawn limits: the two that change
/// outcomes, how far a stamp may drift (O4) and where a push batch is cut
/// (S2, S5), and the busy retries and their backoff, which decide how a
/// busy step ends (L1).
fn model_config(limits: &syncgate_protocol::Limits) -> model::Config {
    let defaults = model::Config::default();
    model::Config {
        drift_ms_max: limits.drift_ms_max.unwrap_or(defaults.drift_ms_max),
        push_batch_max: limits.push_batch_max.map_or(defaults.push_batch_max, |v| {
            usize::try_from(v).unwrap_or(usize::MAX).max(1)
        }),
        busy_retries_max: limits.busy_retries_max.unwrap_or(defaults.busy_retries_max),
        backoff_base_ms: limits.backoff_base_ms.unwrap_or(defaults.backoff_base_ms),
        backoff_max_ms: limits.backoff_max_ms.unwrap_or(defaults.backoff_max_ms),
    }
}

/// The line an answer gets in the trace: `ok [ids]` for a write, else the
/// answer in one line.
fn shown_ids(answer: &Answer<Vec<i64>>) -> String {
    match answer {
        Answer::Ok(ids) => format!("ok {ids:?}"),
        other => show::show_answer(other),
    }
}
