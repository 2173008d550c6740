//! The text of a schema file: which statements it may hold (those that
//! declare tables, indexes and views; nothing SQLite would write or attach
//! anywhere), and the words of a statement with strings, comments and
//! quoting taken apart, for the clauses SQLite's pragmas do not show.

use rusqlite::Connection;

use super::refused::SchemaRefused;

/// Runs `ddl` in a database in memory, after checking that it holds only
/// statements that declare tables, indexes and views.
pub(super) fn run_ddl(ddl: &str) -> Result<Connection, SchemaRefused> {
    for statement in statements(ddl) {
        let words: Vec<String> = statement.iter().take(4).map(|w| w.to_ascii_uppercase()).collect();
        let word = |i: usize| words.get(i).map(String::as_str).unwrap_or("");
        let declares = match word(0) {
            "CREATE" => {
                let kind = if matches!(word(1), "TEMP" | "TEMPORARY" | "UNIQUE") {
                    word(2)
                } else {
                    word(1)
                };
                if word(1) == "VIRTUAL" {
                    return Err(SchemaRefused::whole(
                        "CREATE VIRTUAL TABLE",
                        "a virtual table is not synced",
                    ));
                }
                if matches!(word(1), "TEMP" | "TEMPORARY") {
                    return Err(SchemaRefused::whole(
                        &format!("CREATE {} {}", word(1), word(2)),
                        "a temporary table is not synced",
                    ));
                }
                matches!(kind, "TABLE" | "INDEX" | "VIEW" | "TRIGGER")
            }
            "BEGIN" | "COMMIT" | "END" => true,
            _ => false,
        };
        if !declares {
            return Err(SchemaRefused::whole(
                &statement.join(" "),
                "a schema file holds CREATE TABLE, CREATE INDEX and CREATE VIEW statements only",
            ));
        }
    }
    let conn = Connection::open_in_memory().map_err(|e| SchemaRefused::whole("(memory)", e))?;
    conn.execute_batch(ddl)
        .map_err(|e| SchemaRefused::whole("the DDL", format!("SQLite cannot run it: {e}")))?;
    Ok(conn)
}

/// The words of each statement of `sql` (strings, quoted identifiers and
/// comments skipped; quoted identifiers kept as one word).
pub(super) fn statements(sql: &str) -> Vec<Vec<String>> {
    let mut out = vec![Vec::new()];
    let chars: Vec<char> = sql.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let skip_until = |from: usize, end: &str| -> usize {
            let rest: String = chars[from..].iter().collect();
            match rest.find(end) {
                Some(at) => from + rest[..at].chars().count() + end.chars().count(),
                None => chars.len(),
            }
        };
        if c == '-' && chars.get(i + 1) == Some(&'-') {
            i = skip_until(i, "\n");
        } else if c == '/' && chars.get(i + 1) == Some(&'*') {
            i = skip_until(i + 2, "*/");
        } else if c == '\'' {
            i = skip_until(i + 1, "'");
        } else if c == '"' || c == '`' || c == '[' {
            let end = if c == '[' { ']' } else { c };
            let next = skip_until(i + 1, &end.to_string());
            let word: String = chars[i + 1..next.saturating_sub(1).max(i + 1)].iter().collect();
            if let Some(last) = out.last_mut() {
                last.push(word);
            }
            i = next;
        } else if c == ';' {
            out.push(Vec::new());
            i += 1;
        } else if c.is_alphanumeric() || c == '_' {
            let start = i;
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            if let Some(last) = out.last_mut() {
                last.push(chars[start..i].iter().collect());
            }
        } else {
            if !c.is_whitespace() {
                if let Some(last) = out.last_mut() {
                    last.push(c.to_string());
                }
            }
            i += 1;
        }
    }
    out.retain(|s| !s.is_empty());
    out
}
