//! One test per rule of SEMANTICS.md, through the model's public API.

use syncgate_model::*;

const T0: i64 = 1_700_000_000_000;
const DOMAINS: usize = 0;
const HOSTS: usize = 1;
const RECORDS: usize = 2;

fn world(replicas: usize) -> World {
    World::new(test_schema(), Config::default(), replicas)
}

fn text(s: &str) -> Value {
    Value::Text(s.to_string())
}

fn insert(w: &mut World, r: usize, now: i64, table: usize, values: Vec<Value>) -> i64 {
    let ids = w
        .write(
            r,
            now,
            &[Write::Insert {
                table,
                id: None,
                values,
            }],
        )
        .expect("insert");
    ids[0]
}

fn host(w: &mut World, r: usize, now: i64, name: &str) -> i64 {
    insert(w, r, now, HOSTS, vec![text(name), text("10.0.0.1")])
}

fn domain(w: &mut World, r: usize, now: i64, name: &str) -> i64 {
    insert(w, r, now, DOMAINS, vec![text(name), text("reg"), Value::Int(0)])
}

fn set(w: &mut World, r: usize, now: i64, table: usize, id: i64, column: usize, v: Value) {
    w.write(
        r,
        now,
        &[Write::Update {
            table,
            id,
            set: vec![(column, v)],
        }],
    )
    .expect("update");
}

fn sync(w: &mut World, r: usize, now: i64) -> SyncReport {
    w.sync(r, now, SyncKind::Full, None).expect("sync")
}

fn converged(w: &World) {
    let remote = w.remote_visible();
    for r in 0..w.replicas.len() {
        assert_eq!(w.visible(r), &remote, "replica {r} differs from the remote");
    }
}

#[test]
fn i1_replicas_mint_from_disjoint_spaces() {
    let mut w = world(2);
    let a = host(&mut w, 0, T0, "a");
    let b = host(&mut w, 1, T0, "b");
    assert_eq!(a, 1 << 40);
    assert_eq!(b, 2 << 40);
    assert_eq!(host(&mut w, 0, T0, "c"), (1 << 40) + 1);
}

#[test]
fn i2_explicit_ids_never_overwrite() {
    let mut w = world(2);
    let a = host(&mut w, 0, T0, "a");
    sync(&mut w, 0, T0);
    sync(&mut w, 1, T0);
    let foreign = Write::Insert {
        table: HOSTS,
        id: Some(a),
        values: vec![text("x"), text("y")],
    };
    assert_eq!(w.write(1, T0, &[foreign]), Err(WriteRefusal::IdOutsideReplica));
    let taken = Write::Insert {
        table: HOSTS,
        id: Some(a),
        values: vec![text("x"), text("y")],
    };
    assert_eq!(w.write(0, T0, &[taken]), Err(WriteRefusal::IdTaken));
    assert_eq!(w.visible(0)[HOSTS][&a], vec![text("a"), text("10.0.0.1")]);
}

#[test]
fn o1_a_refused_transaction_changes_nothing() {
    let mut w = world(1);
    let before = w.replicas[0].clone();
    let writes = [
        Write::Insert {
            table: HOSTS,
            id: None,
            values: vec![text("a"), text("b")],
        },
        Write::Delete { table: HOSTS, id: 42 },
    ];
    assert_eq!(w.write(0, T0, &writes), Err(WriteRefusal::RowNotFound));
    assert_eq!(w.replicas[0].hlc, before.hlc);
    assert!(w.visible(0)[HOSTS].is_empty());
    assert_eq!(w.pending(0), 0);
}

#[test]
fn o2_causally_later_write_wins_despite_skew() {
    let mut w = world(2);
    let h = host(&mut w, 0, T0, "a");
    set(&mut w, 0, T0 + 100_000, HOSTS, h, 1, text("from-r0"));
    sync(&mut w, 0, T0 + 100_000);
    // Replica 1's clock is 50 s behind, but it pulled r0's write first.
    sync(&mut w, 1, T0 + 50_000);
    set(&mut w, 1, T0 + 50_000, HOSTS, h, 1, text("from-r1"));
    sync(&mut w, 1, T0 + 50_000);
    sync(&mut w, 0, T0 + 100_000);
    assert_eq!(w.remote_visible()[HOSTS][&h][1], text("from-r1"));
    converged(&w);
}

