//! What a person reads at the end of a `check` run: its summary, every
//! counterexample with its trace and replay command; and what CI systems
//! read (`junit`, `github`). (Rows and tables are written by `crate::show`,
//! as everywhere.)

pub mod github;
pub mod junit;
pub mod timeline;

use crate::gate::{CaseFailure, CheckOptions, Summary};
use crate::scenario::GenConfig;
use crate::show::{replay_command, shell_quote};

fn shape(g: &GenConfig) -> String {
    match g.replicas {
        Some(n) => format!("{n} replicas x {} steps", g.steps),
        None => format!("1-{} replicas x {} steps", g.replicas_max, g.steps),
    }
}

/// The text summary of a `check` run.
pub fn summary(s: &Summary, opts: &CheckOptions) -> String {
    let mut out = String::new();
    let mut mix = match &opts.long {
        Some(long) => format!(", every {}th case {}", long.every, shape(&long.gen)),
        None => String::new(),
    };
    match (opts.gen.schema_arg(), opts.random_schemas_every) {
        (Some(schema), _) => mix.push_str(&format!(", schema {schema}")),
        (None, every) if every > 0 => mix.push_str(&format!(", every {every}th case on a random schema")),
        _ => {}
    }
    out.push_str(&format!(
        "syncgate check: engine {}, remote {}, seed {:?}, {}{mix}\n",
        s.engine,
        s.remote,
        s.seed,
        shape(&opts.gen)
    ));
    if opts.shard.count > 1 {
        out.push_str(&format!(
            "shard {} of the run: its cases i % {} == {} (syncgate merge combines the shards' --json summaries \
             and judges the required events over all of them)\n",
            opts.shard, opts.shard.count, opts.shard.index
        ));
    }
    if opts.duration.is_some() {
        out.push_str(&format!(
            "--duration: ran every case of the shard below {}; rerun exactly these with --cases {}\n",
            s.cases_end, s.cases_end
        ));
    }
    out.push_str(&format!("oracles: {}\n", s.oracles));
    for note in &s.notes {
        out.push_str(&format!("note: {note}\n"));
    }
    out.push_str(&format!(
        "{} cases, {} passed, {} failed in {:.1} s ({:.0} cases/s)\n",
        s.cases,
        s.passed,
        s.failures.len() + s.other_failing_seeds.len(),
        s.elapsed_s,
        s.cases_per_s
    ));
    let events: Vec<String> = s.events.iter().map(|(k, v)| format!("{}={v}", k.name())).collect();
    out.push_str(&format!("events: {}\n", events.join(" ")));
    for breach in &s.declared_breaches {
        out.push_str(&format!("note: {}\n", breach.note(s.cases)));
        for line in breach.example.iter().flat_map(|e| &e.trace) {
            out.push_str(&format!("    {line}\n"));
        }
    }
    for f in &s.failures {
        out.push('\n');
        out.push_str(&counterexample(s, f));
    }
    if !s.other_failing_seeds.is_empty() {
        out.push_str(&format!("other failing seeds: {}\n", s.other_failing_seeds.join(" ")));
    }
    if !s.missing_events.is_empty() {
        let names: Vec<&str> = s.missing_events.iter().map(|e| e.name()).collect();
        out.push_str(&format!(
            "FAILED: these required events never happened, so the generator no longer reaches them: {}\n",
            names.join(", ")
        ));
    }
    match s.nothing_checked() {
        Some(why) => out.push_str(&format!("NOTHING CHECKED: {why}\n")),
        None => out.push_str(if s.ok() { "PASS\n" } else { "FAIL\n" }),
    }
    out
}

/// One counterexample as the text summary prints it: its heading, what
/// failed, the case's configuration, the shrunk trace and how to replay it.
/// A shrunk counterexample's timeline page (`timeline.rs`).
pub fn counterexample_timeline(s: &Summary, f: &CaseFailure) -> String {
    let title = format!(
        "{} on engine {} (remote {}): {} at step {}",
        f.seed, s.engine, s.remote, f.invariant, f.step
    );
    let notes = [
        format!(
            "shrunk from {} to {} steps; replicas {}; swarm {}",
            f.original_steps, f.shrunk_steps, f.scenario.replicas, f.scenario.swarm
        ),
        f.scenario.config_line(),
        format!(
            "replay: {}",
            replay_command(
                &s.engine,
                &s.remote,
                &f.seed,
                f.replicas,
                f.steps,
                f.schema_file.as_deref()
            )
        ),
    ];
    timeline::html(&timeline::Timeline {
        title: &title,
        replicas: f.scenario.replicas,
        trace: &f.trace,
        failure: Some((f.step, f.invariant.to_string(), &f.detail)),
        notes: &notes,
    })
}

pub fn counterexample(s: &Summary, f: &CaseFailure) -> String {
    let mut out = format!(
        "COUNTEREXAMPLE {} (case {}): {} ({:?}) at step {} — shrunk from {} to {} steps in {} runs\n",
        f.seed,
        f.case,
        f.invariant,
        f.invariant.oracle(),
        f.step,
        f.original_steps,
        f.shrunk_steps,
        f.shrink_runs
    );
    out.push_str(&format!("  {}\n", f.detail.replace('\n', "\n  ")));
    out.push_str(&format!(
        "  replicas {}; swarm {}\n  {}\n",
        f.scenario.replicas,
        f.scenario.swarm,
        f.scenario.config_line()
    ));
    for line in &f.trace {
        out.push_str(&format!("  {line}\n"));
    }
    out.push_str(&format!(
        "  replay: {}\n",
        replay_command(
            &s.engine,
            &s.remote,
            &f.seed,
            f.replicas,
            f.steps,
            f.schema_file.as_deref()
        )
    ));
    if let Some(path) = &f.trace_file {
        out.push_str(&format!(
            "  replay the shrunk trace: syncgate replay --engine {} --trace {}\n",
            shell_quote(&s.engine),
            path.display()
        ));
        out.push_str(&format!("  its timeline: {}\n", path.with_extension("html").display()));
    }
    out
}

/// How to rerun the failing cases that were not shrunk (a run shrinks the
/// first failure of each property with `--each-property`, else only the
/// first failure).
pub fn other_failures(s: &Summary) -> String {
    format!(
        "{} more failing cases, not shrunk: {} (replay one with syncgate replay --engine {} --seed SEED and \
         this run's --replicas and --steps; --each-property shrinks the first failure of every property)",
        s.other_failing_seeds.len(),
        s.other_failing_seeds.join(" "),
        shell_quote(&s.engine)
    )
}
