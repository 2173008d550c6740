"""Measures an adapter's process start, with and without the fork server, and its requests.

    python3 adapters/python/bench_start.py examples/python-buggy-sync/adapter.py [--starts 40]

A start is: spawn the adapter, send ``init`` (the first start creates the remote), wait for
``init_ok``, close stdin, wait for the exit, as the harness does for every replica of every
case. Wall time is per start, one at a time; CPU is everything the start cost on this machine:
the client processes and, in fork-server mode, the server and its forked children (read from
/proc). Then one process answers ``write`` (one insert) and ``push`` (that one change) in turn.
The interpreter is this one (``sys.executable``), so no pyenv shim is in the way; pass
``--no-site`` to start the adapter with ``-S``.
"""

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "examples", "python-buggy-sync"))
from smoke import SCHEMA  # noqa: E402  (the harness's schema and DDL)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("adapter")
    parser.add_argument("--starts", type=int, default=40)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--no-site", action="store_true", help="run the adapter with python3 -S")
    args = parser.parse_args()
    command = [sys.executable, *(["-S"] if args.no_site else []), args.adapter]
    base = "/dev/shm" if os.path.isdir("/dev/shm") else None
    with tempfile.TemporaryDirectory(prefix="syncgate-bench-", dir=base) as folder:
        for mode in ("0", "1"):
            env = dict(
                os.environ,
                SYNCGATE_FORKSERVER=mode,
                SYNCGATE_FORKSERVER_DIR=os.path.join(folder, "fs"),
                SYNCGATE_FORKSERVER_IDLE_S="5",
            )
            run_folder = os.path.join(folder, f"mode{mode}")
            os.mkdir(run_folder)
            starts(command, env, run_folder, args.starts, "fork server" if mode == "1" else "in process")
        env = dict(
            os.environ, SYNCGATE_FORKSERVER_DIR=os.path.join(folder, "fs"), SYNCGATE_FORKSERVER_IDLE_S="5"
        )
        os.mkdir(os.path.join(folder, "requests"))
        requests(command, env, os.path.join(folder, "requests"), args.requests)


class Process:
    def __init__(self, command, env, folder, replica, create_remote):
        self.proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env)
        self.msg_id = 0
        self.reply = self.request(
            "init",
            protocol=1,
            replica=replica,
            replicas=64,
            cache=os.path.join(folder, f"replica{replica}.db"),
            remote={"kind": "sqlite", "path": os.path.join(folder, "remote.db")},
            create_remote=create_remote,
            fresh=True,
            schema=SCHEMA,
            clock_ms=1_700_000_000_000,
        )
        assert self.reply["type"] == "init_ok", self.reply

    def request(self, kind, **fields):
        self.proc.stdin.write(json.dumps({"type": kind, "msg_id": self.msg_id, **fields}).encode() + b"\n")
        self.proc.stdin.flush()
        self.msg_id += 1
        return json.loads(self.proc.stdout.readline())

    def close(self):
        self.proc.stdin.close()
        return self.proc.wait(timeout=30)


def starts(command, env, folder, n, label):
    walls, exits = [], []
    t0 = time.perf_counter()
    Process(command, env, folder, replica=0, create_remote=True).close()  # starts the server if any
    first = time.perf_counter() - t0
    cpu_before = _cpu(env)
    for i in range(1, n + 1):
        t0 = time.perf_counter()
        p = Process(command, env, folder, replica=i, create_remote=False)
        walls.append(time.perf_counter() - t0)
        p.close()
        exits.append(time.perf_counter() - t0)
    cpu = _cpu(env) - cpu_before
    print(
        f"{label:11}: spawn to init_ok median {statistics.median(walls) * 1e3:5.1f} ms, to exit "
        f"{statistics.median(exits) * 1e3:5.1f} ms, CPU {cpu / n * 1e3:5.1f} ms per start "
        f"(first start, with the server's: {first * 1e3:.0f} ms)"
    )


def requests(command, env, folder, n):
    p = Process(command, env, folder, replica=0, create_remote=True)
    times = {"write": [], "push": [], "pending": []}
    for i in range(n):
        for kind, fields in (
            (
                "write",
                {
                    "ops": [
                        {
                            "op": "insert",
                            "table": "hosts",
                            "values": {"hostname": f"h.w{i}", "ip": f"ip.w{i}"},
                        }
                    ]
                },
            ),
            ("pending", {}),
            ("push", {}),
        ):
            t0 = time.perf_counter()
            reply = p.request(kind, **fields)
            times[kind].append(time.perf_counter() - t0)
            assert reply["type"] in ("write_ok", "sync_ok", "pending_ok"), reply
    p.close()
    print(
        "requests (fork-server child): "
        + ", ".join(f"{kind} median {statistics.median(t) * 1e3:.2f} ms" for kind, t in times.items())
    )


def _cpu(env):
    """CPU seconds used so far by our children and by the fork server(s) and their children."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    total = usage.ru_utime + usage.ru_stime
    folder = env["SYNCGATE_FORKSERVER_DIR"]
    if os.path.isdir(folder):
        for name in os.listdir(folder):
            if name.endswith(".pid"):
                try:
                    with open(os.path.join(folder, name)) as f, open(f"/proc/{int(f.read())}/stat") as stat:
                        fields = stat.read().rsplit(")", 1)[1].split()
                    total += sum(int(x) for x in fields[11:15]) / os.sysconf("SC_CLK_TCK")
                except (OSError, ValueError):
                    pass
    return total


if __name__ == "__main__":
    main()
