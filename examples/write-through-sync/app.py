"""The application: a small domain registry on SQLAlchemy's ORM, with a local SQLite cache.

It knows nothing about syncing except two things a sync layer asks of it: new rows get ids
from this replica's own range (``replica << 40`` up), so that no two replicas mint the same id;
and every write goes through one unit of work, ``App.save``: a session, the edits, one commit
(or, when the application gives up half way, a rollback). ``wtsync.py`` hooks into that
session's events.
"""

import sqlite3

from sqlalchemy import ForeignKey, Integer, Text, create_engine, event, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, sessionmaker
from sqlalchemy.orm.exc import StaleDataError
from sqlalchemy.pool import QueuePool

# SQLite's busy wait: short, since a lock another connection holds may stay for a long time (the
# harness holds one over several steps), and waiting longer only makes the answer "busy" later.
BUSY_TIMEOUT_S = 0.01


class Base(DeclarativeBase):
    pass


class Domain(Base):
    __tablename__ = "domains"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str | None] = mapped_column(Text, unique=True)  # the natural key: immutable
    registrar: Mapped[str | None] = mapped_column(Text)
    updated: Mapped[int | None] = mapped_column(Integer)


class Host(Base):
    __tablename__ = "hosts"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    hostname: Mapped[str | None] = mapped_column(Text)
    ip: Mapped[str | None] = mapped_column(Text)


class DnsRecord(Base):
    __tablename__ = "dns_records"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # No ORM relationship: deleting a domain deletes its records in SQLite (ON DELETE CASCADE).
    domain_id: Mapped[int | None] = mapped_column(ForeignKey("domains.id", ondelete="CASCADE"))
    kind: Mapped[str | None] = mapped_column(Text)
    value: Mapped[str | None] = mapped_column(Text)


MODELS = {model.__tablename__: model for model in (Domain, Host, DnsRecord)}
COLUMNS = {name: [c.key for c in model.__table__.columns if c.key != "id"] for name, model in MODELS.items()}
NATURAL_KEYS = {"domains": "name"}
# Per table, its columns that refer to another table's id: {"dns_records": {"domain_id": "domains"}}.
REFERENCES = {
    name: {c.key: next(iter(c.foreign_keys)).column.table.name for c in model.__table__.columns if c.foreign_keys}
    for name, model in MODELS.items()
}

APP_DDL = ["CREATE TABLE IF NOT EXISTS app_ids (tbl TEXT PRIMARY KEY, last INTEGER NOT NULL)"]
NEXT_ID_SQL = text(
    "INSERT INTO app_ids (tbl, last) VALUES (:tbl, :first) "
    "ON CONFLICT (tbl) DO UPDATE SET last = last + 1 RETURNING last"
)


class WriteRefused(Exception):
    """A save the application rejects as a whole; ``kind`` is the reason (a refusal class of
    PROTOCOL.md)."""

    def __init__(self, kind, message):
        super().__init__(message)
        self.kind = kind


class SqliteFile:
    """One SQLite file behind one SQLAlchemy engine for the life of the process.

    The engine is made at import, before the process knows which file it will open (``open``),
    so that what SQLAlchemy caches per engine (compiled statements, the dialect's first-connect
    checks) is made once, in the fork server that forks the replicas (``wtsync.warm_up``).
    Transactions are SQLite's own: ``BEGIN`` when SQLAlchemy begins (the driver's implicit
    transactions are off), and the pool rolls back whatever a connection it takes back still
    has open, so a failed ``COMMIT`` never leaves a lock behind.
    """

    def __init__(self):
        self.path = None
        self.engine = create_engine("sqlite://", creator=self._connect, poolclass=QueuePool)
        event.listen(self.engine, "begin", lambda conn: conn.exec_driver_sql("BEGIN"))

    def _connect(self):
        db = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA foreign_keys = ON")
        return db

    def open(self, path):
        """Points the engine at ``path`` and returns it."""
        if self.path not in (None, path):
            self.engine.dispose()
        self.path = path
        return self.engine

    def close(self):
        self.engine.dispose()  # no connection may cross a fork
        self.path = None


CACHE = SqliteFile()


class App:
    def __init__(self, cache_path, ddl, replica):
        self.replica = replica
        self.engine = CACHE.open(cache_path)
        with self.engine.begin() as conn:
            for statement in [*ddl, *APP_DDL]:
                conn.exec_driver_sql(statement)
        self.Session = sessionmaker(self.engine)  # the sync layer hooks into this factory

    def save(self, ops, roll_back=False):
        """One unit of work: applies the edits ``ops`` (PROTOCOL.md's write ops) in one session
        and commits; returns the ids of the inserted rows. With ``roll_back``, the edits are
        flushed to the database and then rolled back, as when the request handler raises half
        way. Raises ``WriteRefused`` when nothing was saved."""
        inserted, ids = {}, []
        try:
            with self.Session() as session:
                for k, op in enumerate(ops):
                    model = MODELS[op["table"]]
                    if op["op"] == "insert":
                        inserted[k] = self._insert(session, model, op["values"], inserted)
                        ids.append(inserted[k])
                    elif op["op"] == "update":
                        self._update(session, model, op["id"], op["set"])
                    else:
                        session.delete(self._get(session, model, op["id"]))
                session.flush()
                if roll_back:
                    session.rollback()
                else:
                    session.commit()
        except StaleDataError as e:
            raise WriteRefused("row_not_found", str(e)) from None
        except (DBAPIError, sqlite3.Error) as e:
            raise _refusal(e) from None
        return ids

    def _insert(self, session, model, values, inserted):
        table = model.__tablename__
        values = {c: _resolve(values.get(c), inserted) for c in COLUMNS[table]}
        first = (self.replica << 40) + 1
        row_id = session.execute(NEXT_ID_SQL, {"tbl": table, "first": first}).scalar_one()
        session.add(model(id=row_id, **values))
        return row_id

    def _update(self, session, model, row_id, changes):
        obj = self._get(session, model, row_id)
        key = NATURAL_KEYS.get(model.__tablename__)
        for column, value in changes.items():
            if column not in COLUMNS[model.__tablename__]:
                raise WriteRefused("other", f"{model.__tablename__} has no column {column!r}")
            if column == key and value != getattr(obj, column):
                raise WriteRefused("key_immutable", f"{model.__tablename__}.{column} cannot change")
            setattr(obj, column, value)

    def _get(self, session, model, row_id):
        obj = session.get(model, row_id)
        if obj is None:
            raise WriteRefused("row_not_found", f"{model.__tablename__} {row_id} does not exist")
        return obj


def _resolve(value, inserted):
    """A value of a new row; ``{"ref": k}`` is the id op ``k`` of the same save inserted."""
    if isinstance(value, dict):
        return inserted[value["ref"]]
    return value


def _refusal(error):
    message = str(getattr(error, "orig", None) or error)
    if "locked" in message:
        return WriteRefused("busy", message)
    if "FOREIGN KEY" in message:
        return WriteRefused("parent_missing", message)
    if "UNIQUE" in message:
        return WriteRefused("natural_key_taken", message)
    return WriteRefused("other", message)
