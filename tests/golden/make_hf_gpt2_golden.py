#!/usr/bin/env python3
"""Golden reference for `metalm import-hf`: tiny Hugging Face GPT-2 checkpoint
directories plus the logits and per-layer states of an independent forward pass
(run with Debian's /usr/bin/python3 + python3-torch; `transformers` is not
needed: GPT-2's forward is written here in plain torch following Hugging Face's
modeling_gpt2.py: Conv1D y = x @ W + b with W stored [in, out], gelu_new,
pre-LN blocks, the causal mask buffer, the head tied to wte).

Writes, under OUT (default: tests/golden next to this script):
  hf_gpt2/plain_f32/      config.json + model.safetensors: GPT2Model keys (no prefix),
                          F32, with the h.N.attn.bias / h.N.attn.masked_bias buffers
                          that older checkpoints carry (as the original gpt2 upload)
  hf_gpt2/prefixed_f16/   "transformer." keys + the tied lm_head.weight copy, F16,
                          bool mask buffers
  hf_gpt2/prefixed_bf16/  "transformer." keys, BF16, no buffers (modern save_pretrained)
  hf_gpt2_golden.safetensors
      tokens                  I64 [B, T]
      logits                  F64 [B, T, V]
      blocks.<l>.resid_pre / resid_mid / resid_post   F64 [B, T, d]  (metalm site names)
      final                   F64 [B, T, d]  before ln_f
      hidden_states.<k>       F64 [B, T, d]  what HF's output_hidden_states returns
                              (k = 0..L; the last one is after ln_f)
All three directories hold the same weights: values are rounded so that F32,
F16 and BF16 store them exactly, so one golden output serves every dtype.

  /usr/bin/python3 tests/golden/make_hf_gpt2_golden.py [OUT]
  /usr/bin/python3 tests/golden/make_hf_gpt2_golden.py --random-gpt2-small DIR
      (benchmark input: a GPT-2-small-shaped (124M parameters) random checkpoint,
       F32, no prefix, with the mask buffers, like the real gpt2 upload)
"""
import json
import math
import os
import struct
import sys

import torch

CONFIG = {
    "activation_function": "gelu_new",
    "architectures": ["GPT2LMHeadModel"],
    "attn_pdrop": 0.1,
    "bos_token_id": 60,
    "embd_pdrop": 0.1,
    "eos_token_id": 60,
    "initializer_range": 0.02,
    "layer_norm_epsilon": 1e-05,
    "model_type": "gpt2",
    "n_ctx": 16,
    "n_embd": 16,
    "n_head": 4,
    "n_inner": 40,
    "n_layer": 2,
    "n_positions": 16,
    "resid_pdrop": 0.1,
    "summary_activation": None,
    "summary_first_dropout": 0.1,
    "summary_proj_to_labels": True,
    "summary_type": "cls_index",
    "summary_use_proj": True,
    "task_specific_params": {"text-generation": {"do_sample": True, "max_length": 50}},
    "torch_dtype": "float32",
    "transformers_version": "4.36.2",
    "vocab_size": 61,
}
BATCH, SEQ = 2, 11

DTYPES = {torch.float64: "F64", torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16",
          torch.int64: "I64", torch.bool: "BOOL"}


def hf_shapes(c):
    """GPT2Model parameter names (no prefix) and shapes as Hugging Face stores them."""
    d, V, m = c["n_embd"], c["vocab_size"], c["n_inner"] or 4 * c["n_embd"]
    s = {"wte.weight": (V, d), "wpe.weight": (c["n_positions"], d)}
    for l in range(c["n_layer"]):
        h = "h.%d." % l
        s[h + "ln_1.weight"] = (d,)
        s[h + "ln_1.bias"] = (d,)
        s[h + "attn.c_attn.weight"] = (d, 3 * d)  # Conv1D: [in, out]
        s[h + "attn.c_attn.bias"] = (3 * d,)
        s[h + "attn.c_proj.weight"] = (d, d)
        s[h + "attn.c_proj.bias"] = (d,)
        s[h + "ln_2.weight"] = (d,)
        s[h + "ln_2.bias"] = (d,)
        s[h + "mlp.c_fc.weight"] = (d, m)
        s[h + "mlp.c_fc.bias"] = (m,)
        s[h + "mlp.c_proj.weight"] = (m, d)
        s[h + "mlp.c_proj.bias"] = (d,)
    s["ln_f.weight"] = (d,)
    s["ln_f.bias"] = (d,)
    return s


