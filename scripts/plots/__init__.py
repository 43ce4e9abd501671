"""metalm figures: readers for metalm's output files and one function per figure.

Every `fig_*` function takes validated records (see `plots.load`) and returns a
`matplotlib.figure.Figure`; `plots.style.save(fig, path)` writes a PNG atomically.
The CLI is scripts/plots/plot.py; the report builder is scripts/experiments/report.py; how to read each
figure is in docs/figures.md.
"""
from .evolution import fig_evolution
from .identity import fig_norm_identity, has_identity, max_abs_cos_state_grad
from .inner import fig_alignment, fig_inner_loss, fig_position_heatmaps, fig_step_size
from .load import (Analysis, InputError, load_analysis, load_analysis_jsonl, load_metrics,
                   load_synthetic_icl)
from .norms import fig_norm_freq, fig_norms, position0_ratio
from .style import save
from .synthetic import fig_synthetic_icl
from .training import fig_training

FIGURES = {
    "f1": fig_inner_loss, "f2": fig_alignment, "f3": fig_step_size, "f4": fig_norms,
    "f5": fig_norm_freq, "f6": fig_evolution, "f7": fig_position_heatmaps,
    "f8": fig_synthetic_icl, "f9": fig_norm_identity, "train": fig_training,
}

__all__ = ["Analysis", "InputError", "load_analysis", "load_analysis_jsonl", "load_metrics",
           "load_synthetic_icl", "position0_ratio", "has_identity", "max_abs_cos_state_grad", "save", "FIGURES", *sorted(
               n for n in dir() if n.startswith("fig_"))]
