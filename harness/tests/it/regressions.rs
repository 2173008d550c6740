//! Every failure the gate found on the reference engine, replayed from its
//! saved trace file (the steps themselves, so it survives generator changes).

use std::path::Path;

use syncgate::gate::{default_base_dir, load_trace};
use syncgate::run::run_case;
use syncgate::subject::reference::ReferenceEngine;

fn check(name: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/regressions")
        .join(name);
    let file = load_trace(&path).expect("trace file");
    let result = run_case(&ReferenceEngine::new(), &file.scenario, &default_base_dir());
    assert!(
        result.failure.is_none(),
        "{name} fails again: {:?}\n{}",
        result.failure,
        result.trace.join("\n")
    );
}

#[test]
fn busy_read_left_a_transaction_open() {
    // A pull that met an exclusively locked remote left its read
    // transaction open, so every retry failed with "cannot start a
    // transaction within a transaction" instead of reporting busy.
    // Fixed by rolling back when beginning a remote transaction fails.
    check("busy_read_left_a_transaction_open.json");
}

#[test]
fn restart_while_remote_locked() {
    // A replica that crashed mid-pull could not restart while another
    // process held the remote exclusively: opening the remote read its
    // schema at once. Opening now waits for the first sync to check it.
    check("restart_while_remote_locked.json");
}

#[test]
fn pulled_death_of_merged_parent_with_pending_child() {
    // Issue 12. r0's domain was merged on the remote into r1's (same name),
    // r2 then deleted the survivor, and r0 added a record under its own
    // (merged-away) domain before pulling. The pull re-pointed the record to
    // the survivor, which it never held, and the survivor's death did not
    // cascade to it: "FOREIGN KEY constraint failed" on every pull until a
    // push. A pulled death now cascades to children even when the dead row
    // is not held locally (rule D2), in the engine and in the model.
    check("pulled_death_of_merged_parent_with_pending_child.json");
}
