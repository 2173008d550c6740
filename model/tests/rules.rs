//! One test per rule of `model/SEMANTICS.md`, named after its id. Each drives
//! the public API of the model and asserts concrete outcomes.
//!
//! Replica index `r` has replica id `r + 1`, so replica 0 mints ids from
//! `1 << 40` and replica 1 from `2 << 40` (rule I1).

use syncgate_model::{
    hlc_of_ms, id_space, test_schema, BusyTries, Config, CrashPoint, RemoteLock, Stamp, SyncFailure, SyncKind,
    SyncReport, TableIdx, Value, World, Write, WriteRefusal,
};

const DOMAINS: TableIdx = 0;
const HOSTS: TableIdx = 1;
const RECORDS: TableIdx = 2;

/// First id of replica index 0 (replica id 1) and of replica index 1 (id 2).
const R0: i64 = 1 << 40;
const R1: i64 = 2 << 40;

fn world(replicas: usize) -> World {
    World::new(test_schema(), Config::default(), replicas)
}

fn t(s: &str) -> Value {
    Value::Text(s.to_string())
}

fn domain(name: &str, registrar: &str) -> Write {
    Write::Insert {
        table: DOMAINS,
        id: None,
        values: vec![t(name), t(registrar), Value::Null],
    }
}

fn host(hostname: &str, ip: &str) -> Write {
    Write::Insert {
        table: HOSTS,
        id: None,
        values: vec![t(hostname), t(ip)],
    }
}

fn host_at(id: i64, hostname: &str, ip: &str) -> Write {
    Write::Insert {
        table: HOSTS,
        id: Some(id),
        values: vec![t(hostname), t(ip)],
    }
}

fn record(domain_id: i64, kind: &str, value: &str) -> Write {
    Write::Insert {
        table: RECORDS,
        id: None,
        values: vec![Value::Int(domain_id), t(kind), t(value)],
    }
}

fn update(table: TableIdx, id: i64, set: &[(usize, Value)]) -> Write {
    Write::Update {
        table,
        id,
        set: set.to_vec(),
    }
}

fn delete(table: TableIdx, id: i64) -> Write {
    Write::Delete { table, id }
}

fn rep(pushed: u64, pulled: u64, conflicts: u64) -> SyncReport {
    SyncReport {
        pushed,
        pulled,
        conflicts,
    }
}

/// One write in its own transaction; returns the id it inserted, if any.
fn one(w: &mut World, r: usize, now_ms: i64, write: Write) -> Option<i64> {
    w.write(r, now_ms, &[write]).expect("write refused").first().copied()
}

fn push(w: &mut World, r: usize, now_ms: i64) -> SyncReport {
    w.sync(r, now_ms, SyncKind::Push, None).expect("push failed")
}

fn pull(w: &mut World, r: usize, now_ms: i64) -> SyncReport {
    w.sync(r, now_ms, SyncKind::Pull, None).expect("pull failed")
}

fn full(w: &mut World, r: usize, now_ms: i64) -> SyncReport {
    w.sync(r, now_ms, SyncKind::Full, None).expect("sync failed")
}

/// Every replica syncs twice in turn; then each must equal the remote.
fn converge(w: &mut World, now_ms: i64) {
    for _ in 0..2 {
        for r in 0..w.replicas.len() {
            full(w, r, now_ms);
        }
    }
    let remote = w.remote_visible();
    for r in 0..w.replicas.len() {
        assert_eq!(w.visible(r), &remote, "replica {r} differs from the remote");
        assert_eq!(w.pending(r), 0);
    }
}

fn remote_row(w: &World, table: TableIdx, id: i64) -> Option<Vec<Value>> {
    w.remote_visible()[table].get(&id).cloned()
}

fn local_row(w: &World, r: usize, table: TableIdx, id: i64) -> Option<Vec<Value>> {
    w.visible(r)[table].get(&id).cloned()
}

// ---------------------------------------------------------------- Identity

#[test]
fn i1_replicas_mint_ids_in_their_own_space() {
    let mut w = world(3);
    assert_eq!(id_space(1), (1_099_511_627_776, 2_199_023_255_552));
    assert_eq!(w.replicas[0].replica_id, 1);
    assert_eq!(w.replicas[2].replica_id, 3);

    assert_eq!(
        w.write(0, 1000, &[host("a", "1"), host("b", "2")]),
        Ok(vec![R0, R0 + 1])
    );
    assert_eq!(w.write(1, 1000, &[host("c", "3")]), Ok(vec![R1]));
    assert_eq!(w.write(2, 1000, &[host("d", "4")]), Ok(vec![3 << 40]));
    // An explicit id inside the own space is fine; minting continues after it.
    assert_eq!(
        w.write(0, 1000, &[host_at(R0 + 100, "e", "5"), host("f", "6")]),
        Ok(vec![R0 + 100, R0 + 101])
    );

    converge(&mut w, 2000);
    let ids: Vec<i64> = w.remote_visible()[HOSTS].keys().copied().collect();
    assert_eq!(ids, vec![R0, R0 + 1, R0 + 100, R0 + 101, R1, 3 << 40]);
}

#[test]
fn i2_explicit_id_outside_space_is_refused() {
    let mut w = world(2);
    assert_eq!(
        w.write(0, 1000, &[host_at(5, "a", "1")]),
        Err(WriteRefusal::IdOutsideReplica)
    );
    assert_eq!(
        w.write(0, 1000, &[host_at(R1, "a", "1")]),
        Err(WriteRefusal::IdOutsideReplica)
    );
    assert_eq!(
        w.write(0, 1000, &[host_at(R0 - 1, "a", "1")]),
        Err(WriteRefusal::IdOutsideReplica)
    );
    // The space is half-open: its last id is R1 - 1.
    assert_eq!(w.write(0, 1000, &[host_at(R1 - 1, "a", "1")]), Ok(vec![R1 - 1]));
    assert_eq!(w.pending(0), 1);
}

#[test]
fn i2_existing_id_is_never_overwritten() {
    let mut w = world(1);
    let h = one(&mut w, 0, 1000, host("web1", "10.0.0.1")).unwrap();
    // The refusal takes the whole transaction: the first insert is gone too.
    assert_eq!(
        w.write(0, 2000, &[host("web2", "10.0.0.2"), host_at(h, "evil", "6.6.6.6")]),
        Err(WriteRefusal::IdTaken)
    );
    assert_eq!(w.visible(0)[HOSTS].len(), 1);
    assert_eq!(local_row(&w, 0, HOSTS, h), Some(vec![t("web1"), t("10.0.0.1")]));
    assert_eq!(w.pending(0), 1);
    // The next minted id was not consumed by the refused transaction.
    assert_eq!(w.write(0, 2000, &[host("web2", "10.0.0.2")]), Ok(vec![R0 + 1]));
}

