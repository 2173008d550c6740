//! Holding a sync between two of its remote transactions, for a harness
//! that runs the engine in its own process: at the held point it runs
//! another replica's sync, then lets this one go on (PROTOCOL.md,
//! "Interleavings inside a step"; the harness's `run/held.rs`). A SQLite
//! remote has no wire to hold a session on, so the seam is the remote
//! handle: a sync is held only where it holds no remote lock, before it
//! begins a remote transaction, or while its engine backs off after a
//! busy attempt (the harness ends a remote lock there, and the retry finds
//! the remote free).

use std::sync::{Arc, Condvar, Mutex, MutexGuard};

/// What the held sync tells the harness when it reaches the armed point.
pub type Reached = Box<dyn FnOnce() + Send>;

/// A pause armed for one sync, shared by the adapter and its remote
/// wrapper. Never armed, it costs one lock per remote transaction.
#[derive(Clone, Default)]
pub struct PauseSwitch {
    shared: Arc<(Mutex<PauseState>, Condvar)>,
}

/// Where an armed pause holds the sync.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HoldAt {
    /// Before the remote transaction that follows the sync's first `n`.
    Transaction(u64),
    /// At the engine's next backoff after a busy attempt (it then holds no
    /// remote lock: the busy transaction rolled back).
    Backoff,
}

#[derive(Default)]
struct PauseState {
    armed: Option<(HoldAt, Reached)>,
    holding: bool,
}

impl std::fmt::Debug for PauseSwitch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let armed = self.state().armed.as_ref().map(|(at, _)| *at);
        f.debug_struct("PauseSwitch")
            .field("armed", &armed)
            .finish_non_exhaustive()
    }
}

impl PauseSwitch {
    fn state(&self) -> MutexGuard<'_, PauseState> {
        self.shared.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Holds the sync at `at`, calling `reached` there.
    pub fn arm(&self, at: HoldAt, reached: Reached) {
        let mut state = self.state();
        state.armed = Some((at, reached));
        state.holding = false;
    }

    /// Lets a held sync go on, and disarms a pause that has not fired.
    pub fn resume(&self) {
        let mut state = self.state();
        state.armed = None;
        state.holding = false;
        self.shared.1.notify_all();
    }

    /// Before a remote transaction begins: holds here when the armed pause
    /// is due, until [`PauseSwitch::resume`].
    pub(crate) fn at_begin(&self) {
        let mut state = self.state();
        let due = match &mut state.armed {
            Some((HoldAt::Transaction(0), _)) => true,
            Some((HoldAt::Transaction(left), _)) => {
                *left -= 1;
                false
            }
            _ => false,
        };
        if due {
            self.hold(state);
        }
    }

    /// Where the engine backs off after a busy attempt: holds here when a
    /// pause is armed at the backoff, until [`PauseSwitch::resume`].
    pub(crate) fn at_backoff(&self) {
        let state = self.state();
        if matches!(state.armed, Some((HoldAt::Backoff, _))) {
            self.hold(state);
        }
    }

    fn hold(&self, mut state: MutexGuard<'_, PauseState>) {
        let Some((_, reached)) = state.armed.take() else { return };
        state.holding = true;
        drop(state);
        reached();
        let mut state = self.state();
        while state.holding {
            state = self
                .shared
                .1
                .wait(state)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    #[test]
    fn the_sync_is_held_before_the_transaction_after_the_armed_count_until_resumed() {
        let switch = PauseSwitch::default();
        let (tx, rx) = mpsc::channel();
        switch.arm(HoldAt::Transaction(1), Box::new(move || tx.send(()).unwrap()));
        let held = switch.clone();
        let worker = std::thread::spawn(move || {
            held.at_begin(); // the first transaction passes
            held.at_begin(); // the second is held
            "went on"
        });
        rx.recv().expect("the second begin reached the pause");
        switch.resume();
        assert_eq!(worker.join().unwrap(), "went on");
        // Disarmed: later transactions pass.
        switch.at_begin();
    }

    #[test]
    fn a_pause_at_the_backoff_holds_there_and_not_before_a_transaction() {
        let switch = PauseSwitch::default();
        let (tx, rx) = mpsc::channel();
        switch.arm(HoldAt::Backoff, Box::new(move || tx.send(()).unwrap()));
        let held = switch.clone();
        let worker = std::thread::spawn(move || {
            held.at_begin(); // passes: the pause waits for a backoff
            held.at_begin();
            held.at_backoff(); // held
            "went on"
        });
        rx.recv().expect("the backoff reached the pause");
        switch.resume();
        assert_eq!(worker.join().unwrap(), "went on");
        switch.at_backoff();
    }
}
