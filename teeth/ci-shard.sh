#!/usr/bin/env bash
# One rotating shard of the cargo-mutants run (TEETH.md), as CI runs it on
# every commit: the shard is the commit count modulo the number of shards, so
# consecutive commits sample consecutive shards and every mutant is run once
# every SHARDS commits.
#
#   teeth/ci-shard.sh [SHARD]        # SHARD defaults to $(git rev-list --count HEAD) % SHARDS
#
# Needs the gate built from this tree (cargo build --release -p syncgate) and
# cargo-mutants (installed here when missing). Mutates the tree in place
# (--in-place: no scratch copy to build, the debug build of `cargo test` is
# reused); cargo-mutants puts every file back, and this script checks that
# the tree is unchanged afterwards.
#
# Fails when a mutant of the shard survives that the committed full run did
# not leave as a survivor (teeth/survivors.txt, compared without line and
# column, so unrelated edits that move lines do not count as new): either the
# gate lost a tooth or the engine gained code the gate does not reach. Triage
# it as TEETH.md says (close the gap, or skip it as equivalent in
# .cargo/mutants.toml with the reason) and regenerate the list.
set -euo pipefail
export LC_ALL=C
cd "$(dirname "$0")/.."

SHARDS=${SYNCGATE_TEETH_SHARDS:-80}
MUTANTS_VERSION=27.1.0
known=teeth/survivors.txt

if ! cargo mutants --version 2>/dev/null | grep -qF "$MUTANTS_VERSION"; then
  echo "teeth: installing cargo-mutants $MUTANTS_VERSION (a debug build: it only drives the run, and builds in about half the time)"
  cargo install cargo-mutants --version "$MUTANTS_VERSION" --locked --debug --quiet
fi

gate=$PWD/target/release/syncgate
if [ ! -x "$gate" ]; then
  echo "teeth: $gate is missing: build the gate first (cargo build --release -p syncgate)" >&2
  exit 2
fi
if [ ! -f "$known" ]; then
  echo "teeth: $known is missing: it lists the survivors of the committed full run (TEETH.md)" >&2
  exit 2
fi
if ! git diff --quiet -- engine/src; then
  echo "teeth: engine/src has uncommitted changes; --in-place would mutate them: commit or stash first" >&2
  exit 2
fi

shard=${1:-$(( $(git rev-list --count HEAD) % SHARDS ))}
out=$(mktemp -d "${TMPDIR:-/tmp}/syncgate-teeth-shard-XXXXXX")
trap 'rm -rf "$out"' EXIT
echo "teeth: shard $shard/$SHARDS of the cargo-mutants run (round-robin over every mutant of engine/src)"
status=0
SYNCGATE_TEETH_GATE=$gate cargo mutants --in-place --no-shuffle --sharding round-robin --shard "$shard/$SHARDS" \
  --test-package syncgate-reference-adapter --baseline skip --timeout 240 -o "$out" || status=$?

if ! git diff --quiet -- engine/src; then
  echo "teeth: engine/src was left changed by the in-place run:" >&2
  git diff --stat -- engine/src >&2
  exit 2
fi

results=$out/mutants.out
for kind in caught missed timeout unviable; do
  printf '%s %s  ' "$(cat "$results/$kind.txt" 2>/dev/null | wc -l)" "$kind"
done
echo
# cargo-mutants exits 0 (all caught), 2 (some missed), 3 (timeouts); anything
# else is the run itself failing.
case $status in
  0 | 2 | 3) ;;
  *) echo "teeth: cargo mutants failed (exit $status); its log is in $results" >&2; exit "$status" ;;
esac

without_position() { sed -E 's/^([^:]+):[0-9]+:[0-9]+: /\1: /' "$@"; }
new=$(comm -23 <(without_position "$results/missed.txt" | sort -u) <(without_position "$known" | sort -u))
if [ -n "$new" ]; then
  echo "teeth: mutants that survived the gate here but not in the committed full run ($known):" >&2
  printf '%s\n' "$new" >&2
  echo "triage each (TEETH.md): close the gap in the harness, or skip it as equivalent in .cargo/mutants.toml with its reason" >&2
  exit 1
fi
if [ -s "$results/timeout.txt" ]; then
  echo "teeth: timeouts (each a hang the gate's own timeout did not turn into a failure within 240 s):"
  cat "$results/timeout.txt"
fi
echo "teeth: every mutant of the shard was caught, or survives in the full run too"
