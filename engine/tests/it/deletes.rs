//! Deletes: they reach the remote, cascade, are captured however they happen,
//! and win over concurrent writes.

use crate::support::*;

#[test]
fn deletes_reach_the_remote() {
    // Failure: a local delete is never pushed, so the row lives on elsewhere.
    let w = World::new();
    let clock = ManualClock::at(T0);
    let mut a = w.replica("a", clock.clone());
    let mut b = w.replica("b", clock.clone());
    let h1 = host(&mut a, "h1", "10.0.0.1");
    let h2 = host(&mut a, "h2", "10.0.0.2");
    assert_eq!(sync(&mut a), (2, 2, 0));
    assert_eq!(sync(&mut b), (0, 2, 0));
    assert_eq!(ids(&b, "hosts"), vec![h1, h2]);

    a.delete("hosts", h1).expect("delete");
    assert_eq!(pending(&a), 1);
    assert_eq!(sync(&mut a), (1, 1, 0));
    assert_eq!(w.remote_rows("hosts"), vec![(h2, vec![text("h2"), text("10.0.0.2")])]);
    assert_eq!(sync(&mut b), (0, 1, 0));
    assert_eq!(ids(&b, "hosts"), vec![h2]);

    // A row inserted and deleted before any push never appears on the remote.
    let h3 = host(&mut a, "h3", "10.0.0.3");
    a.delete("hosts", h3).expect("delete");
    assert_eq!(pending(&a), 2);
    sync(&mut a);
    sync(&mut b);
    assert_eq!(ids(&b, "hosts"), vec![h2]);
    assert_converged(&w, &[&a, &b]);

    // A deleted id never comes back, not even through an explicit insert.
    let again = a.insert("hosts", Some(h1), &[("hostname", text("h1"))]);
    assert!(matches!(refusal(again), syncgate_engine::WriteRefusal::IdDeleted { id, .. } if id == h1));
}

#[test]
fn replace_and_cascade_deletes_are_captured() {
    // Failure: deletes made by ON DELETE CASCADE or by REPLACE bypass capture.
    let w = World::new();
    let clock = ManualClock::at(T0);
    let mut a = w.replica("a", clock.clone());
    let mut b = w.replica("b", clock.clone());
    let d = domain(&mut a, "example.com", "r1");
    let r1 = record(&mut a, d, "A", "192.0.2.1");
    let r2 = record(&mut a, d, "MX", "mail.example.com");
    let keep = domain(&mut a, "example.org", "r1");
    let r3 = record(&mut a, keep, "A", "192.0.2.3");
    sync(&mut a);
    sync(&mut b);
    assert_eq!(ids(&b, "dns_records"), vec![r1, r2, r3]);

    // Cascade: one delete, three captured entries.
    a.delete("domains", d).expect("delete domain");
    assert_eq!(ids(&a, "dns_records"), vec![r3]);
    assert_eq!(pending(&a), 3);
    assert_eq!(sync(&mut a).0, 3);
    assert_eq!(ids_of(&w.remote_rows("domains")), vec![keep]);
    assert_eq!(ids_of(&w.remote_rows("dns_records")), vec![r3]);
    sync(&mut b);
    assert_eq!(ids(&b, "domains"), vec![keep]);
    assert_eq!(ids(&b, "dns_records"), vec![r3]);

    // REPLACE on the natural key deletes the holder (and its children) first.
    let fresh = a.next_id().expect("next id");
    a.connection()
        .execute(
            "INSERT OR REPLACE INTO domains (id, name, registrar) VALUES (?1, 'example.org', 'r2')",
            [fresh],
        )
        .expect("insert or replace");
    assert_eq!(ids(&a, "domains"), vec![fresh]);
    assert_eq!(ids(&a, "dns_records"), Vec::<i64>::new());
    // delete of `keep`, cascade delete of r3, insert of `fresh`
    assert_eq!(pending(&a), 3);
    sync(&mut a);
    sync(&mut b);
    assert_eq!(ids_of(&w.remote_rows("domains")), vec![fresh]);
    assert_eq!(w.remote_rows("dns_records"), Vec::new());
    assert_eq!(ids(&b, "domains"), vec![fresh]);
    assert_eq!(ids(&b, "dns_records"), Vec::<i64>::new());
    assert_converged(&w, &[&a, &b]);
}