// ---------------------------------------------------------------- Ordering

#[test]
fn o1_hlc_stamps_each_captured_write() {
    let mut w = world(1);
    assert_eq!(hlc_of_ms(1000), 65_536_000);
    w.write(0, 1000, &[host("a", "1"), host("b", "2")]).unwrap();
    // The wall clock went back: the HLC does not.
    w.write(0, 500, &[host("c", "3")]).unwrap();
    w.write(0, 2000, &[host("d", "4")]).unwrap();
    let stamps: Vec<Stamp> = w.replicas[0].outbox.iter().map(|e| e.stamp).collect();
    let s = |hlc| Stamp { hlc, replica: 1 };
    assert_eq!(
        stamps,
        vec![s(65_536_001), s(65_536_002), s(65_536_003), s(hlc_of_ms(2000) + 1)]
    );
    assert_eq!(w.replicas[0].hlc, hlc_of_ms(2000) + 1);
}

#[test]
fn o2_causally_later_write_wins_despite_skew() {
    let mut w = world(2);
    // Replica 0's clock is 50 s ahead of replica 1's.
    let d = one(&mut w, 0, 100_000, domain("example.com", "first")).unwrap();
    assert_eq!(full(&mut w, 0, 100_000), rep(1, 1, 0));
    assert_eq!(pull(&mut w, 1, 50_000), rep(0, 1, 0));
    assert_eq!(w.replicas[1].hlc, hlc_of_ms(100_000) + 1);
    // Written after pulling "first", at an earlier wall clock.
    one(&mut w, 1, 50_000, update(DOMAINS, d, &[(1, t("second"))]));
    assert_eq!(w.replicas[1].outbox[0].stamp.hlc, hlc_of_ms(100_000) + 2);
    assert_eq!(full(&mut w, 1, 50_000), rep(1, 1, 0));
    assert_eq!(remote_row(&w, DOMAINS, d).unwrap()[1], t("second"));
    converge(&mut w, 100_000);
}

#[test]
fn o3_equal_hlc_ties_break_by_replica_id() {
    for replica_1_pushes_first in [false, true] {
        let mut w = world(2);
        let h = one(&mut w, 0, 1000, host("web1", "10.0.0.1")).unwrap();
        full(&mut w, 0, 1000);
        pull(&mut w, 1, 1000);
        // Both update the same column at the same clock: equal hlc.
        one(&mut w, 0, 2000, update(HOSTS, h, &[(1, t("from-replica-1"))]));
        one(&mut w, 1, 2000, update(HOSTS, h, &[(1, t("from-replica-2"))]));
        assert_eq!(w.replicas[0].outbox[0].stamp.hlc, w.replicas[1].outbox[0].stamp.hlc);
        if replica_1_pushes_first {
            assert_eq!(push(&mut w, 1, 2000), rep(1, 0, 0));
            assert_eq!(push(&mut w, 0, 2000), rep(1, 0, 1));
        } else {
            assert_eq!(push(&mut w, 0, 2000), rep(1, 0, 0));
            assert_eq!(push(&mut w, 1, 2000), rep(1, 0, 0));
        }
        // Replica id 2 beats replica id 1 whatever the push order.
        assert_eq!(remote_row(&w, HOSTS, h), Some(vec![t("web1"), t("from-replica-2")]));
        converge(&mut w, 3000);
    }
}

#[test]
fn o4_stamp_too_far_ahead_is_refused_and_nothing_is_applied() {
    let mut w = world(3);
    let a = one(&mut w, 0, 1000, host("a", "1")).unwrap();
    push(&mut w, 0, 1000);
    let b = one(&mut w, 2, 200_000, host("b", "2")).unwrap();
    push(&mut w, 2, 200_000);
    // 200 000 > 139 999 + 60 000: refused, and row `a` is not applied either.
    assert_eq!(w.sync(1, 139_999, SyncKind::Pull, None), Err(SyncFailure::ClockDrift));
    assert!(w.visible(1)[HOSTS].is_empty());
    assert_eq!(w.replicas[1].cursor, 0);
    assert_eq!(w.replicas[1].hlc, 0);
    // Exactly drift_ms_max ahead is accepted.
    assert_eq!(pull(&mut w, 1, 140_000), rep(0, 2, 0));
    let ids: Vec<i64> = w.visible(1)[HOSTS].keys().copied().collect();
    assert_eq!(ids, vec![a, b]);
}

// ---------------------------------------------------------------- Merging

#[test]
fn m1_column_level_last_writer_wins() {
    let mut w = world(2);
    let d = one(&mut w, 0, 1000, domain("example.com", "reg-a")).unwrap();
    full(&mut w, 0, 1000);
    pull(&mut w, 1, 1000);
    one(&mut w, 0, 3000, update(DOMAINS, d, &[(1, t("reg-late"))]));
    one(
        &mut w,
        1,
        2000,
        update(DOMAINS, d, &[(1, t("reg-early")), (2, Value::Int(7))]),
    );
    assert_eq!(push(&mut w, 0, 3000), rep(1, 0, 0));
    // `registrar` keeps the later stamp (a conflict); `updated` takes effect.
    assert_eq!(push(&mut w, 1, 3000), rep(1, 0, 1));
    assert_eq!(
        remote_row(&w, DOMAINS, d),
        Some(vec![t("example.com"), t("reg-late"), Value::Int(7)])
    );
    converge(&mut w, 4000);
}

#[test]
fn m2_update_captures_only_changed_columns() {
    let mut w = world(2);
    let d = one(
        &mut w,
        0,
        1000,
        Write::Insert {
            table: DOMAINS,
            id: None,
            values: vec![t("example.com"), t("reg-a"), Value::Int(1)],
        },
    )
    .unwrap();
    full(&mut w, 0, 1000);
    pull(&mut w, 1, 1000);
    one(&mut w, 1, 2000, update(DOMAINS, d, &[(2, Value::Int(7))]));
    // Sets `updated` to the value it already has: only `registrar` is captured.
    one(
        &mut w,
        0,
        3000,
        update(DOMAINS, d, &[(1, t("reg-b")), (2, Value::Int(1))]),
    );
    assert_eq!(w.replicas[0].outbox[0].columns, vec![1]);
    // An update that changes nothing captures nothing.
    w.write(0, 3000, &[update(DOMAINS, d, &[(1, t("reg-b"))])]).unwrap();
    assert_eq!(w.pending(0), 1);
    assert_eq!(push(&mut w, 0, 3000), rep(1, 0, 0));
    // The earlier write to `updated` is not overwritten by the later, unrelated one.
    assert_eq!(push(&mut w, 1, 3000), rep(1, 0, 0));
    assert_eq!(
        remote_row(&w, DOMAINS, d),
        Some(vec![t("example.com"), t("reg-b"), Value::Int(7)])
    );
    converge(&mut w, 4000);
}

