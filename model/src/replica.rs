//! One replica: its cache's visible rows and the durable sync state beside them.

use std::collections::{BTreeMap, BTreeSet};

use crate::outbox::{Entry, EntryKind};
use crate::remote::{RemoteRow, RemoteState};
use crate::schema::{Schema, TableIdx};
use crate::{hlc_of_ms, id_space, Events, Stamp, Tables, Value, Write, WriteRefusal};

/// Bound on alias chains; the rules keep them at depth one (rule N2).
const ALIAS_HOPS_MAX: usize = 8;

#[derive(Clone, Debug)]
pub struct ReplicaState {
    pub replica_id: u32,
    pub tables: Tables,
    /// Rows deleted here or learned deleted (rule D1).
    pub tombstones: BTreeSet<(TableIdx, i64)>,
    /// Rows merged into a survivor by natural key (rule N2, N3).
    pub aliases: BTreeMap<(TableIdx, i64), i64>,
    /// Rows a pull removed because a pending local delete reached them →
    /// the outbox seq of that delete, whose push kills them (rule D2).
    pub victims: BTreeMap<(TableIdx, i64), u64>,
    pub outbox: Vec<Entry>,
    pub outbox_seq: u64,
    pub txn: u64,
    /// The hybrid logical clock (rule O1).
    pub hlc: i64,
    pub next_id: i64,
    /// The remote change sequence this replica has pulled up to (rule P1).
    pub cursor: u64,
    pub up: bool,
    pub cache_locked: bool,
}

impl ReplicaState {
    pub fn new(schema: &Schema, replica_id: u32) -> ReplicaState {
        ReplicaState {
            replica_id,
            tables: vec![BTreeMap::new(); schema.tables.len()],
            tombstones: BTreeSet::new(),
            aliases: BTreeMap::new(),
            victims: BTreeMap::new(),
            outbox: Vec::new(),
            outbox_seq: 0,
            txn: 0,
            hlc: 0,
            next_id: id_space(replica_id).0,
            cursor: 0,
            up: true,
            cache_locked: false,
        }
    }

    /// Rule C1–C3, O1, I1–I2: one local transaction. On refusal the caller
    /// discards this (scratch) state, so nothing of the transaction remains.
    pub(crate) fn transaction(
        &mut self,
        schema: &Schema,
        now_ms: i64,
        writes: &[Write],
    ) -> Result<Vec<i64>, WriteRefusal> {
        self.hlc = self.hlc.max(hlc_of_ms(now_ms));
        self.txn += 1;
        self.apply_writes(schema, writes)
    }

    /// The writes of one transaction, each checked and captured in order.
    pub(crate) fn apply_writes(&mut self, schema: &Schema, writes: &[Write]) -> Result<Vec<i64>, WriteRefusal> {
        let mut ids = Vec::new();
        for write in writes {
            match write {
                Write::Insert { table, id, values } => ids.push(self.insert(schema, *table, *id, values)?),
                Write::Update { table, id, set } => self.update(schema, *table, *id, set)?,
                Write::Delete { table, id } => {
                    if !self.tables[*table].contains_key(id) {
                        return Err(WriteRefusal::RowNotFound);
                    }
                    self.delete_cascade(schema, *table, *id, Mode::App);
                }
            }
        }
        Ok(ids)
    }

    fn insert(&mut self, schema: &Schema, t: TableIdx, id: Option<i64>, values: &[Value]) -> Result<i64, WriteRefusal> {
        let (lo, hi) = id_space(self.replica_id);
        let id = match id {
            Some(id) if id < lo || id >= hi => return Err(WriteRefusal::IdOutsideReplica),
            Some(id) => id,
            None => self.next_id,
        };
        if self.tables[t].contains_key(&id) {
            return Err(WriteRefusal::IdTaken);
        }
        // A row merged away by natural key is gone too: reusing its id would
        // send an insert that merges into the survivor and renames it (N4).
        if self.tombstones.contains(&(t, id)) || self.aliases.contains_key(&(t, id)) {
            return Err(WriteRefusal::IdDeleted);
        }
        let table = &schema.tables[t];
        if let Some(k) = table.natural_key {
            if values[k] != Value::Null && self.tables[t].values().any(|row| row[k] == values[k]) {
                return Err(WriteRefusal::NaturalKeyTaken);
            }
        }
        self.check_parents(schema, t, values, &(0..values.len()).collect::<Vec<_>>())?;
        self.tables[t].insert(id, values.to_vec());
        self.capture(t, id, EntryKind::Insert, (0..values.len()).collect(), values.to_vec());
        self.next_id = self.next_id.max(id + 1);
        Ok(id)
    }

