//! The one seam every engine under test goes through.
//!
//! The runner speaks to an engine only in the protocol's vocabulary
//! (`syncgate-protocol`): writes as [`Op`]s by table and column name, syncs,
//! `pending`, the clock and crash points. [`reference`] runs the reference
//! engine (and its mutants) in this process; [`process`] runs any engine
//! behind an `exec:` command over JSON lines (`PROTOCOL.md`). Everything the
//! harness reads or locks itself goes through `crate::places`, never
//! through the engine.

pub mod process;
pub mod reference;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

pub use syncgate_protocol::{
    Capabilities, CrashPoint, InitOk, Limits, Op, Policies, ReadRow, RefusalClass, RemoteLocation, Renumbering,
    SyncFailureClass, SyncReport, Value,
};

use crate::places::{PauseAt, PlaceError, RemoteTarget};
use crate::scenario::SyncKind;

/// Why a replica could not be started, sorted by who is to blame.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    /// The engine's process could not be started at all (the command, the
    /// machine): a setup error, never the engine's failure in a case.
    #[error("{0}")]
    Start(String),
    /// The engine answered the handshake with something other than
    /// `init_ok`, or not at all, or with a version this harness does not
    /// speak.
    #[error("{0}")]
    Handshake(String),
    /// The engine refused to open its files (its own error): a cache a
    /// newer version wrote, a remote whose tables differ from the schema.
    /// Some restarts expect exactly that.
    #[error("{0}")]
    Refused(String),
    /// The harness could not prepare what the replica needs (its wire tap
    /// to the server).
    #[error(transparent)]
    Place(#[from] PlaceError),
}

impl OpenError {
    /// Whether the harness, not the engine, is to blame.
    pub fn is_harness(&self) -> bool {
        match self {
            OpenError::Start(_) => true,
            OpenError::Place(e) => e.is_harness(),
            OpenError::Handshake(_) | OpenError::Refused(_) => false,
        }
    }
}

/// How an engine answered a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer<T> {
    Ok(T),
    /// A write refused, with the engine's class and message.
    Refused(RefusalClass, String),
    /// A sync that failed, with the engine's class and message.
    Failed(SyncFailureClass, String),
    /// The replica stopped at the armed crash point (its process is gone).
    Crashed,
    /// The engine answered with an error outside the protocol's vocabulary
    /// (`error`), or the in-process engine failed unexpectedly.
    Error(String),
    /// The engine broke the protocol: no answer in time, a line that is not
    /// a reply, an exit outside a crash point. Carries the engine's log tail.
    Broken(String),
}

impl<T> Answer<T> {
    /// The same non-`Ok` answer for another payload type.
    pub fn cast<U>(self) -> Result<T, Answer<U>> {
        match self {
            Answer::Ok(t) => Ok(t),
            Answer::Refused(c, m) => Err(Answer::Refused(c, m)),
            Answer::Failed(c, m) => Err(Answer::Failed(c, m)),
            Answer::Crashed => Err(Answer::Crashed),
            Answer::Error(e) => Err(Answer::Error(e)),
            Answer::Broken(e) => Err(Answer::Broken(e)),
        }
    }
}

/// The optional tries an engine reports with a `busy` sync failure.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BusyTriesReported {
    pub attempts: Option<u64>,
    pub waited_ms: Option<u64>,
}

impl BusyTriesReported {
    /// The tries a reply reports, if it is a `busy` failure.
    pub fn of(response: &syncgate_protocol::Response) -> Option<BusyTriesReported> {
        match response {
            syncgate_protocol::Response::SyncFailed {
                class: SyncFailureClass::Busy,
                attempts,
                waited_ms,
                ..
            } => Some(BusyTriesReported {
                attempts: *attempts,
                waited_ms: *waited_ms,
            }),
            _ => None,
        }
    }
}

/// The renumberings a reply reports (version 2, `ids: renumbered`).
pub fn reported_renumberings(response: &syncgate_protocol::Response) -> Vec<Renumbering> {
    match response {
        syncgate_protocol::Response::WriteOk { renumbered, .. }
        | syncgate_protocol::Response::SyncFailed { renumbered, .. } => renumbered.clone(),
        syncgate_protocol::Response::SyncOk(report) => report.renumbered.clone(),
        syncgate_protocol::Response::InitOk(ok) => ok.renumbered.clone(),
        _ => Vec::new(),
    }
}

