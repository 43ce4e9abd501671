#!/usr/bin/env bash
# The main job, from a clean clone: set-up, build, prepare the Brown corpus
# (byte tokenizer), train the default small model (configs/brown-byte-small.json),
# analyse its inner optimization against the untrained control, and plot.
# Re-running skips what is done (an interrupted training run resumes).
#   scripts/quickstart.sh [--config FILE] [--run-dir DIR] [--set key=value]...
set -euo pipefail
cd "$(dirname "$0")/.."

config=configs/brown-byte-small.json
run=""
sets=()
while (($#)); do
  case $1 in
    --config) config=$2; shift 2 ;;
    --run-dir) run=$2; shift 2 ;;
    --set) sets+=(--set "$2"); shift 2 ;;
    -h|--help) sed -n '2,7p' "$0"; exit 0 ;;
    *) echo "quickstart: unknown argument $1" >&2; exit 2 ;;
  esac
done

scripts/dev/setup.sh
scripts/dev/build.sh
bin=build/apps/metalm
say() { printf '\nquickstart: %s\n' "$*" >&2; }

name=$("$bin" config show --config "$config" "${sets[@]}" | /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["name"])')
data=$("$bin" config show --config "$config" "${sets[@]}" | /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["data"]["dir"])')
run=${run:-runs/$name}

if [[ ! -f $data/train.bin ]]; then
  say "preparing $data from the Brown corpus (byte tokenizer)"
  "$bin" prepare --tokenizer byte --format brown --input data/brown --out "$data"
fi

if [[ -f $run/done ]]; then
  say "training already finished in $run"
else
  resume=()
  compgen -G "$run/checkpoints/step_*" >/dev/null && resume=(--resume)
  say "training $config into $run"
  "$bin" train --config "$config" "${sets[@]}" --run-dir "$run" "${resume[@]}"
  touch "$run/done"
fi

mkdir -p "$run/analysis" "$run/figures"
for granularity in block sublayer; do
  out=$run/analysis/final_$granularity.json
  if [[ ! -f $out ]]; then
    say "analysing the trained model ($granularity granularity)"
    "$bin" analyze --checkpoint "$run" --data "$data/val.bin" --batches 4 \
      --granularity "$granularity" --out "$out"
  fi
  # The untrained control: this run's own initialisation (train.save_steps
  # keeps step 0), or else a fresh model of the same config.
  out=$run/analysis/untrained_$granularity.json
  if [[ ! -f $out ]]; then
    say "analysing the untrained control ($granularity granularity)"
    step0=$run/checkpoints/step_00000000
    if [[ -d $step0 ]]; then
      "$bin" analyze --checkpoint "$step0" --data "$data/val.bin" --batches 4 \
        --granularity "$granularity" --out "$out"
    else
      "$bin" analyze --checkpoint "$run" --control-untrained --data "$data/val.bin" --batches 4 \
        --granularity "$granularity" --out "$out.tmp" --force
      /usr/bin/python3 -c 'import json,sys; json.dump(json.load(open(sys.argv[1]))["control_untrained"], open(sys.argv[2], "w"))' \
        "$out.tmp" "$out.part"
      mv "$out.part" "$out" && rm -f "$out.tmp"
    fi
  fi
done

say "plotting"
plot() { MPLBACKEND=Agg /usr/bin/python3 scripts/plots/plot.py "$@"; }
a=$run/analysis
plot train "$run/metrics.jsonl" --out "$run/figures/train.png"
plot f1 --untrained "$a/untrained_block.json" "final=$a/final_block.json" --out "$run/figures/f1_inner_loss.png"
plot f2 --block "$a/final_block.json" --sublayer "$a/final_sublayer.json" --untrained "$a/untrained_block.json" --out "$run/figures/f2_alignment.png"
plot f3 --block "$a/final_block.json" --sublayer "$a/final_sublayer.json" --out "$run/figures/f3_step_size.png"
plot f4 --block "$a/final_block.json" --out "$run/figures/f4_norms.png"
plot f5 "$a/final_block.json" --out "$run/figures/f5_norm_frequency.png"
[[ -s $run/analysis.jsonl ]] && plot f6 "$run/analysis.jsonl" --out "$run/figures/f6_evolution.png"
plot f7 "$a/final_sublayer.json" --out "$run/figures/f7_loss_heatmap.png"

say "done. Results in $run:"
cat >&2 <<TXT
  metrics        $run/metrics.jsonl (train/eval events), $run/config.json (resolved config)
  checkpoints    $run/checkpoints/
  analysis       $a/final_{block,sublayer}.json, $a/untrained_{block,sublayer}.json, $run/analysis.jsonl
  figures        $run/figures/*.png
TXT
