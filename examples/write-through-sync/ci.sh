#!/usr/bin/env bash
# CI for the example: the gate must pass the write-through layer with no bug switched on, on a
# SQLite remote and on PostgreSQL, and must catch each planted bug (on SQLite) with a property its
# row in README.md predicts.
#
#     bash examples/write-through-sync/ci.sh path/to/syncgate
#
# The PostgreSQL run needs SYNCGATE_PG_URL (as the repository's PostgreSQL tests do); without it
# that row says SKIPPED and the rest runs. Prints one line per run and exits non-zero if any
# expectation fails. Seeds are fixed (`ci-<bugs>-<remote>`), so a run that passes here passes
# again; the whole script takes about four minutes on a 2-core machine (README.md, "Speed").
set -euo pipefail

if [ $# -ne 1 ]; then
  echo "usage: bash examples/write-through-sync/ci.sh path/to/syncgate" >&2
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

# bugs | remote | cases | properties it must produce: any one of them, in the names the gate
# reports ("-": no case may fail). The correct layer: at least 300 cases on SQLite, 100 on
# PostgreSQL. Each bug fails at least one case in ten with its seed.
runs=(
  "none|sqlite|300|-"
  "none|postgres|100|-"
  "swallow_push_failure|sqlite|40|TruthfulStatus Convergence"
  "swallow_push_failure|postgres|40|TruthfulStatus Convergence"
  "leaky_rollback|sqlite|40|NoAbortedRead"
  "leaky_rollback|postgres|40|NoAbortedRead"
)

printf '%-22s %-8s %5s %5s %4s %7s  %-10s %-40s %s\n' WRITE_THROUGH_BUGS remote cases secs exit cases/s verdict \
  "properties found" expected
status=0
for run in "${runs[@]}"; do
  IFS='|' read -r bugs remote cases expected <<<"$run"
  name="$bugs-$remote"
  if [ "$remote" = postgres ] && [ -z "${SYNCGATE_PG_URL:-}" ]; then
    printf '%-22s %-8s %5s %5s %4s %7s  %-10s %s\n' "$bugs" "$remote" "$cases" - - - SKIPPED \
      "SYNCGATE_PG_URL is not set (e.g. postgresql://root@127.0.0.1:5432/test)"
    continue
  fi
  summary="$failures_dir/$name.json"
  # A passing run must pass every case (a failure is shrunk, in at most 100 runs, and printed).
  # A bug's run: --each-property (a failure of each property, so that the properties found are
  # all there), shrinking bounded at 5 runs (CI needs the property, not the smallest trace;
  # README.md shows the shrunk ones).
  extra=(--shrink-runs-max 100)
  if [ "$expected" != - ]; then
    extra=(--each-property --shrink-runs-max 5)
  fi
  started=$SECONDS
  set +e
  WRITE_THROUGH_BUGS="$bugs" "$syncgate" check \
    --engine "exec:$py -S examples/write-through-sync/adapter.py" --remote "$remote" \
    --cases "$cases" --seed "ci-$name" "${extra[@]}" \
    --failures-dir "$failures_dir/traces" --json >"$summary" 2>"$failures_dir/$name.err"
  code=$?
  set -e
  # The verdict, from the JSON summary: found = the properties of the shrunk failures.
  read -r verdict rate found < <("$py" - "$summary" "$code" "$expected" <<'PY'
import json, sys

path, code, expected = sys.argv[1], int(sys.argv[2]), sys.argv[3].split()
try:
    summary = json.load(open(path))
except (OSError, ValueError):
    print("NO-JSON", "-", "-")
    sys.exit()
found = sorted({f["invariant"] for f in summary["failures"]})
if expected == ["-"]:
    ok = code == 0 and not summary["failures"] and not summary["other_failing_seeds"]
else:
    ok = code == 1 and bool(set(found) & set(expected))
print("ok" if ok else "UNEXPECTED", f"{summary['cases_per_s']:.1f}", ",".join(found) or "-")
PY
  )
  printf '%-22s %-8s %5s %5s %4s %7s  %-10s %-40s %s\n' "$bugs" "$remote" "$cases" "$((SECONDS - started))" "$code" \
    "$rate" "$verdict" "$found" "${expected// /,}"
  if [ "$verdict" != ok ]; then
    status=1
    "$py" - "$summary" <<'PY' >&2 || true
import json, sys

try:
    summary = json.load(open(sys.argv[1]))
except (OSError, ValueError):
    sys.exit()
for f in summary["failures"]:
    print(f"  {f['seed']}: {f['invariant']} at step {f['step']}: {f['detail']}")
    print("\n".join(f["trace"]))
PY
    tail -n 3 "$failures_dir/$name.err" >&2 || true
  fi
done
exit "$status"
