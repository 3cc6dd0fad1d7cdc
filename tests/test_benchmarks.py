"""The benchmark scripts run end to end (tiny sizes; numbers not asserted),
and their timing helpers (`keras_sdgm.utils.timing`) under every backend."""

import contextlib
import io
import json
import os

import keras
import numpy as np
import pytest
from keras import ops

from benchmarks import dictionary
from benchmarks import generate
from benchmarks import run
from keras_sdgm.utils import timing
from tests.conftest import shared_data_dir
from tests.testing import END_TO_END
from tests.testing import TestCase

ROOT = os.path.join(os.path.dirname(__file__), os.pardir)


class TimingTest(TestCase):
    """The compiled calls are each backend's own: checked under every one."""

    def test_median_seconds_times_the_calls_after_the_warm_up(self):
        calls = []
        seconds = timing.call_seconds(
            lambda: calls.append(1), steps=3, warmup=2
        )
        self.assertLen(seconds, 3)
        self.assertLen(calls, 5)
        self.assertGreaterEqual(
            timing.median_seconds(lambda: ops.ones((2, 2)), steps=1), 0.0
        )

    def test_compiled_reads_the_variables(self):
        layer = keras.layers.Dense(3)
        layer.build((None, 4))
        x = ops.convert_to_tensor(np.ones((2, 4), "float32"))
        for training in (False, True):
            call = timing.compiled(
                layer, layer.trainable_variables, training=training
            )
            self.assertAllClose(call(x), layer(x))

    def test_compiled_gradients(self):
        layer = keras.layers.Dense(3, use_bias=False)
        layer.build((None, 4))
        x = np.arange(8, dtype="float32").reshape(2, 4)
        gradients = timing.compiled_gradients(
            lambda inputs: ops.sum(layer(inputs)), layer.trainable_variables
        )(ops.convert_to_tensor(x))
        kernel = ops.convert_to_numpy(layer.kernel)
        # d sum(x W) / d x = rows of W summed; / d W = column sums of x.
        self.assertAllClose(gradients[0], np.tile(kernel.sum(1), (2, 1)))
        self.assertAllClose(gradients[1], np.tile(x.sum(0)[:, None], (1, 3)))


class TextQualityTest(TestCase):
    def test_known_values(self):
        scores = generate.text_quality([[1, 2, 1, 2, 1, 2], [3, 4, 5]])
        # Unigrams: 9 tokens, 5 distinct; bigrams: 7, distinct 12 21 34 45.
        self.assertAllClose(scores["distinct_1"], 5 / 9)
        self.assertAllClose(scores["distinct_2"], 4 / 7)
        # 4-grams of the first: 1212 2121 1212 -> one of three repeats; the
        # second has none (fewer than 4 tokens: not counted).
        self.assertAllClose(scores["repetition_4gram"], 1 / 3)


@pytest.mark.slow
@END_TO_END
class GenerateBenchmarkTest(TestCase):
    def test_runs_and_writes_its_outputs(self):
        out = self.get_temp_dir()
        generate.main(
            [
                "--contexts",
                "16",
                "64",
                "--steps",
                "2",
                "--hidden-dim",
                "16",
                "--num-heads",
                "2",
                "--vocabulary-size",
                "10000",
                "--quality-model",
                os.path.join(
                    ROOT, "saved_models", "ptb_sdgm_tiny", "model.keras"
                ),
                "--judge-model",
                os.path.join(
                    ROOT, "saved_models", "ptb_sdgm_tiny", "model.keras"
                ),
                "--samples",
                "3",
                "--length",
                "16",
                "--gmm-windows",
                "16",
                "--data-dir",
                shared_data_dir(),
                "--output-dir",
                out,
            ]
        )
        with open(os.path.join(out, "generate.json")) as f:
            result = json.load(f)
        self.assertEqual(
            sorted((r["model"], r["context"]) for r in result["latency"]),
            [("gpt2", 16), ("gpt2", 64), ("sdgm", 16), ("sdgm", 64)],
        )
        for row in result["latency"]:
            self.assertGreater(row["latency_ms"], 0)
        self.assertEqual(
            set(result["quality"]), {"encoder", "prior", "posterior"}
        )
        for scores in result["quality"].values():
            self.assertBetween(scores["distinct_1"], 0.0, 1.0)
            self.assertGreater(scores["judge_perplexity"], 1.0)
        for name in ("generate.md", "generate_latency.png"):
            self.assertTrue(os.path.exists(os.path.join(out, name)))


