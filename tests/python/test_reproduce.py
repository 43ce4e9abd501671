"""scripts/experiments/reproduce.sh: seeds, and resuming without redoing a finished setting-seed or ICL setting.

The driver runs against a stand-in for metalm (--bin) that records every call and writes the files
metalm would write, so its stage and resume logic is tested in seconds without training anything.

Run: /usr/bin/python3 tests/python/test_reproduce.py   (cwd = repo root)
"""
import json
import os
import shlex
import stat
import subprocess
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
REPRODUCE = os.path.join(REPO, "scripts", "experiments", "reproduce.sh")
BASE_SEED = 100

# A metalm that logs its arguments (one JSON list per line) and writes what the real one writes
# where the driver looks: checkpoints of every kept step, the --out file of analyze, lens-train
# and synthetic-icl. FAKE_FAIL: a call whose arguments contain it fails (an interrupted run).
FAKE = r'''#!{python}
import json, os, sys
args = sys.argv[1:]
with open(os.environ["FAKE_LOG"], "a") as f:
    f.write(json.dumps(args) + "\n")
if os.environ.get("FAKE_FAIL") and os.environ["FAKE_FAIL"] in " ".join(args):
    sys.exit(3)
def opt(name):
    return args[args.index(name) + 1]
cmd = args[0]
if cmd == "config":
    print(json.dumps({{"data": {{"dir": os.environ["FAKE_DATA"]}}, "train": {{"seed": {seed}}}}}))
elif cmd == "train":
    save = [a.split("=", 1)[1] for a in args if a.startswith("train.save_steps=")][0]
    for k in save.split(","):
        os.makedirs(os.path.join(opt("--run-dir"), "checkpoints", "step_%08d" % int(k)), exist_ok=True)
elif cmd == "icl-train":
    os.makedirs(os.path.join(opt("--run-dir"), "checkpoints", "step_00000001"), exist_ok=True)
elif cmd in ("analyze", "lens-train", "synthetic-icl", "intervene", "icl-compare"):
    with open(opt("--out"), "w") as f:
        f.write("{{}}")
'''


