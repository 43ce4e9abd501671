#!/usr/bin/python3
"""The reference side of scripts/bench/bench_vs_pytorch.sh: metalm's default model
(GPT-2 pre-LN, learned positions, tied embeddings, exact GELU, biases),
written in plain PyTorch and trained the way `metalm bench train` trains it:
random windows of train.bin, mean cross-entropy, AdamW with decay on weight
matrices only (not on wte/wpe), global-norm clipping at 1.0.

Prints one JSON line:
  {"side": "pytorch", "precision": ..., "tokens_per_s": ..., "ms_per_step": ...,
   "runtime": {"blas": {"library": ..., "config": ..., "kernel": ...}, "aten_capability": ...}}
where "runtime" is what the arithmetic ran on, as metalm records it: the BLAS
this torch loaded, OpenBLAS's kernel in force (OPENBLAS_CORETYPE or its own
pick) and ATen's CPU capability (ATEN_CPU_CAPABILITY or its own pick).

  --peak prints the 1024x1024 matmul GFLOP/s in fp32 and bf16 instead.
"""
import argparse
import ctypes
import json
import math
import os
import re
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


class Block(nn.Module):
    def __init__(self, d, n_head):
        super().__init__()
        self.n_head = n_head
        self.ln_1 = nn.LayerNorm(d)
        self.c_attn = nn.Linear(d, 3 * d)
        self.attn_proj = nn.Linear(d, d)
        self.ln_2 = nn.LayerNorm(d)
        self.c_fc = nn.Linear(d, 4 * d)
        self.mlp_proj = nn.Linear(4 * d, d)

    def attention(self, x, mask):
        B, T, C = x.shape
        hs = C // self.n_head
        q, k, v = self.c_attn(x).view(B, T, 3, self.n_head, hs).unbind(2)
        q, k, v = (t.transpose(1, 2) for t in (q, k, v))  # [B, H, T, hs]
        att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(hs))
        att = att.masked_fill(mask[:T, :T], float("-inf")).softmax(-1)
        y = (att @ v).transpose(1, 2).reshape(B, T, C)
        return self.attn_proj(y)

    def forward(self, x, mask):
        x = x + self.attention(self.ln_1(x), mask)
        return x + self.mlp_proj(F.gelu(self.c_fc(self.ln_2(x))))


class Model(nn.Module):
    def __init__(self, vocab, context, d, n_layer, n_head):
        super().__init__()
        self.wte = nn.Embedding(vocab, d)
        self.wpe = nn.Embedding(context, d)
        self.blocks = nn.ModuleList(Block(d, n_head) for _ in range(n_layer))
        self.ln_f = nn.LayerNorm(d)
        self.register_buffer("mask", torch.ones(context, context, dtype=torch.bool).triu(1), persistent=False)
        proj_std = 0.02 / math.sqrt(2 * n_layer)
        for name, p in self.named_parameters():
            if name.endswith("bias"):
                nn.init.zeros_(p)
            elif ".ln_" in name or name.startswith("ln_"):
                nn.init.ones_(p)
            else:
                nn.init.normal_(p, 0.0, proj_std if name.endswith("proj.weight") else 0.02)

    def forward(self, idx):
        T = idx.shape[1]
        x = self.wte(idx) + self.wpe(torch.arange(T))
        for block in self.blocks:
            x = block(x, self.mask)
        return F.linear(self.ln_f(x), self.wte.weight)


def read_tokens(path):
    with open(path, "rb") as f:
        header = f.read(32)
    if header[:8] != b"MLMTOKEN":
        sys.exit(f"bench_pytorch_model: {path} is not a metalm token file (run metalm prepare)")
    id_bytes = int.from_bytes(header[12:16], "little")
    count = int.from_bytes(header[24:32], "little")
    dtype = np.uint16 if id_bytes == 2 else np.uint32
    return np.memmap(path, dtype=dtype, mode="r", offset=32, shape=(count,))


def runtime():
    """The BLAS kernel and ATen capability in force in this process."""
    blas = {"library": "", "config": "", "kernel": ""}
    try:
        # The library libtorch linked is already loaded: dlopen returns it.
        lib = ctypes.CDLL("libblas.so.3")
        for key, fn in (("kernel", "openblas_get_corename"), ("config", "openblas_get_config")):
            f = getattr(lib, fn, None)
            if f is not None:
                f.restype = ctypes.c_char_p
                blas[key] = f().decode().strip()
        with open("/proc/self/maps") as maps:
            paths = {line.split()[-1] for line in maps if "libblas" in line or "openblas" in line}
        blas["library"] = os.path.realpath(sorted(paths)[0]) if paths else ""
    except OSError:
        pass
    m = re.search(r"CPU capability usage: (\S+)", torch.__config__.show())
    return {"blas": blas, "aten_capability": m.group(1).lower() if m else "unknown"}


def matmul_peak(dtype, n=1024, seconds=1.0):
    a = torch.randn(n, n).to(dtype)
    b = torch.randn(n, n).to(dtype)
    for _ in range(3):
        a @ b
    reps, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        a @ b
        reps += 1
    return 2 * n**3 * reps / (time.perf_counter() - t0) / 1e9


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="data/brown-byte/train.bin")
    ap.add_argument("--vocab", type=int, default=257)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--d-model", type=int, default=256)
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--steps", type=int, default=20, help="timed steps")
    ap.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    ap.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--peak", action="store_true", help="print matmul GFLOP/s (fp32, bf16) and exit")
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    if args.peak:
        print(json.dumps({"side": "matmul", "n": 1024, "fp32_gflops": matmul_peak(torch.float32),
                          "bf16_gflops": matmul_peak(torch.bfloat16), "runtime": runtime()}))
        return

    torch.manual_seed(1337)
    tokens = read_tokens(args.data)
    model = Model(args.vocab, args.seq, args.d_model, args.layers, args.heads)
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2 and n not in ("wte.weight", "wpe.weight")]
    other = [p for n, p in model.named_parameters() if not (p.dim() >= 2 and n not in ("wte.weight", "wpe.weight"))]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": other, "weight_decay": 0.0}],
                            lr=1e-3, betas=(0.9, 0.95), eps=1e-8)
    rng = np.random.default_rng(1337)

    def batch():
        starts = rng.integers(0, len(tokens) - args.seq - 1, size=args.batch)
        w = np.stack([tokens[s:s + args.seq + 1].astype(np.int64) for s in starts])
        w = torch.from_numpy(w)
        return w[:, :-1], w[:, 1:]

    def step():
        x, y = batch()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.precision == "bf16"):
            logits = model(x)
        loss = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), y.reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        return loss.item()

    for _ in range(args.warmup):
        step()
    t0 = time.perf_counter()
    for _ in range(args.steps):
        step()
    dt = (time.perf_counter() - t0) / args.steps
    print(json.dumps({"side": "pytorch", "precision": args.precision, "threads": torch.get_num_threads(),
                      "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", ""),
                      "tokens_per_s": args.batch * args.seq / dt, "ms_per_step": 1e3 * dt,
                      "runtime": runtime()}))


if __name__ == "__main__":
    main()
