//! Operating errors: every one says what is wrong and what to do.

use std::path::PathBuf;

/// Everything the engine can fail with. Nothing here is a programmer error:
/// those are assertions.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error(
        "{what} is locked by another connection (SQLite busy, or a PostgreSQL lock timeout, \
         serialization failure or deadlock) after {attempts} attempts; nothing was marked synced \
         and nothing was lost: retry later"
    )]
    Busy { what: &'static str, attempts: u32 },

    #[error("write refused: {0}")]
    Write(#[from] WriteRefusal),

    #[error("remote database {path} does not exist; create it first with SqliteRemote::create")]
    RemoteMissing { path: PathBuf },

    #[error("cannot open {what} at {path}: {source}")]
    Open {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },

    #[error(
        "cache {path} is in format {found}, newer than this engine's format {supported}: \
         open it with the newer version of syncgate-engine that wrote it"
    )]
    CacheFormatTooNew { path: PathBuf, found: i64, supported: i64 },

    #[error("{place} is not a syncgate {what}: {detail}")]
    NotInitialized {
        place: String,
        what: &'static str,
        detail: String,
    },

    #[error(
        "schema mismatch in {place}, table {table:?}: {detail}; \
         the cache, the remote and the declared schema must have the same tables and columns"
    )]
    SchemaMismatch {
        place: &'static str,
        table: String,
        detail: String,
    },

    #[error("invalid schema: {0}")]
    InvalidSchema(String),

    #[error("{0:?} is not a plain identifier (letters, digits and '_', not starting with a digit or '_sg_')")]
    BadIdentifier(String),

    #[error("unknown table {0:?}: it is not in the declared schema")]
    UnknownTable(String),

    #[error("unknown column {column:?} in table {table:?}: it is not in the declared schema")]
    UnknownColumn { table: String, column: String },

    #[error("corrupt outbox entry seq={seq}: {detail}; the outbox was left untouched, repair or remove that entry")]
    CorruptOutbox { seq: i64, detail: String },

    #[error("corrupt remote row {table}/{id}: {detail}; nothing was applied locally")]
    CorruptRemote { table: String, id: i64, detail: String },

    #[error("{}", clock_drift_text(table, *id, *replica, *ahead_ms, *drift_ms_max, *own))]
    ClockDrift {
        table: String,
        id: i64,
        replica: u32,
        ahead_ms: i64,
        drift_ms_max: i64,
        /// The stamp is this replica's own: its clock went back since.
        own: bool,
    },

    #[error(
        "pull would leave {table}/{id}.{column} pointing at missing {parent_table}/{parent_id} \
         (rule D2: a dead parent takes its children along); nothing of the pull was applied. \
         This is a bug in syncgate-engine: please report it with the cache and remote files"
    )]
    PullBrokeReference {
        table: String,
        id: i64,
        column: String,
        parent_table: String,
        parent_id: i64,
    },

    #[error(
        "the remote's last change seq is {head}, behind this replica's cursor {cursor}: the remote was \
         replaced or restored from an older copy; nothing was applied. Restore the remote's latest copy"
    )]
    RemoteBehindCursor { cursor: i64, head: i64 },

    #[error(
        "{table}/{id} resolves through more than {hops_max} aliases; the cache's alias table is corrupt \
         (the rules keep alias chains short); nothing was applied"
    )]
    AliasChainTooLong { table: String, id: i64, hops_max: usize },

    #[error(
        "deleting {table}/{id} on the remote cascades more than {depth_max} levels deep; nothing was \
         applied: flatten the references or delete the deepest rows first"
    )]
    CascadeTooDeep { table: String, id: i64, depth_max: usize },

    #[error("the remote connection failed: {0}; nothing was marked synced: retry the sync")]
    RemoteUnavailable(String),

    #[error("replica id space exhausted: the remote has registered {0} replicas")]
    ReplicaIdsExhausted(u32),

    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),

    #[error(
        "cannot reach the PostgreSQL remote at {url}: {detail}; start the server, or fix the host and \
         port in the connection string (SYNCGATE_PG_URL for syncgate); nothing was marked synced"
    )]
    PgUnreachable { url: String, detail: String },

    #[error(
        "the PostgreSQL server at {url} refused the login: {detail}; fix the user, password or \
         database in the connection string, or the server's pg_hba.conf"
    )]
    PgLoginRefused { url: String, detail: String },

    #[error(
        "the PostgreSQL role may not {detail}; grant it USAGE and CREATE on the remote's schema and \
         SELECT, INSERT, UPDATE, DELETE on its tables; nothing was marked synced"
    )]
    PgPrivilege { detail: String },

    /// A lock timeout, serialization failure or deadlock: retried like busy.
    #[error("the PostgreSQL remote is busy: {detail}")]
    PgBusy { detail: String },

    /// Another error of the server or the driver, with the server's message
    /// and SQLSTATE when it sent one (the driver's own text is only "db
    /// error").
    #[cfg(feature = "postgres")]
    #[error("postgres: {}", postgres_detail(.0))]
    Postgres(#[from] postgres::Error),
}

