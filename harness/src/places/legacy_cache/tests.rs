//! The downgrade writes what an older reference engine wrote (held to the
//! fixture files of format 0), and today's engine reads it back as it was.

use std::path::Path;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use rusqlite::types::Value;
use rusqlite::{Connection, OpenFlags};
use syncgate_engine::{outbox, Clock, Config, Replica, Schema, SqliteRemote, CACHE_FORMAT};
use syncgate_model as model;

use super::{downgrade, Downgrade, LegacyFormat};

#[derive(Debug)]
struct FixedClock(AtomicI64);

impl Clock for FixedClock {
    fn now_ms(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
    fn sleep_ms(&self, _ms: u64) {}
}

/// What a cache's sync state says, read the way today's engine reads it.
#[derive(Debug, PartialEq)]
struct SyncState {
    entries: Vec<outbox::Entry>,
    ledger: outbox::Ledger,
    clock_now: i64,
    meta: (i64, i64, i64, i64),
    tombstones: Vec<(String, i64)>,
    aliases: Vec<(String, i64, i64)>,
}

fn sync_state(path: &Path, schema: &Schema) -> SyncState {
    let conn = Connection::open(path).expect("open the cache");
    let (hlc, hlc_seq): (i64, i64) = conn
        .query_row("SELECT hlc, hlc_seq FROM _sg_meta", [], |r| Ok((r.get(0)?, r.get(1)?)))
        .expect("clock");
    let ledger = outbox::read_ledger(&conn).expect("ledger");
    let all = |sql: &str| -> Vec<Vec<Value>> {
        let mut stmt = conn.prepare(sql).expect("prepare");
        let n = stmt.column_count();
        let rows = stmt
            .query_map([], |r| {
                (0..n)
                    .map(|i| r.get::<_, Value>(i))
                    .collect::<rusqlite::Result<Vec<_>>>()
            })
            .expect("query");
        rows.collect::<rusqlite::Result<_>>().expect("rows")
    };
    let text = |v: &Value| match v {
        Value::Text(s) => s.clone(),
        other => panic!("not text: {other:?}"),
    };
    let int = |v: &Value| match v {
        Value::Integer(i) => *i,
        other => panic!("not an integer: {other:?}"),
    };
    SyncState {
        entries: outbox::read_entries(&conn, schema, 0).expect("entries"),
        clock_now: hlc + (ledger.captured_max - hlc_seq),
        ledger,
        meta: conn
            .query_row("SELECT replica, next_id, txn, cursor FROM _sg_meta", [], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
            })
            .expect("meta"),
        tombstones: all("SELECT tbl, id FROM _sg_tombstones ORDER BY 1, 2")
            .iter()
            .map(|r| (text(&r[0]), int(&r[1])))
            .collect(),
        aliases: all("SELECT tbl, id, survivor FROM _sg_aliases ORDER BY 1, 2")
            .iter()
            .map(|r| (text(&r[0]), int(&r[1]), int(&r[2])))
            .collect(),
    }
}

/// A replica's cache with acknowledged writes (a floor row), then pending
/// inserts, updates to and from NULL, a delete, values at the i64 bounds,
/// non-ASCII text and two transactions. Returns the cache's path.
fn cache_with_history(dir: &Path, schema: &Schema, clock: &Arc<FixedClock>) -> std::path::PathBuf {
    let remote_path = dir.join("remote.db");
    drop(SqliteRemote::create(&remote_path, schema, 0).expect("remote"));
    let open = |name: &str| {
        let remote = SqliteRemote::open(&remote_path, schema, 0).expect("remote");
        Replica::open(&dir.join(name), schema, remote, clock.clone(), Config::default()).expect("replica")
    };
    let text = |s: &str| Value::Text(s.to_string());
    let mut other = open("other.db");
    let theirs = other
        .insert("domains", None, &[("name", text("theirs.example"))])
        .expect("their domain");
    other.sync().expect("their sync");
    let mut r = open("cache.db");
    let gone = r
        .insert("domains", None, &[("name", text("gone.example"))])
        .expect("insert");
    r.sync().expect("sync: acknowledged, so the outbox keeps a floor row");
    clock.0.fetch_add(1_000, Ordering::Relaxed);
    let com = r
        .write(|w| {
            let com = w.insert(
                "domains",
                None,
                &[("name", text("ünïcødé.example")), ("registrar", text(""))],
            )?;
            w.insert(
                "dns_records",
                None,
                &[
                    ("domain_id", Value::Integer(com)),
                    ("kind", text("TXT")),
                    ("value", text("v=1 \"q\"")),
                ],
            )?;
            Ok(com)
        })
        .expect("a transaction of two writes");
    r.update("domains", com, &[("updated", Value::Integer(i64::MAX))])
        .expect("update from NULL");
    r.update(
        "domains",
        com,
        &[("updated", Value::Integer(i64::MIN)), ("registrar", Value::Null)],
    )
    .expect("update to NULL");
    r.update("domains", theirs, &[("registrar", text("mine"))])
        .expect("update of a pulled row");
    r.delete("domains", gone).expect("delete");
    r.insert("hosts", None, &[("hostname", text("h")), ("ip", Value::Null)])
        .expect("host");
    dir.join("cache.db")
}

