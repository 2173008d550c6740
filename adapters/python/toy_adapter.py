"""The adapter that test_syncgate_adapter.py drives: a toy sync layer on stdlib sqlite3.

Not a correct sync layer (push copies changed rows over, pull copies every remote row back):
it exists to exercise the helper's framing, refs, errors, crash points and fork server. Test
hooks: a write to the table ``explode`` raises, every write prints to stdout (the helper must
keep that off the protocol stream), ``TOY_IMPORT`` names a module to import, ``TOY_TAG`` is
logged at init.
"""

import os
import sqlite3
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import syncgate_adapter as sg  # noqa: E402

sg.fork_server(__file__)

if os.environ.get("TOY_IMPORT"):  # a module of the test's choosing, to be edited under the server
    __import__(os.environ["TOY_IMPORT"])

IMPORTED_IN_PID = os.getpid()  # differs from the serving pid in a fork-server child
inits_in_this_process = 0  # a fork-server child must always start from 0


class ToyAdapter(sg.Adapter):
    engine = "toy 1"
    capabilities = {
        "clock": True,
        "crash_points": list(sg.CRASH_POINTS),
        "outside_writes": "not_captured",
        "outside_insert_ids": "sqlite",
        "profile": None,
    }
    policies = {"merge": "row", "delete": "delete_wins", "natural_keys": "merge", "explicit_ids": False}

    def init(self, msg):
        global inits_in_this_process
        inits_in_this_process += 1
        sg.log(
            f"toy: pid={os.getpid()} imported_in={IMPORTED_IN_PID} "
            f"inits={inits_in_this_process} tag={os.environ.get('TOY_TAG', '-')}"
        )
        if self.create_remote:
            with _connect(self.remote_path) as remote:
                for statement in self.ddl:
                    remote.execute(statement)
        self.db = _connect(self.cache)
        for statement in self.ddl:
            self.db.execute(statement)
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS toy_outbox (seq INTEGER PRIMARY KEY, tbl TEXT, row_id INTEGER)"
        )

    def write(self, ops):
        print(f"toy: writing {len(ops)} op(s)")  # goes to stderr, not to the protocol
        inserted, ids = {}, []
        try:
            with self.db:
                for k, op in enumerate(ops):
                    table = op["table"]
                    if table == "explode":
                        raise RuntimeError("kaboom in the sync layer")
                    if op["op"] == "insert":
                        values = sg.resolve_refs(op["values"], inserted)
                        names = ", ".join(f'"{c}"' for c in values)
                        marks = ", ".join("?" for _ in values)
                        sql = (
                            f'INSERT INTO "{table}" ({names}) VALUES ({marks})'
                            if values
                            else f'INSERT INTO "{table}" DEFAULT VALUES'
                        )
                        row_id = self.db.execute(sql, list(values.values())).lastrowid
                        inserted[k] = row_id
                        ids.append(row_id)
                    elif op["op"] == "update":
                        row_id = op["id"]
                        sets = ", ".join(f'"{c}" = ?' for c in op["set"])
                        if not self.db.execute(
                            f'UPDATE "{table}" SET {sets} WHERE id = ?', [*op["set"].values(), row_id]
                        ).rowcount:
                            raise sg.Refused("row_not_found", f"{table} {row_id}")
                    else:
                        row_id = op["id"]
                        if not self.db.execute(f'DELETE FROM "{table}" WHERE id = ?', [row_id]).rowcount:
                            raise sg.Refused("row_not_found", f"{table} {row_id}")
                    self.db.execute("INSERT INTO toy_outbox (tbl, row_id) VALUES (?, ?)", [table, row_id])
        except sqlite3.IntegrityError as e:
            raise sg.Refused(
                "parent_missing" if "FOREIGN KEY" in str(e) else "natural_key_taken", str(e)
            ) from None
        return ids

    def push(self):
        entries = self.db.execute("SELECT seq, tbl, row_id FROM toy_outbox ORDER BY seq").fetchall()
        if not entries:
            return 0, 0, 0
        remote = _connect(self.remote_path)
        try:
            remote.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as e:
            remote.close()
            raise sg.SyncFailed("busy", str(e)) from None
        try:
            for _, table, row_id in entries:
                row = self.db.execute(f'SELECT * FROM "{table}" WHERE id = ?', [row_id]).fetchone()
                if row is None:
                    remote.execute(f'DELETE FROM "{table}" WHERE id = ?', [row_id])
                else:
                    marks = ", ".join("?" for _ in row)
                    remote.execute(f'INSERT OR REPLACE INTO "{table}" VALUES ({marks})', list(row))
            self.crash_point("push_before_remote_commit")
            remote.execute("COMMIT")
        finally:
            remote.close()
        self.crash_point("push_after_remote_commit")
        with self.db:
            self.db.execute("DELETE FROM toy_outbox WHERE seq <= ?", [entries[-1][0]])
        return len(entries), 0, 0

    def pull(self):
        remote = _connect(self.remote_path)
        pulled = 0
        try:
            self.db.execute("BEGIN IMMEDIATE")
            for table in self.tables:
                for row in remote.execute(f'SELECT * FROM "{table}"'):
                    marks = ", ".join("?" for _ in row)
                    pulled += self.db.execute(
                        f'INSERT OR REPLACE INTO "{table}" VALUES ({marks})', list(row)
                    ).rowcount
            self.crash_point("pull_before_local_commit")
            self.db.execute("COMMIT")
        except sqlite3.OperationalError as e:
            if self.db.in_transaction:
                self.db.execute("ROLLBACK")
            raise sg.SyncFailed("busy" if "locked" in str(e) else "other", str(e)) from None
        finally:
            remote.close()
        return 0, pulled, 0

    def pending(self):
        return self.db.execute("SELECT count(*) FROM toy_outbox").fetchone()[0]


def _connect(path):
    db = sqlite3.connect(path, timeout=0, isolation_level=None)
    db.execute("PRAGMA foreign_keys = ON")
    db.isolation_level = ""  # "with db:" opens a transaction again
    return db


if __name__ == "__main__":
    sg.run(ToyAdapter)
