// The application's data layer: its tables in a local SQLite file (the cache), through
// better-sqlite3. Every write goes through `Store.transaction`, which writes the rows and, in the
// same SQLite transaction, one outbox row per change (table, id, op, the row as it now is, a
// stamp): a write and its outbox row commit together or not at all, and the outbox is a table in
// the file, so nothing pending lives only in memory. `sync.js` reads the outbox and pushes it.
//
// New rows get ids from this replica's own range (replica * 2^40 up, the counter in the file), so
// that no two replicas ever mint the same id and no id is ever given twice, a deleted row's
// included. Each change gets a stamp that orders it against every other replica's: a hybrid
// logical clock, `tick * STAMP_REPLICAS + replica`, where the tick is the wall clock in ms or one
// more than the largest tick this replica has made or pulled, whichever is larger. A write made
// after pulling another is stamped later whatever the wall clocks say; the replica in the low
// bits breaks ties.
//
// The planted bug `wall_clock_stamps` (README.md) is marked BUG(wall_clock_stamps).

import Database from "better-sqlite3";

import { decodeRow, encodeRow, normalize, q } from "./schema.js";

/** Stamps are `tick * STAMP_REPLICAS + replica`. */
export const STAMP_REPLICAS = 1024;
/** Replica `r` mints ids in `[r * ID_SPACE, (r + 1) * ID_SPACE)`. */
export const ID_SPACE = 2 ** 40;
/** How long a statement waits for a lock another connection holds. Short: a lock held by
 * another process may stay for a long time, and waiting only makes the answer "busy" later. */
export const BUSY_TIMEOUT_MS = 10;

// The store's bookkeeping, shared with the sync layer: the outbox; each row's stamp (kept after
// the row is deleted: a tombstone); ids merged into another row by a natural-key merge; the
// counters (the id counter, the clock, the pull cursor).
const LOCAL_DDL = `
CREATE TABLE IF NOT EXISTS sync_outbox (
  seq INTEGER PRIMARY KEY AUTOINCREMENT, tbl TEXT NOT NULL, row_id INTEGER NOT NULL,
  op TEXT NOT NULL, payload TEXT, stamp INTEGER NOT NULL, synced INTEGER NOT NULL DEFAULT 0);
CREATE INDEX IF NOT EXISTS sync_outbox_pending ON sync_outbox (synced, seq);
CREATE TABLE IF NOT EXISTS sync_rows (
  tbl TEXT NOT NULL, row_id INTEGER NOT NULL, stamp INTEGER NOT NULL, deleted INTEGER NOT NULL,
  PRIMARY KEY (tbl, row_id)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS sync_aliases (
  tbl TEXT NOT NULL, merged_id INTEGER NOT NULL, survivor_id INTEGER NOT NULL,
  PRIMARY KEY (tbl, merged_id)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS sync_state (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
`;

/** A write the store refused as a whole; `kind` is the reason (a refusal class of
 * PROTOCOL.md: busy, row_not_found, key_immutable, parent_missing, natural_key_taken, other). */
export class WriteRefused extends Error {
  constructor(kind, message) {
    super(message);
    this.kind = kind;
  }
}

/** Whether a better-sqlite3 error means another connection holds a lock. */
export function isBusy(error) {
  return typeof error?.code === "string" && (error.code.startsWith("SQLITE_BUSY") || error.code.startsWith("SQLITE_LOCKED"));
}

/** Opens a SQLite file as this application does: foreign keys on (ON DELETE CASCADE), a short
 * busy wait. */
export function openDatabase(path) {
  const db = new Database(path, { timeout: BUSY_TIMEOUT_MS });
  db.pragma("foreign_keys = ON");
  return db;
}

export class Store {
  /**
   * `path`: the cache file; `schema`: a Schema (schema.js); `replica`: this replica's number
   * (its id range and the low bits of its stamps); `now()`: the clock, ms since the epoch.
   */
  constructor({ path, schema, replica, now, bugs = new Set() }) {
    if (!(Number.isSafeInteger(replica) && replica >= 0 && replica < STAMP_REPLICAS)) {
      throw new Error(`replica ${replica} is outside 0..${STAMP_REPLICAS - 1}`);
    }
    this.schema = schema;
    this.replica = replica;
    this.now = now;
    this.bugs = bugs;
    this.db = openDatabase(path);
    // Set up a new file; a file already set up is only read here (another connection may hold
    // its write lock while the app starts).
    const ready = this.db.prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'sync_state'").get();
    if (!ready) {
      this.db.pragma("journal_mode = WAL");
      this.db.transaction(() => {
        for (const statement of schema.ddl) this.db.exec(statement);
        this.db.exec(LOCAL_DDL);
      }).immediate();
    }
    this.sql = this.#prepare();
  }

