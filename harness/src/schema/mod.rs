//! The schema a case syncs, in the model's terms and in the protocol's,
//! and the conversions between their values. A case uses the built-in
//! schema unless a run declares its own (`--schema`, `declared.rs`).

mod ddl;
mod declared;
mod refused;

use syncgate_model as model;
use syncgate_protocol as protocol;

pub use declared::{read_declared, DeclaredSchema};
pub use refused::SchemaRefused;

/// The schema as the protocol sends it, with the DDL the harness expects.
pub fn protocol_schema(schema: &model::Schema) -> protocol::Schema {
    let tables = schema
        .tables
        .iter()
        .map(|t| protocol::Table {
            name: t.name.clone(),
            natural_key: t.natural_key.map(|k| t.columns[k].name.clone()),
            columns: t
                .columns
                .iter()
                .map(|c| protocol::Column {
                    name: c.name.clone(),
                    kind: match c.kind {
                        model::ColumnKind::Integer => protocol::ColumnKind::Integer,
                        model::ColumnKind::Real => protocol::ColumnKind::Real,
                        model::ColumnKind::Text => protocol::ColumnKind::Text,
                        model::ColumnKind::Blob => protocol::ColumnKind::Blob,
                    },
                    references: c.references.map(|p| schema.tables[p].name.clone()),
                    not_null: c.not_null,
                })
                .collect(),
        })
        .collect();
    protocol::Schema {
        tables,
        ddl: ddl(schema),
    }
}

/// The model's schema for the protocol's tables, checked: every reference
/// names a declared table, every natural key a text column, no name twice.
pub fn model_schema(schema: &protocol::Schema) -> Result<model::Schema, SchemaRefused> {
    let mut tables = Vec::new();
    for t in &schema.tables {
        if schema.tables.iter().filter(|other| other.name == t.name).count() > 1 {
            return Err(SchemaRefused::new(
                &t.name,
                "a second table of this name",
                "one table per name",
            ));
        }
        let mut columns = Vec::new();
        for c in &t.columns {
            if t.columns.iter().filter(|other| other.name == c.name).count() > 1 || c.name == "id" {
                return Err(SchemaRefused::new(
                    &t.name,
                    &format!("column {:?} twice (or named id)", c.name),
                    "one column per name besides the primary key id",
                ));
            }
            let references = match &c.references {
                None => None,
                Some(parent) => Some(schema.tables.iter().position(|p| &p.name == parent).ok_or_else(|| {
                    SchemaRefused::new(
                        &t.name,
                        &format!("{} REFERENCES {parent}", c.name),
                        "references to tables the schema declares",
                    )
                })?),
            };
            let kind = match c.kind {
                protocol::ColumnKind::Integer => model::ColumnKind::Integer,
                protocol::ColumnKind::Real => model::ColumnKind::Real,
                protocol::ColumnKind::Text => model::ColumnKind::Text,
                protocol::ColumnKind::Blob => model::ColumnKind::Blob,
            };
            if references.is_some() && kind != model::ColumnKind::Integer {
                return Err(SchemaRefused::new(
                    &t.name,
                    &format!("{} REFERENCES on a column that is not INTEGER", c.name),
                    "references in INTEGER columns (a parent's id)",
                ));
            }
            columns.push(model::Column {
                name: c.name.clone(),
                kind,
                references,
                not_null: c.not_null,
            });
        }
        let natural_key = match &t.natural_key {
            None => None,
            Some(key) => {
                let k = t.columns.iter().position(|c| &c.name == key).ok_or_else(|| {
                    SchemaRefused::new(
                        &t.name,
                        &format!("natural key {key:?}"),
                        "a natural key among the columns",
                    )
                })?;
                if columns[k].kind != model::ColumnKind::Text || columns[k].references.is_some() {
                    return Err(SchemaRefused::new(
                        &t.name,
                        &format!("{key} UNIQUE on a column that is not plain TEXT"),
                        "UNIQUE on a TEXT column (a natural key)",
                    ));
                }
                Some(k)
            }
        };
        tables.push(model::Table {
            name: t.name.clone(),
            columns,
            natural_key,
        });
    }
    Ok(model::Schema { tables })
}

/// The schema of a case: its own, or the built-in one.
pub fn of_case(declared: Option<&protocol::Schema>) -> Result<model::Schema, SchemaRefused> {
    match declared {
        None => Ok(model::test_schema()),
        Some(schema) => model_schema(schema),
    }
}

/// `CREATE TABLE` statements for the synced tables (identifiers quoted).
pub fn ddl(schema: &model::Schema) -> Vec<String> {
    schema
        .tables
        .iter()
        .map(|t| {
            let mut cols = vec!["\"id\" INTEGER PRIMARY KEY".to_string()];
            for (c, col) in t.columns.iter().enumerate() {
                let kind = match col.kind {
                    model::ColumnKind::Integer => "INTEGER",
                    model::ColumnKind::Real => "REAL",
                    model::ColumnKind::Text => "TEXT",
                    model::ColumnKind::Blob => "BLOB",
                };
                let mut def = format!("{} {kind}", quote(&col.name));
                if col.not_null {
                    def.push_str(" NOT NULL");
                }
                if t.natural_key == Some(c) {
                    def.push_str(" UNIQUE");
                }
                if let Some(p) = col.references {
                    def.push_str(&format!(
                        " REFERENCES {}(\"id\") ON DELETE CASCADE",
                        quote(&schema.tables[p].name)
                    ));
                }
                cols.push(def);
            }
            format!("CREATE TABLE IF NOT EXISTS {} ({})", quote(&t.name), cols.join(", "))
        })
        .collect()
}

/// A quoted SQL identifier. Identifiers come only from the declared schema.
pub fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

pub fn to_protocol(v: &model::Value) -> protocol::Value {
    match v {
        model::Value::Null => protocol::Value::Null,
        model::Value::Int(i) => protocol::Value::Int(*i),
        model::Value::Real(r) => protocol::Value::Real(protocol::Real(r.get())),
        model::Value::Text(s) => protocol::Value::Text(s.clone()),
        model::Value::Blob(b) => protocol::Value::Blob {
            blob: protocol::Blob(b.clone()),
        },
    }
}

/// A real as a place holds it, in the model's terms: SQLite and
/// PostgreSQL keep `-0.0` apart from `0.0` only in name (they compare equal,
/// and SQLite stores it as `0.0`), so it reads as `0.0`; NaN (which SQLite
/// turns into NULL) and the infinities (which no write sends) are `None`.
pub fn real_of_place(x: f64) -> Option<model::Real> {
    model::Real::new(if x == 0.0 { 0.0 } else { x })
}
