"""Framing helper for syncgate engine adapters written in Python (protocol versions 1 and 2).

An adapter runs one replica of your sync layer and answers the harness's requests (see
PROTOCOL.md). This module owns the protocol; you write the part that talks to your layer::

    import syncgate_adapter as sg
    sg.fork_server(__file__)      # optional, and before the heavy imports: see "Fork server"

    import mysync

    class MyAdapter(sg.Adapter):
        engine = "mysync 0.3"
        capabilities = {"clock": True, "crash_points": ["push_after_remote_commit"],
                        "outside_writes": "captured", "outside_insert_ids": "sqlite",
                        "profile": None}
        policies = {"merge": "row", "delete": "delete_wins", "natural_keys": "merge",
                    "explicit_ids": False}

        def init(self, msg):      # self.cache, self.remote_path, self.fresh, ... are set
            self.layer = mysync.open(self.cache, self.remote_path, clock=lambda: self.clock_ms,
                                     crash_point=self.crash_point)
        def write(self, ops):     # one local transaction; return the ids of the inserts
            ...
        def push(self):           # return (pushed, pulled, conflicts)
            ...
        def pull(self): ...
        def pending(self): ...

    if __name__ == "__main__":
        sg.run(MyAdapter)

What the helper does for you:

- reads one request per line from stdin, calls the method named by its ``type``, writes one
  reply line to stdout and flushes; exits when stdin closes;
- keeps stdout for the protocol: ``print`` and anything else written to stdout go to stderr;
- answers ``error``: ``unknown_type``, ``malformed`` (bad JSON, a missing field, a request
  before ``init``, a ``{"ref": k}`` that names no earlier insert), ``unsupported`` (a request
  for something not declared), ``internal`` (your code raised: the message is the
  traceback's last line, the whole traceback goes to stderr);
- turns :class:`Refused` raised by ``write`` into ``refused`` and :class:`SyncFailed` raised
  by ``push``/``pull``/``sync`` into ``sync_failed``;
- checks your answers before sending them (``write`` returns one int per insert, reports are
  three non-negative ints, ...): a wrong answer is your bug and is reported as ``internal``;
- crash points: ``arm_crash`` arms a point; your layer calls ``self.crash_point(name)`` where
  that point is, and the process ``_exit``s there if it is armed, without a reply. The point
  is disarmed after the next push/pull/sync request, whatever happened;
- keeps ``self.clock_ms`` (from ``init``, then ``set_clock``) for layers with an injected
  clock; :func:`resolve_refs` substitutes ``{"ref": k}`` values.

Protocol version 2
------------------
An adapter that declares any version 2 field (``VERSION_2_CAPABILITIES``,
``VERSION_2_POLICIES``) is answered ``"protocol": 2`` at ``init``; one that declares none is
answered ``"protocol": 1``, exactly as before. With ``capabilities["aborts"] = True`` the
harness may send ``write`` with ``"abort": true``: the helper calls :meth:`Adapter.write_aborted`
(run the ops in your layer's transaction, then roll it back) and answers ``write_aborted``.
With ``policies["ids"] = "renumbered"``, call :meth:`Adapter.renumbered` for each row your
layer gave a new id (and committed) while it served a request: the helper adds the list to
that request's reply (``write_ok``, ``sync_ok``, ``sync_failed`` or ``init_ok``, the replies
that may carry it). A renumbering reported during any other request is an adapter bug,
answered ``internal``.

Fork server
-----------
``fork_server(__file__)``, called at the top of the adapter before the heavy imports, makes
every replica's process a thin client of a server that imported the adapter once and forks a
fresh child per replica; :func:`run` runs that server in the server process. It lives in
``syncgate_fork_server.py`` (its module doc has the steps), which must sit beside this file.
"""

from __future__ import annotations  # the hints below cost nothing at import (no typing import)

import binascii  # built into the interpreter: blobs in base64 without base64's imports
import io  # loaded at interpreter start: free
import os
import sys

import syncgate_fork_server as _fork_server
from syncgate_fork_server import (  # noqa: F401 (this module's names since before the split)
    HANDOFF_ATTEMPTS_MAX,
    HANDOFF_S_MAX,
    SERVER_IDLE_S_DEFAULT,
    SERVER_START_S_MAX,
    SHUTDOWN_GRACE_S,
)

