//! The engine's answer to one request, judged: is it in the protocol's
//! vocabulary (contract), does it say what the model says (profile), and
//! does what it reports about itself hold (tries, round trips, ids).

use syncgate_model as model;
use syncgate_protocol::{InitOk, RefusalClass, SyncFailureClass};

use super::{Invariant, Violation};
use crate::places::TapTrouble;
use crate::scenario::{Reconnect, SyncKind};
use crate::show::{kind_name, show_answer};
use crate::subject::{Answer, BusyTriesReported, SyncReport};

/// An answer outside the vocabulary, as the contract names it: a broken
/// exchange or an unarmed exit is `ProtocolViolated`, any other non-`Ok`
/// answer `EngineFailed`.
pub fn engine_violation<T: std::fmt::Debug>(what: &str, answer: &Answer<T>) -> Violation {
    match answer {
        Answer::Broken(why) => Violation::new(Invariant::ProtocolViolated, format!("{what}: {why}")),
        Answer::Crashed => Violation::new(
            Invariant::ProtocolViolated,
            format!("{what}: the engine stopped without a crash point armed"),
        ),
        other => Violation::new(Invariant::EngineFailed, format!("{what}: {}", show_answer(other))),
    }
}

/// A request that must simply succeed (`set_clock`, `arm_crash`,
/// `pending`): its payload, or the violation its answer is.
pub fn answered<T: std::fmt::Debug + Clone>(what: &str, answer: &Answer<T>) -> Result<T, Violation> {
    match answer {
        Answer::Ok(t) => Ok(t.clone()),
        other => Err(engine_violation(what, other)),
    }
}

/// The engine refused to start a replica of a new case: its own words.
pub fn start_refused(why: &str) -> Violation {
    Violation::new(Invariant::EngineFailed, why)
}

/// The engine could not be started again, or refused a restart it had no
/// reason to refuse.
pub fn restart_failed(r: usize, why: &str) -> Violation {
    Violation::new(Invariant::EngineFailed, format!("r{r} restart: {why}"))
}

/// A replica's handshake must declare what the first replica's did.
pub fn same_declaration(r: usize, init_ok: &InitOk, first: &InitOk) -> Result<(), Violation> {
    if init_ok == first {
        return Ok(());
    }
    Err(Violation::new(
        Invariant::EngineFailed,
        format!("replica {r} declared other capabilities or policies than replica 0: {init_ok:?} vs {first:?}"),
    ))
}

/// A step on a down replica: under the profile the model must say so too.
pub fn down_agrees(model_says_down: Option<bool>) -> Result<(), Violation> {
    match model_says_down {
        Some(false) => Err(Violation::new(
            Invariant::OutcomeAgreement,
            "the replica is down, but the model says it is up",
        )),
        _ => Ok(()),
    }
}

fn refusal_class(r: model::WriteRefusal) -> Option<RefusalClass> {
    Some(match r {
        model::WriteRefusal::Down => return None,
        model::WriteRefusal::Busy => RefusalClass::Busy,
        model::WriteRefusal::IdOutsideReplica => RefusalClass::IdOutsideReplica,
        model::WriteRefusal::IdTaken => RefusalClass::IdTaken,
        model::WriteRefusal::IdDeleted => RefusalClass::IdDeleted,
        model::WriteRefusal::NaturalKeyTaken => RefusalClass::NaturalKeyTaken,
        model::WriteRefusal::ParentMissing => RefusalClass::ParentMissing,
        model::WriteRefusal::RowNotFound => RefusalClass::RowNotFound,
        model::WriteRefusal::KeyImmutable => RefusalClass::KeyImmutable,
    })
}

/// An application write's answer: the model's exactly (profile), or one of
/// `write_ok` and `refused` (contract). `shown` is the answer as the trace
/// line prints it.
pub fn write_answer(
    r: usize,
    expected: Option<&Result<Vec<i64>, model::WriteRefusal>>,
    answer: &Answer<Vec<i64>>,
    shown: &str,
) -> Result<(), Violation> {
    let Some(expected) = expected else {
        return match answer {
            Answer::Ok(_) | Answer::Refused(..) => Ok(()),
            other => Err(engine_violation(&format!("r{r} write"), other)),
        };
    };
    let agrees = match (expected, answer) {
        (Ok(e), Answer::Ok(a)) => e == a,
        (Err(e), Answer::Refused(class, _)) => refusal_class(*e) == Some(*class),
        _ => false,
    };
    if agrees {
        Ok(())
    } else {
        Err(Violation::new(
            Invariant::OutcomeAgreement,
            format!("r{r} write: model says {expected:?}, engine says {shown}"),
        ))
    }
}

