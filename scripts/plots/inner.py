"""Figures of the inner optimization along depth: F1 inner loss, F2 alignment,
F3 step size and first-order vs actual decrease, F7 layer x position heatmaps."""
from __future__ import annotations

from typing import List, Optional, Sequence, Tuple

import numpy as np
from matplotlib.colors import TwoSlopeNorm
from matplotlib.figure import Figure

from .heatmap import POSITION_LABEL, position_heatmap, ragged
from .load import MATCHED_CONTROLS, Analysis, Step, site_label
from .style import (CONTROL_STYLE, KIND_COLOR, KIND_MARKER, KIND_NAME, ci_bars, depth_axis, legend, new_figure,
                    null_band, ramp, skip_panel)

LOSS_LABEL = "inner loss ℓ (lens cross-entropy, nats)"
ALIGN_LABEL = "alignment cos(Δ, −∇ℓ) (mean, 95 % CI)"
GAP_LABEL = "gap: alignment − control (mean, 95 % CI)"
# Many series per panel: their legend goes under the panel, not over the data.
BELOW = dict(loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=1)
DEPTH_LABEL_SUB = "depth (blocks; attention step at l+¼, MLP step at l+¾)"
TUNED = "tuned lens (one coordinate system)"
# Controls drawn in F2, matched ones first; the uniform control rules out least (design.md 5.5).
F2_CONTROLS = MATCHED_CONTROLS + ("uniform",)


def block_steps(a: Analysis) -> List[Step]:
    return a.steps_of("block") or a.steps


def mean_line(ax, x, items, color, gid: str, label: str, marker="o", linestyle="-", **kw):
    """Means (a Stats' or Mean's .mean) joined by a line, each with its 95 % interval as a bar."""
    ax.plot(x, [i.mean for i in items], marker=marker, color=color, linestyle=linestyle, label=label, **kw)
    ci_bars(ax, x, [i.ci for i in items], color, gid)


# ----------------------------------------------------------------------------- F1

def fig_inner_loss(checkpoints: Sequence[Tuple[str, Analysis]],
                   untrained: Optional[Analysis] = None, tuned: Optional[Analysis] = None) -> Figure:
    """F1: lens loss of every state along depth, one line per outer-training checkpoint
    (logit lens); `tuned`, the final checkpoint's states mapped into the final state's coordinates
    by its tuned lens and read by the model's own read-out (design.md 5.2), beside them."""
    fig, (ax,) = new_figure(width=6.0, height=4.0,
                            title="F1 · inner loss along depth across outer training")
    if not checkpoints and untrained is None:
        raise ValueError("fig_inner_loss needs at least one analysis")
    n_layers = max([a.n_layers for _, a in checkpoints] + ([untrained.n_layers] if untrained else [])
                   + ([tuned.n_layers] if tuned else []))
    if untrained is not None:
        ax.plot([s.depth for s in untrained.states], [s.loss.mean for s in untrained.states],
                linestyle="--", color="0.4", marker=".", label="untrained (init, logit lens)")
    for (label, a), color in zip(checkpoints, ramp(len(checkpoints))):
        ax.plot([s.depth for s in a.states], [s.loss.mean for s in a.states],
                marker="o", markersize=3.5, color=color, label=label)
    if tuned is not None:
        ax.plot([s.depth for s in tuned.states], [s.loss.mean for s in tuned.states], marker="s",
                markersize=3.5, linestyle="-.", color="black", label=f"final, {TUNED}")
    depth_axis(ax, n_layers)
    ax.set_ylabel(LOSS_LABEL)
    legend(ax, title="outer step", title_fontsize=7)
    ax.grid(alpha=0.3)
    return fig


# ----------------------------------------------------------------------------- F2

def _offsets(n: int, width: float = 0.24) -> List[float]:
    """Small x offsets so the intervals of n series at one step do not hide each other."""
    return [0.0] if n == 1 else [width * (i / (n - 1) - 0.5) for i in range(n)]