  #prepare() {
    const db = this.db;
    const perTable = new Map();
    for (const t of this.schema.tables.values()) {
      const cols = t.columns.map(q);
      const marks = t.columns.map(() => "?");
      perTable.set(t.name, {
        select: db.prepare(`SELECT ${["id", ...t.columns].map(q).join(", ")} FROM ${q(t.name)} WHERE "id" = ?`).safeIntegers(true),
        all: db.prepare(`SELECT ${["id", ...t.columns].map(q).join(", ")} FROM ${q(t.name)} ORDER BY "id"`).safeIntegers(true),
        exists: db.prepare(`SELECT 1 FROM ${q(t.name)} WHERE "id" = ?`).pluck(),
        insert: db.prepare(`INSERT INTO ${q(t.name)} ("id"${cols.map((c) => `, ${c}`).join("")}) VALUES (?${marks.map((m) => `, ${m}`).join("")})`),
        upsert: db.prepare(
          `INSERT INTO ${q(t.name)} ("id"${cols.map((c) => `, ${c}`).join("")}) VALUES (?${marks.map((m) => `, ${m}`).join("")}) ` +
            `ON CONFLICT ("id") DO UPDATE SET ${cols.length ? cols.map((c) => `${c} = excluded.${c}`).join(", ") : '"id" = excluded."id"'}`,
        ),
        delete: db.prepare(`DELETE FROM ${q(t.name)} WHERE "id" = ?`),
        keyHolder: t.key ? db.prepare(`SELECT "id" FROM ${q(t.name)} WHERE ${q(t.key)} = ? AND "id" <> ?`).pluck() : null,
        children: t.children.map((c) => ({
          table: c.table,
          ids: db.prepare(`SELECT "id" FROM ${q(c.table)} WHERE ${q(c.column)} = ?`).pluck(),
          move: db.prepare(`UPDATE ${q(c.table)} SET ${q(c.column)} = ? WHERE ${q(c.column)} = ?`),
        })),
      });
    }
    return {
      table: perTable,
      state: db.prepare("SELECT value FROM sync_state WHERE key = ?").pluck(),
      setState: db.prepare("INSERT INTO sync_state (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value"),
      outbox: db.prepare("INSERT INTO sync_outbox (tbl, row_id, op, payload, stamp) VALUES (?, ?, ?, ?, ?)"),
      rowStamp: db.prepare("SELECT stamp, deleted FROM sync_rows WHERE tbl = ? AND row_id = ?"),
      setRowStamp: db.prepare(
        "INSERT INTO sync_rows (tbl, row_id, stamp, deleted) VALUES (?, ?, ?, ?) " +
          "ON CONFLICT (tbl, row_id) DO UPDATE SET stamp = excluded.stamp, deleted = excluded.deleted",
      ),
      forgetRow: db.prepare("DELETE FROM sync_rows WHERE tbl = ? AND row_id = ?"),
      pendingCount: db.prepare("SELECT count(*) FROM sync_outbox WHERE synced = 0").pluck(),
    };
  }

  // -- the application's API ---------------------------------------------------------------------

  /** Runs `fn(tx)` in one local transaction (`tx.insert`, `tx.update`, `tx.remove`) and returns
   * what it returns; throws WriteRefused when nothing was written. */
  transaction(fn) {
    const tx = {
      insert: (table, values) => this.#insert(table, values),
      update: (table, id, changes) => this.#update(table, id, changes),
      remove: (table, id) => this.#remove(table, id),
    };
    try {
      return this.db.transaction(() => fn(tx)).immediate();
    } catch (e) {
      throw refusal(e);
    }
  }

  /** Every row of `table`, as the app's list views show them: `[[id, {column: value}], ...]`. */
  list(table) {
    const t = this.schema.table(table);
    return this.sql.table.get(table).all.all().map((row) => [normalize(row.id), Object.fromEntries(t.columns.map((c) => [c, normalize(row[c])]))]);
  }

  // -- writes ------------------------------------------------------------------------------------

  #insert(table, values) {
    const t = this.schema.table(table);
    for (const column of Object.keys(values)) {
      if (!t.columns.includes(column)) throw new WriteRefused("other", `${table} has no column ${column}`);
    }
    const id = this.#nextId();
    const row = Object.fromEntries(t.columns.map((c) => [c, values[c] ?? null]));
    this.sql.table.get(table).insert.run(id, ...t.columns.map((c) => row[c]));
    this.#record(table, id, "insert", row);
    return id;
  }

  #update(table, id, changes) {
    const t = this.schema.table(table);
    const current = this.row(table, id);
    if (current === undefined) throw new WriteRefused("row_not_found", `${table} ${id} does not exist`);
    for (const [column, value] of Object.entries(changes)) {
      if (!t.columns.includes(column)) throw new WriteRefused("other", `${table} has no column ${column}`);
      if (column === t.key && normalize(value) !== current[column]) {
        throw new WriteRefused("key_immutable", `${table}.${column} is a natural key: it cannot change`);
      }
    }
    const row = { ...current, ...changes };
    this.sql.table.get(table).upsert.run(id, ...t.columns.map((c) => row[c]));
    this.#record(table, id, "update", row);
  }

  #remove(table, id) {
    if (!this.sql.table.get(table).exists.get(id)) throw new WriteRefused("row_not_found", `${table} ${id} does not exist`);
    const stamp = this.#record(table, id, "delete", null);
    this.deleteRow(table, id, stamp);
  }

  /** Appends a change to the outbox with the next stamp, and sets the row's stamp. */
  #record(table, id, op, row) {
    const stamp = this.nextStamp();
    this.sql.outbox.run(table, id, op, row === null ? null : encodeRow(row), stamp);
    this.sql.setRowStamp.run(table, id, stamp, op === "delete" ? 1 : 0);
    return stamp;
  }

  #nextId() {
    const next = (this.sql.state.get("last_id") ?? 0) + 1;
    if (next >= ID_SPACE) throw new WriteRefused("other", "this replica's id range is used up");
    this.sql.setState.run("last_id", next);
    return this.replica * ID_SPACE + next;
  }

  /** The next stamp of this replica (inside a write transaction). */
  nextStamp() {
    const last = this.sql.state.get("clock") ?? 0;
    // BUG(wall_clock_stamps): "the newest edit wins", with the device's clock saying which is
    // newest. A device whose clock is behind (or stands still, or went back across a restart)
    // stamps its edit older than one it has already seen, and that edit loses everywhere.
    // (Fix: never behind the largest tick made or pulled, as below.)
    const tick = this.bugs.has("wall_clock_stamps") ? this.now() : Math.max(this.now(), last + 1);
    this.sql.setState.run("clock", Math.max(last, tick));
    return tick * STAMP_REPLICAS + this.replica;
  }

  /** Raises the clock to at least the tick of `stamp` (a stamp pulled from the remote). */
  observeStamp(stamp) {
    const tick = Math.floor(stamp / STAMP_REPLICAS);
    if (tick > (this.sql.state.get("clock") ?? 0)) this.sql.setState.run("clock", tick);
  }

  // -- shared with the sync layer ----------------------------------------------------------------

  /** A row's values `{column: value}`, or undefined. */
  row(table, id) {
    const found = this.sql.table.get(table).select.get(id);
    if (found === undefined) return undefined;
    return Object.fromEntries(this.schema.table(table).columns.map((c) => [c, normalize(found[c])]));
  }

  exists(table, id) {
    return this.sql.table.get(table).exists.get(id) !== undefined;
  }

  /** `{stamp, deleted}` of a row this replica has seen, or undefined. */
  rowStamp(table, id) {
    return this.sql.rowStamp.get(table, id);
  }

  setRowStamp(table, id, stamp, deleted) {
    this.sql.setRowStamp.run(table, id, stamp, deleted ? 1 : 0);
  }

  forgetRow(table, id) {
    this.sql.forgetRow.run(table, id);
  }

  /** Another row of `table` holding the natural key in `row`, or undefined. */
  keyHolder(table, row, id) {
    const t = this.schema.table(table);
    if (t.key === null || row[t.key] === null) return undefined; // NULL never collides
    return normalize(this.sql.table.get(table).keyHolder.get(row[t.key], id));
  }

  /** Writes a row pulled or merged here (not a local change: no outbox row). */
  putRow(table, id, row) {
    const t = this.schema.table(table);
    this.sql.table.get(table).upsert.run(id, ...t.columns.map((c) => row[c] ?? null));
  }

  /** Deletes a row and, through ON DELETE CASCADE, its descendants; each of them keeps a
   * tombstone stamped `stamp`, so that no pulled write brings it back. */
  deleteRow(table, id, stamp) {
    for (const [t, d] of this.descendants(table, id)) this.setRowStamp(t, d, Math.max(stamp, this.rowStamp(t, d)?.stamp ?? 0), true);
    this.sql.table.get(table).delete.run(id);
  }

  /** The row and every row under it, by the declared references: `[[table, id], ...]`. */
  descendants(table, id) {
    const out = [];
    const seen = new Set();
    const walk = (t, i) => {
      const key = `${t}/${i}`;
      if (seen.has(key)) return;
      seen.add(key);
      out.push([t, i]);
      for (const c of this.sql.table.get(t).children) for (const child of c.ids.all(i)) walk(c.table, normalize(child));
    };
    walk(table, id);
    return out;
  }

  /** Points every child of `gone` at `survivor` (a natural-key merge). */
  moveChildren(table, gone, survivor) {
    for (const c of this.sql.table.get(table).children) c.move.run(survivor, gone);
  }

  /** How many outbox rows are not synced yet. */
  pendingCount() {
    return this.sql.pendingCount.get();
  }

  state(key) {
    return this.sql.state.get(key) ?? 0;
  }

  setState(key, value) {
    this.sql.setState.run(key, value);
  }

  close() {
    this.db.close();
  }
}

/** What a failed write transaction means to the application. */
function refusal(error) {
  if (error instanceof WriteRefused) return error;
  if (isBusy(error)) return new WriteRefused("busy", error.message);
  if (error?.code === "SQLITE_CONSTRAINT_FOREIGNKEY") return new WriteRefused("parent_missing", error.message);
  if (error?.code === "SQLITE_CONSTRAINT_UNIQUE") return new WriteRefused("natural_key_taken", error.message);
  if (typeof error?.code === "string" && error.code.startsWith("SQLITE_")) return new WriteRefused("other", error.message);
  return error;
}

export { decodeRow };
