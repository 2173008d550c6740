// The helper's behaviour, in process (serve() on in-memory streams) and as a process.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { Readable, Writable } from "node:stream";
import { fileURLToPath } from "node:url";
import test from "node:test";

import { Adapter, Refused, SyncFailed, resolveRefs, serve } from "../index.js";
import { parse, stringify } from "../json.js";

const TOY = fileURLToPath(new URL("../toy_adapter.js", import.meta.url));

const INIT = {
  type: "init",
  protocol: 1,
  replica: 0,
  replicas: 1,
  cache: "c.db",
  remote: { kind: "sqlite", path: "r.db" },
  create_remote: true,
  fresh: true,
  schema: { tables: [{ name: "hosts", columns: [] }], ddl: [] },
  clock_ms: 7,
};

/** Serves `requests` (objects, or raw lines as strings) and returns the parsed replies. */
async function session(AdapterClass, ...requests) {
  const lines = requests.map((r, i) => (typeof r === "string" ? r : stringify({ msg_id: i, ...r })) + "\n");
  let out = "";
  const output = new Writable({
    write(chunk, _, done) {
      out += chunk;
      done();
    },
  });
  assert.equal(await serve(AdapterClass, { input: Readable.from(lines), output }), 0);
  return out.split("\n").filter(Boolean).map(parse);
}

class Declared extends Adapter {
  static engine = "declared 1";
  static capabilities = {
    clock: false,
    crash_points: [],
    outside_writes: "not_captured",
    outside_insert_ids: "sqlite",
    profile: null,
  };
  static policies = { merge: "row", delete: "delete_wins", natural_keys: "refuse", explicit_ids: false };
}

function insert(table, values = { hostname: "h" }) {
  return { op: "insert", table, values };
}

test("a session: handshake, refs resolved, push, pending", async () => {
  class Writes extends Declared {
    init() {
      this.seen = [];
    }
    write(ops) {
      this.seen.push(ops);
      return ops.filter((op) => op.op === "insert").map((_, k) => 10 + k);
    }
    push() {
      return { pushed: 2, pulled: 0, conflicts: 0 };
    }
    pending() {
      return 0;
    }
  }
  const replies = await session(
    Writes,
    INIT,
    { type: "write", ops: [insert("domains"), insert("dns_records", { domain_id: { ref: 0 } })] },
    { type: "push" },
    { type: "pending" },
  );
  assert.deepEqual(replies[0], {
    type: "init_ok",
    in_reply_to: 0,
    protocol: 1,
    engine: "declared 1",
    capabilities: Declared.capabilities,
    policies: Declared.policies,
  });
  assert.deepEqual(replies[1], { type: "write_ok", in_reply_to: 1, ids: [10, 11] });
  assert.deepEqual(replies[2], { type: "sync_ok", in_reply_to: 2, pushed: 2, pulled: 0, conflicts: 0 });
  assert.deepEqual(replies[3], { type: "pending_ok", in_reply_to: 3, pending: 0 });
});

test("64-bit integers stay exact both ways", async () => {
  const big = 9223372036854775807n;
  class Echo extends Declared {
    write(ops) {
      assert.equal(ops[0].values.updated, big);
      return [ops[0].values.updated];
    }
  }
  const lines = [
    stringify({ msg_id: 0, ...INIT }),
    `{"msg_id":1,"type":"write","ops":[{"op":"insert","table":"domains","values":{"updated":9223372036854775807}}]}`,
  ];
  const replies = await session(Echo, ...lines);
  assert.equal(replies[1].ids[0], big);
  assert.equal(stringify(replies[1].ids), "[9223372036854775807]");
  assert.equal(parse("-9223372036854775808"), -9223372036854775808n);
  assert.equal(parse("9007199254740991"), 9007199254740991, "safe integers stay numbers");
});

