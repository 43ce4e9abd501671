"""F8: the constructed linear-attention in-context regression setting, where one layer
provably equals one gradient step: the analyser must recover alignment ≈ 1 and the true η."""
from __future__ import annotations

from typing import List

from matplotlib.figure import Figure

from .load import IclRun
from .style import band, legend, new_figure, ramp

N_LABEL = "context size N (examples, log scale)"


def fig_synthetic_icl(runs: List[IclRun]) -> Figure:
    fig, (a1, a2, a3) = new_figure(ncols=3, width=4.3, height=3.8,
                                   title="F8 · linear-attention ICL: one layer = one gradient step")
    for run, color in zip(runs, ramp(len(runs), "plasma")):
        n = [p.n for p in run.points]
        tag = f"true η = {run.eta:g}" + (f", d_x = {run.d_x:g}" if len(runs) > 1 else "")
        a1.plot(n, [p.alignment.mean for p in run.points], marker="o", color=color, label=tag)
        band(a1, n, [p.alignment.q10 for p in run.points], [p.alignment.q90 for p in run.points], color)
        a2.plot(n, [p.step_size.median for p in run.points], marker="o", color=color,
                label=f"recovered η ({tag})")
        band(a2, n, [p.step_size.q10 for p in run.points], [p.step_size.q90 for p in run.points], color)
        a2.axhline(run.eta, color=color, linestyle="--", linewidth=1.0, label=f"true η = {run.eta:g}")
        a3.plot(n, [p.loss_before for p in run.points], marker="o", color=color, linestyle="--",
                label=f"before the layer ({tag})")
        a3.plot(n, [p.loss_after for p in run.points], marker="s", color=color,
                label=f"after the layer ({tag})")
    a1.axhline(1.0, color="0.3", linestyle="--", linewidth=0.8, label="exact gradient step")
    a1.set_ylabel("alignment cos(Δ, −∇L) (mean; band q10–q90)")
    a1.set_title("alignment vs context size", fontsize=10)
    a2.set_ylabel("step size η (median; band q10–q90)")
    a2.set_title("recovered vs true η", fontsize=10)
    a3.set_ylabel("in-context squared loss (mean)")
    a3.set_title("inner loss before/after the layer", fontsize=10)
    for ax in (a1, a2, a3):
        ax.set_xscale("log")
        ax.set_xlabel(N_LABEL)
        ax.grid(alpha=0.3, which="both")
        legend(ax)
    return fig
