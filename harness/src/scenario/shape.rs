//! What the generator draws for each table and column of a case's schema:
//! values by column kind (natural keys that collide, references to rows a
//! replica holds, integers, reals, text and blobs at their edges), which columns an
//! update may set, and which tables a family insert spans.
//!
//! The built-in schema's columns keep the vocabularies its traces have
//! always used (`ip` draws addresses, `kind` record kinds), so a seed draws
//! the same case with or without a declared schema's machinery.

use proptest::prelude::*;
use proptest::strategy::Union;
use syncgate_model as model;
use syncgate_protocol::IntegerDomain;

use super::{BlobSpec, Val};

const NAMES: [&str; 4] = ["a.example", "b.example", "c.example", "d.example"];
/// Natural keys at the edges: non-ASCII, and empty (a key like any other).
const ODD_NAMES: [&str; 2] = ["bücher.example", ""];
pub(super) const WORDS: [&str; 7] = ["alpha", "bravo", "charlie", "delta", "echo", "fox", "ñandú-日本"];
const IPS: [&str; 4] = ["10.0.0.1", "10.0.0.2", "10.0.0.3", "192.168.1.1"];
const KINDS: [&str; 3] = ["A", "MX", "TXT"];
/// Untagged text: empty, non-ASCII, and values several replicas write alike.
const RAW: [&str; 3] = ["", "ünïcødé ✓", "shared"];
/// Integers at the edges of SQLite's and JSON's range.
const EDGE_INTS: [i64; 5] = [i64::MIN, i64::MIN + 1, -1, i64::MAX - 1, i64::MAX];
/// The edges of JavaScript's safe integers (`value_domain: {"integers": "safe"}`).
const EDGE_SAFE_INTS: [i64; 5] = [-(1 << 53) + 1, -(1 << 53) + 2, -1, (1 << 53) - 2, (1 << 53) - 1];
/// Reals at the edges: the smallest subnormal, the smallest normal, the
/// largest doubles, an integer past 2^53, and decimals a parser rounds.
const EDGE_REALS: [f64; 10] = [
    0.0,
    5e-324,
    -5e-324,
    f64::MIN_POSITIVE,
    f64::MAX,
    f64::MIN,
    9_007_199_254_740_994.0,
    0.1,
    1e23,
    // The largest subnormal (the decimal that hung parsers of other languages).
    -f64::from_bits(0x000f_ffff_ffff_ffff),
];
/// Rows a reference or a row choice picks among (by position).
pub(super) const ROW_CHOICES: usize = 8;

/// How one column's values are drawn (`nullable`: NULL among them; never
/// into a `NOT NULL` column).
#[derive(Clone, Copy, Debug)]
enum Draw {
    /// The natural key: shared names, so replicas collide.
    Key {
        nullable: bool,
    },
    /// A reference: the n-th row of the parent the replica holds; NULL
    /// sometimes when the reference is to the table itself (a root row).
    Parent {
        parent: usize,
        to_itself: bool,
        nullable: bool,
    },
    Int {
        nullable: bool,
        domain: IntegerDomain,
    },
    Text {
        pool: &'static [&'static str],
        nullable: bool,
    },
    Real {
        nullable: bool,
    },
    Blob {
        nullable: bool,
    },
}

impl Draw {
    fn of(schema: &model::Schema, t: usize, c: usize, domain: IntegerDomain) -> Draw {
        let table = &schema.tables[t];
        let column = &table.columns[c];
        let nullable = !column.not_null;
        match (column.references, column.kind) {
            (Some(p), _) => Draw::Parent {
                parent: p,
                to_itself: p == t,
                nullable,
            },
            _ if table.natural_key == Some(c) => Draw::Key { nullable },
            (None, model::ColumnKind::Integer) => Draw::Int { nullable, domain },
            (None, model::ColumnKind::Text) => Draw::Text {
                pool: match column.name.as_str() {
                    "ip" => &IPS,
                    "kind" => &KINDS,
                    _ => &WORDS,
                },
                nullable,
            },
            (None, model::ColumnKind::Real) => Draw::Real { nullable },
            (None, model::ColumnKind::Blob) => Draw::Blob { nullable },
        }
    }

    fn strategy(self) -> BoxedStrategy<Val> {
        let null = |nullable: bool| u32::from(nullable);
        match self {
            Draw::Key { nullable } => key_value(null(nullable)),
            Draw::Parent {
                to_itself: true,
                nullable: true,
                ..
            } => prop_oneof![
                1 => Just(Val::Null),
                3 => (0..ROW_CHOICES).prop_map(Val::Parent),
            ]
            .boxed(),
            Draw::Parent { .. } => (0..ROW_CHOICES).prop_map(Val::Parent).boxed(),
            Draw::Int { nullable, domain } => int_value(null(nullable), domain),
            Draw::Text { pool, nullable } => text_value(pool, null(nullable)),
            Draw::Real { nullable } => real_value(null(nullable)),
            Draw::Blob { nullable } => blob_value(null(nullable)),
        }
    }

