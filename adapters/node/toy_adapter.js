// A stdlib-only adapter the tests drive as a process: rows in memory, a "remote" that is a
// list in memory too. Not a sync layer: just enough to exercise the helper.
import { Adapter, Refused, SyncFailed, resolveRefs, run, log } from "./index.js";

class Toy extends Adapter {
  static engine = "toy 1";
  static capabilities = {
    clock: false,
    crash_points: ["push_after_remote_commit"],
    outside_writes: "not_captured",
    outside_insert_ids: "sqlite",
    profile: null,
    reads: true,
  };
  static policies = { merge: "row", delete: "delete_wins", natural_keys: "refuse", explicit_ids: false };

  init() {
    this.rows = new Map();
    this.next = 1;
    this.outbox = [];
    console.log("a stray print: it must reach stderr, not the protocol");
  }

  write(ops) {
    const inserted = new Map();
    const ids = [];
    ops.forEach((op, k) => {
      if (op.table === "locked") throw new Refused("busy", "the cache is locked");
      if (op.op === "insert") {
        const id = this.next++;
        this.rows.set(id, resolveRefs(op.values, inserted));
        inserted.set(k, id);
        ids.push(id);
      }
    });
    this.outbox.push(...ops);
    return ids;
  }

  async push() {
    if (this.outbox.length === 0) return [0, 0, 0];
    if (this.outbox.some((op) => op.table === "offline")) throw new SyncFailed("unavailable", "no server");
    const n = this.outbox.length;
    this.crashPoint("push_after_remote_commit");
    this.outbox = [];
    return [n, 0, 0];
  }

  pull() {
    return [0, 0, 0];
  }

  pending() {
    return this.outbox.length;
  }

  read() {
    return [...this.rows].map(([id, values]) => [id, values]);
  }
}

log("toy adapter starting");
run(Toy);
