"""Read and validate metalm's output files into small typed records.

Plots read only these files (docs/design.md section 7). An analysis object (`metalm analyze
--out FILE`, one line of RUN_DIR/analysis.jsonl) must start with "format": "metalm-analysis"
and "version": 2 (matched controls, bootstrap intervals and the permutation null of
docs/design.md 5.5-5.6); any other format or version is refused with one line naming the file, so a
file from another tool or another schema is never half-read. Inside, the keys are exactly
those metalm writes (docs/analysis-schema.md) and required keys are checked strictly: a
missing key, a wrong type or unreadable JSON raises `InputError` whose one-line message
names the file and the key path (e.g.
`run/analysis/step100_block.json: steps[2].alignment.q90: missing key`).

The frequency aggregates (`norm_freq_spearman`, `norm_by_frequency`, tables'
`norm_freq_spearman` and `by_frequency`) exist only when the analysis had a dataset's
meta.json, which the top-level `frequency_bins` records; without it they read as NaN / None
and figures skip the panel with a note. Per state, the records keep the grouping by the
current token (`current`). Keys metalm may add within version 2 are ignored. A statistics
object that is present but null (not computed) reads as all NaN, its interval included.
"""
from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

STATS_KEYS = ("mean", "std", "median", "q10", "q90")
ANALYSIS_FORMAT = "metalm-analysis"
ANALYSIS_VERSION = 2
# The controls of design.md 5.5 that each match a simpler explanation of a positive alignment;
# "strongest_control" names one of them.
MATCHED_CONTROLS = ("shuffled", "bigram", "belief")
GAP_CONTROLS = ("uniform",) + MATCHED_CONTROLS + ("permuted",)
NAN2 = (math.nan, math.nan)
# The norm-identity means of a step (design.md 5.3, 5.5), each with "<key>_ci".
GROWTH_KEYS = ("norm_sq_growth", "norm_sq_growth_radial", "norm_sq_growth_update", "norm_sq_growth_gradient_signed",
               "norm_sq_growth_gradient_signed_permuted")


class InputError(Exception):
    """A missing or malformed input file; str() is one line naming the file."""

    def __init__(self, path: str, message: str):
        self.path = str(path)
        self.message = " ".join(str(message).split())  # always one line
        super().__init__(f"{self.path}: {self.message}")


# ----------------------------------------------------------------------------- raw readers

def read_json(path: str) -> Any:
    if not os.path.isfile(path):
        raise InputError(path, "file not found")
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise InputError(path, f"invalid JSON: {e.msg} at line {e.lineno} column {e.colno}") from None
    except (UnicodeDecodeError, OSError) as e:
        raise InputError(path, f"cannot read: {e}") from None


def read_jsonl(path: str) -> List[Tuple[int, Any]]:
    """(line number, object) for every non-blank line."""
    if not os.path.isfile(path):
        raise InputError(path, "file not found")
    out = []
    try:
        with open(path, encoding="utf-8") as f:
            for lineno, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    out.append((lineno, json.loads(line)))
                except json.JSONDecodeError as e:
                    raise InputError(path, f"invalid JSON on line {lineno}: {e.msg} at column {e.colno}") from None
    except (UnicodeDecodeError, OSError) as e:
        raise InputError(path, f"cannot read: {e}") from None
    return out


# ----------------------------------------------------------------------------- checker

