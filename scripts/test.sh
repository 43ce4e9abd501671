#!/usr/bin/env bash
# Set-up, build, and the whole test suite (ctest). Exits non-zero on any failure.
#   scripts/test.sh [ctest arguments, e.g. -R config]
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/build.sh
build=${BUILD_DIR:-build}
# Tests run two at a time; each uses one torch thread so they do not fight
# over the two cores (the thread-count behaviour is tested explicitly).
export OMP_WAIT_POLICY=passive OMP_NUM_THREADS=1
ctest --test-dir "$build" --output-on-failure -j "$(nproc)" "$@"
