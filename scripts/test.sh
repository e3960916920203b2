#!/usr/bin/env bash
# The test command: install dependencies, configure, build (Release, all cores), run the whole ctest suite.
# --sanitize: the same suite built with AddressSanitizer + UndefinedBehaviorSanitizer in build-sanitize/ (every
# finding fails its test). Other arguments go to cmake's configure step; CTEST_ARGS to ctest (e.g. -R Npy).
set -euo pipefail
cd "$(dirname "$0")/.."
sanitize=0
args=()
for a in "$@"; do
  if [ "$a" = "--sanitize" ]; then sanitize=1; else args+=("$a"); fi
done
bash scripts/setup.sh
if [ $sanitize -eq 1 ]; then
  export BUILD_DIR=${BUILD_DIR:-build-sanitize}
  args+=(-DHRM_SANITIZE=ON)
  # LibTorch is not instrumented: its allocations are checked, its code is not. Leaks are reported at exit.
  export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:strict_string_checks=1:detect_stack_use_after_return=1}
  export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
  export LSAN_OPTIONS=${LSAN_OPTIONS:-suppressions=$PWD/scripts/lsan.supp:print_suppressions=0}
fi
bash scripts/build.sh "${args[@]+"${args[@]}"}"
cd "${BUILD_DIR:-build}"
# shellcheck disable=SC2086
ctest --output-on-failure -j "$(nproc)" --timeout 900 ${CTEST_ARGS:-}
