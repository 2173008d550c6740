//! Each contract property fires on a small hand-made history, and stays
//! quiet on the correct version of the same history (so no check here can
//! pass by never firing).

use syncgate::check::contract::{
    check_abort_left_pending, check_converged, check_final, check_integrity, check_no_aborted_read,
    check_not_resurrected, check_pushed_on_commit, check_read_your_writes, Expect, Promises,
};
use syncgate::check::Invariant;
use syncgate::history::{History, WriteKind, WriteRecord};
use syncgate::subject::Answer;
use syncgate_model::{test_schema, Rows, Tables, Value};
use syncgate_protocol::{
    DeletePolicy, IdPolicy, MergePolicy, NaturalKeyPolicy, PendingAfterSync, Policies, PushPolicy, TransactionsPolicy,
};

const DOMAINS: usize = 0;
const HOSTS: usize = 1;
const RECORDS: usize = 2;

fn policies(merge: MergePolicy) -> Policies {
    Policies {
        merge,
        delete: DeletePolicy::DeleteWins,
        natural_keys: NaturalKeyPolicy::Merge,
        explicit_ids: false,
        push: PushPolicy::Explicit,
        pending_after_sync: PendingAfterSync::Zero,
        ids: IdPolicy::Stable,
        transactions: TransactionsPolicy::Unit,
        consistency: syncgate_protocol::ConsistencyPolicy::Eventual,
        references: syncgate_protocol::ReferencesPolicy::Enforced,
    }
}

fn t(s: &str) -> Value {
    Value::Text(s.into())
}

fn tables(rows: &[(usize, i64, Vec<Value>)]) -> Tables {
    let mut out: Tables = vec![Rows::new(); 3];
    for (table, id, values) in rows {
        out[*table].insert(*id, values.clone());
    }
    out
}

fn write(replica: usize, step: usize, table: usize, id: i64, kind: WriteKind, set: Vec<(usize, Value)>) -> WriteRecord {
    let key = if table == DOMAINS {
        set.iter().find(|(c, _)| *c == 0).map(|(_, v)| v.clone())
    } else {
        None
    };
    WriteRecord {
        n: 0,
        replica,
        step,
        seq: 0,
        table,
        id,
        kind,
        set,
        key,
        cascade: Vec::new(),
        knew: Vec::new(),
        outside: false,
        image: None,
    }
}

fn host_insert(replica: usize, step: usize, id: i64, hostname: &str) -> WriteRecord {
    write(
        replica,
        step,
        HOSTS,
        id,
        WriteKind::Insert,
        vec![(0, t(hostname)), (1, t("ip"))],
    )
}

fn host_update(replica: usize, step: usize, id: i64, hostname: &str) -> WriteRecord {
    write(replica, step, HOSTS, id, WriteKind::Update, vec![(0, t(hostname))])
}

fn failing<T: std::fmt::Debug>(result: Result<T, syncgate::check::Violation>) -> (Invariant, String) {
    let v = result.expect_err("the check must fire");
    (v.invariant, v.detail)
}

/// r0 inserts host 1 and pushes; r1 pulls and renames it (w2); r1 pushes.
fn rename_after_pull() -> History {
    let mut h = History::new(2);
    h.record(host_insert(0, 1, 1, "a.w1"));
    h.pushed_all(2, 0);
    h.pulled(3, 1);
    h.record(host_update(1, 4, 1, "b.w2"));
    h.pushed_all(5, 1);
    h
}

#[test]
fn no_lost_write_names_the_write_that_causally_follows() {
    let h = rename_after_pull();
    let schema = test_schema();
    let good = tables(&[(HOSTS, 1, vec![t("b.w2"), t("ip")])]);
    assert_eq!(check_final(&schema, &h, &policies(MergePolicy::Column), &good), Ok(()));
    // Wall-clock last-writer-wins with r0's clock ahead picks w1.
    let lost = tables(&[(HOSTS, 1, vec![t("a.w1"), t("ip")])]);
    let (invariant, detail) = failing(check_final(&schema, &h, &policies(MergePolicy::Column), &lost));
    assert_eq!(invariant, Invariant::NoLostWrite);
    assert!(
        detail.contains("w2 on r1 causally follows w1 on r0 (r0 pushed at step 2, r1 pulled at step 3)"),
        "{detail}"
    );
}

#[test]
fn concurrent_writes_may_end_either_way() {
    // No pull between them: neither follows the other, both outcomes pass.
    let mut h = History::new(2);
    h.record(host_insert(0, 1, 1, "a.w1"));
    h.pushed_all(2, 0);
    h.pulled(3, 1);
    h.record(host_update(0, 4, 1, "x.w2"));
    h.record(host_update(1, 5, 1, "y.w3"));
    let schema = test_schema();
    for name in ["x.w2", "y.w3"] {
        let end = tables(&[(HOSTS, 1, vec![t(name), t("ip")])]);
        assert_eq!(
            check_final(&schema, &h, &policies(MergePolicy::Column), &end),
            Ok(()),
            "{name}"
        );
    }
}

