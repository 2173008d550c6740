"""wtsync: a write-through ("sync on save") layer between the app's SQLite cache and a remote.

The remote is a SQLite file or a PostgreSQL schema. Each unit of work the application commits
is pushed to the remote in the same unit of work, by an ``after_commit`` hook, right after the
local commit. Where such hooks usually go wrong, this one does not:

- **Capture inside the transaction.** An ``after_flush`` hook writes each change the flush made
  (table, id, op, the row's values, a stamp) into the outbox, ``sync_outbox``, on the flush's
  own connection: the outbox commits with the app's rows, or rolls back with them.
- **Pending until acknowledged.** An outbox entry is removed only by a local transaction after
  the remote transaction that applied it committed. A push that fails (the remote is locked or
  unreachable) leaves the outbox as it was: the next write, push or sync sends it again, and a
  re-push applies nothing twice.

Push (``SyncLayer.push``), also run by ``after_commit``:
  1. read the outbox (every pending entry, in commit order);
  2. apply it on the remote in one remote transaction (``apply_on_remote``): each entry wins or
     loses against what the remote holds, and each applied one is appended to the remote's
     change feed, ``sync_feed``;
  3. acknowledge: delete those entries from the outbox.
Pull (``SyncLayer.pull``):
  1. fetch the feed after this replica's cursor, and the current remote row each entry names;
  2. apply them to the cache and move the cursor, in one local transaction (``apply_locally``).

The rules:
- **Stamps** are Lamport clocks: a write's tick is one more than the highest stamp this replica
  has made or pulled, packed as ``tick * STAMP_REPLICAS + replica`` so that no two replicas
  make the same stamp. A write made after pulling another is stamped later.
- **Merge: "row".** The write with the larger stamp wins, and the whole row it left wins.
- **Deletes win.** A row deleted on the remote stays deleted: a later insert or update of it
  loses, and so does a child inserted under a deleted parent. A replica never applies a pulled
  write to a row it deleted (each row's stamp outlives it in ``sync_stamps``).
- **Natural keys merge.** Two replicas that insert the same ``domains.name`` apart mean one
  domain. The row that reached the remote first survives and keeps its id; the other id becomes
  its alias (``sync_aliases``, on the remote and in the cache), and every write addressed to it,
  and every reference to it, applies to the survivor. A push meets the key on the remote and
  merges there (a ``merge`` feed entry tells the replicas); a pull that brings a row whose key a
  local row holds merges here. The newer of the two rows (by stamp) is the survivor's.

The planted bugs (``WRITE_THROUGH_BUGS``, README.md) are marked ``BUG(name)``.
"""

import json
import logging
import re
import shutil
import sqlite3
import tempfile
from contextlib import contextmanager

import psycopg
from sqlalchemy import bindparam, create_engine, event, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.pool import QueuePool
from sqlalchemy.schema import CreateTable

import app as application
from app import COLUMNS, NATURAL_KEYS, REFERENCES, SqliteFile

log = logging.getLogger("wtsync")

BUGS = ("swallow_push_failure", "leaky_rollback")
STAMP_REPLICAS = 1024
# PostgreSQL: how long a statement waits for a lock (the harness holds table locks over several
# steps, so a longer wait only delays "busy") and runs at most.
PG_LOCK_TIMEOUT_MS = 500
PG_STATEMENT_TIMEOUT_MS = 5000
PG_CONNECT_TIMEOUT_S = 5

