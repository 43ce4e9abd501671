#!/usr/bin/env python3
"""Golden reference for metalm's whole analysis output (metalm analyze's JSON),
from an implementation independent of the C++ code (run with Debian's
/usr/bin/python3 + python3-torch + numpy).

It is written from the definitions of docs/design.md section 5 and
docs/analysis-schema.md, not from src/analysis: the model's forward pass is
the independent one of make_model_golden.py (explicit heads, RoPE as complex
multiplication), the lens gradient is the closed form below for hard and soft
targets (checked against autograd once per case), the controls' permutations
and the bootstrap's draws are the counter-based rules of design.md 5.5-5.6
written out here, and every aggregate is numpy.

For each case below it writes:
  analysis_golden.safetensors   per case: <case>.weights.<param> (F32, GPT-2
                                names), <case>.batch<b>.inputs / .targets (I64
                                [B, T]; a negative target: no next token) and
                                <case>.train_counts (I64 [V], meta.json's
                                counts); metadata: "cases" and <case>.config
  analysis_golden.json          {"cases": {<case>: {"model": <case of the
                                safetensors>, "analysis": {granularity, chunk,
                                freq_bins, seed, bootstrap, permutations},
                                "meta": bool, "expected": the complete
                                analysis JSON}}}

Weights: "trained" cases are trained here for a few hundred Adam steps on a
sparse Markov chain (so the layers do something: losses fall, alignments are
far from chance, norms follow frequency), then stored in float32; "random" is
make_model_golden.py's structured random draw; "init" is the documented
initialisation's distribution (N(0, init_std), projections scaled by
1/sqrt(2 n_layer), zero biases, unit gains).

To add a per-position statistic: write one function of the per-position
context (described above STEP_STATISTICS) and add one entry to
STEP_STATISTICS, STATE_STATISTICS or DERIVED_STEP_STATISTICS, with the
aggregates it gets (MEAN, SUMMARY, POSITIONAL, FREQ_SPEARMAN) as in
include/metalm/analysis/trajectory.hpp; the JSON follows from the lists.

Usage: /usr/bin/python3 tests/golden/make_analysis_golden.py [--weights FILE |
--weights-only] [OUT_DIR]   (OUT_DIR defaults to tests/golden next to this script)
  --weights FILE   take every model's weights, batches and training counts from
                   FILE (a committed analysis_golden.safetensors) instead of
                   training or drawing them, and compute only the expectations.
                   Training rounds differently on different CPUs (BLAS kernels,
                   libm); the analysis of fixed float32 weights in float64 does
                   not, beyond the tolerance of the test. The test regenerates
                   the expectations this way.
  --weights-only   train and draw the models, write only the safetensors (the
                   test compares them with the committed ones at the tolerance
                   of docs/analysis-schema.md).
Deterministic on one machine: the same torch and numpy give the same bytes.
"""
import argparse
import json
import math
import os
import struct
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_model_golden as fwd  # noqa: E402  (the independent forward pass)

M64 = 2 ** 64 - 1

# ---- the models ------------------------------------------------------------------

BASE = dict(vocab_size=29, context=16, d_model=16, n_layer=2, n_head=2, d_mlp=32,
            norm="layernorm", norm_position="pre", position="learned", attention="softmax",
            mlp="gelu", bias=True, tie_embeddings=True, norm_eps=1e-5, rope_base=10000.0,
            init_std=0.02)

# name -> (config override, weights: "trained" | "random" | "init")
MODELS = {
    "preln_layernorm_trained": (dict(), "trained"),
    "preln_rmsnorm_rope_untied_trained": (dict(norm="rmsnorm", position="rope", bias=False,
                                               tie_embeddings=False, rope_base=100.0), "trained"),
    "postln_layernorm_trained": (dict(norm_position="post", mlp="relu"), "trained"),
    "preln_rope_mlp_none_trained": (dict(position="rope", mlp="none"), "trained"),
    "preln_layernorm_random": (dict(), "random"),
    "preln_layernorm_init": (dict(), "init"),
}

# The analysed batches: (batch size, T) each; the last position of every
# sequence of batch 1 but one has no next token (target -1).
BATCH_SHAPES = [(3, 8), (2, 8)]

# case -> (model, granularity, chunk, freq_bins, seed, with meta.json, bootstrap
# resamples, permutations of the null band); 1000 and 100 are the defaults.
CASES = {}
for _i, _m in enumerate(MODELS):
    for _g in ("block", "sublayer"):
        # chunk 5 splits each batch's positions across chunk boundaries
        CASES["%s.%s" % (_m, _g)] = (_m, _g, 5 if _g == "block" else 4096, 4, 1234 + 7 * _i, True, 1000, 100)
CASES["preln_layernorm_trained.block.no_meta"] = ("preln_layernorm_trained", "block", 2048, 8, 1234, False, 1000, 100)
CASES["preln_layernorm_trained.block.seed_2^64-1"] = ("preln_layernorm_trained", "block", 3, 3, M64, True, 37, 5)


# ---- data: a sparse Markov chain -------------------------------------------------

