//! The remote as the harness reaches it itself: a SQLite file in the case
//! folder, or a schema (namespace) of its own on a PostgreSQL server. The
//! harness reads its synced tables and the replicas' applied seqs, and holds
//! locks on it, with connections of its own, never through the engine.
//!
//! It reads and locks only what the protocol declares: the synced tables,
//! and the reference engine's own tables only for engines that declare its
//! profile (their write ledger, and the locks its spec names).
//!
//! Lock kinds stand for the same effect on both. `shared` lets readers go
//! on and stops writers from committing (SQLite: a SHARED lock).
//! `reserved` lets readers go on and stops a writer before it starts
//! (SQLite: RESERVED). `exclusive` stops everything (SQLite: EXCLUSIVE). On
//! PostgreSQL, for any engine, the synced tables are locked `IN SHARE MODE`
//! (a write waits at its first row), `IN EXCLUSIVE MODE` (plain reads pass,
//! every write or row lock waits) and `IN ACCESS EXCLUSIVE MODE`; for an
//! engine that declares the reference profile, where the reference spec
//! names its commit point and writer lock, the harness locks those instead:
//! `_sg_remote`'s row `FOR SHARE` (its head update at commit waits), the
//! advisory writer lock every write transaction takes first, and
//! `_sg_remote` `IN ACCESS EXCLUSIVE MODE`.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

use rusqlite::{Connection, OptionalExtension};
use syncgate_engine::postgres::{Client, NoTls, SimpleQueryMessage, Statement};
use syncgate_engine::PgRemote;
use syncgate_model as model;
use syncgate_protocol::RemoteLocation;

use super::PlaceError;
use crate::scenario::LockKind;
use crate::schema::{quote, real_of_place};

/// The environment variable that names the PostgreSQL server.
pub const PG_URL_VAR: &str = "SYNCGATE_PG_URL";

/// How long the harness's own PostgreSQL sessions wait on a lock before
/// reporting it: an engine that leaked a transaction must fail the case,
/// not hang it.
const PG_HARNESS_LOCK_TIMEOUT: &str = "10s";

/// Which kind of remote a run uses.
#[derive(Clone, Debug, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum RemoteTarget {
    /// A SQLite file in each case's folder.
    #[default]
    Sqlite,
    /// A PostgreSQL server; every case in a schema of its own.
    Postgres {
        #[serde(skip)]
        url: String,
    },
}

impl RemoteTarget {
    /// `sqlite`, `postgres` (the server `SYNCGATE_PG_URL` names) or a
    /// `postgresql://` connection string.
    pub fn from_arg(arg: &str) -> Result<RemoteTarget, UnknownRemote> {
        match arg {
            "sqlite" => Ok(RemoteTarget::Sqlite),
            "postgres" | "postgresql" => match std::env::var(PG_URL_VAR) {
                Ok(url) if !url.is_empty() => Ok(RemoteTarget::Postgres { url }),
                _ => Err(UnknownRemote(format!(
                    "--remote postgres needs {PG_URL_VAR}, e.g. {PG_URL_VAR}=postgresql://root@127.0.0.1:5432/test \
                     (or pass the connection string itself: --remote postgresql://...)"
                ))),
            },
            url if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
                Ok(RemoteTarget::Postgres { url: url.to_string() })
            }
            other => Err(UnknownRemote(format!(
                "unknown remote {other:?}: use sqlite, postgres (with {PG_URL_VAR} set) or a postgresql:// URL"
            ))),
        }
    }

    /// The remote a trace file names, with the server from the environment
    /// (trace files never hold a connection string).
    pub fn resolved(&self) -> Result<RemoteTarget, UnknownRemote> {
        match self {
            RemoteTarget::Postgres { url } if url.is_empty() => RemoteTarget::from_arg("postgres"),
            other => Ok(other.clone()),
        }
    }

    /// `sqlite` or `postgres`, as reports and trace files name it.
    pub fn kind(&self) -> &'static str {
        match self {
            RemoteTarget::Sqlite => "sqlite",
            RemoteTarget::Postgres { .. } => "postgres",
        }
    }

    /// Connects once, so a wrong server is a setup error before any case.
    pub fn probe(&self) -> Result<(), PlaceError> {
        match self {
            RemoteTarget::Sqlite => Ok(()),
            RemoteTarget::Postgres { url } => connect(url)
                .map(drop)
                .map_err(|e| PlaceError::Harness(format!("{e}; start the server or fix {PG_URL_VAR}"))),
        }
    }
}

