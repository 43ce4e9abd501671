"""Figures of representation norms: F4 norms along depth and by position, F5 norm vs token frequency."""
from __future__ import annotations

from typing import List, Optional

import numpy as np
from matplotlib.colors import LogNorm, Normalize
from matplotlib.cm import ScalarMappable
from matplotlib.figure import Figure

from .heatmap import POSITION_LABEL, position_heatmap, ragged
from .load import Analysis, FreqBin
from .style import KIND_COLOR, band, cmap, depth_axis, legend, new_figure, skip_panel

NORM_LABEL = "L2 norm (representation units)"


def position0_ratio(norm_by_position: np.ndarray) -> float:
    """norm at position 0 / mean norm at the other positions (NaN when undefined)."""
    v = np.asarray(norm_by_position, dtype=float)
    if v.size < 2 or not np.isfinite(v[0]):
        return float("nan")
    rest = v[1:][np.isfinite(v[1:])]
    if rest.size == 0 or rest.mean() == 0:
        return float("nan")
    return float(v[0] / rest.mean())


# ----------------------------------------------------------------------------- F4

def fig_norms(block: Analysis, sublayer: Optional[Analysis] = None) -> Figure:
    """F4: ‖s_k‖ and ‖Δ_k‖ along depth; layer x position map of ‖s_k‖; position-0 ratio."""
    fig, (a1, a2, a3) = new_figure(ncols=3, width=4.5, height=3.9,
                                   title="F4 · representation norms along the inner trajectory")
    st = block.states
    x = [s.depth for s in st]
    a1.plot(x, [s.norm.median for s in st], marker="o", color="tab:blue", label="‖s_k‖ median")
    band(a1, x, [s.norm.q10 for s in st], [s.norm.q90 for s in st], "tab:blue", label="‖s_k‖ q10–q90")
    steps = block.steps_of("block") or block.steps
    xs = [s.depth for s in steps]
    a1.plot(xs, [s.norm_update.median for s in steps], marker="s", color="tab:orange",
            label="‖Δ_k‖ median (update)")
    band(a1, xs, [s.norm_update.q10 for s in steps], [s.norm_update.q90 for s in steps], "tab:orange")
    if sublayer is not None:
        mids = [s for s in sublayer.states if s.site.endswith("resid_mid")]
        if mids:
            a1.scatter([s.depth for s in mids], [s.norm.median for s in mids], marker="D", s=18,
                       color=KIND_COLOR["attn"], zorder=3, label="‖resid_mid‖ median (sublayer)")
    if _all_positive([s.norm.q10 for s in st] + [s.norm_update.q10 for s in steps]):
        a1.set_yscale("log")
    depth_axis(a1, block.n_layers)
    a1.set_ylabel(NORM_LABEL)
    a1.set_title("norms per layer", fontsize=10)
    legend(a1)
    a1.grid(alpha=0.3, which="both")

    m = ragged([s.norm_by_position for s in st])
    finite = m[np.isfinite(m)]
    a2.set_ylabel("state s_k (top = embeddings)")
    if m.size == 0 or finite.size == 0:
        a2.set_xlabel(POSITION_LABEL)
        skip_panel(a2, "norm_by_position is empty", "norm by position")
    else:
        # Position 0 often carries much larger norms; a log colour scale keeps the rest visible.
        log = finite.min() > 0
        norm = LogNorm(finite.min(), finite.max()) if log else Normalize(finite.min(), finite.max())
        mesh = position_heatmap(a2, m, [s.label for s in st], "tab:red", cmap="viridis", norm=norm)
        fig.colorbar(mesh, ax=a2, label=f"mean ‖s_k‖ ({'log ' if log else ''}colour scale)")
        a2.set_title("norm by layer and position", fontsize=10)

    ratios = [position0_ratio(s.norm_by_position) for s in st]
    a3.plot(x, ratios, marker="o", color="tab:red", label="block states")
    if sublayer is not None:
        mids = [s for s in sublayer.states if s.site.endswith("resid_mid")]
        if mids:
            a3.scatter([s.depth for s in mids], [position0_ratio(s.norm_by_position) for s in mids],
                       marker="D", s=18, color=KIND_COLOR["attn"], label="resid_mid (sublayer)")
    a3.axhline(1.0, color="0.3", linestyle="--", linewidth=0.8, label="no position-0 effect")
    depth_axis(a3, block.n_layers)
    a3.set_ylabel("‖s‖ at position 0 / mean ‖s‖ elsewhere (ratio)")
    a3.set_title("position-0 norm ratio", fontsize=10)
    legend(a3)
    a3.grid(alpha=0.3)
    return fig


