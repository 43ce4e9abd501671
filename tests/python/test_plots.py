"""Figures F1-F9 and the training curve: labelled axes, valid small PNGs, strict input checks;
the intervals, controls and null band drawn are exactly the analysis JSON's (version 2).

Run: MPLBACKEND=Agg /usr/bin/python3 tests/python/test_plots.py   (cwd = repo root)
"""
import contextlib
import io
import json
import math
import os
import struct
import subprocess
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path[:0] = [os.path.join(REPO, "scripts"), os.path.join(REPO, "scripts", "plots"), HERE]

import fixtures as fx  # noqa: E402
import plot as plot_cli  # noqa: E402
import plots  # noqa: E402
from plots.load import InputError, parse_analysis  # noqa: E402

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


# F2 and F9 hold three and four panels of lines with intervals: up to about 160 kB at 100 dpi.
def assert_valid_png(tc: unittest.TestCase, path: str, min_kb: float = 10, max_kb: float = 200):
    with open(path, "rb") as f:
        data = f.read()
    tc.assertEqual(data[:8], PNG_SIGNATURE, f"{path}: not a PNG")
    tc.assertEqual(data[12:16], b"IHDR", f"{path}: first chunk is not IHDR")
    width, height = struct.unpack(">II", data[16:24])
    tc.assertGreater(width, 200)
    tc.assertGreater(height, 200)
    tc.assertEqual(data[-8:-4], b"IEND", f"{path}: truncated PNG")
    tc.assertGreater(len(data), min_kb * 1024, f"{path}: suspiciously small ({len(data)} bytes)")
    tc.assertLess(len(data), max_kb * 1024, f"{path}: too large ({len(data)} bytes)")


def assert_labelled(tc: unittest.TestCase, fig):
    """Every panel (colorbars aside) has both axis labels and the figure has a title."""
    tc.assertTrue(fig._suptitle is not None and fig._suptitle.get_text())
    panels = [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]
    tc.assertGreater(len(panels), 0)
    for ax in panels:
        tc.assertTrue(ax.get_xlabel(), f"panel '{ax.get_title()}' has no x label")
        tc.assertTrue(ax.get_ylabel(), f"panel '{ax.get_title()}' has no y label")


def texts(fig):
    return [t.get_text() for ax in fig.axes for t in ax.texts]


def has_legend(fig) -> bool:
    return any(ax.get_legend() is not None for ax in fig.axes)


def by_gid(ax, gid: str):
    """The one artist of a panel drawn under this gid (ci bars: "ci:<what>")."""
    found = [c for c in ax.collections if c.get_gid() == gid]
    if len(found) != 1:
        raise AssertionError(f"{len(found)} artists with gid {gid!r} in panel '{ax.get_title()}'")
    return found[0]


def bars_of(ax, gid: str):
    """[(x, lo, hi)] of the vertical interval bars drawn under gid."""
    return [(seg[0][0], seg[0][1], seg[1][1]) for seg in by_gid(ax, gid).get_segments()]


def null_boxes(ax):
    """[(x centre, lo, hi)] of the null-band boxes of a panel."""
    return [(r.get_x() + r.get_width() / 2, r.get_y(), r.get_y() + r.get_height())
            for r in ax.patches if r.get_gid() == "null_band"]


def line(ax, label: str):
    found = [l for l in ax.get_lines() if l.get_label() == label]
    if len(found) != 1:
        raise AssertionError(f"{len(found)} lines labelled {label!r}: {[l.get_label() for l in ax.get_lines()]}")
    return found[0]


class Fixture:
    def __init__(self):
        self.tmp = tempfile.TemporaryDirectory(prefix="metalm_plots_")
        self.out = fx.write_layout(self.tmp.name, ckpt_steps=(50, 100), tuned=True)
        root = os.path.join(self.out, "tiny", "seed1337")
        a = os.path.join(root, "analysis")
        self.paths = {
            "block": os.path.join(a, "step100_block.json"), "block50": os.path.join(a, "step50_block.json"),
            "sublayer": os.path.join(a, "step100_sublayer.json"), "untrained": os.path.join(a, "untrained_block.json"),
            "tuned": os.path.join(a, "tuned_step100_block.json"),
            "jsonl": os.path.join(root, "run", "analysis.jsonl"),
            "metrics": os.path.join(root, "run", "metrics.jsonl"),
            "icl": os.path.join(self.out, "synthetic_icl.json")}
        # The strongest matched control differs between the steps of this file (bigram, shuffled, belief).
        raw = fx.make_analysis(3, "block", trained=1.0, seed=5, step=100, from_cli=True)
        fx.set_gap(raw["steps"][1], "shuffled", 0.03, 0.01, 0.06)
        fx.set_gap(raw["steps"][2], "belief", -0.02, -0.05, 0.004)
        fx.write_json(self.paths["block"], raw)
        self.block = plots.load_analysis(self.paths["block"])
        self.block50 = plots.load_analysis(self.paths["block50"])
        self.sublayer = plots.load_analysis(self.paths["sublayer"])
        self.untrained = plots.load_analysis(self.paths["untrained"])
        self.tuned = plots.load_analysis(self.paths["tuned"])


