"""syncgate adapter for the buggy SQLAlchemy sync layer (app.py + sync.py).

    syncgate check --engine "exec:python3 -S examples/python-buggy-sync/adapter.py"

BUGGY_SYNC_BUGS picks the planted bugs (default all; see README.md). The app keeps the tables
``init`` sends: the gate's built-in ones, or yours (``syncgate check --schema FILE``).
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
import sync  # noqa: E402


class BuggySyncAdapter(sg.Adapter):
    engine = "python-buggy-sync 1 (SQLAlchemy)"
    policies = {"merge": "row", "delete": "delete_wins", "natural_keys": "merge", "explicit_ids": False}

    @classmethod
    def preload(cls):
        app.warm_up()

    def init(self, msg):
        logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(name)s: %(message)s")
        bugs = app.enabled_bugs(os.environ.get("BUGGY_SYNC_BUGS", "all"))
        if self.create_remote:
            sync.create_remote(self.remote_path, self.ddl)
        self.app = app.App(self.cache, self.schema, self.replica, bugs)  # its models: the schema's tables
        self.layer = sync.SyncLayer(
            self.app, self.remote_path, clock=lambda: self.clock_ms, crash_point=self.crash_point
        )
        capabilities = {
            "clock": True,  # the app's clock is injected: set_clock feeds self.clock_ms
            "crash_points": list(sg.CRASH_POINTS),
            # BUG(claims_outside_capture): the app believes its session hooks see every write.
            "outside_writes": "captured" if "claims_outside_capture" in bugs else "not_captured",
            "outside_insert_ids": "sqlite",
            "profile": None,
            "reads": True,  # the app's list views: App.rows
        }
        return capabilities, self.policies

    def write(self, ops):
        inserted, ids = {}, []
        try:
            with self.app.transaction(app.endpoint_for(ops)) as tx:
                for k, op in enumerate(ops):
                    if op["table"] not in self.app.models.classes:
                        raise sg.Malformed(f"unknown table {op['table']!r}")
                    if op["op"] == "insert":
                        inserted[k] = tx.insert(op["table"], sg.resolve_refs(op["values"], inserted))
                        ids.append(inserted[k])
                    elif op["op"] == "update":
                        tx.update(op["table"], op["id"], op["set"])
                    else:
                        tx.delete(op["table"], op["id"])
        except app.WriteRefused as e:
            raise sg.Refused(e.kind, str(e)) from None
        return ids

    def read(self, table):
        if table not in self.app.models.classes:
            raise sg.Malformed(f"unknown table {table!r}")
        return self.app.rows(table)

    def push(self):
        pushed, conflicts = self._sync(self.layer.push)
        return pushed, 0, conflicts

    def pull(self):
        pulled, conflicts = self._sync(self.layer.pull)
        return 0, pulled, conflicts

    def pending(self):
        return self.layer.pending()

    def _sync(self, step):
        try:
            return step()
        except sync.SyncError as e:
            raise sg.SyncFailed(e.kind, str(e)) from None


if __name__ == "__main__":
    sg.run(BuggySyncAdapter)
