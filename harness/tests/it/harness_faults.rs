//! A failure of the harness itself is its own outcome: the case says
//! nothing about the engine, nothing is shrunk, and the run exits with code
//! 2 naming what the harness could not do. Never `EngineFailed`, never a
//! counterexample against an engine that did nothing wrong.

use std::process::Command;

use syncgate::gate::{check, default_base_dir, CheckOptions};
use syncgate::mutants::hunt_options;
use syncgate::run::run_case;
use syncgate::scenario::{CrashAt, IdChoice, Scenario, Step, Swarm, SyncKind, Val};
use syncgate::subject::reference::ReferenceEngine;
use syncgate::subject::{InitOk, OpenError, OpenSpec, Subject, SubjectReplica};

/// A case with a crash and a restart of replica 0.
fn crash_and_restart() -> Scenario {
    Scenario {
        schema: None,
        replicas: 1,
        swarm: Swarm { weights: vec![1; 10] },
        limits: Default::default(),
        step_ms: None,
        steps: vec![
            Step::Insert {
                replica: 0,
                table: 1,
                id: IdChoice::Mint,
                values: vec![Val::Text("web".into()), Val::Text("10.0.0.1".into())],
            },
            Step::Crash {
                replica: 0,
                kind: SyncKind::Push,
                at: CrashAt::BeforeRemoteCommit,
            },
            Step::Restart {
                replica: 0,
                while_down: Vec::new(),
            },
        ],
    }
}

/// The reference engine on a machine that cannot start a process again:
/// every restart fails to start, as a fork failure or a full process table
/// would make it (the harness's trouble, not the engine's).
struct NoRestarts;

impl Subject for NoRestarts {
    fn name(&self) -> String {
        "reference+no-restarts".into()
    }

    fn open_replica(&self, spec: &OpenSpec) -> Result<(Box<dyn SubjectReplica>, InitOk), OpenError> {
        if !spec.fresh {
            return Err(OpenError::Start(
                "cannot start the engine: Resource temporarily unavailable".into(),
            ));
        }
        ReferenceEngine::new().open_replica(spec)
    }
}

#[test]
fn a_case_folder_the_harness_cannot_make_is_the_harness_failure() {
    // The place the case folders go is a file: no folder can be made there.
    let file = tempfile::NamedTempFile::new_in(default_base_dir()).expect("a file");
    let result = run_case(&ReferenceEngine::new(), &crash_and_restart(), file.path());
    assert!(result.failure.is_none(), "blamed the engine: {:?}", result.failure);
    let (step, fault) = result.fault.expect("the harness's own failure");
    assert_eq!(step, 0);
    let text = fault.to_string();
    assert!(
        text.starts_with("the harness could not make a case folder in"),
        "{text}"
    );
}

#[test]
fn a_process_the_harness_cannot_start_stops_the_run_unshrunk() {
    let result = run_case(&NoRestarts, &crash_and_restart(), &default_base_dir());
    assert!(result.failure.is_none(), "blamed the engine: {:?}", result.failure);
    let (step, fault) = result.fault.expect("the harness's own failure");
    assert_eq!(step, 3, "the restart step");
    assert!(fault.to_string().contains("could not start r0's engine"), "{fault}");
    // The run stops at the first such case, with no counterexample.
    let opts = CheckOptions {
        cases: 50,
        ..hunt_options(50, "harness-faults", 2)
    };
    let err = check(&NoRestarts, &opts)
        .expect_err("a harness failure ends the run")
        .to_string();
    assert!(err.contains("this is the harness's failure, not the engine's"), "{err}");
    assert!(err.contains("nothing was shrunk"), "{err}");
    assert!(err.contains("could not start r") && err.contains("'s engine"), "{err}");
    assert!(
        err.contains("replay: syncgate replay --engine reference+no-restarts --seed"),
        "{err}"
    );
}

#[test]
fn the_cli_exits_2_when_it_cannot_make_its_folders() {
    let file = tempfile::NamedTempFile::new_in(default_base_dir()).expect("a file");
    let out = Command::new(env!("CARGO_BIN_EXE_syncgate"))
        .args(["check", "--cases", "3", "--work-dir"])
        .arg(file.path())
        .output()
        .expect("syncgate runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("cannot make a temporary folder in"), "{stderr}");
    assert!(!String::from_utf8_lossy(&out.stdout).contains("COUNTEREXAMPLE"));
}
