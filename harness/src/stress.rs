//! `syncgate stress`: real threads, several replicas writing and syncing
//! concurrently against one remote (a file, or one schema on a PostgreSQL
//! server), then quiescence and the checks.
//!
//! Unlike `check`, thread timing decides the interleaving here, so a run is
//! not replayable step by step; what it checks does not depend on timing:
//! after quiescence every replica equals the remote, no natural key is held
//! twice, no reference dangles, and every `hosts` row equals the merge of
//! every captured write to it by stamp (delete wins; each column takes the
//! value of its latest-stamped write).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use serde::Serialize;
use syncgate_engine::outbox::{self, Op};
use syncgate_engine::rusqlite::types::Value;
use syncgate_engine::{Config, Remote, Replica, Schema, SystemClock};
use syncgate_model as model;
use syncgate_reference_adapter::{open_remote, Options};

use crate::check::contract::check_integrity;
use crate::error::HarnessError;
use crate::places::{read_tables, to_model, RemotePlace, RemoteTarget};
use crate::show::show_row;

/// A replica of any remote, movable to its thread.
type AnyReplica = Replica<Box<dyn Remote + Send>>;

#[derive(Clone, Debug)]
pub struct StressOptions {
    pub replicas: usize,
    pub writes_per_replica: usize,
    pub seed: u64,
    /// Sync after this many writes.
    pub sync_every: usize,
    pub remote: RemoteTarget,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct StressReport {
    /// `sqlite` or `postgres`.
    pub remote: String,
    pub replicas: usize,
    /// Wall time of the concurrent phase, and the rates it held: a
    /// measurement of this machine, not a check.
    pub elapsed_ms: u64,
    pub writes_per_s: f64,
    pub syncs_per_s: f64,
    pub writes: u64,
    pub refused: u64,
    pub syncs: u64,
    pub busy: u64,
    pub quiescence_rounds: usize,
    pub hosts_checked: usize,
    pub problems: Vec<String>,
}

/// One captured write to `hosts`, read back from a replica's outbox.
#[derive(Clone, Debug)]
struct Captured {
    id: i64,
    op: Op,
    stamp: (i64, u32),
    mask: i64,
    values: Vec<Value>,
}

const QUIESCENCE_ROUNDS_MAX: usize = 10;

/// What one worker thread hands back.
type WorkerResult = Result<(AnyReplica, Vec<Captured>, StressReport), HarnessError>;

/// Stress stops on an error of the engine or of its files (exit 2): a
/// timing-dependent run has no counterexample to shrink.
fn stopped(e: impl std::fmt::Display) -> HarnessError {
    HarnessError::Setup(e.to_string())
}

/// Per hosts id: still live, and per column the latest value and its stamp.
type Merged = BTreeMap<i64, (bool, Vec<(Value, (i64, u32))>)>;

pub fn stress(opts: &StressOptions, base: &Path) -> Result<StressReport, HarnessError> {
    let dir = tempfile::Builder::new()
        .prefix("syncgate-stress-")
        .tempdir_in(base)
        .map_err(stopped)?;
    let schema = Schema::test_schema();
    opts.remote.probe()?;
    // Dropped at the end: a PostgreSQL schema with it.
    let mut place = RemotePlace::new(&opts.remote, dir.path(), &model::test_schema());
    let location = place.location();
    drop(open_remote(&location, &schema, &Options::default(), true).map_err(stopped)?);
    let config = Config {
        busy_timeout_ms: 2_000,
        busy_retries_max: 20,
        backoff_base_ms: 2,
        backoff_max_ms: 50,
        durable: false,
        ..Config::default()
    };
    let mut replicas = Vec::new();
    for r in 0..opts.replicas {
        let remote = open_remote(&location, &schema, &Options::default(), false).map_err(stopped)?;
        let replica = Replica::open(
            &dir.path().join(format!("replica{r}.db")),
            &schema,
            remote,
            Arc::new(SystemClock),
            config.clone(),
        )
        .map_err(stopped)?;
        replicas.push(replica);
    }
    let started = clock();
    let results: Vec<WorkerResult> = std::thread::scope(|s| {
        let handles: Vec<_> = replicas
            .into_iter()
            .enumerate()
            .map(|(r, replica)| s.spawn(move || worker(replica, r, opts)))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|_| Err(stopped("a stress worker panicked"))))
            .collect()
    });
    let elapsed = started.elapsed();
    let mut report = StressReport {
        remote: opts.remote.kind().to_string(),
        replicas: opts.replicas,
        elapsed_ms: u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX),
        ..StressReport::default()
    };
    let mut replicas = Vec::new();
    let mut captured = Vec::new();
    for result in results {
        let (replica, mut writes, part) = result?;
        report.writes += part.writes;
        report.refused += part.refused;
        report.syncs += part.syncs;
        report.busy += part.busy;
        report.problems.extend(part.problems);
        captured.append(&mut writes);
        replicas.push(replica);
    }
    quiesce(&mut replicas, &mut report)?;
    let seconds = elapsed.as_secs_f64().max(1e-9);
    report.writes_per_s = report.writes as f64 / seconds;
    report.syncs_per_s = report.syncs as f64 / seconds;
    let remote = place.read_tables()?;
    check_converged(&replicas, &remote, &mut report)?;
    check_hosts_merge(&captured, &remote[1], &mut report);
    Ok(report)
}