LOCAL_DDL = [
    "CREATE TABLE IF NOT EXISTS sync_outbox (seq INTEGER PRIMARY KEY AUTOINCREMENT, tbl TEXT NOT NULL, "
    "row_id INTEGER NOT NULL, op TEXT NOT NULL, payload TEXT, stamp INTEGER NOT NULL)",
    "CREATE TABLE IF NOT EXISTS sync_state (key TEXT PRIMARY KEY, value INTEGER NOT NULL)",
]
# Both sides: each row's stamp (kept after the row is deleted), and merged-away ids.
SHARED_DDL = [
    "CREATE TABLE IF NOT EXISTS sync_stamps (tbl TEXT, row_id {int}, stamp {int} NOT NULL, PRIMARY KEY (tbl, row_id))",
    "CREATE TABLE IF NOT EXISTS sync_aliases (tbl TEXT, merged_id {int}, survivor_id {int} NOT NULL, "
    "PRIMARY KEY (tbl, merged_id))",
]
REMOTE_DDL = [
    "CREATE TABLE IF NOT EXISTS sync_feed (seq {seq}, tbl TEXT NOT NULL, row_id {int} NOT NULL, op TEXT NOT NULL, "
    "stamp {int} NOT NULL, origin {int} NOT NULL, survivor {int})",
    *SHARED_DDL,
]
SQLITE_TYPES = {"int": "INTEGER", "seq": "INTEGER PRIMARY KEY AUTOINCREMENT"}
PG_TYPES = {"int": "BIGINT", "seq": "BIGSERIAL PRIMARY KEY"}


def enabled_bugs(spec):
    """``"none"`` (the default: a correct layer), ``"all"``, or a comma-separated list."""
    spec = (spec or "none").strip()
    names = set(BUGS) if spec == "all" else set() if spec == "none" else {n.strip() for n in spec.split(",")}
    unknown = names - set(BUGS) - {""}
    if unknown:
        raise ValueError(f"WRITE_THROUGH_BUGS: unknown bug(s) {sorted(unknown)}; known: {', '.join(BUGS)}")
    return frozenset(names - {""})


class SyncError(Exception):
    """A push or pull that failed and marked nothing synced; ``kind`` is a failure class of
    PROTOCOL.md (``busy``, ``unavailable``, ``login_refused``, ``other``)."""

    def __init__(self, kind, message):
        super().__init__(message)
        self.kind = kind


# -- the remote ---------------------------------------------------------------------------------

REMOTE_SQLITE = SqliteFile()  # one engine for the process, warmed in the fork server


class Remote:
    """Where the replicas meet: an engine, and what differs between SQLite and PostgreSQL."""

    def __init__(self, engine, types, serialize_pushes):
        self.engine = engine
        self.types = types
        self.serialize_pushes = serialize_pushes  # a statement, or None

    @classmethod
    def open(cls, where, create, schema):
        """``where`` and ``schema`` are the ``remote`` and ``schema`` of the harness's ``init``;
        with ``create``, the remote's tables are made (the synced ones and the feed's)."""
        if where.get("kind") == "sqlite":
            remote = cls(REMOTE_SQLITE.open(where["path"]), SQLITE_TYPES, None)
            synced = lambda: schema["ddl"]  # noqa: E731 (the harness's DDL, SQLite's)
        elif where.get("kind") == "postgres":
            name = where["schema"]
            if not re.fullmatch(r"[a-z_][a-z0-9_]*", name):
                raise ValueError(f"unexpected schema name {name!r}")
            options = f"-c search_path={name} -c lock_timeout={PG_LOCK_TIMEOUT_MS}"
            options += f" -c statement_timeout={PG_STATEMENT_TIMEOUT_MS}"
            engine = create_engine(
                where["url"].replace("postgresql://", "postgresql+psycopg://", 1),
                poolclass=QueuePool,
                pool_pre_ping=True,  # a session the server (or the network) closed is replaced
                connect_args={"options": options, "connect_timeout": PG_CONNECT_TIMEOUT_S},
            )
            # Feed seqs must be taken in commit order, or a pull could pass over one still
            # uncommitted: one push at a time (readers go on).
            remote = cls(engine, PG_TYPES, text("LOCK TABLE sync_feed IN SHARE ROW EXCLUSIVE MODE"))
            synced = lambda: [f'CREATE SCHEMA IF NOT EXISTS "{name}"', *_postgres_ddl(schema)]  # noqa: E731
        else:
            raise ValueError(f"remote kind {where.get('kind')!r} is not supported (sqlite, postgres)")
        if create:
            with remote.engine.begin() as db:
                for statement in [*synced(), *(s.format(**remote.types) for s in REMOTE_DDL)]:
                    db.exec_driver_sql(statement)
        return remote


