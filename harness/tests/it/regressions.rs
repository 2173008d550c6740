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

#[test]
fn repush_after_outside_write_cuts_a_smaller_batch() {
    // Found by the gate once push limits were drawn (push_batch_max 3): r2
    // pushed three one-write transactions in one batch and crashed after the
    // remote commit (applied seq 3); after the restart a write made outside
    // the engine's API joined the last transaction's number, so the re-push
    // cut its first batch at seq 2. The model asserted that the applied seq
    // only grows and stopped the run; it now keeps the larger one, as the
    // engine does, and nothing is applied twice.
    check("repush_after_outside_write_cuts_a_smaller_batch.json");
}