def markov_chain(V, seed):
    """Each token has 3 successors with probabilities 0.6, 0.3, 0.1; tokens
    V-4..V-1 are never reached (unseen: count 0)."""
    rng = np.random.RandomState(seed)
    reach = V - 4
    succ = np.stack([rng.choice(reach, 3, replace=False) for _ in range(V)])
    return succ, np.array([0.6, 0.3, 0.1])


def sample_chain(succ, probs, n, rng, start=0):
    out = [start]
    for _ in range(n - 1):
        out.append(int(succ[out[-1]][rng.choice(3, p=probs)]))
    return np.array(out, dtype=np.int64)


# ---- weights ----------------------------------------------------------------------

def init_weights(c, gen):
    """The documented initialisation's distribution (docs/README: init_std)."""
    w = {}
    proj_std = c["init_std"] / math.sqrt(2.0 * c["n_layer"])
    for name, shape in fwd.param_shapes(c).items():
        if name.endswith(".bias"):
            t = torch.zeros(shape, dtype=torch.float64)
        elif ".ln_" in name or name.startswith("ln_"):
            t = torch.ones(shape, dtype=torch.float64)
        elif name.endswith("c_proj.weight"):
            t = proj_std * torch.randn(shape, generator=gen, dtype=torch.float64)
        else:
            t = c["init_std"] * torch.randn(shape, generator=gen, dtype=torch.float64)
        w[name] = t.float().double()
    return w


def train_weights(c, gen, corpus, steps=200, batch=16, T=8, lr=2e-2):
    """A few hundred Adam steps of next-token training from the init above
    (with init_std 0.1, so it moves fast), in float64; stored as float32."""
    w = init_weights(dict(c, init_std=0.1), gen)
    params = {k: v.clone().requires_grad_(True) for k, v in w.items()}
    opt = torch.optim.Adam(list(params.values()), lr=lr)
    rng = np.random.RandomState(int(torch.randint(0, 2 ** 31 - 1, (1,), generator=gen)))
    for _ in range(steps):
        starts = rng.randint(0, len(corpus) - T - 1, batch)
        x = torch.from_numpy(np.stack([corpus[s:s + T] for s in starts]))
        y = torch.from_numpy(np.stack([corpus[s + 1:s + T + 1] for s in starts]))
        logits = fwd.run(c, params, x)["logits"]
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, c["vocab_size"]), y.reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
    return {k: v.detach().float().double() for k, v in params.items()}


# ---- the lens: loss and its gradient in closed form -------------------------------

def unembedding(c, w):
    return w["lm_head.weight"] if "lm_head.weight" in w else w["wte.weight"]


def lens_loss_grad(c, w, h, y):
    """h [N, d] float64 numpy, y [N] ids, or [N, V] target distributions p,
    or None -> loss [N], grad [N, d] (for None: softmax(z) [N, V]).
    z = W_U n(h); ℓ = logsumexp(z) − Σ_v p_v z_v (= − z_y for p = e_y);
    g = J_n(h)ᵀ W_Uᵀ (softmax(z) − p).
    n is the final norm with its statistics from h (identity for post-LN)."""
    W = unembedding(c, w).numpy()
    d = h.shape[1]
    pre = c["norm_position"] == "pre" and c["norm"] != "none"
    if pre:
        gamma = w["ln_f.weight"].numpy()
        eps = c["norm_eps"]
        if c["norm"] == "layernorm":
            mu = h.mean(1, keepdims=True)
            sigma = np.sqrt(((h - mu) ** 2).mean(1, keepdims=True) + eps)
            xhat = (h - mu) / sigma
            n = gamma * xhat + (w["ln_f.bias"].numpy() if "ln_f.bias" in w else 0.0)
        else:
            r = np.sqrt((h * h).mean(1, keepdims=True) + eps)
            n = gamma * h / r
    else:
        n = h
    z = n @ W.T
    zmax = z.max(1, keepdims=True)
    lse = zmax[:, 0] + np.log(np.exp(z - zmax).sum(1))
    p = np.exp(z - lse[:, None])
    if y is None:
        return p
    if y.ndim == 1:
        idx = np.arange(len(y))
        loss = lse - z[idx, y]
        p[idx, y] -= 1.0
    else:
        loss = lse - (y * z).sum(1)
        p -= y
    u = p @ W  # dℓ/dn
    if not pre:
        return loss, u
    u = u * gamma
    if c["norm"] == "layernorm":
        grad = (u - u.mean(1, keepdims=True) - xhat * (u * xhat).mean(1, keepdims=True)) / sigma
    else:
        grad = (u - h * (u * h).mean(1, keepdims=True) / (r * r)) / r
    assert grad.shape[1] == d
    return loss, grad


def lens_probs(c, w, h):
    """softmax(z(h)) [N, V]: the lens's read-out of h, by the arithmetic of
    the loss, so a state equal to s_K has a belief gradient of exactly 0 (and
    the belief statistics 0/0: NaN), not rounding noise."""
    return lens_loss_grad(c, w, h, None)


