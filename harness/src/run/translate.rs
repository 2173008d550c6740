//! Translate: a scenario step, which names rows by position ("the 2nd host
//! replica 1 holds"), becomes a concrete action against what the harness
//! last read from the files. Text values get their write's tag (`.w12`), so
//! every final value traces back to the write that made it.

use std::collections::{BTreeMap, BTreeSet};

use syncgate_model as model;
use syncgate_protocol as protocol;

use crate::check::identity::Naming;
use crate::scenario::{CrashAt, IdChoice, Interleave, LockKind, Reconnect, Step, SyncKind, Val, WhileDown};
use crate::show::show_value;

/// Why a step cannot run against what the harness last read (no row of the
/// kind it names, say): it is skipped, and the trace says why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Skip(pub String);

impl From<&str> for Skip {
    fn from(why: &str) -> Skip {
        Skip(why.to_string())
    }
}

/// A cell of a planned write: a value, or the id an earlier insert of the
/// same transaction mints.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Cell {
    Value(model::Value),
    Ref(usize),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PlannedKind {
    Insert { id: Option<i64> },
    Update { id: i64 },
    Delete { id: i64 },
}

/// One write of a transaction, in the schema's indexes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlannedOp {
    pub table: usize,
    pub kind: PlannedKind,
    /// Columns set (every column for an insert), by index.
    pub values: Vec<(usize, Cell)>,
}

impl PlannedOp {
    /// The op's values, each reference to an earlier insert of the same
    /// transaction resolved to the id `minted` says it got (NULL if none).
    pub fn resolved(&self, minted: &[Option<i64>]) -> Vec<(usize, model::Value)> {
        self.values
            .iter()
            .map(|(c, cell)| {
                let v = match cell {
                    Cell::Value(v) => v.clone(),
                    Cell::Ref(k) => minted
                        .get(*k)
                        .copied()
                        .flatten()
                        .map_or(model::Value::Null, model::Value::Int),
                };
                (*c, v)
            })
            .collect()
    }
}

/// What a step does, concretely.
#[derive(Clone, Debug)]
pub enum Action {
    Write {
        replica: usize,
        ops: Vec<PlannedOp>,
        /// The number the transaction's first write will get in the
        /// history, which its text values carry as their tag (`.wN`).
        tag: usize,
        outside: bool,
        /// Outside inserts: ids the application mints and gives up on first.
        abandoned_ids: u8,
        /// The application rolls the transaction back after its ops ran.
        abort: bool,
    },
    Sync {
        replica: usize,
        kind: SyncKind,
        crash: Option<CrashAt>,
        /// The server closed the replica's remote sessions just before.
        sessions_cut: Option<Reconnect>,
        /// Another replica's sync runs inside this one.
        interleave: Option<Interleave>,
    },
    Restart {
        replica: usize,
        while_down: Vec<WhileDown>,
    },
    LockRemote {
        lock: LockKind,
        hold: usize,
        ends_when_busy: bool,
    },
    LockCache {
        replica: usize,
        hold: usize,
    },
    Clock {
        replica: usize,
        offset_ms: i64,
    },
}

/// What translation reads: the last rows seen in each place.
pub(super) struct View<'a> {
    pub schema: &'a model::Schema,
    /// Each replica's cache as last read.
    pub caches: &'a [model::Tables],
    /// The remote as last read.
    pub remote: &'a model::Tables,
    /// Every id each replica ever held, per table.
    pub seen: &'a [Vec<BTreeSet<i64>>],
    /// Rows some write deleted (or took along by cascade).
    pub deleted: &'a BTreeSet<(usize, i64)>,
    /// The number the next committed write will get.
    pub next_write: usize,
    pub explicit_ids: bool,
    /// For engines whose ids change or differ between places: the identity
    /// columns, which every insert and update gives a tagged value.
    pub identity: Option<&'a Naming>,
}

fn pick(ids: Vec<i64>, n: usize, what: &str) -> Result<i64, Skip> {
    if ids.is_empty() {
        Err(Skip(format!("no {what}")))
    } else {
        Ok(ids[n % ids.len()])
    }
}

