"""Drives replicas of the server-ids layer over the protocol without the gate: random writes,
syncs, restarts and crashes at the crash points, then syncs until nothing moves, and checks that
every cache and the remote hold the same rows by content (references followed to their rows,
since ids differ in map mode), that no key or reference is broken, that every host inserted and
never deleted is there, that reported renumberings are true, and in temp mode that every cache
id is the server's.

    python3 examples/server-ids-sync/smoke.py [--mode map|temp] [--remote sqlite|postgres] [--cases N] [--seed S]

With --remote postgres, SYNCGATE_PG_URL names the server. Exits 1 on the first failing case.
"""

import argparse
import json
import os
import random
import sqlite3
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
TABLES = {"domains": ["name", "registrar", "updated"], "hosts": ["hostname", "ip"],
          "dns_records": ["domain_id", "kind", "value"]}
IDENTITY = {"domains": "registrar", "hosts": "hostname", "dns_records": "kind"}
SCHEMA = {"tables": [
    {"name": "domains", "natural_key": "name", "columns": [
        {"name": "name", "type": "text"}, {"name": "registrar", "type": "text"}, {"name": "updated", "type": "integer"}]},
    {"name": "hosts", "natural_key": None, "columns": [{"name": "hostname", "type": "text"}, {"name": "ip", "type": "text"}]},
    {"name": "dns_records", "natural_key": None, "columns": [
        {"name": "domain_id", "type": "integer", "references": "domains"},
        {"name": "kind", "type": "text"}, {"name": "value", "type": "text"}]}], "ddl": []}
NAMES = ["a.example", "b.example", "c.example", "", None]
CRASH_POINTS = ["push_before_remote_commit", "push_after_remote_commit", "pull_before_local_commit"]
ROUNDS_MAX = 6


class Replica:
    def __init__(self, case, r, fresh):
        self.case, self.r, self.msg_id = case, r, 0
        self.cache = os.path.join(case.folder, f"replica{r}.db")
        self.proc = subprocess.Popen([sys.executable, "-S", os.path.join(HERE, "adapter.py")],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=case.env)
        reply = self.request("init", protocol=1, protocols=[1, 2], replica=r, replicas=case.replicas,
                             cache=self.cache, remote=case.remote, create_remote=r == 0 and fresh, fresh=fresh,
                             schema=SCHEMA, clock_ms=1_700_000_000_000)
        assert reply["type"] == "init_ok" and reply["protocol"] == 2, reply

    def request(self, kind, **fields):
        self.proc.stdin.write(json.dumps({"type": kind, "msg_id": self.msg_id, **fields}).encode() + b"\n")
        self.proc.stdin.flush()
        self.msg_id += 1
        line = self.proc.stdout.readline()
        if os.environ.get("SMOKE_TRACE"):
            print(f"r{self.r} {kind} {json.dumps(fields)[:300]} -> {line.decode().strip()[:300]}", file=sys.stderr)
        if not line:
            return None  # exited (a crash point)
        reply = json.loads(line)
        assert reply["in_reply_to"] == self.msg_id - 1 and reply["type"] != "error", reply
        for move in reply.get("renumbered", []):  # a reported renumbering is true
            rows = read_cache(self.cache)[move["table"]]
            assert move["from"] not in rows and (move["to"] in rows or kind != "write"), (move, kind)
        return reply

    def kill(self):
        self.proc.kill()
        self.proc.wait()


class Case:
    def __init__(self, folder, rng, mode, remote_kind, replicas):
        self.folder, self.rng, self.mode, self.replicas, self.tag = folder, rng, mode, replicas, 0
        self.env = dict(os.environ, SERVER_IDS_MODE=mode)
        if remote_kind == "sqlite":
            self.remote = {"kind": "sqlite", "path": os.path.join(folder, "remote.db")}
        else:
            self.remote = {"kind": "postgres", "url": os.environ["SYNCGATE_PG_URL"],
                           "schema": f"smoke_{os.getpid()}_{rng.randrange(10**9)}"}
        self.logical, self.live = {}, {}  # host tag -> its row (its insert's tag); row -> never deleted
        self.nodes = [Replica(self, r, True) for r in range(replicas)]

    def next_tag(self, word):
        self.tag += 1
        return f"{word}.w{self.tag}"

    def step(self):
        rng, r = self.rng, self.rng.randrange(self.replicas)
        node, rows = self.nodes[r], read_cache(self.nodes[r].cache)
        roll = rng.random()
        if roll < 0.35:
            t = rng.choice(["domains", "hosts", "dns_records", "family"])
            if t == "dns_records" and not rows["domains"]:
                return
            ops = [insert(t, self, rng, rows)] if t != "family" else [insert("domains", self, rng, rows)] + [
                {"op": "insert", "table": "dns_records",
                 "values": {"domain_id": {"ref": 0}, "kind": self.next_tag("MX"), "value": "v"}}]
            reply = node.request("write", ops=ops)
            if reply["type"] == "write_ok" and t == "hosts":
                tag = ops[0]["values"]["hostname"]
                self.logical[tag], self.live[tag] = tag, True
        elif roll < 0.55:
            t = rng.choice(list(TABLES))
            if rows[t]:
                row_id, tag = rng.choice(sorted(rows[t])), self.next_tag(t)
                reply = node.request("write", ops=[{"op": "update", "table": t, "id": row_id, "set": {IDENTITY[t]: tag}}])
                if reply["type"] == "write_ok" and t == "hosts":
                    self.logical[tag] = self.logical[rows[t][row_id][0]]
        elif roll < 0.62:
            t = rng.choice(list(TABLES))
            if rows[t]:
                row_id = rng.choice(sorted(rows[t]))
                if node.request("write", ops=[{"op": "delete", "table": t, "id": row_id}])["type"] == "write_ok":
                    if t == "hosts":
                        self.live[self.logical[rows[t][row_id][0]]] = False
        elif roll < 0.92:
            node.request(rng.choice(["push", "pull", "sync"]))
        elif roll < 0.96:
            node.kill()
            self.nodes[r] = Replica(self, r, False)
        else:
            node.request("arm_crash", point=rng.choice(CRASH_POINTS))
            if node.request(rng.choice(["push", "pull", "sync"])) is None:
                node.kill()
                self.nodes[r] = Replica(self, r, False)

    def settle(self):
        for _ in range(ROUNDS_MAX):
            before = [read_cache(n.cache) for n in self.nodes] + [read_remote(self.remote)]
            replies = [n.request("sync") for n in self.nodes]
            assert all(x["type"] == "sync_ok" for x in replies), replies
            after = [read_cache(n.cache) for n in self.nodes] + [read_remote(self.remote)]
            if before == after and not any(
                    n.request("pending")["pending"] for n in self.nodes):
                return
        raise AssertionError(f"not settled after {ROUNDS_MAX} rounds")