def _postgres_ddl(schema):
    """The synced tables on PostgreSQL, from the harness's schema: ids and integers are 64-bit."""
    out = []
    for table in schema["tables"]:
        parts = ['"id" BIGINT PRIMARY KEY']
        for column in table["columns"]:
            part = f'"{column["name"]}" {"BIGINT" if column["type"] == "integer" else "TEXT"}'
            if column["name"] == table.get("natural_key"):
                part += " UNIQUE"
            if column.get("references"):
                part += f' REFERENCES "{column["references"]}" ("id") ON DELETE CASCADE'
            parts.append(part)
        out.append(f'CREATE TABLE IF NOT EXISTS "{table["name"]}" ({", ".join(parts)})')
    return out


# -- the sync layer -----------------------------------------------------------------------------


class SyncLayer:
    def __init__(self, app, remote, replica, bugs=frozenset(), crash_point=lambda name: None):
        assert 0 <= replica < STAMP_REPLICAS, f"replica {replica} is outside the stamps' range"
        self.app = app
        self.remote = remote
        self.replica = replica
        self.bugs = bugs
        self.crash_point = crash_point  # a test seam: a no-op in the app
        self.unsaved = []  # only with BUG(leaky_rollback)
        with app.engine.begin() as db:
            for statement in [*LOCAL_DDL, *(s.format(**SQLITE_TYPES) for s in SHARED_DDL)]:
                db.exec_driver_sql(statement)
        event.listen(app.Session, "after_flush", self._capture)
        event.listen(app.Session, "after_commit", self._push_on_commit)

    # -- capture ---------------------------------------------------------------------------------

    def _capture(self, session, flush_context):
        """``after_flush``: the flush's inserts, then updates, then deletes, as a flush runs them
        (``new``, ``dirty`` and ``deleted`` still show what it flushed)."""
        changes = [("insert", obj) for obj in session.new]
        changes += [("update", obj) for obj in session.dirty if session.is_modified(obj, include_collections=False)]
        changes += [("delete", obj) for obj in session.deleted]
        rows = [(obj.__tablename__, obj.id, op, _image(obj) if op != "delete" else None) for op, obj in changes]
        if "leaky_rollback" in self.bugs:
            # BUG(leaky_rollback): the changes wait in memory and after_commit writes them to the
            # outbox, "so that capture never slows a flush down". Nothing listens for a rollback:
            # a transaction the app flushed and then rolled back stays in the list, and the next
            # commit writes and pushes it. (Fix: write them here, in the flush's transaction.)
            self.unsaved.extend(rows)
            return
        _record(session.connection(), rows, self.replica)

    # -- push ------------------------------------------------------------------------------------

    def _push_on_commit(self, session):
        """``after_commit``: the write-through push. The transaction is committed locally and its
        changes are in the outbox; a push that fails leaves them there, pending."""
        if self.unsaved:
            try:
                with self.app.engine.begin() as db:
                    _record(db, self.unsaved, self.replica)
                self.unsaved = []
            except (DBAPIError, sqlite3.Error) as e:
                log.warning("could not record changes, kept for the next commit: %s", e)
                return
        try:
            self.push()
        except SyncError as e:
            if "swallow_push_failure" not in self.bugs:
                log.info("push on commit failed (%s); kept pending for the next write, push or sync", e)
                return
            # BUG(swallow_push_failure): the Flask app's hook. The save already succeeded, so a
            # failed push is logged and dropped, and the changes are marked synced "so that the
            # badge does not stay red": they never reach the remote. (Fix: the branch above.)
            log.error("sync failed: %s", e)
            try:
                with self.app.engine.begin() as db:
                    db.execute(ACKNOWLEDGE_SQL, {"last": 1 << 62})
            except (DBAPIError, sqlite3.Error):
                pass

    def push(self):
        """Pushes every pending change; returns ``(pushed, conflicts)``."""
        with _failures("push"):
            # 1. Read the outbox.
            with self.app.engine.connect() as db:
                batch = db.execute(OUTBOX_SQL).all()
                aliases = _Aliases(db)  # this replica's own merges, made by its pulls
            if not batch:
                return 0, 0
            # 2. Apply it on the remote.
            pushed, conflicts = self.apply_on_remote(batch, aliases)
            self.crash_point("push_after_remote_commit")
            # 3. Acknowledge.
            with self.app.engine.begin() as db:
                db.execute(ACKNOWLEDGE_SQL, {"last": batch[-1].seq})
        return pushed, conflicts

    def apply_on_remote(self, batch, aliases):
        pushed = conflicts = 0
        with self.remote.engine.begin() as db:
            if self.remote.serialize_pushes is not None:
                db.execute(self.remote.serialize_pushes)
            aliases.remote = db
            for entry in batch:
                if self._apply_entry(db, entry, aliases):
                    pushed += 1
                else:
                    conflicts += 1
            self.crash_point("push_before_remote_commit")
        return pushed, conflicts

    def _apply_entry(self, db, entry, aliases):
        """Applies one outbox entry on the remote; False when it loses."""
        table, op, stamp = entry.tbl, entry.op, entry.stamp
        sql = TABLE_SQL[table]
        target = aliases.survivor(table, entry.row_id)
        theirs = _stamp(db, table, target)
        exists = _exists(db, table, target)
        if op == "delete":
            if not exists:
                return False  # deleted already (by its own delete, or its parent's)
            db.execute(sql.delete, {"id": target})
            self._applied(db, table, target, "delete", max(stamp, theirs or 0))
            return True
        values = json.loads(entry.payload)
        for column, parent in REFERENCES[table].items():
            if values[column] is not None:
                values[column] = aliases.survivor(parent, values[column])  # a merged-away parent
                if not _exists(db, parent, values[column]):
                    return False  # its parent is deleted on the remote: the delete wins
        if op == "insert" and not exists:
            if theirs is not None:
                return False  # the row was here and is deleted: the delete wins
            holder = _key_holder(db, table, values, target)
            if holder is None:
                db.execute(sql.insert, sql.params(target, values))
                self._applied(db, table, target, "insert", stamp)
                return True
            # Inserted apart with the same natural key: the row already here survives; this
            # insert becomes a write to it, which wins if it is newer.
            db.execute(ALIAS_SQL, {"tbl": table, "merged": target, "survivor": holder})
            db.execute(FEED_SQL, _feed(table, target, "merge", stamp, self.replica, holder))
            aliases.merged(table, target, holder)
            target, theirs, exists = holder, _stamp(db, table, holder), True
        if not exists:
            return False  # an update of a row deleted on the remote: the delete wins
        if theirs is not None and theirs >= stamp:
            return False  # a newer write is there (or this one, pushed before)
        db.execute(sql.update, sql.params(target, values))
        self._applied(db, table, target, "update", stamp)
        return True

    def _applied(self, db, table, row_id, op, stamp):
        db.execute(SET_STAMP_SQL, {"tbl": table, "row_id": row_id, "stamp": stamp})
        db.execute(FEED_SQL, _feed(table, row_id, op, stamp, self.replica, None))

    # -- pull ------------------------------------------------------------------------------------

    def pull(self):
        """Brings the other replicas' changes; returns ``(pulled, conflicts)``."""
        with _failures("pull"):
            # 1. Fetch the feed after the cursor, and the rows it names.
            with self.app.engine.connect() as db:
                cursor = _state(db, "cursor")
            feed, rows = self._fetch(cursor)
            if not feed:
                return 0, 0
            # 2. Apply it locally, and move the cursor.
            with self.app.engine.begin() as db:
                pulled, conflicts = self.apply_locally(db, feed, rows)
                _set_state(db, "cursor", feed[-1].seq)
                self.crash_point("pull_before_local_commit")
        return pulled, conflicts

    def _fetch(self, cursor):
        """The feed after ``cursor``, and the remote's current row (with its stamp) for each
        entry that needs one: ``{(table, id): (stamp, values)}``; a row gone since is absent."""
        with self.remote.engine.begin() as db:
            feed = db.execute(FEED_AFTER_SQL, {"cursor": cursor}).all()
            wanted = {}
            for e in feed:
                if e.op == "merge":
                    wanted.setdefault(e.tbl, set()).add(e.survivor)
                elif e.op != "delete" and e.origin != self.replica:
                    wanted.setdefault(e.tbl, set()).add(e.row_id)
            rows = {}
            for table, ids in wanted.items():
                for row in db.execute(TABLE_SQL[table].select, {"ids": sorted(ids)}):
                    rows[(table, row[0])] = (row[1] or 0, dict(zip(COLUMNS[table], row[2:])))
        return feed, rows

    def apply_locally(self, db, feed, rows):
        pulled = conflicts = 0
        high = _state(db, "stamp_high")
        for e in feed:
            table, sql = e.tbl, TABLE_SQL[e.tbl]
            high = max(high, e.stamp)
            if e.op == "merge":
                self._merge_here(db, table, e.row_id, e.survivor, rows.get((table, e.survivor)))
                continue
            if e.op == "delete":
                # Whatever its origin: this replica's own delete of a row it had merged away
                # was applied to the survivor, which it may hold.
                if db.execute(sql.delete, {"id": e.row_id}).rowcount and e.origin != self.replica:
                    pulled += 1
                db.execute(MAX_STAMP_SQL, {"tbl": table, "row_id": e.row_id, "stamp": e.stamp})
                continue
            row = rows.get((table, e.row_id))
            if e.origin == self.replica or row is None:
                continue  # our own, or gone since (its delete is further on)
            stamp, values = row
            ours = _stamp(db, table, e.row_id)
            if ours is not None and ours >= stamp:
                conflicts += ours > stamp  # ours is newer, and is pushed next
                continue
            if ours is not None and not _exists(db, table, e.row_id):
                conflicts += 1  # deleted here: the delete wins, and is pushed next
                continue
            holder = _key_holder(db, table, values, e.row_id)
            if holder is not None:
                self._merge_here(db, table, holder, e.row_id, row)  # ours not pushed yet
                pulled += 1
                continue
            if any(values[c] is not None and not _exists(db, p, values[c]) for c, p in REFERENCES[table].items()):
                conflicts += 1  # its parent is deleted here, not pushed yet: the delete wins
                continue
            db.execute(sql.upsert, sql.params(e.row_id, values))
            db.execute(SET_STAMP_SQL, {"tbl": table, "row_id": e.row_id, "stamp": stamp})
            pulled += 1
        _set_state(db, "stamp_high", high)
        return pulled, conflicts

    def _merge_here(self, db, table, gone, survivor, remote_row):
        """Local row ``gone`` and the remote's row ``survivor`` hold the same natural key: the
        survivor takes the newer of the two rows, gone's children move to it, and gone becomes
        its alias, so that gone's pending writes apply to the survivor at the next push."""
        sql = TABLE_SQL[table]
        db.execute(ALIAS_SQL, {"tbl": table, "merged": gone, "survivor": survivor})
        mine = db.execute(sql.select_one, {"id": gone}).first()
        if mine is None:
            return  # not held here
        if remote_row is None:
            db.execute(sql.delete, {"id": gone})  # the survivor is deleted: so is gone
            return
        mine_stamp, mine_values = mine[1] or 0, dict(zip(COLUMNS[table], mine[2:]))
        stamp, values = (mine_stamp, mine_values) if mine_stamp > remote_row[0] else remote_row
        db.execute(sql.clear_key, {"id": gone})  # frees the key for the survivor
        db.execute(sql.upsert, sql.params(survivor, values))
        db.execute(SET_STAMP_SQL, {"tbl": table, "row_id": survivor, "stamp": stamp})
        for move in sql.move_children:
            db.execute(move, {"survivor": survivor, "gone": gone})
        db.execute(sql.delete, {"id": gone})
        db.execute(DELETE_STAMP_SQL, {"tbl": table, "row_id": gone})

    # -- status ----------------------------------------------------------------------------------

    def pending(self):
        with _failures("pending"), self.app.engine.connect() as db:
            return db.execute(PENDING_SQL).scalar_one()


