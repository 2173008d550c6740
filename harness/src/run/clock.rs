//! The replicas' clocks: a clock step sets one replica's offset from true
//! time, and before each request that depends on time the engine is told
//! the replica's time (engines that take an injected clock).

use super::{Runner, StepOutcome};
use crate::check::{answers, Verdict};
use crate::events::{count, Event};

impl Runner<'_> {
    pub(super) fn clock_step(&mut self, r: usize, offset_ms: i64) -> StepOutcome {
        if !self.caps().clock {
            return StepOutcome::new(
                format!("r{r} clock offset (skipped: the engine takes no injected clock)"),
                Ok(()),
            );
        }
        self.offsets[r] = offset_ms;
        self.offsets_ahead_max = self.offsets_ahead_max.max(offset_ms);
        count(&mut self.events, Event::ClockSkew, u64::from(offset_ms != 0));
        count(&mut self.events, Event::ClockJump, u64::from(is_jump(offset_ms)));
        StepOutcome::new(
            format!("r{r} clock offset {}", crate::show::show_offset(offset_ms)),
            Ok(()),
        )
    }

    /// Tells the engine the replica's time, where it takes an injected clock.
    pub(super) fn set_clock(&mut self, r: usize) -> Verdict {
        if !self.caps().clock {
            return Ok(());
        }
        let now = self.now(r);
        let Some(replica) = self.replicas[r].as_mut() else {
            return Ok(());
        };
        answers::answered(&format!("r{r} set_clock"), &replica.set_clock(now))?;
        Ok(())
    }
}

/// Whether a clock offset is a jump: minutes or more away from true time.
pub(super) fn is_jump(offset_ms: i64) -> bool {
    offset_ms.abs() >= crate::scenario::CLOCK_JUMPS_MS[0]
}
