"""The sync layer: change tracking by session events, push and pull against a remote SQLite file.

How it works (and, marked ``BUG(name)``, where it goes wrong; README.md lists the bugs):

- **Tracking.** A listener on the app's ``Session`` collects the objects each flush inserts,
  updates or deletes. Each change becomes a ``sync_log`` row (table, id, op, the row's
  values as JSON, a blob's bytes in base64, a real as its shortest repr; a stamp) and its id
  goes on an in-memory pending list. The layer knows the tables from the app's models
  (``app.models``: columns, natural keys, references), whatever tables those are.
- **Push.** The pending changes are applied to the remote in one remote transaction (inserts,
  updates, deletes; an older change loses to a newer one already there, and any change to a
  row deleted there loses), each also appended to the remote's change feed ``sync_changes``;
  then the changes are marked synced.
- **Pull.** Every feed entry after the local cursor made by another replica is applied to the
  cache with plain SQL (so pulling is not tracked as a local change), unless the local row's
  stamp is newer: last writer wins. Deletes always win, and are applied whatever their origin
  (see natural keys). An entry brings the remote's current row, which may name a parent
  further on in the feed: that parent is pulled first.
- **Natural keys.** Two replicas that insert the same domain name (a table's natural key, its
  ``UNIQUE`` column) apart mean one domain. The row that reached the remote first survives
  and keeps its id; the other id becomes its alias (``sync_aliases``, on the remote and in the
  cache), its values merge into the survivor by stamp (the whole row: last writer wins), its
  records move to the survivor, and every later write addressed to it (pending in the outbox,
  or made before the replica pulled) applies to the survivor. A push meets the key on the remote and merges there (a ``merge`` feed entry
  tells every replica); a pull that brings a row whose key a local row holds merges here, and
  the local row's pending writes follow it to the survivor at the next push.

The layer's bookkeeping runs as plain SQL on the driver's connection, where ``sqlite3`` keeps
each statement prepared: no SQLAlchemy compilation or result objects per statement.
"""

import binascii
import json
import logging
import sqlite3
from contextlib import contextmanager

from app import REMOTE
from sqlalchemy import event
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

log = logging.getLogger("buggy_sync")

# Stamps are tick * STAMP_REPLICAS + replica: unique across replicas, ordered by tick first.
STAMP_REPLICAS = 1024

LOCAL_DDL = [
    """CREATE TABLE IF NOT EXISTS sync_log (id INTEGER PRIMARY KEY AUTOINCREMENT, tbl TEXT NOT NULL,
       row_id INTEGER NOT NULL, op TEXT NOT NULL, payload TEXT, updated_at INTEGER NOT NULL,
       synced INTEGER NOT NULL DEFAULT 0)""",
    "CREATE TABLE IF NOT EXISTS sync_stamps (tbl TEXT, row_id INTEGER, updated_at INTEGER, "
    "PRIMARY KEY (tbl, row_id))",
    "CREATE TABLE IF NOT EXISTS sync_state (key TEXT PRIMARY KEY, value INTEGER NOT NULL)",
    "CREATE TABLE IF NOT EXISTS sync_aliases (tbl TEXT, merged_id INTEGER, survivor_id INTEGER NOT NULL, "
    "PRIMARY KEY (tbl, merged_id))",
]
REMOTE_DDL = [
    # op is insert, update, delete or merge; a merge entry says row_id was merged into survivor.
    """CREATE TABLE IF NOT EXISTS sync_changes (seq INTEGER PRIMARY KEY AUTOINCREMENT, tbl TEXT NOT NULL,
       row_id INTEGER NOT NULL, op TEXT NOT NULL, updated_at INTEGER NOT NULL, origin INTEGER NOT NULL,
       survivor INTEGER)""",
    "CREATE TABLE IF NOT EXISTS sync_stamps (tbl TEXT, row_id INTEGER, updated_at INTEGER, "
    "PRIMARY KEY (tbl, row_id))",
    "CREATE TABLE IF NOT EXISTS sync_aliases (tbl TEXT, merged_id INTEGER, survivor_id INTEGER NOT NULL, "
    "PRIMARY KEY (tbl, merged_id))",
]

