//! Bad input: every misuse is a typed error that changes nothing.

use crate::support::*;
use syncgate_engine::{ColumnType, Error, Replica, Schema, SqliteRemote, TableDef};

#[test]
fn missing_remote_is_a_typed_error() {
    // Failure: opening a missing remote silently creates an empty one.
    let w = World::new();
    let path = w.dir.path().join("missing.db");
    match SqliteRemote::open(&path, &w.schema, 0) {
        Err(Error::RemoteMissing { path: p }) => assert_eq!(p, path),
        Err(e) => panic!("expected RemoteMissing, got {e:?}"),
        Ok(_) => panic!("expected RemoteMissing, got a remote"),
    }
    assert!(!path.exists(), "opening a missing remote created it");
}

fn other_schema() -> Schema {
    Schema::new(vec![
        TableDef::new("domains")
            .natural_key("name")
            .column("registrar", ColumnType::Text)
            .column("updated", ColumnType::Integer),
        TableDef::new("hosts")
            .column("hostname", ColumnType::Text)
            .column("ip", ColumnType::Text)
            .column("port", ColumnType::Integer),
        TableDef::new("dns_records")
            .reference("domain_id", "domains")
            .column("kind", ColumnType::Text)
            .column("value", ColumnType::Text),
    ])
    .expect("valid schema")
}

#[test]
fn schema_mismatch_is_a_typed_error() {
    // Failure: a remote or cache with other columns is used anyway.
    let w = World::new();
    let other = other_schema();
    let path = w.dir.path().join("other-remote.db");
    SqliteRemote::create(&path, &other, 0).expect("create the other remote");
    match SqliteRemote::open(&path, &w.schema, 0) {
        Err(Error::SchemaMismatch { place, table, .. }) => assert_eq!((place, table.as_str()), ("remote", "hosts")),
        Err(e) => panic!("expected SchemaMismatch, got {e:?}"),
        Ok(_) => panic!("expected SchemaMismatch, got a remote"),
    }

    // A cache made with the other schema, opened with the test schema.
    let cache = w.cache_path("other");
    let remote = SqliteRemote::open(&path, &other, 0).expect("open the other remote");
    let replica = Replica::open(&cache, &other, remote, ManualClock::at(T0), w.config.clone()).expect("open");
    drop(replica);
    let outcome = Replica::open(&cache, &w.schema, w.remote(), ManualClock::at(T0), w.config.clone());
    match outcome {
        Err(Error::SchemaMismatch { place, table, .. }) => assert_eq!((place, table.as_str()), ("cache", "hosts")),
        Err(e) => panic!("expected SchemaMismatch, got {e:?}"),
        Ok(_) => panic!("expected SchemaMismatch, got a replica"),
    }
}

#[test]
fn unknown_table_and_column_are_typed_errors() {
    // Failure: a name outside the declared schema reaches SQL (or panics).
    let w = World::new();
    let clock = ManualClock::at(T0);
    let mut a = w.replica("a", clock.clone());
    let h = host(&mut a, "h1", "10.0.0.1");
    let before = state(&a);

    let is_unknown_table = |e: Error| matches!(e, Error::UnknownTable(t) if t == "nope");
    assert!(is_unknown_table(
        a.insert("nope", None, &[("x", text("1"))]).expect_err("insert")
    ));
    assert!(is_unknown_table(
        a.update("nope", h, &[("x", text("1"))]).expect_err("update")
    ));
    assert!(is_unknown_table(a.delete("nope", h).expect_err("delete")));
    assert!(is_unknown_table(a.rows("nope").expect_err("rows")));
    assert!(is_unknown_table(w.schema.column_names("nope").expect_err("columns")));

    let is_unknown_column =
        |e: Error| matches!(e, Error::UnknownColumn { table, column } if table == "hosts" && column == "nope");
    assert!(is_unknown_column(
        a.insert("hosts", None, &[("nope", text("1"))]).expect_err("insert")
    ));
    assert!(is_unknown_column(
        a.update("hosts", h, &[("ip", text("2")), ("nope", text("1"))])
            .expect_err("update")
    ));
    // An `id` column is not a declared column either.
    let outcome = a.update("hosts", h, &[("id", int(h + 1))]);
    assert!(matches!(outcome, Err(Error::UnknownColumn { .. })), "{outcome:?}");

    assert_eq!(state(&a), before);
    assert_eq!(pending(&a), 1);
}