#[test]
fn no_lost_write_fires_for_a_row_that_never_arrived() {
    let mut h = History::new(1);
    h.record(host_insert(0, 1, 7, "a.w1"));
    let schema = test_schema();
    let (invariant, detail) = failing(check_final(&schema, &h, &policies(MergePolicy::Column), &tables(&[])));
    assert_eq!(invariant, Invariant::NoLostWrite);
    assert!(detail.contains("w1 on r0 inserted hosts/7 at step 1"), "{detail}");
}

#[test]
fn a_row_whose_parent_was_deleted_may_be_gone() {
    let mut h = History::new(2);
    h.record(write(
        0,
        1,
        DOMAINS,
        1,
        WriteKind::Insert,
        vec![(0, t("a.example")), (1, t("r.w1"))],
    ));
    h.record(write(
        1,
        2,
        RECORDS,
        9,
        WriteKind::Insert,
        vec![(0, Value::Int(1)), (1, t("A.w2"))],
    ));
    h.record(write(0, 3, DOMAINS, 1, WriteKind::Delete, vec![]));
    let schema = test_schema();
    assert_eq!(
        check_final(&schema, &h, &policies(MergePolicy::Column), &tables(&[])),
        Ok(())
    );
}

#[test]
fn no_clobber_fires_when_two_inserts_name_one_row() {
    // Autoincrement ids: both replicas mint hosts/1; INSERT OR REPLACE keeps one.
    let mut h = History::new(2);
    h.record(host_insert(0, 1, 1, "a.w1"));
    h.record(host_insert(1, 2, 1, "b.w2"));
    let schema = test_schema();
    let end = tables(&[(HOSTS, 1, vec![t("b.w2"), t("ip")])]);
    let (invariant, detail) = failing(check_final(&schema, &h, &policies(MergePolicy::Row), &end));
    assert_eq!(invariant, Invariant::NoClobber);
    assert!(
        detail.contains("w1 on r0 inserted hosts/1 at step 1 and w2 on r1 inserted hosts/1 at step 2"),
        "{detail}"
    );
}

#[test]
fn no_resurrection_fires_for_a_deleted_row_at_the_end() {
    let mut h = History::new(2);
    h.record(host_insert(0, 1, 1, "a.w1"));
    h.record(write(0, 2, HOSTS, 1, WriteKind::Delete, vec![]));
    let schema = test_schema();
    let end = tables(&[(HOSTS, 1, vec![t("a.w1"), t("ip")])]);
    let (invariant, detail) = failing(check_final(&schema, &h, &policies(MergePolicy::Column), &end));
    assert_eq!(invariant, Invariant::NoResurrection);
    assert!(detail.contains("w2 on r0 at step 2 deleted it"), "{detail}");
    // Per step too: the deleting replica never sees it again.
    let (invariant, _) = failing(check_not_resurrected(
        &schema,
        "r0",
        &h,
        0,
        &end,
        &policies(MergePolicy::Column),
    ));
    assert_eq!(invariant, Invariant::NoResurrection);
    assert_eq!(
        check_final(&schema, &h, &policies(MergePolicy::Column), &tables(&[])),
        Ok(())
    );
}

#[test]
fn row_level_engines_end_with_the_row_a_latest_write_left() {
    let mut h = History::new(2);
    let mut w1 = host_insert(0, 1, 1, "a.w1");
    w1.image = Some(vec![t("a.w1"), t("ip")]);
    h.record(w1);
    h.pushed_all(2, 0);
    h.pulled(3, 1);
    let mut w2 = write(1, 4, HOSTS, 1, WriteKind::Update, vec![(1, t("ip.w2"))]);
    w2.image = Some(vec![t("a.w1"), t("ip.w2")]);
    h.record(w2);
    let schema = test_schema();
    let good = tables(&[(HOSTS, 1, vec![t("a.w1"), t("ip.w2")])]);
    assert_eq!(check_final(&schema, &h, &policies(MergePolicy::Row), &good), Ok(()));
    let stale = tables(&[(HOSTS, 1, vec![t("a.w1"), t("ip")])]);
    let (invariant, detail) = failing(check_final(&schema, &h, &policies(MergePolicy::Row), &stale));
    assert_eq!(invariant, Invariant::NoLostWrite);
    assert!(
        detail.contains("it is the row w1 left, but w2 on r1 causally follows w1 on r0"),
        "{detail}"
    );
}

