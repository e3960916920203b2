#!/usr/bin/env bash
# HRM_CPU_ISA: every path this CPU runs is selectable and reported by `hrm bench`; a path it lacks and an unknown
# name are errors before any work; `hrm bench --kernels` times every path it runs.
# Usage: cpu_isa.sh HRM_BINARY WORK_DIR
set -euo pipefail
HRM=$1
source "$(dirname "$0")/common.sh"
fresh_workdir "$2"
# This script forces each path itself and compares with the unforced run: a path forced for the whole test run (the
# suite on a simulated AVX2 CPU, docs/benchmarks.md) must not leak into the unforced one.
unset HRM_CPU_ISA ATEN_CPU_CAPABILITY OPENBLAS_CORETYPE ONEDNN_MAX_CPU_ISA HRM_BF16_PRODUCTS HRM_FUSED_KERNELS
bench=(bench --preset small --batch 2 --steps 1 --warmup 0 H_cycles=1 L_cycles=1 forward_dtype=bfloat16)
if HRM_CPU_ISA=sse9 "$HRM" "${bench[@]}" > bogus.log 2>&1; then
  echo "FAIL: HRM_CPU_ISA=sse9 was accepted"; cat bogus.log; exit 1
fi
grep -q "HRM_CPU_ISA: 'sse9' is not one of avx512, avx2, generic" bogus.log || { echo "FAIL: message"; cat bogus.log; exit 1; }
ran=()
for isa in generic avx2 avx512; do
  if HRM_CPU_ISA=$isa "$HRM" "${bench[@]}" > "$isa.log" 2>&1; then
    ran+=("$isa")
    if [ "$isa" = generic ]; then  # off by default there: LibTorch's ops are faster
      grep -q "LibTorch ops (HRM_FUSED_KERNELS=auto)" "$isa.log" || { echo "FAIL: generic default"; cat "$isa.log"; exit 1; }
      HRM_FUSED_KERNELS=bf16 HRM_CPU_ISA=$isa "$HRM" "${bench[@]}" > "$isa.log" 2>&1
    fi
    grep -q "fused kernels on the $isa path" "$isa.log" || { echo "FAIL: $isa not reported"; cat "$isa.log"; exit 1; }
  else
    grep -q "HRM_CPU_ISA=$isa needs .*which this CPU lacks" "$isa.log" || { echo "FAIL: $isa error"; cat "$isa.log"; exit 1; }
  fi
done
[ "${ran[0]}" = generic ] || { echo "FAIL: the generic path must always run"; exit 1; }
# A path without AVX-512 runs bf16 products on float32 kernels, as on such a CPU (LibTorch's own bf16 loops there
# run at ~2 GFLOP/s; its oneDNN route, capped below AVX-512, could not run them at all).
if [[ " ${ran[*]} " == *" avx2 "* ]]; then
  grep -q "bfloat16 products by float32 kernels, rounded to bfloat16" avx2.log || { echo "FAIL: avx2 bf16 products"; cat avx2.log; exit 1; }
fi
# So does oneDNN capped by its own switch; forward_dtype auto then resolves to float32 (no native bf16 products).
# Without the float32 route the bf16 run aborted on AVX-512 CPUs.
ONEDNN_MAX_CPU_ISA=AVX2 "$HRM" "${bench[@]}" > onednn_avx2.log 2>&1 || { echo "FAIL: ONEDNN_MAX_CPU_ISA=AVX2 bf16"; cat onednn_avx2.log; exit 1; }
grep -q "bfloat16 products by float32 kernels, rounded to bfloat16" onednn_avx2.log || { echo "FAIL: capped bf16 products"; cat onednn_avx2.log; exit 1; }
ONEDNN_MAX_CPU_ISA=AVX2 "$HRM" "${bench[@]/forward_dtype=bfloat16/forward_dtype=auto}" > onednn_auto.log 2>&1
grep -q "float32 (auto: no native bf16)" onednn_auto.log || { echo "FAIL: auto under a capped oneDNN"; cat onednn_auto.log; exit 1; }
"$HRM" bench --preset small --batch 2 --steps 2 --kernels hidden_size=32 num_heads=2 > kernels.log
# the CPU the figures come from, as /proc/cpuinfo names it (family and model tell CPUs of one name apart)
family=$(awk -F': ' '/^cpu family/ { print $2; exit }' /proc/cpuinfo)
if [ -n "$family" ]; then
  grep -q "^cpu: .*(family $family model [0-9]*), [0-9]* cores" kernels.log || { echo "FAIL: cpu line"; head -3 kernels.log; exit 1; }
fi
# The products' ceilings, measured (register-only loops): float32 multiply-adds on the active path; vdpbf16ps where
# the CPU has avx512_bf16, else none; every product row has its % of them. (Not compared with the rows: under
# ctest -j2 another test may share the cores while the ceiling is measured.)
peak_line=$(grep "^peak " kernels.log) || { echo "FAIL: no peak line"; cat kernels.log; exit 1; }
[[ "$peak_line" =~ float32\ multiply-adds\ \(${ran[-1]}\ path\)\ ([0-9.]+)\ GFLOP/s\;\ bf16\ dot\ products\ \(vdpbf16ps\)\ ([0-9-]+)\  ]] ||
  { echo "FAIL: peak line: $peak_line"; exit 1; }