fn table_shape(conn: &Connection, table: &str) -> Vec<(String, String, bool, i64)> {
    let mut stmt = conn
        .prepare("SELECT name, type, \"notnull\", pk FROM pragma_table_info(?1) ORDER BY cid")
        .expect("prepare");
    let rows = stmt
        .query_map([table], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
        .expect("query");
    rows.collect::<rusqlite::Result<_>>().expect("rows")
}

fn index_shape(conn: &Connection, index: &str) -> Vec<String> {
    let mut stmt = conn
        .prepare("SELECT name FROM pragma_index_info(?1) ORDER BY seqno")
        .expect("prepare");
    let rows = stmt.query_map([index], |r| r.get(0)).expect("query");
    rows.collect::<rusqlite::Result<_>>().expect("rows")
}

fn fixture_v0() -> Connection {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../engine/tests/fixtures/v0/replica2.db");
    Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY).expect("the v0 fixture")
}

fn round_trip(to: LegacyFormat) {
    let dir = tempfile::tempdir().expect("temp dir");
    let schema = Schema::test_schema();
    let clock = Arc::new(FixedClock(AtomicI64::new(1_700_000_000_000)));
    let path = cache_with_history(dir.path(), &schema, &clock);
    let before = sync_state(&path, &schema);
    assert!(
        before.ledger.pending.len() >= 7,
        "the history leaves writes pending: {before:?}"
    );
    assert!(
        before.ledger.captured_max > before.ledger.pending[0],
        "the history leaves a floor row below the pending writes"
    );
    assert!(!before.tombstones.is_empty(), "the history leaves a tombstone");

    let mut conn = Connection::open(&path).expect("open");
    let done = downgrade(&mut conn, &model::test_schema(), to).expect("downgrade");
    assert_eq!(
        done,
        Downgrade::Done {
            pending: before.ledger.pending.len()
        }
    );

    assert!(
        table_shape(&conn, "_sg_victims").is_empty(),
        "no format before 3 keeps a delete's victims"
    );
    if to == LegacyFormat::V2 {
        let format: i64 = conn
            .query_row("SELECT format FROM _sg_meta", [], |row| row.get(0))
            .expect("format");
        assert_eq!(format, 2);
    } else {
        let fixture = fixture_v0();
        let mut meta = table_shape(&fixture, "_sg_meta");
        if to == LegacyFormat::V1 {
            meta.push(("format".into(), "INTEGER".into(), true, 0));
        }
        assert_eq!(table_shape(&conn, "_sg_meta"), meta);
        assert_eq!(table_shape(&conn, "_sg_outbox"), table_shape(&fixture, "_sg_outbox"));
        assert_eq!(
            index_shape(&conn, "_sg_outbox_row"),
            index_shape(&fixture, "_sg_outbox_row")
        );
    }
    let triggers: i64 = conn
        .query_row("SELECT count(*) FROM sqlite_master WHERE type = 'trigger'", [], |r| {
            r.get(0)
        })
        .expect("triggers");
    assert_eq!(triggers, 0, "the old triggers are gone");
    drop(conn);

    // Today's engine opens it, upgrades it, and finds everything as it was.
    let remote = SqliteRemote::open(&dir.path().join("remote.db"), &schema, 0).expect("remote");
    let mut r = Replica::open(&path, &schema, remote, clock.clone(), Config::default()).expect("open upgrades");
    let format: i64 = Connection::open(&path)
        .expect("open")
        .query_row("SELECT format FROM _sg_meta", [], |row| row.get(0))
        .expect("format");
    assert_eq!(format, CACHE_FORMAT);
    assert_eq!(sync_state(&path, &schema), before);
    // And it captures again, stamped after everything before.
    r.insert("hosts", None, &[("hostname", Value::Text("after".into()))])
        .expect("a write after the upgrade");
    let after = sync_state(&path, &schema);
    let last = after.entries.last().expect("the new write");
    assert_eq!(last.seq, before.ledger.captured_max + 1);
    assert!(last.stamp.hlc > before.clock_now);
    r.sync().expect("the upgraded cache syncs");
    assert!(sync_state(&path, &schema).ledger.pending.is_empty());
}

#[test]
fn a_cache_downgraded_to_format_0_is_read_back_unchanged_by_todays_engine() {
    round_trip(LegacyFormat::V0);
}

#[test]
fn a_cache_downgraded_to_format_1_is_read_back_unchanged_by_todays_engine() {
    round_trip(LegacyFormat::V1);
}

#[test]
fn a_cache_downgraded_to_format_2_is_read_back_unchanged_by_todays_engine() {
    round_trip(LegacyFormat::V2);
}

