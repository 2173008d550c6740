//! Promises per constraint (PROTOCOL.md): what `Integrity` fails and what
//! it lets through under `natural_keys` / `references` declarations weaker
//! than the reference's, and the identity of rows when a natural key names
//! nothing. Each check fires on a hand-made case and stays quiet on its
//! allowed twin.

use syncgate::check::contract::{
    breaches, check_final, check_integrity, check_own_write_kept_constraints, Breach, Promises,
};
use syncgate::check::Invariant;
use syncgate::history::{History, WriteKind, WriteRecord};
use syncgate_model::{test_schema, Rows, Tables, Value};
use syncgate_protocol::{
    ConsistencyPolicy, DeletePolicy, IdPolicy, MergePolicy, NaturalKeyPolicy, PendingAfterSync, Policies, PushPolicy,
    ReferencesPolicy, TransactionsPolicy,
};

const DOMAINS: usize = 0;
const RECORDS: usize = 2;

fn t(s: &str) -> Value {
    Value::Text(s.into())
}

fn tables(rows: &[(usize, i64, Vec<Value>)]) -> Tables {
    let mut out: Tables = vec![Rows::new(); 3];
    for (table, id, values) in rows {
        out[*table].insert(*id, values.clone());
    }
    out
}

fn promises(natural_keys: NaturalKeyPolicy, references: ReferencesPolicy) -> Promises {
    Promises {
        natural_keys,
        references,
    }
}

fn domain(id: i64, name: &str, registrar: &str) -> (usize, i64, Vec<Value>) {
    (DOMAINS, id, vec![t(name), t(registrar), Value::Null])
}

fn record(id: i64, domain: i64) -> (usize, i64, Vec<Value>) {
    (RECORDS, id, vec![Value::Int(domain), t("A"), t(&format!("v{id}"))])
}

#[test]
fn a_duplicate_key_fails_integrity_only_where_keys_name_rows() {
    let schema = test_schema();
    let twice = tables(&[domain(1, "a.example", "x.w1"), domain(2, "a.example", "y.w2")]);
    for keys in [NaturalKeyPolicy::Merge, NaturalKeyPolicy::Refuse] {
        let v = check_integrity(&schema, "r1", &twice, &promises(keys, ReferencesPolicy::Enforced)).unwrap_err();
        assert_eq!(v.invariant, Invariant::Integrity);
        assert!(
            v.detail.contains("domains.name = \"a.example\" held by rows 1 and 2"),
            "{}",
            v.detail
        );
    }
    for keys in [NaturalKeyPolicy::LocalOnly, NaturalKeyPolicy::Unenforced] {
        assert_eq!(
            check_integrity(&schema, "r1", &twice, &promises(keys, ReferencesPolicy::Enforced)),
            Ok(()),
            "{keys:?}"
        );
    }
    // The breach is named by the younger row, so a third holder is a second one.
    let thrice = tables(&[
        domain(1, "a.example", "x.w1"),
        domain(2, "a.example", "y.w2"),
        domain(3, "a.example", "z.w3"),
    ]);
    let found = breaches(&schema, &thrice);
    assert_eq!(found.len(), 2);
    assert!(matches!(found[1], Breach::Duplicate { id: 3, .. }), "{found:?}");
    // NULL keys are no duplicates.
    let nulls = tables(&[
        (DOMAINS, 1, vec![Value::Null, t("x.w1"), Value::Null]),
        (DOMAINS, 2, vec![Value::Null, t("y.w2"), Value::Null]),
    ]);
    assert!(breaches(&schema, &nulls).is_empty());
}

#[test]
fn a_dangling_reference_fails_integrity_only_where_references_are_enforced() {
    let schema = test_schema();
    let orphan = tables(&[record(5, 1)]);
    let v = check_integrity(&schema, "remote", &orphan, &Promises::STRICT).unwrap_err();
    assert!(
        v.detail
            .contains("dns_records/5.domain_id references missing domains/1"),
        "{}",
        v.detail
    );
    for references in [ReferencesPolicy::LocalOnly, ReferencesPolicy::Unenforced] {
        assert_eq!(
            check_integrity(
                &schema,
                "remote",
                &orphan,
                &promises(NaturalKeyPolicy::Merge, references)
            ),
            Ok(())
        );
    }
}

