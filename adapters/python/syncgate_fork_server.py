"""Fork server for syncgate adapters written in Python: one process imports the adapter once
and forks a fresh child per replica.

An adapter does not import this module itself: it calls ``syncgate_adapter.fork_server``,
and ``syncgate_adapter.run`` runs the server in the server process. This module knows nothing
of the protocol: the server is handed a ``preload`` to call once and a ``serve`` to call in
each child, so framing and process management change separately. Keep it beside
``syncgate_adapter.py`` (the thin client imports both from the same folder).

Importing a big library (SQLAlchemy: ~300 ms) in every replica process makes a gate run
slow, since every case starts two to four processes. ``fork_server(__file__)``, called at the
top of the adapter before the heavy imports, turns this process into a thin client of a
per-user server that has imported everything once and forks a fresh child per replica:

1. The client computes the server's socket path: ``$SYNCGATE_FORKSERVER_DIR`` (default
   ``$TMPDIR/syncgate-forkserver-<uid>``, mode 0700) and a hash of the adapter file's real
   path, mtime and size, the mtimes of the helper's files (this one and
   ``syncgate_adapter.py``), the interpreter, its arguments, the working directory and the
   whole environment. An edited adapter or helper, or a different environment
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

Before each fork the server checks that no source file it imported (the adapter's modules,
a library, the helper's two files) changed on disk since; if one did, it forks nothing and
exits, and the client starts a fresh server. The server exits after
``$SYNCGATE_FORKSERVER_IDLE_S`` (default 60) seconds with no child running: it unlinks its
socket first, serves any client already queued, then waits for its children, so a client
never connects to a server that is going away. If the server cannot be started (socket path
too long, no permission, the adapter fails to import in it), the client serves in process
after a note on stderr. ``SYNCGATE_FORKSERVER=0`` turns the fork server off without editing
the adapter. Once the fds are handed over, a client never serves them itself: a failure
after that point exits with code 1.

The thin client imports only built-in modules (no ``socket``, ``json``, ``subprocess`` unless
it starts a server) and the helper's two files: under ``PYTHONDONTWRITEBYTECODE`` the server
writes their ``.pyc`` (only those) so that clients need not compile them (~5 ms a start). Run
it with ``python3 -S`` to skip ``site`` too: the helper loads ``site`` itself in the server and
in the in-process fallback, where third-party imports need it.

Notes on stderr start with ``syncgate_adapter:``, the name an adapter's author knows.
"""

from __future__ import annotations  # the hints cost nothing at import (no typing import)

import os
import sys

TYPE_CHECKING = False  # True for a type checker only: no typing import at run time
if TYPE_CHECKING:
    from collections.abc import Callable

# Limits (house style: a limit on everything, qualifier last). syncgate_adapter re-exports
# them: they were its names before the fork server had a module of its own.
SERVER_START_S_MAX = 60.0
HANDOFF_S_MAX = 10.0
HANDOFF_ATTEMPTS_MAX = 3
SHUTDOWN_GRACE_S = 0.05
SERVER_IDLE_S_DEFAULT = 60.0

_ENV_ROLE = "SYNCGATE_FORKSERVER_ROLE"
_ENV_SOCKET = "SYNCGATE_FORKSERVER_SOCKET"
_ENV_READY_FD = "SYNCGATE_FORKSERVER_READY_FD"
_PRIVATE_ENV = (_ENV_ROLE, _ENV_SOCKET, _ENV_READY_FD)


def fork_server(adapter_file: str, helper_files: tuple[str, ...] = ()) -> None:
    """Makes this process a thin client of the adapter's fork server (see the module doc).

    ``adapter_file`` is the adapter's ``__file__``; ``helper_files`` are the other files of
    the helper that every thin client imports (``syncgate_adapter.py``): with this one, they
    choose the server, and the server writes their bytecode. Does not return in a thin
    client that was served (the process exits with the child's status). Returns at once in
    the server process, when ``SYNCGATE_FORKSERVER=0``, and when the server cannot be used
    (after a note on stderr): the adapter then goes on and serves in process.
    """
    helper_files = (__file__, *helper_files)
    if in_server():
        _ensure_site()
        _write_helper_bytecode(helper_files)
        return
    if os.environ.get("SYNCGATE_FORKSERVER", "1") == "0":
        _ensure_site()
        return
    for _ in range(HANDOFF_ATTEMPTS_MAX):
        try:
            conn = _Client(adapter_file, helper_files).connect()
        except (_Unavailable, OSError) as e:  # nothing was handed over yet: serving here is safe
            _note(f"fork server unavailable ({e}); serving in process")
            _ensure_site()
            return
        _Client.hand_off_and_wait(conn)  # returns only if the server forked nothing
    _note(f"fork server going away {HANDOFF_ATTEMPTS_MAX} times in a row; serving in process")
    _ensure_site()


def in_server() -> bool:
    """Whether this process is a fork server (started by a thin client)."""
    return os.environ.get(_ENV_ROLE) == "server"


def run_server(preload: Callable[[], None], serve: Callable[[], int]) -> int:
    """Runs the fork server until it has been idle long enough or its sources changed, and
    returns its exit code. ``preload()`` runs once before the first fork; ``serve()`` runs in
    each forked child, on the thin client's fds, and returns the child's exit code."""
    assert in_server(), "run_server outside a fork server process"
    return _Server(preload, serve).run()


def _note(message):
    print(f"syncgate_adapter: {message}", file=sys.stderr, flush=True)


def _write_helper_bytecode(paths):
    """Writes the helper's .pyc files even under PYTHONDONTWRITEBYTECODE (the fork server
    does, once): every thin client imports them, and compiling them costs ~5 ms per start."""
    if not sys.dont_write_bytecode:
        return
    import importlib.util
    import py_compile

    for path in paths:
        try:
            py_compile.compile(path, cfile=importlib.util.cache_from_source(path), doraise=True)
        except (OSError, py_compile.PyCompileError) as e:
            _note(f"cannot write {path}'s bytecode ({e}); thin clients compile it")


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
    def __init__(self, adapter_file, helper_files):
        self.adapter_file = os.path.realpath(adapter_file)
        self.helper_files = helper_files
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
            *(str(os.stat(path).st_mtime_ns) for path in self.helper_files),
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
            import _signal  # type: ignore[import-not-found]

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
    _note(message)
    os._exit(1)


# ---------------------------------------------------------------------------------------------
# Fork server: the server process.


class _Server:
    """Accepts thin clients and forks one child per client (see the module doc)."""

    def __init__(self, preload, serve):
        self.preload = preload
        self.serve = serve
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

        self.preload()
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
        _note(f"fork server {os.getpid()} listening on {self.socket_path}")
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
            _note(f"fork server {os.getpid()} idle for {self.idle_s:.0f} s, exiting")
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
            _note(f"handoff failed: {e!r}")
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
        _note(f"fork server {os.getpid()}: {path} changed since it was imported; exiting")
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
            code = self.serve()
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
