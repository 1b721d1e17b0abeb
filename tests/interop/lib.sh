# shellcheck shell=bash
# Sourced by every tests/interop/test_*.sh: paths, skip/fail helpers and a
# private temp dir. ctest passes TS_SRC, TS_BUILD, TS_BIN and TS_SHARED; run
# by hand, the defaults below find a checkout built in build/.
# Exit codes: 0 pass, 1 fail, 77 skip (ctest SKIP_RETURN_CODE).
set -euo pipefail

TS_SRC="${TS_SRC:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}"
TS_DEPS="${TS_DEPS:-$TS_SRC/.deps}"
TS_BUILD="${TS_BUILD:-$TS_SRC/build}"
LLAMA_LIB_DIR="$TS_DEPS/npm/node_modules/@node-llama-cpp/linux-x64/bins/linux-x64"
TS_LLAMA="$TS_BUILD/ts_llama"
SHARED="${TS_SHARED:-$TS_SRC/../shared}"
TESSERA="${TS_BIN:-$TS_BUILD/tessera}"
PY=/usr/bin/python3
NODE_PATH="$TS_DEPS/npm/node_modules"
export TS_SRC TS_DEPS TS_BUILD SHARED TESSERA NODE_PATH

skip() { echo "SKIP: $*"; exit 77; }
fail() { echo "FAIL: $*" >&2; exit 1; }

# Skips (not fails) when scripts/deps.sh has not been run: a plain checkout
# must build and pass its tests without network access.
need_deps() {
  [[ -d "$LLAMA_LIB_DIR" ]] || skip "llama.cpp libraries not found in $LLAMA_LIB_DIR; run scripts/deps.sh"
  [[ -x "$TS_LLAMA" ]] || skip "$TS_LLAMA not built; run scripts/deps.sh, then re-run cmake"
  [[ -x "$PY" ]] || skip "$PY not found; run scripts/deps.sh"
}

need_shared() {
  [[ -d "$SHARED/models" ]] || skip "shared test data not found at $SHARED (set TS_SHARED)"
}

need_tessera() {
  [[ -x "$TESSERA" ]] || skip "tessera not built at $TESSERA"
}

# True when `tessera CMD --help` names the subcommand (used while commands are
# still being written, so tests skip instead of failing).
tessera_has() {
  [[ -x "$TESSERA" ]] && "$TESSERA" "$1" --help >/dev/null 2>&1
}

TMP="$(mktemp -d "${TMPDIR:-/tmp}/ts-interop.XXXXXX")"
trap 'rm -rf "$TMP"' EXIT
