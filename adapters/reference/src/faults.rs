//! Crash points: a wrapper around the remote that stops a sync at a
//! named point (PROTOCOL.md, `arm_crash`).

use std::sync::{Arc, Mutex, MutexGuard};

use syncgate_engine::rusqlite::types::Value;
use syncgate_engine::{Change, ChangeKind, Error, Remote, RemoteRow, RemoteWrites};
use syncgate_protocol::CrashPoint;

/// The words of the error an in-process crash returns (for logs; the
/// adapter tells a crash from a real failure by asking the [`FaultSwitch`]).
pub const INJECTED: &str = "injected crash";

/// What reaching an armed crash point does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CrashMode {
    /// Return an error (the harness runs the adapter in its own process and
    /// drops the replica, as if it had died); the switch records that it
    /// fired.
    Error,
    /// Exit the process at once, as a crash would (the `exec:` adapter).
    Exit,
}

/// Exit code of a process that stopped at a crash point.
pub const CRASH_EXIT_CODE: i32 = 70;

/// The crash point armed for the next sync, shared by the adapter and its
/// remote wrapper, and whether one fired during it.
/// (Shared across threads: the harness may run a sync on a thread of its
/// own while it runs another replica's step.)
#[derive(Clone, Default)]
pub struct FaultSwitch {
    points: Arc<Mutex<Points>>,
}

#[derive(Default)]
struct Points {
    armed: Option<CrashPoint>,
    fired: Option<CrashPoint>,
}

impl FaultSwitch {
    fn points(&self) -> MutexGuard<'_, Points> {
        self.points.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
    pub fn arm(&self, point: CrashPoint) {
        let mut points = self.points();
        points.armed = Some(point);
        points.fired = None;
    }
    /// Disarms the switch (an armed crash lasts one sync request, reached or
    /// not); returns the point that fired during it, if one did.
    pub fn disarm(&self) -> Option<CrashPoint> {
        let mut points = self.points();
        points.armed = None;
        points.fired.take()
    }
    fn armed(&self) -> Option<CrashPoint> {
        self.points().armed
    }
    fn fire_if(&self, point: CrashPoint) -> bool {
        if self.armed() == Some(point) {
            self.fire(point);
            true
        } else {
            false
        }
    }
    fn fire(&self, point: CrashPoint) {
        let mut points = self.points();
        points.armed = None;
        points.fired = Some(point);
    }
}

/// A remote (SQLite or PostgreSQL) with crash points.
pub struct FaultyRemote {
    pub(crate) inner: Box<dyn Remote + Send>,
    pub(crate) faults: FaultSwitch,
    pause: crate::pause::PauseSwitch,
    pub(crate) mode: CrashMode,
    writing: bool,
}

impl FaultyRemote {
    pub fn new(
        inner: Box<dyn Remote + Send>,
        faults: FaultSwitch,
        pause: crate::pause::PauseSwitch,
        mode: CrashMode,
    ) -> FaultyRemote {
        FaultyRemote {
            inner,
            faults,
            pause,
            mode,
            writing: false,
        }
    }

    fn crash(&self, where_: &str) -> Error {
        if self.mode == CrashMode::Exit {
            eprintln!("syncgate-reference-adapter: crash point reached: {where_}");
            std::process::exit(CRASH_EXIT_CODE);
        }
        Error::RemoteUnavailable(format!("{INJECTED} {where_}"))
    }
}

impl Remote for FaultyRemote {
    fn register_replica(&mut self) -> syncgate_engine::Result<u32> {
        self.inner.register_replica()
    }
    fn begin_write(&mut self) -> syncgate_engine::Result<()> {
        self.pause.at_begin();
        self.writing = true;
        self.inner.begin_write()
    }
    fn begin_read(&mut self) -> syncgate_engine::Result<()> {
        self.pause.at_begin();
        self.writing = false;
        self.inner.begin_read()
    }
    fn commit(&mut self) -> syncgate_engine::Result<()> {
        if self.writing && self.faults.fire_if(CrashPoint::PushBeforeRemoteCommit) {
            self.inner.rollback();
            return Err(self.crash("before the remote commit"));
        }
        if self.writing && self.faults.armed() == Some(CrashPoint::PushAfterRemoteCommit) {
            // Stays armed if the commit itself fails (busy): the crash is
            // after a commit that happened.
            self.inner.commit()?;
            self.faults.fire(CrashPoint::PushAfterRemoteCommit);
            return Err(self.crash("after the remote commit"));
        }
        self.inner.commit()
    }
    fn rollback(&mut self) {
        self.inner.rollback()
    }
    fn acked(&mut self, replica: u32) -> syncgate_engine::Result<i64> {
        self.inner.acked(replica)
    }
    fn head(&mut self) -> syncgate_engine::Result<i64> {
        self.inner.head()
    }
    fn rows(&mut self, table: usize, ids: &[i64]) -> syncgate_engine::Result<Vec<(i64, RemoteRow)>> {
        self.inner.rows(table, ids)
    }
    fn live_with_keys(&mut self, table: usize, keys: &[Value]) -> syncgate_engine::Result<Vec<(Value, i64)>> {
        self.inner.live_with_keys(table, keys)
    }
    fn live_children(
        &mut self,
        table: usize,
        column: usize,
        parents: &[i64],
    ) -> syncgate_engine::Result<Vec<(i64, i64)>> {
        self.inner.live_children(table, column, parents)
    }
    fn write(&mut self, writes: &RemoteWrites) -> syncgate_engine::Result<()> {
        self.inner.write(writes)
    }
    fn changes(
        &mut self,
        kind: ChangeKind,
        after: i64,
        upto: i64,
        limit: usize,
    ) -> syncgate_engine::Result<Vec<Change>> {
        if kind == ChangeKind::Live && self.faults.fire_if(CrashPoint::PullBeforeLocalCommit) {
            return Err(self.crash("in the middle of a pull"));
        }
        self.inner.changes(kind, after, upto, limit)
    }
}
