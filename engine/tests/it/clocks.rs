//! Clocks: skew does not decide who wins, and a stamp from the future is
//! refused whole.

use crate::support::*;
use syncgate_engine::{Clock, Config, Error};

#[test]
fn skewed_clock_does_not_win() {
    // Failure: a replica whose clock is behind loses a write made after seeing the other's write.
    for (behind_ms, drift_ms_max) in [(50_000, 60_000), (3_600_000, 86_400_000)] {
        let w = World::new();
        let clock_a = ManualClock::at(T0);
        let clock_b = ManualClock::at(T0 - behind_ms);
        let config = Config {
            drift_ms_max,
            ..w.config.clone()
        };
        let mut a = w.open_with("a", clock_a.clone(), w.remote(), config.clone());
        let mut b = w.open_with("b", clock_b.clone(), w.remote(), config);
        let h = host(&mut a, "h1", "10.0.0.1");
        sync(&mut a);
        clock_a.advance(1_000);
        a.update("hosts", h, &[("ip", text("from-a"))]).expect("update a");
        sync(&mut a);
        assert_eq!(sync(&mut b), (0, 1, 0));
        assert_eq!(rows(&b, "hosts"), vec![(h, vec![text("h1"), text("from-a")])]);

        // B writes after seeing A's write, by a wall clock far behind A's.
        clock_b.advance(1);
        b.update("hosts", h, &[("ip", text("from-b"))]).expect("update b");
        assert_eq!(sync(&mut b), (1, 1, 0), "behind by {behind_ms} ms");
        assert_eq!(sync(&mut a), (0, 1, 0), "behind by {behind_ms} ms");
        assert_eq!(w.remote_rows("hosts"), vec![(h, vec![text("h1"), text("from-b")])]);
        assert_converged(&w, &[&a, &b]);
    }
}

#[test]
fn stamp_too_far_ahead_is_refused() {
    // Failure: a far-future stamp is accepted (and wins forever), or a refused pull applies part of it.
    let w = World::new();
    let clock_a = ManualClock::at(T0);
    let clock_b = ManualClock::at(T0);
    let mut a = w.replica("a", clock_a.clone());
    let mut b = w.replica("b", clock_b.clone());
    let h1 = host(&mut a, "h1", "10.0.0.1");
    sync(&mut a);
    clock_a.advance(w.config.drift_ms_max + 60_000);
    let h2 = host(&mut a, "h2", "10.0.0.2");
    sync(&mut a);
    let head = w.remote_head();

    let err = b.sync().expect_err("the pull must refuse the stamp");
    assert!(
        matches!(&err, Error::ClockDrift { table, id, replica, ahead_ms, drift_ms_max, own: false }
            if table == "hosts" && *id == h2 && *replica == a.replica_id()
                && *ahead_ms > *drift_ms_max && *drift_ms_max == w.config.drift_ms_max),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(
        text.contains(&format!("fix the clock of replica {}", a.replica_id())),
        "{text}"
    );
    // Nothing applied: not even h1, which came before in the same pull.
    assert_eq!(ids(&b, "hosts"), Vec::<i64>::new());
    assert_eq!(cursor(&b), 0);
    assert_eq!(pending(&b), 0);
    let status = b.status().expect("status");
    assert!(status.last_error.is_some());
    assert_eq!(status.last_report, None);

    // Fix B's clock: the same pull works.
    clock_b.set(clock_a.now_ms());
    assert_eq!(sync(&mut b), (0, 2, 0));
    assert_eq!(ids(&b, "hosts"), vec![h1, h2]);
    assert_eq!(cursor(&b), head);
    assert_converged(&w, &[&a, &b]);
}

/// O4 for a replica whose own clock went back (a dead battery, a user
/// setting the date): its own stamp, pushed while its clock was a day
/// ahead, comes back in its next pull too far ahead, and the error says
/// the stamp is its own and this machine's clock went back.
#[test]
fn a_replica_whose_clock_went_back_is_told_its_own_stamp_is_ahead() {
    let w = World::new();
    let clock = ManualClock::at(T0);
    let mut a = w.replica("a", clock.clone());
    clock.advance(86_400_000);
    let h1 = host(&mut a, "h1", "10.0.0.1");
    a.push().expect("the push is not affected by drift");
    clock.set(T0);
    let err = a.pull().expect_err("the pull must refuse its own stamp a day ahead");
    assert!(
        matches!(&err, Error::ClockDrift { id, replica, own: true, .. } if *id == h1 && *replica == a.replica_id()),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(text.contains("made itself"), "{text}");
    assert!(text.contains("this machine's clock went back"), "{text}");
    clock.set(T0 + 86_400_000);
    assert_eq!(a.pull().expect("the clock set right, the pull goes on").pulled, 1);
}
