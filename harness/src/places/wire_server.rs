//! What the wire tap reads of the server's side of one session: each
//! `ReadyForQuery` (answered round trips, the transaction status, a
//! transaction that ended), the backend's pid, and busy refusals. The tap
//! (`wire_tap.rs`) holds a session's next message on what this reads.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::sync::{Condvar, Mutex, MutexGuard};

/// What the server said that the tap counts for the engine's process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum ServerEvent {
    /// A `ReadyForQuery` went from in a transaction to idle.
    TransactionEnded,
    /// A statement was refused as busy.
    Busy,
}

/// SQLSTATEs of a statement refused because another session holds what it
/// needs: lock_not_available, serialization_failure, deadlock_detected,
/// query_canceled (a statement timeout).
pub(super) const BUSY_SQLSTATES: [&str; 4] = ["55P03", "40001", "40P01", "57014"];
/// What the tap read of one session's traffic.
#[derive(Default)]
pub(super) struct SessionWire {
    /// Round trips the engine sent and the server's `ReadyForQuery`s.
    pub(super) sent: u64,
    pub(super) answered: u64,
    pub(super) status: u8,
    pub(super) pid: Option<i32>,
}

/// One session's wire state, with the condition the server's answers
/// signal.
#[derive(Default)]
pub(super) struct Session {
    wire: Mutex<SessionWire>,
    pub(super) answered: Condvar,
}

impl Session {
    pub(super) fn lock(&self) -> MutexGuard<'_, SessionWire> {
        self.wire.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Forwards the server's side, reading what a pause needs: each
/// `ReadyForQuery` (answered round trips, transaction status), the
/// backend's pid, and busy refusals.
pub(super) fn pump_down(
    mut server: TcpStream,
    client: &mut TcpStream,
    session: &Session,
    on_event: impl Fn(ServerEvent),
) -> io::Result<()> {
    let mut body = Vec::new();
    loop {
        let mut head = [0_u8; 5];
        server.read_exact(&mut head)?;
        let len = i32::from_be_bytes([head[1], head[2], head[3], head[4]]);
        let Ok(len) = usize::try_from(len - 4) else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "a server message of negative length",
            ));
        };
        body.resize(len, 0);
        server.read_exact(&mut body)?;
        match head[0] {
            b'Z' => {
                let status = body.first().copied().unwrap_or(0);
                let ended = {
                    let mut wire = session.lock();
                    wire.answered += 1;
                    let ended = matches!(wire.status, b'T' | b'E') && status == b'I';
                    wire.status = status;
                    ended
                };
                if ended {
                    on_event(ServerEvent::TransactionEnded);
                }
                session.answered.notify_all();
            }
            b'K' if body.len() >= 4 => {
                session.lock().pid = Some(i32::from_be_bytes([body[0], body[1], body[2], body[3]]));
            }
            b'E' if sqlstate_of(&body).is_some_and(|code| BUSY_SQLSTATES.contains(&code)) => {
                on_event(ServerEvent::Busy);
            }
            _ => {}
        }
        client.write_all(&head)?;
        client.write_all(&body)?;
    }
}

/// The SQLSTATE field of an `ErrorResponse` body.
fn sqlstate_of(body: &[u8]) -> Option<&str> {
    let mut fields = body;
    while let [code, rest @ ..] = fields {
        if *code == 0 {
            return None;
        }
        let end = rest.iter().position(|b| *b == 0)?;
        if *code == b'C' {
            return std::str::from_utf8(&rest[..end]).ok();
        }
        fields = &rest[end + 1..];
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sqlstate_is_read_from_an_error_response() {
        let body = b"SERROR\0VERROR\0C55P03\0Mcould not obtain lock\0\0";
        assert_eq!(sqlstate_of(body), Some("55P03"));
        assert_eq!(sqlstate_of(b"SERROR\0\0"), None);
        assert_eq!(sqlstate_of(b"C55P0"), None, "a field without its end is not read");
    }
}
