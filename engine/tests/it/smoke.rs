use crate::support::*;

#[test]
fn a_host_inserted_on_one_replica_reaches_another() {
    // Failure: the basic insert-push-pull path does not deliver a row.
    let w = World::new();
    let clock = ManualClock::at(T0);
    let mut a = w.replica("a", clock.clone());
    let mut b = w.replica("b", clock.clone());
    let id = a
        .insert("hosts", None, &[("hostname", text("h1")), ("ip", text("10.0.0.1"))])
        .expect("insert");
    assert_eq!(a.pending().expect("pending"), 1);
    let report = a.sync().expect("sync a");
    assert_eq!((report.pushed, report.pulled, report.conflicts), (1, 1, 0));
    let report = b.sync().expect("sync b");
    assert_eq!((report.pushed, report.pulled, report.conflicts), (0, 1, 0));
    assert_eq!(rows(&b, "hosts"), vec![(id, vec![text("h1"), text("10.0.0.1")])]);
    assert_eq!(w.remote_rows("hosts"), rows(&a, "hosts"));
}
