#!/usr/bin/env bash
# CLI contract for the tuned lens: `metalm lens-train` writes a lens that
# `metalm analyze --lens tuned:FILE` and analysis.lens read; a bad lens file
# or --lens value is one line with exit 1 or 2 and leaves no output.
# usage: lens.sh METALM_BIN SOURCE_DIR
set -u
bin=$1 src=$2
source "$src/tests/cli/lib/harness.sh"
py() { /usr/bin/python3 -c "$@"; }

mkdir -p "$tmp/corpus"
cp "$src"/include/metalm/*/*.hpp "$tmp/corpus/"
check prepare 0 '' -- m prepare --tokenizer byte --input "$tmp/corpus" --val-fraction 0.2 --out "$tmp/data"
check train 0 '' -- m train --config "$src/configs/tiny.json" --set "data.dir=$tmp/data" --set train.steps=4 \
  --set train.eval_every=0 --set analysis.every=0 --run-dir "$tmp/run"

check lens-train 0 '' -- m lens-train --checkpoint "$tmp/run" --data "$tmp/data/train.bin" --steps 3 \
  --batch-size 2 --seq-len 32 --out "$tmp/lens.safetensors"
check lens-train-log 0 'held-out KL.*per state' -- "$bin" --threads 1 lens-train --checkpoint "$tmp/run" \
  --data "$tmp/data/train.bin" --steps 1 --batch-size 2 --seq-len 32 --out "$tmp/lens2.safetensors"
check lens-train-exists 2 'already exists' -- m lens-train --checkpoint "$tmp/run" --data "$tmp/data/train.bin" \
  --out "$tmp/lens.safetensors"
check lens-train-force 0 '' -- m lens-train --checkpoint "$tmp/run" --data "$tmp/data/train.bin" --steps 1 \
  --batch-size 2 --seq-len 32 --out "$tmp/lens.safetensors" --force
check lens-file 0 '^ok$' -- py "
import json, struct
b = open('$tmp/lens.safetensors', 'rb').read()
h = json.loads(b[8:8 + struct.unpack('<Q', b[:8])[0]])
meta = h.pop('__metadata__')
assert meta['format'] == 'metalm-tuned-lens' and meta['version'] == '1' and meta['d_model'] == '64', meta
sites = ['blocks.0.resid_pre', 'blocks.0.resid_mid', 'blocks.0.resid_post', 'blocks.1.resid_mid']
assert sorted(h) == sorted(f'translators.{s}.{p}' for s in sites for p in ('weight', 'bias')), sorted(h)
assert all(h[f'translators.{s}.weight']['shape'] == [64, 64] for s in sites)
assert len(meta['heldout_kl_tuned'].split(',')) == 5
print('ok')"

check analyze-tuned 0 '' -- m analyze --checkpoint "$tmp/run" --data "$tmp/data/val.bin" --batches 1 --batch-size 2 \
  --seq-len 32 --granularity sublayer --lens "tuned:$tmp/lens.safetensors" --out "$tmp/tuned.json"
check analyze-logit 0 '' -- m analyze --checkpoint "$tmp/run" --data "$tmp/data/val.bin" --batches 1 --batch-size 2 \
  --seq-len 32 --granularity sublayer --lens logit --out "$tmp/logit.json"
check analyze-tuned-schema 0 '^ok$' -- py "
import json
t, l = json.load(open('$tmp/tuned.json')), json.load(open('$tmp/logit.json'))
assert t['lens'] == 'tuned:$tmp/lens.safetensors' and l['lens'] == 'logit'
assert abs(t['final_loss'] - l['final_loss']) < 1e-12          # the model's own loss is untouched
assert abs(t['states'][-1]['loss'] - l['states'][-1]['loss']) < 1e-9  # final: the model's own readout
assert t['states'][0]['loss'] != l['states'][0]['loss']         # earlier states: through a translator
assert len(t['steps']) == len(l['steps']) == 4
print('ok')"

# analysis.lens during training.
check train-tuned 0 '' -- m train --config "$src/configs/tiny.json" --set "data.dir=$tmp/data" --set train.steps=2 \
  --set train.eval_every=0 --set analysis.every=2 --set analysis.batch_size=2 \
  --set "analysis.lens=tuned:$tmp/lens.safetensors" --run-dir "$tmp/run2"
check train-tuned-line 0 '"lens":"tuned:' -- cat "$tmp/run2/analysis.jsonl"
check train-bad-lens 2 'analysis.lens' -- m train --config "$src/configs/tiny.json" --set "data.dir=$tmp/data" \
  --set analysis.lens=tuned --run-dir "$tmp/run3"

# Bad lenses: one line, before anything is written.
check lens-missing 1 'cannot read' -- m analyze --checkpoint "$tmp/run" --data "$tmp/data/val.bin" \
  --lens "tuned:$tmp/nope.safetensors" --out "$tmp/x.json"
check lens-not-a-lens 1 'not a metalm tuned lens' -- m analyze --checkpoint "$tmp/run" --data "$tmp/data/val.bin" \
  --lens "tuned:$(ls -d "$tmp"/run/checkpoints/step_* | tail -1)/model.safetensors" --out "$tmp/x.json"
check lens-bad-value 2 '--lens tuned:: analysis.lens = tuned:: must be logit or tuned:' -- m analyze --checkpoint "$tmp/run" --data "$tmp/data/val.bin" \
  --lens tuned: --out "$tmp/x.json"
check lens-other-model 0 '' -- m train --config "$src/configs/tiny.json" --set "data.dir=$tmp/data" \
  --set train.steps=1 --set train.eval_every=0 --set analysis.every=0 --set model.d_model=32 --run-dir "$tmp/run32"
check lens-wrong-shape 1 'the model needs \[32, 32\]' -- m analyze --checkpoint "$tmp/run32" \
  --data "$tmp/data/val.bin" --lens "tuned:$tmp/lens.safetensors" --out "$tmp/x.json"
py "
import json, struct
b = bytearray(open('$tmp/lens.safetensors', 'rb').read())
n = struct.unpack('<Q', b[:8])[0]
h = json.loads(b[8:8 + n])
start = 8 + n + h['translators.blocks.0.resid_pre.bias']['data_offsets'][0]
b[start:start + 4] = struct.pack('<f', float('nan'))
open('$tmp/nan.safetensors', 'wb').write(b)"
check lens-nan 1 'holds NaN or Inf' -- m analyze --checkpoint "$tmp/run" --data "$tmp/data/val.bin" \
  --lens "tuned:$tmp/nan.safetensors" --out "$tmp/x.json"
check no-partial-output 0 '^absent$' -- bash -c "test -e '$tmp/x.json' && echo present || echo absent"
finish
