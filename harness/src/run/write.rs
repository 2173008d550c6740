//! The write steps: one local transaction through the engine's API, or one
//! write made straight into the cache file over the harness's own
//! connection (outside the engine's API, as another part of the
//! application would, with an id the engine mints where it asks for that).
//! Then the history records what was committed, and the cache is observed.

use syncgate_model as model;
use syncgate_protocol::{
    OutsideInsertIds, OutsideWrites, PushPolicy, ReferencesPolicy, RefusalClass, SyncFailureClass,
};

use super::observe::Look;
use super::translate::{describe, model_writes, protocol_ops};
use super::{shown_ids, Runner, StepOutcome};
use crate::check::contract::{self, Expect};
use crate::check::{answers, blame, Stop, Verdict};
use crate::events::{count, Event};
use crate::history::{WriteKind, WriteRecord};
use crate::places::OutsideRefusal;
use crate::run::{descendants, Cell, PlannedKind, PlannedOp};
use crate::show::{given_up, show_answer};
use crate::subject::Answer;

/// A committed transaction, as the history and the checks need it.
struct Committed {
    records: Vec<WriteRecord>,
    /// What the writer's cache must show right after (read-your-writes).
    expect: Vec<Expect>,
    /// Whether anything changed (an update to the values a row already
    /// holds changes nothing, and nothing need be pushed for it).
    changes: bool,
    /// The writes' names for reports: `w7` or `w7..w9`.
    what: String,
}