def check_gradient_against_autograd(c, w, h, y, p):
    """The closed form against autograd, for hard targets y and for the soft
    targets p of the belief control."""
    for target in (y, p):
        ht = torch.from_numpy(h).clone().requires_grad_(True)
        x = fwd.norm(c, ht, w, "ln_f") if c["norm_position"] == "pre" else ht
        logits = x @ unembedding(c, w).t()
        loss = torch.nn.functional.cross_entropy(logits, torch.from_numpy(target), reduction="sum")
        (g,) = torch.autograd.grad(loss, ht)
        _, ours = lens_loss_grad(c, w, h, target)
        assert np.allclose(g.numpy(), ours, rtol=1e-9, atol=1e-12), "closed-form lens gradient != autograd"


# ---- the counter-based draws of the controls and the bootstrap (docs/design.md 5.5, 5.6)

def splitmix64(x):
    z = (x + 0x9E3779B97F4A7C15) & M64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
    return z ^ (z >> 31)


def mix(seed, *values):
    h = splitmix64(seed & M64)
    for v in values:
        h = splitmix64(h ^ (v & M64))
    return h


def random_targets(targets, seed, V):
    out = targets.copy()
    B, T = targets.shape
    for i in range(B):
        for t in range(T):
            if targets[i, t] >= 0:
                out[i, t] = (targets[i, t] + 1 + mix(seed, i, t) % (V - 1)) % V
    return out


PERMUTATION = 0x5045524D  # "PERM"
SHUFFLED, BIGRAM, PERMUTED = 1, 2, 3  # streams; the null band uses PERMUTED .. PERMUTED + P - 1


def cycle(sigma, stream, rows):
    """{r: π(r)} for the flat rows `rows` of one batch: sorted by
    (mix(σ, PERM, stream, r), r), each row is paired with the next, the last
    with the first (one cycle, so no row with itself when there are two)."""
    order = sorted(rows, key=lambda r: (mix(sigma, PERMUTATION, stream, r), r))
    return {order[j]: order[(j + 1) % len(order)] for j in range(len(order))}


def control_partners(sigma, rows, current, streams):
    """For the analysed flat rows of one batch (ascending) and their current
    tokens: indices (into rows) of the shuffled partner, of the bigram partner
    (the shuffled one where the current token occurs once: fallback 1), and of
    the permuted partner of every stream in `streams`."""
    at = {r: j for j, r in enumerate(rows)}

    def indices(pi):
        return np.array([at[pi[r]] for r in rows], dtype=np.int64)

    shuffled = indices(cycle(sigma, SHUFFLED, rows))
    bigram, fallback = shuffled.copy(), np.ones(len(rows))
    for token in np.unique(current):
        group = [r for r, x in zip(rows, current) if x == token]
        if len(group) < 2:
            continue
        pi = cycle(sigma, BIGRAM, group)
        for r in group:
            bigram[at[r]] = at[pi[r]]
            fallback[at[r]] = 0.0
    return shuffled, bigram, fallback, [indices(cycle(sigma, s, rows)) for s in streams]


BOOTSTRAP = 0x424F4F54  # "BOOT"


class Bootstrap:
    """Resamples of whole sequences (clusters): resample r draws cluster
    mix(seed, BOOT, r, j) mod C for j = 0 .. C-1, with replacement."""

    def __init__(self, cluster, resamples, seed):
        ids, self.cluster = np.unique(np.asarray(cluster), return_inverse=True)
        self.clusters = len(ids)
        self.resamples, self.seed = resamples, seed
        self.times = np.zeros((resamples, self.clusters))  # how often resample r drew cluster c
        for r in range(resamples):
            for j in range(self.clusters):
                self.times[r, mix(seed, BOOTSTRAP, r, j) % self.clusters] += 1

    def interval(self, v):
        """2.5 % and 97.5 % quantiles of the finite resampled means of the
        finite values of v."""
        v = np.asarray(v, dtype=np.float64)
        ok = np.isfinite(v)
        sums = np.bincount(self.cluster[ok], weights=v[ok], minlength=self.clusters)
        counts = np.bincount(self.cluster[ok], minlength=self.clusters).astype(np.float64)
        num_, den = self.times @ sums, self.times @ counts
        means = num_[den > 0] / den[den > 0]
        means = means[np.isfinite(means)]
        if not means.size:
            return [None, None]
        return [num(np.quantile(means, 0.025)), num(np.quantile(means, 0.975))]


# ---- aggregates --------------------------------------------------------------------

MEAN, SUMMARY, POSITIONAL, FREQ_SPEARMAN = 1, 2, 4, 8


def num(x):
    x = float(x)
    return x if math.isfinite(x) else None


def finite(v):
    v = np.asarray(v, dtype=np.float64)
    return v[np.isfinite(v)]


def mean(v):
    f = finite(v)
    return num(f.mean()) if f.size else None


def summary(v, boot=None):
    """mean, std, median, q10, q90 of the finite values; with a bootstrap,
    "ci", the interval of the mean."""
    if v is None:
        return None
    f = finite(v)
    if not f.size:
        out = dict(mean=None, std=None, median=None, q10=None, q90=None)
    else:
        out = dict(mean=num(f.mean()), std=num(f.std()), median=num(np.quantile(f, 0.5)),
                   q10=num(np.quantile(f, 0.1)), q90=num(np.quantile(f, 0.9)))
    if boot is not None:
        out["ci"] = boot.interval(v)
    return out


