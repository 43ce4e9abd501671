#!/usr/bin/env bash
# Regenerates every figure of the meta-learning study from scratch: trains the
# settings in configs/paper/ on the Brown corpus, analyses the checkpoints kept
# across outer training (step 0 is the untrained control), trains a tuned lens
# for each final checkpoint and analyses it through both lenses, runs the constructed
# linear-attention setting, plots, and writes OUT/report.md.
# Re-running skips finished stages; an interrupted training run resumes.
#   scripts/reproduce.sh [--quick] [--out DIR] [--settings depth4,rope,...]
#   --quick   fewer outer steps (about 10-15 minutes on 2 cores; the full run about 2 hours)
set -euo pipefail
cd "$(dirname "$0")/.."

quick=0
out=""
settings="depth2,depth4,depth8,postln,rmsnorm,rope,bpe4096"
while (($#)); do
  case $1 in
    --quick) quick=1; shift ;;
    --out) out=$2; shift 2 ;;
    --settings) settings=$2; shift 2 ;;
    -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
    *) echo "reproduce: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
if [[ -z $out ]]; then
  if ((quick)); then out=out/quick; else out=out/full; fi
fi

scripts/setup.sh
scripts/build.sh
bin=$PWD/build/apps/metalm
mkdir -p "$out"
commands=$out/commands.txt
say() { printf '\nreproduce: %s\n' "$*" >&2; }
# Runs a command and records it in OUT/commands.txt for the report.
run() { printf '%s\n' "$*" >>"$commands"; "$@"; }

# Outer steps and kept checkpoints: the quick run trains less, with the same
# shape of schedule.
if ((quick)); then
  steps=300; save=0,25,100,300; eval_every=100; analysis_every=100; batches=2
else
  steps=3000; save=0,50,200,1000,3000; eval_every=500; analysis_every=250; batches=4
fi

# ---- data ---------------------------------------------------------------------
if [[ ! -f data/brown-byte/train.bin ]]; then
  say "preparing Brown (byte)"
  run "$bin" prepare --tokenizer byte --format brown --input data/brown --out data/brown-byte
fi
if [[ ,$settings, == *,bpe4096,* && ! -f data/brown-bpe4096/train.bin ]]; then
  if [[ ! -f data/bpe4096/vocab.bpe ]]; then
    say "training a 4,096-token BPE on Brown"
    run "$bin" tokenizer-train --format brown --input data/brown --vocab-size 4096 --out data/bpe4096
  fi
  say "preparing Brown (bpe:data/bpe4096)"
  run "$bin" prepare --tokenizer bpe:data/bpe4096 --format brown --input data/brown --out data/brown-bpe4096
fi

# ---- the constructed setting (F8) -----------------------------------------------
if [[ ! -f $out/synthetic_icl.json ]]; then
  say "constructed linear-attention setting"
  run "$bin" synthetic-icl --n 4,16,64,256,1024,4096 --out "$out/synthetic_icl.json"
fi

# ---- train and analyse each setting -------------------------------------------------
IFS=, read -ra names <<<"$settings"
for name in "${names[@]}"; do
  config=configs/paper/$name.json
  [[ -f $config ]] || { echo "reproduce: no config $config" >&2; exit 2; }
  dir=$out/$name
  mkdir -p "$dir/analysis"
  if [[ ! -f $dir/run/done ]]; then
    resume=()
    compgen -G "$dir/run/checkpoints/step_*" >/dev/null && resume=(--resume)
    say "training $name ($steps steps)"
    run "$bin" train --config "$config" --run-dir "$dir/run" "${resume[@]}" \
      --set train.steps=$steps --set train.save_steps=$save --set train.eval_every=$eval_every \
      --set analysis.every=$analysis_every
    touch "$dir/run/done"
  fi
  data=$("$bin" config show --config "$config" | /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["data"]["dir"])')
  IFS=, read -ra kept <<<"$save"
  last=${kept[-1]}
  for k in "${kept[@]}"; do
    ckpt=$dir/run/checkpoints/$(printf 'step_%08d' "$k")
    label=step$k
    ((k == 0)) && label=untrained
    grans=(block)
    ((k == 0 || k == last)) && grans=(block sublayer)
    for g in "${grans[@]}"; do
      target=$dir/analysis/${label}_$g.json
      [[ -f $target ]] && continue
      say "analysing $name $label ($g)"
      run "$bin" analyze --checkpoint "$ckpt" --data "$data/val.bin" --meta "$data" \
        --batches "$batches" --granularity "$g" --out "$target"
    done
  done
  # The report reads the final checkpoint as step<last>; step 0 is the control.
  # A tuned lens for the final checkpoint (trained on the training split, its
  # last 10% held out), and the final analyses read through it.
  final=$dir/run/checkpoints/$(printf 'step_%08d' "$last")
  if [[ ! -f $dir/lens.safetensors ]]; then
    say "training a tuned lens for $name step $last"
    run "$bin" lens-train --checkpoint "$final" --data "$data/train.bin" --out "$dir/lens.safetensors"
  fi
  for g in block sublayer; do
    target=$dir/analysis/tuned_step${last}_$g.json
    [[ -f $target ]] && continue
    say "analysing $name step $last ($g) through the tuned lens"
    run "$bin" analyze --checkpoint "$final" --data "$data/val.bin" --meta "$data" \
      --batches "$batches" --granularity "$g" --lens "tuned:$dir/lens.safetensors" --out "$target"
  done
done

# ---- figures and report -----------------------------------------------------------
say "plotting and writing the report"
MPLBACKEND=Agg /usr/bin/python3 scripts/report.py --out "$out" --settings "$settings" \
  --title "metalm reproduction ($([[ $quick == 1 ]] && echo quick || echo full))"
say "done: $out/report.md"
