#!/usr/bin/python3
"""Build OUT/report.md (hypotheses stated as gaps with intervals over seeds, figures, commands,
git revision) from a reproduction run.

Usage:
  /usr/bin/python3 scripts/experiments/report.py --out OUT [--title TEXT] [--settings A,B] [--git-rev REV]
                                     [--commands FILE]

Expected layout (written by scripts/experiments/reproduce.sh through `metalm train` / `metalm analyze`); every
setting is trained with several seeds, each in its own directory seed<S> (S = its train.seed):

  OUT/<setting>/seed<S>/run/metrics.jsonl                 required  training + eval events
  OUT/<setting>/seed<S>/run/analysis.jsonl                optional  periodic analysis during training (F6)
  OUT/<setting>/seed<S>/analysis/step<K>_block.json       required  at least one K; the largest K is "final"
  OUT/<setting>/seed<S>/analysis/step<K>_sublayer.json    optional  attention vs MLP steps (K final)
  OUT/<setting>/seed<S>/analysis/untrained_block.json     required  the untrained control (logit lens)
  OUT/<setting>/seed<S>/analysis/untrained_sublayer.json  optional
  OUT/<setting>/seed<S>/analysis/tuned_step<K>_{block,sublayer}.json  optional  the final K through
                                                           the seed's own tuned lens (one coordinate system)
  OUT/<setting>/seed<S>/analysis/intervene_step<K>_block.json  optional  `metalm intervene` of the
                                                          final K (F10, the causal-test table)
  OUT/<setting>/seed<S>/done                              required  the seed is finished (reproduce.sh
                                                           writes it after the seed's last analysis)
  OUT/synthetic_icl.json                                  optional  `metalm synthetic-icl` output (F8)
  OUT/icl/<setting>/compare.json                          optional  `metalm icl-compare` of a model trained
                                                           on in-context regression (F11, its tables)
  OUT/icl/<setting>/run/metrics.jsonl                     optional  its `metalm icl-train` log (training time)
  OUT/commands.txt                                        optional  the exact commands run, one per line

A <setting> is any subdirectory of OUT holding seed<S>/ directories (or those named by --settings);
its finished seeds (those with `done`) are reported, unfinished ones are named in the report, and
the seeds of a setting must share its final step and its steps. Every file present is validated; a
missing required file, invalid JSON, an analysis that is not "format": "metalm-analysis",
"version": 2 (docs/analysis-schema.md), an untrained control not read through the logit lens or a
missing required key stops the build with exit status 1 and one line
`report.py: error: FILE: what is wrong`, before anything is written.

Every claim is a gap, alignment − alignment of the strongest matched null (the one of shuffled
and bigram with the smallest gap, docs/design.md 5.5-5.6), and it holds only where EVERY
seed's 95 % bootstrap interval of that gap lies above 0. Outputs: OUT/figures/<setting>_{train,
f1..f7,f9}.png (drawn from the setting's first seed), OUT/figures/f8.png, OUT/figures/icl_<setting>_f11.png
and OUT/report.md
(written to a temporary name, then renamed).
"""
from __future__ import annotations

import argparse
import datetime
import math
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence, Tuple

# The plots package: scripts/plots/.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402

import plots  # noqa: E402
from plots.icl import COMPARISON_HEADER as ICL_COMPARISON_HEADER, TARGET_HEADER as ICL_TARGET_HEADER  # noqa: E402
from plots.icl import IclComparison, best_match, comparison_rows, fig_icl_compare, load_icl_compare  # noqa: E402
from plots.icl import target_rows as icl_target_rows  # noqa: E402
from plots.intervene import TABLE_HEADER as INTERVENE_HEADER, Intervention, fig_intervene, load_intervene  # noqa: E402
from plots.intervene import table_rows as intervene_rows  # noqa: E402
from plots.load import Analysis, IclRun, InputError, Mean, Metrics, Step, read_jsonl  # noqa: E402
from plots.norms import position0_ratio  # noqa: E402
from plots.style import CONTROL_STYLE  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
_STEP_FILE = re.compile(r"^step(\d+)_block\.json$")
_SEED_DIR = re.compile(r"^seed(\d+)$")


# ----------------------------------------------------------------------------- inputs

@dataclass
class SeedRun:
    """One training run of a setting (one train.seed) and its analyses."""
    seed: int
    root: str
    metrics: Metrics
    checkpoints: List[Tuple[int, Analysis]]           # block granularity, by outer step
    untrained: Analysis
    sublayer: Optional[Analysis] = None                # at the final checkpoint
    untrained_sublayer: Optional[Analysis] = None
    evolution: Optional[List[Analysis]] = None
    tuned: Optional[Analysis] = None                   # the final checkpoint through its tuned lens
    tuned_sublayer: Optional[Analysis] = None
    intervene: Optional[Intervention] = None           # the final checkpoint's causal tests (block)
    missing_optional: List[str] = field(default_factory=list)

    @property
    def final_step(self) -> int:
        return self.checkpoints[-1][0]

    @property
    def final(self) -> Analysis:
        return self.checkpoints[-1][1]


@dataclass
class Setting:
    name: str
    seeds: List[SeedRun]  # the finished seeds, by seed
    unfinished: List[int] = field(default_factory=list)

    @property
    def first(self) -> SeedRun:
        return self.seeds[0]

    @property
    def final_step(self) -> int:
        return self.first.final_step

    @property
    def n_layers(self) -> int:
        return self.first.final.n_layers


def _rel(path: str, out: str) -> str:
    return os.path.relpath(path, out)


def _check_same_steps(a: Analysis, ref: Analysis):
    """Seeds, checkpoints and lenses of a setting must describe the same trajectory."""
    if a.n_layers != ref.n_layers:
        raise InputError(a.path, f"has {a.n_layers} blocks but {ref.path} has {ref.n_layers}")
    if a.granularity == ref.granularity and [(s.from_site, s.to_site) for s in a.steps] != \
            [(s.from_site, s.to_site) for s in ref.steps]:
        raise InputError(a.path, f"its steps differ from those of {ref.path}")


