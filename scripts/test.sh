#!/usr/bin/env bash
# Set-up, build, and the whole test suite (ctest). Exits non-zero on any failure.
#   scripts/test.sh [ctest arguments, e.g. -R config]
# METALM_TEST_SANITIZE=subset (CI sets it) then runs scripts/sanitize.sh
# --subset, the core, config and data suites and their fuzz replays under
# ASan + UBSan in build-asan/; =all runs the whole suite there.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/build.sh
build=${BUILD_DIR:-build}
# Tests run two at a time; each uses one torch thread so they do not fight
# over the two cores (the thread-count behaviour is tested explicitly).
export OMP_WAIT_POLICY=passive OMP_NUM_THREADS=1
ctest --test-dir "$build" --output-on-failure -j "$(nproc)" "$@"

case ${METALM_TEST_SANITIZE:-} in
  '' | 0) ;;
  subset) scripts/sanitize.sh --subset ;;
  all) scripts/sanitize.sh ;;
  *) echo "test: METALM_TEST_SANITIZE must be subset or all, not '$METALM_TEST_SANITIZE'" >&2; exit 2 ;;
esac
