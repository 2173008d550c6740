//! The remote, behind one narrow, batch-oriented trait.
//!
//! The trait is storage, not policy: the merge rules live in `apply.rs`
//! (push) and `pull.rs`, so every remote inherits them unchanged. It is
//! batch-oriented because round trips are the cost on a network: a push
//! reads what a chunk of outbox entries needs with a few set-based reads
//! (`staged.rs` prefetches them), applies the rules in memory, and stores
//! every changed row with one `write`; a pull page is one `changes` call.
//! `sqlite_remote.rs` and `pg_remote.rs` implement it.

use rusqlite::types::Value;

use crate::error::Result;
use crate::stamp::Stamp;

/// The remote's knowledge of one row id.
#[derive(Clone, Debug, PartialEq)]
pub enum RemoteRow {
    /// Declared-order values and the stamp that set each of them.
    Live { values: Vec<Value>, stamps: Vec<Stamp> },
    /// Deleted for good.
    Dead,
    /// Merged into the survivor by natural key.
    Alias(i64),
}

/// One row at a change seq: what a pull reads after its cursor, and what a
/// push stores.
#[derive(Clone, Debug, PartialEq)]
pub struct Change {
    pub table: usize,
    pub id: i64,
    pub seq: i64,
    pub row: RemoteRow,
}

/// Which changed rows a pull reads in one pass: tombstones and aliases first,
/// then live rows (see SEMANTICS.md, rule P2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChangeKind {
    Gone,
    Live,
}

/// Everything one chunk of a push stores, in one call: the rows it changed,
/// each under the change seq it was last given (a row changed twice is
/// stored once), the new head, and the replica's applied seq when the
/// chunk ends its batch.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RemoteWrites {
    /// At most one entry per `(table, id)`; seqs are distinct, above the head
    /// before the write and at most `head`.
    pub rows: Vec<Change>,
    /// The last change seq handed out once these rows are stored.
    pub head: i64,
    /// `(replica, seq)`: the highest outbox seq of `replica` now applied.
    pub acked: Option<(u32, i64)>,
}

/// What the engine needs from a remote. Tables are indexes into the schema
/// the remote was opened with. Every call except `register_replica` runs
/// inside a transaction begun with `begin_write` or `begin_read`.
///
/// Each call is meant to be a constant number of round trips, whatever the
/// number of ids or rows it is given.
pub trait Remote {
    /// Claims a fresh replica id, in its own transaction.
    fn register_replica(&mut self) -> Result<u32>;
    /// Starts a write transaction that holds the remote's write lock at once:
    /// no other writer runs until this one commits or rolls back, so change
    /// seqs commit in the order they are handed out (SEMANTICS.md, rule P6).
    fn begin_write(&mut self) -> Result<()>;
    /// Starts a read transaction over a consistent snapshot.
    fn begin_read(&mut self) -> Result<()>;
    fn commit(&mut self) -> Result<()>;
    fn rollback(&mut self);
    /// The highest outbox seq of `replica` already applied.
    fn acked(&mut self, replica: u32) -> Result<i64>;
    /// The last change seq handed out.
    fn head(&mut self) -> Result<i64>;
    /// The remote's knowledge of each of `ids` in `table`; ids it never saw
    /// are left out.
    fn rows(&mut self, table: usize, ids: &[i64]) -> Result<Vec<(i64, RemoteRow)>>;
    /// For each of `keys` that a live row of `table` holds as its natural
    /// key: the key and that row's id.
    fn live_with_keys(&mut self, table: usize, keys: &[Value]) -> Result<Vec<(Value, i64)>>;
    /// Live rows of `table` whose `column` is one of `parents`, as
    /// `(parent, child)` pairs ordered by parent, then child.
    fn live_children(&mut self, table: usize, column: usize, parents: &[i64]) -> Result<Vec<(i64, i64)>>;
    /// Stores `writes` in the open write transaction.
    fn write(&mut self, writes: &RemoteWrites) -> Result<()>;
    /// Up to `limit` rows of `kind` with `after < seq <= upto`, by seq.
    fn changes(&mut self, kind: ChangeKind, after: i64, upto: i64, limit: usize) -> Result<Vec<Change>>;
}

impl<R: Remote + ?Sized> Remote for Box<R> {
    fn register_replica(&mut self) -> Result<u32> {
        (**self).register_replica()
    }
    fn begin_write(&mut self) -> Result<()> {
        (**self).begin_write()
    }
    fn begin_read(&mut self) -> Result<()> {
        (**self).begin_read()
    }
    fn commit(&mut self) -> Result<()> {
        (**self).commit()
    }
    fn rollback(&mut self) {
        (**self).rollback()
    }
    fn acked(&mut self, replica: u32) -> Result<i64> {
        (**self).acked(replica)
    }
    fn head(&mut self) -> Result<i64> {
        (**self).head()
    }
    fn rows(&mut self, table: usize, ids: &[i64]) -> Result<Vec<(i64, RemoteRow)>> {
        (**self).rows(table, ids)
    }
    fn live_with_keys(&mut self, table: usize, keys: &[Value]) -> Result<Vec<(Value, i64)>> {
        (**self).live_with_keys(table, keys)
    }
    fn live_children(&mut self, table: usize, column: usize, parents: &[i64]) -> Result<Vec<(i64, i64)>> {
        (**self).live_children(table, column, parents)
    }
    fn write(&mut self, writes: &RemoteWrites) -> Result<()> {
        (**self).write(writes)
    }
    fn changes(&mut self, kind: ChangeKind, after: i64, upto: i64, limit: usize) -> Result<Vec<Change>> {
        (**self).changes(kind, after, upto, limit)
    }
}
