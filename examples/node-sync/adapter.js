// syncgate adapter for the node-sync layer (store.js + sync.js), on the JavaScript helper
// (adapters/node, the npm package syncgate-adapter), protocol version 1.
//
//     syncgate check --engine 'exec:node examples/node-sync/adapter.js' --cases 300
//
// NODE_SYNC_BUGS picks planted bugs: none (the default: the correct layer), all, or a
// comma-separated list of names (README.md, "The bugs").

import { Adapter, CRASH_POINTS, Malformed, Refused, SyncFailed, Unsupported, log, resolveRefs, run } from "syncgate-adapter";

import { Schema } from "./schema.js";
import { Store, WriteRefused } from "./store.js";
import { Sync, SyncError, createRemote } from "./sync.js";

const BUGS = ["mark_synced_before_commit", "wall_clock_stamps"];

/** `none`, `all`, or a comma-separated list of BUGS. */
function enabledBugs(spec) {
  const text = (spec ?? "none").trim() || "none";
  const names = text === "all" ? [...BUGS] : text === "none" ? [] : text.split(",").map((s) => s.trim()).filter(Boolean);
  const unknown = names.filter((n) => !BUGS.includes(n));
  if (unknown.length > 0) throw new Error(`NODE_SYNC_BUGS: unknown bug(s) ${unknown.join(", ")}; known: ${BUGS.join(", ")}`);
  return new Set(names);
}

class NodeSyncAdapter extends Adapter {
  static engine = "node-sync 1 (better-sqlite3)";
  static capabilities = {
    clock: true, // the store's clock is injected: set_clock drives every stamp
    crash_points: [...CRASH_POINTS],
    outside_writes: "not_captured", // the outbox is written by Store.transaction: raw SQL on the cache bypasses it
    outside_insert_ids: "sqlite",
    profile: null,
    reads: true, // Store.list, the app's list view
  };
  static policies = { merge: "row", delete: "delete_wins", natural_keys: "merge", explicit_ids: false };

  init() {
    const bugs = enabledBugs(process.env.NODE_SYNC_BUGS);
    if (this.remote.kind !== "sqlite") throw new Unsupported(`remote kind ${this.remote.kind} is not supported (sqlite only)`);
    const schema = new Schema(this.schema);
    if (this.createRemote) createRemote(this.remotePath, schema);
    this.store = new Store({ path: this.cache, schema, replica: this.replica, now: () => this.clockMs, bugs });
    this.layer = new Sync({
      store: this.store,
      remotePath: this.remotePath,
      bugs,
      crashPoint: (name) => this.crashPoint(name),
      log: (line) => log(`node-sync: ${line}`),
    });
    if (bugs.size > 0) log(`node-sync: planted bugs on: ${[...bugs].join(", ")}`);
  }

  write(ops) {
    for (const op of ops) if (!this.store.schema.has(op.table)) throw new Malformed(`unknown table ${op.table}`);
    try {
      return this.store.transaction((tx) => {
        const inserted = new Map(); // op index -> id, for {"ref": k}
        const ids = [];
        ops.forEach((op, k) => {
          if (op.op === "insert") {
            const id = tx.insert(op.table, resolveRefs(op.values, inserted));
            inserted.set(k, id);
            ids.push(id);
          } else if (op.op === "update") tx.update(op.table, op.id, resolveRefs(op.set, inserted));
          else tx.remove(op.table, op.id);
        });
        return ids;
      });
    } catch (e) {
      if (e instanceof WriteRefused) throw new Refused(e.kind, e.message);
      throw e;
    }
  }

  read(table) {
    if (!this.store.schema.has(table)) throw new Malformed(`unknown table ${table}`);
    return this.store.list(table);
  }

  push() {
    const { pushed, conflicts } = this.#step(() => this.layer.push());
    return [pushed, 0, conflicts];
  }

  pull() {
    const { pulled, conflicts } = this.#step(() => this.layer.pull());
    return [0, pulled, conflicts];
  }

  pending() {
    return this.layer.pending();
  }

  #step(fn) {
    try {
      return fn();
    } catch (e) {
      if (e instanceof SyncError) throw new SyncFailed(e.kind, e.message);
      throw e;
    }
  }
}

run(NodeSyncAdapter);
