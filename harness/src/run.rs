//! Runs one scenario on a subject and on the model, step by step, checking
//! every invariant after every step and after quiescence.
//!
//! Architecture Invariant: a run is deterministic. One thread runs the
//! steps in order; time comes from the scenario (step number plus each
//! replica's offset); locks are held by connections the runner owns and
//! releases at named steps. Same scenario, same trace, byte for byte.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use syncgate_engine::rusqlite::Connection;
use syncgate_model as model;

use crate::check::{check_integrity, check_ledger, compare_tables, show_row, show_value, Invariant, Violation};
use crate::scenario::{CrashAt, IdChoice, LockKind, Scenario, Step, SyncKind, Val};
use crate::subject::{read_tables, Answer, FaultSwitch, SimClock, Subject, SubjectReplica};

/// Wall-clock start of every case, in ms since the epoch.
pub const T0_MS: i64 = 1_700_000_000_000;
/// True time advances this much per step.
pub const STEP_MS: i64 = 1_000;
/// Sync rounds quiescence may take before the queue counts as stuck.
pub const QUIESCENCE_ROUNDS_MAX: usize = 6;

/// Named events a run reached, counted so a generator that stops reaching
/// them is noticed.
pub type Events = BTreeMap<&'static str, u64>;

/// Events every `check` run must reach at least once.
pub const REQUIRED_EVENTS: [&str; 11] = [
    "conflict-won-locally",
    "conflict-won-remotely",
    "natural-key-merge",
    "id-collision-refused",
    "busy",
    "crash-after-remote-commit",
    "restart-with-pending",
    "cascade-delete",
    "duplicate-push-skipped",
    "delete-absorbed-write",
    "multi-write-transaction",
];

/// What one run produced.
#[derive(Clone, Debug)]
pub struct CaseResult {
    /// One line per step, then the quiescence rounds.
    pub trace: Vec<String>,
    /// The first violation and the step (1-based; beyond the steps means
    /// quiescence) where it happened.
    pub failure: Option<(usize, Violation)>,
    pub events: Events,
    /// A digest of every place's final rows, for the double-run check.
    pub final_state: String,
}

struct Lock {
    conn: Connection,
    steps_left: usize,
}

struct Runner<'a> {
    subject: &'a dyn Subject,
    schema: model::Schema,
    dir: PathBuf,
    world: model::World,
    replicas: Vec<Option<Box<dyn SubjectReplica>>>,
    clocks: Vec<Arc<SimClock>>,
    offsets: Vec<i64>,
    faults: Vec<FaultSwitch>,
    remote_lock: Option<(LockKind, Lock)>,
    cache_locks: Vec<Option<Lock>>,
    remote_reader: Connection,
    events: Events,
    time_ms: i64,
    /// The model's report of the last sync step, when it completed.
    last_report: Option<model::SyncReport>,
}

/// Runs `scenario` on `subject` in a fresh folder under `base`.
pub fn run_case(subject: &dyn Subject, scenario: &Scenario, base: &Path) -> CaseResult {
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
    let mut runner = match Runner::new(subject, scenario.replicas, dir.path()) {
        Ok(r) => r,
        Err(msg) => return setup_failure(trace, msg),
    };
    let mut failure = None;
    for (i, step) in scenario.steps.iter().enumerate() {
        runner.time_ms = T0_MS + (i as i64 + 1) * STEP_MS;
        let (line, outcome) = runner.step(step);
        trace.push(format!("{:>3}. {line}", i + 1));
        if let Err(v) = outcome {
            failure = Some((i + 1, v));
            break;
        }
        runner.release_expired_locks();
    }
    if failure.is_none() {
        let n = scenario.steps.len();
        if let Err(v) = runner.quiesce(&mut trace, n) {
            failure = Some((n + 1, v));
        }
    }
    if failure.is_some() {
        // Quiescence (which releases the runner's locks) did not run: the
        // digest must not wait on a lock the runner itself holds.
        runner.release_remote_lock();
        for r in 0..runner.cache_locks.len() {
            runner.release_cache_lock(r);
        }
    }
    let final_state = runner.digest();
    CaseResult {
        trace,
        failure,
        events: runner.events,
        final_state,
    }
}

