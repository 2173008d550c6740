"""syncgate adapter for cr-sqlite (vlcn.io's CRDT extension for SQLite), over apsw.

    so="$(bash examples/crsqlite/build.sh)"            # builds (or finds) crsqlite.so
    syncgate check --engine "exec:python3 -S examples/crsqlite/adapter.py" --cases 200

Every replica's cache is a cr-sqlite database (each synced table made a CRR with
`crsql_as_crr`), and the remote is one more cr-sqlite database, the file the harness names.
Changes travel through `crsql_changes`:

- push: this replica's own changes (`site_id = crsql_site_id()`) with a local `db_version`
  above the push cursor are inserted into the remote's `crsql_changes`, in one remote
  transaction; then the cursor moves, in a local transaction;
- pull: the remote's changes with a remote `db_version` above the pull cursor, made at other
  sites, are inserted into the cache's `crsql_changes`; the cursor moves in that same local
  transaction.

Both cursors live in the cache (`_sgc_meta`, a plain table cr-sqlite does not sync), so a
crash loses nothing: a push that committed remotely but not locally is sent again, and
cr-sqlite's merge makes the second copy a no-op. cr-sqlite merges cell by cell (the cell with
the higher `col_version` wins, a write made after pulling another has a higher one; ties by
value); a delete raises the row's causal length, so it beats a concurrent update.

What an application on cr-sqlite does itself, because cr-sqlite refuses `UNIQUE` (besides the
primary key) and checked foreign keys on its tables, is done here in each write transaction:
an insert whose natural key is held by a live row here is refused, a reference to a row not
here is refused, and a delete deletes the row's children (recursively). Across replicas none
of this holds (documented by cr-sqlite): two replicas may insert one natural key and keep two
rows, and a child inserted under a parent deleted elsewhere dangles. The gate reports those as
`Integrity` failures until the protocol can declare them (README.md).

Environment:
- CRSQLITE_SO: the extension (default: build.sh's cache path, computed as build.sh does);
- CRSQLITE_NO_TRIGGER_RESTORE=1: do not put back cr-sqlite's triggers when a migration
  rebuilt a table while the replica was down (the adapter's fix, switchable off to show that
  the gate catches the writes then left uncaptured).
"""

import os
import sys

try:
    import syncgate_adapter as sg  # pip install ./adapters/python (adapters/python/README.md)
except ImportError:  # python3 -S: site-packages, where pip put it, is not on the path yet
    import sysconfig

    sys.path.append(sysconfig.get_paths()["purelib"])
    import syncgate_adapter as sg

sg.fork_server(__file__)  # below this line, imports happen once per fork server

import glob  # noqa: E402
import hashlib  # noqa: E402

import apsw  # noqa: E402

VERSION = "0.16.3"
HERE = os.path.dirname(os.path.abspath(__file__))
# The columns of crsql_changes, in the order they are read and written.
CHANGES = '"table", "pk", "cid", "val", "col_version", "db_version", "site_id", "cl", "seq"'
# cr-sqlite's three capture triggers per CRR (`<table>__crsql_{i,u,d}trig`).
TRIGGER_SUFFIXES = ("__crsql_itrig", "__crsql_utrig", "__crsql_dtrig")
# Row ids: replica r mints ids in [r << 40, (r + 1) << 40), so that no two replicas mint the
# same id (cr-sqlite merges rows by primary key: a shared id would be one row).
ID_SPACE_BITS = 40
# The declared column types (PROTOCOL.md, values) as SQLite column types: a value keeps its type.
SQL_TYPES = {"integer": "INTEGER", "real": "REAL", "text": "TEXT", "blob": "BLOB"}
# A lock the harness holds is held until a later step: give up quickly.
BUSY_TIMEOUT_MS = 20


def quote(name):
    return '"' + name.replace('"', '""') + '"'


def extension_path():
    """CRSQLITE_SO, or where build.sh caches the build of these patches."""
    if os.environ.get("CRSQLITE_SO"):
        return os.environ["CRSQLITE_SO"]
    digest = hashlib.sha256()
    for path in sorted(glob.glob(os.path.join(HERE, "patches", "*.patch"))):
        with open(path, "rb") as f:
            digest.update(f.read())
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(cache, "syncgate", f"crsqlite-{VERSION}-{digest.hexdigest()[:12]}", "crsqlite.so")


def is_busy(e):
    return isinstance(e, (apsw.BusyError, apsw.LockedError))


class Busy(Exception):
    """The cache or the remote is locked (by the harness, or another replica)."""


