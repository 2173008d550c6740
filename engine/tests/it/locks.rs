//! Locks: a sync that meets a lock held by someone else fails as busy,
//! loses nothing, and delivers everything once the lock is gone.

use crate::support::*;
use syncgate_engine::rusqlite::Connection;
use syncgate_engine::Error;

/// Ways another process can hold a SQLite file.
#[derive(Clone, Copy, Debug)]
enum Hold {
    Immediate,
    Exclusive,
    Read,
}

fn hold(conn: &Connection, how: Hold) {
    match how {
        Hold::Immediate => conn.execute_batch("BEGIN IMMEDIATE").expect("begin immediate"),
        Hold::Exclusive => conn.execute_batch("BEGIN EXCLUSIVE").expect("begin exclusive"),
        Hold::Read => {
            conn.execute_batch("BEGIN").expect("begin");
            let _: i64 = conn
                .query_row("SELECT count(*) FROM hosts", [], |r| r.get(0))
                .expect("read");
        }
    }
}

fn assert_busy<T: std::fmt::Debug>(outcome: syncgate_engine::Result<T>, context: &str) {
    match outcome {
        Err(e) => assert!(e.is_busy(), "{context}: expected a busy error, got {e:?}"),
        Ok(v) => panic!("{context}: expected a busy error, got Ok({v:?})"),
    }
}

#[test]
fn locked_remote_loses_nothing() {
    // Failure: a sync that meets a locked remote drops, half-applies or wedges its outbox.
    for how in [Hold::Immediate, Hold::Read, Hold::Exclusive] {
        let w = World::new();
        let clock = ManualClock::at(T0);
        let mut a = w.replica("a", clock.clone());
        let mut b = w.replica("b", clock.clone());
        let h1 = host(&mut a, "h1", "10.0.0.1");
        let h2 = host(&mut a, "h2", "10.0.0.2");
        assert_eq!(pending(&a), 2);
        let head = w.remote_head();

        let holder = w.raw(&w.remote_path());
        hold(&holder, how);
        let outcome = a.sync();
        assert!(
            matches!(outcome, Err(Error::Busy { what: "push", .. })),
            "{how:?}: {outcome:?}"
        );
        assert!(a.status().expect("status").last_error.is_some(), "{how:?}");
        assert_eq!(pending(&a), 2, "{how:?}");
        assert_eq!(ids(&a, "hosts"), vec![h1, h2], "{how:?}");
        // B has nothing to push: its pull either reads or reports busy.
        match b.sync() {
            Ok(report) => assert_eq!(counts(report), (0, 0, 0), "{how:?}"),
            Err(e) => assert!(e.is_busy(), "{how:?}: sync b: {e:?}"),
        }
        // A keeps writing while the remote is locked.
        let h3 = host(&mut a, "h3", "10.0.0.3");
        assert_eq!(pending(&a), 3);
        holder.execute_batch("ROLLBACK").expect("release");
        drop(holder);

        assert_eq!(w.remote_head(), head, "{how:?}: the remote changed under the lock");
        assert_eq!(w.remote_rows("hosts"), Vec::new(), "{how:?}");
        assert_eq!(sync(&mut a), (3, 3, 0), "{how:?}");
        assert_eq!(ids_of(&w.remote_rows("hosts")), vec![h1, h2, h3], "{how:?}");
        assert_eq!(sync(&mut b), (0, 3, 0), "{how:?}: sync b after the release");
        assert_converged(&w, &[&a, &b]);
        assert_eq!(a.status().expect("status").last_error, None);
    }
}

#[test]
fn locked_remote_during_pull_only_loses_nothing() {
    // Failure: a pull refused by an exclusive remote lock wedges the remote connection for good.
    let w = World::new();
    let clock = ManualClock::at(T0);
    let mut a = w.replica("a", clock.clone());
    let mut b = w.replica("b", clock.clone());
    let h1 = host(&mut a, "h1", "10.0.0.1");
    sync(&mut a);

    let holder = w.raw(&w.remote_path());
    hold(&holder, Hold::Exclusive);
    assert_busy(b.pull(), "pull b under an exclusive lock");
    assert_eq!(ids(&b, "hosts"), Vec::<i64>::new());
    assert_eq!(cursor(&b), 0);
    holder.execute_batch("ROLLBACK").expect("release");
    drop(holder);

    assert_eq!(sync(&mut b), (0, 1, 0));
    assert_eq!(ids(&b, "hosts"), vec![h1]);
    let h2 = host(&mut b, "h2", "10.0.0.2");
    assert_eq!(sync(&mut b), (1, 1, 0));
    sync(&mut a);
    assert_eq!(ids(&a, "hosts"), vec![h1, h2]);
    assert_converged(&w, &[&a, &b]);
}

#[test]
fn locked_cache_loses_nothing() {
    // Failure: a write lock on the (WAL) cache makes a write or a sync lose or duplicate writes.
    for how in [Hold::Immediate, Hold::Exclusive] {
        let w = World::new();
        let clock = ManualClock::at(T0);
        let mut a = w.replica("a", clock.clone());
        let mut b = w.replica("b", clock.clone());
        let h1 = host(&mut a, "h1", "10.0.0.1");
        let hb = host(&mut b, "hb", "10.0.1.1");
        sync(&mut b);
        assert_eq!(pending(&a), 1);
        let mode: String = a
            .connection()
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .expect("journal mode");
        assert_eq!(mode.to_lowercase(), "wal");

        let holder = w.raw(&w.cache_path("a"));
        hold(&holder, how);
        let outcome = a.sync();
        assert!(matches!(outcome, Err(Error::Busy { .. })), "{how:?}: {outcome:?}");
        assert_busy(outcome, &format!("{how:?}: sync a"));
        assert_busy(a.push(), &format!("{how:?}: push a"));
        assert_busy(a.pull(), &format!("{how:?}: pull a"));
        let write = a.insert("hosts", None, &[("hostname", text("h2"))]);
        assert!(matches!(write, Err(Error::Busy { .. })), "{how:?}: {write:?}");
        assert_eq!(pending(&a), 1, "{how:?}");
        assert_eq!(ids(&a, "hosts"), vec![h1], "{how:?}");
        assert!(a.status().expect("status").busy_retries > 0);
        holder.execute_batch("ROLLBACK").expect("release");
        drop(holder);

        assert_eq!(
            w.remote_rows("hosts").len(),
            1,
            "{how:?}: only B's host is on the remote"
        );
        assert_eq!(sync(&mut a), (1, 2, 0), "{how:?}");
        assert_eq!(ids(&a, "hosts"), vec![h1, hb], "{how:?}");
        sync(&mut b);
        assert_converged(&w, &[&a, &b]);
    }
}

#[test]
fn a_replica_restarts_while_the_remote_is_locked() {
    // Found by the harness: reopening a replica while another process held
    // the remote exclusively failed with "database is locked", because
    // opening the remote read its schema at once. Opening now never needs
    // the remote; the schema check waits for the first sync.
    let w = World::new();
    let clock = ManualClock::at(T0);
    let mut a = w.replica("a", clock.clone());
    let h1 = host(&mut a, "h1", "10.0.0.1");
    drop(a);
    let holder = w.raw(&w.remote_path());
    hold(&holder, Hold::Exclusive);
    let mut a = w.replica("a", clock.clone());
    assert_eq!(pending(&a), 1);
    assert_busy(a.sync(), "sync while the remote is locked");
    drop(holder);
    let report = a.sync().expect("sync after the lock is gone");
    assert_eq!((report.pushed, report.pulled), (1, 1));
    assert_eq!(ids(&a, "hosts"), vec![h1]);
}