class _Check:
    """Typed accessors that raise InputError with the key path on failure."""

    def __init__(self, path: str, root: str = "", prefix: str = ""):
        self.path = path
        self.root = root      # e.g. "line 3" in a JSON Lines file
        self.prefix = prefix  # key path inside the object, e.g. "steps[2].alignment"

    def at(self, key) -> "_Check":
        if isinstance(key, int):
            return _Check(self.path, self.root, f"{self.prefix}[{key}]")
        return _Check(self.path, self.root, f"{self.prefix}.{key}" if self.prefix else str(key))

    def fail(self, key, what: str):
        where = self.at(key).prefix if key is not None else (self.prefix or "top level")
        raise InputError(self.path, f"{self.root}: {where}: {what}" if self.root else f"{where}: {what}")

    def obj(self, o, key=None) -> dict:
        if not isinstance(o, dict):
            self.fail(key, f"expected a JSON object, got {type(o).__name__}")
        return o

    def get(self, o: dict, key: str):
        if key not in o:
            self.fail(key, "missing key")
        return o[key]

    def num(self, o: dict, key: str) -> float:
        return self._as_num(self.get(o, key), key)

    def _as_num(self, v, key) -> float:
        # nlohmann::json writes NaN/inf as null; keep them as NaN.
        if v is None:
            return math.nan
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            self.fail(key, f"expected a number, got {type(v).__name__}")
        return float(v)

    def opt_num(self, o: dict, key: str) -> Optional[float]:
        return self._as_num(o[key], key) if key in o else None

    def string(self, o: dict, key: str) -> str:
        v = self.get(o, key)
        if not isinstance(v, str):
            self.fail(key, f"expected a string, got {type(v).__name__}")
        return v

    def integer(self, o: dict, key: str) -> int:
        v = self.get(o, key)
        if isinstance(v, bool) or not isinstance(v, int):
            self.fail(key, f"expected an integer, got {type(v).__name__}")
        return v

    def lst(self, o: dict, key: str) -> list:
        v = self.get(o, key)
        if not isinstance(v, list):
            self.fail(key, f"expected a list, got {type(v).__name__}")
        return v

    def nums(self, o: dict, key: str) -> np.ndarray:
        v = self.lst(o, key)
        c = self.at(key)
        return np.array([c._as_num(x, i) for i, x in enumerate(v)], dtype=float)

    def interval(self, o: dict, key: str) -> Tuple[float, float]:
        """A 95 % interval [lo, hi] (null entries read as NaN; a null interval as (NaN, NaN))."""
        v = self.get(o, key)
        if v is None:
            return NAN2
        if not isinstance(v, list) or len(v) != 2:
            self.fail(key, f"expected an interval [lo, hi], got {_short(v)}")
        c = self.at(key)
        return c._as_num(v[0], 0), c._as_num(v[1], 1)

    def mean_ci(self, o: dict, key: str) -> "Mean":
        """A plain mean "<key>" and its interval "<key>_ci"."""
        return Mean(self.num(o, key), self.interval(o, f"{key}_ci"))

    def stats(self, o: dict, key: str, with_ci: bool = True) -> "Stats":
        v = self.get(o, key)
        if v is None:  # present but not computed (e.g. a control switched off): all NaN
            return Stats(*(math.nan,) * len(STATS_KEYS))
        s = self.obj(v, key)
        c = self.at(key)
        return Stats(*(c.num(s, k) for k in STATS_KEYS), ci=c.interval(s, "ci") if with_ci else NAN2)


# ----------------------------------------------------------------------------- records

@dataclass
class Stats:
    mean: float
    std: float
    median: float
    q10: float
    q90: float
    ci: Tuple[float, float] = NAN2  # 95 % bootstrap interval of the mean over sequences


@dataclass
class Mean:
    """A mean with its 95 % bootstrap interval over sequences (design.md 5.6)."""
    mean: float
    ci: Tuple[float, float] = NAN2


@dataclass
class FreqBin:
    lo: float
    hi: float
    count: float
    norm_mean: float
    loss_mean: Optional[float]

    @property
    def centre(self) -> float:
        """Geometric bin centre for a log frequency axis."""
        if self.lo > 0 and self.hi > 0:
            return math.sqrt(self.lo * self.hi)
        return self.hi / 2 if self.hi > 0 else math.nan


