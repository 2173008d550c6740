"""The application: a small domain registry on SQLAlchemy, with a local SQLite cache.

Written the way the applications that shipped sync bugs were written. Every planted bug is
marked ``BUG(name)`` where it lives, and can be switched off with ``BUGGY_SYNC_BUGS`` (see
README.md). This module is the app's side: models, engines, session factories and the three
write paths the UI uses. ``sync.py`` is the sync layer that hooks into them.
"""

import sqlite3

from sqlalchemy import ForeignKey, Integer, Text, create_engine, event, select
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship, sessionmaker
from sqlalchemy.pool import QueuePool
from sqlalchemy.schema import CreateTable

BUGS = (
    "after_commit_read",
    "memory_pending",
    "untracked_import",
    "insert_or_replace",
    "zero_synced",
    "wallclock_lww",
    "colliding_ids",
    "claims_outside_capture",
    "leaked_lock",
    "no_key_merge",
    "guessed_row_shape",
)

# SQLite's busy wait: short, since a lock the harness holds is held until a later step.
BUSY_TIMEOUT_S = 0.01


def enabled_bugs(spec):
    """``"all"`` (the application as it was), ``"none"``, or a comma-separated list."""
    spec = (spec or "all").strip()
    if spec == "all":
        return frozenset(BUGS)
    if spec == "none":
        return frozenset()
    names = {name.strip() for name in spec.split(",") if name.strip()}
    unknown = names - set(BUGS)
    if unknown:
        raise ValueError(f"BUGGY_SYNC_BUGS: unknown bug(s) {sorted(unknown)}; known: {', '.join(BUGS)}")
    return frozenset(names)


class Base(DeclarativeBase):
    pass


class Domain(Base):
    __tablename__ = "domains"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)  # App.next_id mints the ids
    name: Mapped[str | None] = mapped_column(Text, unique=True)
    registrar: Mapped[str | None] = mapped_column(Text)
    updated: Mapped[int | None] = mapped_column(Integer)
    records: Mapped[list["DnsRecord"]] = relationship(back_populates="domain", cascade="all, delete-orphan")


class Host(Base):
    __tablename__ = "hosts"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    hostname: Mapped[str | None] = mapped_column(Text)
    ip: Mapped[str | None] = mapped_column(Text)


class DnsRecord(Base):
    __tablename__ = "dns_records"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    domain_id: Mapped[int | None] = mapped_column(ForeignKey("domains.id", ondelete="CASCADE"))
    kind: Mapped[str | None] = mapped_column(Text)
    value: Mapped[str | None] = mapped_column(Text)
    domain: Mapped[Domain | None] = relationship(back_populates="records")


MODELS = {"domains": Domain, "hosts": Host, "dns_records": DnsRecord}
COLUMNS = {name: [c.key for c in model.__table__.columns if c.key != "id"] for name, model in MODELS.items()}
NATURAL_KEYS = {"domains": "name"}
# Per table, its columns that refer to another table's id: {"dns_records": {"domain_id": "domains"}}.
REFERENCES = {
    name: {
        c.key: next(iter(c.foreign_keys)).column.table.name for c in model.__table__.columns if c.foreign_keys
    }
    for name, model in MODELS.items()
}

# The app's own bookkeeping in the cache (the sync layer's tables are in sync.py).
APP_DDL = ["CREATE TABLE IF NOT EXISTS app_state (key TEXT PRIMARY KEY, value INTEGER NOT NULL)"]


class WriteRefused(Exception):
    """A write the app rejects as a whole; ``kind`` is the reason."""

    def __init__(self, kind, message):
        super().__init__(message)
        self.kind = kind


