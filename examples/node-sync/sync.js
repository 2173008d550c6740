// The sync layer: pushes the store's outbox to a remote SQLite file shared by every replica, and
// pulls from it what the other replicas changed.
//
// The remote holds the synced tables (the rows everyone sees) and, beside them:
//   sync_rows    one record per row id ever pushed: its stamp, `seq` (the remote's change number,
//                taken from sync_head at each change of the row), whether it is deleted (a
//                tombstone, kept forever) and, for an id merged into another row by its natural
//                key, the survivor's id;
//   sync_clients for each replica, the seq of the last outbox row of it the remote applied;
//   sync_head    the last change number handed out.
//
// Push (Sync.push):
//   1. begin a local write transaction, read the pending outbox rows (in order);
//   2. apply them on the remote in one remote transaction, each winning or losing by stamp, and
//      record the last outbox seq applied (a re-push after a crash then applies nothing twice);
//      commit it;
//   3. mark them synced in the local transaction, and commit it.
//   A push that fails (a file is locked) changes nothing anywhere: the rows stay pending.
// Pull (Sync.pull):
//   1. read, in one remote read transaction, the sync_rows records changed since the cursor (the
//      largest seq pulled so far) and the current values of those rows;
//   2. apply them in one local transaction with the new cursor.
//
// The rules:
// - Row-level last writer wins: a write replaces a row only if its stamp is larger than the
//   stamp of the write the row holds (the whole row of the newer write wins). A pulled row never
//   replaces a local row whose stamp is larger (a local write not pushed yet, which will win on
//   the remote too).
// - Deletes win: a deleted row stays deleted (its tombstone outlives it on both sides); an update
//   or a child insert that reaches a deleted row loses; deleting a row deletes the rows under it
//   (ON DELETE CASCADE), and the remote records a tombstone for each, so every replica deletes
//   them, children another replica added concurrently included.
// - Natural keys merge: two rows inserted apart with the same key mean one row. The row that
//   reached the remote first survives and keeps its id; the other id becomes its alias, its
//   values merge by stamp, its children move to the survivor, and every write addressed to it
//   applies to the survivor. At push, an insert that meets its key on the remote merges there; at
//   pull, a pulled row whose key an unpushed local row holds merges here first, and the local
//   row's pending writes follow it to the survivor at the next push.
//
// The planted bug `mark_synced_before_commit` (README.md) is marked BUG(mark_synced_before_commit).

import { isBusy, openDatabase } from "./store.js";
import { decodeRow, normalize, q } from "./schema.js";

/** At most this many alias hops are followed from an id to its survivor. */
export const ALIAS_HOPS_MAX = 64;

const REMOTE_DDL = `
CREATE TABLE IF NOT EXISTS sync_rows (
  tbl TEXT NOT NULL, row_id INTEGER NOT NULL, stamp INTEGER NOT NULL, seq INTEGER NOT NULL,
  deleted INTEGER NOT NULL DEFAULT 0, survivor INTEGER,
  PRIMARY KEY (tbl, row_id)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS sync_rows_seq ON sync_rows (seq);
CREATE TABLE IF NOT EXISTS sync_clients (replica INTEGER PRIMARY KEY, last_seq INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS sync_head (one INTEGER PRIMARY KEY CHECK (one = 1), seq INTEGER NOT NULL);
INSERT OR IGNORE INTO sync_head (one, seq) VALUES (1, 0);
`;

/** A push or pull that failed and marked nothing synced; `kind` is `busy` or `other`. */
export class SyncError extends Error {
  constructor(kind, message) {
    super(message);
    this.kind = kind;
  }
}

/** Creates the remote file: the synced tables (the application's DDL) and the sync tables. */
export function createRemote(path, schema) {
  const db = openDatabase(path);
  try {
    db.transaction(() => {
      for (const statement of schema.ddl) db.exec(statement);
      db.exec(REMOTE_DDL);
    }).immediate();
  } finally {
    db.close();
  }
}

