// syncgate-adapter: the framing of syncgate's engine protocol (PROTOCOL.md, versions 1 and 2)
// for adapters written in JavaScript or TypeScript, so that an adapter is a short class around
// your sync layer. It owns what the Python helper (adapters/python) owns: the JSON lines, the
// handshake and its declarations, {"ref": k} values, crash points, refusals and sync failures,
// the checks of your answers (a wrong answer is reported as your adapter's bug, "internal"),
// stdout kept for the protocol, and 64-bit integers kept exact (json.js). No dependencies.

import { createInterface } from "node:readline";

import { parse, stringify } from "./json.js";

/** The protocol versions this helper speaks. It answers 2 only to an adapter that declares
 * something of version 2, so an adapter written for version 1 is answered as before. */
export const PROTOCOLS = Object.freeze([1, 2]);
export const CRASH_POINTS = Object.freeze([
  "push_before_remote_commit",
  "push_after_remote_commit",
  "pull_before_local_commit",
]);
export const REFUSAL_CLASSES = Object.freeze([
  "id_outside_replica",
  "id_taken",
  "id_deleted",
  "natural_key_taken",
  "parent_missing",
  "row_not_found",
  "key_immutable",
  "busy",
  "other",
]);
export const SYNC_FAILURE_CLASSES = Object.freeze(["busy", "clock_drift", "unavailable", "login_refused", "other"]);
/** Exit code of a process stopped at a crash point (the protocol accepts any). */
export const CRASH_EXIT_CODE = 3;
/** Limit on one request line (house style: a limit on everything, qualifier last). */
export const REQUEST_BYTES_MAX = 64 << 20;

const CAPABILITY_VALUES = {
  clock: [true, false],
  outside_writes: ["captured", "not_captured", "delegated"],
  outside_insert_ids: ["engine", "sqlite"],
  profile: ["reference", null],
};
const POLICY_VALUES = {
  merge: ["column", "row"],
  delete: ["delete_wins", "update_wins"],
  natural_keys: ["merge", "refuse", "local_only", "unenforced"],
  explicit_ids: [true, false],
};
/** Version 2's declarations, each optional, with the values this helper knows (PROTOCOL.md,
 * "Version 2"); replicas_max (an integer >= 1 or null) is checked apart. */
export const VERSION_2_CAPABILITIES = Object.freeze({
  push_pull: ["separate", "together"],
  replicas_max: null,
  aborts: [true, false],
  value_domain: null, // an object, e.g. {integers: "safe"}; checked by the harness
});
export const VERSION_2_POLICIES = Object.freeze({
  push: ["explicit", "on_commit"],
  pending_after_sync: ["zero", "resolutions"],
  ids: ["stable", "remote_map", "renumbered"],
  transactions: ["unit", "atomic"],
  consistency: ["eventual", "causal"],
  references: ["enforced", "local_only", "unenforced"],
});
/** natural_keys values that only version 2 knows (PROTOCOL.md, "Promises per constraint"). */
const VERSION_2_NATURAL_KEYS = ["local_only", "unenforced"];
/** The replies that may carry `renumbered`. */
const RENUMBERED_REPLIES = ["write_ok", "sync_ok", "sync_failed", "init_ok"];

/** A write refused as a whole: nothing of the transaction happened. */
export class Refused extends Error {
  constructor(cls, message = "") {
    if (!REFUSAL_CLASSES.includes(cls)) throw new TypeError(`refusal class ${String(cls)} is not one of ${REFUSAL_CLASSES}`);
    super(`${cls}: ${message}`);
    this.cls = cls;
    this.detail = message;
  }
}

/** A push, pull or sync that failed and marked nothing synced. */
export class SyncFailed extends Error {
  constructor(cls, message = "") {
    if (!SYNC_FAILURE_CLASSES.includes(cls)) {
      throw new TypeError(`sync failure class ${String(cls)} is not one of ${SYNC_FAILURE_CLASSES}`);
    }
    super(`${cls}: ${message}`);
    this.cls = cls;
    this.detail = message;
  }
}

/** The request cannot be understood (answered error "malformed"). */
export class Malformed extends Error {}

/** The request asks for something this adapter does not do (error "unsupported"). */
export class Unsupported extends Error {}

/** An answer of the adapter that breaks the protocol (error "internal"). */
class AdapterBug extends Error {}

