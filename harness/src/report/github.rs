//! GitHub Actions: workflow-command annotations (`::error ...::`) for the
//! failures of a `check` run, and the Markdown of its job summary.

use super::{counterexample, other_failures};
use crate::check::Invariant;
use crate::gate::Summary;

/// One annotation per counterexample, one for the failing cases left
/// unshrunk, one for missing required events, a notice per note.
pub fn annotations(s: &Summary) -> String {
    let mut out = String::new();
    for note in &s.notes {
        out.push_str(&command("notice", "syncgate note", note));
    }
    for breach in &s.declared_breaches {
        out.push_str(&command(
            "warning",
            "syncgate: declared breaches",
            &breach.note(s.cases),
        ));
    }
    for f in &s.failures {
        let title = format!("syncgate: {} at step {} ({})", f.invariant, f.step, f.seed);
        out.push_str(&command("error", &title, &counterexample(s, f)));
    }
    if !s.other_failing_seeds.is_empty() {
        out.push_str(&command("error", "syncgate: more failing cases", &other_failures(s)));
    }
    if !s.missing_events.is_empty() {
        let names: Vec<&str> = s.missing_events.iter().map(|e| e.name()).collect();
        out.push_str(&command(
            "error",
            "syncgate: required events never happened",
            &format!(
                "the generator no longer reaches: {} (a change of the harness or of the engine's declarations)",
                names.join(", ")
            ),
        ));
    }
    out
}

/// The annotation of a run that could not be made (exit 2).
pub fn annotation_not_run(error: &str) -> String {
    command(
        "error",
        "syncgate could not run (the harness's or the setup's failure, not the engine's)",
        error,
    )
}

/// The job summary: the verdict, then each checked property passed or
/// failed with its first counterexample's step and seed.
pub fn step_summary(s: &Summary) -> String {
    let verdict = if s.ok() { "PASS" } else { "FAIL" };
    let mut out = format!(
        "### syncgate check: {verdict}\n\n{} on {}, seed `{}`: {} cases, {} passed ({:.1} cases/s); {}.\n\n",
        md(&s.engine),
        s.remote,
        md(&s.seed),
        s.cases,
        s.passed,
        s.cases_per_s,
        s.oracles
    );
    out.push_str("| property | result |\n|---|---|\n");
    let failed = |i: Invariant| s.failures.iter().find(|f| f.invariant == i);
    for invariant in Invariant::ALL {
        let result = match failed(invariant) {
            Some(f) => format!(
                "**failed** at step {} of `{}` (shrunk to {} steps)",
                f.step,
                md(&f.seed),
                f.shrunk_steps
            ),
            None if s.checked.contains(&invariant) => "passed".to_string(),
            None => continue,
        };
        out.push_str(&format!("| `{invariant}` | {result} |\n"));
    }
    if !s.other_failing_seeds.is_empty() {
        out.push_str(&format!("\n{}\n", md(&other_failures(s))));
    }
    if !s.missing_events.is_empty() {
        let names: Vec<&str> = s.missing_events.iter().map(|e| e.name()).collect();
        out.push_str(&format!("\nRequired events never reached: {}\n", names.join(", ")));
    }
    out
}

/// The annotations of a merged run (`syncgate merge --github`): one per
/// counterexample any shard shrank, one for the other failing cases, one
/// for required events no shard reached.
pub fn merged_annotations(m: &crate::merge::Merged) -> String {
    let mut out = String::new();
    for f in &m.failures {
        let title = format!("syncgate: {} at step {} ({})", f.invariant, f.step, f.seed);
        let mut message = format!("{}\n{}\n", f.detail, f.configuration);
        for line in &f.trace {
            message.push_str(&format!("{line}\n"));
        }
        message.push_str(&format!(
            "replay: {}",
            crate::show::replay_command(
                &m.engine,
                &m.remote,
                &f.seed,
                f.replicas,
                f.steps,
                f.schema_file.as_deref()
            )
        ));
        out.push_str(&command("error", &title, &message));
    }
    if !m.other_failing_seeds.is_empty() {
        out.push_str(&command(
            "error",
            "syncgate: more failing cases",
            &format!("not shrunk: {}", m.other_failing_seeds.join(" ")),
        ));
    }
    if !m.missing_events.is_empty() {
        out.push_str(&command(
            "error",
            "syncgate: required events never happened",
            &format!("in no shard: {}", m.missing_events.join(", ")),
        ));
    }
    out
}

/// `::kind title=...::message`, escaped as the runner reads it (`%`, line
/// breaks; in the title also `:` and `,`).
fn command(kind: &str, title: &str, message: &str) -> String {
    let data = |raw: &str| raw.replace('%', "%25").replace('\r', "%0D").replace('\n', "%0A");
    let title = data(title).replace(':', "%3A").replace(',', "%2C");
    format!("::{kind} title={title}::{}\n", data(message.trim_end()))
}

/// Text for a Markdown table cell or code span: no pipes, no backticks.
fn md(raw: &str) -> String {
    raw.replace('|', "\\|").replace('`', "'")
}