/// A `--remote` argument (or a trace file's remote) that names no remote
/// the harness can reach.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct UnknownRemote(pub String);

/// A session of the harness's own, which waits on a lock at most
/// `PG_HARNESS_LOCK_TIMEOUT`. An unreachable server is the harness's
/// trouble (a setup error), never the engine's.
fn connect(url: &str) -> Result<Client, PlaceError> {
    let mut client = Client::connect(url, NoTls)
        .map_err(|e| PlaceError::Harness(format!("cannot connect to PostgreSQL ({})", super::pg_text(&e))))?;
    // Reals and blobs read in text forms that keep every bit, whatever the
    // server's configuration says (`parse_real`, `parse_bytea`).
    client.query(
        "SELECT set_config('lock_timeout', $1, false), set_config('extra_float_digits', '1', false), \
         set_config('bytea_output', 'hex', false)",
        &[&PG_HARNESS_LOCK_TIMEOUT],
    )?;
    Ok(client)
}

struct Held<C> {
    conn: C,
    kind: LockKind,
    steps_left: usize,
}

#[allow(clippy::large_enum_variant, reason = "one per case; boxing buys nothing")]
enum Store {
    Sqlite {
        path: PathBuf,
        reader: Option<Connection>,
        lock: Option<Held<Connection>>,
    },
    Postgres {
        url: String,
        namespace: String,
        reader: Option<PgReader>,
        lock: Option<Held<Client>>,
        /// The lock's session between locks (connecting costs the server a
        /// process).
        idle: Option<Client>,
    },
}

/// The harness's reading session on a PostgreSQL remote, with its
/// statements prepared once (a case reads after nearly every step).
struct PgReader {
    client: Client,
    /// `BEGIN` a read-only snapshot, `SELECT id, <columns>` of each synced
    /// table by id, `COMMIT`: statements without values.
    snapshot: String,
    /// The reference profile's ledger query, prepared when first asked
    /// (only reference-profile engines have the table it reads).
    acked: Option<Statement>,
}

/// One case's remote.
pub struct RemotePlace {
    store: Store,
    schema: model::Schema,
    /// Whether the engine declared the reference profile: only then do its
    /// own tables exist to lock.
    profile: bool,
}

impl RemotePlace {
    pub fn new(target: &RemoteTarget, dir: &std::path::Path, schema: &model::Schema) -> RemotePlace {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let store = match target {
            RemoteTarget::Sqlite => Store::Sqlite {
                path: dir.join("remote.db"),
                reader: None,
                lock: None,
            },
            RemoteTarget::Postgres { url } => Store::Postgres {
                url: url.clone(),
                namespace: format!(
                    "sg_case_{}_{}",
                    std::process::id(),
                    NEXT.fetch_add(1, Ordering::Relaxed)
                ),
                reader: None,
                lock: None,
                idle: None,
            },
        };
        RemotePlace {
            store,
            schema: schema.clone(),
            profile: false,
        }
    }

    /// The engine declared the reference profile: its own tables exist, and
    /// the lock steps take the locks its spec names as well.
    pub fn declare_reference_profile(&mut self) {
        self.profile = true;
    }

    /// Where the engine finds the remote.
    pub fn location(&self) -> RemoteLocation {
        match &self.store {
            Store::Sqlite { path, .. } => RemoteLocation::Sqlite {
                path: path.display().to_string(),
            },
            Store::Postgres { url, namespace, .. } => RemoteLocation::Postgres {
                url: url.clone(),
                schema: namespace.clone(),
            },
        }
    }

    /// Whether the remote can be read now (no exclusive lock held on it).
    pub fn readable(&self) -> bool {
        !matches!(self.lock_kind(), Some(LockKind::Exclusive))
    }

    pub fn locked(&self) -> bool {
        self.lock_kind().is_some()
    }

