//! `syncgate check`: many cases in parallel, the first failure shrunk.
//!
//! Rayon runs cases in parallel, never the steps of one case.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use rayon::prelude::*;
use serde::Serialize;

use syncgate_protocol::{InitOk, Profile};

use crate::check::{answers, Invariant};
pub use crate::declared::{check_declared, fit, notes};
use crate::declared::{checked_properties, reachable};
pub use crate::declared_breaches::{BreachExample, DeclaredBreach};
use crate::error::HarnessError;
use crate::events::{Event, Events, REQUIRED_EVENTS};
use crate::places::{PlaceError, RemotePlace};
use crate::run::{run_case, CaseResult, T0_MS};
use crate::scenario::{GenConfig, Scenario};
use crate::seed::{case_seed, generate};
pub use crate::shard::{BadShard, Shard};
use crate::shrink::shrink;
use crate::subject::{OpenSpec, Subject};
use crate::trace_file::save_trace;
pub use crate::trace_file::{load_trace, TraceFile};

/// Fewest cases for which a missing required event fails the run.
pub const REQUIRED_EVENTS_MIN_CASES: u64 = 200;

#[derive(Clone, Debug)]
pub struct CheckOptions {
    pub cases: u64,
    pub seed: String,
    pub jobs: usize,
    pub gen: GenConfig,
    /// Mixed lengths: every `every`-th case uses the long shape instead.
    pub long: Option<LongCases>,
    /// Mixed schemas: case `i` draws a random schema of its own when
    /// `i % n == 0` (`--random-schemas-every n`; 0: never).
    pub random_schemas_every: u64,
    /// Run each case twice and fail when the runs differ.
    pub doublecheck: bool,
    /// Where case folders go (a tmpfs when the machine has one).
    pub base_dir: PathBuf,
    /// Where shrunk failures are saved as trace files.
    pub failures_dir: Option<PathBuf>,
    pub shrink_runs_max: usize,
    /// Stop at the first failing batch (for mutants).
    pub stop_at_first: bool,
    /// Shrink and report the first failure of every property that failed,
    /// not only the first failure.
    pub each_property: bool,
    /// Show progress on stderr.
    pub progress: bool,
    /// Which of the run's cases this process runs (`--shard k/n`).
    pub shard: Shard,
    /// Stop starting cases once this much time has passed (`--duration`):
    /// the summary says which cases ran, so the run replays without it.
    pub duration: Option<std::time::Duration>,
}

/// The long cases of a mixed-length run. Some bugs need many replicas and
/// steps to show (issue 12 showed about ten times as often in 4 replicas x
/// 120 steps as in 3 x 40), but long cases cost more: a run mixes them in.
#[derive(Clone, Debug)]
pub struct LongCases {
    /// Case `i` is long when `i % every == every - 1`.
    pub every: u64,
    pub gen: GenConfig,
}

impl CheckOptions {
    /// The shape of case `i` of this run.
    pub fn gen_for(&self, i: u64) -> GenConfig {
        let mut gen = match &self.long {
            Some(long) if long.every > 0 && i % long.every == long.every - 1 => long.gen.clone(),
            _ => self.gen.clone(),
        };
        if self.random_schemas_every > 0 && i.is_multiple_of(self.random_schemas_every) {
            gen.random_schemas = true;
        }
        gen
    }
}