#[test]
fn m3_insert_sets_every_column_with_its_stamp() {
    let mut w = world(2);
    let a = one(&mut w, 0, 1000, domain("example.com", "reg-a")).unwrap();
    full(&mut w, 0, 1000);
    // A later insert of the same natural key that leaves `registrar` NULL.
    one(
        &mut w,
        1,
        2000,
        Write::Insert {
            table: DOMAINS,
            id: None,
            values: vec![t("example.com"), Value::Null, Value::Int(9)],
        },
    );
    assert_eq!(w.replicas[1].outbox[0].columns, vec![0, 1, 2]);
    assert_eq!(push(&mut w, 1, 2000), rep(1, 0, 1));
    // Its NULL carries the later stamp and wins like any value.
    assert_eq!(
        remote_row(&w, DOMAINS, a),
        Some(vec![t("example.com"), Value::Null, Value::Int(9)])
    );
    converge(&mut w, 3000);
}

#[test]
fn m4_every_pushed_entry_gives_its_row_a_new_seq() {
    let mut w = world(2);
    one(&mut w, 0, 1000, host("web1", "1"));
    one(&mut w, 0, 1000, host("web2", "2"));
    // The pusher pulls back the rows it pushed.
    assert_eq!(full(&mut w, 0, 1000), rep(2, 2, 0));
    assert_eq!(pull(&mut w, 0, 1000), rep(0, 0, 0));
    assert_eq!(w.remote.seq, 2);

    // A merged insert: the pusher learns the alias and the survivor.
    one(&mut w, 1, 2000, domain("example.com", "reg-b"));
    let a = one(&mut w, 0, 1000, domain("example.com", "reg-a")).unwrap();
    assert_eq!(full(&mut w, 0, 1000), rep(1, 1, 0));
    assert_eq!(full(&mut w, 1, 2000), rep(1, 4, 1));
    assert_eq!(w.visible(1)[DOMAINS].keys().copied().collect::<Vec<_>>(), vec![a]);
    assert_eq!(local_row(&w, 1, DOMAINS, a).unwrap()[1], t("reg-b"));
}

// ---------------------------------------------------------------- Deletes

#[test]
fn d1_deleted_ids_are_never_live_again() {
    let mut w = world(2);
    let h = R0 + 5;
    one(&mut w, 0, 1000, host_at(h, "web1", "1"));
    full(&mut w, 0, 1000);
    pull(&mut w, 1, 1000);
    // Delete and re-insert in one transaction: refused as a whole.
    assert_eq!(
        w.write(0, 2000, &[delete(HOSTS, h), host_at(h, "web1", "2")]),
        Err(WriteRefusal::IdDeleted)
    );
    assert!(local_row(&w, 0, HOSTS, h).is_some());
    one(&mut w, 0, 2000, delete(HOSTS, h));
    assert_eq!(
        w.write(0, 3000, &[host_at(h, "web1", "3")]),
        Err(WriteRefusal::IdDeleted)
    );
    assert_eq!(full(&mut w, 0, 3000), rep(1, 1, 0));
    assert_eq!(pull(&mut w, 1, 3000), rep(0, 1, 0));
    assert!(local_row(&w, 1, HOSTS, h).is_none());
    assert!(remote_row(&w, HOSTS, h).is_none());
    converge(&mut w, 4000);
    // Minting never hands out the deleted id.
    assert_eq!(w.write(0, 5000, &[host("web9", "9")]), Ok(vec![h + 1]));
}

#[test]
fn d2_cascade_kills_concurrent_children() {
    for delete_pushed_first in [true, false] {
        let mut w = world(2);
        let d = one(&mut w, 0, 1000, domain("example.com", "reg")).unwrap();
        full(&mut w, 0, 1000);
        pull(&mut w, 1, 1000);
        one(&mut w, 0, 2000, delete(DOMAINS, d));
        let c = one(&mut w, 1, 2000, record(d, "A", "192.0.2.1")).unwrap();
        if delete_pushed_first {
            assert_eq!(push(&mut w, 0, 2000), rep(1, 0, 0));
            // The child arrives dead: its parent is dead on the remote.
            assert_eq!(push(&mut w, 1, 2000), rep(1, 0, 1));
        } else {
            assert_eq!(push(&mut w, 1, 2000), rep(1, 0, 0));
            assert!(remote_row(&w, RECORDS, c).is_some());
            assert_eq!(push(&mut w, 0, 2000), rep(1, 0, 0));
            assert_eq!(w.events.cascade_deletes, 1);
        }
        assert!(remote_row(&w, RECORDS, c).is_none());
        // Replica 1 learns both tombstones.
        assert_eq!(pull(&mut w, 1, 3000), rep(0, 2, 0));
        assert!(w.visible(1)[DOMAINS].is_empty());
        assert!(w.visible(1)[RECORDS].is_empty());
        converge(&mut w, 3000);
    }
}

#[test]
fn d3_delete_wins_over_concurrent_update() {
    for delete_pushed_first in [true, false] {
        let mut w = world(2);
        let h = one(&mut w, 0, 1000, host("web1", "1")).unwrap();
        full(&mut w, 0, 1000);
        pull(&mut w, 1, 1000);
        one(&mut w, 0, 2000, delete(HOSTS, h));
        // The update has the later stamp and still loses.
        one(&mut w, 1, 9000, update(HOSTS, h, &[(1, t("2"))]));
        if delete_pushed_first {
            assert_eq!(push(&mut w, 0, 2000), rep(1, 0, 0));
            assert_eq!(push(&mut w, 1, 9000), rep(1, 0, 1));
            assert_eq!(w.events.tombstone_absorbed, 1);
        } else {
            assert_eq!(push(&mut w, 1, 9000), rep(1, 0, 0));
            assert_eq!(push(&mut w, 0, 2000), rep(1, 0, 0));
        }
        assert!(remote_row(&w, HOSTS, h).is_none());
        converge(&mut w, 10_000);
        assert!(w.visible(1)[HOSTS].is_empty());
    }
}

#[test]
fn d3_pulled_tombstone_removes_row_with_pending_update() {
    let mut w = world(2);
    let h = one(&mut w, 0, 1000, host("web1", "1")).unwrap();
    full(&mut w, 0, 1000);
    pull(&mut w, 1, 1000);
    one(&mut w, 0, 2000, delete(HOSTS, h));
    push(&mut w, 0, 2000);
    one(&mut w, 1, 3000, update(HOSTS, h, &[(1, t("2"))]));
    assert_eq!(pull(&mut w, 1, 3000), rep(0, 1, 0));
    assert!(local_row(&w, 1, HOSTS, h).is_none());
    // The update is still pending; the remote absorbs it.
    assert_eq!(w.pending(1), 1);
    assert_eq!(full(&mut w, 1, 3000), rep(1, 1, 1));
    converge(&mut w, 4000);
}

