//! The remote: the one place where writes from every replica are ordered.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use crate::outbox::{Entry, EntryKind};
use crate::schema::{Schema, TableIdx};
use crate::{Events, RemoteLock, Stamp, Tables, Value};

/// The remote's knowledge of one row id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RemoteRow {
    /// Values and, per column, the stamp of the write that set it (rule M1).
    Live { values: Vec<Value>, stamps: Vec<Stamp> },
    /// A tombstone (rule D1): the row is deleted for good.
    Dead,
    /// The row was merged into another by natural key (rule N2); every later
    /// write to this id is a write to the survivor.
    Alias(i64),
}

#[derive(Clone, Debug)]
pub struct RemoteState {
    /// (table, id) → (row, seq of its last change).
    pub rows: BTreeMap<(TableIdx, i64), (RemoteRow, u64)>,
    /// The last change sequence number handed out.
    pub seq: u64,
    /// Per replica id: the highest outbox seq already applied (rule S4).
    pub acked: BTreeMap<u32, u64>,
    pub lock: Option<RemoteLock>,
}

impl RemoteState {
    pub fn new(_schema: &Schema) -> RemoteState {
        RemoteState {
            rows: BTreeMap::new(),
            seq: 0,
            acked: BTreeMap::new(),
            lock: None,
        }
    }

    /// Rows changed after `cursor`: tombstones and aliases first, then live
    /// rows, each group in seq order (rule P2).
    pub fn changed_after(&self, cursor: u64) -> Vec<(TableIdx, i64, RemoteRow)> {
        let mut changed: Vec<(u64, TableIdx, i64, &RemoteRow)> = self
            .rows
            .iter()
            .filter(|(_, (_, seq))| *seq > cursor)
            .map(|(&(t, id), (row, seq))| (*seq, t, id, row))
            .collect();
        changed.sort_by_key(|(seq, ..)| *seq);
        let (mut out, mut live): (Vec<_>, Vec<_>) = (Vec::new(), Vec::new());
        for (_, t, id, row) in changed {
            match row {
                RemoteRow::Live { .. } => live.push((t, id, row.clone())),
                _ => out.push((t, id, row.clone())),
            }
        }
        out.extend(live);
        out
    }

    pub fn visible(&self, schema: &Schema) -> Tables {
        let mut tables: Tables = vec![BTreeMap::new(); schema.tables.len()];
        for (&(t, id), (row, _)) in &self.rows {
            if let RemoteRow::Live { values, .. } = row {
                tables[t].insert(id, values.clone());
            }
        }
        tables
    }

    /// Gives row `id` the next change seq, keeping what it holds (rule M4).
    fn bump(&mut self, t: TableIdx, id: i64) {
        self.seq += 1;
        if let Some((_, seq)) = self.rows.get_mut(&(t, id)) {
            *seq = self.seq;
        }
    }

    /// Stores `row` as id `id`'s state under the next change seq.
    fn set(&mut self, t: TableIdx, id: i64, row: RemoteRow) {
        self.seq += 1;
        self.rows.insert((t, id), (row, self.seq));
    }

    fn row(&self, t: TableIdx, id: i64) -> Option<&RemoteRow> {
        self.rows.get(&(t, id)).map(|(row, _)| row)
    }

    /// The row an id stands for: its survivor if it was merged away (N2).
    fn standing_for(&self, t: TableIdx, id: i64) -> i64 {
        match self.row(t, id) {
            Some(RemoteRow::Alias(survivor)) => *survivor,
            _ => id,
        }
    }

    fn is_live(&self, t: TableIdx, id: i64) -> bool {
        matches!(self.row(t, id), Some(RemoteRow::Live { .. }))
    }

    /// Rules S4, M1–M4, N2, D1–D3: what one outbox entry pushed by `replica`
    /// does to the remote. `local_alias` is the row the pushing replica has
    /// already merged the entry's row into (N3). Returns 1 when the write does
    /// not take effect as it was written (S6), else 0.
    pub fn apply(
        &mut self,
        schema: &Schema,
        replica: u32,
        entry: &Entry,
        local_alias: Option<i64>,
        events: &mut Events,
    ) -> u64 {
        let applied_up_to = self.acked.get(&replica).copied().unwrap_or(0);
        if entry.seq <= applied_up_to {
            // S4: a push repeated after a crash; the first one counted.
            events.duplicate_pushes_skipped += 1;
            return 0;
        }
        // A reference to a row merged away means its survivor (N2).
        let written: Vec<Value> = schema.tables[entry.table]
            .columns
            .iter()
            .zip(&entry.values)
            .map(|(column, value)| match (column.references, value) {
                (Some(parent_table), Value::Int(parent)) => Value::Int(self.standing_for(parent_table, *parent)),
                _ => value.clone(),
            })
            .collect();
        let not_as_written = match entry.kind {
            EntryKind::Insert => self.apply_insert(schema, entry, &written, local_alias, events),
            EntryKind::Update => self.apply_update(entry, &written, events),
            EntryKind::Delete => {
                self.apply_delete(schema, entry, events);
                false
            }
        };
        u64::from(not_as_written)
    }

