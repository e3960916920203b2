#!/usr/bin/env bash
# Power loss at 20 random instants (seeded): `hrm train` is SIGKILLed during startup, steps, evaluations and
# checkpoint writes, restarted each time (--resume, or afresh while it has no checkpoint yet), and the run that
# finally completes has logged exactly the metrics of an uninterrupted one.
# Usage: train_kill_campaign.sh HRM_BINARY WORK_DIR [SEED] [KILLS]
set -euo pipefail
HRM=$1
WORK=$2
SEED=${3:-20261129}
KILLS=${4:-20}
source "$(dirname "$0")/common.sh"
fresh_workdir "$WORK"
make_sudoku4 200 16 5
write_tiny_arch 0
printf 'defaults: {arch: tiny}\ndata_path: data\nglobal_batch_size: 8\nepochs: 60\neval_interval: 15\nlr_warmup_steps: 2\nlog_every: 1\ncheckpoint_every_steps: 25\nkeep_checkpoints: 2\n' \
  > configs/toy.yaml
"$HRM" --threads 1 train configs/toy.yaml run_dir=whole > whole.log 2>&1
RANDOM=$SEED
in_write=0 fresh=0 at_start=0
for k in $(seq 1 "$KILLS"); do
  last=$( (ls killed/checkpoints 2> /dev/null || true) | sed -n 's/^step_\([0-9]*\)\.pt$/\1/p' | sort -n | tail -1)
  if [ -n "$last" ]; then
    "$HRM" --threads 1 train --resume killed > segment.log 2>&1 &
  else
    fresh=$((fresh + 1))
    last=0
    "$HRM" --threads 1 train configs/toy.yaml run_dir=killed > segment.log 2>&1 &
  fi
  pid=$!
  # A quarter of the instants fall in the first 300 ms (startup, resume); a quarter inside a checkpoint write (as
  # soon as this process's temporary checkpoint file appears); the others 0-40 ms after a random step within 60 of
  # the checkpoint the segment resumed from (steps, evaluations). 20 segments cannot reach the end of the 1500-step
  # run.
  delay_ms=0
  case $((RANDOM % 4)) in
    0)
      at_start=$((at_start + 1))
      delay_ms=$((RANDOM % 300))
      ;;
    1)
      end=$((SECONDS + 30))
      while [ $SECONDS -lt $end ] && ! compgen -G "killed/checkpoints/*.tmp.$pid.*" > /dev/null; do :; done
      ;;
    *)
      wait_for_line segment.log "^step $((last + 1 + RANDOM % 60))/"
      delay_ms=$((RANDOM % 40))
      ;;
  esac
  [ "$delay_ms" -eq 0 ] || sleep "$(printf '0.%03d' "$delay_ms")"
  if ! kill -KILL "$pid" 2> /dev/null; then
    echo "FAIL: the run ended before kill $k"
    cat segment.log
    exit 1
  fi
  wait "$pid" 2> /dev/null || true
  if compgen -G "killed/checkpoints/*.tmp.$pid.*" > /dev/null; then in_write=$((in_write + 1)); fi
  cat segment.log >> killed.log
done
"$HRM" --threads 1 train --resume killed >> killed.log 2>&1 || { echo "FAIL: the last resume"; tail -20 killed.log; exit 1; }
if ls killed/checkpoints/*.tmp.* > /dev/null 2>&1; then echo "FAIL: temporary checkpoint files left"; exit 1; fi
same_metrics whole/metrics.jsonl killed/metrics.jsonl \
  "$KILLS SIGKILLs (seed $SEED: $at_start in the first 300 ms, $in_write inside a checkpoint write, $fresh before the first checkpoint)"
