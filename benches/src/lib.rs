//! Fixtures shared by syncgate's benchmarks (`benches/benches/*.rs`) and the
//! helper bins (`mem_1m`, `bench_report`).
//!
//! Every measured case starts from a *template*: a directory of SQLite files
//! built once per size, copied into a fresh scratch directory before each
//! iteration, so the timed part is only the operation itself (push, pull,
//! copy, ...), never the setup. Scratch directories live in `/dev/shm` when it
//! exists, so the numbers are CPU cost, not disk latency (one case, see
//! `disk_root`, measures a durable push on disk).
//!
//! Rows are the test schema's `hosts(id, hostname, ip)`; the baselines copy
//! the very same rows (same ids, same values).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use rusqlite::types::ToSqlOutput;
use rusqlite::{params, Connection};
use syncgate_engine::{id_space, Clock, Config, Replica, Schema, SqliteRemote};
use tempfile::TempDir;

/// The synced table every case writes.
pub const TABLE: &str = "hosts";
/// Rows per local transaction when a template captures its pending writes:
/// an application's typical small transactions (push batches then hold
/// `Config::push_batch_max` entries, since a batch holds whole transactions).
pub const TXN_ROWS: usize = 100;
/// The injected clock's start: a fixed instant, so stamps are reproducible.
pub const EPOCH_MS: i64 = 1_700_000_000_000;

pub type EngineReplica = Replica<SqliteRemote>;

/// A clock the fixtures move by hand (replicas that must disagree get later
/// stamps by moving it forward between their writes).
#[derive(Debug)]
pub struct BenchClock(AtomicI64);

impl BenchClock {
    pub fn new(ms: i64) -> Arc<BenchClock> {
        Arc::new(BenchClock(AtomicI64::new(ms)))
    }

    pub fn advance(&self, ms: i64) {
        self.0.fetch_add(ms, Ordering::SeqCst);
    }
}

impl Clock for BenchClock {
    fn now_ms(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }

    fn sleep_ms(&self, ms: u64) {
        std::thread::sleep(Duration::from_millis(ms));
    }
}

/// The benchmark configuration: no fsync on the cache, no busy waiting
/// (nothing else touches these files).
pub fn config() -> Config {
    Config {
        durable: false,
        busy_timeout_ms: 0,
        ..Config::default()
    }
}

/// Same, with `synchronous=FULL` on the cache.
pub fn durable_config() -> Config {
    Config {
        durable: true,
        ..config()
    }
}

/// Where scratch directories go: `/dev/shm` when present, else the temp dir.
pub fn scratch_root() -> PathBuf {
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        shm.to_path_buf()
    } else {
        std::env::temp_dir()
    }
}

/// A directory on a real file system (the durable case), under the cargo
/// target dir's sibling `tmp/` so it is on the same disk as the build.
pub fn disk_root() -> PathBuf {
    let dir = workspace_root().join("target").join("tmp").join("syncgate-bench-disk");
    // Best effort: fall back to the temp dir when the target dir is read-only.
    if std::fs::create_dir_all(&dir).is_ok() {
        dir
    } else {
        std::env::temp_dir()
    }
}

/// The workspace root (the parent of this package's manifest dir).
pub fn workspace_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

/// The cargo target dir: `$CARGO_TARGET_DIR`, else `<workspace>/target`.
pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => workspace_root().join("target"),
    }
}

pub fn scratch_dir_in(root: &Path) -> Result<TempDir> {
    tempfile::Builder::new()
        .prefix("syncgate-bench-")
        .tempdir_in(root)
        .with_context(|| format!("creating a scratch dir in {}", root.display()))
}

pub fn scratch_dir() -> Result<TempDir> {
    scratch_dir_in(&scratch_root())
}

/// Row `k`'s values: (hostname, ip).
pub fn host_values(k: u64) -> (String, String) {
    (
        format!("host-{k:07}.bench.example.net"),
        format!("10.{}.{}.{}", (k >> 16) & 255, (k >> 8) & 255, k & 255),
    )
}

