#!/usr/bin/env bash
# CLI contract: nothing the user had is changed or lost, and a failed command
# leaves nothing behind. train writes only into a new or empty directory or a
# run of its own; a link planted at the lock or at an output is never written
# through; an output never overlaps an input, --force or not (same path, one
# inside the other, through links); resume stops rather than drop a log line
# it did not write; a state.json that does not hold together is refused; a
# bad input fails before the run directory exists; a finished run resumed
# again says so. Each refusal is one line naming the path, exit 1 or 2.
# usage: nothing_lost.sh METALM_BIN SOURCE_DIR
set -u
bin=$(realpath "$1") src=$(realpath "$2")
source "$src/tests/cli/lib/harness.sh"
export OMP_WAIT_POLICY=passive
cd "$tmp"
# Every file but .lock (which holds the PID of the last run).
digest() { (cd "$1" && find . -type f ! -name .lock -print0 | sort -z | xargs -0 sha256sum); }

mkdir corpus
cp "$src"/include/metalm/core/*.hpp corpus/
check prepare 0 '' -- m prepare --tokenizer byte --input corpus --val-fraction 0.2 --out data
tiny=(--config "$src/configs/tiny.json" --set data.dir=data --set train.eval_every=2 --set train.ckpt_every=2
      --set analysis.every=0)

# ---- the run directory: new, empty, or a run of metalm's ---------------------------
mkdir mine
echo '{"my": "settings"}' >mine/config.json
echo 'my numbers' >mine/metrics.jsonl
echo '{"mine": true}' >mine/best.json
before=$(digest mine)
check not-a-run 2 '^metalm: error: run directory mine is not empty and is not a metalm run' -- \
  m train "${tiny[@]}" --set train.steps=2 --run-dir mine
check not-a-run-resume 2 'run directory mine is not empty and is not a metalm run' -- \
  m train --run-dir mine --resume "${tiny[@]}"
check not-a-run-untouched 0 '' -- test "$(digest mine)" == "$before"
check not-a-run-no-lock 1 '' -- test -e mine/.lock
mkdir run
check empty-dir-is-used 0 '' -- m train "${tiny[@]}" --set train.steps=4 --run-dir run
check empty-dir-marked 0 '"format": "metalm-run"' -- cat run/metalm-run.json
# A run from before the marker is recognised (its config.json and
# metrics.jsonl) and marked.
rm run/metalm-run.json
check unmarked-run-resumes 0 '' -- m train "${tiny[@]}" --set train.steps=6 --run-dir run --resume
check unmarked-run-marked 0 '' -- test -f run/metalm-run.json

# ---- a link at the lock is never followed ----------------------------------------
echo 'keep me' >precious.txt
rm -f run/.lock
ln -s "$tmp/precious.txt" run/.lock
check symlinked-lock 1 '^metalm: error: cannot lock run directory run: run/.lock is a symbolic link' -- \
  m train "${tiny[@]}" --set train.steps=8 --run-dir run --resume
check symlinked-lock-target-untouched 0 '' -- grep -qx 'keep me' precious.txt
rm run/.lock

# ---- a finished run resumed again -------------------------------------------------
check finished-run 0 'run run is already complete: step 6 of train.steps = 6 \| val loss [0-9]+\.[0-9]+' -- \
  "$bin" --threads 1 train "${tiny[@]}" --set train.steps=6 --run-dir run --resume
before=$(digest run)
check finished-run-quiet 0 '' -- m train "${tiny[@]}" --set train.steps=6 --run-dir run --resume
check finished-run-unchanged 0 '' -- test "$(digest run)" == "$before"

# ---- resume never drops a line it did not write -----------------------------------
cp run/metrics.jsonl metrics.orig
echo 'my note' >>run/metrics.jsonl
n=$(wc -l <run/metrics.jsonl)
check foreign-line 1 "^metalm: error: run/metrics.jsonl:$n: not a JSON line \(my note\); resuming keeps the lines" -- \
  m train "${tiny[@]}" --set train.steps=8 --run-dir run --resume
check foreign-line-kept 0 '' -- test "$(tail -n 1 run/metrics.jsonl)" == 'my note'
cp metrics.orig run/metrics.jsonl
echo '{"event": "note", "step": 7, "text": "mine"}' >>run/metrics.jsonl
check foreign-record 1 "run/metrics.jsonl:$n: a line metalm does not write" -- \
  m train "${tiny[@]}" --set train.steps=8 --run-dir run --resume
cp metrics.orig run/metrics.jsonl

# ---- a state.json that does not hold together ---------------------------------------
cp -r run/checkpoints/step_00000006 step6.orig
/usr/bin/env python3 - run/checkpoints/step_00000006/state.json <<'PY'
import json, sys
s = json.load(open(sys.argv[1])); s["sampler"]["step"] = 1 << 62
json.dump(s, open(sys.argv[1], "w"))
PY
check corrupt-sampler-step 1 'step_00000006/state.json: "sampler"."step" is 4611686018427387904 but' -- \
  m eval --checkpoint run/checkpoints/step_00000006 --data data/val.bin
rm -r run/checkpoints/step_00000006 && cp -r step6.orig run/checkpoints/step_00000006

# ---- a bad input fails before the run directory exists ------------------------------
check missing-lens 1 'no-such-lens.safetensors' -- \
  m train "${tiny[@]}" --set analysis.every=1 --set analysis.lens=tuned:no-such-lens.safetensors --run-dir fresh
check missing-lens-no-debris 1 '' -- test -e fresh
check missing-data 1 'nodata' -- m train "${tiny[@]}" --set data.dir=nodata --run-dir fresh
check missing-data-no-debris 1 '' -- test -e fresh

# ---- an output never overlaps an input, --force or not --------------------------------
corpus_before=$(digest corpus)
check prepare-out-is-input 2 '^metalm: error: --out corpus and --input corpus are the same directory; .*--force or not' -- \
  m prepare --tokenizer byte --input corpus --out corpus --force
ln -s corpus clink
check prepare-through-link 2 '--out clink and --input corpus are the same directory' -- \
  m prepare --tokenizer byte --input corpus --out clink --force
mkdir outer && cp -r corpus outer/corpus
check prepare-out-holds-input 2 '--input is inside --out, which would be replaced' -- \
  m prepare --tokenizer byte --input outer/corpus --out outer --force
check prepare-out-inside-input 2 '--out is inside --input, which is read as a whole' -- \
  m prepare --tokenizer byte --input corpus --out corpus/tokens
check tokenizer-train-out-is-input 2 '--out corpus and --input corpus are the same directory' -- \
  m tokenizer-train --input corpus --vocab-size 300 --out corpus --force
check tokenizer-train 0 '' -- m tokenizer-train --input corpus --vocab-size 300 --out bpe
check prepare-out-is-tokenizer 2 '--out bpe and --tokenizer bpe are the same directory' -- \
  m prepare --tokenizer bpe:bpe --input corpus --out bpe --force
check tokenize-output-is-input 2 '--output corpus/file.hpp and --input corpus/file.hpp are the same file' -- \
  m tokenize --tokenizer byte --input corpus/file.hpp --output corpus/file.hpp --force
check corpus-untouched 0 '' -- test "$(digest corpus)" == "$corpus_before"
ckpt=run/checkpoints/step_00000006
check export-out-is-weights 2 "--out $ckpt/model.safetensors and --checkpoint $ckpt overlap: --out is inside" -- \
  m export --checkpoint "$ckpt" --out "$ckpt/model.safetensors" --force
check export-out-is-hf-config 2 '--hf-config w.safetensors and --out w.safetensors are the same path' -- \
  m export --checkpoint "$ckpt" --layout hf --out w.safetensors --hf-config w.safetensors
check lens-train-out-is-data 2 '--out data/train.bin and --data data/train.bin are the same file' -- \
  m lens-train --checkpoint "$ckpt" --data data/train.bin --out data/train.bin --force
check checkpoint-untouched 0 '' -- test "$(digest "$ckpt")" == "$(digest step6.orig)"
cp -r "$src/tests/golden/hf_gpt2/plain_f32" hf
check import-hf-out-is-from 2 '--out hf and --from hf are the same directory' -- m import-hf --from hf --out hf --force
mkdir hfout && cp -r hf hfout/hf
check import-hf-out-holds-from 2 '--from is inside --out' -- m import-hf --from hfout/hf --out hfout --force
check hf-untouched 0 '' -- test -f hf/model.safetensors -a -f hfout/hf/model.safetensors

# ---- a link at an output is never written through -----------------------------------
ln -s "$tmp/precious.txt" ids.txt
check output-symlink 2 '--output ids.txt is a symbolic link' -- \
  m tokenize --tokenizer byte --input corpus/file.hpp --output ids.txt --force
check output-symlink-target-untouched 0 '' -- grep -qx 'keep me' precious.txt

# ---- analyze and intervene never write over what they read ---------------------------
cp data/val.bin val.keep
check analyze-out-is-data 2 '--out val.keep and --data val.keep are the same file' -- \
  m analyze --checkpoint "$ckpt" --data val.keep --batches 1 --batch-size 1 --seq-len 8 --out val.keep --force
check analyze-out-in-checkpoint 2 'is inside --checkpoint' -- \
  m analyze --checkpoint "$ckpt" --data val.keep --batches 1 --batch-size 1 --seq-len 8 --out "$ckpt/a.json"
echo '1 2 3 4 5 6 7 8 9' >ids.keep
check intervene-out-is-ids 2 '--out ids.keep and --ids ids.keep are the same file' -- \
  m intervene --checkpoint "$ckpt" --ids ids.keep --seq-len 4 --out ids.keep --force
check inputs-untouched 0 '' -- cmp data/val.bin val.keep

# ---- an output directory that cannot be made is refused before any work --------------
echo 'a file' >plainfile
check prepare-out-under-a-file 2 'plainfile' -- m prepare --tokenizer byte --input corpus --out plainfile/data
check prepare-left-nothing 0 '' -- test ! -e plainfile/data

# ---- training sizes off by orders of magnitude fail before the run directory exists ----
check train-memory 2 'memory' -- m train "${tiny[@]}" --set model.d_model=65536 --set model.n_layer=64 --run-dir huge
check train-memory-left-nothing 1 '' -- test -e huge

# ---- what a command prints on standard output must get there ----------------------------
check stdout-full 1 '^metalm: error: cannot write to standard output' -- bash -c "'$bin' config keys >/dev/full"
finish
