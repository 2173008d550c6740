//! The capture and guard triggers of every synced table (rules C1–C3, I2,
//! D1, N4).
//!
//! Architecture Invariant: capture happens inside SQLite, in the same
//! transaction as the write, for every connection that writes the file. No
//! code path can skip it and nothing waits for a commit hook.
//!
//! Each write fires as few trigger statements as the rules allow, because
//! capture is the cost every application write pays: an insert runs the
//! replace guard (a lookup that is false for a new id) and one statement
//! that checks the id and appends the entry; an update runs the key guard
//! and one append; a delete runs one trigger that tombstones and appends.
//! No trigger writes `_sg_meta`: the stamp follows from the outbox seq.

use std::collections::BTreeMap;

use crate::aliases;
use crate::config::Config;
use crate::ids::id_space;
use crate::meta::{APPLYING_MERGE, APPLYING_NONE};
use crate::mutant::Mutant;
use crate::outbox::{self, Op};
use crate::schema::{quote, Schema};
use crate::tombstones;

/// Every trigger the cache of `replica` carries: name → `CREATE TRIGGER`
/// statement, exactly as SQLite keeps it (so an open can compare).
pub(crate) fn triggers(schema: &Schema, config: &Config, replica: u32) -> BTreeMap<String, String> {
    let (lo, hi) = id_space(replica);
    let mut out = BTreeMap::new();
    for (index, t) in schema.tables().iter().enumerate() {
        let name = &t.name;
        let q = quote(name);
        let trigger = |suffix: &str| format!("_sg_{name}_{suffix}");
        let new_vals: Vec<String> = t.columns.iter().map(|c| format!("NEW.{}", quote(&c.name))).collect();
        let all_mask: i64 = (1_i64 << t.columns.len()) - 1;
        let mask = t
            .columns
            .iter()
            .enumerate()
            .map(|(i, c)| format!("((NEW.{0} IS NOT OLD.{0}) << {i})", quote(&c.name)))
            .collect::<Vec<_>>()
            .join(" | ");
        // Mutant bypass-capture: no write to one table is captured.
        let capture_here = !(config.planted(Mutant::BypassCapture) && index == Mutant::bypassed(schema));

        // Insert: the id must be this replica's and never used before (I2,
        // D1); then the entry, with every column (M3).
        // Mutants autoincrement-ids and insert-or-replace: the id-space check is gone.
        let id_space_check = if config.planted(Mutant::AutoincrementIds) || config.planted(Mutant::InsertOrReplace) {
            String::new()
        } else {
            format!(
                "WHEN NEW.\"id\" < {lo} OR NEW.\"id\" >= {hi} THEN RAISE(ABORT, 'syncgate: insert into {name}: \
                 id outside this replica''s id space; let the replica mint ids (Replica::next_id)') "
            )
        };
        // Mutant merged-id-reuse: the trigger forgets ids merged away by natural key.
        let alias_check = if config.planted(Mutant::MergedIdReuse) {
            String::new()
        } else {
            format!(" OR {}", aliases::is_alias_sql(name, "NEW.\"id\""))
        };
        let insert_check = format!(
            "CASE {id_space_check}WHEN {tombstoned}{alias_check} THEN RAISE(ABORT, 'syncgate: insert into {name}: \
             that row was deleted and never comes back; insert with a new id') ELSE 1 END",
            tombstoned = tombstones::is_tombstoned_sql(name, "NEW.\"id\""),
        );
        let insert = if capture_here {
            outbox::append_sql(
                name,
                Op::Insert,
                "NEW.\"id\"",
                &all_mask.to_string(),
                &new_vals,
                &insert_check,
            )
        } else {
            format!("SELECT CASE WHEN applying != {APPLYING_NONE} THEN 0 ELSE {insert_check} END FROM _sg_meta;")
        };
        out.insert(
            trigger("insert"),
            format!(
                "CREATE TRIGGER {} AFTER INSERT ON {q} BEGIN {insert} END",
                quote(&trigger("insert"))
            ),
        );

        // A connection without recursive_triggers would let REPLACE delete a
        // row without firing the delete trigger: refuse the REPLACE there.
        // The lookup comes first: it is false for every new id, so the
        // costly pragma read runs only when a row would be replaced.
        let mut taken = vec![format!("EXISTS (SELECT 1 FROM {q} WHERE \"id\" = NEW.\"id\")")];
        if let Some(k) = t.natural_key {
            let kq = quote(&t.columns[k].name);
            taken.push(format!("EXISTS (SELECT 1 FROM {q} WHERE {kq} = NEW.{kq})"));
        }
        out.insert(
            trigger("replace_guard"),
            format!(
                "CREATE TRIGGER {} BEFORE INSERT ON {q} \
                 WHEN ({cond}) AND (SELECT recursive_triggers FROM pragma_recursive_triggers) = 0 BEGIN \
                 SELECT RAISE(ABORT, 'syncgate: insert into {name} would replace an existing row on a connection \
                 without recursive_triggers, so the delete could not be captured; update the row instead, \
                 or run PRAGMA recursive_triggers = ON'); END",
                quote(&trigger("replace_guard")),
                cond = taken.join(" OR "),
            ),
        );

        // Update: the id and the natural key never change (N4); an update
        // that changes nothing is not captured (M2).
        let mut key_change = vec!["NEW.\"id\" IS NOT OLD.\"id\"".to_string()];
        if let Some(k) = t.natural_key {
            key_change.push(format!(
                "NEW.{0} {1} OLD.{0}",
                quote(&t.columns[k].name),
                Mutant::key_differs(config.planted(Mutant::KeyGuardNull))
            ));
        }
        out.insert(
            trigger("key"),
            format!(
                "CREATE TRIGGER {} BEFORE UPDATE ON {q} \
                 WHEN ({cond}) AND (SELECT applying FROM _sg_meta) = {APPLYING_NONE} BEGIN \
                 SELECT RAISE(ABORT, 'syncgate: update of {name}: the id and the natural key identify the row \
                 and cannot change'); END",
                quote(&trigger("key")),
                cond = key_change.join(" OR "),
            ),
        );
        if capture_here {
            let append = outbox::append_sql(
                name,
                Op::Update,
                "NEW.\"id\"",
                &format!("({mask})"),
                &new_vals,
                &format!("({mask}) != 0"),
            );
            out.insert(
                trigger("update"),
                format!(
                    "CREATE TRIGGER {} AFTER UPDATE ON {q} BEGIN {append} END",
                    quote(&trigger("update"))
                ),
            );
        }

        // Delete: a tombstone unless a pull merges the row away (D1, N3),
        // and the entry, also for rows a cascade or a REPLACE deletes (C3).
        // Mutant after-commit-capture: deletes are not captured.
        let capture_deletes = capture_here && !config.planted(Mutant::AfterCommitCapture);
        // Mutant uncaptured-replace-delete: a child's delete is captured only
        // while its parent still exists, so cascade deletes are lost.
        let delete_check = if config.planted(Mutant::UncapturedReplaceDelete) {
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
        let append = if capture_deletes {
            outbox::append_sql(name, Op::Delete, "OLD.\"id\"", "0", &[], &format!("1{delete_check}"))
        } else {
            String::new()
        };
        out.insert(
            trigger("delete"),
            format!(
                "CREATE TRIGGER {} AFTER DELETE ON {q} BEGIN \
                 {tombstone} FROM _sg_meta WHERE applying != {APPLYING_MERGE}; {append} END",
                quote(&trigger("delete")),
                tombstone = tombstones::add_select_sql(name, "OLD.\"id\""),
            ),
        );
    }
    out
}
