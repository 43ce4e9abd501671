"""Figures of the inner optimization along depth: F1 inner loss, F2 alignment,
F3 step size and first-order vs actual decrease, F7 layer x position heatmaps."""
from __future__ import annotations

from typing import List, Optional, Sequence, Tuple

import numpy as np
from matplotlib.colors import TwoSlopeNorm
from matplotlib.figure import Figure

from .heatmap import POSITION_LABEL, position_heatmap, ragged
from .load import Analysis, Step, site_label
from .style import (CHANCE_COLOR, CONTROL_COLOR, KIND_COLOR, KIND_MARKER, KIND_NAME, band,
                    depth_axis, legend, new_figure, ramp, skip_panel)

LOSS_LABEL = "inner loss ℓ (lens cross-entropy, nats)"
ALIGN_LABEL = "alignment cos(Δ, −∇ℓ) (mean over tokens)"
DEPTH_LABEL_SUB = "depth (blocks; attention step at l+¼, MLP step at l+¾)"


def _chance_band(ax, chance: float):
    ax.axhspan(-chance, chance, color=CHANCE_COLOR, alpha=0.25, linewidth=0,
               label=f"chance ±1/√d = ±{chance:.3f}")
    ax.axhline(0, color="0.3", linewidth=0.6)


# ----------------------------------------------------------------------------- F1

def fig_inner_loss(checkpoints: Sequence[Tuple[str, Analysis]],
                   untrained: Optional[Analysis] = None, tuned: Optional[Analysis] = None) -> Figure:
    """F1: lens loss of every state along depth, one line per outer-training checkpoint
    (logit lens); `tuned`, the final checkpoint read through its tuned lens, beside them."""
    fig, (ax,) = new_figure(width=6.0, height=4.0,
                            title="F1 · inner loss along depth across outer training")
    if not checkpoints and untrained is None:
        raise ValueError("fig_inner_loss needs at least one analysis")
    n_layers = max([a.n_layers for _, a in checkpoints] + ([untrained.n_layers] if untrained else [])
                   + ([tuned.n_layers] if tuned else []))
    if untrained is not None:
        ax.plot([s.depth for s in untrained.states], [s.loss for s in untrained.states],
                linestyle="--", color="0.4", marker=".", label="untrained (init)")
    for (label, a), color in zip(checkpoints, ramp(len(checkpoints))):
        ax.plot([s.depth for s in a.states], [s.loss for s in a.states],
                marker="o", markersize=3.5, color=color, label=label)
    if tuned is not None:
        ax.plot([s.depth for s in tuned.states], [s.loss for s in tuned.states], marker="s",
                markersize=3.5, linestyle="-.", color="black", label="final, tuned lens")
    depth_axis(ax, n_layers)
    ax.set_ylabel(LOSS_LABEL)
    legend(ax, title="outer step", title_fontsize=7)
    ax.grid(alpha=0.3)
    return fig


# ----------------------------------------------------------------------------- F2

def _plot_alignment_steps(ax, steps: List[Step], kind: str, with_band: bool):
    if not steps:
        return
    x = [s.depth for s in steps]
    c = KIND_COLOR[kind]
    ax.plot(x, [s.alignment.mean for s in steps], marker=KIND_MARKER[kind], color=c,
            label=f"{KIND_NAME[kind]}: true target")
    if with_band:
        band(ax, x, [s.alignment.q10 for s in steps], [s.alignment.q90 for s in steps], c,
             label=f"{KIND_NAME[kind]}: q10–q90 over tokens")
    ax.plot(x, [s.alignment_random_target.mean for s in steps], marker=KIND_MARKER[kind],
            markerfacecolor="none", linestyle=":", color=c if kind != "block" else CONTROL_COLOR,
            label=f"{KIND_NAME[kind]}: random-target control")


