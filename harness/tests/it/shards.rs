//! A run spread over runners: `check --shard k/n` on each, `merge` of their
//! JSON summaries; and `--duration`, which says which cases it ran.

use std::path::Path;
use std::process::Command;

use serde_json::Value;

fn syncgate(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_syncgate"))
        .args(args)
        .output()
        .expect("syncgate runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// `check --json` of `engine`, `cases` cases of seed `seed`, as shard
/// `shard` when given; returns the exit code and the summary's file.
fn check(dir: &Path, engine: &str, seed: &str, cases: u64, shard: Option<&str>) -> (i32, std::path::PathBuf) {
    let cases = cases.to_string();
    let work = dir.to_str().unwrap();
    let failures = dir.join("failures");
    let mut args = vec![
        "check",
        "--engine",
        engine,
        "--seed",
        seed,
        "--cases",
        &cases,
        "--json",
        "--shrink-runs-max",
        "30",
        "--work-dir",
        work,
        "--failures-dir",
        failures.to_str().unwrap(),
    ];
    if let Some(shard) = shard {
        args.extend(["--shard", shard]);
    }
    let (code, stdout) = syncgate(&args);
    let path = dir.join(format!("{seed}-{}.json", shard.unwrap_or("all").replace('/', "of")));
    std::fs::write(&path, stdout).unwrap();
    (code, path)
}

fn json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// Every failing case of one run's summary, shrunk or not.
fn failing_cases(summary: &Value) -> Vec<u64> {
    let mut cases: Vec<u64> = summary["failures"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["case"].as_u64().unwrap())
        .collect();
    for seed in summary["other_failing_seeds"].as_array().unwrap() {
        cases.push(seed.as_str().unwrap().rsplit_once('/').unwrap().1.parse().unwrap());
    }
    cases.sort_unstable();
    cases
}

fn merge(files: &[&Path]) -> (i32, String) {
    let mut args = vec!["merge", "--json"];
    args.extend(files.iter().map(|f| f.to_str().unwrap()));
    syncgate(&args)
}

#[test]
fn three_shards_merged_are_one_run_of_a_failing_engine() {
    let dir = tempfile::tempdir().unwrap();
    let (code, whole) = check(dir.path(), "mutant:no-tombstones", "shards-fail", 60, None);
    assert_eq!(code, 1);
    let whole = json(&whole);
    let mut files = Vec::new();
    for k in 0..3 {
        let (code, file) = check(
            dir.path(),
            "mutant:no-tombstones",
            "shards-fail",
            60,
            Some(&format!("{k}/3")),
        );
        assert!(code == 0 || code == 1, "shard {k}: exit {code}");
        files.push(file);
    }
    let refs: Vec<&Path> = files.iter().map(|f| f.as_path()).collect();
    let (code, out) = merge(&refs);
    assert_eq!(code, 1, "{out}");
    let merged: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(merged["ok"], false);
    assert_eq!(merged["cases"], 60);
    assert_eq!(merged["cases_end"], 60);
    let expected = failing_cases(&whole);
    assert!(!expected.is_empty());
    let got: Vec<u64> = merged["failing_cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_u64().unwrap())
        .collect();
    assert_eq!(got, expected, "the same cases fail, whichever runner ran them");
    // The verdict job's annotations: one per shrunk counterexample of any shard, one for the rest.
    let mut args = vec!["merge", "--github"];
    args.extend(refs.iter().map(|f| f.to_str().unwrap()));
    let (code, text) = syncgate(&args);
    assert_eq!(code, 1);
    let annotations: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("::error title=syncgate%3A "))
        .collect();
    let shrunk = merged["failures"].as_array().unwrap().len();
    let rest = usize::from(!merged["other_failing_seeds"].as_array().unwrap().is_empty());
    assert_eq!(annotations.len(), shrunk + rest, "{text}");
    assert!(
        text.contains("\nFAIL\n::error"),
        "the annotations follow the text verdict: {text}"
    );
}

#[test]
fn three_shards_merged_are_one_run_of_a_passing_engine_events_and_all() {
    let dir = tempfile::tempdir().unwrap();
    // 210 cases: the required events are judged (200 or more), over the
    // shards together; no shard of 70 judges them alone.
    let (code, whole) = check(dir.path(), "reference", "shards-pass", 210, None);
    assert_eq!(code, 0);
    let whole = json(&whole);
    let mut files = Vec::new();
    for k in 0..3 {
        let (code, file) = check(dir.path(), "reference", "shards-pass", 210, Some(&format!("{k}/3")));
        assert_eq!(code, 0, "shard {k}");
        assert_eq!(json(&file)["missing_events"], Value::Array(Vec::new()));
        files.push(file);
    }
    let refs: Vec<&Path> = files.iter().map(|f| f.as_path()).collect();
    let (code, out) = merge(&refs);
    assert_eq!(code, 0, "{out}");
    let merged: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        (merged["cases"].as_u64(), merged["cases_end"].as_u64()),
        (Some(210), Some(210))
    );
    assert_eq!(merged["events"], whole["events"], "every case ran once, as in one run");
    assert_eq!(merged["missing_events"], Value::Array(Vec::new()));
    // Not all the shards: refused, exit 2, and the reason named.
    let (code, _) = merge(&refs[..2]);
    assert_eq!(code, 2);
    let out = Command::new(env!("CARGO_BIN_EXE_syncgate"))
        .args([
            "merge",
            refs[0].to_str().unwrap(),
            refs[0].to_str().unwrap(),
            refs[1].to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("shard 0/3 is given twice"));
    let (_, other_seed) = check(dir.path(), "reference", "shards-other", 10, Some("2/3"));
    let (code, _) = merge(&[refs[0], refs[1], other_seed.as_path()]);
    assert_eq!(code, 2, "another seed's shard");
}

#[test]
fn a_run_against_the_clock_says_which_cases_it_ran_and_they_replay() {
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path().to_str().unwrap();
    // One worker: well below the 200 cases that would judge required events.
    let (code, out) = syncgate(&[
        "check",
        "--duration",
        "1s",
        "--jobs",
        "1",
        "--seed",
        "clock",
        "--json",
        "--work-dir",
        work,
    ]);
    assert_eq!(code, 0, "{out}");
    let timed: Value = serde_json::from_str(&out).unwrap();
    let end = timed["cases_end"].as_u64().unwrap();
    assert!(end > 0);
    assert_eq!(timed["cases"].as_u64(), Some(end), "every case below the end ran");
    let (code, out) = syncgate(&[
        "check",
        "--cases",
        &end.to_string(),
        "--seed",
        "clock",
        "--json",
        "--work-dir",
        work,
    ]);
    assert_eq!(code, 0, "{out}");
    let again: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(again["events"], timed["events"], "the same cases, run again");
}

/// Shards that ran no case merge into a run that checked nothing: exit 2,
/// never a pass.
#[test]
fn shards_that_ran_nothing_merge_into_no_pass() {
    let dir = tempfile::tempdir().unwrap();
    let mut files = Vec::new();
    for k in 0..2 {
        let (code, file) = check(dir.path(), "reference", "shards-none", 0, Some(&format!("{k}/2")));
        assert_eq!(code, 2, "shard {k} ran nothing");
        files.push(file);
    }
    let refs: Vec<&Path> = files.iter().map(|f| f.as_path()).collect();
    let (code, out) = merge(&refs);
    assert_eq!(code, 2, "{out}");
    let merged: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        (merged["cases"].as_u64(), merged["ok"].as_bool()),
        (Some(0), Some(false))
    );
}
