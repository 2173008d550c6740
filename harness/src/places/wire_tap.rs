//! A wire tap between one replica's engine and the PostgreSQL server.
//!
//! The engine is given the tap's address instead of the server's; the tap
//! forwards every byte both ways and reads the frontend's side of the
//! protocol (PostgreSQL's v3 wire format: a startup packet, then messages of
//! a type byte and a length) for two things:
//!
//! - **counting round trips**: a connection's startup, each simple `Query`
//!   and each `Sync` that ends an extended-protocol exchange. An engine that
//!   reports its round trips (`remote_round_trips`, PROTOCOL.md) is held to
//!   this count. A message is counted before it is forwarded, so once the
//!   engine has its answer, the count holds it;
//! - **cutting sessions**: [`WireTap::cut`] closes every open connection
//!   both ways, as a server restart, an idle timeout or a dropped network
//!   would, between two steps; [`WireTap::refuse_logins`] then answers new
//!   connections as a server that is starting up, or that no longer knows
//!   the role, the password or the database, would;
//! - **pausing a session inside a step** ([`WireTap::arm_pause`]): the
//!   engine's first message after its k-th round trip of the step (or after
//!   the server refused one of its statements as busy) is held until the
//!   harness resumes it. The harness is told once the server has answered
//!   everything the session sent, with the session's transaction status
//!   (read from the server's `ReadyForQuery`) and its backend pid (from
//!   `BackendKeyData`), so it can run another replica's step there.
//!
//! Counts belong to one engine process: [`WireTap::restart`] starts a new
//! count for the connections accepted after it. The tap answers an SSL or
//! GSS encryption request with "no", so the stream stays readable.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread;
use std::time::Duration;

use super::wire_server::{pump_down, ServerEvent, Session};

/// The startup codes a client may send before its real startup packet.
const SSL_REQUEST: i32 = 80_877_103;
const GSSENC_REQUEST: i32 = 80_877_104;
const CANCEL_REQUEST: i32 = 80_877_102;
/// A startup packet is small; a longer one is not PostgreSQL's protocol.
const STARTUP_LEN_MAX: i32 = 10_000;
/// How long a held message waits for the server to answer what the session
/// sent before it; a server that takes longer is not idle, and the pause is
/// reported so.
const ANSWERS_WAIT: Duration = Duration::from_secs(20);

/// When a pause armed for a step holds the engine's next message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PauseAt {
    /// After this many round trips of the step (the first message after
    /// the k-th).
    RoundTrips(u64),
    /// After the server refused one of the engine's statements as busy.
    Busy,
}

/// A session held by a pause, once the server answered all it sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Paused {
    /// The session's transaction status at its last `ReadyForQuery`:
    /// `I` idle, `T` in a transaction, `E` in a failed one.
    pub status: u8,
    /// The session's backend process id, when the server said it.
    pub pid: Option<i32>,
    /// Whether the server answered everything the session sent (else it
    /// did not within the wait, and the session is not quiet).
    pub quiet: bool,
    /// The transactions the engine ended in the step before the hold (a
    /// `ReadyForQuery` that went from in a transaction to idle), when known.
    pub transactions: Option<u64>,
}

/// One replica's tap, listening on 127.0.0.1.
pub(super) struct WireTap {
    local: SocketAddr,
    shared: Arc<Shared>,
}

struct Shared {
    upstream: SocketAddr,
    stopping: AtomicBool,
    state: Mutex<State>,
    /// Signalled when a held message may go on.
    released: Condvar,
}

/// A pause armed for one step.
struct Armed {
    at: Trigger,
    notify: Sender<Paused>,
}

#[derive(Clone, Copy)]
enum Trigger {
    /// The process's round-trip count at which the next message is held.
    RoundTrips(u64),
    /// The busy refusals counted when armed: one more holds.
    Busy(u64),
}

