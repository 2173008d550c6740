//! syncgate's reference sync engine: a local SQLite cache synced with a
//! remote: a SQLite file ([`SqliteRemote`]), a schema on a PostgreSQL server
//! ([`PgRemote`], default feature `postgres`), or any store behind [`Remote`].
//!
//! What it guarantees, and why, is specified in `model/SEMANTICS.md`; the
//! rule names used in comments here (C1, S4, N2, ...) refer to that file.
//!
//! ```no_run
//! use std::sync::Arc;
//! use syncgate_engine::{Config, Replica, Schema, SqliteRemote, SystemClock};
//! use rusqlite::types::Value;
//!
//! let schema = Schema::test_schema();
//! let remote = SqliteRemote::create("/shared/remote.db".as_ref(), &schema, 5_000)?;
//! let mut replica = Replica::open("cache.db".as_ref(), &schema, remote, Arc::new(SystemClock), Config::default())?;
//! let id = replica.insert("hosts", None, &[("hostname", Value::Text("a".into()))])?;
//! let report = replica.sync()?;
//! # Ok::<(), syncgate_engine::Error>(())
//! ```
//!
//! Modules, from the bottom up (each uses only modules above it in this
//! list; `tests/it/layout.rs` checks there is no import circle):
//! - leaves: `error`, `mutant`, `config`, `stamp`, `schema`, `report`;
//! - the cache's data, one module each: `meta` (`_sg_meta`), `tombstones`,
//!   `aliases`, `cache` (the synced tables), `outbox` (the only module that
//!   knows the outbox's format);
//! - `hlc` (the clock, kept in `_sg_meta` and moved by outbox seqs), `ids`
//!   (id spaces and minting), `capture` (the triggers) and `format`
//!   (creating, checking and upgrading a cache file);
//! - the remote: `remote` (the batch-oriented trait), `staged` (one push's
//!   remote rows in memory, read and written a chunk at a time), `apply` (the
//!   remote's side of the merge rules, against the staged rows),
//!   `sqlite_remote`, and `pg_session`, `pg_sql` and `pg_remote`;
//! - the operations: `writer`, `push`, `pull`;
//! - `replica`, the public API.

mod aliases;
mod apply;
mod cache;
mod capture;
mod config;
mod error;
mod format;
mod hlc;
mod ids;
mod meta;
mod mutant;
pub mod outbox;
#[cfg(feature = "postgres")]
mod pg_remote;
#[cfg(feature = "postgres")]
mod pg_session;
#[cfg(feature = "postgres")]
mod pg_sql;
mod pull;
mod push;
mod remote;
mod replica;
mod report;
mod schema;
mod sqlite_remote;
mod staged;
mod stamp;
mod tombstones;
mod victims;
mod writer;

pub use aliases::ALIAS_HOPS_MAX;
pub use cache::Row;
pub use config::{Config, CASCADE_DEPTH_MAX};
pub use error::{Error, Result, WriteRefusal};
pub use format::CACHE_FORMAT;
pub use ids::{id_space, ID_SPACE_BITS, REPLICAS_MAX};
#[cfg(feature = "mutants")]
pub use mutant::Mutant;
#[cfg(feature = "postgres")]
pub use pg_remote::PgRemote;
#[cfg(feature = "postgres")]
pub use pg_session::RoundTrips;
#[cfg(feature = "postgres")]
pub use postgres;
pub use remote::{Change, ChangeKind, Remote, RemoteRow, RemoteWrites};
pub use replica::Replica;
pub use report::{Status, SyncReport};
pub use rusqlite;
pub use schema::{ColumnDef, ColumnType, Schema, TableDef, COLUMNS_MAX};
pub use sqlite_remote::SqliteRemote;
pub use stamp::{hlc_of_ms, Clock, Stamp, SystemClock, HLC_LOGICAL_BITS};
pub use writer::Writer;
