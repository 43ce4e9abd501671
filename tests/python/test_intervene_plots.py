"""F10 (scripts/plots/plot.py f10) and the report's causal-test table from `metalm intervene` output
(docs/design.md 5.8 and 7): the figure draws every step's intervals as the JSON gives them, a file of
another format is one error line, and the report states each step's effects with their intervals.

Run: MPLBACKEND=Agg /usr/bin/python3 tests/python/test_intervene_plots.py   (cwd = repo root)
"""
import json
import os
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path[:0] = [os.path.join(REPO, "scripts"), HERE]

import fixtures as fx  # noqa: E402
from plots.intervene import fig_intervene, parse_intervene, table_rows  # noqa: E402
from test_plots import assert_valid_png  # noqa: E402
from test_report import report_of, table_rows as report_table_rows  # noqa: E402

KEYS = ("remove_gradient", "remove_random", "remove_radial", "remove_gradient_minus_random", "gradient_step",
        "gradient_step_median", "gradient_energy")
ALPHAS = [0, 0.5, 1, 1.5, 2]


def effect(mean, half=0.01, n=64):
    return {"mean": mean, "lo": mean - half, "hi": mean + 2 * half, "n": n}


def make_intervene(n_layers=3, scale=1.0, untrained=True):
    steps = []
    for k in range(n_layers):
        st = {"layer": k, "kind": "block", "from": f"s{k}", "to": f"s{k + 1}", "step_size_median": 0.5,
              "alpha_min": 1.5 if k == 1 else 1}
        for i, key in enumerate(KEYS):
            st[key] = effect(scale * (0.1 * (k + 1) - 0.02 * i))
        st["line_search"] = [dict(effect(scale * (a - 1) ** 2), alpha=a) for a in ALPHAS]
        steps.append(st)
    j = {"format": "metalm-intervene", "version": 1, "granularity": "block", "lens": "logit", "tokens": 64,
         "final_loss": 2.0, "alphas": ALPHAS, "steps": steps}
    if untrained:
        j["control_untrained"] = make_intervene(n_layers, 0.01, untrained=False)
    return j


class Figure(unittest.TestCase):
    def test_f10_draws_every_interval_as_given(self):
        run = parse_intervene(make_intervene(), "x.json")
        fig = fig_intervene(run)
        bars = [c for ax in fig.axes for c in ax.collections if c.get_gid() == "ci_remove_gradient"]
        self.assertEqual(len(bars), 1)
        segs = bars[0].get_segments()
        self.assertEqual([(s[0][1], s[1][1]) for s in segs],
                         [(st.effects["remove_gradient"].lo, st.effects["remove_gradient"].hi) for st in run.steps])

    def test_plot_cli_writes_a_png_and_refuses_another_format(self):
        with tempfile.TemporaryDirectory() as d:
            good = fx.write_json(os.path.join(d, "iv.json"), make_intervene())
            r = fx.run_plot("f10", good, "--out", os.path.join(d, "f10.png"))
            self.assertEqual(r.returncode, 0, r.stderr)
            assert_valid_png(self, os.path.join(d, "f10.png"), min_kb=5)
            bad = fx.write_json(os.path.join(d, "bad.json"), {**make_intervene(), "version": 2})
            out = os.path.join(d, "bad.png")
            fx.assert_refused(self, fx.run_plot("f10", bad, "--out", out),
                              'not a "metalm-intervene" version 1 file', out)

    def test_a_missing_key_names_its_path(self):
        j = make_intervene()
        del j["steps"][1]["remove_radial"]["hi"]
        with self.assertRaisesRegex(Exception, r"steps\[1\]\.remove_radial\.hi: missing key"):
            parse_intervene(j, "x.json")


class Report(unittest.TestCase):
    def test_report_has_f10_and_a_table_row_per_step(self):
        with tempfile.TemporaryDirectory() as d:
            out = fx.write_layout(d, settings=("tiny",), ckpt_steps=(50, 100))
            j = make_intervene()
            fx.write_json(os.path.join(out, "tiny", "seed1337", "analysis", "intervene_step100_block.json"), j)
            proc, md = report_of(out, "--git-rev", "abc1234")
            self.assertEqual(proc.returncode, 0, proc.stderr)
            self.assertIn("figures/tiny_f10.png", md)
            assert_valid_png(self, os.path.join(out, "figures", "tiny_f10.png"), min_kb=5)
            rows = report_table_rows(md, "### Causal tests at step 100 (seed 1337", "", setting="tiny")
            rows = [r for r in rows if r[0] != "step"]
            self.assertEqual(len(rows), 3)
            expected = table_rows(parse_intervene(j, "x.json"))
            self.assertEqual([tuple(r) for r in rows], expected)
            g = j["steps"][1]["remove_gradient"]
            self.assertEqual(rows[1][1], f"{g['mean']:+.4f} [{g['lo']:+.4f}, {g['hi']:+.4f}]")
            self.assertEqual(rows[1][-1], "1.5")
            self.assertNotIn("Causal tests at step 100 (seed 1338", md)  # that seed has no file


if __name__ == "__main__":
    unittest.main()
