//! Limits and the checks at each boundary: a bound that is hit is a typed
//! error (never a silent stop, never unbounded recursion), and each side of
//! a boundary is reached by a test.

use syncgate_engine::{
    ColumnType, Config, Error, Schema, SqliteRemote, TableDef, ALIAS_HOPS_MAX, CASCADE_DEPTH_MAX, REPLICAS_MAX,
};

use crate::support::*;

/// `nodes(id, parent -> nodes, label)`: references that nest without limit.
fn tree_schema() -> Schema {
    Schema::new(vec![TableDef::new("nodes")
        .reference("parent", "nodes")
        .column("label", ColumnType::Text)])
    .expect("tree schema")
}

/// Replica `b` hangs a chain of `depth` nodes under `root` and syncs.
fn chain_under(b: &mut syncgate_engine::Replica<SqliteRemote>, root: i64, depth: usize) {
    b.write(|w| {
        let mut parent = root;
        for level in 1..=depth {
            parent = w.insert(
                "nodes",
                None,
                &[("parent", int(parent)), ("label", text(&format!("l{level}")))],
            )?;
        }
        Ok(())
    })
    .expect("chain");
    sync(b);
}

#[test]
fn a_remote_cascade_deeper_than_the_bound_is_a_typed_error() {
    // Failure: a delete on the remote recurses into children without bound.
    for (depth, fits) in [(CASCADE_DEPTH_MAX, true), (CASCADE_DEPTH_MAX + 1, false)] {
        let w = World::with_schema(tree_schema());
        let clock = ManualClock::at(T0);
        let mut a = w.replica("a", clock.clone());
        let mut b = w.replica("b", clock.clone());
        let root = a.insert("nodes", None, &[("label", text("root"))]).expect("root");
        sync(&mut a);
        sync(&mut b);
        // `a` never sees the chain: deleting the root, it sends one delete,
        // and the remote's cascade walks the whole chain.
        chain_under(&mut b, root, depth);
        a.delete("nodes", root).expect("delete root");
        let outcome = a.push();
        if fits {
            assert_eq!(counts(outcome.expect("push")), (1, 0, 0), "depth {depth}");
            assert!(
                w.remote_rows("nodes").is_empty(),
                "depth {depth}: the cascade stopped early"
            );
            sync(&mut b);
            assert_converged(&w, &[&a, &b]);
        } else {
            match outcome {
                Err(Error::CascadeTooDeep { depth_max, .. }) => assert_eq!(depth_max, CASCADE_DEPTH_MAX),
                other => panic!("depth {depth}: expected CascadeTooDeep, got {other:?}"),
            }
            assert_eq!(pending(&a), 1, "the delete stays pending");
            assert_eq!(w.remote_rows("nodes").len(), depth + 1, "nothing was applied");
        }
    }
}

#[test]
fn an_alias_chain_longer_than_the_bound_is_a_typed_error() {
    // Failure: resolving an alias gives up silently after its hop bound and
    // writes the pulled row under a half-resolved id.
    for (hops, fits) in [(ALIAS_HOPS_MAX, true), (ALIAS_HOPS_MAX + 1, false)] {
        let w = World::new();
        let clock = ManualClock::at(T0);
        let mut a = w.replica("a", clock.clone());
        let mut b = w.replica("b", clock.clone());
        let h = host(&mut a, "h1", "10.0.0.1");
        sync(&mut a);
        // A corrupt cache: `h` resolves through `hops` aliases.
        for hop in 0..hops as i64 {
            b.connection()
                .execute(
                    "INSERT INTO _sg_aliases (tbl, id, survivor) VALUES ('hosts', ?1, ?2)",
                    [h + hop, h + hop + 1],
                )
                .expect("alias");
        }
        let outcome = b.pull();
        if fits {
            assert_eq!(counts(outcome.expect("pull")), (0, 1, 0), "{hops} hops");
            assert_eq!(
                ids(&b, "hosts"),
                vec![h + hops as i64],
                "{hops} hops: the row lands on the last survivor"
            );
        } else {
            match outcome {
                Err(Error::AliasChainTooLong { id, hops_max, .. }) => {
                    assert_eq!((id, hops_max), (h, ALIAS_HOPS_MAX));
                }
                other => panic!("{hops} hops: expected AliasChainTooLong, got {other:?}"),
            }
            assert_eq!(ids(&b, "hosts"), Vec::<i64>::new(), "nothing was applied");
            assert_eq!(cursor(&b), 0, "the cursor did not move");
        }
    }
}

#[test]
fn a_remote_behind_the_cursor_is_a_typed_error() {
    // Failure: a remote restored from an older copy moves the cursor back,
    // and the changes made since are pulled again or never.
    let w = World::new();
    let clock = ManualClock::at(T0);
    let mut a = w.replica("a", clock.clone());
    let older = w.dir.path().join("remote-older.db");
    std::fs::copy(w.remote_path(), &older).expect("copy the remote");
    host(&mut a, "h1", "10.0.0.1");
    sync(&mut a);
    let moved = cursor(&a);
    assert_eq!(moved, w.remote_head());
    // At the boundary: nothing new, the cursor stays where it is.
    assert_eq!(pull(&mut a), (0, 0, 0));
    assert_eq!(cursor(&a), moved);
    std::fs::copy(&older, w.remote_path()).expect("restore the older remote");
    match a.pull() {
        Err(Error::RemoteBehindCursor { cursor: c, head }) => assert_eq!((c, head), (moved, 0)),
        other => panic!("expected RemoteBehindCursor, got {other:?}"),
    }
    assert_eq!(cursor(&a), moved, "the cursor never moves back");
}