    fn update(&mut self, schema: &Schema, t: TableIdx, id: i64, set: &[(usize, Value)]) -> Result<(), WriteRefusal> {
        let Some(old) = self.tables[t].get(&id).cloned() else {
            return Err(WriteRefusal::RowNotFound);
        };
        let mut new = old.clone();
        for (c, v) in set {
            new[*c] = v.clone();
        }
        let table = &schema.tables[t];
        if let Some(k) = table.natural_key {
            if new[k] != old[k] {
                return Err(WriteRefusal::KeyImmutable);
            }
        }
        let changed: Vec<usize> = (0..new.len()).filter(|&c| new[c] != old[c]).collect();
        self.check_parents(schema, t, &new, &changed)?;
        if changed.is_empty() {
            return Ok(());
        }
        self.tables[t].insert(id, new.clone());
        self.capture(t, id, EntryKind::Update, changed, new);
        Ok(())
    }

    fn check_parents(
        &self,
        schema: &Schema,
        t: TableIdx,
        values: &[Value],
        columns: &[usize],
    ) -> Result<(), WriteRefusal> {
        for &c in columns {
            if let (Some(pt), Value::Int(parent)) = (schema.tables[t].columns[c].references, &values[c]) {
                if !self.tables[pt].contains_key(parent) {
                    return Err(WriteRefusal::ParentMissing);
                }
            }
        }
        Ok(())
    }

    /// Rule C1, O1: every captured write takes the next stamp.
    fn capture(&mut self, t: TableIdx, id: i64, kind: EntryKind, columns: Vec<usize>, values: Vec<Value>) {
        self.hlc += 1;
        self.outbox_seq += 1;
        assert!(
            self.outbox.last().is_none_or(|e| e.seq < self.outbox_seq),
            "outbox seqs increase: {} after {:?}",
            self.outbox_seq,
            self.outbox.last().map(|e| e.seq)
        );
        self.outbox.push(Entry {
            seq: self.outbox_seq,
            txn: self.txn,
            table: t,
            id,
            kind,
            stamp: Stamp {
                hlc: self.hlc,
                replica: self.replica_id,
            },
            columns,
            values,
        });
    }

    /// Rule D2: delete a row and, recursively, its children. In app mode each
    /// deleted row is captured; in both modes each gets a tombstone.
    ///
    /// A pulled death cascades even when the row itself is not held here:
    /// children may point at it already, re-pointed by a natural-key merge
    /// earlier in the same pull (rule D2, "a pulled dead row cascades").
    fn delete_cascade(&mut self, schema: &Schema, t: TableIdx, id: i64, mode: Mode<'_>) {
        let held = self.tables[t].remove(&id).is_some();
        if !held && matches!(mode, Mode::App) {
            return;
        }
        self.tombstones.insert((t, id));
        if matches!(mode, Mode::App) {
            self.capture(t, id, EntryKind::Delete, Vec::new(), Vec::new());
        }
        for (ct, c) in schema.children_of(t) {
            let children: Vec<i64> = self.tables[ct]
                .iter()
                .filter(|(_, row)| row[c] == Value::Int(id))
                .map(|(cid, _)| *cid)
                .collect();
            for child in children {
                // D2 in a pull: a child the remote holds live under another
                // parent moved there (a natural-key merge took a twin's
                // reference); it follows the remote, and its row arrives
                // with the live rows (P2).
                let moved_to = match (mode, schema.tables[ct].columns[c].references) {
                    (Mode::Pull(remote), Some(pt)) => match remote.rows.get(&(ct, child)) {
                        Some((RemoteRow::Live { values, .. }, _)) if values[c] != Value::Int(id) => {
                            Some(match &values[c] {
                                Value::Int(p) => Value::Int(self.resolve(pt, *p)),
                                other => other.clone(),
                            })
                        }
                        _ => None,
                    },
                    _ => None,
                };
                match (moved_to, self.tables[ct].get_mut(&child)) {
                    (Some(parent), Some(row)) => row[c] = parent,
                    _ => self.delete_cascade(schema, ct, child, mode),
                }
            }
        }
    }

    /// The first row whose reference names a row this replica does not hold:
    /// `(table, id, column, parent id)`. Local writes and pulls keep this
    /// `None` (writes check parents, pulls cascade, merges re-point).
    pub fn dangling_reference(&self, schema: &Schema) -> Option<(TableIdx, i64, usize, i64)> {
        for (t, table) in schema.tables.iter().enumerate() {
            for (id, row) in &self.tables[t] {
                for (c, col) in table.columns.iter().enumerate() {
                    if let (Some(pt), Value::Int(parent)) = (col.references, &row[c]) {
                        if !self.tables[pt].contains_key(parent) {
                            return Some((t, *id, c, *parent));
                        }
                    }
                }
            }
        }
        None
    }

