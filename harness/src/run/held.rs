//! A sync the harness may hold inside (a PostgreSQL remote's wire tap, or
//! the in-process reference's seam on SQLite): it runs on a second thread
//! while this one waits for the hold. When the tap holds the
//! engine's next message at the armed point, this thread does what the
//! step asks there (`interleave.rs`: another replica's sync; a remote lock
//! that ends once the engine met it busy) and lets the message go on. The
//! engine waits on its socket meanwhile, so the outcome depends only on the
//! step, never on timing.

use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::Duration;

use super::sync::Synced;
use super::{Runner, StepOutcome};
use crate::events::{count, Event};
use crate::places::{PauseAt, Paused};
use crate::scenario::SyncKind;
use crate::subject::{Answer, BusyTriesReported, SyncReport};

/// How often the waiting thread looks whether the held sync ended.
const POLL: Duration = Duration::from_millis(1);

/// A held sync's answer, what the engine said about it, and what ran at
/// the held point (`None`: the sync never reached it).
pub(super) struct Held<T> {
    pub answer: Answer<SyncReport>,
    pub tries: Option<BusyTriesReported>,
    pub round_trips: Option<u64>,
    pub inside: Option<T>,
}

impl Runner<'_> {
    /// Runs replica `r`'s sync with a pause armed at `at` in its wire tap;
    /// at the pause, `inside` runs on this thread, then the sync goes on.
    pub(super) fn sync_held<T>(
        &mut self,
        r: usize,
        kind: SyncKind,
        at: PauseAt,
        mut inside: impl FnMut(&mut Self, Paused) -> T,
    ) -> Held<T> {
        let (notify, pauses) = mpsc::channel::<Paused>();
        let Some(mut replica) = self.replicas[r].take() else {
            unreachable!("r{r} is up")
        };
        let holds = replica.hold_clock();
        // The wire tap holds a session; without one (a SQLite remote) the
        // in-process reference's seam holds the sync between two remote
        // transactions, or at its backoff after a busy attempt: where it
        // holds no remote lock.
        let tapped = self.places.tapped(r);
        let seam = if tapped {
            self.places.arm_pause(r, at, notify);
            None
        } else {
            let transactions = match at {
                PauseAt::RoundTrips(after) => Some(after),
                PauseAt::Busy => None,
            };
            replica.arm_pause(
                at,
                Box::new(move || {
                    let _ = notify.send(Paused {
                        status: b'I',
                        pid: None,
                        quiet: true,
                        transactions,
                    });
                }),
            )
        };
        let resume = |places: &crate::places::Places| match &seam {
            Some(resume) => resume(),
            None => places.resume_remote_session(r),
        };
        let (replica, held) = std::thread::scope(|scope| {
            let outer = scope.spawn(move || {
                let answer = replica.sync(kind);
                let (tries, round_trips) = (replica.last_busy_tries(), replica.last_remote_round_trips());
                (replica, answer, tries, round_trips)
            });
            let mut ran = None;
            let mut panicked = None;
            loop {
                match pauses.recv_timeout(POLL) {
                    Ok(paused) => {
                        // The held message goes on whatever happens here;
                        // the time it waited is not the engine's.
                        if let Some(holds) = &holds {
                            holds.hold();
                        }
                        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| inside(self, paused)));
                        resume(&self.places);
                        if let Some(holds) = &holds {
                            holds.release();
                        }
                        match outcome {
                            Ok(outcome) => ran = Some(outcome),
                            Err(payload) => panicked = Some(payload),
                        }
                    }
                    Err(RecvTimeoutError::Timeout) if !outer.is_finished() => {}
                    // Ended, or the pause fired and nothing more can come.
                    Err(_) => break,
                }
            }
            resume(&self.places);
            let joined = outer.join();
            if let Some(payload) = panicked {
                std::panic::resume_unwind(payload);
            }
            match joined {
                Ok((replica, answer, tries, round_trips)) => (
                    replica,
                    Held {
                        answer,
                        tries,
                        round_trips,
                        inside: ran,
                    },
                ),
                Err(payload) => std::panic::resume_unwind(payload),
            }
        });
        self.replicas[r] = Some(replica);
        held
    }

    /// Replica `r`'s sync while the harness holds the remote's lock, which
    /// ends once the server refused one of the sync's statements as busy
    /// (SEMANTICS.md L1: a busy attempt changes nothing, and the engine's
    /// retry finds the remote free). Under the profile the model's lock
    /// ends before the sync when it did and the engine retries; without
    /// retries, after the sync, which failed busy.
    pub(super) fn sync_lock_ending(&mut self, r: usize, kind: SyncKind, title: String) -> StepOutcome {
        let held = self.sync_held(r, kind, PauseAt::Busy, |runner, _| runner.places.release_remote_lock());
        let released = held.inside.is_some();
        let retries = self.model.as_ref().is_some_and(|m| m.config.busy_retries_max > 0);
        if released && retries {
            if let Some(m) = &mut self.model {
                m.lock_remote(None);
            }
        }
        let expected = self.expect_sync(r, kind, None, None);
        if released && !retries {
            if let Some(m) = &mut self.model {
                m.lock_remote(None);
            }
        }
        let title = if released {
            if matches!(held.answer, Answer::Ok(_)) {
                count(&mut self.events, Event::BusyThenSucceededWithinStep, 1);
            }
            format!("{title} [the remote lock ended once the sync met it busy]")
        } else if matches!(
            held.answer,
            Answer::Failed(syncgate_protocol::SyncFailureClass::Busy, _)
        ) {
            format!("{title} [the sync failed busy with no retry to hold: the remote lock stays]")
        } else {
            format!("{title} [the sync never met the remote lock busy: it stays]")
        };
        let synced = Synced {
            r,
            kind,
            crash: None,
            cut: None,
            answer: held.answer,
            tries: held.tries,
            round_trips: held.round_trips,
        };
        self.judge_sync(&title, synced, expected.as_ref(), None)
    }
}