@dataclass
class Step:
    """One inner-optimization step s_k -> s_{k+1} (design.md 5.3-5.6)."""
    from_site: str
    to_site: str
    kind: str                  # "block", "attn" or "mlp"
    depth: float               # midpoint of the two sites on the block-depth axis
    layer: int
    loss_before: Mean
    loss_after: Mean
    alignment: Stats
    controls: Dict[str, Stats]  # alignment against each control's gradient: uniform, shuffled, bigram, belief, permuted
    alignment_unexplained: Stats  # cos(Δ, −g_⊥), g_⊥ the part of g not along the belief gradient
    cos_grad_belief: Stats
    gaps: Dict[str, Mean]      # alignment − alignment_<control>, per control of GAP_CONTROLS
    strongest_control: Optional[str]  # the matched control with the smallest gap mean (None: none finite)
    null_band: Tuple[float, float]    # 2.5/97.5 % of the permutation null's alignment mean
    step_size: Stats
    step_size_scaled: Stats    # η / ‖s_k‖²
    relative_update: Stats     # ‖Δ‖ / ‖s_k‖
    angular_step: Stats        # angle between s_k and s_{k+1} (radians)
    norm_before: Stats
    norm_update: Stats
    norm_grad: Stats
    first_order_decrease: Mean
    actual_decrease: Mean
    pos_alignment: np.ndarray  # [positions]
    pos_loss_before: np.ndarray  # [positions]
    bigram_fallback: Mean      # share of positions whose bigram control fell back to the shuffled one
    cos_state_grad: Stats
    radial_update: Stats
    norm_sq_growth: Mean                # mean ‖s_{k+1}‖² − ‖s_k‖²
    norm_sq_growth_radial: Mean         # mean 2<s_k, Δ>
    norm_sq_growth_update: Mean         # mean ‖Δ‖²
    norm_sq_growth_gradient_signed: Mean           # mean <Δ,−g>|<Δ,−g>| / ‖g‖²
    norm_sq_growth_gradient_signed_permuted: Mean  # the same with the permutation null's gradient

    @property
    def alignment_uniform(self) -> Stats:
        return self.controls["uniform"]

    def strongest(self, among: Optional[Tuple[str, ...]] = None) -> Tuple[Optional[str], Stats, Mean]:
        """(name, alignment, gap) of the strongest matched control (metalm's "strongest_control"), or
        of the control with the smallest finite gap mean among `among`; NaN when there is none."""
        c = self.strongest_control
        if among is not None:
            finite = [x for x in among if math.isfinite(self.gaps[x].mean)]
            c = min(finite, key=lambda x: self.gaps[x].mean) if finite else None
        if c is None:
            return None, Stats(*(math.nan,) * len(STATS_KEYS)), Mean(math.nan)
        return c, self.controls[c], self.gaps[c]

    @property
    def label(self) -> str:
        return f"L{self.layer}" if self.kind == "block" else f"L{self.layer}.{self.kind}"


@dataclass
class State:
    site: str
    depth: float
    loss: Mean
    norm: Stats
    norm_by_position: np.ndarray   # [positions]
    loss_by_position: np.ndarray   # [positions]
    norm_freq_spearman: float      # with the current token's training count; NaN without meta.json
    freq_bins: Optional[List[FreqBin]] = None  # by the current token; None without meta.json
    cos_state_grad: Optional[Stats] = None  # cos(s_k, g); all NaN for the last state
    cos_ones_grad: Optional[Stats] = None   # cos(1, g)

    @property
    def label(self) -> str:
        return site_label(self.site)


@dataclass
class Table:
    name: str
    norm: Stats
    spearman_vs_freq: float        # NaN without meta.json
    freq_bins: Optional[List[FreqBin]] = None


@dataclass
class Analysis:
    path: str
    tokens: float
    granularity: str
    final_loss: float
    chance_alignment_per_token: float  # 1/√d: the spread of ONE token's cosine, not a band for means
    lens: str
    steps: List[Step]
    states: List[State]
    bootstrap_resamples: int = 0
    permutations: int = 0
    tables: Dict[str, Table] = field(default_factory=dict)
    outer_step: Optional[int] = None
    n_layers: int = 0

    def steps_of(self, kind: str) -> List[Step]:
        return [s for s in self.steps if s.kind == kind]


# ----------------------------------------------------------------------------- site names

_SITE = re.compile(r"^blocks\.(\d+)\.(resid_pre|resid_mid|resid_post)$")


def _site_parts(site: str) -> Optional[Tuple[int, str]]:
    m = _SITE.match(site)
    return (int(m.group(1)), m.group(2)) if m else None


