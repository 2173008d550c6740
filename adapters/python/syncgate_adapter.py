"""Framing helper for syncgate engine adapters written in Python (protocol version 1).

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

Fork server
-----------
Importing a big library (SQLAlchemy: ~300 ms) in every replica process makes a gate run
slow, since every case starts two to four processes. ``fork_server(__file__)``, called at the
top of the adapter before the heavy imports, turns this process into a thin client of a
per-user server that has imported everything once and forks a fresh child per replica:

1. The client computes the server's socket path: ``$SYNCGATE_FORKSERVER_DIR`` (default
   ``$TMPDIR/syncgate-forkserver-<uid>``, mode 0700) and a hash of the adapter file's real
   path, mtime and size, this helper's mtime, the interpreter, its arguments, the working
   directory and the whole environment. An edited adapter, or a different environment
   (``BUGGY_SYNC_BUGS=...``), gets a server of its own.
2. If nothing listens there, the client takes a lock file and starts the server: the same
   interpreter and arguments with ``SYNCGATE_FORKSERVER_ROLE=server``, in a new session,
   stdin/stdout on /dev/null, stderr appended to ``<key>.log``, its pid in ``<key>.pid``.
   The server runs the adapter file as ``__main__``: ``fork_server`` returns at once there,
   the module imports what it imports, and ``run(MyAdapter)`` calls ``MyAdapter.preload()``
   (warm caches here; open no replica's files) and then listens. It never creates an
   adapter instance itself, so a forked child holds no state from any replica.
3. The client sends its stdin, stdout and stderr (``SCM_RIGHTS``), the read end of a
   *lifeline* pipe, its working directory, argv and environment. The server forks; the child
   puts the fds on 0, 1 and 2, takes the environment, and serves the protocol with
   everything preloaded. The server answers ``ok <pid>``; the client closes its own stdin and
   stdout, so the child holds the only copies and the harness sees stdout close exactly when
   the child exits.
4. When the child exits, the server (which reaps it) sends ``exit <code>`` and the client
   exits with that code (a signal is re-raised), so the harness sees the child's exit as its
   own process's: a crash point ends the thin client too.

Why a lifeline: a restart is a SIGKILL of the process the harness started, the thin client.
The child is not its descendant and gets no signal; waiting for EOF on stdin is not enough
either, since nothing says the harness closes its end of the pipe before it starts the next
process for the same replica, and a child left running would keep the cache open (perhaps
mid-transaction, holding a lock) under its successor. The lifeline's write end exists only
in the thin client (close-on-exec, never sent), so the child's thread blocked on reading the
read end returns exactly when the thin client is gone, however it died; the child then
``_exit``s at once. If the server dies instead, the client sees its connection close, exits
(code 1, with a note on stderr), and the child follows through the lifeline.

The server exits after ``$SYNCGATE_FORKSERVER_IDLE_S`` (default 60) seconds with no child
running: it unlinks its socket first, serves any client already queued, then waits for its
children, so a client never connects to a server that is going away. If the server cannot be
started (socket path too long, no permission, the adapter fails to import in it), the client
serves in process after a note on stderr. ``SYNCGATE_FORKSERVER=0`` turns the fork server
off without editing the adapter. Once the fds are handed over, a client never serves them
itself: a failure after that point exits with code 1.

The thin client imports only built-in modules (no ``socket``, ``json``, ``subprocess`` unless
it starts a server), and this file: under ``PYTHONDONTWRITEBYTECODE`` the server writes this
file's ``.pyc`` (only this one) so that clients need not compile it (~5 ms each). Run it with
``python3 -S`` to skip ``site`` too: the helper loads ``site`` itself in the server and in
the in-process fallback, where third-party imports need it.
"""

import os
import sys

PROTOCOL = 1

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
SERVER_START_S_MAX = 60.0
HANDOFF_S_MAX = 10.0
HANDOFF_ATTEMPTS_MAX = 3
SHUTDOWN_GRACE_S = 0.05
SERVER_IDLE_S_DEFAULT = 60.0

_ENV_ROLE = "SYNCGATE_FORKSERVER_ROLE"
_ENV_SOCKET = "SYNCGATE_FORKSERVER_SOCKET"
_ENV_READY_FD = "SYNCGATE_FORKSERVER_READY_FD"
_PRIVATE_ENV = (_ENV_ROLE, _ENV_SOCKET, _ENV_READY_FD)