#[derive(Default)]
struct State {
    /// Round trips of the current engine process.
    round_trips: Arc<AtomicU64>,
    /// Every open connection, both ends, to cut them.
    sessions: Vec<(TcpStream, TcpStream)>,
    /// What went wrong in the tap itself (the server refused the tap's
    /// connection, a frame that is not the protocol), for the report.
    trouble: Option<String>,
    /// While set, every new connection's startup is answered with this
    /// FATAL error (SQLSTATE, message) instead of reaching the server.
    refusal: Option<(&'static str, String)>,
    /// Busy refusals the server sent the current engine process.
    busy: u64,
    /// Transactions the current engine process ended.
    transactions: u64,
    /// `transactions` when the armed pause was armed.
    transactions_at_arm: u64,
    /// The pause armed for the current step, until it fires.
    armed: Option<Armed>,
    /// A message is held until the harness resumes it.
    holding: bool,
}

impl WireTap {
    /// Listens on a free port of 127.0.0.1 and forwards to `upstream`.
    pub(super) fn start(upstream: SocketAddr) -> io::Result<WireTap> {
        let listener = TcpListener::bind(("127.0.0.1", 0))?;
        let local = listener.local_addr()?;
        let shared = Arc::new(Shared {
            upstream,
            stopping: AtomicBool::new(false),
            state: Mutex::new(State::default()),
            released: Condvar::new(),
        });
        let accepting = Arc::clone(&shared);
        thread::Builder::new()
            .name("syncgate-wire-tap".into())
            .spawn(move || accept_loop(&listener, &accepting))?;
        Ok(WireTap { local, shared })
    }

    /// The address the engine connects to.
    pub(super) fn local(&self) -> SocketAddr {
        self.local
    }

    /// A new engine process starts: its round trips count from zero.
    pub(super) fn restart(&self) {
        let mut state = self.shared.lock();
        state.round_trips = Arc::new(AtomicU64::new(0));
        state.sessions.clear();
        state.busy = 0;
        state.transactions = 0;
    }

    /// Round trips of the current engine process so far.
    pub(super) fn round_trips(&self) -> u64 {
        self.shared.lock().round_trips.load(Ordering::SeqCst)
    }

