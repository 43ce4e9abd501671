#!/usr/bin/env bash
# CLI contract for `metalm analyze` and `metalm synthetic-icl`: outputs with
# the documented keys (docs/analysis-schema.md), CSV tables, one-line errors.
# usage: analyze.sh METALM_BIN SOURCE_DIR
set -u
bin=$1 src=$2
source "$src/tests/cli/lib/harness.sh"
py() { /usr/bin/python3 -c "$@"; }

check synthetic 0 '' -- m synthetic-icl --n 8,512 --batch 16 --seed 3 --out "$tmp/icl.json"
check synthetic-schema 0 '^ok$' -- py "
import json; j = json.load(open('$tmp/icl.json'))
assert j['setting'] == 'linear_icl' and j['d_x'] == 4 and j['eta'] == 0.1 and j['batch'] == 16
assert [p['n'] for p in j['points']] == [8, 512]
for p in j['points']:
    assert set(p['alignment']) == {'mean', 'std', 'median', 'q10', 'q90'} and 'loss_before' in p and 'loss_after' in p
assert j['points'][1]['alignment']['mean'] > j['points'][0]['alignment']['mean']
print('ok')"
check synthetic-bad-n 2 '--n: "x" is not an integer; expected comma-separated integers' -- m synthetic-icl --n 4,x --out "$tmp/x.json"

mkdir -p "$tmp/corpus"
# One document per header, named after its folder too (two concerns may both have a config.hpp).
for f in "$src"/include/metalm/*/*.hpp; do cp "$f" "$tmp/corpus/$(basename "$(dirname "$f")")_$(basename "$f")"; done
check prepare 0 '' -- m prepare --tokenizer byte --input "$tmp/corpus" --val-fraction 0.2 --out "$tmp/data"
check train 0 '' -- m train --config "$src/configs/tiny.json" --set "data.dir=$tmp/data" --set train.steps=4 \
  --set train.eval_every=0 --set analysis.every=0 --run-dir "$tmp/run"

check analyze-data 0 '' -- m analyze --checkpoint "$tmp/run" --data "$tmp/data/val.bin" --batches 1 --batch-size 2 \
  --seq-len 32 --control-untrained --out "$tmp/a.json" --csv "$tmp/csv"
check analyze-schema 0 '^ok$' -- py "
import json, math; j = json.load(open('$tmp/a.json'))
for k in ['tokens', 'granularity', 'final_loss', 'chance_alignment_per_token', 'bootstrap', 'permutations', 'steps', 'states', 'tables', 'control_untrained']:
    assert k in j, k
assert j['tokens'] == 64 and j['granularity'] == 'block'
assert abs(j['final_loss'] - j['states'][-1]['loss']) < 1e-4
s = j['steps'][0]
for k in ['alignment', 'alignment_uniform', 'alignment_shuffled', 'alignment_bigram', 'alignment_belief', 'step_size',
          'step_size_scaled', 'norm_before', 'norm_update', 'norm_grad']:
    assert set(s[k]) == {'mean', 'std', 'median', 'q10', 'q90', 'ci'}, k
    assert s[k]['ci'][0] <= s[k]['mean'] <= s[k]['ci'][1], k
assert set(s['gaps']) == {'uniform', 'shuffled', 'bigram', 'belief', 'permuted'}
assert s['strongest_control'] in ('shuffled', 'bigram', 'belief')
assert len(s['null_band']) == 2 and s['null_band'][0] <= s['null_band'][1]
assert j['control_untrained']['lens'] == 'logit'
for k in ['from', 'to', 'loss_before', 'loss_after', 'first_order_decrease', 'actual_decrease', 'by_position', 'by_frequency']:
    assert k in s, k
assert len(s['by_position']['alignment']) == 32
assert 'current' in s['by_frequency'] and 'target' in s['by_frequency']
assert len(j['steps']) == len(j['states']) - 1
print('ok')"
check analyze-csv 0 '^ok$' -- py "
import csv; rows = list(csv.DictReader(open('$tmp/csv/steps.csv')))
assert len(rows) >= 1 and 'alignment_mean' in rows[0]
assert len(list(csv.DictReader(open('$tmp/csv/by_position.csv')))) == 32 * len(rows)
print('ok')"
printf '1 2 3 4 5 6 7 8 9 10 11 12\n' >"$tmp/ids.txt"
check analyze-ids 0 '' -- m analyze --checkpoint "$tmp/run" --ids "$tmp/ids.txt" --granularity sublayer --seed 77 \
  --out "$tmp/b.json"
check analyze-ids-tokens 0 '"tokens": 11' -- cat "$tmp/b.json"
check analyze-ids-sublayer 0 '"kind": "mlp"' -- cat "$tmp/b.json"
# The analysis.* options set their keys over the checkpoint's config (analysis.seed: 1234).
check analyze-ids-seed 0 '^77 77$' -- py "import json; j = json.load(open('$tmp/b.json')); print(j['seed'], j['bootstrap']['seed'])"
printf 'The model reads this text.\n' >"$tmp/t.txt"
check analyze-text 0 '' -- m analyze --checkpoint "$tmp/run" --text "$tmp/t.txt" --out "$tmp/c.json"
check analyze-no-input 2 'give the tokens with --data, --ids or --text' -- m analyze --checkpoint "$tmp/run" --out "$tmp/d.json"
check analyze-missing-ckpt 1 '' -- m analyze --checkpoint "$tmp/nope" --ids "$tmp/ids.txt" --out "$tmp/d.json"
printf '1 2 99999\n' >"$tmp/bad_ids.txt"
check analyze-ids-range 1 'token id 99999 is outside' -- m analyze --checkpoint "$tmp/run" --ids "$tmp/bad_ids.txt" --out "$tmp/d.json"
check no-partial-output 0 '^absent$' -- bash -c "test -e '$tmp/d.json' && echo present || echo absent"
finish
