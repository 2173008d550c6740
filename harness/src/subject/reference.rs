//! The reference engine (and its mutants) run in the harness's own process,
//! through the same request handler as its protocol adapter: the fast path
//! for the gate on the reference engine.

use syncgate_engine::Mutant;
use syncgate_protocol::{InitOk, Request, Response};
use syncgate_reference_adapter::{init_ok, CrashMode, Handled, HoldAt, Options, ReferenceAdapter};

use super::{
    reported_round_trips, Answer, BusyTriesReported, CrashPoint, Op, OpenError, OpenSpec, ReadRow, Subject,
    SubjectReplica, SyncReport,
};
use crate::places::PauseAt;
use crate::scenario::SyncKind;

/// The reference engine, optionally with one planted bug or an incidental
/// variation.
pub struct ReferenceEngine {
    pub options: Options,
}

impl ReferenceEngine {
    pub fn new() -> ReferenceEngine {
        ReferenceEngine::with(Options::default())
    }

    /// The reference engine with one planted bug.
    pub fn mutant(mutant: Mutant) -> ReferenceEngine {
        ReferenceEngine::with(Options {
            mutant: Some(mutant),
            ..Options::default()
        })
    }

    pub fn with(options: Options) -> ReferenceEngine {
        ReferenceEngine { options }
    }
}

impl Default for ReferenceEngine {
    fn default() -> Self {
        ReferenceEngine::new()
    }
}

impl Subject for ReferenceEngine {
    fn name(&self) -> String {
        self.options.engine_name()
    }

    fn files_are_copyable(&self) -> bool {
        true
    }

    fn held_at_seam(&self) -> bool {
        true
    }

    fn open_replica(&self, spec: &OpenSpec) -> Result<(Box<dyn SubjectReplica>, InitOk), OpenError> {
        let init = spec.init();
        let adapter = ReferenceAdapter::open(&init, &self.options, CrashMode::Error).map_err(OpenError::Refused)?;
        Ok((
            Box::new(InProcess {
                adapter,
                last_busy: None,
                last_round_trips: None,
            }),
            init_ok(&self.options),
        ))
    }
}

struct InProcess {
    adapter: ReferenceAdapter,
    /// The tries the last reply reported, if it was a busy sync failure.
    last_busy: Option<BusyTriesReported>,
    /// The round trips the last reply reported, if it was a sync's.
    last_round_trips: Option<u64>,
}

impl InProcess {
    fn ask(&mut self, request: &Request) -> Answer<Response> {
        let handled = self.adapter.handle(request);
        (self.last_busy, self.last_round_trips) = match &handled {
            Handled::Reply(response) => (BusyTriesReported::of(response), reported_round_trips(response)),
            Handled::Crashed => (None, None),
        };
        match handled {
            Handled::Crashed => Answer::Crashed,
            Handled::Reply(Response::Error { code, message }) => Answer::Error(format!("{code:?}: {message}")),
            Handled::Reply(Response::Refused { class, message }) => Answer::Refused(class, message),
            Handled::Reply(Response::SyncFailed { class, message, .. }) => Answer::Failed(class, message),
            Handled::Reply(other) => Answer::Ok(other),
        }
    }
}

/// The payload of a reply of the expected type, or `Broken` naming both.
pub(crate) fn expect<T>(answer: Answer<Response>, wanted: &str, take: impl FnOnce(Response) -> Option<T>) -> Answer<T> {
    match answer.cast::<T>() {
        Err(other) => other,
        Ok(response) => {
            let got = response.name();
            match take(response) {
                Some(t) => Answer::Ok(t),
                None => Answer::Broken(format!("answered {got} to a {wanted} request")),
            }
        }
    }
}

impl SubjectReplica for InProcess {
    fn write(&mut self, ops: &[Op]) -> Answer<Vec<i64>> {
        let answer = self.ask(&Request::Write {
            ops: ops.to_vec(),
            abort: false,
        });
        expect(answer, "write", |r| match r {
            Response::WriteOk { ids, .. } => Some(ids),
            _ => None,
        })
    }

    fn write_aborting(&mut self, ops: &[Op]) -> Answer<()> {
        let answer = self.ask(&Request::Write {
            ops: ops.to_vec(),
            abort: true,
        });
        expect(answer, "write with abort", |r| {
            matches!(r, Response::WriteAborted { .. }).then_some(())
        })
    }

    fn sync(&mut self, kind: SyncKind) -> Answer<SyncReport> {
        let answer = self.ask(&sync_request(kind));
        expect(answer, "sync", |r| match r {
            Response::SyncOk(report) => Some(report),
            _ => None,
        })
    }

    fn pending(&mut self) -> Answer<u64> {
        let answer = self.ask(&Request::Pending);
        expect(answer, "pending", |r| match r {
            Response::PendingOk { pending } => Some(pending),
            _ => None,
        })
    }

    fn set_clock(&mut self, ms: i64) -> Answer<()> {
        let answer = self.ask(&Request::SetClock { ms });
        expect(answer, "set_clock", |r| matches!(r, Response::SetClockOk).then_some(()))
    }

    fn arm_crash(&mut self, point: CrashPoint) -> Answer<()> {
        let answer = self.ask(&Request::ArmCrash { point });
        expect(answer, "arm_crash", |r| matches!(r, Response::ArmCrashOk).then_some(()))
    }

    fn mint_id(&mut self, table: &str) -> Answer<i64> {
        let answer = self.ask(&Request::MintId { table: table.into() });
        expect(answer, "mint_id", |r| match r {
            Response::MintIdOk { id } => Some(id),
            _ => None,
        })
    }

    fn read(&mut self, table: &str) -> Answer<Vec<ReadRow>> {
        let answer = self.ask(&Request::Read { table: table.into() });
        expect(answer, "read", |r| match r {
            Response::ReadOk { rows } => Some(rows),
            _ => None,
        })
    }

    fn exec_sql(&mut self, sql: &str, params: &[syncgate_protocol::Value]) -> Answer<(u64, i64)> {
        let answer = self.ask(&Request::ExecSql {
            sql: sql.into(),
            params: params.to_vec(),
        });
        expect(answer, "exec_sql", |r| match r {
            Response::ExecSqlOk {
                changes,
                last_insert_rowid,
            } => Some((changes, last_insert_rowid)),
            _ => None,
        })
    }

    fn last_busy_tries(&self) -> Option<BusyTriesReported> {
        self.last_busy
    }

    fn last_remote_round_trips(&self) -> Option<u64> {
        self.last_round_trips
    }

    fn pausable(&self) -> bool {
        true
    }

    fn arm_pause(&mut self, at: PauseAt, reached: Box<dyn FnOnce() + Send>) -> Option<Box<dyn Fn() + Send>> {
        let switch = self.adapter.pause_switch();
        let at = match at {
            PauseAt::RoundTrips(after) => HoldAt::Transaction(after),
            PauseAt::Busy => HoldAt::Backoff,
        };
        switch.arm(at, reached);
        Some(Box::new(move || switch.resume()))
    }
}

/// The protocol request for a sync step.
pub(crate) fn sync_request(kind: SyncKind) -> Request {
    match kind {
        SyncKind::Push => Request::Push,
        SyncKind::Pull => Request::Pull,
        SyncKind::Full => Request::Sync,
    }
}
