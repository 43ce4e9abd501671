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
import sys
import tempfile
import unittest
from typing import Dict, List, Optional

STATS = ("mean", "std", "median", "q10", "q90")
# The step statistics with per-position means (kPositional in trajectory.hpp).
STEP_POSITIONAL = ("loss_before", "loss_after", "alignment", "alignment_uniform", "alignment_shuffled",
                   "alignment_bigram", "alignment_belief", "step_size", "step_size_scaled", "norm_before",
                   "norm_update")
STATE_POSITIONAL = ("loss", "norm")
MATCHED = ("shuffled", "bigram", "belief")
CONTROLS = ("uniform",) + MATCHED + ("permuted",)

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
PLOT = os.path.join(REPO, "scripts", "plots", "plot.py")


def run_plot(*args: str) -> subprocess.CompletedProcess:
    """scripts/plots/plot.py ARGS as a user runs it (Agg backend), output captured."""
    return subprocess.run([sys.executable, PLOT, *args], capture_output=True, text=True,
                          env={**os.environ, "MPLBACKEND": "Agg"})


def assert_refused(test: unittest.TestCase, r: subprocess.CompletedProcess, message: str, out: str):
    """Exit 1 with one line on stderr containing MESSAGE, and nothing written at OUT."""
    test.assertEqual(r.returncode, 1)
    test.assertEqual(len(r.stderr.strip().splitlines()), 1, r.stderr)
    test.assertIn(message, r.stderr)
    test.assertFalse(os.path.exists(out))


def stats(rng: random.Random, mean: float, spread: float, half: Optional[float] = None) -> Dict:
    """A summary as metalm writes it: five figures over positions and the mean's 95 % interval "ci"
    (half-width `half`, default a tenth of the spread: a bootstrap interval of a mean is much
    narrower than the spread of the values)."""
    s = abs(spread) + 1e-3
    h = 0.1 * s if half is None else half
    return {"mean": mean, "std": s, "median": mean + 0.1 * s * rng.uniform(-1, 1),
            "q10": mean - 1.28 * s, "q90": mean + 1.28 * s, "ci": [mean - h, mean + 0.9 * h]}


def mean_ci(out: Dict, key: str, mean: float, half: float):
    """A plain mean "<key>" with its interval "<key>_ci"."""
    out[key] = mean
    out[f"{key}_ci"] = [mean - half, mean + 1.1 * half]


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


def set_gap(step: Dict, control: str, mean: float, lo: float, hi: float):
    """Make step's gap against `control` exactly (mean, [lo, hi]): the control's alignment mean
    becomes alignment − gap, as metalm's gap of the means is when both are finite at the same
    positions, and "strongest_control" is recomputed as metalm chooses it."""
    step["gaps"][control] = {"mean": mean, "ci": [lo, hi]}
    a = step["alignment"]["mean"] - mean
    ctl = step[f"alignment_{control}"]
    shift = a - ctl["mean"]
    for q in ("mean", "median", "q10", "q90"):
        ctl[q] += shift
    ctl["ci"] = [ctl["ci"][0] + shift, ctl["ci"][1] + shift]
    finite = [c for c in MATCHED if step["gaps"][c]["mean"] is not None]
    step["strongest_control"] = min(finite, key=lambda c: step["gaps"][c]["mean"]) if finite else None