#[test]
fn a_natural_key_merge_carries_the_merged_rows_writes() {
    // r0 and r1 insert a.example apart; r1's row merges into r0's and its
    // registrar (written later, concurrently) wins.
    let mut h = History::new(2);
    h.record(write(
        0,
        1,
        DOMAINS,
        1,
        WriteKind::Insert,
        vec![(0, t("a.example")), (1, t("x.w1")), (2, Value::Null)],
    ));
    h.record(write(
        1,
        2,
        DOMAINS,
        2,
        WriteKind::Insert,
        vec![(0, t("a.example")), (1, t("y.w2")), (2, Value::Null)],
    ));
    let schema = test_schema();
    let end = tables(&[(DOMAINS, 1, vec![t("a.example"), t("y.w2"), Value::Null])]);
    assert_eq!(check_final(&schema, &h, &policies(MergePolicy::Column), &end), Ok(()));
    let made_up = tables(&[(DOMAINS, 1, vec![t("a.example"), t("z.w9"), Value::Null])]);
    let (invariant, _) = failing(check_final(&schema, &h, &policies(MergePolicy::Column), &made_up));
    assert_eq!(invariant, Invariant::NoLostWrite);
}

#[test]
fn read_your_writes_fires_when_the_cache_does_not_show_a_write() {
    let schema = test_schema();
    let expect = [Expect::Row {
        table: HOSTS,
        id: 1,
        values: vec![(0, t("a.w1"))],
    }];
    let cache = tables(&[(HOSTS, 1, vec![t("a.w1"), t("ip")])]);
    assert_eq!(check_read_your_writes(&schema, "r0", "w1", &expect, &cache), Ok(()));
    let (invariant, detail) = failing(check_read_your_writes(&schema, "r0", "w1", &expect, &tables(&[])));
    assert_eq!(invariant, Invariant::ReadYourWrites);
    assert!(detail.contains("hosts/1 is not in the cache"), "{detail}");
    let gone = [Expect::Gone { table: HOSTS, id: 1 }];
    assert_eq!(
        failing(check_read_your_writes(&schema, "r0", "w2", &gone, &cache)).0,
        Invariant::ReadYourWrites
    );
}

#[test]
fn integrity_fires_on_a_duplicate_key_and_a_dangling_reference() {
    let schema = test_schema();
    let twice = tables(&[
        (DOMAINS, 1, vec![t("a.example"), Value::Null, Value::Null]),
        (DOMAINS, 2, vec![t("a.example"), Value::Null, Value::Null]),
    ]);
    assert_eq!(
        failing(check_integrity(&schema, "remote", &twice, &Promises::STRICT)).0,
        Invariant::Integrity
    );
    let dangling = tables(&[(RECORDS, 5, vec![Value::Int(1), t("A"), t("v")])]);
    let (invariant, detail) = failing(check_integrity(&schema, "r1", &dangling, &Promises::STRICT));
    assert_eq!(invariant, Invariant::Integrity);
    assert!(
        detail.contains("dns_records/5.domain_id references missing domains/1"),
        "{detail}"
    );
}

#[test]
fn convergence_fires_when_a_replica_differs_from_the_remote() {
    let schema = test_schema();
    let remote = tables(&[(HOSTS, 1, vec![t("a.w1"), t("ip")])]);
    assert_eq!(
        check_converged(&schema, &[remote.clone(), remote.clone()], &remote, false),
        Ok(())
    );
    let (invariant, detail) = failing(check_converged(&schema, &[remote.clone(), tables(&[])], &remote, false));
    assert_eq!(invariant, Invariant::Convergence);
    assert!(
        detail.contains("hosts/1: the remote has (\"a.w1\", \"ip\"), r1 nothing"),
        "{detail}"
    );
}

#[test]
fn an_aborted_read_is_named_g1a() {
    // r0 commits host 1 (w1), then rolls back a rename of it (w2).
    let mut h = History::new(1);
    h.record(host_insert(0, 1, 1, "a.w1"));
    h.record_aborted(0, 2, HOSTS);
    let schema = test_schema();
    let clean = tables(&[(HOSTS, 1, vec![t("a.w1"), t("ip")])]);
    assert_eq!(check_no_aborted_read(&schema, "remote", &h, &clean), Ok(()));
    // A capture hook kept the rolled-back rename and pushed it.
    let leaked = tables(&[(HOSTS, 1, vec![t("b.w2"), t("ip")])]);
    let (invariant, detail) = failing(check_no_aborted_read(&schema, "remote", &h, &leaked));
    assert_eq!(invariant, Invariant::NoAbortedRead);
    assert!(
        detail.starts_with("G1a (aborted read): remote: hosts/1.hostname"),
        "{detail}"
    );
    assert!(detail.contains("w2 (r0, step 2)"), "{detail}");
    // And pending may not move for it.
    assert_eq!(check_abort_left_pending(0, "w2", 1, &Answer::Ok(1)), Ok(()));
    let (invariant, detail) = failing(check_abort_left_pending(0, "w2", 1, &Answer::Ok(2)));
    assert_eq!(invariant, Invariant::TruthfulStatus);
    assert!(
        detail.contains("2 pending after the application rolled back w2, 1 before"),
        "{detail}"
    );
}

