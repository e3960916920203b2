#!/usr/bin/env bash
# `hrm train` killed with SIGKILL mid-run (no chance to save) resumes from its last periodic checkpoint: metrics.jsonl
# is cut back to that step and the resumed run logs exactly the rows of an uninterrupted one.
# Usage: train_kill.sh HRM_BINARY WORK_DIR
set -euo pipefail
HRM=$1
WORK=$2
source "$(dirname "$0")/common.sh"
fresh_workdir "$WORK"
make_sudoku4 200 16 5
write_tiny_arch 0
printf 'defaults: {arch: tiny}\ndata_path: data\nglobal_batch_size: 8\nepochs: 20\neval_interval: 10\nlr_warmup_steps: 2\nlog_every: 1\ncheckpoint_every_steps: 10\nkeep_checkpoints: 2\n' \
  > configs/toy.yaml
"$HRM" --threads 1 train configs/toy.yaml run_dir=whole > whole.log 2>&1
"$HRM" --threads 1 train configs/toy.yaml run_dir=killed > killed.log 2>&1 &
pid=$!
wait_for_line killed.log "^step 45/"
kill -KILL "$pid" 2>/dev/null || { echo "FAIL: the run ended before the kill"; exit 1; }
wait "$pid" || true
# Only whole checkpoints: a kill during a save leaves its temporary file (step_N.pt.tmp.*), never a step_N.pt.
last=$(ls killed/checkpoints | sed -n 's/^step_\([0-9]*\)\.pt$/\1/p' | sort -n | tail -1)
[ "$last" -ge 40 ] || { echo "FAIL: no periodic checkpoint at step 40 (last: $last)"; exit 1; }
"$HRM" --threads 1 train --resume killed > resumed.log 2>&1
grep -q "resumed .* at step $last" resumed.log || { echo "FAIL: resume"; cat resumed.log; exit 1; }
same_metrics whole/metrics.jsonl killed/metrics.jsonl "killed after a periodic checkpoint, resumed"
