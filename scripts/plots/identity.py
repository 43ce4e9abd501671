"""F9: norm growth along the inner trajectory, and the norm identity as the sanity check it is.

Measured growth of ‖s‖² per inner step beside its exact parts, the radial part 2⟨s_k, Δ⟩ and
the update part ‖Δ‖²; the signed growth a gradient step of the measured η would give,
⟨Δ, −g⟩|⟨Δ, −g⟩|/‖g‖² (positive only for downhill steps), against its value under the
permutation null, which is what the same update lengths give without a per-position relation
(design.md 5.5: the signed term restates the alignment, so only the comparison with its null
says anything); and |cos(s_k, ∇ℓ)|, which a LayerNorm or RMSNorm final norm makes about 0 at
initialisation as well: a check of the read-out, not a finding."""
from __future__ import annotations

import math
from typing import Optional

import numpy as np
from matplotlib.figure import Figure

from .load import Analysis
from .style import ci_bars, depth_axis, legend, new_figure, skip_panel

GROWTH_LABEL = "mean change of ‖s‖² per step (units²)"
SIGNED_LABEL = "signed growth (units²; mean, 95 % CI)"
PARTS = (("norm_sq_growth", "measured ‖s_{k+1}‖² − ‖s_k‖²", "black", "o"),
         ("norm_sq_growth_radial", "radial part 2⟨s_k, Δ⟩", "tab:blue", "s"),
         ("norm_sq_growth_update", "update part ‖Δ‖²", "tab:orange", "^"))
SIGNED = "norm_sq_growth_gradient_signed"
PERMUTED = "norm_sq_growth_gradient_signed_permuted"


def has_identity(a: Analysis) -> bool:
    return any(math.isfinite(s.norm_sq_growth.mean) for s in a.steps)


def max_abs_cos_state_grad(a: Analysis) -> float:
    """The largest |q10| or |q90| of cos(s_k, ∇ℓ) over the states (NaN when absent)."""
    vals = [abs(v) for s in a.states if s.cos_state_grad is not None
            for v in (s.cos_state_grad.q10, s.cos_state_grad.q90) if math.isfinite(v)]
    return max(vals) if vals else math.nan


def _growth_panel(ax, a: Analysis, title: str):
    x = [s.depth for s in a.steps]
    for key, label, color, marker in PARTS:
        ax.plot(x, [getattr(s, key).mean for s in a.steps], marker=marker, color=color, label=label)
    ax.axhline(0, color="0.3", linewidth=0.6)
    depth_axis(ax, a.n_layers)
    ax.set_ylabel(GROWTH_LABEL)
    ax.set_title(f"{title}: growth and its exact parts", fontsize=10)
    legend(ax)
    ax.grid(alpha=0.3)


def _signed_panel(ax, trained: Analysis, untrained: Optional[Analysis]):
    ax.axhline(0, color="0.3", linewidth=0.6)
    for a, style, name in ((trained, "-", "trained"), (untrained, "--", "untrained")):
        if a is None or not has_identity(a):
            continue
        x = np.array([s.depth for s in a.steps])
        for key, dx, color, marker, label in ((SIGNED, -0.04, "tab:green", "D", "gradient step, signed"),
                                              (PERMUTED, 0.04, "0.45", "x", "its permutation null")):
            vals = [getattr(s, key) for s in a.steps]
            ax.plot(x + dx, [v.mean for v in vals], marker=marker, color=color, linestyle=style,
                    label=f"{name}: {label}")
            ci_bars(ax, x + dx, [v.ci for v in vals], color, f"ci:{name}_{key}")
    depth_axis(ax, trained.n_layers)
    ax.set_ylabel(SIGNED_LABEL)
    ax.set_title("⟨Δ,−∇ℓ⟩|⟨Δ,−∇ℓ⟩|/‖∇ℓ‖² against its null", fontsize=10)
    legend(ax)
    ax.grid(alpha=0.3)


def fig_norm_identity(trained: Analysis, untrained: Optional[Analysis] = None) -> Figure:
    """F9: norm growth per step and its parts, trained and untrained; the signed gradient-step
    growth against its permutation null; |cos(s, ∇ℓ)| per state as a sanity check."""
    fig, axes = new_figure(ncols=2, nrows=2, width=4.8, height=3.5,
                           title="F9 · norm growth along the inner trajectory; the norm identity as a sanity check")
    a1, a2, a3, a4 = axes
    if not has_identity(trained):
        raise ValueError(f"{trained.path}: no norm-growth statistics")
    _growth_panel(a1, trained, "trained")
    if untrained is not None and has_identity(untrained):
        _growth_panel(a2, untrained, "untrained")
    else:
        a2.set_xlabel("depth (blocks)")
        a2.set_ylabel(GROWTH_LABEL)
        skip_panel(a2, "no untrained analysis given (--untrained)", "untrained")
    _signed_panel(a3, trained, untrained)

    for a, color, label in ((trained, "tab:purple", "trained"), (untrained, "0.5", "untrained")):
        if a is None:
            continue
        st = [s for s in a.states if s.cos_state_grad is not None and math.isfinite(s.cos_state_grad.q90)]
        if not st:
            continue
        worst = [max(abs(s.cos_state_grad.q10), abs(s.cos_state_grad.q90), 1e-12) for s in st]
        a4.plot([s.depth for s in st], worst, marker="o", color=color, label=f"{label}: max(|q10|, |q90|)")
    a4.set_yscale("log")
    depth_axis(a4, trained.n_layers)
    a4.set_ylabel("|cos(s_k, ∇ℓ)| (0: gradient orthogonal to state)")
    a4.set_title("sanity check of the read-out: ⟨∇ℓ(s), s⟩ ≈ 0\n(holds at initialisation; not a finding)",
                 fontsize=9)
    legend(a4)
    a4.grid(alpha=0.3, which="both")
    return fig
