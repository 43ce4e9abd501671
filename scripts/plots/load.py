"""Read and validate metalm's output files into small typed records.

Plots read only these files (docs/design.md section 7). Required keys are checked
strictly: a missing key, a wrong type or unreadable JSON raises `InputError`
whose one-line message names the file and the key path (e.g.
`run/analysis/step100_block.json: steps[2].alignment.q90: missing key`).
Optional keys (`by_freq`, `freq_bins`, `tables`, `loss_by_position`, ...) are
returned as None when absent; figures then skip the panel with a note.
Unknown extra keys are ignored, so the analyzer may add fields freely.

Token-frequency data is accepted in two shapes: the issue's (`norm_freq_spearman`
number, `freq_bins` [{lo, hi, count, norm_mean, loss_mean}], tables'
`spearman_vs_freq`) and the analyzer's (src/analysis/report.cpp: objects keyed by
"current"/"target" token, `norm_by_frequency` / `by_frequency` bins with
count_lo, count_hi, positions, norm, loss). Both are optional: an analysis run
without frequency bins has neither, and the correlations read as NaN.
A statistics object that is present but null (not computed) reads as all NaN.
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

    def lst(self, o: dict, key: str) -> list:
        v = self.get(o, key)
        if not isinstance(v, list):
            self.fail(key, f"expected a list, got {type(v).__name__}")
        return v

    def nums(self, o: dict, key: str) -> np.ndarray:
        v = self.lst(o, key)
        c = self.at(key)
        return np.array([c._as_num(x, i) for i, x in enumerate(v)], dtype=float)

    def stats(self, o: dict, key: str) -> "Stats":
        v = self.get(o, key)
        if v is None:  # present but not computed (e.g. a control switched off): all NaN
            return Stats(*(math.nan,) * len(STATS_KEYS))
        s = self.obj(v, key)
        c = self.at(key)
        return Stats(*(c.num(s, k) for k in STATS_KEYS))


# ----------------------------------------------------------------------------- records

@dataclass
class Stats:
    mean: float
    std: float
    median: float
    q10: float
    q90: float


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
    """One inner-optimization step s_k -> s_{k+1}."""
    from_site: str
    to_site: str
    kind: str                  # "block", "attn" or "mlp"
    depth: float               # midpoint of the two sites on the block-depth axis
    layer: int
    loss_before: float
    loss_after: float
    alignment: Stats
    alignment_random_target: Stats
    step_size: Stats
    norm_before: Stats
    norm_update: Stats
    norm_grad: Stats
    first_order_decrease: float
    actual_decrease: float
    pos_alignment: np.ndarray  # [positions]
    pos_loss_before: np.ndarray  # [positions]
    by_freq: Any = None

    @property
    def label(self) -> str:
        return f"L{self.layer}" if self.kind == "block" else f"L{self.layer}.{self.kind}"


@dataclass
class State:
    site: str
    depth: float
    loss: float
    norm: Stats
    norm_by_position: np.ndarray   # [positions]
    norm_freq_spearman: float
    freq_bins: Optional[List[FreqBin]] = None
    loss_by_position: Optional[np.ndarray] = None

    @property
    def label(self) -> str:
        return site_label(self.site)


@dataclass
class Table:
    name: str
    norm: Stats
    spearman_vs_freq: float
    freq_bins: Optional[List[FreqBin]] = None


@dataclass
class Analysis:
    path: str
    tokens: float
    granularity: str
    final_loss: float
    chance_alignment: float
    steps: List[Step]
    states: List[State]
    tables: Dict[str, Table] = field(default_factory=dict)
    outer_step: Optional[int] = None
    n_layers: int = 0

    def steps_of(self, kind: str) -> List[Step]:
        return [s for s in self.steps if s.kind == kind]


# ----------------------------------------------------------------------------- site names

_SITE = re.compile(r"^blocks\.(\d+)\.(?:hook_)?(resid_pre|resid_mid|resid_post)$")


def _site_parts(site: str) -> Optional[Tuple[int, str]]:
    m = _SITE.match(site)
    return (int(m.group(1)), m.group(2)) if m else None


def site_depth(site: str, n_layers: int) -> Optional[float]:
    """Position on a common depth axis: resid_pre[l] = l, resid_mid[l] = l + 0.5,
    resid_post[l] = l + 1, final = n_layers; so block and sublayer files align."""
    if site in ("final", "ln_final.hook_normalized"):
        return float(n_layers)
    if site in ("embed", "hook_embed"):
        return 0.0
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

def _pick_variant(c: _Check, o: dict, keys: Tuple[str, ...]):
    """(checker, value) of the first present key; a {"current": .., "target": ..} object
    (per-token grouping by the current or the target token) yields its "current" entry."""
    for key in keys:
        if key in o and o[key] is not None:
            v, cv = o[key], c.at(key)
            if isinstance(v, dict):
                for sub in ("current", "target"):
                    if sub in v and v[sub] is not None:
                        return cv.at(sub), v[sub]
                cv.fail(None, "expected a value or an object with 'current' or 'target'")
            return cv, v
    return None, None


def _spearman(c: _Check, o: dict, keys: Tuple[str, ...]) -> float:
    """Norm-vs-frequency rank correlation; NaN when the analysis ran without frequency bins."""
    cv, v = _pick_variant(c, o, keys)
    return math.nan if cv is None else cv._as_num(v, None)


def _freq_bins(c: _Check, o: dict, keys: Tuple[str, ...], norm_keys=("norm_mean", "norm"),
               loss_keys=("loss_mean", "loss")) -> Optional[List[FreqBin]]:
    """Frequency bins as [{lo, hi, count, norm_mean, loss_mean}] or the analyzer's
    [{count_lo, count_hi, positions, norm, loss}] (optionally under "current")."""
    cl, v = _pick_variant(c, o, keys)
    if cl is None:
        return None
    if not isinstance(v, list):
        cl.fail(None, f"expected a list of frequency bins, got {type(v).__name__}")

    def first(cb: _Check, b: dict, names: Tuple[str, ...], required: bool = True):
        for n in names:
            if n in b:
                return cb.num(b, n)
        if required:
            cb.fail(names[0], "missing key" + (f" (or {', '.join(names[1:])})" if len(names) > 1 else ""))
        return None

    bins = []
    for i, b in enumerate(v):
        cb = cl.at(i)
        b = cb.obj(b)
        bins.append(FreqBin(first(cb, b, ("lo", "count_lo")), first(cb, b, ("hi", "count_hi")),
                            first(cb, b, ("count", "positions", "rows")), first(cb, b, norm_keys),
                            first(cb, b, loss_keys, required=False)))
    return bins


def parse_analysis(raw: Any, path: str, prefix: str = "") -> Analysis:
    """Validate one analysis object (from `metalm analyze --out` or a line of analysis.jsonl)."""
    c = _Check(path, prefix)
    top = c.obj(raw)
    granularity = c.string(top, "granularity")
    if granularity not in ("block", "sublayer"):
        c.fail("granularity", f"expected 'block' or 'sublayer', got '{granularity}'")
    raw_steps = c.lst(top, "steps")
    raw_states = c.lst(top, "states")
    if not raw_steps:
        c.fail("steps", "empty list")

    # Depth of 'final' needs the number of blocks: take it from every block site named.
    names = []
    for i, s in enumerate(raw_steps):
        cs = c.at("steps").at(i)
        s = cs.obj(s)
        names += [cs.string(s, "from"), cs.string(s, "to")]
    for i, s in enumerate(raw_states):
        cs = c.at("states").at(i)
        names.append(cs.string(cs.obj(s), "site"))
    blocks = [p[0] for p in map(_site_parts, names) if p is not None]
    n_layers = max(blocks) + 1 if blocks else 0
    # At block granularity the last state is `final`, not blocks.<L-1>.resid_post,
    # so the site names alone undercount by one: trust the model's own n_layer.
    if isinstance(top.get("n_layer"), int) and top["n_layer"] > 0:
        n_layers = top["n_layer"]

    def depth_of(cs: _Check, key: str, site: str) -> float:
        d = site_depth(site, n_layers)
        if d is None:
            cs.fail(key, f"unrecognised site name '{site}' (expected blocks.<l>.resid_pre|resid_mid|resid_post or final)")
        return d

    steps = []
    for i, s in enumerate(raw_steps):
        cs = c.at("steps").at(i)
        fr, to = s["from"], s["to"]
        d0, d1 = depth_of(cs, "from", fr), depth_of(cs, "to", to)
        if to.endswith("resid_mid"):
            kind = "attn"
        elif fr.endswith("resid_mid"):
            kind = "mlp"
        else:
            kind = "block"
        bp = cs.obj(cs.get(s, "by_position"), "by_position")
        cp = cs.at("by_position")
        steps.append(Step(
            from_site=fr, to_site=to, kind=kind, depth=(d0 + d1) / 2, layer=int(math.floor(d0)),
            loss_before=cs.num(s, "loss_before"), loss_after=cs.num(s, "loss_after"),
            alignment=cs.stats(s, "alignment"),
            alignment_random_target=cs.stats(s, "alignment_random_target"),
            step_size=cs.stats(s, "step_size"), norm_before=cs.stats(s, "norm_before"),
            norm_update=cs.stats(s, "norm_update"), norm_grad=cs.stats(s, "norm_grad"),
            first_order_decrease=cs.num(s, "first_order_decrease"),
            actual_decrease=cs.num(s, "actual_decrease"),
            pos_alignment=cp.nums(bp, "alignment"), pos_loss_before=cp.nums(bp, "loss_before"),
            by_freq=s.get("by_freq")))

    states = []
    for i, s in enumerate(raw_states):
        cs = c.at("states").at(i)
        site = s["site"]
        lbp = cs.nums(s, "loss_by_position") if s.get("loss_by_position") is not None else None
        states.append(State(
            site=site, depth=depth_of(cs, "site", site), loss=cs.num(s, "loss"),
            norm=cs.stats(s, "norm"), norm_by_position=cs.nums(s, "norm_by_position"),
            norm_freq_spearman=_spearman(cs, s, ("norm_freq_spearman",)),
            freq_bins=_freq_bins(cs, s, ("freq_bins", "norm_by_frequency")), loss_by_position=lbp))

    tables = {}
    if top.get("tables") is not None:
        ct = c.at("tables")
        for name, t in ct.obj(top["tables"], None).items():
            if not isinstance(t, dict):
                continue  # scalar facts beside the tables, e.g. "tied": true
            cn = ct.at(name)
            t = cn.obj(t)
            tables[name] = Table(name, cn.stats(t, "norm"),
                                 _spearman(cn, t, ("spearman_vs_freq", "norm_freq_spearman")),
                                 _freq_bins(cn, t, ("freq_bins", "by_frequency")))

    step_val = top.get("step")
    return Analysis(
        path=path, tokens=c.num(top, "tokens"), granularity=granularity,
        final_loss=c.num(top, "final_loss"), chance_alignment=c.num(top, "chance_alignment"),
        steps=steps, states=states, tables=tables,
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
            pts.append(IclPoint(cp.num(p, "n"), cp.stats(p, "alignment"), cp.stats(p, "step_size"),
                                cp.num(p, "loss_before"), cp.num(p, "loss_after")))
        if not pts:
            c.fail("points", "empty list")
        pts.sort(key=lambda p: p.n)
        runs.append(IclRun(c.num(o, "eta"), c.num(o, "d_x"), pts))
    if not runs:
        raise InputError(path, "no settings")
    return runs