class Refused(Exception):
    """A write refused as a whole: nothing of the transaction happened. ``cls`` is one of
    ``REFUSAL_CLASSES``."""

    def __init__(self, cls, message=""):
        if cls not in REFUSAL_CLASSES:
            raise ValueError(f"refusal class {cls!r} is not one of {REFUSAL_CLASSES}")
        super().__init__(f"{cls}: {message}")
        self.cls = cls
        self.message = message


class SyncFailed(Exception):
    """A push, pull or sync that failed and marked nothing synced. ``cls`` is one of
    ``SYNC_FAILURE_CLASSES``."""

    def __init__(self, cls, message=""):
        if cls not in SYNC_FAILURE_CLASSES:
            raise ValueError(f"sync failure class {cls!r} is not one of {SYNC_FAILURE_CLASSES}")
        super().__init__(f"{cls}: {message}")
        self.cls = cls
        self.message = message


class Malformed(Exception):
    """The request cannot be understood (answered ``error`` ``malformed``)."""


class Unsupported(Exception):
    """The request asks for something this adapter does not do (``error`` ``unsupported``)."""


def log(*parts):
    """Writes one line to stderr, the harness's log of this process."""
    print(*parts, file=sys.stderr, flush=True)


def resolve_refs(values, inserted):
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
                    f'value of {column!r} is {value!r}: expected null, int, string or {{"ref": k}}'
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
    from the request.
    """

    engine = "unnamed-engine"
    capabilities = None
    policies = None

    _armed_crash = None

    @classmethod
    def preload(cls):
        """Runs once in the fork server before it forks any child: import lazily imported
        modules, configure mappers, warm caches. Open no replica's files here."""

    def init(self, msg):
        """Opens the replica (creates the remote first if ``self.create_remote``). Returns
        ``None`` to use the class attributes, or ``(capabilities, policies)``."""
        return None

    def write(self, ops):
        """Applies ``ops`` in one local transaction; returns the ids of the inserted rows in
        the order of the insert ops. Raise :class:`Refused` to refuse the whole write."""
        raise Unsupported("write is not implemented")

    def push(self):
        """Returns ``(pushed, pulled, conflicts)``; raise :class:`SyncFailed` on failure."""
        raise Unsupported("push is not implemented")

    def pull(self):
        """Returns ``(pushed, pulled, conflicts)``; raise :class:`SyncFailed` on failure."""
        raise Unsupported("pull is not implemented")

    def sync(self):
        """A push then a pull (override if your layer has its own)."""
        pushed, _, conflicts_pushed = _report(self.push(), "push")
        _, pulled, conflicts_pulled = _report(self.pull(), "pull")
        return pushed, pulled, conflicts_pushed + conflicts_pulled

    def pending(self):
        """Returns how many local writes are not yet on the remote (0 exactly when none)."""
        raise Unsupported("pending is not implemented")

    def set_clock(self, ms):
        """Sets the injected clock; the default keeps it in ``self.clock_ms``."""
        self.clock_ms = ms

    def mint_id(self, table):
        """Returns an id an insert made outside your API may use (``outside_insert_ids:
        "engine"``)."""
        raise Unsupported("mint_id is not implemented")

    def read(self, table):
        """Returns every row of ``table`` as your layer's read API hands it to the application
        (only with ``capabilities["reads"] = True``): a list of ``(id, {column: value})``, each
        value an int, a str or None. The gate compares it with the cache file."""
        raise Unsupported("read is not implemented")

    def crash_point(self, name):
        """Call this where your layer reaches crash point ``name``: if it is armed, the process
        exits here, without a reply, as if killed."""
        assert name in CRASH_POINTS, f"unknown crash point {name!r}"
        if self._armed_crash == name:
            log(f"syncgate_adapter: stopping at crash point {name}")
            os._exit(CRASH_EXIT_CODE)


def run(adapter_cls):
    """Serves the protocol on stdin/stdout with ``adapter_cls`` and exits when stdin closes
    (with ``os._exit``: atexit hooks do not run); in the fork server process (see the module
    doc) runs the server instead."""
    assert isinstance(adapter_cls, type) and issubclass(adapter_cls, Adapter), adapter_cls
    if os.environ.get(_ENV_ROLE) == "server":
        sys.exit(_Server(adapter_cls).run())
    code = serve(adapter_cls)
    # Skip the interpreter's teardown (~100 ms with a big library loaded, for nothing: the
    # harness kills the process anyway). atexit hooks do not run; stdio is flushed here.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def serve(adapter_cls, infile=None, outfile=None):
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


