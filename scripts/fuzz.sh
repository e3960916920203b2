#!/usr/bin/env bash
# Builds the libFuzzer targets of fuzz/ (clang, AddressSanitizer + UndefinedBehaviorSanitizer) into build-fuzz/ and
# runs each for SECONDS_PER_TARGET (default 60), seeded from fuzz/seeds, ../shared/data and the fixtures. A crash
# stops that target and leaves its input in build-fuzz/crashes/TARGET/; the script then exits 1.
# Usage: scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_PER_TARGET=${1:-60}
shift || true
SHARED=${HRM_SHARED_DIR:-$(cd .. && pwd)/shared}
OUT=${FUZZ_BUILD_DIR:-build-fuzz}
TARGETS=("$@")
[ ${#TARGETS[@]} -gt 0 ] || TARGETS=(npy dataset_json puzzle_csv arc_json config checkpoint solve_puzzle)

bash scripts/setup.sh
for p in clang-14 libclang-rt-14-dev; do  # libFuzzer and the sanitizer runtimes
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
    $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq clang-14 libclang-rt-14-dev
    break
  fi
done
cmake -S fuzz -B "$OUT" -DCMAKE_CXX_COMPILER=clang++-14 -DCMAKE_BUILD_TYPE=RelWithDebInfo > /dev/null
cmake --build "$OUT" -j "$(nproc)"

# seed TARGET FILE...: copies the existing files (at most 1 MiB each) into the target's corpus.
seed() {
  local dir="$OUT/corpus/$1"
  shift
  mkdir -p "$dir"
  for f in "$@"; do
    if [ -f "$f" ] && [ "$(stat -c %s "$f")" -le 1048576 ]; then cp "$f" "$dir/$(echo "$f" | tr '/' '_')"; fi
  done
}
seed_lines() {  # seed_lines TARGET FILE N: the header and first N rows of a CSV as one seed
  mkdir -p "$OUT/corpus/$1"
  [ -f "$2" ] && head -n "$(($3 + 1))" "$2" > "$OUT/corpus/$1/$(basename "$2").head$3"
  return 0
}
rm -rf "$OUT/corpus"
seed npy $(find "$SHARED/fixtures" -name '*.npy' -size -64k 2> /dev/null | sort | head -40)
seed dataset_json fuzz/seeds/dataset_json/*
for f in "$SHARED"/data/sudoku/*.csv "$SHARED"/data/maze/*.csv; do seed_lines puzzle_csv "$f" 3; done
seed arc_json fuzz/seeds/arc_json/* $(find "$SHARED/data/arc-agi-1" -name '*.json' 2> /dev/null | sort | head -20)
seed config fuzz/seeds/config/* configs/*.yaml configs/arch/*.yaml
seed checkpoint fuzz/seeds/checkpoint/* "$SHARED"/fixtures/*/reference_state_dict.pt
seed solve_puzzle fuzz/seeds/solve_puzzle/*

failed=0
export TMPDIR="$PWD/$OUT/tmp"  # where the targets write their inputs as files (fuzz/fuzz_input.h)
rm -rf "$TMPDIR" && mkdir -p "$TMPDIR"
printf '%-14s %8s %12s %10s %s\n' target seconds executions exec/s result
for t in "${TARGETS[@]}"; do
  mkdir -p "$OUT/crashes/$t"
  log="$OUT/fuzz_$t.log"
  set +e
  ASAN_OPTIONS=detect_leaks=1:allocator_may_return_null=1 "$OUT/fuzz_$t" "$OUT/corpus/$t" \
    -max_total_time="$SECONDS_PER_TARGET" -timeout=20 -rss_limit_mb=4096 -malloc_limit_mb=4096 \
    -print_final_stats=1 -artifact_prefix="$OUT/crashes/$t/" > "$log" 2>&1
  rc=$?
  set -e
  runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo 0)
  rate=$(grep -o 'stat::average_exec_per_sec: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo 0)
  result=ok
  if [ $rc -ne 0 ]; then
    result="CRASH (rc $rc): $(ls "$OUT/crashes/$t" | head -1); see $log"
    failed=1
  fi
  printf '%-14s %8s %12s %10s %s\n' "$t" "$SECONDS_PER_TARGET" "${runs:-0}" "${rate:-0}" "$result"
done
exit $failed
