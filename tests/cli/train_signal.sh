#!/usr/bin/env bash
# SIGTERM during `hrm train` writes a checkpoint and exits 0; `hrm train --resume` continues; `hrm eval` and
# `hrm solve` run on the result. Usage: train_signal.sh HRM_BINARY WORK_DIR
set -euo pipefail
HRM=$1
WORK=$2
source "$(dirname "$0")/common.sh"
fresh_workdir "$WORK"
make_sudoku4 300 32 3 --export-csv puzzles.csv
write_tiny_arch 0
cat > configs/toy.yaml <<'YAML'
defaults: {arch: tiny}
data_path: data
global_batch_size: 16
epochs: 100000
eval_interval: 50000
lr: 1e-3
lr_warmup_steps: 10
log_every: 1
YAML
"$HRM" --threads 1 train configs/toy.yaml run_dir=run > train.log 2>&1 &
pid=$!
wait_for_line train.log "^step 20/"
kill -TERM "$pid"
rc=0
wait "$pid" || rc=$?
cat train.log | tail -3
[ "$rc" -eq 0 ] || { echo "FAIL: exit code $rc after SIGTERM"; exit 1; }
grep -q "terminated (SIGTERM) at step" train.log || { echo "FAIL: no stop message"; exit 1; }
ls run/checkpoints/step_*.pt > /dev/null || { echo "FAIL: no checkpoint"; exit 1; }
stopped=$(ls run/checkpoints | sed 's/step_\([0-9]*\).pt/\1/' | sort -n | tail -1)
"$HRM" --threads 1 train --resume run max_steps=$((stopped + 5)) > resume.log 2>&1
grep -q "resumed .* at step $stopped" resume.log || { echo "FAIL: resume"; cat resume.log; exit 1; }
grep -q "max_steps reached at step $((stopped + 5))" resume.log || { echo "FAIL: resume did not continue"; cat resume.log; exit 1; }
"$HRM" eval --checkpoint run --json eval.json > eval.log
grep -q '"exact_accuracy"' eval.json || { echo "FAIL: eval json"; exit 1; }
puzzle=$(sed -n 2p puzzles_test.csv | cut -d, -f2)
"$HRM" solve --checkpoint run --sudoku "$puzzle" --trace --html trace.html > solve.log
grep -q "segment 2" solve.log && grep -q "checker" solve.log && [ -s trace.html ] || { echo "FAIL: solve"; cat solve.log; exit 1; }
echo "PASS: SIGTERM checkpoint at step $stopped, resume, eval, solve"
