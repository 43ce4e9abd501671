#!/usr/bin/env bash
# The worked examples (apps/examples/*/), each a standalone CMake project,
# built against an installed metalm as a user would build them and run on a
# tiny dataset and model made here (no Brown corpus). Their outputs are
# checked against references computed another way (the CLI, closed forms).
#
# usage: examples.sh BUILD_DIR SOURCE_DIR setup     install metalm into
#          BUILD_DIR/examples-test/prefix, prepare a dataset, train a tiny run
#        examples.sh BUILD_DIR SOURCE_DIR EXAMPLE   configure, build, run and
#          check apps/examples/EXAMPLE against that install
set -u
build=$(cd "$1" && pwd) src=$(cd "$2" && pwd) stage=$3
root=$build/examples-test
prefix=$root/prefix
bin=$prefix/bin/metalm  # the installed CLI, used by `m`
source "$src/tests/cli/lib/harness.sh"

# Number comparisons for `check` (awk does the floating point).
# An empty value (a line the example did not print) fails.
close_to() { [[ -n $1 && -n $2 ]] && awk -v a="$1" -v b="$2" -v t="$3" 'BEGIN { d = a - b; if (d < 0) d = -d; exit !(d <= t) }'; }
less_than() { [[ -n $1 && -n $2 ]] && awk -v a="$1" -v b="$2" 'BEGIN { exit !(a < b) }'; }
in_range() { less_than "$2" "$1" && less_than "$1" "$3"; }
# saved FILE COMMAND...: runs the command, keeping its output in FILE too.
saved() { local file=$1; shift; "$@" >"$file" 2>&1; local rc=$?; cat "$file"; return $rc; }

if [[ $stage == setup ]]; then
  rm -rf "$root" && mkdir -p "$root"
  check install 0 '' -- cmake --install "$build" --prefix "$prefix"
  mkdir -p "$root/corpus"
  cp "$src"/include/metalm/*/*.hpp "$root/corpus/"
  check prepare 0 '' -- m prepare --tokenizer byte --input "$root/corpus" --val-fraction 0.2 --out "$root/data"
  check train 0 '' -- m train --config "$src/configs/tiny.json" --set "data.dir=$root/data" --set train.steps=40 \
    --set train.eval_every=20 --set train.ckpt_every=20 --set analysis.every=0 --run-dir "$root/run"
  finish
  exit
fi

[[ -d $src/apps/examples/$stage ]] || { echo "FAIL no example apps/examples/$stage"; exit 1; }
[[ -x $bin ]] || { echo "FAIL $bin missing: the examples_setup test installs it"; exit 1; }
out=$root/build-$stage
# CMAKE_CXX_STANDARD=14 on purpose: the package's cxx_std_17 requirement
# must raise it, or the metalm headers would not compile.
check configure 0 '' -- cmake -S "$src/apps/examples/$stage" -B "$out" -DCMAKE_PREFIX_PATH="$prefix" \
  -DCMAKE_BUILD_TYPE=Release -DCMAKE_CXX_STANDARD=14
check build 0 '' -- cmake --build "$out" -j 2
exe=$out/$stage
[[ -x $exe ]] || { finish; exit 1; }
one() { OMP_NUM_THREADS=1 "$exe" "$@"; }

case $stage in
consumer)
  version=$(sed -n 's/^set(PACKAGE_VERSION "\(.*\)")$/\1/p' "$prefix"/lib*/cmake/metalm/metalmConfigVersion.cmake)
  check version-from-cmake 0 "^metalm $version \\(library $version\\)$" -- one "$src/configs/tiny.json"
  check config 0 '"n_layer":2' -- one "$src/configs/tiny.json"
  check missing-config 1 'consumer: cannot read' -- one "$tmp/none.json"
  ;;

lens)
  # Fewer bytes than the context (64), so `metalm eval` scores the same
  # single window: its loss is the model's loss the example must reproduce.
  printf 'The lens reads every layer of this line.\n' >"$tmp/line.txt"
  check run 0 '^final ' -- saved "$tmp/lens.txt" one "$root/run" "$tmp/line.txt"
  final=$(awk '$1 == "final" { print $2 }' "$tmp/lens.txt")
  model=$(awk '$1 == "model" { print $3 }' "$tmp/lens.txt")
  first=$(awk '$1 == "blocks.0.resid_pre" { print $2 }' "$tmp/lens.txt")
  eval_loss=$(m eval --checkpoint "$root/run" --text "$tmp/line.txt" | sed 's/.*"loss":\([0-9.e+-]*\).*/\1/')
  check final-lens-is-model-loss 0 '' -- close_to "$final" "$model" 1e-5
  check model-loss-is-eval-loss 0 '' -- close_to "$model" "$eval_loss" 1e-4
  check every-block 0 '^2$' -- grep -c 'resid_pre ' "$tmp/lens.txt"
  check every-sublayer 0 '^4$' -- grep -cE '(attn|mlp)_out ' "$tmp/lens.txt"
  # Trained blocks lower the lens loss: the first state predicts worse than the last.
  check loss-falls-with-depth 0 '' -- less_than "$final" "$first"
  check missing-checkpoint 1 'lens: error: ' -- one "$tmp/none" "$tmp/line.txt"
  check usage 2 'usage' -- one
  ;;

