//! Something inside a sync (PROTOCOL.md, "Interleavings inside a step"):
//! another replica's sync, held by the wire tap at a drawn round trip
//! against a real PostgreSQL server, or by the in-process reference's seam
//! between two remote transactions on a SQLite remote; a lock that ends
//! inside a sync.
//!
//! The PostgreSQL tests need `SYNCGATE_PG_URL`; without it each says on the
//! terminal that it was skipped.

use syncgate::check::Invariant;
use syncgate::events::Event;
use syncgate::gate::{check, default_base_dir};
use syncgate::mutants::hunt_options;
use syncgate::places::RemoteTarget;
use syncgate::run::run_case;
use syncgate::scenario::{IdChoice, Interleave, LockKind, Scenario, Step, Swarm, SyncKind, Val};
use syncgate::subject::reference::ReferenceEngine;
use syncgate::subject::OnRemote;
use syncgate_engine::Mutant;

use crate::support::pg_url;

fn on_pg(test: &str, mutant: Option<Mutant>) -> Option<OnRemote> {
    let url = pg_url(test)?;
    Some(OnRemote {
        subject: Box::new(match mutant {
            Some(m) => ReferenceEngine::mutant(m),
            None => ReferenceEngine::new(),
        }),
        remote: RemoteTarget::Postgres { url },
    })
}

fn host(replica: usize, name: &str) -> Step {
    Step::Insert {
        replica,
        table: 1,
        id: IdChoice::Mint,
        values: vec![Val::Text(name.into()), Val::Text("10.0.0.1".into())],
    }
}

fn sync(replica: usize, kind: SyncKind, interleave: Option<Interleave>) -> Step {
    Step::Sync {
        replica,
        kind,
        sessions_cut: None,
        interleave,
    }
}

fn scenario(steps: Vec<Step>) -> Scenario {
    Scenario {
        schema: None,
        replicas: 2,
        swarm: Swarm { weights: vec![1; 10] },
        limits: Default::default(),
        step_ms: None,
        steps,
    }
}

/// Runs `scenario`, which must pass; returns the result and its trace.
fn passing(engine: &dyn syncgate::subject::Subject, scenario: &Scenario) -> (syncgate::run::CaseResult, String) {
    let result = run_case(engine, scenario, &default_base_dir());
    let trace = result.trace.join("\n");
    assert!(
        result.failure.is_none() && result.fault.is_none(),
        "{:?} {:?}\n{trace}",
        result.failure,
        result.fault
    );
    (result, trace)
}

/// r1 pushes a row, then changes it; r0 pulls, and r1's second push runs
/// inside r0's pull after its first round trip (the snapshot's start).
fn push_inside_a_pull() -> Scenario {
    scenario(vec![
        host(1, "web"),
        sync(1, SyncKind::Push, None),
        Step::Update {
            replica: 1,
            table: 1,
            row: 0,
            column: 1,
            value: Val::Text("10.0.0.2".into()),
        },
        sync(
            0,
            SyncKind::Pull,
            Some(Interleave {
                after: 1,
                replica: 1,
                kind: SyncKind::Push,
            }),
        ),
    ])
}

#[test]
fn a_push_inside_a_pull_runs_at_the_held_round_trip_and_replays_the_same() {
    let Some(engine) = on_pg(
        "a_push_inside_a_pull_runs_at_the_held_round_trip_and_replays_the_same",
        None,
    ) else {
        return;
    };
    let (first, trace) = passing(&engine, &push_inside_a_pull());
    assert!(
        trace.contains("[after round trip 1, inside it: r1 push -> pushed 1"),
        "{trace}"
    );
    assert_eq!(first.events.get(&Event::StepInterleaved), Some(&1), "{trace}");
    assert_eq!(first.events.get(&Event::PushBetweenPullPages), Some(&1), "{trace}");
    let again = run_case(&engine, &push_inside_a_pull(), &default_base_dir());
    assert_eq!(again.trace, first.trace, "same case, same interleaving, same trace");
}