    /// Number of leading outbox entries that form the next push batch: whole
    /// transactions only (rule S2).
    pub fn next_batch(&self, batch_max: usize) -> usize {
        let mut end = 0;
        while end < self.outbox.len() {
            let txn = self.outbox[end].txn;
            let txn_len = self.outbox[end..].iter().take_while(|e| e.txn == txn).count();
            if end > 0 && end + txn_len > batch_max {
                break;
            }
            end += txn_len;
        }
        end
    }

    /// The survivor this entry's row was merged into locally, sent with an
    /// insert so the remote merges the same way (rule N3).
    pub fn local_alias_of(&self, entry: &Entry) -> Option<i64> {
        if entry.kind != EntryKind::Insert {
            return None;
        }
        self.aliases.get(&(entry.table, entry.id)).copied()
    }

    /// The row an id stands for locally, following merges (N3). The rules
    /// keep chains short; a longer one is a bug of this model.
    fn resolve(&self, t: TableIdx, id: i64) -> i64 {
        let mut at = id;
        for _ in 0..=ALIAS_HOPS_MAX {
            match self.aliases.get(&(t, at)) {
                Some(&next) => at = next,
                None => return at,
            }
        }
        panic!("{t}/{id} resolves through more than {ALIAS_HOPS_MAX} aliases: the rules never chain merges that far")
    }

    /// Rule N3: local row `from` merges into `to` — it becomes an alias of
    /// `to`, rows that referenced it now reference `to`, and it leaves the
    /// table without a tombstone.
    fn merge_away(&mut self, schema: &Schema, t: TableIdx, from: i64, to: i64) {
        self.aliases.insert((t, from), to);
        for (ct, c) in schema.children_of(t) {
            self.tables[ct]
                .values_mut()
                .filter(|row| row[c] == Value::Int(from))
                .for_each(|row| row[c] = Value::Int(to));
        }
        self.tables[t].remove(&from);
    }

    /// Rules P2–P4, O2, N3, D2 for the rows of one pull, in the order the
    /// remote hands them over (gone rows first). Nothing is captured (C2).
    /// Returns the pull's conflicts.
    pub(crate) fn apply_pulled(
        &mut self,
        schema: &Schema,
        remote: &RemoteState,
        changed: &[(TableIdx, i64, RemoteRow)],
        events: &mut Events,
    ) -> u64 {
        let mut conflicts = 0;
        for (t, id, row) in changed {
            let (t, id) = (*t, *id);
            match row {
                RemoteRow::Dead => {
                    let holds_children = schema
                        .children_of(t)
                        .into_iter()
                        .any(|(ct, c)| self.tables[ct].values().any(|row| row[c] == Value::Int(id)));
                    events.pulled_deaths_with_local_children += u64::from(holds_children);
                    self.delete_cascade(schema, t, id, Mode::Pull(remote));
                }
                RemoteRow::Alias(survivor) => {
                    self.aliases.insert((t, id), *survivor);
                    if self.tables[t].contains_key(&id) {
                        // Held here: it merges too, or dies if what it merged
                        // into was deleted here.
                        let now_standing_for = self.resolve(t, *survivor);
                        if self.tombstones.contains(&(t, now_standing_for)) {
                            let cause = self.delete_reaching(t, now_standing_for);
                            self.kill_as_victims(schema, remote, (t, id), cause);
                        } else {
                            self.merge_away(schema, t, id, now_standing_for);
                        }
                    }
                }
                RemoteRow::Live { values, stamps } => {
                    // O2: every received stamp moves the clock, applied or not.
                    self.hlc = stamps.iter().map(|s| s.hlc).fold(self.hlc, i64::max);
                    conflicts += u64::from(self.take_live(schema, remote, (t, id), values, stamps, events));
                }
            }
        }
        conflicts
    }

