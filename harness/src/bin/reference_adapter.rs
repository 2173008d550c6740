//! `syncgate-reference-adapter`: the reference engine behind the engine
//! protocol on stdin/stdout (PROTOCOL.md), so `syncgate check --engine
//! 'exec:syncgate-reference-adapter'` checks it as it would any engine.
//!
//! Options: `--mutant NAME` plants a bug of the catalog; `--shifted-ids` and
//! `--no-conflict-counts` make a correct engine that differs from the
//! reference spec only in incidental choices (it then declares no profile).

use std::io::{BufRead, Write};
use std::process::ExitCode;

use syncgate_engine::Mutant;
use syncgate_protocol::{Envelope, ErrorCode, Reply, Request, Response};
use syncgate_reference_adapter::{init_ok, CrashMode, Handled, Options, ReferenceAdapter};

fn main() -> ExitCode {
    let options = match parse_args(std::env::args().skip(1)) {
        Ok(options) => options,
        Err(msg) => {
            eprintln!("syncgate-reference-adapter: {msg}");
            eprintln!("usage: syncgate-reference-adapter [--mutant NAME] [--shifted-ids] [--no-conflict-counts]");
            return ExitCode::from(2);
        }
    };
    match serve(&options) {
        Ok(()) => ExitCode::SUCCESS,
        Err(msg) => {
            eprintln!("syncgate-reference-adapter: {msg}");
            ExitCode::from(1)
        }
    }
}

fn parse_args(args: impl Iterator<Item = String>) -> Result<Options, String> {
    let mut options = Options::default();
    let mut args = args.peekable();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--mutant" => {
                let name = args.next().ok_or("--mutant needs a name")?;
                let mutant = Mutant::by_name(&name).ok_or_else(|| {
                    let known: Vec<&str> = Mutant::ALL.iter().map(|m| m.name()).collect();
                    format!("unknown mutant {name:?}; known: {}", known.join(", "))
                })?;
                options.mutant = Some(mutant);
            }
            "--shifted-ids" => options.shifted_ids = true,
            "--no-conflict-counts" => options.no_conflict_counts = true,
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(options)
}

/// Reads requests line by line and answers each on stdout, until stdin ends.
fn serve(options: &Options) -> Result<(), String> {
    let stdin = std::io::stdin();
    let mut stdout = std::io::stdout().lock();
    let mut adapter: Option<ReferenceAdapter> = None;
    for line in stdin.lock().lines() {
        let line = line.map_err(|e| format!("reading stdin: {e}"))?;
        if line.trim().is_empty() {
            continue;
        }
        let (msg_id, response) = match serde_json::from_str::<Envelope<Request>>(&line) {
            Err(e) => (
                msg_id_of(&line),
                Response::Error {
                    code: if e.to_string().contains("unknown variant") {
                        ErrorCode::UnknownType
                    } else {
                        ErrorCode::Malformed
                    },
                    message: e.to_string(),
                },
            ),
            Ok(Envelope { msg_id, body }) => (msg_id, answer(&mut adapter, options, &body)),
        };
        let reply = Reply {
            in_reply_to: msg_id,
            body: response,
        };
        let text = serde_json::to_string(&reply).map_err(|e| e.to_string())?;
        writeln!(stdout, "{text}").map_err(|e| format!("writing stdout: {e}"))?;
        stdout.flush().map_err(|e| format!("writing stdout: {e}"))?;
    }
    Ok(())
}

fn answer(adapter: &mut Option<ReferenceAdapter>, options: &Options, request: &Request) -> Response {
    match (adapter.as_mut(), request) {
        (None, Request::Init(init)) => match ReferenceAdapter::open(init, options, CrashMode::Exit) {
            Ok(opened) => {
                *adapter = Some(opened);
                Response::InitOk(init_ok(options))
            }
            Err(message) => Response::Error {
                code: ErrorCode::Internal,
                message,
            },
        },
        (None, other) => Response::Error {
            code: ErrorCode::Malformed,
            message: format!("{} before init", other.name()),
        },
        (Some(adapter), request) => match adapter.handle(request) {
            Handled::Reply(response) => response,
            Handled::Crashed => unreachable!("in CrashMode::Exit a crash point exits the process"),
        },
    }
}

/// The `msg_id` of a line that is not a valid request, if it has one.
fn msg_id_of(line: &str) -> u64 {
    serde_json::from_str::<serde_json::Value>(line)
        .ok()
        .and_then(|v| v.get("msg_id").and_then(|m| m.as_u64()))
        .unwrap_or(0)
}
