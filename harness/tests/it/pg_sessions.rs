//! Sessions the PostgreSQL server ends (rule L2) and the round trips an
//! engine reports, through the harness's wire tap against a real server.
//!
//! Needs `SYNCGATE_PG_URL`; without it each test says on the terminal that
//! it was skipped.

use syncgate::check::Invariant;
use syncgate::gate::default_base_dir;
use syncgate::places::RemoteTarget;
use syncgate::run::run_case;
use syncgate::scenario::{IdChoice, Reconnect, Scenario, Step, Swarm, SyncKind, Val};
use syncgate::subject::reference::ReferenceEngine;
use syncgate::subject::OnRemote;

use crate::support::{pg_url, Misreport, Misreporting};

fn pg_target(test: &str) -> Option<RemoteTarget> {
    pg_url(test).map(|url| RemoteTarget::Postgres { url })
}

fn host(replica: usize, name: &str) -> Step {
    Step::Insert {
        replica,
        table: 1,
        id: IdChoice::Mint,
        values: vec![Val::Text(name.into()), Val::Text("10.0.0.1".into())],
    }
}

fn sync_after_cut(replica: usize, reconnect: Option<Reconnect>) -> Step {
    Step::Sync {
        replica,
        kind: SyncKind::Full,
        sessions_cut: reconnect,
        interleave: None,
    }
}

fn scenario(steps: Vec<Step>) -> Scenario {
    Scenario {
        schema: None,
        replicas: 2,
        swarm: Swarm { weights: vec![1; 10] },
        limits: Default::default(),
        step_ms: None,
        steps,
    }
}

#[test]
fn a_sync_after_the_server_ended_the_session_reconnects_or_fails_and_loses_nothing() {
    let Some(remote) = pg_target("a_sync_after_the_server_ended_the_session_reconnects_or_fails_and_loses_nothing")
    else {
        return;
    };
    let engine = OnRemote {
        subject: Box::new(ReferenceEngine::new()),
        remote,
    };
    let mut steps = vec![host(0, "web"), sync_after_cut(0, None)];
    for reconnect in [
        Reconnect::Accepted,
        Reconnect::StartingUp,
        Reconnect::RoleMissing,
        Reconnect::PasswordRefused,
        Reconnect::DatabaseMissing,
    ] {
        steps.push(host(0, "db"));
        steps.push(sync_after_cut(0, Some(reconnect)));
    }
    steps.push(sync_after_cut(0, None));
    steps.push(sync_after_cut(1, Some(Reconnect::Accepted)));
    let result = run_case(&engine, &scenario(steps), &default_base_dir());
    let trace = result.trace.join("\n");
    assert!(result.failure.is_none(), "{:?}\n{trace}", result.failure);
    // The model agreed step by step; the trace shows each answer.
    for expected in [
        "which reconnects -> pushed 1 ",
        "while it starts up -> failed Unavailable",
        "role missing -> failed LoginRefused",
        "password refused -> failed LoginRefused",
        "database missing -> failed LoginRefused",
    ] {
        assert!(trace.contains(expected), "no {expected:?} in\n{trace}");
    }
}

#[test]
fn a_round_trip_count_that_differs_from_the_wire_is_caught() {
    let Some(remote) = pg_target("a_round_trip_count_that_differs_from_the_wire_is_caught") else {
        return;
    };
    let honest = OnRemote {
        subject: Box::new(ReferenceEngine::new()),
        remote: remote.clone(),
    };
    let steps = vec![host(0, "web"), sync_after_cut(0, None)];
    let result = run_case(&honest, &scenario(steps.clone()), &default_base_dir());
    assert!(result.failure.is_none(), "{:?}", result.failure);
    let lying = OnRemote {
        subject: Box::new(Misreporting(Misreport {
            extra_round_trips: 1,
            ..Misreport::default()
        })),
        remote,
    };
    let result = run_case(&lying, &scenario(steps), &default_base_dir());
    let (_, violation) = result.failure.expect("an over-count is caught");
    assert_eq!(violation.invariant, Invariant::TruthfulStatus, "{violation:?}");
    assert!(violation.detail.contains("counted"), "{}", violation.detail);
}
