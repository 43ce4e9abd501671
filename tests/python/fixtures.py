"""metalm output files for the plot and report tests: the exact layout metalm writes.

`make_analysis` builds an analysis object with every key, at the same place and of the
same type, as `metalm::analyze_model` (src/analysis/analyze_model.cpp, report.cpp;
docs/analysis-schema.md), including "format"/"version". The numbers are made up but shaped
like a real run (loss falling with depth in a trained model, norms growing, a large
position-0 norm), so every figure has something to draw. test_plots.RealOutput compares
the key structure of these objects with a real `metalm analyze` run, so the two cannot
drift apart; `real_layout` builds the report layout from real metalm runs.
"""
from __future__ import annotations

import json
import math
import os
import random
import subprocess
import tempfile
import unittest
from typing import Dict, List, Optional

STATS = ("mean", "std", "median", "q10", "q90")
# The step statistics with per-position means (kPositional in trajectory.hpp).
STEP_POSITIONAL = ("alignment", "alignment_random_target", "step_size", "loss_before", "loss_after", "norm_before",
                   "norm_update")
STATE_POSITIONAL = ("loss", "norm")

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))


def stats(rng: random.Random, mean: float, spread: float) -> Dict[str, float]:
    s = abs(spread) + 1e-3
    return {"mean": mean, "std": s, "median": mean + 0.1 * s * rng.uniform(-1, 1),
            "q10": mean - 1.28 * s, "q90": mean + 1.28 * s}


def sites(n_layers: int, granularity: str) -> List[str]:
    """The state names of metalm's trajectory (analyze_model.cpp trajectory_names)."""
    out = ["blocks.0.resid_pre"]
    for l in range(n_layers):
        if granularity == "sublayer":
            out.append(f"blocks.{l}.resid_mid")
        out.append("final" if l + 1 == n_layers else f"blocks.{l}.resid_post")
    return out


def count_ranges(n_bins: int, max_count: int) -> List[List[float]]:
    """FrequencyBins::lower/upper: (M+1)^(i/n) - 1 ... (M+1)^((i+1)/n) - 1."""
    lm = math.log(max_count + 1)
    return [[math.exp(lm * i / n_bins) - 1, math.exp(lm * (i + 1) / n_bins) - 1] for i in range(n_bins)]


def freq_groups(rng: random.Random, ranges, means: Dict[str, float], slope: float, positions: int) -> List[Dict]:
    """One entry per frequency bin: bin, count_lo, count_hi, positions and the mean of every field."""
    out = []
    for i, (lo, hi) in enumerate(ranges):
        g = {"bin": i, "count_lo": lo, "count_hi": hi, "positions": max(positions - 7 * i, 0)}
        for key, m in means.items():
            g[key] = m * (1 + slope * i + 0.02 * rng.random())
        out.append(g)
    return out


def masked(means: Dict[str, float], count: int, scale: float) -> Dict:
    out = {"count": count}
    out.update({k: v * scale for k, v in means.items()})
    return out


