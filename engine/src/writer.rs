//! Writes inside one local transaction, with typed refusals.

use std::cell::Cell;

use rusqlite::types::Value;
use rusqlite::{CachedStatement, Connection, ToSql, Transaction};

use crate::aliases;
use crate::cache;
use crate::error::{Error, Result, WriteRefusal};
use crate::ids::{self, id_space};
use crate::schema::{quote, Schema};
use crate::tombstones;

/// A NULL to bind for the columns an insert does not name.
static NULL: Value = Value::Null;

/// Writes inside one local transaction. An insert goes straight to SQLite,
/// whose constraints and capture triggers refuse what the rules refuse;
/// only a refused insert is then examined, to say why in a typed error
/// (checked in the order of rule I2). Updates and deletes check first.
pub struct Writer<'a> {
    tx: &'a Transaction<'a>,
    schema: &'a Schema,
    replica: u32,
    /// Mutants autoincrement-ids and insert-or-replace: local 1, 2, 3 ids.
    autoincrement: bool,
    /// Mutant merged-id-reuse: ids merged away by natural key are free again.
    merged_id_reuse: bool,
    /// The next id to mint, once this transaction knows it; forgotten when
    /// raw SQL may have inserted rows (`transaction`).
    next: Cell<Option<i64>>,
    /// Each table's insert statement, prepared at its first insert.
    inserts: Vec<Option<CachedStatement<'a>>>,
}

impl<'a> Writer<'a> {
    pub(crate) fn new(
        tx: &'a Transaction<'a>,
        schema: &'a Schema,
        replica: u32,
        autoincrement: bool,
        merged_id_reuse: bool,
    ) -> Writer<'a> {
        Writer {
            tx,
            schema,
            replica,
            autoincrement,
            merged_id_reuse,
            next: Cell::new(None),
            inserts: (0..schema.tables().len()).map(|_| None).collect(),
        }
    }
}

impl Writer<'_> {
    /// Inserts a row; `id: None` mints the next id of this replica's space.
    /// Columns not named are NULL. Returns the row's id.
    pub fn insert(&mut self, table: &str, id: Option<i64>, values: &[(&str, Value)]) -> Result<i64> {
        let schema = self.schema;
        let t = schema.index(table)?;
        let def = schema.table(t);
        for (name, _) in values {
            column_index(schema, t, name)?;
        }
        // Each column's value, NULL unless named.
        let column_value = |c: usize| -> &Value {
            let name = &def.columns[c].name;
            values.iter().find(|(n, _)| n == name).map_or(&NULL, |(_, v)| v)
        };
        let id = match id {
            Some(id) => id,
            None => self.mint(t)?,
        };
        let stmt = match &mut self.inserts[t] {
            Some(stmt) => stmt,
            empty => empty.insert(self.tx.prepare_cached(&def.sql.insert)?),
        };
        let bind =
            std::iter::once(&id as &dyn ToSql).chain((0..def.columns.len()).map(|c| column_value(c) as &dyn ToSql));
        match stmt.execute(rusqlite::params_from_iter(bind)) {
            Ok(_) => {
                if let Some(next) = self.next.get() {
                    self.next.set(Some(next.max(id + 1)));
                }
                Ok(id)
            }
            Err(e) => match self.refusal(t, id, &(0..def.columns.len()).map(column_value).collect::<Vec<_>>())? {
                Some(refusal) => Err(refusal.into()),
                None => Err(e.into()),
            },
        }
    }

    /// The next id of this replica's space, read once per transaction.
    fn mint(&self, t: usize) -> Result<i64> {
        if self.autoincrement {
            let sql = format!(
                "SELECT coalesce(max(\"id\"), 0) + 1 FROM {}",
                quote(&self.schema.table(t).name)
            );
            return Ok(self.tx.query_row(&sql, [], |r| r.get(0))?);
        }
        match self.next.get() {
            Some(next) => Ok(next),
            None => {
                let next = ids::next_free(self.tx, self.schema, self.replica)?;
                self.next.set(Some(next));
                Ok(next)
            }
        }
    }

    /// Why SQLite refused to insert `row` as `id` into table `t`, in the
    /// order of rule I2; `None` when no rule explains it.
    fn refusal(&self, t: usize, id: i64, row: &[&Value]) -> Result<Option<WriteRefusal>> {
        let def = self.schema.table(t);
        let table = def.name.clone();
        let (lo, hi) = id_space(self.replica);
        if !self.autoincrement && (id < lo || id >= hi) {
            return Ok(Some(WriteRefusal::IdOutsideReplica { table, id, lo, hi }));
        }
        if cache::row_exists(self.tx, &table, id)? {
            return Ok(Some(WriteRefusal::IdTaken { table, id }));
        }
        // A row merged away by natural key is gone too: reusing its id would
        // send an insert that merges into the survivor and renames it (N4).
        if tombstones::tombstoned(self.tx, &table, id)?
            || (!self.merged_id_reuse && aliases::aliased(self.tx, &table, id)?)
        {
            return Ok(Some(WriteRefusal::IdDeleted { table, id }));
        }
        if let Some(k) = def.natural_key {
            if let Some(holder) = cache::natural_key_holder(self.tx, self.schema, t, row[k], None)? {
                return Ok(Some(WriteRefusal::NaturalKeyTaken {
                    table,
                    column: def.columns[k].name.clone(),
                    value: display(row[k]),
                    holder,
                }));
            }
        }
        let all: Vec<usize> = (0..row.len()).collect();
        let row: Vec<Value> = row.iter().map(|v| (*v).clone()).collect();
        missing_parent(self.tx, self.schema, t, &row, &all)
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
        if let Some(refusal) = missing_parent(self.tx, self.schema, t, &new, &changed)? {
            return Err(refusal.into());
        }
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
        self.next.set(None);
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

/// The first of `columns` whose parent row is not here.
fn missing_parent(
    conn: &Connection,
    schema: &Schema,
    t: usize,
    row: &[Value],
    columns: &[usize],
) -> Result<Option<WriteRefusal>> {
    let def = schema.table(t);
    for &c in columns {
        if let (Some(p), Value::Integer(parent)) = (def.parents[c], &row[c]) {
            if !cache::row_exists(conn, &schema.table(p).name, *parent)? {
                return Ok(Some(WriteRefusal::ParentMissing {
                    table: def.name.clone(),
                    column: def.columns[c].name.clone(),
                    parent: *parent,
                }));
            }
        }
    }
    Ok(None)
}