/** Writes one line to stderr, the harness's log of this process. */
export function log(...parts) {
  process.stderr.write(`${parts.map(String).join(" ")}\n`);
}

/** Whether `x` is an integer the protocol can carry exactly. */
export function isInteger(x) {
  return Number.isSafeInteger(x) || typeof x === "bigint";
}

const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

/** `values` with every {"blob": "<base64>"} as a Buffer (PROTOCOL.md, values): better-sqlite3
 * binds a Buffer as a BLOB. Reals arrive as numbers, integers as numbers or BigInts. */
function blobsAsBuffers(values) {
  if (values === null || typeof values !== "object") return values;
  const out = {};
  for (const [column, value] of Object.entries(values)) {
    if (value !== null && typeof value === "object" && "blob" in value) {
      if (Object.keys(value).length !== 1 || typeof value.blob !== "string" || !BASE64.test(value.blob)) {
        throw new Malformed(`value of ${column} is ${stringify(value)}: a blob is {"blob": "<standard base64>"}`);
      }
      out[column] = Buffer.from(value.blob, "base64");
    } else {
      out[column] = value;
    }
  }
  return out;
}

/**
 * Returns `values` with every {"ref": k} replaced by the id op `k` inserted. `inserted` maps
 * the index (in this request's ops) of each insert done so far to its id (a Map, or an object
 * keyed by index). A ref to an op that is not an earlier insert throws Malformed.
 */
export function resolveRefs(values, inserted) {
  const get = (k) => (inserted instanceof Map ? inserted.get(k) : inserted[k]);
  const out = {};
  for (const [column, value] of Object.entries(values)) {
    if (value !== null && typeof value === "object" && !(value instanceof Uint8Array)) {
      const k = value.ref;
      if (Object.keys(value).length !== 1 || !Number.isSafeInteger(k)) {
        throw new Malformed(
          `value of ${column} is ${stringify(value)}: expected null, a number, a string, a Buffer or {"ref": k}`,
        );
      }
      if (get(k) === undefined) throw new Malformed(`${column} refers to op ${k}, which is not an earlier insert of this request`);
      out[column] = get(k);
    } else {
      out[column] = value;
    }
  }
  return out;
}

/**
 * Base class of an adapter: one instance serves one replica process. Declare `engine`,
 * `capabilities` and `policies` as static fields, or return [capabilities, policies] from
 * init(). Before init() runs, the helper sets replica, replicas, cache, remote (the object),
 * remotePath (for {"kind": "sqlite"}), createRemote, fresh, schema, tables (name -> table),
 * ddl, clockMs, limits and protocols from the request. Every method may be async.
 */
export class Adapter {
  static engine = "unnamed-engine";
  static capabilities = null;
  static policies = null;

  /** Opens the replica (creates the remote first if this.createRemote). */
  init(msg) {
    return undefined;
  }

  /** Applies ops in one local transaction; returns the inserted rows' ids in op order. */
  write(ops) {
    throw new Unsupported("write is not implemented");
  }

  /** Version 2, with capabilities.aborts: runs ops in one local transaction through your write
   * API, then rolls it back; returns nothing, or the ids the inserts had. */
  writeAborted(ops) {
    throw new Unsupported("writeAborted is not implemented");
  }

  /** Returns [pushed, pulled, conflicts]; throw SyncFailed on failure. */
  push() {
    throw new Unsupported("push is not implemented");
  }

  pull() {
    throw new Unsupported("pull is not implemented");
  }

  /** A push then a pull (override if your layer has its own). */
  async sync() {
    const [pushed, , pushConflicts] = report(await this.push(), "push");
    const [, pulled, pullConflicts] = report(await this.pull(), "pull");
    return [pushed, pulled, pushConflicts + pullConflicts];
  }

  /** How many local writes are not yet on the remote (0 exactly when none). */
  pending() {
    throw new Unsupported("pending is not implemented");
  }

  /** The injected clock (only with capabilities.clock); the default keeps it in clockMs. */
  setClock(ms) {
    this.clockMs = ms;
  }

  /** An id an insert made outside your API may use (outside_insert_ids: "engine"). */
  mintId(table) {
    throw new Unsupported("mintId is not implemented");
  }

