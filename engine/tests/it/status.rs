//! Status: what a replica reports about itself is exact.

use crate::support::*;
use syncgate_engine::SyncReport;

fn report(pushed: u64, pulled: u64, conflicts: u64) -> Option<SyncReport> {
    Some(SyncReport {
        pushed,
        pulled,
        conflicts,
    })
}

#[test]
fn status_reports_exact_counts() {
    // Failure: status over- or under-counts pending writes, pushes, pulls or conflicts.
    let w = World::new();
    let clock_a = ManualClock::at(T0);
    let clock_b = ManualClock::at(T0);
    let mut a = w.replica("a", clock_a.clone());
    let mut b = w.replica("b", clock_b.clone());
    let status = a.status().expect("status");
    assert_eq!(
        (
            status.replica,
            status.pending,
            status.last_report,
            status.last_error,
            status.busy_retries
        ),
        (a.replica_id(), 0, None, None, 0)
    );

    let h1 = host(&mut a, "h1", "10.0.0.1");
    host(&mut a, "h2", "10.0.0.2");
    a.update("hosts", h1, &[("ip", text("10.0.0.11"))]).expect("update");
    assert_eq!(a.status().expect("status").pending, 3);
    a.sync().expect("sync");
    let status = a.status().expect("status");
    assert_eq!((status.pending, status.last_report), (0, report(3, 2, 0)));

    b.sync().expect("sync");
    assert_eq!(b.status().expect("status").last_report, report(0, 2, 0));

    // A's write is older than B's and loses: one conflict on A's push.
    clock_a.advance(5);
    a.update("hosts", h1, &[("ip", text("older"))]).expect("update");
    clock_b.advance(10);
    b.update("hosts", h1, &[("ip", text("newer"))]).expect("update");
    assert_eq!(b.status().expect("status").pending, 1);
    b.sync().expect("sync");
    assert_eq!(b.status().expect("status").last_report, report(1, 1, 0));
    a.sync().expect("sync");
    let status = a.status().expect("status");
    assert_eq!((status.pending, status.last_report), (0, report(1, 1, 1)));
    assert_eq!(rows(&a, "hosts")[0].1, vec![text("h1"), text("newer")]);

    // push and pull alone report their own halves.
    host(&mut a, "h3", "10.0.0.3");
    a.push().expect("push");
    assert_eq!(a.status().expect("status").last_report, report(1, 0, 0));
    a.pull().expect("pull");
    assert_eq!(a.status().expect("status").last_report, report(0, 1, 0));
    a.sync().expect("sync");
    assert_eq!(a.status().expect("status").last_report, report(0, 0, 0));
}

#[test]
fn a_failed_sync_keeps_the_last_report_and_records_the_error() {
    // Failure: a failed sync wipes the last good report or leaves no error behind.
    let w = World::new();
    let clock = ManualClock::at(T0);
    let mut a = w.replica("a", clock.clone());
    host(&mut a, "h1", "10.0.0.1");
    a.sync().expect("sync");
    host(&mut a, "h2", "10.0.0.2");
    let holder = w.raw(&w.remote_path());
    holder.execute_batch("BEGIN IMMEDIATE").expect("lock");
    assert!(a.sync().is_err());
    let status = a.status().expect("status");
    assert_eq!(status.pending, 1);
    assert_eq!(status.last_report, report(1, 1, 0));
    assert!(status.last_error.is_some());
    assert_eq!(status.busy_retries, u64::from(w.config.busy_retries_max));
    holder.execute_batch("ROLLBACK").expect("release");
    a.sync().expect("sync");
    let status = a.status().expect("status");
    assert_eq!(
        (status.pending, status.last_report, status.last_error),
        (0, report(1, 1, 0), None)
    );
}