class FigureFunctions(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.fx = Fixture()

    @classmethod
    def tearDownClass(cls):
        cls.fx.tmp.cleanup()

    def check(self, fig, legend=True):
        assert_labelled(self, fig)
        if legend:
            self.assertTrue(has_legend(fig), "figure has no legend")

    def test_f1_inner_loss_has_one_line_per_checkpoint_and_dashed_untrained(self):
        f = self.fx
        fig = plots.fig_inner_loss([("step 50", f.block50), ("step 100", f.block)], f.untrained)
        self.check(fig)
        lines = fig.axes[0].get_lines()
        self.assertEqual(len(lines), 3)
        self.assertEqual(lines[0].get_linestyle(), "--")
        self.assertEqual(list(lines[2].get_ydata()), [s.loss.mean for s in f.block.states])

    def test_f1_draws_the_tuned_lens_in_one_coordinate_system(self):
        f = self.fx
        fig = plots.fig_inner_loss([("step 100", f.block)], None, f.tuned)
        self.check(fig)
        tuned = line(fig.axes[0], "final, tuned lens (one coordinate system)")
        self.assertEqual(list(tuned.get_ydata()), [s.loss.mean for s in f.tuned.states])

    def test_f2_null_band_is_the_permutation_null_not_the_per_token_chance(self):
        f = self.fx
        fig = plots.fig_alignment(f.block, f.sublayer, f.untrained)
        self.check(fig)
        a1, _, a3 = fig.axes
        for ax, steps in ((a1, f.block.steps), (a3, f.sublayer.steps)):
            boxes = null_boxes(ax)
            self.assertEqual(len(boxes), len(steps))
            for (x, lo, hi), s in zip(boxes, steps):
                self.assertAlmostEqual(x, s.depth)
                self.assertAlmostEqual(lo, s.null_band[0], places=12)
                self.assertAlmostEqual(hi, s.null_band[1], places=12)
        labels = [l for ax in fig.axes for l in ax.get_legend_handles_labels()[1]]
        self.assertIn("permutation null: 2.5–97.5 % of the mean", labels)
        self.assertFalse(any("chance" in l for l in labels), labels)
        chance = f.block.chance_alignment_per_token
        self.assertFalse(any(abs(b - chance) < 1e-12 for ax in fig.axes for (_, lo, hi) in null_boxes(ax)
                             for b in (lo, hi)))

    def test_f2_interval_bars_are_the_bootstrap_intervals(self):
        f = self.fx
        fig = plots.fig_alignment(f.block, f.sublayer, f.untrained)
        a1, a2, a3 = fig.axes
        steps = f.block.steps
        # The fixture's intervals are asymmetric about the mean, so bars of ± a spread would not match.
        self.assertNotAlmostEqual(steps[0].alignment.mean - steps[0].alignment.ci[0],
                                  steps[0].alignment.ci[1] - steps[0].alignment.mean)
        self.assertEqual([(lo, hi) for _, lo, hi in bars_of(a1, "ci:alignment")], [s.alignment.ci for s in steps])
        self.assertEqual(list(line(a1, "true target").get_ydata()), [s.alignment.mean for s in steps])
        for c in ("shuffled", "bigram", "belief", "uniform"):
            with self.subTest(control=c):
                self.assertEqual([(lo, hi) for _, lo, hi in bars_of(a1, f"ci:alignment_{c}")],
                                 [s.controls[c].ci for s in steps])
                self.assertEqual([(lo, hi) for _, lo, hi in bars_of(a2, f"ci:gap_{c}")], [s.gaps[c].ci for s in steps])
        self.assertEqual([(lo, hi) for _, lo, hi in bars_of(a1, "ci:untrained")],
                         [s.alignment.ci for s in f.untrained.steps])
        self.assertEqual([(lo, hi) for _, lo, hi in bars_of(a3, "ci:mlp")],
                         [s.alignment.ci for s in f.sublayer.steps_of("mlp")])

    def test_f2_gap_panel_follows_the_strongest_matched_control_of_each_step(self):
        f = self.fx
        self.assertEqual([s.strongest_control for s in f.block.steps], ["bigram", "shuffled", "belief"])
        a2 = plots.fig_alignment(f.block).axes[1]
        self.assertEqual(list(line(a2, "over the strongest matched control").get_ydata()), [0.085, 0.03, -0.02])
        self.assertIn("CI above 0", a2.get_title())

    def test_f2_tuned_lens_shows_its_alignment_and_its_gap_with_intervals(self):
        f = self.fx
        fig = plots.fig_alignment(f.block, f.sublayer, f.untrained, f.tuned)
        self.check(fig)
        a1, a2, _ = fig.axes
        self.assertEqual(list(line(a1, "tuned lens (one coordinate system): true target").get_ydata()),
                         [s.alignment.mean for s in f.tuned.steps])
        self.assertEqual([(lo, hi) for _, lo, hi in bars_of(a1, "ci:tuned")], [s.alignment.ci for s in f.tuned.steps])
        self.assertEqual([(lo, hi) for _, lo, hi in bars_of(a2, "ci:gap_tuned")],
                         [s.gaps[s.strongest_control].ci for s in f.tuned.steps])

    def test_f2_without_sublayer_skips_the_panel_with_a_note(self):
        fig = plots.fig_alignment(self.fx.block)
        self.check(fig)
        self.assertTrue(any("panel skipped" in t for t in texts(fig)))

    def test_f3_uses_the_scale_free_step_sizes_with_their_intervals(self):
        f = self.fx
        fig = plots.fig_step_size(f.block, f.sublayer)
        self.check(fig)
        for ax, key in zip(fig.axes, ("step_size_scaled", "relative_update", "angular_step")):
            with self.subTest(statistic=key):
                self.assertEqual(list(line(ax, "block").get_ydata()), [getattr(s, key).mean for s in f.block.steps])
                self.assertEqual([(lo, hi) for _, lo, hi in bars_of(ax, f"ci:{key}")],
                                 [getattr(s, key).ci for s in f.block.steps])
                self.assertEqual([(lo, hi) for _, lo, hi in bars_of(ax, f"ci:{key}_attn")],
                                 [getattr(s, key).ci for s in f.sublayer.steps_of("attn")])
        self.assertIn("η / ‖s_k‖²", fig.axes[0].get_ylabel())
        self.assertEqual([(lo, hi) for _, lo, hi in bars_of(fig.axes[3], "ci:actual_decrease")],
                         [s.actual_decrease.ci for s in f.block.steps])

    def test_f4_norms_marks_position_zero(self):
        fig = plots.fig_norms(self.fx.block, self.fx.sublayer)
        self.check(fig)
        self.assertTrue(any(a.get_text() == "◀ position 0" for ax in fig.axes for a in ax.texts))

    def test_f5_norm_vs_frequency_includes_token_tables(self):
        fig = plots.fig_norm_freq(self.fx.block)
        self.check(fig)
        ticks = [t.get_text() for t in fig.axes[1].get_xticklabels()]
        self.assertIn("embed\ntable", ticks)
        self.assertIn("unembed\ntable", ticks)

    def test_f5_without_frequency_data_skips_with_note(self):
        a = parse_analysis(fx.make_analysis(with_meta=False), "bare.json")
        fig = plots.fig_norm_freq(a)
        assert_labelled(self, fig)
        self.assertTrue(any("panel skipped" in t for t in texts(fig)))

    def test_f6_evolution_has_one_line_per_layer_and_its_strongest_control(self):
        recs = plots.load_analysis_jsonl(self.fx.paths["jsonl"])
        fig = plots.fig_evolution(recs)
        self.check(fig)
        # 3 block steps x (true target + strongest matched control), and the zero line
        lines = [l for l in fig.axes[0].get_lines() if len(l.get_xdata()) == 3]
        self.assertEqual(len(lines), 6)
        self.assertEqual(list(lines[0].get_xdata()), [0, 50, 100])
        self.assertEqual(list(lines[1].get_ydata()), [r.steps[0].strongest()[1].mean for r in recs])
        self.assertEqual(list(fig.axes[1].get_lines()[0].get_ydata()),
                         [r.steps[0].step_size_scaled.mean for r in recs])

    def test_f7_position_heatmaps(self):
        self.check(plots.fig_position_heatmaps(self.fx.sublayer), legend=False)

    def test_f9_signed_growth_against_its_null_and_no_share_explained(self):
        f = self.fx
        fig = plots.fig_norm_identity(f.block, f.untrained)
        self.check(fig)
        a1, a2, a3, a4 = fig.axes
        parts = [l for l in a1.lines if len(l.get_xdata()) == len(f.block.steps)]
        self.assertEqual(len(parts), 3)  # measured, radial, update
        for m, r, u in zip(*(p.get_ydata() for p in parts)):
            self.assertAlmostEqual(m, r + u, places=9)  # the fixture obeys the identity
        for who, a in (("trained", f.block), ("untrained", f.untrained)):
            for key in ("norm_sq_growth_gradient_signed", "norm_sq_growth_gradient_signed_permuted"):
                with self.subTest(who=who, key=key):
                    self.assertEqual([(lo, hi) for _, lo, hi in bars_of(a3, f"ci:{who}_{key}")],
                                     [getattr(s, key).ci for s in a.steps])
        titles = " ".join(ax.get_title() for ax in fig.axes)
        self.assertNotIn("explain", titles)
        self.assertNotIn("%", titles)
        self.assertIn("sanity check", a4.get_title())
        self.assertEqual(a4.get_yscale(), "log")

    def test_f9_without_untrained_skips_the_panel(self):
        fig = plots.fig_norm_identity(self.fx.block)
        self.assertIn("panel skipped", " ".join(t.get_text() for t in fig.axes[1].texts))

    def test_f8_synthetic_icl_uses_log_x_and_true_eta(self):
        fig = plots.fig_synthetic_icl(plots.load_synthetic_icl(self.fx.paths["icl"]))
        self.check(fig)
        self.assertEqual(fig.axes[0].get_xscale(), "log")
        self.assertTrue(any("true η = 0.1" in l for l in fig.axes[1].get_legend_handles_labels()[1]))

    def test_training_curve(self):
        self.check(plots.fig_training(plots.load_metrics(self.fx.paths["metrics"])))


class Validation(unittest.TestCase):
    def test_missing_required_key_names_file_and_key_path(self):
        raw = fx.make_analysis()
        del raw["steps"][1]["alignment"]["q90"]
        with self.assertRaises(InputError) as cm:
            parse_analysis(raw, "x/step5_block.json")
        self.assertEqual(str(cm.exception), "x/step5_block.json: steps[1].alignment.q90: missing key")

    def test_wrong_type_is_rejected(self):
        raw = fx.make_analysis()
        raw["states"][0]["loss"] = "low"
        with self.assertRaisesRegex(InputError, r"states\[0\]\.loss: expected a number, got str"):
            parse_analysis(raw, "f.json")

    def test_null_numbers_read_as_nan_and_extra_keys_are_ignored(self):
        raw = fx.make_analysis()
        raw["steps"][0]["alignment"]["std"] = None
        raw["steps"][0]["new_statistic"] = [1, 2]
        a = parse_analysis(raw, "f.json")
        self.assertTrue(math.isnan(a.steps[0].alignment.std))

    def test_version_2_fields_are_read_where_metalm_puts_them(self):
        raw = fx.make_analysis()
        fx.set_gap(raw["steps"][1], "belief", 0.001, -0.01, 0.02)
        a = parse_analysis(raw, "f.json")
        st, rs = a.steps[1], raw["steps"][1]
        self.assertEqual(st.alignment.ci, tuple(rs["alignment"]["ci"]))
        for c in ("uniform", "shuffled", "bigram", "belief", "permuted"):
            self.assertEqual(st.controls[c].mean, rs[f"alignment_{c}"]["mean"], c)
            self.assertEqual(st.gaps[c].ci, tuple(rs["gaps"][c]["ci"]), c)
        self.assertEqual(st.strongest_control, "belief")
        self.assertEqual(st.strongest(), ("belief", st.controls["belief"], st.gaps["belief"]))
        self.assertEqual(st.null_band, tuple(rs["null_band"]))
        for key in ("step_size_scaled", "angular_step", "relative_update", "alignment_unexplained", "cos_grad_belief"):
            self.assertEqual(getattr(st, key).ci, tuple(rs[key]["ci"]), key)
        for key in ("norm_sq_growth", "norm_sq_growth_gradient_signed", "norm_sq_growth_gradient_signed_permuted",
                    "actual_decrease", "loss_before", "bigram_fallback"):
            self.assertEqual((getattr(st, key).mean, getattr(st, key).ci), (rs[key], tuple(rs[f"{key}_ci"])), key)
        self.assertEqual((a.states[2].loss.mean, a.states[2].loss.ci),
                         (raw["states"][2]["loss"], tuple(raw["states"][2]["loss_ci"])))
        self.assertEqual(a.chance_alignment_per_token, raw["chance_alignment_per_token"])
        self.assertEqual((a.bootstrap_resamples, a.permutations), (1000, 100))
        self.assertTrue(math.isnan(a.states[-1].cos_state_grad.mean))  # null for the last state

    def test_missing_or_malformed_interval_names_its_path(self):
        cases = {"summary ci": (lambda r: r["steps"][1]["alignment"].pop("ci"), r"steps\[1\]\.alignment\.ci: missing key"),
                 "mean ci": (lambda r: r["steps"][0].pop("actual_decrease_ci"), r"steps\[0\]\.actual_decrease_ci: missing key"),
                 "gap": (lambda r: r["steps"][2]["gaps"].pop("bigram"), r"steps\[2\]\.gaps\.bigram: missing key"),
                 "null band": (lambda r: r["steps"][0].update(null_band=[0.1]),
                               r"steps\[0\]\.null_band: expected an interval \[lo, hi\], got list"),
                 "strongest": (lambda r: r["steps"][0].update(strongest_control="uniform"),
                               r"steps\[0\]\.strongest_control: expected one of shuffled, bigram, belief or null"),
                 "state loss ci": (lambda r: r["states"][1].pop("loss_ci"), r"states\[1\]\.loss_ci: missing key"),
                 "renamed chance": (lambda r: r.update(chance_alignment=r.pop("chance_alignment_per_token")),
                                    r"chance_alignment_per_token: missing key")}
        for name, (damage, pattern) in cases.items():
            with self.subTest(case=name):
                raw = fx.make_analysis()
                damage(raw)
                with self.assertRaisesRegex(InputError, pattern):
                    parse_analysis(raw, "f.json")

    def test_null_controls_read_as_nan_and_no_strongest_control(self):
        raw = fx.make_analysis()
        st = raw["steps"][0]
        st["alignment_belief"] = None
        st["gaps"]["belief"] = {"mean": None, "ci": None}  # how metalm writes a control it did not compute
        st["strongest_control"] = None
        st["null_band"] = None
        a = parse_analysis(raw, "f.json").steps[0]
        self.assertTrue(math.isnan(a.controls["belief"].mean) and math.isnan(a.controls["belief"].ci[0]))
        self.assertTrue(math.isnan(a.gaps["belief"].mean) and math.isnan(a.gaps["belief"].ci[1]))
        name, _, gap = a.strongest()
        self.assertIsNone(name)
        self.assertTrue(math.isnan(gap.mean) and math.isnan(gap.ci[0]))
        self.assertTrue(all(math.isnan(v) for v in a.null_band))
        st["gaps"]["belief"]["ci"] = [None, None]
        self.assertTrue(math.isnan(parse_analysis(raw, "f.json").steps[0].gaps["belief"].ci[0]))

    def test_frequency_data_is_read_by_the_current_token(self):
        raw = fx.make_analysis()
        a = parse_analysis(raw, "f.json")
        self.assertEqual([s.norm_freq_spearman for s in a.states],
                         [s["norm_freq_spearman"]["current"] for s in raw["states"]])
        bins = raw["states"][2]["norm_by_frequency"]["current"]
        self.assertEqual([(b.lo, b.hi, b.count, b.norm_mean, b.loss_mean) for b in a.states[2].freq_bins],
                         [(b["count_lo"], b["count_hi"], b["positions"], b["norm"], b["loss"]) for b in bins])
        t = raw["tables"]["unembedding"]
        self.assertEqual(a.tables["unembedding"].spearman_vs_freq, t["norm_freq_spearman"])
        self.assertEqual([b.norm_mean for b in a.tables["unembedding"].freq_bins], [b["norm"] for b in t["by_frequency"]])

    def test_without_frequency_data_correlations_are_nan(self):
        a = parse_analysis(fx.make_analysis(with_meta=False), "f.json")
        self.assertTrue(all(math.isnan(s.norm_freq_spearman) and s.freq_bins is None for s in a.states))
        self.assertEqual(sorted(a.tables), ["embedding", "unembedding"])
        self.assertTrue(all(math.isnan(t.spearman_vs_freq) and t.freq_bins is None for t in a.tables.values()))

    def test_frequency_data_is_required_when_the_analysis_had_a_meta_json(self):
        raw = fx.make_analysis()
        del raw["states"][1]["norm_freq_spearman"]
        with self.assertRaisesRegex(InputError, r"states\[1\]\.norm_freq_spearman: missing key"):
            parse_analysis(raw, "f.json")

    def test_other_formats_and_versions_are_refused_in_one_line(self):
        cases = {"no format": ("format", None), "another format": ("format", "metalm-checkpoint"),
                 "version 1": ("version", 1), "version 3": ("version", 3), "version as text": ("version", "2"),
                 "version true": ("version", True)}
        for name, (key, value) in cases.items():
            with self.subTest(case=name):
                raw = fx.make_analysis()
                if value is None:
                    del raw[key]
                else:
                    raw[key] = value
                with self.assertRaises(InputError) as cm:
                    parse_analysis(raw, "old.json")
                msg = str(cm.exception)
                self.assertTrue(msg.startswith('old.json: not a "metalm-analysis" version 2 analysis ('), msg)
                self.assertIn("metalm analyze", msg)
                self.assertNotIn("\n", msg)
        with self.assertRaisesRegex(InputError, r'^a\.jsonl: line 3: not a "metalm-analysis" version 2 analysis '
                                                r'\("format": "metalm-analysis", "version": 1\)'):
            raw = fx.make_analysis(step=5)
            raw["version"] = 1
            parse_analysis(raw, "a.jsonl", "line 3")

    def test_null_statistics_object_reads_as_nan(self):
        raw = fx.make_analysis()
        raw["steps"][0]["alignment_uniform"] = None
        a = parse_analysis(raw, "f.json")
        self.assertTrue(math.isnan(a.steps[0].alignment_uniform.mean))
        self.assertTrue(all(math.isnan(v) for v in a.steps[0].alignment_uniform.ci))

    def test_malformed_frequency_bin_names_its_path(self):
        raw = fx.make_analysis()
        del raw["states"][1]["norm_by_frequency"]["current"][3]["norm"]
        with self.assertRaisesRegex(InputError, r"states\[1\]\.norm_by_frequency\.current\[3\]\.norm: missing key$"):
            parse_analysis(raw, "f.json")

    def test_sites_map_to_a_common_depth_axis(self):
        b = parse_analysis(fx.make_analysis(n_layers=3, granularity="block"), "b")
        s = parse_analysis(fx.make_analysis(n_layers=3, granularity="sublayer"), "s")
        self.assertEqual([x.depth for x in b.states], [0, 1, 2, 3])
        self.assertEqual([x.depth for x in s.states], [0, 0.5, 1, 1.5, 2, 2.5, 3])
        self.assertEqual([x.kind for x in s.steps], ["attn", "mlp"] * 3)
        self.assertEqual([x.label for x in s.steps][:2], ["L0.attn", "L0.mlp"])
        self.assertEqual([x.depth for x in b.steps], [0.5, 1.5, 2.5])

    def test_unknown_site_name_is_rejected(self):
        for site in ("blocks.one.resid_pre", "blocks.1.hook_resid_pre", "ln_final.hook_normalized", "embed"):
            with self.subTest(site=site):
                raw = fx.make_analysis()
                raw["states"][1]["site"] = site
                with self.assertRaisesRegex(InputError, r"states\[1\]\.site: unrecognised site name"):
                    parse_analysis(raw, "f.json")

    def test_position0_ratio(self):
        self.assertAlmostEqual(plots.position0_ratio([6.0, 1.0, 2.0, 3.0]), 3.0)
        self.assertTrue(math.isnan(plots.position0_ratio([5.0])))

    def test_jsonl_line_errors_name_the_line(self):
        with tempfile.TemporaryDirectory() as d:
            p = os.path.join(d, "metrics.jsonl")
            with open(p, "w") as f:
                f.write('{"event":"train","step":1,"loss":2}\n{"event": "eval", "step": 2\n')
            with self.assertRaisesRegex(InputError, r"metrics\.jsonl: invalid JSON on line 2"):
                plots.load_metrics(p)
            with open(p, "w") as f:
                f.write('{"event":"train","step":1}\n')
            with self.assertRaisesRegex(InputError, r"line 1: loss: missing key"):
                plots.load_metrics(p)


class PlotCli(unittest.TestCase):
    """Every subcommand renders a valid PNG; bad input exits 1 with one line."""

    @classmethod
    def setUpClass(cls):
        cls.fx = Fixture()

    @classmethod
    def tearDownClass(cls):
        cls.fx.tmp.cleanup()

    def run_main(self, *args) -> int:
        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            rc = plot_cli.main(list(args))
        self.stderr = err.getvalue()
        return rc

    def test_every_subcommand_builds_its_labelled_figure(self):
        # Rendering every figure is covered by test_report; here the arguments are the point.
        p = self.fx.paths
        cases = {
            "f1": ["f1", f"early={p['block50']}", p["block"], "--untrained", p["untrained"]],
            "f2": ["f2", "--block", p["block"], "--sublayer", p["sublayer"], "--untrained", p["untrained"],
                   "--tuned", p["tuned"]],
            "f3": ["f3", "--block", p["block"], "--sublayer", p["sublayer"]],
            "f4": ["f4", "--block", p["block"], "--sublayer", p["sublayer"]],
            "f5": ["f5", p["block"]], "f6": ["f6", p["jsonl"]], "f7": ["f7", p["sublayer"]],
            "f8": ["f8", p["icl"]], "f9": ["f9", p["block"], "--untrained", p["untrained"]],
            "train": ["train", p["metrics"]]}
        self.assertEqual(set(cases), set(plots.FIGURES))
        for name, args in cases.items():
            with self.subTest(figure=name):
                fig = plot_cli.build(plot_cli.parser().parse_args(args + ["--out", "unused.png"]))
                assert_labelled(self, fig)

    def test_cli_writes_a_valid_png(self):
        p = self.fx.paths
        for name, args in {"f1": ["f1", f"early={p['block50']}", p["block"], "--untrained", p["untrained"]],
                           "f2": ["f2", "--block", p["block"], "--sublayer", p["sublayer"], "--untrained",
                                  p["untrained"], "--tuned", p["tuned"]],
                           "f7": ["f7", p["sublayer"]]}.items():
            with self.subTest(figure=name):
                out = os.path.join(self.fx.out, "png", f"{name}.png")
                self.assertEqual(self.run_main(*args, "--out", out), 0, self.stderr)
                assert_valid_png(self, out)

    def test_checkpoint_labels_come_from_file_names_and_sort_by_step(self):
        p = self.fx.paths
        got = plot_cli.load_checkpoints([p["block"], p["block50"], f"init={p['untrained']}"])
        # The untrained file has no step<k> in its name; it sorts by its "step" key (0).
        self.assertEqual([label for label, _ in got], ["init", "step 50", "step 100"])

    def test_missing_input_exits_1_with_one_line_naming_the_file(self):
        missing = os.path.join(self.fx.out, "nope.json")
        out = os.path.join(self.fx.out, "png", "none.png")
        r = subprocess.run([sys.executable, os.path.join(REPO, "scripts", "plots", "plot.py"), "f5", missing, "--out", out],
                           capture_output=True, text=True, cwd=REPO, env={**os.environ, "MPLBACKEND": "Agg"})
        self.assertEqual(r.returncode, 1)
        self.assertEqual(r.stderr.strip().count("\n"), 0, r.stderr)
        self.assertIn(f"{missing}: file not found", r.stderr)
        self.assertFalse(os.path.exists(out))



class RealOutput(unittest.TestCase):
    """The fixtures against real metalm output, and every figure drawn from real output."""

    @classmethod
    def setUpClass(cls):
        cls.tmp, cls.out = fx.real_layout_or_skip("metalm_real_")
        cls.root = os.path.join(cls.out, "tiny", "seed1337")
        cls.adir = os.path.join(cls.root, "analysis")
        cls.jsonl = os.path.join(cls.root, "run", "analysis.jsonl")

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def read(self, name):
        with open(os.path.join(self.adir, name)) as f:
            return json.load(f)

    def assert_same_keys(self, real, fixture):
        a, b = fx.key_structure(real), fx.key_structure(fixture)
        self.assertEqual(sorted(set(a) - set(b)), [], "keys metalm writes that the fixture lacks")
        self.assertEqual(sorted(set(b) - set(a)), [], "keys of the fixture that metalm does not write")
        for path in a:
            if a[path] and b[path]:
                self.assertEqual(a[path], b[path], path)

    def test_fixture_has_exactly_the_keys_metalm_writes(self):
        for g in ("block", "sublayer"):
            with self.subTest(granularity=g):
                self.assert_same_keys(self.read(f"step4_{g}.json"),
                                      fx.make_analysis(n_layers=2, granularity=g, step=4, from_cli=True))
        self.assert_same_keys(self.read("tuned_step4_block.json"),
                              fx.make_analysis(n_layers=2, step=4, from_cli=True, lens="tuned:x"))
        with open(self.jsonl) as f:
            lines = [json.loads(line) for line in f]
        self.assertEqual([line["step"] for line in lines], [0, 2, 4])
        self.assert_same_keys(lines[0], fx.make_analysis(n_layers=2, step=2))

    def test_metalm_writes_format_version_and_lens(self):
        for name, lens in (("untrained_block.json", "logit"), ("step2_block.json", "logit"),
                           ("step4_sublayer.json", "logit"), ("tuned_step4_block.json", "tuned:")):
            j = self.read(name)
            self.assertEqual((j["format"], j["version"]), ("metalm-analysis", 2), name)
            self.assertTrue(j["lens"].startswith(lens), name)

    def test_every_figure_draws_from_real_output(self):
        p = {g: os.path.join(self.adir, f"step4_{g}.json") for g in ("block", "sublayer")}
        untrained = os.path.join(self.adir, "untrained_block.json")
        tuned = os.path.join(self.adir, "tuned_step4_block.json")
        cases = {
            "f1": ["f1", os.path.join(self.adir, "step2_block.json"), p["block"], "--untrained", untrained,
                   "--tuned", tuned],
            "f2": ["f2", "--block", p["block"], "--sublayer", p["sublayer"], "--untrained", untrained, "--tuned", tuned],
            "f3": ["f3", "--block", p["block"], "--sublayer", p["sublayer"]],
            "f4": ["f4", "--block", p["block"], "--sublayer", p["sublayer"]],
            "f5": ["f5", p["block"]], "f6": ["f6", self.jsonl], "f7": ["f7", p["sublayer"]],
            "f8": ["f8", os.path.join(self.out, "synthetic_icl.json")],
            "f9": ["f9", p["sublayer"], "--untrained", untrained],
            "train": ["train", os.path.join(self.root, "run", "metrics.jsonl")]}
        self.assertEqual(set(cases), set(plots.FIGURES))
        for name, args in cases.items():
            with self.subTest(figure=name):
                assert_labelled(self, plot_cli.build(plot_cli.parser().parse_args(args + ["--out", "unused.png"])))

    def test_real_values_are_read_where_metalm_put_them(self):
        raw = self.read("step4_sublayer.json")
        a = plots.load_analysis(os.path.join(self.adir, "step4_sublayer.json"))
        self.assertEqual(a.n_layers, raw["n_layer"])
        self.assertEqual([s.kind for s in a.steps], [s["kind"] for s in raw["steps"]])
        self.assertEqual([s.layer for s in a.steps], [s["layer"] for s in raw["steps"]])
        self.assertEqual(a.states[-1].site, "final")
        self.assertEqual(a.states[-1].depth, raw["n_layer"])
        self.assertEqual(a.states[1].norm_freq_spearman, raw["states"][1]["norm_freq_spearman"]["current"])
        self.assertEqual(len(a.states[1].freq_bins), raw["frequency_bins"]["bins"])
        self.assertEqual(len(a.steps[0].pos_alignment), raw["seq_len"])
        st, rs = a.steps[1], raw["steps"][1]
        self.assertEqual(st.norm_sq_growth.mean, rs["norm_sq_growth"])
        self.assertEqual(list(st.null_band), rs["null_band"])
        self.assertEqual(st.strongest_control, rs["strongest_control"])
        self.assertEqual(list(st.gaps["shuffled"].ci), rs["gaps"]["shuffled"]["ci"])
        self.assertEqual(list(st.alignment.ci), rs["alignment"]["ci"])
        self.assertEqual(a.states[0].cos_ones_grad.mean, raw["states"][0]["cos_ones_grad"]["mean"])


if __name__ == "__main__":
    unittest.main()
