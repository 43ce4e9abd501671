"""Synthetic metalm output files in the documented schemas, for the plot and report tests.

The numbers are made up but shaped like the real thing (loss falling with depth in a
trained model, norms growing, a large position-0 norm), so the figures exercise every
code path: block and sublayer granularity, optional freq_bins/tables, several checkpoints.
"""
from __future__ import annotations

import json
import math
import os
import random
from typing import Dict, List, Optional

STATS = ("mean", "std", "median", "q10", "q90")


def stats(rng: random.Random, mean: float, spread: float) -> Dict[str, float]:
    s = abs(spread) + 1e-3
    return {"mean": mean, "std": s, "median": mean + 0.1 * s * rng.uniform(-1, 1),
            "q10": mean - 1.28 * s, "q90": mean + 1.28 * s}


def _sites(n_layers: int, granularity: str) -> List[str]:
    sites = []
    for l in range(n_layers):
        sites.append(f"blocks.{l}.resid_pre")
        if granularity == "sublayer":
            sites.append(f"blocks.{l}.resid_mid")
    return sites + ["final"]


def freq_bins(rng: random.Random, base: float, slope: float, n: int = 5) -> List[Dict]:
    out = []
    for i in range(n):
        lo, hi = 10.0 ** i, 10.0 ** (i + 1)
        out.append({"lo": lo, "hi": hi, "count": 50 - 8 * i, "norm_mean": base * (1 + slope * i + 0.02 * rng.random()),
                    "loss_mean": 5.0 - 0.5 * i})
    return out


def make_analysis(n_layers: int = 3, granularity: str = "block", positions: int = 12, d_model: int = 64,
                  trained: float = 1.0, seed: int = 0, step: Optional[int] = None,
                  with_optional: bool = True) -> Dict:
    """One `metalm analyze` object. `trained` in [0, 1] scales how much the model has learned."""
    rng = random.Random(seed)
    sites = _sites(n_layers, granularity)
    n = len(sites)
    start, end = math.log(256), math.log(256) - 3.0 * trained
    losses = [start + (end - start) * k / (n - 1) for k in range(n)]
    norms = [4.0 * (1.0 + 0.6 * k) for k in range(n)]
    states = []
    for k, site in enumerate(sites):
        by_pos = [norms[k] * (6.0 if p == 0 else 1.0 + 0.05 * rng.random()) for p in range(positions)]
        s = {"site": site, "loss": losses[k], "norm": stats(rng, norms[k], 0.2 * norms[k]),
             "norm_by_position": by_pos, "norm_freq_spearman": -0.3 + 0.5 * k / n}
        if with_optional:
            s["freq_bins"] = freq_bins(rng, norms[k], -0.05 + 0.03 * k)
            s["loss_by_position"] = [losses[k] + 0.3 * (p == 0) for p in range(positions)]
        states.append(s)
    steps = []
    for k in range(n - 1):
        align = 0.05 + 0.35 * trained * (1 - 0.1 * k)
        decrease = losses[k] - losses[k + 1]
        st = {"from": sites[k], "to": sites[k + 1], "loss_before": losses[k], "loss_after": losses[k + 1],
              "alignment": stats(rng, align, 0.1), "alignment_random_target": stats(rng, 0.02 + 0.1 * trained, 0.08),
              "step_size": stats(rng, 0.5 + 0.2 * k, 0.1), "norm_before": stats(rng, norms[k], 0.2 * norms[k]),
              "norm_update": stats(rng, norms[k + 1] - norms[k] + 1.0, 0.5),
              "norm_grad": stats(rng, 0.3, 0.05),
              "first_order_decrease": 1.3 * decrease + 0.01, "actual_decrease": decrease,
              "by_position": {"alignment": [align * (0.2 if p == 0 else 1.0) for p in range(positions)],
                              "loss_before": [losses[k] + 0.3 * (p == 0) for p in range(positions)]}}
        if with_optional:
            st["by_freq"] = [{"lo": 1, "hi": 10, "count": 5, "alignment": align}]
        steps.append(st)
    out = {"tokens": 4 * positions, "granularity": granularity, "final_loss": losses[-1],
           "chance_alignment": 1 / math.sqrt(d_model), "steps": steps, "states": states,
           "extra_key_from_a_newer_analyzer": {"ignored": True}}
    if with_optional:
        out["tables"] = {
            "embedding": {"norm": stats(rng, 1.0, 0.2), "spearman_vs_freq": -0.4, "freq_bins": freq_bins(rng, 1.0, -0.08)},
            "unembedding": {"norm": stats(rng, 1.2, 0.2), "spearman_vs_freq": 0.5, "freq_bins": freq_bins(rng, 1.2, 0.1)}}
    if step is not None:
        out["step"] = step
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
                       make_analysis(n_layers, g, trained=0.0, seed=1 + i))
            for s in ckpt_steps:
                write_json(os.path.join(root, "analysis", f"step{s}_{g}.json"),
                           make_analysis(n_layers, g, trained=s / max(ckpt_steps), seed=s + i))
    write_json(os.path.join(out, "synthetic_icl.json"), make_synthetic_icl())
    with open(os.path.join(out, "commands.txt"), "w") as f:
        f.write("metalm train --config configs/tiny.json --run tiny/run\n"
                "metalm analyze --checkpoint tiny/run/ckpt --out tiny/analysis/step100_block.json\n")
    return out


def to_analyzer_style(a: Dict) -> Dict:
    """The same analysis in the shape src/analysis/report.cpp writes for frequency data:
    correlations and bins keyed by "current"/"target" token, count_lo/count_hi bins."""
    a = json.loads(json.dumps(a))

    def bins(bs, norm_key="norm"):
        return [{"bin": i, "count_lo": b["lo"], "count_hi": b["hi"], "positions": b["count"],
                 norm_key: b["norm_mean"], "loss": b.get("loss_mean")} for i, b in enumerate(bs)]

    for s in a["states"]:
        rho = s.pop("norm_freq_spearman")
        s["norm_freq_spearman"] = {"current": rho, "target": -rho}
        if "freq_bins" in s:
            s["norm_by_frequency"] = {"current": bins(s.pop("freq_bins")), "target": []}
    for t in a.get("tables", {}).values():
        t["norm_freq_spearman"] = t.pop("spearman_vs_freq")
        if "freq_bins" in t:
            t["by_frequency"] = bins(t.pop("freq_bins"))
    for st in a["steps"]:
        st["step_size_random_target"] = None
    return a
