"""F10: causal tests of the inner optimization (`metalm intervene`, docs/design.md 5.8).

Left: per step, the change of the model's own loss (nats per token, edited minus unedited) when
the update's gradient part, an equally large random part or its radial part is removed, with
the 95 % intervals of a bootstrap over sequences; the untrained model's same interventions
dashed. Right: the line search, the loss change against the multiplier α of each step's
update (α = 1 is the model itself, α = 0 skips the step).

The reader accepts only "format": "metalm-intervene", "version": 1 and refuses anything else
with one line naming the file and the key, like the analysis reader.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

from matplotlib.figure import Figure

from .load import InputError, read_json
from .style import ci_bars, legend, new_figure, ramp

INTERVENE_FORMAT = "metalm-intervene"
INTERVENE_VERSION = 1
REMOVALS = (("remove_gradient", "gradient part removed", "#c0392b"),
            ("remove_random", "equal-energy random part removed", "#7f8c8d"),
            ("remove_radial", "radial part removed", "#2471a3"))
EFFECT_KEYS = ("remove_gradient", "remove_random", "remove_radial", "remove_gradient_minus_random",
               "gradient_step", "gradient_step_median", "gradient_energy")


@dataclass
class Effect:
    mean: float
    lo: float
    hi: float
    n: int


@dataclass
class InterveneStep:
    layer: int
    kind: str
    source: str
    target: str
    effects: Dict[str, Effect]
    alphas: List[float]
    line_search: List[Effect]
    alpha_min: Optional[float]


@dataclass
class Intervention:
    path: str
    granularity: str
    lens: str
    tokens: int
    final_loss: float
    steps: List[InterveneStep]
    untrained: Optional["Intervention"]


def _num(path: str, where: str, v) -> float:
    if v is None:
        return math.nan
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise InputError(path, f"{where}: expected a number or null, got {v!r}")
    return float(v)


def _key(path: str, where: str, o: dict, key: str):
    if not isinstance(o, dict) or key not in o:
        raise InputError(path, f"{where}{'.' if where else ''}{key}: missing key")
    return o[key]


def _effect(path: str, where: str, o) -> Effect:
    return Effect(*(_num(path, f"{where}.{k}", _key(path, where, o, k)) for k in ("mean", "lo", "hi")),
                  int(_num(path, f"{where}.n", _key(path, where, o, "n"))))


def parse_intervene(raw, path: str, prefix: str = "") -> Intervention:
    if not isinstance(raw, dict):
        raise InputError(path, f"{prefix or 'top level'}: expected a JSON object")
    fmt, ver = raw.get("format"), raw.get("version")
    if fmt != INTERVENE_FORMAT or ver != INTERVENE_VERSION:
        raise InputError(path, f'not a "{INTERVENE_FORMAT}" version {INTERVENE_VERSION} file (format {fmt!r}, '
                               f"version {ver!r}); write it with `metalm intervene --out`")
    steps = []
    for i, s in enumerate(_key(path, prefix, raw, "steps")):
        w = f"{prefix}steps[{i}]"
        curve = _key(path, w, s, "line_search")
        steps.append(InterveneStep(
            layer=int(_num(path, f"{w}.layer", _key(path, w, s, "layer"))), kind=str(_key(path, w, s, "kind")),
            source=str(_key(path, w, s, "from")), target=str(_key(path, w, s, "to")),
            effects={k: _effect(path, f"{w}.{k}", _key(path, w, s, k)) for k in EFFECT_KEYS},
            alphas=[_num(path, f"{w}.line_search[{j}].alpha", _key(path, w, p, "alpha")) for j, p in enumerate(curve)],
            line_search=[_effect(path, f"{w}.line_search[{j}]", p) for j, p in enumerate(curve)],
            alpha_min=None if s.get("alpha_min") is None else _num(path, f"{w}.alpha_min", s["alpha_min"])))
    untrained = raw.get("control_untrained")
    return Intervention(path=path, granularity=str(_key(path, prefix, raw, "granularity")),
                        lens=str(_key(path, prefix, raw, "lens")),
                        tokens=int(_num(path, f"{prefix}tokens", _key(path, prefix, raw, "tokens"))),
                        final_loss=_num(path, f"{prefix}final_loss", _key(path, prefix, raw, "final_loss")),
                        steps=steps,
                        untrained=None if untrained is None else parse_intervene(untrained, path, "control_untrained."))


def load_intervene(path: str) -> Intervention:
    return parse_intervene(read_json(path), path)


def step_label(s: InterveneStep) -> str:
    return f"{s.layer}" if s.kind == "block" else f"{s.layer}{'a' if s.kind == 'attn' else 'm'}"


def fig_intervene(run: Intervention) -> Figure:
    fig, (a1, a2) = new_figure(ncols=2, width=5.6, height=4.0,
                               title=f"F10 · causal tests: edit each step's update, measure the model's loss "
                                     f"({run.granularity}, {run.lens} lens, {run.tokens} tokens)")
    x = list(range(len(run.steps)))
    offsets = (-0.2, 0.0, 0.2)
    for (key, label, color), dx in zip(REMOVALS, offsets):
        xs = [i + dx for i in x]
        a1.plot(xs, [s.effects[key].mean for s in run.steps], marker="o", linestyle="", color=color, label=label)
        ci_bars(a1, xs, [(s.effects[key].lo, s.effects[key].hi) for s in run.steps], color, gid=f"ci_{key}")
        if run.untrained is not None and len(run.untrained.steps) == len(run.steps):
            a1.plot(xs, [s.effects[key].mean for s in run.untrained.steps], marker="x", linestyle="--",
                    linewidth=0.8, color=color, alpha=0.7, label=f"{label} (untrained)")
    a1.axhline(0.0, color="0.3", linewidth=0.8)
    a1.set_xticks(x)
    a1.set_xticklabels([step_label(s) for s in run.steps])
    a1.set_xlabel("step (layer; a = attention, m = MLP)")
    a1.set_ylabel("Δ model loss, nats/token (bars: 95 % CI)")
    a1.set_title("removing a part of the update", fontsize=10)
    for s, color in zip(run.steps, ramp(len(run.steps), "viridis")):
        a2.plot(s.alphas, [p.mean for p in s.line_search], marker="o", color=color, label=f"step {step_label(s)}")
        ci_bars(a2, s.alphas, [(p.lo, p.hi) for p in s.line_search], color, gid="ci_line_search", linewidth=1.0)
    a2.axvline(1.0, color="0.3", linestyle="--", linewidth=0.8, label="α = 1 (the model)")
    a2.axhline(0.0, color="0.3", linewidth=0.8)
    a2.set_xlabel("α (state s_k + α Δ_k)")
    a2.set_ylabel("Δ model loss, nats/token")
    a2.set_title("line search along each step's update", fontsize=10)
    for ax in (a1, a2):
        ax.grid(alpha=0.3)
        legend(ax)
    return fig


def table_rows(run: Intervention) -> List[Tuple[str, ...]]:
    """Report rows, one per step: the effects of removing the gradient vs the random part (with
    intervals), their paired difference, the radial part, the untrained model's gradient removal and
    the α of minimum loss."""
    def fmt(e: Effect) -> str:
        if math.isnan(e.mean):
            return "–"
        return f"{e.mean:+.4f} [{e.lo:+.4f}, {e.hi:+.4f}]"

    rows = []
    for i, s in enumerate(run.steps):
        u = run.untrained.steps[i].effects["remove_gradient"] if run.untrained and i < len(run.untrained.steps) else None
        rows.append((f"{step_label(s)} ({s.kind})", fmt(s.effects["remove_gradient"]), fmt(s.effects["remove_random"]),
                     fmt(s.effects["remove_gradient_minus_random"]), fmt(s.effects["remove_radial"]),
                     fmt(u) if u else "–", "–" if s.alpha_min is None else f"{s.alpha_min:g}"))
    return rows


TABLE_HEADER = ("step", "−gradient part", "−random part", "difference", "−radial part", "−gradient (untrained)",
                "α of min loss")