awk -v p="${BASH_REMATCH[1]}" 'BEGIN { exit !(p > 1) }' || { echo "FAIL: float32 peak ${BASH_REMATCH[1]}"; exit 1; }
if grep -qw avx512_bf16 /proc/cpuinfo; then
  [[ "${BASH_REMATCH[2]}" =~ ^[0-9]+$ ]] || { echo "FAIL: no bf16 peak on an avx512_bf16 CPU: $peak_line"; exit 1; }
else
  [ "${BASH_REMATCH[2]}" = "-" ] || { echo "FAIL: a bf16 peak without avx512_bf16: $peak_line"; exit 1; }
fi
awk '/^(float32|f32-dnnl|bf16-dnnl|bfloat16|one-pass|two-ops) / { n++; if ($NF !~ /^([0-9]+%|-)$/) bad = bad "\n" $0 }
     END { if (n == 0 || bad != "") { print "FAIL: GEMM rows without a % peak column:" bad; exit 1 } }' kernels.log
for isa in "${ran[@]}"; do
  for kernel in add_rms_norm swiglu attention; do
    [ "$(grep -c "^$isa .* $kernel " kernels.log)" = 4 ] || { echo "FAIL: $isa $kernel rows"; cat kernels.log; exit 1; }
  done
done
# The float32 products: oneDNN's sgemm where the build has it (the float32 bench says so), else torch::linear only.
"$HRM" bench --preset small --batch 2 --steps 1 --warmup 0 H_cycles=1 L_cycles=1 forward_dtype=float32 > f32.log 2>&1
gemm_rows=2
if grep -q "fused kernels on the .* path (HRM_FUSED_KERNELS=auto), float32 products by oneDNN" f32.log; then
  gemm_rows=3
  # a forced avx2 path caps oneDNN's kernels too (a CPU without AVX-512)
  if [[ " ${ran[*]} " == *" avx2 "* ]]; then
    HRM_CPU_ISA=avx2 "$HRM" bench --preset small --batch 2 --steps 1 --warmup 0 H_cycles=1 L_cycles=1 \
      forward_dtype=float32 > f32_avx2.log 2>&1
    grep -q "float32 products by oneDNN (avx2 kernels)" f32_avx2.log || { echo "FAIL: oneDNN not capped"; cat f32_avx2.log; exit 1; }
    # before any product runs: bench --kernels times bf16 products before its oneDNN float32 ones
    HRM_CPU_ISA=avx2 "$HRM" bench --preset small --batch 2 --steps 1 --kernels hidden_size=32 num_heads=2 > kernels_avx2.log
    grep -q "f32-dnnl: oneDNN's avx2 kernels; bfloat16: float32 kernels, rounded to bfloat16" kernels_avx2.log &&
      grep -q "^peak      float32 multiply-adds (avx2 path) " kernels_avx2.log ||
      { echo "FAIL: bench --kernels on the avx2 path"; cat kernels_avx2.log; exit 1; }
  fi
  grep -q "^f32-dnnl .* one layer's four products" kernels.log || { echo "FAIL: oneDNN rows"; cat kernels.log; exit 1; }
fi
# Where bf16 products leave LibTorch's oneDNN route (taken on AVX-512 CPUs) for float32 kernels or hrm's AVX512-BF16
# kernels, that route is a row too.
if grep -qE "bfloat16: (float32 kernels, rounded to bfloat16|hrm's AVX512-BF16 kernels)" kernels.log && grep -qw avx512bw /proc/cpuinfo; then
  grep -q "^bf16-dnnl .*one layer's four products" kernels.log || { echo "FAIL: bf16-dnnl rows"; cat kernels.log; exit 1; }
  gemm_rows=$((gemm_rows + 1))
