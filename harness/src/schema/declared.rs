//! A schema the user declares (`--schema FILE`): SQL DDL as an
//! application's migration writes it, an existing SQLite database whose
//! tables are read, or the JSON form the protocol sends. SQLite itself
//! parses the DDL (into a database in memory), and the tables are read
//! back through its pragmas, so the gate sees what SQLite sees.
//!
//! What this syncgate cannot check yet is refused, naming the table, the
//! clause and what is supported: never a panic, never a silent skip.

use std::path::Path;

use rusqlite::{Connection, OpenFlags};
use syncgate_protocol as protocol;

use super::ddl::{run_ddl, statements};
use super::model_schema;
use super::refused::SchemaRefused;

/// Clauses PROTOCOL.md designs ("Designed, not yet checked") that this
/// syncgate does not check yet.
const NOT_YET: &str = "designed in PROTOCOL.md, not checked by this syncgate yet";

/// Most columns a synced table may have besides `id` (the engine's bound).
const COLUMNS_MAX: usize = 63;

/// A schema declared for a run: where it came from and its tables.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeclaredSchema {
    /// The file, as given (replay commands name it).
    pub source: String,
    /// The tables, as the protocol sends them (without DDL).
    pub tables: protocol::Schema,
}

/// Reads the schema in `path`: a SQLite database, the protocol's JSON, or
/// SQL DDL.
pub fn read_declared(path: &Path) -> Result<DeclaredSchema, SchemaRefused> {
    let shown = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|e| SchemaRefused::whole(&shown, format!("cannot read it: {e}")))?;
    let tables = if bytes.starts_with(b"SQLite format 3\0") {
        let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY)
            .map_err(|e| SchemaRefused::whole(&shown, format!("cannot open the database: {e}")))?;
        read_tables(&conn)?
    } else {
        let text = String::from_utf8(bytes)
            .map_err(|_| SchemaRefused::whole(&shown, "neither a SQLite database nor text (SQL DDL or JSON)"))?;
        if text.trim_start().starts_with('{') {
            let mut schema: protocol::Schema = serde_json::from_str(&text)
                .map_err(|e| SchemaRefused::whole(&shown, format!("not the protocol's schema JSON: {e}")))?;
            schema.ddl.clear();
            schema
        } else {
            read_tables(&run_ddl(&text)?)?
        }
    };
    check_shape(&tables)?;
    Ok(DeclaredSchema { source: shown, tables })
}

/// The synced tables of `conn`, in the order they were created.
fn read_tables(conn: &Connection) -> Result<protocol::Schema, SchemaRefused> {
    let sqlite = |e: rusqlite::Error| SchemaRefused::whole("(reading the tables)", e);
    let objects: Vec<(String, String, String, Option<String>)> = conn
        .prepare("SELECT type, name, tbl_name, sql FROM sqlite_schema ORDER BY rowid")
        .and_then(|mut stmt| {
            stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?
                .collect::<rusqlite::Result<_>>()
        })
        .map_err(sqlite)?;
    if let Some((_, name, table, _)) = objects.iter().find(|(kind, ..)| kind == "trigger") {
        return Err(SchemaRefused::new(
            table,
            &format!("CREATE TRIGGER {name}"),
            "triggers of the application's own are not supported: the gate cannot tell what they write",
        ));
    }
    let mut tables = Vec::new();
    for (kind, name, _, sql) in &objects {
        if kind != "table" || name.starts_with("sqlite_") {
            continue;
        }
        tables.push(read_table(conn, name, sql.as_deref().unwrap_or(""))?);
    }
    if tables.is_empty() {
        return Err(SchemaRefused::whole("no CREATE TABLE", "the schema declares no table"));
    }
    Ok(protocol::Schema {
        tables,
        ddl: Vec::new(),
    })
}