#[test]
fn a_write_through_claim_of_nothing_pending_is_held_to_the_remote() {
    // r0 inserts host 1 (w1) and says it pushed it inside the commit.
    let mut h = History::new(1);
    h.record(host_insert(0, 1, 1, "a.w1"));
    h.record(host_update(0, 2, 1, "b.w2"));
    let schema = test_schema();
    let policies = policies(MergePolicy::Column);
    let claimed = h.writes.clone();
    let there = tables(&[(HOSTS, 1, vec![t("b.w2"), t("ip")])]);
    assert_eq!(
        check_pushed_on_commit(&schema, 0, "w2", &h, &claimed, &policies, &there),
        Ok(())
    );
    // The push failed inside the commit and was dropped: nothing arrived.
    let (invariant, detail) = failing(check_pushed_on_commit(
        &schema,
        0,
        "w2",
        &h,
        &claimed,
        &policies,
        &tables(&[]),
    ));
    assert_eq!(invariant, Invariant::TruthfulStatus);
    assert!(detail.contains("the remote has no hosts/1 (w1 wrote it)"), "{detail}");
    assert!(detail.contains("the claim \"0 pending\" is false"), "{detail}");
    // Only the insert arrived: the rename it follows did not.
    let stale = tables(&[(HOSTS, 1, vec![t("a.w1"), t("ip")])]);
    let (invariant, detail) = failing(check_pushed_on_commit(
        &schema, 0, "w2", &h, &claimed, &policies, &stale,
    ));
    assert_eq!(invariant, Invariant::TruthfulStatus);
    assert!(
        detail.contains("holds \"a.w1\" of w1, which w2 causally follows"),
        "{detail}"
    );
}

/// Found by examples/write-through-sync (seed wt-1/8): r0 inserts host 1
/// (w1, pushed inside its commit); r1 pulls it and changes its ip (w2,
/// pushed); r0, which never pulled w2, renames the host (w3, pushed). The
/// two are concurrent; under `merge: "row"` w2's whole row may win, and it
/// carries w1's hostname. That is no dropped push.
#[test]
fn write_through_under_row_merge_accepts_a_concurrent_winners_row() {
    let mut h = History::new(2);
    h.record(host_insert(0, 1, 1, "a.w1"));
    h.pushed_all(1, 0);
    h.pulled(2, 1);
    h.record(write(1, 3, HOSTS, 1, WriteKind::Update, vec![(1, t("ip.w2"))]));
    h.pushed_all(3, 1);
    h.record(host_update(0, 4, 1, "c.w3"));
    let schema = test_schema();
    let claimed = vec![h.writes[2].clone()];
    let w2_won = tables(&[(HOSTS, 1, vec![t("a.w1"), t("ip.w2")])]);
    assert_eq!(
        check_pushed_on_commit(&schema, 0, "w3", &h, &claimed, &policies(MergePolicy::Row), &w2_won),
        Ok(())
    );
    // Under column merges the hostname cell has no concurrent winner: w1's
    // value there means w3 never arrived.
    let (invariant, detail) = failing(check_pushed_on_commit(
        &schema,
        0,
        "w3",
        &h,
        &claimed,
        &policies(MergePolicy::Column),
        &w2_won,
    ));
    assert_eq!(invariant, Invariant::TruthfulStatus);
    assert!(
        detail.contains("holds \"a.w1\" of w1, which w3 causally follows"),
        "{detail}"
    );
    // Nor does row merge excuse a row nobody else wrote: with no w2, w1's
    // hostname on the remote is w3's push dropped.
    let mut alone = History::new(1);
    alone.record(host_insert(0, 1, 1, "a.w1"));
    alone.record(host_update(0, 2, 1, "c.w3"));
    let claimed = vec![alone.writes[1].clone()];
    let stale = tables(&[(HOSTS, 1, vec![t("a.w1"), t("ip")])]);
    let (invariant, _) = failing(check_pushed_on_commit(
        &schema,
        0,
        "w3",
        &alone,
        &claimed,
        &policies(MergePolicy::Row),
        &stale,
    ));
    assert_eq!(invariant, Invariant::TruthfulStatus);
}

#[test]
fn an_id_given_again_after_a_delete_is_id_reuse_not_a_resurrection() {
    // r0 inserts host 5 (w1) and deletes it (w2); SQLite then gives id 5 to
    // a new row (w3, an insert that let SQLite choose).
    let mut h = History::new(1);
    h.record(host_insert(0, 1, 5, "a.w1"));
    h.record(write(0, 2, HOSTS, 5, WriteKind::Delete, Vec::new()));
    h.record(host_insert(0, 3, 5, "c.w3"));
    let schema = test_schema();
    let cache = tables(&[(HOSTS, 5, vec![t("c.w3"), t("ip")])]);
    let (invariant, detail) = failing(check_not_resurrected(
        &schema,
        "r0",
        &h,
        0,
        &cache,
        &policies(MergePolicy::Column),
    ));
    assert_eq!(invariant, Invariant::NoIdReuse);
    assert!(
        detail.contains("is the row w3 on r0 at step 3 inserted under the id of a row w2"),
        "{detail}"
    );
    // At the end it is named so too, not as two inserts clobbering.
    let (invariant, _) = failing(check_final(&schema, &h, &policies(MergePolicy::Column), &cache));
    assert_eq!(invariant, Invariant::NoIdReuse);
    // The deleted row itself coming back is still a resurrection.
    let mut back = History::new(1);
    back.record(host_insert(0, 1, 5, "a.w1"));
    back.record(write(0, 2, HOSTS, 5, WriteKind::Delete, Vec::new()));
    let cache = tables(&[(HOSTS, 5, vec![t("a.w1"), t("ip")])]);
    let (invariant, _) = failing(check_not_resurrected(
        &schema,
        "r0",
        &back,
        0,
        &cache,
        &policies(MergePolicy::Column),
    ));
    assert_eq!(invariant, Invariant::NoResurrection);
}

