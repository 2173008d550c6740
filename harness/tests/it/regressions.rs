//! Every failure the gate found on the reference engine, replayed from its
//! saved trace file (the steps themselves, so it survives generator changes).

use std::path::Path;

use syncgate::events::Event;
use syncgate::gate::{default_base_dir, load_trace};
use syncgate::run::{run_case, CaseResult};
use syncgate::subject::reference::ReferenceEngine;

fn check(name: &str) -> CaseResult {
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
    result
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

// Found by random schemas (`--schema random`, issue 21): natural keys on
// tables that have a parent, which the built-in schema never has.

#[test]
fn cascaded_natural_key_twin_is_doomed_too() {
    // A false failure of the contract. r1 deleted a parent, and the cascade
    // took a child whose natural key r0 had inserted too; on the remote the
    // two inserts are one row (rule N), so the cascade killed r0's. The
    // contract counted only the keys of rows deleted directly and called it
    // a lost write; a cascaded row's key now dooms its twins as well.
    check("cascaded_natural_key_twin_is_doomed_too.json");
}

#[test]
fn twin_reference_carries_a_parent_death() {
    // A false failure of the contract. r1's insert merged by natural key
    // into r0's row and won its reference column by stamp, re-parenting the
    // row under r1's parent, which r2 deleted: the row died by cascade. The
    // contract followed only the parents the row's own writes gave it; it
    // now follows those its natural-key twins gave it too.
    check("twin_reference_carries_a_parent_death.json");
}

#[test]
fn pulled_death_spares_a_child_moved_by_a_merge() {
    // Engine and model agreed, and did not converge. A child row moved on
    // the remote to another parent (a natural-key twin's reference won by
    // stamp); a replica that still held it under its old parent then pulled
    // that parent's death, cascaded the child away, tombstoned it, and so
    // skipped its live row later in the same pull. A pulled death now
    // re-points a child the remote holds live under another parent instead
    // of removing it (rule D2), in the engine and in the model.
    check("pulled_death_spares_a_child_moved_by_a_merge.json");
}

#[test]
fn merged_insert_under_a_dead_parent_arrives_dead() {
    // Engine and model agreed, and the remote was left with a dangling
    // reference. An insert the pusher had merged into a twin (rule N3) was
    // applied on the remote as a merge without checking its parent, which
    // another replica had deleted: the survivor took a reference to a dead
    // row. Such an insert now arrives dead, as an insert the pusher did not
    // merge does (D2 before N2), and the survivor is sent again.
    check("merged_insert_under_a_dead_parent_arrives_dead.json");
}

#[test]
fn pulled_row_dies_only_if_its_merged_reference_is_dead() {
    // Engine and model agreed, and did not converge. A pulled row whose
    // parent was deleted here was killed although the pending insert merged
    // into it (its natural-key twin) re-parented it under a live row by a
    // later stamp, as the remote then did. A pull now checks the parent of
    // the row as it stands after its pending writes won (P3), not of the
    // row as it arrived.
    check("pulled_row_dies_only_if_its_merged_reference_is_dead.json");
}

#[test]
fn pulled_death_spares_a_grandchild_moved_by_a_merge() {
    // Written by hand after a cargo-mutants run of the fix above: a mutant
    // that skipped the search below a dying child survived every drawn
    // case. r1 deletes a row it holds without its children; the remote
    // cascades to the child after it (a later seq), and the grandchild had
    // moved under another parent by a natural-key merge. r0 and r2, which
    // hold the grandchild under the dying child, must re-point it, not
    // lose it: the search for moved rows goes down every level.
    check("pulled_death_spares_a_grandchild_moved_by_a_merge.json");
}

#[test]
fn pulled_death_through_a_circle_of_references() {
    // Found by a deep random-schema run (a stack overflow, the process
    // aborted), written down by hand: two replicas inserted the same two
    // natural keys under each other in opposite order, and the merges by
    // stamp left each row the other's parent on the remote. A replica
    // holding that circle pulled the rows' deaths, and the search for moved
    // children went round the circle forever. Each dying row is now
    // searched once.
    check("pulled_death_through_a_circle_of_references.json");
}

#[test]
fn a_cascade_reaches_its_depth_bound() {
    // Hand-written for cargo-mutants survivors (TEETH.md: the remote
    // cascade's depth, never reached by a generated schema): r1 holds only
    // the root of a self-referencing chain of 65 rows that r0 built, so its
    // delete is one outbox entry and the remote cascades it 64 levels down
    // (`CASCADE_DEPTH_MAX`, which it must reach and not refuse). The chain
    // one row longer is refused with CascadeTooDeep (engine/tests/it/bounds.rs);
    // the model knows no bound, so a generated case must never go past it.
    check("a_cascade_reaches_its_depth_bound.json");
}

#[test]
fn interleaved_order_that_hides_a_cursor() {
    // A harness bug, found by the first deep run with syncs held on a SQLite
    // remote: r1 pushed a delete between r2's push and pull. Two orders of
    // the syncs explained every answer and place (r1's push after r2's
    // whole sync, or between its push and pull), but left r2's cursor in
    // two places; the model took the first, and the next pull's count
    // disagreed. The held point's transaction count now picks the order
    // first (SEMANTICS.md L3).
    check("interleaved_order_that_hides_a_cursor.json");
}

#[test]
fn pending_delete_reaches_a_row_a_merge_moved() {
    // Found by CI's random-schema gate (a seed of a commit that did not
    // land). r3 deleted t1/A, then pulled r1's t3/X under A: X died there,
    // uncaptured (C2). Before r3 pushed, r2's outside insert with X's
    // natural key under its own t1/B merged into X on the remote and moved
    // it under B (a later stamp), so the remote's cascade of A's delete
    // no longer reached X: the remote kept X, r3 its tombstone, forever.
    // Rows a pull removes because a pending delete reached them are now that
    // delete's victims (rule D2): the push that applies the delete kills
    // them on the remote too, in the engine and in the model.
    let result = check("pending_delete_reaches_a_row_a_merge_moved.json");
    assert_eq!(
        result.events.get(&Event::VictimKilled),
        Some(&1),
        "r3's push kills X as a victim of its delete:\n{}",
        result.trace.join("\n")
    );
}
