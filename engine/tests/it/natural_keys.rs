//! Natural keys: rows with the same key made apart become one row, and a
//! key never changes.

use crate::support::*;
use syncgate_engine::rusqlite::types::Value;
use syncgate_engine::{Replica, SqliteRemote, WriteRefusal};

struct Merge {
    w: World,
    a: Replica<SqliteRemote>,
    b: Replica<SqliteRemote>,
    da: i64,
    ra: i64,
    rb: i64,
}

/// A and B both insert example.com while apart (B later), each with a record.
fn apart() -> (Merge, i64) {
    let w = World::new();
    let clock = ManualClock::at(T0);
    let mut a = w.replica("a", clock.clone());
    let mut b = w.replica("b", clock.clone());
    let da = domain(&mut a, "example.com", "registrar-a");
    let ra = record(&mut a, da, "A", "192.0.2.1");
    clock.advance(10);
    let db = domain(&mut b, "example.com", "registrar-b");
    let rb = record(&mut b, db, "MX", "mail.example.com");
    assert_ne!(da, db);
    (Merge { w, a, b, da, ra, rb }, db)
}

fn the_merged_domain(m: &Merge) -> Rows {
    vec![(m.da, vec![text("example.com"), text("registrar-b"), Value::Null])]
}

fn check_merged(m: &Merge) {
    let domains = the_merged_domain(m);
    assert_eq!(m.w.remote_rows("domains"), domains, "remote");
    assert_eq!(rows(&m.a, "domains"), domains, "replica a");
    assert_eq!(rows(&m.b, "domains"), domains, "replica b");
    let records = m.w.remote_rows("dns_records");
    assert_eq!(ids_of(&records), vec![m.ra, m.rb]);
    assert!(
        records.iter().all(|(_, v)| v[0] == int(m.da)),
        "a record is not attached to the survivor {}: {records:?}",
        m.da
    );
    assert_converged(&m.w, &[&m.a, &m.b]);
}

#[test]
fn same_domain_on_two_replicas_merges() {
    // Failure: one natural key made on two replicas hits UNIQUE, stays two rows, or orphans a child.
    let (mut m, _db) = apart();
    assert_eq!(sync(&mut m.a), (2, 2, 0));
    // B's domain merges into A's (1 conflict): its columns win by stamp.
    assert_eq!(sync(&mut m.b), (2, 4, 1));
    assert_eq!(sync(&mut m.a), (0, 3, 0));
    check_merged(&m);
    // Nothing echoes afterwards.
    assert_eq!(sync(&mut m.b), (0, 0, 0));
    assert_eq!(sync(&mut m.a), (0, 0, 0));
}

#[test]
fn same_domain_merges_when_b_pulls_before_pushing() {
    // Failure: a pull meeting a pending same-key row hits UNIQUE, drops its child or its newer columns.
    let (mut m, db) = apart();
    assert_eq!(sync(&mut m.a), (2, 2, 0));
    let (_, pulled, _) = pull(&mut m.b);
    assert_eq!(pulled, 2);
    // Locally merged already: one domain, B's newer registrar kept, both records on it.
    assert_eq!(rows(&m.b, "domains"), the_merged_domain(&m));
    assert_eq!(ids(&m.b, "dns_records"), vec![m.ra, m.rb]);
    assert_eq!(pending(&m.b), 2);
    let again = m.b.update("domains", db, &[("registrar", text("x"))]);
    assert!(matches!(refusal(again), WriteRefusal::RowNotFound { .. }));
    sync(&mut m.b);
    sync(&mut m.a);
    check_merged(&m);
}

