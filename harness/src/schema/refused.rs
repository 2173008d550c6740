//! Why a declared schema cannot be checked: the table, the clause as the
//! schema writes it, why, and what is supported.

/// What a declared schema may hold today, for refusals.
const SUPPORTED: &str =
    "supported: `id INTEGER PRIMARY KEY` (AUTOINCREMENT allowed); columns of INTEGER, \
     REAL, TEXT or BLOB affinity, nullable or NOT NULL, with or without a DEFAULT; at most one UNIQUE TEXT column per table (its natural \
     key); `REFERENCES parent(id) ON DELETE CASCADE` on an INTEGER column, chains of any depth and references to \
     the table itself; plain (non-unique) indexes and views, which sync nothing";

/// Why a declared schema cannot be checked.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the schema cannot be checked: table {table:?}: {clause}: {why}\n  {SUPPORTED}")]
pub struct SchemaRefused {
    pub table: String,
    /// The clause, as the schema writes it.
    pub clause: String,
    /// Why it is refused (or what to write instead).
    pub why: String,
}

impl SchemaRefused {
    pub fn new(table: &str, clause: &str, why: &str) -> SchemaRefused {
        SchemaRefused {
            table: table.to_string(),
            clause: clause.to_string(),
            why: why.to_string(),
        }
    }

    /// A refusal not tied to one table (an empty schema, a file SQLite
    /// cannot read).
    pub(super) fn whole(clause: &str, why: impl std::fmt::Display) -> SchemaRefused {
        SchemaRefused::new("(the schema)", clause, &why.to_string())
    }
}
