"""A sync layer whose server assigns the ids: a local SQLite cache, a remote SQLite file or
PostgreSQL schema, an outbox, and push and pull by the server's change counter.

Two ways to live with ids the server hands out (``MODES``):

- ``map``: a row keeps the id the cache gave it (a SQLite rowid, never reused: AUTOINCREMENT)
  forever; ``sync_ids`` maps it to the server's id once the server has one.
- ``temp``: a new row gets a temporary negative id; when a push returns the server's id, the
  row is renumbered to it, with every reference to it and every outbox entry naming it, and
  the renumbering is reported. From then on the cache's id is the server's.

Cache: the synced tables, ``sync_outbox`` (one entry per row written: table, id, insert,
update or delete; the values are read from the row at push), ``sync_ids`` (map mode) and
``sync_state`` (the pull cursor, the next temporary id). Remote: the synced tables with
server-assigned ids and a ``sync_version`` column, ``sync_counter`` (the change counter),
``sync_tombstones`` (deleted rows), and, so that a push whose commit was never recorded here
(a crash, a lost answer) applies nothing twice, ``sync_clients`` (the last outbox seq applied
per replica) and ``sync_receipts`` (the server id each pushed insert got).

Policies: the whole row of the last push wins (merge "row"). A delete wins: a server row once
deleted is never written again, and a pull never brings back a row deleted here. Two rows
inserted apart with the same natural key are one row, the server's: an insert whose key the
server holds becomes an update of that row, and a pull that brings a row whose key a local
row not yet pushed holds binds that row to it.

``BUG(local_id_drift)`` marks the planted bug (README.md).
"""

import logging
import sqlite3
from contextlib import contextmanager

log = logging.getLogger("server_ids")

MODES = ("map", "temp")
BUGS = ("local_id_drift",)

# The gate holds locks for several steps: waiting does not help, so give up at once.
BUSY_TIMEOUT_S = 0.01
PG_LOCK_TIMEOUT = "100ms"
PG_CONNECT_TIMEOUT_S = 5
# A push or pull whose remote connection turned out dead is tried once more on a new one.
REMOTE_ATTEMPTS_MAX = 2


class SyncError(Exception):
    """A push or pull that failed and marked nothing synced; ``kind`` is a protocol class."""

    def __init__(self, kind, message):
        super().__init__(message)
        self.kind = kind


class WriteRefused(Exception):
    """A local transaction refused as a whole; ``kind`` is a protocol refusal class."""

    def __init__(self, kind, message):
        super().__init__(message)
        self.kind = kind


class Schema:
    """The synced tables as the gate declares them, parents before children."""

    def __init__(self, tables):
        self.columns = {t["name"]: [c["name"] for c in t["columns"]] for t in tables}
        self.types = {t["name"]: {c["name"]: c["type"] for c in t["columns"]} for t in tables}
        self.refs = {t["name"]: {c["name"]: c["references"] for c in t["columns"] if c.get("references")}
                     for t in tables}
        self.key = {t["name"]: t.get("natural_key") for t in tables}
        self.children = {p: [(t, c) for t in self.refs for c, q in self.refs[t].items() if q == p] for p in self.refs}
        self.order = []
        while len(self.order) < len(self.refs):
            ready = [t for t in self.refs if t not in self.order and set(self.refs[t].values()) <= set(self.order)]
            assert ready, f"reference cycle among {self.refs}"
            self.order += ready

    def ddl(self, id_column, integer, extra=()):
        """CREATE TABLE statements for the synced tables, parents first."""
        out = []
        for t in self.order:
            cols = [id_column]
            for c in self.columns[t]:
                col = f'"{c}" {integer if self.types[t][c] == "integer" else "TEXT"}'
                col += " UNIQUE" if self.key[t] == c else ""
                if c in self.refs[t]:
                    col += f' REFERENCES "{self.refs[t][c]}"("id") ON DELETE CASCADE'
                cols.append(col)
            out.append(f'CREATE TABLE IF NOT EXISTS "{t}" ({", ".join([*cols, *extra])})')
        return out


def names(columns):
    return ", ".join(f'"{c}"' for c in columns)


# -- the remote -----------------------------------------------------------------------------------

