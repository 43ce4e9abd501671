"""scripts/experiments/report.py: a full report from the documented multi-seed layout, gaps and verdicts checked
against an independent computation (the every-seed rule), and clean one-line failures.

Run: MPLBACKEND=Agg /usr/bin/python3 tests/python/test_report.py   (cwd = repo root)
"""
import contextlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path[:0] = [os.path.join(REPO, "scripts"), os.path.join(REPO, "scripts", "experiments"), HERE]

import fixtures as fx  # noqa: E402
import report  # noqa: E402
from test_plots import assert_valid_png  # noqa: E402

REPORT = os.path.join(REPO, "scripts", "experiments", "report.py")


def read_text(path: str) -> str:
    with open(path, encoding="utf-8") as f:
        return f.read()


def read_json(path: str):
    return json.loads(read_text(path))


def run_report(*args):
    return subprocess.run([sys.executable, REPORT, *args], capture_output=True, text=True, cwd=REPO,
                          env={**os.environ, "MPLBACKEND": "Agg"})


def report_of(out: str, *args):
    """scripts/experiments/report.py --out OUT ARGS: the finished process and the text of report.md ("" if none)."""
    proc = run_report("--out", out, *args)
    path = os.path.join(out, "report.md")
    return proc, read_text(path) if os.path.exists(path) else ""


