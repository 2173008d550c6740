//! Peak memory of syncing 1M pending rows.
//!
//! `mem_1m [--rows N] [--out PATH]` runs, for each scenario, three child
//! processes of itself so that each peak (VmHWM) is the step's own:
//! `setup` captures N inserts on replica `a` (in 1000-row transactions, or in
//! one transaction), `sync a.db` runs `a.sync()` (push N, then pull them
//! back), `sync b.db` runs a fresh replica's first pull of the N rows.
//! Prints a markdown table and writes the results as JSON to PATH (default
//! `<target>/syncgate-bench-mem.json`, read by `bench_report`).
#![allow(
    clippy::disallowed_methods,
    reason = "a benchmark bin times its operations: Instant::now is its job"
)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use serde_json::json;
use syncgate_benches::{
    capture_inserts, config, create_remote, open_replica, peak_rss_kb, scratch_dir, target_dir, BenchClock, EPOCH_MS,
};

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("setup") => setup(Path::new(&args[1]), args[2].parse()?, args[3].parse()?),
        Some("sync") => sync(Path::new(&args[1]), &args[2]),
        _ => parent(&args),
    }
}

fn setup(dir: &Path, rows: u64, txn_rows: usize) -> Result<()> {
    let clock = BenchClock::new(EPOCH_MS);
    drop(create_remote(dir)?);
    drop(open_replica(dir, "b.db", clock.clone(), config())?);
    let mut a = open_replica(dir, "a.db", clock, config())?;
    capture_inserts(&mut a, rows, txn_rows, 0)?;
    anyhow::ensure!(a.pending()? == rows, "setup: pending mismatch");
    Ok(())
}

fn sync(dir: &Path, name: &str) -> Result<()> {
    let mut r = open_replica(dir, name, BenchClock::new(EPOCH_MS + 10_000), config())?;
    let before = peak_rss_kb().unwrap_or(0);
    let start = Instant::now();
    let report = r.sync()?;
    let secs = start.elapsed().as_secs_f64();
    let peak = peak_rss_kb().context("VmHWM not readable")?;
    println!(
        "{}",
        json!({
            "replica": name,
            "pushed": report.pushed,
            "pulled": report.pulled,
            "secs": secs,
            "peak_rss_kb_before": before,
            "peak_rss_kb": peak,
        })
    );
    Ok(())
}

fn child(args: &[&str]) -> Result<String> {
    let exe = std::env::current_exe()?;
    let out = Command::new(exe).args(args).output()?;
    if !out.status.success() {
        bail!(
            "child {args:?} failed: {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8(out.stdout)?)
}

fn parent(args: &[String]) -> Result<()> {
    let mut rows: u64 = 1_000_000;
    let mut out: PathBuf = target_dir().join("syncgate-bench-mem.json");
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--rows" => rows = it.next().context("--rows N")?.parse()?,
            "--out" => out = PathBuf::from(it.next().context("--out PATH")?),
            other => bail!("unknown argument {other:?}; usage: mem_1m [--rows N] [--out PATH]"),
        }
    }
    let mut results = Vec::new();
    println!("| scenario | step | rows | pushed | pulled | seconds | rows/s | peak RSS MB |");
    println!("|---|---|---:|---:|---:|---:|---:|---:|");
    for (scenario, txn_rows) in [
        ("1000-row transactions", 1_000_usize),
        ("one transaction", rows as usize),
    ] {
        let dir = scratch_dir()?;
        let d = dir.path().to_str().context("utf-8 path")?.to_string();
        let start = Instant::now();
        child(&["setup", &d, &rows.to_string(), &txn_rows.to_string()])?;
        eprintln!("setup ({scenario}): {:.1}s", start.elapsed().as_secs_f64());
        for (step, name) in [("a.sync() (push + pull back)", "a.db"), ("b first pull", "b.db")] {
            let line = child(&["sync", &d, name])?;
            let mut v: serde_json::Value = serde_json::from_str(line.trim())?;
            v["scenario"] = json!(scenario);
            v["step"] = json!(step);
            v["rows"] = json!(rows);
            let secs = v["secs"].as_f64().unwrap_or(f64::NAN);
            let moved = v["pushed"].as_u64().unwrap_or(0) + v["pulled"].as_u64().unwrap_or(0);
            println!(
                "| {scenario} | {step} | {rows} | {} | {} | {secs:.1} | {:.0} | {:.1} |",
                v["pushed"],
                v["pulled"],
                moved as f64 / secs,
                v["peak_rss_kb"].as_u64().unwrap_or(0) as f64 / 1024.0
            );
            results.push(v);
        }
    }
    if let Some(parent) = out.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(&out, serde_json::to_string_pretty(&results)?)?;
    eprintln!("wrote {}", out.display());
    Ok(())
}
