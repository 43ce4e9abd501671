"""Layer x position heatmaps with position 0 made visible.

First tokens behave differently (large norms, no context), so position 0 is drawn as a
widened, outlined column: with hundreds of positions a one-pixel column would vanish.
"""
from __future__ import annotations

from typing import List

import numpy as np
from matplotlib.patches import Rectangle
from matplotlib.ticker import MaxNLocator

POSITION_LABEL = "position in context (tokens; column 0 widened if many)"


def ragged(rows: List[np.ndarray]) -> np.ndarray:
    """Stack per-position rows of possibly different length, padding with NaN. [rows, positions]"""
    width = max((len(r) for r in rows), default=0)
    out = np.full((len(rows), width), np.nan)
    for i, r in enumerate(rows):
        out[i, :len(r)] = r
    return out


def position_heatmap(ax, m: np.ndarray, row_labels: List[str], mark_color: str = "black", **mesh_kw):
    """Draw m [rows, positions] with rows top to bottom; returns the QuadMesh for a colorbar."""
    n_rows, n_pos = m.shape
    w0 = max(1.0, n_pos / 25.0)
    x_edges = np.concatenate([[0.0], w0 + np.arange(n_pos, dtype=float)])  # [n_pos + 1]
    y_edges = np.arange(n_rows + 1, dtype=float)
    mesh = ax.pcolormesh(x_edges, y_edges, np.ma.masked_invalid(m), shading="flat", **mesh_kw)
    ax.set_xlim(0, x_edges[-1])
    ax.set_ylim(n_rows, 0)  # first state on top

    def centre(p: int) -> float:
        return (x_edges[p] + x_edges[p + 1]) / 2

    others = [int(t) for t in MaxNLocator(nbins=6, integer=True).tick_values(1, max(n_pos - 1, 1))
              if 1 <= t < n_pos and (w0 == 1.0 or t >= n_pos / 12)]  # keep clear of the 0 label
    ticks = [0] + others
    ax.set_xticks([centre(p) for p in ticks])
    ax.set_xticklabels([str(p) for p in ticks])
    ax.set_yticks(np.arange(n_rows) + 0.5)
    ax.set_yticklabels(row_labels, fontsize=7 if n_rows < 16 else 5)
    ax.set_xlabel(POSITION_LABEL)
    ax.add_patch(Rectangle((0, 0), w0, n_rows, fill=False, edgecolor=mark_color, linewidth=1.8))
    ax.text(w0 * 1.15, 0.5, "◀ position 0", fontsize=7, va="center", ha="left", color="black",
            bbox=dict(boxstyle="round,pad=0.2", fc="white", ec="none", alpha=0.8))
    return mesh