/// One failing case, shrunk.
#[derive(Clone, Debug, Serialize)]
pub struct CaseFailure {
    pub seed: String,
    pub case: u64,
    /// The case's shape, for its replay command.
    pub replicas: usize,
    pub steps: usize,
    pub invariant: Invariant,
    pub step: usize,
    pub detail: String,
    pub original_steps: usize,
    pub shrunk_steps: usize,
    pub shrink_runs: usize,
    /// What the shrunk case drew besides its steps, as the text report
    /// prints it above the trace: its swarm weights, its engine limits and
    /// its clock's pace (a clock that stands still explains a wall-clock
    /// bug).
    pub configuration: String,
    pub trace: Vec<String>,
    pub scenario: Scenario,
    pub trace_file: Option<PathBuf>,
    /// The `--schema` file the case's tables came from (replay names it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub schema_file: Option<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Summary {
    pub engine: String,
    /// `sqlite` or `postgres`: where the cases' remotes lived.
    pub remote: String,
    /// What the engine declared in its handshake.
    #[serde(skip)]
    pub declared: Option<InitOk>,
    /// Which oracles checked the run, in words.
    pub oracles: String,
    /// What the run could not check about this engine, in words.
    pub notes: Vec<String>,
    /// The properties the run checked (`declared::checked_properties`).
    pub checked: Vec<Invariant>,
    pub seed: String,
    /// The cases this process ran.
    pub cases: u64,
    /// Which of the run's cases they are: `shard` (`k/n`: case `i` is the
    /// shard's when `i % n == k`) of the cases `i < cases_end`; rerun them
    /// with `--cases <cases_end> --shard <shard>` (a `--duration` run
    /// stops early and says where).
    pub shard: String,
    pub cases_end: u64,
    pub passed: u64,
    pub failures: Vec<CaseFailure>,
    /// Seeds of failing cases beyond the first (not shrunk).
    pub other_failing_seeds: Vec<String>,
    pub events: Events,
    /// What the engine's promises per constraint let through, counted, with
    /// an example each (PROTOCOL.md, "Promises per constraint").
    pub declared_breaches: Vec<DeclaredBreach>,
    /// The events a run of this engine must reach (`syncgate merge` judges
    /// them over all shards; one shard of several does not).
    pub required_events: Vec<Event>,
    /// Per required event, the cases whose schema could reach it (all of
    /// them on one schema; fewer when cases draw their own): an event is
    /// judged only over `REQUIRED_EVENTS_MIN_CASES` such cases.
    pub eligible_cases: Events,
    pub missing_events: Vec<Event>,
    pub elapsed_s: f64,
    pub cases_per_s: f64,
}

impl Summary {
    /// No case ran (`--cases 0`, a shard with no case): nothing was
    /// checked, which is no pass (exit 2, as test runners treat "no tests
    /// ran").
    pub fn nothing_checked(&self) -> Option<String> {
        (self.cases == 0).then(|| {
            format!(
                "nothing was checked: no case ran (shard {} of the run); a run that checked nothing is not a pass: \
                 give it cases (--cases N; a shard k/n runs the cases i < N with i % n == k, so N must exceed k)",
                self.shard
            )
        })
    }

    pub fn ok(&self) -> bool {
        self.failures.is_empty() && self.other_failing_seeds.is_empty() && self.missing_events.is_empty()
    }
}

/// A RAM-backed folder for case files when there is one.
pub fn default_base_dir() -> PathBuf {
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        shm.to_path_buf()
    } else {
        std::env::temp_dir()
    }
}

/// Runs one case by its seed; `doublecheck` runs it twice and compares.
pub fn run_seed(
    subject: &dyn Subject,
    seed: &str,
    gen: &GenConfig,
    base: &Path,
    doublecheck: bool,
) -> Result<(Scenario, CaseResult), HarnessError> {
    let scenario = generate(seed, gen)?;
    let mut result = run_case(subject, &scenario, base);
    if doublecheck && result.failure.is_none() && result.fault.is_none() {
        let again = run_case(subject, &scenario, base);
        if again.trace != result.trace || again.final_state != result.final_state {
            result.failure = Some((0, answers::runs_differ()));
        }
    }
    Ok((scenario, result))
}

#[allow(
    clippy::disallowed_methods,
    reason = "cases/s in the summary; never inside a checked run"
)]
fn now() -> std::time::Instant {
    std::time::Instant::now()
}

