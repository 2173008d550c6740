//! `syncgate mutants`: the gate must catch every planted bug.
//!
//! Runs the reference engine (it must pass) and every mutant (each must
//! fail within the case budget), shrinks each counterexample, and reports
//! cases until caught, shrunk length and the invariant that caught it.

use serde::Serialize;
use syncgate_engine::Mutant;

use crate::check::Invariant;
use crate::error::HarnessError;
use crate::gate::{check, CheckOptions};
use crate::places::RemoteTarget;
use crate::subject::process::{ProcessEngine, REQUEST_TIMEOUT_MS_DEFAULT};
use crate::subject::reference::ReferenceEngine;
use crate::subject::{ContractOnly, Subject};

/// A mutant must be caught within this many cases.
pub const CASES_TO_CATCH_MAX: u64 = 200;
/// A bug that shows only inside a sync (a push between a pull's pages, a
/// lock that ends inside a sync) gets this many times the budget: a case
/// reaches such a moment in a few of its syncs only (issue 22: within 600).
pub const INSIDE_A_STEP_BUDGET_FACTOR: u64 = 3;
/// Goal for a shrunk counterexample's length.
pub const SHRUNK_STEPS_GOAL: usize = 8;

/// How one oracle setting fared against one engine.
#[derive(Clone, Debug, Serialize)]
pub struct Catch {
    pub caught: bool,
    /// 1-based count of cases run until the first failing one.
    pub cases_until_caught: Option<u64>,
    pub shrunk_steps: Option<usize>,
    pub invariant: Option<Invariant>,
    pub seed: Option<String>,
    pub trace: Vec<String>,
    pub detail: Option<String>,
    pub seconds: f64,
}

