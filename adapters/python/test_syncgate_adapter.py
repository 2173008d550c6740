"""Tests of syncgate_adapter (and its fork server, syncgate_fork_server): the toy adapter
driven over pipes, as the harness drives it.

    python3 -m unittest adapters/python/test_syncgate_adapter.py -v

Stdlib only. Each test makes its own temporary folder (cache, remote, fork-server sockets)
and stops the fork servers it started.
"""

import ast
import contextlib
import importlib.util
import io
import json
import os
import select
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import syncgate_adapter as sg  # noqa: E402
import syncgate_fork_server as fs  # noqa: E402

TOY = os.path.join(HERE, "toy_adapter.py")
# What an adapter's folder needs beside the adapter: the helper's two files.
HELPER_FILES = ("syncgate_adapter.py", "syncgate_fork_server.py")
DDL = [
    'CREATE TABLE IF NOT EXISTS "domains" ("id" INTEGER PRIMARY KEY, "name" TEXT UNIQUE, "registrar" TEXT, '
    '"updated" INTEGER)',
    'CREATE TABLE IF NOT EXISTS "hosts" ("id" INTEGER PRIMARY KEY, "hostname" TEXT, "ip" TEXT)',
    'CREATE TABLE IF NOT EXISTS "dns_records" ("id" INTEGER PRIMARY KEY, "domain_id" INTEGER REFERENCES '
    '"domains"("id") ON DELETE CASCADE, "kind" TEXT, "value" TEXT)',
]
SCHEMA = {
    "tables": [
        {"name": "domains", "natural_key": "name", "columns": []},
        {"name": "hosts", "natural_key": None, "columns": []},
        {"name": "dns_records", "natural_key": None, "columns": []},
    ],
    "ddl": DDL,
}
REPLY_S_MAX = 20.0


class Adapter:
    """One adapter process over pipes; stderr goes to a file read by ``log()``."""

    def __init__(self, folder, env, replica=0, script=TOY, flags=("-S",)):
        self.folder = folder
        self.stderr_path = os.path.join(folder, f"stderr-{time.monotonic_ns()}.txt")
        with open(self.stderr_path, "wb") as stderr:
            self.proc = subprocess.Popen(
                [sys.executable, *flags, script],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=stderr,
                env=env,
                bufsize=0,
            )
        self.buffer = b""
        self.msg_id = 0
        self.replica = replica

    def init(self, create_remote=True, fresh=True, protocol=1):
        return self.request(
            "init",
            protocol=protocol,
            replica=self.replica,
            replicas=2,
            cache=os.path.join(self.folder, f"replica{self.replica}.db"),
            remote={"kind": "sqlite", "path": os.path.join(self.folder, "remote.db")},
            create_remote=create_remote,
            fresh=fresh,
            schema=SCHEMA,
            clock_ms=1_700_000_000_000,
        )

    def send_line(self, line):
        self.proc.stdin.write(line + b"\n")

    def request(self, kind, **fields):
        self.send_line(json.dumps({"type": kind, "msg_id": self.msg_id, **fields}).encode())
        self.msg_id += 1
        return self.reply()

    def reply(self):
        """The next reply, or None if stdout closed (the process exited)."""
        deadline = time.monotonic() + REPLY_S_MAX
        while b"\n" not in self.buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.proc.stdout], [], [], left)[0]:
                raise AssertionError(f"no reply within {REPLY_S_MAX} s; stderr:\n{self.log()}")
            chunk = os.read(self.proc.stdout.fileno(), 65536)
            if not chunk:
                return None
            self.buffer += chunk
        line, _, self.buffer = self.buffer.partition(b"\n")
        return json.loads(line)

    def close(self):
        """Closes stdin, as the harness does at the end of a case; returns the exit code."""
        self.proc.stdin.close()
        return self.proc.wait(timeout=REPLY_S_MAX)

    def log(self):
        with open(self.stderr_path, encoding="utf-8", errors="replace") as f:
            return f.read()

    def toy_line(self):
        """The toy's init log line as a dict: pid, imported_in, inits, tag."""
        for line in self.log().splitlines():
            if line.startswith("toy: pid="):
                return dict(part.split("=", 1) for part in line[len("toy: ") :].split())
        raise AssertionError(f"no toy init line; stderr:\n{self.log()}")


def insert(table, **values):
    return {"op": "insert", "table": table, "values": values}


def rows(path, table):
    with sqlite3.connect(path) as db:
        return db.execute(f'SELECT * FROM "{table}" ORDER BY id').fetchall()


