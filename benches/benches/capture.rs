//! Capture overhead: inserts/s into the synced `hosts` table (capture
//! triggers on) against the same table in a plain SQLite file with the same
//! settings (WAL, `synchronous=NORMAL`) and no triggers. All inserts of an
//! iteration go in one transaction.
#![allow(
    clippy::disallowed_methods,
    reason = "a benchmark times its operations: Instant::now is its job"
)]

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, SamplingMode, Throughput};
use rusqlite::params;
use rusqlite::types::Value;
use syncgate_benches::{
    config, copy_template, host_values, open_plain_cache_like, open_replica, pending_template, plain_insert,
    BenchClock, EPOCH_MS,
};

/// Capture sizes: `SYNCGATE_CAPTURE_SIZES` or 10k and 100k.
fn capture_sizes() -> Vec<u64> {
    std::env::var("SYNCGATE_CAPTURE_SIZES")
        .ok()
        .map(|s| s.split(',').filter_map(|x| x.trim().parse().ok()).collect::<Vec<u64>>())
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| vec![10_000, 100_000])
}

fn bench_capture(c: &mut Criterion) {
    let cfg = config();
    let plain = copy_template(0).expect("plain template");
    let engine = pending_template(0, &cfg).expect("engine template");
    let mut g = c.benchmark_group("capture");
    g.sampling_mode(SamplingMode::Flat)
        .sample_size(10)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(2));
    for n in capture_sizes() {
        g.throughput(Throughput::Elements(n));

        g.bench_function(BenchmarkId::new("plain", n), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let dir = plain.instantiate().expect("instantiate");
                    let conn = open_plain_cache_like(&dir.path().join("src.db")).expect("open");
                    let start = Instant::now();
                    plain_insert(&conn, n).expect("insert");
                    total += start.elapsed();
                }
                total
            })
        });

        g.bench_function(BenchmarkId::new("engine_write", n), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let dir = engine.instantiate().expect("instantiate");
                    let mut a = open_replica(dir.path(), "a.db", BenchClock::new(EPOCH_MS), cfg.clone()).expect("open");
                    let start = Instant::now();
                    a.write(|w| {
                        for k in 0..n {
                            let (host, ip) = host_values(k);
                            w.insert(
                                "hosts",
                                None,
                                &[("hostname", Value::Text(host)), ("ip", Value::Text(ip))],
                            )?;
                        }
                        Ok(())
                    })
                    .expect("write");
                    total += start.elapsed();
                    assert_eq!(a.pending().expect("pending"), n);
                }
                total
            })
        });

        g.bench_function(BenchmarkId::new("engine_raw_sql", n), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let dir = engine.instantiate().expect("instantiate");
                    let mut a = open_replica(dir.path(), "a.db", BenchClock::new(EPOCH_MS), cfg.clone()).expect("open");
                    let start = Instant::now();
                    let first = a.next_id().expect("next_id");
                    let conn = a.connection();
                    conn.execute_batch("BEGIN IMMEDIATE").expect("begin");
                    {
                        let mut stmt = conn
                            .prepare_cached("INSERT INTO hosts (id, hostname, ip) VALUES (?1, ?2, ?3)")
                            .expect("prepare");
                        for k in 0..n {
                            let (host, ip) = host_values(k);
                            stmt.execute(params![first + k as i64, host, ip]).expect("insert");
                        }
                    }
                    conn.execute_batch("COMMIT").expect("commit");
                    total += start.elapsed();
                    assert_eq!(a.pending().expect("pending"), n);
                }
                total
            })
        });

        #[cfg(feature = "session")]
        g.bench_function(BenchmarkId::new("session", n), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let dir = plain.instantiate().expect("instantiate");
                    let conn = open_plain_cache_like(&dir.path().join("src.db")).expect("open");
                    let s = syncgate_benches::session::attach(&conn).expect("session");
                    let start = Instant::now();
                    plain_insert(&conn, n).expect("insert");
                    total += start.elapsed();
                    drop(s);
                }
                total
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench_capture);
criterion_main!(benches);