def fig_alignment(block: Analysis, sublayer: Optional[Analysis] = None,
                  untrained: Optional[Analysis] = None, tuned: Optional[Analysis] = None) -> Figure:
    """F2: does each layer's update point down the inner-loss gradient? Read through the logit
    lens; `tuned`, the same model's block analysis through its tuned lens, beside it."""
    fig, (a1, a2) = new_figure(ncols=2, width=5.2, height=4.0,
                               title="F2 · alignment of each update with the negative inner-loss gradient")
    _chance_band(a1, block.chance_alignment)
    _plot_alignment_steps(a1, block.steps_of("block") or block.steps, "block", True)
    if untrained is not None:
        u = untrained.steps_of("block") or untrained.steps
        a1.plot([s.depth for s in u], [s.alignment.mean for s in u], linestyle="--", color="0.4",
                marker=".", label="untrained model: true target")
    if tuned is not None:
        t = tuned.steps_of("block") or tuned.steps
        a1.plot([s.depth for s in t], [s.alignment.mean for s in t], linestyle="-.", color="black",
                marker="s", label="tuned lens: true target")
        a1.plot([s.depth for s in t], [s.alignment_random_target.mean for s in t], linestyle=":",
                color="black", marker="s", markerfacecolor="none", label="tuned lens: random-target control")
    depth_axis(a1, block.n_layers)
    a1.set_ylabel(ALIGN_LABEL)
    a1.set_title("per block (trained)", fontsize=10)
    legend(a1, loc="best")
    a1.grid(alpha=0.3)

    if sublayer is None or not (sublayer.steps_of("attn") or sublayer.steps_of("mlp")):
        a2.set_xlabel(DEPTH_LABEL_SUB)
        a2.set_ylabel(ALIGN_LABEL)
        skip_panel(a2, "no sublayer-granularity analysis given", "attention vs MLP sublayers")
        return fig
    _chance_band(a2, sublayer.chance_alignment)
    for kind in ("attn", "mlp"):
        _plot_alignment_steps(a2, sublayer.steps_of(kind), kind, False)
        st = sublayer.steps_of(kind)
        a2.errorbar([s.depth for s in st], [s.alignment.mean for s in st],
                    yerr=_yerr([s.alignment for s in st]), fmt="none", ecolor=KIND_COLOR[kind],
                    alpha=0.5, capsize=2)
    depth_axis(a2, sublayer.n_layers, label=False)
    a2.set_xlabel(DEPTH_LABEL_SUB)
    a2.set_ylabel(ALIGN_LABEL)
    a2.set_title("attention vs MLP sublayers (bars: q10–q90)", fontsize=10)
    legend(a2, loc="best")
    a2.grid(alpha=0.3)
    return fig



def _yerr(stats) -> np.ndarray:
    m = np.array([s.mean for s in stats])
    return np.abs(np.vstack([m - np.array([s.q10 for s in stats]), np.array([s.q90 for s in stats]) - m]))


# ----------------------------------------------------------------------------- F3

