#!/usr/bin/env bash
# Runs syncgate's benchmarks and writes benches/RESULTS.md.
#
#   benches/run.sh                 # everything (about 10 minutes on 2 cores)
#   SYNCGATE_BENCH_SIZES=1000,10000 benches/run.sh   # fewer sizes
#   SKIP_MEM=1 benches/run.sh      # skip the 1M-row memory run
#
# The session-extension baseline needs libclang (rusqlite's `session` feature
# runs bindgen); it is installed here when missing (Debian: libclang-dev).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! ldconfig -p 2>/dev/null | grep -q 'libclang.*\.so' && ! ls /usr/lib/llvm-*/lib/libclang*.so* >/dev/null 2>&1; then
    echo "== installing libclang-dev (for rusqlite/session)" >&2
    SUDO=""
    if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq libclang-dev
fi

echo "== cargo bench -p syncgate-benches --features session" >&2
# The PostgreSQL benches (pg) need a server: SYNCGATE_PG_URL, defaulting to the machine's.
export SYNCGATE_PG_URL="${SYNCGATE_PG_URL:-postgresql://root@127.0.0.1:5432/test}"
cargo bench -p syncgate-benches --features session -- "$@"

if [ "${SKIP_MEM:-0}" != 1 ]; then
    echo "== memory: syncing 1M pending rows" >&2
    cargo run --release -p syncgate-benches --features session --bin mem_1m
fi

echo "== report" >&2
cargo run --release -p syncgate-benches --features session --bin bench_report

echo "== plot" >&2
python3 -c "import matplotlib" 2>/dev/null || pip install -q matplotlib
python3 benches/plot.py
