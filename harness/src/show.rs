//! How the harness writes what a person reads: values, rows and tables as
//! the trace and the reports print them, an engine's answer in one line,
//! and the names of steps. The runner, the checks and the reports all print
//! through here, so one value looks the same everywhere.

use syncgate_model as model;

use crate::scenario::{CrashAt, LockKind, Reconnect, SyncKind};
use crate::subject::Answer;

/// A value as traces print it: NULL, an integer, a real with its fraction or
/// exponent (the shortest digits that read back to the same bits), quoted
/// text, or a blob in SQL's hex form (a long one by its first bytes, its
/// length and a checksum, so two long blobs that differ look different).
pub fn show_value(v: &model::Value) -> String {
    match v {
        model::Value::Null => "NULL".into(),
        model::Value::Int(i) => i.to_string(),
        model::Value::Real(r) => format!("{:?}", r.get()),
        model::Value::Text(s) => format!("{s:?}"),
        model::Value::Blob(b) => show_blob(b),
    }
}

/// Blobs up to this many bytes are shown whole.
const BLOB_SHOWN_WHOLE: usize = 16;

fn show_blob(bytes: &[u8]) -> String {
    let hex = |bytes: &[u8]| bytes.iter().map(|b| format!("{b:02x}")).collect::<String>();
    if bytes.len() <= BLOB_SHOWN_WHOLE {
        return format!("x'{}'", hex(bytes));
    }
    // FNV-1a: a stable checksum of the whole blob, for telling blobs apart.
    let sum = bytes.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    });
    format!("x'{}…' ({} bytes, fnv {sum:016x})", hex(&bytes[..8]), bytes.len())
}

/// A row's values in parentheses, in column order.
pub fn show_row(values: &[model::Value]) -> String {
    let parts: Vec<String> = values.iter().map(show_value).collect();
    format!("({})", parts.join(", "))
}

/// A non-`Ok` answer of an engine in one line (an `Ok` shows its payload).
pub fn show_answer<T: std::fmt::Debug>(answer: &Answer<T>) -> String {
    match answer {
        Answer::Ok(t) => format!("ok {t:?}"),
        Answer::Refused(class, msg) => format!("refused {class:?}: {msg}"),
        Answer::Failed(class, msg) => format!("failed {class:?}: {msg}"),
        Answer::Crashed => "crashed".into(),
        Answer::Error(e) => format!("error {e}"),
        Answer::Broken(e) => format!("broke the protocol: {e}"),
    }
}

/// Every place's final rows. When every replica holds what the remote holds
/// (the usual end of a passing case) they are shown once.
pub fn final_state(schema: &model::Schema, remote: Option<&model::Tables>, caches: &[Option<model::Tables>]) -> String {
    let mut out = String::new();
    let all_equal = remote.is_some() && caches.iter().all(|c| c.as_ref() == remote);
    match remote {
        Some(remote) if all_equal => {
            out.push_str(&format!("remote and all {} replicas:\n", caches.len()));
            out.push_str(&tables(schema, remote));
        }
        _ => {
            match remote {
                Some(remote) => {
                    out.push_str("remote:\n");
                    out.push_str(&tables(schema, remote));
                }
                None => out.push_str("remote: (unreadable)\n"),
            }
            for (r, cache) in caches.iter().enumerate() {
                match cache {
                    Some(cache) => {
                        out.push_str(&format!("r{r}:\n"));
                        out.push_str(&tables(schema, cache));
                    }
                    None => out.push_str(&format!("r{r}: (unreadable)\n")),
                }
            }
        }
    }
    out
}

