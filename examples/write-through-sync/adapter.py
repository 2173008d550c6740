"""syncgate adapter for the write-through sync layer (app.py + wtsync.py), protocol version 2.

    syncgate check --engine "exec:python3 -S examples/write-through-sync/adapter.py"
    syncgate check --engine "exec:python3 -S examples/write-through-sync/adapter.py" --remote postgres

WRITE_THROUGH_BUGS picks planted bugs (default none; see README.md).
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

import logging  # noqa: E402

import app  # noqa: E402
import wtsync  # noqa: E402


class WriteThroughAdapter(sg.Adapter):
    engine = "write-through-sync 1 (SQLAlchemy)"
    capabilities = {
        "clock": False,  # stamps are Lamport clocks: the layer reads no time at all
        "crash_points": list(sg.CRASH_POINTS),
        "outside_writes": "not_captured",  # capture is the ORM session's: raw SQL bypasses it
        "outside_insert_ids": "sqlite",
        "profile": None,
        "aborts": True,  # version 2: App.save(..., roll_back=True)
    }
    policies = {
        "merge": "row",
        "delete": "delete_wins",
        "natural_keys": "merge",
        "explicit_ids": False,
        "push": "on_commit",  # version 2: every save pushes right after its commit
    }

    @classmethod
    def preload(cls):
        wtsync.warm_up()

    def init(self, msg):
        logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(name)s: %(message)s")
        bugs = wtsync.enabled_bugs(os.environ.get("WRITE_THROUGH_BUGS", "none"))
        declared = {t["name"]: [c["name"] for c in t["columns"]] for t in self.schema["tables"]}
        if declared != app.COLUMNS:
            raise sg.Unsupported(f"this app has the tables {app.COLUMNS}, the harness declares {declared}")
        try:
            remote = wtsync.Remote.open(self.remote, self.create_remote, self.schema)
        except ValueError as e:
            raise sg.Unsupported(str(e)) from None
        self.app = app.App(self.cache, self.ddl, self.replica)
        self.layer = wtsync.SyncLayer(self.app, remote, self.replica, bugs, crash_point=self.crash_point)

    def write(self, ops):
        return self._save(ops, roll_back=False)

    def write_aborted(self, ops):
        self._save(ops, roll_back=True)

    def push(self):
        pushed, conflicts = self._sync(self.layer.push)
        return pushed, 0, conflicts

    def pull(self):
        pulled, conflicts = self._sync(self.layer.pull)
        return 0, pulled, conflicts

    def pending(self):
        return self.layer.pending()

    def _save(self, ops, roll_back):
        for op in ops:
            if op["table"] not in app.MODELS:
                raise sg.Malformed(f"unknown table {op['table']!r}")
        try:
            return self.app.save(ops, roll_back=roll_back)
        except app.WriteRefused as e:
            raise sg.Refused(e.kind, str(e)) from None

    def _sync(self, step):
        try:
            return step()
        except wtsync.SyncError as e:
            raise sg.SyncFailed(e.kind, str(e)) from None


if __name__ == "__main__":
    sg.run(WriteThroughAdapter)