/// The ids the baselines use: the same shape as a replica's (its id space).
pub fn baseline_id(k: u64) -> i64 {
    id_space(1).0 + k as i64
}

pub fn remote_path(dir: &Path) -> PathBuf {
    dir.join("remote.db")
}

pub fn create_remote(dir: &Path) -> Result<SqliteRemote> {
    Ok(SqliteRemote::create(&remote_path(dir), &Schema::test_schema(), 0)?)
}

/// Opens (creating when new) the replica cache `name` in `dir`, synced with
/// `dir/remote.db`.
pub fn open_replica(dir: &Path, name: &str, clock: Arc<dyn Clock>, config: Config) -> Result<EngineReplica> {
    let schema = Schema::test_schema();
    let remote = SqliteRemote::open(&remote_path(dir), &schema, 0)?;
    Ok(Replica::open(&dir.join(name), &schema, remote, clock, config)?)
}

/// Captures `n` inserts into `hosts` on `replica`, `txn_rows` per local
/// transaction, through `Replica::write` with raw prepared SQL (ids from a
/// `next_id` range). Returns the ids.
pub fn capture_inserts(replica: &mut EngineReplica, n: u64, txn_rows: usize, first_k: u64) -> Result<Vec<i64>> {
    let mut ids = Vec::with_capacity(n as usize);
    let mut k = 0_u64;
    while k < n {
        let chunk = (n - k).min(txn_rows as u64);
        let start = replica.next_id()?;
        replica.write(|w| {
            let mut stmt = w
                .transaction()
                .prepare_cached("INSERT INTO hosts (id, hostname, ip) VALUES (?1, ?2, ?3)")?;
            for j in 0..chunk {
                let (host, ip) = host_values(first_k + k + j);
                stmt.execute(params![start + j as i64, host, ip])?;
            }
            Ok(())
        })?;
        ids.extend((0..chunk).map(|j| start + j as i64));
        k += chunk;
    }
    Ok(ids)
}

/// A directory of files to copy before each iteration.
pub struct Template {
    dir: TempDir,
}