    /// An insert offers every column (M3). Returns whether it did not take
    /// effect as written.
    fn apply_insert(
        &mut self,
        schema: &Schema,
        entry: &Entry,
        written: &[Value],
        local_alias: Option<i64>,
        events: &mut Events,
    ) -> bool {
        let (t, id) = (entry.table, entry.id);
        let every_column: Vec<usize> = (0..written.len()).collect();
        if let Some(merged_into) = local_alias {
            // N3: the pusher already merged this row into another; the remote
            // merges it the same way, into whatever that row stands for now.
            let survivor = self.standing_for(t, merged_into);
            if self.parent_gone(schema, t, written) {
                // D2 before N2, as for an insert the pusher did not merge: an
                // insert under a row gone from the remote arrives dead and
                // merges into nothing. The survivor is sent again: the
                // pusher shows the insert's values on it.
                if self.row(t, id).is_none() {
                    self.set(t, id, RemoteRow::Dead);
                }
                if self.is_live(t, survivor) {
                    self.bump(t, survivor);
                }
                events.tombstone_absorbed += 1;
                return true;
            }
            if self.row(t, id).is_none() {
                self.set(t, id, RemoteRow::Alias(survivor));
            }
            events.natural_key_merges += 1;
            if self
                .offer(t, survivor, &every_column, written, entry.stamp, events)
                .is_some()
            {
                self.bump(t, survivor);
            } else {
                events.tombstone_absorbed += 1;
            }
            return true;
        }
        match self.row(t, id).cloned() {
            // D1: a deleted id stays deleted; the insert only touches it.
            Some(RemoteRow::Dead) => {
                self.bump(t, id);
                events.tombstone_absorbed += 1;
                true
            }
            // The same insert seen before (or a colliding one): columns by stamp.
            Some(RemoteRow::Live { .. }) => {
                let all_taken = self.offer(t, id, &every_column, written, entry.stamp, events) == Some(true);
                self.bump(t, id);
                !all_taken
            }
            // N2: the id was merged away earlier; the write goes to its survivor.
            Some(RemoteRow::Alias(survivor)) => {
                if self
                    .offer(t, survivor, &every_column, written, entry.stamp, events)
                    .is_some()
                {
                    self.bump(t, survivor);
                }
                true
            }
            None => self.insert_new(schema, entry, written, events),
        }
    }

    /// Whether a reference in `written` (a row of table `t`) names a row
    /// that is not live here.
    fn parent_gone(&self, schema: &Schema, t: TableIdx, written: &[Value]) -> bool {
        schema.tables[t].columns.iter().zip(written).any(|(column, value)| {
            matches!((column.references, value), (Some(pt), Value::Int(parent)) if !self.is_live(pt, *parent))
        })
    }

    /// An insert of an id the remote has never seen: it arrives dead under a
    /// dead parent (D2), merges into the live holder of its natural key (N2),
    /// or becomes a live row with the insert's stamp on every column (M3).
    fn insert_new(&mut self, schema: &Schema, entry: &Entry, written: &[Value], events: &mut Events) -> bool {
        let (t, id) = (entry.table, entry.id);
        let table = &schema.tables[t];
        if self.parent_gone(schema, t, written) {
            self.set(t, id, RemoteRow::Dead);
            events.tombstone_absorbed += 1;
            return true;
        }
        let key_holder = table.natural_key.and_then(|k| self.live_with_key(t, k, &written[k]));
        if let Some(survivor) = key_holder {
            self.set(t, id, RemoteRow::Alias(survivor));
            let every_column: Vec<usize> = (0..written.len()).collect();
            self.offer(t, survivor, &every_column, written, entry.stamp, events);
            self.bump(t, survivor);
            events.natural_key_merges += 1;
            return true;
        }
        let row = RemoteRow::Live {
            values: written.to_vec(),
            stamps: vec![entry.stamp; written.len()],
        };
        self.set(t, id, row);
        false
    }

