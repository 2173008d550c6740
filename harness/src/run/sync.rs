//! The sync step: a push, pull or sync of one replica, maybe crashing at an
//! armed point, maybe after the server closed the replica's sessions with a
//! PostgreSQL remote (and refuses its new ones). Its answer goes to the
//! model and the contract, the round trips it reports to the wire tap's
//! count; then the history learns what the sync taught (happens-before) and
//! the replica and the remote are observed.

use syncgate_model as model;
use syncgate_protocol::{CrashPoint, MergePolicy, PendingAfterSync, PushPull, SyncFailureClass};

use super::observe::Look;
use super::{Runner, StepOutcome};
use crate::check::{answers, contract, Stop, Verdict};
use crate::events::{count, Event};
use crate::scenario::{CrashAt, Interleave, Reconnect, SyncKind};
use crate::show::{crash_name, kind_name, reconnect_name, show_answer};
use crate::subject::{Answer, SyncReport};

impl Runner<'_> {
    pub(super) fn sync(
        &mut self,
        r: usize,
        kind: SyncKind,
        crash: Option<CrashAt>,
        sessions_cut: Option<Reconnect>,
        interleave: Option<Interleave>,
    ) -> StepOutcome {
        // A layer that only syncs whole gets every push and pull as a sync.
        let (kind, asked) = match self.caps().push_pull {
            PushPull::Together if kind != SyncKind::Full => (SyncKind::Full, Some(kind)),
            _ => (kind, None),
        };
        let point = crash.map(crash_point);
        let supported = point.is_some_and(|p| self.caps().crash_points.contains(&p));
        let crash = crash.filter(|_| supported);
        let name = kind_name(kind);
        let name = match asked {
            Some(asked) => format!("{name} (for a {} step: the engine only syncs whole)", kind_name(asked)),
            None => name.to_string(),
        };
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
        // Another replica's sync inside this one, where the wire lets the
        // harness hold this replica's session (interleave.rs).
        let inner = interleave.filter(|i| {
            crash.is_none()
                && cut.is_none()
                && i.replica != r
                && i.replica < self.replicas.len()
                && self.up(r)
                && self.can_hold(r)
        });
        if let Some(inner) = inner {
            if let Err(stop) = self.set_clock(r) {
                return StepOutcome::new(format!("{title} -> error"), Err(stop));
            }
            return self.sync_with_inner(r, kind, title, inner);
        }
        // The remote lock may end inside this sync (held.rs).
        let lock_ends = self.remote_lock_ends_when_busy
            && self.places.remote_locked()
            && crash.is_none()
            && cut.is_none()
            && self.up(r)
            && self.can_hold(r);
        if lock_ends {
            if let Err(stop) = self.set_clock(r) {
                return StepOutcome::new(format!("{title} -> error"), Err(stop));
            }
            return self.sync_lock_ending(r, kind, title);
        }
        let expected = self.expect_sync(r, kind, crash, refusal);
        if !self.up(r) {
            let verdict = answers::down_agrees(expected.as_ref().map(|e| e == &Err(model::SyncFailure::Down)));
            return StepOutcome::checked(format!("{title} -> down"), verdict);
        }
        if let Err(stop) = self.set_clock(r) {
            return StepOutcome::new(format!("{title} -> error"), Err(stop));
        }
        let Some(replica) = self.replicas[r].as_mut() else {
            unreachable!("r{r} is up")
        };
        if let Some(at) = crash {
            if let Err(v) = answers::answered(&format!("r{r} arm_crash"), &replica.arm_crash(crash_point(at))) {
                return StepOutcome::checked(format!("{title} -> error"), Err(v));
            }
        }
        self.places.refuse_remote_logins(r, refusal);
        let answer = replica.sync(kind);
        self.places.refuse_remote_logins(r, None);
        let tries = replica.last_busy_tries();
        let round_trips = replica.last_remote_round_trips();
        let synced = Synced {
            r,
            kind,
            crash,
            cut: cut.map(|(reconnect, _)| reconnect),
            answer,
            tries,
            round_trips,
        };
        self.judge_sync(&title, synced, expected.as_ref(), None)
    }

    /// Counts and checks one sync's answer, then what it left (the places,
    /// the history). `remote_before`: what the remote held when the sync
    /// began, when another replica's push may have come inside it.
    pub(super) fn judge_sync(
        &mut self,
        title: &str,
        synced: Synced,
        expected: Option<&Result<model::SyncReport, model::SyncFailure>>,
        remote_before: Option<&[usize]>,
    ) -> StepOutcome {
        let Synced {
            r,
            kind,
            crash,
            cut,
            answer,
            tries,
            round_trips,
        } = synced;
        if let Some(attempts) = tries.and_then(|t| t.attempts) {
            count(&mut self.events, Event::BusyRetry, attempts.saturating_sub(1));
        }
        let shown = show_sync_answer(&answer);
        let line = format!("{title} -> {shown}");
        if let Answer::Crashed = answer {
            // The process is gone: drop the handle without another call.
            self.replicas[r] = None;
            self.crashed_since_read[r] = true;
        }
        let refused = cut.is_some_and(|reconnect| reconnect.refusal().is_some());
        self.count_sync_answer(r, kind, crash, refused, &answer);
        if let Some(Ok(report)) = expected {
            count(&mut self.events, Event::Conflict, report.conflicts);
        }
        let verdict = match (expected, &self.model) {
            (Some(expected), Some(model)) => answers::sync_agrees(r, kind, expected, &answer, &shown)
                .and_then(|()| answers::busy_tries_agree(r, kind, &model.config, &answer, tries)),
            _ => answers::sync_in_contract(r, kind, &answer, crash.is_some(), cut),
        };
        let verdict =
            verdict.and_then(|()| answers::round_trips_agree(r, kind, round_trips, self.places.remote_round_trips(r)));
        if let Err(v) = verdict {
            if self.model.as_ref().is_some_and(|m| !m.replicas[r].up) {
                self.replicas[r] = None;
            }
            return StepOutcome::checked(line, Err(v));
        }
        self.last_sync = Some((r, kind, answer.clone()));
        StepOutcome::new(line, self.after_sync(r, kind, &answer, remote_before))
    }

    /// The model's answer to the same sync (profile runs): a sync whose
    /// new session the server refuses fails so (rule L2).
    pub(super) fn expect_sync(
        &mut self,
        r: usize,
        kind: SyncKind,
        crash: Option<CrashAt>,
        refusal: Option<(&'static str, &'static str)>,
    ) -> Option<Result<model::SyncReport, model::SyncFailure>> {
        let now = self.now(r);
        let m = self.model.as_mut()?;
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
        let model_refusal = refusal.map(|(sqlstate, _)| match sqlstate {
            "57P03" => model::SyncFailure::Unavailable,
            _ => model::SyncFailure::LoginRefused,
        });
        Some(match model_refusal {
            Some(refused) if model_crash.is_none() => m.sync_refused(r, now, model_kind, refused),
            _ => m.sync(r, now, model_kind, model_crash),
        })
    }

    fn count_sync_answer(
        &mut self,
        r: usize,
        kind: SyncKind,
        crash: Option<CrashAt>,
        logins_refused: bool,
        answer: &Answer<SyncReport>,
    ) {
        let events = &mut self.events;
        match answer {
            Answer::Crashed => count(
                events,
                match crash {
                    Some(CrashAt::BeforeRemoteCommit) => Event::CrashBeforeRemoteCommit,
                    Some(CrashAt::AfterRemoteCommit) => Event::CrashAfterRemoteCommit,
                    _ => Event::CrashMidPull,
                },
                1,
            ),
            Answer::Ok(report) => {
                count(events, Event::Pushed, report.pushed);
                count(events, Event::Pulled, report.pulled);
                // Only the reference's knob pages a pull by the drawn size:
                // another engine's pull is counted by what it says, not cut.
                if self.model.is_some() && self.limits.pull_page_rows.is_some_and(|rows| report.pulled > rows) {
                    count(events, Event::PageCut, 1);
                }
                if kind != SyncKind::Pull && report.pushed > 0 && std::mem::take(&mut self.push_was_busy[r]) {
                    count(events, Event::BusyThenPushed, 1);
                }
                if self.model.is_none() {
                    count(events, Event::Conflict, report.conflicts);
                }
            }
            Answer::Failed(SyncFailureClass::Busy, _) => {
                count(events, Event::Busy, 1);
                if kind != SyncKind::Pull {
                    self.push_was_busy[r] = true;
                }
            }
            Answer::Failed(SyncFailureClass::ClockDrift, _) => count(events, Event::DriftRefused, 1),
            Answer::Failed(SyncFailureClass::Unavailable | SyncFailureClass::LoginRefused, _) if logins_refused => {
                count(events, Event::ReconnectRefused, 1);
            }
            _ => {}
        }
    }

    /// Records what the sync taught (happens-before), then observes: the
    /// replica (a push that answers ok has pushed everything pending; a
    /// pull keeps newer values), then the remote.
    fn after_sync(
        &mut self,
        r: usize,
        kind: SyncKind,
        answer: &Answer<SyncReport>,
        remote_before: Option<&[usize]>,
    ) -> Verdict {
        let ok = matches!(answer, Answer::Ok(_));
        let pushed = ok && kind != SyncKind::Pull;
        let seen = self.observe_cache(
            r,
            Look {
                pending: pushed,
                ledger: true,
            },
        );
        if let (true, Some(pending)) = (pushed, &seen.pending) {
            // A pull may leave writes of the engine's own pending when it
            // declares so (conflicts resolved at pull time).
            let may_leave =
                kind == SyncKind::Full && self.policies().pending_after_sync == PendingAfterSync::Resolutions;
            if !(may_leave && matches!(pending, Answer::Ok(p) if *p > 0)) {
                contract::check_push_left_nothing_pending(r, kind, pending)?;
                self.history.pushed_all(self.step_no, r);
            }
        }
        if ok && kind != SyncKind::Push {
            match remote_before {
                Some(remote) => self.history.pulled_at_least(self.step_no, r, remote),
                None => self.history.pulled(self.step_no, r),
            }
        }
        let judged = crate::check::observed::cache(&seen, &self.expectation())?;
        self.count_judged(judged);
        // Per cell only for column-level engines: a row-level engine may
        // rightly take a concurrent row whose other cells are older.
        let column_level = self.policies().merge == MergePolicy::Column;
        if let (true, Some(after)) = (kind != SyncKind::Push && column_level, seen.view()) {
            contract::check_pull_kept_newer(&self.schema, &format!("r{r}"), &self.history, self.view(r), after)
                .map_err(Stop::from)?;
        }
        self.keep(seen);
        self.observe_remote()
    }
}

/// One sync's answer and what the engine and the tap said about it.
pub(super) struct Synced {
    pub r: usize,
    pub kind: SyncKind,
    pub crash: Option<CrashAt>,
    pub cut: Option<Reconnect>,
    pub answer: Answer<SyncReport>,
    pub tries: Option<crate::subject::BusyTriesReported>,
    pub round_trips: Option<u64>,
}

/// A sync's answer in the trace: its counts, or the answer in one line.
pub(super) fn show_sync_answer(answer: &Answer<SyncReport>) -> String {
    match answer {
        Answer::Ok(rep) => format!(
            "pushed {} pulled {} conflicts {}",
            rep.pushed, rep.pulled, rep.conflicts
        ),
        other => show_answer(other),
    }
}

fn crash_point(at: CrashAt) -> CrashPoint {
    match at {
        CrashAt::BeforeRemoteCommit => CrashPoint::PushBeforeRemoteCommit,
        CrashAt::AfterRemoteCommit => CrashPoint::PushAfterRemoteCommit,
        CrashAt::BeforeLocalCommit => CrashPoint::PullBeforeLocalCommit,
    }
}
