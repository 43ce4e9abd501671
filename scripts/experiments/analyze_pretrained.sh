#!/usr/bin/env bash
# Analyses a pre-trained Hugging Face GPT-2 model on a text: imports it,
# tokenizes the text with GPT-2's BPE, runs the inner-optimization analysis at
# block and sublayer granularity (each with the untrained control: a freshly
# initialised model of the same shape), and draws the figures of the
# reproduction (F1-F5, F7; F6 needs training and F8 is model-independent).
#
#   scripts/experiments/analyze_pretrained.sh HF_DIR TEXT_FILE [OUT]      (OUT defaults to out/pretrained/<name>)
#
# HF_DIR holds config.json and model.safetensors. Getting the weights is up to
# you; on a machine with internet:
#   huggingface-cli download gpt2 config.json model.safetensors --local-dir HF_DIR
# Environment: SEQ_LEN (512) tokens per analysed sequence, BATCH_SIZE (1) and
# BATCHES (1) sequences analysed = BATCH_SIZE x BATCHES, METALM_BIN (the
# metalm binary; default build/apps/metalm, built if missing),
# METALM_DATA (where data/gpt2 tokenizer files live; scripts/dev/setup.sh fetches them).
set -euo pipefail
usage() { sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; }
[[ ${1:-} == -h || ${1:-} == --help ]] && { usage; exit 0; }
if (($# < 2 || $# > 3)); then usage >&2; exit 2; fi
hf=$1 text=$2
name=$(basename "${hf%/}")
out=${3:-out/pretrained/$name}
if [[ ! -f $hf/config.json ]]; then
  cat >&2 <<MSG
analyze_pretrained: $hf/config.json not found.
Download GPT-2 on a machine with internet, then copy the directory here:
  huggingface-cli download gpt2 config.json model.safetensors --local-dir $hf
(or gpt2-medium, gpt2-large, gpt2-xl, distilgpt2; other architectures are not supported)
MSG
  exit 2
fi
[[ -f $text ]] || { echo "analyze_pretrained: $text: no such file" >&2; exit 2; }

root=$(cd "$(dirname "$0")/../.." && pwd)
bin=${METALM_BIN:-$root/build/apps/metalm}
if [[ ! -x $bin ]]; then
  (cd "$root" && scripts/dev/build.sh)
fi
export METALM_DATA=${METALM_DATA:-$root/data}
py=/usr/bin/python3
seq_len=${SEQ_LEN:-512} batch_size=${BATCH_SIZE:-1} batches=${BATCHES:-1}
mkdir -p "$out/analysis" "$out/figures"
: >"$out/commands.txt"
say() { printf 'analyze_pretrained: %s\n' "$*" >&2; }
run() { printf '%s\n' "$*" >>"$out/commands.txt"; "$@"; }

say "importing $hf"
# OUT is this script's own: a second run replaces what the first wrote (--force).
run "$bin" import-hf --from "$hf" --out "$out/checkpoint" --force >/dev/null
tokenizer=$($py -c 'import json,sys; print(json.load(open(sys.argv[1]))["tokenizer"])' "$out/checkpoint/state.json")
if [[ -z $tokenizer ]]; then
  echo "analyze_pretrained: $hf has no GPT-2 vocabulary (50257), so no tokenizer is known for it" >&2
  exit 2
fi

say "tokenizing $text ($tokenizer)"
run "$bin" tokenize --tokenizer "$tokenizer" --input "$text" --output "$out/tokens.txt" --force
# Token counts of the text itself, for the frequency aggregates (F5): a
# pre-trained model's own training counts are not available.
run "$bin" prepare --tokenizer "$tokenizer" --format text --input "$text" --val-fraction 0 --out "$out/data" --force >/dev/null
say "$(wc -w <"$out/tokens.txt") tokens; analysing $batches x $batch_size sequence(s) of $seq_len"

for g in block sublayer; do
  say "analysing ($g granularity, with the untrained control)"
  run "$bin" analyze --checkpoint "$out/checkpoint" --ids "$out/tokens.txt" --meta "$out/data" \
    --seq-len "$seq_len" --batch-size "$batch_size" --batches "$batches" --granularity "$g" \
    --control-untrained --out "$out/analysis/pretrained_$g.json" --force
  # The control as a file of its own, the form plot.py takes.
  $py -c 'import json,sys; json.dump(json.load(open(sys.argv[1]))["control_untrained"], open(sys.argv[2], "w"))' \
    "$out/analysis/pretrained_$g.json" "$out/analysis/untrained_$g.json"
done

say "plotting"
a=$out/analysis f=$out/figures
plot() { MPLBACKEND=Agg run $py "$root/scripts/plots/plot.py" "$@"; }
plot f1 --untrained "$a/untrained_block.json" "$name=$a/pretrained_block.json" --out "$f/f1_inner_loss.png"
plot f2 --block "$a/pretrained_block.json" --sublayer "$a/pretrained_sublayer.json" \
  --untrained "$a/untrained_block.json" --out "$f/f2_alignment.png"
plot f3 --block "$a/pretrained_block.json" --sublayer "$a/pretrained_sublayer.json" --out "$f/f3_step_size.png"
plot f4 --block "$a/pretrained_block.json" --sublayer "$a/pretrained_sublayer.json" --out "$f/f4_norms.png"
plot f5 "$a/pretrained_block.json" --out "$f/f5_norm_vs_frequency.png"
plot f7 "$a/pretrained_sublayer.json" --out "$f/f7_layer_position.png"
say "done: figures in $f, analyses in $a, commands in $out/commands.txt"