def exact_in_half_types(t):
    """Rounds to BF16, then zeroes what F16 could only hold as a subnormal, so the
    value is the same in F32, F16 and BF16."""
    t = t.to(torch.bfloat16).double()
    t[t.abs() < 2.0 ** -14] = 0.0
    assert torch.equal(t.half().double(), t) and torch.equal(t.bfloat16().double(), t)
    return t


def draw_weights(c, gen):
    w = {}
    for name, shape in hf_shapes(c).items():
        r = torch.randn(shape, generator=gen, dtype=torch.float64)
        if name.endswith(".bias"):
            t = 0.1 * r
        elif ".ln_" in name or name.startswith("ln_"):
            t = 1.0 + 0.2 * r  # gains far from 1 so a swapped weight/bias shows
        elif name in ("wte.weight", "wpe.weight"):
            t = 0.8 * r
        else:
            t = r / math.sqrt(shape[0])  # Conv1D [in, out]: unit-variance outputs
        w[name] = exact_in_half_types(t)
    return w


# ---- the forward pass, after Hugging Face's GPT2Model / GPT2LMHeadModel -------

def conv1d(x, w, b):
    """transformers.pytorch_utils.Conv1D: addmm(bias, x, weight), weight [nx, nf]."""
    size_out = x.size()[:-1] + (w.size(-1),)
    return torch.addmm(b, x.reshape(-1, x.size(-1)), w).view(size_out)


def layer_norm(x, g, b, eps):
    mu = x.mean(-1, keepdim=True)
    var = ((x - mu) ** 2).mean(-1, keepdim=True)
    return (x - mu) / torch.sqrt(var + eps) * g + b


def gelu_new(x):
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * torch.pow(x, 3.0))))


def attn(c, x, w, h, bias_buffer):
    B, T, d = x.shape
    H = c["n_head"]
    hs = d // H
    q, k, v = conv1d(x, w[h + "attn.c_attn.weight"], w[h + "attn.c_attn.bias"]).split(d, dim=2)
    split = lambda t: t.view(B, T, H, hs).permute(0, 2, 1, 3)  # [B, H, T, hs]
    q, k, v = split(q), split(k), split(v)
    a = torch.matmul(q, k.transpose(-1, -2)) / (v.size(-1) ** 0.5)
    causal = bias_buffer[:, :, :T, :T].bool()
    a = torch.where(causal, a, torch.tensor(torch.finfo(a.dtype).min, dtype=a.dtype))
    a = torch.softmax(a, dim=-1)
    y = torch.matmul(a, v).permute(0, 2, 1, 3).contiguous().view(B, T, d)  # merge heads
    return conv1d(y, w[h + "attn.c_proj.weight"], w[h + "attn.c_proj.bias"])


def forward(c, w, tokens):
    B, T = tokens.shape
    eps = c["layer_norm_epsilon"]
    P = c["n_positions"]
    bias_buffer = torch.tril(torch.ones((P, P), dtype=torch.bool)).view(1, 1, P, P)
    out, hidden = {}, []
    x = w["wte.weight"][tokens] + w["wpe.weight"][torch.arange(T)][None]
    for l in range(c["n_layer"]):
        h = "h.%d." % l
        hidden.append(x)
        out["blocks.%d.resid_pre" % l] = x
        x = x + attn(c, layer_norm(x, w[h + "ln_1.weight"], w[h + "ln_1.bias"], eps), w, h, bias_buffer)
        out["blocks.%d.resid_mid" % l] = x
        m = conv1d(layer_norm(x, w[h + "ln_2.weight"], w[h + "ln_2.bias"], eps),
                   w[h + "mlp.c_fc.weight"], w[h + "mlp.c_fc.bias"])
        x = x + conv1d(gelu_new(m), w[h + "mlp.c_proj.weight"], w[h + "mlp.c_proj.bias"])
        out["blocks.%d.resid_post" % l] = x
    out["final"] = x
    x = layer_norm(x, w["ln_f.weight"], w["ln_f.bias"], eps)
    hidden.append(x)  # HF applies ln_f before adding the last hidden state
    for k, t in enumerate(hidden):
        out["hidden_states.%d" % k] = t
    out["logits"] = torch.matmul(x, w["wte.weight"].t())  # tied lm_head, no bias
    return out


# ---- files --------------------------------------------------------------------