export class Sync {
  /** `store`: the Store; `remotePath`: the remote file; `crashPoint(name)`: a test seam (the
   * adapter stops the process there when told to; a no-op in the app); `log(line)`: where the
   * layer says what it did (merges). */
  constructor({ store, remotePath, bugs = new Set(), crashPoint = () => {}, log = () => {} }) {
    this.store = store;
    this.schema = store.schema;
    this.local = store.db;
    this.replica = store.replica;
    this.bugs = bugs;
    this.crashPoint = crashPoint;
    this.log = log;
    this.cacheSql = {
      pendingBatch: this.local.prepare("SELECT seq, tbl, row_id, op, payload, stamp FROM sync_outbox WHERE synced = 0 ORDER BY seq"),
      markSynced: this.local.prepare("UPDATE sync_outbox SET synced = 1 WHERE synced = 0 AND seq <= ?"),
      aliases: this.local.prepare("SELECT tbl, merged_id, survivor_id FROM sync_aliases").raw(),
      setAlias: this.local.prepare(
        "INSERT INTO sync_aliases (tbl, merged_id, survivor_id) VALUES (?, ?, ?) " +
          "ON CONFLICT (tbl, merged_id) DO UPDATE SET survivor_id = excluded.survivor_id",
      ),
    };
    this.remote = openDatabase(remotePath);
    // The remote's statements are prepared at the first push or pull that needs them: preparing
    // reads the file's schema, and the remote may be locked while the app starts.
    this.prepared = null;
  }

  /** The remote's statements. */
  get sql() {
    this.prepared ??= this.#prepare();
    return this.prepared;
  }