def insert(t, case, rng, rows):
    if t == "domains":
        values = {"name": rng.choice(NAMES), "registrar": case.next_tag("reg"), "updated": rng.randrange(100)}
    elif t == "hosts":
        values = {"hostname": case.next_tag("host"), "ip": rng.choice(["10.0.0.1", None])}
    else:
        values = {"domain_id": rng.choice(sorted(rows["domains"])), "kind": case.next_tag("A"), "value": "v"}
    return {"op": "insert", "table": t, "values": values}


def read_cache(path):
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        return {t: {row[0]: row[1:] for row in db.execute(f'SELECT id, {", ".join(cols)} FROM "{t}"')}
                for t, cols in TABLES.items()}


def read_remote(remote):
    if remote["kind"] == "sqlite":
        return read_cache(remote["path"])
    import psycopg

    with psycopg.connect(remote["url"]) as conn:
        conn.execute(f'SET search_path TO "{remote["schema"]}"')
        return {t: {row[0]: tuple(row[1:]) for row in conn.execute(f'SELECT id, {", ".join(cols)} FROM "{t}"')}
                for t, cols in TABLES.items()}


def content(tables):
    """Rows by content: ids dropped, a record's domain_id replaced by its domain's row."""
    out = {t: sorted(map(repr, rows.values())) for t, rows in tables.items()}
    out["dns_records"] = sorted(repr((tables["domains"].get(d), k, v)) for d, k, v in tables["dns_records"].values())
    return out


def check(case):
    remote = read_remote(case.remote)
    for t in TABLES:  # integrity
        keys = [row[0] for row in remote[t].values() if t == "domains" and row[0] is not None]
        assert len(keys) == len(set(keys)), f"duplicate names on the remote: {keys}"
    assert all(d in remote["domains"] for d, _, _ in remote["dns_records"].values()), "dangling record"
    for n in case.nodes:
        cache = read_cache(n.cache)
        assert content(cache) == content(remote), f"r{n.r} differs from the remote:\n{cache}\n{remote}"
        if case.mode == "temp":
            assert cache == remote, f"r{n.r}: ids differ from the server's:\n{cache}\n{remote}"
    held = {case.logical[row[0]] for row in remote["hosts"].values()}
    lost = [h for h, live in case.live.items() if live and h not in held]
    assert not lost, f"hosts lost: {lost}"


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--mode", default="map", choices=["map", "temp"])
    parser.add_argument("--remote", default="sqlite", choices=["sqlite", "postgres"])
    parser.add_argument("--cases", type=int, default=20)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--first", type=int, default=0)
    args = parser.parse_args()
    for n in range(args.first, args.cases):
        rng = random.Random(f"{args.seed}/{n}")
        with tempfile.TemporaryDirectory(prefix="server-ids-smoke-") as folder:
            case = Case(folder, rng, args.mode, args.remote, rng.randint(1, 3))
            try:
                for _ in range(args.steps):
                    case.step()
                case.settle()
                check(case)
            except AssertionError as e:
                print(f"case {args.seed}/{n} ({args.mode}, {args.remote}): FAILED: {e}")
                return 1
            finally:
                for node in case.nodes:
                    node.kill()
                if args.remote == "postgres":
                    import psycopg

                    with psycopg.connect(os.environ["SYNCGATE_PG_URL"], autocommit=True) as conn:
                        conn.execute(f'DROP SCHEMA IF EXISTS "{case.remote["schema"]}" CASCADE')
    print(f"{args.cases} cases ({args.mode}, {args.remote}): ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