def _check_lens(a: Analysis, tuned: bool):
    if tuned and not a.lens.startswith("tuned:"):
        raise InputError(a.path, f'lens: expected a tuned lens ("tuned:PATH"), got "{a.lens}"')
    if not tuned and a.lens != "logit":
        raise InputError(a.path, f'lens: expected "logit" (checkpoints and the untrained control are read through '
                                 f'the logit lens; a tuned lens belongs in tuned_step<K>_*.json), got "{a.lens}"')


def load_seed(out: str, root: str, seed: int) -> SeedRun:
    adir = os.path.join(root, "analysis")
    metrics = plots.load_metrics(os.path.join(root, "run", "metrics.jsonl"))
    steps = sorted(int(m.group(1)) for f in (os.listdir(adir) if os.path.isdir(adir) else [])
                   if (m := _STEP_FILE.match(f)))
    if not steps:
        raise InputError(os.path.join(adir, "step<K>_block.json"), "file not found (need at least one checkpoint analysis)")
    ckpts = [(k, plots.load_analysis(os.path.join(adir, f"step{k}_block.json"))) for k in steps]
    untrained = plots.load_analysis(os.path.join(adir, "untrained_block.json"))
    for _, a in ckpts:
        _check_lens(a, tuned=False)
        _check_same_steps(a, untrained)
    _check_lens(untrained, tuned=False)
    r = SeedRun(seed, root, metrics, ckpts, untrained)

    def optional(path: str, loader):
        if os.path.exists(path):
            return loader(path)
        r.missing_optional.append(_rel(path, out))
        return None

    r.sublayer = optional(os.path.join(adir, f"step{r.final_step}_sublayer.json"), plots.load_analysis)
    r.untrained_sublayer = optional(os.path.join(adir, "untrained_sublayer.json"), plots.load_analysis)
    for a in (r.sublayer, r.untrained_sublayer):
        if a is not None:
            _check_lens(a, tuned=False)
    # Validate every other sublayer file too, so a malformed one cannot go unnoticed.
    for k in steps[:-1]:
        p = os.path.join(adir, f"step{k}_sublayer.json")
        if os.path.exists(p):
            plots.load_analysis(p)
    r.evolution = optional(os.path.join(root, "run", "analysis.jsonl"), plots.load_analysis_jsonl)
    # Through the seed's tuned lens (`metalm lens-train`, `analyze --lens`): optional, not listed as missing.
    for g in ("block", "sublayer"):
        p = os.path.join(adir, f"tuned_step{r.final_step}_{g}.json")
        if os.path.exists(p):
            a = plots.load_analysis(p)
            _check_lens(a, tuned=True)
            _check_same_steps(a, r.final if g == "block" else (r.sublayer or a))
            setattr(r, "tuned" if g == "block" else "tuned_sublayer", a)
    # The causal tests of `metalm intervene`: optional, not listed as missing.
    p = os.path.join(adir, f"intervene_step{r.final_step}_block.json")
    if os.path.exists(p):
        r.intervene = load_intervene(p)
    return r


def seed_dirs(setting_dir: str) -> List[Tuple[int, str]]:
    if not os.path.isdir(setting_dir):
        return []
    found = [(int(m.group(1)), os.path.join(setting_dir, d)) for d in os.listdir(setting_dir)
             if (m := _SEED_DIR.match(d)) and os.path.isdir(os.path.join(setting_dir, d))]
    return sorted(found)


def load_setting(out: str, name: str) -> Setting:
    dirs = seed_dirs(os.path.join(out, name))
    if not dirs:
        raise InputError(os.path.join(out, name, "seed<S>"), "no seed directory (expected OUT/<setting>/seed<S>/run and analysis)")
    finished = [(seed, root) for seed, root in dirs if os.path.isfile(os.path.join(root, "done"))]
    if not finished:
        raise InputError(os.path.join(out, name, "seed<S>", "done"),
                         "no finished seed (scripts/experiments/reproduce.sh writes seed<S>/done after the seed's last analysis)")
    runs = [load_seed(out, root, seed) for seed, root in finished]
    ref = runs[0]
    for r in runs[1:]:
        if r.final_step != ref.final_step:
            raise InputError(r.final.path, f"final step {r.final_step} differs from seed {ref.seed}'s {ref.final_step}")
        _check_same_steps(r.final, ref.final)
        if r.sublayer is not None and ref.sublayer is not None:
            _check_same_steps(r.sublayer, ref.sublayer)
    return Setting(name, runs, [seed for seed, root in dirs if (seed, root) not in finished])


def discover_settings(out: str, names: Optional[List[str]]) -> List[str]:
    if not os.path.isdir(out):
        raise InputError(out, "output directory not found")
    if names:
        for n in names:
            if not os.path.isdir(os.path.join(out, n)):
                raise InputError(os.path.join(out, n), "setting directory not found")
        return names
    found = sorted(d for d in os.listdir(out) if not d.startswith((".", "_")) and d != "figures"
                   and seed_dirs(os.path.join(out, d)))
    if not found:
        raise InputError(out, "no settings found (expected OUT/<setting>/seed<S>/run/metrics.jsonl and "
                              "OUT/<setting>/seed<S>/analysis/)")
    return found


# ----------------------------------------------------------------------------- markdown helpers

def fmt(x: Optional[float], digits: int = 3) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "–"
    return f"{x:.{digits}f}"


def fmt_ci(m: Mean, digits: int = 3) -> str:
    return f"{fmt(m.mean, digits)} [{fmt(m.ci[0], digits)}, {fmt(m.ci[1], digits)}]"


def table(header: List[str], rows: List[List[str]]) -> List[str]:
    """A markdown table; a "|" inside a cell (|cos|, ⟨Δ,−∇ℓ⟩|⟨Δ,−∇ℓ⟩|) is escaped so it stays in its cell."""
    def line(cells):
        return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"
    return [line(header), "|" + "---|" * len(header), *(line(r) for r in rows), ""]