PROTOCOL = 1
# The versions this helper speaks. It answers 2 only to an adapter that declares something of
# version 2 (below), so that an adapter written for version 1 is answered exactly as before.
PROTOCOLS = (1, 2)

# Version 2's declarations, each optional, with the values it knows (PROTOCOL.md, "Version 2").
# ``replicas_max`` is an int >= 1 or None, checked apart.
VERSION_2_CAPABILITIES = {
    "push_pull": ("separate", "together"),
    "replicas_max": None,
    "aborts": (True, False),
    "value_domain": None,  # an object, e.g. {"integers": "safe"}; checked by the harness
}
VERSION_2_POLICIES = {
    "push": ("explicit", "on_commit"),
    "pending_after_sync": ("zero", "resolutions"),
    "ids": ("stable", "remote_map", "renumbered"),
    "transactions": ("unit", "atomic"),
    "consistency": ("eventual", "causal"),
    "references": ("enforced", "local_only", "unenforced"),
}
# natural_keys values that only version 2 knows (PROTOCOL.md, "Promises per constraint").
VERSION_2_NATURAL_KEYS = ("local_only", "unenforced")
# The replies that may carry ``renumbered`` (PROTOCOL.md, "Version 2").
RENUMBERED_REPLIES = ("write_ok", "sync_ok", "sync_failed", "init_ok")

CRASH_POINTS = ("push_before_remote_commit", "push_after_remote_commit", "pull_before_local_commit")
REFUSAL_CLASSES = (
    "id_outside_replica",
    "id_taken",
    "id_deleted",
    "natural_key_taken",
    "parent_missing",
    "row_not_found",
    "key_immutable",
    "busy",
    "other",
)
SYNC_FAILURE_CLASSES = ("busy", "clock_drift", "unavailable", "login_refused", "other")

# Exit code of a process stopped at a crash point (the protocol accepts any).
CRASH_EXIT_CODE = 3

# Limits (house style: a limit on everything, qualifier last).
REQUEST_BYTES_MAX = 64 << 20


class Refused(Exception):
    """A write refused as a whole: nothing of the transaction happened. ``cls`` is one of
    ``REFUSAL_CLASSES``."""

    def __init__(self, cls: str, message: str = "") -> None:
        if cls not in REFUSAL_CLASSES:
            raise ValueError(f"refusal class {cls!r} is not one of {REFUSAL_CLASSES}")
        super().__init__(f"{cls}: {message}")
        self.cls = cls
        self.message = message


class SyncFailed(Exception):
    """A push, pull or sync that failed and marked nothing synced. ``cls`` is one of
    ``SYNC_FAILURE_CLASSES``."""

    def __init__(self, cls: str, message: str = "") -> None:
        if cls not in SYNC_FAILURE_CLASSES:
            raise ValueError(f"sync failure class {cls!r} is not one of {SYNC_FAILURE_CLASSES}")
        super().__init__(f"{cls}: {message}")
        self.cls = cls
        self.message = message


class Malformed(Exception):
    """The request cannot be understood (answered ``error`` ``malformed``)."""


class Unsupported(Exception):
    """The request asks for something this adapter does not do (``error`` ``unsupported``)."""


def log(*parts: object) -> None:
    """Writes one line to stderr, the harness's log of this process."""
    print(*parts, file=sys.stderr, flush=True)


def resolve_refs(values: dict[str, object], inserted: dict[int, int]) -> dict[str, object]:
    """Returns ``values`` with every ``{"ref": k}`` replaced by the id op ``k`` inserted.

    ``inserted`` maps the index (in this request's ``ops``) of each insert done so far to the
    id it got. A ref to an op that is not an earlier insert raises :class:`Malformed`::

        inserted = {}
        for k, op in enumerate(ops):
            if op["op"] == "insert":
                inserted[k] = layer.insert(op["table"], resolve_refs(op["values"], inserted))
    """
    out = {}
    for column, value in values.items():
        if isinstance(value, dict):
            k = value.get("ref")
            if len(value) != 1 or type(k) is not int:
                raise Malformed(
                    f'value of {column!r} is {value!r}: expected null, int, float, string, bytes or {{"ref": k}}'
                )
            if k not in inserted:
                raise Malformed(
                    f"{column!r} refers to op {k}, which is not an earlier insert of this request"
                )
            value = inserted[k]
        out[column] = value
    return out


