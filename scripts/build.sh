#!/usr/bin/env bash
# Configures and builds hrm (Release, all cores) into build/ (or $BUILD_DIR). Extra arguments go to cmake's
# configure step, e.g. -DTorch_DIR=$(python3 -c 'import torch;print(torch.utils.cmake_prefix_path)')/Torch for a
# pip LibTorch. BUILD_TARGET=hrm_cli builds only the library and the CLI (no tests).
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${BUILD_DIR:-build}
cmake -S . -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=Release "$@"
if [ -n "${BUILD_TARGET:-}" ]; then
  cmake --build "$BUILD_DIR" -j "$(nproc)" --target "$BUILD_TARGET"
else
  cmake --build "$BUILD_DIR" -j "$(nproc)"
fi
