"""Figures F1-F8 and the training curve: labelled axes, valid small PNGs, strict input checks.

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
sys.path[:0] = [os.path.join(REPO, "scripts"), HERE]

import fixtures as fx  # noqa: E402
import plot as plot_cli  # noqa: E402
import plots  # noqa: E402
from plots.load import InputError, parse_analysis  # noqa: E402

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def assert_valid_png(tc: unittest.TestCase, path: str, min_kb: float = 10, max_kb: float = 150):
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


class Fixture:
    def __init__(self):
        self.tmp = tempfile.TemporaryDirectory(prefix="metalm_plots_")
        self.out = fx.write_layout(self.tmp.name, ckpt_steps=(50, 100))
        a = os.path.join(self.out, "tiny", "analysis")
        self.paths = {
            "block": os.path.join(a, "step100_block.json"), "block50": os.path.join(a, "step50_block.json"),
            "sublayer": os.path.join(a, "step100_sublayer.json"), "untrained": os.path.join(a, "untrained_block.json"),
            "jsonl": os.path.join(self.out, "tiny", "run", "analysis.jsonl"),
            "metrics": os.path.join(self.out, "tiny", "run", "metrics.jsonl"),
            "icl": os.path.join(self.out, "synthetic_icl.json")}
        self.block = plots.load_analysis(self.paths["block"])
        self.block50 = plots.load_analysis(self.paths["block50"])
        self.sublayer = plots.load_analysis(self.paths["sublayer"])
        self.untrained = plots.load_analysis(self.paths["untrained"])


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
        self.assertEqual(list(lines[2].get_ydata()), [s.loss for s in f.block.states])

    def test_f2_alignment_shows_controls_and_chance_band(self):
        f = self.fx
        fig = plots.fig_alignment(f.block, f.sublayer, f.untrained)
        self.check(fig)
        labels = fig.axes[0].get_legend_handles_labels()[1]
        self.assertTrue(any("random-target" in l for l in labels))
        self.assertTrue(any("chance" in l for l in labels))
        self.assertTrue(any("untrained" in l for l in labels))
        sub_labels = fig.axes[1].get_legend_handles_labels()[1]
        self.assertTrue(any("attention" in l for l in sub_labels) and any("MLP" in l for l in sub_labels))

    def test_f1_and_f2_draw_the_tuned_lens_beside_the_logit_lens(self):
        f = self.fx
        tuned = f.block50  # any analysis of the same model shape stands in for a tuned-lens one
        fig = plots.fig_inner_loss([("step 100", f.block)], None, tuned)
        self.check(fig)
        lines = fig.axes[0].get_lines()
        self.assertEqual(len(lines), 2)
        self.assertEqual(list(lines[1].get_ydata()), [s.loss for s in tuned.states])
        self.assertIn("tuned lens", lines[1].get_label())
        fig = plots.fig_alignment(f.block, f.sublayer, f.untrained, tuned)
        self.check(fig)
        by_label = {l.get_label(): l for l in fig.axes[0].get_lines()}
        self.assertEqual(list(by_label["tuned lens: true target"].get_ydata()),
                         [s.alignment.mean for s in tuned.steps_of("block") or tuned.steps])
        self.assertIn("tuned lens: random-target control", by_label)

    def test_f2_without_sublayer_skips_the_panel_with_a_note(self):
        fig = plots.fig_alignment(self.fx.block)
        self.check(fig)
        self.assertTrue(any("panel skipped" in t for t in texts(fig)))

    def test_f3_step_size(self):
        self.check(plots.fig_step_size(self.fx.block, self.fx.sublayer))

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

    def test_f6_evolution_has_one_line_per_layer(self):
        recs = plots.load_analysis_jsonl(self.fx.paths["jsonl"])
        fig = plots.fig_evolution(recs)
        self.check(fig)
        # 3 block steps x (true target + random target)
        self.assertEqual(len(fig.axes[0].get_lines()), 6)
        self.assertEqual(list(fig.axes[0].get_lines()[0].get_xdata()), [0, 50, 100])

    def test_f7_position_heatmaps(self):
        self.check(plots.fig_position_heatmaps(self.fx.sublayer), legend=False)

    def test_f9_norm_identity_shows_the_parts_and_the_share(self):
        fig = plots.fig_norm_identity(self.fx.block, self.fx.untrained)
        self.check(fig)
        a1 = fig.axes[0]
        self.assertEqual(len(a1.lines), 5)  # four parts and the zero line
        measured = a1.lines[0].get_ydata()
        radial, update = a1.lines[1].get_ydata(), a1.lines[2].get_ydata()
        for m, r, u in zip(measured, radial, update):
            self.assertAlmostEqual(m, r + u, places=9)  # the fixture obeys the identity
        share = plots.growth_share(self.fx.block)
        self.assertIn(f"{share:.1%}", a1.get_title())
        self.assertEqual(share, sum(s.norm_sq_growth_gradient_step for s in self.fx.block.steps)
                         / sum(s.norm_sq_growth for s in self.fx.block.steps))
        self.assertEqual(fig.axes[2].get_yscale(), "log")

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

    def test_norm_identity_fields_are_read_and_optional(self):
        raw = fx.make_analysis()
        a = parse_analysis(raw, "f.json")
        st, rs = a.steps[1], raw["steps"][1]
        self.assertEqual(st.cos_state_grad.mean, rs["cos_state_grad"]["mean"])
        self.assertEqual(st.radial_update.q90, rs["radial_update"]["q90"])
        for key in ("norm_sq_growth", "norm_sq_growth_radial", "norm_sq_growth_update",
                    "norm_sq_growth_gradient_step"):
            self.assertEqual(getattr(st, key), rs[key], key)
        self.assertEqual(a.states[0].cos_ones_grad.median, raw["states"][0]["cos_ones_grad"]["median"])
        self.assertTrue(math.isnan(a.states[-1].cos_state_grad.mean))  # null for the last state
        # A version-1 file of an older metalm has none of them: they read as missing, not as an error.
        for s in raw["steps"]:
            for key in [k for k in s if k.startswith(("cos_", "radial_", "norm_sq_"))]:
                del s[key]
        for s in raw["states"]:
            del s["cos_state_grad"], s["cos_ones_grad"]
        old = parse_analysis(raw, "f.json")
        self.assertIsNone(old.steps[0].cos_state_grad)
        self.assertIsNone(old.states[0].cos_ones_grad)
        self.assertTrue(math.isnan(old.steps[0].norm_sq_growth))

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
                 "version 2": ("version", 2), "version as text": ("version", "1"), "version true": ("version", True)}
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
                self.assertTrue(msg.startswith('old.json: not a "metalm-analysis" version 1 analysis ('), msg)
                self.assertIn("metalm analyze", msg)
                self.assertNotIn("\n", msg)
        with self.assertRaisesRegex(InputError, r'^a\.jsonl: line 3: not a "metalm-analysis" version 1 analysis '
                                                r'\("format": "metalm-analysis", "version": 2\)'):
            raw = fx.make_analysis(step=5)
            raw["version"] = 2
            parse_analysis(raw, "a.jsonl", "line 3")

    def test_null_statistics_object_reads_as_nan(self):
        raw = fx.make_analysis()
        raw["steps"][0]["alignment_random_target"] = None
        a = parse_analysis(raw, "f.json")
        self.assertTrue(math.isnan(a.steps[0].alignment_random_target.mean))

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
            "f2": ["f2", "--block", p["block"], "--sublayer", p["sublayer"], "--untrained", p["untrained"]],
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
        r = subprocess.run([sys.executable, os.path.join(REPO, "scripts", "plot.py"), "f5", missing, "--out", out],
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
        cls.adir = os.path.join(cls.out, "tiny", "analysis")
        cls.jsonl = os.path.join(cls.out, "tiny", "run", "analysis.jsonl")

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
        with open(self.jsonl) as f:
            lines = [json.loads(line) for line in f]
        self.assertEqual([line["step"] for line in lines], [0, 2, 4])
        self.assert_same_keys(lines[0], fx.make_analysis(n_layers=2, step=2))

    def test_metalm_writes_format_and_version(self):
        for name in ("untrained_block.json", "step2_block.json", "step4_sublayer.json"):
            j = self.read(name)
            self.assertEqual((j["format"], j["version"]), ("metalm-analysis", 1), name)

    def test_every_figure_draws_from_real_output(self):
        p = {g: os.path.join(self.adir, f"step4_{g}.json") for g in ("block", "sublayer")}
        untrained = os.path.join(self.adir, "untrained_block.json")
        cases = {
            "f1": ["f1", os.path.join(self.adir, "step2_block.json"), p["block"], "--untrained", untrained],
            "f2": ["f2", "--block", p["block"], "--sublayer", p["sublayer"], "--untrained", untrained],
            "f3": ["f3", "--block", p["block"], "--sublayer", p["sublayer"]],
            "f4": ["f4", "--block", p["block"], "--sublayer", p["sublayer"]],
            "f5": ["f5", p["block"]], "f6": ["f6", self.jsonl], "f7": ["f7", p["sublayer"]],
            "f8": ["f8", os.path.join(self.out, "synthetic_icl.json")],
            "f9": ["f9", p["sublayer"], "--untrained", untrained],
            "train": ["train", os.path.join(self.out, "tiny", "run", "metrics.jsonl")]}
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
        self.assertEqual(a.steps[1].norm_sq_growth, raw["steps"][1]["norm_sq_growth"])
        self.assertEqual(a.steps[1].cos_state_grad.mean, raw["steps"][1]["cos_state_grad"]["mean"])
        self.assertEqual(a.states[0].cos_ones_grad.mean, raw["states"][0]["cos_ones_grad"]["mean"])


if __name__ == "__main__":
    unittest.main()
