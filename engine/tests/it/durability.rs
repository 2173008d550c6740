//! Restarts and crashes: the outbox outlives the process, and a push cut at
//! the remote commit neither loses nor duplicates anything.

use crate::support::*;
use syncgate_engine::{Config, Error, Remote, Replica};

#[test]
fn pending_survives_restart() {
    // Failure: pending writes live only in memory and vanish with the process.
    let w = World::new();
    let clock = ManualClock::at(T0);
    let mut a = w.replica("a", clock.clone());
    let id = a.replica_id();
    let h1 = host(&mut a, "h1", "10.0.0.1");
    let h2 = host(&mut a, "h2", "10.0.0.2");
    a.update("hosts", h1, &[("ip", text("10.0.0.11"))]).expect("update");
    a.delete("hosts", h2).expect("delete");
    assert_eq!(pending(&a), 4);
    let before = state(&a);
    drop(a);

    let mut a = w.replica("a", clock.clone());
    assert_eq!(a.replica_id(), id, "a reopened cache keeps its replica id");
    assert_eq!(pending(&a), 4);
    assert_eq!(state(&a), before);
    assert_eq!(w.remote_rows("hosts"), Vec::new());
    assert_eq!(sync(&mut a), (4, 2, 0));
    assert_eq!(w.remote_rows("hosts"), vec![(h1, vec![text("h1"), text("10.0.0.11")])]);
    let mut b = w.replica("b", clock.clone());
    assert_eq!(sync(&mut b), (0, 2, 0));
    assert_converged(&w, &[&a, &b]);
}

/// Four captured writes in three transactions: a host, its update, and a
/// domain with one record. Returns `(host, domain, record)`.
fn some_writes<R: Remote>(r: &mut Replica<R>) -> (i64, i64, i64) {
    let h = host(r, "h1", "10.0.0.1");
    r.update("hosts", h, &[("ip", text("10.0.0.11"))]).expect("update");
    r.write(|w| {
        let d = w.insert("domains", None, &[("name", text("example.com"))])?;
        let rec = w.insert("dns_records", None, &[("domain_id", int(d)), ("kind", text("A"))])?;
        Ok((h, d, rec))
    })
    .expect("write")
}

#[test]
fn crash_before_remote_commit_loses_nothing() {
    // Failure: an outbox entry is dropped although the remote never committed it.
    let w = World::new();
    let clock = ManualClock::at(T0);
    let mut a = w.faulty("a", clock.clone());
    let (h, d, rec) = some_writes(&mut a);
    assert_eq!(pending(&a), 4);
    let head = w.remote_head();

    a.remote_mut().fail_next_commit(CommitFault::BeforeCommit);
    let err = a.push().expect_err("the push must fail");
    assert!(matches!(err, Error::RemoteUnavailable(_)), "{err:?}");
    assert_eq!(pending(&a), 4);
    assert_eq!(w.remote_head(), head);
    assert!(
        w.remote_state().iter().all(|(_, rows)| rows.is_empty()),
        "the remote must be empty"
    );
    drop(a); // the crash

    let mut a = w.replica("a", clock.clone());
    assert_eq!(pending(&a), 4);
    assert_eq!(sync(&mut a), (4, 3, 0));
    assert_eq!(ids(&a, "hosts"), vec![h]);
    assert_eq!(ids_of(&w.remote_rows("hosts")), vec![h]);
    assert_eq!(ids_of(&w.remote_rows("domains")), vec![d]);
    assert_eq!(ids_of(&w.remote_rows("dns_records")), vec![rec]);
    assert_eq!(w.remote_rows("hosts")[0].1, vec![text("h1"), text("10.0.0.11")]);
    assert_eq!(sync(&mut a), (0, 0, 0));
    let mut b = w.replica("b", clock.clone());
    assert_eq!(sync(&mut b), (0, 3, 0));
    assert_converged(&w, &[&a, &b]);
}

