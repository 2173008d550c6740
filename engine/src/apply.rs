//! The remote's side of a push: one outbox entry applied on the remote by
//! the rules M1–M4, D1–D3 and N2 (SEMANTICS.md), against the push's staged
//! rows (`staged.rs`), which reach the remote in one write per chunk.

use rusqlite::types::Value;

use crate::config::{Config, CASCADE_DEPTH_MAX};
use crate::error::{Error, Result};
use crate::mutant::Mutant;
use crate::outbox::{Entry, Op};
use crate::remote::{Remote, RemoteRow};
use crate::schema::Schema;
use crate::staged::Staged;
use crate::stamp::Stamp;

/// Applies one entry on the remote. `local_alias` is the survivor the
/// pushing replica already merged the entry's row into (rule N3). Returns 1
/// when the write did not take effect as written (a conflict, rule S6).
pub(crate) fn apply_entry<R: Remote + ?Sized>(
    remote: &mut Staged<'_, R>,
    schema: &Schema,
    config: &Config,
    entry: &Entry,
    local_alias: Option<i64>,
) -> Result<u64> {
    let t = entry.table;
    let def = schema.table(t);
    let mut values = entry.values.clone();
    for (c, v) in values.iter_mut().enumerate() {
        if let (Some(p), Value::Integer(parent)) = (def.parents.get(c).copied().flatten(), &*v) {
            *v = Value::Integer(resolve(remote, p, *parent)?);
        }
    }
    let all: Vec<usize> = (0..def.columns.len()).collect();
    match entry.op {
        Op::Insert => {
            if let Some(target) = local_alias {
                let target = resolve(remote, t, target)?;
                if parent_gone(remote, schema, t, &values)? {
                    // D2 before N2, as for an insert the pusher did not
                    // merge: under a row gone from the remote it arrives
                    // dead and merges into nothing. The survivor is sent
                    // again: the pusher shows the insert's values on it.
                    if remote.row(t, entry.id)?.is_none() {
                        remote.put(t, entry.id, RemoteRow::Dead);
                    }
                    if is_live(remote, t, target)? {
                        remote.touch(t, target)?;
                    }
                    return Ok(1);
                }
                if remote.row(t, entry.id)?.is_none() {
                    remote.put(t, entry.id, RemoteRow::Alias(target));
                }
                if let Some(mut row) = remote.row(t, target)? {
                    if merge_columns(&mut row, &values, &all, entry.stamp).is_some() {
                        remote.put(t, target, row);
                    }
                }
                return Ok(1);
            }
            match remote.row(t, entry.id)? {
                Some(RemoteRow::Dead) => {
                    remote.touch(t, entry.id)?;
                    Ok(1)
                }
                Some(mut row @ RemoteRow::Live { .. }) => {
                    if config.planted(Mutant::AutoincrementIds) {
                        // Mutant: a plain INSERT of an id another replica already used.
                        return Err(Error::CorruptRemote {
                            table: def.name.clone(),
                            id: entry.id,
                            detail: "UNIQUE constraint failed (plain INSERT of a colliding id)".into(),
                        });
                    }
                    if config.planted(Mutant::InsertOrReplace) {
                        // Mutant: INSERT OR REPLACE silently overwrites the other row.
                        let stamps = vec![entry.stamp; values.len()];
                        remote.put(t, entry.id, RemoteRow::Live { values, stamps });
                        return Ok(0);
                    }
                    let lost = merge_columns(&mut row, &values, &all, entry.stamp).unwrap_or(false);
                    remote.put(t, entry.id, row);
                    Ok(u64::from(lost))
                }
                Some(RemoteRow::Alias(target)) => {
                    if let Some(mut row) = remote.row(t, target)? {
                        if merge_columns(&mut row, &values, &all, entry.stamp).is_some() {
                            remote.put(t, target, row);
                        }
                    }
                    Ok(1)
                }
                None => {
                    if parent_gone(remote, schema, t, &values)? {
                        remote.put(t, entry.id, RemoteRow::Dead);
                        return Ok(1);
                    }
                    if let Some(k) = def.natural_key.filter(|_| !config.planted(Mutant::NaturalKeyInsert)) {
                        if let Some(survivor) = remote.live_with_key(t, &values[k])? {
                            remote.put(t, entry.id, RemoteRow::Alias(survivor));
                            if let Some(mut row) = remote.row(t, survivor)? {
                                merge_columns(&mut row, &values, &all, entry.stamp);
                                remote.put(t, survivor, row);
                            }
                            return Ok(1);
                        }
                    }
                    let stamps = vec![entry.stamp; values.len()];
                    remote.put(t, entry.id, RemoteRow::Live { values, stamps });
                    Ok(0)
                }
            }
        }
        Op::Update => {
            let target = resolve(remote, t, entry.id)?;
            match remote.row(t, target)? {
                Some(mut row @ RemoteRow::Live { .. }) => {
                    let lost = merge_columns(&mut row, &values, &entry.columns, entry.stamp).unwrap_or(false);
                    remote.put(t, target, row);
                    Ok(u64::from(lost))
                }
                Some(_) => {
                    remote.touch(t, target)?;
                    Ok(1)
                }
                None => Ok(1),
            }
        }
        Op::Delete => {
            let target = resolve(remote, t, entry.id)?;
            match remote.row(t, target)? {
                Some(RemoteRow::Live { .. }) => kill(remote, schema, t, target, 0)?,
                Some(_) => remote.touch(t, target)?,
                None => remote.put(t, target, RemoteRow::Dead),
            }
            Ok(0)
        }
    }
}

