//! insta snapshots of what a person reads: each mutant's shrunk
//! counterexample at a fixed seed, and named regression scenarios that
//! replay each failure class of the project against the reference engine.
//! A change to the report format or to the engine's behaviour shows up as a
//! snapshot diff in review; in CI an unreviewed change fails the test.

use syncgate::gate::{check, default_base_dir};
use syncgate::mutants::{hunt_options, INSIDE_A_STEP_BUDGET_FACTOR};
use syncgate::run::run_case;
use syncgate::scenario::{CrashAt, IdChoice, LockKind, Scenario, Step, Swarm, SyncKind, Val, WhileDown};
use syncgate::subject::reference::ReferenceEngine;
use syncgate::subject::ContractOnly;
use syncgate_engine::Mutant;

fn snapshot(name: &str, text: &str) {
    insta::with_settings!({ snapshot_path => "../../../snapshots", prepend_module_to_snapshot => false }, {
        insta::assert_snapshot!(name, text);
    });
}

#[test]
fn every_mutant_has_a_small_counterexample() {
    for mutant in Mutant::ALL.into_iter().filter(|m| !m.postgres_only()) {
        let budget = if mutant.inside_a_step() {
            200 * INSIDE_A_STEP_BUDGET_FACTOR
        } else {
            200
        };
        let opts = hunt_options(budget, "snapshot", 2);
        let summary = check(&ReferenceEngine::mutant(mutant), &opts).expect("check runs");
        let failure = summary
            .failures
            .first()
            .unwrap_or_else(|| panic!("mutant {} was not caught in {budget} cases", mutant.name()));
        let mut report = format!(
            "mutant {} caught by {} at step {} (seed {}, case {} of the run)\n{}\n{}\n",
            mutant.name(),
            failure.invariant,
            failure.step,
            failure.seed,
            failure.case + 1,
            failure.detail,
            failure.trace.join("\n")
        );
        let alone = check(&ContractOnly(Box::new(ReferenceEngine::mutant(mutant))), &opts).expect("check runs");
        match alone.failures.first() {
            Some(f) => report.push_str(&format!(
                "\nby the contract alone: {} at step {} (case {})\n{}\n{}\n",
                f.invariant,
                f.step,
                f.case + 1,
                f.detail,
                f.trace.join("\n")
            )),
            None => report.push_str(&format!("\nthe contract alone does not catch it in {budget} cases\n")),
        }
        snapshot(&format!("mutant-{}", mutant.name()), &report);
    }
}

fn scenario(replicas: usize, steps: Vec<Step>) -> Scenario {
    Scenario {
        schema: None,
        replicas,
        swarm: Swarm { weights: vec![1; 10] },
        limits: Default::default(),
        step_ms: None,
        steps,
    }
}

fn host(replica: usize) -> Step {
    Step::Insert {
        replica,
        table: 1,
        id: IdChoice::Mint,
        values: vec![Val::Text("web".into()), Val::Text("10.0.0.1".into())],
    }
}

/// A push of `replica` that crashes before the remote commits.
fn push_crashing_before_commit(replica: usize) -> Step {
    Step::Crash {
        replica,
        kind: SyncKind::Push,
        at: CrashAt::BeforeRemoteCommit,
    }
}

/// A plain restart of `replica` (nothing happened to its cache while down).
fn restart(replica: usize) -> Step {
    restart_with(replica, &[])
}

/// A restart of `replica` after what befell it while down.
fn restart_with(replica: usize, while_down: &[WhileDown]) -> Step {
    Step::Restart {
        replica,
        while_down: while_down.to_vec(),
    }
}

fn domain(replica: usize, name: &str) -> Step {
    Step::Insert {
        replica,
        table: 0,
        id: IdChoice::Mint,
        values: vec![
            Val::Text(name.into()),
            Val::Text(format!("registrar{replica}")),
            Val::Int(1),
        ],
    }
}

fn sync(replica: usize) -> Step {
    Step::Sync {
        replica,
        kind: SyncKind::Full,
        sessions_cut: None,
        interleave: None,
    }
}

/// Runs a named regression scenario on the reference engine; it must pass,
/// and its trace and final state are snapshotted.
fn regression(name: &str, scenario: Scenario) {
    let result = run_case(&ReferenceEngine::new(), &scenario, &default_base_dir());
    assert!(
        result.failure.is_none(),
        "{name}: {:?}\n{}",
        result.failure,
        result.trace.join("\n")
    );
    snapshot(
        &format!("regression-{name}"),
        &format!("{}\nfinal state:\n{}", result.trace.join("\n"), result.final_state),
    );
}