#[test]
fn o3_concurrent_writes_order_by_stamp_then_replica() {
    let mut w = world(2);
    let h = host(&mut w, 0, T0, "a");
    sync(&mut w, 0, T0);
    sync(&mut w, 1, T0);
    // Same wall time, same logical counter: replica 2 wins the tie.
    set(&mut w, 0, T0 + 1000, HOSTS, h, 1, text("r0"));
    set(&mut w, 1, T0 + 1000, HOSTS, h, 1, text("r1"));
    assert_eq!(w.replicas[0].hlc, w.replicas[1].hlc);
    for r in [0, 1, 0, 1] {
        sync(&mut w, r, T0 + 2000);
    }
    assert_eq!(w.remote_visible()[HOSTS][&h][1], text("r1"));
    converged(&w);
}

#[test]
fn o4_stamps_too_far_ahead_are_refused() {
    let mut w = world(2);
    host(&mut w, 0, T0 + 120_000, "future");
    sync(&mut w, 0, T0 + 120_000);
    let cursor = w.replicas[1].cursor;
    assert_eq!(w.sync(1, T0, SyncKind::Pull, None), Err(SyncFailure::ClockDrift));
    assert_eq!(w.replicas[1].cursor, cursor);
    assert!(w.visible(1)[HOSTS].is_empty());
    assert_eq!(sync(&mut w, 1, T0 + 100_000).pulled, 1);
}

#[test]
fn m1_concurrent_edits_to_different_columns_both_survive() {
    let mut w = world(2);
    let h = host(&mut w, 0, T0, "a");
    sync(&mut w, 0, T0);
    sync(&mut w, 1, T0);
    set(&mut w, 0, T0 + 1000, HOSTS, h, 0, text("renamed"));
    set(&mut w, 1, T0 + 2000, HOSTS, h, 1, text("10.9.9.9"));
    for r in [0, 1, 0] {
        sync(&mut w, r, T0 + 3000);
    }
    assert_eq!(w.remote_visible()[HOSTS][&h], vec![text("renamed"), text("10.9.9.9")]);
    converged(&w);
}

#[test]
fn m2_an_update_that_changes_nothing_is_not_captured() {
    let mut w = world(1);
    let h = host(&mut w, 0, T0, "a");
    set(&mut w, 0, T0, HOSTS, h, 0, text("a"));
    assert_eq!(w.pending(0), 1);
}

#[test]
fn m4_a_losing_push_brings_back_the_winner() {
    let mut w = world(2);
    let h = host(&mut w, 0, T0, "a");
    sync(&mut w, 0, T0);
    sync(&mut w, 1, T0);
    set(&mut w, 1, T0 + 1000, HOSTS, h, 1, text("old"));
    set(&mut w, 0, T0 + 2000, HOSTS, h, 1, text("new"));
    sync(&mut w, 0, T0 + 2000);
    let report = sync(&mut w, 1, T0 + 3000);
    assert_eq!((report.pushed, report.conflicts), (1, 1));
    assert_eq!(w.visible(1)[HOSTS][&h][1], text("new"));
}

#[test]
fn d1_deleted_rows_never_come_back() {
    let mut w = world(2);
    let h = host(&mut w, 0, T0, "a");
    sync(&mut w, 0, T0);
    sync(&mut w, 1, T0);
    w.write(0, T0, &[Write::Delete { table: HOSTS, id: h }])
        .expect("delete");
    let revive = Write::Insert {
        table: HOSTS,
        id: Some(h),
        values: vec![text("a"), text("b")],
    };
    assert_eq!(w.write(0, T0, &[revive]), Err(WriteRefusal::IdDeleted));
    sync(&mut w, 0, T0);
    sync(&mut w, 1, T0);
    assert!(w.remote_visible()[HOSTS].is_empty());
    converged(&w);
}

#[test]
fn d2_cascade_kills_children_added_concurrently() {
    let mut w = world(2);
    let d = domain(&mut w, 0, T0, "a.example");
    sync(&mut w, 0, T0);
    sync(&mut w, 1, T0);
    insert(&mut w, 1, T0, RECORDS, vec![Value::Int(d), text("A"), text("1.2.3.4")]);
    w.write(0, T0, &[Write::Delete { table: DOMAINS, id: d }])
        .expect("delete");
    sync(&mut w, 0, T0);
    let report = sync(&mut w, 1, T0);
    assert_eq!(report.conflicts, 1, "the record arrives dead");
    sync(&mut w, 0, T0);
    assert!(w.remote_visible()[RECORDS].is_empty());
    converged(&w);
}

