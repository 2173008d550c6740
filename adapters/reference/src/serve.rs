//! The reference engine behind the engine protocol on stdin/stdout
//! (PROTOCOL.md): the loop the binary `syncgate-reference-adapter` runs, and
//! that the teeth test (`tests/teeth.rs`) runs in its own executable, so a
//! mutated engine is served without building the harness.

use std::io::{BufRead, Write};
use std::process::ExitCode;

use syncgate_engine::Mutant;
use syncgate_protocol::{Envelope, ErrorCode, Reply, Request, Response};

use crate::{init_ok, CrashMode, Handled, Options, ReferenceAdapter};

/// What `--help` and a bad argument print.
pub const USAGE: &str = "usage: syncgate-reference-adapter [--mutant NAME] [--shifted-ids] [--no-conflict-counts] [--aborts] [--write-through] [--atomic]";

/// `main_with_args` on the process's own arguments. Not generic, so a
/// binary that calls it compiles only this call: the binary's instance of
/// `main_with_args` took LLVM's optimizer minutes at opt-level 3.
pub fn main() -> ExitCode {
    main_with_args(std::env::args().skip(1))
}

/// Parses the arguments (without the program name) and serves until stdin
/// ends: exit 0, 1 when stdin or stdout failed, 2 on a bad argument.
pub fn main_with_args(args: impl Iterator<Item = String>) -> ExitCode {
    let options = match parse_args(args) {
        Ok(options) => options,
        Err(msg) => {
            eprintln!("syncgate-reference-adapter: {msg}");
            eprintln!("{USAGE}");
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

/// The adapter's options from its arguments.
pub fn parse_args(args: impl Iterator<Item = String>) -> Result<Options, String> {
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
            "--aborts" => options.aborts = true,
            "--write-through" => options.write_through = true,
            "--atomic" => options.atomic = true,
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(options)
}

/// Reads requests line by line and answers each on stdout, until stdin ends.
pub fn serve(options: &Options) -> Result<(), String> {
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
