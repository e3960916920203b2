#!/usr/bin/env bash
# Installs hrm's build dependencies from Debian packages. Idempotent: runs apt-get only for missing packages.
set -euo pipefail

PACKAGES=(
  build-essential cmake pkg-config
  libtorch-dev            # LibTorch (CPU) with its CMake config
  libgloo-dev             # headers of Gloo, the CPU backend of LibTorch's c10d (data-parallel training)
  libopenblas0-pthread    # without it Debian's LibTorch falls back to the reference BLAS (~30x slower fp32 GEMM)
  libdnnl-dev             # oneDNN: the float32 products of the fused path, on LibTorch's OpenMP workers
  zlib1g-dev              # CRC-32 checks of checkpoint archives
  libsleef-dev            # SLEEF's vectorised atan2 (the one LibTorch uses) in the fused AdamATan2 step
  libyaml-cpp-dev libspdlog-dev libcli11-dev libgtest-dev nlohmann-json3-dev
  qqwing                  # independent Sudoku generator/solver used to cross-check ours in tests
  chromium                # headless browser: the report test renders a run's report page
  qemu-user               # qemu-x86_64 -cpu EPYC-Milan: the tests on an emulated CPU without AVX-512
  ccache
)

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "setup: all ${#PACKAGES[@]} packages present"
  exit 0
fi

echo "setup: installing ${missing[*]}"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq "${missing[@]}"