    /// Answers new connections with a FATAL error of SQLSTATE `code`
    /// (`None`: lets them through again). A refused startup counts as a
    /// round trip, as the server's own refusal would.
    pub(super) fn refuse_logins(&self, refusal: Option<(&'static str, String)>) {
        self.shared.lock().refusal = refusal;
    }

    /// What went wrong in the tap, if anything did.
    pub(super) fn trouble(&self) -> Option<String> {
        self.shared.lock().trouble.clone()
    }

    /// Arms a pause for the step about to run: the engine's first message
    /// after `at` is held, and `notify` is told once the server answered
    /// all the session sent. [`WireTap::resume`] lets it go on.
    pub(super) fn arm_pause(&self, at: PauseAt, notify: Sender<Paused>) {
        let mut state = self.shared.lock();
        let at = match at {
            PauseAt::RoundTrips(k) => Trigger::RoundTrips(state.round_trips.load(Ordering::SeqCst) + k),
            PauseAt::Busy => Trigger::Busy(state.busy),
        };
        state.transactions_at_arm = state.transactions;
        state.armed = Some(Armed { at, notify });
    }

    /// Lets a held message go on, and disarms a pause that has not fired.
    pub(super) fn resume(&self) {
        let mut state = self.shared.lock();
        state.armed = None;
        state.holding = false;
        self.shared.released.notify_all();
    }

    /// Closes every open connection both ways; how many there were.
    pub(super) fn cut(&self) -> usize {
        let sessions = std::mem::take(&mut self.shared.lock().sessions);
        for (client, server) in &sessions {
            // Either end may be closed already.
            let _ = client.shutdown(Shutdown::Both);
            let _ = server.shutdown(Shutdown::Both);
        }
        sessions.len()
    }
}

impl Drop for WireTap {
    fn drop(&mut self) {
        self.resume();
        self.shared.stopping.store(true, Ordering::SeqCst);
        self.cut();
        // Wake the accepting thread so it sees `stopping`.
        let _ = TcpStream::connect(self.local);
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panicking forwarder leaves the counts as they were.
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Holds the session's next message when the armed pause is due: waits
    /// for the server to answer what the session sent, tells the harness,
    /// and waits until it resumes.
    fn hold_if_due(&self, session: &Session) {
        let mut state = self.lock();
        let due = match state.armed.as_ref().map(|a| a.at) {
            Some(Trigger::RoundTrips(at)) => state.round_trips.load(Ordering::SeqCst) >= at,
            Some(Trigger::Busy(seen)) => state.busy > seen,
            None => false,
        };
        if !due {
            return;
        }
        let Some(armed) = state.armed.take() else { return };
        state.holding = true;
        drop(state);
        let paused = {
            let wire = session.lock();
            let (wire, waited) = session
                .answered
                .wait_timeout_while(wire, ANSWERS_WAIT, |w| w.answered < w.sent)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            Paused {
                status: wire.status,
                pid: wire.pid,
                quiet: !waited.timed_out(),
                transactions: None,
            }
        };
        let mut state = self.lock();
        let paused = Paused {
            transactions: Some(state.transactions - state.transactions_at_arm),
            ..paused
        };
        if armed.notify.send(paused).is_err() {
            state.holding = false;
            return;
        }
        while state.holding && !self.stopping.load(Ordering::SeqCst) {
            state = self
                .released
                .wait(state)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
        }
    }

    fn note_trouble(&self, what: String) {
        let mut state = self.lock();
        if state.trouble.is_none() {
            state.trouble = Some(what);
        }
    }
}

fn accept_loop(listener: &TcpListener, shared: &Arc<Shared>) {
    for client in listener.incoming() {
        if shared.stopping.load(Ordering::SeqCst) {
            return;
        }
        let Ok(client) = client else { continue };
        if let Err(e) = forward(client, shared) {
            shared.note_trouble(format!("the wire tap could not reach {}: {e}", shared.upstream));
        }
    }
}

/// Connects the accepted engine connection to the server and starts its two
/// forwarders.
fn forward(client: TcpStream, shared: &Arc<Shared>) -> io::Result<()> {
    let server = TcpStream::connect(shared.upstream)?;
    client.set_nodelay(true)?;
    server.set_nodelay(true)?;
    let round_trips = {
        let mut state = shared.lock();
        state.sessions.push((client.try_clone()?, server.try_clone()?));
        Arc::clone(&state.round_trips)
    };
    let (to_client, from_server) = (client.try_clone()?, server.try_clone()?);
    let session = Arc::new(Session::default());
    let (reading, answers) = (Arc::clone(shared), Arc::clone(&session));
    thread::Builder::new()
        .name("syncgate-wire-tap-down".into())
        .spawn(move || {
            let mut to_client = to_client;
            let _ = pump_down(from_server, &mut to_client, &answers, |event| {
                let mut state = reading.lock();
                match event {
                    ServerEvent::TransactionEnded => state.transactions += 1,
                    ServerEvent::Busy => state.busy += 1,
                }
            });
            let _ = to_client.shutdown(Shutdown::Write);
            // The session is gone: a held message waits for nothing more.
            let mut wire = answers.lock();
            wire.answered = wire.sent;
            answers.answered.notify_all();
        })?;
    let counting = Arc::clone(shared);
    thread::Builder::new()
        .name("syncgate-wire-tap-up".into())
        .spawn(move || {
            if let Err(e) = pump_up(client, server, &round_trips, &session, &counting) {
                if e.kind() == io::ErrorKind::InvalidData {
                    counting.note_trouble(e.to_string());
                }
            }
        })?;
    Ok(())
}

/// Forwards the engine's side, counting its round trips.
fn pump_up(
    mut client: TcpStream,
    mut server: TcpStream,
    round_trips: &AtomicU64,
    session: &Session,
    shared: &Shared,
) -> io::Result<()> {
    loop {
        let mut head = [0_u8; 8];
        client.read_exact(&mut head)?;
        let len = i32::from_be_bytes([head[0], head[1], head[2], head[3]]);
        let code = i32::from_be_bytes([head[4], head[5], head[6], head[7]]);
        if !(8..=STARTUP_LEN_MAX).contains(&len) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("the engine sent a startup packet of length {len}, not PostgreSQL's protocol"),
            ));
        }
        let mut body = vec![0_u8; (len - 8) as usize];
        client.read_exact(&mut body)?;
        if code == SSL_REQUEST || code == GSSENC_REQUEST {
            client.write_all(b"N")?;
            continue;
        }
        if code != CANCEL_REQUEST {
            round_trips.fetch_add(1, Ordering::SeqCst);
            session.lock().sent += 1;
            let refusal = shared.lock().refusal.clone();
            if let Some((sqlstate, message)) = refusal {
                client.write_all(&fatal_error(sqlstate, &message))?;
                let _ = client.shutdown(Shutdown::Both);
                let _ = server.shutdown(Shutdown::Both);
                return Ok(());
            }
        }
        server.write_all(&head)?;
        server.write_all(&body)?;
        break;
    }
    loop {
        let mut head = [0_u8; 5];
        match client.read_exact(&mut head) {
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => break,
            other => other?,
        }
        let len = i32::from_be_bytes([head[1], head[2], head[3], head[4]]);
        if len < 4 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("the engine sent a message of length {len}, not PostgreSQL's protocol"),
            ));
        }
        shared.hold_if_due(session);
        if matches!(head[0], b'Q' | b'S') {
            round_trips.fetch_add(1, Ordering::SeqCst);
            session.lock().sent += 1;
        }
        server.write_all(&head)?;
        let body = u64::try_from(len - 4).unwrap_or(0);
        let copied = io::copy(&mut (&client).take(body), &mut server)?;
        if copied < body {
            break;
        }
    }
    let _ = server.shutdown(Shutdown::Write);
    Ok(())
}

