//! Why the harness could not read, lock or write a place, sorted by who is
//! to blame: a case must never blame the engine for the harness's own
//! trouble, nor let the engine's trouble pass as the harness's.

use syncgate_engine::postgres;

/// A place the harness reads, locks or writes itself did not let it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PlaceError {
    /// Another connection holds a lock the harness's own connection needs.
    /// Between steps that is the engine's (the harness knows its own lock
    /// steps), so the engine is blamed: it left a transaction open.
    #[error("{0}")]
    Locked(String),
    /// The place does not hold what the protocol says it must: a synced
    /// table or column missing, a value of another type, a file that is not
    /// a database. The engine made it so, and is blamed.
    #[error("{0}")]
    Content(String),
    /// The harness itself could not do it: a folder, file or server
    /// connection it needs, a statement of its own. Never the engine's
    /// failure: the run stops with exit code 2.
    #[error("{0}")]
    Harness(String),
}

impl PlaceError {
    /// The same trouble, its message prefixed with what was being done.
    pub fn context(self, what: &str) -> PlaceError {
        let prefixed = |m: String| format!("{what}: {m}");
        match self {
            PlaceError::Locked(m) => PlaceError::Locked(prefixed(m)),
            PlaceError::Content(m) => PlaceError::Content(prefixed(m)),
            PlaceError::Harness(m) => PlaceError::Harness(prefixed(m)),
        }
    }

    /// Whether the harness, not the engine, is to blame.
    pub fn is_harness(&self) -> bool {
        matches!(self, PlaceError::Harness(_))
    }
}

impl From<rusqlite::Error> for PlaceError {
    /// Lock conflicts blame whoever holds the lock; a missing table or
    /// column, or a file that is not a database, blames whoever made the
    /// file; an open, I/O or permission failure is the harness's own.
    fn from(e: rusqlite::Error) -> PlaceError {
        use rusqlite::ErrorCode as Code;
        let text = e.to_string();
        match e.sqlite_error_code() {
            Some(Code::DatabaseBusy | Code::DatabaseLocked) => PlaceError::Locked(text),
            Some(
                Code::CannotOpen
                | Code::PermissionDenied
                | Code::ReadOnly
                | Code::DiskFull
                | Code::SystemIoFailure
                | Code::OutOfMemory
                | Code::NoLargeFileSupport
                | Code::FileLockingProtocolFailed
                | Code::OperationInterrupted
                | Code::ApiMisuse,
            ) => PlaceError::Harness(text),
            Some(_) => PlaceError::Content(text),
            None => match e {
                rusqlite::Error::FromSqlConversionFailure(..)
                | rusqlite::Error::IntegralValueOutOfRange(..)
                | rusqlite::Error::InvalidColumnType(..)
                | rusqlite::Error::InvalidColumnName(_) => PlaceError::Content(text),
                _ => PlaceError::Harness(text),
            },
        }
    }
}

impl From<postgres::Error> for PlaceError {
    /// The server's own words and SQLSTATE, never a bare "db error". A lock
    /// the harness waited on past its timeout blames its holder; a schema,
    /// table or column missing blames whoever made the remote; a lost or
    /// refused connection, or any other failure of the harness's own
    /// statements, is the harness's.
    fn from(e: postgres::Error) -> PlaceError {
        use postgres::error::SqlState;
        let text = pg_text(&e);
        match e.code() {
            Some(code) if *code == SqlState::LOCK_NOT_AVAILABLE => PlaceError::Locked(text),
            Some(code)
                if *code == SqlState::UNDEFINED_TABLE
                    || *code == SqlState::UNDEFINED_COLUMN
                    || *code == SqlState::INVALID_SCHEMA_NAME
                    || *code == SqlState::INVALID_TEXT_REPRESENTATION =>
            {
                PlaceError::Content(text)
            }
            _ => PlaceError::Harness(text),
        }
    }
}

/// A PostgreSQL error as the harness shows it: the server's severity,
/// message and SQLSTATE, or the client's own words when the server never
/// answered.
pub fn pg_text(e: &postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{}: {} (SQLSTATE {})", db.severity(), db.message(), db.code().code()),
        None => {
            let mut text = e.to_string();
            let mut source = std::error::Error::source(e);
            while let Some(cause) = source {
                let shown = cause.to_string();
                if !text.contains(&shown) {
                    text.push_str(&format!(": {shown}"));
                }
                source = cause.source();
            }
            text
        }
    }
}

/// An I/O failure of the harness's own (folders, files, its wire taps).
impl From<std::io::Error> for PlaceError {
    fn from(e: std::io::Error) -> PlaceError {
        PlaceError::Harness(e.to_string())
    }
}
