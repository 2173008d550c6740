//! Engines behind the protocol: the reference adapter passes, a correct
//! engine with other incidental choices passes the contract, and bad
//! engines get clear answers (never a hang or a false pass).

use crate::support::{Misreport, Misreporting};
use syncgate::check::Invariant;
use syncgate::events::Event;
use syncgate::gate::{check, default_base_dir, probe, CheckOptions};
use syncgate::places::RemoteTarget;
use syncgate::run::run_case;
use syncgate::scenario::{GenConfig, IdChoice, Scenario, Step, Swarm, SyncKind, Val};
use syncgate::subject::process::ProcessEngine;
use syncgate::subject::reference::ReferenceEngine;
use syncgate::{subject_by_name, OracleChoice};

fn options(cases: u64, seed: &str) -> CheckOptions {
    CheckOptions {
        cases,
        seed: seed.into(),
        jobs: 2,
        gen: GenConfig::default(),
        long: None,
        random_schemas_every: 0,
        doublecheck: false,
        base_dir: default_base_dir(),
        failures_dir: None,
        shrink_runs_max: 200,
        stop_at_first: false,
        each_property: false,
        progress: false,
        shard: Default::default(),
        duration: None,
    }
}

fn adapter() -> String {
    format!("exec:{}", env!("CARGO_BIN_EXE_syncgate-reference-adapter"))
}

#[test]
fn the_reference_engine_passes_over_the_protocol() {
    let subject = subject_by_name(&adapter(), OracleChoice::Auto, None, &RemoteTarget::Sqlite).expect("engine");
    let summary = check(subject.as_ref(), &options(24, "protocol")).expect("check runs");
    assert!(summary.ok(), "{:?}", summary.failures.first());
    assert!(summary.oracles.contains("profile"), "{}", summary.oracles);
}

#[test]
fn a_correct_engine_with_other_incidental_choices_passes_the_contract() {
    // Other ids than the spec's (another replica registered first) and no
    // conflict counts: the lockstep profile would fail at the first insert;
    // such an engine declares no profile, and the contract passes it.
    for name in ["reference+shifted-ids", "reference+no-conflict-counts"] {
        let subject = subject_by_name(name, OracleChoice::Auto, None, &RemoteTarget::Sqlite).expect("engine");
        let summary = check(subject.as_ref(), &options(150, "incidental")).expect("check runs");
        assert!(summary.ok(), "{name}: {:?}", summary.failures.first());
        assert!(summary.oracles.starts_with("contract ("), "{}", summary.oracles);
    }
    let over_protocol = format!("{} --shifted-ids", adapter());
    let subject = subject_by_name(&over_protocol, OracleChoice::Auto, None, &RemoteTarget::Sqlite).expect("engine");
    let summary = check(subject.as_ref(), &options(16, "incidental")).expect("check runs");
    assert!(summary.ok(), "{:?}", summary.failures.first());
}

fn bad(mode: &str) -> ProcessEngine {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/engines/bad_engine.py");
    ProcessEngine::new(&format!("python3 {script} {mode}"), 1_500)
}

fn one_insert() -> Scenario {
    Scenario {
        schema: None,
        replicas: 1,
        swarm: Swarm { weights: vec![1; 10] },
        limits: Default::default(),
        step_ms: None,
        steps: vec![
            Step::Insert {
                replica: 0,
                table: 1,
                id: IdChoice::Mint,
                values: vec![Val::Text("web".into()), Val::Text("10.0.0.1".into())],
            },
            Step::Sync {
                replica: 0,
                kind: SyncKind::Full,
                sessions_cut: None,
                interleave: None,
            },
        ],
    }
}

fn failure_of(mode: &str) -> String {
    let result = run_case(&bad(mode), &one_insert(), &default_base_dir());
    let (_, v) = result.failure.expect("a bad engine fails the case");
    format!("{}: {}", v.invariant, v.detail)
}

#[test]
fn a_line_that_is_not_a_reply_fails_the_case_with_the_engine_log() {
    let failure = failure_of("garbage");
    assert!(failure.starts_with("ProtocolViolated"), "{failure}");
    assert!(failure.contains("not a protocol reply"), "{failure}");
    assert!(
        failure.contains("bad engine: about to garbage"),
        "stderr tail missing: {failure}"
    );
}

#[test]
fn an_engine_that_does_not_answer_is_killed_after_the_timeout() {
    let failure = failure_of("hang");
    assert!(failure.starts_with("ProtocolViolated"), "{failure}");
    assert!(failure.contains("no answer within 1500 ms"), "{failure}");
}

#[test]
fn an_engine_that_exits_outside_a_crash_point_fails_the_case() {
    let failure = failure_of("dies");
    assert!(failure.starts_with("ProtocolViolated"), "{failure}");
    assert!(failure.contains("outside a crash point"), "{failure}");
}

#[test]
fn setup_problems_are_setup_errors() {
    let base = default_base_dir();
    let err = probe(&bad("old-protocol"), &base, &syncgate_model::test_schema())
        .expect_err("another version")
        .to_string();
    assert!(err.contains("protocol version 0"), "{err}");
    let missing = ProcessEngine::new("/nonexistent/engine --flag", 1_500);
    let err = probe(&missing, &base, &syncgate_model::test_schema())
        .expect_err("no such command")
        .to_string();
    assert!(err.contains("handshake"), "{err}");
    assert!(err.contains("not found") || err.contains("No such file"), "{err}");
}

#[test]
fn a_busy_sync_that_did_not_retry_as_the_profile_says_is_caught() {
    // The unmodified reference reports its tries, and they agree (L1).
    let summary = check(&ReferenceEngine::new(), &options(60, "busy-tries")).expect("check runs");
    assert!(summary.ok(), "{:?}", summary.failures.first());
    assert!(
        summary.events.get(&Event::Busy).is_some_and(|&n| n > 0),
        "{:?}",
        summary.events
    );
    // One that claims it gave up at once is caught, naming the rule.
    let summary = check(
        &Misreporting(Misreport {
            one_busy_try: true,
            ..Misreport::default()
        }),
        &options(60, "busy-tries"),
    )
    .expect("check runs");
    let failure = summary.failures.first().expect("caught");
    assert_eq!(failure.invariant, Invariant::OutcomeAgreement, "{}", failure.detail);
    assert!(failure.detail.contains("rule L1"), "{}", failure.detail);
}

#[test]
fn the_version_names_the_protocol_versions_spoken() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_syncgate"))
        .arg("--version")
        .output()
        .expect("syncgate runs");
    let text = String::from_utf8_lossy(&out.stdout);
    let versions: Vec<String> = syncgate_protocol::VERSIONS.iter().map(u32::to_string).collect();
    assert!(
        text.contains(&format!("engine protocol versions {}", versions.join(", "))),
        "{text}"
    );
}
