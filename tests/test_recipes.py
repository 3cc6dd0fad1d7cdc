"""The PTB recipe: its steps alone (cheap), and end to end on a tiny config
(the real one is in README)."""

import contextlib
import dataclasses
import glob
import io
import json
import os
import runpy
import shutil
import subprocess
import sys
import textwrap
import time
from unittest import mock

import h5py
import keras
import keras_hub
import numpy as np
import pytest

from keras_sdgm import datasets
from keras_sdgm.models import SDGMBackbone
from keras_sdgm.models import SDGMCausalLMPreprocessor
from keras_sdgm.models import SDGMTokenizer
from keras_sdgm.training import callbacks as callbacks_lib
from keras_sdgm.training import model_builders
from keras_sdgm.training import recipe
from keras_sdgm.training import reporting
from keras_sdgm.training.callbacks import StepAndEpochBackup
from keras_sdgm.training.recipe import main
from tests.fixtures import MODEL_TINY
from tests.fixtures import RECIPE_TINY
from tests.fixtures import recipe_args
from tests.fixtures import tiny_lm
from tests.testing import END_TO_END
from tests.testing import TestCase

RECIPES = os.path.join(os.path.dirname(__file__), os.pardir, "recipes")

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


def tensorboard_tags(log_dir):
    """`{"train": tags, "validation": tags}` of a TensorBoard log folder."""
    import tensorflow as tf

    tags = {}
    for folder in ("train", "validation"):
        tags[folder] = {
            value.tag
            for path in glob.glob(os.path.join(log_dir, folder, "events.*"))
            for event in tf.compat.v1.train.summary_iterator(path)
            for value in event.summary.value
        }
    return tags