def fig_step_size(block: Analysis, sublayer: Optional[Analysis] = None) -> Figure:
    """F3: least-squares step length along −∇ℓ, and whether the linear picture predicts the decrease."""
    fig, (a1, a2, a3) = new_figure(ncols=3, width=4.4, height=3.9,
                                   title="F3 · inner step size and first-order vs actual loss decrease")
    steps = block.steps_of("block") or block.steps
    x = [s.depth for s in steps]
    a1.plot(x, [s.step_size.median for s in steps], marker="o", color=KIND_COLOR["block"],
            label="block: median η")
    band(a1, x, [s.step_size.q10 for s in steps], [s.step_size.q90 for s in steps],
         KIND_COLOR["block"], label="block: q10–q90")
    if sublayer is not None:
        for kind in ("attn", "mlp"):
            st = sublayer.steps_of(kind)
            if st:
                a1.errorbar([s.depth for s in st], [s.step_size.median for s in st],
                            yerr=_yerr_median([s.step_size for s in st]), fmt=KIND_MARKER[kind],
                            color=KIND_COLOR[kind], capsize=2, label=f"{KIND_NAME[kind]}: median η")
    a1.axhline(0, color="0.3", linewidth=0.6)
    depth_axis(a1, block.n_layers)
    a1.set_ylabel("step size η = ⟨Δ, −∇ℓ⟩ / ‖∇ℓ‖²  (repr. units² per nat)")
    a1.set_title("step size per layer", fontsize=10)
    legend(a1)
    a1.grid(alpha=0.3)

    idx = np.arange(len(steps))
    w = 0.4
    a2.bar(idx - w / 2, [s.first_order_decrease for s in steps], w, color="tab:purple",
           label="first order ⟨−∇ℓ, Δ⟩")
    a2.bar(idx + w / 2, [s.actual_decrease for s in steps], w, color="tab:gray",
           label="actual ℓ(s_k) − ℓ(s_k+1)")
    a2.axhline(0, color="0.3", linewidth=0.6)
    a2.set_xticks(idx)
    a2.set_xticklabels([s.label for s in steps], fontsize=7, rotation=45 if len(steps) > 8 else 0)
    a2.set_xlabel("block (inner step k)")
    a2.set_ylabel("inner-loss decrease (nats, mean over tokens)")
    a2.set_title("per block", fontsize=10)
    legend(a2)
    a2.grid(alpha=0.3, axis="y")

    pts = [(s, "block") for s in steps]
    if sublayer is not None:
        pts += [(s, s.kind) for s in sublayer.steps if s.kind != "block"]
    for kind in ("block", "attn", "mlp"):
        sel = [s for s, k in pts if k == kind]
        if sel:
            a3.scatter([s.first_order_decrease for s in sel], [s.actual_decrease for s in sel],
                       marker=KIND_MARKER[kind], color=KIND_COLOR[kind], s=22, label=KIND_NAME[kind])
    vals = np.array([[s.first_order_decrease, s.actual_decrease] for s, _ in pts], dtype=float)
    vals = vals[np.isfinite(vals).all(axis=1)] if vals.size else vals
    if vals.size:
        lo, hi = float(vals.min()), float(vals.max())
        pad = 0.05 * (hi - lo or 1.0)
        a3.plot([lo - pad, hi + pad], [lo - pad, hi + pad], color="0.3", linestyle="--",
                linewidth=0.8, label="actual = first order")
    a3.set_xlabel("first-order decrease ⟨−∇ℓ, Δ⟩ (nats)")
    a3.set_ylabel("actual decrease (nats)")
    a3.set_title("does the linear picture hold?", fontsize=10)
    legend(a3)
    a3.grid(alpha=0.3)
    return fig


def _yerr_median(stats) -> np.ndarray:
    m = np.array([s.median for s in stats])
    return np.abs(np.vstack([m - np.array([s.q10 for s in stats]), np.array([s.q90 for s in stats]) - m]))


# ----------------------------------------------------------------------------- F7

def fig_position_heatmaps(a: Analysis) -> Figure:
    """F7: inner loss (and alignment) as a layer x position map."""
    fig, (a1, a2) = new_figure(ncols=2, width=5.2, height=4.0,
                               title="F7 · inner loss and alignment by layer and position")
    rows = [s.pos_loss_before for s in a.steps]
    labels = [site_label(s.from_site) for s in a.steps]
    last = a.states[-1] if a.states else None
    if last is not None:
        rows.append(last.loss_by_position)
        labels.append(site_label(last.site))
    m = ragged(rows)
    a1.set_ylabel("state s_k (top = embeddings)")
    if m.size == 0 or not np.isfinite(m).any():
        a1.set_xlabel(POSITION_LABEL)
        skip_panel(a1, "by_position.loss_before is empty", "inner loss")
    else:
        mesh = position_heatmap(a1, m, labels, "tab:cyan", cmap="magma_r")
        fig.colorbar(mesh, ax=a1, label=LOSS_LABEL)
        a1.set_title("inner loss ℓ_t(s_k)", fontsize=10)

    m2 = ragged([s.pos_alignment for s in a.steps])
    a2.set_ylabel(f"inner step ({a.granularity})")
    if m2.size == 0 or not np.isfinite(m2).any():
        a2.set_xlabel(POSITION_LABEL)
        skip_panel(a2, "by_position.alignment is empty", "alignment")
    else:
        lim = float(np.nanmax(np.abs(m2))) or 1.0
        mesh2 = position_heatmap(a2, m2, [s.label for s in a.steps], cmap="RdBu_r",
                                 norm=TwoSlopeNorm(0.0, -lim, lim))
        fig.colorbar(mesh2, ax=a2, label=ALIGN_LABEL)
        a2.set_title(f"alignment (chance ±{a.chance_alignment:.3f})", fontsize=10)
    return fig
