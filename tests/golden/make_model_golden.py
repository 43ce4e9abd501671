#!/usr/bin/env python3
"""Golden reference for metalm's CausalTransformer, from an independent
PyTorch implementation (run with Debian's /usr/bin/python3 + python3-torch).

For each tiny configuration below it draws weights (with deliberately large,
non-trivial values: norm gains != 1, biases != 0, so swapped or ignored
parameters show), runs the model in float64 and stores, in ONE safetensors
file:
  <case>.weights.<param>            F32, GPT-2 / Hugging Face names (metalm's contract)
  <case>.tokens                     I64 [B, T]
  <case>.logits                     F32 [B, T, V]
  <case>.blocks.<l>.<site>          F32 [B, T, d] for resid_pre, attn_out, resid_mid,
                                    mlp_out, resid_post; [B, H, T, T] for attn_pattern
  <case>.final                      F32 [B, T, d]
and in "__metadata__": "cases" (comma separated) and "<case>.config" (metalm
ModelConfig JSON).

The implementation is written differently on purpose: explicit per-head loops,
RoPE as complex multiplication, norms and GELU from their formulas.

Usage: /usr/bin/python3 tests/golden/make_model_golden.py [OUT]
(default: tests/golden/model_golden.safetensors next to this script).
"""
import json
import math
import os
import struct
import sys

import numpy as np
import torch

BASE = dict(vocab_size=23, context=12, d_model=16, n_layer=2, n_head=2, d_mlp=24,
            norm="layernorm", norm_position="pre", position="learned", attention="softmax",
            mlp="gelu", bias=True, tie_embeddings=True, norm_eps=1e-5, rope_base=10000.0)

CASES = [
    ("preln_layernorm_learned_gelu", {}),
    ("preln_rmsnorm_rope_gelu_tanh_untied", dict(norm="rmsnorm", position="rope", mlp="gelu_tanh",
                                                 bias=False, tie_embeddings=False, rope_base=100.0)),
    ("postln_layernorm_sinusoidal_relu", dict(norm_position="post", position="sinusoidal", mlp="relu")),
    ("preln_linear_attention_no_position", dict(attention="linear", position="none")),
    ("preln_attention_only_rope", dict(mlp="none", position="rope")),
    ("postln_rmsnorm_linear_rope_attention_only", dict(norm="rmsnorm", norm_position="post",
                                                       attention="linear", position="rope", mlp="none")),
]
BATCH, SEQ = 2, 7


def param_shapes(c):
    """Parameter names and shapes, in GPT-2 / Hugging Face naming."""
    d, V, m = c["d_model"], c["vocab_size"], c["d_mlp"]
    has_norm = c["norm"] != "none"
    norm_bias = c["norm"] == "layernorm" and c["bias"]
    shapes = {"wte.weight": (V, d)}
    if c["position"] == "learned":
        shapes["wpe.weight"] = (c["context"], d)

    def norm(prefix):
        if has_norm:
            shapes[prefix + ".weight"] = (d,)
            if norm_bias:
                shapes[prefix + ".bias"] = (d,)

    def linear(prefix, n_out, n_in):
        shapes[prefix + ".weight"] = (n_out, n_in)
        if c["bias"]:
            shapes[prefix + ".bias"] = (n_out,)

    for l in range(c["n_layer"]):
        b = "blocks.%d." % l
        norm(b + "ln_1")
        linear(b + "attn.c_attn", 3 * d, d)
        linear(b + "attn.c_proj", d, d)
        if c["mlp"] != "none":
            norm(b + "ln_2")
            linear(b + "mlp.c_fc", m, d)
            linear(b + "mlp.c_proj", d, m)
    if c["norm_position"] == "pre":
        norm("ln_f")
    if not c["tie_embeddings"]:
        shapes["lm_head.weight"] = (V, d)
    return shapes


def draw_weights(c, gen):
    w = {}
    for name, shape in param_shapes(c).items():
        r = torch.randn(shape, generator=gen, dtype=torch.float64)
        if name.endswith(".bias"):
            t = 0.1 * r
        elif ".ln_" in name or name.startswith("ln_"):
            t = 1.0 + 0.2 * r
        elif name in ("wte.weight", "wpe.weight"):
            t = 0.8 * r
        else:
            t = r / math.sqrt(shape[1])  # unit-variance outputs: softmaxes are far from uniform
        w[name] = t.float().double()  # the values stored in F32 are the ones used
    return w


def norm(c, x, w, prefix):
    if c["norm"] == "none":
        return x
    eps = c["norm_eps"]
    g = w[prefix + ".weight"]
    if c["norm"] == "rmsnorm":
        return x / torch.sqrt((x * x).mean(-1, keepdim=True) + eps) * g
    mu = x.mean(-1, keepdim=True)
    var = ((x - mu) ** 2).mean(-1, keepdim=True)
    y = (x - mu) / torch.sqrt(var + eps) * g
    return y + w[prefix + ".bias"] if prefix + ".bias" in w else y


def linear(x, w, prefix):
    y = x @ w[prefix + ".weight"].t()
    return y + w[prefix + ".bias"] if prefix + ".bias" in w else y


def rope(x, c, T):
    """x: [B, T, hs]; pairs (i, i + hs/2) rotated by angle p * base^(-2i/hs)."""
    hs = x.shape[-1]
    half = hs // 2
    inv_freq = torch.tensor([c["rope_base"] ** (-2.0 * i / hs) for i in range(half)], dtype=torch.float64)
    angle = torch.arange(T, dtype=torch.float64)[:, None] * inv_freq[None, :]
    z = torch.complex(x[..., :half], x[..., half:]) * torch.polar(torch.ones_like(angle), angle)
    return torch.cat([z.real, z.imag], -1)


