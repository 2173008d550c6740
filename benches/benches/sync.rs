//! Push, pull, round-trip and mixed-workload throughput, against two
//! baselines measured in the same run on the same rows: a row-by-row copy
//! between two SQLite files, and (feature `session`) SQLite's session
//! extension (changeset + apply).
//!
//! Each iteration starts from a fresh copy of a template built once per size
//! (see `syncgate_benches`); only the operation is timed.
#![allow(
    clippy::disallowed_methods,
    reason = "a benchmark times its operations: Instant::now is its job"
)]

use std::path::Path;
use std::time::{Duration, Instant};

use criterion::measurement::WallTime;
use criterion::{criterion_group, criterion_main, BenchmarkGroup, BenchmarkId, Criterion, SamplingMode, Throughput};
use rusqlite::Connection;
use syncgate_benches::{
    config, copy_template, disk_root, durable_config, mixed_template, open_plain_remote_like, open_replica,
    pending_template, pushed_template, row_copy, scratch_root, sizes, BenchClock, EngineReplica, Template, EPOCH_MS,
};
use syncgate_engine::Config;

/// Runs `iters` iterations, each on fresh state from `setup`, timing `run` only.
fn fresh<S>(iters: u64, mut setup: impl FnMut() -> S, mut run: impl FnMut(&mut S)) -> Duration {
    let mut total = Duration::ZERO;
    for _ in 0..iters {
        let mut state = setup();
        let start = Instant::now();
        run(&mut state);
        total += start.elapsed();
        drop(state);
    }
    total
}

fn replica(dir: &Path, name: &str, config: &Config) -> EngineReplica {
    // Later than every template stamp, well within drift_ms_max.
    open_replica(dir, name, BenchClock::new(EPOCH_MS + 10_000), config.clone()).expect("open replica")
}

fn group<'a>(c: &'a mut Criterion, name: &str) -> BenchmarkGroup<'a, WallTime> {
    let mut g = c.benchmark_group(name);
    g.sampling_mode(SamplingMode::Flat)
        .sample_size(10)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(2));
    g
}

/// Baseline (a): row-by-row copy, `src.db` -> `dst.db`.
fn bench_row_copy(g: &mut BenchmarkGroup<'_, WallTime>, name: &str, t: &Template, root: &Path, n: u64) {
    g.bench_function(BenchmarkId::new(name, n), |b| {
        b.iter_custom(|iters| {
            fresh(
                iters,
                || {
                    let dir = t.instantiate_in(root).expect("instantiate");
                    let src = Connection::open(dir.path().join("src.db")).expect("open src");
                    let dst = open_plain_remote_like(&dir.path().join("dst.db")).expect("open dst");
                    (dir, src, dst)
                },
                |(_, src, dst)| {
                    let copied = row_copy(src, dst).expect("row copy");
                    assert_eq!(copied, n);
                },
            )
        })
    });
}

/// Baseline (b): the session extension. Capture (untimed) on a source
/// file, then time `changeset` + `apply` on an empty target.
#[cfg(feature = "session")]
fn bench_session(g: &mut BenchmarkGroup<'_, WallTime>, empty: &Template, n: u64) {
    use syncgate_benches::{open_plain_cache_like, plain_insert, session};
    g.bench_function(BenchmarkId::new("session", n), |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let dir = empty.instantiate().expect("instantiate");
                let src = open_plain_cache_like(&dir.path().join("src.db")).expect("open src");
                let dst = open_plain_remote_like(&dir.path().join("dst.db")).expect("open dst");
                let mut s = session::attach(&src).expect("session");
                plain_insert(&src, n).expect("capture");
                let start = Instant::now();
                let changeset = session::changeset(&mut s).expect("changeset");
                session::apply(&dst, &changeset).expect("apply");
                total += start.elapsed();
                drop(s);
                let rows: i64 = dst
                    .query_row("SELECT count(*) FROM hosts", [], |r| r.get(0))
                    .expect("count");
                assert_eq!(rows as u64, n);
            }
            total
        })
    });
}

