//! `syncgate merge`: the `--json` summaries of one run's shards (`check
//! --shard k/n` on n runners) combined into the verdict one run of the same
//! seed gives: the same cases, the same failing cases, the events summed
//! and the required events judged over all of them.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::error::HarnessError;
use crate::gate::{DeclaredBreach, REQUIRED_EVENTS_MIN_CASES};
use crate::shard::Shard;
use crate::show::{replay_command, shell_quote};

/// What `merge` reads of one shard's summary (the fields `check --json`
/// writes; others are ignored).
#[derive(Clone, Debug, Deserialize)]
pub struct ShardSummary {
    engine: String,
    remote: String,
    seed: String,
    oracles: String,
    notes: Vec<String>,
    cases: u64,
    shard: String,
    cases_end: u64,
    passed: u64,
    failures: Vec<FailureRecord>,
    other_failing_seeds: Vec<String>,
    events: BTreeMap<String, u64>,
    #[serde(default)]
    declared_breaches: Vec<DeclaredBreach>,
    required_events: Vec<String>,
    /// Per required event, the shard's cases whose schema could reach it
    /// (absent from summaries of older syncgates: every case of the shard).
    #[serde(default)]
    eligible_cases: Option<BTreeMap<String, u64>>,
    elapsed_s: f64,
}

impl ShardSummary {
    pub fn parse(json: &str) -> Result<ShardSummary, serde_json::Error> {
        serde_json::from_str(json)
    }
}

/// A shrunk counterexample as a summary carries it.
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct FailureRecord {
    pub seed: String,
    pub case: u64,
    pub replicas: usize,
    pub steps: usize,
    pub invariant: String,
    pub step: usize,
    pub detail: String,
    pub original_steps: usize,
    pub shrunk_steps: usize,
    pub configuration: String,
    pub trace: Vec<String>,
    pub trace_file: Option<String>,
    #[serde(default)]
    pub schema_file: Option<String>,
}

/// The verdict of all shards together.
#[derive(Clone, Debug, Serialize)]
pub struct Merged {
    pub engine: String,
    pub remote: String,
    pub seed: String,
    pub oracles: String,
    pub notes: Vec<String>,
    pub shards: u64,
    /// The cases the shards ran, together.
    pub cases: u64,
    /// Every case `i < cases_end` ran (a shard stopped by `--duration` may
    /// have left a gap above it).
    pub cases_end: u64,
    pub passed: u64,
    /// Every failing case's index, shrunk or not, in order.
    pub failing_cases: Vec<u64>,
    pub failures: Vec<FailureRecord>,
    pub other_failing_seeds: Vec<String>,
    pub events: BTreeMap<String, u64>,
    /// What the engine's declarations let through, summed over the shards,
    /// with the example of the lowest case.
    pub declared_breaches: Vec<DeclaredBreach>,
    pub missing_events: Vec<String>,
    /// The slowest shard's time (the shards ran side by side).
    pub elapsed_s_max: f64,
    pub ok: bool,
}

/// Combines the shards of one run (`(file name, summary)` each). Refused
/// (exit 2) when they are not the shards of one run: another engine,
/// remote, seed or shard count, a shard twice or missing.
pub fn merge(shards: Vec<(String, ShardSummary)>) -> Result<Merged, HarnessError> {
    let refuse = |why: String| Err(HarnessError::Setup(format!("syncgate merge: {why}")));
    let Some((first_name, first)) = shards.first().cloned() else {
        return refuse("no summaries given".into());
    };
    let mut parts: BTreeMap<u64, Shard> = BTreeMap::new();
    for (name, s) in &shards {
        for (what, theirs, ours) in [
            ("engine", &s.engine, &first.engine),
            ("remote", &s.remote, &first.remote),
            ("seed", &s.seed, &first.seed),
        ] {
            if theirs != ours {
                return refuse(format!(
                    "{name} ran {what} {theirs:?}, {first_name} {ours:?}: the shards of one run share engine, remote and seed"
                ));
            }
        }
        let shard = Shard::parse(&s.shard).map_err(|e| HarnessError::Setup(format!("syncgate merge: {name}: {e}")))?;
        if let Some(seen) = parts.values().next() {
            if seen.count != shard.count {
                return refuse(format!(
                    "{name} is shard {shard}, {first_name} shard {}: the shards of one run share n",
                    Shard::parse(&first.shard).map_or(first.shard.clone(), |s| s.to_string())
                ));
            }
        }
        if parts.insert(shard.index, shard).is_some() {
            return refuse(format!("shard {shard} is given twice ({name} is one of them)"));
        }
    }
    let count = parts.values().next().map_or(1, |s| s.count);
    let missing: Vec<String> = (0..count)
        .filter(|k| !parts.contains_key(k))
        .map(|k| format!("{k}/{count}"))
        .collect();
    if !missing.is_empty() {
        return refuse(format!(
            "shards {} are missing: merge all {count} shards of the run",
            missing.join(", ")
        ));
    }
    let mut merged = Merged {
        engine: first.engine.clone(),
        remote: first.remote.clone(),
        seed: first.seed.clone(),
        oracles: first.oracles.clone(),
        notes: Vec::new(),
        shards: count,
        cases: 0,
        cases_end: u64::MAX,
        passed: 0,
        failing_cases: Vec::new(),
        failures: Vec::new(),
        other_failing_seeds: Vec::new(),
        events: BTreeMap::new(),
        declared_breaches: Vec::new(),
        missing_events: Vec::new(),
        elapsed_s_max: 0.0,
        ok: false,
    };
    let mut required = BTreeSet::new();
    let mut eligible: BTreeMap<String, u64> = BTreeMap::new();
    for (_, s) in shards {
        let shard = Shard::parse(&s.shard).map_err(|e| HarnessError::Setup(format!("syncgate merge: {e}")))?;
        merged.cases += s.cases;
        merged.passed += s.passed;
        // The shard's first case it did not run.
        let next = s.cases_end + (shard.index + count - s.cases_end % count) % count;
        merged.cases_end = merged.cases_end.min(next);
        merged.failing_cases.extend(s.failures.iter().map(|f| f.case));
        merged
            .failing_cases
            .extend(s.other_failing_seeds.iter().filter_map(|seed| case_of(seed)));
        merged.failures.extend(s.failures);
        merged.other_failing_seeds.extend(s.other_failing_seeds);
        for (event, n) in s.events {
            *merged.events.entry(event).or_insert(0) += n;
        }
        for event in &s.required_events {
            let n = match &s.eligible_cases {
                Some(counts) => counts.get(event).copied().unwrap_or(0),
                None => s.cases,
            };
            *eligible.entry(event.clone()).or_insert(0) += n;
        }
        required.extend(s.required_events);
        for breach in s.declared_breaches {
            add_breaches(&mut merged.declared_breaches, breach);
        }
        for note in s.notes {
            if !merged.notes.contains(&note) {
                merged.notes.push(note);
            }
        }
        merged.elapsed_s_max = merged.elapsed_s_max.max(s.elapsed_s);
    }
    merged.failing_cases.sort_unstable();
    merged.failures.sort_by_key(|f| f.case);
    merged.other_failing_seeds.sort_by_key(|seed| case_of(seed));
    let failed = !merged.failing_cases.is_empty();
    if !failed {
        // Each judged over enough cases whose schema could reach it.
        merged.missing_events = required
            .into_iter()
            .filter(|e| eligible.get(e).copied().unwrap_or(0) >= REQUIRED_EVENTS_MIN_CASES)
            .filter(|e| merged.events.get(e).copied().unwrap_or(0) == 0)
            .collect();
    }
    merged.ok = !failed && merged.missing_events.is_empty() && merged.cases > 0;
    Ok(merged)
}