class CrSqlite:
    """One cr-sqlite database file: a connection with the extension loaded."""

    def __init__(self, path, so):
        self.conn = apsw.Connection(path)
        self.conn.set_busy_timeout(BUSY_TIMEOUT_MS)
        self.conn.enable_load_extension(True)
        try:
            self.conn.load_extension(so, "sqlite3_crsqlite_init")
        except apsw.ExtensionLoadingError:
            # The extension reads (and on a new file writes) its own tables when it loads; it
            # says only "error during initialization". A locked file is the usual cause: ask.
            try:
                self.conn.execute("SELECT count(*) FROM sqlite_master").fetchall()
            except apsw.Error as e:
                if is_busy(e):
                    raise Busy(f"{path} locked while loading cr-sqlite: {e}") from None
            raise
        self.conn.enable_load_extension(False)

    def rows(self, sql, params=()):
        return self.conn.execute(sql, params).fetchall()

    def one(self, sql, params=()):
        row = self.conn.execute(sql, params).fetchone()
        return None if row is None else row[0]

    def begin(self, immediate=True):
        try:
            self.conn.execute("BEGIN IMMEDIATE" if immediate else "BEGIN")
        except apsw.Error as e:
            if is_busy(e):
                raise Busy(str(e)) from None
            raise

    def commit(self):
        try:
            self.conn.execute("COMMIT")
        except apsw.Error as e:
            self.rollback()
            if is_busy(e):
                raise Busy(str(e)) from None
            raise

    def rollback(self):
        if not self.conn.get_autocommit():
            self.conn.execute("ROLLBACK")


