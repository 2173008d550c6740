//! Ids: no write ever takes over a row it does not own.

use crate::support::*;
use syncgate_engine::{id_space, WriteRefusal};

#[test]
fn colliding_ids_never_overwrite() {
    // Failure: an insert with an existing or foreign id replaces another row.
    let w = World::new();
    let clock = ManualClock::at(T0);
    let mut a = w.replica("a", clock.clone());
    let mut b = w.replica("b", clock.clone());
    let ha = host(&mut a, "from-a", "10.0.0.1");
    sync(&mut a);
    sync(&mut b);
    let before_a = state(&a);
    let before_b = state(&b);

    // An explicit id from A's space, on B.
    let (lo, hi) = id_space(b.replica_id());
    assert!(!(lo..hi).contains(&ha));
    let refused = refusal(b.insert("hosts", Some(ha), &[("hostname", text("from-b"))]));
    assert_eq!(
        refused,
        WriteRefusal::IdOutsideReplica {
            table: "hosts".into(),
            id: ha,
            lo,
            hi
        }
    );

    // An explicit id of an existing row, on its own replica.
    let refused = refusal(a.insert("hosts", Some(ha), &[("hostname", text("again"))]));
    assert_eq!(
        refused,
        WriteRefusal::IdTaken {
            table: "hosts".into(),
            id: ha
        }
    );

    // Raw INSERT OR REPLACE of an existing row: the statement fails, the row stays.
    for (r, name) in [(&a, "a"), (&b, "b")] {
        let outcome = r.connection().execute(
            "INSERT OR REPLACE INTO hosts (id, hostname, ip) VALUES (?1, 'replaced', NULL)",
            [ha],
        );
        assert!(outcome.is_err(), "replica {name}: INSERT OR REPLACE overwrote row {ha}");
    }
    // Raw INSERT of a foreign id: refused by the capture trigger.
    let fresh_foreign = ha + 1;
    let outcome = b.connection().execute(
        "INSERT INTO hosts (id, hostname) VALUES (?1, 'sneaky')",
        [fresh_foreign],
    );
    assert!(outcome.is_err(), "raw insert of an id outside B's space was accepted");

    assert_eq!(state(&a), before_a);
    assert_eq!(state(&b), before_b);
    assert_eq!((pending(&a), pending(&b)), (0, 0));
    sync(&mut a);
    sync(&mut b);
    assert_eq!(
        w.remote_rows("hosts"),
        vec![(ha, vec![text("from-a"), text("10.0.0.1")])]
    );
    assert_converged(&w, &[&a, &b]);
}

#[test]
fn minted_ids_are_disjoint_across_replicas() {
    // Failure: two replicas mint the same id and one row overwrites the other.
    let w = World::new();
    let clock = ManualClock::at(T0);
    let mut a = w.replica("a", clock.clone());
    let mut b = w.replica("b", clock.clone());
    assert_ne!(a.replica_id(), b.replica_id());
    let ha = host(&mut a, "a", "1");
    let hb = host(&mut b, "b", "2");
    assert_ne!(ha, hb);
    let (lo, hi) = id_space(a.replica_id());
    assert!((lo..hi).contains(&ha));
    let (lo, hi) = id_space(b.replica_id());
    assert!((lo..hi).contains(&hb));
    sync(&mut a);
    sync(&mut b);
    sync(&mut a);
    assert_eq!(ids(&a, "hosts").len(), 2);
    assert_converged(&w, &[&a, &b]);
}

#[test]
fn insert_or_replace_from_another_connection_never_overwrites() {
    // Failure: a REPLACE from a connection without recursive_triggers overwrites a row unseen.
    let w = World::new();
    let clock = ManualClock::at(T0);
    let mut a = w.replica("a", clock.clone());
    let mut b = w.replica("b", clock.clone());
    let h = host(&mut a, "original", "10.0.0.1");
    sync(&mut a);
    sync(&mut b);
    let before = state(&a);

    let other = w.raw(&w.cache_path("a"));
    let outcome = other.execute(
        "INSERT OR REPLACE INTO hosts (id, hostname, ip) VALUES (?1, 'replaced', NULL)",
        [h],
    );
    drop(other);
    assert!(
        outcome.is_err(),
        "INSERT OR REPLACE from another connection overwrote row {h}"
    );
    assert_eq!(state(&a), before);
    assert_eq!(pending(&a), 0);
    sync(&mut a);
    sync(&mut b);
    assert_eq!(
        w.remote_rows("hosts"),
        vec![(h, vec![text("original"), text("10.0.0.1")])]
    );
    assert_converged(&w, &[&a, &b]);
}
