// JSON that keeps 64-bit integers: the protocol's ids and values are SQLite integers (up to
// 2^63 - 1), and a JavaScript number holds only 2^53 exactly. parse() returns an integer beyond
// Number.MAX_SAFE_INTEGER as a BigInt (and every other number as a number); stringify() writes
// a BigInt as its digits. Node 20's JSON.parse cannot do either.

/** Parses one JSON text; integers outside the safe range become BigInt. */
export function parse(text) {
  let at = 0;
  const fail = (what) => {
    throw new SyntaxError(`${what} at position ${at} of the JSON text`);
  };
  const space = () => {
    while (at < text.length && " \t\n\r".includes(text[at])) at += 1;
  };
  const literal = (word, value) => {
    if (text.startsWith(word, at)) {
      at += word.length;
      return value;
    }
    return fail(`unexpected ${JSON.stringify(text[at] ?? "end")}`);
  };
  const string = () => {
    const start = at;
    at += 1; // the opening quote
    let escaped = false;
    for (; at < text.length; at += 1) {
      const c = text[at];
      if (escaped) escaped = false;
      else if (c === "\\") escaped = true;
      else if (c === '"') {
        at += 1;
        return JSON.parse(text.slice(start, at));
      }
    }
    return fail("unterminated string");
  };
  const number = () => {
    const match = /^-?(0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)?/.exec(text.slice(at, at + 400));
    if (!match) return fail("bad number");
    at += match[0].length;
    if (match[2] === undefined && match[3] === undefined) {
      const n = Number(match[0]);
      return Number.isSafeInteger(n) ? n : BigInt(match[0]);
    }
    return Number(match[0]);
  };
  const value = () => {
    space();
    const c = text[at];
    if (c === "{") {
      at += 1;
      const out = {};
      space();
      if (text[at] === "}") {
        at += 1;
        return out;
      }
      for (;;) {
        space();
        if (text[at] !== '"') fail("expected a key");
        const key = string();
        space();
        if (text[at] !== ":") fail("expected ':'");
        at += 1;
        Object.defineProperty(out, key, { value: value(), enumerable: true, writable: true, configurable: true });
        space();
        if (text[at] === ",") at += 1;
        else if (text[at] === "}") {
          at += 1;
          return out;
        } else fail("expected ',' or '}'");
      }
    }
    if (c === "[") {
      at += 1;
      const out = [];
      space();
      if (text[at] === "]") {
        at += 1;
        return out;
      }
      for (;;) {
        out.push(value());
        space();
        if (text[at] === ",") at += 1;
        else if (text[at] === "]") {
          at += 1;
          return out;
        } else fail("expected ',' or ']'");
      }
    }
    if (c === '"') return string();
    if (c === "t") return literal("true", true);
    if (c === "f") return literal("false", false);
    if (c === "n") return literal("null", null);
    if (c === "-" || (c >= "0" && c <= "9")) return number();
    return fail(`unexpected ${JSON.stringify(c ?? "end")}`);
  };
  const out = value();
  space();
  if (at !== text.length) fail("text after the value");
  return out;
}

/** JSON.stringify (no spacing, no replacer) that writes BigInt values as integers. */
export function stringify(value) {
  if (typeof value === "bigint") return value.toString();
  if (value === null || typeof value !== "object") return JSON.stringify(value);
  if (typeof value.toJSON === "function") return stringify(value.toJSON());
  if (Array.isArray(value)) {
    return `[${value.map((v) => (v === undefined || typeof v === "function" ? "null" : stringify(v))).join(",")}]`;
  }
  const parts = [];
  for (const [k, v] of Object.entries(value)) {
    if (v === undefined || typeof v === "function" || typeof v === "symbol") continue;
    parts.push(`${JSON.stringify(k)}:${stringify(v)}`);
  }
  return `{${parts.join(",")}}`;
}