def run_benchmark(*arguments):
    """Runs `benchmarks/run.py` in this process; returns what it printed.

    Each configuration still runs in a child process of its own: that is
    how the benchmark measures and limits its memory.
    """
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        run.main(
            [
                "--lengths",
                "16",
                "32",
                "--hidden-dim",
                "16",
                "--num-layers",
                "1",
                "--num-heads",
                "2",
                "--vocabulary-size",
                "50",
                "--steps",
                "1",
                "--warmup",
                "1",
                *arguments,
            ]
        )
    return printed.getvalue()


@pytest.mark.slow
@END_TO_END
class RunBenchmarkTest(TestCase):
    def test_runs_and_writes_its_outputs(self):
        out = self.get_temp_dir()
        run_benchmark("--output-dir", out)
        for name in (
            "run.json",
            "run.md",
            "run_throughput.png",
            "run_memory.png",
        ):
            self.assertTrue(os.path.exists(os.path.join(out, name)), name)
        with open(os.path.join(out, "run.json")) as f:
            report = json.load(f)
        self.assertEqual(len(report["results"]), 4)
        for row in report["results"]:
            self.assertEqual(row["status"], "ok", row)
            self.assertGreater(row["train_tokens_per_second"], 0)
            self.assertGreater(row["peak_memory_bytes"], 0)
            self.assertGreater(row["achieved_fraction_of_peak"], 0)
        self.assertGreater(min(report["matmul_peak_flops"].values()), 0)

    def test_a_configuration_over_the_memory_limit_is_reported(self):
        out = self.get_temp_dir()
        run_benchmark(
            "--output-dir", out, "--memory-limit-gb", "0.05", "--models", "gpt2"
        )
        with open(os.path.join(out, "run.json")) as f:
            report = json.load(f)
        self.assertEqual(
            [r["status"] for r in report["results"]],
            ["out of memory (above 0.05 GiB)"] * 2,
        )
        with open(os.path.join(out, "run.md")) as f:
            self.assertIn("out of memory", f.read())
        # The results are not replaced unless asked; --resume keeps them.
        with self.assertRaisesRegex(FileExistsError, "--overwrite"):
            run_benchmark("--output-dir", out, "--models", "gpt2")
        resumed = run_benchmark(
            "--output-dir",
            out,
            "--memory-limit-gb",
            "0.05",
            "--models",
            "gpt2",
            "--resume",
        )
        self.assertEqual(resumed.count("(from the interrupted run)"), 2)


class FlopsPerTokenTest(TestCase):
    def test_known_values(self):
        from keras_sdgm.models import SDGMBackbone

        # One block: kernel 3, rates [1, 2] -> one residual D x D conv and
        # the last D x K conv; K = 4, D = 8, I = 16, V = 10.
        backbone = SDGMBackbone(
            vocabulary_size=10,
            hidden_dim=8,
            num_atoms=4,
            window_length=8,
            num_layers=1,
            dilation_rates=[1, 2],
            intermediate_dim=16,
        )
        expected = (
            (2 * 3 * 8 * 8)
            + (2 * 3 * 8 * 4)
            + 2 * 4 * 8
            + (4 * 8 * 16)
            + 2 * 8 * 10
        )
        self.assertEqual(run.flops_per_token("sdgm", backbone, 8, 10), expected)


@pytest.mark.slow
@END_TO_END
class DictionaryBenchmarkTest(TestCase):
    def test_runs_and_writes_its_outputs(self):
        out = self.get_temp_dir()
        dictionary.main(
            [
                "--shapes",
                "40,4,8,2",
                "--chunk-sizes",
                "16",
                "--steps",
                "1",
                "--output-dir",
                out,
            ]
        )
        with open(os.path.join(out, "dictionary.json")) as f:
            rows = json.load(f)["rows"]
        self.assertEqual([r["variant"] for r in rows], ["direct", "chunked 16"])
        for row in rows:
            self.assertGreater(row["forward_backward_seconds"], 0)