class Database:
    """One SQLite file of the app (the cache, or the remote), behind one SQLAlchemy engine for
    the life of the process. The engine is made at import, before the app knows which file to
    open (it learns that at start: ``open``), so that what SQLAlchemy caches per engine, the
    compiled statements and the dialect's first-connect checks, is made once in the process
    that forks the replicas (``warm_up``) rather than again in every replica."""

    def __init__(self):
        self.path = None
        self.bugs = frozenset()
        # The pool keeps a connection open between requests (a new SQLite connection re-reads
        # the schema); the URL is not used, the creator opens ``self.path``.
        self.engine = create_engine("sqlite:///app.db", creator=self._connect, poolclass=QueuePool)

        @event.listens_for(self.engine, "reset")
        def _roll_back(dbapi_connection, _record, _reset_state):
            # BUG(leaked_lock): a COMMIT that fails with "database is locked" leaves the
            # transaction open, and SQLAlchemy, which considers it over, returns the connection to
            # the pool without rolling it back: it keeps SQLite's PENDING lock, and from then on
            # every other connection to that file, in this process or any other, gets "database
            # is locked". The fix rolls back every connection the pool takes back ("reset" runs
            # even when SQLAlchemy thinks the transaction was reset); outside a transaction a
            # rollback does nothing.
            if "leaked_lock" not in self.bugs:
                dbapi_connection.rollback()

    def _connect(self):
        db = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S)
        db.execute("PRAGMA foreign_keys = ON")
        return db

    def open(self, path, bugs):
        """Points the engine at ``path`` and returns it."""
        if self.path not in (None, path):
            self.engine.dispose()  # closes the connections to the file used before
        self.path, self.bugs = path, bugs
        return self.engine


CACHE = Database()
REMOTE = Database()


def endpoint_for(ops):
    """Which of the app's write paths a write goes through: one edit is the form; several new
    rows at once are the importer (a zone file: a domain and its DNS records; a list of
    hosts); any other mix of edits is the batch form."""
    if len(ops) == 1:
        return "form"
    return "import" if all(op["op"] == "insert" for op in ops) else "batch"


class App:
    def __init__(self, cache_path, ddl, replica, bugs):
        self.bugs = bugs
        self.replica = replica
        self.engine = CACHE.open(cache_path, bugs)
        with self.engine.connect() as conn:  # the tables in one transaction, one call
            conn.connection.driver_connection.executescript(";\n".join(["BEGIN", *ddl, *APP_DDL, "COMMIT"]))
        self.Session = sessionmaker(self.engine)  # the sync layer hooks into this factory
        # BUG(untracked_import): the importer was written later, with its own session factory;
        # the sync layer's hooks are registered on Session, so nothing it writes is captured.
        self.ImportSession = sessionmaker(self.engine) if "untracked_import" in bugs else self.Session

    def transaction(self, endpoint):
        """A unit of work for one of the write paths; use as ``with app.transaction(...) as tx``."""
        return _Transaction(self, endpoint)

    def rows(self, table):
        """The app's list views: every row of ``table`` as ``(id, {column: value})``."""
        with self.Session() as session:
            if table == "dns_records" and "guessed_row_shape" in self.bugs:
                # BUG(guessed_row_shape): the records view shows each record's domain, so it
                # reads a join, as the driver's plain rows, and names each value after the
                # cursor's column names. Both tables have an ``id``: the dict keeps the last one,
                # the domain's, so every record shows (and is edited) under its domain's id.
                db = session.connection().connection.driver_connection
                cursor = db.execute(
                    "SELECT * FROM dns_records LEFT JOIN domains ON domains.id = dns_records.domain_id"
                )
                names = [d[0] for d in cursor.description]
                shaped = [dict(zip(names, row)) for row in cursor]
                return [(r["id"], {c: r[c] for c in COLUMNS[table]}) for r in shaped]
            model = MODELS[table]
            return [
                (obj.id, {c: getattr(obj, c) for c in COLUMNS[table]})
                for obj in session.scalars(select(model).order_by(model.id))
            ]

    def next_id(self, session, table):
        """Ids from this replica's own range (the fix for colliding ids), counted in app_state
        in the write's own transaction: one prepared statement on the session's connection."""
        db = session.connection().connection.driver_connection
        return db.execute(NEXT_ID_SQL, (f"next_id:{table}", (self.replica << 40) + 1)).fetchone()[0]


NEXT_ID_SQL = (
    "INSERT INTO app_state (key, value) VALUES (?, ?) "
    "ON CONFLICT (key) DO UPDATE SET value = value + 1 RETURNING value"
)


