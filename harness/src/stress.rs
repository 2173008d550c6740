//! `syncgate stress`: real threads, several replicas writing and syncing
//! concurrently against one remote (a file, or one schema on a PostgreSQL
//! server), then quiescence and the checks.
//!
//! Unlike `check`, thread timing decides the interleaving here, so a run is
//! not replayable step by step; what it checks does not depend on timing:
//! after quiescence every replica equals the remote, no natural key is held
//! twice, no reference dangles, and every row of a plain table (no natural
//! key, no reference: `hosts` in the built-in schema) equals the merge of
//! every captured write to it by stamp (delete wins; each column takes the
//! value of its latest-stamped write). Any declared schema (`--schema`)
//! works: writes go to every table, with values of each column's kind.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use serde::Serialize;
use syncgate_engine::outbox::{self, Op};
use syncgate_engine::rusqlite::types::Value;
use syncgate_engine::{Config, Remote, Replica, Schema, SystemClock};
use syncgate_model as model;
use syncgate_reference_adapter::{engine_schema, open_remote, Options};

use crate::check::contract::{check_integrity, Promises};
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
    /// The tables (`--schema FILE`); `None`: the built-in schema.
    pub schema: Option<syncgate_protocol::Schema>,
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
    /// The plain tables whose rows were checked against the stamp-order
    /// merge of their captured writes, and how many rows that was.
    pub merge_checked_tables: Vec<String>,
    pub rows_checked: usize,
    pub problems: Vec<String>,
}