#[test]
fn a_cache_that_remembers_a_deletes_victims_is_left_alone() {
    let dir = tempfile::tempdir().expect("temp dir");
    let schema = Schema::test_schema();
    let clock = Arc::new(FixedClock(AtomicI64::new(1_700_000_000_000)));
    let path = cache_with_history(dir.path(), &schema, &clock);
    let mut conn = Connection::open(&path).expect("open");
    conn.execute("INSERT INTO _sg_victims (tbl, id, cause) VALUES ('hosts', 7, 1)", [])
        .expect("a victim");
    for to in [LegacyFormat::V2, LegacyFormat::V1, LegacyFormat::V0] {
        assert_eq!(
            downgrade(&mut conn, &model::test_schema(), to),
            Ok(Downgrade::NoOlderVersion),
            "{to:?}"
        );
    }
    let format: i64 = conn
        .query_row("SELECT format FROM _sg_meta", [], |row| row.get(0))
        .expect("format");
    assert_eq!(format, CACHE_FORMAT, "left as it was");
}

#[test]
fn a_file_that_is_not_a_current_reference_cache_is_left_alone() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("app.db");
    let mut conn = Connection::open(&path).expect("open");
    conn.execute_batch("CREATE TABLE domains (id INTEGER PRIMARY KEY, name TEXT)")
        .expect("a table");
    let schema = model::test_schema();
    assert_eq!(
        downgrade(&mut conn, &schema, LegacyFormat::V0),
        Ok(Downgrade::NotReferenceFormat)
    );
    // A format-1 cache (the fixture's shape, once downgraded) is not downgraded again.
    let dir2 = tempfile::tempdir().expect("temp dir");
    let copy = dir2.path().join("replica2.db");
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../engine/tests/fixtures/v0/replica2.db"),
        &copy,
    )
    .expect("copy");
    let mut old = Connection::open(&copy).expect("open");
    assert_eq!(
        downgrade(&mut old, &schema, LegacyFormat::V1),
        Ok(Downgrade::NotReferenceFormat)
    );
}

#[test]
fn a_downgraded_cache_with_nothing_pending_keeps_the_highest_seq_it_handed_out() {
    let dir = tempfile::tempdir().expect("temp dir");
    let schema = Schema::test_schema();
    let clock = Arc::new(FixedClock(AtomicI64::new(1_700_000_000_000)));
    let path = cache_with_history(dir.path(), &schema, &clock);
    let remote = || SqliteRemote::open(&dir.path().join("remote.db"), &schema, 0).expect("remote");
    let mut r = Replica::open(&path, &schema, remote(), clock.clone(), Config::default()).expect("open");
    r.sync().expect("everything acknowledged: only the floor row is left");
    drop(r);
    let before = sync_state(&path, &schema);
    assert!(before.ledger.pending.is_empty() && before.ledger.captured_max > 0);

    let mut conn = Connection::open(&path).expect("open");
    let done = downgrade(&mut conn, &model::test_schema(), LegacyFormat::V0).expect("downgrade");
    assert_eq!(done, Downgrade::Done { pending: 0 });
    drop(conn);
    let mut r = Replica::open(&path, &schema, remote(), clock.clone(), Config::default()).expect("open upgrades");
    assert_eq!(sync_state(&path, &schema), before);
    r.insert("hosts", None, &[("hostname", Value::Text("after".into()))])
        .expect("a write after the upgrade");
    let after = sync_state(&path, &schema);
    assert_eq!(
        after.ledger.pending,
        vec![before.ledger.captured_max + 1],
        "a seq is never reused"
    );
}

#[test]
fn a_newer_versions_format_is_one_above_the_reference_engines() {
    assert_eq!(i64::from(crate::scenario::NEWER_CACHE_FORMAT), CACHE_FORMAT + 1);
}

#[test]
fn a_cache_marked_as_a_newer_versions_is_refused_by_todays_engine_and_opens_once_restored() {
    let dir = tempfile::tempdir().expect("temp dir");
    let schema = Schema::test_schema();
    let clock = Arc::new(FixedClock(AtomicI64::new(1_700_000_000_000)));
    let path = cache_with_history(dir.path(), &schema, &clock);
    let before = sync_state(&path, &schema);
    let remote = || SqliteRemote::open(&dir.path().join("remote.db"), &schema, 0).expect("remote");

    let mut conn = Connection::open(&path).expect("open");
    assert_eq!(super::mark_newer(&mut conn, CACHE_FORMAT + 1), Ok(Some(CACHE_FORMAT)));
    let refused = Replica::open(&path, &schema, remote(), clock.clone(), Config::default());
    assert!(
        matches!(refused, Err(syncgate_engine::Error::CacheFormatTooNew { .. })),
        "{:?}",
        refused.map(|_| ())
    );
    super::restore_format(&conn, CACHE_FORMAT).expect("restore");
    drop(conn);
    drop(Replica::open(&path, &schema, remote(), clock.clone(), Config::default()).expect("opens again"));
    assert_eq!(sync_state(&path, &schema), before, "the refusal wrote nothing");
}
