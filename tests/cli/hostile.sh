#!/usr/bin/env bash
# CLI contract against hostile inputs: lying token-file headers, ids outside
# the vocabulary, JSON nested or sized to break a parser, numbers beyond a
# double, absurd sizes and thread counts, NaN weights, shard paths that leave
# the model folder, and inputs that are not regular files. Each must be one
# error line naming the problem, exit code 2 (usage/config) or 1, never a
# crash, a hang or a silent wrong result.
# usage: hostile.sh METALM_BIN SOURCE_DIR
set -u
bin=$1 src=$2
source "$src/tests/cli/lib/harness.sh"
export OMP_WAIT_POLICY=passive
py() { /usr/bin/python3 "$@"; }
# Like m, but killed after 60 s: a hang is a failure, not a stuck test suite.
t() { timeout 60 "$bin" --log-level off --threads 1 "$@"; }

mkdir -p "$tmp/corpus"
cp "$src"/include/metalm/*/*.hpp "$tmp/corpus/"
check prepare 0 '' -- m prepare --tokenizer byte --input "$tmp/corpus" --val-fraction 0.2 --out "$tmp/data"
check train 0 '' -- m train --config "$src/configs/tiny.json" --set "data.dir=$tmp/data" --set train.steps=2 \
  --set train.eval_every=0 --set analysis.every=0 --run-dir "$tmp/run"
printf '1 2 3 4 5 6 7 8 9 10\n' >"$tmp/ids.txt"

# ---- devices: this libtorch has no CUDA, so asking for it is a usage error -------
check train_cuda 2 'train.device = cuda: this libtorch has no usable CUDA' -- m train --config "$src/configs/tiny.json" \
  --set "data.dir=$tmp/data" --set train.steps=1 --set train.device=cuda --run-dir "$tmp/run_cuda"
check eval_cuda 2 'no usable CUDA' -- m eval --checkpoint "$tmp/run" --ids "$tmp/ids.txt" --device cuda
check generate_cuda 2 'no usable CUDA' -- m generate --checkpoint "$tmp/run" --device cuda
check analyze_cuda 2 'no usable CUDA' -- m analyze --checkpoint "$tmp/run" --data "$tmp/data/val.bin" --out "$tmp/a.json" --device cuda
check bench_cuda 2 'no usable CUDA' -- m bench train --config "$src/configs/tiny.json" --device cuda --steps 1
check eval_bf16 0 '"loss"' -- m eval --checkpoint "$tmp/run" --ids "$tmp/ids.txt" --precision bf16 --device cpu
check eval_bad_precision 2 'precision' -- m eval --checkpoint "$tmp/run" --ids "$tmp/ids.txt" --precision fp8

# ---- token files ---------------------------------------------------------------
# count = 2^62 + 1 ids of 4 bytes: 32 + count * 4 wraps to 36, this file's size.
py - "$tmp" <<'PY'
import os, shutil, struct, sys
tmp = sys.argv[1]
def token_file(path, id_bytes, vocab, count, ids):
    fmt = "<" + ("H" if id_bytes == 2 else "I") * len(ids)
    open(path, "wb").write(b"MLMTOKEN" + struct.pack("<IIQQ", 1, id_bytes, vocab, count) + struct.pack(fmt, *ids))
token_file(f"{tmp}/overflow.bin", 4, 100000, (1 << 62) + 1, [7])
token_file(f"{tmp}/bad_id.bin", 2, 257, 4, [1, 2, 60000, 3])
token_file(f"{tmp}/big_vocab.bin", 2, 300, 4, [1, 2, 280, 3])  # valid, but not meta.json's 257 ids
for name in ("overflow", "bad_id", "big_vocab"):  # the same files inside a dataset directory, for train
    d = f"{tmp}/data_{name}"
    shutil.copytree(f"{tmp}/data", d)
    shutil.copy(f"{tmp}/{name}.bin", f"{d}/train.bin")
PY
for cmd in eval analyze; do
  out=(); [[ $cmd == analyze ]] && out=(--out "$tmp/a.json")
  check "$cmd-count-overflow" 1 'overflow.bin: truncated: header says 4611686018427387905 ids' -- \
    t "$cmd" --checkpoint "$tmp/run" --data "$tmp/overflow.bin" "${out[@]}"
  check "$cmd-id-outside-vocab" 1 'bad_id.bin: token id 60000 at position 2 is outside' -- \
    t "$cmd" --checkpoint "$tmp/run" --data "$tmp/bad_id.bin" "${out[@]}"
done
check train-count-overflow 1 'train.bin: truncated: header says 4611686018427387905 ids' -- \
  t train --config "$src/configs/tiny.json" --set "data.dir=$tmp/data_overflow" --run-dir "$tmp/run_overflow"
check train-id-outside-vocab 1 'train.bin: token id 60000 at position 2' -- \
  t train --config "$src/configs/tiny.json" --set "data.dir=$tmp/data_bad_id" --run-dir "$tmp/run_bad_id"
check train-vocab-beyond-meta 1 "train.bin: vocabulary of 300 ids \(largest id in the file 280\) exceeds meta.json's 257" -- \
  t train --config "$src/configs/tiny.json" --set "data.dir=$tmp/data_big_vocab" --run-dir "$tmp/run_big_vocab"

# ---- inputs that are not regular files ------------------------------------------
mkfifo "$tmp/fifo"
# An id file or a config may be a pipe (tests/cli/hostile_validation.sh): one
# that nobody writes to reads as empty, at once.
check fifo-ids 1 'fifo: no token ids' -- t eval --checkpoint "$tmp/run" --ids "$tmp/fifo"
check fifo-data 1 'cannot read .*/fifo: a FIFO \(named pipe\), not a regular file' -- t eval --checkpoint "$tmp/run" --data "$tmp/fifo"
check fifo-config 2 'fifo:1:1: malformed JSON' -- t config show --config "$tmp/fifo"
check dir-ids 1 'a directory, not a regular file' -- t eval --checkpoint "$tmp/run" --ids "$tmp/corpus"
check device-text 1 '/dev/zero: a device that gives more than the 256 MiB a text or id input may hold' -- \
  t eval --checkpoint "$tmp/run" --text /dev/zero