class Adapter:
    """Base class of an adapter: one instance serves one replica process.

    Declare ``engine``, ``capabilities`` and ``policies`` as class attributes, or return
    ``(capabilities, policies)`` from :meth:`init`. Before :meth:`init` runs, the helper sets
    ``replica``, ``replicas``, ``cache``, ``remote`` (the dict), ``remote_path`` (for
    ``{"kind": "sqlite"}``), ``create_remote``, ``fresh``, ``schema``, ``tables`` (name ->
    table dict), ``ddl``, ``clock_ms`` and ``limits`` (a dict, often empty: knobs the harness
    sets for this case, such as ``push_batch_max``; ignore those your layer does not have)
    from the request, and ``protocols``, the versions the harness speaks (``[1]`` from a
    harness that does not say).

    Declaring any field of ``VERSION_2_CAPABILITIES`` or ``VERSION_2_POLICIES`` makes the
    helper answer protocol version 2 (see the module doc).
    """

    engine: str = "unnamed-engine"
    capabilities: dict[str, object] | None = None
    policies: dict[str, object] | None = None

    _armed_crash = None
    _renumbered: list[dict[str, object]] | None = None  # a list while a request is served

    @classmethod
    def preload(cls) -> None:
        """Runs once in the fork server before it forks any child: import lazily imported
        modules, configure mappers, warm caches. Open no replica's files here."""

    def init(self, msg: dict[str, object]) -> tuple[dict[str, object], dict[str, object]] | None:
        """Opens the replica (creates the remote first if ``self.create_remote``). Returns
        ``None`` to use the class attributes, or ``(capabilities, policies)``."""
        return None

    def write(self, ops: list[dict[str, object]]) -> list[int]:
        """Applies ``ops`` in one local transaction; returns the ids of the inserted rows in
        the order of the insert ops. Raise :class:`Refused` to refuse the whole write."""
        raise Unsupported("write is not implemented")

    def write_aborted(self, ops: list[dict[str, object]]) -> list[int] | None:
        """Version 2, only with ``capabilities["aborts"] = True``: runs ``ops`` through your
        write API inside one local transaction, as :meth:`write` does, and then rolls that
        transaction back, as an application does when it raises after a flush; whatever your
        layer's hooks saw of those writes must go with it. Returns ``None``, or the ids the
        inserts had before the rollback (shown in reports only). Raise :class:`Refused` when
        the ops did not run (the cache is locked, say)."""
        raise Unsupported("write_aborted is not implemented")

    def push(self) -> tuple[int, int, int]:
        """Returns ``(pushed, pulled, conflicts)``; raise :class:`SyncFailed` on failure."""
        raise Unsupported("push is not implemented")

    def pull(self) -> tuple[int, int, int]:
        """Returns ``(pushed, pulled, conflicts)``; raise :class:`SyncFailed` on failure."""
        raise Unsupported("pull is not implemented")

    def sync(self) -> tuple[int, int, int]:
        """A push then a pull (override if your layer has its own)."""
        pushed, _, conflicts_pushed = _report(self.push(), "push")
        _, pulled, conflicts_pulled = _report(self.pull(), "pull")
        return pushed, pulled, conflicts_pushed + conflicts_pulled

    def pending(self) -> int:
        """Returns how many local writes are not yet on the remote (0 exactly when none)."""
        raise Unsupported("pending is not implemented")

    def set_clock(self, ms: int) -> None:
        """Sets the injected clock; the default keeps it in ``self.clock_ms``."""
        self.clock_ms = ms

    def mint_id(self, table: str) -> int:
        """Returns an id an insert made outside your API may use (``outside_insert_ids:
        "engine"``)."""
        raise Unsupported("mint_id is not implemented")

    def exec_sql(self, sql: str, params: list) -> tuple[int, int]:
        """Version 2, ``outside_writes: "delegated"``: runs one statement written around your
        layer's API (``sql``, its ``params`` bound by position; blobs as ``bytes``) on a
        connection to the cache set up as the application's other connections are (your
        extension loaded, ``foreign_keys`` and ``recursive_triggers`` on), in a transaction of
        its own, and nothing else. Returns ``(changes, last_insert_rowid)``; raise
        ``Refused("busy", ...)`` when the cache is locked, ``Refused("other", <SQLite's
        message>)`` when the statement failed."""
        raise Unsupported("exec_sql is not implemented")

    def read(self, table: str) -> list[tuple[int, dict[str, int | str | None]]]:
        """Returns every row of ``table`` as your layer's read API hands it to the application
        (only with ``capabilities["reads"] = True``): a list of ``(id, {column: value})``, each
        value an int, a str or None. The gate compares it with the cache file."""
        raise Unsupported("read is not implemented")

    def renumbered(self, table: str, old: int, new: int) -> None:
        """Version 2, ``ids: "renumbered"``: call this when your layer has committed a new id
        for a row of ``table`` (``old`` -> ``new``, references to it renumbered too) while it
        serves the current request; the helper reports it in that request's reply."""
        for name, value in (("old", old), ("new", new)):
            if type(value) is not int:
                raise _AdapterBug(f"renumbered({table!r}, {old!r}, {new!r}): {name} must be an int id")
        if self._renumbered is None:
            raise _AdapterBug(f"renumbered({table!r}, {old!r}, {new!r}) called outside a request")
        self._renumbered.append({"table": str(table), "from": old, "to": new})

    def crash_point(self, name: str) -> None:
        """Call this where your layer reaches crash point ``name``: if it is armed, the process
        exits here, without a reply, as if killed."""
        assert name in CRASH_POINTS, f"unknown crash point {name!r}"
        if self._armed_crash == name:
            log(f"syncgate_adapter: stopping at crash point {name}")
            os._exit(CRASH_EXIT_CODE)