#[test]
fn bad_identifier_is_refused() {
    // Failure: a table or column name is spliced into SQL unchecked.
    let bad = "x\"; DROP TABLE";
    let outcome = Schema::new(vec![TableDef::new(bad).column("a", ColumnType::Text)]);
    assert!(
        matches!(&outcome, Err(Error::BadIdentifier(name)) if name == bad),
        "{outcome:?}"
    );
    let outcome = Schema::new(vec![TableDef::new("t").column(bad, ColumnType::Text)]);
    assert!(
        matches!(&outcome, Err(Error::BadIdentifier(name)) if name == bad),
        "{outcome:?}"
    );
    for name in ["_sg_outbox", "sqlite_master", "1abc", "", "a b", "a-b"] {
        let outcome = Schema::new(vec![TableDef::new(name).column("a", ColumnType::Text)]);
        assert!(
            matches!(&outcome, Err(Error::BadIdentifier(n)) if n == name),
            "{name:?}: {outcome:?}"
        );
    }
    let outcome = Schema::new(vec![TableDef::new("t").reference("p", "missing")]);
    assert!(matches!(outcome, Err(Error::InvalidSchema(_))), "{outcome:?}");
}

#[test]
fn corrupt_outbox_row_is_a_typed_error() {
    // Failure: a corrupt outbox entry panics, is skipped, or costs the others.
    let w = World::new();
    let clock = ManualClock::at(T0);
    let mut a = w.replica("a", clock.clone());
    host(&mut a, "h1", "10.0.0.1");
    let h2 = host(&mut a, "h2", "10.0.0.2");
    host(&mut a, "h3", "10.0.0.3");
    let seq: i64 = a
        .connection()
        .query_row("SELECT seq FROM _sg_outbox WHERE row_id = ?1", [h2], |r| r.get(0))
        .expect("seq");
    a.connection()
        .execute("UPDATE _sg_outbox SET op = 7 WHERE seq = ?1", [seq])
        .expect("corrupt");

    for outcome in [a.push(), a.sync()] {
        match outcome {
            Err(Error::CorruptOutbox { seq: s, .. }) => assert_eq!(s, seq),
            other => panic!("expected CorruptOutbox, got {other:?}"),
        }
        assert_eq!(pending(&a), 3);
    }
    assert_eq!(w.remote_rows("hosts"), Vec::new());
    assert!(a.status().expect("status").last_error.is_some());

    // Repaired (here: the entry removed), the rest goes through.
    a.connection()
        .execute("DELETE FROM _sg_outbox WHERE seq = ?1", [seq])
        .expect("repair");
    assert_eq!(sync(&mut a), (2, 2, 0));
    assert_eq!(w.remote_rows("hosts").len(), 2);
}

#[test]
fn an_uninitialized_remote_is_a_typed_error() {
    // Failure: any SQLite file is taken for a remote.
    let w = World::new();
    let path = w.dir.path().join("plain.db");
    syncgate_engine::rusqlite::Connection::open(&path)
        .expect("open")
        .execute_batch("CREATE TABLE hosts (id INTEGER PRIMARY KEY)")
        .expect("create");
    let outcome = SqliteRemote::open(&path, &w.schema, 0);
    assert!(
        matches!(outcome, Err(Error::NotInitialized { what: "remote", .. })),
        "{:?}",
        outcome.err()
    );
}

#[test]
fn an_entry_removed_from_the_top_of_the_outbox_by_hand_is_not_reused() {
    // Failure: after the newest pending entry is removed by hand (repairing
    // a corrupt entry), the next write takes its seq and a stamp below the
    // clock, or the engine stops on its own assertion.
    let w = World::new();
    let clock = ManualClock::at(T0);
    let mut a = w.replica("a", clock.clone());
    host(&mut a, "h1", "10.0.0.1");
    host(&mut a, "h2", "10.0.0.2");
    assert_eq!(pull(&mut a), (0, 0, 0), "the pull records the clock at seq 2");
    a.connection()
        .execute("DELETE FROM _sg_outbox WHERE seq = 2", [])
        .expect("remove the newest entry");
    let h3 = host(&mut a, "h3", "10.0.0.3");
    let ledger = a.ledger().expect("ledger");
    assert_eq!((ledger.captured_max, ledger.pending), (3, vec![1, 3]));
    assert_eq!(sync(&mut a), (2, 2, 0));
    assert_eq!(ids_of(&w.remote_rows("hosts")).last(), Some(&h3));
}
