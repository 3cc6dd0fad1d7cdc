"""The PTB recipe end to end, on a tiny config (the real one is in README)."""

import json
import os
import shutil
import subprocess
import sys
import time
from unittest import mock

import h5py
import numpy as np
import pytest

from keras_sdgm.training.callbacks import StepAndEpochBackup
from keras_sdgm.training.recipe import main
from tests.conftest import shared_data_dir
from tests.testing import TestCase

TINY = [
    "--hidden-dim", "16", "--num-atoms", "8", "--sequence-length", "32",
    "--num-layers", "1", "--batch-size", "64", "--num-heads", "2",
]
RECIPE = os.path.join(os.path.dirname(__file__), os.pardir, "recipes", "ptb.py")


def run_args(output_dir, *extra):
    return TINY + ["--data-dir", shared_data_dir(), "--output-dir",
                   output_dir, "--verbose", "0", *extra]


@pytest.mark.slow
class RecipeTest(TestCase):
    def test_max_steps_run_writes_everything(self):
        out = os.path.join(self.get_temp_dir(), "run")
        result = main("ptb", run_args(out, "--max-steps", "20"))
        for name in ("best.keras", "metrics.json", "log.csv", "curves.png",
                     "config.json"):
            self.assertTrue(os.path.exists(os.path.join(out, name)), name)
        with open(os.path.join(out, "metrics.json")) as f:
            metrics = json.load(f)
        self.assertEqual(metrics, json.loads(json.dumps(result)))
        for split, predicted in (("valid", 73759), ("test", 82429)):
            for protocol in ("non_overlapping", "sliding"):
                entry = metrics["perplexity"][split][protocol]
                self.assertTrue(np.isfinite(entry["perplexity"]))
                self.assertEqual(entry["num_predicted"], predicted)
        self.assertEqual(metrics["vocabulary_size"], 10000)
        self.assertEqual(metrics["parameters"]["embedding"], 10000 * 16)
        self.assertGreater(metrics["parameters"]["non_embedding"], 0)
        self.assertGreater(metrics["training_tokens_per_second"], 0)
        self.assertEqual(metrics["config"]["max_steps"], 20)

        # A finished run is kept unless --overwrite is given.
        with self.assertRaisesRegex(FileExistsError, "--overwrite"):
            main("ptb", run_args(out, "--max-steps", "20"))
        main("ptb", run_args(out, "--max-steps", "10", "--overwrite"))
        with open(os.path.join(out, "config.json")) as f:
            self.assertEqual(json.load(f)["max_steps"], 10)

    def test_gpt2_baseline(self):
        out = os.path.join(self.get_temp_dir(), "gpt2")
        result = main("ptb", run_args(out, "--model", "gpt2", "--max-steps", "5"))
        self.assertEqual(result["model"], "gpt2")
        # Token and position embeddings.
        self.assertEqual(
            result["parameters"]["embedding"], 10000 * 16 + 32 * 16
        )

    def test_refuses_unwritable_output_and_changed_config(self):
        blocker = os.path.join(self.get_temp_dir(), "a_file")
        open(blocker, "w").close()
        with self.assertRaisesRegex(OSError, "Cannot write"):
            main("ptb", run_args(os.path.join(blocker, "run")))
        out = os.path.join(self.get_temp_dir(), "unfinished")
        os.makedirs(out)
        with open(os.path.join(out, "config.json"), "w") as f:
            json.dump({"corpus": "ptb", "hidden_dim": 99}, f)
        with self.assertRaisesRegex(ValueError, "another config"):
            main("ptb", run_args(out, "--max-steps", "5"))

    def test_diverging_run_stops_and_keeps_its_checkpoint(self):
        out = os.path.join(self.get_temp_dir(), "nan")
        # Adam steps of 1e30 blow the logits up to inf within two steps.
        with self.assertRaisesRegex(
            FloatingPointError, r"at step \d+ .*last good checkpoint"
        ):
            main("ptb", run_args(out, "--learning-rate", "1e30",
                                 "--max-steps", "20", "--checkpoint-every", "1"))
        self.assertFalse(os.path.exists(os.path.join(out, "metrics.json")))
        with h5py.File(os.path.join(out, "backup", "latest.weights.h5")) as f:
            arrays = []
            f.visititems(lambda name, item: arrays.append(item[()])
                         if isinstance(item, h5py.Dataset) else None)
        self.assertNotEmpty(arrays)
        for array in arrays:
            self.assertTrue(np.all(np.isfinite(array)))

    def test_too_little_disk_space_fails_before_training(self):
        out = os.path.join(self.get_temp_dir(), "full_disk")
        usage = shutil.disk_usage(self.get_temp_dir())._replace(free=1000)
        with mock.patch("shutil.disk_usage", return_value=usage):
            with self.assertRaisesRegex(OSError, "MiB free"):
                main("ptb", run_args(out, "--max-steps", "5"))
        self.assertFalse(os.path.exists(os.path.join(out, "log.csv")))

    def test_killed_run_resumes(self):
        out = os.path.join(self.get_temp_dir(), "resume")
        command = [sys.executable, RECIPE] + run_args(
            out, "--epochs", "3", "--steps-per-epoch", "10",
            "--checkpoint-every", "5",
        )
        env = dict(os.environ)
        process = subprocess.Popen(command, env=env)
        log = os.path.join(out, "log.csv")
        backup = os.path.join(out, "backup")
        deadline = time.time() + 240
        # Kill it once a backup says the first epoch is done.
        while time.time() < deadline and process.poll() is None:
            if StepAndEpochBackup.restored_epoch(backup) >= 1:
                break
            time.sleep(0.2)
        self.assertIsNone(process.poll(), "the run ended before it was killed")
        process.kill()
        process.wait()
        self.assertFalse(os.path.exists(os.path.join(out, "metrics.json")))
        resume_epoch = StepAndEpochBackup.restored_epoch(backup)
        self.assertIn(resume_epoch, (1, 2))

        rerun = subprocess.run(command, env=env, capture_output=True,
                               text=True, timeout=600)
        self.assertEqual(rerun.returncode, 0, rerun.stderr[-3000:])
        self.assertIn(f"at epoch {resume_epoch + 1}.", rerun.stdout)
        rows = open(log).read().splitlines()[1:]
        # Epochs 0, 1, 2 logged once each: the rerun went on from its
        # backup instead of starting over.
        self.assertEqual([int(r.split(",")[0]) for r in rows], [0, 1, 2])
        self.assertTrue(os.path.exists(os.path.join(out, "metrics.json")))
