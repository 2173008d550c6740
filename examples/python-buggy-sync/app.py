"""The application: a small domain registry on SQLAlchemy, with a local SQLite cache.

Written the way the applications that shipped sync bugs were written. Every planted bug is
marked ``BUG(name)`` where it lives, and can be switched off with ``BUGGY_SYNC_BUGS`` (see
README.md). This module is the app's side: models, engines, session factories and the three
write paths the UI uses. ``sync.py`` is the sync layer that hooks into them.

The ORM models are built from the tables the app is told to keep (``Models``): the harness
sends them in ``init``, its built-in registry (domains, hosts, DNS records) unless the run
declares your application's own (``syncgate check --schema FILE``). Past ``BUILT_IN_TABLES``
the code names no table: what it does to a domain and its DNS records it does to any table and
its children.
"""

import json
import sqlite3

from sqlalchemy import Float, ForeignKey, Integer, LargeBinary, Text, create_engine, event, select
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import DeclarativeBase, mapped_column, relationship, sessionmaker
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


# The tables of the app's built-in registry, as the harness sends them in ``init`` when the run
# declares no schema of its own; the fork server builds and warms their models once (warm_up).
BUILT_IN_TABLES = [
    {
        "name": "domains",
        "columns": [
            {"name": "name", "type": "text"},
            {"name": "registrar", "type": "text"},
            {"name": "updated", "type": "integer"},
        ],
        "natural_key": "name",
    },
    {
        "name": "hosts",
        "columns": [{"name": "hostname", "type": "text"}, {"name": "ip", "type": "text"}],
        "natural_key": None,
    },
    {
        "name": "dns_records",
        "columns": [
            {"name": "domain_id", "type": "integer", "references": "domains"},
            {"name": "kind", "type": "text"},
            {"name": "value", "type": "text"},
        ],
        "natural_key": None,
    },
]

# A column's SQLAlchemy type, by its type in the schema (PROTOCOL.md, values): a real is a
# Python float, a blob Python bytes.
COLUMN_TYPES = {"integer": Integer, "real": Float, "text": Text, "blob": LargeBinary}
# Names a declarative class cannot give a column attribute.
RESERVED_ATTRIBUTES = {"metadata", "registry"}


class Models:
    """The app's ORM models: one declarative class per table of ``tables`` (the schema's
    ``tables``), as the app's models module would declare them, with the schema's facts about
    them that the app and the sync layer look up by table name.

    Each class has an integer primary key ``id`` (the app mints the ids) and one attribute per
    column, named as the column; a column that refers to another table is a foreign key with
    ``ON DELETE CASCADE``, and the parent class gets a one-to-many relationship to those
    children with ``cascade="all, delete-orphan"`` (a domain's DNS records), so that
    deleting a row through the ORM deletes its children through the ORM too, down every chain
    and under a table's own rows, and the tracking hook sees each of those deletes."""

    def __init__(self, tables):
        class Base(DeclarativeBase):
            pass

        self.Base = Base
        self.classes = {}  # table -> its mapped class
        self.columns = {}  # table -> its synced columns, in the schema's order ("id" aside)
        self.types = {}  # table -> {column: "integer" | "real" | "text" | "blob"}
        self.natural_keys = {}  # table -> its natural key column (tables that have one)
        self.references = {}  # table -> {column: parent}: {"dns_records": {"domain_id": "domains"}}
        for table in tables:
            name, columns = table["name"], table["columns"]
            self.columns[name] = [column["name"] for column in columns]
            self.types[name] = {column["name"]: column["type"] for column in columns}
            if table.get("natural_key"):
                self.natural_keys[name] = table["natural_key"]
            self.references[name] = {c["name"]: c["references"] for c in columns if c.get("references")}
            attributes = {"__tablename__": name, "id": mapped_column(Integer, primary_key=True)}
            for column in columns:
                if column["name"] in RESERVED_ATTRIBUTES or column["name"].startswith(("_sa_", "__")):
                    raise ValueError(f"{name}.{column['name']}: a column name this app's models cannot map")
                parent = column.get("references")
                attributes[column["name"]] = mapped_column(
                    COLUMN_TYPES[column["type"]],
                    *([ForeignKey(f"{parent}.id", ondelete="CASCADE")] if parent else []),
                    nullable=not column.get("not_null", False),
                    unique=column["name"] == table.get("natural_key"),
                )
            self.classes[name] = type(_class_name(name), (Base,), attributes)
        for child, references in self.references.items():
            for column, parent in references.items():
                children = self.classes[child]
                attribute = f"{child}_by_{column}"  # "dns_records_by_domain_id", a domain's records
                while attribute in self.types[parent]:
                    attribute += "_"
                to_children = relationship(
                    children, foreign_keys=[children.__table__.c[column]], cascade="all, delete-orphan"
                )
                setattr(self.classes[parent], attribute, to_children)


def _class_name(table):
    """``dns_records`` -> ``DnsRecords``."""
    return "".join(part[:1].upper() + part[1:] for part in table.split("_")) or table


_MODELS = {}  # the models of each set of tables this process has seen