def fork_server(adapter_file):
    """Makes this process a thin client of the adapter's fork server (see the module doc).

    Call it at the top of the adapter, before heavy imports, with ``__file__``. It does not
    return in a thin client that was served (the process exits with the child's status). It
    returns at once in the server process, when ``SYNCGATE_FORKSERVER=0``, and when the
    server cannot be used (after a note on stderr): the adapter then goes on and serves in
    process.
    """
    if os.environ.get(_ENV_ROLE) == "server":
        _ensure_site()
        _write_own_bytecode()
        return
    if os.environ.get("SYNCGATE_FORKSERVER", "1") == "0":
        _ensure_site()
        return
    for _ in range(HANDOFF_ATTEMPTS_MAX):
        try:
            conn = _Client(adapter_file).connect()
        except (_Unavailable, OSError) as e:  # nothing was handed over yet: serving here is safe
            log(f"syncgate_adapter: fork server unavailable ({e}); serving in process")
            _ensure_site()
            return
        _Client.hand_off_and_wait(conn)  # returns only if the server forked nothing
    log(f"syncgate_adapter: fork server going away {HANDOFF_ATTEMPTS_MAX} times in a row; serving in process")
    _ensure_site()


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
        try:
            reply = handler(self, msg)
        except Malformed as e:
            return _error(msg_id, "malformed", str(e))
        except Unsupported as e:
            return _error(msg_id, "unsupported", str(e))
        except Refused as e:
            if kind != "write":
                return _internal(msg_id, e, f"Refused raised by {kind} (only write may refuse)")
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
        a.init_msg = msg
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
        self.crash_points = tuple(capabilities["crash_points"])
        self.clock = capabilities["clock"]
        self.reads = capabilities.get("reads", False)
        self.initialized = True
        return {
            "type": "init_ok",
            "protocol": PROTOCOL,
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
        ids = self.adapter.write(ops)
        ids = list(ids) if isinstance(ids, (list, tuple)) else ids
        if not isinstance(ids, list) or len(ids) != inserts or any(type(i) is not int for i in ids):
            raise _AdapterBug(f"write returned {ids!r} for {inserts} insert(s): expected one int per insert")
        return {"type": "write_ok", "ids": ids}

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
                not isinstance(k, str) or not (v is None or type(v) in (int, str)) for k, v in values.items()
            ):
                raise _AdapterBug(f"read returned {values!r} for row {row_id}: expected {{column: int, str or None}}")
            rows.append({"id": row_id, "values": dict(values)})
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
    }


class _AdapterBug(Exception):
    """An answer of the adapter that breaks the protocol (reported as ``internal``)."""