def spearman(a, b):
    """Pearson correlation of average ranks (ties share the mean rank)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if len(a) < 2:
        return None

    def ranks(x):
        order = np.argsort(x, kind="mergesort")
        r = np.empty(len(x))
        r[order] = np.arange(1, len(x) + 1)
        for value in np.unique(x):
            tied = x == value
            r[tied] = r[tied].mean()
        return r

    ra, rb = ranks(a), ranks(b)
    ra, rb = ra - ra.mean(), rb - rb.mean()
    den = math.sqrt((ra * ra).sum() * (rb * rb).sum())
    return num((ra * rb).sum() / den) if den > 0 else None


class Bins:
    """Log-spaced bins of training counts (docs/design.md 5.6)."""

    def __init__(self, counts, n):
        self.counts, self.n = np.asarray(counts), n
        self.log_max = math.log(float(self.counts.max()) + 1.0) if len(self.counts) else 0.0

    def count_of(self, token):
        return int(self.counts[token]) if 0 <= token < len(self.counts) else 0

    def bin_of(self, token):
        c = self.count_of(token)
        if c <= 0 or self.log_max <= 0:
            return 0
        return min(self.n - 1, int(math.floor(self.n * math.log(c + 1.0) / self.log_max)))

    def edges(self, i):
        return math.exp(self.log_max * i / self.n) - 1.0, math.exp(self.log_max * (i + 1) / self.n) - 1.0


def group(fields, keys, groups):
    """count per group and per-group finite means of each field."""
    keys = np.asarray(keys)
    out = {"count": [int((keys == g).sum()) for g in range(groups)]}
    for name, v in fields:
        out[name] = None if v is None else [mean(np.asarray(v)[keys == g]) for g in range(groups)]
    return out


def by_frequency(fields, tokens, bins):
    b = np.array([bins.bin_of(int(t)) for t in tokens])
    g = group(fields, b, bins.n)
    out = []
    for i in range(bins.n):
        lo, hi = bins.edges(i)
        e = {"bin": i, "count_lo": lo, "count_hi": hi, "positions": g["count"][i]}
        for name, _ in fields:
            e[name] = None if g[name] is None else g[name][i]
        out.append(e)
    return out


def masked(fields, mask):
    out = {"count": int(mask.sum())}
    for name, v in fields:
        out[name] = None if v is None else mean(np.asarray(v)[mask])
    return out


# ---- the statistics: one function and one entry each ----------------------------
# A step's context (all per position): h0 = s_k, h1 = s_{k+1}, g = ∇ℓ(s_k),
# l0 = ℓ(s_k), l1 = ℓ(s_{k+1}); the controls' gradients at s_k: gu (uniform
# wrong token), gs (shuffled target), gbg (bigram target), gb (belief: toward
# the lens's read-out of s_K), gp (the true gradient of the permuted partner
# at its own s_k); fb the bigram fallback (1 where it took the shuffled target).
# A state's context: h, l, g (g None at the last state).

def rownorm(x):
    return np.sqrt((x * x).sum(1))


def cos_neg(delta, g):
    with np.errstate(invalid="ignore", divide="ignore"):
        return (delta * -g).sum(1) / (rownorm(delta) * rownorm(g))


def eta(delta, g):
    with np.errstate(invalid="ignore", divide="ignore"):
        return (delta * -g).sum(1) / (g * g).sum(1)


def signed_growth(delta, g):
    """⟨Δ, −g⟩ |⟨Δ, −g⟩| / ‖g‖²: a gradient step's growth of ‖s‖², signed."""
    dot = (delta * -g).sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return dot * np.abs(dot) / (g * g).sum(1)


def across_belief(s):
    """g_⊥ = g − (⟨g, g_b⟩ / ‖g_b‖²) g_b."""
    g, gb = s["g"], s["gb"]
    with np.errstate(invalid="ignore", divide="ignore"):
        return g - ((g * gb).sum(1) / (gb * gb).sum(1))[:, None] * gb