// ---------------------------------------------------------------- Natural keys

#[test]
fn n1_one_live_row_per_natural_key() {
    let mut w = world(2);
    let a = one(&mut w, 0, 1000, domain("example.com", "reg-a")).unwrap();
    assert_eq!(
        w.write(0, 1000, &[domain("example.com", "reg-b")]),
        Err(WriteRefusal::NaturalKeyTaken)
    );
    // NULL is not a key: any number of rows may have it.
    let null_name = Write::Insert {
        table: DOMAINS,
        id: None,
        values: vec![Value::Null, t("x"), Value::Null],
    };
    w.write(0, 1000, &[null_name.clone(), null_name]).unwrap();
    // After a delete the key is free again (for a new id).
    one(&mut w, 0, 1000, delete(DOMAINS, a));
    assert!(one(&mut w, 0, 1000, domain("example.com", "reg-c")).is_some());
    // Both replicas insert it; the remote keeps one.
    one(&mut w, 1, 1000, domain("example.com", "reg-d"));
    converge(&mut w, 2000);
    let named: Vec<_> = w.remote_visible()[DOMAINS]
        .values()
        .filter(|row| row[0] == t("example.com"))
        .cloned()
        .collect();
    assert_eq!(named.len(), 1);
}

#[test]
fn n2_first_on_remote_survives() {
    let mut w = world(2);
    // Replica 0 writes later by the clock but reaches the remote second.
    let a = w
        .write(0, 5000, &[domain("example.com", "reg-a"), record(R0, "A", "192.0.2.1")])
        .unwrap();
    let b = w
        .write(1, 1000, &[domain("example.com", "reg-b"), record(R1, "A", "192.0.2.2")])
        .unwrap();
    assert_eq!((a[0], b[0]), (R0, R1));
    // A pending update addressed to the id that will become the alias.
    one(&mut w, 0, 5000, update(DOMAINS, R0, &[(2, Value::Int(3))]));
    assert_eq!(full(&mut w, 1, 1000), rep(2, 2, 0));
    // The merged insert is a conflict; the survivor keeps id R1. Pulled: alias
    // R0, survivor R1 and both records.
    assert_eq!(full(&mut w, 0, 5000), rep(3, 4, 1));
    assert_eq!(w.events.natural_key_merges, 1);
    let remote = w.remote_visible();
    assert_eq!(remote[DOMAINS].keys().copied().collect::<Vec<_>>(), vec![R1]);
    // Columns merged by stamp: replica 0's registrar is later.
    assert_eq!(remote[DOMAINS][&R1], vec![t("example.com"), t("reg-a"), Value::Int(3)]);
    // The child sent with the merged id points at the survivor.
    assert_eq!(remote[RECORDS][&a[1]][0], Value::Int(R1));
    assert_eq!(remote[RECORDS][&b[1]][0], Value::Int(R1));
    assert_eq!(w.visible(0), &remote);
    // Locally the alias id names no row any more.
    assert_eq!(
        w.write(0, 6000, &[update(DOMAINS, R0, &[(1, t("x"))])]),
        Err(WriteRefusal::RowNotFound)
    );
    converge(&mut w, 7000);
}

fn n3_run(pull_first: bool) -> World {
    let mut w = world(2);
    one(&mut w, 0, 1000, domain("example.com", "reg-a"));
    full(&mut w, 0, 1000);
    let b = w
        .write(1, 2000, &[domain("example.com", "reg-b"), record(R1, "A", "192.0.2.2")])
        .unwrap();
    if pull_first {
        // Merged locally: R1 becomes an alias of R0, the record moves to R0.
        assert_eq!(pull(&mut w, 1, 2000), rep(0, 1, 1));
        assert!(local_row(&w, 1, DOMAINS, R1).is_none());
        assert_eq!(local_row(&w, 1, DOMAINS, R0).unwrap()[1], t("reg-b"));
        assert_eq!(local_row(&w, 1, RECORDS, b[1]).unwrap()[0], Value::Int(R0));
        assert_eq!(w.pending(1), 2);
        // The push carries the alias; the remote merges the same way. (The
        // one merge is counted on the pull and again on the push.)
        assert_eq!(full(&mut w, 1, 2000), rep(2, 3, 1));
    } else {
        assert_eq!(full(&mut w, 1, 2000), rep(2, 3, 1));
    }
    converge(&mut w, 3000);
    w
}

#[test]
fn n3_push_and_pull_orders_agree() {
    let push_first = n3_run(false);
    let pull_first = n3_run(true);
    assert_eq!(push_first.remote_visible(), pull_first.remote_visible());
    assert_eq!(push_first.visible(1), pull_first.visible(1));
    let remote = pull_first.remote_visible();
    assert_eq!(remote[DOMAINS].keys().copied().collect::<Vec<_>>(), vec![R0]);
    assert_eq!(remote[DOMAINS][&R0], vec![t("example.com"), t("reg-b"), Value::Null]);
    assert_eq!(remote[RECORDS][&(R1 + 1)][0], Value::Int(R0));
}

#[test]
fn n4_natural_key_is_immutable() {
    let mut w = world(1);
    let d = one(&mut w, 0, 1000, domain("example.com", "reg")).unwrap();
    assert_eq!(
        w.write(0, 1000, &[update(DOMAINS, d, &[(0, t("example.org"))])]),
        Err(WriteRefusal::KeyImmutable)
    );
    assert_eq!(
        w.write(0, 1000, &[update(DOMAINS, d, &[(0, Value::Null)])]),
        Err(WriteRefusal::KeyImmutable)
    );
    // Restating the same key is fine; other columns change freely.
    w.write(
        0,
        1000,
        &[update(DOMAINS, d, &[(0, t("example.com")), (1, t("reg-2"))])],
    )
    .unwrap();
    assert_eq!(
        local_row(&w, 0, DOMAINS, d).unwrap(),
        vec![t("example.com"), t("reg-2"), Value::Null]
    );
    assert_eq!(w.pending(0), 2);
}

// ---------------------------------------------------------------- Capture

#[test]
fn c1_every_write_is_captured_in_its_transaction() {
    let mut w = world(1);
    let ids = w.write(0, 1000, &[host("web1", "1"), host("web2", "2")]).unwrap();
    w.write(0, 1000, &[update(HOSTS, ids[0], &[(1, t("9"))]), delete(HOSTS, ids[1])])
        .unwrap();
    assert_eq!(w.pending(0), 4);
    let txns: Vec<u64> = w.replicas[0].outbox.iter().map(|e| e.txn).collect();
    assert_eq!(txns, vec![1, 1, 2, 2]);
    // A refused transaction captures nothing.
    assert_eq!(
        w.write(0, 1000, &[host("web3", "3"), delete(HOSTS, 42)]),
        Err(WriteRefusal::RowNotFound)
    );
    assert_eq!(w.pending(0), 4);
    assert_eq!(push(&mut w, 0, 1000), rep(4, 0, 0));
    assert_eq!(w.remote_visible()[HOSTS].len(), 1);
}

