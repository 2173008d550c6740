//! `syncgate`: the CI correctness gate for sync layers.
//!
//! Exit codes: 0 all cases pass, 1 a counterexample was found (or a
//! required event never happened), 2 a usage or setup error, or a failure
//! of the harness itself (never the engine's).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use syncgate::error::HarnessError;
use syncgate::gate::{check, default_base_dir, load_trace, run_seed, CheckOptions, LongCases, Shard};
use syncgate::places::RemoteTarget;
use syncgate::run::run_case;
use syncgate::scenario::GenConfig;
use syncgate::{subject_by_name, OracleChoice};

/// `syncgate --version`: the gate's version and the engine protocol
/// versions it speaks (`syncgate_protocol::VERSIONS`; a test holds them
/// equal).
/// The cases of a `--duration` run without `--cases`: more than any run
/// gets through, so the clock ends it.
const DURATION_CASES_MAX: u64 = 1 << 40;

const VERSION_TEXT: &str = concat!(env!("CARGO_PKG_VERSION"), " (engine protocol versions 1, 2)");

#[derive(Parser)]
#[command(
    name = "syncgate",
    version = VERSION_TEXT,
    about = "Finds sync-layer bugs by checking random interleavings against a model"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run N random cases; shrink and print the first failure.
    Check(CheckArgs),
    /// Run the reference engine and every mutant; each mutant must be caught.
    Mutants(MutantsArgs),
    /// Real threads: replicas write and sync concurrently against one remote
    /// file; then quiescence, convergence, no-loss and zero-UNIQUE checks.
    Stress(StressArgs),
    /// Rerun one case (by seed, or from a trace file) and print its trace.
    Replay(ReplayArgs),
    /// Combine the --json summaries of the shards of one run (--shard k/n)
    /// into one verdict and exit code.
    Merge(MergeArgs),
}

#[derive(Args)]
struct MergeArgs {
    /// The shards' `check --json` summaries, one file each.
    #[arg(required = true)]
    summaries: Vec<PathBuf>,
    /// Print one JSON summary instead of text.
    #[arg(long)]
    json: bool,
    /// Also print GitHub Actions annotations for the merged failures (not
    /// with --json: both go to stdout).
    #[arg(long, conflicts_with = "json")]
    github: bool,
}

#[derive(Args)]
struct CheckArgs {
    #[command(flatten)]
    scenario: ScenarioArgs,
    /// Number of cases (default 500; with --duration, as many as fit).
    #[arg(long)]
    cases: Option<u64>,
    /// Run only shard K of N of the cases (case i is shard i % N's): N
    /// runners with one seed run exactly the cases of one run; combine
    /// their --json summaries with `syncgate merge`.
    #[arg(long, value_name = "K/N", value_parser = Shard::parse)]
    shard: Option<Shard>,
    /// Stop starting cases after this long (e.g. 90s, 10m, 1h); the summary
    /// says which cases ran (replay them with --cases).
    #[arg(long, value_parser = humantime::parse_duration)]
    duration: Option<std::time::Duration>,
    /// Worker threads (default: one per core).
    #[arg(long)]
    jobs: Option<usize>,
    /// Run each case twice and fail if the runs differ.
    #[arg(long)]
    doublecheck: bool,
    /// Print one JSON summary instead of text.
    #[arg(long)]
    json: bool,
    /// Also write a JUnit XML report here: one test case per property
    /// checked, a failure carrying its shrunk trace and replay command.
    #[arg(long, value_name = "FILE")]
    junit: Option<PathBuf>,
    /// Also print GitHub Actions annotations for the failures after the
    /// text summary (and, where GITHUB_STEP_SUMMARY names a file, append the
    /// run's job summary). Both go to stdout, so not with --json.
    #[arg(long, conflicts_with = "json")]
    github: bool,
    /// Where to save shrunk counterexamples as trace files.
    #[arg(long, default_value = "syncgate-failures")]
    failures_dir: PathBuf,
    /// Shrink and report the first failure of every property that
    /// failed (what a sync layer gets wrong, not only its first bug).
    #[arg(long)]
    each_property: bool,
    /// Stop at the first failing case (the cases still running finish);
    /// for a yes/no answer, as cargo-mutants' test wants.
    #[arg(long)]
    fail_fast: bool,
    /// Bound on the runs shrinking one failure may take.
    #[arg(long, default_value_t = 3_000)]
    shrink_runs_max: usize,
    /// Mix lengths: every N-th case has --long-replicas x --long-steps
    /// (some bugs need long scenarios to show; 0 = off).
    #[arg(long, default_value_t = 0)]
    long_every: u64,
    /// Replicas of a long case.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u8).range(1..=4))]
    long_replicas: u8,
    /// Steps of a long case.
    #[arg(long, default_value_t = 120, value_parser = clap::value_parser!(u16).range(1..=2000))]
    long_steps: u16,
    /// Mix schemas: every N-th case draws a random schema of its own, as
    /// --schema random does (0 = off).
    #[arg(long, default_value_t = 0)]
    random_schemas_every: u64,
}