/// Syncs every replica until a round moves nothing (a problem if it never
/// does within the bound).
fn quiesce(replicas: &mut [AnyReplica], report: &mut StressReport) -> Result<(), HarnessError> {
    for round in 1..=QUIESCENCE_ROUNDS_MAX {
        report.quiescence_rounds = round;
        let mut moved = false;
        for (r, replica) in replicas.iter_mut().enumerate() {
            let rep = replica
                .sync()
                .map_err(|e| stopped(format!("r{r} quiescence sync: {e}")))?;
            moved |= rep.pushed + rep.pulled > 0;
        }
        if !moved {
            return Ok(());
        }
    }
    report
        .problems
        .push(format!("StuckQueue: still moving after {QUIESCENCE_ROUNDS_MAX} rounds"));
    Ok(())
}

/// No UNIQUE or foreign-key violation on the remote; every replica equals
/// it and has nothing pending.
fn check_converged(
    replicas: &[AnyReplica],
    remote: &model::Tables,
    report: &mut StressReport,
) -> Result<(), HarnessError> {
    let model_schema = model::test_schema();
    if let Err(v) = check_integrity(&model_schema, "remote", remote) {
        report.problems.push(format!("{}: {}", v.invariant, v.detail));
    }
    for (r, replica) in replicas.iter().enumerate() {
        let tables = read_tables(replica.connection(), &model_schema)?;
        if tables != *remote {
            report
                .problems
                .push(format!("ReplicasDiverged: r{r} differs from the remote"));
        }
        if replica.pending().map_err(stopped)? != 0 {
            report
                .problems
                .push(format!("StuckQueue: r{r} still has pending writes"));
        }
    }
    Ok(())
}

/// Every hosts row equals the stamp-order merge of its captured writes
/// (delete wins; each column takes its latest-stamped write's value).
fn check_hosts_merge(captured: &[Captured], hosts: &model::Rows, report: &mut StressReport) {
    let mut expected: Merged = BTreeMap::new();
    for w in captured {
        let entry = expected
            .entry(w.id)
            .or_insert_with(|| (true, vec![(Value::Null, (i64::MIN, 0)); 2]));
        if w.op == Op::Delete {
            entry.0 = false;
            continue;
        }
        for (c, slot) in entry.1.iter_mut().enumerate() {
            if w.mask >> c & 1 == 1 && w.stamp > slot.1 {
                *slot = (w.values[c].clone(), w.stamp);
            }
        }
    }
    for (id, (live, cols)) in &expected {
        report.hosts_checked += 1;
        let want: Vec<model::Value> = cols.iter().map(|(v, _)| to_model(v, model::ColumnKind::Text)).collect();
        match (live, hosts.get(id)) {
            (true, Some(got)) if *got == want => {}
            (false, None) => {}
            (true, got) => report.problems.push(format!(
                "hosts/{id}: the stamp-order merge is {} but the remote has {}",
                show_row(&want),
                got.map_or("nothing".into(), |g| show_row(g))
            )),
            (false, Some(got)) => report.problems.push(format!(
                "RowResurrected: hosts/{id} was deleted but the remote has {}",
                show_row(got)
            )),
        }
    }
    if let Some(id) = hosts.keys().find(|id| !expected.contains_key(id)) {
        report
            .problems
            .push(format!("RowUnexpected: hosts/{id} was never written"));
    }
}