#[test]
fn d3_delete_wins_over_a_later_update() {
    let mut w = world(2);
    let h = host(&mut w, 0, T0, "a");
    sync(&mut w, 0, T0);
    sync(&mut w, 1, T0);
    w.write(0, T0 + 1000, &[Write::Delete { table: HOSTS, id: h }])
        .expect("delete");
    set(&mut w, 1, T0 + 5000, HOSTS, h, 1, text("late"));
    for r in [0, 1, 0] {
        sync(&mut w, r, T0 + 6000);
    }
    assert!(w.remote_visible()[HOSTS].is_empty());
    converged(&w);
}

#[test]
fn n2_first_on_remote_survives_and_children_follow() {
    let mut w = world(2);
    let a = domain(&mut w, 0, T0, "same.example");
    let b = domain(&mut w, 1, T0 + 1000, "same.example");
    let rec = insert(&mut w, 1, T0 + 1000, RECORDS, vec![Value::Int(b), text("A"), text("x")]);
    sync(&mut w, 0, T0 + 2000);
    let report = sync(&mut w, 1, T0 + 2000);
    assert_eq!(report.conflicts, 1);
    sync(&mut w, 0, T0 + 3000);
    let remote = w.remote_visible();
    assert_eq!(remote[DOMAINS].keys().copied().collect::<Vec<_>>(), vec![a]);
    assert_eq!(remote[RECORDS][&rec][0], Value::Int(a));
    converged(&w);
}

#[test]
fn n3_push_first_and_pull_first_agree() {
    let outcome = |pull_first: bool| {
        let mut w = world(2);
        domain(&mut w, 0, T0, "same.example");
        let b = domain(&mut w, 1, T0 + 1000, "same.example");
        insert(&mut w, 1, T0 + 1000, RECORDS, vec![Value::Int(b), text("A"), text("x")]);
        sync(&mut w, 0, T0 + 2000);
        if pull_first {
            w.sync(1, T0 + 2000, SyncKind::Pull, None).expect("pull");
            assert_eq!(w.visible(1)[DOMAINS].len(), 1, "merged locally");
        }
        for r in [1, 0, 1] {
            sync(&mut w, r, T0 + 3000);
        }
        converged(&w);
        w.remote_visible()
    };
    assert_eq!(outcome(true), outcome(false));
}

#[test]
fn n4_the_natural_key_is_immutable() {
    let mut w = world(1);
    let d = domain(&mut w, 0, T0, "a.example");
    let rename = Write::Update {
        table: DOMAINS,
        id: d,
        set: vec![(0, text("b.example"))],
    };
    assert_eq!(w.write(0, T0, &[rename]), Err(WriteRefusal::KeyImmutable));
    domain(&mut w, 0, T0, "b.example");
    let dup = Write::Insert {
        table: DOMAINS,
        id: None,
        values: vec![text("a.example"), Value::Null, Value::Null],
    };
    assert_eq!(w.write(0, T0, &[dup]), Err(WriteRefusal::NaturalKeyTaken));
}

#[test]
fn c3_cascade_deletes_are_captured() {
    let mut w = world(1);
    let d = domain(&mut w, 0, T0, "a.example");
    insert(&mut w, 0, T0, RECORDS, vec![Value::Int(d), text("A"), text("x")]);
    insert(&mut w, 0, T0, RECORDS, vec![Value::Int(d), text("MX"), text("y")]);
    sync(&mut w, 0, T0);
    w.write(0, T0, &[Write::Delete { table: DOMAINS, id: d }])
        .expect("delete");
    assert_eq!(w.pending(0), 3);
}

#[test]
fn s2_batches_hold_whole_transactions() {
    let mut w = World::new(
        test_schema(),
        Config {
            push_batch_max: 2,
            ..Config::default()
        },
        1,
    );
    let three = vec![
        Write::Insert {
            table: HOSTS,
            id: None,
            values: vec![text("a"), text("1")],
        },
        Write::Insert {
            table: HOSTS,
            id: None,
            values: vec![text("b"), text("2")],
        },
        Write::Insert {
            table: HOSTS,
            id: None,
            values: vec![text("c"), text("3")],
        },
    ];
    w.write(0, T0, &three).expect("write");
    host(&mut w, 0, T0, "d");
    assert_eq!(
        w.replicas[0].next_batch(2),
        3,
        "a transaction larger than the batch goes whole"
    );
    let report = w.sync(0, T0, SyncKind::Push, Some(CrashPoint::PushAfterRemoteCommit));
    assert_eq!(report, Err(SyncFailure::Crashed));
    assert_eq!(w.remote_visible()[HOSTS].len(), 3, "the first transaction, whole");
}