#[test]
fn deletes_and_cascades_reach_every_replica() {
    let record = Step::Insert {
        replica: 1,
        table: 2,
        id: IdChoice::Mint,
        values: vec![Val::Parent(0), Val::Text("A".into()), Val::Text("1.2.3.4".into())],
    };
    regression(
        "cascade-delete-of-a-concurrent-child",
        scenario(
            2,
            vec![
                domain(0, "a.example"),
                sync(0),
                sync(1),
                record,
                Step::Delete {
                    replica: 0,
                    table: 0,
                    row: 0,
                },
                sync(0),
                sync(1),
            ],
        ),
    );
}

#[test]
fn pending_writes_survive_a_crash_and_restart() {
    regression(
        "pending-survives-restart",
        scenario(
            2,
            vec![host(0), push_crashing_before_commit(0), restart(0), sync(0), sync(1)],
        ),
    );
}

#[test]
fn pending_writes_survive_an_upgrade_from_an_older_cache_format() {
    // One write acknowledged (the outbox keeps its seq as a floor row), one
    // pending across a crash; the replica comes back as the engine's next
    // version over the cache its previous version wrote in format 0.
    regression(
        "pending-survives-cache-upgrade",
        scenario(
            2,
            vec![
                host(0),
                sync(0),
                host(0),
                push_crashing_before_commit(0),
                restart_with(0, &[WhileDown::CacheFromOlderVersion { format: 0 }]),
                host(0),
                sync(0),
                sync(1),
            ],
        ),
    );
}

#[test]
fn a_cache_from_a_newer_version_is_refused_and_loses_nothing() {
    // The app went back a version after a crash: the cache says a newer
    // engine wrote it. The open is refused; the newer version comes back and
    // pushes the pending write.
    regression(
        "newer-cache-refused",
        scenario(
            2,
            vec![
                host(0),
                push_crashing_before_commit(0),
                restart_with(0, &[WhileDown::CacheFromNewerVersion]),
                sync(0),
                sync(1),
            ],
        ),
    );
}

#[test]
fn a_replica_refuses_a_remote_a_newer_version_gave_a_column() {
    // While the replica is down, a newer version of the application adds a
    // column to the remote's dns_records. Syncing against a table it does
    // not know would write rows without that column's values: the engine
    // refuses to open the remote (SchemaMismatch) and starts once the
    // column is gone; the pending write is pushed.
    let drifted = restart_with(0, &[WhileDown::RemoteDrifted { table: 2 }]);
    regression(
        "remote-drift-refused",
        scenario(
            2,
            vec![host(0), push_crashing_before_commit(0), drifted, sync(0), sync(1)],
        ),
    );
}

#[test]
fn a_replica_starts_while_the_application_holds_its_cache_lock() {
    // The sync process restarts while another part of the application is
    // inside a write transaction on the cache: opening a cache that needs
    // no change must not need the write lock ("database is locked" at
    // start). The pending write is pushed after the lock is gone.
    regression(
        "restart-under-cache-lock",
        scenario(
            2,
            vec![
                host(0),
                push_crashing_before_commit(0),
                restart_with(0, &[WhileDown::AppHoldsCache]),
                sync(0),
                sync(1),
            ],
        ),
    );
}

#[test]
fn an_id_minted_and_given_up_is_never_minted_again() {
    // The application mints an id for a row, rolls its transaction back,
    // mints another and inserts with it; the engine's own insert after it
    // mints above both, across a restart too.
    let outside_host = |replica| Step::Insert {
        replica,
        table: 1,
        id: IdChoice::MintAbandoning(1),
        values: vec![Val::Text("app".into()), Val::Text("10.0.0.9".into())],
    };
    regression(
        "minted-id-given-up-stays-reserved",
        scenario(
            2,
            vec![
                Step::Outside(Box::new(outside_host(0))),
                push_crashing_before_commit(0),
                restart(0),
                Step::Outside(Box::new(outside_host(0))),
                host(0),
                sync(0),
                sync(1),
            ],
        ),
    );
}

#[test]
fn crash_after_remote_commit_does_not_duplicate() {
    regression(
        "crash-after-remote-commit",
        scenario(
            2,
            vec![
                host(0),
                host(0),
                Step::Crash {
                    replica: 0,
                    kind: SyncKind::Full,
                    at: CrashAt::AfterRemoteCommit,
                },
                restart(0),
                sync(0),
                sync(1),
            ],
        ),
    );
}

#[test]
fn colliding_ids_are_refused_not_overwritten() {
    regression(
        "colliding-ids",
        scenario(
            2,
            vec![
                host(0),
                sync(0),
                sync(1),
                Step::Insert {
                    replica: 1,
                    table: 1,
                    id: IdChoice::Foreign(0),
                    values: vec![Val::Text("evil".into()), Val::Text("10.6.6.6".into())],
                },
            ],
        ),
    );
}