#[allow(
    clippy::disallowed_methods,
    reason = "stress reports the rates it held; thread timing already decides its interleaving"
)]
fn clock() -> std::time::Instant {
    std::time::Instant::now()
}

/// One replica's thread: seeded writes, a sync every few writes.
fn worker(mut replica: AnyReplica, r: usize, opts: &StressOptions) -> WorkerResult {
    let mut rng = opts.seed ^ (0x9e37_79b9_7f4a_7c15_u64.wrapping_mul(r as u64 + 1));
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let mut report = StressReport::default();
    let mut captured = Vec::new();
    let mut last_seq = 0_i64;
    let names = ["a.example", "b.example", "c.example", "d.example"];
    for i in 0..opts.writes_per_replica {
        let roll = next() % 100;
        let hosts: Vec<i64> = replica
            .rows("hosts")
            .map_err(stopped)?
            .iter()
            .map(|row| row.id)
            .collect();
        let outcome = if roll < 40 || hosts.is_empty() {
            replica
                .insert(
                    "hosts",
                    None,
                    &[
                        ("hostname", Value::Text(format!("h{}", next() % 50))),
                        ("ip", Value::Text(format!("10.0.{r}.{}", next() % 250))),
                    ],
                )
                .map(drop)
        } else if roll < 75 {
            let id = hosts[(next() % hosts.len() as u64) as usize];
            let column = if next() % 2 == 0 { "hostname" } else { "ip" };
            replica.update("hosts", id, &[(column, Value::Text(format!("v{r}-{i}")))])
        } else if roll < 85 {
            let id = hosts[(next() % hosts.len() as u64) as usize];
            replica.delete("hosts", id)
        } else {
            let name = names[(next() % names.len() as u64) as usize];
            replica
                .insert(
                    "domains",
                    None,
                    &[
                        ("name", Value::Text(name.into())),
                        ("registrar", Value::Text(format!("r{r}"))),
                    ],
                )
                .map(drop)
        };
        match outcome {
            Ok(()) => report.writes += 1,
            Err(syncgate_engine::Error::Write(_)) => report.refused += 1,
            Err(e) if e.is_busy() => report.busy += 1,
            Err(e) => return Err(stopped(format!("r{r} write: {e}"))),
        }
        last_seq = read_captured(&replica, last_seq, &mut captured)?;
        if (i + 1) % opts.sync_every.max(1) == 0 {
            report.syncs += 1;
            match replica.sync() {
                Ok(_) => {}
                Err(e) if e.is_busy() => report.busy += 1,
                Err(e) => report.problems.push(format!("r{r} sync: {e}")),
            }
        }
    }
    Ok((replica, captured, report))
}

/// Appends the hosts writes captured after `after` and returns the new high seq.
fn read_captured(replica: &AnyReplica, after: i64, out: &mut Vec<Captured>) -> Result<i64, HarnessError> {
    let schema = replica.schema();
    let hosts = schema.table_names().position(|name| name == "hosts");
    let entries = outbox::read_entries(replica.connection(), schema, after).map_err(stopped)?;
    for entry in entries.iter().filter(|entry| Some(entry.table) == hosts) {
        out.push(Captured {
            id: entry.id,
            op: entry.op,
            stamp: (entry.stamp.hlc, entry.stamp.replica),
            mask: entry.columns.iter().fold(0, |mask, c| mask | 1 << c),
            values: entry.values.clone(),
        });
    }
    // Entries of other tables advance the high seq too.
    Ok(entries.last().map_or(after, |entry| entry.seq))
}
