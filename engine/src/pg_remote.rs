//! The remote on a PostgreSQL server, in a schema (namespace) of its own.
//!
//! Commit order is change-seq order (SEMANTICS.md, rule P6): a write
//! transaction takes the remote's writer lock (a transaction-scoped
//! advisory lock keyed by the namespace, [`PgRemote::writer_lock_key`])
//! before it reads the head, so pushers run one at a time and each hands
//! out seqs above every committed one; readers never wait for it. A pull
//! reads in one `REPEATABLE READ` snapshot, which therefore holds every
//! change up to the head it reads and nothing above it: a cursor moved to
//! that head can never pass a change committed later. The head itself is
//! stored at commit, so a session holding `_sg_remote`'s row (`FOR SHARE`)
//! stops a push at its commit, as a SQLite reader does.

use std::collections::HashMap;
use std::time::Duration;

use postgres::error::SqlState;
use postgres::types::ToSql;
use postgres::{Client, NoTls, Row, SimpleQueryMessage, Statement};
use rusqlite::types::Value;

use crate::error::{Error, Result};
use crate::ids::REPLICAS_MAX;
use crate::mutant::Mutant;
use crate::pg_sql::{column_array, read_value, read_values, PgSql, STATE_ALIAS, STATE_DEAD, STATE_LIVE};
use crate::remote::{Change, ChangeKind, Remote, RemoteRow, RemoteWrites};
use crate::schema::{check_identifier, quote, Schema};
use crate::stamp::Stamp;

/// How long connecting may take when the connection string sets no
/// `connect_timeout`.
const CONNECT_TIMEOUT_DEFAULT: Duration = Duration::from_secs(5);

/// A remote kept in a PostgreSQL database, in the schema `namespace`.
pub struct PgRemote {
    client: Client,
    config: postgres::Config,
    /// The server, user and database, without the password, for messages.
    place: String,
    namespace: String,
    schema: Schema,
    sql: PgSql,
    lock_timeout_ms: u64,
    statements: HashMap<String, Statement>,
    in_transaction: bool,
    /// A statement of the open transaction failed: it may only roll back.
    failed: bool,
    /// The head read when the open transaction began, moved by `write`.
    head: Option<i64>,
    /// `write` moved the head: `commit` stores it.
    head_moved: bool,
    verified: bool,
    serialize_writers: bool,
    round_trips: u64,
    #[cfg(feature = "mutants")]
    mutant: Option<Mutant>,
}

impl PgRemote {
    /// Creates (or adopts) the remote's namespace, its sync tables and the
    /// synced tables, in one transaction.
    pub fn create(url: &str, namespace: &str, schema: &Schema, lock_timeout_ms: u64) -> Result<PgRemote> {
        let mut remote = PgRemote::connect(url, namespace, schema, lock_timeout_ms)?;
        let ddl = format!("BEGIN; {} COMMIT;", remote.sql.ddl);
        remote.round_trips += 1;
        if let Err(e) = remote.client.batch_execute(&ddl) {
            let e = remote.classify(e);
            remote.rollback();
            return Err(e);
        }
        remote.verify()?;
        Ok(remote)
    }

    /// Opens an existing remote; a missing namespace or tables that disagree
    /// with `schema` are an error, never a silent re-creation. A remote
    /// locked by another session is checked at its first transaction.
    pub fn open(url: &str, namespace: &str, schema: &Schema, lock_timeout_ms: u64) -> Result<PgRemote> {
        let mut remote = PgRemote::connect(url, namespace, schema, lock_timeout_ms)?;
        match remote.verify() {
            Err(e) if e.is_busy() => Ok(remote),
            Err(e) => Err(e),
            Ok(()) => Ok(remote),
        }
    }

