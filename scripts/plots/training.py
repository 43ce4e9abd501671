"""The outer optimization: training loss and validation bits per byte from metrics.jsonl."""
from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

from .load import Metrics
from .style import legend, new_figure, skip_panel

STEP_LABEL = "outer training step (optimizer updates)"


def fig_training(m: Metrics) -> Figure:
    fig, (a1, a2) = new_figure(ncols=2, width=5.0, height=3.6, title="Outer optimization (training)")
    a1.plot(m.train_step, m.train_loss, color="tab:blue", linewidth=1.0, label="train loss")
    if m.eval_step.size:
        a1.plot(m.eval_step, m.val_loss, marker="o", color="tab:orange", label="validation loss")
    a1.set_xlabel(STEP_LABEL)
    a1.set_ylabel("cross-entropy loss (nats per token)")
    a1.set_title("loss", fontsize=10)
    legend(a1)
    a1.grid(alpha=0.3)

    a2.set_xlabel(STEP_LABEL)
    a2.set_ylabel("validation bits per byte")
    if not m.eval_step.size:
        skip_panel(a2, "no 'eval' events in metrics.jsonl", "validation bits/byte")
        return fig
    a2.plot(m.eval_step, m.val_bpb, marker="o", color="tab:green", label="validation")
    best = int(np.nanargmin(m.val_bpb)) if np.isfinite(m.val_bpb).any() else None
    if best is not None:
        a2.annotate(f"best {m.val_bpb[best]:.3f}", (m.eval_step[best], m.val_bpb[best]),
                    textcoords="offset points", xytext=(-45, 8), fontsize=7)
    a2.set_title("validation bits/byte", fontsize=10)
    legend(a2)
    a2.grid(alpha=0.3)
    return fig