/// A FATAL `ErrorResponse` message, as a server sends it in place of
/// `AuthenticationOk`.
fn fatal_error(sqlstate: &str, message: &str) -> Vec<u8> {
    let mut fields = Vec::new();
    for (tag, value) in [(b'S', "FATAL"), (b'V', "FATAL"), (b'C', sqlstate), (b'M', message)] {
        fields.push(tag);
        fields.extend_from_slice(value.as_bytes());
        fields.push(0);
    }
    fields.push(0);
    let len = i32::try_from(fields.len() + 4).unwrap_or(i32::MAX);
    let mut out = vec![b'E'];
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&fields);
    out
}

/// The server a `postgres://` or `postgresql://` URL names, when it names
/// one TCP host (a Unix socket or several hosts cannot be tapped).
pub(super) fn upstream_of(url: &str) -> Option<SocketAddr> {
    use std::net::ToSocketAddrs;
    let config: syncgate_engine::postgres::Config = url.parse().ok()?;
    let [syncgate_engine::postgres::config::Host::Tcp(host)] = config.get_hosts() else {
        return None;
    };
    let port = match config.get_ports() {
        [] => 5432,
        [port] => *port,
        _ => return None,
    };
    (host.as_str(), port).to_socket_addrs().ok()?.next()
}

/// `url` with its host and port replaced by `local`'s, or `None` for a
/// connection string that is not a URL with one host.
pub(super) fn tapped_url(url: &str, local: SocketAddr) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let (userinfo, hostport) = match authority.rsplit_once('@') {
        Some((userinfo, hostport)) => (Some(userinfo), hostport),
        None => (None, authority),
    };
    if hostport.contains(',') {
        return None;
    }
    let userinfo = userinfo.map_or_else(String::new, |u| format!("{u}@"));
    Some(format!("{scheme}://{userinfo}{local}{tail}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_url_is_pointed_at_the_tap_with_everything_else_kept() {
        let local: SocketAddr = "127.0.0.1:40001".parse().unwrap();
        assert_eq!(
            tapped_url("postgresql://root@127.0.0.1:5432/test?connect_timeout=3", local).as_deref(),
            Some("postgresql://root@127.0.0.1:40001/test?connect_timeout=3")
        );
        assert_eq!(
            tapped_url("postgres://u:p%40ss@db.example/app", local).as_deref(),
            Some("postgres://u:p%40ss@127.0.0.1:40001/app")
        );
        assert_eq!(tapped_url("host=localhost dbname=test", local), None);
        assert_eq!(tapped_url("postgresql://a:1,b:2/test", local), None);
    }
}
