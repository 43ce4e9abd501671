#!/usr/bin/env bash
# CLI contract for `metalm train`, `eval` and `generate`: a tiny run on a tiny
# dataset prepared here, resume refused/accepted, one-line errors, exit codes.
# usage: train.sh METALM_BIN SOURCE_DIR
set -u
bin=$1 src=$2
source "$src/tests/cli/lib/harness.sh"

# A small corpus: the library's headers, one document per file.
mkdir -p "$tmp/corpus"
cp "$src"/include/metalm/*/*.hpp "$tmp/corpus/"
check prepare 0 '' -- m prepare --tokenizer byte --input "$tmp/corpus" --val-fraction 0.2 --out "$tmp/data"

tiny=(--config "$src/configs/tiny.json" --set "data.dir=$tmp/data" --set train.steps=6 --set train.eval_every=3
      --set train.ckpt_every=3 --set train.log_every=1 --set analysis.every=3 --set train.save_steps=0)
check train 0 '' -- m train "${tiny[@]}" --run-dir "$tmp/run"
check metrics 0 '"event":"eval","step":6' -- cat "$tmp/run/metrics.jsonl"
check train-lines 0 '^6$' -- bash -c "grep -c '\"event\":\"train\"' '$tmp/run/metrics.jsonl'"
check analysis-lines 0 '^3$' -- bash -c "wc -l <'$tmp/run/analysis.jsonl'"
check checkpoint-final 0 '"step": 6' -- cat "$tmp/run/checkpoints/step_00000006/state.json"
check checkpoint-step0 0 '"step": 0' -- cat "$tmp/run/checkpoints/step_00000000/state.json"
check refuse-existing 2 'already has checkpoints.*--resume' -- m train "${tiny[@]}" --run-dir "$tmp/run"
check resume 0 '' -- m train --run-dir "$tmp/run" --resume --set train.steps=8
check resumed-to-8 0 '"step": 8' -- cat "$tmp/run/checkpoints/step_00000008/state.json"
check resume-nothing 2 'nothing to resume' -- m train "${tiny[@]}" --run-dir "$tmp/empty" --resume
check train-no-config 2 'needs --config' -- m train --run-dir "$tmp/none"
check diverge 1 'non-finite .* at step [0-9]+.*step_00000000' -- \
  m train "${tiny[@]}" --set train.lr=1e6 --set train.warmup_steps=0 --set train.grad_clip=0 --set train.steps=50 \
  --set train.ckpt_every=100 --set train.eval_every=100 --set analysis.every=0 --run-dir "$tmp/nan"
check diverge-kept 0 '^step_00000000$' -- ls "$tmp/nan/checkpoints"

check eval-data 0 '^\{"loss":[0-9.]+,"ppl":[0-9.]+,"tokens":[0-9]+\}$' -- m eval --checkpoint "$tmp/run" --data "$tmp/data/val.bin"
printf 'The model reads this text.\n' >"$tmp/t.txt"
check eval-text 0 '"tokens":26\}' -- m eval --checkpoint "$tmp/run" --text "$tmp/t.txt"
printf '1 2 3\n 4 5 6 7 8 9 10\t11\n' >"$tmp/ids.txt"
check eval-ids 0 '"tokens":10\}' -- m eval --checkpoint "$tmp/run/checkpoints/step_00000006" --ids "$tmp/ids.txt" --stride 4
printf '1 2 999\n' >"$tmp/bad_ids.txt"
check eval-ids-range 1 'token id 999 .*outside the model.s vocabulary \[0, 257\)' -- m eval --checkpoint "$tmp/run" --ids "$tmp/bad_ids.txt"
printf '1 x 2\n' >"$tmp/junk_ids.txt"
check eval-ids-junk 1 '"x" at byte 2 is not a token id' -- m eval --checkpoint "$tmp/run" --ids "$tmp/junk_ids.txt"
check eval-no-input 2 'needs one of --data' -- m eval --checkpoint "$tmp/run"
check eval-two-inputs 2 'excludes' -- m eval --checkpoint "$tmp/run" --ids "$tmp/ids.txt" --text "$tmp/t.txt"
check eval-missing-ckpt 1 'checkpoint not found' -- m eval --checkpoint "$tmp/nope" --ids "$tmp/ids.txt"
check eval-bad-stride 2 '--stride 999 is longer than the context of .* \(64 tokens\)' -- m eval --checkpoint "$tmp/run" --ids "$tmp/ids.txt" --stride 999

check generate 0 '^The jury' -- m generate --checkpoint "$tmp/run" --prompt "The jury" --max-new-tokens 20 --seed 3
a=$(m generate --checkpoint "$tmp/run" --prompt "Hi" --max-new-tokens 30 --seed 5)
b=$(m generate --checkpoint "$tmp/run" --prompt "Hi" --max-new-tokens 30 --seed 5)
check generate-seeded 0 '' -- test "$a" == "$b"
check generate-greedy 0 '' -- m generate --checkpoint "$tmp/run" --prompt "" --temperature 0 --max-new-tokens 5
check generate-bad-temp 2 'temperature' -- m generate --checkpoint "$tmp/run" --prompt x --temperature -1
check generate-missing 1 'checkpoint not found' -- m generate --checkpoint "$tmp/nope" --prompt x

finish