def _alignment_panel(ax, block: Analysis, untrained: Optional[Analysis], tuned: Optional[Analysis]):
    steps = block_steps(block)
    x = np.array([s.depth for s in steps])
    null_band(ax, x, [s.null_band for s in steps])
    ax.axhline(0, color="0.3", linewidth=0.6)
    mean_line(ax, x, [s.alignment for s in steps], KIND_COLOR["block"], "ci:alignment", "true target")
    for dx, c in zip(_offsets(len(F2_CONTROLS) + 1)[1:], F2_CONTROLS):
        color, marker, name = CONTROL_STYLE[c]
        mean_line(ax, x + dx, [s.controls[c] for s in steps], color, f"ci:alignment_{c}", name,
                  marker=marker, linestyle=":", markersize=4)
    if untrained is not None:
        u = block_steps(untrained)
        mean_line(ax, [s.depth for s in u], [s.alignment for s in u], "0.4", "ci:untrained",
                  "untrained (logit lens): true target", marker=".", linestyle="--")
    if tuned is not None:
        t = block_steps(tuned)
        mean_line(ax, [s.depth for s in t], [s.alignment for s in t], "black", "ci:tuned",
                  f"{TUNED}: true target", marker="s", linestyle="-.", markersize=4)
    depth_axis(ax, block.n_layers)
    ax.set_ylabel(ALIGN_LABEL)
    ax.set_title("per block: true target, matched controls, null", fontsize=10)
    legend(ax, **BELOW)
    ax.grid(alpha=0.3)


def _gap_panel(ax, block: Analysis, untrained: Optional[Analysis], tuned: Optional[Analysis]):
    steps = block_steps(block)
    x = np.array([s.depth for s in steps])
    ax.axhline(0, color="0.3", linewidth=0.8)
    for dx, c in zip(_offsets(len(F2_CONTROLS)), F2_CONTROLS):
        color, marker, name = CONTROL_STYLE[c]
        mean_line(ax, x + dx, [s.gaps[c] for s in steps], color, f"ci:gap_{c}", f"over the {name}",
                  marker=marker, linestyle="none")
    strongest = [(s.depth, s.strongest()[2].mean) for s in steps if s.strongest_control]
    if strongest:
        ax.plot(*zip(*strongest), linestyle="-", color=KIND_COLOR["block"], linewidth=1.0,
                label="over the strongest matched control")
    for other, color, style, gid, name in ((untrained, "0.4", "--", "ci:gap_untrained", "untrained"),
                                           (tuned, "black", "-.", "ci:gap_tuned", TUNED)):
        if other is None:
            continue
        o = [s for s in block_steps(other) if s.strongest_control]
        if o:
            mean_line(ax, [s.depth for s in o], [s.strongest()[2] for s in o], color, gid,
                      f"{name}: over its strongest", marker=".", linestyle=style)
    depth_axis(ax, block.n_layers)
    ax.set_ylabel(GAP_LABEL)
    ax.set_title("the evidence: gaps (a claim needs the CI above 0)", fontsize=10)
    legend(ax, **BELOW)
    ax.grid(alpha=0.3)


def fig_alignment(block: Analysis, sublayer: Optional[Analysis] = None,
                  untrained: Optional[Analysis] = None, tuned: Optional[Analysis] = None) -> Figure:
    """F2: does each layer's update point down the gradient of *this* context's loss? The alignment
    beside the matched controls and the permutation null (design.md 5.5-5.6), each mean with its
    95 % bootstrap interval; the gaps over every control; attention vs MLP sublayers. `tuned` is
    the same model analysed in the final state's coordinates through its tuned lens."""
    fig, (a1, a2, a3) = new_figure(ncols=3, width=5.0, height=5.4,
                                   title="F2 · alignment of each update with the negative inner-loss gradient, "
                                         "against matched controls")
    _alignment_panel(a1, block, untrained, tuned)
    _gap_panel(a2, block, untrained, tuned)

    if sublayer is None or not (sublayer.steps_of("attn") or sublayer.steps_of("mlp")):
        a3.set_xlabel(DEPTH_LABEL_SUB)
        a3.set_ylabel(ALIGN_LABEL)
        skip_panel(a3, "no sublayer-granularity analysis given", "attention vs MLP sublayers")
        return fig
    sub = [s for s in sublayer.steps if s.kind in ("attn", "mlp")]
    null_band(a3, [s.depth for s in sub], [s.null_band for s in sub], width=0.2)
    a3.axhline(0, color="0.3", linewidth=0.6)
    for kind in ("attn", "mlp"):
        st = sublayer.steps_of(kind)
        if not st:
            continue
        x = np.array([s.depth for s in st])
        mean_line(a3, x, [s.alignment for s in st], KIND_COLOR[kind], f"ci:{kind}", f"{KIND_NAME[kind]}: true target",
                  marker=KIND_MARKER[kind])
        with_c = [s for s in st if s.strongest_control]
        if with_c:
            mean_line(a3, [s.depth + 0.06 for s in with_c], [s.strongest()[1] for s in with_c], KIND_COLOR[kind],
                      f"ci:{kind}_strongest", f"{KIND_NAME[kind]}: strongest matched control",
                      marker=KIND_MARKER[kind], linestyle=":", markerfacecolor="none")
    depth_axis(a3, sublayer.n_layers, label=False)
    a3.set_xlabel(DEPTH_LABEL_SUB)
    a3.set_ylabel(ALIGN_LABEL)
    a3.set_title("attention vs MLP sublayers", fontsize=10)
    legend(a3, **BELOW)
    a3.grid(alpha=0.3)
    return fig


