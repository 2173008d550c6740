//! syncgate's reference sync engine: a local SQLite cache synced with a
//! remote (a SQLite file today; any store behind [`Remote`]).
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

mod cache;
mod error;
mod mutant;
mod pull;
mod push;
mod remote;
mod replica;
mod schema;
mod stamp;

pub use error::{Error, Result, WriteRefusal};
#[cfg(feature = "mutants")]
pub use mutant::Mutant;
pub use remote::{Change, ChangeKind, Remote, RemoteRow, SqliteRemote};
pub use replica::{id_space, Config, Replica, Row, Status, SyncReport, Writer, ID_SPACE_BITS};
pub use rusqlite;
pub use schema::{ColumnDef, ColumnType, Schema, TableDef, COLUMNS_MAX};
pub use stamp::{hlc_of_ms, Clock, Stamp, SystemClock, HLC_LOGICAL_BITS};
