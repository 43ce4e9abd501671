#!/usr/bin/env bash
# CLI contract for `metalm intervene`: the JSON of docs/design.md 7
# ("format": "metalm-intervene"), its untrained control, hostile inputs as
# one-line errors, and nothing written when a run fails.
# usage: intervene.sh METALM_BIN SOURCE_DIR
set -u
bin=$1 src=$2
source "$src/tests/cli/lib/harness.sh"
py() { /usr/bin/python3 -c "$@"; }

mkdir -p "$tmp/corpus"
cp "$src"/include/metalm/*/*.hpp "$tmp/corpus/"
check prepare 0 '' -- m prepare --tokenizer byte --input "$tmp/corpus" --val-fraction 0.2 --out "$tmp/data"
check train 0 '' -- m train --config "$src/configs/tiny.json" --set "data.dir=$tmp/data" --set train.steps=4 \
  --set train.eval_every=0 --set analysis.every=0 --run-dir "$tmp/run"

check intervene-data 0 '' -- m intervene --checkpoint "$tmp/run" --data "$tmp/data/val.bin" --batches 1 \
  --batch-size 3 --seq-len 16 --resamples 50 --out "$tmp/a.json"
check intervene-schema 0 '^ok$' -- py "
import json, math; j = json.load(open('$tmp/a.json'))
assert j['format'] == 'metalm-intervene' and j['version'] == 1
for k in ['tokens', 'sequences', 'granularity', 'lens', 'alphas', 'bootstrap', 'final_loss', 'steps',
          'checkpoint', 'step', 'source', 'control_untrained']:
    assert k in j, k
assert j['tokens'] == 48 and j['sequences'] == 3 and j['granularity'] == 'block' and j['lens'] == 'logit'
assert j['alphas'] == [0, 0.5, 1, 1.5, 2] and j['bootstrap']['resamples'] == 50
assert len(j['steps']) == 2
for r in [j, j['control_untrained']]:
    for s in r['steps']:
        for k in ['remove_gradient', 'remove_random', 'remove_radial', 'gradient_step', 'gradient_step_median',
                  'remove_gradient_minus_random', 'gradient_energy']:
            assert set(s[k]) == {'mean', 'lo', 'hi', 'n'}, k
            assert s[k]['lo'] <= s[k]['mean'] <= s[k]['hi'], k
        assert [p['alpha'] for p in s['line_search']] == j['alphas']
        assert s['line_search'][2]['mean'] == 0  # alpha = 1 is the model itself
        assert s['alpha_min'] in j['alphas']
        assert s['from'] and s['to'] and s['kind'] == 'block'
print('ok')"
printf '1 2 3 4 5 6 7 8 9 10 11 12\n' >"$tmp/ids.txt"
check intervene-ids-sublayer 0 '' -- m intervene --checkpoint "$tmp/run" --ids "$tmp/ids.txt" --granularity sublayer \
  --alphas 0,1,3 --resamples 20 --no-control-untrained --out "$tmp/b.json"
check intervene-ids-shape 0 '^ok$' -- py "
import json; j = json.load(open('$tmp/b.json'))
assert j['tokens'] == 11 and len(j['steps']) == 4 and [s['kind'] for s in j['steps']] == ['attn', 'mlp'] * 2
assert 'control_untrained' not in j and [p['alpha'] for p in j['steps'][0]['line_search']] == [0, 1, 3]
print('ok')"

# Hostile inputs: one line naming the option or file, exit 2 for usage and
# config errors, 1 for files, and no output file.
check no-input 2 'give the tokens with --data or --ids' -- m intervene --checkpoint "$tmp/run" --out "$tmp/x.json"
check bad-alphas 2 '--alphas: expected comma-separated finite numbers' -- \
  m intervene --checkpoint "$tmp/run" --ids "$tmp/ids.txt" --alphas 0,x --out "$tmp/x.json"
check nan-alphas 2 '--alphas: expected comma-separated finite numbers' -- \
  m intervene --checkpoint "$tmp/run" --ids "$tmp/ids.txt" --alphas nan --out "$tmp/x.json"
check bad-resamples 2 '--resamples' -- \
  m intervene --checkpoint "$tmp/run" --ids "$tmp/ids.txt" --resamples 0 --out "$tmp/x.json"
check bad-granularity 2 '--granularity' -- \
  m intervene --checkpoint "$tmp/run" --ids "$tmp/ids.txt" --granularity layer --out "$tmp/x.json"
check bad-lens 2 '--lens nope' -- m intervene --checkpoint "$tmp/run" --ids "$tmp/ids.txt" --lens nope --out "$tmp/x.json"
check missing-lens 1 'missing.safetensors' -- \
  m intervene --checkpoint "$tmp/run" --ids "$tmp/ids.txt" --lens "tuned:$tmp/missing.safetensors" --out "$tmp/x.json"
check missing-ckpt 1 '' -- m intervene --checkpoint "$tmp/nope" --ids "$tmp/ids.txt" --out "$tmp/x.json"
printf '1 2 99999\n' >"$tmp/bad_ids.txt"
check ids-range 1 'token id 99999 is outside' -- \
  m intervene --checkpoint "$tmp/run" --ids "$tmp/bad_ids.txt" --out "$tmp/x.json"
printf '7\n' >"$tmp/one_id.txt"
check ids-too-few 1 'need at least 2 tokens' -- \
  m intervene --checkpoint "$tmp/run" --ids "$tmp/one_id.txt" --out "$tmp/x.json"
check huge-batch 2 '--batch-size' -- \
  m intervene --checkpoint "$tmp/run" --ids "$tmp/ids.txt" --batch-size 4611686018427387904 --out "$tmp/x.json"
check too-many-tokens 2 'tokens, more than the 16,777,216 one analysis holds' -- m intervene --checkpoint "$tmp/run" \
  --data "$tmp/data/val.bin" --batches 100000 --batch-size 1000 --seq-len 64 --out "$tmp/x.json"
check no-partial-output 0 '^absent$' -- bash -c "test -e '$tmp/x.json' && echo present || echo absent"
check existing-out 2 'already exists|exists' -- \
  m intervene --checkpoint "$tmp/run" --ids "$tmp/ids.txt" --out "$tmp/a.json"
check existing-out-kept 0 '^metalm-intervene$' -- py "import json; print(json.load(open('$tmp/a.json'))['format'])"
mkdir -p "$tmp/dir_out/x"
check out-is-directory 2 'not empty|directory' -- \
  m intervene --checkpoint "$tmp/run" --ids "$tmp/ids.txt" --out "$tmp/dir_out"
finish
