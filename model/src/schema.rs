//! The declared schema the model reasons about, and the shared test schema.

/// A declared set of synced tables.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Schema {
    pub tables: Vec<Table>,
}

/// One synced table. Every table has an integer primary key named `id`, which
/// is not listed in `columns`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Table {
    pub name: String,
    pub columns: Vec<Column>,
    /// Index into `columns` of the natural key: a UNIQUE column that is not the
    /// primary key (see SEMANTICS.md, rule N).
    pub natural_key: Option<usize>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Column {
    pub name: String,
    pub kind: ColumnKind,
    /// The parent table this column references (`ON DELETE CASCADE`).
    pub references: Option<usize>,
    /// `NOT NULL`: no write sets it to NULL (the generator never does; the
    /// sync rules are the same).
    pub not_null: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ColumnKind {
    Integer,
    Real,
    Text,
    Blob,
}

/// Index of a table in [`Schema::tables`].
pub type TableIdx = usize;

impl Schema {
    /// Children of `parent`: every (table, column) whose column references it,
    /// in declaration order. Cascades visit children in this order.
    pub fn children_of(&self, parent: TableIdx) -> Vec<(TableIdx, usize)> {
        let mut out = Vec::new();
        for (t, table) in self.tables.iter().enumerate() {
            for (c, col) in table.columns.iter().enumerate() {
                if col.references == Some(parent) {
                    out.push((t, c));
                }
            }
        }
        out
    }

    /// The tables of a family insert (a parent row and children under it in
    /// one local transaction): the first table another table (or itself)
    /// references, and the first such child.
    pub fn family(&self) -> Option<(TableIdx, TableIdx)> {
        (0..self.tables.len()).find_map(|parent| self.children_of(parent).first().map(|(child, _)| (parent, *child)))
    }

    pub fn table_index(&self, name: &str) -> Option<TableIdx> {
        self.tables.iter().position(|t| t.name == name)
    }
}

/// The test schema shared by engine tests, the model and the harness:
/// `domains(id, name UNIQUE, registrar, updated)`, `hosts(id, hostname, ip)`,
/// `dns_records(id, domain_id -> domains, kind, value)`.
pub fn test_schema() -> Schema {
    let col = |name: &str, kind: ColumnKind, references: Option<usize>| Column {
        name: name.to_string(),
        kind,
        references,
        not_null: false,
    };
    Schema {
        tables: vec![
            Table {
                name: "domains".into(),
                columns: vec![
                    col("name", ColumnKind::Text, None),
                    col("registrar", ColumnKind::Text, None),
                    col("updated", ColumnKind::Integer, None),
                ],
                natural_key: Some(0),
            },
            Table {
                name: "hosts".into(),
                columns: vec![
                    col("hostname", ColumnKind::Text, None),
                    col("ip", ColumnKind::Text, None),
                ],
                natural_key: None,
            },
            Table {
                name: "dns_records".into(),
                columns: vec![
                    col("domain_id", ColumnKind::Integer, Some(0)),
                    col("kind", ColumnKind::Text, None),
                    col("value", ColumnKind::Text, None),
                ],
                natural_key: None,
            },
        ],
    }
}
