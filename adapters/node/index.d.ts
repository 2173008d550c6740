// Types of syncgate-adapter (index.js). Every Adapter method may be synchronous or async.

/** An integer the protocol carries exactly: a safe number, or a BigInt beyond 2^53. */
export type Int = number | bigint;
/** A synced column's value: NULL, an integer (a BigInt beyond 2^53), a real (a finite number),
 * text, or a blob (a Buffer; the protocol's {"blob": "<base64>"}, decoded by the helper). A
 * reference to an earlier insert of the same request arrives as {"ref": k}; resolveRefs
 * replaces it. */
export type Value = null | Int | number | string | Buffer;
export type Ref = { ref: number };

export type Op =
  | { op: "insert"; table: string; values: Record<string, Value | Ref> }
  | { op: "update"; table: string; id: Int; set: Record<string, Value | Ref> }
  | { op: "delete"; table: string; id: Int };

export type CrashPoint = "push_before_remote_commit" | "push_after_remote_commit" | "pull_before_local_commit";
export type RefusalClass =
  | "id_outside_replica"
  | "id_taken"
  | "id_deleted"
  | "natural_key_taken"
  | "parent_missing"
  | "row_not_found"
  | "key_immutable"
  | "busy"
  | "other";
export type SyncFailureClass = "busy" | "clock_drift" | "unavailable" | "login_refused" | "other";

export interface Capabilities {
  clock: boolean;
  crash_points: CrashPoint[];
  outside_writes: "captured" | "not_captured" | "delegated";
  outside_insert_ids: "engine" | "sqlite";
  profile: "reference" | null;
  reads?: boolean;
  /** Version 2. */
  push_pull?: "separate" | "together";
  replicas_max?: number | null;
  aborts?: boolean;
}

export interface Policies {
  merge: "column" | "row";
  delete: "delete_wins" | "update_wins";
  /** `local_only` and `unenforced`: version 2 (PROTOCOL.md, "Promises per constraint"). */
  natural_keys: "merge" | "refuse" | "local_only" | "unenforced";
  explicit_ids: boolean;
  /** Version 2. */
  push?: "explicit" | "on_commit";
  pending_after_sync?: "zero" | "resolutions";
  ids?: "stable" | "remote_map" | "renumbered";
  transactions?: "unit" | "atomic";
  consistency?: "eventual" | "causal";
  references?: "enforced" | "local_only" | "unenforced";
}

/** [pushed, pulled, conflicts], or the same as an object. */
export type SyncReport = [number, number, number] | { pushed: number; pulled: number; conflicts: number };
type Maybe<T> = T | Promise<T>;

export const PROTOCOLS: readonly number[];
export const CRASH_POINTS: readonly CrashPoint[];
export const REFUSAL_CLASSES: readonly RefusalClass[];
export const SYNC_FAILURE_CLASSES: readonly SyncFailureClass[];
export const CRASH_EXIT_CODE: number;
export const REQUEST_BYTES_MAX: number;
export const VERSION_2_CAPABILITIES: Readonly<Record<string, readonly unknown[] | null>>;
export const VERSION_2_POLICIES: Readonly<Record<string, readonly unknown[]>>;

/** A write refused as a whole: nothing of the transaction happened. */
export class Refused extends Error {
  constructor(cls: RefusalClass, message?: string);
  readonly cls: RefusalClass;
  readonly detail: string;
}
/** A push, pull or sync that failed and marked nothing synced. */
export class SyncFailed extends Error {
  constructor(cls: SyncFailureClass, message?: string);
  readonly cls: SyncFailureClass;
  readonly detail: string;
}
export class Malformed extends Error {}
export class Unsupported extends Error {}

export function log(...parts: unknown[]): void;
export function isInteger(x: unknown): x is Int;
export function resolveRefs(
  values: Record<string, Value | Ref>,
  inserted: Map<number, Int> | Record<number, Int>,
): Record<string, Value>;

export class Adapter {
  static engine: string;
  static capabilities: Capabilities | null;
  static policies: Policies | null;

  /** Set by the helper before init(). */
  replica: number;
  replicas: number;
  cache: string;
  remote: { kind: "sqlite"; path: string } | { kind: "postgres"; url: string; schema: string } | Record<string, unknown>;
  remotePath: string | undefined;
  createRemote: boolean;
  fresh: boolean;
  schema: { tables: Array<Record<string, unknown>>; ddl: string[] } & Record<string, unknown>;
  tables: Record<string, Record<string, unknown>>;
  ddl: string[];
  clockMs: Int;
  limits: Record<string, unknown>;
  protocols: number[];

  init(msg: Record<string, unknown>): Maybe<[Capabilities, Policies] | undefined | void>;
  write(ops: Op[]): Maybe<Int[]>;
  writeAborted(ops: Op[]): Maybe<Int[] | undefined | void>;
  push(): Maybe<SyncReport>;
  pull(): Maybe<SyncReport>;
  sync(): Maybe<SyncReport>;
  pending(): Maybe<Int>;
  setClock(ms: Int): Maybe<void>;
  mintId(table: string): Maybe<Int>;
  /** Version 2, outside_writes: "delegated": [changes, lastInsertRowid]. */
  execSql(sql: string, params: Value[]): Maybe<[Int, Int]>;
  read(table: string): Maybe<Array<[Int, Record<string, Value>]>>;
  /** Version 2, ids "renumbered": report a committed new id of a row during a request. */
  renumbered(table: string, from: Int, to: Int): void;
  /** Where your layer reaches crash point `name`: exits here with no reply if it is armed. */
  crashPoint(name: CrashPoint): void;
}

export interface ServeOptions {
  input?: NodeJS.ReadableStream;
  output?: NodeJS.WritableStream;
}
/** Serves one replica until `input` ends; resolves to the exit code. */
export function serve(adapter: new () => Adapter, options?: ServeOptions): Promise<number>;
/** Serves stdin/stdout and exits when stdin closes. */
export function run(adapter: new () => Adapter): Promise<never>;
