#!/usr/bin/env bash
# CI for the example: the gate must pass both modes of the layer (id map, temporary ids
# renumbered) on a SQLite remote and on PostgreSQL, and must catch the planted bug in each mode,
# on both remotes, with a property README.md names.
#
#     SYNCGATE_PG_URL=postgresql://... bash examples/server-ids-sync/ci.sh path/to/syncgate
#
# Prints one line per run and exits non-zero if any expectation fails (or if SYNCGATE_PG_URL is
# not set: the PostgreSQL runs are part of the check). Seeds are fixed (`ci-<mode>-<bug>`), so
# a run that passes here passes again.
set -euo pipefail

if [ $# -ne 1 ]; then
  echo "usage: SYNCGATE_PG_URL=postgresql://... bash examples/server-ids-sync/ci.sh path/to/syncgate" >&2
  exit 2
fi
if [ -z "${SYNCGATE_PG_URL:-}" ]; then
  echo "ci.sh: SYNCGATE_PG_URL is not set; it names the PostgreSQL server of the postgres runs" >&2
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

# mode | bug | remote | cases | properties it must produce ("-": none, the run passes)
runs=(
  "map|none|sqlite|300|-"
  "temp|none|sqlite|300|-"
  "map|none|postgres|100|-"
  "temp|none|postgres|100|-"
  "map|local_id_drift|sqlite|60|WriteOnWrongRow NoLostWrite Integrity Convergence"
  "temp|local_id_drift|sqlite|60|NoLostWrite Integrity Convergence"
  "map|local_id_drift|postgres|30|WriteOnWrongRow NoLostWrite Integrity Convergence"
  "temp|local_id_drift|postgres|30|NoLostWrite Integrity Convergence"
)

printf '%-5s %-15s %-9s %6s %5s %5s  %-9s %-40s %s\n' mode bug remote cases secs exit verdict "properties found" expected
status=0
for run in "${runs[@]}"; do
  IFS='|' read -r mode bug remote cases expected <<<"$run"
  name="$mode-$bug-$remote"
  summary="$failures_dir/$name.json"
  started=$SECONDS
  set +e
  # --each-property: a failure of each property, so that the properties found are all there;
  # shrinking bounded (CI needs the property, not the smallest trace).
  SERVER_IDS_MODE="$mode" SERVER_IDS_BUGS="$bug" "$syncgate" check \
    --engine "exec:$py -S examples/server-ids-sync/adapter.py" --remote "$remote" \
    --cases "$cases" --seed "ci-$mode-$bug" --each-property --shrink-runs-max 5 \
    --failures-dir "$failures_dir/traces" --json >"$summary" 2>"$failures_dir/$name.err"
  code=$?
  set -e
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
    ok = code == 0 and not summary["failures"] and not summary["other_failing_seeds"]
else:
    ok = code == 1 and bool(set(found) & set(expected))
print("ok" if ok else "UNEXPECTED", ",".join(found) or "-")
PY
  )
  printf '%-5s %-15s %-9s %6s %5s %5s  %-9s %-40s %s\n' "$mode" "$bug" "$remote" "$cases" "$((SECONDS - started))" \
    "$code" "$verdict" "$found" "${expected// /,}"
  if [ "$verdict" != ok ]; then
    status=1
    tail -n 5 "$failures_dir/$name.err" >&2 || true
  fi
done
exit "$status"