def write_safetensors(path, tensors, metadata=None):
    header, blobs, offset = {}, [], 0
    if metadata:
        header["__metadata__"] = metadata
    for name in sorted(tensors):
        t = tensors[name].contiguous()
        raw = t.view(torch.int16) if t.dtype in (torch.float16, torch.bfloat16) else t
        blob = raw.numpy().astype(raw.numpy().dtype.newbyteorder("<")).tobytes()
        header[name] = {"dtype": DTYPES[t.dtype], "shape": list(t.shape),
                        "data_offsets": [offset, offset + len(blob)]}
        blobs.append(blob)
        offset += len(blob)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * ((8 - (8 + len(text)) % 8) % 8)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for blob in blobs:
            f.write(blob)
    os.replace(tmp, path)


def write_checkpoint(dirname, c, w, dtype, prefix, buffers, lm_head_copy):
    os.makedirs(dirname, exist_ok=True)
    P = c["n_positions"]
    tensors = {prefix + k: t.to(dtype) for k, t in w.items()}
    for l in range(c["n_layer"]):
        if buffers == "f32":
            tensors["%sh.%d.attn.bias" % (prefix, l)] = torch.tril(torch.ones(P, P)).view(1, 1, P, P)
            tensors["%sh.%d.attn.masked_bias" % (prefix, l)] = torch.tensor(-1e4)
        elif buffers == "bool":
            tensors["%sh.%d.attn.bias" % (prefix, l)] = torch.tril(torch.ones(P, P, dtype=torch.bool)).view(1, 1, P, P)
    if lm_head_copy:
        tensors["lm_head.weight"] = w["wte.weight"].to(dtype)
    cfg = dict(c, torch_dtype={torch.float32: "float32", torch.float16: "float16", torch.bfloat16: "bfloat16"}[dtype])
    with open(os.path.join(dirname, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2, sort_keys=True)
        f.write("\n")
    write_safetensors(os.path.join(dirname, "model.safetensors"), tensors, {"format": "pt"})


def make_golden(out_dir):
    torch.set_default_dtype(torch.float64)
    gen = torch.Generator().manual_seed(2024)
    w = draw_weights(CONFIG, gen)
    tokens = torch.randint(0, CONFIG["vocab_size"], (BATCH, SEQ), generator=gen)
    with torch.no_grad():
        out = forward(CONFIG, w, tokens)
    base = os.path.join(out_dir, "hf_gpt2")
    write_checkpoint(os.path.join(base, "plain_f32"), CONFIG, w, torch.float32, "", "f32", False)
    write_checkpoint(os.path.join(base, "prefixed_f16"), CONFIG, w, torch.float16, "transformer.", "bool", True)
    write_checkpoint(os.path.join(base, "prefixed_bf16"), CONFIG, w, torch.bfloat16, "transformer.", None, False)
    golden = {"tokens": tokens.to(torch.int64)}
    golden.update(out)
    path = os.path.join(out_dir, "hf_gpt2_golden.safetensors")
    write_safetensors(path, golden, {"generator": "tests/golden/make_hf_gpt2_golden.py",
                                     "n_layer": str(CONFIG["n_layer"])})
    print("wrote %s and %s/{plain_f32,prefixed_f16,prefixed_bf16}" % (path, base))


def make_random_gpt2_small(dirname):
    """GPT-2 small's shapes (124M parameters) with N(0, 0.02) weights, F32."""
    c = dict(CONFIG, n_embd=768, n_head=12, n_layer=12, n_positions=1024, n_ctx=1024, n_inner=None,
             vocab_size=50257, bos_token_id=50256, eos_token_id=50256)
    gen = torch.Generator().manual_seed(0)
    w = {}
    for name, shape in hf_shapes(c).items():
        if name.endswith(".bias"):
            w[name] = torch.zeros(shape)
        elif ".ln_" in name or name.startswith("ln_"):
            w[name] = torch.ones(shape)
        else:
            w[name] = torch.randn(shape, generator=gen) * 0.02
    write_checkpoint(dirname, c, w, torch.float32, "", "f32", False)
    n = sum(t.numel() for t in w.values())
    print("wrote %s (%d parameters)" % (dirname, n))


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "--random-gpt2-small":
        make_random_gpt2_small(sys.argv[2])
        return
    if len(sys.argv) > 2 or (len(sys.argv) == 2 and sys.argv[1].startswith("-")):
        sys.exit("usage: make_hf_gpt2_golden.py [OUT] | --random-gpt2-small DIR")
    make_golden(sys.argv[1] if len(sys.argv) == 2 else os.path.dirname(os.path.abspath(__file__)))


if __name__ == "__main__":
    main()
