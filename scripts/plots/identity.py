"""F9: the norm identity. Measured growth of ‖s‖² per inner step beside its radial part
2⟨s_k, Δ⟩, its update part ‖Δ‖² and the η²‖∇ℓ‖² a pure gradient step of the measured η
would give (design.md 5.3), trained versus untrained; and how orthogonal the gradient is to
the state (|cos(s_k, ∇ℓ)|), which a LayerNorm or RMSNorm final norm makes about 0."""
from __future__ import annotations

import math
from typing import List, Optional

import numpy as np
from matplotlib.figure import Figure

from .load import Analysis, Step
from .style import depth_axis, legend, new_figure, skip_panel

GROWTH_LABEL = "mean change of ‖s‖² per step (representation units²)"
PARTS = (("norm_sq_growth", "measured ‖s_{k+1}‖² − ‖s_k‖²", "black", "o", "-"),
         ("norm_sq_growth_radial", "radial part 2⟨s_k, Δ⟩", "tab:blue", "s", "-"),
         ("norm_sq_growth_update", "update part ‖Δ‖²", "tab:orange", "^", "-"),
         ("norm_sq_growth_gradient_step", "gradient step η²‖∇ℓ‖²", "tab:green", "D", "-"))


def _has_identity(a: Analysis) -> bool:
    return any(math.isfinite(s.norm_sq_growth) for s in a.steps)


def growth_share(a: Analysis) -> float:
    """Share of the measured norm growth that the gradient part explains:
    Σ_k mean η²‖∇ℓ‖² / Σ_k mean (‖s_{k+1}‖² − ‖s_k‖²), over the steps (NaN when undefined)."""
    grad = sum(s.norm_sq_growth_gradient_step for s in a.steps)
    total = sum(s.norm_sq_growth for s in a.steps)
    return grad / total if math.isfinite(grad) and math.isfinite(total) and total != 0 else math.nan


def max_abs_cos_state_grad(a: Analysis) -> float:
    """The largest |q10| or |q90| of cos(s_k, ∇ℓ) over the states (NaN when absent)."""
    vals = [abs(v) for s in a.states if s.cos_state_grad is not None
            for v in (s.cos_state_grad.q10, s.cos_state_grad.q90) if math.isfinite(v)]
    return max(vals) if vals else math.nan


def _growth_panel(ax, a: Analysis, title: str):
    steps: List[Step] = a.steps
    x = [s.depth for s in steps]
    for key, label, color, marker, ls in PARTS:
        ax.plot(x, [getattr(s, key) for s in steps], marker=marker, color=color, linestyle=ls, label=label)
    ax.axhline(0, color="0.3", linewidth=0.6)
    depth_axis(ax, a.n_layers)
    ax.set_ylabel(GROWTH_LABEL)
    share = growth_share(a)
    ax.set_title(f"{title}: gradient part explains {share:.1%} of the growth" if math.isfinite(share)
                 else title, fontsize=10)
    legend(ax)
    ax.grid(alpha=0.3)


def fig_norm_identity(trained: Analysis, untrained: Optional[Analysis] = None) -> Figure:
    """F9: norm growth per step and its parts, trained (and untrained); |cos(s, ∇ℓ)| per state."""
    fig, (a1, a2, a3) = new_figure(ncols=3, width=4.6, height=3.9,
                                   title="F9 · norm growth along the inner trajectory and the norm identity")
    if not _has_identity(trained):
        raise ValueError(f"{trained.path}: no norm-identity statistics (written by an older metalm)")
    _growth_panel(a1, trained, "trained")
    if untrained is not None and _has_identity(untrained):
        _growth_panel(a2, untrained, "untrained")
    else:
        a2.set_xlabel("depth (blocks)")
        a2.set_ylabel(GROWTH_LABEL)
        skip_panel(a2, "no untrained analysis given (--untrained)", "untrained")

    for a, color, label in ((trained, "tab:purple", "trained"), (untrained, "0.5", "untrained")):
        if a is None:
            continue
        st = [s for s in a.states if s.cos_state_grad is not None and math.isfinite(s.cos_state_grad.q90)]
        if not st:
            continue
        worst = [max(abs(s.cos_state_grad.q10), abs(s.cos_state_grad.q90), 1e-12) for s in st]
        a3.plot([s.depth for s in st], worst, marker="o", color=color, label=f"{label}: max(|q10|, |q90|)")
    a3.set_yscale("log")
    depth_axis(a3, trained.n_layers)
    a3.set_ylabel("|cos(s_k, ∇ℓ)| (0: gradient orthogonal to state)")
    a3.set_title("the identity ⟨∇ℓ(s), s⟩ = 0", fontsize=10)
    legend(a3)
    a3.grid(alpha=0.3, which="both")
    return fig