impl View<'_> {
    fn held(&self, r: usize, t: usize) -> Vec<i64> {
        self.caches[r][t].keys().copied().collect()
    }

    fn value(&self, r: usize, t: usize, c: usize, v: &Val, tag: usize) -> Result<Cell, Skip> {
        let table = &self.schema.tables[t];
        if self.identity.is_some_and(|naming| naming.column(t) == c) {
            // The row's name: a tag, never NULL, never shared.
            return Ok(Cell::Value(model::Value::Text(match v {
                Val::Text(s) | Val::Raw(s) => format!("{s}.w{tag}"),
                _ => format!("row.w{tag}"),
            })));
        }
        Ok(Cell::Value(match v {
            Val::Null => model::Value::Null,
            Val::Int(i) => model::Value::Int(*i),
            Val::Text(s) if table.natural_key == Some(c) => model::Value::Text(s.clone()),
            Val::Text(s) => model::Value::Text(format!("{s}.w{tag}")),
            Val::Raw(s) => model::Value::Text(s.clone()),
            Val::Real(r) => match model::Real::new(r.0) {
                Some(real) => model::Value::Real(real),
                None => return Err(Skip(format!("{} is no place's value", r.0))),
            },
            Val::Blob(spec) => model::Value::Blob(spec.bytes()),
            Val::Parent(n) => {
                let p = table.columns[c].references.unwrap_or(0);
                let what = format!("{} row to refer to", self.schema.tables[p].name);
                model::Value::Int(pick(self.held(r, p), *n, &what)?)
            }
        }))
    }

    /// The action `step` names, or why it cannot run here (skipped).
    pub(super) fn translate(&self, step: &Step) -> Result<Action, Skip> {
        match step {
            Step::Insert { .. } | Step::Update { .. } | Step::Delete { .. } | Step::InsertFamily { .. } => {
                let replica = step.replica().unwrap_or(0);
                let ops = self.plan(step, false)?;
                assert!(!ops.is_empty(), "a write step plans at least one write: {step:?}");
                Ok(Action::Write {
                    replica,
                    ops,
                    tag: self.next_write,
                    outside: false,
                    abandoned_ids: 0,
                    abort: false,
                })
            }
            Step::Abort(inner) => {
                let replica = inner.replica().unwrap_or(0);
                if matches!(**inner, Step::Outside(_) | Step::Abort(_)) {
                    return Err("a rolled-back write is an application write".into());
                }
                let ops = self.plan(inner, false)?;
                Ok(Action::Write {
                    replica,
                    ops,
                    tag: self.next_write,
                    outside: false,
                    abandoned_ids: 0,
                    abort: true,
                })
            }
            Step::Outside(inner) => {
                let replica = inner.replica().unwrap_or(0);
                if matches!(**inner, Step::InsertFamily { .. } | Step::Outside(_) | Step::Abort(_))
                    || inner.replica().is_none()
                {
                    return Err("outside writes are single inserts, updates or deletes".into());
                }
                let ops = self.plan(inner, true)?;
                assert_eq!(ops.len(), 1, "an outside write is one write: {inner:?}");
                let abandoned_ids = match **inner {
                    Step::Insert {
                        id: IdChoice::MintAbandoning(n),
                        ..
                    } => n,
                    _ => 0,
                };
                Ok(Action::Write {
                    replica,
                    ops,
                    tag: self.next_write,
                    outside: true,
                    abandoned_ids,
                    abort: false,
                })
            }
            Step::Sync {
                replica,
                kind,
                sessions_cut,
                interleave,
            } => Ok(Action::Sync {
                replica: *replica,
                kind: *kind,
                crash: None,
                sessions_cut: *sessions_cut,
                interleave: *interleave,
            }),
            Step::Crash { replica, kind, at } => Ok(Action::Sync {
                replica: *replica,
                kind: *kind,
                crash: Some(*at),
                sessions_cut: None,
                interleave: None,
            }),
            Step::Restart { replica, while_down } => Ok(Action::Restart {
                replica: *replica,
                while_down: while_down.clone(),
            }),
            Step::LockRemote {
                lock,
                hold,
                ends_when_busy,
            } => Ok(Action::LockRemote {
                lock: *lock,
                hold: *hold,
                ends_when_busy: *ends_when_busy,
            }),
            Step::LockCache { replica, hold } => Ok(Action::LockCache {
                replica: *replica,
                hold: *hold,
            }),
            Step::Clock { replica, offset_ms } => Ok(Action::Clock {
                replica: *replica,
                offset_ms: *offset_ms,
            }),
        }
    }

    fn plan(&self, step: &Step, outside: bool) -> Result<Vec<PlannedOp>, Skip> {
        match step {
            Step::Insert {
                replica,
                table,
                id,
                values,
            } => self.plan_insert(*replica, *table, id, values, outside),
            Step::Update {
                replica,
                table,
                row,
                column,
                value,
            } => self.plan_update(*replica, *table, *row, *column, value),
            Step::Delete { replica, table, row } => self.plan_delete(*replica, *table, *row),
            Step::InsertFamily {
                replica,
                domain,
                records,
            } => self.plan_family(*replica, domain, records),
            _ => Err("not a write".into()),
        }
    }

    fn plan_insert(
        &self,
        replica: usize,
        table: usize,
        id: &IdChoice,
        values: &[Val],
        outside: bool,
    ) -> Result<Vec<PlannedOp>, Skip> {
        let tag = self.next_write;
        let (r, t) = (replica, table);
        let name = &self.schema.tables[t].name;
        let id = if outside { &IdChoice::Mint } else { id };
        let explicit = self.explicit_id(r, t, id)?;
        let mut cells = Vec::new();
        for (c, v) in values.iter().enumerate() {
            cells.push((c, self.value(r, t, c, v, tag)?));
        }
        if outside {
            // A raw insert whose natural key this replica holds fails
            // on the cache's UNIQUE constraint, not in the sync layer.
            if let Some(k) = self.schema.tables[t].natural_key {
                if let Cell::Value(key) = &cells[k].1 {
                    if self.caches[r][t].values().any(|row| row[k] == *key) {
                        return Err(Skip(format!("{name} key {} held here", show_value(key))));
                    }
                }
            }
        }
        Ok(vec![PlannedOp {
            table: t,
            kind: PlannedKind::Insert { id: explicit },
            values: cells,
        }])
    }

    /// The explicit id an insert asks for (`None`: the engine mints one).
    fn explicit_id(&self, r: usize, t: usize, id: &IdChoice) -> Result<Option<i64>, Skip> {
        let name = &self.schema.tables[t].name;
        Ok(match id {
            IdChoice::Mint | IdChoice::MintAbandoning(_) => None,
            _ if !self.explicit_ids => return Err("the engine mints every id".into()),
            IdChoice::Foreign(n) => {
                let own: BTreeSet<i64> = self.held(r, t).into_iter().collect();
                let mut elsewhere: BTreeSet<i64> = self.remote[t].keys().copied().collect();
                for (o, cache) in self.caches.iter().enumerate() {
                    if o != r {
                        elsewhere.extend(cache[t].keys().copied());
                    }
                }
                let ids = elsewhere.difference(&own).copied().collect();
                Some(pick(ids, *n, &format!("{name} row made elsewhere to collide with"))?)
            }
            IdChoice::Taken(n) => Some(pick(self.held(r, t), *n, &format!("own {name} row to collide with"))?),
            IdChoice::Deleted(n) | IdChoice::MergedAway(n) => {
                // Ids this replica held and no longer does: deleted,
                // or merged away by a pull. With none of the kind
                // asked for, any gone id is still a collision to try.
                let held: BTreeSet<i64> = self.held(r, t).into_iter().collect();
                let gone: Vec<i64> = self.seen[r][t]
                    .iter()
                    .filter(|id| !held.contains(id))
                    .copied()
                    .collect();
                let want_deleted = matches!(id, IdChoice::Deleted(_));
                let of_kind: Vec<i64> = gone
                    .iter()
                    .filter(|id| self.deleted.contains(&(t, **id)) == want_deleted)
                    .copied()
                    .collect();
                let pool = if of_kind.is_empty() { gone } else { of_kind };
                Some(pick(pool, *n, &format!("{name} row gone from here to reuse"))?)
            }
        })
    }

    fn plan_update(
        &self,
        replica: usize,
        table: usize,
        row: usize,
        column: usize,
        value: &Val,
    ) -> Result<Vec<PlannedOp>, Skip> {
        let tag = self.next_write;
        let (r, t) = (replica, table);
        let name = &self.schema.tables[t].name;
        let id = pick(self.held(r, t), row, &format!("{name} row to update"))?;
        Ok(vec![PlannedOp {
            table: t,
            kind: PlannedKind::Update { id },
            values: vec![(column, self.value(r, t, column, value, tag)?)],
        }])
    }

    fn plan_delete(&self, replica: usize, table: usize, row: usize) -> Result<Vec<PlannedOp>, Skip> {
        let (r, t) = (replica, table);
        let name = &self.schema.tables[t].name;
        let id = pick(self.held(r, t), row, &format!("{name} row to delete"))?;
        Ok(vec![PlannedOp {
            table: t,
            kind: PlannedKind::Delete { id },
            values: Vec::new(),
        }])
    }

    /// A domain and its records in one transaction; each record refers to
    /// the domain by the id op 0 mints.
    fn plan_family(&self, replica: usize, domain: &[Val], records: &[Vec<Val>]) -> Result<Vec<PlannedOp>, Skip> {
        let tag = self.next_write;
        let r = replica;
        let Some((parent, child)) = self.schema.family() else {
            return Err("the schema has no table that another references".into());
        };
        let mut ops = Vec::new();
        let mut cells = Vec::new();
        for (c, v) in domain.iter().enumerate() {
            cells.push((c, self.value(r, parent, c, v, tag)?));
        }
        ops.push(PlannedOp {
            table: parent,
            kind: PlannedKind::Insert { id: None },
            values: cells,
        });
        for (k, record) in records.iter().enumerate() {
            let mut own = record.iter();
            let mut cells = Vec::new();
            for (c, col) in self.schema.tables[child].columns.iter().enumerate() {
                let cell = match col.references {
                    Some(p) if p == parent => Cell::Ref(0),
                    _ => match own.next() {
                        Some(v) => self.value(r, child, c, v, tag + 1 + k)?,
                        None => Cell::Value(model::Value::Null),
                    },
                };
                cells.push((c, cell));
            }
            ops.push(PlannedOp {
                table: child,
                kind: PlannedKind::Insert { id: None },
                values: cells,
            });
        }
        Ok(ops)
    }
}

