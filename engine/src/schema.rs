//! The declared schema: the only source of identifiers that reach SQL.

use crate::error::{Error, Result};

/// A column's declared type. The engine stores values with these types and
/// reads them back by name, never by position in a driver row.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ColumnType {
    Integer,
    Text,
    Real,
    Blob,
}

impl ColumnType {
    fn sql(self) -> &'static str {
        match self {
            ColumnType::Integer => "INTEGER",
            ColumnType::Text => "TEXT",
            ColumnType::Real => "REAL",
            ColumnType::Blob => "BLOB",
        }
    }
}

/// A column as the application declares it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ColumnDef {
    pub name: String,
    pub kind: ColumnType,
    /// Parent table this column references, with `ON DELETE CASCADE`.
    pub references: Option<String>,
}

/// A synced table as the application declares it: an `id INTEGER PRIMARY KEY`
/// plus these columns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TableDef {
    pub name: String,
    pub columns: Vec<ColumnDef>,
    /// A UNIQUE column other than the primary key: rows with equal natural
    /// keys are the same row (see model/SEMANTICS.md, rule N).
    pub natural_key: Option<String>,
}

impl TableDef {
    pub fn new(name: &str) -> TableDef {
        TableDef {
            name: name.to_string(),
            columns: Vec::new(),
            natural_key: None,
        }
    }

    pub fn column(mut self, name: &str, kind: ColumnType) -> TableDef {
        self.columns.push(ColumnDef {
            name: name.to_string(),
            kind,
            references: None,
        });
        self
    }

    /// A column referencing `parent`'s id; deleting the parent deletes this row.
    pub fn reference(mut self, name: &str, parent: &str) -> TableDef {
        self.columns.push(ColumnDef {
            name: name.to_string(),
            kind: ColumnType::Integer,
            references: Some(parent.to_string()),
        });
        self
    }

    /// A UNIQUE text column that identifies the row (its natural key).
    pub fn natural_key(mut self, name: &str) -> TableDef {
        self.columns.push(ColumnDef {
            name: name.to_string(),
            kind: ColumnType::Text,
            references: None,
        });
        self.natural_key = Some(name.to_string());
        self
    }
}

/// Most columns a synced table may have: an update's changed-column set is a
/// 64-bit mask.
pub const COLUMNS_MAX: usize = 63;

/// A validated schema. Built only by [`Schema::new`], so every identifier in
/// it is plain and every reference resolves.
#[derive(Clone, Debug)]
pub struct Schema {
    tables: Vec<Table>,
}

/// A validated table, with references resolved to table indexes.
#[derive(Clone, Debug)]
pub(crate) struct Table {
    pub name: String,
    pub columns: Vec<ColumnDef>,
    /// Index of the parent table for each column that references one.
    pub parents: Vec<Option<usize>>,
    pub natural_key: Option<usize>,
    /// `(child table, column)` pairs that reference this table.
    pub children: Vec<(usize, usize)>,
    /// SQL for this table, built once from the validated identifiers.
    pub sql: TableSql,
}

/// The statements the engine runs on a synced table, built once.
#[derive(Clone, Debug)]
pub(crate) struct TableSql {
    /// `SELECT <columns> FROM t WHERE id = ?1`
    pub select_values: String,
    /// `INSERT ... (id, <columns>) VALUES (?1, ...) ON CONFLICT (id) DO UPDATE ...`
    pub upsert: String,
    /// `DELETE FROM t WHERE id = ?1`
    pub delete: String,
    /// `INSERT INTO t (id, <columns>) VALUES (?1, ...)`
    pub insert: String,
}

impl TableSql {
    fn new(name: &str, columns: &[ColumnDef]) -> TableSql {
        let cols: Vec<String> = columns.iter().map(|c| quote(&c.name)).collect();
        let params: Vec<String> = (2..=cols.len() + 1).map(|i| format!("?{i}")).collect();
        let updates: Vec<String> = cols.iter().map(|c| format!("{c} = excluded.{c}")).collect();
        let q = quote(name);
        TableSql {
            select_values: format!("SELECT {} FROM {q} WHERE \"id\" = ?1", cols.join(", ")),
            upsert: format!(
                "INSERT INTO {q} (\"id\", {}) VALUES (?1, {}) ON CONFLICT (\"id\") DO UPDATE SET {}",
                cols.join(", "),
                params.join(", "),
                updates.join(", ")
            ),
            delete: format!("DELETE FROM {q} WHERE \"id\" = ?1"),
            insert: format!(
                "INSERT INTO {q} (\"id\", {}) VALUES (?1, {})",
                cols.join(", "),
                params.join(", ")
            ),
        }
    }
}

impl Schema {
    pub fn new(tables: Vec<TableDef>) -> Result<Schema> {
        let mut out: Vec<Table> = Vec::new();
        for def in &tables {
            check_identifier(&def.name)?;
            if def.columns.is_empty() || def.columns.len() > COLUMNS_MAX {
                return Err(Error::InvalidSchema(format!(
                    "table {:?} must have 1 to {COLUMNS_MAX} columns besides id",
                    def.name
                )));
            }
            if out.iter().any(|t| t.name == def.name) {
                return Err(Error::InvalidSchema(format!("table {:?} is declared twice", def.name)));
            }
            let mut parents = Vec::new();
            for (i, col) in def.columns.iter().enumerate() {
                check_identifier(&col.name)?;
                if col.name == "id" || def.columns[..i].iter().any(|c| c.name == col.name) {
                    return Err(Error::InvalidSchema(format!(
                        "column {:?} of {:?} is reserved or declared twice",
                        col.name, def.name
                    )));
                }
                parents.push(match &col.references {
                    None => None,
                    Some(parent) => Some(tables.iter().position(|t| &t.name == parent).ok_or_else(|| {
                        Error::InvalidSchema(format!("{}.{} references unknown table {parent:?}", def.name, col.name))
                    })?),
                });
            }
            let natural_key = match &def.natural_key {
                None => None,
                Some(k) => Some(
                    def.columns
                        .iter()
                        .position(|c| &c.name == k)
                        .ok_or_else(|| Error::UnknownColumn {
                            table: def.name.clone(),
                            column: k.clone(),
                        })?,
                ),
            };
            out.push(Table {
                name: def.name.clone(),
                columns: def.columns.clone(),
                parents,
                natural_key,
                children: Vec::new(),
                sql: TableSql::new(&def.name, &def.columns),
            });
        }
        for t in 0..out.len() {
            for c in 0..out[t].columns.len() {
                if let Some(p) = out[t].parents[c] {
                    out[p].children.push((t, c));
                }
            }
        }
        Ok(Schema { tables: out })
    }

