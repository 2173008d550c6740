//! The PostgreSQL remote's SQL, built once from the declared schema and the
//! remote's namespace (identifiers quoted, every value a bound parameter,
//! arrays for the set-based calls), and the conversions between engine
//! values and PostgreSQL parameters and rows.

use postgres::types::ToSql;
use postgres::Row;
use rusqlite::types::Value;

use crate::error::{Error, Result};
use crate::schema::{quote, ColumnType, Schema, Table};

/// `_sg_rows.state` of a live, dead and aliased row (as on the SQLite remote).
pub(crate) const STATE_LIVE: i16 = 0;
pub(crate) const STATE_DEAD: i16 = 1;
pub(crate) const STATE_ALIAS: i16 = 2;

/// The PostgreSQL type a declared column is stored as.
pub(crate) fn pg_type(kind: ColumnType) -> &'static str {
    match kind {
        ColumnType::Integer => "bigint",
        ColumnType::Text => "text",
        ColumnType::Real => "double precision",
        ColumnType::Blob => "bytea",
    }
}

/// One synced table's statements.
pub(crate) struct PgTableSql {
    /// `$1` tbl, `$2` ids: `id, state, alias_of, stamps, data id, <columns>`.
    pub rows: String,
    /// `$1` ids: `id, <columns>` of live rows.
    pub values: String,
    /// `$1` keys: `key, id` of live rows holding them.
    pub keys: Option<String>,
    /// Per column, for reference columns: `$1` parents: `parent, id`.
    pub children: Vec<Option<String>>,
    /// `$1` ids.
    pub delete: String,
    /// `$1` ids, then one array per column: upserts live rows.
    pub upsert: String,
}

/// Every statement of one remote.
pub(crate) struct PgSql {
    pub ddl: String,
    pub tables: Vec<PgTableSql>,
    pub head: String,
    pub register: String,
    pub acked: String,
    pub write_rows: String,
    pub set_acked: String,
    pub set_head: String,
    pub changes_gone: String,
    pub changes_live: String,
    pub sync_tables: String,
    pub columns: String,
}

impl PgSql {
    pub(crate) fn new(namespace: &str, schema: &Schema) -> PgSql {
        let ns = quote(namespace);
        let q = |name: &str| format!("{ns}.{}", quote(name));
        let mut ddl = format!(
            "CREATE SCHEMA IF NOT EXISTS {ns};
             CREATE TABLE IF NOT EXISTS {remote} (
                 k integer PRIMARY KEY CHECK (k = 1), seq bigint NOT NULL, replicas bigint NOT NULL);
             INSERT INTO {remote} (k, seq, replicas) VALUES (1, 0, 0) ON CONFLICT (k) DO NOTHING;
             CREATE TABLE IF NOT EXISTS {replicas} (replica bigint PRIMARY KEY, acked bigint NOT NULL);
             CREATE TABLE IF NOT EXISTS {rows} (
                 tbl text NOT NULL, id bigint NOT NULL, seq bigint NOT NULL, state smallint NOT NULL,
                 alias_of bigint, stamps bytea, PRIMARY KEY (tbl, id));
             CREATE INDEX IF NOT EXISTS \"_sg_rows_seq\" ON {rows} (seq);\n",
            remote = q("_sg_remote"),
            replicas = q("_sg_replicas"),
            rows = q("_sg_rows"),
        );
        for t in schema.tables() {
            ddl.push_str(&table_ddl(&ns, t));
        }
        PgSql {
            ddl,
            tables: schema.tables().iter().map(|t| PgTableSql::new(&ns, t)).collect(),
            head: format!("SELECT seq FROM {}", q("_sg_remote")),
            register: format!(
                "WITH r AS (UPDATE {remote} SET replicas = replicas + 1 WHERE replicas < $1 RETURNING replicas) \
                 INSERT INTO {replicas} (replica, acked) SELECT replicas, 0 FROM r RETURNING replica",
                remote = q("_sg_remote"),
                replicas = q("_sg_replicas"),
            ),
            acked: format!("SELECT acked FROM {} WHERE replica = $1", q("_sg_replicas")),
            write_rows: format!(
                "INSERT INTO {rows} (tbl, id, seq, state, alias_of, stamps) \
                 SELECT * FROM unnest($1::text[], $2::bigint[], $3::bigint[], $4::smallint[], $5::bigint[], $6::bytea[]) \
                 ON CONFLICT (tbl, id) DO UPDATE SET seq = excluded.seq, state = excluded.state, \
                 alias_of = excluded.alias_of, stamps = excluded.stamps",
                rows = q("_sg_rows"),
            ),
            set_acked: format!(
                "INSERT INTO {} (replica, acked) VALUES ($1, $2) \
                 ON CONFLICT (replica) DO UPDATE SET acked = excluded.acked",
                q("_sg_replicas")
            ),
            // The head never moves back, whoever stored a larger one.
            set_head: format!("UPDATE {} SET seq = GREATEST(seq, $1)", q("_sg_remote")),
            changes_gone: format!(
                "SELECT tbl, id, seq, state, alias_of FROM {} WHERE seq > $1 AND seq <= $2 AND state <> 0 \
                 ORDER BY seq LIMIT $3",
                q("_sg_rows")
            ),
            changes_live: format!(
                "SELECT tbl, id, seq, stamps FROM {} WHERE seq > $1 AND seq <= $2 AND state = 0 ORDER BY seq LIMIT $3",
                q("_sg_rows")
            ),
            sync_tables: "SELECT count(*) FROM information_schema.tables WHERE table_schema = $1 \
                          AND table_name IN ('_sg_remote', '_sg_replicas', '_sg_rows')"
                .into(),
            columns: "SELECT column_name::text, data_type::text FROM information_schema.columns \
                      WHERE table_schema = $1 AND table_name = $2 ORDER BY ordinal_position"
                .into(),
        }
    }
}