/// The protocol's form of planned ops (table and column names).
pub(super) fn protocol_ops(schema: &model::Schema, ops: &[PlannedOp]) -> Vec<protocol::Op> {
    ops.iter()
        .map(|op| {
            let table = &schema.tables[op.table];
            let values: BTreeMap<String, protocol::Value> = op
                .values
                .iter()
                .map(|(c, cell)| {
                    let v = match cell {
                        Cell::Value(v) => crate::schema::to_protocol(v),
                        Cell::Ref(k) => protocol::Value::Ref { op: *k },
                    };
                    (table.columns[*c].name.clone(), v)
                })
                .collect();
            match op.kind {
                PlannedKind::Insert { id } => protocol::Op::Insert {
                    table: table.name.clone(),
                    id,
                    values,
                },
                PlannedKind::Update { id } => protocol::Op::Update {
                    table: table.name.clone(),
                    id,
                    set: values,
                },
                PlannedKind::Delete { id } => protocol::Op::Delete {
                    table: table.name.clone(),
                    id,
                },
            }
        })
        .collect()
}

/// The model's form of planned ops. A reference to an id minted earlier in
/// the transaction becomes the id the model will mint for it, counted from
/// the replica's `next_id` as the model mints (rule I1).
pub(super) fn model_writes(ops: &[PlannedOp], next_id: i64) -> Vec<model::Write> {
    let mut next = next_id;
    let mut minted: Vec<Option<i64>> = Vec::new();
    let mut out = Vec::new();
    for op in ops {
        let values = op.resolved(&minted);
        match op.kind {
            PlannedKind::Insert { id } => {
                let id_now = match id {
                    Some(id) => {
                        next = next.max(id + 1);
                        id
                    }
                    None => {
                        next += 1;
                        next - 1
                    }
                };
                minted.push(Some(id_now));
                out.push(model::Write::Insert {
                    table: op.table,
                    id,
                    values: values.into_iter().map(|(_, v)| v).collect(),
                });
            }
            PlannedKind::Update { id } => {
                minted.push(None);
                out.push(model::Write::Update {
                    table: op.table,
                    id,
                    set: values,
                });
            }
            PlannedKind::Delete { id } => {
                minted.push(None);
                out.push(model::Write::Delete { table: op.table, id });
            }
        }
    }
    out
}

