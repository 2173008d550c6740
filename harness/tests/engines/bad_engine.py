"""A deliberately bad engine for the harness's tests: it completes the
handshake, then misbehaves on its first write in the way argv[1] names."""
import json
import sys
import time

mode = sys.argv[1]
for line in sys.stdin:
    msg = json.loads(line)
    reply = {"in_reply_to": msg["msg_id"]}
    if msg["type"] == "init":
        reply.update(
            type="init_ok",
            protocol=0 if mode == "old-protocol" else 1,
            engine="bad engine (%s)" % mode,
            capabilities={"clock": False, "crash_points": [], "outside_writes": "not_captured"},
            policies={"merge": "row", "delete": "delete_wins", "natural_keys": "merge", "explicit_ids": False},
        )
    elif msg["type"] == "write":
        print("bad engine: about to %s" % mode, file=sys.stderr, flush=True)
        if mode == "garbage":
            print("Traceback (most recent call last): oops", flush=True)
            continue
        if mode == "hang":
            time.sleep(60)
        if mode == "dies":
            sys.exit(3)
        reply.update(type="write_ok", ids=[1])
    else:
        reply.update(type="error", code="unsupported", message="not in this test")
    print(json.dumps(reply), flush=True)