#[cfg(not(feature = "session"))]
fn bench_session(_: &mut BenchmarkGroup<'_, WallTime>, _: &Template, _: u64) {}

fn bench_push(g: &mut BenchmarkGroup<'_, WallTime>, name: &str, t: &Template, root: &Path, cfg: &Config, n: u64) {
    g.bench_function(BenchmarkId::new(name, n), |b| {
        b.iter_custom(|iters| {
            fresh(
                iters,
                || {
                    let dir = t.instantiate_in(root).expect("instantiate");
                    let a = replica(dir.path(), "a.db", cfg);
                    (dir, a)
                },
                |(_, a)| {
                    let report = a.push().expect("push");
                    assert_eq!(report.pushed, n);
                },
            )
        })
    });
}

fn bench_sync(c: &mut Criterion) {
    let cfg = config();
    let mut g = group(c, "sync");
    for n in sizes() {
        let copy = copy_template(n).expect("copy template");
        let empty = copy_template(0).expect("empty template");
        let pending = pending_template(n, &cfg).expect("pending template");
        let pushed = pushed_template(&pending, &cfg).expect("pushed template");
        g.throughput(Throughput::Elements(n));

        bench_row_copy(&mut g, "rowcopy", &copy, &scratch_root(), n);
        bench_session(&mut g, &empty, n);
        bench_push(&mut g, "push", &pending, &scratch_root(), &cfg, n);

        g.bench_function(BenchmarkId::new("pull", n), |b| {
            b.iter_custom(|iters| {
                fresh(
                    iters,
                    || {
                        let dir = pushed.instantiate().expect("instantiate");
                        let r = replica(dir.path(), "b.db", &cfg);
                        (dir, r)
                    },
                    |(_, r)| {
                        let report = r.pull().expect("pull");
                        assert_eq!(report.pulled, n);
                    },
                )
            })
        });

        g.bench_function(BenchmarkId::new("roundtrip", n), |b| {
            b.iter_custom(|iters| {
                fresh(
                    iters,
                    || {
                        let dir = pending.instantiate().expect("instantiate");
                        let a = replica(dir.path(), "a.db", &cfg);
                        let r = replica(dir.path(), "b.db", &cfg);
                        (dir, a, r)
                    },
                    |(_, a, r)| {
                        assert_eq!(a.push().expect("push").pushed, n);
                        assert_eq!(r.pull().expect("pull").pulled, n);
                    },
                )
            })
        });
    }
    g.finish();
}

/// Mixed workload: a.sync() (push n writes, a tenth of them conflicting with
/// b's later writes, then pull b's) and b.pull().
fn bench_mixed(c: &mut Criterion) {
    let cfg = config();
    let mut g = group(c, "mixed");
    for n in sizes() {
        let t = mixed_template(n, &cfg).expect("mixed template");
        g.throughput(Throughput::Elements(n));
        g.bench_function(BenchmarkId::new("sync_conflicts10", n), |b| {
            b.iter_custom(|iters| {
                fresh(
                    iters,
                    || {
                        let dir = t.instantiate().expect("instantiate");
                        let a = replica(dir.path(), "a.db", &cfg);
                        let r = replica(dir.path(), "b.db", &cfg);
                        (dir, a, r)
                    },
                    |(_, a, r)| {
                        let report = a.sync().expect("sync a");
                        assert_eq!(report.pushed, n);
                        assert_eq!(report.conflicts, n.div_ceil(10));
                        r.pull().expect("pull b");
                    },
                )
            })
        });
    }
    g.finish();
}

/// One durable case, on a real disk: push 10k with `durable: true` (the
/// remote is always `synchronous=FULL`), against the same push with
/// `durable: false` and the row copy, all on the same disk.
fn bench_durable(c: &mut Criterion) {
    let n = 10_000;
    let disk = disk_root();
    let mut g = group(c, "durable_disk");
    g.throughput(Throughput::Elements(n));
    let copy = copy_template(n).expect("copy template");
    bench_row_copy(&mut g, "rowcopy", &copy, &disk, n);
    let durable = durable_config();
    let pending = pending_template(n, &durable).expect("pending template");
    bench_push(&mut g, "push_durable", &pending, &disk, &durable, n);
    let relaxed = config();
    bench_push(&mut g, "push", &pending, &disk, &relaxed, n);
    g.finish();
}

criterion_group!(benches, bench_sync, bench_mixed, bench_durable);
criterion_main!(benches);