#[test]
fn replica_ids_stop_below_the_bound() {
    // Failure: the remote hands out a replica id whose id space overflows i64.
    let w = World::new();
    w.raw(&w.remote_path())
        .execute("UPDATE _sg_remote SET replicas = ?1", [REPLICAS_MAX - 2])
        .expect("set the count");
    let clock = ManualClock::at(T0);
    let mut last = w.replica("last", clock.clone());
    assert_eq!(last.replica_id(), REPLICAS_MAX - 1);
    let id = host(&mut last, "h", "10.0.0.1");
    assert_eq!(id, i64::from(REPLICAS_MAX - 1) << 40);
    sync(&mut last);
    let outcome = syncgate_engine::Replica::open(
        &w.cache_path("one-too-many"),
        &w.schema,
        w.remote(),
        clock,
        w.config.clone(),
    );
    match outcome {
        Err(Error::ReplicaIdsExhausted(n)) => assert_eq!(n, REPLICAS_MAX),
        other => panic!("expected ReplicaIdsExhausted, got {:?}", other.err()),
    }
}

#[test]
fn seqs_keep_increasing_after_the_outbox_drains() {
    // Failure: once every entry is acknowledged the outbox hands out seqs it
    // handed out before, and the remote skips them as already applied (S4).
    let w = World::new();
    let clock = ManualClock::at(T0);
    let mut a = w.replica("a", clock.clone());
    host(&mut a, "h1", "10.0.0.1");
    host(&mut a, "h2", "10.0.0.2");
    assert_eq!(a.ledger().expect("ledger").pending, vec![1, 2]);
    assert_eq!(sync(&mut a), (2, 2, 0));
    let drained = a.ledger().expect("ledger");
    assert_eq!((drained.captured_max, drained.pending.len()), (2, 0));
    drop(a);
    let mut a = w.replica("a", clock.clone());
    let h3 = host(&mut a, "h3", "10.0.0.3");
    let ledger = a.ledger().expect("ledger");
    assert_eq!((ledger.captured_max, ledger.pending.clone()), (3, vec![3]));
    assert_eq!(sync(&mut a), (1, 1, 0));
    assert_eq!(ids_of(&w.remote_rows("hosts")).last(), Some(&h3));
}

#[test]
fn acknowledgement_removes_exactly_the_batch() {
    // Failure: an acknowledgement removes more or fewer entries than the
    // remote applied.
    let w = World::new();
    let clock = ManualClock::at(T0);
    let mut config = w.config.clone();
    config.push_batch_max = 3;
    let mut a = w.open_with("a", clock.clone(), FaultyRemote::new(w.remote()), config);
    // Transactions of 3, 1 and 4 entries: batches [3] [1] [4] (rule S2).
    for size in [3, 1, 4] {
        a.write(|wr| {
            for k in 0..size {
                wr.insert("hosts", None, &[("hostname", text(&format!("h{size}-{k}")))])?;
            }
            Ok(())
        })
        .expect("write");
    }
    a.remote_mut().fail_commit_after(1, CommitFault::BeforeCommit);
    assert!(a.push().is_err(), "the second batch's commit fails");
    assert_eq!(a.ledger().expect("ledger").pending, (4..=8).collect::<Vec<i64>>());
    assert_eq!(w.remote_rows("hosts").len(), 3);
    assert_eq!(push(&mut a), (5, 0, 0));
    assert_eq!(a.ledger().expect("ledger").pending, Vec::<i64>::new());
    assert_eq!(w.remote_rows("hosts").len(), 8);
}

#[test]
fn a_child_pulled_pages_before_its_parent_applies() {
    // Failure: foreign keys are deferred only when the pull's first page has
    // rows (or not at all), so a child that arrives pages before its parent
    // fails the pull with "FOREIGN KEY constraint failed".
    let w = World::with_schema(tree_schema());
    let clock = ManualClock::at(T0);
    let mut a = w.replica("a", clock.clone());
    let one_row_pages = Config {
        pull_page_rows: 1,
        ..test_config()
    };
    let mut b = w.open_with("b", clock.clone(), w.remote(), one_row_pages);
    assert_eq!(pull(&mut b), (0, 0, 0), "a pull with nothing to apply");
    let root = a.insert("nodes", None, &[("label", text("root"))]).expect("root");
    let child = a
        .insert("nodes", None, &[("parent", int(root)), ("label", text("child"))])
        .expect("child");
    // The root's last change now comes after its child's: in seq order the
    // child arrives first, on a page of its own, after an empty page of gone
    // rows.
    a.update("nodes", root, &[("label", text("root, renamed"))])
        .expect("rename");
    sync(&mut a);
    assert_eq!(pull(&mut b).1, 2, "both rows pulled");
    assert_eq!(ids(&b, "nodes"), vec![root, child]);
    // Statements prepared before the pull still run after it.
    b.insert("nodes", None, &[("parent", int(child)), ("label", text("grandchild"))])
        .expect("a write after the pull");
    sync(&mut b);
    sync(&mut a);
    assert_converged(&w, &[&a, &b]);
}
