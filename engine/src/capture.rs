//! The capture and guard triggers of every synced table (rules C1–C3, I2,
//! D1, N4).
//!
//! Architecture Invariant: capture happens inside SQLite, in the same
//! transaction as the write, for every connection that writes the file. No
//! code path can skip it and nothing waits for a commit hook.

use std::collections::BTreeMap;

use crate::aliases;
use crate::config::Config;
use crate::meta::{APPLYING_MERGE, APPLYING_NONE};
use crate::mutant::Mutant;
use crate::outbox::{self, Op};
use crate::schema::{quote, Schema};
use crate::tombstones;

/// Every trigger a cache carries: name → `CREATE TRIGGER` statement.
pub(crate) fn triggers(schema: &Schema, config: &Config) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for t in schema.tables() {
        let name = &t.name;
        let q = quote(name);
        let new_vals: Vec<String> = t.columns.iter().map(|c| format!("NEW.{}", quote(&c.name))).collect();
        let all_mask: i64 = (1_i64 << t.columns.len()) - 1;
        let mask_expr = t
            .columns
            .iter()
            .enumerate()
            .map(|(i, c)| format!("((NEW.{0} IS NOT OLD.{0}) << {i})", quote(&c.name)))
            .collect::<Vec<_>>()
            .join(" | ");
        let trigger = |suffix: &str| format!("_sg_{name}_{suffix}");
        let mut add = |name: String, sql: String| {
            let sql = sql.replace("{trigger}", &quote(&name));
            out.insert(name, sql);
        };
        // Mutants autoincrement-ids and insert-or-replace: the id-space check is gone.
        let id_space_check = if config.planted(Mutant::AutoincrementIds) || config.planted(Mutant::InsertOrReplace) {
            "0"
        } else {
            "NEW.\"id\" < (SELECT id_lo FROM _sg_meta) OR NEW.\"id\" >= (SELECT id_hi FROM _sg_meta)"
        };
        // Mutant bypass-capture: no write to `hosts` is captured.
        let capture_here = !(config.planted(Mutant::BypassCapture) && name == "hosts");
        // Mutant merged-id-reuse: the trigger forgets ids merged away by natural key.
        let alias_check = if config.planted(Mutant::MergedIdReuse) {
            String::new()
        } else {
            format!(" OR {}", aliases::is_alias_sql(name, "NEW.\"id\""))
        };
        // Mutant after-commit-capture: deletes are not captured.
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
            add(
                trigger("insert"),
                format!(
                    "CREATE TRIGGER {{trigger}} AFTER INSERT ON {q} \
                     WHEN (SELECT applying FROM _sg_meta) = {APPLYING_NONE} BEGIN \
                       SELECT RAISE(ABORT, 'syncgate: insert into {name}: id outside this replica''s id space; let the replica mint ids (Replica::next_id)') \
                         WHERE {id_space_check}; \
                       SELECT RAISE(ABORT, 'syncgate: insert into {name}: that row was deleted and never comes back; insert with a new id') \
                         WHERE {tombstoned}{alias_check}; \
                       UPDATE _sg_meta SET next_id = max(next_id, NEW.\"id\" + 1); \
                       {append} \
                     END",
                    tombstoned = tombstones::is_tombstoned_sql(name, "NEW.\"id\""),
                    append = outbox::append_sql(name, Op::Insert, "NEW.\"id\"", &all_mask.to_string(), &new_vals),
                ),
            );
        }
        // A connection without recursive_triggers would let REPLACE delete a
        // row without firing the capture triggers: refuse the REPLACE there.
        let mut taken = vec![format!("EXISTS (SELECT 1 FROM {q} WHERE \"id\" = NEW.\"id\")")];
        if let Some(k) = t.natural_key {
            let kq = quote(&t.columns[k].name);
            taken.push(format!("EXISTS (SELECT 1 FROM {q} WHERE {kq} = NEW.{kq})"));
        }
        add(
            trigger("replace_guard"),
            format!(
                "CREATE TRIGGER {{trigger}} BEFORE INSERT ON {q} \
                 WHEN (SELECT applying FROM _sg_meta) = {APPLYING_NONE} AND ({cond}) \
                   AND (SELECT recursive_triggers FROM pragma_recursive_triggers) = 0 BEGIN \
                   SELECT RAISE(ABORT, 'syncgate: insert into {name} would replace an existing row on a connection \
                     without recursive_triggers, so the delete could not be captured; update the row instead, \
                     or run PRAGMA recursive_triggers = ON'); \
                 END",
                cond = taken.join(" OR "),
            ),
        );
        let mut key_change = vec!["NEW.\"id\" IS NOT OLD.\"id\"".to_string()];
        if let Some(k) = t.natural_key {
            key_change.push(format!("NEW.{0} IS NOT OLD.{0}", quote(&t.columns[k].name)));
        }
        add(
            trigger("key"),
            format!(
                "CREATE TRIGGER {{trigger}} BEFORE UPDATE ON {q} \
                 WHEN (SELECT applying FROM _sg_meta) = {APPLYING_NONE} AND ({cond}) BEGIN \
                   SELECT RAISE(ABORT, 'syncgate: update of {name}: the id and the natural key identify the row and cannot change'); \
                 END",
                cond = key_change.join(" OR "),
            ),
        );
        if capture_here {
            add(
                trigger("update"),
                format!(
                    "CREATE TRIGGER {{trigger}} AFTER UPDATE ON {q} \
                     WHEN (SELECT applying FROM _sg_meta) = {APPLYING_NONE} AND ({mask_expr}) != 0 BEGIN \
                       {append} \
                     END",
                    append = outbox::append_sql(name, Op::Update, "NEW.\"id\"", &mask_expr, &new_vals),
                ),
            );
        }
        if capture_deletes {
            add(
                trigger("delete"),
                format!(
                    "CREATE TRIGGER {{trigger}} AFTER DELETE ON {q} \
                     WHEN (SELECT applying FROM _sg_meta) = {APPLYING_NONE}{delete_condition} BEGIN \
                       {append} \
                     END",
                    append = outbox::append_sql(name, Op::Delete, "OLD.\"id\"", "0", &[]),
                ),
            );
        }
        add(
            trigger("tombstone"),
            format!(
                "CREATE TRIGGER {{trigger}} AFTER DELETE ON {q} \
                 WHEN (SELECT applying FROM _sg_meta) != {APPLYING_MERGE} BEGIN \
                   {add}; \
                 END",
                add = tombstones::add_sql(name, "OLD.\"id\""),
            ),
        );
    }
    out
}
