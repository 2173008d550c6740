//! The declared schema every case uses, in the model's terms and in the
//! protocol's, and the conversions between their values.

use syncgate_model as model;
use syncgate_protocol as protocol;

/// The schema as the protocol sends it, with the DDL the harness expects.
pub fn protocol_schema() -> protocol::Schema {
    let schema = model::test_schema();
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
                        model::ColumnKind::Text => protocol::ColumnKind::Text,
                    },
                    references: c.references.map(|p| schema.tables[p].name.clone()),
                })
                .collect(),
        })
        .collect();
    protocol::Schema {
        tables,
        ddl: ddl(&schema),
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
                    model::ColumnKind::Text => "TEXT",
                };
                let mut def = format!("{} {kind}", quote(&col.name));
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
        model::Value::Text(s) => protocol::Value::Text(s.clone()),
    }
}
