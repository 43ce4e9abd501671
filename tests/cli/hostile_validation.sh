#!/usr/bin/env bash
# CLI contract of the second hostile-input sweep's validation classes: unknown
# commands, settings and options that are not finite or out of their range,
# keys said twice, memory beyond this machine, outputs whose directory cannot
# take them (refused before any work), ids outside a tokenizer's vocabulary,
# and small text inputs from pipes (allowed, with a cap) against binary inputs
# (regular files only). Each failure is one line naming the option, key or
# file, exit 2 (usage/config) or 1.
# usage: hostile_validation.sh METALM_BIN SOURCE_DIR
set -u
bin=$1 src=$2
source "$src/tests/cli/lib/harness.sh"
export OMP_WAIT_POLICY=passive
t() { timeout 60 "$bin" --log-level off --threads 1 "$@"; }
tensor="$(dirname "$bin")/metalm-tensor"

mkdir -p "$tmp/corpus"
cp "$src"/include/metalm/*/*.hpp "$tmp/corpus/"
check prepare 0 '' -- m prepare --tokenizer byte --input "$tmp/corpus" --val-fraction 0.2 --out "$tmp/data"
check train 0 '' -- m train --config "$src/configs/tiny.json" --set "data.dir=$tmp/data" --set train.steps=2 \
  --set train.eval_every=0 --set analysis.every=0 --run-dir "$tmp/run"
printf '1 2 3 4 5 6 7 8 9 10\n' >"$tmp/ids.txt"

# ---- unknown commands: named, with the nearest one ------------------------------
check unknown-command-near 2 "^metalm: error: unknown command 'trian' \(did you mean 'train'\?\); .metalm --help. lists the commands$" -- \
  t trian --config x
check unknown-command-far 2 "^metalm: error: unknown command 'nosuchcmd'; .metalm --help. lists the commands$" -- t nosuchcmd
check unknown-command-tensor 2 "unknown command 'evl' \(did you mean 'eval'\?\)" -- timeout 60 "$tensor" evl
# Every command metalm --help lists still runs (its --help) through the launcher.
commands=$("$bin" --help | awk '/^Subcommands:/{on=1; next} on && /^  [a-z]/{print $1}')
check help-lists-commands 0 '^ok$' -- bash -c "[[ \$(wc -w <<<'$commands') -ge 10 ]] && echo ok"
for c in $commands; do check "help-$c" 0 '' -- t "$c" --help; done

# ---- float settings: finite and in range, named ---------------------------------
for key in model.norm_eps train.grad_clip train.adam_eps model.rope_base dist.timeout_s train.lr; do
  check "set-inf-$key" 2 "^metalm: error: --set $key=inf: expected float \(a finite number\)$" -- \
    t config show --set "$key=inf"
done
check set-nan 2 'train.beta1=nan: expected float' -- t config show --set train.beta1=nan
check set-timeout-huge 2 'dist.timeout_s = 1e\+300: must be from 0.001 to 86400' -- t config show --set dist.timeout_s=1e300
check train-lr-inf 2 'train.lr=inf: expected float' -- t train --config "$src/configs/tiny.json" \
  --set "data.dir=$tmp/data" --set train.lr=inf --run-dir "$tmp/run_inf"
check train-lr-inf-nothing-made 0 '^ok$' -- bash -c "[[ ! -e '$tmp/run_inf' ]] && echo ok"
check option-inf-positive 2 '^metalm: error: --dist-world-size: inf is not a finite number$' -- \
  t train --config "$src/configs/tiny.json" --dist-world-size inf
check lens-lr-inf 2 '--lr: inf is out of range' -- t lens-train --checkpoint "$tmp/run" --data "$tmp/data/train.bin" \
  --lr inf --out "$tmp/lens.safetensors"
check generate-temperature-nan 2 '--temperature: nan is out of range' -- t generate --checkpoint "$tmp/run" --temperature nan

# ---- keys said twice -------------------------------------------------------------
printf '{"train": {"lr": 0.1,\n "lr": 0.2}}' >"$tmp/dup.json"
check config-duplicate-key 2 "dup.json: duplicate key \"train.lr\"" -- t config show --config "$tmp/dup.json"

# ---- documented ranges refused, not clamped --------------------------------------
check generate-seed-negative 2 '^metalm: error: --seed: "-1" is not a seed: expected an integer from 0 to 18,446,744,073,709,551,615' -- \
  t generate --checkpoint "$tmp/run" --seed -1
check generate-seed-2e64 2 '--seed: 18446744073709551616 is out of range' -- \
  t generate --checkpoint "$tmp/run" --seed 18446744073709551616
check generate-seed-max 0 '' -- t generate --checkpoint "$tmp/run" --seed 18446744073709551615 --max-new-tokens 2
greedy=$(t generate --checkpoint "$tmp/run" --prompt "The" --temperature 0 --max-new-tokens 8)
check generate-tiny-temperature-is-greedy 0 '^ok$' -- bash -c \
  "[[ \$(timeout 60 '$bin' --log-level off --threads 1 generate --checkpoint '$tmp/run' --prompt The --temperature 1e-39 --max-new-tokens 8) == '$greedy' ]] && echo ok"
check analyze-seq-len-beyond-context 2 'analyze: --seq-len 999 is longer than the context of .* \(64 tokens\)' -- \
  t analyze --checkpoint "$tmp/run" --data "$tmp/data/val.bin" --seq-len 999 --out "$tmp/a.json"
check lens-seq-len-beyond-context 2 'lens-train: --seq-len 65 is longer than the context of .* \(64 tokens\)' -- \
  t lens-train --checkpoint "$tmp/run" --data "$tmp/data/train.bin" --seq-len 65 --out "$tmp/lens.safetensors"
check eval-stride-beyond-context 2 'eval: --stride 999 is longer than the context of .* \(64 tokens\)' -- \
  t eval --checkpoint "$tmp/run" --ids "$tmp/ids.txt" --stride 999

# ---- synthetic-icl: every option in range, nothing non-finite written -------------
check icl-eta-inf 2 '^metalm: error: --eta: inf is out of range: expected a number from 0.000001 to 1000000$' -- \
  t synthetic-icl --eta inf --out "$tmp/icl.json"
check icl-eta-tiny 2 '--eta: 1e-300 is out of range' -- t synthetic-icl --eta 1e-300 --out "$tmp/icl.json"
check icl-dx-huge 2 '--d-x: 100000 is out of range: expected an integer from 1 to 4,096' -- \
  t synthetic-icl --d-x 100000 --out "$tmp/icl.json"
check icl-seed-negative 2 '--seed: "-5" is not a seed' -- t synthetic-icl --seed -5 --out "$tmp/icl.json"
check icl-n-float 2 '^metalm: error: --n: "1e8" is not an integer; expected comma-separated integers from 1 to 1,048,576$' -- \
  t synthetic-icl --n 1e8 --out "$tmp/icl.json"
check icl-n-huge 2 '--n: 100000000 is out of range' -- t synthetic-icl --n 16,100000000 --out "$tmp/icl.json"
check icl-batch-huge 2 '--batch: 100000000 is out of range: expected an integer from 1 to 65,536' -- \
  t synthetic-icl --batch 100000000 --out "$tmp/icl.json"
check icl-memory 2 "^metalm: error: synthetic-icl --batch 65536 x --n 1048576 \(d_x \+ d_y = 8192\) need about .* of memory \(estimated\), more than twice this machine's" -- \
  t synthetic-icl --batch 65536 --n 1048576 --d-x 4096 --out "$tmp/icl.json"
check icl-nothing-written 0 '^ok$' -- bash -c "[[ ! -e '$tmp/icl.json' ]] && echo ok"
for eta in 0.000001 1000000; do
  check "icl-eta-$eta-finite" 0 '^ok$' -- bash -c \
    "timeout 60 '$bin' --log-level off --threads 1 synthetic-icl --n 16,64 --batch 4 --eta $eta --out '$tmp/icl_$eta.json' && ! grep -q null '$tmp/icl_$eta.json' && echo ok"
done

# ---- memory estimates of model sizes -----------------------------------------------
check bench-analysis-memory 2 'bench analysis --layers 65536, --d-model 65536, .* need about .* of memory \(estimated\)' -- \
  t bench analysis --layers 65536 --d-model 65536 --heads 1 --iters 1

# ---- outputs: their directory is checked before any work ---------------------------
# Checked before the checkpoint is even loaded.
check analyze-out-missing-dir 2 "^metalm: error: --out $tmp/missing/a.json: its directory $tmp/missing does not exist; create it first$" -- \
  t analyze --checkpoint "$tmp/run" --ids "$tmp/ids.txt" --out "$tmp/missing/a.json"
: >"$tmp/a_file"
check analyze-csv-under-a-file 2 "--csv $tmp/a_file/csv: $tmp/a_file is not a directory" -- \
  t analyze --checkpoint "$tmp/run" --ids "$tmp/ids.txt" --out "$tmp/a.json" --csv "$tmp/a_file/csv"
check lens-out-missing-dir 2 'its directory .*/missing does not exist' -- \
  t lens-train --checkpoint "$tmp/run" --data "$tmp/data/train.bin" --out "$tmp/missing/lens.safetensors"
