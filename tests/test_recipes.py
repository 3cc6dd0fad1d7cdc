"""The PTB recipe end to end, on a tiny config (the real one is in README)."""

import json
import os
import shutil
import subprocess
import sys
import textwrap
from unittest import mock

import h5py
import keras
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

# The recipe, killed abruptly (no cleanup, like SIGKILL) when the optimizer
# reaches the step given as the first argument.
KILLED_AT_STEP = textwrap.dedent(
    """
    import os, sys
    import keras
    from keras_sdgm.training import callbacks
    from keras_sdgm.training.recipe import main

    kill_at = int(sys.argv[1])
    count_tokens = callbacks.ThroughputMeter.on_train_batch_end

    def count_tokens_then_die(self, batch, logs=None):
        count_tokens(self, batch, logs)
        step = keras.ops.convert_to_numpy(self.model.optimizer.iterations)
        if int(step) == kill_at:
            os._exit(9)

    callbacks.ThroughputMeter.on_train_batch_end = count_tokens_then_die
    main("ptb", sys.argv[2:])
    """
)


def run_args(output_dir, *extra):
    return TINY + ["--data-dir", shared_data_dir(), "--output-dir",
                   output_dir, "--verbose", "0", *extra]


@pytest.mark.slow
class RecipeTest(TestCase):
    def test_max_steps_run_writes_everything(self):
        out = os.path.join(self.get_temp_dir(), "run")
        result = main("ptb", run_args(out, "--max-steps", "20",
                                      "--long-eval-lengths", "48,100"))
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
        # Windows longer than the training window (32), validation only.
        long_windows = metrics["perplexity"]["valid"]["long_windows"]
        self.assertEqual(sorted(long_windows), ["100", "48"])
        for length, entry in long_windows.items():
            self.assertEqual(entry["num_predicted"], 73759)
            self.assertTrue(np.isfinite(entry["perplexity"]), length)
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
        with self.assertRaises(SystemExit):
            # GPT-2 has no positions beyond its window.
            main("ptb", run_args(out, "--model", "gpt2",
                                 "--long-eval-lengths", "64"))
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

    def test_run_killed_mid_epoch_resumes_to_the_same_weights(self):
        # With dropout, so the random streams must resume too. Under torch a
        # resumed run with dropout is close but not bit-identical (README,
        # "Recipes": torch's CPU dropout masks are not fixed by its
        # generator state), so there the mechanics are checked without it.
        dropout = "0.0" if keras.config.backend() == "torch" else "0.1"
        arguments = ["--epochs", "2", "--steps-per-epoch", "5",
                     "--checkpoint-every", "3", "--dropout", dropout]
        # Each run in a fresh process, as a user runs the recipe.
        whole = os.path.join(self.get_temp_dir(), "whole")
        uninterrupted = subprocess.run(
            [sys.executable, RECIPE] + run_args(whole, *arguments),
            capture_output=True, text=True, timeout=600,
        )
        self.assertEqual(uninterrupted.returncode, 0,
                         uninterrupted.stderr[-3000:])

        out = os.path.join(self.get_temp_dir(), "killed")
        # Killed at step 8 (epoch 2, batch 3); the last backup is step 6.
        killed = subprocess.run(
            [sys.executable, "-c", KILLED_AT_STEP, "8"]
            + run_args(out, *arguments),
            capture_output=True, text=True, timeout=600,
        )
        self.assertEqual(killed.returncode, 9, killed.stderr[-3000:])
        self.assertFalse(os.path.exists(os.path.join(out, "metrics.json")))
        self.assertEqual(
            StepAndEpochBackup.restored_step(os.path.join(out, "backup")), 6
        )

        resumed = subprocess.run(
            [sys.executable, RECIPE] + run_args(out, *arguments),
            capture_output=True, text=True, timeout=600,
        )
        self.assertEqual(resumed.returncode, 0, resumed.stderr[-3000:])
        self.assertIn("at epoch 2, step 2.", resumed.stdout)
        rows = open(os.path.join(out, "log.csv")).read().splitlines()[1:]
        self.assertEqual([int(r.split(",")[0]) for r in rows], [0, 1])
        # Every batch trained on once, in order (a step more or less, or
        # another batch, would move the weights): those of the
        # uninterrupted run.
        expected = keras.saving.load_model(os.path.join(whole, "best.keras"))
        resumed = keras.saving.load_model(os.path.join(out, "best.keras"))
        for a, b in zip(expected.get_weights(), resumed.get_weights()):
            self.assertAllClose(a, b, atol=1e-6, rtol=0)
        with open(os.path.join(whole, "metrics.json")) as f:
            expected_perplexity = json.load(f)["perplexity"]
        with open(os.path.join(out, "metrics.json")) as f:
            self.assertEqual(json.load(f)["perplexity"], expected_perplexity)
