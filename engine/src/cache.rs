//! Reads and plain writes of the synced tables in the local cache, by the
//! declared schema's names (never by guessing a row's shape).

use rusqlite::types::Value;
use rusqlite::{Connection, OptionalExtension};

use crate::error::Result;
use crate::schema::{quote, Schema};

/// One row as read back: its id and its values in declared column order.
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    pub id: i64,
    pub values: Vec<Value>,
}

pub(crate) fn row_exists(conn: &Connection, table: &str, id: i64) -> Result<bool> {
    let sql = format!("SELECT 1 FROM {} WHERE \"id\" = ?1", quote(table));
    Ok(conn
        .prepare_cached(&sql)?
        .query_row([id], |_| Ok(()))
        .optional()?
        .is_some())
}

/// The largest id of `table` in `[lo, hi)`.
pub(crate) fn max_id_in(conn: &Connection, table: &str, lo: i64, hi: i64) -> Result<Option<i64>> {
    let sql = format!(
        "SELECT max(\"id\") FROM {} WHERE \"id\" >= ?1 AND \"id\" < ?2",
        quote(table)
    );
    Ok(conn.prepare_cached(&sql)?.query_row([lo, hi], |r| r.get(0))?)
}

/// The row other than `except` whose natural key is `key`.
pub(crate) fn natural_key_holder(
    conn: &Connection,
    schema: &Schema,
    t: usize,
    key: &Value,
    except: Option<i64>,
) -> Result<Option<i64>> {
    let def = schema.table(t);
    let Some(k) = def.natural_key else { return Ok(None) };
    if *key == Value::Null {
        return Ok(None);
    }
    let sql = format!(
        "SELECT \"id\" FROM {} WHERE {} = ?1 AND \"id\" IS NOT ?2 ORDER BY \"id\" LIMIT 1",
        quote(&def.name),
        quote(&def.columns[k].name)
    );
    Ok(conn
        .prepare_cached(&sql)?
        .query_row(rusqlite::params![key, except], |r| r.get(0))
        .optional()?)
}

/// Row `id` of table `t`, its values in declared order.
pub(crate) fn read_row(conn: &Connection, schema: &Schema, t: usize, id: i64) -> Result<Option<Vec<Value>>> {
    let def = schema.table(t);
    let n = def.columns.len();
    Ok(conn
        .prepare_cached(&def.sql.select_values)?
        .query_row([id], |r| {
            (0..n)
                .map(|i| r.get::<_, Value>(i))
                .collect::<rusqlite::Result<Vec<_>>>()
        })
        .optional()?)
}

/// Every row of `table`, by id.
pub(crate) fn read_rows(conn: &Connection, schema: &Schema, table: &str) -> Result<Vec<Row>> {
    let t = schema.index(table)?;
    let def = schema.table(t);
    let cols: Vec<String> = def.columns.iter().map(|c| quote(&c.name)).collect();
    let sql = format!(
        "SELECT \"id\", {} FROM {} ORDER BY \"id\"",
        cols.join(", "),
        quote(&def.name)
    );
    let n = cols.len();
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query_map([], |r| {
        Ok(Row {
            id: r.get("id")?,
            values: (1..=n)
                .map(|i| r.get::<_, Value>(i))
                .collect::<rusqlite::Result<Vec<_>>>()?,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
}

/// Deletes row `id` of table `t`; returns how many rows went (0 or 1).
pub(crate) fn delete_row(conn: &Connection, schema: &Schema, t: usize, id: i64) -> Result<usize> {
    Ok(conn.prepare_cached(&schema.table(t).sql.delete)?.execute([id])?)
}

/// Writes row `id` of table `t`, inserting or replacing its values in place.
pub(crate) fn upsert_row(conn: &Connection, schema: &Schema, t: usize, id: i64, values: &[Value]) -> Result<()> {
    let def = schema.table(t);
    assert_eq!(
        values.len(),
        def.columns.len(),
        "upsert {}/{id}: values do not match the columns",
        def.name
    );
    let mut bind: Vec<&dyn rusqlite::ToSql> = Vec::with_capacity(values.len() + 1);
    bind.push(&id);
    bind.extend(values.iter().map(|v| v as &dyn rusqlite::ToSql));
    conn.prepare_cached(&def.sql.upsert)?.execute(&bind[..])?;
    Ok(())
}

/// Points every child of `from` (in table `t`) at `to` instead.
pub(crate) fn repoint_children(conn: &Connection, schema: &Schema, t: usize, from: i64, to: i64) -> Result<()> {
    for &(ct, c) in &schema.table(t).children {
        let child = schema.table(ct);
        let sql = format!(
            "UPDATE {} SET {1} = ?1 WHERE {1} = ?2",
            quote(&child.name),
            quote(&child.columns[c].name)
        );
        conn.prepare_cached(&sql)?.execute([to, from])?;
    }
    Ok(())
}

/// Ids of the rows of table `ct` whose column `c` references `parent`.
pub(crate) fn children_ids(conn: &Connection, schema: &Schema, ct: usize, c: usize, parent: i64) -> Result<Vec<i64>> {
    let child = schema.table(ct);
    let sql = format!(
        "SELECT \"id\" FROM {} WHERE {} = ?1",
        quote(&child.name),
        quote(&child.columns[c].name)
    );
    let ids = conn
        .prepare_cached(&sql)?
        .query_map([parent], |r| r.get(0))?
        .collect::<rusqlite::Result<Vec<i64>>>()?;
    Ok(ids)
}

/// Sets column `c` of row `id` of table `t` (a reference a pull moves).
pub(crate) fn set_column(conn: &Connection, schema: &Schema, t: usize, id: i64, c: usize, value: &Value) -> Result<()> {
    let def = schema.table(t);
    let sql = format!(
        "UPDATE {} SET {} = ?1 WHERE \"id\" = ?2",
        quote(&def.name),
        quote(&def.columns[c].name)
    );
    conn.prepare_cached(&sql)?.execute(rusqlite::params![value, id])?;
    Ok(())
}

/// Deletes every child of `parent` (in table `t`); each cascades further.
pub(crate) fn delete_children(conn: &Connection, schema: &Schema, t: usize, parent: i64) -> Result<()> {
    for &(ct, c) in &schema.table(t).children {
        let child = schema.table(ct);
        let sql = format!(
            "DELETE FROM {} WHERE {} = ?1",
            quote(&child.name),
            quote(&child.columns[c].name)
        );
        conn.prepare_cached(&sql)?.execute([parent])?;
    }
    Ok(())
}
