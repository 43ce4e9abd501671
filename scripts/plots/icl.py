"""F11: a model trained on in-context linear regression against the reference algorithms
(`metalm icl-compare`, docs/design.md 8.4), and the report's comparison and targets.

Left: the test loss against the context size N (log scale) of the trained model and of every
reference, each with the hyper-parameters tuned at the training N (like the model's weights);
the dotted line marks the training N; curves below a tenth of the model's lowest loss (exact solvers
on noise-free tasks) leave the axis, and so do losses above 10 times that of predicting 0 (a model's
such points are written at the top). Right: per reference, the cosine of the predictions and
the mean cosine of the sensitivities ∂ŷ/∂x_q with the model's, at the training N.

The reader accepts only "format": "metalm-icl-compare", "version": 2 and refuses anything else
with one line naming the file and the key, like the other readers.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

from matplotlib.figure import Figure

from .intervene import _key, _num
from .load import InputError, read_json
from .style import legend, new_figure

ICL_FORMAT = "metalm-icl-compare"
ICL_VERSION = 2
REFERENCE_KEYS = ("loss", "prediction_difference", "prediction_cosine", "sensitivity_cosine", "interpolation_loss")
# How figures and tables name the references (docs/design.md 8.2).
REFERENCE_LABEL = {"gd1": "1 step of GD", "precond_opt": "optimal preconditioned step",
                   "precond_inv_sigma": "Σ⁻¹-preconditioned step", "ridge": "ridge", "ols": "least squares"}


def reference_label(name: str) -> str:
    if name in REFERENCE_LABEL:
        return REFERENCE_LABEL[name]
    if name.startswith("gdpp"):
        return f"GD++, {name[4:]} steps"
    if name.startswith("gd"):
        return f"GD, {name[2:]} steps"
    return name


@dataclass
class Reference:
    name: str
    params: Dict[str, float]
    loss: float
    prediction_difference: float
    prediction_cosine: float
    sensitivity_cosine: float
    interpolation_loss: float


@dataclass
class Interval:
    mean: float
    lo: float
    hi: float


@dataclass
class AnalysisStep:
    layer: int
    alignment: float
    step_size_pooled: float
    plain: Interval             # cos(J, −C): the update map against the plain GD step
    preconditioned: Interval    # cos(J, −C P)
    difference: Interval        # preconditioned − plain, per task


@dataclass
class IclComparison:
    path: str
    step: int
    d_x: int
    n: int
    kappa: float
    layers: int
    heads: int
    attention: str
    model_loss: float
    loss_zero: float
    references: List[Reference]
    curve_n: List[int]
    curve_model: List[float]
    curve: Dict[str, List[float]]
    analysis: List[AnalysisStep]

    def reference(self, name: str) -> Optional[Reference]:
        return next((r for r in self.references if r.name == name), None)

    @property
    def setting(self) -> str:
        return (f"{self.layers} layer{'s' if self.layers > 1 else ''} of {self.attention} attention, "
                f"{self.heads} head{'s' if self.heads > 1 else ''}, d_x = {self.d_x}, N = {self.n}, κ = {self.kappa:g}")


def _interval(path: str, where: str, o) -> Interval:
    mean = _num(path, f"{where}.mean", _key(path, where, o, "mean"))
    ci = _key(path, where, o, "ci95")
    if ci is None:
        return Interval(mean, math.nan, math.nan)
    if not isinstance(ci, list) or len(ci) != 2:
        raise InputError(path, f"{where}.ci95: expected [lo, hi] or null")
    return Interval(mean, _num(path, f"{where}.ci95[0]", ci[0]), _num(path, f"{where}.ci95[1]", ci[1]))


def parse_icl_compare(raw, path: str) -> IclComparison:
    if not isinstance(raw, dict):
        raise InputError(path, "top level: expected a JSON object")
    fmt, ver = raw.get("format"), raw.get("version")
    if fmt != ICL_FORMAT or ver != ICL_VERSION:
        raise InputError(path, f'not a "{ICL_FORMAT}" version {ICL_VERSION} file (format {fmt!r}, version {ver!r}); '
                               f"write it with `metalm icl-compare --out`")
    config = _key(path, "", raw, "config")
    task, model = _key(path, "config", config, "task"), _key(path, "config", config, "model")
    refs = []
    for i, r in enumerate(_key(path, "", raw, "references")):
        w = f"references[{i}]"
        params = _key(path, w, r, "params")
        refs.append(Reference(str(_key(path, w, r, "name")),
                              {k: _num(path, f"{w}.params.{k}", v) for k, v in params.items()},
                              *(_num(path, f"{w}.{k}", _key(path, w, r, k)) for k in REFERENCE_KEYS)))
    curve = _key(path, "", raw, "loss_vs_n")
    curve_n = [int(_num(path, f"loss_vs_n.n[{j}]", v)) for j, v in enumerate(_key(path, "loss_vs_n", curve, "n"))]

    def series(where: str, values) -> List[float]:
        if not isinstance(values, list) or len(values) != len(curve_n):
            raise InputError(path, f"{where}: expected {len(curve_n)} numbers, one per context size")
        return [_num(path, f"{where}[{j}]", v) for j, v in enumerate(values)]

    by_ref = _key(path, "loss_vs_n", curve, "references")
    curves = {}
    for r in refs:
        curves[r.name] = series(f"loss_vs_n.references.{r.name}", _key(path, "loss_vs_n.references", by_ref, r.name))
    steps = []
    for i, s in enumerate(_key(path, "analysis", _key(path, "", raw, "analysis"), "steps")):
        w = f"analysis.steps[{i}]"
        steps.append(AnalysisStep(int(_num(path, f"{w}.layer", _key(path, w, s, "layer"))),
                                  _num(path, f"{w}.alignment.mean", _key(path, f"{w}.alignment", _key(path, w, s, "alignment"), "mean")),
                                  _num(path, f"{w}.step_size_pooled", _key(path, w, s, "step_size_pooled")),
                                  *(_interval(path, f"{w}.{k}", _key(path, w, s, k)) for k in
                                    ("alignment_context_gradient", "alignment_preconditioned", "preconditioned_minus_plain"))))
    m = _key(path, "", raw, "model")
    return IclComparison(
        path=path, step=int(_num(path, "step", _key(path, "", raw, "step"))),
        d_x=int(_num(path, "config.task.d_x", _key(path, "config.task", task, "d_x"))),
        n=int(_num(path, "config.task.n", _key(path, "config.task", task, "n"))),
        kappa=_num(path, "config.task.kappa", _key(path, "config.task", task, "kappa")),
        layers=int(_num(path, "config.model.layers", _key(path, "config.model", model, "layers"))),
        heads=int(_num(path, "config.model.heads", _key(path, "config.model", model, "heads"))),
        attention=str(_key(path, "config.model", model, "attention")),
        model_loss=_num(path, "model.loss", _key(path, "model", m, "loss")),
        loss_zero=_num(path, "model.loss_zero", _key(path, "model", m, "loss_zero")),
        references=refs, curve_n=curve_n, curve_model=series("loss_vs_n.model", _key(path, "loss_vs_n", curve, "model")),
        curve=curves, analysis=steps)


def load_icl_compare(path: str) -> IclComparison:
    return parse_icl_compare(read_json(path), path)


def best_match(c: IclComparison) -> Reference:
    """The reference whose sensitivities the model's match best (highest mean sensitivity cosine); of
    references equal to 1e-9 (isotropic: gd1 and both preconditioned steps are one algorithm), the first."""
    finite = [r for r in c.references if math.isfinite(r.sensitivity_cosine)]
    if not finite:
        raise InputError(c.path, "references: no finite sensitivity_cosine")
    top = max(r.sensitivity_cosine for r in finite)
    return next(r for r in finite if r.sensitivity_cosine >= top - 1e-9)


def fig_icl_compare(c: IclComparison, name: str = "") -> Figure:
    fig, (a1, a2) = new_figure(ncols=2, width=5.6, height=4.0,
                               title=f"F11 · in-context regression{f' ({name})' if name else ''}: "
                                     f"trained model vs reference algorithms — {c.setting}")
    colors = [f"C{i}" for i in range(10)]
    a1.plot(c.curve_n, c.curve_model, color="black", linewidth=2.2, marker="o", label="trained model", gid="model")
    for r, color in zip(c.references, colors):
        a1.plot(c.curve_n, c.curve[r.name], color=color, linewidth=1.1, marker=".", linestyle="--",
                label=reference_label(r.name), gid=f"ref_{r.name}")
    a1.axvline(c.n, color="0.4", linestyle=":", linewidth=1.0, label=f"training N = {c.n}")
    a1.set_xscale("log")
    a1.set_yscale("log")
    a1.set_xticks(c.curve_n, [str(n) for n in c.curve_n])
    # Exact solvers (least squares, ridge) reach ~0 on noise-free tasks once N ≥ d_x: they leave the
    # axis below a tenth of the model's lowest loss instead of squeezing every other curve together.
    floor = min((v for v in c.curve_model if math.isfinite(v) and v > 0), default=math.nan) / 10
    if math.isfinite(floor):
        a1.set_ylim(bottom=floor)
    # Above 10x the loss of predicting 0 an algorithm has diverged: the axis stops there and the
    # model's points beyond it are written out.
    ceiling = 10 * c.loss_zero
    if math.isfinite(ceiling) and ceiling > 0:
        a1.set_ylim(top=ceiling)
        for n, v in zip(c.curve_n, c.curve_model):
            if math.isfinite(v) and v > ceiling:
                a1.annotate(f"model: {v:.3g} ↑", (n, ceiling), textcoords="offset points", xytext=(0, -12),
                            ha="center", fontsize=7, gid="model_off_axis")
    a1.minorticks_off()
    a1.set_xlabel("context size N (examples, log scale)")
    a1.set_ylabel("test loss ‖ŷ − y_q‖² / d_y (log scale)")
    a1.set_title("loss vs N (hyper-parameters tuned at the training N)", fontsize=10)
    x = list(range(len(c.references)))
    a2.bar([i - 0.2 for i in x], [r.prediction_cosine for r in c.references], width=0.4, color="tab:blue",
           label="prediction cosine", gid="prediction_cosine")
    a2.bar([i + 0.2 for i in x], [r.sensitivity_cosine for r in c.references], width=0.4, color="tab:orange",
           label="sensitivity cosine (mean over tasks)", gid="sensitivity_cosine")
    a2.axhline(1.0, color="0.3", linestyle="--", linewidth=0.8)
    a2.set_xticks(x)
    a2.set_xticklabels([r.name for r in c.references], rotation=30, ha="right", fontsize=8)
    low = min([r.prediction_cosine for r in c.references] + [r.sensitivity_cosine for r in c.references]
              + [1.0], key=lambda v: v if math.isfinite(v) else 1.0)
    a2.set_ylim(max(0.0, low - 0.05) if math.isfinite(low) else 0.0, 1.01)
    a2.set_ylabel("cosine with the trained model")
    a2.set_title(f"agreement at the training N (best: {best_match(c).name})", fontsize=10)
    a1.grid(alpha=0.3, which="both")
    a2.grid(alpha=0.3, axis="y")
    legend(a1)
    legend(a2, loc="lower left")
    return fig


# ----------------------------------------------------------------------------- report tables

COMPARISON_HEADER = ("reference", "tuned hyper-parameters", "test loss", "model / reference loss",
                     "prediction difference", "prediction cosine", "sensitivity cosine", "interpolation loss")


def _f(x: float, digits: int = 4) -> str:
    return "–" if x is None or not math.isfinite(x) else f"{x:.{digits}f}"


def comparison_rows(c: IclComparison) -> List[Tuple[str, ...]]:
    """One row per reference: its tuned hyper-parameters, loss, the model's loss relative to it and the
    agreement metrics of docs/design.md 8.4."""
    return [(r.name, ", ".join(f"{k} = {v:.4g}" for k, v in r.params.items()) or "–", _f(r.loss),
             _f(c.model_loss / r.loss, 3) if r.loss > 1e-3 * c.model_loss else "≫ 1", _f(r.prediction_difference),
             _f(r.prediction_cosine), _f(r.sensitivity_cosine), _f(r.interpolation_loss)) for r in c.references]


def _ci(i: Interval) -> str:
    return f"{_f(i.mean)} [{_f(i.lo)}, {_f(i.hi)}]"


TARGET_HEADER = ("target (von Oswald et al. 2023; Ahn et al. 2023)", "value reached", "met")


def target_rows(c: IclComparison) -> List[Tuple[str, str, str]]:
    """The issue's targets that apply to this setting, each with the value reached and whether it is met.
    1 linear layer, κ = 1: within 2 % of 1-step GD, both cosines ≥ 0.99; 1 linear layer, κ > 1: within
    2 % of the optimal preconditioned step, its sensitivity cosine above plain GD's, and the analysis's
    preconditioned alignment above the plain one (interval above 0); L > 1 linear layers: below L-step
    GD's loss and closer (sensitivity cosine) to GD++ than to GD. Softmax attention has no target."""
    def met(ok: bool) -> str:
        return "yes" if ok else "no"

    rows = []
    if c.attention != "linear":
        b = best_match(c)
        return [(f"softmax attention: no target; best match by sensitivity cosine", f"{b.name} "
                 f"(sensitivity cos {_f(b.sensitivity_cosine)}, loss {_f(c.model_loss)} vs {_f(b.loss)})", "–")]
    if c.layers == 1:
        ref = c.reference("gd1" if c.kappa == 1 else "precond_opt")
        if ref is None:
            raise InputError(c.path, "references: gd1 and precond_opt are required for a 1-layer model")
        rel = c.model_loss / ref.loss - 1
        rows.append((f"loss within 2 % of {ref.name}", f"{_f(c.model_loss)} vs {_f(ref.loss)} ({rel:+.2%})",
                     met(abs(rel) <= 0.02)))
        if c.kappa == 1:
            rows.append((f"prediction cosine vs {ref.name} ≥ 0.99", _f(ref.prediction_cosine), met(ref.prediction_cosine >= 0.99)))
            rows.append((f"sensitivity cosine vs {ref.name} ≥ 0.99", _f(ref.sensitivity_cosine),
                         met(ref.sensitivity_cosine >= 0.99)))
            eta = ref.params.get("eta_0", math.nan)
            if c.analysis and math.isfinite(eta):
                got = c.analysis[0].step_size_pooled
                rows.append((f"analysis: the pooled step size recovers {ref.name}'s tuned η within 5 %",
                             f"{_f(got)} vs {_f(eta)} ({got / eta - 1:+.1%})", met(abs(got / eta - 1) <= 0.05)))
        else:
            gd = c.reference("gd1")
            rows.append(("sensitivity cosine: precond_opt above gd1", f"{_f(ref.sensitivity_cosine)} vs {_f(gd.sensitivity_cosine)}",
                         met(ref.sensitivity_cosine > gd.sensitivity_cosine)))
            for s in c.analysis:
                rows.append((f"analysis, layer {s.layer}: preconditioned alignment above plain (interval of the "
                             f"difference above 0)", f"{_ci(s.preconditioned)} vs {_ci(s.plain)}; difference {_ci(s.difference)}",
                             met(s.difference.lo > 0)))
        return rows
    gdk, gdpp = c.reference(f"gd{c.layers}"), c.reference(f"gdpp{c.layers}")
    if gdk is None or gdpp is None:
        raise InputError(c.path, f"references: gd{c.layers} and gdpp{c.layers} are required for a {c.layers}-layer model")
    rows.append((f"loss below {gdk.name}'s", f"{_f(c.model_loss)} vs {_f(gdk.loss)}", met(c.model_loss < gdk.loss)))
    rows.append((f"sensitivity cosine: {gdpp.name} above {gdk.name}", f"{_f(gdpp.sensitivity_cosine)} vs "
                 f"{_f(gdk.sensitivity_cosine)}", met(gdpp.sensitivity_cosine > gdk.sensitivity_cosine)))
    return rows
