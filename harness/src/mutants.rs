//! `syncgate mutants`: the gate must catch every planted bug.
//!
//! Runs the reference engine (it must pass) and every mutant (each must
//! fail within the case budget), shrinks each counterexample, and reports
//! cases until caught, shrunk length and the invariant that caught it.

use serde::Serialize;
use syncgate_engine::Mutant;

use crate::check::Invariant;
use crate::gate::{check, CheckOptions};
use crate::subject::{ReferenceEngine, Subject};

/// A mutant must be caught within this many cases.
pub const CASES_TO_CATCH_MAX: u64 = 200;
/// Goal for a shrunk counterexample's length.
pub const SHRUNK_STEPS_GOAL: usize = 8;

#[derive(Clone, Debug, Serialize)]
pub struct MutantRow {
    pub engine: String,
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

#[derive(Clone, Debug, Serialize)]
pub struct MutantsReport {
    pub reference_passed: bool,
    pub reference_cases: u64,
    pub rows: Vec<MutantRow>,
}

impl MutantsReport {
    pub fn ok(&self) -> bool {
        self.reference_passed && self.rows.iter().all(|r| r.caught)
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
        doublecheck: false,
        base_dir: crate::gate::default_base_dir(),
        failures_dir: None,
        shrink_runs_max: 2_000,
        stop_at_first: true,
        progress: false,
    }
}

/// Runs the catalog; `opts.cases` is the budget for each mutant and the
/// number of cases the reference engine must pass.
pub fn run_mutants(opts: &CheckOptions) -> Result<MutantsReport, String> {
    let reference = check(
        &ReferenceEngine::new(),
        &CheckOptions {
            stop_at_first: true,
            ..opts.clone()
        },
    )?;
    let mut rows = Vec::new();
    for mutant in Mutant::ALL {
        let subject = ReferenceEngine::mutant(mutant);
        let summary = check(
            &subject,
            &CheckOptions {
                stop_at_first: true,
                ..opts.clone()
            },
        )?;
        let first = summary.failures.first();
        rows.push(MutantRow {
            engine: subject.name(),
            caught: first.is_some(),
            cases_until_caught: first.map(|f| f.case + 1),
            shrunk_steps: first.map(|f| f.shrunk_steps),
            invariant: first.map(|f| f.invariant),
            seed: first.map(|f| f.seed.clone()),
            trace: first.map(|f| f.trace.clone()).unwrap_or_default(),
            detail: first.map(|f| f.detail.clone()),
            seconds: summary.elapsed_s,
        });
    }
    Ok(MutantsReport {
        reference_passed: reference.failures.is_empty() && reference.other_failing_seeds.is_empty(),
        reference_cases: reference.cases,
        rows,
    })
}

/// The report as a Markdown table.
pub fn table(report: &MutantsReport) -> String {
    let mut out = String::from(
        "| engine | caught | cases until caught | shrunk steps | invariant | time |\n|---|---|---|---|---|---|\n",
    );
    out.push_str(&format!(
        "| reference | {} | {} cases passed | | | |\n",
        if report.reference_passed { "passes" } else { "FAILS" },
        report.reference_cases
    ));
    for r in &report.rows {
        let opt = |v: Option<String>| v.unwrap_or_else(|| "-".into());
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} | {:.1} s |\n",
            r.engine,
            if r.caught { "yes" } else { "NO" },
            opt(r.cases_until_caught.map(|c| c.to_string())),
            opt(r.shrunk_steps.map(|s| s.to_string())),
            opt(r.invariant.map(|i| i.to_string())),
            r.seconds
        ));
    }
    out
}
