#!/usr/bin/python3
"""Draw one metalm figure from metalm's output files (PNG, Agg backend).

Usage (run with Debian's /usr/bin/python3; see docs/figures.md for how to read each figure):

  plot.py f1 [--untrained FILE] [--tuned FILE] [LABEL=]FILE ... --out PNG   inner loss per layer, one line per
                                                             checkpoint (label defaults to "step <k>" from
                                                             step<k>_*.json); --tuned: the tuned lens's one
                                                             coordinate system
  plot.py f2 --block FILE [--sublayer FILE] [--untrained FILE] [--tuned FILE] --out PNG   alignment cos(Δ, −∇ℓ)
                                                             against the matched controls with 95 % intervals,
                                                             the permutation null band and the gaps
  plot.py f3 --block FILE [--sublayer FILE] --out PNG        scale-free step sizes; first-order vs actual decrease
  plot.py f4 --block FILE [--sublayer FILE] --out PNG        norms per layer; layer x position map
  plot.py f5 FILE --out PNG                                  norm vs token frequency; Spearman ρ per layer
  plot.py f6 RUN_DIR/analysis.jsonl --out PNG                statistics per layer vs outer training step
  plot.py f7 FILE --out PNG                                  layer x position maps of inner loss, alignment
  plot.py f8 SYNTHETIC_ICL.json --out PNG                    linear-attention ICL: alignment, recovered η vs N
  plot.py f9 FILE [--untrained FILE] --out PNG               norm growth and its parts; signed gradient-step
                                                             growth vs its permutation null; |cos(s, ∇ℓ)| check
  plot.py f10 INTERVENE.json --out PNG                       causal tests: loss change when parts of each update
                                                             are removed; the line search along each update
  plot.py f11 ICL_COMPARE.json --out PNG                     in-context regression: loss vs N of the trained model
                                                             and each reference algorithm; cosines per algorithm
  plot.py train RUN_DIR/metrics.jsonl --out PNG              training loss and validation bits/byte

FILE is an analysis JSON (version 2) written by `metalm analyze --out FILE`. A missing or malformed input
exits with status 1 and one line `plot.py: error: FILE: key: what is wrong`.
"""
from __future__ import annotations

import argparse
import os
import re
import sys

# The plots package is this file's folder: import it from scripts/.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import plots  # noqa: E402
from plots.icl import fig_icl_compare, load_icl_compare  # noqa: E402
from plots.intervene import fig_intervene, load_intervene  # noqa: E402
from plots.load import Analysis, InputError  # noqa: E402

_STEP_IN_NAME = re.compile(r"step(\d+)")


def checkpoint_label(path: str, a: Analysis) -> tuple:
    """(sort key, label) for a checkpoint file: step<k> in its name, else its "step" key, else its name."""
    m = _STEP_IN_NAME.search(os.path.basename(path))
    if m:
        return int(m.group(1)), f"step {int(m.group(1))}"
    if a.outer_step is not None:
        return a.outer_step, f"step {a.outer_step}"
    return float("inf"), os.path.splitext(os.path.basename(path))[0]


def load_checkpoints(specs):
    """`[LABEL=]FILE` arguments -> [(label, Analysis)] in outer-step order."""
    out = []
    for spec in specs:
        label, path = (spec.split("=", 1) if "=" in spec and not os.path.exists(spec) else (None, spec))
        a = plots.load_analysis(path)
        key, auto = checkpoint_label(path, a)
        out.append((key, label or auto, a))
    out.sort(key=lambda t: (t[0], t[1]))
    return [(label, a) for _, label, a in out]


def _opt(path):
    return plots.load_analysis(path) if path else None


def build(args) -> "plots.style.Figure":
    f = args.figure
    if f == "f1":
        return plots.fig_inner_loss(load_checkpoints(args.files), _opt(args.untrained), _opt(args.tuned))
    if f == "f2":
        return plots.fig_alignment(plots.load_analysis(args.block), _opt(args.sublayer), _opt(args.untrained),
                                   _opt(args.tuned))
    if f == "f3":
        return plots.fig_step_size(plots.load_analysis(args.block), _opt(args.sublayer))
    if f == "f4":
        return plots.fig_norms(plots.load_analysis(args.block), _opt(args.sublayer))
    if f == "f5":
        return plots.fig_norm_freq(plots.load_analysis(args.file))
    if f == "f6":
        return plots.fig_evolution(plots.load_analysis_jsonl(args.file))
    if f == "f7":
        return plots.fig_position_heatmaps(plots.load_analysis(args.file))
    if f == "f8":
        return plots.fig_synthetic_icl(plots.load_synthetic_icl(args.file))
    if f == "f9":
        return plots.fig_norm_identity(plots.load_analysis(args.file), _opt(args.untrained))
    if f == "f10":
        return fig_intervene(load_intervene(args.file))
    if f == "f11":
        return fig_icl_compare(load_icl_compare(args.file))
    if f == "train":
        return plots.fig_training(plots.load_metrics(args.file))
    raise AssertionError(f)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="plot.py", description=__doc__.split("\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    sub = p.add_subparsers(dest="figure", required=True, metavar="FIGURE")

    def add(name, help_):
        s = sub.add_parser(name, help=help_)
        s.add_argument("--out", required=True, metavar="PNG", help="output PNG path")
        return s

    s = add("f1", "inner loss per layer across checkpoints")
    s.add_argument("files", nargs="+", metavar="[LABEL=]FILE")
    s.add_argument("--untrained", metavar="FILE", help="analysis of the untrained model (dashed)")
    s.add_argument("--tuned", metavar="FILE", help="the final model analysed through its tuned lens (analyze --lens tuned:LENS)")
    for name, help_ in (("f2", "alignment per layer against matched controls"), ("f3", "scale-free step sizes and decreases"),
                        ("f4", "norms per layer and position")):
        s = add(name, help_)
        s.add_argument("--block", required=True, metavar="FILE", help="block-granularity analysis")
        s.add_argument("--sublayer", metavar="FILE", help="sublayer-granularity analysis (optional)")
        if name == "f2":
            s.add_argument("--untrained", metavar="FILE", help="block analysis of the untrained model")
            s.add_argument("--tuned", metavar="FILE", help="block analysis in the tuned lens's one coordinate system (analyze --lens tuned:LENS)")
    for name, meta, help_ in (("f5", "FILE", "norm vs token frequency"),
                              ("f6", "ANALYSIS_JSONL", "evolution over outer training"),
                              ("f7", "FILE", "layer x position heatmaps"),
                              ("f8", "SYNTHETIC_ICL_JSON", "constructed linear-attention setting"),
                              ("f10", "INTERVENE_JSON", "causal tests of `metalm intervene`"),
                              ("f11", "ICL_COMPARE_JSON", "in-context regression against the reference algorithms"),
                              ("train", "METRICS_JSONL", "training curve")):
        add(name, help_).add_argument("file", metavar=meta)
    s = add("f9", "norm growth and its parts; signed gradient-step growth vs its null; the norm identity check")
    s.add_argument("file", metavar="FILE")
    s.add_argument("--untrained", metavar="FILE", help="analysis of the untrained model (second panel)")
    return p


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    try:
        fig = build(args)
        plots.save(fig, args.out)
    except InputError as e:
        print(f"plot.py: error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