    fn lock_kind(&self) -> Option<LockKind> {
        match &self.store {
            Store::Sqlite { lock, .. } => lock.as_ref().map(|l| l.kind),
            Store::Postgres { lock, .. } => lock.as_ref().map(|l| l.kind),
        }
    }

    /// Every synced table, as one snapshot.
    pub fn read_tables(&mut self) -> Result<model::Tables, PlaceError> {
        let schema = &self.schema;
        match &mut self.store {
            Store::Sqlite { path, reader, .. } => super::read_tables(sqlite_reader(path, reader)?, schema),
            Store::Postgres {
                url, namespace, reader, ..
            } => {
                let reader = pg_reader(url, namespace, schema, reader)?;
                read_pg_tables(reader, schema)
            }
        }
    }

    /// See [`super::Places::session_write_locks`].
    pub fn session_write_locks(&mut self, pid: i32) -> Result<Vec<String>, PlaceError> {
        let schema = &self.schema;
        match &mut self.store {
            Store::Sqlite { .. } => Ok(Vec::new()),
            Store::Postgres {
                url, namespace, reader, ..
            } => {
                let reader = pg_reader(url, namespace, schema, reader)?;
                let rows = reader.client.query(
                    "SELECT locktype || ' ' || mode FROM pg_locks WHERE pid = $1 AND granted \
                     AND locktype <> 'virtualxid' AND NOT (locktype = 'relation' AND mode = 'AccessShareLock') \
                     ORDER BY 1",
                    &[&pid],
                )?;
                rows.iter().map(|row| Ok(row.try_get::<_, String>(0)?)).collect()
            }
        }
    }

    /// The highest outbox seq of `replica` the remote applied.
    pub fn acked(&mut self, replica: i64) -> Result<i64, PlaceError> {
        assert!(self.profile, "only a reference-profile remote has a ledger");
        match &mut self.store {
            Store::Sqlite { path, reader, .. } => Ok(sqlite_reader(path, reader)?
                .query_row("SELECT acked FROM _sg_replicas WHERE replica = ?1", [replica], |row| {
                    row.get(0)
                })
                .optional()?
                .unwrap_or(0)),
            Store::Postgres {
                url, namespace, reader, ..
            } => {
                let reader = pg_reader(url, namespace, &self.schema, reader)?;
                let acked = match &reader.acked {
                    Some(statement) => statement.clone(),
                    None => {
                        let statement = reader.client.prepare(&format!(
                            "SELECT acked FROM {}.\"_sg_replicas\" WHERE replica = $1",
                            quote(namespace)
                        ))?;
                        reader.acked = Some(statement.clone());
                        statement
                    }
                };
                let rows = reader.client.query(&acked, &[&replica])?;
                Ok(rows.first().map_or(0, |r| r.get(0)))
            }
        }
    }

    /// A migration of a newer version of the application changes the
    /// remote's `table` (`ADD COLUMN` a column the case's schema does not
    /// declare, or `DROP COLUMN` it again), over a connection of its own.
    pub fn alter_table(&mut self, table: &str, change: &str) -> Result<(), PlaceError> {
        match &self.store {
            Store::Sqlite { path, .. } => {
                let conn = Connection::open(path)?;
                Ok(conn.execute_batch(&format!("ALTER TABLE {} {change}", quote(table)))?)
            }
            Store::Postgres { url, namespace, .. } => Ok(connect(url)?.batch_execute(&format!(
                "ALTER TABLE {}.{} {change}",
                quote(namespace),
                quote(table)
            ))?),
        }
    }