  #prepare() {
    const remote = this.remote;
    const perTable = new Map();
    for (const t of this.schema.tables.values()) {
      const cols = t.columns.map(q);
      const marks = t.columns.map(() => "?");
      const settable = t.columns.filter((c) => c !== t.key);
      perTable.set(t.name, {
        exists: remote.prepare(`SELECT 1 FROM ${q(t.name)} WHERE "id" = ?`).pluck(),
        rows: remote
          .prepare(`SELECT ${["id", ...t.columns].map(q).join(", ")} FROM ${q(t.name)} WHERE "id" IN (SELECT value FROM json_each(?))`)
          .safeIntegers(true),
        insert: remote.prepare(`INSERT INTO ${q(t.name)} ("id"${cols.map((c) => `, ${c}`).join("")}) VALUES (?${marks.map((m) => `, ${m}`).join("")})`),
        update: settable.length
          ? remote.prepare(`UPDATE ${q(t.name)} SET ${settable.map((c) => `${q(c)} = ?`).join(", ")} WHERE "id" = ?`)
          : null,
        settable,
        delete: remote.prepare(`DELETE FROM ${q(t.name)} WHERE "id" = ?`),
        keyHolder: t.key ? remote.prepare(`SELECT "id" FROM ${q(t.name)} WHERE ${q(t.key)} = ?`).pluck() : null,
        children: t.children.map((c) => ({
          table: c.table,
          ids: remote.prepare(`SELECT "id" FROM ${q(c.table)} WHERE ${q(c.column)} = ?`).pluck(),
        })),
      });
    }
    return {
      table: perTable,
      head: remote.prepare("SELECT seq FROM sync_head").pluck(),
      setHead: remote.prepare("UPDATE sync_head SET seq = ?"),
      lastApplied: remote.prepare("SELECT last_seq FROM sync_clients WHERE replica = ?").pluck(),
      setLastApplied: remote.prepare(
        "INSERT INTO sync_clients (replica, last_seq) VALUES (?, ?) ON CONFLICT (replica) DO UPDATE SET last_seq = excluded.last_seq",
      ),
      record: remote.prepare("SELECT stamp, deleted, survivor FROM sync_rows WHERE tbl = ? AND row_id = ?"),
      setRecord: remote.prepare(
        "INSERT INTO sync_rows (tbl, row_id, stamp, seq, deleted, survivor) VALUES (?, ?, ?, ?, ?, ?) " +
          "ON CONFLICT (tbl, row_id) DO UPDATE SET stamp = excluded.stamp, seq = excluded.seq, " +
          "deleted = excluded.deleted, survivor = excluded.survivor",
      ),
      changedSince: remote.prepare("SELECT tbl, row_id, stamp, seq, deleted, survivor FROM sync_rows WHERE seq > ? ORDER BY seq"),
    };
  }

  /** How many local changes are not on the remote yet. */
  pending() {
    return this.store.pendingCount();
  }

  // -- push --------------------------------------------------------------------------------------

  /** Pushes every pending change; returns `{pushed, conflicts}`. */
  push() {
    return failures("push", () => {
      if (this.bugs.has("mark_synced_before_commit")) return this.#pushMarkingFirst();
      let result = { pushed: 0, conflicts: 0 };
      // 1. The local write transaction is held to the end, so that the acknowledgement (3) cannot
      // meet a lock after the remote committed.
      this.local
        .transaction(() => {
          const batch = this.cacheSql.pendingBatch.all();
          if (batch.length === 0) return;
          // 2. Apply on the remote, in one remote transaction.
          result = this.#applyOnRemote(batch);
          this.crashPoint("push_after_remote_commit");
          // 3. Acknowledge.
          this.cacheSql.markSynced.run(batch[batch.length - 1].seq);
        })
        .immediate();
      return result;
    });
  }

  #pushMarkingFirst() {
    // BUG(mark_synced_before_commit): the batch is "claimed" first, marked synced in its own
    // local transaction so that a second push started meanwhile cannot send it again, and then
    // sent. A push that fails or dies after the claim (the remote is locked, the app is killed
    // before the remote commit) leaves rows marked synced that the remote never got: they are
    // never sent again, and pending says 0. (Fix: mark them after the remote commit, in the
    // same local transaction that read them, as push() does.)
    const batch = this.local
      .transaction(() => {
        const rows = this.cacheSql.pendingBatch.all();
        if (rows.length > 0) this.cacheSql.markSynced.run(rows[rows.length - 1].seq);
        return rows;
      })
      .immediate();
    if (batch.length === 0) return { pushed: 0, conflicts: 0 };
    const result = this.#applyOnRemote(batch);
    this.crashPoint("push_after_remote_commit");
    return result;
  }

  #applyOnRemote(batch) {
    const aliases = new Map(this.cacheSql.aliases.all().map(([t, merged, survivor]) => [`${t}/${merged}`, survivor]));
    return this.remote
      .transaction(() => {
        const applied = this.sql.lastApplied.get(this.replica) ?? 0;
        this.seq = this.sql.head.get();
        let pushed = 0;
        let conflicts = 0;
        for (const entry of batch) {
          if (entry.seq <= applied) continue; // applied by a push whose acknowledgement was lost
          if (this.#applyEntry(entry, aliases)) pushed += 1;
          else conflicts += 1;
        }
        this.sql.setLastApplied.run(this.replica, batch[batch.length - 1].seq);
        this.sql.setHead.run(this.seq);
        this.crashPoint("push_before_remote_commit");
        return { pushed, conflicts };
      })
      .immediate();
  }

  /** The row a write addressed to `(table, id)` applies to on the remote: this replica's own
   * merges first (made by its pulls, not on the remote), then the remote's. */
  #survivor(table, id, aliases) {
    for (let hops = 0; hops < ALIAS_HOPS_MAX; hops += 1) {
      const next = aliases.get(`${table}/${id}`) ?? this.sql.record.get(table, id)?.survivor ?? null;
      if (next === null) return id;
      id = next;
    }
    throw new SyncError("other", `${table} ${id}: more than ${ALIAS_HOPS_MAX} natural-key merges in a row`);
  }

  /** Applies one outbox row on the remote; false when it loses. */
  #applyEntry(entry, aliases) {
    const table = entry.tbl;
    const sql = this.sql.table.get(table);
    const target = this.#survivor(table, entry.row_id, aliases);
    const record = this.sql.record.get(table, target);
    if (entry.op === "delete") {
      if (!sql.exists.get(target)) return false; // deleted already, here or by its parent's delete
      this.#deleteOnRemote(table, target, entry.stamp);
      return true;
    }
    const values = decodeRow(entry.payload);
    for (const { column, parent } of this.schema.table(table).refs) {
      if (values[column] === null) continue;
      values[column] = this.#survivor(parent, values[column], aliases); // a parent merged away
      if (!this.sql.table.get(parent).exists.get(values[column])) return false; // its parent is deleted: the delete wins
    }
    if (record?.deleted) return false; // deleted here: the delete wins
    if (record === undefined) {
      if (entry.op !== "insert") return false; // a row whose insert lost (its parent was deleted)
      const key = this.schema.table(table).key;
      const holder = key !== null && values[key] !== null ? sql.keyHolder.get(values[key]) : undefined;
      if (holder === undefined) {
        sql.insert.run(target, ...this.schema.table(table).columns.map((c) => values[c]));
        this.sql.setRecord.run(table, target, entry.stamp, this.#nextSeq(), 0, null);
        return true;
      }
      // Inserted apart with the same natural key: the row already here survives, this id
      // becomes its alias, and this insert is a write to the survivor.
      this.sql.setRecord.run(table, target, entry.stamp, this.#nextSeq(), 0, holder);
      aliases.set(`${table}/${target}`, holder);
      this.log(`push: ${table} ${target} has the ${key} of ${holder}: merged into it`);
      return this.#writeOnRemote(table, holder, values, entry.stamp);
    }
    if (target !== entry.row_id && entry.op === "insert" && this.sql.record.get(table, entry.row_id) === undefined) {
      // An insert this replica merged into the survivor at a pull: the remote learns the alias.
      this.sql.setRecord.run(table, entry.row_id, entry.stamp, this.#nextSeq(), 0, target);
    }
    return this.#writeOnRemote(table, target, values, entry.stamp);
  }

  /** Row-level last writer wins: the row takes `values` if `stamp` is newer than its own. */
  #writeOnRemote(table, id, values, stamp) {
    const record = this.sql.record.get(table, id);
    if (record.stamp >= stamp) return false;
    const sql = this.sql.table.get(table);
    if (sql.update) sql.update.run(...sql.settable.map((c) => values[c]), id);
    this.sql.setRecord.run(table, id, stamp, this.#nextSeq(), 0, null);
    return true;
  }

  #deleteOnRemote(table, id, stamp) {
    const rows = [];
    const seen = new Set();
    const walk = (t, i) => {
      if (seen.has(`${t}/${i}`)) return;
      seen.add(`${t}/${i}`);
      rows.push([t, i]);
      for (const c of this.sql.table.get(t).children) for (const child of c.ids.all(i)) walk(c.table, child);
    };
    walk(table, id);
    for (const [t, i] of rows) {
      const before = this.sql.record.get(t, i);
      this.sql.setRecord.run(t, i, Math.max(stamp, before?.stamp ?? 0), this.#nextSeq(), 1, null);
    }
    this.sql.table.get(table).delete.run(id); // its descendants go with it (ON DELETE CASCADE)
  }

  #nextSeq() {
    this.seq += 1;
    return this.seq;
  }

  // -- pull --------------------------------------------------------------------------------------

  /** Brings the other replicas' changes; returns `{pulled, conflicts}`. */
  pull() {
    return failures("pull", () => {
      const cursor = this.store.state("cursor");
      // 1. Fetch, in one remote read transaction.
      const { changes, rows } = this.remote.transaction(() => this.#fetch(cursor)).deferred();
      if (changes.length === 0) return { pulled: 0, conflicts: 0 };
      // 2. Apply, in one local transaction.
      return this.local
        .transaction(() => {
          // A natural-key merge moves children before their new parent is in place.
          this.local.pragma("defer_foreign_keys = ON");
          const result = this.#apply(changes, rows);
          this.store.setState("cursor", changes[changes.length - 1].seq);
          this.crashPoint("pull_before_local_commit");
          return result;
        })
        .immediate();
    });
  }

  /** The records changed since `cursor` and the current values of every row they need: a live
   * row's own, a merged id's survivor's (`rows`: table/id -> {stamp, values}). */
  #fetch(cursor) {
    const changes = this.sql.changedSince.all(cursor);
    const wanted = new Map();
    const want = (table, id) => {
      if (!wanted.has(table)) wanted.set(table, new Set());
      wanted.get(table).add(id);
    };
    for (const c of changes) {
      if (c.survivor !== null) {
        c.survivor = this.#survivor(c.tbl, c.survivor, new Map());
        want(c.tbl, c.survivor);
      } else if (!c.deleted) want(c.tbl, c.row_id);
    }
    const rows = new Map();
    for (const [table, ids] of wanted) {
      const t = this.schema.table(table);
      for (const found of this.sql.table.get(table).rows.all(JSON.stringify([...ids]))) {
        const id = normalize(found.id);
        const record = this.sql.record.get(table, id);
        rows.set(`${table}/${id}`, { stamp: record.stamp, values: Object.fromEntries(t.columns.map((c) => [c, normalize(found[c])])) });
      }
    }
    return { changes, rows };
  }

  #apply(changes, rows) {
    const store = this.store;
    let pulled = 0;
    let conflicts = 0;
    for (const c of changes) store.observeStamp(c.stamp);
    // Merged ids first: a local row merged away on the remote merges here.
    for (const c of changes.filter((c) => c.survivor !== null)) {
      if (this.#mergeHere(c.tbl, c.row_id, c.survivor, rows.get(`${c.tbl}/${c.survivor}`))) pulled += 1;
    }
    // Then deletes (a deleted row may hold a natural key a live row of this batch holds now).
    for (const c of changes.filter((c) => c.deleted)) {
      if (store.exists(c.tbl, c.row_id)) {
        store.deleteRow(c.tbl, c.row_id, c.stamp);
        pulled += 1;
      } else {
        store.setRowStamp(c.tbl, c.row_id, Math.max(c.stamp, store.rowStamp(c.tbl, c.row_id)?.stamp ?? 0), true);
      }
    }
    // Then live rows, parents before children: a row waits for its parent until no row can go
    // in; one whose parent is still missing is under a row deleted here (not pushed yet), and
    // that delete wins.
    let waiting = [];
    for (const table of this.schema.order) {
      for (const c of changes) if (c.tbl === table && !c.deleted && c.survivor === null) waiting.push(c);
    }
    for (let moved = true; moved && waiting.length > 0; ) {
      moved = false;
      const later = [];
      for (const c of waiting) {
        const row = rows.get(`${c.tbl}/${c.row_id}`);
        const outcome = row === undefined ? "skip" : this.#applyRow(c.tbl, c.row_id, row);
        if (outcome === "wait") later.push(c);
        else {
          moved = true;
          if (outcome === "applied") pulled += 1;
          else if (outcome === "conflict") conflicts += 1;
        }
      }
      waiting = later;
    }
    conflicts += waiting.length;
    return { pulled, conflicts };
  }

  /** Applies one pulled live row: "applied", "conflict" (a newer or deleting local write wins),
   * "skip" (nothing to do) or "wait" (its parent is not here). */
  #applyRow(table, id, { stamp, values }) {
    const store = this.store;
    const mine = store.rowStamp(table, id);
    if (mine?.deleted) return "conflict"; // deleted here: the delete wins, and is pushed
    if (mine !== undefined && mine.stamp >= stamp && store.exists(table, id)) return mine.stamp > stamp ? "conflict" : "skip";
    const holder = store.keyHolder(table, values, id);
    if (holder !== undefined) {
      // A local row with the same natural key, not pushed yet: it merges into this one.
      this.#mergeHere(table, holder, id, { stamp, values });
      return "applied";
    }
    for (const { column, parent } of this.schema.table(table).refs) {
      if (values[column] !== null && !store.exists(parent, values[column])) return "wait";
    }
    store.putRow(table, id, values);
    store.setRowStamp(table, id, stamp, false);
    return "applied";
  }

  /** Local row `gone` holds the natural key of the remote's row `survivor` (`remote`: its stamp
   * and values, or undefined if it is deleted): gone merges into it. The survivor takes the
   * newer of the two rows, gone's children move to it, and gone's pending writes follow it at
   * the next push (through sync_aliases). True if a local row changed. */
  #mergeHere(table, gone, survivor, remote) {
    const store = this.store;
    this.cacheSql.setAlias.run(table, gone, survivor);
    const mine = store.row(table, gone);
    if (mine === undefined) return false;
    const stamp = store.rowStamp(table, gone)?.stamp ?? 0;
    if (remote === undefined) {
      store.deleteRow(table, gone, stamp); // the survivor is deleted: so is gone
      return true;
    }
    const newer = stamp > remote.stamp ? { stamp, values: mine } : remote;
    this.log(`pull: ${table} ${gone} merged into ${survivor} (the ${stamp > remote.stamp ? "local" : "remote"} row is newer)`);
    store.moveChildren(table, gone, survivor);
    store.deleteRow(table, gone, stamp);
    store.forgetRow(table, gone);
    store.putRow(table, survivor, newer.values);
    store.setRowStamp(table, survivor, newer.stamp, false);
    return true;
  }

  close() {
    this.remote.close();
  }
}

/** Runs a push or pull, turning a database error into SyncError. */
function failures(what, fn) {
  try {
    return fn();
  } catch (e) {
    if (e instanceof SyncError) throw e;
    if (isBusy(e)) throw new SyncError("busy", `${what}: ${e.message}`);
    if (typeof e?.code === "string" && e.code.startsWith("SQLITE_")) throw new SyncError("other", `${what}: ${e.message}`);
    throw e;
  }
}
