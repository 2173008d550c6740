//! One session with a PostgreSQL server, under `PgRemote`: connecting (an
//! unreachable server or a refused login is a typed error), statements
//! prepared once per session, round trips counted, the state of the open
//! transaction (a failed statement leaves it only to roll back), and a
//! session the server closed opened again at the next transaction.

use std::collections::HashMap;
use std::time::Duration;

use postgres::error::SqlState;
use postgres::types::ToSql;
use postgres::{Client, NoTls, Row, SimpleQueryMessage, Statement};

use crate::error::{Error, Result};

/// How long connecting may take when the connection string sets no
/// `connect_timeout`.
const CONNECT_TIMEOUT_DEFAULT: Duration = Duration::from_secs(5);

pub(crate) struct PgSession {
    client: Client,
    config: postgres::Config,
    /// The server, user and database, without the password, for messages.
    place: String,
    lock_timeout_ms: u64,
    statements: HashMap<String, Statement>,
    in_transaction: bool,
    /// A statement of the open transaction failed: it may only roll back.
    failed: bool,
    round_trips: u64,
}

impl PgSession {
    /// Opens a session whose lock waits last at most `lock_timeout_ms`.
    pub(crate) fn connect(url: &str, lock_timeout_ms: u64) -> Result<PgSession> {
        let mut config: postgres::Config = url.parse().map_err(|e: postgres::Error| Error::PgUnreachable {
            url: "(unparsable connection string)".into(),
            detail: format!("{e}; expected e.g. postgresql://user@127.0.0.1:5432/dbname"),
        })?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT_DEFAULT);
        }
        let place = describe(&config);
        let client = open_client(&config, &place, lock_timeout_ms)?;
        Ok(PgSession {
            client,
            config,
            place,
            lock_timeout_ms,
            statements: HashMap::new(),
            in_transaction: false,
            failed: false,
            round_trips: 1,
        })
    }

    /// `postgresql://user@host:port/dbname`, never the password.
    pub(crate) fn place(&self) -> &str {
        &self.place
    }

    /// Round trips so far: every statement sent, prepared or executed.
    pub(crate) fn round_trips(&self) -> u64 {
        self.round_trips
    }

    /// Another session to the same server (the planted bug's seq blocks).
    pub(crate) fn another(&self) -> Result<Client> {
        open_client(&self.config, &self.place, self.lock_timeout_ms)
    }

    pub(crate) fn classify(&self, e: postgres::Error) -> Error {
        classify(e, &self.place)
    }

    fn fail(&mut self, e: postgres::Error) -> Error {
        if self.in_transaction {
            self.failed = true;
        }
        self.classify(e)
    }

    fn statement(&mut self, sql: &str) -> Result<Statement> {
        if let Some(stmt) = self.statements.get(sql) {
            return Ok(stmt.clone());
        }
        self.round_trips += 1;
        let stmt = self.client.prepare(sql).map_err(|e| self.fail(e))?;
        self.statements.insert(sql.to_string(), stmt.clone());
        Ok(stmt)
    }

    pub(crate) fn query(&mut self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Vec<Row>> {
        let stmt = self.statement(sql)?;
        self.round_trips += 1;
        self.client.query(&stmt, params).map_err(|e| self.fail(e))
    }

    pub(crate) fn execute(&mut self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<u64> {
        let stmt = self.statement(sql)?;
        self.round_trips += 1;
        self.client.execute(&stmt, params).map_err(|e| self.fail(e))
    }

    /// Runs `text` (statements without application values) in one round
    /// trip and returns the first value of the last row it gives.
    pub(crate) fn simple_scalar(&mut self, text: &str) -> Result<Option<String>> {
        self.round_trips += 1;
        let messages = self.client.simple_query(text).map_err(|e| self.fail(e))?;
        Ok(messages
            .into_iter()
            .filter_map(|m| match m {
                SimpleQueryMessage::Row(row) => row.get(0).map(str::to_string),
                _ => None,
            })
            .last())
    }

    /// Runs `text` (statements without values: DDL) in one round trip.
    pub(crate) fn batch(&mut self, text: &str) -> Result<()> {
        self.round_trips += 1;
        self.client.batch_execute(text).map_err(|e| self.fail(e))
    }

    /// Starts a transaction with `text` (its `BEGIN`, the locks it takes, a
    /// read) in one round trip, reconnecting first if the server closed the
    /// session; returns the first value of the last row it read.
    pub(crate) fn begin(&mut self, text: &str) -> Result<Option<String>> {
        if self.client.is_closed() {
            self.client = open_client(&self.config, &self.place, self.lock_timeout_ms)?;
            self.statements.clear();
            self.round_trips += 1;
        }
        self.in_transaction = true;
        self.failed = false;
        self.simple_scalar(text)
    }

    pub(crate) fn commit(&mut self) -> Result<()> {
        assert!(self.in_transaction, "commit without a transaction");
        if self.failed {
            // PostgreSQL would turn this COMMIT into a silent ROLLBACK.
            self.rollback();
            return Err(Error::RemoteUnavailable(
                "a statement of this transaction failed, so it was rolled back; retry the sync".into(),
            ));
        }
        self.round_trips += 1;
        let outcome = self.client.batch_execute("COMMIT").map_err(|e| self.classify(e));
        self.in_transaction = false;
        outcome
    }

    pub(crate) fn rollback(&mut self) {
        if self.in_transaction && !self.client.is_closed() {
            self.round_trips += 1;
            // A failed rollback leaves the transaction to the session's end.
            let _ = self.client.batch_execute("ROLLBACK");
        }
        self.in_transaction = false;
        self.failed = false;
    }
}

/// Opens a session with its lock timeout (0 is "do not wait": 1 ms) as a
/// startup option, which costs no round trip of its own.
fn open_client(config: &postgres::Config, place: &str, lock_timeout_ms: u64) -> Result<Client> {
    let mut config = config.clone();
    let options = format!(
        "{} -c lock_timeout={}",
        config.get_options().unwrap_or_default(),
        lock_timeout_ms.max(1)
    );
    config.options(options.trim_start());
    config.connect(NoTls).map_err(|e| classify_connect(e, place))
}

/// `user@host:port/dbname`, never the password.
fn describe(config: &postgres::Config) -> String {
    let host = match config.get_hosts().first() {
        Some(postgres::config::Host::Tcp(h)) => h.clone(),
        #[cfg(unix)]
        Some(postgres::config::Host::Unix(p)) => p.display().to_string(),
        None => "localhost".into(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    format!(
        "postgresql://{}@{host}:{port}/{}",
        config.get_user().unwrap_or("(default user)"),
        config.get_dbname().unwrap_or("(default database)")
    )
}

fn classify_connect(e: postgres::Error, place: &str) -> Error {
    match e.code() {
        Some(code)
            if *code == SqlState::INVALID_PASSWORD
                || *code == SqlState::INVALID_AUTHORIZATION_SPECIFICATION
                || *code == SqlState::INVALID_CATALOG_NAME =>
        {
            Error::PgLoginRefused {
                url: place.to_string(),
                detail: e
                    .as_db_error()
                    .map_or_else(|| e.to_string(), |d| d.message().to_string()),
            }
        }
        Some(_) => classify(e, place),
        None => Error::PgUnreachable {
            url: place.to_string(),
            detail: std::error::Error::source(&e).map_or_else(|| e.to_string(), |s| s.to_string()),
        },
    }
}

/// A server's error as the engine's: busy (retried), privileges, a missing
/// schema or table, a closed session, or the driver's error as it is.
fn classify(e: postgres::Error, place: &str) -> Error {
    if let Some(db) = e.as_db_error() {
        let code = db.code();
        let detail = db.message().to_string();
        if *code == SqlState::LOCK_NOT_AVAILABLE
            || *code == SqlState::T_R_SERIALIZATION_FAILURE
            || *code == SqlState::T_R_DEADLOCK_DETECTED
        {
            return Error::PgBusy { detail };
        }
        if *code == SqlState::INSUFFICIENT_PRIVILEGE {
            return Error::PgPrivilege { detail };
        }
        if *code == SqlState::UNDEFINED_TABLE || *code == SqlState::INVALID_SCHEMA_NAME {
            return Error::NotInitialized {
                place: place.to_string(),
                what: "remote",
                detail: format!("{detail}; create it with PgRemote::create"),
            };
        }
        return Error::Postgres(e);
    }
    if e.is_closed() {
        return Error::RemoteUnavailable(format!("the connection to {place} closed: {e}"));
    }
    Error::Postgres(e)
}
