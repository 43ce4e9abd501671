#!/usr/bin/env bash
# Regenerates every figure of the meta-learning study from scratch: trains each setting of
# configs/paper/ on the Brown corpus with several seeds (train.seed = the config's seed + i),
# analyses the checkpoints kept across outer training through the logit lens (step 0 is the
# untrained control), trains a tuned lens for each seed's final checkpoint and analyses it in
# that lens's one coordinate system, runs the causal tests of `metalm intervene` on each final
# checkpoint, runs the constructed linear-attention setting, trains the in-context regression
# models of configs/icl/ and compares each with the reference algorithms (F11), plots, and
# writes OUT/report.md, where a claim holds only if every seed's interval of its gap excludes 0.
#   scripts/experiments/reproduce.sh [--quick] [--seeds N] [--out DIR] [--settings depth4,rope,...]
#                        [--icl lsa1-iso,...|none] [--bin METALM] [--no-report]
#   --quick      fewer outer steps and 2 seeds (the full run trains 3); ICL models train 1/8 of their steps
#   --seeds N    seeds per setting (default 3; 2 with --quick)
#   --icl LIST   the configs/icl/ settings to train and compare (default: all five; none: skip)
#   --bin PATH   use this metalm binary (no setup, no build)
#   --no-report  train and analyse only (scripts/experiments/report.py --out OUT writes the report later)
# Resumable: it picks up where it stopped. A setting-seed is finished when OUT/<setting>/seed<S>/done
# exists (written atomically after its last analysis); a finished one is never redone. Inside an
# unfinished one, training resumes from its newest checkpoint and finished analyses are kept
# (metalm writes them atomically). An ICL setting is finished when OUT/icl/<name>/done exists, the
# same way: training resumes, a written compare.json is kept.
set -euo pipefail
cd "$(dirname "$0")/../.."

quick=0
out=""
seeds=""
bin=""
report=1
settings="depth2,depth4,depth8,postln,rmsnorm,rope,bpe4096"
icl_settings="lsa1-iso,lsa1-aniso,lsa2-iso,lsa3-iso,softmax1-iso"
while (($#)); do
  case $1 in
    --quick) quick=1; shift ;;
    --out) out=$2; shift 2 ;;
    --settings) settings=$2; shift 2 ;;
    --icl) icl_settings=$2; shift 2 ;;
    --seeds) seeds=$2; shift 2 ;;
    --bin) bin=$2; shift 2 ;;
    --no-report) report=0; shift ;;
    -h|--help) sed -n '2,22p' "$0"; exit 0 ;;
    *) echo "reproduce: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
if [[ -z $out ]]; then
  if ((quick)); then out=out/quick; else out=out/full; fi
fi
if [[ -z $seeds ]]; then
  if ((quick)); then seeds=2; else seeds=3; fi
fi
[[ $seeds =~ ^[1-9][0-9]*$ ]] || { echo "reproduce: --seeds: expected a positive integer, got '$seeds'" >&2; exit 2; }

if [[ -z $bin ]]; then
  scripts/dev/setup.sh
  scripts/dev/build.sh
  bin=$PWD/build/apps/metalm
fi
[[ -x $bin ]] || { echo "reproduce: --bin: $bin is not an executable" >&2; exit 2; }
mkdir -p "$out"
commands=$out/commands.txt
say() { printf '\nreproduce: %s\n' "$*" >&2; }
# Runs a command and records it in OUT/commands.txt for the report.
run() { printf '%s\n' "$*" >>"$commands"; "$@"; }
# A marker file that exists only once complete: written to a temporary name, then renamed.
mark() { printf '%s\n' "$2" >"$1.tmp.$$" && mv -f "$1.tmp.$$" "$1"; }

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

# ---- in-context regression: trained models against known algorithms (F11) ---------------
# Each config of configs/icl/ trained (the quick run: 1/8 of its steps, with the same schedule shape)
# and compared in OUT/icl/<name>/; done marks a finished one.
if [[ $icl_settings != none ]]; then
  IFS=, read -ra icl_names <<<"$icl_settings"
  for name in "${icl_names[@]}"; do
    config=configs/icl/$name.json
    [[ -f $config ]] || { echo "reproduce: no config $config" >&2; exit 2; }
    dir=$out/icl/$name
    if [[ -f $dir/done ]]; then
      say "icl $name: finished earlier, kept"
      continue
    fi
    mkdir -p "$dir"
    compare_opts=()
    if ((quick)); then
      /usr/bin/python3 - "$config" "$dir/config.quick.json" <<'PY'