_CAPABILITY_VALUES = {
    "clock": (True, False),
    "outside_writes": ("captured", "not_captured"),
    "outside_insert_ids": ("engine", "sqlite"),
    "profile": ("reference", None),
}
_POLICY_VALUES = {
    "merge": ("column", "row"),
    "delete": ("delete_wins", "update_wins"),
    "natural_keys": ("merge", "refuse"),
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


def _write_own_bytecode():
    """Writes this module's .pyc even under PYTHONDONTWRITEBYTECODE (the fork server does,
    once): every thin client imports this file, and compiling it costs ~5 ms per start."""
    if not sys.dont_write_bytecode:
        return
    import importlib.util
    import py_compile

    try:
        py_compile.compile(__file__, cfile=importlib.util.cache_from_source(__file__), doraise=True)
    except (OSError, py_compile.PyCompileError) as e:
        log(f"syncgate_adapter: cannot write {__file__}'s bytecode ({e}); thin clients compile it")


def _ensure_site():
    """Loads ``site`` if the interpreter was started with ``-S`` (see the module doc)."""
    if sys.flags.no_site and "site" not in sys.modules:
        import site

        site.main()


# ---------------------------------------------------------------------------------------------
# Fork server: the thin client. Only built-in modules here, imported late.


class _Unavailable(Exception):
    """The fork server cannot be used; the process serves in process."""


class _Client:
    def __init__(self, adapter_file):
        self.adapter_file = os.path.realpath(adapter_file)
        key = self._key()
        folder = os.environ.get("SYNCGATE_FORKSERVER_DIR") or os.path.join(
            os.environ.get("TMPDIR") or "/tmp", f"syncgate-forkserver-{os.getuid()}"
        )
        self._prepare_folder(folder)
        stem = os.path.splitext(os.path.basename(self.adapter_file))[0][:24]
        base = os.path.join(folder, f"{stem}-{key}")
        self.socket_path = base + ".sock"
        self.lock_path = base + ".lock"
        self.log_path = base + ".log"
        if len(os.fsencode(self.socket_path)) > 100:
            raise _Unavailable(f"socket path too long for AF_UNIX: {self.socket_path}")

    def _key(self):
        try:
            import _blake2

            digest = lambda data: _blake2.blake2b(data, digest_size=10).hexdigest()  # noqa: E731
        except ImportError:  # an interpreter built without blake2
            import zlib

            digest = lambda data: f"{zlib.crc32(data):08x}{zlib.adler32(data):08x}"  # noqa: E731
        stat = os.stat(self.adapter_file)
        parts = [
            self.adapter_file,
            str(stat.st_mtime_ns),
            str(stat.st_size),
            str(os.stat(__file__).st_mtime_ns),
            sys.executable,
            "\0".join(sys.orig_argv[1:]),
            os.getcwd(),
        ]
        parts += sorted(f"{k}={v}" for k, v in os.environ.items() if k not in _PRIVATE_ENV)
        return digest(os.fsencode("\n".join(parts)))

    @staticmethod
    def _prepare_folder(folder):
        try:
            os.makedirs(folder, mode=0o700, exist_ok=True)
            st = os.lstat(folder)
        except OSError as e:
            raise _Unavailable(f"cannot create {folder}: {e}") from None
        if st.st_uid != os.getuid() or st.st_mode & 0o077:
            raise _Unavailable(f"{folder} must be a directory of this user with mode 0700")

    def connect(self):
        """Returns a socket connected to the server, starting the server if needed."""
        conn = self._try_connect()
        if conn is not None:
            return conn
        import fcntl

        lock = os.open(self.lock_path, os.O_CREAT | os.O_RDWR, 0o600)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX)
            conn = self._try_connect()  # another client may have started it meanwhile
            if conn is None:
                self._start_server()
                conn = self._try_connect()
            if conn is None:
                raise _Unavailable("the server started but does not accept connections")
            return conn
        finally:
            os.close(lock)

    def _try_connect(self):
        import _socket

        s = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
        try:
            s.connect(self.socket_path)
        except OSError:
            s.close()
            return None
        return s

    def _start_server(self):
        import select
        import subprocess

        try:
            os.unlink(self.socket_path)  # stale: no one listens, and we hold the lock
        except FileNotFoundError:
            pass
        ready_r, ready_w = os.pipe()
        env = dict(os.environ)
        env.update({_ENV_ROLE: "server", _ENV_SOCKET: self.socket_path, _ENV_READY_FD: str(ready_w)})
        argv = [sys.executable, *sys.orig_argv[1:]]
        try:
            with open(self.log_path, "ab") as log_file:
                subprocess.Popen(
                    argv,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=log_file,
                    pass_fds=(ready_w,),
                    start_new_session=True,
                    env=env,
                )
        except OSError as e:
            raise _Unavailable(f"cannot start {argv}: {e}") from None
        finally:
            os.close(ready_w)
        try:
            readable, _, _ = select.select([ready_r], [], [], SERVER_START_S_MAX)
            ready = os.read(ready_r, 1) if readable else b""
        finally:
            os.close(ready_r)
        if ready != b"1":
            raise _Unavailable(
                f"the server did not start within {SERVER_START_S_MAX:.0f} s; see {self.log_path}"
                if not readable
                else f"the server exited while starting; see {self.log_path}"
            )

    @staticmethod
    def hand_off_and_wait(conn):
        """Sends fds 0-2 and the lifeline to the server, then exits with the child's status.
        Returns only when the server forked nothing and is going away (it answered ``stale``,
        or closed the connection unread), so connecting again starts a fresh server."""
        import _socket
        import _struct

        life_r, life_w = os.pipe()  # life_w stays here only: see "Why a lifeline"
        # cwd, argc, argv..., environment: NUL-separated (argv items may be empty, hence argc).
        items = [os.fsencode(os.getcwd()), b"%d" % len(sys.argv), *map(os.fsencode, sys.argv)]
        items += [os.fsencode(f"{k}={v}") for k, v in os.environ.items()]
        payload = b"\0".join(items)
        data = b"%d\n" % len(payload) + payload
        fds = _struct.pack("4i", 0, 1, 2, life_r)
        try:
            sent = conn.sendmsg([data], [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, fds)])
            conn.sendall(data[sent:])
        except (BrokenPipeError, ConnectionResetError):
            # The server closed the connection before reading it all (it was going away): it
            # forked nothing, since it keeps the connection of every child it forks.
            for fd in (life_r, life_w):
                os.close(fd)
            conn.close()
            return
        except OSError as e:
            _die(f"fork server: handing off failed: {e}")  # the server may have the fds
        os.close(life_r)
        conn.settimeout(HANDOFF_S_MAX)
        reader = _LineReader(conn)
        line = reader.line()
        if line == b"stale":
            os.close(life_w)
            conn.close()
            return
        if not line.startswith(b"ok "):
            _die(f"fork server: no child started ({line.decode(errors='replace') or 'connection closed'})")
        conn.settimeout(None)
        devnull = os.open(os.devnull, os.O_RDWR)
        os.dup2(devnull, 0)  # the child holds the only copies of the harness's stdin and stdout
        os.dup2(devnull, 1)
        os.close(devnull)
        line = reader.line()
        if not line.startswith(b"exit "):
            _die("fork server: connection lost before the child exited")
        code = int(line[5:])
        if code < 0:
            import _signal

            _signal.signal(-code, _signal.SIG_DFL)
            os.kill(os.getpid(), -code)
            code = 128 - code
        os._exit(code)