fn setup_failure(trace: Vec<String>, msg: String) -> CaseResult {
    CaseResult {
        trace,
        failure: Some((0, Violation::new(Invariant::EngineFailed, msg))),
        events: Events::new(),
        final_state: String::new(),
    }
}

impl<'a> Runner<'a> {
    fn new(subject: &'a dyn Subject, n: usize, dir: &Path) -> Result<Runner<'a>, String> {
        let remote = dir.join("remote.db");
        let copied = subject.files_are_copyable() && copy_template(subject, n, dir)?;
        if !copied {
            subject.create_remote(&remote)?;
        }
        let schema = model::test_schema();
        let world = model::World::new(schema.clone(), model::Config::default(), n);
        let mut runner = Runner {
            subject,
            schema,
            dir: dir.to_path_buf(),
            world,
            replicas: Vec::new(),
            clocks: (0..n).map(|_| Arc::new(SimClock::default())).collect(),
            offsets: vec![0; n],
            faults: (0..n).map(|_| FaultSwitch::default()).collect(),
            remote_lock: None,
            cache_locks: (0..n).map(|_| None).collect(),
            remote_reader: Connection::open(&remote).map_err(|e| e.to_string())?,
            events: Events::new(),
            time_ms: T0_MS,
            last_report: None,
        };
        for r in 0..n {
            let replica = runner.open(r)?;
            runner.replicas.push(Some(replica));
        }
        Ok(runner)
    }

    fn open(&self, r: usize) -> Result<Box<dyn SubjectReplica>, String> {
        self.clocks[r].set(self.now(r));
        self.subject.open_replica(
            &self.dir.join(format!("replica{r}.db")),
            &self.dir.join("remote.db"),
            self.clocks[r].clone(),
            self.faults[r].clone(),
        )
    }

    fn now(&self, r: usize) -> i64 {
        self.time_ms + self.offsets[r]
    }

    fn count(&mut self, event: &'static str, n: u64) {
        if n > 0 {
            *self.events.entry(event).or_insert(0) += n;
        }
    }

    /// Runs one step; returns its trace line and the checks' verdict.
    fn step(&mut self, step: &Step) -> (String, Result<(), Violation>) {
        let before = self.world.events.clone();
        let (line, touched, remote_touched, outcome) = match step {
            Step::Insert { replica, .. }
            | Step::Update { replica, .. }
            | Step::Delete { replica, .. }
            | Step::InsertFamily { replica, .. } => {
                let r = *replica;
                match self.resolve_write(step) {
                    Err(why) => (format!("r{r} {why} (skipped)"), None, false, Ok(())),
                    Ok((desc, writes)) => {
                        let (answer, outcome) = self.write(r, writes);
                        (format!("r{r} {desc} -> {answer}"), Some(r), false, outcome)
                    }
                }
            }
            Step::Sync { replica, kind } => {
                let (answer, outcome) = self.sync(*replica, *kind, None);
                (
                    format!("r{replica} {} -> {answer}", kind_name(*kind)),
                    Some(*replica),
                    true,
                    outcome,
                )
            }
            Step::Crash { replica, kind, at } => {
                let (answer, outcome) = self.sync(*replica, *kind, Some(*at));
                (
                    format!(
                        "r{replica} {} crashing {} -> {answer}",
                        kind_name(*kind),
                        crash_name(*at)
                    ),
                    Some(*replica),
                    true,
                    outcome,
                )
            }
            Step::Restart { replica } => {
                let r = *replica;
                if self.world.replicas[r].up {
                    (format!("r{r} restart (already up)"), None, false, Ok(()))
                } else {
                    let pending = self.world.pending(r);
                    if pending > 0 {
                        self.count("restart-with-pending", 1);
                    }
                    self.world.restart(r);
                    match self.open(r) {
                        Ok(replica) => {
                            self.replicas[r] = Some(replica);
                            (format!("r{r} restart with {pending} pending"), Some(r), true, Ok(()))
                        }
                        Err(e) => (
                            format!("r{r} restart -> error"),
                            None,
                            false,
                            Err(Violation::new(Invariant::EngineFailed, format!("r{r} restart: {e}"))),
                        ),
                    }
                }
            }
            Step::LockRemote { lock, hold } => {
                if self.remote_lock.is_some() {
                    ("remote lock (already locked)".to_string(), None, false, Ok(()))
                } else {
                    match self.lock_remote(*lock, *hold) {
                        Ok(()) => (
                            format!("remote {} lock for {hold} steps", lock_name(*lock)),
                            None,
                            false,
                            Ok(()),
                        ),
                        Err(e) => (
                            "remote lock -> error".to_string(),
                            None,
                            false,
                            Err(Violation::new(Invariant::EngineFailed, e)),
                        ),
                    }
                }
            }
            Step::LockCache { replica, hold } => {
                let r = *replica;
                if self.cache_locks[r].is_some() {
                    (format!("r{r} cache lock (already locked)"), None, false, Ok(()))
                } else {
                    match self.lock_cache(r, *hold) {
                        Ok(()) => (format!("r{r} cache write lock for {hold} steps"), None, false, Ok(())),
                        Err(e) => (
                            format!("r{r} cache lock -> error"),
                            None,
                            false,
                            Err(Violation::new(Invariant::EngineFailed, e)),
                        ),
                    }
                }
            }
            Step::Clock { replica, offset_ms } => {
                self.offsets[*replica] = *offset_ms;
                self.count("clock-skew", u64::from(*offset_ms != 0));
                (format!("r{replica} clock offset {offset_ms:+} ms"), None, false, Ok(()))
            }
        };
        self.count_model_events(&before);
        let outcome = outcome.and_then(|()| self.check_places(touched, remote_touched));
        (line, outcome)
    }

    fn count_model_events(&mut self, before: &model::Events) {
        let now = self.world.events.clone();
        self.count(
            "conflict-won-locally",
            now.conflicts_won_locally - before.conflicts_won_locally,
        );
        self.count(
            "conflict-won-remotely",
            now.conflicts_won_remotely - before.conflicts_won_remotely,
        );
        self.count("natural-key-merge", now.natural_key_merges - before.natural_key_merges);
        self.count(
            "delete-absorbed-write",
            now.tombstone_absorbed - before.tombstone_absorbed,
        );
        self.count("cascade-delete", now.cascade_deletes - before.cascade_deletes);
        self.count(
            "duplicate-push-skipped",
            now.duplicate_pushes_skipped - before.duplicate_pushes_skipped,
        );
    }

    /// Turns a write step into the concrete model writes of one local
    /// transaction, resolving row positions against the model's view of the
    /// replica.
    fn resolve_write(&self, step: &Step) -> Result<(String, Vec<model::Write>), String> {
        let pick = |ids: Vec<i64>, n: usize, what: &str| -> Result<i64, String> {
            if ids.is_empty() {
                Err(format!("no {what}"))
            } else {
                Ok(ids[n % ids.len()])
            }
        };
        match step {
            Step::Insert {
                replica,
                table,
                id,
                values,
            } => {
                let (r, t) = (*replica, *table);
                let name = &self.schema.tables[t].name;
                let replica_state = &self.world.replicas[r];
                let id = match id {
                    IdChoice::Mint => None,
                    IdChoice::Foreign(n) => {
                        let mut ids = BTreeSet::new();
                        for (other, state) in self.world.replicas.iter().enumerate() {
                            if other != r {
                                ids.extend(state.tables[t].keys().copied());
                            }
                        }
                        ids.extend(self.world.remote_visible()[t].keys().copied());
                        Some(pick(
                            ids.into_iter().collect(),
                            *n,
                            &format!("{name} row elsewhere to collide with"),
                        )?)
                    }
                    IdChoice::Taken(n) => Some(pick(
                        replica_state.tables[t].keys().copied().collect(),
                        *n,
                        &format!("{name} row to collide with"),
                    )?),
                    IdChoice::Deleted(n) => Some(pick(
                        // Deleted rows, and rows merged away by natural key.
                        replica_state
                            .tombstones
                            .iter()
                            .copied()
                            .chain(replica_state.aliases.keys().copied())
                            .filter(|(tt, _)| *tt == t)
                            .map(|(_, id)| id)
                            .collect::<BTreeSet<i64>>()
                            .into_iter()
                            .collect(),
                        *n,
                        &format!("deleted {name} row to revive"),
                    )?),
                    IdChoice::MergedAway(n) => Some(pick(
                        replica_state
                            .aliases
                            .keys()
                            .filter(|(tt, _)| *tt == t)
                            .map(|(_, id)| *id)
                            .collect(),
                        *n,
                        &format!("{name} row merged away to reuse"),
                    )?),
                };
                let mut resolved = Vec::new();
                for (c, v) in values.iter().enumerate() {
                    resolved.push(match v {
                        Val::Parent(n) => {
                            let parent = self.schema.tables[t].columns[c].references.unwrap_or(0);
                            model::Value::Int(pick(
                                replica_state.tables[parent].keys().copied().collect(),
                                *n,
                                &format!("{} row to attach to", self.schema.tables[parent].name),
                            )?)
                        }
                        other => value_of(other),
                    });
                }
                let cols: Vec<String> = self.schema.tables[t]
                    .columns
                    .iter()
                    .zip(&resolved)
                    .map(|(c, v)| format!("{}={}", c.name, show_value(v)))
                    .collect();
                let id_text = id.map_or("new id".to_string(), |id| format!("id {id}"));
                Ok((
                    format!("insert {name} {id_text} {}", cols.join(" ")),
                    vec![model::Write::Insert {
                        table: t,
                        id,
                        values: resolved,
                    }],
                ))
            }
            Step::Update {
                replica,
                table,
                row,
                column,
                value,
            } => {
                let t = *table;
                let name = &self.schema.tables[t].name;
                let id = pick(
                    self.world.replicas[*replica].tables[t].keys().copied().collect(),
                    *row,
                    &format!("{name} row to update"),
                )?;
                let v = value_of(value);
                Ok((
                    format!(
                        "update {name}/{id} {}={}",
                        self.schema.tables[t].columns[*column].name,
                        show_value(&v)
                    ),
                    vec![model::Write::Update {
                        table: t,
                        id,
                        set: vec![(*column, v)],
                    }],
                ))
            }
            Step::Delete { replica, table, row } => {
                let t = *table;
                let name = &self.schema.tables[t].name;
                let id = pick(
                    self.world.replicas[*replica].tables[t].keys().copied().collect(),
                    *row,
                    &format!("{name} row to delete"),
                )?;
                Ok((
                    format!("delete {name}/{id}"),
                    vec![model::Write::Delete { table: t, id }],
                ))
            }
            Step::InsertFamily {
                replica,
                domain,
                records,
            } => {
                // The domain is inserted with a minted id; its records refer
                // to the id the replica mints next (the model says which).
                let (parent, child) = (0, 2);
                let domain_id = self.world.replicas[*replica].next_id;
                let show = |t: usize, values: &[model::Value]| -> String {
                    self.schema.tables[t]
                        .columns
                        .iter()
                        .zip(values)
                        .map(|(c, v)| format!("{}={}", c.name, show_value(v)))
                        .collect::<Vec<_>>()
                        .join(" ")
                };
                let domain_values: Vec<model::Value> = domain.iter().map(value_of).collect();
                let mut desc = format!(
                    "txn [insert {} new id {}",
                    self.schema.tables[parent].name,
                    show(parent, &domain_values)
                );
                let mut writes = vec![model::Write::Insert {
                    table: parent,
                    id: None,
                    values: domain_values,
                }];
                for record in records {
                    let mut own = record.iter();
                    let values: Vec<model::Value> = self.schema.tables[child]
                        .columns
                        .iter()
                        .map(|c| match c.references {
                            Some(p) if p == parent => model::Value::Int(domain_id),
                            _ => own.next().map_or(model::Value::Null, value_of),
                        })
                        .collect();
                    desc.push_str(&format!(
                        "; insert {} new id {}",
                        self.schema.tables[child].name,
                        show(child, &values)
                    ));
                    writes.push(model::Write::Insert {
                        table: child,
                        id: None,
                        values,
                    });
                }
                desc.push(']');
                Ok((desc, writes))
            }
            _ => Err("not a write".into()),
        }
    }

    fn write(&mut self, r: usize, writes: Vec<model::Write>) -> (String, Result<(), Violation>) {
        let now = self.now(r);
        let expected = self.world.write(r, now, &writes);
        if expected.is_ok() && writes.len() > 1 {
            self.count("multi-write-transaction", 1);
        }
        if let Err(refusal) = &expected {
            if matches!(
                refusal,
                model::WriteRefusal::IdOutsideReplica | model::WriteRefusal::IdTaken | model::WriteRefusal::IdDeleted
            ) {
                self.count("id-collision-refused", 1);
            }
            if *refusal == model::WriteRefusal::Busy {
                self.count("busy", 1);
            }
        }
        let Some(replica) = self.replicas[r].as_mut() else {
            let outcome = down_agrees(expected == Err(model::WriteRefusal::Down), &expected);
            return ("down".into(), outcome);
        };
        self.clocks[r].set(now);
        let actual = replica.write(&writes);
        let shown = match &actual {
            Answer::Ok(ids) => format!("ok {ids:?}"),
            Answer::Refused(why) => format!("refused {why:?}"),
            Answer::Failed(f) => format!("failed {f:?}"),
            Answer::Error(e) => format!("error {e}"),
        };
        let outcome = match (&expected, &actual) {
            (Ok(e), Answer::Ok(a)) if e == a => Ok(()),
            (Err(e), Answer::Refused(a)) if e == a => Ok(()),
            (Err(model::WriteRefusal::Busy), Answer::Failed(model::SyncFailure::Busy)) => Ok(()),
            _ => Err(Violation::new(
                Invariant::OutcomeAgreement,
                format!("r{r} write: model says {expected:?}, engine says {shown}"),
            )),
        };
        (shown, outcome)
    }

    fn sync(&mut self, r: usize, kind: SyncKind, crash: Option<CrashAt>) -> (String, Result<(), Violation>) {
        let now = self.now(r);
        let model_kind = match kind {
            SyncKind::Push => model::SyncKind::Push,
            SyncKind::Pull => model::SyncKind::Pull,
            SyncKind::Full => model::SyncKind::Full,
        };
        let model_crash = crash.map(|at| match at {
            CrashAt::BeforeRemoteCommit => model::CrashPoint::PushBeforeRemoteCommit,
            CrashAt::AfterRemoteCommit => model::CrashPoint::PushAfterRemoteCommit,
            CrashAt::BeforeLocalCommit => model::CrashPoint::PullBeforeLocalCommit,
        });
        let expected = self.world.sync(r, now, model_kind, model_crash);
        match &expected {
            Ok(report) => self.count_report(report),
            Err(model::SyncFailure::Busy) => self.count("busy", 1),
            Err(model::SyncFailure::Crashed) => self.count(
                match crash {
                    Some(CrashAt::BeforeRemoteCommit) => "crash-before-remote-commit",
                    Some(CrashAt::AfterRemoteCommit) => "crash-after-remote-commit",
                    _ => "crash-mid-pull",
                },
                1,
            ),
            Err(_) => {}
        }
        self.last_report = expected.ok();
        let Some(replica) = self.replicas[r].as_mut() else {
            let outcome = down_agrees(expected == Err(model::SyncFailure::Down), &expected);
            return ("down".into(), outcome);
        };
        self.clocks[r].set(now);
        if let Some(at) = crash {
            self.faults[r].arm(at);
        }
        let retries_before = replica.busy_retries();
        let actual = replica.sync(kind);
        let retries = replica.busy_retries() - retries_before;
        self.faults[r].disarm();
        self.count("busy-retry", retries);
        let shown = match &actual {
            Answer::Ok(rep) => format!(
                "pushed {} pulled {} conflicts {}",
                rep.pushed, rep.pulled, rep.conflicts
            ),
            Answer::Refused(why) => format!("refused {why:?}"),
            Answer::Failed(f) => format!("failed {f:?}"),
            Answer::Error(e) => format!("error {e}"),
        };
        if matches!(actual, Answer::Failed(model::SyncFailure::Crashed)) {
            // The process is gone: drop every handle without another call.
            self.replicas[r] = None;
        }
        let outcome = match (&expected, &actual) {
            (Ok(e), Answer::Ok(a)) if e == a => Ok(()),
            (Err(e), Answer::Failed(a)) if e == a => Ok(()),
            _ => Err(Violation::new(
                Invariant::OutcomeAgreement,
                format!("r{r} {}: model says {expected:?}, engine says {shown}", kind_name(kind)),
            )),
        };
        if outcome.is_err() && !self.world.replicas[r].up {
            self.replicas[r] = None;
        }
        (shown, outcome)
    }

    fn count_report(&mut self, report: &model::SyncReport) {
        self.count("pushed", report.pushed);
        self.count("pulled", report.pulled);
        self.count("conflict", report.conflicts);
    }

    fn lock_remote(&mut self, lock: LockKind, hold: usize) -> Result<(), String> {
        let conn = Connection::open(self.dir.join("remote.db")).map_err(|e| e.to_string())?;
        let sql = match lock {
            LockKind::Shared => "BEGIN DEFERRED; SELECT count(*) FROM _sg_rows;",
            LockKind::Reserved => "BEGIN IMMEDIATE",
            LockKind::Exclusive => "BEGIN EXCLUSIVE",
        };
        conn.execute_batch(sql)
            .map_err(|e| format!("taking the remote {} lock: {e}", lock_name(lock)))?;
        if lock == LockKind::Shared {
            // execute_batch steps a SELECT but does not keep it open; a read
            // transaction keeps its SHARED lock only while a statement reads.
            conn.query_row("SELECT count(*) FROM _sg_rows", [], |r| r.get::<_, i64>(0))
                .map_err(|e| e.to_string())?;
        }
        self.world.lock_remote(Some(match lock {
            LockKind::Shared => model::RemoteLock::Shared,
            LockKind::Reserved => model::RemoteLock::Reserved,
            LockKind::Exclusive => model::RemoteLock::Exclusive,
        }));
        self.remote_lock = Some((lock, Lock { conn, steps_left: hold }));
        Ok(())
    }

    fn lock_cache(&mut self, r: usize, hold: usize) -> Result<(), String> {
        let conn = Connection::open(self.dir.join(format!("replica{r}.db"))).map_err(|e| e.to_string())?;
        conn.execute_batch("BEGIN IMMEDIATE")
            .map_err(|e| format!("taking r{r}'s cache lock: {e}"))?;
        self.world.lock_cache(r, true);
        self.cache_locks[r] = Some(Lock { conn, steps_left: hold });
        Ok(())
    }

    /// Counts down every held lock and releases those whose time is up.
    fn release_expired_locks(&mut self) {
        if let Some((_, lock)) = &mut self.remote_lock {
            lock.steps_left = lock.steps_left.saturating_sub(1);
            if lock.steps_left == 0 {
                self.release_remote_lock();
            }
        }
        for r in 0..self.cache_locks.len() {
            if let Some(lock) = &mut self.cache_locks[r] {
                lock.steps_left = lock.steps_left.saturating_sub(1);
                if lock.steps_left == 0 {
                    self.release_cache_lock(r);
                }
            }
        }
    }

    fn release_remote_lock(&mut self) {
        if let Some((_, lock)) = self.remote_lock.take() {
            // Dropping the connection rolls its transaction back.
            drop(lock.conn);
            self.world.lock_remote(None);
        }
    }

    fn release_cache_lock(&mut self, r: usize) {
        if let Some(lock) = self.cache_locks[r].take() {
            drop(lock.conn);
            self.world.lock_cache(r, false);
        }
    }

    /// Compares the places a step touched with the model.
    fn check_places(&mut self, touched: Option<usize>, remote_touched: bool) -> Result<(), Violation> {
        if let Some(r) = touched {
            // Only a sync touches the remote or acknowledges writes, so the
            // ledger is read after syncs (and restarts) only.
            self.check_replica(r, remote_touched)?;
        }
        if remote_touched {
            self.check_remote()?;
        }
        Ok(())
    }

    fn check_replica(&mut self, r: usize, with_ledger: bool) -> Result<(), Violation> {
        let readable = self.remote_readable();
        let Some(replica) = self.replicas[r].as_mut() else {
            return Ok(());
        };
        let place = format!("r{r}");
        let engine_failed =
            |what: &str, e: String| Violation::new(Invariant::EngineFailed, format!("{place} {what}: {e}"));
        let actual = replica.tables().map_err(|e| engine_failed("read", e))?;
        let state = &self.world.replicas[r];
        compare_tables(&self.schema, &place, &state.tables, &actual, &state.tombstones)?;
        check_integrity(&self.schema, &place, &actual)?;
        let pending = replica.pending().map_err(|e| engine_failed("pending", e))?;
        if pending != state.outbox.len() as u64 {
            return Err(Violation::new(
                Invariant::PendingAgreement,
                format!(
                    "{place}: expected {} pending, engine says {pending}",
                    state.outbox.len()
                ),
            ));
        }
        if with_ledger && readable {
            let ledger = replica.ledger().map_err(|e| engine_failed("ledger", e))?;
            check_ledger(&place, &ledger)?;
        }
        Ok(())
    }

    fn remote_readable(&self) -> bool {
        !matches!(self.remote_lock, Some((LockKind::Exclusive, _)))
    }

    fn check_remote(&self) -> Result<(), Violation> {
        if !self.remote_readable() {
            return Ok(());
        }
        let actual = read_tables(&self.remote_reader)
            .map_err(|e| Violation::new(Invariant::EngineFailed, format!("remote read: {e}")))?;
        let expected = self.world.remote_visible();
        let dead: BTreeSet<(usize, i64)> = self
            .world
            .remote
            .rows
            .iter()
            .filter(|(_, (row, _))| !matches!(row, model::RemoteRow::Live { .. }))
            .map(|(key, _)| *key)
            .collect();
        compare_tables(&self.schema, "remote", &expected, &actual, &dead)?;
        check_integrity(&self.schema, "remote", &actual)
    }

    /// Releases every lock, restarts every crashed replica, then syncs all
    /// replicas round by round until a round moves nothing.
    fn quiesce(&mut self, trace: &mut Vec<String>, steps: usize) -> Result<(), Violation> {
        self.release_remote_lock();
        for r in 0..self.cache_locks.len() {
            self.release_cache_lock(r);
        }
        let mut line = steps;
        for r in 0..self.replicas.len() {
            if !self.world.replicas[r].up {
                line += 1;
                self.time_ms += STEP_MS;
                let (text, outcome) = self.step(&Step::Restart { replica: r });
                trace.push(format!("{line:>3}. {text} (quiescence)"));
                outcome?;
            }
        }
        for round in 1..=QUIESCENCE_ROUNDS_MAX {
            let mut moved = false;
            for r in 0..self.replicas.len() {
                line += 1;
                self.time_ms += STEP_MS;
                let before = self.world.events.clone();
                let (text, outcome) = self.sync(r, SyncKind::Full, None);
                self.count_model_events(&before);
                trace.push(format!("{line:>3}. r{r} sync -> {text} (quiescence round {round})"));
                outcome?;
                self.check_places(Some(r), true)?;
                if self.last_report.is_some_and(|rep| rep.pushed + rep.pulled > 0) {
                    moved = true;
                }
            }
            if !moved {
                return self.check_converged();
            }
        }
        let pending: Vec<usize> = (0..self.replicas.len()).map(|r| self.world.pending(r)).collect();
        Err(Violation::new(
            Invariant::StuckQueue,
            format!("after {QUIESCENCE_ROUNDS_MAX} sync rounds the queues still move; pending per replica {pending:?}"),
        ))
    }

    fn check_converged(&self) -> Result<(), Violation> {
        let remote = read_tables(&self.remote_reader)
            .map_err(|e| Violation::new(Invariant::EngineFailed, format!("remote read: {e}")))?;
        for (r, replica) in self.replicas.iter().enumerate() {
            let Some(replica) = replica else { continue };
            let actual = replica
                .tables()
                .map_err(|e| Violation::new(Invariant::EngineFailed, format!("r{r} read: {e}")))?;
            for (t, table) in self.schema.tables.iter().enumerate() {
                if actual[t] != remote[t] {
                    let diff = actual[t]
                        .iter()
                        .find(|(id, v)| remote[t].get(id) != Some(v))
                        .map(|(id, v)| {
                            format!(
                                "{}/{id}: r{r} has {}, remote {:?}",
                                table.name,
                                show_row(v),
                                remote[t].get(id).map(|v| show_row(v))
                            )
                        })
                        .or_else(|| {
                            remote[t]
                                .iter()
                                .find(|(id, _)| !actual[t].contains_key(id))
                                .map(|(id, v)| {
                                    format!("{}/{id}: remote has {}, r{r} has nothing", table.name, show_row(v))
                                })
                        })
                        .unwrap_or_default();
                    return Err(Violation::new(Invariant::ReplicasDiverged, diff));
                }
            }
        }
        Ok(())
    }

    /// Every place's rows, as text, for comparing two runs.
    fn digest(&self) -> String {
        let mut out = String::new();
        if let Ok(remote) = read_tables(&self.remote_reader) {
            out.push_str(&format!("remote {remote:?}\n"));
        }
        for (r, replica) in self.replicas.iter().enumerate() {
            if let Some(Ok(tables)) = replica.as_ref().map(|x| x.tables()) {
                out.push_str(&format!("r{r} {tables:?}\n"));
            }
        }
        out
    }
}

/// Fresh starting files per (engine, replica count), made once per process.
static TEMPLATES: std::sync::Mutex<BTreeMap<(String, usize), tempfile::TempDir>> =
    std::sync::Mutex::new(BTreeMap::new());

/// Copies the fresh starting files of `n` replicas into `dir`, making them
/// first if needed. Returns false when no template could be made.
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
        subject.create_remote(&template.path().join("remote.db"))?;
        for r in 0..n {
            let replica = subject.open_replica(
                &template.path().join(format!("replica{r}.db")),
                &template.path().join("remote.db"),
                Arc::new(SimClock::default()),
                FaultSwitch::default(),
            )?;
            drop(replica);
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

/// Outcome agreement for a step on a replica that is down: the model must
/// say so too.
fn down_agrees(model_says_down: bool, expected: &impl std::fmt::Debug) -> Result<(), Violation> {
    if model_says_down {
        Ok(())
    } else {
        Err(Violation::new(
            Invariant::OutcomeAgreement,
            format!("the replica is down, but the model says {expected:?}"),
        ))
    }
}

fn value_of(v: &Val) -> model::Value {
    match v {
        Val::Null | Val::Parent(_) => model::Value::Null,
        Val::Int(i) => model::Value::Int(*i),
        Val::Text(s) => model::Value::Text(s.clone()),
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

pub fn lock_name(lock: LockKind) -> &'static str {
    match lock {
        LockKind::Shared => "read",
        LockKind::Reserved => "write",
        LockKind::Exclusive => "exclusive",
    }
}
