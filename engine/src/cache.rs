//! The local cache's sync tables and the capture triggers.
//!
//! Architecture Invariant: capture happens inside SQLite, in the same
//! transaction as the write, for every connection that writes the file. No
//! code path can skip it and nothing waits for a commit hook.

use crate::mutant::Mutant;
use crate::replica::Config;
use crate::schema::{quote, Schema};

/// `_sg_meta.applying` while the application writes: triggers capture.
pub(crate) const APPLYING_NONE: i64 = 0;
/// While a pull applies remote rows: no capture, but deletes leave tombstones.
pub(crate) const APPLYING_PULL: i64 = 1;
/// While a pull removes a row merged into a survivor: no capture, no tombstone.
pub(crate) const APPLYING_MERGE: i64 = 2;

pub(crate) const OP_INSERT: i64 = 1;
pub(crate) const OP_UPDATE: i64 = 2;
pub(crate) const OP_DELETE: i64 = 3;

pub(crate) const META_DDL: &str = "
CREATE TABLE IF NOT EXISTS _sg_meta (
    k INTEGER PRIMARY KEY CHECK (k = 1),
    replica INTEGER NOT NULL,
    id_lo INTEGER NOT NULL,
    id_hi INTEGER NOT NULL,
    next_id INTEGER NOT NULL,
    hlc INTEGER NOT NULL,
    txn INTEGER NOT NULL,
    applying INTEGER NOT NULL,
    cursor INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS _sg_outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    txn INTEGER NOT NULL,
    tbl TEXT NOT NULL,
    row_id INTEGER NOT NULL,
    op INTEGER NOT NULL,
    stamp INTEGER NOT NULL,
    mask INTEGER NOT NULL,
    vals TEXT
);
CREATE INDEX IF NOT EXISTS _sg_outbox_row ON _sg_outbox (tbl, row_id);
CREATE TABLE IF NOT EXISTS _sg_tombstones (
    tbl TEXT NOT NULL,
    id INTEGER NOT NULL,
    PRIMARY KEY (tbl, id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS _sg_aliases (
    tbl TEXT NOT NULL,
    id INTEGER NOT NULL,
    survivor INTEGER NOT NULL,
    PRIMARY KEY (tbl, id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS _sg_aliases_survivor ON _sg_aliases (tbl, survivor);
";

/// The capture and guard triggers for every synced table.
pub(crate) fn trigger_statements(schema: &Schema, config: &Config) -> Vec<String> {
    let mut out = Vec::new();
    for t in schema.tables() {
        let name = &t.name;
        let q = quote(name);
        let lit = format!("'{name}'");
        let new_vals: Vec<String> = t.columns.iter().map(|c| format!("NEW.{}", quote(&c.name))).collect();
        let all_mask: i64 = (1_i64 << t.columns.len()) - 1;
        let mask_expr = t
            .columns
            .iter()
            .enumerate()
            .map(|(i, c)| format!("((NEW.{0} IS NOT OLD.{0}) << {i})", quote(&c.name)))
            .collect::<Vec<_>>()
            .join(" | ");
        let tr = |suffix: &str| quote(&format!("_sg_{name}_{suffix}"));
        // Mutants: autoincrement ids need the id-space check gone; bypass-capture
        // drops every capture trigger of `hosts`.
        let id_space_check = if config.planted(Mutant::AutoincrementIds) || config.planted(Mutant::InsertOrReplace) {
            "0"
        } else {
            "NEW.\"id\" < (SELECT id_lo FROM _sg_meta) OR NEW.\"id\" >= (SELECT id_hi FROM _sg_meta)"
        };
        let capture_here = !(config.planted(Mutant::BypassCapture) && name == "hosts");
        // Mutant merged-id-reuse: the trigger forgets ids merged away by natural key.
        let alias_check = if config.planted(Mutant::MergedIdReuse) {
            String::new()
        } else {
            format!(" OR EXISTS (SELECT 1 FROM _sg_aliases WHERE tbl = {lit} AND id = NEW.\"id\")")
        };
        let capture_deletes = capture_here && !config.planted(Mutant::AfterCommitCapture);
        // Mutant uncaptured-replace-delete: a child's delete is captured only
        // while its parent still exists, so cascade deletes are lost.
        let delete_condition = if config.planted(Mutant::UncapturedReplaceDelete) {
            t.parents
                .iter()
                .enumerate()
                .filter_map(|(c, p)| {
                    p.map(|p| {
                        format!(
                            " AND EXISTS (SELECT 1 FROM {} WHERE \"id\" = OLD.{})",
                            quote(&schema.table(p).name),
                            quote(&t.columns[c].name)
                        )
                    })
                })
                .collect::<String>()
        } else {
            String::new()
        };
        if capture_here {
            out.push(format!(
            "CREATE TRIGGER IF NOT EXISTS {ins} AFTER INSERT ON {q} \
             WHEN (SELECT applying FROM _sg_meta) = {APPLYING_NONE} BEGIN \
               SELECT RAISE(ABORT, 'syncgate: insert into {name}: id outside this replica''s id space; let the replica mint ids (Replica::next_id)') \
                 WHERE {id_space_check}; \
               SELECT RAISE(ABORT, 'syncgate: insert into {name}: that row was deleted and never comes back; insert with a new id') \
                 WHERE EXISTS (SELECT 1 FROM _sg_tombstones WHERE tbl = {lit} AND id = NEW.\"id\"){alias_check}; \
               UPDATE _sg_meta SET hlc = hlc + 1, next_id = max(next_id, NEW.\"id\" + 1); \
               INSERT INTO _sg_outbox (txn, tbl, row_id, op, stamp, mask, vals) \
                 SELECT txn, {lit}, NEW.\"id\", {OP_INSERT}, hlc, {all_mask}, json_array({vals}) FROM _sg_meta; \
             END",
            ins = tr("insert"),
            vals = new_vals.join(", "),
        ));
        }
        // A connection without recursive_triggers would let REPLACE delete a
        // row without firing the capture triggers: refuse the REPLACE there.
        let mut taken = vec![format!("EXISTS (SELECT 1 FROM {q} WHERE \"id\" = NEW.\"id\")")];
        if let Some(k) = t.natural_key {
            let kq = quote(&t.columns[k].name);
            taken.push(format!("EXISTS (SELECT 1 FROM {q} WHERE {kq} = NEW.{kq})"));
        }
        out.push(format!(
            "CREATE TRIGGER IF NOT EXISTS {guard} BEFORE INSERT ON {q} \
             WHEN (SELECT applying FROM _sg_meta) = {APPLYING_NONE} AND ({cond}) \
               AND (SELECT recursive_triggers FROM pragma_recursive_triggers) = 0 BEGIN \
               SELECT RAISE(ABORT, 'syncgate: insert into {name} would replace an existing row on a connection \
                 without recursive_triggers, so the delete could not be captured; update the row instead, \
                 or run PRAGMA recursive_triggers = ON'); \
             END",
            guard = tr("replace_guard"),
            cond = taken.join(" OR "),
        ));
        let mut key_change = vec!["NEW.\"id\" IS NOT OLD.\"id\"".to_string()];
        if let Some(k) = t.natural_key {
            key_change.push(format!("NEW.{0} IS NOT OLD.{0}", quote(&t.columns[k].name)));
        }
        out.push(format!(
            "CREATE TRIGGER IF NOT EXISTS {key} BEFORE UPDATE ON {q} \
             WHEN (SELECT applying FROM _sg_meta) = {APPLYING_NONE} AND ({cond}) BEGIN \
               SELECT RAISE(ABORT, 'syncgate: update of {name}: the id and the natural key identify the row and cannot change'); \
             END",
            key = tr("key"),
            cond = key_change.join(" OR "),
        ));
        if capture_here {
            out.push(format!(
                "CREATE TRIGGER IF NOT EXISTS {upd} AFTER UPDATE ON {q} \
             WHEN (SELECT applying FROM _sg_meta) = {APPLYING_NONE} AND ({mask_expr}) != 0 BEGIN \
               UPDATE _sg_meta SET hlc = hlc + 1; \
               INSERT INTO _sg_outbox (txn, tbl, row_id, op, stamp, mask, vals) \
                 SELECT txn, {lit}, NEW.\"id\", {OP_UPDATE}, hlc, {mask_expr}, json_array({vals}) FROM _sg_meta; \
             END",
                upd = tr("update"),
                vals = new_vals.join(", "),
            ));
        }
        if capture_deletes {
            out.push(format!(
                "CREATE TRIGGER IF NOT EXISTS {del} AFTER DELETE ON {q} \
             WHEN (SELECT applying FROM _sg_meta) = {APPLYING_NONE}{delete_condition} BEGIN \
               UPDATE _sg_meta SET hlc = hlc + 1; \
               INSERT INTO _sg_outbox (txn, tbl, row_id, op, stamp, mask, vals) \
                 SELECT txn, {lit}, OLD.\"id\", {OP_DELETE}, hlc, 0, NULL FROM _sg_meta; \
             END",
                del = tr("delete"),
            ));
        }
        out.push(format!(
            "CREATE TRIGGER IF NOT EXISTS {tomb} AFTER DELETE ON {q} \
             WHEN (SELECT applying FROM _sg_meta) != {APPLYING_MERGE} BEGIN \
               INSERT OR IGNORE INTO _sg_tombstones (tbl, id) VALUES ({lit}, OLD.\"id\"); \
             END",
            tomb = tr("tombstone"),
        ));
    }
    out
}
