//! Contract: what an engine's read API returns is what its cache holds
//! (`ReadsTruthful`). The harness reads the cache file itself; an engine that
//! declares `reads` is asked for the same rows through its own API, the way
//! an application reads them: every row, every declared column by its name,
//! nothing else. A read path that guesses the shape of the driver's rows
//! (columns by position, a column dropped or renamed) fails here.

use std::collections::BTreeSet;

use syncgate_model as model;
use syncgate_protocol::{ReadRow, Value};

use super::{Invariant, Violation};
use crate::schema::real_of_place;
use crate::show::show_value;

/// Checks the rows the engine read from `table` against the cache's.
pub fn check_reads_match_cache(
    schema: &model::Schema,
    place: &str,
    table: usize,
    read: &[ReadRow],
    cache: &model::Rows,
) -> Result<(), Violation> {
    let def = &schema.tables[table];
    let fail = |detail: String| Err(Violation::new(Invariant::ReadsTruthful, format!("{place}: {detail}")));
    let mut ids = BTreeSet::new();
    for row in read {
        if !ids.insert(row.id) {
            return fail(format!(
                "the engine's read of {} returns row {} twice",
                def.name, row.id
            ));
        }
        let Some(held) = cache.get(&row.id) else {
            return fail(format!(
                "the engine's read of {} returns row {}, which the cache does not hold",
                def.name, row.id
            ));
        };
        if let Some(extra) = row.values.keys().find(|k| !def.columns.iter().any(|c| &c.name == *k)) {
            return fail(format!(
                "the engine's read of {}/{} has a column {extra:?} the schema does not declare",
                def.name, row.id
            ));
        }
        for (c, column) in def.columns.iter().enumerate() {
            let Some(value) = row.values.get(&column.name) else {
                return fail(format!(
                    "the engine's read of {}/{} has no column {:?}",
                    def.name, row.id, column.name
                ));
            };
            let value = match value {
                Value::Null => model::Value::Null,
                // PROTOCOL.md: an integer answered for a real is that real.
                Value::Int(i) if column.kind == model::ColumnKind::Real => {
                    real_of_place(*i as f64).map_or(model::Value::Null, model::Value::Real)
                }
                Value::Int(i) => model::Value::Int(*i),
                Value::Real(r) => match real_of_place(r.0) {
                    Some(r) => model::Value::Real(r),
                    None => {
                        return fail(format!(
                            "the engine's read of {}/{}.{} is {}, which no place can hold",
                            def.name, row.id, column.name, r.0
                        ))
                    }
                },
                Value::Text(s) => model::Value::Text(s.clone()),
                Value::Blob { blob } => model::Value::Blob(blob.0.clone()),
                Value::Ref { .. } => {
                    return fail(format!(
                        "the engine's read of {}/{}.{} is a ref, which only a write may carry",
                        def.name, row.id, column.name
                    ))
                }
            };
            if value != held[c] {
                return fail(format!(
                    "the engine's read of {}/{}.{} is {}, the cache holds {}",
                    def.name,
                    row.id,
                    column.name,
                    show_value(&value),
                    show_value(&held[c])
                ));
            }
        }
    }
    if let Some(missing) = cache.keys().find(|id| !ids.contains(id)) {
        return fail(format!(
            "the engine's read of {} leaves out row {missing}, which the cache holds",
            def.name
        ));
    }
    Ok(())
}