def _all_positive(v) -> bool:
    a = np.asarray(v, dtype=float)
    a = a[np.isfinite(a)]
    return a.size > 0 and bool((a > 0).all())


# ----------------------------------------------------------------------------- F5

def _relative_curve(bins: List[FreqBin]):
    """Bin centres and binned mean norm relative to the count-weighted overall mean."""
    c = np.array([b.centre for b in bins])
    n = np.array([b.norm_mean for b in bins])
    w = np.array([max(b.count, 0.0) for b in bins])
    ok = np.isfinite(c) & np.isfinite(n) & (c > 0)
    if not ok.any():
        return None
    mean = np.average(n[ok], weights=w[ok]) if w[ok].sum() > 0 else n[ok].mean()
    if not np.isfinite(mean) or mean == 0:
        return None
    return c[ok], n[ok] / mean


def fig_norm_freq(a: Analysis) -> Figure:
    """F5: is a token's representation norm tied to its corpus frequency, per layer and in the tables?"""
    fig, (a1, a2) = new_figure(ncols=2, width=5.3, height=4.0,
                               title="F5 · representation norm vs token frequency")
    states_with_bins = [s for s in a.states if s.freq_bins]
    emb, unemb = a.tables.get("embedding"), a.tables.get("unembedding")
    drawn = 0
    cm = cmap("viridis")
    dn = Normalize(0, max(a.n_layers, 1))
    for s in states_with_bins:
        curve = _relative_curve(s.freq_bins)
        if curve is not None:
            a1.plot(*curve, marker=".", color=cm(dn(s.depth)), linewidth=1.0)
            drawn += 1
    for t, ls in ((emb, "--"), (unemb, ":")):
        if t is not None and t.freq_bins:
            curve = _relative_curve(t.freq_bins)
            if curve is not None:
                a1.plot(*curve, color="black", linestyle=ls, marker="x", linewidth=1.4,
                        label=f"{t.name} table rows")
                drawn += 1
    a1.set_xlabel("token count in the training corpus (bin centre, log scale)")
    a1.set_ylabel("binned mean norm / overall mean norm (ratio)")
    if drawn == 0:
        skip_panel(a1, "no frequency bins (analysed without a meta.json)", "binned norms")
    else:
        a1.set_xscale("log")
        a1.axhline(1.0, color="0.5", linewidth=0.6)
        fig.colorbar(ScalarMappable(dn, cm), ax=a1, label="depth of state (blocks)")
        a1.set_title("binned means (colour = depth)", fontsize=10)
        legend(a1)
        a1.grid(alpha=0.3, which="both")

    labels, rho, colors = [], [], []
    if emb is not None:
        labels.append("embed\ntable"), rho.append(emb.spearman_vs_freq), colors.append("0.2")
    for s in a.states:
        labels.append(s.label), rho.append(s.norm_freq_spearman), colors.append(cm(dn(s.depth)))
    if unemb is not None:
        labels.append("unembed\ntable"), rho.append(unemb.spearman_vs_freq), colors.append("0.2")
    idx = np.arange(len(labels))
    a2.bar(idx, rho, color=colors)
    a2.axhline(0, color="0.3", linewidth=0.6)
    a2.set_xticks(idx)
    a2.set_xticklabels(labels, fontsize=6 if len(labels) > 10 else 7, rotation=60 if len(labels) > 8 else 0)
    a2.set_ylim(-1.05, 1.05)
    a2.set_xlabel("state along depth (tables at the ends)")
    a2.set_ylabel("Spearman ρ(norm, token count in corpus)")
    a2.set_title("rank correlation per layer", fontsize=10)
    a2.grid(alpha=0.3, axis="y")
    return fig
