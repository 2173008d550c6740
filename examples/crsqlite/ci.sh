#!/usr/bin/env bash
# CI for the example: builds cr-sqlite from the npm package's source (cached after the first
# build), then the gate must pass cr-sqlite on the built-in schema, with what it does not promise
# across replicas declared (natural_keys and references "local_only") and reported as declared
# notes with counts, and must find the lost write, as a lost write, when the adapter's
# restoration of cr-sqlite's triggers after a table rebuild is switched off, and when the writes
# made around the API (sent to the adapter as exec_sql) are run without cr-sqlite's capture.
#
#     bash examples/crsqlite/ci.sh path/to/syncgate
#
# Seeds are fixed, so a run that passes here passes again.
set -euo pipefail

if [ $# -ne 1 ]; then
  echo "usage: bash examples/crsqlite/ci.sh path/to/syncgate" >&2
  exit 2
fi
syncgate="$(cd "$(dirname "$1")" && pwd)/$(basename "$1")"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here/../.."

py="$(python3 -c 'import sys; print(sys.executable)')"
PIP_ROOT_USER_ACTION=ignore "$py" -m pip install --quiet --disable-pip-version-check -r "$here/requirements.txt"
PIP_ROOT_USER_ACTION=ignore "$py" -m pip install --quiet --disable-pip-version-check --force-reinstall --no-deps \
  "$here/../../adapters/python"
started=$SECONDS
so="$(bash "$here/build.sh")"
echo "cr-sqlite: $so ($((SECONDS - started)) s)"

engine="exec:$py -S examples/crsqlite/adapter.py"
failures="$(mktemp -d)"
trap 'rm -rf "$failures"' EXIT

echo "== the correct adapter passes (300 cases, every 5th 4 replicas x 120 steps), the merge-made"
echo "   duplicates and dangling references counted as declared notes"
"$syncgate" check --engine "$engine" --cases 300 --seed crsql-ci --long-every 5 \
  --failures-dir "$failures/pass" | tee "$failures/pass.txt"
for declared in "natural_keys: local_only): [0-9]+ natural-key duplicates made by merges" \
  "references: local_only): [0-9]+ dangling references made by merges"; do
  if ! grep -qE "^note: declared \($declared" "$failures/pass.txt"; then
    echo "expected a declared note matching '$declared'" >&2
    exit 1
  fi
done

echo "== and on a schema drawn per case (100 cases: chains, self-references, REAL and BLOB columns)"
"$syncgate" check --engine "$engine" --cases 100 --seed crsql-random-ci --schema random \
  --failures-dir "$failures/random"

echo "== without trigger restoration after a rebuilt table, the lost write is found"
set +e
CRSQLITE_NO_TRIGGER_RESTORE=1 "$syncgate" check --engine "$engine" --cases 300 \
  --seed crsql-restore-ci --long-every 5 --failures-dir "$failures/restore" --shrink-runs-max 20 > "$failures/restore.txt" 2>&1
code=$?
set -e
grep -E "^COUNTEREXAMPLE|cases, .* failed" "$failures/restore.txt" || true
if [ "$code" -ne 1 ] || ! grep -qE "^COUNTEREXAMPLE .*: (TruthfulStatus|Convergence|NoLostWrite)" "$failures/restore.txt"; then
  echo "expected a lost write (TruthfulStatus, Convergence or NoLostWrite) and exit 1, got exit $code:" >&2
  tail -20 "$failures/restore.txt" >&2
  exit 1
fi
echo "== writes around the API (exec_sql) run but not captured: the lost writes are found"
set +e
CRSQLITE_UNCAPTURED_OUTSIDE=1 "$syncgate" check --engine "$engine" --cases 100 --seed crsql-uncap-ci \
  --failures-dir "$failures/uncaptured" --shrink-runs-max 20 > "$failures/uncaptured.txt" 2>&1
code=$?
set -e
grep -E "^COUNTEREXAMPLE|cases, .* failed" "$failures/uncaptured.txt" || true
if [ "$code" -ne 1 ] || ! grep -qE "^COUNTEREXAMPLE .*: (TruthfulStatus|Convergence|NoLostWrite|NoResurrection)" "$failures/uncaptured.txt"; then
  echo "expected a lost write or delete (TruthfulStatus, Convergence, NoLostWrite or NoResurrection) and exit 1, got exit $code:" >&2
  tail -20 "$failures/uncaptured.txt" >&2
  exit 1
fi
echo "PASS: cr-sqlite passes; the switched-off trigger restoration and the uncaptured outside writes are caught"
