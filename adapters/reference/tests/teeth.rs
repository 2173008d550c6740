//! The gate as the test cargo-mutants runs on every mutant of the engine
//! (`.cargo/mutants.toml`; the score is in TEETH.md). A mutant is caught when
//! this test fails.
//!
//! Built from the mutated tree, this executable is two things: run with
//! `SYNCGATE_TEETH_SERVE` set, it is the reference adapter serving the
//! mutated engine over the protocol (PROTOCOL.md); run plainly, it runs the
//! gate binary that `SYNCGATE_TEETH_GATE` names, built once from the
//! unmutated tree, against itself as an `exec:` engine. So a mutant costs a
//! rebuild of the engine and this adapter only, never of the harness, and
//! the checker can never be mutated along with what it checks.
//!
//! The gate runs 300 cases of the default shape (every 5th one 4 replicas ×
//! 120 steps, so the required events all happen), stops at the first
//! failing case without shrinking it, then 100 cases with the remote on
//! PostgreSQL when `SYNCGATE_PG_URL` is set (the PostgreSQL remote's own
//! source is mutated too). `SYNCGATE_TEETH_REMOTES=postgres` runs the
//! PostgreSQL cases alone, for the PostgreSQL remote's own files. Then it
//! replays every regression trace (harness/tests/regressions) on SQLite.
//!
//! ```sh
//! cargo build --release -p syncgate
//! SYNCGATE_TEETH_GATE=$PWD/target/release/syncgate cargo test -p syncgate-reference-adapter --test teeth
//! ```

use std::path::PathBuf;
use std::process::{Command, ExitCode};

/// Set in the gate's environment, so the processes it starts serve.
const SERVE: &str = "SYNCGATE_TEETH_SERVE";
/// The gate binary, built from the unmutated tree.
const GATE: &str = "SYNCGATE_TEETH_GATE";
/// Cases per mutant on a SQLite remote.
const CASES: &str = "300";
/// Cases per mutant on PostgreSQL (when SYNCGATE_PG_URL is set).
const PG_CASES: &str = "100";
/// Which remotes to run, comma-separated (`sqlite`, `postgres`); by default
/// both when SYNCGATE_PG_URL is set, else sqlite. A mutant of the PostgreSQL
/// remote's own files cannot change a SQLite case, so their run names
/// `postgres` alone and saves the 300 SQLite cases per mutant.
const REMOTES: &str = "SYNCGATE_TEETH_REMOTES";

/// The runs to make: each remote with its cases.
fn remotes(asked: Option<&str>, pg_url_set: bool) -> Result<Vec<(&'static str, &'static str)>, String> {
    let Some(asked) = asked else {
        if !pg_url_set {
            eprintln!("teeth: SYNCGATE_PG_URL is not set: no PostgreSQL cases");
            return Ok(vec![("sqlite", CASES)]);
        }
        return Ok(vec![("sqlite", CASES), ("postgres", PG_CASES)]);
    };
    let mut runs = Vec::new();
    for name in asked.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        let run = match name {
            "sqlite" => ("sqlite", CASES),
            "postgres" if pg_url_set => ("postgres", PG_CASES),
            "postgres" => return Err(format!("{REMOTES} names postgres but SYNCGATE_PG_URL is not set")),
            other => {
                return Err(format!(
                    "{REMOTES}: unknown remote {other:?} (expected sqlite, postgres)"
                ))
            }
        };
        if !runs.contains(&run) {
            runs.push(run);
        }
    }
    if runs.is_empty() {
        return Err(format!(
            "{REMOTES} is set but names no remote (expected sqlite, postgres)"
        ));
    }
    Ok(runs)
}

fn main() -> ExitCode {
    if std::env::var_os(SERVE).is_some() {
        return syncgate_reference_adapter::serve::main_with_args(std::env::args().skip(1));
    }
    let Some(gate) = std::env::var_os(GATE).map(PathBuf::from) else {
        eprintln!(
            "teeth: {GATE} is not set: build the gate from the unmutated tree \
             (cargo build --release -p syncgate) and set {GATE} to target/release/syncgate"
        );
        return ExitCode::from(2);
    };
    if !gate.is_file() {
        eprintln!(
            "teeth: {GATE}={} is not a file: build it with cargo build --release -p syncgate",
            gate.display()
        );
        return ExitCode::from(2);
    }
    let me = match std::env::current_exe() {
        Ok(me) => me,
        Err(e) => {
            eprintln!("teeth: cannot name this executable: {e}");
            return ExitCode::from(2);
        }
    };
    let runs = match remotes(
        std::env::var(REMOTES).ok().as_deref(),
        std::env::var_os("SYNCGATE_PG_URL").is_some(),
    ) {
        Ok(runs) => runs,
        Err(msg) => {
            eprintln!("teeth: {msg}");
            return ExitCode::from(2);
        }
    };
    for (remote, cases) in runs {
        let failures = std::env::temp_dir().join(format!("syncgate-teeth-{}", std::process::id()));
        let status = Command::new(&gate)
            .env(SERVE, "1")
            .args(["check", "--cases", cases, "--seed", "teeth", "--long-every", "5"])
            .args(["--shrink-runs-max", "0", "--fail-fast", "--remote", remote])
            .arg("--engine")
            .arg(format!("exec:{}", me.display()))
            .arg("--failures-dir")
            .arg(&failures)
            .status();
        let _ = std::fs::remove_dir_all(&failures);
        match status {
            Ok(s) if s.success() => {}
            Ok(s) => {
                eprintln!("teeth: the gate failed the engine on {remote} ({s})");
                return ExitCode::from(1);
            }
            Err(e) => {
                eprintln!("teeth: cannot run {}: {e}", gate.display());
                return ExitCode::from(2);
            }
        }
    }
    replay_regressions(&gate, &me)
}

/// Every failure the gate once found on the reference engine, replayed
/// from its trace file (harness/tests/regressions): some happen only on
/// schemas the default shape never draws (a natural key on a table with a
/// parent), so the code that fixed them is reached here.
fn replay_regressions(gate: &std::path::Path, me: &std::path::Path) -> ExitCode {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../harness/tests/regressions");
    let mut traces: Vec<PathBuf> = match std::fs::read_dir(&dir) {
        Ok(entries) => entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect(),
        Err(e) => {
            eprintln!("teeth: cannot list {}: {e}", dir.display());
            return ExitCode::from(2);
        }
    };
    traces.sort();
    for trace in &traces {
        let status = Command::new(gate)
            .env(SERVE, "1")
            .args(["replay", "--engine"])
            .arg(format!("exec:{}", me.display()))
            .arg("--trace")
            .arg(trace)
            .stdout(std::process::Stdio::null())
            .status();
        match status {
            Ok(s) if s.success() => {}
            Ok(s) => {
                eprintln!("teeth: the regression {} fails again ({s})", trace.display());
                return ExitCode::from(1);
            }
            Err(e) => {
                eprintln!("teeth: cannot run {}: {e}", gate.display());
                return ExitCode::from(2);
            }
        }
    }
    ExitCode::SUCCESS
}