#[test]
fn c2_pulled_rows_are_not_captured() {
    let mut w = world(2);
    let d = one(&mut w, 0, 1000, domain("example.com", "reg")).unwrap();
    one(&mut w, 0, 1000, record(d, "A", "192.0.2.1"));
    one(&mut w, 0, 1000, host("web1", "1"));
    full(&mut w, 0, 1000);
    assert_eq!(pull(&mut w, 1, 1000), rep(0, 3, 0));
    assert_eq!(w.pending(1), 0);
    // A pulled delete cascades locally, still without capture.
    one(&mut w, 0, 2000, delete(DOMAINS, d));
    full(&mut w, 0, 2000);
    assert_eq!(pull(&mut w, 1, 2000), rep(0, 2, 0));
    assert!(w.visible(1)[RECORDS].is_empty());
    assert_eq!(w.pending(1), 0);
}

#[test]
fn c3_cascade_deletes_are_captured() {
    let mut w = world(1);
    let d = one(&mut w, 0, 1000, domain("example.com", "reg")).unwrap();
    let r1 = one(&mut w, 0, 1000, record(d, "A", "192.0.2.1")).unwrap();
    let r2 = one(&mut w, 0, 1000, record(d, "MX", "mail")).unwrap();
    full(&mut w, 0, 1000);
    one(&mut w, 0, 2000, delete(DOMAINS, d));
    // The parent's delete first, then each child's, in one transaction.
    let captured: Vec<(TableIdx, i64, u64)> = w.replicas[0].outbox.iter().map(|e| (e.table, e.id, e.txn)).collect();
    assert_eq!(captured, vec![(DOMAINS, d, 4), (RECORDS, r1, 4), (RECORDS, r2, 4)]);
    assert_eq!(
        w.write(
            0,
            2000,
            &[Write::Insert {
                table: RECORDS,
                id: Some(r1),
                values: vec![Value::Null, t("A"), t("x")]
            }]
        ),
        Err(WriteRefusal::IdDeleted)
    );
    assert_eq!(push(&mut w, 0, 2000), rep(3, 0, 0));
    assert!(w.remote_visible().iter().all(|rows| rows.is_empty()));
}

// ---------------------------------------------------------------- Push

#[test]
fn s1_batch_is_one_remote_transaction() {
    let mut w = world(1);
    for i in 0..3 {
        one(&mut w, 0, 1000, host(&format!("web{i}"), "1"));
    }
    assert_eq!(
        w.sync(0, 1000, SyncKind::Push, Some(CrashPoint::PushBeforeRemoteCommit)),
        Err(SyncFailure::Crashed)
    );
    assert!(w.remote_visible()[HOSTS].is_empty());
    assert_eq!(w.remote.seq, 0);
    w.restart(0);
    assert_eq!(push(&mut w, 0, 1000), rep(3, 0, 0));
    assert_eq!(w.remote_visible()[HOSTS].len(), 3);
}

#[test]
fn s2_batches_hold_whole_transactions() {
    let config = Config {
        push_batch_max: 2,
        ..Config::default()
    };
    let mut w = World::new(test_schema(), config.clone(), 1);
    w.write(0, 1000, &[host("t1", "1")]).unwrap();
    w.write(0, 1000, &[host("t2a", "1"), host("t2b", "1")]).unwrap();
    w.write(0, 1000, &[host("t3a", "1"), host("t3b", "1"), host("t3c", "1")])
        .unwrap();
    w.write(0, 1000, &[host("t4", "1")]).unwrap();
    // 1 + 2 > 2: the first batch is the first transaction alone.
    assert_eq!(w.replicas[0].next_batch(2), 1);
    assert_eq!(
        w.sync(0, 1000, SyncKind::Push, Some(CrashPoint::PushAfterRemoteCommit)),
        Err(SyncFailure::Crashed)
    );
    assert_eq!(w.remote_visible()[HOSTS].len(), 1);
    w.restart(0);
    // Batches [t1] [t2] [t3] [t4]: t3 is never split although 3 > 2.
    assert_eq!(push(&mut w, 0, 1000), rep(7, 0, 0));
    assert_eq!(w.remote_visible()[HOSTS].len(), 7);

    let mut w = World::new(test_schema(), config, 1);
    w.write(0, 1000, &[host("t3a", "1"), host("t3b", "1"), host("t3c", "1")])
        .unwrap();
    w.write(0, 1000, &[host("t4", "1")]).unwrap();
    assert_eq!(w.replicas[0].next_batch(2), 3);
    assert_eq!(
        w.sync(0, 1000, SyncKind::Push, Some(CrashPoint::PushAfterRemoteCommit)),
        Err(SyncFailure::Crashed)
    );
    assert_eq!(w.remote_visible()[HOSTS].len(), 3);
}

#[test]
fn s3_entries_are_acknowledged_only_after_remote_commit() {
    let mut w = world(1);
    one(&mut w, 0, 1000, host("web1", "1"));
    for crash in [CrashPoint::PushBeforeRemoteCommit, CrashPoint::PushAfterRemoteCommit] {
        assert_eq!(w.sync(0, 1000, SyncKind::Push, Some(crash)), Err(SyncFailure::Crashed));
        assert_eq!(w.pending(0), 1);
        w.restart(0);
    }
    assert_eq!(w.remote_visible()[HOSTS].len(), 1);
    assert_eq!(push(&mut w, 0, 1000), rep(1, 0, 0));
    assert_eq!(w.pending(0), 0);
}

#[test]
fn s4_repush_after_crash_applies_nothing_twice() {
    let mut w = world(2);
    let h = one(&mut w, 0, 1000, host("web1", "1")).unwrap();
    one(&mut w, 0, 2000, update(HOSTS, h, &[(1, t("from-0"))]));
    assert_eq!(
        w.sync(0, 2000, SyncKind::Push, Some(CrashPoint::PushAfterRemoteCommit)),
        Err(SyncFailure::Crashed)
    );
    assert_eq!(w.remote.acked.get(&1), Some(&2));
    // Meanwhile a later write on replica 1.
    pull(&mut w, 1, 3000);
    one(&mut w, 1, 3000, update(HOSTS, h, &[(1, t("from-1"))]));
    push(&mut w, 1, 3000);
    w.restart(0);
    assert_eq!(w.pending(0), 2);
    // Both entries are acknowledged; neither is applied again (no conflict).
    let seq = w.remote.seq;
    assert_eq!(push(&mut w, 0, 3000), rep(2, 0, 0));
    assert_eq!(w.events.duplicate_pushes_skipped, 2);
    assert_eq!(w.remote.seq, seq, "no row changed");
    assert_eq!(remote_row(&w, HOSTS, h), Some(vec![t("web1"), t("from-1")]));
    converge(&mut w, 4000);
}

