//! Shrinking a case's own schema (`--schema random`, or a declared one):
//! tables no step writes and no other table references go, then columns no
//! step needs, so a counterexample shows the fewest tables and columns that
//! still fail. Each candidate is a whole case; the shrinker runs it.

use syncgate_protocol::Schema;

use crate::scenario::{Scenario, Step, WhileDown};

/// Every write step, the ones inside outside and rolled-back writes too.
fn each_write(step: &mut Step, f: &mut dyn FnMut(&mut Step)) {
    match step {
        Step::Outside(inner) | Step::Abort(inner) => each_write(inner, f),
        other => f(other),
    }
}

/// The tables `step` names by index (a family's are the schema's).
fn named_tables(step: &Step) -> Vec<usize> {
    match step {
        Step::Insert { table, .. } | Step::Update { table, .. } | Step::Delete { table, .. } => vec![*table],
        Step::Restart { while_down, .. } => while_down
            .iter()
            .filter_map(|w| match w {
                WhileDown::TableRebuilt { table } | WhileDown::RemoteDrifted { table } => Some(*table),
                _ => None,
            })
            .collect(),
        Step::Outside(inner) | Step::Abort(inner) => named_tables(inner),
        _ => Vec::new(),
    }
}

fn renumber_tables(step: &mut Step, f: &dyn Fn(usize) -> usize) {
    match step {
        Step::Insert { table, .. } | Step::Update { table, .. } | Step::Delete { table, .. } => *table = f(*table),
        Step::Restart { while_down, .. } => {
            for w in while_down {
                if let WhileDown::TableRebuilt { table } | WhileDown::RemoteDrifted { table } = w {
                    *table = f(*table);
                }
            }
        }
        Step::Outside(inner) | Step::Abort(inner) => renumber_tables(inner, f),
        _ => {}
    }
}

fn has_family(steps: &[Step]) -> bool {
    fn family(step: &Step) -> bool {
        match step {
            Step::InsertFamily { .. } => true,
            Step::Outside(inner) | Step::Abort(inner) => family(inner),
            _ => false,
        }
    }
    steps.iter().any(family)
}

/// The family's tables by name (what family steps mean), if the schema is
/// one the gate accepts.
fn family_names(schema: &Schema) -> Option<Option<(String, String)>> {
    let model = crate::schema::model_schema(schema).ok()?;
    Some(
        model
            .family()
            .map(|(p, c)| (model.tables[p].name.clone(), model.tables[c].name.clone())),
    )
}

/// The case's own schema, and whether a smaller one is still a schema the
/// gate accepts whose family tables (if the case has family steps) are the
/// same, so those steps mean what they meant.
fn shrinkable(scenario: &Scenario) -> Option<(&Schema, impl Fn(&Schema) -> bool)> {
    let schema = scenario.schema.as_ref()?;
    let family = family_names(schema)?;
    let families = has_family(&scenario.steps);
    let keeps = move |smaller: &Schema| family_names(smaller).is_some_and(|f| !families || f == family);
    Some((schema, keeps))
}

/// The case without one of its tables, for each table it can lose.
pub(super) fn without_a_table(scenario: &Scenario) -> Vec<Scenario> {
    let Some((schema, keeps_families)) = shrinkable(scenario) else {
        return Vec::new();
    };
    let used: Vec<usize> = scenario.steps.iter().flat_map(named_tables).collect();
    let mut out = Vec::new();
    for t in (0..schema.tables.len()).rev() {
        let name = &schema.tables[t].name;
        let referenced = schema
            .tables
            .iter()
            .any(|other| &other.name != name && other.columns.iter().any(|c| c.references.as_ref() == Some(name)));
        if schema.tables.len() == 1 || used.contains(&t) || referenced {
            continue;
        }
        let mut smaller = schema.clone();
        smaller.tables.remove(t);
        if !keeps_families(&smaller) {
            continue;
        }
        let mut candidate = scenario.clone();
        candidate.schema = Some(smaller);
        for step in &mut candidate.steps {
            renumber_tables(step, &|x| if x > t { x - 1 } else { x });
        }
        out.push(candidate);
    }
    out
}

/// The case without one column, for each column no step needs (no update
/// sets it, it is not a family's reference, and its table keeps a column
/// that is neither a key nor a reference).
pub(super) fn without_a_column(scenario: &Scenario) -> Vec<Scenario> {
    let Some((schema, keeps_families)) = shrinkable(scenario) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for t in 0..schema.tables.len() {
        let table = &schema.tables[t];
        for c in (0..table.columns.len()).rev() {
            let mut smaller = schema.clone();
            let column = smaller.tables[t].columns.remove(c);
            if smaller.tables[t].natural_key.as_ref() == Some(&column.name) {
                smaller.tables[t].natural_key = None;
            }
            let kept = &smaller.tables[t];
            let plain_left = kept
                .columns
                .iter()
                .any(|k| k.references.is_none() && kept.natural_key.as_ref() != Some(&k.name));
            if !plain_left || !keeps_families(&smaller) {
                continue;
            }
            let mut updates_it = false;
            let mut candidate = scenario.clone();
            candidate.schema = Some(smaller);
            for step in &mut candidate.steps {
                each_write(step, &mut |write| match write {
                    Step::Insert { table, values, .. } if *table == t && c < values.len() => {
                        values.remove(c);
                    }
                    Step::Update { table, column, .. } if *table == t && *column == c => updates_it = true,
                    Step::Update { table, column, .. } if *table == t && *column > c => *column -= 1,
                    _ => {}
                });
            }
            if updates_it || !drop_from_families(&mut candidate, schema, t, c) {
                continue;
            }
            out.push(candidate);
        }
    }
    out
}

/// Drops column `c` of table `t` from the case's family steps; false when a
/// family needs it (the reference from a child to its parent).
fn drop_from_families(candidate: &mut Scenario, schema: &Schema, t: usize, c: usize) -> bool {
    let Ok(model) = crate::schema::model_schema(schema) else {
        return false;
    };
    let Some((parent, child)) = model.family() else {
        return true;
    };
    let column = &model.tables[t].columns[c];
    if t == child && column.references == Some(parent) {
        return false;
    }
    // A record holds the child's columns except its references to the parent.
    let in_record = model.tables[child].columns[..c.min(model.tables[child].columns.len())]
        .iter()
        .filter(|k| k.references != Some(parent))
        .count();
    for step in &mut candidate.steps {
        each_write(step, &mut |write| {
            if let Step::InsertFamily { domain, records, .. } = write {
                if t == parent && c < domain.len() {
                    domain.remove(c);
                }
                if t == child {
                    for record in records.iter_mut() {
                        if in_record < record.len() {
                            record.remove(in_record);
                        }
                    }
                }
            }
        });
    }
    true
}