def attention(c, x, w, prefix):
    B, T, d = x.shape
    H = c["n_head"]
    hs = d // H
    qkv = linear(x, w, prefix + ".c_attn")
    q, k, v = qkv[..., :d], qkv[..., d:2 * d], qkv[..., 2 * d:]
    causal = torch.tril(torch.ones(T, T, dtype=torch.bool))
    heads, patterns = [], []
    for h in range(H):
        sl = slice(h * hs, (h + 1) * hs)
        qh, kh, vh = q[..., sl], k[..., sl], v[..., sl]
        if c["position"] == "rope":
            qh, kh = rope(qh, c, T), rope(kh, c, T)
        scores = torch.einsum("bti,bsi->bts", qh, kh)
        if c["attention"] == "softmax":
            scores = scores / math.sqrt(hs)
            a = torch.softmax(torch.where(causal, scores, torch.tensor(float("-inf"), dtype=scores.dtype)), -1)
        else:
            count = torch.arange(1, T + 1, dtype=torch.float64)[:, None]
            a = torch.where(causal, scores, torch.zeros_like(scores)) / count
        patterns.append(a)
        heads.append(torch.einsum("bts,bsi->bti", a, vh))
    return linear(torch.cat(heads, -1), w, prefix + ".c_proj"), torch.stack(patterns, 1)


def mlp(c, x, w, prefix):
    h = linear(x, w, prefix + ".c_fc")
    if c["mlp"] == "gelu":
        h = 0.5 * h * (1.0 + torch.erf(h / math.sqrt(2.0)))
    elif c["mlp"] == "gelu_tanh":
        h = 0.5 * h * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (h + 0.044715 * h ** 3)))
    else:
        h = torch.clamp(h, min=0.0)
    return linear(h, w, prefix + ".c_proj")


def sinusoids(T, d):
    table = np.zeros((T, d))
    for p in range(T):
        for i in range(d // 2):
            table[p, 2 * i] = math.sin(p / 10000.0 ** (2.0 * i / d))
            table[p, 2 * i + 1] = math.cos(p / 10000.0 ** (2.0 * i / d))
    return torch.from_numpy(table)


def run(c, w, tokens):
    out = {}
    B, T = tokens.shape
    x = w["wte.weight"][tokens]
    if c["position"] == "learned":
        x = x + w["wpe.weight"][:T][None]
    elif c["position"] == "sinusoidal":
        x = x + sinusoids(T, c["d_model"])[None]
    post = c["norm_position"] == "post"
    for l in range(c["n_layer"]):
        b = "blocks.%d" % l
        out[b + ".resid_pre"] = x
        if not post:
            a, pattern = attention(c, norm(c, x, w, b + ".ln_1"), w, b + ".attn")
            mid = x + a
            m = mlp(c, norm(c, mid, w, b + ".ln_2"), w, b + ".mlp") if c["mlp"] != "none" else torch.zeros_like(mid)
            new = mid + m
        else:
            a, pattern = attention(c, x, w, b + ".attn")
            mid = norm(c, x + a, w, b + ".ln_1")
            new = norm(c, mid + mlp(c, mid, w, b + ".mlp"), w, b + ".ln_2") if c["mlp"] != "none" else mid
        out[b + ".attn_out"] = mid - x
        out[b + ".resid_mid"] = mid
        out[b + ".mlp_out"] = new - mid
        out[b + ".resid_post"] = new
        out[b + ".attn_pattern"] = pattern
        x = new
    out["final"] = x
    h = norm(c, x, w, "ln_f") if not post else x
    out["logits"] = h @ (w["lm_head.weight"] if "lm_head.weight" in w else w["wte.weight"]).t()
    return out


def write_safetensors(path, tensors, metadata):
    dtypes = {np.dtype("float32"): "F32", np.dtype("int64"): "I64"}
    header, blobs, offset = {"__metadata__": metadata}, [], 0
    for name in sorted(tensors):
        a = np.ascontiguousarray(tensors[name])
        blob = a.astype(a.dtype.newbyteorder("<")).tobytes()
        header[name] = {"dtype": dtypes[a.dtype], "shape": list(a.shape), "data_offsets": [offset, offset + len(blob)]}
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


def main():
    out_path = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                                  "model_golden.safetensors")
    torch.set_default_dtype(torch.float64)
    tensors, metadata = {}, {"cases": ",".join(name for name, _ in CASES),
                             "generator": "tests/golden/make_model_golden.py"}
    for i, (name, override) in enumerate(CASES):
        c = dict(BASE, **override)
        gen = torch.Generator().manual_seed(1000 + i)
        w = draw_weights(c, gen)
        tokens = torch.randint(0, c["vocab_size"], (BATCH, SEQ), generator=gen)
        with torch.no_grad():
            out = run(c, w, tokens)
        metadata[name + ".config"] = json.dumps(c, sort_keys=True)
        for k, t in w.items():
            tensors["%s.weights.%s" % (name, k)] = t.float().numpy()
        tensors[name + ".tokens"] = tokens.numpy().astype(np.int64)
        for k, t in out.items():
            tensors["%s.%s" % (name, k)] = t.float().numpy()
    write_safetensors(out_path, tensors, metadata)
    print("wrote %s (%d tensors, %d bytes)" % (out_path, len(tensors), os.path.getsize(out_path)))


if __name__ == "__main__":
    main()