REMOTE_BOOKKEEPING = [
    "CREATE TABLE sync_counter (one INTEGER PRIMARY KEY CHECK (one = 1), version BIGINT NOT NULL)",
    "INSERT INTO sync_counter VALUES (1, 0)",
    "CREATE TABLE sync_tombstones (tbl TEXT, id BIGINT, sync_version BIGINT NOT NULL, PRIMARY KEY (tbl, id))",
    "CREATE TABLE sync_clients (origin BIGINT PRIMARY KEY, acked BIGINT NOT NULL)",
    "CREATE TABLE sync_receipts (origin BIGINT, seq BIGINT, tbl TEXT NOT NULL, id BIGINT NOT NULL, "
    "PRIMARY KEY (origin, seq))",
]


class SqliteRemote:
    """A remote SQLite file (rollback journal, as on a share). Statements use ``?``."""

    def __init__(self, path):
        self.path, self.db = path, None

    def create(self, schema):
        # AUTOINCREMENT: the server never hands out a deleted row's id again.
        tables = schema.ddl('"id" INTEGER PRIMARY KEY AUTOINCREMENT', "INTEGER",
                            ['"sync_version" INTEGER NOT NULL DEFAULT 0'])
        self._conn().executescript(";\n".join(["BEGIN", *tables, *REMOTE_BOOKKEEPING, "COMMIT"]))

    def _conn(self):
        if self.db is None:
            self.db = sqlite3.connect(self.path, isolation_level=None, timeout=BUSY_TIMEOUT_S)
            self.db.execute("PRAGMA foreign_keys = ON")
        return self.db

    def begin(self, write):
        self._conn().execute("BEGIN IMMEDIATE" if write else "BEGIN")

    def execute(self, sql, params=()):
        return self.db.execute(sql, params)

    def commit(self):
        self.db.execute("COMMIT")

    def rollback(self):
        if self.db is not None and self.db.in_transaction:
            self.db.execute("ROLLBACK")

    def classify(self, e):
        """(protocol class, whether a new connection may help) of a remote error, or None."""
        if isinstance(e, sqlite3.Error):
            return ("busy" if "locked" in str(e) else "other"), False
        return None


class PgRemote:
    """A schema on a PostgreSQL server; ids come from identity columns. Statements use ``?``."""

    def __init__(self, url, schema_name):
        import psycopg

        self.pg, self.url, self.schema_name, self.conn = psycopg, url, schema_name, None

    def create(self, schema):
        conn = self._conn()
        conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{self.schema_name}"')
        tables = schema.ddl('"id" BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY', "BIGINT",
                            ['"sync_version" BIGINT NOT NULL DEFAULT 0'])
        for sql in tables + REMOTE_BOOKKEEPING:
            conn.execute(sql)
        conn.commit()

    def _conn(self):
        if self.conn is None or self.conn.broken:
            self.conn = None
            conn = self.pg.connect(self.url, autocommit=False, connect_timeout=PG_CONNECT_TIMEOUT_S)
            conn.execute(f'SET search_path TO "{self.schema_name}"')
            conn.execute(f"SET lock_timeout = '{PG_LOCK_TIMEOUT}'")
            conn.commit()
            self.conn = conn
        return self.conn

    def begin(self, write):
        # A pull reads every table in one snapshot. A push runs READ COMMITTED behind the
        # counter's row lock, so it sees every push committed before it.
        conn = self._conn()
        if not write:
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")

    def execute(self, sql, params=()):
        return self.conn.execute(sql.replace("?", "%s"), params)

    def commit(self):
        self.conn.commit()

    def rollback(self):
        if self.conn is not None and not self.conn.broken:
            self.conn.rollback()

    def classify(self, e):
        """(protocol class, whether a new connection may help) of a remote error, or None."""
        errors = self.pg.errors
        if isinstance(e, (errors.LockNotAvailable, errors.QueryCanceled, errors.DeadlockDetected,
                          errors.SerializationFailure)):
            return "busy", False
        if isinstance(e, self.pg.OperationalError):
            state, text = getattr(e, "sqlstate", None), str(e)
            if state in ("28000", "28P01", "3D000") or "authentication" in text or "does not exist" in text:
                return "login_refused", False
            return "unavailable", True  # dropped, or the server is starting up
        if isinstance(e, self.pg.Error):
            return "other", False
        return None


# -- the replica ----------------------------------------------------------------------------------