#[cfg(feature = "postgres")]
fn postgres_detail(e: &postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{}: {} (SQLSTATE {})", db.severity(), db.message(), db.code().code()),
        None => e.to_string(),
    }
}

impl Error {
    /// Whether retrying the same operation later may succeed.
    pub fn is_busy(&self) -> bool {
        match self {
            Error::Busy { .. } | Error::PgBusy { .. } => true,
            Error::Sqlite(e) => is_busy(e),
            _ => false,
        }
    }
}

/// Whether a SQLite error is a lock conflict (SQLITE_BUSY or SQLITE_LOCKED).
pub(crate) fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
    )
}

/// Why an application write was refused. A refused transaction changes nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WriteRefusal {
    #[error(
        "id {id} in {table} is outside this replica's id space [{lo}, {hi}); \
         let the replica mint ids (insert without an id, or Replica::next_id)"
    )]
    IdOutsideReplica { table: String, id: i64, lo: i64, hi: i64 },

    #[error("id {id} already names a row in {table}; an insert never overwrites another row")]
    IdTaken { table: String, id: i64 },

    #[error("row {id} of {table} was deleted; a deleted row never comes back: insert with a new id")]
    IdDeleted { table: String, id: i64 },

    #[error("{table}.{column} = {value} is already taken by row {holder}; update that row instead")]
    NaturalKeyTaken {
        table: String,
        column: String,
        value: String,
        holder: i64,
    },

    #[error("{table}.{column} references {parent} which is not here")]
    ParentMissing { table: String, column: String, parent: i64 },

    #[error("no row {id} in {table}")]
    RowNotFound { table: String, id: i64 },

    #[error("{table}.{column} identifies the row and cannot be changed; delete the row and insert a new one")]
    KeyImmutable { table: String, column: String },

    #[error("{table}.{column} expects {expected}, got {got}")]
    WrongType {
        table: String,
        column: String,
        expected: &'static str,
        got: &'static str,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What a refused drift says, and whose clock to fix: the other replica's
/// or this machine's, or, for a stamp this replica made itself, this
/// machine's, whose clock went back since.
fn clock_drift_text(table: &str, id: i64, replica: u32, ahead_ms: i64, drift_ms_max: i64, own: bool) -> String {
    if own {
        format!(
            "refused a pulled stamp this replica (replica {replica}) made itself on {table}/{id}: it is {ahead_ms} ms \
             ahead of this replica's clock (max drift {drift_ms_max} ms), so this machine's clock went back since it \
             stamped it; nothing was applied: set this machine's clock right"
        )
    } else {
        format!(
            "refused a pulled stamp from replica {replica} on {table}/{id}: it is {ahead_ms} ms ahead of this \
             replica's clock (max drift {drift_ms_max} ms); nothing was applied: fix the clock of replica {replica} \
             or of this machine"
        )
    }
}
