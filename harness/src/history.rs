//! What happened in a case, as the contract needs it: every committed
//! write with the values that identify it, and what each replica knew when
//! it wrote (happens-before from program order and push-then-pull edges).
//!
//! Knowledge is a vector clock: for each origin replica, how many of its
//! writes are known. A successful push that leaves nothing pending puts all
//! of the pusher's writes on the remote; a successful pull brings everything
//! the remote has. Edges are added only when certain, so a missing edge can
//! only weaken a check, never raise a false alarm.

use std::collections::{BTreeMap, BTreeSet};

use syncgate_model as model;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteKind {
    Insert,
    Update,
    Delete,
}

/// Per table, the natural keys of rows some write deleted.
pub type DeletedKeys = BTreeMap<usize, BTreeSet<model::Value>>;

/// The number of the write a value names by its tag (`alpha.w12` names
/// w12), if it carries one.
pub fn tag_of(value: &model::Value) -> Option<usize> {
    let model::Value::Text(text) = value else { return None };
    let (_, number) = text.rsplit_once(".w")?;
    number.parse().ok()
}

/// One committed write (one op of a write transaction).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WriteRecord {
    /// The write's number in the case (`w12`), also its value tag.
    pub n: usize,
    pub replica: usize,
    /// 1-based step of the case.
    pub step: usize,
    /// Index among this replica's writes.
    pub seq: usize,
    pub table: usize,
    pub id: i64,
    pub kind: WriteKind,
    /// Columns this write set, with their values (all for an insert).
    pub set: Vec<(usize, model::Value)>,
    /// The natural key of the row written (for an insert, its own; for an
    /// update or delete, the row's as the replica saw it).
    pub key: Option<model::Value>,
    /// Rows a delete took along (children, by cascade), as the replica held them.
    pub cascade: Vec<(usize, i64)>,
    /// Per origin replica, how many of its writes this replica knew.
    pub knew: Vec<usize>,
    /// Made outside the engine's API (straight into the cache file).
    pub outside: bool,
    /// The row as the replica's cache held it right after the write.
    pub image: Option<Vec<model::Value>>,
}

/// A push that put `count` writes of `replica` on the remote.
#[derive(Clone, Debug)]
struct Push {
    step: usize,
    replica: usize,
    count: usize,
}

/// A pull after which `replica` knew `knew`.
#[derive(Clone, Debug)]
struct Pull {
    step: usize,
    replica: usize,
    knew: Vec<usize>,
}

/// A write the application made and then rolled back with its whole
/// transaction (engines that declare `aborts`): never committed, so no node
/// of happens-before; its values' tags must never be seen anywhere.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AbortedWrite {
    /// The write's number (`w12`), which its values carry as their tag.
    pub n: usize,
    pub replica: usize,
    pub step: usize,
    pub table: usize,
}

#[derive(Clone, Debug)]
pub struct History {
    pub writes: Vec<WriteRecord>,
    /// Writes rolled back by the application, by number.
    pub aborted: BTreeMap<usize, AbortedWrite>,
    known: Vec<Vec<usize>>,
    remote: Vec<usize>,
    pushes: Vec<Push>,
    pulls: Vec<Pull>,
}

impl History {
    pub fn new(replicas: usize) -> History {
        History {
            writes: Vec::new(),
            aborted: BTreeMap::new(),
            known: vec![vec![0; replicas]; replicas],
            remote: vec![0; replicas],
            pushes: Vec::new(),
            pulls: Vec::new(),
        }
    }

    /// The number the next write gets (its value tag): committed and
    /// aborted writes share one numbering, so no two writes share a tag.
    /// How many replicas the case has.
    pub fn replicas(&self) -> usize {
        self.known.len()
    }

    pub fn next_write_number(&self) -> usize {
        self.writes.len() + self.aborted.len() + 1
    }

    /// Records a write of a transaction the application rolled back.
    pub fn record_aborted(&mut self, replica: usize, step: usize, table: usize) -> usize {
        let n = self.next_write_number();
        self.aborted.insert(
            n,
            AbortedWrite {
                n,
                replica,
                step,
                table,
            },
        );
        n
    }

    /// Records a committed write; fills in its number, sequence and knowledge.
    pub fn record(&mut self, mut write: WriteRecord) -> usize {
        let r = write.replica;
        write.n = self.next_write_number();
        write.seq = self.known[r][r];
        write.knew = self.known[r].clone();
        self.known[r][r] += 1;
        let n = write.n;
        self.writes.push(write);
        n
    }

    /// Committed write number `n`, if it is one.
    pub fn write(&self, n: usize) -> Option<&WriteRecord> {
        self.writes
            .binary_search_by_key(&n, |w| w.n)
            .ok()
            .map(|i| &self.writes[i])
    }

    /// The writes of `r` not yet known to be on the remote, oldest first.
    pub fn unpushed(&self, r: usize) -> Vec<WriteRecord> {
        self.writes
            .iter()
            .filter(|w| w.replica == r && w.seq >= self.remote[r])
            .cloned()
            .collect()
    }

    /// A push by `r` at `step` that left nothing pending: every write `r`
    /// made so far is on the remote.
    pub fn pushed_all(&mut self, step: usize, r: usize) {
        let count = self.known[r][r];
        if count > self.remote[r] {
            self.remote[r] = count;
            self.pushes.push(Push {
                step,
                replica: r,
                count,
            });
        }
    }

    /// What the remote is known to hold now: per origin replica, how many
    /// of its writes (for [`History::pulled_at_least`]).
    pub fn remote_known(&self) -> Vec<usize> {
        self.remote.clone()
    }

