#!/usr/bin/env bash
# CLI contract on a full disk: a run directory on a small tmpfs, filled up
# while a run is resumed. Whatever write fails (the next checkpoint, a log
# append, a rewrite at start-up), train stops with a one-line error naming
# the file and "No space left on device", the previous checkpoint is intact,
# no temporary and no partial log line is left, and once space is freed the
# run resumes and ends exactly like an uninterrupted run.
# Mounting needs root (CI runs as root): elsewhere the test skips, saying why.
# The body runs in a private mount namespace, so no mount outlives it.
# usage: full_disk.sh METALM_BIN SOURCE_DIR
set -u
if [[ ${METALM_FULL_DISK_NS:-} != 1 ]]; then
  if ! unshare --mount --propagation private true 2>/dev/null; then
    echo "SKIP full_disk: cannot create a private mount namespace here (needs root): nothing tested"
    exit 0
  fi
  exec unshare --mount --propagation private env METALM_FULL_DISK_NS=1 bash "$0" "$@"
fi
bin=$1 src=$2
source "$src/tests/cli/lib/harness.sh"
export OMP_WAIT_POLICY=passive
cd "$tmp"
mkdir disk
if ! mount -t tmpfs -o size=4m tmpfs disk 2>/dev/null; then
  echo "SKIP full_disk: mounting a tmpfs is not permitted here: nothing tested"
  exit 0
fi
trap 'cd /; umount "$tmp/disk" 2>/dev/null; rm -rf "$tmp"' EXIT

mkdir corpus
cp "$src"/include/metalm/*/*.hpp corpus/
check prepare 0 '' -- m prepare --tokenizer byte --input corpus --val-fraction 0.2 --out data
# A constant schedule: 10 steps and a resume to 20 are the same run as 20 straight.
run=(--config "$src/configs/tiny.json" --set data.dir=data --set train.schedule=constant --set train.eval_every=10
     --set train.ckpt_every=10 --set train.log_every=1)
check reference 0 '' -- m train "${run[@]}" --set train.steps=20 --run-dir ref

digest() { (cd "$1" && find . -type f -print0 | sort -z | xargs -0 sha256sum); }
free_bytes() { echo $(( $(stat -f -c '%a' disk) * $(stat -f -c '%S' disk) )); }
# fill KEEP: leave about KEEP bytes free on the tmpfs.
fill() {
  dd if=/dev/zero of=disk/fill bs=4096 2>/dev/null
  truncate -s "-$1" disk/fill
}
same_as_reference() {
  /usr/bin/env python3 - ref "$1" <<'PY'
import json, sys
def lines(run):
    out = []
    for line in open(f"{run}/metrics.jsonl"):
        j = json.loads(line)
        j.pop("tokens_per_s", None); j.pop("elapsed_s", None)
        out.append(j)
    return out
a, b = sys.argv[1], sys.argv[2]
w = "checkpoints/step_00000020/model.safetensors"
sys.exit(0 if lines(a) == lines(b) and open(f"{a}/{w}", "rb").read() == open(f"{b}/{w}", "rb").read() else 1)
PY
}
whole_lines() { [[ -z $(tail -c 1 "$1") ]] && /usr/bin/env python3 -c 'import json,sys; [json.loads(l) for l in open(sys.argv[1])]' "$1"; }

# keep: bytes left free. 160 KB: the metrics appends and start-up rewrites
# fit, the step-20 checkpoint (a 480 KB model) does not. 700 KB: the model
# fits, the optimizer archive (a 970 KB torch zip, whose writer once aborted
# the process on a failed write) does not. 4 KB: one page, so the first file
# that needs a second page fails, whichever it is.
declare -A says=(
  [163840]='^metalm: error: cannot write checkpoint disk/run_163840/checkpoints/step_00000020: .*: No space left on device$'
  [716800]='^metalm: error: cannot write checkpoint disk/run_716800/checkpoints/step_00000020: cannot write .*/optimizer.pt: No space left on device$'
  [4096]='^metalm: error: .*disk/run_4096/.*No space left on device$')
for keep in 163840 716800 4096; do
  d=disk/run_$keep
  check "train-to-10-$keep" 0 '' -- m train "${run[@]}" --set train.steps=10 --run-dir "$d"
  before=$(digest "$d/checkpoints/step_00000010")
  fill "$keep"
  check "disk-nearly-full-$keep" 0 '' -- test "$(free_bytes)" -le $((keep + 8192))
  check "stops-with-one-line-$keep" 1 "${says[$keep]}" -- \
    m train --run-dir "$d" --resume --set train.steps=20
  check "previous-checkpoint-intact-$keep" 0 '' -- test "$(digest "$d/checkpoints/step_00000010")" == "$before"
  check "no-temporaries-$keep" 0 '^$' -- bash -c "find '$d' -name '*.tmp-*' -o -name '*.old-*'"
  check "metrics-whole-lines-$keep" 0 '' -- whole_lines "$d/metrics.jsonl"
  check "analysis-whole-lines-$keep" 0 '' -- whole_lines "$d/analysis.jsonl"
  rm disk/fill
  check "resumes-after-freeing-$keep" 0 '' -- m train --run-dir "$d" --resume --set train.steps=20
  check "equals-uninterrupted-$keep" 0 '' -- same_as_reference "$d"
  rm -rf "$d"
done

# A failed export takes back the directories it made for its output.
fill 4096
check export-full-disk 1 'No space left on device' -- \
  m export --checkpoint ref/checkpoints/step_00000020 --out disk/fresh/sub/w.safetensors
check export-left-nothing 1 '' -- test -e disk/fresh
rm disk/fill
finish