def angle(a, b):
    """The angle between a and b, 2 atan2(‖â − b̂‖, ‖â + b̂‖): arccos of the
    cosine, without arccos's loss of half the digits near 0 and π (for
    b = a it is 0, where arccos(cos) gives ~1e-8)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        ua, ub = a / rownorm(a)[:, None], b / rownorm(b)[:, None]
        return 2.0 * np.arctan2(rownorm(ua - ub), rownorm(ua + ub))


def delta(s):
    return s["h1"] - s["h0"]


STEP_STATISTICS = [
    ("loss_before", MEAN | POSITIONAL, lambda s: s["l0"]),
    ("loss_after", MEAN | POSITIONAL, lambda s: s["l1"]),
    ("alignment", SUMMARY | POSITIONAL, lambda s: cos_neg(delta(s), s["g"])),
    ("alignment_uniform", SUMMARY | POSITIONAL, lambda s: cos_neg(delta(s), s["gu"])),
    ("alignment_shuffled", SUMMARY | POSITIONAL, lambda s: cos_neg(delta(s), s["gs"])),
    ("alignment_bigram", SUMMARY | POSITIONAL, lambda s: cos_neg(delta(s), s["gbg"])),
    ("alignment_belief", SUMMARY | POSITIONAL, lambda s: cos_neg(delta(s), s["gb"])),
    ("alignment_permuted", SUMMARY, lambda s: cos_neg(delta(s), s["gp"])),
    ("alignment_unexplained", SUMMARY, lambda s: cos_neg(delta(s), across_belief(s))),
    ("cos_grad_belief", SUMMARY, lambda s: cos_neg(s["g"], -s["gb"])),
    ("bigram_fallback", MEAN, lambda s: s["fb"]),
    ("step_size", SUMMARY | POSITIONAL, lambda s: eta(delta(s), s["g"])),
    ("step_size_uniform", SUMMARY, lambda s: eta(delta(s), s["gu"])),
    ("step_size_shuffled", SUMMARY, lambda s: eta(delta(s), s["gs"])),
    ("step_size_bigram", SUMMARY, lambda s: eta(delta(s), s["gbg"])),
    ("step_size_belief", SUMMARY, lambda s: eta(delta(s), s["gb"])),
    ("step_size_scaled", SUMMARY | POSITIONAL, lambda s: eta(delta(s), s["g"]) / (s["h0"] ** 2).sum(1)),
    ("angular_step", SUMMARY, lambda s: angle(s["h0"], s["h1"])),
    ("first_order_decrease", MEAN, lambda s: ((s["h1"] - s["h0"]) * -s["g"]).sum(1)),
    ("actual_decrease", MEAN, lambda s: s["l0"] - s["l1"]),
    ("norm_before", SUMMARY | POSITIONAL, lambda s: rownorm(s["h0"])),
    ("norm_update", SUMMARY | POSITIONAL, lambda s: rownorm(s["h1"] - s["h0"])),
    ("norm_grad", SUMMARY, lambda s: rownorm(s["g"])),
    ("cos_state_grad", SUMMARY, lambda s: cos_neg(s["h0"], -s["g"])),
    ("radial_update", SUMMARY, lambda s: ((s["h1"] - s["h0"]) * s["h0"]).sum(1) / rownorm(s["h0"])),
    ("norm_sq_growth", MEAN | SUMMARY, lambda s: (s["h1"] ** 2).sum(1) - (s["h0"] ** 2).sum(1)),
    ("norm_sq_growth_radial", MEAN | SUMMARY, lambda s: 2 * (s["h0"] * (s["h1"] - s["h0"])).sum(1)),
    ("norm_sq_growth_update", MEAN | SUMMARY, lambda s: ((s["h1"] - s["h0"]) ** 2).sum(1)),
    ("norm_sq_growth_gradient_signed", MEAN | SUMMARY, lambda s: signed_growth(delta(s), s["g"])),
    ("norm_sq_growth_gradient_signed_permuted", MEAN | SUMMARY, lambda s: signed_growth(delta(s), s["gp"])),
]

# The controls of the gaps (alignment − alignment_<control>), and those matched
# to an explanation, among which strongest_control is the one of smallest gap.
CONTROLS = ["uniform", "shuffled", "bigram", "belief", "permuted"]
MATCHED = ["shuffled", "bigram"]


def _ratio(a, b):
    with np.errstate(invalid="ignore", divide="ignore"):
        return a / b


DERIVED_STEP_STATISTICS = [
    ("relative_update", SUMMARY, lambda s: _ratio(rownorm(s["h1"] - s["h0"]), rownorm(s["h0"]))),
    ("fraction_decreased", MEAN, lambda s: ((s["l0"] - s["l1"]) > 0).astype(np.float64)),
]

# (key, aggregates, function, defined at the last state)
STATE_STATISTICS = [
    ("loss", MEAN | SUMMARY | POSITIONAL, lambda s: s["l"], True),
    ("norm", SUMMARY | POSITIONAL | FREQ_SPEARMAN, lambda s: rownorm(s["h"]), True),
    ("norm_grad", SUMMARY, lambda s: None if s["g"] is None else rownorm(s["g"]), False),
    ("cos_state_grad", SUMMARY, lambda s: None if s["g"] is None else cos_neg(s["h"], -s["g"]), False),
    ("cos_ones_grad", SUMMARY,
     lambda s: None if s["g"] is None else s["g"].sum(1) / (math.sqrt(s["h"].shape[1]) * rownorm(s["g"])), False),
]


def put(j, key, aggregates, v, boot):
    if aggregates & MEAN:
        j[key] = None if v is None else mean(v)
        j[key + "_ci"] = None if v is None else boot.interval(v)
    if aggregates & SUMMARY:
        j[key + "_summary" if aggregates & MEAN else key] = summary(v, boot)


# ---- the analysis -------------------------------------------------------------------

def trajectory_sites(L, granularity):
    names = ["blocks.0.resid_pre"]
    for l in range(L):
        if granularity == "sublayer":
            names.append("blocks.%d.resid_mid" % l)
        names.append("final" if l == L - 1 else "blocks.%d.resid_post" % l)
    return names


def analyse(c, w, batches, granularity, freq_bins, seed, counts, resamples, permutations):
    """The analysis JSON of docs/analysis-schema.md."""
    V, L = c["vocab_size"], c["n_layer"]
    sites = trajectory_sites(L, granularity)
    states = [[] for _ in sites]  # per state: [N, d] pieces
    losses = [[] for _ in sites]
    grads = {name: [[] for _ in sites] for name in ("g", "gu", "gs", "gbg", "gb")}
    positions, cur_tok, tgt_tok, nll, sequence = [], [], [], [], []
    # per batch, indices of partners into the concatenated positions
    shuffled, bigram, fallback, permuted = [], [], [], [[] for _ in range(permutations)]
    first_position, first_sequence = 0, 0
    for b, (x, y) in enumerate(batches):
        with torch.no_grad():
            out = fwd.run(c, w, torch.from_numpy(x))
        T = x.shape[1]
        valid = y >= 0
        sigma = (seed + b) & M64
        yr = random_targets(y, sigma, V)
        seq = [out["blocks.0.resid_pre"]]
        for l in range(L):
            if granularity == "sublayer":
                seq.append(out["blocks.%d.resid_mid" % l])
            seq.append(out["blocks.%d.resid_post" % l])
        assert torch.equal(seq[-1], out["final"])
        logp = torch.log_softmax(out["logits"], -1).numpy()
        for i in range(x.shape[0]):
            for t in range(T):
                if valid[i, t]:
                    nll.append(-logp[i, t, y[i, t]])
        sel = valid.reshape(-1)
        rows = [int(r) for r in np.nonzero(sel)[0]]
        current = x.reshape(-1)[sel]
        positions.append(np.tile(np.arange(T), x.shape[0])[sel])
        sequence.append(first_sequence + np.array(rows) // T)
        cur_tok.append(current)
        tgt_tok.append(y.reshape(-1)[sel])
        sh, bg, fb, perms = control_partners(sigma, rows, current,
                                             range(PERMUTED, PERMUTED + permutations))
        shuffled.append(first_position + sh)
        bigram.append(first_position + bg)
        fallback.append(fb)
        for p, pi in enumerate(perms):
            permuted[p].append(first_position + pi)
        targets = y.reshape(-1)[sel]
        final = seq[-1].numpy().reshape(-1, c["d_model"])[sel]
        belief = lens_probs(c, w, final)  # the model's own final prediction
        for k, s in enumerate(seq):
            h = s.numpy().reshape(-1, c["d_model"])[sel]
            lo, g = lens_loss_grad(c, w, h, targets)
            states[k].append(h)
            losses[k].append(lo)
            grads["g"][k].append(g)
            grads["gu"][k].append(lens_loss_grad(c, w, h, yr.reshape(-1)[sel])[1])
            grads["gs"][k].append(lens_loss_grad(c, w, h, targets[sh])[1])
            grads["gbg"][k].append(lens_loss_grad(c, w, h, targets[bg])[1])
            grads["gb"][k].append(lens_loss_grad(c, w, h, belief)[1])
        first_position += len(rows)
        first_sequence += x.shape[0]
    cat = np.concatenate
    H = [cat(s) for s in states]
    Lo = [cat(s) for s in losses]
    G = {name: [cat(s) for s in per_state] for name, per_state in grads.items()}
    pos, cur, tgt = cat(positions), cat(cur_tok), cat(tgt_tok)
    shuffled, bigram, fallback = cat(shuffled), cat(bigram), cat(fallback)
    permuted = [cat(p) for p in permuted]
    T = batches[0][0].shape[1]
    K = len(sites) - 1
    bins = Bins(counts, freq_bins) if counts is not None else None
    boot = Bootstrap(cat(sequence), resamples, seed)
    j = {"format": "metalm-analysis", "version": 2, "tokens": int(len(pos)), "batches": len(batches),
         "batch_size": int(batches[0][0].shape[0]), "seq_len": int(T), "granularity": granularity,
         "d_model": c["d_model"], "n_layer": L, "vocab_size": V, "seed": seed,
         "chance_alignment_per_token": 1.0 / math.sqrt(c["d_model"]), "lens": "logit",
         "final_loss": num(np.mean(nll)),
         "bootstrap": {"resamples": resamples, "seed": seed, "level": 0.95, "clusters": boot.clusters},
         "permutations": permutations}

    steps = []
    for k in range(K):
        ctx = dict(h0=H[k], h1=H[k + 1], l0=Lo[k], l1=Lo[k + 1], fb=fallback, gp=G["g"][k][permuted[0]],
                   **{name: G[name][k] for name in G})
        s = {"index": k, "from": sites[k], "to": sites[k + 1],
             "layer": k if granularity == "block" else k // 2,
             "kind": "block" if granularity == "block" else ("attn" if k % 2 == 0 else "mlp")}
        fields, values = [], {}
        for key, agg, f in STEP_STATISTICS:
            v = f(ctx)
            values[key] = v
            put(s, key, agg, v, boot)
            if agg & POSITIONAL:
                fields.append((key, v))
        for key, agg, f in DERIVED_STEP_STATISTICS:
            put(s, key, agg, f(ctx), boot)
        s["gaps"] = {}
        for control in CONTROLS:
            gap = values["alignment"] - values["alignment_" + control]  # NaN where either is
            s["gaps"][control] = {"mean": mean(gap), "ci": boot.interval(gap)}
        matched = [(s["gaps"][m]["mean"], m) for m in MATCHED if s["gaps"][m]["mean"] is not None]
        s["strongest_control"] = min(matched)[1] if matched else None
        band = [mean(cos_neg(delta(ctx), G["g"][k][pi])) for pi in permuted]
        band = [m for m in band if m is not None]
        s["null_band"] = [num(np.quantile(band, 0.025)), num(np.quantile(band, 0.975))] if band else [None, None]
        s["position_0"] = masked(fields, pos == 0)
        s["positions_after_0"] = masked(fields, pos > 0)
        s["by_position"] = group(fields, pos, T)
        if bins:
            s["by_frequency"] = {"current": by_frequency(fields, cur, bins),
                                 "target": by_frequency(fields, tgt, bins)}
        steps.append(s)
    j["steps"] = steps

    out_states = []
    for k in range(K + 1):
        ctx = dict(h=H[k], l=Lo[k], g=G["g"][k] if k < K else None)
        s = {"index": k, "site": sites[k]}
        fields = []
        for key, agg, f, at_last in STATE_STATISTICS:
            v = f(ctx) if (k < K or at_last) else None
            put(s, key, agg, v, boot)
            if agg & POSITIONAL:
                fields.append((key, v))
                s[key + "_by_position"] = group([(key, v)], pos, T)[key]
            if agg & FREQ_SPEARMAN and bins:
                s[key + "_freq_spearman"] = {
                    "current": spearman(v, [bins.count_of(int(t)) for t in cur]),
                    "target": spearman(v, [bins.count_of(int(t)) for t in tgt])}
        if bins:
            s["norm_by_frequency"] = {"current": by_frequency(fields, cur, bins),
                                      "target": by_frequency(fields, tgt, bins)}
        out_states.append(s)
    j["states"] = out_states

    def table(m):
        norms = np.sqrt((m.numpy() ** 2).sum(1))
        t = {"rows": int(m.shape[0]), "norm": summary(norms)}
        if bins:
            ids = np.arange(m.shape[0])
            t["norm_freq_spearman"] = spearman(norms, [bins.count_of(int(i)) for i in ids])
            t["by_frequency"] = by_frequency([("norm", norms)], ids, bins)
        return t

    j["tables"] = {"embedding": table(w["wte.weight"]), "unembedding": table(unembedding(c, w)),
                   "tied": c["tie_embeddings"]}
    if bins:
        j["frequency_bins"] = {"bins": freq_bins, "count_ranges": [list(bins.edges(i)) for i in range(freq_bins)]}
    return j


def rounded(x):
    """Floats to 10 significant digits: the test's tolerance (1e-7) is far coarser,
    and the file is a third smaller."""
    if isinstance(x, float):
        return float("%.10g" % x)
    if isinstance(x, dict):
        return {k: rounded(v) for k, v in x.items()}
    if isinstance(x, list):
        return [rounded(v) for v in x]
    return x


# ---- main -----------------------------------------------------------------------------

def make_batches(corpus_rng, succ, probs):
    """Every analysed sequence starts with its own token, so no two positions
    share their whole context: equal contexts give equal states, whose norms
    the C++ vectorised reductions may round 1 ulp apart, which would make
    Spearman's ties (and so its value) depend on memory alignment."""
    batches, first = [], 0
    for b, (B, T) in enumerate(BATCH_SHAPES):
        seqs = np.stack([sample_chain(succ, probs, T + 1, corpus_rng, start=first + i) for i in range(B)])
        first += B
        x, y = seqs[:, :T].copy(), seqs[:, 1:].copy()
        if b == 1:
            y[1:, T - 1] = -1  # no next token there (not analysed)
        batches.append((x, y))
    return batches


