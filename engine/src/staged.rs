//! One push's remote rows, staged in memory: what a chunk of outbox entries
//! needs is read from the remote in a few set-based reads (`prefetch`), the
//! merge rules of `apply.rs` run against this overlay one entry at a time,
//! and every row they changed goes back in one `Remote::write` (`flush`).
//!
//! So a chunk costs a constant number of remote calls however many rows it
//! holds. Correctness never depends on the prefetch: a row, key or child
//! list the prefetch missed is read on demand, one call each.
//!
//! Architecture Invariant: between two flushes, the overlay's answer to
//! every read equals what the remote would answer had each `put` been
//! stored at once (the remote's stored state, changed by the rows in
//! `known`), and change seqs are handed out in call order, as a remote that
//! stored each `put` at once would.

use std::collections::{BTreeSet, HashMap};

use rusqlite::types::Value;

use crate::config::CASCADE_DEPTH_MAX;
use crate::error::Result;
use crate::outbox::{Entry, Op};
use crate::remote::{Change, Remote, RemoteRow, RemoteWrites};
use crate::schema::Schema;

/// Entries applied between two flushes: bounds the overlay's memory however
/// large one local transaction is.
pub(crate) const PUSH_CHUNK_ENTRIES: usize = 4_096;

/// A natural-key value that can be hashed (`Value` holds floats).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Key {
    Null,
    Integer(i64),
    Real(u64),
    Text(String),
    Blob(Vec<u8>),
}

impl Key {
    fn of(value: &Value) -> Key {
        match value {
            Value::Null => Key::Null,
            Value::Integer(i) => Key::Integer(*i),
            Value::Real(f) => Key::Real(f.to_bits()),
            Value::Text(s) => Key::Text(s.clone()),
            Value::Blob(b) => Key::Blob(b.clone()),
        }
    }
}

pub(crate) struct Staged<'r, R: Remote + ?Sized> {
    remote: &'r mut R,
    schema: &'r Schema,
    /// Every row read or changed since the last flush; `None`: the remote
    /// never saw that id.
    known: HashMap<(usize, i64), Option<RemoteRow>>,
    /// Rows changed since the last flush, with the seq each was last given.
    dirty: HashMap<(usize, i64), i64>,
    /// The remote's stored answers: the live holder of a natural key.
    stored_keys: HashMap<(usize, Key), Option<i64>>,
    /// The remote's stored answers: live children by (table, column, parent).
    stored_children: HashMap<(usize, usize, i64), Vec<i64>>,
    /// Rows changed to live since the last flush, by natural key and by
    /// parent: candidates, checked against `known` when read.
    dirty_keys: HashMap<(usize, Key), i64>,
    dirty_children: HashMap<(usize, usize, i64), BTreeSet<i64>>,
    /// The last change seq handed out.
    head: i64,
}

