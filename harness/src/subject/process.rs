//! Any engine, in any language, behind an `exec:` command: one process per
//! replica speaking JSON lines on stdin/stdout (`PROTOCOL.md`).
//!
//! A bad engine gets a clear answer, never a hang or a false pass: a process
//! that does not answer within the request timeout is killed, a line that is
//! not a reply or an exit outside an armed crash point is
//! [`Answer::Broken`], and every such answer carries the tail of the
//! process's stderr.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use syncgate_protocol::{Envelope, InitOk, Reply, Request, Response, DESIGNED_NOT_CHECKED, VERSIONS};

use super::reference::{expect, sync_request};
use super::{
    reported_renumberings, reported_round_trips, Answer, BusyTriesReported, CrashPoint, HoldClock, Op, OpenError,
    OpenSpec, ReadRow, Renumbering, Subject, SubjectReplica, SyncReport,
};
use crate::scenario::SyncKind;

/// Lines of an engine's stderr kept for failure reports.
pub const LOG_TAIL_LINES_MAX: usize = 40;
/// Default bound on the answer to one request.
pub const REQUEST_TIMEOUT_MS_DEFAULT: u64 = 10_000;

/// An engine started by a shell command, one process per replica.
pub struct ProcessEngine {
    command: String,
    timeout: Duration,
    /// The fields of the last handshake this harness does not know.
    ignored: Mutex<Vec<String>>,
}

impl ProcessEngine {
    pub fn new(command: &str, timeout_ms: u64) -> ProcessEngine {
        ProcessEngine {
            command: command.to_string(),
            timeout: Duration::from_millis(timeout_ms),
            ignored: Mutex::new(Vec::new()),
        }
    }
}

impl Subject for ProcessEngine {
    fn name(&self) -> String {
        format!("exec:{}", self.command)
    }

    fn ignored_declarations(&self) -> Vec<String> {
        self.ignored.lock().map(|i| i.clone()).unwrap_or_default()
    }

    fn open_replica(&self, spec: &OpenSpec) -> Result<(Box<dyn SubjectReplica>, InitOk), OpenError> {
        let mut process = Process::spawn(&self.command, self.timeout)?;
        let init = spec.init();
        let answer = process.request(Request::Init(Box::new(init)));
        let ok = match expect(answer, "init", |r| match r {
            Response::InitOk(ok) => Some(ok),
            _ => None,
        }) {
            Answer::Ok(ok) => ok,
            other => {
                return Err(OpenError::Handshake(format!(
                    "the handshake with `{}` failed: {}{}",
                    self.command,
                    describe(&other),
                    process.log_tail_block()
                )))
            }
        };
        if !VERSIONS.contains(&ok.protocol) {
            return Err(OpenError::Handshake(format!(
                "`{}` speaks protocol version {}, this syncgate speaks {VERSIONS:?}: update the adapter or syncgate",
                self.command, ok.protocol
            )));
        }
        let unknown = process.last_reply_fields.clone();
        if let Some(designed) = unknown.iter().find(|f| DESIGNED_NOT_CHECKED.contains(&f.as_str())) {
            return Err(OpenError::Handshake(format!(
                "`{}` declares {designed}, which this syncgate does not check yet (PROTOCOL.md, \
                 \"Designed, not yet checked\"): leave it out, or run a syncgate that checks it",
                self.command
            )));
        }
        if let Ok(mut ignored) = self.ignored.lock() {
            *ignored = unknown;
        }
        Ok((Box::new(process), ok))
    }
}

/// A one-line description of a non-`Ok` answer.
fn describe<T: std::fmt::Debug>(answer: &Answer<T>) -> String {
    match answer {
        Answer::Ok(t) => format!("{t:?}"),
        Answer::Refused(c, m) => format!("refused ({c:?}): {m}"),
        Answer::Failed(c, m) => format!("failed ({c:?}): {m}"),
        Answer::Crashed => "crashed".into(),
        Answer::Error(e) | Answer::Broken(e) => e.clone(),
    }
}

/// One engine process.
struct Process {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<Option<String>>,
    log: Arc<Mutex<VecDeque<String>>>,
    next_msg_id: u64,
    crash_armed: bool,
    timeout: Duration,
    /// Set once the process broke the protocol; every later request fails.
    broken: Option<String>,
    /// The tries the last reply reported, if it was a busy sync failure.
    last_busy: Option<BusyTriesReported>,
    /// The round trips the last reply reported, if it was a sync's.
    last_round_trips: Option<u64>,
    /// The fields of the last reply's `init_ok` this harness does not know.
    last_reply_fields: Vec<String>,
    /// Renumberings the replies reported, not yet taken.
    renumbered: Vec<Renumbering>,
    /// The harness's holds at the wire tap, left out of the timeout.
    holds: Arc<HoldClock>,
}