class Case(unittest.TestCase):
    forkserver = "0"

    def setUp(self):
        self.folder = tempfile.mkdtemp(
            prefix="sg-adapter-test-", dir="/dev/shm" if os.path.isdir("/dev/shm") else None
        )
        self.fs_dir = os.path.join(self.folder, "fs")
        self.env = dict(
            os.environ,
            SYNCGATE_FORKSERVER=self.forkserver,
            SYNCGATE_FORKSERVER_DIR=self.fs_dir,
            SYNCGATE_FORKSERVER_IDLE_S="30",
        )
        self.adapters = []

    def tearDown(self):
        for a in self.adapters:
            if a.proc.poll() is None:
                a.proc.kill()
                a.proc.wait()
            for f in (a.proc.stdin, a.proc.stdout):
                f.close()
        for pid in self.server_pids():
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        shutil.rmtree(self.folder, ignore_errors=True)

    def start(self, env=None, **kwargs):
        adapter = Adapter(self.folder, env or self.env, **kwargs)
        self.adapters.append(adapter)
        return adapter

    def server_pids(self):
        if not os.path.isdir(self.fs_dir):
            return []
        pids = []
        for name in os.listdir(self.fs_dir):
            if name.endswith(".pid"):
                with open(os.path.join(self.fs_dir, name)) as f:
                    pids.append(int(f.read()))
        return pids


class Framing(Case):
    def test_a_session_with_refs(self):
        a = self.start()
        init = a.init()
        self.assertEqual(init["type"], "init_ok")
        self.assertEqual((init["in_reply_to"], init["protocol"], init["engine"]), (0, 1, "toy 1"))
        self.assertEqual(init["capabilities"]["crash_points"], list(sg.CRASH_POINTS))
        ids = a.request(
            "write",
            ops=[
                insert("domains", name="a.example"),
                insert("dns_records", domain_id={"ref": 0}, kind="MX", value="mx.w1"),
            ],
        )
        self.assertEqual(ids, {"type": "write_ok", "in_reply_to": 1, "ids": [1, 1]})
        cache = os.path.join(self.folder, "replica0.db")
        self.assertEqual(rows(cache, "dns_records"), [(1, 1, "MX", "mx.w1")], "the ref became op 0's id")
        self.assertEqual(a.request("pending"), {"type": "pending_ok", "in_reply_to": 2, "pending": 2})
        self.assertEqual(
            a.request("push"), {"type": "sync_ok", "in_reply_to": 3, "pushed": 2, "pulled": 0, "conflicts": 0}
        )
        self.assertEqual(
            rows(os.path.join(self.folder, "remote.db"), "domains"), [(1, "a.example", None, None)]
        )
        self.assertEqual(a.request("set_clock", ms=5), {"type": "set_clock_ok", "in_reply_to": 4})
        self.assertEqual(a.close(), 0)

    def test_stray_prints_go_to_stderr(self):
        a = self.start()
        a.init()
        self.assertEqual(a.request("write", ops=[insert("hosts", hostname="h")])["type"], "write_ok")
        self.assertEqual(a.close(), 0)
        self.assertIn("toy: writing 1 op(s)", a.log())
        self.assertEqual(a.buffer, b"", "nothing but replies on stdout")

    def test_errors_leave_the_process_serving(self):
        a = self.start()
        a.init()
        a.send_line(b"{not json")
        self.assertEqual(a.reply()["code"], "malformed")
        a.send_line(b'{"type": "pending"}')
        self.assertEqual(
            a.reply(),
            {
                "type": "error",
                "in_reply_to": None,
                "code": "malformed",
                "message": "msg_id must be an integer",
            },
        )
        self.assertEqual(a.request("frobnicate")["code"], "unknown_type")
        late_ref = a.request(
            "write", ops=[insert("dns_records", domain_id={"ref": 1}), insert("domains", name="x")]
        )
        self.assertEqual(late_ref["code"], "malformed")
        self.assertIn("not an earlier insert", late_ref["message"])
        boom = a.request("write", ops=[insert("explode")])
        self.assertEqual((boom["type"], boom["code"]), ("error", "internal"))
        self.assertEqual(boom["message"], "RuntimeError: kaboom in the sync layer")
        self.assertEqual(a.request("write", ops=[{"op": "upsert", "table": "hosts"}])["code"], "malformed")
        self.assertEqual(a.request("set_clock")["code"], "malformed")
        self.assertEqual(a.request("pending")["pending"], 0, "the failed write left nothing behind")
        self.assertEqual(a.close(), 0)
        self.assertIn("Traceback (most recent call last)", a.log())

    def test_refusals(self):
        a = self.start()
        a.init()
        missing = a.request("write", ops=[{"op": "update", "table": "hosts", "id": 7, "set": {"ip": "x"}}])
        self.assertEqual((missing["type"], missing["class"]), ("refused", "row_not_found"))
        orphan = a.request("write", ops=[insert("dns_records", domain_id=42, kind="A")])
        self.assertEqual((orphan["type"], orphan["class"]), ("refused", "parent_missing"))
        self.assertEqual(a.request("pending")["pending"], 0)

    def test_request_before_init_and_init_twice(self):
        a = self.start()
        self.assertEqual(a.request("pending")["code"], "malformed")
        self.assertEqual(a.init()["type"], "init_ok")
        self.assertEqual(a.init()["code"], "malformed")

    def test_other_protocol_version_is_answered_with_ours(self):
        a = self.start()
        reply = a.init(protocol=2)
        self.assertEqual((reply["type"], reply["protocol"]), ("init_ok", 1))
        a.close()
        self.assertIn("the harness speaks protocol 2", a.log())

    def test_exits_when_stdin_closes(self):
        a = self.start()
        a.init()
        self.assertEqual(a.close(), 0)

    def test_sync_failed_when_the_remote_is_locked(self):
        a = self.start()
        a.init()
        a.request("write", ops=[insert("hosts", hostname="h")])
        lock = sqlite3.connect(os.path.join(self.folder, "remote.db"), isolation_level=None)
        lock.execute("BEGIN EXCLUSIVE")
        reply = a.request("push")
        lock.execute("ROLLBACK")
        self.assertEqual((reply["type"], reply["class"]), ("sync_failed", "busy"))
        self.assertEqual(a.request("pending")["pending"], 1)