/// Rule D2, after a pushed delete applied: each of its victims (rows the
/// delete reached in the pusher's pulls) still live here dies, following
/// an alias, with the rows below it; one already dead or not here yet is
/// left as it is.
pub(crate) fn kill_victims<R: Remote + ?Sized>(
    remote: &mut Staged<'_, R>,
    schema: &Schema,
    victims: &[(usize, i64)],
) -> Result<()> {
    for &(t, id) in victims {
        let target = resolve(remote, t, id)?;
        if is_live(remote, t, target)? {
            kill(remote, schema, t, target, 0)?;
        }
    }
    Ok(())
}

/// Whether a reference in `values` (a row of table `t`) names a row that is
/// not live on the remote.
fn parent_gone<R: Remote + ?Sized>(
    remote: &mut Staged<'_, R>,
    schema: &Schema,
    t: usize,
    values: &[Value],
) -> Result<bool> {
    for (c, v) in values.iter().enumerate() {
        if let (Some(p), Value::Integer(parent)) = (schema.table(t).parents[c], v) {
            if !is_live(remote, p, *parent)? {
                return Ok(true);
            }
        }
    }
    Ok(false)
}

fn resolve<R: Remote + ?Sized>(remote: &mut Staged<'_, R>, table: usize, id: i64) -> Result<i64> {
    Ok(match remote.row(table, id)? {
        Some(RemoteRow::Alias(survivor)) => survivor,
        _ => id,
    })
}

fn is_live<R: Remote + ?Sized>(remote: &mut Staged<'_, R>, table: usize, id: i64) -> Result<bool> {
    Ok(matches!(remote.row(table, id)?, Some(RemoteRow::Live { .. })))
}

/// Column-level last-writer-wins on a live row. `None` when the row is not
/// live; otherwise whether any listed column kept a later stamp.
fn merge_columns(row: &mut RemoteRow, values: &[Value], columns: &[usize], stamp: Stamp) -> Option<bool> {
    let RemoteRow::Live { values: have, stamps } = row else {
        return None;
    };
    let mut lost = false;
    for &c in columns {
        if stamp > stamps[c] {
            have[c] = values[c].clone();
            stamps[c] = stamp;
        } else {
            lost = true;
        }
    }
    Some(lost)
}

/// A tombstone for the row and, recursively, for each live child (rule D2),
/// at most `CASCADE_DEPTH_MAX` levels down.
fn kill<R: Remote + ?Sized>(
    remote: &mut Staged<'_, R>,
    schema: &Schema,
    t: usize,
    id: i64,
    depth: usize,
) -> Result<()> {
    if depth > CASCADE_DEPTH_MAX {
        return Err(Error::CascadeTooDeep {
            table: schema.table(t).name.clone(),
            id,
            depth_max: CASCADE_DEPTH_MAX,
        });
    }
    remote.put(t, id, RemoteRow::Dead);
    for &(ct, c) in &schema.table(t).children {
        for child in remote.live_children(ct, c, id)? {
            if is_live(remote, ct, child)? {
                kill(remote, schema, ct, child, depth + 1)?;
            }
        }
    }
    Ok(())
}
