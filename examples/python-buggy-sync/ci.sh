#!/usr/bin/env bash
# CI for the example: the gate must pass the layer with every planted bug switched off, and must
# catch each bug, alone and all together, with a property the bug's row in README.md predicts; and
# the same on a declared schema (`--schema`, the layer's models built from the tables `init`
# sends): the layer passes on notes.sql, and a bug is caught there.
#
#     bash examples/python-buggy-sync/ci.sh path/to/syncgate
#
# Prints one line per run and exits non-zero if any expectation fails. Seeds are fixed (`ci-<bug>`,
# `ci-<schema>-<bug>`), so a run that passes here passes again; each case count leaves room for at
# least three failing cases with that seed (the rarest bugs fail one case in 15 to 30), and the
# whole script takes about three and a half minutes on a 2-core machine (the leaked_lock row
# alone ~90 s, the layer before declared schemas too: the gate waits out the locks the bug
# leaks; the two notes.sql rows ~20 s).
set -euo pipefail

if [ $# -ne 1 ]; then
  echo "usage: bash examples/python-buggy-sync/ci.sh path/to/syncgate" >&2
  exit 2
fi
syncgate="$(cd "$(dirname "$1")" && pwd)/$(basename "$1")"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here/../.."  # the gate runs from the repository root, as in README.md

# The real interpreter, not a pyenv shim (a shim costs ~50 ms per replica process).
py="$(python3 -c 'import sys; print(sys.executable)')"
PIP_ROOT_USER_ACTION=ignore "$py" -m pip install --quiet --disable-pip-version-check -r "$here/requirements.txt"
# The helper, installed as its users install it (again each run: the clone's version).
PIP_ROOT_USER_ACTION=ignore "$py" -m pip install --quiet --disable-pip-version-check --force-reinstall --no-deps \
  "$here/../../adapters/python"

failures_dir="$(mktemp -d)"
trap 'rm -rf "$failures_dir"' EXIT

# bug | cases | properties it must produce: any one of them, as its row in README.md says
# ("caught by"), in the names the gate reports | the schema (`--schema`; none: the built-in one)
runs=(
  "none|150|-"
  "all|30|TruthfulStatus Convergence NoClobber NoResurrection NoIdReuse NoLostWrite Integrity EngineFailed Liveness ReadsTruthful"
  "after_commit_read|20|TruthfulStatus Convergence"
  "memory_pending|40|Convergence"
  "untracked_import|20|TruthfulStatus Convergence"
  "insert_or_replace|140|NoLostWrite Integrity"
  "zero_synced|40|Convergence"
  "wallclock_lww|90|Convergence"
  "colliding_ids|20|NoClobber NoResurrection NoIdReuse Integrity"
  "claims_outside_capture|20|TruthfulStatus Convergence NoResurrection NoIdReuse NoClobber"
  "leaked_lock|120|EngineFailed Liveness Convergence"
  "no_key_merge|20|Integrity"
  "guessed_row_shape|20|ReadsTruthful EngineFailed"
  "none|100|-|examples/schemas/notes.sql"
  "no_key_merge|40|Integrity|examples/schemas/notes.sql"
)

printf '%-24s %-10s %6s %5s %5s  %-9s %-52s %s\n' BUGGY_SYNC_BUGS schema cases secs exit verdict "properties found" \
  expected
status=0
for run in "${runs[@]}"; do
  IFS='|' read -r bugs cases expected schema <<<"$run"
  name="$(basename "${schema:-built-in}" .sql)"
  label="$bugs" schema_args=() seed="ci-$bugs"
  if [ -n "$schema" ]; then
    label="$name-$bugs" schema_args=(--schema "$schema") seed="ci-$name-$bugs"
  fi
  summary="$failures_dir/$label.json"
  # --each-property: a failure of each property, so that the properties found are all there;
  # shrinking bounded at 5 runs (CI needs the property, not the smallest trace; a leaked_lock
  # run takes 1-2 s).
  started=$SECONDS
  set +e
  BUGGY_SYNC_BUGS="$bugs" "$syncgate" check \
    --engine "exec:$py -S examples/python-buggy-sync/adapter.py" \
    ${schema_args[@]+"${schema_args[@]}"} --cases "$cases" --seed "$seed" --each-property --shrink-runs-max 5 \
    --failures-dir "$failures_dir/traces" --json >"$summary" 2>"$failures_dir/$label.err"
  code=$?
  set -e
  # The verdict, from the JSON summary: found = the properties of the shrunk failures.
  read -r verdict found < <("$py" - "$summary" "$code" "$expected" <<'PY'
import json, sys

path, code, expected = sys.argv[1], int(sys.argv[2]), sys.argv[3].split()
try:
    summary = json.load(open(path))
except (OSError, ValueError):
    print("NO-JSON", "-")
    sys.exit()
found = sorted({f["invariant"] for f in summary["failures"]})
if expected == ["-"]:
    # Every switchable bug off: no case may fail, and the run passes.
    clean = not summary["failures"] and not summary["other_failing_seeds"]
    ok = clean and code == 0
else:
    ok = code == 1 and bool(set(found) & set(expected))
print("ok" if ok else "UNEXPECTED", ",".join(found) or "-")
PY
  )
  printf '%-24s %-10s %6s %5s %5s  %-9s %-52s %s\n' "$bugs" "$name" "$cases" "$((SECONDS - started))" "$code" \
    "$verdict" "$found" "${expected// /,}"
  if [ "$verdict" != ok ]; then
    status=1
    tail -n 5 "$failures_dir/$label.err" >&2 || true
  fi
done
exit "$status"