    /// One live remote row arriving (P3, P4, N3, D2). Returns whether it
    /// resolved a conflict: a local row merged into it, or a pending local
    /// column kept over it.
    fn take_live(
        &mut self,
        schema: &Schema,
        remote: &RemoteState,
        (t, id): (TableIdx, i64),
        values: &[Value],
        stamps: &[Stamp],
        events: &mut Events,
    ) -> bool {
        // P4: deleted here (directly, or what it stands for) wins.
        let at = self.resolve(t, id);
        if self.tombstones.contains(&(t, id)) || self.tombstones.contains(&(t, at)) {
            return false;
        }
        let table = &schema.tables[t];
        let arriving: Vec<Value> = values
            .iter()
            .zip(&table.columns)
            .map(|(value, column)| match (value, column.references) {
                (Value::Int(parent), Some(pt)) => Value::Int(self.resolve(pt, *parent)),
                _ => value.clone(),
            })
            .collect();
        // N3: a local row under another id with the same natural key is the
        // same row; it merges into the arriving one.
        let twin = table.natural_key.and_then(|k| {
            (arriving[k] != Value::Null)
                .then(|| {
                    self.tables[t]
                        .iter()
                        .find(|(local, row)| **local != at && row[k] == arriving[k])
                        .map(|(local, _)| *local)
                })
                .flatten()
        });
        if let Some(twin) = twin {
            self.merge_away(schema, t, twin, at);
            events.natural_key_merges += 1;
        }
        // P3: per column, the arriving value unless the latest pending local
        // write of that column carries a later stamp.
        let pending = self.latest_pending_writes(schema, t, at);
        let mut kept_local = false;
        let row: Vec<Value> = arriving
            .into_iter()
            .zip(stamps)
            .enumerate()
            .map(|(c, (value, stamp))| match pending.get(&c) {
                Some((local_stamp, local_value)) if local_stamp > stamp => {
                    kept_local = true;
                    local_value.clone()
                }
                _ => value,
            })
            .collect();
        // D2 on the row as it stands after P3 (a pending reference of a row
        // merged into it may win): a parent deleted here takes it along,
        // with whatever just merged into it and the rows below.
        let deleted_parents: Vec<(TableIdx, i64)> = table
            .columns
            .iter()
            .zip(&row)
            .filter_map(|(column, value)| match (column.references, value) {
                (Some(pt), Value::Int(parent)) if self.tombstones.contains(&(pt, *parent)) => Some((pt, *parent)),
                _ => None,
            })
            .collect();
        if !deleted_parents.is_empty() {
            let cause = deleted_parents
                .iter()
                .filter_map(|&(pt, p)| self.delete_reaching(pt, p))
                .min();
            self.kill_as_victims(schema, remote, (t, at), cause);
            return twin.is_some();
        }
        if kept_local {
            events.conflicts_won_locally += 1;
        }
        self.tables[t].insert(at, row);
        twin.is_some() || kept_local
    }

    /// The pending delete that reached tombstoned row `(t, id)` here: its own
    /// delete entry, or the one it is a victim of (rule D2).
    fn delete_reaching(&self, t: TableIdx, id: i64) -> Option<u64> {
        self.outbox
            .iter()
            .find(|e| e.kind == EntryKind::Delete && e.table == t && e.id == id)
            .map(|e| e.seq)
            .or_else(|| self.victims.get(&(t, id)).copied())
    }

    /// Rule D2 in a pull: row `(t, id)` dies here with the rows below it.
    /// When a pending delete reached it (`cause`), every row removed is that
    /// delete's victim, killed on the remote by the push that applies it.
    fn kill_as_victims(&mut self, schema: &Schema, remote: &RemoteState, (t, id): (TableIdx, i64), cause: Option<u64>) {
        let before = self.tombstones.clone();
        self.delete_cascade(schema, t, id, Mode::Pull(remote));
        if let Some(cause) = cause {
            for &row in self.tombstones.difference(&before) {
                self.victims.insert(row, cause);
            }
        }
    }

    /// The victims of the delete entry `seq` (rule D2), in table then id
    /// order.
    pub fn victims_of(&self, seq: u64) -> Vec<(TableIdx, i64)> {
        self.victims
            .iter()
            .filter(|(_, &cause)| cause == seq)
            .map(|(&row, _)| row)
            .collect()
    }

    /// Column → the stamp and value of the latest pending write to row `at`
    /// or to any row that now stands for it (P3); the first of equal stamps.
    fn latest_pending_writes(&self, schema: &Schema, t: TableIdx, at: i64) -> BTreeMap<usize, (Stamp, Value)> {
        let columns = &schema.tables[t].columns;
        let mut latest: BTreeMap<usize, (Stamp, Value)> = BTreeMap::new();
        let writes = self
            .outbox
            .iter()
            .filter(|e| e.table == t && e.kind != EntryKind::Delete && self.resolve(t, e.id) == at);
        for write in writes {
            for &c in &write.columns {
                let value = match (&write.values[c], columns[c].references) {
                    (Value::Int(parent), Some(pt)) => Value::Int(self.resolve(pt, *parent)),
                    (value, _) => value.clone(),
                };
                let later = latest.get(&c).is_none_or(|(stamp, _)| write.stamp > *stamp);
                if later {
                    latest.insert(c, (write.stamp, value));
                }
            }
        }
        latest
    }
}

#[derive(Clone, Copy)]
enum Mode<'r> {
    App,
    /// A pull, against the remote as it stands: a child the remote holds
    /// live elsewhere is re-pointed, not removed (D2).
    Pull(&'r RemoteState),
}
