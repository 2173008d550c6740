//! Protocol version 2's declarations, each on an engine that keeps it and
//! on one that breaks it: the reference engine (in process) with a twist
//! (`support::Declaring`).

use syncgate::check::Invariant;
use syncgate::gate::{check, CheckOptions};
use syncgate::mutants::hunt_options;
use syncgate::scenario::GenConfig;

use crate::support::{Declaring, Twist};

fn options(cases: u64, seed: &str) -> CheckOptions {
    CheckOptions {
        cases,
        stop_at_first: false,
        ..hunt_options(cases, seed, 2)
    }
}

#[test]
fn a_write_through_engine_passes_and_one_that_drops_failed_pushes_is_caught() {
    let correct = check(
        &Declaring(Twist::WriteThrough {
            swallows_failures: false,
        }),
        &options(150, "wt"),
    )
    .expect("runs");
    assert!(
        correct.ok(),
        "{:?}",
        correct.failures.first().map(|f| (&f.invariant, &f.detail, &f.trace))
    );
    assert!(
        correct.notes.iter().any(|n| n.contains("push: on_commit")),
        "{:?}",
        correct.notes
    );
    let pushed = correct
        .events
        .iter()
        .find(|(e, _)| e.name() == "pushed-on-commit")
        .map(|(_, n)| *n);
    let kept = correct
        .events
        .iter()
        .find(|(e, _)| e.name() == "kept-pending-on-commit")
        .map(|(_, n)| *n);
    assert!(
        pushed.unwrap_or(0) > 100 && kept.unwrap_or(0) > 5,
        "pushed {pushed:?}, kept {kept:?}"
    );

    let buggy = check(
        &Declaring(Twist::WriteThrough {
            swallows_failures: true,
        }),
        &options(150, "wt"),
    )
    .expect("runs");
    let failure = buggy
        .failures
        .first()
        .expect("a push failure dropped inside the commit is caught");
    assert_eq!(failure.invariant, Invariant::TruthfulStatus, "{}", failure.detail);
    assert!(
        failure
            .detail
            .contains("reports 0 pending, so it must be on the remote now"),
        "{}",
        failure.detail
    );
    assert!(failure.shrunk_steps <= 6, "{:?}", failure.trace);
}

#[test]
fn a_rollback_that_leaks_into_the_sync_is_an_aborted_read() {
    let correct = check(
        &syncgate::subject::ContractOnly(Box::new(syncgate::subject::reference::ReferenceEngine::with(
            syncgate_reference_adapter::Options {
                aborts: true,
                ..Default::default()
            },
        ))),
        &options(150, "ab"),
    )
    .expect("runs");
    assert!(
        correct.ok(),
        "{:?}",
        correct.failures.first().map(|f| (&f.invariant, &f.detail))
    );
    let aborts = correct
        .events
        .iter()
        .find(|(e, _)| e.name() == "application-abort")
        .map(|(_, n)| *n);
    assert!(aborts.unwrap_or(0) > 50, "{aborts:?}");

    let leaky = check(&Declaring(Twist::LeakyAborts), &options(100, "ab")).expect("runs");
    let failure = leaky.failures.first().expect("a leaked rollback is caught");
    assert!(
        matches!(failure.invariant, Invariant::NoAbortedRead | Invariant::TruthfulStatus),
        "{:?}: {}",
        failure.invariant,
        failure.detail
    );
    assert!(
        failure.detail.contains("G1a") || failure.detail.contains("rolled back"),
        "{}",
        failure.detail
    );
}

#[test]
fn a_sync_only_single_instance_engine_gets_sync_alone_and_one_replica() {
    let opts = CheckOptions {
        gen: GenConfig {
            replicas: Some(3),
            ..GenConfig::default()
        },
        ..options(60, "one")
    };
    let summary = check(&Declaring(Twist::SyncOnly { replicas: 1 }), &opts).expect("runs");
    assert!(
        summary.ok(),
        "{:?}",
        summary.failures.first().map(|f| (&f.invariant, &f.detail))
    );
    assert!(
        summary.notes.iter().any(|n| n.contains("replicas_max 1")),
        "{:?}",
        summary.notes
    );
    assert!(
        summary.notes.iter().any(|n| n.contains("push_pull: together")),
        "{:?}",
        summary.notes
    );
}