import json, sys
c = json.load(open(sys.argv[1]))
t = c["train"]
t["steps"] = max(1, t["steps"] // 8)
for key in ("warmup_steps", "eval_every", "checkpoint_every", "log_every"):
    if key in t:
        t[key] = max(1, min(t[key] // 8 if key == "warmup_steps" else t[key], t["steps"]))
json.dump(c, open(sys.argv[2] + ".tmp", "w"), indent=1)
PY
      mv -f "$dir/config.quick.json.tmp" "$dir/config.quick.json"
      config=$dir/config.quick.json
      compare_opts=(--tasks 1024 --tune-tasks 4096)
    fi
    if [[ ! -f $dir/run/trained ]]; then
      resume=()
      compgen -G "$dir/run/checkpoints/step_*" >/dev/null && resume=(--resume)
      say "icl: training $name"
      run "$bin" icl-train --config "$config" --run-dir "$dir/run" "${resume[@]}"
      mark "$dir/run/trained" "$config"
    fi
    if [[ ! -f $dir/compare.json ]]; then
      say "icl: comparing $name with the reference algorithms"
      run "$bin" icl-compare --checkpoint "$dir/run" --out "$dir/compare.json" "${compare_opts[@]}"
    fi
    mark "$dir/done" "icl $name"
  done
fi

# ---- train and analyse each setting and seed -----------------------------------------
IFS=, read -ra kept <<<"$save"
last=${kept[-1]}
final_ckpt=$(printf 'step_%08d' "$last")

# One setting trained with one seed, and its analyses, in DIR = OUT/<setting>/seed<S>.
setting_seed() {
  local name=$1 config=$2 data=$3 seed=$4 dir=$5
  mkdir -p "$dir/analysis"
  if [[ ! -f $dir/run/trained ]]; then
    local resume=()
    compgen -G "$dir/run/checkpoints/step_*" >/dev/null && resume=(--resume)
    say "training $name seed $seed ($steps steps)"
    run "$bin" train --config "$config" --run-dir "$dir/run" "${resume[@]}" \
      --set train.seed="$seed" --set train.steps=$steps --set train.save_steps=$save \
      --set train.eval_every=$eval_every --set analysis.every=$analysis_every
    mark "$dir/run/trained" "$steps"
  fi
  local k g label target grans
  for k in "${kept[@]}"; do
    label=step$k
    ((k == 0)) && label=untrained
    grans=(block)
    ((k == 0 || k == last)) && grans=(block sublayer)
    for g in "${grans[@]}"; do
      target=$dir/analysis/${label}_$g.json
      [[ -f $target ]] && continue
      # The untrained control too is read through the logit lens (the default).
      say "analysing $name seed $seed $label ($g)"
      run "$bin" analyze --checkpoint "$dir/run/checkpoints/$(printf 'step_%08d' "$k")" --data "$data/val.bin" \
        --meta "$data" --batches "$batches" --granularity "$g" --out "$target"
    done
  done
  # This seed's own tuned lens for its final checkpoint (trained on the training split, its last
  # 10% held out), and the final analyses in that lens's one coordinate system.
  if [[ ! -f $dir/lens.safetensors ]]; then
    say "training a tuned lens for $name seed $seed step $last"
    run "$bin" lens-train --checkpoint "$dir/run/checkpoints/$final_ckpt" --data "$data/train.bin" \
      --out "$dir/lens.safetensors"
  fi
  for g in block sublayer; do
    target=$dir/analysis/tuned_step${last}_$g.json
    [[ -f $target ]] && continue
    say "analysing $name seed $seed step $last ($g) through the tuned lens"
    run "$bin" analyze --checkpoint "$dir/run/checkpoints/$final_ckpt" --data "$data/val.bin" --meta "$data" \
      --batches "$batches" --granularity "$g" --lens "tuned:$dir/lens.safetensors" --out "$target"
  done
  # The causal tests of the final checkpoint (F10 and the report's intervention table): each
  # block's update edited, the rest of the model run, with the untrained model's same edits.
  target=$dir/analysis/intervene_step${last}_block.json
  if [[ ! -f $target ]]; then
    say "intervening on $name seed $seed step $last (block)"
    run "$bin" intervene --checkpoint "$dir/run/checkpoints/$final_ckpt" --data "$data/val.bin" \
      --batches "$batches" --granularity block --out "$target"
  fi
  mark "$dir/done" "setting $name seed $seed steps $steps"
}

IFS=, read -ra names <<<"$settings"
for name in "${names[@]}"; do
  config=configs/paper/$name.json
  [[ -f $config ]] || { echo "reproduce: no config $config" >&2; exit 2; }
  resolved=$("$bin" config show --config "$config")
  data=$(/usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["data"]["dir"])' <<<"$resolved")
  base=$(/usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["train"]["seed"])' <<<"$resolved")
  for ((i = 0; i < seeds; i++)); do
    seed=$((base + i))
    dir=$out/$name/seed$seed
    if [[ -f $dir/done ]]; then
      say "$name seed $seed: finished earlier, kept"
      continue
    fi
    setting_seed "$name" "$config" "$data" "$seed" "$dir"
  done
done

# ---- figures and report -----------------------------------------------------------
if ((report)); then
  say "plotting and writing the report"
  MPLBACKEND=Agg /usr/bin/python3 scripts/experiments/report.py --out "$out" --settings "$settings" \
    --title "metalm reproduction ($([[ $quick == 1 ]] && echo quick || echo full), $seeds seeds)"
  say "done: $out/report.md"
else
  say "done: trained and analysed into $out (report: scripts/experiments/report.py --out $out)"
fi