/// The round trips to a PostgreSQL remote a sync's reply reports, if any
/// (PROTOCOL.md, `remote_round_trips`).
pub fn reported_round_trips(response: &syncgate_protocol::Response) -> Option<u64> {
    match response {
        syncgate_protocol::Response::SyncOk(report) => report.remote_round_trips,
        syncgate_protocol::Response::SyncFailed { remote_round_trips, .. } => *remote_round_trips,
        _ => None,
    }
}

/// What the runner needs to start one replica.
#[derive(Clone, Debug)]
pub struct OpenSpec {
    pub replica: usize,
    pub replicas: usize,
    pub cache: PathBuf,
    pub remote: RemoteLocation,
    /// The remote does not exist yet: the engine creates it.
    pub create_remote: bool,
    /// The first start of this replica in the case.
    pub fresh: bool,
    pub clock_ms: i64,
    /// The engine limits this case draws.
    pub limits: Limits,
    /// The tables the case syncs, as the handshake sends them.
    pub schema: syncgate_protocol::Schema,
}

impl OpenSpec {
    /// The handshake that starts this replica.
    pub fn init(&self) -> syncgate_protocol::Init {
        syncgate_protocol::Init {
            protocol: syncgate_protocol::VERSION,
            protocols: syncgate_protocol::VERSIONS.to_vec(),
            replica: self.replica,
            replicas: self.replicas,
            cache: self.cache.display().to_string(),
            remote: self.remote.clone(),
            create_remote: self.create_remote,
            fresh: self.fresh,
            schema: self.schema.clone(),
            clock_ms: self.clock_ms,
            limits: self.limits,
        }
    }
}

/// An engine under test.
pub trait Subject: Sync {
    /// The name reports and `--engine` use.
    fn name(&self) -> String;
    /// Whether a case's starting files (the remote and each replica's
    /// cache, as `remote.db` and `replicaN.db`) may be made once and copied
    /// for every case; copying skips the schema setup that otherwise
    /// dominates short cases. Only for engines whose files do not depend on
    /// anything but the replica count.
    fn files_are_copyable(&self) -> bool {
        false
    }
    /// The kind of remote its cases run on.
    fn remote(&self) -> RemoteTarget {
        RemoteTarget::Sqlite
    }
    /// Whether its replicas' syncs can be held inside at the in-process
    /// seam (`SubjectReplica::pausable`), where no wire tap can hold them.
    fn held_at_seam(&self) -> bool {
        false
    }
    /// Starts one replica (new, or restarted from its files) and returns it
    /// with its handshake answer.
    fn open_replica(&self, spec: &OpenSpec) -> Result<(Box<dyn SubjectReplica>, InitOk), OpenError>;
    /// Fields of the last handshake this harness does not know (a newer
    /// protocol's declarations, or misspellings), as `object.field`: they
    /// are ignored, and the run's summary lists them.
    fn ignored_declarations(&self) -> Vec<String> {
        Vec::new()
    }
}

/// Whether the harness held a replica's engine at its wire tap while it
/// acted in the middle of a request (`run/held.rs`): a request's timeout
/// runs out only after a whole timeout without such a hold.
#[derive(Debug, Default)]
pub struct HoldClock {
    holding: AtomicBool,
    holds: AtomicU64,
}

impl HoldClock {
    /// The harness starts holding the engine.
    pub fn hold(&self) {
        self.holds.fetch_add(1, Ordering::SeqCst);
        self.holding.store(true, Ordering::SeqCst);
    }

    /// The harness lets the engine go on.
    pub fn release(&self) {
        self.holding.store(false, Ordering::SeqCst);
    }

    /// Whether the engine is held now, and how many holds began so far.
    pub fn read(&self) -> (bool, u64) {
        (self.holding.load(Ordering::SeqCst), self.holds.load(Ordering::SeqCst))
    }
}