test("blobs reach the adapter as Buffers and go back as base64; reals as numbers", async () => {
  const seen = [];
  class Values extends Declared {
    static capabilities = { ...Declared.capabilities, reads: true };
    write(ops) {
      seen.push(...ops);
      return [1];
    }
    read() {
      return [[1, { b: Buffer.from([0, 255]), r: 0.5, e: Buffer.alloc(0) }]];
    }
  }
  const lines = [
    stringify({ msg_id: 0, ...INIT }),
    `{"msg_id":1,"type":"write","ops":[{"op":"insert","table":"t","values":{"b":{"blob":"AP8="},"r":5e-324}},` +
      `{"op":"update","table":"t","id":1,"set":{"b":{"blob":""}}}]}`,
    `{"msg_id":2,"type":"read","table":"t"}`,
    `{"msg_id":3,"type":"write","ops":[{"op":"insert","table":"t","values":{"b":{"blob":"not base64!"}}}]}`,
  ];
  const replies = await session(Values, ...lines);
  assert.deepEqual(replies[1], { type: "write_ok", in_reply_to: 1, ids: [1] });
  assert.deepEqual([...seen[0].values.b], [0, 255]);
  assert.equal(seen[0].values.r, 5e-324);
  assert.equal(seen[1].set.b.length, 0);
  assert.deepEqual(replies[2].rows, [{ id: 1, values: { b: { blob: "AP8=" }, r: 0.5, e: { blob: "" } } }]);
  assert.equal(replies[3].code, "malformed");
  assert.match(replies[3].message, /base64/);
});

test("errors are answered and the process goes on serving", async () => {
  class Refuses extends Declared {
    write(ops) {
      if (ops[0].table === "locked") throw new Refused("busy", "the cache is locked");
      throw new Error("boom");
    }
    push() {
      throw new SyncFailed("unavailable", "no server");
    }
    pull() {
      throw new Refused("busy", "pull may not refuse");
    }
  }
  const replies = await session(
    Refuses,
    "not json",
    '{"type":"init"}',
    { type: "push" },
    INIT,
    INIT,
    { type: "nope" },
    { type: "write", ops: [insert("locked")] },
    { type: "write", ops: [insert("hosts")] },
    { type: "push" },
    { type: "pull" },
    { type: "set_clock", ms: 5 },
    { type: "arm_crash", point: "push_after_remote_commit" },
    { type: "write", ops: [{ op: "upsert", table: "hosts" }] },
  );
  const codes = replies.map((r) => r.code ?? r.type);
  assert.deepEqual(codes, [
    "malformed", // not JSON
    "malformed", // no msg_id
    "malformed", // before init
    "init_ok",
    "malformed", // init twice
    "unknown_type",
    "refused",
    "internal", // an exception of the adapter
    "sync_failed",
    "internal", // Refused from pull
    "unsupported", // set_clock without clock: true
    "unsupported", // an undeclared crash point
    "malformed", // an unknown op
  ]);
  assert.equal(replies[6].class, "busy");
  assert.match(replies[7].message, /Error: boom/);
  assert.deepEqual([replies[8].class, replies[8].message], ["unavailable", "no server"]);
  assert.match(replies[9].message, /Refused thrown by pull \(only write and exec_sql may refuse\)/);
});

test("a ref to an op that is not an earlier insert is malformed", async () => {
  class Refs extends Declared {
    write(ops) {
      const inserted = new Map();
      return ops.map((op, k) => {
        resolveRefs(op.values, inserted);
        inserted.set(k, 20 + k);
        return 20 + k;
      });
    }
  }
  const ok = await session(Refs, INIT, { type: "write", ops: [insert("hosts"), insert("hosts", { parent: { ref: 0 } })] });
  assert.deepEqual(ok[1].ids, [20, 21]);
  const replies = await session(Refs, INIT, { type: "write", ops: [insert("hosts", { parent: { ref: 0 } })] });
  assert.equal(replies[1].code, "malformed");
  assert.match(replies[1].message, /refers to op 0, which is not an earlier insert/);
});