def site_depth(site: str, n_layers: int) -> Optional[float]:
    """Position on a common depth axis: resid_pre[l] = l, resid_mid[l] = l + 0.5,
    resid_post[l] = l + 1, final = n_layers; so block and sublayer files align."""
    if site == "final":
        return float(n_layers)
    p = _site_parts(site)
    if p is None:
        return None
    layer, kind = p
    return layer + {"resid_pre": 0.0, "resid_mid": 0.5, "resid_post": 1.0}[kind]


def site_label(site: str) -> str:
    p = _site_parts(site)
    if p is None:
        return site
    layer, kind = p
    return {"resid_pre": f"pre{layer}", "resid_mid": f"mid{layer}", "resid_post": f"post{layer}"}[kind]


# ----------------------------------------------------------------------------- parsers

def _short(v) -> str:
    text = json.dumps(v) if isinstance(v, (str, int, float, bool)) or v is None else type(v).__name__
    return text if len(text) <= 40 else text[:37] + "..."


def check_format(c: _Check, top: dict):
    """Refuse anything but a metalm-analysis version 2 object, in one line."""
    fmt, ver = top.get("format"), top.get("version")
    if fmt == ANALYSIS_FORMAT and type(ver) is int and ver == ANALYSIS_VERSION:
        return
    found = ", ".join(f'"{k}": {_short(top[k])}' if k in top else f'no "{k}"' for k in ("format", "version"))
    where = f"{c.root}: " if c.root else ""
    raise InputError(c.path, f'{where}not a "{ANALYSIS_FORMAT}" version {ANALYSIS_VERSION} analysis ({found}); '
                             f"write it with this metalm's `metalm analyze --out` (or `metalm train`, analysis.jsonl)")


def _by_token(c: _Check, o: dict, key: str):
    """(checker, value) of the "current" entry of a {"current": .., "target": ..} object
    (metalm groups positions by their current and by their next token)."""
    v = c.obj(c.get(o, key), key)
    cv = c.at(key)
    cv.get(v, "target")
    return cv.at("current"), cv.get(v, "current")


def _freq_bins(c: _Check, v, with_loss: bool) -> List[FreqBin]:
    """metalm's frequency bins: [{bin, count_lo, count_hi, positions, norm[, loss]}]."""
    if not isinstance(v, list):
        c.fail(None, f"expected a list of frequency bins, got {type(v).__name__}")
    bins = []
    for i, b in enumerate(v):
        cb = c.at(i)
        b = cb.obj(b)
        bins.append(FreqBin(cb.num(b, "count_lo"), cb.num(b, "count_hi"), cb.num(b, "positions"), cb.num(b, "norm"),
                            cb.num(b, "loss") if with_loss else None))
    return bins


def _gaps(c: _Check, s: dict) -> Dict[str, Mean]:
    """Each control's gap; one that was not computed is {"mean": null, "ci": null}: NaN."""
    cg = c.at("gaps")
    g = cg.obj(c.get(s, "gaps"), "gaps")
    out = {}
    for name in GAP_CONTROLS:
        cn = cg.at(name)
        v = cn.obj(cg.get(g, name))
        out[name] = Mean(cn.num(v, "mean"), cn.interval(v, "ci"))
    return out


def _strongest(c: _Check, s: dict) -> Optional[str]:
    v = c.get(s, "strongest_control")
    if v is None:
        return None
    if v not in MATCHED_CONTROLS:
        c.fail("strongest_control", f"expected one of {', '.join(MATCHED_CONTROLS)} or null, got {_short(v)}")
    return v