def run(adapter_cls: type[Adapter]) -> None:
    """Serves the protocol on stdin/stdout with ``adapter_cls`` and exits when stdin closes
    (with ``os._exit``: atexit hooks do not run); in the fork server process (see
    ``syncgate_fork_server``) runs the server instead."""
    assert isinstance(adapter_cls, type) and issubclass(adapter_cls, Adapter), adapter_cls
    if _fork_server.in_server():
        sys.exit(_fork_server.run_server(adapter_cls.preload, lambda: serve(adapter_cls)))
    code = serve(adapter_cls)
    # Skip the interpreter's teardown (~100 ms with a big library loaded, for nothing: the
    # harness kills the process anyway). atexit hooks do not run; stdio is flushed here.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def serve(
    adapter_cls: type[Adapter], infile: io.BufferedIOBase | None = None, outfile: io.BufferedIOBase | None = None
) -> int:
    """Serves one replica: reads requests from ``infile`` until EOF and writes the replies to
    ``outfile``. With no files given, uses fds 0 and 1 and points fd 1 (and ``sys.stdout``)
    at stderr, so that stray prints cannot corrupt the protocol. Returns the exit code."""
    import json

    if infile is None:
        infile = open(0, "rb", closefd=False)
    if outfile is None:
        outfile = open(os.dup(1), "wb")
        sys.stdout.flush()
        os.dup2(2, 1)
        sys.stdout = sys.stderr
    dispatcher = _Dispatcher(adapter_cls())
    while True:
        line = infile.readline(REQUEST_BYTES_MAX + 1)
        if not line:
            return 0
        if len(line) > REQUEST_BYTES_MAX and not line.endswith(b"\n"):
            while True:
                rest = infile.readline(REQUEST_BYTES_MAX)
                if not rest or rest.endswith(b"\n"):
                    break
            reply = _error(None, "malformed", f"request longer than {REQUEST_BYTES_MAX} bytes")
        elif not line.strip():
            continue
        else:
            reply = dispatcher.handle(line)
        try:
            text = json.dumps(reply, separators=(",", ":"))
        except (TypeError, ValueError) as e:  # a value the adapter returned is not JSON
            log(f"syncgate_adapter: adapter bug: cannot send {reply!r}: {e}")
            text = json.dumps(
                _error(reply.get("in_reply_to"), "internal", f"adapter bug: reply not JSON: {e}")
            )
        outfile.write(text.encode() + b"\n")
        outfile.flush()