    /// Another connection locks the remote for the next `hold` steps.
    pub fn lock(&mut self, kind: LockKind, hold: usize) -> Result<(), PlaceError> {
        let taking = format!("taking the remote {kind:?} lock");
        let schema = &self.schema;
        let profile = self.profile;
        match &mut self.store {
            Store::Sqlite { path, lock, .. } => {
                let conn = Connection::open(&*path)?;
                let sql = match kind {
                    LockKind::Shared => "BEGIN DEFERRED",
                    LockKind::Reserved => "BEGIN IMMEDIATE",
                    LockKind::Exclusive => "BEGIN EXCLUSIVE",
                };
                conn.execute_batch(sql)
                    .map_err(|e| PlaceError::from(e).context(&taking))?;
                if kind == LockKind::Shared {
                    // A read transaction keeps its SHARED lock only once it has read.
                    conn.query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get::<_, i64>(0))?;
                }
                *lock = Some(Held {
                    conn,
                    kind,
                    steps_left: hold,
                });
            }
            Store::Postgres {
                url,
                namespace,
                lock,
                idle,
                ..
            } => {
                let mut conn = match idle.take() {
                    Some(c) if !c.is_closed() => c,
                    _ => connect(url)?,
                };
                let sql = if profile {
                    // The locks the reference spec names: its commit point
                    // (`_sg_remote`'s head, rule P6) and its writer lock.
                    let remote = format!("{}.\"_sg_remote\"", quote(namespace));
                    match kind {
                        LockKind::Shared => format!("BEGIN; SELECT 1 FROM {remote} FOR SHARE"),
                        LockKind::Reserved => format!(
                            "BEGIN; SELECT pg_advisory_xact_lock({})",
                            PgRemote::writer_lock_key(namespace)
                        ),
                        LockKind::Exclusive => format!("BEGIN; LOCK TABLE {remote} IN ACCESS EXCLUSIVE MODE"),
                    }
                } else {
                    // Any other engine's commit point is unknown: its writes
                    // of the synced tables wait (and, exclusively, its reads).
                    let synced: Vec<String> = schema
                        .tables
                        .iter()
                        .map(|t| format!("{}.{}", quote(namespace), quote(&t.name)))
                        .collect();
                    let mode = match kind {
                        LockKind::Shared => "SHARE",
                        LockKind::Reserved => "EXCLUSIVE",
                        LockKind::Exclusive => "ACCESS EXCLUSIVE",
                    };
                    format!("BEGIN; LOCK TABLE {} IN {mode} MODE", synced.join(", "))
                };
                conn.batch_execute(&sql)
                    .map_err(|e| PlaceError::from(e).context(&taking))?;
                *lock = Some(Held {
                    conn,
                    kind,
                    steps_left: hold,
                });
            }
        }
        Ok(())
    }

    /// Counts the held lock down; whether it was released.
    pub fn tick(&mut self) -> bool {
        let released = match &mut self.store {
            Store::Sqlite { lock, .. } => tick(lock),
            Store::Postgres { lock, .. } => tick(lock),
        };
        if released {
            self.release();
        }
        released
    }

    /// Releases the lock (ending its transaction).
    pub fn release(&mut self) {
        match &mut self.store {
            Store::Sqlite { lock, .. } => *lock = None,
            Store::Postgres { lock, idle, .. } => {
                if let Some(mut held) = lock.take() {
                    if held.conn.batch_execute("ROLLBACK").is_ok() {
                        *idle = Some(held.conn);
                    }
                }
            }
        }
    }
}

fn tick<C>(lock: &mut Option<Held<C>>) -> bool {
    match lock {
        Some(held) => {
            held.steps_left = held.steps_left.saturating_sub(1);
            held.steps_left == 0
        }
        None => false,
    }
}

impl Drop for RemotePlace {
    /// A case's PostgreSQL schema goes with the case, failed or not.
    fn drop(&mut self) {
        self.release();
        if let Store::Postgres {
            url, namespace, reader, ..
        } = &mut self.store
        {
            *reader = None;
            if let Ok(mut client) = connect(url) {
                let _ = client.batch_execute(&format!("DROP SCHEMA IF EXISTS {} CASCADE", quote(namespace)));
            }
        }
    }
}

fn pg_reader<'r>(
    url: &str,
    namespace: &str,
    schema: &model::Schema,
    reader: &'r mut Option<PgReader>,
) -> Result<&'r mut PgReader, PlaceError> {
    if reader.as_ref().is_none_or(|r| r.client.is_closed()) {
        let client = connect(url)?;
        let mut snapshot = String::from("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY;");
        for t in &schema.tables {
            let list: String = t.columns.iter().map(|c| format!(", {}", quote(&c.name))).collect();
            snapshot.push_str(&format!(
                " SELECT \"id\"{list} FROM {}.{} ORDER BY \"id\";",
                quote(namespace),
                quote(&t.name)
            ));
        }
        snapshot.push_str(" COMMIT");
        *reader = Some(PgReader {
            client,
            snapshot,
            acked: None,
        });
    }
    match reader.as_mut() {
        Some(reader) => Ok(reader),
        None => unreachable!("connected above"),
    }
}