#[test]
fn a_pull_that_reads_its_pages_outside_one_snapshot_is_caught() {
    let test = "a_pull_that_reads_its_pages_outside_one_snapshot_is_caught";
    let Some(engine) = on_pg(test, Some(Mutant::PullPagesReadCommitted)) else {
        return;
    };
    let result = run_case(&engine, &push_inside_a_pull(), &default_base_dir());
    let (step, violation) = result
        .failure
        .expect("the pull missed the row r1's push moved past its head");
    assert_eq!(
        (step, violation.invariant),
        (4, Invariant::OutcomeAgreement),
        "{violation:?}"
    );
    assert!(
        violation
            .detail
            .contains("no order of r1's push and r0's pull explains"),
        "{}",
        violation.detail
    );
    // And the gate finds it on its own, within the catalog's budget.
    let Some(engine) = on_pg(test, Some(Mutant::PullPagesReadCommitted)) else {
        return;
    };
    let summary = check(&engine, &hunt_options(600, "pg-interleave", 2)).expect("check runs");
    let failure = summary.failures.first().expect("caught within 600 cases");
    assert!(failure.shrunk_steps <= 6, "shrunk to {} steps", failure.shrunk_steps);
}

#[test]
fn nothing_runs_inside_a_sync_whose_session_holds_the_writer_lock() {
    let Some(engine) = on_pg("nothing_runs_inside_a_sync_whose_session_holds_the_writer_lock", None) else {
        return;
    };
    // r0's push: its first round trip begins the write transaction and
    // takes the writer lock, which r1's push would wait on.
    let steps = vec![
        host(0, "web"),
        host(1, "db"),
        sync(
            0,
            SyncKind::Push,
            Some(Interleave {
                after: 1,
                replica: 1,
                kind: SyncKind::Push,
            }),
        ),
        sync(0, SyncKind::Full, None),
        sync(1, SyncKind::Full, None),
    ];
    let (result, trace) = passing(&engine, &scenario(steps));
    assert!(
        trace.contains("nothing ran inside: r0's session held advisory ExclusiveLock"),
        "{trace}"
    );
    assert_eq!(result.events.get(&Event::StepInterleaved), None, "{trace}");
}

fn lock_ending_when_busy(replica: usize, limits: syncgate_protocol::Limits) -> Scenario {
    Scenario {
        limits,
        ..scenario(vec![
            host(replica, "web"),
            Step::LockRemote {
                lock: LockKind::Shared,
                hold: 3,
                ends_when_busy: true,
            },
            sync(replica, SyncKind::Push, None),
            sync(replica, SyncKind::Full, None),
        ])
    }
}

#[test]
fn a_lock_that_ends_inside_a_sync_lets_its_retry_succeed() {
    let test = "a_lock_that_ends_inside_a_sync_lets_its_retry_succeed";
    let Some(engine) = on_pg(test, None) else {
        return;
    };
    let result = run_case(
        &engine,
        &lock_ending_when_busy(0, Default::default()),
        &default_base_dir(),
    );
    let trace = result.trace.join("\n");
    assert!(
        result.failure.is_none() && result.fault.is_none(),
        "{:?}\n{trace}",
        result.failure
    );
    assert!(
        trace.contains("r0 push [the remote lock ended once the sync met it busy] -> pushed 1 "),
        "{trace}"
    );
    assert_eq!(
        result.events.get(&Event::BusyThenSucceededWithinStep),
        Some(&1),
        "{trace}"
    );
    // The planted bug counts the busy batch, then its retry again.
    let Some(engine) = on_pg(test, Some(Mutant::BusyRetryCountsTwice)) else {
        return;
    };
    let result = run_case(
        &engine,
        &lock_ending_when_busy(0, Default::default()),
        &default_base_dir(),
    );
    let (step, violation) = result.failure.expect("the double count is caught");
    assert_eq!(
        (step, violation.invariant),
        (3, Invariant::OutcomeAgreement),
        "{violation:?}"
    );
    assert!(
        violation.detail.contains("engine says pushed 2"),
        "{}",
        violation.detail
    );
}