#[test]
fn a_renumbering_must_be_reported_and_references_must_follow() {
    use std::collections::BTreeMap;
    use syncgate::check::identity::{check_renumberings, Renumberings};
    use syncgate_protocol::{IdPolicy, Renumbering};

    let schema = test_schema();
    // Domain L1 was -1 in r0's cache and is 57 now; its record L2 was -2, now 58.
    let before = vec![BTreeMap::from([(-1, 1)]), BTreeMap::new(), BTreeMap::from([(-2, 2)])];
    let after = vec![BTreeMap::from([(57, 1)]), BTreeMap::new(), BTreeMap::from([(58, 2)])];
    let cache = tables(&[
        (DOMAINS, 57, vec![t("a.example"), t("alpha.w1"), Value::Null]),
        (RECORDS, 58, vec![Value::Int(57), t("MX.w2"), t("v.w2")]),
    ]);
    let reported = vec![
        Renumbering {
            table: "domains".into(),
            from: -1,
            to: 57,
        },
        Renumbering {
            table: "dns_records".into(),
            from: -2,
            to: 58,
        },
    ];
    let seen = |reported: Vec<Renumbering>| Renumberings {
        before: before.clone(),
        reported,
        crashed: false,
    };
    assert_eq!(
        check_renumberings(
            &schema,
            &History::new(1),
            "r0",
            IdPolicy::Renumbered,
            &seen(reported.clone()),
            &after,
            &cache
        ),
        Ok(())
    );
    let v = check_renumberings(
        &schema,
        &History::new(1),
        "r0",
        IdPolicy::Renumbered,
        &seen(Vec::new()),
        &after,
        &cache,
    )
    .expect_err("an unreported renumbering");
    assert_eq!(v.invariant, Invariant::RenumberingReported);
    assert!(
        v.detail
            .contains("domains L1 (the row w1 inserted) moved from id -1 to 57"),
        "{}",
        v.detail
    );
    // After a crash, what could not be reported is found by its tags.
    let crashed = Renumberings {
        crashed: true,
        ..seen(Vec::new())
    };
    assert_eq!(
        check_renumberings(
            &schema,
            &History::new(1),
            "r0",
            IdPolicy::Renumbered,
            &crashed,
            &after,
            &cache
        ),
        Ok(())
    );
    // A cache whose ids never change may not move one.
    let v = check_renumberings(
        &schema,
        &History::new(1),
        "r0",
        IdPolicy::RemoteMap,
        &seen(reported.clone()),
        &after,
        &cache,
    )
    .expect_err("remote_map ids never change");
    assert!(v.detail.contains("remote_map"), "{}", v.detail);
    // The record still names its parent by the id the parent left.
    let stale = tables(&[
        (DOMAINS, 57, vec![t("a.example"), t("alpha.w1"), Value::Null]),
        (RECORDS, 58, vec![Value::Int(-1), t("MX.w2"), t("v.w2")]),
    ]);
    let v = check_renumberings(
        &schema,
        &History::new(1),
        "r0",
        IdPolicy::Renumbered,
        &seen(reported),
        &after,
        &stale,
    )
    .expect_err("a reference left behind");
    assert_eq!(v.invariant, Invariant::ReferencesFollowIds);
    assert!(
        v.detail.contains("dns_records/58.domain_id still holds -1"),
        "{}",
        v.detail
    );
}

#[test]
fn a_renumbered_row_merged_by_its_natural_key_is_the_same_row() {
    use std::collections::BTreeMap;
    use syncgate::check::identity::{check_renumberings, Renumberings};
    use syncgate_protocol::{IdPolicy, Renumbering};

    // r1 inserted a.example (w1, temp id -1); r0 inserted a.example too
    // (w2), and the server merged them into one row, 1, whose registrar is
    // w2's: r1's row is now 1 and carries w2's tag.
    let mut h = History::new(2);
    h.record(write(
        1,
        1,
        DOMAINS,
        -1,
        WriteKind::Insert,
        vec![(0, t("a.example")), (1, t("x.w1"))],
    ));
    h.record(write(
        0,
        2,
        DOMAINS,
        1,
        WriteKind::Insert,
        vec![(0, t("a.example")), (1, t("y.w2"))],
    ));
    let schema = test_schema();
    let seen = Renumberings {
        before: vec![BTreeMap::from([(-1, 1)]), BTreeMap::new(), BTreeMap::new()],
        reported: vec![Renumbering {
            table: "domains".into(),
            from: -1,
            to: 1,
        }],
        crashed: false,
    };
    let after = vec![BTreeMap::from([(1, 2)]), BTreeMap::new(), BTreeMap::new()];
    let cache = tables(&[(DOMAINS, 1, vec![t("a.example"), t("y.w2"), Value::Null])]);
    assert_eq!(
        check_renumberings(&schema, &h, "r1", IdPolicy::Renumbered, &seen, &after, &cache),
        Ok(())
    );
}

