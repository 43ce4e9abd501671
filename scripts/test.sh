#!/usr/bin/env bash
# Set-up, build, and the whole test suite (ctest). Exits non-zero on any failure.
#   scripts/test.sh [ctest arguments, e.g. -R config]
# METALM_TEST_SANITIZE=subset (CI sets it) then runs scripts/dev/sanitize.sh
# --subset, the core, config and data suites and their fuzz replays under
# ASan + UBSan in build-asan/; =all runs the whole suite there.
# METALM_TEST_PYTORCH=1 (CI sets it) installs Debian's python3-torch if it is
# missing, so the tests that regenerate the golden references (analysis,
# model, import-hf) run instead of skipping; without it they skip when the
# tests' python3 has no torch.
# METALM_TEST_BLAS_KERNEL=NAME runs the suite with OPENBLAS_CORETYPE=NAME (a
# value the user set always wins in metalm, so every test and command runs
# that kernel), after checking that OpenBLAS runs it: it ignores a name it
# does not know. Unset, OPENBLAS_CORETYPE is left as it is.
set -euo pipefail
cd "$(dirname "$0")/.."
case ${METALM_TEST_PYTORCH:-0} in
  0) ;;
  1) unset METALM_GOLDEN_NO_PYTHON ;;
  *) echo "test: METALM_TEST_PYTORCH must be 0 or 1, not '$METALM_TEST_PYTORCH'" >&2; exit 2 ;;
esac
scripts/dev/setup.sh
scripts/dev/build.sh
build=${BUILD_DIR:-build}
if [[ ${METALM_TEST_PYTORCH:-0} == 1 ]]; then
  # The golden tests skip when this import fails; here that must not happen silently.
  python=$(sed -n 's/^Python3_EXECUTABLE:FILEPATH=//p' "$build/CMakeCache.txt")
  [[ -n $python ]] && "$python" -c 'import torch, numpy' || {
    echo "test: METALM_TEST_PYTORCH=1 but the tests' python3 ('$python', CMake's Python3_EXECUTABLE) cannot import torch and numpy" >&2
    exit 1
  }
fi
# Tests run two at a time; each uses one torch thread so they do not fight
# over the two cores (the thread-count behaviour is tested explicitly).
export OMP_WAIT_POLICY=passive OMP_NUM_THREADS=1
if [[ -n ${METALM_TEST_BLAS_KERNEL:-} ]]; then
  export OPENBLAS_CORETYPE=$METALM_TEST_BLAS_KERNEL
  kernel=$(XDG_CACHE_HOME=$(cd "$build" && pwd)/test-cache "$build/apps/metalm" --log-level off --threads 1 doctor --json \
    --seconds 0.01 | sed -n 's/^    "kernel": "\(.*\)",\{0,1\}$/\1/p')
  [[ ${kernel,,} == "${METALM_TEST_BLAS_KERNEL,,}" ]] || {
    echo "test: METALM_TEST_BLAS_KERNEL=$METALM_TEST_BLAS_KERNEL but OpenBLAS runs '$kernel'" >&2
    exit 1
  }
  echo "test: the suite runs with OPENBLAS_CORETYPE=$OPENBLAS_CORETYPE" >&2
fi
ctest --test-dir "$build" --output-on-failure -j "$(nproc)" "$@"

case ${METALM_TEST_SANITIZE:-} in
  '' | 0) ;;
  subset) scripts/dev/sanitize.sh --subset ;;
  all) scripts/dev/sanitize.sh ;;
  *) echo "test: METALM_TEST_SANITIZE must be subset or all, not '$METALM_TEST_SANITIZE'" >&2; exit 2 ;;
esac