def figure_md(rel_png: str, number: str, caption: str) -> List[str]:
    return [f"![{number}]({rel_png})", "", f"*{number}.* {caption}", ""]


def _mean(xs) -> float:
    a = np.array([x for x in xs if x is not None and math.isfinite(x)], dtype=float)
    return float(a.mean()) if a.size else float("nan")


def over_seeds(values: Sequence[float], digits: int = 3) -> str:
    """"mean (v1, v2, ...)": the mean over seeds and each seed's value, in seed order."""
    return f"{fmt(_mean(values), digits)} ({', '.join(fmt(v, digits) for v in values)})"


def control_name(c: Optional[str]) -> str:
    return CONTROL_STYLE[c][2] if c in CONTROL_STYLE else "no matched control"


# ----------------------------------------------------------------------------- verdicts

HOLDS = "holds"
NOT_HOLDS = "does not hold"


def interval_verdict(cis: Sequence[Tuple[int, Tuple[float, float]]]) -> Tuple[bool, str]:
    """A claim "the gap is positive" from each seed's 95 % interval (seed, (lo, hi)): it holds only
    where EVERY seed's interval lies above 0; otherwise the text says plainly which seed fails and
    why (its interval includes 0, or lies below it: the gap is negative)."""
    if not cis:
        return False, f"{NOT_HOLDS} (not measured)"
    why = []
    for seed, (lo, hi) in cis:
        if not (math.isfinite(lo) and math.isfinite(hi)):
            why.append(f"seed {seed}: no interval")
        elif hi < 0:
            why.append(f"seed {seed}: gap negative")
        elif lo <= 0:
            why.append(f"seed {seed}: interval includes 0")
    return (True, HOLDS) if not why else (False, f"{NOT_HOLDS} ({'; '.join(why)})")


@dataclass
class GapRow:
    """One step of one setting: the alignment and its gap over the strongest matched control, per seed."""
    label: str
    seeds: List[int]
    alignment: List[float]
    control: List[Optional[str]]     # each seed's strongest matched control
    control_alignment: List[float]
    gap: List[Mean]
    holds: bool
    verdict: str

    @property
    def control_text(self) -> str:
        names = {c for c in self.control}
        if len(names) == 1:
            return control_name(self.control[0])
        return ", ".join(f"{control_name(c)} (seed {s})" for s, c in zip(self.seeds, self.control))

    def per_seed_gaps(self) -> str:
        return "; ".join(f"{fmt_ci(g)} (seed {s})" for s, g in zip(self.seeds, self.gap))

    def headline(self) -> str:
        """"block 2: alignment 0.16, shuffled-target control 0.12, gap 0.04 [0.03, 0.05] ...: holds"."""
        return (f"{self.label}: alignment {fmt(_mean(self.alignment))}, {self.control_text} "
                f"{fmt(_mean(self.control_alignment))}, gap {fmt(_mean([g.mean for g in self.gap]))}; per seed "
                f"{self.per_seed_gaps()}: **{self.verdict}**")


def step_label(x: Step) -> str:
    return f"block {x.layer}" if x.kind == "block" else f"block {x.layer} {x.kind}"


# The matched nulls (design.md 5.5): the controls that replace the target. The belief control moves
# with the trajectory itself: every state moves toward s_K, whose read-out is the belief, so it scores
# high even at initialisation; it is an explanation, shown beside, not a null.
TARGET_CONTROLS = ("shuffled", "bigram")


def gap_rows(analyses: Sequence[Tuple[int, Analysis]], among: Optional[Tuple[str, ...]] = TARGET_CONTROLS) -> List[GapRow]:
    """Per step, over the seeds' analyses (seed, analysis) of one trajectory: the gap over each seed's
    strongest matched null (the strongest of `among`, recomputed from the gaps, so a file written when
    the belief still counted as matched reads the same) and the every-seed verdict."""
    rows = []
    for k, x in enumerate(analyses[0][1].steps):
        per = [(seed, a.steps[k]) for seed, a in analyses]
        strongest = [(seed, st.strongest(among)) for seed, st in per]
        ok, text = interval_verdict([(seed, g.ci) for seed, (_, _, g) in strongest])
        rows.append(GapRow(step_label(x), [seed for seed, _ in per], [st.alignment.mean for _, st in per],
                           [c for _, (c, _, _) in strongest], [al.mean for _, (_, al, _) in strongest],
                           [g for _, (_, _, g) in strongest], ok, text))
    return rows


GAP_HEADER = ["step", "alignment: mean over seeds (each seed)", "strongest matched null",
              "its alignment: mean (each seed)", "gap: mean over seeds", "gap per seed [95 % CI]", "verdict",
              "gap over the belief (an explanation, not a null): mean (each seed)",
              "cos(Δ, −g⊥) beyond the belief: mean (each seed)"]


def gap_table_rows(analyses: Sequence[Tuple[int, Analysis]]) -> List[List[str]]:
    k_rows = []
    for k, r in enumerate(gap_rows(analyses)):
        belief = [a.steps[k].gaps["belief"].mean for _, a in analyses]
        unexplained = [a.steps[k].alignment_unexplained.mean for _, a in analyses]
        k_rows.append([r.label, over_seeds(r.alignment), r.control_text, over_seeds(r.control_alignment),
                       fmt(_mean([g.mean for g in r.gap])), r.per_seed_gaps(), r.verdict, over_seeds(belief),
                       over_seeds(unexplained)])
    return k_rows


def held(rows: List[GapRow]) -> str:
    """"2 of 4 steps (block 0, block 1)"."""
    ok = [r.label for r in rows if r.holds]
    return f"{len(ok)} of {len(rows)} steps" + (f" ({', '.join(ok)})" if ok else "")