#[test]
fn under_local_only_an_own_write_must_not_make_a_breach() {
    let schema = test_schema();
    let local_only = promises(NaturalKeyPolicy::LocalOnly, ReferencesPolicy::LocalOnly);
    let merged = tables(&[domain(1, "a.example", "x.w1"), domain(2, "a.example", "y.w2")]);
    // A write that made the duplicate fails; one that found it made by a
    // merge (before the write) does not.
    let before = tables(&[domain(1, "a.example", "x.w1")]);
    let v = check_own_write_kept_constraints(&schema, "r0", "w2", &before, &merged, &local_only).unwrap_err();
    assert_eq!(v.invariant, Invariant::Integrity);
    assert!(v.detail.contains("right after w2 answered ok"), "{}", v.detail);
    assert!(v.detail.contains("natural_keys: local_only"), "{}", v.detail);
    let after = tables(&[
        domain(1, "a.example", "x.w1"),
        domain(2, "a.example", "y.w2"),
        domain(3, "b.example", "z.w3"),
    ]);
    assert_eq!(
        check_own_write_kept_constraints(&schema, "r0", "w3", &merged, &after, &local_only),
        Ok(())
    );
    // A delete that leaves its children behind makes dangling references.
    let family = tables(&[domain(1, "a.example", "x.w1"), record(7, 1)]);
    let left = tables(&[record(7, 1)]);
    let v = check_own_write_kept_constraints(&schema, "r0", "w4", &family, &left, &local_only).unwrap_err();
    assert!(v.detail.contains("references: local_only"), "{}", v.detail);
    // Unenforced promises nothing for the engine's own writes either.
    let unenforced = promises(NaturalKeyPolicy::Unenforced, ReferencesPolicy::Unenforced);
    assert_eq!(
        check_own_write_kept_constraints(&schema, "r0", "w2", &before, &merged, &unenforced),
        Ok(())
    );
    assert_eq!(
        check_own_write_kept_constraints(&schema, "r0", "w4", &family, &left, &unenforced),
        Ok(())
    );
}

fn policies(natural_keys: NaturalKeyPolicy) -> Policies {
    Policies {
        merge: MergePolicy::Column,
        delete: DeletePolicy::DeleteWins,
        natural_keys,
        explicit_ids: false,
        push: PushPolicy::Explicit,
        pending_after_sync: PendingAfterSync::Zero,
        ids: IdPolicy::Stable,
        transactions: TransactionsPolicy::Unit,
        consistency: ConsistencyPolicy::Eventual,
        references: ReferencesPolicy::LocalOnly,
    }
}

/// A write as the runner records it: with the row's natural key only where
/// keys name rows (`keyed`).
fn domain_write(
    replica: usize,
    step: usize,
    id: i64,
    kind: WriteKind,
    set: Vec<(usize, Value)>,
    keyed: bool,
) -> WriteRecord {
    WriteRecord {
        n: 0,
        replica,
        step,
        seq: 0,
        table: DOMAINS,
        id,
        kind,
        set,
        key: keyed.then(|| t("a.example")),
        cascade: Vec::new(),
        knew: Vec::new(),
        outside: false,
        image: None,
    }
}

/// The gate's false failure on cr-sqlite (examples/crsqlite/traces/
/// nolostwrite-deleted-duplicate-crsql-2_59.json): two replicas insert one
/// key apart; r0 pulls r1's row, renames its own, deletes it. r1's row,
/// never merged with r0's, ends with its own registrar.
fn deleted_twin(keyed: bool) -> History {
    let mut h = History::new(2);
    h.record(domain_write(
        1,
        1,
        2,
        WriteKind::Insert,
        vec![(0, t("a.example")), (1, t("y.w1")), (2, Value::Null)],
        keyed,
    ));
    h.record(domain_write(
        0,
        2,
        1,
        WriteKind::Insert,
        vec![(0, t("a.example")), (1, t("x.w2")), (2, Value::Null)],
        keyed,
    ));
    h.pushed_all(3, 1);
    h.pulled(4, 0);
    h.record(domain_write(0, 5, 1, WriteKind::Update, vec![(1, t("z.w3"))], keyed));
    h.record(domain_write(0, 6, 1, WriteKind::Delete, Vec::new(), keyed));
    h
}

#[test]
fn where_keys_name_nothing_a_deleted_twin_takes_nothing_along() {
    let schema = test_schema();
    let end = tables(&[domain(2, "a.example", "y.w1")]);
    assert_eq!(
        check_final(
            &schema,
            &deleted_twin(false),
            &policies(NaturalKeyPolicy::LocalOnly),
            &end
        ),
        Ok(())
    );
    // Where keys name rows, row 1 merged into row 2: its later rename is
    // the row's, and the remote lost it.
    let v = check_final(&schema, &deleted_twin(true), &policies(NaturalKeyPolicy::Merge), &end).unwrap_err();
    assert_eq!(v.invariant, Invariant::NoLostWrite);
    // And where keys name nothing, the twin's survival is still required.
    let gone = tables(&[]);
    let v = check_final(
        &schema,
        &deleted_twin(false),
        &policies(NaturalKeyPolicy::LocalOnly),
        &gone,
    )
    .unwrap_err();
    assert_eq!(v.invariant, Invariant::NoLostWrite);
    assert!(v.detail.contains("without domains/2"), "{}", v.detail);
}

/// An engine that declares `natural_keys: local_only` promises that rows
/// inserted apart with one key stay two rows. The reference engine merges
/// them (rule N2), so declaring it there loses the merged row, and the
/// contract, holding every row to its own id, says so.
#[test]
fn an_engine_that_merges_keys_it_declared_local_only_loses_rows() {
    use crate::support::{Declaring, Twist};
    use syncgate::gate::{check, CheckOptions};
    use syncgate::mutants::hunt_options;

    let opts = CheckOptions {
        stop_at_first: false,
        ..hunt_options(200, "claims-local-only", 2)
    };
    let summary = check(&Declaring(Twist::ClaimsLocalOnlyKeys), &opts).expect("runs");
    assert!(!summary.ok(), "merged rows went unnoticed");
    let first = summary.failures.first().expect("a failure");
    assert_eq!(first.invariant, Invariant::NoLostWrite, "{}", first.detail);
}
