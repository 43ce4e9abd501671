#!/usr/bin/env bash
# CLI contract for in-context regression: `metalm icl-train` trains into a run
# directory and resumes it, `metalm icl-compare` writes the versioned
# comparison JSON; bad configs, a missing or foreign checkpoint and an
# existing --out are one line with exit 2 or 1 and leave no output.
# usage: icl.sh METALM_BIN SOURCE_DIR
set -u
bin=$1 src=$2
source "$src/tests/cli/lib/harness.sh"
py() { /usr/bin/python3 -c "$@"; }

cat > "$tmp/tiny.json" <<'JSON'
{"task": {"d_x": 3, "d_y": 1, "n": 8},
 "model": {"layers": 2},
 "train": {"steps": 6, "batch_size": 16, "log_every": 2, "eval_every": 3, "eval_tasks": 32, "checkpoint_every": 3}}
JSON
check train 0 '' -- m icl-train --config "$tmp/tiny.json" --run-dir "$tmp/run"
check run-files 0 '^ok$' -- py "
import json, os
r = '$tmp/run'
assert json.load(open(r + '/config.json'))['model']['layers'] == 2
lines = [json.loads(l) for l in open(r + '/metrics.jsonl')]
assert [l['step'] for l in lines] == [2, 3, 4, 6] and 'eval_loss' in lines[1], lines
assert sorted(os.listdir(r + '/checkpoints')) == ['step_00000003', 'step_00000006']
assert json.load(open(r + '/checkpoints/step_00000006/state.json'))['format'] == 'metalm-icl-checkpoint'
print('ok')"
check train-again 2 'pass --resume' -- m icl-train --config "$tmp/tiny.json" --run-dir "$tmp/run"
check resume-done 0 '' -- m icl-train --resume --run-dir "$tmp/run"

check compare 0 '' -- m icl-compare --checkpoint "$tmp/run" --tasks 64 --tune-tasks 64 --out "$tmp/cmp.json"
check compare-schema 0 '^ok$' -- py "
import json
c = json.load(open('$tmp/cmp.json'))
assert c['format'] == 'metalm-icl-compare' and c['version'] == 2 and c['step'] == 6
names = [r['name'] for r in c['references']]
assert names == ['gd1', 'gd2', 'gdpp2', 'precond_opt', 'precond_inv_sigma', 'ridge', 'ols'], names
for r in c['references']:
    assert set(r) == {'name', 'params', 'tuning_loss', 'loss', 'prediction_difference', 'prediction_cosine',
                      'sensitivity_cosine', 'interpolation_loss'}, r
assert len(c['analysis']['steps']) == 2
curve = c['loss_vs_n']
assert curve['n'] == [2, 4, 8, 16, 32, 64] and len(curve['model']) == 6, curve
assert sorted(curve['references']) == sorted(names) and all(len(v) == 6 for v in curve['references'].values())
print('ok')"
check compare-sizes 0 '' -- m icl-compare --checkpoint "$tmp/run" --tasks 16 --tune-tasks 16 --context-sizes 3,5 \
  --out "$tmp/cmp-sizes.json"
check compare-sizes-read 0 '^ok$' -- py "
import json
assert json.load(open('$tmp/cmp-sizes.json'))['loss_vs_n']['n'] == [3, 5]
print('ok')"
check compare-bad-size 2 'context size' -- m icl-compare --checkpoint "$tmp/run" --context-sizes 0 --out "$tmp/x.json"
check compare-exists 2 'already exists' -- m icl-compare --checkpoint "$tmp/run" --out "$tmp/cmp.json"

# Hostile configs: one line naming the key, exit 2, no run directory left.
bad() {
  local name=$1 pattern=$2 body=$3
  printf '%s' "$body" > "$tmp/$name.json"
  check "config-$name" 2 "$pattern" -- m icl-train --config "$tmp/$name.json" --run-dir "$tmp/bad-$name"
  [[ -e $tmp/bad-$name ]] && { echo "FAIL config-$name: left $tmp/bad-$name"; fails=$((fails+1)); }
}
bad unknown-key 'unknown key "train.stpes"' '{"train": {"stpes": 3}}'
bad unknown-section 'unknown section "trian"' '{"trian": {}}'
bad wrong-type 'task.d_x: expected int' '{"task": {"d_x": "ten"}}'
bad bad-attention 'model.attention' '{"model": {"attention": "relu"}}'
bad bad-kappa 'task.kappa' '{"task": {"kappa": 0}}'
bad bad-lr 'train.lr' '{"train": {"lr": 0}}'
bad not-json 'not-json.json:1:' '{"task": '
check config-missing 1 'cannot read|No such file' -- m icl-train --config "$tmp/absent.json" --run-dir "$tmp/bad-missing"
check no-config 2 'needs --config' -- m icl-train --run-dir "$tmp/none"

# Checkpoints that are missing or not of icl-train.
check compare-missing 1 'checkpoint not found' -- m icl-compare --checkpoint "$tmp/absent" --out "$tmp/x.json"
mkdir -p "$tmp/empty"
check compare-empty 1 'no checkpoint in' -- m icl-compare --checkpoint "$tmp/empty" --out "$tmp/x.json"
mkdir -p "$tmp/foreign"
echo '{"format": "metalm-checkpoint", "version": 1, "step": 0}' > "$tmp/foreign/state.json"
check compare-foreign 1 'not an in-context regression checkpoint' -- m icl-compare --checkpoint "$tmp/foreign" \
  --out "$tmp/x.json"
check compare-bad-tasks 2 '--tasks' -- m icl-compare --checkpoint "$tmp/run" --tasks 1 --out "$tmp/x.json"
[[ -e $tmp/x.json ]] && { echo "FAIL: a failed icl-compare left $tmp/x.json"; fails=$((fails+1)); }

finish
