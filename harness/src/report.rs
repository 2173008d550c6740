//! What a person reads: the final state as tables, and the summary of a
//! `check` run. One module for the CLI, replay and snapshots.

use syncgate_model as model;

use crate::check::show_value;
use crate::gate::{CheckOptions, Summary};
use crate::scenario::GenConfig;

/// Every place's final rows. When every replica holds what the remote holds
/// (the usual end of a passing case) they are shown once.
pub fn final_state(schema: &model::Schema, remote: Option<&model::Tables>, caches: &[Option<model::Tables>]) -> String {
    let mut out = String::new();
    let all_equal = remote.is_some() && caches.iter().all(|c| c.as_ref() == remote);
    match remote {
        Some(remote) if all_equal => {
            out.push_str(&format!("remote and all {} replicas:\n", caches.len()));
            out.push_str(&tables(schema, remote));
        }
        _ => {
            match remote {
                Some(remote) => {
                    out.push_str("remote:\n");
                    out.push_str(&tables(schema, remote));
                }
                None => out.push_str("remote: (unreadable)\n"),
            }
            for (r, cache) in caches.iter().enumerate() {
                match cache {
                    Some(cache) => {
                        out.push_str(&format!("r{r}:\n"));
                        out.push_str(&tables(schema, cache));
                    }
                    None => out.push_str(&format!("r{r}: (unreadable)\n")),
                }
            }
        }
    }
    out
}

/// One table per synced table: a header of column names, a row per row,
/// columns aligned; empty tables on one line.
pub fn tables(schema: &model::Schema, tables: &model::Tables) -> String {
    let mut out = String::new();
    for (t, table) in schema.tables.iter().enumerate() {
        if tables[t].is_empty() {
            out.push_str(&format!("  {}: (empty)\n", table.name));
            continue;
        }
        let mut grid: Vec<Vec<String>> = vec![std::iter::once("id".to_string())
            .chain(table.columns.iter().map(|c| c.name.clone()))
            .collect()];
        for (id, values) in &tables[t] {
            grid.push(
                std::iter::once(id.to_string())
                    .chain(values.iter().map(show_value))
                    .collect(),
            );
        }
        let widths: Vec<usize> = (0..grid[0].len())
            .map(|c| grid.iter().map(|row| row[c].chars().count()).max().unwrap_or(0))
            .collect();
        out.push_str(&format!("  {}:\n", table.name));
        for row in &grid {
            let cells: Vec<String> = row.iter().zip(&widths).map(|(cell, w)| format!("{cell:<w$}")).collect();
            out.push_str(&format!("    {}\n", cells.join("  ").trim_end()));
        }
    }
    out
}

fn shape(g: &GenConfig) -> String {
    match g.replicas {
        Some(n) => format!("{n} replicas x {} steps", g.steps),
        None => format!("1-{} replicas x {} steps", g.replicas_max, g.steps),
    }
}

/// The text summary of a `check` run.
pub fn summary(s: &Summary, opts: &CheckOptions) -> String {
    let mut out = String::new();
    let mix = match &opts.long {
        Some(long) => format!(", every {}th case {}", long.every, shape(&long.gen)),
        None => String::new(),
    };
    out.push_str(&format!(
        "syncgate check: engine {}, remote {}, seed {:?}, {}{mix}\n",
        s.engine,
        s.remote,
        s.seed,
        shape(&opts.gen)
    ));
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
    for f in &s.failures {
        out.push('\n');
        out.push_str(&format!(
            "COUNTEREXAMPLE {} (case {}): {} ({:?}) at step {} — shrunk from {} to {} steps in {} runs\n",
            f.seed,
            f.case,
            f.invariant,
            f.invariant.oracle(),
            f.step,
            f.original_steps,
            f.shrunk_steps,
            f.shrink_runs
        ));
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
        let engine = shell_quote(&s.engine);
        let remote = if s.remote == "sqlite" {
            String::new()
        } else {
            format!(" --remote {}", s.remote)
        };
        out.push_str(&format!(
            "  replay: syncgate replay --engine {engine}{remote} --seed {:?} --replicas {} --steps {}\n",
            f.seed, f.replicas, f.steps
        ));
        if let Some(path) = &f.trace_file {
            out.push_str(&format!(
                "  replay the shrunk trace: syncgate replay --engine {engine} --trace {}\n",
                path.display()
            ));
        }
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
    out.push_str(if s.ok() { "PASS\n" } else { "FAIL\n" });
    out
}

/// `text` quoted for a POSIX shell when it needs it.
pub fn shell_quote(text: &str) -> String {
    if text
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "-_:./=+@".contains(c))
    {
        text.to_string()
    } else {
        format!("'{}'", text.replace('\'', "'\\''"))
    }
}
