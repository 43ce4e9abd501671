#!/usr/bin/env bash
# metalm's training step against the same model in plain PyTorch
# (scripts/bench/bench_pytorch_model.py, Debian's python3-torch: the same libtorch),
# side by side: the runs are interleaved (A B C D, A B C D, ...) so the
# machine's drift hits every side alike, and medians are compared.
#
#   scripts/bench/bench_vs_pytorch.sh [--rounds R] [--steps N] [--threads T] [--configs byte,wider]
#                               [--precisions fp32,bf16] [--bin METALM]
#
# Configs: byte  = V257 L4 H4 d256 T256 B16;  wider = V257 L6 H6 d384 T256 B8.
# Each side runs in fp32 and in bf16 (autocast), with the same threads and
# OMP_WAIT_POLICY=passive. bf16 is left out by default on a CPU without
# native bf16 matmuls (no avx512_bf16 or amx_bf16 in /proc/cpuinfo: oneDNN
# then emulates them, 10-25x slower than fp32); --precisions forces a list. Printed per config: tokens/s of every side
# (median of R rounds), metalm's best over PyTorch's best, and the achieved
# model GFLOP/s beside the 1024x1024 matmul peak (fp32 and bf16) measured in
# the same run. Needs data/brown-byte (scripts/quickstart.sh or metalm prepare).
#
# PyTorch runs twice: at its defaults (the environment as it is, what a
# PyTorch user gets) and, as "pytorch+fixes", with the environment fixes
# metalm's launcher applies on this machine (OPENBLAS_CORETYPE,
# ATEN_CPU_CAPABILITY, as `metalm doctor --json` reports them; skipped when
# there are none). metalm's ratio is taken against the better of the two.
# Every side's BLAS kernel and ATen capability in force are printed.
set -euo pipefail
cd "$(dirname "$0")/../.."

rounds=3 steps=10 threads=2 configs=byte,wider bin=build/apps/metalm precisions=
while (($#)); do
  case $1 in
    --rounds) rounds=$2; shift 2 ;;
    --steps) steps=$2; shift 2 ;;
    --threads) threads=$2; shift 2 ;;
    --configs) configs=$2; shift 2 ;;
    --precisions) precisions=$2; shift 2 ;;
    --bin) bin=$2; shift 2 ;;
    -h|--help) sed -n '2,25p' "$0"; exit 0 ;;
    *) echo "bench_vs_pytorch: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
py=/usr/bin/python3
[[ -x $bin ]] || { echo "bench_vs_pytorch: no metalm binary at $bin (scripts/dev/build.sh)" >&2; exit 1; }
[[ -f data/brown-byte/train.bin ]] || { echo "bench_vs_pytorch: data/brown-byte/train.bin missing (metalm prepare, see README)" >&2; exit 1; }
$py -c 'import torch' 2>/dev/null || { echo "bench_vs_pytorch: $py has no torch (apt-get install python3-torch)" >&2; exit 1; }
export OMP_WAIT_POLICY=passive
if [[ -z $precisions ]]; then
  if grep -qwE 'avx512_bf16|amx_bf16' /proc/cpuinfo; then
    precisions=fp32,bf16
  else
    precisions=fp32
    echo "bench_vs_pytorch: this CPU has no native bf16 matmul (no avx512_bf16/amx_bf16): fp32 only (--precisions fp32,bf16 to run bf16 anyway)" >&2
  fi