class Reproduce(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory(prefix="metalm_reproduce_")
        d = self.tmp.name
        self.bin = os.path.join(d, "metalm")
        with open(self.bin, "w") as f:
            f.write(FAKE.format(python=sys.executable, seed=BASE_SEED))
        os.chmod(self.bin, os.stat(self.bin).st_mode | stat.S_IXUSR)
        self.out = os.path.join(d, "out")
        self.log = os.path.join(d, "calls.jsonl")

    def tearDown(self):
        self.tmp.cleanup()

    def reproduce(self, *args, fail=""):
        """Run the driver (quick, depth2 and depth4); return its exit status and the calls it made."""
        open(self.log, "w").close()
        env = {**os.environ, "FAKE_LOG": self.log, "FAKE_DATA": os.path.join(self.tmp.name, "data"),
               "FAKE_FAIL": fail}
        r = subprocess.run(["bash", REPRODUCE, "--quick", "--bin", self.bin, "--no-report", "--out", self.out,
                            "--settings", "depth2,depth4", *args], env=env, capture_output=True, text=True)
        with open(self.log) as f:
            calls = [json.loads(line) for line in f]
        self.stderr = r.stderr
        return r.returncode, calls

    def seed_dir(self, name, seed):
        return os.path.join(self.out, name, f"seed{seed}")

    @staticmethod
    def work(calls):
        """The calls that train or analyse (not `config show`, data preparation or synthetic-icl)."""
        return [c for c in calls if c[0] in ("train", "analyze", "lens-train", "intervene")]

    def test_quick_trains_two_seeds_from_the_configs_seed(self):
        rc, calls = self.reproduce()
        self.assertEqual(rc, 0, self.stderr)
        trains = [c for c in calls if c[0] == "train"]
        self.assertEqual(len(trains), 4)  # 2 settings x 2 seeds
        seeds = sorted(a.split("=")[1] for c in trains for a in c if a.startswith("train.seed="))
        self.assertEqual(seeds, [str(BASE_SEED), str(BASE_SEED), str(BASE_SEED + 1), str(BASE_SEED + 1)])
        for name in ("depth2", "depth4"):
            for seed in (BASE_SEED, BASE_SEED + 1):
                d = self.seed_dir(name, seed)
                self.assertTrue(os.path.isfile(os.path.join(d, "done")), d)
                self.assertEqual(sorted(os.listdir(os.path.join(d, "analysis"))),
                                 sorted(["untrained_block.json", "untrained_sublayer.json", "step25_block.json",
                                         "step100_block.json", "step300_block.json", "step300_sublayer.json",
                                         "tuned_step300_block.json", "tuned_step300_sublayer.json",
                                         "intervene_step300_block.json"]))
        self.assertFalse(os.path.exists(self.seed_dir("depth2", BASE_SEED + 2)))

    def test_seeds_option_sets_the_number_of_seeds(self):
        rc, calls = self.reproduce("--seeds", "3", "--settings", "depth2")
        self.assertEqual(rc, 0, self.stderr)
        self.assertEqual(sorted(os.listdir(os.path.join(self.out, "depth2"))),
                         [f"seed{BASE_SEED + i}" for i in range(3)])
        rc, _ = self.reproduce("--seeds", "0")
        self.assertEqual(rc, 2)
        self.assertIn("--seeds: expected a positive integer", self.stderr)

    def test_tuned_lens_is_each_seeds_own_and_the_untrained_control_uses_the_logit_lens(self):
        rc, calls = self.reproduce("--settings", "depth2")
        self.assertEqual(rc, 0, self.stderr)
        for c in (c for c in calls if c[0] == "analyze"):
            out = c[c.index("--out") + 1]
            seed_dir = os.path.dirname(os.path.dirname(out))
            if os.path.basename(out).startswith("tuned_"):
                self.assertEqual(c[c.index("--lens") + 1], f"tuned:{seed_dir}/lens.safetensors")
                self.assertIn(f"{seed_dir}/run/checkpoints/step_00000300", c)
            else:
                self.assertNotIn("--lens", c)  # the logit lens, the untrained control included

    def test_an_interrupted_run_resumes_without_redoing_finished_work(self):
        second = self.seed_dir("depth2", BASE_SEED + 1)
        failing = f"{second}/analysis/tuned_step300_block.json"
        rc, calls = self.reproduce("--settings", "depth2", fail=failing)
        self.assertNotEqual(rc, 0)
        self.assertTrue(os.path.isfile(os.path.join(self.seed_dir("depth2", BASE_SEED), "done")))
        # The marker is written only after the seed's last step.
        self.assertFalse(os.path.exists(os.path.join(second, "done")))
        self.assertTrue(os.path.isfile(os.path.join(second, "run", "trained")))

        rc, calls = self.reproduce("--settings", "depth2")
        self.assertEqual(rc, 0, self.stderr)
        work = self.work(calls)
        self.assertEqual([c[0] for c in work], ["analyze", "analyze", "intervene"], work)  # only what was left
        self.assertEqual([c[c.index("--out") + 1] for c in work],
                         [failing, f"{second}/analysis/tuned_step300_sublayer.json",
                          f"{second}/analysis/intervene_step300_block.json"])
        self.assertTrue(os.path.isfile(os.path.join(second, "done")))

        rc, calls = self.reproduce("--settings", "depth2")
        self.assertEqual(rc, 0, self.stderr)
        self.assertEqual(self.work(calls), [])  # everything finished: nothing is redone

    def test_interrupted_training_resumes_from_its_checkpoints(self):
        d = self.seed_dir("depth2", BASE_SEED)
        rc, _ = self.reproduce("--settings", "depth2", "--seeds", "1", fail=f"--run-dir {d}/run")
        self.assertNotEqual(rc, 0)
        self.assertFalse(os.path.exists(os.path.join(d, "run", "trained")))
        os.makedirs(os.path.join(d, "run", "checkpoints", "step_00000025"))  # what the interrupted run kept
        rc, calls = self.reproduce("--settings", "depth2", "--seeds", "1")
        self.assertEqual(rc, 0, self.stderr)
        trains = [c for c in calls if c[0] == "train"]
        self.assertEqual(len(trains), 1)
        self.assertIn("--resume", trains[0])

    def test_icl_settings_train_and_compare_once_and_the_quick_run_trains_an_eighth(self):
        icl = os.path.join(self.out, "icl")
        rc, calls = self.reproduce("--settings", "depth2", "--seeds", "1", "--icl", "lsa1-iso,lsa3-iso",
                                   fail="lsa3-iso/compare.json")
        self.assertNotEqual(rc, 0)
        self.assertTrue(os.path.isfile(os.path.join(icl, "lsa1-iso", "done")))
        self.assertTrue(os.path.isfile(os.path.join(icl, "lsa3-iso", "run", "trained")))
        self.assertFalse(os.path.exists(os.path.join(icl, "lsa3-iso", "done")))
        with open(os.path.join(REPO, "configs", "icl", "lsa3-iso.json")) as f:
            full = json.load(f)["train"]
        with open(os.path.join(icl, "lsa3-iso", "config.quick.json")) as f:
            quick = json.load(f)["train"]
        self.assertEqual(quick["steps"], full["steps"] // 8)
        self.assertLessEqual(quick["checkpoint_every"], quick["steps"])
        trains = [c for c in calls if c[0] == "icl-train"]
        self.assertEqual([c[c.index("--config") + 1] for c in trains],
                         [os.path.join(icl, n, "config.quick.json") for n in ("lsa1-iso", "lsa3-iso")])

        rc, calls = self.reproduce("--settings", "depth2", "--seeds", "1", "--icl", "lsa1-iso,lsa3-iso")
        self.assertEqual(rc, 0, self.stderr)
        self.assertEqual([c[:3] for c in calls if c[0].startswith("icl-")],
                         [["icl-compare", "--checkpoint", os.path.join(icl, "lsa3-iso", "run")]])
        rc, calls = self.reproduce("--settings", "depth2", "--seeds", "1", "--icl", "lsa1-iso,lsa3-iso")
        self.assertEqual(rc, 0, self.stderr)
        self.assertEqual([c for c in calls if c[0].startswith("icl-")], [])  # both finished: nothing redone

    def test_icl_none_skips_the_icl_settings_and_an_unknown_one_is_refused(self):
        rc, calls = self.reproduce("--settings", "depth2", "--seeds", "1", "--icl", "none")
        self.assertEqual(rc, 0, self.stderr)
        self.assertEqual([c for c in calls if c[0].startswith("icl-")], [])
        rc, _ = self.reproduce("--settings", "depth2", "--seeds", "1", "--icl", "lsa9")
        self.assertEqual(rc, 2)
        self.assertIn("no config configs/icl/lsa9.json", self.stderr)

    def test_an_interrupted_icl_training_resumes(self):
        run = os.path.join(self.out, "icl", "lsa1-iso", "run")
        rc, _ = self.reproduce("--settings", "depth2", "--seeds", "1", "--icl", "lsa1-iso", fail=f"--run-dir {run}")
        self.assertNotEqual(rc, 0)
        os.makedirs(os.path.join(run, "checkpoints", "step_00000500"))  # what the interrupted run kept
        rc, calls = self.reproduce("--settings", "depth2", "--seeds", "1", "--icl", "lsa1-iso")
        self.assertEqual(rc, 0, self.stderr)
        (train,) = [c for c in calls if c[0] == "icl-train"]
        self.assertIn("--resume", train)

    def test_commands_are_recorded_for_the_report(self):
        rc, calls = self.reproduce("--settings", "depth2", "--seeds", "1")
        self.assertEqual(rc, 0, self.stderr)
        with open(os.path.join(self.out, "commands.txt")) as f:
            recorded = [shlex.split(line) for line in f if line.strip()]
        self.assertEqual([c[1:] for c in recorded], [c for c in calls if c[0] != "config"])


if __name__ == "__main__":
    unittest.main()