#[test]
fn s5_crash_points_leave_what_they_say() {
    // PushBeforeRemoteCommit: remote untouched, outbox untouched, replica down.
    let mut w = world(2);
    one(&mut w, 0, 1000, host("web1", "1"));
    assert_eq!(
        w.sync(0, 1000, SyncKind::Full, Some(CrashPoint::PushBeforeRemoteCommit)),
        Err(SyncFailure::Crashed)
    );
    assert!(w.remote_visible()[HOSTS].is_empty());
    assert_eq!(w.pending(0), 1);
    assert_eq!(w.sync(0, 1000, SyncKind::Pull, None), Err(SyncFailure::Down));
    assert_eq!(w.write(0, 1000, &[host("web2", "2")]), Err(WriteRefusal::Down));
    w.restart(0);

    // PushAfterRemoteCommit: remote has the batch, outbox still has it.
    assert_eq!(
        w.sync(0, 1000, SyncKind::Push, Some(CrashPoint::PushAfterRemoteCommit)),
        Err(SyncFailure::Crashed)
    );
    assert_eq!(w.remote_visible()[HOSTS].len(), 1);
    assert_eq!(w.pending(0), 1);
    w.restart(0);
    assert_eq!(full(&mut w, 0, 1000), rep(1, 1, 0));

    // PullBeforeLocalCommit: nothing applied, cursor unchanged.
    assert_eq!(
        w.sync(1, 1000, SyncKind::Pull, Some(CrashPoint::PullBeforeLocalCommit)),
        Err(SyncFailure::Crashed)
    );
    assert!(w.visible(1)[HOSTS].is_empty());
    assert_eq!(w.replicas[1].cursor, 0);
    w.restart(1);
    assert_eq!(pull(&mut w, 1, 1000), rep(0, 1, 0));

    // A crash point the step does not reach does not fire.
    assert_eq!(
        w.sync(1, 1000, SyncKind::Push, Some(CrashPoint::PushBeforeRemoteCommit)),
        Ok(rep(0, 0, 0))
    );
    assert_eq!(
        w.sync(1, 1000, SyncKind::Pull, Some(CrashPoint::PushAfterRemoteCommit)),
        Ok(rep(0, 0, 0))
    );
    // crash() stops a replica at once; its committed state survives.
    one(&mut w, 1, 1000, host("web3", "3"));
    w.crash(1);
    w.restart(1);
    assert_eq!(w.pending(1), 1);
}

#[test]
fn s5_full_sync_crashing_in_pull_keeps_its_push() {
    let mut w = world(1);
    one(&mut w, 0, 1000, host("web1", "1"));
    assert_eq!(
        w.sync(0, 1000, SyncKind::Full, Some(CrashPoint::PullBeforeLocalCommit)),
        Err(SyncFailure::Crashed)
    );
    // The push part committed and was acknowledged; no report says so.
    assert_eq!(w.pending(0), 0);
    assert_eq!(w.remote_visible()[HOSTS].len(), 1);
    assert_eq!(w.replicas[0].cursor, 0);
    w.restart(0);
    assert_eq!(full(&mut w, 0, 1000), rep(0, 1, 0));
}

#[test]
fn s6_report_counts() {
    let mut w = world(2);
    let d = one(&mut w, 0, 1000, domain("example.com", "reg")).unwrap();
    let h = one(&mut w, 0, 1000, host("web1", "1")).unwrap();
    // pushed = entries acknowledged; pulled = remote rows changed after the cursor.
    assert_eq!(full(&mut w, 0, 1000), rep(2, 2, 0));
    assert_eq!(full(&mut w, 1, 1000), rep(0, 2, 0));

    one(&mut w, 1, 2000, update(HOSTS, h, &[(1, t("from-1"))]));
    w.write(0, 3000, &[update(HOSTS, h, &[(1, t("from-0"))]), delete(DOMAINS, d)])
        .unwrap();
    assert_eq!(full(&mut w, 0, 3000), rep(2, 2, 0));
    // The update loses to a later stamp (1 conflict); the pull brings the
    // host back and the domain's tombstone (2 rows, tombstones count).
    assert_eq!(full(&mut w, 1, 4000), rep(1, 2, 1));
    assert_eq!(local_row(&w, 1, HOSTS, h).unwrap()[1], t("from-0"));
    // Replica 0 pulls the host again: replica 1's losing update bumped it.
    assert_eq!(full(&mut w, 0, 4000), rep(0, 1, 0));
    // Nothing moved: a sync must say so.
    assert_eq!(full(&mut w, 1, 4000), rep(0, 0, 0));

    // A pending local column kept over an older remote value is a conflict too.
    one(&mut w, 1, 9000, update(HOSTS, h, &[(1, t("late-1"))]));
    one(&mut w, 0, 5000, update(HOSTS, h, &[(1, t("early-0"))]));
    push(&mut w, 0, 5000);
    assert_eq!(pull(&mut w, 1, 9000), rep(0, 1, 1));
    assert_eq!(full(&mut w, 1, 9000), rep(1, 1, 0));
    assert_eq!(w.events.conflicts_won_locally, 1);
    converge(&mut w, 10_000);
}

// ---------------------------------------------------------------- Pull

#[test]
fn p1_cursor_is_the_remote_seq_pulled_up_to() {
    let mut w = world(2);
    one(&mut w, 0, 1000, host("web1", "1"));
    one(&mut w, 0, 1000, host("web2", "2"));
    push(&mut w, 0, 1000);
    assert_eq!(pull(&mut w, 1, 1000), rep(0, 2, 0));
    assert_eq!(w.replicas[1].cursor, 2);
    assert_eq!(pull(&mut w, 1, 1000), rep(0, 0, 0));
    one(&mut w, 0, 1000, host("web3", "3"));
    push(&mut w, 0, 1000);
    assert_eq!(pull(&mut w, 1, 1000), rep(0, 1, 0));
    assert_eq!(w.replicas[1].cursor, 3);
}

