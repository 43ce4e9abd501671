#!/usr/bin/env bash
# CLI contract for `metalm doctor`: the text report's lines, and --json's keys
# and types (never its timings); the launcher's record of the kernel choice
# (a value the user set wins); its option errors.
# usage: doctor.sh METALM_BIN SOURCE_DIR
set -u
bin=$1 src=$2
source "$src/tests/cli/lib/harness.sh"
py=$(command -v python3 || true)

check text 0 '^blas kernel ' -- m doctor --seconds 0.01
check text-precision 0 '^precision auto   (fp32|bf16)' -- m doctor --seconds 0.01
check bad-seconds 2 'seconds' -- m doctor --seconds 0
check unknown-option 2 'bogus' -- m doctor --bogus

# The JSON: every key with its type.
m doctor --json --seconds 0.01 >"$tmp/doctor.json" 2>"$tmp/doctor.err"
check json-exit 0 '' -- test -s "$tmp/doctor.json"
if [[ -n $py ]]; then
  check json-keys-and-types 0 '^keys ok$' -- "$py" - "$tmp/doctor.json" <<'EOF'
import json, sys
d = json.load(open(sys.argv[1]))
num = (int, float)
want = {
    ("format",): str, ("version",): int,
    ("cpu", "model"): str, ("cpu", "isa"): str, ("cpu", "flags"): list, ("cpu", "native_bf16"): bool,
    ("threads", "intra_op"): int, ("threads", "hardware"): int,
    ("blas", "library"): str, ("blas", "config"): str, ("blas", "kernel"): str, ("blas", "kernel_detected"): str,
    ("blas", "kernel_set_by"): str, ("blas", "kernel_reason"): str,
    ("aten_capability", "in_force"): str, ("aten_capability", "set_by"): str, ("aten_capability", "reason"): str,
    ("gemm_peak_gflops", "fp32"): num, ("gemm_peak_gflops", "bf16"): num, ("gemm_peak_gflops", "size"): int,
    ("gemm_peak_gflops", "seconds"): num,
    ("auto_precision", "choice"): str, ("auto_precision", "model"): str, ("auto_precision", "cached"): bool,
    ("auto_precision", "reason"): str,
    ("precision_cache",): str, ("warnings",): list,
}
for path, t in want.items():
    v = d
    for k in path:
        assert isinstance(v, dict) and k in v, f"missing {'.'.join(path)}"
        v = v[k]
    assert isinstance(v, t) and not (t is int and isinstance(v, bool)), f"{'.'.join(path)}: {v!r} is not {t}"
assert d["format"] == "metalm-doctor" and d["version"] == 1
assert d["cpu"]["isa"] in ("baseline", "avx2", "avx512")
assert d["auto_precision"]["choice"] in ("fp32", "bf16")
for k in ("fp32_gflops", "bf16_gflops"):
    v = d["auto_precision"][k]
    assert v is None or (isinstance(v, num) and v > 0), f"auto_precision.{k}: {v!r}"
assert d["gemm_peak_gflops"]["fp32"] > 0 and d["gemm_peak_gflops"]["bf16"] > 0
assert d["blas"]["kernel_set_by"] in ("library", "user", "metalm")
assert d["aten_capability"]["set_by"] in ("library", "user", "metalm")
assert all(isinstance(w, str) and "\n" not in w for w in d["warnings"])
print("keys ok")
EOF
  # Where the BLAS is OpenBLAS, a kernel the user set is the one in force,
  # and the record says the user set it. The kernel set is the one already in
  # force: another could be wrong or crash on this CPU.
  kernel=$("$py" -c 'import json,sys; print(json.load(open(sys.argv[1]))["blas"]["kernel"])' "$tmp/doctor.json")
  if [[ -n $kernel ]]; then
    OPENBLAS_CORETYPE=$kernel m doctor --json --seconds 0.01 >"$tmp/user.json"
    check user-kernel-wins 0 "^user $kernel\$" -- "$py" -c '
import json, sys
b = json.load(open(sys.argv[1]))["blas"]
print(b["kernel_set_by"], b["kernel"])' "$tmp/user.json"
  fi
fi
finish