impl Template {
    pub fn new() -> Result<Template> {
        Ok(Template { dir: scratch_dir()? })
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// A fresh copy of every file, in a new scratch dir under `root`.
    pub fn instantiate_in(&self, root: &Path) -> Result<TempDir> {
        let out = scratch_dir_in(root)?;
        for entry in std::fs::read_dir(self.dir.path())? {
            let entry = entry?;
            if entry.file_type()?.is_file() {
                std::fs::copy(entry.path(), out.path().join(entry.file_name()))?;
            }
        }
        Ok(out)
    }

    pub fn instantiate(&self) -> Result<TempDir> {
        self.instantiate_in(&scratch_root())
    }

    /// A copy of this template that is itself a template.
    pub fn fork(&self) -> Result<Template> {
        Ok(Template {
            dir: self.instantiate()?,
        })
    }
}

/// `remote.db`, `b.db` (registered first, no rows) and `a.db` with `n`
/// captured, unpushed inserts.
pub fn pending_template(n: u64, config: &Config) -> Result<Template> {
    let t = Template::new()?;
    let clock = BenchClock::new(EPOCH_MS);
    drop(create_remote(t.path())?);
    drop(open_replica(t.path(), "b.db", clock.clone(), config.clone())?);
    let mut a = open_replica(t.path(), "a.db", clock, config.clone())?;
    capture_inserts(&mut a, n, TXN_ROWS, 0)?;
    anyhow::ensure!(a.pending()? == n, "template: expected {n} pending");
    Ok(t)
}

/// `pending_template` after `a` pushed: the remote holds `n` rows `b` has
/// never pulled.
pub fn pushed_template(pending: &Template, config: &Config) -> Result<Template> {
    let t = pending.fork()?;
    let mut a = open_replica(t.path(), "a.db", BenchClock::new(EPOCH_MS), config.clone())?;
    let report = a.push()?;
    anyhow::ensure!(report.pushed > 0 || pending_is_empty(&a)?, "template: push did nothing");
    Ok(t)
}

fn pending_is_empty(r: &EngineReplica) -> Result<bool> {
    Ok(r.pending()? == 0)
}

/// The mixed workload: `a` and `b` share `n` synced rows; then `a` captures
/// `n` writes (50% updates, 30% inserts, 20% deletes, in `TXN_ROWS`-row
/// transactions) and `b` updates 10% of the rows `a` updated, with later
/// stamps, and pushes them. The timed part is `a.sync()` then `b.pull()`: a
/// tenth of `a`'s writes conflict.
pub fn mixed_template(n: u64, config: &Config) -> Result<Template> {
    let t = Template::new()?;
    let clock = BenchClock::new(EPOCH_MS);
    drop(create_remote(t.path())?);
    let mut b = open_replica(t.path(), "b.db", clock.clone(), config.clone())?;
    let mut a = open_replica(t.path(), "a.db", clock.clone(), config.clone())?;
    let base = capture_inserts(&mut a, n, TXN_ROWS, 0)?;
    a.push()?;
    b.pull()?;
    clock.advance(1_000);
    let mut k = 0_u64;
    while k < n {
        let chunk = (n - k).min(TXN_ROWS as u64);
        let inserts = (k..k + chunk).filter(|i| matches!(i % 10, 5..=7)).count() as i64;
        let start = if inserts > 0 { a.next_id()? } else { 0 };
        a.write(|w| {
            let tx = w.transaction();
            let mut upd = tx.prepare_cached("UPDATE hosts SET ip = ?2 WHERE id = ?1")?;
            let mut ins = tx.prepare_cached("INSERT INTO hosts (id, hostname, ip) VALUES (?1, ?2, ?3)")?;
            let mut del = tx.prepare_cached("DELETE FROM hosts WHERE id = ?1")?;
            let mut next = start;
            for i in k..k + chunk {
                match i % 10 {
                    0..=4 => {
                        upd.execute(params![
                            base[i as usize],
                            format!("192.168.{}.{}", (i >> 8) & 255, i & 255)
                        ])?;
                    }
                    5..=7 => {
                        let (host, ip) = host_values(n + i);
                        ins.execute(params![next, host, ip])?;
                        next += 1;
                    }
                    _ => {
                        del.execute(params![base[i as usize]])?;
                    }
                }
            }
            Ok(())
        })?;
        k += chunk;
    }
    clock.advance(1_000);
    let conflicting: Vec<i64> = (0..n).filter(|i| i % 10 == 0).map(|i| base[i as usize]).collect();
    for chunk in conflicting.chunks(TXN_ROWS) {
        b.write(|w| {
            let mut upd = w
                .transaction()
                .prepare_cached("UPDATE hosts SET ip = ?2, hostname = ?3 WHERE id = ?1")?;
            for &id in chunk {
                upd.execute(params![id, "172.16.0.1", format!("b-{id}")])?;
            }
            Ok(())
        })?;
    }
    b.push()?;
    anyhow::ensure!(a.pending()? == n, "mixed template: expected {n} pending on a");
    Ok(t)
}

/// `CREATE TABLE` for the plain (untriggered) copy of `hosts`.
pub const PLAIN_DDL: &str = "CREATE TABLE IF NOT EXISTS hosts (id INTEGER PRIMARY KEY, hostname TEXT, ip TEXT)";

/// Opens a plain SQLite file with the settings of a replica's cache
/// (`durable: false`): WAL, `synchronous=NORMAL`.
pub fn open_plain_cache_like(path: &Path) -> Result<Connection> {
    let conn = Connection::open(path)?;
    let _: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.execute_batch(PLAIN_DDL)?;
    Ok(conn)
}

/// Opens a plain SQLite file with the settings of the remote: rollback
/// journal, `synchronous=FULL`.
pub fn open_plain_remote_like(path: &Path) -> Result<Connection> {
    let conn = Connection::open(path)?;
    let _: String = conn.query_row("PRAGMA journal_mode = DELETE", [], |r| r.get(0))?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.execute_batch(PLAIN_DDL)?;
    Ok(conn)
}

/// Inserts rows `0..n` (ids `baseline_id(k)`) in one transaction with one
/// prepared statement.
pub fn plain_insert(conn: &Connection, n: u64) -> Result<()> {
    let tx = conn.unchecked_transaction()?;
    {
        let mut stmt = tx.prepare("INSERT INTO hosts (id, hostname, ip) VALUES (?1, ?2, ?3)")?;
        for k in 0..n {
            let (host, ip) = host_values(k);
            stmt.execute(params![baseline_id(k), host, ip])?;
        }
    }
    tx.commit()?;
    Ok(())
}

/// `src.db` (cache-like, `n` rows) and `dst.db` (remote-like, empty).
pub fn copy_template(n: u64) -> Result<Template> {
    let t = Template::new()?;
    let src = open_plain_cache_like(&t.path().join("src.db"))?;
    plain_insert(&src, n)?;
    drop(src);
    drop(open_plain_remote_like(&t.path().join("dst.db"))?);
    Ok(t)
}

/// Baseline (a): a row-by-row copy of every `hosts` row of `src` into `dst`,
/// one transaction on `dst`, one prepared statement on each side. Returns
/// the rows copied.
pub fn row_copy(src: &Connection, dst: &mut Connection) -> Result<u64> {
    let tx = dst.transaction()?;
    let mut copied = 0;
    {
        let mut read = src.prepare("SELECT id, hostname, ip FROM hosts ORDER BY id")?;
        let mut write = tx.prepare("INSERT INTO hosts (id, hostname, ip) VALUES (?1, ?2, ?3)")?;
        let mut rows = read.query([])?;
        while let Some(row) = rows.next()? {
            let id: i64 = row.get(0)?;
            // Borrowed straight from the source row: no copy into a String.
            let host = ToSqlOutput::Borrowed(row.get_ref(1)?);
            let ip = ToSqlOutput::Borrowed(row.get_ref(2)?);
            write.execute(params![id, host, ip])?;
            copied += 1;
        }
    }
    tx.commit()?;
    Ok(copied)
}

/// Peak resident set size of this process, from `/proc/self/status`.
pub fn peak_rss_kb() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Benchmark sizes: `SYNCGATE_BENCH_SIZES` (comma-separated row counts) or
/// 1k, 10k, 100k.
pub fn sizes() -> Vec<u64> {
    std::env::var("SYNCGATE_BENCH_SIZES")
        .ok()
        .map(|s| s.split(',').filter_map(|x| x.trim().parse().ok()).collect::<Vec<u64>>())
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| vec![1_000, 10_000, 100_000])
}

#[cfg(feature = "session")]
pub mod session {
    //! Baseline (b): SQLite's session extension.
    use anyhow::Result;
    use rusqlite::session::{ConflictAction, ConflictType, Session};
    use rusqlite::Connection;

    /// A session attached to `hosts` on `conn`.
    pub fn attach(conn: &Connection) -> Result<Session<'_>> {
        let mut session = Session::new(conn)?;
        session.attach(Some("hosts"))?;
        Ok(session)
    }

    /// The changeset of everything `session` recorded.
    pub fn changeset(session: &mut Session<'_>) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        session.changeset_strm(&mut out)?;
        Ok(out)
    }

    /// Applies `changeset` on `dst` in one transaction (sqlite3changeset_apply
    /// wraps it in a savepoint); any conflict aborts.
    pub fn apply(dst: &Connection, changeset: &[u8]) -> Result<()> {
        let mut input: &[u8] = changeset;
        dst.apply_strm(&mut input, None::<fn(&str) -> bool>, |_: ConflictType, _| {
            ConflictAction::SQLITE_CHANGESET_ABORT
        })?;
        Ok(())
    }
}
