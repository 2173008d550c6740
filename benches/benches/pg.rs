//! Push and pull with the remote on PostgreSQL (`SYNCGATE_PG_URL`), against
//! what a user would write by hand in the same run on the same rows: the
//! rows sent with one multi-row `INSERT … ON CONFLICT` per batch (arrays
//! bound as parameters), and read back with one `SELECT` into a plain local
//! table. Round trips per push batch and per pull page are counted by the
//! engine's `PgRemote::round_trip_counter` and written to
//! `<target>/syncgate-pg-round-trips.json` for `bench_report`.
//!
//! Every push iteration starts on a fresh schema (made untimed); pulls read
//! one schema holding the rows, into a fresh empty cache.
#![allow(
    clippy::disallowed_methods,
    reason = "a benchmark times its operations: Instant::now is its job"
)]

use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, SamplingMode, Throughput};
use rusqlite::Connection;
use syncgate_benches::{
    config, host_values, open_plain_cache_like, pending_template, scratch_root, target_dir, BenchClock, Template,
    EPOCH_MS,
};
use syncgate_engine::postgres::{Client, NoTls};
use syncgate_engine::{Config, PgRemote, Replica, Schema};

/// Rows per batch of the hand-written push: the engine's `push_batch_max`.
const BATCH_ROWS: usize = 10_000;

fn url() -> Option<String> {
    std::env::var("SYNCGATE_PG_URL").ok().filter(|u| !u.is_empty())
}