class CrashPoints(Case):
    def test_exits_at_the_armed_point_without_a_reply(self):
        a = self.start()
        a.init()
        a.request("write", ops=[insert("hosts", hostname="h")])
        self.assertEqual(a.request("arm_crash", point="push_before_remote_commit")["type"], "arm_crash_ok")
        self.assertIsNone(a.request("push"), "no reply: stdout closed")
        self.assertEqual(a.proc.wait(timeout=REPLY_S_MAX), sg.CRASH_EXIT_CODE)
        self.assertEqual(
            rows(os.path.join(self.folder, "remote.db"), "hosts"), [], "the remote commit never ran"
        )
        again = self.start()
        again.init(create_remote=False, fresh=False)
        self.assertEqual(again.request("pending")["pending"], 1, "the toy's outbox is in the cache file")

    def test_disarmed_after_the_next_sync_request(self):
        a = self.start()
        a.init()
        a.request("arm_crash", point="pull_before_local_commit")
        self.assertEqual(a.request("push")["type"], "sync_ok", "a push never reaches a pull point")
        self.assertEqual(a.request("pull")["type"], "sync_ok", "disarmed by the push")

    def test_disarmed_when_the_point_is_not_reached(self):
        a = self.start()
        a.init()
        a.request("arm_crash", point="push_before_remote_commit")
        self.assertEqual(a.request("push")["pushed"], 0, "nothing to push: the point is not reached")
        a.request("write", ops=[insert("hosts", hostname="h")])
        self.assertEqual(a.request("push")["pushed"], 1)

    def test_undeclared_point_is_unsupported(self):
        a = self.start()
        a.init()
        self.assertEqual(a.request("arm_crash", point="somewhere")["code"], "unsupported")


