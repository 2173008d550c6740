//! Concurrent edits: column-level last-writer-wins, and the outcome does not
//! depend on the order of push and pull.

use crate::support::*;
use syncgate_engine::Config;

#[test]
fn column_level_merge_keeps_both_edits() {
    // Failure: a whole-row merge drops one replica's edit of another column.
    let w = World::new();
    let clock = ManualClock::at(T0);
    let mut a = w.replica("a", clock.clone());
    let mut b = w.replica("b", clock.clone());
    let h = host(&mut a, "h1", "10.0.0.1");
    sync(&mut a);
    sync(&mut b);

    clock.advance(10);
    a.update("hosts", h, &[("hostname", text("renamed"))])
        .expect("update a");
    clock.advance(10);
    b.update("hosts", h, &[("ip", text("10.0.0.2"))]).expect("update b");
    assert_eq!(sync(&mut a), (1, 1, 0));
    assert_eq!(sync(&mut b), (1, 1, 0));
    assert_eq!(sync(&mut a), (0, 1, 0));
    let both = vec![(h, vec![text("renamed"), text("10.0.0.2")])];
    assert_eq!(w.remote_rows("hosts"), both);
    assert_eq!(rows(&a, "hosts"), both);
    assert_converged(&w, &[&a, &b]);
}

#[test]
fn later_write_to_the_same_column_wins_either_way() {
    // Failure: the last replica to sync wins instead of the latest write.
    for a_syncs_first in [true, false] {
        let w = World::new();
        let clock = ManualClock::at(T0);
        let mut a = w.replica("a", clock.clone());
        let mut b = w.replica("b", clock.clone());
        let h = host(&mut a, "h1", "10.0.0.1");
        sync(&mut a);
        sync(&mut b);
        clock.advance(10);
        a.update("hosts", h, &[("ip", text("older"))]).expect("update a");
        clock.advance(10);
        b.update("hosts", h, &[("ip", text("newer"))]).expect("update b");
        if a_syncs_first {
            assert_eq!(sync(&mut a), (1, 1, 0));
            assert_eq!(sync(&mut b), (1, 1, 0));
        } else {
            assert_eq!(sync(&mut b), (1, 1, 0));
            // A's older write does not take effect: one conflict.
            assert_eq!(sync(&mut a), (1, 1, 1));
        }
        sync(&mut a);
        sync(&mut b);
        assert_eq!(w.remote_rows("hosts"), vec![(h, vec![text("h1"), text("newer")])]);
        assert_converged(&w, &[&a, &b]);
    }
}

#[derive(Clone, Copy, Debug)]
enum Order {
    PushThenPull,
    PullThenPush,
}

/// Concurrent edits on A and B, B's first exchange in `order`; the final
/// states of the remote, A and B.
fn scenario(order: Order, config: Option<Config>) -> (State, State, State) {
    let w = World::new();
    let clock = ManualClock::at(T0);
    let config = config.unwrap_or_else(|| w.config.clone());
    let mut a = w.open_with("a", clock.clone(), w.remote(), config.clone());
    let mut b = w.open_with("b", clock.clone(), w.remote(), config);
    let h = host(&mut a, "h1", "10.0.0.1");
    let gone = host(&mut a, "gone", "10.0.0.9");
    let shared = domain(&mut a, "shared.example", "r0");
    sync(&mut a);
    sync(&mut b);

    clock.advance(10);
    a.update("hosts", h, &[("ip", text("ip-a")), ("hostname", text("name-a"))])
        .expect("update a");
    let da = domain(&mut a, "example.com", "registrar-a");
    record(&mut a, da, "A", "192.0.2.1");
    a.delete("hosts", gone).expect("delete");
    clock.advance(10);
    b.update("hosts", h, &[("ip", text("ip-b"))]).expect("update b");
    b.update("hosts", gone, &[("ip", text("revived?"))]).expect("update b");
    let db = domain(&mut b, "example.com", "registrar-b");
    record(&mut b, db, "MX", "mail.example.com");
    record(&mut b, shared, "TXT", "v=spf1");
    host(&mut b, "h2", "10.0.1.1");
    clock.advance(10);
    a.update("domains", shared, &[("registrar", text("r-a"))])
        .expect("update a");
    sync(&mut a);

    match order {
        Order::PushThenPull => {
            b.push().expect("push b");
            b.pull().expect("pull b");
        }
        Order::PullThenPush => {
            b.pull().expect("pull b");
            b.push().expect("push b");
        }
    }
    // Either way B still shows its own later ip, and A's later hostname.
    let h_on_b = rows(&b, "hosts").into_iter().find(|(id, _)| *id == h);
    assert_eq!(h_on_b, Some((h, vec![text("name-a"), text("ip-b")])), "{order:?}");
    sync(&mut a);
    sync(&mut b);
    assert_converged(&w, &[&a, &b]);
    (w.remote_state(), state(&a), state(&b))
}

#[test]
fn push_then_pull_equals_pull_then_push() {
    // Failure: the merged outcome depends on whether a replica pushes or pulls first.
    let (remote_1, a_1, b_1) = scenario(Order::PushThenPull, None);
    let (remote_2, a_2, b_2) = scenario(Order::PullThenPush, None);
    assert_eq!(remote_1, remote_2);
    assert_eq!(a_1, a_2);
    assert_eq!(b_1, b_2);
    // And the outcome is the one the rules give.
    let hosts = &remote_1.iter().find(|(t, _)| t == "hosts").expect("hosts").1;
    assert_eq!(hosts.len(), 2, "{hosts:?}");
    assert_eq!(hosts[0].1, vec![text("name-a"), text("ip-b")]);
    let domains = &remote_1.iter().find(|(t, _)| t == "domains").expect("domains").1;
    assert_eq!(domains.len(), 2, "{domains:?}");
    let records = &remote_1.iter().find(|(t, _)| t == "dns_records").expect("records").1;
    assert_eq!(records.len(), 3, "{records:?}");
}

#[test]
fn small_batches_and_pages_change_nothing() {
    // Failure: splitting pushes into batches or pulls into pages changes the outcome.
    let small = Config {
        push_batch_max: 1,
        pull_page_rows: 1,
        ..test_config()
    };
    for order in [Order::PushThenPull, Order::PullThenPush] {
        assert_eq!(scenario(order, Some(small.clone())), scenario(order, None), "{order:?}");
    }
}
