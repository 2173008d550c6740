//! The restart step, and what befalls a replica while its process is down
//! (`WhileDown`): a clock that moved, a migration that rebuilt a table, an
//! update to the engine's next version (a cache in an older format), a step
//! back from a newer version (a cache it wrote), a remote a newer
//! application changed, the application holding the cache's lock.

use super::observe::Look;
use super::{Runner, Started, StepOutcome};
use crate::check::{answers, blame};
use crate::events::{count, Event};
use crate::places::{Downgrade, LegacyFormat};
use crate::scenario::{WhileDown, NEWER_CACHE_FORMAT};

/// When a restart meets each thing that befell the replica: the clock and
/// the files first, then the opens that must be refused (a newer version's
/// cache, a remote a newer application changed) before the cache is
/// upgraded, then the upgrade; the application's lock is held over the
/// open itself.
fn moment(item: &WhileDown) -> u8 {
    match item {
        WhileDown::ClockMoved { .. } => 0,
        WhileDown::TableRebuilt { .. } => 1,
        WhileDown::CacheFromNewerVersion => 2,
        WhileDown::RemoteDrifted { .. } => 3,
        WhileDown::CacheFromOlderVersion { .. } => 4,
        WhileDown::AppHoldsCache => 5,
    }
}

impl Runner<'_> {
    /// A `Restart` step of replica `r` (a no-op but for its line when the
    /// replica is up: nothing befalls a running replica).
    pub(super) fn restart_step(&mut self, r: usize, while_down: &[WhileDown]) -> StepOutcome {
        let down = !self.up(r);
        let mut items: Vec<WhileDown> = if down { while_down.to_vec() } else { Vec::new() };
        items.sort_by_key(moment);
        let mut notes = String::new();
        let mut upgraded = false;
        for item in &items {
            let note = match *item {
                WhileDown::ClockMoved { offset_ms } => {
                    // The process comes back to a clock that moved.
                    if self.caps().clock {
                        self.offsets[r] = offset_ms;
                        self.offsets_ahead_max = self.offsets_ahead_max.max(offset_ms);
                        count(&mut self.events, Event::ClockSkew, 1);
                        count(
                            &mut self.events,
                            Event::ClockJump,
                            u64::from(super::clock::is_jump(offset_ms)),
                        );
                        Ok(format!("clock moved {}, ", crate::show::show_offset(offset_ms)))
                    } else {
                        Ok(String::new())
                    }
                }
                WhileDown::TableRebuilt { table } => self.rebuild_while_down(r, table),
                WhileDown::CacheFromNewerVersion => self.refuse_newer_while_down(r, i64::from(NEWER_CACHE_FORMAT)),
                WhileDown::RemoteDrifted { table } if self.profile() => self.refuse_drifted_remote_while_down(r, table),
                WhileDown::CacheFromOlderVersion { format } => match LegacyFormat::from_number(format) {
                    Some(format) => self
                        .downgrade_while_down(r, format)
                        .inspect(|note| upgraded |= !note.is_empty()),
                    None => Ok(String::new()),
                },
                WhileDown::RemoteDrifted { .. } | WhileDown::AppHoldsCache => Ok(String::new()),
            };
            match note {
                Ok(note) => notes.push_str(&note),
                Err(out) => return out,
            }
        }
        // The application's write lock, only over an open that should
        // change nothing (reference profile: no table rebuilt, no other
        // format) and that no lock step already covers.
        let held = items.contains(&WhileDown::AppHoldsCache)
            && self.profile()
            && !items
                .iter()
                .any(|w| matches!(w, WhileDown::TableRebuilt { .. }) || w.is_other_cache_version())
            && !self.places.cache_locked(r);
        if held {
            if let Err(e) = self.places.lock_cache(r, 0) {
                let what = format!("r{r}: the harness could not take the cache's write lock");
                let doing = format!("take r{r}'s cache write lock for the application");
                return StepOutcome::new(format!("r{r} restart"), Err(blame(&what, &doing, e)));
            }
        }
        let under_lock = down && self.places.cache_locked(r) && self.profile();
        let mut out = self.restart(r);
        if held {
            self.places.release_cache_lock(r);
            out.line
                .insert_str(0, "(the application holds the cache's write lock) ");
        }
        count(
            &mut self.events,
            Event::RestartUnderCacheLock,
            u64::from(under_lock && out.verdict.is_ok()),
        );
        if upgraded && out.verdict.is_ok() && self.up(r) {
            // The new version's second launch: an upgrade must have
            // recorded that it is done, and open the cache again as is.
            self.replicas[r] = None;
            let again = self.restart(r);
            out = StepOutcome::new(format!("{}, relaunched: {}", out.line, again.line), again.verdict);
        }
        out.line.insert_str(0, &notes);
        out
    }

    pub(super) fn restart(&mut self, r: usize) -> StepOutcome {
        if self.up(r) {
            return StepOutcome::new(format!("r{r} restart (already up)"), Ok(()));
        }
        if let Some(m) = &mut self.model {
            m.restart(r);
        }
        match self.start(r, false, false) {
            Ok(Started::Up(replica)) => {
                // A new process: what the last one minted and never used
                // may come again (PROTOCOL.md, ids an engine mints).
                self.minted[r].clear();
                self.replicas[r] = Some(replica);
            }
            Ok(Started::Refused(why)) => {
                return StepOutcome::checked(format!("r{r} restart -> error"), Err(answers::restart_failed(r, &why)))
            }
            Err(stop) => return StepOutcome::new(format!("r{r} restart -> error"), Err(stop)),
        }
        let seen = self.observe_cache(
            r,
            Look {
                pending: true,
                ledger: true,
            },
        );
        let pending = match answers::answered(&format!("r{r} pending"), Self::pending_of(&seen)) {
            Ok(pending) => pending,
            Err(v) => return StepOutcome::checked(format!("r{r} restart"), Err(v)),
        };
        count(&mut self.events, Event::RestartWithPending, u64::from(pending > 0));
        if let Some(before) = self.last_pending[r].filter(|&before| before > pending) {
            // Not a verdict (a push that committed before the crash may be
            // found applied), but the cause a later failure may have.
            let unpushed: Vec<String> = self.history.unpushed(r).iter().map(|w| format!("w{}", w.n)).collect();
            self.context.push(format!(
                "r{r} reported {before} pending before its restart at step {}, {pending} after it (its writes not \
                 known on the remote then: {})",
                self.step_no,
                if unpushed.is_empty() {
                    "none".to_string()
                } else {
                    unpushed.join(", ")
                }
            ));
        }
        StepOutcome::new(
            format!("r{r} restart with {pending} pending"),
            self.check_and_keep(seen),
        )
    }

    /// A migration rebuilt `table` of replica `r`'s cache while it was
    /// down: the table's triggers are gone (its rows and columns are as
    /// they were). Returns the note for the trace line.
    fn rebuild_while_down(&mut self, r: usize, table: usize) -> Result<String, StepOutcome> {
        let name = self.schema.tables[table].name.clone();
        if self.places.cache_locked(r) {
            return Ok(format!("(no rebuild of {name}: the cache is locked) "));
        }
        match self.places.drop_table_triggers(r, &name) {
            Ok(dropped) => {
                count(&mut self.events, Event::TableRebuilt, u64::from(dropped > 0));
                Ok(format!("{name} rebuilt ({dropped} triggers gone), "))
            }
            Err(e) => Err(StepOutcome::new(
                format!("r{r} rebuild {name} -> error"),
                Err(blame(
                    &format!("r{r}: the harness could not rebuild {name} in the cache"),
                    &format!("rebuild {name} in r{r}'s cache"),
                    e,
                )),
            )),
        }
    }

    /// The replica comes back as a newer version of the engine: the cache
    /// its previous version left is in the older `format` (a reference-format
    /// cache only; any other is left alone). Returns the note for the trace
    /// line.
    fn downgrade_while_down(&mut self, r: usize, format: LegacyFormat) -> Result<String, StepOutcome> {
        if self.places.cache_locked(r) {
            return Ok(String::new());
        }
        match self.places.downgrade_cache(r, format) {
            Ok(Downgrade::Done { pending }) => {
                count(&mut self.events, Event::CacheFromOlderVersion, 1);
                Ok(format!(
                    "cache from the engine's previous version (format {}, {pending} pending), ",
                    format.number()
                ))
            }
            Ok(Downgrade::NotReferenceFormat | Downgrade::NoOlderVersion) => Ok(String::new()),
            Err(e) => Err(StepOutcome::new(
                format!("r{r} cache from an older version -> error"),
                Err(blame(
                    &format!(
                        "r{r}: the harness could not write the cache in format {}",
                        format.number()
                    ),
                    &format!("write r{r}'s cache in format {}", format.number()),
                    e,
                )),
            )),
        }
    }

    /// A newer version of the application added a column to the remote's
    /// `table` while replica `r` was down. The engine must refuse to open a
    /// remote whose tables differ from the schema it was given (the
    /// reference: `SchemaMismatch`): syncing against tables it does not know
    /// would write rows without the column's values, or fail later, half
    /// way. Then the column goes again and the restart goes on. Returns the
    /// note for the trace line.
    fn refuse_drifted_remote_while_down(&mut self, r: usize, table: usize) -> Result<String, StepOutcome> {
        if self.places.remote_locked() {
            return Ok(String::new());
        }
        let name = self.schema.tables[table].name.clone();
        let harness_error = |what: &str, e| {
            StepOutcome::new(
                format!("r{r} remote {name} changed by a newer version -> error"),
                Err(blame(
                    &format!("r{r}: the harness could not {what} a column of the remote's {name}"),
                    &format!("{what} a column of the remote's {name}"),
                    e,
                )),
            )
        };
        self.places
            .add_remote_column(&name)
            .map_err(|e| harness_error("add", e))?;
        let refusal = match self.start(r, false, false) {
            Ok(Started::Up(opened)) => {
                drop(opened);
                return Err(StepOutcome::checked(
                    format!(
                        "r{r} restart over a remote whose {name} has a column the schema does not declare -> opened"
                    ),
                    Err(answers::opened_a_drifted_remote(r, &name)),
                ));
            }
            Ok(Started::Refused(why)) => why,
            Err(stop) => return Err(StepOutcome::new(format!("r{r} restart -> error"), Err(stop))),
        };
        count(&mut self.events, Event::RemoteDriftRefused, 1);
        self.places
            .drop_remote_column(&name)
            .map_err(|e| harness_error("drop", e))?;
        let first_line = self.first_line_in_case(r, &refusal);
        Ok(format!(
            "a remote whose {name} a newer version gave a column refused ({first_line}), the column gone again: "
        ))
    }

    /// The app went back a version: a newer version of the engine wrote
    /// replica `r`'s cache (a reference-format cache marked with `format`;
    /// any other is left alone). The engine must refuse to open it (the
    /// reference: `CacheFormatTooNew`), having written nothing; then the
    /// newer version is back and the restart goes on. Returns the note for
    /// the trace line.
    fn refuse_newer_while_down(&mut self, r: usize, format: i64) -> Result<String, StepOutcome> {
        if self.places.cache_locked(r) {
            return Ok(String::new());
        }
        let harness_error = |e| {
            StepOutcome::new(
                format!("r{r} cache from a newer version -> error"),
                Err(blame(
                    &format!("r{r}: the harness could not mark the cache as format {format}"),
                    &format!("mark r{r}'s cache as format {format}"),
                    e,
                )),
            )
        };
        let had = match self.places.mark_cache_newer(r, format) {
            Ok(Some(had)) => had,
            Ok(None) => return Ok(String::new()),
            Err(e) => return Err(harness_error(e)),
        };
        let refusal = match self.start(r, false, false) {
            Ok(Started::Up(opened)) => {
                drop(opened);
                return Err(StepOutcome::checked(
                    format!("r{r} restart over a newer version's cache (format {format}) -> opened"),
                    Err(answers::opened_a_newer_cache(r, format, had)),
                ));
            }
            Ok(Started::Refused(why)) => why,
            Err(stop) => return Err(StepOutcome::new(format!("r{r} restart -> error"), Err(stop))),
        };
        count(&mut self.events, Event::NewerCacheRefused, 1);
        self.places.restore_cache_format(r, had).map_err(harness_error)?;
        let first_line = self.first_line_in_case(r, &refusal);
        Ok(format!(
            "a newer version's cache (format {format}) refused ({first_line}), the newer version back: "
        ))
    }

    /// The first line of an engine's message, with the case's folder (a
    /// fresh temporary one) named `<case>`, so traces replay alike.
    fn first_line_in_case(&self, r: usize, message: &str) -> String {
        let cache_path = self.places.cache_path(r);
        let folder = cache_path.parent().map(|d| d.display().to_string()).unwrap_or_default();
        message.lines().next().unwrap_or_default().replace(&folder, "<case>")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_of_while_down_has_its_own_moment() {
        let all = [
            WhileDown::ClockMoved { offset_ms: 0 },
            WhileDown::TableRebuilt { table: 0 },
            WhileDown::CacheFromNewerVersion,
            WhileDown::RemoteDrifted { table: 0 },
            WhileDown::CacheFromOlderVersion { format: 0 },
            WhileDown::AppHoldsCache,
        ];
        let moments: Vec<u8> = all.iter().map(moment).collect();
        assert_eq!(moments, vec![0, 1, 2, 3, 4, 5]);
    }
}