/// The trace's description of a planned transaction.
pub(super) fn describe(schema: &model::Schema, ops: &[PlannedOp]) -> String {
    let parts: Vec<String> = ops
        .iter()
        .map(|op| {
            let table = &schema.tables[op.table];
            let cols: Vec<String> = op
                .values
                .iter()
                .map(|(c, cell)| {
                    let v = match cell {
                        Cell::Value(v) => show_value(v),
                        Cell::Ref(k) => format!("<id of op {}>", k + 1),
                    };
                    format!("{}={v}", table.columns[*c].name)
                })
                .collect();
            match op.kind {
                PlannedKind::Insert { id } => {
                    let id_text = id.map_or("new id".to_string(), |id| format!("id {id}"));
                    format!("insert {} {id_text} {}", table.name, cols.join(" "))
                }
                PlannedKind::Update { id } => format!("update {}/{id} {}", table.name, cols.join(" ")),
                PlannedKind::Delete { id } => format!("delete {}/{id}", table.name),
            }
        })
        .collect();
    if parts.len() == 1 {
        parts.into_iter().next().unwrap_or_default()
    } else {
        format!("txn [{}]", parts.join("; "))
    }
}

/// Rows that deleting `(t, id)` takes along in `tables` (its children,
/// recursively), as the cascade would.
pub fn descendants(schema: &model::Schema, tables: &model::Tables, t: usize, id: i64) -> Vec<(usize, i64)> {
    let mut out = Vec::new();
    let mut frontier = vec![(t, id)];
    // Bounded by the rows present: each row enters the frontier at most once.
    let mut seen: BTreeSet<(usize, i64)> = BTreeSet::new();
    while let Some((pt, pid)) = frontier.pop() {
        for (ct, c) in schema.children_of(pt) {
            for (cid, row) in &tables[ct] {
                if row[c] == model::Value::Int(pid) && seen.insert((ct, *cid)) {
                    out.push((ct, *cid));
                    frontier.push((ct, *cid));
                }
            }
        }
    }
    out
}