/// The harness's reading connection to a SQLite remote, opened when first needed.
fn sqlite_reader<'r>(path: &PathBuf, reader: &'r mut Option<Connection>) -> Result<&'r Connection, PlaceError> {
    if reader.is_none() {
        *reader = Some(Connection::open(path)?);
    }
    match reader.as_ref() {
        Some(conn) => Ok(conn),
        None => unreachable!("opened above"),
    }
}

/// Every synced table of a PostgreSQL remote, by column name, in one
/// snapshot and one round trip (a case reads after nearly every step).
fn read_pg_tables(reader: &mut PgReader, schema: &model::Schema) -> Result<model::Tables, PlaceError> {
    let messages = match reader.client.simple_query(&reader.snapshot) {
        Ok(messages) => messages,
        Err(e) => {
            let _ = reader.client.batch_execute("ROLLBACK");
            return Err(e.into());
        }
    };
    // BEGIN's completion, then one completion per table, then COMMIT's.
    let mut out: model::Tables = vec![model::Rows::new(); schema.tables.len()];
    let mut completed = 0_usize;
    for message in &messages {
        match message {
            SimpleQueryMessage::CommandComplete(_) => completed += 1,
            SimpleQueryMessage::Row(row) => {
                let t = completed
                    .checked_sub(1)
                    .filter(|&t| t < schema.tables.len())
                    .ok_or_else(|| PlaceError::Harness("a row outside the table reads".into()))?;
                let def = &schema.tables[t];
                let id: i64 = parse(row.try_get("id")?, "id")?;
                let mut values = Vec::with_capacity(def.columns.len());
                for col in &def.columns {
                    let cell = row.try_get(col.name.as_str())?;
                    values.push(match (cell, col.kind) {
                        (None, _) => model::Value::Null,
                        (Some(v), model::ColumnKind::Integer) => model::Value::Int(parse(Some(v), &col.name)?),
                        (Some(v), model::ColumnKind::Real) => parse_real(v, &col.name)?,
                        (Some(v), model::ColumnKind::Text) => model::Value::Text(v.to_string()),
                        (Some(v), model::ColumnKind::Blob) => parse_bytea(v, &col.name)?,
                    });
                }
                out[t].insert(id, values);
            }
            _ => {}
        }
    }
    Ok(out)
}

/// A `double precision` cell in PostgreSQL's text form, whose default
/// since version 12 is the shortest text that reads back to the same bits.
fn parse_real(cell: &str, column: &str) -> Result<model::Value, PlaceError> {
    cell.parse::<f64>()
        .ok()
        .and_then(real_of_place)
        .map(model::Value::Real)
        .ok_or_else(|| PlaceError::Content(format!("the remote's {column} holds {cell:?}, not a finite real")))
}

/// A `bytea` cell in PostgreSQL's text form (`bytea_output = hex`: `\x0aff`).
fn parse_bytea(cell: &str, column: &str) -> Result<model::Value, PlaceError> {
    let bad = || PlaceError::Content(format!("the remote's {column} holds {cell:?}, not bytea in hex form"));
    let hex = cell.strip_prefix("\\x").ok_or_else(bad)?;
    if hex.len() % 2 != 0 {
        return Err(bad());
    }
    (0..hex.len())
        .step_by(2)
        .map(|i| hex.get(i..i + 2).and_then(|pair| u8::from_str_radix(pair, 16).ok()))
        .collect::<Option<Vec<u8>>>()
        .map(model::Value::Blob)
        .ok_or_else(bad)
}

fn parse(cell: Option<&str>, column: &str) -> Result<i64, PlaceError> {
    cell.and_then(|v| v.parse().ok())
        .ok_or_else(|| PlaceError::Content(format!("the remote's {column} holds {cell:?}, not an integer")))
}