    /// An update offers the columns it changed (M2) to the row its id stands
    /// for; a deleted row absorbs it (D3), an unknown one ignores it.
    fn apply_update(&mut self, entry: &Entry, written: &[Value], events: &mut Events) -> bool {
        let t = entry.table;
        let target = self.standing_for(t, entry.id);
        match self.row(t, target) {
            Some(RemoteRow::Live { .. }) => {
                let all_taken = self.offer(t, target, &entry.columns, written, entry.stamp, events) == Some(true);
                self.bump(t, target);
                events.conflicts_won_remotely += u64::from(!all_taken);
                !all_taken
            }
            Some(RemoteRow::Dead | RemoteRow::Alias(_)) => {
                self.bump(t, target);
                events.tombstone_absorbed += 1;
                true
            }
            None => {
                events.tombstone_absorbed += 1;
                true
            }
        }
    }

    /// A delete kills a live row and its live descendants (D2); a row already
    /// gone only gets a new seq; an unknown id is remembered as deleted.
    fn apply_delete(&mut self, schema: &Schema, entry: &Entry, events: &mut Events) {
        let t = entry.table;
        let target = self.standing_for(t, entry.id);
        match self.row(t, target) {
            Some(RemoteRow::Live { .. }) => self.kill(schema, t, target, events),
            Some(RemoteRow::Dead | RemoteRow::Alias(_)) => self.bump(t, target),
            None => self.set(t, target, RemoteRow::Dead),
        }
    }

    /// Rule D2: after `replica`'s delete entry `seq` applied, each of its
    /// victims still live here dies (following an alias), with the rows
    /// below it; one already dead or not here yet is left as it is.
    pub fn kill_victims(
        &mut self,
        schema: &Schema,
        replica: u32,
        seq: u64,
        victims: &[(TableIdx, i64)],
        events: &mut Events,
    ) {
        if seq <= self.acked.get(&replica).copied().unwrap_or(0) {
            return; // S4: applied with its delete by the push a crash cut short.
        }
        for &(t, id) in victims {
            let target = self.standing_for(t, id);
            if self.is_live(t, target) {
                events.victims_killed += 1;
                self.kill(schema, t, target, events);
            }
        }
    }

    /// Rule M1 for one write offered to live row `id`: column `c` of
    /// `offered` takes the written value when the write's stamp is later
    /// than the stamp of the value the column holds; an equal or later stamp
    /// keeps it. `None` when the row is not live, else whether every offered
    /// column took the write.
    fn offer(
        &mut self,
        t: TableIdx,
        id: i64,
        offered: &[usize],
        written: &[Value],
        stamp: Stamp,
        events: &mut Events,
    ) -> Option<bool> {
        let Some((RemoteRow::Live { values, stamps }, _)) = self.rows.get_mut(&(t, id)) else {
            return None;
        };
        let mut all_taken = true;
        for &c in offered {
            if stamps[c].hlc == stamp.hlc && stamps[c].replica != stamp.replica {
                // Two replicas stamped the same HLC: the replica id decides (O3).
                events.hlc_ties += 1;
            }
            match stamps[c].cmp(&stamp) {
                Ordering::Less => {
                    values[c] = written[c].clone();
                    stamps[c] = stamp;
                }
                Ordering::Equal | Ordering::Greater => all_taken = false,
            }
        }
        Some(all_taken)
    }

    fn live_with_key(&self, t: TableIdx, k: usize, key: &Value) -> Option<i64> {
        if *key == Value::Null {
            return None;
        }
        self.rows.iter().find_map(|(&(rt, id), (row, _))| match row {
            RemoteRow::Live { values, .. } if rt == t && values[k] == *key => Some(id),
            _ => None,
        })
    }

    /// Rule D2: row `id` dies, and so does every live row below it, parents
    /// before children (depth first, children in table and id order).
    fn kill(&mut self, schema: &Schema, t: TableIdx, id: i64, events: &mut Events) {
        let mut to_kill = vec![(t, id)];
        let mut first = true;
        while let Some((t, id)) = to_kill.pop() {
            if !first {
                if !self.is_live(t, id) {
                    continue;
                }
                events.cascade_deletes += 1;
            }
            first = false;
            self.set(t, id, RemoteRow::Dead);
            let mut below: Vec<(TableIdx, i64)> = Vec::new();
            for (ct, c) in schema.children_of(t) {
                below.extend(self.rows.iter().filter_map(|(&(rt, cid), (row, _))| match row {
                    RemoteRow::Live { values, .. } if rt == ct && values[c] == Value::Int(id) => Some((ct, cid)),
                    _ => None,
                }));
            }
            to_kill.extend(below.into_iter().rev());
        }
    }
}