def positive_rows(runs: Sequence[Tuple[int, Analysis]], value: Callable[[Step], Mean]) -> List[Tuple[str, List[Mean], bool, str]]:
    """Per step: a statistic whose claim is "positive" (e.g. the lens loss falls), each seed's mean
    and interval, and the every-seed verdict."""
    out = []
    for k, x in enumerate(runs[0][1].steps):
        vals = [(seed, value(a.steps[k])) for seed, a in runs]
        ok, text = interval_verdict([(seed, v.ci) for seed, v in vals])
        out.append((step_label(x), [v for _, v in vals], ok, text))
    return out


def one_size_verdict(runs: Sequence[Tuple[int, Analysis]]) -> Tuple[bool, str]:
    """H3: the blocks take steps of one scale-free size η/‖s‖² when, in every seed, the 95 % intervals
    of all blocks overlap (the largest lower end is below the smallest upper end)."""
    why = []
    for seed, a in runs:
        cis = [s.step_size_scaled.ci for s in a.steps]
        if not all(math.isfinite(v) for c in cis for v in c):
            why.append(f"seed {seed}: no interval")
            continue
        lo_i = int(np.argmax([c[0] for c in cis]))
        hi_i = int(np.argmin([c[1] for c in cis]))
        if cis[lo_i][0] > cis[hi_i][1]:
            why.append(f"seed {seed}: {step_label(a.steps[lo_i])} and {step_label(a.steps[hi_i])} differ")
    return (True, HOLDS) if not why else (False, f"{NOT_HOLDS} ({'; '.join(why)})")


def growth_verdict(runs: Sequence[Tuple[int, Analysis]], k: int) -> Tuple[bool, str]:
    """H4 at step k: the signed gradient-step growth exceeds its permutation-null value when, in every
    seed, its interval lies wholly above the null's (two intervals, not a paired one: conservative)."""
    why = []
    for seed, a in runs:
        s, p = a.steps[k].norm_sq_growth_gradient_signed, a.steps[k].norm_sq_growth_gradient_signed_permuted
        if not all(math.isfinite(v) for v in (*s.ci, *p.ci)):
            why.append(f"seed {seed}: no interval")
        elif s.ci[1] < p.ci[0]:
            why.append(f"seed {seed}: below its null")
        elif s.ci[0] <= p.ci[1]:
            why.append(f"seed {seed}: intervals overlap")
    return (True, HOLDS) if not why else (False, f"{NOT_HOLDS} ({'; '.join(why)})")


# ----------------------------------------------------------------------------- sections

def runs_of(s: Setting, pick: Callable[[SeedRun], Optional[Analysis]]) -> List[Tuple[int, Analysis]]:
    """(seed, analysis) of every seed that has the analysis `pick` selects."""
    return [(r.seed, a) for r in s.seeds if (a := pick(r)) is not None]


def summary_rows(settings: List[Setting]) -> List[List[str]]:
    rows = []
    for s in settings:
        bpb = [r.metrics.val_bpb[-1] if r.metrics.val_bpb.size else math.nan for r in s.seeds]
        gaps = gap_rows(runs_of(s, lambda r: r.final))
        ugaps = gap_rows(runs_of(s, lambda r: r.untrained))
        tuned = runs_of(s, lambda r: r.tuned)
        tgaps = gap_rows(tuned) if len(tuned) == len(s.seeds) else None
        rows.append([s.name, str(s.n_layers), ", ".join(str(r.seed) for r in s.seeds), str(s.final_step),
                     over_seeds(bpb), held(gaps), held(tgaps) if tgaps else "not measured", held(ugaps)])
    return rows


SUMMARY_HEADER = ["setting", "blocks", "seeds", "final step", "val bits/byte: mean (each seed)",
                  "H1 holds (logit lens)", "H1 holds (tuned lens)", "untrained: gap holds"]


def hypothesis_rows(s: Setting) -> List[List[str]]:
    """The hypotheses of one setting at its final checkpoint, each restated as a gap with intervals
    over seeds, and which hold."""
    final = runs_of(s, lambda r: r.final)
    rows = []
    g = gap_rows(final)
    rows.append(["H1", "each block moves the state down its own context's loss (logit lens): gap over the "
                 "strongest matched control", held(g), "; ".join(f"{r.label}: {r.verdict}" for r in g)])
    b = positive_rows(final, lambda x: Mean(x.alignment_unexplained.mean, x.alignment_unexplained.ci))
    rows.append(["H1b", "… and beyond heading for the model's own final prediction: cos(Δ, −g_⊥) > 0, g_⊥ the part "
                 "of the gradient across the belief gradient", f"{sum(ok for _, _, ok, _ in b)} of {len(b)} steps",
                 "; ".join(f"{label}: {text}" for label, _, _, text in b)])
    tuned = runs_of(s, lambda r: r.tuned)
    if len(tuned) == len(s.seeds):
        t = gap_rows(tuned)
        rows.append(["H1t", "the same in one coordinate system (each seed's tuned lens)", held(t),
                     "; ".join(f"{r.label}: {r.verdict}" for r in t)])
    else:
        rows.append(["H1t", "the same in one coordinate system (each seed's tuned lens)", "not measured",
                     f"tuned_step{s.final_step}_block.json in {len(tuned)} of {len(s.seeds)} seeds"])
    sub = runs_of(s, lambda r: r.sublayer)
    if len(sub) == len(s.seeds):
        t = gap_rows(sub)
        rows.append(["H1s", "the same per attention and MLP sublayer", held(t),
                     "; ".join(f"{r.label}: {r.verdict}" for r in t)])
    dec = positive_rows(final, lambda x: x.actual_decrease)
    udec = runs_of(s, lambda r: r.untrained)
    rows.append(["H2", "the lens loss falls at every block: ℓ(s_k) − ℓ(s_k+1) > 0 (untrained: "
                 + ", ".join(fmt(_mean([a.steps[k].actual_decrease.mean for _, a in udec])) for k in range(len(dec)))
                 + ")", f"{sum(ok for _, _, ok, _ in dec)} of {len(dec)} steps",
                 "; ".join(f"{label}: {fmt(_mean([v.mean for v in vals]))}, {text}" for label, vals, ok, text in dec)])
    ok, text = one_size_verdict(final)
    rows.append(["H3", "one inner step size: η/‖s_k‖² per block (mean over seeds) "
                 + ", ".join(fmt(_mean([a.steps[k].step_size_scaled.mean for _, a in final]), 4)
                             for k in range(len(final[0][1].steps))),
                 HOLDS if ok else NOT_HOLDS, text])
    growth = [(step_label(x),) + growth_verdict(final, k) for k, x in enumerate(final[0][1].steps)]
    rows.append(["H4", "gradient steps grow the norm: signed growth ⟨Δ,−∇ℓ⟩|⟨Δ,−∇ℓ⟩|/‖∇ℓ‖² above its permutation null",
                 f"{sum(ok for _, ok, _ in growth)} of {len(growth)} steps",
                 "; ".join(f"{label}: {text}" for label, _, text in growth)])
    return rows