/// `transactions: atomic` on the reference engine, which keeps it (S2, P5);
/// and on the split-transaction mutant (each entry pushed in a remote
/// transaction of its own), which the contract alone now catches: another
/// place shows part of a transaction. Without the declaration the contract
/// alone missed it (README's mutant table).
#[test]
fn atomic_transactions_hold_on_the_reference_and_a_split_push_is_a_fractured_read() {
    use syncgate::subject::reference::ReferenceEngine;
    use syncgate::subject::ContractOnly;
    use syncgate_reference_adapter::Options;

    let keeps = ReferenceEngine::with(Options {
        atomic: true,
        ..Options::default()
    });
    let summary = check(&keeps, &options(200, "atomic")).expect("runs");
    assert!(summary.ok(), "{:?}", summary.failures.first().map(|f| f.detail.clone()));
    assert!(summary.checked.contains(&Invariant::AtomicVisibility));
    let split = ContractOnly(Box::new(ReferenceEngine::with(Options {
        atomic: true,
        mutant: Some(syncgate_engine::Mutant::SplitTransaction),
        ..Options::default()
    })));
    let opts = CheckOptions {
        each_property: true,
        shrink_runs_max: 200,
        ..options(300, "atomic-split")
    };
    let summary = check(&split, &opts).expect("runs");
    let found: Vec<Invariant> = summary.failures.iter().map(|f| f.invariant).collect();
    assert!(found.contains(&Invariant::AtomicVisibility), "{found:?}");
    let fractured = summary
        .failures
        .iter()
        .find(|f| f.invariant == Invariant::AtomicVisibility)
        .expect("found");
    assert!(fractured.detail.starts_with("fractured read: "), "{}", fractured.detail);
    // Engines that do not declare it are not held to it.
    let plain = check(&ReferenceEngine::new(), &options(20, "atomic")).expect("runs");
    assert!(!plain.checked.contains(&Invariant::AtomicVisibility));
}

/// `outside_writes: delegated`: the writes around the API go to the engine
/// as `exec_sql`, the statement the harness would run. An engine that runs
/// them (the reference's triggers capture them) passes; one that answers
/// `exec_sql_ok` without running them is caught.
#[test]
fn delegated_outside_writes_are_run_by_the_engine_and_checked() {
    let runs = check(&Declaring(Twist::Delegated { runs: true }), &options(120, "delegated")).expect("runs");
    assert!(runs.ok(), "{:?}", runs.failures.first().map(|f| f.detail.clone()));
    let outside = runs
        .events
        .get(&syncgate::events::Event::OutsideWrite)
        .copied()
        .unwrap_or(0);
    assert!(outside > 20, "only {outside} outside writes were made");
    assert!(
        runs.notes.iter().any(|n| n.contains("outside_writes: delegated")),
        "{:?}",
        runs.notes
    );
    let drops = check(&Declaring(Twist::Delegated { runs: false }), &options(120, "delegated")).expect("runs");
    assert!(!drops.ok(), "an engine that does not run the writes passed");
    let first = drops.failures.first().expect("a failure");
    assert!(
        first.trace.iter().any(|l| l.contains("outside the engine, run by it")),
        "{:?}",
        first.trace
    );
}

/// `value_domain: {"integers": "safe"}`: an engine that holds only
/// JavaScript's safe integers is sent none beyond ±(2^53 - 1), and passes;
/// the same engine undeclared is sent 64-bit edges, and fails on them.
#[test]
fn an_engine_of_safe_integers_is_sent_no_other() {
    let declared = check(
        &Declaring(Twist::SafeIntegers { declared: true }),
        &options(150, "safe-ints"),
    )
    .expect("runs");
    assert!(
        declared.ok(),
        "{:?}",
        declared.failures.first().map(|f| f.detail.clone())
    );
    assert!(
        declared.notes.iter().any(|n| n.contains("value_domain")),
        "{:?}",
        declared.notes
    );
    let undeclared = check(
        &Declaring(Twist::SafeIntegers { declared: false }),
        &options(150, "safe-ints"),
    )
    .expect("runs");
    let first = undeclared.failures.first().expect("the 64-bit edges reach it");
    assert!(first.detail.contains("is not a safe integer"), "{}", first.detail);
}