/// r0 commits one transaction: a host (w1) and another host (w2). A place
/// that shows w1 but not w2 saw half of it, unless something took w2's row.
#[test]
fn atomic_visibility_fails_a_fractured_read_and_nothing_else() {
    use syncgate::check::contract::check_atomic_visibility;
    let mut h = History::new(2);
    h.record(host_insert(0, 1, 1, "a.w1"));
    h.record(host_insert(0, 1, 2, "b.w2"));
    let schema = test_schema();
    let atomic = Policies {
        transactions: TransactionsPolicy::Atomic,
        ..policies(MergePolicy::Column)
    };
    let half = tables(&[(HOSTS, 1, vec![t("a.w1"), t("ip")])]);
    let (invariant, detail) = failing(check_atomic_visibility(&schema, "r1", Some(1), &h, &half, &atomic));
    assert_eq!(invariant, Invariant::AtomicVisibility);
    assert!(
        detail.starts_with(
            "fractured read: r1 shows w1 of r0's transaction at step 1 (hosts/1.hostname holds \"a.w1\") but not w2"
        ),
        "{detail}"
    );
    // All of it passes (judged: true), or none of it, with nothing shown to
    // judge (false); so does the writer's own cache, and an engine that does
    // not declare atomic transactions (neither judged).
    let whole = tables(&[
        (HOSTS, 1, vec![t("a.w1"), t("ip")]),
        (HOSTS, 2, vec![t("b.w2"), t("ip")]),
    ]);
    assert_eq!(
        check_atomic_visibility(&schema, "r1", Some(1), &h, &whole, &atomic),
        Ok(true)
    );
    assert_eq!(
        check_atomic_visibility(&schema, "r1", Some(1), &h, &tables(&[]), &atomic),
        Ok(false)
    );
    assert_eq!(
        check_atomic_visibility(&schema, "r0", Some(0), &h, &half, &atomic),
        Ok(false)
    );
    assert_eq!(
        check_atomic_visibility(&schema, "r1", Some(1), &h, &half, &policies(MergePolicy::Column)),
        Ok(false)
    );
    // A delete of w2's row (anywhere, by anyone) explains its absence.
    let mut deleted = h.clone();
    deleted.record(write(1, 2, HOSTS, 2, WriteKind::Delete, Vec::new()));
    assert_eq!(
        check_atomic_visibility(&schema, "r1", Some(1), &deleted, &half, &atomic),
        Ok(true)
    );
    // On the remote too: a push that sent half the transaction.
    let (invariant, _) = failing(check_atomic_visibility(&schema, "remote", None, &h, &half, &atomic));
    assert_eq!(invariant, Invariant::AtomicVisibility);
}

