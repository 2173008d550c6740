#!/usr/bin/env bash
# Builds cr-sqlite's loadable SQLite extension (crsqlite.so) from the source the npm package
# @vlcn.io/crsqlite ships, with our patches (patches/*.patch), and prints the path of the .so
# on stdout (everything else goes to stderr):
#
#     so="$(bash examples/crsqlite/build.sh)"
#
# The npm package's install script downloads a prebuilt binary, which cannot be fetched here,
# so the package is fetched with `npm pack` (no scripts run) and built with `make loadable`
# and the machine's nightly Rust. What it needs:
#   - npm (the registry), gcc and make;
#   - a nightly Rust toolchain (`rustup toolchain list`; CRSQLITE_TOOLCHAIN=name picks one);
#     the package pins nightly-2023-10-05 in rust-toolchain.toml files: they are removed and
#     RUSTUP_TOOLCHAIN overrides them;
#   - libclang (bindgen generates the SQLite bindings): `apt-get install -y libclang-dev`,
#     done here when it is missing and we are root;
#   - crates.io (cargo fetches bindgen and the other build dependencies the lock file names).
#
# The result is cached in $CRSQLITE_CACHE_DIR (default
# ${XDG_CACHE_HOME:-$HOME/.cache}/syncgate/crsqlite-0.16.3-<hash of the patches>/), with its
# own cargo target dir; when crsqlite.so is there already, nothing is built. A clean build
# takes about 40 s on this project's 2-core machine (README.md, "Build"); it uses at
# most CRSQLITE_JOBS (default 2) jobs. CRSQLITE_REBUILD=1 builds again; the sources and the
# target dir are removed after a build unless CRSQLITE_KEEP_BUILD=1.
set -euo pipefail

VERSION=0.16.3
PACKAGE="@vlcn.io/crsqlite@$VERSION"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
jobs="${CRSQLITE_JOBS:-2}"

say() { echo "build.sh: $*" >&2; }

shopt -s nullglob
patches=("$here"/patches/*.patch)
shopt -u nullglob
if [ ${#patches[@]} -eq 0 ]; then
  say "no patches in $here/patches"
  exit 2
fi
patch_hash="$(cat "${patches[@]}" | sha256sum | cut -c1-12)"
out="${CRSQLITE_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/syncgate/crsqlite-$VERSION-$patch_hash}"
so="$out/crsqlite.so"

if [ -f "$so" ] && [ "${CRSQLITE_REBUILD:-0}" != 1 ]; then
  echo "$so"
  exit 0
fi

mkdir -p "$out"
# One build at a time per output dir (two CI jobs, or a run started twice).
exec 9>"$out/.lock"
flock 9
if [ -f "$so" ] && [ "${CRSQLITE_REBUILD:-0}" != 1 ]; then
  echo "$so"
  exit 0
fi

# --- what the build needs ------------------------------------------------------------------
for tool in npm make gcc patch rustup; do
  command -v "$tool" >/dev/null || { say "$tool is missing"; exit 2; }
done
toolchain="${CRSQLITE_TOOLCHAIN:-$(rustup toolchain list | awk '/^nightly/ {print $1; exit}')}"
if [ -z "$toolchain" ]; then
  say "no nightly Rust toolchain (rustup toolchain install nightly, or set CRSQLITE_TOOLCHAIN)"
  exit 2
fi
have_libclang() {
  [ -n "${LIBCLANG_PATH:-}" ] && return 0  # bindgen's own way to name one
  if command -v dpkg-query >/dev/null; then
    dpkg-query -W -f='${Status}' libclang-dev 2>/dev/null | grep -q 'install ok installed'
  else
    ldconfig -p 2>/dev/null | grep -q 'libclang\(-[0-9.]*\)\?\.so'
  fi
}
if ! have_libclang; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    say "installing libclang-dev (bindgen needs libclang)"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q libclang-dev >&2 ||
      { apt-get update -q >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q libclang-dev >&2; }
  else
    say "libclang is missing: install libclang-dev (bindgen needs it)"
    exit 2
  fi
fi

# --- fetch, patch, build --------------------------------------------------------------------
started=$SECONDS
work="$out/build"
rm -rf "$work"
mkdir -p "$work"
say "fetching $PACKAGE"
(cd "$work" && npm pack --silent "$PACKAGE" >&2)
tar -xzf "$work"/vlcn.io-crsqlite-"$VERSION".tgz -C "$work"
src="$work/package"
# The package ships stale target/ dirs (generated bindings of another machine): not ours.
find "$src/rs" -name target -type d -prune -exec rm -rf {} +
# The pinned toolchain (nightly-2023-10-05): removed, and RUSTUP_TOOLCHAIN overrides it anyway.
find "$src/rs" -name rust-toolchain.toml -delete
for p in "${patches[@]}"; do
  say "applying $(basename "$p")"
  patch -p1 --quiet --forward -d "$src" <"$p" >&2
done

export RUSTUP_TOOLCHAIN="$toolchain"
export CARGO_TARGET_DIR="$out/target"
export CARGO_BUILD_JOBS="$jobs"
say "building with $(rustc --version) (at most $jobs jobs), target dir $CARGO_TARGET_DIR"
# The Makefile copies the Rust static library from rs/bundle_static/target: point it at ours.
# CRSQLITE_COMMIT_SHA (compiled into the library): the Makefile asks git, and this is no checkout.
make -C "$src" -j1 loadable \
  rs_lib_loadable="$CARGO_TARGET_DIR/release/libcrsql_bundle_static.a" \
  CRSQLITE_COMMIT_SHA="npm-$VERSION" >&2

built="$src/dist/crsqlite.so"
[ -f "$built" ] || { say "make loadable finished without $built"; exit 1; }
cp "$built" "$so.tmp"
mv "$so.tmp" "$so"  # atomic: a crsqlite.so in the cache is always a whole one
say "built $so in $((SECONDS - started)) s"
# The sources and the cargo target dir (~165 MB) are not needed any more: a cache between CI
# runs then holds the 1.6 MB library alone. CRSQLITE_KEEP_BUILD=1 keeps them.
if [ "${CRSQLITE_KEEP_BUILD:-0}" != 1 ]; then
  rm -rf "$work" "$CARGO_TARGET_DIR"
fi
echo "$so"