    /// A successful pull by `r` at `step`: it now knows what the remote has.
    pub fn pulled(&mut self, step: usize, r: usize) {
        let remote = self.remote.clone();
        self.pulled_at_least(step, r, &remote);
    }

    /// A successful pull by `r` at `step` that is certain to have seen only
    /// `remote` (what the remote held when the pull's sync began: another
    /// replica's push inside the sync may have come after its snapshot).
    pub fn pulled_at_least(&mut self, step: usize, r: usize, remote: &[usize]) {
        let mut changed = false;
        for (k, remote) in self.known[r].iter_mut().zip(remote) {
            if *remote > *k {
                *k = *remote;
                changed = true;
            }
        }
        if changed {
            self.pulls.push(Pull {
                step,
                replica: r,
                knew: self.known[r].clone(),
            });
        }
    }

    /// Whether write `b` causally follows write `a`.
    pub fn follows(&self, a: &WriteRecord, b: &WriteRecord) -> bool {
        if a.replica == b.replica {
            a.n < b.n
        } else {
            b.knew[a.replica] > a.seq
        }
    }

    /// Why `b` causally follows `a`, in words (Elle's style: the edge).
    pub fn explain(&self, a: &WriteRecord, b: &WriteRecord) -> String {
        if a.replica == b.replica {
            return format!("w{} comes after w{} on r{}", b.n, a.n, a.replica);
        }
        let push = self
            .pushes
            .iter()
            .find(|p| p.replica == a.replica && p.count > a.seq && p.step >= a.step);
        let pull = push.and_then(|p| {
            self.pulls
                .iter()
                .find(|q| q.replica == b.replica && q.step >= p.step && q.knew[a.replica] > a.seq)
        });
        match (push, pull) {
            (Some(p), Some(q)) => format!(
                "w{} on r{} causally follows w{} on r{} (r{} pushed at step {}, r{} pulled at step {})",
                b.n, b.replica, a.n, a.replica, a.replica, p.step, b.replica, q.step
            ),
            _ => format!("w{} on r{} causally follows w{} on r{}", b.n, b.replica, a.n, a.replica),
        }
    }

    /// Rows deleted by an app delete or its cascade, as the deleting replica
    /// saw them, and the natural keys of deleted rows per table.
    pub fn deleted(&self) -> (BTreeSet<(usize, i64)>, DeletedKeys) {
        let mut rows = BTreeSet::new();
        let mut keys: BTreeMap<usize, BTreeSet<model::Value>> = BTreeMap::new();
        for w in self.writes.iter().filter(|w| w.kind == WriteKind::Delete) {
            rows.insert((w.table, w.id));
            rows.extend(w.cascade.iter().copied());
            if let Some(k) = &w.key {
                if *k != model::Value::Null {
                    keys.entry(w.table).or_default().insert(k.clone());
                }
            }
        }
        (rows, keys)
    }

    /// Deletes made by `r`, with their cascades.
    pub fn deleted_by(&self, r: usize) -> BTreeSet<(usize, i64)> {
        let mut rows = BTreeSet::new();
        for w in self
            .writes
            .iter()
            .filter(|w| w.kind == WriteKind::Delete && w.replica == r)
        {
            rows.insert((w.table, w.id));
            rows.extend(w.cascade.iter().copied());
        }
        rows
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(replica: usize, step: usize, id: i64) -> WriteRecord {
        WriteRecord {
            n: 0,
            replica,
            step,
            seq: 0,
            table: 1,
            id,
            kind: WriteKind::Update,
            set: vec![(0, model::Value::Text(format!("v{step}")))],
            key: None,
            cascade: Vec::new(),
            knew: Vec::new(),
            outside: false,
            image: None,
        }
    }

    #[test]
    fn push_then_pull_orders_writes_across_replicas() {
        let mut h = History::new(2);
        h.record(write(0, 1, 5));
        h.record(write(1, 2, 5));
        h.pushed_all(3, 0);
        h.pulled(4, 1);
        h.record(write(1, 5, 5));
        let (w1, w2, w3) = (&h.writes[0], &h.writes[1], &h.writes[2]);
        assert!(!h.follows(w1, w2), "w2 was made before r1 pulled");
        assert!(!h.follows(w2, w1));
        assert!(h.follows(w1, w3));
        assert!(h.follows(w2, w3), "program order");
        assert_eq!(
            h.explain(w1, w3),
            "w3 on r1 causally follows w1 on r0 (r0 pushed at step 3, r1 pulled at step 4)"
        );
    }

    #[test]
    fn a_tag_names_its_write() {
        assert_eq!(tag_of(&model::Value::Text("alpha.w12".into())), Some(12));
        assert_eq!(tag_of(&model::Value::Text("ñandú-日本.w3".into())), Some(3));
        assert_eq!(tag_of(&model::Value::Text("shared".into())), None);
        assert_eq!(tag_of(&model::Value::Text("a.example".into())), None);
        assert_eq!(tag_of(&model::Value::Int(12)), None);
    }

    #[test]
    fn aborted_writes_take_numbers_no_committed_write_gets() {
        let mut h = History::new(1);
        h.record(write(0, 1, 5));
        assert_eq!(h.record_aborted(0, 2, 1), 2);
        assert_eq!(h.record(write(0, 3, 5)), 3);
        assert_eq!(h.next_write_number(), 4);
    }

    #[test]
    fn a_pull_before_the_push_brings_nothing() {
        let mut h = History::new(2);
        h.record(write(0, 1, 5));
        h.pulled(2, 1);
        h.pushed_all(3, 0);
        h.record(write(1, 4, 5));
        assert!(!h.follows(&h.writes[0], &h.writes[1]));
    }
}