/// One table per synced table: a header of column names, a row per row,
/// columns aligned; empty tables on one line.
pub fn tables(schema: &model::Schema, tables: &model::Tables) -> String {
    let mut out = String::new();
    for (t, table) in schema.tables.iter().enumerate() {
        if tables[t].is_empty() {
            out.push_str(&format!("  {}: (empty)\n", table.name));
            continue;
        }
        let mut grid: Vec<Vec<String>> = vec![std::iter::once("id".to_string())
            .chain(table.columns.iter().map(|c| c.name.clone()))
            .collect()];
        for (id, values) in &tables[t] {
            grid.push(
                std::iter::once(id.to_string())
                    .chain(values.iter().map(show_value))
                    .collect(),
            );
        }
        let widths: Vec<usize> = (0..grid[0].len())
            .map(|c| grid.iter().map(|row| row[c].chars().count()).max().unwrap_or(0))
            .collect();
        out.push_str(&format!("  {}:\n", table.name));
        for row in &grid {
            let cells: Vec<String> = row.iter().zip(&widths).map(|(cell, w)| format!("{cell:<w$}")).collect();
            out.push_str(&format!("    {}\n", cells.join("  ").trim_end()));
        }
    }
    out
}

pub fn kind_name(kind: SyncKind) -> &'static str {
    match kind {
        SyncKind::Push => "push",
        SyncKind::Pull => "pull",
        SyncKind::Full => "sync",
    }
}

pub fn crash_name(at: CrashAt) -> &'static str {
    match at {
        CrashAt::BeforeRemoteCommit => "before remote commit",
        CrashAt::AfterRemoteCommit => "after remote commit",
        CrashAt::BeforeLocalCommit => "mid-pull before local commit",
    }
}

pub fn reconnect_name(reconnect: Reconnect) -> &'static str {
    match reconnect {
        Reconnect::Accepted => "which reconnects",
        Reconnect::StartingUp => "refusing new ones while it starts up",
        Reconnect::RoleMissing => "refusing new ones: role missing",
        Reconnect::PasswordRefused => "refusing new ones: password refused",
        Reconnect::DatabaseMissing => "refusing new ones: database missing",
    }
}

/// A clock offset: in ms, with the whole minutes, hours or days it makes
/// when it makes some (`+90000 ms`, `-86400000 ms (-1 d)`).
pub fn show_offset(ms: i64) -> String {
    const UNITS: [(i64, &str); 3] = [(86_400_000, "d"), (3_600_000, "h"), (60_000, "min")];
    let whole = UNITS
        .iter()
        .find(|(unit, _)| ms != 0 && ms % unit == 0)
        .map(|(unit, name)| format!(" ({:+} {name})", ms / unit));
    format!("{ms:+} ms{}", whole.unwrap_or_default())
}

pub fn lock_name(lock: LockKind) -> &'static str {
    match lock {
        LockKind::Shared => "read",
        LockKind::Reserved => "write",
        LockKind::Exclusive => "exclusive",
    }
}

/// How a trace line tells the ids an outside insert minted and gave up.
pub fn given_up(ids: &[i64]) -> String {
    if ids.is_empty() {
        String::new()
    } else {
        format!("minted {ids:?} and gave them up, then ")
    }
}

/// The command that runs one case again, by its seed and shape.
pub fn replay_command(
    engine: &str,
    remote: &str,
    seed: &str,
    replicas: usize,
    steps: usize,
    schema_file: Option<&str>,
) -> String {
    let remote = if remote == "sqlite" {
        String::new()
    } else {
        format!(" --remote {remote}")
    };
    let schema = schema_file.map_or(String::new(), |file| format!(" --schema {}", shell_quote(file)));
    format!(
        "syncgate replay --engine {}{remote}{schema} --seed {seed:?} --replicas {replicas} --steps {steps}",
        shell_quote(engine)
    )
}

/// `text` quoted for a POSIX shell when it needs it.
pub fn shell_quote(text: &str) -> String {
    if text
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "-_:./=+@".contains(c))
    {
        text.to_string()
    } else {
        format!("'{}'", text.replace('\'', "'\\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::show_offset;

    #[test]
    fn an_offset_shows_its_whole_minutes_hours_or_days() {
        assert_eq!(show_offset(90_000), "+90000 ms");
        assert_eq!(show_offset(-360_000), "-360000 ms (-6 min)");
        assert_eq!(show_offset(3_600_000), "+3600000 ms (+1 h)");
        assert_eq!(show_offset(-2_592_000_000), "-2592000000 ms (-30 d)");
        assert_eq!(show_offset(0), "+0 ms");
    }
}
