#!/usr/bin/env bash
# CLI contract for data-parallel `metalm train`: two local ranks through
# scripts/experiments/launch_local.sh match one process with the same global batch;
# broken launches fail fast with one line naming the variable.
# usage: distributed.sh METALM_BIN SOURCE_DIR
set -u
bin=$1 src=$2
source "$src/tests/cli/lib/harness.sh"
mkdir -p "$tmp/corpus"
cp "$src"/include/metalm/*/*.hpp "$tmp/corpus/"
check prepare 0 '' -- m prepare --tokenizer byte --input "$tmp/corpus" --val-fraction 0.2 --out "$tmp/data"

tiny=(--set "data.dir=$tmp/data" --set train.steps=6 --set train.eval_every=3 --set train.ckpt_every=3
      --set train.log_every=1 --set analysis.every=0 --set dist.timeout_s=10)
check two-ranks 0 '' -- env METALM_BIN="$bin" THREADS=1 "$src/scripts/experiments/launch_local.sh" 2 "$src/configs/tiny.json" \
  "${tiny[@]}" --set train.batch_size=4 --run-dir "$tmp/two"
check one-rank 0 '' -- m train --config "$src/configs/tiny.json" "${tiny[@]}" --set train.batch_size=8 --run-dir "$tmp/one"
same_losses() {  # every logged loss within 1e-5, same steps
  /usr/bin/python3 - "$1" "$2" <<'PY'
import json, sys
def losses(p): return [(j["step"], j["loss"]) for j in map(json.loads, open(p)) if j["event"] == "train"]
a, b = losses(sys.argv[1]), losses(sys.argv[2])
ok = len(a) == len(b) > 0 and all(sa == sb and abs(la - lb) <= 1e-5 for (sa, la), (sb, lb) in zip(a, b))
sys.exit(0 if ok else print(a, b) or 1)
PY
}
check same-losses 0 '' -- same_losses "$tmp/one/metrics.jsonl" "$tmp/two/metrics.jsonl"
check allreduce-logged 0 '"allreduce_ms"' -- cat "$tmp/two/metrics.jsonl"

dist() { env -u RANK -u WORLD_SIZE -u MASTER_ADDR -u MASTER_PORT "$@"; }
check rank-too-big 2 'RANK = 2' -- dist RANK=2 WORLD_SIZE=2 MASTER_ADDR=127.0.0.1 MASTER_PORT=1 \
  "$bin" train --config "$src/configs/tiny.json" "${tiny[@]}" --run-dir "$tmp/bad"
check no-master 2 'MASTER_ADDR is not set' -- dist RANK=1 WORLD_SIZE=2 \
  "$bin" train --config "$src/configs/tiny.json" "${tiny[@]}" --run-dir "$tmp/bad"
port=$(/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
check unreachable 1 "could not reach the master at MASTER_ADDR=127.0.0.1 MASTER_PORT=$port" -- \
  dist RANK=1 WORLD_SIZE=2 MASTER_ADDR=127.0.0.1 MASTER_PORT=$port \
  "$bin" train --config "$src/configs/tiny.json" "${tiny[@]}" --set dist.timeout_s=1 --run-dir "$tmp/bad"
check nothing-written 1 '' -- test -e "$tmp/bad"

finish