HYPOTHESIS_HEADER = ["", "hypothesis (final checkpoint)", "holds in", "per step (every seed's 95 % CI must exclude 0)"]


def identity_rows(settings: List[Setting]) -> List[List[str]]:
    """Per setting the norm-growth terms against their null (design.md 5.5), summed over steps and
    averaged over seeds, and the sanity check of the read-out |cos(s, ∇ℓ)|."""
    rows = []
    for s in settings:
        gran = "sublayer" if all(r.sublayer for r in s.seeds) else "block"
        pick = (lambda r: r.sublayer) if gran == "sublayer" else (lambda r: r.final)
        upick = (lambda r: r.untrained_sublayer) if gran == "sublayer" else (lambda r: r.untrained)
        a, u = runs_of(s, pick), runs_of(s, upick)

        def total(runs, key):
            return over_seeds([sum(getattr(x, key).mean for x in an.steps) for _, an in runs], 2)

        rows.append([f"`{s.name}`", gran, total(a, "norm_sq_growth"), total(a, "norm_sq_growth_gradient_signed"),
                     total(a, "norm_sq_growth_gradient_signed_permuted"),
                     total(u, "norm_sq_growth_gradient_signed") if u else "–",
                     fmt(max(plots.max_abs_cos_state_grad(an) for _, an in a), 6),
                     fmt(max(plots.max_abs_cos_state_grad(an) for _, an in u), 6) if u else "–"])
    return rows


IDENTITY_HEADER = ["setting", "steps", "Σ_k growth of ‖s‖²: mean (each seed)", "Σ_k signed gradient-step growth",
                   "its permutation null", "untrained: signed growth",
                   "sanity check: max |cos(s, ∇ℓ)|", "untrained"]


def lens_rows(s: Setting, logit_of, tuned_of) -> List[List[str]]:
    """The same steps read through the logit lens and in the tuned lens's one coordinate system."""
    logit, tuned = runs_of(s, logit_of), runs_of(s, tuned_of)
    lg, tg = gap_rows(logit), gap_rows(tuned)
    rows = []
    for k, (a, b) in enumerate(zip(lg, tg)):
        rows.append([a.label,
                     over_seeds([x.steps[k].actual_decrease.mean for _, x in logit]),
                     over_seeds([x.steps[k].actual_decrease.mean for _, x in tuned]),
                     f"{fmt(_mean([g.mean for g in a.gap]))}: {a.verdict}",
                     f"{fmt(_mean([g.mean for g in b.gap]))}: {b.verdict}"])
    return rows


LENS_HEADER = ["step", "loss decrease, logit lens: mean (each seed)", "loss decrease, tuned lens",
               "gap over strongest control, logit lens", "gap, tuned lens"]


def scale_free_rows(s: Setting) -> List[List[str]]:
    final = runs_of(s, lambda r: r.final)
    rows = []
    for k, x in enumerate(final[0][1].steps):
        st = [a.steps[k] for _, a in final]
        rows.append([step_label(x), over_seeds([y.step_size_scaled.mean for y in st], 4),
                     over_seeds([y.relative_update.mean for y in st]), over_seeds([y.angular_step.mean for y in st]),
                     over_seeds([y.step_size.mean for y in st]), over_seeds([y.first_order_decrease.mean for y in st]),
                     over_seeds([y.actual_decrease.mean for y in st])])
    return rows


SCALE_FREE_HEADER = ["step", "η/‖s_k‖²: mean (each seed)", "‖Δ‖/‖s_k‖", "angle turned (rad)",
                     "η (grows like ‖s‖²)", "first-order decrease", "actual decrease"]


def states_rows(a: Analysis, untrained: Optional[Analysis]) -> List[List[str]]:
    u = {x.site: x for x in untrained.states} if untrained else {}
    rows = []
    for x in a.states:
        ux = u.get(x.site)
        rows.append([x.site, fmt_ci(x.loss), fmt(x.norm.median), f"[{fmt(x.norm.q10)}, {fmt(x.norm.q90)}]",
                     fmt(x.norm_freq_spearman), fmt(position0_ratio(x.norm_by_position), 2),
                     fmt(position0_ratio(ux.norm_by_position), 2) if ux else "–"])
    for t in a.tables.values():
        rows.append([f"{t.name} table", "–", fmt(t.norm.median), f"[{fmt(t.norm.q10)}, {fmt(t.norm.q90)}]",
                     fmt(t.spearman_vs_freq), "–", "–"])
    return rows


STATES_HEADER = ["state", "lens loss [95 % CI] (nats)", "norm median", "norm [q10, q90]", "Spearman ρ(norm, freq)",
                 "position-0 norm ratio", "position-0 ratio (untrained)"]


def icl_rows(runs: List[IclRun]) -> List[List[str]]:
    return [[fmt(r.eta, 4), fmt(r.d_x, 0), fmt(p.n, 0), fmt(p.alignment.mean, 4),
             f"[{fmt(p.alignment.q10, 4)}, {fmt(p.alignment.q90, 4)}]", fmt(p.step_size.median, 4),
             fmt(p.loss_before, 4), fmt(p.loss_after, 4)] for r in runs for p in r.points]


