#!/usr/bin/env bash
# HRM vs TRM (attention, mlp_t) vs the Transformer baseline on the quick-start task (6x6 Sudoku, 5000 + 500
# generated puzzles) at equal CPU minutes each: trains configs/compare/*.yaml for MINUTES (default 4) each, evaluates
# the held-out split, and prints one row per model. Usage: scripts/compare_models.sh [MINUTES]
set -euo pipefail
cd "$(dirname "$0")/.."
MINUTES=${1:-4}
HRM=build/bin/hrm
[ -x "$HRM" ] || BUILD_TARGET=hrm_cli bash scripts/build.sh > /dev/null
DATA=data/generated/sudoku6
if [ ! -f "$DATA/test/dataset.json" ]; then
  "$HRM" dataset sudoku --generate 5000 --generate-test 500 --size 6 --min-blanks 8 --max-blanks 16 --seed 1 \
    --output-dir "$DATA" --export-csv "$DATA.csv" --overwrite > /dev/null
fi
lscpu | grep -m1 "Model name"
printf '%-14s %8s %10s %8s %10s %10s\n' model steps samples/s exact token params
for m in hrm trm_attention trm_mlp_t transformer; do
  run=runs/compare-$m
  rm -rf "$run"
  "$HRM" --log-level warn train configs/compare/$m.yaml run_dir="$run" time_limit_minutes="$MINUTES" > /dev/null
  "$HRM" eval --checkpoint "$run" --json "$run/eval.json" > /dev/null
  python3 - "$run" "$m" <<'PY'
import json, sys
run, m = sys.argv[1], sys.argv[2]
rows = [json.loads(l) for l in open(run + "/metrics.jsonl")]
train = [r for r in rows if r["split"] == "train"]
rate = sorted(r["samples_per_s"] for r in train)[len(train) // 2]
e = json.load(open(run + "/eval.json"))
log = open(run + "/train.log").read().split(" parameters")[0].split()[-1]
print(f"{m:<14} {train[-1]['step']:>8} {rate:>10.1f} {e['exact_accuracy']:>8.3f} {e['accuracy']:>10.4f} {log:>10}")
PY
done