@pytest.mark.slow
@END_TO_END
class RecipeTest(TestCase):
    def test_max_steps_run_writes_everything(self):
        out = os.path.join(self.get_temp_dir(), "run")
        result = main(
            "ptb",
            recipe_args(
                out,
                "--max-steps",
                "20",
                "--long-eval-lengths",
                "48,100",
                "--tensorboard",
            ),
        )
        for name in (
            "best.keras",
            "metrics.json",
            "log.csv",
            "curves.png",
            "config.json",
        ):
            self.assertTrue(os.path.exists(os.path.join(out, name)), name)
        with open(os.path.join(out, "metrics.json")) as f:
            metrics = json.load(f)
        self.assertEqual(metrics, json.loads(json.dumps(result)))
        # --eval-tokens 4096: every token of that part of each split but
        # the first (the whole splits by default: the test below).
        for split in ("valid", "test"):
            for protocol in ("non_overlapping", "sliding"):
                entry = metrics["perplexity"][split][protocol]
                self.assertTrue(np.isfinite(entry["perplexity"]))
                self.assertEqual(entry["num_predicted"], 4095)
        # Windows longer than the training window (32), validation only.
        long_windows = metrics["perplexity"]["valid"]["long_windows"]
        self.assertEqual(sorted(long_windows), ["100", "48"])
        for length, entry in long_windows.items():
            self.assertEqual(entry["num_predicted"], 4095)
            self.assertTrue(np.isfinite(entry["perplexity"]), length)
        self.assertEqual(metrics["vocabulary_size"], 10000)
        self.assertEqual(metrics["parameters"]["embedding"], 10000 * 16)
        self.assertGreater(metrics["parameters"]["non_embedding"], 0)
        self.assertGreater(metrics["training_tokens_per_second"], 0)
        self.assertEqual(metrics["config"]["max_steps"], 20)
        # The settings that change its speed (CI sets XLA_FLAGS).
        self.assertEqual(
            metrics["environment"].get("XLA_FLAGS"),
            os.environ.get("XLA_FLAGS"),
        )

        # TensorBoard has every logged term, the learning rate and tokens/s.
        with open(os.path.join(out, "log.csv")) as f:
            logged = f.readline().strip().split(",")[1:]
        self.assertIn("val_perplexity", logged)
        tags = tensorboard_tags(os.path.join(out, "tensorboard"))
        for name in logged:
            folder = "validation" if name.startswith("val_") else "train"
            self.assertIn("epoch_" + name.removeprefix("val_"), tags[folder])
        for name in ("epoch_learning_rate", "epoch_tokens_per_second"):
            self.assertIn(name, tags["train"])

        # The preset directory is the best model, ready to generate.
        best = keras.saving.load_model(os.path.join(out, "best.keras"))
        preset = keras_hub.models.CausalLM.from_preset(
            os.path.join(out, "preset")
        )
        x = {
            "token_ids": np.arange(64, dtype="int32").reshape(2, 32),
            "padding_mask": np.ones((2, 32), "int32"),
        }
        # (generate() from a preset directory: tests/models/test_sdgm_presets.py)
        self.assertAllClose(preset.predict(x), best.predict(x), atol=0)
        self.assertFalse(os.path.exists(os.path.join(out, "preset.partial")))

        # What --overwrite does to a finished run: OverwriteEndToEndTest
        # (tests/test_recipe_arguments.py).

    def test_the_final_evaluation_scores_the_whole_splits_by_default(self):
        def split_sizes(**kwargs):
            config = recipe.parse_args("ptb", recipe_args("run", **kwargs))
            tokens = recipe.load_data(config).tokens
            return {split: len(ids) for split, ids in tokens.items()}

        # Each split's words and an <eos> per line (shared/data/README.md).
        self.assertEqual(
            split_sizes(whole_splits=True),
            {"train": 929589, "valid": 73760, "test": 82430},
        )
        self.assertEqual(
            split_sizes(),  # --eval-tokens 4096
            {"train": 929589, "valid": 4096, "test": 4096},
        )

    def test_trains_on_a_text_file_with_callbacks_of_your_own(self):
        # 400 lines of a generated language: valid and test are held out
        # from the end (40 lines each), rare words become <unk>.
        rng = np.random.default_rng(0)
        words = [f"w{i}" for i in range(60)]
        weights = 1.0 / np.arange(1, 61)
        lines = [
            " ".join(rng.choice(words, size=10, p=weights / weights.sum()))
            for _ in range(400)
        ]
        train_file = os.path.join(self.get_temp_dir(), "mine.txt")
        with open(train_file, "w") as f:
            f.write("\n".join(lines) + "\n")

        class Recorder(keras.callbacks.Callback):
            logs = []

            def on_epoch_end(self, epoch, logs=None):
                self.logs.append(dict(logs))

        out = os.path.join(self.get_temp_dir(), "run")
        flags = [
            *RECIPE_TINY,
            *MODEL_TINY["sdgm"],
            "--train-file",
            train_file,
            "--min-count",
            "3",
            "--max-vocabulary-size",
            "40",
            # One epoch of 7 steps (the training part, 320 lines of 11
            # tokens, is 2 batches a pass): tokens/s is measured after 5.
            "--steps-per-epoch",
            "7",
            "--max-steps",
            "7",
            "--output-dir",
            out,
            "--verbose",
            "0",
        ]
        metrics = main("text", flags, callbacks=[Recorder()])
        vocabulary = SDGMTokenizer.build_vocabulary(
            lines[:320], max_size=40, min_count=3
        )
        self.assertEqual(metrics["vocabulary_size"], len(vocabulary))
        self.assertEqual(metrics["corpus"], "text")
        self.assertEqual(
            metrics["config"]["text_sha256"],
            {"train": datasets.file_sha256(train_file)},
        )
        # 40 lines of 10 words and an <eos>, less the first token.
        for split in ("valid", "test"):
            entry = metrics["perplexity"][split]["non_overlapping"]
            self.assertEqual(entry["num_predicted"], 40 * 11 - 1)
            self.assertTrue(np.isfinite(entry["perplexity"]))
        # The caller's callback saw the epoch's logs, tokens/s included.
        self.assertEqual(metrics["epochs_logged"], 1)
        # A one-epoch run's curve: a row per step (7 steps an epoch).
        steps = reporting.read_csv_log(os.path.join(out, "steps.csv"))
        self.assertEqual([r["step"] for r in steps], list(range(1, 8)))
        self.assertLen(Recorder.logs, 1)
        for name in ("loss", "val_perplexity", "tokens_per_second"):
            self.assertIn(name, Recorder.logs[0])
        # The preset holds the corpus's own vocabulary, ready to use.
        preset = keras_hub.models.CausalLM.from_preset(
            os.path.join(out, "preset")
        )
        self.assertEqual(
            preset.preprocessor.tokenizer.get_vocabulary(), vocabulary
        )
        # The same command resumes nothing: the run is finished.
        with self.assertRaisesRegex(FileExistsError, "--overwrite"):
            main("text", flags)

    def test_gpt2_baseline(self):
        out = os.path.join(self.get_temp_dir(), "gpt2")
        with self.assertRaises(SystemExit):
            # GPT-2 has no positions beyond its window.
            main(
                "ptb",
                recipe_args(out, "--long-eval-lengths", "64", model="gpt2"),
            )
        result = main("ptb", recipe_args(out, "--max-steps", "5", model="gpt2"))
        self.assertEqual(result["model"], "gpt2")
        preset = keras_hub.models.CausalLM.from_preset(
            os.path.join(out, "preset")
        )
        self.assertIsInstance(preset, keras_hub.models.GPT2CausalLM)
        # Token and position embeddings.
        self.assertEqual(
            result["parameters"]["embedding"], 10000 * 16 + 32 * 16
        )

    def test_rwkv7_baseline(self):
        out = os.path.join(self.get_temp_dir(), "rwkv7")
        result = main(
            "ptb",
            recipe_args(
                out,
                "--max-steps",
                "5",
                "--dropout",
                "0.1",
                "--long-eval-lengths",
                "64",
                "--lr-schedule",
                "cosine",
                "--warmup-steps",
                "2",
                model="rwkv7",
            ),
        )
        self.assertEqual(result["model"], "rwkv7")
        # A recurrent model scores windows longer than it trained on: every
        # token of the 4,096 but the first, in windows of 64.
        long_windows = result["perplexity"]["valid"]["long_windows"]["64"]
        self.assertEqual(long_windows["num_predicted"], 4095)
        self.assertTrue(np.isfinite(long_windows["perplexity"]))
        preset = keras_hub.models.CausalLM.from_preset(
            os.path.join(out, "preset")
        )
        self.assertIsInstance(preset, keras_hub.models.RWKV7CausalLM)
        backbone = preset.backbone
        # --num-heads 2 at D=16: heads of 8; --dropout reaches keras-hub.
        self.assertEqual((backbone.head_size, backbone.dropout_rate), (8, 0.1))
        self.assertEqual(backbone.intermediate_dim, 4 * 16)

    def test_diverging_run_stops_and_keeps_its_checkpoint(self):
        out = os.path.join(self.get_temp_dir(), "nan")
        # Adam steps of 1e30 blow the logits up to inf within two steps.
        with self.assertRaisesRegex(
            FloatingPointError, r"at step \d+ .*last good checkpoint"
        ):
            main(
                "ptb",
                recipe_args(
                    out,
                    "--learning-rate",
                    "1e30",
                    "--max-steps",
                    "20",
                    "--checkpoint-every",
                    "1",
                ),
            )
        self.assertFalse(os.path.exists(os.path.join(out, "metrics.json")))
        with h5py.File(os.path.join(out, "backup", "latest.weights.h5")) as f:
            arrays = []
            f.visititems(
                lambda name, item: (
                    arrays.append(item[()])
                    if isinstance(item, h5py.Dataset)
                    else None
                )
            )
        self.assertNotEmpty(arrays)
        for array in arrays:
            self.assertTrue(np.all(np.isfinite(array)))

    def test_too_little_disk_space_fails_before_training(self):
        out = os.path.join(self.get_temp_dir(), "full_disk")
        usage = shutil.disk_usage(self.get_temp_dir())._replace(free=1000)
        with mock.patch("shutil.disk_usage", return_value=usage):
            with self.assertRaisesRegex(OSError, "MiB free"):
                main("ptb", recipe_args(out, "--max-steps", "5"))
        self.assertFalse(os.path.exists(os.path.join(out, "log.csv")))