#[test]
fn p2_tombstones_and_aliases_before_live_rows() {
    let mut w = world(3);
    let y = one(&mut w, 0, 1000, domain("example.com", "reg-y")).unwrap();
    let ry = one(&mut w, 0, 1000, record(y, "A", "192.0.2.1")).unwrap();
    full(&mut w, 0, 1000);
    pull(&mut w, 1, 1000);
    pull(&mut w, 2, 1000);
    one(&mut w, 2, 1000, update(DOMAINS, y, &[(1, t("reg-2"))]));
    // Y dies; a new X takes its name; then an absorbed update re-bumps dead Y,
    // so in plain seq order live X comes before dead Y.
    one(&mut w, 0, 2000, delete(DOMAINS, y));
    full(&mut w, 0, 2000);
    let x = one(&mut w, 0, 3000, domain("example.com", "reg-x")).unwrap();
    full(&mut w, 0, 3000);
    assert_eq!(push(&mut w, 2, 3000), rep(1, 0, 1));
    // Replica 1 still holds Y and its record: dead Y must be applied first,
    // else live X would take Y (and its record) over by natural key.
    assert_eq!(pull(&mut w, 1, 3000), rep(0, 3, 0));
    assert_eq!(w.visible(1)[DOMAINS].keys().copied().collect::<Vec<_>>(), vec![x]);
    assert!(local_row(&w, 1, RECORDS, ry).is_none());
    assert_eq!(w.visible(1), &w.remote_visible());
    assert_eq!(w.events.natural_key_merges, 0);
}

#[test]
fn p3_pending_column_kept_only_if_later() {
    let mut w = world(2);
    let h = one(&mut w, 0, 1000, host("web1", "10.0.0.1")).unwrap();
    full(&mut w, 0, 1000);
    pull(&mut w, 1, 1000);
    // Replica 1: hostname at 2000 (earlier), ip at 5000 (later).
    one(&mut w, 1, 2000, update(HOSTS, h, &[(0, t("local-name"))]));
    one(&mut w, 1, 5000, update(HOSTS, h, &[(1, t("local-ip"))]));
    one(
        &mut w,
        0,
        3000,
        update(HOSTS, h, &[(0, t("remote-name")), (1, t("remote-ip"))]),
    );
    push(&mut w, 0, 3000);
    assert_eq!(pull(&mut w, 1, 5000), rep(0, 1, 1));
    assert_eq!(local_row(&w, 1, HOSTS, h), Some(vec![t("remote-name"), t("local-ip")]));
    assert_eq!(w.pending(1), 2);
    // The push agrees: hostname loses on the remote too (1 conflict).
    assert_eq!(full(&mut w, 1, 5000), rep(2, 1, 1));
    assert_eq!(remote_row(&w, HOSTS, h), Some(vec![t("remote-name"), t("local-ip")]));
    converge(&mut w, 6000);
}

#[test]
fn p4_pending_delete_skips_incoming_live_row() {
    let mut w = world(2);
    let h = one(&mut w, 0, 1000, host("web1", "1")).unwrap();
    full(&mut w, 0, 1000);
    pull(&mut w, 1, 1000);
    one(&mut w, 1, 2000, delete(HOSTS, h));
    one(&mut w, 0, 3000, update(HOSTS, h, &[(1, t("2"))]));
    push(&mut w, 0, 3000);
    // Received and counted, not applied, not a conflict.
    assert_eq!(pull(&mut w, 1, 3000), rep(0, 1, 0));
    assert!(w.visible(1)[HOSTS].is_empty());
    assert_eq!(full(&mut w, 1, 3000), rep(1, 1, 0));
    assert!(w.remote_visible()[HOSTS].is_empty());
    converge(&mut w, 4000);
}

#[test]
fn p5_pull_and_cursor_are_one_local_transaction() {
    let mut w = world(2);
    one(&mut w, 0, 1000, host("web1", "1"));
    one(&mut w, 0, 500_000, host("web2", "2"));
    push(&mut w, 0, 500_000);
    let before = w.replicas[1].clone();
    for (now, crash, failure) in [
        (1000, Some(CrashPoint::PullBeforeLocalCommit), SyncFailure::Crashed),
        (1000, None, SyncFailure::ClockDrift),
    ] {
        assert_eq!(w.sync(1, now, SyncKind::Pull, crash), Err(failure));
        w.restart(1);
        assert_eq!(w.visible(1), &before.tables);
        assert_eq!(w.replicas[1].cursor, before.cursor);
        assert_eq!(w.replicas[1].hlc, before.hlc);
    }
    assert_eq!(pull(&mut w, 1, 500_000), rep(0, 2, 0));
    assert_eq!(w.replicas[1].cursor, 2);
}

// ---------------------------------------------------------------- Locks and failures

#[test]
fn locks_remote_locks_make_push_and_pull_busy() {
    let mut w = world(2);
    one(&mut w, 0, 1000, host("web1", "1"));
    for (lock, pull_busy) in [
        (RemoteLock::Shared, false),
        (RemoteLock::Reserved, false),
        (RemoteLock::Exclusive, true),
    ] {
        w.lock_remote(Some(lock));
        assert_eq!(
            w.sync(0, 1000, SyncKind::Push, None),
            Err(SyncFailure::Busy),
            "{lock:?}"
        );
        assert_eq!(
            w.sync(0, 1000, SyncKind::Full, None),
            Err(SyncFailure::Busy),
            "{lock:?}"
        );
        assert_eq!(w.pending(0), 1);
        assert!(w.remote_visible()[HOSTS].is_empty());
        let pulled = w.sync(1, 1000, SyncKind::Pull, None);
        assert_eq!(
            pulled,
            if pull_busy {
                Err(SyncFailure::Busy)
            } else {
                Ok(rep(0, 0, 0))
            },
            "{lock:?}"
        );
        // A push with nothing to push takes no lock.
        assert_eq!(w.sync(1, 1000, SyncKind::Push, None), Ok(rep(0, 0, 0)));
    }
    w.lock_remote(None);
    assert_eq!(push(&mut w, 0, 1000), rep(1, 0, 0));
}

#[test]
fn locks_cache_lock_makes_write_push_and_pull_busy() {
    let mut w = world(2);
    one(&mut w, 0, 1000, host("web1", "1"));
    push(&mut w, 0, 1000);
    one(&mut w, 0, 1000, host("web2", "2"));
    w.lock_cache(0, true);
    assert_eq!(w.write(0, 1000, &[host("web3", "3")]), Err(WriteRefusal::Busy));
    assert_eq!(w.sync(0, 1000, SyncKind::Push, None), Err(SyncFailure::Busy));
    assert_eq!(w.sync(0, 1000, SyncKind::Pull, None), Err(SyncFailure::Busy));
    assert_eq!(w.pending(0), 1);
    assert_eq!(w.replicas[0].cursor, 0);
    // Other replicas are not affected.
    assert_eq!(pull(&mut w, 1, 1000), rep(0, 1, 0));
    w.lock_cache(0, false);
    assert_eq!(full(&mut w, 0, 1000), rep(1, 2, 0));
}