/// r0 inserts host 1 (w1) and pushes; r1 pulls, then commits one transaction
/// at step 4: it renames host 1 (w2) and inserts host 2 (w3). A place that
/// shows w3 while host 1 still holds w1's name (which w2 follows) saw half
/// of the transaction: the stale-cell half of the fractured read.
#[test]
fn atomic_visibility_fails_a_stale_cell_beside_a_shown_write() {
    use syncgate::check::contract::check_atomic_visibility;
    let mut h = History::new(3);
    h.record(host_insert(0, 1, 1, "a.w1"));
    h.pushed_all(2, 0);
    h.pulled(3, 1);
    h.record(host_update(1, 4, 1, "b.w2"));
    h.record(host_insert(1, 4, 2, "c.w3"));
    let schema = test_schema();
    let atomic = |merge| Policies {
        transactions: TransactionsPolicy::Atomic,
        ..policies(merge)
    };
    let half = tables(&[
        (HOSTS, 1, vec![t("a.w1"), t("ip")]),
        (HOSTS, 2, vec![t("c.w3"), t("ip")]),
    ]);
    let (invariant, detail) = failing(check_atomic_visibility(
        &schema,
        "r2",
        Some(2),
        &h,
        &half,
        &atomic(MergePolicy::Column),
    ));
    assert_eq!(invariant, Invariant::AtomicVisibility);
    assert!(
        detail.starts_with(
            "fractured read: r2 shows w3 of r1's transaction at step 4 (hosts/2.hostname holds \"c.w3\") but not w2 \
             of the same transaction: hosts/1.hostname holds \"a.w1\" of w1, which w2 causally follows (w2 on r1 \
             causally follows w1 on r0 (r0 pushed at step 2, r1 pulled at step 3))"
        ),
        "{detail}"
    );
    // The whole transaction passes; so does none of it (host 2 absent: the
    // insert half has nothing shown to judge by).
    let whole = tables(&[
        (HOSTS, 1, vec![t("b.w2"), t("ip")]),
        (HOSTS, 2, vec![t("c.w3"), t("ip")]),
    ]);
    let none = tables(&[(HOSTS, 1, vec![t("a.w1"), t("ip")])]);
    for (name, place, judged) in [("whole", &whole, true), ("none", &none, false)] {
        assert_eq!(
            check_atomic_visibility(&schema, "r2", Some(2), &h, place, &atomic(MergePolicy::Column)),
            Ok(judged),
            "{name}"
        );
    }
    // A concurrent winner is not stale: r2 renamed host 1 (w4) without
    // knowing w2, and its name won there.
    let mut concurrent = h.clone();
    concurrent.record(host_update(2, 5, 1, "d.w4"));
    let won = tables(&[
        (HOSTS, 1, vec![t("d.w4"), t("ip")]),
        (HOSTS, 2, vec![t("c.w3"), t("ip")]),
    ]);
    assert_eq!(
        check_atomic_visibility(&schema, "r0", Some(0), &concurrent, &won, &atomic(MergePolicy::Column)),
        Ok(true)
    );
    // Under row merges, a write concurrent with w2 to host 1 may win with
    // its whole row, w1's older name included: nothing to say.
    let mut row_winner = h.clone();
    row_winner.record(write(2, 5, HOSTS, 1, WriteKind::Update, vec![(1, t("ip2.w4"))]));
    let old_name = tables(&[
        (HOSTS, 1, vec![t("a.w1"), t("ip2.w4")]),
        (HOSTS, 2, vec![t("c.w3"), t("ip")]),
    ]);
    assert_eq!(
        check_atomic_visibility(
            &schema,
            "r0",
            Some(0),
            &row_winner,
            &old_name,
            &atomic(MergePolicy::Row)
        ),
        Ok(true)
    );
    let (invariant, _) = failing(check_atomic_visibility(
        &schema,
        "r0",
        Some(0),
        &row_winner,
        &old_name,
        &atomic(MergePolicy::Column),
    ));
    assert_eq!(
        invariant,
        Invariant::AtomicVisibility,
        "column merges: w1's name is stale"
    );
    // Not declared, or the writer's own cache: not judged.
    assert_eq!(
        check_atomic_visibility(&schema, "r2", Some(2), &h, &half, &policies(MergePolicy::Column)),
        Ok(false)
    );
    assert_eq!(
        check_atomic_visibility(&schema, "r1", Some(1), &h, &half, &atomic(MergePolicy::Column)),
        Ok(false)
    );
}

/// r0 inserts host 1 (w1) and pushes; r1 pulls it, renames it (w2, step 4)
/// and inserts host 2 (w3, step 5): w3 follows w2 (program order) and w1
/// (push then pull). A place that shows w3 must show both.
#[test]
fn causal_visibility_fails_a_write_shown_without_one_it_follows() {
    use syncgate::check::contract::check_causal_visibility;
    use syncgate_protocol::ConsistencyPolicy;
    let mut h = History::new(3);
    h.record(host_insert(0, 1, 1, "a.w1"));
    h.pushed_all(2, 0);
    h.pulled(3, 1);
    h.record(host_update(1, 4, 1, "b.w2"));
    h.record(host_insert(1, 5, 2, "c.w3"));
    let schema = test_schema();
    let causal = Policies {
        consistency: ConsistencyPolicy::Causal,
        ..policies(MergePolicy::Column)
    };
    // Stale: host 1 still has w1's name, which w2 (followed by w3) replaced.
    let stale = tables(&[
        (HOSTS, 1, vec![t("a.w1"), t("ip")]),
        (HOSTS, 2, vec![t("c.w3"), t("ip")]),
    ]);
    let (invariant, detail) = failing(check_causal_visibility(&schema, "r2", &h, &stale, &causal));
    assert_eq!(invariant, Invariant::CausalVisibility);
    assert!(
        detail.starts_with(
            "r2 shows w3 of r1 (hosts/2.hostname holds \"c.w3\") but not w2, which it causally follows (w3 comes \
             after w2 on r1): hosts/1.hostname holds \"a.w1\" of w1, which w2 causally follows"
        ),
        "{detail}"
    );
    // Missing: host 1 is not there at all, and nothing took it.
    let missing = tables(&[(HOSTS, 2, vec![t("c.w3"), t("ip")])]);
    let (invariant, detail) = failing(check_causal_visibility(&schema, "remote", &h, &missing, &causal));
    assert_eq!(invariant, Invariant::CausalVisibility);
    assert!(
        detail.contains("but not w1, which it causally follows (w3 on r1 causally follows w1 on r0 (r0 pushed at step 2, r1 pulled at step 3)): no hosts/1 there"),
        "{detail}"
    );
    // Quiet: everything w3 follows is there; w3 is not shown (nothing to
    // judge by); a concurrent winner holds the name; a delete took host 1;
    // the engine does not declare causal.
    let whole = tables(&[
        (HOSTS, 1, vec![t("b.w2"), t("ip")]),
        (HOSTS, 2, vec![t("c.w3"), t("ip")]),
    ]);
    let before = tables(&[(HOSTS, 1, vec![t("a.w1"), t("ip")])]);
    // Judged where a shown write follows another replica's (w2 and w3
    // follow r0's w1); not where only r0's own w1 is shown.
    for (name, place, judged) in [("whole", &whole, true), ("before w2", &before, false)] {
        assert_eq!(
            check_causal_visibility(&schema, "r2", &h, place, &causal),
            Ok(judged),
            "{name}"
        );
    }
    let mut concurrent = h.clone();
    concurrent.record(host_update(2, 6, 1, "d.w4"));
    let won = tables(&[
        (HOSTS, 1, vec![t("d.w4"), t("ip")]),
        (HOSTS, 2, vec![t("c.w3"), t("ip")]),
    ]);
    assert_eq!(
        check_causal_visibility(&schema, "r2", &concurrent, &won, &causal),
        Ok(true)
    );
    let mut deleted = h.clone();
    deleted.record(write(2, 6, HOSTS, 1, WriteKind::Delete, Vec::new()));
    assert_eq!(
        check_causal_visibility(&schema, "r2", &deleted, &missing, &causal),
        Ok(true)
    );
    assert_eq!(
        check_causal_visibility(&schema, "r2", &h, &stale, &policies(MergePolicy::Column)),
        Ok(false)
    );
}

