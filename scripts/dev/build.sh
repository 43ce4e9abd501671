#!/usr/bin/env bash
# Configures (once) and builds metalm in build/ (Release, all cores).
#   BUILD_DIR=dir scripts/dev/build.sh [extra cmake -D options]
set -euo pipefail
cd "$(dirname "$0")/../.."
build=${BUILD_DIR:-build}
if [[ ! -f $build/CMakeCache.txt ]]; then
  cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release "$@" >/dev/null
fi
cmake --build "$build" -j "$(nproc)"