impl Runner<'_> {
    pub(super) fn write(&mut self, r: usize, ops: &[PlannedOp], tag: usize) -> StepOutcome {
        let desc = describe(&self.schema, ops);
        let now = self.now(r);
        let expected = self.model.as_mut().map(|m| {
            let writes = model_writes(ops, m.replicas[r].next_id);
            m.write(r, now, &writes)
        });
        if !self.up(r) {
            let verdict = answers::down_agrees(expected.as_ref().map(|e| e == &Err(model::WriteRefusal::Down)));
            return StepOutcome::checked(format!("r{r} {desc} -> down"), verdict);
        }
        if let Err(stop) = self.set_clock(r) {
            return StepOutcome::new(format!("r{r} {desc} -> error"), Err(stop));
        }
        let Some(replica) = self.replicas[r].as_mut() else {
            unreachable!("r{r} is up")
        };
        let answer = replica.write(&protocol_ops(&self.schema, ops));
        let shown = shown_ids(&answer);
        let line = format!("r{r} {desc} -> {shown}");
        self.count_write_answer(&answer, ops.len());
        let verdict = answers::write_answer(r, expected.as_ref(), &answer, &shown)
            .map_err(Stop::from)
            .and_then(|()| self.after_write(r, ops, tag, &answer, false));
        StepOutcome::new(line, verdict)
    }

    pub(super) fn outside_write(&mut self, r: usize, ops: &[PlannedOp], tag: usize, abandoned_ids: u8) -> StepOutcome {
        let mut ops = ops.to_vec();
        let desc = describe(&self.schema, &ops);
        let mut gave_up = Vec::new();
        let line =
            |gave_up: &[i64], answer: &str| format!("r{r} outside the engine: {}{desc} -> {answer}", given_up(gave_up));
        if self.caps().outside_writes == OutsideWrites::NotCaptured {
            return StepOutcome::new(
                line(
                    &[],
                    "skipped: the engine declares it does not capture writes made outside its API",
                ),
                Ok(()),
            );
        }
        if !self.up(r) {
            return StepOutcome::new(line(&[], "skipped: the application is down"), Ok(()));
        }
        // An insert takes an id the engine mints, where it asks for that;
        // ids minted and given up on first stay reserved.
        let table = ops[0].table;
        if let PlannedKind::Insert { id } = &mut ops[0].kind {
            if self.caps().outside_insert_ids == OutsideInsertIds::Engine {
                for _ in 0..abandoned_ids {
                    match self.mint_outside(r, table) {
                        Ok(Some(minted)) => gave_up.push(minted),
                        Ok(None) => return StepOutcome::new(line(&gave_up, "mint_id refused busy"), Ok(())),
                        Err((shown, stop)) => return StepOutcome::new(line(&gave_up, &shown), Err(stop)),
                    }
                }
                count(&mut self.events, Event::MintedIdAbandoned, gave_up.len() as u64);
                match self.mint_outside(r, table) {
                    Ok(Some(minted)) => *id = Some(minted),
                    Ok(None) => return StepOutcome::new(line(&gave_up, "mint_id refused busy"), Ok(())),
                    Err((shown, stop)) => return StepOutcome::new(line(&gave_up, &shown), Err(stop)),
                }
            }
        }
        let desc_now = describe(&self.schema, &ops);
        let expected = self.model.as_mut().map(|m| {
            let writes = model_writes(&ops, m.replicas[r].next_id);
            m.write_outside(r, &writes)
        });
        let op = &protocol_ops(&self.schema, &ops)[0];
        if self.caps().outside_writes == OutsideWrites::Delegated {
            return self.delegated_write(r, &ops, op, tag, &gave_up, expected);
        }
        let answer = match self.places.outside_write(r, op) {
            Ok(id) => Answer::Ok(id.map(|id| vec![id]).unwrap_or_default()),
            Err(OutsideRefusal::Busy) => Answer::Refused(RefusalClass::Busy, "the cache is locked".into()),
            Err(OutsideRefusal::Refused(msg)) => Answer::Refused(RefusalClass::Other, msg),
            Err(OutsideRefusal::Unwritable(e)) => {
                let line = format!("r{r} outside the engine: {}{desc_now} -> error", given_up(&gave_up));
                return StepOutcome::new(
                    line,
                    Err(blame(
                        &format!("r{r} outside write"),
                        &format!("open r{r}'s cache to write"),
                        e,
                    )),
                );
            }
        };
        let shown = shown_ids(&answer);
        let line = format!("r{r} outside the engine: {}{desc_now} -> {shown}", given_up(&gave_up));
        let verdict = self.outside_write_answered(r, &ops, tag, &answer, expected.as_ref(), &shown);
        StepOutcome::new(line, verdict)
    }

    /// What every outside write does once answered, whoever ran it: its
    /// events, the answer judged, then the cache observed as after any write.
    fn outside_write_answered(
        &mut self,
        r: usize,
        ops: &[PlannedOp],
        tag: usize,
        answer: &Answer<Vec<i64>>,
        expected: Option<&Result<Vec<i64>, model::WriteRefusal>>,
        shown: &str,
    ) -> Verdict {
        count(
            &mut self.events,
            Event::OutsideWrite,
            u64::from(matches!(answer, Answer::Ok(_))),
        );
        if matches!(answer, Answer::Refused(RefusalClass::Busy, _)) {
            count(&mut self.events, Event::Busy, 1);
        }
        answers::outside_write_outcome(r, expected, answer, shown)
            .map_err(Stop::from)
            .and_then(|()| self.after_write(r, ops, tag, answer, true))
    }

    /// An outside write the engine runs on a connection of its own
    /// (`outside_writes: delegated`): the same statement the harness would
    /// run, sent as `exec_sql`. Anything but `exec_sql_ok` or `refused` is
    /// the engine's failure.
    fn delegated_write(
        &mut self,
        r: usize,
        ops: &[PlannedOp],
        op: &syncgate_protocol::Op,
        tag: usize,
        gave_up: &[i64],
        expected: Option<Result<Vec<i64>, model::WriteRefusal>>,
    ) -> StepOutcome {
        let desc = describe(&self.schema, ops);
        let line = |answer: &str| {
            format!(
                "r{r} outside the engine, run by it: {}{desc} -> {answer}",
                given_up(gave_up)
            )
        };
        let Some(statement) = crate::places::outside_statement(&self.schema, op) else {
            unreachable!("the harness planned a write on a table it does not know: {op:?}")
        };
        let Some(replica) = self.replicas[r].as_mut() else {
            unreachable!("r{r} is up")
        };
        let inserted = matches!(op, syncgate_protocol::Op::Insert { .. });
        let answer = match replica.exec_sql(&statement.sql, &statement.params) {
            Answer::Ok((_, rowid)) => Answer::Ok(if inserted { vec![rowid] } else { Vec::new() }),
            Answer::Refused(class, message) => Answer::Refused(class, message),
            other => {
                let shown = show_answer(&other);
                let violation = answers::engine_violation(&format!("r{r} exec_sql"), &other);
                return StepOutcome::new(line(&shown), Err(violation.into()));
            }
        };
        let shown = shown_ids(&answer);
        let verdict = self.outside_write_answered(r, ops, tag, &answer, expected.as_ref(), &shown);
        StepOutcome::new(line(&shown), verdict)
    }

    /// An application write whose transaction the application rolls back
    /// after its ops ran (engines that declare `aborts`): nothing of it may
    /// ever be seen, and pending does not move.
    pub(super) fn aborted_write(&mut self, r: usize, ops: &[PlannedOp], tag: usize) -> StepOutcome {
        let title = format!("r{r} {}, rolled back by the application", describe(&self.schema, ops));
        if !self.caps().aborts {
            return StepOutcome::new(format!("{title} (skipped: the engine declares no aborts)"), Ok(()));
        }
        if !self.up(r) {
            return StepOutcome::new(format!("{title} (skipped: the application is down)"), Ok(()));
        }
        if let Err(stop) = self.set_clock(r) {
            return StepOutcome::new(format!("{title} -> error"), Err(stop));
        }
        let Some(replica) = self.replicas[r].as_mut() else {
            unreachable!("r{r} is up")
        };
        let before = match answers::answered(&format!("r{r} pending"), &replica.pending()) {
            Ok(before) => before,
            Err(v) => return StepOutcome::checked(format!("{title} -> error"), Err(v)),
        };
        let answer = replica.write_aborting(&protocol_ops(&self.schema, ops));
        let shown = match &answer {
            Answer::Ok(()) => "aborted".to_string(),
            other => show_answer(other),
        };
        let line = format!("{title} -> {shown}");
        if let Err(v) = answers::aborted_write_answer(r, &answer) {
            return StepOutcome::checked(line, Err(v));
        }
        let what = match answer {
            Answer::Ok(()) => {
                assert_eq!(
                    self.history.next_write_number(),
                    tag,
                    "r{r}'s rolled-back write was tagged .w{tag}"
                );
                let numbers: Vec<usize> = ops
                    .iter()
                    .map(|op| self.history.record_aborted(r, self.step_no, op.table))
                    .collect();
                count(&mut self.events, Event::ApplicationAbort, 1);
                match numbers.as_slice() {
                    [one] => format!("w{one}"),
                    [first, .., last] => format!("w{first}..w{last}"),
                    [] => unreachable!("a write plans at least one op"),
                }
            }
            refused => {
                if matches!(refused, Answer::Refused(RefusalClass::Busy, _)) {
                    count(&mut self.events, Event::Busy, 1);
                }
                String::new()
            }
        };
        let seen = self.observe_cache(
            r,
            Look {
                pending: true,
                ledger: false,
            },
        );
        let verdict = crate::check::observed::cache(&seen, &self.expectation()).and_then(|judged| {
            self.count_judged(judged);
            if what.is_empty() {
                return Ok(());
            }
            contract::check_abort_left_pending(r, &what, before, Self::pending_of(&seen)).map_err(Stop::from)
        });
        if verdict.is_ok() {
            self.keep(seen);
        }
        StepOutcome::new(line, verdict)
    }

    /// The application asks replica `r` to mint an id of `table`: the id,
    /// `None` when refused busy, or what the engine said and the verdict.
    fn mint_outside(&mut self, r: usize, table: usize) -> Result<Option<i64>, (String, Stop)> {
        let expected = self.model.as_mut().map(|m| m.mint_id(r));
        let Some(replica) = self.replicas[r].as_mut() else {
            unreachable!("outside writes wait for r{r} to be up")
        };
        let answer = replica.mint_id(&self.schema.tables[table].name);
        // A minted id never comes twice from one process, and never names a
        // row some place holds or held (rule of PROTOCOL.md, all versions).
        let fresh = match answer {
            Answer::Ok(id) => {
                // Where ids differ between places, only the replica's own
                // cache's ids share the minted id's meaning.
                let held = match self.naming {
                    Some(_) => self.seen[r][table].contains(&id),
                    None => {
                        self.seen.iter().any(|tables| tables[table].contains(&id))
                            || self.remote_seen[table].contains(&id)
                    }
                };
                self.minted[r].insert(id) && !held
            }
            _ => true,
        };
        let shown = match &answer {
            Answer::Ok(id) => format!("minted {id}"),
            other => show_answer(other),
        };
        match answers::minted(r, &answer, fresh, expected.as_ref(), &shown) {
            Ok(None) => {
                count(&mut self.events, Event::Busy, 1);
                Ok(None)
            }
            Ok(minted) => Ok(minted),
            Err(v) => Err((shown, v.into())),
        }
    }

    fn count_write_answer(&mut self, answer: &Answer<Vec<i64>>, ops: usize) {
        match answer {
            Answer::Ok(_) if ops > 1 => count(&mut self.events, Event::MultiWriteTransaction, 1),
            Answer::Refused(RefusalClass::IdTaken | RefusalClass::IdDeleted | RefusalClass::IdOutsideReplica, _) => {
                count(&mut self.events, Event::IdCollisionRefused, 1)
            }
            Answer::Refused(RefusalClass::Busy, _) | Answer::Failed(SyncFailureClass::Busy, _) => {
                count(&mut self.events, Event::Busy, 1)
            }
            _ => {}
        }
    }

    /// Records a committed write, then observes and checks the replica:
    /// everything any observation gets, then read-your-writes and that the
    /// write is pending.
    fn after_write(
        &mut self,
        r: usize,
        ops: &[PlannedOp],
        tag: usize,
        answer: &Answer<Vec<i64>>,
        outside: bool,
    ) -> Verdict {
        let Answer::Ok(ids) = answer else {
            return self.observe_and_check_cache(r, Look::default());
        };
        let inserts = ops
            .iter()
            .filter(|op| matches!(op.kind, PlannedKind::Insert { .. }))
            .count();
        answers::one_id_per_insert(r, ids, inserts)?;
        // Both sides of the boundary: the values were tagged with the
        // number the history now gives the transaction's first write.
        assert_eq!(
            self.history.next_write_number(),
            tag,
            "r{r}'s write was tagged .w{tag} when translated, but the history numbers it otherwise"
        );
        let Committed {
            records,
            expect,
            changes,
            what,
        } = self.committed(r, ops, ids, outside);
        // Rows named by the writes that made them are named by these writes
        // too: the history knows them before the cache is read, and their
        // images are filled in after. So does atomic visibility: a row this
        // transaction deleted is missing from the cache for that reason.
        // (Otherwise the order of old is kept.)
        let recorded_first =
            self.naming.is_some() || self.policies().transactions == syncgate_protocol::TransactionsPolicy::Atomic;
        let mut pending_records = Vec::new();
        for record in records {
            if recorded_first {
                self.history.record(record);
            } else {
                pending_records.push(record);
            }
        }
        let seen = self.observe_cache(
            r,
            Look {
                pending: changes,
                ledger: false,
            },
        );
        crate::check::observed::cache(&seen, &self.expectation())?;
        let Some(tables) = seen.view() else {
            unreachable!("checked above")
        };
        if recorded_first {
            let written = ops.len();
            let from = self.history.writes.len() - written;
            for record in &mut self.history.writes[from..] {
                record.image = tables[record.table].get(&record.id).cloned();
            }
        }
        for mut record in pending_records {
            record.image = tables[record.table].get(&record.id).cloned();
            self.history.record(record);
        }
        contract::check_read_your_writes(&self.schema, &format!("r{r}"), &what, &expect, tables)?;
        if let Ok(read) = &seen.tables {
            if !outside {
                contract::check_own_write_kept_constraints(
                    &self.schema,
                    &format!("r{r}"),
                    &what,
                    &self.caches[r],
                    read,
                    &contract::Promises::of(self.policies()),
                )?;
            }
            self.count_breaches(read, contract::MadeBy::Write);
        }
        let pending = changes.then(|| Self::pending_of(&seen).clone());
        self.keep(seen);
        let Some(pending) = pending else {
            return Ok(());
        };
        if self.policies().push == PushPolicy::OnCommit && !outside {
            return self.pushed_on_commit(r, &what, &pending);
        }
        contract::check_committed_is_pending(r, &what, outside, &pending)?;
        Ok(())
    }

    /// A write-through engine's committed transaction: kept pending, or
    /// pushed; then every write of the replica not known on the remote
    /// (this transaction's, and any kept pending before) is there now.
    fn pushed_on_commit(&mut self, r: usize, what: &str, pending: &Answer<u64>) -> Verdict {
        if answers::answered(&format!("r{r} pending"), pending)? > 0 {
            count(&mut self.events, Event::KeptPendingOnCommit, 1);
            return Ok(());
        }
        let claimed = self.history.unpushed(r);
        self.history.pushed_all(self.step_no, r);
        if !self.places.remote_readable() {
            // Locked exclusively by a lock step: the claim waits for the
            // final checks, which read everything.
            return Ok(());
        }
        self.observe_remote()?;
        contract::check_pushed_on_commit(
            &self.schema,
            r,
            what,
            &self.history,
            &claimed,
            self.policies(),
            self.remote_view(),
        )?;
        count(&mut self.events, Event::PushedOnCommit, 1);
        Ok(())
    }

    /// What a transaction answered ok committed, against replica `r`'s
    /// cache as last read (the state it was written against).
    fn committed(&mut self, r: usize, ops: &[PlannedOp], ids: &[i64], outside: bool) -> Committed {
        let before = &self.caches[r];
        let first = self.history.next_write_number();
        let naming = RowNames::new(self, r, first);
        let mut minted: Vec<Option<i64>> = Vec::new();
        let mut next_id = ids.iter();
        let mut expect = Vec::new();
        let mut records = Vec::new();
        // A natural key names a row only where the engine merges or refuses
        // by it; under weaker promises it is a plain column (PROTOCOL.md,
        // "Promises per constraint"). Children go with a deleted parent
        // where the engine keeps references: always, or (local_only) in its
        // own writes; a write around its API cascades only where the cache
        // has the foreign keys for it, which such an engine does not promise.
        let keys_name_rows = self.policies().natural_keys.identifies_rows();
        let deletes_cascade = match self.policies().references {
            ReferencesPolicy::Enforced => true,
            ReferencesPolicy::LocalOnly => !outside,
            ReferencesPolicy::Unenforced => false,
        };
        for (k, op) in ops.iter().enumerate() {
            let t = op.table;
            let key_col = self.schema.tables[t].natural_key.filter(|_| keys_name_rows);
            let set = naming.values(&self.schema, op, op.resolved(&minted));
            let (physical, kind) = match op.kind {
                PlannedKind::Insert { .. } => (*next_id.next().unwrap_or(&0), WriteKind::Insert),
                PlannedKind::Update { id } => (id, WriteKind::Update),
                PlannedKind::Delete { id } => (id, WriteKind::Delete),
            };
            minted.push((kind == WriteKind::Insert).then_some(physical));
            let id = match kind {
                WriteKind::Insert => naming.inserted(k, physical),
                _ => naming.row(t, physical),
            };
            let key = key_col.and_then(|c| match kind {
                WriteKind::Insert => set.iter().find(|(sc, _)| *sc == c).map(|(_, v)| v.clone()),
                _ => before[t].get(&physical).map(|row| row[c].clone()),
            });
            let cascade: Vec<(usize, i64)> = if kind == WriteKind::Delete && deletes_cascade {
                descendants(&self.schema, before, t, physical)
                    .into_iter()
                    .map(|(ct, cid)| (ct, naming.row(ct, cid)))
                    .collect()
            } else {
                Vec::new()
            };
            match kind {
                WriteKind::Delete => {
                    expect.push(Expect::Gone { table: t, id });
                    expect.extend(cascade.iter().map(|&(table, id)| Expect::Gone { table, id }));
                }
                _ => expect.push(Expect::Row {
                    table: t,
                    id,
                    values: set.clone(),
                }),
            }
            records.push(WriteRecord {
                n: 0,
                replica: r,
                step: self.step_no,
                seq: 0,
                table: t,
                id,
                kind,
                set,
                key,
                cascade,
                knew: Vec::new(),
                outside,
                image: None,
            });
        }
        let (changes, null_transitions) = what_changed(self.view(r), &records);
        count(&mut self.events, Event::NullTransition, null_transitions);
        let what = if records.len() == 1 {
            format!("w{first}")
        } else {
            format!("w{first}..w{}", first + records.len() - 1)
        };
        Committed {
            records,
            expect,
            changes,
            what,
        }
    }
}

