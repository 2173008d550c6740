//! The remote, behind one narrow trait.
//!
//! The trait is storage, not policy: the merge rules live in `apply.rs`
//! (push) and `pull.rs`, so a PostgreSQL remote implements these few calls
//! and inherits every rule unchanged. `sqlite_remote.rs` is the SQLite-file
//! implementation.

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

/// One row changed after a pull cursor.
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

/// What the engine needs from a remote. Tables are indexes into the schema
/// the remote was opened with. Every call except `register_replica` runs
/// inside a transaction begun with `begin_write` or `begin_read`.
pub trait Remote {
    /// Claims a fresh replica id, in its own transaction.
    fn register_replica(&mut self) -> Result<u32>;
    /// Starts a write transaction that holds the remote's write lock at once.
    fn begin_write(&mut self) -> Result<()>;
    /// Starts a read transaction over a consistent snapshot.
    fn begin_read(&mut self) -> Result<()>;
    fn commit(&mut self) -> Result<()>;
    fn rollback(&mut self);
    /// The highest outbox seq of `replica` already applied.
    fn acked(&mut self, replica: u32) -> Result<i64>;
    fn set_acked(&mut self, replica: u32, seq: i64) -> Result<()>;
    fn row(&mut self, table: usize, id: i64) -> Result<Option<RemoteRow>>;
    /// Stores `row` under the next change seq.
    fn put(&mut self, table: usize, id: i64, row: &RemoteRow) -> Result<()>;
    /// Gives an existing row the next change seq without changing it.
    fn touch(&mut self, table: usize, id: i64) -> Result<()>;
    /// The live row whose natural key equals `key`.
    fn live_with_key(&mut self, table: usize, key: &Value) -> Result<Option<i64>>;
    /// Live rows of `table` whose `column` equals `parent`, by id.
    fn live_children(&mut self, table: usize, column: usize, parent: i64) -> Result<Vec<i64>>;
    /// The last change seq handed out.
    fn head(&mut self) -> Result<i64>;
    /// Up to `limit` rows of `kind` with `after < seq <= upto`, by seq.
    fn changes(&mut self, kind: ChangeKind, after: i64, upto: i64, limit: usize) -> Result<Vec<Change>>;
}
