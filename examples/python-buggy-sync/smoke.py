"""Drives two adapter processes over the protocol by hand, without the harness.

    python3 examples/python-buggy-sync/smoke.py            # BUGGY_SYNC_BUGS=all by default

Shows that the layer syncs in the simple case (an insert, an update and a delete made on one
replica reach the other), then two of the planted bugs: INSERT OR REPLACE clobbering a row of
the other replica whose autoincrement id collided, and a multi-row import that is never
captured. Exits 1 if the simple case does not sync; the bug demos only print what happened.
"""

import json
import os
import sqlite3
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
DDL = [
    'CREATE TABLE IF NOT EXISTS "domains" ("id" INTEGER PRIMARY KEY, "name" TEXT UNIQUE, "registrar" TEXT, '
    '"updated" INTEGER)',
    'CREATE TABLE IF NOT EXISTS "hosts" ("id" INTEGER PRIMARY KEY, "hostname" TEXT, "ip" TEXT)',
    'CREATE TABLE IF NOT EXISTS "dns_records" ("id" INTEGER PRIMARY KEY, "domain_id" INTEGER REFERENCES '
    '"domains"("id") ON DELETE CASCADE, "kind" TEXT, "value" TEXT)',
    'CREATE INDEX IF NOT EXISTS "_sg_idx_dns_records_domain_id" ON "dns_records"("domain_id")',
]
SCHEMA = {
    "tables": [
        {
            "name": "domains",
            "natural_key": "name",
            "columns": [
                {"name": "name", "type": "text"},
                {"name": "registrar", "type": "text"},
                {"name": "updated", "type": "integer"},
            ],
        },
        {
            "name": "hosts",
            "natural_key": None,
            "columns": [{"name": "hostname", "type": "text"}, {"name": "ip", "type": "text"}],
        },
        {
            "name": "dns_records",
            "natural_key": None,
            "columns": [
                {"name": "domain_id", "type": "integer", "references": "domains"},
                {"name": "kind", "type": "text"},
                {"name": "value", "type": "text"},
            ],
        },
    ],
    "ddl": DDL,
}


class Replica:
    """One adapter process and its request counter."""

    def __init__(self, folder, replica, replicas=2):
        self.cache = os.path.join(folder, f"replica{replica}.db")
        self.proc = subprocess.Popen(
            [sys.executable, os.path.join(HERE, "adapter.py")], stdin=subprocess.PIPE, stdout=subprocess.PIPE
        )
        self.msg_id = 0
        self.init = self.request(
            "init",
            protocol=1,
            replica=replica,
            replicas=replicas,
            cache=self.cache,
            remote={"kind": "sqlite", "path": os.path.join(folder, "remote.db")},
            create_remote=replica == 0,
            fresh=True,
            schema=SCHEMA,
            clock_ms=1_700_000_000_000,
        )

    def request(self, kind, **fields):
        self.proc.stdin.write(json.dumps({"type": kind, "msg_id": self.msg_id, **fields}).encode() + b"\n")
        self.proc.stdin.flush()
        self.msg_id += 1
        reply = json.loads(self.proc.stdout.readline())
        assert reply["in_reply_to"] == self.msg_id - 1, reply
        return reply

    def write(self, *ops):
        reply = self.request("write", ops=list(ops))
        assert reply["type"] == "write_ok", reply
        return reply["ids"]

    def close(self):
        self.proc.stdin.close()
        self.proc.wait(timeout=10)


def insert(table, **values):
    return {"op": "insert", "table": table, "values": values}


def rows(path, table):
    with sqlite3.connect(path) as db:
        return db.execute(f'SELECT * FROM "{table}" ORDER BY id').fetchall()


def main():
    failed = False
    with tempfile.TemporaryDirectory(prefix="buggy-sync-smoke-") as folder:
        a, b = Replica(folder, 0), Replica(folder, 1)
        remote = os.path.join(folder, "remote.db")
        print("engine:", a.init["engine"], "| outside_writes:", a.init["capabilities"]["outside_writes"])

        print("\n1. The simple case: insert, update, delete on A; sync A then B.")
        (domain,) = a.write(insert("domains", name="a.example", registrar="alpha.w1", updated=1))
        (record,) = a.write(insert("dns_records", domain_id=domain, kind="MX", value="mx.w2"))
        a.write({"op": "update", "table": "domains", "id": domain, "set": {"registrar": "bravo.w3"}})
        print(
            "   A pending:",
            a.request("pending")["pending"],
            "| A sync:",
            a.request("sync"),
            "| B sync:",
            b.request("sync"),
        )
        for table in ("domains", "dns_records"):
            same = rows(a.cache, table) == rows(b.cache, table) == rows(remote, table) != []
            failed |= not same
            verdict = "same" if same else "DIFFERENT"
            here, there, up = rows(a.cache, table), rows(b.cache, table), rows(remote, table)
            print(f"   {table}: A={here} B={there} remote={up} {verdict}")
        a.write({"op": "delete", "table": "domains", "id": domain})
        a.request("sync"), b.request("sync")
        gone = rows(b.cache, "domains") == rows(b.cache, "dns_records") == rows(remote, "domains") == []
        failed |= not gone
        print("   after A deletes the domain and both sync, B and the remote have no domain or record:", gone)

        print("\n2. Colliding ids: A and B each insert a host; both get the same id.")
        (ha,) = a.write(insert("hosts", hostname="web.a", ip="10.0.0.1"))
        (hb,) = b.write(insert("hosts", hostname="web.b", ip="10.0.0.2"))
        print(f"   A's host id {ha}, B's host id {hb}")
        print("   A push:", a.request("push"), "| B push:", b.request("push"), "| A pull:", a.request("pull"))
        print(f"   remote hosts: {rows(remote, 'hosts')}  A's hosts: {rows(a.cache, 'hosts')}")
        if ha == hb and len(rows(remote, "hosts")) == 1:
            print("   -> INSERT OR REPLACE clobbered A's host with B's: one logical row is gone everywhere")

        print("\n3. A two-row import on A (one request, one table).")
        a.write(
            insert("hosts", hostname="imp1", ip="10.0.1.1"), insert("hosts", hostname="imp2", ip="10.0.1.2")
        )
        print("   A pending:", a.request("pending")["pending"], "| A push:", a.request("push"))
        print(f"   A's hosts: {rows(a.cache, 'hosts')}\n   remote hosts: {rows(remote, 'hosts')}")
        a.close(), b.close()
    print("\nsimple case:", "FAILED" if failed else "ok")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
