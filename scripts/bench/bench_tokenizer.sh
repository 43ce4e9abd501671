#!/usr/bin/env bash
# Tokenizer and dataset-preparation benchmark on the Brown corpus (prints figures):
#   1. GPT-2 encoding throughput, one thread: metalm vs npm tiktoken (WASM),
#      and whether the ids are identical on the whole corpus;
#   2. `metalm tokenizer-train` of a 4,096-token BPE;
#   3. `metalm prepare` wall time with byte, gpt2 and bpe:4096.
# Usage: scripts/bench/bench_tokenizer.sh [BUILD_DIR]   (default: build)
# Needs data/ (scripts/dev/setup.sh) and node; installs tiktoken under /tmp/tk
# when NODE_PATH does not already provide it.
set -euo pipefail
cd "$(dirname "$0")/../.."
build=${1:-build}
metalm=${METALM_BIN:-$build/metalm}
data=${METALM_DATA:-data}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
[[ -x $metalm ]] || { echo "bench: $metalm not built" >&2; exit 1; }
[[ -d $data/brown && -f $data/gpt2/vocab.bpe ]] || { echo "bench: run scripts/dev/setup.sh first" >&2; exit 1; }
if ! NODE_PATH=${NODE_PATH:-} node -e 'require("tiktoken")' 2>/dev/null; then
  if [[ ! -d /tmp/tk/node_modules/tiktoken ]]; then
    mkdir -p /tmp/tk && (cd /tmp/tk && npm install --silent tiktoken >/dev/null)
  fi
  export NODE_PATH=/tmp/tk/node_modules
fi

seconds() { local t0 t1; t0=$(date +%s.%N); "$@" >/dev/null 2>&1; t1=$(date +%s.%N); awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.2f", b - a}'; }

echo "== GPT-2 encoding of the Brown corpus, one thread =="
m=$(OMP_NUM_THREADS=1 "$metalm" --threads 1 bench tokenizer --tokenizer gpt2 --input "$data/brown" --format brown \
      --text-out "$work/brown.txt" --ids-out "$work/metalm.ids")
echo "metalm:   $m"
t=$(node scripts/bench/bench_tiktoken.js "$work/brown.txt" "$work/tiktoken.ids")
echo "tiktoken: $t"
if cmp -s "$work/metalm.ids" "$work/tiktoken.ids"; then
  echo "ids: identical ($(wc -l <"$work/metalm.ids") tokens)"
else
  echo "ids: DIFFERENT"; diff "$work/metalm.ids" "$work/tiktoken.ids" | head -5
fi
for key in mb_per_s mb_per_s_cpu; do
  mm=$(sed "s/.*\"$key\":\([0-9.e+-]*\).*/\1/" <<<"$m"); tm=$(sed "s/.*\"$key\":\([0-9.e+-]*\).*/\1/" <<<"$t")
  echo "$key: metalm $mm, tiktoken-wasm $tm, speed-up $(awk -v a="$mm" -v b="$tm" 'BEGIN{printf "%.2f", a / b}')x"
done

echo "== tokenizer-train --vocab-size 4096 on Brown =="
echo "seconds: $(seconds "$metalm" tokenizer-train --input "$data/brown" --format brown --vocab-size 4096 --out "$work/bpe4096" --force)"

echo "== prepare Brown (wall seconds) =="
for spec in byte gpt2 "bpe:$work/bpe4096"; do
  s=$(seconds "$metalm" prepare --tokenizer "$spec" --input "$data/brown" --format brown --out "$work/ds" --force)
  tokens=$(sed 's/.*"train":{\([^}]*\)}.*/\1/' "$work/ds/meta.json")
  echo "${spec/#bpe:*/bpe:4096}: $s s  (train $tokens)"
done