def make_analysis(n_layers: int = 3, granularity: str = "block", positions: int = 12, d_model: int = 64,
                  trained: float = 1.0, seed: int = 0, step: Optional[int] = None, with_meta: bool = True,
                  batch_size: int = 4, vocab_size: int = 256, n_bins: int = 5, from_cli: bool = False) -> Dict:
    """One analysis object as metalm writes it. `trained` in [0, 1] scales how much the model has
    learned; `with_meta` adds the frequency aggregates (an analysis given a meta.json); `step` is
    the outer step of the analysed checkpoint; `from_cli` adds what `metalm analyze --out` adds
    to the library's object ("checkpoint", "source")."""
    rng = random.Random(seed)
    names = sites(n_layers, granularity)
    n = len(names)
    tokens = batch_size * (positions - 1) + 1  # as if one sequence ended one token early
    start, end = math.log(vocab_size), math.log(vocab_size) - 3.0 * trained
    losses = [start + (end - start) * k / (n - 1) for k in range(n)]
    norms = [4.0 * (1.0 + 0.6 * k) for k in range(n)]
    ranges = count_ranges(n_bins, 5000)

    states = []
    for k, site in enumerate(names):
        s = {"index": k, "site": site, "loss": losses[k], "loss_summary": stats(rng, losses[k], 0.5),
             "norm": stats(rng, norms[k], 0.2 * norms[k]),
             "norm_grad": stats(rng, 0.3, 0.05) if k + 1 < n else None,
             "cos_state_grad": stats(rng, 0.0, 1e-6) if k + 1 < n else None,
             "cos_ones_grad": stats(rng, 0.0, 1e-6) if k + 1 < n else None,
             "norm_by_position": [norms[k] * (6.0 if p == 0 else 1.0 + 0.05 * rng.random()) for p in range(positions)],
             "loss_by_position": [losses[k] + 0.3 * (p == 0) for p in range(positions)]}
        if with_meta:
            rho = -0.3 + 0.5 * k / n
            s["norm_freq_spearman"] = {"current": rho, "target": -rho}
            means = {"norm": norms[k], "loss": losses[k]}
            s["norm_by_frequency"] = {"current": freq_groups(rng, ranges, means, -0.05 + 0.03 * k, tokens // 3),
                                      "target": freq_groups(rng, ranges, means, 0.02, tokens // 3)}
        states.append(s)

    steps = []
    for k in range(n - 1):
        align = 0.05 + 0.35 * trained * (1 - 0.1 * k)
        decrease = losses[k] - losses[k + 1]
        if granularity == "block":
            layer, kind = k, "block"
        else:
            layer, kind = k // 2, ("attn" if k % 2 == 0 else "mlp")
        update = norms[k + 1] - norms[k] + 1.0
        # The norm identity: growth = 2<s, Δ> + ‖Δ‖²; a gradient step explains part of ‖Δ‖².
        growth = norms[k + 1] ** 2 - norms[k] ** 2
        growth_radial = growth - update ** 2
        grad_growth = (0.1 + 0.3 * trained) * update ** 2
        means = {"alignment": align, "alignment_random_target": 0.02 + 0.1 * trained, "step_size": 0.5 + 0.2 * k,
                 "loss_before": losses[k], "loss_after": losses[k + 1], "norm_before": norms[k], "norm_update": update}
        curves = {key: [m * (0.2 if p == 0 else 1.0) for p in range(positions)] for key, m in means.items()}
        curves["loss_before"] = [losses[k] + 0.3 * (p == 0) for p in range(positions)]
        st = {"index": k, "from": names[k], "to": names[k + 1], "layer": layer, "kind": kind,
              "loss_before": losses[k], "loss_after": losses[k + 1],
              "alignment": stats(rng, align, 0.1),
              "alignment_random_target": stats(rng, means["alignment_random_target"], 0.08),
              "step_size": stats(rng, means["step_size"], 0.1),
              "step_size_random_target": stats(rng, 0.05, 0.1),
              "norm_before": stats(rng, norms[k], 0.2 * norms[k]),
              "norm_update": stats(rng, update, 0.5),
              "norm_grad": stats(rng, 0.3, 0.05),
              "relative_update": stats(rng, update / norms[k], 0.05),
              "cos_state_grad": stats(rng, 0.0, 1e-6),
              "radial_update": stats(rng, growth_radial / (2 * norms[k]), 0.1),
              "norm_sq_growth": growth, "norm_sq_growth_summary": stats(rng, growth, 0.2 * growth),
              "norm_sq_growth_radial": growth_radial, "norm_sq_growth_radial_summary": stats(rng, growth_radial, 1.0),
              "norm_sq_growth_update": update ** 2, "norm_sq_growth_update_summary": stats(rng, update ** 2, 1.0),
              "norm_sq_growth_gradient_step": grad_growth,
              "norm_sq_growth_gradient_step_summary": stats(rng, grad_growth, 0.5),
              "first_order_decrease": 1.3 * decrease + 0.01, "actual_decrease": decrease,
              "fraction_decreased": 0.5 + 0.4 * trained,
              "position_0": masked(means, batch_size, 0.2),
              "positions_after_0": masked(means, tokens - batch_size, 1.0),
              "by_position": dict(count=[batch_size] * (positions - 1) + [batch_size - 1], **curves)}
        if with_meta:
            st["by_frequency"] = {"current": freq_groups(rng, ranges, means, 0.03, tokens // 3),
                                  "target": freq_groups(rng, ranges, means, -0.03, tokens // 3)}
        steps.append(st)

    def table(mean: float, rho: float, slope: float) -> Dict:
        t = {"rows": vocab_size, "norm": stats(rng, mean, 0.2)}
        if with_meta:
            t["norm_freq_spearman"] = rho
            t["by_frequency"] = freq_groups(rng, ranges, {"norm": mean}, slope, vocab_size // n_bins)
        return t

    out = {"format": "metalm-analysis", "version": 1, "tokens": tokens, "batches": 1, "batch_size": batch_size,
           "seq_len": positions, "granularity": granularity, "d_model": d_model, "n_layer": n_layers,
           "vocab_size": vocab_size, "seed": 1234, "lens": "logit", "chance_alignment": 1 / math.sqrt(d_model),
           "final_loss": losses[-1], "steps": steps, "states": states,
           "tables": {"embedding": table(1.0, -0.4, -0.08), "unembedding": table(1.2, 0.5, 0.1), "tied": False}}
    if with_meta:
        out["frequency_bins"] = {"bins": n_bins, "count_ranges": ranges}
    if step is not None:
        out["step"] = step
    if from_cli:
        out["checkpoint"] = f"run/checkpoints/step_{step or 0:08d}"
        out["source"] = {"data": "data/val.bin"}
    return out


def make_metrics(steps: int = 100, every: int = 10, eval_every: int = 50) -> List[Dict]:
    rows = []
    for s in range(0, steps + 1, every):
        rows.append({"event": "train", "step": s, "loss": 5.5 * math.exp(-s / 60) + 1.5, "lr": 1e-3,
                     "grad_norm": 1.0, "tokens": 512 * s, "tokens_per_s": 3000.0, "elapsed_s": s * 0.2})
        if s % eval_every == 0:
            vl = 5.6 * math.exp(-s / 60) + 1.6
            rows.append({"event": "eval", "step": s, "val_loss": vl, "val_ppl": math.exp(vl),
                         "val_bpb": vl / math.log(2)})
    rows.append({"event": "checkpoint", "step": steps, "path": "ckpt"})  # unknown events are ignored
    return rows


def make_synthetic_icl(eta: float = 0.1) -> Dict:
    rng = random.Random(3)
    pts = []
    for n in (4, 16, 64, 256):
        a = 1 - 1 / math.sqrt(n)
        pts.append({"n": n, "alignment": stats(rng, a, 0.1 / math.sqrt(n)),
                    "step_size": stats(rng, eta * (1 + 0.5 / n), 0.01), "loss_before": 1.0,
                    "loss_after": 1.0 - 0.5 * a})
    return {"setting": "linear_icl", "d_x": 4, "eta": eta, "batch": 64, "points": pts}


def write_json(path: str, obj) -> str:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump(obj, f)
    return path


def write_jsonl(path: str, rows: List[Dict]) -> str:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")
    return path


def write_layout(out: str, settings=("tiny",), ckpt_steps=(50, 100), n_layers: int = 3) -> str:
    """The directory layout scripts/report.py reads (see its docstring)."""
    for i, name in enumerate(settings):
        root = os.path.join(out, name)
        write_jsonl(os.path.join(root, "run", "metrics.jsonl"), make_metrics(steps=max(ckpt_steps)))
        write_jsonl(os.path.join(root, "run", "analysis.jsonl"),
                    [make_analysis(n_layers, "block", trained=s / max(ckpt_steps), seed=s, step=s)
                     for s in (0,) + tuple(ckpt_steps)])
        for g in ("block", "sublayer"):
            write_json(os.path.join(root, "analysis", f"untrained_{g}.json"),
                       make_analysis(n_layers, g, trained=0.0, seed=1 + i, step=0, from_cli=True))
            for s in ckpt_steps:
                write_json(os.path.join(root, "analysis", f"step{s}_{g}.json"),
                           make_analysis(n_layers, g, trained=s / max(ckpt_steps), seed=s + i, step=s, from_cli=True))
    write_json(os.path.join(out, "synthetic_icl.json"), make_synthetic_icl())
    with open(os.path.join(out, "commands.txt"), "w") as f:
        f.write("metalm train --config configs/tiny.json --run tiny/run\n"
                "metalm analyze --checkpoint tiny/run/ckpt --out tiny/analysis/step100_block.json\n")
    return out


# ----------------------------------------------------------------------------- real metalm output

def metalm_bin() -> Optional[str]:
    """The metalm binary: $METALM_BIN (set by ctest), else the default build tree's."""
    for path in (os.environ.get("METALM_BIN"), os.path.join(REPO, "build", "apps", "metalm")):
        if path and os.access(path, os.X_OK):
            return path
    return None


def real_layout_or_skip(prefix: str):
    """A temporary directory (prefix PREFIX) holding real_layout's output, and the layout's path;
    unittest.SkipTest when no metalm binary is built. The caller cleans the directory up."""
    metalm = metalm_bin()
    if metalm is None:
        raise unittest.SkipTest("no metalm binary (set METALM_BIN or build build/apps/metalm)")
    tmp = tempfile.TemporaryDirectory(prefix=prefix)
    return tmp, real_layout(tmp.name, metalm)


def real_layout(out: str, metalm: str) -> str:
    """The report layout of scripts/reproduce.sh made by real metalm runs, scaled down to
    seconds: a byte-level corpus of metalm's own headers, configs/tiny.json trained 4 steps
    (checkpoints 0, 2, 4; analysis.jsonl every 2 steps), every checkpoint analysed with the
    dataset's meta.json, and a small synthetic-icl sweep."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}

    def m(*args):
        r = subprocess.run([metalm, "--log-level", "error", "--threads", "1", *args], env=env,
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        if r.returncode != 0:
            raise RuntimeError(f"metalm {args[0]} exited {r.returncode}: {r.stderr.strip()}")

    corpus = os.path.join(out, "corpus")
    os.makedirs(corpus)
    inc = os.path.join(REPO, "include", "metalm")
    for sub in sorted(os.listdir(inc)):
        d = os.path.join(inc, sub)
        for name in sorted(os.listdir(d)) if os.path.isdir(d) else []:
            with open(os.path.join(d, name), "rb") as src, open(os.path.join(corpus, f"{sub}_{name}"), "wb") as dst:
                dst.write(src.read())
    data = os.path.join(out, "data")
    m("prepare", "--tokenizer", "byte", "--input", corpus, "--val-fraction", "0.2", "--out", data)
    run = os.path.join(out, "tiny", "run")
    m("train", "--config", os.path.join(REPO, "configs", "tiny.json"), "--run-dir", run,
      "--set", f"data.dir={data}", "--set", "train.steps=4", "--set", "train.eval_every=2",
      "--set", "train.log_every=1", "--set", "train.save_steps=0,2,4", "--set", "analysis.every=2",
      "--set", "analysis.batch_size=2")
    adir = os.path.join(out, "tiny", "analysis")
    os.makedirs(adir)
    for k, label, grans in ((0, "untrained", ("block", "sublayer")), (2, "step2", ("block",)),
                            (4, "step4", ("block", "sublayer"))):
        for g in grans:
            m("analyze", "--checkpoint", os.path.join(run, "checkpoints", f"step_{k:08d}"),
              "--data", os.path.join(data, "val.bin"), "--meta", data, "--batches", "1", "--batch-size", "2",
              "--seq-len", "32", "--granularity", g, "--out", os.path.join(adir, f"{label}_{g}.json"))
    m("synthetic-icl", "--n", "4,16", "--batch", "8", "--out", os.path.join(out, "synthetic_icl.json"))
    return out


def key_structure(v, path: str = "") -> Dict[str, set]:
    """Every key path of a JSON value and the JSON types found there; list elements share one
    path `[]`. null is not a type here: any statistic may be null (no finite value)."""
    kind = {dict: "object", list: "list", str: "string", bool: "bool", type(None): None}.get(type(v), "number")
    out: Dict[str, set] = {path: {kind} if kind else set()}

    def merge(d):
        for k, t in d.items():
            out.setdefault(k, set()).update(t)

    if isinstance(v, dict):
        for k, x in v.items():
            merge(key_structure(x, f"{path}.{k}" if path else k))
    elif isinstance(v, list):
        for x in v:
            merge(key_structure(x, f"{path}[]"))
    return out
