//! Shared by the harness's integration tests: the PostgreSQL server to run
//! against, and the reference engine made to misreport what it did.

use std::io::Write;

use syncgate::scenario::SyncKind;
use syncgate::subject::reference::ReferenceEngine;
use syncgate::subject::{
    Answer, BusyTriesReported, CrashPoint, InitOk, Op, OpenError, OpenSpec, ReadRow, Subject, SubjectReplica,
    SyncReport,
};

/// The server's connection string (`SYNCGATE_PG_URL`), or `None` after
/// saying on the terminal that `test` was skipped.
pub(crate) fn pg_url(test: &str) -> Option<String> {
    match std::env::var("SYNCGATE_PG_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            let _ = writeln!(
                std::io::stderr(),
                "SKIPPED {test}: SYNCGATE_PG_URL is not set. Run it with \
                 SYNCGATE_PG_URL=postgresql://root@127.0.0.1:5432/test cargo test --workspace"
            );
            None
        }
    }
}

/// What a [`Misreporting`] engine gets wrong in its sync replies.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Misreport {
    /// Every busy failure claims one try and no wait (rule L1 says more).
    pub one_busy_try: bool,
    /// Added to every round-trip count it reports.
    pub extra_round_trips: u64,
}

/// The reference engine, answering as it does but misreporting as told.
pub(crate) struct Misreporting(pub Misreport);

struct MisreportingReplica(Box<dyn SubjectReplica>, Misreport);

impl Subject for Misreporting {
    fn name(&self) -> String {
        format!("reference+misreporting({:?})", self.0)
    }

    fn open_replica(&self, spec: &OpenSpec) -> Result<(Box<dyn SubjectReplica>, InitOk), OpenError> {
        let (replica, init_ok) = ReferenceEngine::new().open_replica(spec)?;
        Ok((Box::new(MisreportingReplica(replica, self.0)), init_ok))
    }
}

impl SubjectReplica for MisreportingReplica {
    fn write(&mut self, ops: &[Op]) -> Answer<Vec<i64>> {
        self.0.write(ops)
    }
    fn sync(&mut self, kind: SyncKind) -> Answer<SyncReport> {
        self.0.sync(kind)
    }
    fn pending(&mut self) -> Answer<u64> {
        self.0.pending()
    }
    fn set_clock(&mut self, ms: i64) -> Answer<()> {
        self.0.set_clock(ms)
    }
    fn arm_crash(&mut self, point: CrashPoint) -> Answer<()> {
        self.0.arm_crash(point)
    }
    fn mint_id(&mut self, table: &str) -> Answer<i64> {
        self.0.mint_id(table)
    }
    fn read(&mut self, table: &str) -> Answer<Vec<ReadRow>> {
        self.0.read(table)
    }
    fn exec_sql(&mut self, sql: &str, params: &[syncgate_protocol::Value]) -> Answer<(u64, i64)> {
        self.0.exec_sql(sql, params)
    }
    fn last_busy_tries(&self) -> Option<BusyTriesReported> {
        let tries = self.0.last_busy_tries();
        if self.1.one_busy_try {
            tries.map(|_| BusyTriesReported {
                attempts: Some(1),
                waited_ms: Some(0),
            })
        } else {
            tries
        }
    }
    fn last_remote_round_trips(&self) -> Option<u64> {
        self.0.last_remote_round_trips().map(|n| n + self.1.extra_round_trips)
    }
}

/// What a [`Declaring`] engine declares and does beyond the reference
/// engine (contract only: it declares no profile).
#[derive(Clone, Copy, Debug)]
pub(crate) enum Twist {
    /// Write-through (`push: on_commit`): every write pushes before it
    /// answers; a failed push keeps the write pending, unless
    /// `swallows_failures`, when it reports nothing pending (the Flask app's
    /// bug: a push failure inside the commit hook is logged and dropped).
    WriteThrough { swallows_failures: bool },
    /// Takes application rollbacks (`aborts`), but commits the writes
    /// instead of rolling them back (a capture hook that keeps what the
    /// application rolled back).
    LeakyAborts,
    /// One combined sync only (`push_pull: together`), at most `replicas`
    /// replicas (`replicas_max`).
    SyncOnly { replicas: u32 },
    /// Writes around the API are sent to it (`outside_writes: delegated`):
    /// it runs each statement on a connection of its own to the cache
    /// (where the reference's triggers capture it), or, unless `runs`,
    /// answers `exec_sql_ok` without running it.
    Delegated { runs: bool },
    /// Holds integers up to 2^53 - 1 only, as a JavaScript engine does: a
    /// write of a bigger one fails with an error. Declares it
    /// (`value_domain: {"integers": "safe"}`) when `declared`.
    SafeIntegers { declared: bool },
    /// Declares `natural_keys: local_only` (rows with one key inserted apart
    /// stay two rows), yet merges them as the reference does: the merged
    /// row is lost.
    ClaimsLocalOnlyKeys,
}

/// The reference engine speaking protocol version 2 with a twist.
pub(crate) struct Declaring(pub(crate) Twist);

struct DeclaringReplica {
    inner: Box<dyn SubjectReplica>,
    twist: Twist,
    /// The replica's cache file (for the statements it runs itself).
    cache: std::path::PathBuf,
    /// A push inside a write failed and the engine says nothing is pending.
    claims_pushed: bool,
}

impl Subject for Declaring {
    fn name(&self) -> String {
        format!("reference+{:?}", self.0)
    }

