#!/usr/bin/env bash
# `hrm verify-reference` on one fixture. Usage: verify_fixture.sh HRM_BINARY CONFIGURED_FIXTURE_DIR NAME
# The fixture is $HRM_FIXTURE_DIR/NAME when HRM_FIXTURE_DIR is set, else CONFIGURED_FIXTURE_DIR/NAME.
# Exit 77 (ctest: skipped) with a loud message when it is absent or its model is not in this build.
set -uo pipefail
HRM=$1
dir="${HRM_FIXTURE_DIR:-$2}/$3"
if [ ! -f "$dir/manifest.json" ]; then
  echo "SKIPPED: no reference fixture at $dir (set HRM_FIXTURE_DIR or configure -DHRM_FIXTURE_DIR=...)"
  exit 77
fi
log=$(mktemp)
trap 'rm -f "$log"' EXIT
"$HRM" verify-reference "$dir" | tee "$log"
rc=${PIPESTATUS[0]}
if [ "$rc" -eq 77 ]; then echo "SKIPPED: $dir is a model this build does not have"; fi
# With AVX2 + FMA and no OPENBLAS_CORETYPE of the user's, the float32 GEMMs run OpenBLAS's Haswell kernels (the Zen
# core type runs them too): docs/reference-parity.md.
if [ "$rc" -ne 77 ] && [ -z "${OPENBLAS_CORETYPE:-}" ] && grep -qw avx2 /proc/cpuinfo && grep -qw fma /proc/cpuinfo; then
  grep -Eq "float32 GEMMs: OpenBLAS ([0-9][0-9.]* )?(Haswell|Zen) kernels" "$log" || { echo "FAIL: not the Haswell kernels"; exit 1; }
fi
exit "$rc"
