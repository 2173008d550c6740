//! Commit order is not sequence order (SEMANTICS.md, rule P6): with
//! concurrent pushers, a change seq taken inside a transaction can commit
//! after a larger one, and a puller that already moved its cursor past the
//! larger one never sees the smaller. The PostgreSQL remote serializes its
//! writers; these tests run real pushers and pullers on threads against a
//! real server, with the mechanism and, as a canary, without it.
//!
//! Needs `SYNCGATE_PG_URL`; without it each test says on the terminal that
//! it was skipped.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use syncgate_engine::rusqlite::types::Value;
use syncgate_engine::{Config, PgRemote, Replica, Schema, SystemClock};

use crate::support::pg_url;

const PUSHERS: usize = 3;
const PULLERS: usize = 2;
const ROUNDS: usize = 12;
const ROWS_PER_ROUND: usize = 40;

/// A schema of one test run, dropped when it ends (also on failure).
struct Namespace {
    url: String,
    name: String,
}

impl Drop for Namespace {
    fn drop(&mut self) {
        let _ = PgRemote::drop_namespace(&self.url, &self.name);
    }
}

fn config() -> Config {
    Config {
        // Wait for the writer lock as an application would.
        busy_timeout_ms: 10_000,
        busy_retries_max: 20,
        backoff_base_ms: 1,
        backoff_max_ms: 20,
        durable: false,
        ..Config::default()
    }
}

fn open(
    ns: &Namespace,
    schema: &Schema,
    dir: &std::path::Path,
    name: &str,
    serialized: bool,
) -> Result<Replica<PgRemote>, String> {
    let mut remote = PgRemote::open(&ns.url, &ns.name, schema, 10_000).map_err(|e| e.to_string())?;
    if !serialized {
        remote.unserialize_writers();
    }
    Replica::open(
        &dir.join(format!("{name}.db")),
        schema,
        remote,
        Arc::new(SystemClock),
        config(),
    )
    .map_err(|e| e.to_string())
}

/// Pushers write and push while pullers pull; then every puller pulls once
/// more and must hold every row. `Err` names what a puller lost.
fn pushers_and_pullers(url: &str, serialized: bool, attempt: usize) -> Result<(), String> {
    let ns = Namespace {
        url: url.to_string(),
        name: format!("sg_t_cursor_{}_{attempt}_{serialized}", std::process::id()),
    };
    PgRemote::drop_namespace(url, &ns.name).map_err(|e| e.to_string())?;
    let schema = Schema::test_schema();
    PgRemote::create(url, &ns.name, &schema, 10_000).map_err(|e| e.to_string())?;
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let pushers: Vec<Replica<PgRemote>> = (0..PUSHERS)
        .map(|p| open(&ns, &schema, dir.path(), &format!("pusher{p}"), serialized))
        .collect::<Result<_, _>>()?;
    let pullers: Vec<Replica<PgRemote>> = (0..PULLERS)
        .map(|p| open(&ns, &schema, dir.path(), &format!("puller{p}"), serialized))
        .collect::<Result<_, _>>()?;
    let pushing = Arc::new(AtomicBool::new(true));
    let outcome = std::thread::scope(|scope| {
        let pull_threads: Vec<_> = pullers
            .into_iter()
            .map(|mut replica| {
                let pushing = pushing.clone();
                scope.spawn(move || -> Result<Replica<PgRemote>, String> {
                    while pushing.load(Ordering::Relaxed) {
                        replica
                            .pull()
                            .map_err(|e| format!("a pull during the pushes failed: {e}"))?;
                    }
                    Ok(replica)
                })
            })
            .collect();
        let push_threads: Vec<_> = pushers
            .into_iter()
            .enumerate()
            .map(|(p, mut replica)| {
                scope.spawn(move || -> Result<(), String> {
                    for round in 0..ROUNDS {
                        replica
                            .write(|w| {
                                for i in 0..ROWS_PER_ROUND {
                                    w.insert(
                                        "hosts",
                                        None,
                                        &[("hostname", Value::Text(format!("p{p}-r{round}-{i}")))],
                                    )?;
                                }
                                Ok(())
                            })
                            .map_err(|e| e.to_string())?;
                        replica.push().map_err(|e| format!("pusher {p}: {e}"))?;
                    }
                    Ok(())
                })
            })
            .collect();
        let pushed: Result<Vec<()>, String> = push_threads
            .into_iter()
            .map(|t| t.join().unwrap_or_else(|_| Err("a pusher panicked".into())))
            .collect();
        pushing.store(false, Ordering::Relaxed);
        let pullers: Result<Vec<Replica<PgRemote>>, String> = pull_threads
            .into_iter()
            .map(|t| t.join().unwrap_or_else(|_| Err("a puller panicked".into())))
            .collect();
        pushed.and(pullers)
    });
    let expected = PUSHERS * ROUNDS * ROWS_PER_ROUND;
    for (p, mut replica) in outcome?.into_iter().enumerate() {
        replica.pull().map_err(|e| format!("puller {p}'s last pull: {e}"))?;
        let held = replica.rows("hosts").map_err(|e| e.to_string())?.len();
        if held != expected {
            return Err(format!(
                "puller {p} holds {held} of the {expected} pushed rows after its last pull: \
                 its cursor passed changes committed after it"
            ));
        }
    }
    Ok(())
}

#[test]
fn concurrent_pushers_never_hide_a_change_from_a_puller() {
    let Some(url) = pg_url("concurrent_pushers_never_hide_a_change_from_a_puller") else {
        return;
    };
    for attempt in 0..3 {
        if let Err(e) = pushers_and_pullers(&url, true, attempt) {
            panic!("with writers serialized, attempt {attempt}: {e}");
        }
    }
}

#[test]
fn without_serialized_writers_a_puller_loses_changes() {
    // The canary: the test above must be able to fail. Without the writer
    // lock, seqs commit out of order and a puller's cursor passes some.
    let Some(url) = pg_url("without_serialized_writers_a_puller_loses_changes") else {
        return;
    };
    let failures: Vec<String> = (0..5)
        .filter_map(|attempt| pushers_and_pullers(&url, false, attempt).err())
        .collect();
    assert!(
        !failures.is_empty(),
        "five runs with unserialized writers lost nothing: the cursor test has no teeth"
    );
    let _ = writeln!(
        std::io::stderr(),
        "unserialized writers: {} of 5 runs lost changes, e.g. {}",
        failures.len(),
        failures[0]
    );
}