def fork_server(adapter_file: str) -> None:
    """Makes this process a thin client of the adapter's fork server (see
    ``syncgate_fork_server``).

    Call it at the top of the adapter, before heavy imports, with ``__file__``. It does not
    return in a thin client that was served (the process exits with the child's status). It
    returns at once in the server process, when ``SYNCGATE_FORKSERVER=0``, and when the
    server cannot be used (after a note on stderr): the adapter then goes on and serves in
    process.
    """
    _fork_server.fork_server(adapter_file, helper_files=(__file__,))


# ---------------------------------------------------------------------------------------------
# Requests and replies.


class _Dispatcher:
    """Turns request lines into reply dicts for one adapter instance."""

    def __init__(self, adapter):
        self.adapter = adapter
        self.initialized = False
        self.crash_points = ()
        self.clock = False
        self.reads = False
        self.aborts = False
        self.ids = "stable"

    def handle(self, line):
        import json

        try:
            msg = json.loads(line)
        except ValueError as e:
            return _error(None, "malformed", f"not JSON: {e}")
        if not isinstance(msg, dict):
            return _error(None, "malformed", "a request is a JSON object")
        msg_id = msg.get("msg_id")
        if type(msg_id) is not int:
            return _error(None, "malformed", "msg_id must be an integer")
        kind = msg.get("type")
        handler = self.HANDLERS.get(kind) if isinstance(kind, str) else None
        if handler is None:
            return _error(msg_id, "unknown_type", f"unknown request type {kind!r}")
        if kind != "init" and not self.initialized:
            return _error(msg_id, "malformed", f"{kind} before init: init is always the first request")
        self.adapter._renumbered = []
        reply = self._reply(kind, msg_id, handler, msg)
        moved = self.adapter._renumbered
        self.adapter._renumbered = None
        if not moved:
            return reply
        if reply["type"] not in RENUMBERED_REPLIES:
            return _error(
                msg_id,
                "internal",
                f"adapter bug: renumbered {moved} reported while answering {kind} with {reply['type']} "
                f"(only {', '.join(RENUMBERED_REPLIES)} carry renumbered)",
            )
        if self.ids != "renumbered":
            return _error(
                msg_id, "internal", f'adapter bug: renumbered {moved} reported without policies ids: "renumbered"'
            )
        return {**reply, "renumbered": moved}

    def _reply(self, kind, msg_id, handler, msg):
        try:
            reply = handler(self, msg)
        except Malformed as e:
            return _error(msg_id, "malformed", str(e))
        except Unsupported as e:
            return _error(msg_id, "unsupported", str(e))
        except Refused as e:
            if kind not in ("write", "exec_sql"):
                return _internal(msg_id, e, f"Refused raised by {kind} (only write and exec_sql may refuse)")
            return {"type": "refused", "in_reply_to": msg_id, "class": e.cls, "message": e.message}
        except SyncFailed as e:
            if kind not in ("push", "pull", "sync"):
                return _internal(
                    msg_id, e, f"SyncFailed raised by {kind} (only push, pull and sync may fail)"
                )
            return {"type": "sync_failed", "in_reply_to": msg_id, "class": e.cls, "message": e.message}
        except _AdapterBug as e:
            log(f"syncgate_adapter: adapter bug: {e}")
            return _error(msg_id, "internal", f"adapter bug: {e}")
        except Exception as e:  # the adapter's bug or an unexpected operating error
            return _internal(msg_id, e)
        return {"type": reply.pop("type"), "in_reply_to": msg_id, **reply}

    def init(self, msg):
        if self.initialized:
            raise Malformed("init twice in one process")
        a = self.adapter
        version = _field(msg, "protocol", int)
        if version != PROTOCOL:
            log(f"syncgate_adapter: the harness speaks protocol {version}, this adapter {PROTOCOL}")
        offered = msg.get("protocols", [version])
        if not isinstance(offered, list) or any(type(v) is not int for v in offered):
            raise Malformed(f"init: field 'protocols' must be a list of integers, got {offered!r}")
        a.init_msg = msg
        a.protocols = offered
        a.replica = _field(msg, "replica", int)
        a.replicas = _field(msg, "replicas", int)
        a.cache = _field(msg, "cache", str)
        a.remote = _field(msg, "remote", dict)
        a.remote_path = a.remote.get("path") if a.remote.get("kind") == "sqlite" else None
        a.create_remote = _field(msg, "create_remote", bool)
        a.fresh = _field(msg, "fresh", bool)
        a.schema = _field(msg, "schema", dict)
        a.tables = {t.get("name"): t for t in a.schema.get("tables", []) if isinstance(t, dict)}
        a.ddl = a.schema.get("ddl", [])
        a.clock_ms = _field(msg, "clock_ms", int)
        a.limits = msg.get("limits") if isinstance(msg.get("limits"), dict) else {}
        declared = a.init(msg)
        if declared is None:
            capabilities, policies = a.capabilities, a.policies
        else:
            capabilities, policies = declared
        _check_declaration(capabilities, policies)
        # The version answered: 2 when the adapter declares anything of it (PROTOCOL.md: the
        # engine answers its own version, and a harness that does not speak it says so and
        # stops), else 1, as before version 2 existed.
        answered = 2 if _declares_version_2(capabilities, policies) else PROTOCOL
        if answered not in offered:
            log(f"syncgate_adapter: the adapter declares protocol {answered}; the harness speaks {offered}")
        self.crash_points = tuple(capabilities["crash_points"])
        self.clock = capabilities["clock"]
        self.reads = capabilities.get("reads", False)
        self.aborts = capabilities.get("aborts", False)
        self.ids = policies.get("ids", "stable")
        self.initialized = True
        return {
            "type": "init_ok",
            "protocol": answered,
            "engine": str(a.engine),
            "capabilities": capabilities,
            "policies": policies,
        }

    def write(self, msg):
        ops = _field(msg, "ops", list)
        inserts = 0
        for k, op in enumerate(ops):
            if not isinstance(op, dict) or not isinstance(op.get("table"), str):
                raise Malformed(f"op {k} is not an object with a table")
            kind = op.get("op")
            if kind == "insert":
                inserts += 1
                if not isinstance(op.get("values"), dict):
                    raise Malformed(f"op {k}: insert needs values")
            elif kind == "update":
                if type(op.get("id")) is not int or not isinstance(op.get("set"), dict):
                    raise Malformed(f"op {k}: update needs an integer id and set")
            elif kind == "delete":
                if type(op.get("id")) is not int:
                    raise Malformed(f"op {k}: delete needs an integer id")
            else:
                raise Malformed(f"op {k}: unknown op {kind!r}")
        ops = [_blobs_as_bytes(op) for op in ops]
        abort = msg.get("abort", False)
        if type(abort) is not bool:
            raise Malformed(f"write: field 'abort' must be a boolean, got {abort!r}")
        if abort:
            return self._write_aborted(ops, inserts)
        ids = self.adapter.write(ops)
        ids = list(ids) if isinstance(ids, (list, tuple)) else ids
        if not isinstance(ids, list) or len(ids) != inserts or any(type(i) is not int for i in ids):
            raise _AdapterBug(f"write returned {ids!r} for {inserts} insert(s): expected one int per insert")
        return {"type": "write_ok", "ids": ids}

    def _write_aborted(self, ops, inserts):
        if not self.aborts:
            raise Unsupported("write with abort: true sent to an adapter that did not declare aborts: true")
        ids = self.adapter.write_aborted(ops)
        if ids is None:
            return {"type": "write_aborted"}
        ids = list(ids) if isinstance(ids, (list, tuple)) else ids
        if not isinstance(ids, list) or len(ids) != inserts or any(type(i) is not int for i in ids):
            raise _AdapterBug(
                f"write_aborted returned {ids!r} for {inserts} insert(s): expected None or one int per insert"
            )
        return {"type": "write_aborted", "ids": ids}

    def _sync(self, kind):
        try:
            pushed, pulled, conflicts = _report(getattr(self.adapter, kind)(), kind)
        finally:
            self.adapter._armed_crash = None
        return {"type": "sync_ok", "pushed": pushed, "pulled": pulled, "conflicts": conflicts}

    def push(self, msg):
        return self._sync("push")

    def pull(self, msg):
        return self._sync("pull")

    def sync(self, msg):
        return self._sync("sync")

    def pending(self, msg):
        n = self.adapter.pending()
        if type(n) is not int or n < 0:
            raise _AdapterBug(f"pending returned {n!r}: expected a non-negative int")
        return {"type": "pending_ok", "pending": n}

    def set_clock(self, msg):
        ms = _field(msg, "ms", int)
        if not self.clock:
            raise Unsupported("set_clock sent to an adapter that declared clock: false")
        self.adapter.set_clock(ms)
        return {"type": "set_clock_ok"}

    def arm_crash(self, msg):
        point = _field(msg, "point", str)
        if point not in self.crash_points:
            raise Unsupported(f"crash point {point!r} is not declared (declared: {list(self.crash_points)})")
        self.adapter._armed_crash = point
        return {"type": "arm_crash_ok"}

    def mint_id(self, msg):
        table = _field(msg, "table", str)
        row_id = self.adapter.mint_id(table)
        if type(row_id) is not int:
            raise _AdapterBug(f"mint_id returned {row_id!r}: expected an int")
        return {"type": "mint_id_ok", "id": row_id}

    def exec_sql(self, msg):
        sql = _field(msg, "sql", str)
        params = _field(msg, "params", list)
        params = [_bytes_of(f"?{i + 1}", v) for i, v in enumerate(params)]
        done = self.adapter.exec_sql(sql, params)
        if (
            not isinstance(done, (tuple, list))
            or len(done) != 2
            or any(type(n) is not int for n in done)
            or done[0] < 0
        ):
            raise _AdapterBug(f"exec_sql returned {done!r}: expected (changes, last_insert_rowid), two ints")
        return {"type": "exec_sql_ok", "changes": done[0], "last_insert_rowid": done[1]}

    def read(self, msg):
        table = _field(msg, "table", str)
        if not self.reads:
            raise Unsupported("read sent to an adapter that did not declare reads: true")
        rows = []
        for row in self.adapter.read(table):
            if not isinstance(row, (tuple, list)) or len(row) != 2 or type(row[0]) is not int:
                raise _AdapterBug(f"read returned the row {row!r}: expected (id, {{column: value}})")
            row_id, values = row
            if not isinstance(values, dict) or any(
                not isinstance(k, str) or not (v is None or type(v) in (int, float, str, bytes)) for k, v in values.items()
            ):
                raise _AdapterBug(
                    f"read returned {values!r} for row {row_id}: expected {{column: int, float, str, bytes or None}}"
                )
            rows.append({"id": row_id, "values": {k: _blob_as_json(v) for k, v in values.items()}})
        return {"type": "read_ok", "rows": rows}

    HANDLERS = {
        "init": init,
        "write": write,
        "push": push,
        "pull": pull,
        "sync": sync,
        "pending": pending,
        "set_clock": set_clock,
        "arm_crash": arm_crash,
        "mint_id": mint_id,
        "read": read,
        "exec_sql": exec_sql,
    }