fi
for p in ${precisions//,/ }; do
  [[ $p == fp32 || $p == bf16 ]] || { echo "bench_vs_pytorch: unknown precision $p (fp32, bf16)" >&2; exit 2; }
done

# The variables metalm's launcher sets for metalm-tensor on this machine
# (none where OpenBLAS's own kernel is right or the user set them): the
# environment of the pytorch+fixes side.
fixes=$("$bin" --log-level warn --threads "$threads" doctor --json --seconds 0.01 | $py -c '
import json, sys
d = json.load(sys.stdin)
out = []
if d["blas"]["kernel_set_by"] == "metalm": out.append("OPENBLAS_CORETYPE=" + d["blas"]["kernel"])
if d["aten_capability"]["set_by"] == "metalm": out.append("ATEN_CPU_CAPABILITY=" + d["aten_capability"]["in_force"])
print(" ".join(out))')
sides="pytorch"
if [[ -n $fixes ]]; then
  sides="pytorch pytorch+fixes"
  echo "bench_vs_pytorch: pytorch+fixes runs with $fixes" >&2
else
  echo "bench_vs_pytorch: metalm changes nothing in the environment here, so PyTorch's defaults are its fixed side too" >&2
fi

# One result line from a side's JSON: tokens/s and what it ran on.
row() {
  $py -c 'import json, sys
o = json.loads(sys.argv[3]); r = o.get("runtime", {})
print(json.dumps({"config": sys.argv[1], "side": sys.argv[2], "precision": o["precision"],
                  "tokens_per_s": o["tokens_per_s"], "blas_kernel": r.get("blas", {}).get("kernel", ""),
                  "aten_capability": r.get("aten_capability", "")}))' "$@"
}

# name: vocab layers heads d_model seq batch
declare -A shape=([byte]="257 4 4 256 256 16" [wider]="257 6 6 384 256 8")
results=$(mktemp); trap 'rm -f "$results"' EXIT

for ((r = 1; r <= rounds; r++)); do
  echo "round $r/$rounds" >&2
  peak=$($py scripts/bench/bench_pytorch_model.py --peak --threads "$threads")
  echo "{\"config\":\"peak\",$(cut -c2- <<<"$peak")" >>"$results"
  for c in ${configs//,/ }; do
    [[ -n ${shape[$c]:-} ]] || { echo "bench_vs_pytorch: unknown config $c (byte, wider)" >&2; exit 2; }
    read -r V L H D T B <<<"${shape[$c]}"
    for p in ${precisions//,/ }; do
      out=$("$bin" --log-level warn --threads "$threads" bench train --config configs/tiny.json \
        --set name="$c" --set data.dir=data/brown-byte --set model.vocab_size="$V" --set model.n_layer="$L" \
        --set model.n_head="$H" --set model.d_model="$D" --set model.context="$T" --set train.batch_size="$B" \
        --steps "$steps" --precision "$p")
      row "$c" metalm "$out" >>"$results"
      for side in $sides; do
        env_fixes=()
        [[ $side == pytorch+fixes ]] && read -ra env_fixes <<<"$fixes"
        out=$(env "${env_fixes[@]}" $py scripts/bench/bench_pytorch_model.py --vocab "$V" --layers "$L" --heads "$H" \
          --d-model "$D" --seq "$T" --batch "$B" --steps "$steps" --precision "$p" --threads "$threads")
        row "$c" "$side" "$out" >>"$results"
      done
    done
  done
done

$py - "$results" "$configs" "$precisions" <<'EOF'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
shapes = {"byte": (257, 4, 4, 256, 256, 16), "wider": (257, 6, 6, 384, 256, 8)}
med = statistics.median
peak32 = med(r["fp32_gflops"] for r in rows if r["config"] == "peak")
peak16 = med(r["bf16_gflops"] for r in rows if r["config"] == "peak")
print(f"matmul peak (1024x1024, median of {sum(r['config'] == 'peak' for r in rows)}): "
      f"fp32 {peak32:.0f} GFLOP/s, bf16 {peak16:.0f} GFLOP/s")
for c in sys.argv[2].split(","):
    V, L, H, d, T, B = shapes[c]
    # Model FLOPs per token: 6 x matmul parameters (forward + backward) plus
    # attention's scores and weighted sums (12 T d per layer, causal mask not
    # subtracted), the same count for both sides.
    flops_per_token = 6 * (L * 12 * d * d + V * d) + 12 * L * T * d
    print(f"\n{c}: V{V} L{L} H{H} d{d} T{T} B{B}, {flops_per_token * B * T / 1e9:.1f} GFLOP per step")
    tps = {}
    for side in ("metalm", "pytorch", "pytorch+fixes"):
        for p in sys.argv[3].split(","):
            runs = [r for r in rows if r["config"] == c and r.get("side") == side and r["precision"] == p]
            if not runs:
                continue
            v = [r["tokens_per_s"] for r in runs]
            tps[side, p] = med(v)
            ran_on = sorted({f"kernel {r['blas_kernel'] or '-'}, ATen {r['aten_capability'] or '-'}" for r in runs})
            print(f"  {side:13s} {p}  {med(v):8.0f} tokens/s  {med(v) * flops_per_token / 1e9:6.1f} GFLOP/s"
                  f"  (runs: {', '.join(f'{x:.0f}' for x in v)}; {'; '.join(ran_on)})")
    best_py, py_side = max((v, f"{side} {p}") for (side, p), v in tps.items() if side.startswith("pytorch"))
    best_m = max(v for (side, _), v in tps.items() if side == "metalm")
    print(f"  metalm best / PyTorch best ({py_side}) = {best_m / best_py:.2f}x ({sys.argv[3]})")
EOF
