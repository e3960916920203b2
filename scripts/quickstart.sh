#!/usr/bin/env bash
# CPU quick start, from a fresh machine: install dependencies, build, generate 6x6 Sudoku offline, train a small HRM
# (configs/quickstart_cpu.yaml), evaluate it on held-out puzzles and solve one with its per-segment trace.
# The last line printed is the held-out metrics as one JSON object (as `hrm eval --json` writes them).
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)
bash scripts/setup.sh
BUILD_TARGET=hrm_cli bash scripts/build.sh > /dev/null
HRM=build/bin/hrm
DATA=data/generated/sudoku6
RUN=runs/quickstart

echo "== dataset: 6x6 Sudoku, generated offline (train and test puzzles never equivalent)"
"$HRM" dataset sudoku --size 6 --generate 5000 --generate-test 500 --min-blanks 8 --max-blanks 16 --seed 1 \
  --output-dir "$DATA" --export-csv "$DATA.csv" --overwrite

# The contract is 20 minutes end to end: training gets what setup, build and data left of them, less a minute for
# the trace, the evaluation and the report (a built tree leaves ~18.5 minutes, a fresh machine ~12). The trainer's
# fit_time_limit sizes the run to that cap from the rate it measures.
budget_s=${HRM_QUICKSTART_BUDGET_S:-1200}
setup_s=$(($(date +%s) - start))
train_s=$((budget_s - setup_s - 60))
if [ "$train_s" -lt 120 ]; then
  echo "quickstart: setup took $setup_s s of the $budget_s s budget; training gets 120 s anyway"
  train_s=120
fi
minutes=$(awk -v s="$train_s" 'BEGIN { printf "%.2f", s / 60 }')
echo "== train: configs/quickstart_cpu.yaml -> $RUN (time cap $minutes min: what $setup_s s of setup left of $budget_s s)"
rm -rf "$RUN"
"$HRM" train configs/quickstart_cpu.yaml data_path="$DATA" run_dir="$RUN" time_limit_minutes="$minutes"

echo "== solve one held-out puzzle"
puzzle=$(sed -n 2p "${DATA}_test.csv" | cut -d, -f2)
"$HRM" solve --checkpoint "$RUN" --sudoku "$puzzle" --trace --html "$RUN/trace.html"

echo "== evaluate on the held-out test split ($(( $(date +%s) - start )) s so far)"
"$HRM" eval --checkpoint "$RUN" --json "$RUN/eval.json" > "$RUN/eval.log"
grep -v '^{' "$RUN/eval.log"
echo "quick start took $(( $(date +%s) - start )) s"
echo "report: $("$HRM" report "$RUN")"
cat "$RUN/eval.json"
