//! Writes inside one local transaction, with typed refusals.

use rusqlite::types::Value;
use rusqlite::{Connection, Transaction};

use crate::aliases;
use crate::cache;
use crate::error::{Error, Result, WriteRefusal};
use crate::ids::id_space;
use crate::meta;
use crate::schema::{quote, Schema};
use crate::tombstones;

/// Writes inside one local transaction. Each call checks what SQLite would
/// refuse and says so in a typed error; the triggers enforce the same rules
/// for writes that come through raw SQL.
pub struct Writer<'a> {
    pub(crate) tx: &'a Transaction<'a>,
    pub(crate) schema: &'a Schema,
    pub(crate) replica: u32,
    /// Mutants autoincrement-ids and insert-or-replace: local 1, 2, 3 ids.
    pub(crate) autoincrement: bool,
    /// Mutant merged-id-reuse: ids merged away by natural key are free again.
    pub(crate) merged_id_reuse: bool,
}

impl Writer<'_> {
    /// Inserts a row; `id: None` mints the next id of this replica's space.
    /// Columns not named are NULL. Returns the row's id.
    pub fn insert(&mut self, table: &str, id: Option<i64>, values: &[(&str, Value)]) -> Result<i64> {
        let t = self.schema.index(table)?;
        let def = self.schema.table(t);
        let mut row = vec![Value::Null; def.columns.len()];
        for (name, v) in values {
            row[column_index(self.schema, t, name)?] = v.clone();
        }
        let (lo, hi) = id_space(self.replica);
        let next = if self.autoincrement {
            let sql = format!("SELECT coalesce(max(\"id\"), 0) + 1 FROM {}", quote(table));
            self.tx.query_row(&sql, [], |r| r.get(0))?
        } else {
            meta::next_id(self.tx)?
        };
        let id = match id {
            Some(id) if !self.autoincrement && (id < lo || id >= hi) => {
                return Err(WriteRefusal::IdOutsideReplica {
                    table: table.into(),
                    id,
                    lo,
                    hi,
                }
                .into());
            }
            Some(id) => id,
            None => next,
        };
        if cache::row_exists(self.tx, table, id)? {
            return Err(WriteRefusal::IdTaken {
                table: table.into(),
                id,
            }
            .into());
        }
        // A row merged away by natural key is gone too: reusing its id would
        // send an insert that merges into the survivor and renames it (N4).
        if tombstones::tombstoned(self.tx, table, id)?
            || (!self.merged_id_reuse && aliases::aliased(self.tx, table, id)?)
        {
            return Err(WriteRefusal::IdDeleted {
                table: table.into(),
                id,
            }
            .into());
        }
        if let Some(k) = def.natural_key {
            if let Some(holder) = cache::natural_key_holder(self.tx, self.schema, t, &row[k], None)? {
                return Err(WriteRefusal::NaturalKeyTaken {
                    table: table.into(),
                    column: def.columns[k].name.clone(),
                    value: display(&row[k]),
                    holder,
                }
                .into());
            }
        }
        let all: Vec<usize> = (0..row.len()).collect();
        check_parents(self.tx, self.schema, t, &row, &all)?;
        let mut bind: Vec<&dyn rusqlite::ToSql> = vec![&id];
        bind.extend(row.iter().map(|v| v as &dyn rusqlite::ToSql));
        self.tx.prepare_cached(&def.sql.insert)?.execute(&bind[..])?;
        Ok(id)
    }

    /// Sets the named columns of row `id`.
    pub fn update(&mut self, table: &str, id: i64, set: &[(&str, Value)]) -> Result<()> {
        let t = self.schema.index(table)?;
        let def = self.schema.table(t);
        let Some(old) = cache::read_row(self.tx, self.schema, t, id)? else {
            return Err(WriteRefusal::RowNotFound {
                table: table.into(),
                id,
            }
            .into());
        };
        let mut new = old.clone();
        for (name, v) in set {
            new[column_index(self.schema, t, name)?] = v.clone();
        }
        if let Some(k) = def.natural_key {
            if new[k] != old[k] {
                return Err(WriteRefusal::KeyImmutable {
                    table: table.into(),
                    column: def.columns[k].name.clone(),
                }
                .into());
            }
        }
        let changed: Vec<usize> = (0..new.len()).filter(|&c| new[c] != old[c]).collect();
        check_parents(self.tx, self.schema, t, &new, &changed)?;
        if changed.is_empty() {
            return Ok(());
        }
        let sets: Vec<String> = changed
            .iter()
            .enumerate()
            .map(|(i, &c)| format!("{} = ?{}", quote(&def.columns[c].name), i + 2))
            .collect();
        let sql = format!("UPDATE {} SET {} WHERE \"id\" = ?1", quote(table), sets.join(", "));
        let mut bind: Vec<&dyn rusqlite::ToSql> = vec![&id];
        bind.extend(changed.iter().map(|&c| &new[c] as &dyn rusqlite::ToSql));
        self.tx.prepare_cached(&sql)?.execute(&bind[..])?;
        Ok(())
    }

    /// Deletes row `id` and, by cascade, its children.
    pub fn delete(&mut self, table: &str, id: i64) -> Result<()> {
        let t = self.schema.index(table)?;
        if cache::delete_row(self.tx, self.schema, t, id)? == 0 {
            return Err(WriteRefusal::RowNotFound {
                table: table.into(),
                id,
            }
            .into());
        }
        Ok(())
    }

    /// The transaction, for reads (or raw writes, which are captured too).
    pub fn transaction(&self) -> &Transaction<'_> {
        self.tx
    }
}

fn column_index(schema: &Schema, t: usize, name: &str) -> Result<usize> {
    let def = schema.table(t);
    def.columns
        .iter()
        .position(|c| c.name == name)
        .ok_or_else(|| Error::UnknownColumn {
            table: def.name.clone(),
            column: name.to_string(),
        })
}

fn display(v: &Value) -> String {
    match v {
        Value::Null => "NULL".into(),
        Value::Integer(i) => i.to_string(),
        Value::Real(f) => f.to_string(),
        Value::Text(s) => format!("{s:?}"),
        Value::Blob(b) => format!("<{} bytes>", b.len()),
    }
}

fn check_parents(conn: &Connection, schema: &Schema, t: usize, row: &[Value], columns: &[usize]) -> Result<()> {
    let def = schema.table(t);
    for &c in columns {
        if let (Some(p), Value::Integer(parent)) = (def.parents[c], &row[c]) {
            if !cache::row_exists(conn, &schema.table(p).name, *parent)? {
                return Err(WriteRefusal::ParentMissing {
                    table: def.name.clone(),
                    column: def.columns[c].name.clone(),
                    parent: *parent,
                }
                .into());
            }
        }
    }
    Ok(())
}