def parse_analysis(raw: Any, path: str, prefix: str = "") -> Analysis:
    """Validate one analysis object (from `metalm analyze --out` or a line of analysis.jsonl)."""
    c = _Check(path, prefix)
    top = c.obj(raw)
    check_format(c, top)
    granularity = c.string(top, "granularity")
    if granularity not in ("block", "sublayer"):
        c.fail("granularity", f"expected 'block' or 'sublayer', got '{granularity}'")
    n_layers = c.integer(top, "n_layer")
    if n_layers < 1:
        c.fail("n_layer", f"expected at least 1, got {n_layers}")
    with_freq = "frequency_bins" in top  # the analysis had a meta.json
    raw_steps = c.lst(top, "steps")
    raw_states = c.lst(top, "states")
    if not raw_steps:
        c.fail("steps", "empty list")

    def depth_of(cs: _Check, o: dict, key: str) -> Tuple[str, float]:
        site = cs.string(o, key)
        d = site_depth(site, n_layers)
        if d is None:
            cs.fail(key, f"unrecognised site name '{site}' (expected blocks.<l>.resid_pre|resid_mid|resid_post or final)")
        return site, d

    steps = []
    for i, s in enumerate(raw_steps):
        cs = c.at("steps").at(i)
        s = cs.obj(s)
        (fr, d0), (to, d1) = depth_of(cs, s, "from"), depth_of(cs, s, "to")
        kind = cs.string(s, "kind")
        if kind not in ("block", "attn", "mlp"):
            cs.fail("kind", f"expected 'block', 'attn' or 'mlp', got '{kind}'")
        bp = cs.obj(cs.get(s, "by_position"), "by_position")
        cp = cs.at("by_position")
        if with_freq:
            _by_token(cs, s, "by_frequency")
        steps.append(Step(
            from_site=fr, to_site=to, kind=kind, depth=(d0 + d1) / 2, layer=cs.integer(s, "layer"),
            loss_before=cs.mean_ci(s, "loss_before"), loss_after=cs.mean_ci(s, "loss_after"),
            alignment=cs.stats(s, "alignment"),
            controls={name: cs.stats(s, f"alignment_{name}") for name in GAP_CONTROLS},
            alignment_unexplained=cs.stats(s, "alignment_unexplained"),
            cos_grad_belief=cs.stats(s, "cos_grad_belief"),
            gaps=_gaps(cs, s), strongest_control=_strongest(cs, s), null_band=cs.interval(s, "null_band"),
            step_size=cs.stats(s, "step_size"), step_size_scaled=cs.stats(s, "step_size_scaled"),
            relative_update=cs.stats(s, "relative_update"), angular_step=cs.stats(s, "angular_step"),
            norm_before=cs.stats(s, "norm_before"),
            norm_update=cs.stats(s, "norm_update"), norm_grad=cs.stats(s, "norm_grad"),
            first_order_decrease=cs.mean_ci(s, "first_order_decrease"),
            actual_decrease=cs.mean_ci(s, "actual_decrease"),
            pos_alignment=cp.nums(bp, "alignment"), pos_loss_before=cp.nums(bp, "loss_before"),
            bigram_fallback=cs.mean_ci(s, "bigram_fallback"),
            cos_state_grad=cs.stats(s, "cos_state_grad"), radial_update=cs.stats(s, "radial_update"),
            **{key: cs.mean_ci(s, key) for key in GROWTH_KEYS}))

    states = []
    for i, s in enumerate(raw_states):
        cs = c.at("states").at(i)
        s = cs.obj(s)
        site, depth = depth_of(cs, s, "site")
        rho, bins = math.nan, None
        if with_freq:
            cr, v = _by_token(cs, s, "norm_freq_spearman")
            rho = cr._as_num(v, None)
            cb, v = _by_token(cs, s, "norm_by_frequency")
            bins = _freq_bins(cb, v, with_loss=True)
        states.append(State(
            site=site, depth=depth, loss=cs.mean_ci(s, "loss"), norm=cs.stats(s, "norm"),
            norm_by_position=cs.nums(s, "norm_by_position"), loss_by_position=cs.nums(s, "loss_by_position"),
            norm_freq_spearman=rho, freq_bins=bins,
            cos_state_grad=cs.stats(s, "cos_state_grad"), cos_ones_grad=cs.stats(s, "cos_ones_grad")))

    tables = {}
    ct = c.at("tables")
    raw_tables = c.obj(c.get(top, "tables"), "tables")
    for name in ("embedding", "unembedding"):
        cn = ct.at(name)
        t = cn.obj(ct.get(raw_tables, name))
        rho, bins = math.nan, None
        if with_freq:
            rho = cn.num(t, "norm_freq_spearman")
            bins = _freq_bins(cn.at("by_frequency"), cn.get(t, "by_frequency"), with_loss=False)
        tables[name] = Table(name, cn.stats(t, "norm", with_ci=False), rho, bins)  # rows, not sequences

    cb = c.at("bootstrap")
    boot = cb.obj(c.get(top, "bootstrap"), "bootstrap")
    step_val = top.get("step")
    return Analysis(
        path=path, tokens=c.num(top, "tokens"), granularity=granularity,
        final_loss=c.num(top, "final_loss"), chance_alignment_per_token=c.num(top, "chance_alignment_per_token"),
        lens=c.string(top, "lens"), steps=steps, states=states,
        bootstrap_resamples=cb.integer(boot, "resamples"), permutations=c.integer(top, "permutations"), tables=tables,
        outer_step=int(step_val) if isinstance(step_val, (int, float)) and not isinstance(step_val, bool) else None,
        n_layers=n_layers)


