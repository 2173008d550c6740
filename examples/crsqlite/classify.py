"""Runs the gate on the cr-sqlite adapter and counts the failing cases by what failed.

    python3 examples/crsqlite/classify.py path/to/syncgate --cases 300 --seed crsql-1 [check options...]

A case stops at its first violation, and `syncgate check` shrinks only the first failing case
of each property (`--each-property`); the others are listed by seed. This script replays every
failing case (`syncgate replay --seed S/i`, same engine and shape) and sorts its first
violation into a kind:

- `Integrity: natural-key duplicate`: two rows hold one natural key (replicas inserted the
  same key apart; cr-sqlite keeps both: it allows no UNIQUE on a CRR);
- `Integrity: dangling reference`: a child whose parent is gone (inserted under a parent
  another replica deleted; cr-sqlite allows no checked foreign key on a CRR);
- anything else: the property and the first line of its detail, to be looked at.

Prints one line per kind (cases, example seeds) and the replay command of each example.
Runs from the repository root. The extra options go to `syncgate check`; the replays take the
case's shape from them (`--replicas`, `--steps`, `--long-every` and its shape, `--schema`,
`--remote`).
"""

import collections
import json
import os
import re
import subprocess
import sys
import tempfile

ENGINE = "exec:python3 -S examples/crsqlite/adapter.py"


def kind_of(invariant, detail):
    first = detail.strip().splitlines()[0] if detail.strip() else ""
    if invariant == "Integrity" and re.search(r"held by rows", first):
        return "Integrity: natural-key duplicate"
    if invariant == "Integrity" and re.search(r"(no such|dangl|refers|references|foreign|parent)", first, re.I):
        return "Integrity: dangling reference"
    return f"{invariant}: {re.sub(r'[0-9]+', 'N', first)[:140]}"


def main():
    if len(sys.argv) < 2:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    gate, extra = sys.argv[1], sys.argv[2:]
    options = dict(zip(extra, extra[1:]))
    base = [a for o in ("--schema", "--remote") if o in options for a in (o, options[o])]
    short = ["--replicas", options.get("--replicas", "3"), "--steps", options.get("--steps", "40")]
    long = ["--replicas", options.get("--long-replicas", "4"), "--steps", options.get("--long-steps", "120")]
    long_every = int(options.get("--long-every", 0))

    def shape_of(seed):
        """The replay options of case `seed`: with --long-every N, case i is long when
        i % N == N - 1."""
        i = int(seed.rsplit("/", 1)[1])
        return base + (long if long_every and i % long_every == long_every - 1 else short)

    with tempfile.TemporaryDirectory() as tmp:
        run = subprocess.run(
            [gate, "check", "--engine", ENGINE, "--json", "--each-property", "--shrink-runs-max", "0",
             "--failures-dir", os.path.join(tmp, "traces"), *extra],
            capture_output=True, text=True,
        )
    if run.returncode not in (0, 1):
        sys.stderr.write(run.stderr)
        sys.exit(run.returncode)
    summary = json.loads(run.stdout)
    seeds = [f["seed"] for f in summary["failures"]] + summary["other_failing_seeds"]
    # What the check itself said, for the first failing case of each property.
    said = {f["seed"]: (f["invariant"], f["detail"]) for f in summary["failures"]}
    kinds = collections.defaultdict(list)
    for seed in seeds:
        for _attempt in range(3):  # a case the replay does not fail is tried again
            replay = subprocess.run(
                [gate, "replay", "--engine", ENGINE, "--seed", seed, *shape_of(seed)],
                capture_output=True,
                text=True,
            )
            m = re.search(r"^FAILED at step (\d+): (\w+) — (.*)$", replay.stdout + replay.stderr, re.M)
            if m is not None:
                break
        if m is None:
            invariant, detail = said.get(seed, ("?", "the check did not print it (not its property's first)"))
            kinds[f"(failed in the check, passed 3 replays) {kind_of(invariant, detail)}"].append(seed)
            print(f"not reproduced: {seed}: {invariant}: {detail}", file=sys.stderr)
            continue
        kinds[kind_of(m.group(2), m.group(3))].append(seed)
    print(f"{summary['cases']} cases, {len(seeds)} failing, {summary['cases_per_s']:.1f} cases/s "
          f"(seed {summary['seed']!r}; {' '.join(extra)})")
    for kind, cases in sorted(kinds.items(), key=lambda kv: -len(kv[1])):
        print(f"{len(cases):5d}  {kind}  e.g. {' '.join(cases[:3])}")
    for kind, cases in sorted(kinds.items(), key=lambda kv: -len(kv[1])):
        shape = " ".join(shape_of(cases[0]))
        print(f"  {kind}: {os.path.basename(gate)} replay --engine '{ENGINE}' --seed {cases[0]} {shape}")
    print("missing events:", summary.get("missing_events") or "none")


if __name__ == "__main__":
    main()