#[test]
fn crash_after_remote_commit_does_not_duplicate() {
    // Failure: a batch the remote committed is applied again after a crash before the local ack.
    let w = World::new();
    let clock = ManualClock::at(T0);
    let mut a = w.faulty("a", clock.clone());
    let (h, d, rec) = some_writes(&mut a);

    a.remote_mut().fail_next_commit(CommitFault::AfterCommit);
    let err = a.push().expect_err("the push must report the lost connection");
    assert!(matches!(err, Error::RemoteUnavailable(_)), "{err:?}");
    // Not acknowledged locally, but on the remote.
    assert_eq!(pending(&a), 4);
    assert_eq!(ids_of(&w.remote_rows("hosts")), vec![h]);
    assert_eq!(ids_of(&w.remote_rows("domains")), vec![d]);
    assert_eq!(ids_of(&w.remote_rows("dns_records")), vec![rec]);
    drop(a); // the crash

    // Meanwhile B builds on the committed rows.
    clock.advance(10);
    let mut b = w.replica("b", clock.clone());
    assert_eq!(sync(&mut b), (0, 3, 0));
    b.update("hosts", h, &[("ip", text("10.0.0.22"))]).expect("update");
    assert_eq!(sync(&mut b), (1, 1, 0));
    let remote = w.remote_state();
    let head = w.remote_head();

    let mut a = w.replica("a", clock.clone());
    assert_eq!(pending(&a), 4);
    // All four are acknowledged; none is applied again: no conflict, no change on the remote.
    let (pushed, pulled, conflicts) = sync(&mut a);
    assert_eq!((pushed, conflicts), (4, 0));
    assert_eq!(pulled, 3);
    assert_eq!(w.remote_head(), head, "the re-push stored something on the remote");
    assert_eq!(w.remote_state(), remote);
    assert_eq!(w.remote_rows("hosts"), vec![(h, vec![text("h1"), text("10.0.0.22")])]);
    assert_eq!(sync(&mut a), (0, 0, 0));
    assert_eq!(sync(&mut b), (0, 0, 0));
    assert_converged(&w, &[&a, &b]);
}

#[test]
fn a_transaction_reaches_the_remote_whole() {
    // Failure: a push cut between batches leaves half a transaction on the remote, or loses the rest.
    let w = World::new();
    let clock = ManualClock::at(T0);
    let config = Config {
        push_batch_max: 2,
        ..w.config.clone()
    };
    let mut a = w.open_with("a", clock.clone(), FaultyRemote::new(w.remote()), config);
    let h1 = host(&mut a, "h1", "10.0.0.1");
    let (d, r1, r2) = a
        .write(|w| {
            let d = w.insert("domains", None, &[("name", text("example.com"))])?;
            let r1 = w.insert("dns_records", None, &[("domain_id", int(d)), ("kind", text("A"))])?;
            let r2 = w.insert("dns_records", None, &[("domain_id", int(d)), ("kind", text("MX"))])?;
            Ok((d, r1, r2))
        })
        .expect("write");
    let h2 = host(&mut a, "h2", "10.0.0.2");
    assert_eq!(pending(&a), 5);

    // Batches: [h1], [domain, r1, r2] (a transaction is never split), [h2].
    a.remote_mut().fail_commit_after(1, CommitFault::BeforeCommit);
    let err = a.push().expect_err("the second batch must fail");
    assert!(matches!(err, Error::RemoteUnavailable(_)), "{err:?}");
    assert_eq!(pending(&a), 4);
    assert_eq!(ids_of(&w.remote_rows("hosts")), vec![h1]);
    assert_eq!(w.remote_rows("domains"), Vec::new());
    assert_eq!(w.remote_rows("dns_records"), Vec::new());
    drop(a); // the crash

    let mut a = w.replica("a", clock.clone());
    assert_eq!(sync(&mut a), (4, 5, 0));
    assert_eq!(ids_of(&w.remote_rows("hosts")), vec![h1, h2]);
    assert_eq!(ids_of(&w.remote_rows("domains")), vec![d]);
    assert_eq!(ids_of(&w.remote_rows("dns_records")), vec![r1, r2]);
    assert_converged(&w, &[&a]);
}