def make_analysis(n_layers: int = 3, granularity: str = "block", positions: int = 12, d_model: int = 64,
                  trained: float = 1.0, seed: int = 0, step: Optional[int] = None, with_meta: bool = True,
                  batch_size: int = 4, vocab_size: int = 256, n_bins: int = 5, from_cli: bool = False,
                  lens: str = "logit") -> Dict:
    """One analysis object (version 2) as metalm writes it. `trained` in [0, 1] scales how much the
    model has learned (alignment, its gaps over the controls, the lens loss's fall); `with_meta` adds
    the frequency aggregates (an analysis given a meta.json); `step` is the outer step of the analysed
    checkpoint; `from_cli` adds what `metalm analyze --out` adds to the library's object
    ("checkpoint", "source"). `set_gap` then sets any gap exactly."""
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
        s = {"index": k, "site": site, "loss_summary": stats(rng, losses[k], 0.5),
             "norm": stats(rng, norms[k], 0.2 * norms[k]),
             "norm_grad": stats(rng, 0.3, 0.05) if k + 1 < n else None,
             "cos_state_grad": stats(rng, 0.0, 1e-6) if k + 1 < n else None,
             "cos_ones_grad": stats(rng, 0.0, 1e-6) if k + 1 < n else None,
             "norm_by_position": [norms[k] * (6.0 if p == 0 else 1.0 + 0.05 * rng.random()) for p in range(positions)],
             "loss_by_position": [losses[k] + 0.3 * (p == 0) for p in range(positions)]}
        mean_ci(s, "loss", losses[k], 0.05)
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
        # The norm identity: growth = 2<s, Δ> + ‖Δ‖².
        growth = norms[k + 1] ** 2 - norms[k] ** 2
        growth_radial = growth - update ** 2
        signed = (0.1 + 0.3 * trained) * update ** 2
        gap = {"uniform": 0.02 + 0.3 * trained, "shuffled": 0.01 + 0.10 * trained,
               "bigram": 0.005 + 0.08 * trained, "belief": 0.02 + 0.12 * trained, "permuted": align - 0.001}
        ctl = {c: align - g for c, g in gap.items()}
        eta = 0.5 + 0.2 * k
        means = {"loss_before": losses[k], "loss_after": losses[k + 1], "alignment": align,
                 **{f"alignment_{c}": ctl[c] for c in ("uniform",) + MATCHED}, "step_size": eta,
                 "step_size_scaled": eta / norms[k] ** 2, "norm_before": norms[k], "norm_update": update}
        curves = {key: [m * (0.2 if p == 0 else 1.0) for p in range(positions)] for key, m in means.items()}
        curves["loss_before"] = [losses[k] + 0.3 * (p == 0) for p in range(positions)]
        st = {"index": k, "from": names[k], "to": names[k + 1], "layer": layer, "kind": kind,
              "alignment": stats(rng, align, 0.1)}
        for c in CONTROLS:
            st[f"alignment_{c}"] = stats(rng, ctl[c], 0.08)
        for c in ("uniform",) + MATCHED:
            st[f"step_size_{c}"] = stats(rng, eta * ctl[c] / align, 0.1)
        st.update({
            "alignment_unexplained": stats(rng, 0.6 * align, 0.1), "cos_grad_belief": stats(rng, 0.7, 0.1),
            "step_size": stats(rng, eta, 0.1), "step_size_scaled": stats(rng, eta / norms[k] ** 2, 0.001),
            "angular_step": stats(rng, 0.2 + 0.05 * k, 0.05),
            "norm_before": stats(rng, norms[k], 0.2 * norms[k]),
            "norm_update": stats(rng, update, 0.5),
            "norm_grad": stats(rng, 0.3, 0.05),
            "relative_update": stats(rng, update / norms[k], 0.05),
            "cos_state_grad": stats(rng, 0.0, 1e-6),
            "radial_update": stats(rng, growth_radial / (2 * norms[k]), 0.1)})
        for key, m, half in (("loss_before", losses[k], 0.05), ("loss_after", losses[k + 1], 0.05),
                             ("first_order_decrease", 1.3 * decrease + 0.01, 0.1),
                             ("actual_decrease", decrease, 0.04), ("fraction_decreased", 0.5 + 0.4 * trained, 0.03),
                             ("bigram_fallback", 0.1, 0.02), ("norm_sq_growth", growth, 0.1 * growth),
                             ("norm_sq_growth_radial", growth_radial, 1.0), ("norm_sq_growth_update", update ** 2, 1.0),
                             ("norm_sq_growth_gradient_signed", signed, 0.2),
                             ("norm_sq_growth_gradient_signed_permuted", 0.01 * update ** 2, 0.2)):
            mean_ci(st, key, m, half)
            if key.startswith("norm_sq_growth"):
                st[f"{key}_summary"] = stats(rng, m, abs(m) * 0.2 + 0.5)
        st["gaps"] = {c: {"mean": g, "ci": [g - 0.02, g + 0.02]} for c, g in gap.items()}
        st["strongest_control"] = min(MATCHED, key=lambda c: gap[c])
        st["null_band"] = [-0.004 - 0.001 * k, 0.005 + 0.001 * k]
        st.update({"position_0": masked(means, batch_size, 0.2),
                   "positions_after_0": masked(means, tokens - batch_size, 1.0),
                   "by_position": dict(count=[batch_size] * (positions - 1) + [batch_size - 1], **curves)})
        if with_meta:
            st["by_frequency"] = {"current": freq_groups(rng, ranges, means, 0.03, tokens // 3),
                                  "target": freq_groups(rng, ranges, means, -0.03, tokens // 3)}
        steps.append(st)

    def table(mean: float, rho: float, slope: float) -> Dict:
        t = {"rows": vocab_size, "norm": stats(rng, mean, 0.2)}
        del t["norm"]["ci"]  # token tables are not means over sequences: no bootstrap interval
        if with_meta:
            t["norm_freq_spearman"] = rho
            t["by_frequency"] = freq_groups(rng, ranges, {"norm": mean}, slope, vocab_size // n_bins)
        return t

    out = {"format": "metalm-analysis", "version": 2, "tokens": tokens, "batches": 1, "batch_size": batch_size,
           "seq_len": positions, "granularity": granularity, "d_model": d_model, "n_layer": n_layers,
           "vocab_size": vocab_size, "seed": 1234, "lens": lens,
           "chance_alignment_per_token": 1 / math.sqrt(d_model),
           "bootstrap": {"resamples": 1000, "seed": 1234, "level": 0.95, "clusters": batch_size},
           "permutations": 100, "final_loss": losses[-1], "steps": steps, "states": states,
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
        pts.append({"n": n, "alignment": stats(rng, a, 0.1 / math.sqrt(n)), "alignment_uniform": stats(rng, 0.0, 0.1),
                    "step_size": stats(rng, eta * (1 + 0.5 / n), 0.01), "loss_before": 1.0,
                    "loss_after": 1.0 - 0.5 * a})
    for p in pts:  # synthetic-icl's summaries have no bootstrap interval
        for key in ("alignment", "alignment_uniform", "step_size"):
            del p[key]["ci"]
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


def write_layout(out: str, settings=("tiny",), ckpt_steps=(50, 100), n_layers: int = 3, seeds=(1337, 1338),
                 tuned: bool = False) -> str:
    """The directory layout scripts/experiments/report.py reads (see its docstring): OUT/<setting>/seed<S>/...
    for every seed, each seed's files drawn with their own numbers."""
    for i, name in enumerate(settings):
        for j, sd in enumerate(seeds):
            root = os.path.join(out, name, f"seed{sd}")
            v = 100 * i + 10 * j  # a different draw per setting and seed
            write_jsonl(os.path.join(root, "run", "metrics.jsonl"), make_metrics(steps=max(ckpt_steps)))
            write_jsonl(os.path.join(root, "run", "analysis.jsonl"),
                        [make_analysis(n_layers, "block", trained=s / max(ckpt_steps), seed=s + v, step=s)
                         for s in (0,) + tuple(ckpt_steps)])
            for g in ("block", "sublayer"):
                write_json(os.path.join(root, "analysis", f"untrained_{g}.json"),
                           make_analysis(n_layers, g, trained=0.0, seed=1 + v, step=0, from_cli=True))
                for s in ckpt_steps:
                    write_json(os.path.join(root, "analysis", f"step{s}_{g}.json"),
                               make_analysis(n_layers, g, trained=s / max(ckpt_steps), seed=s + v, step=s,
                                             from_cli=True))
                if tuned:
                    k = max(ckpt_steps)
                    write_json(os.path.join(root, "analysis", f"tuned_step{k}_{g}.json"),
                               make_analysis(n_layers, g, trained=0.3, seed=7 + v, step=k, from_cli=True,
                                             lens="tuned:lens.safetensors"))
            with open(os.path.join(root, "done"), "w") as f:
                f.write("done\n")
    write_json(os.path.join(out, "synthetic_icl.json"), make_synthetic_icl())
    with open(os.path.join(out, "commands.txt"), "w") as f:
        f.write("metalm train --config configs/tiny.json --run tiny/seed1337/run\n"
                "metalm analyze --checkpoint tiny/seed1337/run/ckpt --out tiny/seed1337/analysis/step100_block.json\n")
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


def real_layout(out: str, metalm: str, seeds=(1337, 1338)) -> str:
    """The report layout of scripts/experiments/reproduce.sh made by real metalm runs, scaled down to
    seconds: a byte-level corpus of metalm's own headers, configs/tiny.json trained 4 steps per
    seed (train.seed = each of `seeds`; checkpoints 0, 2, 4; analysis.jsonl every 2 steps), every
    checkpoint analysed with the dataset's meta.json (few bootstrap resamples and permutations),
    a tuned lens of 2 steps for each seed's final checkpoint and its analysis in the one coordinate
    system, and a small synthetic-icl sweep."""
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
    small = ("--set", "analysis.bootstrap=50", "--set", "analysis.permutations=20")
    for sd in seeds:
        root = os.path.join(out, "tiny", f"seed{sd}")
        run = os.path.join(root, "run")
        m("train", "--config", os.path.join(REPO, "configs", "tiny.json"), "--run-dir", run,
          "--set", f"data.dir={data}", "--set", f"train.seed={sd}", "--set", "train.steps=4",
          "--set", "train.eval_every=2", "--set", "train.log_every=1", "--set", "train.save_steps=0,2,4",
          "--set", "analysis.every=2", "--set", "analysis.batch_size=2", *small)
        adir = os.path.join(root, "analysis")
        os.makedirs(adir)
        final = os.path.join(run, "checkpoints", f"step_{4:08d}")
        lens = os.path.join(root, "lens.safetensors")
        m("lens-train", "--checkpoint", final, "--data", os.path.join(data, "train.bin"), "--steps", "2",
          "--batch-size", "2", "--seq-len", "32", "--out", lens)
        for k, label, grans, extra in ((0, "untrained", ("block", "sublayer"), ()), (2, "step2", ("block",), ()),
                                       (4, "step4", ("block", "sublayer"), ()),
                                       (4, "tuned_step4", ("block",), ("--lens", f"tuned:{lens}"))):
            for g in grans:
                m("analyze", "--checkpoint", os.path.join(run, "checkpoints", f"step_{k:08d}"),
                  "--data", os.path.join(data, "val.bin"), "--meta", data, "--batches", "2", "--batch-size", "2",
                  "--seq-len", "32", "--granularity", g, *extra, "--out", os.path.join(adir, f"{label}_{g}.json"))
        with open(os.path.join(root, "done"), "w") as f:
            f.write("done\n")
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