# ----------------------------------------------------------------------------- F3

# The scale-free forms of the step (design.md 5.5): attribute, y label, panel title.
F3_PANELS = (("step_size_scaled", "η / ‖s_k‖²  (per nat; mean, 95 % CI)", "scaled step size η/‖s_k‖²"),
             ("relative_update", "‖Δ‖ / ‖s_k‖  (mean, 95 % CI)", "relative update"),
             ("angular_step", "∠(s_k, s_k+1) (radians; mean, 95 % CI)", "angle turned"))


def fig_step_size(block: Analysis, sublayer: Optional[Analysis] = None) -> Figure:
    """F3: how large each step is, in forms that do not grow with the state's norm (η itself does,
    like ‖s‖², under a final norm), and whether the linear picture predicts the decrease."""
    fig, axes = new_figure(ncols=4, width=3.9, height=3.9,
                           title="F3 · scale-free step sizes and first-order vs actual loss decrease")
    steps = block_steps(block)
    x = np.array([s.depth for s in steps])
    for ax, (key, ylabel, title) in zip(axes, F3_PANELS):
        mean_line(ax, x, [getattr(s, key) for s in steps], KIND_COLOR["block"], f"ci:{key}", "block")
        if sublayer is not None:
            for kind, dx in (("attn", -0.05), ("mlp", 0.05)):
                st = sublayer.steps_of(kind)
                if st:
                    mean_line(ax, [s.depth + dx for s in st], [getattr(s, key) for s in st], KIND_COLOR[kind],
                              f"ci:{key}_{kind}", KIND_NAME[kind], marker=KIND_MARKER[kind], linestyle="none")
        ax.axhline(0, color="0.3", linewidth=0.6)
        depth_axis(ax, block.n_layers)
        ax.set_ylabel(ylabel)
        ax.set_title(title, fontsize=10)
        legend(ax)
        ax.grid(alpha=0.3)

    a4 = axes[3]
    idx = np.arange(len(steps))
    w = 0.4
    for dx, key, color, label in ((-w / 2, "first_order_decrease", "tab:purple", "first order ⟨−∇ℓ, Δ⟩"),
                                  (w / 2, "actual_decrease", "tab:gray", "actual ℓ(s_k) − ℓ(s_k+1)")):
        vals = [getattr(s, key) for s in steps]
        a4.bar(idx + dx, [v.mean for v in vals], w, color=color, label=label)
        ci_bars(a4, idx + dx, [v.ci for v in vals], "black", f"ci:{key}")
    a4.axhline(0, color="0.3", linewidth=0.6)
    a4.set_xticks(idx)
    a4.set_xticklabels([s.label for s in steps], fontsize=7, rotation=45 if len(steps) > 8 else 0)
    a4.set_xlabel("block (inner step k)")
    a4.set_ylabel("inner-loss decrease (nats; mean, 95 % CI)")
    a4.set_title("does the linear picture hold?", fontsize=10)
    legend(a4)
    a4.grid(alpha=0.3, axis="y")
    return fig


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
        fig.colorbar(mesh2, ax=a2, label="alignment cos(Δ, −∇ℓ)")
        a2.set_title(f"alignment (one token's chance spread ±1/√d = ±{a.chance_alignment_per_token:.3f})",
                     fontsize=10)
    return fig