def _record(db, rows, replica):
    """Appends ``rows`` (table, id, op, values) to the outbox, each with the next stamp, and
    sets each row's stamp, on connection ``db`` (in its transaction)."""
    if not rows:
        return
    tick = _state(db, "stamp_high") // STAMP_REPLICAS
    for table, row_id, op, values in rows:
        tick += 1
        stamp = tick * STAMP_REPLICAS + replica
        payload = None if values is None else json.dumps(values)
        db.execute(OUTBOX_INSERT_SQL, {"tbl": table, "row_id": row_id, "op": op, "payload": payload, "stamp": stamp})
        db.execute(SET_STAMP_SQL, {"tbl": table, "row_id": row_id, "stamp": stamp})
    _set_state(db, "stamp_high", stamp)


class _Aliases:
    """Which row a write addressed to ``(table, id)`` applies to, during one push: this
    replica's own merges (read from the cache), then the remote's, looked up as needed."""

    def __init__(self, local_db):
        self.known = {(t, merged): survivor for t, merged, survivor in local_db.execute(ALIASES_SQL)}
        self.remote = None  # the remote connection, inside the push's transaction

    def survivor(self, table, row_id):
        key = (table, row_id)
        if key not in self.known:
            found = self.remote.execute(ALIAS_OF_SQL, {"tbl": table, "merged": row_id}).first()
            self.known[key] = found[0] if found else row_id
        return self.known[key]

    def merged(self, table, row_id, survivor):
        self.known[(table, row_id)] = survivor


