"""F6: how the inner optimization changes over outer training (RUN_DIR/analysis.jsonl)."""
from __future__ import annotations

from typing import Dict, List

import numpy as np
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from .load import Analysis
from .style import cmap, new_figure

STEP_LABEL = "outer training step (optimizer updates)"


def pick_records(records: List[Analysis]) -> List[Analysis]:
    """One granularity (block preferred), sorted by outer step; last record wins on duplicate steps."""
    kinds = {r.granularity for r in records}
    g = "block" if "block" in kinds else sorted(kinds)[0]
    by_step: Dict[int, Analysis] = {}
    for r in records:
        if r.granularity == g:
            by_step[r.outer_step] = r
    return [by_step[k] for k in sorted(by_step)]


def _series(records: List[Analysis], attr: str, key_of, value_of) -> Dict:
    """{key: (outer steps, values)} collecting value_of(item) for items of records' attr list."""
    out: Dict = {}
    for r in records:
        for item in getattr(r, attr):
            xs, ys = out.setdefault(key_of(item), ([], []))
            xs.append(r.outer_step)
            ys.append(value_of(item))
    return out


def fig_evolution(records: List[Analysis]) -> Figure:
    """F6: alignment against the strongest matched control, scaled step size, norms and inner loss
    per layer versus outer step."""
    recs = pick_records(records)
    fig, axes = new_figure(ncols=2, nrows=2, width=4.8, height=3.3,
                           title=f"F6 · inner optimization over outer training ({recs[0].granularity} steps)")
    a1, a2, a3, a4 = axes
    n_layers = max(r.n_layers for r in recs)
    cm = cmap("viridis")
    dn = Normalize(0, max(n_layers, 1))
    # Markers only while they stay legible (and keep the PNG small).
    marker = "o" if len(recs) * n_layers <= 60 else None

    al = _series(recs, "steps", lambda s: (s.depth, s.label), lambda s: s.alignment.mean)
    rt = _series(recs, "steps", lambda s: (s.depth, s.label), lambda s: s.strongest()[1].mean)
    a1.axhline(0, color="0.3", linewidth=0.6)
    for (d, _), (xs, ys) in sorted(al.items()):
        a1.plot(xs, ys, marker=marker, markersize=3, color=cm(dn(d)))
        rx, ry = rt[(d, _)]
        a1.plot(rx, ry, linestyle=":", color=cm(dn(d)))
    a1.set_ylabel("alignment cos(Δ, −∇ℓ) (mean)")
    a1.legend(handles=[Line2D([], [], color="0.2", marker=marker, label="true target"),
                       Line2D([], [], color="0.2", linestyle=":", label="strongest matched control")], fontsize=7)

    eta = _series(recs, "steps", lambda s: s.depth, lambda s: s.step_size_scaled.mean)
    for d, (xs, ys) in sorted(eta.items()):
        a2.plot(xs, ys, marker=marker, markersize=3, color=cm(dn(d)))
    a2.axhline(0, color="0.3", linewidth=0.6)
    a2.set_ylabel("scaled step size η/‖s_k‖² (mean, per nat)")

    nm = _series(recs, "states", lambda s: s.depth, lambda s: s.norm.median)
    for d, (xs, ys) in sorted(nm.items()):
        a3.plot(xs, ys, marker=marker, markersize=3, color=cm(dn(d)))
    vals = np.array([y for _, ys in nm.values() for y in ys], dtype=float)
    if vals.size and np.all(vals[np.isfinite(vals)] > 0):
        a3.set_yscale("log")
    a3.set_ylabel("state norm ‖s_k‖ (median, repr. units)")

    ls = _series(recs, "states", lambda s: s.depth, lambda s: s.loss.mean)
    for d, (xs, ys) in sorted(ls.items()):
        a4.plot(xs, ys, marker=marker, markersize=3, color=cm(dn(d)))
    a4.set_ylabel("inner loss ℓ (lens CE, nats)")

    for ax in axes:
        ax.set_xlabel(STEP_LABEL)
        ax.grid(alpha=0.3)
    fig.colorbar(ScalarMappable(dn, cm), ax=[a2, a4], label="depth (blocks; steps at midpoints)")
    return fig