def build_models():
    """Trains or draws every model: name -> (config, weights, batches, counts)."""
    models = {}
    for i, (name, (override, kind)) in enumerate(MODELS.items()):
        c = dict(BASE, **override)
        gen = torch.Generator().manual_seed(2000 + i)
        succ, probs = markov_chain(c["vocab_size"], 300 + i)
        corpus_rng = np.random.RandomState(400 + i)
        corpus = sample_chain(succ, probs, 3000, corpus_rng)
        counts = np.bincount(corpus, minlength=c["vocab_size"]).astype(np.int64)
        if kind == "trained":
            w = train_weights(c, gen, corpus)
        elif kind == "random":
            w = fwd.draw_weights(c, gen)
        else:
            w = init_weights(c, gen)
        models[name] = (c, w, make_batches(corpus_rng, succ, probs), counts)
    return models


def read_safetensors(path):
    """(tensors as numpy arrays, metadata) of the F32/I64 files write_safetensors makes."""
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    metadata = header.pop("__metadata__", {})
    kinds = {"F32": np.dtype("<f4"), "I64": np.dtype("<i8")}
    tensors = {}
    for name, h in header.items():
        lo, hi = h["data_offsets"]
        tensors[name] = np.frombuffer(data[8 + n + lo:8 + n + hi], dtype=kinds[h["dtype"]]).reshape(h["shape"])
    return tensors, metadata


