#!/usr/bin/env bash
# A full disk, simulated by the file size limit (ulimit -f: no privileges needed), during a checkpoint write and
# during a dataset build: hrm stops with an error naming the file, the previous checkpoint stays the latest and
# loads, no temporary file or half dataset is left, and the run resumes once there is room again.
# Usage: full_disk.sh HRM_BINARY WORK_DIR
set -euo pipefail
HRM=$1
WORK=$2
source "$(dirname "$0")/common.sh"
fresh_workdir "$WORK"
make_sudoku4 200 16 5
write_tiny_arch 0
printf 'defaults: {arch: tiny}\ndata_path: data\nglobal_batch_size: 8\nepochs: 4\neval_interval: 4\nlr_warmup_steps: 2\nlog_every: 1\ncheckpoint_every_steps: 10\n' \
  > configs/toy.yaml
"$HRM" --threads 1 train configs/toy.yaml run_dir=run max_steps=20 > first.log 2>&1
[ -f run/checkpoints/step_20.pt ] || { echo "FAIL: no checkpoint at step 20"; exit 1; }
size=$(stat -c %s run/checkpoints/step_20.pt)
# Room for the logs, not for another checkpoint (ulimit -f counts KiB).
limit_kib=$((size / 1024 / 2))
set +e
(ulimit -f "$limit_kib"; exec "$HRM" --threads 1 train --resume run) > full.log 2>&1
rc=$?
set -e
[ $rc -eq 2 ] || { echo "FAIL: exit code $rc with a full disk (expected 2)"; cat full.log; exit 1; }
grep -q "hrm: error: cannot write run/checkpoints/step_30.pt: File too large (nothing was replaced)" full.log ||
  { echo "FAIL: no error naming the checkpoint"; tail -5 full.log; exit 1; }
if ls run/checkpoints/*.tmp.* > /dev/null 2>&1; then echo "FAIL: a temporary checkpoint was left"; exit 1; fi
[ "$(ls run/checkpoints | sort -V | tail -1)" = "step_20.pt" ] || { echo "FAIL: checkpoints $(ls run/checkpoints)"; exit 1; }
"$HRM" --threads 1 train --resume run > resumed.log 2>&1 || { echo "FAIL: resume after the disk had room"; exit 1; }
grep -q "resumed .* at step 20" resumed.log || { echo "FAIL: did not resume at step 20"; exit 1; }

set +e
(ulimit -f 16; exec "$HRM" dataset sudoku --generate 3000 --generate-test 100 --size 9 --output-dir big --seed 1) \
  > dataset.log 2>&1
rc=$?
set -e
[ $rc -eq 2 ] || { echo "FAIL: dataset build exit code $rc with a full disk (expected 2)"; cat dataset.log; exit 1; }
grep -q "hrm: error: cannot write .*: File too large" dataset.log || { echo "FAIL: dataset error"; cat dataset.log; exit 1; }
if ls -a | grep -q "big"; then echo "FAIL: a partial dataset was left: $(ls -a | grep big)"; exit 1; fi
echo "PASS: full disk during a checkpoint (limit ${limit_kib} KiB, checkpoint ${size} bytes) and a dataset build:" \
  "exit 2, the error names the file, nothing partial left, resume continues from step 20"