    fn open_replica(&self, spec: &OpenSpec) -> Result<(Box<dyn SubjectReplica>, InitOk), OpenError> {
        let base = ReferenceEngine::with(syncgate_reference_adapter::Options {
            aborts: true,
            ..Default::default()
        });
        let (inner, mut init_ok) = base.open_replica(spec)?;
        init_ok.protocol = 2;
        init_ok.capabilities.profile = None;
        match self.0 {
            Twist::WriteThrough { .. } => {
                init_ok.capabilities.aborts = false;
                init_ok.policies.push = syncgate_protocol::PushPolicy::OnCommit;
            }
            Twist::LeakyAborts => {}
            Twist::SyncOnly { replicas } => {
                init_ok.capabilities.push_pull = syncgate_protocol::PushPull::Together;
                init_ok.capabilities.replicas_max = Some(replicas);
            }
            Twist::Delegated { .. } => {
                init_ok.capabilities.outside_writes = syncgate_protocol::OutsideWrites::Delegated;
            }
            Twist::SafeIntegers { declared } => {
                if declared {
                    init_ok.capabilities.value_domain.integers = syncgate_protocol::IntegerDomain::Safe;
                }
            }
            Twist::ClaimsLocalOnlyKeys => {
                init_ok.policies.natural_keys = syncgate_protocol::NaturalKeyPolicy::LocalOnly;
            }
        }
        let replica = DeclaringReplica {
            inner,
            twist: self.0,
            cache: spec.cache.clone(),
            claims_pushed: false,
        };
        Ok((Box::new(replica), init_ok))
    }
}

impl SubjectReplica for DeclaringReplica {
    fn write(&mut self, ops: &[Op]) -> Answer<Vec<i64>> {
        if let Twist::SafeIntegers { .. } = self.twist {
            let safe = syncgate_protocol::IntegerDomain::Safe.max();
            let unsafe_int = ops.iter().flat_map(op_values).find_map(|v| match v {
                syncgate_protocol::Value::Int(i) if i.unsigned_abs() > safe.unsigned_abs() => Some(*i),
                _ => None,
            });
            if let Some(i) = unsafe_int {
                return Answer::Error(format!("{i} is not a safe integer: JSON.parse would round it"));
            }
        }
        let answer = self.inner.write(ops);
        if let (Twist::WriteThrough { swallows_failures }, Answer::Ok(_)) = (self.twist, &answer) {
            let pushed = matches!(self.inner.sync(SyncKind::Push), Answer::Ok(_));
            self.claims_pushed = swallows_failures && !pushed;
        }
        answer
    }
    fn write_aborting(&mut self, ops: &[Op]) -> Answer<()> {
        match self.twist {
            Twist::LeakyAborts => match self.inner.write(ops).cast::<()>() {
                Ok(_) => Answer::Ok(()),
                Err(other) => other,
            },
            _ => self.inner.write_aborting(ops),
        }
    }
    fn sync(&mut self, kind: SyncKind) -> Answer<SyncReport> {
        if let Twist::SyncOnly { .. } = self.twist {
            assert_eq!(kind, SyncKind::Full, "a sync-only engine is sent sync alone");
        }
        let answer = self.inner.sync(kind);
        if matches!(answer, Answer::Ok(_)) && kind != SyncKind::Pull {
            self.claims_pushed = false;
        }
        answer
    }
    fn pending(&mut self) -> Answer<u64> {
        if self.claims_pushed {
            return Answer::Ok(0);
        }
        self.inner.pending()
    }
    fn set_clock(&mut self, ms: i64) -> Answer<()> {
        self.inner.set_clock(ms)
    }
    fn arm_crash(&mut self, point: CrashPoint) -> Answer<()> {
        self.inner.arm_crash(point)
    }
    fn mint_id(&mut self, table: &str) -> Answer<i64> {
        self.inner.mint_id(table)
    }
    fn read(&mut self, table: &str) -> Answer<Vec<ReadRow>> {
        self.inner.read(table)
    }
    fn exec_sql(&mut self, sql: &str, params: &[syncgate_protocol::Value]) -> Answer<(u64, i64)> {
        if !matches!(self.twist, Twist::Delegated { runs: true }) {
            return Answer::Ok((1, 0));
        }
        let run = || -> rusqlite::Result<(u64, i64)> {
            let conn = rusqlite::Connection::open(&self.cache)?;
            conn.pragma_update(None, "foreign_keys", "ON")?;
            conn.pragma_update(None, "recursive_triggers", "ON")?;
            let bound = params.iter().map(|v| match v {
                syncgate_protocol::Value::Int(i) => rusqlite::types::Value::Integer(*i),
                syncgate_protocol::Value::Real(r) => rusqlite::types::Value::Real(r.0),
                syncgate_protocol::Value::Text(s) => rusqlite::types::Value::Text(s.clone()),
                syncgate_protocol::Value::Blob { blob } => rusqlite::types::Value::Blob(blob.0.clone()),
                _ => rusqlite::types::Value::Null,
            });
            let changes = conn.execute(sql, rusqlite::params_from_iter(bound))?;
            Ok((changes as u64, conn.last_insert_rowid()))
        };
        match run() {
            Ok(done) => Answer::Ok(done),
            Err(e) => match e.sqlite_error_code() {
                Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked) => {
                    Answer::Refused(syncgate_protocol::RefusalClass::Busy, e.to_string())
                }
                _ => Answer::Refused(syncgate_protocol::RefusalClass::Other, e.to_string()),
            },
        }
    }
}

/// The values an op writes.
fn op_values(op: &Op) -> Vec<&syncgate_protocol::Value> {
    match op {
        Op::Insert { values, .. } => values.values().collect(),
        Op::Update { set, .. } => set.values().collect(),
        Op::Delete { .. } => Vec::new(),
    }
}