def models_for(tables):
    """The models of ``tables``, built once per process (the built-in tables' in the fork server,
    by warm_up, so that every replica it forks finds them made and their statements compiled)."""
    key = json.dumps(tables, sort_keys=True)
    if key not in _MODELS:
        _MODELS[key] = Models(tables)
    return _MODELS[key]


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
    def __init__(self, cache_path, schema, replica, bugs):
        """``schema``: the tables to keep and their ``ddl``, as the harness sends them."""
        self.bugs = bugs
        self.replica = replica
        self.models = models_for(schema["tables"])
        self.engine = CACHE.open(cache_path, bugs)
        with self.engine.connect() as conn:  # the tables in one transaction, one call
            script = ["BEGIN", *schema["ddl"], *APP_DDL, "COMMIT"]
            conn.connection.driver_connection.executescript(";\n".join(script))
        self.Session = sessionmaker(self.engine)  # the sync layer hooks into this factory
        # BUG(untracked_import): the importer was written later, with its own session factory;
        # the sync layer's hooks are registered on Session, so nothing it writes is captured.
        self.ImportSession = sessionmaker(self.engine) if "untracked_import" in bugs else self.Session

    def transaction(self, endpoint):
        """A unit of work for one of the write paths; use as ``with app.transaction(...) as tx``."""
        return _Transaction(self, endpoint)

    def rows(self, table):
        """The app's list views: every row of ``table`` as ``(id, {column: value})``."""
        columns = self.models.columns[table]
        parents = self.models.references[table]
        with self.Session() as session:
            if parents and "guessed_row_shape" in self.bugs:
                # BUG(guessed_row_shape): the view of a table that refers to another shows each
                # row's parent (the DNS records view, each record's domain), so it reads a join,
                # as the driver's plain rows, and names each value after the cursor's column
                # names. Both tables have an ``id``: the dict keeps the last one, the parent's, so
                # every record shows (and is edited) under its domain's id.
                column, parent = next(iter(parents.items()))
                db = session.connection().connection.driver_connection
                cursor = db.execute(
                    f'SELECT * FROM "{table}" LEFT JOIN "{parent}" AS parent '
                    f'ON parent.id = "{table}"."{column}"'
                )
                names = [d[0] for d in cursor.description]
                shaped = [dict(zip(names, row)) for row in cursor]
                return [(r["id"], {c: r[c] for c in columns}) for r in shaped]
            model = self.models.classes[table]
            return [
                (obj.id, {c: getattr(obj, c) for c in columns})
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
        obj = self.app.models.classes[table](**values)
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
            if column not in self.app.models.columns[table]:
                raise ValueError(f"{table} has no column {column!r}")
            if column == self.app.models.natural_keys.get(table) and value != getattr(obj, column):
                raise WriteRefused("key_immutable", f"{table}.{column} cannot change")
            setattr(obj, column, value)

    def delete(self, table, row_id):
        self.session.delete(self._get(table, row_id))  # children go with their parent (ORM cascade)

    def _get(self, table, row_id):
        obj = self.session.get(self.app.models.classes[table], row_id)
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


# A value of each type, for warm_up.
WARM_UP_VALUES = {"integer": 2, "real": 2.5, "text": "w", "blob": b"w"}


def warm_up(tables=BUILT_IN_TABLES):
    """Runs each statement the app has SQLAlchemy compile (inserts, updates of each column,
    deletes, loads) once, through the app and the sync layer, on throwaway files, with the
    models of ``tables``: the engines' caches are then warm in every process forked after this
    (the fork server runs it, for the built-in tables; a run on other tables builds their
    models, and compiles their statements, in each replica's process)."""
    import shutil
    import tempfile

    import sync  # imports this module: import it here, once both are loaded

    models = models_for(tables)
    folder = tempfile.mkdtemp(prefix="buggy-sync-warm-up-")
    try:
        order = [table.name for table in models.Base.metadata.sorted_tables]  # parents first
        ddl = [str(CreateTable(models.classes[name].__table__).compile(CACHE.engine)) for name in order]
        sync.create_remote(f"{folder}/remote.db", ddl)
        app = App(f"{folder}/replica0.db", {"tables": tables, "ddl": ddl}, 0, frozenset())
        layer = sync.SyncLayer(app, f"{folder}/remote.db", clock=lambda: 1)

        def row(table, key, ids):
            types, parents = models.types[table], models.references[table]
            values = {column: WARM_UP_VALUES[kind] for column, kind in types.items()}
            for column, parent in parents.items():
                values[column] = ids.get(parent) if parent != table else None  # no circles
            if table in models.natural_keys:
                values[models.natural_keys[table]] = key
            return values

        ids, others = {}, {}
        with app.transaction("import") as tx:  # a row of each table, each under its parents'
            for table in order:
                ids[table] = tx.insert(table, row(table, "warm.up", ids))
        for table in order:  # another row of each, through the form
            with app.transaction("form") as tx:
                others[table] = tx.insert(table, row(table, "other.warm.up", ids))
        for table in order:
            for column, kind in models.types[table].items():
                parent = models.references[table].get(column)
                if column != models.natural_keys.get(table):
                    with app.transaction("form") as tx:
                        value = others[parent] if parent else WARM_UP_VALUES[kind]
                        tx.update(table, ids[table], {column: value})
        layer.push()
        for table in reversed(order):
            with app.transaction("form") as tx:
                tx.delete(table, ids[table])
        layer.push()
        layer.pull()
    finally:
        for database in (CACHE, REMOTE):
            database.engine.dispose()  # no connection may cross a fork
            database.path = None
        shutil.rmtree(folder, ignore_errors=True)
