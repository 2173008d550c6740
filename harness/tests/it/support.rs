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
