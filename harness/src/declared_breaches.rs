//! What an engine's promises per constraint let through (PROTOCOL.md,
//! "Promises per constraint"), over a `check` run: each kind counted, with
//! its first passing case shrunk to the fewest steps that still make one.

use serde::Serialize;

use syncgate_protocol::InitOk;

use crate::events::{Event, Events};
use crate::scenario::{GenConfig, Scenario};
use crate::seed::case_seed;
use crate::shrink::{shrink, Target};
use crate::subject::Subject;

/// Breaches of one kind that the engine's declarations allow: counted over
/// the run, never a failure, never silent.
#[derive(Clone, Debug, Serialize, serde::Deserialize)]
pub struct DeclaredBreach {
    /// The event that counts them (`key-duplicate-by-merge`, ...).
    pub event: String,
    /// The declaration that allows them (`natural_keys: local_only`).
    pub declaration: String,
    /// What they are, in words.
    pub what: String,
    pub count: u64,
    /// Cases that made at least one.
    pub cases: u64,
    /// The first case that made one and failed nothing, shrunk.
    pub example: Option<BreachExample>,
}

/// A case that made a declared breach, shrunk to the fewest steps that
/// still make one.
#[derive(Clone, Debug, Serialize, serde::Deserialize)]
pub struct BreachExample {
    pub seed: String,
    pub case: u64,
    /// The command that runs the case as generated (before shrinking).
    pub replay: String,
    pub original_steps: usize,
    pub shrunk_steps: usize,
    pub trace: Vec<String>,
}

impl DeclaredBreach {
    /// The note a report prints: the counts, and where the example is.
    pub fn note(&self, cases: u64) -> String {
        let example = match &self.example {
            Some(e) => format!(
                "; the first, case {} ({}), shrunk from {} to {} steps below; unshrunk: {}",
                e.case, e.seed, e.original_steps, e.shrunk_steps, e.replay
            ),
            None => "; no case that made one passed everything else (see the failures)".into(),
        };
        format!(
            "declared ({}): {} {}, in {} of {cases} cases, not failures{example}",
            self.declaration, self.count, self.what, self.cases
        )
    }
}

/// Most runs spent shrinking one declared breach's example.
const EXAMPLE_SHRINK_RUNS_MAX: usize = 100;

/// Where a run's examples come from: its seed, the shape of its case `i`,
/// its case folders and its shrinking budget.
pub(crate) struct RunOf<'a> {
    pub seed: &'a str,
    pub gen_for: &'a dyn Fn(u64) -> GenConfig,
    pub base_dir: &'a std::path::Path,
    pub shrink_runs_max: usize,
}

/// The breaches the engine's declarations let through, each kind with its
/// counts and its first passing case shrunk.
pub(crate) fn declared_breaches(
    subject: &dyn Subject,
    run: &RunOf<'_>,
    declared: &InitOk,
    events: &Events,
    cases: &Events,
    examples: std::collections::BTreeMap<Event, (u64, Scenario)>,
) -> Vec<DeclaredBreach> {
    let mut out = Vec::new();
    for event in Event::DECLARED_BREACHES {
        let Some(&count) = events.get(&event) else { continue };
        let example = examples.get(&event).map(|(i, scenario)| {
            let shrunk = shrink(
                subject,
                scenario,
                Target::Reaches(event),
                run.base_dir,
                run.shrink_runs_max.min(EXAMPLE_SHRINK_RUNS_MAX),
            );
            let seed = case_seed(run.seed, *i);
            let gen = (run.gen_for)(*i);
            BreachExample {
                replay: crate::show::replay_command(
                    &subject.name(),
                    subject.remote().kind(),
                    &seed,
                    gen.replicas.unwrap_or(scenario.replicas),
                    gen.steps,
                    gen.schema_arg().as_deref(),
                ),
                seed,
                case: *i,
                original_steps: scenario.steps.len(),
                shrunk_steps: shrunk.scenario.steps.len(),
                trace: shrunk.result.trace,
            }
        });
        let (declaration, what) = crate::declared::allowed_by(event, declared);
        out.push(DeclaredBreach {
            event: event.name().to_string(),
            declaration,
            what,
            count,
            cases: cases.get(&event).copied().unwrap_or(0),
            example,
        });
    }
    out
}