/// An outside write's outcome against the model's (profile). Raw SQL
/// refuses with its own words: only ok against refused counts.
pub fn outside_write_outcome(
    r: usize,
    expected: Option<&Result<Vec<i64>, model::WriteRefusal>>,
    answer: &Answer<Vec<i64>>,
    shown: &str,
) -> Result<(), Violation> {
    match expected {
        Some(Ok(ids)) if matches!(answer, Answer::Ok(a) if a == ids) => Ok(()),
        Some(Err(model::WriteRefusal::Busy)) if matches!(answer, Answer::Refused(RefusalClass::Busy, _)) => Ok(()),
        Some(Err(_)) if matches!(answer, Answer::Refused(..)) => Ok(()),
        Some(expected) => Err(Violation::new(
            Invariant::OutcomeAgreement,
            format!("r{r} outside write: model says {expected:?}, SQLite says {shown}"),
        )),
        None => Ok(()),
    }
}

/// The answer to a write sent with `abort`: `write_aborted`, or `refused`
/// (its ops did not run); `write_ok` breaks the protocol.
pub fn aborted_write_answer(r: usize, answer: &Answer<()>) -> Result<(), Violation> {
    match answer {
        Answer::Ok(()) | Answer::Refused(..) => Ok(()),
        other => Err(engine_violation(&format!("r{r} write with abort"), other)),
    }
}

/// A write answered ok names one id per insert it made (contract).
pub fn one_id_per_insert(r: usize, ids: &[i64], inserts: usize) -> Result<(), Violation> {
    if ids.len() == inserts {
        return Ok(());
    }
    Err(Violation::new(
        Invariant::ProtocolViolated,
        format!("r{r} answered {} ids to a write of {inserts} inserts", ids.len()),
    ))
}

/// The answer to `mint_id`: the id, or `None` when refused busy (as the
/// model says, under the profile). `fresh` is whether the id was never
/// minted before by this process and names no row any place holds or held
/// (contract). `shown` is the answer as the trace line prints it.
pub fn minted(
    r: usize,
    answer: &Answer<i64>,
    fresh: bool,
    expected: Option<&Result<i64, model::WriteRefusal>>,
    shown: &str,
) -> Result<Option<i64>, Violation> {
    if let (Answer::Ok(id), false) = (answer, fresh) {
        return Err(Violation::new(
            Invariant::NoClobber,
            format!(
                "r{r} mint_id handed out {id} again: an id once minted is reserved, used or not, and never names \
                 a row some place holds or held"
            ),
        ));
    }
    match (answer, expected) {
        (Answer::Ok(id), None) => Ok(Some(*id)),
        (Answer::Ok(id), Some(Ok(model_id))) if id == model_id => Ok(Some(*id)),
        (Answer::Refused(RefusalClass::Busy, _), None | Some(Err(model::WriteRefusal::Busy))) => Ok(None),
        (_, Some(expected)) => Err(Violation::new(
            Invariant::OutcomeAgreement,
            format!("r{r} mint_id: model says {expected:?}, engine says {shown}"),
        )),
        (answer, None) => Err(engine_violation(&format!("r{r} mint_id"), answer)),
    }
}

/// Profile: the sync's answer equals the model's.
pub fn sync_agrees(
    r: usize,
    kind: SyncKind,
    expected: &Result<model::SyncReport, model::SyncFailure>,
    answer: &Answer<SyncReport>,
    shown: &str,
) -> Result<(), Violation> {
    let agrees = match (expected, answer) {
        (Ok(e), Answer::Ok(a)) => (e.pushed, e.pulled, e.conflicts) == (a.pushed, a.pulled, a.conflicts),
        (Err(model::SyncFailure::Busy), Answer::Failed(SyncFailureClass::Busy, _)) => true,
        (Err(model::SyncFailure::ClockDrift), Answer::Failed(SyncFailureClass::ClockDrift, _)) => true,
        (Err(model::SyncFailure::Unavailable), Answer::Failed(SyncFailureClass::Unavailable, _)) => true,
        (Err(model::SyncFailure::LoginRefused), Answer::Failed(SyncFailureClass::LoginRefused, _)) => true,
        (Err(model::SyncFailure::Crashed), Answer::Crashed) => true,
        _ => false,
    };
    if agrees {
        Ok(())
    } else {
        Err(Violation::new(
            Invariant::OutcomeAgreement,
            format!("r{r} {}: model says {expected:?}, engine says {shown}", kind_name(kind)),
        ))
    }
}