def load_analysis(path: str) -> Analysis:
    return parse_analysis(read_json(path), path)


def load_analysis_jsonl(path: str) -> List[Analysis]:
    """Every line of RUN_DIR/analysis.jsonl (each needs a numeric "step"), in file order."""
    out = []
    for lineno, raw in read_jsonl(path):
        prefix = f"line {lineno}"
        a = parse_analysis(raw, path, prefix)
        if a.outer_step is None:
            raise InputError(path, f"{prefix}: step: missing key or not a number")
        out.append(a)
    if not out:
        raise InputError(path, "no analysis records")
    return out


# ----------------------------------------------------------------------------- metrics.jsonl

@dataclass
class Metrics:
    path: str
    train_step: np.ndarray
    train_loss: np.ndarray
    train_lr: np.ndarray
    train_tokens: np.ndarray
    eval_step: np.ndarray
    val_loss: np.ndarray
    val_bpb: np.ndarray


def load_metrics(path: str) -> Metrics:
    """Train and eval events of metrics.jsonl; other events are ignored."""
    tr, ev = [], []
    for lineno, raw in read_jsonl(path):
        c = _Check(path, f"line {lineno}")
        o = c.obj(raw)
        event = c.string(o, "event")
        if event == "train":
            lr, tokens = c.opt_num(o, "lr"), c.opt_num(o, "tokens")
            tr.append((c.num(o, "step"), c.num(o, "loss"), math.nan if lr is None else lr,
                       math.nan if tokens is None else tokens))
        elif event == "eval":
            ev.append((c.num(o, "step"), c.num(o, "val_loss"), c.num(o, "val_bpb")))
    if not tr:
        raise InputError(path, "no 'train' events")
    t = np.array(tr, dtype=float).reshape(-1, 4)
    e = np.array(ev, dtype=float).reshape(-1, 3)
    return Metrics(path, t[:, 0], t[:, 1], t[:, 2], t[:, 3], e[:, 0], e[:, 1], e[:, 2])


# ----------------------------------------------------------------------------- synthetic ICL

@dataclass
class IclPoint:
    n: float
    alignment: Stats
    step_size: Stats
    loss_before: float
    loss_after: float


@dataclass
class IclRun:
    eta: float
    d_x: float
    points: List[IclPoint]


def load_synthetic_icl(path: str) -> List[IclRun]:
    """`metalm synthetic-icl` output: one object, or a list of them (several true η)."""
    raw = read_json(path)
    objs = raw if isinstance(raw, list) else [raw]
    runs = []
    for j, o in enumerate(objs):
        c = _Check(path, "", f"[{j}]" if isinstance(raw, list) else "")
        o = c.obj(o)
        pts = []
        for i, p in enumerate(c.lst(o, "points")):
            cp = c.at("points").at(i)
            p = cp.obj(p)
            pts.append(IclPoint(cp.num(p, "n"), cp.stats(p, "alignment", with_ci=False),
                                cp.stats(p, "step_size", with_ci=False),
                                cp.num(p, "loss_before"), cp.num(p, "loss_after")))
        if not pts:
            c.fail("points", "empty list")
        pts.sort(key=lambda p: p.n)
        runs.append(IclRun(c.num(o, "eta"), c.num(o, "d_x"), pts))
    if not runs:
        raise InputError(path, "no settings")
    return runs