#[derive(Args)]
struct MutantsArgs {
    /// Case budget per mutant (and cases the reference must pass).
    #[arg(long, default_value_t = syncgate::mutants::CASES_TO_CATCH_MAX)]
    cases: u64,
    #[arg(long, default_value = "mutants")]
    seed: String,
    #[arg(long)]
    jobs: Option<usize>,
    #[arg(long)]
    json: bool,
    /// Print each mutant's shrunk counterexample too.
    #[arg(long)]
    traces: bool,
    /// Run every engine over the protocol through this adapter binary
    /// (syncgate-reference-adapter), as `exec:ADAPTER --mutant NAME`.
    #[arg(long)]
    exec_adapter: Option<String>,
    /// sqlite, postgres (SYNCGATE_PG_URL) or a postgresql:// URL.
    #[arg(long, default_value = "sqlite")]
    remote: String,
    /// Bound on the runs shrinking one mutant's counterexample may take.
    #[arg(long, default_value_t = 2_000)]
    shrink_runs_max: usize,
    /// Hunt with the profile only: skip the contract-alone column.
    #[arg(long)]
    profile_only: bool,
    /// The tables cases sync instead of the built-in schema (as for check).
    #[arg(long, value_name = "FILE")]
    schema: Option<PathBuf>,
}

#[derive(Args)]
struct StressArgs {
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u8).range(1..=64))]
    replicas: u8,
    #[arg(long, default_value_t = 1000)]
    writes: usize,
    #[arg(long, default_value_t = 5)]
    sync_every: usize,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    #[arg(long)]
    json: bool,
    /// sqlite, postgres (SYNCGATE_PG_URL) or a postgresql:// URL.
    #[arg(long, default_value = "sqlite")]
    remote: String,
    /// The tables the replicas write instead of the built-in schema (as for
    /// check: SQL DDL, a SQLite database or the protocol's schema JSON).
    #[arg(long)]
    schema: Option<PathBuf>,
}

#[derive(Args)]
struct ReplayArgs {
    #[command(flatten)]
    scenario: ScenarioArgs,
    /// A saved trace file (overrides --seed and the scenario options).
    #[arg(long)]
    trace: Option<PathBuf>,
    /// Also write the case as a timeline page (self-contained HTML:
    /// replicas as lanes, steps as rows, the failure highlighted).
    #[arg(long)]
    html: Option<PathBuf>,
}

#[derive(Args, Clone)]
struct ScenarioArgs {
    /// Run seed (any string: a number, a commit hash); case N of run S is `S/N`.
    #[arg(long, default_value = "syncgate")]
    seed: String,
    /// Replicas per case (1-4).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u8).range(1..=4))]
    replicas: u8,
    /// Steps per case.
    #[arg(long, default_value_t = 40, value_parser = clap::value_parser!(u16).range(1..=2000))]
    steps: u16,
    /// Engine under test: reference, mutant:NAME, reference+shifted-ids,
    /// reference+no-conflict-counts, or exec:COMMAND for any engine behind
    /// the protocol (PROTOCOL.md), e.g. 'exec:python3 my_adapter.py'.
    #[arg(long, default_value = "reference")]
    engine: String,
    /// Which oracles check the run: auto (the contract, plus the model in
    /// lockstep for engines that declare the reference profile) or contract.
    #[arg(long, value_enum, default_value = "auto")]
    oracle: OracleChoice,
    /// Bound on an exec: engine's answer to one request, in ms.
    #[arg(long)]
    request_timeout_ms: Option<u64>,
    /// Where each case's remote lives: sqlite (a file in the case folder),
    /// postgres (a schema of its own on the server SYNCGATE_PG_URL names) or
    /// a postgresql:// connection string. Replaying a trace file defaults to
    /// the remote it names.
    #[arg(long)]
    remote: Option<String>,
    /// Where each case's folder is made (default: /dev/shm, a RAM folder,
    /// when the machine has one, else the system's temporary folder).
    #[arg(long)]
    work_dir: Option<PathBuf>,
    /// The tables cases sync instead of the built-in schema: a file of SQL
    /// DDL (CREATE TABLE statements), an existing SQLite database, or the
    /// protocol's schema JSON; or `random`: each case draws a schema of its
    /// own from its seed. What this syncgate cannot check yet is refused
    /// with exit 2, naming the table and the clause.
    #[arg(long, value_name = "FILE")]
    schema: Option<PathBuf>,
}