    fn connect(url: &str, namespace: &str, schema: &Schema, lock_timeout_ms: u64) -> Result<PgRemote> {
        check_identifier(namespace)?;
        let mut config: postgres::Config = url.parse().map_err(|e: postgres::Error| Error::PgUnreachable {
            url: "(unparsable connection string)".into(),
            detail: format!("{e}; expected e.g. postgresql://user@127.0.0.1:5432/dbname"),
        })?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT_DEFAULT);
        }
        let place = describe(&config);
        let client = open_client(&config, &place, lock_timeout_ms)?;
        Ok(PgRemote {
            client,
            config,
            place,
            namespace: namespace.to_string(),
            schema: schema.clone(),
            sql: PgSql::new(namespace, schema),
            lock_timeout_ms,
            statements: HashMap::new(),
            in_transaction: false,
            failed: false,
            head: None,
            head_moved: false,
            verified: false,
            serialize_writers: true,
            round_trips: 1,
            #[cfg(feature = "mutants")]
            mutant: None,
        })
    }

    /// The key of the transaction-scoped advisory lock every write
    /// transaction on the remote in `namespace` holds (FNV-1a of the name):
    /// whoever holds it, in a transaction or a session, keeps pushers out.
    pub fn writer_lock_key(namespace: &str) -> i64 {
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for byte in "syncgate-writer:".bytes().chain(namespace.bytes()) {
            hash = (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
        }
        hash as i64
    }

    /// The schema (namespace) the remote lives in.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// Round trips to the server so far: every statement sent, prepared or
    /// executed.
    pub fn round_trips(&self) -> u64 {
        self.round_trips
    }

    /// Drops the remote's namespace and everything in it.
    pub fn drop_namespace(url: &str, namespace: &str) -> Result<()> {
        check_identifier(namespace)?;
        let config: postgres::Config = url.parse()?;
        let place = describe(&config);
        let mut client = open_client(&config, &place, 0)?;
        client.batch_execute(&format!("DROP SCHEMA IF EXISTS {} CASCADE", quote(namespace)))?;
        Ok(())
    }

    /// Plants `mutant` in this remote handle (the harness's mutant catalog).
    #[cfg(feature = "mutants")]
    pub fn plant(&mut self, mutant: Mutant) {
        self.mutant = Some(mutant);
    }

    /// Planted bug for the cursor-safety test alone: write transactions no
    /// longer lock out each other and take their seqs as a database
    /// sequence would hand them out (visible to everyone at once, committed
    /// later), so change seqs commit out of order and a puller can move its
    /// cursor past a change not yet committed.
    #[cfg(feature = "mutants")]
    pub fn unserialize_writers(&mut self) {
        self.serialize_writers = false;
    }

    /// The planted bug's seqs: a block taken in a transaction of its own,
    /// as `nextval` would.
    fn reserve_seqs(&mut self) -> Result<()> {
        const BLOCK: i64 = 1 << 20;
        let mut other = open_client(&self.config, &self.place, self.lock_timeout_ms)?;
        let sql = format!(
            "UPDATE {}.\"_sg_remote\" SET seq = seq + $1 RETURNING seq - $1",
            quote(&self.namespace)
        );
        let start: i64 = other
            .query_one(&sql, &[&BLOCK])
            .map_err(|e| self.classify(e))?
            .try_get(0)?;
        self.head = Some(start);
        Ok(())
    }

    fn planted(&self, mutant: Mutant) -> bool {
        #[cfg(feature = "mutants")]
        {
            self.mutant == Some(mutant)
        }
        #[cfg(not(feature = "mutants"))]
        {
            let _ = mutant;
            false
        }
    }

    /// Reconnects a connection the server closed (a restart, a network cut).
    fn reconnect_if_closed(&mut self) -> Result<()> {
        if self.client.is_closed() {
            self.client = open_client(&self.config, &self.place, self.lock_timeout_ms)?;
            self.statements.clear();
            self.in_transaction = false;
            self.round_trips += 1;
        }
        Ok(())
    }

    fn statement(&mut self, sql: &str) -> Result<Statement> {
        if let Some(stmt) = self.statements.get(sql) {
            return Ok(stmt.clone());
        }
        self.round_trips += 1;
        let stmt = self.client.prepare(sql).map_err(|e| self.classify(e))?;
        self.statements.insert(sql.to_string(), stmt.clone());
        Ok(stmt)
    }

    fn query(&mut self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Vec<Row>> {
        let stmt = self.statement(sql)?;
        self.round_trips += 1;
        self.client.query(&stmt, params).map_err(|e| self.fail(e))
    }

    fn execute(&mut self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<u64> {
        let stmt = self.statement(sql)?;
        self.round_trips += 1;
        self.client.execute(&stmt, params).map_err(|e| self.fail(e))
    }

    /// Runs `text` (statements without application values) in one round
    /// trip and returns the first value of the last row it gives.
    fn simple_scalar(&mut self, text: &str) -> Result<Option<String>> {
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

    /// The statement that takes the writer lock in a transaction (the key is
    /// a number derived from the validated namespace, not an application
    /// value), or nothing when the lock is planted away.
    fn writer_lock(&self) -> String {
        if self.serialize_writers {
            format!(
                "; SELECT pg_advisory_xact_lock({})",
                PgRemote::writer_lock_key(&self.namespace)
            )
        } else {
            String::new()
        }
    }

    fn fail(&mut self, e: postgres::Error) -> Error {
        if self.in_transaction {
            self.failed = true;
        }
        self.classify(e)
    }

    fn classify(&self, e: postgres::Error) -> Error {
        classify(e, &self.place)
    }

    /// Starts a transaction with `begin` and reads the head in it.
    fn begin(&mut self, begin: &str) -> Result<()> {
        self.reconnect_if_closed()?;
        self.in_transaction = true;
        self.failed = false;
        self.head_moved = false;
        let text = format!("{begin}; {}", self.sql.head);
        let head = self.simple_scalar(&text)?;
        let head = head
            .and_then(|h| h.parse::<i64>().ok())
            .ok_or_else(|| Error::NotInitialized {
                place: self.place.clone(),
                what: "remote",
                detail: format!("{}._sg_remote has no head row", self.namespace),
            })?;
        self.head = Some(head);
        if !self.verified {
            self.verify()?;
        }
        Ok(())
    }

    /// Checks that the namespace holds the sync tables and the declared
    /// tables with exactly the declared columns.
    fn verify(&mut self) -> Result<()> {
        let ns = self.namespace.clone();
        let sync_tables = self.sql.sync_tables.clone();
        let found: i64 = self.query(&sync_tables, &[&ns])?[0].try_get(0)?;
        if found != 3 {
            return Err(Error::NotInitialized {
                place: format!("{} schema {ns}", self.place),
                what: "remote",
                detail: "its sync tables are missing; create it with PgRemote::create".into(),
            });
        }
        let columns_sql = self.sql.columns.clone();
        for t in 0..self.schema.tables().len() {
            let def = self.schema.table(t).clone();
            let found: Vec<(String, String)> = self
                .query(&columns_sql, &[&ns, &def.name])?
                .iter()
                .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
                .collect::<Result<_>>()?;
            if found.is_empty() {
                return Err(Error::SchemaMismatch {
                    place: "remote",
                    table: def.name.clone(),
                    detail: format!("the table does not exist in schema {ns} (or this role may not see it)"),
                });
            }
            let mut expected = vec![("id".to_string(), "bigint".to_string())];
            expected.extend(
                def.columns
                    .iter()
                    .map(|c| (c.name.clone(), crate::pg_sql::pg_type(c.kind).to_string())),
            );
            if found != expected {
                return Err(Error::SchemaMismatch {
                    place: "remote",
                    table: def.name.clone(),
                    detail: format!("expected columns {expected:?}, found {found:?}"),
                });
            }
        }
        self.verified = true;
        Ok(())
    }

    fn head_in_transaction(&self) -> i64 {
        self.head.expect("the head is read when a transaction begins")
    }

    fn decode(
        &self,
        table: usize,
        id: i64,
        state: i16,
        alias_of: Option<i64>,
        stamps: Option<&[u8]>,
    ) -> Result<RemoteRow> {
        let corrupt = |detail: String| Error::CorruptRemote {
            table: self.schema.table(table).name.clone(),
            id,
            detail,
        };
        match state {
            STATE_DEAD => Ok(RemoteRow::Dead),
            STATE_ALIAS => alias_of
                .map(RemoteRow::Alias)
                .ok_or_else(|| corrupt("alias without a survivor".into())),
            STATE_LIVE => {
                let n = self.schema.table(table).columns.len();
                let stamps = Stamp::decode_all(stamps.unwrap_or_default(), n)
                    .ok_or_else(|| corrupt("stamps do not match the columns".into()))?;
                Ok(RemoteRow::Live {
                    values: Vec::new(),
                    stamps,
                })
            }
            other => Err(corrupt(format!("unknown state {other}"))),
        }
    }
}

/// Opens a session and sets its lock timeout (0 is "do not wait": 1 ms).
fn open_client(config: &postgres::Config, place: &str, lock_timeout_ms: u64) -> Result<Client> {
    // A startup option: no round trip of its own.
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

impl Remote for PgRemote {
    fn register_replica(&mut self) -> Result<u32> {
        // A write like any other: under the writer lock.
        if let Err(e) = self.begin(&format!("BEGIN ISOLATION LEVEL READ COMMITTED{}", self.writer_lock())) {
            self.rollback();
            return Err(e);
        }
        let register = self.sql.register.clone();
        let max = i64::from(REPLICAS_MAX);
        let registered = self.query(&register, &[&max]).and_then(|rows| match rows.first() {
            Some(row) => Ok(u32::try_from(row.try_get::<_, i64>(0)?).expect("replica ids stay below REPLICAS_MAX")),
            None => Err(Error::ReplicaIdsExhausted(REPLICAS_MAX)),
        });
        match registered {
            Ok(id) => self.commit().map(|()| id),
            Err(e) => {
                self.rollback();
                Err(e)
            }
        }
    }

    fn begin_write(&mut self) -> Result<()> {
        let mut outcome = self.begin(&format!("BEGIN ISOLATION LEVEL READ COMMITTED{}", self.writer_lock()));
        if !self.serialize_writers && outcome.is_ok() {
            outcome = self.reserve_seqs();
        }
        if outcome.is_err() {
            self.rollback();
        }
        outcome
    }

    fn begin_read(&mut self) -> Result<()> {
        let outcome = self.begin("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY");
        // Mutant busy-read-leaks-txn: the failed read's BEGIN stays open.
        if outcome.is_err() && !self.planted(Mutant::BusyReadLeaksTxn) {
            self.rollback();
        }
        outcome
    }

    fn commit(&mut self) -> Result<()> {
        assert!(self.in_transaction, "commit without a transaction");
        if self.failed {
            // PostgreSQL would turn this COMMIT into a silent ROLLBACK.
            self.rollback();
            return Err(Error::RemoteUnavailable(
                "a statement of this transaction failed, so it was rolled back; retry the sync".into(),
            ));
        }
        if self.head_moved {
            let head = self.head_in_transaction();
            let sql = self.sql.set_head.clone();
            if let Err(e) = self.execute(&sql, &[&head]) {
                self.rollback();
                return Err(e);
            }
        }
        self.round_trips += 1;
        let outcome = self.client.batch_execute("COMMIT").map_err(|e| self.classify(e));
        self.in_transaction = false;
        self.head = None;
        self.head_moved = false;
        outcome
    }

    fn rollback(&mut self) {
        if self.in_transaction && !self.client.is_closed() {
            self.round_trips += 1;
            // A failed rollback leaves the transaction to the session's end.
            let _ = self.client.batch_execute("ROLLBACK");
        }
        self.in_transaction = false;
        self.failed = false;
        self.head = None;
        self.head_moved = false;
    }

    fn acked(&mut self, replica: u32) -> Result<i64> {
        let sql = self.sql.acked.clone();
        let rows = self.query(&sql, &[&i64::from(replica)])?;
        Ok(match rows.first() {
            Some(r) => r.try_get(0)?,
            None => 0,
        })
    }

    fn head(&mut self) -> Result<i64> {
        Ok(self.head_in_transaction())
    }

    fn rows(&mut self, table: usize, ids: &[i64]) -> Result<Vec<(i64, RemoteRow)>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let sql = self.sql.tables[table].rows.clone();
        let name = self.schema.table(table).name.clone();
        let found = self.query(&sql, &[&name, &ids])?;
        let def = self.schema.table(table).clone();
        let mut out = Vec::with_capacity(found.len());
        for r in &found {
            let id: i64 = r.try_get(0)?;
            let stamps: Option<&[u8]> = r.try_get(3)?;
            let mut row = self.decode(table, id, r.try_get(1)?, r.try_get(2)?, stamps)?;
            if let RemoteRow::Live { values, .. } = &mut row {
                let present: Option<i64> = r.try_get(4)?;
                if present.is_none() {
                    return Err(Error::CorruptRemote {
                        table: name,
                        id,
                        detail: "live row without data".into(),
                    });
                }
                *values = read_values(r, 5, &def)?;
            }
            out.push((id, row));
        }
        Ok(out)
    }

    fn live_with_keys(&mut self, table: usize, keys: &[Value]) -> Result<Vec<(Value, i64)>> {
        let def = self.schema.table(table).clone();
        let (Some(k), Some(sql)) = (def.natural_key, self.sql.tables[table].keys.clone()) else {
            return Ok(Vec::new());
        };
        let keys: Vec<&Value> = keys.iter().filter(|k| **k != Value::Null).collect();
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let array = column_array(&def, k, keys.into_iter())?;
        let found = self.query(&sql, &[&*array])?;
        found
            .iter()
            .map(|r| Ok((read_value(r, 0, def.columns[k].kind)?, r.try_get(1)?)))
            .collect()
    }

    fn live_children(&mut self, table: usize, column: usize, parents: &[i64]) -> Result<Vec<(i64, i64)>> {
        if parents.is_empty() {
            return Ok(Vec::new());
        }
        let sql = self.sql.tables[table].children[column]
            .clone()
            .expect("children are asked only through a reference column");
        let found = self.query(&sql, &[&parents])?;
        found.iter().map(|r| Ok((r.try_get(0)?, r.try_get(1)?))).collect()
    }

    fn write(&mut self, writes: &RemoteWrites) -> Result<()> {
        let head = self.head_in_transaction();
        assert!(
            writes.head >= head,
            "the head only moves forward: from {head} to {}",
            writes.head
        );
        let tables = self.schema.tables().len();
        let mut gone: Vec<Vec<i64>> = vec![Vec::new(); tables];
        let mut live: Vec<Vec<&Change>> = vec![Vec::new(); tables];
        let (mut tbl, mut id, mut seq, mut state, mut alias_of, mut stamps) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for change in &writes.rows {
            assert!(
                change.seq > head && change.seq <= writes.head,
                "a stored row's seq {} is outside ({head}, {}]",
                change.seq,
                writes.head
            );
            tbl.push(self.schema.table(change.table).name.clone());
            id.push(change.id);
            seq.push(change.seq);
            match &change.row {
                RemoteRow::Live { stamps: s, .. } => {
                    live[change.table].push(change);
                    state.push(STATE_LIVE);
                    alias_of.push(None);
                    stamps.push(Some(Stamp::encode_all(s)));
                }
                RemoteRow::Dead | RemoteRow::Alias(_) => {
                    gone[change.table].push(change.id);
                    state.push(if change.row == RemoteRow::Dead {
                        STATE_DEAD
                    } else {
                        STATE_ALIAS
                    });
                    alias_of.push(match change.row {
                        RemoteRow::Alias(s) => Some(s),
                        _ => None,
                    });
                    stamps.push(None::<Vec<u8>>);
                }
            }
        }
        // Rows that leave the synced tables go first, so a live row never
        // meets the natural key of a row that died in the same write.
        for (t, ids) in gone.iter().enumerate().filter(|(_, ids)| !ids.is_empty()) {
            let sql = self.sql.tables[t].delete.clone();
            self.execute(&sql, &[ids])?;
        }
        for (t, rows) in live.iter().enumerate().filter(|(_, rows)| !rows.is_empty()) {
            let def = self.schema.table(t).clone();
            let ids: Vec<i64> = rows.iter().map(|c| c.id).collect();
            let mut arrays: Vec<Box<dyn ToSql + Sync>> = Vec::with_capacity(def.columns.len());
            for c in 0..def.columns.len() {
                arrays.push(column_array(
                    &def,
                    c,
                    rows.iter().map(|change| match &change.row {
                        RemoteRow::Live { values, .. } => &values[c],
                        _ => unreachable!("only live rows are upserted"),
                    }),
                )?);
            }
            let mut params: Vec<&(dyn ToSql + Sync)> = vec![&ids];
            params.extend(arrays.iter().map(|a| &**a as &(dyn ToSql + Sync)));
            let sql = self.sql.tables[t].upsert.clone();
            self.execute(&sql, &params)?;
        }
        if !writes.rows.is_empty() {
            let sql = self.sql.write_rows.clone();
            self.execute(&sql, &[&tbl, &id, &seq, &state, &alias_of, &stamps])?;
        }
        if let Some((replica, acked)) = writes.acked {
            let sql = self.sql.set_acked.clone();
            self.execute(&sql, &[&i64::from(replica), &acked])?;
        }
        // Stored at commit (see the module's comment).
        self.head_moved |= writes.head != head;
        self.head = Some(writes.head);
        Ok(())
    }

    fn changes(&mut self, kind: ChangeKind, after: i64, upto: i64, limit: usize) -> Result<Vec<Change>> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let index = |remote: &PgRemote, tbl: &str, id: i64| {
            remote.schema.index(tbl).map_err(|_| Error::CorruptRemote {
                table: tbl.to_string(),
                id,
                detail: "change for a table that is not in the declared schema".into(),
            })
        };
        match kind {
            ChangeKind::Gone => {
                let sql = self.sql.changes_gone.clone();
                let found = self.query(&sql, &[&after, &upto, &limit])?;
                found
                    .iter()
                    .map(|r| {
                        let (tbl, id): (String, i64) = (r.try_get(0)?, r.try_get(1)?);
                        let table = index(self, &tbl, id)?;
                        let row = self.decode(table, id, r.try_get(3)?, r.try_get(4)?, None)?;
                        Ok(Change {
                            table,
                            id,
                            seq: r.try_get(2)?,
                            row,
                        })
                    })
                    .collect()
            }
            ChangeKind::Live => {
                let sql = self.sql.changes_live.clone();
                let found = self.query(&sql, &[&after, &upto, &limit])?;
                let mut changes = Vec::with_capacity(found.len());
                let mut ids: Vec<Vec<i64>> = vec![Vec::new(); self.schema.tables().len()];
                for r in &found {
                    let (tbl, id): (String, i64) = (r.try_get(0)?, r.try_get(1)?);
                    let table = index(self, &tbl, id)?;
                    let stamps: Option<&[u8]> = r.try_get(3)?;
                    let row = self.decode(table, id, STATE_LIVE, None, stamps)?;
                    ids[table].push(id);
                    changes.push(Change {
                        table,
                        id,
                        seq: r.try_get(2)?,
                        row,
                    });
                }
                // One read of values per table the page touches.
                let mut values: HashMap<(usize, i64), Vec<Value>> = HashMap::with_capacity(changes.len());
                for (t, ids) in ids.iter().enumerate().filter(|(_, ids)| !ids.is_empty()) {
                    let def = self.schema.table(t).clone();
                    let sql = self.sql.tables[t].values.clone();
                    for r in self.query(&sql, &[ids])? {
                        values.insert((t, r.try_get(0)?), read_values(&r, 1, &def)?);
                    }
                }
                for change in &mut changes {
                    let found = values
                        .remove(&(change.table, change.id))
                        .ok_or_else(|| Error::CorruptRemote {
                            table: self.schema.table(change.table).name.clone(),
                            id: change.id,
                            detail: "live row without data".into(),
                        })?;
                    if let RemoteRow::Live { values, .. } = &mut change.row {
                        *values = found;
                    }
                }
                Ok(changes)
            }
        }
    }
}
