//! The sync step: a push, pull or sync of one replica, maybe crashing at an
//! armed point, maybe after the server closed the replica's sessions with a
//! PostgreSQL remote (and refuses its new ones); the model's answer, the
//! contract's, the round trips the engine reports against the wire tap's
//! count, and what the sync taught (happens-before).

use syncgate_model as model;
use syncgate_protocol::{CrashPoint, SyncFailureClass};

use super::{
    crash_name, down_agrees, engine_violation, kind_name, reconnect_name, show_failure, Runner, StepOutcome, Verdict,
};
use crate::check::contract;
use crate::check::{Invariant, Violation};
use crate::events::{count, Event};
use crate::scenario::{CrashAt, Reconnect, SyncKind};
use crate::subject::{Answer, BusyTriesReported, SyncReport};

impl Runner<'_> {
    pub(super) fn sync(
        &mut self,
        r: usize,
        kind: SyncKind,
        crash: Option<CrashAt>,
        sessions_cut: Option<Reconnect>,
    ) -> StepOutcome {
        let point = crash.map(crash_point);
        let supported = point.is_some_and(|p| self.caps().crash_points.contains(&p));
        let crash = crash.filter(|_| supported);
        let name = kind_name(kind);
        let title = match (crash, point) {
            (Some(at), _) => format!("r{r} {name} crashing {}", crash_name(at)),
            (None, Some(p)) => format!("r{r} {name} (crash point {p:?} not offered by the engine)"),
            (None, None) => format!("r{r} {name}"),
        };
        // The server closes the replica's sessions (PostgreSQL remotes: the
        // wire tap) and answers its new ones as drawn, for this sync only.
        let cut = sessions_cut.and_then(|reconnect| self.places.cut_remote_sessions(r).map(|n| (reconnect, n)));
        let refusal = cut.and_then(|(reconnect, _)| reconnect.refusal());
        let title = match cut {
            Some((reconnect, n)) => {
                count(&mut self.events, Event::RemoteSessionsCut, 1);
                format!(
                    "{title} after the server closed its {n} session(s), {}",
                    reconnect_name(reconnect)
                )
            }
            None => title,
        };
        let model_refusal = refusal.map(|(sqlstate, _)| match sqlstate {
            "57P03" => model::SyncFailure::Unavailable,
            _ => model::SyncFailure::LoginRefused,
        });
        let now = self.now(r);
        let expected = self.model.as_mut().map(|m| {
            let model_kind = match kind {
                SyncKind::Push => model::SyncKind::Push,
                SyncKind::Pull => model::SyncKind::Pull,
                SyncKind::Full => model::SyncKind::Full,
            };
            let model_crash = crash.map(|at| match at {
                CrashAt::BeforeRemoteCommit => model::CrashPoint::PushBeforeRemoteCommit,
                CrashAt::AfterRemoteCommit => model::CrashPoint::PushAfterRemoteCommit,
                CrashAt::BeforeLocalCommit => model::CrashPoint::PullBeforeLocalCommit,
            });
            match model_refusal {
                Some(refused) if model_crash.is_none() => m.sync_refused(r, now, model_kind, refused),
                _ => m.sync(r, now, model_kind, model_crash),
            }
        });
        if !self.up(r) {
            let verdict = down_agrees(expected.as_ref().map(|e| e == &Err(model::SyncFailure::Down)));
            return StepOutcome::new(format!("{title} -> down"), verdict);
        }
        if let Err(v) = self.set_clock(r) {
            return StepOutcome::new(format!("{title} -> error"), Err(v));
        }
        let Some(replica) = self.replicas[r].as_mut() else {
            return StepOutcome::new(format!("{title} -> down"), Ok(()));
        };
        if let Some(at) = crash {
            match replica.arm_crash(crash_point(at)) {
                Answer::Ok(()) => {}
                other => {
                    return StepOutcome::new(
                        format!("{title} -> error"),
                        Err(engine_violation(&format!("r{r} arm_crash"), &other)),
                    )
                }
            }
        }
        self.places.refuse_remote_logins(r, refusal);
        let answer = replica.sync(kind);
        self.places.refuse_remote_logins(r, None);
        let tries = replica.last_busy_tries();
        let round_trips = replica.last_remote_round_trips();
        if let Some(attempts) = tries.and_then(|t| t.attempts) {
            count(&mut self.events, Event::BusyRetry, attempts.saturating_sub(1));
        }
        let shown = match &answer {
            Answer::Ok(rep) => format!(
                "pushed {} pulled {} conflicts {}",
                rep.pushed, rep.pulled, rep.conflicts
            ),
            other => show_failure(other),
        };
        let line = format!("{title} -> {shown}");
        match &answer {
            Answer::Crashed => {
                // The process is gone: drop the handle without another call.
                self.replicas[r] = None;
                count(
                    &mut self.events,
                    match crash {
                        Some(CrashAt::BeforeRemoteCommit) => Event::CrashBeforeRemoteCommit,
                        Some(CrashAt::AfterRemoteCommit) => Event::CrashAfterRemoteCommit,
                        _ => Event::CrashMidPull,
                    },
                    1,
                );
            }
            Answer::Ok(report) => {
                count(&mut self.events, Event::Pushed, report.pushed);
                count(&mut self.events, Event::Pulled, report.pulled);
                if self.limits.pull_page_rows.is_some_and(|rows| report.pulled > rows) {
                    count(&mut self.events, Event::PageCut, 1);
                }
                if kind != SyncKind::Pull && report.pushed > 0 && std::mem::take(&mut self.push_was_busy[r]) {
                    count(&mut self.events, Event::BusyThenPushed, 1);
                }
                if self.model.is_none() {
                    count(&mut self.events, Event::Conflict, report.conflicts);
                }
            }
            Answer::Failed(SyncFailureClass::Busy, _) => {
                count(&mut self.events, Event::Busy, 1);
                if kind != SyncKind::Pull {
                    self.push_was_busy[r] = true;
                }
            }
            Answer::Failed(SyncFailureClass::ClockDrift, _) => count(&mut self.events, Event::DriftRefused, 1),
            Answer::Failed(SyncFailureClass::Unavailable | SyncFailureClass::LoginRefused, _) if refusal.is_some() => {
                count(&mut self.events, Event::ReconnectRefused, 1);
            }
            _ => {}
        }
        if let Some(Ok(report)) = &expected {
            count(&mut self.events, Event::Conflict, report.conflicts);
        }
        let verdict = match (&expected, &self.model) {
            (Some(expected), Some(model)) => sync_agrees(r, kind, expected, &answer, &shown)
                .and_then(|()| busy_tries_agree(r, kind, &model.config, &answer, tries)),
            _ => sync_in_contract(r, kind, &answer, crash.is_some(), cut.map(|(reconnect, _)| reconnect)),
        };
        let verdict = verdict.and_then(|()| self.round_trips_agree(r, kind, round_trips));
        if verdict.is_err() {
            if self.model.as_ref().is_some_and(|m| !m.replicas[r].up) {
                self.replicas[r] = None;
            }
            return StepOutcome::new(line, verdict);
        }
        StepOutcome::new(line, self.after_sync(r, kind, &answer))
    }

    /// Contract: the round trips an engine reports with a sync (optional,
    /// PostgreSQL remotes) are the ones its process made, as the replica's
    /// wire tap counted them.
    fn round_trips_agree(&self, r: usize, kind: SyncKind, reported: Option<u64>) -> Verdict {
        let (Some(reported), Some(counted)) = (reported, self.places.remote_round_trips(r)) else {
            return Ok(());
        };
        let counted = counted.map_err(|trouble| Violation::new(Invariant::ProtocolViolated, trouble))?;
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

    /// Records what the sync taught (happens-before), then observes.
    fn after_sync(&mut self, r: usize, kind: SyncKind, answer: &Answer<SyncReport>) -> Verdict {
        let before = self.caches[r].clone();
        if let Answer::Ok(_) = answer {
            if kind != SyncKind::Pull {
                // A push that answers ok has pushed everything pending.
                match self.replicas[r].as_mut().map(|x| x.pending()) {
                    Some(Answer::Ok(0)) => self.history.pushed_all(self.step_no, r),
                    Some(Answer::Ok(p)) => {
                        return Err(Violation::new(
                            Invariant::TruthfulStatus,
                            format!("r{r} {} answered ok, but {p} writes are still pending", kind_name(kind)),
                        ))
                    }
                    Some(other) => return Err(engine_violation(&format!("r{r} pending"), &other)),
                    None => {}
                }
            }
            if kind != SyncKind::Push {
                self.history.pulled(self.step_no, r);
            }
        }
        self.observe_replica(r, true)?;
        // Per cell only for column-level engines: a row-level engine may
        // rightly take a concurrent row whose other cells are older.
        let column_level = self
            .engine
            .as_ref()
            .is_some_and(|e| e.policies.merge == syncgate_protocol::MergePolicy::Column);
        if kind != SyncKind::Push && column_level {
            contract::check_pull_kept_newer(&self.schema, &format!("r{r}"), &self.history, &before, &self.caches[r])?;
        }
        self.observe_remote()
    }
}

fn crash_point(at: CrashAt) -> CrashPoint {
    match at {
        CrashAt::BeforeRemoteCommit => CrashPoint::PushBeforeRemoteCommit,
        CrashAt::AfterRemoteCommit => CrashPoint::PushAfterRemoteCommit,
        CrashAt::BeforeLocalCommit => CrashPoint::PullBeforeLocalCommit,
    }
}

/// Profile: the sync's answer equals the model's.
fn sync_agrees(
    r: usize,
    kind: SyncKind,
    expected: &Result<model::SyncReport, model::SyncFailure>,
    answer: &Answer<SyncReport>,
    shown: &str,
) -> Verdict {
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
fn busy_tries_agree(
    r: usize,
    kind: SyncKind,
    config: &model::Config,
    answer: &Answer<SyncReport>,
    reported: Option<BusyTriesReported>,
) -> Verdict {
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
fn sync_in_contract(
    r: usize,
    kind: SyncKind,
    answer: &Answer<SyncReport>,
    crash_armed: bool,
    sessions_cut: Option<Reconnect>,
) -> Verdict {
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