impl ScenarioArgs {
    fn remote(&self) -> anyhow::Result<RemoteTarget> {
        Ok(RemoteTarget::from_arg(self.remote.as_deref().unwrap_or("sqlite"))?)
    }

    fn work_dir(&self) -> PathBuf {
        self.work_dir.clone().unwrap_or_else(default_base_dir)
    }

    fn gen(&self) -> anyhow::Result<GenConfig> {
        Ok(GenConfig {
            replicas: Some(usize::from(self.replicas)),
            steps: usize::from(self.steps),
            schema: self.declared_schema()?,
            random_schemas: self.random_schemas(),
            ..GenConfig::default()
        })
    }

    fn random_schemas(&self) -> bool {
        self.schema.as_deref() == Some(std::path::Path::new("random"))
    }

    fn declared_schema(&self) -> anyhow::Result<Option<syncgate::schema::DeclaredSchema>> {
        Ok(match &self.schema {
            None => None,
            Some(_) if self.random_schemas() => None,
            Some(path) => Some(syncgate::schema::read_declared(path).map_err(HarnessError::from)?),
        })
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("syncgate: error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Check(args) => check_command(args),
        Command::Mutants(args) => mutants_command(args),
        Command::Stress(args) => stress_command(args),
        Command::Replay(args) => replay_command(args),
        Command::Merge(args) => merge_command(args),
    }
}

/// Exit code 0 when `ok`, else 1 (a counterexample, a missed mutant).
fn verdict(ok: bool) -> ExitCode {
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

fn jobs_or_cores(jobs: Option<usize>) -> usize {
    jobs.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

fn check_command(args: CheckArgs) -> anyhow::Result<ExitCode> {
    let (summary, opts) = match run_check(&args) {
        Ok(ran) => ran,
        Err(e) => {
            // The CI reports say the run was not made, and whose failure
            // that is (the setup's or the harness's); exit 2 as always.
            let why = format!("{e:#}");
            if let Some(path) = &args.junit {
                write_report(
                    path,
                    &syncgate::report::junit::junit_not_run(&args.scenario.engine, &why),
                )?;
            }
            if args.github {
                print!("{}", syncgate::report::github::annotation_not_run(&why));
            }
            return Err(e);
        }
    };
    if let Some(why) = summary.nothing_checked() {
        if let Some(path) = &args.junit {
            write_report(
                path,
                &syncgate::report::junit::junit_not_run(&args.scenario.engine, &why),
            )?;
        }
        if args.json {
            println!("{}", serde_json::to_string_pretty(&summary)?);
        } else {
            print!("{}", syncgate::report::summary(&summary, &opts));
        }
        if args.github {
            print!("{}", syncgate::report::github::annotation_not_run(&why));
        }
        return Ok(ExitCode::from(2));
    }
    if let Some(path) = &args.junit {
        write_report(path, &syncgate::report::junit::junit(&summary))?;
    }
    // A timeline page beside each saved trace.
    for f in &summary.failures {
        if let Some(trace) = &f.trace_file {
            let page = syncgate::report::counterexample_timeline(&summary, f);
            write_report(&trace.with_extension("html"), &page)?;
        }
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        print!("{}", syncgate::report::summary(&summary, &opts));
    }
    if args.github {
        print!("{}", syncgate::report::github::annotations(&summary));
        if let Some(path) = std::env::var_os("GITHUB_STEP_SUMMARY").filter(|p| !p.is_empty()) {
            append_report(&PathBuf::from(path), &syncgate::report::github::step_summary(&summary))?;
        }
    }
    Ok(verdict(summary.ok()))
}

/// Starts the engine and runs the cases: a summary, or why the run could
/// not be made.
fn run_check(args: &CheckArgs) -> anyhow::Result<(syncgate::gate::Summary, CheckOptions)> {
    let scenario = &args.scenario;
    let remote = scenario.remote()?;
    let subject = subject_by_name(&scenario.engine, scenario.oracle, scenario.request_timeout_ms, &remote)?;
    let gen = scenario.gen()?;
    let long = (args.long_every > 0).then(|| LongCases {
        every: args.long_every,
        gen: GenConfig {
            replicas: Some(usize::from(args.long_replicas)),
            steps: usize::from(args.long_steps),
            schema: gen.schema.clone(),
            random_schemas: gen.random_schemas,
            ..GenConfig::default()
        },
    });
    let cases = match (args.cases, args.duration) {
        (Some(cases), _) => cases,
        (None, Some(_)) => DURATION_CASES_MAX,
        (None, None) => 500,
    };
    let opts = CheckOptions {
        cases,
        seed: scenario.seed.clone(),
        jobs: jobs_or_cores(args.jobs),
        gen,
        long,
        random_schemas_every: args.random_schemas_every,
        doublecheck: args.doublecheck,
        base_dir: scenario.work_dir(),
        failures_dir: Some(args.failures_dir.clone()),
        shrink_runs_max: args.shrink_runs_max,
        stop_at_first: args.fail_fast,
        each_property: args.each_property,
        progress: !args.json,
        shard: args.shard.unwrap_or_default(),
        duration: args.duration,
    };
    let summary = check(subject.as_ref(), &opts)?;
    Ok((summary, opts))
}

fn write_report(path: &std::path::Path, text: &str) -> anyhow::Result<()> {
    std::fs::write(path, text).with_context(|| format!("cannot write the report {}", path.display()))
}

fn append_report(path: &std::path::Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .with_context(|| format!("cannot append the job summary to {}", path.display()))
}

fn mutants_command(args: MutantsArgs) -> anyhow::Result<ExitCode> {
    let remote = RemoteTarget::from_arg(&args.remote)?;
    let hunt = syncgate::mutants::hunt_options(args.cases, &args.seed, jobs_or_cores(args.jobs));
    let random_schemas = args.schema.as_deref() == Some(std::path::Path::new("random"));
    let schema = match &args.schema {
        None => None,
        Some(_) if random_schemas => None,
        Some(path) => Some(syncgate::schema::read_declared(path).map_err(HarnessError::from)?),
    };
    let opts = CheckOptions {
        shrink_runs_max: args.shrink_runs_max,
        gen: GenConfig {
            schema,
            random_schemas,
            ..hunt.gen.clone()
        },
        ..hunt
    };
    let report = syncgate::mutants::run_mutants(&opts, args.exec_adapter.as_deref(), &remote, !args.profile_only)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(verdict(report.ok()));
    }
    print!("{}", syncgate::mutants::table(&report));
    if args.traces {
        print!("{}", syncgate::mutants::traces(&report));
    }
    println!(
        "{}",
        if report.ok() {
            "PASS: every mutant caught"
        } else {
            "FAIL"
        }
    );
    Ok(verdict(report.ok()))
}

fn stress_command(args: StressArgs) -> anyhow::Result<ExitCode> {
    let schema =
        match &args.schema {
            None => None,
            Some(path) if path.as_path() == std::path::Path::new("random") => return Err(HarnessError::Setup(
                "stress runs one schema for all its threads: --schema FILE, not random (check draws random schemas)"
                    .into(),
            )
            .into()),
            Some(path) => Some(
                syncgate::schema::read_declared(path)
                    .map_err(HarnessError::from)?
                    .tables,
            ),
        };
    let opts = syncgate::stress::StressOptions {
        schema,
        replicas: usize::from(args.replicas),
        writes_per_replica: args.writes,
        seed: args.seed,
        sync_every: args.sync_every,
        remote: RemoteTarget::from_arg(&args.remote)?,
    };
    let report = syncgate::stress::stress(&opts, &default_base_dir())?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!(
            "syncgate stress: {} replicas on {}, {} writes ({} refused), {} syncs, {} busy, quiet after {} rounds, {}",
            args.replicas,
            report.remote,
            report.writes,
            report.refused,
            report.syncs,
            report.busy,
            report.quiescence_rounds,
            if report.merge_checked_tables.is_empty() {
                "no plain table (each has a natural key or a reference): no row checked against the stamp-order merge"
                    .to_string()
            } else {
                format!(
                    "{} rows of {} checked against the stamp-order merge",
                    report.rows_checked,
                    report.merge_checked_tables.join(", ")
                )
            }
        );
        println!(
            "held {:.0} writes/s and {:.0} syncs/s over {} ms (this machine, all replicas together)",
            report.writes_per_s, report.syncs_per_s, report.elapsed_ms
        );
        for p in &report.problems {
            println!("  {p}");
        }
        println!("{}", if report.problems.is_empty() { "PASS" } else { "FAIL" });
    }
    Ok(verdict(report.problems.is_empty()))
}

fn replay_command(args: ReplayArgs) -> anyhow::Result<ExitCode> {
    let scenario = &args.scenario;
    let file = args.trace.as_ref().map(|path| load_trace(path)).transpose()?;
    let remote = match (&scenario.remote, &file) {
        (None, Some(file)) => file.remote.resolved()?,
        _ => scenario.remote()?,
    };
    let subject = subject_by_name(&scenario.engine, scenario.oracle, scenario.request_timeout_ms, &remote)?;
    let base = scenario.work_dir();
    let gen = scenario.gen()?;
    let tables = match (&file, &gen.schema) {
        (Some(file), Some(declared)) if file.scenario.schema.as_ref() != Some(&declared.tables) => {
            anyhow::bail!(
                "{} syncs other tables than --schema {} declares: a trace file carries its schema; leave --schema out",
                args.trace.as_ref().map_or(String::new(), |p| p.display().to_string()),
                declared.source
            )
        }
        (Some(file), _) => file.scenario.schema.clone(),
        (None, declared) => declared.as_ref().map(|d| d.tables.clone()),
    };
    let schema = syncgate::schema::of_case(tables.as_ref()).map_err(HarnessError::from)?;
    let declared = syncgate::gate::probe(subject.as_ref(), &base, &schema)?;
    syncgate::gate::check_declared(&declared, &schema)?;
    let (title, result) = match (&args.trace, &file) {
        (Some(path), Some(file)) => {
            let result = run_case(subject.as_ref(), &file.scenario, &base);
            (format!("trace {} (seed {})", path.display(), file.seed), result)
        }
        _ => {
            let gen = syncgate::gate::fit(&gen, &declared);
            let (_, result) = run_seed(subject.as_ref(), &scenario.seed, &gen, &base, false)?;
            (format!("seed {}", scenario.seed), result)
        }
    };
    println!(
        "replay of {title} on engine {} (remote: {})",
        subject.name(),
        remote.kind()
    );
    for line in &result.trace {
        println!("{line}");
    }
    println!("final state:\n{}", result.final_state);
    if let Some(path) = &args.html {
        let heading = format!(
            "replay of {title} on engine {} (remote {})",
            subject.name(),
            remote.kind()
        );
        let failure = result
            .failure
            .as_ref()
            .map(|(step, v)| (*step, v.invariant.to_string(), v.detail.as_str()));
        let replicas = file
            .as_ref()
            .map_or(usize::from(scenario.replicas), |f| f.scenario.replicas);
        let page = syncgate::report::timeline::html(&syncgate::report::timeline::Timeline {
            title: &heading,
            replicas,
            trace: &result.trace,
            failure,
            notes: &[],
        });
        write_report(path, &page)?;
        println!("timeline: {}", path.display());
    }
    if let Some((step, fault)) = &result.fault {
        println!("HARNESS FAILED at step {step}: {fault}");
        anyhow::bail!("the harness failed at step {step} of the replay, not the engine: {fault}");
    }
    match &result.failure {
        None => {
            println!("all checks passed");
            Ok(ExitCode::SUCCESS)
        }
        Some((step, v)) => {
            println!("FAILED at step {step}: {} — {}", v.invariant, v.detail);
            Ok(ExitCode::from(1))
        }
    }
}

fn merge_command(args: MergeArgs) -> anyhow::Result<ExitCode> {
    let mut shards = Vec::new();
    for path in &args.summaries {
        let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
        let shard = syncgate::merge::ShardSummary::parse(&text)
            .with_context(|| format!("{} is not a `syncgate check --json` summary", path.display()))?;
        shards.push((path.display().to_string(), shard));
    }
    let merged = syncgate::merge::merge(shards)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&merged)?);
    } else {
        print!("{}", syncgate::merge::text(&merged));
    }
    if args.github {
        print!("{}", syncgate::report::github::merged_annotations(&merged));
    }
    if merged.cases == 0 {
        // Nothing was checked: no pass, and not the engine's failure either.
        return Ok(ExitCode::from(2));
    }
    Ok(verdict(merged.ok))
}