class _TableSQL:
    """The statements for one synced table, every column named (in ``COLUMNS`` order); they run
    on the cache and on the remote alike."""

    def __init__(self, table):
        self.columns = COLUMNS[table]
        names = [f'"{c}"' for c in self.columns]
        marks = [f":v{k}" for k in range(len(names))]
        stamped = f"""SELECT t."id", s.stamp, {", ".join(f"t.{n}" for n in names)} FROM "{table}" t
            LEFT JOIN sync_stamps s ON s.tbl = '{table}' AND s.row_id = t."id" """
        self.select = text(stamped + 'WHERE t."id" IN :ids').bindparams(bindparam("ids", expanding=True))
        self.select_one = text(stamped + 'WHERE t."id" = :id')
        self.exists = text(f'SELECT 1 FROM "{table}" WHERE "id" = :id')
        insert = f'INSERT INTO "{table}" ("id", {", ".join(names)}) VALUES (:id, {", ".join(marks)})'
        self.insert = text(insert)
        self.upsert = text(
            insert + ' ON CONFLICT ("id") DO UPDATE SET ' + ", ".join(f"{n} = excluded.{n}" for n in names)
        )
        sets = ", ".join(f"{n} = {m}" for n, m in zip(names, marks))
        self.update = text(f'UPDATE "{table}" SET {sets} WHERE "id" = :id')
        self.delete = text(f'DELETE FROM "{table}" WHERE "id" = :id')
        key = NATURAL_KEYS.get(table)
        self.key_holder = text(f'SELECT "id" FROM "{table}" WHERE "{key}" = :key AND "id" <> :id') if key else None
        self.clear_key = text(f'UPDATE "{table}" SET "{key}" = NULL WHERE "id" = :id') if key else None
        self.move_children = [
            text(f'UPDATE "{child}" SET "{column}" = :survivor WHERE "{column}" = :gone')
            for child, refs in REFERENCES.items()
            for column, parent in refs.items()
            if parent == table
        ]

    def params(self, row_id, values):
        return {"id": row_id, **{f"v{k}": values[c] for k, c in enumerate(self.columns)}}


