#!/usr/bin/env bash
# Benchmark: wall time and peak memory (max RSS) of importing a GPT-2-small-
# shaped checkpoint (124M parameters, random weights, F32, written like the
# real gpt2 upload) and of analysing it on 512 tokens, block and sublayer.
#   scripts/bench/bench_import_hf.sh [WORK_DIR]      (default /tmp/metalm-bench-hf; ~1.5 GB of files)
# Environment: METALM_BIN (default build/apps/metalm), THREADS (default: all cores).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
bin=${METALM_BIN:-$root/build/apps/metalm}
work=${1:-/tmp/metalm-bench-hf}
threads=${THREADS:-0}
mkdir -p "$work"
[[ -x $bin ]] || { echo "bench_import_hf: no binary $bin (run scripts/dev/build.sh)" >&2; exit 2; }

if [[ ! -f $work/gpt2-small-random/model.safetensors ]]; then
  /usr/bin/python3 "$root/tests/golden/make_hf_gpt2_golden.py" --random-gpt2-small "$work/gpt2-small-random" >&2
fi
# 513 ids: 512 analysed positions, each with its next token.
/usr/bin/python3 -c 'import random; r = random.Random(0); print(" ".join(str(r.randrange(50257)) for _ in range(513)))' \
  >"$work/ids.txt"

measure() {  # measure LABEL command...: prints "LABEL  wall s  peak MB"
  local label=$1; shift
  /usr/bin/time -f '%e %M' -o "$work/time.txt" "$@" >/dev/null 2>"$work/$label.log" ||
    { cat "$work/$label.log" >&2; exit 1; }
  read -r wall rss <"$work/time.txt"
  printf '%-22s %8.2f s  %8.0f MB peak RSS\n' "$label" "$wall" "$((rss / 1024))"
}

echo "metalm $("$bin" --version | cut -d' ' -f2), $(nproc) cores, threads=$threads, $(du -m "$work/gpt2-small-random/model.safetensors" | cut -f1) MB model.safetensors"
measure import-hf "$bin" --threads "$threads" import-hf --from "$work/gpt2-small-random" --out "$work/ckpt" --force
measure eval-512 "$bin" --threads "$threads" eval --checkpoint "$work/ckpt" --ids "$work/ids.txt"
for g in block sublayer; do
  measure "analyze-512-$g" "$bin" --threads "$threads" analyze --checkpoint "$work/ckpt" --ids "$work/ids.txt" \
    --seq-len 512 --batch-size 1 --batches 1 --granularity "$g" --out "$work/analysis_$g.json" --force
done
measure export-hf "$bin" --threads "$threads" export --checkpoint "$work/ckpt" --layout hf --out "$work/export/model.safetensors" --force
