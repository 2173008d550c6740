//! Observation: after a step the harness reads the places the step touched
//! with its own connections, and asks the engine only what the checks need
//! (its read API, its pending count). Nothing here judges; the verdicts are
//! `crate::check::observed`'s.

use super::Runner;
use crate::check::contract::{self, Breach, MadeBy};
use crate::check::identity::Renumberings;
use crate::check::observed::{self, CacheObservation};
use crate::check::{blame, Verdict};
use crate::events::{count, Event};
use crate::subject::Answer;

/// What to ask besides the cache's rows.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Look {
    /// The engine's pending count, whatever the profile (the step's own
    /// checks need it). Under the reference profile it is always asked.
    pub pending: bool,
    /// The write ledger (after syncs and restarts; reference profile only).
    pub ledger: bool,
}

impl Runner<'_> {
    /// Reads replica `r`'s cache and asks its engine what `look` and the
    /// profile need. Asked first, the pending count describes the state the
    /// step left, before anything else is sent to the engine.
    pub(super) fn observe_cache(&mut self, r: usize, look: Look) -> CacheObservation {
        let profile = self.model.is_some();
        let wants_reads = self.caps().reads;
        let pending = self.replicas[r]
            .as_mut()
            .filter(|_| look.pending || profile)
            .map(|replica| replica.pending());
        let tables = self.places.read_cache(r);
        let mut reads = Vec::new();
        let mut ledger = None;
        if let Ok(tables) = &tables {
            for (t, rows) in tables.iter().enumerate() {
                self.seen[r][t].extend(rows.keys().copied());
            }
            if let Some(replica) = self.replicas[r].as_mut().filter(|_| wants_reads) {
                reads = self
                    .schema
                    .tables
                    .iter()
                    .map(|table| replica.read(&table.name))
                    .collect();
            }
            let up = self.replicas[r].is_some();
            if profile && look.ledger && up && self.places.remote_readable() {
                ledger = Some(self.places.ledger(r));
            }
        }
        let named = match (&self.naming, &tables) {
            (Some(naming), Ok(tables)) => Some(naming.logical(&self.schema, &self.history, &format!("r{r}"), tables)),
            _ => None,
        };
        let renumberings = Renumberings {
            before: self.id_maps[r].clone(),
            reported: self.replicas[r]
                .as_mut()
                .map(|x| x.take_renumbered())
                .unwrap_or_default(),
            crashed: std::mem::take(&mut self.crashed_since_read[r]),
        };
        let before = (self.policies().consistency == syncgate_protocol::ConsistencyPolicy::Causal)
            .then(|| self.caches[r].clone());
        CacheObservation {
            replica: r,
            tables,
            reads,
            pending,
            ledger,
            named,
            renumberings,
            before,
        }
    }

    /// Observes replica `r`'s cache, checks it, and keeps it as the view the
    /// next steps are translated against.
    pub(super) fn observe_and_check_cache(&mut self, r: usize, look: Look) -> Verdict {
        let seen = self.observe_cache(r, look);
        self.check_and_keep(seen)
    }

    /// Checks an observation of a cache and keeps its rows as the replica's
    /// view.
    pub(super) fn check_and_keep(&mut self, seen: CacheObservation) -> Verdict {
        let judged = observed::cache(&seen, &self.expectation())?;
        self.count_judged(judged);
        self.keep(seen);
        Ok(())
    }

    /// Counts the consistency properties an observation judged something for.
    pub(super) fn count_judged(&mut self, judged: observed::Judged) {
        for event in judged.events() {
            crate::events::count(&mut self.events, event, 1);
        }
    }

    /// Keeps an observation's rows as the replica's view (it passed), and
    /// counts the breaches it shows first as made by a merge.
    pub(super) fn keep(&mut self, seen: CacheObservation) {
        let r = seen.replica;
        if let Some(Answer::Ok(pending)) = seen.pending {
            self.last_pending[r] = Some(pending);
        }
        if let Ok(tables) = seen.tables {
            self.count_breaches(&tables, MadeBy::Merge);
            self.caches[r] = tables;
        }
        if let Some(Ok((logical, maps))) = seen.named {
            self.logical_caches[r] = logical;
            self.id_maps[r] = maps;
        }
    }

    /// Replica `r`'s cache as the contract judges it: by logical row where
    /// the engine's ids change or differ between places, else by id.
    pub(super) fn view(&self, r: usize) -> &syncgate_model::Tables {
        match self.naming {
            Some(_) => &self.logical_caches[r],
            None => &self.caches[r],
        }
    }

    /// The remote as the contract judges it (see [`Runner::view`]).
    pub(super) fn remote_view(&self) -> &syncgate_model::Tables {
        match self.naming {
            Some(_) => &self.logical_remote,
            None => &self.remote,
        }
    }

    /// Reads the remote (unless it is locked exclusively) and checks it.
    pub(super) fn observe_remote(&mut self) -> Verdict {
        if !self.places.remote_readable() {
            return Ok(());
        }
        let tables = self
            .places
            .read_remote()
            .map_err(|e| blame("remote read", "read the remote", e))?;
        let judged = observed::remote(&tables, &self.expectation())?;
        self.count_judged(judged);
        self.count_breaches(&tables, MadeBy::Merge);
        if let Some(naming) = &self.naming {
            let (logical, _) = naming.logical(&self.schema, &self.history, "remote", &tables)?;
            self.logical_remote = logical;
        }
        for (t, rows) in tables.iter().enumerate() {
            self.remote_seen[t].extend(rows.keys().copied());
        }
        self.remote = tables;
        Ok(())
    }

    /// The pending count an observation carries (asked because the step
    /// needed it, with the replica up).
    pub(super) fn pending_of(seen: &CacheObservation) -> &Answer<u64> {
        match &seen.pending {
            Some(answer) => answer,
            None => unreachable!("asked when the step needs it, of a replica that is up"),
        }
    }

    /// Counts each breach of a constraint that `tables` shows and no place
    /// showed before in this case, as made by `made_by`: what the engine's
    /// promises let through (anything else failed `Integrity` already).
    pub(super) fn count_breaches(&mut self, tables: &syncgate_model::Tables, made_by: MadeBy) {
        for breach in contract::breaches(&self.schema, tables) {
            let event = match (&breach, made_by) {
                (Breach::Duplicate { .. }, MadeBy::Merge) => Event::KeyDuplicateByMerge,
                (Breach::Duplicate { .. }, MadeBy::Write) => Event::KeyDuplicateByWrite,
                (Breach::Dangling { .. }, MadeBy::Merge) => Event::DanglingByMerge,
                (Breach::Dangling { .. }, MadeBy::Write) => Event::DanglingByWrite,
            };
            if self.breaches_seen.insert(breach) {
                count(&mut self.events, event, 1);
            }
        }
    }
}