ICL_HEADER = ["true η", "d_x", "N", "alignment mean", "alignment [q10, q90]", "recovered η (median)",
              "loss before", "loss after"]


@dataclass
class IclSetting:
    """A model trained on in-context regression (OUT/icl/<name>/) and its comparison."""
    name: str
    compare: IclComparison
    train_seconds: Optional[float]  # summed over the processes of its run; None without metrics.jsonl


def training_seconds(path: str) -> float:
    """The training time of a run from its metrics.jsonl: elapsed_s counts from each process's start,
    so a resumed run's segments (where elapsed_s falls) are added up."""
    total, last = 0.0, 0.0
    for lineno, ev in read_jsonl(path):
        t = ev.get("elapsed_s") if isinstance(ev, dict) else None
        if not isinstance(t, (int, float)) or isinstance(t, bool):
            raise InputError(path, f"line {lineno}: elapsed_s: expected a number")
        if t < last:
            total += last
        last = float(t)
    return total + last


def load_icl_settings(out: str) -> Tuple[List[IclSetting], List[str]]:
    """The settings of OUT/icl/ with a compare.json, and the names of those without one (unfinished)."""
    root = os.path.join(out, "icl")
    if not os.path.isdir(root):
        return [], []
    done, unfinished = [], []
    for name in sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d)) and not d.startswith(".")):
        path = os.path.join(root, name, "compare.json")
        if not os.path.isfile(path):
            unfinished.append(name)
            continue
        metrics = os.path.join(root, name, "run", "metrics.jsonl")
        done.append(IclSetting(name, load_icl_compare(path),
                               training_seconds(metrics) if os.path.isfile(metrics) else None))
    return done, unfinished


ICL_SUMMARY_HEADER = ["setting", "model", "trained in", "model loss", "best match (sensitivity cosine)",
                      "its loss", "its prediction cosine", "the other algorithms' losses"]


def icl_summary_rows(icl: List[IclSetting]) -> List[List[str]]:
    rows = []
    for s in icl:
        c, b = s.compare, best_match(s.compare)
        others = ", ".join(f"{r.name} {fmt(r.loss, 4)}" for r in c.references if r.name != b.name)
        rows.append([s.name, c.setting, "–" if s.train_seconds is None else f"{s.train_seconds:.0f} s",
                     fmt(c.model_loss, 4), f"{b.name} ({fmt(b.sensitivity_cosine, 4)})", fmt(b.loss, 4),
                     fmt(b.prediction_cosine, 4), others])
    return rows


def icl_section(icl: List[IclSetting], unfinished: List[str]) -> List[str]:
    md = ["## In-context regression: trained models against known algorithms", "",
          "Attention layers trained on in-context linear regression (`metalm icl-train`, configs/icl/) against "
          "reference algorithms with their hyper-parameters tuned on held-out tasks (`metalm icl-compare`, "
          "docs/design.md 8): the one setting where what a trained Transformer computes is known (von Oswald et "
          "al. 2023; Ahn et al. 2023). The best match is the algorithm whose sensitivities ∂ŷ/∂x_q the model's "
          "match best; the other algorithms are the controls.", ""]
    if unfinished:
        md += ["Not compared yet, not reported: " + ", ".join(f"`{n}`" for n in unfinished) + ".", ""]
    md += table(ICL_SUMMARY_HEADER, icl_summary_rows(icl))
    for s in icl:
        c = s.compare
        md += [f"### `{s.name}`: {c.setting} (step {c.step})", ""]
        md += figure_md(f"figures/icl_{s.name}_f11.png", f"F11 ({s.name})",
                        "Test loss vs context size N of the trained model and every algorithm (hyper-parameters "
                        "tuned at the training N); prediction and sensitivity cosines per algorithm.")
        md += [f"Model loss {fmt(c.model_loss, 4)}; predicting 0: {fmt(c.loss_zero, 4)}.", ""]
        md += table(list(ICL_COMPARISON_HEADER), [list(r) for r in comparison_rows(c)])
        targets = [list(r) for r in icl_target_rows(c)]
        if s.train_seconds is not None:
            targets.append(["trained in under 10 minutes", f"{s.train_seconds:.0f} s",
                            "yes" if s.train_seconds < 600 else "no"])
        md += table(list(ICL_TARGET_HEADER), targets)
    return md


# ----------------------------------------------------------------------------- figures

def draw_setting(s: Setting, fig_dir: str) -> Dict[str, str]:
    """Draw every figure of one setting (its first seed) into fig_dir; returns {figure id: file name}."""
    P, r = plots, s.first
    figs = {
        "train": P.fig_training(r.metrics),
        "f1": P.fig_inner_loss([(f"step {k}", a) for k, a in r.checkpoints], r.untrained, r.tuned),
        "f2": P.fig_alignment(r.final, r.sublayer, r.untrained, r.tuned),
        "f3": P.fig_step_size(r.final, r.sublayer),
        "f4": P.fig_norms(r.final, r.sublayer),
        "f5": P.fig_norm_freq(r.final),
        "f7": P.fig_position_heatmaps(r.sublayer or r.final),
    }
    if r.evolution:
        figs["f6"] = P.fig_evolution(r.evolution)
    if r.intervene is not None:
        figs["f10"] = fig_intervene(r.intervene)
    if P.has_identity(r.final):
        figs["f9"] = P.fig_norm_identity(r.sublayer or r.final, r.untrained_sublayer if r.sublayer else r.untrained)
    names = {}
    for fid, fig in figs.items():
        names[fid] = f"{s.name}_{fid}.png"
        P.save(fig, os.path.join(fig_dir, names[fid]))
    return names