    fn updatable(self) -> bool {
        matches!(
            self,
            Draw::Int { .. } | Draw::Text { .. } | Draw::Real { .. } | Draw::Blob { .. }
        )
    }
}

/// The draws of a case's schema.
#[derive(Clone, Debug)]
pub struct Shape {
    tables: Vec<TableShape>,
    /// The tables this case writes (every table unless focused).
    written: Vec<usize>,
    /// Per table, the tables it references (itself left out).
    parents: Vec<Vec<usize>>,
    /// The tables of a family insert (`model::Schema::family`).
    family: Option<(usize, usize)>,
}

#[derive(Clone, Debug)]
struct TableShape {
    columns: Vec<Draw>,
    natural_key: bool,
}

impl Shape {
    /// The draws for `schema`, integers within `integers`.
    pub fn of(schema: &model::Schema, integers: IntegerDomain) -> Shape {
        let tables: Vec<TableShape> = (0..schema.tables.len())
            .map(|t| TableShape {
                columns: (0..schema.tables[t].columns.len())
                    .map(|c| Draw::of(schema, t, c, integers))
                    .collect(),
                natural_key: schema.tables[t].natural_key.is_some(),
            })
            .collect();
        Shape {
            written: (0..tables.len()).collect(),
            parents: schema
                .tables
                .iter()
                .enumerate()
                .map(|(t, table)| {
                    table
                        .columns
                        .iter()
                        .filter_map(|c| c.references)
                        .filter(|p| *p != t)
                        .collect()
                })
                .collect(),
            tables,
            family: schema.family(),
        }
    }

    /// This shape, writing only `picks` and the tables they reference, up
    /// their chains: on a schema of many tables, a case that spreads its
    /// writes over all of them rarely has two replicas meet on one row, so
    /// each case of a declared schema writes a few related tables (swarm
    /// testing over tables).
    pub fn focused(&self, picks: &[usize]) -> Shape {
        let mut written: Vec<usize> = Vec::new();
        let mut todo: Vec<usize> = picks.to_vec();
        while let Some(t) = todo.pop() {
            if !written.contains(&t) {
                written.push(t);
                todo.extend(self.parents[t].iter().copied());
            }
        }
        written.sort_unstable();
        let family = self
            .family
            .filter(|(parent, child)| written.contains(parent) && written.contains(child));
        Shape {
            written,
            family,
            ..self.clone()
        }
    }

    /// Every table of the schema (what a restart's table steps pick from).
    pub fn tables(&self) -> usize {
        self.tables.len()
    }

    /// A table this case writes.
    pub fn written_table(&self) -> BoxedStrategy<usize> {
        let written = self.written.clone();
        (0..written.len()).prop_map(move |i| written[i]).boxed()
    }

    pub fn has_natural_key(&self, t: usize) -> bool {
        self.tables[t].natural_key
    }

    /// Values for a new row of `t`, one per column.
    pub fn row_values(&self, t: usize) -> BoxedStrategy<Vec<Val>> {
        let columns: Vec<BoxedStrategy<Val>> = self.tables[t].columns.iter().map(|d| d.strategy()).collect();
        columns.boxed()
    }

    /// Tables with a column an update may set.
    pub fn updatable_tables(&self) -> Vec<usize> {
        self.written
            .iter()
            .copied()
            .filter(|t| self.tables[*t].columns.iter().any(|d| d.updatable()))
            .collect()
    }

    /// An updatable column of `t` (never the natural key or a reference)
    /// and a new value for it, NULL included (transitions to and from NULL).
    pub fn update_value(&self, t: usize) -> BoxedStrategy<(usize, Val)> {
        let choices: Vec<BoxedStrategy<(usize, Val)>> = self.tables[t]
            .columns
            .iter()
            .enumerate()
            .filter(|(_, d)| d.updatable())
            .map(|(c, d)| d.strategy().prop_map(move |v| (c, v)).boxed())
            .collect();
        assert!(!choices.is_empty(), "only tables with an updatable column are updated");
        Union::new(choices).boxed()
    }

    /// Tables this case writes that have a natural key, with its column.
    pub fn key_tables(&self) -> Vec<(usize, usize)> {
        self.written
            .iter()
            .filter_map(|&t| {
                self.tables[t]
                    .columns
                    .iter()
                    .position(|d| matches!(d, Draw::Key { .. }))
                    .map(|k| (t, k))
            })
            .collect()
    }