next_embedding)
  check run 0 'first step by hand' -- saved "$tmp/ne.txt" one "$root/run" "$root/data/val.bin"
  check exact-alignment-is-1 0 '' -- close_to "$(awk '/^exact gradient step/ { print $5 }' "$tmp/ne.txt")" 1 1e-6
  check exact-step-size-is-half 0 '' -- close_to "$(awk '/^exact gradient step/ { print $7 }' "$tmp/ne.txt")" 0.5 1e-6
  analysed=$(awk '/^blocks.0.resid_pre -> / { print $4 }' "$tmp/ne.txt")
  by_hand=$(awk '/^first step by hand/ { print $6 }' "$tmp/ne.txt")
  check analyser-equals-hand 0 '' -- close_to "$analysed" "$by_hand" 1e-5
  check every-block 0 '^2$' -- grep -c ' -> ' "$tmp/ne.txt"
  check missing-data 1 'next_embedding: error: ' -- one "$root/run" "$tmp/none.bin"
  ;;

train_loop)
  check run 0 '^checkpoint ' -- saved "$tmp/loop.txt" one "$root/data" "$tmp/ckpt" 60
  first=$(awk '$1 == "eval" && $3 == 0 { print $5 }' "$tmp/loop.txt")
  last=$(awk '$1 == "eval" && $3 == 60 { print $5 }' "$tmp/loop.txt")
  # An untrained model predicts almost uniformly: loss ln 257.
  check starts-at-uniform 0 '' -- close_to "$first" "$(awk 'BEGIN { print log(257) }')" 0.05
  check loss-falls 0 '' -- less_than "$last" "$(awk -v f="$first" 'BEGIN { print f - 1.5 }')"
  check same-seed-same-losses 0 '' -- diff <(one "$root/data" "$tmp/again" 60 | grep -v '^checkpoint') \
    <(grep -v '^checkpoint' "$tmp/loop.txt")
  check checkpoint-step 0 '"step": 60' -- cat "$tmp/ckpt/state.json"
  check cli-eval 0 '^\{"loss":[0-9.]+' -- m eval --checkpoint "$tmp/ckpt" --data "$root/data/val.bin"
  check cli-generate 0 '^The' -- m generate --checkpoint "$tmp/ckpt" --prompt "The" --max-new-tokens 8
  check bad-steps 2 'STEPS must be an integer' -- one "$root/data" "$tmp/bad" x
  check missing-data 1 'train_loop: error: ' -- one "$tmp/none" "$tmp/bad"
  ;;

attention_entropy)
  check run 0 'trained to step 20' -- one "$root/data" "$tmp/run"
  check analysis-lines 0 '^3$' -- grep -c '"attention_entropy":\[' "$tmp/run/analysis.jsonl"
  check library-analysis-kept 0 '^3$' -- grep -c '"steps":\[' "$tmp/run/analysis.jsonl"
  entropy() {  # the attention_entropy values of the analysis line of step $1, one per line
    grep "\"step\":$1[,}]" "$tmp/run/analysis.jsonl" | grep -o '"attention_entropy":\[[^]]*\]' |
      sed 's/.*\[//; s/\]//' | tr ',' '\n'
  }
  check every-block 0 '^2$' -- wc -l <<<"$(entropy 0)"
  # An untrained model attends almost uniformly to the t + 1 visible
  # positions: entropy ln(t + 1), averaged over t = 0..63.
  uniform=$(awk 'BEGIN { for (t = 0; t < 64; ++t) s += log(t + 1); print s / 64 }')
  max=$(awk 'BEGIN { print log(64) }')
  for h in $(entropy 0); do check "step-0-uniform-$h" 0 '' -- close_to "$h" "$uniform" 0.01; done
  for step in 10 20; do
    for h in $(entropy $step); do check "step-$step-in-range-$h" 0 '' -- in_range "$h" 0 "$max"; done
  done
  check bad-steps 2 'STEPS must be an integer' -- one "$root/data" "$tmp/bad" x
  ;;

intervene)
  check run 0 'first step by hand' -- saved "$tmp/iv.txt" one "$root/run" "$root/data/val.bin"
  library=$(awk '/^blocks.0.resid_pre -> / { print $5 }' "$tmp/iv.txt")
  by_hand=$(awk '/^first step by hand/ { print $6 }' "$tmp/iv.txt")
  check library-equals-hand 0 '' -- close_to "$library" "$by_hand" 1e-5
  check every-block 0 '^2$' -- grep -c ' -> ' "$tmp/iv.txt"
  check missing-data 1 'intervene: error: ' -- one "$root/run" "$tmp/none.bin"
  ;;

*)
  echo "FAIL no checks for example $stage: add them to tests/examples.sh"
  exit 1
  ;;
esac
finish