/// One running replica of a subject.
pub trait SubjectReplica: Send {
    /// One local transaction: the ids each insert minted, in order.
    fn write(&mut self, ops: &[Op]) -> Answer<Vec<i64>>;
    /// One local transaction the application rolls back after its ops ran
    /// (engines that declare `aborts`): `Ok` for `write_aborted`.
    fn write_aborting(&mut self, ops: &[Op]) -> Answer<()> {
        let _ = ops;
        Answer::Error("this engine declares no aborts".into())
    }
    fn sync(&mut self, kind: SyncKind) -> Answer<SyncReport>;
    fn pending(&mut self) -> Answer<u64>;
    fn set_clock(&mut self, ms: i64) -> Answer<()>;
    fn arm_crash(&mut self, point: CrashPoint) -> Answer<()>;
    fn mint_id(&mut self, table: &str) -> Answer<i64>;
    /// The rows of `table` through the engine's read API (only asked of
    /// engines that declare `reads`).
    fn read(&mut self, table: &str) -> Answer<Vec<ReadRow>>;
    /// One statement written around the engine's API, run by the engine on
    /// a connection of its own (only asked of engines that declare
    /// `outside_writes: delegated`): the rows it changed and the
    /// connection's last insert rowid.
    fn exec_sql(&mut self, sql: &str, params: &[syncgate_protocol::Value]) -> Answer<(u64, i64)>;
    /// What the engine reported with its last sync's `busy` failure: how
    /// often it tried, how long it waited (PROTOCOL.md, `sync_failed`).
    /// Whether the harness can hold this replica's sync between two of its
    /// remote transactions through the seam (the in-process reference),
    /// where no wire tap can (a SQLite remote).
    fn pausable(&self) -> bool {
        false
    }
    /// Arms that hold for the next sync: at `RoundTrips(k)`, after `k`
    /// remote transactions, before the next; at `Busy`, at the engine's
    /// backoff after a busy attempt. There `reached` is called and the sync
    /// waits until the returned function is called (which also disarms a
    /// hold that did not happen). `None`: this replica cannot be held so.
    fn arm_pause(&mut self, at: PauseAt, reached: Box<dyn FnOnce() + Send>) -> Option<Box<dyn Fn() + Send>> {
        let _ = (at, reached);
        None
    }
    /// The clock of the harness's holds of this replica's requests, for an
    /// engine whose requests time out (a process): time the harness held
    /// the engine at its wire tap does not count against it.
    fn hold_clock(&self) -> Option<Arc<HoldClock>> {
        None
    }
    fn last_busy_tries(&self) -> Option<BusyTriesReported> {
        None
    }
    /// The round trips to a PostgreSQL remote the last sync's reply
    /// reported (this process's, since it started).
    fn last_remote_round_trips(&self) -> Option<u64> {
        None
    }
    /// The renumberings the replies since the last call reported
    /// (version 2, `ids: renumbered`), oldest first; taking them empties
    /// the list.
    fn take_renumbered(&mut self) -> Vec<Renumbering> {
        Vec::new()
    }
    /// The last lines the engine logged, shown with a failure.
    fn log_tail(&self) -> String {
        String::new()
    }
}

/// An engine checked by the contract alone, even if it declares the
/// reference profile (its handshake's `profile` is dropped): shows which
/// bugs the contract catches without the model.
pub struct ContractOnly(pub Box<dyn Subject>);

impl Subject for ContractOnly {
    fn name(&self) -> String {
        self.0.name()
    }

    fn files_are_copyable(&self) -> bool {
        self.0.files_are_copyable()
    }

    fn remote(&self) -> RemoteTarget {
        self.0.remote()
    }

    fn held_at_seam(&self) -> bool {
        self.0.held_at_seam()
    }

    fn open_replica(&self, spec: &OpenSpec) -> Result<(Box<dyn SubjectReplica>, InitOk), OpenError> {
        let (replica, mut init_ok) = self.0.open_replica(spec)?;
        init_ok.capabilities.profile = None;
        Ok((replica, init_ok))
    }

    fn ignored_declarations(&self) -> Vec<String> {
        self.0.ignored_declarations()
    }
}

/// An engine whose cases run on another kind of remote (a PostgreSQL
/// server): every case in a remote of its own, so no starting files are
/// copied.
pub struct OnRemote {
    pub subject: Box<dyn Subject>,
    pub remote: RemoteTarget,
}

impl Subject for OnRemote {
    fn name(&self) -> String {
        self.subject.name()
    }

    fn remote(&self) -> RemoteTarget {
        self.remote.clone()
    }

    fn held_at_seam(&self) -> bool {
        self.subject.held_at_seam()
    }

    fn open_replica(&self, spec: &OpenSpec) -> Result<(Box<dyn SubjectReplica>, InitOk), OpenError> {
        self.subject.open_replica(spec)
    }

    fn ignored_declarations(&self) -> Vec<String> {
        self.subject.ignored_declarations()
    }
}