#[test]
fn monotonic_reads_fail_a_cache_that_goes_back() {
    use syncgate::check::contract::check_monotonic_reads;
    use syncgate_protocol::ConsistencyPolicy;
    // w2 (r1, after pulling w1) renames host 1; r2 showed w2's name and then
    // shows w1's again.
    let h = rename_after_pull();
    let schema = test_schema();
    let causal = |merge| Policies {
        consistency: ConsistencyPolicy::Causal,
        ..policies(merge)
    };
    let newer = tables(&[(HOSTS, 1, vec![t("b.w2"), t("ip")])]);
    let older = tables(&[(HOSTS, 1, vec![t("a.w1"), t("ip")])]);
    let (invariant, detail) = failing(check_monotonic_reads(
        &schema,
        "r2",
        &h,
        &newer,
        &older,
        &causal(MergePolicy::Column),
    ));
    assert_eq!(invariant, Invariant::MonotonicReads);
    assert!(
        detail.starts_with(
            "r2 went back: hosts/1.hostname showed \"b.w2\" of w2, and now shows \"a.w1\" of w1, which w2 causally \
             follows (w2 on r1 causally follows w1 on r0 (r0 pushed at step 2, r1 pulled at step 3))"
        ),
        "{detail}"
    );
    // Quiet: forward (judged: the move follows the causal order); a
    // concurrent value either way, and undeclared (nothing judged).
    assert_eq!(
        check_monotonic_reads(&schema, "r2", &h, &older, &newer, &causal(MergePolicy::Column)),
        Ok(true)
    );
    let mut concurrent = History::new(2);
    concurrent.record(host_insert(0, 1, 1, "a.w1"));
    concurrent.pushed_all(2, 0);
    concurrent.pulled(3, 1);
    concurrent.record(host_update(0, 4, 1, "x.w2"));
    concurrent.record(host_update(1, 5, 1, "y.w3"));
    let x = tables(&[(HOSTS, 1, vec![t("x.w2"), t("ip")])]);
    let y = tables(&[(HOSTS, 1, vec![t("y.w3"), t("ip")])]);
    assert_eq!(
        check_monotonic_reads(&schema, "r0", &concurrent, &x, &y, &causal(MergePolicy::Column)),
        Ok(false)
    );
    assert_eq!(
        check_monotonic_reads(&schema, "r2", &h, &newer, &older, &policies(MergePolicy::Column)),
        Ok(false)
    );
    // Under row merges a concurrent write to the row may win with its whole
    // row, the older name in it: quiet then, not otherwise.
    let mut row_won = h.clone();
    row_won.record(write(0, 6, HOSTS, 1, WriteKind::Update, vec![(1, t("ip.w3"))]));
    let whole_row = tables(&[(HOSTS, 1, vec![t("a.w1"), t("ip.w3")])]);
    assert_eq!(
        check_monotonic_reads(&schema, "r2", &row_won, &newer, &whole_row, &causal(MergePolicy::Row)),
        Ok(true),
        "judged by its ip, which moved forward from w1's to w3's"
    );
    assert_eq!(
        failing(check_monotonic_reads(
            &schema,
            "r2",
            &h,
            &newer,
            &older,
            &causal(MergePolicy::Row)
        ))
        .0,
        Invariant::MonotonicReads
    );
}