    /// A new natural key for an update made outside the engine's API, to
    /// and from NULL more often than inserts draw it: the reference spec
    /// refuses every change of a key (N4), and a guard that compares keys
    /// with `!=` lets a change to or from NULL through.
    pub fn key_update_value(&self, t: usize, k: usize) -> BoxedStrategy<Val> {
        let nullable = matches!(self.tables[t].columns[k], Draw::Key { nullable: true });
        prop_oneof![
            2 * u32::from(nullable) => Just(Val::Null),
            3 => key_value(0),
        ]
        .boxed()
    }

    /// The parent and child of a family insert, if the schema has one.
    pub fn family(&self) -> Option<(usize, usize)> {
        self.family
    }

    /// Values for one child of a family: its columns except the references
    /// to the family's parent (which name the new parent row).
    pub fn family_record(&self) -> Option<BoxedStrategy<Vec<Val>>> {
        let (parent, child) = self.family?;
        let columns: Vec<BoxedStrategy<Val>> = self.tables[child]
            .columns
            .iter()
            .filter(|d| !matches!(d, Draw::Parent { parent: p, .. } if *p == parent))
            .map(|d| d.strategy())
            .collect();
        Some(columns.boxed())
    }
}

/// A text column's value: mostly tagged words, sometimes NULL (`null`: 1,
/// or 0 for a `NOT NULL` column) or raw text.
fn text_value(pool: &'static [&'static str], null: u32) -> BoxedStrategy<Val> {
    prop_oneof![
        16 => (0..pool.len()).prop_map(move |i| Val::Text(pool[i].to_string())),
        2 * null => Just(Val::Null),
        2 => proptest::sample::select(&RAW[..]).prop_map(|s| Val::Raw(s.to_string())),
    ]
    .boxed()
}

/// An integer column's value: mostly small, sometimes NULL or at the edges
/// of the engine's domain.
fn int_value(null: u32, domain: IntegerDomain) -> BoxedStrategy<Val> {
    let edges: &'static [i64] = match domain {
        IntegerDomain::I64 => &EDGE_INTS,
        IntegerDomain::Safe => &EDGE_SAFE_INTS,
    };
    prop_oneof![
        16 => (0_i64..100).prop_map(Val::Int),
        2 * null => Just(Val::Null),
        2 => proptest::sample::select(edges).prop_map(Val::Int),
    ]
    .boxed()
}

/// A real column's value: mostly short decimals (which no binary double
/// holds exactly), sometimes NULL, an edge (subnormals, the largest
/// doubles, integers past 2^53) or any finite double at all.
fn real_value(null: u32) -> BoxedStrategy<Val> {
    let real = |x: f64| Val::Real(syncgate_protocol::Real(x));
    prop_oneof![
        12 => (-1000_i32..1000).prop_map(move |n| real(f64::from(n) / 10.0)),
        2 * null => Just(Val::Null),
        3 => proptest::sample::select(&EDGE_REALS[..]).prop_map(real),
        3 => any::<u64>().prop_map(move |bits| {
            let x = f64::from_bits(bits);
            // NaN, the infinities and -0.0 are no place's values: 0.5 stands in.
            real(if x.is_finite() && x.to_bits() != (-0.0_f64).to_bits() { x } else { 0.5 })
        }),
    ]
    .boxed()
}

/// A blob column's value: mostly a few bytes, sometimes NULL, empty, or
/// larger than a SQLite page (overflow pages; a PostgreSQL TOAST value).
fn blob_value(null: u32) -> BoxedStrategy<Val> {
    let blob = |len: usize, salt: u8| Val::Blob(BlobSpec { len, salt });
    prop_oneof![
        12 => (1_usize..48, any::<u8>()).prop_map(move |(len, salt)| blob(len, salt)),
        2 * null => Just(Val::Null),
        2 => any::<u8>().prop_map(move |salt| blob(0, salt)),
        1 => (4_000_usize..70_000, any::<u8>()).prop_map(move |(len, salt)| blob(len, salt)),
    ]
    .boxed()
}

/// A natural key: mostly the shared names (so replicas collide), sometimes
/// NULL (never collides) or an odd key.
fn key_value(null: u32) -> BoxedStrategy<Val> {
    prop_oneof![
        18 => (0..NAMES.len()).prop_map(|i| Val::Text(NAMES[i].to_string())),
        null => Just(Val::Null),
        1 => proptest::sample::select(&ODD_NAMES[..]).prop_map(|s| Val::Text(s.to_string())),
    ]
    .boxed()
}
