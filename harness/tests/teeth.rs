//! The gate as the test cargo-mutants runs on every mutant of the engine
//! (`.cargo/mutants.toml`; the score is in TEETH.md): a few hundred cases of
//! the default shape mixed with long ones, on the reference engine built
//! from the mutated tree, and the catalog's own mutants switched off. A
//! mutant is caught when this test fails.
//!
//! Not part of `cargo test --workspace` (`test = false` in Cargo.toml):
//! `cargo test -p syncgate --test teeth`.

use syncgate::gate::{check, default_base_dir, CheckOptions, LongCases};
use syncgate::places::RemoteTarget;
use syncgate::scenario::GenConfig;
use syncgate::subject::reference::ReferenceEngine;
use syncgate::subject::Subject;

/// Cases per mutant: enough to reach every required event (the run fails
/// when one never happened), few enough for hundreds of mutants.
const CASES: u64 = 300;
/// Cases with the remote on PostgreSQL, when `SYNCGATE_PG_URL` names a
/// server: the PostgreSQL remote's own source is mutated too.
const PG_CASES: u64 = 100;

#[test]
fn the_gate_passes_the_engine_under_test() {
    run(Box::new(ReferenceEngine::new()), CASES);
    match RemoteTarget::from_arg("postgres") {
        Ok(remote) => run(syncgate::on_remote(Box::new(ReferenceEngine::new()), &remote), PG_CASES),
        Err(why) => eprintln!("teeth: no PostgreSQL cases ({why})"),
    }
}

fn run(subject: Box<dyn Subject>, cases: u64) {
    let opts = CheckOptions {
        cases,
        seed: "teeth".into(),
        jobs: std::thread::available_parallelism().map_or(1, |n| n.get()),
        gen: GenConfig::default(),
        long: Some(LongCases {
            every: 5,
            gen: GenConfig {
                replicas: Some(4),
                steps: 120,
                ..GenConfig::default()
            },
        }),
        doublecheck: false,
        base_dir: default_base_dir(),
        failures_dir: None,
        shrink_runs_max: 0,
        stop_at_first: true,
        each_property: false,
        progress: false,
    };
    let summary = check(subject.as_ref(), &opts).expect("the gate runs");
    assert!(
        summary.ok(),
        "the gate failed the engine on {}: {:?} {:?} missing events {:?}",
        summary.remote,
        summary.failures.first().map(|f| (&f.seed, f.invariant, &f.detail)),
        summary.other_failing_seeds.first(),
        summary.missing_events
    );
}