impl<'r, R: Remote + ?Sized> Staged<'r, R> {
    /// Stages rows over `remote`, whose write transaction is open.
    pub(crate) fn begin(remote: &'r mut R, schema: &'r Schema) -> Result<Staged<'r, R>> {
        let head = remote.head()?;
        Ok(Staged {
            remote,
            schema,
            known: HashMap::new(),
            dirty: HashMap::new(),
            stored_keys: HashMap::new(),
            stored_children: HashMap::new(),
            dirty_keys: HashMap::new(),
            dirty_children: HashMap::new(),
            head,
        })
    }

    /// The remote's knowledge of one row, as changed so far.
    pub(crate) fn row(&mut self, table: usize, id: i64) -> Result<Option<RemoteRow>> {
        if !self.known.contains_key(&(table, id)) {
            self.load(table, &[id])?;
        }
        Ok(self.known[&(table, id)].clone())
    }

    /// Stores `row` under the next change seq.
    pub(crate) fn put(&mut self, table: usize, id: i64, row: RemoteRow) {
        if let RemoteRow::Live { values, stamps } = &row {
            let def = self.schema.table(table);
            assert_eq!(
                (values.len(), stamps.len()),
                (def.columns.len(), def.columns.len()),
                "put {}/{id}: values and stamps must match the columns",
                def.name
            );
            if let Some(k) = def.natural_key {
                self.dirty_keys.insert((table, Key::of(&values[k])), id);
            }
            for (c, v) in values.iter().enumerate() {
                if let (Some(_), Value::Integer(parent)) = (def.parents[c], v) {
                    self.dirty_children.entry((table, c, *parent)).or_default().insert(id);
                }
            }
        }
        self.known.insert((table, id), Some(row));
        self.next_seq(table, id);
    }

    /// Gives a row the remote holds the next change seq without changing it.
    pub(crate) fn touch(&mut self, table: usize, id: i64) -> Result<()> {
        let held = self.row(table, id)?;
        assert!(
            held.is_some(),
            "touch {}/{id}: only a row the remote holds can be touched",
            self.schema.table(table).name
        );
        self.next_seq(table, id);
        Ok(())
    }

    fn next_seq(&mut self, table: usize, id: i64) {
        self.head += 1;
        self.dirty.insert((table, id), self.head);
    }

    /// The live row whose natural key equals `key` (none for NULL).
    pub(crate) fn live_with_key(&mut self, table: usize, key: &Value) -> Result<Option<i64>> {
        if *key == Value::Null || self.schema.table(table).natural_key.is_none() {
            return Ok(None);
        }
        let k = Key::of(key);
        if !self.stored_keys.contains_key(&(table, k.clone())) {
            self.load_keys(table, std::slice::from_ref(key))?;
        }
        let candidates = [
            self.stored_keys[&(table, k.clone())],
            self.dirty_keys.get(&(table, k)).copied(),
        ];
        for id in candidates.into_iter().flatten() {
            if self.is_live_here(table, id, |def, values| {
                def.natural_key.is_some_and(|n| values[n] == *key)
            }) {
                return Ok(Some(id));
            }
        }
        Ok(None)
    }

    /// Live rows of `table` whose `column` equals `parent`, by id.
    pub(crate) fn live_children(&mut self, table: usize, column: usize, parent: i64) -> Result<Vec<i64>> {
        if !self.stored_children.contains_key(&(table, column, parent)) {
            self.load_children(table, column, &[parent])?;
        }
        let mut ids: BTreeSet<i64> = BTreeSet::new();
        let stored = self.stored_children[&(table, column, parent)].iter();
        let changed = self.dirty_children.get(&(table, column, parent)).into_iter().flatten();
        for &id in stored.chain(changed) {
            if self.is_live_here(table, id, |_, values| values[column] == Value::Integer(parent)) {
                ids.insert(id);
            }
        }
        Ok(ids.into_iter().collect())
    }

    /// Whether `id` is live with values `matching`, as changed so far; a row
    /// not changed here is as the remote's stored answer said (live).
    fn is_live_here(&self, table: usize, id: i64, matching: impl Fn(&crate::schema::Table, &[Value]) -> bool) -> bool {
        match self.known.get(&(table, id)) {
            None => true,
            Some(Some(RemoteRow::Live { values, .. })) => matching(self.schema.table(table), values),
            Some(_) => false,
        }
    }

    /// Reads, in a few set-based calls, what applying `entries` will ask for:
    /// their rows, the rows their references and local aliases name, the
    /// survivors of aliases among those, natural-key holders, and the
    /// children a delete cascades to, level by level.
    pub(crate) fn prefetch(&mut self, entries: &[(Entry, Option<i64>)]) -> Result<()> {
        let tables = self.schema.tables().len();
        let mut ids: Vec<BTreeSet<i64>> = vec![BTreeSet::new(); tables];
        let mut keys: Vec<Vec<Value>> = vec![Vec::new(); tables];
        for (entry, local_alias) in entries {
            let def = self.schema.table(entry.table);
            ids[entry.table].insert(entry.id);
            ids[entry.table].extend(local_alias);
            for (c, v) in entry.values.iter().enumerate() {
                if let (Some(p), Value::Integer(parent)) = (def.parents[c], v) {
                    ids[p].insert(*parent);
                }
            }
            if let (Op::Insert, Some(k)) = (entry.op, def.natural_key) {
                if entry.values[k] != Value::Null {
                    keys[entry.table].push(entry.values[k].clone());
                }
            }
        }
        self.load_all(&ids)?;
        let mut survivors: Vec<BTreeSet<i64>> = vec![BTreeSet::new(); tables];
        for (t, keys) in keys.iter().enumerate() {
            let holders = self.load_keys(t, keys)?;
            survivors[t].extend(holders);
        }
        for (&(t, _), row) in &self.known {
            if let Some(RemoteRow::Alias(survivor)) = row {
                survivors[t].insert(*survivor);
            }
        }
        self.load_all(&survivors)?;
        let mut dying: Vec<BTreeSet<i64>> = vec![BTreeSet::new(); tables];
        for (entry, _) in entries.iter().filter(|(e, _)| e.op == Op::Delete) {
            let target = match &self.known[&(entry.table, entry.id)] {
                Some(RemoteRow::Alias(survivor)) => *survivor,
                _ => entry.id,
            };
            dying[entry.table].insert(target);
        }
        for _ in 0..=CASCADE_DEPTH_MAX {
            if dying.iter().all(BTreeSet::is_empty) {
                break;
            }
            let mut next: Vec<BTreeSet<i64>> = vec![BTreeSet::new(); tables];
            for (t, parents) in dying.iter().enumerate().filter(|(_, p)| !p.is_empty()) {
                let parents: Vec<i64> = parents.iter().copied().collect();
                for &(ct, c) in &self.schema.table(t).children {
                    next[ct].extend(self.load_children(ct, c, &parents)?);
                }
            }
            self.load_all(&next)?;
            dying = next;
        }
        Ok(())
    }

    fn load_all(&mut self, ids: &[BTreeSet<i64>]) -> Result<()> {
        for (t, ids) in ids.iter().enumerate() {
            let missing: Vec<i64> = ids
                .iter()
                .copied()
                .filter(|&id| !self.known.contains_key(&(t, id)))
                .collect();
            if !missing.is_empty() {
                self.load(t, &missing)?;
            }
        }
        Ok(())
    }

    fn load(&mut self, table: usize, ids: &[i64]) -> Result<()> {
        let found: HashMap<i64, RemoteRow> = self.remote.rows(table, ids)?.into_iter().collect();
        for &id in ids {
            self.known.insert((table, id), found.get(&id).cloned());
        }
        Ok(())
    }

    /// Asks the remote for the holders of `keys` not asked before; returns
    /// the holders found.
    fn load_keys(&mut self, table: usize, keys: &[Value]) -> Result<Vec<i64>> {
        let missing: Vec<Value> = keys
            .iter()
            .filter(|k| !self.stored_keys.contains_key(&(table, Key::of(k))))
            .cloned()
            .collect();
        if missing.is_empty() {
            return Ok(Vec::new());
        }
        let found = self.remote.live_with_keys(table, &missing)?;
        for k in &missing {
            self.stored_keys.insert((table, Key::of(k)), None);
        }
        let mut holders = Vec::with_capacity(found.len());
        for (k, id) in found {
            self.stored_keys.insert((table, Key::of(&k)), Some(id));
            holders.push(id);
        }
        Ok(holders)
    }

    /// Asks the remote for the live children of `parents` not asked before;
    /// returns the children found.
    fn load_children(&mut self, table: usize, column: usize, parents: &[i64]) -> Result<Vec<i64>> {
        let missing: Vec<i64> = parents
            .iter()
            .copied()
            .filter(|&p| !self.stored_children.contains_key(&(table, column, p)))
            .collect();
        if missing.is_empty() {
            return Ok(Vec::new());
        }
        let found = self.remote.live_children(table, column, &missing)?;
        for &p in &missing {
            self.stored_children.insert((table, column, p), Vec::new());
        }
        let mut children = Vec::with_capacity(found.len());
        for (p, child) in found {
            self.stored_children.entry((table, column, p)).or_default().push(child);
            children.push(child);
        }
        Ok(children)
    }

    /// Stores every row changed since the last flush, the head, and `acked`
    /// when given, in one `Remote::write`; then forgets what it read (the
    /// remote now answers the same).
    pub(crate) fn flush(&mut self, acked: Option<(u32, i64)>) -> Result<()> {
        // Everything known is forgotten below, so the rows move out.
        let mut rows: Vec<Change> = self
            .dirty
            .drain()
            .map(|((table, id), seq)| {
                let row = self
                    .known
                    .remove(&(table, id))
                    .flatten()
                    .expect("a changed row is known to the remote");
                Change { table, id, seq, row }
            })
            .collect();
        rows.sort_by_key(|c| c.seq);
        if rows.is_empty() && acked.is_none() {
            return Ok(());
        }
        self.remote.write(&RemoteWrites {
            rows,
            head: self.head,
            acked,
        })?;
        self.known.clear();
        self.stored_keys.clear();
        self.stored_children.clear();
        self.dirty_keys.clear();
        self.dirty_children.clear();
        Ok(())
    }
}