#[test]
fn replace_from_another_connection_is_captured_or_refused() {
    // Failure: a REPLACE-caused delete from a connection without recursive_triggers is not captured.
    let w = World::new();
    let clock = ManualClock::at(T0);
    let mut a = w.replica("a", clock.clone());
    let mut b = w.replica("b", clock.clone());
    let old = domain(&mut a, "example.com", "r1");
    sync(&mut a);
    sync(&mut b);

    let fresh = a.next_id().expect("next id");
    let other = w.raw(&w.cache_path("a"));
    let outcome = other.execute(
        "INSERT OR REPLACE INTO domains (id, name, registrar) VALUES (?1, 'example.com', 'r2')",
        [fresh],
    );
    drop(other);
    match outcome {
        // Refused: nothing changed.
        Err(_) => {
            assert_eq!(ids(&a, "domains"), vec![old]);
            assert_eq!(pending(&a), 0);
        }
        // Accepted: the delete of `old` must be captured along with the insert.
        Ok(_) => {
            assert_eq!(ids(&a, "domains"), vec![fresh]);
            assert_eq!(pending(&a), 2, "the REPLACE-caused delete of {old} was not captured");
        }
    }
    let local = rows(&a, "domains");
    sync(&mut a);
    assert_eq!(rows(&a, "domains"), local, "the sync undid the local write");
    sync(&mut b);
    assert_converged(&w, &[&a, &b]);
}

#[test]
fn cascade_removes_children_added_concurrently() {
    // Failure: a child added while its parent is deleted elsewhere survives as an orphan somewhere.
    for delete_first in [true, false] {
        let w = World::new();
        let clock = ManualClock::at(T0);
        let mut a = w.replica("a", clock.clone());
        let mut b = w.replica("b", clock.clone());
        let d = domain(&mut a, "example.com", "r1");
        sync(&mut a);
        sync(&mut b);

        clock.advance(10);
        a.delete("domains", d).expect("delete domain");
        let r = record(&mut b, d, "A", "192.0.2.1");
        assert_eq!(ids(&b, "dns_records"), vec![r]);
        if delete_first {
            assert_eq!(sync(&mut a), (1, 1, 0));
            // The record's parent is dead on the remote: its insert does not take effect.
            assert_eq!(sync(&mut b), (1, 2, 1));
        } else {
            assert_eq!(sync(&mut b), (1, 1, 0));
            assert_eq!(ids_of(&w.remote_rows("dns_records")), vec![r]);
            assert_eq!(sync(&mut a), (1, 2, 0));
            sync(&mut b);
        }
        sync(&mut a);
        assert_eq!(w.remote_rows("domains"), Vec::new(), "delete_first={delete_first}");
        assert_eq!(w.remote_rows("dns_records"), Vec::new(), "delete_first={delete_first}");
        assert_eq!(rows(&b, "dns_records"), Vec::new(), "delete_first={delete_first}");
        assert_converged(&w, &[&a, &b]);
    }
}

#[test]
fn delete_wins_over_concurrent_update() {
    // Failure: a later update resurrects a deleted row.
    for delete_first in [true, false] {
        let w = World::new();
        let clock_a = ManualClock::at(T0);
        let clock_b = ManualClock::at(T0);
        let mut a = w.replica("a", clock_a.clone());
        let mut b = w.replica("b", clock_b.clone());
        let h = host(&mut a, "h1", "10.0.0.1");
        sync(&mut a);
        sync(&mut b);

        clock_a.advance(10);
        a.delete("hosts", h).expect("delete");
        // B's update is later by every clock, and still loses.
        clock_b.advance(20);
        b.update("hosts", h, &[("ip", text("10.0.0.99"))]).expect("update");
        if delete_first {
            assert_eq!(sync(&mut a), (1, 1, 0));
            assert_eq!(sync(&mut b), (1, 1, 1));
        } else {
            assert_eq!(sync(&mut b), (1, 1, 0));
            assert_eq!(sync(&mut a), (1, 1, 0));
            assert_eq!(sync(&mut b), (0, 1, 0));
        }
        sync(&mut a);
        assert_eq!(w.remote_rows("hosts"), Vec::new(), "delete_first={delete_first}");
        assert_converged(&w, &[&a, &b]);
        // And the id stays dead on both replicas.
        let again = b.update("hosts", h, &[("ip", text("10.0.0.100"))]);
        assert!(matches!(
            refusal(again),
            syncgate_engine::WriteRefusal::RowNotFound { .. }
        ));
    }
}
