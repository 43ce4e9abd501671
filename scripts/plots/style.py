"""Shared figure conventions: sizes, colours, the depth axis, skipped-panel notes, saving.

Figures are built on `matplotlib.figure.Figure` directly (no pyplot state), so they
render with the Agg backend whatever MPLBACKEND says and can be tested as objects.
"""
from __future__ import annotations

import os
from typing import Iterable, List, Sequence

import matplotlib
from matplotlib.figure import Figure

DPI = 100
KIND_COLOR = {"block": "tab:blue", "attn": "tab:orange", "mlp": "tab:green"}
KIND_MARKER = {"block": "o", "attn": "^", "mlp": "s"}
KIND_NAME = {"block": "block", "attn": "attention sublayer", "mlp": "MLP sublayer"}
CONTROL_COLOR = "tab:red"
CHANCE_COLOR = "0.6"
NULL_COLOR = "0.55"
# The controls of design.md 5.5: colour, marker and how a legend names them.
CONTROL_STYLE = {
    "shuffled": ("tab:red", "v", "shuffled-target control"),
    "bigram": ("tab:purple", "D", "bigram-target control"),
    "belief": ("tab:brown", "P", "belief control"),
    "uniform": ("tab:pink", "x", "uniform-target control"),
}
NULL_LABEL = "permutation null: 2.5–97.5 % of the mean"
DEPTH_LABEL = "depth (blocks: 0 = embeddings, L = final state)"


def new_figure(ncols: int = 1, nrows: int = 1, width: float = 5.0, height: float = 3.6,
               title: str = "") -> tuple:
    fig = Figure(figsize=(width * ncols, height * nrows), dpi=DPI, layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False)
    if title:
        fig.suptitle(title, fontsize=11)
    return fig, [ax for row in axes for ax in row]


def cmap(name: str = "viridis"):
    return matplotlib.colormaps[name]


def ramp(n: int, name: str = "viridis") -> List:
    """n colours from light-ish to dark along a colormap (early -> late)."""
    cm = cmap(name)
    if n <= 1:
        return [cm(0.35)]
    return [cm(0.1 + 0.8 * i / (n - 1)) for i in range(n)]


def depth_axis(ax, n_layers: int, label: bool = True):
    """Integer ticks at block boundaries; states sit on them, steps between them."""
    ax.set_xlim(-0.3, n_layers + 0.3)
    step = max(1, n_layers // 12)
    ticks = list(range(0, n_layers + 1, step))
    if ticks[-1] != n_layers:
        ticks.append(n_layers)
    ax.set_xticks(ticks)
    if label:
        ax.set_xlabel(DEPTH_LABEL)


def skip_panel(ax, reason: str, title: str = ""):
    """A panel whose optional input is absent: say so instead of drawing nothing.
    Axis labels are kept so every panel still says what it would have shown."""
    ax.text(0.5, 0.5, f"panel skipped:\n{reason}", ha="center", va="center",
            transform=ax.transAxes, fontsize=9, color="0.35", wrap=True)
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=10)
    if not ax.get_xlabel():
        ax.set_xlabel("(no data)")
    if not ax.get_ylabel():
        ax.set_ylabel("(no data)")


def save(fig: Figure, path: str):
    """Write a PNG atomically (temp name, then rename)."""
    d = os.path.dirname(os.path.abspath(path))
    os.makedirs(d, exist_ok=True)
    tmp = f"{path}.tmp.{os.getpid()}.png"
    try:
        fig.savefig(tmp, dpi=DPI, format="png")
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def legend(ax, **kw):
    handles, labels = ax.get_legend_handles_labels()
    if handles:
        ax.legend(fontsize=7, framealpha=0.85, **kw)


def band(ax, x: Sequence[float], lo: Iterable[float], hi: Iterable[float], color, label=None, alpha=0.18):
    ax.fill_between(list(x), list(lo), list(hi), color=color, alpha=alpha, linewidth=0, label=label)


def ci_bars(ax, x: Sequence[float], cis: Iterable, color, gid: str, linewidth: float = 1.3, alpha: float = 0.8):
    """Vertical bars from lo to hi of each 95 % interval, exactly as the JSON gives them (an
    interval need not be symmetric about its mean); gid names them so tests can find them."""
    cis = list(cis)
    coll = ax.vlines(list(x), [c[0] for c in cis], [c[1] for c in cis], colors=color, linewidth=linewidth,
                     alpha=alpha)
    coll.set_gid(gid)
    return coll


def null_band(ax, x: Sequence[float], bands: Iterable, width: float = 0.3, label: str = NULL_LABEL):
    """One grey box per step from the permutation null's 2.5 % to its 97.5 % quantile of the mean
    alignment (design.md 5.6): where the mean would fall if updates and gradients were paired at random."""
    bands = list(bands)
    bars = ax.bar(list(x), [hi - lo for lo, hi in bands], width=width, bottom=[lo for lo, _ in bands],
                  color=NULL_COLOR, alpha=0.35, linewidth=0, label=label, zorder=0)
    for r in bars:
        r.set_gid("null_band")
    return bars