fn table_ddl(ns: &str, t: &Table) -> String {
    let name = format!("{ns}.{}", quote(&t.name));
    let mut cols = vec!["\"id\" bigint PRIMARY KEY".to_string()];
    for (c, col) in t.columns.iter().enumerate() {
        let unique = if t.natural_key == Some(c) { " UNIQUE" } else { "" };
        cols.push(format!("{} {}{unique}", quote(&col.name), pg_type(col.kind)));
    }
    // References are the engine's to keep (rule D2, checked by the gate),
    // as on the SQLite remote: no foreign-key constraints here.
    let mut ddl = format!("CREATE TABLE IF NOT EXISTS {name} ({});\n", cols.join(", "));
    for (c, col) in t.columns.iter().enumerate() {
        if t.parents[c].is_some() {
            ddl.push_str(&format!(
                "CREATE INDEX IF NOT EXISTS {} ON {name} ({});\n",
                quote(&format!("_sg_idx_{}_{}", t.name, col.name)),
                quote(&col.name)
            ));
        }
    }
    ddl
}

impl PgTableSql {
    fn new(ns: &str, t: &Table) -> PgTableSql {
        let name = format!("{ns}.{}", quote(&t.name));
        let rows_name = format!("{ns}.\"_sg_rows\"");
        let cols: Vec<String> = t.columns.iter().map(|c| quote(&c.name)).collect();
        let prefixed: Vec<String> = cols.iter().map(|c| format!(", t.{c}")).collect();
        let arrays: Vec<String> = t
            .columns
            .iter()
            .enumerate()
            .map(|(i, c)| format!(", ${}::{}[]", i + 2, pg_type(c.kind)))
            .collect();
        let set: Vec<String> = cols.iter().map(|c| format!("{c} = excluded.{c}")).collect();
        let on_conflict = if set.is_empty() {
            "DO NOTHING".to_string()
        } else {
            format!("DO UPDATE SET {}", set.join(", "))
        };
        let col_list: String = cols.iter().map(|c| format!(", {c}")).collect();
        PgTableSql {
            rows: format!(
                "SELECT r.id, r.state, r.alias_of, r.stamps, t.\"id\"{} FROM {rows_name} r LEFT JOIN {name} t ON t.\"id\" = r.id \
                 WHERE r.tbl = $1 AND r.id = ANY($2::bigint[])",
                prefixed.concat()
            ),
            values: format!("SELECT \"id\"{col_list} FROM {name} WHERE \"id\" = ANY($1::bigint[])"),
            keys: t.natural_key.map(|k| {
                let key = &cols[k];
                format!(
                    "SELECT {key}, \"id\" FROM {name} WHERE {key} = ANY($1::{}[])",
                    pg_type(t.columns[k].kind)
                )
            }),
            children: (0..t.columns.len())
                .map(|c| {
                    t.parents[c].map(|_| {
                        let col = &cols[c];
                        format!("SELECT {col}, \"id\" FROM {name} WHERE {col} = ANY($1::bigint[]) ORDER BY {col}, \"id\"")
                    })
                })
                .collect(),
            delete: format!("DELETE FROM {name} WHERE \"id\" = ANY($1::bigint[])"),
            upsert: format!(
                "INSERT INTO {name} (\"id\"{col_list}) SELECT * FROM unnest($1::bigint[]{}) ON CONFLICT (\"id\") {on_conflict}",
                arrays.concat()
            ),
        }
    }
}