# What a failed push or pull raises: SQLAlchemy's errors (connect, commit) and the driver's own
# (the prepared statements).
DB_ERRORS = (DBAPIError, sqlite3.Error)


class SyncError(Exception):
    """A push or pull that failed; ``kind`` is ``busy`` or ``other``."""

    def __init__(self, kind, message):
        super().__init__(message)
        self.kind = kind


def create_remote(path, ddl):
    with REMOTE.open(path, bugs=frozenset()).connect() as conn:
        _driver(conn).executescript(";\n".join(["BEGIN", *ddl, *REMOTE_DDL, "COMMIT"]))


class SyncLayer:
    def __init__(self, app, remote_path, clock, crash_point=lambda name: None):
        self.app = app
        self.bugs = app.bugs
        self.models = app.models  # the tables: their columns, natural keys and references
        self.sql = {table: _TableSQL(self.models, table) for table in self.models.columns}
        self.clock = clock  # ms since the epoch
        assert 0 <= app.replica < STAMP_REPLICAS, f"replica {app.replica} out of the stamps' range"
        self.crash_point = crash_point  # a test seam: a no-op in the app
        # BUG(no_key_merge): the first version had no natural-key merge: two devices that add the
        # same domain collide on UNIQUE(name) at push (or at pull, locally), and that sync then
        # fails at every attempt. The fix is the merge described in the module doc.
        self.merge_keys = "no_key_merge" not in self.bugs
        self.remote = REMOTE.open(remote_path, app.bugs)
        with app.engine.connect() as conn:
            db = _driver(conn)
            db.executescript(";\n".join(["BEGIN", *LOCAL_DDL, "COMMIT"]))
            # The ids of the sync_log rows still to push. BUG(memory_pending): the list starts
            # empty; sync_log is only read by support staff, so what was pending before a restart
            # (a crash, an update, the OS killing the app) is never pushed, and the badge says
            # "all synced". The fix reloads the list from sync_log here.
            self.memory_pending = [] if "memory_pending" in self.bugs else _unsynced_ids(db)
        event.listen(app.Session, "after_flush", self._collect)
        if "after_commit_read" in self.bugs:
            event.listen(app.Session, "after_transaction_end", self._record_after_commit)
        else:
            event.listen(app.Session, "after_commit", self._committed)
            event.listen(app.Session, "after_rollback", self._rolled_back)

    # -- tracking ------------------------------------------------------------------------------

    def _collect(self, session, flush_context):
        changes = [("insert", obj) for obj in session.new]
        changes += [
            ("update", obj) for obj in session.dirty if session.is_modified(obj, include_collections=False)
        ]
        changes += [("delete", obj) for obj in session.deleted]
        if "after_commit_read" in self.bugs:
            # BUG(after_commit_read): keep the objects and write the log once the transaction is
            # over, so tracking never slows a save down. By then the objects are expired: a
            # transaction block (the importer's, the batch form's) is closed and they cannot be
            # loaded again (the change is skipped), and after a rollback the refused rows are
            # recorded anyway.
            session.info.setdefault("sync_changes", []).extend(changes)
            return
        rows = [self._serialize(op, obj) for op, obj in changes]  # read now, inside the transaction
        db = _driver(session.connection())  # the flush's own connection and transaction
        session.info.setdefault("sync_log_ids", []).extend(self._write_log(db, rows))

    def _committed(self, session):
        self.memory_pending.extend(session.info.pop("sync_log_ids", []))

    def _rolled_back(self, session):
        session.info.pop("sync_log_ids", None)

    def _record_after_commit(self, session, transaction):
        if transaction.parent is not None:
            return
        rows = []
        for op, obj in session.info.pop("sync_changes", []):
            try:
                rows.append(self._serialize(op, obj))
            except SQLAlchemyError as e:
                log.warning("could not read a %s of %s after commit, skipped: %s", op, type(obj).__name__, e)
        if rows:
            with self.app.engine.connect() as conn, _transaction(conn) as db:
                self.memory_pending.extend(self._write_log(db, rows))

    def _serialize(self, op, obj):
        """(table, id, op, values): the values of every column, as JSON can carry them."""
        table = obj.__tablename__
        if op == "delete":
            return table, obj.id, op, None
        types = self.models.types[table]
        values = {c: getattr(obj, c) for c in self.models.columns[table]}
        for column, value in values.items():
            if types[column] == "blob" and value is not None:
                values[column] = binascii.b2a_base64(value, newline=False).decode("ascii")
        return table, obj.id, op, values

    def _deserialize(self, table, payload):
        """The values of a sync_log row, as _serialize wrote them: a blob's bytes again."""
        values = json.loads(payload)
        for column, kind in self.models.types[table].items():
            if kind == "blob" and values[column] is not None:
                values[column] = binascii.a2b_base64(values[column])
        return values

    def _write_log(self, db, rows):
        """Appends ``rows`` (table, id, op, values) to sync_log, stamped; returns their ids."""
        if not rows:
            return []
        stamps = self._next_stamps(db, len(rows))
        ids = [
            db.execute(LOG_INSERT_SQL, (table, row_id, op, json.dumps(values), stamp)).fetchone()[0]
            for (table, row_id, op, values), stamp in zip(rows, stamps)
        ]
        db.executemany(
            SET_STAMP_SQL, [(table, row_id, stamp) for (table, row_id, _, _), stamp in zip(rows, stamps)]
        )
        return ids

    def _next_stamps(self, db, n):
        now = self.clock()
        if "wallclock_lww" in self.bugs:
            return [now] * n  # BUG(wallclock_lww): the device's clock decides which write wins
        # A tick never behind anything seen, packed with the replica so that no two replicas
        # ever make the same stamp: two devices whose clocks read the same millisecond (or
        # stand still) would otherwise tie, and a tie has no winner both sides agree on.
        first = max(now, _state(db, "stamp_high") // STAMP_REPLICAS + 1)
        _set_state(db, "stamp_high", (first + n - 1) * STAMP_REPLICAS + self.app.replica)
        return [(tick * STAMP_REPLICAS + self.app.replica) for tick in range(first, first + n)]

    # -- status --------------------------------------------------------------------------------

    def pending(self):
        return len(self.memory_pending)

    # -- push ----------------------------------------------------------------------------------

    def push(self):
        """Returns (pushed, conflicts)."""
        if not self.memory_pending:
            return 0, 0
        try:
            with self.app.engine.connect() as local:
                db = _driver(local)
                batch = self._batch(db)
                if not batch:
                    return 0, 0
                aliases = _Aliases(db)  # this replica's own merges, made by its pulls
                applied, conflicts = self._push_to_remote(batch, aliases)
                self.crash_point("push_after_remote_commit")
                with _transaction(local) as db:
                    db.execute(MARK_SYNCED_SQL, (json.dumps([entry[0] for entry in batch]),))
        except DB_ERRORS as e:
            raise _sync_error(e) from None
        done = {entry[0] for entry in batch}
        self.memory_pending = [i for i in self.memory_pending if i not in done]
        log.info("%d records synced", applied)
        return (len(batch) if "zero_synced" in self.bugs else applied), conflicts

    def _batch(self, db):
        return db.execute(BATCH_SQL, (json.dumps(self.memory_pending),)).fetchall()

    def _push_to_remote(self, batch, aliases):
        applied = conflicts = 0
        try:
            with self.remote.connect() as remote:
                remote.begin()  # SQLAlchemy's transaction: commit() below commits the driver's
                db = _driver(remote)
                aliases.remote = db
                for entry in batch:
                    if self._apply_on_remote(db, entry, aliases):
                        applied += 1
                    else:
                        conflicts += 1
                self.crash_point("push_before_remote_commit")
                remote.commit()
        except DB_ERRORS as e:
            # BUG(zero_synced): the error is logged, and the batch is marked synced anyway
            # (the statements after the failing one never ran either).
            log.error("push failed: %s; 0 records synced", _message(e))
            if "zero_synced" not in self.bugs:
                raise
        return applied, conflicts

    def _apply_on_remote(self, db, entry, aliases):
        """Applies one change; False when it loses (a newer write is there, or its parent is gone)."""
        _, table, row_id, op, payload, stamp = entry
        sql = self.sql[table]
        values = None
        if op != "delete":
            values = self._deserialize(table, payload)
            for column, parent in self.models.references[table].items():
                if values[column] is not None:  # a record of a merged-away domain: the survivor's
                    values[column] = aliases.survivor(parent, values[column])
        target = aliases.survivor(table, row_id)
        theirs = _stamp(db, table, target)
        if op == "insert" and target == row_id and theirs is None and self.merge_keys:
            holder = self._key_holder(db, table, values, row_id)
            if holder is not None:
                # Inserted apart with the same natural key: the row already here survives.
                db.execute(ALIAS_SQL, (table, row_id, holder))
                db.execute(FEED_SQL, (table, row_id, "merge", stamp, self.app.replica, holder))
                aliases.merged(table, row_id, holder)
                target, theirs = holder, _stamp(db, table, holder)
        if target != row_id and op == "insert":
            op = "update"  # the merged-away row's values are a write to its survivor
        if op != "delete" and theirs is not None and db.execute(sql.exists, (target,)).fetchone() is None:
            # Deleted on the remote (a stamp outlives its row): the delete wins whatever the
            # stamps say, as in the pull. A re-push after a crash, or a write made apart to a row
            # another replica's delete reached through a merge, would bring the row back.
            return False
        if op != "delete" and theirs is not None and theirs > stamp:
            return False
        if op == "delete":
            db.execute(sql.delete, (target,))
        else:
            try:  # a failed statement is undone alone: the transaction goes on
                self._upsert(db, table, op, target, values)
            except sqlite3.IntegrityError as e:
                if "insert_or_replace" in self.bugs or "FOREIGN KEY" not in str(e):
                    raise
                return False  # the parent is gone on the remote: the delete wins
        _set_stamp(db, table, target, stamp)
        db.execute(FEED_SQL, (table, target, op, stamp, self.app.replica, None))
        return True

    def _upsert(self, db, table, op, row_id, values):
        """Writes ``values`` (every column) into row ``row_id`` of ``table``."""
        sql = self.sql[table]
        cells = [values[c] for c in self.models.columns[table]]
        if op == "update":
            db.execute(sql.update, (*cells, row_id))
        elif "insert_or_replace" in self.bugs:
            # BUG(insert_or_replace): the fix for "UNIQUE constraint failed: hosts.id" in
            # production, and idempotent on a retry. It deletes whatever row holds that id or
            # that natural key, another device's row included (and, through ON DELETE CASCADE,
            # that row's children).
            db.execute(sql.insert_or_replace, (row_id, *cells))
        else:
            db.execute(sql.upsert, (row_id, *cells))

    # -- pull ----------------------------------------------------------------------------------

    def pull(self):
        """Returns (pulled, conflicts)."""
        try:
            with self.app.engine.connect() as local:
                feed, rows = self._fetch(_state(_driver(local), "cursor"))
                if not feed:
                    return 0, 0
                with _transaction(local) as db:
                    pulled, conflicts = self._apply_feed(db, feed, rows)
                    _set_state(db, "cursor", feed[-1][0])
                    self.crash_point("pull_before_local_commit")
        except DB_ERRORS as e:
            raise _sync_error(e) from None
        return pulled, conflicts

    def _fetch(self, cursor):
        """The feed after ``cursor``, and the remote's current row (with its stamp) for every
        entry that needs one: {(table, id): (stamp, id, *columns) or None}."""
        with self.remote.connect() as remote:
            db = _driver(remote)
            feed = db.execute(FEED_AFTER_SQL, (cursor,)).fetchall()
            rows = {}
            for _, table, row_id, op, _, origin, survivor in feed:
                if op == "merge":
                    wanted = survivor
                elif op != "delete" and origin != self.app.replica:
                    wanted = row_id
                else:
                    continue
                if (table, wanted) not in rows:
                    rows[(table, wanted)] = db.execute(self.sql[table].select_stamped, (wanted,)).fetchone()
        return feed, rows

    def _apply_feed(self, db, feed, rows):
        pulled = conflicts = 0
        high = _state(db, "stamp_high")
        early = set()  # rows applied before their place in the feed (below)
        for _, table, row_id, op, stamp, origin, survivor in feed:
            high = max(high, stamp)
            if op == "merge":
                self._merge_here(db, table, row_id, survivor, rows[(table, survivor)])
                continue
            if op == "delete":
                # Whatever its origin: this replica's own delete of a row merged away (on the
                # remote, at its push) names the survivor, which it may hold; a row already
                # gone here is a no-op.
                db.execute(self.sql[table].delete, (row_id,))
                if origin != self.app.replica:
                    pulled += 1
                continue
            if origin == self.app.replica or (table, row_id) in early:
                continue
            got, lost = self._pull_row(db, table, row_id, op, stamp, rows, early)
            pulled, conflicts = pulled + got, conflicts + lost
        _set_state(db, "stamp_high", high)
        return pulled, conflicts

    def _pull_row(self, db, table, row_id, op, stamp, rows, early):
        """Applies the remote's current row for one feed entry; returns (pulled, conflicts)."""
        ours = _stamp(db, table, row_id)
        row = rows[(table, row_id)]
        if ours is not None and ours > stamp:
            return 0, 1  # ours is newer: last writer wins
        if ours is not None and db.execute(self.sql[table].exists, (row_id,)).fetchone() is None:
            # Deleted here (a stamp outlives its row): the delete wins whatever the stamps say,
            # and is pushed or already pulled. Applying this write, or merging a local row with
            # its natural key into it, would bring the deleted row back.
            return 0, 1
        if row is None:
            return 0, 0  # gone since: its delete is further on in the feed
        values = dict(zip(self.models.columns[table], row[2:]))
        holder = self._key_holder(db, table, values, row_id) if self.merge_keys else None
        if holder is not None:
            # A local row with the same natural key, not pushed yet: it merges into this one.
            self._merge_here(db, table, holder, row_id, row)
            return 1, 0
        # A row never held here (ours is None) is written whole, whatever the entry's op: its
        # insert may have lost to a parent deleted here that the row has left since.
        op = op if ours is not None else "insert"
        pulled = conflicts = 0
        while True:
            try:
                self._upsert(db, table, op, row_id, values)
                break
            except sqlite3.IntegrityError as e:
                if "FOREIGN KEY" not in str(e):
                    raise
            # The remote's current row may name a parent made after it, further on in this
            # feed (an update moved it there, or a merge did): that parent comes first.
            got, lost = self._pull_parents(db, table, values, rows, early)
            pulled, conflicts = pulled + got, conflicts + lost
            if not got:
                return pulled, conflicts + 1  # its parent was deleted here, not pushed yet: the delete wins
        _set_stamp(db, table, row_id, stamp)
        return pulled + 1, conflicts

    def _pull_parents(self, db, table, values, rows, early):
        """Pulls, ahead of their place in the feed, the parents that ``values`` name and that
        are not here but are in this pull; returns (pulled, conflicts)."""
        pulled = conflicts = 0
        for column, parent in self.models.references[table].items():
            key = (parent, values[column])
            if rows.get(key) is None or key in early:
                continue  # not in this pull (or not on the remote now), or tried already
            if db.execute(self.sql[parent].exists, (values[column],)).fetchone() is not None:
                continue
            early.add(key)  # its own entries in the feed are then skipped
            got, lost = self._pull_row(db, parent, values[column], "insert", rows[key][0], rows, early)
            pulled, conflicts = pulled + got, conflicts + lost
        return pulled, conflicts

    def _merge_here(self, db, table, gone, survivor, remote_row):
        """Local row ``gone`` and the remote's row ``survivor`` have the same natural key: the
        survivor takes the newer values of the two (by stamp), gone's records move to it, and
        gone becomes its alias, so that writes to gone still pending here reach the survivor."""
        db.execute(ALIAS_SQL, (table, gone, survivor))
        sql = self.sql[table]
        mine = db.execute(sql.select_stamped, (gone,)).fetchone()
        if mine is None:
            return  # not held here (never, or deleted: that delete is pushed to the survivor)
        if remote_row is None:
            db.execute(sql.delete, (gone,))  # the survivor is deleted too: its delete follows
            return
        newer = mine if (mine[0] or 0) > (remote_row[0] or 0) else remote_row
        # Gone's row becomes the survivor (its id, the newer values), and gone's children follow
        # it: until they do, they name an id no row has, so foreign keys wait for the commit, for
        # these statements only. (Gone keeps its key throughout: a key may be NOT NULL.)
        db.execute("PRAGMA defer_foreign_keys = ON")
        db.execute(sql.renumber, (survivor, *newer[2:], gone))
        for move in sql.move_children:
            db.execute(move, (survivor, gone))
        db.execute("PRAGMA defer_foreign_keys = OFF")
        _set_stamp(db, table, survivor, newer[0] or 0)
        db.execute(DELETE_STAMP_SQL, (table, gone))

    def _key_holder(self, db, table, values, row_id):
        """Another row of ``table`` holding the natural key in ``values``, or None."""
        sql = self.sql[table].key_holder
        key = self.models.natural_keys.get(table)
        if sql is None or values[key] is None:
            return None  # no natural key, or NULL: NULL never collides
        found = db.execute(sql, (values[key], row_id)).fetchone()
        return found[0] if found else None


class _Aliases:
    """Which row a write addressed to ``(table, id)`` applies to during one push: this
    replica's own merges (made by its pulls, read once from the cache), then the remote's,
    looked up as needed and remembered."""

    def __init__(self, local_db):
        self.known = {(t, merged): survivor for t, merged, survivor in local_db.execute(ALIASES_SQL)}
        self.remote = None  # the remote's driver connection, set inside the remote transaction

    def survivor(self, table, row_id):
        key = (table, row_id)
        if key not in self.known:
            found = self.remote.execute(ALIAS_OF_SQL, key).fetchone()
            self.known[key] = found[0] if found else row_id
        return self.known[key]

    def merged(self, table, row_id, survivor):
        self.known[(table, row_id)] = survivor


class _TableSQL:
    """The prepared statements for one synced table (every column named, in the models' order)."""

    def __init__(self, models, table):
        columns = models.columns[table]
        names = [f'"{c}"' for c in ["id", *columns]]
        marks = ", ".join("?" for _ in names)
        # (stamp, id, *columns): the stamp from the same file's sync_stamps (None if unstamped).
        self.select_stamped = (
            f'SELECT s.updated_at, {", ".join(f"t.{n}" for n in names)} FROM "{table}" t '
            f"LEFT JOIN sync_stamps s ON s.tbl = '{table}' AND s.row_id = t.id WHERE t.id = ?"
        )
        self.insert = f'INSERT INTO "{table}" ({", ".join(names)}) VALUES ({marks})'
        self.insert_or_replace = self.insert.replace("INSERT", "INSERT OR REPLACE", 1)
        self.upsert = (
            self.insert
            + " ON CONFLICT (id) DO UPDATE SET "
            + ", ".join(f"{n} = excluded.{n}" for n in names[1:])
        )
        self.update = f'UPDATE "{table}" SET ' + ", ".join(f"{n} = ?" for n in names[1:]) + " WHERE id = ?"
        self.renumber = f'UPDATE "{table}" SET ' + ", ".join(f"{n} = ?" for n in names) + " WHERE id = ?"
        self.delete = f'DELETE FROM "{table}" WHERE id = ?'
        self.exists = f'SELECT 1 FROM "{table}" WHERE id = ?'
        # Children of a row (rows that refer to it) moved to another row of this table.
        self.move_children = [
            f'UPDATE "{child}" SET "{column}" = ? WHERE "{column}" = ?'
            for child, refs in models.references.items()
            for column, parent in refs.items()
            if parent == table
        ]
        key = models.natural_keys.get(table)
        self.key_holder = f'SELECT id FROM "{table}" WHERE "{key}" = ? AND id != ?' if key else None


LOG_INSERT_SQL = (
    "INSERT INTO sync_log (tbl, row_id, op, payload, updated_at) VALUES (?, ?, ?, ?, ?) RETURNING id"
)
BATCH_SQL = (
    "SELECT id, tbl, row_id, op, payload, updated_at FROM sync_log "
    "WHERE id IN (SELECT value FROM json_each(?)) ORDER BY id"
)
MARK_SYNCED_SQL = "UPDATE sync_log SET synced = 1 WHERE id IN (SELECT value FROM json_each(?))"
UNSYNCED_SQL = "SELECT id FROM sync_log WHERE synced = 0 ORDER BY id"
STAMP_SQL = "SELECT updated_at FROM sync_stamps WHERE tbl = ? AND row_id = ?"
SET_STAMP_SQL = "INSERT OR REPLACE INTO sync_stamps (tbl, row_id, updated_at) VALUES (?, ?, ?)"
DELETE_STAMP_SQL = "DELETE FROM sync_stamps WHERE tbl = ? AND row_id = ?"
STATE_SQL = "SELECT value FROM sync_state WHERE key = ?"
SET_STATE_SQL = "INSERT OR REPLACE INTO sync_state (key, value) VALUES (?, ?)"
FEED_SQL = (
    "INSERT INTO sync_changes (tbl, row_id, op, updated_at, origin, survivor) VALUES (?, ?, ?, ?, ?, ?)"
)
FEED_AFTER_SQL = (
    "SELECT seq, tbl, row_id, op, updated_at, origin, survivor FROM sync_changes WHERE seq > ? ORDER BY seq"
)
ALIAS_SQL = "INSERT OR REPLACE INTO sync_aliases (tbl, merged_id, survivor_id) VALUES (?, ?, ?)"
ALIAS_OF_SQL = "SELECT survivor_id FROM sync_aliases WHERE tbl = ? AND merged_id = ?"
ALIASES_SQL = "SELECT tbl, merged_id, survivor_id FROM sync_aliases"


@contextmanager
def _transaction(conn):
    """A transaction on SQLAlchemy connection ``conn`` for prepared statements: yields the
    driver's connection; commits through SQLAlchemy (so that its pool sees the transaction
    end, as for any other), rolls back on an error."""
    with conn.begin():
        yield _driver(conn)


def _driver(conn):
    """The ``sqlite3`` connection under a SQLAlchemy connection."""
    return conn.connection.driver_connection


def _unsynced_ids(db):
    return [row[0] for row in db.execute(UNSYNCED_SQL)]


def _message(error):
    return str(getattr(error, "orig", None) or error)


def _sync_error(error):
    message = _message(error)
    return SyncError("busy" if "locked" in message else "other", message)


def _stamp(db, table, row_id):
    found = db.execute(STAMP_SQL, (table, row_id)).fetchone()
    return None if found is None else found[0]


def _state(db, key):
    found = db.execute(STATE_SQL, (key,)).fetchone()
    return 0 if found is None else found[0]


def _set_state(db, key, value):
    db.execute(SET_STATE_SQL, (key, value))


def _set_stamp(db, table, row_id, stamp):
    db.execute(SET_STAMP_SQL, (table, row_id, stamp))