def captions(s: Setting) -> Dict[str, str]:
    k, seed = s.final_step, s.first.seed
    of = f"(seed {seed}; every seed's numbers are in the tables)"
    return {
        "train": f"Outer optimization: training and validation loss (nats/token) and validation bits per byte {of}.",
        "f1": f"Inner loss (logit-lens cross-entropy) of each state along depth, for checkpoints up to step {k}; "
              f"dashed: untrained model; dash-dot: the tuned lens's one coordinate system {of}.",
        "f2": f"Alignment cos(Δ, −∇ℓ) per block at step {k} beside the matched controls (shuffled, bigram, belief) "
              f"and the uniform one, each mean with its 95 % bootstrap interval over sequences, and the permutation "
              f"null band; the gaps over each control; attention vs MLP sublayers {of}.",
        "f3": f"Scale-free step sizes per layer (η/‖s_k‖², ‖Δ‖/‖s_k‖, the angle turned) with 95 % intervals, and the "
              f"first-order prediction ⟨−∇ℓ, Δ⟩ vs the actual inner-loss decrease at step {k} {of}.",
        "f4": f"Representation norms along depth (median, q10–q90), by layer and position (position 0 outlined), "
              f"and the position-0 norm ratio at step {k} {of}.",
        "f5": f"Representation norm vs token frequency per layer (binned, relative) and Spearman ρ, including "
              f"the embedding and unembedding tables, at step {k} {of}.",
        "f6": f"Alignment and the strongest matched control, scaled step size, norms and inner loss per layer "
              f"versus outer training step (from run/analysis.jsonl) {of}.",
        "f7": f"Layer × position maps of the inner loss and alignment at step {k} (position 0 outlined) {of}.",
        "f9": f"Norm growth ‖s_(k+1)‖² − ‖s_k‖² per step and its exact parts; the signed gradient-step growth against "
              f"its permutation null; |cos(s_k, ∇ℓ)| per state, a sanity check of the read-out, at step {k} and "
              f"untrained {of}.",
        "f10": f"Causal tests at step {k}: the change of the model's own loss when each block's update loses its "
               f"gradient part, an equally large random part or its radial part (95 % intervals over sequences; "
               f"dashed: the untrained model), and the loss along s_k + α Δ_k {of}.",
    }


# ----------------------------------------------------------------------------- provenance