#[test]
fn s4_repush_after_crash_applies_nothing_twice() {
    let mut w = world(1);
    host(&mut w, 0, T0, "a");
    host(&mut w, 0, T0, "b");
    let crashed = w.sync(0, T0, SyncKind::Push, Some(CrashPoint::PushAfterRemoteCommit));
    assert_eq!(crashed, Err(SyncFailure::Crashed));
    assert_eq!(w.pending(0), 2, "not acknowledged");
    assert_eq!(w.sync(0, T0, SyncKind::Push, None), Err(SyncFailure::Down));
    w.restart(0);
    let seq = w.remote.seq;
    let report = w.sync(0, T0, SyncKind::Push, None).expect("push");
    assert_eq!((report.pushed, report.conflicts), (2, 0));
    assert_eq!(w.remote.seq, seq, "nothing applied twice");
    assert_eq!(w.events.duplicate_pushes_skipped, 2);
}

#[test]
fn s5_crash_before_remote_commit_loses_nothing() {
    let mut w = world(1);
    host(&mut w, 0, T0, "a");
    let crashed = w.sync(0, T0, SyncKind::Full, Some(CrashPoint::PushBeforeRemoteCommit));
    assert_eq!(crashed, Err(SyncFailure::Crashed));
    assert!(w.remote_visible()[HOSTS].is_empty());
    w.restart(0);
    assert_eq!(sync(&mut w, 0, T0).pushed, 1);
    converged(&w);
}

#[test]
fn s6_reports_count_exactly() {
    let mut w = world(2);
    host(&mut w, 0, T0, "a");
    host(&mut w, 0, T0, "b");
    assert_eq!(
        sync(&mut w, 0, T0),
        SyncReport {
            pushed: 2,
            pulled: 2,
            conflicts: 0
        }
    );
    assert_eq!(
        sync(&mut w, 1, T0),
        SyncReport {
            pushed: 0,
            pulled: 2,
            conflicts: 0
        }
    );
    assert_eq!(sync(&mut w, 1, T0), SyncReport::default());
}

#[test]
fn p3_a_pending_write_is_kept_only_when_later() {
    let mut w = world(2);
    let h = host(&mut w, 0, T0, "a");
    sync(&mut w, 0, T0);
    sync(&mut w, 1, T0);
    set(&mut w, 0, T0 + 1000, HOSTS, h, 1, text("earlier"));
    set(&mut w, 1, T0 + 5000, HOSTS, h, 1, text("later"));
    sync(&mut w, 0, T0 + 5000);
    let report = w.sync(1, T0 + 5000, SyncKind::Pull, None).expect("pull");
    assert_eq!(report.conflicts, 1);
    assert_eq!(w.visible(1)[HOSTS][&h][1], text("later"));
    assert_eq!(w.events.conflicts_won_locally, 1);
}

#[test]
fn p5_a_crash_mid_pull_applies_nothing() {
    let mut w = world(2);
    host(&mut w, 0, T0, "a");
    sync(&mut w, 0, T0);
    let crashed = w.sync(1, T0, SyncKind::Pull, Some(CrashPoint::PullBeforeLocalCommit));
    assert_eq!(crashed, Err(SyncFailure::Crashed));
    assert!(w.visible(1)[HOSTS].is_empty());
    assert_eq!(w.replicas[1].cursor, 0);
}

#[test]
fn locks_make_steps_busy_and_change_nothing() {
    let mut w = world(1);
    host(&mut w, 0, T0, "a");
    w.lock_remote(Some(RemoteLock::Shared));
    assert_eq!(w.sync(0, T0, SyncKind::Push, None), Err(SyncFailure::Busy));
    assert!(
        w.sync(0, T0, SyncKind::Pull, None).is_ok(),
        "a read lock does not stop readers"
    );
    w.lock_remote(Some(RemoteLock::Exclusive));
    assert_eq!(w.sync(0, T0, SyncKind::Pull, None), Err(SyncFailure::Busy));
    w.lock_remote(None);
    w.lock_cache(0, true);
    assert_eq!(
        w.write(
            0,
            T0,
            &[Write::Delete {
                table: HOSTS,
                id: 1 << 40
            }]
        ),
        Err(WriteRefusal::Busy)
    );
    w.lock_cache(0, false);
    assert_eq!(w.pending(0), 1);
    assert_eq!(sync(&mut w, 0, T0).pushed, 1);
}
