// The synced tables, as the application declares them (here: as syncgate's `init` sends them,
// PROTOCOL.md "schema"), and the few facts the store and the sync layer need about them: every
// table's columns, its natural key, the columns that refer to a parent, and the children of each
// table. Nothing here knows the table names.

/** Quotes an SQL identifier. */
export const q = (name) => `"${String(name).replaceAll('"', '""')}"`;

export class Schema {
  /** `declared` is `{tables: [{name, natural_key, columns: [{name, type, references}]}], ddl}`. */
  constructor(declared) {
    this.ddl = declared.ddl ?? [];
    this.tables = new Map();
    for (const t of declared.tables) {
      this.tables.set(t.name, {
        name: t.name,
        columns: t.columns.map((c) => c.name),
        key: t.natural_key ?? null,
        refs: t.columns.filter((c) => c.references).map((c) => ({ column: c.name, parent: c.references })),
        children: [],
      });
    }
    for (const t of this.tables.values()) {
      for (const { column, parent } of t.refs) this.table(parent).children.push({ table: t.name, column });
    }
    // Parents before children (references to a table itself left aside), so that a pull can
    // apply a batch of rows in an order where each row's parent is already there.
    this.order = [];
    const placed = new Set();
    const place = (name, seen = new Set()) => {
      if (placed.has(name) || seen.has(name)) return;
      seen.add(name);
      for (const { parent } of this.table(name).refs) if (parent !== name) place(parent, seen);
      placed.add(name);
      this.order.push(name);
    };
    for (const name of this.tables.keys()) place(name);
  }

  table(name) {
    const t = this.tables.get(name);
    if (t === undefined) throw new Error(`unknown table ${JSON.stringify(name)}`);
    return t;
  }

  has(name) {
    return this.tables.has(name);
  }
}

/** A value read with safe integers (BigInt) as the application wants it: a number where one
 * holds it exactly, a BigInt beyond 2^53. */
export function normalize(value) {
  if (typeof value === "bigint" && value >= BigInt(Number.MIN_SAFE_INTEGER) && value <= BigInt(Number.MAX_SAFE_INTEGER)) {
    return Number(value);
  }
  return value;
}

// Row images in the outbox are JSON; a BigInt is written as {"$int": "digits"} (no synced value
// is ever an object, so nothing else looks like it).
export function encodeRow(values) {
  return JSON.stringify(values, (_, v) => (typeof v === "bigint" ? { $int: v.toString() } : v));
}

export function decodeRow(text) {
  return JSON.parse(text, (_, v) => (v !== null && typeof v === "object" && typeof v.$int === "string" ? normalize(BigInt(v.$int)) : v));
}