/// Starts replica 0 of a throwaway case once, before any case runs: an
/// engine that cannot start or refuses the handshake is a setup error (exit
/// 2), not a counterexample. Returns its handshake.
pub fn probe(subject: &dyn Subject, base: &Path, schema: &syncgate_model::Schema) -> Result<InitOk, HarnessError> {
    let target = subject.remote();
    target.probe()?;
    let dir = tempfile::Builder::new()
        .prefix("syncgate-probe-")
        .tempdir_in(base)
        .map_err(|e| PlaceError::Harness(format!("cannot make a temporary folder in {}: {e}", base.display())))?;
    // Dropped after the probe: a PostgreSQL probe's schema with it.
    let remote = RemotePlace::new(&target, dir.path(), schema);
    let spec = OpenSpec {
        replica: 0,
        replicas: 1,
        cache: dir.path().join("replica0.db"),
        remote: remote.location(),
        create_remote: true,
        fresh: true,
        clock_ms: T0_MS,
        limits: Default::default(),
        schema: crate::schema::protocol_schema(schema),
    };
    let (replica, init_ok) = subject.open_replica(&spec)?;
    drop(replica);
    Ok(init_ok)
}

pub fn check(subject: &dyn Subject, opts: &CheckOptions) -> Result<Summary, HarnessError> {
    let schema = crate::schema::of_case(opts.gen.schema.as_ref().map(|d| &d.tables))?;
    let declared = probe(subject, &opts.base_dir, &schema)?;
    check_declared(&declared, &schema)?;
    let profile = declared.capabilities.profile == Some(Profile::Reference);
    let opts = &CheckOptions {
        gen: fit(&opts.gen, &declared),
        long: opts.long.as_ref().map(|long| LongCases {
            every: long.every,
            gen: fit(&long.gen, &declared),
        }),
        ..opts.clone()
    };
    let started = now();
    let Ran {
        events,
        eligible_cases,
        failing,
        done,
        cases_end,
        breach_cases,
        breach_examples,
    } = run_cases(subject, opts)?;
    let elapsed = started.elapsed().as_secs_f64();
    let (failures, other_failing_seeds) = shrink_failures(subject, opts, failing);
    let run = crate::declared_breaches::RunOf {
        seed: &opts.seed,
        gen_for: &|i| opts.gen_for(i),
        base_dir: &opts.base_dir,
        shrink_runs_max: opts.shrink_runs_max,
    };
    let declared_breaches =
        crate::declared_breaches::declared_breaches(subject, &run, &declared, &events, &breach_cases, breach_examples);
    let holds = crate::declared::InsideHolds::of(subject, opts.gen.replicas);
    let required_events: Vec<Event> = REQUIRED_EVENTS
        .iter()
        .copied()
        .filter(|e| reachable(*e, &declared, profile, holds) && eligible_cases.contains_key(e))
        .collect();
    let whole_run = opts.shard.count == 1;
    let missing_events = if whole_run {
        missing_events(&required_events, &events, &eligible_cases, failures.is_empty())
    } else {
        Vec::new()
    };
    let oracles = if profile {
        "contract and reference profile (lockstep with the model)".to_string()
    } else {
        "contract (the engine declares no reference profile)".to_string()
    };
    Ok(Summary {
        engine: subject.name(),
        remote: subject.remote().kind().to_string(),
        notes: {
            let mut notes = notes(&declared);
            let ignored = subject.ignored_declarations();
            if !ignored.is_empty() {
                notes.push(format!(
                    "ignored declarations (unknown to this syncgate): {}",
                    ignored.join(", ")
                ));
            }
            notes
        },
        checked: checked_properties(&declared, profile),
        declared: Some(declared),
        oracles,
        seed: opts.seed.clone(),
        cases: done,
        shard: opts.shard.to_string(),
        cases_end,
        passed: done - failures.len() as u64 - other_failing_seeds.len() as u64,
        failures,
        other_failing_seeds,
        events,
        declared_breaches,
        required_events,
        eligible_cases,
        missing_events,
        elapsed_s: elapsed,
        cases_per_s: if elapsed > 0.0 { done as f64 / elapsed } else { 0.0 },
    })
}