/// Adds one shard's count of a kind of declared breach to the run's.
fn add_breaches(run: &mut Vec<DeclaredBreach>, shard: DeclaredBreach) {
    let Some(kind) = run.iter_mut().find(|b| b.event == shard.event) else {
        run.push(shard);
        return;
    };
    kind.count += shard.count;
    kind.cases += shard.cases;
    let lower = match (&kind.example, &shard.example) {
        (Some(ours), Some(theirs)) => theirs.case < ours.case,
        (None, Some(_)) => true,
        _ => false,
    };
    if lower {
        kind.example = shard.example;
    }
}

/// The case index of a case seed `S/i`.
fn case_of(seed: &str) -> Option<u64> {
    seed.rsplit_once('/').and_then(|(_, i)| i.parse().ok())
}

/// The merged verdict as text, as `check` prints a run's.
pub fn text(m: &Merged) -> String {
    let mut out = format!(
        "syncgate merge: engine {}, remote {}, seed {:?}, {} shards\noracles: {}\n",
        m.engine, m.remote, m.seed, m.shards, m.oracles
    );
    for note in &m.notes {
        out.push_str(&format!("note: {note}\n"));
    }
    out.push_str(&format!(
        "{} cases (every case below {} ran), {} passed, {} failed; the slowest shard took {:.1} s\n",
        m.cases,
        m.cases_end,
        m.passed,
        m.failing_cases.len(),
        m.elapsed_s_max
    ));
    let events: Vec<String> = m.events.iter().map(|(k, v)| format!("{k}={v}")).collect();
    out.push_str(&format!("events: {}\n", events.join(" ")));
    for breach in &m.declared_breaches {
        out.push_str(&format!("note: {}\n", breach.note(m.cases)));
        for line in breach.example.iter().flat_map(|e| &e.trace) {
            out.push_str(&format!("    {line}\n"));
        }
    }
    for f in &m.failures {
        out.push_str(&format!(
            "\nCOUNTEREXAMPLE {} (case {}): {} at step {} — shrunk from {} to {} steps\n  {}\n  {}\n",
            f.seed,
            f.case,
            f.invariant,
            f.step,
            f.original_steps,
            f.shrunk_steps,
            f.detail.replace('\n', "\n  "),
            f.configuration
        ));
        for line in &f.trace {
            out.push_str(&format!("  {line}\n"));
        }
        out.push_str(&format!(
            "  replay: {}\n",
            replay_command(
                &m.engine,
                &m.remote,
                &f.seed,
                f.replicas,
                f.steps,
                f.schema_file.as_deref()
            )
        ));
        if let Some(path) = &f.trace_file {
            out.push_str(&format!(
                "  replay the shrunk trace (on the runner of its shard): syncgate replay --engine {} --trace {path}\n",
                shell_quote(&m.engine)
            ));
        }
    }
    if !m.other_failing_seeds.is_empty() {
        out.push_str(&format!("other failing seeds: {}\n", m.other_failing_seeds.join(" ")));
    }
    if !m.missing_events.is_empty() {
        out.push_str(&format!(
            "FAILED: these required events never happened in any shard, so the generator no longer reaches them: {}\n",
            m.missing_events.join(", ")
        ));
    }
    if m.cases == 0 {
        out.push_str("NOTHING CHECKED: no shard ran a case; a run that checked nothing is not a pass\n");
    } else {
        out.push_str(if m.ok { "PASS\n" } else { "FAIL\n" });
    }
    out
}
