//! The remote: the one place where writes from every replica are ordered.

use std::collections::BTreeMap;

use crate::replica::{Entry, EntryKind};
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

    fn bump(&mut self, t: TableIdx, id: i64) {
        self.seq += 1;
        if let Some((_, seq)) = self.rows.get_mut(&(t, id)) {
            *seq = self.seq;
        }
    }

    fn set(&mut self, t: TableIdx, id: i64, row: RemoteRow) {
        self.seq += 1;
        self.rows.insert((t, id), (row, self.seq));
    }

    fn resolve(&self, t: TableIdx, id: i64) -> i64 {
        match self.rows.get(&(t, id)) {
            Some((RemoteRow::Alias(survivor), _)) => *survivor,
            _ => id,
        }
    }

    fn is_live(&self, t: TableIdx, id: i64) -> bool {
        matches!(self.rows.get(&(t, id)), Some((RemoteRow::Live { .. }, _)))
    }

    /// Rule S4 and M1–M4, N2, D1–D3: applies one outbox entry pushed by
    /// `replica`. `local_alias` is the survivor the pushing replica already
    /// merged this row into (rule N3). Returns 1 when the write did not take
    /// effect as written (a conflict), else 0.
    pub fn apply(
        &mut self,
        schema: &Schema,
        replica: u32,
        entry: &Entry,
        local_alias: Option<i64>,
        events: &mut Events,
    ) -> u64 {
        if entry.seq <= self.acked.get(&replica).copied().unwrap_or(0) {
            events.duplicate_pushes_skipped += 1;
            return 0;
        }
        let t = entry.table;
        let table = &schema.tables[t];
        // References resolve through aliases, so children follow merged parents.
        let values: Vec<Value> = entry
            .values
            .iter()
            .zip(&table.columns)
            .map(|(v, col)| match (v, col.references) {
                (Value::Int(parent), Some(pt)) => Value::Int(self.resolve(pt, *parent)),
                _ => v.clone(),
            })
            .collect();
        let stamp = entry.stamp;
        match entry.kind {
            EntryKind::Insert => {
                if let Some(target) = local_alias {
                    let target = self.resolve(t, target);
                    if !self.rows.contains_key(&(t, entry.id)) {
                        self.set(t, entry.id, RemoteRow::Alias(target));
                    }
                    events.natural_key_merges += 1;
                    if self.is_live(t, target) {
                        self.merge_columns(t, target, &values, &all_columns(&values), stamp);
                        self.bump(t, target);
                    } else {
                        events.tombstone_absorbed += 1;
                    }
                    return 1;
                }
                match self.rows.get(&(t, entry.id)).map(|(row, _)| row.clone()) {
                    Some(RemoteRow::Dead) => {
                        self.bump(t, entry.id);
                        events.tombstone_absorbed += 1;
                        1
                    }
                    Some(RemoteRow::Live { .. }) => {
                        let lost = self.merge_columns(t, entry.id, &values, &all_columns(&values), stamp);
                        self.bump(t, entry.id);
                        u64::from(lost)
                    }
                    Some(RemoteRow::Alias(target)) => {
                        if self.is_live(t, target) {
                            self.merge_columns(t, target, &values, &all_columns(&values), stamp);
                            self.bump(t, target);
                        }
                        1
                    }
                    None => {
                        let orphan = table
                            .columns
                            .iter()
                            .zip(&values)
                            .any(|(col, v)| match (col.references, v) {
                                (Some(pt), Value::Int(parent)) => !self.is_live(pt, *parent),
                                _ => false,
                            });
                        if orphan {
                            self.set(t, entry.id, RemoteRow::Dead);
                            events.tombstone_absorbed += 1;
                            return 1;
                        }
                        if let Some(k) = table.natural_key {
                            if let Some(survivor) = self.live_with_key(t, k, &values[k]) {
                                self.set(t, entry.id, RemoteRow::Alias(survivor));
                                self.merge_columns(t, survivor, &values, &all_columns(&values), stamp);
                                self.bump(t, survivor);
                                events.natural_key_merges += 1;
                                return 1;
                            }
                        }
                        let stamps = vec![stamp; values.len()];
                        self.set(t, entry.id, RemoteRow::Live { values, stamps });
                        0
                    }
                }
            }
            EntryKind::Update => {
                let target = self.resolve(t, entry.id);
                match self.rows.get(&(t, target)).map(|(row, _)| row.clone()) {
                    Some(RemoteRow::Live { .. }) => {
                        let lost = self.merge_columns(t, target, &values, &entry.columns, stamp);
                        self.bump(t, target);
                        events.conflicts_won_remotely += u64::from(lost);
                        u64::from(lost)
                    }
                    Some(_) => {
                        self.bump(t, target);
                        events.tombstone_absorbed += 1;
                        1
                    }
                    None => {
                        events.tombstone_absorbed += 1;
                        1
                    }
                }
            }
            EntryKind::Delete => {
                let target = self.resolve(t, entry.id);
                match self.rows.get(&(t, target)) {
                    Some((RemoteRow::Live { .. }, _)) => self.kill(schema, t, target, events),
                    Some(_) => self.bump(t, target),
                    None => self.set(t, target, RemoteRow::Dead),
                }
                0
            }
        }
    }

    /// Column-level last-writer-wins (rule M1): each listed column takes the
    /// written value when `stamp` is later than the column's stamp. Returns
    /// whether any listed column kept a later value.
    fn merge_columns(&mut self, t: TableIdx, id: i64, values: &[Value], columns: &[usize], stamp: Stamp) -> bool {
        let mut lost = false;
        if let Some((RemoteRow::Live { values: have, stamps }, _)) = self.rows.get_mut(&(t, id)) {
            for &c in columns {
                if stamp > stamps[c] {
                    have[c] = values[c].clone();
                    stamps[c] = stamp;
                } else {
                    lost = true;
                }
            }
        }
        lost
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

    /// Rule D2: a tombstone for the row and, recursively, for every live child.
    fn kill(&mut self, schema: &Schema, t: TableIdx, id: i64, events: &mut Events) {
        self.set(t, id, RemoteRow::Dead);
        for (ct, c) in schema.children_of(t) {
            let children: Vec<i64> = self
                .rows
                .iter()
                .filter_map(|(&(rt, cid), (row, _))| match row {
                    RemoteRow::Live { values, .. } if rt == ct && values[c] == Value::Int(id) => Some(cid),
                    _ => None,
                })
                .collect();
            for child in children {
                if self.is_live(ct, child) {
                    events.cascade_deletes += 1;
                    self.kill(schema, ct, child, events);
                }
            }
        }
    }
}

fn all_columns(values: &[Value]) -> Vec<usize> {
    (0..values.len()).collect()
}