def _blobs_as_bytes(op):
    """``op`` with every ``{"blob": "<base64>"}`` value of its ``values`` or ``set`` as ``bytes``
    (PROTOCOL.md, values): an adapter binds them as they are, and SQLite stores a BLOB."""
    out = dict(op)
    for field in ("values", "set"):
        if isinstance(op.get(field), dict):
            out[field] = {column: _bytes_of(column, v) for column, v in op[field].items()}
    return out


def _bytes_of(column, value):
    if not (isinstance(value, dict) and "blob" in value):
        return value
    if len(value) != 1 or not isinstance(value["blob"], str):
        raise Malformed(f'value of {column!r} is {value!r}: a blob is {{"blob": "<base64>"}}')
    try:
        return binascii.a2b_base64(value["blob"], strict_mode=True)
    except binascii.Error as e:
        raise Malformed(f"value of {column!r}: the blob is not standard base64 ({e})") from None


def _blob_as_json(value):
    if isinstance(value, bytes):
        return {"blob": binascii.b2a_base64(value, newline=False).decode("ascii")}
    return value


class _AdapterBug(Exception):
    """An answer of the adapter that breaks the protocol (reported as ``internal``)."""


_CAPABILITY_VALUES = {
    "clock": (True, False),
    "outside_writes": ("captured", "not_captured", "delegated"),
    "outside_insert_ids": ("engine", "sqlite"),
    "profile": ("reference", None),
}
_POLICY_VALUES = {
    "merge": ("column", "row"),
    "delete": ("delete_wins", "update_wins"),
    "natural_keys": ("merge", "refuse", "local_only", "unenforced"),
    "explicit_ids": (True, False),
}


