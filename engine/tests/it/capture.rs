//! Capture: every local write reaches the outbox, whoever makes it, and
//! nothing pulled is captured again.

use crate::support::*;

#[test]
fn pulled_changes_are_not_echoed() {
    // Failure: rows applied by a pull are captured and pushed back.
    let w = World::new();
    let clock = ManualClock::at(T0);
    let mut a = w.replica("a", clock.clone());
    let mut b = w.replica("b", clock.clone());
    let h = host(&mut a, "h1", "10.0.0.1");
    let d = domain(&mut a, "example.com", "r1");
    record(&mut a, d, "A", "192.0.2.1");
    sync(&mut a);
    let head = w.remote_head();

    assert_eq!(sync(&mut b), (0, 3, 0));
    assert_eq!(pending(&b), 0);
    assert_eq!(push(&mut b), (0, 0, 0));
    assert_eq!(w.remote_head(), head);

    // Updates and deletes pulled later are not echoed either.
    a.update("hosts", h, &[("ip", text("10.0.0.2"))]).expect("update");
    a.delete("domains", d).expect("delete");
    sync(&mut a);
    let head = w.remote_head();
    assert_eq!(sync(&mut b), (0, 3, 0));
    assert_eq!(pending(&b), 0);
    assert_eq!(push(&mut b), (0, 0, 0));
    assert_eq!(w.remote_head(), head);
    assert_eq!(sync(&mut a), (0, 0, 0));
    assert_converged(&w, &[&a, &b]);
}

#[test]
fn writes_from_another_connection_are_captured() {
    // Failure: writes that do not go through the engine's API are never pushed.
    let w = World::new();
    let clock = ManualClock::at(T0);
    let mut a = w.replica("a", clock.clone());
    let mut b = w.replica("b", clock.clone());
    let h1 = a.next_id().expect("next id");
    let h2 = a.next_id().expect("next id");
    let other = w.raw(&w.cache_path("a"));
    other
        .execute(
            "INSERT INTO hosts (id, hostname, ip) VALUES (?1, 'h1', '10.0.0.1'), (?2, 'h2', '10.0.0.2')",
            [h1, h2],
        )
        .expect("raw insert");
    assert_eq!(pending(&a), 2);
    other
        .execute("UPDATE hosts SET ip = '10.0.0.11' WHERE id = ?1", [h1])
        .expect("raw update");
    other
        .execute("DELETE FROM hosts WHERE id = ?1", [h2])
        .expect("raw delete");
    assert_eq!(pending(&a), 4);
    // An id the replica did not mint is refused there too.
    let foreign = other.execute("INSERT INTO hosts (id, hostname) VALUES (1, 'x')", []);
    assert!(foreign.is_err(), "a raw insert outside the id space was accepted");
    drop(other);

    // A minted id is not minted again.
    let next = host(&mut a, "h3", "10.0.0.3");
    assert!(next > h2);
    // Pulled: h1 and h3 live, h2's tombstone.
    assert_eq!(sync(&mut a), (5, 3, 0));
    assert_eq!(
        w.remote_rows("hosts"),
        vec![
            (h1, vec![text("h1"), text("10.0.0.11")]),
            (next, vec![text("h3"), text("10.0.0.3")])
        ]
    );
    sync(&mut b);
    assert_converged(&w, &[&a, &b]);
}

#[test]
fn writes_through_the_replica_connection_are_captured() {
    // Failure: raw SQL on the replica's own connection bypasses capture.
    let w = World::new();
    let clock = ManualClock::at(T0);
    let mut a = w.replica("a", clock.clone());
    let id = a.next_id().expect("next id");
    a.connection()
        .execute("INSERT INTO hosts (id, hostname) VALUES (?1, 'raw')", [id])
        .expect("raw insert");
    assert_eq!(pending(&a), 1);
    assert_eq!(sync(&mut a), (1, 1, 0));
    assert_eq!(
        w.remote_rows("hosts"),
        vec![(id, vec![text("raw"), syncgate_engine::rusqlite::types::Value::Null])]
    );
    assert_converged(&w, &[&a]);
}

#[test]
fn a_transaction_is_captured_whole_or_not_at_all() {
    // Failure: a refused write leaves part of its transaction captured.
    let w = World::new();
    let clock = ManualClock::at(T0);
    let mut a = w.replica("a", clock.clone());
    let outcome = a.write(|tx| {
        tx.insert("hosts", None, &[("hostname", text("h1"))])?;
        tx.insert("dns_records", None, &[("domain_id", int(12345)), ("kind", text("A"))])
    });
    assert!(matches!(
        refusal(outcome),
        syncgate_engine::WriteRefusal::ParentMissing { parent: 12345, .. }
    ));
    assert_eq!(pending(&a), 0);
    assert_eq!(rows(&a, "hosts"), Vec::new());
    assert_eq!(sync(&mut a), (0, 0, 0));
    assert_eq!(w.remote_rows("hosts"), Vec::new());
}
