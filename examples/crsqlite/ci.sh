#!/usr/bin/env bash
# CI for the example: builds cr-sqlite from the npm package's source (cached after the first
# build), then the gate must pass cr-sqlite on a schema without the constraints it does not
# promise across replicas (natural keys and references: not declarable yet, README "Todo"), and
# must find the lost write when the adapter's restoration of cr-sqlite's triggers after a table
# rebuild is switched off.
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
schema=examples/crsqlite/schemas/unconstrained.sql
failures="$(mktemp -d)"
trap 'rm -rf "$failures"' EXIT

echo "== the correct adapter passes (300 cases, every 5th 4 replicas x 120 steps)"
"$syncgate" check --engine "$engine" --schema "$schema" --cases 300 --seed crsql-ci --long-every 5 \
  --failures-dir "$failures/pass"

echo "== without trigger restoration after a rebuilt table, the lost write is found"
set +e
CRSQLITE_NO_TRIGGER_RESTORE=1 "$syncgate" check --engine "$engine" --schema "$schema" --cases 300 \
  --seed crsql-plain-2 --long-every 5 --failures-dir "$failures/restore" --shrink-runs-max 20 > "$failures/restore.txt" 2>&1
code=$?
set -e
grep -E "^COUNTEREXAMPLE|cases, .* failed" "$failures/restore.txt" || true
if [ "$code" -ne 1 ] || ! grep -qE "^COUNTEREXAMPLE .*: (TruthfulStatus|Convergence|NoLostWrite)" "$failures/restore.txt"; then
  echo "expected a lost write (TruthfulStatus, Convergence or NoLostWrite) and exit 1, got exit $code:" >&2
  tail -20 "$failures/restore.txt" >&2
  exit 1
fi
echo "PASS: cr-sqlite passes; the switched-off trigger restoration is caught"