@pytest.mark.slow
class ResumeTest(TestCase):
    """Under every backend: each keeps its own random generators (torch's
    global one among them) that a resumed run must restore."""

    def test_run_killed_mid_epoch_resumes_to_the_same_weights(self):
        # With dropout, so the random streams must resume too. Under torch a
        # resumed run with dropout is close but not bit-identical (README,
        # "Recipes": torch's CPU dropout masks are not fixed by its
        # generator state), so there the mechanics are checked without it.
        dropout = "0.0" if keras.config.backend() == "torch" else "0.1"
        arguments = [
            "--epochs",
            "2",
            "--steps-per-epoch",
            "5",
            "--checkpoint-every",
            "3",
            "--dropout",
            dropout,
        ]
        # The uninterrupted run in this process (the recipe seeds every
        # generator itself), the killed run in a process of its own, and
        # the resumed run in this process again: it must restore every
        # generator from the backup, whatever the first run left in them.
        whole = os.path.join(self.get_temp_dir(), "whole")
        main("ptb", recipe_args(whole, *arguments))

        out = os.path.join(self.get_temp_dir(), "killed")
        # Killed at step 8 (epoch 2, batch 3); the last backup is step 6.
        killed = subprocess.run(
            [sys.executable, "-c", KILLED_AT_STEP, "8"]
            + recipe_args(out, *arguments),
            capture_output=True,
            text=True,
            timeout=600,
        )
        self.assertEqual(killed.returncode, 9, killed.stderr[-3000:])
        self.assertFalse(os.path.exists(os.path.join(out, "metrics.json")))
        self.assertEqual(
            StepAndEpochBackup.restored_step(os.path.join(out, "backup")), 6
        )
        killed_seconds = StepAndEpochBackup.restored_seconds(
            os.path.join(out, "backup")
        )
        self.assertGreater(killed_seconds, 0)

        printed = io.StringIO()
        resumed_began = time.time()
        with contextlib.redirect_stdout(printed):
            main("ptb", recipe_args(out, *arguments))
        resumed_seconds = time.time() - resumed_began
        self.assertIn("at epoch 2, step 2.", printed.getvalue())
        rows = open(os.path.join(out, "log.csv")).read().splitlines()[1:]
        self.assertEqual([int(r.split(",")[0]) for r in rows], [0, 1])
        # Step 7, logged after the backup and before the kill, is cut and
        # logged again: each step once, with the uninterrupted run's loss.
        steps = reporting.read_csv_log(os.path.join(out, "steps.csv"))
        self.assertEqual([r["step"] for r in steps], list(range(1, 11)))
        whole_steps = reporting.read_csv_log(os.path.join(whole, "steps.csv"))
        self.assertAllClose(
            [r["loss"] for r in steps],
            [r["loss"] for r in whole_steps],
            atol=1e-5,
        )
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
            metrics = json.load(f)
        self.assertEqual(metrics["perplexity"], expected_perplexity)
        # The wall time is both processes': the killed one's up to its
        # backup, and the resumed one's.
        self.assertBetween(
            metrics["wall_time_seconds"],
            resumed_seconds,
            killed_seconds + resumed_seconds,
        )