def git_revision(explicit: Optional[str]) -> str:
    if explicit:
        return explicit
    try:
        r = subprocess.run(["git", "-C", REPO, "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
        return r.stdout.strip() if r.returncode == 0 and r.stdout.strip() else "unknown (git rev-parse failed)"
    except (OSError, subprocess.SubprocessError):
        return "unknown (git not available)"


def read_commands(path: Optional[str], out: str) -> Tuple[List[str], Optional[str]]:
    """Commands from --commands FILE (must exist) or OUT/commands.txt (if present)."""
    p = path or os.path.join(out, "commands.txt")
    if not os.path.exists(p):
        if path:
            raise InputError(path, "file not found")
        return [], None
    try:
        with open(p, encoding="utf-8") as f:
            return [line.rstrip("\n") for line in f if line.strip()], p
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(p, f"cannot read: {e}") from None


# ----------------------------------------------------------------------------- build

def build_report(out: str, title: str, setting_names: Optional[List[str]], git_rev: Optional[str],
                 commands_file: Optional[str], argv: List[str]) -> str:
    # Read and validate everything before writing anything.
    names = discover_settings(out, setting_names)
    settings = [load_setting(out, n) for n in names]
    icl_path = os.path.join(out, "synthetic_icl.json")
    icl = plots.load_synthetic_icl(icl_path) if os.path.exists(icl_path) else None
    icl_trained, icl_unfinished = load_icl_settings(out)
    commands, commands_src = read_commands(commands_file, out)
    rev = git_revision(git_rev)

    fig_dir = os.path.join(out, "figures")
    tmp_dir = os.path.join(out, f".figures.tmp.{os.getpid()}")
    report_path = os.path.join(out, "report.md")
    tmp_report = f"{report_path}.tmp.{os.getpid()}"
    os.makedirs(tmp_dir, exist_ok=True)
    try:
        drawn = {s.name: draw_setting(s, tmp_dir) for s in settings}
        if icl is not None:
            plots.save(plots.fig_synthetic_icl(icl), os.path.join(tmp_dir, "f8.png"))
        for t in icl_trained:
            plots.save(fig_icl_compare(t.compare, t.name), os.path.join(tmp_dir, f"icl_{t.name}_f11.png"))

        md = [f"# {title}", "",
              f"Generated {datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')} "
              f"from `{os.path.abspath(out)}` at git revision `{rev}`.", "",
              "Training is the outer optimization; each layer's update of a token's representation is read as "
              "one step of an inner optimization of the next-token loss through the logit lens (docs/design.md "
              "section 5). How to read each figure: docs/figures.md.", "",
              "**How a claim is decided.** An alignment above 0 is not evidence. Each claim is a *gap*: the "
              "alignment minus that of the strongest matched control (the shuffled target rules out a push "
              "toward frequent tokens, the bigram target a prediction from the current token alone, the belief "
              "direction a mere sharpening of the model's own guess; docs/design.md 5.5), with its 95 % bootstrap "
              "interval over sequences. Every setting is trained with several seeds; a claim **holds** only "
              "where every seed's interval lies above 0, and **does not hold** where any seed's interval "
              "includes 0 or the gap is negative. Numbers are the mean over seeds, then each seed's value.", "",
              "## Headline", ""]
        md += table(SUMMARY_HEADER, summary_rows(settings))
        for s in settings:
            md += [f"**`{s.name}`** (step {s.final_step}, seeds {', '.join(str(r.seed) for r in s.seeds)}):", ""]
            md += [f"- {r.headline()}" for r in gap_rows(runs_of(s, lambda r: r.final))]
            md += [""]
        md += ["## Hypotheses", ""]
        for s in settings:
            md += [f"### `{s.name}`", ""]
            md += table(HYPOTHESIS_HEADER, hypothesis_rows(s))
        if any(plots.has_identity(r.final) for s in settings for r in s.seeds):
            md += ["### Norm growth and the norm identity", "",
                   "The signed gradient-step growth ⟨Δ,−∇ℓ⟩|⟨Δ,−∇ℓ⟩|/‖∇ℓ‖² restates the alignment and the update's "
                   "length, so it is read against its value under the permutation null (the same updates against "
                   "another position's gradient), never as a share of the growth (docs/design.md 5.5). "
                   "|cos(s, ∇ℓ)| ≈ 0 is a property of a scale-invariant final norm that holds at initialisation: "
                   "a sanity check of the read-out, not a finding. Sums over the steps of the final checkpoint.", ""]
            md += table(IDENTITY_HEADER, identity_rows(settings))
        for s in settings:
            r0 = s.first
            md += [f"## Setting `{s.name}`", ""]
            if s.unfinished:
                md += ["Unfinished seeds, not reported: " + ", ".join(str(x) for x in s.unfinished) + ".", ""]
            missing = [p for r in s.seeds for p in r.missing_optional]
            if missing:
                md += ["Optional inputs not provided: " + ", ".join(f"`{p}`" for p in missing) + ".", ""]
            caps = captions(s)
            for fid in ("train", "f1", "f2", "f3", "f4", "f5", "f6", "f7", "f9", "f10"):
                if fid in drawn[s.name]:
                    number = "Training" if fid == "train" else fid.upper()
                    md += figure_md(f"figures/{drawn[s.name][fid]}", f"{number} ({s.name})", caps[fid])
            md += [f"### Gaps at step {s.final_step} (block granularity, logit lens)", ""]
            md += table(GAP_HEADER, gap_table_rows(runs_of(s, lambda r: r.final)))
            if all(r.sublayer for r in s.seeds):
                md += [f"### Gaps at step {s.final_step} (sublayer granularity, logit lens)", ""]
                md += table(GAP_HEADER, gap_table_rows(runs_of(s, lambda r: r.sublayer)))
            md += ["### The untrained control (logit lens)", ""]
            md += table(GAP_HEADER, gap_table_rows(runs_of(s, lambda r: r.untrained)))
            md += [f"### Step sizes at step {s.final_step}", ""]
            md += table(SCALE_FREE_HEADER, scale_free_rows(s))
            for logit_of, tuned_of, g in ((lambda r: r.final, lambda r: r.tuned, "block"),
                                          (lambda r: r.sublayer, lambda r: r.tuned_sublayer, "sublayer")):
                if all(logit_of(r) is not None and tuned_of(r) is not None for r in s.seeds):
                    md += [f"### Logit lens vs tuned lens at step {s.final_step} ({g} granularity)", "",
                           "The tuned lens maps every state into the final state's coordinates (u_k = A_k s_k + b_k, "
                           "each seed's own lens) and analyses that trajectory under the one read-out of the final "
                           "state (docs/design.md 5.2).", ""]
                    md += table(LENS_HEADER, lens_rows(s, logit_of, tuned_of))
            for r in s.seeds:
                if r.intervene is not None:
                    md += [f"### Causal tests at step {s.final_step} (seed {r.seed}, `metalm intervene`)", "",
                           "Change of the model's own loss (nats/token, edited − unedited) when a part of each block's "
                           "update is removed, mean [95 % interval over sequences] (docs/design.md 5.8).", ""]
                    md += table(list(INTERVENE_HEADER), [list(x) for x in intervene_rows(r.intervene)])
            md += [f"### States and token tables at step {s.final_step} (seed {r0.seed})", "",
                   "Position-0 norm ratio = mean norm at position 0 / mean norm at the other positions.", ""]
            md += table(STATES_HEADER, states_rows(r0.final, r0.untrained))
        if icl is not None:
            md += ["## Constructed linear-attention setting (ground truth for the analyser)", ""]
            md += figure_md("figures/f8.png", "F8",
                            "Alignment vs context size N (log scale) and the recovered step size η against the "
                            "true η of the construction.")
            md += table(ICL_HEADER, icl_rows(icl))
        if icl_trained or icl_unfinished:
            md += icl_section(icl_trained, icl_unfinished)
        md += ["## Reproduction", "", f"Git revision: `{rev}`", ""]
        if commands:
            md += [f"Commands (from `{_rel(commands_src, out)}`):", "", "```sh", *commands, "```", ""]
        else:
            md += ["Commands: not recorded (no OUT/commands.txt and no --commands).", ""]
        md += ["Report:", "", "```sh", " ".join(["/usr/bin/python3", "scripts/experiments/report.py", *argv]), "```", ""]

        with open(tmp_report, "w", encoding="utf-8") as f:
            f.write("\n".join(md))
        os.makedirs(fig_dir, exist_ok=True)
        for name in os.listdir(tmp_dir):
            os.replace(os.path.join(tmp_dir, name), os.path.join(fig_dir, name))
        os.replace(tmp_report, report_path)
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)
        if os.path.exists(tmp_report):
            os.remove(tmp_report)
    return report_path


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    p = argparse.ArgumentParser(prog="report.py", description=__doc__.split("\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("--out", required=True, metavar="OUT", help="reproduction output directory (layout above)")
    p.add_argument("--title", default="metalm: Transformers as inner optimizers of the causal LM loss",
                   metavar="TEXT", help="report title (default: %(default)s)")
    p.add_argument("--settings", metavar="A,B", help="comma-separated setting directories (default: all found)")
    p.add_argument("--git-rev", metavar="REV", help="git revision to record (default: git rev-parse HEAD)")
    p.add_argument("--commands", metavar="FILE", help="file of the exact commands run (default: OUT/commands.txt)")
    args = p.parse_args(argv)
    try:
        path = build_report(args.out, args.title, args.settings.split(",") if args.settings else None,
                            args.git_rev, args.commands, argv)
    except InputError as e:
        print(f"report.py: error: {e}", file=sys.stderr)
        return 1
    except Exception as e:  # noqa: BLE001 - a figure bug must still fail with one line, not a partial report
        if os.environ.get("METALM_DEBUG"):
            raise
        print(f"report.py: error: {type(e).__name__}: {' '.join(str(e).split())} (set METALM_DEBUG=1 for a traceback)",
              file=sys.stderr)
        return 1
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
