//! The outbox's entries: one captured write each (rule C1). Both sides of a
//! push read them: the replica that captured the write, and the remote that
//! applies it.

use crate::schema::TableIdx;
use crate::{Stamp, Value};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum EntryKind {
    Insert,
    Update,
    Delete,
}

/// One captured write in the outbox (rule C1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// Outbox sequence: increases by one per captured write, never reused.
    pub seq: u64,
    /// The local transaction that made the write (rule S2).
    pub txn: u64,
    pub table: TableIdx,
    pub id: i64,
    pub kind: EntryKind,
    pub stamp: Stamp,
    /// Columns this write set: every column for an insert, the changed ones
    /// for an update, none for a delete.
    pub columns: Vec<usize>,
    /// The row's values after the write (empty for a delete).
    pub values: Vec<Value>,
}