def load_models(path):
    """The models of a golden safetensors file, as build_models returns them;
    refuses a file made for other models or batches."""
    tensors, metadata = read_safetensors(path)
    if metadata.get("cases") != ",".join(MODELS):
        sys.exit("%s: holds the models %r, this script makes %r" % (path, metadata.get("cases"), ",".join(MODELS)))
    models = {}
    for name, (override, _) in MODELS.items():
        c = dict(BASE, **override)
        if json.loads(metadata[name + ".config"]) != c:
            sys.exit("%s: %s.config is not this script's configuration of %s" % (path, name, name))
        prefix = name + ".weights."
        w = {k[len(prefix):]: torch.from_numpy(t.astype(np.float64)) for k, t in tensors.items() if k.startswith(prefix)}
        if set(w) != set(fwd.param_shapes(c)):
            sys.exit("%s: the weights of %s are not those of its configuration" % (path, name))
        batches = [(tensors["%s.batch%d.inputs" % (name, b)].copy(), tensors["%s.batch%d.targets" % (name, b)].copy())
                   for b in range(len(BATCH_SHAPES))]
        if [x.shape for x, _ in batches] != BATCH_SHAPES:
            sys.exit("%s: the batches of %s are not %r" % (path, name, BATCH_SHAPES))
        models[name] = (c, w, batches, tensors[name + ".train_counts"].copy())
    return models


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out_dir", nargs="?", default=os.path.dirname(os.path.abspath(__file__)), metavar="OUT_DIR")
    what = parser.add_mutually_exclusive_group()
    what.add_argument("--weights", metavar="FILE", help="models, batches and counts from FILE (no training)")
    what.add_argument("--weights-only", action="store_true", help="write only the safetensors")
    args = parser.parse_args()
    out_dir = args.out_dir
    torch.set_default_dtype(torch.float64)
    torch.set_num_threads(1)  # tiny tensors: threads only add overhead (and the result never depends on them)
    models = load_models(args.weights) if args.weights else build_models()
    tensors, metadata = {}, {"cases": ",".join(MODELS), "generator": "tests/golden/make_analysis_golden.py"}
    for name, (c, w, batches, counts) in models.items():
        metadata[name + ".config"] = json.dumps({k: v for k, v in c.items()}, sort_keys=True)
        for k, t in w.items():
            tensors["%s.weights.%s" % (name, k)] = t.float().numpy()
        for b, (x, y) in enumerate(batches):
            tensors["%s.batch%d.inputs" % (name, b)] = x.astype(np.int64)
            tensors["%s.batch%d.targets" % (name, b)] = y.astype(np.int64)
        tensors[name + ".train_counts"] = counts
        x0, y0 = batches[0]
        with torch.no_grad():
            out = fwd.run(c, w, torch.from_numpy(x0))
        h = out["blocks.0.resid_post"].numpy().reshape(-1, c["d_model"])
        check_gradient_against_autograd(c, w, h, y0.reshape(-1),
                                        lens_probs(c, w, out["final"].numpy().reshape(-1, c["d_model"])))
    if args.weights_only:
        fwd.write_safetensors(os.path.join(out_dir, "analysis_golden.safetensors"), tensors, metadata)
        return

    cases = {}
    for case, (model, granularity, chunk, freq_bins, seed, with_meta, resamples, permutations) in CASES.items():
        c, w, batches, counts = models[model]
        cases[case] = {"model": model,
                       "analysis": {"granularity": granularity, "chunk": chunk, "freq_bins": freq_bins,
                                    "seed": seed, "bootstrap": resamples, "permutations": permutations},
                       "meta": with_meta,
                       "expected": analyse(c, w, batches, granularity, freq_bins, seed,
                                           counts if with_meta else None, resamples, permutations)}
    fwd.write_safetensors(os.path.join(out_dir, "analysis_golden.safetensors"), tensors, metadata)
    cases = rounded(cases)
    path = os.path.join(out_dir, "analysis_golden.json")
    with open(path + ".tmp", "w") as f:
        json.dump({"generator": "tests/golden/make_analysis_golden.py", "cases": cases}, f,
                  sort_keys=True, separators=(",", ":"))
        f.write("\n")
    os.replace(path + ".tmp", path)
    for p in ("analysis_golden.safetensors", "analysis_golden.json"):
        print("wrote %s (%d bytes)" % (os.path.join(out_dir, p), os.path.getsize(os.path.join(out_dir, p))))
    for name in MODELS:
        e = cases[name + ".block"]["expected"]
        print("%-36s final_loss %.3f  alignment %s" % (
            name, e["final_loss"], " ".join("%.3f" % s["alignment"]["mean"] for s in e["steps"])))


if __name__ == "__main__":
    main()