/// The required events a run missed: each judged only over at least
/// `REQUIRED_EVENTS_MIN_CASES` cases whose schema could reach it
/// (`eligible`), on runs that failed nowhere else (a failing case ends
/// early, before its events).
pub fn missing_events(required: &[Event], events: &Events, eligible: &Events, no_failure: bool) -> Vec<Event> {
    if !no_failure {
        return Vec::new();
    }
    required
        .iter()
        .copied()
        .filter(|e| eligible.get(e).copied().unwrap_or(0) >= REQUIRED_EVENTS_MIN_CASES)
        .filter(|e| events.get(e).copied().unwrap_or(0) == 0)
        .collect()
}

/// What a run of many cases produced: the events they reached, the failing
/// cases (not yet shrunk), how many ran, and the end of the range they
/// cover (every case of the shard below it ran).
struct Ran {
    events: Events,
    /// Per required event, the cases whose schema could reach it.
    eligible_cases: Events,
    failing: Vec<(u64, Scenario, CaseResult)>,
    done: u64,
    cases_end: u64,
    /// Per declared-breach event: the cases that reached it, and the first
    /// of them that failed nothing.
    breach_cases: Events,
    breach_examples: std::collections::BTreeMap<Event, (u64, Scenario)>,
}

/// Runs the cases on rayon, in batches when the run stops at the first
/// failure. A case the harness itself failed stops the run with its error.
fn run_cases(subject: &dyn Subject, opts: &CheckOptions) -> Result<Ran, HarnessError> {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(opts.jobs.max(1))
        .build()
        .map_err(|e| HarnessError::Setup(format!("cannot start {} worker threads: {e}", opts.jobs.max(1))))?;
    let bar = progress_bar(opts);
    let shard = opts.shard;
    let mine = shard.cases_of(opts.cases);
    let batch = if opts.stop_at_first || opts.duration.is_some() {
        (opts.jobs.max(1) * 8) as u64
    } else {
        mine.max(1)
    };
    let mut ran = Ran {
        events: Events::new(),
        eligible_cases: Events::new(),
        failing: Vec::new(),
        done: 0,
        cases_end: 0,
        breach_cases: Events::new(),
        breach_examples: std::collections::BTreeMap::new(),
    };
    let started = now();
    let mut start = 0_u64;
    while start < mine {
        let end = (start + batch).min(mine);
        let results: Vec<Result<(u64, Scenario, CaseResult), HarnessError>> = pool.install(|| {
            (start..end)
                .into_par_iter()
                .map(|j| {
                    let i = shard.case(j);
                    let seed = case_seed(&opts.seed, i);
                    let out = run_seed(subject, &seed, &opts.gen_for(i), &opts.base_dir, opts.doublecheck)
                        .map(|(s, r)| (i, s, r));
                    if let Some(bar) = &bar {
                        bar.inc(1);
                    }
                    out
                })
                .collect()
        });
        for result in results {
            let (i, scenario, result) = result?;
            if let Some((step, fault)) = result.fault {
                return Err(harness_failed(subject, opts, i, &scenario, step, fault));
            }
            ran.done += 1;
            for (k, v) in &result.events {
                *ran.events.entry(*k).or_insert(0) += v;
            }
            for event in &result.schema_reaches {
                *ran.eligible_cases.entry(*event).or_insert(0) += 1;
            }
            for event in Event::DECLARED_BREACHES {
                if !result.events.contains_key(&event) {
                    continue;
                }
                *ran.breach_cases.entry(event).or_insert(0) += 1;
                let first = ran.breach_examples.get(&event).is_none_or(|(j, _)| i < *j);
                if first && result.failure.is_none() {
                    ran.breach_examples.insert(event, (i, scenario.clone()));
                }
            }
            if result.failure.is_some() {
                ran.failing.push((i, scenario, result));
            }
        }
        start = end;
        ran.cases_end = shard.case(end - 1) + 1;
        let out_of_time = opts.duration.is_some_and(|budget| started.elapsed() >= budget);
        // A line per batch, but one at the end of a run against the clock.
        if bar.is_none() && opts.progress && (opts.duration.is_none() || out_of_time || start == mine) {
            let of = if opts.duration.is_some() {
                String::new()
            } else {
                format!("/{mine}")
            };
            eprintln!("syncgate: {}{of} cases, {} failing", ran.done, ran.failing.len());
        }
        if out_of_time || (opts.stop_at_first && !ran.failing.is_empty()) {
            break;
        }
    }
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    Ok(ran)
}