: >"$tmp/empty.txt"
check empty-ids-eval 1 'empty.txt: no token ids' -- t eval --checkpoint "$tmp/run" --ids "$tmp/empty.txt"
check empty-ids-analyze 1 'empty.txt: no token ids' -- t analyze --checkpoint "$tmp/run" --ids "$tmp/empty.txt" --out "$tmp/a.json"

# ---- JSON --------------------------------------------------------------------------
py -c "import sys; open(sys.argv[1], 'w').write('{\"model\": ' + '[' * 100000 + ']' * 100000 + '}')" "$tmp/deep.json"
check config-deep 2 'deep.json: JSON nested deeper than 256 levels' -- t config show --config "$tmp/deep.json"
printf '{"train": {"steps": 3,\n  "lr": 1e999}}\n' >"$tmp/lr.json"
check config-1e999 2 'lr.json:2:[0-9]+: train.lr: number 1e999 is out of range' -- t config show --config "$tmp/lr.json"
py -c "import sys; open(sys.argv[1], 'w').write('{\"model\": {\"n_layer\": \"' + 'x' * 400000 + '\"}}')" "$tmp/big.json"
check config-huge-value 2 'model.n_layer: expected int, found string' -- t config show --config "$tmp/big.json"
check config-huge-value-short 0 '^short$' -- bash -c \
  "'$bin' config show --config '$tmp/big.json' 2>&1 | awk '{ n += length(\$0) } END { print (n < 300 ? \"short\" : \"long: \" n) }'"
check set-deep-list 2 'train.save_steps' -- t config show --set "train.save_steps=$(py -c "print('[' * 60000 + ']' * 60000)")"

# ---- sizes and thread counts ----------------------------------------------------------
check analyze-huge-batch 2 '^metalm: error: --batch-size: 4611686018427387904 is out of range: expected an integer from 1 to 65,536$' -- \
  t analyze --checkpoint "$tmp/run" --data "$tmp/data/val.bin" --batch-size 4611686018427387904 --out "$tmp/a.json"
check analyze-huge-batches 2 '--batches: .* is out of range' -- \
  t analyze --checkpoint "$tmp/run" --data "$tmp/data/val.bin" --batches 99999999999 --out "$tmp/a.json"
check analyze-huge-product 2 'tokens, more than the 16,777,216 one analysis holds' -- \
  t analyze --checkpoint "$tmp/run" --data "$tmp/data/val.bin" --batches 100000 --batch-size 1000 --out "$tmp/a.json"
ck=$(ls -d "$tmp"/run/checkpoints/step_* | tail -n1)
cp -r "$tmp/run/checkpoints" "$tmp/big_ckpt"
big_ck=$tmp/big_ckpt/$(basename "$ck")
py -c "
import json, sys; p = sys.argv[1]; j = json.load(open(p)); j['analysis']['batch_size'] = 100000000
json.dump(j, open(p, 'w'))" "$big_ck/config.json"
check analyze-huge-config-batch 2 'analysis.batch_size\) = 100000000 is out of range' -- \
  t analyze --checkpoint "$big_ck" --data "$tmp/data/val.bin" --out "$tmp/a.json"
check eval-huge-batch 2 '--batch: .* expected an integer from 1 to 65,536' -- t eval --checkpoint "$tmp/run" --ids "$tmp/ids.txt" --batch 1e30
check generate-huge 2 '--max-new-tokens: 9223372036854775807 is out of range' -- \
  t generate --checkpoint "$tmp/run" --max-new-tokens 9223372036854775807
check generate-negative-temperature 2 '--temperature: -1 is out of range: expected a number from 0 to 1000000' -- \
  t generate --checkpoint "$tmp/run" --temperature -1