/// One table, read through SQLite's pragmas; the clauses pragmas do not
/// show are found in its `CREATE TABLE` text.
fn read_table(conn: &Connection, name: &str, sql: &str) -> Result<protocol::Table, SchemaRefused> {
    let refuse = |clause: &str, why: &str| SchemaRefused::new(name, clause, why);
    let sqlite = |e: rusqlite::Error| refuse("(reading the table)", &e.to_string());
    let words: Vec<String> = statements(sql)
        .concat()
        .iter()
        .map(|w| w.to_ascii_uppercase())
        .collect();
    for (i, word) in words.iter().enumerate() {
        let next = words.get(i + 1).map(String::as_str).unwrap_or("");
        let clause = match (word.as_str(), next) {
            ("VIRTUAL", _) => Some(("CREATE VIRTUAL TABLE", "a virtual table is not synced")),
            ("CHECK", _) => Some(("CHECK", "CHECK constraints are not supported")),
            ("WITHOUT", "ROWID") => Some(("WITHOUT ROWID", "a synced table needs its rowid as `id`")),
            ("COLLATE", _) => Some(("COLLATE", "collations change what UNIQUE means; not supported")),
            ("GENERATED", _) => Some(("GENERATED ALWAYS AS", "generated columns are not supported")),
            ("STRICT", _) if i + 1 == words.len() => Some(("STRICT", "strict tables are not supported yet")),
            _ => None,
        };
        if let Some((clause, why)) = clause {
            return Err(refuse(clause, why));
        }
    }
    // (cid order) name, declared type, not null, default, pk, hidden
    type ColumnInfo = (String, String, bool, Option<String>, i64, i64);
    let infos: Vec<ColumnInfo> = conn
        .prepare("SELECT name, type, \"notnull\", dflt_value, pk, hidden FROM pragma_table_xinfo(?1) ORDER BY cid")
        .and_then(|mut stmt| {
            stmt.query_map([name], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?))
            })?
            .collect::<rusqlite::Result<_>>()
        })
        .map_err(sqlite)?;
    let keys: Vec<&ColumnInfo> = infos.iter().filter(|c| c.4 > 0).collect();
    match keys.as_slice() {
        [id] if id.0 == "id" && id.1.eq_ignore_ascii_case("INTEGER") => {}
        [_, _, ..] => {
            return Err(refuse(
                "a composite PRIMARY KEY",
                "a synced table's key is `id INTEGER PRIMARY KEY`",
            ))
        }
        _ => {
            return Err(refuse(
                "its PRIMARY KEY",
                "a synced table's key is `id INTEGER PRIMARY KEY`",
            ))
        }
    }
    let foreign = foreign_keys(conn, name).map_err(sqlite)?;
    let unique = unique_columns(conn, name).map_err(sqlite)?;
    let mut columns = Vec::new();
    for (column, declared, not_null, _default, pk, hidden) in &infos {
        if *pk > 0 {
            continue;
        }
        let clause = |what: &str| format!("{column} {what}");
        if *hidden == 2 || *hidden == 3 {
            return Err(refuse(&clause("GENERATED"), "generated columns are not supported"));
        }
        let kind = match affinity(declared) {
            Affinity::Integer => protocol::ColumnKind::Integer,
            Affinity::Text => protocol::ColumnKind::Text,
            Affinity::Real => protocol::ColumnKind::Real,
            Affinity::Blob if !declared.is_empty() => protocol::ColumnKind::Blob,
            Affinity::Blob => {
                return Err(refuse(
                    &clause("(no type: BLOB affinity)"),
                    "a column without a type holds any value: declare INTEGER, REAL, TEXT or BLOB",
                ))
            }
            Affinity::Numeric => return Err(refuse(
                &clause(declared),
                "NUMERIC affinity (BOOLEAN, DATE, DECIMAL, ...) is not supported: declare INTEGER, REAL, TEXT or BLOB",
            )),
        };
        let references = match foreign.iter().find(|fk| &fk.from == column) {
            None => None,
            Some(fk) => Some(fk.checked(name, column, kind)?),
        };
        columns.push(protocol::Column {
            name: column.clone(),
            kind,
            references,
            not_null: *not_null,
        });
    }
    if let Some(fk) = foreign.iter().find(|fk| !columns.iter().any(|c| c.name == fk.from)) {
        return Err(refuse(
            &format!("FOREIGN KEY ({}) REFERENCES {}", fk.from, fk.parent),
            "a reference from the key",
        ));
    }
    if let Some(other) = unique.iter().find(|u| !columns.iter().any(|c| &c.name == *u)) {
        return Err(refuse(
            &format!("UNIQUE {other}"),
            "composite, expression and partial unique constraints are not supported",
        ));
    }
    let natural_key = match unique.as_slice() {
        [] => None,
        [one] => Some(one.clone()),
        [_, second, ..] => return Err(refuse(&format!("{second} UNIQUE (a second natural key)"), NOT_YET)),
    };
    Ok(protocol::Table {
        name: name.to_string(),
        columns,
        natural_key,
    })
}

/// One `REFERENCES` clause of a table.
struct ForeignKey {
    from: String,
    parent: String,
    /// The parent's column (None: its primary key).
    to: Option<String>,
    on_delete: String,
    /// Columns in the key (more than one: composite).
    width: usize,
}

impl ForeignKey {
    /// The parent this reference names, if this syncgate checks it.
    fn checked(&self, table: &str, column: &str, kind: protocol::ColumnKind) -> Result<String, SchemaRefused> {
        let refuse = |why: &str| {
            SchemaRefused::new(
                table,
                &format!("{column} REFERENCES {} ON DELETE {}", self.parent, self.on_delete),
                why,
            )
        };
        if self.width > 1 {
            return Err(refuse("composite foreign keys are not supported"));
        }
        if self.to.as_deref().is_some_and(|to| to != "id") {
            return Err(refuse("a reference names its parent's `id`"));
        }
        if kind != protocol::ColumnKind::Integer {
            return Err(refuse("a reference is an INTEGER column"));
        }
        match self.on_delete.as_str() {
            "CASCADE" => Ok(self.parent.clone()),
            "SET NULL" | "RESTRICT" => Err(refuse(NOT_YET)),
            _ => Err(refuse(
                "deleting the parent would leave the child dangling: declare ON DELETE CASCADE \
                 (SET NULL and RESTRICT are designed in PROTOCOL.md, not checked yet)",
            )),
        }
    }
}

