//! A small world of replicas over one remote file, with a controllable clock.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use syncgate_engine::rusqlite::types::Value;
use syncgate_engine::{Clock, Config, Replica, Schema, SqliteRemote};

/// A clock the test sets by hand. Sleeping does not pass time.
#[derive(Default)]
pub struct ManualClock(AtomicI64);

#[allow(dead_code, reason = "used by some test modules only")]
impl ManualClock {
    pub fn at(ms: i64) -> Arc<ManualClock> {
        Arc::new(ManualClock(AtomicI64::new(ms)))
    }
    pub fn set(&self, ms: i64) {
        self.0.store(ms, Ordering::SeqCst);
    }
    pub fn advance(&self, ms: i64) {
        self.0.fetch_add(ms, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
    fn sleep_ms(&self, _ms: u64) {}
}

pub const T0: i64 = 1_700_000_000_000;

pub struct World {
    pub dir: tempfile::TempDir,
    pub schema: Schema,
    pub config: Config,
}

impl World {
    pub fn new() -> World {
        let dir = tempfile::tempdir().expect("temp dir");
        let schema = Schema::test_schema();
        SqliteRemote::create(&dir.path().join("remote.db"), &schema, 0).expect("create remote");
        let config = Config {
            busy_timeout_ms: 0,
            busy_retries_max: 2,
            ..Config::default()
        };
        World { dir, schema, config }
    }

    pub fn remote(&self) -> SqliteRemote {
        SqliteRemote::open(&self.dir.path().join("remote.db"), &self.schema, 0).expect("open remote")
    }

    /// Opens (or reopens) replica `name` with `clock`.
    pub fn replica(&self, name: &str, clock: Arc<ManualClock>) -> Replica<SqliteRemote> {
        Replica::open(
            &self.dir.path().join(format!("{name}.db")),
            &self.schema,
            self.remote(),
            clock,
            self.config.clone(),
        )
        .expect("open replica")
    }

    /// The remote's rows of `table`, read with a plain connection.
    pub fn remote_rows(&self, table: &str) -> Vec<(i64, Vec<Value>)> {
        let conn = syncgate_engine::rusqlite::Connection::open(self.dir.path().join("remote.db")).expect("open");
        let cols = self.schema.column_names(table).expect("table").join("\", \"");
        let mut stmt = conn
            .prepare(&format!("SELECT \"id\", \"{cols}\" FROM \"{table}\" ORDER BY \"id\""))
            .expect("prepare");
        let n = self.schema.column_names(table).expect("table").len();
        stmt.query_map([], |r| {
            Ok((r.get(0)?, (1..=n).map(|i| r.get(i)).collect::<Result<Vec<Value>, _>>()?))
        })
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("rows")
    }
}

pub fn text(s: &str) -> Value {
    Value::Text(s.to_string())
}

pub fn rows(r: &Replica<SqliteRemote>, table: &str) -> Vec<(i64, Vec<Value>)> {
    r.rows(table)
        .expect("rows")
        .into_iter()
        .map(|row| (row.id, row.values))
        .collect()
}