class MonitorAcrossFitsTest(TestCase):
    """Early stopping and the plateau schedule count across `fit()` calls
    and resumes as in one uninterrupted `fit()`."""

    def model(self, learning_rate=1.0):
        model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])
        model.compile(optimizer=keras.optimizers.SGD(learning_rate), loss="mse")
        return model

    def test_monitor_state(self):
        self.assertEqual(callbacks_lib.monitor_state([]), (None, 0))
        values = [5.0, 4.0, 4.5, 4.2, 3.0, 3.5]
        self.assertEqual(callbacks_lib.monitor_state(values), (3.0, 1))
        self.assertEqual(callbacks_lib.monitor_state(values[:4]), (4.0, 2))
        # Reset each time the wait reaches 2 (a plateau's reduction).
        self.assertEqual(
            callbacks_lib.monitor_state(values[:4], reset_after=2), (4.0, 0)
        )

    def epochs(self, callback, values, model, first_epoch=0):
        """Runs `callback` over epochs that log `values` as `val_loss`."""
        callback.set_model(model)
        callback.on_train_begin()
        for epoch, value in enumerate(values, start=first_epoch):
            callback.on_epoch_end(epoch, {"val_loss": value})
            if model.stop_training:
                return epoch
        return None

    def test_early_stopping_resumes_its_count(self):
        values = [5.0, 4.0, 4.5, 4.6, 3.0]
        whole = self.model()
        stopped = self.epochs(
            callbacks_lib.ResumableEarlyStopping(
                monitor="val_loss", mode="min", patience=2
            ),
            values,
            whole,
        )
        self.assertEqual(stopped, 3)
        # Resumed after epoch 2 (epochs 0-2 in the log): stops at 3 too.
        resumed = self.model()
        callback = callbacks_lib.ResumableEarlyStopping(
            past_values=values[:3], monitor="val_loss", mode="min", patience=2
        )
        self.assertEqual(
            self.epochs(callback, values[3:], resumed, first_epoch=3), 3
        )
        # A second fit() of the same run continues the count: Keras's own
        # callback would start again and train epoch 4.
        twice = self.model()
        callback = callbacks_lib.ResumableEarlyStopping(
            monitor="val_loss", mode="min", patience=2
        )
        self.assertIsNone(self.epochs(callback, values[:3], twice))
        self.assertEqual(
            self.epochs(callback, values[3:], twice, first_epoch=3), 3
        )

    def test_plateau_halves_the_rate_after_each_epoch_without_a_best(self):
        def rate(model):
            return float(
                keras.ops.convert_to_numpy(model.optimizer.learning_rate)
            )

        values = [5.0, 4.0, 4.5, 3.0, 3.5, 3.6]
        model = self.model()
        callback = callbacks_lib.ResumableReduceLROnPlateau(
            monitor="val_loss", mode="min", factor=0.5, patience=0
        )
        self.epochs(callback, values[:3], model)
        self.assertEqual(rate(model), 0.5)
        self.epochs(callback, values[3:], model, first_epoch=3)
        self.assertEqual(rate(model), 0.125)
        # Resumed after epoch 3, with the rate its backup restored: the new
        # best of epoch 3 is not lost (epoch 4 is still a reduction).
        resumed = self.model(learning_rate=0.5)
        callback = callbacks_lib.ResumableReduceLROnPlateau(
            past_values=values[:4],
            monitor="val_loss",
            mode="min",
            factor=0.5,
            patience=0,
        )
        self.epochs(callback, values[4:], resumed, first_epoch=4)
        self.assertEqual(rate(resumed), 0.125)
        self.assertEqual(callback.best, 3.0)


class StepLogTest(TestCase):
    def test_rows_are_the_means_of_their_own_steps(self):
        # A model that predicts 0 and does not learn: batch b's loss is
        # mean(y_b ** 2) = b, for 6 batches of 2 an epoch.
        model = keras.Sequential(
            [
                keras.Input((1,)),
                keras.layers.Dense(
                    1, kernel_initializer="zeros", bias_initializer="zeros"
                ),
            ]
        )
        model.compile(optimizer=keras.optimizers.SGD(0.0), loss="mse")
        y = np.sqrt(np.repeat(np.arange(1.0, 7.0), 2))[:, None]
        path = os.path.join(self.get_temp_dir(), "steps.csv")
        model.fit(
            np.zeros((12, 1)),
            y,
            batch_size=2,
            epochs=2,
            shuffle=False,
            verbose=0,
            callbacks=[callbacks_lib.StepLog(path, every=4)],
        )
        rows = reporting.read_csv_log(path)
        # Every 4 steps, and the epoch's last 2 at its end.
        self.assertEqual(
            [(r["step"], r["epoch"]) for r in rows],
            [(4, 0), (6, 0), (10, 1), (12, 1)],
        )
        self.assertAllClose(
            [r["loss"] for r in rows], [2.5, 5.5, 2.5, 5.5], atol=1e-5
        )
        # The plot puts them on a step axis with the epochs' validation.
        png = reporting.plot_training_curves(
            path, path + ".png", "t", steps_path=path, steps_per_epoch=6
        )
        self.assertGreater(os.path.getsize(png), 1000)


