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