  /** Version 2, outside_writes: "delegated": runs one statement written around your API (`sql`,
   * `params` bound by position, blobs as Buffers) on a connection set up as the application's
   * others are, in a transaction of its own, and nothing else. Returns [changes,
   * lastInsertRowid]; throw Refused("busy") when the cache is locked, Refused("other", SQLite's
   * message) when the statement failed. */
  execSql(sql, params) {
    throw new Unsupported("execSql is not implemented");
  }

  /** Every row of `table` as your read API hands it to the application (capabilities.reads):
   * [[id, {column: value}], ...]. */
  read(table) {
    throw new Unsupported("read is not implemented");
  }

  /** Version 2, ids "renumbered": report a committed new id of a row during a request; the
   * helper adds it to that request's reply. */
  renumbered(table, from, to) {
    if (!isInteger(from) || !isInteger(to)) {
      throw new AdapterBug(`renumbered(${table}, ${String(from)}, ${String(to)}): ids must be integers`);
    }
    if (this._renumbered === undefined) throw new AdapterBug(`renumbered(${table}, ...) called outside a request`);
    this._renumbered.push({ table: String(table), from, to });
  }

  /** Call this where your layer reaches crash point `name`: if armed, the process exits here
   * with no reply, as if killed. */
  crashPoint(name) {
    if (!CRASH_POINTS.includes(name)) throw new AdapterBug(`unknown crash point ${name}`);
    if (this._armedCrash === name) {
      log(`syncgate-adapter: stopping at crash point ${name}`);
      process.exit(CRASH_EXIT_CODE);
    }
  }
}

/**
 * Serves one replica: reads requests from `input` until it ends and writes the replies to
 * `output`. Without `output`, replies go to the process's stdout and everything else written
 * to stdout (console.log included) goes to stderr, so a stray print cannot corrupt the
 * protocol. Resolves to the exit code.
 */
export async function serve(AdapterClass, { input = process.stdin, output } = {}) {
  let send;
  if (output === undefined) {
    const write = process.stdout.write.bind(process.stdout);
    process.stdout.write = process.stderr.write.bind(process.stderr);
    send = (line) => write(line);
  } else {
    send = (line) => output.write(line);
  }
  const dispatcher = new Dispatcher(new AdapterClass());
  const lines = createInterface({ input, crlfDelay: Infinity });
  for await (const line of lines) {
    if (!line.trim()) continue;
    const reply =
      Buffer.byteLength(line) > REQUEST_BYTES_MAX
        ? error(null, "malformed", `request longer than ${REQUEST_BYTES_MAX} bytes`)
        : await dispatcher.handle(line);
    let text;
    try {
      text = stringify(reply);
    } catch (e) {
      log(`syncgate-adapter: adapter bug: cannot send a reply: ${e.message}`);
      text = stringify(error(reply.in_reply_to ?? null, "internal", `adapter bug: reply not JSON: ${e.message}`));
    }
    send(`${text}\n`);
  }
  return 0;
}

/** Serves the protocol on stdin/stdout with `AdapterClass` and exits when stdin closes. */
export async function run(AdapterClass) {
  const code = await serve(AdapterClass);
  process.exit(code);
}

class Dispatcher {
  constructor(adapter) {
    this.adapter = adapter;
    this.initialized = false;
    this.crashPoints = [];
    this.clock = false;
    this.reads = false;
    this.aborts = false;
    this.ids = "stable";
  }

  async handle(line) {
    let msg;
    try {
      msg = parse(line);
    } catch (e) {
      return error(null, "malformed", `not JSON: ${e.message}`);
    }
    if (msg === null || typeof msg !== "object" || Array.isArray(msg)) {
      return error(null, "malformed", "a request is a JSON object");
    }
    const id = msg.msg_id;
    if (!Number.isSafeInteger(id)) return error(null, "malformed", "msg_id must be an integer");
    const kind = msg.type;
    const handler = typeof kind === "string" && Object.hasOwn(HANDLERS, kind) ? HANDLERS[kind] : undefined;
    if (handler === undefined) return error(id, "unknown_type", `unknown request type ${stringify(kind)}`);
    if (kind !== "init" && !this.initialized) {
      return error(id, "malformed", `${kind} before init: init is always the first request`);
    }
    this.adapter._renumbered = [];
    const reply = await this.reply(kind, id, handler, msg);
    const moved = this.adapter._renumbered;
    this.adapter._renumbered = undefined;
    if (moved.length === 0) return reply;
    if (!RENUMBERED_REPLIES.includes(reply.type)) {
      return error(id, "internal", `adapter bug: renumbered ${stringify(moved)} reported while answering ${kind} with ${reply.type} (only ${RENUMBERED_REPLIES.join(", ")} carry renumbered)`);
    }
    if (this.ids !== "renumbered") {
      return error(id, "internal", `adapter bug: renumbered ${stringify(moved)} reported without policies ids: "renumbered"`);
    }
    return { ...reply, renumbered: moved };
  }