def _check_declaration(capabilities, policies):
    for what, declared, allowed in (
        ("capabilities", capabilities, _CAPABILITY_VALUES),
        ("policies", policies, _POLICY_VALUES),
    ):
        if not isinstance(declared, dict):
            raise _AdapterBug(f"{what} is {declared!r}: declare a dict (class attribute or init's answer)")
        for key, values in allowed.items():
            value = declared.get(key, "<missing>")
            if not any(type(value) is type(v) and value == v for v in values):
                raise _AdapterBug(f"{what}.{key} is {value!r}: expected one of {values}")
    if capabilities.get("reads", False) not in (True, False):
        raise _AdapterBug(f"capabilities.reads is {capabilities['reads']!r}: expected True or False (optional)")
    points = capabilities.get("crash_points")
    if not isinstance(points, (list, tuple)) or any(p not in CRASH_POINTS for p in points):
        raise _AdapterBug(f"capabilities.crash_points is {points!r}: expected a list of {CRASH_POINTS}")
    # Version 2: every field optional; a value given must be one this helper knows.
    for what, declared, allowed in (
        ("capabilities", capabilities, VERSION_2_CAPABILITIES),
        ("policies", policies, VERSION_2_POLICIES),
    ):
        for key, values in allowed.items():
            if key not in declared or values is None:
                continue
            value = declared[key]
            if not any(type(value) is type(v) and value == v for v in values):
                raise _AdapterBug(f"{what}.{key} is {value!r}: expected one of {values} (optional)")
    most = capabilities.get("replicas_max")
    if most is not None and (type(most) is not int or most < 1):
        raise _AdapterBug(f"capabilities.replicas_max is {most!r}: expected an int >= 1 or None (optional)")