impl Catch {
    fn of(summary: &crate::gate::Summary) -> Catch {
        let first = summary.failures.first();
        Catch {
            caught: first.is_some(),
            cases_until_caught: first.map(|f| f.case + 1),
            shrunk_steps: first.map(|f| f.shrunk_steps),
            invariant: first.map(|f| f.invariant),
            seed: first.map(|f| f.seed.clone()),
            trace: first.map(|f| f.trace.clone()).unwrap_or_default(),
            detail: first.map(|f| f.detail.clone()),
            seconds: summary.elapsed_s,
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct MutantRow {
    pub engine: String,
    /// Checked by the contract and the reference profile (the model).
    pub profile: Catch,
    /// Checked by the contract alone; `None` when that column was not run.
    pub contract: Option<Catch>,
}

#[derive(Clone, Debug, Serialize)]
pub struct MutantsReport {
    pub reference_passed: bool,
    pub reference_cases: u64,
    pub rows: Vec<MutantRow>,
    /// Mutants not hunted on this remote, and why.
    pub elsewhere: Vec<String>,
}

impl MutantsReport {
    /// The reference passes, and every mutant is caught with the profile;
    /// the contract-alone column is reported, not required (some planted
    /// bugs change only what the reference spec fixes, such as report counts).
    pub fn ok(&self) -> bool {
        self.reference_passed && self.rows.iter().all(|r| r.profile.caught)
    }
}

/// The options a mutant hunt uses: default scenarios, stop at the first
/// failing batch, shrink it, save nothing.
pub fn hunt_options(cases: u64, seed: &str, jobs: usize) -> CheckOptions {
    CheckOptions {
        cases,
        seed: seed.to_string(),
        jobs,
        gen: crate::scenario::GenConfig::default(),
        long: None,
        random_schemas_every: 0,
        doublecheck: false,
        base_dir: crate::gate::default_base_dir(),
        failures_dir: None,
        shrink_runs_max: 2_000,
        stop_at_first: true,
        each_property: false,
        progress: false,
        shard: Default::default(),
        duration: None,
    }
}

/// Runs the catalog; `opts.cases` is the budget for each mutant and the
/// number of cases the reference engine must pass.
///
/// With `adapter` (the path of `syncgate-reference-adapter`), every engine
/// runs over the protocol as `exec:ADAPTER --mutant NAME` instead of in
/// this process.
/// With `contract_column` off, each mutant is hunted with the profile only
/// (the contract-alone column shows what the contract sees; it does not
/// depend on the remote).
pub fn run_mutants(
    opts: &CheckOptions,
    adapter: Option<&str>,
    remote: &RemoteTarget,
    contract_column: bool,
) -> Result<MutantsReport, HarnessError> {
    let engine = |mutant: Option<Mutant>| -> Box<dyn Subject> {
        let subject: Box<dyn Subject> = match (adapter, mutant) {
            (Some(path), Some(m)) => Box::new(ProcessEngine::new(
                &format!("{path} --mutant {}", m.name()),
                REQUEST_TIMEOUT_MS_DEFAULT,
            )),
            (Some(path), None) => Box::new(ProcessEngine::new(path, REQUEST_TIMEOUT_MS_DEFAULT)),
            (None, Some(m)) => Box::new(ReferenceEngine::mutant(m)),
            (None, None) => Box::new(ReferenceEngine::new()),
        };
        crate::on_remote(subject, remote)
    };
    // The contract alone holds an engine to what it declares: the mutants
    // declare what the reference keeps, atomic transactions and causal
    // consistency (S2, P5, P1), so the contract checks those promises too
    // (over the protocol, the adapter's flags say atomic only).
    let declaring = |mutant: Mutant| -> Box<dyn Subject> {
        let subject: Box<dyn Subject> = match adapter {
            Some(path) => Box::new(ProcessEngine::new(
                &format!("{path} --mutant {} --atomic", mutant.name()),
                REQUEST_TIMEOUT_MS_DEFAULT,
            )),
            None => Box::new(ReferenceEngine::with(syncgate_reference_adapter::Options {
                mutant: Some(mutant),
                atomic: true,
                causal: true,
                ..Default::default()
            })),
        };
        crate::on_remote(subject, remote)
    };
    let reference = check(
        engine(None).as_ref(),
        &CheckOptions {
            stop_at_first: true,
            ..opts.clone()
        },
    )?;
    let mut rows = Vec::new();
    let mut elsewhere = Vec::new();
    for mutant in Mutant::ALL {
        if mutant.postgres_only() && !matches!(remote, RemoteTarget::Postgres { .. }) {
            elsewhere.push(format!(
                "mutant:{}: the gate reaches its bug only on a PostgreSQL remote (it lives in that remote's code, or inside a pull's read transaction, where only the wire tap holds a sync); hunt it with --remote postgres",
                mutant.name()
            ));
            continue;
        }
        let factor = if mutant.inside_a_step() {
            INSIDE_A_STEP_BUDGET_FACTOR
        } else {
            1
        };
        let hunt = CheckOptions {
            stop_at_first: true,
            cases: opts.cases * factor,
            ..opts.clone()
        };
        let with_profile = check(engine(Some(mutant)).as_ref(), &hunt)?;
        let contract_alone = if contract_column {
            Some(Catch::of(&check(&ContractOnly(declaring(mutant)), &hunt)?))
        } else {
            None
        };
        rows.push(MutantRow {
            engine: format!("mutant:{}", mutant.name()),
            profile: Catch::of(&with_profile),
            contract: contract_alone,
        });
    }
    Ok(MutantsReport {
        reference_passed: reference.failures.is_empty() && reference.other_failing_seeds.is_empty(),
        reference_cases: reference.cases,
        rows,
        elsewhere,
    })
}

/// The report as a Markdown table: each mutant with the profile (contract
/// and model) and with the contract alone.
pub fn table(report: &MutantsReport) -> String {
    let mut out = String::from(
        "| engine | profile: caught | cases | shrunk steps | invariant | contract alone: caught | cases | shrunk steps | property |\n\
         |---|---|---|---|---|---|---|---|---|\n",
    );
    out.push_str(&format!(
        "| reference | {} | {} cases passed | | | {} | | | |\n",
        if report.reference_passed { "passes" } else { "FAILS" },
        report.reference_cases,
        if report.reference_passed { "passes" } else { "FAILS" },
    ));
    let opt = |v: Option<String>| v.unwrap_or_else(|| "-".into());
    let cells = |c: &Catch, miss: &str| {
        format!(
            "{} | {} | {} | {}",
            if c.caught { "yes" } else { miss },
            opt(c.cases_until_caught.map(|n| n.to_string())),
            opt(c.shrunk_steps.map(|n| n.to_string())),
            opt(c.invariant.map(|i| i.to_string())),
        )
    };
    for r in &report.rows {
        let contract = match &r.contract {
            Some(c) => cells(c, "no"),
            None => "not run | | |".to_string(),
        };
        out.push_str(&format!(
            "| {} | {} | {contract} |\n",
            r.engine,
            cells(&r.profile, "NO")
        ));
    }
    for note in &report.elsewhere {
        out.push_str(&format!("\nnot hunted on this remote: {note}\n"));
    }
    out
}

/// Each caught mutant's shrunk counterexample, by oracle, as `--traces`
/// prints them after the table.
pub fn traces(report: &MutantsReport) -> String {
    let mut out = String::new();
    for row in &report.rows {
        let catches = [
            ("profile", Some(&row.profile)),
            ("contract alone", row.contract.as_ref()),
        ];
        for (oracle, catch) in catches.into_iter().filter_map(|(o, c)| c.map(|c| (o, c))) {
            if !catch.caught {
                continue;
            }
            out.push_str(&format!(
                "\n{} by {oracle} ({}): {}\n",
                row.engine,
                catch.seed.clone().unwrap_or_default(),
                catch.detail.clone().unwrap_or_default()
            ));
            for line in &catch.trace {
                out.push_str(&format!("  {line}\n"));
            }
        }
    }
    out
}