/// Whether committing `records` against `before` changed anything (an
/// update to the values a row already holds changes nothing, and nothing
/// need be pushed for it), and how many updates set a NULL to a value or a
/// value to NULL.
fn what_changed(before: &model::Tables, records: &[WriteRecord]) -> (bool, u64) {
    let null_transitions = records
        .iter()
        .filter(|w| w.kind == WriteKind::Update)
        .filter(|w| {
            before[w.table].get(&w.id).is_some_and(|row| {
                w.set
                    .iter()
                    .any(|(c, v)| (row[*c] == model::Value::Null) != (*v == model::Value::Null))
            })
        })
        .count();
    let changes = records.iter().any(|w| match w.kind {
        WriteKind::Update => before[w.table]
            .get(&w.id)
            .is_none_or(|row| w.set.iter().any(|(c, v)| row[*c] != *v)),
        _ => true,
    });
    (changes, null_transitions as u64)
}

/// How a committed transaction's rows are named in the history: by id for
/// engines whose ids are stable, else by logical row (the write that
/// inserted the row: `check/identity.rs`), through the replica's last view.
struct RowNames<'a> {
    /// Replica `r`'s ids and their logical rows, when rows are named so.
    maps: Option<&'a crate::check::identity::IdMaps>,
    /// The number the transaction's first write gets.
    first: usize,
}

