#!/usr/bin/env bash
# Installs what is missing, builds (warnings as errors), runs every test with
# ctest, then rebuilds under ASan+UBSan and runs the unit tests again.
#   scripts/test.sh            everything
#   TS_NO_ASAN=1 scripts/test.sh   skip the sanitizer pass
set -euo pipefail
TS_SRC="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$TS_SRC"
JOBS="$(nproc 2>/dev/null || echo 2)"

bash scripts/deps.sh

echo "== build (Release, -Werror)"
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DTS_WERROR=ON >/dev/null
cmake --build build -j"$JOBS"

echo "== tests"
status=0
(cd build && ctest --output-on-failure -j"$JOBS") || status=1

if [[ -z "${TS_NO_ASAN:-}" ]]; then
  echo "== build (ASan + UBSan)"
  cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DTS_WERROR=ON -DTS_SANITIZE=ON >/dev/null
  cmake --build build-asan -j"$JOBS"
  echo "== unit and hostile-input tests under ASan + UBSan"
  (cd build-asan && ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
     ctest --output-on-failure -j"$JOBS" -L sanitize) || status=1
fi

if [[ $status -ne 0 ]]; then
  echo "FAILED: see the test output above"
fi
exit $status