class _Transaction:
    def __init__(self, app, endpoint):
        self.app = app
        self.endpoint = endpoint

    def __enter__(self):
        if self.endpoint == "form":
            # The form: a session, then an explicit commit.
            self.session = self.app.Session()
        else:
            # The batch form and the importer: a transaction block that commits on exit.
            factory = self.app.ImportSession if self.endpoint == "import" else self.app.Session
            self.context = factory.begin()
            self.session = self.context.__enter__()
        return self

    def __exit__(self, kind, exc, tb):
        try:
            if self.endpoint == "form":
                with self.session:
                    if exc is None:
                        self.session.commit()
            else:
                self.context.__exit__(kind, exc, tb)
        except DB_ERRORS as e:
            raise _refusal(e) from None
        if isinstance(exc, DB_ERRORS):
            raise _refusal(exc) from None
        return False

    # The ops only change objects: the session flushes them all at commit, in one unit of work
    # (a domain before its records), so the tracking hook sees the whole write at once.

    def insert(self, table, values):
        obj = MODELS[table](**values)
        self.session.add(obj)
        if "colliding_ids" in self.app.bugs:
            # BUG(colliding_ids): SQLite numbers the row, max(id) + 1, as on every device.
            self.session.flush()  # the id is needed now: later ops of the write refer to it
        else:
            obj.id = self.app.next_id(self.session, table)
        return obj.id

    def update(self, table, row_id, changes):
        obj = self._get(table, row_id)
        for column, value in changes.items():
            if column not in COLUMNS[table]:
                raise ValueError(f"{table} has no column {column!r}")
            if column == NATURAL_KEYS.get(table) and value != getattr(obj, column):
                raise WriteRefused("key_immutable", f"{table}.{column} cannot change")
            setattr(obj, column, value)

    def delete(self, table, row_id):
        self.session.delete(self._get(table, row_id))  # records go with their domain (ORM cascade)

    def _get(self, table, row_id):
        obj = self.session.get(MODELS[table], row_id)
        if obj is None:
            raise WriteRefused("row_not_found", f"{table} {row_id} does not exist")
        return obj


# What a failed write raises: SQLAlchemy's wrapped errors (the ORM's statements) and the driver's
# own (the prepared statements of next_id and the sync layer's log, run on the same connection).
DB_ERRORS = (IntegrityError, OperationalError, sqlite3.IntegrityError, sqlite3.OperationalError)


def _refusal(error):
    message = str(getattr(error, "orig", error))
    if isinstance(error, (OperationalError, sqlite3.OperationalError)) and "locked" in message:
        return WriteRefused("busy", message)
    if "FOREIGN KEY" in message:
        return WriteRefused("parent_missing", message)
    if "UNIQUE" in message:
        return WriteRefused("natural_key_taken", message)
    return WriteRefused("other", message)


def warm_up():
    """Runs each statement the app has SQLAlchemy compile (inserts, updates of each column,
    deletes, loads) once, through the app and the sync layer, on throwaway files: the engines'
    caches are then warm in every process forked after this (the fork server runs it)."""
    import shutil
    import tempfile

    import sync  # imports this module: import it here, once both are loaded

    folder = tempfile.mkdtemp(prefix="buggy-sync-warm-up-")
    try:
        ddl = [str(CreateTable(table).compile(CACHE.engine)) for table in Base.metadata.sorted_tables]
        sync.create_remote(f"{folder}/remote.db", ddl)
        app = App(f"{folder}/replica0.db", ddl, 0, frozenset())
        layer = sync.SyncLayer(app, f"{folder}/remote.db", clock=lambda: 1)
        with app.transaction("import") as tx:
            ids = {"domains": tx.insert("domains", {"name": "warm.up"})}
            ids["dns_records"] = tx.insert("dns_records", {"domain_id": ids["domains"]})
            other = tx.insert("domains", {"name": "other.warm.up"})
        with app.transaction("form") as tx:
            ids["hosts"] = tx.insert("hosts", {"hostname": "h"})
        for table, columns in COLUMNS.items():
            for column in columns:
                value = other if column in REFERENCES[table] else 2 if column == "updated" else "w"
                if column != NATURAL_KEYS.get(table):
                    with app.transaction("form") as tx:
                        tx.update(table, ids[table], {column: value})
        layer.push()
        for table in ("hosts", "dns_records", "domains"):
            with app.transaction("form") as tx:
                tx.delete(table, ids[table])
        layer.push()
        layer.pull()
    finally:
        for database in (CACHE, REMOTE):
            database.engine.dispose()  # no connection may cross a fork
            database.path = None
        shutil.rmtree(folder, ignore_errors=True)