class _LineReader:
    def __init__(self, conn):
        self.conn = conn
        self.buffer = b""

    def line(self):
        while b"\n" not in self.buffer:
            try:
                chunk = self.conn.recv(4096)
            except OSError:
                chunk = b""
            if not chunk:
                return b""
            self.buffer += chunk
        line, _, self.buffer = self.buffer.partition(b"\n")
        return line


def _die(message):
    log(f"syncgate_adapter: {message}")
    os._exit(1)


# ---------------------------------------------------------------------------------------------
# Fork server: the server process.


class _Server:
    """Accepts thin clients and forks one child per client (see the module doc)."""

    def __init__(self, adapter_cls):
        self.adapter_cls = adapter_cls
        self.socket_path = os.environ[_ENV_SOCKET]
        self.ready_fd = int(os.environ[_ENV_READY_FD])
        self.idle_s = float(os.environ.get("SYNCGATE_FORKSERVER_IDLE_S", SERVER_IDLE_S_DEFAULT))
        self.children = {}  # pid -> connection to its thin client

    def run(self):
        import gc
        import selectors
        import signal
        import socket
        import threading  # noqa: F401  (the child's lifeline watcher; imported before forking)
        import time

        self.adapter_cls.preload()
        self.sources = _loaded_sources()
        self.stale = False
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(self.socket_path)
        self.listener.listen(64)
        self.inode = os.stat(self.socket_path).st_ino
        self.wake_r, wake_w = os.pipe()
        os.set_blocking(wake_w, False)
        self.wake_w = wake_w
        signal.set_wakeup_fd(wake_w)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        self.selector = selectors.DefaultSelector()
        self.selector.register(self.listener, selectors.EVENT_READ)
        self.selector.register(self.wake_r, selectors.EVENT_READ)
        self.pid_path = self.socket_path[: -len(".sock")] + ".pid"
        with open(self.pid_path, "w") as f:
            f.write(f"{os.getpid()}\n")
        log(f"syncgate_adapter: fork server {os.getpid()} listening on {self.socket_path}")
        gc.collect()
        gc.freeze()  # children share the preloaded heap copy-on-write; keep the GC off it
        os.write(self.ready_fd, b"1")
        os.close(self.ready_fd)
        idle_since = time.monotonic()
        while True:
            timeout = None if self.children else max(0.0, idle_since + self.idle_s - time.monotonic())
            for key, _ in self.selector.select(timeout):
                if key.fileobj is self.listener:
                    self._accept()
                else:
                    os.read(self.wake_r, 4096)
                    self._reap(block=False)
            if self.stale:
                return self._shut_down()
            if self.children:
                idle_since = time.monotonic()
            elif time.monotonic() >= idle_since + self.idle_s:
                return self._shut_down()

    def _shut_down(self):
        # Unlink first: from here on no client can connect, so the drain below sees every
        # client that ever will (those queued in the backlog).
        try:
            if os.stat(self.socket_path).st_ino == self.inode:
                os.unlink(self.socket_path)
                os.unlink(self.pid_path)
        except FileNotFoundError:
            pass
        import time

        self.listener.setblocking(False)
        for grace_s in (SHUTDOWN_GRACE_S, 0):  # a connect that looked the path up just before
            time.sleep(grace_s)  # the unlink may reach the backlog a moment later
            while True:
                try:
                    conn, _ = self.listener.accept()
                except BlockingIOError:
                    break
                conn.setblocking(True)
                self._serve_client(conn)
        self.listener.close()
        while self.children:
            self._reap(block=True)
        if not self.stale:
            log(f"syncgate_adapter: fork server {os.getpid()} idle for {self.idle_s:.0f} s, exiting")
        return 0

    def _accept(self):
        try:
            conn, _ = self.listener.accept()
        except OSError:
            return
        self._serve_client(conn)

    def _serve_client(self, conn):
        import socket

        fds = []
        try:
            conn.settimeout(HANDOFF_S_MAX)
            data, fds, _, _ = socket.recv_fds(conn, 65536, 4)
            header, _, payload = data.partition(b"\n")
            size = int(header)
            while len(payload) < size:
                chunk = conn.recv(size - len(payload))
                if not chunk:
                    raise ConnectionError("client closed during the handoff")
                payload += chunk
            if len(fds) != 4:
                raise ConnectionError(f"expected 4 fds, got {len(fds)}")
            cwd, argc, *rest = payload.split(b"\0")
            argv, env = rest[: int(argc)], rest[int(argc) :]
            if self.stale or self._sources_changed():
                self.stale = True
                conn.sendall(b"stale\n")
                conn.close()
                return
            pid = os.fork()
            if pid == 0:
                self._child(conn, fds, cwd, argv, env)  # never returns
            self.children[pid] = conn
            conn.sendall(b"ok %d\n" % pid)
        except (OSError, ValueError) as e:
            log(f"syncgate_adapter: handoff failed: {e!r}")
            conn.close()
        finally:
            for fd in fds:
                os.close(fd)

    def _sources_changed(self):
        for path, mtime_ns in self.sources.items():
            try:
                if os.stat(path).st_mtime_ns != mtime_ns:
                    break
            except OSError:
                break
        else:
            return False
        log(f"syncgate_adapter: fork server {os.getpid()}: {path} changed since it was imported; exiting")
        return True

    def _reap(self, block):
        while self.children:
            try:
                pid, status = os.waitpid(-1, 0 if block else os.WNOHANG)
            except ChildProcessError:
                self.children.clear()
                return
            if pid == 0:
                return
            conn = self.children.pop(pid, None)
            if conn is not None:
                try:
                    conn.sendall(b"exit %d\n" % os.waitstatus_to_exitcode(status))
                except OSError:
                    pass  # the thin client is gone; the child followed it through the lifeline
                conn.close()
            if block:
                return

    def _child(self, conn, fds, cwd, argv, env):
        code = 70
        try:
            import signal
            import threading

            signal.set_wakeup_fd(-1)
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            self.selector.close()
            self.listener.close()
            for fd in (self.wake_r, self.wake_w):
                os.close(fd)
            for other in self.children.values():
                other.close()
            conn.close()
            stdin, stdout, stderr, lifeline = fds
            sys.stderr.flush()
            for target, fd in ((0, stdin), (1, stdout), (2, stderr)):
                os.dup2(fd, target)
            for fd in (stdin, stdout, stderr):
                os.close(fd)
            os.set_inheritable(lifeline, False)
            threading.Thread(target=_watch_lifeline, args=(lifeline,), daemon=True).start()
            os.chdir(cwd)
            os.environ.clear()
            for item in env:
                k, _, v = item.partition(b"=")
                if k:
                    os.environb[k] = v
            sys.argv = [os.fsdecode(a) for a in argv]
            code = serve(self.adapter_cls)
        except BaseException:
            import traceback

            traceback.print_exc()
        finally:
            try:
                sys.stderr.flush()
            finally:
                os._exit(code)


def _loaded_sources():
    """The source files of the imported modules outside the standard library, with their
    mtimes: a server whose code changed on disk must not fork another child."""
    import sysconfig

    stdlib = tuple({os.path.join(sysconfig.get_paths()[k], "") for k in ("stdlib", "platstdlib")})
    site = tuple(os.path.join(p, "") for p in sys.path if "-packages" in p)
    sources = {}
    for module in list(sys.modules.values()):
        path = getattr(module, "__file__", None)
        if not path or (path.startswith(stdlib) and not path.startswith(site)):
            continue
        try:
            sources[path] = os.stat(path).st_mtime_ns
        except OSError:
            pass
    return sources


def _watch_lifeline(fd):
    while True:
        try:
            if not os.read(fd, 1):
                break
        except InterruptedError:
            continue
        except OSError:
            break
    os._exit(137)  # the thin client is gone: stop now, as a SIGKILL would have
