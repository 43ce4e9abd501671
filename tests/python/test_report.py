"""scripts/report.py: a full report from the documented layout, and clean one-line failures.

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
sys.path[:0] = [os.path.join(REPO, "scripts"), HERE]

import fixtures as fx  # noqa: E402
import report  # noqa: E402
from test_plots import assert_valid_png  # noqa: E402

REPORT = os.path.join(REPO, "scripts", "report.py")


def read_text(path: str) -> str:
    with open(path, encoding="utf-8") as f:
        return f.read()


def read_json(path: str):
    return json.loads(read_text(path))


def run_report(*args):
    return subprocess.run([sys.executable, REPORT, *args], capture_output=True, text=True, cwd=REPO,
                          env={**os.environ, "MPLBACKEND": "Agg"})


def report_of(out: str, *args):
    """scripts/report.py --out OUT ARGS: the finished process and the text of report.md ("" if none)."""
    proc = run_report("--out", out, *args)
    path = os.path.join(out, "report.md")
    return proc, read_text(path) if os.path.exists(path) else ""


class FullReport(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory(prefix="metalm_report_")
        cls.out = fx.write_layout(cls.tmp.name, ckpt_steps=(50, 100))
        tuned = fx.make_analysis(3, "block", trained=0.5, seed=77, step=100, from_cli=True)
        tuned["lens"] = "tuned:lens.safetensors"
        cls.tuned = tuned
        with open(os.path.join(cls.out, "tiny", "analysis", "tuned_step100_block.json"), "w") as f:
            json.dump(tuned, f)
        cls.proc, cls.md = report_of(cls.out, "--title", "Test report", "--git-rev", "abc1234")

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def test_exits_zero_and_prints_the_report_path(self):
        self.assertEqual(self.proc.returncode, 0, self.proc.stderr)
        self.assertEqual(self.proc.stdout.strip(), os.path.join(self.out, "report.md"))

    def test_every_referenced_figure_is_a_valid_png_with_a_caption(self):
        refs = re.findall(r"!\[([^\]]+)\]\(([^)]+)\)", self.md)
        self.assertEqual(sorted(r[1] for r in refs),
                         sorted([f"figures/tiny_{f}.png" for f in ("train", "f1", "f2", "f3", "f4", "f5", "f6", "f7", "f9")]
                                + ["figures/f8.png"]))
        for number, rel in refs:
            with self.subTest(figure=rel):
                assert_valid_png(self, os.path.join(self.out, rel))
                self.assertIn(f"*{number}.* ", self.md)

    def test_headline_numbers_match_an_independent_computation(self):
        rows = [json.loads(l) for l in read_text(os.path.join(self.out, "tiny", "run", "metrics.jsonl")).splitlines()]
        bpb = [r["val_bpb"] for r in rows if r["event"] == "eval"][-1]
        final = read_json((os.path.join(self.out, "tiny", "analysis", "step100_block.json")))
        align = sum(s["alignment"]["mean"] for s in final["steps"]) / len(final["steps"])
        control = sum(s["alignment_random_target"]["mean"] for s in final["steps"]) / len(final["steps"])
        summary = [l for l in self.md.splitlines() if l.startswith("| tiny |")]
        self.assertEqual(len(summary), 1)
        cells = [c.strip() for c in summary[0].strip("|").split("|")]
        self.assertEqual(cells[3], f"{bpb:.3f}")
        self.assertEqual(cells[6], f"{align:.3f}")
        self.assertEqual(cells[7], f"{control:.3f}")
        self.assertEqual(cells[9], f"±{final['chance_alignment']:.3f}")

    def test_tuned_lens_table_sets_both_lenses_side_by_side(self):
        self.assertIn("### Logit lens vs tuned lens at step 100 (block granularity)", self.md)
        self.assertNotIn("(sublayer granularity)\n\nThe same updates", self.md)  # no tuned sublayer file
        logit = read_json(os.path.join(self.out, "tiny", "analysis", "step100_block.json"))
        section = self.md.split("### Logit lens vs tuned lens at step 100 (block granularity)")[1].split("###")[0]
        rows = [l for l in section.splitlines() if l.startswith("| L")]
        self.assertEqual(len(rows), len(logit["steps"]))
        for row, a, t in zip(rows, logit["steps"], self.tuned["steps"]):
            cells = [c.strip() for c in row.strip("|").split("|")]
            self.assertEqual(cells[3], f"{a['alignment']['mean']:.3f}")
            self.assertEqual(cells[4], f"{t['alignment']['mean']:.3f}")
            self.assertEqual(cells[5], f"{t['alignment_random_target']['mean']:.3f}")

    def test_norm_identity_row_matches_an_independent_computation(self):
        a = read_json(os.path.join(self.out, "tiny", "analysis", "step100_sublayer.json"))
        u = read_json(os.path.join(self.out, "tiny", "analysis", "untrained_sublayer.json"))

        def worst(x):
            return max(abs(st["cos_state_grad"][q]) for st in x["states"] if st["cos_state_grad"]
                       for q in ("q10", "q90"))

        def share(x):
            return 100 * sum(s["norm_sq_growth_gradient_step"] for s in x["steps"]) / sum(
                s["norm_sq_growth"] for s in x["steps"])
        row = [l for l in self.md.splitlines() if l.startswith("| `tiny` |")]
        self.assertEqual(len(row), 1, "one norm-identity row per setting")
        cells = [c.strip() for c in row[0].strip("|").split("|")]
        self.assertEqual(cells[1], "sublayer")
        self.assertEqual(cells[2], f"{worst(a):.6f}")
        self.assertEqual(cells[3], f"{worst(u):.6f}")
        self.assertEqual(cells[4], f"{sum(s['norm_sq_growth'] for s in a['steps']):.1f}")
        self.assertEqual(cells[5], f"{share(a):.1f}")
        self.assertEqual(cells[6], f"{share(u):.1f}")

    def test_position0_ratio_per_state(self):
        final = read_json((os.path.join(self.out, "tiny", "analysis", "step100_block.json")))
        for st in final["states"]:
            v = st["norm_by_position"]
            ratio = v[0] / (sum(v[1:]) / len(v[1:]))
            row = [l for l in self.md.splitlines() if l.startswith(f"| {st['site']} |")]
            self.assertTrue(row, st["site"])
            cells = [c.strip() for c in row[-1].strip("|").split("|")]
            self.assertEqual(cells[5], f"{ratio:.2f}")
            self.assertEqual(cells[4], f"{st['norm_freq_spearman']['current']:.3f}")

    def test_records_git_revision_and_commands(self):
        self.assertIn("`abc1234`", self.md)
        self.assertIn("metalm train --config configs/tiny.json --run tiny/run", self.md)
        self.assertIn("scripts/report.py --out", self.md)

    def test_leaves_no_temporary_files(self):
        leftovers = [n for n in os.listdir(self.out) if ".tmp." in n]
        self.assertEqual(leftovers, [])


class RealReport(unittest.TestCase):
    """The whole report from real metalm runs (fixtures.real_layout)."""

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

    def test_headline_numbers_are_the_real_files(self):
        final = read_json(os.path.join(self.out, "tiny", "analysis", "step4_block.json"))
        align = sum(s["alignment"]["mean"] for s in final["steps"]) / len(final["steps"])
        row = [l for l in self.md.splitlines() if l.startswith("| tiny |")]
        self.assertEqual(len(row), 1, self.md)
        cells = [c.strip() for c in row[0].strip("|").split("|")]
        self.assertEqual(cells[1], str(final["n_layer"]))
        self.assertEqual(cells[2], "4")
        self.assertEqual(cells[6], f"{align:.3f}")
        self.assertEqual(cells[10], f"{final['tables']['embedding']['norm_freq_spearman']:.3f}")


class Failures(unittest.TestCase):
    """A missing or malformed input: exit 1, one stderr line naming the file, nothing written."""

    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory(prefix="metalm_report_bad_")
        self.out = fx.write_layout(self.tmp.name, ckpt_steps=(10,), n_layers=2)
        self.adir = os.path.join(self.out, "tiny", "analysis")
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

    def test_missing_metrics_file(self):
        p = os.path.join(self.out, "tiny", "run", "metrics.jsonl")
        os.remove(p)
        self.fails_naming(p, "file not found")

    def test_missing_untrained_control(self):
        p = os.path.join(self.adir, "untrained_block.json")
        os.remove(p)
        self.fails_naming(p, "file not found")

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
        raw = read_json((p))
        del raw["steps"][1]["alignment_random_target"]
        fx.write_json(p, raw)
        self.fails_naming(p, "steps[1].alignment_random_target: missing key")

    def test_analysis_of_another_version_is_refused(self):
        p = os.path.join(self.adir, "step10_block.json")
        raw = read_json(p)
        raw["version"] = 2
        fx.write_json(p, raw)
        self.fails_naming(p, 'not a "metalm-analysis" version 1 analysis', '"version": 2')

    def test_analysis_line_without_format_is_refused(self):
        p = os.path.join(self.out, "tiny", "run", "analysis.jsonl")
        rows = [json.loads(l) for l in read_text(p).splitlines()]
        del rows[1]["format"]
        fx.write_jsonl(p, rows)
        self.fails_naming(p, 'line 2: not a "metalm-analysis" version 1 analysis (no "format", "version": 1)')

    def test_malformed_optional_file_is_not_skipped(self):
        p = os.path.join(self.out, "synthetic_icl.json")
        raw = read_json((p))
        del raw["points"][0]["step_size"]
        fx.write_json(p, raw)
        self.fails_naming(p, "points[0].step_size: missing key")

    def test_malformed_jsonl_line(self):
        p = os.path.join(self.out, "tiny", "run", "analysis.jsonl")
        with open(p, "a") as f:
            f.write("{not json}\n")
        self.fails_naming(p, "invalid JSON on line")

    def test_process_exit_status_and_single_line(self):
        shutil.rmtree(os.path.join(self.out, "tiny", "run"))
        os.makedirs(os.path.join(self.out, "tiny", "run"))
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
