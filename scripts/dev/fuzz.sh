#!/usr/bin/env bash
# Fuzzes every reader of untrusted bytes with libFuzzer under ASan + UBSan.
#   scripts/dev/fuzz.sh [SECONDS] [TARGET...]     SECONDS per target (default 60), all targets by default
# Configures and builds build-fuzz/ with clang 14 (-DMETALM_FUZZ=ON
# -DMETALM_SANITIZE=address,undefined), then runs each fuzz_<target> for
# SECONDS, starting from tests/fuzz/corpus/<target> and regressions/<target>
# (never written to: new inputs go to build-fuzz/corpus/<target>). Prints
# executions, wall time and crashes per target; a crashing input is saved as
# build-fuzz/crashes/<target>/crash-* and the script exits 1. Replay one with
#   build-fuzz/tests/fuzz/fuzz_<target> build-fuzz/crashes/<target>/crash-...
# and, once fixed, commit it to tests/fuzz/regressions/<target>/ (ctest
# replays those through the normal build).
set -euo pipefail
cd "$(dirname "$0")/../.."

seconds=${1:-60}
[[ $seconds =~ ^[0-9]+$ && $seconds -gt 0 ]] || { echo "fuzz: SECONDS must be a positive integer, got '$seconds'" >&2; exit 2; }
shift || true
build=build-fuzz
all_targets=(safetensors token_file config_json config_set dataset_meta checkpoint_state jsonl_resume bpe_tokenizer token_ids hf_config hf_index)
targets=("$@")
((${#targets[@]})) || targets=("${all_targets[@]}")
for t in "${targets[@]}"; do
  [[ " ${all_targets[*]} " == *" $t "* ]] || { echo "fuzz: unknown target '$t' (${all_targets[*]})" >&2; exit 2; }
done

# clang 14 and libFuzzer's runtime (libclang-rt-14-dev); installed when missing.
packages=(clang-14 libfuzzer-14-dev libclang-rt-14-dev)
missing=()
for p in "${packages[@]}"; do
  [[ $(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true) == "install ok installed" ]] || missing+=("$p")
done
if ((${#missing[@]})); then
  sudo=""
  [[ $(id -u) -eq 0 ]] || sudo=sudo
  echo "fuzz: installing ${missing[*]}" >&2
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if [[ ! -f $build/CMakeCache.txt ]]; then
  cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DCMAKE_CXX_COMPILER=clang++-14 \
    -DMETALM_FUZZ=ON -DMETALM_SANITIZE=address,undefined -DMETALM_BUILD_APPS=OFF >/dev/null
fi
cmake --build "$build" -j "$(nproc)" --target "${targets[@]/#/fuzz_}" >"$build/build.log" 2>&1 ||
  { tail -30 "$build/build.log" >&2; echo "fuzz: build failed, see $build/build.log" >&2; exit 1; }

export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1}
export OMP_NUM_THREADS=1 OMP_WAIT_POLICY=passive

printf '%-18s %12s %9s %8s\n' target executions wall_s crashes
failed=0
for t in "${targets[@]}"; do
  work=$build/corpus/$t crashes=$build/crashes/$t log=$build/logs/$t.log
  mkdir -p "$work" "$crashes" "$(dirname "$log")"
  seeds=(tests/fuzz/corpus/"$t")
  [[ -d tests/fuzz/regressions/$t ]] && seeds+=(tests/fuzz/regressions/"$t")
  before=$(find "$crashes" -type f | wc -l)
  start=$EPOCHREALTIME
  # -timeout: an input that runs 10 s is a hang; -rss_limit_mb (also the
  # per-allocation limit): a reader must not allocate 2 GB for a small file.
  dict=()
  case $t in config_json | dataset_meta | checkpoint_state | jsonl_resume | hf_config | hf_index | safetensors) dict=(-dict=tests/fuzz/json.dict) ;; esac
  rc=0
  "$build/tests/fuzz/fuzz_$t" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 "${dict[@]}" \
    -print_final_stats=1 -artifact_prefix="$crashes/" "$work" "${seeds[@]}" >"$log" 2>&1 || rc=$?
  wall=$(awk -v a="$start" -v b="$EPOCHREALTIME" 'BEGIN { print b - a }')
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  found=$(($(find "$crashes" -type f | wc -l) - before))
  ((rc == 0 || found > 0)) || { echo "fuzz: fuzz_$t failed (exit $rc) without a crash file; see $log" >&2; found=1; }
  printf '%-18s %12s %9.1f %8d\n' "$t" "${execs:-?}" "$wall" "$found"
  ((found == 0)) || failed=1
done
((failed == 0)) || echo "fuzz: crashes saved under $build/crashes/ (logs in $build/logs/)" >&2
exit "$failed"