class ForkServer(Case):
    forkserver = "1"

    def test_children_are_forked_fresh_from_one_server(self):
        first, second = self.start(), self.start()
        for a in (first, second):
            self.assertEqual(a.init()["type"], "init_ok")
            self.assertEqual(a.close(), 0)
        one, two = first.toy_line(), second.toy_line()
        self.assertEqual(one["imported_in"], two["imported_in"], "one server")
        self.assertEqual([int(one["imported_in"])], self.server_pids())
        self.assertNotEqual(one["pid"], two["pid"])
        self.assertNotIn(one["pid"], (one["imported_in"], str(first.proc.pid)), "served by a forked child")
        self.assertEqual((one["inits"], two["inits"]), ("1", "1"), "no state from an earlier replica")

    def test_crash_point_ends_the_thin_client_with_the_code(self):
        a = self.start()
        a.init()
        a.request("write", ops=[insert("hosts", hostname="h")])
        a.request("arm_crash", point="push_after_remote_commit")
        self.assertIsNone(a.request("push"))
        self.assertEqual(a.proc.wait(timeout=REPLY_S_MAX), sg.CRASH_EXIT_CODE)

    def test_killing_the_thin_client_kills_the_child(self):
        a = self.start()
        a.init()
        child = int(a.toy_line()["pid"])
        a.proc.kill()  # SIGKILL; stdin stays open on our side, so only the lifeline can tell
        a.proc.wait()
        deadline = time.monotonic() + 5
        while _alive(child):
            self.assertLess(time.monotonic(), deadline, "the forked child outlived its thin client")
            time.sleep(0.01)

    def test_environment_and_edits_choose_the_server(self):
        folder = os.path.join(self.folder, "copy")
        os.mkdir(folder)
        for name in ("toy_adapter.py", *HELPER_FILES):
            shutil.copy(os.path.join(HERE, name), folder)
        script = os.path.join(folder, "toy_adapter.py")
        lines = []
        for tag, touch in (("a", None), ("b", None), ("a", "toy_adapter.py"), *(("a", n) for n in HELPER_FILES)):
            if touch:
                path = os.path.join(folder, touch)
                stat = os.stat(path)
                os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
            a = self.start(env=dict(self.env, TOY_TAG=tag), script=script)
            a.init()
            a.close()
            lines.append(a.toy_line())
        self.assertEqual(
            [line["tag"] for line in lines], ["a", "b", "a", "a", "a"], "the child has its client's environment"
        )
        self.assertEqual(
            len({line["imported_in"] for line in lines}), 5, "a server per environment and per edit of any file"
        )

    def test_the_server_writes_the_helpers_bytecode(self):
        # Under PYTHONDONTWRITEBYTECODE only the server writes it, once, so that thin clients
        # need not compile the helper's files at every start.
        folder = os.path.join(self.folder, "copy")
        os.mkdir(folder)
        for name in ("toy_adapter.py", *HELPER_FILES):
            shutil.copy(os.path.join(HERE, name), folder)
        a = self.start(env=dict(self.env, PYTHONDONTWRITEBYTECODE="1"), script=os.path.join(folder, "toy_adapter.py"))
        self.assertEqual(a.init()["type"], "init_ok")
        self.assertEqual(a.close(), 0)
        self.assertNotEqual(a.toy_line()["pid"], a.toy_line()["imported_in"], "served by a forked child")
        for name in HELPER_FILES:
            pyc = importlib.util.cache_from_source(os.path.join(folder, name))
            self.assertTrue(os.path.exists(pyc), f"{name}'s bytecode")

    def test_a_changed_module_replaces_the_server(self):
        folder = os.path.join(self.folder, "copy")
        os.mkdir(folder)
        for name in ("toy_adapter.py", *HELPER_FILES):
            shutil.copy(os.path.join(HERE, name), folder)
        extra = os.path.join(folder, "toy_extra.py")
        with open(extra, "w") as f:
            f.write("VALUE = 1\n")
        env = dict(self.env, TOY_IMPORT="toy_extra")
        script = os.path.join(folder, "toy_adapter.py")
        before = self.start(env=env, script=script)
        before.init()
        before.close()
        stat = os.stat(extra)
        os.utime(extra, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
        after = [self.start(env=env, script=script, replica=i) for i in range(3)]  # at once
        threads = [threading.Thread(target=a.init, kwargs={"create_remote": False}) for a in after]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for a in after:
            self.assertEqual(a.close(), 0, a.log())
        servers = {a.toy_line()["imported_in"] for a in after}
        self.assertEqual(len(servers), 1, "one new server for all three")
        self.assertNotIn(before.toy_line()["imported_in"], servers)
        with open(
            next(os.path.join(self.fs_dir, n) for n in os.listdir(self.fs_dir) if n.endswith(".log"))
        ) as f:
            self.assertIn("toy_extra.py changed since it was imported", f.read())

    def test_concurrent_first_starts_share_one_server(self):
        adapters = [self.start(replica=i) for i in range(4)]
        threads = [
            threading.Thread(target=a.init, kwargs={"create_remote": i == 0}) for i, a in enumerate(adapters)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for a in adapters:
            self.assertEqual(a.close(), 0)
        self.assertEqual(len({a.toy_line()["imported_in"] for a in adapters}), 1)
        self.assertEqual(len(self.server_pids()), 1)

    def test_server_exits_when_idle(self):
        a = self.start(env=dict(self.env, SYNCGATE_FORKSERVER_IDLE_S="0.3"))
        a.init()
        a.close()
        (server,) = self.server_pids()
        deadline = time.monotonic() + 10
        while _alive(server) or self.server_pids():
            self.assertLess(time.monotonic(), deadline, "the server is still there")
            time.sleep(0.05)
        self.assertFalse([n for n in os.listdir(self.fs_dir) if n.endswith(".sock")], "socket removed")

    def test_falls_back_to_serving_in_process(self):
        blocker = os.path.join(self.folder, "a-file")
        open(blocker, "w").close()
        a = self.start(env=dict(self.env, SYNCGATE_FORKSERVER_DIR=os.path.join(blocker, "fs")))
        self.assertEqual(a.init()["type"], "init_ok")
        self.assertEqual(a.close(), 0)
        line = a.toy_line()
        self.assertEqual((line["pid"], line["imported_in"]), (str(a.proc.pid), str(a.proc.pid)))
        self.assertIn("fork server unavailable", a.log())

    def test_switched_off_by_the_environment(self):
        a = self.start(env=dict(self.env, SYNCGATE_FORKSERVER="0"))
        a.init()
        a.close()
        self.assertEqual(a.toy_line()["pid"], str(a.proc.pid))
        self.assertFalse(os.path.exists(self.fs_dir))


class Modules(unittest.TestCase):
    """The helper is two files with one job each: syncgate_adapter (the protocol, and the API
    every adapter uses) and syncgate_fork_server (process management)."""

    # syncgate_adapter's public names from when it was one file: adapters use them.
    PUBLIC = (
        "Adapter",
        "CRASH_EXIT_CODE",
        "CRASH_POINTS",
        "HANDOFF_ATTEMPTS_MAX",
        "HANDOFF_S_MAX",
        "Malformed",
        "PROTOCOL",
        "REFUSAL_CLASSES",
        "REQUEST_BYTES_MAX",
        "Refused",
        "SERVER_IDLE_S_DEFAULT",
        "SERVER_START_S_MAX",
        "SHUTDOWN_GRACE_S",
        "SYNC_FAILURE_CLASSES",
        "SyncFailed",
        "Unsupported",
        "fork_server",
        "log",
        "resolve_refs",
        "run",
        "serve",
    )

    def test_public_names_stay_on_syncgate_adapter(self):
        self.assertEqual([n for n in self.PUBLIC if not hasattr(sg, n)], [])
        limits = ("HANDOFF_ATTEMPTS_MAX", "HANDOFF_S_MAX", "SERVER_IDLE_S_DEFAULT", "SERVER_START_S_MAX", "SHUTDOWN_GRACE_S")
        for name in limits:
            self.assertIs(getattr(sg, name), getattr(fs, name), name)

    def test_the_fork_server_does_not_import_the_protocol(self):
        # The dependency runs one way: syncgate_adapter hands the server a preload and a serve.
        with open(fs.__file__, encoding="utf-8") as f:
            tree = ast.parse(f.read())
        imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
        imported |= {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
        self.assertNotIn("syncgate_adapter", imported)

    def test_a_server_watches_both_helper_files(self):
        # What the server compares before each fork: an edit of either file stops it forking.
        sources = fs._loaded_sources()
        for module in (sg, fs):
            self.assertIn(module.__file__, sources)


class InProcess(unittest.TestCase):
    """The helper's own checks, through serve() on in-memory files."""

    def serve(self, adapter_cls, *requests):
        lines = [json.dumps({"msg_id": i, **r}).encode() + b"\n" for i, r in enumerate(requests)]
        out = io.BytesIO()
        with contextlib.redirect_stderr(io.StringIO()):  # the adapter-bug notes and tracebacks
            self.assertEqual(sg.serve(adapter_cls, io.BytesIO(b"".join(lines)), out), 0)
        return [json.loads(line) for line in out.getvalue().splitlines()]

    INIT = {
        "type": "init",
        "protocol": 1,
        "replica": 0,
        "replicas": 1,
        "cache": "c",
        "remote": {"kind": "sqlite", "path": "r"},
        "create_remote": True,
        "fresh": True,
        "schema": {"tables": [], "ddl": []},
        "clock_ms": 7,
    }

    class Declared(sg.Adapter):
        capabilities = {
            "clock": False,
            "crash_points": [],
            "outside_writes": "not_captured",
            "outside_insert_ids": "sqlite",
            "profile": None,
        }
        policies = {"merge": "row", "delete": "delete_wins", "natural_keys": "refuse", "explicit_ids": False}

    def test_wrong_answers_are_reported_as_adapter_bugs(self):
        class Wrong(self.Declared):
            def write(self, ops):
                return [1, 2]

            def push(self):
                return 1, 2

            def pull(self):
                raise sg.Refused("other", "pull cannot refuse")

            def pending(self):
                return -1

        replies = self.serve(
            Wrong,
            self.INIT,
            {"type": "write", "ops": [insert("hosts")]},
            {"type": "push"},
            {"type": "pull"},
            {"type": "pending"},
            {"type": "set_clock", "ms": 1},
        )
        self.assertEqual(replies[0]["type"], "init_ok")
        self.assertEqual([r.get("code") for r in replies[1:]], ["internal"] * 4 + ["unsupported"])
        self.assertIn("write returned [1, 2] for 1 insert(s)", replies[1]["message"])
        self.assertIn("only write and exec_sql may refuse", replies[3]["message"])

    def test_exec_sql_runs_the_statement_given_and_may_refuse(self):
        seen = []

        class Delegating(self.Declared):
            capabilities = dict(self.Declared.capabilities, outside_writes="delegated")

            def exec_sql(self, sql, params):
                seen.append((sql, params))
                if "locked" in sql:
                    raise sg.Refused("busy", "the cache is locked")
                return 1, 42

        sql = 'INSERT INTO "hosts" ("hostname", "ip") VALUES (?1, ?2)'
        replies = self.serve(
            Delegating,
            self.INIT,
            {"type": "exec_sql", "sql": sql, "params": ["a.w1", {"blob": "AAE="}]},
            {"type": "exec_sql", "sql": "locked", "params": []},
            {"type": "exec_sql", "sql": sql},
        )
        self.assertEqual(replies[0]["protocol"], 2, "delegated outside writes are version 2's")
        self.assertEqual(replies[1], {"type": "exec_sql_ok", "in_reply_to": 1, "changes": 1, "last_insert_rowid": 42})
        self.assertEqual(seen[0], (sql, ["a.w1", b"\x00\x01"]))
        self.assertEqual((replies[2]["type"], replies[2]["class"]), ("refused", "busy"))
        self.assertEqual(replies[3]["code"], "malformed")

    def test_a_reply_that_is_not_json_is_an_adapter_bug(self):
        class Odd(self.Declared):
            engine = object()  # str() makes it a string: fine

            def init(self, msg):
                return {**self.capabilities, "extra": {1, 2}}, self.policies

        (reply,) = self.serve(Odd, self.INIT)
        self.assertEqual((reply["type"], reply["code"]), ("error", "internal"))
        self.assertIn("reply not JSON", reply["message"])

    def test_a_bad_declaration_fails_init(self):
        class Bad(self.Declared):
            policies = {**self.Declared.policies, "merge": "cell"}

        (reply,) = self.serve(Bad, self.INIT)
        self.assertEqual(reply["code"], "internal")
        self.assertIn("policies.merge is 'cell'", reply["message"])

    def test_init_fields_and_clock_reach_the_adapter(self):
        seen = {}

        class Clocked(self.Declared):
            capabilities = {**self.Declared.capabilities, "clock": True}

            def pending(self):
                seen.update(clock=self.clock_ms, cache=self.cache, remote=self.remote_path, fresh=self.fresh)
                return 0

        self.serve(Clocked, self.INIT, {"type": "set_clock", "ms": 99}, {"type": "pending"})
        self.assertEqual(seen, {"clock": 99, "cache": "c", "remote": "r", "fresh": True})

    def test_reads_are_answered_only_when_declared_and_checked(self):
        class Reads(self.Declared):
            capabilities = {**self.Declared.capabilities, "reads": True}

            def read(self, table):
                if table == "bad":
                    return [(1, {"name": [1.5]})]
                return [(1, {"name": "a", "n": None}), (2, {"name": "b", "n": 3, "r": 0.5, "b": b"\x00\xff"})]

        replies = self.serve(Reads, self.INIT, {"type": "read", "table": "hosts"}, {"type": "read", "table": "bad"})
        self.assertEqual(
            replies[1],
            {
                "type": "read_ok",
                "in_reply_to": 1,
                "rows": [
                    {"id": 1, "values": {"name": "a", "n": None}},
                    {"id": 2, "values": {"name": "b", "n": 3, "r": 0.5, "b": {"blob": "AP8="}}},
                ],
            },
        )
        self.assertEqual(replies[2]["code"], "internal")
        self.assertIn("expected {column: int, float, str, bytes or None}", replies[2]["message"])
        # Not declared: unsupported, whatever the adapter could do.
        replies = self.serve(self.Declared, self.INIT, {"type": "read", "table": "hosts"})
        self.assertEqual(replies[1]["code"], "unsupported")

    def test_version_1_adapters_are_answered_as_before(self):
        # A harness that speaks version 2 offers it; an adapter that declares nothing of it is
        # answered version 1, byte for byte what it was answered before version 2 existed.
        for init in (self.INIT, {**self.INIT, "protocols": [1, 2]}):
            (reply,) = self.serve(self.Declared, init)
            self.assertEqual(
                reply,
                {
                    "type": "init_ok",
                    "in_reply_to": 0,
                    "protocol": 1,
                    "engine": "unnamed-engine",
                    "capabilities": self.Declared.capabilities,
                    "policies": self.Declared.policies,
                },
            )
        # And a write that does not abort is a write, whatever the harness's version.
        class Writes(self.Declared):
            def write(self, ops):
                return [7]

        replies = self.serve(Writes, self.INIT, {"type": "write", "abort": False, "ops": [insert("hosts")]})
        self.assertEqual(replies[1], {"type": "write_ok", "in_reply_to": 1, "ids": [7]})

    class Version2(Declared):
        """Every field of version 2, each at a value it may have."""

    Version2.capabilities = {**Declared.capabilities, "aborts": True, "push_pull": "separate", "replicas_max": None}
    Version2.policies = {**Declared.policies, "push": "on_commit", "pending_after_sync": "zero", "ids": "stable"}

    def test_a_version_2_declaration_is_answered_version_2(self):
        (reply,) = self.serve(self.Version2, {**self.INIT, "protocols": [1, 2]})
        self.assertEqual((reply["type"], reply["protocol"]), ("init_ok", 2))
        self.assertEqual(reply["capabilities"], self.Version2.capabilities)
        self.assertEqual(reply["policies"], self.Version2.policies)
        # One field is enough, at any value.
        class OnlyOne(self.Declared):
            policies = {**self.Declared.policies, "push": "explicit"}

        (reply,) = self.serve(OnlyOne, {**self.INIT, "protocols": [1, 2]})
        self.assertEqual(reply["protocol"], 2)
        # A harness that does not speak 2 still gets 2 (PROTOCOL.md: answer your own version;
        # that harness stops the run and names both), with a note in the log.
        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            out = io.BytesIO()
            sg.serve(self.Version2, io.BytesIO(json.dumps({"msg_id": 0, **self.INIT}).encode() + b"\n"), out)
        self.assertEqual(json.loads(out.getvalue())["protocol"], 2)
        self.assertIn("the adapter declares protocol 2; the harness speaks [1]", err.getvalue())
        (reply,) = self.serve(self.Declared, {**self.INIT, "protocols": "1,2"})
        self.assertEqual(reply["code"], "malformed")

    def test_an_aborted_write_runs_and_rolls_back(self):
        folder = tempfile.mkdtemp(prefix="sg-adapter-test-")
        self.addCleanup(shutil.rmtree, folder, ignore_errors=True)
        cache = os.path.join(folder, "cache.db")

        class Aborts(self.Version2):
            def init(self, msg):
                self.db = sqlite3.connect(cache, isolation_level=None)
                self.db.execute('CREATE TABLE IF NOT EXISTS hosts (id INTEGER PRIMARY KEY, hostname TEXT)')

            def run(self, ops):
                inserted, ids = {}, []
                for k, op in enumerate(ops):
                    values = sg.resolve_refs(op["values"], inserted)
                    sql = "INSERT INTO hosts (hostname) VALUES (?)"
                    inserted[k] = self.db.execute(sql, [values["hostname"]]).lastrowid
                    ids.append(inserted[k])
                return ids

            def write(self, ops):
                with self.db:
                    self.db.execute("BEGIN")
                    return self.run(ops)

            def write_aborted(self, ops):
                if ops[0]["values"]["hostname"] == "locked":
                    raise sg.Refused("busy", "the cache is locked")
                self.db.execute("BEGIN")
                ids = self.run(ops)
                self.db.execute("ROLLBACK")
                return ids if ops[0]["values"]["hostname"] == "with-ids" else None

        two = [insert("hosts", hostname="with-ids"), insert("hosts", hostname="gone.w3")]
        replies = self.serve(
            Aborts,
            {**self.INIT, "protocols": [1, 2]},
            {"type": "write", "abort": True, "ops": [insert("hosts", hostname="gone.w1")]},
            {"type": "write", "abort": True, "ops": two},
            {"type": "write", "abort": True, "ops": [insert("hosts", hostname="locked")]},
            {"type": "write", "ops": [insert("hosts", hostname="kept.w4")]},
            {"type": "write", "abort": "yes", "ops": [insert("hosts", hostname="h")]},
        )
        self.assertEqual(replies[0]["protocol"], 2)
        self.assertEqual(replies[1], {"type": "write_aborted", "in_reply_to": 1})
        self.assertEqual(replies[2], {"type": "write_aborted", "in_reply_to": 2, "ids": [1, 2]})
        self.assertEqual((replies[3]["type"], replies[3]["class"]), ("refused", "busy"))
        self.assertEqual(replies[4], {"type": "write_ok", "in_reply_to": 4, "ids": [1]})
        self.assertEqual(replies[5]["code"], "malformed")
        self.assertEqual(rows(cache, "hosts"), [(1, "kept.w4")], "only the write that was not rolled back")

    def test_an_abort_needs_the_declaration_and_a_right_answer(self):
        class Undeclared(self.Declared):
            def write_aborted(self, ops):
                raise AssertionError("never called without aborts: true")

        class WrongIds(self.Version2):
            def write_aborted(self, ops):
                return [1, 2]

        abort = {"type": "write", "abort": True, "ops": [insert("hosts")]}
        replies = self.serve(Undeclared, {**self.INIT, "protocols": [1, 2]}, abort)
        self.assertEqual(replies[1]["code"], "unsupported")
        self.assertIn("did not declare aborts", replies[1]["message"])
        replies = self.serve(WrongIds, {**self.INIT, "protocols": [1, 2]}, abort)
        self.assertEqual(replies[1]["code"], "internal")
        self.assertIn("write_aborted returned [1, 2] for 1 insert(s)", replies[1]["message"])
        # Declared but not implemented: unsupported, as for any method.
        replies = self.serve(self.Version2, {**self.INIT, "protocols": [1, 2]}, abort)
        self.assertEqual(replies[1]["code"], "unsupported")

    def test_renumberings_go_with_the_reply_of_their_request(self):
        class Renumbers(self.Declared):
            policies = {**self.Declared.policies, "ids": "renumbered"}

            def write(self, ops):
                self.renumbered("hosts", -1, 5)  # a temporary id replaced at once
                return [5]

            def push(self):
                self.renumbered("hosts", -2, 6)
                self.renumbered("dns_records", -3, 7)
                return 2, 0, 0

            def pull(self):
                self.renumbered("hosts", -4, 8)
                raise sg.SyncFailed("busy", "the remote is locked")

            def pending(self):
                self.renumbered("hosts", -5, 9)  # a status read may not renumber
                return 0

        replies = self.serve(
            Renumbers,
            {**self.INIT, "protocols": [1, 2]},
            {"type": "write", "ops": [insert("hosts")]},
            {"type": "push"},
            {"type": "pull"},
            {"type": "push"},
            {"type": "pending"},
        )
        self.assertEqual(replies[0]["protocol"], 2)
        self.assertEqual(replies[1]["renumbered"], [{"table": "hosts", "from": -1, "to": 5}])
        self.assertEqual(
            replies[2]["renumbered"],
            [{"table": "hosts", "from": -2, "to": 6}, {"table": "dns_records", "from": -3, "to": 7}],
        )
        self.assertEqual((replies[3]["type"], replies[3]["renumbered"]), ("sync_failed", [{"table": "hosts", "from": -4, "to": 8}]))
        # Each request's own: the second push reports its own two again, not the pull's.
        self.assertEqual(len(replies[4]["renumbered"]), 2)
        self.assertEqual(replies[5]["code"], "internal")
        self.assertIn("while answering pending with pending", replies[5]["message"])
        # Without the declaration a renumbering is the adapter's bug; a bad id too.
        class Undeclared(Renumbers):
            policies = self.Declared.policies

        class BadId(Renumbers):
            def write(self, ops):
                self.renumbered("hosts", "-1", 5)

        replies = self.serve(Undeclared, self.INIT, {"type": "write", "ops": [insert("hosts")]})
        self.assertEqual(replies[1]["code"], "internal")
        self.assertIn('without policies ids: "renumbered"', replies[1]["message"])
        replies = self.serve(BadId, {**self.INIT, "protocols": [1, 2]}, {"type": "write", "ops": [insert("hosts")]})
        self.assertEqual(replies[1]["code"], "internal")
        self.assertIn("old must be an int id", replies[1]["message"])

    def test_bad_version_2_declarations_fail_init(self):
        bad = [
            ("capabilities", "push_pull", "both", "capabilities.push_pull is 'both'"),
            ("capabilities", "aborts", "yes", "capabilities.aborts is 'yes'"),
            ("capabilities", "aborts", 1, "capabilities.aborts is 1"),
            ("capabilities", "replicas_max", 0, "capabilities.replicas_max is 0"),
            ("capabilities", "replicas_max", True, "capabilities.replicas_max is True"),
            ("capabilities", "replicas_max", "2", "capabilities.replicas_max is '2'"),
            ("policies", "push", "on_save", "policies.push is 'on_save': expected one of ('explicit', 'on_commit')"),
            ("policies", "pending_after_sync", 0, "policies.pending_after_sync is 0"),
            ("policies", "ids", "mapped", "policies.ids is 'mapped'"),
        ]
        for what, key, value, message in bad:
            with self.subTest(key=key, value=value):

                class Bad(self.Declared):
                    pass

                setattr(Bad, what, {**getattr(self.Declared, what), key: value})
                (reply,) = self.serve(Bad, {**self.INIT, "protocols": [1, 2]})
                self.assertEqual((reply["type"], reply["code"]), ("error", "internal"))
                self.assertIn(message, reply["message"])
        # The good values of the optional ones pass, replicas_max as an int.
        class Single(self.Declared):
            capabilities = {**self.Declared.capabilities, "replicas_max": 1, "push_pull": "together"}
            policies = {**self.Declared.policies, "pending_after_sync": "resolutions", "ids": "remote_map"}

        (reply,) = self.serve(Single, {**self.INIT, "protocols": [1, 2]})
        self.assertEqual((reply["type"], reply["protocol"]), ("init_ok", 2))

    def test_blobs_reach_the_adapter_as_bytes_and_reals_as_floats(self):
        seen = []

        class Values(self.Declared):
            def write(self, ops):
                seen.extend(ops)
                return [1]

        ops = [
            {"op": "insert", "table": "t", "values": {"b": {"blob": "AP8="}, "e": {"blob": ""}, "r": 1.0}},
            {"op": "update", "table": "t", "id": 1, "set": {"b": {"blob": "/w=="}, "r": 5e-324}},
        ]
        replies = self.serve(Values, self.INIT, {"type": "write", "ops": ops})
        self.assertEqual(replies[1], {"type": "write_ok", "in_reply_to": 1, "ids": [1]})
        self.assertEqual(seen[0]["values"], {"b": b"\x00\xff", "e": b"", "r": 1.0})
        self.assertIs(type(seen[0]["values"]["r"]), float)
        self.assertEqual(seen[1]["set"], {"b": b"\xff", "r": 5e-324})
        bad = [{"op": "insert", "table": "t", "values": {"b": {"blob": "not base64!"}}}]
        replies = self.serve(Values, self.INIT, {"type": "write", "ops": bad})
        self.assertEqual(replies[1]["code"], "malformed")
        self.assertIn("base64", replies[1]["message"])

    def test_resolve_refs(self):
        self.assertEqual(
            sg.resolve_refs({"a": {"ref": 0}, "b": "x", "c": None}, {0: 5}), {"a": 5, "b": "x", "c": None}
        )
        for values in ({"a": {"ref": 1}}, {"a": {"ref": "0"}}, {"a": {"ref": 0, "x": 1}}):
            with self.assertRaises(sg.Malformed):
                sg.resolve_refs(values, {0: 5})

    def test_typed_failures_check_their_class(self):
        with self.assertRaises(ValueError):
            sg.Refused("nope")
        with self.assertRaises(ValueError):
            sg.SyncFailed("id_taken")


class Docs(unittest.TestCase):
    def test_readme_shows_the_example_adapter_verbatim(self):
        with open(os.path.join(HERE, "README.md"), encoding="utf-8") as f:
            readme = f.read()
        with open(
            os.path.join(HERE, "..", "..", "examples", "python-buggy-sync", "adapter.py"), encoding="utf-8"
        ) as f:
            adapter = f.read()
        self.assertIn("```python\n" + adapter + "```\n", readme, "copy adapter.py into README.md again")


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


if __name__ == "__main__":
    unittest.main()
