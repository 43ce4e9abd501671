#!/usr/bin/python3
"""Build OUT/report.md (figures, headline numbers, commands, git revision) from a reproduction run.

Usage:
  /usr/bin/python3 scripts/report.py --out OUT [--title TEXT] [--settings A,B] [--git-rev REV]
                                     [--commands FILE]

Expected layout (written by scripts/reproduce.sh through `metalm train` / `metalm analyze`):

  OUT/<setting>/run/metrics.jsonl                 required  training + eval events
  OUT/<setting>/run/analysis.jsonl                optional  periodic analysis during training (F6)
  OUT/<setting>/analysis/step<K>_block.json       required  at least one K; the largest K is "final"
  OUT/<setting>/analysis/step<K>_sublayer.json    optional  attention vs MLP steps (F2-F4, F7 use K final)
  OUT/<setting>/analysis/untrained_block.json     required  the untrained control
  OUT/<setting>/analysis/untrained_sublayer.json  optional
  OUT/<setting>/analysis/tuned_step<K>_{block,sublayer}.json  optional  the final K through a tuned lens
  OUT/synthetic_icl.json                          optional  `metalm synthetic-icl` output (F8)
  OUT/commands.txt                                optional  the exact commands run, one per line

A <setting> is any subdirectory of OUT holding run/ or analysis/ (or those named by --settings).
Every file present is validated; a missing required file, invalid JSON, an analysis that is not
"format": "metalm-analysis", "version": 1 (docs/analysis-schema.md) or a missing required key
stops the build with exit status 1 and one line `report.py: error: FILE: what is wrong`,
before anything is written. Outputs: OUT/figures/<setting>_{train,f1..f7,f9}.png, OUT/figures/f8.png
and OUT/report.md (written to a temporary name, then renamed).
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
from typing import Dict, List, Optional, Tuple

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402

import plots  # noqa: E402
from plots.load import Analysis, IclRun, InputError, Metrics  # noqa: E402
from plots.norms import position0_ratio  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_STEP_FILE = re.compile(r"^step(\d+)_block\.json$")


# ----------------------------------------------------------------------------- inputs

@dataclass
class Setting:
    name: str
    root: str
    metrics: Metrics
    checkpoints: List[Tuple[int, Analysis]]           # block granularity, by outer step
    untrained: Analysis
    sublayer: Optional[Analysis] = None                # at the final checkpoint
    untrained_sublayer: Optional[Analysis] = None
    evolution: Optional[List[Analysis]] = None
    tuned: Optional[Analysis] = None                   # the final checkpoint through its tuned lens
    tuned_sublayer: Optional[Analysis] = None
    missing_optional: List[str] = field(default_factory=list)

    @property
    def final_step(self) -> int:
        return self.checkpoints[-1][0]

    @property
    def final(self) -> Analysis:
        return self.checkpoints[-1][1]


def _rel(path: str, out: str) -> str:
    return os.path.relpath(path, out)


def _check_same_depth(a: Analysis, ref: Analysis):
    if a.n_layers != ref.n_layers:
        raise InputError(a.path, f"has {a.n_layers} blocks but {ref.path} has {ref.n_layers}")


def load_setting(out: str, name: str) -> Setting:
    root = os.path.join(out, name)
    adir = os.path.join(root, "analysis")
    metrics = plots.load_metrics(os.path.join(root, "run", "metrics.jsonl"))
    steps = sorted(int(m.group(1)) for f in (os.listdir(adir) if os.path.isdir(adir) else [])
                   if (m := _STEP_FILE.match(f)))
    if not steps:
        raise InputError(os.path.join(adir, "step<K>_block.json"), "file not found (need at least one checkpoint analysis)")
    ckpts = [(k, plots.load_analysis(os.path.join(adir, f"step{k}_block.json"))) for k in steps]
    untrained = plots.load_analysis(os.path.join(adir, "untrained_block.json"))
    for _, a in ckpts:
        _check_same_depth(a, untrained)
    s = Setting(name, root, metrics, ckpts, untrained)

    def optional(path: str, loader):
        if os.path.exists(path):
            return loader(path)
        s.missing_optional.append(_rel(path, out))
        return None

    s.sublayer = optional(os.path.join(adir, f"step{s.final_step}_sublayer.json"), plots.load_analysis)
    s.untrained_sublayer = optional(os.path.join(adir, "untrained_sublayer.json"), plots.load_analysis)
    # Validate every other sublayer file too, so a malformed one cannot go unnoticed.
    for k in steps[:-1]:
        p = os.path.join(adir, f"step{k}_sublayer.json")
        if os.path.exists(p):
            plots.load_analysis(p)
    s.evolution = optional(os.path.join(root, "run", "analysis.jsonl"), plots.load_analysis_jsonl)
    # Through a tuned lens (`metalm lens-train`, `analyze --lens`): optional, not listed as missing.
    for g in ("block", "sublayer"):
        p = os.path.join(adir, f"tuned_step{s.final_step}_{g}.json")
        if os.path.exists(p):
            a = plots.load_analysis(p)
            _check_same_depth(a, untrained)
            setattr(s, "tuned" if g == "block" else "tuned_sublayer", a)
    return s


def discover_settings(out: str, names: Optional[List[str]]) -> List[str]:
    if not os.path.isdir(out):
        raise InputError(out, "output directory not found")
    if names:
        for n in names:
            if not os.path.isdir(os.path.join(out, n)):
                raise InputError(os.path.join(out, n), "setting directory not found")
        return names
    found = sorted(d for d in os.listdir(out) if not d.startswith((".", "_")) and d != "figures"
                   and (os.path.isdir(os.path.join(out, d, "run")) or os.path.isdir(os.path.join(out, d, "analysis"))))
    if not found:
        raise InputError(out, "no settings found (expected OUT/<setting>/run/metrics.jsonl and OUT/<setting>/analysis/)")
    return found


# ----------------------------------------------------------------------------- markdown helpers

def fmt(x: Optional[float], digits: int = 3) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "–"
    return f"{x:.{digits}f}"


def table(header: List[str], rows: List[List[str]]) -> List[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return out + [""]


def figure_md(rel_png: str, number: str, caption: str) -> List[str]:
    return [f"![{number}]({rel_png})", "", f"*{number}.* {caption}", ""]


def _mean(xs) -> float:
    a = np.array([x for x in xs if x is not None and math.isfinite(x)], dtype=float)
    return float(a.mean()) if a.size else float("nan")


# ----------------------------------------------------------------------------- sections

def summary_rows(settings: List[Setting]) -> List[List[str]]:
    rows = []
    for s in settings:
        m, a, u = s.metrics, s.final, s.untrained
        bpb = m.val_bpb[-1] if m.val_bpb.size else float("nan")
        vloss = m.val_loss[-1] if m.val_loss.size else float("nan")
        steps = a.steps_of("block") or a.steps
        usteps = u.steps_of("block") or u.steps
        rows.append([s.name, str(a.n_layers), str(s.final_step), fmt(bpb), fmt(vloss), fmt(a.final_loss),
                     fmt(_mean(x.alignment.mean for x in steps)),
                     fmt(_mean(x.alignment_random_target.mean for x in steps)),
                     fmt(_mean(x.alignment.mean for x in usteps)), f"±{fmt(a.chance_alignment)}",
                     fmt(a.tables["embedding"].spearman_vs_freq) if "embedding" in a.tables else "–",
                     fmt(a.tables["unembedding"].spearman_vs_freq) if "unembedding" in a.tables else "–"])
    return rows


SUMMARY_HEADER = ["setting", "blocks", "final step", "val bits/byte", "val loss (nats)", "lens loss at final (nats)",
                  "alignment (mean over blocks)", "random-target control", "untrained", "chance",
                  "ρ(norm, freq) embed", "ρ(norm, freq) unembed"]


def steps_rows(a: Analysis, untrained: Optional[Analysis]) -> List[List[str]]:
    u = {(x.from_site, x.to_site): x for x in untrained.steps} if untrained else {}
    rows = []
    for x in a.steps:
        ux = u.get((x.from_site, x.to_site))
        rows.append([x.label, f"{x.from_site} → {x.to_site}", f"{fmt(x.loss_before)} → {fmt(x.loss_after)}",
                     f"{fmt(x.alignment.mean)} [{fmt(x.alignment.q10)}, {fmt(x.alignment.q90)}]",
                     fmt(x.alignment_random_target.mean), fmt(ux.alignment.mean) if ux else "–",
                     f"±{fmt(a.chance_alignment)}", fmt(x.step_size.median), fmt(x.first_order_decrease),
                     fmt(x.actual_decrease)])
    return rows


STEPS_HEADER = ["step", "sites", "lens loss before → after (nats)", "alignment mean [q10, q90]",
                "random-target", "untrained", "chance", "η median", "first-order decrease", "actual decrease"]


def states_rows(a: Analysis, untrained: Optional[Analysis]) -> List[List[str]]:
    u = {x.site: x for x in untrained.states} if untrained else {}
    rows = []
    for x in a.states:
        ux = u.get(x.site)
        rows.append([x.site, fmt(x.loss), fmt(x.norm.median), f"[{fmt(x.norm.q10)}, {fmt(x.norm.q90)}]",
                     fmt(x.norm_freq_spearman), fmt(position0_ratio(x.norm_by_position), 2),
                     fmt(position0_ratio(ux.norm_by_position), 2) if ux else "–"])
    for t in a.tables.values():
        rows.append([f"{t.name} table", "–", fmt(t.norm.median), f"[{fmt(t.norm.q10)}, {fmt(t.norm.q90)}]",
                     fmt(t.spearman_vs_freq), "–", "–"])
    return rows


STATES_HEADER = ["state", "lens loss (nats)", "norm median", "norm [q10, q90]", "Spearman ρ(norm, freq)",
                 "position-0 norm ratio", "position-0 ratio (untrained)"]


def icl_rows(runs: List[IclRun]) -> List[List[str]]:
    return [[fmt(r.eta, 4), fmt(r.d_x, 0), fmt(p.n, 0), fmt(p.alignment.mean, 4),
             f"[{fmt(p.alignment.q10, 4)}, {fmt(p.alignment.q90, 4)}]", fmt(p.step_size.median, 4),
             fmt(p.loss_before, 4), fmt(p.loss_after, 4)] for r in runs for p in r.points]


def identity_rows(settings: List[Setting]) -> List[List[str]]:
    """The norm identity per setting (design.md 5.3): how orthogonal the gradient is to the state,
    and the share of the measured norm growth a pure gradient step of the measured η explains."""
    rows = []
    for s in settings:
        a, u = s.sublayer or s.final, s.untrained_sublayer if s.sublayer else s.untrained
        rows.append([f"`{s.name}`", "sublayer" if s.sublayer else "block",
                     fmt(plots.max_abs_cos_state_grad(a), 6), fmt(plots.max_abs_cos_state_grad(u), 6) if u else "–",
                     fmt(sum(x.norm_sq_growth for x in a.steps), 1),
                     fmt(100 * plots.growth_share(a), 1), fmt(100 * plots.growth_share(u), 1) if u else "–"])
    return rows


IDENTITY_HEADER = ["setting", "steps", "max |cos(s, ∇ℓ)| (q10/q90 over states)", "untrained",
                   "Σ_k mean growth of ‖s‖²", "% explained by η²‖∇ℓ‖²", "untrained %"]


def lens_rows(logit: Analysis, tuned: Analysis) -> List[List[str]]:
    """The same steps read through the logit lens and through the tuned lens."""
    t = {(x.from_site, x.to_site): x for x in tuned.steps}
    rows = []
    for x in logit.steps:
        y = t.get((x.from_site, x.to_site))
        if y is None:
            continue
        rows.append([x.label, f"{fmt(x.loss_before)} → {fmt(x.loss_after)}", f"{fmt(y.loss_before)} → {fmt(y.loss_after)}",
                     fmt(x.alignment.mean), fmt(y.alignment.mean), fmt(y.alignment_random_target.mean),
                     f"±{fmt(logit.chance_alignment)}"])
    return rows


LENS_HEADER = ["step", "logit lens: loss before → after", "tuned lens: loss before → after",
               "alignment (logit lens)", "alignment (tuned lens)", "random-target (tuned lens)", "chance"]


def has_identity(a: Analysis) -> bool:
    return any(math.isfinite(x.norm_sq_growth) for x in a.steps)


ICL_HEADER = ["true η", "d_x", "N", "alignment mean", "alignment [q10, q90]", "recovered η (median)",
              "loss before", "loss after"]


# ----------------------------------------------------------------------------- figures

def draw_setting(s: Setting, fig_dir: str) -> Dict[str, str]:
    """Draw every figure of one setting into fig_dir; returns {figure id: file name}."""
    P = plots
    figs = {
        "train": P.fig_training(s.metrics),
        "f1": P.fig_inner_loss([(f"step {k}", a) for k, a in s.checkpoints], s.untrained, s.tuned),
        "f2": P.fig_alignment(s.final, s.sublayer, s.untrained, s.tuned),
        "f3": P.fig_step_size(s.final, s.sublayer),
        "f4": P.fig_norms(s.final, s.sublayer),
        "f5": P.fig_norm_freq(s.final),
        "f7": P.fig_position_heatmaps(s.sublayer or s.final),
    }
    if s.evolution:
        figs["f6"] = P.fig_evolution(s.evolution)
    if has_identity(s.final):
        figs["f9"] = P.fig_norm_identity(s.sublayer or s.final,
                                         s.untrained_sublayer if s.sublayer else s.untrained)
    names = {}
    for fid, fig in figs.items():
        names[fid] = f"{s.name}_{fid}.png"
        P.save(fig, os.path.join(fig_dir, names[fid]))
    return names


def captions(s: Setting) -> Dict[str, str]:
    k = s.final_step
    return {
        "train": "Outer optimization: training and validation loss (nats/token) and validation bits per byte.",
        "f1": f"Inner loss (logit-lens cross-entropy) of each state along depth, for checkpoints up to step {k}; "
              "dashed: untrained model.",
        "f2": f"Alignment cos(Δ, −∇ℓ) per block and per sublayer at step {k}, beside the random-target control, "
              "the untrained model and the chance band ±1/√d.",
        "f3": f"Least-squares step size η per layer, and the first-order prediction ⟨−∇ℓ, Δ⟩ vs the actual "
              f"inner-loss decrease at step {k}.",
        "f4": f"Representation norms along depth (median, q10–q90), by layer and position (position 0 outlined), "
              f"and the position-0 norm ratio at step {k}.",
        "f5": f"Representation norm vs token frequency per layer (binned, relative) and Spearman ρ, including "
              f"the embedding and unembedding tables, at step {k}.",
        "f6": "Alignment, step size, norms and inner loss per layer versus outer training step "
              "(from run/analysis.jsonl).",
        "f7": f"Layer × position maps of the inner loss and alignment at step {k} (position 0 outlined).",
        "f9": f"Norm growth ‖s_(k+1)‖² − ‖s_k‖² per step beside its radial part 2⟨s_k, Δ⟩, its update part ‖Δ‖² "
              f"and the η²‖∇ℓ‖² of a pure gradient step, at step {k} and untrained; |cos(s_k, ∇ℓ)| per state.",
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

        md = [f"# {title}", "",
              f"Generated {datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')} "
              f"from `{os.path.abspath(out)}` at git revision `{rev}`.", "",
              "Training is the outer optimization; each layer's update of a token's representation is read as "
              "one step of an inner optimization of the next-token loss through the logit lens (docs/design.md section 5). "
              "How to read each figure: docs/figures.md.", "",
              "## Headline numbers", ""]
        md += table(SUMMARY_HEADER, summary_rows(settings))
        md += ["Alignment columns are means over tokens and blocks at the final checkpoint; "
               "a layer behaves like a gradient step on *this* context's loss when its alignment clearly "
               "exceeds both the random-target control and the chance band.", ""]
        with_identity = [s for s in settings if has_identity(s.final)]
        if with_identity:
            md += ["### The norm identity", "",
                   "A LayerNorm or RMSNorm final norm makes the lens loss scale-invariant, so its gradient is "
                   "orthogonal to the state (cos(s, ∇ℓ) ≈ 0, up to the norm's eps) and a pure gradient step "
                   "can only grow ‖s‖², by η²‖∇ℓ‖² (docs/design.md 5.3). The share is "
                   "Σ_k mean η²‖∇ℓ‖² / Σ_k mean (‖s_(k+1)‖² − ‖s_k‖²) at the final checkpoint.", ""]
            md += table(IDENTITY_HEADER, identity_rows(with_identity))
        for s in settings:
            md += [f"## Setting `{s.name}`", ""]
            if s.missing_optional:
                md += ["Optional inputs not provided: " + ", ".join(f"`{p}`" for p in s.missing_optional) + ".", ""]
            caps = captions(s)
            for fid in ("train", "f1", "f2", "f3", "f4", "f5", "f6", "f7", "f9"):
                if fid in drawn[s.name]:
                    number = "Training" if fid == "train" else fid.upper()
                    md += figure_md(f"figures/{drawn[s.name][fid]}", f"{number} ({s.name})", caps[fid])
            md += [f"### Inner steps at step {s.final_step} (block granularity)", ""]
            md += table(STEPS_HEADER, steps_rows(s.final, s.untrained))
            if s.sublayer is not None:
                md += [f"### Inner steps at step {s.final_step} (sublayer granularity)", ""]
                md += table(STEPS_HEADER, steps_rows(s.sublayer, s.untrained_sublayer))
            for logit, tuned, g in ((s.final, s.tuned, "block"), (s.sublayer, s.tuned_sublayer, "sublayer")):
                if logit is not None and tuned is not None:
                    md += [f"### Logit lens vs tuned lens at step {s.final_step} ({g} granularity)", "",
                           "The same updates read through the model's own readout and through a tuned lens "
                           "(an affine translator per state, `metalm lens-train`); step k is read through "
                           "translator k before and after (docs/design.md 5.2).", ""]
                    md += table(LENS_HEADER, lens_rows(logit, tuned))
            md += [f"### States and token tables at step {s.final_step}", "",
                   "Position-0 norm ratio = mean norm at position 0 / mean norm at the other positions.", ""]
            md += table(STATES_HEADER, states_rows(s.final, s.untrained))
        if icl is not None:
            md += ["## Constructed linear-attention setting (ground truth for the analyser)", ""]
            md += figure_md("figures/f8.png", "F8",
                            "Alignment vs context size N (log scale) and the recovered step size η against the "
                            "true η of the construction.")
            md += table(ICL_HEADER, icl_rows(icl))
        md += ["## Reproduction", "", f"Git revision: `{rev}`", ""]
        if commands:
            md += [f"Commands (from `{_rel(commands_src, out)}`):", "", "```sh", *commands, "```", ""]
        else:
            md += ["Commands: not recorded (no OUT/commands.txt and no --commands).", ""]
        md += ["Report:", "", "```sh", " ".join(["/usr/bin/python3", "scripts/report.py", *argv]), "```", ""]

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