def _declares_version_2(capabilities, policies):
    """Whether the declaration has any field of version 2 (at any value, the default included)."""
    return (
        any(key in capabilities for key in VERSION_2_CAPABILITIES)
        or any(key in policies for key in VERSION_2_POLICIES)
        or policies.get("natural_keys") in VERSION_2_NATURAL_KEYS
        or capabilities.get("outside_writes") == "delegated"
    )


def _report(result, kind):
    if isinstance(result, dict):
        result = (result.get("pushed"), result.get("pulled"), result.get("conflicts"))
    if (
        not isinstance(result, (tuple, list))
        or len(result) != 3
        or any(type(n) is not int or n < 0 for n in result)
    ):
        raise _AdapterBug(
            f"{kind} returned {result!r}: expected (pushed, pulled, conflicts), non-negative ints"
        )
    return tuple(result)


def _field(msg, name, kind):
    value = msg.get(name)
    if type(value) is not kind and not (kind is dict and isinstance(value, dict)):
        raise Malformed(f"{msg.get('type')}: field {name!r} must be {kind.__name__}, got {value!r}")
    return value


def _error(msg_id, code, message):
    return {"type": "error", "in_reply_to": msg_id, "code": code, "message": message}


def _internal(msg_id, exc, context=None):
    import traceback

    lines = traceback.format_exception(exc)
    sys.stderr.write("".join(lines))
    sys.stderr.flush()
    last = traceback.format_exception_only(exc)[-1].strip()
    return _error(msg_id, "internal", f"{context}: {last}" if context else last)