check icl-out-missing-dir 2 'its directory .*/missing does not exist' -- t synthetic-icl --out "$tmp/missing/icl.json"
check tokenize-output-missing-dir 2 'its directory .*/missing does not exist' -- \
  t tokenize --tokenizer byte --input "$tmp/ids.txt" --output "$tmp/missing/ids"
mkdir -p "$tmp/readonly" && chmod a-w "$tmp/readonly"
if [[ ! -w "$tmp/readonly" ]]; then  # root writes anywhere
  check analyze-out-readonly-dir 2 "cannot write in $tmp/readonly: Permission denied" -- \
    t analyze --checkpoint "$tmp/run" --ids "$tmp/ids.txt" --out "$tmp/readonly/a.json"
fi

# ---- ids outside a tokenizer's vocabulary name the file and the position ----------
printf '72 105\n300 33\n' >"$tmp/decode.ids"
check decode-outside-vocab 1 "^metalm: error: $tmp/decode.ids: token id 300 is outside the vocabulary of byte \[0, 257\) \(id number 3, at byte 7\)$" -- \
  t tokenize --tokenizer byte --decode --input "$tmp/decode.ids"
printf '1 2 99999\n' >"$tmp/bad_ids.txt"
check eval-ids-outside-vocab 1 'bad_ids.txt: token id 99999 is outside the model.s vocabulary \[0, 257\) \(id number 3, at byte 4\)' -- \
  t eval --checkpoint "$tmp/run" --ids "$tmp/bad_ids.txt"