fn foreign_keys(conn: &Connection, table: &str) -> rusqlite::Result<Vec<ForeignKey>> {
    let rows: Vec<(i64, String, String, Option<String>, String)> = conn
        .prepare("SELECT id, \"from\", \"table\", \"to\", on_delete FROM pragma_foreign_key_list(?1) ORDER BY id, seq")?
        .query_map([table], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)))?
        .collect::<rusqlite::Result<_>>()?;
    Ok(rows
        .iter()
        .map(|(id, from, parent, to, on_delete)| ForeignKey {
            from: from.clone(),
            parent: parent.clone(),
            to: to.clone(),
            on_delete: on_delete.to_ascii_uppercase(),
            width: rows.iter().filter(|r| r.0 == *id).count(),
        })
        .collect())
}

/// The columns of `table` under a UNIQUE constraint or unique index, in
/// column order; a unique constraint this syncgate cannot check is an
/// error (as a column name, for the refusal).
fn unique_columns(conn: &Connection, table: &str) -> rusqlite::Result<Vec<String>> {
    let indexes: Vec<(String, bool, String, bool)> = conn
        .prepare("SELECT name, \"unique\", origin, partial FROM pragma_index_list(?1)")?
        .query_map([table], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?
        .collect::<rusqlite::Result<_>>()?;
    let mut out = Vec::new();
    for (index, unique, origin, partial) in indexes {
        if !unique || origin == "pk" {
            continue;
        }
        let columns: Vec<Option<String>> = conn
            .prepare("SELECT name FROM pragma_index_info(?1) ORDER BY seqno")?
            .query_map([&index], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        let described = columns
            .iter()
            .map(|c| c.as_deref().unwrap_or("(expression)"))
            .collect::<Vec<_>>();
        let mut name = described.join(", ");
        if columns.len() > 1 || columns.iter().any(Option::is_none) {
            name = format!("({name}) (a composite or expression UNIQUE)");
        } else if partial {
            name = format!("{name} (a partial unique index)");
        }
        out.push(name);
    }
    out.sort();
    out.dedup();
    Ok(out)
}

/// SQLite's column affinity rules (its documentation, "Determination Of
/// Column Affinity"), in their order.
#[derive(Debug, PartialEq, Eq)]
enum Affinity {
    Integer,
    Text,
    Blob,
    Real,
    Numeric,
}

fn affinity(declared: &str) -> Affinity {
    let t = declared.to_ascii_uppercase();
    if t.contains("INT") {
        Affinity::Integer
    } else if t.contains("CHAR") || t.contains("CLOB") || t.contains("TEXT") {
        Affinity::Text
    } else if t.contains("BLOB") || t.is_empty() {
        Affinity::Blob
    } else if t.contains("REAL") || t.contains("FLOA") || t.contains("DOUB") {
        Affinity::Real
    } else {
        Affinity::Numeric
    }
}

/// What the model and the engine assume of every schema: plain names, 1 to
/// 63 columns, natural keys on TEXT, references to declared tables, and no
/// circle of references through other tables.
fn check_shape(schema: &protocol::Schema) -> Result<(), SchemaRefused> {
    for table in &schema.tables {
        for name in std::iter::once(&table.name).chain(table.columns.iter().map(|c| &c.name)) {
            if !plain(name) {
                return Err(SchemaRefused::new(
                    &table.name,
                    &format!("the name {name:?}"),
                    "names are ASCII letters, digits and _, at most 64, not starting with _sg_ or sqlite_",
                ));
            }
        }
        if table.columns.is_empty() || table.columns.len() > COLUMNS_MAX {
            return Err(SchemaRefused::new(
                &table.name,
                &format!("{} columns besides id", table.columns.len()),
                &format!("a synced table has 1 to {COLUMNS_MAX} columns besides id"),
            ));
        }
    }
    let model = model_schema(schema)?;
    for (t, table) in model.tables.iter().enumerate() {
        if let Some(path) = circle_from(&model, t) {
            return Err(SchemaRefused::new(
                &table.name,
                &format!("a circle of references ({path})"),
                "references to the table itself are supported, circles through other tables are not",
            ));
        }
    }
    Ok(())
}

/// A path of references from `start` back to it through another table.
fn circle_from(schema: &syncgate_model::Schema, start: usize) -> Option<String> {
    let parents = |t: usize| -> Vec<usize> {
        schema.tables[t]
            .columns
            .iter()
            .filter_map(|c| c.references)
            .filter(|p| *p != t)
            .collect()
    };
    let mut stack = vec![vec![start]];
    while let Some(path) = stack.pop() {
        let last = path[path.len() - 1];
        for p in parents(last) {
            if p == start {
                let names: Vec<&str> = path
                    .iter()
                    .chain([&start])
                    .map(|t| schema.tables[*t].name.as_str())
                    .collect();
                return Some(names.join(" -> "));
            }
            if !path.contains(&p) {
                let mut longer = path.clone();
                longer.push(p);
                stack.push(longer);
            }
        }
    }
    None
}

fn plain(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && name.len() <= 64
        && !name.starts_with("_sg_")
        && !name.starts_with("sqlite_")
}
