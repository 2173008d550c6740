#!/usr/bin/env bash
# CI for the example: installs it as its users would (`npm ci`: better-sqlite3, built here from
# source, and the helper from ../../adapters/node), then the gate must pass the layer with no bug
# switched on and must catch each planted bug with a property its row in README.md predicts.
#
#     bash examples/node-sync/ci.sh path/to/syncgate
#
# Prints one line per run and exits non-zero if any expectation fails. Seeds are fixed
# (`ci-<bugs>`), so a run that passes here passes again. The whole script takes about 3.5 min of
# CPU, a minute of it the build of better-sqlite3: about 2.5 min on an idle 2-core machine, 6 on a
# shared one (README.md, "Speed").
set -euo pipefail

if [ $# -ne 1 ]; then
  echo "usage: bash examples/node-sync/ci.sh path/to/syncgate" >&2
  exit 2
fi
syncgate="$(cd "$(dirname "$1")" && pwd)/$(basename "$1")"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here/../.."  # the gate runs from the repository root, as in README.md

# better-sqlite3's install script first tries to download a prebuilt binary from GitHub, then
# builds from source with node-gyp, which needs the headers of the Node.js that runs it and would
# otherwise download them too. Neither download is possible on a machine that reaches only the
# package registries: build from source at once, against the headers installed beside node (the
# nodejs package ships them in <prefix>/include/node), compiling in parallel.
node_prefix="$(dirname "$(dirname "$(node -p 'process.execPath')")")"
if [ -z "${npm_config_nodedir:-}" ] && [ -f "$node_prefix/include/node/node.h" ]; then
  export npm_config_nodedir="$node_prefix"
fi
if [ -z "${npm_config_nodedir:-}" ] && [ "$(npm config get nodedir)" = undefined ]; then
  echo "ci.sh: no Node.js headers in $node_prefix/include/node: install them (Debian: nodejs or libnode-dev)" \
    "or point npm_config_nodedir at them" >&2
  exit 2
fi
export npm_config_build_from_source=true JOBS=max
started=$SECONDS
(cd "$here" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
echo "npm ci: $((SECONDS - started)) s (better-sqlite3 $(node -p "require('$here/node_modules/better-sqlite3/package.json').version"), built from source)"

failures_dir="$(mktemp -d)"
trap 'rm -rf "$failures_dir"' EXIT

# bugs | cases | properties it must produce: any one of them, in the names the gate reports
# ("-": no case may fail). The correct layer: 300 cases. Each bug: 40 cases, in which it fails
# several with its seed (README.md, "What the gate finds").
runs=(
  "none|300|-"
  "mark_synced_before_commit|40|Convergence NoLostWrite TruthfulStatus"
  "wall_clock_stamps|40|Convergence NoLostWrite"
)

printf '%-26s %5s %5s %4s %7s  %-10s %-30s %s\n' NODE_SYNC_BUGS cases secs exit cases/s verdict "properties found" expected
status=0
for run in "${runs[@]}"; do
  IFS='|' read -r bugs cases expected <<<"$run"
  summary="$failures_dir/$bugs.json"
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
  NODE_SYNC_BUGS="$bugs" "$syncgate" check --engine "exec:node examples/node-sync/adapter.js" \
    --cases "$cases" --seed "ci-$bugs" "${extra[@]}" \
    --failures-dir "$failures_dir/traces" --json >"$summary" 2>"$failures_dir/$bugs.err"
  code=$?
  set -e
  # The verdict, from the JSON summary: found = the properties of the shrunk failures.
  read -r verdict rate found < <(node - "$summary" "$code" "$expected" <<'JS'
const fs = require("node:fs");
const [path, code, expected] = [process.argv[2], Number(process.argv[3]), process.argv[4].split(" ")];
let summary;
try {
  summary = JSON.parse(fs.readFileSync(path, "utf8"));
} catch {
  console.log("NO-JSON - -");
  process.exit(0);
}
const found = [...new Set(summary.failures.map((f) => f.invariant))].sort();
const ok =
  expected[0] === "-"
    ? code === 0 && summary.failures.length === 0 && summary.other_failing_seeds.length === 0
    : code === 1 && found.some((p) => expected.includes(p));
console.log(ok ? "ok" : "UNEXPECTED", summary.cases_per_s.toFixed(1), found.join(",") || "-");
JS
  )
  printf '%-26s %5s %5s %4s %7s  %-10s %-30s %s\n' "$bugs" "$cases" "$((SECONDS - started))" "$code" "$rate" "$verdict" \
    "$found" "${expected// /,}"
  if [ "$verdict" != ok ]; then
    status=1
    node - "$summary" <<'JS' >&2 || true
const fs = require("node:fs");
let summary;
try {
  summary = JSON.parse(fs.readFileSync(process.argv[2], "utf8"));
} catch {
  process.exit(0);
}
for (const f of summary.failures) {
  console.log(`  ${f.seed}: ${f.invariant} at step ${f.step}: ${f.detail}`);
  console.log(f.trace.join("\n"));
}
JS
    tail -n 3 "$failures_dir/$bugs.err" >&2 || true
  fi
done
exit "$status"
