#!/usr/bin/env bash
# The test suite under AddressSanitizer + UndefinedBehaviorSanitizer (gcc).
#   scripts/dev/sanitize.sh [--subset] [ctest arguments, e.g. -R 'config|data']
# Configures (once) build-asan/ with -DMETALM_SANITIZE=address,undefined
# (RelWithDebInfo at -O1 -g1: line numbers in the reports at less build time
# than -O2 -g; asserts stay on), builds it and runs ctest there with the
# options below.
#   --subset   only the libraries that parse untrusted bytes without running a
#              model (core, config, data), their suites and the replays of
#              their fuzz corpora and crash regressions: what CI affords
#              (scripts/test.sh with METALM_TEST_SANITIZE=subset).
# SANITIZE_BUILD_DIR moves the tree; SANITIZERS changes the list (at first
# configure).
set -euo pipefail
cd "$(dirname "$0")/../.."
subset=0
if [[ ${1:-} == --subset ]]; then subset=1; shift; fi
scripts/dev/setup.sh
build=${SANITIZE_BUILD_DIR:-build-asan}
if [[ ! -f $build/CMakeCache.txt ]]; then
  cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -g1" \
    -DMETALM_SANITIZE="${SANITIZERS:-address,undefined}" >/dev/null
fi

ctest_args=()
if ((subset)); then
  # The fuzz targets whose readers live in core, config and data.
  fuzz=(token_ids config_json config_set dataset_meta token_file bpe_tokenizer)
  cmake --build "$build" -j "$(nproc)" --target test_core test_config test_data "${fuzz[@]/#/fuzz_replay_}"
  ctest_args=(-R "^(core|config|data|fuzz_($(IFS='|'; echo "${fuzz[*]}")))\$")
else
  cmake --build "$build" -j "$(nproc)"
fi

# libtorch, Gloo and OpenBLAS are not instrumented. What that needs:
#   - LSan: allocations libtorch keeps for the life of the process (operator
#     registrations, thread pools) are reported at exit; they are suppressed
#     by library in cmake/lsan_suppressions.txt, so a leak in metalm's own
#     code still fails its test.
#   - detect_odr_violation=0: libtorch's shared libraries define some globals
#     twice (each library its own copy), which ASan would report at start-up.
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_odr_violation=0}
export LSAN_OPTIONS=${LSAN_OPTIONS:-suppressions=$PWD/cmake/lsan_suppressions.txt:print_suppressions=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1}
# As scripts/test.sh: two tests at a time, one torch thread each.
export OMP_WAIT_POLICY=passive OMP_NUM_THREADS=1
ctest --test-dir "$build" --output-on-failure -j "$(nproc)" "${ctest_args[@]}" "$@"
