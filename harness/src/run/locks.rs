//! The lock steps: another connection holds the remote's lock, or a
//! replica cache's write lock, for a named number of steps; the model is
//! told, and released locks are counted down after every step.

use syncgate_model as model;

use super::{Runner, StepOutcome};
use crate::check::blame_place;
use crate::scenario::LockKind;
use crate::show::lock_name;

impl Runner<'_> {
    pub(super) fn lock_remote(&mut self, lock: LockKind, hold: usize, ends_when_busy: bool) -> StepOutcome {
        if self.places.remote_locked() {
            return StepOutcome::new("remote lock (already locked)".to_string(), Ok(()));
        }
        match self.places.lock_remote(lock, hold) {
            Ok(()) => {
                // Only a hold inside a sync sees it meet the lock busy: a
                // wire tap (PostgreSQL), or the in-process reference's seam.
                let ends_when_busy = ends_when_busy && self.holds_inside;
                self.remote_lock_ends_when_busy = ends_when_busy;
                let ends = if ends_when_busy {
                    ", or until a sync meets it busy"
                } else {
                    ""
                };
                if let Some(m) = &mut self.model {
                    m.lock_remote(Some(match lock {
                        LockKind::Shared => model::RemoteLock::Shared,
                        LockKind::Reserved => model::RemoteLock::Reserved,
                        LockKind::Exclusive => model::RemoteLock::Exclusive,
                    }));
                }
                StepOutcome::new(
                    format!("remote {} lock for {hold} steps{ends}", lock_name(lock)),
                    Ok(()),
                )
            }
            Err(e) => StepOutcome::new(
                "remote lock -> error".to_string(),
                Err(blame_place(&format!("lock the remote ({})", lock_name(lock)), e)),
            ),
        }
    }

    pub(super) fn lock_cache(&mut self, r: usize, hold: usize) -> StepOutcome {
        if self.places.cache_locked(r) {
            return StepOutcome::new(format!("r{r} cache lock (already locked)"), Ok(()));
        }
        match self.places.lock_cache(r, hold) {
            Ok(()) => {
                if let Some(m) = &mut self.model {
                    m.lock_cache(r, true);
                }
                StepOutcome::new(format!("r{r} cache write lock for {hold} steps"), Ok(()))
            }
            Err(e) => StepOutcome::new(
                format!("r{r} cache lock -> error"),
                Err(blame_place(&format!("lock r{r}'s cache"), e)),
            ),
        }
    }

    /// Counts every held lock down one step; the model learns which went.
    pub(super) fn tick_locks(&mut self) {
        let (remote, caches) = self.places.tick_locks();
        if remote || !self.places.remote_locked() {
            self.remote_lock_ends_when_busy = false;
        }
        if let Some(m) = &mut self.model {
            if remote {
                m.lock_remote(None);
            }
            for r in caches {
                m.lock_cache(r, false);
            }
        }
    }

    pub(super) fn release_locks(&mut self) {
        self.places.release_locks();
        self.remote_lock_ends_when_busy = false;
        if let Some(m) = &mut self.model {
            m.lock_remote(None);
            for r in 0..m.replicas.len() {
                m.lock_cache(r, false);
            }
        }
    }
}