  async reply(kind, id, handler, msg) {
    try {
      const { type, ...rest } = await handler.call(this, msg);
      return { type, in_reply_to: id, ...rest };
    } catch (e) {
      if (e instanceof Malformed) return error(id, "malformed", e.message);
      if (e instanceof Unsupported) return error(id, "unsupported", e.message);
      if (e instanceof Refused) {
        if (kind !== "write" && kind !== "exec_sql") {
          return internal(id, e, `Refused thrown by ${kind} (only write and exec_sql may refuse)`);
        }
        return { type: "refused", in_reply_to: id, class: e.cls, message: e.detail };
      }
      if (e instanceof SyncFailed) {
        if (!["push", "pull", "sync"].includes(kind)) {
          return internal(id, e, `SyncFailed thrown by ${kind} (only push, pull and sync may fail)`);
        }
        return { type: "sync_failed", in_reply_to: id, class: e.cls, message: e.detail };
      }
      if (e instanceof AdapterBug) {
        log(`syncgate-adapter: adapter bug: ${e.message}`);
        return error(id, "internal", `adapter bug: ${e.message}`);
      }
      return internal(id, e);
    }
  }
}

const HANDLERS = {
  async init(msg) {
    if (this.initialized) throw new Malformed("init twice in one process");
    const a = this.adapter;
    const version = field(msg, "protocol", "integer");
    const offered = msg.protocols ?? [version];
    if (!Array.isArray(offered) || !offered.every(Number.isSafeInteger)) {
      throw new Malformed(`init: field "protocols" must be a list of integers, got ${stringify(offered)}`);
    }
    a.initMsg = msg;
    a.protocols = offered;
    a.replica = field(msg, "replica", "integer");
    a.replicas = field(msg, "replicas", "integer");
    a.cache = field(msg, "cache", "string");
    a.remote = field(msg, "remote", "object");
    a.remotePath = a.remote.kind === "sqlite" ? a.remote.path : undefined;
    a.createRemote = field(msg, "create_remote", "boolean");
    a.fresh = field(msg, "fresh", "boolean");
    a.schema = field(msg, "schema", "object");
    a.tables = Object.fromEntries((a.schema.tables ?? []).filter((t) => t && typeof t === "object").map((t) => [t.name, t]));
    a.ddl = a.schema.ddl ?? [];
    a.clockMs = field(msg, "clock_ms", "integer");
    a.limits = msg.limits !== null && typeof msg.limits === "object" && !Array.isArray(msg.limits) ? msg.limits : {};
    const declared = await a.init(msg);
    const [capabilities, policies] = declared ?? [a.constructor.capabilities, a.constructor.policies];
    checkDeclaration(capabilities, policies);
    const answered = declaresVersion2(capabilities, policies) ? 2 : 1;
    if (!offered.includes(answered)) {
      log(`syncgate-adapter: the adapter declares protocol ${answered}; the harness speaks ${stringify(offered)}`);
    }
    this.crashPoints = [...capabilities.crash_points];
    this.clock = capabilities.clock;
    this.reads = capabilities.reads ?? false;
    this.aborts = capabilities.aborts ?? false;
    this.ids = policies.ids ?? "stable";
    this.initialized = true;
    return { type: "init_ok", protocol: answered, engine: String(a.constructor.engine), capabilities, policies };
  },

  async write(msg) {
    const ops = field(msg, "ops", "array");
    let inserts = 0;
    ops.forEach((op, k) => {
      if (op === null || typeof op !== "object" || typeof op.table !== "string") {
        throw new Malformed(`op ${k} is not an object with a table`);
      }
      if (op.op === "insert") {
        inserts += 1;
        if (op.values === null || typeof op.values !== "object") throw new Malformed(`op ${k}: insert needs values`);
      } else if (op.op === "update") {
        if (!isInteger(op.id) || op.set === null || typeof op.set !== "object") {
          throw new Malformed(`op ${k}: update needs an integer id and set`);
        }
      } else if (op.op === "delete") {
        if (!isInteger(op.id)) throw new Malformed(`op ${k}: delete needs an integer id`);
      } else {
        throw new Malformed(`op ${k}: unknown op ${stringify(op.op)}`);
      }
    });
    for (const op of ops) {
      if (op.values !== undefined) op.values = blobsAsBuffers(op.values);
      if (op.set !== undefined) op.set = blobsAsBuffers(op.set);
    }
    const abort = msg.abort ?? false;
    if (typeof abort !== "boolean") throw new Malformed(`write: field "abort" must be a boolean, got ${stringify(abort)}`);
    if (abort) {
      if (!this.aborts) throw new Unsupported("write with abort: true sent to an adapter that did not declare aborts: true");
      const ids = await this.adapter.writeAborted(ops);
      if (ids === undefined || ids === null) return { type: "write_aborted" };
      return { type: "write_aborted", ids: checkIds(ids, inserts, "writeAborted") };
    }
    return { type: "write_ok", ids: checkIds(await this.adapter.write(ops), inserts, "write") };
  },

  push() {
    return this.syncStep("push");
  },
  pull() {
    return this.syncStep("pull");
  },
  sync() {
    return this.syncStep("sync");
  },

  async pending() {
    const n = await this.adapter.pending();
    if (!(isInteger(n) && n >= 0)) throw new AdapterBug(`pending returned ${stringify(n)}: expected a non-negative integer`);
    return { type: "pending_ok", pending: n };
  },

  async set_clock(msg) {
    const ms = field(msg, "ms", "integer");
    if (!this.clock) throw new Unsupported("set_clock sent to an adapter that declared clock: false");
    await this.adapter.setClock(ms);
    return { type: "set_clock_ok" };
  },

  arm_crash(msg) {
    const point = field(msg, "point", "string");
    if (!this.crashPoints.includes(point)) {
      throw new Unsupported(`crash point ${point} is not declared (declared: ${this.crashPoints.join(", ") || "none"})`);
    }
    this.adapter._armedCrash = point;
    return { type: "arm_crash_ok" };
  },

  async exec_sql(msg) {
    const sql = field(msg, "sql", "string");
    if (!Array.isArray(msg.params)) throw new Malformed(`exec_sql: params is ${stringify(msg.params)}: expected a list`);
    const params = Object.values(blobsAsBuffers(Object.fromEntries(msg.params.map((v, i) => [`?${i + 1}`, v]))));
    const done = await this.adapter.execSql(sql, params);
    if (!Array.isArray(done) || done.length !== 2 || !done.every(isInteger) || done[0] < 0) {
      throw new AdapterBug(`execSql returned ${stringify(done)}: expected [changes, lastInsertRowid], two integers`);
    }
    return { type: "exec_sql_ok", changes: done[0], last_insert_rowid: done[1] };
  },

  async mint_id(msg) {
    const table = field(msg, "table", "string");
    const id = await this.adapter.mintId(table);
    if (!isInteger(id)) throw new AdapterBug(`mintId returned ${stringify(id)}: expected an integer`);
    return { type: "mint_id_ok", id };
  },

  async read(msg) {
    const table = field(msg, "table", "string");
    if (!this.reads) throw new Unsupported("read sent to an adapter that did not declare reads: true");
    const rows = [];
    for (const row of await this.adapter.read(table)) {
      if (!Array.isArray(row) || row.length !== 2 || !isInteger(row[0])) {
        throw new AdapterBug(`read returned the row ${stringify(row)}: expected [id, {column: value}]`);
      }
      const [id, values] = row;
      const ok =
        values !== null &&
        typeof values === "object" &&
        Object.values(values).every(
          (v) => v === null || typeof v === "string" || isInteger(v) || Number.isFinite(v) || v instanceof Uint8Array,
        );
      if (!ok) {
        throw new AdapterBug(
          `read returned ${stringify(values)} for row ${id}: expected {column: integer, number, string, Buffer or null}`,
        );
      }
      const answered = {};
      for (const [column, v] of Object.entries(values)) {
        answered[column] = v instanceof Uint8Array ? { blob: Buffer.from(v).toString("base64") } : v;
      }
      rows.push({ id, values: answered });
    }
    return { type: "read_ok", rows };
  },
};