CACHE_BOOKKEEPING = [
    # AUTOINCREMENT: a seq is never reused, since the server keeps the last one it applied.
    "CREATE TABLE sync_outbox (seq INTEGER PRIMARY KEY AUTOINCREMENT, tbl TEXT NOT NULL, "
    "row_id INTEGER NOT NULL, op TEXT NOT NULL)",
    "CREATE INDEX sync_outbox_row ON sync_outbox (tbl, row_id)",
    "CREATE TABLE sync_ids (tbl TEXT, local_id INTEGER, server_id INTEGER NOT NULL, "
    "PRIMARY KEY (tbl, local_id), UNIQUE (tbl, server_id))",
    "CREATE TABLE sync_state (key TEXT PRIMARY KEY, value INTEGER NOT NULL)",
]


class Replica:
    """One replica: its cache file, and the remote it syncs with (a ``SqliteRemote`` or
    ``PgRemote``). ``origin`` names this replica on the remote (its device id)."""

    def __init__(self, cache, remote, schema, origin, fresh, mode="map", bugs=(), crash_point=lambda name: None):
        assert mode in MODES and set(bugs) <= set(BUGS), (mode, bugs)
        self.remote, self.schema, self.origin, self.mode = remote, schema, origin, mode
        self.drift = "local_id_drift" in bugs
        self.crash_point = crash_point
        self.db = sqlite3.connect(cache, isolation_level=None, timeout=BUSY_TIMEOUT_S)
        self.db.execute("PRAGMA foreign_keys = ON")
        if fresh:  # a restart only reads until asked to write: the gate may hold the cache's lock
            self.db.execute("PRAGMA journal_mode = WAL")
            # AUTOINCREMENT: a rowid is never reused (a row under a deleted row's id would
            # inherit its server id).
            tables = schema.ddl('"id" INTEGER PRIMARY KEY AUTOINCREMENT', "INTEGER")
            self.db.executescript(";\n".join(["BEGIN", *tables, *CACHE_BOOKKEEPING, "COMMIT"]))
        self.renumbered = []  # temp mode: (table, from, to) committed, until the caller takes them
        self._moved = []  # the same, in the transaction under way

    # -- the application's writes -----------------------------------------------------------

    @contextmanager
    def transaction(self):
        """One local transaction of the application: ``insert``, ``update``, ``delete``."""
        try:
            with self._local(WriteRefused):
                yield self
        except sqlite3.Error as e:
            text = str(e)
            kind = ("busy" if "locked" in text else "natural_key_taken" if "UNIQUE" in text
                    else "parent_missing" if "FOREIGN KEY" in text else "other")
            raise WriteRefused(kind, f"cache: {text}") from None

    def insert(self, t, values):
        self._check(t, values)
        row_id = None  # map mode: SQLite's next rowid
        if self.mode == "temp":
            row_id = self._state("next_temp_id", -1)
            self._set_state("next_temp_id", row_id - 1)
        columns = list(values)
        cur = self.db.execute(f'INSERT INTO "{t}" ("id", {names(columns)}) VALUES (?{", ?" * len(columns)})',
                              (row_id, *values.values()))
        self._record(t, cur.lastrowid, "insert")
        return cur.lastrowid

    def update(self, t, row_id, values):
        self._check(t, values)
        if self.schema.key[t] in values or set(values) & set(self.schema.refs[t]):
            raise WriteRefused("key_immutable", "natural keys and references are never updated")
        sets = ", ".join(f'"{c}" = ?' for c in values)
        if not self.db.execute(f'UPDATE "{t}" SET {sets} WHERE id = ?', (*values.values(), row_id)).rowcount:
            raise WriteRefused("row_not_found", f"{t}/{row_id} is not in the cache")
        self._record(t, row_id, "update")

    def delete(self, t, row_id):
        self._check(t, {})
        if not self.db.execute(f'DELETE FROM "{t}" WHERE id = ?', (row_id,)).rowcount:  # children cascade
            raise WriteRefused("row_not_found", f"{t}/{row_id} is not in the cache")
        self._record(t, row_id, "delete")

    def _check(self, t, values):
        assert self.db.in_transaction, "writes go through transaction()"
        if t not in self.schema.columns or not set(values) <= set(self.schema.columns[t]):
            raise WriteRefused("other", f"no table {t!r} with columns {sorted(values)}")

    def _record(self, t, row_id, op):
        self.db.execute("INSERT INTO sync_outbox (tbl, row_id, op) VALUES (?, ?, ?)", (t, row_id, op))

    def pending(self):
        return self.db.execute("SELECT count(*) FROM sync_outbox").fetchone()[0]

    # -- push ---------------------------------------------------------------------------------

    def push(self):
        """Returns (pushed, conflicts): entries applied, entries that lost to a delete."""
        return self._with_remote(self._push)

    def _push(self):
        first = self.db.execute("SELECT min(seq) FROM sync_outbox").fetchone()[0]
        if first is None:
            return 0, 0
        with self._local(SyncError):
            self.remote.begin(write=True)
            # 1. Take the counter's row lock: pushes commit in the order of their versions.
            version = self.remote.execute("UPDATE sync_counter SET version = version + 1 RETURNING version").fetchone()[0]
            # 2. Recover what a push the server applied, but this cache never recorded, did.
            self._recover()
            # 3. Plan: every entry with its row's values as they are now (None: deleted since).
            plan = [(seq, t, row_id, op, self._row(t, row_id))
                    for seq, t, row_id, op in self.db.execute("SELECT * FROM sync_outbox ORDER BY seq").fetchall()]
            # 4. Apply, in outbox order (a parent's insert before its children's).
            assigned, pushed = {}, 0
            for seq, t, row_id, op, values in plan:
                pushed += self._apply(seq, t, row_id, op, values, version, assigned)
            if plan:
                self.remote.execute("INSERT INTO sync_clients (origin, acked) VALUES (?, ?) ON CONFLICT (origin) "
                                    "DO UPDATE SET acked = excluded.acked", (self.origin, plan[-1][0]))
            # Receipts of entries this cache had dropped for good before this push.
            self.remote.execute("DELETE FROM sync_receipts WHERE origin = ? AND seq < ?", (self.origin, first))
            self.crash_point("push_before_remote_commit")
            self.remote.commit()
            self.crash_point("push_after_remote_commit")
            # 5. Acknowledge: the cache commits the ids bound above with the outbox emptied.
            self.db.execute("DELETE FROM sync_outbox")
        log.info("pushed %d of %d entries (the rest lost to deletes)", pushed, len(plan))
        return pushed, len(plan) - pushed

    def _apply(self, seq, t, row_id, op, values, version, assigned):
        """Applies one outbox entry on the remote; False when it lost to a delete."""
        sid = assigned.get((t, row_id)) or self._server_id(t, row_id)
        if op == "delete":
            if sid is not None and self.remote.execute(f'DELETE FROM "{t}" WHERE id = ?', (sid,)).rowcount:
                self.remote.execute("INSERT INTO sync_tombstones VALUES (?, ?, ?)", (t, sid, version))
            return True  # children cascade; a row the server never had is gone already
        if values is None:
            return True  # deleted here since: its delete is further on, or a pull deleted it
        for c, parent in self.schema.refs[t].items():
            if values[c] is not None:
                # BUG(local_id_drift): the reference goes out as the parent's local id.
                psid = values[c] if self.drift else assigned.get((parent, values[c])) or self._server_id(parent, values[c])
                if psid is None or not self.remote.execute(f'SELECT 1 FROM "{parent}" WHERE id = ?', (psid,)).fetchone():
                    return False  # the parent was deleted on the server: the delete wins
                values[c] = psid
        key, bound = self.schema.key[t], sid is not None
        if op == "insert" and not bound and key and values[key] is not None:
            found = self.remote.execute(f'SELECT id FROM "{t}" WHERE "{key}" = ?', (values[key],)).fetchone()
            sid = found[0] if found else None  # inserted apart with the same key: that row is this one
        if op == "insert" and sid is None:
            columns = self.schema.columns[t]
            sid = self.remote.execute(
                f'INSERT INTO "{t}" ({names(columns)}, "sync_version") VALUES ({"?, " * len(columns)}?) RETURNING id',
                (*(values[c] for c in columns), version)).fetchone()[0]
        elif sid is None:
            return False  # its insert never reached the server (it lost to its parent's delete)
        else:
            if op == "update" and self.drift:
                sid = row_id  # BUG(local_id_drift): the update goes out with the row's local id
            columns = [c for c in self.schema.columns[t] if c != key]
            sets = ", ".join(f'"{c}" = ?' for c in columns)
            if not self.remote.execute(f'UPDATE "{t}" SET {sets}, "sync_version" = ? WHERE id = ?',
                                       (*(values[c] for c in columns), version, sid)).rowcount:
                return False  # deleted on the server: the delete wins
        if op == "insert" and not bound:
            assigned[(t, row_id)] = sid
            self.remote.execute("INSERT INTO sync_receipts VALUES (?, ?, ?, ?)", (self.origin, seq, t, sid))
            self._bind(t, row_id, sid)
        return True

    def _recover(self):
        """Drops the outbox entries the server applied already (a push whose commit this cache
        never recorded: a crash, a lost answer), binding the ids their inserts got."""
        found = self.remote.execute("SELECT acked FROM sync_clients WHERE origin = ?", (self.origin,)).fetchone()
        acked = found[0] if found else 0
        for seq, t, sid in self.remote.execute("SELECT seq, tbl, id FROM sync_receipts WHERE origin = ? AND seq <= ?",
                                               (self.origin, acked)).fetchall():
            entry = self.db.execute("SELECT row_id FROM sync_outbox WHERE seq = ?", (seq,)).fetchone()
            if entry is not None and self._server_id(t, entry[0]) is None:
                self._bind(t, entry[0], sid)
        self.db.execute("DELETE FROM sync_outbox WHERE seq <= ?", (acked,))

    # -- pull ---------------------------------------------------------------------------------

    def pull(self):
        """Returns (pulled, conflicts): rows applied, server rows this cache kept its own for."""
        return self._with_remote(self._pull)

    def _pull(self):
        with self._local(SyncError):
            cursor = self._state("cursor", 0)
            # 1. Read, in one snapshot: the counter, what a push never recorded here did, and
            #    every change after the cursor.
            self.remote.begin(write=False)
            version = self.remote.execute("SELECT version FROM sync_counter").fetchone()[0]
            self._recover()
            tombstones = self.remote.execute("SELECT tbl, id FROM sync_tombstones WHERE sync_version > ?",
                                             (cursor,)).fetchall()
            changed = {t: self.remote.execute(f'SELECT id, {names(self.schema.columns[t])} FROM "{t}" '
                                              "WHERE sync_version > ? ORDER BY id", (cursor,)).fetchall()
                       for t in self.schema.order}
            self.remote.commit()
            pulled = conflicts = 0
            # 2. Deletes win: a row deleted on the server goes here too (its children cascade).
            for t, sid in tombstones:
                lid = self._local_id(t, sid)
                if lid is not None and self.db.execute(f'DELETE FROM "{t}" WHERE id = ?', (lid,)).rowcount:
                    pulled += 1
            # 3. Rows, parents first.
            for t in self.schema.order:
                for sid, *cells in changed[t]:
                    applied = self._apply_pulled(t, sid, dict(zip(self.schema.columns[t], cells)))
                    pulled, conflicts = pulled + applied, conflicts + (not applied)
            self._set_state("cursor", version)
            self.crash_point("pull_before_local_commit")
        return pulled, conflicts

    def _apply_pulled(self, t, sid, values):
        """Applies one server row; False when this cache keeps its own (written or deleted here)."""
        for c, parent in self.schema.refs[t].items():
            if values[c] is not None:
                lid = self._local_id(parent, values[c])
                assert lid is not None, f"{t}/{sid}: its parent {parent}/{values[c]} was never pulled"
                if self._row(parent, lid) is None:
                    return False  # the parent was deleted here: that delete is pending
                values[c] = lid
        lid, key = self._local_id(t, sid), self.schema.key[t]
        if lid is None and key and values[key] is not None:
            holder = self.db.execute(f'SELECT id FROM "{t}" WHERE "{key}" = ?', (values[key],)).fetchone()
            if holder is not None:  # inserted here with the same key, not pushed yet: this row
                assert self._server_id(t, holder[0]) is None, f"{t}/{holder[0]}: {values[key]!r} on two server rows"
                self._bind(t, holder[0], sid)
                lid = self._local_id(t, sid)
        if lid is None:
            columns = self.schema.columns[t]
            cur = self.db.execute(f'INSERT INTO "{t}" ("id", {names(columns)}) VALUES (?{", ?" * len(columns)})',
                                  (sid if self.mode == "temp" else None, *values.values()))
            if self.mode == "map":
                self._bind(t, cur.lastrowid, sid)
            return True
        if self._row(t, lid) is None or self.db.execute(
                "SELECT 1 FROM sync_outbox WHERE tbl = ? AND row_id = ?", (t, lid)).fetchone():
            return False  # deleted here (pending), or written here: ours goes to the server next
        sets = ", ".join(f'"{c}" = ?' for c in values)
        self.db.execute(f'UPDATE "{t}" SET {sets} WHERE id = ?', (*values.values(), lid))
        return True

    # -- ids ----------------------------------------------------------------------------------

    def _server_id(self, t, lid):
        """The server's id of local row ``lid``; None while the server has none."""
        if self.mode == "temp":
            return lid if lid > 0 else None
        found = self.db.execute("SELECT server_id FROM sync_ids WHERE tbl = ? AND local_id = ?", (t, lid)).fetchone()
        return found[0] if found else None

    def _local_id(self, t, sid):
        """The local id that names server row ``sid`` (or named it, before a delete here that
        is still pending); None if this cache never had it."""
        if self.mode == "temp":
            known = self._row(t, sid) is not None or self.db.execute(
                "SELECT 1 FROM sync_outbox WHERE tbl = ? AND row_id = ?", (t, sid)).fetchone()
            return sid if known else None
        found = self.db.execute("SELECT local_id FROM sync_ids WHERE tbl = ? AND server_id = ?", (t, sid)).fetchone()
        return found[0] if found else None

    def _bind(self, t, lid, sid):
        """Local row ``lid`` (perhaps deleted here since) is server row ``sid`` from now on."""
        if self.mode == "map":
            self.db.execute("INSERT INTO sync_ids (tbl, local_id, server_id) VALUES (?, ?, ?)", (t, lid, sid))
            return
        assert lid < 0 < sid, f"{t}: renumbering {lid} to {sid}"
        self.db.execute("PRAGMA defer_foreign_keys = ON")  # the children move in this transaction
        moved = self.db.execute(f'UPDATE "{t}" SET id = ? WHERE id = ?', (sid, lid)).rowcount
        for child, column in self.schema.children[t]:
            self.db.execute(f'UPDATE "{child}" SET "{column}" = ? WHERE "{column}" = ?', (sid, lid))
        self.db.execute("UPDATE sync_outbox SET row_id = ? WHERE tbl = ? AND row_id = ?", (sid, t, lid))
        if moved:
            self._moved.append((t, lid, sid))

    # -- plumbing -----------------------------------------------------------------------------

    def _row(self, t, lid):
        found = self.db.execute(f'SELECT {names(self.schema.columns[t])} FROM "{t}" WHERE id = ?', (lid,)).fetchone()
        return None if found is None else dict(zip(self.schema.columns[t], found))

    def _state(self, key, default):
        found = self.db.execute("SELECT value FROM sync_state WHERE key = ?", (key,)).fetchone()
        return found[0] if found else default

    def _set_state(self, key, value):
        self.db.execute("INSERT OR REPLACE INTO sync_state (key, value) VALUES (?, ?)", (key, value))

    @contextmanager
    def _local(self, failure):
        """``BEGIN IMMEDIATE`` on the cache (a locked cache raises ``failure("busy")``); commits
        at the end, rolls back on any error, a failed COMMIT included: no lock left behind."""
        try:
            self.db.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as e:
            raise failure("busy" if "locked" in str(e) else "other", f"cache: {e}") from None
        self._moved = []
        try:
            yield
            self.db.execute("COMMIT")
        except BaseException:
            if self.db.in_transaction:
                self.db.execute("ROLLBACK")
            raise
        self.renumbered += self._moved

    def _with_remote(self, step):
        """Runs a push or pull; after a dropped connection, once more on a new one."""
        for attempt in range(1, REMOTE_ATTEMPTS_MAX + 1):
            try:
                return step()
            except SyncError:
                self._rollback_remote()
                raise
            except Exception as e:
                self._rollback_remote()
                known = self.remote.classify(e)
                if known is None and isinstance(e, sqlite3.Error):
                    known = ("busy" if "locked" in str(e) else "other"), False
                if known is None:
                    raise  # a bug: the adapter reports it as such
                kind, retry = known
                message = (str(e).strip() or type(e).__name__).splitlines()[0]
                if not retry or attempt == REMOTE_ATTEMPTS_MAX:
                    raise SyncError(kind, message) from None
                log.info("remote connection lost (%s); once more on a new one", message)

    def _rollback_remote(self):
        try:
            self.remote.rollback()
        except Exception as e:  # the connection is gone: so is its transaction
            log.info("remote rollback: %s", e)