def cells(row: str):
    """The cells of a markdown table row; "\\|" inside a cell is a literal "|"."""
    return [c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", row.strip()[1:-1])]


def table_rows(md: str, heading: str, first: str, setting: str = ""):
    """The rows of the table under `heading` (in the section of `setting`, if given) whose first cell
    starts with `first`."""
    if setting:
        md = md.split(f"## Setting `{setting}`", 1)[1]
    section = md.split(heading, 1)[1].split("\n#", 1)[0]
    return [cells(l) for l in section.splitlines() if l.startswith("| ") and cells(l)[0].startswith(first)]


MATCHED = ("shuffled", "bigram")  # the matched nulls; the belief is an explanation (design.md 5.5)
NAMES = {"shuffled": "shuffled-target control", "bigram": "bigram-target control", "belief": "belief control"}


def expected_gap_row(step_k: int, files, among=MATCHED):
    """Independently of report.py: per seed the strongest control of `among` (smallest gap mean), its
    gap and interval; the claim holds only if every seed's interval lies above 0."""
    per = []
    for seed, j in files:
        st = j["steps"][step_k]
        c = min(among, key=lambda c: st["gaps"][c]["mean"])
        per.append((seed, st["alignment"]["mean"], c, st[f"alignment_{c}"]["mean"], st["gaps"][c]))
    why = []
    for seed, _, _, _, g in per:
        lo, hi = g["ci"]
        if hi < 0:
            why.append(f"seed {seed}: gap negative")
        elif lo <= 0:
            why.append(f"seed {seed}: interval includes 0")
    verdict = "holds" if not why else f"does not hold ({'; '.join(why)})"
    return per, verdict


def mean(xs):
    return sum(xs) / len(xs)


class FullReport(unittest.TestCase):
    """Two settings x two finished seeds (and one unfinished) with constructed gaps whose verdicts are known."""

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory(prefix="metalm_report_")
        cls.out = fx.write_layout(cls.tmp.name, settings=("tiny", "flat"), ckpt_steps=(50, 100), tuned=True)
        cls.final = {}
        for name in ("tiny", "flat"):
            for seed in (1337, 1338):
                p = cls.path(name, seed, "step100_block.json")
                j = read_json(p)
                if name == "tiny":
                    # block 0 holds in both seeds; block 1's interval includes 0 in seed 1338 only, whose
                    # strongest control is then the shuffled one; block 2's gap is negative in seed 1337; a
                    # negative gap over the belief, an explanation and not a null, changes no verdict.
                    fx.set_gap(j["steps"][0], "bigram", 0.05 + 0.01 * (seed - 1337), 0.02, 0.08)
                    if seed == 1338:
                        fx.set_gap(j["steps"][1], "shuffled", 0.01, -0.01, 0.03)
                    else:
                        fx.set_gap(j["steps"][2], "bigram", -0.04, -0.06, -0.02)
                        fx.set_gap(j["steps"][0], "belief", -0.2, -0.3, -0.1)
                    # seed 1338's step 1: the signed growth's interval overlaps its null's
                    if seed == 1338:
                        j["steps"][1]["norm_sq_growth_gradient_signed_ci"] = [0.0, 1.0]
                        j["steps"][1]["norm_sq_growth_gradient_signed_permuted_ci"] = [0.5, 0.6]
                else:
                    # one scaled step size: every block's interval overlaps every other's
                    for st in j["steps"]:
                        st["step_size_scaled"].update(mean=0.01 + 0.0001 * st["index"], ci=[0.009, 0.0112])
                fx.write_json(p, j)
                cls.final[(name, seed)] = j
        # an unfinished seed: present, without its marker, and left out
        unfinished = os.path.join(cls.out, "tiny", "seed1339")
        shutil.copytree(os.path.join(cls.out, "tiny", "seed1337"), unfinished)
        os.remove(os.path.join(unfinished, "done"))
        fx.write_json(os.path.join(unfinished, "analysis", "step100_block.json"), {"broken": True})
        cls.proc, cls.md = report_of(cls.out, "--title", "Test report", "--git-rev", "abc1234")

    @classmethod
    def path(cls, name, seed, file):
        return os.path.join(cls.out, name, f"seed{seed}", "analysis", file)

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def files(self, name, file="step100_block.json"):
        return [(seed, read_json(self.path(name, seed, file))) for seed in (1337, 1338)]

    def test_exits_zero_and_prints_the_report_path(self):
        self.assertEqual(self.proc.returncode, 0, self.proc.stderr)
        self.assertEqual(self.proc.stdout.strip(), os.path.join(self.out, "report.md"))

    def test_every_referenced_figure_is_a_valid_png_with_a_caption(self):
        refs = re.findall(r"!\[([^\]]+)\]\(([^)]+)\)", self.md)
        self.assertEqual(sorted(r[1] for r in refs),
                         sorted([f"figures/{s}_{f}.png" for s in ("tiny", "flat")
                                 for f in ("train", "f1", "f2", "f3", "f4", "f5", "f6", "f7", "f9")]
                                + ["figures/f8.png"]))
        for number, rel in refs:
            with self.subTest(figure=rel):
                assert_valid_png(self, os.path.join(self.out, rel))
                self.assertIn(f"*{number}.* ", self.md)

    def test_gap_table_gives_each_seed_and_the_every_seed_verdict(self):
        rows = table_rows(self.md, "### Gaps at step 100 (block granularity, logit lens)", "block", "tiny")
        files = self.files("tiny")
        self.assertEqual(len(rows), 3)
        verdicts = []
        for k, row in enumerate(rows):
            per, verdict = expected_gap_row(k, files)
            self.assertEqual(row[0], f"block {k}")
            self.assertEqual(row[1], f"{mean([p[1] for p in per]):.3f} ({per[0][1]:.3f}, {per[1][1]:.3f})")
            self.assertEqual(row[4], f"{mean([p[4]['mean'] for p in per]):.3f}")
            self.assertEqual(row[5], "; ".join(f"{g['mean']:.3f} [{g['ci'][0]:.3f}, {g['ci'][1]:.3f}] (seed {s})"
                                               for s, _, _, _, g in per))
            self.assertEqual(row[6], verdict)
            verdicts.append(verdict)
            belief = [j["steps"][k]["gaps"]["belief"]["mean"] for _, j in files]
            self.assertEqual(row[7], f"{mean(belief):.3f} ({belief[0]:.3f}, {belief[1]:.3f})")
            unexplained = [j["steps"][k]["alignment_unexplained"]["mean"] for _, j in files]
            self.assertEqual(row[8], f"{mean(unexplained):.3f} ({unexplained[0]:.3f}, {unexplained[1]:.3f})")
        # The constructed cases: one that holds, one where one seed's interval includes 0, one negative gap.
        self.assertEqual(verdicts, ["holds", "does not hold (seed 1338: interval includes 0)",
                                    "does not hold (seed 1337: gap negative)"])
        self.assertEqual(rows[1][2], "bigram-target control (seed 1337), shuffled-target control (seed 1338)")
        self.assertEqual(rows[0][2], "bigram-target control")

    def test_headline_states_each_step_as_a_gap_against_the_strongest_control(self):
        files = self.files("tiny")
        headline = self.md.split("## Hypotheses")[0]
        self.assertEqual(len([l for l in headline.splitlines() if l.startswith("- block")]), 6)  # 3 blocks x 2 settings
        lines = [l for l in headline.split("**`tiny`**")[1].splitlines() if l.startswith("- block")]
        per, verdict = expected_gap_row(0, files)
        self.assertEqual(lines[0],
                         f"- block 0: alignment {mean([p[1] for p in per]):.3f}, bigram-target control "
                         f"{mean([p[3] for p in per]):.3f}, gap {mean([p[4]['mean'] for p in per]):.3f}; per seed "
                         + "; ".join(f"{g['mean']:.3f} [{g['ci'][0]:.3f}, {g['ci'][1]:.3f}] (seed {s})"
                                     for s, _, _, _, g in per) + ": **holds**")
        self.assertTrue(lines[2].endswith("**does not hold (seed 1337: gap negative)**"), lines[2])

    def test_hypothesis_rows_restate_each_claim_with_its_verdict(self):
        rows = {r[0]: r for r in table_rows(self.md, "### `tiny`", "H")}
        self.assertEqual(sorted(rows), ["H1", "H1b", "H1s", "H1t", "H2", "H3", "H4"])
        self.assertEqual(rows["H1"][2], "1 of 3 steps (block 0)")
        # H1b: cos(Δ, −g⊥) beyond the belief, its interval above 0 in every seed.
        held_b = [all(j["steps"][k]["alignment_unexplained"]["ci"][0] > 0 for _, j in self.files("tiny"))
                  for k in range(3)]
        self.assertEqual(rows["H1b"][2], f"{sum(held_b)} of 3 steps")
        self.assertIn("block 1: does not hold (seed 1338: interval includes 0)", rows["H1"][3])
        # H3 from the scaled step size: tiny's blocks differ (disjoint intervals), flat's share one size.
        self.assertEqual(rows["H3"][2], "does not hold")
        self.assertIn("η/‖s_k‖²", rows["H3"][1])
        scaled = [mean([j["steps"][k]["step_size_scaled"]["mean"] for _, j in self.files("tiny")]) for k in range(3)]
        self.assertIn(", ".join(f"{v:.4f}" for v in scaled), rows["H3"][1])
        flat = {r[0]: r for r in table_rows(self.md, "### `flat`", "H")}
        self.assertEqual(flat["H3"][2], "holds")
        # H4: the signed growth against its permutation null, every seed.
        self.assertEqual(rows["H4"][2], "2 of 3 steps")
        self.assertIn("block 1: does not hold (seed 1338: intervals overlap)", rows["H4"][3])
        self.assertEqual(flat["H4"][2], "3 of 3 steps")
        # H2: the decrease's interval in every seed
        dec = [mean([j["steps"][k]["actual_decrease"] for _, j in self.files("tiny")]) for k in range(3)]
        self.assertEqual(rows["H2"][3], "; ".join(f"block {k}: {d:.3f}, holds" for k, d in enumerate(dec)))

    def test_tuned_lens_and_untrained_control_are_stated_as_gaps(self):
        rows = table_rows(self.md, "### Logit lens vs tuned lens at step 100 (block granularity)", "block", "tiny")
        tuned = self.files("tiny", "tuned_step100_block.json")
        self.assertEqual(len(rows), 3)
        for k, row in enumerate(rows):
            per, verdict = expected_gap_row(k, tuned)
            self.assertEqual(row[4], f"{mean([p[4]['mean'] for p in per]):.3f}: {verdict}")
        untrained = table_rows(self.md, "### The untrained control (logit lens)", "block", "tiny")
        for k, row in enumerate(untrained):
            self.assertEqual(row[6], expected_gap_row(k, self.files("tiny", "untrained_block.json"))[1])
        summary = [cells(l) for l in self.md.splitlines() if l.startswith("| tiny |")]
        self.assertEqual(len(summary), 1)
        self.assertEqual(summary[0][2], "1337, 1338")
        self.assertEqual(summary[0][5], "1 of 3 steps (block 0)")
        self.assertEqual(summary[0][7], "0 of 3 steps")

    def test_norm_identity_row_uses_the_signed_terms_and_no_share(self):
        self.assertNotIn("explained", self.md)
        row = [cells(l) for l in self.md.splitlines() if l.startswith("| `tiny` |")]
        self.assertEqual(len(row), 1, "one norm-identity row per setting")
        files = self.files("tiny", "step100_sublayer.json")
        untrained = self.files("tiny", "untrained_sublayer.json")

        def total(fs, key):
            v = [sum(s[key] for s in j["steps"]) for _, j in fs]
            return f"{mean(v):.2f} ({v[0]:.2f}, {v[1]:.2f})"

        def worst(fs):
            return max(abs(st["cos_state_grad"][q]) for _, j in fs for st in j["states"] if st["cos_state_grad"]
                       for q in ("q10", "q90"))
        r = row[0]
        self.assertEqual(r[1], "sublayer")
        self.assertEqual(r[2], total(files, "norm_sq_growth"))
        self.assertEqual(r[3], total(files, "norm_sq_growth_gradient_signed"))
        self.assertEqual(r[4], total(files, "norm_sq_growth_gradient_signed_permuted"))
        self.assertEqual(r[5], total(untrained, "norm_sq_growth_gradient_signed"))
        self.assertEqual(r[6], f"{worst(files):.6f}")
        self.assertEqual(r[7], f"{worst(untrained):.6f}")

    def test_unfinished_seed_is_named_and_left_out(self):
        self.assertIn("Unfinished seeds, not reported: 1339.", self.md)
        self.assertNotIn("(seed 1339)", self.md)

    def test_records_git_revision_and_commands(self):
        self.assertIn("`abc1234`", self.md)
        self.assertIn("metalm train --config configs/tiny.json --run tiny/seed1337/run", self.md)
        self.assertIn("scripts/experiments/report.py --out", self.md)

    def test_leaves_no_temporary_files(self):
        leftovers = [n for n in os.listdir(self.out) if ".tmp." in n]
        self.assertEqual(leftovers, [])


class Verdicts(unittest.TestCase):
    """The every-seed rule on intervals, case by case."""

    def test_holds_only_when_every_seed_lies_above_zero(self):
        cases = [([(1, (0.01, 0.03)), (2, (0.001, 0.2))], "holds"),
                 ([(1, (0.01, 0.03)), (2, (0.0, 0.2))], "does not hold (seed 2: interval includes 0)"),
                 ([(1, (-0.3, -0.1)), (2, (0.1, 0.2))], "does not hold (seed 1: gap negative)"),
                 ([(1, (float("nan"), 0.1))], "does not hold (seed 1: no interval)"),
                 ([], "does not hold (not measured)")]
        for cis, text in cases:
            with self.subTest(cis=cis):
                self.assertEqual(report.interval_verdict(cis), (text == "holds", text))


class RealReport(unittest.TestCase):
    """The whole report from real metalm runs of two seeds (fixtures.real_layout)."""

    @classmethod
    def setUpClass(cls):
        cls.tmp, cls.out = fx.real_layout_or_skip("metalm_real_report_")
        cls.proc, cls.md = report_of(cls.out, "--settings", "tiny", "--git-rev", "abc1234")

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def test_exits_zero_with_every_figure(self):
        self.assertEqual(self.proc.returncode, 0, self.proc.stderr)
        refs = re.findall(r"!\[[^\]]+\]\(([^)]+)\)", self.md)
        self.assertEqual(sorted(refs), sorted([f"figures/tiny_{f}.png" for f in ("train", "f1", "f2", "f3", "f4", "f5",
                                                                                  "f6", "f7", "f9")] + ["figures/f8.png"]))
        for rel in refs:
            with self.subTest(figure=rel):
                assert_valid_png(self, os.path.join(self.out, rel), min_kb=5)

    def test_gap_verdicts_are_those_of_the_real_files(self):
        files = [(seed, read_json(os.path.join(self.out, "tiny", f"seed{seed}", "analysis", "step4_block.json")))
                 for seed in (1337, 1338)]
        rows = table_rows(self.md, "### Gaps at step 4 (block granularity, logit lens)", "block")
        self.assertEqual(len(rows), files[0][1]["n_layer"])
        for k, row in enumerate(rows):
            per, verdict = expected_gap_row(k, files)
            self.assertEqual(row[6], verdict)
            self.assertEqual(row[4], f"{mean([p[4]['mean'] for p in per]):.3f}")
        summary = [cells(l) for l in self.md.splitlines() if l.startswith("| tiny |")]
        self.assertEqual(len(summary), 1, self.md)
        self.assertEqual(summary[0][1:4], [str(files[0][1]["n_layer"]), "1337, 1338", "4"])


class Failures(unittest.TestCase):
    """A missing or malformed input: exit 1, one stderr line naming the file, nothing written."""

    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory(prefix="metalm_report_bad_")
        self.out = fx.write_layout(self.tmp.name, ckpt_steps=(10,), n_layers=2)
        self.root = os.path.join(self.out, "tiny", "seed1338")
        self.adir = os.path.join(self.root, "analysis")
        # A previous good report must survive a failed rebuild untouched.
        with open(os.path.join(self.out, "report.md"), "w") as f:
            f.write("previous report\n")

    def tearDown(self):
        self.tmp.cleanup()

    def fails_naming(self, path: str, *fragments: str):
        err = io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            rc = report.main(["--out", self.out, "--git-rev", "x"])
        msg = err.getvalue()
        self.assertEqual(rc, 1, msg)
        self.assertEqual(msg.count("\n"), 1, f"not one line: {msg!r}")
        self.assertTrue(msg.startswith(f"report.py: error: {path}"), msg)
        for frag in fragments:
            self.assertIn(frag, msg)
        self.assertEqual(read_text(os.path.join(self.out, "report.md")), "previous report\n")
        self.assertFalse(os.path.exists(os.path.join(self.out, "figures")))
        self.assertEqual([n for n in os.listdir(self.out) if ".tmp." in n], [])

    def edit(self, path, change):
        raw = read_json(path)
        change(raw)
        fx.write_json(path, raw)

    def test_missing_metrics_file(self):
        p = os.path.join(self.root, "run", "metrics.jsonl")
        os.remove(p)
        self.fails_naming(p, "file not found")

    def test_missing_untrained_control(self):
        p = os.path.join(self.adir, "untrained_block.json")
        os.remove(p)
        self.fails_naming(p, "file not found")

    def test_untrained_control_through_a_tuned_lens_is_refused(self):
        p = os.path.join(self.adir, "untrained_block.json")
        self.edit(p, lambda r: r.update(lens="tuned:other/lens.safetensors"))
        self.fails_naming(p, 'lens: expected "logit"', "tuned:other/lens.safetensors")

    def test_tuned_file_through_the_logit_lens_is_refused(self):
        p = os.path.join(self.adir, "tuned_step10_block.json")
        fx.write_json(p, fx.make_analysis(2, "block", step=10, from_cli=True))
        self.fails_naming(p, 'lens: expected a tuned lens ("tuned:PATH"), got "logit"')

    def test_seeds_with_different_final_steps_are_refused(self):
        os.rename(os.path.join(self.adir, "step10_block.json"), os.path.join(self.adir, "step20_block.json"))
        self.fails_naming(os.path.join(self.adir, "step20_block.json"), "final step 20 differs from seed 1337's 10")

    def test_seeds_of_another_depth_are_refused(self):
        p = os.path.join(self.adir, "step10_block.json")
        fx.write_json(p, fx.make_analysis(3, "block", step=10, from_cli=True))
        self.fails_naming(p, "has 3 blocks but")

    def test_no_finished_seed(self):
        for seed in (1337, 1338):
            os.remove(os.path.join(self.out, "tiny", f"seed{seed}", "done"))
        self.fails_naming(os.path.join(self.out, "tiny", "seed<S>", "done"), "no finished seed")

    def test_no_checkpoint_analysis(self):
        os.remove(os.path.join(self.adir, "step10_block.json"))
        self.fails_naming(os.path.join(self.adir, "step<K>_block.json"), "at least one checkpoint")

    def test_invalid_json(self):
        p = os.path.join(self.adir, "step10_block.json")
        with open(p, "w") as f:
            f.write('{"tokens": 12, "steps": [')
        self.fails_naming(p, "invalid JSON")

    def test_required_key_missing(self):
        p = os.path.join(self.adir, "step10_sublayer.json")
        self.edit(p, lambda r: r["steps"][1]["gaps"].pop("belief"))
        self.fails_naming(p, "steps[1].gaps.belief: missing key")

    def test_analysis_of_another_version_is_refused(self):
        p = os.path.join(self.adir, "step10_block.json")
        self.edit(p, lambda r: r.update(version=1))
        self.fails_naming(p, 'not a "metalm-analysis" version 2 analysis', '"version": 1')

    def test_analysis_line_without_format_is_refused(self):
        p = os.path.join(self.root, "run", "analysis.jsonl")
        rows = [json.loads(l) for l in read_text(p).splitlines()]
        del rows[1]["format"]
        fx.write_jsonl(p, rows)
        self.fails_naming(p, 'line 2: not a "metalm-analysis" version 2 analysis (no "format", "version": 2)')

    def test_malformed_optional_file_is_not_skipped(self):
        p = os.path.join(self.out, "synthetic_icl.json")
        self.edit(p, lambda r: r["points"][0].pop("step_size"))
        self.fails_naming(p, "points[0].step_size: missing key")

    def test_malformed_jsonl_line(self):
        p = os.path.join(self.root, "run", "analysis.jsonl")
        with open(p, "a") as f:
            f.write("{not json}\n")
        self.fails_naming(p, "invalid JSON on line")

    def test_process_exit_status_and_single_line(self):
        shutil.rmtree(os.path.join(self.root, "run"))
        os.makedirs(os.path.join(self.root, "run"))
        r = run_report("--out", self.out)
        self.assertEqual(r.returncode, 1)
        self.assertEqual(r.stdout, "")
        self.assertEqual(r.stderr.count("\n"), 1, r.stderr)
        self.assertIn("metrics.jsonl: file not found", r.stderr)

    def test_missing_output_directory(self):
        r = run_report("--out", os.path.join(self.out, "does-not-exist"))
        self.assertEqual(r.returncode, 1)
        self.assertIn("does-not-exist: output directory not found", r.stderr)


if __name__ == "__main__":
    unittest.main()
