//! One session with a PostgreSQL server, under `PgRemote`: connecting (an
//! unreachable server or a refused login is a typed error), statements
//! prepared once per session, round trips counted, the state of the open
//! transaction (a failed statement leaves it only to roll back), and a
//! session the server closed opened again at the next transaction.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
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
    round_trips: RoundTrips,
}

/// The round trips a session made to its server, shared with whoever keeps
/// a handle (the reference adapter reports them; the gate compares them with
/// what it counted on the wire). A round trip is a request the server
/// answered: a connection's startup, a simple query, or an extended-protocol
/// exchange up to its `Sync` (a statement's preparation, or its execution).
/// A request on a connection the server already closed never reached it and
/// is not counted.
#[derive(Clone, Debug, Default)]
pub struct RoundTrips(Arc<AtomicU64>);

impl RoundTrips {
    /// Round trips so far.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }

    fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::SeqCst);
    }

    /// Counts one round trip if the server answered `outcome` (a result, or
    /// an error the server sent).
    fn answered<T>(&self, outcome: &std::result::Result<T, postgres::Error>) -> bool {
        let answered = match outcome {
            Ok(_) => true,
            Err(e) => e.as_db_error().is_some(),
        };
        if answered {
            self.add(1);
        }
        answered
    }
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
        let round_trips = RoundTrips::default();
        round_trips.add(1);
        Ok(PgSession {
            client,
            config,
            place,
            lock_timeout_ms,
            statements: HashMap::new(),
            in_transaction: false,
            failed: false,
            round_trips,
        })
    }

    /// `postgresql://user@host:port/dbname`, never the password.
    pub(crate) fn place(&self) -> &str {
        &self.place
    }

    /// The session's round-trip counter.
    pub(crate) fn round_trips(&self) -> &RoundTrips {
        &self.round_trips
    }

    /// Another session to the same server (the planted bug's seq blocks),
    /// its startup counted as this session's.
    pub(crate) fn another(&self) -> Result<Client> {
        let client = open_client(&self.config, &self.place, self.lock_timeout_ms)?;
        self.round_trips.add(1);
        Ok(client)
    }

    /// Counts a request's round trip on another session of this one's
    /// ([`PgSession::another`]).
    pub(crate) fn count_answered<T>(&self, outcome: &std::result::Result<T, postgres::Error>) {
        self.round_trips.answered(outcome);
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
        let prepared = self.client.prepare(sql);
        self.round_trips.answered(&prepared);
        let stmt = prepared.map_err(|e| self.fail(e))?;
        self.statements.insert(sql.to_string(), stmt.clone());
        Ok(stmt)
    }

    pub(crate) fn query(&mut self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Vec<Row>> {
        let stmt = self.statement(sql)?;
        let rows = self.client.query(&stmt, params);
        self.round_trips.answered(&rows);
        rows.map_err(|e| self.fail(e))
    }

    pub(crate) fn execute(&mut self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<u64> {
        let stmt = self.statement(sql)?;
        let changed = self.client.execute(&stmt, params);
        self.round_trips.answered(&changed);
        changed.map_err(|e| self.fail(e))
    }

    /// Runs `text` (statements without application values) in one round
    /// trip and returns the first value of the last row it gives.
    pub(crate) fn simple_scalar(&mut self, text: &str) -> Result<Option<String>> {
        let messages = self.client.simple_query(text);
        self.round_trips.answered(&messages);
        let messages = messages.map_err(|e| self.fail(e))?;
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
        let done = self.client.batch_execute(text);
        self.round_trips.answered(&done);
        done.map_err(|e| self.fail(e))
    }

    /// Starts a transaction with `text` (its `BEGIN`, the locks it takes, a
    /// read) in one round trip, on a new session if the server closed this
    /// one; returns the first value of the last row it read.
    ///
    /// A session the server closed since its last request (a server restart,
    /// an idle timeout, a dropped connection, `pg_terminate_backend`) may
    /// show only when this request fails on it. Nothing of a transaction commits without its
    /// `COMMIT`, so the start is tried once more on a new session: a sync
    /// after a dropped connection then works instead of failing once.
    pub(crate) fn begin(&mut self, text: &str) -> Result<Option<String>> {
        if self.client.is_closed() {
            self.reconnect()?;
        }
        match self.start(text) {
            Err(e) if self.client.is_closed() || matches!(e, Error::RemoteUnavailable(_)) => {
                self.in_transaction = false;
                self.reconnect()?;
                self.start(text)
            }
            started => started,
        }
    }

    fn start(&mut self, text: &str) -> Result<Option<String>> {
        self.in_transaction = true;
        self.failed = false;
        self.simple_scalar(text)
    }

    /// A new session in place of the one the server closed. A server that
    /// answers the attempt with an error (starting up, a refused login)
    /// made a round trip too.
    fn reconnect(&mut self) -> Result<()> {
        let opened = open_client(&self.config, &self.place, self.lock_timeout_ms);
        if opened.is_ok() || matches!(opened, Err(Error::PgLoginRefused { .. } | Error::RemoteUnavailable(_))) {
            self.round_trips.add(1);
        }
        self.client = opened?;
        self.statements.clear();
        Ok(())
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
        let outcome = self.client.batch_execute("COMMIT");
        self.round_trips.answered(&outcome);
        self.in_transaction = false;
        outcome.map_err(|e| self.classify(e))
    }

    pub(crate) fn rollback(&mut self) {
        if self.in_transaction && !self.client.is_closed() {
            // A failed rollback leaves the transaction to the session's end.
            let outcome = self.client.batch_execute("ROLLBACK");
            self.round_trips.answered(&outcome);
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
        if *code == SqlState::ADMIN_SHUTDOWN
            || *code == SqlState::CRASH_SHUTDOWN
            || *code == SqlState::CANNOT_CONNECT_NOW
        {
            // The server ended the session (pg_terminate_backend, a restart).
            return Error::RemoteUnavailable(format!("{place} ended the session: {detail}"));
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