class CrSqliteAdapter(sg.Adapter):
    engine = f"cr-sqlite {VERSION} (syncgate example adapter, apsw)"

    def init(self, msg):
        self.so = extension_path()
        if not os.path.exists(self.so):
            raise sg.Unsupported(f"cr-sqlite extension {self.so} not found: run examples/crsqlite/build.sh first")
        self.restore_triggers = os.environ.get("CRSQLITE_NO_TRIGGER_RESTORE", "") not in ("1", "true", "yes")
        # A planted bug for ci.sh: writes around the API are run, but not captured.
        self.uncaptured_outside = os.environ.get("CRSQLITE_UNCAPTURED_OUTSIDE", "") in ("1", "true", "yes")
        self.names = [t["name"] for t in self.schema["tables"]]
        # Children of each table: (child table, reference column), self-references included.
        self.children = {name: [] for name in self.names}
        for t in self.schema["tables"]:
            for c in t["columns"]:
                if c.get("references"):
                    self.children[c["references"]].append((t["name"], c["name"]))
        if self.remote_path is None:
            raise sg.Unsupported("this adapter keeps its remote in a SQLite file (--remote sqlite)")
        if self.create_remote:
            remote = CrSqlite(self.remote_path, self.so)
            remote.begin()
            self.create_tables(remote)
            remote.commit()
            remote.conn.execute("SELECT crsql_finalize()")
            remote.conn.close()
        self.remote = None  # opened at the first push or pull
        self.minted_next = 0  # ids handed out by mint_id and not yet counted in _sgc_meta
        if self.fresh:
            self.cache_db = CrSqlite(self.cache, self.so)
            self.cache_db.conn.execute("PRAGMA journal_mode = WAL")
            self.cache_db.begin()
            self.create_tables(self.cache_db)
            self.cache_db.conn.execute(
                "CREATE TABLE IF NOT EXISTS _sgc_meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL)"
            )
            self.cache_db.conn.execute(
                "INSERT OR IGNORE INTO _sgc_meta (key, value) VALUES ('push_cursor', 0), ('pull_cursor', 0), "
                "('next_id', 1)"
            )
            self.cache_db.commit()
        else:
            self.cache_db = CrSqlite(self.cache, self.so)
        self.site_id = self.cache_db.one("SELECT crsql_site_id()")
        # Tables a migration rebuilt while the replica was down have lost cr-sqlite's triggers.
        # Put them back now if the cache lets us, else in the next transaction that writes.
        self.triggers_checked = False
        try:
            self.check_triggers()
        except Busy:
            sg.log("crsqlite adapter: the cache is locked at open; checking triggers at the next write")
        return (
            {
                # cr-sqlite reads no clock (its versions are counters), so set_clock changes nothing
                # and clock skew cannot matter: the harness may skew it.
                "clock": True,
                "crash_points": list(sg.CRASH_POINTS),
                # The harness's own connection cannot load the extension: its writes would fail
                # (cr-sqlite's triggers call the extension's functions). So the harness sends
                # them here (exec_sql), to run on a connection with the extension, as the rest of
                # the application would, and cr-sqlite captures them like any write.
                "outside_writes": "delegated",
                # SQLite's own choice (max rowid + 1) would take an id of this replica's range
                # that the counter hands out later, or one of another replica's range.
                "outside_insert_ids": "engine",
                "profile": None,
                "reads": True,
            },
            {
                "merge": "column",  # cell-level last-writer-wins (col_version, then value)
                "delete": "delete_wins",  # causal length: a delete beats a concurrent update
                # Unique within one replica (this adapter refuses a taken key, as the application
                # would); across replicas cr-sqlite keeps both rows (no UNIQUE on a CRR).
                "natural_keys": "local_only",
                "explicit_ids": False,
                # A write naming a parent this replica lacks is refused and a delete cascades by
                # hand; a merge can leave a child whose parent another replica deleted (no checked
                # foreign keys on a CRR).
                "references": "local_only",
            },
        )

    # --- schema -------------------------------------------------------------------------------

    def create_tables(self, db):
        """The synced tables as cr-sqlite accepts them: a non-nullable primary key, no UNIQUE
        besides it, no checked foreign keys (so no REFERENCES clause), then `crsql_as_crr`."""
        for t in self.schema["tables"]:
            cols = ['"id" INTEGER PRIMARY KEY NOT NULL']
            cols += [f"{quote(c['name'])} {SQL_TYPES[c['type']]}" for c in t["columns"]]
            db.conn.execute(f"CREATE TABLE IF NOT EXISTS {quote(t['name'])} ({', '.join(cols)})")
            # Plain indexes (allowed on a CRR) for this adapter's own checks.
            indexed = [c["name"] for c in t["columns"] if c.get("references")]
            if t.get("natural_key"):
                indexed.append(t["natural_key"])
            for col in indexed:
                db.conn.execute(
                    f"CREATE INDEX IF NOT EXISTS {quote(t['name'] + '_' + col + '_sgc')} "
                    f"ON {quote(t['name'])} ({quote(col)})"
                )
            db.conn.execute("SELECT crsql_as_crr(?)", (t["name"],))

    def missing_triggers(self):
        have = {
            name
            for (name,) in self.cache_db.rows("SELECT name FROM sqlite_master WHERE type = 'trigger'")
        }
        return [t for t in self.names if any(t + s not in have for s in TRIGGER_SUFFIXES)]

    def check_triggers(self, in_transaction=False):
        """Puts cr-sqlite's capture triggers back on every table that lost them (a migration
        rebuilt it while the replica was down): `crsql_as_crr` again, which recreates them (and
        backfills clock rows for any row that has none). Off with CRSQLITE_NO_TRIGGER_RESTORE."""
        if self.triggers_checked:
            return
        missing = self.missing_triggers()
        if missing and not self.restore_triggers:
            sg.log(f"crsqlite adapter: tables without cr-sqlite's triggers: {missing}; NOT restored "
                   "(CRSQLITE_NO_TRIGGER_RESTORE): their writes will not be synced")
        elif missing:
            db = self.cache_db
            if not in_transaction:
                db.begin()
            try:
                for t in missing:
                    db.conn.execute("SELECT crsql_as_crr(?)", (t,))
            except BaseException:
                if not in_transaction:
                    db.rollback()
                raise
            if not in_transaction:
                db.commit()
            sg.log(f"crsqlite adapter: restored cr-sqlite's triggers on {missing}")
        self.triggers_checked = True

    # --- writes -------------------------------------------------------------------------------

    def write(self, ops):
        db = self.cache_db
        try:
            db.begin()
        except Busy as e:
            raise sg.Refused("busy", f"cache locked: {e}") from None
        try:
            self.check_triggers(in_transaction=True)
            inserted, ids = {}, []
            for k, op in enumerate(ops):
                table = op["table"]
                if table not in self.children:
                    raise sg.Malformed(f"unknown table {table!r}")
                if op["op"] == "insert":
                    inserted[k] = self.insert(table, sg.resolve_refs(op["values"], inserted))
                    ids.append(inserted[k])
                elif op["op"] == "update":
                    self.update(table, op["id"], op["set"])
                else:
                    self.delete(table, op["id"])
            db.commit()
        except Busy as e:
            db.rollback()
            raise sg.Refused("busy", f"cache locked: {e}") from None
        except apsw.Error as e:
            db.rollback()
            if is_busy(e):
                raise sg.Refused("busy", f"cache locked: {e}") from None
            raise
        except BaseException:
            db.rollback()
            raise
        return ids

    def columns(self, table, values):
        known = {c["name"]: c for c in self.schema["tables"][self.names.index(table)]["columns"]}
        for name in values:
            if name not in known:
                raise sg.Malformed(f"{table} has no column {name!r}")
        return known

    def exists(self, table, row_id):
        return self.cache_db.one(f"SELECT 1 FROM {quote(table)} WHERE id = ?", (row_id,)) is not None

    def check_refs_and_key(self, table, row_id, values):
        known = self.columns(table, values)
        for name, value in values.items():
            parent = known[name].get("references")
            if parent and value is not None and not self.exists(parent, value):
                raise sg.Refused("parent_missing", f"{table}.{name} = {value}: no such {parent} row here")
        key = self.schema["tables"][self.names.index(table)].get("natural_key")
        if key in values and values[key] is not None:
            holder = self.cache_db.one(
                f"SELECT id FROM {quote(table)} WHERE {quote(key)} = ? AND id IS NOT ?", (values[key], row_id)
            )
            if holder is not None:
                raise sg.Refused("natural_key_taken", f"{table}.{key} = {values[key]!r} is row {holder}'s")

    def next_n(self):
        """The next id number: above every one a row of this replica's range took (the counter)
        and every one mint_id handed out in this process."""
        n = max(self.cache_db.one("SELECT value FROM _sgc_meta WHERE key = 'next_id'"), self.minted_next)
        self.minted_next = n + 1
        return n

    def count_id(self, row_id):
        """A row took `row_id`: the counter moves above it (in the writing transaction) when it is
        of this replica's range."""
        if row_id >> ID_SPACE_BITS == self.replica:
            self.cache_db.conn.execute(
                "UPDATE _sgc_meta SET value = max(value, ?) WHERE key = 'next_id'",
                ((row_id & ((1 << ID_SPACE_BITS) - 1)) + 1,),
            )

    def mint_id(self, table):
        if table not in self.children:
            raise sg.Malformed(f"unknown table {table!r}")
        return (self.replica << ID_SPACE_BITS) + self.next_n()

    def exec_sql(self, sql, params):
        """A write around the API (outside_writes: delegated): the statement, on this adapter's
        connection (the extension loaded, so cr-sqlite's triggers capture it), in a transaction
        of its own, with none of write's checks."""
        db = self.cache_db
        try:
            db.begin()
        except Busy as e:
            raise sg.Refused("busy", f"cache locked: {e}") from None
        try:
            self.check_triggers(in_transaction=True)
            if self.uncaptured_outside:
                # The planted bug: cr-sqlite's triggers record nothing while its sync bit is set
                # (as while it merges changes), so the write never syncs.
                db.conn.execute("SELECT crsql_internal_sync_bit(1)")
            try:
                db.conn.execute(sql, params)
            finally:
                if self.uncaptured_outside:
                    db.conn.execute("SELECT crsql_internal_sync_bit(0)")
            changes, rowid = db.conn.changes(), db.conn.last_insert_rowid()
            if sql.lstrip().upper().startswith("INSERT"):
                self.count_id(rowid)
            db.commit()
        except Busy as e:
            db.rollback()
            raise sg.Refused("busy", f"cache locked: {e}") from None
        except apsw.Error as e:
            db.rollback()
            if is_busy(e):
                raise sg.Refused("busy", f"cache locked: {e}") from None
            raise sg.Refused("other", str(e)) from None
        return changes, rowid

    def insert(self, table, values):
        db = self.cache_db
        n = self.next_n()
        row_id = (self.replica << ID_SPACE_BITS) + n
        db.conn.execute("UPDATE _sgc_meta SET value = ? WHERE key = 'next_id'", (n + 1,))
        self.check_refs_and_key(table, row_id, values)
        names = ["id"] + list(values)
        db.conn.execute(
            f"INSERT INTO {quote(table)} ({', '.join(map(quote, names))}) VALUES ({', '.join('?' * len(names))})",
            [row_id] + list(values.values()),
        )
        return row_id

    def update(self, table, row_id, values):
        if not self.exists(table, row_id):
            raise sg.Refused("row_not_found", f"{table}/{row_id} is not here")
        if not values:
            return
        self.check_refs_and_key(table, row_id, values)
        sets = ", ".join(f"{quote(name)} = ?" for name in values)
        self.cache_db.conn.execute(
            f"UPDATE {quote(table)} SET {sets} WHERE id = ?", list(values.values()) + [row_id]
        )

    def delete(self, table, row_id):
        if not self.exists(table, row_id):
            raise sg.Refused("row_not_found", f"{table}/{row_id} is not here")
        self.delete_tree(table, row_id)

    def delete_tree(self, table, row_id):
        """ON DELETE CASCADE, done by hand (a CRR cannot have checked foreign keys): the row and
        every row under it, through every reference, self-references included."""
        doomed, todo = set(), [(table, row_id)]
        while todo:
            node = todo.pop()
            if node in doomed:
                continue
            doomed.add(node)
            for child, col in self.children[node[0]]:
                under = self.cache_db.rows(f"SELECT id FROM {quote(child)} WHERE {quote(col)} = ?", (node[1],))
                todo.extend((child, child_id) for (child_id,) in under)
        for t, i in doomed:
            self.cache_db.conn.execute(f"DELETE FROM {quote(t)} WHERE id = ?", (i,))

    def read(self, table):
        if table not in self.children:
            raise sg.Malformed(f"unknown table {table!r}")
        cols = [c["name"] for c in self.schema["tables"][self.names.index(table)]["columns"]]
        names = ", ".join(["id"] + [quote(c) for c in cols])
        rows = self.cache_db.rows(f"SELECT {names} FROM {quote(table)} ORDER BY id")
        return [(row[0], dict(zip(cols, row[1:]))) for row in rows]

    # --- sync ---------------------------------------------------------------------------------

    def remote_db(self):
        if self.remote is None:
            self.remote = CrSqlite(self.remote_path, self.so)
        return self.remote

    def cursor(self, name):
        return self.cache_db.one("SELECT value FROM _sgc_meta WHERE key = ?", (name,))

    def pending(self):
        return self.cache_db.one(
            "SELECT count(*) FROM crsql_changes WHERE db_version > ? AND site_id = ?",
            (self.cursor("push_cursor"), self.site_id),
        )

    def push(self):
        try:
            return self.push_changes(), 0, 0
        except (Busy, apsw.BusyError, apsw.LockedError) as e:
            raise sg.SyncFailed("busy", str(e)) from None

    def pull(self):
        try:
            return 0, self.pull_changes(), 0
        except (Busy, apsw.BusyError, apsw.LockedError) as e:
            raise sg.SyncFailed("busy", str(e)) from None

    def push_changes(self):
        db = self.cache_db
        if not self.triggers_checked:
            db.begin()
            try:
                self.check_triggers(in_transaction=True)
                db.commit()
            except BaseException:
                db.rollback()
                raise
        db.begin(immediate=False)  # one snapshot: the changes and the cursor agree
        try:
            since = self.cursor("push_cursor")
            changes = db.rows(
                f"SELECT {CHANGES} FROM crsql_changes WHERE db_version > ? AND site_id = ? "
                "ORDER BY db_version, seq",
                (since, self.site_id),
            )
        finally:
            db.rollback()
        if not changes:
            return 0
        upto = max(c[5] for c in changes)
        remote = self.remote_db()
        remote.begin()
        try:
            self.merge(remote, changes)
            self.crash_point("push_before_remote_commit")
        except BaseException:
            remote.rollback()
            raise
        remote.commit()
        self.crash_point("push_after_remote_commit")
        # The remote has them; now the cursor. If the cache is locked, the push fails and the
        # next one sends these changes again (a no-op merge on the remote).
        db.begin()
        try:
            db.conn.execute(
                "UPDATE _sgc_meta SET value = max(value, ?) WHERE key = 'push_cursor'", (upto,)
            )
        except BaseException:
            db.rollback()
            raise
        db.commit()
        return len(changes)

    def pull_changes(self):
        remote = self.remote_db()
        since = self.cursor("pull_cursor")
        remote.begin(immediate=False)
        try:
            changes = remote.rows(
                f"SELECT {CHANGES} FROM crsql_changes WHERE db_version > ? AND site_id IS NOT ? "
                "ORDER BY db_version, seq",
                (since, self.site_id),
            )
            upto = remote.one("SELECT max(db_version) FROM crsql_changes WHERE db_version > ?", (since,))
        except apsw.Error as e:
            remote.rollback()
            if is_busy(e):
                raise Busy(str(e)) from None
            raise
        remote.rollback()
        if upto is None:
            return 0
        db = self.cache_db
        db.begin()
        try:
            self.check_triggers(in_transaction=True)
            self.merge(db, changes)
            self.crash_point("pull_before_local_commit")
            db.conn.execute("UPDATE _sgc_meta SET value = max(value, ?) WHERE key = 'pull_cursor'", (upto,))
        except BaseException:
            db.rollback()
            raise
        db.commit()
        return len(changes)

    @staticmethod
    def merge(db, changes):
        try:
            db.conn.executemany(
                f"INSERT INTO crsql_changes ({CHANGES}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", changes
            )
        except apsw.Error as e:
            if is_busy(e):
                raise Busy(str(e)) from None
            raise


if __name__ == "__main__":
    sg.run(CrSqliteAdapter)
