//! Holding a sync between two of its remote transactions, for a harness
//! that runs the engine in its own process: at the held point it runs
//! another replica's sync, then lets this one go on (PROTOCOL.md,
//! "Interleavings inside a step"; the harness's `run/held.rs`). A SQLite
//! remote has no wire to hold a session on, so the seam is the remote
//! handle: a sync is held only where it holds no remote lock, before it
//! begins a remote transaction.

use std::sync::{Arc, Condvar, Mutex, MutexGuard};

/// What the held sync tells the harness when it reaches the armed point.
pub type Reached = Box<dyn FnOnce() + Send>;

/// A pause armed for one sync, shared by the adapter and its remote
/// wrapper. Never armed, it costs one lock per remote transaction.
#[derive(Clone, Default)]
pub struct PauseSwitch {
    shared: Arc<(Mutex<PauseState>, Condvar)>,
}

#[derive(Default)]
struct PauseState {
    armed: Option<(u64, Reached)>,
    holding: bool,
}

impl PauseSwitch {
    fn state(&self) -> MutexGuard<'_, PauseState> {
        self.shared.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Holds the sync before the remote transaction that follows its
    /// first `after`, calling `reached` there.
    pub fn arm(&self, after: u64, reached: Reached) {
        let mut state = self.state();
        state.armed = Some((after, reached));
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
            Some((0, _)) => true,
            Some((left, _)) => {
                *left -= 1;
                false
            }
            None => false,
        };
        if !due {
            return;
        }
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
        switch.arm(1, Box::new(move || tx.send(()).unwrap()));
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
}