    /// The test schema: `domains(id, name UNIQUE, registrar, updated)`,
    /// `hosts(id, hostname, ip)`, `dns_records(id, domain_id -> domains, kind, value)`.
    pub fn test_schema() -> Schema {
        let tables = vec![
            TableDef::new("domains")
                .natural_key("name")
                .column("registrar", ColumnType::Text)
                .column("updated", ColumnType::Integer),
            TableDef::new("hosts")
                .column("hostname", ColumnType::Text)
                .column("ip", ColumnType::Text),
            TableDef::new("dns_records")
                .reference("domain_id", "domains")
                .column("kind", ColumnType::Text)
                .column("value", ColumnType::Text),
        ];
        match Schema::new(tables) {
            Ok(schema) => schema,
            Err(e) => unreachable!("the test schema is valid: {e}"),
        }
    }

    pub fn table_names(&self) -> impl Iterator<Item = &str> {
        self.tables.iter().map(|t| t.name.as_str())
    }

    /// Declared column names of `table`, without `id`.
    pub fn column_names(&self, table: &str) -> Result<Vec<&str>> {
        let t = self.index(table)?;
        Ok(self.tables[t].columns.iter().map(|c| c.name.as_str()).collect())
    }

    pub(crate) fn tables(&self) -> &[Table] {
        &self.tables
    }

    pub(crate) fn table(&self, t: usize) -> &Table {
        &self.tables[t]
    }

    pub(crate) fn index(&self, name: &str) -> Result<usize> {
        self.tables
            .iter()
            .position(|t| t.name == name)
            .ok_or_else(|| Error::UnknownTable(name.to_string()))
    }

    /// `CREATE TABLE` statements for the synced tables, plus indexes on
    /// references so cascades do not scan.
    pub(crate) fn create_statements(&self) -> Vec<String> {
        let mut out = Vec::new();
        for t in &self.tables {
            let mut cols = vec![format!("{} INTEGER PRIMARY KEY", quote("id"))];
            for (c, col) in t.columns.iter().enumerate() {
                let mut def = format!("{} {}", quote(&col.name), col.kind.sql());
                if t.natural_key == Some(c) {
                    def.push_str(" UNIQUE");
                }
                if let Some(p) = t.parents[c] {
                    def.push_str(&format!(
                        " REFERENCES {}({}) ON DELETE CASCADE",
                        quote(&self.tables[p].name),
                        quote("id")
                    ));
                }
                cols.push(def);
            }
            out.push(format!(
                "CREATE TABLE IF NOT EXISTS {} ({})",
                quote(&t.name),
                cols.join(", ")
            ));
            for (c, col) in t.columns.iter().enumerate() {
                if t.parents[c].is_some() {
                    out.push(format!(
                        "CREATE INDEX IF NOT EXISTS {} ON {}({})",
                        quote(&format!("_sg_idx_{}_{}", t.name, col.name)),
                        quote(&t.name),
                        quote(&col.name)
                    ));
                }
            }
        }
        out
    }

    /// Checks that the tables in `conn` have exactly the declared columns.
    pub(crate) fn verify(&self, conn: &rusqlite::Connection, place: &'static str) -> Result<()> {
        for t in &self.tables {
            let mut stmt = conn.prepare("SELECT name, type FROM pragma_table_info(?1) ORDER BY cid")?;
            let found: Vec<(String, String)> = stmt
                .query_map([&t.name], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<rusqlite::Result<_>>()?;
            if found.is_empty() {
                return Err(Error::SchemaMismatch {
                    place,
                    table: t.name.clone(),
                    detail: "the table does not exist".into(),
                });
            }
            let mut expected = vec![("id".to_string(), "INTEGER".to_string())];
            expected.extend(t.columns.iter().map(|c| (c.name.clone(), c.kind.sql().to_string())));
            let found_upper: Vec<(String, String)> = found.into_iter().map(|(n, ty)| (n, ty.to_uppercase())).collect();
            if found_upper != expected {
                return Err(Error::SchemaMismatch {
                    place,
                    table: t.name.clone(),
                    detail: format!("expected columns {expected:?}, found {found_upper:?}"),
                });
            }
        }
        Ok(())
    }
}

/// Accepts only plain identifiers, so quoting is belt and braces.
pub(crate) fn check_identifier(name: &str) -> Result<()> {
    let mut chars = name.chars();
    let plain = matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && name.len() <= 64
        && !name.starts_with("_sg_")
        && !name.starts_with("sqlite_");
    if plain {
        Ok(())
    } else {
        Err(Error::BadIdentifier(name.to_string()))
    }
}

/// Quotes an identifier that came from the declared schema.
pub(crate) fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}