fi
[ "$(grep -c "one layer's four products" kernels.log)" = $gemm_rows ] || { echo "FAIL: GEMM rows"; cat kernels.log; exit 1; }
# each route's products with their backward too (dx and dw, as the step's last updates run them)
[ "$(grep -c "one layer's products, fwd+bwd" kernels.log)" = $gemm_rows ] &&
  [ "$(grep -cE " (qkv|o|gate_up|down)_proj fwd\+bwd [0-9]+x[0-9]+x[0-9]+ " kernels.log)" = $((4 * gemm_rows)) ] ||
  { echo "FAIL: GEMM fwd+bwd rows"; cat kernels.log; exit 1; }
# The MLP's first product with SwiGLU in one pass is timed against the two ops: float32 where oneDNN's sgemm runs
# the fused float32 path, bf16 on hrm's AVX512-BF16 kernels.
if grep -q "f32-dnnl .*one layer's four products" kernels.log; then
  grep -q "^one-pass  gate_up+swiglu f32" kernels.log && grep -q "^two-ops   gate_up, swiglu f32" kernels.log ||
    { echo "FAIL: float32 one-pass rows"; cat kernels.log; exit 1; }
fi
if grep -q "bfloat16: hrm's AVX512-BF16 kernels" kernels.log; then
  grep -q "^one-pass  gate_up+swiglu bf16" kernels.log && grep -q "^two-ops   gate_up, swiglu bf16" kernels.log ||
    { echo "FAIL: one-pass rows"; cat kernels.log; exit 1; }
fi
# OpenBLAS's float32 kernels fit the CPU: Debian's OpenBLAS falls back to SSE3 ("Prescott") on CPU models newer
# than its table (Emerald Rapids: 59 GFLOP/s instead of 250); a core the user chose stays.
if grep -qw avx2 /proc/cpuinfo && grep -qw fma /proc/cpuinfo && grep -q "float32: OpenBLAS" kernels.log; then
  grep -Eq "float32: OpenBLAS [0-9.]* ?(Haswell|Zen|SkylakeX|Cooperlake|SapphireRapids) kernels" kernels.log ||
    { echo "FAIL: OpenBLAS kernels without AVX2"; head -1 kernels.log; grep GEMM kernels.log; exit 1; }
  OPENBLAS_CORETYPE=Prescott "$HRM" bench --preset small --batch 2 --steps 1 --kernels hidden_size=32 num_heads=2 > prescott.log
  grep -Eq "float32: OpenBLAS [0-9.]* ?Prescott kernels" prescott.log || { echo "FAIL: OPENBLAS_CORETYPE"; grep GEMM prescott.log; exit 1; }
fi
# HRM_BF16_PRODUCTS picks the route of bf16 products: each named on the bench line; a bad value, or hrm's
# AVX512-BF16 kernels on a CPU without the instructions, is an error naming the variable.
bf16_bench() {
  "$HRM" bench --preset small --batch 2 --steps 1 --warmup 0 H_cycles=1 L_cycles=1 forward_dtype=bfloat16 2>&1
}
HRM_BF16_PRODUCTS=float32 bf16_bench | grep -q "bfloat16 products by float32 kernels, rounded to bfloat16" ||
  { echo "FAIL: HRM_BF16_PRODUCTS=float32"; HRM_BF16_PRODUCTS=float32 bf16_bench; exit 1; }
HRM_BF16_PRODUCTS=onednn bf16_bench | grep -Eq "bfloat16 products by (oneDNN|LibTorch's own loops)" ||
  { echo "FAIL: HRM_BF16_PRODUCTS=onednn"; HRM_BF16_PRODUCTS=onednn bf16_bench; exit 1; }
if HRM_BF16_PRODUCTS=sideways bf16_bench > bad_route.log; then echo "FAIL: a bad HRM_BF16_PRODUCTS ran"; exit 1; fi
grep -q "HRM_BF16_PRODUCTS='sideways' is not one of auto, onednn, float32, hrm" bad_route.log ||
  { echo "FAIL: bad HRM_BF16_PRODUCTS message"; cat bad_route.log; exit 1; }
if HRM_BF16_PRODUCTS=sideways "$HRM" bench --preset small --batch 2 --steps 1 --warmup 0 forward_dtype=float32 \
  > bad_route_f32.log 2>&1; then
  echo "FAIL: a bad HRM_BF16_PRODUCTS ran a float32 command"; exit 1
fi
grep -q "HRM_BF16_PRODUCTS='sideways'" bad_route_f32.log || { echo "FAIL: float32 message"; cat bad_route_f32.log; exit 1; }
if grep -qw avx512_bf16 /proc/cpuinfo; then
  HRM_BF16_PRODUCTS=hrm bf16_bench | grep -q "bfloat16 products by hrm's AVX512-BF16 kernels" ||
    { echo "FAIL: HRM_BF16_PRODUCTS=hrm"; HRM_BF16_PRODUCTS=hrm bf16_bench; exit 1; }
  # the kernels need the avx512 path: a forced avx2 one is an error, not LibTorch's bf16 loops (~2 GFLOP/s there)
  if HRM_BF16_PRODUCTS=hrm HRM_CPU_ISA=avx2 bf16_bench > dot_avx2.log; then
    echo "FAIL: HRM_BF16_PRODUCTS=hrm ran on the avx2 path"; cat dot_avx2.log; exit 1
  fi
  grep -q "HRM_BF16_PRODUCTS=hrm: .*not avx512" dot_avx2.log || { echo "FAIL: hrm on avx2 message"; cat dot_avx2.log; exit 1; }
else
  if HRM_BF16_PRODUCTS=hrm bf16_bench > no_dot.log; then echo "FAIL: HRM_BF16_PRODUCTS=hrm ran without AVX512-BF16"; exit 1; fi
  grep -q "HRM_BF16_PRODUCTS=hrm: .*lacks" no_dot.log || { echo "FAIL: HRM_BF16_PRODUCTS=hrm message"; cat no_dot.log; exit 1; }
fi
echo "PASS: paths ${ran[*]}"