impl Process {
    fn spawn(command: &str, timeout: Duration) -> Result<Process, OpenError> {
        let mut child = Command::new("/bin/sh")
            .arg("-c")
            .arg(format!("exec {command}"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| OpenError::Start(format!("cannot start `{command}` with /bin/sh: {e}")))?;
        let (Some(stdout), Some(stderr)) = (child.stdout.take(), child.stderr.take()) else {
            unreachable!("both pipes were asked for")
        };
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                match line {
                    Ok(line) => {
                        if tx.send(Some(line)).is_err() {
                            return;
                        }
                    }
                    Err(_) => break,
                }
            }
            let _ = tx.send(None);
        });
        let log = Arc::new(Mutex::new(VecDeque::new()));
        let log_writer = Arc::clone(&log);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Ok(mut log) = log_writer.lock() {
                    if log.len() == LOG_TAIL_LINES_MAX {
                        log.pop_front();
                    }
                    log.push_back(line);
                }
            }
        });
        Ok(Process {
            stdin: child.stdin.take(),
            child,
            lines,
            log,
            next_msg_id: 0,
            crash_armed: false,
            timeout,
            broken: None,
            last_busy: None,
            last_round_trips: None,
            last_reply_fields: Vec::new(),
            renumbered: Vec::new(),
            holds: Arc::default(),
        })
    }

    fn log_tail_block(&self) -> String {
        let tail = self.log_tail();
        if tail.is_empty() {
            String::new()
        } else {
            format!("\n  engine stderr (last lines):\n{tail}")
        }
    }

    /// Sends one request and waits for its reply.
    fn request(&mut self, body: Request) -> Answer<Response> {
        if let Some(why) = &self.broken {
            return Answer::Broken(format!("the process broke the protocol earlier: {why}"));
        }
        let name = body.name();
        let is_sync = matches!(body, Request::Push | Request::Pull | Request::Sync);
        let crash_expected = is_sync && self.crash_armed;
        if is_sync {
            self.crash_armed = false;
        }
        let msg_id = self.next_msg_id;
        self.next_msg_id += 1;
        let text = match serde_json::to_string(&Envelope { msg_id, body }) {
            Ok(text) => text,
            Err(e) => return Answer::Error(format!("cannot encode a {name} request: {e}")),
        };
        let sent = self
            .stdin
            .as_mut()
            .map(|stdin| writeln!(stdin, "{text}").and_then(|()| stdin.flush()));
        if !matches!(sent, Some(Ok(()))) {
            return self.exited(name, crash_expected);
        }
        match self.wait_for_line() {
            Ok(Some(line)) => self.parse(&line, msg_id, name),
            Ok(None) | Err(RecvTimeoutError::Disconnected) => self.exited(name, crash_expected),
            Err(RecvTimeoutError::Timeout) => {
                let _ = self.child.kill();
                self.broke(format!(
                    "no answer within {} ms to a {name} request (process killed; raise --request-timeout-ms if the engine is just slow)",
                    self.timeout.as_millis()
                ))
            }
        }
    }

    /// The next line; a request times out only after a whole timeout in
    /// which the harness did not hold the engine at its wire tap.
    fn wait_for_line(&self) -> Result<Option<String>, RecvTimeoutError> {
        let (_, mut holds_seen) = self.holds.read();
        loop {
            match self.lines.recv_timeout(self.timeout) {
                Err(RecvTimeoutError::Timeout) => {
                    let (holding, holds) = self.holds.read();
                    if !holding && holds == holds_seen {
                        return Err(RecvTimeoutError::Timeout);
                    }
                    holds_seen = holds;
                }
                other => return other,
            }
        }
    }

    fn parse(&mut self, line: &str, msg_id: u64, name: &str) -> Answer<Response> {
        let reply: Reply<Response> = match serde_json::from_str(line) {
            Ok(reply) => reply,
            Err(e) => {
                let shown: String = line.chars().take(200).collect();
                return self.broke(format!(
                    "printed a line that is not a protocol reply to a {name} request: {shown:?} ({e}); stdout belongs to the protocol, log to stderr"
                ));
            }
        };
        if reply.in_reply_to != msg_id {
            return self.broke(format!(
                "answered in_reply_to {} to request {msg_id} ({name})",
                reply.in_reply_to
            ));
        }
        if let (Response::InitOk(_), Ok(raw)) = (&reply.body, serde_json::from_str(line)) {
            self.last_reply_fields = syncgate_protocol::unknown_declarations(&raw);
        }
        self.renumbered.extend(reported_renumberings(&reply.body));
        self.last_busy = BusyTriesReported::of(&reply.body);
        self.last_round_trips = reported_round_trips(&reply.body);
        match reply.body {
            Response::Error { code, message } => Answer::Error(format!("{code:?}: {message}")),
            Response::Refused { class, message } => Answer::Refused(class, message),
            Response::SyncFailed { class, message, .. } => Answer::Failed(class, message),
            other => Answer::Ok(other),
        }
    }

    /// The process closed stdout: a crash if one was armed for this sync,
    /// else a protocol violation.
    fn exited(&mut self, name: &str, crash_expected: bool) -> Answer<Response> {
        let status = self.wait_for_exit();
        if crash_expected {
            self.broken = Some("it stopped at a crash point".into());
            return Answer::Crashed;
        }
        self.broke(format!(
            "exited ({status}) outside a crash point, while answering a {name} request"
        ))
    }

    fn wait_for_exit(&mut self) -> String {
        // The process closed stdout; give it the request timeout to exit.
        let mut waited = Duration::ZERO;
        let step = Duration::from_millis(2);
        while waited < self.timeout {
            match self.child.try_wait() {
                Ok(Some(status)) => return status.to_string(),
                Ok(None) => {}
                Err(e) => return format!("cannot tell: {e}"),
            }
            std::thread::sleep(step);
            waited += step;
        }
        let _ = self.child.kill();
        "still running with stdout closed; killed".into()
    }

    fn broke(&mut self, why: String) -> Answer<Response> {
        // Let the stderr reader catch up with what the process said last.
        std::thread::sleep(Duration::from_millis(20));
        let full = format!("{why}{}", self.log_tail_block());
        self.broken = Some(why);
        Answer::Broken(full)
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        // Close stdin first (a polite end), then SIGKILL: nothing in memory
        // survives, as in production.
        drop(self.stdin.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl SubjectReplica for Process {
    fn hold_clock(&self) -> Option<Arc<HoldClock>> {
        Some(Arc::clone(&self.holds))
    }
    fn last_busy_tries(&self) -> Option<BusyTriesReported> {
        self.last_busy
    }

    fn last_remote_round_trips(&self) -> Option<u64> {
        self.last_round_trips
    }

    fn write(&mut self, ops: &[Op]) -> Answer<Vec<i64>> {
        let answer = self.request(Request::Write {
            ops: ops.to_vec(),
            abort: false,
        });
        expect(answer, "write", |r| match r {
            Response::WriteOk { ids, .. } => Some(ids),
            _ => None,
        })
    }

    fn write_aborting(&mut self, ops: &[Op]) -> Answer<()> {
        let answer = self.request(Request::Write {
            ops: ops.to_vec(),
            abort: true,
        });
        expect(answer, "write with abort", |r| {
            matches!(r, Response::WriteAborted { .. }).then_some(())
        })
    }

    fn sync(&mut self, kind: SyncKind) -> Answer<SyncReport> {
        let answer = self.request(sync_request(kind));
        expect(answer, "sync", |r| match r {
            Response::SyncOk(report) => Some(report),
            _ => None,
        })
    }

    fn pending(&mut self) -> Answer<u64> {
        let answer = self.request(Request::Pending);
        expect(answer, "pending", |r| match r {
            Response::PendingOk { pending } => Some(pending),
            _ => None,
        })
    }

    fn set_clock(&mut self, ms: i64) -> Answer<()> {
        let answer = self.request(Request::SetClock { ms });
        expect(answer, "set_clock", |r| matches!(r, Response::SetClockOk).then_some(()))
    }

    fn arm_crash(&mut self, point: CrashPoint) -> Answer<()> {
        let answer = self.request(Request::ArmCrash { point });
        let answer = expect(answer, "arm_crash", |r| matches!(r, Response::ArmCrashOk).then_some(()));
        if answer == Answer::Ok(()) {
            self.crash_armed = true;
        }
        answer
    }

    fn mint_id(&mut self, table: &str) -> Answer<i64> {
        let answer = self.request(Request::MintId { table: table.into() });
        expect(answer, "mint_id", |r| match r {
            Response::MintIdOk { id } => Some(id),
            _ => None,
        })
    }

    fn read(&mut self, table: &str) -> Answer<Vec<ReadRow>> {
        let answer = self.request(Request::Read { table: table.into() });
        expect(answer, "read", |r| match r {
            Response::ReadOk { rows } => Some(rows),
            _ => None,
        })
    }

    fn exec_sql(&mut self, sql: &str, params: &[syncgate_protocol::Value]) -> Answer<(u64, i64)> {
        let answer = self.request(Request::ExecSql {
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

    fn take_renumbered(&mut self) -> Vec<Renumbering> {
        std::mem::take(&mut self.renumbered)
    }

    fn log_tail(&self) -> String {
        self.log
            .lock()
            .map(|log| log.iter().map(|l| format!("    {l}\n")).collect())
            .unwrap_or_default()
    }
}
