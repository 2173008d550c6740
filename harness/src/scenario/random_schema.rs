//! Random schemas (`--schema random`): each case draws its own tables
//! from its seed, so the engine meets shapes no one wrote down: 1 to 6
//! tables, reference chains up to 5 deep (a table references only tables
//! drawn before it, or itself), natural keys or none, integer, real, text
//! and blob columns. Every drawn schema is one `--schema` accepts.

use proptest::prelude::*;
use syncgate_protocol::{Column, ColumnKind, Schema, Table};

/// Most tables a drawn schema has.
pub const TABLES_MAX: usize = 6;

/// One table's draw: its plain columns (kind, NOT NULL or not),
/// whether it has a natural key (and whether NOT NULL), the earlier tables
/// it references (and whether those references are NOT NULL), and whether
/// it references itself.
type TableDraw = (Vec<(ColumnKind, bool)>, (bool, bool), (Vec<usize>, bool), bool);

fn table_draw(index: usize) -> BoxedStrategy<TableDraw> {
    let parents = if index == 0 {
        Just(Vec::new()).boxed()
    } else {
        proptest::collection::vec(0..index, 0..=2).boxed()
    };
    (
        // At least one plain column: the identity column of engines whose
        // ids move (a text one, half of them).
        proptest::collection::vec((plain_kind(), proptest::bool::weighted(0.25)), 1..=3),
        (proptest::bool::weighted(0.5), proptest::bool::weighted(0.3)),
        (parents, proptest::bool::weighted(0.5)),
        proptest::bool::weighted(0.25),
    )
        .boxed()
}

fn plain_kind() -> impl Strategy<Value = ColumnKind> {
    prop_oneof![
        4 => Just(ColumnKind::Text),
        2 => Just(ColumnKind::Integer),
        1 => Just(ColumnKind::Real),
        1 => Just(ColumnKind::Blob),
    ]
}

fn table(
    index: usize,
    (plain, (natural_key, key_not_null), (mut parents, refs_not_null), to_itself): TableDraw,
) -> Table {
    parents.sort_unstable();
    parents.dedup();
    let mut columns = Vec::new();
    if natural_key {
        columns.push(column("name", ColumnKind::Text, None, key_not_null));
    }
    for p in &parents {
        let references = Some(format!("t{p}"));
        columns.push(column(
            &format!("t{p}_id"),
            ColumnKind::Integer,
            references,
            refs_not_null,
        ));
    }
    if to_itself {
        // Nullable: a root row has no parent.
        columns.push(column(
            "parent_id",
            ColumnKind::Integer,
            Some(format!("t{index}")),
            false,
        ));
    }
    for (k, (kind, not_null)) in plain.iter().enumerate() {
        columns.push(column(&format!("c{k}"), *kind, None, *not_null));
    }
    Table {
        name: format!("t{index}"),
        columns,
        natural_key: natural_key.then(|| "name".to_string()),
    }
}

fn column(name: &str, kind: ColumnKind, references: Option<String>, not_null: bool) -> Column {
    Column {
        name: name.to_string(),
        kind,
        references,
        not_null,
    }
}

/// A schema of 1 to `TABLES_MAX` tables.
pub(super) fn random_schema() -> BoxedStrategy<Schema> {
    (1..=TABLES_MAX)
        .prop_flat_map(|n| {
            let draws: Vec<BoxedStrategy<TableDraw>> = (0..n).map(table_draw).collect();
            draws
        })
        .prop_map(|draws| Schema {
            tables: draws.into_iter().enumerate().map(|(i, d)| table(i, d)).collect(),
            ddl: Vec::new(),
        })
        .boxed()
}

/// The schema in one line, as a trace shows it: `t0(name UNIQUE, c0 text)
/// t1(t0_id -> t0, c0 integer)`.
pub(super) fn compact(schema: &Schema) -> String {
    schema
        .tables
        .iter()
        .map(|t| {
            let columns: Vec<String> = t.columns.iter().map(|c| compact_column(t, c)).collect();
            format!("{}({})", t.name, columns.join(", "))
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn compact_column(table: &Table, c: &Column) -> String {
    let shown = match (&c.references, table.natural_key.as_deref() == Some(c.name.as_str())) {
        (Some(parent), _) => format!("{} -> {parent}", c.name),
        (None, true) => format!("{} UNIQUE", c.name),
        (None, false) => match c.kind {
            ColumnKind::Integer => format!("{} integer", c.name),
            ColumnKind::Real => format!("{} real", c.name),
            ColumnKind::Text => format!("{} text", c.name),
            ColumnKind::Blob => format!("{} blob", c.name),
        },
    };
    if c.not_null {
        format!("{shown} NOT NULL")
    } else {
        shown
    }
}
