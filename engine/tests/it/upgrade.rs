//! Cache files written by older versions of the engine open, upgrade in
//! place, and lose nothing; a cache from a newer version is refused.

use std::sync::Arc;

use syncgate_engine::rusqlite::types::Value;
use syncgate_engine::{Clock, Error, Schema, CACHE_FORMAT};

use crate::support::*;

/// A world on copies of the files in `tests/fixtures/<name>/` (never on the
/// fixture itself: opening a cache writes to it).
fn world_from_fixture(name: &str) -> World {
    let dir = tempfile::tempdir().expect("temp dir");
    let fixture = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    for file in ["remote.db", "replica1.db", "replica2.db"] {
        std::fs::copy(fixture.join(file), dir.path().join(file)).expect("copy fixture");
    }
    World {
        dir,
        schema: Schema::test_schema(),
        config: test_config(),
    }
}

/// The steps that made `tests/fixtures/v0` (see its README), run on today's
/// code in `w`. Leaves the clock where the fixture's steps left it.
fn replay_fixture_steps(w: &World, clock: &Arc<ManualClock>) {
    let mut r1 = w.replica("replica1", clock.clone());
    let mut r2 = w.replica("replica2", clock.clone());
    let (com, web1) = r1
        .write(|wr| {
            let com = wr.insert(
                "domains",
                None,
                &[("name", text("example.com")), ("registrar", text("reg-a"))],
            )?;
            wr.insert(
                "dns_records",
                None,
                &[
                    ("domain_id", int(com)),
                    ("kind", text("A")),
                    ("value", text("10.0.0.1")),
                ],
            )?;
            let web1 = wr.insert("hosts", None, &[("hostname", text("web1")), ("ip", text("10.0.0.1"))])?;
            Ok((com, web1))
        })
        .expect("replica 1's first transaction");
    sync(&mut r1);
    clock.advance(1_000);
    sync(&mut r2);
    clock.advance(1_000);
    let net = r2
        .insert(
            "domains",
            None,
            &[
                ("name", text("example.net")),
                ("registrar", text("reg-late")),
                ("updated", int(7)),
            ],
        )
        .expect("example.net on replica 2");
    record(&mut r2, net, "MX", "mail \"quoted\" ünïcode");
    clock.advance(1_000);
    domain(&mut r1, "example.net", "reg-early");
    sync(&mut r1);
    clock.advance(1_000);
    pull(&mut r2);
    clock.advance(1_000);
    r2.write(|wr| {
        let org = wr.insert(
            "domains",
            None,
            &[("name", text("example.org")), ("registrar", Value::Null)],
        )?;
        for (kind, value) in [("A", "10.0.0.2"), ("AAAA", "::2")] {
            wr.insert(
                "dns_records",
                None,
                &[("domain_id", int(org)), ("kind", text(kind)), ("value", text(value))],
            )?;
        }
        wr.update("hosts", web1, &[("ip", text("10.9.9.9"))])
    })
    .expect("example.org with its records");
    clock.advance(1_000);
    r2.update("domains", com, &[("updated", int(42))]).expect("update");
    r2.delete("domains", com).expect("cascading delete");
    let raw = r2.next_id().expect("next id");
    r2.connection()
        .execute("INSERT INTO hosts (id, hostname, ip) VALUES (?1, 'raw', NULL)", [raw])
        .expect("raw insert");
    r2.connection()
        .execute("UPDATE hosts SET ip = '192.168.0.1' WHERE id = ?1", [raw])
        .expect("raw update");
    clock.advance(1_000);
    r1.update("hosts", web1, &[("hostname", text("web1-renamed"))])
        .expect("replica 1's pending rename");
}

/// Syncs replica 2, then 1, then 2, and returns every place's rows.
fn sync_all(w: &World, clock: &Arc<ManualClock>) -> (State, State, State) {
    let mut r1 = w.replica("replica1", clock.clone());
    let mut r2 = w.replica("replica2", clock.clone());
    sync(&mut r2);
    sync(&mut r1);
    sync(&mut r2);
    assert_converged(w, &[&r1, &r2]);
    (w.remote_state(), state(&r1), state(&r2))
}