TABLE_SQL = {table: _TableSQL(table) for table in COLUMNS}
OUTBOX_SQL = text("SELECT seq, tbl, row_id, op, payload, stamp FROM sync_outbox ORDER BY seq")
OUTBOX_INSERT_SQL = text(
    "INSERT INTO sync_outbox (tbl, row_id, op, payload, stamp) VALUES (:tbl, :row_id, :op, :payload, :stamp)"
)
ACKNOWLEDGE_SQL = text("DELETE FROM sync_outbox WHERE seq <= :last")
PENDING_SQL = text("SELECT count(*) FROM sync_outbox")
STAMP_SQL = text("SELECT stamp FROM sync_stamps WHERE tbl = :tbl AND row_id = :row_id")
SET_STAMP_SQL = text(
    "INSERT INTO sync_stamps (tbl, row_id, stamp) VALUES (:tbl, :row_id, :stamp) "
    "ON CONFLICT (tbl, row_id) DO UPDATE SET stamp = excluded.stamp"
)
MAX_STAMP_SQL = text(
    "INSERT INTO sync_stamps (tbl, row_id, stamp) VALUES (:tbl, :row_id, :stamp) "
    "ON CONFLICT (tbl, row_id) DO UPDATE SET stamp = max(stamp, excluded.stamp)"
)
DELETE_STAMP_SQL = text("DELETE FROM sync_stamps WHERE tbl = :tbl AND row_id = :row_id")
STATE_SQL = text("SELECT value FROM sync_state WHERE key = :key")
SET_STATE_SQL = text(
    "INSERT INTO sync_state (key, value) VALUES (:key, :value) ON CONFLICT (key) DO UPDATE SET value = excluded.value"
)
FEED_SQL = text(
    "INSERT INTO sync_feed (tbl, row_id, op, stamp, origin, survivor) "
    "VALUES (:tbl, :row_id, :op, :stamp, :origin, :survivor)"
)
FEED_AFTER_SQL = text(
    "SELECT seq, tbl, row_id, op, stamp, origin, survivor FROM sync_feed WHERE seq > :cursor ORDER BY seq"
)
ALIAS_SQL = text(
    "INSERT INTO sync_aliases (tbl, merged_id, survivor_id) VALUES (:tbl, :merged, :survivor) "
    "ON CONFLICT (tbl, merged_id) DO UPDATE SET survivor_id = excluded.survivor_id"
)
ALIAS_OF_SQL = text("SELECT survivor_id FROM sync_aliases WHERE tbl = :tbl AND merged_id = :merged")
ALIASES_SQL = text("SELECT tbl, merged_id, survivor_id FROM sync_aliases")


