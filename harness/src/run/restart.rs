//! The restart step, and what happens to a replica's cache while its
//! process is down: a clock that moved, a migration that rebuilt a table,
//! an update to the engine's next version (a cache in an older format), or
//! a step back to an older version (a cache a newer version wrote).

use crate::check::{Invariant, Violation};
use crate::events::{count, Event};
use crate::places::{Downgrade, LegacyFormat};
use crate::scenario::NEWER_CACHE_FORMAT;

use super::{engine_violation, Runner, StepOutcome};
use crate::subject::Answer;

impl Runner<'_> {
    /// A `Restart` step of replica `replica` (a no-op but for its line when
    /// the replica is up).
    pub(super) fn restart_step(
        &mut self,
        replica: usize,
        offset_ms: Option<i64>,
        rebuilt: Option<usize>,
        cache_format: Option<u8>,
        remote_drifted: Option<usize>,
        app_holds_cache: bool,
    ) -> StepOutcome {
        if let Some(offset_ms) = offset_ms.filter(|_| self.caps().clock && !self.up(replica)) {
            // The process comes back to a clock that moved (backwards).
            self.offsets[replica] = offset_ms;
            self.offsets_ahead_max = self.offsets_ahead_max.max(offset_ms);
            count(&mut self.events, Event::ClockSkew, 1);
        }
        let migrated = match rebuilt.filter(|_| !self.up(replica)) {
            Some(table) => match self.rebuild_while_down(replica, table) {
                Ok(note) => note,
                Err(out) => return out,
            },
            None => String::new(),
        };
        let newer = match cache_format.filter(|&f| f == NEWER_CACHE_FORMAT && !self.up(replica)) {
            Some(format) => match self.refuse_newer_while_down(replica, i64::from(format)) {
                Ok(note) => note,
                Err(out) => return out,
            },
            None => String::new(),
        };
        let drifted = match remote_drifted.filter(|_| self.profile() && !self.up(replica)) {
            Some(table) => match self.refuse_drifted_remote_while_down(replica, table) {
                Ok(note) => note,
                Err(out) => return out,
            },
            None => String::new(),
        };
        let upgraded = match cache_format
            .and_then(LegacyFormat::from_number)
            .filter(|_| !self.up(replica))
        {
            Some(format) => match self.downgrade_while_down(replica, format) {
                Ok(note) => note,
                Err(out) => return out,
            },
            None => String::new(),
        };
        // The application's write lock, only over an open that should
        // change nothing (reference profile: no table rebuilt, no other
        // format) and that no lock step already covers.
        let held = app_holds_cache
            && self.profile()
            && !self.up(replica)
            && rebuilt.is_none()
            && cache_format.is_none()
            && !self.places.cache_locked(replica);
        if held {
            if let Err(e) = self.places.lock_cache(replica, 0) {
                return StepOutcome::new(
                    format!("r{replica} restart"),
                    Err(Violation::new(
                        Invariant::EngineFailed,
                        format!("r{replica}: the harness could not take the cache's write lock: {e}"),
                    )),
                );
            }
        }
        let under_lock = !self.up(replica) && self.places.cache_locked(replica) && self.profile();
        let mut out = self.restart(replica);
        if held {
            self.places.release_cache_lock(replica);
            out.line
                .insert_str(0, "(the application holds the cache's write lock) ");
        }
        count(
            &mut self.events,
            Event::RestartUnderCacheLock,
            u64::from(under_lock && out.verdict.is_ok()),
        );
        if !upgraded.is_empty() && out.verdict.is_ok() && self.up(replica) {
            // The new version's second launch: an upgrade must have
            // recorded that it is done, and open the cache again as is.
            self.replicas[replica] = None;
            let again = self.restart(replica);
            out = StepOutcome::new(format!("{}, relaunched: {}", out.line, again.line), again.verdict);
        }
        out.line.insert_str(0, &format!("{migrated}{newer}{drifted}{upgraded}"));
        out
    }

    pub(super) fn restart(&mut self, r: usize) -> StepOutcome {
        if self.up(r) {
            return StepOutcome::new(format!("r{r} restart (already up)"), Ok(()));
        }
        if let Some(m) = &mut self.model {
            m.restart(r);
        }
        match self.open(r, false, false) {
            Ok(replica) => self.replicas[r] = Some(replica),
            Err(e) => {
                return StepOutcome::new(
                    format!("r{r} restart -> error"),
                    Err(Violation::new(Invariant::EngineFailed, format!("r{r} restart: {e}"))),
                )
            }
        }
        let pending = match self.replicas[r].as_mut().map(|x| x.pending()) {
            Some(Answer::Ok(p)) => p,
            Some(other) => {
                return StepOutcome::new(
                    format!("r{r} restart"),
                    Err(engine_violation(&format!("r{r} pending"), &other)),
                )
            }
            None => 0,
        };
        count(&mut self.events, Event::RestartWithPending, u64::from(pending > 0));
        StepOutcome::new(
            format!("r{r} restart with {pending} pending"),
            self.observe_replica(r, true),
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
                Err(Violation::new(
                    Invariant::EngineFailed,
                    format!("r{r}: the harness could not rebuild {name} in the cache: {e}"),
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
            Ok(Downgrade::NotReferenceFormat) => Ok(String::new()),
            Err(e) => Err(StepOutcome::new(
                format!("r{r} cache from an older version -> error"),
                Err(Violation::new(
                    Invariant::EngineFailed,
                    format!(
                        "r{r}: the harness could not write the cache in format {}: {e}",
                        format.number()
                    ),
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
        let harness_error = |what: &str, e: String| {
            StepOutcome::new(
                format!("r{r} remote {name} changed by a newer version -> error"),
                Err(Violation::new(
                    Invariant::EngineFailed,
                    format!("r{r}: the harness could not {what} a column of the remote's {name}: {e}"),
                )),
            )
        };
        self.places
            .add_remote_column(&name)
            .map_err(|e| harness_error("add", e))?;
        let refusal = match self.open(r, false, false) {
            Ok(opened) => {
                drop(opened);
                return Err(StepOutcome::new(
                    format!(
                        "r{r} restart over a remote whose {name} has a column the schema does not declare -> opened"
                    ),
                    Err(Violation::new(
                        Invariant::OutcomeAgreement,
                        format!(
                            "r{r} opened a remote whose table {name} has a column its schema does not declare (a \
                             newer version's migration added it): it must refuse such a remote (the reference: \
                             SchemaMismatch) rather than sync against tables it does not know"
                        ),
                    )),
                ));
            }
            Err(e) => e,
        };
        count(&mut self.events, Event::RemoteDriftRefused, 1);
        self.places
            .drop_remote_column(&name)
            .map_err(|e| harness_error("drop", e))?;
        // The case's folder is a fresh temporary one: the trace names it `<case>`.
        let cache_path = self.places.cache_path(r);
        let folder = cache_path.parent().map(|d| d.display().to_string()).unwrap_or_default();
        let first_line = refusal.lines().next().unwrap_or_default().replace(&folder, "<case>");
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
        let harness_error = |e: String| {
            StepOutcome::new(
                format!("r{r} cache from a newer version -> error"),
                Err(Violation::new(
                    Invariant::EngineFailed,
                    format!("r{r}: the harness could not mark the cache as format {format}: {e}"),
                )),
            )
        };
        let had = match self.places.mark_cache_newer(r, format) {
            Ok(Some(had)) => had,
            Ok(None) => return Ok(String::new()),
            Err(e) => return Err(harness_error(e)),
        };
        let refusal = match self.open(r, false, false) {
            Ok(opened) => {
                drop(opened);
                return Err(StepOutcome::new(
                    format!("r{r} restart over a newer version's cache (format {format}) -> opened"),
                    Err(Violation::new(
                        Invariant::OutcomeAgreement,
                        format!(
                            "r{r} opened a cache a newer version of the engine wrote (format {format}, above the \
                             {had} it writes): it cannot know what that version changed, so it must refuse the \
                             file (the reference: CacheFormatTooNew) and leave it as it is"
                        ),
                    )),
                ));
            }
            Err(e) => e,
        };
        count(&mut self.events, Event::NewerCacheRefused, 1);
        self.places.restore_cache_format(r, had).map_err(harness_error)?;
        // The case's folder is a fresh temporary one: the trace names it `<case>`.
        let cache_path = self.places.cache_path(r);
        let folder = cache_path.parent().map(|d| d.display().to_string()).unwrap_or_default();
        let first_line = refusal.lines().next().unwrap_or_default().replace(&folder, "<case>");
        Ok(format!(
            "a newer version's cache (format {format}) refused ({first_line}), the newer version back: "
        ))
    }
}
