# Shared by the CLI tests (sourced): a fresh work folder and a tiny float32 arch config.
# fresh_workdir DIR: empties DIR, creates DIR/configs/arch and enters DIR.
fresh_workdir() {
  rm -rf "$1" && mkdir -p "$1/configs/arch" && cd "$1"
}
# write_tiny_arch PUZZLE_EMB_NDIM: configs/arch/tiny.yaml, a 1x1-cycle, 1+1-layer, hidden-32 HRM.
write_tiny_arch() {
  cat > configs/arch/tiny.yaml <<YAML
H_cycles: 1
L_cycles: 1
H_layers: 1
L_layers: 1
hidden_size: 32
num_heads: 2
expansion: 2
puzzle_emb_ndim: $1
halt_max_steps: 2
forward_dtype: float32
YAML
}
# make_sudoku4 N_TRAIN N_TEST SEED [more flags]: a generated 4x4 Sudoku dataset in ./data.
make_sudoku4() {
  "$HRM" dataset sudoku --generate "$1" --generate-test "$2" --size 4 --min-blanks 4 --max-blanks 8 \
    --output-dir data --seed "$3" "${@:4}" > /dev/null 2>&1
}
# wait_for_line FILE REGEX: polls FILE (up to 30 s) until a line matches.
wait_for_line() {
  for _ in $(seq 1 600); do
    if grep -q "$2" "$1" 2>/dev/null; then return 0; fi
    sleep 0.05
  done
}
# same_metrics A.jsonl B.jsonl WHAT: passes when both logs hold the same rows apart from timings.
same_metrics() {
  python3 - "$1" "$2" "$3" <<'PY'
import json, sys
def rows(path):
    out = []
    for line in open(path):
        r = json.loads(line)
        r.pop("samples_per_s", None); r.pop("elapsed_s", None)
        out.append(r)
    return out
a, b = rows(sys.argv[1]), rows(sys.argv[2])
if a != b:
    print(f"FAIL: {len(a)} rows uninterrupted, {len(b)} after {sys.argv[3]}, first difference at "
          f"{next(i for i, (x, y) in enumerate(zip(a + [None], b + [None])) if x != y)}")
    raise SystemExit(1)
print(f"PASS: {sys.argv[3]}; {len(a)} metric rows equal to the uninterrupted run's")
PY
}