fn namespace(tag: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!(
        "sg_bench_{tag}_{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// A schema of the bench, dropped when it goes.
struct Ns {
    url: String,
    name: String,
}

impl Ns {
    fn create(url: &str, tag: &str) -> Ns {
        let ns = Ns {
            url: url.to_string(),
            name: namespace(tag),
        };
        drop(PgRemote::create(url, &ns.name, &Schema::test_schema(), 5_000).expect("create the remote"));
        ns
    }
}

impl Drop for Ns {
    fn drop(&mut self) {
        let _ = PgRemote::drop_namespace(&self.url, &self.name);
    }
}

fn replica(dir: &Path, name: &str, ns: &Ns, config: &Config) -> Replica<PgRemote> {
    let remote = PgRemote::open(&ns.url, &ns.name, &Schema::test_schema(), 5_000).expect("open the remote");
    Replica::open(
        &dir.join(name),
        &Schema::test_schema(),
        remote,
        BenchClock::new(EPOCH_MS + 10_000),
        config.clone(),
    )
    .expect("open replica")
}

/// The hand-written push: `n` rows read from a local table and sent with
/// one multi-row upsert per batch, each batch its own transaction.
fn baseline_push(src: &Connection, client: &mut Client, ns: &str) -> u64 {
    let upsert = client
        .prepare(&format!(
            "INSERT INTO \"{ns}\".hosts (id, hostname, ip) \
             SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[]) \
             ON CONFLICT (id) DO UPDATE SET hostname = excluded.hostname, ip = excluded.ip"
        ))
        .expect("prepare");
    let mut stmt = src
        .prepare("SELECT id, hostname, ip FROM hosts ORDER BY id")
        .expect("select");
    let mut rows = stmt.query([]).expect("query");
    let (mut sent, mut done) = (0_u64, false);
    while !done {
        let (mut ids, mut hosts, mut ips) = (Vec::new(), Vec::new(), Vec::new());
        while ids.len() < BATCH_ROWS {
            match rows.next().expect("row") {
                Some(r) => {
                    ids.push(r.get::<_, i64>(0).expect("id"));
                    hosts.push(r.get::<_, Option<String>>(1).expect("hostname"));
                    ips.push(r.get::<_, Option<String>>(2).expect("ip"));
                }
                None => {
                    done = true;
                    break;
                }
            }
        }
        if ids.is_empty() {
            break;
        }
        let mut tx = client.transaction().expect("begin");
        tx.execute(&upsert, &[&ids, &hosts, &ips]).expect("upsert");
        tx.commit().expect("commit");
        sent += ids.len() as u64;
    }
    sent
}

/// The hand-written pull: every row selected and inserted into a plain
/// local table in one local transaction.
fn baseline_pull(client: &mut Client, ns: &str, dst: &mut Connection) -> u64 {
    let rows = client
        .query(&format!("SELECT id, hostname, ip FROM \"{ns}\".hosts ORDER BY id"), &[])
        .expect("select");
    let tx = dst.transaction().expect("begin");
    {
        let mut insert = tx
            .prepare("INSERT INTO hosts (id, hostname, ip) VALUES (?1, ?2, ?3)")
            .expect("prepare");
        for r in &rows {
            let (id, host, ip): (i64, Option<String>, Option<String>) = (r.get(0), r.get(1), r.get(2));
            insert.execute(rusqlite::params![id, host, ip]).expect("insert");
        }
    }
    tx.commit().expect("commit");
    rows.len() as u64
}

/// `src.db`: a plain table with the rows the pending cache holds.
fn plain_source(dir: &Path, n: u64) -> Connection {
    let src = open_plain_cache_like(&dir.join("src.db")).expect("open src");
    src.execute_batch("BEGIN").expect("begin");
    for k in 0..n {
        let (host, ip) = host_values(k);
        src.execute(
            "INSERT INTO hosts (id, hostname, ip) VALUES (?1, ?2, ?3)",
            rusqlite::params![(1_i64 << 40) + k as i64, host, ip],
        )
        .expect("insert");
    }
    src.execute_batch("COMMIT").expect("commit");
    src
}

/// Round trips of one push of `pending` and of one pull of its rows.
fn round_trips(url: &str, pending: &Template, cfg: &Config, n: u64) -> (u64, u64, u64, u64) {
    let ns = Ns::create(url, "trips");
    let dir = pending.instantiate().expect("instantiate");
    let mut a = replica(dir.path(), "a.db", &ns, cfg);
    let before = a.remote().round_trip_counter().get();
    assert_eq!(a.push().expect("push").pushed, n);
    let push = a.remote().round_trip_counter().get() - before;
    let mut b = replica(dir.path(), "b.db", &ns, cfg);
    let before = b.remote().round_trip_counter().get();
    assert_eq!(b.pull().expect("pull").pulled, n);
    let pull = b.remote().round_trip_counter().get() - before;
    let batches = n.div_ceil(cfg.push_batch_max as u64);
    let pages = n.div_ceil(cfg.pull_page_rows as u64);
    (push, batches, pull, pages)
}

fn bench_pg(c: &mut Criterion) {
    let Some(url) = url() else {
        eprintln!(
            "pg bench SKIPPED: SYNCGATE_PG_URL is not set (e.g. SYNCGATE_PG_URL=postgresql://root@127.0.0.1:5432/test)"
        );
        return;
    };
    let cfg = config();
    let mut g = c.benchmark_group("pg");
    g.sampling_mode(SamplingMode::Flat)
        .sample_size(10)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(2));
    let mut trips = Vec::new();
    let sizes: Vec<u64> = std::env::var("SYNCGATE_PG_BENCH_SIZES")
        .ok()
        .map(|s| s.split(',').filter_map(|v| v.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![10_000, 100_000]);
    for n in sizes {
        let pending = pending_template(n, &cfg).expect("pending template");
        let (push, batches, pull, pages) = round_trips(&url, &pending, &cfg, n);
        trips.push(serde_json::json!({
            "rows": n, "push_round_trips": push, "push_batches": batches,
            "pull_round_trips": pull, "pull_pages": pages,
        }));
        g.throughput(Throughput::Elements(n));

        g.bench_function(BenchmarkId::new("push", n), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let ns = Ns::create(&url, "push");
                    let dir = pending.instantiate_in(&scratch_root()).expect("instantiate");
                    let mut a = replica(dir.path(), "a.db", &ns, &cfg);
                    let start = Instant::now();
                    assert_eq!(a.push().expect("push").pushed, n);
                    total += start.elapsed();
                }
                total
            })
        });

        g.bench_function(BenchmarkId::new("baseline-push", n), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let ns = Ns::create(&url, "bpush");
                    let dir = Template::new().expect("dir");
                    let src = plain_source(dir.path(), n);
                    let mut client = Client::connect(&url, NoTls).expect("connect");
                    let start = Instant::now();
                    assert_eq!(baseline_push(&src, &mut client, &ns.name), n);
                    total += start.elapsed();
                }
                total
            })
        });

        // One schema holding the rows, read by every pull iteration.
        let pulled = Ns::create(&url, "pull");
        {
            let dir = pending.instantiate().expect("instantiate");
            let mut a = replica(dir.path(), "a.db", &pulled, &cfg);
            assert_eq!(a.push().expect("push").pushed, n);
        }
        g.bench_function(BenchmarkId::new("pull", n), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let dir = pending.instantiate_in(&scratch_root()).expect("instantiate");
                    let mut b = replica(dir.path(), "b.db", &pulled, &cfg);
                    let start = Instant::now();
                    assert_eq!(b.pull().expect("pull").pulled, n);
                    total += start.elapsed();
                }
                total
            })
        });

        g.bench_function(BenchmarkId::new("baseline-pull", n), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let dir = Template::new().expect("dir");
                    let mut dst = open_plain_cache_like(&dir.path().join("dst.db")).expect("open dst");
                    let mut client = Client::connect(&url, NoTls).expect("connect");
                    let start = Instant::now();
                    assert_eq!(baseline_pull(&mut client, &pulled.name, &mut dst), n);
                    total += start.elapsed();
                }
                total
            })
        });
    }
    g.finish();
    let out = target_dir().join("syncgate-pg-round-trips.json");
    let text = serde_json::to_string_pretty(&trips).expect("json");
    std::fs::write(&out, text).expect("write round trips");
    eprintln!("pg round trips: {trips:?}");
}

criterion_group!(benches, bench_pg);
criterion_main!(benches);