# CLI11's own range checks printed DBL_MAX in full (309 digits).
check no-309-digit-limits 0 '^ok$' -- bash -c \
  "msg=\$('$bin' eval --checkpoint x --ids x --batch 0 2>&1); [[ \$msg != *[0-9][0-9][0-9][0-9][0-9][0-9][0-9][0-9][0-9][0-9][0-9][0-9][0-9][0-9][0-9][0-9][0-9][0-9][0-9][0-9]* && \$msg == *--batch* ]] && echo ok || echo \"\$msg\""
check cli11-positive-check-in-words 2 '^metalm: error: --dist-world-size: 0 must be positive$' -- \
  t train --config "$src/configs/tiny.json" --dist-world-size 0
check cli11-nonnegative-check-in-words 2 '^metalm: error: --dist-rank: -1 must be 0 or more$' -- \
  t train --config "$src/configs/tiny.json" --dist-rank -1
check threads-cli 2 '^metalm: error: --threads: 100000 is out of range: expected an integer from 0 to 256$' -- \
  timeout 20 "$bin" --threads 100000 config show
check threads-config 2 'train.threads = 100000: must be 0 \(all cores\) to 256' -- \
  timeout 20 "$bin" config show --set train.threads=100000

# ---- non-finite weights -----------------------------------------------------------------
cp -r "$ck" "$tmp/nan_ckpt"
py - "$tmp/nan_ckpt/model.safetensors" <<'PY'
import json, struct, sys
path = sys.argv[1]
raw = bytearray(open(path, "rb").read())
n = struct.unpack("<Q", raw[:8])[0]
begin = 8 + n + json.loads(raw[8:8 + n])["ln_f.weight"]["data_offsets"][0]
raw[begin + 12:begin + 16] = struct.pack("<f", float("nan"))
open(path, "wb").write(raw)
PY
nan_msg="nan_ckpt/model.safetensors: tensor 'ln_f.weight' holds 1 non-finite value"
check nan-eval 1 "$nan_msg" -- t eval --checkpoint "$tmp/nan_ckpt" --ids "$tmp/ids.txt"
check nan-eval-allowed-is-still-an-error 1 'eval: the loss is nan' -- \
  t eval --checkpoint "$tmp/nan_ckpt" --ids "$tmp/ids.txt" --allow-nonfinite
check nan-generate 1 "$nan_msg" -- t generate --checkpoint "$tmp/nan_ckpt" --temperature 0 --prompt ab
check nan-analyze 1 "$nan_msg" -- t analyze --checkpoint "$tmp/nan_ckpt" --ids "$tmp/ids.txt" --out "$tmp/nan.json"
check nan-analyze-no-output 0 '^absent$' -- bash -c "test -e '$tmp/nan.json' && echo present || echo absent"
check nan-export 1 "$nan_msg" -- t export --checkpoint "$tmp/nan_ckpt" --out "$tmp/nan.safetensors"
check nan-export-allowed 0 '' -- t export --checkpoint "$tmp/nan_ckpt" --out "$tmp/nan.safetensors" --allow-nonfinite

# ---- Hugging Face shard paths -------------------------------------------------------------
# A valid shard (the golden GPT-2) placed outside the model folder, named by the index as
# ../x, as an absolute path, and through a symlink: all refused.
golden=$src/tests/golden/hf_gpt2/plain_f32
mkdir -p "$tmp/hf/model"
cp "$golden/config.json" "$tmp/hf/model/"
cp "$golden/model.safetensors" "$tmp/hf/outside.safetensors"
ln -s "$tmp/hf/outside.safetensors" "$tmp/hf/model/link.safetensors"
index() {
  py - "$golden/model.safetensors" "$1" >"$tmp/hf/model/model.safetensors.index.json" <<'PY'
import json, struct, sys
raw = open(sys.argv[1], "rb").read()
names = [k for k in json.loads(raw[8:8 + struct.unpack("<Q", raw[:8])[0]]) if k != "__metadata__"]
print(json.dumps({"weight_map": {k: sys.argv[2] for k in names}}))
PY
}
index ../outside.safetensors
check shard-dotdot 1 'weight_map entry .* names shard "../outside.safetensors": a path with ".."' -- \
  t import-hf --from "$tmp/hf/model" --out "$tmp/hf/ckpt"
index "$tmp/hf/outside.safetensors"
check shard-absolute 1 'an absolute path; shards must be inside the model folder' -- \
  t import-hf --from "$tmp/hf/model" --out "$tmp/hf/ckpt"
index link.safetensors
check shard-symlink 1 'a symlink to .*outside.safetensors, outside the model folder' -- \
  t import-hf --from "$tmp/hf/model" --out "$tmp/hf/ckpt"
check shard-no-output 0 '^absent$' -- bash -c "test -e '$tmp/hf/ckpt' && echo present || echo absent"
cp "$golden/model.safetensors" "$tmp/hf/model/inside.safetensors"
index inside.safetensors
check shard-inside 0 '' -- t import-hf --from "$tmp/hf/model" --out "$tmp/hf/ckpt"

finish