/// The harness failed, not the engine, at `step` of case `i`: no verdict,
/// no shrinking, and the command that runs the case again.
fn harness_failed(
    subject: &dyn Subject,
    opts: &CheckOptions,
    i: u64,
    scenario: &Scenario,
    step: usize,
    fault: crate::error::HarnessFault,
) -> HarnessError {
    let seed = case_seed(&opts.seed, i);
    let gen = opts.gen_for(i);
    let replay = crate::show::replay_command(
        &subject.name(),
        subject.remote().kind(),
        &seed,
        gen.replicas.unwrap_or(scenario.replicas),
        gen.steps,
        gen.schema_arg().as_deref(),
    );
    HarnessError::Case {
        seed,
        step,
        fault,
        replay,
    }
}

/// Shrinks the first failure (with `each_property`, the first of every
/// property that failed); the other failing cases are reported by seed.
fn shrink_failures(
    subject: &dyn Subject,
    opts: &CheckOptions,
    failing: Vec<(u64, Scenario, CaseResult)>,
) -> (Vec<CaseFailure>, Vec<String>) {
    let mut failures = Vec::new();
    let mut other_failing_seeds = Vec::new();
    let mut shrunk_invariants = std::collections::BTreeSet::new();
    for (i, scenario, result) in failing {
        let seed = case_seed(&opts.seed, i);
        let Some((_, violation)) = &result.failure else {
            continue;
        };
        // The first failure is shrunk; with `each_property`, the first of
        // every property that failed is.
        let first_of_its_kind = shrunk_invariants.insert(violation.invariant);
        let shrink_it = first_of_its_kind && (opts.each_property || shrunk_invariants.len() == 1);
        if !shrink_it {
            other_failing_seeds.push(seed);
            continue;
        }
        let shrunk = shrink(
            subject,
            &scenario,
            crate::shrink::Target::Fails(violation.invariant),
            &opts.base_dir,
            opts.shrink_runs_max,
        );
        let (step, v) = shrunk.result.failure.clone().unwrap_or((0, violation.clone()));
        let gen = opts.gen_for(i);
        let mut failure = CaseFailure {
            seed: seed.clone(),
            case: i,
            replicas: gen.replicas.unwrap_or(scenario.replicas),
            steps: gen.steps,
            schema_file: gen.schema_arg(),
            invariant: v.invariant,
            step,
            detail: v.detail,
            original_steps: scenario.steps.len(),
            shrunk_steps: shrunk.scenario.steps.len(),
            shrink_runs: shrunk.runs,
            configuration: format!(
                "replicas {}; swarm {}; {}",
                shrunk.scenario.replicas,
                shrunk.scenario.swarm,
                shrunk.scenario.config_line()
            ),
            trace: shrunk.result.trace.clone(),
            scenario: shrunk.scenario.clone(),
            trace_file: None,
        };
        if let Some(dir) = &opts.failures_dir {
            failure.trace_file = save_trace(dir, subject, &failure.seed, failure.invariant, &failure.scenario).ok();
        }
        failures.push(failure);
    }
    (failures, other_failing_seeds)
}

fn progress_bar(opts: &CheckOptions) -> Option<indicatif::ProgressBar> {
    if !opts.progress || !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = indicatif::ProgressBar::new(opts.shard.cases_of(opts.cases));
    if let Ok(style) = indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} cases {per_sec} eta {eta}") {
        bar.set_style(style);
    }
    Some(bar)
}
