//! The remote on PostgreSQL as an outside engine leaves it: only the synced
//! tables, none of the reference engine's own (`_sg_*`). The harness reads
//! it, and its lock steps block that engine's writes (and, exclusively, its
//! reads) with table locks, as the same steps do on a SQLite file.
//!
//! Needs `SYNCGATE_PG_URL`; without it each test says on the terminal that
//! it was skipped.

use syncgate::places::{PlaceError, RemotePlace, RemoteTarget};
use syncgate::scenario::LockKind;
use syncgate::schema::{ddl, quote};
use syncgate_engine::postgres::{Client, NoTls};
use syncgate_model::{test_schema, Value};
use syncgate_protocol::RemoteLocation;

use crate::support::pg_url;

/// A session of "the engine": waits on a lock at most 300 ms.
fn engine_session(url: &str) -> Client {
    let mut client = Client::connect(url, NoTls).expect("connect");
    client
        .batch_execute("SET lock_timeout = '300ms'")
        .expect("lock_timeout");
    client
}

/// Whether `sql` ran, or waited past the lock timeout (SQLSTATE 55P03).
fn runs(client: &mut Client, sql: &str) -> bool {
    let outcome = client.batch_execute(&format!("BEGIN; {sql}; ROLLBACK"));
    if outcome.is_err() {
        client.batch_execute("ROLLBACK").expect("roll back");
    }
    match outcome {
        Ok(()) => true,
        Err(e) if e.code().is_some_and(|c| c.code() == "55P03") => false,
        Err(e) => panic!("{sql}: {e:?}"),
    }
}

#[test]
fn an_outside_engine_on_postgres_needs_no_table_of_the_reference_engine() {
    let Some(url) = pg_url("an_outside_engine_on_postgres_needs_no_table_of_the_reference_engine") else {
        return;
    };
    let dir = tempfile::tempdir().expect("a folder");
    let schema = test_schema();
    let mut place = RemotePlace::new(&RemoteTarget::Postgres { url: url.clone() }, dir.path(), &schema);
    let RemoteLocation::Postgres { schema: namespace, .. } = place.location() else {
        panic!("a PostgreSQL remote")
    };
    // What an outside engine creates: the synced tables, nothing else.
    let mut engine = engine_session(&url);
    let mut setup = format!(
        "CREATE SCHEMA {}; SET search_path TO {};",
        quote(&namespace),
        quote(&namespace)
    );
    for statement in ddl(&schema) {
        setup.push_str(&statement);
        setup.push(';');
    }
    setup.push_str("INSERT INTO \"hosts\" (\"id\", \"hostname\", \"ip\") VALUES (7, 'web.w1', NULL);");
    engine.batch_execute(&setup).expect("the synced tables");

    let tables = place.read_tables().expect("the harness reads the synced tables alone");
    assert_eq!(
        tables[1].get(&7),
        Some(&vec![Value::Text("web.w1".into()), Value::Null])
    );

    let write = "INSERT INTO \"hosts\" (\"id\", \"hostname\") VALUES (8, 'db.w2')";
    let read = "SELECT count(*) FROM \"hosts\"";
    let lock_row = "SELECT 1 FROM \"hosts\" FOR UPDATE";
    assert!(runs(&mut engine, write) && runs(&mut engine, read), "no lock held yet");
    // (lock, the engine may write, may read, may lock a row)
    let steps = [
        (LockKind::Shared, false, true, true),
        (LockKind::Reserved, false, true, false),
        (LockKind::Exclusive, false, false, false),
    ];
    for (lock, writes, reads, locks_rows) in steps {
        place.lock(lock, 1).expect("the harness locks the synced tables");
        assert_eq!(runs(&mut engine, write), writes, "{lock:?}: a write");
        assert_eq!(runs(&mut engine, read), reads, "{lock:?}: a read");
        assert_eq!(runs(&mut engine, lock_row), locks_rows, "{lock:?}: a row lock");
        place.release();
        assert!(runs(&mut engine, write), "{lock:?} released");
    }
    drop(place);
    let left: i64 = engine
        .query_one("SELECT count(*) FROM pg_namespace WHERE nspname = $1", &[&namespace])
        .expect("catalog")
        .get(0);
    assert_eq!(left, 0, "the case's schema goes with the case");
}

#[test]
fn a_remote_without_its_synced_tables_blames_the_engine_with_the_server_words() {
    let Some(url) = pg_url("a_remote_without_its_synced_tables_blames_the_engine_with_the_server_words") else {
        return;
    };
    let dir = tempfile::tempdir().expect("a folder");
    let mut place = RemotePlace::new(&RemoteTarget::Postgres { url }, dir.path(), &test_schema());
    // The engine never created the case's schema.
    match place.read_tables() {
        Err(PlaceError::Content(words)) => {
            assert!(
                words.contains("SQLSTATE 3F000") || words.contains("SQLSTATE 42P01"),
                "{words}"
            );
            assert!(!words.contains("db error"), "{words}");
        }
        other => panic!("a missing schema is the engine's: {other:?}"),
    }
}