@contextmanager
def _failures(what):
    """Turns the database errors of a push, pull or status read into ``SyncError``."""
    try:
        yield
    except (DBAPIError, sqlite3.Error, psycopg.Error) as e:
        raise _sync_error(what, e) from None


# SQLSTATEs (PostgreSQL) that mean "busy": a lock not granted in time, a statement cancelled by
# its timeout, a serialization failure or a deadlock.
BUSY_STATES = {"55P03", "57014", "40001", "40P01"}
LOGIN_STATES = {"28000", "28P01", "3D000"}
LOGIN_WORDS = ("password authentication failed", "does not exist")


def _sync_error(what, error):
    orig = getattr(error, "orig", None) or error
    message = f"{what}: {orig}".strip()
    state = getattr(orig, "sqlstate", None)
    if (isinstance(orig, sqlite3.OperationalError) and "locked" in str(orig)) or state in BUSY_STATES:
        return SyncError("busy", message)
    if state in LOGIN_STATES or (state is None and any(w in str(orig) for w in LOGIN_WORDS)):
        return SyncError("login_refused", message)
    if isinstance(orig, psycopg.OperationalError) or getattr(error, "connection_invalidated", False):
        return SyncError("unavailable", message)  # a closed session, a server starting up
    return SyncError("other", message)