/// One captured write to a plain table, read back from a replica's outbox.
#[derive(Clone, Debug)]
struct Captured {
    table: usize,
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

/// Per row (table, id): still live, and per column the latest value and its stamp.
type Merged = BTreeMap<(usize, i64), (bool, Vec<(Value, (i64, u32))>)>;

/// Tables whose rows only the application's own writes change: no natural
/// key (no merges) and no reference (no cascades the remote makes alone).
fn plain_tables(schema: &model::Schema) -> Vec<usize> {
    (0..schema.tables.len())
        .filter(|&t| {
            let table = &schema.tables[t];
            table.natural_key.is_none() && table.columns.iter().all(|c| c.references.is_none())
        })
        .collect()
}

pub fn stress(opts: &StressOptions, base: &Path) -> Result<StressReport, HarnessError> {
    let dir = tempfile::Builder::new()
        .prefix("syncgate-stress-")
        .tempdir_in(base)
        .map_err(stopped)?;
    let model_schema = crate::schema::of_case(opts.schema.as_ref())?;
    let schema: Schema = engine_schema(&crate::schema::protocol_schema(&model_schema)).map_err(stopped)?;
    opts.remote.probe()?;
    // Dropped at the end: a PostgreSQL schema with it.
    let mut place = RemotePlace::new(&opts.remote, dir.path(), &model_schema);
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
            .map(|(r, replica)| {
                let model_schema = &model_schema;
                s.spawn(move || worker(replica, r, opts, model_schema))
            })
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
    check_converged(&replicas, &model_schema, &remote, &mut report)?;
    check_merge(&model_schema, &captured, &remote, &mut report);
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
    model_schema: &model::Schema,
    remote: &model::Tables,
    report: &mut StressReport,
) -> Result<(), HarnessError> {
    if let Err(v) = check_integrity(model_schema, "remote", remote, &Promises::STRICT) {
        report.problems.push(format!("{}: {}", v.invariant, v.detail));
    }
    for (r, replica) in replicas.iter().enumerate() {
        let tables = read_tables(replica.connection(), model_schema)?;
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

/// Every row of a plain table equals the stamp-order merge of its captured
/// writes (delete wins; each column takes its latest-stamped write's value).
fn check_merge(schema: &model::Schema, captured: &[Captured], remote: &model::Tables, report: &mut StressReport) {
    let plain = plain_tables(schema);
    report.merge_checked_tables = plain.iter().map(|&t| schema.tables[t].name.clone()).collect();
    let mut expected: Merged = BTreeMap::new();
    for w in captured {
        let columns = schema.tables[w.table].columns.len();
        let entry = expected
            .entry((w.table, w.id))
            .or_insert_with(|| (true, vec![(Value::Null, (i64::MIN, 0)); columns]));
        if !entry.0 {
            continue;
        }
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
    for (&(t, id), (live, cols)) in &expected {
        let table = &schema.tables[t];
        report.rows_checked += 1;
        let want: Vec<model::Value> = cols
            .iter()
            .zip(&table.columns)
            .map(|((v, _), column)| to_model(v, column.kind))
            .collect();
        match (live, remote[t].get(&id)) {
            (true, Some(got)) if *got == want => {}
            (false, None) => {}
            (true, got) => report.problems.push(format!(
                "{}/{id}: the stamp-order merge is {} but the remote has {}",
                table.name,
                show_row(&want),
                got.map_or("nothing".into(), |g| show_row(g))
            )),
            (false, Some(got)) => report.problems.push(format!(
                "RowResurrected: {}/{id} was deleted but the remote has {}",
                table.name,
                show_row(got)
            )),
        }
    }
    for &t in &plain {
        if let Some(id) = remote[t].keys().find(|id| !expected.contains_key(&(t, **id))) {
            report.problems.push(format!(
                "RowUnexpected: {}/{id} was never written",
                schema.tables[t].name
            ));
        }
    }
}

#[allow(
    clippy::disallowed_methods,
    reason = "stress reports the rates it held; thread timing already decides its interleaving"
)]
fn clock() -> std::time::Instant {
    std::time::Instant::now()
}

/// One replica's thread: seeded writes to every table (inserts with values
/// of each column's kind and references to rows the replica holds, updates
/// of plain columns, deletes, and inserts of shared natural keys), a sync
/// every few writes.
fn worker(mut replica: AnyReplica, r: usize, opts: &StressOptions, schema: &model::Schema) -> WorkerResult {
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
    let plain = plain_tables(schema);
    for i in 0..opts.writes_per_replica {
        let roll = next() % 100;
        let t = (next() % schema.tables.len() as u64) as usize;
        let table = &schema.tables[t];
        let held = |replica: &AnyReplica, t: usize| -> Result<Vec<i64>, HarnessError> {
            Ok(replica
                .rows(&schema.tables[t].name)
                .map_err(stopped)?
                .iter()
                .map(|row| row.id)
                .collect())
        };
        let ids = held(&replica, t)?;
        let outcome = if roll < 55 || ids.is_empty() {
            let mut values: Vec<(&str, Value)> = Vec::new();
            let mut possible = true;
            for (c, column) in table.columns.iter().enumerate() {
                let value = if let Some(p) = column.references {
                    let parents = held(&replica, p)?;
                    if parents.is_empty() || (!column.not_null && next() % 4 == 0) {
                        Value::Null
                    } else {
                        Value::Integer(parents[(next() % parents.len() as u64) as usize])
                    }
                } else if table.natural_key == Some(c) {
                    Value::Text(NAMES[(next() % NAMES.len() as u64) as usize].into())
                } else {
                    value_of(column.kind, next(), r, i)
                };
                possible &= !(column.not_null && value == Value::Null);
                values.push((&column.name, value));
            }
            if !possible {
                continue;
            }
            replica.insert(&table.name, None, &values).map(drop)
        } else if roll < 85 {
            let updatable: Vec<usize> = (0..table.columns.len())
                .filter(|&c| table.natural_key != Some(c) && table.columns[c].references.is_none())
                .collect();
            if updatable.is_empty() {
                continue;
            }
            let id = ids[(next() % ids.len() as u64) as usize];
            let c = updatable[(next() % updatable.len() as u64) as usize];
            let value = value_of(table.columns[c].kind, next(), r, i);
            replica.update(&table.name, id, &[(&table.columns[c].name, value)])
        } else {
            let id = ids[(next() % ids.len() as u64) as usize];
            replica.delete(&table.name, id)
        };
        match outcome {
            Ok(()) => report.writes += 1,
            Err(syncgate_engine::Error::Write(_)) => report.refused += 1,
            Err(e) if e.is_busy() => report.busy += 1,
            Err(e) => return Err(stopped(format!("r{r} write: {e}"))),
        }
        last_seq = read_captured(&replica, &plain, last_seq, &mut captured)?;
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

/// Natural keys the replicas share, so that their inserts collide.
const NAMES: [&str; 4] = ["a.example", "b.example", "c.example", "d.example"];

/// A value of `kind` from the random word `word`, distinct per replica `r`
/// and write `i` where the kind allows.
fn value_of(kind: model::ColumnKind, word: u64, r: usize, i: usize) -> Value {
    match kind {
        model::ColumnKind::Integer => Value::Integer((word % 1000) as i64),
        model::ColumnKind::Real => Value::Real((word % 100_000) as f64 / 8.0 + 0.1),
        model::ColumnKind::Text => Value::Text(format!("v{r}-{i}")),
        model::ColumnKind::Blob => Value::Blob(word.to_le_bytes()[..(word % 9) as usize].to_vec()),
    }
}

/// Appends the writes to `plain` tables captured after `after` and returns
/// the new high seq.
fn read_captured(
    replica: &AnyReplica,
    plain: &[usize],
    after: i64,
    out: &mut Vec<Captured>,
) -> Result<i64, HarnessError> {
    let schema = replica.schema();
    let entries = outbox::read_entries(replica.connection(), schema, after).map_err(stopped)?;
    for entry in entries.iter().filter(|entry| plain.contains(&entry.table)) {
        out.push(Captured {
            table: entry.table,
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
