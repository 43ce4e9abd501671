#!/usr/bin/env bash
# CLI contract for run directories: a checkpoint folder whose name disagrees
# with its state.json is not trusted by eval or resume; a step name beyond 64
# bits is a one-line error naming the folder; a corrupt newest checkpoint
# (truncated model.safetensors, broken state.json, broken optimizer.pt) makes
# --resume fall back to the previous one with a warning naming both; a
# second train on a run directory in use fails at once naming the holder's
# PID, and a stale lock left by a killed run does not block.
# usage: run_dir.sh METALM_BIN SOURCE_DIR
set -u
bin=$1 src=$2
source "$src/tests/cli/lib/harness.sh"
export OMP_WAIT_POLICY=passive
cd "$tmp"
# Warnings shown (m hides every log line).
w() { "$bin" --log-level warn --threads 1 "$@"; }
lines() { grep -c "\"event\":\"$2\"" "$1"; }

mkdir -p corpus
cp "$src"/include/metalm/*/*.hpp corpus/
check prepare 0 '' -- m prepare --tokenizer byte --input corpus --val-fraction 0.2 --out data
tiny=(--config "$src/configs/tiny.json" --set data.dir=data --set train.steps=6 --set train.eval_every=2
      --set train.ckpt_every=2 --set train.keep_last=2 --set train.log_every=1 --set train.save_steps=0)
check train 0 '' -- m train "${tiny[@]}" --run-dir base
check base-checkpoints 0 '^step_00000000 step_00000004 step_00000006 $' -- bash -c 'echo $(ls base/checkpoints) ""'
printf '1 2 3 4 5 6 7 8 9 10\n' >ids.txt
good=$(m eval --checkpoint base/checkpoints/step_00000006 --ids ids.txt)

# ---- a copy under a larger step name ----
cp -r base copy
cp -r copy/checkpoints/step_00000000 copy/checkpoints/step_9223372036854775807
cp copy/best.json best.before
check eval-refuses-copy 1 '^metalm: error: .*step_9223372036854775807: the folder is named for step 9223372036854775807 but its state.json holds step 0; .*step_00000000' -- \
  m eval --checkpoint copy --ids ids.txt
check eval-checkpoint-dir-refused 1 'holds step 0' -- m eval --checkpoint copy/checkpoints/step_9223372036854775807 --ids ids.txt
check resume-skips-copy 0 'checkpoint .*step_9223372036854775807 .*is not valid; resuming from .*step_00000006 instead' -- \
  w train --run-dir copy --resume --set train.steps=8
check resumed-from-6 0 '"step": 8' -- cat copy/checkpoints/step_00000008/state.json
check metrics-kept 0 '^8$' -- lines copy/metrics.jsonl train  # not cut back to step 0
check copy-not-pruned 0 '' -- test -d copy/checkpoints/step_9223372036854775807
# keep_last 2 counts 6 and 8 (4 goes); the copy is neither counted nor removed.
check pruned-around-the-copy 0 '^step_00000000 step_00000006 step_00000008 step_9223372036854775807 $' -- bash -c 'echo $(ls copy/checkpoints) ""'

# ---- a step name beyond 64 bits ----
cp -r base huge
cp -r huge/checkpoints/step_00000000 huge/checkpoints/step_99999999999999999999
check eval-huge-name 1 "^metalm: error: .*step_99999999999999999999: the step in this checkpoint folder's name is out of range" -- \
  m eval --checkpoint huge --ids ids.txt
check resume-huge-name 1 "step_99999999999999999999: the step in this checkpoint folder's name is out of range" -- \
  m train --run-dir huge --resume --set train.steps=8
check huge-metrics-untouched 0 '' -- cmp base/metrics.jsonl huge/metrics.jsonl

# ---- a corrupt newest checkpoint: resume falls back to the previous one ----
corrupt() {  # corrupt NAME HOW FILE
  rm -rf "$1"; cp -r base "$1"
  local f=$1/checkpoints/step_00000006/$3
  case $2 in
    truncate) head -c 100 "$f" >"$f.cut"; mv "$f.cut" "$f" ;;
    garbage) printf '{"format": "metalm-check' >"$f" ;;
  esac
}
for case in "model.safetensors truncate" "state.json garbage" "optimizer.pt truncate"; do
  read -r file how <<<"$case"
  corrupt "c_$file" "$how" "$file"
  check "resume-past-broken-$file" 0 "checkpoint .*step_00000006 \(.*$file.*\) is not valid; resuming from .*step_00000004 instead" -- \
    w train --run-dir "c_$file" --resume --set train.steps=8
  check "resumed-past-broken-$file" 0 '"step": 8' -- cat "c_$file/checkpoints/step_00000008/state.json"
done
# Read directly, a broken state.json is a corrupt file (exit 1) named in one line, not a config error.
printf '{"format": "metalm-check' >c_state.json/checkpoints/step_00000006/state.json
check eval-broken-state 1 '^metalm: error: .*c_state.json/checkpoints/step_00000006/state.json' -- \
  m eval --checkpoint c_state.json/checkpoints/step_00000006 --ids ids.txt
check straight-to-8 0 '' -- m train "${tiny[@]}" --set train.steps=8 --run-dir straight
# Steps 5..8 trained again from step 4 give the model of a straight run to 8.
for file in model.safetensors state.json optimizer.pt; do
  check "final-equals-straight-$file" 0 '' -- cmp straight/checkpoints/step_00000008/model.safetensors "c_$file/checkpoints/step_00000008/model.safetensors"
done
check eval-still-good 0 '' -- test "$(m eval --checkpoint base/checkpoints/step_00000006 --ids ids.txt)" == "$good"

# ---- one train per run directory ----
long=(--config "$src/configs/tiny.json" --set data.dir=data --set train.steps=1000000 --set train.eval_every=0
      --set train.ckpt_every=0 --set train.save_steps=0 --set train.log_every=1000)
"$bin" --log-level off --threads 1 train "${long[@]}" --run-dir busy &
holder=$!
for _ in $(seq 1800); do  # until the holder has the lock and its first checkpoint (3 min: CI runs two suites at once)
  [[ -d busy/checkpoints/step_00000000 && $(cat busy/.lock 2>/dev/null) == "$holder" ]] && break
  sleep 0.1
done
check lock-holds-pid 0 "^$holder\$" -- cat busy/.lock
check second-train-refused 1 "^metalm: error: run directory busy is in use by process $holder " -- \
  timeout 60 "$bin" --log-level off --threads 1 train "${long[@]}" --run-dir busy --resume
check second-fresh-train-refused 1 "in use by process $holder" -- timeout 60 "$bin" --log-level off train "${tiny[@]}" --run-dir busy
kill -9 $holder; wait $holder 2>/dev/null
check stale-lock-left 0 "^$holder\$" -- cat busy/.lock
check stale-lock-does-not-block 0 '' -- m train --run-dir busy --resume --set train.steps=2 --set train.ckpt_every=1
check resumed-after-kill 0 '"step": 2' -- cat busy/checkpoints/step_00000002/state.json
check failed-start-leaves-nothing 1 'nope' -- m train --config "$src/configs/tiny.json" --set data.dir=nope --run-dir fresh
check failed-start-no-dir 1 '' -- test -e fresh
finish