def _image(obj):
    return {c: getattr(obj, c) for c in COLUMNS[obj.__tablename__]}


def _feed(table, row_id, op, stamp, origin, survivor):
    return {"tbl": table, "row_id": row_id, "op": op, "stamp": stamp, "origin": origin, "survivor": survivor}


def _stamp(db, table, row_id):
    return db.execute(STAMP_SQL, {"tbl": table, "row_id": row_id}).scalar()


def _exists(db, table, row_id):
    return db.execute(TABLE_SQL[table].exists, {"id": row_id}).first() is not None


def _key_holder(db, table, values, row_id):
    """Another row of ``table`` holding the natural key in ``values``, or None."""
    sql, key = TABLE_SQL[table].key_holder, NATURAL_KEYS.get(table)
    if sql is None or values[key] is None:
        return None  # no natural key, or NULL: NULL never collides
    return db.execute(sql, {"key": values[key], "id": row_id}).scalar()


def _state(db, key):
    return db.execute(STATE_SQL, {"key": key}).scalar() or 0


def _set_state(db, key, value):
    db.execute(SET_STATE_SQL, {"key": key, "value": value})


def warm_up():
    """Runs every statement once on throwaway files, so that SQLAlchemy's caches (per engine) are
    warm in every process forked after this (the fork server runs it)."""
    # The PostgreSQL dialect's modules (~90 ms of imports at a replica's first connection);
    # making an engine connects to nothing.
    create_engine("postgresql+psycopg://").dispose()
    folder = tempfile.mkdtemp(prefix="write-through-warm-up-")
    try:
        tables = application.Base.metadata.sorted_tables
        ddl = [str(CreateTable(t).compile(application.CACHE.engine)) for t in tables]
        schema = {"ddl": ddl}
        remote = Remote.open({"kind": "sqlite", "path": f"{folder}/remote.db"}, True, schema)
        # Replica 0 saves, pushes on commit and rolls back; then replica 1 (the same engine,
        # pointed at its own file) saves the same domain and pulls: a merge, an upsert, a delete.
        one = application.App(f"{folder}/replica0.db", ddl, 0)
        SyncLayer(one, remote, 0)
        ids = one.save([
            {"op": "insert", "table": "domains", "values": {"name": "warm.up", "registrar": "r", "updated": 1}},
            {"op": "insert", "table": "dns_records", "values": {"domain_id": {"ref": 0}, "kind": "A", "value": "v"}},
            {"op": "insert", "table": "hosts", "values": {"hostname": "h", "ip": None}},
        ])
        one.save([{"op": "update", "table": "hosts", "id": ids[2], "set": {"ip": "i"}}])
        one.save([{"op": "insert", "table": "hosts", "values": {"hostname": "g", "ip": None}}], roll_back=True)
        two = application.App(f"{folder}/replica1.db", ddl, 1)
        two_sync = SyncLayer(two, remote, 1)
        two.save([{"op": "insert", "table": "domains", "values": {"name": "warm.up", "registrar": "s", "updated": 2}}])
        two_sync.pull()
        two.save([{"op": "delete", "table": "domains", "id": ids[0]}])
        two_sync.pull()
        two_sync.pending()
    finally:
        for database in (application.CACHE, REMOTE_SQLITE):
            database.close()
        shutil.rmtree(folder, ignore_errors=True)