/// Profile (rule L1): a sync that ended busy tried and waited as the
/// reference's bounded backoff says, when the engine reports its tries.
pub fn busy_tries_agree(
    r: usize,
    kind: SyncKind,
    config: &model::Config,
    answer: &Answer<SyncReport>,
    reported: Option<BusyTriesReported>,
) -> Result<(), Violation> {
    let (Answer::Failed(SyncFailureClass::Busy, _), Some(reported)) = (answer, reported) else {
        return Ok(());
    };
    let expected = config.busy_tries();
    let attempts_ok = reported.attempts.is_none_or(|a| a == expected.attempts);
    let waited_ok = reported.waited_ms.is_none_or(|w| w == expected.waited_ms);
    if attempts_ok && waited_ok {
        return Ok(());
    }
    Err(Violation::new(
        Invariant::OutcomeAgreement,
        format!(
            "r{r} {} ended busy after {} attempts and {} ms of waiting; with busy_retries_max={}, \
             backoff {}..{} ms the reference tries {} times and waits {} ms (rule L1)",
            kind_name(kind),
            show_opt(reported.attempts),
            show_opt(reported.waited_ms),
            config.busy_retries_max,
            config.backoff_base_ms,
            config.backoff_max_ms,
            expected.attempts,
            expected.waited_ms
        ),
    ))
}

fn show_opt(v: Option<u64>) -> String {
    v.map_or_else(|| "?".to_string(), |v| v.to_string())
}

/// Contract: a sync may fail busy (the harness holds locks), on clock drift,
/// at an armed crash point, as unavailable right after the server closed its
/// sessions, and as a refused login (or `other`) while the server refuses
/// the login; any other failure is one.
pub fn sync_in_contract(
    r: usize,
    kind: SyncKind,
    answer: &Answer<SyncReport>,
    crash_armed: bool,
    sessions_cut: Option<Reconnect>,
) -> Result<(), Violation> {
    let what = format!("r{r} {}", kind_name(kind));
    let login_refused = matches!(
        sessions_cut,
        Some(Reconnect::RoleMissing | Reconnect::PasswordRefused | Reconnect::DatabaseMissing)
    );
    match answer {
        Answer::Ok(_) | Answer::Failed(SyncFailureClass::Busy | SyncFailureClass::ClockDrift, _) => Ok(()),
        Answer::Failed(SyncFailureClass::Unavailable, _) if sessions_cut.is_some() => Ok(()),
        Answer::Failed(SyncFailureClass::LoginRefused | SyncFailureClass::Other, _) if login_refused => Ok(()),
        Answer::Crashed if crash_armed => Ok(()),
        Answer::Failed(_, msg) | Answer::Error(msg) if is_constraint_failure(msg) => Err(Violation::new(
            Invariant::Integrity,
            format!("{what} failed with a constraint violation: {msg}"),
        )),
        other => Err(engine_violation(&what, other)),
    }
}

fn is_constraint_failure(msg: &str) -> bool {
    let m = msg.to_ascii_lowercase();
    m.contains("constraint") || m.contains("unique") || m.contains("foreign key")
}

/// Contract: the round trips an engine reports with a sync (optional,
/// PostgreSQL remotes) are the ones its process made, as the replica's
/// wire tap counted them (`counted`: `None` without a tap).
pub fn round_trips_agree(
    r: usize,
    kind: SyncKind,
    reported: Option<u64>,
    counted: Option<Result<u64, TapTrouble>>,
) -> Result<(), Violation> {
    let (Some(reported), Some(counted)) = (reported, counted) else {
        return Ok(());
    };
    let counted = counted.map_err(|trouble| Violation::new(Invariant::ProtocolViolated, trouble.0))?;
    if reported == counted {
        return Ok(());
    }
    Err(Violation::new(
        Invariant::TruthfulStatus,
        format!(
            "r{r} {} reports {reported} round trips to the remote since its process started; \
             the harness counted {counted} on the wire (connections, simple queries, \
             extended-protocol syncs)",
            kind_name(kind)
        ),
    ))
}

/// A restart over a cache a newer version of the engine wrote (format
/// `format`, above the `had` the engine writes) must be refused.
pub fn opened_a_newer_cache(r: usize, format: i64, had: i64) -> Violation {
    Violation::new(
        Invariant::OutcomeAgreement,
        format!(
            "r{r} opened a cache a newer version of the engine wrote (format {format}, above the \
             {had} it writes): it cannot know what that version changed, so it must refuse the \
             file (the reference: CacheFormatTooNew) and leave it as it is"
        ),
    )
}

/// A restart over a remote whose `table` has a column the schema does not
/// declare must be refused.
pub fn opened_a_drifted_remote(r: usize, table: &str) -> Violation {
    Violation::new(
        Invariant::OutcomeAgreement,
        format!(
            "r{r} opened a remote whose table {table} has a column its schema does not declare (a \
             newer version's migration added it): it must refuse such a remote (the reference: \
             SchemaMismatch) rather than sync against tables it does not know"
        ),
    )
}

/// `--doublecheck`: the same case ran twice and differed.
pub fn runs_differ() -> Violation {
    Violation::new(
        Invariant::OutcomeAgreement,
        "two runs of the same case differ (trace or final state): the run is not deterministic",
    )
}