impl<'a> RowNames<'a> {
    fn new(runner: &'a Runner<'_>, r: usize, first: usize) -> RowNames<'a> {
        RowNames {
            maps: runner.naming.as_ref().map(|_| &runner.id_maps[r]),
            first,
        }
    }

    /// The row op `k` of the transaction inserted, which got `physical`.
    fn inserted(&self, k: usize, physical: i64) -> i64 {
        match self.maps {
            Some(_) => i64::try_from(self.first + k).unwrap_or(i64::MAX),
            None => physical,
        }
    }

    /// The row `physical` names in table `t` of the replica's last view.
    fn row(&self, t: usize, physical: i64) -> i64 {
        match self.maps {
            Some(maps) => maps[t].get(&physical).copied().unwrap_or(physical),
            None => physical,
        }
    }

    /// An op's values with each reference naming its parent's row: an
    /// earlier insert of the transaction, or a row of the last view.
    fn values(
        &self,
        schema: &model::Schema,
        op: &PlannedOp,
        resolved: Vec<(usize, model::Value)>,
    ) -> Vec<(usize, model::Value)> {
        if self.maps.is_none() {
            return resolved;
        }
        resolved
            .into_iter()
            .zip(&op.values)
            .map(|((c, v), (_, cell))| {
                let Some(parent) = schema.tables[op.table].columns[c].references else {
                    return (c, v);
                };
                let named = match (cell, &v) {
                    (Cell::Ref(j), _) => model::Value::Int(self.inserted(*j, 0)),
                    (_, model::Value::Int(p)) => model::Value::Int(self.row(parent, *p)),
                    _ => v,
                };
                (c, named)
            })
            .collect()
    }
}