#[test]
fn a_format_0_cache_upgrades_in_place_and_loses_nothing() {
    // Failure: a new version of the engine cannot read a cache an older one
    // wrote, or drops its pending writes on the way.
    let old = world_from_fixture("v0");
    let clock = ManualClock::at(T0 + 7_000);
    let raw_pending = |name: &str| -> Vec<i64> {
        let conn = old.raw(&old.cache_path(name));
        let mut stmt = conn
            .prepare("SELECT seq FROM _sg_outbox ORDER BY seq")
            .expect("prepare");
        let seqs = stmt.query_map([], |r| r.get(0)).expect("query");
        seqs.collect::<Result<_, _>>().expect("seqs")
    };
    let before = [raw_pending("replica1"), raw_pending("replica2")];
    assert_eq!(
        before,
        [vec![5], (1..=11).collect::<Vec<i64>>()],
        "the fixture as its README says"
    );
    for (name, pending_before) in ["replica1", "replica2"].into_iter().zip(&before) {
        let rows_before = {
            let conn = old.raw(&old.cache_path(name));
            old.schema
                .table_names()
                .map(|t| {
                    (
                        t.to_string(),
                        conn.query_row(&format!("SELECT count(*) FROM {t}"), [], |r| r.get(0)),
                    )
                })
                .map(|(t, n): (String, Result<i64, _>)| (t, n.expect("count")))
                .collect::<Vec<_>>()
        };
        let r = old.replica(name, clock.clone());
        let format: i64 = r
            .connection()
            .query_row("SELECT format FROM _sg_meta", [], |row| row.get(0))
            .expect("format");
        assert_eq!(format, CACHE_FORMAT, "{name} was upgraded");
        assert_eq!(
            &r.ledger().expect("ledger").pending,
            pending_before,
            "{name} kept its pending writes"
        );
        let rows_after: Vec<(String, i64)> = state(&r).into_iter().map(|(t, rows)| (t, rows.len() as i64)).collect();
        assert_eq!(rows_after, rows_before, "{name} kept its rows");
    }

    let fresh = World::new();
    let fresh_clock = ManualClock::at(T0);
    replay_fixture_steps(&fresh, &fresh_clock);
    assert_eq!(fresh_clock.now_ms(), clock.now_ms());
    let upgraded = sync_all(&old, &clock);
    assert_eq!(
        upgraded,
        sync_all(&fresh, &fresh_clock),
        "the upgraded files sync to what today's code makes of the same writes"
    );
    let values = |table: &str| -> Vec<Vec<Value>> {
        let rows = &upgraded.0.iter().find(|(t, _)| t == table).expect("table").1;
        rows.iter().map(|(_, v)| v.clone()).collect()
    };
    assert_eq!(
        values("domains"),
        vec![
            vec![text("example.net"), text("reg-early"), Value::Null],
            vec![text("example.org"), Value::Null, Value::Null],
        ],
        "example.com deleted; example.net merged, replica 1's insert (stamped later) wins every column (M3)"
    );
    assert_eq!(
        values("hosts"),
        vec![
            vec![text("web1-renamed"), text("10.9.9.9")],
            vec![text("raw"), text("192.168.0.1")],
        ]
    );
    assert_eq!(values("dns_records").len(), 3, "the MX record and example.org's two");
}

#[test]
fn a_cache_from_a_newer_format_is_a_typed_error() {
    // Failure: an older engine opens a newer cache and misreads its outbox.
    let w = World::new();
    let clock = ManualClock::at(T0);
    let mut a = w.replica("a", clock.clone());
    host(&mut a, "h1", "10.0.0.1");
    drop(a);
    w.raw(&w.cache_path("a"))
        .execute("UPDATE _sg_meta SET format = ?1", [CACHE_FORMAT + 1])
        .expect("a newer format");
    let outcome = syncgate_engine::Replica::open(&w.cache_path("a"), &w.schema, w.remote(), clock, w.config.clone());
    match outcome {
        Err(Error::CacheFormatTooNew { found, supported, .. }) => {
            assert_eq!((found, supported), (CACHE_FORMAT + 1, CACHE_FORMAT));
        }
        other => panic!("expected CacheFormatTooNew, got {:?}", other.err()),
    }
}

#[test]
fn a_trigger_whose_text_changed_is_reinstalled() {
    // Failure: triggers are reinstalled only when their count changes, so a
    // trigger that changed in a new version is never upgraded.
    let w = World::new();
    let clock = ManualClock::at(T0);
    drop(w.replica("a", clock.clone()));
    let schema_version = |w: &World| -> i64 {
        w.raw(&w.cache_path("a"))
            .query_row("PRAGMA schema_version", [], |r| r.get(0))
            .expect("schema version")
    };
    let settled = schema_version(&w);
    drop(w.replica("a", clock.clone()));
    assert_eq!(
        schema_version(&w),
        settled,
        "an up-to-date cache is not rewritten at open"
    );

    // An old version's insert trigger that captures nothing, same name.
    let conn = w.raw(&w.cache_path("a"));
    let name: String = conn
        .query_row(
            "SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'hosts' AND sql LIKE '%AFTER INSERT%'",
            [],
            |r| r.get(0),
        )
        .expect("the hosts insert trigger");
    conn.execute_batch(&format!(
        "DROP TRIGGER \"{name}\"; CREATE TRIGGER \"{name}\" AFTER INSERT ON hosts BEGIN SELECT 1; END;"
    ))
    .expect("replace the trigger");
    drop(conn);
    let mut a = w.replica("a", clock.clone());
    host(&mut a, "h1", "10.0.0.1");
    assert_eq!(pending(&a), 1, "the insert was captured by the reinstalled trigger");
}