/// The values of one column, as one array parameter of its PostgreSQL type.
pub(crate) fn column_array<'a>(
    table: &Table,
    column: usize,
    values: impl Iterator<Item = &'a Value>,
) -> Result<Box<dyn ToSql + Sync>> {
    let def = &table.columns[column];
    let mismatch = |got: &str| Error::SchemaMismatch {
        place: "remote",
        table: table.name.clone(),
        detail: format!(
            "column {:?} is {} on PostgreSQL, but a write holds {got}",
            def.name,
            pg_type(def.kind)
        ),
    };
    Ok(match def.kind {
        ColumnType::Integer => Box::new(
            values
                .map(|v| match v {
                    Value::Null => Ok(None),
                    Value::Integer(i) => Ok(Some(*i)),
                    other => Err(mismatch(value_kind(other))),
                })
                .collect::<Result<Vec<Option<i64>>>>()?,
        ),
        ColumnType::Text => Box::new(
            values
                .map(|v| match v {
                    Value::Null => Ok(None),
                    Value::Text(s) => Ok(Some(s.clone())),
                    other => Err(mismatch(value_kind(other))),
                })
                .collect::<Result<Vec<Option<String>>>>()?,
        ),
        ColumnType::Real => Box::new(
            values
                .map(|v| match v {
                    Value::Null => Ok(None),
                    Value::Real(f) => Ok(Some(*f)),
                    Value::Integer(i) => Ok(Some(*i as f64)),
                    other => Err(mismatch(value_kind(other))),
                })
                .collect::<Result<Vec<Option<f64>>>>()?,
        ),
        ColumnType::Blob => Box::new(
            values
                .map(|v| match v {
                    Value::Null => Ok(None),
                    Value::Blob(b) => Ok(Some(b.clone())),
                    other => Err(mismatch(value_kind(other))),
                })
                .collect::<Result<Vec<Option<Vec<u8>>>>>()?,
        ),
    })
}

fn value_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Integer(_) => "an integer",
        Value::Real(_) => "a real",
        Value::Text(_) => "text",
        Value::Blob(_) => "a blob",
    }
}

/// Reads column `at` of `row` as a value of the declared `kind`.
pub(crate) fn read_value(row: &Row, at: usize, kind: ColumnType) -> Result<Value> {
    Ok(match kind {
        ColumnType::Integer => row.try_get::<_, Option<i64>>(at)?.map_or(Value::Null, Value::Integer),
        ColumnType::Text => row.try_get::<_, Option<String>>(at)?.map_or(Value::Null, Value::Text),
        ColumnType::Real => row.try_get::<_, Option<f64>>(at)?.map_or(Value::Null, Value::Real),
        ColumnType::Blob => row.try_get::<_, Option<Vec<u8>>>(at)?.map_or(Value::Null, Value::Blob),
    })
}

/// The declared columns of `table` read from `row`, starting at `first`.
pub(crate) fn read_values(row: &Row, first: usize, table: &Table) -> Result<Vec<Value>> {
    table
        .columns
        .iter()
        .enumerate()
        .map(|(c, col)| read_value(row, first + c, col.kind))
        .collect()
}