#[test]
fn the_same_natural_key_on_two_replicas_merges() {
    regression(
        "same-domain-on-two-replicas",
        scenario(
            2,
            vec![
                domain(0, "a.example"),
                domain(1, "a.example"),
                sync(0),
                sync(1),
                sync(0),
            ],
        ),
    );
}

#[test]
fn a_locked_remote_loses_nothing() {
    regression(
        "locked-remote",
        scenario(
            2,
            vec![
                host(0),
                Step::LockRemote {
                    lock: LockKind::Reserved,
                    hold: 2,
                    ends_when_busy: false,
                },
                sync(0),
                sync(1),
                sync(0),
            ],
        ),
    );
}

#[test]
fn a_skewed_clock_does_not_win_over_a_causally_later_write() {
    let set = |replica: usize, ip: &str| Step::Update {
        replica,
        table: 1,
        row: 0,
        column: 1,
        value: Val::Text(ip.into()),
    };
    regression(
        "skewed-clock",
        scenario(
            2,
            vec![
                Step::Clock {
                    replica: 0,
                    offset_ms: 20_000,
                },
                Step::Clock {
                    replica: 1,
                    offset_ms: -20_000,
                },
                host(0),
                set(0, "10.0.0.2"),
                sync(0),
                sync(1),
                set(1, "10.0.0.3"),
                sync(1),
                sync(0),
            ],
        ),
    );
}

/// Clocks jump as devices' do: r0's clock a day ahead stamps a write that
/// r1 refuses to pull (rule O4: a clear `clock_drift`, not a silent drop);
/// then r0's clock goes a month back, and its next write still follows the
/// last (the HLC never goes back), so it wins everywhere once quiescence
/// moves time past the furthest stamp.
#[test]
fn a_clock_that_jumps_a_day_ahead_and_a_month_back_loses_nothing() {
    let set = |replica: usize, ip: &str| Step::Update {
        replica,
        table: 1,
        row: 0,
        column: 1,
        value: Val::Text(ip.into()),
    };
    regression(
        "clock-jumps",
        scenario(
            2,
            vec![
                host(1),
                sync(1),
                sync(0),
                Step::Clock {
                    replica: 0,
                    offset_ms: 86_400_000,
                },
                set(0, "10.0.0.2"),
                sync(0),
                Step::Clock {
                    replica: 0,
                    offset_ms: -30 * 86_400_000,
                },
                set(0, "10.0.0.3"),
                sync(0),
                sync(1),
            ],
        ),
    );
}

#[test]
fn pulled_changes_are_not_echoed() {
    regression(
        "pulled-changes-not-echoed",
        scenario(2, vec![host(0), sync(0), sync(1), sync(1), sync(0)]),
    );
}

#[test]
fn pushed_writes_reach_the_remote() {
    // "0 records synced": a push must apply what it acknowledges.
    regression(
        "pushed-writes-reach-the-remote",
        scenario(2, vec![host(0), domain(0, "a.example"), sync(0), sync(1)]),
    );
}

#[test]
fn a_multi_write_transaction_is_pushed_whole() {
    regression(
        "multi-write-transaction",
        scenario(
            2,
            vec![
                Step::InsertFamily {
                    replica: 0,
                    domain: vec![
                        Val::Text("a.example".into()),
                        Val::Text("registrar0".into()),
                        Val::Int(1),
                    ],
                    records: vec![
                        vec![Val::Text("A".into()), Val::Text("alpha".into())],
                        vec![Val::Text("MX".into()), Val::Text("bravo".into())],
                    ],
                },
                push_crashing_before_commit(0),
                restart(0),
                sync(0),
                sync(1),
            ],
        ),
    );
}

#[test]
fn an_id_merged_away_is_not_reused() {
    regression(
        "merged-id-not-reused",
        scenario(
            2,
            vec![
                domain(0, "a.example"),
                domain(1, "a.example"),
                sync(0),
                sync(1),
                Step::Insert {
                    replica: 1,
                    table: 0,
                    id: IdChoice::MergedAway(0),
                    values: vec![
                        Val::Text("b.example".into()),
                        Val::Text("registrar1".into()),
                        Val::Int(2),
                    ],
                },
                sync(1),
                sync(0),
            ],
        ),
    );
}

#[test]
fn a_busy_pull_leaves_no_transaction_open() {
    regression(
        "busy-pull",
        scenario(
            1,
            vec![
                Step::LockRemote {
                    lock: LockKind::Exclusive,
                    hold: 2,
                    ends_when_busy: false,
                },
                Step::Sync {
                    replica: 0,
                    kind: SyncKind::Pull,
                    sessions_cut: None,
                    interleave: None,
                },
                host(0),
                sync(0),
            ],
        ),
    );
}