# ---- small text inputs may be pipes; binary inputs must be regular files -----------
check config-stdin 0 '"lr": 0.5' -- bash -c \
  "echo '{\"train\": {\"lr\": 0.5}}' | timeout 20 '$bin' config show --config /dev/stdin"
check config-process-substitution 0 '"steps": 7' -- bash -c \
  "timeout 20 '$bin' config show --config <(echo '{\"train\": {\"steps\": 7}}')"
check ids-pipe 0 '"tokens":9' -- bash -c \
  "timeout 60 '$bin' --log-level off eval --checkpoint '$tmp/run' --ids <(printf '1 2 3 4 5 6 7 8 9 10')"
check tokenize-stdin 0 '^72 105$' -- bash -c "printf Hi | timeout 20 '$bin' tokenize --tokenizer byte --input /dev/stdin"
check config-endless-device 1 '^metalm: error: cannot read /dev/zero: a device that gives more than the 16 MiB a config may hold$' -- \
  t config show --config /dev/zero
printf '{}' >"$tmp/sparse.json" && truncate -s 4G "$tmp/sparse.json"
check config-4g-sparse 1 "cannot read $tmp/sparse.json: 4294967296 bytes, more than the 16 MiB a config may hold" -- \
  t config show --config "$tmp/sparse.json"
check token-file-pipe 1 'a FIFO \(named pipe\), not a regular file' -- bash -c \
  "timeout 60 '$bin' --log-level off eval --checkpoint '$tmp/run' --data <(cat '$tmp/data/val.bin')"

finish
