//! `syncgate-reference-adapter`: the reference engine behind the engine
//! protocol on stdin/stdout (PROTOCOL.md), so `syncgate check --engine
//! 'exec:syncgate-reference-adapter'` checks it as it would any engine.
//!
//! Options: `--mutant NAME` plants a bug of the catalog; `--shifted-ids` and
//! `--no-conflict-counts` make a correct engine that differs from the
//! reference spec only in incidental choices (it then declares no profile).
//! The loop itself is `syncgate_reference_adapter::serve` (`serve::main`: a
//! non-generic entry, so this binary compiles in seconds, not minutes).

use std::process::ExitCode;

fn main() -> ExitCode {
    syncgate_reference_adapter::serve::main()
}
