//! What the harness read after a step, judged: a replica's cache (and what
//! the engine said about it when asked), and the remote. The runner makes
//! the observation (`run/observe.rs`); the checks here are the same after
//! every kind of step, in one order: the engine's reads, integrity,
//! resurrection (contract), then the model's rows, pending count and write
//! ledger (profile).

use std::collections::BTreeSet;

use syncgate_model as model;
use syncgate_protocol::{Policies, ReadRow};

use super::answers::engine_violation;
use super::identity::{check_renumberings, IdMaps, Renumberings};
use super::{blame, contract, profile, reads, Stop, Violation};
use crate::events::Event;
use crate::history::History;
use crate::places::{Ledger, PlaceError};
use crate::subject::Answer;

/// One replica's cache as the harness read it after a step, and what the
/// engine answered when asked about it.
#[derive(Clone, Debug)]
pub struct CacheObservation {
    pub replica: usize,
    /// The synced tables, read from the file by the harness's own
    /// connection, or why they could not be.
    pub tables: Result<model::Tables, PlaceError>,
    /// What the engine's read API returned for each table, in the schema's
    /// order (engines that declare `reads`, while up).
    pub reads: Vec<Answer<Vec<ReadRow>>>,
    /// The engine's pending count, when it was asked (up, and the step or
    /// the profile needs it).
    pub pending: Option<Answer<u64>>,
    /// The write ledger (reference profile, after syncs and restarts, the
    /// remote readable, the replica up).
    pub ledger: Option<Result<Ledger, PlaceError>>,
    /// For engines whose ids change or differ between places: the rows by
    /// logical row and each id's logical row, or why they cannot be named
    /// (`identity.rs`); and the ids before, with the renumberings reported
    /// since.
    pub named: Option<Result<(model::Tables, IdMaps), Violation>>,
    pub renumberings: Renumberings,
    /// The cache as the runner kept it last (engines that declare
    /// `consistency: causal`, for monotonic reads).
    pub before: Option<model::Tables>,
}

impl CacheObservation {
    /// The rows the contract judges: by logical row where the engine's ids
    /// change or differ between places, else by id (what was read).
    pub fn view(&self) -> Option<&model::Tables> {
        match &self.named {
            Some(Ok((logical, _))) => Some(logical),
            Some(Err(_)) => None,
            None => self.tables.as_ref().ok(),
        }
    }
}

/// What an observation is held to: the schema, the policies the engine
/// declared, the history so far, and, under the reference profile, the
/// model after the same step.
#[derive(Clone, Copy)]
pub struct Expectation<'a> {
    pub schema: &'a model::Schema,
    pub policies: &'a Policies,
    pub history: &'a History,
    pub model: Option<&'a model::World>,
}

/// Which declared consistency properties an observation gave something to
/// judge (so a run proves it exercised each: required events).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Judged {
    pub atomic: bool,
    pub causal: bool,
    pub monotonic: bool,
}

impl Judged {
    /// The events these judgements count.
    pub fn events(self) -> impl Iterator<Item = Event> {
        [
            (self.atomic, Event::AtomicVisibilityJudged),
            (self.causal, Event::CausalVisibilityJudged),
            (self.monotonic, Event::MonotonicReadsJudged),
        ]
        .into_iter()
        .filter_map(|(judged, event)| judged.then_some(event))
    }
}

/// The checks every observation of a cache gets, and which consistency
/// properties it judged something for.
pub fn cache(seen: &CacheObservation, expect: &Expectation<'_>) -> Result<Judged, Stop> {
    let r = seen.replica;
    let place = format!("r{r}");
    let schema = expect.schema;
    let tables = match &seen.tables {
        Ok(tables) => tables,
        Err(e) => {
            return Err(blame(
                &format!("{place} read"),
                &format!("read {place}'s cache"),
                e.clone(),
            ))
        }
    };
    for (t, answer) in seen.reads.iter().enumerate() {
        match answer {
            Answer::Ok(rows) => reads::check_reads_match_cache(schema, &place, t, rows, &tables[t])?,
            other => return Err(engine_violation(&format!("r{r} read {}", schema.tables[t].name), other).into()),
        }
    }
    contract::check_integrity(schema, &place, tables, &contract::Promises::of(expect.policies))?;
    contract::check_no_aborted_read(schema, &place, expect.history, tables)?;
    let mut judged = Judged {
        atomic: contract::check_atomic_visibility(schema, &place, Some(r), expect.history, tables, expect.policies)?,
        causal: contract::check_causal_visibility(schema, &place, expect.history, tables, expect.policies)?,
        monotonic: false,
    };
    if let Some(before) = &seen.before {
        judged.monotonic =
            contract::check_monotonic_reads(schema, &place, expect.history, before, tables, expect.policies)?;
    }
    let view = match &seen.named {
        Some(Ok((logical, maps))) => {
            check_renumberings(
                schema,
                expect.history,
                &place,
                expect.policies.ids,
                &seen.renumberings,
                maps,
                tables,
            )?;
            logical
        }
        Some(Err(unnamed)) => return Err(unnamed.clone().into()),
        None => tables,
    };
    contract::check_not_resurrected(schema, &place, expect.history, r, view, expect.policies)?;
    let Some(m) = expect.model else { return Ok(judged) };
    let state = &m.replicas[r];
    profile::compare_tables(schema, &place, &state.tables, tables, &state.tombstones)?;
    if let Some(pending) = &seen.pending {
        profile::check_pending(&place, state.outbox.len() as u64, pending)?;
    }
    match &seen.ledger {
        Some(Ok(ledger)) => profile::check_ledger(&place, ledger)?,
        Some(Err(e)) => {
            return Err(blame(
                &format!("{place} ledger"),
                &format!("read {place}'s write ledger"),
                e.clone(),
            ))
        }
        None => {}
    }
    Ok(judged)
}

/// The checks every observation of the remote gets (see [`cache`]).
pub fn remote(tables: &model::Tables, expect: &Expectation<'_>) -> Result<Judged, Stop> {
    contract::check_integrity(
        expect.schema,
        "remote",
        tables,
        &contract::Promises::of(expect.policies),
    )?;
    contract::check_no_aborted_read(expect.schema, "remote", expect.history, tables)?;
    let judged = Judged {
        atomic: contract::check_atomic_visibility(
            expect.schema,
            "remote",
            None,
            expect.history,
            tables,
            expect.policies,
        )?,
        causal: contract::check_causal_visibility(expect.schema, "remote", expect.history, tables, expect.policies)?,
        monotonic: false,
    };
    let Some(m) = expect.model else { return Ok(judged) };
    let dead: BTreeSet<(usize, i64)> = m
        .remote
        .rows
        .iter()
        .filter(|(_, (row, _))| !matches!(row, model::RemoteRow::Live { .. }))
        .map(|(key, _)| *key)
        .collect();
    profile::compare_tables(expect.schema, "remote", &m.remote_visible(), tables, &dead)?;
    Ok(judged)
}
