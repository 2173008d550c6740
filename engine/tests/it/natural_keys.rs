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