test("wrong answers are the adapter's bugs", async () => {
  const cases = [
    [{ write: () => [1, 2] }, { type: "write", ops: [insert("hosts")] }, /write returned \[1,2\] for 1 insert/],
    [{ push: () => [1, -1, 0] }, { type: "push" }, /push returned \[1,-1,0\]/],
    [{ pending: () => "0" }, { type: "pending" }, /pending returned "0"/],
  ];
  for (const [methods, request, message] of cases) {
    class Wrong extends Declared {}
    Object.assign(Wrong.prototype, methods);
    const replies = await session(Wrong, INIT, request);
    assert.equal(replies[1].code, "internal");
    assert.match(replies[1].message, message);
  }
  class Bad extends Declared {
    static capabilities = { ...Declared.capabilities, clock: "yes" };
  }
  const [reply] = await session(Bad, INIT);
  assert.equal(reply.code, "internal");
  assert.match(reply.message, /capabilities.clock is "yes"/);
});

test("version 2: answered 2, aborted writes, renumbered ids", async () => {
  class V2 extends Declared {
    static capabilities = { ...Declared.capabilities, aborts: true };
    static policies = { ...Declared.policies, ids: "renumbered", push: "on_commit" };
    write(ops) {
      this.renumbered("hosts", -1, 5);
      return [5];
    }
    writeAborted(ops) {
      this.rolledBack = ops;
    }
    push() {
      this.renumbered("hosts", -2, 6);
      return [1, 0, 0];
    }
    pending() {
      this.renumbered("hosts", -3, 7);
      return 0;
    }
  }
  const replies = await session(
    V2,
    { ...INIT, protocols: [1, 2] },
    { type: "write", ops: [insert("hosts")] },
    { type: "write", abort: true, ops: [insert("hosts")] },
    { type: "push" },
    { type: "pending" },
    { type: "write", abort: "yes", ops: [] },
  );
  assert.equal(replies[0].protocol, 2);
  assert.deepEqual(replies[1].renumbered, [{ table: "hosts", from: -1, to: 5 }]);
  assert.deepEqual(replies[2], { type: "write_aborted", in_reply_to: 2 });
  assert.deepEqual(replies[3].renumbered, [{ table: "hosts", from: -2, to: 6 }]);
  assert.equal(replies[4].code, "internal");
  assert.match(replies[4].message, /while answering pending with pending_ok/);
  assert.equal(replies[5].code, "malformed");
  // Without the declarations: an abort is unsupported, a version 1 adapter answered 1.
  const v1 = await session(Declared, { ...INIT, protocols: [1, 2] }, { type: "write", abort: true, ops: [] });
  assert.equal(v1[0].protocol, 1);
  assert.equal(v1[1].code, "unsupported");
});

test("as a process: stray prints go to stderr, a crash point exits without a reply", () => {
  const requests = [
    { msg_id: 0, ...INIT },
    { msg_id: 1, type: "write", ops: [insert("hosts")] },
    { msg_id: 2, type: "read", table: "hosts" },
    { msg_id: 3, type: "arm_crash", point: "push_after_remote_commit" },
    { msg_id: 4, type: "push" },
    { msg_id: 5, type: "pending" },
  ];
  const out = spawnSync(process.execPath, [TOY], { input: requests.map((r) => `${stringify(r)}\n`).join("") });
  assert.equal(out.status, 3, out.stderr.toString());
  const replies = out.stdout.toString().split("\n").filter(Boolean).map(parse);
  assert.deepEqual(
    replies.map((r) => r.type),
    ["init_ok", "write_ok", "read_ok", "arm_crash_ok"],
    "no reply to the push that stopped at its crash point, nothing after it",
  );
  assert.deepEqual(replies[2].rows, [{ id: 1, values: { hostname: "h" } }]);
  assert.match(out.stderr.toString(), /a stray print: it must reach stderr/);
  assert.match(out.stderr.toString(), /stopping at crash point push_after_remote_commit/);
  // Without the crash: stdin closes, the process exits 0.
  const calm = spawnSync(process.execPath, [TOY], { input: `${stringify(requests[0])}\n` });
  assert.equal(calm.status, 0);
});