#[test]
fn locks_order_of_checks() {
    let mut w = world(2);
    one(&mut w, 0, 1000, host("web1", "1"));
    // A reader blocks only the commit: the crash before commit comes first.
    w.lock_remote(Some(RemoteLock::Shared));
    assert_eq!(
        w.sync(0, 1000, SyncKind::Push, Some(CrashPoint::PushBeforeRemoteCommit)),
        Err(SyncFailure::Crashed)
    );
    w.restart(0);
    assert_eq!(
        w.sync(0, 1000, SyncKind::Push, Some(CrashPoint::PushAfterRemoteCommit)),
        Err(SyncFailure::Busy)
    );
    // A writer blocks the push before its crash point.
    w.lock_remote(Some(RemoteLock::Reserved));
    assert_eq!(
        w.sync(0, 1000, SyncKind::Push, Some(CrashPoint::PushBeforeRemoteCommit)),
        Err(SyncFailure::Busy)
    );
    // Busy is checked before the pull's crash point; the replica stays up.
    w.lock_remote(Some(RemoteLock::Exclusive));
    assert_eq!(
        w.sync(1, 1000, SyncKind::Pull, Some(CrashPoint::PullBeforeLocalCommit)),
        Err(SyncFailure::Busy)
    );
    assert!(w.replicas[1].up);
    assert!(w.remote_visible()[HOSTS].is_empty());
    // Down comes before every lock.
    w.crash(0);
    w.lock_cache(0, true);
    assert_eq!(w.write(0, 1000, &[host("web2", "2")]), Err(WriteRefusal::Down));
    assert_eq!(w.sync(0, 1000, SyncKind::Push, None), Err(SyncFailure::Down));
    assert_eq!(w.pending(0), 1);
}

#[test]
fn n4_a_merged_away_id_cannot_be_reused() {
    // Found while writing the spec: a replica could insert again with the id
    // of its row that a pull had merged into the survivor; the push then
    // merged that insert into the survivor and renamed it.
    let mut w = world(2);
    one(&mut w, 0, 1_000, domain("k.com", "r0"));
    push(&mut w, 0, 1_000);
    let merged = one(&mut w, 1, 2_000, domain("k.com", "r1")).expect("minted");
    pull(&mut w, 1, 3_000);
    assert!(local_row(&w, 1, DOMAINS, merged).is_none(), "merged away locally");
    let again = Write::Insert {
        table: DOMAINS,
        id: Some(merged),
        values: vec![t("other.com"), t("r1"), Value::Null],
    };
    assert_eq!(w.write(1, 4_000, &[again]), Err(WriteRefusal::IdDeleted));
}

#[test]
fn d2_pulled_death_cascades_to_children_of_a_row_merged_into_it() {
    // Replica 0's domain is merged on the remote into replica 1's; replica 2
    // deletes the survivor; replica 0, pulling for the first time since,
    // holds a pending record under its merged-away domain. The pull re-points
    // the record to the survivor (N3) and the survivor's death takes it
    // along (D2), although replica 0 never held the survivor.
    let mut w = world(3);
    let survivor = one(&mut w, 1, 1000, domain("a.example", "alpha")).unwrap();
    assert_eq!(push(&mut w, 1, 1000), rep(1, 0, 0));
    let merged = one(&mut w, 0, 2000, domain("a.example", "alpha")).unwrap();
    assert_eq!(pull(&mut w, 2, 2000), rep(0, 1, 0));
    assert_eq!(push(&mut w, 0, 2000), rep(1, 0, 1));
    one(&mut w, 2, 3000, delete(DOMAINS, survivor));
    assert_eq!(push(&mut w, 2, 3000), rep(1, 0, 0));
    let child = one(&mut w, 0, 4000, record(merged, "MX", "alpha")).unwrap();

    assert_eq!(pull(&mut w, 0, 5000), rep(0, 2, 0));
    assert!(w.visible(0)[DOMAINS].is_empty());
    assert!(local_row(&w, 0, RECORDS, child).is_none());
    assert_eq!(w.pending(0), 1);
    // Pushed, the record arrives dead (1 conflict).
    assert_eq!(push(&mut w, 0, 5000), rep(1, 0, 1));
    assert!(remote_row(&w, RECORDS, child).is_none());
    converge(&mut w, 6000);
}

#[test]
fn assumptions_replica_ids_stay_below_replicas_max() {
    // The last replica id's space ends at 2^62: far inside i64.
    let (lo, hi) = id_space(syncgate_model::REPLICAS_MAX - 1);
    assert_eq!((lo, hi), ((1_i64 << 62) - (1 << 40), 1 << 62));
}

#[test]
fn s4_applied_seq_only_grows_when_a_repush_cuts_smaller_batches() {
    // Found by the gate once push limits were drawn per case: replica 0
    // pushes three one-write transactions in one batch and crashes after the
    // remote commit (applied seq 3); a re-push may end a batch below 3. The
    // applied seq stays at 3 and nothing is applied twice.
    let mut w = World::new(test_schema(), Config::default(), 1);
    for name in ["h1", "h2", "h3"] {
        one(&mut w, 0, 1000, host(name, "1"));
    }
    assert_eq!(
        w.sync(0, 1000, SyncKind::Push, Some(CrashPoint::PushAfterRemoteCommit)),
        Err(SyncFailure::Crashed)
    );
    assert_eq!(w.remote.acked.get(&1), Some(&3));
    w.restart(0);
    w.config.push_batch_max = 1;
    let seq = w.remote.seq;
    assert_eq!(push(&mut w, 0, 2000), rep(3, 0, 0));
    assert_eq!(w.remote.acked.get(&1), Some(&3), "the applied seq never goes down");
    assert_eq!(w.remote.seq, seq, "nothing applied twice");
    assert_eq!(w.events.duplicate_pushes_skipped, 3);
}

#[test]
fn l1_a_busy_step_tries_and_waits_by_the_bounded_backoff() {
    let tries = |busy_retries_max, backoff_base_ms, backoff_max_ms| {
        Config {
            busy_retries_max,
            backoff_base_ms,
            backoff_max_ms,
            ..Config::default()
        }
        .busy_tries()
    };
    // The defaults: 2 retries, 1 then 2 ms.
    assert_eq!(
        Config::default().busy_tries(),
        BusyTries {
            attempts: 3,
            waited_ms: 3
        }
    );
    // 50, 100, then 200 (the cap) ms.
    assert_eq!(
        tries(3, 50, 200),
        BusyTries {
            attempts: 4,
            waited_ms: 350
        }
    );
    // The cap holds every wait after it is reached: 1, 2, 4, 4, 4.
    assert_eq!(
        tries(5, 1, 4),
        BusyTries {
            attempts: 6,
            waited_ms: 15
        }
    );
    // No retries: one attempt, no wait; no backoff: retries without waiting.
    assert_eq!(
        tries(0, 50, 200),
        BusyTries {
            attempts: 1,
            waited_ms: 0
        }
    );
    assert_eq!(
        tries(3, 0, 0),
        BusyTries {
            attempts: 4,
            waited_ms: 0
        }
    );
}
