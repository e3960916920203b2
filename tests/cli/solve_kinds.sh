#!/usr/bin/env bash
# `hrm solve --maze`, `hrm solve --arc` and `hrm eval` with ARC voting + submission on tiny trained models.
# Usage: solve_kinds.sh HRM_BINARY WORK_DIR SHARED_DIR
set -euo pipefail
HRM=$1
WORK=$2
SHARED=$3
source "$(dirname "$0")/common.sh"
fresh_workdir "$WORK"
write_tiny_arch 32
printf 'defaults: {arch: tiny}\nglobal_batch_size: 8\nepochs: 2\nlr_warmup_steps: 1\n' > configs/toy.yaml

# Maze: 9x9 generated mazes, a few steps of training, then solve one from a file.
"$HRM" dataset maze --generate 24 --generate-test 4 --size 9 --min-path-length 4 --output-dir maze \
  --export-csv mazes.csv --seed 2 > /dev/null 2>&1
"$HRM" --threads 1 train configs/toy.yaml data_path=maze run_dir=run_maze max_steps=3 > /dev/null
sed -n 2p mazes_test.csv | cut -d, -f2 | fold -w 9 > maze.txt
"$HRM" solve --checkpoint run_maze --maze maze.txt --trace > solve_maze.log
grep -q "checker" solve_maze.log || { echo "FAIL: maze solve"; cat solve_maze.log; exit 1; }

# ARC: two training tasks and one evaluation task from the shared ARC-AGI-1 copy.
if [ -d "$SHARED/data/arc-agi-1" ]; then
  mkdir -p arc_raw/training arc_raw/evaluation
  # Globs, not `ls | head`: with pipefail an early-closed pipe (SIGPIPE) would end the script.
  training=("$SHARED"/data/arc-agi-1/training/*.json)
  evaluation=("$SHARED"/data/arc-agi-1/evaluation/*.json)
  cp "${training[0]}" "${training[1]}" arc_raw/training/
  cp "${evaluation[0]}" arc_raw/evaluation/
  eval_task=$(basename "${evaluation[0]}")
  "$HRM" dataset arc --arc-dir arc_raw --output-dir arc --num-aug 3 > /dev/null 2>&1
  "$HRM" --threads 1 train configs/toy.yaml data_path=arc run_dir=run_arc max_steps=2 > /dev/null
  "$HRM" eval --checkpoint run_arc --submission submission.json --json arc_eval.json --save-predictions preds > arc_eval.log
  for f in preds_predictions.npy preds_q_halt_logits.npy preds_inputs.npy preds_labels.npy; do
    [ -s "$f" ] || { echo "FAIL: --save-predictions did not write $f"; exit 1; }
  done
  grep -q '"pass@2"' arc_eval.json || { echo "FAIL: ARC pass@K"; cat arc_eval.log; exit 1; }
  grep -q "\"${eval_task%.json}\"" submission.json || { echo "FAIL: submission"; exit 1; }
  "$HRM" solve --checkpoint run_arc --arc "arc_raw/evaluation/$eval_task" > solve_arc.log
  grep -q "expected output" solve_arc.log || { echo "FAIL: arc solve"; cat solve_arc.log; exit 1; }
fi
echo "PASS: maze solve, ARC eval (pass@K, submission) and ARC solve"