Dispatcher.prototype.syncStep = async function syncStep(kind) {
  try {
    const [pushed, pulled, conflicts] = report(await this.adapter[kind](), kind);
    return { type: "sync_ok", pushed, pulled, conflicts };
  } finally {
    this.adapter._armedCrash = undefined;
  }
};

function checkIds(ids, inserts, what) {
  if (!Array.isArray(ids) || ids.length !== inserts || !ids.every(isInteger)) {
    throw new AdapterBug(`${what} returned ${stringify(ids)} for ${inserts} insert(s): expected one integer per insert`);
  }
  return ids;
}

function report(result, kind) {
  const r =
    result !== null && typeof result === "object" && !Array.isArray(result)
      ? [result.pushed, result.pulled, result.conflicts]
      : result;
  if (!Array.isArray(r) || r.length !== 3 || !r.every((n) => Number.isSafeInteger(n) && n >= 0)) {
    throw new AdapterBug(`${kind} returned ${stringify(result)}: expected [pushed, pulled, conflicts], non-negative integers`);
  }
  return r;
}

function checkDeclaration(capabilities, policies) {
  for (const [what, declared, allowed] of [
    ["capabilities", capabilities, CAPABILITY_VALUES],
    ["policies", policies, POLICY_VALUES],
  ]) {
    if (declared === null || typeof declared !== "object" || Array.isArray(declared)) {
      throw new AdapterBug(`${what} is ${stringify(declared)}: declare an object (static field or init's answer)`);
    }
    for (const [key, values] of Object.entries(allowed)) {
      if (!(key in declared) || !values.includes(declared[key])) {
        throw new AdapterBug(`${what}.${key} is ${stringify(declared[key])}: expected one of ${stringify(values)}`);
      }
    }
  }
  if (!["undefined", "boolean"].includes(typeof capabilities.reads)) {
    throw new AdapterBug(`capabilities.reads is ${stringify(capabilities.reads)}: expected true or false (optional)`);
  }
  const points = capabilities.crash_points;
  if (!Array.isArray(points) || !points.every((p) => CRASH_POINTS.includes(p))) {
    throw new AdapterBug(`capabilities.crash_points is ${stringify(points)}: expected a list of ${stringify(CRASH_POINTS)}`);
  }
  for (const [what, declared, allowed] of [
    ["capabilities", capabilities, VERSION_2_CAPABILITIES],
    ["policies", policies, VERSION_2_POLICIES],
  ]) {
    for (const [key, values] of Object.entries(allowed)) {
      if (!(key in declared) || values === null) continue;
      if (!values.includes(declared[key])) {
        throw new AdapterBug(`${what}.${key} is ${stringify(declared[key])}: expected one of ${stringify(values)} (optional)`);
      }
    }
  }
  const most = capabilities.replicas_max;
  if (most !== undefined && most !== null && !(Number.isSafeInteger(most) && most >= 1)) {
    throw new AdapterBug(`capabilities.replicas_max is ${stringify(most)}: expected an integer >= 1 or null (optional)`);
  }
}

function declaresVersion2(capabilities, policies) {
  return (
    Object.keys(VERSION_2_CAPABILITIES).some((k) => k in capabilities) ||
    Object.keys(VERSION_2_POLICIES).some((k) => k in policies) ||
    VERSION_2_NATURAL_KEYS.includes(policies.natural_keys) ||
    capabilities.outside_writes === "delegated"
  );
}

function field(msg, name, kind) {
  const value = msg[name];
  const ok =
    kind === "integer"
      ? isInteger(value)
      : kind === "array"
        ? Array.isArray(value)
        : kind === "object"
          ? value !== null && typeof value === "object" && !Array.isArray(value)
          : typeof value === kind;
  if (!ok) throw new Malformed(`${msg.type}: field "${name}" must be ${kind === "integer" ? "an integer" : `a ${kind}`}, got ${stringify(value)}`);
  return value;
}

function error(id, code, message) {
  return { type: "error", in_reply_to: id, code, message };
}

function internal(id, e, context) {
  process.stderr.write(`${e?.stack ?? String(e)}\n`);
  const last = e instanceof Error ? `${e.name}: ${e.message}` : String(e);
  return error(id, "internal", context ? `${context}: ${last}` : last);
}