class RecipeStepsTest(TestCase):
    """The recipe's steps alone: no data read, no training."""

    def config(self, *extra, model="sdgm", output_dir=None):
        output_dir = output_dir or os.path.join(self.get_temp_dir(), "run")
        return recipe.parse_args(
            "ptb", recipe_args(output_dir, *extra, model=model)
        )

    def test_scripts_are_the_recipes(self):
        def usage(script):
            printed = io.StringIO()
            with (
                mock.patch.object(sys, "argv", [script, "--help"]),
                contextlib.redirect_stdout(printed),
                self.assertRaises(SystemExit) as exit_,
            ):
                runpy.run_path(
                    os.path.join(RECIPES, script), run_name="__main__"
                )
            self.assertEqual(exit_.exception.code, 0)
            return " ".join(printed.getvalue().split())

        for script, corpus in (("ptb.py", "ptb"), ("wt2.py", "wikitext2")):
            text = usage(script)
            self.assertIn(f"GPT-2 or RWKV-7 on {corpus}.", text)
            self.assertIn("--data-dir", text)
            self.assertNotIn("--train-file", text)
        text = usage("train.py")
        self.assertIn("your own text", text)
        self.assertIn("--train-file TRAIN_FILE", text)
        self.assertNotIn("--data-dir", text)
        self.assertIn("(default: 0.1)", text)  # --holdout-fraction

    def huge_pages(self, function, libc=("glibc", "2.36"), tunables=None):
        """`function()` with this glibc and `GLIBC_TUNABLES`."""
        environ = {k: v for k, v in os.environ.items() if k != "GLIBC_TUNABLES"}
        if tunables is not None:
            environ["GLIBC_TUNABLES"] = tunables
        with (
            mock.patch.object(recipe.platform, "libc_ver", lambda: libc),
            mock.patch.dict(os.environ, environ, clear=True),
        ):
            return function()

    def test_huge_pages_hint_only_where_glibc_can_and_jax_runs(self):
        def hint(**kwargs):
            return self.huge_pages(recipe.huge_pages_hint, **kwargs)

        text = hint()
        if keras.config.backend() == "jax":
            self.assertIn("GLIBC_TUNABLES=glibc.malloc.hugetlb=1", text)
        else:
            self.assertIsNone(text)
        # Another tunable set: the tip still applies.
        self.assertEqual(hint(tunables="glibc.malloc.arena_max=2"), text)
        self.assertIsNone(hint(tunables="glibc.malloc.hugetlb=1"))
        self.assertIsNone(hint(libc=("glibc", "2.31")))  # No such tunable.
        self.assertIsNone(hint(libc=("", "")))  # musl, macOS, Windows.

    def test_child_environment_adds_huge_pages_where_they_help(self):
        def tunables(**kwargs):
            environ = self.huge_pages(recipe.child_environment, **kwargs)
            self.assertEqual(environ["PATH"], os.environ["PATH"])
            return environ.get("GLIBC_TUNABLES")

        if keras.config.backend() == "jax":
            # Without asking for the devices (that would start JAX's
            # backend in the process that only starts recipes).
            with mock.patch.object(
                keras.distribution,
                "list_devices",
                side_effect=AssertionError("asked for the devices"),
            ):
                self.assertEqual(tunables(), "glibc.malloc.hugetlb=1")
            self.assertEqual(
                tunables(tunables="glibc.malloc.arena_max=2"),
                "glibc.malloc.hugetlb=1:glibc.malloc.arena_max=2",
            )
        else:
            self.assertIsNone(tunables())
        # Set already, or not read: as it was.
        self.assertEqual(
            tunables(tunables="glibc.malloc.hugetlb=0"),
            "glibc.malloc.hugetlb=0",
        )
        self.assertIsNone(tunables(libc=("glibc", "2.31")))

    def test_parse_args_fills_the_preset_and_the_output_dir(self):
        config = recipe.parse_args("ptb", ["--model", "gpt2"])
        preset = SDGMBackbone.presets["sdgm_base"]["config"]
        for name, key in recipe.PRESET_SIZES.items():
            self.assertEqual(getattr(config, name), preset[key], name)
        self.assertEqual(config.output_dir, os.path.join("runs", "ptb-gpt2"))
        self.assertEqual(
            config.backup_dir, os.path.join("runs", "ptb-gpt2", "backup")
        )
        config = self.config("--hidden-dim", "24", "--dilation-rates", "1,2")
        self.assertEqual(
            (config.hidden_dim, config.dilation_rates), (24, [1, 2])
        )

    def test_eval_tokens_must_cover_a_window(self):
        self.assertEqual(self.config().eval_tokens, 4096)
        self.assertIsNone(
            recipe.parse_args(
                "ptb", recipe_args("x", whole_splits=True)
            ).eval_tokens
        )
        with self.assertRaises(SystemExit):
            self.config("--eval-tokens", "32")  # the window is 32

    def test_config_fields_are_the_flags(self):
        flags = {}
        for corpus in ("ptb", "text"):
            parser = recipe.build_parser(corpus)
            flags[corpus] = {a.dest for a in parser._actions} - {"help"}
        fields = {f.name for f in dataclasses.fields(recipe.RecipeConfig)}
        self.assertEqual(
            fields, flags["ptb"] | flags["text"] | {"corpus", "text_sha256"}
        )
        # The two kinds of recipe differ only in where the text comes from.
        text_only = {
            "train_file",
            "valid_file",
            "test_file",
            "holdout_fraction",
            "max_vocabulary_size",
            "min_count",
        }
        self.assertEqual(flags["ptb"] ^ flags["text"], {"data_dir"} | text_only)
        # A field of one kind is None in the other, as in a config.json
        # written before it existed (a run started then still resumes).
        # (An SDGM config also records what its flags resolve to.)
        saved = self.config().saved_config()
        self.assertEqual(
            set(saved),
            fields - set(recipe.RUN_ONLY_FIELDS) | {"architecture"},
        )
        self.assertEqual(saved["corpus"], "ptb")
        for name in text_only | {"text_sha256"}:
            self.assertIsNone(saved[name], name)
        self.assertEqual(json.loads(json.dumps(saved)), saved)

    def test_text_flags(self):
        folder = self.get_temp_dir()
        train = os.path.join(folder, "my corpus.txt")
        with open(train, "w") as f:
            f.write("a b c\n")
        config = recipe.parse_args("text", ["--train-file", train])
        self.assertEqual(config.corpus, "text")
        self.assertEqual(config.corpus_name, "my corpus.txt")
        self.assertEqual(
            config.output_dir, os.path.join("runs", "my corpus-sdgm")
        )
        self.assertEqual((config.holdout_fraction, config.min_count), (0.1, 1))
        self.assertIsNone(config.data_dir)
        # The digest of each file given: a run does not resume on changed
        # text.
        self.assertEqual(
            config.text_sha256, {"train": datasets.file_sha256(train)}
        )
        with self.assertRaises(SystemExit):
            recipe.parse_args(
                "text", ["--train-file", train, "--data-dir", "."]
            )
        with self.assertRaisesRegex(ValueError, "Unknown corpus 'pdb'"):
            recipe.parse_args("pdb", [])

    def test_parse_args_refuses_flags_that_do_not_go_together(self):
        self.assertEqual(
            self.config(
                "--long-eval-lengths", "64", model="rwkv7"
            ).long_eval_lengths,
            [64],
        )
        with self.assertRaises(SystemExit):
            # Heads of 16 // 3 = 5 do not divide D=16.
            self.config("--num-heads", "3", model="rwkv7")
        with self.assertRaises(SystemExit):
            # --num-heads 2 (the tiny run's) and a head size: one is ignored.
            self.config("--rwkv-head-size", "4", model="rwkv7")
        rwkv7 = ["--model", "rwkv7", "--hidden-dim", "16"]
        self.assertEqual(
            recipe.parse_args(
                "ptb", [*rwkv7, "--rwkv-head-size", "4"]
            ).rwkv_head_size,
            4,
        )
        with self.assertRaises(SystemExit):
            self.config("--lr-schedule", "plateau", "--warmup-steps", "10")
        # 0 is no warm-up, which the plateau schedule takes (the protocol's
        # schedule sweep turns its shared warm-up off this way).
        self.assertEqual(
            self.config(
                "--lr-schedule", "plateau", "--warmup-steps", "0"
            ).warmup_steps,
            0,
        )
        with self.assertRaises(SystemExit):
            self.config("--warmup-steps", "-1")
        with self.assertRaises(SystemExit):
            self.config("--long-eval-lengths", "1")

    def test_parse_args_refuses_flags_the_model_would_ignore(self):
        # Each flag, spelled as people do, with a model that does not read
        # it: refused, naming the flag, rather than recorded in config.json
        # and ignored.
        ignored = [
            ("gpt2", ["--num-atoms", "8"], "--num-atoms"),
            ("rwkv7", ["--dictionary", "static"], "--dictionary"),
            ("gpt2", ["--no-residual"], "--residual"),
            ("rwkv7", ["--data-dependent-decay"], "--data-dependent-decay"),
            ("gpt2", ["--modes-per-feature"], "--modes-per-feature"),
            ("gpt2", ["--encoder-type", "gated"], "--encoder-type"),
            ("gpt2", ["--max-position-offset", "0"], "--max-position-offset"),
            ("rwkv7", ["--stft-weight=0.5"], "--stft-weight"),
            ("gpt2", ["--nll-weight", "1"], "--nll-weight"),
            ("sdgm", ["--num-heads", "2"], "--num-heads"),
            ("sdgm", ["--rwkv-head-size", "2"], "--rwkv-head-size"),
            ("gpt2", ["--rwkv-head-size", "2"], "--rwkv-head-size"),
            ("gpt2", ["--long-eval-lengths", "64"], "--long-eval-lengths"),
        ]
        for model, flags, name in ignored:
            with self.subTest(model=model, flags=flags):
                printed = io.StringIO()
                with (
                    contextlib.redirect_stderr(printed),
                    self.assertRaises(SystemExit),
                ):
                    recipe.parse_args("ptb", ["--model", model, *flags])
                self.assertIn(
                    f"error: {name} is read only by", printed.getvalue()
                )
                self.assertIn(
                    f"--model {model} would ignore it", printed.getvalue()
                )
        # Every restricted flag is a recipe flag, read by known models, and
        # each model takes its own tiny flags.
        fields = {f.name for f in dataclasses.fields(recipe.RecipeConfig)}
        self.assertLessEqual(set(recipe.MODEL_FLAGS), fields)
        for models in recipe.MODEL_FLAGS.values():
            self.assertLessEqual(set(models), set(recipe.MODELS))
        for model in recipe.MODELS:
            config = recipe.parse_args("ptb", [*MODEL_TINY[model]])
            self.assertEqual(config.model, model)
        self.assertEqual(
            recipe.parse_args("ptb", ["--prior-weight", "0.1"]).prior_weight,
            0.1,
        )

    def test_given_flags(self):
        parser = recipe.build_parser("ptb")
        # Given at its default value, abbreviated, or as --no-flag: given;
        # left out: not, whatever the default.
        self.assertEqual(
            recipe.given_flags(
                parser, ["--num-heads", "8", "--no-res", "--hidden-d=4"]
            ),
            {"num_heads": 8, "residual": False, "hidden_dim": 4},
        )
        self.assertEqual(recipe.given_flags(parser, []), {})
        # The parser's defaults are left as they were.
        self.assertEqual(parser.parse_args([]).num_heads, 8)

    def test_training_plan(self):
        def plan(*flags, num_batches=100):
            return recipe.training_plan(self.config(*flags), num_batches)

        self.assertEqual(plan(), (100, 10))  # one pass an epoch, --epochs
        self.assertEqual(plan("--steps-per-epoch", "30"), (30, 10))
        self.assertEqual(plan("--max-steps", "20"), (20, 1))
        self.assertEqual(plan("--max-steps", "250"), (100, 3))  # whole epochs
        self.assertEqual(plan("--max-steps", "5000"), (100, 10))

    def test_learning_rate_schedules(self):
        def rates(*flags, steps=(0, 1, 2, 6, 10)):
            rate = recipe.learning_rate(
                self.config("--learning-rate", "0.01", *flags), 10
            )
            if isinstance(rate, float):
                return rate
            return [float(keras.ops.convert_to_numpy(rate(s))) for s in steps]

        self.assertEqual(rates(), 0.01)
        self.assertEqual(rates("--warmup-steps", "0"), 0.01)
        self.assertEqual(rates("--lr-schedule", "plateau"), 0.01)
        # Warm-up from 0, then constant.
        self.assertAllClose(
            rates("--warmup-steps", "2"), [0.0, 0.005, 0.01, 0.01, 0.01]
        )
        # Cosine over the 10 planned steps: half way at step 5, 0 at 10.
        self.assertAllClose(
            rates("--lr-schedule", "cosine", steps=(0, 5, 10)),
            [0.01, 0.005, 0.0],
            atol=1e-7,
        )
        # A warm-up as long as the run would never reach the rate.
        with self.assertRaisesRegex(ValueError, "--warmup-steps"):
            rates("--warmup-steps", "10")
        # After a warm-up of 2, the cosine spans the 8 steps left.
        self.assertAllClose(
            rates("--lr-schedule", "cosine", "--warmup-steps", "2"),
            [0.0, 0.005, 0.01, 0.005, 0.0],
            atol=1e-7,
        )

    def test_resume_step(self):
        backup = os.path.join(self.get_temp_dir(), "backup")
        self.assertEqual(recipe.resume_step(backup, 0, 10), 0)
        # A backup from before steps were recorded: its whole epochs.
        os.makedirs(backup)
        path = os.path.join(backup, "training_metadata.json")
        with open(path, "w") as f:
            json.dump({"epoch": 2, "batch": -1}, f)
        self.assertEqual(recipe.resume_step(backup, 2, 10), 20)
        with open(path, "w") as f:
            json.dump({"epoch": 2, "batch": 3, "step": 24}, f)
        self.assertEqual(recipe.resume_step(backup, 2, 10), 24)

    def test_backup_restores_generator_states_in_model_order(self):
        # Paths name layers as Keras numbered them in the process that
        # wrote the backup; a second model in one process has other names.
        lm = tiny_lm(backbone={"dropout": 0.1})
        lm.build({"token_ids": (None, 8), "padding_mask": (None, 8)})
        generators = callbacks_lib._seed_states(lm)
        self.assertNotEmpty(generators)
        backup = os.path.join(self.get_temp_dir(), "backup")
        os.makedirs(backup)
        path = os.path.join(backup, "training_metadata.json")

        def restore(states):
            with open(path, "w") as f:
                json.dump({"epoch": 0, "seed_states": states}, f)
            callback = StepAndEpochBackup(backup)
            callback.set_model(lm)
            callback.on_train_begin()
            return [keras.ops.convert_to_numpy(v).tolist() for v in generators]

        states = [[i, 7] for i in range(len(generators))]
        self.assertEqual(restore(states), states)
        # A backup of an older version, keyed by path.
        older = {v.path: [i, 9] for i, v in enumerate(generators)}
        self.assertEqual(restore(older), list(older.values()))
        with self.assertRaisesRegex(ValueError, "another model"):
            restore(states + [[0, 0]])

    def test_make_callbacks(self):
        config = self.config()
        os.makedirs(config.output_dir)
        with open(config.path("log.csv"), "w") as f:
            f.write(
                "epoch,loss,val_perplexity\n0,5.0,300.0\n1,4.0,200.0\n"
                "2,3.0,100.0\n"
            )
        with open(config.path("steps.csv"), "w") as f:
            f.write("step,epoch,loss\n10,0,5.0\n20,1,4.0\n21,2,3.9\n")
        callbacks, throughput = recipe.make_callbacks(config, 1, 2, 20, 10)
        # The epoch and the step after the backup are logged again: cut
        # from the logs.
        with open(config.path("log.csv")) as f:
            self.assertEqual(len(f.read().splitlines()), 3)
        with open(config.path("steps.csv")) as f:
            self.assertEqual(f.read(), "step,epoch,loss\n10,0,5.0\n20,1,4.0\n")
        step_log = next(
            c for c in callbacks if isinstance(c, callbacks_lib.StepLog)
        )
        self.assertEqual(step_log.every, 1)  # 10 steps an epoch
        self.assertIsInstance(callbacks[0], callbacks_lib.StopOnNonFiniteLoss)
        self.assertIsInstance(callbacks[-1], callbacks_lib.StepAndEpochBackup)
        self.assertIn(throughput, callbacks)
        self.assertEqual(throughput.tokens_per_step, 64 * 32)
        checkpoint = next(
            c
            for c in callbacks
            if isinstance(c, keras.callbacks.ModelCheckpoint)
        )
        self.assertEqual(checkpoint.best, 200.0)  # the best kept epoch's
        # Early stopping counts from the kept epochs: best 100, no wait.
        stopping = next(
            c
            for c in callbacks
            if isinstance(c, callbacks_lib.ResumableEarlyStopping)
        )
        self.assertEqual(stopping.past_values, (300.0, 200.0))
        self.assertFalse(
            any(
                isinstance(c, keras.callbacks.ReduceLROnPlateau)
                for c in callbacks
            )
        )
        callbacks, _ = recipe.make_callbacks(config, 2, 2, 20, 10)
        self.assertIsInstance(callbacks[-1], callbacks_lib.SynchronousBatchEnd)
        callbacks, _ = recipe.make_callbacks(
            self.config("--lr-schedule", "plateau"), 1, 0, 0, 10
        )
        kinds = [type(c) for c in callbacks]
        # Before the backup, which saves the lowered rate with the epoch.
        self.assertLess(
            kinds.index(callbacks_lib.ResumableReduceLROnPlateau),
            kinds.index(callbacks_lib.StepAndEpochBackup),
        )

    def test_an_sdgm_config_records_what_its_flags_resolve_to(self):
        # The backbone arguments, defaults included: a run made before a
        # default changed is told apart from one made after.
        default = recipe.parse_args("ptb", []).saved_config()["architecture"]
        self.assertEqual(
            [default[k] for k in ("encoder_type", "dictionary_type")],
            ["gated_retention", "static"],
        )
        self.assertEqual(
            [default[k] for k in ("hidden_dim", "window_length", "num_atoms")],
            [512, 128, 128],
        )
        given = recipe.parse_args(
            "ptb", ["--encoder-type", "gated_spectral", "--hidden-dim", "64"]
        ).saved_config()["architecture"]
        self.assertEqual(
            [given["encoder_type"], given["hidden_dim"]], ["gated_spectral", 64]
        )
        gpt2 = recipe.parse_args("ptb", ["--model", "gpt2"]).saved_config()
        self.assertNotIn("architecture", gpt2)

    def test_prepare_output_dir_resumes_the_same_config(self):
        config = self.config()
        saved = config.saved_config()
        self.assertFalse(
            recipe.prepare_output_dir(config.output_dir, saved, False)
        )
        self.assertTrue(
            recipe.prepare_output_dir(config.output_dir, saved, False)
        )
        # A run started before a flag existed resumes while the flag is at
        # its default (None); a changed value is refused.
        started_before = {k: v for k, v in saved.items() if k != "encoder_type"}
        with open(config.path("config.json"), "w") as f:
            json.dump(started_before, f)
        self.assertTrue(
            recipe.prepare_output_dir(config.output_dir, saved, False)
        )
        with open(config.path("config.json"), "w") as f:
            json.dump(started_before, f)
        with self.assertRaisesRegex(
            ValueError, r"differs in \['encoder_type'\]"
        ):
            recipe.prepare_output_dir(
                config.output_dir, {**saved, "encoder_type": "depthwise"}, False
            )

    def test_make_callbacks_adds_the_callers_after_the_logging(self):
        config = self.config("--tensorboard")
        mine = keras.callbacks.Callback()
        callbacks, throughput = recipe.make_callbacks(
            config, 1, 0, 0, 10, [mine]
        )
        kinds = [type(c) for c in callbacks]
        self.assertLess(
            kinds.index(keras.callbacks.CSVLogger), kinds.index(type(mine))
        )
        self.assertLess(callbacks.index(throughput), callbacks.index(mine))
        self.assertLess(
            kinds.index(keras.callbacks.TensorBoard), callbacks.index(mine)
        )
        self.assertEqual(callbacks.index(mine), len(callbacks) - 2)
        with self.assertRaisesRegex(TypeError, "`callbacks` must be"):
            main("ptb", recipe_args(config.output_dir), callbacks=[print])
        self.assertFalse(os.path.exists(config.output_dir))

    def test_build_causal_lm_from_a_config(self):
        tokenizer = SDGMTokenizer(
            SDGMTokenizer.build_vocabulary(["a b c d", "b c e"])
        )
        preprocessor = SDGMCausalLMPreprocessor(tokenizer, sequence_length=32)
        gpt2 = model_builders.build_causal_lm(
            self.config(model="gpt2"), preprocessor
        )
        self.assertEqual(gpt2.backbone.intermediate_dim, 4 * 16)
        self.assertEqual(gpt2.backbone.num_heads, 2)
        self.assertEqual(gpt2.backbone.max_sequence_length, 32)
        sdgm = model_builders.build_causal_lm(
            self.config("--stft-weight", "0.5", "--intermediate-dim", "0"),
            preprocessor,
        )
        self.assertEqual(sdgm.backbone.get_config()["num_atoms"], 8)
        self.assertEqual(sdgm.backbone.get_config()["intermediate_dim"], 0)
        self.assertEqual(sdgm.get_config()["stft_weight"], 0.5)

    def test_refuses_unwritable_output_and_changed_config(self):
        blocker = os.path.join(self.get_temp_dir(), "a_file")
        open(blocker, "w").close()
        with self.assertRaisesRegex(OSError, "Cannot write"):
            main("ptb", recipe_args(os.path.join(blocker, "run")))
        out = os.path.join(self.get_temp_dir(), "unfinished")
        os.makedirs(out)
        with open(os.path.join(out, "config.json"), "w") as f:
            json.dump({"corpus": "ptb", "hidden_dim": 99}, f)
        with self.assertRaisesRegex(ValueError, "another config"):
            main("ptb", recipe_args(out, "--max-steps", "5"))
