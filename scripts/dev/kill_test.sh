#!/usr/bin/env bash
# Crash injection: a tiny training run is killed with SIGKILL at random
# moments ROUNDS times, each time continued with `--resume` (or started again
# when no checkpoint exists yet), then run to the end. Every round must leave
# a run directory whose logs are whole lines and which resumes; at the end
# metrics.jsonl, analysis.jsonl, best.json and the final weights must equal
# those of an uninterrupted run (one thread, so bitwise).
#
#   scripts/dev/kill_test.sh [ROUNDS]      (default 15; prints the rounds survived)
#
# METALM_BIN (default build/apps/metalm) is the binary tested; KILL_SEED fixes
# the random kill times; KILL_MAX_DELAY (seconds, default 3) bounds them.
# Exit status 0 only when every round survived and the final run is equal.
set -u
rounds=${1:-15}
root=$(cd "$(dirname "$0")/../.." && pwd)
bin=${METALM_BIN:-$root/build/apps/metalm}
seed=${KILL_SEED:-$RANDOM}
max_delay=${KILL_MAX_DELAY:-3}
[[ $rounds =~ ^[1-9][0-9]*$ ]] || { echo "usage: scripts/dev/kill_test.sh [ROUNDS]" >&2; exit 2; }
[[ -x $bin ]] || { echo "kill_test: no metalm binary at $bin (build it, or set METALM_BIN)" >&2; exit 2; }
py=$(command -v python3) || { echo "kill_test: python3 is needed to compare the runs" >&2; exit 2; }

work=$(mktemp -d); trap 'kill -9 $pid 2>/dev/null; rm -rf "$work"' EXIT
pid=
export OMP_WAIT_POLICY=passive OMP_NUM_THREADS=1
m() { "$bin" --log-level error --threads 1 "$@"; }

mkdir -p "$work/corpus"
cp "$root"/include/metalm/*/*.hpp "$work/corpus/"
m prepare --tokenizer byte --input "$work/corpus" --val-fraction 0.2 --out "$work/data" || exit 1

# About 30 steps a round, so the kills land across the whole run: in start-up,
# in training steps, in evaluations, analyses and checkpoint writes.
steps=$((rounds * 30 < 90 ? 90 : rounds * 30))
cfg=(--config "$root/configs/tiny.json" --set "data.dir=$work/data" --set "train.steps=$steps"
     --set train.eval_every=20 --set train.ckpt_every=10 --set train.keep_last=2 --set train.log_every=1
     --set train.save_steps=0 --set analysis.every=50 --set analysis.batches=1 --set model.resid_dropout=0.1)

t0=$(date +%s.%N)
m train "${cfg[@]}" --run-dir "$work/reference" || { echo "kill_test: the uninterrupted run failed" >&2; exit 1; }
echo "uninterrupted run: $steps steps in $(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b - a}') s"

# Whole lines only: every line of the logs parses as JSON.
whole_lines() {
  "$py" - "$@" <<'PY'
import json, sys
for path in sys.argv[1:]:
    try:
        text = open(path).read()
    except FileNotFoundError:
        continue
    if text and not text.endswith("\n"):
        sys.exit(f"{path}: the last line is incomplete")
    for n, line in enumerate(text.splitlines(), 1):
        json.loads(line)
PY
}

# A step_N folder exists only once complete (it is renamed into place).
has_checkpoint() { ls "$run/checkpoints" 2>/dev/null | grep -qE '^step_[0-9]+$'; }

run=$work/run
RANDOM=$seed
survived=0
for ((r = 1; r <= rounds; r++)); do
  resume=()
  has_checkpoint && resume=(--resume)
  "$bin" --log-level error --threads 1 train "${cfg[@]}" --run-dir "$run" "${resume[@]}" >"$work/round.log" 2>&1 &
  pid=$!
  delay=$(awk -v r=$RANDOM -v max="$max_delay" 'BEGIN{printf "%.2f", 0.05 + (max - 0.05) * r / 32767}')
  sleep "$delay"
  if kill -9 "$pid" 2>/dev/null; then what="SIGKILL after $delay s"; else what="finished before the kill ($delay s)"; fi
  wait "$pid" 2>/dev/null
  rc=$?
  pid=
  last=$(ls "$run/checkpoints" 2>/dev/null | grep -E '^step_[0-9]+$' | tail -1)
  if [[ $rc -ne 0 && $rc -ne 137 ]]; then
    echo "round $r: $what: metalm failed (exit $rc): $(tail -1 "$work/round.log")"
  elif ! err=$(whole_lines "$run/metrics.jsonl" "$run/analysis.jsonl" 2>&1); then
    echo "round $r: $what: $err"
  else
    survived=$((survived + 1))
    echo "round $r: $what, newest checkpoint ${last:-none}: ok"
  fi
done

resume=()
has_checkpoint && resume=(--resume)
m train "${cfg[@]}" --run-dir "$run" "${resume[@]}" || { echo "kill_test: the final resume failed" >&2; exit 1; }

# The same run: every metric but the timings, the analyses, best.json and the
# final weights byte for byte.
same=$("$py" - "$work/reference" "$run" "$steps" <<'PY'
import json, sys
a, b, steps = sys.argv[1], sys.argv[2], int(sys.argv[3])
def lines(path):
    out = []
    for line in open(path):
        j = json.loads(line)
        for k in ("tokens_per_s", "elapsed_s"):
            j.pop(k, None)
        out.append(j)
    return out
problems = []
for name in ("metrics.jsonl", "analysis.jsonl"):
    if lines(f"{a}/{name}") != lines(f"{b}/{name}"):
        problems.append(name + " differs")
if json.load(open(f"{a}/best.json")) != json.load(open(f"{b}/best.json")):
    problems.append("best.json differs")
ckpt = "checkpoints/step_%08d/model.safetensors" % steps
if open(f"{a}/{ckpt}", "rb").read() != open(f"{b}/{ckpt}", "rb").read():
    problems.append("the final weights differ")
final = [j for j in lines(f"{b}/metrics.jsonl") if j["event"] == "train"][-1]
print("; ".join(problems) if problems else "final loss %.6f at step %d" % (final["loss"], final["step"]))
sys.exit(1 if problems else 0)
PY
)
equal=$?
echo "survived $survived/$rounds rounds (KILL_SEED=$seed); $([[ $equal -eq 0 ]] && echo "equal to the uninterrupted run: $same" || echo "NOT equal to the uninterrupted run: $same")"
[[ $survived -eq $rounds && $equal -eq 0 ]]
