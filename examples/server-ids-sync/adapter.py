"""syncgate adapter for the server-ids sync layer (idsync.py).

    SERVER_IDS_MODE=map  syncgate check --engine "exec:python3 -S examples/server-ids-sync/adapter.py"
    SERVER_IDS_MODE=temp syncgate check --engine "exec:python3 -S examples/server-ids-sync/adapter.py"

SERVER_IDS_MODE is ``map`` (the default: ``ids: "remote_map"``) or ``temp`` (``ids:
"renumbered"``); SERVER_IDS_BUGS is ``none`` (the default) or ``local_id_drift`` (README.md).
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

import idsync  # noqa: E402

IDS_POLICY = {"map": "remote_map", "temp": "renumbered"}


class ServerIdsAdapter(sg.Adapter):
    engine = "server-ids-sync 1"

    @classmethod
    def preload(cls):
        import psycopg  # noqa: F401 (imported once, in the fork server)

    def init(self, msg):
        logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(name)s: %(message)s")
        mode = os.environ.get("SERVER_IDS_MODE", "map")
        bugs = [b for b in os.environ.get("SERVER_IDS_BUGS", "none").split(",") if b not in ("", "none")]
        if mode not in idsync.MODES or not set(bugs) <= set(idsync.BUGS):
            raise sg.Unsupported(f"SERVER_IDS_MODE={mode!r} SERVER_IDS_BUGS={bugs}: modes {idsync.MODES}, bugs {idsync.BUGS}")
        if self.remote.get("kind") == "sqlite":
            remote = idsync.SqliteRemote(self.remote_path)
        elif self.remote.get("kind") == "postgres":
            remote = idsync.PgRemote(self.remote["url"], self.remote["schema"])
        else:
            raise sg.Unsupported(f"remote kind {self.remote.get('kind')!r}: sqlite or postgres")
        schema = idsync.Schema(self.schema["tables"])
        if self.create_remote:
            remote.create(schema)
        self.layer = idsync.Replica(self.cache, remote, schema, self.replica, self.fresh, mode, bugs,
                                    crash_point=self.crash_point)
        capabilities = {
            "clock": False,  # the layer reads no clock
            "crash_points": list(sg.CRASH_POINTS),
            "outside_writes": "not_captured",  # the outbox is written by the layer's own API only
            "outside_insert_ids": "sqlite",
            "profile": None,
        }
        policies = {"merge": "row", "delete": "delete_wins", "natural_keys": "merge", "explicit_ids": False,
                    "ids": IDS_POLICY[mode]}
        self.engine = f"server-ids-sync 1 ({mode}{', bugs ' + ','.join(bugs) if bugs else ''})"
        return capabilities, policies

    def write(self, ops):
        inserted, ids = {}, []
        try:
            with self.layer.transaction() as tx:
                for k, op in enumerate(ops):
                    if op["op"] == "insert":
                        inserted[k] = tx.insert(op["table"], sg.resolve_refs(op["values"], inserted))
                        ids.append(inserted[k])
                    elif op["op"] == "update":
                        tx.update(op["table"], op["id"], op["set"])
                    else:
                        tx.delete(op["table"], op["id"])
        except idsync.WriteRefused as e:
            raise sg.Refused(e.kind, str(e)) from None
        return ids

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
        except idsync.SyncError as e:
            raise sg.SyncFailed(e.kind, str(e)) from None
        finally:
            # What this step renumbered and committed goes with its reply (a sync's push
            # included, when its pull fails): the helper adds it to sync_ok or sync_failed.
            for table, old, new in self.layer.renumbered:
                self.renumbered(table, old, new)
            self.layer.renumbered.clear()


if __name__ == "__main__":
    sg.run(ServerIdsAdapter)