#[test]
fn a_replica_refuses_a_second_row_with_the_same_key() {
    // Failure: one replica ends up with two rows for one natural key.
    let w = World::new();
    let clock = ManualClock::at(T0);
    let mut a = w.replica("a", clock.clone());
    let d = domain(&mut a, "example.com", "r1");
    let refused = refusal(a.insert("domains", None, &[("name", text("example.com"))]));
    assert!(
        matches!(&refused, WriteRefusal::NaturalKeyTaken { table, column, holder, .. }
            if table == "domains" && column == "name" && *holder == d),
        "{refused:?}"
    );
    assert_eq!(ids(&a, "domains"), vec![d]);
    assert_eq!(pending(&a), 1);
}

#[test]
fn natural_key_is_immutable() {
    // Failure: renaming a natural key silently re-identifies a row.
    let w = World::new();
    let clock = ManualClock::at(T0);
    let mut a = w.replica("a", clock.clone());
    let d = domain(&mut a, "example.com", "r1");
    sync(&mut a);
    let before = state(&a);

    let refused = refusal(a.update("domains", d, &[("name", text("example.net"))]));
    assert_eq!(
        refused,
        WriteRefusal::KeyImmutable {
            table: "domains".into(),
            column: "name".into()
        }
    );
    // The same through raw SQL, for the key and for the id.
    let raw = a
        .connection()
        .execute("UPDATE domains SET name = 'example.net' WHERE id = ?1", [d]);
    assert!(raw.is_err(), "a raw rename of the natural key was accepted");
    let raw = a
        .connection()
        .execute("UPDATE domains SET id = id + 1 WHERE id = ?1", [d]);
    assert!(raw.is_err(), "a raw change of the id was accepted");
    assert_eq!(state(&a), before);
    assert_eq!(pending(&a), 0);
    // Other columns still change.
    a.update("domains", d, &[("registrar", text("r2"))]).expect("update");
    assert_eq!(sync(&mut a), (1, 1, 0));
    assert_converged(&w, &[&a]);
}

#[test]
fn pull_only_replica_survives_death_of_the_row_its_domain_merged_into() {
    // Issue 12. B's domain merged on the remote into A's (same name); C then
    // deleted A's domain; B, which had not pulled since, added a record under
    // its own merged-away domain. B's pull re-pointed that record to A's
    // domain, never held locally, whose death then did not cascade: every
    // pull failed with a raw "FOREIGN KEY constraint failed" until B pushed.
    let w = World::new();
    let clock = ManualClock::at(T0);
    let mut a = w.replica("a", clock.clone());
    let mut b = w.replica("b", clock.clone());
    let mut c = w.replica("c", clock.clone());
    let da = domain(&mut a, "a.example", "alpha");
    assert_eq!(push(&mut a), (1, 0, 0));
    let db = domain(&mut b, "a.example", "alpha");
    assert_eq!(pull(&mut c), (0, 1, 0));
    assert_eq!(push(&mut b), (1, 0, 1), "B's domain merges into A's on the remote");
    c.delete("domains", da).expect("delete");
    assert_eq!(push(&mut c), (1, 0, 0));
    let child = record(&mut b, db, "MX", "alpha");

    // The pull applies (A's death and B's alias) and takes the record along.
    assert_eq!(pull(&mut b), (0, 2, 0));
    assert!(ids(&b, "domains").is_empty());
    assert!(ids(&b, "dns_records").is_empty());
    assert_eq!(pending(&b), 1, "the record's insert stays pending");
    assert_eq!(pull(&mut b), (0, 0, 0), "pull again: nothing stuck");
    // Pushed, the record arrives dead (D2: 1 conflict) and stays dead everywhere.
    assert_eq!(push(&mut b), (1, 0, 1));
    for r in [&mut a, &mut b, &mut c] {
        sync(r);
    }
    assert!(w.remote_rows("dns_records").is_empty());
    assert_eq!(pending(&b), 0);
    assert_converged(&w, &[&a, &b, &c]);
    let again = b.insert("dns_records", Some(child), &[("domain_id", int(db))]);
    assert!(matches!(refusal(again), WriteRefusal::IdDeleted { .. }));
}
