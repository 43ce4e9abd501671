#!/usr/bin/env bash
# CLI contract for `metalm import-hf` and `metalm export`: import the golden
# Hugging Face GPT-2 directories, evaluate the result (its loss must equal the
# one computed from the independent golden logits), export in HF layout and
# import again, and one-line errors for bad inputs.
# usage: import_hf.sh METALM_BIN SOURCE_DIR
set -u
bin=$1 src=$2
source "$src/tests/cli/lib/harness.sh"
golden=$src/tests/golden
export OMP_WAIT_POLICY=passive
same_loss() {  # same_loss NAME EVAL_JSON: loss equals the golden one within 1e-4
  if /usr/bin/python3 -c "import json,sys; a=json.loads(sys.argv[1])['loss']; b=float(sys.argv[2]); sys.exit(abs(a-b) > 1e-4)" "$2" "$expected"; then
    echo "ok   $1"; passed=$((passed+1))
  else
    echo "FAIL $1: eval said $2, golden loss is $expected"; fails=$((fails+1))
  fi
}

# Row 0 of the golden tokens, and the mean next-token CE of the golden logits on it.
read -r expected < <(/usr/bin/python3 - "$golden/hf_gpt2_golden.safetensors" "$tmp/ids.txt" <<'PY'
import json, struct, sys
import numpy as np
raw = open(sys.argv[1], "rb").read()
n = struct.unpack("<Q", raw[:8])[0]
head = json.loads(raw[8:8 + n])
def get(name, dt):
    e = head[name]; b, f = e["data_offsets"]
    return np.frombuffer(raw[8 + n + b:8 + n + f], dtype=dt).reshape(e["shape"])
tokens, logits = get("tokens", "<i8")[0], get("logits", "<f8")[0]
open(sys.argv[2], "w").write(" ".join(map(str, tokens)) + "\n")
z = logits[:-1] - logits[:-1].max(-1, keepdims=True)
logp = z - np.log(np.exp(z).sum(-1, keepdims=True))
print(-logp[np.arange(len(tokens) - 1), tokens[1:]].mean())
PY
)

check import-plain 0 "$tmp/plain" -- "$bin" import-hf --from "$golden/hf_gpt2/plain_f32" --out "$tmp/plain"
check import-records-source 0 '"source": "import-hf"' -- cat "$tmp/plain/state.json"
same_loss eval-plain "$("$bin" eval --checkpoint "$tmp/plain" --ids "$tmp/ids.txt" 2>/dev/null)"
check import-prefixed-f16 0 "" -- "$bin" import-hf --from "$golden/hf_gpt2/prefixed_f16/" --out "$tmp/f16"
same_loss eval-prefixed-f16 "$("$bin" eval --checkpoint "$tmp/f16" --ids "$tmp/ids.txt" 2>/dev/null)"

check export-hf 0 "" -- "$bin" export --checkpoint "$tmp/plain" --layout hf --out "$tmp/hf/model.safetensors" --hf-config "$tmp/hf/config.json"
check export-metalm 0 "" -- "$bin" export --checkpoint "$tmp/plain" --out "$tmp/ours.safetensors"
check reimport-export 0 "" -- "$bin" import-hf --from "$tmp/hf" --out "$tmp/again"
same_loss eval-reimported "$("$bin" eval --checkpoint "$tmp/again" --ids "$tmp/ids.txt" 2>/dev/null)"

check missing-dir 1 'huggingface-cli download gpt2' -- "$bin" import-hf --from "$tmp/nope" --out "$tmp/x"
mkdir -p "$tmp/pythia"
echo '{"architectures": ["GPTNeoXForCausalLM"], "model_type": "gpt_neox"}' >"$tmp/pythia/config.json"
check other-architecture 2 'GPTNeoXForCausalLM.*not supported' -- "$bin" import-hf --from "$tmp/pythia" --out "$tmp/x"
mkdir -p "$tmp/trunc"; cp "$golden/hf_gpt2/plain_f32/config.json" "$tmp/trunc/"
head -c 20000 "$golden/hf_gpt2/plain_f32/model.safetensors" >"$tmp/trunc/model.safetensors"
check truncated 1 'model.safetensors.*truncated' -- "$bin" import-hf --from "$tmp/trunc" --out "$tmp/x"
check no-partial-checkpoint 1 '' -- test -e "$tmp/x"
check bad-layout 2 'layout' -- "$bin" export --checkpoint "$tmp/plain" --layout torch --out "$tmp/y.safetensors"
check hf-config-needs-hf-layout 2 'needs --layout hf' -- "$bin" export --checkpoint "$tmp/plain" --out "$tmp/y.safetensors" --hf-config "$tmp/c.json"
finish