/// Regression (found at once by the first hunt): without retries the sync
/// that met the lock fails busy, though the lock ended inside it; the model
/// had ended it before the sync.
#[test]
fn without_retries_a_lock_that_ends_inside_a_sync_leaves_that_sync_busy() {
    let test = "without_retries_a_lock_that_ends_inside_a_sync_leaves_that_sync_busy";
    let Some(engine) = on_pg(test, None) else {
        return;
    };
    let limits = syncgate_protocol::Limits {
        busy_retries_max: Some(0),
        ..Default::default()
    };
    let result = run_case(&engine, &lock_ending_when_busy(0, limits), &default_base_dir());
    let trace = result.trace.join("\n");
    assert!(
        result.failure.is_none() && result.fault.is_none(),
        "{:?}\n{trace}",
        result.failure
    );
    assert!(
        trace.contains("r0 push [the remote lock ended once the sync met it busy] -> failed Busy"),
        "{trace}"
    );
    assert!(trace.contains("r0 sync -> pushed 1 "), "{trace}");
}

/// On a SQLite remote the in-process reference is held at its backoff wait,
/// after its busy attempt rolled back: the harness ends its lock there, the
/// retry succeeds and counts once; the planted double count is caught.
/// Without retries there is no backoff to hold: the lock stays.
#[test]
fn on_sqlite_a_lock_ends_at_the_backoff_and_the_retry_succeeds() {
    let engine = ReferenceEngine::new();
    let (result, trace) = passing(&engine, &lock_ending_when_busy(0, Default::default()));
    assert!(
        trace.contains("remote read lock for 3 steps, or until a sync meets it busy"),
        "{trace}"
    );
    assert!(
        trace.contains("r0 push [the remote lock ended once the sync met it busy] -> pushed 1 "),
        "{trace}"
    );
    assert_eq!(
        result.events.get(&Event::BusyThenSucceededWithinStep),
        Some(&1),
        "{trace}"
    );
    let result = run_case(
        &ReferenceEngine::mutant(Mutant::BusyRetryCountsTwice),
        &lock_ending_when_busy(0, Default::default()),
        &default_base_dir(),
    );
    let (step, violation) = result.failure.expect("the double count is caught");
    assert_eq!(
        (step, violation.invariant),
        (3, Invariant::OutcomeAgreement),
        "{violation:?}"
    );
    assert!(
        violation.detail.contains("engine says pushed 2"),
        "{}",
        violation.detail
    );
    let limits = syncgate_protocol::Limits {
        busy_retries_max: Some(0),
        ..Default::default()
    };
    let (_, trace) = passing(&engine, &lock_ending_when_busy(0, limits));
    assert!(
        trace.contains("r0 push [the sync failed busy with no retry to hold: the remote lock stays] -> failed Busy"),
        "{trace}"
    );
}

/// r0 commits two local transactions and pushes them in two batches (one
/// per remote transaction); r1 pulls between the two, on a SQLite remote.
fn pull_between_two_push_batches() -> Scenario {
    Scenario {
        limits: syncgate_protocol::Limits {
            push_batch_max: Some(1),
            ..Default::default()
        },
        ..scenario(vec![
            host(0, "web"),
            host(0, "db"),
            sync(
                0,
                SyncKind::Push,
                Some(Interleave {
                    after: 1,
                    replica: 1,
                    kind: SyncKind::Pull,
                }),
            ),
        ])
    }
}

#[test]
fn on_sqlite_a_pull_between_two_push_batches_sees_the_first_only() {
    let engine = ReferenceEngine::new();
    let (result, trace) = passing(&engine, &pull_between_two_push_batches());
    assert!(
        trace
            .contains("[after remote transaction 1, inside it: r1 pull -> pushed 0 pulled 1 conflicts 0] -> pushed 2 "),
        "{trace}"
    );
    assert_eq!(result.events.get(&Event::StepInterleaved), Some(&1), "{trace}");
    let again = run_case(&engine, &pull_between_two_push_batches(), &default_base_dir());
    assert_eq!(again.trace, result.trace, "same case, same interleaving, same trace");
}
